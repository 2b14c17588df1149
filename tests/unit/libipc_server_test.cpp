// The server framework over the fake kernel: dispatch by label, default and
// error replies, deferred replies answered later / dropped / answered twice,
// coroutine handlers resumed later, notices, and the receive loop.
#include <gtest/gtest.h>

#include <deque>
#include <vector>

#include "libipc_fixture.hpp"
#include "mk/server.hpp"

namespace mk::ipc {
namespace {

using testing::Delivery;
using testing::Syscall;

enum Label : uint32_t {
    kAdd = 1,
    kNote,
    kFail,
    kLater,
    kLie,
    kSync,
    kTake,
    kPut,
    kStop,
};

struct Counter {
    Server<Counter>* server = nullptr;
    uint64_t sum = 0;
    int notes = 0;
    std::vector<DeferredReply> held;
    std::deque<uint64_t> items;
    std::vector<uint32_t> notices;
    WaitList takers;

    Response add(Request& r) {
        sum += r.message().word(0);
        return Message(kStatusOk).set_word(0, sum);
    }
    Response note(Request&) {
        ++notes;
        return abi::Err::Ok;
    }
    Response fail(Request&) { return abi::Err::NoRights; }
    Response later(Request& r) {
        Result<DeferredReply> d = r.defer();
        if (!d) return d.error();
        held.push_back(std::move(d).value());
        return Response::deferred();
    }
    Response lie(Request&) { return Response::deferred(); }  // never called defer()
    Task sync(Request req) { co_return Message(kStatusOk).set_word(0, req.message().word(0) * 2); }
    Task take(Request req) {
        while (items.empty()) co_await takers.wait(req.badge());
        uint64_t v = items.front();
        items.pop_front();
        co_return Message(kStatusOk).set_word(0, v);
    }
    Response put(Request& r) {
        items.push_back(r.message().word(0));
        takers.wake_one();
        return abi::Err::Ok;
    }
    Response stop(Request&) {
        server->stop();
        return Message(kStatusOk).set_word(0, 0x5709);
    }
    void on_notice(const Received& n) {
        notices.push_back(n.message.label());
        if (n.message.label() == abi::kLabelLastHandle) takers.cancel(n.message.word(0));
    }
};

constexpr Route<Counter> kRoutes[] = {
    {kAdd, &Counter::add},     {kNote, &Counter::note}, {kFail, &Counter::fail},
    {kLater, &Counter::later}, {kLie, &Counter::lie},   {kSync, &Counter::sync},
    {kTake, &Counter::take},   {kPut, &Counter::put},   {kStop, &Counter::stop},
};

Received incoming(uint32_t label, bool call, uint64_t badge = 0, uint64_t w0 = 0) {
    Received r;
    r.message = Message(label).set_word(0, w0);
    r.badge = badge;
    r.call = call;
    return r;
}

// A server of `State` with `routes`, which its state knows (State::server).
template <typename State, const auto& routes>
class ServerTest : public LibipcTest {
  protected:
    State state_;
    Server<State> server_{state_, routes};

