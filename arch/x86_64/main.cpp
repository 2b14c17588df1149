// arch_main(): x86-64 bring-up from the long-mode entry to kernel_start().
//
// Order (docs/boot.md): static constructors, the per-CPU pointer, the serial
// log, GDT/TSS/IDT, the multiboot2 information, the kernel address space,
// the ACPI processor list, the frame allocator and heap, the local APIC
// timer, the other CPUs (started and parked), then the portable core.
#include "acpi.hpp"
#include "config.hpp"
#include "context.hpp"
#include "cpu.hpp"
#include "frame_allocator.hpp"
#include "heap.hpp"
#include "kernel.hpp"
#include "log.hpp"
#include "multiboot2.hpp"
#include "paging.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "platform.hpp"
#include "smp.hpp"
#include "trap.hpp"
#include "x86.hpp"

extern "C" {
extern char _kernel_phys_start[];
extern char _kernel_text_start[], _kernel_text_end[];
extern char _kernel_rodata_start[], _kernel_rodata_end[];
extern char _kernel_data_start[], _kernel_data_end[];
extern char _kernel_end[];
extern char boot_stack_guard[];
extern void (*_init_array_start[])();
extern void (*_init_array_end[])();
[[noreturn]] void arch_main(uint32_t magic, uint64_t info_phys);
}

namespace mk::x86 {

namespace {

// Page-table frames before the frame allocator exists: a bump allocator over
// one reserved block (the allocator is built after the full direct map).
struct BumpFrames {
    uint64_t next;
    uint64_t end;
};

Result<uint64_t> bump_alloc(void* ctx) {
    auto* bump = static_cast<BumpFrames*>(ctx);
    if (bump->next >= bump->end) return Error::OutOfMemory;
    uint64_t frame = bump->next;
    bump->next += kPageSize;
    return frame;
}

constexpr size_t kMaxRanges = 64;
constexpr uint64_t kBootDirectMapEnd = 4ull << 30;  // what boot.S maps
constexpr uint64_t kInitialHeap = 1 << 20;

PhysRange g_usable[kMaxRanges];
PhysRange g_reserved[kMaxRanges];
FrameAllocator g_frames;
PerCpu* g_boot_cpu;
alignas(PerCpu) unsigned char g_boot_cpu_storage[sizeof(PerCpu)];

uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) & ~(a - 1);
}
uint64_t align_down(uint64_t v, uint64_t a) {
    return v & ~(a - 1);
}
uint64_t kernel_phys(const char* sym) {
    return reinterpret_cast<uint64_t>(sym) - kKernelVma;
}

const char* memory_type_name(uint32_t type) {
    switch (type) {
        case 1:
            return "usable";
        case 3:
            return "ACPI reclaimable";
        case 4:
            return "ACPI NVS";
        case 5:
            return "bad";
        default:
            return "reserved";
    }
}

void map_range(AddressSpace& as, uint64_t virt, uint64_t phys, uint64_t size, uint64_t flags) {
    for (uint64_t off = 0; off < size; off += kPageSize) {
        Status s = as.map(virt + off, phys + off, flags);
        if (s != Error::None) MK_PANIC("paging: cannot map %lx: %s", virt + off, error_name(s));
    }
}

// Grows the kernel heap by a contiguous run of frames when it runs dry: as
// large as the heap already is (so a few regions reach any size), or just
// large enough when memory is too fragmented or short for that.
bool grow_heap(size_t at_least) {
    uint64_t need = align_up(at_least + 4096, kPageSize);
    uint64_t bytes = align_up(kernel_heap().stats().bytes_total, kPageSize);
    if (bytes < need) bytes = need;
    for (;;) {
        Result<uint64_t> run = g_frames.alloc_contiguous(bytes / kPageSize);
        if (run) {
            if (kernel_heap().add_region(phys_to_virt(run.value()), bytes) == Error::None) {
                return true;
            }
            g_frames.free_contiguous(run.value(), bytes / kPageSize);
            return false;
        }
        if (bytes == need) return false;
        bytes = align_up(bytes / 2, kPageSize);
        if (bytes < need) bytes = need;
    }
}

// The physical addresses this CPU can map (CPUID.80000008H:EAX[7:0]; 36
// bits without the leaf), and no more than the direct map's share of the
// kernel half (up to the kernel stacks' range).
uint64_t physical_address_end() {
    unsigned bits = 36;
    if (cpuid(0x80000000).eax >= 0x80000008) bits = cpuid(0x80000008).eax & 0xFF;
    uint64_t end = bits >= 63 ? UINT64_MAX : 1ull << bits;
    constexpr uint64_t kDirectMapSpan = kKernelStackBase - kDirectMapBase;
    return end < kDirectMapSpan ? end : kDirectMapSpan;
}

