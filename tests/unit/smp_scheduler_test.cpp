// The scheduler with two CPUs on the host fake: a thread runs on its home
// CPU alone; a wake from another CPU queues it there and tells that CPU when
// it idles; donations, the hand-off queue and direct switches never cross
// CPUs; timeouts live on the home CPU; a CPU forgets a thread that ended
// there.
//
// The test plays each CPU in turn (on_cpu, smp_fixture.hpp).
#include <gtest/gtest.h>

#include <functional>

#include "mk/abi.hpp"
#include "process.hpp"
#include "smp_fixture.hpp"

namespace mk {
namespace {

class SmpSchedulerTest : public testing::SmpFixture {
  protected:
    // CPU 1 takes a notify interrupt, from user mode or from kernel code.
    void notify_interrupt_on_1(bool from_user) {
        on_cpu(1, [&] {
            irq_enter();
            sched1().on_notify();
            irq_exit();
            sched1().preempt_if_needed(from_user);
        });
    }
};

TEST_F(SmpSchedulerTest, BothCpusAreInTheTable) {
    EXPECT_EQ(cpu_count(), 2u);
    EXPECT_EQ(&cpu_at(0), cpu_.get());
    EXPECT_EQ(&cpu_at(1), cpu1_);
    EXPECT_EQ(sched1().cpu(), 1u);
    EXPECT_EQ(sched1().current(), idle1_);
    EXPECT_EQ(idle1_->cpu, 1u);
}

// Started from CPU 0, a thread of CPU 1 goes on CPU 1's ready queue, and
// CPU 1, idle, is told: nothing of it reaches CPU 0's queue.
TEST_F(SmpSchedulerTest, StartQueuesOnTheHomeCpuAndNotifiesItWhenIdle) {
    Thread* t = create_on_1("t");
    ASSERT_EQ(sched().start(*t), Error::None);
    EXPECT_EQ(sched().ready_count(), 0u);
    EXPECT_EQ(sched1().ready_count(), 1u);
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{1});
    EXPECT_EQ(sched().counters().notifies, 1u);
    // CPU 0 never picks it.
    yield();
    EXPECT_EQ(sched().current(), boot_);
    // CPU 1 runs it at the end of the interrupt.
    on_cpu(1, [&] {
        sched1().preempt_if_needed();
        EXPECT_EQ(sched1().current(), t);
    });
    EXPECT_EQ(t->state, ThreadState::Running);
}

// A busy CPU is not interrupted: the thread waits its round-robin turn there.
TEST_F(SmpSchedulerTest, NoNotifyForABusyCpu) {
    running_on_1("busy");
    FakeCpu::notified.clear();
    Thread* t = create_on_1("t");
    ASSERT_EQ(sched().start(*t), Error::None);
    EXPECT_TRUE(FakeCpu::notified.empty());
    EXPECT_EQ(sched1().ready_count(), 1u);
}

// A wake from CPU 0 of a thread that blocked on CPU 1 with a timeout: the
// wait ends there, the timeout is gone from CPU 1's set (its ticks no
// longer time the thread out), and the thread is Ready on CPU 1.
TEST_F(SmpSchedulerTest, WakeFromAnotherCpuEndsTheWaitAndTheTimeoutAtHome) {
    WaitQueue q;
    Thread* t = blocked_on_1("t", q, 5);
    EXPECT_EQ(sched1().current(), idle1_);
    EXPECT_NE(t->deadline, 0u);
    FakeCpu::notified.clear();

    EXPECT_TRUE(sched().wake(*t));
    EXPECT_EQ(t->state, ThreadState::Ready);
    EXPECT_EQ(t->wake_reason, WakeReason::Woken);
    EXPECT_FALSE(t->timeout_hook.is_linked());
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(sched1().ready_count(), 1u);
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{1});
    on_cpu(1, [&] {
        for (int i = 0; i < 10; ++i) sched1().on_timer_tick();
        EXPECT_EQ(sched1().counters().timeouts, 0u);
        sched1().preempt_if_needed();
        EXPECT_EQ(sched1().current(), t);
    });
    EXPECT_EQ(t->wake_reason, WakeReason::Woken);
}

// A wake from CPU 1 of a thread homed on CPU 0, the lower index: the two
// scheduler locks are held in index order (HomeLock lets go of CPU 1's,
// takes CPU 0's, then CPU 1's again), and CPU 1 holds its own and the IPC
// lock again afterwards, as its IPC operation expects.
TEST_F(SmpSchedulerTest, AWakeOfALowerCpusThreadTakesTheTwoLocksInIndexOrder) {
    WaitQueue q;
    Thread* t = spawn("t");
    sched().yield_now();  // t runs on CPU 0...
    ASSERT_EQ(sched().current(), t);
    {
        LockGuard guard(sched().lock());
        sched().block_current_locked(&q, 5);  // ...and blocks there, with a timeout
    }
    ASSERT_EQ(t->state, ThreadState::Blocked);
    on_cpu(1, [&] {
        IpcGuard guard(&endpoint_lock_);
        EXPECT_TRUE(sched1().wake_locked(*t));
        EXPECT_TRUE(sched1().lock().is_locked());
        EXPECT_FALSE(sched().lock().is_locked());
        EXPECT_EQ(Cpu::held_locks(), IpcGuard::kBoth);
    });
    EXPECT_FALSE(sched1().lock().is_locked());
    EXPECT_EQ(t->state, ThreadState::Ready);
    EXPECT_FALSE(t->timeout_hook.is_linked());
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(sched().ready_count(), 1u);
}

