// The syscall fast path (docs/ipc.md, "The syscall fast path").
//
// `call` to a receiver that is waiting, and `reply_recv` answering a caller
// that is waiting, with a message of a label, four words and a payload (no
// handles), are the whole of a client/server round trip. The entry stub
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
// path takes the caller's handle-table lock, the lock of the endpoint the
// handle names (none for Reply and ReplySave: a reply wait is guarded by
// scheduler locks) and then this CPU's scheduler lock (the documented
// order), without the held-lock bookkeeping (SpinLock::lock_raw); the table
// lock keeps the endpoint alive until it is let go, and after it the
// endpoint's lock does (Endpoint::free_object waits for it). It lets go of
// the endpoint's lock once the IPC state is written, as a switch does
// (Scheduler::enter_switch_locked), and touches the endpoint no more; the scheduler lock
// is handed to the stub, which releases it once the CPU is on the partner's
// stack (no other CPU may resume the blocked thread on its own stack before
// this CPU has left it).
#include "fastpath.hpp"

#include "endpoint.hpp"
#include "mk/abi.hpp"
#include "object/reply.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "process.hpp"
#include "scheduler.hpp"
#include "syscall/fastpath_layout.hpp"
#include "syscall/internal.hpp"
#include "thread.hpp"

namespace mk {

// The entry stub's fast exit does not check the partner's RIP (syscall.S,
// FAST_EXIT): the RIP after a `syscall` in a user page is in the user half.
static_assert(abi::kUserEnd < uint64_t{1} << 47, "user pages end below the non-canonical hole");

class FastPath {
  public:
    // Inlined into the entry points below, which are flattened: every
    // helper on the hot path, down to the list operations, is inlined,
    // whatever the inlining heuristics would choose (the rare ones, a
    // timeout to cancel or an FS base to load, are calls).
    // With `queue` (mk_fastpath_queue_call), a Call that finds no receiver
    // waiting queues (queue_call()), and one that finds one misses;
    // without, the other way round. (A constant where it is inlined.)
    [[gnu::always_inline]] static FastPathExit call(TrapFrame& f, bool queue);
    [[gnu::always_inline]] static FastPathExit reply_recv(TrapFrame& f);
    [[gnu::always_inline]] static FastPathExit reply(TrapFrame& f);
    [[gnu::always_inline]] static FastPathExit reply_save(TrapFrame& f);
    [[gnu::always_inline]] static FastPathExit recv(TrapFrame& f);

  private:
#ifndef MK_HOST
    // What syscall.S's assembly of Call and ReplyRecv reads and writes
    // (syscall/fastpath_layout.hpp), checked against the objects: never
    // called, evaluated in the kernel's build.
    static void check_assembly_layout();
#endif
#ifdef MK_HOST
  public:
    // mk_fastpath_stub_queues().
    static bool stub_queues(const TrapFrame& f);

  private:
#endif
    static FastPathExit reply_and_take(TrapFrame& f, Scheduler& s, HandleTable& table, Endpoint& ep,
                                       Thread& self, Thread& caller, Thread& sender,
                                       uint32_t length);
    static FastPathExit queue_call(TrapFrame& f, PerCpu& cpu, HandleTable& table, Thread& self,
                                   Endpoint& ep, uint64_t badge, uint32_t length);

  private:
    static constexpr FastPathExit kMiss{nullptr};

    // What a message must be for the fast path: a label user code may send,
    // at most kMaxPayload payload bytes, no handles, no reserved bit. The
    // info word's upper half is the length, then the handle count and
    // reserved bits: at most kMaxPayload (below 1 << 10), it is a length
    // alone. (a0 is checked by endpoint().) Sets *length. What Reply checks;
    // Call and ReplyRecv, which may block, add timeout_ok().
    static bool message_ok(const TrapFrame& f, uint32_t* length) {
        uint64_t upper = f.rsi >> 32;
        *length = uint32_t(upper);
        return uint32_t(f.rsi) < abi::kNoticeLabelBase && upper <= abi::kMaxPayload;
    }
    // No timeout: the fast path arms none.
    static bool timeout_ok(const TrapFrame& f) {
        return f.r12 == abi::kForever;
    }

    // The message a fast syscall sends, from its registers into `m`: the
    // label, the four words, `length` payload bytes (in the IPC buffer), no
    // handles. For a message that waits in IpcState rather than going
    // straight into the partner's registers.
    static void read_message(const TrapFrame& f, uint32_t length, Message& m) {
        m.label = uint32_t(f.rsi);
        m.words[0] = f.rdx;
        m.words[1] = f.r10;
        m.words[2] = f.r8;
        m.words[3] = f.r9;
        m.length = length;
        m.handle_count = 0;
    }
    // A payload needs the sender's IPC buffer page, as the general path
    // checks (BadState without one): a thread that registered none misses.
    static bool payload_ok(const IpcState& sender, uint32_t length) {
        return length == 0 || sender.user_buffer != 0;
    }

