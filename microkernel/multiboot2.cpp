#include "multiboot2.hpp"

namespace mk {

namespace {

constexpr size_t kInfoHeaderSize = 8;       // u32 total_size, u32 reserved
constexpr size_t kTagHeaderSize = 8;        // u32 type, u32 size
constexpr size_t kMinInfoSize = 16;         // the header and the end tag
constexpr size_t kModuleFixedSize = 16;     // tag header, u32 mod_start, u32 mod_end
constexpr size_t kMemoryMapFixedSize = 16;  // tag header, u32 entry_size, u32 entry_version
constexpr size_t kMinMemoryEntrySize = 24;  // u64 base, u64 length, u32 type, u32 reserved

// The info is only 8-byte aligned as a whole and its fields are read through
// byte pointers: copies keep every read free of alignment assumptions.
uint32_t load_u32(const unsigned char* p) {
    uint32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

uint64_t load_u64(const unsigned char* p) {
    uint64_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

// Length of the string at p, looking at no more than n bytes; n when there is no NUL.
size_t bounded_strlen(const unsigned char* p, size_t n) {
    size_t i = 0;
    while (i < n && p[i] != 0) ++i;
    return i;
}

Result<BootInfo> fail(const char** reason, const char* why, Error e = Error::InvalidArgument) {
    if (reason != nullptr) *reason = why;
    return e;
}

// A NUL-terminated string that fills the rest of a tag (from `offset` on).
// Returns false when the tag holds no NUL.
bool tag_string(const unsigned char* tag, size_t tag_size, size_t offset, const char** str,
                size_t* len) {
    if (tag_size <= offset) return false;
    size_t n = bounded_strlen(tag + offset, tag_size - offset);
    if (n == tag_size - offset) return false;
    *str = reinterpret_cast<const char*>(tag + offset);
    *len = n;
    return true;
}

}  // namespace

bool is_multiboot2_magic(uint32_t eax) {
    return eax == kMultiboot2Magic;
}

MemoryMapEntry MemoryMap::entry(size_t i) const {
    const unsigned char* p = entries_ + i * entry_size_;
    MemoryMapEntry e;
    e.base = load_u64(p);
    e.length = load_u64(p + 8);
    e.type = load_u32(p + 16);
    return e;
}

Result<BootInfo> parse_boot_info(const void* info, size_t max_size, const char** reason) {
    if (reason != nullptr) *reason = "";
    if (info == nullptr) return fail(reason, "multiboot2: boot information pointer is null");
    if (reinterpret_cast<uintptr_t>(info) % 8 != 0) {
        return fail(reason, "multiboot2: boot information is not 8-byte aligned");
    }
    if (max_size < kMinInfoSize) {
        return fail(reason, "multiboot2: readable size below the 16-byte minimum");
    }
    const auto* base = static_cast<const unsigned char*>(info);
    const uint32_t total = load_u32(base);
    if (total < kMinInfoSize) return fail(reason, "multiboot2: total_size below 16 bytes");
    if (total > max_size) return fail(reason, "multiboot2: total_size exceeds the readable size");

    BootInfo boot;
    boot.info = info;
    boot.total_size = total;
    bool seen_cmdline = false;
    bool seen_loader_name = false;
    bool seen_memory_map = false;
    bool seen_old_rsdp = false;
    bool seen_new_rsdp = false;

    // Invariant: offset <= total and offset is a multiple of 8 (so, with the
    // aligned info, every tag is 8-byte aligned). All size checks are written
    // as "x > total - offset" so that no addition can overflow.
    size_t offset = kInfoHeaderSize;
    for (;;) {
        if (total - offset < kTagHeaderSize) return fail(reason, "multiboot2: no end tag");
        const unsigned char* tag = base + offset;
        const uint32_t type = load_u32(tag);
        const size_t size = load_u32(tag + 4);
        if (size < kTagHeaderSize) return fail(reason, "multiboot2: tag size below 8 bytes");
        if (size > total - offset) {
            return fail(reason, "multiboot2: tag extends past total_size");
        }

        switch (static_cast<Multiboot2Tag>(type)) {
            case Multiboot2Tag::End:
                if (size != kTagHeaderSize) {
                    return fail(reason, "multiboot2: end tag size is not 8");
                }
                if (!seen_memory_map) return fail(reason, "multiboot2: no memory map tag");
                return boot;

            case Multiboot2Tag::CommandLine:
                if (seen_cmdline) return fail(reason, "multiboot2: duplicate command line tag");
                seen_cmdline = true;
                if (!tag_string(tag, size, kTagHeaderSize, &boot.cmdline, &boot.cmdline_length)) {
                    return fail(reason, "multiboot2: command line not NUL-terminated");
                }
                break;

            case Multiboot2Tag::BootLoaderName:
                if (seen_loader_name) {
                    return fail(reason, "multiboot2: duplicate boot loader name tag");
                }
                seen_loader_name = true;
                if (!tag_string(tag, size, kTagHeaderSize, &boot.loader_name,
                                &boot.loader_name_length)) {
                    return fail(reason, "multiboot2: boot loader name not NUL-terminated");
                }
                break;

            case Multiboot2Tag::Module: {
                if (size < kModuleFixedSize)
                    return fail(reason, "multiboot2: module tag too small");
                if (boot.module_count == BootInfo::kMaxModules) {
                    return fail(reason, "multiboot2: more than 32 modules", Error::TooLarge);
                }
                BootModule& m = boot.modules[boot.module_count];
                m.start = load_u32(tag + 8);
                m.end = load_u32(tag + 12);
                if (m.start > m.end) return fail(reason, "multiboot2: module start above its end");
                if (!tag_string(tag, size, kModuleFixedSize, &m.string, &m.string_length)) {
                    return fail(reason, "multiboot2: module string not NUL-terminated");
                }
                ++boot.module_count;
                break;
            }

            case Multiboot2Tag::MemoryMap: {
                if (seen_memory_map) return fail(reason, "multiboot2: duplicate memory map tag");
                seen_memory_map = true;
                if (size < kMemoryMapFixedSize) {
                    return fail(reason, "multiboot2: memory map tag too small");
                }
                const size_t entry_size = load_u32(tag + 8);
                const uint32_t entry_version = load_u32(tag + 12);
                if (entry_size < kMinMemoryEntrySize || entry_size % 8 != 0) {
                    return fail(
                        reason,
                        "multiboot2: memory map entry_size below 24 or not a multiple of 8");
                }
                if (entry_version != 0) {
                    return fail(reason, "multiboot2: unsupported memory map entry_version");
                }
                const size_t body = size - kMemoryMapFixedSize;
                if (body % entry_size != 0) {
                    return fail(reason,
                                "multiboot2: memory map size not a whole number of entries");
                }
                boot.memory_map =
                    MemoryMap(tag + kMemoryMapFixedSize, body / entry_size, entry_size);
                for (size_t i = 0; i < boot.memory_map.count(); ++i) {
                    MemoryMapEntry e = boot.memory_map.entry(i);
                    if (e.length > UINT64_MAX - e.base) {
                        return fail(reason, "multiboot2: memory map entry wraps past 2^64");
                    }
                }
                break;
            }

            case Multiboot2Tag::AcpiOldRsdp:
            case Multiboot2Tag::AcpiNewRsdp: {
                const bool is_new = static_cast<Multiboot2Tag>(type) == Multiboot2Tag::AcpiNewRsdp;
                if (is_new ? seen_new_rsdp : seen_old_rsdp) {
                    return fail(reason, "multiboot2: duplicate ACPI RSDP tag");
                }
                (is_new ? seen_new_rsdp : seen_old_rsdp) = true;
                if (is_new || !seen_new_rsdp) {
                    boot.acpi_rsdp = tag + kTagHeaderSize;
                    boot.acpi_rsdp_length = size - kTagHeaderSize;
                    boot.acpi_rsdp_new = is_new;
                }
                break;
            }

            case Multiboot2Tag::Framebuffer:
                boot.has_framebuffer = true;
                break;

            case Multiboot2Tag::BasicMemInfo:
            case Multiboot2Tag::BootDevice:
                break;  // known, not needed: the memory map supersedes basic meminfo

            default:
                ++boot.unknown_tags;
                break;
        }

        // The next tag starts at the next multiple of 8; size <= total <= 2^32 - 1,
        // so the rounding cannot overflow.
        const size_t advance = (size + 7) & ~size_t{7};
        if (advance > total - offset) return fail(reason, "multiboot2: no end tag");
        offset += advance;
    }
}

// --- Command line ---

namespace {

bool is_separator(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

size_t c_strlen(const char* s) {
    size_t n = 0;
    while (s[n] != '\0') ++n;
    return n;
}

bool same(const char* a, const char* b, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (a[i] != b[i]) return false;
    }
    return true;
}

// Calls f(word, word_length) for each word after the optional kernel path, until
// f returns false. Stops at a NUL even if `length` says more.
template <typename F>
void for_each_word(const char* line, size_t length, F f) {
    if (line == nullptr) return;
    size_t i = 0;
    bool first = true;
    for (;;) {
        while (i < length && line[i] != '\0' && is_separator(line[i])) ++i;
        if (i == length || line[i] == '\0') return;
        size_t start = i;
        while (i < length && line[i] != '\0' && !is_separator(line[i])) ++i;
        const char* word = line + start;
        if (first && (word[0] == '/' || word[0] == '(')) {
            first = false;
            continue;  // the kernel's own path, as GRUB passes it
        }
        first = false;
        if (!f(word, i - start)) return;
    }
}

}  // namespace

bool cmdline_has(const char* cmdline, size_t length, const char* word) {
    if (word == nullptr) return false;
    const size_t n = c_strlen(word);
    if (n == 0) return false;
    bool found = false;
    for_each_word(cmdline, length, [&](const char* w, size_t wn) {
        found = wn == n && same(w, word, n);
        return !found;
    });
    return found;
}

bool cmdline_has(const BootInfo& boot, const char* word) {
    return cmdline_has(boot.cmdline, boot.cmdline_length, word);
}

const char* cmdline_value(const char* cmdline, size_t length, const char* key,
                          size_t* value_length) {
    if (key == nullptr) return nullptr;
    const size_t n = c_strlen(key);
    if (n == 0) return nullptr;
    const char* value = nullptr;
    size_t value_n = 0;
    for_each_word(cmdline, length, [&](const char* w, size_t wn) {
        if (wn > n && w[n] == '=' && same(w, key, n)) {
            value = w + n + 1;  // later words override earlier ones: keep scanning
            value_n = wn - n - 1;
        }
        return true;
    });
    if (value != nullptr && value_length != nullptr) *value_length = value_n;
    return value;
}

const char* cmdline_value(const BootInfo& boot, const char* key, size_t* value_length) {
    return cmdline_value(boot.cmdline, boot.cmdline_length, key, value_length);
}

}  // namespace mk
