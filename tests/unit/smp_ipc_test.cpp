// Reply waits across CPUs on the host fake (three CPUs): a caller waits on
// its server's callers queue, which the server's home scheduler lock
// guards, or on a saved reply's queue, which the caller's own home lock
// guards (docs/locking.md). Whatever ends such a wait from whichever CPU —
// the reply, a timeout at the caller's home, a kill or the server's death
// from a third CPU — holds the caller's home lock and the wait's, taken in
// CPU index order (Scheduler::HomeLocks), and lets go of both.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "endpoint.hpp"
#include "endpoint_inline.hpp"
#include "smp_fixture.hpp"

namespace mk {
namespace {

class SmpIpcTest : public testing::SmpFixture {
  protected:
    SmpIpcTest() : SmpFixture(3) {}

    void SetUp() override {
        SmpFixture::SetUp();
        ipc_set_fast_path(true);
        ep_ = Endpoint::create().value();
    }
    void TearDown() override {
        run_on_0_until(boot_);  // the fixture ends every other thread from it
        Endpoint::destroy(ep_);
        for (Thread* t : all_threads()) {
            IpcGuard guard(nullptr);  // callers still waiting on a thread's reply fail
            ipc_release_thread_locked(*t);
        }
        SmpFixture::TearDown();
    }

    static Message msg(uint64_t label) {
        Message m;
        m.label = label;
        m.words[0] = label * 3;
        return m;
    }

    // Runs CPU 0's ready queue until `t` is current.
    void run_on_0_until(Thread* t) {
        for (int i = 0; i < 64 && sched().current() != t; ++i) yield();
        ASSERT_EQ(sched().current(), t);
    }

    // A server on CPU 0, blocked in recv() on the endpoint.
    Thread* server_on_0() {
        Thread* r = spawn("server");
        run_on_0_until(r);
        EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
        return r;
    }

    // A thread of CPU `cpu` (not 0) that calls the endpoint: delivered to
    // the receiver waiting there, it then waits for the reply.
    // `delivered`: a receiver waits; else the call queues on the endpoint.
    Thread* caller_on(uint32_t cpu, uint64_t timeout_ticks = 0, bool delivered = true) {
        Thread* c = running_on(cpu, "caller");
        on_cpu(cpu, [&] {
            EXPECT_EQ(ep_->call(msg(7), 0xB, timeout_ticks).error(), Error::WouldBlock);
        });
        EXPECT_EQ(c->state, ThreadState::Blocked);
        EXPECT_EQ(c->ipc->op, delivered ? IpcState::Op::ReplyWait : IpcState::Op::Call);
        return c;
    }

    // The server, run on CPU 0: the call it received.
    ReplyToken received_by(Thread* r) {
        run_on_0_until(r);
        Result<Received> got = Endpoint::finish_recv(*r);
        EXPECT_TRUE(got.ok());
        if (!got.ok()) return {};
        EXPECT_EQ(got.value().msg.label, 7u);
        EXPECT_TRUE(got.value().reply.valid());
        return got.value().reply;
    }

    // Server r of CPU 0 answers caller c of CPU 1 with reply_recv (label
    // 9) and blocks, while CPU 1 runs `busy`; FakeCpu::notified holds
    // what the answer told.
    struct BusyAnswer {
        Thread* server;
        Thread* caller;
        Thread* busy;
    };
    BusyAnswer answered_while_1_is_busy() {
        Thread* r = server_on_0();
        Thread* c = caller_on(1);
        ReplyToken token = received_by(r);
        Thread* busy = running_on(1, "busy");
        FakeCpu::notified.clear();
        EXPECT_EQ(ep_->reply_recv(token, msg(9)).error(), Error::WouldBlock);
        return {r, c, busy};
    }

    // A saved wait that lets its caller go at the end of the test (a Reply
    // object does when it is freed).
    struct Saved : SavedWait {
        ~Saved() { unpin(); }
    };
    // A call of a thread of CPU 1 (with `timeout_ticks`) that a server of
    // CPU 0 received and saved in `saved`.
    struct SavedCall {
        Thread* server;
        Thread* caller;
        ReplyToken token;
    };
    SavedCall saved_call(SavedWait& saved, uint64_t timeout_ticks = 0) {
        Thread* r = server_on_0();
        Thread* c = caller_on(1, timeout_ticks);
        ReplyToken token = received_by(r);
        EXPECT_EQ(Endpoint::save_reply(token, saved), Error::None);
        return {r, c, token};
    }

    // See ADonationToAnIdleCpuWithOtherWorkQueuedRunsFirst.
    void donation_to_an_idle_cpu_with_work_queued(bool idle_loop_first) {
        Thread* r = server_on_0();
        // The caller uses most of its quantum before it calls; the idle
        // thread that follows it starts a fresh one and does not count
        // its ticks.
        Thread* c = running_on(1, "caller");
        on_cpu(1, [&] {
            for (uint32_t i = 0; i + 2 < Scheduler::kQuantumTicks; ++i) sched1().on_timer_tick();
            EXPECT_EQ(ep_->call(msg(7), 0xB).error(), Error::WouldBlock);
        });
        ReplyToken token = received_by(r);
        ASSERT_EQ(sched1().current(), idle1_);
        Thread* other = create_on(1, "other");
        ASSERT_EQ(sched().start(*other), Error::None);  // queued first, CPU 1 told
        FakeCpu::notified.clear();
        EXPECT_EQ(ep_->reply_recv(token, msg(9)).error(), Error::WouldBlock);
        EXPECT_EQ(sched().counters().remote_donations, 1u);
        EXPECT_EQ(FakeCpu::notified, (std::vector<uint32_t>{1, 1}));  // the wake's, the donation's
        on_cpu(1, [&] {
            if (idle_loop_first) {
                sched1().idle_once();
            } else {
                sched1().preempt_if_needed(true);
            }
        });
        EXPECT_EQ(sched1().current(), c);
        EXPECT_EQ(other->state, ThreadState::Ready);
        expect_answer(1, c, 9);
        // A fresh quantum, not the two ticks the caller left before it
        // called.
        on_cpu(1, [&] {
            for (int i = 0; i < 3; ++i) sched1().on_timer_tick();
            sched1().preempt_if_needed(true);
        });
        EXPECT_EQ(sched1().current(), c);
    }

    // Thread `c` of CPU `cpu`, woken, finds the answer `label` to its call.
    void expect_answer(uint32_t cpu, Thread* c, uint64_t label) {
        on_cpu(cpu, [&] {
            Result<Message> got = Endpoint::finish_call(*c);
            ASSERT_TRUE(got.ok());
            EXPECT_EQ(got.value().label, label);
        });
    }
    // ...or that its call failed with `error`.
    void expect_call_failed(uint32_t cpu, Thread* c, Error error) {
        on_cpu(cpu, [&] { EXPECT_EQ(Endpoint::finish_call(*c).error(), error); });
    }

    // No scheduler lock of any CPU is held, nor anything in CPU `cpu`'s account.
    void expect_no_lock_held(uint32_t cpu) {
        for (uint32_t i = 0; i < cpus_; ++i) EXPECT_FALSE(sched_at(i).lock().is_locked()) << i;
        on_cpu(cpu, [&] { EXPECT_EQ(Cpu::held_locks(), 0u); });
    }

