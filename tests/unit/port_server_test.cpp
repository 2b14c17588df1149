// The port server's state machine (servers/port/ports.hpp): packets back
// unchanged and in order, waiters woken one per post in arrival order, min
// and max, polls, the deadline rule, a full port that blocks its posters
// and drops nothing, closing, callers that die or time out while they
// wait, the bounds, every bad request getting a clear error, and a
// randomized run against the rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "port/ports.hpp"
#include "server_fakes.hpp"

namespace mk::servers_test {
namespace {

using Ports = port_server::Ports<FakeReply>;
using port::badge_of;
using port::Packet;

Packet pk(uint64_t i) {
    return Packet{i, i * 10 + 1, {i * 100 + 2, ~i}};
}

bool same(const Packet& a, const Packet& b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
}

// The packets an answered wait carries, read as the client reads them
// (port::take_packets): the first in the words, the rest in the payload,
// or kPortEmpty for none.
std::vector<Packet> packets_of(const CallRef& c) {
    EXPECT_EQ(c->answers, 1);
    Message m(c->label);
    for (unsigned i = 0; i < abi::kMessageWords; ++i) m.set_word(i, c->words[i]);
    m.append(c->payload.data(), c->payload.size());
    std::vector<Packet> out(port::kMaxBatch);
    Result<size_t> n = port::take_packets(m, out.data(), port::kMaxBatch, 0);
    EXPECT_TRUE(n.ok()) << int(n.ok() ? abi::Err::Ok : n.error());
    out.resize(n.ok() ? *n : 0);
    return out;
}

std::vector<uint64_t> keys_of(const CallRef& c) {
    std::vector<uint64_t> keys;
    for (const Packet& p : packets_of(c)) keys.push_back(p.key);
    return keys;
}

std::vector<uint64_t> range(uint64_t from, uint64_t to) {
    std::vector<uint64_t> v;
    for (uint64_t i = from; i < to; ++i) v.push_back(i);
    return v;
}

class PortServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        id_ = ports_.create();
        ASSERT_NE(id_, 0u);
        port_ = badge_of(id_);
    }
    void TearDown() override { check(id_); }

    CallRef post(const Packet& p, uint64_t badge = 0, bool call = true) {
        return issue([this](FakeRequest& r) { return ports_.post(r); },
                     post_message(port::kPost, p), badge != 0 ? badge : port_, call);
    }
    CallRef try_post(const Packet& p, uint64_t badge = 0) {
        return issue([this](FakeRequest& r) { return ports_.try_post(r); },
                     post_message(port::kTryPost, p), badge != 0 ? badge : port_);
    }
    CallRef wait(uint64_t max, uint64_t min, uint64_t badge = 0, bool call = true) {
        return issue([this](FakeRequest& r) { return ports_.wait(r); },
                     Message(port::kWait).set_word(0, max).set_word(1, min),
                     badge != 0 ? badge : port_, call);
    }
    CallRef close(uint64_t badge = 0) {
        return issue([this](FakeRequest& r) { return ports_.close(r); }, Message(port::kClose),
                     badge != 0 ? badge : port_);
    }
    static Message post_message(uint32_t label, const Packet& p) {
        return Message(label)
            .set_word(0, p.key)
            .set_word(1, p.status)
            .set_word(2, p.data[0])
            .set_word(3, p.data[1]);
    }
    // Posts keys [from, to), each accepted at once.
    void post_range(uint64_t from, uint64_t to) {
        for (uint64_t i = from; i < to; ++i) ASSERT_TRUE(post(pk(i))->ok()) << i;
    }

    // The invariants of ports.hpp, for one port.
    void check(uint64_t id) {
        Ports::Info i = ports_.info(id);
        if (!i.exists) return;
        if (i.closed) {
            EXPECT_EQ(i.queued + i.waiters + i.posters, 0u);
            return;
        }
        if (i.waiters > 0) {
            EXPECT_LT(i.queued, i.least_min);
        }
        if (i.posters > 0) {
            EXPECT_EQ(i.queued, port::kCapacity);
        }
        EXPECT_LE(i.queued, port::kCapacity);
        EXPECT_LE(i.waiters, port::kMaxWaiters);
        EXPECT_LE(i.posters, port::kMaxPosters);
    }

