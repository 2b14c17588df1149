#include <gtest/gtest.h>

#include <algorithm>

#include "endpoint.hpp"
#include "fake_heap.hpp"
#include "kobject.hpp"
#include "sched_fixture.hpp"

namespace mk {
namespace {

using SchedulerTest = testing::SchedFixture;

TEST_F(SchedulerTest, RoundRobinInStartOrder) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    Thread* c = spawn("c");
    EXPECT_EQ(sched().current(), boot_);
    yield();
    EXPECT_EQ(sched().current(), a);
    yield();
    EXPECT_EQ(sched().current(), b);
    yield();
    EXPECT_EQ(sched().current(), c);
    yield();
    EXPECT_EQ(sched().current(), boot_);
    yield();
    EXPECT_EQ(sched().current(), a);
    EXPECT_EQ(a->state, ThreadState::Running);
    EXPECT_EQ(boot_->state, ThreadState::Ready);
    ASSERT_EQ(FakeCpu::switches.size(), 5u);
    EXPECT_EQ(FakeCpu::switches[0].from, &boot_->context);
    EXPECT_EQ(FakeCpu::switches[0].to, &a->context);
    EXPECT_EQ(sched().counters().yields, 5u);
    EXPECT_EQ(sched().counters().switches, 5u);
}

TEST_F(SchedulerTest, YieldAloneKeepsRunning) {
    yield();
    EXPECT_EQ(sched().current(), boot_);
    EXPECT_TRUE(FakeCpu::switches.empty());
}

TEST_F(SchedulerTest, QuantumExpiryPreempts) {
    Thread* a = spawn("a");
    for (uint32_t i = 0; i + 1 < Scheduler::kQuantumTicks; ++i) {
        sched().on_timer_tick();
        sched().preempt_if_needed();
        EXPECT_EQ(sched().current(), boot_) << "tick " << i;
    }
    sched().on_timer_tick();
    sched().preempt_if_needed();
    EXPECT_EQ(sched().current(), a);
    EXPECT_EQ(sched().counters().preemptions, 1u);
    // A gets a fresh quantum.
    for (uint32_t i = 0; i + 1 < Scheduler::kQuantumTicks; ++i) {
        sched().on_timer_tick();
        sched().preempt_if_needed();
    }
    EXPECT_EQ(sched().current(), a);
    sched().on_timer_tick();
    sched().preempt_if_needed();
    EXPECT_EQ(sched().current(), boot_);
    EXPECT_EQ(sched().counters().ticks, 2u * Scheduler::kQuantumTicks);
}

TEST_F(SchedulerTest, QuantumExpiryWithNothingReadyKeepsRunning) {
    for (uint32_t i = 0; i < 3 * Scheduler::kQuantumTicks; ++i) {
        sched().on_timer_tick();
        sched().preempt_if_needed();
    }
    EXPECT_EQ(sched().current(), boot_);
    EXPECT_EQ(sched().counters().preemptions, 0u);
}

TEST_F(SchedulerTest, DonateToReadyTargetSkipsTheQueue) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    Thread* c = spawn("c");
    sched().set_donate_target(c);
    yield();
    EXPECT_EQ(sched().current(), c);
    EXPECT_EQ(sched().counters().donations_taken, 1u);
    // The donor waits at the front of the ready queue, ahead of a and b.
    yield();
    EXPECT_EQ(sched().current(), boot_);
    yield();
    EXPECT_EQ(sched().current(), a);
    yield();
    EXPECT_EQ(sched().current(), b);
    yield();
    EXPECT_EQ(sched().current(), c);
    yield();
    EXPECT_EQ(sched().current(), boot_);
}

TEST_F(SchedulerTest, DonateTargetIsConsumedByOneYield) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    sched().set_donate_target(b);
    yield();
    EXPECT_EQ(sched().current(), b);
    yield();  // no target any more: the donor, then round-robin
    EXPECT_EQ(sched().current(), boot_);
    yield();
    EXPECT_EQ(sched().current(), a);
    EXPECT_EQ(sched().counters().donations_taken, 1u);
    EXPECT_EQ(sched().counters().donation_fallbacks, 0u);
}