// Each CPU's ticks expire the timeouts of its own threads only.
TEST_F(SmpSchedulerTest, TimeoutsExpireOnTheHomeCpu) {
    WaitQueue q;
    Thread* t = blocked_on_1("t", q, 3);
    for (int i = 0; i < 10; ++i) sched().on_timer_tick();
    EXPECT_EQ(t->state, ThreadState::Blocked);
    on_cpu(1, [&] {
        for (int i = 0; i < 3; ++i) sched1().on_timer_tick();
        EXPECT_EQ(sched1().counters().timeouts, 1u);
    });
    EXPECT_EQ(t->state, ThreadState::Ready);
    EXPECT_EQ(t->wake_reason, WakeReason::TimedOut);
    EXPECT_EQ(sched1().ready_count(), 1u);
    EXPECT_EQ(sched().ready_count(), 0u);
}

// CPU 0 wakes a thread of CPU 1 and would give it the CPU: neither
// CPU 0's donate target, nor its hand-off queue, nor the yield that
// follows take it to CPU 0. It runs on CPU 1, where its wake told it
// ("wake there, now").
TEST_F(SmpSchedulerTest, ADonationToAThreadOfAnotherCpuNeverBringsItHere) {
    WaitQueue q;
    Thread* t = blocked_on_1("t", q);
    Thread* local = spawn("local");
    sched().unblock_yield(*t);
    EXPECT_EQ(FakeCpu::yield_vectors, 0u);  // nothing to give on this CPU
    EXPECT_EQ(t->state, ThreadState::Ready);
    {
        LockGuard guard(sched().lock());
        sched().set_donate_target_locked(t);
        sched().hand_off_locked(*t);
        EXPECT_FALSE(t->lent_quantum);
    }
    yield();
    EXPECT_EQ(sched().current(), local);  // round-robin: the donation was ignored
    EXPECT_EQ(sched().counters().donations_taken, 0u);
    EXPECT_EQ(sched1().ready_count(), 1u);
    on_cpu(1, [&] { sched1().preempt_if_needed(); });
    EXPECT_EQ(sched1().current(), t);
}

// A CPU about to yield to a donate target of its own keeps it: a
// donation from another CPU to a second thread of it neither replaces it
// nor interrupts it; that thread waits its turn behind.
TEST_F(SmpSchedulerTest, ADonationFromAnotherCpuLeavesItsOwnTargetAlone) {
    WaitQueue q;
    Thread* t = blocked_on_1("t", q);
    Thread* busy = running_on_1("busy");
    Thread* own = create_on_1("own");
    ASSERT_EQ(sched().start(*own), Error::None);  // queued on busy CPU 1: no interrupt
    on_cpu(1, [&] {
        LockGuard guard(sched1().lock());
        sched1().set_donate_target_locked(own);
    });
    FakeCpu::notified.clear();
    sched().unblock_yield(*t);
    EXPECT_TRUE(FakeCpu::notified.empty());
    EXPECT_EQ(sched().counters().remote_donations, 0u);
    EXPECT_EQ(t->state, ThreadState::Ready);
    on_cpu(1, [&] { sched1().yield_to_donate_target(); });  // its own donation: own
    EXPECT_EQ(sched1().current(), own);
    EXPECT_TRUE(busy->lent_quantum);
    on_cpu(1, [&] {
        LockGuard guard(sched1().lock());
        sched1().block_current_locked(nullptr, 0);  // then busy, from the hand-off queue
    });
    EXPECT_EQ(sched1().current(), busy);
    EXPECT_EQ(sched1().ready_count(), 1u);  // t waits its turn
}

// A donation to w of busy CPU 1 whose target is gone before CPU 1 takes
// the interrupt (w killed meanwhile): nothing is preempted there.
TEST_F(SmpSchedulerTest, ADonationWhoseTargetIsKilledFirstPreemptsNothing) {
    WaitQueue q;
    Thread* w = blocked_on_1("w", q);
    Thread* x = running_on_1("x");
    sched().unblock_yield(*w);
    EXPECT_EQ(sched().counters().remote_donations, 1u);
    sched().kill(*w);
    EXPECT_EQ(w->state, ThreadState::Dead);
    notify_interrupt_on_1(true);
    EXPECT_EQ(sched1().current(), x);
    EXPECT_EQ(sched1().counters().preemptions, 0u);
}

// x of CPU 1 yields to the donate target another CPU set there (it read it
// without the lock), but the interrupt that CPU sent took it first: w ran,
// and blocked again. The yield finds no target and does nothing: x keeps
// the CPU, ahead of z.
TEST_F(SmpSchedulerTest, AYieldToATargetTakenMeanwhileDoesNothing) {
    WaitQueue q;
    Thread* w = blocked_on_1("w", q);
    Thread* x = running_on_1("x");
    Thread* z = create_on_1("z");
    ASSERT_EQ(sched().start(*z), Error::None);
    sched().unblock_yield(*w);
    auto yield_handler = FakeCpu::yield_handler;
    FakeCpu::yield_handler = [] {
        Scheduler& s = this_cpu().scheduler;
        s.preempt_if_needed(true);  // the interrupt lands first: w runs
        {
            LockGuard guard(s.lock());
            s.block_current_locked(nullptr, 0);  // and blocks: x is back
        }
        s.on_yield_vector();
    };
    on_cpu(1, [&] { sched1().yield_to_donate_target(); });
    FakeCpu::yield_handler = yield_handler;
    EXPECT_EQ(w->state, ThreadState::Blocked);
    EXPECT_EQ(sched1().current(), x);
    EXPECT_EQ(z->state, ThreadState::Ready);
    EXPECT_EQ(sched1().counters().donations_taken, 1u);
}