    Ports ports_;
    uint64_t id_ = 0;
    uint64_t port_ = 0;
};

TEST_F(PortServerTest, PacketsComeBackUnchangedInTheOrderPosted) {
    Packet odd{~0ull, 0x8000000000000000ull, {0, 0xDEADBEEFCAFEF00Dull}};
    EXPECT_TRUE(post(pk(1))->ok());
    EXPECT_TRUE(post(odd)->ok());
    EXPECT_TRUE(post(pk(3))->ok());
    EXPECT_EQ(ports_.info(id_).queued, 3u);
    std::vector<Packet> got = packets_of(wait(port::kMaxBatch, 1));
    ASSERT_EQ(got.size(), 3u);
    EXPECT_TRUE(same(got[0], pk(1)));
    EXPECT_TRUE(same(got[1], odd));
    EXPECT_TRUE(same(got[2], pk(3)));
    EXPECT_EQ(ports_.info(id_).queued, 0u);
}

TEST_F(PortServerTest, AWaitOnAnEmptyPortWaitsAndTheNextPostAnswersIt) {
    CallRef w = wait(4, 1);
    EXPECT_TRUE(w->waiting());
    EXPECT_EQ(ports_.info(id_).waiters, 1u);
    CallRef p = post(pk(9));
    EXPECT_TRUE(p->ok());
    ASSERT_TRUE(w->ok());
    std::vector<Packet> got = packets_of(w);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(same(got[0], pk(9)));
    EXPECT_EQ(ports_.info(id_).queued, 0u);
    EXPECT_EQ(ports_.info(id_).waiters, 0u);
}

// The post's own answer goes out after the waiter's: the server answers
// (and so wakes and donates to) the waiter first, from inside the post.
TEST_F(PortServerTest, TheWokenWaiterIsAnsweredBeforeThePoster) {
    CallRef w = wait(1, 1);
    CallRef p = post(pk(1));
    ASSERT_TRUE(w->ok());
    ASSERT_TRUE(p->ok());
    EXPECT_LT(w->seq, p->seq);
}

// An earlier kernel kept one blocked waiter per port: a second overwrote
// the first, which then never woke. Here every waiter waits, each post
// wakes exactly one, oldest first.
TEST_F(PortServerTest, ASecondWaiterDoesNotOverwriteTheFirstAndEachPostWakesExactlyOne) {
    CallRef w1 = wait(4, 1), w2 = wait(4, 1), w3 = wait(4, 1);
    EXPECT_EQ(ports_.info(id_).waiters, 3u);
    EXPECT_TRUE(post(pk(1))->ok());
    EXPECT_EQ(keys_of(w1), std::vector<uint64_t>{1});
    EXPECT_TRUE(w2->waiting());
    EXPECT_TRUE(w3->waiting());
    check(id_);
    EXPECT_TRUE(post(pk(2))->ok());
    EXPECT_EQ(keys_of(w2), std::vector<uint64_t>{2});
    EXPECT_TRUE(w3->waiting());
    EXPECT_TRUE(post(pk(3))->ok());
    EXPECT_EQ(keys_of(w3), std::vector<uint64_t>{3});
    EXPECT_LT(w1->seq, w2->seq);
    EXPECT_LT(w2->seq, w3->seq);
    EXPECT_EQ(ports_.info(id_).waiters, 0u);
}

// The server decides "nothing there" and registers the waiter in one step:
// no post can fall between them, and none finds the waiter unregistered.
TEST_F(PortServerTest, NoWakeUpIsLostBetweenNothingThereAndRegistered) {
    for (int round = 0; round < 100; ++round) {
        CallRef w = wait(1, 1);
        ASSERT_TRUE(w->waiting());
        ASSERT_EQ(ports_.info(id_).waiters, 1u);  // registered before the handler returned
        ASSERT_TRUE(post(pk(uint64_t(round)))->ok());
        ASSERT_EQ(keys_of(w), std::vector<uint64_t>{uint64_t(round)});
        ASSERT_EQ(ports_.info(id_).queued, 0u);  // it went to the waiter, not the queue
        check(id_);
    }
}

