// Host tests of IPC endpoints through the CPU fake. The test acts as
// whichever thread the scheduler says is current; a blocking operation
// returns WouldBlock at the (fake) switch, and the woken thread later
// collects its result with Endpoint::finish_*().
#include <gtest/gtest.h>

#include <cstring>

#include "endpoint.hpp"
#include "fake_heap.hpp"
#include "sched_fixture.hpp"

namespace mk {
namespace {

class EndpointTest : public testing::SchedFixture {
  protected:
    void SetUp() override {
        SchedFixture::SetUp();
        ipc_set_fast_path(true);
        this_cpu().ipc = IpcCounters{};
        ep_ = Endpoint::create().value();
    }
    void TearDown() override {
        if (ep_ != nullptr) Endpoint::destroy(ep_);
        for (Thread* t : all_threads()) {
            // Callers still waiting on a thread's reply are released first.
            IpcGuard guard(nullptr);
            ipc_release_thread_locked(*t);
        }
        SchedFixture::TearDown();
        ipc_set_fast_path(true);
    }

    static Message msg(uint64_t label, uint64_t w0 = 0, uint32_t length = 0) {
        Message m;
        m.label = label;
        m.words[0] = w0;
        m.words[3] = ~w0;
        m.length = length;
        return m;
    }

    Thread* current() { return sched().current(); }
    IpcCounters ipc() { return ipc_counters(); }

    // Runs the ready queue until `t` is current (round-robin yields).
    void run_until(Thread* t) {
        for (int i = 0; i < 64 && current() != t; ++i) yield();
        ASSERT_EQ(current(), t);
    }

    Endpoint* ep_ = nullptr;
};

TEST_F(EndpointTest, SenderFirstRendezvous) {
    Thread* a = spawn("a");
    run_until(a);
    EXPECT_EQ(ep_->send(msg(7, 42), 0xB1), Error::WouldBlock);  // a blocks
    EXPECT_EQ(a->state, ThreadState::Blocked);
    EXPECT_NE(a->waiting_on, nullptr);  // the endpoint's senders queue
    EXPECT_EQ(ep_->waiting_senders(), 1u);
    ASSERT_EQ(current(), boot_);
    Result<Received> r = ep_->recv();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().msg.label, 7u);
    EXPECT_EQ(r.value().msg.words[0], 42u);
    EXPECT_EQ(r.value().msg.words[3], ~uint64_t(42));
    EXPECT_EQ(r.value().badge, 0xB1u);
    EXPECT_FALSE(r.value().reply.valid());
    EXPECT_EQ(a->state, ThreadState::Ready);
    EXPECT_EQ(ep_->waiting_senders(), 0u);
    run_until(a);
    EXPECT_EQ(Endpoint::finish_send(*a), Error::None);
}

TEST_F(EndpointTest, ReceiverFirstRendezvousDonatesToReceiver) {
    Thread* a = spawn("a");
    Thread* other = spawn("other");
    run_until(a);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    run_until(boot_);
    EXPECT_EQ(ep_->send(msg(9, 1), 0xCAFE), Error::None);
    // Donation: a runs next although `other` was ahead of it.
    EXPECT_EQ(current(), a);
    EXPECT_EQ(sched().counters().donations_taken, 1u);
    Result<Received> r = Endpoint::finish_recv(*a);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().msg.label, 9u);
    EXPECT_EQ(r.value().badge, 0xCAFEu);
    (void)other;
}

TEST_F(EndpointTest, SendersAreServedInArrivalOrder) {
    Thread* t[5];
    for (int i = 0; i < 5; ++i) {
        t[i] = spawn("s");
        run_until(t[i]);
        EXPECT_EQ(ep_->send(msg(100 + uint64_t(i)), uint64_t(i)), Error::WouldBlock);
    }
    run_until(boot_);
    for (int i = 0; i < 5; ++i) {
        Result<Received> r = ep_->try_recv();
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(r.value().msg.label, 100u + uint64_t(i));
        EXPECT_EQ(r.value().badge, uint64_t(i));
    }
    EXPECT_EQ(ep_->try_recv().error(), Error::WouldBlock);
}

TEST_F(EndpointTest, ReceiversAreServedInArrivalOrder) {
    sched().set_donation_enabled(false);
    Thread* t[5];
    for (int i = 0; i < 5; ++i) {
        t[i] = spawn("r");
        run_until(t[i]);
        EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    }
    run_until(boot_);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(ep_->send(msg(200 + uint64_t(i)), 0), Error::None);
    for (int i = 0; i < 5; ++i) {
        Result<Received> r = Endpoint::finish_recv(*t[i]);
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(r.value().msg.label, 200u + uint64_t(i)) << "receiver " << i;
    }
    // And they run in the order they were woken.
    for (int i = 0; i < 5; ++i) {
        yield();
        EXPECT_EQ(current(), t[i]);
    }
}

