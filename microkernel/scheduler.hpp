// Scheduler: preemptive round-robin per CPU, with block/wake and donation.
//
// Every CPU has one (PerCpu::scheduler): its ready queues, its running and
// idle threads, its quantum, its timeouts. A thread has a home CPU
// (Thread::cpu) and runs only there: a wake queues it on its home CPU, and
// tells that CPU (Cpu::notify_cpu) when it idles. The hand-off queue and a
// direct switch stay on one CPU; a donation to a thread of another CPU
// makes it run there at once ("wake there, now": donate_locked), never
// here (docs/smp.md, "Scheduling on several CPUs").
//
// Each CPU's scheduler has its own lock, which guards that CPU's queues and
// timeouts and the scheduling state of the threads homed on it; an
// endpoint's lock, taken before it, guards that endpoint's queues and the
// IPC state of the threads waiting on them (a reply wait is guarded by
// scheduler locks alone). Another CPU's scheduler lock is held with this
// CPU's and nothing above it (HomeLock, HomeLocks), the two taken in CPU
// index order, the lower first (docs/locking.md).
//
// Blocking follows one pattern (docs/scheduling.md): under the scheduler lock
// the current thread is marked Blocked, linked on the wait queue it waits on,
// and the CPU switches away. A waker unlinks it (O(1), through its own hook),
// marks it Ready and queues it; it may then donate the CPU to it: the donate
// target, if still Ready when the next yield or block switches, runs at once.
//
// A CPU's lock is held across its context switch and released by the thread
// that was switched to ("lock hand-over"), so a wake can never land between
// "marked Blocked" and "switched away".
#pragma once

#include <boost/intrusive/set.hpp>
#include <cstdint>

#include "spinlock.hpp"
#include "thread.hpp"

namespace mk {

class Endpoint;

struct SchedCounters {
    uint64_t ticks = 0;               // timer ticks seen
    uint64_t switches = 0;            // context switches to another thread
    uint64_t preemptions = 0;         // switches forced by quantum expiry
    uint64_t yields = 0;              // entries through the yield vector
    uint64_t donations_taken = 0;     // switches straight to the donate target
    uint64_t donation_fallbacks = 0;  // donate target no longer Ready: round-robin instead
    uint64_t blocks = 0;              // threads that went to sleep
    uint64_t wakeups = 0;             // Blocked threads made Ready
    uint64_t wakes_not_blocked = 0;   // wakes of a thread not Blocked (harmless)
    uint64_t wake_races_caught = 0;   // wakes that landed between prepare_block() and block()
    uint64_t timeouts = 0;            // blocks ended by their timeout
    uint64_t direct_switches = 0;     // switch_to_locked(): IPC fast-path switches
    uint64_t notifies = 0;            // other CPUs told of a wake or a kill (Cpu::notify_cpu)
    uint64_t moves = 0;               // threads this CPU moved to another (move_locked)
    uint64_t balanced = 0;            // of which the balancing rule moved (on_timer_tick)
    uint64_t remote_donations = 0;    // "wake there, now": donations sent to another CPU
};

class Scheduler {
  public:
    static constexpr uint32_t kQuantumTicks = 10;  // 10 ms at the 1 kHz timer

    Scheduler() = default;
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // `boot` is the thread running now; `idle` runs when nothing else is
    // ready. They may be one thread: a CPU whose first code is its idle
    // loop. Enters this CPU in the CPU table (register_cpu): from here on
    // threads may be homed on it.
    void init(Thread& boot, Thread& idle);

    // The scheduler of `thread`'s home CPU.
    static Scheduler& of(const Thread& thread);
    // The CPU this scheduler belongs to (PerCpu::index).
    uint32_t cpu() const { return cpu_; }

    SpinLock& lock() { return lock_; }
    Thread* current() const { return current_; }
    Thread* idle_thread() const { return idle_; }
    // counters_ plus the syscall fast path's switches (fast_switches_,
    // fast_replies_, fast_blocks_).
    SchedCounters counters();
    // counters() summed over every CPU.
    static SchedCounters total_counters();
    // Syscalls the fast path completed; with the lock held.
    uint64_t fast_hits_locked() const { return fast_switches_ + fast_replies_ + fast_blocks_; }
    uint64_t ticks();
    size_t ready_count();

    // Donation on/off (kernel command line `donate=off`), for every CPU.
    static void set_donation_enabled(bool on);
    static bool donation_enabled() { return donation_enabled_; }