TEST_F(PortServerTest, ABatchReturnsUpToMaxOldestFirst) {
    post_range(0, 40);
    EXPECT_EQ(keys_of(wait(4, 1)), range(0, 4));
    EXPECT_EQ(keys_of(wait(1000, 1)), range(4, 4 + port::kMaxBatch));  // cut to one message
    EXPECT_EQ(keys_of(wait(port::kMaxBatch, 0)), range(19, 34));
    EXPECT_EQ(keys_of(wait(100, 2)), range(34, 40));  // what there is, past min
    EXPECT_EQ(ports_.info(id_).queued, 0u);
}

TEST_F(PortServerTest, MinHoldsAWaiterUntilThatManyAreThere) {
    CallRef w = wait(5, 3);
    EXPECT_TRUE(post(pk(1))->ok());
    EXPECT_TRUE(post(pk(2))->ok());
    EXPECT_TRUE(w->waiting());
    EXPECT_EQ(ports_.info(id_).queued, 2u);
    check(id_);
    EXPECT_TRUE(post(pk(3))->ok());
    EXPECT_EQ(keys_of(w), range(1, 4));
    EXPECT_EQ(ports_.info(id_).queued, 0u);
}

TEST_F(PortServerTest, MinZeroPollsAndNeverWaits) {
    CallRef empty = wait(8, 0);
    EXPECT_FALSE(empty->deferred);
    EXPECT_EQ(empty->label, port::kPortEmpty);  // none: the one reply that is not Ok
    EXPECT_TRUE(keys_of(empty).empty());
    EXPECT_EQ(ports_.info(id_).waiters, 0u);
    post_range(1, 3);
    EXPECT_EQ(keys_of(wait(8, 0)), range(1, 3));
    // A poll with waiters present takes what is there (less than they want).
    CallRef w = wait(5, 5);
    post_range(3, 5);
    CallRef poll = wait(8, 0);
    EXPECT_FALSE(poll->deferred);
    EXPECT_EQ(keys_of(poll), range(3, 5));
    EXPECT_TRUE(w->waiting());
}

// No head-of-line blocking: the oldest waiter whose min is met is served,
// so one wanting 1 is not held up by an older one wanting 5 (which may be
// the entry of a wait that timed out long ago).
TEST_F(PortServerTest, AWaiterWantingLessIsNotHeldUpBehindOneWantingMore) {
    CallRef big = wait(5, 5);
    CallRef small = wait(5, 1);
    EXPECT_TRUE(post(pk(1))->ok());
    EXPECT_EQ(keys_of(small), std::vector<uint64_t>{1});
    EXPECT_TRUE(big->waiting());
    post_range(2, 7);
    EXPECT_EQ(keys_of(big), range(2, 7));
}

TEST_F(PortServerTest, AmongWaitersWhoseMinIsMetTheOlderGoesFirst) {
    CallRef a = wait(2, 2), b = wait(2, 2);
    post_range(1, 3);
    EXPECT_EQ(keys_of(a), range(1, 3));
    EXPECT_TRUE(b->waiting());
    post_range(3, 5);
    EXPECT_EQ(keys_of(b), range(3, 5));
}

// A waiter whose call timed out (or who died) is found out only when the
// server answers it: its packets stay for the next waiter.
TEST_F(PortServerTest, AWaiterThatTimedOutOrDiedLosesNoPackets) {
    CallRef dead = wait(4, 1);
    CallRef live = wait(4, 1);
    dead->kill();
    EXPECT_TRUE(post(pk(1))->ok());
    EXPECT_EQ(dead->answers, 0);
    EXPECT_EQ(keys_of(live), std::vector<uint64_t>{1});
    // With no live waiter left, the packet stays queued for whoever waits.
    CallRef dead2 = wait(4, 1);
    dead2->kill();
    EXPECT_TRUE(post(pk(2))->ok());
    EXPECT_EQ(ports_.info(id_).queued, 1u);
    EXPECT_EQ(ports_.info(id_).waiters, 0u);
    EXPECT_EQ(keys_of(wait(4, 1)), std::vector<uint64_t>{2});
}