TEST_F(EndpointTest, CallFastPathSwitchesDirectlyAndReplyReturns) {
    Thread* server = spawn("server");
    Thread* bystander = spawn("bystander");
    run_until(server);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    ASSERT_EQ(sched().ready_count(), 1u);  // the bystander, first in line
    SchedCounters before = sched().counters();
    unsigned yields = FakeCpu::yield_vectors;
    EXPECT_EQ(ep_->call(msg(1, 5), 0x77).error(), Error::WouldBlock);
    // Straight to the server: a direct switch, no yield vector, and the
    // server never on the ready queue. (The general path wakes it onto the
    // ready queue behind the bystander, from where only a donation, which
    // it counts, or the bystander's turn would get it running.)
    EXPECT_EQ(current(), server);
    EXPECT_EQ(ipc().fastpath_hits, 1u);
    SchedCounters after = sched().counters();
    EXPECT_EQ(after.direct_switches, before.direct_switches + 1);
    EXPECT_EQ(after.switches, before.switches + 1);
    EXPECT_EQ(after.donations_taken, before.donations_taken);
    EXPECT_EQ(after.donation_fallbacks, before.donation_fallbacks);
    EXPECT_EQ(after.wakeups, before.wakeups + 1);
    EXPECT_EQ(FakeCpu::yield_vectors, yields);
    EXPECT_EQ(FakeCpu::switches.back().to, &server->context);
    EXPECT_EQ(sched().ready_count(), 1u);
    EXPECT_EQ(bystander->state, ThreadState::Ready);  // still first in line, passed over
    EXPECT_EQ(boot_->state, ThreadState::Blocked);
    EXPECT_EQ(boot_->waiting_on, &server->ipc->callers);

    Result<Received> r = Endpoint::finish_recv(*server);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().badge, 0x77u);
    ASSERT_TRUE(r.value().reply.valid());
    EXPECT_EQ(Endpoint::reply(r.value().reply, msg(2, 6)), Error::None);
    EXPECT_EQ(boot_->state, ThreadState::Ready);
    run_until(boot_);
    Result<Message> answer = Endpoint::finish_call(*boot_);
    ASSERT_TRUE(answer.ok());
    EXPECT_EQ(answer.value().label, 2u);
    EXPECT_EQ(answer.value().words[0], 6u);
}

TEST_F(EndpointTest, ReplyRecvFastPathSwitchesBackToCaller) {
    Thread* server = spawn("server");
    Thread* bystander = spawn("bystander");
    run_until(server);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    EXPECT_EQ(ep_->call(msg(1, 10), 0).error(), Error::WouldBlock);
    ASSERT_EQ(current(), server);
    Received req = Endpoint::finish_recv(*server).value();
    SchedCounters before = sched().counters();
    unsigned yields = FakeCpu::yield_vectors;
    EXPECT_EQ(ep_->reply_recv(req.reply, msg(2, req.msg.words[0] + 1)).error(), Error::WouldBlock);
    // Direct switch back to the caller, past the bystander first in line:
    // no donation, no yield vector, the caller never on the ready queue.
    EXPECT_EQ(current(), boot_);
    EXPECT_EQ(sched().counters().direct_switches, before.direct_switches + 1);
    EXPECT_EQ(sched().counters().donations_taken, before.donations_taken);
    EXPECT_EQ(sched().counters().wakeups, before.wakeups + 1);
    EXPECT_EQ(FakeCpu::yield_vectors, yields);
    EXPECT_EQ(sched().ready_count(), 1u);
    EXPECT_EQ(bystander->state, ThreadState::Ready);
    EXPECT_EQ(server->state, ThreadState::Blocked);
    EXPECT_NE(server->waiting_on, nullptr);  // the endpoint's receivers queue
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_EQ(Endpoint::finish_call(*boot_).value().words[0], 11u);
    EXPECT_EQ(ipc().fastpath_hits, 2u);
    EXPECT_EQ(sched().counters().direct_switches, 2u);

    // A second round trip takes the fast path both ways again.
    EXPECT_EQ(ep_->call(msg(1, 20), 0).error(), Error::WouldBlock);
    ASSERT_EQ(current(), server);
    req = Endpoint::finish_recv(*server).value();
    EXPECT_EQ(req.msg.words[0], 20u);
    EXPECT_EQ(ep_->reply_recv(req.reply, msg(2, 21)).error(), Error::WouldBlock);
    EXPECT_EQ(current(), boot_);
    EXPECT_EQ(Endpoint::finish_call(*boot_).value().words[0], 21u);
    EXPECT_EQ(ipc().fastpath_hits, 4u);
}