    // Homes a Created `thread` on `cpu` (a CPU in the CPU table): it may
    // run on the CPUs of `mask` (in the CPU table, `cpu` among them; 0: that
    // CPU alone). With this CPU's scheduler lock held.
    static void set_home_locked(Thread& thread, uint32_t cpu, uint32_t mask = 0);
    // Places a Created `thread`: it may run on the CPUs of `mask` (in the
    // CPU table, at least one), and is homed on the least loaded of them
    // (load_locked), `prefer` when it is one of those. With this CPU's
    // scheduler lock held: it reads each CPU's load under that CPU's lock
    // (HomeLock).
    static void place_locked(Thread& thread, uint32_t mask, uint32_t prefer);
    // Where a process spawned without a CPU starts its first thread: the
    // least loaded CPU of `mask` (online CPUs, at least one), this CPU
    // among equals, the calling thread (the spawner) not counted: a
    // spawner most often waits next, for its child or, as the process
    // server does, for its next request. So a client and the server it
    // spawns share a CPU unless threads already wait for the spawner's.
    // Takes this CPU's scheduler lock.
    static uint32_t spawn_home(uint32_t mask);
    // The CPUs in the CPU table, a bit each.
    static uint32_t online_mask();
    // Threads that want this CPU now: the running one (not the idle
    // thread) and the queued ones, the reaper not counted (it runs for a
    // moment after each user thread's end). With this scheduler's lock
    // held.
    size_t load_locked() const;

    // The CPUs `thread` may run on from now on (docs/smp.md, "Placement").
    // InvalidArgument when `mask` is empty or names a CPU that is not in
    // the table; BadState for a Dead thread. When its home is not in the
    // mask, the thread moves to the least loaded CPU of it, which this
    // returns: its home CPU moves it as soon as it is movable
    // (movable_locked): at once if that is this CPU and it is; else at the
    // end of that CPU's next interrupt (it is told: Cpu::notify_cpu) or on
    // the thread's way back to user mode (at_user_boundary). Else returns
    // its home.
    [[nodiscard]] Result<uint32_t> set_affinity(Thread& thread, uint32_t mask);
    [[nodiscard]] Result<uint32_t> set_affinity_locked(Thread& thread, uint32_t mask);

    // Makes a Created thread Ready, on its home CPU. BadState, and nothing
    // done, for any other: a thread killed before it started is Dead and
    // never runs; one already started is not started twice.
    [[nodiscard]] Status start(Thread& thread);
    // Ends the current thread; it becomes Dead and never runs again.
    [[noreturn]] void exit_current();
    // Ends another thread wherever it is (Created, Ready or Blocked): it is
    // taken off the ready queue or its wait queue, loses its timeout, and
    // becomes Dead. A Dead thread is left as it is.
    // A user thread (one with a process) that has run is not ended in the
    // middle of kernel code, where its stack may hold references: it is
    // asked to exit (Thread::exit_requested), woken with Interrupted if it
    // is blocked, told by an interrupt if it runs on another CPU, and ends
    // itself on its way back to user mode. A kernel thread running on
    // another CPU cannot be ended (a kernel bug: it panics).
    void kill(Thread& thread);
    // kill() with the lock of the endpoint `thread` was seen waiting on
    // under its home lock (`endpoint`, pinned; null: none) and this CPU's
    // held. False, and nothing done, if its wait is on another endpoint
    // now, or on none (received, completed, or begun since): kill() looks
    // again.
    [[nodiscard]] bool kill_locked(Thread& thread, const Endpoint* endpoint);

    // --- Reaping user threads ---
    // A user thread that ends (exit_current, kill) goes on the zombie list
    // (one for every CPU, under its own lock); the reaper (a kernel thread)
    // destroys it once it is off the CPU. Set once, at boot, before any
    // user thread exists.
    void set_reaper(Thread& reaper);
    // The next zombie, sleeping until there is one. Only the reaper calls it.
    Thread* next_zombie();
    // Whether no CPU uses `thread` (Dead or Created) any more, once its
    // home lock is held: its home CPU held that lock from the thread's end
    // until it ran on the next thread's stack, so having it once is enough
    // for that; but a CPU that reads it across a gap (Thread::gap_holds:
    // a move of it, a kill that ended it and still fails its callers, a
    // HomeLock naming it) has yet to look at it again: false, and the
    // caller tries again with its locks let go. With this CPU's lock held
    // and nothing above it: Thread::destroy.
    [[nodiscard]] bool off_cpu_locked(const Thread& thread);

    // --- Blocking and waking ---

    // Blocks the current thread on `queue` (may be nullptr: a wait on no queue,
    // e.g. a plain sleep) until woken or `timeout_ticks` pass (0: no timeout;
    // a timeout reaching past tick UINT64_MAX saturates and never expires).
    // Called with the lock held; returns with it held, after the thread runs again.
    // Always sleeps: a wake remembered by prepare_block() counts only in block().
    WakeReason block_current_locked(WaitQueue* queue, uint64_t timeout_ticks);

    // The first half of block_current_locked(): marks the current thread
    // Blocked on `queue` without switching; the caller switches next
    // (switch_to_locked or a schedule). For the IPC fast path.
    void mark_current_blocked_locked(WaitQueue* queue, uint64_t timeout_ticks);
    // Its body, inlined into wake_and_block_inline(), the general path's
    // hand-over (and out of line above for the rest); in scheduler_inline.hpp.
    [[gnu::always_inline]] inline void mark_current_blocked_inline(WaitQueue* queue,
                                                                   uint64_t timeout_ticks);
    // Its timeout, apart: most blocks have none.
    [[gnu::noinline]] void arm_timeout_locked(Thread& thread, uint64_t timeout_ticks);

