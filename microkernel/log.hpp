// The kernel log: printf-style formatting onto the CPU's log device (COM1).
#pragma once

#include <cstdarg>
#include <cstddef>

namespace mk {

// Formats into buf (always NUL-terminated when size > 0); returns the length the
// whole output would have had. Conversions: %d %i %u %x %X %p %s %c %% with the
// length modifiers l, ll, z, the flags '-', '0' and '#', a width, and a
// precision for strings ("%-8s", "%016lx", "%#x", "%.*s").
size_t vformat(char* buf, size_t size, const char* fmt, va_list args);
size_t format(char* buf, size_t size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

// Writes one formatted message to the kernel log.
void log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void vlog(const char* fmt, va_list args);

}  // namespace mk
