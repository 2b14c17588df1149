// Reply waits across CPUs on the host fake (three CPUs): a caller waits on
// its server's callers queue, which the server's home scheduler lock
// guards, or on a saved reply's queue, which the caller's own home lock
// guards (docs/locking.md). Whatever ends such a wait from whichever CPU —
// the reply, a timeout at the caller's home, a kill or the server's death
// from a third CPU — holds the caller's home lock and the wait's, taken in
// CPU index order (Scheduler::HomeLocks), and lets go of both.
#include <gtest/gtest.h>
#include <vector>

#include "endpoint.hpp"
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
            IpcGuard guard;  // callers still waiting on a thread's reply fail
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

    Endpoint* ep_ = nullptr;
};

// From CPU 1, the home locks of threads of CPUs 0 and 2: all three
// scheduler locks, this CPU's let go and retaken between the other two;
// then this CPU's alone again, with the IPC lock.
TEST_F(SmpIpcTest, HomeLocksTakesTwoOtherCpusInIndexOrder) {
    Thread* a = create("a");  // homed on CPU 0, where it was made
    Thread* b = create_on(2, "b");
    on_cpu(1, [&] {
        IpcGuard guard;
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

// Ending a reply wait without the lock that guards it is a kernel bug: the
// wake asserts it holds the server's home lock.
TEST_F(SmpIpcTest, AReplyWaitEndedWithoutItsServersHomeLockIsAKernelBug) {
    Thread* r = server_on_0();
    Thread* c = caller_on(1);
    (void)received_by(r);
    EXPECT_DEATH(on_cpu(1,
                        [&] {
                            IpcGuard guard;
                            sched1().wake_at_home_locked(*c, WakeReason::Interrupted);
                        }),
                 "assertion failed: owner == nullptr");
    on_cpu(1, [&] { EXPECT_TRUE(sched1().wake(*c, WakeReason::Interrupted)); });
    EXPECT_TRUE(r->ipc->callers.empty());
}

}  // namespace
}  // namespace mk