    // The payload, from the sender's IPC buffer to the receiver's, through
    // the kernel's addresses of both (Thread::IpcState::buffer): eight bytes
    // at a time, then the rest.
    static void copy_payload(const IpcState& from, IpcState& to, uint64_t length) {
        unsigned char* dst = to.buffer;
        const unsigned char* src = from.buffer;
        uint64_t words = length / 8;
        uint64_t bytes = length % 8;
        asm volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(words)::"memory");
        asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(bytes)::"memory");
    }

    // The endpoint handle a0 names with `right`, or null; with the table
    // locked on success (it keeps the endpoint alive while we use it).
    // HandleTable::find_locked() on the whole 64-bit a0 (a value with bits
    // above the generation matches no slot; the general path refuses it
    // too), then the type and the right, as HandleTable::lookup() checks.
    static Endpoint* endpoint(HandleTable& table, uint64_t handle, uint32_t right,
                              uint64_t* badge) {
        table.lock_.lock_raw();
        const HandleTable::Slot* s = table.find_locked(handle);
        if (s == nullptr || (s->rights & right) == 0 || s->type != ObjectType::Endpoint) {
            table.lock_.unlock_raw();
            return nullptr;
        }
        *badge = s->badge;
        return static_cast<Endpoint*>(s->object);
    }

    [[gnu::cold]] static FastPathExit miss() {
        ++this_cpu().ipc.syscall_fastpath_misses;
        return kMiss;
    }
    // The endpoint's lock (null: none, for a reply wait, which this CPU's
    // scheduler lock guards) and the scheduler lock, after the table lock.
    static void lock(Scheduler& s, Endpoint* ep) {
        if (ep != nullptr) ep->lock_.lock_raw();
        s.lock_.lock_raw();
    }
    // The IPC state is written: what a switch does first. The endpoint is
    // used no more after it (Endpoint::free_object waits for its lock).
    static void unlock_ipc(Endpoint* ep) {
        if (ep != nullptr) ep->lock_.unlock_raw();
    }
    // A miss found under the locks: released in reverse order.
    static FastPathExit unlock_and_miss(Scheduler& s, HandleTable& table, Endpoint* ep) {
        s.lock_.unlock_raw();
        unlock_ipc(ep);
        table.lock_.unlock_raw();
        return miss();
    }

    // The caller of `replier` takes the reply in f (status Ok, r0 0, the
    // info; the words stay in registers, syscall.S) and its payload: its
    // wait ends, unlinked from the queue it waits on. Its call's endpoint
    // reference, if any, is the caller of this one's to drop.
    static void answer(Thread& caller, const TrapFrame& f, const IpcState& replier,
                       uint32_t length) {
        WaitQueue::unlink(caller);
        caller.waiting_on = nullptr;
        IpcState& cipc = *caller.ipc;
        set_op(cipc, IpcState::Op::None, Error::None, IpcState::UserOp::None);
        TrapFrame& to = Cpu::syscall_frame(caller.context);
        to.rax = uint64_t(abi::Err::Ok);
        to.rdi = 0;
        to.rsi = f.rsi;
        if (length != 0) copy_payload(replier, cipc, length);
    }

    // The current thread blocks on `queue` (no timeout), at its frame: what
    // Scheduler::mark_current_blocked_locked() does. Every field is written,
    // in memory order, so that the compiler merges the stores; block_armed
    // and wake_pending are false in a thread making a syscall, and
    // exit_requested was found false under this lock.
    static void block_current(Thread& self, WaitQueue& queue) {
        self.waiting_on = &queue;
        set_state(self, WakeReason::None, ThreadState::Blocked, true);
        queue.link_back(self);
    }

    // Thread's word of scheduler state (wake_reason to spare_), in one store.
    // block_armed, wake_pending and lent_quantum are false in a thread
    // blocked or making a syscall, and exit_requested was found false under
    // this lock.
    static void set_state(Thread& t, WakeReason reason, ThreadState state, bool at_frame) {
        t.wake_reason = reason;
        t.state = state;
        t.at_frame = at_frame;
        t.block_armed = false;
        t.wake_pending = false;
        t.exit_requested = false;
        t.lent_quantum = false;
        t.spare_ = 0;
    }

    // An IpcState's op, result and user_op, in one store.
    static void set_op(IpcState& ipc, IpcState::Op op, Error result, IpcState::UserOp user_op) {
        ipc.op = op;
        ipc.result = result;
        ipc.user_op = user_op;
        ipc.spare_ = 0;
    }

    // The thread Scheduler::schedule_locked() would run once the current
    // thread blocks — the front of the hand-off queue, else of the ready
    // queue — if the fast path can finish its syscall as
    // mk_resume_at_frame() would: a user thread that gave its stack up
    // blocked at its frame in an IPC syscall, whose operation completed
    // with no error, no handles to deliver and no superseded call to drop,
    // and that was not asked to exit. Null otherwise, and with a donation
    // target set or the quantum used up, which schedule_locked() treats
    // apart. Its endpoint reference, if any, the caller drops as the last
    // check (release_if_not_last()).
    static Thread* next_resumable(Scheduler& s) {
        if (s.donate_target_ != nullptr || s.quantum_left_ == 0) return nullptr;
        Thread* next = s.handoff_.first_or_null();
        if (next == nullptr) next = s.ready_.first_or_null();
        if (next == nullptr || !next->at_frame || !Cpu::resumes_at_frame(next->context) ||
            next->exit_requested)
            return nullptr;
        const IpcState& n = *next->ipc;
        bool receives = n.user_op == IpcState::UserOp::Call || n.user_op == IpcState::UserOp::Recv;
        if (n.op != IpcState::Op::None || n.result != Error::None || n.superseded.valid() ||
            (receives && n.msg.handle_count != 0))
            return nullptr;
        return next;
    }

    // Runs `next` (next_resumable(), its endpoint reference dropped) in
    // place of `self` (Blocked at its frame): what schedule_locked() picks
    // and switch_locked() changes, then what mk_resume_at_frame() and
    // complete_ipc() write into its frame — Ok and, after a Call or a Recv,
    // the message in its IpcState (its payload is in its IPC buffer
    // already). The stub returns to user mode with every register from that
    // frame (RESUME_EXIT). Lets go of the endpoint's lock (`ep`) once that
    // state is read, as a switch does.
    static FastPathExit resume(PerCpu& cpu, Thread& self, Thread& next, Endpoint* ep) {
        Scheduler& s = cpu.scheduler;
        bool lent = next.lent_quantum;
        WaitQueue::unlink(next);  // the front of the hand-off or ready queue
        if (!lent)
            s.quantum_left_ = Scheduler::kQuantumTicks;  // only the hand-off queue shares one
        s.need_resched_ = false;
        IpcState& n = *next.ipc;
        TrapFrame& to = Cpu::syscall_frame(next.context);
        to.rax = uint64_t(abi::Err::Ok);
        if (n.user_op == IpcState::UserOp::Call) {
            syscall::deliver_registers(to, n.msg, 0, 0, false);
        } else if (n.user_op == IpcState::UserOp::Recv) {
            syscall::deliver_registers(to, n.msg, 0, n.badge, n.reply.valid());
        }
        n.user_op = IpcState::UserOp::None;
        unlock_ipc(ep);  // its IPC state is read
        next.state = ThreadState::Running;
        next.at_frame = false;
        next.lent_quantum = false;
        __atomic_store_n(&s.current_, &next, __ATOMIC_RELAXED);  // another CPU may look
        Cpu::load_user_context(cpu.arch, self.context, next.context);
        return FastPathExit{&to};
    }

    // Runs `next` (Blocked at its frame, its wait just ended, on no queue)
    // in place of `self` (Blocked, or Ready on the hand-off queue, now): what
    // Scheduler::switch_to_locked() does, then the CPU's part. Returns where the stub leaves for
    // user mode. The IPC state is written: it lets go of the endpoint's
    // lock (`ep`; null: none) first, as a switch does.
    static FastPathExit switch_to(PerCpu& cpu, Thread& self, Thread& next, Endpoint* ep) {
        unlock_ipc(ep);  // the IPC state is written
        Scheduler& s = cpu.scheduler;
        if (next.timeout_hook.is_linked()) [[unlikely]]
            s.cancel_timeout_locked(next);
        set_state(next, WakeReason::Woken, ThreadState::Running, false);
        // A donate target is left alone: one of another CPU, whose
        // interrupt runs it (Scheduler::preempt_locked).
        __atomic_store_n(&s.current_, &next, __ATOMIC_RELAXED);
        Cpu::load_user_context(cpu.arch, self.context, next.context);
        return FastPathExit{&Cpu::syscall_frame(next.context)};
    }
};