    // A donation from CPU 0 to w of CPU 1, while x, running there, calls y, a
    // server of its own CPU: the call's direct switch leaves the donate target
    // alone, and the end of the interrupt CPU 0 sent runs w, ahead of z, which
    // was queued before it; y waits at the front of the hand-off queue. The
    // direct switch of the fast path's C++ twin (switch_to_locked) and of the
    // general path (wake_and_block_inline) alike.
    void direct_switch_leaves_another_cpus_donation(bool fast_path) {
        ipc_set_fast_path(fast_path);
        Endpoint* local = Endpoint::create().value();
        WaitQueue q;
        Thread* w = blocked_on(1, "w", q);
        Thread* y = running_on(1, "y");
        on_cpu(1, [&] { EXPECT_EQ(local->recv().error(), Error::WouldBlock); });
        running_on(1, "x");
        Thread* z = create_on(1, "z");
        ASSERT_EQ(sched().start(*z), Error::None);  // CPU 1 busy: not told
        sched().unblock_yield(*w);
        EXPECT_EQ(sched().counters().remote_donations, 1u);
        on_cpu(1, [&] { EXPECT_EQ(local->call(msg(7), 0xB).error(), Error::WouldBlock); });
        EXPECT_EQ(sched1().current(), y);
        on_cpu(1, [&] { sched1().preempt_if_needed(true); });
        EXPECT_EQ(sched1().current(), w);
        EXPECT_TRUE(y->lent_quantum);
        EXPECT_EQ(z->state, ThreadState::Ready);
        ipc_set_fast_path(true);
        Endpoint::destroy(local);
    }

    Endpoint* ep_ = nullptr;
};

// From CPU 1, the home locks of threads of CPUs 0 and 2: all three
// scheduler locks, this CPU's let go and retaken between the other two;
// then this CPU's alone again, with an endpoint's lock.
TEST_F(SmpIpcTest, HomeLocksTakesTwoOtherCpusInIndexOrder) {
    Thread* a = create("a");  // homed on CPU 0, where it was made
    Thread* b = create_on(2, "b");
    on_cpu(1, [&] {
        IpcGuard guard(&ep_->lock());
        {
            Scheduler::HomeLocks homes(sched1(), *b, a);
            EXPECT_EQ(homes.operator->(), &sched_at(2));
            for (uint32_t i = 0; i < 3; ++i) EXPECT_TRUE(sched_at(i).lock().is_locked()) << i;
            EXPECT_EQ(Cpu::held_locks(), IpcGuard::kBoth |
                                             HeldLocks::bit(LockLevel::SchedulerOther) |
                                             HeldLocks::bit(LockLevel::SchedulerThird));
        }
        EXPECT_FALSE(sched().lock().is_locked());
        EXPECT_FALSE(sched_at(2).lock().is_locked());
        EXPECT_TRUE(sched1().lock().is_locked());
        EXPECT_EQ(Cpu::held_locks(), IpcGuard::kBoth);
        {
            // One other CPU (the two threads share it), or none.
            Scheduler::HomeLocks one(sched1(), *a, a);
            EXPECT_EQ(Cpu::held_locks(),
                      IpcGuard::kBoth | HeldLocks::bit(LockLevel::SchedulerOther));
            EXPECT_EQ(one.operator->(), &sched());
        }
        Thread* self = sched1().current();
        Scheduler::HomeLocks none(sched1(), *self, nullptr);
        EXPECT_EQ(Cpu::held_locks(), IpcGuard::kBoth);
    });
    expect_no_lock_held(1);
}

// The caller waits on the server's callers queue, whose guard is the
// server's home lock (CPU 0); its timeout, on CPU 1, takes that lock too.
TEST_F(SmpIpcTest, AReplyWaitOnAServerOfAnotherCpuTimesOutAtTheCallersHome) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1, 3);
    EXPECT_EQ(c->waiting_on, &r->ipc->callers);
    EXPECT_EQ(reply_wait_owner(*c), r);
    ReplyToken token = received_by(r);
    on_cpu(1, [&] {
        for (int i = 0; i < 3; ++i) sched1().on_timer_tick();
    });
    expect_no_lock_held(1);
    EXPECT_EQ(c->state, ThreadState::Ready);
    EXPECT_TRUE(r->ipc->callers.empty());
    EXPECT_EQ(reply_wait_owner(*c), nullptr);
    expect_call_failed(1, c, Error::TimedOut);
    // Too late: the server's reply finds nobody.
    EXPECT_EQ(Endpoint::reply(token, msg(9)), Error::BadHandle);
}

TEST_F(SmpIpcTest, AReplyWakesACallerOfAnotherCpuAtItsHome) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    ReplyToken token = received_by(r);
    EXPECT_EQ(Endpoint::reply(token, msg(9)), Error::None);
    expect_no_lock_held(0);
    EXPECT_EQ(c->state, ThreadState::Ready);
    EXPECT_EQ(sched1().ready_count(), 1u);
    expect_answer(1, c, 9);
}

// CPU 2 kills a caller of CPU 1 waiting on a server of CPU 0: three
// scheduler locks, CPU 2's own let go and taken again after the other two.
TEST_F(SmpIpcTest, AKillFromAThirdCpuEndsAReplyWaitUnderThreeLocks) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    ReplyToken token = received_by(r);
    on_cpu(2, [&] { sched_at(2).kill(*c); });
    expect_no_lock_held(2);
    EXPECT_EQ(c->state, ThreadState::Dead);
    EXPECT_TRUE(r->ipc->callers.empty());
    EXPECT_EQ(Endpoint::reply(token, msg(9)), Error::BadHandle);
}

// CPU 2 kills a server of CPU 1 that holds a call of a thread of CPU 0:
// the caller fails with PeerDied, under its home lock and the server's.
TEST_F(SmpIpcTest, AServerKilledFromAThirdCpuFailsItsCallers) {
    Thread* r = running_on(1, "server");
    on_cpu(1, [&] { EXPECT_EQ(ep_->recv().error(), Error::WouldBlock); });
    Thread* c = spawn("caller");
    run_on_0_until(c);
    EXPECT_EQ(ep_->call(msg(7), 0xB).error(), Error::WouldBlock);
    EXPECT_EQ(c->waiting_on, &r->ipc->callers);
    EXPECT_EQ(r->state, ThreadState::Ready);  // on CPU 1, not run yet
    on_cpu(2, [&] { sched_at(2).kill(*r); });
    expect_no_lock_held(2);
    EXPECT_EQ(r->state, ThreadState::Dead);
    EXPECT_EQ(c->state, ThreadState::Ready);
    run_on_0_until(c);
    expect_call_failed(0, c, Error::PeerDied);
}

// A saved reply holds the caller's wait under the caller's home lock: the
// server's CPU moves it there, a third CPU answers it.
TEST_F(SmpIpcTest, ASavedReplyIsAnsweredFromAThirdCpu) {
    Saved saved;
    auto [r, c, token] = saved_call(saved);
    expect_no_lock_held(0);
    EXPECT_EQ(c->waiting_on, &saved.queue);
    EXPECT_EQ(saved.caller, c);
    EXPECT_EQ(reply_wait_owner(*c), c);
    EXPECT_TRUE(r->ipc->callers.empty());
    on_cpu(2, [&] { EXPECT_EQ(Endpoint::reply_saved(saved, msg(11)), Error::None); });
    expect_no_lock_held(2);
    EXPECT_TRUE(saved.queue.empty());
    EXPECT_EQ(c->state, ThreadState::Ready);
    expect_answer(1, c, 11);
}

