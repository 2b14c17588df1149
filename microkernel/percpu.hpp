// Per-CPU state, reached only through this_cpu(): no global "current thread".
#pragma once

#include <cstdint>

#include "cpu.hpp"
#include "endpoint.hpp"
#include "scheduler.hpp"
#include "spinlock.hpp"

namespace mk {

struct PerCpu {
    PerCpu* self = this;  // first: the x86-64 accessor reads it at %gs:0
    uint32_t index = 0;
    uint32_t irq_depth = 0;  // > 0 while in a hardware interrupt handler
    HeldLocks held_locks;
    Scheduler scheduler;
    IpcCounters ipc;  // guarded by the scheduler lock
};

inline PerCpu& this_cpu() {
    return *Cpu::this_cpu();
}

// Hardware interrupt handlers bracket their work with these.
inline void irq_enter() {
    ++this_cpu().irq_depth;
}
inline void irq_exit() {
    --this_cpu().irq_depth;
}
inline bool in_irq() {
    return this_cpu().irq_depth > 0;
}

}  // namespace mk
