// The few runtime symbols a freestanding C++ kernel still needs: static-object
// bookkeeping (the memory functions are libipc/src/memory.cpp, shared with
// user programs).
#include <cstddef>
#include <cstdint>

extern "C" {

// The kernel never ends, so static destructors never run.
int __cxa_atexit(void (*)(void*), void*, void*);
int __cxa_atexit(void (*)(void*), void*, void*) {
    return 0;
}
void __cxa_pure_virtual();
void __cxa_pure_virtual() {
    __builtin_trap();
}
void* __dso_handle = nullptr;
}

// Kernel objects are freed with kdelete(); a delete expression is a bug.
void operator delete(void*) noexcept;
void operator delete(void*, size_t) noexcept;
void operator delete(void*) noexcept {
    __builtin_trap();
}
void operator delete(void*, size_t) noexcept {
    __builtin_trap();
}