    // wake_locked(thread), set_donate_target_locked(&thread), then
    // block_current_locked(queue, timeout_ticks), in one step: the IPC
    // general path's hand-over, where a waker blocks right after waking its
    // partner (a call that found a receiver, a reply_recv that answered a
    // caller and found nothing to receive). With donation on, `thread` is
    // switched to directly rather than queued and taken off the ready queue
    // again; the counters, states and quantum come out as the three steps
    // leave them (a wake-up, a block, a donation taken, a switch).
    // `thread` must be Blocked (its wait ends here) and not the current one.
    WakeReason wake_and_block_locked(Thread& thread, WaitQueue* queue, uint64_t timeout_ticks);
    // The same, inline (scheduler_inline.hpp): the endpoints' call and
    // reply_recv, on every round trip of the general path.
    [[gnu::always_inline]] inline WakeReason wake_and_block_inline(Thread& thread, WaitQueue* queue,
                                                                   uint64_t timeout_ticks);
    // Its long way, in three steps: the wake, the donate target, the
    // block, linked on `queue` with `thread`'s home lock held too (a call
    // links its caller on the receiver's callers queue, which that lock
    // guards: docs/locking.md). For donation off, a quantum used up, a
    // thread not Blocked or homed on another CPU.
    [[gnu::noinline]] WakeReason wake_then_block_locked(Thread& thread, WaitQueue* queue,
                                                        uint64_t timeout_ticks);

    // The current thread, marked Blocked (mark_current_blocked_locked)
    // while another CPU's lock was held too, and let go of since (a call
    // to a receiver of another CPU: Endpoint::call_elsewhere_locked),
    // switches away: the rest of block_current_locked().
    WakeReason switch_away_locked();

    // Two-step blocking for waits decided outside the scheduler lock: after
    // prepare_block(), a wake() that arrives before block() is remembered and
    // block() returns at once instead of sleeping.
    void prepare_block();
    void cancel_block();
    WakeReason block(WaitQueue* queue, uint64_t timeout_ticks = 0);
    // Sleeps until `thread` (a kernel thread of any CPU, started, joined by
    // no other thread) is Dead: its end wakes the joiner (Thread::joiner),
    // which looks at its state under its home lock, no poll. Then the
    // caller may destroy it (Thread::destroy waits until its CPU is off
    // its stack). Only from thread context with no lock held.
    void join(Thread& thread);

    // Makes a Blocked thread Ready (true), on its home CPU's ready queue; if
    // that is another CPU and it idles, tells it (Cpu::notify_cpu). Waking a
    // Created, Running, Ready or Dead thread is harmless and counted (false).
    bool wake_locked(Thread& thread, WakeReason reason = WakeReason::Woken);
    // wake_locked()'s long way: a thread of another CPU, or in a reply
    // wait (HomeLocks).
    [[gnu::noinline]] bool wake_with_home_locks_locked(Thread& thread, WakeReason reason);
    // A wake that may end an IPC wait of `thread` (a stray wake, a
    // timeout), with the lock of the endpoint it was seen waiting on under
    // its home lock (`endpoint`, pinned; null: none) and this CPU's held:
    // LookAgain, and nothing done, if its wait is on another endpoint now.
    enum class WakeResult : uint8_t { NotWoken, Woken, LookAgain };
    WakeResult wake_waiting_on_locked(Thread& thread, WakeReason reason, const Endpoint* endpoint);
    // Both, in one: `check` says whether to look at `endpoint`; `donate`:
    // a thread woken is given the CPU (donate_locked).
    WakeResult wake_checked_locked(Thread& thread, WakeReason reason, const Endpoint* endpoint,
                                   bool check, Donate donate = Donate::No);
    // wake_locked() with the locks it takes held already: the thread's
    // home lock, and for a reply wait the lock that guards it
    // (reply_wait_owner): HomeLocks.
    bool wake_at_home_locked(Thread& thread, WakeReason reason);
    bool wake(Thread& thread, WakeReason reason = WakeReason::Woken);
    // wake(), which may end an IPC wait: under the lock of the endpoint the
    // thread waits on (pinned, looked up first under its home lock: as
    // kill()). With `donate` the woken thread is given the CPU
    // (donate_locked): true only for a thread of this CPU, which is then
    // the donate target (unblock_yield); one of another CPU runs there.
    bool wake_from_anywhere(Thread& thread, WakeReason reason, bool donate);

    // A thread just woken (Ready) by the running one, which goes on running
    // (it had the next message already): it runs as soon as the running
    // thread stops, on what is left of the quantum, ahead of the threads
    // that were merely ready (the hand-off queue, FIFO). Ignored while
    // donation is off, and for a thread of another CPU: then it waits its
    // turn.
    void hand_off_locked(Thread& thread);

