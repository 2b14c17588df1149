/* The `syscall` entry and the way back to user mode (docs/syscalls.md).
 *
 * On `syscall` the CPU loads CS/SS from STAR, puts the user RIP in rcx and
 * RFLAGS in r11, masks IF/DF/TF/AC/NT (SFMASK) and leaves rsp alone. The stub
 * swaps to the kernel GS, switches to the current thread's kernel stack
 * (PerCpu::entry, at %gs:8) and builds a TrapFrame of the layout the
 * interrupt stubs build, so the syscall layer and the fault handlers read
 * one layout (but for its vector, error code, CS and SS, which no one
 * reads in a syscall's frame); then it calls mk::handle_syscall(frame). Call and ReplyRecv
 * with a register message take the fast path's hit case in assembly
 * below; Call, ReplyRecv, Recv, Reply and ReplySave try the C++ fast path
 * (microkernel/syscall/fastpath.cpp) before the general path.
 *
 * The way back is sysretq, except to a RIP outside the user half: sysret to
 * a non-canonical RIP faults in ring 0 with the user's stack (the
 * CVE-2012-0217 trap), so such a return kills the thread instead (the fast
 * path's exit, FAST_EXIT, says why it need not check). */

#include "frame.inc"
#include "syscall/fastpath_layout.hpp"

    .set PERCPU_USER_RSP, 16
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
 * reads. The rest (vector, error code, CS, SS) no syscall writes: nothing
 * reads them in a syscall's frame (its thread returns through sysret; the
 * trap handlers read their own frames). Neither macro touches the flags (lea, not
 * sub), so a compare before them still decides after them.
 *
 * SAVE_ENTRY is what the assembly hit path saves, with rsp at the top of
 * the kernel stack (the frame below it: TOP(field) addresses a field
 * there): what a thread blocked in Call or ReplyRecv gets back whatever
 * ends its wait, RIP, RFLAGS, RSP and the six registers the user ABI
 * preserves. Not rcx and r11 (the user's are gone: `syscall` put RIP and
 * RFLAGS there, and sysret clobbers both again), not rax (the status
 * replaces it), and not the arguments (rdi, rsi, rdx, r10, r8, r9): those
 * are the message registers, which a completed Call or ReplyRecv fills
 * with what arrived and a failed one clears (docs/syscalls.md), so nothing
 * reads them back from a frame the hit path blocked at. SAVE_ARGS adds
 * them, for a miss (the C++ paths decode the syscall from the frame) and
 * every other syscall. */
#define TOP(field) (FRAME_##field - FRAME_SIZE)
/* A field of IpcState: S_IPC of this thread's (from its Thread, in rbx),
 * R_IPC of a partner's (from its queue hook, in rbp). The IpcState follows
 * its Thread in one block (Thread::make), so neither is a load. */
#define S_IPC(field) (THREAD_IPC_STATE + field)
#define R_IPC(field) (THREAD_IPC_STATE - THREAD_QUEUE_HOOK + field)
.macro SAVE_ENTRY
    swapgs
    mov %rsp, %gs:PERCPU_USER_RSP
    mov %gs:PERCPU_KSTACK, %rsp
    mov %rcx, TOP(RIP)(%rsp)
    mov %r11, TOP(RFLAGS)(%rsp)
    mov %gs:PERCPU_USER_RSP, %rcx
    mov %rcx, TOP(RSP)(%rsp)
    mov %rbx, TOP(RBX)(%rsp)
    mov %rbp, TOP(RBP)(%rsp)
    mov %r12, TOP(R12)(%rsp)
    mov %r13, TOP(R13)(%rsp)
    mov %r14, TOP(R14)(%rsp)
    mov %r15, TOP(R15)(%rsp)
.endm
.macro SAVE_ARGS
    mov %rdi, TOP(RDI)(%rsp)
    mov %rsi, TOP(RSI)(%rsp)
    mov %rdx, TOP(RDX)(%rsp)
    mov %r10, TOP(R10)(%rsp)
    mov %r8, TOP(R8)(%rsp)
    mov %r9, TOP(R9)(%rsp)
.endm
.macro SAVE_FRAME
    SAVE_ENTRY
    SAVE_ARGS
    lea -FRAME_SIZE(%rsp), %rsp
    mov %rax, FRAME_RAX(%rsp)
.endm

