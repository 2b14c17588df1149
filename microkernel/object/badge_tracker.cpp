#include "object/badge_tracker.hpp"

#include "memory.hpp"
#include "mk/abi.hpp"

namespace mk {

BadgeTracker::BadgeTracker(Endpoint* endpoint, uint64_t badge, Notice* notice)
    : KObject(ObjectType::Badge),
      endpoint_(Ref<Endpoint>::retain(endpoint)),
      badge_(badge),
      notice_(notice) {}

Result<KObject*> BadgeTracker::make(KObject* object, uint64_t badge) {
    if (object->type() != ObjectType::Endpoint) return static_cast<KObject*>(nullptr);
    Notice* notice = knew<Notice>();
    if (notice == nullptr) return Error::OutOfMemory;
    BadgeTracker* t = knew<BadgeTracker>(static_cast<Endpoint*>(object), badge, notice);
    if (t == nullptr) {
        kdelete(notice);
        return Error::OutOfMemory;
    }
    return static_cast<KObject*>(t);
}

void BadgeTracker::free_object(BadgeTracker* tracker) {
    Notice* n = tracker->notice_;
    n->msg = Message{};
    n->msg.label = abi::kLabelLastHandle;
    n->msg.words[0] = tracker->badge_;
    n->badge = tracker->badge_;
    Ref<Endpoint> endpoint = static_cast<Ref<Endpoint>&&>(tracker->endpoint_);
    kdelete(tracker);
    endpoint->post_notice(n);  // the endpoint owns it now
}

ReceiveTracker::ReceiveTracker(Endpoint* endpoint)
    : KObject(ObjectType::Receivers), endpoint_(Ref<Endpoint>::retain(endpoint)) {}

Result<KObject*> ReceiveTracker::make(Endpoint* endpoint) {
    ReceiveTracker* t = knew<ReceiveTracker>(endpoint);
    if (t == nullptr) return Error::OutOfMemory;
    return static_cast<KObject*>(t);
}

void ReceiveTracker::free_object(ReceiveTracker* tracker) {
    Ref<Endpoint> endpoint = static_cast<Ref<Endpoint>&&>(tracker->endpoint_);
    kdelete(tracker);
    endpoint->close_receive_side();
}

}  // namespace mk
