#include "kernel_stack.hpp"

#include "cpu.hpp"
#include "percpu.hpp"
#include "spinlock.hpp"
#include "thread.hpp"

namespace mk {

static_assert(kKernelStackSlots >= kernel_stack_slots_needed(ThreadRegistry::kMaxThreads, kMaxCpus),
              "a slot for every thread, a boot stack and three interrupt stacks for each other "
              "CPU, and the boot CPU's three interrupt stacks");
static_assert(Thread::kStackSize == kKernelStackSize);

namespace {

using Cache = StackCache<kKernelStackCacheSize>;

// Guards g_slots and g_cache; a leaf (nothing is taken under it: the
// stacks are mapped, unmapped with their shootdown, and freed outside).
SpinLock g_stack_lock{LockLevel::KernelStacks};
SlotBitmap<kKernelStackSlots> g_slots;
Cache g_cache;

// Unmaps stacks taken out of the cache (one shootdown for them all), then
// gives their slots back. With no lock held.
void release(const KernelStack* stacks, uint32_t count) {
    uint32_t slots[Cache::kCapacity];
    MK_ASSERT(count <= Cache::kCapacity);
    for (uint32_t i = 0; i < count; ++i) slots[i] = stacks[i].slot;
    Cpu::kernel_stacks_unmap(slots, count);
    LockGuard guard(g_stack_lock);
    for (uint32_t i = 0; i < count; ++i) g_slots.give_back(slots[i]);
}

}  // namespace

Result<KernelStack> kernel_stack_create() {
    Result<uint32_t> slot = Error::OutOfMemory;
    {
        LockGuard guard(g_stack_lock);
        KernelStack cached;
        if (g_cache.take(cached)) return cached;
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
    KernelStack evicted[Cache::kBatch];
    uint32_t count = 0;
    {
        LockGuard guard(g_stack_lock);
        MK_ASSERT(g_slots.is_taken(stack.slot));
        count = g_cache.put(stack, evicted);
    }
    if (count != 0) release(evicted, count);
}

void kernel_stack_cache_drain() {
    MK_ASSERT(Cpu::held_locks() == 0);
    KernelStack stacks[Cache::kCapacity];
    uint32_t count = 0;
    {
        LockGuard guard(g_stack_lock);
        count = g_cache.take_oldest(stacks, Cache::kCapacity);
    }
    if (count != 0) release(stacks, count);
}

uint32_t kernel_stacks_in_use() {
    LockGuard guard(g_stack_lock);
    return g_slots.taken() - g_cache.size();
}

uint32_t kernel_stacks_cached() {
    LockGuard guard(g_stack_lock);
    return g_cache.size();
}

}  // namespace mk
