#include "mk/runtime.hpp"

#include "mk/format.hpp"
#include "mk/ipc.hpp"
#include "mk/sys.hpp"

extern "C" {
extern void (*__init_array_start[])();
extern void (*__init_array_end[])();
[[noreturn]] void libipc_start(uint64_t arg);

// What the compiler may call in freestanding code.
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
}

namespace mk {

int vprintf(const char* fmt, va_list args) {
    char buf[1024];
    size_t n = vformat(buf, sizeof buf, fmt, args);
    size_t len = n < sizeof buf ? n : sizeof buf - 1;
    for (size_t off = 0; off < len; off += abi::kDebugLogMax) {
        size_t chunk = len - off < abi::kDebugLogMax ? len - off : abi::kDebugLogMax;
        (void)sys::debug_log(buf + off, chunk);
    }
    return int(n);
}

int printf(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int n = vprintf(fmt, args);
    va_end(args);
    return n;
}

void exit(int status) {
    sys::process_exit(uint64_t(uint32_t(status)));
}

}  // namespace mk

void libipc_start(uint64_t arg) {
    // The main thread's IPC buffer. A kernel that refuses it still runs the
    // program: register-only messages need no buffer, and operations that
    // do need one fail with BadState.
    (void)mk::ipc::init_main_thread();
    for (auto* ctor = __init_array_start; ctor != __init_array_end; ++ctor) (*ctor)();
    mk::exit(main(arg));
}

void* memcpy(void* dst, const void* src, size_t n) {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
    return dst;
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
    auto* d = static_cast<unsigned char*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = static_cast<unsigned char>(c);
    return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
    const auto* x = static_cast<const unsigned char*>(a);
    const auto* y = static_cast<const unsigned char*>(b);
    for (size_t i = 0; i < n; ++i) {
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}