// A saved reply's wait times out at the caller's home, under that one lock;
// the reply through it then finds nobody. A later call of the same thread
// waits on a callers queue again, not on the saved reply.
TEST_F(SmpIpcTest, ASavedReplyWaitTimesOutUnderTheCallersHomeLock) {
    Saved saved;
    auto [r, c, token] = saved_call(saved, 2);
    on_cpu(1, [&] {
        for (int i = 0; i < 2; ++i) sched1().on_timer_tick();
    });
    expect_no_lock_held(1);
    EXPECT_TRUE(saved.queue.empty());
    expect_call_failed(1, c, Error::TimedOut);
    EXPECT_EQ(Endpoint::reply_saved(saved, msg(11)), Error::BadHandle);

    // The server waits again; the caller's next call is not a saved one.
    EXPECT_EQ(ep_->recv().error(), Error::WouldBlock);
    on_cpu(1, [&] {
        sched1().preempt_if_needed();
        ASSERT_EQ(sched1().current(), c);
        EXPECT_EQ(ep_->call(msg(7), 0xB).error(), Error::WouldBlock);
    });
    EXPECT_EQ(c->waiting_on, &r->ipc->callers);
    EXPECT_EQ(reply_wait_owner(*c), r);

    // Saved anew, it is the new saved wait's to answer: the old one's
    // answer goes nowhere.
    Saved again;
    ReplyToken next = received_by(r);
    EXPECT_EQ(next.call, token.call + 1);
    EXPECT_EQ(Endpoint::save_reply(next, again), Error::None);
    EXPECT_EQ(Endpoint::reply_saved(saved, msg(11)), Error::BadHandle);
    EXPECT_EQ(c->waiting_on, &again.queue);
    on_cpu(2, [&] { EXPECT_EQ(Endpoint::reply_saved(again, msg(12)), Error::None); });
    expect_answer(1, c, 12);
}

// A saved wait names its caller and holds a reference to it: a caller
// killed and destroyed while its call is saved stays in memory until the
// saved wait lets it go, so an answer or a drop from another CPU finds it
// no longer waiting (BadHandle, nothing) rather than freed memory (ASan).
TEST_F(SmpIpcTest, ASavedWaitPinsItsCallerPastItsEnd) {
    Saved saved;
    Thread* c = saved_call(saved).caller;
    on_cpu(2, [&] { sched_at(2).kill(*c); });
    EXPECT_EQ(c->state, ThreadState::Dead);
    EXPECT_TRUE(saved.queue.empty());
    std::erase(threads_, c);  // the test ends it, not the fixture
    Thread::destroy(c);       // the creator's reference: the pin is left
    on_cpu(2, [&] { EXPECT_EQ(Endpoint::reply_saved(saved, msg(11)), Error::BadHandle); });
    on_cpu(2, [&] { Endpoint::drop_saved(saved); });
    expect_no_lock_held(2);
    saved.unpin();  // the last reference: the caller goes now
    EXPECT_EQ(saved.caller, nullptr);
}

// A busy server of CPU 0 receives a call queued by a thread of CPU 1: the
// caller moves to the server's callers queue under its own home lock too,
// and times out there at home.
TEST_F(SmpIpcTest, AReceiveTakesAQueuedCallerOfAnotherCpuUnderItsHomeLock) {
    Thread* r = spawn("server");
    Thread* c = caller_on(1, 4, false);  // queued on the endpoint
    run_on_0_until(r);
    Result<Received> got = ep_->try_recv();
    ASSERT_TRUE(got.ok());
    expect_no_lock_held(0);
    EXPECT_EQ(c->waiting_on, &r->ipc->callers);
    EXPECT_EQ(reply_wait_owner(*c), r);
    on_cpu(1, [&] {
        for (int i = 0; i < 4; ++i) sched1().on_timer_tick();
    });
    expect_no_lock_held(1);
    EXPECT_TRUE(r->ipc->callers.empty());
    expect_call_failed(1, c, Error::TimedOut);
    EXPECT_EQ(Endpoint::reply(got.value().reply, msg(9)), Error::BadHandle);
}

// The server gives a call of another CPU's thread up: PeerDied, woken at
// its home.
TEST_F(SmpIpcTest, ADroppedReplyFailsACallerOfAnotherCpu) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    ReplyToken token = received_by(r);
    EXPECT_EQ(Endpoint::reply_drop(token), Error::None);
    expect_no_lock_held(0);
    EXPECT_EQ(c->state, ThreadState::Ready);
    expect_call_failed(1, c, Error::PeerDied);
}

// A saved reply dropped from a third CPU (its Reply freed there) fails the
// caller under the caller's home lock.
TEST_F(SmpIpcTest, ASavedReplyDroppedFromAThirdCpuFailsItsCaller) {
    Saved saved;
    Thread* c = saved_call(saved).caller;
    on_cpu(2, [&] { Endpoint::drop_saved(saved); });
    expect_no_lock_held(2);
    EXPECT_TRUE(saved.queue.empty());
    EXPECT_EQ(c->state, ThreadState::Ready);
    expect_call_failed(1, c, Error::PeerDied);
}

// A reply takes no endpoint lock, only scheduler locks: it is done while
// another CPU holds the lock of the endpoint the call came through (in an
// operation there). Taking it would spin for good: an alarm ends the test
// binary instead.
void with_endpoint_lock_held_elsewhere(Endpoint* ep, const std::function<void()>& fn) {
    ep->lock().lock_raw();
    alarm(10);
    fn();
    alarm(0);
    ep->lock().unlock_raw();
}

TEST_F(SmpIpcTest, AReplyAndADropTakeNoEndpointLock) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    ReplyToken token = received_by(r);
    with_endpoint_lock_held_elsewhere(
        ep_, [&] { EXPECT_EQ(Endpoint::reply(token, msg(9)), Error::None); });
    expect_answer(1, c, 9);

    r = server_on_0();
    c = caller_on(2);
    token = received_by(r);
    with_endpoint_lock_held_elsewhere(ep_,
                                      [&] { EXPECT_EQ(Endpoint::reply_drop(token), Error::None); });
    expect_call_failed(2, c, Error::PeerDied);
}

TEST_F(SmpIpcTest, ASavedReplyTakesNoEndpointLock) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    ReplyToken token = received_by(r);
    Saved saved;
    with_endpoint_lock_held_elsewhere(ep_, [&] {
        EXPECT_EQ(Endpoint::save_reply(token, saved), Error::None);
        on_cpu(2, [&] { EXPECT_EQ(Endpoint::reply_saved(saved, msg(11)), Error::None); });
    });
    expect_answer(1, c, 11);

    r = server_on_0();
    c = caller_on(2);
    token = received_by(r);
    Saved dropped;
    with_endpoint_lock_held_elsewhere(ep_, [&] {
        EXPECT_EQ(Endpoint::save_reply(token, dropped), Error::None);
        on_cpu(1, [&] { Endpoint::drop_saved(dropped); });
    });
    expect_call_failed(2, c, Error::PeerDied);
}

// reply_recv() to a caller of another CPU answers it as reply() does (its
// home lock, no endpoint lock held meanwhile) and then receives: a call queued
// meanwhile at once, else it waits on the endpoint.
TEST_F(SmpIpcTest, AReplyRecvAnswersACallerOfAnotherCpuThenReceives) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    ReplyToken token = received_by(r);
    Thread* queued = caller_on(2, 0, false);  // no receiver now: queued on the endpoint
    Result<Received> got = ep_->reply_recv(token, msg(9));
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got.value().msg.label, 7u);
    expect_answer(1, c, 9);
    EXPECT_EQ(queued->waiting_on, &r->ipc->callers);
    EXPECT_EQ(ep_->reply_recv(got.value().reply, msg(10)).error(), Error::WouldBlock);
    expect_answer(2, queued, 10);
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_TRUE(r->ipc->callers.empty());
    expect_no_lock_held(0);
}