// A post to an empty port goes straight to the oldest live waiter that
// wants just one, past older waiters wanting more and dead ones; with none
// such, it is queued as any post is.
TEST_F(PortServerTest, APostToAnEmptyPortGoesToTheOldestLiveWaiterItMeets) {
    CallRef big = wait(4, 2);
    CallRef dead = wait(4, 1);
    CallRef live = wait(4, 1);
    CallRef next = wait(4, 1);
    dead->kill();
    EXPECT_TRUE(post(pk(1))->ok());
    EXPECT_EQ(dead->answers, 0);
    EXPECT_EQ(keys_of(live), std::vector<uint64_t>{1});
    EXPECT_TRUE(big->waiting());
    EXPECT_TRUE(next->waiting());
    EXPECT_EQ(ports_.info(id_).queued, 0u);
    next->kill();
    EXPECT_TRUE(post(pk(2))->ok());  // nobody live wants one: queued
    EXPECT_EQ(ports_.info(id_).queued, 1u);
    EXPECT_TRUE(big->waiting());
    EXPECT_TRUE(post(pk(3))->ok());  // two: big's min is met
    EXPECT_EQ(keys_of(big), range(2, 4));
    EXPECT_EQ(ports_.info(id_).queued, 0u);
    EXPECT_EQ(ports_.info(id_).waiters, 0u);
}

// What wait() does at its deadline: its call times out (the entry stays,
// dead), then it polls and gets what is there, fewer than min.
TEST_F(PortServerTest, AtTheDeadlineAWaitEndsWithWhatIsThere) {
    CallRef w = wait(8, 3);
    post_range(1, 3);
    EXPECT_TRUE(w->waiting());
    w->kill();                                    // the kernel timed the call out
    EXPECT_EQ(keys_of(wait(8, 0)), range(1, 3));  // the library's poll
    // The dead entry takes nothing from later packets.
    post_range(3, 6);
    EXPECT_EQ(w->answers, 0);
    EXPECT_EQ(ports_.info(id_).waiters, 0u);
    EXPECT_EQ(keys_of(wait(8, 1)), range(3, 6));
}

// An earlier kernel dropped completions past a fixed capacity without a
// word. Here the posters beyond it wait, try_post says full, and every
// packet comes out, in order.
TEST_F(PortServerTest, AFullPortBlocksItsPostersAndDropsNothing) {
    post_range(0, port::kCapacity);
    CallRef t = try_post(pk(999));
    EXPECT_EQ(t->label, port::kPortFull);
    std::vector<CallRef> blocked;
    for (uint64_t i = port::kCapacity; i < port::kCapacity + 20; ++i) {
        blocked.push_back(post(pk(i)));
        EXPECT_TRUE(blocked.back()->waiting());
    }
    EXPECT_EQ(ports_.info(id_).posters, 20u);
    check(id_);
    std::vector<uint64_t> got;
    while (ports_.info(id_).queued > 0) {
        std::vector<uint64_t> k = keys_of(wait(port::kMaxBatch, 1));
        got.insert(got.end(), k.begin(), k.end());
        check(id_);
    }
    EXPECT_EQ(got, range(0, port::kCapacity + 20));
    for (const CallRef& c : blocked) EXPECT_TRUE(c->ok());
    // Posters are let in (answered) in arrival order.
    for (size_t i = 1; i < blocked.size(); ++i) EXPECT_LT(blocked[i - 1]->seq, blocked[i]->seq);
}

TEST_F(PortServerTest, ADrainLetsInOnlyAsManyPostersAsThereIsRoom) {
    post_range(0, port::kCapacity);
    CallRef p1 = post(pk(1000)), p2 = post(pk(1001)), p3 = post(pk(1002));
    EXPECT_EQ(keys_of(wait(2, 1)), range(0, 2));
    EXPECT_TRUE(p1->ok());
    EXPECT_TRUE(p2->ok());
    EXPECT_TRUE(p3->waiting());
    EXPECT_EQ(ports_.info(id_).queued, port::kCapacity);
    // try_post does not overtake a waiting poster, even with room freed.
    EXPECT_EQ(try_post(pk(2000))->label, port::kPortFull);
}