    void SetUp() override {
        LibipcTest::SetUp();
        state_.server = &server_;
    }
};

class LibipcServer : public ServerTest<Counter, kRoutes> {};

TEST_F(LibipcServer, DispatchesByLabelAndRepliesWithTheReturnValue) {
    Action a = server_.dispatch(incoming(kAdd, true, 0, 5));
    ASSERT_EQ(a.kind, Action::Kind::Reply);
    EXPECT_EQ(a.reply.label(), kStatusOk);
    EXPECT_EQ(a.reply.word(0), 5u);
    a = server_.dispatch(incoming(kAdd, true, 0, 3));
    EXPECT_EQ(a.reply.word(0), 8u);
    EXPECT_TRUE(kernel().calls.empty());  // dispatch decides; the loop replies
}

TEST_F(LibipcServer, AnErrorReturnIsAnErrorReply) {
    Action a = server_.dispatch(incoming(kFail, true));
    ASSERT_EQ(a.kind, Action::Kind::Reply);
    EXPECT_EQ(reply_status(a.reply), abi::Err::NoRights);
    a = server_.dispatch(incoming(kNote, true));
    EXPECT_EQ(reply_status(a.reply), abi::Err::Ok);
}

TEST_F(LibipcServer, UnknownLabelsGetUnsupported) {
    Action a = server_.dispatch(incoming(777, true));
    ASSERT_EQ(a.kind, Action::Kind::Reply);
    EXPECT_EQ(reply_status(a.reply), abi::Err::Unsupported);
    EXPECT_EQ(server_.dispatch(incoming(777, false)).kind, Action::Kind::None);
}

TEST_F(LibipcServer, ASendRunsItsHandlerAndGetsNoReply) {
    EXPECT_EQ(server_.dispatch(incoming(kNote, false)).kind, Action::Kind::None);
    EXPECT_EQ(state_.notes, 1);
    // Nothing to defer either.
    EXPECT_EQ(server_.dispatch(incoming(kLater, false)).kind, Action::Kind::None);
    EXPECT_TRUE(state_.held.empty());
    EXPECT_EQ(kernel().count(abi::Sys::ReplySave), 0u);
}

TEST_F(LibipcServer, ADeferredReplyIsAnsweredLater) {
    Action a = server_.dispatch(incoming(kLater, true));
    EXPECT_EQ(a.kind, Action::Kind::Deferred);
    ASSERT_EQ(state_.held.size(), 1u);
    EXPECT_EQ(kernel().count(abi::Sys::ReplySave), 1u);
    EXPECT_EQ(kernel().count(abi::Sys::Reply), 0u);
    abi::HandleValue h = state_.held[0].handle();

    server_.dispatch(incoming(kAdd, true, 0, 1));  // other work meanwhile
    ASSERT_TRUE(state_.held[0].send(Message(kStatusOk).set_word(0, 99)).ok());
    const Syscall* s = kernel().last(abi::Sys::Reply);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->a[0], uint64_t(h));
    EXPECT_EQ(s->word(0), 99u);
    state_.held.clear();
    EXPECT_EQ(kernel().closes(h), 0);  // consumed by its answer
}

TEST_F(LibipcServer, ADroppedDeferredReplyAnswersWithAnErrorOnce) {
    server_.dispatch(incoming(kLater, true));
    abi::HandleValue h = state_.held[0].handle();
    std::vector<DeferredReply> moved = std::move(state_.held);
    moved.clear();                     // dropped unanswered
    EXPECT_EQ(kernel().closes(h), 1);  // the kernel wakes the caller with PeerDied
    EXPECT_EQ(kernel().count(abi::Sys::Reply), 0u);
    EXPECT_EQ(kernel().count(abi::Sys::HandleClose), 1u);
}

TEST_F(LibipcServer, ADeferredReplyCannotBeAnsweredTwice) {
    server_.dispatch(incoming(kLater, true));
    DeferredReply& d = state_.held[0];
    ASSERT_TRUE(d.send(Message(kStatusOk)).ok());
    EXPECT_EQ(d.send(Message(kStatusOk)).error(), abi::Err::BadState);
    EXPECT_EQ(d.fail(abi::Err::TimedOut).error(), abi::Err::BadState);
    state_.held.clear();
    EXPECT_EQ(kernel().count(abi::Sys::Reply), 1u);
    EXPECT_EQ(kernel().count(abi::Sys::HandleClose), 0u);
}

TEST_F(LibipcServer, SayingDeferredWithoutDeferringStillAnswers) {
    Action a = server_.dispatch(incoming(kLie, true));
    ASSERT_EQ(a.kind, Action::Kind::Reply);
    EXPECT_EQ(reply_status(a.reply), abi::Err::BadState);
}

TEST_F(LibipcServer, ACoroutineThatFinishesAtOnceRepliesAtOnce) {
    Action a = server_.dispatch(incoming(kSync, true, 0, 21));
    ASSERT_EQ(a.kind, Action::Kind::Reply);
    EXPECT_EQ(a.reply.word(0), 42u);
    EXPECT_EQ(kernel().count(abi::Sys::ReplySave), 0u);
}

TEST_F(LibipcServer, ACoroutineResumedLaterReplies) {
    Action a = server_.dispatch(incoming(kTake, true, 3));
    EXPECT_EQ(a.kind, Action::Kind::Deferred);
    EXPECT_EQ(kernel().count(abi::Sys::ReplySave), 1u);
    EXPECT_EQ(state_.takers.size(), 1u);
    abi::HandleValue saved = abi::HandleValue(kernel().next_handle - 1);

    // The put wakes the take, which replies through its saved handle before
    // the put itself is answered.
    a = server_.dispatch(incoming(kPut, true, 4, 77));
    ASSERT_EQ(a.kind, Action::Kind::Reply);
    EXPECT_EQ(reply_status(a.reply), abi::Err::Ok);
    EXPECT_TRUE(state_.takers.empty());
    const Syscall* s = kernel().last(abi::Sys::Reply);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->a[0], uint64_t(saved));
    EXPECT_EQ(s->label(), kStatusOk);
    EXPECT_EQ(s->word(0), 77u);
    EXPECT_EQ(kernel().closes(saved), 0);
}

