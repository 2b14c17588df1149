/* Multiboot2 header, 32-bit entry and the switch to long mode.
 *
 * GRUB enters _start in 32-bit protected mode with paging off, EAX = the
 * multiboot2 magic and EBX = the physical address of the boot information.
 * We check the CPU can do long mode, map the first 4 GiB twice (identity,
 * for the jump, and at the direct-map base 0xFFFF800000000000) and the first
 * GiB at -2 GiB (the kernel image), enable long mode and call
 * arch_main(magic, info) on the kernel's boot stack. docs/boot.md has the
 * whole flow. */

#define MB2_MAGIC        0xE85250D6
#define MB2_ARCH_I386    0
#define KERNEL_VMA       0xFFFFFFFF80000000
#define COM1             0x3F8

    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    /* Entry address tag: the ELF entry is a higher-half address GRUB cannot use. */
    .balign 8
    .word 3, 0
    .long 12
    .long _start
    /* Module alignment tag: modules start on page boundaries. */
    .balign 8
    .word 6, 0
    .long 8
    /* End tag. */
    .balign 8
    .word 0, 0
    .long 8
mb2_header_end:

    .section .boot.text, "ax"
    .code32
    .globl _start
_start:
    cli
    cld
    mov $boot32_stack_top, %esp
    mov %eax, boot_magic          /* kept for arch_main */
    mov %ebx, boot_info

    cmp $0x36d76289, %eax
    jne .Lno_multiboot2

    /* CPUID present (EFLAGS.ID toggles), extended leaf, long mode bit. */
    pushfl
    pop %eax
    mov %eax, %ecx
    xor $0x200000, %eax
    push %eax
    popfl
    pushfl
    pop %eax
    push %ecx
    popfl
    cmp %eax, %ecx
    je .Lno_long_mode
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb .Lno_long_mode
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz .Lno_long_mode

    /* Boot page tables: 4 page directories of 2 MiB pages cover 4 GiB. */
    mov $boot_pd, %edi
    xor %eax, %eax
    mov $(4 * 512), %ecx
1:  mov %eax, %edx
    shl $21, %edx                 /* low 32 bits of index * 2 MiB */
    or $0x83, %edx                /* present, writable, 2 MiB page */
    mov %edx, (%edi)
    mov %eax, %edx
    shr $11, %edx                 /* high 32 bits of index * 2 MiB */
    mov %edx, 4(%edi)
    add $8, %edi
    inc %eax
    loop 1b

    /* PDPT for the low 4 GiB (shared by the identity and direct maps). */
    mov $boot_pdpt_low, %edi
    mov $boot_pd, %eax
    or $0x3, %eax
    mov $4, %ecx
2:  mov %eax, (%edi)
    movl $0, 4(%edi)
    add $4096, %eax
    add $8, %edi
    loop 2b

    /* PDPT for the top 2 GiB: entry 510 is the first GiB. */
    mov $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt_high + 510 * 8

    mov $boot_pdpt_low, %eax
    or $0x3, %eax
    mov %eax, boot_pml4               /* 0: identity */
    mov %eax, boot_pml4 + 256 * 8     /* 0xFFFF800000000000: direct map */
    mov $boot_pdpt_high, %eax
    or $0x3, %eax
    mov %eax, boot_pml4 + 511 * 8     /* 0xFFFFFF8000000000: kernel */

    mov %cr4, %eax
    or $(1 << 5), %eax            /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx         /* EFER */
    rdmsr
    or $(1 << 8), %eax            /* LME */
    wrmsr
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16)), %eax /* PG, WP */
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

.Lno_multiboot2:
    mov $msg_no_mb2, %ebx
    jmp .Lfail
.Lno_long_mode:
    mov $msg_no_lm, %ebx
.Lfail:
    /* Print the reason on COM1 (already usable at 115200 8N1 after GRUB, or
     * at the power-on default: either way QEMU shows it). */
3:  movb (%ebx), %al
    test %al, %al
    jz 5f
    mov $(COM1 + 5), %dx
4:  inb %dx, %al
    test $0x20, %al
    jz 4b
    movb (%ebx), %al
    mov $COM1, %dx
    outb %al, %dx
    inc %ebx
    jmp 3b
5:  mov $0x11, %al                /* isa-debug-exit: failure */
    mov $0xf4, %dx
    outb %al, %dx
6:  hlt
    jmp 6b

    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov boot_magic, %edi
    mov boot_info, %esi
    movabs $higher_half_entry, %rax
    jmp *%rax

    .section .boot.data, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF      /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF      /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .balign 4
boot_magic: .long 0
boot_info:  .long 0
msg_no_mb2:
    .asciz "boot: not started by a multiboot2 boot loader (bad magic in EAX); halting\r\n"
msg_no_lm:
    .asciz "boot: this CPU has no long mode (x86-64); halting\r\n"

    .section .boot.bss, "aw", @nobits
    .balign 4096
    .globl boot_pml4
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4 * 4096
boot32_stack:   .skip 1024
boot32_stack_top:

    .text
higher_half_entry:
    movabs $boot_stack_top, %rsp
    xor %ebp, %ebp
    mov %edi, %edi                /* zero-extend magic */
    mov %esi, %esi                /* zero-extend info */
    call arch_main
7:  cli
    hlt
    jmp 7b

    /* The boot stack (the boot CPU's boot thread's), over a guard page that
     * arch_main leaves out of the kernel's page tables: an overflow faults
     * (docs/memory.md, "Kernel stacks"). */
    .bss
    .balign 4096
    .globl boot_stack_guard, boot_stack, boot_stack_top
boot_stack_guard:
    .skip 4096
boot_stack:
    .skip 16384
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
