// ELF64 executables: a validating parser and the arithmetic of loading them.
//
// A user program reaches the kernel as a multiboot2 boot module: bytes that
// nobody has checked. parse_elf() reads the ELF header and the program headers
// of such a file, checking every offset, size and address before it relies on
// it, and returns what a loader needs (the entry point and the loadable
// segments with their protections) or an Error and a reason string for the
// log. Only static, non-PIE x86-64 executables whose segments all lie in the
// user half are accepted; docs/elf.md lists every rule and why it is there.
//
// plan_segment() and page_fill() then turn an accepted segment into pages to
// map and bytes to copy, so the mapper follows a plan instead of redoing the
// arithmetic. Nothing here allocates, maps or touches page tables.
#pragma once

#include <cstddef>
#include <cstdint>

#include "error.hpp"

namespace mk {

// The on-disk structures (ELF-64 Object File Format, version 1.5; the x86-64
// psABI), little-endian as the files we load are.
namespace elf64 {

inline constexpr size_t kIdentSize = 16;
inline constexpr uint8_t kMagic[4] = {0x7f, 'E', 'L', 'F'};

// e_ident indices and the values we accept there.
inline constexpr size_t kIdentClass = 4;
inline constexpr size_t kIdentData = 5;
inline constexpr size_t kIdentVersion = 6;
inline constexpr size_t kIdentOsAbi = 7;
inline constexpr size_t kIdentAbiVersion = 8;
inline constexpr uint8_t kClass64 = 2;         // ELFCLASS64
inline constexpr uint8_t kDataLittle = 1;      // ELFDATA2LSB
inline constexpr uint8_t kVersionCurrent = 1;  // EV_CURRENT
inline constexpr uint8_t kOsAbiSysv = 0;       // ELFOSABI_NONE / ELFOSABI_SYSV

// e_type
inline constexpr uint16_t kTypeRel = 1;   // ET_REL
inline constexpr uint16_t kTypeExec = 2;  // ET_EXEC
inline constexpr uint16_t kTypeDyn = 3;   // ET_DYN (PIE or shared object)
inline constexpr uint16_t kTypeCore = 4;  // ET_CORE

inline constexpr uint16_t kMachineX86_64 = 62;      // EM_X86_64
inline constexpr uint16_t kPhnumExtended = 0xffff;  // PN_XNUM: the count is in section 0

// p_type
inline constexpr uint32_t kPtNull = 0;
inline constexpr uint32_t kPtLoad = 1;
inline constexpr uint32_t kPtDynamic = 2;
inline constexpr uint32_t kPtInterp = 3;
inline constexpr uint32_t kPtNote = 4;
inline constexpr uint32_t kPtShlib = 5;
inline constexpr uint32_t kPtPhdr = 6;
inline constexpr uint32_t kPtTls = 7;
inline constexpr uint32_t kPtGnuEhFrame = 0x6474e550;
inline constexpr uint32_t kPtGnuStack = 0x6474e551;
inline constexpr uint32_t kPtGnuRelro = 0x6474e552;
inline constexpr uint32_t kPtGnuProperty = 0x6474e553;

// p_flags
inline constexpr uint32_t kPfExec = 1;
inline constexpr uint32_t kPfWrite = 2;
inline constexpr uint32_t kPfRead = 4;

struct Header {
    uint8_t ident[kIdentSize];
    uint16_t type;
    uint16_t machine;
    uint32_t version;
    uint64_t entry;
    uint64_t phoff;
    uint64_t shoff;
    uint32_t flags;
    uint16_t ehsize;
    uint16_t phentsize;
    uint16_t phnum;
    uint16_t shentsize;
    uint16_t shnum;
    uint16_t shstrndx;
};
static_assert(sizeof(Header) == 64);

struct ProgramHeader {
    uint32_t type;
    uint32_t flags;
    uint64_t offset;
    uint64_t vaddr;
    uint64_t paddr;
    uint64_t filesz;
    uint64_t memsz;
    uint64_t align;
};
static_assert(sizeof(ProgramHeader) == 56);

}  // namespace elf64

// One loadable segment of an accepted image. Its bytes in memory are
// [vaddr, vaddr + mem_size): the first file_size of them come from the file at
// file_offset, the rest are zero. Guaranteed by parse_elf():
//   - file_size <= mem_size, mem_size > 0, and file_offset + file_size is
//     within the file;
//   - the pages it touches lie inside [abi::kUserBase, abi::kUserEnd);
//   - vaddr and file_offset are congruent modulo the page size;
//   - prot is kProtRead | kProtWrite or kProtRead | kProtExec or kProtRead
//     (abi::Prot bits; never writable and executable).
struct ElfSegment {
    uint64_t vaddr = 0;
    uint64_t mem_size = 0;
    uint64_t file_offset = 0;
    uint64_t file_size = 0;
    uint64_t prot = 0;