TEST_F(EndpointTest, FastPathMissesAreCountedByReason) {
    Thread* server = spawn("server");
    // No receiver waiting: the call queues (miss: no partner).
    run_until(boot_);
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
    EXPECT_EQ(ipc().fastpath_miss_no_partner, 1u);
    run_until(server);
    Received req = ep_->recv().value();
    EXPECT_EQ(Endpoint::reply(req.reply, msg(2)), Error::None);

    // Long message: general path (wake + donate), not a direct switch.
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    EXPECT_TRUE(Endpoint::finish_call(*boot_).ok());
    EXPECT_EQ(ep_->call(msg(3, 0, 16), 0).error(), Error::WouldBlock);
    EXPECT_EQ(ipc().fastpath_miss_long_message, 1u);
    EXPECT_EQ(current(), server);  // donated
    EXPECT_EQ(sched().counters().donations_taken, 1u);
    EXPECT_EQ(sched().counters().direct_switches, 0u);
    req = Endpoint::finish_recv(*server).value();

    // Disabled.
    ipc_set_fast_path(false);
    EXPECT_EQ(ep_->reply_recv(req.reply, msg(4)).error(), Error::WouldBlock);
    EXPECT_EQ(ipc().fastpath_miss_disabled, 1u);
    EXPECT_EQ(current(), boot_);  // donated, not switched directly
    EXPECT_EQ(Endpoint::finish_call(*boot_).value().label, 4u);
    EXPECT_EQ(ep_->call(msg(5), 0).error(), Error::WouldBlock);
    EXPECT_EQ(ipc().fastpath_miss_disabled, 2u);
    EXPECT_EQ(current(), server);
    EXPECT_EQ(ipc().fastpath_hits, 0u);
    EXPECT_EQ(sched().counters().direct_switches, 0u);
}

// The fast path's direct switch ends the partner's wait like any wake: it
// is counted, and the partner learns it was Woken (not left at None).
TEST_F(EndpointTest, FastPathCountsItsWakesAndMarksThePartnerWoken) {
    Thread* server = spawn("server");
    run_until(server);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    uint64_t wakeups = sched().counters().wakeups;
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
    ASSERT_EQ(current(), server);
    ASSERT_EQ(sched().counters().direct_switches, 1u);
    EXPECT_EQ(server->wake_reason, WakeReason::Woken);
    EXPECT_EQ(sched().counters().wakeups, wakeups + 1);
    Received r = Endpoint::finish_recv(*server).value();
    EXPECT_EQ(ep_->reply_recv(r.reply, msg(2)).error(), Error::WouldBlock);
    ASSERT_EQ(current(), boot_);
    ASSERT_EQ(sched().counters().direct_switches, 2u);
    EXPECT_EQ(boot_->wake_reason, WakeReason::Woken);
    EXPECT_EQ(sched().counters().wakeups, wakeups + 2);
    EXPECT_EQ(Endpoint::finish_call(*boot_).value().label, 2u);
}

// With donation off (donate=off) the fast path is off too: a direct switch
// is a donation. call() and reply_recv() wake the partner onto the ready
// queue, and round-robin decides who runs.
TEST_F(EndpointTest, DonationOffTakesTheWakePathNotTheFastPath) {
    sched().set_donation_enabled(false);
    Thread* server = spawn("server");
    Thread* bystander = spawn("bystander");
    run_until(server);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);  // bystander runs
    run_until(boot_);
    ASSERT_EQ(sched().ready_count(), 1u);  // bystander
    unsigned yields = FakeCpu::yield_vectors;
    uint64_t wakeups = sched().counters().wakeups;
    EXPECT_EQ(ep_->call(msg(1, 5), 0).error(), Error::WouldBlock);
    EXPECT_EQ(current(), bystander);  // first in line; the server queued behind it
    EXPECT_EQ(server->state, ThreadState::Ready);
    EXPECT_EQ(server->wake_reason, WakeReason::Woken);
    EXPECT_EQ(sched().ready_count(), 1u);
    EXPECT_EQ(sched().counters().wakeups, wakeups + 1);
    EXPECT_EQ(boot_->state, ThreadState::Blocked);
    EXPECT_EQ(boot_->waiting_on, &server->ipc->callers);

    run_until(server);
    Received r = Endpoint::finish_recv(*server).value();
    EXPECT_EQ(r.msg.words[0], 5u);
    EXPECT_EQ(ep_->reply_recv(r.reply, msg(2, 6)).error(), Error::WouldBlock);
    EXPECT_EQ(current(), bystander);
    EXPECT_EQ(boot_->state, ThreadState::Ready);
    EXPECT_EQ(boot_->wake_reason, WakeReason::Woken);
    EXPECT_EQ(sched().counters().wakeups, wakeups + 2);
    EXPECT_EQ(FakeCpu::yield_vectors, yields + 1);  // run_until's only
    EXPECT_EQ(ipc().fastpath_hits, 0u);
    EXPECT_EQ(ipc().fastpath_miss_donation_off, 2u);
    EXPECT_EQ(sched().counters().direct_switches, 0u);
    EXPECT_EQ(sched().counters().donations_taken, 0u);
    run_until(boot_);
    EXPECT_EQ(Endpoint::finish_call(*boot_).value().words[0], 6u);
}