#ifndef MK_HOST
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"  // GCC lays these classes out in order
inline void FastPath::check_assembly_layout() {
    constexpr size_t sched = offsetof(PerCpu, scheduler);
    constexpr size_t arch = offsetof(PerCpu, arch);
    static_assert(PERCPU_KSTACK ==
                  offsetof(PerCpu, entry) + offsetof(EntryScratch, kernel_stack_top));
    static_assert(PERCPU_SCHED_LOCK == sched + offsetof(Scheduler, lock_));
    static_assert(PERCPU_CURRENT == sched + offsetof(Scheduler, current_));
    static_assert(PERCPU_FAST_SWITCHES == sched + offsetof(Scheduler, fast_switches_) &&
                  sizeof(Scheduler::fast_switches_) == 8);
    static_assert(PERCPU_SYSCALL_FASTPATH_MISSES ==
                      offsetof(PerCpu, ipc) + offsetof(IpcCounters, syscall_fastpath_misses) &&
                  sizeof(IpcCounters::syscall_fastpath_misses) == 8);
    static_assert(PERCPU_LOADED_ROOT == arch + offsetof(Cpu::SwitchState, loaded_root));
    static_assert(PERCPU_LOADED_FS_KEY == arch + offsetof(Cpu::SwitchState, loaded_fs_key));
    static_assert(PERCPU_FPU_OWNER == arch + offsetof(Cpu::SwitchState, fpu_owner));
    static_assert(PERCPU_TS_SET == arch + offsetof(Cpu::SwitchState, ts_set));
    static_assert(PERCPU_PCID_ON == arch + offsetof(Cpu::SwitchState, pcid_on));
    static_assert(PERCPU_CR0_TS == arch + offsetof(Cpu::SwitchState, cr0_ts));

    static_assert(THREAD_QUEUE_HOOK == offsetof(Thread, queue_hook));
    static_assert(sizeof(QueueHook) == 16 && offsetof(bi::list_node<void*>, next_) == 0 &&
                  offsetof(bi::list_node<void*>, prev_) == 8);
    static_assert(THREAD_WAITING_ON == offsetof(Thread, waiting_on));
    static_assert(THREAD_STATE_WORD == offsetof(Thread, wake_reason));
    static_assert(THREAD_AT_FRAME == offsetof(Thread, at_frame) &&
                  THREAD_AT_FRAME + 1 == offsetof(Thread, block_armed) &&
                  THREAD_AT_FRAME + 2 == offsetof(Thread, wake_pending) &&
                  THREAD_AT_FRAME + 3 == offsetof(Thread, exit_requested));
    static_assert(THREAD_EXIT_REQUESTED == offsetof(Thread, exit_requested));
    static_assert(THREAD_CPU == offsetof(Thread, cpu) && sizeof(Thread::cpu) == 4);
    static_assert(THREAD_STATE_WORD + 6 == offsetof(Thread, lent_quantum) &&
                  THREAD_STATE_WORD + 7 == offsetof(Thread, spare_));
    static_assert(THREAD_TIMEOUT_HOOK == offsetof(Thread, timeout_hook) &&
                  offsetof(bi::rbtree_node<void*>, parent_) == 0);
    static_assert(THREAD_CONTEXT == offsetof(Thread, context) &&
                  offsetof(Cpu::Context, rsp) == 0);  // also the context's address
    static_assert(THREAD_KERNEL_STACK_TOP ==
                  offsetof(Thread, context) + offsetof(Cpu::Context, kernel_stack_top));
    static_assert(THREAD_ROOT == offsetof(Thread, context) + offsetof(Cpu::Context, root));
    static_assert(THREAD_FS_KEY == offsetof(Thread, context) + offsetof(Cpu::Context, fs_key));
    static_assert(THREAD_IPC_STATE == kThreadIpcStateOffset);
    static_assert(THREAD_HANDLES == offsetof(Thread, handles));
    static_assert(THREAD_ID == offsetof(Thread, id_));
    static_assert(STATE_BLOCKED_AT_FRAME == (uint32_t(ThreadState::Blocked) << 8 | 1u << 16) &&
                  uint32_t(WakeReason::None) == 0);
    static_assert(STATE_WOKEN_RUNNING ==
                  (uint32_t(ThreadState::Running) << 8 | uint32_t(WakeReason::Woken)));

    static_assert(IPC_OP == offsetof(IpcState, op) && offsetof(IpcState, result) == 1 &&
                  offsetof(IpcState, user_op) == 2 && offsetof(IpcState, spare_) == 3);
    static_assert(IPC_REPLY_CALLER == offsetof(IpcState, reply) + offsetof(ReplyToken, caller));
    static_assert(IPC_REPLY_CALL == offsetof(IpcState, reply) + offsetof(ReplyToken, call));
    static_assert(IPC_CALL_SEQ == offsetof(IpcState, call_seq));
    static_assert(IPC_CALLERS == offsetof(IpcState, callers) && sizeof(WaitQueue) == 16);
    static_assert(IPC_ENDPOINT_REF == offsetof(IpcState, endpoint_ref) &&
                  sizeof(Ref<KObject>) == 8);
    static_assert(offsetof(ReplyToken, caller) == 0 && offsetof(ReplyToken, call) == 8);
    static_assert(OP_REPLY_WAIT_CALL ==
                  (uint32_t(IpcState::Op::ReplyWait) | uint32_t(Error::WouldBlock) << 8 |
                   uint32_t(IpcState::UserOp::Call) << 16));
    static_assert(OP_RECV_WAIT == (uint32_t(IpcState::Op::Recv) | uint32_t(Error::WouldBlock) << 8 |
                                   uint32_t(IpcState::UserOp::Recv) << 16));
    static_assert(uint32_t(IpcState::Op::None) == 0 && uint32_t(Error::None) == 0 &&
                  uint32_t(IpcState::UserOp::None) == 0);

    static_assert(KOBJECT_REFS == offsetof(KObject, refs_));
    static_assert(OBJECT_TYPE_ENDPOINT == uint32_t(ObjectType::Endpoint));
    static_assert(ENDPOINT_SENDERS == offsetof(Endpoint, senders_));
    static_assert(ENDPOINT_RECEIVERS == offsetof(Endpoint, receivers_));
    static_assert(ENDPOINT_LOCK == offsetof(Endpoint, lock_));  // its word first (SpinLock::word)
    // The notices' size is their list's first word (host-tested).
    static_assert(ENDPOINT_DEAD_AND_NOTICES == offsetof(Endpoint, dead_) &&
                  sizeof(Endpoint::dead_) == 4 &&
                  ENDPOINT_DEAD_AND_NOTICES + 4 == offsetof(Endpoint, notices_));

    static_assert(TABLE_LOCK == offsetof(HandleTable, lock_));
    static_assert(TABLE_SLOTS == offsetof(HandleTable, slots_));
    static_assert(TABLE_CAPACITY == offsetof(HandleTable, capacity_) &&
                  sizeof(HandleTable::capacity_) == 4);
    static_assert(sizeof(HandleTable::Slot) == 1u << SLOT_SHIFT);
    static_assert(SLOT_OBJECT == offsetof(HandleTable::Slot, object));
    static_assert(SLOT_BADGE == offsetof(HandleTable::Slot, badge));
    static_assert(SLOT_KEY == offsetof(HandleTable::Slot, key) &&
                  sizeof(HandleTable::Slot::key) == 4);
    static_assert(SLOT_RIGHTS == offsetof(HandleTable::Slot, rights));
    static_assert(SLOT_STATE == offsetof(HandleTable::Slot, state));
    static_assert(SLOT_TYPE == offsetof(HandleTable::Slot, type) && sizeof(ObjectType) == 1 &&
                  offsetof(HandleTable::Slot, tracker) == SLOT_TYPE + 2);  // and a byte of padding
    static_assert(SLOT_USED == uint32_t(HandleTable::SlotState::Used));
    static_assert(RIGHT_SEND == abi::kRightSend && RIGHT_RECEIVE == abi::kRightReceive);
    static_assert(uint64_t(abi::Err::Ok) == 0 && abi::kForever == ~uint64_t{0});
    // The frame at the top of the kernel stack (frame.inc's offsets, which
    // trap_frame.hpp checks field by field).
    static_assert(sizeof(TrapFrame) == 176);

    static_assert(FAST_INFO_MAX == abi::kNoticeLabelBase - 1);
    static_assert(uint64_t{1} << INFO_CALL_BIT == abi::MsgInfo{0, 0, 0, true}.encode());
}
#pragma GCC diagnostic pop
#endif

