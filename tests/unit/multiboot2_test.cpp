#include "multiboot2.hpp"

#include <gtest/gtest.h>

#include "seed.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace mk {
namespace {

// --- Building boot information in test memory ---

void put_u32(std::vector<uint8_t>& out, size_t at, uint32_t v) {
    std::memcpy(out.data() + at, &v, sizeof v);
}

void append_u32(std::vector<uint8_t>& out, uint32_t v) {
    out.resize(out.size() + 4);
    put_u32(out, out.size() - 4, v);
}

void append_u64(std::vector<uint8_t>& out, uint64_t v) {
    out.resize(out.size() + 8);
    std::memcpy(out.data() + out.size() - 8, &v, sizeof v);
}

void pad8(std::vector<uint8_t>& out) {
    while (out.size() % 8 != 0) out.push_back(0);
}

std::vector<uint8_t> string_bytes(const std::string& s) {
    std::vector<uint8_t> v(s.begin(), s.end());
    v.push_back(0);
    return v;
}

// Lays out a multiboot2 information block the way a boot loader does; the
// end tag and total_size are added by bytes() unless turned off.
class InfoBuilder {
  public:
    // A tag {type, 8 + payload.size()} and its payload; size_override replaces
    // the size field (for malformed tags).
    InfoBuilder& tag(uint32_t type, const std::vector<uint8_t>& payload,
                     int64_t size_override = -1) {
        pad8(body_);
        size_t at = body_.size();
        append_u32(body_, type);
        append_u32(body_, 0);
        body_.insert(body_.end(), payload.begin(), payload.end());
        put_u32(body_, at + 4,
                size_override >= 0 ? uint32_t(size_override) : uint32_t(8 + payload.size()));
        return *this;
    }

    InfoBuilder& cmdline(const std::string& s) { return tag(1, string_bytes(s)); }
    InfoBuilder& loader_name(const std::string& s) { return tag(2, string_bytes(s)); }
    InfoBuilder& module(uint32_t start, uint32_t end, const std::string& s) {
        std::vector<uint8_t> p;
        append_u32(p, start);
        append_u32(p, end);
        std::vector<uint8_t> str = string_bytes(s);
        p.insert(p.end(), str.begin(), str.end());
        return tag(3, p);
    }
    InfoBuilder& memory_map(const std::vector<MemoryMapEntry>& entries, uint32_t entry_size = 24,
                            uint32_t version = 0) {
        std::vector<uint8_t> p;
        append_u32(p, entry_size);
        append_u32(p, version);
        for (const MemoryMapEntry& e : entries) {
            size_t at = p.size();
            append_u64(p, e.base);
            append_u64(p, e.length);
            append_u32(p, e.type);
            append_u32(p, 0);
            p.resize(at + entry_size, 0xee);  // larger entries: filler the parser must skip
        }
        return tag(6, p);
    }
    InfoBuilder& basic_meminfo() {
        std::vector<uint8_t> p;
        append_u32(p, 639);
        append_u32(p, 130048);
        return tag(4, p);
    }
    InfoBuilder& framebuffer() {
        std::vector<uint8_t> p;
        append_u64(p, 0xfd000000);
        append_u32(p, 4096);  // pitch
        append_u32(p, 1024);  // width
        append_u32(p, 768);   // height
        p.push_back(32);      // bpp
        p.push_back(1);       // RGB
        p.push_back(0);
        p.push_back(0);
        p.resize(p.size() + 6, 0);  // colour info
        return tag(8, p);
    }
    InfoBuilder& no_end_tag() {
        end_tag_ = false;
        return *this;
    }
    // Bytes appended after the end tag (still counted in total_size).
    InfoBuilder& trailing(const std::vector<uint8_t>& bytes) {
        trailing_ = bytes;
        return *this;
    }

    std::vector<uint8_t> bytes() const {
        std::vector<uint8_t> out;
        append_u32(out, 0);  // total_size, patched below
        append_u32(out, 0);  // reserved
        out.insert(out.end(), body_.begin(), body_.end());
        if (end_tag_) {
            pad8(out);
            append_u32(out, 0);
            append_u32(out, 8);
        }
        out.insert(out.end(), trailing_.begin(), trailing_.end());
        put_u32(out, 0, uint32_t(out.size()));
        return out;
    }

  private:
    std::vector<uint8_t> body_;
    bool end_tag_ = true;
    std::vector<uint8_t> trailing_;
};

const std::vector<MemoryMapEntry> kTypicalMap = {
    {0x0, 0x9fc00, kMemoryAvailable},      {0x9fc00, 0x400, kMemoryReserved},
    {0xf0000, 0x10000, kMemoryReserved},   {0x100000, 0x7ee0000, kMemoryAvailable},
    {0x7fe0000, 0x20000, kMemoryReserved}, {0xfffc0000, 0x40000, kMemoryReserved},
};

// Copies the bytes into a heap block of exactly their size (8-byte aligned by
// new[]), so ASan flags any read past the end; keeps it alive for BootInfo.
struct Parsed {
    std::unique_ptr<uint8_t[]> memory;
    size_t size = 0;
    Result<BootInfo> result = Error::BadState;
    const char* reason = nullptr;