TEST_F(EndpointTest, ReplyRecvWithPendingSenderTakesItAndHandsOffToTheCaller) {
    Thread* server = spawn("server");
    Thread* client2 = spawn("client2");
    run_until(server);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);  // fast path to server
    ASSERT_EQ(current(), server);
    Received first = Endpoint::finish_recv(*server).value();
    run_until(client2);
    EXPECT_EQ(ep_->call(msg(2), 0).error(), Error::WouldBlock);  // queues: server is busy
    run_until(server);
    Result<Received> next = ep_->reply_recv(first.reply, msg(10));
    ASSERT_TRUE(next.ok());  // took client2's call at once and goes on...
    EXPECT_EQ(next.value().msg.label, 2u);
    EXPECT_EQ(current(), server);
    EXPECT_EQ(ipc().fastpath_miss_sender_pending, 1u);
    // ...and the caller it answered runs as soon as it stops.
    EXPECT_EQ(boot_->state, ThreadState::Ready);
    EXPECT_TRUE(boot_->lent_quantum);
    EXPECT_EQ(Endpoint::finish_call(*boot_).value().label, 10u);
    EXPECT_EQ(Endpoint::reply(next.value().reply, msg(20)), Error::None);
    EXPECT_EQ(Endpoint::finish_call(*client2).value().label, 20u);
}

TEST_F(EndpointTest, DeferredRepliesInAnyOrder) {
    Thread* c1 = spawn("c1");
    Thread* c2 = spawn("c2");
    run_until(c1);
    EXPECT_EQ(ep_->call(msg(1), 11).error(), Error::WouldBlock);
    run_until(c2);
    EXPECT_EQ(ep_->call(msg(2), 22).error(), Error::WouldBlock);
    run_until(boot_);
    Received r1 = ep_->recv().value();
    Received r2 = ep_->recv().value();
    EXPECT_EQ(r1.badge, 11u);
    EXPECT_EQ(r2.badge, 22u);
    EXPECT_EQ(boot_->ipc->callers.size(), 2u);
    EXPECT_EQ(c1->ipc->op, IpcState::Op::ReplyWait);
    // The server does other work, then answers the second caller first.
    yield();
    run_until(boot_);
    EXPECT_EQ(Endpoint::reply(r2.reply, msg(202)), Error::None);
    // Found behind the first caller; used, it is found no more, while the
    // first caller still waits at the front.
    EXPECT_EQ(Endpoint::reply(r2.reply, msg(203)), Error::BadHandle);
    ReplyToken later_call{r1.reply.caller, r1.reply.call + 1};
    EXPECT_EQ(Endpoint::reply(later_call, msg(102)), Error::BadHandle);
    EXPECT_EQ(Endpoint::reply(r1.reply, msg(101)), Error::None);
    EXPECT_EQ(Endpoint::finish_call(*c1).value().label, 101u);
    EXPECT_EQ(Endpoint::finish_call(*c2).value().label, 202u);
    EXPECT_TRUE(boot_->ipc->callers.empty());
}

TEST_F(EndpointTest, ReplyTokenIsOneShotAndUnforgeable) {
    Thread* c = spawn("c");
    run_until(c);
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
    run_until(boot_);
    Received r = ep_->recv().value();
    ReplyToken forged = r.reply;
    forged.call += 1;
    EXPECT_EQ(Endpoint::reply(forged, msg(2)), Error::BadHandle);
    ReplyToken other_thread = r.reply;
    other_thread.caller = boot_->id();
    EXPECT_EQ(Endpoint::reply(other_thread, msg(2)), Error::BadHandle);
    EXPECT_EQ(Endpoint::reply(ReplyToken{}, msg(2)), Error::BadHandle);
    EXPECT_EQ(Endpoint::reply(r.reply, msg(3)), Error::None);
    EXPECT_EQ(Endpoint::reply(r.reply, msg(4)), Error::BadHandle);  // used
    EXPECT_EQ(Endpoint::finish_call(*c).value().label, 3u);
    EXPECT_EQ(ipc().stale_replies, 4u);
}

TEST_F(EndpointTest, DroppedReplyTokenWakesCallerWithError) {
    Thread* c = spawn("c");
    run_until(c);
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
    run_until(boot_);
    Received r = ep_->recv().value();
    EXPECT_EQ(Endpoint::reply_drop(r.reply), Error::None);
    EXPECT_EQ(Endpoint::finish_call(*c).error(), Error::PeerDied);
    EXPECT_EQ(Endpoint::reply_drop(r.reply), Error::BadHandle);
    EXPECT_EQ(Endpoint::reply(r.reply, msg(2)), Error::BadHandle);
}

TEST_F(EndpointTest, ServerDeathWakesItsCallersWithError) {
    Thread* server = spawn("server");
    Thread* c1 = spawn("c1");
    Thread* c2 = spawn("c2");
    run_until(c1);
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
    run_until(c2);
    EXPECT_EQ(ep_->call(msg(2), 0).error(), Error::WouldBlock);
    run_until(server);
    Received r1 = ep_->recv().value();
    Received r2 = ep_->recv().value();
    run_until(boot_);
    sched().kill(*server);
    EXPECT_EQ(Endpoint::finish_call(*c1).error(), Error::PeerDied);
    EXPECT_EQ(Endpoint::finish_call(*c2).error(), Error::PeerDied);
    EXPECT_EQ(Endpoint::reply(r1.reply, msg(3)), Error::BadHandle);
    EXPECT_EQ(ipc().peer_died_wakeups, 2u);
    (void)r2;
}

