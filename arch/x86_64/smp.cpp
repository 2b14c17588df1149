// Application processors: INIT-SIPI-SIPI into the trampoline
// (boot/ap_trampoline.S), one at a time; each then sets itself up as the
// boot CPU is set up, joins the scheduler with an idle thread of its own,
// says so, and idles until it is given threads (docs/smp.md). And the
// interrupt one CPU sends another (Cpu::notify_cpu).
#include "smp.hpp"

#include <atomic>

#include "context.hpp"
#include "cpu.hpp"
#include "kernel.hpp"
#include "kernel_stack.hpp"
#include "log.hpp"
#include "memory.hpp"
#include "paging.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "platform.hpp"
#include "trap.hpp"
#include "x86.hpp"

extern "C" {
extern const char ap_trampoline_start[], ap_trampoline_end[];
extern const char ap_trampoline_data[], ap_trampoline_data_end[];
void ap_kernel_entry();
[[noreturn]] void ap_main(void* arg);
}

namespace mk::x86 {

namespace {

// The trampoline's data block, field for field as boot/ap_trampoline.S lays it out.
struct ApTrampolineData {
    uint32_t claim;       // see kClaim* below
    uint32_t cr3_low;     // the temporary PML4
    uint64_t efer;        // the boot CPU's EFER, without LMA
    uint64_t cr0;         // the boot CPU's CR0, without TS
    uint64_t cr4;         // the boot CPU's CR4
    uint64_t kernel_cr3;  // the kernel's page tables
    uint64_t stack_top;
    uint64_t entry;  // ap_kernel_entry
    uint64_t arg;    // the ApStart for ap_main
};

// The claim word (ApTrampolineData::claim).
constexpr uint32_t kClaimOpen = 0;    // published for the next AP
constexpr uint32_t kClaimTaken = 1;   // an AP took it and is reading it
constexpr uint32_t kClaimClosed = 2;  // the boot CPU gave up on the AP it was for
constexpr uint32_t kClaimLeft = 3;    // the AP has read what it needs and left

// Each CPU's APIC id, by PerCpu::index: where notify_cpu() sends. Written
// by each CPU before it joins the scheduler.
uint32_t g_apic_ids[kMaxCpus];

// What the boot CPU prepared for one AP: its state, its descriptor
// tables and its stack, from the heap. The AP itself allocates only its
// idle thread (cpu_join), with the boot CPU waiting for it.
struct ApStart {
    PerCpu* cpu = nullptr;
    CpuTables* tables = nullptr;
    void* stack = nullptr;  // the top of its kernel stack (kernel_stack.hpp)
    uint32_t index = 0;
    uint32_t apic_id = 0;
};

// How long an AP has to report itself up. Hardware needs well under a
// millisecond; an emulator on a busy host may not run the AP's thread for
// a while (Linux waits up to 10 s). A dead CPU costs the boot this once.
constexpr uint64_t kAnswerTimeoutMs = 1000;
constexpr uint64_t kInitDelayUs = 10000;   // after INIT (SDM: 10 ms)
constexpr uint64_t kStartupDelayUs = 200;  // after each STARTUP (SDM: 200 us)

// ICR command words.
constexpr uint32_t kIcrInit = 5u << 8;
constexpr uint32_t kIcrStartup = 6u << 8;
constexpr uint32_t kIcrAssert = 1u << 14;
constexpr uint32_t kIcrLevel = 1u << 15;

constexpr uint64_t kEferLma = 1u << 10;

ApStart g_aps[kMaxCpus];
// Bit i: CPU i (an AP) is up and parked. Set by the AP itself.
std::atomic<uint32_t> g_online{0};

void wait_us(uint64_t us) {
    uint64_t ticks = tsc_ticks_per_ms() * us / 1000;
    uint64_t start = Cpu::timestamp();
    while (Cpu::timestamp() - start < ticks) __builtin_ia32_pause();
}

bool contains(PhysRanges ranges, uint64_t base, uint64_t end) {
    for (size_t i = 0; i < ranges.count; ++i) {
        const PhysRange& r = ranges.ranges[i];
        if (r.base <= base && end - r.base <= r.size) return true;
    }
    return false;
}

bool overlaps(PhysRanges ranges, uint64_t base, uint64_t end) {
    for (size_t i = 0; i < ranges.count; ++i) {
        const PhysRange& r = ranges.ranges[i];
        if (r.size == 0 || r.base >= end) continue;
        if (r.base >= base || base - r.base < r.size) return true;
    }
    return false;
}

// Copies the trampoline to its page and builds the temporary page tables
// after it: the trampoline page identity-mapped, and the kernel half.
ApTrampolineData* install_trampoline() {
    const size_t size = size_t(ap_trampoline_end - ap_trampoline_start);
    MK_ASSERT(size <= kPageSize);
    MK_ASSERT(size_t(ap_trampoline_data_end - ap_trampoline_data) == sizeof(ApTrampolineData));
    auto* page = static_cast<uint8_t*>(phys_to_virt(kApTrampolineBase));
    __builtin_memcpy(page, ap_trampoline_start, size);

    const uint64_t pml4 = kApTrampolineBase + kPageSize;
    const uint64_t pdpt = pml4 + kPageSize;
    const uint64_t pd = pdpt + kPageSize;
    const uint64_t pt = pd + kPageSize;
    static_assert(kApTrampolinePages == 5, "code, PML4, PDPT, PD, PT");
    for (uint64_t t = pml4; t <= pt; t += kPageSize) Cpu::zero_frame(t);
    auto table = [](uint64_t phys) { return static_cast<uint64_t*>(phys_to_virt(phys)); };
    table(pml4)[0] = pdpt | pte::kPresent | pte::kWritable;
    table(pdpt)[0] = pd | pte::kPresent | pte::kWritable;
    table(pd)[0] = pt | pte::kPresent | pte::kWritable;
    table(pt)[(kApTrampolineBase >> 12) & 511] = kApTrampolineBase | pte::kPresent | pte::kWritable;
    // The address bits alone: bits 3 and 4 of a CR3 loaded with PCIDE off
    // are PWT and PCD, not part of a PCID.
    const uint64_t kernel_root = read_cr3() & pte::kAddressMask;
    const uint64_t* kernel_pml4 = table(kernel_root & pte::kAddressMask);
    for (unsigned i = kFirstKernelSlot; i < 512; ++i) table(pml4)[i] = kernel_pml4[i];

    auto* data =
        reinterpret_cast<ApTrampolineData*>(page + (ap_trampoline_data - ap_trampoline_start));
    data->claim = kClaimClosed;
    data->cr3_low = uint32_t(pml4);
    data->efer = rdmsr(kMsrEfer) & ~kEferLma;
    data->cr0 = read_cr0() & ~Cpu::kCr0Ts;
    // Without PCIDE: the AP sets it itself, with the kernel's CR3 loaded
    // (init_user_mode_here).
    data->cr4 = read_cr4() & ~kCr4Pcide;
    data->kernel_cr3 = kernel_root;
    data->entry = reinterpret_cast<uint64_t>(&ap_kernel_entry);
    return data;
}

enum class StartOutcome {
    Up,           // it reported itself up in time
    NoAnswer,     // it never took the trampoline: sent back to wait for STARTUP
    Silent,       // it took the trampoline, then did not report in time
    StuckInside,  // it took the trampoline and never left it
    IpiFailed,    // the local APIC did not send an IPI
};

uint32_t exchange_claim(ApTrampolineData* data, uint32_t value) {
    return __atomic_exchange_n(&data->claim, value, __ATOMIC_SEQ_CST);
}
uint32_t load_claim(const ApTrampolineData* data) {
    return __atomic_load_n(&data->claim, __ATOMIC_ACQUIRE);
}

bool send_init(uint32_t apic_id) {
    if (!lapic_send_ipi(apic_id, kIcrInit | kIcrLevel | kIcrAssert)) return false;
    wait_us(kInitDelayUs);
    return lapic_send_ipi(apic_id, kIcrInit | kIcrLevel);
}

// INIT, STARTUP, STARTUP (the second only when the first found it not
// yet awake), then up to kAnswerTimeoutMs for its report. The data block
// is published for it (claim open) on entry.
StartOutcome start_one(ApTrampolineData* data, uint32_t apic_id, uint32_t index) {
    if (!send_init(apic_id)) return StartOutcome::IpiFailed;
    const uint32_t vector = uint32_t(kApTrampolineBase >> 12);
    for (int i = 0; i < 2 && load_claim(data) == kClaimOpen; ++i) {
        if (!lapic_send_ipi(apic_id, kIcrStartup | vector)) return StartOutcome::IpiFailed;
        wait_us(kStartupDelayUs);
    }
    const uint64_t limit = tsc_ticks_per_ms() * kAnswerTimeoutMs;
    const uint64_t start = Cpu::timestamp();
    while (Cpu::timestamp() - start < limit) {
        if ((g_online.load(std::memory_order_acquire) & (1u << index)) != 0) {
            return StartOutcome::Up;
        }
        __builtin_ia32_pause();
    }
    switch (exchange_claim(data, kClaimClosed)) {
        case kClaimOpen:
            // Never came: from now on an AP finding the block closed parks
            // in the trampoline; INIT sends this one back to wait anyway.
            (void)send_init(apic_id);
            return StartOutcome::NoAnswer;
        case kClaimTaken: {
            // Somewhere in the trampoline: the block is not free until it
            // says it has left.
            const uint64_t again = Cpu::timestamp();
            while (load_claim(data) != kClaimLeft) {
                if (Cpu::timestamp() - again >= limit) return StartOutcome::StuckInside;
                __builtin_ia32_pause();
            }
            return StartOutcome::Silent;
        }
        default:
            return StartOutcome::Silent;  // in the kernel, slow; its state is its own
    }
}

// Memory for one AP, kept by the slot until an AP takes it: its PerCpu
// and tables from the heap, its stacks in the kernel stacks' range, with
// guard pages.
bool prepare(ApStart& s) {
    if (s.cpu == nullptr) s.cpu = knew<PerCpu>();
    if (s.tables == nullptr) s.tables = cpu_tables_create();
    if (s.stack == nullptr) {
        Result<KernelStack> stack = kernel_stack_create();
        if (stack) s.stack = stack.value().top;
    }
    return s.cpu != nullptr && s.tables != nullptr && s.stack != nullptr;
}

}  // namespace

size_t start_application_processors(const acpi::MadtInfo& madt, PhysRanges usable,
                                    PhysRanges reserved) {
    g_apic_ids[0] = lapic_id();
    if (!contains(usable, kApTrampolineBase, kApTrampolineEnd)) {
        log("smp: %#lx-%#lx (the AP trampoline) is not usable RAM; running on one CPU\n",
            kApTrampolineBase, kApTrampolineEnd);
        return 1;
    }
    if (overlaps(reserved, kApTrampolineBase, kApTrampolineEnd)) {
        log("smp: %#lx-%#lx (the AP trampoline) holds boot information or a module; "
            "running on one CPU\n",
            kApTrampolineBase, kApTrampolineEnd);
        return 1;
    }
    ApTrampolineData* data = install_trampoline();
    const uint32_t self = lapic_id();
    uint32_t next = 1;
    for (size_t i = 0; i < madt.count; ++i) {
        const acpi::Processor& p = madt.processors[i];
        if (!p.enabled || p.apic_id == self) continue;
        if (p.apic_id >= 0xFF) {
            log("smp: apic id %u needs x2APIC mode; not started\n", p.apic_id);
            continue;
        }
        if (next == kMaxCpus) {
            log("smp: more than %zu CPUs; apic id %u and after not started\n", kMaxCpus, p.apic_id);
            break;
        }
        ApStart& s = g_aps[next];
        if (!prepare(s)) {
            log("smp: out of memory for cpu %u; starting no more\n", next);
            break;
        }
        s.cpu->index = next;
        s.index = next;
        s.apic_id = p.apic_id;
        data->stack_top = reinterpret_cast<uint64_t>(s.stack);
        data->arg = reinterpret_cast<uint64_t>(&s);
        (void)exchange_claim(data, kClaimOpen);  // publishes the fields above

        StartOutcome r = start_one(data, p.apic_id, next);
        if (r == StartOutcome::Up) {
            ++next;
            continue;
        }
        if (r == StartOutcome::NoAnswer) {
            log("smp: apic id %u did not answer in %lu ms; skipped\n", p.apic_id, kAnswerTimeoutMs);
            continue;  // the slot and its memory go to the next one
        }
        if (r == StartOutcome::Silent) {
            log("smp: apic id %u started but did not report in %lu ms; skipped\n", p.apic_id,
                kAnswerTimeoutMs);
            ++next;  // the slot is that CPU's now, should it still come up
            continue;
        }
        log("smp: apic id %u: %s; starting no more CPUs\n", p.apic_id,
            r == StartOutcome::IpiFailed ? "the local APIC did not send the IPI"
                                         : "stuck in the trampoline");
        break;
    }
    return 1 + size_t(__builtin_popcount(g_online.load(std::memory_order_acquire)));
}

}  // namespace mk::x86

