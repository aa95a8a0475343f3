// SPDX-License-Identifier: MIT
/*
 * Decoder for the privileged instructions a ring-3 guest traps on
 * (kva_insn.h): a prefix scan, one table lookup, then the operand bytes
 * the table entry asks for. Every byte read goes through kva_fetch(), which
 * enforces both avail and the 15-byte limit.
 */
#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "kvm-adapter/kva_insn.h"

/* What follows the opcode, and which prefixes it takes. */
enum {
	F_IMM8 = 1 << 0, /* an imm8: the port (in/out) or the vector (int) */
	F_DX = 1 << 1, /* the port is DX */
	F_PORT = 1 << 2, /* in/out/ins/outs: size 1, or 4 (2 with 66) */
	F_REP = 1 << 3, /* F2/F3 allowed */
	F_MODRM = 1 << 4, /* a ModRM byte, maybe SIB and displacement */
	F_MEM = 1 << 5, /* the ModRM operand must be memory (mod != 3) */
	F_CRDR = 1 << 6, /* mov cr/dr: reg = CR/DR, rm = GPR, mod ignored */
};

struct kva_insn_ent {
	uint16_t opc; /* one-byte opcode, or 0x0Fxx */
	int8_t ext; /* ModRM.reg selecting a group member, or -1 */
	uint8_t op; /* enum kva_insn_op */
	uint8_t flags;
};

static const struct kva_insn_ent kva_insn_table[] = {
	{ 0xe4, -1, KVA_INSN_IN, F_PORT | F_IMM8 },
	{ 0xe5, -1, KVA_INSN_IN, F_PORT | F_IMM8 },
	{ 0xec, -1, KVA_INSN_IN, F_PORT | F_DX },
	{ 0xed, -1, KVA_INSN_IN, F_PORT | F_DX },
	{ 0xe6, -1, KVA_INSN_OUT, F_PORT | F_IMM8 },
	{ 0xe7, -1, KVA_INSN_OUT, F_PORT | F_IMM8 },
	{ 0xee, -1, KVA_INSN_OUT, F_PORT | F_DX },
	{ 0xef, -1, KVA_INSN_OUT, F_PORT | F_DX },
	{ 0x6c, -1, KVA_INSN_INS, F_PORT | F_DX | F_REP },
	{ 0x6d, -1, KVA_INSN_INS, F_PORT | F_DX | F_REP },
	{ 0x6e, -1, KVA_INSN_OUTS, F_PORT | F_DX | F_REP },
	{ 0x6f, -1, KVA_INSN_OUTS, F_PORT | F_DX | F_REP },
	{ 0xf4, -1, KVA_INSN_HLT, 0 },
	{ 0xfa, -1, KVA_INSN_CLI, 0 },
	{ 0xfb, -1, KVA_INSN_STI, 0 },
	{ 0xcc, -1, KVA_INSN_INT, 0 },
	{ 0xcd, -1, KVA_INSN_INT, F_IMM8 },
	{ 0xcf, -1, KVA_INSN_IRET, 0 },
	{ 0x0f05, -1, KVA_INSN_SYSCALL, 0 },
	{ 0x0f06, -1, KVA_INSN_CLTS, 0 },
	{ 0x0f08, -1, KVA_INSN_INVD, 0 },
	{ 0x0f09, -1, KVA_INSN_WBINVD, 0 },
	{ 0x0f30, -1, KVA_INSN_WRMSR, 0 },
	{ 0x0f32, -1, KVA_INSN_RDMSR, 0 },
	{ 0x0f33, -1, KVA_INSN_RDPMC, 0 },
	{ 0x0f34, -1, KVA_INSN_SYSENTER, 0 },
	{ 0x0f20, -1, KVA_INSN_MOV_FROM_CR, F_MODRM | F_CRDR },
	{ 0x0f21, -1, KVA_INSN_MOV_FROM_DR, F_MODRM | F_CRDR },
	{ 0x0f22, -1, KVA_INSN_MOV_TO_CR, F_MODRM | F_CRDR },
	{ 0x0f23, -1, KVA_INSN_MOV_TO_DR, F_MODRM | F_CRDR },
	{ 0x0f00, 2, KVA_INSN_LLDT, F_MODRM },
	{ 0x0f00, 3, KVA_INSN_LTR, F_MODRM },
	{ 0x0f01, 2, KVA_INSN_LGDT, F_MODRM | F_MEM },
	{ 0x0f01, 3, KVA_INSN_LIDT, F_MODRM | F_MEM },
	{ 0x0f01, 7, KVA_INSN_INVLPG, F_MODRM | F_MEM },
};

static const char *const kva_insn_names[] = {
	[KVA_INSN_OUT] = "out",
	[KVA_INSN_IN] = "in",
	[KVA_INSN_OUTS] = "outs",
	[KVA_INSN_INS] = "ins",
	[KVA_INSN_HLT] = "hlt",
	[KVA_INSN_CLI] = "cli",
	[KVA_INSN_STI] = "sti",
	[KVA_INSN_RDMSR] = "rdmsr",
	[KVA_INSN_WRMSR] = "wrmsr",
	[KVA_INSN_MOV_FROM_CR] = "mov from cr",
	[KVA_INSN_MOV_TO_CR] = "mov to cr",
	[KVA_INSN_MOV_FROM_DR] = "mov from dr",
	[KVA_INSN_MOV_TO_DR] = "mov to dr",
	[KVA_INSN_LGDT] = "lgdt",
	[KVA_INSN_LIDT] = "lidt",
	[KVA_INSN_LLDT] = "lldt",
	[KVA_INSN_LTR] = "ltr",
	[KVA_INSN_INVLPG] = "invlpg",
	[KVA_INSN_WBINVD] = "wbinvd",
	[KVA_INSN_INVD] = "invd",
	[KVA_INSN_CLTS] = "clts",
	[KVA_INSN_RDPMC] = "rdpmc",
	[KVA_INSN_SYSCALL] = "syscall",
	[KVA_INSN_SYSENTER] = "sysenter",
	[KVA_INSN_INT] = "int",
	[KVA_INSN_IRET] = "iret",
};

