// Ends at once. The fuzz driver runs it before and after the syscall fuzzer
// on a kernel booted with memstat=on, which logs the kernel's heap use at
// each process's end: the two lines must agree (a leak check). Nothing else
// starts it, so its lines are easy to pick out of the log.
#include <cstdint>

#include "mk/runtime.hpp"

int main(uint64_t) {
    return 0;
}