// A server that answers with a donation and a client that then blocks again
// (a deferred reply, a pipe write): the server runs next, not the busy
// threads, and the two share the one quantum.
TEST_F(SchedulerTest, DonorRunsWhenTheThreadItWokeBlocksOnTheSameQuantum) {
    Thread* busy = spawn("busy");
    Thread* c = spawn("c");
    WaitQueue q;
    for (uint32_t i = 0; i < Scheduler::kQuantumTicks - 2; ++i) sched().on_timer_tick();
    sched().set_donate_target(c);
    yield();
    ASSERT_EQ(sched().current(), c);
    sched().on_timer_tick();
    sched().preempt_if_needed();
    ASSERT_EQ(sched().current(), c);
    sched().block(&q);
    EXPECT_EQ(sched().current(), boot_);  // ahead of busy
    EXPECT_FALSE(boot_->lent_quantum);
    sched().on_timer_tick();  // the quantum's last tick: busy's turn
    sched().preempt_if_needed();
    EXPECT_EQ(sched().current(), busy);
    EXPECT_EQ(sched().counters().preemptions, 1u);
    sched().wake(*c);
}

TEST_F(SchedulerTest, WhenTheLentQuantumEndsTheDonorGoesToTheBack) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    Thread* c = spawn("c");
    sched().set_donate_target(c);
    yield();
    ASSERT_EQ(sched().current(), c);
    ASSERT_TRUE(boot_->lent_quantum);
    for (uint32_t i = 0; i < Scheduler::kQuantumTicks; ++i) sched().on_timer_tick();
    sched().preempt_if_needed();
    EXPECT_EQ(sched().current(), a);
    EXPECT_FALSE(boot_->lent_quantum);
    yield();
    EXPECT_EQ(sched().current(), b);
    yield();
    EXPECT_EQ(sched().current(), boot_);
    yield();
    EXPECT_EQ(sched().current(), c);
}

// A server that answers a caller and has its next message already goes
// on; the callers it woke run as soon as it stops, in order, ahead of the
// threads that were merely ready.
TEST_F(SchedulerTest, HandedOffThreadsRunNextInOrder) {
    Thread* busy = spawn("busy");
    Thread* c1 = spawn("c1");
    Thread* c2 = spawn("c2");
    {
        LockGuard guard(sched().lock());
        sched().hand_off_locked(*c1);
        sched().hand_off_locked(*c2);
        sched().hand_off_locked(*c2);  // once is enough
    }
    EXPECT_EQ(sched().ready_count(), 3u);
    yield();
    EXPECT_EQ(sched().current(), c1);
    yield();
    EXPECT_EQ(sched().current(), c2);
    yield();
    EXPECT_EQ(sched().current(), busy);
}

TEST_F(SchedulerTest, HandOffWithDonationOffLeavesTheOrder) {
    sched().set_donation_enabled(false);
    Thread* busy = spawn("busy");
    Thread* c1 = spawn("c1");
    {
        LockGuard guard(sched().lock());
        sched().hand_off_locked(*c1);
    }
    EXPECT_FALSE(c1->lent_quantum);
    yield();
    EXPECT_EQ(sched().current(), busy);
    sched().set_donation_enabled(true);
}

// A donation when the quantum is already used up: the target still runs,
// but the donor has nothing to lend and waits its turn at the back.
TEST_F(SchedulerTest, DonationWithTheQuantumUsedUpSendsTheDonorToTheBack) {
    Thread* a = spawn("a");
    Thread* c = spawn("c");
    for (uint32_t i = 0; i < Scheduler::kQuantumTicks; ++i) sched().on_timer_tick();
    sched().set_donate_target(c);
    yield();  // before the preemption the expiry asked for
    ASSERT_EQ(sched().current(), c);
    EXPECT_FALSE(boot_->lent_quantum);
    yield();
    EXPECT_EQ(sched().current(), a);
    yield();
    EXPECT_EQ(sched().current(), boot_);
}

TEST_F(SchedulerTest, KilledLenderLeavesTheQueue) {
    Thread* c = spawn("c");
    Thread* d = spawn("d");
    yield();  // c runs
    ASSERT_EQ(sched().current(), c);
    sched().set_donate_target(d);
    yield();  // c lends to d
    ASSERT_EQ(sched().current(), d);
    ASSERT_TRUE(c->lent_quantum);
    sched().kill(*c);
    EXPECT_FALSE(c->lent_quantum);
    yield();
    EXPECT_EQ(sched().current(), boot_);
}

TEST_F(SchedulerTest, DonationFallsBackWhenTargetBlocked) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    WaitQueue q;
    yield();  // a runs
    yield();  // b runs
    ASSERT_EQ(sched().current(), b);
    sched().block(&q);  // b blocks; boot runs
    ASSERT_EQ(sched().current(), boot_);
    sched().set_donate_target(b);
    yield();
    EXPECT_EQ(sched().current(), a);
    EXPECT_EQ(sched().counters().donation_fallbacks, 1u);
    EXPECT_EQ(sched().counters().donations_taken, 0u);
    sched().wake(*b);
}