// "Wake there, now": a donation to a thread of a busy CPU. A reply_recv
// of CPU 0 answers a caller of CPU 1, which runs "busy" meanwhile: CPU 1
// is interrupted at once, and the end of that interrupt runs the caller,
// on the rest of busy's quantum (busy waits at the front of the hand-off
// queue, as a donor does). The caller's next call, to the server blocked
// on CPU 0 in its receive, does the same there. Nothing crosses CPUs.
TEST_F(SmpIpcTest, ADonationToAThreadOfABusyCpuRunsItThereNow) {
    auto [r, c, busy] = answered_while_1_is_busy();
    expect_no_lock_held(0);
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{1});
    EXPECT_EQ(sched().counters().remote_donations, 1u);
    EXPECT_EQ(c->state, ThreadState::Ready);
    EXPECT_EQ(c->cpu, 1u);
    on_cpu(1, [&] { sched1().preempt_if_needed(true); });  // the end of that interrupt
    EXPECT_EQ(sched1().current(), c);
    EXPECT_EQ(sched1().counters().donations_taken, 1u);
    EXPECT_EQ(busy->state, ThreadState::Ready);
    EXPECT_TRUE(busy->lent_quantum);
    expect_answer(1, c, 9);

    // c calls again, from CPU 1 to the server, blocked on CPU 0 in its
    // receive, which runs at once: CPU 0 is busy with the boot thread.
    ASSERT_EQ(sched().current(), boot_);
    FakeCpu::notified.clear();
    uint64_t sent = sched1().counters().remote_donations;  // caller_on's call was one
    on_cpu(1, [&] { EXPECT_EQ(ep_->call(msg(7), 0xB).error(), Error::WouldBlock); });
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{0});
    EXPECT_EQ(sched1().counters().remote_donations, sent + 1);
    EXPECT_EQ(sched1().current(), busy);  // back from the hand-off queue
    sched().preempt_if_needed(true);
    EXPECT_EQ(sched().current(), r);
    EXPECT_TRUE(boot_->lent_quantum);
    Result<Received> got = Endpoint::finish_recv(*r);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(Endpoint::reply(got.value().reply, msg(10)), Error::None);
    expect_answer(1, c, 10);
}

TEST_F(SmpIpcTest, AFastDirectSwitchLeavesAnotherCpusDonationToItsInterrupt) {
    direct_switch_leaves_another_cpus_donation(true);
}

TEST_F(SmpIpcTest, AGeneralDirectSwitchLeavesAnotherCpusDonationToItsInterrupt) {
    direct_switch_leaves_another_cpus_donation(false);
}

// With donation off a busy CPU is not interrupted by a wake: the caller
// waits its round-robin turn there.
TEST_F(SmpIpcTest, WithoutDonationABusyCpuIsNotInterrupted) {
    Scheduler::set_donation_enabled(false);
    auto [r, c, busy] = answered_while_1_is_busy();
    EXPECT_TRUE(FakeCpu::notified.empty());
    EXPECT_EQ(sched().counters().remote_donations, 0u);
    on_cpu(1, [&] { sched1().preempt_if_needed(true); });
    EXPECT_EQ(sched1().current(), busy);
    EXPECT_EQ(c->state, ThreadState::Ready);
    Scheduler::set_donation_enabled(true);
}

// An idle CPU told by a wake runs the first of its ready queue; when that
// is another thread than the one a donation woke there, the donation goes
// first all the same, whether the CPU takes the interrupt's end or its
// idle loop first.
TEST_F(SmpIpcTest, ADonationToAnIdleCpuWithOtherWorkQueuedRunsFirst) {
    donation_to_an_idle_cpu_with_work_queued(false);
}

TEST_F(SmpIpcTest, ADonationToAnIdleCpuWithOtherWorkQueuedRunsFirstFromItsIdleLoop) {
    donation_to_an_idle_cpu_with_work_queued(true);
}

// When the woken thread is the first in line there, the wake's notify is
// all it takes: no target.
TEST_F(SmpIpcTest, ADonationToAnIdleCpuWithNothingElseQueuedSetsNoTarget) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    ReplyToken token = received_by(r);
    FakeCpu::notified.clear();
    EXPECT_EQ(ep_->reply_recv(token, msg(9)).error(), Error::WouldBlock);
    EXPECT_EQ(sched().counters().remote_donations, 0u);
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{1});
    on_cpu(1, [&] { sched1().preempt_if_needed(true); });
    EXPECT_EQ(sched1().current(), c);
    expect_answer(1, c, 9);
}

// Placement, starts, moves and the balancing rule take scheduler locks
// alone, in CPU index order (HomeLock): each is done with an endpoint's
// lock held elsewhere.
TEST_F(SmpIpcTest, MovesPlacementAndStartsTakeNoEndpointLock) {
    with_endpoint_lock_held_elsewhere(ep_, [&] {
        // Placed and started from CPU 0 on CPU 2.
        Thread* t = create_on(2, "placed");
        EXPECT_EQ(sched().start(*t), Error::None);
        EXPECT_EQ(sched_at(2).ready_count(), 1u);
        // Moved by its home to a lower CPU (a gap), Ready.
        on_cpu(2, [&] { EXPECT_EQ(sched_at(2).set_affinity(*t, 0b001).value(), 0u); });
        EXPECT_EQ(t->cpu, 0u);
        EXPECT_EQ(sched().ready_count(), 1u);
        // Balanced to an idle CPU at CPU 0's tick, once it has run
        // (as if it had) and waited a whole tick.
        EXPECT_EQ(sched().set_affinity(*t, 0b111).value(), 0u);
        t->ran = true;
        sched().on_timer_tick();
        sched().on_timer_tick();
        EXPECT_EQ(t->cpu, 1u);
        EXPECT_EQ(sched().counters().balanced, 1u);
        // Running on CPU 1, it moves itself at its user boundary, asked
        // from CPU 0 (a move done at CPU 1's interrupt).
        on_cpu(1, [&] { sched1().preempt_if_needed(); });
        ASSERT_EQ(sched1().current(), t);
        EXPECT_EQ(sched().set_affinity(*t, 0b100).value(), 2u);
        on_cpu(1, [&] { sched1().at_user_boundary(); });
        EXPECT_EQ(t->cpu, 2u);
        EXPECT_EQ(sched_at(2).ready_count(), 1u);
        on_cpu(2, [&] { sched_at(2).preempt_if_needed(); });
        EXPECT_EQ(sched_at(2).current(), t);
        // A process spawned without a CPU, from CPU 0, which runs only the
        // spawner (not counted), CPU 1 idle, CPU 2 busy: CPU 0, among
        // equals. Each CPU's load is read under its lock.
        Process* p = Process::create("spawned").value();
        EXPECT_EQ(p->cpu(), 0u);
        p->release();
    });
    for (uint32_t cpu = 0; cpu < 3; ++cpu) expect_no_lock_held(cpu);
}

