// Starting the application processors and parking them (docs/smp.md).
#pragma once

#include <cstddef>
#include <cstdint>

#include "acpi.hpp"
#include "frame_allocator.hpp"

namespace mk::x86 {

// CPUs this kernel runs at most, the boot CPU included: the MADT parser's cap.
constexpr size_t kMaxCpus = acpi::MadtInfo::kMaxProcessors;

// The trampoline's physical pages: its code and data, then the temporary
// page tables (PML4, PDPT, PD, PT). Inside the first MiB, which the frame
// allocator never hands out; the memory map must call them usable RAM.
constexpr uint64_t kApTrampolineBase = 0x8000;  // boot/ap_trampoline.S: AP_BASE
constexpr uint64_t kApTrampolinePages = 5;
constexpr uint64_t kApTrampolineEnd = kApTrampolineBase + kApTrampolinePages * 4096;
static_assert(kApTrampolineEnd <= 0x100000 && kApTrampolineBase % 4096 == 0,
              "the STARTUP vector names a page below 1 MiB");

// Starts, one at a time, the enabled processors `madt` lists other than
// this one, and waits for each to report itself up (at most a second: one
// that does not is logged and skipped). `usable` is the firmware's usable RAM and
// `reserved` what the kernel keeps (boot information, modules), which the
// trampoline pages must avoid. Returns the number of CPUs online, this one
// included. Runs on the boot CPU after the heap and the LAPIC timer, with
// interrupts off.
// Sends `vector` to CPU `index` (PerCpu::index, online), fixed delivery;
// false, logged, when the local APIC did not send it.
bool send_ipi(uint32_t index, uint8_t vector);

// Whether a CPU is stopping the others (Cpu::stop_other_cpus, a panic):
// the NMI handler then stops this one (stop_here), for good.
bool cpus_stopping();
[[noreturn]] void stop_here();

size_t start_application_processors(const acpi::MadtInfo& madt, PhysRanges usable,
                                    PhysRanges reserved);

}  // namespace mk::x86
