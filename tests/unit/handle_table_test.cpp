// HandleTable: handle values, rights, badges, generations, references,
// reservations and transfer, on the host with the lock-order checks on (a
// PerCpu is installed, so every SpinLock records and checks its level).
//
// Every object a test puts in a table is a TestObject that the test keeps one
// reference to (its anchor) for the object's whole life: "the object would
// be freed now" is refs() == 1, so these tests hold whether kobject_free() is
// the host stand-in or the kernel's. A double release drives a count to 0
// and ends the run in kobject_free().
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "cpu.hpp"
#include "fake_heap.hpp"
#include "object/handle_table.hpp"
#include "percpu.hpp"
#include "seed.hpp"

namespace mk {

// Readable failures: EXPECT_EQ(status, Error::BadHandle) prints names.
[[maybe_unused]] static void PrintTo(Error e, std::ostream* os) {
    *os << error_name(e);
}

namespace {

using abi::kNoHandle;
using abi::kRightDuplicate;
using abi::kRightGrant;
using abi::kRightManage;
using abi::kRightReceive;
using abi::kRightsAll;
using abi::kRightSend;

class TestObject : public KObject {
  public:
    explicit TestObject(ObjectType type = ObjectType::Endpoint) : KObject(type) {}
    ~TestObject() { EXPECT_EQ(refs(), 1u) << "a handle or a lookup outlived the object"; }
    TestObject(const TestObject&) = delete;
    TestObject& operator=(const TestObject&) = delete;

    // A new reference, e.g. to insert().
    Ref<KObject> ref() { return Ref<KObject>::retain(this); }
    // References besides the test's anchor: 0 means "would be freed now".
    uint32_t extra_refs() const { return refs() - 1; }
};

// Records what the closed hook is told, and checks how it is called.
struct ClosedLog {
    std::vector<ClosedHandle> closed;

    static void hook(void* context, const ClosedHandle& c) {
        // Never under the table lock (or any other): interrupts are on and
        // no lock is recorded on this CPU.
        EXPECT_TRUE(Cpu::interrupts_enabled());
        EXPECT_EQ(this_cpu().held_locks.count(), 0u);
        // The table's reference is not dropped yet: anchor + at least it.
        EXPECT_GE(c.object->refs(), 2u);
        static_cast<ClosedLog*>(context)->closed.push_back(c);
    }
};

struct TableDeleter {
    void operator()(HandleTable* t) const { HandleTable::destroy(t); }
};
using TablePtr = std::unique_ptr<HandleTable, TableDeleter>;

uint32_t index_of(HandleValue h) {
    return h & 0xFFFF;
}
uint32_t generation_of(HandleValue h) {
    return h >> 16;
}

class HandleTableTest : public ::testing::Test {
  protected:
    void SetUp() override {
        FakeCpu::reset();
        cpu_ = std::make_unique<PerCpu>();
        Cpu::set_this_cpu(cpu_.get());
    }
    void TearDown() override {
        fake_kalloc_fail_after(SIZE_MAX);
        EXPECT_EQ(cpu_->held_locks.count(), 0u);
        EXPECT_TRUE(Cpu::interrupts_enabled());
        Cpu::set_this_cpu(nullptr);
    }

    TablePtr make(uint32_t capacity, ClosedLog* log = nullptr) {
        Result<HandleTable*> r =
            HandleTable::create(capacity, log != nullptr ? &ClosedLog::hook : nullptr, log);
        EXPECT_TRUE(r.ok()) << error_name(r.error());
        return TablePtr(r.value());
    }

    static HandleValue insert(HandleTable& t, TestObject& o, uint32_t rights, uint64_t badge = 0) {
        Result<HandleValue> r = t.insert(o.ref(), rights, badge);
        EXPECT_TRUE(r.ok()) << error_name(r.error());
        return r.value_or(kNoHandle);
    }

    std::unique_ptr<PerCpu> cpu_;
};

// ---------------------------------------------------------------------------
// Basics
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, InsertLookupCloseRoundTrip) {
    TestObject ep;
    TablePtr t = make(kProcessHandleLimit);
    EXPECT_EQ(t->capacity(), kProcessHandleLimit);
    EXPECT_EQ(t->count(), 0u);

    HandleValue h = insert(*t, ep, kRightSend | kRightReceive, 42);
    EXPECT_NE(h, kNoHandle);
    EXPECT_NE(generation_of(h), 0u);
    EXPECT_LT(index_of(h), kProcessHandleLimit);
    EXPECT_EQ(t->count(), 1u);
    EXPECT_EQ(ep.extra_refs(), 1u);  // the table's

    {
        Result<HandleEntry> r = t->lookup(h, ObjectType::Endpoint, kRightSend);
        ASSERT_TRUE(r.ok()) << error_name(r.error());
        HandleEntry e = std::move(r).value();
        EXPECT_EQ(e.object.get(), &ep);
        EXPECT_EQ(e.rights, uint32_t{kRightSend | kRightReceive});
        EXPECT_EQ(e.badge, 42u);
        EXPECT_EQ(ep.extra_refs(), 2u);  // the table's and the lookup's
    }
    EXPECT_EQ(ep.extra_refs(), 1u);

    EXPECT_EQ(t->remove(h), Error::None);
    EXPECT_EQ(t->count(), 0u);
    EXPECT_EQ(ep.extra_refs(), 0u);
    EXPECT_EQ(t->lookup(h, ObjectType::Endpoint, 0).error(), Error::BadHandle);
}

TEST_F(HandleTableTest, DistinctHandlesForLiveEntries) {
    TestObject a, b;
    TablePtr t = make(8);
    std::set<HandleValue> seen;
    for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(seen.insert(insert(*t, a, kRightSend)).second);
        EXPECT_TRUE(seen.insert(insert(*t, b, kRightSend)).second);
    }
    EXPECT_EQ(t->count(), 8u);
    EXPECT_EQ(a.extra_refs(), 4u);
    EXPECT_EQ(b.extra_refs(), 4u);
    for (HandleValue h : seen) {
        Result<HandleEntry> r = t->lookup(h, ObjectType::Endpoint, 0);
        ASSERT_TRUE(r.ok());
    }
}

TEST_F(HandleTableTest, LookupChecksTypeAndRights) {
    TestObject ep(ObjectType::Endpoint);
    TestObject thread(ObjectType::Thread);
    TablePtr t = make(16);
    HandleValue he = insert(*t, ep, kRightSend);
    HandleValue ht = insert(*t, thread, kRightManage);

    EXPECT_TRUE(t->lookup(he, ObjectType::Endpoint, kRightSend).ok());
    EXPECT_TRUE(t->lookup(he, ObjectType::Endpoint, 0).ok());
    EXPECT_EQ(t->lookup(he, ObjectType::Endpoint, kRightReceive).error(), Error::NoRights);
    EXPECT_EQ(t->lookup(he, ObjectType::Endpoint, kRightSend | kRightReceive).error(),
              Error::NoRights);
    // The wrong type is a bad handle, whatever the rights.
    EXPECT_EQ(t->lookup(he, ObjectType::Thread, kRightSend).error(), Error::BadHandle);
    EXPECT_EQ(t->lookup(he, ObjectType::Thread, kRightManage).error(), Error::BadHandle);
    EXPECT_EQ(t->lookup(ht, ObjectType::Endpoint, kRightSend).error(), Error::BadHandle);
    EXPECT_TRUE(t->lookup(ht, ObjectType::Thread, kRightManage).ok());
    // Failed lookups took no reference.
    EXPECT_EQ(ep.extra_refs(), 1u);
    EXPECT_EQ(thread.extra_refs(), 1u);
}

