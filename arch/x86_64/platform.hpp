// x86-64 platform devices and bring-up steps used by arch_main().
#pragma once

#include <cstdint>

namespace mk::x86 {

// COM1, 115200 8N1: the kernel log.
void serial_init();
void serial_write(const char* text, uint64_t len);

// Legacy 8259 PICs: remapped away from the exception vectors and masked.
void pic_disable();

// Local APIC and its timer, calibrated against PIT channel 2.
struct TimerInfo {
    uint32_t hz;  // timer interrupts per second
    uint32_t apic_ticks_per_ms;
    uint64_t tsc_per_ms;  // measured over the same window
};
bool lapic_present();
// Whether lapic_init() mapped the LAPIC registers (IPIs can be sent).
bool lapic_ready();
// Maps the LAPIC registers (the page is the same on every CPU) and enables
// the boot CPU's.
void lapic_init(uint64_t apic_base_virt);
// Enables this CPU's LAPIC in xAPIC mode, spurious vector 0xFF; LINT1 is an
// NMI input on the boot CPU and masked on the others.
void lapic_enable(bool boot_cpu);
// Sends an IPI (ICR command word) to one xAPIC id; false when the LAPIC
// had not sent the previous one within 10 ms (then nothing is sent).
[[nodiscard]] bool lapic_send_ipi(uint32_t apic_id, uint32_t command);
// TSC ticks per millisecond, as lapic_timer_start() measured (0 before).
uint64_t tsc_ticks_per_ms();
TimerInfo lapic_timer_start(uint32_t hz);
// This CPU's LAPIC timer, periodic at the rate lapic_timer_start() measured
// on the boot CPU (every CPU's LAPIC timer runs at the bus clock).
void lapic_timer_start_again();
void lapic_eoi();
uint32_t lapic_id();

// Ends QEMU through isa-debug-exit with `code` (QEMU's status is code*2+1);
// on a machine without the device, halts.
[[noreturn]] void machine_exit(uint8_t code);

// NMIs taken, and where the last one landed; Cpu::shutdown logs them.
void note_nmi(uint64_t rip);
// Whether a panic ends the machine (default) or halts for a debugger (`panic=halt`).
void set_exit_on_panic(bool exit);

// Exit codes the QEMU tests look for.
constexpr uint8_t kExitPass = 0x10;
constexpr uint8_t kExitFail = 0x11;
constexpr uint8_t kExitPanic = 0x12;

}  // namespace mk::x86