/* The first entry for opc whose ext matches (ext < 0: any). */
static const struct kva_insn_ent *kva_insn_lookup(uint16_t opc, int ext)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(kva_insn_table); i++) {
		const struct kva_insn_ent *e = &kva_insn_table[i];

		if (e->opc == opc && (ext < 0 || e->ext < 0 || e->ext == ext))
			return e;
	}
	return NULL;
}

/* Whether an instruction of n bytes can be one, and can be read. */
static int kva_need(size_t avail, size_t n)
{
	if (n > KVA_INSN_MAX_LEN)
		return -ENOEXEC;
	return n > avail ? -ENODATA : 0;
}

/* *b = code[(*i)++], if that byte is readable and within the limit. */
static int kva_fetch(const uint8_t *code, size_t avail, size_t *i, uint8_t *b)
{
	int err = kva_need(avail, *i + 1);

	if (!err)
		*b = code[(*i)++];
	return err;
}

static bool kva_is_legacy_prefix(uint8_t b)
{
	return b && memchr("\x26\x2e\x36\x3e\x64\x65\x66\x67\xf2\xf3", b, 10);
}

int kva_insn_decode(const uint8_t *code, size_t avail, struct kva_insn *in)
{
	struct kva_insn d = { 0 };
	const struct kva_insn_ent *e;
	bool opsz = false, rep = false;
	uint8_t b, rex = 0, modrm = 0, sib, mod, rm;
	size_t i = 0, disp = 0;
	uint16_t opc;
	int err;

	for (;;) {
		err = kva_fetch(code, avail, &i, &b);
		if (err)
			return err;
		if (b == 0xf0)
			return -ENOEXEC; /* lock */
		if (!kva_is_legacy_prefix(b) && (b & 0xf0) != 0x40)
			break;
		if (rex)
			return -ENOEXEC; /* REX must come last */
		if ((b & 0xf0) == 0x40)
			rex = b;
		else if (b == 0x66)
			opsz = true;
		else if (b == 0xf2 || b == 0xf3)
			rep = true;
	}
	opc = b;
	if (b == 0x0f) {
		err = kva_fetch(code, avail, &i, &b);
		if (err)
			return err;
		opc = 0x0f00 | b;
	}
	e = kva_insn_lookup(opc, -1);
	if (!e)
		return -ENOEXEC;
	if (e->flags & F_MODRM) {
		err = kva_fetch(code, avail, &i, &modrm);
		if (err)
			return err;
		e = kva_insn_lookup(opc, (modrm >> 3) & 7);
		if (!e)
			return -ENOEXEC;
	}
	if ((rep && !(e->flags & F_REP)) || (opsz && opc > 0xff) ||
	    ((rex & 0x08) && (e->flags & F_PORT)))
		return -ENOEXEC;

	d.op = e->op;
	if (e->flags & F_CRDR) {
		d.cr = ((modrm >> 3) & 7) | (rex & 0x04 ? 8 : 0);
		d.reg = (modrm & 7) | (rex & 0x01 ? 8 : 0);
	} else if (e->flags & F_MODRM) {
		mod = modrm >> 6;
		rm = modrm & 7;
		if (mod == 3 && (e->flags & F_MEM))
			return -ENOEXEC;
		d.reg = mod == 3 ? rm | (rex & 0x01 ? 8 : 0) : KVA_INSN_MEM;
		if (mod != 3 && rm == 4) {
			err = kva_fetch(code, avail, &i, &sib);
			if (err)
				return err;
			if (mod == 0 && (sib & 7) == 5)
				disp = 4; /* no base: disp32 */
		}
		if (mod == 0 && rm == 5)
			disp = 4; /* RIP-relative */
		else if (mod == 1)
			disp = 1;
		else if (mod == 2)
			disp = 4;
		err = kva_need(avail, i + disp);
		if (err)
			return err;
		i += disp;
	}
	if (e->flags & F_IMM8) {
		err = kva_fetch(code, avail, &i, &b);
		if (err)
			return err;
		if (e->flags & F_PORT)
			d.port = b;
		else
			d.vector = b;
	} else if (d.op == KVA_INSN_INT) {
		d.vector = 3; /* int3 */
	}
	d.port_dx = e->flags & F_DX;
	if (e->flags & F_PORT)
		d.size = !(opc & 1) ? 1 : opsz ? 2 : 4;
	else if (d.op == KVA_INSN_IRET)
		d.size = rex & 0x08 ? 8 : opsz ? 2 : 4;
	d.len = i;
	*in = d;
	return 0;
}

const char *kva_insn_name(enum kva_insn_op op)
{
	if ((unsigned int)op >= ARRAY_SIZE(kva_insn_names))
		return "?";
	return kva_insn_names[op];
}
