// Kernel heap: variable-size blocks for kernel objects, from caller-provided regions.
//
// Each region is carved into blocks with boundary tags. A block starts with a
// 16-byte header (its size, "used" and "previous block used" bits, and a check
// word derived from its address, size and state); a free block also holds its
// free-list links after the header and its size in its last 8 bytes (footer),
// so a block being freed finds its neighbours in O(1) and merges with them.
// Adjacent free blocks therefore never exist. Free blocks sit on segregated
// lists by power-of-two size class; allocation takes the first block that fits
// from the smallest class that can hold the request (first fit within a class).
// A region ends with a zero-size "used" sentinel header, so merging stops there.
//
// The check word lets free() tell a heap block from a stray pointer and catch
// double frees: both are kernel bugs and panic with the pointer in the message.
#pragma once

#include <cstddef>
#include <cstdint>

#include "error.hpp"
#include "spinlock.hpp"

namespace mk {

namespace heap_detail {
struct Header;     // every block's 16-byte header
struct FreeBlock;  // a free block: header, then its free-list links
}  // namespace heap_detail

struct HeapStats {
    size_t regions = 0;
    size_t bytes_total = 0;  // in blocks, headers included, over all regions
    size_t bytes_used = 0;   // in allocated blocks, headers included
    size_t bytes_free = 0;   // in free blocks, headers included
    size_t used_blocks = 0;
    size_t free_blocks = 0;
    size_t largest_free = 0;  // the largest size alloc(size, 16) can satisfy right now
};

class Heap {
  public:
    static constexpr size_t kMaxRegions = 16;
    static constexpr size_t kMinAlign = 16;    // every block payload is at least this aligned
    static constexpr size_t kMaxAlign = 4096;  // the largest alignment alloc() accepts
    static constexpr size_t kHeaderSize = 16;
    static constexpr size_t kMinBlockSize = 48;  // header, free-list links, footer

    constexpr Heap() = default;
    Heap(const Heap&) = delete;
    Heap& operator=(const Heap&) = delete;

    // Hands the heap [base, base + size); it owns that memory from now on.
    // Edges are trimmed inward to 16 bytes. InvalidArgument: null base, wrap-around,
    // overlap with a region already added, or too small for one block (< 64 bytes
    // after trimming). OutOfMemory: kMaxRegions regions already.
    Status add_region(void* base, size_t size);

    // A block of at least `size` bytes whose address is a multiple of `align`
    // (a power of two up to kMaxAlign; smaller than kMinAlign is raised to it —
    // anything else is a kernel bug and panics). nullptr when no region has room.
    // size 0 gets a unique minimum-size block, which must be freed like any other.
    void* alloc(size_t size, size_t align = kMinAlign);

    // Returns a block from alloc(); nullptr is ignored. A pointer that is not a
    // live block of this heap (never allocated, interior, already freed) is a
    // kernel bug: it panics with "heap: double free" or "heap: bad free".
    void free(void* ptr);

    HeapStats stats();

    // Walks every region and free list and checks all invariants (tags, check
    // words, no adjacent free blocks, lists, counters). For tests and
    // self-checks; false at the first inconsistency.
    bool check();

    // Whether ptr lies within one of the heap's regions (not whether it is live).
    bool owns(const void* ptr);

  private:
    using FreeBlock = heap_detail::FreeBlock;
    struct Region {
        uintptr_t start = 0;     // first block
        uintptr_t sentinel = 0;  // the end-sentinel header; the region ends 16 bytes later
    };
    static constexpr size_t kBins = 64;  // size class: floor(log2(block size))

    const Region* region_of(uintptr_t addr) const;
    void insert_free(FreeBlock* block);
    void remove_free(FreeBlock* block);
    // Turns [addr, addr + size) into a listed free block; leaves the next block's
    // "previous used" bit to the caller.
    void make_free(uintptr_t addr, size_t size, bool prev_used);
    bool check_locked();

    SpinLock lock_{LockLevel::Heap};
    Region regions_[kMaxRegions] = {};
    size_t region_count_ = 0;
    FreeBlock* bins_[kBins] = {};
    uint64_t nonempty_bins_ = 0;  // bit i: bins_[i] is not empty
    size_t bytes_total_ = 0;
    size_t bytes_used_ = 0;
    size_t bytes_free_ = 0;
    size_t used_blocks_ = 0;
    size_t free_blocks_ = 0;
};

// The heap behind kalloc()/kfree() (defined in kalloc.cpp, kernel only).
Heap& kernel_heap();
// Installs what kalloc() calls when the heap has no room: it should add a
// region of at least `at_least` bytes and return whether it did.
void kernel_heap_set_grow(bool (*grow)(size_t at_least));

}  // namespace mk