TEST_F(SchedulerTest, DonationFallsBackWhenTargetAlreadyRunning) {
    Thread* a = spawn("a");
    sched().set_donate_target(boot_);  // the yielding thread itself
    yield();
    EXPECT_EQ(sched().current(), a);
    EXPECT_EQ(sched().counters().donation_fallbacks, 1u);
}

TEST_F(SchedulerTest, DonationOffIgnoresTarget) {
    sched().set_donation_enabled(false);
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    (void)a;
    sched().set_donate_target(b);
    yield();
    EXPECT_EQ(sched().current(), a);
    EXPECT_EQ(sched().counters().donations_taken, 0u);
}

TEST_F(SchedulerTest, UnblockYieldRunsTheWokenThreadNext) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    WaitQueue q;
    yield();
    yield();
    ASSERT_EQ(sched().current(), b);
    sched().block(&q);  // b sleeps; boot runs
    ASSERT_EQ(sched().current(), boot_);
    sched().unblock_yield(*b);  // a is ahead in the queue, b runs anyway
    EXPECT_EQ(sched().current(), b);
    EXPECT_EQ(sched().counters().donations_taken, 1u);
    EXPECT_EQ(FakeCpu::yield_vectors, 3u);
    (void)a;
}

TEST_F(SchedulerTest, BlockLinksOnQueueAndWakeUnlinks) {
    WaitQueue q;
    Thread* a = spawn("a");
    yield();
    ASSERT_EQ(sched().current(), a);
    EXPECT_EQ(sched().block(&q), WakeReason::None);  // host fake: returns at the switch
    EXPECT_EQ(a->state, ThreadState::Blocked);
    EXPECT_EQ(a->waiting_on, &q);
    EXPECT_TRUE(q.contains(*a));
    EXPECT_TRUE(sched().wake(*a));
    EXPECT_EQ(a->state, ThreadState::Ready);
    EXPECT_EQ(a->waiting_on, nullptr);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(a->wake_reason, WakeReason::Woken);
    EXPECT_EQ(sched().counters().blocks, 1u);
    EXPECT_EQ(sched().counters().wakeups, 1u);
}

TEST_F(SchedulerTest, WaitQueueIsFifo) {
    WaitQueue q;
    Thread* t[4];
    for (int i = 0; i < 4; ++i) {
        t[i] = spawn("w");
        yield();  // boot -> t[i]
        ASSERT_EQ(sched().current(), t[i]);
        sched().block(&q);
        ASSERT_EQ(sched().current(), boot_);
    }
    ASSERT_EQ(q.size(), 4u);
    for (int i = 0; i < 4; ++i) {
        Thread* first = q.front();
        EXPECT_EQ(first, t[i]);
        sched().wake(*first);
    }
    // Woken in order, they run in order.
    for (int i = 0; i < 4; ++i) {
        yield();
        EXPECT_EQ(sched().current(), t[i]);
    }
}

TEST_F(SchedulerTest, WakeOfNonBlockedThreadIsHarmlessAndCounted) {
    Thread* a = spawn("a");
    EXPECT_FALSE(sched().wake(*a));      // Ready
    EXPECT_FALSE(sched().wake(*boot_));  // Running
    EXPECT_FALSE(sched().wake(*a));
    EXPECT_EQ(sched().counters().wakes_not_blocked, 3u);
    EXPECT_EQ(sched().counters().wakeups, 0u);
    EXPECT_EQ(sched().ready_count(), 1u);  // a queued exactly once
    yield();
    EXPECT_EQ(sched().current(), a);
    yield();
    EXPECT_EQ(sched().current(), boot_);
    yield();
    EXPECT_EQ(sched().current(), a);
}

TEST_F(SchedulerTest, WakeTwiceQueuesOnce) {
    WaitQueue q;
    Thread* a = spawn("a");
    yield();
    sched().block(&q);
    EXPECT_TRUE(sched().wake(*a));
    EXPECT_FALSE(sched().wake(*a));
    EXPECT_EQ(sched().ready_count(), 1u);
}

TEST_F(SchedulerTest, WakeBetweenPrepareAndBlockIsNotLost) {
    WaitQueue q;
    Thread* a = spawn("a");
    yield();
    ASSERT_EQ(sched().current(), a);
    sched().prepare_block();
    // The waker runs here (say, from an interrupt) before a sleeps.
    EXPECT_FALSE(sched().wake(*a));
    size_t switches = FakeCpu::switches.size();
    EXPECT_EQ(sched().block(&q), WakeReason::Woken);
    EXPECT_EQ(sched().current(), a);  // did not sleep
    EXPECT_EQ(a->state, ThreadState::Running);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(FakeCpu::switches.size(), switches);
    EXPECT_EQ(sched().counters().wake_races_caught, 1u);
    EXPECT_EQ(sched().counters().blocks, 0u);
}

