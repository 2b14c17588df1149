// The pipe server's state machine (docs/servers.md, "pipe"): every pipe,
// its buffer, its waiting readers and writers, and what each request and
// each kernel notice does to them. It issues no syscall: main.cpp gives it
// requests and the kernel's last-handle notices, and it answers deferred
// requests through the Reply objects it was handed, so the host tests
// (tests/unit/pipe_server_test.cpp) drive it with fakes.
//
// `Req` is what a handler gets (ipc::Request in the server): message(),
// badge(), expects_reply() and defer() -> Result<Reply>. `Reply` is a
// deferred answer (ipc::DeferredReply): send(Message&) -> Status, fail(Err).
// A send that fails means the caller is gone (it died or timed out): what it
// would have taken stays in the pipe for the next reader.
//
// Invariants, after every request and notice:
//   - readers wait only while the buffer is empty (data goes to the oldest
//     reader the moment it arrives);
//   - writers wait only while the buffer is full or an earlier writer
//     waits (bytes go in in arrival order, never interleaved);
//   - readers wait only while a write end is open, or a writer still has
//     bytes to put in (else they have had EOF);
//   - writers wait only while a read end is open (else BrokenPipe).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "mk/containers.hpp"
#include "mk/pipe.hpp"
#include "mk/server.hpp"
#include "mk/services.hpp"

namespace mk::pipe_server {

using ipc::Message;
using ipc::Response;
using ipc::Result;
using ipc::Status;

template <typename Reply>
class Pipes {
  public:
    struct Stats {
        size_t pipes = 0;
        size_t buffered = 0;  // bytes in all buffers
        size_t readers_waiting = 0;
        size_t writers_waiting = 0;
    };

    // A new pipe, both ends open: its id (the ends' badges are
    // pipe::badge_of(id, write_end)), or 0 when kMaxPipes are open or
    // there is no memory.
    uint64_t create() {
        uint64_t id = pipes_.create();
        if (Pipe* p = pipes_.find(id)) {
            p->readers.count_in(&waiting_);
            p->writers.count_in(&waiting_);
        }
        return id;
    }
    // Why create() returned 0.
    abi::Err create_error() const {
        return pipes_.full() ? abi::Err::LimitReached : abi::Err::OutOfMemory;
    }

    // Forgets a pipe at once (main.cpp, when the ends' handles could not
    // be made); a stale id does nothing.
    void destroy(uint64_t id) {
        if (Pipe* p = pipes_.find(id)) fail_all(*p, abi::Err::Destroyed);
        pipes_.destroy(id);
    }

    // (Inlined into the server's one-line handler: one call less per
    // request.)
    template <typename Req>
    [[gnu::always_inline]] Response read(Req& req) {
        Pipe* p = nullptr;
        abi::Err e = lookup(req, false, &p);
        if (e != abi::Err::Ok) return e;
        uint64_t want = req.message().word(0);
        if (want == 0) return abi::Err::InvalidArgument;
        if (want > abi::kMaxPayload) want = abi::kMaxPayload;
        if (!p->buffer.empty()) return take_and_pump(*p, size_t(want));
        if (at_eof(*p)) return eof();
        if (abi::Err w = wait_to_read(*p, req, want); w != abi::Err::Ok) return w;
        return Response::deferred();
    }

    template <typename Req>
    [[gnu::always_inline]] Response write(Req& req) {
        Pipe* p = nullptr;
        abi::Err e = lookup(req, true, &p);
        if (e != abi::Err::Ok) return e;
        const Message& m = req.message();
        // The bytes, from the payload or (a small write) the words.
        uint8_t small[pipe::kInlineBytes];
        const uint8_t* data = m.payload();
        size_t n = m.length();
        if (n == 0) {
            long got = pipe::take_bytes(m, small, sizeof small);
            if (got <= 0) return abi::Err::InvalidArgument;
            n = size_t(got);
            data = small;
        }
        if (!p->read_open) return abi::Err(pipe::kBrokenPipe);
        if (p->writers.empty() && p->buffer.room() >= n) {
            put(*p, data, n);
            pump(*p);  // the oldest reader takes it, and runs first
            return written(n);
        }
        if (abi::Err w = wait_to_write(*p, req, data, n); w != abi::Err::Ok) return w;
        return Response::deferred();
    }

