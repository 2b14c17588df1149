// The frame every interrupt stub builds (arch/x86_64/isr.S), and the vectors.
#pragma once

#include <cstdint>

namespace mk::x86 {

struct TrapFrame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;  // pushed by the CPU
};

constexpr uint8_t kVectorPicBase = 0x20;   // legacy PIC, remapped then masked
constexpr uint8_t kVectorTimer = 0x30;     // LAPIC timer
constexpr uint8_t kVectorYield = 0x50;     // the yield vector
constexpr uint8_t kVectorSpurious = 0xFF;  // LAPIC spurious interrupts

constexpr uint8_t kIstDoubleFault = 1;
constexpr uint8_t kIstNmi = 2;
constexpr uint8_t kIstMachineCheck = 3;

void init_gdt_and_tss();
void init_idt();

}  // namespace mk::x86