// Found by the spin model (tests/model): the timer preempts the thread
// between prepare_block() and block(), so the wake finds it Ready, not Running.
TEST_F(SchedulerTest, WakeWhilePreemptedBetweenPrepareAndBlockIsNotLost) {
    WaitQueue q;
    Thread* a = spawn("a");
    yield();
    ASSERT_EQ(sched().current(), a);
    sched().prepare_block();
    for (uint32_t i = 0; i < Scheduler::kQuantumTicks; ++i) sched().on_timer_tick();
    sched().preempt_if_needed();
    ASSERT_EQ(sched().current(), boot_);
    ASSERT_EQ(a->state, ThreadState::Ready);
    EXPECT_FALSE(sched().wake(*a));  // the waker runs while a is preempted
    yield();
    ASSERT_EQ(sched().current(), a);
    EXPECT_EQ(sched().block(&q), WakeReason::Woken);
    EXPECT_EQ(sched().current(), a);
    EXPECT_EQ(a->state, ThreadState::Running);
    EXPECT_EQ(sched().counters().wake_races_caught, 1u);
}

TEST_F(SchedulerTest, StaleWakeDoesNotCancelALaterBlock) {
    WaitQueue q;
    Thread* a = spawn("a");
    yield();
    EXPECT_FALSE(sched().wake(*a));  // not armed: nothing remembered
    sched().block(&q);
    EXPECT_EQ(a->state, ThreadState::Blocked);
    sched().wake(*a);
}

TEST_F(SchedulerTest, IdleRunsWhenNothingIsReady) {
    WaitQueue q;
    sched().block(&q);  // boot sleeps
    EXPECT_EQ(sched().current(), idle_);
    EXPECT_TRUE(sched().idle_once());
    EXPECT_EQ(FakeCpu::waits_for_interrupt, 1u);
    EXPECT_EQ(sched().ready_count(), 0u);  // idle never queued
    // An interrupt wakes boot: the end of the interrupt switches away from idle.
    sched().wake(*boot_);
    sched().preempt_if_needed();
    EXPECT_EQ(sched().current(), boot_);
    EXPECT_EQ(sched().counters().preemptions, 0u);  // leaving idle is not a preemption
    EXPECT_EQ(idle_->state, ThreadState::Ready);
    EXPECT_FALSE(idle_->queue_hook.is_linked());
}

TEST_F(SchedulerTest, IdleSwitchesToReadyWork) {
    WaitQueue q;
    Thread* a = spawn("a");
    yield();
    sched().block(&q);  // a sleeps: boot runs
    sched().block(&q);  // boot sleeps: idle runs
    ASSERT_EQ(sched().current(), idle_);
    sched().wake(*a);
    EXPECT_FALSE(sched().idle_once());
    EXPECT_EQ(sched().current(), a);
    sched().wake(*boot_);
}

TEST_F(SchedulerTest, TimeoutWakesAndUnlinks) {
    WaitQueue q;
    Thread* a = spawn("a");
    yield();
    sched().block(&q, 3);
    ASSERT_EQ(sched().current(), boot_);
    sched().on_timer_tick();
    sched().on_timer_tick();
    EXPECT_EQ(a->state, ThreadState::Blocked);
    sched().on_timer_tick();
    EXPECT_EQ(a->state, ThreadState::Ready);
    EXPECT_EQ(a->wake_reason, WakeReason::TimedOut);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(sched().counters().timeouts, 1u);
}

// A tick with nothing due holds this CPU's scheduler lock alone: it does
// not wait for the lock of an endpoint, which another CPU may hold for as
// long as an IPC operation takes. A due wait on an endpoint ends under that
// endpoint's lock: only that lock tells whether another CPU is completing
// the thread's operation now. (A reply wait, which scheduler locks guard,
// takes none: AReplyWaitTimesOutWithoutAnEndpointLock, smp_ipc_test.cpp.)
TEST_F(SchedulerTest, OnlyADueTimeoutTakesAnEndpointLockAtATick) {
    Endpoint* ep = Endpoint::create().value();
    Thread* a = spawn("a");
    yield();
    ASSERT_EQ(sched().current(), a);
    EXPECT_EQ(ep->recv(2).error(), Error::WouldBlock);  // a blocks
    ASSERT_EQ(sched().current(), boot_);
    ep->lock().lock_raw();    // held elsewhere
    sched().on_timer_tick();  // nothing due: done without it
    ep->lock().unlock_raw();
    EXPECT_EQ(a->state, ThreadState::Blocked);
    EXPECT_DEATH(
        {
            // Held by this CPU (the bookkeeping says so): the tick's second
            // pass finds the lock order broken rather than spinning.
            LockGuard held(ep->lock());
            sched().on_timer_tick();
        },
        "assertion failed");
    sched().on_timer_tick();
    EXPECT_EQ(a->state, ThreadState::Ready);
    EXPECT_EQ(a->wake_reason, WakeReason::TimedOut);
    EXPECT_EQ(ep->waiting_receivers(), 0u);
    EXPECT_EQ(Endpoint::finish_recv(*a).error(), Error::TimedOut);
    Endpoint::destroy(ep);
}