    bool ok() const { return result.ok(); }
    BootInfo info() const { return result.value(); }
};

std::unique_ptr<Parsed> parse(const std::vector<uint8_t>& bytes, size_t max_size = SIZE_MAX) {
    auto p = std::make_unique<Parsed>();
    p->size = bytes.size();
    p->memory.reset(new uint8_t[bytes.size() == 0 ? 1 : bytes.size()]);
    if (!bytes.empty()) std::memcpy(p->memory.get(), bytes.data(), bytes.size());
    p->result = parse_boot_info(p->memory.get(), max_size == SIZE_MAX ? bytes.size() : max_size,
                                &p->reason);
    return p;
}

std::string as_string(const char* s, size_t n) {
    return std::string(s, n);
}

#define EXPECT_PARSE_ERROR(parsed, err, text)                                           \
    do {                                                                                \
        auto&& p_ = (parsed);                                                           \
        EXPECT_FALSE(p_->ok());                                                         \
        EXPECT_EQ(p_->result.error(), (err)) << error_name(p_->result.error());         \
        ASSERT_NE(p_->reason, nullptr);                                                 \
        EXPECT_NE(std::string(p_->reason).find(text), std::string::npos) << p_->reason; \
        EXPECT_EQ(std::string(p_->reason).rfind("multiboot2: ", 0), 0u) << p_->reason;  \
    } while (0)

// --- Magic ---

TEST(Multiboot2, Magic) {
    EXPECT_TRUE(is_multiboot2_magic(0x36d76289));
    EXPECT_FALSE(is_multiboot2_magic(0x2badb002));  // multiboot1
    EXPECT_FALSE(is_multiboot2_magic(0));
    EXPECT_FALSE(is_multiboot2_magic(0x36d76288));
}

// --- Well-formed information ---

TEST(Multiboot2, ParsesAWellFormedInfo) {
    auto p = parse(InfoBuilder()
                       .cmdline("/boot/kernel.elf donate=off ktest=all")
                       .loader_name("GRUB 2.06")
                       .basic_meminfo()
                       .module(0x200000, 0x201234, "init")
                       .module(0x202000, 0x202000, "")
                       .memory_map(kTypicalMap)
                       .framebuffer()
                       .tag(0x1234, {1, 2, 3})  // unknown, odd size: padding follows
                       .tag(21, {})             // load base address: not handled here
                       .bytes());
    ASSERT_TRUE(p->ok()) << p->reason;
    EXPECT_STREQ(p->reason, "");
    BootInfo b = p->info();
    EXPECT_EQ(b.info, p->memory.get());
    EXPECT_EQ(b.total_size, p->size);
    EXPECT_EQ(as_string(b.cmdline, b.cmdline_length), "/boot/kernel.elf donate=off ktest=all");
    EXPECT_EQ(b.cmdline[b.cmdline_length], '\0');
    EXPECT_EQ(as_string(b.loader_name, b.loader_name_length), "GRUB 2.06");
    ASSERT_EQ(b.module_count, 2u);
    EXPECT_EQ(b.modules[0].start, 0x200000u);
    EXPECT_EQ(b.modules[0].end, 0x201234u);
    EXPECT_STREQ(b.modules[0].string, "init");
    EXPECT_EQ(b.modules[0].string_length, 4u);
    EXPECT_EQ(b.modules[1].start, b.modules[1].end);
    EXPECT_STREQ(b.modules[1].string, "");
    ASSERT_EQ(b.memory_map.count(), kTypicalMap.size());
    EXPECT_EQ(b.memory_map.entry_size(), 24u);
    for (size_t i = 0; i < kTypicalMap.size(); ++i) {
        MemoryMapEntry e = b.memory_map.entry(i);
        EXPECT_EQ(e.base, kTypicalMap[i].base) << i;
        EXPECT_EQ(e.length, kTypicalMap[i].length) << i;
        EXPECT_EQ(e.type, kTypicalMap[i].type) << i;
    }
    EXPECT_TRUE(b.has_framebuffer);
    EXPECT_EQ(b.unknown_tags, 2u);
}

TEST(Multiboot2, MinimalInfoHasDefaults) {
    auto p = parse(InfoBuilder().memory_map({{0x100000, 0x100000, 1}}).bytes());
    ASSERT_TRUE(p->ok()) << p->reason;
    BootInfo b = p->info();
    EXPECT_STREQ(b.cmdline, "");
    EXPECT_EQ(b.cmdline_length, 0u);
    EXPECT_STREQ(b.loader_name, "");
    EXPECT_EQ(b.module_count, 0u);
    EXPECT_FALSE(b.has_framebuffer);
    EXPECT_EQ(b.unknown_tags, 0u);
    EXPECT_EQ(b.memory_map.count(), 1u);
}

TEST(Multiboot2, AcpiRsdpTags) {
    std::vector<uint8_t> old_rsdp(20, 0x11);
    std::vector<uint8_t> new_rsdp(36, 0x22);
    // Alone, the old copy is recorded.
    auto p = parse(InfoBuilder().tag(14, old_rsdp).memory_map(kTypicalMap).bytes());
    ASSERT_TRUE(p->ok()) << p->reason;
    BootInfo b = p->info();
    ASSERT_NE(b.acpi_rsdp, nullptr);
    EXPECT_EQ(b.acpi_rsdp_length, 20u);
    EXPECT_FALSE(b.acpi_rsdp_new);
    EXPECT_EQ(static_cast<const uint8_t*>(b.acpi_rsdp)[0], 0x11);
    EXPECT_EQ(static_cast<const uint8_t*>(b.acpi_rsdp) - p->memory.get(), 8 + 8);
    // With both, the new copy wins, in either order.
    for (bool new_first : {false, true}) {
        InfoBuilder ib;
        if (new_first) ib.tag(15, new_rsdp);
        ib.tag(14, old_rsdp);
        if (!new_first) ib.tag(15, new_rsdp);
        auto q = parse(ib.memory_map(kTypicalMap).bytes());
        ASSERT_TRUE(q->ok()) << q->reason;
        BootInfo c = q->info();
        EXPECT_TRUE(c.acpi_rsdp_new) << new_first;
        EXPECT_EQ(c.acpi_rsdp_length, 36u) << new_first;
        EXPECT_EQ(static_cast<const uint8_t*>(c.acpi_rsdp)[0], 0x22) << new_first;
    }
    // Absent: null.
    auto r = parse(InfoBuilder().memory_map(kTypicalMap).bytes());
    ASSERT_TRUE(r->ok()) << r->reason;
    EXPECT_EQ(r->info().acpi_rsdp, nullptr);
    EXPECT_EQ(r->info().acpi_rsdp_length, 0u);
    EXPECT_EQ(r->info().unknown_tags, 0u);
}

TEST(Multiboot2, DuplicateAcpiRsdpTagIsRefused) {
    std::vector<uint8_t> rsdp(20, 0);
    EXPECT_PARSE_ERROR(
        parse(InfoBuilder().tag(14, rsdp).tag(14, rsdp).memory_map(kTypicalMap).bytes()),
        Error::InvalidArgument, "duplicate ACPI RSDP tag");
    EXPECT_PARSE_ERROR(
        parse(InfoBuilder().tag(15, rsdp).tag(15, rsdp).memory_map(kTypicalMap).bytes()),
        Error::InvalidArgument, "duplicate ACPI RSDP tag");
}

TEST(Multiboot2, EmptyMemoryMapIsAccepted) {
    auto p = parse(InfoBuilder().memory_map({}).bytes());
    ASSERT_TRUE(p->ok()) << p->reason;
    EXPECT_EQ(p->info().memory_map.count(), 0u);
}

TEST(Multiboot2, LargerMemoryMapEntriesAreSteppedOver) {
    auto p = parse(InfoBuilder().memory_map(kTypicalMap, 40).bytes());
    ASSERT_TRUE(p->ok()) << p->reason;
    BootInfo b = p->info();
    EXPECT_EQ(b.memory_map.entry_size(), 40u);
    ASSERT_EQ(b.memory_map.count(), kTypicalMap.size());
    EXPECT_EQ(b.memory_map.entry(3).base, 0x100000u);
    EXPECT_EQ(b.memory_map.entry(3).length, 0x7ee0000u);
    EXPECT_EQ(b.memory_map.entry(5).type, kMemoryReserved);
}

TEST(Multiboot2, MemoryMapEntryEndingJustBelow2To64IsAccepted) {
    auto p = parse(InfoBuilder().memory_map({{0xffffffff00000000, 0xffffffff, 2}}).bytes());
    EXPECT_TRUE(p->ok()) << p->reason;
}

TEST(Multiboot2, SixteenModulesFit) {
    InfoBuilder b;
    for (uint32_t i = 0; i < 16; ++i)
        b.module(i * 0x1000, i * 0x1000 + 0x800, "m" + std::to_string(i));
    auto p = parse(b.memory_map(kTypicalMap).bytes());
    ASSERT_TRUE(p->ok()) << p->reason;
    EXPECT_EQ(p->info().module_count, 16u);
    EXPECT_STREQ(p->info().modules[15].string, "m15");
}

TEST(Multiboot2, BytesAfterTheEndTagAreIgnored) {
    auto p = parse(InfoBuilder()
                       .memory_map(kTypicalMap)
                       .trailing({0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0})
                       .bytes());
    EXPECT_TRUE(p->ok()) << p->reason;
}

TEST(Multiboot2, MaxSizeLargerThanTotalSizeIsFine) {
    std::vector<uint8_t> bytes = InfoBuilder().memory_map(kTypicalMap).bytes();
    size_t total = bytes.size();
    bytes.resize(total + 64, 0xcc);  // readable, but not part of the info
    auto p = parse(bytes);
    ASSERT_TRUE(p->ok()) << p->reason;
    EXPECT_EQ(p->info().total_size, total);
}

TEST(Multiboot2, ReasonIsOptional) {
    std::vector<uint8_t> bytes = InfoBuilder().cmdline("x").bytes();
    std::unique_ptr<uint8_t[]> mem(new uint8_t[bytes.size()]);
    std::memcpy(mem.get(), bytes.data(), bytes.size());
    Result<BootInfo> r = parse_boot_info(mem.get(), bytes.size());
    EXPECT_EQ(r.error(), Error::InvalidArgument);
}

// --- Malformed information: each gets its own error and reason ---

TEST(Multiboot2Malformed, NullPointer) {
    const char* reason = nullptr;
    Result<BootInfo> r = parse_boot_info(nullptr, 4096, &reason);
    EXPECT_EQ(r.error(), Error::InvalidArgument);
    EXPECT_STREQ(reason, "multiboot2: boot information pointer is null");
}

TEST(Multiboot2Malformed, MisalignedPointer) {
    std::vector<uint8_t> bytes = InfoBuilder().memory_map(kTypicalMap).bytes();
    std::unique_ptr<uint8_t[]> mem(new uint8_t[bytes.size() + 4]);
    std::memcpy(mem.get() + 4, bytes.data(), bytes.size());
    const char* reason = nullptr;
    Result<BootInfo> r = parse_boot_info(mem.get() + 4, bytes.size(), &reason);
    EXPECT_EQ(r.error(), Error::InvalidArgument);
    EXPECT_STREQ(reason, "multiboot2: boot information is not 8-byte aligned");
}

TEST(Multiboot2Malformed, ReadableSizeTooSmall) {
    std::vector<uint8_t> bytes = InfoBuilder().memory_map(kTypicalMap).bytes();
    EXPECT_PARSE_ERROR(parse(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 8)),
                       Error::InvalidArgument, "readable size below");
    EXPECT_PARSE_ERROR(parse(bytes, 0), Error::InvalidArgument, "readable size below");
}

