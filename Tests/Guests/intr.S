/* Interrupt entry stubs for the test guests (64-bit): vectors 0-31 are
 * exceptions (reported, then the guest exits 0x7d); every other vector
 * goes to irq_handler(vector). */
    .text
    .macro exc n
    .globl exc_\n
exc_\n:
    pushq $\n
    jmp exc_common
    .endm
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    exc \n
    .endr
exc_common:
    movq (%rsp), %rdi       /* vector */
    movq 8(%rsp), %rsi      /* error code or RIP */
    movq 16(%rsp), %rdx
    andq $-16, %rsp
    call exception_handler  /* does not return */

    .globl irq_entry_0x30
irq_entry_0x30:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movl $0x30, %edi
    call irq_handler
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    iretq

    .section .rodata
    .globl exc_table
exc_table:
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_\n
    .endr