// Each endpoint has its own lock: with one endpoint's held by another CPU
// (in an operation there), a send, a receive, a timeout and a kill on
// another endpoint go through.
TEST_F(SmpIpcTest, OperationsOnAnotherEndpointDoNotWaitForOnesLock) {
    Endpoint* other = Endpoint::create().value();
    with_endpoint_lock_held_elsewhere(ep_, [&] {
        Thread* r = running_on(1, "r");
        on_cpu(1, [&] { EXPECT_EQ(other->recv().error(), Error::WouldBlock); });
        EXPECT_EQ(other->send(msg(5), 0xC), Error::None);  // from CPU 0, to CPU 1
        EXPECT_EQ(r->state, ThreadState::Ready);
        on_cpu(1, [&] {
            sched1().preempt_if_needed();
            ASSERT_EQ(sched1().current(), r);
            Result<Received> got = Endpoint::finish_recv(*r);
            ASSERT_TRUE(got.ok());
            EXPECT_EQ(got.value().msg.label, 5u);
            EXPECT_EQ(got.value().badge, 0xCu);
            EXPECT_EQ(other->recv(1).error(), Error::WouldBlock);  // a timeout of one tick
        });
        on_cpu(1, [&] {
            sched1().on_timer_tick();
            sched1().on_timer_tick();
        });
        EXPECT_EQ(r->state, ThreadState::Ready);
        on_cpu(1, [&] {
            sched1().preempt_if_needed();
            EXPECT_EQ(Endpoint::finish_recv(*r).error(), Error::TimedOut);
            EXPECT_EQ(other->recv().error(), Error::WouldBlock);
        });
        sched().kill(*r);  // from CPU 0; a kernel thread: Dead at once
        EXPECT_EQ(r->state, ThreadState::Dead);
        EXPECT_EQ(other->waiting_receivers(), 0u);
    });
    for (uint32_t cpu = 0; cpu < 3; ++cpu) expect_no_lock_held(cpu);
    Endpoint::destroy(other);
}

// A reply wait whose guard is the caller's home lock too (a server homed
// on the same CPU, or a saved reply) times out at its caller's tick under
// that lock alone, with an endpoint's lock held elsewhere. (One guarded by
// another CPU's lock waits for the tick's second pass, whose HomeLocks
// holds the server and the caller across its gap: Thread::gap_holds.)
TEST_F(SmpIpcTest, AReplyWaitTimesOutWithoutAnEndpointLock) {
    (void)running_on(2, "busy");  // no idle CPU: the tick does not balance
    Thread* r = running_on(1, "server");
    on_cpu(1, [&] { EXPECT_EQ(ep_->recv().error(), Error::WouldBlock); });
    Thread* c = caller_on(1, 2);
    EXPECT_EQ(c->waiting_on, &r->ipc->callers);
    with_endpoint_lock_held_elsewhere(ep_, [&] {
        on_cpu(1, [&] {
            for (int i = 0; i < 2; ++i) sched1().on_timer_tick();
        });
    });
    expect_no_lock_held(1);
    EXPECT_TRUE(r->ipc->callers.empty());
    expect_call_failed(1, c, Error::TimedOut);
}

TEST_F(SmpIpcTest, ASavedReplyWaitTimesOutWithoutAnEndpointLock) {
    (void)running_on(1, "busy");  // no idle CPU: the tick does not balance
    Thread* r = server_on_0();
    Thread* c = caller_on(2, 2);
    Saved saved;
    EXPECT_EQ(Endpoint::save_reply(received_by(r), saved), Error::None);
    with_endpoint_lock_held_elsewhere(ep_, [&] {
        on_cpu(2, [&] {
            for (int i = 0; i < 2; ++i) sched_at(2).on_timer_tick();
        });
    });
    expect_no_lock_held(2);
    EXPECT_TRUE(saved.queue.empty());
    expect_call_failed(2, c, Error::TimedOut);
}

// Ending a reply wait without the lock that guards it is a kernel bug: the
// wake asserts it holds the server's home lock.
TEST_F(SmpIpcTest, AReplyWaitEndedWithoutItsServersHomeLockIsAKernelBug) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    (void)received_by(r);
    EXPECT_DEATH(on_cpu(1,
                        [&] {
                            IpcGuard guard(nullptr);
                            sched1().wake_at_home_locked(*c, WakeReason::Interrupted);
                        }),
                 "assertion failed: owner == nullptr");
    on_cpu(1, [&] { EXPECT_TRUE(sched1().wake(*c, WakeReason::Interrupted)); });
    EXPECT_TRUE(r->ipc->callers.empty());
}

// --- The gap ---
//
// HomeLock and HomeLocks let go of this CPU's lock to take a lower CPU's
// first. With a lock per endpoint, a timeout, a kill or a move from
// another CPU can land in that gap. The gap hook runs such a step in the
// gap, as the other CPU would do it under its locks (docs/locking.md),
// and each test checks that the code holding the HomeLock looks again at
// what it read before.
class SmpGapTest : public SmpIpcTest {
  protected:
    void TearDown() override {
        Scheduler::gap_hook = nullptr;
        Scheduler::relock_hook = nullptr;
        gap_action() = nullptr;
        SmpIpcTest::TearDown();
    }

    static std::function<void(Scheduler&)>& gap_action() {
        static std::function<void(Scheduler&)> action;
        return action;
    }
    static int& gaps_to_skip() {
        static int skip = 0;
        return skip;
    }
    // `action` runs in the next gap (after `skip` others), once, given the
    // CPU whose lock was let go.
    void in_next_gap(std::function<void(Scheduler&)> action, int skip = 0) {
        gap_action() = std::move(action);
        gaps_to_skip() = skip;
        Scheduler::gap_hook = [](Scheduler& gapped) {
            if (gaps_to_skip() > 0) {
                --gaps_to_skip();
                return;
            }
            std::function<void(Scheduler&)> a = std::move(gap_action());
            gap_action() = nullptr;
            Scheduler::gap_hook = nullptr;
            if (a) a(gapped);
        };
    }
    bool gap_taken() const { return Scheduler::gap_hook == nullptr; }

    // Counts the looks of kill(), wake() and the tick at the endpoint a
    // thread waits on (Scheduler::relock_hook); `action` runs once, after
    // the first, before that endpoint's lock is taken.
    static int& looks() {
        static int n = 0;
        return n;
    }
    void count_looks(std::function<void()> action) {
        static std::function<void()> first;
        looks() = 0;
        first = std::move(action);
        Scheduler::relock_hook = [](Scheduler&) {
            ++looks();
            std::function<void()> a = std::move(first);
            first = nullptr;
            if (a) a();
        };
    }

    // Runs `fn` as CPU `index`, from whichever CPU the test plays now.
    void as_cpu(uint32_t index, const std::function<void()>& fn) {
        PerCpu* was = Cpu::this_cpu();
        Cpu::set_this_cpu(index == 0 ? cpu_.get() : others_[index - 1].get());
        fn();
        Cpu::set_this_cpu(was);
    }

    // What a timeout of `c` (homed on CPU `home`, waiting on the callers
    // queue of a server homed on CPU `server_home`) does: both homes' locks
    // in index order, no endpoint lock.
    void time_out(Thread* c, uint32_t home, uint32_t server_home) {
        as_cpu(home, [&] {
            SpinLock& low = sched_at(std::min(home, server_home)).lock();
            SpinLock& high = sched_at(std::max(home, server_home)).lock();
            low.lock_raw();
            high.lock_raw();
            EXPECT_TRUE(sched_at(home).wake_at_home_locked(*c, WakeReason::TimedOut));
            high.unlock_raw();
            low.unlock_raw();
        });
    }

