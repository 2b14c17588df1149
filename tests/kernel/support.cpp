#include "ktest.hpp"
#include "percpu.hpp"

namespace mk::ktest {

Thread* spawn(const char* name, void (*fn)(void*), void* arg) {
    return spawn_on(name, fn, arg, Cpu::cpu_index());
}

Thread* spawn_on(const char* name, void (*fn)(void*), void* arg, uint32_t cpu) {
    Result<Thread*> t = Thread::create(name, fn, arg);
    if (!t) return nullptr;
    {
        LockGuard guard(
            this_cpu().scheduler.lock());  // placement reads each CPU's load under its lock
        Scheduler::set_home_locked(*t.value(), cpu);
    }
    if (this_cpu().scheduler.start(*t.value()) != Error::None) {
        Thread::destroy(t.value());
        return nullptr;
    }
    return t.value();
}

void sleep_ticks(uint64_t ticks) {
    WaitQueue q;
    this_cpu().scheduler.block(&q, ticks);
}

void join(Thread* const* threads, int n) {
    for (int i = 0; i < n; ++i) this_cpu().scheduler.join(*threads[i]);
    for (int i = 0; i < n; ++i) Thread::destroy(threads[i]);
}

}  // namespace mk::ktest
