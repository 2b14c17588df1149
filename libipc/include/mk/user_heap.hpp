// The user heap's allocator: first fit over an address-ordered free list,
// splitting blocks on allocation and merging neighbours on free.
//
// It manages whatever memory it is given (add_region) and asks for more
// through a grow callback when nothing fits (in a program: pages from
// Sys::MemMap, see libipc/src/malloc.cpp, which also provides malloc/free
// and operator new/delete over one global UserHeap). No syscalls and no
// locking inside: the host tests run it on plain buffers.
//
// Every block starts with a 16-byte header (its size, and a tag that tells a
// live block from a free one); payloads are 16-byte aligned, or more on
// request. Allocation is O(free blocks), free is O(free blocks) too (the
// list is kept in address order so neighbours merge): small and fine for
// servers, not for allocation-heavy code.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mk {

class UserHeap {
  public:
    // More memory: at least `min_bytes`. Returns its start and sets *got to
    // its length, or returns null when there is no more.
    using GrowFn = void* (*)(void* ctx, size_t min_bytes, size_t* got);

    static constexpr size_t kAlign = 16;

    constexpr UserHeap() = default;
    constexpr UserHeap(GrowFn grow, void* ctx) : grow_(grow), ctx_(ctx) {}
    UserHeap(const UserHeap&) = delete;
    UserHeap& operator=(const UserHeap&) = delete;

    // Hands the heap [base, base + size) for good (pieces under 32 bytes
    // after alignment are ignored).
    void add_region(void* base, size_t size);

    // `size` bytes aligned to `align` (a power of two; at least kAlign is
    // used), or null when neither the free list nor the grow callback has
    // room. size 0 gets a minimal block.
    void* allocate(size_t size, size_t align = kAlign);
    // Frees a block from allocate(); null is fine. Returns false, changing
    // nothing, for a pointer that is not a live block: a double free, a
    // pointer into the middle of a block, a misaligned one. (It reads the
    // header before `p`, so `p` must at least point into mapped memory.)
    bool free(void* p);
    // The bytes usable at p (at least what was asked for); 0 for null.
    size_t usable_size(const void* p) const;

    // Statistics and a self-check, for tests.
    size_t free_bytes() const;
    size_t free_blocks() const;
    size_t live_blocks() const { return live_; }
    // The free list is in address order, its blocks well formed, disjoint
    // and never adjacent (adjacent ones would have been merged).
    bool consistent() const;

  private:
    struct Block {
        size_t size;     // header included; a multiple of kAlign
        uintptr_t word;  // free: the next free block; live: tag(this)
    };
    static constexpr size_t kHeader = sizeof(Block);
    static constexpr size_t kMinBlock = kHeader + kAlign;

    static uintptr_t tag(const Block* b);
    void* fit(size_t need, size_t align);
    void insert_free(Block* b);

    Block* head_ = nullptr;
    size_t live_ = 0;
    GrowFn grow_ = nullptr;
    void* ctx_ = nullptr;
};

// Blocks allocated from a user program's heap (malloc, operator new;
// src/malloc.cpp, user programs only) and not freed yet: what a leak check
// compares.
size_t heap_live_blocks();

}  // namespace mk