TEST_F(LibipcServer, WaitingCoroutinesAreServedInArrivalOrder) {
    server_.dispatch(incoming(kTake, true, 1));
    server_.dispatch(incoming(kTake, true, 2));
    ASSERT_EQ(state_.takers.size(), 2u);
    server_.dispatch(incoming(kPut, false, 9, 10));
    server_.dispatch(incoming(kPut, false, 9, 20));
    std::vector<std::pair<uint64_t, uint64_t>> replies;  // (handle, value)
    for (const Syscall& c : kernel().calls) {
        if (c.number == abi::Sys::Reply) replies.emplace_back(c.a[0], c.word(0));
    }
    ASSERT_EQ(replies.size(), 2u);
    EXPECT_EQ(replies[0], std::make_pair(uint64_t{0x100}, uint64_t{10}));
    EXPECT_EQ(replies[1], std::make_pair(uint64_t{0x101}, uint64_t{20}));
}

TEST_F(LibipcServer, ACancelledCoroutineAnswersWithAnError) {
    server_.dispatch(incoming(kTake, true, 7));
    server_.dispatch(incoming(kTake, true, 8));
    Received notice = incoming(abi::kLabelLastHandle, false, 0, 7);  // client 7 is gone
    EXPECT_EQ(server_.dispatch(std::move(notice)).kind, Action::Kind::None);
    ASSERT_EQ(state_.notices.size(), 1u);
    EXPECT_EQ(state_.notices[0], abi::kLabelLastHandle);
    EXPECT_EQ(state_.takers.size(), 1u);
    EXPECT_EQ(kernel().closes(0x100), 1);  // client 7's call: PeerDied
    EXPECT_EQ(kernel().closes(0x101), 0);
    EXPECT_EQ(kernel().count(abi::Sys::Reply), 0u);
}

TEST_F(LibipcServer, AWaitListGoingAwayCancelsItsWaiters) {
    {
        Counter other;
        Server<Counter> s(other, kRoutes);
        s.dispatch(incoming(kTake, true));
        s.dispatch(incoming(kTake, false));  // a send: nothing to answer
        EXPECT_EQ(other.takers.size(), 2u);
    }
    EXPECT_EQ(kernel().count(abi::Sys::ReplySave), 1u);
    EXPECT_EQ(kernel().closes(0x100), 1);
    EXPECT_EQ(kernel().total_closes(), 1u);
}

struct Plain {
    Response echo(Request& r) { return std::move(r.message()); }
};
constexpr Route<Plain> kPlainRoutes[] = {{1, &Plain::echo}};

