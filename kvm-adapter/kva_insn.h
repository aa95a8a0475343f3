/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVA_INSN_H
#define FERRY_KVA_INSN_H

/*
 * Decoder for the privileged x86-64 instructions a guest running natively
 * in ring 3 (the user accelerator) traps on. It is meant only for the bytes
 * at a RIP where the CPU already refused to run the instruction (#GP,
 * SIGSEGV with si_code SI_KERNEL), so it does no general decoding: it
 * recognises the forms below in 64-bit mode and returns -ENOEXEC for
 * anything else.
 *
 *   E4 ib / E5 ib / EC / ED            in    AL|AX|EAX, imm8|DX
 *   E6 ib / E7 ib / EE / EF            out   imm8|DX, AL|AX|EAX
 *   6C / 6D, 6E / 6F                   ins, outs (port DX; rep allowed)
 *   F4 hlt, FA cli, FB sti
 *   CD ib int imm8, CC int3 (vector 3), CF iret (REX.W: iretq)
 *   0F 05 syscall, 0F 34 sysenter, 0F 06 clts, 0F 08 invd, 0F 09 wbinvd
 *   0F 30 wrmsr, 0F 32 rdmsr, 0F 33 rdpmc
 *   0F 20 /r, 0F 22 /r                 mov from / to CR0..CR15
 *   0F 21 /r, 0F 23 /r                 mov from / to DR0..DR15
 *   0F 00 /2 lldt, /3 ltr              register or memory
 *   0F 01 /2 lgdt, /3 lidt, /7 invlpg  memory only
 *
 * Prefixes: segment overrides and 67 anywhere; 66 on the one-byte opcodes
 * (in/out/ins/outs: size 4 -> 2; iret: iretw); F2/F3 on ins/outs only; REX
 * (40-4F) only as the last prefix; lock never. Everything else (66/F2/F3
 * with an 0F opcode, which would select another instruction; REX.W on port
 * I/O; REX followed by a prefix; more than 15 bytes) is -ENOEXEC. int3,
 * int $0x80, syscall, sysenter and iret do not normally #GP in ring 3: they
 * are decoded so a caller that gets to them some other way can name them.
 * into (CE) is #UD in 64-bit mode and is not decoded. The decoder reports
 * register numbers as encoded; checking that a CR or DR exists (CR0, 2, 3,
 * 4, 8; DR0-7) is the caller's business. Memory operands are only measured
 * (ModRM, SIB, disp8/disp32, RIP-relative), not evaluated.
 *
 * GPR numbers are the hardware encoding: 0 rax, 1 rcx, 2 rdx, 3 rbx,
 * 4 rsp, 5 rbp, 6 rsi, 7 rdi, 8..15 r8..r15 (not ucontext's REG_* order).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest x86 instruction, prefixes included. */
#define KVA_INSN_MAX_LEN 15
/* kva_insn.reg when the operand is in memory (lgdt, lidt, invlpg, m16). */
#define KVA_INSN_MEM 0xff

enum kva_insn_op {
	KVA_INSN_OUT, /* port in .port (imm8) or from DX (.port_dx), .size */
	KVA_INSN_IN, /* same operands, into AL/AX/EAX */
	KVA_INSN_OUTS, /* string forms (.port_dx, .size): callers refuse them */
	KVA_INSN_INS,
	KVA_INSN_HLT,
	KVA_INSN_CLI,
	KVA_INSN_STI,
	KVA_INSN_RDMSR,
	KVA_INSN_WRMSR,
	KVA_INSN_MOV_FROM_CR, /* .cr = CR number, .reg = GPR number */
	KVA_INSN_MOV_TO_CR,
	KVA_INSN_MOV_FROM_DR, /* .cr = DR number, .reg = GPR number */
	KVA_INSN_MOV_TO_DR,
	KVA_INSN_LGDT, /* .reg = KVA_INSN_MEM */
	KVA_INSN_LIDT,
	KVA_INSN_LLDT, /* .reg = GPR number or KVA_INSN_MEM */
	KVA_INSN_LTR,
	KVA_INSN_INVLPG, /* .reg = KVA_INSN_MEM */
	KVA_INSN_WBINVD,
	KVA_INSN_INVD,
	KVA_INSN_CLTS,
	KVA_INSN_RDPMC,
	KVA_INSN_SYSCALL,
	KVA_INSN_SYSENTER,
	KVA_INSN_INT, /* int imm8 or int3: .vector */
	KVA_INSN_IRET, /* .size 8 iretq, 4 iretd, 2 iretw */
};

struct kva_insn {
	enum kva_insn_op op;
	uint8_t len; /* bytes, prefixes included */
	uint8_t size; /* operand bytes: in/out/ins/outs 1, 2, 4; iret 2, 4, 8 */
	bool port_dx; /* in/out/ins/outs: the port is DX */
	uint16_t port; /* in/out with imm8 */
	uint8_t cr, reg, vector;
};

/*
 * Decode the instruction at code (avail bytes readable; no byte beyond
 * them is read). Returns 0 and fills *in (in->len <= avail); -ENOEXEC if it
 * is not one of the forms above; -ENODATA if avail is too short to tell.
 * *in is left alone on error. No allocation, no state: thread-safe.
 */
int kva_insn_decode(const uint8_t *code, size_t avail, struct kva_insn *in);

/* "out", "mov to cr", ...; "?" for a value outside the enum. */
const char *kva_insn_name(enum kva_insn_op op);

#endif
