// Host link stand-in for kobject_free(), until microkernel/kobject.cpp (which
// frees each object type) is part of the core: remove this file then.
//
// Weak, so that the real definition wins if both are linked. The host tests
// keep their own reference to every object they put in a handle table, so
// no count ever reaches 0 here: reaching this is a double release.
#include <cstdio>
#include <cstdlib>

#include "kobject.hpp"

namespace mk {

__attribute__((weak)) void kobject_free(KObject* object) {
    std::fprintf(stderr, "kobject_free(%p): last reference dropped (a double release?)\n",
                 static_cast<void*>(object));
    std::abort();
}

}  // namespace mk