// Physical memory for the ACPI parser, in the kernel's address space
// before the frame allocator exists: the bytes asked for are read at
// their direct-map address, their pages mapped there (4 KiB, read-only,
// NX) where nothing is yet, with page tables from the boot block. So a
// table may lie anywhere the CPU can address; one beyond that, or whose
// pages find no page table (the block's spare frames ran out), is refused
// (TableUnreachable). The mappings stay: the kernel half's tables are
// never taken apart, and the pointers the parser holds stay valid.
struct AcpiWindow {
    AddressSpace* kas;
    uint64_t phys_end;
};

const void* acpi_map_phys(void* ctx, uint64_t phys, size_t length) {
    const auto* w = static_cast<const AcpiWindow*>(ctx);
    if (phys >= w->phys_end || length > w->phys_end - phys) return nullptr;
    for (uint64_t p = align_down(phys, kPageSize); p < phys + length; p += kPageSize) {
        if (w->kas->translate(kDirectMapBase + p)) continue;
        if (w->kas->map(kDirectMapBase + p, p, pte::kNoExecute | pte::kGlobal) != Error::None)
            return nullptr;
    }
    return phys_to_virt(phys);
}

// The processors the firmware lists; false (logged) when its tables are
// missing or bad, and the kernel runs on this CPU alone.
bool find_processors(const BootInfo& boot, AddressSpace& kas, acpi::MadtInfo& madt) {
    AcpiWindow window{&kas, physical_address_end()};
    acpi::AcpiError e = acpi::find_processors(boot.acpi_rsdp, boot.acpi_rsdp_length,
                                              {acpi_map_phys, &window}, madt);
    if (e != acpi::AcpiError::None) {
        log("acpi: %s; running on one CPU\n", acpi::acpi_error_name(e));
        return false;
    }
    log("acpi: MADT revision %u (through the %s): %zu CPUs enabled, %zu online-capable, "
        "LAPIC at %#lx%s\n",
        madt.madt_revision, madt.used_xsdt ? "XSDT" : "RSDT", madt.enabled,
        madt.count - madt.enabled, madt.lapic_address,
        madt.lapic_override ? " (64-bit override)" : "");
    if (madt.ignored != 0) {
        log("acpi: %zu more CPUs than the %zu supported; ignored\n", madt.ignored,
            acpi::MadtInfo::kMaxProcessors);
    }
    return true;
}

}  // namespace

}  // namespace mk::x86

using namespace mk;
using namespace mk::x86;