TEST_F(LibipcServer, NoticesWithoutAHandlerAreIgnored) {
    Plain p;
    Server<Plain> s(p, kPlainRoutes);
    EXPECT_EQ(s.dispatch(incoming(abi::kLabelChildDied, false)).kind, Action::Kind::None);
    // A "notice" that expects a reply is no notice: an unknown label.
    Action a = s.dispatch(incoming(abi::kLabelChildDied, true));
    ASSERT_EQ(a.kind, Action::Kind::Reply);
    EXPECT_EQ(reply_status(a.reply), abi::Err::Unsupported);
    a = s.dispatch(incoming(1, true, 0, 123));
    EXPECT_EQ(a.reply.label(), 1u);
    EXPECT_EQ(a.reply.word(0), 123u);
}

// A ping is answered Ok by any server and touches no state; sent without
// waiting for an answer, it is dropped as any send with no route.
TEST_F(LibipcServer, APingIsAnsweredOkByEveryServer) {
    Action a = server_.dispatch(incoming(kLabelPing, true));
    ASSERT_EQ(a.kind, Action::Kind::Reply);
    EXPECT_EQ(a.reply.label(), kStatusOk);
    EXPECT_EQ(a.reply.word(0), 0u);
    EXPECT_EQ(server_.dispatch(incoming(kLabelPing, false)).kind, Action::Kind::None);
    EXPECT_EQ(state_.notes, 0);
    Plain p;
    Server<Plain> plain(p, kPlainRoutes);
    EXPECT_EQ(reply_status(plain.dispatch(incoming(kLabelPing, true)).reply), abi::Err::Ok);
}

// --- the loop ---

std::vector<abi::Sys> numbers(const std::vector<Syscall>& calls) {
    std::vector<abi::Sys> out;
    for (const Syscall& c : calls) out.push_back(c.number);
    return out;
}

TEST_F(LibipcServer, TheLoopRepliesWithTheNextReceive) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 1, {5}));
    kernel().deliveries.push_back(Delivery::message(kNote, false, 1));
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 2, {2}));
    kernel().deliveries.push_back(Delivery::message(999, true, 2));
    EXPECT_EQ(server_.run(ep), abi::Err::Destroyed);  // the fake ran out of clients

    using S = abi::Sys;
    std::vector<S> expect = {S::Recv,      S::ReplyRecv, S::Recv, S::ReplyRecv,
                             S::ReplyRecv, S::Reply,     S::Recv};
    EXPECT_EQ(numbers(kernel().calls), expect);
    const auto& c = kernel().calls;
    EXPECT_EQ(c[0].a[0], 0x10u);
    EXPECT_EQ(c[1].word(0), 5u);  // the first add's reply
    EXPECT_EQ(c[3].word(0), 7u);
    EXPECT_EQ(c[4].label(), uint32_t(abi::Err::Unsupported));
    EXPECT_EQ(state_.notes, 1);
}

TEST_F(LibipcServer, StopEndsTheLoopAfterReplying) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(kStop, true));
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 0, {1}));  // never received
    EXPECT_EQ(server_.run(ep), abi::Err::Ok);
    using S = abi::Sys;
    EXPECT_EQ(numbers(kernel().calls), (std::vector<S>{S::Recv, S::Reply}));
    EXPECT_EQ(kernel().last(S::Reply)->word(0), 0x5709u);
    EXPECT_EQ(kernel().deliveries.size(), 1u);
}

TEST_F(LibipcServer, ARefusedReplyBecomesAnErrorReply) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 0, {1}));
    kernel().deliveries.push_back(Delivery::message(kStop, true));
    kernel().fail_next[abi::Sys::ReplyRecv] = abi::Err::BadHandle;
    EXPECT_EQ(server_.run(ep), abi::Err::Ok);
    using S = abi::Sys;
    EXPECT_EQ(numbers(kernel().calls),
              (std::vector<S>{S::Recv, S::ReplyRecv, S::Reply, S::Recv, S::Reply}));
    EXPECT_EQ(kernel().calls[2].label(), uint32_t(abi::Err::BadHandle));
}

