// Host stand-in for the boot modules: the host has none, so every name is
// unknown (InvalidArgument, as the kernel answers for a missing module).
#include "object/boot_modules.hpp"

#include <new>

namespace mk {

BootModules BootModules::instance_;

Result<ModuleImage> BootModules::find(const char*, size_t) const {
    return Error::InvalidArgument;
}

}  // namespace mk
