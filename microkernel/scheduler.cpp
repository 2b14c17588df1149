#include "scheduler.hpp"

#include "endpoint.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "scheduler_inline.hpp"

namespace mk {

SpinLock Scheduler::zombies_lock_{LockLevel::Zombies};
WaitQueue Scheduler::zombies_;
Thread* Scheduler::reaper_ = nullptr;
bool Scheduler::donation_enabled_ = true;

void Scheduler::set_donation_enabled(bool on) {
    donation_enabled_ = on;
    ipc_update_fast_switch();  // the fast path's switch is a donation
}
CpuTable g_cpu_table;

void register_cpu(PerCpu& cpu) {
    MK_ASSERT(cpu.index < kMaxCpus && g_cpu_table.cpus[cpu.index] == nullptr);
    g_cpu_table.cpus[cpu.index] = &cpu;
    uint32_t count = __atomic_load_n(&g_cpu_table.count, __ATOMIC_RELAXED);
    if (cpu.index + 1 > count)
        __atomic_store_n(&g_cpu_table.count, cpu.index + 1, __ATOMIC_RELEASE);
}

void forget_cpus() {
    g_cpu_table = CpuTable{};
    MK_ASSERT(Scheduler::zombies_.empty());
    Scheduler::reaper_ = nullptr;
}

#if !defined(MK_KERNEL)
void (*Scheduler::gap_hook)(Scheduler& gapped) = nullptr;
void (*Scheduler::relock_hook)(Scheduler& relocking) = nullptr;
#endif

Scheduler::HomeLock::~HomeLock() {
    if (other_) unlock_others(*home_, nullptr);
}

void Scheduler::HomeLock::follow(Scheduler& self, const Thread& thread) {
    GapHold hold(&thread);  // read after each gap
    gapped_ = self.lock_others_in_order(*home_, nullptr);
    // Its home changes only with that home's lock held: once the lock
    // taken is its home's, it stays so. A move in the gap (or before the
    // lock was taken) sends us after it.
    while (thread.cpu != home_->cpu_) {
        unlock_others(*home_, nullptr);
        home_ = &(thread.cpu == self.cpu_ ? self : of(thread));
        other_ = home_ != &self;
        if (!other_) return;
        gapped_ |= self.lock_others_in_order(*home_, nullptr);
    }
}

void Scheduler::HomeLocks::lock(Scheduler& self, const Thread& a, const Thread* b) {
    GapHold hold_a(&a);  // both read after each gap
    GapHold hold_b(b);
    for (;;) {
        home_ = &(a.cpu == self.cpu_ ? self : of(a));
        Scheduler* x = home_ != &self ? home_ : nullptr;
        Scheduler* y = b != nullptr && b->cpu != self.cpu_ && b->cpu != a.cpu ? &of(*b) : nullptr;
        if (x == nullptr) {
            x = y;
            y = nullptr;
        }
        if (x == nullptr) return;  // every home is this CPU: its lock is held
        if (y != nullptr && y->cpu_ < x->cpu_) {
            Scheduler* lower = y;
            y = x;
            x = lower;
        }
        gapped_ |= self.lock_others_in_order(*x, y);
        taken_[0] = x;
        taken_[1] = y;
        // Homes change only under the home's lock: if each is one held
        // now, they stay. Else one moved before its lock was taken.
        if (a.cpu == home_->cpu_ && (b == nullptr || self.holds_home_of(*b, x, y))) return;
        unlock();
        taken_[0] = nullptr;
    }
}

void Scheduler::HomeLocks::relock(Scheduler& self, const Thread& a, const Thread* b) {
    unlock();
    taken_[0] = nullptr;
    lock(self, a, b);
}

void Scheduler::HomeLocks::unlock() {
    unlock_others(*taken_[0], taken_[1]);
}

void Scheduler::unlock_others(Scheduler& first, Scheduler* second) {
    uint64_t ours = HeldLocks::bit(LockLevel::SchedulerOther) |
                    (second != nullptr ? HeldLocks::bit(LockLevel::SchedulerThird) : 0);
    uint64_t held = Cpu::held_locks();
    MK_ASSERT((held >> unsigned(LockLevel::SchedulerOther)) ==
                  (ours >> unsigned(LockLevel::SchedulerOther)) ||
              Cpu::this_cpu() == nullptr);
    Cpu::set_held_locks(held & ~ours);
    if (second != nullptr) second->lock_.unlock_raw();
    first.lock_.unlock_raw();
}

bool Scheduler::lock_others_in_order(Scheduler& first, Scheduler* second) {
    MK_ASSERT(&first != this && second != this && (second == nullptr || first.cpu_ < second->cpu_));
    // Not after this CPU queued its running thread elsewhere: that CPU may
    // wait for it to be off this CPU with its lock held (move_locked).
    MK_ASSERT(!current_->switching_out);
    // This CPU's scheduler lock (after an endpoint's lock, or without it:
    // a reply, a move, a placement), nothing above it.
    uint64_t held = Cpu::held_locks();
    MK_ASSERT((held >> unsigned(LockLevel::Scheduler)) == 1 || Cpu::this_cpu() == nullptr);
    Cpu::set_held_locks(held | HeldLocks::bit(LockLevel::SchedulerOther) |
                        (second != nullptr ? HeldLocks::bit(LockLevel::SchedulerThird) : 0));
    // Scheduler locks are held in CPU index order, the lower first
    // (interrupts are off: this CPU's lock is held). For a lower CPU this
    // one's lets go first and is taken again in its place. Index order
    // alone keeps two CPUs from waiting for each other. Another CPU may
    // take this one's lock in the gap (a reply, a move, a wake): the
    // caller checks again what it read before (gapped()).
    if (first.cpu_ > cpu_) {
        first.lock_.lock_raw();
        if (second != nullptr) second->lock_.lock_raw();
        return false;
    }
    lock_.unlock_raw();
#if !defined(MK_KERNEL)
    if (gap_hook != nullptr) gap_hook(*this);
#endif
    first.lock_.lock_raw();
    if (second != nullptr && second->cpu_ < cpu_) {
        second->lock_.lock_raw();
        lock_.lock_raw();
    } else {
        lock_.lock_raw();
        if (second != nullptr) second->lock_.lock_raw();
    }
    return true;
}

bool Scheduler::holds_home_of(const Thread& thread, const Scheduler* x, const Scheduler* y) const {
    return thread.cpu == cpu_ || (x != nullptr && thread.cpu == x->cpu_) ||
           (y != nullptr && thread.cpu == y->cpu_);
}

bool Scheduler::home_lock_held(const Thread& thread) {
    return of(thread).lock_.is_locked();
}

void Scheduler::init(Thread& boot, Thread& idle) {
    // The entry stub releases the lock at the scheduler's own address.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
    static_assert(offsetof(Scheduler, lock_) == 0);
#pragma GCC diagnostic pop
    PerCpu& self = this_cpu();
    MK_ASSERT(&self.scheduler == this);
    LockGuard guard(lock_);
    MK_ASSERT(boot.state == ThreadState::Created && idle.state == ThreadState::Created);
    MK_ASSERT(boot.cpu == self.index && idle.cpu == self.index);
    cpu_ = self.index;
    current_ = &boot;
    idle_ = &idle;
    // Ready but never queued: picked when the queue is empty. Running when
    // it is the code running now.
    idle.state = ThreadState::Ready;
    boot.state = ThreadState::Running;
    register_cpu(self);
}

Scheduler& Scheduler::of(const Thread& thread) {
    return cpu_at(thread.cpu).scheduler;
}

void Scheduler::set_home_locked(Thread& thread, uint32_t cpu, uint32_t mask) {
    if (mask == 0) mask = 1u << cpu;
    MK_ASSERT(thread.state == ThreadState::Created && cpu_online(cpu) &&
              (mask & (1u << cpu)) != 0 && (mask & ~online_mask()) == 0);
    thread.cpu = cpu;
    thread.affinity = mask;
}

uint32_t Scheduler::online_mask() {
    uint32_t mask = 0;
    for (uint32_t i = 0, n = cpu_count(); i < n; ++i) {
        if (cpu_online(i)) mask |= 1u << i;
    }
    return mask;
}

size_t Scheduler::load_locked() const {
    size_t load = (current_ != idle_ ? 1 : 0) + handoff_.size() + ready_.size();
    // Not the reaper: it runs for a moment after each user thread's end,
    // and its CPU would look busy to every spawn that follows an exit.
    const Thread* r = reaper_;
    if (r != nullptr && r->cpu == cpu_ && load > 0 &&
        (r == current_ || r->state == ThreadState::Ready)) {
        --load;
    }
    return load;
}

uint32_t Scheduler::least_loaded_locked(uint32_t mask, uint32_t prefer, bool count_caller) {
    Scheduler& self = this_cpu().scheduler;
    uint32_t best = kMaxCpus;
    size_t best_load = 0;
    for (uint32_t i = 0; i < kMaxCpus; ++i) {
        if ((mask & (1u << i)) == 0) continue;
        size_t load = HomeLock(self, cpu_at(i).scheduler)->load_locked();
        if (i == self.cpu_ && !count_caller && self.current_ != self.idle_ && load > 0) --load;
        if (best == kMaxCpus || load < best_load || (load == best_load && i == prefer)) {
            best = i;
            best_load = load;
        }
    }
    MK_ASSERT(best != kMaxCpus);
    return best;
}

void Scheduler::place_locked(Thread& thread, uint32_t mask, uint32_t prefer) {
    MK_ASSERT(thread.state == ThreadState::Created && mask != 0 && (mask & ~online_mask()) == 0);
    thread.cpu = least_loaded_locked(mask, prefer);
    thread.affinity = mask;
}

uint32_t Scheduler::spawn_home(uint32_t mask) {
    Scheduler& self = this_cpu().scheduler;
    LockGuard guard(self.lock_);
    return least_loaded_locked(mask, self.cpu_, false);
}

Result<uint32_t> Scheduler::set_affinity(Thread& thread, uint32_t mask) {
    LockGuard guard(lock_);  // a move takes the new home's lock too (HomeLock)
    return set_affinity_locked(thread, mask);
}

Result<uint32_t> Scheduler::set_affinity_locked(Thread& thread, uint32_t mask) {
    if (mask == 0 || (mask & ~online_mask()) != 0) return Error::InvalidArgument;
    // Dead is looked at again under the second HomeLock: a kill from
    // another CPU may land in between (or in either's gap).
    {
        HomeLock home(*this, thread);
        if (thread.state == ThreadState::Dead) return Error::BadState;
        if ((mask & (1u << thread.cpu)) != 0) {
            thread.affinity = mask;
            drop_move_locked(thread);  // where it is will do: an earlier move asked is void
            return thread.cpu;
        }
    }
    // The loads are read one CPU at a time, with no other CPU's lock held.
    uint32_t dest = least_loaded_locked(mask, thread.cpu);
    HomeLock home(*this, thread);
    if (thread.state == ThreadState::Dead) return Error::BadState;  // killed meanwhile
    thread.affinity = mask;
    if (thread.state == ThreadState::Created) {
        thread.cpu = dest;  // nothing of it is loaded anywhere yet
    } else if (thread.cpu == cpu_) {
        request_move_locked(thread, dest);
    } else {
        // Its home CPU may hold some of it in its registers (the FPU): that
        // CPU moves it. Until then it stays where it is.
        thread.move_to = dest;
        if (!thread.move_hook.is_linked()) home->moves_.push_back(thread);
        ++counters_.notifies;
        Cpu::notify_cpu(home->cpu_);
    }
    return dest;
}

bool Scheduler::movable_locked(const Thread& thread) const {
    switch (thread.state) {
        case ThreadState::Created:
            return true;
        case ThreadState::Ready:
        case ThreadState::Blocked:
            return Cpu::resumes_at_frame(thread.context) || thread.stack_holds_no_cpu;
        case ThreadState::Running:
            return &thread == current_ && at_boundary_;
        case ThreadState::Dead:
            break;
    }
    return false;
}

void Scheduler::request_move_locked(Thread& thread, uint32_t dest) {
    MK_ASSERT(thread.cpu == cpu_);
    if (dest == cpu_ || thread.state == ThreadState::Dead) {
        drop_move_locked(thread);
    } else if (&thread != current_ && movable_locked(thread)) {
        // (The running thread moves only where a switch follows at once:
        // at_user_boundary, do_moves_locked; here it waits on the list.)
        move_locked(thread, dest);
    } else {
        thread.move_to = dest;
        if (!thread.move_hook.is_linked()) moves_.push_back(thread);
    }
}

void Scheduler::do_moves_locked() {
    // The running thread last: once it is queued on its new home
    // (switching_out), that CPU may spin on it with its lock held until
    // this one switches away, so no other CPU's lock may be taken here
    // after it (HomeLock asserts as much). The list is looked at afresh
    // after each move: in a move's gap (a lower CPU's lock taken) another
    // CPU may kill a thread on it (which unlinks it) or ask a move.
    for (;;) {
        Thread* t = nullptr;
        for (Thread& c : moves_) {
            if (&c != current_ && movable_locked(c)) {
                t = &c;
                break;
            }
        }
        if (t == nullptr) break;
        move_locked(*t, t->move_to);  // unlinks it, or leaves it not movable
    }
    if (current_->move_hook.is_linked() && movable_locked(*current_))
        move_locked(*current_, current_->move_to);
}

void Scheduler::drop_move_locked(Thread& thread) {
    if (thread.move_hook.is_linked()) of(thread).moves_.erase(MoveList::s_iterator_to(thread));
    thread.move_to = Thread::kNoMove;
}

void Scheduler::move_locked(Thread& thread, uint32_t dest) {
    MK_ASSERT(thread.cpu == cpu_ && &thread != idle_ && cpu_online(dest));
    MK_ASSERT(movable_locked(thread) || thread.state == ThreadState::Dead);
    drop_move_locked(thread);
    if (dest == cpu_ || thread.state == ThreadState::Dead) return;
    // Thread::cpu changes with both homes' locks held: this CPU's and the
    // new one's, in index order (no endpoint lock).
    GapHold hold(&thread);  // Thread::destroy waits for the move to be done
    HomeLock to(*this, cpu_at(dest).scheduler);
    if (to.gapped()) [[unlikely]] {
        // Another CPU took this CPU's lock while it was let go: a thread
        // that died (a kill) stays; one for which a new move was asked
        // (set_affinity) waits for that one, on the move list already; one
        // whose mask no longer allows `dest` stays; one no longer movable
        // (a wake keeps a thread movable, but insurance) waits on the list.
        if (thread.state == ThreadState::Dead || thread.move_to != Thread::kNoMove ||
            (thread.affinity & (1u << dest)) == 0)
            return;
        if (!movable_locked(thread)) {
            thread.move_to = dest;
            moves_.push_back(thread);
            return;
        }
    }
    ++counters_.moves;
    // No longer this CPU's to run: a donation to it is void. (After the
    // gap, in which another CPU may have made it the target: donate_locked.)
    if (donate_target_ == &thread) donate_target_ = nullptr;
    switch (thread.state) {
        case ThreadState::Created:
            thread.cpu = dest;
            break;
        case ThreadState::Running:
            // This CPU's running thread, at the user boundary: queued at
            // its new home now, which runs it once this CPU is off its
            // stack (switching_out, cleared after the switch that follows:
            // schedule_locked leaves a thread that is no longer Running
            // alone, switch_locked unloads it).
            thread.state = ThreadState::Ready;
            thread.stack_holds_no_cpu = true;  // as the switch would say: at the boundary
            thread.switching_out = true;
            thread.cpu = dest;
            enqueue_locked(thread);
            switched_from_ = &thread;  // the switch that follows leaves it
            need_resched_ = true;
            break;
        case ThreadState::Ready:
            remove_ready_locked(thread);
            Cpu::unload_context(thread.context);
            thread.cpu = dest;
            enqueue_locked(thread);
            break;
        case ThreadState::Blocked:
            Cpu::unload_context(thread.context);
            if (thread.timeout_hook.is_linked()) {
                // The ticks left, counted on the new CPU's clock from now.
                // At least one: an expired deadline was handled at its tick.
                uint64_t left = thread.deadline - counters_.ticks;
                timeouts_.erase(TimeoutSet::s_iterator_to(thread));
                uint64_t now = to->counters_.ticks;
                if (left < Thread::kNeverExpires - now) {
                    thread.deadline = now + left;
                    to->timeouts_.insert(thread);
                } else {
                    thread.deadline = Thread::kNeverExpires;
                }
            }
            thread.cpu = dest;
            break;
        case ThreadState::Dead:
            break;
    }
}

bool Scheduler::balance_wanted_locked() const {
    if (current_ == idle_ || ready_.empty()) return false;
    for (uint32_t i = 0, n = cpu_count(); i < n; ++i) {
        if (i == cpu_ || !cpu_online(i)) continue;
        const Scheduler& other = cpu_at(i).scheduler;
        if (__atomic_load_n(&other.current_, __ATOMIC_RELAXED) == other.idle_) return true;
    }
    return false;
}

void Scheduler::balance_locked() {
    for (uint32_t i = 0, n = cpu_count(); i < n; ++i) {
        if (i == cpu_ || !cpu_online(i)) continue;
        if (HomeLock(*this, cpu_at(i).scheduler)->load_locked() != 0) continue;
        uint32_t bit = 1u << i;
        // Not one that has not run yet (a process's first thread placed
        // beside its spawner, which may soon block on it), nor one queued
        // since the last tick (a server just woken is about to run, its
        // client blocked on it): moving either would part a client and its
        // server for good.
        uint32_t now = uint32_t(counters_.ticks);
        Thread* t = ready_.find_if([this, bit, now](const Thread& c) {
            return (c.affinity & bit) != 0 && c.ran && now - c.ready_since >= 2 &&
                   movable_locked(c);
        });
        if (t == nullptr) continue;
        move_locked(*t, i);
        ++counters_.balanced;
        return;
    }
}

SchedCounters Scheduler::total_counters() {
    SchedCounters t{};
    for (uint32_t i = 0, n = cpu_count(); i < n; ++i) {
        PerCpu* c = g_cpu_table.cpus[i];
        if (c == nullptr) continue;
        add_counts(t, c->scheduler.counters());
    }
    return t;
}

SchedCounters Scheduler::counters() {
    LockGuard guard(lock_);
    SchedCounters c = counters_;
    c.blocks += fast_switches_;
    c.wakeups += fast_switches_;
    c.direct_switches += fast_switches_;
    c.switches += fast_switches_;
    c.wakeups += fast_replies_;
    c.donations_taken += fast_replies_;
    c.switches += fast_replies_;
    c.blocks += fast_blocks_;
    c.switches += fast_blocks_;
    return c;
}

uint64_t Scheduler::ticks() {
    LockGuard guard(lock_);
    return counters_.ticks;
}

size_t Scheduler::ready_count() {
    LockGuard guard(lock_);
    return handoff_.size() + ready_.size();
}

Status Scheduler::start(Thread& thread) {
    LockGuard guard(lock_);
    HomeLock home(*this, thread);  // it may be homed on another CPU
    // Dead: killed (or destroyed) before it ever ran. Anything else: started already.
    if (thread.state != ThreadState::Created) return Error::BadState;
    thread.state = ThreadState::Ready;
    enqueue_locked(thread);
    return Error::None;
}

void Scheduler::enqueue_locked(Thread& thread) {
    Scheduler& home = of(thread);
    MK_ASSERT(home.lock_.is_locked());
    home.push_ready_locked(thread);
    if (home.cpu_ != Cpu::cpu_index() && home.current_ == home.idle_) {
        // It may be about to halt: an interrupt ends the halt, or, sent
        // before it, is taken as soon as it enables interrupts to halt
        // (idle_once); and at the interrupt's end preempt_if_needed() runs
        // the thread. Either alone keeps the wake from being slept through
        // (tests/model/smp_wake.pml).
        ++counters_.notifies;
        Cpu::notify_cpu(home.cpu_);
    }
}

void Scheduler::exit_current() {
    // Its callers are failed under scheduler locks alone (their reply
    // waits are theirs). It waits on no endpoint: no endpoint lock.
    LockGuard guard(lock_);
    current_->state = ThreadState::Dead;
    drop_move_locked(*current_);
    ipc_release_thread_locked(*current_);
    if (current_->process == nullptr) {
        // A kernel thread's joiner, once awake, may destroy it: not while
        // the wake lets go of this CPU's lock for the joiner's (a gap),
        // with this CPU still on its stack. (A user thread is the
        // reaper's, never joined.)
        GapHold self(current_);
        wake_joiner_locked(*current_);
    }
    bury_locked(*current_);
    // The rest of the quantum goes to the reaper (if it shares this CPU),
    // which ends the process if this was its last thread and so tells its
    // supervisor at once (who may hand it on: a parent waiting in wait4
    // runs next).
    if (current_->process != nullptr) set_donate_target_locked(reaper_);
    schedule_locked(true);
    MK_PANIC("dead thread %s ran again", current_->name());
}

Thread* Scheduler::held_reply_wait_owner(Thread& thread, GapHold& hold) {
    if (thread.cpu == cpu_) return reply_wait_owner(thread);  // its home lock: held
    HomeLock home(*this, thread);
    Thread* owner = reply_wait_owner(thread);
    hold.take(owner);
    return owner;
}

SpinLock* Scheduler::lock_of(Endpoint* endpoint) {
    return endpoint != nullptr ? &endpoint->lock() : nullptr;
}

Ref<Endpoint> Scheduler::pin_endpoint_waited_on(Thread& thread) {
    Ref<Endpoint> endpoint;
    {
        LockGuard guard(lock_);
        HomeLock home(*this, thread);
        endpoint = Ref<Endpoint>::retain(Endpoint::waited_on_locked(thread));
    }
#if !defined(MK_KERNEL)
    if (relock_hook != nullptr) relock_hook(*this);
#endif
    return endpoint;
}

void Scheduler::kill(Thread& thread) {
    for (;;) {
        // The lock of the endpoint it waits on comes before this CPU's (the
        // lock order): which one is read first, under its home lock, and
        // checked again once both are held.
        Ref<Endpoint> endpoint = pin_endpoint_waited_on(thread);  // released after the guard
        IpcGuard guard(lock_of(endpoint.get()));  // that endpoint's lock (none: none)
        if (kill_locked(thread, endpoint.get())) return;
    }
}

bool Scheduler::kill_locked(Thread& thread, const Endpoint* endpoint) {
    MK_ASSERT(&thread != current_ &&
              (endpoint == nullptr ||
               (holds_here(LockLevel::Endpoint) && this_cpu().endpoint_lock == &endpoint->lock())));
    // Once Dead it may be destroyed as soon as its home lock is free, but
    // its callers are failed and it is buried after that: held until then.
    GapHold dying(nullptr);
    GapHold owner_hold(nullptr);
    for (;;) {
        // Its home's lock, and if it waits for a reply the lock that guards
        // that wait (wake_locked); again if that wait moved while this
        // CPU's lock was let go.
        Thread* owner = held_reply_wait_owner(thread, owner_hold);
        HomeLocks home(*this, thread, owner);
        if (reply_wait_owner(thread) != owner) [[unlikely]]
            continue;
        // A wait on another endpoint than the one whose lock is held (it
        // was received, completed, or a new one began before this CPU had
        // the locks): kill() starts over.
        if (Endpoint::waited_on_locked(thread) != endpoint) [[unlikely]]
            return false;
        MK_ASSERT(&thread != home->idle_);
        if (thread.process != nullptr && thread.state != ThreadState::Created) {
            if (thread.state == ThreadState::Dead) return true;
            thread.exit_requested = true;
            if (thread.state == ThreadState::Blocked) {
                wake_at_home_locked(thread, WakeReason::Interrupted);
            } else if (thread.state == ThreadState::Running) {
                // On another CPU, in user mode or on its way there: the
                // interrupt makes it enter the kernel, whose way back to user
                // mode ends it (before_return_to_user).
                ++counters_.notifies;
                Cpu::notify_cpu(thread.cpu);
            }
            return true;
        }
        switch (thread.state) {
            case ThreadState::Created:  // on no queue; start() now refuses it
                break;
            case ThreadState::Running:
                MK_PANIC("kill: kernel thread %s runs on cpu %u", thread.name(), thread.cpu);
            case ThreadState::Ready:
                remove_ready_locked(thread);
                break;
            case ThreadState::Blocked:
                assert_reply_wait_guarded(thread);
                if (thread.waiting_on != nullptr) thread.waiting_on->remove(thread);
                thread.waiting_on = nullptr;
                break;
            case ThreadState::Dead:  // ended already
                return true;
        }
        cancel_timeout_locked(thread);
        if (home->donate_target_ == &thread)
            __atomic_store_n(&home->donate_target_, nullptr, __ATOMIC_RELAXED);
        thread.state = ThreadState::Dead;
        dying.take(&thread);  // under its home lock, which destroy takes
        drop_move_locked(thread);
        break;
    }
    // Its home's lock is released: the reaper's wake takes the reaper's.
    ipc_release_thread_locked(thread);
    if (thread.process == nullptr) wake_joiner_locked(thread);
    bury_locked(thread);
    return true;
}

void Scheduler::bury_locked(Thread& thread) {
    if (thread.process == nullptr) return;  // kernel threads: their creator destroys them
    MK_ASSERT(reaper_ != nullptr && !thread.queue_hook.is_linked());
    // The push and the wake under the reaper's home lock: the reaper looks
    // at its list under that lock, so it either finds this thread there or
    // is Blocked by then and wakes. And the push only once that lock is
    // held: for a lower CPU, HomeLock lets go of this CPU's lock for a
    // moment, and a reaper that found this thread then could take this
    // CPU's lock in that gap and free the stack this CPU still runs on
    // (Thread::destroy takes no endpoint lock).
    HomeLock home(*this, *reaper_);
    {
        LockGuard guard(zombies_lock_);
        zombies_.push_back(thread);
    }
    wake_at_home_locked(*reaper_, WakeReason::Woken);
}

void Scheduler::set_reaper(Thread& reaper) {
    LockGuard guard(zombies_lock_);
    MK_ASSERT(reaper_ == nullptr && zombies_.empty());
    reaper_ = &reaper;
}

Thread* Scheduler::next_zombie() {
    Thread* zombie;
    for (;;) {
        LockGuard guard(lock_);  // bury_locked()'s wake takes it after its push
        MK_ASSERT(current_ == reaper_);
        {
            LockGuard list(zombies_lock_);
            zombie = zombies_.pop_front();
        }
        if (zombie != nullptr) break;  // Thread::destroy waits for its CPU to leave it
        block_current_locked(nullptr, 0);
    }
    return zombie;
}

bool Scheduler::off_cpu_locked(const Thread& thread) {
    MK_ASSERT(thread.state == ThreadState::Dead || thread.state == ThreadState::Created);
    HomeLock off_its_stack(*this, thread);
    return __atomic_load_n(&thread.gap_holds, __ATOMIC_ACQUIRE) == 0;
}

// --- Blocking and waking ---

WakeReason Scheduler::block_current_locked(WaitQueue* queue, uint64_t timeout_ticks) {
    Thread* self = current_;
    mark_current_blocked_locked(queue, timeout_ticks);
    schedule_locked(true);
    // Not reached by a thread that blocked at its frame (Thread::at_frame):
    // it resumes in mk_resume_at_frame.
    return self->wake_reason;
}

void Scheduler::mark_current_blocked_locked(WaitQueue* queue, uint64_t timeout_ticks) {
    mark_current_blocked_inline(queue, timeout_ticks);
}

void Scheduler::arm_timeout_locked(Thread& thread, uint64_t timeout_ticks) {
    // Saturating: ticks + timeout past UINT64_MAX (user code passes
    // UINT64_MAX for "forever") is UINT64_MAX, which never expires, so it
    // is not armed at all.
    uint64_t now = counters_.ticks;
    if (timeout_ticks < Thread::kNeverExpires - now) {
        thread.deadline = now + timeout_ticks;
        timeouts_.insert(thread);
    } else {
        thread.deadline = Thread::kNeverExpires;
    }
}

WakeReason Scheduler::wake_then_block_locked(Thread& thread, WaitQueue* queue,
                                             uint64_t timeout_ticks) {
    Thread* self = current_;
    {
        HomeLocks homes(*this, thread, reply_wait_owner(thread));
        wake_at_home_locked(thread, WakeReason::Woken);
        set_donate_target_locked(&thread);
        if (homes.gapped() && self->exit_requested) [[unlikely]] {
            // Killed while this CPU's lock was let go: the kill found this
            // thread Running and told its CPU, which a block now would
            // sleep through. No new wait, as block_in_locked() decides.
            ipc_abort_locked(*self, WakeReason::Interrupted);
            self->wake_reason = WakeReason::Interrupted;
            return WakeReason::Interrupted;
        }
        mark_current_blocked_locked(queue, timeout_ticks);
        MK_ASSERT(home_locked_here(thread));  // a call links on thread's callers queue
    }
    schedule_locked(true);
    // Not reached by a thread that blocked at its frame, as in
    // block_current_locked().
    return self->wake_reason;
}

WakeReason Scheduler::switch_away_locked() {
    Thread* self = current_;
    MK_ASSERT(self->state == ThreadState::Blocked);
    schedule_locked(true);
    // Not reached by a thread that blocked at its frame.
    return self->wake_reason;
}

WakeReason Scheduler::wake_and_block_locked(Thread& thread, WaitQueue* queue,
                                            uint64_t timeout_ticks) {
    return wake_and_block_inline(thread, queue, timeout_ticks);
}

void Scheduler::prepare_block() {
    LockGuard guard(lock_);
    current_->block_armed = true;
    current_->wake_pending = false;
    current_->wake_reason = WakeReason::None;
}

void Scheduler::cancel_block() {
    LockGuard guard(lock_);
    current_->block_armed = false;
    current_->wake_pending = false;
}

WakeReason Scheduler::block(WaitQueue* queue, uint64_t timeout_ticks) {
    assert_may_yield();
    LockGuard guard(lock_);
    Thread* self = current_;
    if (self->wake_pending) {
        // A wake arrived after prepare_block(): do not sleep, it would be lost.
        self->wake_pending = false;
        self->block_armed = false;
        ++counters_.wake_races_caught;
        return self->wake_reason;
    }
    return block_current_locked(queue, timeout_ticks);
}

void Scheduler::join(Thread& thread) {
    assert_may_yield();
    LockGuard guard(lock_);
    for (;;) {
        {
            // Its end marks it Dead and then reads its joiner, both under
            // its home lock: either it is Dead now, or its end finds this
            // thread there, and wakes it once it is Blocked (the wake
            // takes this CPU's lock, held until the switch below).
            HomeLock home(*this, thread);
            if (thread.state == ThreadState::Dead) return;
            MK_ASSERT(thread.joiner == nullptr || thread.joiner == current_);
            MK_ASSERT(thread.state != ThreadState::Created);  // never started: never ends
            MK_ASSERT(thread.process == nullptr);             // a user thread is the reaper's
            thread.joiner = current_;
        }
        block_current_locked(nullptr, 0);
    }
}

void Scheduler::wake_joiner_locked(Thread& thread) {
    GapHold held(nullptr);
    Thread* joiner;
    {
        HomeLock home(*this, thread);
        joiner = thread.joiner;
        thread.joiner = nullptr;
        held.take(joiner);
    }
    if (joiner != nullptr) wake_locked(*joiner);
}

bool Scheduler::wake_locked(Thread& thread, WakeReason reason) {
    // A reply wait is guarded by its owner's home lock too (a server's
    // callers queue, or the caller's own for a saved reply): a timeout, a
    // kill, a stray wake or a failure takes it as well.
    if (thread.cpu == cpu_ && thread.ipc->op != IpcState::Op::ReplyWait) [[likely]]
        return wake_at_home_locked(thread, reason);  // this CPU's lock is held
    return wake_with_home_locks_locked(thread, reason);
}

bool Scheduler::wake_with_home_locks_locked(Thread& thread, WakeReason reason) {
    return wake_checked_locked(thread, reason, nullptr, false) == WakeResult::Woken;
}

Scheduler::WakeResult Scheduler::wake_waiting_on_locked(Thread& thread, WakeReason reason,
                                                        const Endpoint* endpoint) {
    return wake_checked_locked(thread, reason, endpoint, true);
}

Scheduler::WakeResult Scheduler::wake_checked_locked(Thread& thread, WakeReason reason,
                                                     const Endpoint* endpoint, bool check,
                                                     Donate donate) {
    bool gapped = false;  // in any round
    GapHold owner_hold(nullptr);
    for (;;) {
        Thread* owner = held_reply_wait_owner(thread, owner_hold);
        HomeLocks homes(*this, thread, owner);
        gapped |= homes.gapped();
        // The wait may have changed before its locks were all held: saved
        // or answered by a thread of another CPU (replies take no endpoint
        // lock), or taken onto a receiver's callers queue while this
        // CPU's lock was let go; another lock guards it now, or none.
        if (reply_wait_owner(thread) != owner) [[unlikely]]
            continue;
        // On another endpoint than the one whose lock is held (or on none):
        // the caller looks again.
        if (check && Endpoint::waited_on_locked(thread) != endpoint) [[unlikely]]
            return WakeResult::LookAgain;
        // A timeout, once this CPU's lock was let go: the wait may have
        // ended, and another begun (not due).
        if (gapped && reason == WakeReason::TimedOut && !timeout_still_due_locked(thread))
            [[unlikely]]
            return WakeResult::NotWoken;
        if (!wake_at_home_locked(thread, reason)) return WakeResult::NotWoken;
        if (donate == Donate::Yes) donate_locked(thread);
        return WakeResult::Woken;
    }
}

bool Scheduler::timeout_still_due_locked(const Thread& thread) {
    return thread.state == ThreadState::Blocked && thread.timeout_hook.is_linked() &&
           thread.deadline <= of(thread).counters_.ticks;
}

bool Scheduler::wake_at_home_locked(Thread& thread, WakeReason reason) {
    Scheduler& home = of(thread);
    MK_ASSERT(&thread != home.idle_ && home.lock_.is_locked());
    if (thread.ipc->op == IpcState::Op::ReplyWait) [[unlikely]] {
        // A timeout, a kill or a stray wake: the lock of the wait is held too.
        Thread* owner = reply_wait_owner(thread);
        MK_ASSERT(owner == nullptr || home_lock_held(*owner));
    }
    if (thread.state != ThreadState::Blocked) {
        // Armed by prepare_block() but not asleep yet: it may be Running, or
        // Ready because the timer preempted it in between. Either way the
        // wake must be remembered, or block() would sleep through it.
        if (thread.block_armed && thread.state != ThreadState::Dead) {
            thread.wake_pending = true;
            thread.wake_reason = reason;
        }
        ++counters_.wakes_not_blocked;
        return false;
    }
    end_wait_locked(thread, reason);
    thread.state = ThreadState::Ready;
    if (thread.cpu == cpu_) [[likely]] {
        // enqueue_locked(), on this CPU: end_wait_locked() unlinked it.
        MK_ASSERT(!thread.queue_hook.is_linked());
        thread.ready_since = uint32_t(counters_.ticks);
        ready_.link_back(thread);
    } else {
        enqueue_locked(thread);
    }
    ++counters_.wakeups;
    if (reason == WakeReason::TimedOut) ++counters_.timeouts;
    return true;
}

void Scheduler::cancel_timeout_locked(Thread& thread) {
    // On the timeout set of its home CPU, where it blocked.
    if (thread.timeout_hook.is_linked())
        of(thread).timeouts_.erase(TimeoutSet::s_iterator_to(thread));
    thread.deadline = 0;
}

bool Scheduler::wake(Thread& thread, WakeReason reason) {
    return wake_from_anywhere(thread, reason, false);
}

bool Scheduler::wake_from_anywhere(Thread& thread, WakeReason reason, bool donate) {
    for (;;) {
        // It may wait in an IPC operation: the lock of its endpoint first
        // (as kill() does).
        Ref<Endpoint> endpoint = pin_endpoint_waited_on(thread);  // released after the guard
        IpcGuard guard(lock_of(endpoint.get()));  // that endpoint's lock (none: none)
        WakeResult r = wake_checked_locked(thread, reason, endpoint.get(), true,
                                           donate ? Donate::Yes : Donate::No);
        if (r == WakeResult::LookAgain) continue;
        // A thread of another CPU runs there now: nothing to yield to here.
        return r == WakeResult::Woken && (!donate || thread.cpu == cpu_);
    }
}

// --- Donation ---

void Scheduler::set_donate_target_locked(Thread* thread) {
    // A thread of this CPU stays one while this CPU's lock is held.
    if (donation_enabled_ && (thread == nullptr || thread->cpu == cpu_)) donate_target_ = thread;
}

void Scheduler::donate_elsewhere_locked(Thread& thread) {
    Scheduler& home = of(thread);
    MK_ASSERT(&home != this && home.lock_.is_locked());
    if (!donation_enabled_ || thread.state != ThreadState::Ready) return;
    // That CPU's own donation, set and about to be yielded to (or another
    // CPU's "now" on its way), stays: this thread then waits its turn.
    if (home.donate_target_ != nullptr) return;
    // An idle CPU was told by the wake (enqueue_locked), and runs the first
    // of its queues at the end of that interrupt: when that is this thread,
    // nothing more is needed.
    if (home.current_ == home.idle_ && home.handoff_.empty() && home.ready_.front() == &thread)
        return;
    // Read without the lock by yield_to_donate_target() on that CPU. The
    // interrupt's end runs it (preempt_locked); a kill or a move of it
    // meanwhile clears it, and then nothing is preempted. Direct switches
    // there leave it alone.
    __atomic_store_n(&home.donate_target_, &thread, __ATOMIC_RELAXED);
    ++counters_.remote_donations;
    ++counters_.notifies;
    Cpu::notify_cpu(home.cpu_);
}

void Scheduler::set_donate_target(Thread* thread) {
    LockGuard guard(lock_);
    set_donate_target_locked(thread);
}

void Scheduler::assert_may_yield() const {
    MK_ASSERT(!in_irq());
    MK_ASSERT(Cpu::held_locks() == 0);
}

void Scheduler::yield_now() {
    assert_may_yield();
    Cpu::raise_yield_vector();
}

void Scheduler::unblock_yield(Thread& thread) {
    assert_may_yield();
    // Interrupts stay off from the wake to the yield: no timer tick can run
    // (or end, and let someone free) the woken thread before the yield picks
    // it, and the donate target is consumed by exactly this yield.
    bool irq_was_enabled = Cpu::save_and_disable_interrupts();
    bool woke = wake_from_anywhere(thread, WakeReason::Woken, true);
    if (woke && donation_enabled_) Cpu::raise_yield_vector();
    Cpu::restore_interrupts(irq_was_enabled);
}

void Scheduler::yield_to_donate_target() {
    assert_may_yield();
    // Not when no target was set (the woken thread was of another CPU,
    // which runs it: donate_locked): then the caller goes on, as after a
    // wake with donation off. Read without the lock: another CPU may set
    // one (a donation of its own, "wake there, now") or clear one (a
    // kill), and with interrupts on the interrupt it sent may take it
    // first; so the yield looks again under the lock, and without a
    // target it does nothing (yield_only_to_target_): the caller keeps its
    // place and its quantum.
    if (!donation_enabled_ || __atomic_load_n(&donate_target_, __ATOMIC_RELAXED) == nullptr) return;
    bool irq_was_enabled = Cpu::save_and_disable_interrupts();
    yield_only_to_target_ = true;
    Cpu::raise_yield_vector();
    Cpu::restore_interrupts(irq_was_enabled);
}

void Scheduler::donate(Thread& thread) {
    assert_may_yield();
    if (!donation_enabled_) return;
    bool irq_was_enabled = Cpu::save_and_disable_interrupts();
    set_donate_target(&thread);
    Cpu::raise_yield_vector();
    Cpu::restore_interrupts(irq_was_enabled);
}

// --- Switching ---

void Scheduler::switch_to_locked(Thread& next) {
    enter_switch_locked();
    Thread* prev = current_;
    MK_ASSERT(prev->state != ThreadState::Running && prev->state != ThreadState::Ready);
    MK_ASSERT(next.state == ThreadState::Blocked && next.waiting_on == nullptr);
    MK_ASSERT(!next.queue_hook.is_linked() && next.cpu == cpu_);
    // next's wait ends here, as in wake_locked() but straight to Running.
    cancel_timeout_locked(next);
    next.wake_reason = WakeReason::Woken;
    ++counters_.wakeups;
    // A donate target is left alone: one of another CPU ("wake there,
    // now"), whose interrupt runs it (preempt_locked). This CPU sets none
    // it does not take at its next yield or block.
    ++counters_.direct_switches;
    switch_locked(*prev, next, false);
}

void Scheduler::remove_ready_locked(Thread& thread) {
    Scheduler& home = of(thread);
    (thread.lent_quantum ? home.handoff_ : home.ready_).remove(thread);
    thread.lent_quantum = false;
}

Thread* Scheduler::pop_ready_locked(bool* keep_quantum) {
    *keep_quantum = !handoff_.empty();
    Thread* next = *keep_quantum ? handoff_.pop_front() : ready_.pop_front();
    if (next != nullptr) next->lent_quantum = false;
    return next;
}

void Scheduler::hand_off_locked(Thread& thread) {
    if (!donation_enabled_ || thread.cpu != cpu_ || thread.state != ThreadState::Ready ||
        thread.lent_quantum)
        return;
    // Off the ready queue (Ready, not lent: it is there) and onto the
    // hand-off queue, through the list's node operations (as the fast
    // path's): this follows every wake of a caller a busy server answers.
    WaitQueue::unlink(thread);
    thread.lent_quantum = true;
    handoff_.link_back(thread);
}

void Scheduler::schedule_locked(bool honor_donation) {
    enter_switch_locked();
    Thread* prev = current_;
    Thread* target = donate_target_;
    donate_target_ = nullptr;  // consumed by this switch, whatever it picks

    Thread* next = nullptr;
    if (honor_donation && target != nullptr) {
        // A thread of this CPU (a move clears it: move_locked), Ready. (A
        // Created one, a user yield's, may be homed elsewhere since.)
        if (target->state == ThreadState::Ready && target->cpu == cpu_ && target != prev &&
            target != idle_) {
            remove_ready_locked(*target);
            next = target;
            ++counters_.donations_taken;
        } else {
            ++counters_.donation_fallbacks;
        }
    }
    // The quantum is over: the threads that shared it go to the back of the
    // ready queue, in their order, ahead of the one that used it up.
    if (quantum_left_ == 0) {
        while (Thread* t = handoff_.pop_front()) {
            t->lent_quantum = false;
            push_ready_locked(*t);
        }
    }
    // (A thread that moved as it ran is Ready on its new home's queue
    // already: move_locked.)
    if (prev->state == ThreadState::Running) {
        prev->state = ThreadState::Ready;
        if (prev != idle_ && next != nullptr && quantum_left_ != 0) {
            // A donor lends the rest of its quantum and waits at the front:
            // it runs again as soon as the thread it woke blocks. (With
            // nothing left to lend it goes to the back like any other.)
            prev->lent_quantum = true;
            handoff_.push_front(*prev);
        } else if (prev != idle_) {
            push_ready_locked(*prev);
        }
    }
    // A donation, or a thread of the hand-off queue, goes on with the
    // quantum; anything else starts a fresh one. (The idle thread's is
    // always whole: it got a fresh one and its ticks do not count.)
    bool keep_quantum = next != nullptr;
    if (next == nullptr) {
        next = pop_ready_locked(&keep_quantum);
        if (next == nullptr) next = idle_;
    }
    switch_locked(*prev, *next, !keep_quantum);
}

void Scheduler::switch_locked(Thread& prev, Thread& next, bool fresh_quantum) {
    // A thread that moved here from a CPU still on its stack: that CPU is
    // about to switch away (it holds no lock this CPU holds, and waits for
    // nothing), so this waits a few instructions at most. Before anything
    // of `next` is written: that CPU still reads its state (schedule_locked
    // requeues a thread it finds Running).
    while (__atomic_load_n(&next.switching_out, __ATOMIC_ACQUIRE))
        [[unlikely]] __builtin_ia32_pause();
    bool boundary = at_boundary_;
    at_boundary_ = false;
    next.state = ThreadState::Running;
    // A donation or a direct switch passes the rest of the quantum on: a pair
    // of threads handing the CPU back and forth shares one quantum and
    // cannot starve the ready queue.
    if (fresh_quantum || quantum_left_ == 0) quantum_left_ = kQuantumTicks;
    need_resched_ = false;
    if (&next == &prev) return;
    // A thread that moves away (move_locked: switched_from_) is its new
    // home's already, which may move it on (under its lock and the next
    // home's): of it, this reads only what nobody else writes until its
    // switching_out is clear.
    bool moving = switched_from_ == &prev;
    if (!moving) prev.stack_holds_no_cpu = boundary;
    __atomic_store_n(&current_, &next, __ATOMIC_RELAXED);  // balance_wanted_locked looks
    next.ran = true;
    ++counters_.switches;
    if (prev.state == ThreadState::Dead) {
        Cpu::retire_context(prev.context);
    } else if (moving) {
        // Its new home finds it all in its context, and runs it once this
        // switch is done (after_switch_locked).
        Cpu::unload_context(prev.context);
    }
    if (prev.at_frame && prev.state == ThreadState::Blocked) {
        // Blocked in an IPC syscall with nothing on its stack: it gives the
        // stack up and never returns here. To a thread that gave its stack
        // up too (a user thread, which resumes at its frame), the leaner
        // switch between two user threads.
        if (Cpu::resumes_at_frame(next.context))
            Cpu::switch_user_frames(prev.context, next.context);
        Cpu::switch_context_leaving_stack(prev.context, next.context);
    } else {
        Cpu::switch_context(prev.context, next.context);
    }
    // Back on `prev`: whoever switched here still holds its lock for us. A
    // thread switched away at the user boundary may be back on another CPU
    // (it moved): from here on, that CPU's scheduler, never `this`.
    this_cpu().scheduler.after_switch_locked();
}

// --- Entry points of the architecture ---

bool Scheduler::timeout_due_locked() const {
    return !timeouts_.empty() && timeouts_.begin()->deadline <= counters_.ticks;
}

void Scheduler::expire_timeouts() {
    for (;;) {
        Ref<Endpoint> endpoint;  // released after the guard
        {
            LockGuard guard(lock_);
            if (!timeout_due_locked()) return;
            // Homed here: this is its home lock.
            endpoint = Ref<Endpoint>::retain(Endpoint::waited_on_locked(*timeouts_.begin()));
        }
#if !defined(MK_KERNEL)
        if (relock_hook != nullptr) relock_hook(*this);
#endif
        IpcGuard guard(lock_of(endpoint.get()));  // that endpoint's lock (none: none)
        // Whatever happened in between, the set says what is still due; a
        // wait on another endpoint than the one whose lock is held sends
        // this round back for its lock.
        while (timeout_due_locked()) {
            if (wake_waiting_on_locked(*timeouts_.begin(), WakeReason::TimedOut, endpoint.get()) ==
                WakeResult::LookAgain)
                break;
        }
    }
}

bool Scheduler::expire_reply_timeouts_locked() {
    while (timeout_due_locked()) {
        Thread& t = *timeouts_.begin();
        // Only a reply wait, whose op changes under this CPU's lock (t's
        // home) or its guard's, which wake_locked takes and looks at again
        // (wake_with_home_locks_locked). Any other wait goes to the second
        // pass, under the lock of the endpoint it waits on (none: a plain
        // sleep, which could end here too now that a waiter's wait changes
        // only under its home lock, but is rare).
        if (t.ipc->op != IpcState::Op::ReplyWait) return true;
        // And only a wait this CPU's lock guards too (a server homed here,
        // or the caller's own saved reply): with no second lock there is
        // no gap (the second pass's HomeLocks holds both across its gap:
        // Thread::gap_holds). A server's home read here is its home for
        // good while this lock is held.
        Thread* owner = reply_wait_owner(t);
        if (owner != nullptr && owner != &t && owner->cpu != cpu_) return true;
        wake_at_home_locked(t, WakeReason::TimedOut);
    }
    return false;
}

void Scheduler::on_timer_tick() {
    {
        LockGuard guard(lock_);
        ++counters_.ticks;
        // Reply waits this CPU's lock guards end here; any other wait
        // needs the lock of the endpoint it waits on, or a second
        // scheduler lock.
        bool other_wait_due = timeout_due_locked() && expire_reply_timeouts_locked();
        if (!other_wait_due) [[likely]] {
            end_tick_locked();
            return;
        }
    }
    expire_timeouts();
    LockGuard guard(lock_);
    end_tick_locked();
}

void Scheduler::end_tick_locked() {
    if (current_ == idle_) return;
    // A move takes scheduler locks alone (HomeLock): no endpoint lock needed.
    if (balance_wanted_locked()) [[unlikely]]
        balance_locked();
    if (quantum_left_ > 0) --quantum_left_;
    if (quantum_left_ == 0) {
        if (!any_ready_locked()) {
            quantum_left_ = kQuantumTicks;  // nobody to hand over to: a fresh quantum
        } else {
            need_resched_ = true;
        }
    }
}

void Scheduler::preempt_if_needed(bool from_user) {
    bool irq_was_enabled = lock_.lock();
    at_boundary_ = from_user;
    // The moves asked of this CPU (set_affinity_locked), which an interrupt
    // from another CPU may have come for (a move takes the new home's lock
    // too: HomeLock).
    if (!moves_.empty()) [[unlikely]]
        do_moves_locked();
    preempt_locked();
    // Switched away at the user boundary, this thread may be back on
    // another CPU (it moved): that CPU's lock was handed over.
    this_cpu().scheduler.lock_.unlock(irq_was_enabled);
}

void Scheduler::preempt_locked() {
    bool idle_has_work = current_ == idle_ && any_ready_locked();
    // A donation from another CPU (donate_elsewhere_locked) runs its
    // thread now. (A target this CPU set is yielded to before any
    // interrupt's end; one still set is as good a choice as the
    // round-robin's.)
    Thread* target = donate_target_;
    bool donated = target != nullptr && target->state == ThreadState::Ready &&
                   target->cpu == cpu_ && target != current_ && target != idle_;
    if (!need_resched_ && !idle_has_work && !donated) {
        at_boundary_ = false;
        return;
    }
    if (need_resched_ && !idle_has_work) ++counters_.preemptions;
    schedule_locked(donated);  // its switch clears at_boundary_
}

void Scheduler::at_user_boundary() {
    Thread& self = *current_;
    // A look without the lock first (a move is rare): another CPU asks one
    // under this CPU's lock, and the look is redone under it.
    if (__atomic_load_n(&self.move_to, __ATOMIC_RELAXED) == Thread::kNoMove) return;
    bool irq_was_enabled = lock_.lock();  // a move takes the new home's lock too (HomeLock)
    if (self.move_to != Thread::kNoMove) {
        at_boundary_ = true;
        move_locked(self, self.move_to);
        schedule_locked(true);  // its switch cleared at_boundary_
    }
    // Back on its new CPU, whose lock was handed over.
    this_cpu().scheduler.lock_.unlock(irq_was_enabled);
}

void Scheduler::on_notify() {
    // Nothing to do but be interrupted: preempt_if_needed() follows (which
    // runs a thread just queued here, and does the moves asked of this
    // CPU), and the interrupted thread's way back to user mode checks
    // exit_requested.
    MK_ASSERT(in_irq());
}

void Scheduler::on_yield_vector() {
    LockGuard guard(lock_);
    ++counters_.yields;
    bool only_to_target = yield_only_to_target_;
    yield_only_to_target_ = false;
    if (only_to_target && donate_target_ == nullptr) return;  // taken meanwhile
    schedule_locked(true);
}

void Scheduler::finish_switch_in() {
    // The thread that switched to us holds lock_; we go on with interrupts on.
    after_switch_locked();
    lock_.unlock(true);
}

bool Scheduler::idle_once() {
    bool irq_was_enabled = Cpu::save_and_disable_interrupts();
    bool has_work;
    {
        LockGuard guard(lock_);
        has_work = any_ready_locked();
        // A donation from another CPU first (donate_elsewhere_locked).
        if (has_work) schedule_locked(true);
    }
    if (!has_work) {
        // Interrupts stay off from the check to the wait: a wake from an
        // interrupt cannot slip in between and be slept through.
        Cpu::enable_and_wait_for_interrupt();
    }
    Cpu::restore_interrupts(irq_was_enabled);
    return !has_work;
}

void Scheduler::idle_loop() {
    for (;;) idle_once();
}

}  // namespace mk

extern "C" void mk_thread_start(void (*entry)(void*), void* arg) {
    mk::this_cpu().scheduler.finish_switch_in();
    entry(arg);
    mk::this_cpu().scheduler.exit_current();
}