// A waker that would donate to a thread of another CPU (a send, a reply, a
// death notice) goes on running: that thread runs there (donate_locked),
// this CPU's target is not set, so no yield.
TEST_F(SmpSchedulerTest, NoYieldForADonationTargetOfAnotherCpu) {
    WaitQueue q;
    Thread* t = blocked_on_1("t", q);
    spawn("local");
    {
        IpcGuard guard(&endpoint_lock_);
        sched().wake_locked(*t);
        sched().set_donate_target_locked(t);
    }
    sched().yield_to_donate_target();
    EXPECT_EQ(FakeCpu::yield_vectors, 0u);
    EXPECT_EQ(sched().current(), boot_);
    // With a target of this CPU it does yield.
    Thread* here = create("here");
    ASSERT_EQ(sched().start(*here), Error::None);
    {
        LockGuard guard(sched().lock());
        sched().set_donate_target_locked(here);
    }
    sched().yield_to_donate_target();
    EXPECT_EQ(FakeCpu::yield_vectors, 1u);
    EXPECT_EQ(sched().current(), here);
}

// The IPC hand-over, "wake the partner and block": with the partner on
// another CPU it is a wake there and a block here, never a switch to it.
TEST_F(SmpSchedulerTest, WakeAndBlockWithAPartnerOnAnotherCpuWakesItThere) {
    WaitQueue q1;
    Thread* t = blocked_on_1("t", q1);
    Thread* local = spawn("local");
    WaitQueue q0;
    {
        IpcGuard guard(&endpoint_lock_);
        sched().wake_and_block_locked(*t, &q0, 0);
    }
    EXPECT_EQ(boot_->state, ThreadState::Blocked);
    EXPECT_EQ(sched().current(), local);
    EXPECT_EQ(t->state, ThreadState::Ready);
    EXPECT_EQ(sched1().ready_count(), 1u);
    EXPECT_EQ(FakeCpu::notified.back(), 1u);
    ASSERT_TRUE(sched().wake(*boot_));
}

// A Created thread is homed on the CPU that made it until placement homes
// it elsewhere.
TEST_F(SmpSchedulerTest, AThreadIsHomedWhereItWasMadeUntilPlaced) {
    Thread* a = create("a");
    EXPECT_EQ(a->cpu, 0u);
    Thread* b = nullptr;
    on_cpu(1, [&] { b = create("b"); });
    EXPECT_EQ(b->cpu, 1u);
    IpcGuard guard(&endpoint_lock_);
    Scheduler::set_home_locked(*a, 1);
    EXPECT_EQ(a->cpu, 1u);
}

// A CPU forgets a thread that ended there (Cpu::retire_context) in the
// switch away from it, before anything can free it.
TEST_F(SmpSchedulerTest, TheCpuAThreadEndedOnRetiresIt) {
    Thread* t = running_on_1("t");
    FakeCpu::no_return_from = &t->context;
    on_cpu(1, [&] { EXPECT_THROW(sched1().exit_current(), FakeCpu::NoReturn); });
    FakeCpu::no_return_from = nullptr;
    EXPECT_EQ(t->state, ThreadState::Dead);
    EXPECT_EQ(FakeCpu::retired, 1u);
    EXPECT_EQ(sched1().current(), idle1_);
    // A switch away from a thread that lives retires nothing.
    yield();
    spawn("x");
    yield();
    EXPECT_EQ(FakeCpu::retired, 1u);
}

// The end of a kernel thread wakes the thread waiting for it in join():
// here a kill from CPU 0 of a thread blocked on CPU 1, whose joiner sleeps
// on CPU 0 (as join() leaves it: Thread::joiner, Blocked on no queue).
// Then the joiner finds it Dead, and its joiner slot is empty.
TEST_F(SmpSchedulerTest, AKillWakesTheJoinerOfTheThreadItEnds) {
    WaitQueue q;
    Thread* t = blocked_on_1("t", q);
    Thread* j = spawn("joiner");
    yield();
    ASSERT_EQ(sched().current(), j);
    {
        LockGuard guard(sched().lock());
        {
            Scheduler::HomeLock home(sched(), *t);
            t->joiner = j;
        }
        sched().block_current_locked(nullptr, 0);
    }
    ASSERT_EQ(j->state, ThreadState::Blocked);
    ASSERT_EQ(sched().current(), boot_);
    sched().kill(*t);
    EXPECT_EQ(t->state, ThreadState::Dead);
    EXPECT_EQ(t->joiner, nullptr);
    EXPECT_EQ(j->state, ThreadState::Ready);
    EXPECT_EQ(j->gap_holds, 0u);
    EXPECT_EQ(t->gap_holds, 0u);
}

