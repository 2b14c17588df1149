// GDT with a TSS (IST stacks for double fault, NMI, machine check) per CPU,
// and the IDT all CPUs share.
#include <cstddef>
#include <cstdint>

#include "kernel_stack.hpp"
#include "memory.hpp"
#include "trap.hpp"

extern "C" const uint64_t isr_stub_table[256];

namespace mk::x86 {

namespace {

struct [[gnu::packed]] Tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};

struct [[gnu::packed]] DescriptorPointer {
    uint16_t limit;
    uint64_t base;
};

struct IdtEntry {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
};
static_assert(sizeof(IdtEntry) == 16);

constexpr uint16_t kTssSelector = 0x28;

// null, kernel code, kernel data, user data, user code, TSS (two slots).
// The user segments sit where SYSRET expects them (STAR base 0x10).
constexpr uint64_t kGdtTemplate[7] = {
    0,
    0x00AF9A000000FFFF,  // 0x08 kernel code, 64-bit
    0x00CF92000000FFFF,  // 0x10 kernel data
    0x00CFF2000000FFFF,  // 0x18 user data (DPL 3)
    0x00AFFA000000FFFF,  // 0x20 user code, 64-bit (DPL 3)
    0,
    0,
};

constexpr uint64_t kIstStackSize = 8192;

alignas(16) IdtEntry g_idt[256];

void set_gate(uint8_t vector, uint64_t handler, uint8_t ist, uint8_t dpl) {
    IdtEntry& e = g_idt[vector];
    e.offset_low = uint16_t(handler);
    e.selector = kKernelCode;
    e.ist = ist;
    e.type_attr = uint8_t(0x80 | (dpl << 5) | 0xE);  // present, interrupt gate
    e.offset_mid = uint16_t(handler >> 16);
    e.offset_high = uint32_t(handler >> 32);
    e.reserved = 0;
}

}  // namespace

// The stack an interrupt or exception from ring 3 lands on (TSS.rsp0),
// one per CPU and never changed: the entry stub moves the CPU's five words,
// the error code and the vector from it to the current thread's kernel
// stack at once (isr.S), with interrupts off. So a switch writes no TSS.
constexpr size_t kEntryStackSize = 256;

// One CPU's GDT (its TSS descriptor is its own), TSS, entry stack and the
// tops of its interrupt stacks (double fault, NMI, machine check): kernel
// stacks, with guard pages (the boot CPU's in its image until the kernel
// heap is up: init_boot_interrupt_stacks).
struct CpuTables {
    alignas(16) uint64_t gdt[7];
    alignas(16) Tss tss;
    uint64_t ist_top[3];
    alignas(16) uint8_t entry_stack[kEntryStackSize];
};

namespace {
// Aligned to a cache line, so that the TSS's IST entries (at offset 100
// to 124 of it) sit in one line, each written by one 8-byte store that
// an exception in between sees whole (init_boot_interrupt_stacks).
alignas(64) CpuTables g_boot_tables;
static_assert(offsetof(CpuTables, tss) % 64 == 0 && offsetof(Tss, ist) + 3 * 8 <= 64);
// The boot CPU's IST stacks from its first instruction until the kernel
// heap is up; unused afterwards.
alignas(16) uint8_t g_boot_ist_stacks[3][kIstStackSize];
}  // namespace

void load_gdt_and_tss(CpuTables& t) {
    for (size_t i = 0; i < 7; ++i) t.gdt[i] = kGdtTemplate[i];
    t.tss = Tss{};
    t.tss.rsp[0] = reinterpret_cast<uint64_t>(t.entry_stack + kEntryStackSize);
    t.tss.ist[kIstDoubleFault - 1] = t.ist_top[0];
    t.tss.ist[kIstNmi - 1] = t.ist_top[1];
    t.tss.ist[kIstMachineCheck - 1] = t.ist_top[2];
    t.tss.iomap_base = sizeof(Tss);  // no I/O permission bitmap

    uint64_t base = reinterpret_cast<uint64_t>(&t.tss);
    uint64_t limit = sizeof(Tss) - 1;
    t.gdt[5] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (uint64_t(0x89) << 40) |
               (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
    t.gdt[6] = base >> 32;

    DescriptorPointer gdtr{sizeof(t.gdt) - 1, reinterpret_cast<uint64_t>(t.gdt)};
    asm volatile(
        "lgdt %0\n"
        "pushq %1\n"
        "leaq 1f(%%rip), %%rax\n"
        "pushq %%rax\n"
        "lretq\n"
        "1:\n"
        "mov %2, %%ds\n"
        "mov %2, %%es\n"
        "mov %2, %%ss\n"
        :
        : "m"(gdtr), "i"(uint64_t(kKernelCode)), "r"(uint32_t(kKernelData))
        : "rax", "memory");
    asm volatile("ltr %0" ::"r"(kTssSelector));
}

void init_gdt_and_tss() {
    for (size_t i = 0; i < 3; ++i)
        g_boot_tables.ist_top[i] = reinterpret_cast<uint64_t>(g_boot_ist_stacks[i] + kIstStackSize);
    load_gdt_and_tss(g_boot_tables);
}

void init_boot_interrupt_stacks() {
    constexpr uint8_t kIst[3] = {kIstDoubleFault, kIstNmi, kIstMachineCheck};
    for (size_t i = 0; i < 3; ++i) {
        Result<KernelStack> s = kernel_stack_create();
        if (!s) MK_PANIC("cpu: no memory for the boot CPU's interrupt stacks");
        const uint64_t top = reinterpret_cast<uint64_t>(s.value().top);
        g_boot_tables.ist_top[i] = top;
        // The CPU reads an IST entry from the TSS each time it delivers
        // through it: the next exception uses the new stack, nothing is
        // reloaded. An NMI may come at any time, so one store, inside a
        // cache line (atomic, though not 8-byte aligned in the packed TSS).
        asm volatile("movq %1, %0" : "=m"(g_boot_tables.tss.ist[kIst[i] - 1]) : "r"(top));
    }
}

CpuTables* cpu_tables_create() {
    auto* t = knew<CpuTables>();
    if (t == nullptr) return nullptr;
    KernelStack stacks[3];
    for (size_t i = 0; i < 3; ++i) {
        Result<KernelStack> s = kernel_stack_create();
        if (!s) {
            while (i-- > 0) kernel_stack_destroy(stacks[i]);
            kdelete(t);
            return nullptr;
        }
        stacks[i] = s.value();
        t->ist_top[i] = reinterpret_cast<uint64_t>(s.value().top);
    }
    return t;
}

void load_idt() {
    DescriptorPointer idtr{sizeof(g_idt) - 1, reinterpret_cast<uint64_t>(g_idt)};
    asm volatile("lidt %0" ::"m"(idtr));
}

void init_idt() {
    for (unsigned v = 0; v < 256; ++v) set_gate(uint8_t(v), isr_stub_table[v], 0, 0);
    set_gate(8, isr_stub_table[8], kIstDoubleFault, 0);
    set_gate(2, isr_stub_table[2], kIstNmi, 0);
    set_gate(18, isr_stub_table[18], kIstMachineCheck, 0);
    // The yield vector is callable from ring 3 (int 0x50); every other gate
    // raised by software from user mode is a #GP.
    set_gate(kVectorYield, isr_stub_table[kVectorYield], 0, 3);
    load_idt();
}

}  // namespace mk::x86
