#include "frame_allocator.hpp"

#include "panic.hpp"

namespace mk {

namespace {

constexpr uint64_t kFrame = FrameAllocator::kFrameSize;

// Frame numbers [first, end); empty when first >= end.
struct FrameSpan {
    uint64_t first = 0;
    uint64_t end = 0;
    bool empty() const { return first >= end; }
};

uint64_t range_end(const PhysRange& r) {
    return r.size > UINT64_MAX - r.base ? UINT64_MAX : r.base + r.size;
}

// The frames a usable range holds whole (edges trimmed inward), ending at or
// below limit_frame (the first frame number not managed).
FrameSpan inner_frames(const PhysRange& r, uint64_t limit_frame) {
    FrameSpan s;
    s.first = r.base / kFrame + (r.base % kFrame != 0 ? 1 : 0);
    s.end = range_end(r) / kFrame;
    if (s.end > limit_frame) s.end = limit_frame;
    return s;
}

// The frames a reserved range touches at all (edges rounded outward).
FrameSpan outer_frames(const PhysRange& r) {
    FrameSpan s;
    if (r.size == 0) return s;
    uint64_t end = range_end(r);
    s.first = r.base / kFrame;
    s.end = end / kFrame + (end % kFrame != 0 ? 1 : 0);
    return s;
}

uint64_t limit_frame_of(uint64_t max_address) {
    return max_address / kFrame;
}

// The frames the bitmaps cover: from the lowest to the highest usable frame.
FrameSpan usable_hull(PhysRanges usable, uint64_t max_address) {
    FrameSpan hull{UINT64_MAX, 0};
    for (size_t i = 0; i < usable.count; ++i) {
        FrameSpan s = inner_frames(usable.ranges[i], limit_frame_of(max_address));
        if (s.empty()) continue;
        if (s.first < hull.first) hull.first = s.first;
        if (s.end > hull.end) hull.end = s.end;
    }
    if (hull.empty()) return FrameSpan{};
    return hull;
}

size_t words_for(uint64_t frames) {
    return static_cast<size_t>((frames + 63) / 64);
}

// Bits [lo, hi) of a word, 0 <= lo < hi <= 64.
uint64_t bit_mask(unsigned lo, unsigned hi) {
    uint64_t upto = hi == 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1;
    return upto & ~((uint64_t{1} << lo) - 1);
}

// Without -mpopcnt, __builtin_popcountll becomes a call into libgcc; this keeps
// the allocator free of that dependency.
size_t popcount(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555);
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f;
    return static_cast<size_t>((x * 0x0101010101010101) >> 56);
}

// Calls f(word_index, mask) for the bits [from, to) word by word.
template <typename F>
void for_each_mask(uint64_t from, uint64_t to, F f) {
    while (from < to) {
        unsigned lo = static_cast<unsigned>(from % 64);
        uint64_t left = to - from;
        unsigned hi = left >= 64 - lo ? 64 : lo + static_cast<unsigned>(left);
        f(static_cast<size_t>(from / 64), bit_mask(lo, hi));
        from += hi - lo;
    }
}

}  // namespace

size_t FrameAllocator::storage_size(PhysRanges usable, uint64_t max_address) {
    FrameSpan hull = usable_hull(usable, max_address);
    if (hull.empty()) return 0;
    return 2 * words_for(hull.end - hull.first) * sizeof(uint64_t);  // managed_ and used_
}

Result<uint64_t> FrameAllocator::place_storage(PhysRanges usable, PhysRanges reserved,
                                               uint64_t max_address, size_t bytes) {
    if (bytes == 0) return Error::InvalidArgument;
    const uint64_t need = bytes / kFrame + (bytes % kFrame != 0 ? 1 : 0);
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < usable.count; ++i) {
        FrameSpan s = inner_frames(usable.ranges[i], limit_frame_of(max_address));
        uint64_t candidate = s.first;
        // Slide the candidate past every reserved range it touches, until it
        // touches none or no longer fits. Each move strictly advances it.
        for (;;) {
            if (candidate >= s.end || s.end - candidate < need) {
                candidate = UINT64_MAX;
                break;
            }
            bool moved = false;
            for (size_t j = 0; j < reserved.count; ++j) {
                FrameSpan r = outer_frames(reserved.ranges[j]);
                if (r.empty()) continue;
                if (r.first < candidate + need && candidate < r.end) {
                    candidate = r.end;
                    moved = true;
                }
            }
            if (!moved) break;
        }
        if (candidate < best) best = candidate;
    }
    if (best == UINT64_MAX) return Error::OutOfMemory;
    return best * kFrame;
}