    // What a receive of CPU 0's server `r` does with the call of CPU 1's
    // `c` queued on the endpoint: under the endpoint's lock (here the IPC
    // lock, which the CPU in the gap holds) and both homes' locks, the
    // caller moves to r's callers queue.
    void take_queued_call(Thread* c, Thread* r) {
        as_cpu(0, [&] {
            sched_at(0).lock().lock_raw();
            sched_at(1).lock().lock_raw();
            c->waiting_on->remove(*c);
            c->ipc->op = IpcState::Op::ReplyWait;
            c->waiting_on = &r->ipc->callers;
            r->ipc->callers.push_back(*c);
            sched_at(1).lock().unlock_raw();
            sched_at(0).lock().unlock_raw();
        });
    }

    // In the gap of the HomeLocks of a kill or a stray wake from CPU 2 (the
    // second gap: the pin's comes first), `c`, running on CPU 1, calls
    // server `r` of CPU 0 and waits on r's callers queue.
    void begins_reply_wait_in_next_wait_gap(Thread* c, Thread* r) {
        in_next_gap(
            [=, this](Scheduler&) {
                as_cpu(1, [&] { EXPECT_EQ(ep_->call(msg(7), 0xB).error(), Error::WouldBlock); });
                EXPECT_EQ(c->waiting_on, &r->ipc->callers);
            },
            1);
    }

    // A server homed on CPU `cpu`, blocked in recv() on the endpoint.
    Thread* server_on(uint32_t cpu) {
        Thread* r = running_on(cpu, "server");
        on_cpu(cpu, [&] { EXPECT_EQ(ep_->recv().error(), Error::WouldBlock); });
        return r;
    }
    // The call server `r` of CPU `cpu` received, once it ran there.
    ReplyToken received_on(uint32_t cpu, Thread* r) {
        ReplyToken token;
        on_cpu(cpu, [&] {
            sched_at(cpu).preempt_if_needed();
            ASSERT_EQ(sched_at(cpu).current(), r);
            Result<Received> got = Endpoint::finish_recv(*r);
            ASSERT_TRUE(got.ok());
            token = got.value().reply;
        });
        return token;
    }
};

// A thread that moves while the lock of its old home is being taken: the
// HomeLock follows it to its new home and holds that lock alone.
TEST_F(SmpGapTest, AHomeLockFollowsAThreadThatMovedInTheGap) {
    Thread* t = create_on(1, "mover");  // Created: a move is a new home
    in_next_gap([&](Scheduler&) {
        as_cpu(1, [&] {
            sched_at(0).lock().lock_raw();
            sched_at(1).lock().lock_raw();
            t->cpu = 0;  // written under both homes' locks
            sched_at(1).lock().unlock_raw();
            sched_at(0).lock().unlock_raw();
        });
    });
    on_cpu(2, [&] {
        IpcGuard guard(&ep_->lock());
        Scheduler::HomeLock home(sched_at(2), *t);
        EXPECT_TRUE(gap_taken());
        EXPECT_TRUE(home.gapped());
        EXPECT_EQ(&*home, &sched_at(0));
        EXPECT_TRUE(sched_at(0).lock().is_locked());
        EXPECT_FALSE(sched_at(1).lock().is_locked());
    });
    expect_no_lock_held(2);
}

// The same for HomeLocks: the second thread moved to a third CPU.
TEST_F(SmpGapTest, HomeLocksFollowAThreadThatMovedInTheGap) {
    Thread* a = create_on(2, "a");
    Thread* b = create_on(1, "b");
    in_next_gap([&](Scheduler&) {
        as_cpu(1, [&] {
            sched_at(0).lock().lock_raw();
            sched_at(1).lock().lock_raw();
            b->cpu = 0;
            sched_at(1).lock().unlock_raw();
            sched_at(0).lock().unlock_raw();
        });
    });
    on_cpu(2, [&] {
        IpcGuard guard(&ep_->lock());
        Scheduler::HomeLocks homes(sched_at(2), *a, b);
        EXPECT_TRUE(homes.gapped());
        EXPECT_TRUE(sched_at(0).lock().is_locked());
        EXPECT_FALSE(sched_at(1).lock().is_locked());
        EXPECT_TRUE(Scheduler::home_lock_held(*b));
    });
    expect_no_lock_held(2);
}

