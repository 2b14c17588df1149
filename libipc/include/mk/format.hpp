// printf-style formatting for freestanding code: the kernel log and
// libipc's printf share it (libipc/src/format.cpp).
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

}  // namespace mk
