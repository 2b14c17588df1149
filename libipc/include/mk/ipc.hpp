// The typed IPC API of user code: handles, messages, and the operations on
// endpoints (docs/libipc.md; the registers and layouts are mk/abi.hpp's).
//
// - Handle owns a handle value and closes it once; Endpoint is a Handle that
//   names an endpoint.
// - Message is what user code builds and reads: a label, four words, up to
//   abi::kMaxPayload payload bytes and up to abi::kMaxHandles handles.
//   encode()/decode() turn it into the registers and the IPC buffer and back;
//   they are pure functions and refuse anything malformed in either
//   direction.
// - call/send/recv/reply/reply_recv/reply_save are the syscalls with
//   Messages; Reply is a saved (deferred) reply, answered exactly once.
// - Each thread has its own IPC buffer; ipc_buffer() finds the caller's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "mk/abi.hpp"
#include "mk/result.hpp"
#include "mk/sys.hpp"

namespace mk::ipc {

// ---------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------

// Owns one handle value: closes it (Sys::HandleClose) exactly once, when it
// is destroyed, assigned over, or close()d. Move-only.
class Handle {
  public:
    Handle() = default;
    // Takes ownership of `value` (kNoHandle: an empty Handle).
    explicit Handle(abi::HandleValue value) : value_(value) {}
    Handle(Handle&& o) noexcept : value_(o.release()) {}
    Handle& operator=(Handle&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { reset(); }

    abi::HandleValue get() const { return value_; }
    bool valid() const { return value_ != abi::kNoHandle; }
    explicit operator bool() const { return valid(); }

    // Gives the value up without closing it; the Handle is empty after.
    [[nodiscard]] abi::HandleValue release() {
        abi::HandleValue v = value_;
        value_ = abi::kNoHandle;
        return v;
    }
    // Closes now and says how that went; the Handle is empty after, even on
    // failure. Closing an empty Handle is Ok.
    Status close();
    // A new handle to the same object with `rights` (a subset of this one's;
    // needs kRightDuplicate) and `badge`.
    Result<Handle> mint(uint32_t rights, uint64_t badge) const;

  private:
    // Inline, with only the close out of line: an empty Handle is
    // destroyed or assigned over on every deferred request.
    void reset(abi::HandleValue v = abi::kNoHandle) {
        abi::HandleValue old = value_;
        value_ = v;
        if (old != abi::kNoHandle) close_value(old);
    }
    static void close_value(abi::HandleValue v);

    abi::HandleValue value_ = abi::kNoHandle;
};

// A Handle that names an endpoint.
class Endpoint : public Handle {
  public:
    Endpoint() = default;
    explicit Endpoint(abi::HandleValue value) : Handle(value) {}
    explicit Endpoint(Handle&& h) : Handle(std::move(h)) {}

    // A new endpoint, with every right and badge 0.
    static Result<Endpoint> create();
    // A copy for a client: fewer rights (say kRightSend) and a badge the
    // server will see on everything sent through it.
    Result<Endpoint> mint(uint32_t rights, uint64_t badge) const;
};

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

struct Received;
Status decode_into(uint64_t info, const uint64_t (&words)[abi::kMessageWords], uint64_t badge,
                   const abi::IpcBuffer* buffer, Received& out);
namespace detail {
struct Wire;
}

template <typename T>
concept Trivial = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T>;

// A message as user code builds and reads it. Move-only, because it may own
// handles: the ones moved into it to be sent, and the ones it arrived with.
//
// Building never fails on the spot: writing past the payload or adding a
// fifth handle sets a sticky error() and leaves the message as it was, and
// every operation refuses to send a message with an error. Reading is
// bounds-checked and returns Results.
//
// The builders chain, on a named message and on a temporary alike:
//   call(ep, Message(kWrite).set_word(0, fd).append(data, n));
//   auto m = Message(kStatusOk).put(stats);  // a Message
class Message {
  public:
    Message() = default;
    explicit Message(uint32_t label) : label_(label) {}
    Message(Message&& o) noexcept;
    Message& operator=(Message&& o) noexcept;
    Message(const Message&) = delete;
    Message& operator=(const Message&) = delete;
    ~Message() {
        if (handle_count_ != 0) close_owned();
    }

