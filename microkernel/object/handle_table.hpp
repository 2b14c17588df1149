// HandleTable: the handles of one process, the only way its threads can
// name kernel objects (docs/handles.md).
//
// A handle value is (generation << 16) | index. The index picks a slot of a
// fixed array (O(1) lookup); the slot's generation, never 0, changes every
// time the slot is vacated, so a handle that was closed never names what the
// slot holds later (not before the slot has been reused 65,535 times).
// Generation 0 names no slot, so 0 is never a handle. Free slots sit on a FIFO free
// list (O(1) insert): a vacated slot is reused last, which stretches the
// time before its generation wraps as far as the table's size allows.
//
// Each entry owns one reference to its object, plus the rights (abi::Rights)
// and the badge the handle carries. A lookup returns a new reference taken
// under the table lock, so the operation it serves keeps the object alive
// even if another thread closes the handle meanwhile.
//
// The capacity is fixed when the table is created and the slots are
// allocated then: inserting never allocates, and a full table says
// LimitReached, which is the per-process handle bound.
//
// Locking: lock_ (LockLevel::HandleTable, the lowest level) guards every
// slot, the free list and the counters. It is taken before any endpoint,
// scheduler or heap lock and never while one is held; it is never held
// together with another table's lock (a transfer is reserve() on the
// receiver, take_all() on the sender, then fill(): three separate critical
// sections). No reference is dropped under it: a release may free an object,
// and freeing a process clears (and so locks) that process's table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mk/abi.hpp>

#include "error.hpp"
#include "kobject.hpp"
#include "spinlock.hpp"

namespace mk {

using abi::HandleValue;

// Handles one process may hold at once (a table of this capacity takes
// 32 KiB of kernel heap).
constexpr uint32_t kProcessHandleLimit = 1024;

// What a handle gives its holder: a reference to the object, the rights and
// the badge. Returned by lookup() (a new reference) and take() (the table's
// own reference), and inserted by Reservation::fill().
struct HandleEntry {
    Ref<KObject> object;
    uint32_t rights = 0;  // abi::Rights bits
    uint64_t badge = 0;   // 0: unbadged
    // Shared by every handle descended from one badged mint (copies,
    // moves, handles in flight in messages): its last reference going is
    // "the last handle with this badge is gone" (BadgeTracker). Null for
    // unbadged handles and for what lookup() returns.
    Ref<KObject> tracker;
};

// An entry that left its table for good (closed, or released with the
// table), as the table's closed hook sees it. `object` is alive during the
// call: the table drops its reference only afterwards.
struct ClosedHandle {
    KObject* object;
    uint32_t rights;
    uint64_t badge;
    KObject* tracker = nullptr;  // released after `object`
};

// Makes the tracker of a new badge lineage: mint() calls it when a badge
// is set on an unbadged handle. A null result means "not tracked" (objects
// that have no use for it); an error fails the mint.
using TrackerFactory = Result<KObject*> (*)(KObject* object, uint64_t badge);

// Told of every ClosedHandle, outside the table lock (so it may take the
// locks above it, e.g. an endpoint's, to count the handles left with this
// badge and post a "last handle" notice). Not called for entries moved out
// by take()/take_all(): the handle lives on in another table.
using HandleClosedHook = void (*)(void* context, const ClosedHandle& closed);

class HandleTable {
  public:
    static constexpr uint32_t kIndexBits = 16;  // a handle value: (generation << 16) | index
    static constexpr uint32_t kIndexMask = (1u << kIndexBits) - 1;
    // The index is 16 bits; slot numbers (index + 1) fit Slot::next.
    static constexpr uint32_t kMaxCapacity = 0xFFFF;
    // The most handles one take_all() moves: a message's, or the start
    // handles of a spawned process, whichever is more.
    static constexpr uint32_t kMaxTakeAll =
        abi::kMaxStartHandles > abi::kMaxHandles ? abi::kMaxStartHandles : abi::kMaxHandles;

    // One handle to move or copy out of a table (take_all()).
    struct TakeRequest {
        HandleValue handle = abi::kNoHandle;
        uint32_t required_rights = 0;
        // Leave the handle in place and take a new reference to its object;
        // needs kRightDuplicate on the handle besides required_rights.
        bool copy = false;
    };

