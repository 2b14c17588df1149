// Thread: a kernel-scheduled flow of control with its own kernel stack.
//
// A thread is on at most one queue at a time — the ready queue or one wait
// queue — through queue_hook, and `waiting_on` names that wait queue while it
// is Blocked: the single source of truth for what it waits on. Both, and the
// state, are guarded by its home CPU's scheduler lock; while the thread waits in an IPC
// operation on an endpoint its wait queue and waiting_on are that endpoint's
// lock's too, which its wait therefore only ends under (docs/locking.md).
//
// A thread is a KObject: its creator holds a reference, which destroy()
// gives back; whoever else holds one keeps the memory (not the thread) alive.
#pragma once

#include <boost/intrusive/list.hpp>
#include <boost/intrusive/set.hpp>
#include <cstddef>
#include <cstdint>

#include "cpu.hpp"
#include "error.hpp"
#include "kernel_stack.hpp"
#include "kobject.hpp"
#include "memory.hpp"
#include "message.hpp"
#include "object/handle_table.hpp"

namespace mk {

class WaitQueue;
class Reply;
class Process;
class HandleTable;
struct IpcState;

enum class ThreadState : uint8_t {
    Created,  // made by create(), not started yet: on no queue, never ran
    Running,  // on a CPU right now (the CPU's current thread)
    Ready,    // on the ready queue (the idle thread: Ready but never queued)
    Blocked,  // on `waiting_on` (or on no queue: a plain sleep)
    Dead,     // exited or killed (perhaps before it started); never runs again
};

const char* thread_state_name(ThreadState s);

// Why a block ended; written by the waker, read by the woken thread.
enum class WakeReason : uint8_t {
    None,         // not woken yet
    Woken,        // an ordinary wake (partner arrived, event happened)
    TimedOut,     // its timeout expired
    Interrupted,  // told to stop waiting (its thread is being killed)
};

// Whether a wake also makes the woken thread the scheduler's donate target,
// which the waker then yields to (Scheduler::yield_to_donate_target) or
// donates to when it next blocks.
enum class Donate : bool { No, Yes };

namespace bi = boost::intrusive;
using QueueHook = bi::list_member_hook<bi::link_mode<bi::safe_link>>;
using TimeoutHook = bi::set_member_hook<bi::link_mode<bi::safe_link>>;

class Thread : public KObject {
  public:
    using Entry = void (*)(void*);
    static constexpr size_t kStackSize = kKernelStackSize;  // above a guard page
    static constexpr size_t kNameLength = 16;
    static constexpr uint64_t kNeverExpires = UINT64_MAX;  // a saturated deadline

    // A kernel thread that will run entry(arg); Created until Scheduler::start.
    [[nodiscard]] static Result<Thread*> create(const char* name, Entry entry, void* arg);
    // The thread already running on this CPU at boot, on the boot stack
    // (Created until Scheduler::init makes it the running thread).
    [[nodiscard]] static Result<Thread*> adopt_boot_thread(const char* name);
    // Ends a thread that is Dead or was never started (Created): it leaves
    // the registry (its id names nothing) and is Dead for good. Then
    // frees its kernel stack (a TLB shootdown: no lock held, not in an
    // interrupt) and releases the creator's reference: the rest (thread,
    // IPC state) is freed now if that was the last one, else by the last
    // holder's release. Called once, by the creator.
    static void destroy(Thread* thread);

    Thread(const Thread&) = delete;
    Thread& operator=(const Thread&) = delete;

    // Unique over the kernel's lifetime (a slot of the registry and a
    // generation): a stale id never names a newer thread. A reply token
    // names its caller by id (and call number); the reply finds the caller
    // on the replier's callers queue (endpoint_inline.hpp).
    uint64_t id() const { return id_; }
    // Whether a thread with this id exists (made, not yet destroyed). For
    // diagnostics and tests: the answer may change once it is returned.
    static bool registered(uint64_t id);
    const char* name() const { return name_; }