using namespace mk;
using namespace mk::x86;

bool mk::x86::send_ipi(uint32_t index, uint8_t vector) {
    // Fixed delivery, physical destination: the vector on that CPU alone.
    // Interrupts off, so that nothing on this CPU writes the ICR between
    // its two halves.
    bool was = Cpu::save_and_disable_interrupts();
    bool sent = lapic_send_ipi(g_apic_ids[index], vector);
    if (!sent) log("smp: the local APIC did not send vector %#x to cpu %u\n", vector, index);
    Cpu::restore_interrupts(was);
    return sent;
}

void Cpu::notify_cpu(uint32_t index) {
    (void)send_ipi(index, kVectorNotify);
}

// --- Stopping the other CPUs (a panic) ---

namespace {

constexpr uint32_t kIcrNmi = 4u << 8;          // delivery mode NMI
constexpr uint32_t kIcrAllButSelf = 3u << 18;  // destination shorthand
uint32_t g_stopping = 0;                       // 1 once a CPU began stopping the others
// The CPUs that stopped since, a bit per PerCpu::index (a CPU may get
// here twice: its own panic, then the NMI of the one that won).
uint32_t g_stopped = 0;

}  // namespace

bool mk::x86::cpus_stopping() {
    return __atomic_load_n(&g_stopping, __ATOMIC_ACQUIRE) != 0;
}

