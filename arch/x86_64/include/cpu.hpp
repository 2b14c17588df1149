// x86-64 implementation of the CPU interface (microkernel/cpu_interface.hpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu_interface.hpp"
#include "error.hpp"
#include "pcid.hpp"
#include "trap_frame.hpp"

// arch/x86_64/switch.S: onto a user thread's TrapFrame, and on to
// arch_resume_at_frame (Cpu::switch_user_frames).
extern "C" [[noreturn]] void arch_leave_to_frame(uint64_t frame);

namespace mk {

class Cpu {
  public:
    // Callee-saved state lives on the thread's own kernel stack (at `rsp`
    // while switched out: arch/x86_64/switch.S). A user thread also has an
    // address space, an FS base and an FPU/SSE save area, switched lazily:
    // CR3 and the FS base only when they change, the FPU state at the first
    // FPU instruction (#NM).
    struct Context {
        // Where the switch frame is while switched out; 0: the thread gave
        // its stack up and resumes at its TrapFrame (arch_resume_at_frame).
        uint64_t rsp = 0;
        uint64_t kernel_stack_top = 0;  // 0: the boot thread (never enters user mode)
        uint64_t root = 0;              // page-table root; 0: a kernel thread (any will do)
        uint64_t fs_base = 0;           // a user thread's FS base (TLS pointer), < kFsBaseEnd
        // What switch_fs_base() compares: null while fs_base is 0, else
        // this context (set with fs_base, by set_user_fs_base()).
        const Context* fs_key = nullptr;
        void* fpu = nullptr;    // FXSAVE area of a user thread
        bool fpu_used = false;  // the area holds state (else: fninit at first use)
        // A user thread's address space as the PCID policy knows it (its
        // process's); read only when CR3 changes with PCIDs on.
        const TlbSpace* space = nullptr;
    };

    // A CPU's switch state: what it has loaded. In its PerCpu (arch), at
    // kPerCpuArchOffset (percpu.hpp checks it); switch_state() is this CPU's.
    struct SwitchState {
        // What CR3 holds: the bare root, without the PCID (the shootdown
        // compares it with roots).
        uint64_t loaded_root = 0;
        // Whose FS base MSR_FS_BASE was last set to (the fs_key of that
        // context; null: 0, kStaleFsKey: a context since released); the
        // CPU holds that value or 0 (see switch_fs_base).
        const Context* loaded_fs_key = nullptr;
        Context* fpu_owner = nullptr;  // whose state the FPU registers hold
        bool ts_set = false;           // CR0.TS: the next FPU instruction traps (#NM)
        // CR4.PCIDE: a CR3 load tags the space's entries with a PCID from
        // this CPU's table (load_root_with_pcid). The same on every CPU.
        bool pcid_on = false;
        uint64_t cr0_ts = 0;  // CR0 with TS set (kept at boot: nothing else changes)
    };

    static void init_context(Context& ctx, void* stack_top, void (*entry)(void*), void* arg);
    static void switch_context(Context& from, Context& to);
    // Like switch_context(), for a user thread that blocks in a syscall with
    // nothing on its kernel stack but its user registers: the stack is given
    // up, and when `from` is switched to again it enters mk_resume_at_frame()
    // with its TrapFrame (arch/x86_64/syscall.S).
    static void switch_context_leaving_stack(Context& from, Context& to);
    // switch_context_leaving_stack() from a user thread to a user thread
    // that gave its stack up as well (resumes_at_frame): what the fast
    // path's load_user_context() changes, then on to `to`'s frame and
    // mk_resume_at_frame(). The general path's hand-over between two
    // threads blocking and resuming in IPC syscalls. Inline: it is on every
    // round trip of the general path.
    [[noreturn]] static void switch_user_frames(Context& from, Context& to) {
        load_user_context(switch_state(), from, to);
        arch_leave_to_frame(to.kernel_stack_top - sizeof(TrapFrame));
    }

