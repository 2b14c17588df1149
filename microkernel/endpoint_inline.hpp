// The endpoint operations of the IPC general path that every round trip
// runs, inline: call() and reply_recv() (their bodies, call_inline() and
// reply_recv_inline()) with the helpers they share with endpoint.cpp. The
// syscall layer (syscall/ipc.cpp) includes it so that a Call or a
// ReplyRecv runs in one function frame from its decode to its block;
// everything else calls the out-of-line Endpoint::call_impl() and
// Endpoint::reply_recv() of endpoint.cpp, which are these same bodies.
#pragma once

#include "endpoint.hpp"
#include "mk/abi.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "scheduler_inline.hpp"
#include "syscall/internal.hpp"

namespace mk {

namespace endpoint_detail {

inline Scheduler& sched() {
    return this_cpu().scheduler;
}
inline IpcCounters& counters() {
    return this_cpu().ipc;
}

// Completes the IPC syscall of `to`, a user thread of this CPU blocked at
// its frame (Thread::at_frame), in its saved registers, as the syscall fast
// path does: status Ok, the badge, the info word and the words (the
// payload is in its IPC buffer already). It then resumes with nothing left
// to do but return to user mode (mk_resume_at_frame), instead of
// completing the syscall from its IpcState there. Its operation's
// reference to the endpoint goes now; as no reference may be released
// last under an endpoint's lock, `to` keeps a last one and completes as before,
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
// to any other thread is worthless there). The caller is looked for on the
// queue it must wait on, the replier's callers queue or a saved reply's:
// a thread there waits for its reply (in ReplyWait, Blocked), and stays
// alive while it is there, so no registry is involved. Usually it is the
// first one; one answered out of order costs a walk of the queue (the calls
// received and not answered yet). An invalid token (caller 0) names no
// thread. Inline: every reply asks it.
[[gnu::always_inline]] inline Thread* reply_target_locked(ReplyToken token, WaitQueue& waits_on) {
    Thread* caller = waits_on.front();
    if (caller == nullptr) return nullptr;
    if (caller->id() != token.caller) [[unlikely]] {
        if (!token.valid()) return nullptr;  // a receive that answers nothing
        caller = waits_on.find_if([&](const Thread& t) { return t.id() == token.caller; });
        if (caller == nullptr) return nullptr;
    }
    if (caller->ipc->call_seq != token.call) return nullptr;  // a later call of that thread
    MK_ASSERT(caller->ipc->op == IpcState::Op::ReplyWait && caller->waiting_on == &waits_on);
    return caller;
}

inline Thread* reply_target_locked(ReplyToken token, Thread& replier) {
    return reply_target_locked(token, replier.ipc->callers);
}

// Ends `t`'s operation with `result`: it leaves the queue it waits on and
// becomes Ready. Under t's home lock, and for a reply wait under the lock
// that guards it too (reply_wait_owner: the server's home lock, or the
// caller's own for a saved reply). A `reply` (with its payload from the
// current thread's IPC buffer) goes in first, under the same locks. Out
// of line (endpoint.cpp): the general path's round trip never ends a wait
// this way, and the locks' scope would cost it registers where it is
// inlined.
// `owner`: the thread whose callers queue t was found on (reply_wait_owner),
// null for a wait on an endpoint's queue. False, and nothing done, for a
// reply wait that is no longer that one (timed out, killed, answered)
// once the locks are held. `donate`: t, woken, is given the CPU
// (Scheduler::donate_locked: this CPU's donate target, or "wake there,
// now" on its own).
[[gnu::noinline]] bool complete_locked(Thread& t, const Thread* owner, Error result,
                                       const Message* reply = nullptr, Donate donate = Donate::No);
// The same with those locks held already.
void complete_at_home_locked(Thread& t, Error result, const Message* reply = nullptr,
                             Donate donate = Donate::No);

// Takes the first queued sender's message into `self` (a receive that found
// a partner). A plain sender is done; a caller now waits for the reply,
// moved from the endpoint's queue to self's callers queue.
inline Received take_from_sender_locked(Thread& self, Thread& sender, WaitQueue& senders) {
    IpcState& s = *sender.ipc;
    transfer(s.msg, s, s.badge, self, false);  // self runs: never at its frame
    Received r{self.ipc->msg, s.badge, {}};
    if (s.op == IpcState::Op::Call) {
        // Its wait moves to self's callers queue, which self's home lock
        // guards (held), and so does its wait lock (Thread::waiting_on),
        // written under its own home lock too.
        Scheduler::HomeLock home(sched(), sender);
        r.reply = ReplyToken{sender.id(), s.call_seq};
        senders.remove(sender);
        s.op = IpcState::Op::ReplyWait;
        sender.waiting_on = &self.ipc->callers;
        self.ipc->callers.push_back(sender);
        sched().assert_reply_wait_guarded(sender);
    } else {
        complete_locked(sender, nullptr, Error::None);
    }
    self.ipc->reply = r.reply;
    ++counters().receives;
    return r;
}

// Blocks `self` in operation `op` on `queue`; the result is left for finish_*.
inline void block_in_locked(Thread& self, IpcState::Op op, WaitQueue* queue, uint64_t timeout) {
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
inline Status finish_locked(Thread& self) {
    return self.ipc->result;
}

}  // namespace endpoint_detail

inline Notice* Endpoint::pop_notice_locked() {
    if (notices_.empty()) return nullptr;
    Notice& n = notices_.front();
    notices_.pop_front();
    ++endpoint_detail::counters().receives;
    return &n;
}

// --- call ---

inline Result<Message> Endpoint::call_inline(const Message& msg, uint64_t badge,
                                             uint64_t timeout_ticks, bool need_receiver,
                                             bool interrupts_off) {
    using namespace endpoint_detail;
    Scheduler& s = sched();
    IpcGuard guard(lock_, interrupts_off);
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
    // A receiver of another CPU: its home lock first (stable under this
    // CPU's lock: a move to or from this CPU needs it).
    if (receiver->cpu != self.cpu) [[unlikely]]
        return call_elsewhere_locked(self, *receiver, msg, badge, timeout_ticks);
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

    if (g_ipc_fast_path && s.donation_enabled() && msg.register_only()) {
        ++c.fastpath_hits;
        s.mark_current_blocked_locked(&receiver->ipc->callers, timeout_ticks);
        s.switch_to_locked(*receiver);
    } else {
        ++(!g_ipc_fast_path        ? c.fastpath_miss_disabled
           : !s.donation_enabled() ? c.fastpath_miss_donation_off
                                   : c.fastpath_miss_long_message);
        // Wake the receiver, donate to it (on this CPU), wait on its callers
        // queue.
        s.wake_and_block_inline(*receiver, &receiver->ipc->callers, timeout_ticks);
    }
    Status st = finish_locked(self);
    if (st != Error::None) return st;
    return self.ipc->msg;
}

// --- reply_recv ---

inline Result<Received> Endpoint::reply_recv_inline(ReplyToken token, const Message& reply,
                                                    uint64_t timeout_ticks, bool interrupts_off) {
    using namespace endpoint_detail;
    Scheduler& s = sched();
    {
        IpcGuard guard(lock_, interrupts_off);
        if (dead_) return Error::Destroyed;
        Thread& self = *s.current();
        if (self.exit_requested) return Error::Interrupted;  // killed: no new waits
        IpcCounters& c = counters();
        Thread* caller = reply_target_locked(token, self);
        if (token.valid() && caller == nullptr) ++c.stale_replies;
        // A caller of another CPU (stable under this CPU's lock: a move to or
        // from this CPU needs it): the reply and the receive apart.
        if (caller != nullptr && caller->cpu != self.cpu) [[unlikely]] {
            ++(!g_ipc_fast_path        ? c.fastpath_miss_disabled
               : !s.donation_enabled() ? c.fastpath_miss_donation_off
                                       : c.fastpath_miss_other_cpu);
            goto elsewhere;  // the guard released
        }
        Thread* sender = senders_.front();

        if (caller != nullptr && g_ipc_fast_path && s.donation_enabled() && reply.register_only() &&
            sender == nullptr && notices_.empty()) {
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
                ++(!g_ipc_fast_path         ? c.fastpath_miss_disabled
                   : !s.donation_enabled()  ? c.fastpath_miss_donation_off
                   : !reply.register_only() ? c.fastpath_miss_long_message
                                            : c.fastpath_miss_sender_pending);
                transfer(reply, *self.ipc, 0, *caller, false);
                ++c.replies;
                // The caller's operation ends here, and it leaves this thread's
                // callers queue, under this CPU's lock: its home lock, and the
                // guard of that queue. Once its op is no longer ReplyWait
                // nothing names that guard (reply_wait_owner). Its wake follows
                // below, with the hand-off or the block.
                caller->ipc->op = IpcState::Op::None;
                caller->ipc->result = Error::None;
                caller->waiting_on->remove(*caller);
                caller->waiting_on = nullptr;
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
                s.wake_and_block_inline(*caller, &receivers_, timeout_ticks);
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
elsewhere:
    return reply_then_recv(token, reply, timeout_ticks);
}

}  // namespace mk
