#include "kobject.hpp"

#include "panic.hpp"
#include "process.hpp"

namespace mk {

const char* object_type_name(ObjectType t) {
    switch (t) {
        case ObjectType::Endpoint:
            return "endpoint";
        case ObjectType::Thread:
            return "thread";
        case ObjectType::Process:
            return "process";
        case ObjectType::Reply:
            return "reply";
        case ObjectType::Modules:
            return "modules";
    }
    return "?";
}

void kobject_free(KObject* object) {
    switch (object->type()) {
        case ObjectType::Process:
            Process::free(static_cast<Process*>(object));
            return;
        case ObjectType::Endpoint:
        case ObjectType::Thread:
        case ObjectType::Reply:
        case ObjectType::Modules:  // lives for ever: the kernel keeps a reference
            break;
    }
    MK_PANIC("kobject_free: no free for %s objects", object_type_name(object->type()));
}

}  // namespace mk
