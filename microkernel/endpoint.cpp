#include "endpoint.hpp"

#include "mk/abi.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "syscall/internal.hpp"

namespace mk {

namespace {

Scheduler& sched() {
    return this_cpu().scheduler;
}
IpcCounters& counters() {
    return this_cpu().ipc;
}

// Completes the IPC syscall of `to`, a user thread of this CPU blocked at
// its frame (Thread::at_frame), in its saved registers, as the syscall fast
// path does: status Ok, the badge, the info word and the words (the
// payload is in its IPC buffer already). It then resumes with nothing left
// to do but return to user mode (mk_resume_at_frame), instead of
// completing the syscall from its IpcState there. Its operation's
// reference to the endpoint goes now; as no reference may be released
// last under the IPC lock, `to` keeps a last one and completes as before,
// and so does a message with handles (its own syscall puts them in its
// table), a receive that drops a superseded call, and a thread of another
// CPU (whose CPU may still be on its stack).
[[gnu::always_inline]] inline bool complete_at_frame_locked(Thread& to, const Message& msg,
                                                            uint64_t badge, bool call) {
    IpcState& ipc = *to.ipc;
    // (Another CPU's thread first: a round trip between two CPUs pays for
    // this one check and no more.)
    if (to.cpu != sched().cpu() || !to.at_frame || to.state != ThreadState::Blocked ||
        msg.handle_count != 0 || ipc.user_op == IpcState::UserOp::None || ipc.superseded.valid()) {
        return false;
    }
    if (ipc.endpoint_ref) {
        if (!ipc.endpoint_ref->release_if_not_last()) return false;
        (void)ipc.endpoint_ref.leak();  // released above
    }
    ipc.user_op = IpcState::UserOp::None;
    TrapFrame& f = Cpu::syscall_frame(to.context);
    f.rax = uint64_t(abi::Err::Ok);
    syscall::deliver_registers(f, msg, 0, badge, call);
    return true;
}

// Copies a message's payload into `to`'s IPC buffer, and the message into
// its saved registers (complete_at_frame_locked) or else its IPC state,
// moving the handles it carries from `src` (the sender's state) to it.
// `call`: a call that `to` receives (it is to answer it).
[[gnu::always_inline]] inline void transfer(const Message& msg, IpcState& src, uint64_t badge,
                                            Thread& to, bool call) {
    IpcState& dst = *to.ipc;
    if (msg.length != 0 && dst.buffer != src.buffer) {
        __builtin_memcpy(dst.buffer, src.buffer, msg.length);
    }
    if (complete_at_frame_locked(to, msg, badge, call)) return;
    dst.msg = msg;
    dst.badge = badge;
    for (uint32_t i = 0; i < msg.handle_count; ++i) {
        // The receiver took its last handles out before it received again:
        // nothing is released here, under the lock.
        MK_ASSERT(!dst.handles[i].object);
        dst.handles[i] = static_cast<HandleEntry&&>(src.handles[i]);
    }
}

// The caller a token names, if it is still waiting for that reply from
// `replier`: the thread that received the call answers it (a token copied
// to any other thread is worthless there).
Thread* reply_target_locked(ReplyToken token, const WaitQueue& waits_on) {
    if (!token.valid()) return nullptr;
    Thread* caller = Thread::lookup(token.caller);
    if (caller == nullptr || caller->ipc->op != IpcState::Op::ReplyWait ||
        caller->ipc->call_seq != token.call || caller->state != ThreadState::Blocked ||
        caller->waiting_on != &waits_on) {
        return nullptr;
    }
    return caller;
}

Thread* reply_target_locked(ReplyToken token, Thread& replier) {
    return reply_target_locked(token, replier.ipc->callers);
}

// Ends `t`'s operation with `result`: it leaves the queue it waits on and
// becomes Ready.
void complete_locked(Thread& t, Error result) {
    MK_ASSERT(holds_here(LockLevel::Endpoint));
    t.ipc->op = IpcState::Op::None;
    t.ipc->result = result;
    sched().wake_locked(t);
}

// Takes the first queued sender's message into `self` (a receive that found
// a partner). A plain sender is done; a caller now waits for the reply,
// moved from the endpoint's queue to self's callers queue.
Received take_from_sender_locked(Thread& self, Thread& sender, WaitQueue& senders) {
    IpcState& s = *sender.ipc;
    transfer(s.msg, s, s.badge, self, false);  // self runs: never at its frame
    Received r{self.ipc->msg, s.badge, {}};
    if (s.op == IpcState::Op::Call) {
        r.reply = ReplyToken{sender.id(), s.call_seq};
        senders.remove(sender);
        s.op = IpcState::Op::ReplyWait;
        sender.waiting_on = &self.ipc->callers;
        self.ipc->callers.push_back(sender);
    } else {
        complete_locked(sender, Error::None);
    }
    self.ipc->reply = r.reply;
    ++counters().receives;
    return r;
}

// A send() that found `receiver` waiting: hand it the message, make it
// Ready and the donate target.
void deliver_locked(const Message& msg, Thread& self, uint64_t badge, Thread& receiver) {
    transfer(msg, *self.ipc, badge, receiver, false);
    receiver.ipc->reply = {};
    ++counters().receives;
    complete_locked(receiver, Error::None);
    sched().set_donate_target_locked(&receiver);
}

// Blocks `self` in operation `op` on `queue`; the result is left for finish_*.
void block_in_locked(Thread& self, IpcState::Op op, WaitQueue* queue, uint64_t timeout) {
    if (self.exit_requested) {
        // Killed while on its way here: it must not sleep, it ends on its
        // way back to user mode.
        self.ipc->op = IpcState::Op::None;
        self.ipc->result = Error::Interrupted;
        return;
    }
    self.ipc->op = op;
    self.ipc->result = Error::WouldBlock;  // "pending": the completer overwrites it
    sched().block_current_locked(queue, timeout);
}

// The outcome of self's last operation: set by whoever completed it, or by
// ipc_abort_locked(). WouldBlock while it is still blocked (host tests only).
Status finish_locked(Thread& self) {
    return self.ipc->result;
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
            complete_locked(*t, Error::Destroyed);
            ++counters().destroyed_wakeups;
        }
    }
}