/* The current thread (in \thread) blocks on the wait queue whose header is
 * at \queue, at its frame: waiting_on, its state word (Blocked, at_frame)
 * and a link at the back of the queue. Clobbers rax and r11. What
 * FastPath::block_current() does. */
.macro BLOCK_AT_FRAME thread, queue
    lea THREAD_QUEUE_HOOK(\thread), %r11
    mov \queue, THREAD_WAITING_ON(\thread)
    movq $STATE_BLOCKED_AT_FRAME, THREAD_STATE_WORD(\thread)
    mov 8(\queue), %rax          /* the last node */
    mov \queue, (%r11)            /* next: the header */
    mov %rax, 8(%r11)             /* prev */
    mov %r11, 8(\queue)
    mov %r11, (%rax)
.endm

/* The handle in rdi: the slot of the table at r13 it names (rax), used
 * and with the right \right to an endpoint (r15); the table locked.
 * Jumps to \miss with the table unlocked, to \miss_locked with it
 * locked. What FastPath::endpoint() does: HandleTable::find_locked() on
 * all 64 bits of the handle, then the type and the right. */
.macro LOOKUP_ENDPOINT right, miss, miss_locked
    lock btsl $0, TABLE_LOCK(%r13)
    jc \miss                     /* held: the C++ path waits for it */
    movzwl %di, %eax              /* the index: handle bits 0..15 */
    cmp TABLE_CAPACITY(%r13), %eax
    jae \miss_locked
    shl $SLOT_SHIFT, %rax
    add TABLE_SLOTS(%r13), %rax
    mov SLOT_KEY(%rax), %ecx      /* the handle naming the slot (if Used), zero-extended */
    cmp %rdi, %rcx                /* all 64 bits: a stale generation or a bit above 31 misses */
    jne \miss_locked
    mov SLOT_RIGHTS(%rax), %ecx   /* the rights, the state, the object's type */
    and $(0xFFFF00 | \right), %ecx
    cmp $(OBJECT_TYPE_ENDPOINT << 16 | SLOT_USED << 8 | \right), %ecx
    jne \miss_locked
    mov SLOT_OBJECT(%rax), %r15
.endm

/* The endpoint's lock (r15), then this CPU's scheduler lock, after the
 * table lock: taken raw, as the C++ fast path does (interrupts are off). A
 * held one is a miss: the C++ path waits for it. */
.macro LOCK_ENDPOINT_AND_SCHEDULER miss_table, miss_ipc
    lock btsl $0, ENDPOINT_LOCK(%r15)
    jc \miss_table
    lock btsl $0, %gs:PERCPU_SCHED_LOCK
    jc \miss_ipc
.endm

/* The two rare parts of the switch, which call C++ (with PCIDs, a CR3
 * with the partner's PCID: Cpu::load_root_with_pcid(); an FS base to
 * write: Cpu::load_fs_base()), keeping the message registers. On this
 * thread's stack, below its frame: it is blocked, but no other CPU can
 * resume it before this one lets the scheduler lock go. */
.macro CALL_KEEPING_MESSAGE function
    lea -FRAME_SIZE-8(%rsp), %rsp /* below this thread's frame, 16-byte aligned at the call */
    push %rbp                     /* the partner's queue hook */
    push %rdi
    push %rsi
    push %rdx
    push %r10
    push %r8
    push %r9
    lea THREAD_CONTEXT-Q(%rbp), %rdi
    xor %ebp, %ebp                /* the end of the kernel backtrace */
    call \function
    pop %r9
    pop %r8
    pop %r10
    pop %rdx
    pop %rsi
    pop %rdi
    pop %rbp
    lea FRAME_SIZE+8(%rsp), %rsp
    mov %gs:PERCPU_KSTACK, %rcx   /* the partner's kernel stack top, as above */
.endm

/* This thread (rbx) is blocked; the partner (rbp: its queue hook), its
 * wait ended, runs: what FastPath::switch_to() and
 * Cpu::load_user_context() do. Then to user mode as the partner, with rax
 * Ok, rdi and rsi as set above and the four words as this thread sent
 * them. Expanded at the end of both hit cases (\side: call or
 * reply_recv, for its labels), so neither jumps to it. */
