#include "elf.hpp"

#include <mk/abi.hpp>

namespace mk {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the ELF structures are read in the host's byte order");

namespace {

constexpr uint64_t kPage = abi::kPageSize;
static_assert((kPage & (kPage - 1)) == 0);
static_assert(abi::kUserBase % kPage == 0 && abi::kUserEnd % kPage == 0);

uint64_t page_down(uint64_t a) {
    return a & ~(kPage - 1);
}

// Rounds up to a page; callers pass addresses below abi::kUserEnd, so no wrap.
uint64_t page_up(uint64_t a) {
    return (a + kPage - 1) & ~(kPage - 1);
}

bool is_power_of_two(uint64_t v) {
    return v != 0 && (v & (v - 1)) == 0;
}

Result<ElfImage> fail(const char** reason, const char* why, Error e = Error::InvalidArgument) {
    if (reason != nullptr) *reason = why;
    return e;
}

// The file has no alignment guarantee: every structure is copied out before use.
template <typename T>
T load(const unsigned char* p) {
    T v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

}  // namespace

Result<ElfImage> parse_elf(const void* data, size_t size, const char** reason) {
    using namespace elf64;
    if (reason != nullptr) *reason = "";
    if (data == nullptr) return fail(reason, "elf: file pointer is null");
    if (size < sizeof(Header)) return fail(reason, "elf: file smaller than the 64-byte header");
    const auto* file = static_cast<const unsigned char*>(data);
    const Header h = load<Header>(file);

    // --- Identification: is this an ELF file meant for us? ---
    for (size_t i = 0; i < sizeof kMagic; ++i) {
        if (h.ident[i] != kMagic[i]) return fail(reason, "elf: bad magic (not an ELF file)");
    }
    if (h.ident[kIdentClass] != kClass64) {
        return fail(reason, "elf: not ELFCLASS64", Error::Unsupported);
    }
    if (h.ident[kIdentData] != kDataLittle) {
        return fail(reason, "elf: not little-endian (ELFDATA2LSB)", Error::Unsupported);
    }
    if (h.ident[kIdentVersion] != kVersionCurrent) {
        return fail(reason, "elf: e_ident version is not EV_CURRENT");
    }
    if (h.ident[kIdentOsAbi] != kOsAbiSysv) {
        return fail(reason, "elf: OS ABI is not SYSV/none", Error::Unsupported);
    }
    if (h.ident[kIdentAbiVersion] != 0) {
        return fail(reason, "elf: ABI version is not 0", Error::Unsupported);
    }
    if (h.type == kTypeDyn) {
        return fail(reason, "elf: ET_DYN (PIE or shared object): link with -static -no-pie",
                    Error::Unsupported);
    }
    if (h.type != kTypeExec) return fail(reason, "elf: e_type is not ET_EXEC (not an executable)");
    if (h.machine != kMachineX86_64) {
        return fail(reason, "elf: e_machine is not EM_X86_64", Error::Unsupported);
    }
    if (h.version != kVersionCurrent) return fail(reason, "elf: e_version is not EV_CURRENT");
    if (h.flags != 0) return fail(reason, "elf: e_flags not 0 (x86-64 defines none)");
    if (h.ehsize != sizeof(Header)) return fail(reason, "elf: e_ehsize is not 64");

    // --- The program header table: inside the file, after the header ---
    if (h.phentsize != sizeof(ProgramHeader)) return fail(reason, "elf: e_phentsize is not 56");
    if (h.phnum == 0) return fail(reason, "elf: no program headers (e_phnum 0)");
    if (h.phnum == kPhnumExtended) {
        return fail(reason, "elf: e_phnum is PN_XNUM (extended numbering)", Error::Unsupported);
    }
    if (h.phoff < sizeof(Header)) return fail(reason, "elf: program headers overlap the header");
    // phnum < 2^16, so the table size cannot overflow; compare against what
    // is left after phoff so that nothing is added to phoff.
    const uint64_t table_size = uint64_t{h.phnum} * sizeof(ProgramHeader);
    if (h.phoff > size || table_size > size - h.phoff) {
        return fail(reason, "elf: program headers extend past the end of the file");
    }

    ElfImage image;
    image.entry = h.entry;
    for (size_t i = 0; i < h.phnum; ++i) {
        const ProgramHeader ph = load<ProgramHeader>(file + h.phoff + i * sizeof(ProgramHeader));
        switch (ph.type) {
            case kPtLoad:
                break;  // checked below
            case kPtInterp:
                return fail(reason, "elf: PT_INTERP: dynamically linked programs are not loaded",
                            Error::Unsupported);
            case kPtDynamic:
                return fail(reason, "elf: PT_DYNAMIC: dynamically linked programs are not loaded",
                            Error::Unsupported);
            case kPtShlib:
                return fail(reason, "elf: PT_SHLIB (reserved, no defined meaning)");
            case kPtTls:
                return fail(reason, "elf: PT_TLS: thread-local storage is not supported",
                            Error::Unsupported);
            case kPtGnuStack:
                if ((ph.flags & kPfExec) != 0) {
                    return fail(reason, "elf: PT_GNU_STACK asks for an executable stack",
                                Error::Unsupported);
                }
                continue;
            default:
                // PT_NULL, PT_NOTE, PT_PHDR, PT_GNU_EH_FRAME, PT_GNU_RELRO,
                // PT_GNU_PROPERTY and whatever else: nothing the loader acts
                // on, and never read, so they cannot mislead it.
                continue;
        }

        // --- A PT_LOAD segment ---
        if ((ph.flags & ~(kPfRead | kPfWrite | kPfExec)) != 0) {
            return fail(reason, "elf: PT_LOAD with unknown p_flags bits");
        }
        if ((ph.flags & kPfWrite) != 0 && (ph.flags & kPfExec) != 0) {
            return fail(reason, "elf: PT_LOAD both writable and executable (W^X)",
                        Error::Unsupported);
        }
        if ((ph.flags & (kPfRead | kPfWrite | kPfExec)) == 0) {
            return fail(reason, "elf: PT_LOAD without permissions (PF_R/W/X all clear)",
                        Error::Unsupported);
        }
        if (ph.memsz == 0) return fail(reason, "elf: PT_LOAD with p_memsz 0");
        if (ph.filesz > ph.memsz) return fail(reason, "elf: PT_LOAD with p_filesz above p_memsz");
        if (ph.offset > size || ph.filesz > size - ph.offset) {
            return fail(reason, "elf: PT_LOAD extends past the end of the file");
        }
        // vaddr + memsz is computed only once it is known not to wrap.
        if (ph.vaddr < abi::kUserBase || ph.memsz > abi::kUserEnd - abi::kUserBase ||
            ph.vaddr > abi::kUserEnd - ph.memsz) {
            return fail(reason, "elf: PT_LOAD outside the user half");
        }
        if (ph.align > 1) {
            if (!is_power_of_two(ph.align)) {
                return fail(reason, "elf: PT_LOAD p_align is not a power of two");
            }
            if (ph.align < kPage) return fail(reason, "elf: PT_LOAD p_align below the page size");
            if (ph.vaddr % ph.align != ph.offset % ph.align) {
                return fail(reason, "elf: PT_LOAD p_vaddr and p_offset differ modulo p_align");
            }
        }
        // Holds for p_align 0 and 1 too: it is what lets file pages and
        // memory pages correspond at all.
        if (ph.vaddr % kPage != ph.offset % kPage) {
            return fail(reason, "elf: PT_LOAD p_vaddr and p_offset differ modulo the page size");
        }
        if (image.segment_count > 0) {
            const ElfSegment& prev = image.segments[image.segment_count - 1];
            const uint64_t prev_end = prev.vaddr + prev.mem_size;
            if (ph.vaddr < prev.vaddr) {
                return fail(reason, "elf: PT_LOAD segments not sorted by p_vaddr");
            }
            if (ph.vaddr < prev_end) return fail(reason, "elf: PT_LOAD segments overlap");
            if (page_down(ph.vaddr) < page_up(prev_end)) {
                return fail(reason, "elf: PT_LOAD segments share a page", Error::Unsupported);
            }
        }
        if (image.segment_count == ElfImage::kMaxSegments) {
            return fail(reason, "elf: more than 16 PT_LOAD segments", Error::TooLarge);
        }

        ElfSegment& s = image.segments[image.segment_count++];
        s.vaddr = ph.vaddr;
        s.mem_size = ph.memsz;
        s.file_offset = ph.offset;
        s.file_size = ph.filesz;
        // x86-64 page tables cannot express a present page that is not
        // readable, so W and X each come with R.
        s.prot = abi::kProtRead;
        if ((ph.flags & kPfWrite) != 0) s.prot |= abi::kProtWrite;
        if ((ph.flags & kPfExec) != 0) s.prot |= abi::kProtExec;
        image.page_count += (page_up(ph.vaddr + ph.memsz) - page_down(ph.vaddr)) / kPage;
    }

    if (image.segment_count == 0) return fail(reason, "elf: no PT_LOAD segment");

    bool entry_in_code = false;
    for (size_t i = 0; i < image.segment_count; ++i) {
        const ElfSegment& s = image.segments[i];
        if ((s.prot & abi::kProtExec) != 0 && image.entry >= s.vaddr &&
            image.entry - s.vaddr < s.file_size) {
            entry_in_code = true;
        }
    }
    if (!entry_in_code) {
        return fail(reason, "elf: entry point not in the file bytes of an executable segment");
    }
    return image;
}

SegmentPlan plan_segment(const ElfSegment& segment) {
    SegmentPlan p;
    p.page_start = page_down(segment.vaddr);
    p.page_count = (page_up(segment.vaddr + segment.mem_size) - p.page_start) / kPage;
    p.prot = segment.prot;
    p.copy_to = segment.vaddr - p.page_start;
    p.copy_from = segment.file_offset;
    p.copy_size = segment.file_size;
    return p;
}

PageFill page_fill(const SegmentPlan& plan, uint64_t index) {
    PageFill f;
    // The file bytes occupy [copy_to, copy_end) of the run; this page is
    // [lo, lo + kPage). For an accepted segment none of these sums wrap.
    const uint64_t copy_end = plan.copy_to + plan.copy_size;
    const uint64_t lo = index * kPage;
    const uint64_t hi = lo + kPage;
    const uint64_t from = plan.copy_to > lo ? plan.copy_to : lo;
    const uint64_t to = copy_end < hi ? copy_end : hi;
    if (from >= to) return f;
    f.copy_to = from - lo;
    f.copy_from = plan.copy_from + (from - plan.copy_to);
    f.copy_size = to - from;
    return f;
}

}  // namespace mk