void Endpoint::destroy(Endpoint* endpoint) {
    if (endpoint == nullptr) return;
    {
        IpcGuard guard;
        MK_ASSERT(!endpoint->dead_);  // destroy() gives back the creator's reference: once
        endpoint->mark_dead_locked();
    }
    // Outside the lock: the last release frees, and freeing takes the heap lock.
    endpoint->release();
}

void Endpoint::close_receive_side() {
    IpcGuard guard;
    if (!dead_) mark_dead_locked();
}

void Endpoint::free_object(Endpoint* endpoint) {
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

bool Endpoint::post_notice(Notice* notice) {
    IpcGuard guard;
    if (dead_) {
        kdelete(notice);  // nobody can receive it any more
        return false;
    }
    ++counters().notices;
    if (Thread* receiver = receivers_.front()) {
        take_notice_locked(*receiver, notice);
        ++counters().receives;
        complete_locked(*receiver, Error::None);
        // A wake like any other: the poster donates to it when it next
        // yields or blocks (the reaper, right after a death).
        sched().set_donate_target_locked(receiver);
        return true;
    }
    notices_.push_back(*notice);
    return false;
}

Received Endpoint::take_notice_locked(Thread& self, Notice* notice) {
    IpcState& ipc = *self.ipc;
    ipc.msg = notice->msg;
    ipc.badge = notice->badge;
    ipc.reply = {};
    kdelete(notice);
    return Received{ipc.msg, ipc.badge, {}};
}

Notice* Endpoint::pop_notice_locked() {
    if (notices_.empty()) return nullptr;
    Notice& n = notices_.front();
    notices_.pop_front();
    ++counters().receives;
    return &n;
}

size_t Endpoint::waiting_senders() {
    IpcGuard guard;
    return senders_.size();
}

size_t Endpoint::waiting_receivers() {
    IpcGuard guard;
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
        IpcGuard guard;
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
        IpcGuard guard;
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
    IpcGuard guard;
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
    IpcGuard guard;
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
    Scheduler& s = sched();
    IpcGuard guard;
    if (dead_) return Error::Destroyed;
    Thread& self = *s.current();
    if (self.exit_requested) return Error::Interrupted;  // killed: no new waits
    Thread* receiver = receivers_.front();
    if (receiver == nullptr && need_receiver) return Error::WouldBlock;
    IpcCounters& c = counters();
    ++c.calls;
    ++self.ipc->call_seq;
    if (receiver == nullptr) {
        ++c.fastpath_miss_no_partner;
        self.ipc->msg = msg;
        self.ipc->badge = badge;
        block_in_locked(self, IpcState::Op::Call, &senders_, timeout_ticks);
        Status st = finish_locked(self);
        if (st != Error::None) return st;
        return self.ipc->msg;
    }
    // Deliver to the waiting receiver; we wait on its callers queue.
    receivers_.remove(*receiver);
    receiver->waiting_on = nullptr;
    transfer(msg, *self.ipc, badge, *receiver, true);
    receiver->ipc->reply = ReplyToken{self.id(), self.ipc->call_seq};
    receiver->ipc->op = IpcState::Op::None;
    receiver->ipc->result = Error::None;
    ++c.receives;
    self.ipc->op = IpcState::Op::ReplyWait;
    self.ipc->result = Error::WouldBlock;

    if (g_ipc_fast_path && s.donation_enabled() && msg.register_only() &&
        receiver->cpu == self.cpu) {
        ++c.fastpath_hits;
        s.mark_current_blocked_locked(&receiver->ipc->callers, timeout_ticks);
        s.switch_to_locked(*receiver);
    } else {
        ++(!g_ipc_fast_path            ? c.fastpath_miss_disabled
           : !s.donation_enabled()     ? c.fastpath_miss_donation_off
           : receiver->cpu != self.cpu ? c.fastpath_miss_other_cpu
                                       : c.fastpath_miss_long_message);
        // Wake the receiver, donate to it (on this CPU), wait on its callers
        // queue.
        s.wake_and_block_locked(*receiver, &receiver->ipc->callers, timeout_ticks);
    }
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return self.ipc->msg;
}

// --- reply ---

Status Endpoint::reply(ReplyToken token, const Message& msg, Donate donate) {
    // The caller waits on the callers queue of the thread that received it.
    return reply_saved(token, sched().current()->ipc->callers, msg, donate);
}

Status Endpoint::save_reply(ReplyToken token, WaitQueue& saved) {
    IpcGuard guard;
    Thread* caller = reply_target_locked(token, *sched().current());
    if (caller == nullptr) return Error::BadHandle;
    caller->waiting_on->remove(*caller);
    saved.push_back(*caller);
    caller->waiting_on = &saved;
    return Error::None;
}

Status Endpoint::reply_saved(ReplyToken token, WaitQueue& saved, const Message& msg,
                             Donate donate) {
    if (!msg.fits()) return Error::TooLarge;
    IpcGuard guard;
    Thread* caller = reply_target_locked(token, saved);
    if (caller == nullptr) {
        ++counters().stale_replies;
        return Error::BadHandle;
    }
    transfer(msg, *sched().current()->ipc, 0, *caller, false);
    ++counters().replies;
    complete_locked(*caller, Error::None);
    if (donate == Donate::Yes) sched().set_donate_target_locked(caller);
    return Error::None;
}

void Endpoint::drop_saved(WaitQueue& saved) {
    IpcGuard guard;
    while (Thread* caller = saved.front()) {
        ++counters().peer_died_wakeups;
        complete_locked(*caller, Error::PeerDied);
    }
}

Status Endpoint::reply_drop(ReplyToken token) {
    IpcGuard guard;
    Thread* caller = reply_target_locked(token, *sched().current());
    if (caller == nullptr) return Error::BadHandle;
    ++counters().peer_died_wakeups;
    complete_locked(*caller, Error::PeerDied);
    return Error::None;
}

Result<Received> Endpoint::reply_recv(ReplyToken token, const Message& reply,
                                      uint64_t timeout_ticks) {
    if (!reply.fits()) return Error::TooLarge;
    Scheduler& s = sched();
    IpcGuard guard;
    if (dead_) return Error::Destroyed;
    Thread& self = *s.current();
    if (self.exit_requested) return Error::Interrupted;  // killed: no new waits
    IpcCounters& c = counters();
    Thread* caller = reply_target_locked(token, self);
    if (token.valid() && caller == nullptr) ++c.stale_replies;
    Thread* sender = senders_.front();

    if (caller != nullptr && g_ipc_fast_path && s.donation_enabled() && reply.register_only() &&
        sender == nullptr && notices_.empty() && caller->cpu == self.cpu) {
        // Fast path: the caller takes the reply and the CPU; we wait for the
        // next message.
        ++c.fastpath_hits;
        ++c.replies;
        caller->waiting_on->remove(*caller);
        caller->waiting_on = nullptr;
        transfer(reply, *self.ipc, 0, *caller, false);
        caller->ipc->op = IpcState::Op::None;
        caller->ipc->result = Error::None;
        self.ipc->op = IpcState::Op::Recv;
        self.ipc->result = Error::WouldBlock;
        s.mark_current_blocked_locked(&receivers_, timeout_ticks);
        s.switch_to_locked(*caller);
    } else {
        if (caller != nullptr) {
            ++(!g_ipc_fast_path          ? c.fastpath_miss_disabled
               : !s.donation_enabled()   ? c.fastpath_miss_donation_off
               : !reply.register_only()  ? c.fastpath_miss_long_message
               : caller->cpu != self.cpu ? c.fastpath_miss_other_cpu
                                         : c.fastpath_miss_sender_pending);
            transfer(reply, *self.ipc, 0, *caller, false);
            ++c.replies;
            // The caller's operation ends here; its wake follows below, with
            // the hand-off or the block (nothing in between looks at it).
            caller->ipc->op = IpcState::Op::None;
            caller->ipc->result = Error::None;
        }
        Notice* n = pop_notice_locked();
        if (n != nullptr || sender != nullptr) {
            // This thread has its next message already and goes on; the
            // caller runs as soon as it stops, ahead of the ready queue.
            if (caller != nullptr) {
                s.wake_locked(*caller);
                s.hand_off_locked(*caller);
            }
            return n != nullptr ? take_notice_locked(self, n)
                                : take_from_sender_locked(self, *sender, senders_);
        }
        if (caller != nullptr && !self.exit_requested) {
            // Wake the caller, donate to it and wait for the next message,
            // as block_in_locked() would.
            self.ipc->op = IpcState::Op::Recv;
            self.ipc->result = Error::WouldBlock;  // "pending": the completer overwrites it
            s.wake_and_block_locked(*caller, &receivers_, timeout_ticks);
        } else {
            if (caller != nullptr) {
                s.wake_locked(*caller);
                s.set_donate_target_locked(caller);
            }
            block_in_locked(self, IpcState::Op::Recv, &receivers_, timeout_ticks);
        }
    }
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return Received{self.ipc->msg, self.ipc->badge, self.ipc->reply};
}

// --- completions ---

Status Endpoint::finish_send(Thread& self) {
    IpcGuard guard;
    return finish_locked(self);
}

Result<Received> Endpoint::finish_recv(Thread& self) {
    IpcGuard guard;
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return Received{self.ipc->msg, self.ipc->badge, self.ipc->reply};
}

Result<Message> Endpoint::finish_call(Thread& self) {
    IpcGuard guard;
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return self.ipc->msg;
}

void ipc_abort_locked(Thread& thread, WakeReason reason) {
    IpcState& ipc = *thread.ipc;
    if (ipc.op == IpcState::Op::None || ipc.result != Error::WouldBlock) return;
    // It leaves its endpoint's queue (wake_locked). (The syscall fast path,
    // whose locks are raw, never gets here: the waits it ends have ended.)
    MK_ASSERT(holds_here(LockLevel::Endpoint));
    ipc.op = IpcState::Op::None;
    if (reason == WakeReason::TimedOut) {
        ipc.result = Error::TimedOut;
        ++counters().timeouts;
    } else {
        ipc.result = Error::Interrupted;
    }
}

void ipc_release_thread_locked(Thread& thread) {
    MK_ASSERT(holds_here(LockLevel::Endpoint));
    while (Thread* caller = thread.ipc->callers.front()) {
        ++counters().peer_died_wakeups;
        complete_locked(*caller, Error::PeerDied);
    }
    thread.ipc->op = IpcState::Op::None;
}

}  // namespace mk