TEST(Multiboot2Malformed, TotalSizeBelowSixteen) {
    std::vector<uint8_t> bytes = InfoBuilder().memory_map(kTypicalMap).bytes();
    for (uint32_t total : {0u, 8u, 15u}) {
        put_u32(bytes, 0, total);
        EXPECT_PARSE_ERROR(parse(bytes), Error::InvalidArgument, "total_size below 16");
    }
}

TEST(Multiboot2Malformed, TotalSizeBeyondMaxSize) {
    std::vector<uint8_t> bytes = InfoBuilder().memory_map(kTypicalMap).bytes();
    EXPECT_PARSE_ERROR(parse(bytes, bytes.size() - 8), Error::InvalidArgument,
                       "total_size exceeds the readable size");
    put_u32(bytes, 0, 0xffffffff);
    EXPECT_PARSE_ERROR(parse(bytes), Error::InvalidArgument, "total_size exceeds");
}

TEST(Multiboot2Malformed, TagSizeBelowEight) {
    for (uint32_t size : {0u, 4u, 7u}) {
        auto p = parse(InfoBuilder().memory_map(kTypicalMap).tag(77, {}, size).bytes());
        EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "tag size below 8");
    }
}

TEST(Multiboot2Malformed, TagExtendsPastTotalSize) {
    auto p = parse(InfoBuilder().memory_map(kTypicalMap).tag(77, {1, 2, 3, 4}, 4096).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "tag extends past total_size");
    auto q = parse(InfoBuilder().memory_map(kTypicalMap).tag(77, {1, 2, 3, 4}, 0xffffffff).bytes());
    EXPECT_PARSE_ERROR(q, Error::InvalidArgument, "tag extends past total_size");
}

