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
    Cpu::PerCpuState arch;  // the architecture's (x86-64: what the CPU has loaded)
    Scheduler scheduler;
    IpcCounters ipc;  // this CPU's, written by it alone (under the scheduler lock but the fast
                      // path's misses)
    // The endpoint lock this CPU last took through an IpcGuard: while it
    // holds one (LockLevel::Endpoint in held_locks), that one, which a
    // block inside lets go of at its switch (Scheduler::enter_switch_locked).
    // Not cleared when let go: only read while the account says held.
    SpinLock* endpoint_lock = nullptr;
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored \
    "-Winvalid-offsetof"  // PerCpu is not standard-layout; GCC lays it out in order
static_assert(offsetof(PerCpu, held_locks) == kHeldLocksOffset, "Cpu::held_locks() reads it there");
static_assert(offsetof(PerCpu, index) == kPerCpuIndexOffset, "Cpu::cpu_index() reads it there");
static_assert(offsetof(PerCpu, arch) == kPerCpuArchOffset, "the architecture reads it there");
#pragma GCC diagnostic pop

inline PerCpu& this_cpu() {
    return *Cpu::this_cpu();
}

IpcGuard::IpcGuard(SpinLock& endpoint_lock, bool interrupts_off)
    : endpoint_lock_(&endpoint_lock),
      irq_was_enabled_(interrupts_off ? false : Cpu::save_and_disable_interrupts()) {
    lock(kBoth);
}

IpcGuard::IpcGuard(SpinLock* endpoint_lock_or_none)
    : endpoint_lock_(endpoint_lock_or_none), irq_was_enabled_(Cpu::save_and_disable_interrupts()) {
    lock(endpoint_lock_or_none != nullptr ? kBoth : kScheduler);
}

void IpcGuard::lock(uint64_t ours) {
    uint64_t held = Cpu::held_locks();
    MK_ASSERT((held >> unsigned(LockLevel::Endpoint)) == 0);  // nothing at its level or above
    Cpu::set_held_locks(held | ours);
    PerCpu& cpu = this_cpu();
    if ((ours & kEndpoint) != 0) {
        endpoint_lock_->lock_raw();
        cpu.endpoint_lock = endpoint_lock_;
    }
    cpu.scheduler.lock_.lock_raw();
}

IpcGuard::~IpcGuard() {
    // The endpoint's lock is still held unless a block inside let go of it
    // (the account says which; no other lock of its level can be held
    // here: the lock order).
    uint64_t held = Cpu::held_locks();
    uint64_t ours = held & kBoth;
    // These two, or the scheduler lock alone, are the last taken.
    MK_ASSERT((held >> unsigned(LockLevel::Endpoint)) == ours >> unsigned(LockLevel::Endpoint));
    MK_ASSERT((ours & kScheduler) != 0);
    Cpu::set_held_locks(held & ~ours);
    // This CPU's: a thread that moved at the user boundary inside the scope
    // ends it on its new CPU (Scheduler::at_user_boundary).
    this_cpu().scheduler.lock_.unlock_raw();
    if ((ours & kEndpoint) != 0) endpoint_lock_->unlock_raw();
    Cpu::restore_interrupts(irq_was_enabled_);
}

// The CPUs that schedule threads, by PerCpu::index: each enters itself with
// its scheduler (Scheduler::init), before it runs a thread, and stays for
// good. Read without a lock: an entry, once written, never changes, and a
// thread can only be homed on a CPU that entered itself first.
constexpr uint32_t kMaxCpus = 16;
struct CpuTable {
    PerCpu* cpus[kMaxCpus] = {};
    uint32_t count = 0;  // 1 + the highest index entered
};
extern CpuTable g_cpu_table;

inline PerCpu& cpu_at(uint32_t index) {
    return *g_cpu_table.cpus[index];
}
inline uint32_t cpu_count() {
    return __atomic_load_n(&g_cpu_table.count, __ATOMIC_ACQUIRE);
}
// Whether CPU `index` is in the table: threads may be homed on it.
inline bool cpu_online(uint32_t index) {
    return index < cpu_count() && g_cpu_table.cpus[index] != nullptr;
}
// Adds counters of several CPUs: `T` is a struct of uint64_t counts only.
template <typename T>
void add_counts(T& into, const T& from) {
    static_assert(sizeof(T) % sizeof(uint64_t) == 0 && alignof(T) == alignof(uint64_t));
    auto* dst = reinterpret_cast<uint64_t*>(&into);
    const auto* src = reinterpret_cast<const uint64_t*>(&from);
    for (size_t w = 0; w < sizeof(T) / sizeof(uint64_t); ++w) dst[w] += src[w];
}

// Enters `cpu` (its index set) in the table, once: each application
// processor as it starts (before the boot CPU, whose scheduler starts
// later, in kernel_start), the boot CPU at index 0. An AP that started late
// leaves its index empty: cpu_online() tells.
void register_cpu(PerCpu& cpu);
// Empties the table (the host tests, between two tests).
void forget_cpus();

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