TEST_F(HandleTableTest, HostileHandleValuesAreBadHandles) {
    TestObject ep;
    TablePtr t = make(4);
    HandleValue h = insert(*t, ep, kRightsAll);
    const HandleValue hostile[] = {
        0,
        0xFFFFFFFF,
        0x0001FFFF,            // generation 1, index past the capacity
        (h & 0xFFFF0000) | 5,  // index past the capacity
        (h & 0xFFFF0000) | 4,  // the first index past it (the last is 3)
        h & 0xFFFF,            // generation 0
        h + 0x10000,           // the next generation of a live slot
        ((((h >> 16) + 0xFFFD) % 0xFFFF + 1) << 16) | (h & 0xFFFF),  // the previous one
    };
    for (HandleValue v : hostile) {
        SCOPED_TRACE(v);
        ASSERT_NE(v, h);
        EXPECT_EQ(t->lookup(v, ObjectType::Endpoint, 0).error(), Error::BadHandle);
        EXPECT_EQ(t->mint(v, 0, 0).error(), Error::BadHandle);
        EXPECT_EQ(t->take(v, 0).error(), Error::BadHandle);
        EXPECT_EQ(t->remove(v), Error::BadHandle);
    }
    EXPECT_EQ(t->count(), 1u);
    EXPECT_EQ(ep.extra_refs(), 1u);
    EXPECT_TRUE(t->lookup(h, ObjectType::Endpoint, kRightsAll).ok());
}

TEST_F(HandleTableTest, InsertRejectsUnknownRights) {
    TestObject ep;
    TablePtr t = make(4);
    EXPECT_EQ(t->insert(ep.ref(), kRightsAll + 1).error(), Error::InvalidArgument);
    EXPECT_EQ(t->insert(ep.ref(), 0x80000000u).error(), Error::InvalidArgument);
    EXPECT_EQ(t->count(), 0u);
    EXPECT_EQ(ep.extra_refs(), 0u);  // the refused Ref was dropped
}

TEST_F(HandleTableTest, DoubleCloseIsBadHandle) {
    TestObject ep;
    TablePtr t = make(4);
    HandleValue h = insert(*t, ep, kRightSend);
    HandleValue keep = insert(*t, ep, kRightSend);
    EXPECT_EQ(t->remove(h), Error::None);
    EXPECT_EQ(t->remove(h), Error::BadHandle);
    EXPECT_EQ(t->remove(h), Error::BadHandle);
    // Released once: only the other handle's reference is left.
    EXPECT_EQ(ep.extra_refs(), 1u);
    EXPECT_EQ(t->count(), 1u);
    EXPECT_TRUE(t->lookup(keep, ObjectType::Endpoint, kRightSend).ok());
}

// ---------------------------------------------------------------------------
// Generations
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, StaleHandleNeverNamesTheNewObject) {
    TestObject old_object, new_object;
    TablePtr t = make(1);  // one slot: the new handle must reuse it
    HandleValue stale = insert(*t, old_object, kRightsAll);
    ASSERT_EQ(t->remove(stale), Error::None);
    HandleValue fresh = insert(*t, new_object, kRightsAll, 9);
    EXPECT_EQ(index_of(fresh), index_of(stale));
    EXPECT_NE(fresh, stale);

    EXPECT_EQ(t->lookup(stale, ObjectType::Endpoint, 0).error(), Error::BadHandle);
    EXPECT_EQ(t->mint(stale, kRightSend, 0).error(), Error::BadHandle);
    EXPECT_EQ(t->take(stale, 0).error(), Error::BadHandle);
    EXPECT_EQ(t->remove(stale), Error::BadHandle);
    // The new entry was not touched by any of that.
    Result<HandleEntry> r = t->lookup(fresh, ObjectType::Endpoint, kRightsAll);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().object.get(), &new_object);
    EXPECT_EQ(r.value().badge, 9u);
    EXPECT_EQ(new_object.extra_refs(), 2u);  // the table's and r's
    EXPECT_EQ(old_object.extra_refs(), 0u);
}

TEST_F(HandleTableTest, VacatedSlotIsReusedLast) {
    TestObject ep;
    TablePtr t = make(4);
    HandleValue h[4];
    for (HandleValue& v : h) v = insert(*t, ep, kRightSend);
    ASSERT_EQ(t->remove(h[1]), Error::None);
    ASSERT_EQ(t->remove(h[3]), Error::None);
    ASSERT_EQ(t->remove(h[0]), Error::None);
    // FIFO: slots come back in the order they were vacated.
    EXPECT_EQ(index_of(insert(*t, ep, kRightSend)), index_of(h[1]));
    EXPECT_EQ(index_of(insert(*t, ep, kRightSend)), index_of(h[3]));
    EXPECT_EQ(index_of(insert(*t, ep, kRightSend)), index_of(h[0]));
}

TEST_F(HandleTableTest, GenerationWrapSkipsZeroAndNeverRepeatsWithinAPeriod) {
    TestObject ep;
    TablePtr t = make(1);
    constexpr uint32_t kPeriod = 0xFFFF;  // generations 1..0xFFFF
    std::vector<HandleValue> issued;
    issued.reserve(2 * kPeriod + 2);
    for (uint32_t i = 0; i < 2 * kPeriod + 2; ++i) {
        Result<HandleValue> r = t->insert(ep.ref(), kRightSend);
        ASSERT_TRUE(r.ok());
        HandleValue h = r.value();
        ASSERT_NE(h, kNoHandle);
        ASSERT_NE(generation_of(h), 0u) << "at reuse " << i;
        issued.push_back(h);
        ASSERT_EQ(t->remove(h), Error::None);
    }
    // Within one period every value is new ...
    std::set<HandleValue> first(issued.begin(), issued.begin() + kPeriod);
    EXPECT_EQ(first.size(), kPeriod);
    // ... and the first repeat comes exactly one period later.
    for (uint32_t i = kPeriod; i < issued.size(); ++i) {
        ASSERT_EQ(issued[i], issued[i - kPeriod]) << "at reuse " << i;
    }
    // The wrap went from 0xFFFF to 1.
    auto last = std::find_if(issued.begin(), issued.end(),
                             [](HandleValue h) { return generation_of(h) == 0xFFFF; });
    ASSERT_NE(last, issued.end());
    ASSERT_NE(last + 1, issued.end());
    EXPECT_EQ(generation_of(*(last + 1)), 1u);
    EXPECT_EQ(ep.extra_refs(), 0u);
}