// A poster whose caller is gone when it is let in puts nothing in: a
// packet is in the port exactly when its poster was told Ok.
TEST_F(PortServerTest, APosterThatDiedWhileBlockedPutsNothingIn) {
    post_range(0, port::kCapacity);
    CallRef dead = post(pk(5000));
    CallRef live = post(pk(5001));
    dead->kill();
    EXPECT_EQ(keys_of(wait(1, 1)), range(0, 1));
    EXPECT_EQ(dead->answers, 0);
    EXPECT_TRUE(live->ok());
    std::vector<uint64_t> got;
    while (ports_.info(id_).queued > 0) {
        std::vector<uint64_t> k = keys_of(wait(port::kMaxBatch, 1));
        got.insert(got.end(), k.begin(), k.end());
    }
    std::vector<uint64_t> want = range(1, port::kCapacity);
    want.push_back(5001);
    EXPECT_EQ(got, want);
}

TEST_F(PortServerTest, ClosingWakesEveryWaiterAndPosterWithPortClosed) {
    CallRef w1 = wait(4, 1), w2 = wait(4, 2), w3 = wait(1, 1);
    CallRef c = close();
    EXPECT_TRUE(c->ok());
    for (const CallRef& w : {w1, w2, w3}) EXPECT_EQ(w->label, port::kPortClosed);
    // Posters too, and the queued packets go.
    uint64_t id = ports_.create();
    uint64_t b = badge_of(id);
    for (uint64_t i = 0; i < port::kCapacity; ++i) ASSERT_TRUE(post(pk(i), b)->ok());
    CallRef p1 = post(pk(1), b), p2 = post(pk(2), b);
    EXPECT_TRUE(close(b)->ok());
    EXPECT_EQ(p1->label, port::kPortClosed);
    EXPECT_EQ(p2->label, port::kPortClosed);
    EXPECT_EQ(ports_.info(id).queued, 0u);
    check(id);
}

TEST_F(PortServerTest, EveryRequestOnAClosedPortGetsPortClosed) {
    post_range(0, 3);
    EXPECT_TRUE(close()->ok());
    EXPECT_EQ(post(pk(1))->label, port::kPortClosed);
    EXPECT_EQ(try_post(pk(1))->label, port::kPortClosed);
    EXPECT_EQ(wait(1, 0)->label, port::kPortClosed);
    EXPECT_EQ(wait(1, 1)->label, port::kPortClosed);
    EXPECT_EQ(close()->label, port::kPortClosed);
    EXPECT_TRUE(ports_.info(id_).exists);  // until its last handle goes
    EXPECT_EQ(ports_.stats().waiters, 0u);
    ports_.last_handle(port_);
    EXPECT_FALSE(ports_.info(id_).exists);
    EXPECT_EQ(post(pk(1))->status(), abi::Err::BadHandle);
}

TEST_F(PortServerTest, TheLastHandleGoingClosesThePortAndWakesItsWaiters) {
    CallRef w = wait(1, 1);
    ports_.last_handle(port_);  // say another thread closed the last handle
    EXPECT_EQ(w->label, port::kPortClosed);
    EXPECT_EQ(ports_.stats().ports, 0u);
    // Its badge is stale from now on, also for a new port in its slot.
    uint64_t id = ports_.create();
    ASSERT_NE(id, 0u);
    EXPECT_NE(id, id_);
    EXPECT_EQ(wait(1, 0)->status(), abi::Err::BadHandle);
    // Notices for ports long gone, or given twice, change nothing.
    ports_.last_handle(port_);
    ports_.last_handle(0);
    EXPECT_EQ(ports_.stats().ports, 1u);
}

