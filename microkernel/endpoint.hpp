// Endpoint: a synchronous IPC rendezvous point with FIFO wait queues.
//
// Senders and receivers that find no partner block on the endpoint's own
// queues (threads linked through their queue hook; O(1) unlink), served in
// arrival order. A message is a label and kMessageWords words, plus up to
// kIpcBufferSize bytes copied from the sender's IPC buffer to the
// receiver's. A call() delivers its message and then waits, linked on the
// receiver's `callers` queue, for a reply through the one-shot ReplyToken
// the receiver got; the receiver may answer at once or keep the token and
// answer later (deferred reply).
//
// Lifetime: an endpoint is a KObject. Its creator holds one reference, and
// destroy() is a state change, not a free: under its lock the
// endpoint becomes dead, its waiters wake with Destroyed, and then the
// creator's reference is released. The memory goes with the last reference.
// Whoever may race with destroy() (any holder of a handle, later) must hold
// its own reference (Ref<Endpoint>) for the whole of an operation, from
// before it calls it until it returns, blocking included; then an operation
// that reaches the lock after destroy() finds a dead endpoint and returns
// Destroyed, and never touches freed memory. Kernel code that ends its own
// endpoint only after every thread using it is done needs no extra reference.
//
// Locking: an endpoint's queues (and the IPC state of the threads waiting
// on them) are guarded by the endpoint's own lock (lock(), at
// LockLevel::Endpoint), and every operation takes this CPU's scheduler
// lock after it (IpcGuard), and a partner's home lock after that: a thread
// is linked on its queue and marked Blocked before either is released, so
// a partner can never arrive between "no partner found" and "asleep". A
// block lets go of the endpoint's lock at its switch, which hands the
// scheduler lock alone to the next thread; a waker that finds the blocked
// thread under the endpoint's lock then waits for the scheduler lock until
// the switch is done. A timeout, kill or stray wake that ends a wait on an
// endpoint takes that endpoint's lock, looked up under the thread's home
// lock first (waited_on_locked). Operations on two endpoints never wait
// for each other.
// A reply wait (a caller on a receiver's callers queue, or on a saved
// reply's) is guarded by a scheduler lock as well: the receiver's home
// CPU's, or for a saved reply the caller's own (reply_wait_owner); whoever
// links, unlinks or answers one holds it (Scheduler::HomeLocks,
// docs/locking.md). So reply(), reply_drop() and the saved replies take
// scheduler locks alone, no endpoint lock.
//
// Fast path: call() to a waiting receiver and reply_recv() to a waiting
// caller, with a register-only message, switch straight to the partner
// (Scheduler::switch_to_locked) without the ready queue or the yield vector.
// It needs both the fast path and donation on (a direct switch donates the
// CPU). Otherwise send(), call() and reply_recv() wake the partner and
// donate the CPU to it (general path; with donation off the partner only
// goes on the ready queue); a donor lends the rest of its quantum and runs
// again when the partner blocks (Scheduler::schedule_locked). reply_recv()
// that finds its next message waiting goes on, and hands the CPU to the
// caller it woke as soon as it stops (Scheduler::hand_off_locked). reply(),
// reply_drop() and a receive that completes a queued sender only wake it
// (the syscall layer's Reply donates on its own).
#pragma once

#include <cstddef>
#include <cstdint>

#include "error.hpp"
#include "kobject.hpp"
#include "message.hpp"
#include "spinlock.hpp"
#include "thread.hpp"

