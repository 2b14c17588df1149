// Pipes: the pipe server's protocol and its client API (docs/servers.md,
// "pipe"). The server is servers/pipe; init hands every program it starts
// a handle to it (mk/services.hpp).
//
//   Result<pipe::Pipe> p = pipe::create(services.pipe);
//   pipe::write(p->write, "hi", 2);              // all of it, or an error
//   Result<size_t> n = pipe::read(p->read, buf, sizeof buf);  // 0: EOF
//   pipe::close(p->write);                        // the reader sees EOF
//
// Each end is an endpoint handle to the server with its own badge (the
// server knows which pipe and which end from it; no client can forge
// another's). close() and dup() are the kernel's HandleClose and
// HandleMint: the kernel's count of handles is the count of open ends, and
// the server learns that the last one of an end is gone from the kernel's
// last-handle notice. So a reader sees EOF only once every write end —
// dups, copies passed to other processes, those of a process that died —
// is gone, and never earlier.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mk/ipc.hpp"

namespace mk::pipe {

using ipc::Result;
using ipc::Status;

// The protocol. Requests are calls; the reply's label is its status
// (ipc::kStatusOk or an abi::Err / app status).
enum Label : uint32_t {
    // On the service handle (badge 0): a new pipe. Reply: Ok with two
    // handles moved to the caller, [0] the read end, [1] the write end
    // (each with Send and Duplicate). OutOfMemory / LimitReached when the
    // server has no room (kMaxPipes).
    kCreate = 1,
    // On a read end: word 0 the most bytes wanted (1..abi::kMaxPayload).
    // Reply: Ok, word 0 the count n, the n bytes in words 1.. for a read
    // of at most kInlineBytes (no payload: reply_bytes()), else as the
    // payload; n = 0 is EOF (no data, and no write end left). Waits (a deferred reply) while
    // the pipe is empty and a write end is open; returns as soon as any
    // bytes are there, min(wanted, available).
    kRead = 2,
    // On a write end: the bytes as the payload (1..abi::kMaxPayload), or
    // at most kInlineBytes of them in words 1.., word 0 their count, and
    // no payload (set_inline()): a small write's bytes ride in registers.
    // Reply: Ok, word 0 the count, always all of them; waits while the
    // pipe is full (backpressure: nothing is ever dropped). BrokenPipe
    // when no read end is left (also for a writer waiting when the last
    // reader goes). A write that waits is written even if its caller stops
    // waiting (a call timeout, its death): its bytes went in as room came.
    kWrite = 3,
};

// The buffer of one pipe, in bytes: writes beyond it wait for readers.
constexpr size_t kCapacity = 4096;
// Bytes a message carries in its words 1.. (word 0 is the count).
constexpr size_t kInlineBytes = 8 * (abi::kMessageWords - 1);

// Puts n <= kInlineBytes bytes in words 1.. of m, and n in word 0.
inline void set_inline(ipc::Message& m, const void* bytes, size_t n) {
    uint64_t w[abi::kMessageWords - 1] = {};
    __builtin_memcpy(w, bytes, n);
    m.set_word(0, n);
    for (unsigned i = 0; i + 1 < abi::kMessageWords; ++i) m.set_word(i + 1, w[i]);
}
// The bytes a read's reply or a write's request carries: in its words (no
// payload, word 0 at most kInlineBytes) or as its payload (word 0 its
// length). Copies them to `out` (room for `room` bytes) and returns their
// count, or -1 for a message that is neither.
inline long take_bytes(const ipc::Message& m, void* out, size_t room) {
    uint64_t n = m.word(0);
    if (m.length() == 0) {
        if (n > kInlineBytes || n > room) return -1;
        uint64_t w[abi::kMessageWords - 1];
        for (unsigned i = 0; i + 1 < abi::kMessageWords; ++i) w[i] = m.word(i + 1);
        __builtin_memcpy(out, w, n);
        return long(n);
    }
    if (n != m.length() || n > room) return -1;
    __builtin_memcpy(out, m.payload(), n);
    return long(n);
}
// Pipes one server holds at once.
constexpr size_t kMaxPipes = 256;

// Waiting readers and writers one pipe keeps. Past kMaxReaders the oldest
// waiting read ends with kWaitEvicted (usually the entry of a read that
// timed out long ago; a live reader gets kErrWaitEvicted from read() and
// may ask again); past kMaxWriters a write that would wait gets
// LimitReached, nothing of it written.
constexpr size_t kMaxReaders = 64;
constexpr size_t kMaxWriters = 64;

// App statuses (reply labels) of the protocol.
constexpr uint32_t kBrokenPipe = ipc::kFirstAppStatus + 1;   // EPIPE: no reader left
constexpr uint32_t kWaitEvicted = ipc::kFirstAppStatus + 2;  // kMaxReaders newer reads

// Errors the API reports, as the server's reply said them: abi::Err values,
// or BrokenPipe above carried as this out-of-range Err.
constexpr abi::Err kErrBrokenPipe = abi::Err(kBrokenPipe);
constexpr abi::Err kErrWaitEvicted = abi::Err(kWaitEvicted);

// Which end a badge names, and which pipe (the server's id); badge 0 is
// the service handle.
constexpr uint64_t kEndBit = 1;  // set: the write end
constexpr uint64_t badge_of(uint64_t pipe_id, bool write_end) {
    return (pipe_id << 1) | (write_end ? kEndBit : 0);
}
constexpr uint64_t pipe_of(uint64_t badge) {
    return badge >> 1;
}
constexpr bool is_write_end(uint64_t badge) {
    return (badge & kEndBit) != 0;
}

// ---------------------------------------------------------------------------
// The client API
// ---------------------------------------------------------------------------

struct Pipe {
    ipc::Endpoint read;
    ipc::Endpoint write;
};

// pipe(): a new pipe from the server behind `service`.
Result<Pipe> create(const ipc::Endpoint& service);

// Reads up to n bytes (at most abi::kMaxPayload per call) into buf; blocks
// while the pipe is empty and has a writer. Returns the count; 0 is EOF
// (and n = 0 returns 0 at once without asking the server).
Result<size_t> read(const ipc::Endpoint& end, void* buf, size_t n);

// Writes all n bytes (in pieces of abi::kMaxPayload), blocking while the
// pipe is full. Returns n, or the first error — kErrBrokenPipe when no
// reader is left, LimitReached when kMaxWriters writes wait already — with
// the pieces before it written.
Result<size_t> write(const ipc::Endpoint& end, const void* buf, size_t n);

// Closes this handle to an end (HandleClose); the end stays open while
// other handles to it (dups, other processes' copies) do.
Status close(ipc::Endpoint& end);

// Another handle to the same end (HandleMint with the same rights and
// badge): the end stays open until both are closed.
Result<ipc::Endpoint> dup(const ipc::Endpoint& end);

}  // namespace mk::pipe
