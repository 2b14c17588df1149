// Spinlocks with a checked lock order.
//
// Every lock has a LockLevel; a CPU may only take a lock whose level is higher
// than every lock it already holds (docs/locking.md lists the order). Taking a
// lock disables interrupts on this CPU until the matching unlock, so an ISR
// never spins on a lock its own CPU holds.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "cpu.hpp"
#include "panic.hpp"

namespace mk {

// The lock order, lowest first. A lock may be taken while holding only locks
// of lower levels.
enum class LockLevel : uint8_t {
    // HandleTable::lock_: one process's handles. Never two tables at once.
    HandleTable = 5,
    // Process::space_lock_: one process's user address space (its mappings,
    // the registered IPC buffer pages, copies to and from it).
    AddressSpace = 7,
    // Process::threads_lock_: one process's list of threads and its exit
    // state. Taken before an endpoint's lock (a kill ends its threads' waits
    // under it) and after the address space's (unmap reads the threads'
    // IPC buffer registrations).
    ProcessThreads = 8,
    // Endpoint::lock_: one endpoint's queues and notices, and the IPC state
    // of the threads waiting on them. Never two endpoints' at once.
    Endpoint = 10,
    // Scheduler::lock_ of this CPU: its ready queues, timeouts, and the
    // scheduling state of the threads homed on it.
    Scheduler = 20,
    // Another CPU's Scheduler::lock_, held with this CPU's and nothing
    // above it (Scheduler::HomeLock, HomeLocks), an endpoint's lock before
    // them or not (a reply, a move, a placement and a start take none). The two are taken in CPU
    // index order,
    // the lower first (for a lower CPU, this CPU's is let go and taken
    // again after it, and what was read before is checked again after),
    // so no two CPUs wait for each other's.
    SchedulerOther = 21,
    // A third CPU's Scheduler::lock_, with the two above (Scheduler::HomeLocks):
    // the end of a reply wait needs the home locks of the caller and of the
    // thread whose lock guards that wait, and a kill or a stray wake from a
    // third CPU holds its own too. All three in CPU index order.
    SchedulerThird = 22,
    // Scheduler::zombies_lock_: the dead user threads for the reaper. The
    // reaper checks its list under its scheduler lock (so no wake is
    // lost); nothing is taken under it.
    Zombies = 23,
    // The thread registry (thread.cpp): which thread each id names. A
    // thread's creation and destruction take it (and Thread::registered,
    // for tests); no IPC operation does; nothing is taken under it.
    ThreadRegistry = 24,
    Heap = 30,  // the kernel heap
    // g_stack_lock: which kernel stack slots are taken, and the cache of
    // dead threads' stacks (kernel_stack.cpp); nothing is taken under it.
    KernelStacks = 35,
    Frames = 40,  // the physical frame allocator
    Log = 50,     // the serial log (a leaf: printing is allowed under any lock)
};

// What this CPU holds, for the lock-order and "no lock held" assertions: a
// bit per LockLevel. The order never lets a CPU hold two locks of one level,
// so the set is the whole story, and the checks are a shift and a compare.
struct HeldLocks {
    uint64_t mask = 0;

    static constexpr uint64_t bit(LockLevel level) { return uint64_t{1} << unsigned(level); }
    unsigned count() const { return unsigned(__builtin_popcountll(mask)); }
    bool only(LockLevel level) const { return mask == bit(level); }
};
static_assert(unsigned(LockLevel::Log) < 64, "a LockLevel is a bit of HeldLocks::mask");

// Whether this CPU holds a lock of `level` (taken with lock(), not
// lock_raw()). Where no account is kept (the host fake without a per-CPU
// area) nothing is known: true.
inline bool holds_here(LockLevel level) {
    return (Cpu::held_locks() & HeldLocks::bit(level)) != 0 || Cpu::this_cpu() == nullptr;
}

class SpinLock {
  public:
    constexpr explicit SpinLock(LockLevel level) : level_(level) {}
    SpinLock(const SpinLock&) = delete;
    SpinLock& operator=(const SpinLock&) = delete;