    // --- Guarded by the scheduler lock of its home CPU (`cpu`) ---
    QueueHook queue_hook;             // ready queue or one wait queue
    WaitQueue* waiting_on = nullptr;  // the wait queue it is linked on, if any
    // The eight bytes from here to spare_ are one aligned word: the syscall
    // fast path writes all of them for a block or a wake, which the compiler
    // merges into one store (hence the order, and spare_).
    WakeReason wake_reason = WakeReason::None;
    ThreadState state = ThreadState::Created;
    // A user thread in an IPC syscall whose kernel stack holds nothing but
    // its user registers (the TrapFrame at the top): if it blocks now, it
    // gives the stack up (Cpu::switch_context_leaving_stack) and, when it
    // runs again, finishes the syscall from its IpcState and returns to
    // user mode (mk_resume_at_frame), or the syscall fast path resumes it
    // there directly. Set by the syscall layer for the length of the IPC
    // operation; cleared when the thread runs again.
    bool at_frame = false;
    bool block_armed = false;     // between prepare_block() and block()
    bool wake_pending = false;    // a wake landed while block_armed
    bool exit_requested = false;  // killed: ends itself on its way back to user mode
    // Ready on the scheduler's hand-off queue, sharing the running quantum
    // (Scheduler::handoff_); false in any other state.
    bool lent_quantum = false;
    uint8_t spare_ = 0;  // always 0
    // The home CPU (PerCpu::index), the only one it runs on: where its wake
    // queues it and its timeout lives (Scheduler). The CPU that made it,
    // until placement (Scheduler::set_home_locked, place_locked) moves a
    // Created one; then only that CPU moves it (Scheduler::move_locked).
    // Written with the old and the new home's lock held (a Created one's
    // with the old home's), so a reader that holds a home lock reads it
    // again (Scheduler::HomeLock).
    uint32_t cpu = 0;
    // The CPUs it may be homed on, a bit per PerCpu::index; `cpu` is one of
    // them. Set by placement and Scheduler::set_affinity.
    uint32_t affinity = 0;
    // A move to CPU move_to not done yet: asked by another CPU, or waiting
    // for the thread to be movable (Scheduler::movable_locked). On its home
    // CPU's move list through move_hook.
    static constexpr uint32_t kNoMove = UINT32_MAX;
    uint32_t move_to = kNoMove;
    // The home CPU's tick count (its low 32 bits) when it last joined that
    // CPU's ready queue: the balancing rule moves only a thread that has
    // waited there through a whole tick (Scheduler::balance_locked).
    uint32_t ready_since = 0;
    bi::list_member_hook<bi::link_mode<bi::safe_link>> move_hook;
    // Nothing on its kernel stack holds on to the CPU it last ran on, so it
    // may resume on another: it has not run yet, or its last switch away
    // was on its way back to user mode (an interrupt from user mode,
    // Scheduler::at_user_boundary). Set by every switch away.
    bool stack_holds_no_cpu = true;
    // Queued on its new home while the CPU it moved from still runs on its
    // stack (Scheduler::move_locked of the running thread): that CPU clears
    // it once it has switched away, and the new home waits for that before
    // it switches to the thread. Written without a lock (atomically).
    bool switching_out = false;
    // It has run (a switch to it) at least once: the balancing rule leaves
    // a thread where placement put it until then
    // (Scheduler::balance_locked). Guarded by the home lock.
    bool ran = false;
    // How many CPUs read this thread across a gap, in which no lock keeps
    // it from ending (Scheduler::GapHold): a HomeLock or HomeLocks that
    // lets go of its own CPU's lock to take a lower one's, naming it; a
    // move of it to a lower CPU; a kill that ended it and still fails its
    // callers and buries it. Thread::destroy waits until none does
    // (Scheduler::off_cpu_locked). Raised by a CPU that knows the thread
    // is not destroyed yet (it holds a lock that destroy or the thread's
    // end must take first), atomically.
    mutable uint32_t gap_holds = 0;
    TimeoutHook timeout_hook;  // on the scheduler's timeout set while it has a deadline
    // Tick at which a timed block expires; 0: none; kNeverExpires: a timeout
    // so long that ticks + timeout saturated (not on the timeout set).
    uint64_t deadline = 0;

    // --- Owned by the thread's CPU ---
    Cpu::Context context{};

    // IPC state (IpcState below; used by microkernel/endpoint.cpp), allocated
    // with the thread.
    IpcState* const ipc;

    // --- User threads (Process::create_thread); fixed before it starts ---
    Process* process = nullptr;  // holds a reference; nullptr: a kernel thread
    // process's handle table, for the syscall entry stub's lookup (one load
    // less than through process); the table lives as long as the process.
    HandleTable* handles = nullptr;
    bi::list_member_hook<> process_hook;  // on process->threads, guarded by its threads lock
    uint64_t user_rip = 0;                // where it first enters user mode
    uint64_t user_rsp = 0;
    uint64_t user_arg = 0;

  private:
    friend void kobject_free(KObject* object);

    friend class FastPath;  // checks where syscall.S reads the id (fastpath_layout.hpp)

    Thread(uint64_t id, const char* name, IpcState* ipc);
    ~Thread();
    [[nodiscard]] static Result<Thread*> make(const char* name);
    // Frees the thread and its IPC state once its last reference is gone
    // (kobject_free); destroy() freed its stack.
    static void free_object(Thread* thread);
    // Ends the thread and its IpcState and frees their block (make()).
    static void free_block(Thread* thread);