TEST(Multiboot2Malformed, MissingEndTag) {
    auto p = parse(InfoBuilder().memory_map(kTypicalMap).no_end_tag().bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "no end tag");
    // Only a header: no room for any tag.
    std::vector<uint8_t> header_only(16, 0);
    put_u32(header_only, 0, 16);
    put_u32(header_only, 8, 6);  // a tag that would need more room
    put_u32(header_only, 12, 24);
    EXPECT_PARSE_ERROR(parse(header_only), Error::InvalidArgument, "tag extends past");
}

TEST(Multiboot2Malformed, LastTagPaddingRunsPastTotalSize) {
    // A 9-byte tag ending exactly at total_size: its padding (and any end tag) is missing.
    std::vector<uint8_t> bytes =
        InfoBuilder().memory_map(kTypicalMap).tag(77, {1}).no_end_tag().bytes();
    EXPECT_EQ(bytes.size() % 8, 1u);
    EXPECT_PARSE_ERROR(parse(bytes), Error::InvalidArgument, "no end tag");
}

TEST(Multiboot2Malformed, EndTagWithWrongSize) {
    std::vector<uint8_t> bytes = InfoBuilder().memory_map(kTypicalMap).no_end_tag().bytes();
    append_u32(bytes, 0);
    append_u32(bytes, 16);
    append_u64(bytes, 0);
    put_u32(bytes, 0, uint32_t(bytes.size()));
    EXPECT_PARSE_ERROR(parse(bytes), Error::InvalidArgument, "end tag size is not 8");
}