inline FastPathExit FastPath::call(TrapFrame& f, bool queue) {
    PerCpu& cpu = this_cpu();
    Scheduler& s = cpu.scheduler;
    uint32_t length;
    if (!message_ok(f, &length) || !timeout_ok(f) || !ipc_fast_switch()) return miss();
    Thread& self = *s.current_;
    if (!payload_ok(*self.ipc, length)) return miss();
    HandleTable& table = self.process->handles();
    uint64_t badge;
    Endpoint* ep = endpoint(table, f.rdi, abi::kRightSend, &badge);
    if (ep == nullptr) return miss();
    lock(s, ep);
    Thread* server = ep->receivers_.first_or_null();
    if (queue) {
        // (A receiver may have come, from another CPU, since the stub's
        // assembly found none: the general path serves it.)
        if (server != nullptr) return unlock_and_miss(s, table, ep);
        return queue_call(f, cpu, table, self, *ep, badge, length);
    } else if (server == nullptr) {
        return unlock_and_miss(s, table, ep);  // syscall.S queues it (mk_fastpath_queue_call)
    }
    // A waiting receiver has taken every queued notice and sender already.
    // One that still holds an unanswered call (a plain Recv) would drop it:
    // the general path does that. A killed one is never left on a queue
    // (kill wakes it), nor can a killed caller block. One homed on another
    // CPU is woken there, by the general path.
    if (!server->at_frame || server->ipc->reply.valid() || server->exit_requested ||
        self.exit_requested || server->cpu != self.cpu) {
        return unlock_and_miss(s, table, ep);
    }

    // The point of no return. The server receives the call...
    WaitQueue::unlink(*server);
    server->waiting_on = nullptr;
    IpcState& sipc = *server->ipc;
    sipc.endpoint_ref.leak()->release_not_last();  // the caller's handle holds one
    table.lock_.unlock_raw();
    IpcState& cipc = *self.ipc;
    set_op(sipc, IpcState::Op::None, Error::None, IpcState::UserOp::None);
    sipc.reply = ReplyToken{self.id(), ++cipc.call_seq};
    TrapFrame& to = Cpu::syscall_frame(server->context);
    to.rax = uint64_t(abi::Err::Ok);
    to.rdi = badge;
    to.rsi = f.rsi | abi::MsgInfo{0, 0, 0, true}.encode();  // the words stay in registers
    if (length != 0) copy_payload(cipc, sipc, length);
    // ...and the caller waits for the reply on its callers queue.
    set_op(cipc, IpcState::Op::ReplyWait, Error::WouldBlock, IpcState::UserOp::Call);
    block_current(self, sipc.callers);
    // A block, a wake, a direct switch and a switch, and a hit: counted
    // once (Scheduler::counters() and ipc_counters() add it in).
    ++s.fast_switches_;
    return switch_to(cpu, self, *server, ep);
}

