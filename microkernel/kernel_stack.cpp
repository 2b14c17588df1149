#include "kernel_stack.hpp"

#include "cpu.hpp"
#include "percpu.hpp"
#include "spinlock.hpp"
#include "thread.hpp"

namespace mk {

static_assert(kKernelStackSlots == ThreadRegistry::kMaxThreads + 4 * kMaxCpus,
              "a slot for every thread, and a boot stack and three interrupt stacks for each "
              "other CPU");
static_assert(Thread::kStackSize == kKernelStackSize);

namespace {

// Guards g_slots; a leaf (nothing is taken under it, the frames are
// allocated and freed outside).
SpinLock g_stack_lock{LockLevel::KernelStacks};
SlotBitmap<kKernelStackSlots> g_slots;

}  // namespace

Result<KernelStack> kernel_stack_create() {
    Result<uint32_t> slot = Error::OutOfMemory;
    {
        LockGuard guard(g_stack_lock);
        slot = g_slots.take();
    }
    if (!slot) return slot.error();
    // Nobody else maps or unmaps this slot while it is ours.
    Result<void*> top = Cpu::kernel_stack_map(slot.value());
    if (!top) {
        LockGuard guard(g_stack_lock);
        g_slots.give_back(slot.value());
        return top.error();
    }
    return KernelStack{top.value(), slot.value()};
}

void kernel_stack_destroy(KernelStack stack) {
    MK_ASSERT(Cpu::held_locks() == 0);
    Cpu::kernel_stack_unmap(stack.slot);
    LockGuard guard(g_stack_lock);
    g_slots.give_back(stack.slot);
}

uint32_t kernel_stacks_in_use() {
    LockGuard guard(g_stack_lock);
    return g_slots.taken();
}

}  // namespace mk
