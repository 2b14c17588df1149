// The frame every interrupt stub builds (arch/x86_64/isr.S), and the vectors.
#pragma once

#include <cstdint>

#include "trap_frame.hpp"

namespace mk::x86 {

using mk::TrapFrame;

constexpr uint8_t kVectorPicBase = 0x20;   // legacy PIC, remapped then masked
constexpr uint8_t kVectorTimer = 0x30;     // LAPIC timer
constexpr uint8_t kVectorNotify = 0x31;    // another CPU's Cpu::notify_cpu()
constexpr uint8_t kVectorTlb = 0x32;       // another CPU's TLB shootdown (context.cpp)
constexpr uint8_t kVectorYield = 0x50;     // the yield vector
constexpr uint8_t kVectorSpurious = 0xFF;  // LAPIC spurious interrupts

constexpr uint8_t kIstDoubleFault = 1;
constexpr uint8_t kIstNmi = 2;
constexpr uint8_t kIstMachineCheck = 3;

// GDT selectors. The user segments sit where SYSRET expects them.
constexpr uint16_t kKernelCode = 0x08;
constexpr uint16_t kKernelData = 0x10;
constexpr uint16_t kUserData = 0x18 | 3;
constexpr uint16_t kUserCode = 0x20 | 3;

// The boot CPU's GDT and TSS (static storage), and the IDT (filled and loaded).
void init_gdt_and_tss();
void init_idt();
// The boot CPU's three IST stacks move from its image (where they have no
// guard) to kernel stacks, with guard pages, like the other CPUs': once
// kernel stacks can be made (the kernel heap is up). Panics when they
// cannot be had, as the boot cannot go on without memory.
void init_boot_interrupt_stacks();
// Another CPU's: its tables come from the kernel heap and its three IST
// stacks are kernel stacks, with guard pages (null when memory runs out),
// made by the boot CPU; the CPU itself loads them, and the shared IDT.
struct CpuTables;
CpuTables* cpu_tables_create();
void load_gdt_and_tss(CpuTables& tables);
void load_idt();

}  // namespace mk::x86
