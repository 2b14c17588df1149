// What the servers' state machines are driven with on the host: requests
// whose deferred replies are recorded, with callers that can die.
//
//   Calls calls;
//   CallRef c = calls.issue(pipes, &Pipes::read, Message(kRead).set_word(0, 8), badge);
//   EXPECT_TRUE(c->waiting());          // deferred, not answered yet
//   ... c->kill();                      // the caller dies: a reply to it fails
//   EXPECT_EQ(c->label, kStatusOk);     // once answered
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "mk/server.hpp"

namespace mk::servers_test {

using ipc::Message;
using ipc::Response;
using ipc::Result;
using ipc::Status;

// Counts answers across every call, so a test can tell which of two
// callers was answered (and, in the server, woken and donated to) first.
inline uint64_t next_answer_seq() {
    static uint64_t seq = 0;
    return ++seq;
}

// One call, as its caller sees it.
struct CallState {
    bool alive = true;  // the caller still waits (a reply can reach it)
    bool deferred = false;
    int answers = 0;       // replies that reached it: must end up exactly 1
    bool dropped = false;  // its deferred reply went away unanswered (PeerDied)
    uint32_t label = 0;
    uint64_t words[abi::kMessageWords] = {};
    std::string payload;
    uint32_t handles = 0;
    uint64_t seq = 0;  // when it was answered (next_answer_seq), 0: not yet

    bool waiting() const { return alive && answers == 0 && !dropped; }
    bool ok() const { return answers == 1 && label == ipc::kStatusOk; }
    abi::Err status() const { return abi::Err(label); }
    void kill() { alive = false; }

    void take(const Message& m) {
        ++answers;
        seq = next_answer_seq();
        label = m.label();
        for (unsigned i = 0; i < abi::kMessageWords; ++i) words[i] = m.word(i);
        payload.assign(reinterpret_cast<const char*>(m.payload()), m.length());
        handles = m.handle_count();
    }
};
using CallRef = std::shared_ptr<CallState>;

// ipc::DeferredReply's stand-in: answered at most once; a send to a dead
// caller fails (as the kernel's BadHandle), and one dropped unanswered
// marks the caller dropped, as closing the reply handle wakes it with
// PeerDied.
class FakeReply {
  public:
    FakeReply() = default;
    explicit FakeReply(CallRef c) : call_(std::move(c)) {}
    FakeReply(FakeReply&&) noexcept = default;
    FakeReply& operator=(FakeReply&& o) noexcept {
        drop();
        call_ = std::move(o.call_);
        return *this;
    }
    ~FakeReply() { drop(); }

    bool pending() const { return call_ != nullptr; }
    explicit operator bool() const { return pending(); }

    Status send(Message& m) {
        if (!call_) return abi::Err::BadState;
        CallRef c = std::move(call_);
        if (!c->alive) return abi::Err::BadHandle;
        c->take(m);
        return Status();
    }
    Status send(Message&& m) { return send(m); }
    // ipc::Reply's register-only answer.
    Status send(uint32_t label, const uint64_t (&words)[abi::kMessageWords]) {
        Message m(label);
        for (unsigned i = 0; i < abi::kMessageWords; ++i) m.set_word(i, words[i]);
        return send(m);
    }
    Status fail(abi::Err e) {
        Message m = ipc::error_reply(e);
        return send(m);
    }
    void drop() {
        if (call_) call_->dropped = true;
        call_ = nullptr;
    }

  private:
    CallRef call_;
};

// ipc::Request's stand-in.
class FakeRequest {
  public:
    FakeRequest(Message&& m, uint64_t badge, bool call, CallRef state)
        : message_(std::move(m)), badge_(badge), call_(call), state_(std::move(state)) {}

    Message& message() { return message_; }
    const Message& message() const { return message_; }
    uint32_t label() const { return message_.label(); }
    uint64_t badge() const { return badge_; }
    bool expects_reply() const { return call_; }
    Result<FakeReply> defer() {
        if (!call_ || state_->deferred) return abi::Err::BadState;
        state_->deferred = true;
        return FakeReply(state_);
    }

  private:
    Message message_;
    uint64_t badge_;
    bool call_;
    CallRef state_;
};

// Issues requests to a state machine's handler and records what the caller
// gets: the handler's return value at once, or a deferred reply later.
template <typename Handler>
CallRef issue(Handler&& handler, Message&& m, uint64_t badge, bool call = true) {
    CallRef state = std::make_shared<CallState>();
    FakeRequest req(std::move(m), badge, call, state);
    Response r = handler(req);
    // A handler that says "deferred" has taken the reply over, and only then.
    EXPECT_EQ(r.is_deferred(), state->deferred);
    if (call && !r.is_deferred()) state->take(r.message());
    return state;
}

}  // namespace mk::servers_test
