// Kernel bugs: assertions and panics print where and why on the log, then halt.
// They are for broken kernel invariants only, never for bad user input.
#pragma once

namespace mk {

[[noreturn]] void panic(const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace mk

#define MK_PANIC(...) ::mk::panic(__FILE__, __LINE__, __VA_ARGS__)

// Always checked, also in release builds: the expression is type-checked and evaluated.
#define MK_ASSERT(cond)                                                     \
    do {                                                                    \
        if (__builtin_expect(!(cond), 0)) {                                 \
            ::mk::panic(__FILE__, __LINE__, "assertion failed: %s", #cond); \
        }                                                                   \
    } while (0)