    // --- The syscall fast path (microkernel/syscall/fastpath.cpp) ---
    // The user registers of a user thread that is in a syscall: the
    // TrapFrame the entry stub built at the top of its kernel stack.
    static TrapFrame& syscall_frame(const Context& ctx) {
        return *reinterpret_cast<TrapFrame*>(ctx.kernel_stack_top - sizeof(TrapFrame));
    }
    // Whether the thread of a switched-out context gave its stack up (it
    // resumes at its TrapFrame) rather than keeping a switch frame there.
    static bool resumes_at_frame(const Context& ctx) { return ctx.rsp == 0; }
    // Makes `to` the context the CPU runs next, without moving to its stack:
    // its kernel stack for entries, address space and FPU ownership (what
    // load_state() does, without the tests for a kernel thread: the fast
    // path's threads are user threads both). The fast path then leaves
    // through `to`'s TrapFrame; `from`, blocked, gives its stack up and
    // resumes at its own frame when switched to (Context::rsp 0). No "memory"
    // clobbers: CR3 and CR0 change nothing the kernel's C++ reads (the
    // kernel half is the same in every address space), and the entry
    // stack slot at %gs:8 is only read by the entry stub.
    // `s` is this CPU's switch state (PerCpu::arch), which the fast path
    // has at hand.
    static void load_user_context(SwitchState& s, Context& from, const Context& to) {
        asm volatile("mov %0, %%gs:8" ::"r"(to.kernel_stack_top));
        // [[likely]] keeps the CR3 block in line, as GCC laid it out before
        // load_root_untagged() became an asm goto (else: one jmp more).
        if (to.root != s.loaded_root) [[likely]] {
            if (!load_root_untagged(s, to)) [[unlikely]]
                load_root_with_pcid(to);
        }
        switch_fs_base(s, to);
        // set_fpu_trap(s.fpu_owner != &to), tested in the order that costs
        // least when TS does not change.
        if (s.fpu_owner == &to) {
            if (s.ts_set) {
                asm volatile("clts");
                s.ts_set = false;
            }
        } else if (!s.ts_set) {
            asm volatile("mov %0, %%cr0" ::"r"(s.cr0_ts));
            s.ts_set = true;
        }
        from.rsp = 0;
    }

    // What every switch to `to` changes besides the stack: the stack the
    // next entry from user mode moves to (%gs:8, which the syscall and
    // interrupt stubs read; TSS.rsp0 stays this CPU's entry stack), the
    // address space (CR3 only when it changes) and the FPU trap
    // (CR0.TS set unless `to` owns the FPU registers; written only when it
    // changes). Inline: the fast path pays for every instruction. False
    // when the address space changes with PCIDs on, having changed nothing
    // past the entry stack: the caller then calls load_state_with_pcid(),
    // which its function may tail-call without keeping anything live
    // across a call on the way without PCIDs.
    [[nodiscard]] static bool load_state(const Context& to) {
        SwitchState& s = switch_state();
        if (to.kernel_stack_top != 0)
            asm volatile("mov %0, %%gs:8" ::"r"(to.kernel_stack_top) : "memory");
        if (to.root != 0 && to.root != s.loaded_root) {
            if (!load_root_untagged(s, to)) [[unlikely]]
                return false;
        }
        if (to.fpu != nullptr) {  // a user thread
            switch_fs_base(s, to);
            set_fpu_trap(s.fpu_owner != &to);
        }
        return true;
    }
    // load_state() with PCIDs on, when it returned false (context.cpp).
    static void load_state_with_pcid(const Context& to);

