// Dies of a page fault (a store to an unmapped low page), for the user tests.
#include <cstdint>

#include "mk/runtime.hpp"

namespace {
// Kept out of the compiler's sight, so the store is a real one.
volatile uintptr_t g_unmapped = 0x10;
}  // namespace

int main(uint64_t) {
    *reinterpret_cast<volatile int*>(g_unmapped) = 1;
    return 0;
}