namespace mk {

struct SavedWait;

struct IpcCounters {
    uint64_t sends = 0;
    uint64_t receives = 0;
    uint64_t calls = 0;
    uint64_t replies = 0;
    uint64_t fastpath_hits = 0;  // direct switches in call() / reply_recv()
    uint64_t syscall_fastpath_hits =
        0;  // syscalls the fast path completed (Scheduler::fast_hits_locked() added in by
            // ipc_counters())
    uint64_t syscall_fastpath_misses = 0;  // Call / ReplyRecv / Reply it left to the general path
    uint64_t fastpath_miss_disabled = 0;   // fastpath=off
    uint64_t fastpath_miss_donation_off = 0;    // donate=off: a direct switch is a donation
    uint64_t fastpath_miss_no_partner = 0;      // nobody waiting to switch to
    uint64_t fastpath_miss_long_message = 0;    // payload in the IPC buffer
    uint64_t fastpath_miss_sender_pending = 0;  // reply_recv with a sender already queued
    uint64_t fastpath_miss_other_cpu = 0;       // the partner is homed on another CPU
    uint64_t timeouts = 0;                      // operations ended by their timeout
    uint64_t stale_replies = 0;                 // replies to a caller no longer waiting
    uint64_t destroyed_wakeups = 0;             // waiters woken by endpoint destruction
    uint64_t peer_died_wakeups = 0;             // callers failed: server died or dropped the token
    uint64_t notices = 0;                       // kernel notices posted
};

// A kernel notice (docs/syscalls.md): a message from the kernel itself, with
// a reserved label, that a server receives like any other. Its source
// allocates it when the source is made (a process's supervisor link), so
// posting it can never fail; the endpoint owns it once posted.
struct Notice {
    bi::list_member_hook<bi::link_mode<bi::safe_link>> hook;
    Message msg;         // register-only, label >= abi::kNoticeLabelBase
    uint64_t badge = 0;  // the badge of the handle the source was given
};
// An endpoint's queue of notices: it keeps its size, 32 bits, which the
// syscall fast path's assembly reads as the list's first word, with the
// endpoint's dead flag just before it: one compare says "no notice, not
// dead" (syscall/fastpath_layout.hpp, ENDPOINT_DEAD_AND_NOTICES;
// host-tested).
using NoticeList = bi::list<
    Notice,
    bi::member_hook<Notice, bi::list_member_hook<bi::link_mode<bi::safe_link>>, &Notice::hook>,
    bi::size_type<uint32_t>>;

// Fast path on/off (kernel command line `fastpath=off`).
void ipc_set_fast_path(bool on);
extern bool g_ipc_fast_path;
inline bool ipc_fast_path() {
    return g_ipc_fast_path;
}
// Whether the fast path may switch straight to its partner: the fast path
// on and donation on (a direct switch is a donation). One byte, so that the
// syscall fast path's Call, ReplyRecv and Reply test both with one compare;
// ipc_set_fast_path() and Scheduler::set_donation_enabled() keep it.
extern bool g_ipc_fast_switch;
inline bool ipc_fast_switch() {
    return g_ipc_fast_switch;
}
void ipc_update_fast_switch();
IpcCounters ipc_counters();        // this CPU's
IpcCounters total_ipc_counters();  // every CPU's, summed

class Endpoint : public KObject {
  public:
    // A new endpoint; the caller holds its one reference (the creator's),
    // which destroy() gives back.
    [[nodiscard]] static Result<Endpoint*> create();
    // Ends the endpoint: under its lock it becomes dead (every
    // later operation on it returns Destroyed) and every blocked sender and
    // receiver wakes, in queue order, with Destroyed (a sender's message
    // stays its own). Then it releases the creator's reference: the memory
    // is freed now if that was the last one, else by the last holder's
    // release. Callers already delivered (waiting for a reply) are not
    // affected: their receiver may still reply. Called once, by the creator.
    static void destroy(Endpoint* endpoint);

    // What destroy() does to the waiters (queued senders and callers, and
    // receivers still blocked on it: all wake with Destroyed) and to later
    // operations, when the last handle with the Receive right is gone
    // (ReceiveTracker): nobody can receive on it any more, so nobody waits
    // on it for ever. Releases nothing; a dead endpoint stays dead.
    void close_receive_side();

    Endpoint(const Endpoint&) = delete;
    Endpoint& operator=(const Endpoint&) = delete;

    // All operations act for the current thread, which holds a reference to
    // the endpoint for the duration (see Lifetime above). timeout_ticks 0
    // waits forever. Errors: TooLarge (msg.length > kIpcBufferSize, checked
    // first, nothing done), Destroyed (the endpoint is dead: checked under
    // the lock before anything else, nothing done, not even reply_recv's
    // reply; or it was destroyed while waiting), WouldBlock (try_* with no
    // partner), TimedOut, Interrupted (woken by something other than a
    // partner), for call() PeerDied (the receiver died or dropped the reply
    // token), and for reply()/reply_drop() BadHandle.