    // --- Donation (the yield vector) ---

    // The next yield or block on this CPU switches to `thread` if it is still
    // Ready (or the end of an interrupt, if one comes first:
    // preempt_locked); consumed by that switch (a direct switch leaves it
    // alone: docs/smp.md). Ignored while donation is off, and for a thread
    // homed on another CPU (donate_locked gives it that CPU).
    void set_donate_target_locked(Thread* thread);
    // A donation to `thread`, just woken (Ready), with its home lock held
    // (under the HomeLocks of its wake). On this CPU it is the donate
    // target (set_donate_target_locked). On another: "wake there, now"
    // (docs/smp.md) — it becomes that CPU's donate target unless that CPU
    // has one already (it is about to yield to it), and is interrupted
    // (Cpu::notify_cpu); at that interrupt's end preempt_locked (or the
    // idle loop's next pass) honours the target: it runs there at once, on
    // the rest of the interrupted thread's quantum, which waits at the
    // front of the hand-off queue, as a donor does (after the idle thread:
    // on a fresh quantum). An idle CPU whose queues hold the thread first
    // gets no target: the wake told it already. Never a migration. Ignored
    // while donation is off. Inline (scheduler_inline.hpp), the thread of
    // this CPU first.
    inline void donate_locked(Thread& thread);
    // Its long way: a thread of another CPU.
    [[gnu::noinline]] void donate_elsewhere_locked(Thread& thread);
    void set_donate_target(Thread* thread);
    // Enters the yield vector. Only from thread context with no lock held.
    void yield_now();
    // wake(t), then donate the CPU to it (donation on) through the yield vector.
    void unblock_yield(Thread& thread);
    // Donate the CPU to an already woken thread through the yield vector (no-op
    // while donation is off). Only from thread context with no lock held.
    // The caller guarantees `thread` outlives the call: prefer setting the
    // target under the lock, with interrupts off, and yield_to_donate_target().
    void donate(Thread& thread);
    // Raises the yield vector for a target set with set_donate_target_locked()
    // (no-op while donation is off, or when the target was a thread of
    // another CPU and so was not set). Best with interrupts still off since
    // the target was chosen; with them on, an interrupt may take the target
    // first, and then the yield does nothing (yield_only_to_target_).
    void yield_to_donate_target();

    // --- IPC fast path ---

    // Switches straight to `next` without the ready queue. The current thread
    // must already have left the Running state (e.g. Blocked on its reply) and
    // `next` must be Blocked on no queue (its wait just ended) and homed on
    // this CPU; it is woken
    // as by wake_locked() (counted, wake_reason Woken) but runs at once.
    // Like every switch: from thread context, with this lock the only one
    // held. A direct switch donates the CPU: the IPC fast path uses it only
    // while donation is on.
    void switch_to_locked(Thread& next);

    // --- Entry points of the architecture ---

    void on_timer_tick();  // timer interrupt, inside irq_enter()/irq_exit()
    // At the end of an interrupt, after EOI: the moves asked of this CPU,
    // then a switch if the quantum ran out or the idle thread has work.
    // `from_user`: the interrupt came from user mode, so the running thread
    // is at the user boundary (at_user_boundary) and may move too.
    void preempt_if_needed(bool from_user = false);
    void on_yield_vector();  // int 0x50 handler
    // Cpu::notify_cpu() from another CPU, inside irq_enter()/irq_exit():
    // preempt_if_needed() follows, as after a timer tick.
    void on_notify();
    // The current thread is on its way back to user mode, interrupts off,
    // with nothing of the kernel on its stack that holds on to this CPU: a
    // move asked of it happens here (it switches away, and returns to user
    // mode on its new CPU). From before_return_to_user.
    void at_user_boundary();
    // The first instructions of a thread that a switch entered without
    // returning into switch_context: a new thread, or a user thread that
    // gave its stack up (mk_resume_at_frame).
    void finish_switch_in();
    // The same for a user thread that goes straight back to user mode
    // (mk_resume_at_frame): interrupts stay off, as the way back wants them.
    void finish_switch_in_to_user() {
        after_switch_locked();
        lock_.unlock(false);
    }
    // One pass of the idle thread: switch away if work is ready (to a
    // donation from another CPU first), else wait for an interrupt.
    // Returns whether it waited.
    bool idle_once();
    [[noreturn]] void idle_loop();

    // Keeps Thread::destroy off `thread` (null: none) for a scope
    // (Thread::gap_holds): for what reads the thread after this CPU's lock
    // was let go, where nothing else keeps it from ending and being freed
    // (off_cpu_locked says no meanwhile). Taken by a CPU that knows the
    // thread is not destroyed yet: one that holds its home lock, or the
    // lock of a wait it is in, or one that its caller keeps alive.
    class GapHold {
      public:
        explicit GapHold(const Thread* thread) { take(thread); }
        // Holds `thread` from now on, instead of the one held so far.
        void take(const Thread* thread) {
            drop();
            thread_ = thread;
            if (thread_ != nullptr) __atomic_add_fetch(&thread_->gap_holds, 1, __ATOMIC_ACQ_REL);
        }
        ~GapHold() { drop(); }
        GapHold(const GapHold&) = delete;
        GapHold& operator=(const GapHold&) = delete;