TEST_F(EndpointTest, CallerDeathMakesItsTokenStale) {
    Thread* c = spawn("c");
    run_until(c);
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
    run_until(boot_);
    Received r = ep_->recv().value();
    sched().kill(*c);
    EXPECT_TRUE(boot_->ipc->callers.empty());
    EXPECT_EQ(Endpoint::reply(r.reply, msg(2)), Error::BadHandle);
}

TEST_F(EndpointTest, ReceiveTimesOut) {
    Thread* a = spawn("a");
    run_until(a);
    EXPECT_EQ(ep_->recv(3).error(), Error::WouldBlock);
    for (int i = 0; i < 2; ++i) sched().on_timer_tick();
    EXPECT_EQ(a->state, ThreadState::Blocked);
    sched().on_timer_tick();
    EXPECT_EQ(a->state, ThreadState::Ready);
    EXPECT_EQ(ep_->waiting_receivers(), 0u);
    EXPECT_EQ(Endpoint::finish_recv(*a).error(), Error::TimedOut);
    // A sender now finds nobody.
    run_until(boot_);
    EXPECT_EQ(ep_->try_send(msg(1), 0), Error::WouldBlock);
    EXPECT_EQ(ipc().timeouts, 1u);
}

TEST_F(EndpointTest, ForeverTimeoutNeverExpires) {
    Thread* a = spawn("a");
    for (int i = 0; i < 7; ++i) sched().on_timer_tick();
    run_until(a);
    EXPECT_EQ(ep_->recv(UINT64_MAX).error(), Error::WouldBlock);
    run_until(boot_);
    EXPECT_EQ(ep_->call(msg(1), 0, UINT64_MAX - 1).error(), Error::WouldBlock);  // fast path
    ASSERT_EQ(current(), a);
    for (int i = 0; i < 3; ++i) sched().on_timer_tick();
    EXPECT_EQ(boot_->state, ThreadState::Blocked);
    EXPECT_EQ(ipc().timeouts, 0u);
    Received r = Endpoint::finish_recv(*a).value();
    EXPECT_EQ(Endpoint::reply(r.reply, msg(2)), Error::None);
    EXPECT_EQ(Endpoint::finish_call(*boot_).value().label, 2u);
}

// The tick holds only the scheduler lock: a due IPC wait leaves its
// endpoint's queue under that endpoint's lock, which the tick takes first, then the
// scheduler lock again (the lock order), and lets go of both.
TEST_F(EndpointTest, TheTickEndsAnIpcWaitUnderItsEndpointsLock) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    run_until(a);
    EXPECT_EQ(ep_->recv(1).error(), Error::WouldBlock);
    run_until(b);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);  // no timeout: stays
    ASSERT_EQ(current(), boot_);
    sched().on_timer_tick();
    EXPECT_EQ(a->state, ThreadState::Ready);
    EXPECT_EQ(b->state, ThreadState::Blocked);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_FALSE(ep_->lock().is_locked());
    EXPECT_FALSE(sched().lock().is_locked());
    EXPECT_EQ(this_cpu().held_locks.mask, 0u);
    EXPECT_EQ(Endpoint::finish_recv(*a).error(), Error::TimedOut);
    EXPECT_EQ(ipc().timeouts, 1u);
}

// Found in review: the tick's second pass, with an endpoint's lock, came after
// the quantum's accounting, so a quantum that ended at the very tick an
// IPC wait timed out found nothing ready and started afresh: the woken
// thread waited a whole quantum more. The accounting comes last.
TEST_F(EndpointTest, AQuantumEndingAtAnIpcTimeoutHandsTheCpuOn) {
    Thread* a = spawn("a");
    run_until(a);
    EXPECT_EQ(ep_->recv(Scheduler::kQuantumTicks).error(), Error::WouldBlock);
    ASSERT_EQ(current(), boot_);  // on a fresh quantum
    for (uint32_t i = 1; i < Scheduler::kQuantumTicks; ++i) sched().on_timer_tick();
    EXPECT_EQ(a->state, ThreadState::Blocked);
    sched().on_timer_tick();  // a's deadline and the quantum's end
    EXPECT_EQ(a->state, ThreadState::Ready);
    sched().preempt_if_needed();
    EXPECT_EQ(current(), a);
    EXPECT_EQ(Endpoint::finish_recv(*a).error(), Error::TimedOut);
}

TEST_F(EndpointTest, SendTimesOutAndKeepsItsMessage) {
    Thread* a = spawn("a");
    run_until(a);
    std::memset(a->ipc->buffer, 0x5A, 32);
    EXPECT_EQ(ep_->send(msg(77, 1, 32), 0, 2), Error::WouldBlock);
    sched().on_timer_tick();
    sched().on_timer_tick();
    EXPECT_EQ(Endpoint::finish_send(*a), Error::TimedOut);
    EXPECT_EQ(ep_->waiting_senders(), 0u);
    EXPECT_EQ(a->ipc->msg.label, 77u);
    EXPECT_EQ(a->ipc->buffer[31], 0x5A);
    run_until(boot_);
    EXPECT_EQ(ep_->try_recv().error(), Error::WouldBlock);
}