    // The CR3 change of a switch to a user thread's address space, without
    // PCIDs: loaded_root first, then CR3, in this order (the TLB shootdown
    // reads loaded_root: context.cpp); one asm, so no "memory" (CR3
    // changes nothing the kernel's C++ reads). False, having done nothing,
    // with PCIDs on: the caller calls load_root_with_pcid(). The test of
    // pcid_on is in the asm, so that the compiler cannot prepare that
    // call's argument or move the block out of line on the way without
    // PCIDs: the cmpb and jne, and an address for the two operands, are
    // what PCID support costs a switch without PCIDs (docs/smp.md).
    [[nodiscard]] static bool load_root_untagged(SwitchState& s, const Context& to) {
        asm goto(
            "cmpb $0, %[pcid_on]\n\t"
            "jne %l[tagged]\n\t"
            "movq %[root], %[loaded_root]\n\t"
            "mov %[root], %%cr3"
            : [loaded_root] "+m"(s.loaded_root)
            : [pcid_on] "m"(s.pcid_on), [root] "r"(to.root)
            :
            : tagged);
        return true;
    tagged:
        [[unlikely]] return false;
    }

    // With PCIDs on: loads `to`'s address space (a user thread's) with
    // the PCID this CPU's table gives it, flushing that PCID's entries
    // only when the table says they may be stale (arch/x86_64/context.cpp).
    // Out of line, on this CPU's switch state (no argument for it: the
    // callers' address of it stays out of their way without PCIDs).
    static void load_root_with_pcid(const Context& to);

    // Makes the CPU's FS base `to`'s. Ring 3 cannot write the FS base
    // (CR4.FSGSBASE stays off), but loading a selector into FS sets it to
    // that descriptor's base, 0 for every segment it can load, or (a null
    // selector) to 0 or leaves it as it was, by vendor. So a loaded value of
    // 0 is certain, and a nonzero one may have become 0, but only by the
    // thread that ran with it: the MSR write is skipped when the value is 0
    // or `to` is that thread (its own selector load is its own affair, as on
    // Linux), never for another thread with the same value (two processes
    // with their TLS at the same address).
    //
    // That is one compare of keys (Context::fs_key, SwitchState::loaded_fs_key):
    // null for 0, else the context whose value was written, so another
    // thread's equal value does not match.
    static void switch_fs_base(const SwitchState& s, const Context& to) {
        if (to.fs_key != s.loaded_fs_key) [[unlikely]]
            load_fs_base(to);
    }
    // Writes MSR_FS_BASE with ctx.fs_base (arch/x86_64/context.cpp).
    static void load_fs_base(const Context& ctx);

    // SwitchState::loaded_fs_key of a value written for a context that no
    // longer exists: matches no context, so the next switch writes again.
    static const Context kStaleFsKey;
    using PerCpuState = SwitchState;
    static SwitchState& switch_state() {
        SwitchState* s;
        asm volatile("mov %%gs:0, %0; add %1, %0" : "=r"(s) : "i"(kPerCpuArchOffset));
        return *s;
    }

    // Sets CR0.TS from the value kept at boot (no read of CR0), or clears
    // it with clts; only when it changes.
    static void set_fpu_trap(bool on) {
        SwitchState& s = switch_state();
        if (s.ts_set == on) return;
        if (on) {
            asm volatile("mov %0, %%cr0" ::"r"(s.cr0_ts));
        } else {
            asm volatile("clts");
        }
        s.ts_set = on;
    }
    static constexpr uint64_t kCr0Ts = 1u << 3;