      private:
        void drop() {
            if (thread_ != nullptr) __atomic_sub_fetch(&thread_->gap_holds, 1, __ATOMIC_RELEASE);
            thread_ = nullptr;
        }
        const Thread* thread_ = nullptr;
    };

    // The scheduler of a thread's home CPU, or another CPU's, locked for a
    // scope: this CPU's, held already, or another's, taken as a second
    // scheduler lock (LockLevel::SchedulerOther). Two scheduler locks are
    // held in CPU index order, the lower taken first, so no two CPUs wait
    // for each other's: for a lower CPU, this CPU's lock is let go and
    // taken again after it. That needs this CPU's scheduler lock held and
    // nothing above it (an endpoint's lock before it, or not: a reply).
    // Another CPU may take this CPU's lock in that gap and change what it
    // guards, and a thread's home (Thread::cpu)
    // changes under its home's lock. Nothing a caller has made visible
    // before it may depend on this CPU's lock being held throughout
    // (bury_locked pushes a zombie only once it is past the gap:
    // docs/locking.md, "The gap in HomeLock").
    //
    // For a thread, the home read before its lock is taken is read again
    // after, and followed if the thread moved meanwhile. gapped() says
    // whether this CPU's lock was let go on the way: whatever the caller
    // read under it before and relies on after must then be checked again
    // (docs/locking.md, the table of HomeLock's callers).
    class HomeLock {
      public:
        HomeLock(Scheduler& self, const Thread& thread)
            : home_(thread.cpu == self.cpu_ ? &self : &of(thread)), other_(home_ != &self) {
            if (other_) [[unlikely]]
                follow(self, thread);
        }
        HomeLock(Scheduler& self, Scheduler& home) : home_(&home), other_(&home != &self) {
            if (other_) gapped_ = self.lock_others_in_order(home, nullptr);
        }
        ~HomeLock();
        HomeLock(const HomeLock&) = delete;
        HomeLock& operator=(const HomeLock&) = delete;
        Scheduler& operator*() const { return *home_; }
        Scheduler* operator->() const { return home_; }
        bool gapped() const { return gapped_; }

      private:
        // Takes home_'s lock, then follows `thread` to its home until the
        // lock held is that home's.
        void follow(Scheduler& self, const Thread& thread);

        Scheduler* home_;
        bool other_;
        bool gapped_ = false;
    };
    // The home schedulers of `a` and of `b` (null: none) locked for a
    // scope, with this CPU's: HomeLock for two threads, whose homes may be
    // this CPU, one CPU, or two others (then three scheduler locks are
    // held, the third at LockLevel::SchedulerThird). What the end of a
    // reply wait needs: the home lock of the caller and of the thread
    // whose lock guards the wait (reply_wait_owner). All in CPU index
    // order, as HomeLock, with this CPU's lock and nothing above it held.
    class HomeLocks {
      public:
        // Inline, the common case (every home this CPU) first: each IPC
        // completion takes it.
        HomeLocks(Scheduler& self, const Thread& a, const Thread* b)
            : home_(a.cpu == self.cpu_ ? &self : &of(a)) {
            if (b != nullptr && b->cpu != self.cpu_ && b->cpu != a.cpu) [[unlikely]] {
                lock(self, a, b);  // b's home is another lock
            } else if (home_ != &self) [[unlikely]] {
                // A lower CPU's lock: a and b are read after the gap.
                bool gap = home_->cpu_ < self.cpu_;
                GapHold hold_a(gap ? &a : nullptr);
                GapHold hold_b(gap ? b : nullptr);
                gapped_ = self.lock_others_in_order(*home_, nullptr);
                taken_[0] = home_;
                // Homes change only under the home's lock: a's is held now
                // if a is still there, and b's with it.
                if (a.cpu != home_->cpu_ ||
                    (b != nullptr && b->cpu != self.cpu_ && b->cpu != a.cpu)) [[unlikely]]
                    relock(self, a, b);
            }
        }
        ~HomeLocks() {
            if (taken_[0] != nullptr) [[unlikely]]
                unlock();
        }
        HomeLocks(const HomeLocks&) = delete;
        HomeLocks& operator=(const HomeLocks&) = delete;
        // a's home.
        Scheduler* operator->() const { return home_; }
        // As HomeLock's: this CPU's lock was let go on the way.
        bool gapped() const { return gapped_; }

      private:
        // With a home of another CPU: takes the locks, and again while a
        // home moved before its lock was taken.
        void lock(Scheduler& self, const Thread& a, const Thread* b);
        // A home moved before its lock was taken: lets go and locks again.
        void relock(Scheduler& self, const Thread& a, const Thread* b);
        void unlock();

