// BootModules: the programs GRUB loaded next to the kernel, as one kernel
// object. A handle to it with the Manage right is what ProcessSpawn needs;
// only init is given one.
#pragma once

#include <cstddef>

#include "kernel.hpp"
#include "kobject.hpp"

namespace mk {

class BootModules : public KObject {
  public:
    // The one instance, made before anything runs (a static constructor,
    // so no CPU can race to make it); the kernel holds a reference for ever.
    static BootModules& instance() { return instance_; }

    // The module named `name` (its GRUB string), `length` bytes of it.
    [[nodiscard]] Result<ModuleImage> find(const char* name, size_t length) const;

  private:
    BootModules() : KObject(ObjectType::Modules) {}
    static BootModules instance_;
};

}  // namespace mk
