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
            break;
    }
    MK_PANIC("kobject_free: no free for %s objects", object_type_name(object->type()));
}

}  // namespace mk