TEST(Multiboot2Malformed, NoMemoryMap) {
    auto p = parse(InfoBuilder().cmdline("ktest").loader_name("GRUB").bytes());
    ASSERT_FALSE(p->ok());
    EXPECT_EQ(p->result.error(), Error::InvalidArgument);
    EXPECT_STREQ(p->reason, "multiboot2: no memory map tag");
}

TEST(Multiboot2Malformed, DuplicateMemoryMap) {
    auto p = parse(InfoBuilder().memory_map(kTypicalMap).memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "duplicate memory map tag");
}

TEST(Multiboot2Malformed, MemoryMapTagTooSmall) {
    auto p = parse(InfoBuilder().tag(6, {24, 0, 0, 0}).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "memory map tag too small");
}

TEST(Multiboot2Malformed, MemoryMapEntrySize) {
    for (uint32_t entry_size : {0u, 8u, 16u, 20u, 28u, 30u}) {
        std::vector<uint8_t> p;
        append_u32(p, entry_size);
        append_u32(p, 0);
        p.resize(p.size() + 2 * 24, 0);
        auto parsed = parse(InfoBuilder().tag(6, p).bytes());
        EXPECT_PARSE_ERROR(parsed, Error::InvalidArgument,
                           "entry_size below 24 or not a multiple of 8");
    }
}

TEST(Multiboot2Malformed, MemoryMapEntryVersion) {
    auto p = parse(InfoBuilder().memory_map(kTypicalMap, 24, 1).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "unsupported memory map entry_version");
}

TEST(Multiboot2Malformed, MemoryMapPartialEntry) {
    std::vector<uint8_t> p;
    append_u32(p, 24);
    append_u32(p, 0);
    p.resize(p.size() + 24 + 8, 0);
    EXPECT_PARSE_ERROR(parse(InfoBuilder().tag(6, p).bytes()), Error::InvalidArgument,
                       "not a whole number of entries");
}

TEST(Multiboot2Malformed, MemoryMapEntryWrapsAround) {
    auto p = parse(
        InfoBuilder().memory_map({{0x100000, 0x1000, 1}, {0xfffffffffffff000, 0x1000, 2}}).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "wraps past 2^64");
    auto q = parse(InfoBuilder().memory_map({{1, UINT64_MAX, 1}}).bytes());
    EXPECT_PARSE_ERROR(q, Error::InvalidArgument, "wraps past 2^64");
}

