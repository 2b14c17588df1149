// BadgeTracker: what tells a server that the last handle with a badge it
// handed out is gone (a pipe's last writer closed, a client died).
//
// Minting a badge onto an unbadged endpoint handle starts a lineage: every
// handle descended from that mint — copies, minted copies keeping the badge,
// handles moved or copied in messages and in flight, handles passed at
// spawn — holds one reference to the lineage's tracker (HandleEntry::tracker).
// The kernel's count of handles *is* this reference count: a reference that
// is not a handle (a lookup in progress) never holds a tracker, so it can
// never keep the lineage alive, and a copy can never end it early. When the
// last reference goes, the tracker posts its notice (allocated when the
// lineage began, so this cannot fail) to the endpoint: label
// abi::kLabelLastHandle, words[0] and the badge field the badge.
#pragma once

#include "endpoint.hpp"
#include "kobject.hpp"

namespace mk {

class BadgeTracker : public KObject {
  public:
    // The tracker of a new lineage of `badge` on `object`, or null (no
    // error) when `object` is not an endpoint. Errors: OutOfMemory.
    // Matches TrackerFactory (HandleTable::mint).
    [[nodiscard]] static Result<KObject*> make(KObject* object, uint64_t badge);

  private:
    MK_KOBJECT_ALLOCATION_FRIENDS;

    BadgeTracker(Endpoint* endpoint, uint64_t badge, Notice* notice);
    ~BadgeTracker() = default;
    // The last handle is gone: post the notice. Never under a lock.
    static void free_object(BadgeTracker* tracker);

    Ref<Endpoint> endpoint_;
    uint64_t badge_;
    Notice* notice_;
};

// ReceiveTracker: what tells the kernel that nobody can receive on an
// endpoint any more (the server process died, or closed its handle).
//
// Made with the endpoint (Sys::EndpointCreate) and held, in
// HandleEntry::tracker, by every handle to it that has the Receive right:
// the creator's, copies and minted copies keeping the right, handles in
// flight. Such a handle has no badge (HandleTable::mint refuses a badge with
// the Receive right), so the field is free for it. When the last one goes,
// the endpoint is destroyed (Endpoint::close_receive_side): every queued
// sender and caller wakes with Destroyed instead of waiting for ever, and
// every later operation on it returns Destroyed.
class ReceiveTracker : public KObject {
  public:
    // Errors: OutOfMemory.
    [[nodiscard]] static Result<KObject*> make(Endpoint* endpoint);

  private:
    MK_KOBJECT_ALLOCATION_FRIENDS;
    explicit ReceiveTracker(Endpoint* endpoint);
    ~ReceiveTracker() = default;
    // The last handle with the Receive right is gone. Never under a lock.
    static void free_object(ReceiveTracker* tracker);
    Ref<Endpoint> endpoint_;
};

}  // namespace mk
