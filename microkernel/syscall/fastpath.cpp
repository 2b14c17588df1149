// The syscall fast path (docs/ipc.md, "The syscall fast path").
//
// `call` to a receiver that is waiting, and `reply_recv` answering a caller
// that is waiting, with a register-only message (a label and four words),
// are the whole of a client/server round trip. The entry stub
// (arch/x86_64/syscall.S) hands them here before anything else. The fast
// path checks its conditions, cheapest first; any miss returns to the stub,
// which takes the general path (decode, perform) as if nothing happened.
// Past the point of no return it cannot fail: it writes the status, badge
// and message info into the partner's saved user registers, blocks the
// caller of the syscall where it stands, and switches to the partner without
// the ready queue (a donation: the partner runs on the rest of the quantum),
// changing the address space only if it differs. The stub then returns to
// user mode as the partner, the message words passing through in registers.
//
// Both sides live "at the frame" (Thread::at_frame): a thread blocked in an
// IPC syscall with nothing on its kernel stack but its user registers. The
// fast path resumes such a partner by returning to user mode from its frame;
// the general path resumes it through mk_resume_at_frame(), which completes
// the syscall from its IpcState. So the fast path and the general path can
// each wake what the other blocked.
//
// Locking: interrupts are off from the `syscall` instruction on. The fast
// path takes the caller's handle-table lock and then the scheduler lock (the
// documented order), without the held-lock bookkeeping (SpinLock::lock_raw);
// the table lock covers every use of the endpoint the handle names, and the
// scheduler lock is handed to the stub, which releases it once the CPU is
// on the partner's stack (no other CPU may resume the blocked thread on its
// own stack before this CPU has left it).
#include "fastpath.hpp"

#include "endpoint.hpp"
#include "mk/abi.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "process.hpp"
#include "scheduler.hpp"
#include "thread.hpp"

namespace mk {

class FastPath {
  public:
    // Flattened: every helper on the hot path, down to the list operations,
    // is inlined into each path, whatever the inlining heuristics would choose
    // (the rare ones, a timeout to cancel or an FS base to load, are calls).
    [[gnu::flatten]] static FastPathExit call(PerCpu& cpu, TrapFrame& f);
    [[gnu::flatten]] static FastPathExit reply_recv(PerCpu& cpu, TrapFrame& f);

  private:
    static constexpr FastPathExit kMiss{nullptr, nullptr};

    // What a message must be for the fast path: no payload, no handles, no
    // reserved bit, a label user code may send, and no timeout; a0 a handle.
    // One compare covers the info word: below the notice labels, every bit
    // above the label (length, handles, reserved) is 0.
    static bool message_ok(const TrapFrame& f) {
        return f.rsi < abi::kNoticeLabelBase && f.r12 == abi::kForever && f.rdi - 1 < UINT32_MAX;
    }

    // The endpoint handle a0 names with `right`, or null; with the table
    // locked on success (it keeps the endpoint alive while we use it).
    // The table's own lookup (HandleTable::find_locked), then the type and
    // the right, as HandleTable::lookup() checks them.
    static Endpoint* endpoint(HandleTable& table, uint64_t handle, uint32_t right,
                              uint64_t* badge) {
        table.lock_.lock_raw();
        const HandleTable::Slot* s = table.find_locked(HandleValue(handle));
        if (s == nullptr || s->object->type() != ObjectType::Endpoint || (s->rights & right) == 0) {
            table.lock_.unlock_raw();
            return nullptr;
        }
        *badge = s->badge;
        return static_cast<Endpoint*>(s->object);
    }

    static FastPathExit miss(PerCpu& cpu) {
        ++cpu.ipc.syscall_fastpath_misses;
        return kMiss;
    }

    // The current thread blocks on `queue` (no timeout), at its frame.
    static void block_current(Thread& self, WaitQueue& queue) {
        self.at_frame = true;
        self.state = ThreadState::Blocked;
        self.wake_reason = WakeReason::None;
        self.block_armed = false;
        self.wake_pending = false;
        self.waiting_on = &queue;
        queue.push_back(self);
    }