TEST_F(SchedulerTest, WakeBeforeTimeoutCancelsIt) {
    WaitQueue q;
    Thread* a = spawn("a");
    yield();
    sched().block(&q, 2);
    sched().wake(*a);
    EXPECT_FALSE(a->timeout_hook.is_linked());
    sched().on_timer_tick();
    sched().on_timer_tick();
    EXPECT_EQ(a->wake_reason, WakeReason::Woken);
    EXPECT_EQ(sched().counters().timeouts, 0u);
}

// Found in review: deadline = ticks + timeout wrapped around, so a huge
// timeout (user code passes UINT64_MAX for "forever") expired at the next
// tick. The sum saturates, and a deadline of UINT64_MAX never expires.
TEST_F(SchedulerTest, HugeTimeoutsSaturateAndNeverExpire) {
    WaitQueue q;
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    for (int i = 0; i < 5; ++i) sched().on_timer_tick();
    yield();
    ASSERT_EQ(sched().current(), a);
    sched().block(&q, UINT64_MAX);
    ASSERT_EQ(sched().current(), b);
    sched().block(&q, UINT64_MAX - 1);
    ASSERT_EQ(sched().current(), boot_);
    EXPECT_EQ(a->deadline, UINT64_MAX);
    EXPECT_EQ(b->deadline, UINT64_MAX);
    for (int i = 0; i < 3 * int(Scheduler::kQuantumTicks); ++i) {
        sched().on_timer_tick();
        sched().preempt_if_needed();
    }
    EXPECT_EQ(a->state, ThreadState::Blocked);
    EXPECT_EQ(b->state, ThreadState::Blocked);
    EXPECT_EQ(sched().counters().timeouts, 0u);
    // Still woken like any other waiter, and the wake disarms nothing stale.
    EXPECT_TRUE(sched().wake(*a));
    EXPECT_EQ(a->wake_reason, WakeReason::Woken);
    EXPECT_EQ(a->deadline, 0u);
    EXPECT_TRUE(sched().wake(*b));
    EXPECT_FALSE(b->timeout_hook.is_linked());
}

// A long timeout that does not overflow still expires when it is due.
TEST_F(SchedulerTest, TimeoutJustShortOfSaturationIsArmed) {
    WaitQueue q;
    Thread* a = spawn("a");
    for (int i = 0; i < 5; ++i) sched().on_timer_tick();
    yield();
    sched().block(&q, UINT64_MAX - 6);
    EXPECT_EQ(a->deadline, UINT64_MAX - 1);
    EXPECT_TRUE(a->timeout_hook.is_linked());
    sched().wake(*a);
}

TEST_F(SchedulerTest, TimeoutsExpireInDeadlineOrder) {
    WaitQueue q;
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    yield();
    sched().block(&q, 5);  // a sleeps; b is next in line
    ASSERT_EQ(sched().current(), b);
    sched().block(&q, 2);  // b
    sched().on_timer_tick();
    sched().on_timer_tick();
    EXPECT_EQ(b->state, ThreadState::Ready);
    EXPECT_EQ(a->state, ThreadState::Blocked);
    for (int i = 0; i < 3; ++i) sched().on_timer_tick();
    EXPECT_EQ(a->state, ThreadState::Ready);
}

TEST_F(SchedulerTest, NewThreadIsCreatedUntilStarted) {
    Thread* t = create("t");
    EXPECT_EQ(t->state, ThreadState::Created);
    EXPECT_STREQ(thread_state_name(t->state), "created");
    EXPECT_FALSE(t->queue_hook.is_linked());
    EXPECT_EQ(sched().ready_count(), 0u);
    EXPECT_FALSE(sched().wake(*t));  // harmless, like any wake of a thread not Blocked
    EXPECT_EQ(t->state, ThreadState::Created);
    EXPECT_EQ(sched().start(*t), Error::None);
    EXPECT_EQ(t->state, ThreadState::Ready);
    EXPECT_EQ(sched().ready_count(), 1u);
    EXPECT_EQ(sched().start(*t), Error::BadState);  // started once only
    EXPECT_EQ(sched().ready_count(), 1u);
    yield();
    EXPECT_EQ(sched().current(), t);
    EXPECT_EQ(sched().start(*t), Error::BadState);
    EXPECT_EQ(t->state, ThreadState::Running);
}

