#include "acpi.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace mk::acpi {
namespace {

using Bytes = std::vector<uint8_t>;

void put_u32(Bytes& b, size_t at, uint32_t v) {
    std::memcpy(b.data() + at, &v, sizeof v);
}
void put_u64(Bytes& b, size_t at, uint64_t v) {
    std::memcpy(b.data() + at, &v, sizeof v);
}
void append_u32(Bytes& b, uint32_t v) {
    b.resize(b.size() + 4);
    put_u32(b, b.size() - 4, v);
}
void append_u64(Bytes& b, uint64_t v) {
    b.resize(b.size() + 8);
    put_u64(b, b.size() - 8, v);
}

// Sets byte `at` so that bytes [0, n) sum to 0.
void fix_checksum(Bytes& b, size_t at, size_t n) {
    b[at] = 0;
    uint8_t sum = 0;
    for (size_t i = 0; i < n; ++i) sum = uint8_t(sum + b[i]);
    b[at] = uint8_t(-sum);
}

// Physical memory for the parser: regions of test bytes at chosen addresses.
// map() hands out a pointer only when [phys, phys + length) lies inside one
// region, so a read past a region is an ASan report or a null, never silent.
class FakeMemory {
  public:
    void place(uint64_t phys, Bytes bytes) { regions_[phys] = std::move(bytes); }
    Bytes& at(uint64_t phys) { return regions_.at(phys); }
    PhysMemory memory() { return {map, this}; }
    size_t maps = 0;

  private:
    static const void* map(void* ctx, uint64_t phys, size_t length) {
        auto* self = static_cast<FakeMemory*>(ctx);
        ++self->maps;
        for (auto& [base, bytes] : self->regions_) {
            if (phys >= base && phys - base <= bytes.size() &&
                length <= bytes.size() - (phys - base)) {
                return bytes.data() + (phys - base);
            }
        }
        return nullptr;
    }
    std::map<uint64_t, Bytes> regions_;
};

// A system description table: header with `sig`, then `body`; length and
// checksum filled in.
Bytes table(const char* sig, const Bytes& body, uint8_t revision = 1) {
    Bytes t(36, 0);
    std::memcpy(t.data(), sig, 4);
    t[8] = revision;
    std::memcpy(t.data() + 10, "MKTEST", 6);
    t.insert(t.end(), body.begin(), body.end());
    put_u32(t, 4, uint32_t(t.size()));
    fix_checksum(t, 9, t.size());
    return t;
}

Bytes local_apic(uint8_t uid, uint8_t apic_id, uint32_t flags) {
    Bytes e = {0, 8, uid, apic_id};
    append_u32(e, flags);
    return e;
}
Bytes local_x2apic(uint32_t apic_id, uint32_t flags, uint32_t uid) {
    Bytes e = {9, 16, 0, 0};
    append_u32(e, apic_id);
    append_u32(e, flags);
    append_u32(e, uid);
    return e;
}
Bytes lapic_override(uint64_t address) {
    Bytes e = {5, 12, 0, 0};
    append_u64(e, address);
    return e;
}
Bytes io_apic(uint8_t id, uint32_t address) {
    Bytes e = {1, 12, id, 0};
    append_u32(e, address);
    append_u32(e, 0);
    return e;
}

Bytes madt_body(const std::vector<Bytes>& entries, uint32_t lapic = 0xFEE00000) {
    Bytes b;
    append_u32(b, lapic);
    append_u32(b, 1);  // PC-AT compatible dual 8259s
    for (const Bytes& e : entries) b.insert(b.end(), e.begin(), e.end());
    return b;
}

Bytes rsdt_body(const std::vector<uint32_t>& tables) {
    Bytes b;
    for (uint32_t t : tables) append_u32(b, t);
    return b;
}
Bytes xsdt_body(const std::vector<uint64_t>& tables) {
    Bytes b;
    for (uint64_t t : tables) append_u64(b, t);
    return b;
}

Bytes rsdp(uint8_t revision, uint32_t rsdt, uint64_t xsdt = 0) {
    Bytes r(revision >= 2 ? 36 : 20, 0);
    std::memcpy(r.data(), "RSD PTR ", 8);
    std::memcpy(r.data() + 9, "MKTEST", 6);
    r[15] = revision;
    put_u32(r, 16, rsdt);
    fix_checksum(r, 8, 20);
    if (revision >= 2) {
        put_u32(r, 20, 36);
        put_u64(r, 24, xsdt);
        fix_checksum(r, 32, 36);
    }
    return r;
}

constexpr uint64_t kRsdt = 0x7FE1000;
constexpr uint64_t kXsdt = 0x7FE2000;
constexpr uint64_t kMadt = 0x7FE3000;
constexpr uint64_t kMadt2 = 0x7FE4000;
constexpr uint64_t kFacp = 0x7FE5000;

// A machine whose RSDT lists a FACP and then the MADT.
struct Machine {
    FakeMemory mem;
    Bytes rsdp_bytes;

