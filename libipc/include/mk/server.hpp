// The server framework: receive, dispatch by label, reply or defer
// (docs/libipc.md has a whole server).
//
// A server is a struct of handlers and a table of routes:
//
//   struct Counter {
//       uint64_t n = 0;
//       Response add(Request& req) { n += req.message().word(0);
//                                    return Message(kStatusOk).set_word(0, n); }
//   };
//   constexpr Route<Counter> kRoutes[] = {{kAdd, &Counter::add}};
//   ...
//   Counter state;
//   return int(Server(state, kRoutes).run(endpoint));
//
// A handler answers a call by what it returns (a Message, or an abi::Err for
// a register-only error reply), or takes the answer over with
// req.defer(): a DeferredReply, answered exactly once, from anywhere, later;
// dropped unanswered, it wakes the caller with PeerDied. A handler may also
// be a coroutine (returning Task): it runs until it first suspends (say on a
// WaitList), the framework then saves the reply, and whatever the coroutine
// co_returns when it is resumed and finishes is the answer.
//
// Calls with no route get the error reply Unsupported, except a call
// labelled kLabelPing (the framework's label: no route takes it), which
// gets an empty Ok reply (ipc::ping: the server is up). Kernel notices
// (labels from abi::kNoticeLabelBase) go to the struct's
// `void on_notice(const Received&)` if it has one, else are ignored.
//
// Server::dispatch() is the whole decision for one message and issues no
// syscall of its own (only reply_save() when a reply is deferred): the host
// tests drive it directly. Server::run() is the loop around the same
// decision: it receives every message into one Request and sends the reply
// straight from the handler's Response, so no message is ever copied on the
// way (a Message is some 560 bytes, and a request would otherwise be moved
// four times between the kernel and the handler and back).
#pragma once

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>

#include "mk/ipc.hpp"

// GCC (12 at least) warns -Wzero-as-null-pointer-constant on code it
// generates for every coroutine, at the coroutine's closing brace, where no
// push/pop in this header can reach. So code that includes this header (and
// may define coroutine handlers) goes without that one warning.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wzero-as-null-pointer-constant"
#endif

namespace mk::ipc {

using DeferredReply = Reply;

// One received message, as a handler sees it.
class Request {
  public:
    explicit Request(Received&& r) : received_(std::move(r)) {}
    // An empty request, for a loop to receive into (received()).
    Request() = default;
    Request(Request&&) noexcept = default;
    Request& operator=(Request&&) noexcept = default;

    Message& message() { return received_.message; }
    const Message& message() const { return received_.message; }
    uint32_t label() const { return received_.message.label(); }
    // The badge of the sender's handle: which client this is.
    uint64_t badge() const { return received_.badge; }
    // A call: somebody waits for the answer.
    bool expects_reply() const { return received_.call; }

    // Takes the answer over (reply_save): the returned DeferredReply is now
    // the only way to answer, and the handler's return value is ignored.
    // Only while the handler runs (in a coroutine: before it first
    // suspends; after that the framework has deferred it already). BadState
    // for a message that expects no answer, or a second defer().
    Result<DeferredReply> defer() {
        if (!received_.call || deferred_) return abi::Err::BadState;
        Result<Reply> r = reply_save();
        if (r) deferred_ = true;
        return r;
    }
    bool deferred() const { return deferred_; }

    // The message as received, for a loop that receives into this request
    // (ipc::recv_into and the like): a request received anew must be
    // renewed() before a handler sees it.
    Received& received() { return received_; }
    const Received& received() const { return received_; }
    void renewed() { deferred_ = false; }

  private:
    Received received_;
    bool deferred_ = false;
};

// The register lane: a call that came in the registers alone (a label
// below the notice range and four words; no payload, no handles), as a
// struct's optional
//
//   Lane on_register_call(RegisterCall& call, RegisterReply& out);
//
// sees it, before anything is decoded. It answers in `out` (Answered: the
// loop replies with it straight from the registers, with the next
// receive), defers (Deferred: call.defer() took the answer over), or
// leaves the call to the routes (General: it did nothing, and must not
// have deferred), which then see it as any other message. A lane leaves
// every label it does not know General (ipc::kLabelPing among them: the
// framework answers it). What a small pipe read or write takes, with no
// Message built on the way in or out.
class RegisterCall {
  public:
    RegisterCall(uint32_t label, uint64_t badge, const uint64_t (&words)[abi::kMessageWords])
        : label_(label), badge_(badge), words_(words) {}

    uint32_t label() const { return label_; }
    uint64_t badge() const { return badge_; }
    uint64_t word(unsigned i) const { return i < abi::kMessageWords ? words_[i] : 0; }
    const uint64_t (&words() const)[abi::kMessageWords] { return words_; }
    bool expects_reply() const { return true; }  // the lane gets calls only