void arch_main(uint32_t magic, uint64_t info_phys) {
    // The per-CPU base first: every lock keeps its account there
    // (Cpu::held_locks). Still zero, the area reads "no per-CPU state yet"
    // (this_cpu() null) until the PerCpu is built in it.
    Cpu::set_this_cpu(reinterpret_cast<PerCpu*>(g_boot_cpu_storage));
    for (auto* ctor = _init_array_start; ctor != _init_array_end; ++ctor) (*ctor)();
    g_boot_cpu = new (g_boot_cpu_storage) PerCpu();
    Cpu::set_this_cpu(g_boot_cpu);

    serial_init();
    log("\nmicrokernel 0.1 (x86-64) booting\n");
    init_gdt_and_tss();
    init_idt();
    pic_disable();

    // --- Boot information ---
    if (!is_multiboot2_magic(magic)) MK_PANIC("boot: bad multiboot2 magic %#x", magic);
    if (info_phys + 8 > kBootDirectMapEnd) MK_PANIC("boot: multiboot2 info above 4 GiB");
    const char* reason = "";
    Result<BootInfo> parsed =
        parse_boot_info(phys_to_virt(info_phys), kBootDirectMapEnd - info_phys, &reason);
    if (!parsed) MK_PANIC("boot: unusable boot information: %s", reason);
    BootInfo boot = parsed.value();
    KernelConfig config = parse_kernel_config(boot.cmdline, boot.cmdline_length);
    set_exit_on_panic(config.exit_on_panic);
    log("boot: loader '%.*s', command line '%.*s'\n", int(boot.loader_name_length),
        boot.loader_name, int(boot.cmdline_length), boot.cmdline);

    // --- Physical memory ---
    size_t usable_count = 0;
    uint64_t usable_bytes = 0;
    uint64_t ram_end = 0;
    for (size_t i = 0; i < boot.memory_map.count(); ++i) {
        MemoryMapEntry e = boot.memory_map.entry(i);
        log("memory: %016lx-%016lx %s\n", e.base, e.base + e.length, memory_type_name(e.type));
        if (e.type != 1 || e.length == 0) continue;
        if (usable_count == kMaxRanges) {
            log("memory: more than %zu usable ranges; ignoring the rest\n", kMaxRanges);
            continue;
        }
        g_usable[usable_count++] = {e.base, e.length};
        usable_bytes += e.length;
        if (e.base + e.length > ram_end) ram_end = e.base + e.length;
    }
    if (usable_count == 0) MK_PANIC("memory: the memory map has no usable RAM");

    size_t reserved_count = 0;
    g_reserved[reserved_count++] = {0, 1 << 20};  // real-mode area, BIOS data
    g_reserved[reserved_count++] = {
        reinterpret_cast<uint64_t>(_kernel_phys_start),
        kernel_phys(_kernel_end) - reinterpret_cast<uint64_t>(_kernel_phys_start)};
    g_reserved[reserved_count++] = {info_phys, boot.total_size};
    for (size_t i = 0; i < boot.module_count; ++i) {
        g_reserved[reserved_count++] = {boot.modules[i].start,
                                        boot.modules[i].end - boot.modules[i].start};
    }
    for (size_t i = 0; i < boot.module_count; ++i) {
        const BootModule& m = boot.modules[i];
        log("boot: module %zu at %#lx-%#lx '%.*s'\n", i, m.start, m.end, int(m.string_length),
            m.string);
    }
    PhysRanges usable{g_usable, usable_count};

    // --- Kernel address space: direct map of RAM, kernel image, LAPIC ---
    PagingFeatures features = enable_paging_features();
    uint64_t direct_end = align_up(ram_end, kLargePageSize);
    // PML4 + PDPTs + one PD per GiB + the image's page tables, with room to
    // spare; the kernel stacks' PDPT, PD(s) and page tables; and what the
    // ACPI tables' mappings need (a PDPT, a PD and a page table for each
    // place they lie in: a few).
    constexpr uint64_t kStackTables = kKernelStackRangeSize / kLargePageSize + 4;
    constexpr uint64_t kAcpiTables = 16;
    uint64_t table_bytes = (8 + (direct_end >> 30) + 8 + kStackTables + kAcpiTables) * kPageSize;
    Result<uint64_t> tables = FrameAllocator::place_storage(
        usable, PhysRanges{g_reserved, reserved_count}, kBootDirectMapEnd, table_bytes);
    if (!tables) MK_PANIC("memory: no room for the kernel page tables");
    g_reserved[reserved_count++] = {tables.value(), table_bytes};
    BumpFrames bump{tables.value(), tables.value() + table_bytes};

    Result<AddressSpace> kas_result = AddressSpace::create({bump_alloc, &bump}, features);
    if (!kas_result) MK_PANIC("paging: no frame for the kernel PML4");
    AddressSpace kas = kas_result.value();
    for (size_t i = 0; i < usable_count; ++i) {
        uint64_t start = align_down(g_usable[i].base, kLargePageSize);
        uint64_t end = align_up(g_usable[i].base + g_usable[i].size, kLargePageSize);
        for (uint64_t p = start; p < end; p += kLargePageSize) {
            Status s = kas.map(kDirectMapBase + p, p,
                               pte::kLarge | pte::kWritable | pte::kGlobal | pte::kNoExecute);
            if (s != Error::None) MK_PANIC("paging: direct map at %lx: %s", p, error_name(s));
        }
    }
    map_range(kas, reinterpret_cast<uint64_t>(_kernel_text_start), kernel_phys(_kernel_text_start),
              align_up(uint64_t(_kernel_text_end - _kernel_text_start), kPageSize), pte::kGlobal);
    map_range(kas, reinterpret_cast<uint64_t>(_kernel_rodata_start),
              kernel_phys(_kernel_rodata_start),
              align_up(uint64_t(_kernel_rodata_end - _kernel_rodata_start), kPageSize),
              pte::kGlobal | pte::kNoExecute);
    // .data and .bss but the boot stack's guard page (boot.S).
    const uint64_t guard = reinterpret_cast<uint64_t>(boot_stack_guard);
    const uint64_t data = reinterpret_cast<uint64_t>(_kernel_data_start);
    const uint64_t data_end = align_up(reinterpret_cast<uint64_t>(_kernel_data_end), kPageSize);
    MK_ASSERT(guard % kPageSize == 0 && guard >= data && guard + kPageSize <= data_end);
    map_range(kas, data, kernel_phys(_kernel_data_start), guard - data,
              pte::kGlobal | pte::kWritable | pte::kNoExecute);
    map_range(kas, guard + kPageSize, kernel_phys(boot_stack_guard) + kPageSize,
              data_end - guard - kPageSize, pte::kGlobal | pte::kWritable | pte::kNoExecute);
    // The boot information (it may sit outside usable RAM) and the modules.
    for (size_t i = 2; i < reserved_count - 1; ++i) {
        uint64_t start = align_down(g_reserved[i].base, kPageSize);
        uint64_t end = align_up(g_reserved[i].base + g_reserved[i].size, kPageSize);
        for (uint64_t p = start; p < end; p += kPageSize) {
            if (kas.translate(kDirectMapBase + p)) continue;
            map_range(kas, kDirectMapBase + p, p, kPageSize, pte::kWritable | pte::kNoExecute);
        }
    }
    // Every page table of the kernel stacks' range, now: each user address
    // space copies the PML4 entry, and a stack's mapping never allocates.
    Status st = kas.make_tables(kKernelStackBase, kKernelStackRangeSize);
    if (st != Error::None) MK_PANIC("paging: kernel stack tables: %s", error_name(st));
    if (!lapic_present()) MK_PANIC("cpu: no local APIC");
    uint64_t lapic_phys = rdmsr(kMsrApicBase) & 0xFFFFFF000ull;
    if (!kas.translate(kDirectMapBase + lapic_phys)) {
        map_range(kas, kDirectMapBase + lapic_phys, lapic_phys, kPageSize,
                  pte::kWritable | pte::kNoExecute | pte::kCacheDisable | pte::kWriteThrough);
    }
    kas.activate();  // the identity map of boot.S is gone from here on

    // --- The ACPI processor list: its tables mapped where they are ---
    acpi::MadtInfo madt;
    const bool have_madt = config.smp && find_processors(boot, kas, madt);

    // --- Frame allocator and heap ---
    PhysRanges reserved{g_reserved, reserved_count};
    size_t storage_bytes = FrameAllocator::storage_size(usable);
    Result<uint64_t> storage =
        FrameAllocator::place_storage(usable, reserved, FrameAllocator::kNoLimit, storage_bytes);
    if (!storage) MK_PANIC("memory: no room for the frame allocator's bitmaps");
    Status fs =
        g_frames.init(usable, reserved, FrameAllocator::kNoLimit, phys_to_virt(storage.value()),
                      storage_bytes, {storage.value(), storage_bytes});
    if (fs != Error::None) MK_PANIC("memory: frame allocator: %s", error_name(fs));
    log("memory: %lu MiB usable in %zu ranges, %zu frames free, RAM ends at %#lx\n",
        usable_bytes >> 20, usable_count, g_frames.free_count(), ram_end);
    log("paging: direct map at %#lx, NX %s, global pages %s\n", kDirectMapBase,
        features.nx ? "on" : "off", features.global_pages ? "on" : "off");

    UserModeFeatures user = init_user_mode(kas, features, g_frames, config.pcid);
    log("cpu: syscall/sysret on, SMEP %s, SMAP %s, PCID %s\n", user.smep ? "on" : "off (absent)",
        user.smap ? "on" : "off (absent)",
        user.pcid           ? "on"
        : user.pcid_offered ? "off (pcid=off)"
                            : "off (absent)");

    kernel_heap_set_grow(grow_heap);
    if (!grow_heap(kInitialHeap)) MK_PANIC("memory: no room for the kernel heap");
    init_boot_interrupt_stacks();

    // --- Timer ---
    lapic_init(reinterpret_cast<uint64_t>(phys_to_virt(lapic_phys)));
    constexpr uint32_t kTimerHz = 1000;
    TimerInfo timer = lapic_timer_start(kTimerHz);
    log("timer: LAPIC %u Hz (%u APIC ticks per ms), TSC ~%lu MHz, CPU %u\n", timer.hz,
        timer.apic_ticks_per_ms, timer.tsc_per_ms / 1000, lapic_id());

    // --- The other CPUs: started, then parked ---
    if (!config.smp) {
        log("smp: off, 1 CPU online\n");
    } else {
        size_t online = 1;
        if (have_madt) {
            if (madt.lapic_address != lapic_phys) {
                log("smp: the MADT puts the LAPIC at %#lx, the APIC base MSR at %#lx; using "
                    "the MSR's\n",
                    madt.lapic_address, lapic_phys);
            }
            // Entry 0 is the first MiB, where the trampoline goes.
            online = start_application_processors(madt, usable,
                                                  PhysRanges{g_reserved + 1, reserved_count - 1});
        }
        log("smp: %zu CPU%s online\n", online, online == 1 ? "" : "s");
    }

    StartInfo start{g_boot_cpu, &g_frames, config, kTimerHz, boot.modules, boot.module_count};
    kernel_start(start);
}