// Kill of a user thread running on CPU 1, from CPU 0: it is asked to exit
// and CPU 1 is interrupted at once (not at its next timer tick), so that it
// enters the kernel, whose way back to user mode ends the thread. It ends
// on CPU 1, which retires it; the reaper on CPU 0 then frees it and its
// process.
TEST_F(SmpSchedulerTest, KillOfAUserThreadRunningOnAnotherCpuInterruptsThatCpu) {
    Thread* reaper = spawn("reaper");
    sched().set_reaper(*reaper);
    Process* p = Process::create("p", 1).value();
    EXPECT_EQ(p->cpu(), 1u);
    Thread* u = p->create_thread("u", abi::kUserBase, 0, 0).value();
    EXPECT_EQ(u->cpu, 1u);  // the process's CPU
    ASSERT_EQ(sched().start(*u), Error::None);
    on_cpu(1, [&] { sched1().preempt_if_needed(); });
    ASSERT_EQ(sched1().current(), u);
    FakeCpu::notified.clear();
    uint64_t notifies = sched().counters().notifies;  // its start told idle CPU 1 too

    p->kill(abi::kStatusKilled);
    EXPECT_TRUE(u->exit_requested);
    EXPECT_EQ(u->state, ThreadState::Running);  // still in user mode over there
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{1});
    EXPECT_EQ(sched().counters().notifies, notifies + 1);

    // CPU 1 takes the interrupt; on its way back to user mode the thread ends.
    FakeCpu::no_return_from = &u->context;
    on_cpu(1, [&] { EXPECT_THROW(sched1().exit_current(), FakeCpu::NoReturn); });
    FakeCpu::no_return_from = nullptr;
    EXPECT_EQ(u->state, ThreadState::Dead);
    EXPECT_EQ(FakeCpu::retired, 1u);
    EXPECT_EQ(sched1().current(), idle1_);
    // The reaper, woken on CPU 0, destroys it: the last thread ends the process.
    while (sched().current() != reaper) yield();
    Thread::destroy(sched().next_zombie());
    EXPECT_TRUE(p->dead());
    p->release();
}

// --- Placement, affinity and balancing ---

// The pairs unload_context() was called with: which context, on which CPU.
using Unloaded = std::vector<std::pair<const Cpu::Context*, uint32_t>>;

// A new thread goes to the least loaded CPU its mask allows (the running
// thread and the queued ones count), the preferred one among equals.
TEST_F(SmpSchedulerTest, PlacementTakesTheLeastLoadedAllowedCpu) {
    EXPECT_EQ(Scheduler::online_mask(), 0b11u);
    Thread* a = create("a");
    Thread* b = create("b");
    Thread* c = create("c");
    {
        IpcGuard guard(&endpoint_lock_);
        EXPECT_EQ(sched().load_locked(), 1u);   // boot runs
        EXPECT_EQ(sched1().load_locked(), 0u);  // idle
        Scheduler::place_locked(*a, 0b11, 0);
        EXPECT_EQ(a->cpu, 1u);
        EXPECT_EQ(a->affinity, 0b11u);
    }
    ASSERT_EQ(sched().start(*a), Error::None);  // CPU 1: one queued
    {
        IpcGuard guard(&endpoint_lock_);
        Scheduler::place_locked(*b, 0b11, 0);  // one each: the preferred
        EXPECT_EQ(b->cpu, 0u);
        Scheduler::place_locked(*c, 0b11, 1);
        EXPECT_EQ(c->cpu, 1u);
        Scheduler::place_locked(*c, 0b01, 1);  // only CPU 0 allowed
        EXPECT_EQ(c->cpu, 0u);
        EXPECT_EQ(c->affinity, 0b01u);
    }
}

// A process made without a CPU may run on every CPU and starts its first
// thread on the least loaded, its creator not counted and the creator's
// CPU among equals: beside its creator while nothing waits there (a client
// and the server it spawns share a CPU), elsewhere once a thread waits
// there. The threads it makes are placed on the least loaded, their
// creator counted. One made for a CPU starts there, and runs there alone
// unless a mask says more.
TEST_F(SmpSchedulerTest, AProcessWithoutACpuStartsOnTheLeastLoadedCpu) {
    Process* p = Process::create("p").value();
    EXPECT_EQ(p->cpu(), 0u);  // CPU 0 runs boot (the creator), CPU 1 idles: equal
    EXPECT_EQ(p->affinity(), 0b11u);
    Thread* first = p->create_thread("first", abi::kUserBase, 0, 0).value();
    EXPECT_EQ(first->cpu, 0u);
    EXPECT_EQ(first->affinity, 0b11u);
    Thread* second = p->create_thread("second", abi::kUserBase, 0, 0, first).value();
    EXPECT_EQ(second->affinity, 0b11u);
    EXPECT_EQ(second->cpu, 1u);  // its creator counts
    Process* q = nullptr;
    on_cpu(1, [&] { q = Process::create("q").value(); });
    EXPECT_EQ(q->cpu(), 1u);
    EXPECT_EQ(q->affinity(), 0b11u);
    // The reaper waiting here does not count: it runs for a moment after
    // each thread's end.
    Thread* reaper = spawn("reaper");
    sched().set_reaper(*reaper);
    {
        IpcGuard guard(&endpoint_lock_);
        EXPECT_EQ(sched().load_locked(), 1u);  // boot
    }
    Process* e = Process::create("e").value();
    EXPECT_EQ(e->cpu(), 0u);
    Thread* waiting = create("waiting");
    ASSERT_EQ(sched().start(*waiting), Error::None);  // waits for CPU 0
    Process* s = Process::create("s").value();
    EXPECT_EQ(s->cpu(), 1u);
    EXPECT_EQ(s->affinity(), 0b11u);
    Thread* away = s->create_thread("away", abi::kUserBase, 0, 0).value();
    EXPECT_EQ(away->cpu, 1u);
    // A CPU named starts it there, whatever the load, with the mask given
    // (the kernel's init: the boot CPU, every CPU allowed).
    Process* i = Process::create("i", 0, 0b11).value();
    EXPECT_EQ(i->cpu(), 0u);
    EXPECT_EQ(i->affinity(), 0b11u);
    Process* r = Process::create("r", 1).value();
    EXPECT_EQ(r->affinity(), 0b10u);
    Thread* only = r->create_thread("only", abi::kUserBase, 0, 0).value();
    EXPECT_EQ(only->cpu, 1u);
    EXPECT_EQ(only->affinity, 0b10u);
    for (Thread* t : {first, second, only, away}) Thread::destroy(t);  // never started
    for (Process* x : {p, q, r, s, i, e}) x->release();
}

