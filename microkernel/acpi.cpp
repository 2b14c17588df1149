#include "acpi.hpp"

namespace mk::acpi {

namespace {

constexpr size_t kRsdpV1Size = 20;     // signature, checksum, OEM id, revision, RSDT address
constexpr size_t kRsdpV2Size = 36;     // + length, XSDT address, extended checksum, reserved
constexpr size_t kHeaderSize = 36;     // every system description table's header
constexpr size_t kMadtFixedSize = 44;  // header, u32 LAPIC address, u32 flags
// No root table or MADT comes near this; a larger length is a corrupt header.
constexpr uint32_t kMaxTableLength = 1u << 20;

constexpr uint8_t kEntryLocalApic = 0;
constexpr uint8_t kEntryLapicOverride = 5;
constexpr uint8_t kEntryLocalX2Apic = 9;
constexpr size_t kLocalApicSize = 8;
constexpr size_t kLapicOverrideSize = 12;
constexpr size_t kLocalX2ApicSize = 16;
constexpr uint32_t kFlagEnabled = 1u << 0;
constexpr uint32_t kFlagOnlineCapable = 1u << 1;  // defined from MADT revision 5 on
constexpr uint8_t kOnlineCapableRevision = 5;

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

uint64_t load_u64(const uint8_t* p) {
    uint64_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

bool same_bytes(const uint8_t* p, const char* s, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (p[i] != uint8_t(s[i])) return false;
    }
    return true;
}

bool sums_to_zero(const uint8_t* p, size_t n) {
    uint8_t sum = 0;
    for (size_t i = 0; i < n; ++i) sum = uint8_t(sum + p[i]);
    return sum == 0;
}

struct TableErrors {
    AcpiError bad_signature;
    AcpiError bad_length;
    AcpiError bad_checksum;
};

// A whole table at `phys` with signature `sig` and a length of at least
// `min_length`, its checksum verified. *table points at its bytes.
AcpiError read_table(PhysMemory memory, uint64_t phys, const char* sig, size_t min_length,
                     TableErrors errors, const uint8_t** table, uint32_t* length) {
    const auto* header = static_cast<const uint8_t*>(memory.map(memory.ctx, phys, kHeaderSize));
    if (header == nullptr) return AcpiError::TableUnreachable;
    if (!same_bytes(header, sig, 4)) return errors.bad_signature;
    uint32_t n = load_u32(header + 4);
    if (n < min_length || n > kMaxTableLength) return errors.bad_length;
    const auto* whole = static_cast<const uint8_t*>(memory.map(memory.ctx, phys, n));
    if (whole == nullptr) return AcpiError::TableUnreachable;
    // The same bytes once more, as the mapping may differ: what is checked
    // is what gets used.
    if (!same_bytes(whole, sig, 4) || load_u32(whole + 4) != n) return errors.bad_signature;
    if (!sums_to_zero(whole, n)) return errors.bad_checksum;
    *table = whole;
    *length = n;
    return AcpiError::None;
}

// Calls f(type, entry, entry_length) for each MADT entry, after checking that
// it lies inside the table and is long enough for its type. Stops at the
// first malformed entry with its error.
template <typename F>
AcpiError for_each_entry(const uint8_t* madt, uint32_t length, F f) {
    size_t offset = kMadtFixedSize;
    while (offset < length) {
        if (length - offset < 2) return AcpiError::MadtEntryPastEnd;
        const uint8_t type = madt[offset];
        const uint8_t n = madt[offset + 1];
        if (n < 2) return AcpiError::MadtBadEntryLength;
        if (n > length - offset) return AcpiError::MadtEntryPastEnd;
        size_t need = 2;
        if (type == kEntryLocalApic) need = kLocalApicSize;
        if (type == kEntryLapicOverride) need = kLapicOverrideSize;
        if (type == kEntryLocalX2Apic) need = kLocalX2ApicSize;
        if (n < need) return AcpiError::MadtBadEntryLength;
        f(type, madt + offset);
        offset += n;
    }
    return AcpiError::None;
}

// The processor an entry describes; false for other entries and for
// processors neither enabled nor online capable.
bool processor_of(uint8_t type, const uint8_t* e, uint8_t revision, Processor* p) {
    uint32_t flags;
    if (type == kEntryLocalApic) {
        p->acpi_uid = e[2];
        p->apic_id = e[3];
        flags = load_u32(e + 4);
        p->x2apic_entry = false;
    } else if (type == kEntryLocalX2Apic) {
        p->apic_id = load_u32(e + 4);
        flags = load_u32(e + 8);
        p->acpi_uid = load_u32(e + 12);
        p->x2apic_entry = true;
    } else {
        return false;
    }
    p->enabled = (flags & kFlagEnabled) != 0;
    // Before revision 5 the bit is reserved: whatever it holds means nothing.
    p->online_capable =
        !p->enabled && revision >= kOnlineCapableRevision && (flags & kFlagOnlineCapable) != 0;
    return p->enabled || p->online_capable;
}

AcpiError parse_madt(const uint8_t* madt, uint32_t length, MadtInfo& info) {
    info.madt_revision = madt[8];
    info.lapic_address = load_u32(madt + 36);
    AcpiError e = for_each_entry(madt, length, [&](uint8_t type, const uint8_t* entry) {
        if (type == kEntryLapicOverride) {
            info.lapic_address = load_u64(entry + 4);
            info.lapic_override = true;
        }
    });
    if (e != AcpiError::None) return e;
    // Enabled processors first, then online-capable ones, so that the cap
    // never leaves out a processor that could run now for one that cannot.
    for (int pass = 0; pass < 2; ++pass) {
        const bool want_enabled = pass == 0;
        (void)for_each_entry(madt, length, [&](uint8_t type, const uint8_t* entry) {
            Processor p;
            if (!processor_of(type, entry, info.madt_revision, &p)) return;
            if (p.enabled != want_enabled) return;
            for (size_t i = 0; i < info.count; ++i) {
                if (info.processors[i].apic_id == p.apic_id) {
                    ++info.duplicates;
                    return;
                }
            }
            if (info.count == MadtInfo::kMaxProcessors) {
                ++info.ignored;
                return;
            }
            info.processors[info.count++] = p;
            if (p.enabled) ++info.enabled;
        });
    }
    if (info.enabled == 0) return AcpiError::NoProcessors;
    return AcpiError::None;
}

}  // namespace

const char* acpi_error_name(AcpiError e) {
    switch (e) {
        case AcpiError::None:
            return "no error";
        case AcpiError::NoRsdp:
            return "the boot loader passed no RSDP";
        case AcpiError::RsdpTooShort:
            return "RSDP shorter than its revision needs";
        case AcpiError::RsdpBadSignature:
            return "RSDP signature is not 'RSD PTR '";
        case AcpiError::RsdpBadChecksum:
            return "RSDP checksum does not match";
        case AcpiError::RsdpBadExtendedChecksum:
            return "RSDP extended checksum does not match";
        case AcpiError::TableUnreachable:
            return "a table lies outside the memory the kernel can read";
        case AcpiError::RootBadSignature:
            return "RSDT/XSDT signature does not match";
        case AcpiError::RootBadLength:
            return "RSDT/XSDT length is bad";
        case AcpiError::RootBadChecksum:
            return "RSDT/XSDT checksum does not match";
        case AcpiError::NoMadt:
            return "no MADT (APIC table)";
        case AcpiError::MadtBadLength:
            return "MADT length is bad";
        case AcpiError::MadtBadChecksum:
            return "MADT checksum does not match";
        case AcpiError::MadtBadEntryLength:
            return "MADT entry too short";
        case AcpiError::MadtEntryPastEnd:
            return "MADT entry runs past the end of the table";
        case AcpiError::NoProcessors:
            return "MADT lists no enabled processor";
    }
    return "unknown ACPI error";
}

AcpiError find_processors(const void* rsdp_bytes, size_t length, PhysMemory memory, MadtInfo& out) {
    if (rsdp_bytes == nullptr) return AcpiError::NoRsdp;
    if (length < kRsdpV1Size) return AcpiError::RsdpTooShort;
    const auto* rsdp = static_cast<const uint8_t*>(rsdp_bytes);
    if (!same_bytes(rsdp, "RSD PTR ", 8)) return AcpiError::RsdpBadSignature;
    if (!sums_to_zero(rsdp, kRsdpV1Size)) return AcpiError::RsdpBadChecksum;
    const uint8_t revision = rsdp[15];

    // Revision 2 adds the XSDT. A copy of only the first 20 bytes (the
    // multiboot2 "old RSDP" tag) is used as revision 0: through the RSDT.
    bool use_xsdt = false;
    if (revision >= 2 && length >= kRsdpV2Size) {
        uint32_t full = load_u32(rsdp + 20);
        if (full < kRsdpV2Size || full > length) return AcpiError::RsdpTooShort;
        if (!sums_to_zero(rsdp, full)) return AcpiError::RsdpBadExtendedChecksum;
        use_xsdt = load_u64(rsdp + 24) != 0;
    }

    const uint64_t root_phys = use_xsdt ? load_u64(rsdp + 24) : load_u32(rsdp + 16);
    const size_t entry_size = use_xsdt ? 8 : 4;
    const uint8_t* root = nullptr;
    uint32_t root_length = 0;
    AcpiError e = read_table(
        memory, root_phys, use_xsdt ? "XSDT" : "RSDT", kHeaderSize,
        {AcpiError::RootBadSignature, AcpiError::RootBadLength, AcpiError::RootBadChecksum}, &root,
        &root_length);
    if (e != AcpiError::None) return e;
    if ((root_length - kHeaderSize) % entry_size != 0) return AcpiError::RootBadLength;

    bool unreachable = false;
    for (size_t off = kHeaderSize; off < root_length; off += entry_size) {
        uint64_t phys = use_xsdt ? load_u64(root + off) : load_u32(root + off);
        const auto* sig = static_cast<const uint8_t*>(memory.map(memory.ctx, phys, 4));
        if (sig == nullptr) {
            unreachable = true;  // some table we cannot see: the MADT, maybe
            continue;
        }
        if (!same_bytes(sig, "APIC", 4)) continue;
        const uint8_t* madt = nullptr;
        uint32_t madt_length = 0;
        e = read_table(
            memory, phys, "APIC", kMadtFixedSize,
            {AcpiError::MadtBadLength, AcpiError::MadtBadLength, AcpiError::MadtBadChecksum}, &madt,
            &madt_length);
        if (e != AcpiError::None) return e;
        MadtInfo info;
        info.used_xsdt = use_xsdt;
        e = parse_madt(madt, madt_length, info);
        if (e != AcpiError::None) return e;
        out = info;
        return AcpiError::None;
    }
    return unreachable ? AcpiError::TableUnreachable : AcpiError::NoMadt;
}

}  // namespace mk::acpi
