// Kernel object memory: allocation from the kernel heap. Exhaustion returns
// nullptr (callers turn it into Error::OutOfMemory), it never panics.
#pragma once

#include <cstddef>
#include <new>

namespace mk {

// Size and alignment in bytes; alignment a power of two up to 4096.
void* kalloc(size_t size, size_t align = 16);
void kfree(void* ptr);

// Construct a T in kernel memory; nullptr when memory is exhausted.
template <typename T, typename... Args>
T* knew(Args&&... args) {
    void* mem = kalloc(sizeof(T), alignof(T));
    if (mem == nullptr) return nullptr;
    return new (mem) T(static_cast<Args&&>(args)...);
}

template <typename T>
void kdelete(T* obj) {
    if (obj == nullptr) return;
    obj->~T();
    kfree(obj);
}

}  // namespace mk
