// Serial port, legacy PIC, local APIC timer (PIT-calibrated) and QEMU exit.
#include "cpu.hpp"
#include "log.hpp"
#include "platform.hpp"
#include "smp.hpp"
#include "spinlock.hpp"
#include "trap.hpp"
#include "x86.hpp"

namespace mk::x86 {

namespace {

constexpr uint16_t kCom1 = 0x3F8;
bool g_exit_on_panic = true;
volatile uint32_t* g_lapic = nullptr;  // the same page on every CPU, each seeing its own
uint32_t g_timer_count = 0;            // the LAPIC timer's period, in its ticks
uint64_t g_tsc_per_ms = 0;             // measured by lapic_timer_start()

// LAPIC registers (offsets in bytes).
constexpr uint32_t kLapicId = 0x20;
constexpr uint32_t kLapicTpr = 0x80;
constexpr uint32_t kLapicEoi = 0xB0;
constexpr uint32_t kLapicSvr = 0xF0;
constexpr uint32_t kLapicLvtTimer = 0x320;
constexpr uint32_t kLapicLvtLint1 = 0x360;
constexpr uint32_t kLvtDeliveryNmi = 4u << 8;
constexpr uint32_t kLvtMasked = 1u << 16;
constexpr uint32_t kLapicIcrLow = 0x300;
constexpr uint32_t kLapicIcrHigh = 0x310;
constexpr uint32_t kLapicTimerInit = 0x380;
constexpr uint32_t kLapicTimerCurrent = 0x390;
constexpr uint32_t kLapicTimerDivide = 0x3E0;

uint32_t lapic_read(uint32_t reg) {
    return g_lapic[reg / 4];
}
void lapic_write(uint32_t reg, uint32_t v) {
    g_lapic[reg / 4] = v;
}

constexpr uint32_t kPitHz = 1193182;

}  // namespace

void serial_init() {
    outb(kCom1 + 1, 0x00);  // no interrupts
    outb(kCom1 + 3, 0x80);  // DLAB
    outb(kCom1 + 0, 0x01);  // divisor 1: 115200 baud
    outb(kCom1 + 1, 0x00);
    outb(kCom1 + 3, 0x03);  // 8N1
    outb(kCom1 + 2, 0xC7);  // FIFO on, cleared, 14-byte threshold
    outb(kCom1 + 4, 0x03);  // DTR, RTS
}

void serial_write(const char* text, uint64_t len) {
    for (uint64_t i = 0; i < len; ++i) {
        if (text[i] == '\n') {
            while ((inb(kCom1 + 5) & 0x20) == 0) {
            }
            outb(kCom1, '\r');
        }
        while ((inb(kCom1 + 5) & 0x20) == 0) {
        }
        outb(kCom1, uint8_t(text[i]));
    }
}

void pic_disable() {
    // ICW1..ICW4: remap to 0x20/0x28 so a spurious PIC interrupt never looks
    // like an exception, then mask every line.
    outb(0x20, 0x11);
    io_wait();
    outb(0xA0, 0x11);
    io_wait();
    outb(0x21, 0x20);
    io_wait();
    outb(0xA1, 0x28);
    io_wait();
    outb(0x21, 0x04);
    io_wait();
    outb(0xA1, 0x02);
    io_wait();
    outb(0x21, 0x01);
    io_wait();
    outb(0xA1, 0x01);
    io_wait();
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
}

bool lapic_present() {
    return (cpuid(1).edx & (1u << 9)) != 0;
}

void lapic_init(uint64_t apic_base_virt) {
    g_lapic = reinterpret_cast<volatile uint32_t*>(apic_base_virt);
    lapic_enable(true);
}

void lapic_enable(bool boot_cpu) {
    constexpr uint64_t kEnable = 1u << 11;
    constexpr uint64_t kX2Apic = 1u << 10;
    uint64_t base = rdmsr(kMsrApicBase);
    if ((base & kX2Apic) != 0) {
        // Firmware left x2APIC mode on, where the MMIO page is dead. The only
        // legal way back to xAPIC mode is through "disabled".
        wrmsr(kMsrApicBase, base & ~(kEnable | kX2Apic));
        base &= ~kX2Apic;
    }
    wrmsr(kMsrApicBase, base | kEnable);
    lapic_write(kLapicTpr, 0);
    lapic_write(kLapicSvr, 0x100 | 0xFF);  // software enable, spurious vector 0xFF
    // LINT1 carries NMIs on PC platforms (watchdogs, QEMU's `nmi`). It comes
    // out of reset masked, and an enabled LAPIC drops what a masked LVT
    // entry would deliver, so unmask it as an NMI input: on the boot CPU
    // only, as the platform wires it to that one (as Linux does).
    lapic_write(kLapicLvtLint1, boot_cpu ? kLvtDeliveryNmi : kLvtMasked | kLvtDeliveryNmi);
}

bool lapic_ready() {
    return g_lapic != nullptr;
}

bool lapic_send_ipi(uint32_t apic_id, uint32_t command) {
    // Destination in ICR[63:56]; writing the low half sends. Delivery
    // status (bit 12) stays set until the local APIC has sent the last
    // one: waited for before this one, not after, so a sender (often under
    // the scheduler lock) does not wait for its own IPI to leave. Bounded,
    // so a wedged APIC is an error, never a hang.
    constexpr uint32_t kDeliveryPending = 1u << 12;
    uint64_t start = Cpu::timestamp();
    uint64_t limit = g_tsc_per_ms == 0 ? 100000000 : g_tsc_per_ms * 10;
    while ((lapic_read(kLapicIcrLow) & kDeliveryPending) != 0) {
        if (Cpu::timestamp() - start > limit) return false;
        __builtin_ia32_pause();
    }
    lapic_write(kLapicIcrHigh, apic_id << 24);
    lapic_write(kLapicIcrLow, command);
    return true;
}

uint64_t tsc_ticks_per_ms() {
    return g_tsc_per_ms;
}

uint32_t lapic_id() {
    return lapic_read(kLapicId) >> 24;
}

void lapic_eoi() {
    lapic_write(kLapicEoi, 0);
}

TimerInfo lapic_timer_start(uint32_t hz) {
    // Measure the LAPIC timer (divide by 16) and the TSC over 10 ms of PIT
    // channel 2 in one-shot mode, gated through port 0x61.
    constexpr uint32_t kWindowMs = 10;
    constexpr uint16_t kPitCount = uint16_t(kPitHz * kWindowMs / 1000);
    lapic_write(kLapicTimerDivide, 0x3);
    lapic_write(kLapicLvtTimer, 1u << 16);  // masked while measuring

    uint8_t gate = inb(0x61);
    outb(0x61, uint8_t((gate & 0xFC) | 0x01));  // gate on, speaker off
    outb(0x43, 0xB0);                           // channel 2, lobyte/hibyte, mode 0
    outb(0x42, uint8_t(kPitCount & 0xFF));
    outb(0x42, uint8_t(kPitCount >> 8));
    // Mode 0 starts counting once the count is written and the gate is high;
    // drop and raise the gate so the count starts from here.
    gate = inb(0x61);
    outb(0x61, uint8_t(gate & 0xFE));
    outb(0x61, uint8_t(gate | 0x01));

    lapic_write(kLapicTimerInit, 0xFFFFFFFF);
    uint64_t tsc0 = Cpu::timestamp();
    while ((inb(0x61) & 0x20) == 0) {
    }
    uint64_t tsc1 = Cpu::timestamp();
    uint32_t elapsed = 0xFFFFFFFF - lapic_read(kLapicTimerCurrent);
    lapic_write(kLapicTimerInit, 0);

    TimerInfo info{};
    info.hz = hz;
    info.apic_ticks_per_ms = elapsed / kWindowMs;
    if (info.apic_ticks_per_ms == 0) info.apic_ticks_per_ms = 1;
    info.tsc_per_ms = (tsc1 - tsc0) / kWindowMs;
    g_tsc_per_ms = info.tsc_per_ms;
    uint32_t count = info.apic_ticks_per_ms * 1000 / hz;
    g_timer_count = count == 0 ? 1 : count;
    lapic_timer_start_again();
    return info;
}

void lapic_timer_start_again() {
    lapic_write(kLapicLvtTimer, kVectorTimer | (1u << 17));  // periodic
    lapic_write(kLapicTimerDivide, 0x3);
    lapic_write(kLapicTimerInit, g_timer_count);
}

void set_exit_on_panic(bool exit) {
    g_exit_on_panic = exit;
}

void machine_exit(uint8_t code) {
    asm volatile("cli");
    outl(kDebugExitPort, code);
    for (;;) asm volatile("hlt");
}

}  // namespace mk::x86