    // Delivers msg, with the sender's badge, to a receiver; blocks until one comes.
    Status send(const Message& msg, uint64_t badge, uint64_t timeout_ticks = 0);
    // send() only if a receiver is waiting now; else WouldBlock.
    Status try_send(const Message& msg, uint64_t badge);
    // The next message; blocks until one comes.
    Result<Received> recv(uint64_t timeout_ticks = 0);
    // recv() only if a sender is waiting now; else WouldBlock.
    Result<Received> try_recv();
    // send(), then wait for the reply to this message.
    Result<Message> call(const Message& msg, uint64_t badge, uint64_t timeout_ticks = 0) {
        return call_impl(msg, badge, timeout_ticks, false);
    }
    // call() only if a receiver is waiting now (else WouldBlock, nothing
    // done); then waits for the reply without a timeout.
    Result<Message> try_call(const Message& msg, uint64_t badge) {
        return call_impl(msg, badge, 0, true);
    }
    // reply(token, msg) and then recv(), in one operation. A token that is
    // no longer good (its caller timed out or died) drops the reply, as the
    // caller can no longer take it, and still receives. An invalid() token
    // only receives.
    Result<Received> reply_recv(ReplyToken token, const Message& reply, uint64_t timeout_ticks = 0);

    // call_impl() and reply_recv() inline (endpoint_inline.hpp): for the
    // syscall layer, whose Call and ReplyRecv run them on every round trip
    // of the general path. call_inline() with `need_receiver` is try_call().
    // The message must fit (Message::fits(): call_impl() and reply_recv()
    // check it, the syscall layer's decode refuses any that does not).
    // `interrupts_off`: they are off already, and stay off (IpcGuard).
    [[gnu::always_inline]] inline Result<Message> call_inline(const Message& msg, uint64_t badge,
                                                              uint64_t timeout_ticks,
                                                              bool need_receiver,
                                                              bool interrupts_off);
    [[gnu::always_inline]] inline Result<Received> reply_recv_inline(ReplyToken token,
                                                                     const Message& reply,
                                                                     uint64_t timeout_ticks,
                                                                     bool interrupts_off);

    // Answers a call; the caller wakes with `msg` (payload from the current
    // thread's IPC buffer). Only the thread that received the call may
    // answer it. BadHandle: the token was used or dropped, its caller is gone
    // or timed out, or the current thread did not receive that call.
    static Status reply(ReplyToken token, const Message& msg, Donate donate = Donate::No);
    // Gives up a reply token (same rules as reply()): the caller wakes with PeerDied.
    static Status reply_drop(ReplyToken token);

    // Saved replies (a Reply object: any thread holding it may answer).
    // save_reply() moves the caller a token names (same rules as reply())
    // from the current thread to `saved`, which names and pins it from
    // then on (SavedWait); reply_saved() answers it there (BadHandle when
    // it is no longer waiting: timed out, died, answered); drop_saved()
    // fails it with PeerDied if it still waits there. Neither unpins it:
    // SavedWait::unpin(), with no lock held.
    static Status save_reply(ReplyToken token, SavedWait& saved);
    static Status reply_saved(SavedWait& saved, const Message& msg, Donate donate = Donate::No);
    static void drop_saved(SavedWait& saved);

    // Delivers a kernel notice: to a waiting receiver at once, else queued.
    // Receives take queued notices before queued senders. The endpoint owns
    // the notice from now on; on a dead endpoint it is dropped. True when
    // it woke a receiver. With `donate`, that receiver is given the CPU
    // (Scheduler::donate_locked): a poster of this CPU then yields to it
    // (Scheduler::yield_to_donate_target), as a death does; one that
    // cannot yield there (a last handle closed, a death that may not
    // yield) posts without.
    bool post_notice(Notice* notice, Donate donate = Donate::No);

    size_t waiting_senders();
    size_t waiting_receivers();

    // The lock of this endpoint's queues (LockLevel::Endpoint): for
    // IpcGuard, in kill(), a stray wake and the tick of a thread waiting
    // here.
    SpinLock& lock() { return lock_; }
    const SpinLock& lock() const { return lock_; }

    // The endpoint whose queue `t` waits on (a send, a call not yet
    // received, a receive); null for any other wait (for a reply, a plain
    // one) or none. Under t's home lock, where the wait it names stays put
    // (docs/locking.md, "A waiter's wait changes under its home lock").
    static Endpoint* waited_on_locked(const Thread& t);

    // The second half of a blocking operation, for a thread that blocked in
    // it and now runs again. The operations above do this step inline; these
    // are for the host tests, whose fake context switch returns at once.
    // While the thread is still blocked they return WouldBlock.
    static Status finish_send(Thread& self);
    static Result<Received> finish_recv(Thread& self);
    static Result<Message> finish_call(Thread& self);

  private:
    void mark_dead_locked();