    explicit Machine(const std::vector<Bytes>& entries, uint8_t madt_revision = 3) {
        mem.place(kFacp, table("FACP", Bytes(80, 0)));
        mem.place(kMadt, table("APIC", madt_body(entries), madt_revision));
        mem.place(kRsdt, table("RSDT", rsdt_body({uint32_t(kFacp), uint32_t(kMadt)})));
        rsdp_bytes = rsdp(0, uint32_t(kRsdt));
    }
    AcpiError parse(MadtInfo& info) {
        return find_processors(rsdp_bytes.data(), rsdp_bytes.size(), mem.memory(), info);
    }
    // Re-sums a table after a test changed it (to reach the check after the checksum).
    void resum(uint64_t phys) {
        Bytes& t = mem.at(phys);
        fix_checksum(t, 9, t.size());
    }
};

std::vector<uint32_t> apic_ids(const MadtInfo& info) {
    std::vector<uint32_t> ids;
    for (size_t i = 0; i < info.count; ++i) ids.push_back(info.processors[i].apic_id);
    return ids;
}

TEST(AcpiMadt, ListsEnabledLocalApicsAndSkipsDisabledOnes) {
    Machine m({local_apic(0, 0, 1), io_apic(4, 0xFEC00000), local_apic(1, 1, 1),
               local_apic(2, 2, 0), local_apic(3, 6, 1)});
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_EQ(apic_ids(info), (std::vector<uint32_t>{0, 1, 6}));
    EXPECT_EQ(info.enabled, 3u);
    EXPECT_EQ(info.ignored, 0u);
    EXPECT_EQ(info.lapic_address, 0xFEE00000u);
    EXPECT_FALSE(info.lapic_override);
    EXPECT_FALSE(info.used_xsdt);
    EXPECT_EQ(info.processors[2].acpi_uid, 3u);
    EXPECT_FALSE(info.processors[2].x2apic_entry);
    EXPECT_TRUE(info.processors[2].enabled);
}

TEST(AcpiMadt, ListsX2ApicEntries) {
    Machine m({local_apic(0, 0, 1), local_x2apic(0x100, 1, 7), local_x2apic(0x101, 0, 8)});
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_EQ(apic_ids(info), (std::vector<uint32_t>{0, 0x100}));
    EXPECT_TRUE(info.processors[1].x2apic_entry);
    EXPECT_EQ(info.processors[1].acpi_uid, 7u);
}

TEST(AcpiMadt, CountsOnlineCapableFromRevision5AfterTheEnabledOnes) {
    // Flags 2: online capable, not enabled. Listed after every enabled one.
    Machine m(
        {local_apic(0, 0, 1), local_apic(1, 1, 2), local_x2apic(0x200, 2, 9), local_apic(2, 2, 1)},
        5);
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_EQ(apic_ids(info), (std::vector<uint32_t>{0, 2, 1, 0x200}));
    EXPECT_EQ(info.enabled, 2u);
    EXPECT_EQ(info.count, 4u);
    EXPECT_FALSE(info.processors[2].enabled);
    EXPECT_TRUE(info.processors[2].online_capable);
    EXPECT_TRUE(info.processors[3].online_capable);
}

TEST(AcpiMadt, OnlineCapableBitMeansNothingBeforeRevision5) {
    Machine m({local_apic(0, 0, 1), local_apic(1, 1, 2)}, 4);
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_EQ(apic_ids(info), (std::vector<uint32_t>{0}));
}

TEST(AcpiMadt, LapicAddressOverride) {
    Machine m({local_apic(0, 0, 1), lapic_override(0x1'2345'6000ull)});
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_TRUE(info.lapic_override);
    EXPECT_EQ(info.lapic_address, 0x1'2345'6000ull);
}

TEST(AcpiMadt, ADuplicateApicIdIsListedOnce) {
    Machine m({local_apic(0, 0, 1), local_apic(1, 1, 1), local_x2apic(1, 1, 1)});
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_EQ(apic_ids(info), (std::vector<uint32_t>{0, 1}));
    EXPECT_EQ(info.duplicates, 1u);
}

TEST(AcpiMadt, MoreProcessorsThanTheCapAreCountedAndLeftOut) {
    std::vector<Bytes> entries;
    // 16 + 4 enabled, and 3 online-capable ones that must lose to them.
    for (uint8_t i = 0; i < 3; ++i)
        entries.push_back(local_apic(uint8_t(100 + i), uint8_t(100 + i), 2));
    for (uint8_t i = 0; i < 20; ++i) entries.push_back(local_apic(i, i, 1));
    Machine m(entries, 5);
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_EQ(info.count, MadtInfo::kMaxProcessors);
    EXPECT_EQ(info.enabled, MadtInfo::kMaxProcessors);
    EXPECT_EQ(info.ignored, 4u + 3u);
    for (size_t i = 0; i < info.count; ++i) EXPECT_EQ(info.processors[i].apic_id, i);
}

TEST(AcpiMadt, NoEnabledProcessorIsAnError) {
    Machine m({local_apic(0, 0, 0)});
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::NoProcessors);
}

