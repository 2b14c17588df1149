/* Entry of threads started by mk::ipc::start_thread(): the kernel starts
 * them here with rsp at the top of their stack and the argument (their
 * ThreadStart record) in rdi, as it starts a program's first thread. */
    .section .text, "ax"
    .globl libipc_thread_entry
libipc_thread_entry:
    xor %ebp, %ebp                /* the end of backtraces */
    and $-16, %rsp
    call libipc_thread_main       /* never returns */
    ud2

    .section .note.GNU-stack, "", @progbits