    uint32_t label() const { return label_; }
    Message& set_label(uint32_t label) & {
        label_ = label;
        return *this;
    }
    Message&& set_label(uint32_t label) && { return std::move(set_label(label)); }

    // --- words (registers) ---
    uint64_t word(unsigned i) const { return i < abi::kMessageWords ? words_[i] : 0; }
    Message& set_word(unsigned i, uint64_t v) & {
        if (i < abi::kMessageWords) {
            words_[i] = v;
        } else {
            fail(abi::Err::InvalidArgument);
        }
        return *this;
    }
    Message&& set_word(unsigned i, uint64_t v) && { return std::move(set_word(i, v)); }
    // Any trivially copyable value of up to 8 bytes, bit for bit.
    template <Trivial T>
    Message& set_word_as(unsigned i, const T& v) & {
        static_assert(sizeof(T) <= sizeof(uint64_t));
        uint64_t w = 0;
        __builtin_memcpy(&w, &v, sizeof(T));
        return set_word(i, w);
    }
    template <Trivial T>
    Message&& set_word_as(unsigned i, const T& v) && {
        return std::move(set_word_as(i, v));
    }
    template <Trivial T>
    T word_as(unsigned i) const {
        static_assert(sizeof(T) <= sizeof(uint64_t));
        static_assert(std::is_default_constructible_v<T>);
        uint64_t w = word(i);
        T v{};
        __builtin_memcpy(&v, &w, sizeof(T));
        return v;
    }
    const uint64_t* words() const { return words_; }

    // --- payload (the IPC buffer) ---
    uint32_t length() const { return length_; }
    const uint8_t* payload() const { return payload_; }
    // Appends bytes; past abi::kMaxPayload it appends nothing and sets
    // error() to TooLarge.
    Message& append(const void* data, size_t n) & {
        if (n > abi::kMaxPayload - length_) {
            fail(abi::Err::TooLarge);
            return *this;
        }
        __builtin_memcpy(payload_ + length_, data, n);
        length_ += uint32_t(n);
        return *this;
    }
    Message&& append(const void* data, size_t n) && { return std::move(append(data, n)); }
    template <Trivial T>
    Message& put(const T& v) & {
        return append(&v, sizeof(T));
    }
    template <Trivial T>
    Message&& put(const T& v) && {
        return std::move(append(&v, sizeof(T)));
    }
    // Reads a T at byte `offset`; a read past the end is TooLarge.
    template <Trivial T>
    Result<T> get(size_t offset) const {
        if (offset > length_ || sizeof(T) > length_ - offset) return abi::Err::TooLarge;
        T v;
        __builtin_memcpy(&v, payload_ + offset, sizeof(T));
        return v;
    }
    void clear_payload() { length_ = 0; }

    // Empties the message, as a new Message(0): closes the handles it owns
    // and forgets the label, words, payload, handles and error.
    void clear();

    // --- handles ---
    // Adds a handle to send, moved: on a successful send it belongs to the
    // receiver, else it stays in this message (and closes with it).
    // Needs kRightGrant on the endpoint it goes through.
    Message& move_handle(Handle&& h) &;
    Message&& move_handle(Handle&& h) && { return std::move(move_handle(std::move(h))); }
    // Adds a handle to send, copied: the receiver gets a new handle to the
    // same object (needs kRightDuplicate on `h`); `h` stays the caller's.
    Message& copy_handle(const Handle& h) &;
    Message&& copy_handle(const Handle& h) && { return std::move(copy_handle(h)); }
    uint32_t handle_count() const { return handle_count_; }
    abi::HandleValue handle_value(unsigned i) const {
        return i < handle_count_ ? handles_[i] : abi::kNoHandle;
    }
    uint32_t handle_flags(unsigned i) const { return i < handle_count_ ? flags_[i] : 0; }
    // Takes an owned handle out (one this message received, or moved in);
    // an empty Handle for a copied one, an index out of range or one taken.
    Handle take_handle(unsigned i);

    // The first building error: TooLarge when an append or a handle did not
    // fit, InvalidArgument for a word index past the last, BadHandle for an
    // empty Handle added; Ok otherwise.
    abi::Err error() const { return error_; }