inline FastPathExit FastPath::reply_recv(TrapFrame& f) {
    PerCpu& cpu = this_cpu();
    Scheduler& s = cpu.scheduler;
    uint32_t length;
    if (!message_ok(f, &length) || !timeout_ok(f) || !ipc_fast_switch()) return miss();
    Thread& self = *s.current_;
    IpcState& sipc = *self.ipc;
    ReplyToken token = sipc.reply;
    if (!token.valid() || !payload_ok(sipc, length)) return miss();
    HandleTable& table = self.process->handles();
    uint64_t badge;
    Endpoint* ep = endpoint(table, f.rdi, abi::kRightReceive, &badge);
    if (ep == nullptr) return miss();
    lock(s, ep);
    // The caller the token names, still waiting for this very reply: the
    // oldest on this thread's callers queue (the only one, unless the server
    // keeps calls waiting there; any other takes the general path), so
    // Blocked in ReplyWait; at its frame, and holding no reference the
    // fast path could not drop: a caller that queued on the endpoint before
    // a receiver came still holds its call's reference to it, which is no
    // last one if it is this endpoint (this thread's handle holds another).
    // And nothing waiting on the endpoint, which the receive would take; and
    // a caller homed on this CPU (another one's is woken there).
    Thread* caller = sipc.callers.first_or_null();
    if (caller == nullptr || caller->id() != token.caller || caller->ipc->call_seq != token.call ||
        !caller->at_frame || ep->notices_.size() != 0 || ep->dead_ || caller->exit_requested ||
        self.exit_requested || caller->cpu != self.cpu) {
        return unlock_and_miss(s, table, ep);
    }
    if (Thread* sender = ep->senders_.first_or_null()) [[unlikely]]
        return reply_and_take(f, s, table, *ep, self, *caller, *sender, length);
    if (caller->ipc->endpoint_ref && caller->ipc->endpoint_ref.get() != ep) {
        return unlock_and_miss(s, table, ep);
    }

    // The point of no return. The caller takes the reply...
    if (caller->ipc->endpoint_ref) [[unlikely]]
        caller->ipc->endpoint_ref.leak()->release_not_last();
    answer(*caller, f, sipc, length);
    // ...and this thread waits for the next message on the endpoint, holding
    // its reference as the general path's receive does.
    set_op(sipc, IpcState::Op::Recv, Error::WouldBlock, IpcState::UserOp::Recv);
    sipc.reply = {};
    sipc.superseded = {};
    MK_ASSERT(!sipc.endpoint_ref);                // complete_ipc() dropped the last one's
    sipc.endpoint_ref = Ref<KObject>::adopt(ep);  // no release: it was empty
    ep->retain();
    block_current(self, ep->receivers_);
    table.lock_.unlock_raw();
    ++s.fast_switches_;  // as in call()
    return switch_to(cpu, self, *caller, ep);
}

