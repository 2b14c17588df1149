#include "heap.hpp"

#include <new>

#include "panic.hpp"

namespace mk {

namespace heap_detail {

struct Header {
    uint64_t size_flags;  // block size (a multiple of 16) | kUsedBit | kPrevUsedBit
    uint64_t check;       // check_word() of the block's state; anything else: not a block
};

struct FreeBlock {
    Header header;
    FreeBlock* next;
    FreeBlock* prev;
    // ... and the block's size in its last 8 bytes (the footer).
};

static_assert(sizeof(Header) == Heap::kHeaderSize);
static_assert(sizeof(FreeBlock) + sizeof(uint64_t) <= Heap::kMinBlockSize);

}  // namespace heap_detail

namespace {

using heap_detail::FreeBlock;
using heap_detail::Header;

constexpr uint64_t kUsedBit = 1;
constexpr uint64_t kPrevUsedBit = 2;
constexpr uint64_t kFlagMask = Heap::kMinAlign - 1;

// Check-word seeds for the three header states; arbitrary, distinct constants.
constexpr uint64_t kMagicUsed = 0x55534544'9e3779b9;
constexpr uint64_t kMagicFree = 0x46524545'7f4a7c15;
constexpr uint64_t kMagicSentinel = 0x454e4421'94d049bb;

// Requests above this are refused outright, so size arithmetic cannot overflow.
constexpr size_t kMaxRequest = SIZE_MAX / 4;

uintptr_t addr_of(const void* p) {
    return reinterpret_cast<uintptr_t>(p);
}

Header* header_at(uintptr_t addr) {
    return reinterpret_cast<Header*>(addr);
}

size_t block_size(const Header* h) {
    return static_cast<size_t>(h->size_flags & ~kFlagMask);
}

bool is_used(const Header* h) {
    return (h->size_flags & kUsedBit) != 0;
}

bool prev_is_used(const Header* h) {
    return (h->size_flags & kPrevUsedBit) != 0;
}

// Ties the header to its address and size, so a stray pointer or a stale copy
// of a header does not pass for a block. The "previous used" bit is left out:
// it changes when the neighbour does.
uint64_t check_word(const Header* h, uint64_t magic) {
    return magic ^ (addr_of(h) * 0x9e3779b97f4a7c15) ^ block_size(h);
}

void set_prev_used(uintptr_t block, bool used) {
    Header* h = header_at(block);
    h->size_flags = used ? (h->size_flags | kPrevUsedBit) : (h->size_flags & ~kPrevUsedBit);
}

void write_footer(uintptr_t block, size_t size) {
    uint64_t v = size;
    __builtin_memcpy(reinterpret_cast<void*>(block + size - sizeof v), &v, sizeof v);
}

uint64_t footer_before(uintptr_t block) {
    uint64_t v;
    __builtin_memcpy(&v, reinterpret_cast<const void*>(block - sizeof v), sizeof v);
    return v;
}

unsigned bin_of(size_t block_bytes) {
    return 63u - static_cast<unsigned>(__builtin_clzll(block_bytes));
}

uintptr_t align_up(uintptr_t v, size_t align) {
    return (v + align - 1) & ~uintptr_t{align - 1};
}

}  // namespace

Status Heap::add_region(void* base, size_t size) {
    if (base == nullptr) return Error::InvalidArgument;
    const uintptr_t raw = addr_of(base);
    if (size > UINTPTR_MAX - raw || raw > UINTPTR_MAX - kMinAlign) return Error::InvalidArgument;
    const uintptr_t start = align_up(raw, kMinAlign);
    const uintptr_t end = (raw + size) & ~uintptr_t{kMinAlign - 1};
    if (end < start || end - start < kMinBlockSize + kHeaderSize) return Error::InvalidArgument;

    LockGuard guard(lock_);
    if (region_count_ == kMaxRegions) return Error::OutOfMemory;
    for (size_t i = 0; i < region_count_; ++i) {
        const Region& r = regions_[i];
        if (start < r.sentinel + kHeaderSize && r.start < end) return Error::InvalidArgument;
    }
    Region& region = regions_[region_count_++];
    region.start = start;
    region.sentinel = end - kHeaderSize;

    Header* sentinel = new (reinterpret_cast<void*>(region.sentinel)) Header{kUsedBit, 0};
    sentinel->check = check_word(sentinel, kMagicSentinel);
    const size_t block = region.sentinel - start;
    make_free(start, block, true);  // nothing before the first block: "previous used"
    bytes_total_ += block;
    bytes_free_ += block;
    ++free_blocks_;
    return Error::None;
}

const Heap::Region* Heap::region_of(uintptr_t addr) const {
    for (size_t i = 0; i < region_count_; ++i) {
        const Region& r = regions_[i];
        if (addr >= r.start && addr < r.sentinel + kHeaderSize) return &r;
    }
    return nullptr;
}

bool Heap::owns(const void* ptr) {
    LockGuard guard(lock_);
    return region_of(addr_of(ptr)) != nullptr;
}

void Heap::insert_free(FreeBlock* block) {
    const unsigned bin = bin_of(block_size(&block->header));
    block->prev = nullptr;
    block->next = bins_[bin];
    if (block->next != nullptr) block->next->prev = block;
    bins_[bin] = block;
    nonempty_bins_ |= uint64_t{1} << bin;
}

void Heap::remove_free(FreeBlock* block) {
    const unsigned bin = bin_of(block_size(&block->header));
    if (block->prev != nullptr) {
        block->prev->next = block->next;
    } else {
        bins_[bin] = block->next;
    }
    if (block->next != nullptr) block->next->prev = block->prev;
    if (bins_[bin] == nullptr) nonempty_bins_ &= ~(uint64_t{1} << bin);
}

void Heap::make_free(uintptr_t addr, size_t size, bool prev_used) {
    auto* block = new (reinterpret_cast<void*>(addr))
        FreeBlock{Header{size | (prev_used ? kPrevUsedBit : 0), 0}, nullptr, nullptr};
    block->header.check = check_word(&block->header, kMagicFree);
    write_footer(addr, size);
    insert_free(block);
}

void* Heap::alloc(size_t size, size_t align) {
    if (align == 0 || (align & (align - 1)) != 0 || align > kMaxAlign) {
        MK_PANIC("heap: alignment %zu is not a power of two up to %zu", align, kMaxAlign);
    }
    if (align < kMinAlign) align = kMinAlign;
    if (size > kMaxRequest) return nullptr;
    size_t need = align_up(size == 0 ? 1 : size, kMinAlign) + kHeaderSize;
    if (need < kMinBlockSize) need = kMinBlockSize;

    LockGuard guard(lock_);
    // Classes below need's hold only smaller blocks; need's own class may hold
    // some, so every candidate is still checked.
    uint64_t bins = nonempty_bins_ & (~uint64_t{0} << bin_of(need));
    while (bins != 0) {
        const unsigned bin = static_cast<unsigned>(__builtin_ctzll(bins));
        bins &= bins - 1;
        for (FreeBlock* fb = bins_[bin]; fb != nullptr; fb = fb->next) {
            const uintptr_t b = addr_of(fb);
            const size_t fsize = block_size(&fb->header);
            if (fsize < need) continue;
            // The header goes at b if that aligns the payload; otherwise far
            // enough in that the gap before it can be a free block of its own.
            uintptr_t hdr = b;
            if ((b + kHeaderSize) % align != 0) {
                hdr = align_up(b + kHeaderSize + kMinBlockSize, align) - kHeaderSize;
            }
            const size_t lead = hdr - b;
            if (lead > fsize || fsize - lead < need) continue;

            // Carve: [b, hdr) stays free, [hdr, hdr + taken) is the block,
            // the rest (if big enough to be a block) stays free.
            remove_free(fb);
            --free_blocks_;
            bytes_free_ -= fsize;
            bool prev_used = prev_is_used(&fb->header);
            if (lead > 0) {
                make_free(b, lead, prev_used);
                ++free_blocks_;
                bytes_free_ += lead;
                prev_used = false;
            }
            const size_t rest = fsize - lead;
            const size_t taken = rest - need >= kMinBlockSize ? need : rest;
            Header* h = new (reinterpret_cast<void*>(hdr))
                Header{taken | kUsedBit | (prev_used ? kPrevUsedBit : 0), 0};
            h->check = check_word(h, kMagicUsed);
            if (taken < rest) {
                make_free(hdr + taken, rest - taken, true);
                ++free_blocks_;
                bytes_free_ += rest - taken;
                // The block after it already says "previous free": fb was free.
            } else {
                set_prev_used(hdr + taken, true);
            }
            ++used_blocks_;
            bytes_used_ += taken;
            return reinterpret_cast<void*>(hdr + kHeaderSize);
        }
    }
    return nullptr;
}

void Heap::free(void* ptr) {
    if (ptr == nullptr) return;
    LockGuard guard(lock_);
    const uintptr_t p = addr_of(ptr);
    const Region* region = region_of(p);
    if (region == nullptr || p % kMinAlign != 0 || p < region->start + kHeaderSize ||
        p > region->sentinel) {
        MK_PANIC("heap: bad free of %p: not a block of this heap", ptr);
    }
    uintptr_t start = p - kHeaderSize;
    Header* h = header_at(start);
    size_t size = block_size(h);
    if (!is_used(h) && h->check == check_word(h, kMagicFree)) {
        MK_PANIC("heap: double free of %p", ptr);
    }
    if (!is_used(h) || h->check != check_word(h, kMagicUsed) || size < kMinBlockSize ||
        size > region->sentinel - start) {
        MK_PANIC("heap: bad free of %p: no allocated block there (stray pointer or corrupted heap)",
                 ptr);
    }
    --used_blocks_;
    bytes_used_ -= size;
    // Mark the header freed right away: if it is merged into the block before,
    // it stays behind as is, and a second free of ptr must still be caught.
    h->size_flags &= ~kUsedBit;
    h->check = check_word(h, kMagicFree);
    bool prev_used = prev_is_used(h);

    Header* next = header_at(start + size);
    if (!is_used(next)) {
        const size_t next_size = block_size(next);
        remove_free(reinterpret_cast<FreeBlock*>(next));
        --free_blocks_;
        bytes_free_ -= next_size;
        size += next_size;
    }
    if (!prev_used) {
        const uint64_t prev_size = footer_before(start);
        Header* prev = header_at(start - static_cast<uintptr_t>(prev_size));
        if (prev_size < kMinBlockSize || prev_size % kMinAlign != 0 ||
            prev_size > start - region->start || is_used(prev) || block_size(prev) != prev_size ||
            prev->check != check_word(prev, kMagicFree)) {
            MK_PANIC("heap: corrupted heap: bad free block before %p", ptr);
        }
        remove_free(reinterpret_cast<FreeBlock*>(prev));
        --free_blocks_;
        bytes_free_ -= prev_size;
        start -= prev_size;
        size += prev_size;
        prev_used = prev_is_used(prev);
    }
    make_free(start, size, prev_used);
    ++free_blocks_;
    bytes_free_ += size;
    set_prev_used(start + size, false);
}

HeapStats Heap::stats() {
    LockGuard guard(lock_);
    HeapStats s;
    s.regions = region_count_;
    s.bytes_total = bytes_total_;
    s.bytes_used = bytes_used_;
    s.bytes_free = bytes_free_;
    s.used_blocks = used_blocks_;
    s.free_blocks = free_blocks_;
    if (nonempty_bins_ != 0) {
        const unsigned top = 63u - static_cast<unsigned>(__builtin_clzll(nonempty_bins_));
        size_t largest = 0;
        for (FreeBlock* fb = bins_[top]; fb != nullptr; fb = fb->next) {
            if (block_size(&fb->header) > largest) largest = block_size(&fb->header);
        }
        s.largest_free = largest - kHeaderSize;
    }
    return s;
}

bool Heap::check() {
    LockGuard guard(lock_);
    return check_locked();
}

bool Heap::check_locked() {
    size_t total = 0, used = 0, free_bytes = 0, used_blocks = 0, free_blocks = 0;
    for (size_t i = 0; i < region_count_; ++i) {
        const Region& r = regions_[i];
        uintptr_t at = r.start;
        bool prev_used = true;
        while (at < r.sentinel) {
            const Header* h = header_at(at);
            const size_t size = block_size(h);
            if (size < kMinBlockSize || size > r.sentinel - at) return false;
            if (prev_is_used(h) != prev_used) return false;
            if (is_used(h)) {
                if (h->check != check_word(h, kMagicUsed)) return false;
                used += size;
                ++used_blocks;
            } else {
                if (!prev_used) return false;  // two free neighbours: a missed merge
                if (h->check != check_word(h, kMagicFree)) return false;
                if (footer_before(at + size) != size) return false;
                free_bytes += size;
                ++free_blocks;
            }
            total += size;
            prev_used = is_used(h);
            at += size;
        }
        const Header* sentinel = header_at(r.sentinel);
        if (at != r.sentinel ||
            sentinel->size_flags != (kUsedBit | (prev_used ? kPrevUsedBit : 0)) ||
            sentinel->check != check_word(sentinel, kMagicSentinel)) {
            return false;
        }
    }
    if (total != bytes_total_ || used != bytes_used_ || free_bytes != bytes_free_ ||
        used_blocks != used_blocks_ || free_blocks != free_blocks_) {
        return false;
    }

    size_t listed = 0;
    for (unsigned bin = 0; bin < kBins; ++bin) {
        if ((bins_[bin] != nullptr) != (((nonempty_bins_ >> bin) & 1) != 0)) return false;
        const FreeBlock* prev = nullptr;
        for (const FreeBlock* fb = bins_[bin]; fb != nullptr; fb = fb->next) {
            if (++listed > free_blocks_) return false;  // also ends a cycle
            if (region_of(addr_of(fb)) == nullptr || is_used(&fb->header)) return false;
            if (fb->header.check != check_word(&fb->header, kMagicFree)) return false;
            if (bin_of(block_size(&fb->header)) != bin || fb->prev != prev) return false;
            prev = fb;
        }
    }
    return listed == free_blocks_;
}

}  // namespace mk