// Found in review: a created thread reported Ready, so a donation to it
// took it off the ready queue it was never on (a panic in ready_.remove).
TEST_F(SchedulerTest, DonationToACreatedThreadFallsBackToRoundRobin) {
    Thread* t = create("t");
    Thread* a = spawn("a");
    sched().set_donate_target(t);
    yield();
    EXPECT_EQ(sched().current(), a);
    EXPECT_EQ(sched().counters().donation_fallbacks, 1u);
    EXPECT_EQ(sched().counters().donations_taken, 0u);
    EXPECT_FALSE(t->queue_hook.is_linked());
}

// Found in review: kill() and then start() ran a Dead thread.
TEST_F(SchedulerTest, KilledBeforeStartIsNeverRun) {
    Thread* t = create("t");
    sched().kill(*t);
    EXPECT_EQ(t->state, ThreadState::Dead);
    EXPECT_FALSE(t->queue_hook.is_linked());
    EXPECT_EQ(sched().start(*t), Error::BadState);
    EXPECT_EQ(t->state, ThreadState::Dead);
    EXPECT_EQ(sched().ready_count(), 0u);
    yield();
    EXPECT_EQ(sched().current(), boot_);
    EXPECT_TRUE(FakeCpu::switches.empty());
}

TEST_F(SchedulerTest, KillOfACreatedThreadEndsIt) {
    Thread* t = create("t");
    Thread* a = spawn("a");
    sched().kill(*t);
    EXPECT_EQ(t->state, ThreadState::Dead);
    EXPECT_FALSE(t->queue_hook.is_linked());
    EXPECT_FALSE(t->timeout_hook.is_linked());
    EXPECT_EQ(sched().ready_count(), 1u);  // a, untouched
    sched().kill(*t);                      // a Dead thread is left as it is
    EXPECT_EQ(t->state, ThreadState::Dead);
    yield();
    EXPECT_EQ(sched().current(), a);
    yield();
    EXPECT_EQ(sched().current(), boot_);
    // A killed, never started thread can be destroyed.
    threads_.erase(std::find(threads_.begin(), threads_.end(), t));
    Thread::destroy(t);
}

// A thread is a kernel object: destroy() ends it (the registry forgets its
// id, it can no longer be started) and gives back the creator's reference;
// its memory goes with the last reference.
TEST_F(SchedulerTest, DestroyedThreadIsFreedByItsLastReference) {
    Thread* t = create("t");
    threads_.pop_back();  // destroyed here, not by TearDown
    uint64_t id = t->id();
    Ref<Thread> held = Ref<Thread>::retain(t);
    kernel_stack_cache_drain();
    size_t live = fake_kalloc_live();
    uint32_t stacks = kernel_stacks_in_use();
    EXPECT_TRUE(Thread::registered(id));
    Thread::destroy(t);  // Created, never started
    // Its kernel stack goes at once (nothing of a dead thread uses it: to
    // the cache of mapped stacks, freed from there), the rest with the
    // last reference.
    EXPECT_EQ(kernel_stacks_cached(), 1u);
    kernel_stack_cache_drain();
    EXPECT_EQ(fake_kalloc_live(), live - 1);
    EXPECT_EQ(kernel_stacks_in_use(), stacks - 1);
    EXPECT_EQ(held->refs(), 1u);
    EXPECT_EQ(held->state, ThreadState::Dead);
    EXPECT_EQ(sched().start(*held), Error::BadState);
    EXPECT_FALSE(Thread::registered(id));
    held.reset();
    EXPECT_EQ(fake_kalloc_live(), live - 2);  // the thread with its IPC state, its stack
}

TEST_F(SchedulerTest, DestroyWithoutOtherReferencesFreesAtOnce) {
    Thread* t = spawn("t");
    threads_.pop_back();
    sched().kill(*t);
    kernel_stack_cache_drain();
    size_t live = fake_kalloc_live();
    Thread::destroy(t);
    kernel_stack_cache_drain();               // the stack went to the cache of mapped stacks
    EXPECT_EQ(fake_kalloc_live(), live - 2);  // the thread with its IPC state, its stack
}

