// ACPI processor discovery: from the RSDP through the RSDT or XSDT to the
// MADT ("APIC"), the list of processors and the local APIC address.
//
// Every table is reached through a PhysMemory the caller provides (the
// kernel's direct map, or a test buffer), asked for exactly the bytes about
// to be read; signatures, lengths and checksums are checked before anything
// inside a table is used, and every MADT entry must lie inside its table.
// A malformed table is an AcpiError, never a read out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mk::acpi {

enum class [[nodiscard]] AcpiError : uint8_t{
    None = 0,
    NoRsdp,                   // the boot loader passed no RSDP
    RsdpTooShort,             // fewer bytes than the RSDP's revision needs
    RsdpBadSignature,         // not "RSD PTR "
    RsdpBadChecksum,          // the first 20 bytes do not sum to 0
    RsdpBadExtendedChecksum,  // revision >= 2: the whole structure does not sum to 0
    TableUnreachable,         // PhysMemory cannot provide a table's bytes
    RootBadSignature,         // the RSDT is not "RSDT", the XSDT not "XSDT"
    RootBadLength,            // root table shorter than its header, or a partial entry
    RootBadChecksum,
    NoMadt,         // no "APIC" table in the root table
    MadtBadLength,  // shorter than its fixed part, or absurdly long
    MadtBadChecksum,
    MadtBadEntryLength,  // an entry shorter than 2 bytes, or than its type needs
    MadtEntryPastEnd,    // an entry runs past the end of the table
    NoProcessors,        // no enabled processor listed
};

// A static name for log messages ("MADT entry runs past the end of the table").
const char* acpi_error_name(AcpiError e);

// How the parser reads physical memory: map(ctx, phys, length) returns a
// pointer to `length` readable bytes at physical address `phys`, or null
// when they are not all reachable. Called once per read of a table.
struct PhysMemory {
    const void* (*map)(void* ctx, uint64_t phys, size_t length);
    void* ctx;
};

// One processor from the MADT.
struct Processor {
    uint32_t apic_id = 0;
    uint32_t acpi_uid = 0;        // processor UID (type 0: u8 processor id)
    bool enabled = false;         // Enabled flag: present and usable now
    bool online_capable = false;  // not enabled, but may be brought online (MADT revision >= 5)
    bool x2apic_entry = false;    // listed as a Processor Local x2APIC entry (type 9)
};

struct MadtInfo {
    // Processors beyond this many are counted in `ignored` and left out.
    static constexpr size_t kMaxProcessors = 16;

    Processor processors[kMaxProcessors] = {};
    size_t count = 0;            // entries filled in `processors`
    size_t enabled = 0;          // of them, those with the Enabled flag
    size_t ignored = 0;          // usable entries beyond kMaxProcessors
    size_t duplicates = 0;       // entries naming an APIC id already listed (skipped)
    uint64_t lapic_address = 0;  // the 32-bit field, or the 64-bit override (entry type 5)
    bool lapic_override = false;
    bool used_xsdt = false;  // found through the XSDT (else the RSDT)
    uint8_t madt_revision = 0;
};

// The RSDP as the boot loader copied it (multiboot2 tags 14 and 15):
// `rsdp` readable for `length` bytes. Fills `out` on success only.
AcpiError find_processors(const void* rsdp, size_t length, PhysMemory memory, MadtInfo& out);

}  // namespace mk::acpi