.macro FAST_SWITCH side
    addq $1, %gs:PERCPU_FAST_SWITCHES /* a block, a wake, a direct switch and a switch */
    movl $0, ENDPOINT_LOCK(%r15)  /* the IPC state is written; the endpoint is used no more */
    movq $STATE_WOKEN_RUNNING, THREAD_STATE_WORD-Q(%rbp)
    lea -Q(%rbp), %rcx
    mov %rcx, %gs:PERCPU_CURRENT
    mov THREAD_KERNEL_STACK_TOP-Q(%rbp), %rcx
    mov %rcx, %gs:PERCPU_KSTACK   /* where its entries from ring 3 go */
    mov THREAD_ROOT-Q(%rbp), %r11
    cmp %gs:PERCPU_LOADED_ROOT, %r11
    je .Lroot_done_\side
    cmpb $0, %gs:PERCPU_PCID_ON
    jne .Lfast_switch_pcid_\side
    mov %r11, %gs:PERCPU_LOADED_ROOT /* before CR3: the shootdown reads it */
    mov %r11, %cr3
.Lroot_done_\side:
    mov THREAD_FS_KEY-Q(%rbp), %r11
    cmp %gs:PERCPU_LOADED_FS_KEY, %r11
    jne .Lfast_switch_fs_\side
.Lfs_done_\side:
    lea THREAD_CONTEXT-Q(%rbp), %r11 /* the FPU trap: set unless the partner owns the FPU */
    cmp %gs:PERCPU_FPU_OWNER, %r11
    jne .Lfpu_not_owner_\side
    cmpb $0, %gs:PERCPU_TS_SET
    je .Lfpu_done_\side
    clts
    movb $0, %gs:PERCPU_TS_SET
    jmp .Lfpu_done_\side
.Lfpu_not_owner_\side:
    cmpb $0, %gs:PERCPU_TS_SET
    jne .Lfpu_done_\side
    mov %gs:PERCPU_CR0_TS, %r11
    mov %r11, %cr0
    movb $1, %gs:PERCPU_TS_SET
.Lfpu_done_\side:
    movq $0, THREAD_CONTEXT(%rbx) /* this thread gave its stack up: it resumes at its frame */
    xor %eax, %eax                /* Ok */
    mov TOP(R15)(%rcx), %r15      /* the partner's frame, below rcx */
    mov TOP(R14)(%rcx), %r14
    mov TOP(R13)(%rcx), %r13
    mov TOP(R12)(%rcx), %r12
    mov TOP(RBP)(%rcx), %rbp
    mov TOP(RBX)(%rcx), %rbx
    mov TOP(RFLAGS)(%rcx), %r11
    mov TOP(RSP)(%rcx), %rsp
    mov TOP(RIP)(%rcx), %rcx
    /* Off the blocked thread's stack (rsp is the user's now): the lock
     * can go, and another CPU may resume that thread. */
    movb $0, %gs:PERCPU_SCHED_LOCK
    swapgs
    sysretq
.Lfast_switch_pcid_\side:
    CALL_KEEPING_MESSAGE _ZN2mk3Cpu19load_root_with_pcidERKNS0_7ContextE
    jmp .Lroot_done_\side
.Lfast_switch_fs_\side:
    CALL_KEEPING_MESSAGE _ZN2mk3Cpu12load_fs_baseERKNS0_7ContextE
    jmp .Lfs_done_\side
.endm

    .text
    .globl syscall_entry
    .balign 16
syscall_entry:
    cmp $1, %rax                  /* Call (0) or ReplyRecv (1): the fast path first */
    ja .Lgeneral_entry
    SAVE_ENTRY
    je .Lfast_reply_recv          /* the flags of the compare above */

/* Call (0) to a receiver that waits on the endpoint, with a register
 * message: the hit case of FastPath::call() in assembly, for the same
 * conditions or stricter ones, checked cheapest first; anything else (a
 * payload, a timeout, a receiver with a timeout, a lock held elsewhere)
 * takes the C++ fast path (.Lcall_in_cpp), with the syscall number saved
 * as if nothing had happened; no receiver (a busy server), the C++ path's
 * entry that queues the call and resumes the next thread (.Lcall_queue);
 * a receiver on another CPU, the general path (.Lcall_general_all), where
 * the C++ path would miss too.
 * docs/ipc.md, "The assembly hit path".
 *
 * Live until the point of no return: the user's rdi (the handle), rsi (the
 * info) and rdx, r10, r8, r9 (the words); every other register is saved
 * in the frame and scratch once read (r12, the timeout, is checked first). */
    cmpb $0, _ZN2mk17g_ipc_fast_switchE(%rip)
    je .Lcall_general             /* fastpath=off or donate=off: the C++ path would miss */
    cmp .Lfast_info_max(%rip), %rsi
    ja .Lcall_in_cpp              /* a payload, handles, reserved bits or a notice label */
    cmp $-1, %r12
    jne .Lcall_in_cpp             /* a timeout */
    mov %gs:PERCPU_CURRENT, %rbx  /* this thread */
    mov THREAD_HANDLES(%rbx), %r13
    LOOKUP_ENDPOINT RIGHT_SEND, .Lcall_in_cpp, .Lcall_miss_table
    mov SLOT_BADGE(%rax), %r14    /* what the receiver learns of the caller */
    LOCK_ENDPOINT_AND_SCHEDULER .Lcall_miss_table, .Lcall_miss_ipc
    /* The receiver (rbp: its queue hook), first on the endpoint: blocked at
     * its frame and not asked to exit (one compare of four flags), with no
     * timeout to cancel, no unanswered call it would drop, and homed on this
     * CPU; and this thread not asked to exit. */
    mov ENDPOINT_RECEIVERS(%r15), %rbp
    lea ENDPOINT_RECEIVERS(%r15), %rcx
    cmp %rcx, %rbp
    je .Lcall_queue               /* no receiver: the C++ path queues the call */
    .set Q, THREAD_QUEUE_HOOK
    cmpl $1, THREAD_AT_FRAME-Q(%rbp)
    jne .Lcall_miss_all
    cmpq $0, THREAD_TIMEOUT_HOOK-Q(%rbp)
    jne .Lcall_miss_all
    cmpq $0, R_IPC(IPC_REPLY_CALLER)(%rbp)
    jne .Lcall_miss_all
    cmpb $0, THREAD_EXIT_REQUESTED(%rbx)
    jne .Lcall_miss_all
    mov THREAD_CPU(%rbx), %ecx
    cmp %ecx, THREAD_CPU-Q(%rbp)
    jne .Lcall_general_all

    /* The point of no return. The receiver takes the call: off the
     * endpoint's queue, its endpoint reference dropped (never the last:
     * the caller's handle holds one), its reply token this call's... */
    mov (%rbp), %rcx              /* next */
    mov 8(%rbp), %r11             /* prev */
    mov %rcx, (%r11)
    mov %r11, 8(%rcx)
    movq $0, (%rbp)               /* the hook unlinked: a null next (safe mode's mark) */
    movq $0, THREAD_WAITING_ON-Q(%rbp)
    mov R_IPC(IPC_ENDPOINT_REF)(%rbp), %rcx
    movq $0, R_IPC(IPC_ENDPOINT_REF)(%rbp)
    lock subl $1, KOBJECT_REFS(%rcx)
    movl $0, TABLE_LOCK(%r13)     /* the endpoint is used no more */
    movl $0, R_IPC(IPC_OP)(%rbp)
    addq $1, S_IPC(IPC_CALL_SEQ)(%rbx)   /* this call's number */
    mov S_IPC(IPC_CALL_SEQ)(%rbx), %rcx
    mov %rcx, R_IPC(IPC_REPLY_CALL)(%rbp)
    mov THREAD_ID(%rbx), %rcx
    mov %rcx, R_IPC(IPC_REPLY_CALLER)(%rbp)
    /* ...and this thread waits for the reply on the receiver's callers
     * queue. */
    movl $OP_REPLY_WAIT_CALL, S_IPC(IPC_OP)(%rbx)
    lea R_IPC(IPC_CALLERS)(%rbp), %rcx
    BLOCK_AT_FRAME %rbx, %rcx
    mov %r14, %rdi                /* the receiver's r0: the badge */
    bts $INFO_CALL_BIT, %rsi      /* and the info, a call */
    FAST_SWITCH call

/* ReplyRecv (1) answering the caller that waits for this thread's pending
 * call, with a register message, then waiting on the endpoint: the hit
 * case of FastPath::reply_recv() in assembly, as Call's above (a caller
 * queued on the endpoint, which the C++ path takes in passing, is a miss
 * here). */