    // As Request::defer().
    Result<Reply> defer() {
        if (deferred_) return abi::Err::BadState;
        Result<Reply> r = reply_save();
        if (r) deferred_ = true;
        return r;
    }
    bool deferred() const { return deferred_; }

  private:
    uint32_t label_;
    uint64_t badge_;
    const uint64_t (&words_)[abi::kMessageWords];
    bool deferred_ = false;
};

// A register-only answer: its label (the status) and four words.
struct RegisterReply {
    uint32_t label = kStatusOk;
    uint64_t words[abi::kMessageWords] = {};
};

enum class Lane { Answered, Deferred, General };

// What a handler returns: the reply, or "deferred". A handler that builds
// its reply in a Response (returned by name, or made by a function that
// returns a Response) spares the move of a Message into it.
class Response {
  public:
    Response(Message&& m) : message_(std::move(m)) {}  // NOLINT: implicit by design
    // A register-only reply with label `e` (Ok: an empty success reply).
    Response(abi::Err e) : message_(error_reply(e)) {}  // NOLINT: implicit by design
    // The handler called req.defer() and answers through it.
    static Response deferred() {
        Response r(abi::Err::Ok);
        r.deferred_ = true;
        return r;
    }

    bool is_deferred() const { return deferred_; }
    Message& message() { return message_; }

  private:
    Message message_;
    bool deferred_ = false;
};

// What the loop does after one dispatch.
struct Action {
    enum class Kind {
        Reply,     // answer the pending call with `reply` (and receive again)
        Deferred,  // the call's answer was taken over (a DeferredReply holds it)
        None,      // nothing to answer: a send, or a notice
    };
    Kind kind = Kind::None;
    Message reply;
};

// ---------------------------------------------------------------------------
// Coroutine handlers
// ---------------------------------------------------------------------------

// The return type of a coroutine handler: `Task S::h(Request req)` (the
// request by value: it lives in the coroutine's frame). Frames come from the
// user heap; with none left, the call is answered OutOfMemory.
class Task {
  public:
    struct promise_type;
    using Handle = std::coroutine_handle<promise_type>;

    Task() = default;
    explicit Task(Handle h) : h_(h) {}
    Task(Task&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
    Task& operator=(Task&&) = delete;
    Task(const Task&) = delete;
    ~Task() {
        if (h_) h_.destroy();
    }

    explicit operator bool() const { return bool(h_); }
    Handle handle() const { return h_; }
    // The frame owns itself from now on (it frees itself when it finishes).
    Handle release() {
        Handle h = h_;
        h_ = nullptr;
        return h;
    }

  private:
    Handle h_;
};

struct Task::promise_type {
    promise_type() = default;
    // The frame's own copy of the request (parameters are previewed).
    template <typename S>
    promise_type(S&, Request& r) : request(&r) {}
    explicit promise_type(Request& r) : request(&r) {}

    Task get_return_object() { return Task(Handle::from_promise(*this)); }
    static Task get_return_object_on_allocation_failure() { return Task(); }
    std::suspend_always initial_suspend() noexcept { return {}; }

    struct FinalAwaiter {
        bool await_ready() const noexcept { return false; }
        void await_suspend(Handle h) noexcept { h.promise().finish(h); }
        void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }

    void return_value(Response r) {
        result = std::move(r);
        has_result = true;
    }
    void unhandled_exception() { __builtin_trap(); }

    // Done: a detached coroutine answers through `reply` and frees itself;
    // otherwise dispatch() is still waiting for it and reads the result.
    void finish(Handle h) noexcept;

    Request* request = nullptr;
    Reply reply;            // the saved call, once the coroutine outlives dispatch
    bool detached = false;  // owned by nobody but itself (and what it waits on)
    bool has_result = false;
    Response result{abi::Err::Ok};
};

// A queue of suspended coroutines, for handlers that wait for something
// (data in a pipe, a packet on a port): `co_await list;` or
// `co_await list.wait(tag);` suspends; wake_one()/wake_all() resume waiters
// in arrival order, on the caller's stack; cancel() destroys waiters (their
// saved replies drop, so their callers see PeerDied). Single-threaded: use it
// from the server's thread only. A WaitList going away cancels its waiters.
class WaitList {
  public:
    class Awaiter {
      public:
        Awaiter(const Awaiter&) = delete;
        Awaiter& operator=(const Awaiter&) = delete;
        ~Awaiter();

        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) noexcept;
        void await_resume() const noexcept {}

      private:
        friend class WaitList;
        Awaiter(WaitList& list, uint64_t tag) : list_(&list), tag_(tag) {}

