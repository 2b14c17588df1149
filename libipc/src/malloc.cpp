// The heap of a user program: malloc/free and operator new/delete over one
// UserHeap that grows by Sys::MemMap. Only in the user build (the host has
// its own).
//
// One lock for all threads, taken by exchange; a thread that finds it held
// yields (the holder is most likely preempted) rather than spin.
//
// operator new without nothrow cannot report failure (no exceptions), so it
// ends the program with a message: code that can cope with no memory uses
// the nothrow forms or malloc. Coroutine frames (mk/server.hpp) use nothrow.
#include <cstddef>
#include <cstdint>
#include <new>

#include "mk/sys.hpp"
#include "mk/user_heap.hpp"

namespace std {
const nothrow_t nothrow{};
}  // namespace std

extern "C" {
void* malloc(size_t size);
void free(void* p);
void* calloc(size_t count, size_t size);
void* realloc(void* p, size_t size);
void* aligned_alloc(size_t align, size_t size);
}

namespace {

constexpr size_t kGrowChunk = 64 * 1024;

void* grow(void*, size_t min_bytes, size_t* got) {
    size_t bytes = min_bytes < kGrowChunk ? kGrowChunk : min_bytes;
    bytes = (bytes + mk::abi::kPageSize - 1) & ~(mk::abi::kPageSize - 1);
    mk::sys::Ret r =
        mk::sys::invoke(mk::abi::Sys::MemMap, 0, bytes, mk::abi::kProtRead | mk::abi::kProtWrite);
    if (!r.ok()) return nullptr;
    *got = bytes;
    return reinterpret_cast<void*>(r.r0);
}

constinit mk::UserHeap g_heap(grow, nullptr);
constinit int g_lock = 0;

class Locked {
  public:
    Locked() {
        while (__atomic_exchange_n(&g_lock, 1, __ATOMIC_ACQUIRE) != 0) (void)mk::sys::yield();
    }
    ~Locked() { __atomic_store_n(&g_lock, 0, __ATOMIC_RELEASE); }
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;
};

void* allocate(size_t size, size_t align) {
    Locked lock;
    return g_heap.allocate(size, align);
}

void release(void* p) {
    if (p == nullptr) return;
    bool ok;
    {
        Locked lock;
        ok = g_heap.free(p);
    }
    if (!ok) {
        static const char kMsg[] = "libipc: free() of a pointer that is not a live heap block\n";
        (void)mk::sys::debug_log(kMsg, sizeof kMsg - 1);
        __builtin_trap();
    }
}

[[noreturn]] void out_of_memory() {
    static const char kMsg[] = "libipc: out of memory in operator new\n";
    (void)mk::sys::debug_log(kMsg, sizeof kMsg - 1);
    __builtin_trap();
}

void* must_allocate(size_t size, size_t align) {
    void* p = allocate(size, align);
    if (p == nullptr) out_of_memory();
    return p;
}

}  // namespace

void* malloc(size_t size) {
    return allocate(size, mk::UserHeap::kAlign);
}

void free(void* p) {
    release(p);
}

void* calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return nullptr;
    void* p = allocate(count * size, mk::UserHeap::kAlign);
    if (p != nullptr) __builtin_memset(p, 0, count * size);
    return p;
}

void* realloc(void* p, size_t size) {
    if (p == nullptr) return malloc(size);
    if (size == 0) {
        free(p);
        return nullptr;
    }
    size_t old;
    {
        Locked lock;
        old = g_heap.usable_size(p);
    }
    if (size <= old) return p;
    void* q = malloc(size);
    if (q == nullptr) return nullptr;
    __builtin_memcpy(q, p, old);
    free(p);
    return q;
}

void* aligned_alloc(size_t align, size_t size) {
    return allocate(size, align);
}

void* operator new(size_t size) {
    return must_allocate(size, mk::UserHeap::kAlign);
}
void* operator new[](size_t size) {
    return must_allocate(size, mk::UserHeap::kAlign);
}
void* operator new(size_t size, std::align_val_t align) {
    return must_allocate(size, size_t(align));
}
void* operator new[](size_t size, std::align_val_t align) {
    return must_allocate(size, size_t(align));
}
void* operator new(size_t size, const std::nothrow_t&) noexcept {
    return allocate(size, mk::UserHeap::kAlign);
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
    return allocate(size, mk::UserHeap::kAlign);
}
void* operator new(size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
    return allocate(size, size_t(align));
}
void* operator new[](size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
    return allocate(size, size_t(align));
}

void operator delete(void* p) noexcept {
    release(p);
}
void operator delete[](void* p) noexcept {
    release(p);
}
void operator delete(void* p, size_t) noexcept {
    release(p);
}
void operator delete[](void* p, size_t) noexcept {
    release(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    release(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    release(p);
}
void operator delete(void* p, size_t, std::align_val_t) noexcept {
    release(p);
}
void operator delete[](void* p, size_t, std::align_val_t) noexcept {
    release(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    release(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    release(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    release(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    release(p);
}

size_t mk::heap_live_blocks() {
    Locked lock;
    return g_heap.live_blocks();
}
