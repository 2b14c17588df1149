#include "endpoint.hpp"

#include "endpoint_inline.hpp"
#include "mk/abi.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "scheduler_inline.hpp"
#include "syscall/internal.hpp"

namespace mk {

using namespace endpoint_detail;

namespace {

// A send() that found `receiver` waiting: hand it the message, make it
// Ready and the donate target.
void deliver_locked(const Message& msg, Thread& self, uint64_t badge, Thread& receiver) {
    transfer(msg, *self.ipc, badge, receiver, false);
    receiver.ipc->reply = {};
    ++counters().receives;
    complete_locked(receiver, nullptr, Error::None, nullptr, Donate::Yes);
}

}  // namespace

bool g_ipc_fast_path = true;
bool g_ipc_fast_switch = true;

void ipc_set_fast_path(bool on) {
    g_ipc_fast_path = on;
    ipc_update_fast_switch();
}

void ipc_update_fast_switch() {
    g_ipc_fast_switch = g_ipc_fast_path && Scheduler::donation_enabled();
}

// A CPU's IPC counters, with the fast path's hits its scheduler counted.
static IpcCounters ipc_counters_locked(PerCpu& cpu) {
    IpcCounters c = cpu.ipc;
    c.syscall_fastpath_hits += cpu.scheduler.fast_hits_locked();
    return c;
}

IpcCounters ipc_counters() {
    LockGuard guard(sched().lock());
    return ipc_counters_locked(this_cpu());
}

IpcCounters total_ipc_counters() {
    IpcCounters t{};
    for (uint32_t i = 0, n = cpu_count(); i < n; ++i) {
        if (!cpu_online(i)) continue;
        LockGuard guard(cpu_at(i).scheduler.lock());  // each CPU's under its own lock
        add_counts(t, ipc_counters_locked(cpu_at(i)));
    }
    return t;
}

Result<Endpoint*> Endpoint::create() {
    Endpoint* ep = knew<Endpoint>();
    if (ep == nullptr) return Error::OutOfMemory;
    return ep;
}

void Endpoint::mark_dead_locked() {
    dead_ = 1;
    for (WaitQueue* q : {&senders_, &receivers_}) {
        while (Thread* t = q->front()) {
            complete_locked(*t, nullptr, Error::Destroyed);
            ++counters().destroyed_wakeups;
        }
    }
}

void Endpoint::destroy(Endpoint* endpoint) {
    if (endpoint == nullptr) return;
    {
        IpcGuard guard(endpoint->lock_);
        MK_ASSERT(!endpoint->dead_);  // destroy() gives back the creator's reference: once
        endpoint->mark_dead_locked();
    }
    // Outside the lock: the last release frees, and freeing takes the heap lock.
    endpoint->release();
}

void Endpoint::close_receive_side() {
    IpcGuard guard(lock_);
    if (!dead_) mark_dead_locked();
}

void Endpoint::free_object(Endpoint* endpoint) {
    // The syscall fast path lets go of the endpoint's lock after the
    // handle table's, which kept the endpoint alive: once this CPU has had
    // the lock, nobody uses the endpoint any more. (No lock is held here:
    // no last reference is released under one.)
    { LockGuard used(endpoint->lock_); }
    // Dead, or never used by anyone but its last holder: no waiter is left
    // (each one holds a reference), which ~WaitQueue checks. Notices nobody
    // received go with it.
    while (!endpoint->notices_.empty()) {
        Notice& n = endpoint->notices_.front();
        endpoint->notices_.pop_front();
        kdelete(&n);
    }
    kdelete(endpoint);
}

bool Endpoint::post_notice(Notice* notice, Donate donate) {
    IpcGuard guard(lock_);
    if (dead_) {
        kdelete(notice);  // nobody can receive it any more
        return false;
    }
    ++counters().notices;
    if (Thread* receiver = receivers_.front()) {
        take_notice_locked(*receiver, notice);
        ++counters().receives;
        complete_locked(*receiver, nullptr, Error::None, nullptr, donate);
        return true;
    }
    notices_.push_back(*notice);
    return false;
}

Endpoint* Endpoint::waited_on_locked(const Thread& t) {
    WaitQueue* q = t.waiting_on;
    if (q == nullptr || t.state != ThreadState::Blocked) return nullptr;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"  // GCC lays Endpoint out in order
    size_t at;
    switch (t.ipc->op) {
        case IpcState::Op::Recv:
            at = offsetof(Endpoint, receivers_);
            break;
        case IpcState::Op::Send:
        case IpcState::Op::Call:
            at = offsetof(Endpoint, senders_);
            break;
        default:
            return nullptr;
    }
#pragma GCC diagnostic pop
    return reinterpret_cast<Endpoint*>(reinterpret_cast<uintptr_t>(q) - at);
}

Received Endpoint::take_notice_locked(Thread& self, Notice* notice) {
    IpcState& ipc = *self.ipc;
    ipc.msg = notice->msg;
    ipc.badge = notice->badge;
    ipc.reply = {};
    kdelete(notice);
    return Received{ipc.msg, ipc.badge, {}};
}

size_t Endpoint::waiting_senders() {
    IpcGuard guard(lock_);
    return senders_.size();
}

size_t Endpoint::waiting_receivers() {
    IpcGuard guard(lock_);
    return receivers_.size();
}

// --- send ---

Status Endpoint::send(const Message& msg, uint64_t badge, uint64_t timeout_ticks) {
    if (!msg.fits()) return Error::TooLarge;
    Scheduler& s = sched();
    // Interrupts stay off from completing the receiver to the donation's
    // yield: nothing can run (or end) the receiver in between.
    bool irq_was_enabled = Cpu::save_and_disable_interrupts();
    Status st = Error::None;
    bool delivered = false;
    {
        IpcGuard guard(lock_);
        Thread& self = *s.current();
        if (dead_) {
            st = Error::Destroyed;
        } else {
            ++counters().sends;
            if (Thread* receiver = receivers_.front()) {
                deliver_locked(msg, self, badge, *receiver);
                delivered = true;
            } else {
                self.ipc->msg = msg;
                self.ipc->badge = badge;
                block_in_locked(self, IpcState::Op::Send, &senders_, timeout_ticks);
                st = finish_locked(self);
            }
        }
    }
    if (delivered) s.yield_to_donate_target();
    Cpu::restore_interrupts(irq_was_enabled);
    return st;
}

Status Endpoint::try_send(const Message& msg, uint64_t badge) {
    if (!msg.fits()) return Error::TooLarge;
    Scheduler& s = sched();
    bool irq_was_enabled = Cpu::save_and_disable_interrupts();
    Status st = Error::WouldBlock;
    {
        IpcGuard guard(lock_);
        if (dead_) {
            st = Error::Destroyed;
        } else if (Thread* receiver = receivers_.front()) {
            ++counters().sends;
            deliver_locked(msg, *s.current(), badge, *receiver);
            st = Error::None;
        }
    }
    if (st == Error::None) s.yield_to_donate_target();
    Cpu::restore_interrupts(irq_was_enabled);
    return st;
}

// --- recv ---

Result<Received> Endpoint::recv(uint64_t timeout_ticks) {
    IpcGuard guard(lock_);
    if (dead_) return Error::Destroyed;
    Thread& self = *sched().current();
    if (Notice* n = pop_notice_locked()) return take_notice_locked(self, n);
    if (Thread* sender = senders_.front()) return take_from_sender_locked(self, *sender, senders_);
    block_in_locked(self, IpcState::Op::Recv, &receivers_, timeout_ticks);
    // Whoever completed the receive counted it. A thread blocked at its
    // frame does not come back here (mk_resume_at_frame).
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return Received{self.ipc->msg, self.ipc->badge, self.ipc->reply};
}

Result<Received> Endpoint::try_recv() {
    IpcGuard guard(lock_);
    if (dead_) return Error::Destroyed;
    Thread& self = *sched().current();
    if (Notice* n = pop_notice_locked()) return take_notice_locked(self, n);
    Thread* sender = senders_.front();
    if (sender == nullptr) return Error::WouldBlock;
    return take_from_sender_locked(self, *sender, senders_);
}

// --- call ---

Result<Message> Endpoint::call_impl(const Message& msg, uint64_t badge, uint64_t timeout_ticks,
                                    bool need_receiver) {
    if (!msg.fits()) return Error::TooLarge;
    return call_inline(msg, badge, timeout_ticks, need_receiver, false);
}

Result<Message> Endpoint::call_elsewhere_locked(Thread& self, Thread& receiver, const Message& msg,
                                                uint64_t badge, uint64_t timeout_ticks) {
    Scheduler& s = sched();
    IpcCounters& c = counters();
    ++(!g_ipc_fast_path        ? c.fastpath_miss_disabled
       : !s.donation_enabled() ? c.fastpath_miss_donation_off
                               : c.fastpath_miss_other_cpu);
    {
        // Its home lock before anything of its wait changes. The receiver
        // stays first on receivers_ meanwhile: leaving it needs this
        // endpoint's lock, held. This thread may have been asked to exit
        // while this CPU's lock was let go: then no call, and no wait.
        Scheduler::HomeLock home(s, receiver);
        if (home.gapped() && self.exit_requested) [[unlikely]] {
            self.ipc->op = IpcState::Op::None;
            return Error::Interrupted;
        }
        MK_ASSERT(receivers_.front() == &receiver);
        transfer(msg, *self.ipc, badge, receiver, true);
        receiver.ipc->reply = ReplyToken{self.id(), self.ipc->call_seq};
        receiver.ipc->op = IpcState::Op::None;
        receiver.ipc->result = Error::None;
        ++c.receives;
        s.wake_at_home_locked(receiver, WakeReason::Woken);  // off receivers_ too
        s.donate_locked(receiver);                           // "wake there, now"
        // We wait on its callers queue, which its home lock guards (held).
        self.ipc->op = IpcState::Op::ReplyWait;
        self.ipc->result = Error::WouldBlock;
        s.mark_current_blocked_locked(&receiver.ipc->callers, timeout_ticks);
        s.assert_reply_wait_guarded(self);
    }
    s.switch_away_locked();
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return self.ipc->msg;
}

// --- reply ---

namespace {

// What a reply holds: this CPU's scheduler lock alone, which guards the
// replier's callers queue; the caller's home lock follows (HomeLock,
// HomeLocks). No endpoint lock: a reply wait is guarded by scheduler locks
// (docs/locking.md), and so a reply never waits for an endpoint
// operation of another CPU.
class ReplyGuard {
  public:
    ReplyGuard() : guard_(sched().lock()) {}

