// Freeing kernel objects: the one place that knows every object type.
#include "kobject.hpp"

#include "endpoint.hpp"
#include "object/badge_tracker.hpp"
#include "object/reply.hpp"
#include "panic.hpp"
#include "process.hpp"
#include "thread.hpp"

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
        case ObjectType::Badge:
            return "badge";
        case ObjectType::Receivers:
            return "receivers";
    }
    return "?";
}

void kobject_free(KObject* object) {
    switch (object->type()) {
        case ObjectType::Endpoint:
            Endpoint::free_object(static_cast<Endpoint*>(object));
            return;
        case ObjectType::Thread:
            Thread::free_object(static_cast<Thread*>(object));
            return;
        case ObjectType::Process:
            Process::free(static_cast<Process*>(object));
            return;
        case ObjectType::Reply:
            Reply::free_object(static_cast<Reply*>(object));
            return;
        case ObjectType::Badge:
            BadgeTracker::free_object(static_cast<BadgeTracker*>(object));
            return;
        case ObjectType::Receivers:
            ReceiveTracker::free_object(static_cast<ReceiveTracker*>(object));
            return;
        case ObjectType::Modules:  // lives for ever: the kernel keeps a reference
            break;
    }
    MK_PANIC("kobject_free: %s objects are not reference counted yet",
             object_type_name(object->type()));
}

}  // namespace mk
