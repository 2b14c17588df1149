// In-kernel test cases, run on the real CPU by the boot tests (ktest=...).
// Each case prints one result line on the serial log: "[ktest] ok - NAME" or
// "[ktest] not ok - NAME"; tests/qemu/boot_test.py turns them into TAP.
#pragma once

#include "log.hpp"

namespace mk::ktest {

struct Case {
    const char* name;
    bool (*run)();
};

}  // namespace mk::ktest

// Fails the current case with the condition and where it was checked.
#define KCHECK(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            ::mk::log("[ktest]   check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            return false;                                                                 \
        }                                                                                 \
    } while (0)
