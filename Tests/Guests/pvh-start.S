/*
 * PVH entry for vfsvm's freestanding test guests (Xen PVH ABI, as Linux's
 * arch/x86/platform/pvh/head.S uses it): the VMM enters `pvh_start` in
 * 32-bit protected mode, paging off, %ebx = hvm_start_info. We build
 * identity page tables for the first 8 GiB (2 MiB pages: RAM, the 32-bit
 * MMIO hole and the first 64-bit PCI BARs; 1 GiB pages where the CPU
 * has them), enter long mode and call
 * guest_main(start_info) in C.
 */
#define PML4 0x200000
#define PDPT 0x201000
#define PD0  0x202000   /* 8 page directories, 0x202000..0x209fff */

    .section .note.Xen, "a", @note
    .align 4
    .long 4             /* namesz: "Xen\0" */
    .long 4             /* descsz */
    .long 18            /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

    .section .text.boot, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cld
    movl %ebx, %esi                 /* keep start_info */
    /* PML4[0] -> PDPT */
    movl $PML4, %edi
    movl $(4096 / 4), %ecx
    xorl %eax, %eax
    rep stosl
    movl $(PDPT | 3), PML4
    /* With 1 GiB pages (CPUID 0x80000001 EDX bit 26) the PDPT maps the
     * 8 GiB itself: a few instructions, which matters at this KVM's
     * emulated speed. Otherwise 8 page directories of 2 MiB pages. */
    movl $0x80000001, %eax
    cpuid
    btl $26, %edx
    jnc 5f
    xorl %ecx, %ecx
6:  movl %ecx, %eax
    shll $30, %eax
    orl $0x83, %eax                 /* present, writable, PS */
    cmpl $3, %ecx
    jb 7f
    orl $0x10, %eax                 /* PCD for >= 3 GiB (MMIO) */
7:  movl %eax, PDPT(, %ecx, 8)
    movl %ecx, %edx
    shrl $2, %edx                   /* bits 32+ of i << 30 */
    movl %edx, PDPT + 4(, %ecx, 8)
    incl %ecx
    cmpl $8, %ecx
    jne 6b
    jmp 8f
5:  movl $PDPT, %edi
    movl $((PD0 + 8 * 4096 - PDPT) / 4), %ecx
    xorl %eax, %eax
    rep stosl
    /* PDPT[0..7] -> PD0..PD7 */
    movl $0, %ecx
1:  movl %ecx, %eax
    shll $12, %eax
    addl $(PD0 | 3), %eax
    movl %eax, PDPT(, %ecx, 8)
    incl %ecx
    cmpl $8, %ecx
    jne 1b
    /* 4096 PD entries of 2 MiB: present, writable, PS; PCD for >= 3 GiB (MMIO) */
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    cmpl $1536, %ecx
    jb 3f
    orl $0x10, %eax                 /* PCD */
3:  movl %eax, PD0(, %ecx, 8)
    movl %ecx, %edx
    shrl $11, %edx                  /* high dword: bits 32+ of the address */
    movl %edx, PD0 + 4(, %ecx, 8)
    incl %ecx
    cmpl $4096, %ecx
    jne 2b
8:
    /* CR4.PAE, CR3, EFER.LME, CR0.PG */
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $PML4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt gdt_ptr
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    leaq stack_top(%rip), %rsp
    movl %esi, %edi                 /* guest_main(start_info) */
    call guest_main
    /* guest_main returned: exit status 0x7f through the debug-exit port. */
    movw $0x501, %dx
    movb $0x7f, %al
    outb %al, %dx
4:  hlt
    jmp 4b

    .section .rodata
    .align 16
gdt:
    .quad 0
    .quad 0x00af9b000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf93000000ffff        /* 0x10: data */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

    .section .bss
    .align 16
    .space 65536
stack_top:
