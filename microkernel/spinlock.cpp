#include "spinlock.hpp"

#include "cpu.hpp"
#include "panic.hpp"
#include "percpu.hpp"

namespace mk {

bool SpinLock::lock() {
    bool irq_was_enabled = Cpu::save_and_disable_interrupts();
    PerCpu* cpu = Cpu::this_cpu();
    if (cpu != nullptr) {
        HeldLocks& held = cpu->held_locks;
        MK_ASSERT(held.count < HeldLocks::kMax);
        MK_ASSERT(held.count == 0 || held.levels[held.count - 1] < level_);
        held.levels[held.count++] = level_;
    }
    while (locked_.exchange(1, std::memory_order_acquire) != 0) {
        while (locked_.load(std::memory_order_relaxed) != 0) __builtin_ia32_pause();
    }
    return irq_was_enabled;
}

void SpinLock::unlock(bool irq_was_enabled) {
    PerCpu* cpu = Cpu::this_cpu();
    if (cpu != nullptr) {
        HeldLocks& held = cpu->held_locks;
        MK_ASSERT(held.count > 0 && held.levels[held.count - 1] == level_);
        --held.count;
    }
    locked_.store(0, std::memory_order_release);
    Cpu::restore_interrupts(irq_was_enabled);
}

}  // namespace mk