    // The register lane (ipc::RegisterCall, mk/server.hpp): a read of at
    // most pipe::kInlineBytes, and a write whose bytes ride in the words
    // (word 0 their count, 1..kInlineBytes), the pipe ping-pong's byte each
    // way. Each does what read() and write() do with such a request, and
    // answers the same (label and words) in `out`, with no Message built;
    // `words` are the request's. What they do not take — a larger read, a
    // read of 0, a write whose count is 0 or too large — is General, and
    // read() or write() answers it.
    template <typename Req>
    [[gnu::always_inline]] ipc::Lane small_read(Req& req,
                                                const uint64_t (&words)[abi::kMessageWords],
                                                ipc::RegisterReply& out) {
        Pipe* p = nullptr;
        if (abi::Err e = lookup(req, false, &p); e != abi::Err::Ok) return answer(out, e);
        uint64_t want = words[0];
        if (want == 0 || want > pipe::kInlineBytes) return ipc::Lane::General;
        if (!p->buffer.empty()) {
            consume(*p, peek_inline(*p, size_t(want), out.words));
            pump(*p);
            return ipc::Lane::Answered;
        }
        if (at_eof(*p)) return answer(out, abi::Err::Ok);  // n = 0: EOF
        if (abi::Err w = wait_to_read(*p, req, want); w != abi::Err::Ok) return answer(out, w);
        return ipc::Lane::Deferred;
    }

    template <typename Req>
    [[gnu::always_inline]] ipc::Lane small_write(Req& req,
                                                 const uint64_t (&words)[abi::kMessageWords],
                                                 ipc::RegisterReply& out) {
        Pipe* p = nullptr;
        if (abi::Err e = lookup(req, true, &p); e != abi::Err::Ok) return answer(out, e);
        uint64_t n = words[0];
        if (n == 0 || n > pipe::kInlineBytes) return ipc::Lane::General;
        const auto* data = reinterpret_cast<const uint8_t*>(&words[1]);  // set_inline()'s layout
        if (!p->read_open) return answer(out, abi::Err(pipe::kBrokenPipe));
        if (p->writers.empty() && p->buffer.room() >= n) {
            put(*p, data, size_t(n));
            pump(*p);  // the oldest reader takes it, and runs first
            out.words[0] = n;
            return ipc::Lane::Answered;
        }
        if (abi::Err w = wait_to_write(*p, req, data, size_t(n)); w != abi::Err::Ok) {
            return answer(out, w);
        }
        return ipc::Lane::Deferred;
    }

    // The kernel's kLabelLastHandle notice: every handle to the end
    // `badge` names is gone (closed, or its processes died).
    void last_handle(uint64_t badge) {
        if (badge == 0) return;
        uint64_t id = pipe::pipe_of(badge);
        Pipe* p = pipes_.find(id);
        if (p == nullptr) return;
        if (pipe::is_write_end(badge)) {
            p->write_open = false;
            pump(*p);  // EOF for the readers once the buffer is drained
        } else {
            p->read_open = false;
            p->buffer.clear();  // nobody can read it any more
            // Readers still waiting used a handle another thread closed.
            while (!p->readers.empty())
                (void)p->readers.pop_front().reply.fail(abi::Err::BadHandle);
            while (!p->writers.empty()) {
                (void)p->writers.pop_front().reply.fail(abi::Err(pipe::kBrokenPipe));
            }
        }
        if (!p->read_open && !p->write_open) {
            fail_all(*p, abi::Err::Destroyed);
            pipes_.destroy(id);
        }
    }

    Stats stats() const {
        Stats s;
        s.pipes = pipes_.size();
        pipes_.for_each([&s](uint64_t, const Pipe& p) {
            s.buffered += p.buffer.size();
            s.readers_waiting += p.readers.size();
            s.writers_waiting += p.writers.size();
        });
        return s;
    }

    // Bytes buffered in pipe `id` (0 for no such pipe).
    size_t buffered(uint64_t id) const {
        const Pipe* p = pipes_.find(id);
        return p != nullptr ? p->buffer.size() : 0;
    }

  private:
    static constexpr size_t kCapacity = pipe::kCapacity;

    // Deferred replies held, over all pipes: every pipe's queues count
    // into it, so the bound checked on each wait costs no scan.
    size_t waiting() const { return waiting_; }

