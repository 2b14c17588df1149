#include "object/handle_table.hpp"

#include <new>

#include "memory.hpp"
#include "panic.hpp"

namespace mk {

// ---------------------------------------------------------------------------
// Creation and destruction
// ---------------------------------------------------------------------------

Result<HandleTable*> HandleTable::create(uint32_t capacity, HandleClosedHook hook,
                                         void* hook_context) {
    if (capacity == 0 || capacity > kMaxCapacity) return Error::InvalidArgument;
    void* mem = kalloc(sizeof(HandleTable), alignof(HandleTable));
    if (mem == nullptr) return Error::OutOfMemory;
    void* slots = kalloc(sizeof(Slot) * capacity, alignof(Slot));
    if (slots == nullptr) {
        kfree(mem);
        return Error::OutOfMemory;
    }
    return new (mem) HandleTable(static_cast<Slot*>(slots), capacity, hook, hook_context);
}

void HandleTable::destroy(HandleTable* table) {
    if (table == nullptr) return;
    table->~HandleTable();
    kfree(table);
}

HandleTable::HandleTable(Slot* slots, uint32_t capacity, HandleClosedHook hook, void* hook_context)
    : slots_(slots), capacity_(capacity), hook_(hook), hook_context_(hook_context) {
    for (uint32_t i = 1; i <= capacity_; ++i) {
        // Generation 1, and the next free slot.
        new (&slot(i)) Slot{nullptr,
                            0,
                            (1u << kIndexBits) | (i < capacity_ ? i + 1 : 0),
                            0,
                            SlotState::Free,
                            ObjectType{},
                            0,
                            nullptr};
    }
    free_ = capacity_;
    free_head_ = 1;
    free_tail_ = uint16_t(capacity_);
}

HandleTable::~HandleTable() {
    clear();
    {
        LockGuard guard(lock_);
        // A reservation outliving its table would fill freed memory.
        MK_ASSERT(reserved_ == 0);
    }
    kfree(slots_);
}

// ---------------------------------------------------------------------------
// Slots and the free list (all under lock_)
// ---------------------------------------------------------------------------

void HandleTable::report_and_release(const ClosedHandle& closed) const {
    if (hook_ != nullptr) hook_(hook_context_, closed);
    closed.object->release();
    if (closed.tracker != nullptr) closed.tracker->release();
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

Result<HandleValue> HandleTable::insert(Ref<KObject> object, uint32_t rights, uint64_t badge) {
    MK_ASSERT(object);
    if ((rights & ~uint32_t{abi::kRightsAll}) != 0) return Error::InvalidArgument;
    LockGuard guard(lock_);
    if (cleared_) return Error::Destroyed;
    uint32_t index = pop_free_locked();
    if (index == 0) return Error::LimitReached;
    return store_locked(index, object.leak(), rights, badge, nullptr);
}

Result<HandleValue> HandleTable::insert(HandleEntry entry) {
    MK_ASSERT(entry.object);
    if ((entry.rights & ~uint32_t{abi::kRightsAll}) != 0) return Error::InvalidArgument;
    LockGuard guard(lock_);
    if (cleared_) return Error::Destroyed;
    uint32_t index = pop_free_locked();
    if (index == 0) return Error::LimitReached;
    return store_locked(index, entry.object.leak(), entry.rights, entry.badge,
                        entry.tracker.leak());
}

Result<HandleEntry> HandleTable::lookup(HandleValue handle, ObjectType expected,
                                        uint32_t required_rights) const {
    KObject* object;
    HandleEntry entry;
    Status st =
        lookup_into(handle, expected, required_rights, &object, &entry.rights, &entry.badge);
    if (st != Error::None) return st;
    entry.object = Ref<KObject>::adopt(object);
    return entry;
}

Status HandleTable::remove(HandleValue handle) {
    ClosedHandle closed{};
    {
        LockGuard guard(lock_);
        const Slot* s = find_locked(handle);
        if (s == nullptr) return Error::BadHandle;
        closed = vacate_locked(number_of(handle));
    }
    report_and_release(closed);
    return Error::None;
}

Result<HandleValue> HandleTable::mint(HandleValue source, uint32_t rights, uint64_t badge,
                                      TrackerFactory make_tracker) {
    if ((rights & ~uint32_t{abi::kRightsAll}) != 0) return Error::InvalidArgument;
    LockGuard guard(lock_);
    const Slot* s = find_locked(source);
    if (s == nullptr) return Error::BadHandle;
    if ((s->rights & abi::kRightDuplicate) == 0) return Error::NoRights;
    if ((s->rights & rights) != rights) return Error::NoRights;
    bool new_lineage = badge != 0 && s->badge == 0;
    if (badge == 0) {
        badge = s->badge;
    } else if (s->badge != 0 && badge != s->badge) {
        return Error::InvalidArgument;
    }
    // A badge names a sender: an endpoint handle that may receive carries
    // none (its tracker field holds the endpoint's ReceiveTracker instead).
    if (badge != 0 && (rights & abi::kRightReceive) != 0 &&
        s->object->type() == ObjectType::Endpoint)
        return Error::InvalidArgument;
    if (cleared_) return Error::Destroyed;
    if (free_ == 0) return Error::LimitReached;
    KObject* object = s->object;
    KObject* tracker = s->tracker;
    if (tracker != nullptr && tracker->type() == ObjectType::Receivers &&
        (rights & abi::kRightReceive) == 0) {
        // A copy that cannot receive keeps the receive side open no more.
        tracker = nullptr;
    }
    if (new_lineage && make_tracker != nullptr) {
        // The last step that can fail: a tracker is never dropped unused
        // (its release would announce a last handle that never was).
        Result<KObject*> made = make_tracker(object, badge);
        if (!made) return made.error();
        tracker = made.value();
    } else if (new_lineage) {
        tracker = nullptr;
    } else if (tracker != nullptr) {
        tracker->retain();
    }
    uint32_t index = pop_free_locked();
    object->retain();  // the source entry's reference keeps it alive meanwhile
    return store_locked(index, object, rights, badge, tracker);
}

Result<HandleEntry> HandleTable::take(HandleValue handle, uint32_t required_rights) {
    HandleEntry entry;
    {
        LockGuard guard(lock_);
        const Slot* s = find_locked(handle);
        if (s == nullptr) return Error::BadHandle;
        if ((s->rights & required_rights) != required_rights) return Error::NoRights;
        ClosedHandle moved = vacate_locked(number_of(handle));
        entry.object = Ref<KObject>::adopt(moved.object);
        entry.rights = moved.rights;
        entry.badge = moved.badge;
        entry.tracker = Ref<KObject>::adopt(moved.tracker);
    }
    return entry;
}

Status HandleTable::take_all(const TakeRequest* requests, uint32_t count, HandleEntry* out,
                             const KObject* not_receive_of) {
    if (count > kMaxTakeAll) return Error::InvalidArgument;
    LockGuard guard(lock_);
    // Check every request first: nothing changes unless all of them succeed.
    for (uint32_t i = 0; i < count; ++i) {
        MK_ASSERT(!out[i].object);
        const TakeRequest& r = requests[i];
        const Slot* s = find_locked(r.handle);
        if (s == nullptr) return Error::BadHandle;
        for (uint32_t j = 0; j < i; ++j) {
            if (requests[j].handle == r.handle && !requests[j].copy) return Error::BadHandle;
        }
        uint32_t required = r.required_rights | (r.copy ? uint32_t{abi::kRightDuplicate} : 0);
        if ((s->rights & required) != required) return Error::NoRights;
        if (not_receive_of != nullptr && s->object == not_receive_of &&
            (s->rights & abi::kRightReceive) != 0) {
            return Error::InvalidArgument;
        }
    }
    for (uint32_t i = 0; i < count; ++i) {
        const TakeRequest& r = requests[i];
        if (r.copy) {
            const Slot* s = find_locked(r.handle);
            out[i].object = Ref<KObject>::retain(s->object);
            out[i].rights = s->rights;
            out[i].badge = s->badge;
            out[i].tracker = Ref<KObject>::retain(s->tracker);
        } else {
            ClosedHandle moved = vacate_locked(number_of(r.handle));
            out[i].object = Ref<KObject>::adopt(moved.object);
            out[i].rights = moved.rights;
            out[i].badge = moved.badge;
            out[i].tracker = Ref<KObject>::adopt(moved.tracker);
        }
    }
    return Error::None;
}

Result<HandleTable::Reservation> HandleTable::reserve(uint32_t n) {
    Reservation reservation;
    {
        LockGuard guard(lock_);
        if (cleared_) return Error::Destroyed;
        if (n > free_) return Error::LimitReached;
        if (n == 0) return reservation;
        // The first n slots of the free list, still chained through `next`.
        uint32_t first = free_head_;
        uint32_t last = first;
        for (uint32_t i = 0;; ++i) {
            Slot& s = slot(last);
            MK_ASSERT(s.state == SlotState::Free);
            s.state = SlotState::Reserved;
            if (i + 1 == n) break;
            last = s.next();
        }
        free_head_ = slot(last).next();
        if (free_head_ == 0) free_tail_ = 0;
        slot(last).set_next(0);
        free_ -= n;
        reserved_ += n;
        reservation.table_ = this;
        reservation.first_ = uint16_t(first);
        reservation.count_ = uint16_t(n);
    }
    return reservation;
}

HandleValue HandleTable::fill_reserved(Reservation& reservation, HandleEntry& entry) {
    MK_ASSERT(reservation.count_ > 0 && entry.object);
    MK_ASSERT((entry.rights & ~uint32_t{abi::kRightsAll}) == 0);
    KObject* object = entry.object.leak();
    KObject* tracker = entry.tracker.leak();
    {
        LockGuard guard(lock_);
        uint32_t index = reservation.first_;
        Slot& s = slot(index);
        MK_ASSERT(s.state == SlotState::Reserved);
        reservation.first_ = s.next();
        --reservation.count_;
        --reserved_;
        if (!cleared_) return store_locked(index, object, entry.rights, entry.badge, tracker);
        // The process died meanwhile: the handle is closed as it arrives.
        push_free_locked(index);
    }
    report_and_release(ClosedHandle{object, entry.rights, entry.badge, tracker});
    return abi::kNoHandle;
}

void HandleTable::cancel_reserved(Reservation& reservation) {
    LockGuard guard(lock_);
    // No handle ever named these slots: their generations stay as they are.
    while (reservation.count_ > 0) {
        uint32_t index = reservation.first_;
        Slot& s = slot(index);
        MK_ASSERT(s.state == SlotState::Reserved);
        reservation.first_ = s.next();
        --reservation.count_;
        --reserved_;
        push_free_locked(index);
    }
}

uint32_t HandleTable::clear() {
    uint32_t closed_total = 0;
    uint32_t next_index = 1;
    for (;;) {
        ClosedHandle batch[kClearBatch];
        uint32_t n = 0;
        bool done;
        {
            LockGuard guard(lock_);
            cleared_ = true;
            // Bounded work per critical section: at most kClearBatch entries
            // closed, and the scan stops there, or once no slot is in use
            // (nothing can fill one after cleared_): a short-lived process
            // has a few handles in the first slots of a large table.
            for (; next_index <= capacity_ && n < kClearBatch && used_ != 0; ++next_index) {
                if (slot(next_index).state == SlotState::Used) {
                    batch[n++] = vacate_locked(next_index);
                }
            }
            done = next_index > capacity_ || used_ == 0;
        }
        for (uint32_t i = 0; i < n; ++i) report_and_release(batch[i]);
        closed_total += n;
        if (done) return closed_total;
    }
}

uint32_t HandleTable::count() const {
    LockGuard guard(lock_);
    return used_;
}

// ---------------------------------------------------------------------------
// Reservation
// ---------------------------------------------------------------------------

HandleTable::Reservation::Reservation(Reservation&& other) noexcept
    : table_(other.table_), first_(other.first_), count_(other.count_) {
    other.table_ = nullptr;
    other.first_ = 0;
    other.count_ = 0;
}

HandleTable::Reservation& HandleTable::Reservation::operator=(Reservation&& other) noexcept {
    if (this != &other) {
        cancel();
        table_ = other.table_;
        first_ = other.first_;
        count_ = other.count_;
        other.table_ = nullptr;
        other.first_ = 0;
        other.count_ = 0;
    }
    return *this;
}

HandleValue HandleTable::Reservation::fill(HandleEntry entry) {
    MK_ASSERT(table_ != nullptr);
    return table_->fill_reserved(*this, entry);
}

void HandleTable::Reservation::cancel() {
    if (table_ != nullptr && count_ > 0) table_->cancel_reserved(*this);
}

}  // namespace mk