TEST(AcpiMadt, FailureLeavesTheOutputAlone) {
    Machine m({local_apic(0, 0, 1)});
    m.mem.at(kMadt)[20] ^= 1;
    MadtInfo info;
    info.count = 3;
    EXPECT_EQ(m.parse(info), AcpiError::MadtBadChecksum);
    EXPECT_EQ(info.count, 3u);
}

// --- Root table choice ---

// An XSDT at `xsdt` listing `entries`, and a revision 2 RSDP naming it.
void use_xsdt(Machine& m, uint64_t xsdt, std::vector<uint64_t> entries) {
    m.mem.place(xsdt, table("XSDT", xsdt_body(entries)));
    m.rsdp_bytes = rsdp(2, uint32_t(kRsdt), xsdt);
}

constexpr uint64_t kHighXsdt = 0x1'0000'2000ull;
constexpr uint64_t kHighMadt = 0x23'4567'8000ull;

TEST(AcpiRoot, Revision2UsesTheXsdt) {
    Machine m({local_apic(0, 0, 1)});
    m.mem.place(kMadt2, table("APIC", madt_body({local_apic(0, 0, 1), local_apic(1, 5, 1)})));
    use_xsdt(m, kXsdt, {kFacp, kMadt2});
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_TRUE(info.used_xsdt);
    EXPECT_EQ(apic_ids(info), (std::vector<uint32_t>{0, 5}));
}

// The kernel maps each table where it lies (arch/x86_64/main.cpp), so an
// XSDT and a MADT above 4 GiB are read like any other; the addresses are
// whole 64-bit values all the way (RSDP, XSDT entries).
TEST(AcpiRoot, TablesAbove4GiBAreRead) {
    Machine m({local_apic(0, 0, 1)});
    m.mem.place(kHighMadt, table("APIC", madt_body({local_apic(0, 3, 1), local_apic(1, 4, 1)})));
    use_xsdt(m, kHighXsdt, {kFacp, kHighMadt});
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_TRUE(info.used_xsdt);
    EXPECT_EQ(apic_ids(info), (std::vector<uint32_t>{3, 4}));
}

// The same tables, where the memory cannot reach them (beyond what the CPU
// addresses): refused, never read.
TEST(AcpiRoot, AnUnreachableHighTableIsRefused) {
    Machine m({local_apic(0, 0, 1)});
    use_xsdt(m, kHighXsdt, {kFacp, kHighMadt});
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::TableUnreachable);
    // An XSDT entry whose table would run past the top of the address space.
    use_xsdt(m, kHighXsdt, {kFacp, 0xFFFF'FFFF'FFFF'FFF0ull});
    EXPECT_EQ(m.parse(info), AcpiError::TableUnreachable);
}

TEST(AcpiRoot, Revision2WithoutAnXsdtUsesTheRsdt) {
    Machine m({local_apic(0, 0, 1)});
    m.rsdp_bytes = rsdp(2, uint32_t(kRsdt), 0);
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_FALSE(info.used_xsdt);
}

TEST(AcpiRoot, Revision0IgnoresTheXsdtFields) {
    // A revision-0 RSDP followed by what would be an XSDT address: unused.
    Machine m({local_apic(0, 0, 1)});
    m.mem.place(kXsdt, table("XSDT", xsdt_body({kMadt2})));
    Bytes r = rsdp(2, uint32_t(kRsdt), kXsdt);
    r[15] = 0;
    fix_checksum(r, 8, 20);
    m.rsdp_bytes = r;
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_FALSE(info.used_xsdt);
}

TEST(AcpiRoot, A20ByteCopyOfARevision2RsdpUsesTheRsdt) {
    // The multiboot2 "old RSDP" tag carries only the first 20 bytes.
    Machine m({local_apic(0, 0, 1)});
    m.rsdp_bytes = rsdp(2, uint32_t(kRsdt), kXsdt);
    m.rsdp_bytes.resize(20);
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_FALSE(info.used_xsdt);
}

TEST(AcpiRoot, NoMadtInTheRootTable) {
    Machine m({local_apic(0, 0, 1)});
    m.mem.place(kRsdt, table("RSDT", rsdt_body({uint32_t(kFacp)})));
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::NoMadt);
}