    bool operator==(const ElfSegment&) const = default;
};

struct ElfImage {
    static constexpr size_t kMaxSegments = 16;

    // Where the program starts: inside the file-backed bytes of an
    // executable segment.
    uint64_t entry = 0;
    // The PT_LOAD segments in ascending address order; no two of them touch
    // the same page.
    ElfSegment segments[kMaxSegments] = {};
    size_t segment_count = 0;
    // The pages all segments need together (what a spawn charges against the
    // new process's memory limit before it allocates anything).
    uint64_t page_count = 0;
};

// Parses and validates the ELF64 executable in [data, data + size), which the
// caller can read. Never reads outside it; `data` needs no alignment.
//
// Errors:
//   InvalidArgument - not a well-formed ELF64 executable: bad magic or version,
//                     sizes or offsets outside the file, arithmetic that would
//                     wrap, a segment outside the user half, unsorted or
//                     overlapping segments, no PT_LOAD, an entry point outside
//                     the code, ...
//   Unsupported     - a well-formed file this kernel does not run: not
//                     x86-64/ELF64/little-endian/SysV, PIE or shared object,
//                     an interpreter or dynamic section, TLS, a writable and
//                     executable segment, an executable stack, two segments
//                     sharing a page, a segment without permissions
//   TooLarge        - more than ElfImage::kMaxSegments PT_LOAD segments
// On error, *reason (when reason != nullptr) is set to a static message such as
// "elf: PT_INTERP: dynamically linked programs are not loaded", for the log;
// on success to "".
Result<ElfImage> parse_elf(const void* data, size_t size, const char** reason = nullptr);

// How to put one accepted segment into memory: map page_count fresh pages at
// page_start with prot. In that run of page_count * abi::kPageSize bytes,
//   [0, copy_to)                        is zero (the start of the first page),
//   [copy_to, copy_to + copy_size)      is the file's [copy_from, copy_from + copy_size),
//   [copy_to + copy_size, end of run)   is zero (the bss and the rest of the last page).
// Every byte of the run is written: nothing of what the frames held before, and
// nothing of the file beyond file_size, shows through.
struct SegmentPlan {
    uint64_t page_start = 0;
    uint64_t page_count = 0;
    uint64_t prot = 0;
    uint64_t copy_to = 0;
    uint64_t copy_from = 0;
    uint64_t copy_size = 0;

    bool operator==(const SegmentPlan&) const = default;
};

// The plan of a segment that parse_elf() accepted (for any other segment the
// result is meaningless, but computing it is still safe: no overflow traps).
SegmentPlan plan_segment(const ElfSegment& segment);

// The same plan, one page at a time (for a mapper that fills each frame
// through the direct map): in page `index` of the run (< page_count), copy
// copy_size bytes from file offset copy_from to byte copy_to of the page, and
// zero every other byte. copy_size is 0 (and the other two 0) for a page that
// takes nothing from the file.
struct PageFill {
    uint64_t copy_to = 0;
    uint64_t copy_from = 0;
    uint64_t copy_size = 0;

    bool operator==(const PageFill&) const = default;
};
PageFill page_fill(const SegmentPlan& plan, uint64_t index);

}  // namespace mk
