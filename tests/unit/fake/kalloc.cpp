// Host stand-in for the kernel heap: malloc, so ASan sees every object.
#include <cstdint>
#include <cstdlib>

#include <cstdio>

#include "fake_heap.hpp"
#include "kernel.hpp"
#include "memory.hpp"

namespace mk {

namespace {
size_t g_fail_after = SIZE_MAX;  // tests can make allocations fail
size_t g_live = 0;
}  // namespace

void fake_kalloc_fail_after(size_t n) {
    g_fail_after = n;
}

size_t fake_kalloc_live() {
    return g_live;
}

void* kalloc(size_t size, size_t align) {
    if (g_fail_after == 0) return nullptr;
    if (g_fail_after != SIZE_MAX) --g_fail_after;
    if (align < alignof(void*)) align = alignof(void*);
    size_t rounded = (size + align - 1) / align * align;
    void* p = std::aligned_alloc(align, rounded == 0 ? align : rounded);
    if (p != nullptr) ++g_live;
    return p;
}

void kfree(void* ptr) {
    if (ptr != nullptr) --g_live;
    std::free(ptr);
}

// Frames on the host: a FrameAllocator over a 32 MiB arena of host memory,
// made on first use, whose "physical" addresses are host addresses, so the
// fake CPU's frame_to_kernel() is the identity. Never freed (the arena
// lives as long as the test binary).
FrameAllocator& frame_allocator() {
    static FrameAllocator* frames = [] {
        constexpr size_t kArena = 32 * 1024 * 1024;
        static void* arena = std::aligned_alloc(FrameAllocator::kFrameSize, kArena);
        if (arena == nullptr) {
            std::fprintf(stderr, "fake: no memory for the frame arena\n");
            std::abort();
        }
        PhysRange usable{reinterpret_cast<uint64_t>(arena), kArena};
        PhysRanges ranges{&usable, 1};
        size_t bytes = FrameAllocator::storage_size(ranges);
        void* storage = std::aligned_alloc(8, (bytes + 7) / 8 * 8);
        auto* fa = new FrameAllocator();
        if (storage == nullptr || fa->init(ranges, PhysRanges{}, FrameAllocator::kNoLimit, storage,
                                           bytes, PhysRange{}) != Error::None) {
            std::fprintf(stderr, "fake: cannot set up the frame allocator\n");
            std::abort();
        }
        return fa;
    }();
    return *frames;
}

}  // namespace mk
