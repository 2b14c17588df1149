// In-kernel test cases, run on the real CPU by the boot tests (ktest=...).
// Each case prints one result line on the serial log: "[ktest] ok - NAME" or
// "[ktest] not ok - NAME"; tests/qemu/boot_test.py turns them into TAP.
#pragma once

#include <cstddef>

#include "log.hpp"

namespace mk::ktest {

struct Case {
    const char* name;
    bool (*run)();
};

struct CaseList {
    const Case* cases;
    size_t count;
};

// The cases of each test file, run in this order by run_kernel_tests().
CaseList core_cases();
CaseList ipc_cases();

}  // namespace mk::ktest

// Fails the current case with the condition and where it was checked.
#define KCHECK(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            ::mk::log("[ktest]   check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            return false;                                                                 \
        }                                                                                 \
    } while (0)
