/* The application processors' way from real mode into the kernel
 * (docs/smp.md).
 *
 * The boot CPU copies ap_trampoline_start..ap_trampoline_end to physical
 * AP_TRAMPOLINE_BASE (a page below 1 MiB; the STARTUP IPI's vector is its
 * page number), fills in the data block at its end, and sends INIT, then
 * STARTUP. The AP starts in real mode at CS:IP = 0x0800:0000. Everything
 * here is addressed as AP_BASE + offset, with DS (and the flat segments
 * after it) based at 0.
 *
 *   real mode:  claim the data block (one AP at a time), load the GDT
 *               below, set CR0.PE, far jump to 32-bit code;
 *   32-bit:     CR4.PAE, CR3 = the temporary PML4 (below 4 GiB: it
 *               identity-maps this page and holds the kernel half), EFER
 *               and CR0 as the boot CPU has them (LME, NXE, SCE; PG, WP,
 *               ...): long mode, compatibility mode; far jump to 64-bit code;
 *   64-bit:     CR4 as the boot CPU has it (SMEP, SMAP, PGE, ... only what
 *               that CPU has; PCIDE not yet, see init_user_mode_here), the
 *               stack, the argument and the kernel's CR3 from the data
 *               block; mark the block free; jump to ap_kernel_entry in
 *               the kernel half, which loads the kernel's CR3 and calls
 *               ap_main(arg).
 *
 * The claim word: 0 published for an AP, 1 claimed by one, 2 closed by the
 * boot CPU, 3 the AP has read everything it needs. An AP that finds it
 * anything but 0 halts here, so a late AP never shares another's stack. */

#define AP_BASE 0x8000
#define REL(x) (AP_BASE + (x) - ap_trampoline_start)

    .section .rodata
    .balign 16
    .globl ap_trampoline_start, ap_trampoline_end
    .globl ap_trampoline_data, ap_trampoline_data_end
    .code16
ap_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    mov $1, %eax
    xchgl %eax, REL(ap_claim)     /* locked: one AP wins */
    test %eax, %eax
    jnz .Lpark
    lgdtl REL(ap_gdt_ptr)
    mov %cr0, %eax
    or $1, %eax                   /* PE */
    mov %eax, %cr0
    ljmpl $0x08, $REL(ap_protected)
.Lpark:
    cli
    hlt
    jmp .Lpark

    .code32
ap_protected:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $(1 << 5), %eax            /* PAE */
    mov %eax, %cr4
    mov REL(ap_cr3_low), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx         /* EFER */
    mov REL(ap_efer), %eax
    mov REL(ap_efer) + 4, %edx
    wrmsr
    mov REL(ap_cr0), %eax         /* PG with LME: long mode */
    mov %eax, %cr0
    ljmp $0x18, $REL(ap_long)

    .code64
ap_long:
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov REL(ap_cr4), %rax
    mov %rax, %cr4
    mov REL(ap_kernel_cr3), %rbx
    mov REL(ap_stack_top), %rsp
    mov REL(ap_arg), %rdi
    mov REL(ap_entry), %rax
    /* Loads are not passed by later stores: once this is seen, the block
     * has been read and the boot CPU may fill it for the next AP. */
    movl $3, REL(ap_claim)
    jmp *%rax

    .balign 16
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF      /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF      /* 0x10: data */
    .quad 0x00AF9A000000FFFF      /* 0x18: 64-bit code */
ap_gdt_end:
ap_gdt_ptr:
    .word ap_gdt_end - ap_gdt - 1
    .long REL(ap_gdt)

    /* Filled in by the boot CPU: struct ApTrampolineData in
     * arch/x86_64/smp.cpp, field for field. */
    .balign 8
ap_trampoline_data:
ap_claim:       .long 0
ap_cr3_low:     .long 0           /* the temporary PML4 */
ap_efer:        .quad 0
ap_cr0:         .quad 0
ap_cr4:         .quad 0
ap_kernel_cr3:  .quad 0
ap_stack_top:   .quad 0
ap_entry:       .quad 0           /* ap_kernel_entry */
ap_arg:         .quad 0
ap_trampoline_data_end:
ap_trampoline_end:

    /* In the kernel half: rbx = the kernel's CR3, rsp = this AP's stack,
     * rdi = the argument for ap_main. */
    .text
    .globl ap_kernel_entry
ap_kernel_entry:
    mov %rbx, %cr3                /* the identity-mapped trampoline is gone */
    xor %ebp, %ebp
    call ap_main
1:  cli
    hlt
    jmp 1b

    .section .note.GNU-stack, "", @progbits
