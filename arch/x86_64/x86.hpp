// x86-64 instructions the arch code needs: port I/O, MSRs, control registers.
#pragma once

#include <cstdint>

namespace mk::x86 {

inline void outb(uint16_t port, uint8_t v) {
    asm volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}
inline void outw(uint16_t port, uint16_t v) {
    asm volatile("outw %0, %1" ::"a"(v), "Nd"(port));
}
inline void outl(uint16_t port, uint32_t v) {
    asm volatile("outl %0, %1" ::"a"(v), "Nd"(port));
}
inline uint8_t inb(uint16_t port) {
    uint8_t v;
    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

inline uint64_t rdmsr(uint32_t msr) {
    uint32_t lo, hi;
    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t(hi) << 32) | lo;
}
inline void wrmsr(uint32_t msr, uint64_t v) {
    asm volatile("wrmsr" ::"c"(msr), "a"(uint32_t(v)), "d"(uint32_t(v >> 32)));
}

inline uint64_t read_cr0() {
    uint64_t v;
    asm volatile("mov %%cr0, %0" : "=r"(v));
    return v;
}
inline void write_cr0(uint64_t v) {
    asm volatile("mov %0, %%cr0" ::"r"(v) : "memory");
}
inline uint64_t read_cr2() {
    uint64_t v;
    asm volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}
inline uint64_t read_cr3() {
    uint64_t v;
    asm volatile("mov %%cr3, %0" : "=r"(v));
    return v;
}
inline void write_cr3(uint64_t v) {
    asm volatile("mov %0, %%cr3" ::"r"(v) : "memory");
}
inline uint64_t read_cr4() {
    uint64_t v;
    asm volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}
inline void write_cr4(uint64_t v) {
    asm volatile("mov %0, %%cr4" ::"r"(v) : "memory");
}

struct CpuidResult {
    uint32_t eax, ebx, ecx, edx;
};
inline CpuidResult cpuid(uint32_t leaf, uint32_t subleaf = 0) {
    CpuidResult r;
    asm volatile("cpuid"
                 : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
                 : "a"(leaf), "c"(subleaf));
    return r;
}

inline void io_wait() {
    outb(0x80, 0);
}

constexpr uint32_t kMsrApicBase = 0x1B;
constexpr uint32_t kMsrEfer = 0xC0000080;
constexpr uint32_t kMsrGsBase = 0xC0000101;
constexpr uint32_t kMsrKernelGsBase = 0xC0000102;
// CR4.PCIDE: CR3[11:0] is a process-context id (arch/x86_64/context.cpp).
constexpr uint64_t kCr4Pcide = 1u << 17;

// The isa-debug-exit device QEMU tests attach: QEMU exits with (code << 1) | 1.
constexpr uint16_t kDebugExitPort = 0xf4;

}  // namespace mk::x86