Status FrameAllocator::init(PhysRanges usable, PhysRanges reserved, uint64_t max_address,
                            void* storage, size_t storage_bytes, PhysRange storage_phys) {
    LockGuard guard(lock_);
    if (initialized_) return Error::InvalidArgument;
    FrameSpan hull = usable_hull(usable, max_address);
    const size_t words = hull.empty() ? 0 : words_for(hull.end - hull.first);
    if (words > 0) {
        if (storage == nullptr || reinterpret_cast<uintptr_t>(storage) % alignof(uint64_t) != 0) {
            return Error::InvalidArgument;
        }
        if (storage_bytes < 2 * words * sizeof(uint64_t)) return Error::InvalidArgument;
    }

    initialized_ = true;
    if (words == 0) return Error::None;  // nothing usable: every alloc() reports OutOfMemory

    managed_ = static_cast<uint64_t*>(storage);
    used_ = managed_ + words;
    first_frame_ = hull.first;
    span_ = hull.end - hull.first;
    __builtin_memset(managed_, 0, words * sizeof(uint64_t));
    __builtin_memset(used_, 0xff, words * sizeof(uint64_t));

    // Usable first, then reserved ranges cut out of them: a frame is managed if
    // any usable range holds it whole and no reserved range touches it, however
    // the firmware's ranges overlap.
    size_t managed = 0;
    for (size_t i = 0; i < usable.count; ++i) {
        FrameSpan s = inner_frames(usable.ranges[i], limit_frame_of(max_address));
        if (s.empty()) continue;
        managed += mark_free(s.first - first_frame_, s.end - first_frame_);
    }
    auto exclude = [&](const PhysRange& range) {
        FrameSpan r = outer_frames(range);
        if (r.first < first_frame_) r.first = first_frame_;
        if (r.end > hull.end) r.end = hull.end;
        if (r.empty()) return;
        managed -= mark_unmanaged(r.first - first_frame_, r.end - first_frame_);
    };
    for (size_t i = 0; i < reserved.count; ++i) exclude(reserved.ranges[i]);
    exclude(storage_phys);

    total_ = managed;
    free_ = managed;
    hint_ = 0;
    return Error::None;
}

size_t FrameAllocator::mark_free(uint64_t from, uint64_t to) {
    size_t changed = 0;
    for_each_mask(from, to, [&](size_t w, uint64_t mask) {
        uint64_t fresh = mask & ~managed_[w];
        managed_[w] |= fresh;
        used_[w] &= ~fresh;
        changed += popcount(fresh);
    });
    return changed;
}

size_t FrameAllocator::mark_unmanaged(uint64_t from, uint64_t to) {
    size_t changed = 0;
    for_each_mask(from, to, [&](size_t w, uint64_t mask) {
        uint64_t gone = mask & managed_[w];
        managed_[w] &= ~gone;
        used_[w] |= gone;
        changed += popcount(gone);
    });
    return changed;
}

uint64_t FrameAllocator::find_free(uint64_t from, uint64_t to) const {
    while (from < to) {
        size_t w = static_cast<size_t>(from / 64);
        unsigned lo = static_cast<unsigned>(from % 64);
        uint64_t bits = ~used_[w] & bit_mask(lo, 64);
        if (bits != 0) {
            uint64_t found = uint64_t{w} * 64 + static_cast<uint64_t>(__builtin_ctzll(bits));
            return found < to ? found : to;
        }
        from = uint64_t{w + 1} * 64;
    }
    return to;
}

