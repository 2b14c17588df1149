// Kernel link stand-in for kobject_free(), until microkernel/kobject.cpp
// (which frees each object type) is part of the core: remove this file then.
// Weak, so that the real definition wins if both are linked. Nothing in the
// kernel creates a kernel object yet, so reaching it is a bug.
#include "kobject.hpp"
#include "panic.hpp"

namespace mk {

__attribute__((weak)) void kobject_free(KObject* object) {
    MK_PANIC("kobject_free(%p): no kernel object types yet", static_cast<void*>(object));
}

}  // namespace mk