void mk::x86::stop_here() {
    asm volatile("cli");
    __atomic_fetch_or(&g_stopped, 1u << Cpu::cpu_index(), __ATOMIC_RELEASE);
    for (;;) asm volatile("hlt");  // an NMI ends a hlt: halt again
}

uint32_t Cpu::stop_other_cpus() {
    // One CPU stops the others; a second one panicking meanwhile is
    // stopped by the first (its NMI handler) and waits for it here.
    if (__atomic_exchange_n(&g_stopping, 1, __ATOMIC_ACQ_REL) != 0) stop_here();
    // The CPUs in the table but this one. Early in boot there is no table
    // (and no local APIC to send with) yet: nothing else runs.
    uint32_t others = 0;
    for (uint32_t i = 0, n = cpu_count(); i < n; ++i) {
        if (cpu_online(i) && i != cpu_index()) others |= 1u << i;
    }
    if (others == 0 || !lapic_ready()) return 0;
    // An NMI, which a CPU spinning with interrupts off takes too.
    if (!lapic_send_ipi(0, kIcrNmi | kIcrAllButSelf | kIcrAssert)) {
        log("panic: the local APIC did not send the NMI that stops the other CPUs\n");
        return 0;
    }
    uint64_t per_ms = tsc_ticks_per_ms() == 0 ? 1000000 : tsc_ticks_per_ms();
    uint64_t start = timestamp();
    while ((__atomic_load_n(&g_stopped, __ATOMIC_ACQUIRE) & others) != others &&
           timestamp() - start < 100 * per_ms)
        __builtin_ia32_pause();
    uint32_t stopped = __atomic_load_n(&g_stopped, __ATOMIC_ACQUIRE) & others;
    uint32_t count = uint32_t(__builtin_popcount(stopped));
    if (stopped != others)
        log("panic: %u of the %u other CPUs did not stop within 100 ms\n",
            uint32_t(__builtin_popcount(others)) - count, uint32_t(__builtin_popcount(others)));
    return count;
}