    // Free slots set aside by reserve(): each fill() then succeeds. Unfilled
    // slots go back to the table when the reservation is cancelled or
    // destroyed. The table must outlive it.
    class Reservation {
      public:
        Reservation() = default;
        Reservation(Reservation&& other) noexcept;
        Reservation& operator=(Reservation&& other) noexcept;
        Reservation(const Reservation&) = delete;
        Reservation& operator=(const Reservation&) = delete;
        ~Reservation() { cancel(); }

        // Slots reserved and not yet filled.
        uint32_t remaining() const { return count_; }

        // Stores `entry` (its object non-null, its rights within
        // kRightsAll) in the next reserved slot and returns its handle;
        // cannot fail. If the table was cleared since reserve() (its process
        // died), the entry goes through the closed hook and is released, and
        // the result is kNoHandle. Needs remaining() > 0.
        HandleValue fill(HandleEntry entry);

        // Returns the unfilled slots to the table.
        void cancel();

      private:
        friend class HandleTable;
        HandleTable* table_ = nullptr;
        uint16_t first_ = 0;  // index of the first unfilled slot; the rest chain through Slot::next
        uint16_t count_ = 0;
    };

    // A table of `capacity` handles (1..kMaxCapacity), all its memory
    // allocated now. `hook` (may be null) is told of closed entries.
    // Errors: InvalidArgument (capacity), OutOfMemory.
    [[nodiscard]] static Result<HandleTable*> create(uint32_t capacity = kProcessHandleLimit,
                                                     HandleClosedHook hook = nullptr,
                                                     void* hook_context = nullptr);
    // clear()s the table and frees it. No reservation may be outstanding.
    static void destroy(HandleTable* table);

    HandleTable(const HandleTable&) = delete;
    HandleTable& operator=(const HandleTable&) = delete;

    // A new handle to `object` (the entry takes over the Ref's reference;
    // pass Ref::retain(p) to keep your own). On failure the Ref is dropped.
    // Errors: InvalidArgument (rights outside kRightsAll), LimitReached
    // (full), Destroyed (cleared).
    [[nodiscard]] Result<HandleValue> insert(Ref<KObject> object, uint32_t rights,
                                             uint64_t badge = 0);
    // The same for an entry that travelled (its tracker comes along).
    [[nodiscard]] Result<HandleValue> insert(HandleEntry entry);

    // The entry `handle` names, with a new reference to its object, if it is
    // of type `expected` and has every right in `required_rights`.
    // Errors: BadHandle (0, out of range, closed, stale, wrong type),
    // NoRights.
    [[nodiscard]] Result<HandleEntry> lookup(HandleValue handle, ObjectType expected,
                                             uint32_t required_rights) const;
    // lookup() into the caller's variables (the object with a new
    // reference, its rights and badge), with no entry to build and take
    // apart: inline, as every syscall that names a handle starts with it.
    // `interrupts_off`: the caller runs with interrupts off, and they stay
    // off (Call and ReplyRecv: handle_syscall()).
    [[nodiscard, gnu::always_inline]] Status lookup_into(HandleValue handle, ObjectType expected,
                                                         uint32_t required_rights, KObject** object,
                                                         uint32_t* rights, uint64_t* badge,
                                                         bool interrupts_off = false) const {
        bool irq_was_enabled = interrupts_off ? false : Cpu::save_and_disable_interrupts();
        lock_.lock_interrupts_off();
        Status st = Error::None;
        const Slot* s = find_locked(handle);
        if (s == nullptr || s->object->type() != expected) {
            st = Error::BadHandle;
        } else if ((s->rights & required_rights) != required_rights) {
            st = Error::NoRights;
        } else {
            s->object->retain();  // under the lock: the slot's reference keeps it alive here
            *object = s->object;
            *rights = s->rights;
            *badge = s->badge;
        }
        lock_.unlock(irq_was_enabled);
        return st;
    }

    // Closes `handle`: the closed hook is told, then the reference dropped.
    // Errors: BadHandle (also for a second close of the same handle).
    [[nodiscard]] Status remove(HandleValue handle);