// Call that finds no receiver waiting (a busy server, say Ready behind the
// reader its reply woke): this thread queues on the endpoint's senders,
// blocked at its frame with its message in its IpcState and the endpoint
// reference the general path's call holds, and the CPU goes to the next
// thread in line, whose syscall the fast path finishes (next_resumable(),
// resume()), as recv() does. What Endpoint::call() does when no receiver
// waits (FIFO: at the back of the queue), with the same state for whoever
// takes the call: a receive, or a ReplyRecv that takes it in passing
// (reply_and_take()). The stub returns to user mode with every register
// of the resumed thread's frame (RESUME_EXIT, as after Recv). A dead
// endpoint, a caller asked to exit and a next thread the general path must
// finish take the general path; so do a timeout and donation off, checked
// before. Only mk_fastpath_queue_call() comes here: the entry the stub
// takes for a register Call whose receiver is missing, so the C++ Call's
// exit is always the partner's (FAST_EXIT).
inline FastPathExit FastPath::queue_call(TrapFrame& f, PerCpu& cpu, HandleTable& table,
                                         Thread& self, Endpoint& ep, uint64_t badge,
                                         uint32_t length) {
    Scheduler& s = cpu.scheduler;
    Thread* next = next_resumable(s);
    if (next == nullptr || ep.dead_ || self.exit_requested ||
        (next->ipc->endpoint_ref && !next->ipc->endpoint_ref->release_if_not_last())) {
        return unlock_and_miss(s, table, &ep);
    }

    // The point of no return. The next thread's reference went above...
    (void)next->ipc->endpoint_ref.leak();
    // ...and this thread waits on the endpoint with its call, numbered, and
    // a reference to the endpoint (the payload stays in its IPC buffer,
    // where the receiver takes it from).
    IpcState& cipc = *self.ipc;
    read_message(f, length, cipc.msg);
    cipc.badge = badge;
    ++cipc.call_seq;
    set_op(cipc, IpcState::Op::Call, Error::WouldBlock, IpcState::UserOp::Call);
    MK_ASSERT(!cipc.endpoint_ref);
    cipc.endpoint_ref = Ref<KObject>::adopt(&ep);
    ep.retain();
    block_current(self, ep.senders_);
    table.lock_.unlock_raw();
    // No receiver to switch to, as the general path counts it; and a block
    // and a switch, and a hit (as recv()).
    ++cpu.ipc.fastpath_miss_no_partner;
    ++s.fast_blocks_;
    return resume(cpu, self, *next, &ep);
}

// ReplyRecv that finds a caller queued on the endpoint (a busy server): the
// caller it answers becomes Ready, first in line (the hand-off queue), and
// this thread goes on at once with the next call, returning to user mode
// from its own frame; nothing blocks and nothing switches. What
// Endpoint::reply_recv() does when a sender is waiting, for a caller that
// blocked at its frame in Call (a plain Send, a notice or a caller with
// handles takes the general path). The answered caller completes through
// mk_resume_at_frame() like any caller woken by the general path, from its
// IpcState: the reply goes there, not into its frame.
inline FastPathExit FastPath::reply_and_take(TrapFrame& f, Scheduler& s, HandleTable& table,
                                             Endpoint& ep, Thread& self, Thread& caller,
                                             Thread& sender, uint32_t length) {
    IpcState& pipc = *sender.ipc;
    // A caller of another CPU takes the general path, which takes its home
    // lock for the move to this thread's callers queue.
    if (pipc.op != IpcState::Op::Call || !sender.at_frame || sender.exit_requested ||
        sender.cpu != self.cpu) {
        return unlock_and_miss(s, table, &ep);
    }
    table.lock_.unlock_raw();  // the endpoint is used no more

    // The point of no return. The caller takes the reply...
    IpcState& sipc = *self.ipc;
    IpcState& cipc = *caller.ipc;
    read_message(f, length, cipc.msg);  // the reply
    cipc.badge = 0;
    if (length != 0) copy_payload(sipc, cipc, length);
    cipc.op = IpcState::Op::None;
    cipc.result = Error::None;
    s.wake_locked(caller);  // off this thread's callers queue
    s.hand_off_locked(caller);
    // ...and this thread the queued call, whose caller now waits for the
    // reply on this thread's callers queue.
    const Message& call = pipc.msg;
    WaitQueue::unlink(sender);
    sender.waiting_on = &sipc.callers;
    sipc.callers.link_back(sender);
    pipc.op = IpcState::Op::ReplyWait;
    sipc.reply = ReplyToken{sender.id(), pipc.call_seq};
    sipc.superseded = {};
    f.rax = uint64_t(abi::Err::Ok);
    syscall::deliver_registers(f, call, 0, pipc.badge, true);
    if (call.length != 0) copy_payload(pipc, sipc, call.length);
    // A hit, like the other entries' (which leave the endpoint counters
    // alone): no switch, so counted here rather than by the scheduler.
    ++this_cpu().ipc.syscall_fastpath_hits;
    unlock_ipc(&ep);
    return FastPathExit{&f};
}