    // After a successful send: the moved handles now belong to the receiver.
    void handles_sent() {
        for (unsigned i = 0; i < handle_count_; ++i) owned_[i] = false;
    }
    // After a failed send or call: the kernel gave the moved handles back
    // under the values it wrote to the IPC buffer's handle slots (kNoHandle
    // for one delivered before the failure); the message owns those now.
    void handles_returned(const abi::IpcBuffer& buffer);

    // Closes the handles it owns (and owns none after); the rest stays.
    void close_handles() {
        if (handle_count_ != 0) close_owned();
    }

  private:
    friend Status decode_into(uint64_t, const uint64_t (&)[abi::kMessageWords], uint64_t,
                              const abi::IpcBuffer*, Received&);
    friend struct detail::Wire;
    Message& add_handle(abi::HandleValue v, uint32_t flags, bool owned);
    void fail(abi::Err e) {
        if (error_ == abi::Err::Ok) error_ = e;
    }
    void close_owned();

    uint32_t label_ = 0;
    uint32_t length_ = 0;
    uint32_t handle_count_ = 0;
    abi::Err error_ = abi::Err::Ok;
    uint64_t words_[abi::kMessageWords] = {};
    // Only the first handle_count_ entries of these and the first length_
    // bytes of the payload mean anything: nothing else is ever read, so
    // nothing else is initialized or copied (a message is built and moved
    // several times on every request a server handles).
    abi::HandleValue handles_[abi::kMaxHandles];
    uint32_t flags_[abi::kMaxHandles];
    bool owned_[abi::kMaxHandles];
    uint8_t payload_[abi::kMaxPayload];
};

// Reads a payload front to back: each get() takes the next sizeof(T) bytes
// or fails with TooLarge (and then reads nothing).
class PayloadReader {
  public:
    explicit PayloadReader(const Message& m) : m_(m) {}
    template <Trivial T>
    Result<T> get() {
        Result<T> r = m_.get<T>(offset_);
        if (r) offset_ += sizeof(T);
        return r;
    }
    // The next n bytes, in place (valid while the message is).
    Result<const uint8_t*> bytes(size_t n);
    size_t remaining() const { return m_.length() - offset_; }

  private:
    const Message& m_;
    size_t offset_ = 0;
};

// What a receive produced.
struct Received {
    Message message;
    // The badge of the handle the sender used, told by the kernel: who is
    // speaking, which no sender can forge.
    uint64_t badge = 0;
    // The sender used call and waits: this thread now has a pending call to
    // answer (reply, reply_recv, or reply_save for later).
    bool call = false;

