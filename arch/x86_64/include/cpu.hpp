// x86-64 implementation of the CPU interface (microkernel/cpu_interface.hpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu_interface.hpp"
#include "error.hpp"

namespace mk {

class Cpu {
  public:
    // Callee-saved state lives on the thread's own kernel stack (at `rsp`
    // while switched out: arch/x86_64/switch.S). A user thread also has an
    // address space, an FS base and an FPU/SSE save area, switched lazily:
    // CR3 and the FS base only when they change, the FPU state at the first
    // FPU instruction (#NM).
    struct Context {
        uint64_t rsp = 0;
        uint64_t kernel_stack_top = 0;  // 0: the boot thread (never enters user mode)
        uint64_t root = 0;              // page-table root; 0: a kernel thread (any will do)
        uint64_t fs_base = 0;           // a user thread's FS base (TLS pointer), < kFsBaseEnd
        void* fpu = nullptr;            // FXSAVE area of a user thread
        bool fpu_used = false;          // the area holds state (else: fninit at first use)
    };

    static void init_context(Context& ctx, void* stack_top, void (*entry)(void*), void* arg);
    static void switch_context(Context& from, Context& to);

    // --- User threads ---
    // Makes ctx (after init_context) a user thread's, running in `root`.
    [[nodiscard]] static Error init_user_context(Context& ctx, uint64_t root);
    // Frees what init_user_context took; the thread never runs again.
    static void release_context(Context& ctx);
    // The current user thread's FS base from now on (below abi::kFsBaseEnd:
    // the caller checks): kept in its context, loaded into the CPU at once.
    static void set_user_fs_base(Context& current, uint64_t base);
    // From the current thread's own kernel code, never returns: drops to
    // ring 3 at rip with rsp, and arg in rdi, every other register zero.
    [[noreturn]] static void enter_user(uint64_t rip, uint64_t rsp, uint64_t arg);

    // --- User address spaces (a root per process) ---
    [[nodiscard]] static Result<uint64_t> user_space_create();
    // Frees the page tables and every frame still mapped. Not while active
    // on a CPU: the caller has switched every thread of it off for good.
    static void user_space_destroy(uint64_t root);
    // Maps `frame` at `virt` (4 KiB, in the user half) with abi::Prot bits.
    [[nodiscard]] static Error user_map(uint64_t root, uint64_t virt, uint64_t frame,
                                        uint32_t prot);
    // Unmaps one page; returns its frame (the caller frees it).
    [[nodiscard]] static Result<uint64_t> user_unmap(uint64_t root, uint64_t virt);
    // The frame behind a user-accessible page (writable, when `write`).
    [[nodiscard]] static Result<uint64_t> user_frame(uint64_t root, uint64_t virt, bool write);
    // A frame as the kernel sees it (the direct map).
    static void* frame_to_kernel(uint64_t frame);
    // Fills a frame with zeros (through the direct map).
    static void zero_frame(uint64_t frame);

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