TEST_F(EndpointTest, CallTimesOutWaitingForReply) {
    Thread* c = spawn("c");
    run_until(c);
    EXPECT_EQ(ep_->call(msg(1), 0, 5).error(), Error::WouldBlock);
    run_until(boot_);
    Received r = ep_->recv().value();  // delivered; now waiting for the reply
    for (int i = 0; i < 5; ++i) sched().on_timer_tick();
    EXPECT_EQ(Endpoint::finish_call(*c).error(), Error::TimedOut);
    EXPECT_TRUE(boot_->ipc->callers.empty());
    EXPECT_EQ(Endpoint::reply(r.reply, msg(2)), Error::BadHandle);
}

TEST_F(EndpointTest, ReplyBeforeTimeoutCancelsIt) {
    Thread* c = spawn("c");
    run_until(c);
    EXPECT_EQ(ep_->call(msg(1), 0, 5).error(), Error::WouldBlock);
    run_until(boot_);
    Received r = ep_->recv().value();
    EXPECT_EQ(Endpoint::reply(r.reply, msg(9)), Error::None);
    for (int i = 0; i < 10; ++i) sched().on_timer_tick();
    EXPECT_EQ(Endpoint::finish_call(*c).value().label, 9u);
}

TEST_F(EndpointTest, DestructionWakesAllWaitersAndKeepsSendersMessages) {
    Endpoint* ep2 = Endpoint::create().value();
    Thread* s1 = spawn("s1");
    Thread* s2 = spawn("s2");
    Thread* rcv = spawn("r");
    run_until(s1);
    s1->ipc->buffer[0] = 0xAB;
    EXPECT_EQ(ep_->send(msg(1, 0, 1), 0), Error::WouldBlock);
    run_until(s2);
    EXPECT_EQ(ep_->call(msg(2), 0).error(), Error::WouldBlock);
    run_until(rcv);
    EXPECT_EQ(ep2->recv().error(), Error::WouldBlock);
    run_until(boot_);
    size_t ready_before = sched().ready_count();
    Endpoint::destroy(ep_);
    ep_ = nullptr;
    Endpoint::destroy(ep2);
    EXPECT_EQ(sched().ready_count(), ready_before + 3);
    EXPECT_EQ(Endpoint::finish_send(*s1), Error::Destroyed);
    EXPECT_EQ(s1->ipc->msg.label, 1u);  // the message went back to its sender
    EXPECT_EQ(s1->ipc->buffer[0], 0xAB);
    EXPECT_EQ(Endpoint::finish_call(*s2).error(), Error::Destroyed);
    EXPECT_EQ(Endpoint::finish_recv(*rcv).error(), Error::Destroyed);
    // Woken in queue order.
    yield();
    EXPECT_EQ(current(), s1);
    yield();
    EXPECT_EQ(current(), s2);
    yield();
    EXPECT_EQ(current(), rcv);
    EXPECT_EQ(ipc().destroyed_wakeups, 3u);
}

// Found in review: a thread that had entered an operation (with the endpoint
// in hand) could be preempted before taking the lock while another thread
// destroyed the endpoint, and then ran on freed memory. Destruction now
// marks the endpoint dead; its memory goes with the last reference.
TEST_F(EndpointTest, DestroyWhileAnOperationHoldsARefIsNotAUseAfterFree) {
    Thread* destroyer = spawn("destroyer");
    // boot enters an operation: it holds a reference for its duration...
    Ref<Endpoint> held = Ref<Endpoint>::retain(ep_);
    // ...and is preempted before it takes the lock.
    run_until(destroyer);
    Endpoint::destroy(ep_);
    ep_ = nullptr;
    run_until(boot_);
    EXPECT_EQ(held->refs(), 1u);  // only the operation's reference is left
    IpcCounters before = ipc();
    uint64_t call_seq = boot_->ipc->call_seq;
    size_t switches = FakeCpu::switches.size();
    EXPECT_EQ(held->send(msg(1), 0), Error::Destroyed);
    EXPECT_EQ(held->try_send(msg(2), 0), Error::Destroyed);
    EXPECT_EQ(held->recv().error(), Error::Destroyed);
    EXPECT_EQ(held->try_recv().error(), Error::Destroyed);
    EXPECT_EQ(held->call(msg(3), 0).error(), Error::Destroyed);
    EXPECT_EQ(held->reply_recv(ReplyToken{}, msg(4)).error(), Error::Destroyed);
    // Refused before doing anything: nothing blocked, queued, counted or switched.
    EXPECT_EQ(current(), boot_);
    EXPECT_EQ(boot_->state, ThreadState::Running);
    EXPECT_EQ(boot_->ipc->op, IpcState::Op::None);
    EXPECT_EQ(boot_->ipc->call_seq, call_seq);
    EXPECT_EQ(held->waiting_senders(), 0u);
    EXPECT_EQ(held->waiting_receivers(), 0u);
    EXPECT_EQ(FakeCpu::switches.size(), switches);
    EXPECT_EQ(ipc().sends, before.sends);
    EXPECT_EQ(ipc().calls, before.calls);
    EXPECT_EQ(ipc().receives, before.receives);
    // The last reference frees it (ASan would report any later use).
    size_t live = fake_kalloc_live();
    held.reset();
    EXPECT_EQ(fake_kalloc_live(), live - 1);
}