        WaitList* list_;
        uint64_t tag_;
        std::coroutine_handle<> h_;
        Awaiter* prev_ = nullptr;
        Awaiter* next_ = nullptr;
        bool linked_ = false;
    };

    WaitList() = default;
    WaitList(const WaitList&) = delete;
    WaitList& operator=(const WaitList&) = delete;
    ~WaitList() { (void)cancel_all(); }

    // A tag (say the client's badge) lets cancel(tag) pick waiters out.
    Awaiter wait(uint64_t tag = 0) { return Awaiter(*this, tag); }
    Awaiter operator co_await() { return wait(); }

    bool empty() const { return head_ == nullptr; }
    size_t size() const { return size_; }
    // Resumes the oldest waiter (which runs until it suspends again or
    // ends); false if there was none.
    bool wake_one();
    // Resumes the waiters there are now (not those that wait again while
    // this runs); returns how many.
    size_t wake_all();
    // Destroys the waiters with `tag` / all of them; returns how many.
    size_t cancel(uint64_t tag);
    size_t cancel_all();

  private:
    void link(Awaiter* a);
    void unlink(Awaiter* a);

    Awaiter* head_ = nullptr;
    Awaiter* tail_ = nullptr;
    size_t size_ = 0;
};

// ---------------------------------------------------------------------------
// Routes and the server
// ---------------------------------------------------------------------------

template <typename S>
struct Route {
    using Handler = Response (S::*)(Request&);
    using CoHandler = Task (S::*)(Request);

    constexpr Route(uint32_t l, Handler h) : label(l), handler(h) {}
    constexpr Route(uint32_t l, CoHandler c) : label(l), co_handler(c) {}

    uint32_t label;
    Handler handler = nullptr;
    CoHandler co_handler = nullptr;
};

namespace detail {
Action respond(bool call, bool deferred, Response&& r);
Action start_task(Task&& task, bool call);
bool loop_survives(abi::Err e);
}  // namespace detail

template <typename S>
class Server {
  public:
    template <size_t N>
    Server(S& state, const Route<S> (&routes)[N]) : state_(state), routes_(routes), count_(N) {}

    // The decision for one message (see the top of this file).
    Action dispatch(Received&& r) {
        Request req(std::move(r));
        Action a;
        decide(req, [&a](Action::Kind kind, Message* reply) {
            a.kind = kind;
            if (reply != nullptr) a.reply = std::move(*reply);
        });
        return a;
    }

    // Receives and dispatches until stop() or an error that ends the
    // endpoint for this server (its handle is bad, it lacks Receive, the
    // endpoint was destroyed); returns that error, or Ok after stop().
    // Replies go out with the next receive (reply_recv); a reply the kernel
    // refuses is replaced by an error reply saying why.
    abi::Err run(const Endpoint& ep) {
        if constexpr (kHasRegisterLane) return run_with_register_lane(ep);
        stopped_ = false;
        Request req;  // every message lands here, in place
        Received& in = req.received();
        Status got = recv_into(ep, in);
        bool finished = false;
        while (!finished) {
            if (!got) {
                if (!detail::loop_survives(got.error())) return got.error();
                got = recv_into(ep, in);
                continue;
            }
            req.renewed();
            decide(req, [&](Action::Kind kind, Message* reply) {
                // What the handler left of the request goes before the
                // answer does (handles it did not take are closed).
                in.message.close_handles();
                if (kind != Action::Kind::Reply) {
                    if (stopped_) {
                        finished = true;
                    } else {
                        got = recv_into(ep, in);
                    }
                    return;
                }
                if (stopped_) {
                    reply_last(*reply);
                    finished = true;
                    return;
                }
                got = reply_recv_into(ep, *reply, in);
                if (!got) {
                    // If it was the reply that failed, the call still waits:
                    // tell it why. If it was the receive, there is no call
                    // and this is a harmless refusal, and the receive says
                    // again what is wrong.
                    (void)ipc::reply(error_reply(got.error()));
                    got = recv_into(ep, in);
                }
            });
        }
        return abi::Err::Ok;
    }

    // Ends run() after the message being handled.
    void stop() { stopped_ = true; }

  private:
    static constexpr bool kHasRegisterLane = requires(S & s, RegisterCall& c, RegisterReply& o) {
        { s.on_register_call(c, o) } -> std::same_as<Lane>;
    };

    // The answer to the last call run() handles once stop() was asked: a
    // plain reply (no receive follows), and if the kernel refuses it (a
    // handle it cannot move, say) the caller, still waiting, is told why.
    static void reply_last(Message& m) {
        Status st = ipc::reply(m);
        if (!st) (void)ipc::reply(error_reply(st.error()));
    }