// A thread of a process made by another of its threads may run where its
// creator may; the first thread of a process made for a CPU runs there
// alone.
TEST_F(SmpSchedulerTest, AThreadInheritsItsCreatorsMask) {
    Process* p = Process::create("p", 0).value();
    Thread* first = p->create_thread("first", abi::kUserBase, 0, 0).value();
    EXPECT_EQ(first->cpu, 0u);
    EXPECT_EQ(first->affinity, 0b01u);
    first->affinity = 0b11;  // as ThreadSetAffinity would leave it
    Thread* second = p->create_thread("second", abi::kUserBase, 0, 0, first).value();
    EXPECT_EQ(second->affinity, 0b11u);
    EXPECT_EQ(second->cpu, 1u);                            // CPU 0 runs boot: CPU 1 is less loaded
    for (Thread* t : {first, second}) Thread::destroy(t);  // never started
    p->release();
}

// A Ready thread of this CPU whose new mask leaves this CPU out moves to
// the other at once: off this CPU's queue, its state saved from this CPU
// (unload_context), onto the other's queue, which is told.
TEST_F(SmpSchedulerTest, SetAffinityMovesAReadyThreadAtOnce) {
    Thread* t = spawn("t");
    FakeCpu::notified.clear();
    Result<uint32_t> home = sched().set_affinity(*t, 0b10);
    ASSERT_TRUE(home.ok());
    EXPECT_EQ(home.value(), 1u);
    EXPECT_EQ(t->cpu, 1u);
    EXPECT_EQ(t->affinity, 0b10u);
    EXPECT_EQ(sched().ready_count(), 0u);
    EXPECT_EQ(sched1().ready_count(), 1u);
    EXPECT_EQ(FakeCpu::unloaded, (Unloaded{{&t->context, 0}}));
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{1});
    EXPECT_EQ(sched().counters().moves, 1u);
    on_cpu(1, [&] { sched1().preempt_if_needed(); });
    EXPECT_EQ(sched1().current(), t);
}

// A mask that holds the thread's CPU changes nothing else; bad masks and
// dead threads are refused and change nothing.
TEST_F(SmpSchedulerTest, SetAffinityRefusalsAndNoMove) {
    Thread* t = spawn("t");
    Result<uint32_t> home = sched().set_affinity(*t, 0b11);
    ASSERT_TRUE(home.ok());
    EXPECT_EQ(home.value(), 0u);
    EXPECT_EQ(t->affinity, 0b11u);
    EXPECT_TRUE(FakeCpu::unloaded.empty());
    for (uint32_t bad : {0u, 0b100u, 0b101u, 1u << 15, ~0u}) {
        EXPECT_EQ(sched().set_affinity(*t, bad).error(), Error::InvalidArgument) << bad;
        EXPECT_EQ(t->affinity, 0b11u);
    }
    sched().kill(*t);
    EXPECT_EQ(sched().set_affinity(*t, 0b01).error(), Error::BadState);
    EXPECT_EQ(sched().counters().moves, 0u);
}

// A thread blocked at its frame (an IPC syscall that gave its stack up,
// as the fake's context field says) moves with its timeout: the ticks it
// had left, counted from now on the new CPU's clock (each CPU has its
// own). Its old CPU's ticks no longer time it out; the new one's do.
TEST_F(SmpSchedulerTest, ABlockedThreadTakesItsTimeoutAlong) {
    for (int i = 0; i < 100; ++i) sched().on_timer_tick();
    Thread* t = spawn("t");
    yield();
    ASSERT_EQ(sched().current(), t);
    WaitQueue q;
    {
        LockGuard guard(sched().lock());
        sched().block_current_locked(&q, 5);
    }
    t->context.gave_stack_up = true;
    EXPECT_EQ(t->deadline, 105u);
    ASSERT_TRUE(sched().set_affinity(*t, 0b10).ok());
    EXPECT_EQ(t->cpu, 1u);
    EXPECT_EQ(t->deadline, 5u);  // CPU 1 has seen no tick
    EXPECT_EQ(FakeCpu::unloaded, (Unloaded{{&t->context, 0}}));
    for (int i = 0; i < 50; ++i) sched().on_timer_tick();
    EXPECT_EQ(t->state, ThreadState::Blocked);
    on_cpu(1, [&] {
        for (int i = 0; i < 4; ++i) sched1().on_timer_tick();
        EXPECT_EQ(t->state, ThreadState::Blocked);
        sched1().on_timer_tick();
    });
    EXPECT_EQ(t->state, ThreadState::Ready);
    EXPECT_EQ(t->wake_reason, WakeReason::TimedOut);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(sched1().ready_count(), 1u);
}

