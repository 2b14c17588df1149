// The scheduler's hand-over of the IPC general path, inline: what a call
// that found a receiver and a reply_recv that answered a caller run on
// every round trip (microkernel/endpoint.cpp), and the parts of it that
// scheduler.cpp shares. Include it only where these are used; everything
// else goes through scheduler.hpp.
#pragma once

#include "endpoint.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "scheduler.hpp"

namespace mk {

[[gnu::always_inline]] inline void Scheduler::enter_switch_locked() {
    // Switches happen in thread context: an interrupt ends (irq_exit) before
    // preempt_if_needed() switches. The scheduler lock is handed to the
    // thread switched to, so it must be the one lock held: any other would
    // stay held by a thread that is not running (or deadlock a woken one).
    // The endpoint's lock of a thread blocking in an IPC operation goes
    // first, interrupts staying off: its wait is linked and it is Blocked,
    // so a waker that takes that lock now finds it, and then waits for the
    // scheduler lock until this switch is done.
    MK_ASSERT(!in_irq());
    uint64_t held = Cpu::held_locks();
    if ((held & HeldLocks::bit(LockLevel::Endpoint)) != 0) {
        SpinLock* endpoint_lock = this_cpu().endpoint_lock;  // the one of that level (IpcGuard)
        MK_ASSERT(endpoint_lock != nullptr && endpoint_lock->is_locked());
        held &= ~HeldLocks::bit(LockLevel::Endpoint);
        Cpu::set_held_locks(held);
        endpoint_lock->unlock_raw();  // what unlock(false) does, its account kept here
    }
    MK_ASSERT(held == HeldLocks::bit(LockLevel::Scheduler));
    MK_ASSERT(lock_.is_locked());
}

inline void Scheduler::donate_locked(Thread& thread) {
    // A thread of this CPU stays one while this CPU's lock is held.
    if (thread.cpu != cpu_) [[unlikely]] {
        donate_elsewhere_locked(thread);
    } else if (donation_enabled_) {
        donate_target_ = &thread;
    }
}

inline bool Scheduler::home_locked_here(const Thread& thread) const {
    return thread.cpu == cpu_ || cpu_at(thread.cpu).scheduler.lock_.is_locked();
}

inline void Scheduler::assert_reply_wait_guarded(Thread& thread) const {
    MK_ASSERT(home_locked_here(thread));
    Thread* owner = reply_wait_owner(thread);
    MK_ASSERT(owner == nullptr || home_locked_here(*owner));
}

inline void Scheduler::end_wait_locked(Thread& thread, WakeReason reason) {
    if (thread.waiting_on != nullptr) {
        thread.waiting_on->remove(thread);
        thread.waiting_on = nullptr;
    }
    cancel_timeout_inline_locked(thread);
    thread.wake_reason = reason;
    // An IPC wait that no partner completed (a timeout, a stray wake) ends
    // here, under the lock, so no reply can reach it after this point. (One
    // a partner completed has no operation left: no call.)
    if (thread.ipc->op != IpcState::Op::None) [[unlikely]]
        ipc_abort_locked(thread, reason);
}

inline void Scheduler::mark_current_blocked_inline(WaitQueue* queue, uint64_t timeout_ticks) {
    Thread* self = current_;
    MK_ASSERT(self != idle_ && self->state == ThreadState::Running && self->cpu == cpu_);
    self->block_armed = false;
    self->wake_pending = false;
    self->state = ThreadState::Blocked;
    self->wake_reason = WakeReason::None;
    self->waiting_on = queue;
    if (queue != nullptr) queue->push_back(*self);
    if (timeout_ticks != 0) arm_timeout_locked(*self, timeout_ticks);
    ++counters_.blocks;
}

[[gnu::always_inline]] inline WakeReason Scheduler::wake_and_block_inline(Thread& thread,
                                                                          WaitQueue* queue,
                                                                          uint64_t timeout_ticks) {
    Thread* self = current_;
    // What schedule_locked(true) would do with `thread` as the donate
    // target, short of the ready queue: it is taken, as it is Ready (just
    // woken, with the lock held all along) and neither the current thread
    // nor the idle one. Anything else goes the long way: donation off (the
    // round-robin picks), a quantum that just ran out (the hand-off queue
    // moves to the ready queue first), a thread that was not Blocked.
    // And a thread of another CPU, which its wake tells (enqueue_locked).
    // (Its home first: only a thread of this CPU has its state under the
    // lock held here.)
    if (!donation_enabled_ || quantum_left_ == 0 || thread.cpu != cpu_ ||
        thread.state != ThreadState::Blocked) [[unlikely]] {
        return wake_then_block_locked(thread, queue, timeout_ticks);
    }
    // `thread` is neither the current thread nor the idle one, as it is
    // Blocked: the idle thread never blocks (mark_current_blocked_inline()
    // asserts it, and the fast path blocks user threads only), and the
    // current thread is Running (which mark_current_blocked_inline() below
    // asserts, before this CPU switches).
    // wake_locked(thread), without the ready queue.
    end_wait_locked(thread, WakeReason::Woken);
    ++counters_.wakeups;
    // block_current_locked(queue, timeout_ticks), whose switch takes the
    // donation: the rest of the quantum goes with it.
    mark_current_blocked_inline(queue, timeout_ticks);
    enter_switch_locked();
    // A donate target is left alone, as by switch_to_locked: one of another
    // CPU, whose interrupt runs it.
    ++counters_.donations_taken;
    if (self->at_frame && Cpu::resumes_at_frame(thread.context) && switched_from_ == nullptr)
        [[likely]] {
        // Two user threads in IPC syscalls, the one blocking and the one
        // resuming at its frame (mostly with its syscall completed there
        // already: complete_at_frame_locked in endpoint.cpp): what
        // switch_locked() changes for them, and no more. Neither is at the
        // user boundary (this one is in a syscall) nor moving (nothing was
        // switched from; `thread`, Blocked here, was not queued elsewhere:
        // its switching_out is clear), and the quantum goes on.
        at_boundary_ = false;
        self->stack_holds_no_cpu = false;
        thread.state = ThreadState::Running;
        need_resched_ = false;
        __atomic_store_n(&current_, &thread, __ATOMIC_RELAXED);  // balance_wanted_locked looks
        ++counters_.switches;
        Cpu::switch_user_frames(self->context, thread.context);
        return self->wake_reason;  // the host fake's switch returns (throws), the machine's not
    }
    switch_locked(*self, thread, false);
    // Not reached by a thread that blocked at its frame.
    return self->wake_reason;
}

}  // namespace mk
