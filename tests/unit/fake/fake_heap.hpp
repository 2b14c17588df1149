// Controls of the host stand-in for the kernel heap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mk {

// The next n allocations succeed, later ones fail; SIZE_MAX: never fail.
void fake_kalloc_fail_after(size_t n);

// Blocks allocated and not yet freed: a test compares it before and after
// an operation to see an object freed (or kept).
size_t fake_kalloc_live();

}  // namespace mk