    friend class FastPath;  // syscall/fastpath.cpp reads the queues itself

    Endpoint() : KObject(ObjectType::Endpoint) {}
    ~Endpoint() = default;
    template <typename T, typename... Args>
    friend T* knew(Args&&... args);
    template <typename T>
    friend void kdelete(T* obj);
    friend void kobject_free(KObject* object);
    // Frees the endpoint once its last reference is gone (kobject_free).
    static void free_object(Endpoint* endpoint);

    Result<Message> call_impl(const Message& msg, uint64_t badge, uint64_t timeout_ticks,
                              bool need_receiver);
    // reply_recv_inline() of a caller homed on another CPU: reply() (its
    // home lock and the caller's, no endpoint lock; the caller pinned
    // meanwhile, woken there), then recv(). Out of line.
    [[gnu::noinline]] Result<Received> reply_then_recv(ReplyToken token, const Message& reply,
                                                       uint64_t timeout_ticks);
    // call_inline()'s delivery to a receiver homed on another CPU: under
    // the receiver's home lock, taken before anything of its wait changes
    // (its home's tick never finds it half completed); the receiver woken
    // there, the caller blocked on its callers queue. Out of line.
    [[gnu::noinline]] Result<Message> call_elsewhere_locked(Thread& self, Thread& receiver,
                                                            const Message& msg, uint64_t badge,
                                                            uint64_t timeout_ticks);
    inline Notice* pop_notice_locked();  // endpoint_inline.hpp
    static Received take_notice_locked(Thread& self, Notice* notice);

    // --- Guarded by lock_ ---
    WaitQueue senders_;    // blocked in send()/call(), their message in Thread::ipc
    WaitQueue receivers_;  // blocked in recv()/reply_recv()
    uint32_t spare_ = 0;
    // destroy() ran: every operation returns Destroyed. 32 bits, right
    // before the notices' size (NoticeList).
    uint32_t dead_ = 0;
    NoticeList notices_;  // posted, not yet received
    // Last: the syscall fast path's assembly takes and releases it at
    // ENDPOINT_LOCK (syscall/fastpath_layout.hpp).
    SpinLock lock_{LockLevel::Endpoint};
};

// A call saved out of its server's callers queue (what a Reply object
// holds): its caller waits on `queue`, which the caller's own home lock
// guards (reply_wait_owner). `token` and `caller` are written once, by
// Endpoint::save_reply (or the syscall fast path's ReplySave), before
// anything else can reach this; the fast path's Reply, which keeps the
// object for reuse once no handle names it, clears `caller`. `caller`
// holds a reference, so an answer or a drop can read the caller's home
// and take that lock alone, then re-check that the caller still waits
// here for the token's call: it may have timed out, died or called again
// meanwhile (docs/locking.md, "Saved replies"). The reference is dropped
// with no lock held (unpin), or under locks only where it cannot be the
// last (release_not_last: the fast path's Reply, whose caller waits).
struct SavedWait {
    WaitQueue queue;
    ReplyToken token;
    Thread* caller = nullptr;

    SavedWait() = default;
    SavedWait(const SavedWait&) = delete;
    SavedWait& operator=(const SavedWait&) = delete;
    ~SavedWait() { MK_ASSERT(caller == nullptr && queue.empty()); }
    // Whether `caller` still waits here for the token's call; under its
    // home lock.
    bool holds_call_locked() const {
        return caller->waiting_on == &queue && caller->ipc->call_seq == token.call;
    }
    // Drops the reference to the caller (none: nothing). With no lock held:
    // it may be the last.
    void unpin() {
        if (Thread* t = caller) {
            caller = nullptr;
            t->release();
        }
    }
};

// A thread is ending: callers waiting for its reply wake with PeerDied. With
// this CPU's scheduler lock held and nothing above it, an endpoint's lock
// before it or not (called by Scheduler::exit_current and kill_locked):
// each caller's reply wait is guarded by scheduler locks (complete_locked).
void ipc_release_thread_locked(Thread& thread);

// A thread blocked in an IPC operation was woken by something other than the
// partner that completes it: its timeout (TimedOut) or a stray wake
// (Interrupted). The operation ends now, under the lock of the endpoint it
// waits on (or, for a reply wait, the scheduler locks that guard it), so a
// later reply or message cannot reach it. Called by Scheduler::wake_locked.
void ipc_abort_locked(Thread& thread, WakeReason reason);

}  // namespace mk