    struct Reader {
        Reply reply;
        uint32_t want;
    };
    struct Writer {
        Reply reply;
        uint32_t total;  // bytes in data
        uint32_t done;   // of them, in the buffer already
        uint8_t data[abi::kMaxPayload];
    };
    struct Pipe {
        Ring<uint8_t, kCapacity> buffer;
        bool read_open = true;
        bool write_open = true;
        Fifo<Reader> readers;
        Fifo<Writer> writers;
    };

    // The pipe a request's badge names, if it is a call on the right end.
    template <typename Req>
    abi::Err lookup(Req& req, bool write_end, Pipe** out) {
        uint64_t badge = req.badge();
        Pipe* p = badge != 0 ? pipes_.find(pipe::pipe_of(badge)) : nullptr;
        if (p == nullptr) return abi::Err::BadHandle;
        if (pipe::is_write_end(badge) != write_end) return abi::Err::NoRights;
        // A read or write sent without waiting for the answer could not be
        // told its count, nor wait: refused, nothing taken.
        if (!req.expects_reply()) return abi::Err::InvalidArgument;
        // The end's last handle was closed by another thread while this
        // request was on its way.
        if (!(write_end ? p->write_open : p->read_open)) return abi::Err::BadHandle;
        *out = p;
        return abi::Err::Ok;
    }

    // A read that waits (the pipe is empty, a write end open): deferred
    // into the pipe's readers, pushing out the oldest past kMaxReaders.
    // Ok once deferred (answered or not), else the error to answer with.
    template <typename Req>
    abi::Err wait_to_read(Pipe& p, Req& req, uint64_t want) {
        bool evict = p.readers.size() >= pipe::kMaxReaders;
        if (!evict && waiting() >= services::kMaxDeferred) return abi::Err::LimitReached;
        Result<Reply> r = req.defer();
        if (!r) return r.error();
        if (evict) (void)p.readers.pop_front().reply.fail(abi::Err(pipe::kWaitEvicted));
        Reader reader{std::move(r).value(), uint32_t(want)};
        if (!p.readers.push_back(std::move(reader))) (void)reader.reply.fail(abi::Err::OutOfMemory);
        return abi::Err::Ok;
    }

    // A write that waits (full, or writers before it): deferred into the
    // pipe's writers, its bytes with it. Ok once deferred (answered or
    // not), else the error to answer with.
    template <typename Req>
    abi::Err wait_to_write(Pipe& p, Req& req, const uint8_t* data, size_t n) {
        if (p.writers.size() >= pipe::kMaxWriters || waiting() >= services::kMaxDeferred) {
            return abi::Err::LimitReached;
        }
        Result<Reply> r = req.defer();
        if (!r) return r.error();
        Writer w{std::move(r).value(), uint32_t(n), 0, {}};
        std::memcpy(w.data, data, n);
        if (!p.writers.push_back(std::move(w))) {
            (void)w.reply.fail(abi::Err::OutOfMemory);
            return abi::Err::Ok;
        }
        pump(p);
        return abi::Err::Ok;
    }

    // A register-only answer with status `e` (and words 0).
    static ipc::Lane answer(ipc::RegisterReply& out, abi::Err e) {
        out.label = uint32_t(e);
        return ipc::Lane::Answered;
    }

    // The oldest min(want, buffered) bytes, want <= kInlineBytes, into
    // words 1.. (pipe::set_inline()'s layout) and their count into word 0:
    // a small read's answer. They stay in the buffer until consume().
    static size_t peek_inline(const Pipe& p, size_t want, uint64_t (&words)[abi::kMessageWords]) {
        uint64_t bytes[abi::kMessageWords - 1] = {};
        size_t n = p.buffer.copy_out(reinterpret_cast<uint8_t*>(bytes), want);
        words[0] = n;
        for (unsigned i = 1; i < abi::kMessageWords; ++i) words[i] = bytes[i - 1];
        return n;
    }

    static bool at_eof(const Pipe& p) {
        return !p.write_open && p.writers.empty() && p.buffer.empty();
    }

