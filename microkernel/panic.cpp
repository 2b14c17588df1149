#include "panic.hpp"

#include <cstdarg>
#include <cstdint>

#include "cpu.hpp"
#include "log.hpp"

namespace mk {

void panic(const char* file, int line, const char* fmt, ...) {
    Cpu::save_and_disable_interrupts();
    // First, so that nothing another CPU does or logs mixes with this.
    uint32_t stopped = Cpu::stop_other_cpus();
    log("\nKERNEL PANIC at %s:%d: ", file, line);
    va_list args;
    va_start(args, fmt);
    vlog(fmt, args);
    va_end(args);
    log("\n");
    if (stopped != 0) log("panic: stopped %u other CPU%s\n", stopped, stopped == 1 ? "" : "s");
#if defined(MK_KERNEL)
    // The kernel keeps frame pointers: walk them while they point into the
    // higher half (resolve with addr2line -e build/boot/kernel.elf).
    auto* frame = static_cast<uintptr_t*>(__builtin_frame_address(0));
    log("backtrace:");
    for (int depth = 0; depth < 16 && frame != nullptr; ++depth) {
        uintptr_t fp = reinterpret_cast<uintptr_t>(frame);
        if (fp < 0xFFFF800000000000ull || (fp & 7) != 0) break;
        log(" %lx", frame[1]);
        frame = reinterpret_cast<uintptr_t*>(frame[0]);
    }
    log("\n");
#endif
    Cpu::halt_forever();
}

}  // namespace mk

// Boost.Intrusive's checks (BOOST_ENABLE_ASSERT_HANDLER) land here.
namespace boost {
[[noreturn]] void assertion_failed(char const* expr, char const* function, char const* file,
                                   long line);
[[noreturn]] void assertion_failed(char const* expr, char const* function, char const* file,
                                   long line) {
    mk::panic(file, int(line), "boost assertion failed: %s in %s", expr, function);
}
}  // namespace boost
