// Multiboot2 boot information: a validating parser and the kernel command line.
//
// The boot loader hands the kernel a block of "boot information": u32
// total_size, u32 reserved, then tags {u32 type, u32 size, payload}, each
// starting 8-byte aligned, ending with an end tag {0, 8}. parse_boot_info()
// checks every length and offset before it reads what they describe, so a
// malformed block yields an Error (and a reason string for the panic message)
// instead of a read out of bounds.
//
// BootInfo points into the boot information instead of copying strings and the
// memory map: it stays valid only while that memory is intact, so the kernel
// keeps the block reserved (frame allocator exclusion) for as long as it uses it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "error.hpp"

namespace mk {

// What the boot loader leaves in EAX for a multiboot2 kernel.
inline constexpr uint32_t kMultiboot2Magic = 0x36d76289;

bool is_multiboot2_magic(uint32_t eax);

// The tag types the parser knows (the others are skipped).
enum class Multiboot2Tag : uint32_t {
    End = 0,
    CommandLine = 1,
    BootLoaderName = 2,
    Module = 3,
    BasicMemInfo = 4,
    BootDevice = 5,
    MemoryMap = 6,
    Framebuffer = 8,
    AcpiOldRsdp = 14,  // a copy of the ACPI 1.0 RSDP (20 bytes)
    AcpiNewRsdp = 15,  // a copy of the ACPI 2.0+ RSDP (36 bytes or more)
};

// Memory map entry types.
inline constexpr uint32_t kMemoryAvailable = 1;  // usable RAM
inline constexpr uint32_t kMemoryReserved = 2;
inline constexpr uint32_t kMemoryAcpiReclaimable = 3;
inline constexpr uint32_t kMemoryNvs = 4;
inline constexpr uint32_t kMemoryBadRam = 5;

// One memory map entry: [base, base + length), never wrapping past 2^64
// (the parser rejects entries that would).
struct MemoryMapEntry {
    uint64_t base = 0;
    uint64_t length = 0;
    uint32_t type = 0;
};

// A boot module: the physical range [start, end) and its NUL-terminated
// string (the rest of the loader's `module2` line), which points into the info.
struct BootModule {
    uint64_t start = 0;
    uint64_t end = 0;
    const char* string = nullptr;
    size_t string_length = 0;  // without the NUL
};

// The memory map, read in place: `count` entries of `entry_size` bytes each
// (entry_size >= 24 and a multiple of 8, so newer, larger entries still work).
class MemoryMap {
  public:
    MemoryMap() = default;
    // `entries` must be readable for count * entry_size bytes.
    MemoryMap(const void* entries, size_t count, size_t entry_size)
        : entries_(static_cast<const unsigned char*>(entries)),
          count_(count),
          entry_size_(entry_size) {}

    size_t count() const { return count_; }
    size_t entry_size() const { return entry_size_; }
    // Entry i (i < count()); copied out, so the map's alignment does not matter.
    MemoryMapEntry entry(size_t i) const;

  private:
    const unsigned char* entries_ = nullptr;
    size_t count_ = 0;
    size_t entry_size_ = 0;
};

struct BootInfo {
    static constexpr size_t kMaxModules = 32;

    const void* info = nullptr;  // the parsed block
    uint32_t total_size = 0;     // its size in bytes (header and end tag included)

    // The kernel command line, without the NUL (which is there at cmdline[cmdline_length]).
    // Empty ("", 0) when the loader gave none.
    const char* cmdline = "";
    size_t cmdline_length = 0;

    // The boot loader's name, e.g. "GRUB 2.06"; empty when absent.
    const char* loader_name = "";
    size_t loader_name_length = 0;

    MemoryMap memory_map;

    BootModule modules[kMaxModules] = {};
    size_t module_count = 0;

    // The boot loader's copy of the ACPI RSDP, inside the info (not
    // validated here: microkernel/acpi.hpp does that). The new RSDP (tag 15)
    // wins over the old one (tag 14) when both are there. Null, 0 when absent.
    const void* acpi_rsdp = nullptr;
    size_t acpi_rsdp_length = 0;
    bool acpi_rsdp_new = false;

    bool has_framebuffer = false;  // the tag is recognized but not used
    size_t unknown_tags = 0;       // tags of types the parser skipped
};

// Parses and validates the boot information at `info`, which the caller can
// read for at least `max_size` bytes (total_size must fit in it). Never reads
// outside [info, info + min(total_size, max_size)).
//
// Errors:
//   InvalidArgument  - malformed: null/misaligned pointer, bad sizes, missing end
//                      tag, no memory map, a string without its NUL, ...
//   TooLarge         - more than BootInfo::kMaxModules modules
// On error, *reason (when reason != nullptr) is set to a static message such as
// "multiboot2: no memory map tag", suitable for a panic; on success to "".
Result<BootInfo> parse_boot_info(const void* info, size_t max_size, const char** reason = nullptr);

// --- The kernel command line ---
//
// Words are separated by spaces or tabs. A word is either a flag ("ktest") or
// key=value ("donate=off"). GRUB may or may not pass the kernel's path as the
// first word; a first word starting with '/' or '(' (a GRUB device such as
// "(hd0,1)/boot/kernel") is taken to be that path and ignored.

// Whether the command line contains `word` as a whole word ("donate=off" matches
// only that word, "ktest" does not match "ktest=all").
bool cmdline_has(const char* cmdline, size_t length, const char* word);
bool cmdline_has(const BootInfo& boot, const char* word);

// The value of the last `key=value` word, not NUL-terminated: its length goes
// to *value_length (when not nullptr). nullptr when no such word; "key=" gives
// an empty value (non-null pointer, length 0).
const char* cmdline_value(const char* cmdline, size_t length, const char* key,
                          size_t* value_length);
const char* cmdline_value(const BootInfo& boot, const char* key, size_t* value_length);

}  // namespace mk