    // A register-only call: the call bit, and no payload, no handles, no
    // reserved bit in the info word; a label below the notice range. (A
    // ping is one too: the lane leaves it General, as every label it does
    // not know.)
    static bool register_call(const sys::Ret& r) {
        return r.ok() && (r.r1 >> 32) == (uint64_t{1} << 15) &&
               uint32_t(r.r1) < abi::kNoticeLabelBase;
    }

    // run() for a struct with a register lane: what arrives is looked at in
    // the registers first (on_register_call), and only what the lane leaves
    // is decoded into the one Request and goes the way run() sends every
    // message, with the same answers, errors and stop().
    abi::Err run_with_register_lane(const Endpoint& ep) {
        stopped_ = false;
        Request req;
        Received& in = req.received();
        sys::Ret got = recv_raw(ep);
        for (;;) {
            if (register_call(got)) {
                RegisterCall call(uint32_t(got.r1), got.r0, got.words);
                RegisterReply out;
                Lane lane = state_.on_register_call(call, out);
                if (lane == Lane::Answered) {
                    if (stopped_) {
                        Message m(out.label);
                        for (unsigned i = 0; i < abi::kMessageWords; ++i)
                            m.set_word(i, out.words[i]);
                        reply_last(m);
                        return abi::Err::Ok;
                    }
                    got = sys::invoke(abi::Sys::ReplyRecv, ep.get(), out.label, out.words[0],
                                      out.words[1], out.words[2], out.words[3], abi::kForever);
                    if (!got.ok()) {
                        (void)ipc::reply(error_reply(got.status));  // as run()
                        got = recv_raw(ep);
                    }
                    continue;
                }
                if (lane == Lane::Deferred) {
                    if (stopped_) return abi::Err::Ok;
                    got = recv_raw(ep);
                    continue;
                }
            }
            Status st = decode_raw(got, in);
            if (!st) {
                if (!detail::loop_survives(st.error())) return st.error();
                got = recv_raw(ep);
                continue;
            }
            req.renewed();
            bool finished = false;
            decide(req, [&](Action::Kind kind, Message* reply) {
                in.message.close_handles();
                if (kind != Action::Kind::Reply) {
                    if (stopped_) {
                        finished = true;
                    } else {
                        got = recv_raw(ep);
                    }
                    return;
                }
                if (stopped_) {
                    reply_last(*reply);
                    finished = true;
                    return;
                }
                got = reply_recv_raw(ep, *reply);
                if (!got.ok()) {
                    (void)ipc::reply(error_reply(got.status));
                    got = recv_raw(ep);
                }
            });
            if (finished) return abi::Err::Ok;
        }
    }

    // The decision for the message in `req`: calls done(kind, reply) once,
    // with the reply to send (kind Reply) or null, while the reply is still
    // where the handler built it.
    template <typename Done>
    void decide(Request& req, Done&& done) {
        const Received& r = req.received();
        if (r.is_notice() && !r.call) {
            if constexpr (requires(S & s, const Received& n) { s.on_notice(n); }) {
                state_.on_notice(r);
            }
            return done(Action::Kind::None, nullptr);
        }
        bool call = r.call;
        const Route<S>* route = find(r.message.label());
        if (route == nullptr) {
            if (!call) return done(Action::Kind::None, nullptr);
            // Looked at only here, off the path of the server's own calls.
            Message answer = r.message.label() == kLabelPing ? Message(kStatusOk)
                                                             : error_reply(abi::Err::Unsupported);
            return done(Action::Kind::Reply, &answer);
        }
        if (route->co_handler != nullptr) {
            Action a = detail::start_task((state_.*(route->co_handler))(std::move(req)), call);
            return done(a.kind, a.kind == Action::Kind::Reply ? &a.reply : nullptr);
        }
        Response resp = (state_.*(route->handler))(req);
        if (!call) return done(Action::Kind::None, nullptr);  // nobody to answer
        if (req.deferred()) return done(Action::Kind::Deferred, nullptr);
        if (resp.is_deferred()) {
            // "Deferred" without a defer(): nobody would answer, so answer now.
            Message bad = error_reply(abi::Err::BadState);
            return done(Action::Kind::Reply, &bad);
        }
        return done(Action::Kind::Reply, &resp.message());
    }

    const Route<S>* find(uint32_t label) const {
        for (size_t i = 0; i < count_; ++i) {
            if (routes_[i].label == label) return &routes_[i];
        }
        return nullptr;
    }

    S& state_;
    const Route<S>* routes_;
    size_t count_;
    bool stopped_ = false;
};

}  // namespace mk::ipc