// ---------------------------------------------------------------------------
// The bound
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, FullTableSaysLimitReachedAndRecoversAfterClose) {
    TestObject ep;
    TablePtr t = make(3);
    HandleValue h[3];
    for (HandleValue& v : h) v = insert(*t, ep, kRightsAll);
    EXPECT_EQ(t->count(), 3u);
    EXPECT_EQ(t->insert(ep.ref(), kRightSend).error(), Error::LimitReached);
    EXPECT_EQ(t->mint(h[0], kRightSend, 0).error(), Error::LimitReached);
    EXPECT_EQ(t->reserve(1).error(), Error::LimitReached);
    EXPECT_EQ(t->count(), 3u);
    EXPECT_EQ(ep.extra_refs(), 3u);  // the refused insert dropped its Ref

    ASSERT_EQ(t->remove(h[1]), Error::None);
    HandleValue again = insert(*t, ep, kRightSend);
    EXPECT_NE(again, kNoHandle);
    EXPECT_NE(again, h[1]);
    EXPECT_EQ(t->count(), 3u);
    EXPECT_EQ(t->insert(ep.ref(), kRightSend).error(), Error::LimitReached);
}

TEST_F(HandleTableTest, CreateChecksCapacityAndMemory) {
    EXPECT_EQ(HandleTable::create(0).error(), Error::InvalidArgument);
    EXPECT_EQ(HandleTable::create(HandleTable::kMaxCapacity + 1).error(), Error::InvalidArgument);
    fake_kalloc_fail_after(0);
    EXPECT_EQ(HandleTable::create(16).error(), Error::OutOfMemory);
    fake_kalloc_fail_after(1);  // the table, not its slots (and no leak: ASan checks)
    EXPECT_EQ(HandleTable::create(16).error(), Error::OutOfMemory);
    fake_kalloc_fail_after(SIZE_MAX);

    // The largest table: every index below 0xFFFF is usable.
    TestObject ep;
    TablePtr t = make(HandleTable::kMaxCapacity);
    ASSERT_TRUE(t);
    std::set<uint32_t> indices;
    for (uint32_t i = 0; i < HandleTable::kMaxCapacity; ++i) {
        indices.insert(index_of(insert(*t, ep, kRightSend)));
    }
    EXPECT_EQ(indices.size(), HandleTable::kMaxCapacity);
    EXPECT_EQ(*indices.begin(), 0u);
    EXPECT_EQ(*indices.rbegin(), 0xFFFEu);
    EXPECT_EQ(t->insert(ep.ref(), kRightSend).error(), Error::LimitReached);
}

// ---------------------------------------------------------------------------
// Minting
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, MintWithFewerRights) {
    TestObject ep;
    TablePtr t = make(8);
    HandleValue src = insert(*t, ep, kRightSend | kRightReceive | kRightDuplicate);
    Result<HandleValue> r = t->mint(src, kRightSend, 0);
    ASSERT_TRUE(r.ok()) << error_name(r.error());
    HandleValue copy = r.value();
    EXPECT_NE(copy, src);
    EXPECT_EQ(t->count(), 2u);
    EXPECT_EQ(ep.extra_refs(), 2u);  // the copy has its own reference

    Result<HandleEntry> e = t->lookup(copy, ObjectType::Endpoint, kRightSend);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e.value().object.get(), &ep);
    EXPECT_EQ(e.value().rights, uint32_t{kRightSend});
    EXPECT_EQ(t->lookup(copy, ObjectType::Endpoint, kRightReceive).error(), Error::NoRights);
    // The copy cannot be copied again: it has no Duplicate.
    EXPECT_EQ(t->mint(copy, kRightSend, 0).error(), Error::NoRights);

    // The copy outlives its source.
    ASSERT_EQ(t->remove(src), Error::None);
    EXPECT_TRUE(t->lookup(copy, ObjectType::Endpoint, kRightSend).ok());
    EXPECT_EQ(ep.extra_refs(), 2u);  // the copy's and e's
}

TEST_F(HandleTableTest, MintRefusesMoreRights) {
    TestObject ep;
    TablePtr t = make(8);
    HandleValue src = insert(*t, ep, kRightSend | kRightDuplicate);
    EXPECT_EQ(t->mint(src, kRightSend | kRightReceive, 0).error(), Error::NoRights);
    EXPECT_EQ(t->mint(src, kRightGrant, 0).error(), Error::NoRights);
    // Bits that are no right at all are malformed.
    EXPECT_EQ(t->mint(src, kRightSend | 0x100, 0).error(), Error::InvalidArgument);
    EXPECT_EQ(t->mint(src, 0xFFFFFFFF, 0).error(), Error::InvalidArgument);
    // Same rights is allowed (a dup).
    EXPECT_TRUE(t->mint(src, kRightSend | kRightDuplicate, 0).ok());
    EXPECT_EQ(t->count(), 2u);
    EXPECT_EQ(ep.extra_refs(), 2u);
}

TEST_F(HandleTableTest, MintNeedsDuplicate) {
    TestObject ep;
    TablePtr t = make(8);
    HandleValue src = insert(*t, ep, kRightsAll & ~uint32_t{kRightDuplicate});
    EXPECT_EQ(t->mint(src, kRightSend, 0).error(), Error::NoRights);
    EXPECT_EQ(t->mint(src, 0, 0).error(), Error::NoRights);
    EXPECT_EQ(t->count(), 1u);
    EXPECT_EQ(ep.extra_refs(), 1u);
}

TEST_F(HandleTableTest, MintBadgeRules) {
    TestObject ep;
    TablePtr t = make(16);
    HandleValue unbadged = insert(*t, ep, kRightSend | kRightDuplicate);

    // An unbadged source may be given any badge; 0 keeps it unbadged.
    Result<HandleValue> b7 = t->mint(unbadged, kRightSend | kRightDuplicate, 7);
    ASSERT_TRUE(b7.ok());
    EXPECT_EQ(t->lookup(b7.value(), ObjectType::Endpoint, 0).value().badge, 7u);
    Result<HandleValue> plain = t->mint(unbadged, kRightSend, 0);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(t->lookup(plain.value(), ObjectType::Endpoint, 0).value().badge, 0u);

    // A badged source keeps its badge: 0 or the same value, nothing else.
    Result<HandleValue> keep = t->mint(b7.value(), kRightSend, 0);
    ASSERT_TRUE(keep.ok());
    EXPECT_EQ(t->lookup(keep.value(), ObjectType::Endpoint, 0).value().badge, 7u);
    Result<HandleValue> same = t->mint(b7.value(), kRightSend, 7);
    ASSERT_TRUE(same.ok());
    EXPECT_EQ(t->lookup(same.value(), ObjectType::Endpoint, 0).value().badge, 7u);
    EXPECT_EQ(t->mint(b7.value(), kRightSend, 8).error(), Error::InvalidArgument);
    EXPECT_EQ(t->mint(b7.value(), kRightSend, ~uint64_t{0}).error(), Error::InvalidArgument);

    EXPECT_EQ(t->count(), 5u);
    EXPECT_EQ(ep.extra_refs(), 5u);
}