inline FastPathExit FastPath::reply(TrapFrame& f) {
    PerCpu& cpu = this_cpu();
    Scheduler& s = cpu.scheduler;
    uint32_t length;
    if (!message_ok(f, &length) || !ipc_fast_switch()) return miss();
    Thread& self = *s.current_;
    IpcState& sipc = *self.ipc;
    // The Reply object stays this thread's (spare_reply) once the handle is
    // gone, so there must be room for it. With no quantum left to lend, the
    // replier would go to the back of the ready queue: the general path.
    if (sipc.spare_reply != nullptr || !payload_ok(sipc, length) || s.quantum_left_ == 0)
        return miss();
    HandleTable& table = self.process->handles();
    table.lock_.lock_raw();
    // a0: a saved reply (HandleTable::find_locked() on all 64 bits, as for
    // an endpoint) whose only reference is this handle, which carries no
    // badge lineage and whose closing nobody hooks: removing it under the
    // lock is all that closing it does, and the object is then ours.
    const HandleTable::Slot* slot = table.find_locked(f.rdi);
    if (slot == nullptr || slot->object->type() != ObjectType::Reply || slot->object->refs() != 1 ||
        slot->tracker != nullptr || table.hook_ != nullptr) {
        table.lock_.unlock_raw();
        return miss();
    }
    Reply& saved = *static_cast<Reply*>(slot->object);
    lock(s, nullptr);  // a reply wait: scheduler locks alone
    // The caller the Reply names, homed here (so this CPU's lock guards its
    // wait), still waiting on it for the saved call (SavedWait::
    // holds_call_locked), at its frame. The Reply's pin on it goes (never
    // the last reference: the caller waits, so it lives). A caller that
    // blocked on the general path still holds its call's reference to the
    // endpoint: dropped here, unless it is the last one (a release under
    // these locks cannot free), the last check.
    Thread* caller = saved.saved_.caller;
    if (caller == nullptr || caller->cpu != self.cpu || !saved.saved_.holds_call_locked() ||
        !caller->at_frame || caller->exit_requested || self.exit_requested ||
        (caller->ipc->endpoint_ref && !caller->ipc->endpoint_ref->release_if_not_last())) {
        return unlock_and_miss(s, table, nullptr);
    }

    // The point of no return. The caller takes the reply...
    (void)caller->ipc->endpoint_ref.leak();  // released above
    saved.saved_.caller = nullptr;
    caller->release_not_last();
    answer(*caller, f, sipc, length);
    // ...the handle is closed, its object kept for the next ReplySave...
    ClosedHandle closed = table.vacate_locked(HandleTable::number_of(f.rdi));
    table.lock_.unlock_raw();
    sipc.spare_reply = static_cast<Reply*>(closed.object);
    // ...and this thread lends the caller the rest of its quantum, waiting
    // Ready at the front of the hand-off queue, at its frame: switched to,
    // it finishes the syscall in mk_resume_at_frame() with `result`, as
    // after a donation on the general path (Scheduler::schedule_locked()).
    set_op(sipc, IpcState::Op::None, Error::None, IpcState::UserOp::None);
    self.state = ThreadState::Ready;
    self.at_frame = true;
    self.lent_quantum = true;
    s.handoff_.push_front(self);
    // A wake, a donation and a switch, and a hit (counters() and
    // ipc_counters() add it in).
    ++s.fast_replies_;
    return switch_to(cpu, self, *caller, nullptr);
}

// ReplySave through the Reply object this thread kept from its last fast
// Reply (IpcState::spare_reply): what sys_reply_save() does — the pending
// call's caller moves to the Reply's queue, and the Reply goes into a free
// slot of the handle table with every right — in one critical section of
// each lock, allocating nothing. Nothing blocks and nothing switches: it
// returns to user mode from this thread's own frame, r0 the handle. A
// thread's first ReplySave (no spare yet), a full table and a pending call
// that is not the first on this thread's callers queue take the general
// path.
inline FastPathExit FastPath::reply_save(TrapFrame& f) {
    PerCpu& cpu = this_cpu();
    Scheduler& s = cpu.scheduler;
    if (!ipc_fast_path()) return miss();
    Thread& self = *s.current_;
    IpcState& sipc = *self.ipc;
    ReplyToken token = sipc.reply;
    Reply* spare = sipc.spare_reply;
    if (!token.valid() || spare == nullptr) return miss();
    HandleTable& table = self.process->handles();
    table.lock_.lock_raw();
    if (table.cleared_ || table.free_head_ == 0) {
        table.lock_.unlock_raw();
        return miss();
    }
    lock(s, nullptr);  // a reply wait: scheduler locks alone
    // The caller the token names, still waiting for this very reply (what
    // reply_target_locked() checks: on this thread's callers queue is in
    // ReplyWait there). A thread being killed leaves through the general
    // path's way back to user mode.
    // A caller of another CPU takes the general path: the Reply's queue is
    // guarded by the caller's home lock (Endpoint::save_reply).
    Thread* caller = sipc.callers.first_or_null();
    if (caller == nullptr || caller->id() != token.caller || caller->ipc->call_seq != token.call ||
        self.exit_requested || caller->cpu != self.cpu) {
        return unlock_and_miss(s, table, nullptr);
    }

    // The point of no return. The caller now waits on the Reply...
    WaitQueue::unlink(*caller);
    SavedWait& saved = spare->saved_;
    saved.queue.link_back(*caller);
    // As Endpoint::save_reply: saved first, then the new wait lock.
    __atomic_store_n(&caller->ipc->saved_call, token.call, __ATOMIC_RELAXED);
    __atomic_store_n(&caller->waiting_on, &saved.queue, __ATOMIC_RELEASE);
    caller->retain();  // named and pinned, as Endpoint::save_reply does
    saved.caller = caller;
    saved.token = token;
    sipc.spare_reply = nullptr;
    sipc.reply = {};
    // ...whose one reference the new handle takes.
    f.rdi = table.store_locked(table.pop_free_locked(), spare, abi::kRightsAll, 0, nullptr);
    table.lock_.unlock_raw();
    f.rax = uint64_t(abi::Err::Ok);
    // A hit with no switch, counted here (as reply_and_take()).
    ++cpu.ipc.syscall_fastpath_hits;
    return FastPathExit{&f};
}