// On the hardware the switch away from an exited thread never returns. The
// fake does the same (FakeCpu::no_return_from): the test goes on as the
// thread switched to, and checks that nothing brings the dead one back.
TEST_F(SchedulerTest, ExitedThreadNeverRunsAgain) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    yield();
    ASSERT_EQ(sched().current(), a);
    FakeCpu::no_return_from = &a->context;
    EXPECT_THROW(sched().exit_current(), FakeCpu::NoReturn);
    EXPECT_EQ(a->state, ThreadState::Dead);
    EXPECT_EQ(sched().current(), b);
    ASSERT_FALSE(FakeCpu::switches.empty());
    EXPECT_EQ(FakeCpu::switches.back().from, &a->context);
    EXPECT_EQ(FakeCpu::switches.back().to, &b->context);
    EXPECT_FALSE(a->queue_hook.is_linked());
    EXPECT_EQ(this_cpu().held_locks.count(), 0u);  // b released the lock a switched with
    // Neither a wake, nor a donation, nor round-robin runs it again.
    EXPECT_FALSE(sched().wake(*a));
    sched().set_donate_target(a);
    for (int i = 0; i < 6; ++i) {
        yield();
        EXPECT_NE(sched().current(), a);
    }
    EXPECT_EQ(sched().counters().donation_fallbacks, 1u);
    EXPECT_EQ(sched().ready_count(), 1u);  // boot or b: a is on no queue
}

TEST_F(SchedulerTest, YieldFromInterruptContextIsAKernelBug) {
    EXPECT_DEATH(
        {
            irq_enter();
            sched().yield_now();
        },
        "assertion failed: !in_irq\\(\\)");
}

TEST_F(SchedulerTest, YieldHoldingALockIsAKernelBug) {
    SpinLock lock(LockLevel::Endpoint);
    EXPECT_DEATH(
        {
            bool irq = lock.lock();
            sched().yield_now();
            lock.unlock(irq);
        },
        "Cpu::held_locks\\(\\) == 0");
}

// switch_to_locked() (the IPC fast path's switch) is a switch like any
// other: from thread context only, with the scheduler lock as the only lock
// held. `b` waits on no queue, as a partner the fast path switches to.
class DirectSwitchTest : public SchedulerTest {
  protected:
    void SetUp() override {
        SchedulerTest::SetUp();
        b_ = spawn("b");
        yield();
        sched().block(nullptr);  // b sleeps on no queue; boot runs
        ASSERT_EQ(sched().current(), boot_);
    }
    void direct_switch_to_b() {
        LockGuard guard(sched().lock());
        sched().mark_current_blocked_locked(nullptr, 0);
        sched().switch_to_locked(*b_);
    }
    Thread* b_ = nullptr;
};

TEST_F(DirectSwitchTest, RunsTheTargetAtOnce) {
    direct_switch_to_b();
    EXPECT_EQ(sched().current(), b_);
    EXPECT_EQ(sched().counters().direct_switches, 1u);
    EXPECT_EQ(FakeCpu::yield_vectors, 1u);  // SetUp's yield only
}

TEST_F(DirectSwitchTest, FromInterruptContextIsAKernelBug) {
    EXPECT_DEATH(
        {
            irq_enter();
            direct_switch_to_b();
        },
        "assertion failed: !in_irq\\(\\)");
}

TEST_F(DirectSwitchTest, HoldingAnotherLockIsAKernelBug) {
    SpinLock space(LockLevel::AddressSpace);
    EXPECT_DEATH(
        {
            LockGuard outer(space);
            direct_switch_to_b();
        },
        "held == HeldLocks::bit\\(LockLevel::Scheduler\\)");
}

// An endpoint's lock is the exception: a thread that blocks in an IPC
// operation holds it, and the switch lets go of it, keeping interrupts
// off, before the scheduler lock goes to the next thread.
TEST_F(DirectSwitchTest, TheEndpointLockIsDroppedAtTheSwitch) {
    SpinLock endpoint(LockLevel::Endpoint);
    {
        IpcGuard guard(&endpoint);
        EXPECT_EQ(this_cpu().endpoint_lock, &endpoint);
        sched().mark_current_blocked_locked(nullptr, 0);
        sched().switch_to_locked(*b_);
        EXPECT_FALSE(endpoint.is_locked());
        EXPECT_EQ(this_cpu().held_locks.mask, HeldLocks::bit(LockLevel::Scheduler));
        EXPECT_FALSE(Cpu::interrupts_enabled());
    }
    EXPECT_EQ(sched().current(), b_);
    EXPECT_EQ(this_cpu().held_locks.mask, 0u);
}

