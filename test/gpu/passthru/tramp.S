/* tramp.S: PT_TRAMPS trampolines for export-table slots. Trampoline i loads i into r11 and
 * jumps to the common part, which saves the argument registers, asks pt_slot_hit(i, saved) for
 * the real function (it also counts the call and keeps the first calls' arguments), restores
 * them and jumps there: the real function sees exactly the caller's arguments and returns to
 * the caller. */
.section .note.GNU-stack,"",@progbits
.text
.globl pt_tramps
.hidden pt_tramps
.balign 16
pt_tramps:
.set i, 0
.rept 4096
    movl $i, %r11d
    jmp pt_common
    .balign 16
    .set i, i + 1
.endr

pt_common:
    pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %r8
    pushq %r9
    pushq %rax
    subq $128, %rsp
    movdqu %xmm0, 0(%rsp)
    movdqu %xmm1, 16(%rsp)
    movdqu %xmm2, 32(%rsp)
    movdqu %xmm3, 48(%rsp)
    movdqu %xmm4, 64(%rsp)
    movdqu %xmm5, 80(%rsp)
    movdqu %xmm6, 96(%rsp)
    movdqu %xmm7, 112(%rsp)
    movl %r11d, %edi
    leaq 128(%rsp), %rsi
    call pt_slot_hit@PLT
    movq %rax, %r11
    movdqu 0(%rsp), %xmm0
    movdqu 16(%rsp), %xmm1
    movdqu 32(%rsp), %xmm2
    movdqu 48(%rsp), %xmm3
    movdqu 64(%rsp), %xmm4
    movdqu 80(%rsp), %xmm5
    movdqu 96(%rsp), %xmm6
    movdqu 112(%rsp), %xmm7
    addq $128, %rsp
    popq %rax
    popq %r9
    popq %r8
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    jmp *%r11