// The running thread that moves itself (ThreadSetAffinity) is in kernel
// code, which keeps this CPU's state at hand: it stays, even across a
// switch in the kernel, until its way back to user mode, where it switches
// away to its new home and its state is saved here.
TEST_F(SmpSchedulerTest, TheRunningThreadMovesOnItsWayBackToUserMode) {
    Thread* t = spawn("t");
    yield();
    ASSERT_EQ(sched().current(), t);
    ASSERT_EQ(sched().set_affinity(*t, 0b10).value(), 1u);
    EXPECT_EQ(sched().current(), t);
    EXPECT_EQ(t->cpu, 0u);
    EXPECT_EQ(t->move_to, 1u);
    // Preempted in the kernel: back on this CPU's queue, not moved, not
    // taken by the balancing rule either.
    sched().preempt_if_needed();  // nothing due
    EXPECT_EQ(sched().current(), t);
    yield();
    EXPECT_EQ(t->cpu, 0u);
    EXPECT_FALSE(t->stack_holds_no_cpu);
    sched().on_timer_tick();
    EXPECT_EQ(t->cpu, 0u);
    EXPECT_EQ(sched().counters().balanced, 0u);
    EXPECT_TRUE(FakeCpu::unloaded.empty());
    yield();
    ASSERT_EQ(sched().current(), t);
    sched().at_user_boundary();  // before_return_to_user
    EXPECT_NE(sched().current(), t);
    EXPECT_EQ(t->cpu, 1u);
    EXPECT_EQ(t->move_to, Thread::kNoMove);
    EXPECT_TRUE(t->stack_holds_no_cpu);
    EXPECT_EQ(t->state, ThreadState::Ready);
    EXPECT_EQ(sched().ready_count(), 0u);
    EXPECT_EQ(sched1().ready_count(), 1u);
    EXPECT_EQ(FakeCpu::unloaded, (Unloaded{{&t->context, 0}}));
    on_cpu(1, [&] { sched1().preempt_if_needed(); });
    EXPECT_EQ(sched1().current(), t);
}

// The running thread that moves is queued on its new home before its old
// CPU has left its stack: Ready there at once, but marked switching_out,
// which that CPU clears only once the switch away is done, and for which
// the new home waits before it switches to the thread.
struct SwitchLook {
    static inline const Thread* mover = nullptr;
    static inline Scheduler* dest = nullptr;
    static inline int seen = 0;
    static inline bool switching_out = false;
    static inline size_t dest_ready = 0;
    static void look(const Cpu::Context& from, const Cpu::Context&) {
        if (&from != &mover->context) return;
        ++seen;
        switching_out = mover->switching_out;
        dest_ready = dest->load_locked();  // CPU 1 idles: its queue alone
    }
};

TEST_F(SmpSchedulerTest, AMovingThreadRunsOnItsNewHomeOnlyOnceItsOldCpuLeftIt) {
    Thread* t = spawn("t");
    yield();
    ASSERT_EQ(sched().current(), t);
    ASSERT_EQ(sched().set_affinity(*t, 0b10).value(), 1u);
    SwitchLook::mover = t;
    SwitchLook::dest = &sched1();
    FakeCpu::on_switch = &SwitchLook::look;
    sched().at_user_boundary();
    FakeCpu::on_switch = nullptr;
    EXPECT_EQ(SwitchLook::seen, 1);
    EXPECT_TRUE(SwitchLook::switching_out);  // queued there, not to be run yet
    EXPECT_EQ(SwitchLook::dest_ready, 1u);
    EXPECT_FALSE(t->switching_out);  // the switch is done
    EXPECT_EQ(t->state, ThreadState::Ready);
    on_cpu(1, [&] { sched1().preempt_if_needed(); });
    EXPECT_EQ(sched1().current(), t);
}

// Found in review: with its running thread and another first and second
// on its move list, a CPU queued the running one on its new home (marked
// switching_out) and then took that CPU's lock again for the other; that
// CPU, spinning on switching_out with its lock held, deadlocked with it.
// The running thread moves last: here the other is queued first.
TEST_F(SmpSchedulerTest, TheRunningThreadMovesLastOfTheMovesAsked) {
    Thread* running = running_on_1("running");
    Thread* other = create_on_1("other");
    ASSERT_EQ(sched().start(*other), Error::None);  // Ready on CPU 1, never ran: movable
    ASSERT_EQ(sched().set_affinity(*running, 0b01).value(), 0u);  // first on the list
    ASSERT_EQ(sched().set_affinity(*other, 0b01).value(), 0u);
    notify_interrupt_on_1(true);
    ASSERT_EQ(running->cpu, 0u);
    ASSERT_EQ(other->cpu, 0u);
    EXPECT_FALSE(running->switching_out);
    yield();  // CPU 0's queue is FIFO
    EXPECT_EQ(sched().current(), other);
    yield();
    EXPECT_EQ(sched().current(), running);
}