TEST(AcpiRoot, AnUnreachableEntryWithoutAMadtIsReported) {
    Machine m({local_apic(0, 0, 1)});
    m.mem.place(kRsdt, table("RSDT", rsdt_body({uint32_t(kFacp), 0xDEAD000})));
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::TableUnreachable);
}

TEST(AcpiRoot, AnUnreachableEntryBeforeTheMadtIsSkipped) {
    Machine m({local_apic(0, 0, 1), local_apic(1, 1, 1)});
    m.mem.place(kRsdt, table("RSDT", rsdt_body({0xDEAD000, uint32_t(kMadt)})));
    MadtInfo info;
    ASSERT_EQ(m.parse(info), AcpiError::None);
    EXPECT_EQ(info.count, 2u);
}

// --- Bad RSDPs ---

TEST(AcpiRsdp, Missing) {
    MadtInfo info;
    FakeMemory mem;
    EXPECT_EQ(find_processors(nullptr, 0, mem.memory(), info), AcpiError::NoRsdp);
}

TEST(AcpiRsdp, TruncatedBelow20Bytes) {
    Machine m({local_apic(0, 0, 1)});
    MadtInfo info;
    EXPECT_EQ(find_processors(m.rsdp_bytes.data(), 19, m.mem.memory(), info),
              AcpiError::RsdpTooShort);
}

TEST(AcpiRsdp, BadSignature) {
    Machine m({local_apic(0, 0, 1)});
    m.rsdp_bytes[3] = 'X';
    fix_checksum(m.rsdp_bytes, 8, 20);
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RsdpBadSignature);
}

TEST(AcpiRsdp, BadChecksum) {
    Machine m({local_apic(0, 0, 1)});
    m.rsdp_bytes[8] ^= 0x40;
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RsdpBadChecksum);
}

TEST(AcpiRsdp, BadExtendedChecksum) {
    Machine m({local_apic(0, 0, 1)});
    m.rsdp_bytes = rsdp(2, uint32_t(kRsdt), kXsdt);
    m.rsdp_bytes[32] ^= 1;
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RsdpBadExtendedChecksum);
}

TEST(AcpiRsdp, LengthFieldBeyondTheCopy) {
    Machine m({local_apic(0, 0, 1)});
    m.rsdp_bytes = rsdp(2, uint32_t(kRsdt), kXsdt);
    put_u32(m.rsdp_bytes, 20, 40);  // says 40, the copy holds 36
    fix_checksum(m.rsdp_bytes, 32, 36);
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RsdpTooShort);
}

// --- Bad root tables ---

TEST(AcpiRoot, BadSignature) {
    Machine m({local_apic(0, 0, 1)});
    std::memcpy(m.mem.at(kRsdt).data(), "XSDT", 4);
    m.resum(kRsdt);
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RootBadSignature);
}

TEST(AcpiRoot, XsdtWithAnRsdtSignature) {
    Machine m({local_apic(0, 0, 1)});
    m.mem.place(kXsdt, table("RSDT", xsdt_body({kMadt})));
    m.rsdp_bytes = rsdp(2, uint32_t(kRsdt), kXsdt);
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RootBadSignature);
}

TEST(AcpiRoot, BadChecksum) {
    Machine m({local_apic(0, 0, 1)});
    m.mem.at(kRsdt)[20] ^= 1;
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RootBadChecksum);
}

TEST(AcpiRoot, LengthBelowTheHeader) {
    Machine m({local_apic(0, 0, 1)});
    put_u32(m.mem.at(kRsdt), 4, 35);
    m.resum(kRsdt);
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RootBadLength);
}

TEST(AcpiRoot, TruncatedHeader) {
    // Memory ends 20 bytes into the header.
    Machine m({local_apic(0, 0, 1)});
    Bytes t = m.mem.at(kRsdt);
    t.resize(20);
    m.mem.place(kRsdt, t);
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::TableUnreachable);
}

