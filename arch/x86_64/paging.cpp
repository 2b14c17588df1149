#include "paging.hpp"

#include "x86.hpp"

namespace mk::x86 {

PagingFeatures enable_paging_features() {
    PagingFeatures f{};
    CpuidResult ext = cpuid(0x80000000);
    if (ext.eax >= 0x80000001) {
        CpuidResult e = cpuid(0x80000001);
        f.nx = (e.edx & (1u << 20)) != 0;
        f.large_pages_1g = (e.edx & (1u << 26)) != 0;
    }
    f.global_pages = (cpuid(1).edx & (1u << 13)) != 0;
    if (f.nx) wrmsr(kMsrEfer, rdmsr(kMsrEfer) | (1u << 11));  // EFER.NXE
    if (f.global_pages) write_cr4(read_cr4() | (1u << 7));    // CR4.PGE
    return f;
}

Result<AddressSpace> AddressSpace::create(FrameSource frames, PagingFeatures features) {
    Result<uint64_t> pml4 = frames.alloc(frames.ctx);
    if (!pml4) return pml4.error();
    __builtin_memset(phys_to_virt(pml4.value()), 0, kPageSize);
    return AddressSpace(frames, features, pml4.value());
}

Result<AddressSpace> AddressSpace::create_user(FrameSource frames, PagingFeatures features,
                                               const AddressSpace& kernel) {
    Result<AddressSpace> as = create(frames, features);
    if (!as) return as;
    auto* dst = static_cast<uint64_t*>(phys_to_virt(as.value().pml4_phys_));
    const auto* src = static_cast<const uint64_t*>(phys_to_virt(kernel.pml4_phys_));
    for (unsigned i = kFirstKernelSlot; i < 512; ++i) dst[i] = src[i];
    return as;
}

namespace {

// Frees the tables below `table` (at `level`: 3 for a PDPT, 2 a PD, 1 a PT)
// and the frames they map.
void free_tree(uint64_t* table, int level, FrameSource& frames,
               void (*free_leaf)(void* ctx, uint64_t phys), void* ctx) {
    for (unsigned i = 0; i < 512; ++i) {
        uint64_t e = table[i];
        if ((e & pte::kPresent) == 0) continue;
        uint64_t phys = e & pte::kAddressMask;
        if (level == 1) {
            free_leaf(ctx, phys);
        } else {
            // User mappings are 4 KiB pages only; no large leaves here.
            free_tree(static_cast<uint64_t*>(phys_to_virt(phys)), level - 1, frames, free_leaf,
                      ctx);
        }
        table[i] = 0;
    }
    if (frames.free != nullptr) frames.free(frames.ctx, virt_to_phys(table));
}

}  // namespace

void AddressSpace::destroy_user(void (*free_leaf)(void* ctx, uint64_t phys), void* ctx) {
    auto* pml4 = static_cast<uint64_t*>(phys_to_virt(pml4_phys_));
    for (unsigned i = 0; i < kFirstKernelSlot; ++i) {
        uint64_t e = pml4[i];
        if ((e & pte::kPresent) == 0) continue;
        free_tree(static_cast<uint64_t*>(phys_to_virt(e & pte::kAddressMask)), 3, frames_,
                  free_leaf, ctx);
        pml4[i] = 0;
    }
    if (frames_.free != nullptr) frames_.free(frames_.ctx, pml4_phys_);
    pml4_phys_ = 0;
}

uint64_t AddressSpace::leaf_entry(uint64_t virt) const {
    const auto* table = static_cast<const uint64_t*>(phys_to_virt(pml4_phys_));
    for (int shift = 39; shift > 12; shift -= 9) {
        uint64_t entry = table[(virt >> shift) & 511];
        if ((entry & pte::kPresent) == 0 || (entry & pte::kLarge) != 0) return 0;
        table = static_cast<const uint64_t*>(phys_to_virt(entry & pte::kAddressMask));
    }
    return table[(virt >> 12) & 511];
}

uint64_t* AddressSpace::leaf_pointer(uint64_t virt) const {
    auto* table = static_cast<uint64_t*>(phys_to_virt(pml4_phys_));
    for (int shift = 39; shift > 12; shift -= 9) {
        uint64_t entry = table[(virt >> shift) & 511];
        if ((entry & pte::kPresent) == 0 || (entry & pte::kLarge) != 0) return nullptr;
        table = static_cast<uint64_t*>(phys_to_virt(entry & pte::kAddressMask));
    }
    return &table[(virt >> 12) & 511];
}

Status AddressSpace::make_tables(uint64_t virt, uint64_t size) {
    if (virt < (uint64_t{kFirstKernelSlot} << 39) || (virt % kLargePageSize) != 0)
        return Error::InvalidArgument;
    auto* pml4 = static_cast<uint64_t*>(phys_to_virt(pml4_phys_));
    for (uint64_t v = virt; v - virt < size; v += kLargePageSize) {
        Result<uint64_t*> pdpt = next_level(pml4, (v >> 39) & 511, pte::kWritable);
        if (!pdpt) return pdpt.error();
        Result<uint64_t*> pd = next_level(pdpt.value(), (v >> 30) & 511, pte::kWritable);
        if (!pd) return pd.error();
        Result<uint64_t*> pt = next_level(pd.value(), (v >> 21) & 511, pte::kWritable);
        if (!pt) return pt.error();
    }
    return Error::None;
}

Result<uint64_t> AddressSpace::unmap(uint64_t virt) {
    // The tables on the way down (PML4, PDPT, PD, PT) and the entry used in each.
    uint64_t* tables[4];
    unsigned index[4];
    tables[0] = static_cast<uint64_t*>(phys_to_virt(pml4_phys_));
    for (int level = 0, shift = 39; level < 3; ++level, shift -= 9) {
        index[level] = (virt >> shift) & 511;
        uint64_t entry = tables[level][index[level]];
        if ((entry & pte::kPresent) == 0 || (entry & pte::kLarge) != 0) {
            return Error::InvalidArgument;
        }
        tables[level + 1] = static_cast<uint64_t*>(phys_to_virt(entry & pte::kAddressMask));
    }
    index[3] = (virt >> 12) & 511;
    uint64_t& leaf = tables[3][index[3]];
    if ((leaf & pte::kPresent) == 0) return Error::InvalidArgument;
    uint64_t phys = leaf & pte::kAddressMask;
    leaf = 0;
    // INVLPG also drops the paging-structure caches for this address, so
    // the tables freed below are not used through stale entries.
    if ((read_cr3() & pte::kAddressMask) == pml4_phys_)
        asm volatile("invlpg (%0)" ::"r"(virt) : "memory");
    // Tables left empty go back (user half only: the kernel's half is
    // shared by every address space and never unmapped): mapping and
    // unmapping over and over must not pile up page tables.
    if (virt < (uint64_t{kFirstKernelSlot} << 39) && frames_.free != nullptr) {
        for (int level = 3; level > 0; --level) {
            const uint64_t* t = tables[level];
            bool empty = true;
            for (unsigned i = 0; i < 512 && empty; ++i) empty = (t[i] & pte::kPresent) == 0;
            if (!empty) break;
            tables[level - 1][index[level - 1]] = 0;
            frames_.free(frames_.ctx, virt_to_phys(t));
        }
    }
    return phys;
}

Result<uint64_t*> AddressSpace::next_level(uint64_t* table, unsigned index, uint64_t flags) {
    uint64_t entry = table[index];
    if ((entry & pte::kPresent) != 0) {
        if ((entry & pte::kLarge) != 0) return Error::BadState;
        // Widen the intermediate entry's rights: the leaf decides.
        table[index] = entry | (flags & (pte::kWritable | pte::kUser));
        return static_cast<uint64_t*>(phys_to_virt(entry & pte::kAddressMask));
    }
    Result<uint64_t> frame = frames_.alloc(frames_.ctx);
    if (!frame) return frame.error();
    __builtin_memset(phys_to_virt(frame.value()), 0, kPageSize);
    table[index] = frame.value() | pte::kPresent | pte::kWritable | (flags & pte::kUser);
    return static_cast<uint64_t*>(phys_to_virt(frame.value()));
}

Status AddressSpace::map(uint64_t virt, uint64_t phys, uint64_t flags) {
    bool large = (flags & pte::kLarge) != 0;
    uint64_t align = large ? kLargePageSize : kPageSize;
    if ((virt % align) != 0 || (phys % align) != 0) return Error::InvalidArgument;
    if (!features_.nx) flags &= ~pte::kNoExecute;
    if (!features_.global_pages) flags &= ~pte::kGlobal;

    auto* pml4 = static_cast<uint64_t*>(phys_to_virt(pml4_phys_));
    Result<uint64_t*> pdpt = next_level(pml4, (virt >> 39) & 511, flags);
    if (!pdpt) return pdpt.error();
    Result<uint64_t*> pd = next_level(pdpt.value(), (virt >> 30) & 511, flags);
    if (!pd) return pd.error();
    unsigned pd_index = (virt >> 21) & 511;
    if (large) {
        uint64_t old = pd.value()[pd_index];
        if ((old & pte::kPresent) != 0 && (old & pte::kLarge) == 0) return Error::BadState;
        pd.value()[pd_index] = phys | flags | pte::kPresent;
        return Error::None;
    }
    Result<uint64_t*> pt = next_level(pd.value(), pd_index, flags);
    if (!pt) return pt.error();
    pt.value()[(virt >> 12) & 511] = phys | flags | pte::kPresent;
    return Error::None;
}

Result<uint64_t> AddressSpace::translate(uint64_t virt) const {
    const auto* table = static_cast<const uint64_t*>(phys_to_virt(pml4_phys_));
    for (int shift = 39; shift >= 12; shift -= 9) {
        uint64_t entry = table[(virt >> shift) & 511];
        if ((entry & pte::kPresent) == 0) return Error::InvalidArgument;
        bool leaf = shift == 12 || (shift <= 30 && (entry & pte::kLarge) != 0);
        if (leaf) {
            uint64_t size = 1ull << shift;
            return (entry & pte::kAddressMask & ~(size - 1)) | (virt & (size - 1));
        }
        table = static_cast<const uint64_t*>(phys_to_virt(entry & pte::kAddressMask));
    }
    return Error::InvalidArgument;
}

void AddressSpace::activate() const {
    write_cr3(pml4_phys_);
}

}  // namespace mk::x86