TEST_F(EndpointTest, DestroyWithoutOtherReferencesFreesAtOnce) {
    size_t live = fake_kalloc_live();
    Endpoint::destroy(ep_);
    ep_ = nullptr;
    EXPECT_EQ(fake_kalloc_live(), live - 1);
}

// A waiter woken by destruction holds its own reference, so the endpoint it
// was blocked on is still there when it runs again; and the waiter that
// comes back to a dead endpoint is refused at once.
TEST_F(EndpointTest, WaiterWokenByDestructionStillHoldsTheEndpoint) {
    Thread* r = spawn("r");
    Ref<Endpoint> r_ref = Ref<Endpoint>::retain(ep_);  // r's operation
    run_until(r);
    EXPECT_EQ(r_ref->recv().error(), Error::WouldBlock);
    run_until(boot_);
    Endpoint::destroy(ep_);
    ep_ = nullptr;
    EXPECT_EQ(r->state, ThreadState::Ready);
    EXPECT_EQ(r_ref->refs(), 1u);
    run_until(r);
    EXPECT_EQ(Endpoint::finish_recv(*r).error(), Error::Destroyed);
    EXPECT_EQ(r_ref->recv().error(), Error::Destroyed);  // and again: no wait
    EXPECT_EQ(current(), r);
    EXPECT_EQ(ipc().destroyed_wakeups, 1u);
}

// reply_recv on a dead endpoint does nothing, not even its reply: the
// token stays good and the caller still waits for it.
TEST_F(EndpointTest, ReplyRecvOnADeadEndpointKeepsTheReplyToken) {
    Thread* c = spawn("c");
    run_until(c);
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
    run_until(boot_);
    Received req = ep_->recv().value();
    Ref<Endpoint> held = Ref<Endpoint>::retain(ep_);
    Endpoint::destroy(ep_);
    ep_ = nullptr;
    EXPECT_EQ(held->reply_recv(req.reply, msg(2)).error(), Error::Destroyed);
    EXPECT_EQ(c->state, ThreadState::Blocked);
    EXPECT_EQ(c->ipc->op, IpcState::Op::ReplyWait);
    EXPECT_EQ(current(), boot_);
    EXPECT_EQ(Endpoint::reply(req.reply, msg(3)), Error::None);
    EXPECT_EQ(Endpoint::finish_call(*c).value().label, 3u);
}

TEST_F(EndpointTest, OversizedMessageIsRefusedUntouched) {
    Thread* r = spawn("r");
    run_until(r);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    Message big = msg(1, 0, kIpcBufferSize + 1);
    EXPECT_EQ(ep_->send(big, 0), Error::TooLarge);
    EXPECT_EQ(ep_->try_send(big, 0), Error::TooLarge);
    EXPECT_EQ(ep_->call(big, 0).error(), Error::TooLarge);
    EXPECT_EQ(Endpoint::reply(ReplyToken{}, big), Error::TooLarge);
    EXPECT_EQ(ep_->reply_recv(ReplyToken{}, big).error(), Error::TooLarge);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_EQ(r->state, ThreadState::Blocked);
    EXPECT_EQ(current(), boot_);
}

TEST_F(EndpointTest, FullPayloadArrivesIntact) {
    Thread* r = spawn("r");
    run_until(r);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    for (size_t i = 0; i < kIpcBufferSize; ++i) boot_->ipc->buffer[i] = uint8_t(i * 7 + 3);
    EXPECT_EQ(ep_->send(msg(1, 0, kIpcBufferSize), 0), Error::None);
    Received got = Endpoint::finish_recv(*r).value();
    EXPECT_EQ(got.msg.length, kIpcBufferSize);
    EXPECT_EQ(std::memcmp(r->ipc->buffer, boot_->ipc->buffer, kIpcBufferSize), 0);
}

TEST_F(EndpointTest, TryOperationsNeverBlock) {
    EXPECT_EQ(ep_->try_send(msg(1), 0), Error::WouldBlock);
    EXPECT_EQ(ep_->try_recv().error(), Error::WouldBlock);
    EXPECT_EQ(boot_->state, ThreadState::Running);
    EXPECT_EQ(current(), boot_);
    EXPECT_TRUE(FakeCpu::switches.empty());
}

// send() wakes the receiver, drops the lock, then donates. If the timer runs
// the receiver in that window and it blocks again, the donation finds it
// Blocked and falls back to round-robin. Replayed step by step: the wake
// (send with donation off), the receiver's run, then the donation.
TEST_F(EndpointTest, DonationFallsBackWhenReceiverAlreadyRan) {
    Thread* receiver = spawn("r");
    Thread* other = spawn("other");
    run_until(receiver);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    sched().set_donation_enabled(false);
    EXPECT_EQ(ep_->send(msg(1), 0), Error::None);  // the wake half of send()
    sched().set_donation_enabled(true);
    EXPECT_EQ(current(), boot_);
    // The timer preempts the sender; the receiver runs and waits again.
    for (uint32_t i = 0; i < Scheduler::kQuantumTicks; ++i) sched().on_timer_tick();
    sched().preempt_if_needed();
    run_until(receiver);
    EXPECT_EQ(Endpoint::finish_recv(*receiver).value().msg.label, 1u);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    sched().donate(*receiver);  // the donation half of send()
    EXPECT_EQ(sched().counters().donation_fallbacks, 1u);
    EXPECT_EQ(sched().counters().donations_taken, 0u);
    EXPECT_EQ(current(), other);
    EXPECT_EQ(receiver->state, ThreadState::Blocked);
}

