// The PCID policy (microkernel/pcid.hpp): which PCID a CPU gives an address
// space and when loading it must flush. The x86 code that follows it never
// runs in our tests (QEMU's TCG offers no PCID), so this is where it is held
// to its contract.
#include "pcid.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <new>
#include <set>
#include <vector>

namespace mk {
namespace {

constexpr uint16_t kSlots = PcidTable::kSlots;

PcidTable::Load load(PcidTable& t, const TlbSpace& s) {
    return t.load(s.id(), s.generation());
}

std::vector<std::unique_ptr<TlbSpace>> spaces(size_t n) {
    std::vector<std::unique_ptr<TlbSpace>> v;
    for (size_t i = 0; i < n; ++i) v.push_back(std::make_unique<TlbSpace>());
    return v;
}

TEST(TlbSpace, IdsAreNonzeroAndDistinct) {
    auto v = spaces(100);
    std::set<uint64_t> ids;
    for (const auto& s : v) {
        EXPECT_NE(s->id(), 0u);
        ids.insert(s->id());
    }
    EXPECT_EQ(ids.size(), v.size());
}

TEST(TlbSpace, InvalidateAdvancesTheGeneration) {
    TlbSpace s;
    uint64_t g = s.generation();
    s.invalidate();
    EXPECT_EQ(s.generation(), g + 1);
    s.invalidate();
    EXPECT_EQ(s.generation(), g + 2);
}

// The CR3 value a load asks for: the root, the PCID in the low 12 bits,
// bit 63 (keep the entries) only when no flush is needed.
TEST(PcidTable, Cr3CarriesThePcidAndTheNoFlushBit) {
    const uint64_t root = 0x12345000;
    EXPECT_EQ(PcidTable::cr3(root, {3, true}), root | 3);
    EXPECT_EQ(PcidTable::cr3(root, {3, false}), root | 3 | (uint64_t{1} << 63));
    EXPECT_EQ(PcidTable::cr3(root, {PcidTable::kSlots, false}) & 0xFFF, PcidTable::kSlots);
    EXPECT_EQ(PcidTable::cr3(root, {1, false}) & ~(uint64_t{1} << 63) & ~uint64_t{0xFFF}, root);
    // A load the table gives: a first load flushes.
    PcidTable t;
    PcidTable::Load first = t.load(7, 0);
    EXPECT_EQ(PcidTable::cr3(root, first), root | first.pcid);
    PcidTable::Load again = t.load(7, 0);
    EXPECT_EQ(PcidTable::cr3(root, again), root | again.pcid | (uint64_t{1} << 63));
}

TEST(PcidTable, StartsOnTheKernelPcid) {
    PcidTable t;
    EXPECT_EQ(t.current(), PcidTable::kKernelPcid);
    EXPECT_EQ(PcidTable::kKernelPcid, 0);
}

TEST(PcidTable, FirstLoadTakesASlotAndFlushes) {
    PcidTable t;
    TlbSpace s;
    PcidTable::Load l = load(t, s);
    EXPECT_GE(l.pcid, 1);
    EXPECT_LE(l.pcid, kSlots);
    EXPECT_TRUE(l.flush);
    EXPECT_EQ(t.current(), l.pcid);
}

TEST(PcidTable, ReloadWithTheSameGenerationKeepsTheTlb) {
    PcidTable t;
    TlbSpace a, b;
    PcidTable::Load first = load(t, a);
    PcidTable::Load other = load(t, b);
    EXPECT_NE(other.pcid, first.pcid);
    EXPECT_TRUE(other.flush);
    t.load_kernel();
    EXPECT_EQ(t.current(), PcidTable::kKernelPcid);
    PcidTable::Load again = load(t, a);
    EXPECT_EQ(again.pcid, first.pcid);
    EXPECT_FALSE(again.flush);
    EXPECT_EQ(t.current(), first.pcid);
    PcidTable::Load b_again = load(t, b);
    EXPECT_EQ(b_again.pcid, other.pcid);
    EXPECT_FALSE(b_again.flush);
}

TEST(PcidTable, ABumpedGenerationFlushesOnce) {
    PcidTable t;
    TlbSpace a, b;
    PcidTable::Load first = load(t, a);
    load(t, b);
    a.invalidate();  // an unmap in `a` while this CPU ran `b`
    PcidTable::Load after = load(t, a);
    EXPECT_EQ(after.pcid, first.pcid);  // its slot, flushed
    EXPECT_TRUE(after.flush);
    load(t, b);
    PcidTable::Load then = load(t, a);  // flushed at the new generation already
    EXPECT_EQ(then.pcid, first.pcid);
    EXPECT_FALSE(then.flush);
    // Two bumps between loads: one flush.
    load(t, b);
    a.invalidate();
    a.invalidate();
    EXPECT_TRUE(load(t, a).flush);
    EXPECT_FALSE(load(t, a).flush);
}

TEST(PcidTable, SlotsGoToDistinctSpacesUpToKSlots) {
    PcidTable t;
    auto v = spaces(kSlots);
    std::set<uint16_t> pcids;
    for (const auto& s : v) {
        PcidTable::Load l = load(t, *s);
        EXPECT_TRUE(l.flush);
        pcids.insert(l.pcid);
    }
    EXPECT_EQ(pcids.size(), size_t{kSlots});
    EXPECT_EQ(*pcids.begin(), 1);
    EXPECT_EQ(*pcids.rbegin(), kSlots);
    // Every one of them kept its entries.
    for (const auto& s : v) EXPECT_FALSE(load(t, *s).flush);
}

TEST(PcidTable, OneMoreSpaceEvictsTheLeastRecentlyLoaded) {
    PcidTable t;
    auto v = spaces(kSlots + 1);
    std::vector<uint16_t> pcid(v.size());
    for (size_t i = 0; i < kSlots; ++i) pcid[i] = load(t, *v[i]).pcid;
    // Space 0 was loaded first, but loaded again now: space 1 is the oldest.
    EXPECT_FALSE(load(t, *v[0]).flush);
    PcidTable::Load extra = load(t, *v[kSlots]);
    EXPECT_TRUE(extra.flush);
    EXPECT_EQ(extra.pcid, pcid[1]);
    // The evicted space must flush when it comes back (in the slot of the
    // now oldest, space 2); the others kept theirs.
    PcidTable::Load back = load(t, *v[1]);
    EXPECT_TRUE(back.flush);
    EXPECT_EQ(back.pcid, pcid[2]);
    EXPECT_FALSE(load(t, *v[0]).flush);
    for (size_t i = 3; i < kSlots; ++i) {
        PcidTable::Load l = load(t, *v[i]);
        EXPECT_FALSE(l.flush) << i;
        EXPECT_EQ(l.pcid, pcid[i]) << i;
    }
    EXPECT_FALSE(load(t, *v[kSlots]).flush);
    EXPECT_TRUE(load(t, *v[2]).flush);  // evicted by space 1's return
}

TEST(PcidTable, ManySpacesRoundTheSlotsAndAlwaysFlushOnAMiss) {
    PcidTable t;
    auto v = spaces(3 * kSlots + 1);
    // Loaded in a cycle longer than the table: LRU evicts each one just
    // before it comes back, so every load is a miss.
    for (int round = 0; round < 3; ++round) {
        for (const auto& s : v) EXPECT_TRUE(load(t, *s).flush);
    }
}

TEST(PcidTable, PcidZeroIsNeverHandedOut) {
    PcidTable t;
    auto v = spaces(4 * kSlots);
    // A mix of hits, misses, generation bumps and kernel loads.
    for (int i = 0; i < 1000; ++i) {
        TlbSpace& s = *v[size_t(i * 7 + i / 5) % v.size()];
        if (i % 11 == 0) s.invalidate();
        if (i % 13 == 0) t.load_kernel();
        PcidTable::Load l = load(t, s);
        EXPECT_NE(l.pcid, PcidTable::kKernelPcid);
        EXPECT_LE(l.pcid, kSlots);
        EXPECT_EQ(t.current(), l.pcid);
    }
}

// A space torn down and another made in the same memory (the same
// Process object's address, and in the kernel maybe the same root) gets a
// new id: it never inherits the slot, even at the same generation.
TEST(PcidTable, ASpaceMadeWhereAFreedOneWasNeverMatchesItsSlot) {
    PcidTable t;
    alignas(TlbSpace) unsigned char storage[sizeof(TlbSpace)];
    auto* first = new (storage) TlbSpace;
    const uint64_t first_id = first->id();
    const uint64_t generation = first->generation();
    PcidTable::Load l = load(t, *first);
    EXPECT_FALSE(load(t, *first).flush);
    first->~TlbSpace();
    auto* second = new (storage) TlbSpace;
    ASSERT_EQ(static_cast<void*>(second), static_cast<void*>(storage));
    EXPECT_NE(second->id(), first_id);
    EXPECT_EQ(second->generation(), generation);
    PcidTable::Load l2 = load(t, *second);
    EXPECT_TRUE(l2.flush);
    EXPECT_NE(l2.pcid, l.pcid);  // a free slot rather than the dead one's
    second->~TlbSpace();
}

TEST(PcidTable, TwoCpusTablesAreIndependent) {
    PcidTable cpu0, cpu1;
    TlbSpace a;
    auto others = spaces(kSlots + 1);
    EXPECT_TRUE(load(cpu0, a).flush);
    // cpu1 never flushed `a`: its first load flushes, whatever cpu0 did.
    EXPECT_TRUE(load(cpu1, a).flush);
    // cpu1 runs more spaces than it has slots; cpu0 keeps `a`.
    for (const auto& s : others) load(cpu1, *s);
    EXPECT_FALSE(load(cpu0, a).flush);
    EXPECT_EQ(cpu0.current(), load(cpu0, a).pcid);
    // An invalidation reaches each CPU at its own next load.
    a.invalidate();
    EXPECT_TRUE(load(cpu0, a).flush);
    EXPECT_FALSE(load(cpu0, a).flush);
    EXPECT_TRUE(load(cpu1, a).flush);  // evicted there anyway
    EXPECT_FALSE(load(cpu1, a).flush);
    cpu1.load_kernel();
    EXPECT_EQ(cpu1.current(), PcidTable::kKernelPcid);
    EXPECT_NE(cpu0.current(), PcidTable::kKernelPcid);
}

}  // namespace
}  // namespace mk
