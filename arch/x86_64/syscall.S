/* The `syscall` entry and the way back to user mode (docs/syscalls.md).
 *
 * On `syscall` the CPU loads CS/SS from STAR, puts the user RIP in rcx and
 * RFLAGS in r11, masks IF/DF/TF/AC/NT (SFMASK) and leaves rsp alone. The stub
 * swaps to the kernel GS, switches to the current thread's kernel stack
 * (PerCpu::entry, at %gs:8) and builds the same TrapFrame the interrupt
 * stubs build (vector 0x100), so the syscall layer and the fault handlers
 * read one layout; then it calls arch_syscall(frame). Call, ReplyRecv,
 * Recv, Reply and ReplySave try the fast path
 * (microkernel/syscall/fastpath.cpp) first.
 *
 * The way back is sysretq, except to a RIP outside the user half: sysret to
 * a non-canonical RIP faults in ring 0 with the user's stack (the
 * CVE-2012-0217 trap), so such a return kills the thread instead (the fast
 * path's exit, FAST_EXIT, says why it need not check). */

#include "frame.inc"

    .set PERCPU_KSTACK, 8
    .set PERCPU_USER_RSP, 16
    .set PERCPU_SCHED_LOCK, 88    /* this CPU's Scheduler::lock_: checked in context.cpp */
    .set USER_DS, 0x1b
    .set USER_CS, 0x23
    .set SYS_RECV, 3              /* abi::Sys::Recv: checked in context.cpp */
    .set SYS_REPLY, 4             /* abi::Sys::Reply: checked in context.cpp */
    .set SYS_REPLY_SAVE, 5        /* abi::Sys::ReplySave: checked in context.cpp */
    .set SYS_COUNT, 21            /* abi::Sys::Count: checked in context.cpp */
    .set ERR_BAD_SYSCALL, 14      /* abi::Err::BadSyscall: checked in context.cpp */

/* After mk_fastpath_call, _reply_recv, _reply or _reply_save: to
 * the general path (2f) on a miss, else to user mode as the partner.
 *
 * Taken: this thread is blocked (after a Reply: Ready) and resumes at its
 * frame when switched to (Context::rsp 0); the partner runs, and returns to
 * user mode from here.
 * The message words pass through in registers: the partner gets rdx, r10,
 * r8 and r9 as this thread sent them; fastpath.cpp wrote the status, badge
 * and info into the partner's frame, which gives the rest.
 *
 * No check of the RIP here, unlike arch_return_to_user: the partner is
 * blocked at its frame in an IPC syscall, so the stub below built that
 * frame, its RIP is the rcx of the partner's own `syscall`, the address
 * after an instruction in a user page (below abi::kUserEnd, which
 * fastpath.cpp asserts is in the user half), and nothing in the kernel
 * writes a TrapFrame's RIP. */
.macro FAST_EXIT
    test %rax, %rax
    jz 2f
    mov FRAME_RDX(%rsp), %rdx     /* the words, from this thread's frame */
    mov FRAME_R10(%rsp), %r10
    mov FRAME_R8(%rsp), %r8
    mov FRAME_R9(%rsp), %r9
    mov %rax, %rsp                /* the partner's frame */
    movb $0, %gs:PERCPU_SCHED_LOCK /* off the blocked thread's stack: the lock can go */
    FRAME_SYSRET
.endm

/* After mk_fastpath_recv: to the general path (2f) on a miss, else to user
 * mode as the thread it resumed, every register from that thread's frame
 * (its syscall's results, which fastpath.cpp wrote there). No RIP check,
 * for the reason above: that thread too blocked at its frame in an IPC
 * syscall. */
.macro RESUME_EXIT
    test %rax, %rax
    jz 2f
    mov %rax, %rsp                /* the resumed thread's frame */
    movb $0, %gs:PERCPU_SCHED_LOCK /* off the blocked thread's stack: the lock can go */
    mov FRAME_RDX(%rsp), %rdx
    mov FRAME_R10(%rsp), %r10
    mov FRAME_R8(%rsp), %r8
    mov FRAME_R9(%rsp), %r9
    FRAME_SYSRET
.endm

/* The rest of a fast exit: the registers but the four words from the frame
 * at rsp, and sysret. */
.macro FRAME_SYSRET
    mov FRAME_R15(%rsp), %r15
    mov FRAME_R14(%rsp), %r14
    mov FRAME_R13(%rsp), %r13
    mov FRAME_R12(%rsp), %r12
    mov FRAME_RBP(%rsp), %rbp
    mov FRAME_RBX(%rsp), %rbx
    mov FRAME_RAX(%rsp), %rax
    mov FRAME_RDI(%rsp), %rdi
    mov FRAME_RSI(%rsp), %rsi
    mov FRAME_RIP(%rsp), %rcx
    mov FRAME_RFLAGS(%rsp), %r11
    mov FRAME_RSP(%rsp), %rsp
    swapgs
    sysretq