    // --- User threads ---
    // Makes ctx (after init_context) a user thread's, running in `root`,
    // the address space the PCID policy knows as `space` (which outlives
    // the thread).
    [[nodiscard]] static Error init_user_context(Context& ctx, uint64_t root,
                                                 const TlbSpace& space);
    // The thread of ctx ended and this CPU left it for good: the CPU forgets
    // it (its address space, if loaded, gives way to the kernel's; its FPU
    // ownership and FS base key go).
    static void retire_context(Context& ctx);
    // The thread of ctx, not running, moves to another CPU; this one, where
    // it ran last, saves what it keeps loaded for it (the FPU registers)
    // and forgets its FS base key, so the next CPU finds it all in ctx.
    static void unload_context(Context& ctx);
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
    // Frees the page tables and every frame still mapped. Every thread of
    // it is off every CPU for good. `ran`: threads of it may have run, and
    // a CPU may still hold the root loaded: it gives it up first (a
    // shootdown: no lock held, not in an interrupt). Else no CPU ever
    // loaded it, and the caller may hold locks.
    static void user_space_destroy(uint64_t root, bool ran);
    // Maps `frame` at `virt` (4 KiB, in the user half) with abi::Prot bits.
    [[nodiscard]] static Error user_map(uint64_t root, uint64_t virt, uint64_t frame,
                                        uint32_t prot);
    // Unmaps one page; returns its frame. The caller frees it after
    // flush_user_tlb(), and so the page tables the unmap left empty, which
    // it hands to retire(ctx, frame) rather than free: another CPU may
    // still walk them through its paging-structure caches until then.
    [[nodiscard]] static Result<uint64_t> user_unmap(uint64_t root, uint64_t virt,
                                                     void (*retire)(void* ctx, uint64_t frame),
                                                     void* ctx);
    // After user_unmap() of [virt, virt + pages pages) in `root`: no CPU
    // keeps a translation of it (a TLB shootdown). With no lock held and not
    // in an interrupt: it waits for the other CPUs.
    static void flush_user_tlb(uint64_t root, uint64_t virt, size_t pages);
    // The frame behind a user-accessible page (writable, when `write`).
    [[nodiscard]] static Result<uint64_t> user_frame(uint64_t root, uint64_t virt, bool write);
    // A frame as the kernel sees it (the direct map).
    static void* frame_to_kernel(uint64_t frame);
    // Fills a frame with zeros (through the direct map).
    static void zero_frame(uint64_t frame);

    // --- Kernel stacks (microkernel/kernel_stack.hpp, arch/x86_64/paging.hpp) ---
    // Maps slot `slot`'s stack with memory from the kernel heap, its guard
    // left unmapped; OutOfMemory, with nothing kept, when it runs out.
    [[nodiscard]] static Result<void*> kernel_stack_map(uint32_t slot);
    // Unmaps the stacks of `count` slots (at most kKernelStackCacheSize),
    // shoots their pages down on every CPU at once (no lock held, not in
    // an interrupt) and frees their memory.
    static void kernel_stacks_unmap(const uint32_t* slots, size_t count);

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
    // A fixed IPI (arch/x86_64/smp.cpp).
    static void notify_cpu(uint32_t index);

    static void set_this_cpu(PerCpu* cpu);
    static PerCpu* this_cpu() {
        PerCpu* cpu;
        asm volatile("mov %%gs:0, %0" : "=r"(cpu));
        return cpu;
    }
    // HeldLocks::mask, at a fixed offset from the per-CPU base (percpu.hpp
    // checks it): one move each. Volatile, so that reads and writes keep
    // their order; nothing else reads the mask but assertions, through
    // these.
    static uint64_t held_locks() {
        uint64_t mask;
        asm volatile("movq %%gs:%c1, %0" : "=r"(mask) : "i"(kHeldLocksOffset));
        return mask;
    }
    static void set_held_locks(uint64_t mask) {
        asm volatile("movq %0, %%gs:%c1" ::"r"(mask), "i"(kHeldLocksOffset));
    }
    // PerCpu::index, at a fixed offset from the per-CPU base (percpu.hpp checks it).
    static uint32_t cpu_index() {
        uint32_t index;
        asm volatile("movl %%gs:%c1, %0" : "=r"(index) : "i"(kPerCpuIndexOffset));
        return index;
    }

    static uint64_t timestamp() {
        uint32_t lo, hi;
        asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
        return (uint64_t(hi) << 32) | lo;
    }

    static void log_write(const char* text, size_t len);
    // Stops every other CPU for good (an NMI to all but this one), waiting
    // up to 100 ms for them; returns how many stopped. For a panic.
    static uint32_t stop_other_cpus();
    [[noreturn]] static void halt_forever();
    [[noreturn]] static void shutdown(bool success);
};

inline const Cpu::Context Cpu::kStaleFsKey{};

static_assert(CpuInterface<Cpu>);

}  // namespace mk