// An AP, on its own stack, in the kernel's address space, interrupts off:
// the same per-CPU set-up as the boot CPU's; then its running code becomes
// its idle thread (cpu_join), its LAPIC timer starts, and it idles, taking
// interrupts only while it waits (Scheduler::idle_once).
void ap_main(void* arg) {
    auto* s = static_cast<ApStart*>(arg);
    Cpu::set_this_cpu(s->cpu);
    load_gdt_and_tss(*s->tables);
    load_idt();
    init_user_mode_here();
    lapic_enable(false);
    uint32_t id = lapic_id();
    g_apic_ids[s->index] = id;
    if (!cpu_join()) {
        // Not online: the boot CPU logs that it did not report.
        log("smp: cpu %u (apic id %u): no memory for its idle thread; parked\n", s->index, id);
        for (;;) asm volatile("cli; hlt");
    }
    log("smp: cpu %u up (apic id %u)\n", s->index, id);
    if (id != s->apic_id) {
        log("smp: cpu %u was started for apic id %u (a late STARTUP)\n", s->index, s->apic_id);
    }
    g_online.fetch_or(1u << s->index, std::memory_order_release);
    lapic_timer_start_again();
    this_cpu().scheduler.idle_loop();
}

static_assert(mk::x86::kMaxCpus == mk::kMaxCpus, "the MADT's cap is the CPU table's size");