    // A new handle to the same object with `rights` (a subset of the
    // source's) and a badge: 0 keeps the source's badge; another value may
    // be set only on an unbadged source, or must equal the source's.
    // Errors: InvalidArgument (rights outside kRightsAll, badge rule),
    // BadHandle, NoRights (no kRightDuplicate on the source, or rights it
    // lacks), LimitReached, Destroyed.
    [[nodiscard]] Result<HandleValue> mint(HandleValue source, uint32_t rights, uint64_t badge,
                                           TrackerFactory make_tracker = nullptr);

    // Moves the entry out of the table (the handle is closed, the closed
    // hook not told: the caller now owns the reference, e.g. to put it in
    // another process's table). Errors: BadHandle, NoRights.
    [[nodiscard]] Result<HandleEntry> take(HandleValue handle, uint32_t required_rights);

    // take() or copy (TakeRequest::copy) each of `count` handles, in order,
    // all or nothing: every request is checked before anything changes. A
    // handle moved by an earlier request is gone for the later ones
    // (BadHandle). `out` receives the entries; its slots must be empty.
    // A handle with kRightReceive on `not_receive_of` (the endpoint a
    // message goes onto, or null) is refused: queued there, it would hold
    // that endpoint's receive side open itself.
    // Errors: InvalidArgument (count > kMaxTakeAll, `not_receive_of`),
    // BadHandle, NoRights.
    [[nodiscard]] Status take_all(const TakeRequest* requests, uint32_t count, HandleEntry* out,
                                  const KObject* not_receive_of = nullptr);

    // Sets `n` free slots aside for Reservation::fill(), so a message that
    // carries handles can be refused before anything changed. Reserved
    // slots count against the capacity. Errors: LimitReached, Destroyed.
    [[nodiscard]] Result<Reservation> reserve(uint32_t n);

    // Closes every handle (process death): each entry goes through the
    // closed hook and its reference is dropped, in batches, never under the
    // lock. The table stays closed: insert(), mint() and reserve() fail
    // with Destroyed afterwards. Returns how many entries it closed.
    uint32_t clear();

    // Handles in the table now (reserved slots not counted).
    uint32_t count() const;
    uint32_t capacity() const { return capacity_; }

  private:
    friend class FastPath;  // syscall/fastpath.cpp looks a handle up inline

    enum class SlotState : uint8_t { Free, Reserved, Used };

    // 32 bytes.
    struct Slot {
        KObject* object;  // Used: the entry's object, one reference; else null
        uint64_t badge;   // Used: the entry's badge; else 0
        // The generation (never 0) in the upper half: of the handle naming
        // the slot now (Used) or of its next one. The lower half: Used, the
        // slot's index, so that `key` is the handle itself and a lookup
        // compares it whole (the syscall fast path's assembly compares it
        // with all 64 bits of a register); Free, the next free slot;
        // Reserved, the next in its reservation (slot numbers; 0: none).
        uint32_t key;
        uint8_t rights;  // Used: the entry's rights; else 0
        SlotState state;
        // Used: the object's type, beside the rights and state (one compare
        // checks all three in the syscall fast path's assembly); else 0.
        ObjectType type;
        uint8_t spare = 0;
        KObject* tracker;  // Used: the entry's tracker, one reference, or null

        uint16_t generation() const { return uint16_t(key >> kIndexBits); }
        uint16_t next() const { return uint16_t(key); }
        void set_next(uint32_t number) { key = (key & ~kIndexMask) | number; }
    };
    static_assert(abi::kRightsAll <= 0xFF, "Slot::rights holds every right");

    // Entries closed under the lock and reported after it, at most this
    // many per critical section of clear().
    static constexpr uint32_t kClearBatch = 16;

    HandleTable(Slot* slots, uint32_t capacity, HandleClosedHook hook, void* hook_context);
    ~HandleTable();