TEST_F(LibipcServer, TheLoopWaitsAgainAfterAnInterruptionAndEndsOnABadEndpoint) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::error(abi::Err::Interrupted));
    kernel().deliveries.push_back(Delivery::message(kNote, false));
    kernel().deliveries.push_back(Delivery::error(abi::Err::NoRights));
    EXPECT_EQ(server_.run(ep), abi::Err::NoRights);
    EXPECT_EQ(state_.notes, 1);
    EXPECT_EQ(kernel().count(abi::Sys::Recv), 3u);
}

// --- the register lane ---

// A struct with a register lane: kAdd is answered there (a running sum),
// kLater deferred there, everything else left to the routes (General).
struct Laned {
    Server<Laned>* server = nullptr;
    uint64_t sum = 0;
    int lane_calls = 0;
    int route_calls = 0;
    std::vector<DeferredReply> held;
    std::vector<uint32_t> notices;

    Lane on_register_call(RegisterCall& c, RegisterReply& out) {
        ++lane_calls;
        EXPECT_TRUE(c.expects_reply());
        if (c.label() == kAdd) {
            sum += c.word(0);
            out.words[0] = sum;
            out.words[3] = c.badge();
            return Lane::Answered;
        }
        if (c.label() == kLater) {
            Result<DeferredReply> d = c.defer();
            EXPECT_TRUE(bool(d));
            EXPECT_FALSE(bool(c.defer()));  // once
            held.push_back(std::move(d).value());
            return Lane::Deferred;
        }
        if (c.label() == kFail) {
            out.label = uint32_t(abi::Err::NoRights);
            return Lane::Answered;
        }
        if (c.label() == kStop) server->stop();
        return Lane::General;
    }
    Response routed(Request& r) {
        ++route_calls;
        return Message(kStatusOk).set_word(0, r.message().length());
    }
    Response stop(Request&) {
        ++route_calls;
        return Message(kStatusOk).set_word(0, 0x5709);
    }
    void on_notice(const Received& n) { notices.push_back(n.message.label()); }
};
constexpr Route<Laned> kLanedRoutes[] = {
    {kAdd, &Laned::routed}, {kNote, &Laned::routed}, {kPut, &Laned::routed}, {kStop, &Laned::stop}};

class LibipcServerLane : public ServerTest<Laned, kLanedRoutes> {};

// Register calls are answered from the registers with the next receive
// (ReplyRecv with the lane's words), deferred ones followed by a plain
// Recv; a call with a payload, a send and a notice are not the lane's:
// decoded and routed as by any server; a call the lane leaves General
// goes to its route.
TEST_F(LibipcServerLane, RegisterCallsAreAnsweredStraightFromTheRegisters) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 7, {5}));
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 8, {2}));
    kernel().deliveries.push_back(Delivery::message(kLater, true, 9));
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 0, {1}, {1, 2, 3}));  // payload
    kernel().deliveries.push_back(Delivery::message(kNote, false));                   // a send
    kernel().deliveries.push_back(Delivery::message(abi::kLabelLastHandle, false, 0, {4}));
    kernel().deliveries.push_back(Delivery::message(kPut, true));  // the lane leaves it
    kernel().deliveries.push_back(Delivery::message(kFail, true));
    EXPECT_EQ(server_.run(ep), abi::Err::Destroyed);  // the fake ran out of clients

    using S = abi::Sys;
    std::vector<S> expect = {S::Recv,      S::ReplyRecv, S::ReplyRecv, S::ReplySave, S::Recv,
                             S::ReplyRecv, S::Recv,      S::Recv,      S::ReplyRecv, S::ReplyRecv,
                             S::Reply,     S::Recv};  // the last answer's receive fails: as run()
    EXPECT_EQ(numbers(kernel().calls), expect);
    const auto& c = kernel().calls;
    EXPECT_EQ(c[1].label(), kStatusOk);
    EXPECT_EQ(c[1].word(0), 5u);
    EXPECT_EQ(c[1].word(3), 7u);  // the badge the lane saw
    EXPECT_EQ(c[2].word(0), 7u);
    EXPECT_EQ(c[5].word(0), 3u);  // the payload call, routed: its length
    EXPECT_EQ(c[8].word(0), 0u);  // kPut, routed
    EXPECT_EQ(c[9].label(), uint32_t(abi::Err::NoRights));
    EXPECT_EQ(state_.lane_calls, 5);   // the register calls: 2 adds, later, put, fail
    EXPECT_EQ(state_.route_calls, 3);  // the payload call, the send, put
    EXPECT_EQ(state_.notices, std::vector<uint32_t>{abi::kLabelLastHandle});
    EXPECT_EQ(state_.held.size(), 1u);
}