.Lfast_reply_recv:
    cmpb $0, _ZN2mk17g_ipc_fast_switchE(%rip)
    je .Lreply_recv_general
    cmp .Lfast_info_max(%rip), %rsi
    ja .Lreply_recv_in_cpp
    cmp $-1, %r12
    jne .Lreply_recv_in_cpp
    mov %gs:PERCPU_CURRENT, %rbx
    mov S_IPC(IPC_REPLY_CALLER)(%rbx), %r14
    test %r14, %r14
    jz .Lreply_recv_in_cpp        /* no pending call */
    mov THREAD_HANDLES(%rbx), %r13
    LOOKUP_ENDPOINT RIGHT_RECEIVE, .Lreply_recv_in_cpp, .Lreply_recv_miss_table
    LOCK_ENDPOINT_AND_SCHEDULER .Lreply_recv_miss_table, .Lreply_recv_miss_ipc
    /* The caller (rbp: its queue hook) the token names, first on this
     * thread's callers queue and still waiting for that very call: blocked
     * at its frame, not asked to exit, with no timeout to cancel, homed on
     * this CPU; this thread not asked to exit; the endpoint with nothing
     * queued (a sender or a notice, which the receive would take) and not
     * dead. */
    mov S_IPC(IPC_CALLERS)(%rbx), %rbp
    lea S_IPC(IPC_CALLERS)(%rbx), %rcx
    cmp %rcx, %rbp
    je .Lreply_recv_miss_all
    cmp %r14, THREAD_ID-Q(%rbp)
    jne .Lreply_recv_miss_all
    mov R_IPC(IPC_CALL_SEQ)(%rbp), %rcx
    cmp %rcx, S_IPC(IPC_REPLY_CALL)(%rbx)
    jne .Lreply_recv_miss_all
    cmpl $1, THREAD_AT_FRAME-Q(%rbp)
    jne .Lreply_recv_miss_all
    cmpq $0, THREAD_TIMEOUT_HOOK-Q(%rbp)
    jne .Lreply_recv_miss_all
    cmpb $0, THREAD_EXIT_REQUESTED(%rbx)
    jne .Lreply_recv_miss_all
    mov THREAD_CPU(%rbx), %ecx
    cmp %ecx, THREAD_CPU-Q(%rbp)
    jne .Lreply_recv_general_all
    lea ENDPOINT_SENDERS(%r15), %rcx
    cmp %rcx, ENDPOINT_SENDERS(%r15)
    jne .Lreply_recv_miss_all
    cmpq $0, ENDPOINT_DEAD_AND_NOTICES(%r15) /* not dead, no notice queued */
    jne .Lreply_recv_miss_all
    /* A caller that queued on the endpoint before this thread received
     * still holds its call's reference to it: dropped below if it is this
     * endpoint (never the last: this thread's handle holds one), else a
     * miss (the C++ path's). */
    mov R_IPC(IPC_ENDPOINT_REF)(%rbp), %rcx
    test %rcx, %rcx
    jnz .Lreply_recv_caller_ref

    /* The point of no return. The caller takes the reply: off this
     * thread's callers queue, its IPC operation over... */
.Lreply_recv_answer:
    mov (%rbp), %rcx
    mov 8(%rbp), %r11
    mov %rcx, (%r11)
    mov %r11, 8(%rcx)
    movq $0, (%rbp)
    movq $0, THREAD_WAITING_ON-Q(%rbp)
    movl $0, R_IPC(IPC_OP)(%rbp)
    /* ...and this thread waits for the next message on the endpoint,
     * holding a reference to it as the general path's receive does (it
     * held none: a syscall begins with none). */
    movl $OP_RECV_WAIT, S_IPC(IPC_OP)(%rbx)
    /* The token answered: no caller (a token's call number means nothing
     * without one: every reader checks the caller first). No superseded
     * call to clear: only a receive sets one, and every way a receive ends
     * clears it (complete_ipc(), the fast paths), so a thread in user mode
     * has none. */
    movq $0, S_IPC(IPC_REPLY_CALLER)(%rbx)
    mov %r15, S_IPC(IPC_ENDPOINT_REF)(%rbx) /* it held none: complete_ipc() dropped its last one */
    lock addl $1, KOBJECT_REFS(%r15)
    lea ENDPOINT_RECEIVERS(%r15), %rcx
    BLOCK_AT_FRAME %rbx, %rcx
    movl $0, TABLE_LOCK(%r13)
    xor %edi, %edi                /* the caller's r0: 0; rsi: the info as sent */
    FAST_SWITCH reply_recv


