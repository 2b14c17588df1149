// arch_trap(): where every interrupt stub lands. Exceptions print a register
// dump and the faulting address and panic; the timer drives the scheduler;
// the yield vector switches threads.
#include "context.hpp"
#include "log.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "platform.hpp"
#include "smp.hpp"
#include "syscall/entry.hpp"
#include "trap.hpp"
#include "x86.hpp"

extern "C" char boot_stack_guard[];  // boot/boot.S

namespace mk::x86 {

namespace {

const char* const kExceptionNames[32] = {
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection exception",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security exception",
    "reserved",
};

void dump_frame(const TrapFrame& f) {
    log("  rip=%016lx cs=%04lx rflags=%016lx rsp=%016lx ss=%04lx\n", f.rip, f.cs, f.rflags, f.rsp,
        f.ss);
    log("  rax=%016lx rbx=%016lx rcx=%016lx rdx=%016lx\n", f.rax, f.rbx, f.rcx, f.rdx);
    log("  rsi=%016lx rdi=%016lx rbp=%016lx r8 =%016lx\n", f.rsi, f.rdi, f.rbp, f.r8);
    log("  r9 =%016lx r10=%016lx r11=%016lx r12=%016lx\n", f.r9, f.r10, f.r11, f.r12);
    log("  r13=%016lx r14=%016lx r15=%016lx\n", f.r13, f.r14, f.r15);
}

// A page fault in a kernel stack's guard page, or the double fault it
// turns into: the #PF's own frame cannot be pushed on the overflowed
// stack, so the CPU raises #DF, which runs on its IST stack. CR2 holds
// the address of the last page fault (the guard page's, in both cases);
// the interrupted stack pointer may be in the guard too.
// `slot`: a kernel stack slot's guard; kBootStack: the boot stack's.
constexpr uint32_t kBootStack = UINT32_MAX;

[[noreturn]] void kernel_stack_overflow(const TrapFrame& f, uint32_t slot, uint64_t addr) {
    Thread* t = this_cpu().scheduler.current();
    const char* name = t != nullptr ? t->name() : "?";
    if (slot == kBootStack) {
        log("\nEXCEPTION %lu (%s): kernel stack overflow: thread %s on cpu %u hit the guard page "
            "of the boot stack at %016lx\n",
            f.vector, kExceptionNames[f.vector], name, Cpu::cpu_index(), addr);
    } else {
        log("\nEXCEPTION %lu (%s): kernel stack overflow: thread %s on cpu %u hit the guard page "
            "of kernel stack slot %u at %016lx\n",
            f.vector, kExceptionNames[f.vector], name, Cpu::cpu_index(), slot, addr);
    }
    // Where the handler runs: for a double fault, this CPU's interrupt
    // stack (IST 1), itself a kernel stack with a guard.
    uint32_t own = 0;
    if (kernel_stack_slot_of(reinterpret_cast<uint64_t>(__builtin_frame_address(0)), own))
        log("  handled on kernel stack slot %u\n", own);
    dump_frame(f);
    MK_PANIC("kernel stack overflow in thread %s", name);
}

bool in_boot_stack_guard(uint64_t addr) {
    const auto guard = reinterpret_cast<uint64_t>(boot_stack_guard);
    return addr >= guard && addr - guard < 4096;
}

[[noreturn]] void exception(const TrapFrame& f) {
    if (f.vector == 8 || f.vector == 14) {
        const uint64_t addrs[2] = {read_cr2(), f.rsp};
        for (uint64_t addr : addrs) {
            uint32_t slot = 0;
            if (kernel_stack_guard_hit(addr, slot)) kernel_stack_overflow(f, slot, addr);
            if (in_boot_stack_guard(addr)) kernel_stack_overflow(f, kBootStack, addr);
        }
    }
    log("\nEXCEPTION %lu (%s), error code %#lx\n", f.vector, kExceptionNames[f.vector],
        f.error_code);
    if (f.vector == 14) {
        uint64_t ec = f.error_code;
        log("  faulting address %016lx (%s, %s, %s mode%s)\n", read_cr2(),
            (ec & 1) != 0 ? "protection violation" : "not present",
            (ec & 2) != 0 ? "write" : "read", (ec & 4) != 0 ? "user" : "kernel",
            (ec & 16) != 0 ? ", instruction fetch" : "");
    }
    dump_frame(f);
    MK_PANIC("unhandled %s in the kernel at %016lx", kExceptionNames[f.vector], f.rip);
}

}  // namespace

}  // namespace mk::x86

extern "C" void arch_trap(mk::x86::TrapFrame* frame);

extern "C" void arch_trap(mk::x86::TrapFrame* frame) {
    using namespace mk;
    using namespace mk::x86;
    uint64_t vector = frame->vector;
    if (vector == 2) {
        // NMIs come from watchdogs and hardware errors we do not handle; the
        // interrupted code goes on. Counted, not logged: an NMI can land in
        // the middle of a log message (the log masks only maskable
        // interrupts) and would cut its line in two.
        if (cpus_stopping()) stop_here();  // another CPU panicked
        note_nmi(frame->rip);
        return;
    }
    if (vector == 7) {
        fpu_trap();  // #NM: a user thread's first FPU instruction since its switch
        return;
    }
    if (vector < 32) {
        if (frame->from_user() && vector != 8 && vector != 18) {
            handle_user_exception(*frame, vector == 14 ? read_cr2() : 0);
        }
        exception(*frame);
    }
    Scheduler& sched = this_cpu().scheduler;
    switch (vector) {
        case kVectorTimer:
            irq_enter();
            sched.on_timer_tick();
            irq_exit();
            lapic_eoi();
            sched.preempt_if_needed(frame->from_user());
            break;
        case kVectorNotify:
            irq_enter();
            sched.on_notify();
            irq_exit();
            lapic_eoi();
            sched.preempt_if_needed(frame->from_user());
            break;
        case kVectorTlb:
            irq_enter();
            tlb_trap();
            irq_exit();
            lapic_eoi();
            break;
        case kVectorYield:
            if (frame->from_user()) {
                handle_user_yield(*frame);
            } else {
                sched.on_yield_vector();
            }
            break;
        case kVectorSpurious:
            break;
        case kVectorPicBase + 7:
        case kVectorPicBase + 15:
            break;  // spurious interrupts of the masked legacy PIC
        default:
            // Nothing is programmed to raise it; no EOI, as it may not be
            // an APIC interrupt at all.
            log("warning: unexpected interrupt vector %lu\n", vector);
            break;
    }
    if (frame->from_user()) before_return_to_user();
}
