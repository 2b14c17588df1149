// Physical frame allocator: 4 KiB frames from the firmware's usable RAM, tracked in bitmaps.
//
// Built once at boot from the usable RAM ranges (memory map type 1) minus the
// reserved ranges (kernel image, boot information, modules, the first 1 MiB).
// It never touches the frames it manages: it works only with physical
// addresses, and keeps its bitmaps in storage the caller maps and provides.
//
// Boot sequence:
//   size  = FrameAllocator::storage_size(usable, max_address)
//   phys  = FrameAllocator::place_storage(usable, reserved, max_address, size)
//   frames.init(usable, reserved, max_address, direct_map(phys), size, {phys, size})
// init() excludes the storage's own range, so it is never handed out.
#pragma once

#include <cstddef>
#include <cstdint>

#include "error.hpp"
#include "spinlock.hpp"

namespace mk {

// A physical address range [base, base + size). Ranges whose end would pass
// 2^64 are clipped to it. Edges need not be frame-aligned.
struct PhysRange {
    uint64_t base = 0;
    uint64_t size = 0;
};

// A caller's list of ranges (not owned).
struct PhysRanges {
    const PhysRange* ranges = nullptr;
    size_t count = 0;
};

class FrameAllocator {
  public:
    static constexpr uint64_t kFrameSize = 4096;
    static constexpr uint64_t kNoLimit = UINT64_MAX;

    constexpr FrameAllocator() = default;
    FrameAllocator(const FrameAllocator&) = delete;
    FrameAllocator& operator=(const FrameAllocator&) = delete;

    // Bytes of storage init() needs for these usable ranges when only frames
    // below max_address are managed. Usable ranges are trimmed inward to whole
    // frames; the bitmaps span from the lowest to the highest usable frame.
    // 0 when no whole usable frame lies below max_address.
    static size_t storage_size(PhysRanges usable, uint64_t max_address = kNoLimit);

    // Finds `bytes` of frame-aligned physical memory for the storage: inside one
    // usable range, clear of every reserved range, and ending at or below
    // max_address (so the kernel's boot mapping covers it). The lowest such
    // address wins. OutOfMemory when there is none; InvalidArgument for bytes == 0.
    static Result<uint64_t> place_storage(PhysRanges usable, PhysRanges reserved,
                                          uint64_t max_address, size_t bytes);

    // Takes over `storage` (storage_bytes >= storage_size(usable, max_address),
    // 8-byte aligned, owned by the allocator from now on). Frames are free when
    // they lie, whole, in some usable range, below max_address, and touch no
    // reserved range nor storage_phys (the physical range of `storage`; size 0
    // when it lies outside managed memory, as in host tests). Overlapping or
    // duplicated usable ranges count each frame once.
    // InvalidArgument: storage null, misaligned or too small, or init called twice.
    Status init(PhysRanges usable, PhysRanges reserved, uint64_t max_address, void* storage,
                size_t storage_bytes, PhysRange storage_phys);

    // One free frame's physical address; OutOfMemory when none is left.
    Result<uint64_t> alloc();

    // `count` physically contiguous free frames, the first at a physical address
    // that is a multiple of align_frames * 4096 (align_frames: a power of two,
    // 0 taken as 1). InvalidArgument for count 0 or a bad alignment;
    // OutOfMemory when no such run is free.
    Result<uint64_t> alloc_contiguous(size_t count, size_t align_frames = 1);

    // Returns an allocated frame. InvalidArgument, with nothing changed, when
    // `phys` is not frame-aligned, not a managed frame, or not allocated (double free).
    Status free_checked(uint64_t phys);
    // The same for a frame the kernel owns: any error is a kernel bug and panics.
    void free(uint64_t phys);
    // Frees `count` frames from `phys` on (an alloc_contiguous() result); panics like free().
    void free_contiguous(uint64_t phys, size_t count);

    // Whether phys lies in a managed frame that is currently allocated.
    bool is_allocated(uint64_t phys);

    size_t free_count();
    size_t total_count();  // managed frames, allocated or not

  private:
    static constexpr size_t kBitsPerWord = 64;

    bool test(const uint64_t* map, uint64_t index) const {
        return (map[index / kBitsPerWord] >> (index % kBitsPerWord)) & 1;
    }
    void set_used(uint64_t index) { used_[index / kBitsPerWord] |= bit(index); }
    void clear_used(uint64_t index) { used_[index / kBitsPerWord] &= ~bit(index); }
    static uint64_t bit(uint64_t index) { return uint64_t{1} << (index % kBitsPerWord); }

    // First index in [from, to) whose used bit is set; `to` when none.
    uint64_t find_used(uint64_t from, uint64_t to) const;
    // First index in [from, to) whose used bit is clear; `to` when none.
    uint64_t find_free(uint64_t from, uint64_t to) const;
    // Marks frames [from, to) (indices, clipped to the span) managed and free,
    // or unmanaged (and so used). Return how many changed state.
    size_t mark_free(uint64_t from, uint64_t to);
    size_t mark_unmanaged(uint64_t from, uint64_t to);
    Status free_locked(uint64_t phys);

    SpinLock lock_{LockLevel::Frames};
    bool initialized_ = false;
    // Bitmaps over frame indices 0..span_ (frame number = first_frame_ + index).
    // managed_: the frame belongs to the allocator (usable, not reserved).
    // used_: the frame may not be handed out (allocated, or not managed), so
    //        the allocation scans look at one bitmap only.
    uint64_t* managed_ = nullptr;
    uint64_t* used_ = nullptr;
    uint64_t first_frame_ = 0;
    uint64_t span_ = 0;  // frames covered by the bitmaps
    size_t total_ = 0;
    size_t free_ = 0;
    uint64_t hint_ = 0;  // next-fit: where the next single-frame search starts
};

}  // namespace mk