.endm

/* Switches to the kernel stack and saves the user's registers in a
 * TrapFrame there, with stores rather than pushes, for what the way back
 * reads: the general registers but rcx and r11 (the user's are gone:
 * `syscall` put RIP and RFLAGS there, and sysret clobbers both again), RIP,
 * RFLAGS and RSP. The rest (vector, error code, CS, SS) only the general
 * path fills in: nothing reads them in a frame the fast path leaves (a
 * thread blocked at it resumes through sysret). Leaves the flags alone
 * (lea, not sub), so a compare before it still decides after it. */
.macro SAVE_FRAME
    swapgs
    mov %rsp, %gs:PERCPU_USER_RSP
    mov %gs:PERCPU_KSTACK, %rsp
    lea -FRAME_SIZE(%rsp), %rsp
    mov %rcx, FRAME_RIP(%rsp)
    mov %r11, FRAME_RFLAGS(%rsp)
    mov %gs:PERCPU_USER_RSP, %rcx
    mov %rcx, FRAME_RSP(%rsp)
    mov %rax, FRAME_RAX(%rsp)
    mov %rbx, FRAME_RBX(%rsp)
    mov %rdx, FRAME_RDX(%rsp)
    mov %rsi, FRAME_RSI(%rsp)
    mov %rdi, FRAME_RDI(%rsp)
    mov %rbp, FRAME_RBP(%rsp)
    mov %r8, FRAME_R8(%rsp)
    mov %r9, FRAME_R9(%rsp)
    mov %r10, FRAME_R10(%rsp)
    mov %r12, FRAME_R12(%rsp)
    mov %r13, FRAME_R13(%rsp)
    mov %r14, FRAME_R14(%rsp)
    mov %r15, FRAME_R15(%rsp)
.endm

    .text
    .globl syscall_entry
    .balign 16
syscall_entry:
    cmp $1, %rax                  /* Call (0) or ReplyRecv (1): the fast path first */
    ja .Lgeneral_entry
    SAVE_FRAME
    mov %rsp, %rdi
    je 3f                         /* the flags of the compare above */
    xor %ebp, %ebp                /* the end of the kernel backtrace */
    call mk_fastpath_call         /* rax: the partner's frame, or 0 */
    FAST_EXIT
3:  xor %ebp, %ebp
    call mk_fastpath_reply_recv
    FAST_EXIT

/* Reply (4) through a saved reply handle: the fast path answers the caller
 * and switches to it, this thread waiting Ready at its frame (a miss: the
 * general path, as for the other two). */
.Lfast_reply:
    SAVE_FRAME
    mov %rsp, %rdi
    xor %ebp, %ebp
    call mk_fastpath_reply
    FAST_EXIT

/* ReplySave (5) with a Reply object kept from a fast Reply: the fast path
 * stores it as a handle and returns to this thread's own frame (a miss: the
 * general path). */
.Lfast_reply_save:
    SAVE_FRAME
    mov %rsp, %rdi
    xor %ebp, %ebp
    call mk_fastpath_reply_save
    FAST_EXIT

/* Recv (3) with nothing to take: the fast path blocks this thread and
 * resumes the next one in line at its frame (a miss: the general path). */
.Lfast_recv:
    SAVE_FRAME
    mov %rsp, %rdi
    xor %ebp, %ebp
    call mk_fastpath_recv
    RESUME_EXIT

.Lgeneral_entry:
    /* A number with no syscall is refused before anything is saved: the
     * kernel touches no register but rax, and returns through sysret to the
     * rcx of this `syscall` (no RIP check, as in FAST_EXIT). The cheapest
     * way in and out, what the benchmark's null syscall measures. */
    cmp $SYS_COUNT, %rax
    jae .Lbad_syscall
    cmp $SYS_REPLY, %rax
    je .Lfast_reply
    cmp $SYS_REPLY_SAVE, %rax
    je .Lfast_reply_save
    cmp $SYS_RECV, %rax
    je .Lfast_recv
    SAVE_FRAME
    xor %ebp, %ebp
2:  mov %rsp, %rdi                /* here too on a fast-path miss */
    movq $USER_DS, FRAME_SS(%rsp) /* the rest of the frame */
    movq $USER_CS, FRAME_CS(%rsp)
    movq $0, FRAME_ERROR_CODE(%rsp)
    movq $0x100, FRAME_VECTOR(%rsp) /* a syscall frame */
    call arch_syscall
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

/* Back from the syscall-number check at the entry: interrupts are still
 * off (SFMASK), rsp, GS and every register but rax are the user's. */
.Lbad_syscall:
    mov $ERR_BAD_SYSCALL, %eax
    sysretq

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