        Scheduler* home_;
        Scheduler* taken_[2] = {};  // the other CPUs' locks taken here, lower index first
        bool gapped_ = false;
    };
    // Whether `thread`'s home lock is held, for assertions: this CPU's
    // own, or one HomeLock or HomeLocks took (by the lock word, so never
    // false where this CPU holds it).
    static bool home_lock_held(const Thread& thread);
    // Asserts that `thread`'s home lock is held, and if it waits for a
    // reply the lock that guards that wait (reply_wait_owner): what whoever
    // links, unlinks, writes or ends a reply wait holds (docs/locking.md).
    // On this CPU's scheduler; inline (scheduler_inline.hpp), this CPU's
    // own lock (held) looked at no further.
    inline void assert_reply_wait_guarded(Thread& thread) const;
    // home_lock_held() with this CPU's own lock (held) taken as read: for
    // the assertions on IPC paths (scheduler_inline.hpp).
    inline bool home_locked_here(const Thread& thread) const;

#if !defined(MK_KERNEL)
    // The host tests' window into the gap: called with this CPU's lock let
    // go, before the lower CPU's is taken, to do what another CPU could
    // do there (SmpGapTest, tests/unit/smp_ipc_test.cpp).
    static void (*gap_hook)(Scheduler& gapped);
    // The same for the gap of kill(), wake() and the tick's second pass
    // between the look at the endpoint a thread waits on (under that
    // thread's home lock) and that endpoint's lock: no lock held.
    static void (*relock_hook)(Scheduler& relocking);
#endif

  private:
    friend void forget_cpus();  // the host tests: no CPU, no reaper
    friend class FastPath;      // syscall/fastpath.cpp: the direct switch, inline
    friend class IpcGuard;

    // Takes `first` and then `second` (null: none; else a higher index than
    // first's), two other CPUs' locks, in CPU index order with this CPU's
    // held: HomeLock's and HomeLocks' way in. True when this CPU's lock
    // was let go and taken again (a lower CPU's came first): the gap.
    bool lock_others_in_order(Scheduler& first, Scheduler* second);
    // Whether `thread`'s home is this CPU, x or y (null: none).
    bool holds_home_of(const Thread& thread, const Scheduler* x, const Scheduler* y) const;
    // Lets go of the locks lock_others_in_order() took (this CPU's stays).
    static void unlock_others(Scheduler& first, Scheduler* second);

    struct ByDeadline {
        bool operator()(const Thread& a, const Thread& b) const { return a.deadline < b.deadline; }
    };
    using TimeoutSet =
        bi::multiset<Thread, bi::member_hook<Thread, TimeoutHook, &Thread::timeout_hook>,
                     bi::compare<ByDeadline>>;