// ---------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, ObjectFreedWhenLastHandleAndLastLookupAreGone) {
    TestObject ep;
    TablePtr t = make(8);
    HandleValue h1 = insert(*t, ep, kRightSend | kRightDuplicate);
    HandleValue h2 = t->mint(h1, kRightSend, 0).value();
    EXPECT_EQ(ep.extra_refs(), 2u);

    Ref<KObject> in_flight = t->lookup(h2, ObjectType::Endpoint, kRightSend).value().object;
    EXPECT_EQ(ep.extra_refs(), 3u);

    ASSERT_EQ(t->remove(h1), Error::None);
    EXPECT_EQ(ep.extra_refs(), 2u);
    // The operation in flight keeps the object alive after its handle closed.
    ASSERT_EQ(t->remove(h2), Error::None);
    EXPECT_EQ(ep.extra_refs(), 1u);
    EXPECT_EQ(in_flight.get(), &ep);

    in_flight.reset();
    EXPECT_EQ(ep.extra_refs(), 0u);
}

TEST_F(HandleTableTest, CloseTellsTheHookWhileTheObjectIsAlive) {
    TestObject ep;
    ClosedLog log;
    TablePtr t = make(8, &log);
    HandleValue h = insert(*t, ep, kRightSend | kRightDuplicate, 5);
    HandleValue m = t->mint(h, kRightSend, 0).value();
    ASSERT_EQ(t->remove(h), Error::None);
    ASSERT_EQ(log.closed.size(), 1u);
    EXPECT_EQ(log.closed[0].object, &ep);
    EXPECT_EQ(log.closed[0].badge, 5u);
    EXPECT_EQ(log.closed[0].rights, uint32_t{kRightSend | kRightDuplicate});
    EXPECT_EQ(ep.extra_refs(), 1u);

    // A failed close tells nobody.
    EXPECT_EQ(t->remove(h), Error::BadHandle);
    EXPECT_EQ(log.closed.size(), 1u);

    // A take moves the handle; it is not closed.
    Result<HandleEntry> moved = t->take(m, 0);
    ASSERT_TRUE(moved.ok());
    EXPECT_EQ(log.closed.size(), 1u);
}

// ---------------------------------------------------------------------------
// Moving handles out: take, take_all
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, TakeMovesTheEntryOut) {
    TestObject ep;
    TablePtr t = make(8);
    HandleValue h = insert(*t, ep, kRightSend | kRightGrant, 3);

    EXPECT_EQ(t->take(h, kRightReceive).error(), Error::NoRights);
    EXPECT_EQ(t->count(), 1u);  // a refused take changes nothing

    Result<HandleEntry> r = t->take(h, kRightSend);
    ASSERT_TRUE(r.ok());
    HandleEntry e = std::move(r).value();
    EXPECT_EQ(e.object.get(), &ep);
    EXPECT_EQ(e.rights, uint32_t{kRightSend | kRightGrant});
    EXPECT_EQ(e.badge, 3u);
    EXPECT_EQ(t->count(), 0u);
    EXPECT_EQ(ep.extra_refs(), 1u);  // the table's reference, now e's
    EXPECT_EQ(t->lookup(h, ObjectType::Endpoint, 0).error(), Error::BadHandle);
    EXPECT_EQ(t->take(h, 0).error(), Error::BadHandle);
}

TEST_F(HandleTableTest, TakeAllIsAllOrNothing) {
    TestObject a, b;
    TablePtr t = make(8);
    HandleValue ha = insert(*t, a, kRightSend | kRightDuplicate, 1);
    HandleValue hb = insert(*t, b, kRightSend, 2);
    using Req = HandleTable::TakeRequest;

    auto unchanged = [&] {
        EXPECT_EQ(t->count(), 2u);
        EXPECT_EQ(a.extra_refs(), 1u);
        EXPECT_EQ(b.extra_refs(), 1u);
        EXPECT_TRUE(t->lookup(ha, ObjectType::Endpoint, 0).ok());
        EXPECT_TRUE(t->lookup(hb, ObjectType::Endpoint, 0).ok());
    };

    {
        // The last one is bad: the first two are not moved or copied.
        Req reqs[] = {{hb, 0, false}, {ha, 0, true}, {0xDEAD0001, 0, false}};
        HandleEntry out[3];
        EXPECT_EQ(t->take_all(reqs, 3, out), Error::BadHandle);
        for (const HandleEntry& e : out) EXPECT_FALSE(e.object);
        unchanged();
    }
    {
        // Moving the same handle twice: the second finds it gone.
        Req reqs[] = {{ha, 0, false}, {ha, 0, false}};
        HandleEntry out[2];
        EXPECT_EQ(t->take_all(reqs, 2, out), Error::BadHandle);
        unchanged();
    }
    {
        // Copying after moving: the same.
        Req reqs[] = {{ha, 0, false}, {ha, 0, true}};
        HandleEntry out[2];
        EXPECT_EQ(t->take_all(reqs, 2, out), Error::BadHandle);
        unchanged();
    }
    {
        // A copy needs Duplicate (hb has none); a move needs what it asks.
        Req copy_b[] = {{ha, 0, false}, {hb, 0, true}};
        Req move_b[] = {{ha, 0, true}, {hb, kRightGrant, false}};
        HandleEntry out[2];
        EXPECT_EQ(t->take_all(copy_b, 2, out), Error::NoRights);
        unchanged();
        EXPECT_EQ(t->take_all(move_b, 2, out), Error::NoRights);
        unchanged();
    }
    {
        Req reqs[HandleTable::kMaxTakeAll + 1] = {};
        HandleEntry out[HandleTable::kMaxTakeAll + 1];
        EXPECT_EQ(t->take_all(reqs, HandleTable::kMaxTakeAll + 1, out), Error::InvalidArgument);
        unchanged();
    }
    {
        // Onto `a` (a message queued on that endpoint), a handle that may
        // receive on `a` is refused; one to `b`, or one to `a` without the
        // right, is not the concern. (ha and hb carry no Receive: a third
        // handle to `a` with it.)
        HandleValue hr = insert(*t, a, kRightReceive | kRightDuplicate, 0);
        Req reqs[] = {{ha, 0, true}, {hr, 0, true}};
        HandleEntry out[2];
        EXPECT_EQ(t->take_all(reqs, 2, out, &a), Error::InvalidArgument);
        for (const HandleEntry& e : out) EXPECT_FALSE(e.object);
        Req fine[] = {{ha, 0, true}};
        ASSERT_EQ(t->take_all(fine, 1, out, &a), Error::None);
        out[0] = HandleEntry{};
        Req onto_b[] = {{hr, 0, true}};
        ASSERT_EQ(t->take_all(onto_b, 1, out, &b), Error::None);
        out[0] = HandleEntry{};
        EXPECT_EQ(t->remove(hr), Error::None);
        unchanged();
    }
    {
        // Copy then move of the same handle, and a move of another: done in order.
        Req reqs[] = {{ha, kRightSend, true}, {ha, 0, false}, {hb, kRightSend, false}};
        HandleEntry out[3];
        ASSERT_EQ(t->take_all(reqs, 3, out), Error::None);
        EXPECT_EQ(out[0].object.get(), &a);
        EXPECT_EQ(out[0].badge, 1u);
        EXPECT_EQ(out[1].object.get(), &a);
        EXPECT_EQ(out[1].rights, uint32_t{kRightSend | kRightDuplicate});
        EXPECT_EQ(out[2].object.get(), &b);
        EXPECT_EQ(out[2].badge, 2u);
        EXPECT_EQ(t->count(), 0u);
        EXPECT_EQ(a.extra_refs(), 2u);  // out[0] (new) and out[1] (the table's)
        EXPECT_EQ(b.extra_refs(), 1u);
    }
    EXPECT_EQ(a.extra_refs(), 0u);
    EXPECT_EQ(b.extra_refs(), 0u);
}