    // The replies are built where they are returned (a Response returned by
    // name), never moved: a Message is some 560 bytes.
    static Response ok_with_count(size_t n) {
        static_assert(ipc::kStatusOk == uint32_t(abi::Err::Ok));
        Response r(abi::Err::Ok);
        r.message().set_word(0, n);
        return r;
    }
    static Response eof() { return ok_with_count(0); }
    static Response written(size_t n) { return ok_with_count(n); }

    // Appends n bytes; there is room.
    static void put(Pipe& p, const uint8_t* data, size_t n) { p.buffer.push(data, n); }

    // The reply carrying the oldest min(want, buffered) bytes, which stay in
    // the buffer until consume(): in its words for a small read, else as its
    // payload; word 0 their count either way.
    static Response peek(const Pipe& p, size_t want) {
        Response r(abi::Err::Ok);
        Message& m = r.message();
        if (want <= pipe::kInlineBytes) {
            // Straight into the words (pipe::set_inline()'s layout): a small
            // read is a byte or a few, not worth a copy through a buffer.
            uint64_t words[abi::kMessageWords];
            (void)peek_inline(p, want, words);
            for (unsigned i = 0; i < abi::kMessageWords; ++i) m.set_word(i, words[i]);
            return r;
        }
        size_t n = p.buffer.peek(
            want, [&m](const uint8_t* bytes, size_t count) { m.append(bytes, count); });
        m.set_word(0, n);
        return r;
    }
    static void consume(Pipe& p, size_t n) { p.buffer.drop(n); }
    // The reply with the oldest min(want, buffered) bytes, taken out; then
    // waiting writers' bytes into the room it made.
    static Response take_and_pump(Pipe& p, size_t want) {
        Response r = peek(p, want);
        consume(p, r.message().word(0));
        pump(p);
        return r;
    }

    // Moves data along until nothing more can move: buffered bytes to
    // waiting readers (oldest first; one whose caller is gone takes
    // nothing), waiting writers' bytes into the freed room (oldest first,
    // each answered once all of its bytes are in), and EOF to the readers
    // once no byte can come any more.
    static void pump(Pipe& p) {
        if (!idle(p)) move_along(p);
    }
    // Whether pump() would find nothing to move: its loops' conditions,
    // inline, so a request that leaves nothing to move costs no call.
    static bool idle(const Pipe& p) {
        bool readers_idle = p.readers.empty() || (p.buffer.empty() && !at_eof(p));
        return readers_idle && (p.writers.empty() || p.buffer.full());
    }
    static void move_along(Pipe& p) {
        bool moved = true;
        while (moved) {
            moved = false;
            while (!p.readers.empty() && !p.buffer.empty()) {
                Reader r = p.readers.pop_front();
                if (r.want <= pipe::kInlineBytes) {
                    // In registers, with no Message built.
                    uint64_t words[abi::kMessageWords];
                    size_t n = peek_inline(p, r.want, words);
                    if (r.reply.send(ipc::kStatusOk, words)) consume(p, n);
                    continue;
                }
                Response m = peek(p, r.want);
                size_t n = m.message().word(0);
                if (r.reply.send(m.message())) consume(p, n);
            }
            while (!p.writers.empty() && !p.buffer.full()) {
                Writer& w = p.writers.front();
                size_t room = p.buffer.room();
                size_t n = w.total - w.done < room ? w.total - w.done : room;
                put(p, w.data + w.done, n);
                w.done += uint32_t(n);
                moved = true;
                if (w.done == w.total) {
                    Writer done = p.writers.pop_front();
                    const uint64_t count[abi::kMessageWords] = {done.total, 0, 0, 0};
                    (void)done.reply.send(ipc::kStatusOk,
                                          count);  // its bytes are in, answered or not
                }
            }
        }
        if (at_eof(p)) {
            constexpr uint64_t kNone[abi::kMessageWords] = {};  // n = 0: EOF
            while (!p.readers.empty())
                (void)p.readers.pop_front().reply.send(ipc::kStatusOk, kNone);
        }
    }

    static void fail_all(Pipe& p, abi::Err e) {
        while (!p.readers.empty()) (void)p.readers.pop_front().reply.fail(e);
        while (!p.writers.empty()) (void)p.writers.pop_front().reply.fail(e);
    }

    size_t waiting_ = 0;  // declared before pipes_: the queues count into it until they go
    Slots<Pipe, pipe::kMaxPipes> pipes_;
};

}  // namespace mk::pipe_server
