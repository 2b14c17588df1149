// x86-64 implementation of the CPU interface (microkernel/cpu_interface.hpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu_interface.hpp"

namespace mk {

class Cpu {
  public:
    // Callee-saved state lives on the thread's own kernel stack; the context
    // is only the stack pointer at the switch (arch/x86_64/switch.S).
    struct Context {
        uint64_t rsp = 0;
    };

    static void init_context(Context& ctx, void* stack_top, void (*entry)(void*), void* arg);
    static void switch_context(Context& from, Context& to);

    static bool interrupts_enabled() {
        uint64_t flags;
        asm volatile("pushfq; pop %0" : "=r"(flags));
        return (flags & (1u << 9)) != 0;
    }
    static bool save_and_disable_interrupts() {
        bool was = interrupts_enabled();
        asm volatile("cli" ::: "memory");
        return was;
    }
    static void restore_interrupts(bool enabled) {
        if (enabled) asm volatile("sti" ::: "memory");
    }
    // sti takes effect after the next instruction, so no interrupt can land
    // between it and hlt.
    static void enable_and_wait_for_interrupt() { asm volatile("sti; hlt" ::: "memory"); }

    static void raise_yield_vector() { asm volatile("int $0x50" ::: "memory"); }

    static void set_this_cpu(PerCpu* cpu);
    static PerCpu* this_cpu() {
        PerCpu* cpu;
        asm volatile("mov %%gs:0, %0" : "=r"(cpu));
        return cpu;
    }
    static uint32_t cpu_index() { return 0; }

    static uint64_t timestamp() {
        uint32_t lo, hi;
        asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
        return (uint64_t(hi) << 32) | lo;
    }

    static void log_write(const char* text, size_t len);
    [[noreturn]] static void halt_forever();
    [[noreturn]] static void shutdown(bool success);
};

static_assert(CpuInterface<Cpu>);

}  // namespace mk
