// Mutex: a sleeping lock for thread context.
//
// A thread that finds it held blocks on its FIFO wait queue until the owner
// unlocks, so the owner may be preempted (and may take spinlocks, briefly)
// while it holds it; the CPU goes to other work meanwhile. Unlike a
// SpinLock it leaves interrupts on, so it may guard long work, such as
// zeroing the pages of a mapping. Never from an ISR, never while holding a
// spinlock (locking may block), never recursively. Whoever is woken takes
// it if it is free then; a thread taking it first in between is allowed.
//
// State (owner and waiters) is guarded by the scheduler lock.
#pragma once

#include "thread.hpp"

namespace mk {

class Mutex {
  public:
    Mutex() = default;
    Mutex(const Mutex&) = delete;
    Mutex& operator=(const Mutex&) = delete;

    void lock();
    void unlock();
    // Whether the current thread holds it.
    bool held() const;

  private:
    Thread* owner_ = nullptr;
    WaitQueue waiters_;
};

class [[nodiscard]] MutexGuard {
  public:
    explicit MutexGuard(Mutex& m) : m_(m) { m_.lock(); }
    ~MutexGuard() { m_.unlock(); }
    MutexGuard(const MutexGuard&) = delete;
    MutexGuard& operator=(const MutexGuard&) = delete;

  private:
    Mutex& m_;
};

}  // namespace mk
