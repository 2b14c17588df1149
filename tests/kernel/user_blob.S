/* Ring-3 test code for tests/kernel/user_ktests.cpp: position-independent,
 * copied to a read+exec page at 0x400000 of a fresh process, with a
 * read+write results page at 0x401000 (RESULTS below). Each entry point is
 * started as a user thread; rdi holds its argument. */

    .set RESULTS, 0x401000
    .set SYS_YIELD, 16
    .set SYS_DEBUG_LOG, 17
    .set SYS_THREAD_EXIT, 10

    .section .rodata
    .balign 4096
    .globl user_blob_start, user_blob_end
    .globl user_blob_syscalls, user_blob_fault, user_blob_fpu, user_blob_spin, user_blob_exit
user_blob_start:

/* Syscall basics; each status goes to RESULTS[i]. */
user_blob_syscalls:
    lea hello(%rip), %rsi
    mov $(hello_end - hello), %edx
    mov $SYS_DEBUG_LOG, %eax
    syscall
    mov %rax, RESULTS + 0              /* 0: Ok */
    mov $999, %eax
    syscall
    mov %rax, RESULTS + 8              /* 14: BadSyscall */
    movabs $0xffffffff80100000, %rsi
    mov $8, %edx
    mov $SYS_DEBUG_LOG, %eax
    syscall
    mov %rax, RESULTS + 16             /* 13: BadAddress (a kernel pointer) */
    lea hello(%rip), %rsi
    mov $100000, %edx
    mov $SYS_DEBUG_LOG, %eax
    syscall
    mov %rax, RESULTS + 24             /* 10: TooLarge */
    mov $0x500000, %rsi
    mov $8, %edx
    mov $SYS_DEBUG_LOG, %eax
    syscall
    mov %rax, RESULTS + 32             /* 13: BadAddress (unmapped) */
    /* Registers other than rax, rcx, r11 survive a syscall. */
    mov $0x1111, %rbx
    mov $0x2222, %rbp
    mov $0x3333, %r12
    mov $0x4444, %r13
    mov $0x5555, %r14
    mov $0x6666, %r15
    mov %rsp, %r8
    xor %edi, %edi
    mov $SYS_YIELD, %eax
    syscall
    int $0x50
    xor %eax, %eax
    cmp $0x1111, %rbx
    jne 1f
    cmp $0x2222, %rbp
    jne 1f
    cmp $0x3333, %r12
    jne 1f
    cmp $0x4444, %r13
    jne 1f
    cmp $0x5555, %r14
    jne 1f
    cmp $0x6666, %r15
    jne 1f
    cmp %rsp, %r8
    jne 1f
    mov $1, %eax
1:  mov %rax, RESULTS + 40             /* 1: registers preserved */
    movq $0x600d, RESULTS + 48         /* reached the end */
    jmp park

/* One deliberate fault per argument; none of them may return. */
user_blob_fault:
    movq $1, RESULTS + 56              /* started */
    cmp $0, %rdi
    je .Lread_kernel
    cmp $1, %rdi
    je .Lprivileged
    cmp $2, %rdi
    je .Lwrite_text
    cmp $3, %rdi
    je .Ljump_kernel
    cmp $4, %rdi
    je .Lundefined
    xor %ecx, %ecx                     /* 5: divide by zero */
    div %rcx
    jmp .Lsurvived
.Lread_kernel:
    movabs $0xffffffff80100000, %rax
    mov (%rax), %rax
    jmp .Lsurvived
.Lprivileged:
    cli
    jmp .Lsurvived
.Lwrite_text:
    lea user_blob_fault(%rip), %rax
    movq $0, (%rax)
    jmp .Lsurvived
.Ljump_kernel:
    movabs $0xffffffff80100000, %rax
    jmp *%rax
.Lundefined:
    ud2
.Lsurvived:
    movq $0xbad, RESULTS + 64
    mov $SYS_THREAD_EXIT, %eax
    syscall

/* Keeps its argument in xmm0 across many yields; RESULTS[9 + rdi&1] = 1
 * when it never changed. */
user_blob_fpu:
    movq %rdi, %xmm0
    pxor %xmm1, %xmm1
    mov $2000, %ecx
2:  mov %rcx, %rsi
    int $0x50
    mov %rsi, %rcx
    movq %xmm0, %rax
    cmp %rdi, %rax
    jne 3f
    paddq %xmm0, %xmm1                 /* some SSE work of its own */
    dec %ecx
    jnz 2b
    mov %rdi, %rax
    and $1, %eax
    movq $1, RESULTS + 72(,%rax,8)
    jmp park
3:  movq $2, RESULTS + 72(,%rax,8)
    jmp park

/* Yields for ever, so the test can read the results before it ends the process. */
park:
    int $0x50
    jmp park

/* Yields forever: only its process's end stops it. */
user_blob_spin:
    movq $1, RESULTS + 88
1:  int $0x50
    jmp 1b

/* Ends its process with status rdi (after yielding once, so the others run). */
user_blob_exit:
    mov %rdi, %rbx
    int $0x50
    mov %rbx, %rsi
    mov $18, %eax                      /* ProcessExit */
    syscall
    ud2

hello:
    .ascii "hello from ring 3\n"
hello_end:
user_blob_end:

    .section .note.GNU-stack, "", @progbits
