// The kernel log: printf-style formatting (mk/format.hpp) onto the CPU's log
// device (COM1).
#pragma once

#include <cstdarg>
#include <cstddef>

#include "mk/format.hpp"

namespace mk {

// Writes one formatted message to the kernel log.
void log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void vlog(const char* fmt, va_list args);

}  // namespace mk