// A second scheduler lock is taken with this CPU's and nothing above it
// (an endpoint's lock before it, or not: a reply takes none): a wake of a thread
// of another CPU under a higher lock is a kernel bug, under this CPU's
// scheduler lock alone it is done there.
TEST_F(SmpSchedulerTest, AnotherCpusLockUnderAHigherLockIsAKernelBug) {
    WaitQueue q;
    Thread* t = blocked_on_1("t", q);
    EXPECT_DEATH(
        {
            LockGuard guard(sched().lock());
            SpinLock above{LockLevel::Zombies};
            LockGuard held(above);
            sched().wake_locked(*t);
        },
        "assertion failed: \\(held >>");
    {
        LockGuard guard(sched().lock());
        EXPECT_TRUE(sched().wake_locked(*t));
    }
    EXPECT_EQ(sched1().ready_count(), 1u);
}

// A thread homed on CPU 1 is moved by CPU 1, which may hold its FPU state:
// CPU 0 leaves the move on CPU 1's list and tells it; CPU 1 does it at
// that interrupt. Blocked there, it is simply rehomed; running there, it
// leaves at the switch the interrupt's end makes.
TEST_F(SmpSchedulerTest, AMoveOfAThreadOfAnotherCpuIsDoneThere) {
    WaitQueue q;
    Thread* blocked = blocked_on_1("blocked", q);
    blocked->context.gave_stack_up = true;  // blocked at its frame
    FakeCpu::notified.clear();
    ASSERT_EQ(sched().set_affinity(*blocked, 0b01).value(), 0u);
    EXPECT_EQ(blocked->cpu, 1u);  // not yet
    EXPECT_EQ(blocked->move_to, 0u);
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{1});
    EXPECT_TRUE(FakeCpu::unloaded.empty());
    notify_interrupt_on_1(false);
    EXPECT_EQ(blocked->cpu, 0u);
    EXPECT_EQ(blocked->move_to, Thread::kNoMove);
    EXPECT_EQ(FakeCpu::unloaded, (Unloaded{{&blocked->context, 1}}));
    EXPECT_TRUE(sched().wake(*blocked));
    EXPECT_EQ(sched().ready_count(), 1u);  // woken at its new home

    Thread* running = running_on_1("running");
    FakeCpu::unloaded.clear();
    ASSERT_EQ(sched().set_affinity(*running, 0b01).value(), 0u);
    EXPECT_EQ(sched1().current(), running);
    // The interrupt lands in kernel code: the move waits.
    notify_interrupt_on_1(false);
    EXPECT_EQ(sched1().current(), running);
    EXPECT_EQ(running->cpu, 1u);
    EXPECT_TRUE(running->move_hook.is_linked());
    // The next one lands in user mode: it goes.
    notify_interrupt_on_1(true);
    EXPECT_EQ(sched1().current(), idle1_);
    EXPECT_EQ(running->cpu, 0u);
    EXPECT_EQ(running->state, ThreadState::Ready);
    EXPECT_EQ(FakeCpu::unloaded, (Unloaded{{&running->context, 1}}));
    EXPECT_EQ(sched().ready_count(), 2u);
    EXPECT_EQ(sched1().counters().moves, 2u);
}

// A thread that dies with a move pending leaves the move list: the CPU's
// next interrupt finds nothing to do, and the thread can be freed.
TEST_F(SmpSchedulerTest, DeathDropsAPendingMove) {
    WaitQueue q;
    Thread* t = blocked_on_1("t", q);
    ASSERT_TRUE(sched().set_affinity(*t, 0b01).ok());
    EXPECT_TRUE(t->move_hook.is_linked());
    sched().kill(*t);
    EXPECT_FALSE(t->move_hook.is_linked());
    EXPECT_EQ(t->move_to, Thread::kNoMove);
    notify_interrupt_on_1(false);
    EXPECT_EQ(t->cpu, 1u);
    EXPECT_EQ(sched1().counters().moves, 0u);
}

// The balancing rule: at a tick, a CPU with threads waiting in its ready
// queue moves the first one allowed on an idle CPU there, one a tick; a
// thread bound to its CPU stays, and so does everything once no CPU idles.
TEST_F(SmpSchedulerTest, BalancingMovesAWaitingThreadToAnIdleCpu) {
    Thread* bound = spawn("bound");
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    ASSERT_EQ(sched().set_affinity(*a, 0b11).value(), 0u);
    ASSERT_EQ(sched().set_affinity(*b, 0b11).value(), 0u);
    for (int i = 0; i < 3; ++i) sched().on_timer_tick();
    EXPECT_EQ(sched().counters().balanced, 0u);  // none has run yet
    for (int i = 0; i < 8 && !(a->ran && b->ran && sched().current() == boot_); ++i) {
        yield();  // each runs, and is queued again
    }
    ASSERT_EQ(sched().current(), boot_);
    ASSERT_TRUE(a->ran && b->ran);
    for (Thread* t : {bound, a, b}) t->stack_holds_no_cpu = true;  // as if from user mode
    FakeCpu::notified.clear();
    sched().on_timer_tick();  // queued before it: they have not waited a whole tick
    EXPECT_EQ(sched().counters().balanced, 0u);
    sched().on_timer_tick();
    EXPECT_EQ(bound->cpu, 0u);
    EXPECT_EQ(a->cpu, 1u);  // the first allowed, though not the first queued
    EXPECT_EQ(b->cpu, 0u);
    EXPECT_EQ(sched().counters().balanced, 1u);
    EXPECT_EQ(FakeCpu::notified, std::vector<uint32_t>{1});
    EXPECT_EQ(FakeCpu::unloaded, (Unloaded{{&a->context, 0}}));
    // CPU 1 has a thread queued: not idle, so b stays.
    sched().on_timer_tick();
    EXPECT_EQ(b->cpu, 0u);
    on_cpu(1, [&] { sched1().preempt_if_needed(); });
    EXPECT_EQ(sched1().current(), a);
    sched().on_timer_tick();
    EXPECT_EQ(b->cpu, 0u);
    EXPECT_EQ(sched().counters().balanced, 1u);
}

