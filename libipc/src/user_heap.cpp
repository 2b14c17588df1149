// The user heap's allocator (mk/user_heap.hpp). No syscalls: host-tested.
#include "mk/user_heap.hpp"

namespace mk {

namespace {

constexpr uintptr_t kLiveTag = 0x6c697665626c6b21;  // "live blk!"

uintptr_t addr(const void* p) {
    return reinterpret_cast<uintptr_t>(p);
}

uintptr_t align_up(uintptr_t v, uintptr_t a) {
    return (v + a - 1) & ~(a - 1);
}

}  // namespace

uintptr_t UserHeap::tag(const Block* b) {
    return kLiveTag ^ addr(b);
}

void UserHeap::add_region(void* base, size_t size) {
    uintptr_t start = align_up(addr(base), kAlign);
    if (start < addr(base) || start - addr(base) >= size) return;
    size_t usable = (size - (start - addr(base))) & ~(kAlign - 1);
    if (usable < kMinBlock) return;
    auto* b = reinterpret_cast<Block*>(start);
    b->size = usable;
    insert_free(b);
}

// Links `b` into the free list at its address and merges it with the free
// neighbours it touches.
void UserHeap::insert_free(Block* b) {
    Block* prev = nullptr;
    Block* next = head_;
    while (next != nullptr && addr(next) < addr(b)) {
        prev = next;
        next = reinterpret_cast<Block*>(next->word);
    }
    b->word = addr(next);
    if (prev != nullptr) {
        prev->word = addr(b);
    } else {
        head_ = b;
    }
    if (next != nullptr && addr(b) + b->size == addr(next)) {
        b->size += next->size;
        b->word = next->word;
    }
    if (prev != nullptr && addr(prev) + prev->size == addr(b)) {
        prev->size += b->size;
        prev->word = b->word;
    }
}

void* UserHeap::fit(size_t need, size_t align) {
    Block* prev = nullptr;
    for (Block* b = head_; b != nullptr; prev = b, b = reinterpret_cast<Block*>(b->word)) {
        uintptr_t start = addr(b);
        uintptr_t end = start + b->size;
        uintptr_t hdr = align_up(start + kHeader, align) - kHeader;
        // A gap in front becomes a free block of its own, so it must hold one.
        if (hdr != start && hdr - start < kMinBlock) hdr += align;
        if (hdr >= end || end - hdr < need) continue;

        Block* next = reinterpret_cast<Block*>(b->word);
        size_t used = need;
        size_t tail = end - hdr - need;
        if (tail < kMinBlock) {  // too small to stand alone: the block keeps it
            used += tail;
            tail = 0;
        }
        Block* after = next;
        if (tail != 0) {
            after = reinterpret_cast<Block*>(hdr + used);
            after->size = tail;
            after->word = addr(next);
        }
        if (hdr != start) {  // b keeps the front gap
            b->size = hdr - start;
            b->word = addr(after);
        } else if (prev != nullptr) {
            prev->word = addr(after);
        } else {
            head_ = after;
        }
        auto* live = reinterpret_cast<Block*>(hdr);
        live->size = used;
        live->word = tag(live);
        ++live_;
        return reinterpret_cast<void*>(hdr + kHeader);
    }
    return nullptr;
}

void* UserHeap::allocate(size_t size, size_t align) {
    if (align < kAlign) align = kAlign;
    if ((align & (align - 1)) != 0) return nullptr;
    // Bounded so that no size computation below can wrap.
    constexpr size_t kMaxRequest = size_t{1} << 46;
    if (size > kMaxRequest || align > kMaxRequest) return nullptr;
    size_t need = align_up(size == 0 ? 1 : size, kAlign) + kHeader;
    if (void* p = fit(need, align)) return p;
    if (grow_ == nullptr) return nullptr;
    // Enough for the block whatever the alignment of the new memory.
    size_t got = 0;
    void* more = grow_(ctx_, need + align + kMinBlock, &got);
    if (more == nullptr) return nullptr;
    add_region(more, got);
    return fit(need, align);
}

bool UserHeap::free(void* p) {
    if (p == nullptr) return true;
    if (addr(p) % kAlign != 0 || addr(p) < kHeader) return false;
    auto* b = reinterpret_cast<Block*>(addr(p) - kHeader);
    if (b->word != tag(b)) return false;
    --live_;
    insert_free(b);
    return true;
}

size_t UserHeap::usable_size(const void* p) const {
    if (p == nullptr) return 0;
    const auto* b = reinterpret_cast<const Block*>(addr(p) - kHeader);
    return b->size - kHeader;
}

size_t UserHeap::free_bytes() const {
    size_t n = 0;
    for (const Block* b = head_; b != nullptr; b = reinterpret_cast<const Block*>(b->word)) {
        n += b->size;
    }
    return n;
}

size_t UserHeap::free_blocks() const {
    size_t n = 0;
    for (const Block* b = head_; b != nullptr; b = reinterpret_cast<const Block*>(b->word)) ++n;
    return n;
}

bool UserHeap::consistent() const {
    for (const Block* b = head_; b != nullptr; b = reinterpret_cast<const Block*>(b->word)) {
        if (addr(b) % kAlign != 0 || b->size < kMinBlock || b->size % kAlign != 0) return false;
        const auto* next = reinterpret_cast<const Block*>(b->word);
        if (next != nullptr && addr(b) + b->size >= addr(next)) return false;
    }
    return true;
}

}  // namespace mk
