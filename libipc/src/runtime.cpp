#include "mk/runtime.hpp"

#include "mk/format.hpp"
#include "mk/ipc.hpp"
#include "mk/sys.hpp"

extern "C" {
extern void (*__init_array_start[])();
extern void (*__init_array_end[])();
[[noreturn]] void libipc_start(uint64_t arg);
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