namespace mk {

namespace {
// The serial log's lock: a message goes out whole, on any number of CPUs.
SpinLock g_log_lock{LockLevel::Log};
}  // namespace

void Cpu::log_write(const char* text, size_t len) {
    // A CPU already holding it is inside the log when it faulted or
    // panicked: it writes without the lock rather than wait for itself.
    // So does a panic once the other CPUs are stopped: one of them may
    // have stopped holding it.
    if ((Cpu::held_locks() & HeldLocks::bit(LockLevel::Log)) != 0 || x86::cpus_stopping()) {
        x86::serial_write(text, len);
        return;
    }
    bool irq = g_log_lock.lock();
    x86::serial_write(text, len);
    g_log_lock.unlock(irq);
}

void Cpu::halt_forever() {
    if (x86::g_exit_on_panic) x86::machine_exit(x86::kExitPanic);
    asm volatile("cli");
    for (;;) asm volatile("hlt");
}

namespace x86 {
namespace {
// Written only by NMI handlers, which do not nest on one CPU; atomic, as
// an NMI may reach every CPU at once.
uint64_t g_nmis = 0;
uint64_t g_last_nmi_rip = 0;
}  // namespace

void note_nmi(uint64_t rip) {
    __atomic_fetch_add(&g_nmis, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&g_last_nmi_rip, rip, __ATOMIC_RELAXED);
}
}  // namespace x86

void Cpu::shutdown(bool success) {
    if (x86::g_nmis != 0) {
        log("nmi: %lu taken, the last at %016lx\n", x86::g_nmis, x86::g_last_nmi_rip);
    }
    x86::machine_exit(success ? x86::kExitPass : x86::kExitFail);
}

void Cpu::set_this_cpu(PerCpu* cpu) {
    x86::wrmsr(x86::kMsrGsBase, reinterpret_cast<uint64_t>(cpu));
}

}  // namespace mk
