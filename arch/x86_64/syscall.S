/* The `syscall` entry and the way back to user mode (docs/syscalls.md).
 *
 * On `syscall` the CPU loads CS/SS from STAR, puts the user RIP in rcx and
 * RFLAGS in r11, masks IF/DF/TF/AC/NT (SFMASK) and leaves rsp alone. The stub
 * swaps to the kernel GS, switches to the current thread's kernel stack
 * (PerCpu::entry, at %gs:8) and builds the same TrapFrame the interrupt
 * stubs build (vector 0x100), so the syscall layer and the fault handlers
 * read one layout; then it calls arch_syscall(frame).
 *
 * The way back is sysretq, except to a RIP outside the user half: sysret to
 * a non-canonical RIP faults in ring 0 with the user's stack (the
 * CVE-2012-0217 trap), so such a return kills the thread instead. */

#include "frame.inc"

    .set PERCPU_KSTACK, 8
    .set PERCPU_USER_RSP, 16
    .set USER_DS, 0x1b
    .set USER_CS, 0x23

    .text
    .globl syscall_entry
    .balign 16
syscall_entry:
    swapgs
    mov %rsp, %gs:PERCPU_USER_RSP
    mov %gs:PERCPU_KSTACK, %rsp
    push $USER_DS                 /* ss */
    push %gs:PERCPU_USER_RSP      /* rsp */
    push %r11                     /* rflags */
    push $USER_CS                 /* cs */
    push %rcx                     /* rip */
    push $0                       /* error code */
    push $0x100                   /* vector: a syscall frame */
    PUSH_GPRS
    xor %ebp, %ebp                /* the end of the kernel backtrace */
    mov %rsp, %rdi
    cmp $1, %rax                  /* Call or ReplyRecv: the fast path first */
    ja 1f
    call mk_fastpath              /* rax: the partner's frame, or 0; rdx: the lock */
    test %rax, %rax
    jz 2f
    /* Taken: this thread is blocked and will resume at its frame (the
     * return address below it completes the context fastpath.cpp set); the
     * partner runs, and returns to user mode from here. The message words
     * pass through in registers: the partner gets rdx, r10, r8 and r9 as
     * this thread sent them; fastpath.cpp wrote the status, badge and info
     * into the partner's frame, which gives the rest. */
    /* Below rsp, but nothing can push there: interrupts are off, and NMI,
     * #DF and #MC run on IST stacks. */
    movq $arch_resume_at_frame, -8(%rsp)
    mov FRAME_RDX(%rsp), %rcx     /* word 0 (rdx holds the lock for now) */
    mov FRAME_R10(%rsp), %r10
    mov FRAME_R8(%rsp), %r8
    mov FRAME_R9(%rsp), %r9
    mov %rax, %rsp                /* the partner's frame */
    movb $0, (%rdx)               /* off the blocked thread's stack: the lock can go */
    mov %rcx, %rdx
    mov FRAME_R15(%rsp), %r15
    mov FRAME_R14(%rsp), %r14
    mov FRAME_R13(%rsp), %r13
    mov FRAME_R12(%rsp), %r12
    mov FRAME_RBP(%rsp), %rbp
    mov FRAME_RBX(%rsp), %rbx
    mov FRAME_RAX(%rsp), %rax
    mov FRAME_RDI(%rsp), %rdi
    mov FRAME_RSI(%rsp), %rsi
    mov FRAME_RIP(%rsp), %rcx     /* only into the user half, as below */
    mov %rcx, %r11
    shr $47, %r11
    jnz arch_return_to_user       /* which refuses it */
    mov FRAME_RFLAGS(%rsp), %r11
    mov FRAME_RSP(%rsp), %rsp
    swapgs
    sysretq
2:  mov %rsp, %rdi                /* a miss: the general path */
1:  call arch_syscall
    /* fall through */

/* Returns to user mode through the TrapFrame at rsp, with interrupts off. */
    .globl arch_return_to_user
arch_return_to_user:
    cli
    POP_GPRS
    add $16, %rsp                 /* vector, error code */
    mov (%rsp), %rcx              /* rip: only into the user half */
    shr $47, %rcx
    jnz .Lbad_rip
    mov (%rsp), %rcx
    mov 16(%rsp), %r11            /* rflags */
    mov 24(%rsp), %rsp            /* the user stack */
    swapgs
    sysretq
.Lbad_rip:
    and $-16, %rsp
    call arch_bad_user_return     /* kills the thread; never returns */
    ud2

/* Where a user thread that gave its stack up in a syscall (blocked "at
 * its frame") resumes when switched to: the context switch returns here
 * with rsp at its TrapFrame and the scheduler lock handed over.
 * mk_resume_at_frame finishes the syscall; then back to user mode. */
    .globl arch_resume_at_frame
arch_resume_at_frame:
    xor %ebp, %ebp                /* the end of the kernel backtrace */
    mov %rsp, %rdi
    call mk_resume_at_frame
    jmp arch_return_to_user

/* void arch_enter_user(rip, rsp, arg, stack_top): the first entry of a user
 * thread (Cpu::enter_user). Moves to the top of its kernel stack, builds a
 * TrapFrame there with every register zero but rdi = arg, and leaves through
 * the same exit as a syscall. */
    .globl arch_enter_user
arch_enter_user:
    cli
    mov %rcx, %rsp
    push $USER_DS                 /* ss */
    push %rsi                     /* rsp */
    push $0x202                   /* rflags: IF */
    push $USER_CS                 /* cs */
    push %rdi                     /* rip */
    push $0                       /* error code */
    push $0x100                   /* vector: a syscall frame */
    push $0                       /* rax */
    push $0                       /* rbx */
    push $0                       /* rcx */
    push $0                       /* rdx */
    push $0                       /* rsi */
    push %rdx                     /* rdi: the argument */
    push $0                       /* rbp */
    push $0                       /* r8 */
    push $0                       /* r9 */
    push $0                       /* r10 */
    push $0                       /* r11 */
    push $0                       /* r12 */
    push $0                       /* r13 */
    push $0                       /* r14 */
    push $0                       /* r15 */
    jmp arch_return_to_user

    .section .note.GNU-stack, "", @progbits