TEST(Multiboot2Malformed, CommandLineNotTerminated) {
    auto p = parse(InfoBuilder().tag(1, {'a', 'b', 'c'}).memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "command line not NUL-terminated");
    // An empty tag has no room for even the NUL.
    auto q = parse(InfoBuilder().tag(1, {}).memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(q, Error::InvalidArgument, "command line not NUL-terminated");
    // The NUL sits just past the size the tag claims: still rejected.
    auto r = parse(InfoBuilder().tag(1, {'a', 'b', 0}, 8 + 2).memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(r, Error::InvalidArgument, "command line not NUL-terminated");
}

TEST(Multiboot2Malformed, CommandLineWithEarlyNulIsCutThere) {
    auto p = parse(InfoBuilder().tag(1, {'a', 0, 'b', 0}).memory_map(kTypicalMap).bytes());
    ASSERT_TRUE(p->ok()) << p->reason;
    EXPECT_EQ(p->info().cmdline_length, 1u);
    EXPECT_STREQ(p->info().cmdline, "a");
}

TEST(Multiboot2Malformed, DuplicateCommandLine) {
    auto p = parse(InfoBuilder().cmdline("a").cmdline("b").memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "duplicate command line tag");
}

TEST(Multiboot2Malformed, LoaderNameNotTerminated) {
    auto p = parse(InfoBuilder().tag(2, {'G', 'R', 'U', 'B'}).memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "boot loader name not NUL-terminated");
    auto q = parse(InfoBuilder().loader_name("a").loader_name("b").memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(q, Error::InvalidArgument, "duplicate boot loader name tag");
}

TEST(Multiboot2Malformed, ModuleStartAboveEnd) {
    auto p = parse(InfoBuilder().module(0x3000, 0x2fff, "m").memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "module start above its end");
}

TEST(Multiboot2Malformed, ModuleTagTooSmall) {
    auto p = parse(InfoBuilder().tag(3, {0, 0, 0, 0}).memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "module tag too small");
}

TEST(Multiboot2Malformed, ModuleStringNotTerminated) {
    std::vector<uint8_t> payload;
    append_u32(payload, 0x1000);
    append_u32(payload, 0x2000);
    auto p = parse(InfoBuilder().tag(3, payload).memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(p, Error::InvalidArgument, "module string not NUL-terminated");
    payload.push_back('x');
    auto q = parse(InfoBuilder().tag(3, payload).memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(q, Error::InvalidArgument, "module string not NUL-terminated");
}

TEST(Multiboot2Malformed, TooManyModules) {
    InfoBuilder b;
    for (uint32_t i = 0; i < BootInfo::kMaxModules + 1; ++i) b.module(0, 0, "m");
    auto p = parse(b.memory_map(kTypicalMap).bytes());
    EXPECT_PARSE_ERROR(p, Error::TooLarge, "more than 32 modules");
}

// --- The kernel command line ---

bool has(const char* line, const char* word) {
    return cmdline_has(line, std::strlen(line), word);
}

// The value as a string, or "<none>".
std::string value(const char* line, const char* key) {
    size_t len = 12345;
    const char* v = cmdline_value(line, std::strlen(line), key, &len);
    if (v == nullptr) {
        EXPECT_EQ(len, 12345u) << "length written although nothing found";
        return "<none>";
    }
    return std::string(v, len);
}

TEST(KernelCmdline, FlagsAndValues) {
    const char* line = "donate=off ktest=all verbose";
    EXPECT_TRUE(has(line, "verbose"));
    EXPECT_TRUE(has(line, "donate=off"));
    EXPECT_TRUE(has(line, "ktest=all"));
    EXPECT_FALSE(has(line, "ktest"));
    EXPECT_FALSE(has(line, "donate"));
    EXPECT_FALSE(has(line, "verb"));
    EXPECT_FALSE(has(line, "verbose2"));
    EXPECT_EQ(value(line, "donate"), "off");
    EXPECT_EQ(value(line, "ktest"), "all");
    EXPECT_EQ(value(line, "verbose"), "<none>");
    EXPECT_EQ(value(line, "kt"), "<none>");
    EXPECT_EQ(value(line, "ktest=all"), "<none>");
}

TEST(KernelCmdline, KernelPathAsFirstWordIsSkipped) {
    EXPECT_FALSE(has("/boot/kernel.elf ktest", "/boot/kernel.elf"));
    EXPECT_TRUE(has("/boot/kernel.elf ktest", "ktest"));
    EXPECT_FALSE(has("(hd0,msdos1)/boot/kernel donate=off", "(hd0,msdos1)/boot/kernel"));
    EXPECT_EQ(value("(hd0,msdos1)/boot/kernel donate=off", "donate"), "off");
    EXPECT_EQ(value("/boot/kernel", "donate"), "<none>");
    // Without a path the first word counts.
    EXPECT_TRUE(has("ktest donate=off", "ktest"));
    EXPECT_EQ(value("donate=off", "donate"), "off");
    // Only the first word can be the path.
    EXPECT_TRUE(has("ktest /x", "/x"));
    EXPECT_TRUE(has("  /boot/kernel /boot/kernel", "/boot/kernel"));
}

TEST(KernelCmdline, Separators) {
    const char* line = "  \tdonate=off \t  ktest=all\t\t verbose  \n";
    EXPECT_TRUE(has(line, "verbose"));
    EXPECT_EQ(value(line, "donate"), "off");
    EXPECT_EQ(value(line, "ktest"), "all");
    EXPECT_FALSE(has("", "ktest"));
    EXPECT_FALSE(has("    ", "ktest"));
    EXPECT_EQ(value("   ", "ktest"), "<none>");
}

TEST(KernelCmdline, ValueEdgeCases) {
    EXPECT_EQ(value("ktest= x", "ktest"), "");          // present but empty
    EXPECT_EQ(value("ktest=a ktest=b", "ktest"), "b");  // the last one wins
    EXPECT_EQ(value("a=b=c", "a"), "b=c");
    EXPECT_EQ(value("donatex=1", "donate"), "<none>");
    EXPECT_EQ(value("xdonate=1", "donate"), "<none>");
    EXPECT_EQ(value("=1", ""), "<none>");
    size_t len = 0;
    EXPECT_NE(cmdline_value("k=v", 3, "k", nullptr), nullptr);  // the length is optional
    EXPECT_EQ(cmdline_value("k=v", 3, nullptr, &len), nullptr);
    EXPECT_FALSE(cmdline_has("k", 1, nullptr));
    EXPECT_FALSE(cmdline_has("k", 1, ""));
    EXPECT_FALSE(cmdline_has(nullptr, 0, "k"));
    EXPECT_EQ(cmdline_value(nullptr, 0, "k", &len), nullptr);
}

TEST(KernelCmdline, LengthBoundsTheLine) {
    const char* line = "ktest=all donate=off";
    EXPECT_FALSE(cmdline_has(line, 9, "donate=off"));
    size_t len = 0;
    const char* v = cmdline_value(line, 8, "ktest", &len);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(std::string(v, len), "al");
    // A NUL ends the line even if the length says more.
    EXPECT_FALSE(cmdline_has("a\0b", 3, "b"));
}

TEST(KernelCmdline, FromBootInfo) {
    auto p = parse(
        InfoBuilder().cmdline("/boot/mk donate=off ktest=all").memory_map(kTypicalMap).bytes());
    ASSERT_TRUE(p->ok()) << p->reason;
    BootInfo b = p->info();
    EXPECT_TRUE(cmdline_has(b, "ktest=all"));
    EXPECT_FALSE(cmdline_has(b, "/boot/mk"));
    size_t len = 0;
    const char* v = cmdline_value(b, "donate", &len);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(std::string(v, len), "off");
    // No command line tag: an empty line.
    BootInfo empty;
    EXPECT_FALSE(cmdline_has(empty, "ktest"));
    EXPECT_EQ(cmdline_value(empty, "donate", &len), nullptr);
}

// --- Randomized: valid infos, then mutated ones ---

std::string random_word(std::mt19937_64& rng) {
    static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789=/_-.";
    std::string w;
    size_t n = 1 + rng() % 10;
    for (size_t i = 0; i < n; ++i) w += kChars[rng() % (sizeof kChars - 1)];
    return w;
}

struct Expected {
    std::string cmdline;
    size_t modules = 0;
    size_t memory_entries = 0;
};

std::vector<uint8_t> random_valid_info(std::mt19937_64& rng, Expected* expected) {
    InfoBuilder b;
    std::vector<int> order = {0, 1, 2, 3, 4, 5, 6, 7};
    std::shuffle(order.begin(), order.end(), rng);
    for (int what : order) {
        switch (what) {
            case 0:
                if (rng() % 4 != 0) {
                    std::string line;
                    for (size_t i = rng() % 6; i > 0; --i) line += random_word(rng) + " ";
                    b.cmdline(line);
                    expected->cmdline = line;
                }
                break;
            case 1:
                if (rng() % 2 != 0) b.loader_name(random_word(rng));
                break;
            case 2:
                for (size_t i = rng() % 5; i > 0; --i) {
                    uint32_t start = uint32_t(rng());
                    uint32_t end = start + uint32_t(rng() % (UINT32_MAX - start + 1ull));
                    b.module(start, end, random_word(rng));
                    ++expected->modules;
                }
                break;
            case 3: {
                std::vector<MemoryMapEntry> map;
                for (size_t i = rng() % 12; i > 0; --i) {
                    uint64_t base = rng() >> (rng() % 64);
                    uint64_t len = rng() >> (rng() % 64);
                    if (len > UINT64_MAX - base) len = UINT64_MAX - base;
                    map.push_back({base, len, uint32_t(1 + rng() % 5)});
                }
                b.memory_map(map, 24 + 8 * uint32_t(rng() % 3));
                expected->memory_entries = map.size();
                break;
            }
            case 4:
                if (rng() % 2 != 0) b.framebuffer();
                break;
            case 5:
                if (rng() % 2 != 0) b.basic_meminfo();
                break;
            default:
                for (size_t i = rng() % 3; i > 0; --i) {
                    std::vector<uint8_t> payload(rng() % 20);
                    for (uint8_t& c : payload) c = uint8_t(rng());
                    // Types the parser does not know (14 and 15, the ACPI
                    // RSDP copies, it does, and refuses twice).
                    uint32_t type = 9 + uint32_t(rng() % 100);
                    if (type == 14 || type == 15) type += 100;
                    b.tag(type, payload);
                }
                break;
        }
    }
    return b.bytes();
}

// What any successful parse must satisfy, whatever the input was.
void check_consistent(const Parsed& p) {
    BootInfo b = p.info();
    const uint8_t* lo = p.memory.get();
    const uint8_t* hi = lo + p.size;
    auto inside = [&](const void* ptr, size_t n) {
        auto* c = static_cast<const uint8_t*>(ptr);
        return c >= lo && c <= hi && n <= size_t(hi - c);
    };
    ASSERT_GE(b.total_size, 16u);
    ASSERT_LE(b.total_size, p.size);
    if (b.cmdline_length > 0) {
        ASSERT_TRUE(inside(b.cmdline, b.cmdline_length + 1));
        ASSERT_EQ(b.cmdline[b.cmdline_length], '\0');
        ASSERT_EQ(std::strlen(b.cmdline), b.cmdline_length);
    }
    if (b.loader_name_length > 0) {
        ASSERT_TRUE(inside(b.loader_name, b.loader_name_length + 1));
        ASSERT_EQ(b.loader_name[b.loader_name_length], '\0');
    }
    ASSERT_LE(b.module_count, BootInfo::kMaxModules);
    for (size_t i = 0; i < b.module_count; ++i) {
        const BootModule& m = b.modules[i];
        ASSERT_LE(m.start, m.end);
        ASSERT_TRUE(inside(m.string, m.string_length + 1));
        ASSERT_EQ(m.string[m.string_length], '\0');
    }
    ASSERT_GE(b.memory_map.entry_size(), 24u);
    ASSERT_EQ(b.memory_map.entry_size() % 8, 0u);
    for (size_t i = 0; i < b.memory_map.count(); ++i) {
        MemoryMapEntry e = b.memory_map.entry(i);  // ASan checks the read
        ASSERT_LE(e.length, UINT64_MAX - e.base);
    }
    // The command-line helpers must stay inside the line too.
    (void)cmdline_has(b, "ktest");
    size_t len = 0;
    if (const char* v = cmdline_value(b, "a", &len)) {
        ASSERT_TRUE(inside(v, len));
    }
}

TEST(Multiboot2Fuzz, RandomValidInfosParse) {
    const uint64_t seed = mk::testing::test_seed("Multiboot2Fuzz.RandomValidInfosParse");
    std::mt19937_64 rng(seed);
    for (int iter = 0; iter < 5000; ++iter) {
        Expected ex;
        std::vector<uint8_t> bytes = random_valid_info(rng, &ex);
        auto p = parse(bytes);
        ASSERT_TRUE(p->ok()) << "iteration " << iter << ": " << p->reason;
        BootInfo b = p->info();
        ASSERT_EQ(as_string(b.cmdline, b.cmdline_length), ex.cmdline);
        ASSERT_EQ(b.module_count, ex.modules);
        ASSERT_EQ(b.memory_map.count(), ex.memory_entries);
        check_consistent(*p);
    }
}

TEST(Multiboot2Fuzz, MutatedInfosNeverReadOutOfBounds) {
    const uint64_t seed = mk::testing::test_seed("Multiboot2Fuzz.MutatedInfosNeverReadOutOfBounds");
    std::mt19937_64 rng(seed);
    const uint32_t interesting[] = {0,  1,  6,  7,  8,          9,          15,        16,
                                    17, 23, 24, 25, 0x7fffffff, 0xfffffff8, 0xffffffff};
    size_t accepted = 0;
    std::vector<uint8_t> bytes;
    for (int iter = 0; iter < 100000; ++iter) {
        if (iter % 16 == 0) {
            Expected ex;
            bytes = random_valid_info(rng, &ex);
        }
        std::vector<uint8_t> m = bytes;
        size_t mutations = 1 + rng() % 4;
        for (size_t k = 0; k < mutations && !m.empty(); ++k) {
            switch (rng() % 6) {
                case 0:  // flip random bits
                    m[rng() % m.size()] ^= uint8_t(1u << (rng() % 8));
                    break;
                case 1:  // a random byte
                    m[rng() % m.size()] = uint8_t(rng());
                    break;
                case 2:  // an interesting u32 at an aligned spot (sizes, types, counts)
                    if (m.size() >= 4) {
                        size_t at = (rng() % (m.size() / 4)) * 4;
                        put_u32(m, at,
                                interesting[rng() % (sizeof interesting / sizeof *interesting)]);
                    }
                    break;
                case 3:  // truncate the buffer, keep total_size
                    m.resize(rng() % (m.size() + 1));
                    break;
                case 4:  // truncate the buffer and fix total_size to match
                    m.resize(rng() % (m.size() + 1));
                    if (m.size() >= 4) put_u32(m, 0, uint32_t(m.size()));
                    break;
                default:  // grow total_size over what is readable
                    if (m.size() >= 4) put_u32(m, 0, uint32_t(m.size() + rng() % 64));
                    break;
            }
        }
        auto p = parse(m);
        if (p->ok()) {
            ++accepted;
            check_consistent(*p);
            if (::testing::Test::HasFatalFailure()) {
                FAIL() << "iteration " << iter << " accepted an inconsistent info";
            }
        } else {
            ASSERT_NE(p->result.error(), Error::None);
            ASSERT_NE(p->reason, nullptr);
            ASSERT_EQ(std::string(p->reason).rfind("multiboot2: ", 0), 0u) << p->reason;
        }
    }
    std::printf("  %zu of 100000 mutated infos accepted\n", accepted);
}

}  // namespace
}  // namespace mk