uint64_t FrameAllocator::find_used(uint64_t from, uint64_t to) const {
    while (from < to) {
        size_t w = static_cast<size_t>(from / 64);
        unsigned lo = static_cast<unsigned>(from % 64);
        uint64_t bits = used_[w] & bit_mask(lo, 64);
        if (bits != 0) {
            uint64_t found = uint64_t{w} * 64 + static_cast<uint64_t>(__builtin_ctzll(bits));
            return found < to ? found : to;
        }
        from = uint64_t{w + 1} * 64;
    }
    return to;
}

Result<uint64_t> FrameAllocator::alloc() {
    LockGuard guard(lock_);
    if (free_ == 0) return Error::OutOfMemory;
    // Next-fit: continue after the last allocation, wrap around once.
    uint64_t i = find_free(hint_, span_);
    if (i == span_) i = find_free(0, hint_);
    MK_ASSERT(i < span_ && test(managed_, i));  // free_ > 0 promises a free frame
    set_used(i);
    --free_;
    hint_ = i + 1 < span_ ? i + 1 : 0;
    return (first_frame_ + i) * kFrame;
}

Result<uint64_t> FrameAllocator::alloc_contiguous(size_t count, size_t align_frames) {
    if (count == 0) return Error::InvalidArgument;
    if (align_frames == 0) align_frames = 1;
    if ((align_frames & (align_frames - 1)) != 0) return Error::InvalidArgument;
    const uint64_t align = align_frames;

    LockGuard guard(lock_);
    if (count > free_) return Error::OutOfMemory;
    // Index of the first frame at or after index i whose frame number is aligned;
    // span_ when that would pass the end (or overflow).
    auto align_index = [&](uint64_t i) -> uint64_t {
        uint64_t frame = first_frame_ + i;
        if (frame > UINT64_MAX - (align - 1)) return span_;
        uint64_t aligned = (frame + align - 1) & ~(align - 1);
        return aligned - first_frame_ < span_ ? aligned - first_frame_ : span_;
    };
    uint64_t start = align_index(0);
    while (start < span_ && span_ - start >= count) {
        uint64_t blocker = find_used(start, start + count);
        if (blocker == start + count) {
            for_each_mask(start, start + count, [&](size_t w, uint64_t mask) { used_[w] |= mask; });
            free_ -= count;
            return (first_frame_ + start) * kFrame;
        }
        start = align_index(find_free(blocker + 1, span_));
    }
    return Error::OutOfMemory;
}

Status FrameAllocator::free_locked(uint64_t phys) {
    if (phys % kFrame != 0) return Error::InvalidArgument;
    const uint64_t frame = phys / kFrame;
    if (frame < first_frame_ || frame - first_frame_ >= span_) return Error::InvalidArgument;
    const uint64_t i = frame - first_frame_;
    if (!test(managed_, i) || !test(used_, i)) return Error::InvalidArgument;
    clear_used(i);
    ++free_;
    return Error::None;
}

Status FrameAllocator::free_checked(uint64_t phys) {
    LockGuard guard(lock_);
    return free_locked(phys);
}

void FrameAllocator::free(uint64_t phys) {
    if (free_checked(phys) != Error::None) {
        MK_PANIC("frame allocator: free of 0x%lx, which is misaligned, unmanaged or not allocated",
                 phys);
    }
}

void FrameAllocator::free_contiguous(uint64_t phys, size_t count) {
    for (size_t i = 0; i < count; ++i) free(phys + i * kFrame);
}

bool FrameAllocator::is_allocated(uint64_t phys) {
    LockGuard guard(lock_);
    const uint64_t frame = phys / kFrame;
    if (frame < first_frame_ || frame - first_frame_ >= span_) return false;
    const uint64_t i = frame - first_frame_;
    return test(managed_, i) && test(used_, i);
}

size_t FrameAllocator::free_count() {
    LockGuard guard(lock_);
    return free_;
}

size_t FrameAllocator::total_count() {
    LockGuard guard(lock_);
    return total_;
}

}  // namespace mk