TEST_F(PortServerTest, BadRequestsGetClearErrorsAndChangeNothing) {
    post_range(0, 2);
    // The service handle (badge 0) and unknown ports name no port.
    EXPECT_EQ(issue([this](FakeRequest& r) { return ports_.post(r); },
                    post_message(port::kPost, pk(1)), 0)
                  ->status(),
              abi::Err::BadHandle);
    EXPECT_EQ(issue([this](FakeRequest& r) { return ports_.wait(r); },
                    Message(port::kWait).set_word(0, 1), 0)
                  ->status(),
              abi::Err::BadHandle);
    EXPECT_EQ(wait(1, 0, badge_of(id_ + 12345))->status(), abi::Err::BadHandle);
    EXPECT_EQ(post(pk(1), badge_of(id_ + (uint64_t{1} << 32)))->status(), abi::Err::BadHandle);
    // Waits that cannot be met.
    EXPECT_EQ(wait(0, 0)->status(), abi::Err::InvalidArgument);  // max = 0
    EXPECT_EQ(wait(3, 4)->status(), abi::Err::InvalidArgument);  // min > max
    EXPECT_EQ(wait(100, port::kMaxBatch + 1)->status(), abi::Err::InvalidArgument);
    // Sent without waiting for the answer: refused, nothing put or taken.
    CallRef s = post(pk(7), port_, false);
    EXPECT_EQ(s->answers, 0);
    EXPECT_FALSE(s->deferred);
    CallRef sw = wait(8, 0, port_, false);
    EXPECT_EQ(sw->answers, 0);
    EXPECT_FALSE(sw->deferred);
    EXPECT_EQ(ports_.info(id_).queued, 2u);
    EXPECT_EQ(ports_.info(id_).waiters, 0u);
    EXPECT_EQ(keys_of(wait(8, 0)), range(0, 2));
}

// Unknown labels are the framework's: ipc::Server answers them
// Unsupported, and the real Request type drives the state machine.
struct PortRoutes {
    port_server::Ports<ipc::DeferredReply> ports;
    Response post(ipc::Request& r) { return ports.post(r); }
    Response wait(ipc::Request& r) { return ports.wait(r); }
};
constexpr ipc::Route<PortRoutes> kTestRoutes[] = {{port::kPost, &PortRoutes::post},
                                                  {port::kWait, &PortRoutes::wait}};

TEST(PortServerDispatch, UnknownLabelsAreTheFrameworksAndKnownOnesReachThePorts) {
    PortRoutes s;
    ipc::Server<PortRoutes> server(s, kTestRoutes);
    uint64_t id = s.ports.create();
    ipc::Action a = server.dispatch(ipc::Received{Message(99), badge_of(id), true});
    ASSERT_EQ(a.kind, ipc::Action::Kind::Reply);
    EXPECT_EQ(ipc::reply_status(a.reply), abi::Err::Unsupported);
    a = server.dispatch(ipc::Received{Message(port::kPost).set_word(0, 42), badge_of(id), true});
    ASSERT_EQ(a.kind, ipc::Action::Kind::Reply);
    EXPECT_EQ(ipc::reply_status(a.reply), abi::Err::Ok);
    a = server.dispatch(ipc::Received{
        Message(port::kWait).set_word(0, port::kMaxBatch).set_word(1, 0), badge_of(id), true});
    ASSERT_EQ(a.kind, ipc::Action::Kind::Reply);
    EXPECT_EQ(a.reply.word(0), 42u);  // one packet: in the words, no payload
    EXPECT_EQ(a.reply.length(), 0u);
}

TEST_F(PortServerTest, ThePortTableHasABoundAndFreedSlotsAreReused) {
    std::vector<uint64_t> ids;
    while (uint64_t id = ports_.create()) ids.push_back(id);
    EXPECT_EQ(ids.size() + 1, port::kMaxPorts);
    EXPECT_EQ(ports_.create(), 0u);
    ports_.last_handle(badge_of(ids[7]));
    EXPECT_NE(ports_.create(), 0u);
}

