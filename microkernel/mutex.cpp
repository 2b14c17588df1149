#include "mutex.hpp"

#include "panic.hpp"
#include "percpu.hpp"

namespace mk {

void Mutex::lock() {
    Scheduler& s = this_cpu().scheduler;
    LockGuard guard(s.lock());
    Thread* self = s.current();
    MK_ASSERT(owner_ != self);
    // A wake that is not an unlock (a kill) finds it still held: wait on.
    // The owner only does bounded work under it, so the wait ends.
    while (owner_ != nullptr) s.block_current_locked(&waiters_, 0);
    owner_ = self;
}

void Mutex::unlock() {
    Scheduler& s = this_cpu().scheduler;
    LockGuard guard(s.lock());
    MK_ASSERT(owner_ == s.current());
    owner_ = nullptr;
    if (Thread* next = waiters_.front()) s.wake_locked(*next);
}

bool Mutex::held() const {
    Scheduler& s = this_cpu().scheduler;
    LockGuard guard(s.lock());
    return owner_ == s.current();
}

}  // namespace mk
