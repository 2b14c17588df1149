/* Program entry: the kernel starts the first thread here with rsp at the
 * top of the stack it mapped and the start argument in rdi. */
    .section .text.start, "ax"
    .globl _start
_start:
    xor %ebp, %ebp                /* the end of backtraces */
    and $-16, %rsp
    call libipc_start             /* never returns */
    ud2

    .section .note.GNU-stack, "", @progbits