    // A kernel notice (abi::kNoticeLabelBase and up) rather than a client's
    // message; the kernel refuses those labels from senders.
    bool is_notice() const { return message.label() >= abi::kNoticeLabelBase; }
};

// The register and buffer form of `m`: returns the info word and writes the
// payload and handles into `buffer` (not touched, and may be null, for a
// register-only message). Refuses a message with error(), a label in the
// notice range (InvalidArgument), more than kMaxPayload bytes or kMaxHandles
// handles (TooLarge), and a payload or handles with no buffer (BadState).
Result<uint64_t> encode(const Message& m, abi::IpcBuffer* buffer);

// The message the kernel delivered: info word, words, badge, and the buffer
// (read only if the info says there is a payload or handles). Refuses
// reserved info bits (InvalidArgument), a length or handle count over the
// limits (TooLarge), or a payload or handles with no buffer (BadState); it
// never reads past the info's bounds. The received handles are owned by the
// returned message.
Result<Received> decode(uint64_t info, const uint64_t (&words)[abi::kMessageWords], uint64_t badge,
                        const abi::IpcBuffer* buffer);
// decode(), into `out`: what `out` held is closed and replaced (a refused
// message leaves it empty, as a new Received). A receive loop keeps one
// Received for every message instead of building and moving a new one
// (a Message is some 560 bytes).
Status decode_into(uint64_t info, const uint64_t (&words)[abi::kMessageWords], uint64_t badge,
                   const abi::IpcBuffer* buffer, Received& out);

// ---------------------------------------------------------------------------
// Replies: a reply's label is its status
// ---------------------------------------------------------------------------
// By convention a reply's label says how the request went: 0 for success,
// else a nonzero abi::Err number (a server's own codes start at
// kFirstAppStatus). The server framework answers an unknown label with
// Unsupported.
constexpr uint32_t kStatusOk = 0;
constexpr uint32_t kFirstAppStatus = 0x10000;

// A call with this label gets an empty Ok reply from every server of the
// framework (mk/server.hpp; the label is the framework's, no route takes
// it): the answer says the server has started and receives. ping() makes one; init waits so for
// the servers it starts before it runs a program.
constexpr uint32_t kLabelPing = 0xFFFFFEFFu;

// A register-only reply with label `e`.
inline Message error_reply(abi::Err e) {
    return Message(uint32_t(e));
}
// The status a reply carries in its label (an app status is returned as is).
inline abi::Err reply_status(const Message& reply) {
    return abi::Err(reply.label());
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------
// Timeouts are in nanoseconds (rounded up to the kernel's 1 ms tick):
// abi::kForever, or abi::kNoWait for the non-blocking forms, which complete
// only with a partner already waiting and otherwise fail with WouldBlock.
//
// An operation that sends takes the message by reference: on success the
// handles moved into it are gone to the receiver; on failure they are still
// in it (the kernel refuses a call as a whole). Overloads for temporaries
// forward to these.

// Sends `msg` to `ep` (kRightSend) and waits for the reply.
Result<Received> call(const Endpoint& ep, Message& msg, uint64_t timeout = abi::kForever);
// Sends `msg` without waiting for an answer (blocks until a receiver takes
// it, or the timeout).
Status send(const Endpoint& ep, Message& msg, uint64_t timeout = abi::kForever);
// Receives the next message on `ep` (kRightReceive).
Result<Received> recv(const Endpoint& ep, uint64_t timeout = abi::kForever);
// Answers this thread's pending call.
Status reply(Message& msg);
// Calls `ep` with kLabelPing: Ok once a server of the framework answers,
// the call's error (TimedOut, PeerDied, ...) or the server's status (a
// server that is not of the framework answers as it likes) otherwise.
Status ping(const Endpoint& ep, uint64_t timeout = abi::kForever);
// Answers this thread's pending call (if any), then receives on `ep`: the
// server loop's one syscall per request.
Result<Received> reply_recv(const Endpoint& ep, Message& msg, uint64_t timeout = abi::kForever);

inline Result<Received> call(const Endpoint& ep, Message&& msg, uint64_t timeout = abi::kForever) {
    return call(ep, msg, timeout);
}
inline Status send(const Endpoint& ep, Message&& msg, uint64_t timeout = abi::kForever) {
    return send(ep, msg, timeout);
}
inline Status reply(Message&& msg) {
    return reply(msg);
}
inline Result<Received> reply_recv(const Endpoint& ep, Message&& msg,
                                   uint64_t timeout = abi::kForever) {
    return reply_recv(ep, msg, timeout);
}
inline Status try_send(const Endpoint& ep, Message& msg) {
    return send(ep, msg, abi::kNoWait);
}
inline Status try_send(const Endpoint& ep, Message&& msg) {
    return send(ep, msg, abi::kNoWait);
}
inline Result<Received> try_recv(const Endpoint& ep) {
    return recv(ep, abi::kNoWait);
}
inline Result<Received> try_call(const Endpoint& ep, Message& msg) {
    return call(ep, msg, abi::kNoWait);
}

// The same operations with the message received into `out` (decode_into():
// what `out` held is closed and replaced; after a failure it is empty), for
// loops and clients that keep one Received rather than build a new one for
// every message.
Status call_into(const Endpoint& ep, Message& msg, Received& out, uint64_t timeout = abi::kForever);
Status recv_into(const Endpoint& ep, Received& out, uint64_t timeout = abi::kForever);
Status reply_recv_into(const Endpoint& ep, Message& msg, Received& out,
                       uint64_t timeout = abi::kForever);
inline Status call_into(const Endpoint& ep, Message&& msg, Received& out,
                        uint64_t timeout = abi::kForever) {
    return call_into(ep, msg, out, timeout);
}
inline Status reply_recv_into(const Endpoint& ep, Message&& msg, Received& out,
                              uint64_t timeout = abi::kForever) {
    return reply_recv_into(ep, msg, out, timeout);
}

// The receive of a loop that looks at what arrives in the registers before
// it decodes it (Server::run with a register lane, mk/server.hpp): the
// registers the kernel returned, as they are. reply_recv_raw() sends `msg`
// as reply_recv_into() does (one with handles in two steps); a message
// encode() refuses comes back as that error, with nothing sent.
// decode_raw() decodes what a successful one returned into `out`, as
// recv_into() would have (what `out` held is closed and replaced).
sys::Ret recv_raw(const Endpoint& ep, uint64_t timeout = abi::kForever);
sys::Ret reply_recv_raw(const Endpoint& ep, Message& msg, uint64_t timeout = abi::kForever);
Status decode_raw(const sys::Ret& r, Received& out);

// A saved reply: the one-shot reply handle of a call this thread received
// (reply_save), to answer later, from any thread of the process. Move-only.
//
// Answered exactly once: send() consumes it (a second send() is BadState and
// does nothing), and one dropped unanswered closes the handle, which wakes
// the caller with PeerDied — never left hanging. When the kernel refuses a
// send() (a reply to a caller that timed out or died, a handle that cannot
// be moved), the handle is closed all the same, so a caller still waiting
// learns PeerDied. A message that encode() refuses never reaches the kernel:
// send() returns its error and the reply stays pending.
class Reply {
  public:
    Reply() = default;
    explicit Reply(Handle h) : handle_(std::move(h)) {}
    Reply(Reply&&) noexcept = default;
    Reply& operator=(Reply&&) noexcept = default;

    // Still to be answered.
    bool pending() const { return handle_.valid(); }
    explicit operator bool() const { return pending(); }
    abi::HandleValue handle() const { return handle_.get(); }

    Status send(Message& msg);
    Status send(Message&& msg) { return send(msg); }
    // Answers with a register-only message, `label` and four words, with
    // no Message built: a small answer (a pipe read of a few bytes). A
    // label in the notice range is InvalidArgument, and it stays pending;
    // otherwise as send().
    Status send(uint32_t label, const uint64_t (&words)[abi::kMessageWords]);
    // Answers with a register-only error reply (label = e).
    Status fail(abi::Err e) {
        Message m = error_reply(e);
        return send(m);
    }
    // Drops it now: the caller wakes with PeerDied.
    void drop() { (void)handle_.close(); }

  private:
    Handle handle_;
};

// Takes this thread's pending call out of the thread: it is answered through
// the returned Reply (and the thread may receive again meanwhile).
Result<Reply> reply_save();

// ---------------------------------------------------------------------------
// Threads and their IPC buffers
// ---------------------------------------------------------------------------
// The kernel knows each thread's IPC buffer (Sys::IpcBufferSet); libipc
// must find the caller's without thread-local storage, so it keeps a small
// table of (stack range, buffer) and ipc_buffer() looks up the entry whose
// stack holds the current stack pointer. A thread is registered
//   - by the runtime, for the main thread, before main(): a page from
//     Sys::MemMap, registered for the stack the kernel gave it;
//   - by start_thread(), for threads libipc starts: their buffer is the page
//     above their stack;
//   - by register_thread(), for a thread started some other way.
// Register-only messages never need the buffer (nor the lookup). A thread
// that switches stacks by hand (user-level fibers) must register each stack.
// Coroutines run on their resumer's stack, so they are covered.
constexpr size_t kMaxThreads = 64;

// This thread's IPC buffer, or null if it has none.
abi::IpcBuffer* ipc_buffer();

// Makes `buffer` (a mapped, page-aligned page) the calling thread's IPC
// buffer, for the stack [stack_lo, stack_hi): tells the kernel, then
// records it. LimitReached with kMaxThreads threads registered.
Status register_thread(abi::IpcBuffer* buffer, uintptr_t stack_lo, uintptr_t stack_hi);
// Forgets the calling thread's entry (before it exits).
void unregister_thread();

// Starts a thread of this process running fn(arg) on a new stack of
// `stack_pages` pages, with its IPC buffer registered. When fn returns the
// thread exits (its stack and buffer stay mapped: there is no join yet).
// Returns the thread's handle.
Result<Handle> start_thread(void (*fn)(void*), void* arg, size_t stack_pages = 16);

// The runtime's part (called before main): the main thread's IPC buffer.
Status init_main_thread();

}  // namespace mk::ipc
