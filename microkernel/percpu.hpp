// Per-CPU state, reached only through this_cpu(): no global "current thread".
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu.hpp"
#include "endpoint.hpp"
#include "scheduler.hpp"
#include "spinlock.hpp"

namespace mk {

// What the syscall entry stub reads and writes through the per-CPU pointer
// before it has a stack; at fixed offsets (8 and 16: arch/x86_64/syscall.S).
struct EntryScratch {
    uint64_t kernel_stack_top = 0;  // the current thread's kernel stack
    uint64_t user_rsp = 0;          // the user stack pointer, while switching stacks
};

struct PerCpu {
    PerCpu* self = this;     // first: the x86-64 accessor reads it at %gs:0
    EntryScratch entry;      // second: at %gs:8
    uint32_t index = 0;      // 0 the boot CPU, 1.. the others in the order they came up
    uint32_t irq_depth = 0;  // > 0 while in a hardware interrupt handler
    HeldLocks held_locks;
    Scheduler scheduler;
    IpcCounters ipc;  // guarded by the scheduler lock
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored \
    "-Winvalid-offsetof"  // PerCpu is not standard-layout; GCC lays it out in order
static_assert(offsetof(PerCpu, held_locks) == kHeldLocksOffset, "spinlock.hpp reads it there");
static_assert(offsetof(PerCpu, index) == kPerCpuIndexOffset, "Cpu::cpu_index() reads it there");
#pragma GCC diagnostic pop

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
