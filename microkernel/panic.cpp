#include "panic.hpp"

#include <cstdarg>

#include "cpu.hpp"
#include "log.hpp"

namespace mk {

void panic(const char* file, int line, const char* fmt, ...) {
    Cpu::save_and_disable_interrupts();
    log("\nKERNEL PANIC at %s:%d: ", file, line);
    va_list args;
    va_start(args, fmt);
    vlog(fmt, args);
    va_end(args);
    log("\n");
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