// Found in review: a caller whose call timed out while waiting for the reply
// must not be reachable by the fast path of reply_recv (it was Ready, on no
// callers queue, but still marked ReplyWait).
TEST_F(EndpointTest, ReplyRecvToTimedOutCallerIsRefusedNotFollowed) {
    Thread* c = spawn("c");
    run_until(c);
    EXPECT_EQ(ep_->call(msg(1), 0, 5).error(), Error::WouldBlock);
    run_until(boot_);
    Received r = ep_->recv().value();
    for (int i = 0; i < 5; ++i) sched().on_timer_tick();
    ASSERT_EQ(c->state, ThreadState::Ready);
    EXPECT_EQ(c->ipc->op, IpcState::Op::None);  // ended at the timeout, not when it runs
    EXPECT_EQ(ep_->reply_recv(r.reply, msg(2)).error(), Error::WouldBlock);  // receives only
    EXPECT_EQ(ipc().stale_replies, 1u);
    EXPECT_EQ(ipc().fastpath_hits, 0u);
    run_until(c);
    EXPECT_EQ(Endpoint::finish_call(*c).error(), Error::TimedOut);
}

TEST_F(EndpointTest, OnlyTheReceivingThreadMayReply) {
    Thread* c = spawn("c");
    Thread* thief = spawn("thief");
    run_until(c);
    EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
    run_until(boot_);
    Received r = ep_->recv().value();
    run_until(thief);
    EXPECT_EQ(Endpoint::reply(r.reply, msg(66)), Error::BadHandle);
    EXPECT_EQ(Endpoint::reply_drop(r.reply), Error::BadHandle);
    EXPECT_EQ(ep_->try_recv().error(), Error::WouldBlock);
    run_until(boot_);
    EXPECT_EQ(Endpoint::reply(r.reply, msg(7)), Error::None);
    EXPECT_EQ(Endpoint::finish_call(*c).value().label, 7u);
}

TEST_F(EndpointTest, StrayWakeInterruptsAnIpcWait) {
    Thread* a = spawn("a");
    run_until(a);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    EXPECT_TRUE(sched().wake(*a));
    EXPECT_EQ(ep_->waiting_receivers(), 0u);
    EXPECT_EQ(Endpoint::finish_recv(*a).error(), Error::Interrupted);
    EXPECT_EQ(ep_->try_send(msg(1), 0), Error::WouldBlock);  // nobody to take it
}

TEST_F(EndpointTest, PendingGenericWakeDoesNotCutAnIpcWaitShort) {
    Thread* a = spawn("a");
    run_until(a);
    sched().prepare_block();
    EXPECT_FALSE(sched().wake(*a));  // remembered for block(), not for IPC
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    EXPECT_EQ(a->state, ThreadState::Blocked);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
}

TEST_F(EndpointTest, SendDonatesWithInterruptsOffFromWakeToYield) {
    Thread* r = spawn("r");
    run_until(r);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    ASSERT_TRUE(Cpu::interrupts_enabled());
    EXPECT_EQ(ep_->send(msg(1), 0), Error::None);
    EXPECT_EQ(current(), r);
    EXPECT_FALSE(FakeCpu::irq_enabled_at_last_yield);
    EXPECT_TRUE(Cpu::interrupts_enabled());  // restored afterwards
}

// Found in review: donations and direct switches used to start a fresh
// quantum, so a ping-pong pair starved every other ready thread.
TEST_F(EndpointTest, PingPongPairSharesOneQuantumWithTheReadyQueue) {
    Thread* server = spawn("server");
    run_until(server);
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    run_until(boot_);
    Thread* spinner = spawn("spinner");
    bool spinner_ran = false;
    for (int round = 0; round < 4 * int(Scheduler::kQuantumTicks) && !spinner_ran; ++round) {
        if (current() == boot_) {
            EXPECT_EQ(ep_->call(msg(1), 0).error(), Error::WouldBlock);
        } else if (current() == server) {
            Received r = Endpoint::finish_recv(*server).value();
            EXPECT_EQ(ep_->reply_recv(r.reply, msg(2)).error(), Error::WouldBlock);
            EXPECT_TRUE(Endpoint::finish_call(*boot_).ok());
        }
        sched().on_timer_tick();
        sched().preempt_if_needed();
        spinner_ran = current() == spinner;
    }
    EXPECT_TRUE(spinner_ran);
    EXPECT_GE(sched().counters().preemptions, 1u);
}

}  // namespace
}  // namespace mk
