// In-kernel test cases, run on the real CPU by the boot tests (ktest=...).
// Each case prints one result line on the serial log: "[ktest] ok - NAME" or
// "[ktest] not ok - NAME"; tests/qemu/boot_test.py turns them into TAP.
#pragma once

#include <cstddef>
#include <cstdint>

#include "log.hpp"

namespace mk {
class Thread;
}

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
CaseList user_cases();

// Helpers for cases that run several kernel threads (tests/kernel/support.cpp).
// Creates and starts a thread running fn(arg); nullptr when out of memory.
Thread* spawn(const char* name, void (*fn)(void*), void* arg);
// The same, homed on CPU `cpu` (below cpu_count()).
Thread* spawn_on(const char* name, void (*fn)(void*), void* arg, uint32_t cpu);
// Sleeps the calling thread for `ticks` timer ticks.
void sleep_ticks(uint64_t ticks);
// Waits (sleeping) until all the threads are Dead, then destroys them.
void join(Thread* const* threads, int n);

}  // namespace mk::ktest

// Fails the current case with the condition and where it was checked.
#define KCHECK(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            ::mk::log("[ktest]   check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            return false;                                                                 \
        }                                                                                 \
    } while (0)