// Recv that finds nothing to take: this thread waits on the endpoint at its
// frame, as Endpoint::recv() blocks it, and the CPU goes to the next thread
// in line, whose syscall the fast path finishes (next_resumable(),
// resume()). It is the deferring server's way back to its clients: after a
// ReplySave, the client a ReplyRecv answered while the server went on
// waits Ready at the front of the hand-off queue. A pending call this
// thread would drop, a queued sender or notice, a dead endpoint, a timeout,
// and a next thread the general path must finish take the general path.
inline FastPathExit FastPath::recv(TrapFrame& f) {
    PerCpu& cpu = this_cpu();
    Scheduler& s = cpu.scheduler;
    if (!timeout_ok(f) || !ipc_fast_path()) return miss();
    Thread& self = *s.current_;
    IpcState& sipc = *self.ipc;
    if (sipc.reply.valid()) return miss();
    HandleTable& table = self.process->handles();
    uint64_t badge;
    Endpoint* ep = endpoint(table, f.rdi, abi::kRightReceive, &badge);
    if (ep == nullptr) return miss();
    lock(s, ep);
    Thread* next = next_resumable(s);
    if (next == nullptr || !ep->senders_.is_empty() || ep->notices_.size() != 0 || ep->dead_ ||
        self.exit_requested ||
        (next->ipc->endpoint_ref && !next->ipc->endpoint_ref->release_if_not_last())) {
        return unlock_and_miss(s, table, ep);
    }

    // The point of no return. The next thread's reference went above...
    (void)next->ipc->endpoint_ref.leak();
    // ...and this thread waits for a message on the endpoint, holding its
    // reference as the general path's receive does.
    set_op(sipc, IpcState::Op::Recv, Error::WouldBlock, IpcState::UserOp::Recv);
    sipc.superseded = {};
    MK_ASSERT(!sipc.endpoint_ref);
    sipc.endpoint_ref = Ref<KObject>::adopt(ep);
    ep->retain();
    block_current(self, ep->receivers_);
    table.lock_.unlock_raw();
    ++s.fast_blocks_;
    return resume(cpu, self, *next, ep);
}

}  // namespace mk

// The entry stub's ways in (arch/x86_64/syscall.S), interrupts off.
extern "C" [[gnu::flatten]] mk::FastPathExit mk_fastpath_call(mk::TrapFrame* frame) {
    return mk::FastPath::call(*frame, false);
}
extern "C" [[gnu::flatten]] mk::FastPathExit mk_fastpath_queue_call(mk::TrapFrame* frame) {
    return mk::FastPath::call(*frame, true);
}
extern "C" [[gnu::flatten]] mk::FastPathExit mk_fastpath_reply_recv(mk::TrapFrame* frame) {
    return mk::FastPath::reply_recv(*frame);
}
extern "C" [[gnu::flatten]] mk::FastPathExit mk_fastpath_reply(mk::TrapFrame* frame) {
    return mk::FastPath::reply(*frame);
}
extern "C" [[gnu::flatten]] mk::FastPathExit mk_fastpath_reply_save(mk::TrapFrame* frame) {
    return mk::FastPath::reply_save(*frame);
}
extern "C" [[gnu::flatten]] mk::FastPathExit mk_fastpath_recv(mk::TrapFrame* frame) {
    return mk::FastPath::recv(*frame);
}

#ifdef MK_HOST
namespace mk {
bool FastPath::stub_queues(const TrapFrame& f) {
    uint32_t length;
    if (!message_ok(f, &length) || length != 0 || !timeout_ok(f) || !ipc_fast_switch())
        return false;
    Thread& self = *this_cpu().scheduler.current_;
    HandleTable& table = self.process->handles();
    uint64_t badge;
    Endpoint* ep = endpoint(table, f.rdi, abi::kRightSend, &badge);
    if (ep == nullptr) return false;
    bool none = ep->receivers_.is_empty();
    table.lock_.unlock_raw();
    return none;
}
}  // namespace mk

extern "C" bool mk_fastpath_stub_queues(const mk::TrapFrame* frame) {
    return mk::FastPath::stub_queues(*frame);
}

// Only for the host tests: in the kernel nothing may call into this object
// but the entry stub (scripts/check-fastpath-symbols).
extern "C" mk::FastPathExit mk_fastpath(mk::TrapFrame* frame) {
    switch (mk::abi::Sys(frame->rax)) {
        case mk::abi::Sys::Call:
            return mk_fastpath_stub_queues(frame) ? mk_fastpath_queue_call(frame)
                                                  : mk_fastpath_call(frame);
        case mk::abi::Sys::ReplyRecv:
            return mk_fastpath_reply_recv(frame);
        case mk::abi::Sys::ReplySave:
            return mk_fastpath_reply_save(frame);
        case mk::abi::Sys::Recv:
            return mk_fastpath_recv(frame);
        default:
            return mk_fastpath_reply(frame);
    }
}
#endif
