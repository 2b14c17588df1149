// 4-level paging: the kernel address space (docs/memory.md).
#pragma once

#include <cstdint>

#include "error.hpp"
#include "kernel_stack.hpp"

namespace mk::x86 {

// All usable RAM is mapped at this base (2 MiB pages).
constexpr uint64_t kDirectMapBase = 0xFFFF800000000000;
// The kernel image is linked at -2 GiB.
constexpr uint64_t kKernelVma = 0xFFFFFFFF80000000;
constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kLargePageSize = 2 * 1024 * 1024;

inline void* phys_to_virt(uint64_t phys) {
    return reinterpret_cast<void*>(phys + kDirectMapBase);
}
inline uint64_t virt_to_phys(const void* virt) {
    uint64_t v = reinterpret_cast<uint64_t>(virt);
    return v >= kKernelVma ? v - kKernelVma : v - kDirectMapBase;
}

namespace pte {
constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kWritable = 1ull << 1;
constexpr uint64_t kUser = 1ull << 2;
constexpr uint64_t kWriteThrough = 1ull << 3;
constexpr uint64_t kCacheDisable = 1ull << 4;
constexpr uint64_t kLarge = 1ull << 7;
constexpr uint64_t kGlobal = 1ull << 8;
constexpr uint64_t kNoExecute = 1ull << 63;
constexpr uint64_t kAddressMask = 0x000FFFFFFFFFF000ull;
}  // namespace pte

// Where page-table frames come from (the frame allocator), and where they go.
struct FrameSource {
    Result<uint64_t> (*alloc)(void* ctx);
    void* ctx;
    void (*free)(void* ctx, uint64_t phys) = nullptr;
};

// PML4 slots: 0..255 the user half, 256..511 the kernel half (shared by
// every address space; the kernel creates no new top-level entries after
// boot, so a copy of them stays complete).
constexpr unsigned kFirstKernelSlot = 256;

// Kernel stacks (microkernel/kernel_stack.hpp): PML4 slot 510, one slot
// of kKernelStackSlotSize each, its stack at the top and an unmapped guard
// below. Every page table of the range is made at boot
// (AddressSpace::make_tables), so every address space shares them, and a
// stack's map and unmap only write leaf entries.
constexpr uint64_t kKernelStackBase = 0xFFFFFF0000000000;
constexpr uint64_t kKernelStackSlotSize = 32 * 1024;
constexpr uint64_t kKernelStackGuardSize = kKernelStackSlotSize - kKernelStackSize;
constexpr uint64_t kKernelStackRangeSize = uint64_t{kKernelStackSlots} * kKernelStackSlotSize;
static_assert(kKernelStackGuardSize >= 4096 && kKernelStackSize % 4096 == 0);
static_assert(kKernelStackRangeSize <= (1ull << 39), "one PML4 slot");
inline uint64_t kernel_stack_bottom(uint32_t slot) {
    return kKernelStackBase + slot * kKernelStackSlotSize + kKernelStackGuardSize;
}

// Paging features of this CPU, enabled by enable_paging_features().
struct PagingFeatures {
    bool nx;
    bool global_pages;
    bool large_pages_1g;
};
PagingFeatures enable_paging_features();

class AddressSpace {
  public:
    AddressSpace() = default;  // an empty handle; only create() makes a usable one
    // A fresh, empty top level.
    [[nodiscard]] static Result<AddressSpace> create(FrameSource frames, PagingFeatures features);
    // A user address space: an empty user half and the kernel's half.
    [[nodiscard]] static Result<AddressSpace> create_user(FrameSource frames,
                                                          PagingFeatures features,
                                                          const AddressSpace& kernel);
    // Frees the user half's page tables and, through `free_leaf`, every frame
    // mapped there; then the top level. The address space must not be active.
    void destroy_user(void (*free_leaf)(void* ctx, uint64_t phys), void* ctx);

    // Maps one page (4 KiB, or 2 MiB with pte::kLarge in flags). Mapping over
    // an existing mapping of a different size is refused.
    [[nodiscard]] Status map(uint64_t virt, uint64_t phys, uint64_t flags);
    // Removes a 4 KiB mapping; returns the frame it mapped (the TLB entry
    // is flushed when this address space is the active one).
    [[nodiscard]] Result<uint64_t> unmap(uint64_t virt);
    // The physical address behind virt, if mapped.
    [[nodiscard]] Result<uint64_t> translate(uint64_t virt) const;
    // The leaf entry of a 4 KiB mapping (0 when there is none).
    uint64_t leaf_entry(uint64_t virt) const;
    // Makes every page table down to the last level for [virt, virt +
    // size), mapping nothing (kernel half only: the tables are never freed).
    [[nodiscard]] Status make_tables(uint64_t virt, uint64_t size);
    // Where the leaf entry of virt is, in a page table make_tables() made
    // (nullptr when there is none).
    uint64_t* leaf_pointer(uint64_t virt) const;
    uint64_t root() const { return pml4_phys_; }
    // A handle on an existing top level (made by create or create_user).
    static AddressSpace from_root(FrameSource frames, PagingFeatures features, uint64_t root) {
        return AddressSpace(frames, features, root);
    }
    void activate() const;

  private:
    AddressSpace(FrameSource frames, PagingFeatures features, uint64_t pml4)
        : frames_(frames), features_(features), pml4_phys_(pml4) {}

    Result<uint64_t*> next_level(uint64_t* table, unsigned index, uint64_t flags);

    FrameSource frames_{};
    PagingFeatures features_{};
    uint64_t pml4_phys_ = 0;
};

}  // namespace mk::x86
