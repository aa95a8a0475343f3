/* SPDX-License-Identifier: MIT */
/*
 * Guest entry and exception stubs. The VMM enters _start in 64-bit mode
 * with rdi = vCPU id, rsi = &params and rsp at the top of this vCPU's
 * stack. Every exception vector 0-31 lands in a 16-byte stub that reports
 * (vector, error code, rip, cr2) on KVA_PORT_EXCEPTION and halts, so a
 * guest bug is a clear message on the host, not a triple fault.
 */
#define KVA_PORT_EXCEPTION 0xe8

	.section .text.entry, "ax"
	.globl _start
_start:
	xor %rbp, %rbp
	call guest_start
1:	hlt
	jmp 1b


	.macro stub v
	.balign 16
	.if !(\v == 8 || (\v >= 10 && \v <= 14) || \v == 17 || \v == 21 || \v == 29 || \v == 30)
	pushq $0
	.endif
	pushq $\v
	jmp exception_common
	.endm

	.balign 16
	.globl kva_vectors
kva_vectors:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	stub \v
	.endr

exception_common:
	popq %rax		/* vector */
	popq %rbx		/* error code */
	movq (%rsp), %rcx	/* rip */
	movq %cr2, %rsi
	movw $KVA_PORT_EXCEPTION, %dx
	outl %eax, %dx
2:	hlt
	jmp 2b
	.section .note.GNU-stack, "", @progbits