// The balancing rule moves a thread switched away on its way to user mode
// (an interrupt from user mode), never one preempted in kernel code.
TEST_F(SmpSchedulerTest, BalancingMovesOnlyThreadsLeftAtTheUserBoundary) {
    Thread* a = spawn("a");
    Thread* b = spawn("b");
    ASSERT_TRUE(sched().set_affinity(*a, 0b11).ok());
    ASSERT_TRUE(sched().set_affinity(*b, 0b11).ok());
    yield();
    ASSERT_EQ(sched().current(), a);
    for (uint32_t i = 0; i < Scheduler::kQuantumTicks; ++i) sched().on_timer_tick();
    // a runs; b waits but has not run: it stays.
    ASSERT_EQ(b->cpu, 0u);
    sched().preempt_if_needed(false);  // the quantum is over: a preempted in the kernel
    ASSERT_EQ(sched().current(), b);
    {
        LockGuard guard(sched().lock());
        sched().block_current_locked(nullptr, 0);  // b is out of the way
    }
    ASSERT_NE(sched().current(), a);
    EXPECT_FALSE(a->stack_holds_no_cpu);
    sched().on_timer_tick();
    sched().on_timer_tick();  // a has waited a whole tick
    EXPECT_EQ(a->cpu, 0u);    // but it is not movable
    while (sched().current() != a) yield();
    for (uint32_t i = 0; i < Scheduler::kQuantumTicks; ++i) sched().on_timer_tick();
    sched().preempt_if_needed(true);  // now from user mode
    ASSERT_NE(sched().current(), a);
    EXPECT_TRUE(a->stack_holds_no_cpu);
    sched().on_timer_tick();
    sched().on_timer_tick();
    EXPECT_EQ(a->cpu, 1u);
}

// Nothing waits for this CPU: nothing moves, though another idles.
TEST_F(SmpSchedulerTest, NoBalancingWithoutWaitingThreads) {
    Thread* a = spawn("a");
    ASSERT_TRUE(sched().set_affinity(*a, 0b11).ok());
    yield();
    ASSERT_EQ(sched().current(), a);
    {
        LockGuard guard(sched().lock());
        sched().block_current_locked(nullptr, 0);  // boot runs, nobody waits
    }
    a->context.gave_stack_up = true;  // as an IPC syscall's block at its frame
    ASSERT_EQ(sched().current(), boot_);
    sched().on_timer_tick();
    EXPECT_EQ(sched().counters().balanced, 0u);
    sched().wake(*a);
    sched().on_timer_tick();  // now a waits while boot runs, since before this tick
    EXPECT_EQ(a->cpu, 0u);
    sched().on_timer_tick();  // and through a whole one
    EXPECT_EQ(a->cpu, 1u);
}

// A thread queued again (woken, preempted) waits a whole tick anew before
// the balancing rule moves it: a server woken or spawned beside its client
// runs there as soon as the client blocks on it.
TEST_F(SmpSchedulerTest, BalancingMovesOnlyAThreadThatWaitedAWholeTick) {
    Thread* a = spawn("a");
    ASSERT_TRUE(sched().set_affinity(*a, 0b11).ok());
    yield();
    ASSERT_EQ(sched().current(), a);
    {
        LockGuard guard(sched().lock());
        sched().block_current_locked(nullptr, 0);
    }
    a->context.gave_stack_up = true;                      // as an IPC syscall's block at its frame
    for (int i = 0; i < 3; ++i) sched().on_timer_tick();  // blocked: nothing waits
    sched().wake(*a);
    sched().on_timer_tick();
    EXPECT_EQ(a->cpu, 0u);
    yield();  // a runs, blocks and is woken again
    ASSERT_EQ(sched().current(), a);
    {
        LockGuard guard(sched().lock());
        sched().block_current_locked(nullptr, 0);
    }
    a->context.gave_stack_up = true;
    sched().on_timer_tick();
    sched().wake(*a);
    sched().on_timer_tick();
    EXPECT_EQ(a->cpu, 0u);  // queued again since the last tick
    EXPECT_EQ(sched().counters().balanced, 0u);
    sched().on_timer_tick();
    EXPECT_EQ(a->cpu, 1u);
}

// The counters of every CPU, summed.
TEST_F(SmpSchedulerTest, TotalCountersAddEveryCpu) {
    sched().on_timer_tick();
    on_cpu(1, [&] {
        sched1().on_timer_tick();
        sched1().on_timer_tick();
    });
    EXPECT_EQ(Scheduler::total_counters().ticks, 3u);
}

}  // namespace
}  // namespace mk