    // Inside the table a slot goes by its number, 1..capacity (0: none, in
    // the free list and reservations); a handle's index is that number less
    // one, so a lookup indexes the array as it is.
    Slot& slot(uint32_t number) const { return slots_[number - 1]; }
    static uint32_t number_of(uint64_t handle) { return (uint32_t(handle) & kIndexMask) + 1; }
    // The slot a live handle names, or null. Inline: the syscall fast path
    // looks its handle up with it too, straight from a 64-bit register: a
    // value with any bit set above the generation matches no slot.
    Slot* find_locked(uint64_t handle) const {
        uint32_t index = uint32_t(handle) & kIndexMask;
        if (index >= capacity_) return nullptr;
        Slot& s = slots_[index];
        // A stale handle has an older generation (and generation 0 matches
        // no slot); a free or reserved slot's key may equal a guess, but its
        // state is not Used.
        if (s.key != handle || s.state != SlotState::Used) return nullptr;
        return &s;
    }
    // Fills a slot taken off the free list (or a reservation) and returns
    // its handle. Inline, as pop_free_locked(): the fast path's ReplySave
    // stores a handle.
    HandleValue store_locked(uint32_t index, KObject* object, uint32_t rights, uint64_t badge,
                             KObject* tracker) {
        MK_ASSERT(lock_.is_locked());
        MK_ASSERT(object != nullptr && (rights & ~uint32_t{abi::kRightsAll}) == 0);
        Slot& s = slot(index);
        s.object = object;
        s.tracker = tracker;
        s.badge = badge;
        s.rights = uint8_t(rights);
        s.state = SlotState::Used;
        s.type = object->type();
        s.key = (uint32_t{s.generation()} << kIndexBits) | (index - 1);  // the handle
        ++used_;
        return s.key;
    }
    static constexpr uint16_t next_generation(uint16_t g) {
        return g == 0xFFFF ? uint16_t{1} : uint16_t(g + 1);
    }
    // Empties a Used slot (a new generation for its next handle) and frees
    // it. Inline: the syscall fast path closes a saved reply's handle.
    ClosedHandle vacate_locked(uint32_t index) {
        MK_ASSERT(lock_.is_locked());
        Slot& s = slot(index);
        MK_ASSERT(s.state == SlotState::Used);
        ClosedHandle closed{s.object, s.rights, s.badge, s.tracker};
        s.object = nullptr;
        s.tracker = nullptr;
        s.badge = 0;
        s.rights = 0;
        s.type = ObjectType{};
        s.key = uint32_t{next_generation(s.generation())} << kIndexBits;  // no next yet
        --used_;
        push_free_locked(index);
        return closed;
    }
    void push_free_locked(uint32_t index) {
        MK_ASSERT(lock_.is_locked());
        Slot& s = slot(index);
        s.state = SlotState::Free;
        s.set_next(0);
        if (free_tail_ != 0) {
            slot(free_tail_).set_next(index);
        } else {
            free_head_ = uint16_t(index);
        }
        free_tail_ = uint16_t(index);
        ++free_;
    }
    // The first free slot's index, taken off the free list, or 0 if none.
    uint32_t pop_free_locked() {
        MK_ASSERT(lock_.is_locked());
        uint32_t index = free_head_;
        if (index == 0) return 0;
        Slot& s = slot(index);
        MK_ASSERT(s.state == SlotState::Free);
        free_head_ = s.next();
        if (free_head_ == 0) free_tail_ = 0;
        s.set_next(0);
        --free_;
        return index;
    }
    HandleValue fill_reserved(Reservation& reservation, HandleEntry& entry);
    void cancel_reserved(Reservation& reservation);
    // Tells the hook, then drops the reference. Without the lock.
    void report_and_release(const ClosedHandle& closed) const;

    mutable SpinLock lock_{LockLevel::HandleTable};
    Slot* const slots_;  // capacity_ slots; handle index i names slots_[i]
    const uint32_t capacity_;
    const HandleClosedHook hook_;
    void* const hook_context_;
    uint32_t used_ = 0;       // guarded by lock_
    uint32_t reserved_ = 0;   // guarded by lock_: slots held by reservations
    uint32_t free_ = 0;       // guarded by lock_: slots on the free list
    uint16_t free_head_ = 0;  // guarded by lock_: the next slot to hand out
    uint16_t free_tail_ = 0;  // guarded by lock_: the last vacated slot
    bool cleared_ = false;    // guarded by lock_: clear() ran; nothing new goes in
};

}  // namespace mk
