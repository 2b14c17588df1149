// The user runtime: program start, printf to the kernel's debug log, exit.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>

namespace mk {

// Writes to the debug log (the kernel prefixes each write with the process
// name). Returns the length the output had (longer output is cut at 1 KiB).
int printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char* fmt, va_list args);

// Ends the process with `status`.
[[noreturn]] void exit(int status);

}  // namespace mk

// What a program defines: its main, with the argument the kernel passed.
int main(uint64_t arg);
