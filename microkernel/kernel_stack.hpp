// Kernel stacks: each in a slot of its own in a virtual range of the kernel
// half, under which an unmapped guard page turns an overflow into a fault
// (docs/memory.md, "Kernel stacks").
//
// A slot is a number; where its pages lie and how they are mapped is the
// architecture's (Cpu::kernel_stack_map). The slots themselves are
// counted here, in a bitmap the host tests run, and so are the stacks of
// dead threads kept mapped for the next thread (StackCache).
#pragma once

#include <cstddef>
#include <cstdint>

#include "error.hpp"
#include "panic.hpp"

namespace mk {

constexpr size_t kKernelStackSize = 16 * 1024;
// The slots a kernel with room for `threads` threads on `cpus` CPUs needs:
// one for each thread, four for each CPU but the boot CPU (its boot stack,
// which becomes its idle thread's, and its three interrupt stacks), and
// the boot CPU's three interrupt stacks (its boot stack is in the image).
constexpr uint32_t kernel_stack_slots_needed(uint32_t threads, uint32_t cpus) {
    return threads + 4 * (cpus - 1) + 3;
}
// For ThreadRegistry::kMaxThreads and kMaxCpus (kernel_stack.cpp checks
// both), rounded up to whole 64-bit words of the bitmap.
constexpr uint32_t kKernelStackSlots = 4096 + 4 * 16;
static_assert(kKernelStackSlots >= kernel_stack_slots_needed(4096, 16));

// Freed stacks kept mapped, at most: their memory (128 KiB) is what the
// cache costs, and the reason it is no bigger (docs/memory.md).
constexpr uint32_t kKernelStackCacheSize = 8;

// Which of N slots are taken: a bitmap, searched from the slot after the
// last one taken (so a slot given back is not the next one handed out,
// and a stale pointer into a dead stack faults for a while rather than
// landing in the next thread's). Not locked: its owner's lock guards it.
template <uint32_t N>
class SlotBitmap {
  public:
    static constexpr uint32_t kCapacity = N;

    // A free slot, now taken; OutOfMemory when every slot is.
    [[nodiscard]] Result<uint32_t> take() {
        if (taken_ == N) return Error::OutOfMemory;
        for (uint32_t n = 0; n < N; ++n) {
            uint32_t slot = (next_ + n) % N;
            uint64_t bit = uint64_t{1} << (slot % 64);
            if ((bits_[slot / 64] & bit) != 0) continue;
            bits_[slot / 64] |= bit;
            ++taken_;
            next_ = (slot + 1) % N;
            return slot;
        }
        MK_PANIC("kernel stacks: %u of %u slots taken, none found", taken_, N);
    }
    // A slot taken before goes back (giving back a free one is a kernel bug).
    void give_back(uint32_t slot) {
        MK_ASSERT(slot < N && is_taken(slot));
        bits_[slot / 64] &= ~(uint64_t{1} << (slot % 64));
        --taken_;
    }
    bool is_taken(uint32_t slot) const {
        return slot < N && (bits_[slot / 64] & (uint64_t{1} << (slot % 64))) != 0;
    }
    uint32_t taken() const { return taken_; }

  private:
    uint64_t bits_[(N + 63) / 64] = {};
    uint32_t next_ = 0;
    uint32_t taken_ = 0;
};

// A kernel stack in use: its slot, and the address it grows down from.
struct KernelStack {
    void* top = nullptr;
    uint32_t slot = 0;
};

// Stacks of dead threads, still mapped in their slots, for the next
// threads: a stack taken from here costs no mapping, and one put back no
// unmapping and no TLB shootdown (its translations stay right: nothing
// else ever uses its pages). Reused last in, first out (the most recently
// used pages are the likeliest in the caches); when full, the oldest half
// goes to the caller, to be unmapped in one batch, with one shootdown.
// Not locked: its owner's lock guards it.
template <uint32_t Capacity>
class StackCache {
  public:
    static constexpr uint32_t kCapacity = Capacity;
    static constexpr uint32_t kBatch = Capacity / 2 > 0 ? Capacity / 2 : 1;

    // The stack put back last, if any (false: none).
    [[nodiscard]] bool take(KernelStack& out) {
        if (count_ == 0) return false;
        out = stacks_[--count_];
        return true;
    }
    // Keeps `stack`; when full, it first moves its kBatch oldest stacks to
    // `evicted` and returns how many it moved (0 or kBatch), which the
    // caller then unmaps. Putting back a stack it holds is a kernel bug.
    [[nodiscard]] uint32_t put(KernelStack stack, KernelStack (&evicted)[kBatch]) {
        for (uint32_t i = 0; i < count_; ++i) MK_ASSERT(stacks_[i].slot != stack.slot);
        uint32_t moved = count_ == Capacity ? take_oldest(evicted, kBatch) : 0;
        stacks_[count_++] = stack;
        return moved;
    }
    // Moves up to `max` of the oldest stacks to `out`; returns how many.
    [[nodiscard]] uint32_t take_oldest(KernelStack* out, uint32_t max) {
        uint32_t n = max < count_ ? max : count_;
        for (uint32_t i = 0; i < n; ++i) out[i] = stacks_[i];
        for (uint32_t i = n; i < count_; ++i) stacks_[i - n] = stacks_[i];
        count_ -= n;
        return n;
    }
    uint32_t size() const { return count_; }

  private:
    KernelStack stacks_[Capacity];  // the oldest first
    uint32_t count_ = 0;
};

// A kernel stack of kKernelStackSize bytes with a guard page below: a
// dead thread's from the cache (its contents are whatever it left), or a
// fresh one. OutOfMemory when no slot or no memory is left (nothing is
// kept then).
[[nodiscard]] Result<KernelStack> kernel_stack_create();
// Gives back a stack that nothing runs on, on any CPU, for good: to the
// cache, still mapped; when the cache is full, its oldest stacks are
// unmapped, and their slots and memory go back once no CPU can reach
// their pages through a stale translation (one TLB shootdown for them
// all). So with no lock held, not in an interrupt: it may wait for the
// other CPUs.
void kernel_stack_destroy(KernelStack stack);
// Unmaps and frees every stack in the cache (one shootdown). With no lock
// held, not in an interrupt.
void kernel_stack_cache_drain();
// Stacks handed out and not given back (the boot tests' leak checks and
// the log); the cached ones are not counted.
uint32_t kernel_stacks_in_use();
// Stacks in the cache, mapped and unused.
uint32_t kernel_stacks_cached();

}  // namespace mk