    uint64_t id_;
    char name_[kNameLength];
    KernelStack stack_;  // top nullptr: the boot thread's (not ours), or freed by destroy()

  public:
    // The thread waiting in Scheduler::join for this one to end (null:
    // none), woken by its end (exit_current, a kill). Guarded by the home
    // lock. Last: the fields above are at offsets the syscall stub knows.
    Thread* joiner = nullptr;
};

// The size of the thread registry (thread.cpp): how many threads can exist
// at once, each with an id naming its slot.
struct ThreadRegistry {
    static constexpr uint32_t kMaxThreads = 4096;
};

// A FIFO queue of threads, linked through Thread::queue_hook (no allocation,
// O(1) unlink through the thread's own hook). A ready queue is guarded by
// its CPU's scheduler lock; an endpoint's queues by the endpoint's lock; a
// callers queue by its owner's home scheduler lock, a saved reply's by
// its caller's (reply_wait_owner; a thread is linked there and unlinked
// with its own home lock held too);
// any other wait queue by the scheduler lock of the CPU its threads are
// homed on.
class WaitQueue {
  public:
    // No size kept: nothing but diagnostics and tests asks for it, and the
    // syscall fast path would pay for it at every link and unlink.
    using List = bi::list<Thread, bi::member_hook<Thread, QueueHook, &Thread::queue_hook>,
                          bi::constant_time_size<false>>;

    WaitQueue() = default;
    WaitQueue(const WaitQueue&) = delete;
    WaitQueue& operator=(const WaitQueue&) = delete;
    ~WaitQueue();

    bool empty() const { return list_.empty(); }
    size_t size() const { return list_.size(); }  // O(n)
    Thread* front() { return list_.empty() ? nullptr : &list_.front(); }

    [[gnu::always_inline]] void push_back(Thread& t) { list_.push_back(t); }
    void push_front(Thread& t) { list_.push_front(t); }
    Thread* pop_front() {
        if (list_.empty()) return nullptr;
        Thread& t = list_.front();
        list_.pop_front();
        return &t;
    }
    // O(1): through the thread's own hook.
    [[gnu::always_inline]] void remove(Thread& t) { list_.erase(List::s_iterator_to(t)); }
    bool contains(const Thread& t) const;
    // The first thread, from the front, for which pred(thread) holds; null if none.
    template <typename Pred>
    Thread* find_if(Pred pred) {
        for (Thread& t : list_) {
            if (pred(t)) return &t;
        }
        return nullptr;
    }

  private:
    friend class FastPath;   // syscall/fastpath.cpp: the operations below, inline
    friend class Scheduler;  // its wake and hand-off, which every IPC wake pays for

    // The list's own operations, less what the fast path does not need:
    // the header is never in the "unlinked" state the safe-mode checks
    // allow for (it links to itself once constructed), and a thread the
    // fast path links was unlinked by the fast path or by its last wake.
    using Algo = List::node_algorithms;
    List::node_ptr header() { return list_.end().pointed_node(); }
    static List::node_ptr node(Thread& t) { return List::value_traits::to_node_ptr(t); }
    Thread* first_or_null() {
        List::node_ptr h = header();
        List::node_ptr n = h->next_;
        return n == h ? nullptr : List::value_traits::to_value_ptr(n);
    }
    bool is_empty() { return header()->next_ == header(); }
    // Unlinks t (on this queue), leaving its hook unlinked as erase() would.
    static void unlink(Thread& t) {
        Algo::unlink(node(t));
        Algo::init(node(t));
    }
    void link_back(Thread& t) { Algo::link_before(header(), node(t)); }

    List list_;
};

}  // namespace mk

