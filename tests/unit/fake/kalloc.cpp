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

// No physical frames on the host (user memory is not host-tested yet).
FrameAllocator& frame_allocator() {
    std::fprintf(stderr, "fake: no frame allocator on the host\n");
    std::abort();
}

}  // namespace mk