// Waits that timed out leave entries the server cannot see are dead; the
// bound keeps them from piling up: one wait too many ends the oldest.
TEST_F(PortServerTest, PendingWaitsAreBoundedAndTheOldestMakesRoom) {
    std::vector<CallRef> dead;
    for (size_t i = 0; i < port::kMaxWaiters; ++i) {
        dead.push_back(wait(1, 1));
        dead.back()->kill();
    }
    for (int i = 0; i < 1000; ++i) {  // an idle loop of timed-out waits
        CallRef w = wait(1, 1);
        ASSERT_TRUE(w->waiting());
        w->kill();
        ASSERT_EQ(ports_.info(id_).waiters, port::kMaxWaiters);
    }
    // A live oldest waiter is told why it ended early.
    Ports fresh;
    uint64_t b = badge_of(fresh.create());
    auto fwait = [&] {
        return issue([&](FakeRequest& r) { return fresh.wait(r); },
                     Message(port::kWait).set_word(0, 1).set_word(1, 1), b);
    };
    std::vector<CallRef> live;
    for (size_t i = 0; i < port::kMaxWaiters; ++i) live.push_back(fwait());
    CallRef newest = fwait();
    EXPECT_EQ(live[0]->label, port::kPortWaitEvicted);
    EXPECT_TRUE(live[1]->waiting());
    EXPECT_TRUE(newest->waiting());
}

TEST_F(PortServerTest, WaitingPostersAreBounded) {
    post_range(0, port::kCapacity);
    for (size_t i = 0; i < port::kMaxPosters; ++i) ASSERT_TRUE(post(pk(i))->waiting());
    EXPECT_EQ(post(pk(1))->status(), abi::Err::LimitReached);
    EXPECT_EQ(ports_.info(id_).posters, port::kMaxPosters);
}

// Over all ports, the server keeps at most services::kMaxDeferred replies
// (each a handle in its table): a wait or post past it is refused.
TEST_F(PortServerTest, DeferredRepliesAreBoundedOverAllPorts) {
    std::vector<CallRef> waits;
    uint64_t badge = port_;
    while (waits.size() < services::kMaxDeferred) {
        for (size_t i = 0; i < port::kMaxWaiters - 1 && waits.size() < services::kMaxDeferred;
             ++i) {
            waits.push_back(wait(1, 1, badge));
        }
        uint64_t id = ports_.create();
        ASSERT_NE(id, 0u);
        badge = badge_of(id);
    }
    EXPECT_EQ(ports_.stats().waiters, services::kMaxDeferred);
    CallRef refused = wait(1, 1, badge);
    EXPECT_EQ(refused->status(), abi::Err::LimitReached);
    EXPECT_FALSE(refused->deferred);
    for (const CallRef& w : waits) EXPECT_TRUE(w->waiting());
    // The count over all ports follows the answers: once the first port is
    // gone (its waiters told so), there is room again.
    ports_.last_handle(port_);
    EXPECT_EQ(ports_.stats().waiters, services::kMaxDeferred - (port::kMaxWaiters - 1));
    EXPECT_TRUE(wait(1, 1, badge)->waiting());
}

TEST_F(PortServerTest, DestroyAnswersWhoeverWaits) {
    CallRef w = wait(1, 1);
    ports_.destroy(id_);
    EXPECT_EQ(w->status(), abi::Err::Destroyed);
    EXPECT_EQ(ports_.stats().ports, 0u);
}

// Many ports, many waiters: each gets its own port's packets, in order,
// and nothing is left once they are gone.
TEST_F(PortServerTest, ManyPortsAndManyWaitersDoNotMix) {
    constexpr size_t kPorts = 50, kWaiters = 4;
    std::vector<uint64_t> ids;
    std::vector<std::vector<CallRef>> waiters(kPorts);
    for (size_t i = 0; i < kPorts; ++i) {
        ids.push_back(ports_.create());
        for (size_t w = 0; w < kWaiters; ++w) {
            waiters[i].push_back(wait(1, 1, badge_of(ids[i])));
        }
    }
    EXPECT_EQ(ports_.stats().waiters, kPorts * kWaiters);
    for (size_t w = 0; w < kWaiters; ++w) {
        for (size_t i = 0; i < kPorts; ++i) {
            ASSERT_TRUE(post(pk(i * 1000 + w), badge_of(ids[i]))->ok());
        }
    }
    for (size_t i = 0; i < kPorts; ++i) {
        for (size_t w = 0; w < kWaiters; ++w) {
            EXPECT_EQ(keys_of(waiters[i][w]), std::vector<uint64_t>{i * 1000 + w});
        }
        check(ids[i]);
        ports_.last_handle(badge_of(ids[i]));
    }
    for (int round = 0; round < 1000; ++round) {
        uint64_t b = badge_of(ports_.create());
        CallRef w = wait(2, 2, b);
        if (round % 3 == 0) w->kill();
        ASSERT_TRUE(post(pk(1), b)->ok());
        if (round % 2) (void)close(b);
        ports_.last_handle(b);
    }
    Ports::Stats s = ports_.stats();
    EXPECT_EQ(s.ports, 1u);  // the fixture's
    EXPECT_EQ(s.queued, 0u);
    EXPECT_EQ(s.waiters, 0u);
    EXPECT_EQ(s.posters, 0u);
}