    void schedule_locked(bool honor_donation);
    void switch_locked(Thread& prev, Thread& next, bool fresh_quantum);
    void cancel_timeout_locked(Thread& thread);
    // The rest of preempt_if_needed(), with this CPU's lock held.
    void preempt_locked();
    // The same, the common case inline (most waits have no timeout); not
    // for syscall/fastpath.cpp, which must not instantiate the set's erase.
    void cancel_timeout_inline_locked(Thread& thread) {
        if (thread.timeout_hook.is_linked()) [[unlikely]] {
            cancel_timeout_locked(thread);
        } else {
            thread.deadline = 0;
        }
    }
    void assert_may_yield() const;
    // The first code after a switch, on the thread switched to: a thread
    // that moved away as it left this CPU (switched_from_) may run on its
    // new home from now on (Thread::switching_out).
    void after_switch_locked() {
        if (Thread* t = switched_from_) [[unlikely]] {
            switched_from_ = nullptr;
            __atomic_store_n(&t->switching_out, false, __ATOMIC_RELEASE);
        }
    }
    // Whether the balancing rule may move a thread at this tick: threads
    // wait here and another CPU runs its idle thread (read without that
    // CPU's lock, a hint the balancing rule checks under it).
    bool balance_wanted_locked() const;
    // Whether a timeout is due at this tick.
    bool timeout_due_locked() const;
    // Whether `thread`'s own timeout is still due (its wait unchanged
    // since the tick found it), with its home lock held.
    static bool timeout_still_due_locked(const Thread& thread);
    // The due timeouts that need no endpoint lock, from the earliest: reply
    // waits (guarded by scheduler locks), until one of any other wait,
    // which makes it return true.
    bool expire_reply_timeouts_locked();
    // The timeouts due at this tick that the first pass left: each thread
    // wakes with TimedOut under the lock of the endpoint it waits on (a
    // thread waiting in an IPC operation leaves that endpoint's queue),
    // looked up under this CPU's lock (its home lock: timeouts live at
    // home) before that endpoint's lock is taken, and checked again after.
    void expire_timeouts();
    // The rest of a tick, once its timeouts are done (the woken threads
    // queued): balancing and the quantum.
    void end_tick_locked();
    // A Blocked thread's wait ends (wake_locked and wake_and_block_locked):
    // off its wait queue and the timeout set, `reason` recorded, an IPC wait
    // no partner completed aborted. Its state is the caller's to set.
    // (scheduler_inline.hpp.)
    inline void end_wait_locked(Thread& thread, WakeReason reason);
    // Takes a Ready thread off whichever queue of its CPU holds it.
    static void remove_ready_locked(Thread& thread);
    // Whether `thread`, homed on this CPU, may change CPUs now. Kernel code
    // keeps this CPU's state at hand (its scheduler, its current thread)
    // while it runs, preemptible, so a thread moves only where it has no
    // such code on its stack: not started yet, blocked at its frame (an IPC
    // syscall that gave its stack up), or switched away on its way back to
    // user mode (Thread::stack_holds_no_cpu); or, running, at that point now.
    bool movable_locked(const Thread& thread) const;
    // Moves `thread` (homed on this CPU) to `dest` if it is movable, else
    // leaves the move on this CPU's move list until it is.
    void request_move_locked(Thread& thread, uint32_t dest);
    // Moves `thread`, homed on this CPU (not its idle thread) and movable,
    // to CPU `dest`, with this CPU's lock held and nothing above it (it
    // takes dest's lock: HomeLock; after its gap it moves only a thread
    // still alive, movable, allowed on `dest` and asked no other move):
    // its timeout with it, what this CPU keeps loaded for it saved
    // (Cpu::unload_context), queued there if Ready. The running thread is
    // queued there at once, Ready, but runs there only once this CPU has
    // switched away from it (Thread::switching_out), at the switch that
    // follows (schedule_locked, switch_locked).
    void move_locked(Thread& thread, uint32_t dest);
    // The moves on the move list whose threads are movable now.
    void do_moves_locked();
    // A move asked of this CPU for `thread` is dropped (it moved, or died).
    static void drop_move_locked(Thread& thread);
    // The least loaded CPU of `mask` (online CPUs, at least one): `prefer`
    // among equals, else the lowest index; this CPU's running thread (the
    // caller) counts unless `count_caller` is false. Each load is read
    // under its CPU's lock, one at a time (HomeLock, with this CPU's held).
    static uint32_t least_loaded_locked(uint32_t mask, uint32_t prefer, bool count_caller = true);
    // The balancing rule, at a tick of a CPU with threads waiting in its
    // ready queue: the first of them allowed on an idle CPU that has run
    // (Thread::ran) and has waited in the queue through a whole tick
    // (Thread::ready_since) moves there.
    void balance_locked();
    // Queues a Ready thread at the back of its home CPU's ready queue, and
    // tells that CPU if it is another one and idles. With the home's lock
    // held (HomeLock).
    void enqueue_locked(Thread& thread);
    // The endpoint `thread` waits on (Endpoint::waited_on_locked), read
    // under its home lock and pinned: once that lock is let go the wait
    // may end, and its thread drop its own reference. Null: none.
    Ref<Endpoint> pin_endpoint_waited_on(Thread& thread);
    // Its lock, for IpcGuard (null: none).
    static SpinLock* lock_of(Endpoint* endpoint);
    // reply_wait_owner(thread), read under its home lock: for a thread of
    // another CPU, that lock is taken for the read, and the owner is held
    // (`hold`) from then on, as nothing else keeps it from ending once
    // that lock is let go (its death fails `thread` under it). A thread
    // homed here: this CPU's lock, held, does so until the caller's
    // HomeLocks holds the owner across its gap.
    Thread* held_reply_wait_owner(Thread& thread, GapHold& hold);
    // The next thread to run, off the queues (null: none is Ready); sets
    // *keep_quantum for one from the hand-off queue.
    Thread* pop_ready_locked(bool* keep_quantum);
    // Onto the back of the ready queue, stamped with this CPU's tick count.
    void push_ready_locked(Thread& thread) {
        thread.ready_since = uint32_t(counters_.ticks);
        ready_.push_back(thread);
    }
    bool any_ready_locked() const {
        return !handoff_.empty() || !ready_.empty();
    }
    // `thread` became Dead (an exit, a kill): the thread waiting for that
    // in join(), if any, wakes. With this CPU's lock held and no other
    // CPU's; the joiner is held (GapHold) from its look under `thread`'s
    // home lock to its wake, as it may end meanwhile (a stray wake).
    void wake_joiner_locked(Thread& thread);
    // A user thread became Dead: hand it to the reaper. With this CPU's
    // lock held and no other CPU's (its wake may take the reaper's home
    // lock: HomeLock).
    void bury_locked(Thread& thread);
    // What every switch (schedule_locked, switch_to_locked) needs: thread
    // context, and the scheduler lock as the only lock held. It lets go of
    // an endpoint's lock if this CPU holds one (a block in an IPC
    // operation, IpcGuard: PerCpu::endpoint_lock): the
    // scheduler lock alone is handed to the next thread. Inline
    // (scheduler_inline.hpp).
    inline void enter_switch_locked();

