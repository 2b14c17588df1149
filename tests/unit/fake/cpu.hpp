// Host fake of the CPU interface: records what the core asks of the processor
// so the scheduler and IPC state machines run under GoogleTest.
//
// switch_context() does not run anything: it records the switch and returns.
// A test therefore drives the core as a state machine: it acts as whichever
// thread the core says is current, and checks the recorded switches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cpu_interface.hpp"
#include "error.hpp"
#include "pcid.hpp"
#include "trap_frame.hpp"

namespace mk {

class Cpu {
  public:
    struct Context {
        void* stack_top = nullptr;
        void (*entry)(void*) = nullptr;
        void* arg = nullptr;
        uint64_t fs_base = 0;  // a user thread's FS base, as on the hardware
        int id = 0;            // set by tests for readable switch logs
        // A user thread's registers as the syscall entry stub saves them at
        // the top of its kernel stack; tests fill it to play a syscall.
        TrapFrame frame{};
        // Switched out giving its stack up (switch_context_leaving_stack(),
        // load_context()), as the hardware's Context::rsp 0 says.
        bool gave_stack_up = false;
    };

    struct PerCpuState {};  // nothing loaded to keep track of

    static void init_context(Context& ctx, void* stack_top, void (*entry)(void*), void* arg);
    static void switch_context(Context& from, Context& to);
    static void switch_context_leaving_stack(Context& from, Context& to);
    // Recorded as switch_context_leaving_stack() is (it does not return).
    static void switch_user_frames(Context& from, Context& to) {
        switch_context_leaving_stack(from, to);
    }
    static TrapFrame& syscall_frame(Context& ctx) { return ctx.frame; }
    static bool resumes_at_frame(const Context& ctx) { return ctx.gave_stack_up; }
    // The fast path's switch: recorded like switch_context(); returns.
    static void load_context(Context& from, Context& to);
    // The same, for the fast path's user threads; recorded alike.
    static void load_user_context(PerCpuState&, Context& from, Context& to) {
        load_context(from, to);
    }
    // User threads do not run on the host (enter_user aborts), but user
    // address spaces exist: page tables as maps, frames in host memory
    // (frame_to_kernel is the identity), with the refusals of
    // arch/x86_64/context.cpp.
    static Error init_user_context(Context& ctx, uint64_t root, const TlbSpace& space);
    static void retire_context(Context& ctx);  // counted (FakeCpu::retired)
    static void release_context(Context&) {}
    static void unload_context(Context& ctx);  // recorded (FakeCpu::unloaded)
    static void set_user_fs_base(Context& current, uint64_t base) { current.fs_base = base; }
    [[noreturn]] static void enter_user(uint64_t rip, uint64_t rsp, uint64_t arg);
    static Result<uint64_t> user_space_create();
    static void user_space_destroy(uint64_t root, bool ran);
    static Error user_map(uint64_t root, uint64_t virt, uint64_t frame, uint32_t prot);
    // Frees no page tables (the fake has none): `retire` is never called.
    static Result<uint64_t> user_unmap(uint64_t root, uint64_t virt,
                                       void (*retire)(void* ctx, uint64_t frame), void* ctx);
    static void flush_user_tlb(uint64_t root, uint64_t virt, size_t pages);  // recorded
    static Result<uint64_t> user_frame(uint64_t root, uint64_t virt, bool write);
    static void* frame_to_kernel(uint64_t frame);
    static void zero_frame(uint64_t frame);

    // Kernel stacks from kalloc (so the fake heap's failure injection and
    // live count cover them), without a guard page.
    static Result<void*> kernel_stack_map(uint32_t slot);
    static void kernel_stacks_unmap(const uint32_t* slots, size_t count);  // recorded

    static bool interrupts_enabled();
    static bool save_and_disable_interrupts();
    static void restore_interrupts(bool enabled);
    static void enable_and_wait_for_interrupt();

    static void raise_yield_vector();
    // Recorded (FakeCpu::notified); a test plays the other CPU's part.
    static void notify_cpu(uint32_t index);

    static void set_this_cpu(PerCpu* cpu);
    static PerCpu* this_cpu();
    static uint32_t cpu_index();
    static uint64_t held_locks();
    static void set_held_locks(uint64_t mask);

    static uint64_t timestamp();
    static void log_write(const char* text, size_t len);
    static uint32_t stop_other_cpus() { return 0; }  // one CPU at a time on the host
    [[noreturn]] static void halt_forever();
    [[noreturn]] static void shutdown(bool success);
};

static_assert(CpuInterface<Cpu>);

// What the fake saw; reset between tests by FakeCpu::reset().
struct FakeCpu {
    struct Switch {
        const Cpu::Context* from;
        const Cpu::Context* to;
    };
    static inline std::vector<Switch> switches;
    static inline bool irq_enabled = true;
    static inline unsigned waits_for_interrupt = 0;
    static inline unsigned yield_vectors = 0;
    static inline bool irq_enabled_at_last_yield = false;  // IF when the last int 0x50 was raised
    static inline uint64_t tsc = 0;
    // Frames zero_frame() cleared, and how many of them with interrupts off
    // (a spinlock held, say): a MemMap of many pages must not be one long
    // stretch with interrupts off.
    static inline uint64_t frames_zeroed = 0;
    static inline uint64_t frames_zeroed_irqs_off = 0;
    // The CPUs notify_cpu() interrupted, in order.
    static inline std::vector<uint32_t> notified;
    static inline unsigned retired = 0;  // retire_context() calls
    // unload_context() calls: the contexts, and the CPU each was on.
    static inline std::vector<std::pair<const Cpu::Context*, uint32_t>> unloaded;
    // flush_user_tlb() calls: root, first page, pages, the frame
    // allocator's free frames and the generation of `tlb_watched` (0 when
    // null) at the time.
    struct TlbFlush {
        uint64_t root, virt;
        size_t pages, free_frames;
        uint64_t generation;
    };
    static inline std::vector<TlbFlush> tlb_flushes;
    // kernel_stack_map() calls, and the slots of each kernel_stacks_unmap()
    // call (one shootdown each).
    static inline size_t kernel_stack_maps = 0;
    static inline std::vector<std::vector<uint32_t>> kernel_stack_unmaps;
    static inline const TlbSpace* tlb_watched = nullptr;
    static inline std::string log;
    // Run by switch_context() before it records the switch: a test's look at
    // the moment a CPU leaves a thread (null: none).
    static inline void (*on_switch)(const Cpu::Context& from, const Cpu::Context& to) = nullptr;
    // What raise_yield_vector() runs: the kernel's yield handler. Tests install it.
    static inline void (*yield_handler)() = nullptr;
    // A switch away from this context does not return, as on the hardware
    // for a thread that exited: switch_context() records it and throws
    // NoReturn instead of returning into code that never runs again. The
    // exception unwinds the ended thread's frames back to the test, its lock
    // guards releasing the scheduler lock as the thread switched to would.
    struct NoReturn {};
    static inline const Cpu::Context* no_return_from = nullptr;
    // Switches that gave the old thread's stack up (it resumes at its user
    // frame): switch_context_leaving_stack() throws NoReturn for them too.
    static inline size_t stacks_left = 0;
    static void reset();
    // User address spaces alive, and the pages mapped in one.
    static size_t user_spaces();
    static size_t user_pages(uint64_t root);
};

}  // namespace mk