// Random posts, polls, waits of every shape and callers dying, checked
// after every step against the rules: the invariants hold; every packet
// comes out at most once, in the order posted; a packet goes in exactly
// when its poster is told Ok; and at the end every accepted packet has
// come out.
TEST_F(PortServerTest, RandomRunsKeepEveryRule) {
    for (uint32_t seed = 1; seed <= 20; ++seed) {
        std::mt19937 rng(seed);
        Ports ports;
        uint64_t b = badge_of(ports.create());
        uint64_t next_key = 1;
        std::vector<std::pair<uint64_t, CallRef>> posts;  // key, poster
        std::vector<CallRef> waits;
        auto do_post = [&](bool may_wait) {
            Packet p = pk(next_key);
            posts.emplace_back(
                next_key++,
                issue([&](FakeRequest& r) { return may_wait ? ports.post(r) : ports.try_post(r); },
                      post_message(may_wait ? port::kPost : port::kTryPost, p), b));
        };
        auto do_wait = [&](uint64_t max, uint64_t min) {
            waits.push_back(issue([&](FakeRequest& r) { return ports.wait(r); },
                                  Message(port::kWait).set_word(0, max).set_word(1, min), b));
        };
        for (int step = 0; step < 3000; ++step) {
            switch (rng() % 6) {
                case 0:
                case 1:
                    do_post(true);
                    break;
                case 2:
                    do_post(false);
                    break;
                case 3: {
                    uint64_t max = 1 + rng() % port::kMaxBatch;
                    do_wait(max, rng() % (max + 1));
                    break;
                }
                case 4:
                    do_wait(port::kMaxBatch, 0);  // drains faster than posts fill
                    break;
                case 5: {  // somebody who waits dies or times out
                    std::vector<CallRef*> live;
                    for (auto& [k, c] : posts)
                        if (c->waiting()) live.push_back(&c);
                    for (CallRef& c : waits)
                        if (c->waiting()) live.push_back(&c);
                    if (!live.empty()) (*live[rng() % live.size()])->kill();
                    break;
                }
            }
            Ports::Info i = ports.info(port::port_of(b));
            if (i.waiters > 0) {
                ASSERT_LT(i.queued, i.least_min);
            }
            if (i.posters > 0) {
                ASSERT_EQ(i.queued, port::kCapacity);
            }
        }
        // Drain what is left (posters are let in as room is made).
        for (;;) {
            do_wait(port::kMaxBatch, 0);
            if (waits.back()->words[0] == 0 && ports.info(port::port_of(b)).posters == 0) break;
        }
        // Every packet out, at most once, in post order.
        std::vector<CallRef> answered;
        for (const CallRef& c : waits) {
            EXPECT_LE(c->answers, 1);
            if (c->answers == 1 && c->label == ipc::kStatusOk) answered.push_back(c);
        }
        std::sort(answered.begin(), answered.end(),
                  [](const CallRef& x, const CallRef& y) { return x->seq < y->seq; });
        std::vector<uint64_t> out;
        for (const CallRef& c : answered) {
            std::vector<uint64_t> k = keys_of(c);
            out.insert(out.end(), k.begin(), k.end());
        }
        std::vector<uint64_t> accepted;
        for (auto& [k, c] : posts) {
            EXPECT_LE(c->answers, 1);
            if (c->ok()) accepted.push_back(k);
        }
        EXPECT_EQ(out, accepted) << "seed " << seed;
        Ports::Stats s = ports.stats();
        EXPECT_EQ(s.queued, 0u);
        EXPECT_EQ(s.posters, 0u);
    }
}

}  // namespace
}  // namespace mk::servers_test
