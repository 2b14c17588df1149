#include "log.hpp"

#include "cpu.hpp"

namespace mk {

void vlog(const char* fmt, va_list args) {
    char buf[512];
    size_t n = vformat(buf, sizeof buf, fmt, args);
    Cpu::log_write(buf, n < sizeof buf ? n : sizeof buf - 1);
}

void log(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vlog(fmt, args);
    va_end(args);
}

}  // namespace mk
