// The memory functions the compiler may call in freestanding code (x86-64),
// shared by the kernel and user programs.
#include <cstddef>

extern "C" {

void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);

// Eight bytes at a time, then the rest: IPC payloads are copied here (the
// kernel's general path, libipc's messages), and a string instruction counts
// once per repetition under QEMU's -icount.
void* memcpy(void* dst, const void* src, size_t n) {
    void* start = dst;
    size_t words = n / 8;
    size_t bytes = n % 8;
    asm volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(words)::"memory");
    asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(bytes)::"memory");
    return start;
}

void* memmove(void* dst, const void* src, size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    if (d < s) {
        for (size_t i = 0; i < n; ++i) d[i] = s[i];
    } else {
        for (size_t i = n; i > 0; --i) d[i - 1] = s[i - 1];
    }
    return dst;
}

void* memset(void* dst, int c, size_t n) {
    void* start = dst;
    asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(c) : "memory");
    return start;
}

int memcmp(const void* a, const void* b, size_t n) {
    const auto* x = static_cast<const unsigned char*>(a);
    const auto* y = static_cast<const unsigned char*>(b);
    for (size_t i = 0; i < n; ++i) {
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}

}  // extern "C"