// An endpoint's lock taken otherwise than through IpcGuard is not one the
// switch may let go of: a kernel bug.
TEST_F(DirectSwitchTest, AnEndpointLockTakenWithoutIpcGuardIsAKernelBug) {
    SpinLock endpoint(LockLevel::Endpoint);
    EXPECT_DEATH(
        {
            LockGuard outer(endpoint);
            direct_switch_to_b();
        },
        "endpoint_lock != nullptr");
}

// The same checks guard every switch: here a yield entered from an
// interrupt handler's context.
TEST_F(SchedulerTest, ScheduleFromInterruptContextIsAKernelBug) {
    spawn("a");
    EXPECT_DEATH(
        {
            irq_enter();
            sched().on_yield_vector();
        },
        "assertion failed: !in_irq\\(\\)");
}

TEST_F(SchedulerTest, LockOrderIsChecked) {
    SpinLock endpoint(LockLevel::Endpoint);
    SpinLock frames(LockLevel::Frames);
    {
        LockGuard a(endpoint);
        LockGuard b(frames);  // ascending: fine
        EXPECT_FALSE(Cpu::interrupts_enabled());
    }
    EXPECT_TRUE(Cpu::interrupts_enabled());
    EXPECT_DEATH(
        {
            LockGuard a(frames);
            LockGuard b(endpoint);
        },
        "assertion failed");
}

// wake_and_block_locked() (the IPC general path's hand-over) leaves what
// wake_locked(), set_donate_target_locked() and block_current_locked() leave
// in three steps: the partner runs at once on the rest of the quantum, its
// wait and timeout gone, the ready queue untouched, the waker Blocked on its
// queue, and the same counters. Without donation it is the three steps.
class WakeAndBlockTest : public SchedulerTest {
  protected:
    void SetUp() override {
        SchedulerTest::SetUp();
        a_ = spawn("a");
        yield();
        sched().block(&qa_, 50);  // a waits with a timeout; boot runs
        ASSERT_EQ(sched().current(), boot_);
        busy_ = spawn("busy");
        sched().on_timer_tick();  // 9 ticks of the quantum left
        before_ = sched().counters();
    }
    void hand_over_to_a() {
        LockGuard guard(sched().lock());
        sched().wake_and_block_locked(*a_, &qb_, 0);
    }
    WaitQueue qa_, qb_;
    Thread* a_ = nullptr;
    Thread* busy_ = nullptr;
    SchedCounters before_{};
};

TEST_F(WakeAndBlockTest, SwitchesToThePartnerLikeAWakeAndADonation) {
    hand_over_to_a();
    EXPECT_EQ(sched().current(), a_);
    EXPECT_EQ(a_->state, ThreadState::Running);
    EXPECT_EQ(a_->wake_reason, WakeReason::Woken);
    EXPECT_EQ(a_->waiting_on, nullptr);
    EXPECT_TRUE(qa_.empty());
    EXPECT_EQ(a_->deadline, 0u);  // the timeout is cancelled
    EXPECT_EQ(boot_->state, ThreadState::Blocked);
    EXPECT_TRUE(qb_.contains(*boot_));
    EXPECT_EQ(sched().ready_count(), 1u);  // busy, still waiting its turn
    SchedCounters c = sched().counters();
    EXPECT_EQ(c.wakeups, before_.wakeups + 1);
    EXPECT_EQ(c.blocks, before_.blocks + 1);
    EXPECT_EQ(c.donations_taken, before_.donations_taken + 1);
    EXPECT_EQ(c.switches, before_.switches + 1);
    EXPECT_EQ(c.donation_fallbacks, before_.donation_fallbacks);
    EXPECT_EQ(c.direct_switches, before_.direct_switches);
    EXPECT_EQ(FakeCpu::yield_vectors, 1u);  // SetUp's yield only
    // The rest of the quantum went along: 9 ticks, then busy's turn.
    for (int i = 0; i < 8; ++i) sched().on_timer_tick();
    sched().preempt_if_needed();
    EXPECT_EQ(sched().current(), a_);
    sched().on_timer_tick();
    sched().preempt_if_needed();
    EXPECT_EQ(sched().current(), busy_);
    sched().wake(*boot_);
}

TEST_F(WakeAndBlockTest, WithoutDonationThePartnerWaitsItsTurn) {
    sched().set_donation_enabled(false);
    hand_over_to_a();
    EXPECT_EQ(sched().current(), busy_);  // round-robin: busy was first
    EXPECT_EQ(a_->state, ThreadState::Ready);
    EXPECT_TRUE(qb_.contains(*boot_));
    EXPECT_EQ(sched().counters().donations_taken, before_.donations_taken);
    sched().wake(*boot_);
}

}  // namespace
}  // namespace mk