    // Returns whether interrupts were enabled before; pass it back to unlock().
    // Inline: the general path takes a dozen locks per syscall.
    [[nodiscard]] bool lock() {
        bool irq_was_enabled = Cpu::save_and_disable_interrupts();
        lock_interrupts_off();
        return irq_was_enabled;
    }
    // lock() for a caller whose interrupts are off already, and stay off
    // until the unlock: the same account and checks, without saving the
    // interrupt flag (the handle lookup of Call and ReplyRecv, which run
    // with interrupts off from the entry: handle_syscall()).
    void lock_interrupts_off() {
        uint64_t held = Cpu::held_locks();
        MK_ASSERT((held >> unsigned(level_)) == 0);  // nothing at this level or above it
        Cpu::set_held_locks(held | HeldLocks::bit(level_));
        while (locked_.exchange(1, std::memory_order_acquire) != 0) [[unlikely]] {
                while (locked_.load(std::memory_order_relaxed) != 0) __builtin_ia32_pause();
            }
    }
    // Locks are released in the reverse order of taking them, but for one:
    // an endpoint's lock, which a switch drops while it holds the scheduler lock
    // (Scheduler::enter_switch_locked). Pass false to keep interrupts off.
    void unlock(bool irq_was_enabled) {
        unlock_interrupts_off();
        Cpu::restore_interrupts(irq_was_enabled);
    }
    // unlock() without restoring the interrupt flag.
    void unlock_interrupts_off() {
        // The last lock taken and not yet released, or an endpoint's lock with
        // only the scheduler lock taken after it (or no account kept: the
        // host fake without a per-CPU area).
        uint64_t held = Cpu::held_locks();
        uint64_t from = held >> unsigned(level_);
        MK_ASSERT(
            from == 1 ||
            (level_ == LockLevel::Endpoint &&
             from == (HeldLocks::bit(LockLevel::Scheduler) >> unsigned(LockLevel::Endpoint)) + 1) ||
            Cpu::this_cpu() == nullptr);
        Cpu::set_held_locks(held & ~HeldLocks::bit(level_));
        locked_.store(0, std::memory_order_release);
    }

    bool is_locked() const { return locked_.load(std::memory_order_relaxed) != 0; }

    // The syscall fast path's own way in and out (syscall/fastpath.cpp): with
    // interrupts already off, and without the held-lock bookkeeping, as it
    // takes the handle-table lock, an endpoint's lock and the scheduler lock, in
    // order, and nothing else (IpcGuard uses them too, doing the bookkeeping
    // for both of its locks at once). The scheduler lock is released by the entry stub through
    // its word (this CPU's, at its offset in the per-CPU area), once the CPU is off
    // the stack of the thread that blocked.
    // (fetch_or's bit test compiles to one `lock bts`.)
    void lock_raw() {
        if ((locked_.fetch_or(1, std::memory_order_acquire) & 1) != 0) [[unlikely]] {
            do {
                while (locked_.load(std::memory_order_relaxed) != 0) __builtin_ia32_pause();
            } while ((locked_.fetch_or(1, std::memory_order_acquire) & 1) != 0);
        }
    }
    void unlock_raw() { locked_.store(0, std::memory_order_release); }
    // The lock word: 1 held, 0 free (its first byte alone says so too, which
    // the entry stub's release relies on).
    std::atomic<uint32_t>* word() { return &locked_; }
    LockLevel level() const { return level_; }

  private:
    std::atomic<uint32_t> locked_{0};
    LockLevel level_;
};

// Scoped ownership of a SpinLock; the lock is released when the block ends.
class [[nodiscard]] LockGuard {
  public:
    explicit LockGuard(SpinLock& lock) : lock_(lock), irq_was_enabled_(lock.lock()) {}
    ~LockGuard() { lock_.unlock(irq_was_enabled_); }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;

  private:
    SpinLock& lock_;
    bool irq_was_enabled_;
};

}  // namespace mk