// A call to a receiver of a lower CPU takes that CPU's lock in a gap,
// before anything of the receiver's wait changes; a kill that lands there
// finds the caller Running and only asks it to exit. The caller must not
// go to sleep on its reply after that: its call ends Interrupted, and the
// receiver, which got nothing, waits on.
TEST_F(SmpGapTest, ACallKilledInTheGapDoesNotSleep) {
    Thread* r = server_on(1);
    Thread* c = running_on(2, "caller");
    in_next_gap([&](Scheduler&) {
        as_cpu(0, [&] {
            sched_at(2).lock().lock_raw();  // the kill, under c's home lock
            c->exit_requested = true;
            sched_at(2).lock().unlock_raw();
        });
    });
    on_cpu(2, [&] { EXPECT_EQ(ep_->call(msg(7), 0xB).error(), Error::Interrupted); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_EQ(c->state, ThreadState::Running);
    EXPECT_EQ(c->ipc->op, IpcState::Op::None);
    EXPECT_EQ(r->state, ThreadState::Blocked);  // no message
    EXPECT_EQ(ep_->waiting_receivers(), 1u);
    EXPECT_TRUE(r->ipc->callers.empty());
    c->exit_requested = false;  // a kernel thread here: the fixture ends it
}

// A server of CPU 2 saves a call of CPU 1's thread, whose timeout lands
// in the gap: the save finds the call gone and refuses, and the caller is
// unlinked once.
TEST_F(SmpGapTest, ASaveWhoseCallerTimesOutInTheGapIsRefused) {
    Thread* r = server_on(2);
    Thread* c = caller_on(1, 5);
    ReplyToken token = received_on(2, r);
    in_next_gap([&](Scheduler&) { time_out(c, 1, 2); });
    Saved saved;
    on_cpu(2, [&] { EXPECT_EQ(Endpoint::save_reply(token, saved), Error::BadHandle); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_EQ(saved.caller, nullptr);
    EXPECT_TRUE(saved.queue.empty());
    EXPECT_TRUE(r->ipc->callers.empty());
    expect_call_failed(1, c, Error::TimedOut);
}

// The same for a reply: the caller timed out in the gap, the reply is
// stale.
TEST_F(SmpGapTest, AReplyWhoseCallerTimesOutInTheGapIsStale) {
    Thread* r = server_on(2);
    Thread* c = caller_on(1, 5);
    ReplyToken token = received_on(2, r);
    in_next_gap([&](Scheduler&) { time_out(c, 1, 2); });
    on_cpu(2, [&] { EXPECT_EQ(Endpoint::reply(token, msg(9)), Error::BadHandle); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    expect_call_failed(1, c, Error::TimedOut);
    on_cpu(2, [&] { EXPECT_EQ(Endpoint::reply(token, msg(9)), Error::BadHandle); });
}

// A reply holds no endpoint lock, so in its gap another CPU may kill the
// caller; Thread::destroy then waits for the reply to be done with it
// (Thread::gap_holds), which finds it no longer waiting.
TEST_F(SmpGapTest, AReplyWhoseCallerIsKilledInTheGapIsStale) {
    Thread* r = server_on(2);
    Thread* c = caller_on(1);
    ReplyToken token = received_on(2, r);
    bool off = true;
    in_next_gap([&](Scheduler&) {
        as_cpu(0, [&] {
            sched_at(0).kill(*c);
            // The reply reads it after the gap: Thread::destroy waits.
            LockGuard guard(sched_at(0).lock());
            off = sched_at(0).off_cpu_locked(*c);
        });
    });
    on_cpu(2, [&] { EXPECT_EQ(Endpoint::reply(token, msg(9)), Error::BadHandle); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_FALSE(off);
    EXPECT_EQ(c->gap_holds, 0u);
    EXPECT_TRUE(r->ipc->callers.empty());
    std::erase(threads_, c);  // the test ends it, not the fixture
    Thread::destroy(c);
}

// A caller of CPU 2 waiting on a server of CPU 1 times out at its home
// tick; the server's reply lands in the gap. The caller gets the reply, and
// the timeout, no longer due, does nothing.
TEST_F(SmpGapTest, ATimeoutWhoseWaitEndedInTheGapDoesNothing) {
    Thread* r = server_on(1);
    Thread* c = caller_on(2, 1);
    ReplyToken token = received_on(1, r);
    in_next_gap([&](Scheduler&) {
        as_cpu(1, [&] {
            sched_at(1).lock().lock_raw();
            sched_at(2).lock().lock_raw();
            Message m = msg(9);
            endpoint_detail::complete_at_home_locked(*c, Error::None, &m);
            sched_at(2).lock().unlock_raw();
            sched_at(1).lock().unlock_raw();
        });
    });
    on_cpu(2, [&] { sched_at(2).on_timer_tick(); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_EQ(c->state, ThreadState::Ready);
    EXPECT_EQ(c->wake_reason, WakeReason::Woken);
    expect_answer(2, c, 9);
    (void)token;
}

// A kill from CPU 2 of a caller of CPU 1 queued on the endpoint: a
// receiver of CPU 0 takes the call in the gap, so the wait is now on the
// receiver's callers queue, which CPU 0's lock guards. The kill starts over
// with that lock too.
TEST_F(SmpGapTest, AKillWhoseWaitMovedInTheGapStartsOver) {
    Thread* r = spawn("server");
    Thread* c = caller_on(1, 0, false);
    // The first gap is the look at the endpoint it waits on (its home
    // lock); the second the kill's own.
    in_next_gap([&](Scheduler&) { take_queued_call(c, r); }, 1);
    on_cpu(2, [&] { sched_at(2).kill(*c); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_EQ(c->state, ThreadState::Dead);
    EXPECT_TRUE(r->ipc->callers.empty());
}

// kill() reads which endpoint its thread waits on under that thread's home
// lock, then takes that endpoint's lock and this CPU's (the lock order),
// with no lock held in between. A receiver that takes the queued call
// there moves it to its callers queue, a wait on no endpoint: the kill
// looks again (a second look) and ends the reply wait.
TEST_F(SmpGapTest, AKillWhoseWaitLeftItsEndpointBeforeTheLocksLooksAgain) {
    Thread* r = spawn("server");
    Thread* c = caller_on(1, 0, false);
    count_looks([&] { take_queued_call(c, r); });
    on_cpu(2, [&] { sched_at(2).kill(*c); });
    EXPECT_EQ(looks(), 2);
    expect_no_lock_held(2);
    EXPECT_EQ(c->state, ThreadState::Dead);
    EXPECT_TRUE(r->ipc->callers.empty());
    EXPECT_EQ(ep_->waiting_senders(), 0u);
}

// A kill from CPU 2 of a thread running on CPU 1 (no endpoint to pin): in
// the gap of its HomeLocks, the thread calls a server of CPU 0 and waits
// for the reply on that server's callers queue, whose guard is CPU 0's
// lock, not held. The kill reads the wait's owner again once it has its
// locks and takes them again with that one's: the wait ends under every
// lock that guards it (without the look, the kill's assertion on the
// reply wait's guard fails).
TEST_F(SmpGapTest, AKillWhoseThreadBeganAReplyWaitInTheGapTakesItsGuardToo) {
    Thread* r = server_on_0();
    Thread* c = running_on(1, "caller");
    begins_reply_wait_in_next_wait_gap(c, r);
    as_cpu(2, [&] { sched_at(2).kill(*c); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_EQ(c->state, ThreadState::Dead);
    EXPECT_TRUE(r->ipc->callers.empty());
}

// The same for a stray wake from CPU 2: it wakes the thread from its new
// reply wait under that wait's guard too, and the call fails Interrupted.
TEST_F(SmpGapTest, AWakeWhoseThreadBeganAReplyWaitInTheGapTakesItsGuardToo) {
    Thread* r = server_on_0();
    Thread* c = running_on(1, "caller");
    begins_reply_wait_in_next_wait_gap(c, r);
    as_cpu(2, [&] { EXPECT_TRUE(sched_at(2).wake(*c)); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_EQ(c->state, ThreadState::Ready);
    EXPECT_TRUE(r->ipc->callers.empty());
    expect_call_failed(1, c, Error::Interrupted);
}

// The same look again for a stray wake from CPU 2, and for the tick's
// second pass at the caller's home: the wait left the endpoint (a receiver
// took the call) between the look and the endpoint's lock, and is ended
// where it is now, as a reply wait.
TEST_F(SmpGapTest, AWakeWhoseWaitLeftItsEndpointLooksAgain) {
    Thread* r = spawn("server");
    Thread* c = caller_on(1, 0, false);
    count_looks([&] { take_queued_call(c, r); });
    on_cpu(2, [&] { EXPECT_TRUE(sched_at(2).wake(*c, WakeReason::Interrupted)); });
    EXPECT_EQ(looks(), 2);
    expect_no_lock_held(2);
    EXPECT_TRUE(r->ipc->callers.empty());
    expect_call_failed(1, c, Error::Interrupted);
}

TEST_F(SmpGapTest, ATimeoutWhoseWaitLeftItsEndpointLooksAgain) {
    Thread* r = spawn("server");
    (void)running_on(2, "busy");  // no idle CPU: the tick does not balance
    Thread* t = caller_on(1, 2, false);
    count_looks([&] { take_queued_call(t, r); });
    on_cpu(1, [&] {
        for (int i = 0; i < 3; ++i) sched1().on_timer_tick();
    });
    EXPECT_EQ(looks(), 2);
    expect_no_lock_held(1);
    EXPECT_TRUE(r->ipc->callers.empty());
    expect_call_failed(1, t, Error::TimedOut);
}

// The same for a stray wake from CPU 2: it ends the wait where it is now,
// under the receiver's home lock too.
TEST_F(SmpGapTest, AWakeWhoseWaitMovedInTheGapStartsOver) {
    Thread* r = spawn("server");
    Thread* c = caller_on(1, 0, false);
    // The first gap is the look at the endpoint it waits on (its home
    // lock); the second the wake's own.
    in_next_gap([&](Scheduler&) { take_queued_call(c, r); }, 1);
    on_cpu(2, [&] { EXPECT_TRUE(sched_at(2).wake(*c, WakeReason::Interrupted)); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_TRUE(r->ipc->callers.empty());
    expect_call_failed(1, c, Error::Interrupted);
}

// A move to a lower CPU lets go of its own lock (the gap), where another
// CPU may ask the thread another move: the first move leaves it for that
// one, which its home does next.
TEST_F(SmpGapTest, AMoveAskedAnotherInTheGapLeavesItForThatOne) {
    WaitQueue q;
    Thread* t = blocked_on(1, "t", q);
    t->context.gave_stack_up = true;                         // blocked at its frame: movable
    EXPECT_EQ(sched().set_affinity(*t, 0b001).value(), 0u);  // asked of CPU 1
    in_next_gap([&](Scheduler&) {
        as_cpu(2, [&] { EXPECT_EQ(sched_at(2).set_affinity(*t, 0b101).value(), 2u); });
    });
    on_cpu(1, [&] { sched1().preempt_if_needed(); });  // its interrupt: the moves
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(1);
    EXPECT_EQ(t->cpu, 2u);  // not to CPU 0
    EXPECT_EQ(t->move_to, Thread::kNoMove);
    EXPECT_FALSE(t->move_hook.is_linked());
    EXPECT_EQ(sched1().counters().moves, 1u);
    EXPECT_TRUE(sched().wake(*t));
    EXPECT_EQ(sched_at(2).ready_count(), 1u);
}

// A mask narrowed in the gap so that it no longer allows the move's
// destination: the thread stays where it is, which the mask allows.
TEST_F(SmpGapTest, AMoveWhoseDestinationTheGapDisallowedStays) {
    WaitQueue q;
    Thread* t = blocked_on(1, "t", q);
    t->context.gave_stack_up = true;
    EXPECT_EQ(sched().set_affinity(*t, 0b001).value(), 0u);
    in_next_gap([&](Scheduler&) {
        as_cpu(2, [&] { EXPECT_EQ(sched_at(2).set_affinity(*t, 0b110).value(), 1u); });
    });
    on_cpu(1, [&] { sched1().preempt_if_needed(); });
    EXPECT_TRUE(gap_taken());
    EXPECT_EQ(t->cpu, 1u);
    EXPECT_EQ(t->move_to, Thread::kNoMove);
    EXPECT_FALSE(t->move_hook.is_linked());
    EXPECT_EQ(sched1().counters().moves, 0u);
    EXPECT_TRUE(sched().wake(*t));
    EXPECT_EQ(sched1().ready_count(), 1u);
}

// A thread of CPU 1 on its way to CPU 0 (a move), woken with a donation
// from CPU 2 in the move's gap: it became CPU 1's donate target ("wake
// there, now"), but the move goes on (a wake keeps it movable). CPU 1
// forgets it then: the end of its interrupt runs what it ran, and the
// thread runs on CPU 0 alone.
TEST_F(SmpGapTest, ADonationInAMovesGapIsVoidOnceTheThreadMoved) {
    WaitQueue q;
    Thread* t = blocked_on(1, "t", q);
    t->context.gave_stack_up = true;  // blocked at its frame: movable
    Thread* busy = running_on(1, "busy");
    EXPECT_EQ(sched().set_affinity(*t, 0b001).value(), 0u);  // asked of CPU 1
    in_next_gap([&](Scheduler&) { as_cpu(2, [&] { sched_at(2).unblock_yield(*t); }); });
    on_cpu(1, [&] { sched1().preempt_if_needed(true); });  // its interrupt: the move
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(1);
    EXPECT_EQ(sched_at(2).counters().remote_donations, 1u);
    EXPECT_EQ(t->cpu, 0u);
    EXPECT_EQ(t->state, ThreadState::Ready);
    EXPECT_EQ(sched1().current(), busy);
    EXPECT_EQ(sched1().counters().donations_taken, 0u);
    EXPECT_EQ(sched().ready_count(), 1u);
    run_on_0_until(t);
}

// A kernel thread killed from another CPU in its move's gap is Dead, but
// the move still looks at it once it has its locks again: until then
// off_cpu_locked says no (Thread::destroy's retry loop is not run here),
// after it Thread::destroy goes through.
TEST_F(SmpGapTest, AThreadKilledInItsMovesGapIsNotOffCpuUntilTheMoveEnds) {
    Thread* k = create_on(1, "k");
    EXPECT_EQ(sched().start(*k), Error::None);               // Ready on CPU 1, never ran: movable
    EXPECT_EQ(sched().set_affinity(*k, 0b001).value(), 0u);  // asked of CPU 1
    bool off = true;
    in_next_gap([&](Scheduler&) {
        as_cpu(2, [&] {
            sched_at(2).kill(*k);
            LockGuard guard(sched_at(2).lock());
            off = sched_at(2).off_cpu_locked(*k);
        });
    });
    on_cpu(1, [&] { sched1().preempt_if_needed(); });  // its interrupt: the move
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(1);
    EXPECT_FALSE(off);
    EXPECT_EQ(k->state, ThreadState::Dead);
    EXPECT_EQ(k->cpu, 1u);
    EXPECT_EQ(k->gap_holds, 0u);
    EXPECT_EQ(sched1().counters().moves, 0u);
    std::erase(threads_, k);
    Thread::destroy(k);  // the test ends it, not the fixture
}

// A kernel server of CPU 2 killed there with a caller of CPU 1 on its
// callers queue: the kill fails the caller under both homes' locks, and
// lets go of CPU 2's for CPU 1's. No endpoint lock keeps Thread::destroy out of
// that gap: the server is Dead by then, but the kill still reads it after
// (Thread::gap_holds), so off_cpu_locked says no until the kill is done.
TEST_F(SmpGapTest, AServerKilledWithCallersIsNotOffCpuUntilTheKillEnds) {
    Thread* k = server_on(2);
    Thread* c = caller_on(1);
    (void)received_on(2, k);
    WaitQueue q;
    on_cpu(2, [&] {
        LockGuard guard(sched_at(2).lock());
        sched_at(2).block_current_locked(&q, 0);  // blocked again, with the call
    });
    bool off = true;
    in_next_gap([&](Scheduler&) {
        as_cpu(0, [&] {
            EXPECT_EQ(k->state, ThreadState::Dead);
            EXPECT_EQ(c->waiting_on, &k->ipc->callers);  // not failed yet
            LockGuard guard(sched_at(0).lock());
            off = sched_at(0).off_cpu_locked(*k);
        });
    });
    as_cpu(2, [&] { sched_at(2).kill(*k); });
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(2);
    EXPECT_FALSE(off);
    EXPECT_EQ(k->gap_holds, 0u);
    EXPECT_EQ(c->state, ThreadState::Ready);
    EXPECT_EQ(c->ipc->result, Error::PeerDied);
    EXPECT_TRUE(k->ipc->callers.empty());
    std::erase(threads_, k);  // the test ends it, not the fixture
    Thread::destroy(k);
}

// The moves asked of a CPU are done at its interrupt, one after another;
// a kill from another CPU in one move's gap takes the next thread off the
// move list, and the list is looked at afresh: the dead one stays, the
// others move.
TEST_F(SmpGapTest, AKillInAMovesGapTakesTheNextOffTheMoveList) {
    WaitQueue q;
    Thread* a = blocked_on(1, "a", q);
    Thread* b = blocked_on(1, "b", q);
    Thread* c = blocked_on(1, "c", q);
    for (Thread* t : {a, b, c}) {
        t->context.gave_stack_up = true;
        EXPECT_EQ(sched().set_affinity(*t, 0b001).value(), 0u);  // asked of CPU 1
        EXPECT_EQ(t->cpu, 1u);
    }
    in_next_gap([&](Scheduler&) { as_cpu(2, [&] { sched_at(2).kill(*b); }); });
    on_cpu(1, [&] { sched1().preempt_if_needed(); });  // its interrupt
    EXPECT_TRUE(gap_taken());
    expect_no_lock_held(1);
    EXPECT_EQ(a->cpu, 0u);
    EXPECT_EQ(b->state, ThreadState::Dead);
    EXPECT_EQ(b->cpu, 1u);
    EXPECT_FALSE(b->move_hook.is_linked());
    EXPECT_EQ(c->cpu, 0u);
    EXPECT_EQ(sched1().counters().moves, 2u);
    EXPECT_TRUE(sched().wake(*a));
    EXPECT_TRUE(sched().wake(*c));
}

}  // namespace
}  // namespace mk
