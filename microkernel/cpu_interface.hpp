// The one interface through which the portable core reaches the processor.
//
// The core includes "cpu.hpp", which the include path resolves to the x86-64
// implementation (arch/x86_64/include/cpu.hpp) in the kernel build and to the
// host fake (tests/unit/fake/cpu.hpp) in the unit tests. Each implementation
// proves here, with a static_assert, that it provides everything the core uses.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "error.hpp"

namespace mk {

struct PerCpu;

// Where PerCpu keeps its index (percpu.hpp checks it), for a cpu_index()
// that reads it straight from the per-CPU base.
constexpr size_t kPerCpuIndexOffset = 24;
// Where PerCpu keeps the architecture's own per-CPU state (Cpu::PerCpuState).
constexpr size_t kPerCpuArchOffset = 40;
// Where PerCpu keeps its HeldLocks (spinlock.hpp; percpu.hpp checks it), for
// held_locks() and set_held_locks() straight from the per-CPU base.
constexpr size_t kHeldLocksOffset = 32;

template <typename C>
concept CpuInterface = requires(typename C::Context& ctx, void (*entry)(void*), void* arg,
                                void* stack_top, PerCpu* per_cpu, const char* text, size_t len,
                                bool flag, uint32_t index, const uint32_t* slots, size_t count) {
    // Prepare a context that, when first switched to, calls
    // mk_thread_start(entry, arg) on the given stack.
    { C::init_context(ctx, stack_top, entry, arg) } -> std::same_as<void>;
    // Save the callee-saved state of the running thread into `from` and
    // resume `to`. Returns when something switches back to `from`.
    { C::switch_context(ctx, ctx) } -> std::same_as<void>;
    // The same for a user thread blocking in a syscall with nothing on its
    // kernel stack but its user registers: `from` gives its stack up, and
    // when switched to again it runs mk_resume_at_frame() instead of
    // returning here.
    { C::switch_context_leaving_stack(ctx, ctx) } -> std::same_as<void>;
    // The same when `to` is a user thread that gave its stack up too: it
    // resumes in mk_resume_at_frame() at once (both are user threads, so
    // none of the tests for a kernel thread is made on the way).
    { C::switch_user_frames(ctx, ctx) } -> std::same_as<void>;
    // The thread of ctx ended, and this CPU is about to leave it for good:
    // it forgets whatever it keeps loaded for it (address space, FPU
    // registers, FS base), so nothing of it outlives the thread's memory.
    { C::retire_context(ctx) } -> std::same_as<void>;

    // Kernel stacks (microkernel/kernel_stack.hpp): maps slot `index`'s
    // stack, kKernelStackSize bytes with an unmapped guard page below,
    // and returns its top (OutOfMemory, with nothing kept, when memory runs
    // out); unmaps the stacks of `count` slots (at most
    // kKernelStackCacheSize), waits until no CPU keeps a translation of
    // them (one shootdown for all; no lock held, not in an interrupt) and
    // frees their memory.
    { C::kernel_stack_map(index) } -> std::same_as<Result<void*>>;
    { C::kernel_stacks_unmap(slots, count) } -> std::same_as<void>;

    { C::interrupts_enabled() } -> std::same_as<bool>;
    // Disable interrupts; returns whether they were enabled before.
    { C::save_and_disable_interrupts() } -> std::same_as<bool>;
    { C::restore_interrupts(flag) } -> std::same_as<void>;
    // Enable interrupts and wait for one (atomically: no wake-up is missed).
    { C::enable_and_wait_for_interrupt() } -> std::same_as<void>;

    // Enter the yield vector (int 0x50) from thread context.
    { C::raise_yield_vector() } -> std::same_as<void>;
    // Interrupt CPU `index` (PerCpu::index, another one): it enters the
    // kernel and runs Scheduler::on_notify(). An interrupt sent while that
    // CPU has interrupts off is taken when it turns them on.
    { C::notify_cpu(index) } -> std::same_as<void>;

    // Per-CPU state: one accessor, no global "current thread".
    { C::set_this_cpu(per_cpu) } -> std::same_as<void>;
    { C::this_cpu() } -> std::same_as<PerCpu*>;
    { C::cpu_index() } -> std::same_as<uint32_t>;
    // This CPU's set of held lock levels (HeldLocks::mask, spinlock.hpp),
    // read and written through the per-CPU base: every lock and unlock does
    // both, so no pointer to the per-CPU area and no test of it. Where
    // there is no per-CPU area (the host fake before set_this_cpu) it reads
    // 0 and ignores writes; the kernel has one from its first instruction
    // on (arch_main, an AP's ap_main).
    { C::held_locks() } -> std::same_as<uint64_t>;
    { C::set_held_locks(uint64_t{}) } -> std::same_as<void>;

    { C::timestamp() } -> std::same_as<uint64_t>;
    // The kernel log (COM1 on x86-64).
    { C::log_write(text, len) } -> std::same_as<void>;
    // Stop every other CPU for good, and say how many stopped (a panic).
    { C::stop_other_cpus() } -> std::same_as<uint32_t>;
    // Stop this CPU for good (after a panic).
    { C::halt_forever() } -> std::same_as<void>;
    // Power the machine off, reporting success or failure to whoever runs it
    // (QEMU's isa-debug-exit in the boot tests).
    { C::shutdown(flag) } -> std::same_as<void>;
};

}  // namespace mk

// Entered on a new thread's stack by its first switch; defined by the core.
extern "C" [[noreturn]] void mk_thread_start(void (*entry)(void*), void* arg);

// Entered by a user thread that gave its stack up in a syscall
// (switch_context_leaving_stack) when it runs again, with the scheduler lock
// handed over and its user registers as the entry stub saved them; finishes
// the syscall and returns, and the architecture then returns to user mode
// through `frame`. Defined by the core (microkernel/syscall/ipc.cpp).
namespace mk {
struct TrapFrame;
}
extern "C" void mk_resume_at_frame(mk::TrapFrame* frame);