    // Lock order: after an endpoint's, before the heap (docs/locking.md). The
    // first member: the entry stub releases it at the scheduler's offset in
    // the per-CPU area (syscall.S; arch/x86_64/context.cpp checks it).
    SpinLock lock_{LockLevel::Scheduler};
    // --- Guarded by lock_ ---
    // Ready threads, none of them the idle thread. The hand-off queue holds
    // those that share the running quantum (Thread::lent_quantum): a donor
    // waiting for the thread it donated to (at the front), and threads the
    // running one woke and handed the CPU on to (hand_off_locked). They run
    // before the ready queue; when the quantum ends they join its back.
    WaitQueue handoff_;
    WaitQueue ready_;  // FIFO: round-robin
    // Dead user threads for the reaper (one, on the boot CPU) to destroy.
    // A leaf lock (LockLevel::Zombies): the reaper looks at the list under
    // its scheduler lock, a burial pushes and then wakes it.
    static SpinLock zombies_lock_;
    static WaitQueue zombies_;  // guarded by zombies_lock_
    static Thread* reaper_;     // set once, at boot (set_reaper)
    TimeoutSet timeouts_;       // threads blocked with a deadline
    // Threads of this CPU with a move to do (Thread::move_to): asked by
    // another CPU, or not movable when asked.
    using MoveList =
        bi::list<Thread, bi::member_hook<Thread, decltype(Thread::move_hook), &Thread::move_hook>>;
    MoveList moves_;
    Thread* current_ = nullptr;
    Thread* idle_ = nullptr;
    Thread* donate_target_ = nullptr;
    // The thread this CPU is switching away from, queued on another CPU
    // already (a move): after_switch_locked() lets that CPU run it.
    Thread* switched_from_ = nullptr;
    uint32_t quantum_left_ = kQuantumTicks;
    bool need_resched_ = false;
    // The running thread is at the user boundary (at_user_boundary, an
    // interrupt from user mode): movable, and Thread::stack_holds_no_cpu if
    // it switches away now. Cleared by that switch or the caller.
    bool at_boundary_ = false;
    // The next yield vector is yield_to_donate_target()'s: it switches only
    // if a target is still set (another CPU's may have been taken by the
    // interrupt it sent, in between).
    bool yield_only_to_target_ = false;
    uint32_t cpu_ = 0;
    static bool donation_enabled_;
    SchedCounters counters_{};
    // The syscall fast path's switches. Each is a block, a wake, a direct
    // switch and a switch, and a syscall_fastpath_hit in the IPC counters:
    // counted once here, added in by counters() and ipc_counters().
    uint64_t fast_switches_ = 0;
    // Its Replies through a saved reply: each a wake, a donation taken and
    // a switch (the replier is Ready, not blocked), and a hit.
    uint64_t fast_replies_ = 0;
    // Its Recvs that block and resume the next thread at its frame: each a
    // block and a switch, and a hit.
    uint64_t fast_blocks_ = 0;
};

// An endpoint's lock (Endpoint::lock(); null: none), then this CPU's
// scheduler lock, for a scope: what an IPC operation holds (and a timeout,
// kill or stray wake that ends a wait on that endpoint; one of a thread
// that waits on none takes the scheduler lock alone). At the end each is
// released if this CPU still holds it: a block inside lets go of the
// endpoint's lock at its switch (Scheduler::enter_switch_locked, which
// finds it through PerCpu::endpoint_lock), and the thread runs again with
// the scheduler lock alone (handed over by whoever switched to it). The
// two locks' bookkeeping and interrupt state are done once for both (the
// general path takes this guard in every IPC operation).
class [[nodiscard]] IpcGuard {
  public:
    static constexpr uint64_t kEndpoint = HeldLocks::bit(LockLevel::Endpoint);
    static constexpr uint64_t kScheduler = HeldLocks::bit(LockLevel::Scheduler);
    static constexpr uint64_t kBoth = kEndpoint | kScheduler;

    // Defined in percpu.hpp, which knows this CPU's scheduler.
    // `interrupts_off`: they are off already, and stay off to the end of the
    // scope (nothing saved or restored: Call and ReplyRecv, handle_syscall()).
    inline explicit IpcGuard(SpinLock& endpoint_lock, bool interrupts_off = false);
    // The same with an endpoint's lock or none (null: the scheduler lock alone).
    inline explicit IpcGuard(SpinLock* endpoint_lock_or_none);
    inline ~IpcGuard();
    IpcGuard(const IpcGuard&) = delete;
    IpcGuard& operator=(const IpcGuard&) = delete;

  private:
    // The two locks' account and lock words (interrupts off).
    inline void lock(uint64_t held);
    SpinLock* endpoint_lock_;
    bool irq_was_enabled_;
};

}  // namespace mk