  private:
    LockGuard guard_;
};

// A caller homed on another CPU, pinned: with no endpoint lock held, it may be
// killed and destroyed while this CPU's lock is let go for its home's (the
// gap), or once the locks are gone; the reply still reads it then.
// Released after the ReplyGuard (the last reference frees). A caller homed
// here cannot end while this CPU's lock is held: none needed.
Ref<Thread> pin_if_elsewhere(Thread& caller) {
    if (caller.cpu == sched().cpu()) return {};
    return Ref<Thread>::retain(&caller);
}

}  // namespace

Status Endpoint::reply(ReplyToken token, const Message& msg, Donate donate) {
    if (!msg.fits()) return Error::TooLarge;
    Ref<Thread> pin;  // released after the guard
    ReplyGuard guard;
    // The caller waits on the callers queue of the thread that received it.
    Thread& self = *sched().current();
    Thread* caller = reply_target_locked(token, self);
    if (caller == nullptr) {
        ++counters().stale_replies;
        return Error::BadHandle;
    }
    pin = pin_if_elsewhere(*caller);
    // The reply goes in under this thread's home lock (held), which guards
    // its callers queue, and the caller's, as the wait ends: unless the
    // wait ended while this CPU's lock was let go for the caller's.
    if (!complete_locked(*caller, &self, Error::None, &msg, donate)) {
        ++counters().stale_replies;
        return Error::BadHandle;
    }
    return Error::None;
}

Status Endpoint::save_reply(ReplyToken token, SavedWait& saved) {
    MK_ASSERT(saved.caller == nullptr && saved.queue.empty());
    Ref<Thread> pin;  // released after the guard
    ReplyGuard guard;
    Thread* caller = reply_target_locked(token, *sched().current());
    if (caller == nullptr) return Error::BadHandle;
    pin = pin_if_elsewhere(*caller);
    // From this thread's callers queue (its home lock, held) to the saved
    // wait's queue, which the caller's home lock guards from now on.
    Scheduler::HomeLock home(sched(), *caller);
    // This CPU's lock let go on the way: the caller may have timed out or
    // died meanwhile, and left the callers queue.
    if (home.gapped() && reply_target_locked(token, *sched().current()) != caller)
        return Error::BadHandle;
    caller->waiting_on->remove(*caller);
    saved.queue.push_back(*caller);
    // Saved first, then the new wait lock (reply_wait_owner reads them the
    // other way round, some without the locks held here).
    __atomic_store_n(&caller->ipc->saved_call, token.call, __ATOMIC_RELAXED);
    __atomic_store_n(&caller->waiting_on, &saved.queue, __ATOMIC_RELEASE);
    sched().assert_reply_wait_guarded(*caller);
    // Named and pinned while the wait cannot end: the caller is alive.
    caller->retain();
    saved.caller = caller;
    saved.token = token;
    return Error::None;
}

Status Endpoint::reply_saved(SavedWait& saved, const Message& msg, Donate donate) {
    if (!msg.fits()) return Error::TooLarge;
    Thread* caller = saved.caller;
    if (caller == nullptr) return Error::BadHandle;  // never saved
    ReplyGuard guard;
    // The caller's home lock alone guards its wait here; it still waits
    // for this very call, or the answer is stale.
    Scheduler::HomeLock home(sched(), *caller);
    if (!saved.holds_call_locked()) {
        ++counters().stale_replies;
        return Error::BadHandle;
    }
    complete_at_home_locked(*caller, Error::None, &msg, donate);
    return Error::None;
}

void Endpoint::drop_saved(SavedWait& saved) {
    Thread* caller = saved.caller;
    if (caller == nullptr) return;
    ReplyGuard guard;
    Scheduler::HomeLock home(sched(), *caller);
    if (!saved.holds_call_locked()) return;
    ++counters().peer_died_wakeups;
    complete_at_home_locked(*caller, Error::PeerDied);
}

Status Endpoint::reply_drop(ReplyToken token) {
    Ref<Thread> pin;  // released after the guard
    ReplyGuard guard;
    Thread& self = *sched().current();
    Thread* caller = reply_target_locked(token, self);
    if (caller == nullptr) return Error::BadHandle;
    pin = pin_if_elsewhere(*caller);
    if (!complete_locked(*caller, &self, Error::PeerDied)) return Error::BadHandle;
    ++counters().peer_died_wakeups;
    return Error::None;
}

Result<Received> Endpoint::reply_then_recv(ReplyToken token, const Message& reply,
                                           uint64_t timeout_ticks) {
    // A stale token (the caller timed out or died meanwhile) drops the
    // reply; the receive goes on. The caller runs on its CPU at once, as
    // it would here ("wake there, now": Scheduler::donate_locked).
    (void)Endpoint::reply(token, reply, Donate::Yes);
    return recv(timeout_ticks);
}

Result<Received> Endpoint::reply_recv(ReplyToken token, const Message& reply,
                                      uint64_t timeout_ticks) {
    if (!reply.fits()) return Error::TooLarge;
    return reply_recv_inline(token, reply, timeout_ticks, false);
}

// --- completions ---

Status Endpoint::finish_send(Thread& self) {
    IpcGuard guard(nullptr);  // its wait has ended: no endpoint's lock
    return finish_locked(self);
}

Result<Received> Endpoint::finish_recv(Thread& self) {
    IpcGuard guard(nullptr);  // its wait has ended: no endpoint's lock
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return Received{self.ipc->msg, self.ipc->badge, self.ipc->reply};
}

Result<Message> Endpoint::finish_call(Thread& self) {
    IpcGuard guard(nullptr);  // its wait has ended: no endpoint's lock
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return self.ipc->msg;
}

bool endpoint_detail::complete_locked(Thread& t, const Thread* owner, Error result,
                                      const Message* reply, Donate donate) {
    // An endpoint's waiter under the endpoint's lock; a reply wait under
    // scheduler locks alone (HomeLocks).
    MK_ASSERT(owner != nullptr || holds_here(LockLevel::Endpoint));
    // The wait as the caller found it: a reply wait may have ended before
    // its guard was held (the server's death reads its callers queue
    // without it), or while HomeLocks let go of this CPU's lock. An
    // endpoint's waiter stays as it is: the endpoint's lock is held.
    uint64_t call = t.ipc->call_seq;
    Scheduler::HomeLocks homes(sched(), t, owner);
    if (reply_wait_owner(t) != owner || t.ipc->call_seq != call) [[unlikely]]
        return false;
    complete_at_home_locked(t, result, reply, donate);
    return true;
}

void endpoint_detail::complete_at_home_locked(Thread& t, Error result, const Message* reply,
                                              Donate donate) {
    Scheduler& s = sched();
    s.assert_reply_wait_guarded(t);
    if (reply != nullptr) {
        transfer(*reply, *s.current()->ipc, 0, t, false);
        ++counters().replies;
    }
    t.ipc->op = IpcState::Op::None;
    t.ipc->result = result;
    if (s.wake_at_home_locked(t, WakeReason::Woken) && donate == Donate::Yes) s.donate_locked(t);
}

void ipc_abort_locked(Thread& thread, WakeReason reason) {
    IpcState& ipc = *thread.ipc;
    if (ipc.op == IpcState::Op::None || ipc.result != Error::WouldBlock) return;
    // It leaves its endpoint's queue (wake_locked), under the endpoint's
    // lock; a reply wait is guarded by scheduler locks instead, which
    // wake_at_home_locked() asserts. (The syscall fast path, whose locks
    // are raw, never gets here: the waits it ends have ended.)
    MK_ASSERT(ipc.op == IpcState::Op::ReplyWait || holds_here(LockLevel::Endpoint));
    ipc.op = IpcState::Op::None;
    if (reason == WakeReason::TimedOut) {
        ipc.result = Error::TimedOut;
        ++counters().timeouts;
    } else {
        ipc.result = Error::Interrupted;
    }
}

void ipc_release_thread_locked(Thread& thread) {
    Scheduler::GapHold held(nullptr);
    for (Thread* failed = nullptr;;) {
        Thread* caller;
        {
            // Its callers queue is guarded by its home lock: this CPU's
            // for an exit, a second one for a kill from another CPU.
            Scheduler::HomeLock home(sched(), thread);
            caller = thread.ipc->callers.front();
            // A caller whose wait ended before its locks were held (a
            // timeout) left the queue. Still first, it would be a kernel bug.
            MK_ASSERT(caller == nullptr || caller != failed);
            // On the queue, it waits and lives; held until its wait is
            // looked at under its locks (complete_locked).
            held.take(caller);
        }
        if (caller == nullptr) break;
        if (complete_locked(*caller, &thread, Error::PeerDied)) {
            ++counters().peer_died_wakeups;
        } else {
            failed = caller;
        }
    }
    // A thread that still waits keeps its operation: only the host tests
    // release a live thread's callers (a dying one waits on nothing).
    if (thread.waiting_on == nullptr) thread.ipc->op = IpcState::Op::None;
}

}  // namespace mk
