// kalloc()/kfree() for the kernel: one global Heap, fed regions at boot and
// grown on demand. (The host tests link tests/unit/fake/kalloc.cpp instead.)
#include "heap.hpp"
#include "memory.hpp"

namespace mk {

namespace {
// Constant-initialized and trivially destructible: usable before any
// constructor runs, and never registered for destruction.
constinit Heap g_kernel_heap;
bool (*g_grow)(size_t) = nullptr;
}  // namespace

Heap& kernel_heap() {
    return g_kernel_heap;
}

void kernel_heap_set_grow(bool (*grow)(size_t at_least)) {
    g_grow = grow;
}

void* kalloc(size_t size, size_t align) {
    void* p = g_kernel_heap.alloc(size, align);
    if (p != nullptr || g_grow == nullptr) return p;
    // Not under the heap lock: growing takes the frame allocator's lock and
    // then add_region() takes the heap's.
    if (size > (size_t(1) << 48) || !g_grow(size + align)) return nullptr;
    return g_kernel_heap.alloc(size, align);
}

void kfree(void* ptr) {
    g_kernel_heap.free(ptr);
}

}  // namespace mk