// ---------------------------------------------------------------------------
// Reservations and transfer
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, ReserveFillCancel) {
    TestObject ep;
    TablePtr t = make(4);
    Result<HandleTable::Reservation> r = t->reserve(3);
    ASSERT_TRUE(r.ok());
    HandleTable::Reservation res = std::move(r).value();
    EXPECT_EQ(res.remaining(), 3u);
    EXPECT_EQ(t->count(), 0u);  // reserved slots hold no handle ...
    HandleValue other = insert(*t, ep, kRightSend);
    // ... but count against the capacity.
    EXPECT_EQ(t->insert(ep.ref(), kRightSend).error(), Error::LimitReached);
    EXPECT_EQ(t->reserve(1).error(), Error::LimitReached);

    HandleValue filled = res.fill(HandleEntry{ep.ref(), kRightSend | kRightGrant, 11, {}});
    EXPECT_NE(filled, kNoHandle);
    EXPECT_NE(filled, other);
    EXPECT_EQ(res.remaining(), 2u);
    EXPECT_EQ(t->count(), 2u);
    Result<HandleEntry> e = t->lookup(filled, ObjectType::Endpoint, kRightGrant);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e.value().badge, 11u);

    res.cancel();
    EXPECT_EQ(res.remaining(), 0u);
    // The two unfilled slots are free again.
    insert(*t, ep, kRightSend);
    insert(*t, ep, kRightSend);
    EXPECT_EQ(t->insert(ep.ref(), kRightSend).error(), Error::LimitReached);
    EXPECT_EQ(t->count(), 4u);
}