namespace mk {

// A thread's IPC state; while it waits on an endpoint, guarded by that
// endpoint's lock (and its home lock); for a reply wait (ReplyWait:
// message, result, the callers queue it waits on) by the home scheduler
// locks of the thread and of reply_wait_owner() (a reply takes no
// endpoint lock). Its owner
// reads its own outcome without it once its wait has ended: nobody writes
// the state of a thread in no IPC wait but the thread itself.
struct IpcState {
    enum class Op : uint8_t {
        None,       // not in an IPC operation
        Send,       // blocked in send(), message in `msg`
        Call,       // blocked in call(), sending phase, message in `msg`
        Recv,       // blocked in recv()/reply_recv()
        ReplyWait,  // call() delivered; waiting for the reply
    };
    // op, result, user_op and spare_ are one aligned 32-bit word: the
    // syscall fast path writes the three at once.
    Op op = Op::None;
    Error result = Error::None;  // set by whoever completes the operation
    // --- The IPC syscall in progress (syscall/ipc.cpp), for its completion
    // after a block at the frame (Thread::at_frame) ---
    enum class UserOp : uint8_t { None, Call, Send, Recv };
    UserOp user_op = UserOp::None;  // what completes it: Recv covers ReplyRecv
    uint8_t spare_ = 0;             // always 0
    Message msg;                    // outgoing while sending; incoming once completed
    uint64_t badge = 0;             // sender: its badge; receiver: the badge delivered
    ReplyToken reply;               // receiver: the token of a received call
    uint64_t call_seq = 0;          // caller: numbers its calls, for ReplyToken::call
    WaitQueue callers;              // threads waiting in ReplyWait for this one's reply
    // --- More of the IPC syscall in progress (user_op above) ---
    // The reference to the endpoint the operation started on, held until it
    // completes (the operation's own reference: see Endpoint, Lifetime).
    Ref<KObject> endpoint_ref;
    // A receive's pending call, which a message that arrives replaces (its
    // caller then fails with PeerDied); kept if nothing arrives.
    ReplyToken superseded;
    // The payload of the IPC buffer: local_buffer, or for a user thread that
    // registered an IPC buffer page (Sys::IpcBufferSet), that page through
    // the direct map. Payloads are copied through this kernel address,
    // never through a user address, while the thread waits in an IPC
    // operation (under the locks that end that wait) or in its own; the
    // thread registers its own page (under its address-space lock), which
    // stays mapped while registered (Process::unmap refuses it).
    unsigned char* buffer = local_buffer;
    uint64_t user_buffer = 0;  // the page's user address; 0: none registered
    // Handles travelling with msg (msg.handle_count of them): taken from the
    // sender's table, moved along with the message, put into the receiver's
    // table by its own syscall. Never released under an endpoint's lock.
    HandleEntry handles[kMessageHandles];
    // The Reply object of the last saved reply this thread answered on the
    // syscall fast path, which cannot free it under its locks: kept for the
    // thread's next ReplySave. Touched by this thread alone; freed with it.
    Reply* spare_reply = nullptr;
    // The call (call_seq) a Reply object holds this thread's reply wait
    // for, once saved (Endpoint::save_reply): while call_seq still equals
    // it, the wait is on that Reply's queue, not on a server's callers
    // queue (reply_wait_owner). Every new call numbers itself past it.
    uint64_t saved_call = 0;
    alignas(16) unsigned char local_buffer[kIpcBufferSize] = {};
};

// A thread and its IpcState are one allocation, the IpcState this far after
// the Thread (Thread::make): the syscall fast path's assembly reaches a
// thread's IPC state from the thread with no load (fastpath_layout.hpp,
// THREAD_IPC_STATE).
inline constexpr size_t kThreadIpcStateOffset =
    (sizeof(Thread) + alignof(IpcState) - 1) & ~(alignof(IpcState) - 1);

// The thread whose home CPU's scheduler lock guards `t`'s reply wait
// (docs/locking.md): the server on whose callers queue it waits, or `t`
// itself while a Reply object holds the call (the saved reply's queue is
// guarded by the caller's home lock). Null when `t` waits for no reply
// (IpcState::op is not ReplyWait).
// Also read before those locks are held, as the name of the locks to
// take (Scheduler::HomeLocks), then read again under them: a save or an
// answer (which take no endpoint lock) may change the wait meanwhile. So the
// wait lock is loaded once, and a save writes saved_call before it
// points waiting_on at the Reply's queue (save_reply, the fast path's
// ReplySave): whoever sees that queue sees the wait as saved. The servers
// named stay alive meanwhile: a thread's death fails its callers under
// t's home lock, under which every such early reader reads it (a kill or
// a stray wake from another CPU takes it for that:
// Scheduler::held_reply_wait_owner) and holds the server from then on
// (Thread::gap_holds: Scheduler::GapHold, and HomeLocks over its gap).
inline Thread* reply_wait_owner(Thread& t) {
    IpcState& ipc = *t.ipc;
    WaitQueue* on = __atomic_load_n(&t.waiting_on, __ATOMIC_ACQUIRE);
    if (ipc.op != IpcState::Op::ReplyWait || on == nullptr) return nullptr;
    if (__atomic_load_n(&ipc.saved_call, __ATOMIC_RELAXED) == ipc.call_seq) return &t;
        // The callers queue is a member of its owner's IpcState, which lies
        // kThreadIpcStateOffset past the owner (Thread::make).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
    constexpr size_t kCallers = offsetof(IpcState, callers);
#pragma GCC diagnostic pop
    auto* owner =
        reinterpret_cast<Thread*>(reinterpret_cast<char*>(on) - kCallers - kThreadIpcStateOffset);
    MK_ASSERT(&owner->ipc->callers == on);
    return owner;
}

}  // namespace mk
