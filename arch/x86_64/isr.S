/* Interrupt entry stubs for all 256 vectors.
 *
 * Each stub pushes a dummy error code (when the CPU pushes none) and its
 * vector number, so every vector — exceptions, the LAPIC timer, the yield
 * vector 0x50 — builds the same TrapFrame (arch/x86_64/trap.hpp) and enters
 * arch_trap(). The frame stays 16-byte aligned for the call.
 *
 * From ring 3 (the saved CS has RPL 3) the stubs swapgs on the way in and
 * out, so %gs names this CPU's PerCpu in the kernel and the user's GS base
 * in user mode.
 *
 * NMI, double fault and machine check (on IST stacks) can also arrive in
 * ring 0 with the user's GS still loaded: between `syscall` and its swapgs,
 * or between the exit's swapgs and `sysretq`. The saved CS cannot tell, so
 * their stubs read GS_BASE itself ("paranoid entry"): the kernel's is a
 * kernel address (top bit set), the user's is not. */

#include "frame.inc"
#include "syscall/fastpath_layout.hpp"

    .altmacro

.macro ISR_STUB n
    .balign 16
isr_stub_\n:
    .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    push $0
    .endif
    push $\n
    .if (\n == 2) || (\n == 8) || (\n == 18)
    jmp isr_paranoid
    .else
    jmp isr_common
    .endif
.endm

    .text
isr_stubs:
.set i, 0
.rept 256
    ISR_STUB %i
    .set i, i + 1
.endr

isr_common:
    testb $3, 24(%rsp)            /* saved CS: from user mode? */
    jz 1f
    swapgs
    /* From ring 3 the CPU pushed its five words onto this CPU's entry stack
     * (TSS.rsp0, which no switch changes): they move, with the error code
     * and vector, to the top of the current thread's kernel stack, where
     * every TrapFrame of a user thread is (Cpu::syscall_frame). Interrupts
     * are off (every gate is an interrupt gate): nothing else uses the
     * entry stack meanwhile. */
    push %rax
    mov %rsp, %rax
    mov %gs:PERCPU_KSTACK, %rsp
    pushq 56(%rax)                /* ss */
    pushq 48(%rax)                /* rsp */
    pushq 40(%rax)                /* rflags */
    pushq 32(%rax)                /* cs */
    pushq 24(%rax)                /* rip */
    pushq 16(%rax)                /* error code */
    pushq 8(%rax)                 /* vector */
    mov (%rax), %rax
    pushq $2                      /* RFLAGS: AC (and DF, TF) off, as user code */
    popfq                         /* may have left them; IF stays off */
1:
    PUSH_GPRS
    cld
    mov %rsp, %rdi
    call arch_trap
    POP_GPRS
    add $16, %rsp                 /* vector, error code */
    testb $3, 8(%rsp)             /* back to user mode? */
    jz 2f
    swapgs
2:
    iretq

/* The IST vectors: swapgs decided by GS_BASE itself, undone on the way out. */
isr_paranoid:
    PUSH_GPRS
    cld
    mov $0xC0000101, %ecx         /* IA32_GS_BASE */
    rdmsr
    xor %ebx, %ebx                /* rbx (callee-saved): swap back on exit */
    test %edx, %edx
    js 1f                         /* a kernel address: the kernel's GS already */
    swapgs
    mov $1, %ebx
1:
    mov %rsp, %rdi
    call arch_trap
    test %ebx, %ebx
    jz 2f
    swapgs
2:
    POP_GPRS
    add $16, %rsp                 /* vector, error code */
    iretq

.macro STUB_ADDR n
    .quad isr_stub_\n
.endm

    .section .rodata
    .balign 8
    .globl isr_stub_table
isr_stub_table:
.set i, 0
.rept 256
    STUB_ADDR %i
    .set i, i + 1
.endr

    .section .note.GNU-stack, "", @progbits