// The lane leaves a ping General, as any label it does not know; the
// general path answers it.
TEST_F(LibipcServerLane, APingPassesTheLaneAndIsAnswered) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(kLabelPing, true));
    EXPECT_EQ(server_.run(ep), abi::Err::Destroyed);  // the fake ran out of clients
    using S = abi::Sys;
    EXPECT_EQ(numbers(kernel().calls), (std::vector<S>{S::Recv, S::ReplyRecv, S::Reply, S::Recv}));
    EXPECT_EQ(kernel().calls[1].label(), kStatusOk);
    EXPECT_EQ(state_.lane_calls, 1);
    EXPECT_EQ(state_.route_calls, 0);
}

// A reply the kernel refuses becomes an error reply, then a plain
// receive, as in the loop without a lane; stop() from a General call ends
// the loop after its route's reply.
TEST_F(LibipcServerLane, ARefusedReplyBecomesAnErrorReplyAndStopEndsTheLoop) {
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 0, {1}));
    kernel().deliveries.push_back(Delivery::message(kStop, true));
    kernel().deliveries.push_back(Delivery::message(kAdd, true, 0, {1}));  // never received
    kernel().fail_next[abi::Sys::ReplyRecv] = abi::Err::BadHandle;
    EXPECT_EQ(server_.run(ep), abi::Err::Ok);
    using S = abi::Sys;
    EXPECT_EQ(numbers(kernel().calls),
              (std::vector<S>{S::Recv, S::ReplyRecv, S::Reply, S::Recv, S::Reply}));
    EXPECT_EQ(kernel().calls[2].label(), uint32_t(abi::Err::BadHandle));
    EXPECT_EQ(kernel().calls[4].word(0), 0x5709u);
    EXPECT_EQ(kernel().deliveries.size(), 1u);
}

// A saved reply answered from the registers: the label and words, no
// payload; once. A label in the notice range is refused and it stays
// pending.
TEST_F(LibipcServerLane, ASavedReplyAnswersFromTheRegisters) {
    kernel().deliveries.push_back(Delivery::message(kLater, true));
    Endpoint ep(0x10);
    kernel().deliveries.push_back(Delivery::error(abi::Err::NoRights));  // ends the loop
    EXPECT_EQ(server_.run(ep), abi::Err::NoRights);
    ASSERT_EQ(state_.held.size(), 1u);
    DeferredReply& r = state_.held[0];
    const uint64_t words[abi::kMessageWords] = {1, 2, 3, 4};
    EXPECT_EQ(r.send(abi::kLabelLastHandle, words).error(), abi::Err::InvalidArgument);
    EXPECT_TRUE(r.pending());
    EXPECT_TRUE(r.send(kStatusOk, words));
    EXPECT_FALSE(r.pending());
    const Syscall* sent = kernel().last(abi::Sys::Reply);
    ASSERT_NE(sent, nullptr);
    EXPECT_EQ(sent->label(), kStatusOk);
    EXPECT_EQ(sent->word(3), 4u);
    EXPECT_EQ(r.send(kStatusOk, words).error(), abi::Err::BadState);
}

}  // namespace
}  // namespace mk::ipc