    // Runs `next` (Blocked at its frame, its wait just ended) in place of
    // `self` (Blocked now): the scheduler's part of a direct switch, then the
    // CPU's. Returns where the stub leaves for user mode.
    static FastPathExit switch_to(PerCpu& cpu, Scheduler& s, Thread& self, Thread& next) {
        if (next.timeout_hook.is_linked()) s.cancel_timeout_locked(next);
        next.at_frame = false;
        next.wake_reason = WakeReason::Woken;
        next.state = ThreadState::Running;
        s.current_ = &next;
        s.donate_target_ = nullptr;
        // A block, a wake and a direct switch, counted as the scheduler
        // counts them; the endpoint counters count it once, as a hit.
        SchedCounters& c = s.counters_;
        ++c.blocks;
        ++c.wakeups;
        ++c.direct_switches;
        ++c.switches;
        ++cpu.ipc.syscall_fastpath_hits;
        Cpu::load_context(self.context, next.context);
        return FastPathExit{&Cpu::syscall_frame(next.context), s.lock_.word()};
    }
};

FastPathExit FastPath::call(PerCpu& cpu, TrapFrame& f) {
    Scheduler& s = cpu.scheduler;
    if (!message_ok(f) || !ipc_fast_path() || !s.donation_enabled()) return miss(cpu);
    Thread& self = *s.current_;
    HandleTable& table = self.process->handles();
    uint64_t badge;
    Endpoint* ep = endpoint(table, f.rdi, abi::kRightSend, &badge);
    if (ep == nullptr) return miss(cpu);
    s.lock_.lock_raw();
    Thread* server = ep->receivers_.front();
    // A waiting receiver has taken every queued notice and sender already.
    // One that still holds an unanswered call (a plain Recv) would drop it:
    // the general path does that. A killed one is never left on a queue
    // (kill wakes it), nor can a killed caller block.
    if (server == nullptr || !server->at_frame || server->ipc->reply.valid() ||
        server->exit_requested || self.exit_requested) {
        s.lock_.unlock_raw();
        table.lock_.unlock_raw();
        return miss(cpu);
    }

    // The point of no return. The server receives the call...
    ep->receivers_.remove(*server);
    server->waiting_on = nullptr;
    server->ipc->endpoint_ref.leak()->release_not_last();  // the caller's handle holds one
    table.lock_.unlock_raw();
    IpcState& sipc = *server->ipc;
    IpcState& cipc = *self.ipc;
    sipc.reply = ReplyToken{self.id(), ++cipc.call_seq};
    sipc.op = IpcState::Op::None;
    sipc.result = Error::None;
    sipc.user_op = IpcState::UserOp::None;
    TrapFrame& to = Cpu::syscall_frame(server->context);
    to.rax = uint64_t(abi::Err::Ok);
    to.rdi = badge;
    to.rsi = f.rsi | abi::MsgInfo{0, 0, 0, true}.encode();  // the words stay in registers
    // ...and the caller waits for the reply on its callers queue.
    cipc.op = IpcState::Op::ReplyWait;
    cipc.result = Error::WouldBlock;
    cipc.user_op = IpcState::UserOp::Call;
    block_current(self, sipc.callers);
    return switch_to(cpu, s, self, *server);
}

FastPathExit FastPath::reply_recv(PerCpu& cpu, TrapFrame& f) {
    Scheduler& s = cpu.scheduler;
    if (!message_ok(f) || !ipc_fast_path() || !s.donation_enabled()) return miss(cpu);
    Thread& self = *s.current_;
    IpcState& sipc = *self.ipc;
    ReplyToken token = sipc.reply;
    if (!token.valid()) return miss(cpu);
    HandleTable& table = self.process->handles();
    uint64_t badge;
    Endpoint* ep = endpoint(table, f.rdi, abi::kRightReceive, &badge);
    if (ep == nullptr) return miss(cpu);
    s.lock_.lock_raw();
    // The caller the token names, still waiting for this very reply: the
    // oldest on this thread's callers queue (the only one, unless the server
    // keeps calls waiting there; any other takes the general path), so
    // Blocked in ReplyWait; at its frame, and holding no reference the
    // fast path could not drop: a caller that queued on the endpoint before
    // a receiver came still holds its call's reference to it, which is no
    // last one if it is this endpoint (this thread's handle holds another).
    // And nothing waiting on the endpoint, which the receive would take.
    Thread* caller = sipc.callers.front();
    if (caller == nullptr || caller->id() != token.caller || caller->ipc->call_seq != token.call ||
        !caller->at_frame || (caller->ipc->endpoint_ref && caller->ipc->endpoint_ref.get() != ep) ||
        !ep->senders_.empty() || !ep->notices_.empty() || ep->dead_ || caller->exit_requested ||
        self.exit_requested) {
        s.lock_.unlock_raw();
        table.lock_.unlock_raw();
        return miss(cpu);
    }

    // The point of no return. The caller takes the reply...
    sipc.reply = {};
    sipc.callers.remove(*caller);
    caller->waiting_on = nullptr;
    IpcState& cipc = *caller->ipc;
    if (cipc.endpoint_ref) cipc.endpoint_ref.leak()->release_not_last();
    cipc.op = IpcState::Op::None;
    cipc.result = Error::None;
    cipc.user_op = IpcState::UserOp::None;
    TrapFrame& to = Cpu::syscall_frame(caller->context);
    to.rax = uint64_t(abi::Err::Ok);
    to.rdi = 0;
    to.rsi = f.rsi;  // the words stay in registers (syscall.S)
    // ...and this thread waits for the next message on the endpoint, holding
    // its reference as the general path's receive does.
    sipc.op = IpcState::Op::Recv;
    sipc.result = Error::WouldBlock;
    sipc.user_op = IpcState::UserOp::Recv;
    sipc.superseded = {};
    MK_ASSERT(!sipc.endpoint_ref);  // complete_ipc() dropped the last one's
    sipc.endpoint_ref = Ref<KObject>::retain(ep);
    block_current(self, ep->receivers_);
    table.lock_.unlock_raw();
    return switch_to(cpu, s, self, *caller);
}

}  // namespace mk

extern "C" mk::FastPathExit mk_fastpath(mk::TrapFrame* frame) {
    mk::PerCpu& cpu = mk::this_cpu();
    return frame->rax == uint64_t(mk::abi::Sys::Call) ? mk::FastPath::call(cpu, *frame)
                                                      : mk::FastPath::reply_recv(cpu, *frame);
}