TEST_F(HandleTableTest, ReservationGivesBackItsSlotsWhenDropped) {
    TestObject ep;
    TablePtr t = make(2);
    {
        HandleTable::Reservation res = t->reserve(2).value();
        EXPECT_EQ(t->reserve(1).error(), Error::LimitReached);
        HandleTable::Reservation moved = std::move(res);
        EXPECT_EQ(res.remaining(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
        EXPECT_EQ(moved.remaining(), 2u);
    }
    EXPECT_TRUE(t->reserve(2).ok());  // the temporary went back at once
    insert(*t, ep, kRightSend);
    insert(*t, ep, kRightSend);
    EXPECT_EQ(t->reserve(1).error(), Error::LimitReached);
    EXPECT_TRUE(t->reserve(0).ok());
}

// Decode, then perform: a message carrying handles from `sender` to
// `receiver` is checked completely (room in the receiver, every handle and
// right in the sender) before anything moves.
TEST_F(HandleTableTest, TransferBetweenTablesChangesNothingWhenRefused) {
    TestObject a, b, filler;
    TablePtr sender = make(8);
    TablePtr receiver = make(3);
    HandleValue ha = insert(*sender, a, kRightSend | kRightDuplicate, 1);
    HandleValue hb = insert(*sender, b, kRightReceive, 2);
    HandleValue hf = insert(*receiver, filler, kRightSend);
    HandleValue hf2 = insert(*receiver, filler, kRightSend);
    using Req = HandleTable::TakeRequest;
    Req reqs[] = {{ha, 0, true}, {hb, 0, false}};

    // The receiver has room for one: refused before the sender is touched.
    EXPECT_EQ(receiver->reserve(2).error(), Error::LimitReached);
    EXPECT_EQ(sender->count(), 2u);

    ASSERT_EQ(receiver->remove(hf2), Error::None);
    HandleTable::Reservation res = receiver->reserve(2).value();
    // A bad handle in the message: the reservation is cancelled, nothing moved.
    Req bad[] = {{ha, 0, true}, {hb + 0x10000, 0, false}};
    HandleEntry out[2];
    EXPECT_EQ(sender->take_all(bad, 2, out), Error::BadHandle);
    res.cancel();
    EXPECT_EQ(sender->count(), 2u);
    EXPECT_EQ(receiver->count(), 1u);
    EXPECT_EQ(a.extra_refs(), 1u);
    EXPECT_EQ(b.extra_refs(), 1u);

    // All good: perform cannot fail.
    res = receiver->reserve(2).value();
    ASSERT_EQ(sender->take_all(reqs, 2, out), Error::None);
    HandleValue ra = res.fill(std::move(out[0]));
    HandleValue rb = res.fill(std::move(out[1]));
    EXPECT_EQ(res.remaining(), 0u);

    EXPECT_EQ(sender->count(), 1u);  // ha copied, hb moved
    EXPECT_TRUE(sender->lookup(ha, ObjectType::Endpoint, 0).ok());
    EXPECT_EQ(sender->lookup(hb, ObjectType::Endpoint, 0).error(), Error::BadHandle);
    EXPECT_EQ(receiver->count(), 3u);
    HandleEntry ea = receiver->lookup(ra, ObjectType::Endpoint, kRightSend).value();
    HandleEntry eb = receiver->lookup(rb, ObjectType::Endpoint, kRightReceive).value();
    EXPECT_EQ(ea.object.get(), &a);
    EXPECT_EQ(ea.badge, 1u);
    EXPECT_EQ(eb.object.get(), &b);
    EXPECT_EQ(eb.badge, 2u);
    EXPECT_EQ(a.extra_refs(), 3u);  // sender's, receiver's, ea
    EXPECT_EQ(b.extra_refs(), 2u);  // receiver's, eb
    EXPECT_TRUE(receiver->lookup(hf, ObjectType::Endpoint, 0).ok());
}

// ---------------------------------------------------------------------------
// Process death
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, ClearReleasesEverythingAndReportsEachEntry) {
    constexpr uint32_t kObjects = 5;
    constexpr uint32_t kHandles = 40;  // more than one batch of clear()
    std::vector<std::unique_ptr<TestObject>> objects;
    for (uint32_t i = 0; i < kObjects; ++i) objects.push_back(std::make_unique<TestObject>());
    ClosedLog log;
    TablePtr t = make(64, &log);
    std::multiset<std::pair<KObject*, uint64_t>> expected;
    std::vector<HandleValue> handles;
    for (uint32_t i = 0; i < kHandles; ++i) {
        TestObject& o = *objects[i % kObjects];
        handles.push_back(insert(*t, o, kRightSend, i / 3));
        expected.insert({&o, i / 3});
    }
    // Some holes, so the scan meets free slots too.
    for (uint32_t i = 0; i < kHandles; i += 7) {
        ASSERT_EQ(t->remove(handles[i]), Error::None);
        expected.erase(expected.find({objects[i % kObjects].get(), i / 3}));
    }
    log.closed.clear();
    uint32_t left = t->count();

    EXPECT_EQ(t->clear(), left);
    EXPECT_EQ(t->count(), 0u);
    std::multiset<std::pair<KObject*, uint64_t>> reported;
    for (const ClosedHandle& c : log.closed) {
        reported.insert({c.object, c.badge});
        EXPECT_EQ(c.rights, uint32_t{kRightSend});
    }
    EXPECT_EQ(reported, expected);
    for (auto& o : objects) EXPECT_EQ(o->extra_refs(), 0u);
    for (HandleValue h : handles) {
        EXPECT_EQ(t->lookup(h, ObjectType::Endpoint, 0).error(), Error::BadHandle);
    }

    // A cleared table takes nothing new.
    EXPECT_EQ(t->insert(objects[0]->ref(), kRightSend).error(), Error::Destroyed);
    EXPECT_EQ(t->reserve(1).error(), Error::Destroyed);
    EXPECT_EQ(objects[0]->extra_refs(), 0u);
    EXPECT_EQ(t->clear(), 0u);
}

// clear() stops scanning once no slot is in use; a handle in the last slot
// is still found, and one in the first ends the scan there.
TEST_F(HandleTableTest, ClearFindsTheLastSlotAndStopsWhenNothingIsLeft) {
    TestObject o;
    ClosedLog log;
    TablePtr t = make(8, &log);
    std::vector<HandleValue> handles;
    for (int i = 0; i < 8; ++i) handles.push_back(insert(*t, o, kRightSend, 0));
    for (int i = 0; i < 7; ++i) ASSERT_EQ(t->remove(handles[size_t(i)]), Error::None);
    log.closed.clear();
    EXPECT_EQ(t->clear(), 1u);
    ASSERT_EQ(log.closed.size(), 1u);
    EXPECT_EQ(t->count(), 0u);
    EXPECT_EQ(o.extra_refs(), 0u);
}

TEST_F(HandleTableTest, FillAfterClearClosesTheArrivingHandle) {
    TestObject ep;
    ClosedLog log;
    TablePtr t = make(4, &log);
    HandleTable::Reservation res = t->reserve(2).value();
    EXPECT_EQ(t->clear(), 0u);
    EXPECT_EQ(res.fill(HandleEntry{ep.ref(), kRightSend, 77, {}}), kNoHandle);
    ASSERT_EQ(log.closed.size(), 1u);
    EXPECT_EQ(log.closed[0].object, &ep);
    EXPECT_EQ(log.closed[0].badge, 77u);
    EXPECT_EQ(ep.extra_refs(), 0u);
    EXPECT_EQ(t->count(), 0u);
    res.cancel();
}

TEST_F(HandleTableTest, DestroyReleasesWhatIsLeft) {
    TestObject a, b;
    ClosedLog log;
    {
        TablePtr t = make(8, &log);
        insert(*t, a, kRightSend, 1);
        insert(*t, b, kRightSend, 2);
        insert(*t, b, kRightReceive, 3);
        EXPECT_EQ(b.extra_refs(), 2u);
    }
    EXPECT_EQ(log.closed.size(), 3u);
    EXPECT_EQ(a.extra_refs(), 0u);
    EXPECT_EQ(b.extra_refs(), 0u);
}

// ---------------------------------------------------------------------------
// Randomized: many operations against a reference model (std::map of the
// live handles), with hostile handle values mixed in.
// ---------------------------------------------------------------------------

TEST_F(HandleTableTest, RandomizedAgainstModel) {
    std::mt19937_64 rng(testing::test_seed("HandleTableTest.RandomizedAgainstModel"));
    constexpr uint32_t kCapacity = 32;
    constexpr int kOps = 200000;
    const ObjectType kTypes[] = {ObjectType::Endpoint, ObjectType::Thread, ObjectType::Process,
                                 ObjectType::Reply};

    std::vector<std::unique_ptr<TestObject>> objects;
    for (int i = 0; i < 8; ++i) objects.push_back(std::make_unique<TestObject>(kTypes[i % 4]));
    auto object_index = [&](const KObject* p) {
        for (size_t i = 0; i < objects.size(); ++i) {
            if (objects[i].get() == p) return int(i);
        }
        return -1;
    };

    struct ModelEntry {
        int object;
        uint32_t rights;
        uint64_t badge;
    };
    std::map<HandleValue, ModelEntry> live;
    std::vector<HandleValue> retired;           // closed or moved values, for stale lookups
    std::vector<Ref<KObject>> held;             // lookups and takes in flight
    std::map<HandleValue, uint64_t> issued_at;  // value -> closes of its index when issued
    uint64_t closes[kCapacity + 1] = {};
    uint32_t reserved = 0;  // the model's count of reserved slots

    ClosedLog log;
    TablePtr t = make(kCapacity, &log);
    HandleTable::Reservation reservation;  // at most one at a time; goes before t

    auto u32 = [&](uint32_t n) { return uint32_t(rng() % n); };
    auto pick_handle = [&]() -> HandleValue {
        uint32_t k = u32(100);
        if (k < 60 && !live.empty()) {
            auto it = live.begin();
            std::advance(it, u32(uint32_t(live.size())));
            return it->first;
        }
        if (k < 70 && !retired.empty()) return retired[u32(uint32_t(retired.size()))];
        if (k < 75) return 0;
        if (k < 80) return 0xFFFFFFFF;
        if (k < 90)
            return (u32(0x10000) << 16) |
                   u32(kCapacity + 1);  // in range or just past, any generation
        return uint32_t(rng());
    };
    auto pick_rights = [&]() -> uint32_t {
        uint32_t k = u32(20);
        if (k == 0) return uint32_t(rng());  // most likely has unknown bits
        return u32(kRightsAll + 1);
    };
    auto pick_badge = [&](uint64_t near) -> uint64_t {
        switch (u32(4)) {
            case 0:
                return 0;
            case 1:
                return near;
            case 2:
                return 1 + u32(4);
            default:
                return rng();
        }
    };
    // The handle is gone (closed or moved out): its slot gets a new generation.
    auto retire = [&](HandleValue h) {
        ModelEntry e = live.at(h);
        live.erase(h);
        retired.push_back(h);
        if (retired.size() > 256) retired.erase(retired.begin());
        ++closes[index_of(h)];
        return e;
    };
    auto issued = [&](HandleValue h, const ModelEntry& e) {
        ASSERT_NE(h, kNoHandle);
        ASSERT_NE(generation_of(h), 0u);
        ASSERT_LT(index_of(h), kCapacity);
        ASSERT_EQ(live.count(h), 0u) << "a live handle value issued again";
        auto prev = issued_at.find(h);
        if (prev != issued_at.end()) {
            // A value may come back only after its slot's generation wrapped.
            ASSERT_GE(closes[index_of(h)] - prev->second, 0xFFFFu) << "stale value reissued";
        }
        issued_at[h] = closes[index_of(h)];
        live[h] = e;
    };
    auto room = [&] { return uint32_t(live.size()) + reserved < kCapacity; };

    for (int op = 0; op < kOps; ++op) {
        SCOPED_TRACE(op);
        size_t hook_calls = log.closed.size();
        switch (u32(10)) {
            case 0: {  // insert
                int o = int(u32(uint32_t(objects.size())));
                uint32_t rights = pick_rights();
                uint64_t badge = pick_badge(0);
                Result<HandleValue> r = t->insert(objects[size_t(o)]->ref(), rights, badge);
                if ((rights & ~uint32_t{kRightsAll}) != 0) {
                    ASSERT_EQ(r.error(), Error::InvalidArgument);
                } else if (!room()) {
                    ASSERT_EQ(r.error(), Error::LimitReached);
                } else {
                    ASSERT_TRUE(r.ok()) << error_name(r.error());
                    issued(r.value(), ModelEntry{o, rights, badge});
                }
                break;
            }
            case 1:
            case 2: {  // lookup
                HandleValue h = pick_handle();
                ObjectType type = kTypes[u32(4)];
                uint32_t required = u32(kRightsAll + 1);
                Result<HandleEntry> r = t->lookup(h, type, required);
                auto it = live.find(h);
                if (it == live.end() || objects[size_t(it->second.object)]->type() != type) {
                    ASSERT_EQ(r.error(), Error::BadHandle);
                } else if ((it->second.rights & required) != required) {
                    ASSERT_EQ(r.error(), Error::NoRights);
                } else {
                    ASSERT_TRUE(r.ok()) << error_name(r.error());
                    HandleEntry e = std::move(r).value();
                    ASSERT_EQ(object_index(e.object.get()), it->second.object);
                    ASSERT_EQ(e.rights, it->second.rights);
                    ASSERT_EQ(e.badge, it->second.badge);
                    if (u32(2) == 0) held.push_back(std::move(e.object));
                }
                break;
            }
            case 3: {  // close
                HandleValue h = pick_handle();
                Status s = t->remove(h);
                if (live.count(h) == 0) {
                    ASSERT_EQ(s, Error::BadHandle);
                } else {
                    ASSERT_EQ(s, Error::None);
                    ModelEntry e = retire(h);
                    ASSERT_EQ(log.closed.size(), hook_calls + 1);
                    ASSERT_EQ(object_index(log.closed.back().object), e.object);
                    ASSERT_EQ(log.closed.back().badge, e.badge);
                    ASSERT_EQ(log.closed.back().rights, e.rights);
                }
                break;
            }
            case 4: {  // mint
                HandleValue h = pick_handle();
                auto it = live.find(h);
                // Half the time a subset of the source's rights, to get past the checks.
                uint32_t rights = pick_rights();
                if (it != live.end() && u32(2) == 0) rights &= it->second.rights;
                uint64_t badge = pick_badge(it != live.end() ? it->second.badge : 0);
                Result<HandleValue> r = t->mint(h, rights, badge);
                if ((rights & ~uint32_t{kRightsAll}) != 0) {
                    ASSERT_EQ(r.error(), Error::InvalidArgument);
                } else if (it == live.end()) {
                    ASSERT_EQ(r.error(), Error::BadHandle);
                } else if ((it->second.rights & kRightDuplicate) == 0 ||
                           (it->second.rights & rights) != rights) {
                    ASSERT_EQ(r.error(), Error::NoRights);
                } else if (badge != 0 && it->second.badge != 0 && badge != it->second.badge) {
                    ASSERT_EQ(r.error(), Error::InvalidArgument);
                } else if ((badge != 0 || it->second.badge != 0) && (rights & kRightReceive) != 0 &&
                           objects[size_t(it->second.object)]->type() == ObjectType::Endpoint) {
                    ASSERT_EQ(r.error(), Error::InvalidArgument);  // a receiver has no badge
                } else if (!room()) {
                    ASSERT_EQ(r.error(), Error::LimitReached);
                } else {
                    ASSERT_TRUE(r.ok()) << error_name(r.error());
                    ModelEntry src = it->second;
                    issued(r.value(),
                           ModelEntry{src.object, rights, badge != 0 ? badge : src.badge});
                }
                break;
            }
            case 5: {  // take (and sometimes put back)
                HandleValue h = pick_handle();
                auto it = live.find(h);
                uint32_t required = u32(kRightsAll + 1);
                if (it != live.end() && u32(2) == 0) required &= it->second.rights;
                Result<HandleEntry> r = t->take(h, required);
                if (it == live.end()) {
                    ASSERT_EQ(r.error(), Error::BadHandle);
                } else if ((it->second.rights & required) != required) {
                    ASSERT_EQ(r.error(), Error::NoRights);
                } else {
                    ASSERT_TRUE(r.ok()) << error_name(r.error());
                    HandleEntry e = std::move(r).value();
                    ModelEntry m = retire(h);
                    ASSERT_EQ(object_index(e.object.get()), m.object);
                    ASSERT_EQ(e.rights, m.rights);
                    ASSERT_EQ(e.badge, m.badge);
                    if (u32(2) == 0) {
                        // Back in, as a new handle (a message to oneself).
                        Result<HandleValue> back =
                            t->insert(std::move(e.object), e.rights, e.badge);
                        ASSERT_TRUE(back.ok());
                        issued(back.value(), m);
                    } else {
                        held.push_back(std::move(e.object));
                    }
                }
                break;
            }
            case 6: {  // take_all
                uint32_t n = u32(HandleTable::kMaxTakeAll + 2);
                HandleTable::TakeRequest reqs[HandleTable::kMaxTakeAll + 1];
                for (uint32_t i = 0; i < n; ++i) {
                    reqs[i] = {pick_handle(), u32(kRightsAll + 1) & u32(kRightsAll + 1),
                               u32(2) == 0};
                    // Often repeat an earlier handle.
                    if (i > 0 && u32(4) == 0) reqs[i].handle = reqs[u32(i)].handle;
                }
                HandleEntry out[HandleTable::kMaxTakeAll + 1];
                Status s = t->take_all(reqs, n, out);
                Status expect = Error::None;
                if (n > HandleTable::kMaxTakeAll) expect = Error::InvalidArgument;
                for (uint32_t i = 0; i < n && expect == Error::None; ++i) {
                    auto it = live.find(reqs[i].handle);
                    bool moved_before = false;
                    for (uint32_t j = 0; j < i; ++j) {
                        if (reqs[j].handle == reqs[i].handle && !reqs[j].copy) moved_before = true;
                    }
                    uint32_t required =
                        reqs[i].required_rights | (reqs[i].copy ? uint32_t{kRightDuplicate} : 0);
                    if (it == live.end() || moved_before) {
                        expect = Error::BadHandle;
                    } else if ((it->second.rights & required) != required) {
                        expect = Error::NoRights;
                    }
                }
                ASSERT_EQ(s, expect);
                if (s != Error::None) {
                    for (uint32_t i = 0; i < n; ++i) ASSERT_FALSE(out[i].object);
                    break;
                }
                for (uint32_t i = 0; i < n; ++i) {
                    ModelEntry m = live.at(reqs[i].handle);
                    ASSERT_EQ(object_index(out[i].object.get()), m.object);
                    ASSERT_EQ(out[i].rights, m.rights);
                    ASSERT_EQ(out[i].badge, m.badge);
                    if (!reqs[i].copy) retire(reqs[i].handle);
                    held.push_back(std::move(out[i].object));
                }
                break;
            }
            case 7: {  // reserve, fill, cancel
                if (reservation.remaining() == 0) {
                    uint32_t n = u32(6);
                    Result<HandleTable::Reservation> r = t->reserve(n);
                    if (uint32_t(live.size()) + reserved + n > kCapacity) {
                        ASSERT_EQ(r.error(), Error::LimitReached);
                    } else {
                        ASSERT_TRUE(r.ok());
                        reservation = std::move(r).value();
                        ASSERT_EQ(reservation.remaining(), n);
                        reserved = n;
                    }
                } else if (u32(4) == 0) {
                    reservation.cancel();
                    reserved = 0;
                } else {
                    int o = int(u32(uint32_t(objects.size())));
                    uint32_t rights = u32(kRightsAll + 1);
                    uint64_t badge = pick_badge(0);
                    HandleValue h =
                        reservation.fill(HandleEntry{objects[size_t(o)]->ref(), rights, badge, {}});
                    --reserved;
                    ASSERT_EQ(reservation.remaining(), reserved);
                    issued(h, ModelEntry{o, rights, badge});
                }
                break;
            }
            case 8: {  // drop references in flight
                if (!held.empty()) {
                    size_t i = u32(uint32_t(held.size()));
                    held.erase(held.begin() + ptrdiff_t(i));
                }
                break;
            }
            default: {  // count() and every object's references
                ASSERT_EQ(t->count(), live.size());
                std::vector<uint32_t> refs(objects.size(), 0);
                for (const auto& [h, e] : live) ++refs[size_t(e.object)];
                for (const Ref<KObject>& r : held) ++refs[size_t(object_index(r.get()))];
                for (size_t i = 0; i < objects.size(); ++i) {
                    ASSERT_EQ(objects[i]->extra_refs(), refs[i]) << "object " << i;
                }
                break;
            }
        }
        if (HasFatalFailure()) return;
        // Only a close tells the hook.
        ASSERT_LE(log.closed.size(), hook_calls + 1);
    }

    // Every live handle still names what the model says.
    for (const auto& [h, e] : live) {
        Result<HandleEntry> r = t->lookup(h, objects[size_t(e.object)]->type(), e.rights);
        ASSERT_TRUE(r.ok()) << error_name(r.error());
        ASSERT_EQ(r.value().badge, e.badge);
    }

    // Death: clear() reports exactly the live entries.
    reservation.cancel();
    log.closed.clear();
    std::multiset<std::tuple<int, uint32_t, uint64_t>> expected, reported;
    for (const auto& [h, e] : live) expected.insert({e.object, e.rights, e.badge});
    EXPECT_EQ(t->clear(), live.size());
    for (const ClosedHandle& c : log.closed) {
        reported.insert({object_index(c.object), c.rights, c.badge});
    }
    EXPECT_EQ(reported, expected);
    held.clear();
    for (auto& o : objects) EXPECT_EQ(o->extra_refs(), 0u);
}

}  // namespace
}  // namespace mk