TEST(AcpiRoot, LengthBeyondTheBuffer) {
    Machine m({local_apic(0, 0, 1)});
    Bytes& t = m.mem.at(kRsdt);
    put_u32(t, 4, uint32_t(t.size() + 4));
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::TableUnreachable);
}

TEST(AcpiRoot, PartialEntry) {
    Machine m({local_apic(0, 0, 1)});
    Bytes body = rsdt_body({uint32_t(kMadt)});
    body.push_back(0);
    m.mem.place(kRsdt, table("RSDT", body));
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RootBadLength);
}

TEST(AcpiRoot, AbsurdLength) {
    Machine m({local_apic(0, 0, 1)});
    put_u32(m.mem.at(kRsdt), 4, 0x8000'0000u);
    m.resum(kRsdt);
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::RootBadLength);
}

// --- Bad MADTs ---

TEST(AcpiMadt, BadChecksum) {
    Machine m({local_apic(0, 0, 1)});
    m.mem.at(kMadt)[40] ^= 1;
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::MadtBadChecksum);
}

TEST(AcpiMadt, LengthBelowItsFixedPart) {
    Machine m({});
    m.mem.place(kMadt, table("APIC", Bytes(4, 0)));  // 40 bytes: no flags field
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::MadtBadLength);
}

TEST(AcpiMadt, TruncatedHeader) {
    Machine m({local_apic(0, 0, 1)});
    Bytes t = m.mem.at(kMadt);
    t.resize(30);
    m.mem.place(kMadt, t);
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::TableUnreachable);
}

TEST(AcpiMadt, LengthBeyondTheBuffer) {
    Machine m({local_apic(0, 0, 1)});
    Bytes& t = m.mem.at(kMadt);
    put_u32(t, 4, uint32_t(t.size() + 8));
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::TableUnreachable);
}

TEST(AcpiMadt, EntryOfLengthZero) {
    Machine m({local_apic(0, 0, 1), Bytes{0x7F, 0, 0, 0}});
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::MadtBadEntryLength);
}

TEST(AcpiMadt, EntryOfLengthOne) {
    Machine m({local_apic(0, 0, 1), Bytes{0x7F, 1, 0, 0}});
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::MadtBadEntryLength);
}

TEST(AcpiMadt, EntryTooShortForItsType) {
    Bytes short_lapic = {0, 6, 1, 1, 1, 0};
    Machine m({local_apic(0, 0, 1), short_lapic});
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::MadtBadEntryLength);
    Bytes short_x2 = local_x2apic(5, 1, 5);
    short_x2[1] = 12;
    short_x2.resize(12);
    Machine m2({local_apic(0, 0, 1), short_x2});
    EXPECT_EQ(m2.parse(info), AcpiError::MadtBadEntryLength);
    Bytes short_override = {5, 8, 0, 0, 0, 0, 0xE0, 0xFE};
    Machine m3({local_apic(0, 0, 1), short_override});
    EXPECT_EQ(m3.parse(info), AcpiError::MadtBadEntryLength);
}

TEST(AcpiMadt, EntryRunningPastTheEnd) {
    Bytes e = local_apic(1, 1, 1);
    e[1] = 12;  // 8 bytes there, 12 claimed, and it is the last entry
    Machine m({local_apic(0, 0, 1), e});
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::MadtEntryPastEnd);
}

TEST(AcpiMadt, OneByteLeftAtTheEnd) {
    Machine m({local_apic(0, 0, 1), Bytes{0}});
    MadtInfo info;
    EXPECT_EQ(m.parse(info), AcpiError::MadtEntryPastEnd);
}

TEST(AcpiMadt, EveryTruncationIsRefusedWithoutAnOutOfBoundsRead) {
    // Cut the MADT at every length (and sum it again): each result is an
    // error or a shorter list, never a read past the table (ASan watches).
    Bytes body = madt_body({local_apic(0, 0, 1), local_x2apic(0x100, 1, 2), lapic_override(0x1000),
                            local_apic(1, 1, 1)});
    for (size_t cut = 0; cut <= body.size(); ++cut) {
        Machine m({});
        m.mem.place(kMadt, table("APIC", Bytes(body.begin(), body.begin() + long(cut))));
        MadtInfo info;
        AcpiError e = m.parse(info);
        if (e == AcpiError::None) {
            EXPECT_LE(info.count, 3u);
        }
    }
}

TEST(AcpiErrors, EveryErrorHasAName) {
    for (int e = 0; e <= int(AcpiError::NoProcessors); ++e) {
        EXPECT_STRNE(acpi_error_name(AcpiError(e)), "unknown ACPI error") << e;
    }
}

}  // namespace
}  // namespace mk::acpi