.Lreply_recv_caller_ref:
    cmp %rcx, %r15
    jne .Lreply_recv_miss_all
    movq $0, R_IPC(IPC_ENDPOINT_REF)(%rbp)
    lock subl $1, KOBJECT_REFS(%r15)
    jmp .Lreply_recv_answer

/* Misses of the assembly: the locks taken let go in reverse order, the
 * syscall number saved, and the C++ fast path tried (then, on its miss,
 * the general path), as if the syscall had just come in. */
.macro MISSES_TO_CPP op, number, function
.L\op\()_miss_all:
    movl $0, %gs:PERCPU_SCHED_LOCK
.L\op\()_miss_ipc:
    movl $0, ENDPOINT_LOCK(%r15)
.L\op\()_miss_table:
    movl $0, TABLE_LOCK(%r13)
.L\op\()_in_cpp:
    SAVE_ARGS
    lea -FRAME_SIZE(%rsp), %rsp
    movq $\number, FRAME_RAX(%rsp)
    mov %rsp, %rdi
    xor %ebp, %ebp                /* the end of the kernel backtrace */
    call \function                /* rax: the partner's frame, or 0 */
    FAST_EXIT
/* A miss the C++ fast path would make too: a partner homed on another
 * CPU, counted as the C++ path counts its misses; or, with no lock taken
 * and not counted, the fast switch off (fastpath=off or donate=off).
 * Straight to the general path. */
.L\op\()_general_all:
    movl $0, %gs:PERCPU_SCHED_LOCK
    movl $0, ENDPOINT_LOCK(%r15)
    movl $0, TABLE_LOCK(%r13)
    addq $1, %gs:PERCPU_SYSCALL_FASTPATH_MISSES
.L\op\()_general:
    SAVE_ARGS
    lea -FRAME_SIZE(%rsp), %rsp
    movq $\number, FRAME_RAX(%rsp)
    xor %ebp, %ebp
    jmp .Lgeneral_path
.endm
    MISSES_TO_CPP call, 0, mk_fastpath_call
/* Call with no receiver waiting (a busy server): the locks let go, and the
 * C++ fast path queues the call and resumes the next thread in line
 * (mk_fastpath_queue_call), which returns to user mode with every register
 * from its own frame, as after Recv; on its miss, the general path. */
.Lcall_queue:
    movl $0, %gs:PERCPU_SCHED_LOCK
    movl $0, ENDPOINT_LOCK(%r15)
    movl $0, TABLE_LOCK(%r13)
    SAVE_ARGS                     /* the C++ path decodes the call from the frame */
    lea -FRAME_SIZE(%rsp), %rsp
    movq $0, FRAME_RAX(%rsp)
    mov %rsp, %rdi
    xor %ebp, %ebp
    call mk_fastpath_queue_call
    RESUME_EXIT
    MISSES_TO_CPP reply_recv, 1, mk_fastpath_reply_recv

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
.Lgeneral_path:
    /* The frame's vector, error code, CS and SS stay unwritten, as in a
     * frame the hit path leaves: nothing reads them in a syscall's frame
     * (the way back is sysret; the trap handlers read their own frames). */
2:  mov %rsp, %rdi                /* here too on a fast-path miss */
    call _ZN2mk14handle_syscallERNS_9TrapFrameE
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
 * mk_resume_at_frame finishes the syscall, and returns with interrupts
 * off (before_return_to_user() or the scheduler lock's hand-over kept
 * them off); then back to user mode as FAST_EXIT leaves, from the frame,
 * without arch_return_to_user's `cli` and RIP check: only an IPC syscall
 * gives its stack up, so the stub above built this frame, and its RIP is
 * the rcx of that `syscall` (FAST_EXIT says why that needs no check). */
    .globl arch_resume_at_frame
arch_resume_at_frame:
    xor %ebp, %ebp                /* the end of the kernel backtrace */
    mov %rsp, %rdi
    call mk_resume_at_frame
    mov FRAME_RDX(%rsp), %rdx
    mov FRAME_R10(%rsp), %r10
    mov FRAME_R8(%rsp), %r8
    mov FRAME_R9(%rsp), %r9
    FRAME_SYSRET

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

    .section .rodata
    .balign 8
.Lfast_info_max:
    .quad FAST_INFO_MAX

    .section .note.GNU-stack, "", @progbits