namespace mk {
namespace {

// A badge lineage's tracker: made by the first badged mint, shared by every
// handle descended from it (copies, moves, in-flight entries), never by a
// lookup; its last reference is the lineage's last handle.
TestObject* g_made_tracker = nullptr;
uint64_t g_tracked_badge = 0;
Result<KObject*> make_test_tracker(KObject*, uint64_t badge) {
    g_tracked_badge = badge;
    return static_cast<KObject*>(g_made_tracker);  // the test's anchor stays with the test
}
Result<KObject*> failing_tracker(KObject*, uint64_t) {
    return Error::OutOfMemory;
}

TEST_F(HandleTableTest, BadgeLineageSharesOneTrackerUntilItsLastHandle) {
    TestObject ep;  // before the tables: they go first
    TestObject tracker(ObjectType::Badge);
    TablePtr a = make(16);
    TablePtr b = make(16);
    tracker.retain();  // the reference make_test_tracker hands over
    g_made_tracker = &tracker;
    HandleValue unbadged = insert(*a, ep, kRightsAll);
    Result<HandleValue> badged =
        a->mint(unbadged, kRightSend | kRightDuplicate, 9, make_test_tracker);
    ASSERT_TRUE(badged.ok());
    EXPECT_EQ(g_tracked_badge, 9u);
    EXPECT_EQ(tracker.extra_refs(), 1u);
    // A copy keeping the badge shares the tracker; a lookup does not hold it.
    Result<HandleValue> copy = a->mint(badged.value(), kRightSend, 0, failing_tracker);
    ASSERT_TRUE(copy.ok());
    EXPECT_EQ(tracker.extra_refs(), 2u);
    {
        Result<HandleEntry> looked = a->lookup(copy.value(), ObjectType::Endpoint, kRightSend);
        ASSERT_TRUE(looked.ok());
        EXPECT_FALSE(looked.value().tracker);
    }
    EXPECT_EQ(a->remove(copy.value()), Error::None);
    EXPECT_EQ(tracker.extra_refs(), 1u);
    // Moved to another table through an in-flight entry: still one lineage handle.
    Result<HandleEntry> moved = a->take(badged.value(), 0);
    ASSERT_TRUE(moved.ok());
    HandleEntry entry = std::move(moved).value();
    EXPECT_EQ(tracker.extra_refs(), 1u);
    Result<HandleValue> there = b->insert(std::move(entry));
    ASSERT_TRUE(there.ok());
    EXPECT_EQ(tracker.extra_refs(), 1u);
    // A copy in flight counts until it lands or is dropped.
    HandleTable::TakeRequest req{there.value(), 0, true};
    HandleEntry in_flight[1];
    ASSERT_EQ(b->take_all(&req, 1, in_flight), Error::None);
    EXPECT_EQ(tracker.extra_refs(), 2u);
    in_flight[0] = HandleEntry{};
    EXPECT_EQ(tracker.extra_refs(), 1u);
    // The lineage's last handle goes with its table.
    b->clear();
    EXPECT_EQ(tracker.extra_refs(), 0u);
    // A new lineage whose tracker cannot be made fails the mint, nothing stored.
    EXPECT_EQ(a->mint(unbadged, kRightSend, 10, failing_tracker).error(), Error::OutOfMemory);
    EXPECT_EQ(a->count(), 1u);
}

}  // namespace
}  // namespace mk
