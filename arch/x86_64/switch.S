/* Context switch between kernel threads (docs/scheduling.md).
 *
 * void arch_switch_context(uint64_t* from_rsp, uint64_t to_rsp)
 * saves the callee-saved registers on the current stack, stores the stack
 * pointer through from_rsp and resumes the thread whose stack is to_rsp.
 * Everything else is caller-saved under the SysV ABI, and the kernel has no
 * FPU/SSE state (-mgeneral-regs-only). Called with interrupts disabled. */

    .text
    .globl arch_switch_context
arch_switch_context:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov %rsi, %rsp
.Lresume_switch_frame:            /* rsp at a switch frame: back into its thread */
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

/* [[noreturn]] void arch_leave_to_stack(uint64_t to_rsp): arch_switch_context
 * for a thread that gives its stack up (Cpu::switch_context_leaving_stack):
 * nothing of it is saved. */
    .globl arch_leave_to_stack
arch_leave_to_stack:
    mov %rdi, %rsp
    jmp .Lresume_switch_frame

/* [[noreturn]] void arch_leave_to_frame(uint64_t frame): the same, to a user
 * thread that gave its stack up as well: on with its syscall at its
 * TrapFrame (syscall.S), which the switch frame would only have returned
 * to. */
    .globl arch_leave_to_frame
arch_leave_to_frame:
    mov %rdi, %rsp
    jmp arch_resume_at_frame

/* First code of a new thread: arch init_context put entry in r12, arg in r13. */
    .globl arch_thread_trampoline
arch_thread_trampoline:
    mov %r12, %rdi
    mov %r13, %rsi
    xor %ebp, %ebp
    and $-16, %rsp
    call mk_thread_start
    ud2

    .section .note.GNU-stack, "", @progbits
