// Kernel stacks: each in a slot of its own in a virtual range of the kernel
// half, under which an unmapped guard page turns an overflow into a fault
// (docs/memory.md, "Kernel stacks").
//
// A slot is a number; where its pages lie and how they are mapped is the
// architecture's (Cpu::kernel_stack_map). The slots themselves are
// counted here, in a bitmap the host tests run.
#pragma once

#include <cstddef>
#include <cstdint>

#include "error.hpp"
#include "panic.hpp"

namespace mk {

constexpr size_t kKernelStackSize = 16 * 1024;
// One slot for each thread the registry can hold, and four for each CPU
// but the boot CPU (its boot stack, which becomes its idle thread's, and
// its three interrupt stacks). Must match ThreadRegistry::kMaxThreads and
// kMaxCpus (kernel_stack.cpp checks both).
constexpr uint32_t kKernelStackSlots = 4096 + 4 * 16;

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

// A fresh kernel stack of kKernelStackSize bytes with a guard page below.
// OutOfMemory when no slot or no frame is left (nothing is kept then).
[[nodiscard]] Result<KernelStack> kernel_stack_create();
// Frees a stack that nothing runs on, on any CPU, for good: its slot and
// frames go back once no CPU can reach its pages through a stale
// translation (a TLB shootdown). So with no lock held, not in an
// interrupt: it waits for the other CPUs.
void kernel_stack_destroy(KernelStack stack);
// Slots taken now (the boot tests' leak checks and the log).
uint32_t kernel_stacks_in_use();

}  // namespace mk
