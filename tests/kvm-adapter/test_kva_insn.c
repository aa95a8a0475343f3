// SPDX-License-Identifier: MIT
/*
 * kva_insn_decode(): every privileged form with its exact length and
 * operands (bytes from GNU as / objdump -d), truncation (-ENODATA), things
 * that are not ours (-ENOEXEC), the 15-byte limit, and a sweep of every
 * 1- and 2-byte sequence plus random 15-byte buffers in which the readable
 * bytes end exactly at the end of a heap block, so a build with
 * -Db_sanitize=address catches any read beyond avail.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"
#include "kvm-adapter/kva_insn.h"

#define M KVA_INSN_MEM

struct form {
	const char *text; /* objdump's disassembly */
	enum kva_insn_op op;
	uint8_t size;
	bool dx;
	uint16_t port;
	uint8_t cr, reg, vector;
	uint8_t bytes[KVA_INSN_MAX_LEN];
	uint8_t n;
};

/* text, op, size, port_dx, port, cr, reg, vector, bytes... (len = count) */
#define F(text, op, size, dx, port, cr, reg, vec, ...)                      \
	{                                                                   \
		text, KVA_INSN_##op, size, dx, port, cr, reg, vec,          \
			{ __VA_ARGS__ }, sizeof((uint8_t[]){ __VA_ARGS__ }) \
	}

static const struct form forms[] = {
	F("out %al,$0xe7", OUT, 1, 0, 0xe7, 0, 0, 0, 0xe6, 0xe7),
	F("out %ax,$0x80", OUT, 2, 0, 0x80, 0, 0, 0, 0x66, 0xe7, 0x80),
	F("out %eax,$0x70", OUT, 4, 0, 0x70, 0, 0, 0, 0xe7, 0x70),
	F("out %al,(%dx)", OUT, 1, 1, 0, 0, 0, 0, 0xee),
	F("out %ax,(%dx)", OUT, 2, 1, 0, 0, 0, 0, 0x66, 0xef),
	F("out %eax,(%dx)", OUT, 4, 1, 0, 0, 0, 0, 0xef),
	F("es out %al,$0xe7", OUT, 1, 0, 0xe7, 0, 0, 0, 0x26, 0xe6, 0xe7),
	F("in $0x60,%al", IN, 1, 0, 0x60, 0, 0, 0, 0xe4, 0x60),
	F("in $0x61,%ax", IN, 2, 0, 0x61, 0, 0, 0, 0x66, 0xe5, 0x61),
	F("in $0xff,%eax", IN, 4, 0, 0xff, 0, 0, 0, 0xe5, 0xff),
	F("in (%dx),%al", IN, 1, 1, 0, 0, 0, 0, 0xec),
	F("in (%dx),%ax", IN, 2, 1, 0, 0, 0, 0, 0x66, 0xed),
	F("in (%dx),%eax", IN, 4, 1, 0, 0, 0, 0, 0xed),
	F("insb", INS, 1, 1, 0, 0, 0, 0, 0x6c),
	F("insw", INS, 2, 1, 0, 0, 0, 0, 0x66, 0x6d),
	F("insl", INS, 4, 1, 0, 0, 0, 0, 0x6d),
	F("outsb", OUTS, 1, 1, 0, 0, 0, 0, 0x6e),
	F("outsw", OUTS, 2, 1, 0, 0, 0, 0, 0x66, 0x6f),
	F("outsl", OUTS, 4, 1, 0, 0, 0, 0, 0x6f),
	F("rep insb", INS, 1, 1, 0, 0, 0, 0, 0xf3, 0x6c),
	F("rep outsl", OUTS, 4, 1, 0, 0, 0, 0, 0xf3, 0x6f),
	F("repnz outsw", OUTS, 2, 1, 0, 0, 0, 0, 0x66, 0xf2, 0x6f),
	F("hlt", HLT, 0, 0, 0, 0, 0, 0, 0xf4),
	F("cli", CLI, 0, 0, 0, 0, 0, 0, 0xfa),
	F("sti", STI, 0, 0, 0, 0, 0, 0, 0xfb),
	F("rdmsr", RDMSR, 0, 0, 0, 0, 0, 0, 0x0f, 0x32),
	F("wrmsr", WRMSR, 0, 0, 0, 0, 0, 0, 0x0f, 0x30),
	F("rdpmc", RDPMC, 0, 0, 0, 0, 0, 0, 0x0f, 0x33),
	F("mov %cr0,%rax", MOV_FROM_CR, 0, 0, 0, 0, 0, 0, 0x0f, 0x20, 0xc0),
	F("mov %cr2,%rsi", MOV_FROM_CR, 0, 0, 0, 2, 6, 0, 0x0f, 0x20, 0xd6),
	F("mov %cr3,%r15", MOV_FROM_CR, 0, 0, 0, 3, 15, 0, 0x41, 0x0f, 0x20,
	  0xdf),
	F("mov %cr4,%rdi", MOV_FROM_CR, 0, 0, 0, 4, 7, 0, 0x0f, 0x20, 0xe7),
	F("mov %cr8,%rax", MOV_FROM_CR, 0, 0, 0, 8, 0, 0, 0x44, 0x0f, 0x20,
	  0xc0),
	/* Hand-made: mod is ignored, the operand is still %rax. */
	F("mov %cr0,%rax (mod 0)", MOV_FROM_CR, 0, 0, 0, 0, 0, 0, 0x0f, 0x20,
	  0x00),
	F("mov %rbx,%cr0", MOV_TO_CR, 0, 0, 0, 0, 3, 0, 0x0f, 0x22, 0xc3),
	F("mov %r9,%cr8", MOV_TO_CR, 0, 0, 0, 8, 9, 0, 0x45, 0x0f, 0x22, 0xc1),
	F("mov %rax,%cr8", MOV_TO_CR, 0, 0, 0, 8, 0, 0, 0x44, 0x0f, 0x22, 0xc0),
	F("mov %r8,%cr0", MOV_TO_CR, 0, 0, 0, 0, 8, 0, 0x41, 0x0f, 0x22, 0xc0),
	F("mov %rsp,%cr3", MOV_TO_CR, 0, 0, 0, 3, 4, 0, 0x0f, 0x22, 0xdc),
	F("mov %r12,%cr4", MOV_TO_CR, 0, 0, 0, 4, 12, 0, 0x41, 0x0f, 0x22,
	  0xe4),
	F("mov %db7,%rax", MOV_FROM_DR, 0, 0, 0, 7, 0, 0, 0x0f, 0x21, 0xf8),
	F("mov %db6,%r10", MOV_FROM_DR, 0, 0, 0, 6, 10, 0, 0x41, 0x0f, 0x21,
	  0xf2),
	F("mov %rcx,%db0", MOV_TO_DR, 0, 0, 0, 0, 1, 0, 0x0f, 0x23, 0xc1),
	F("mov %r14,%db3", MOV_TO_DR, 0, 0, 0, 3, 14, 0, 0x41, 0x0f, 0x23,
	  0xde),
	F("lgdt (%rax)", LGDT, 0, 0, 0, 0, M, 0, 0x0f, 0x01, 0x10),
	F("lidt 0x10(%rip)", LIDT, 0, 0, 0, 0, M, 0, 0x0f, 0x01, 0x1d, 0x10,
	  0x00, 0x00, 0x00),
	F("lgdt (%rax,%rbx,4)", LGDT, 0, 0, 0, 0, M, 0, 0x0f, 0x01, 0x14, 0x98),
	F("lgdt 0x12345678(,%rcx,8)", LGDT, 0, 0, 0, 0, M, 0, 0x0f, 0x01, 0x14,
	  0xcd, 0x78, 0x56, 0x34, 0x12),
	F("lidt -0x8(%rbp)", LIDT, 0, 0, 0, 0, M, 0, 0x0f, 0x01, 0x5d, 0xf8),
	F("lidt 0x1000(%r13)", LIDT, 0, 0, 0, 0, M, 0, 0x41, 0x0f, 0x01, 0x9d,
	  0x00, 0x10, 0x00, 0x00),
	F("lgdt (%rsp)", LGDT, 0, 0, 0, 0, M, 0, 0x0f, 0x01, 0x14, 0x24),
	F("lgdt 0x7f(%rsp,%r11,2)", LGDT, 0, 0, 0, 0, M, 0, 0x42, 0x0f, 0x01,
	  0x54, 0x5c, 0x7f),
	F("lidt (%r12)", LIDT, 0, 0, 0, 0, M, 0, 0x41, 0x0f, 0x01, 0x1c, 0x24),
	F("lgdt 0x100", LGDT, 0, 0, 0, 0, M, 0, 0x0f, 0x01, 0x14, 0x25, 0x00,
	  0x01, 0x00, 0x00),
	F("lgdt (%eax)", LGDT, 0, 0, 0, 0, M, 0, 0x67, 0x0f, 0x01, 0x10),
	F("lldt %ax", LLDT, 0, 0, 0, 0, 0, 0, 0x0f, 0x00, 0xd0),
	F("lldt %r9w", LLDT, 0, 0, 0, 0, 9, 0, 0x41, 0x0f, 0x00, 0xd1),
	F("lldt (%rdx)", LLDT, 0, 0, 0, 0, M, 0, 0x0f, 0x00, 0x12),
	F("lldt 0x10(%rax)", LLDT, 0, 0, 0, 0, M, 0, 0x0f, 0x00, 0x50, 0x10),
	F("ltr %bx", LTR, 0, 0, 0, 0, 3, 0, 0x0f, 0x00, 0xdb),
	F("ltr %r15w", LTR, 0, 0, 0, 0, 15, 0, 0x41, 0x0f, 0x00, 0xdf),
	F("ltr 0x20(%rip)", LTR, 0, 0, 0, 0, M, 0, 0x0f, 0x00, 0x1d, 0x20, 0x00,
	  0x00, 0x00),
	F("ltr 0x12345678(%rax)", LTR, 0, 0, 0, 0, M, 0, 0x0f, 0x00, 0x98, 0x78,
	  0x56, 0x34, 0x12),
	F("invlpg (%rdi)", INVLPG, 0, 0, 0, 0, M, 0, 0x0f, 0x01, 0x3f),
	F("invlpg 0x40(%r8)", INVLPG, 0, 0, 0, 0, M, 0, 0x41, 0x0f, 0x01, 0x78,
	  0x40),
	F("invlpg 0x12345678(%rax,%rbx,1)", INVLPG, 0, 0, 0, 0, M, 0, 0x0f,
	  0x01, 0xbc, 0x18, 0x78, 0x56, 0x34, 0x12),
	F("invlpg %fs:(%rax)", INVLPG, 0, 0, 0, 0, M, 0, 0x64, 0x0f, 0x01,
	  0x38),
	F("wbinvd", WBINVD, 0, 0, 0, 0, 0, 0, 0x0f, 0x09),
	F("invd", INVD, 0, 0, 0, 0, 0, 0, 0x0f, 0x08),
	F("clts", CLTS, 0, 0, 0, 0, 0, 0, 0x0f, 0x06),
	F("syscall", SYSCALL, 0, 0, 0, 0, 0, 0, 0x0f, 0x05),
	F("sysenter", SYSENTER, 0, 0, 0, 0, 0, 0, 0x0f, 0x34),
	F("int $0x80", INT, 0, 0, 0, 0, 0, 0x80, 0xcd, 0x80),
	F("int $0x3", INT, 0, 0, 0, 0, 0, 3, 0xcd, 0x03),
	F("int3", INT, 0, 0, 0, 0, 0, 3, 0xcc),
	F("iret", IRET, 4, 0, 0, 0, 0, 0, 0xcf),
	F("iretq", IRET, 8, 0, 0, 0, 0, 0, 0x48, 0xcf),
	F("iretw", IRET, 2, 0, 0, 0, 0, 0, 0x66, 0xcf),
	/* 14 prefixes + opcode: exactly 15 bytes */
	F("out %ax,(%dx) x14", OUT, 2, 1, 0, 0, 0, 0, 0x66, 0x66, 0x66, 0x66,
	  0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0xef),
	/* 7 prefixes + REX + 0f 01 modrm disp32: exactly 15 bytes */
	F("lidt 0x1000(%r13) x7", LIDT, 0, 0, 0, 0, M, 0, 0x2e, 0x3e, 0x26,
	  0x36, 0x64, 0x65, 0x67, 0x41, 0x0f, 0x01, 0x9d, 0x00, 0x10, 0x00,
	  0x00),
};

/* A heap copy whose last byte is the last byte of the block. */
static uint8_t *tail_copy(const uint8_t *b, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	assert_non_null(p);
	if (n)
		memcpy(p, b, n);
	return p;
}

static int decode_exact(const uint8_t *b, size_t n, struct kva_insn *in)
{
	uint8_t *p = tail_copy(b, n);
	int ret = kva_insn_decode(n ? p : NULL, n, in);

	free(p);
	return ret;
}

static void check_form(const struct form *f, const struct kva_insn *in)
{
	if (in->op != f->op || in->len != f->n || in->size != f->size ||
	    in->port_dx != f->dx || in->port != f->port || in->cr != f->cr ||
	    in->reg != f->reg || in->vector != f->vector)
		fail_msg("%s: got %s len %u size %u dx %d port %#x cr %u "
			 "reg %u vector %u",
			 f->text, kva_insn_name(in->op), in->len, in->size,
			 in->port_dx, in->port, in->cr, in->reg, in->vector);
}

/* Each form, alone and followed by more bytes (a ud2 and zeroes). */
static void test_forms(void **state)
{
	uint8_t buf[KVA_INSN_MAX_LEN + 4];
	struct kva_insn in;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(forms); i++) {
		const struct form *f = &forms[i];

		memset(&in, 0xaa, sizeof(in));
		assert_int_equal(decode_exact(f->bytes, f->n, &in), 0);
		check_form(f, &in);

		memset(buf, 0, sizeof(buf));
		memcpy(buf, f->bytes, f->n);
		buf[f->n] = 0x0f;
		buf[f->n + 1] = 0x0b;
		assert_int_equal(decode_exact(buf, sizeof(buf), &in), 0);
		check_form(f, &in);
	}
}

/* Every proper prefix of every form is too short to tell. */
static void test_truncated(void **state)
{
	struct kva_insn in = { .op = KVA_INSN_HLT, .len = 77 };
	size_t i, n;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(forms); i++)
		for (n = 0; n < forms[i].n; n++) {
			if (decode_exact(forms[i].bytes, n, &in) != -ENODATA)
				fail_msg("%s: %zu of %u bytes not -ENODATA",
					 forms[i].text, n, forms[i].n);
			assert_int_equal(in.len, 77); /* untouched */
		}
	assert_int_equal(kva_insn_decode(NULL, 0, &in), -ENODATA);
}

struct bad {
	const char *text;
	uint8_t bytes[KVA_INSN_MAX_LEN + 2];
	uint8_t n;
};

#define B(text, ...)                                                      \
	{                                                                 \
		text, { __VA_ARGS__ }, sizeof((uint8_t[]){ __VA_ARGS__ }) \
	}

static const struct bad bads[] = {
	B("mov %rax,%rbx", 0x48, 0x89, 0xc3),
	B("nop", 0x90),
	B("ud2", 0x0f, 0x0b),
	B("swapgs (0f 01 /7 reg)", 0x0f, 0x01, 0xf8),
	B("sgdt (%rax)", 0x0f, 0x01, 0x00),
	B("xgetbv (0f 01 /2 reg)", 0x0f, 0x01, 0xd0),
	B("0f 01 /3 reg (vmrun etc.)", 0x0f, 0x01, 0xd8),
	B("str %eax", 0x0f, 0x00, 0xc8),
	B("sldt %eax", 0x0f, 0x00, 0xc0),
	B("lock add %eax,(%rbx)", 0xf0, 0x01, 0x03),
	B("lock mov %cr0,%rax", 0xf0, 0x0f, 0x20, 0xc0),
	B("lock hlt", 0xf0, 0xf4),
	B("hlt lock-prefixed after 66", 0x66, 0xf0, 0xf4),
	B("wbnoinvd (f3 0f 09)", 0xf3, 0x0f, 0x09),
	B("66 0f 20 c0", 0x66, 0x0f, 0x20, 0xc0),
	B("f2 0f 01 10", 0xf2, 0x0f, 0x01, 0x10),
	B("repz out %al,(%dx)", 0xf3, 0xee),
	B("rep hlt", 0xf3, 0xf4),
	B("rex.W out %eax,(%dx)", 0x48, 0xef),
	B("rex.W insl", 0x48, 0x6d),
	B("REX before 66", 0x40, 0x66, 0xef),
	B("two REX", 0x48, 0x48, 0xcf),
	B("into (#UD in 64-bit mode)", 0xce),
	B("add %al,(%rax)", 0x00, 0x00),
	B("16 prefixes", 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
	  0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0xef),
	B("15 prefixes + 0f 09", 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e,
	  0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x0f, 0x09),
	/* 8 prefixes + REX + 0f 01 modrm disp32 = 16 */
	B("lidt 0x1000(%r13) x8", 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0x67,
	  0x2e, 0x41, 0x0f, 0x01, 0x9d, 0x00, 0x10, 0x00, 0x00),
	/* 14 prefixes + e6 imm8 = 16 */
	B("out %al,$0xe7 x14", 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0x26,
	  0x26, 0x26, 0x26, 0x26, 0x26, 0x26, 0xe6, 0xe7),
};

static void test_rejects(void **state)
{
	struct kva_insn in = { .len = 77 };
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(bads); i++) {
		if (decode_exact(bads[i].bytes, bads[i].n, &in) != -ENOEXEC)
			fail_msg("%s: not -ENOEXEC", bads[i].text);
		assert_int_equal(in.len, 77);
	}
}

/* Too long is -ENOEXEC even when avail stops short of the end. */
static void test_length_cap(void **state)
{
	uint8_t p[KVA_INSN_MAX_LEN + 1];
	struct kva_insn in;
	size_t n;

	(void)state;
	memset(p, 0x66, sizeof(p));
	for (n = 0; n < KVA_INSN_MAX_LEN; n++)
		assert_int_equal(decode_exact(p, n, &in), -ENODATA);
	assert_int_equal(decode_exact(p, KVA_INSN_MAX_LEN, &in), -ENOEXEC);
	assert_int_equal(decode_exact(p, sizeof(p), &in), -ENOEXEC);

	/* 10 prefixes + lidt disp32 would be 17 bytes; 14 readable. */
	memset(p, 0x3e, 10);
	memcpy(p + 10, "\x0f\x01\x1d\x10\x00\x00", 6);
	assert_int_equal(decode_exact(p, 12, &in), -ENODATA);
	assert_int_equal(decode_exact(p, 13, &in), -ENOEXEC);
	assert_int_equal(decode_exact(p, 14, &in), -ENOEXEC);
}

/*
 * The decoder's contract on any input: one of three answers, len within
 * avail, and monotonic in avail: once it decodes or refuses, more bytes
 * change nothing; below the length it is -ENODATA.
 */
static void check_any(const uint8_t *b, size_t n)
{
	struct kva_insn in, first = { 0 };
	int ret, first_ret = -ENODATA;
	size_t avail;

	for (avail = 0; avail <= n; avail++) {
		ret = decode_exact(b, avail, &in);
		if (ret != 0 && ret != -ENOEXEC && ret != -ENODATA)
			fail_msg("ret %d", ret);
		if (ret == 0) {
			assert_true(in.len >= 1 && in.len <= avail);
			assert_true(in.len <= KVA_INSN_MAX_LEN);
			assert_string_not_equal(kva_insn_name(in.op), "?");
		}
		if (first_ret == -ENODATA) {
			first_ret = ret;
			first = in;
			if (ret == 0)
				assert_int_equal(first.len, avail);
			continue;
		}
		assert_int_equal(ret, first_ret);
		if (ret == 0)
			assert_memory_equal(&in, &first, sizeof(in));
	}
}

static void test_all_short(void **state)
{
	uint8_t b[2];
	unsigned int x, y;

	(void)state;
	for (x = 0; x < 256; x++) {
		b[0] = x;
		check_any(b, 1);
		for (y = 0; y < 256; y++) {
			b[1] = y;
			check_any(b, 2);
		}
	}
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Random bytes, weighted toward prefixes and the opcodes we know. */
static void test_random(void **state)
{
	static const uint8_t hot[] = {
		0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x64, 0x40, 0x41,
		0x44, 0x48, 0x4f, 0x0f, 0x0f, 0x0f, 0x00, 0x01, 0x20,
		0x22, 0x21, 0x23, 0xe6, 0xef, 0x6d, 0xcd, 0xcf, 0x04,
		0x05, 0x14, 0x15, 0x1d, 0x24, 0x25, 0x45, 0x84, 0x94,
	};
	uint8_t b[KVA_INSN_MAX_LEN];
	unsigned long iter, ok = 0;
	struct kva_insn in;
	size_t i;

	(void)state;
	for (iter = 0; iter < 200000; iter++) {
		for (i = 0; i < sizeof(b); i++) {
			uint64_t r = next_rand();

			b[i] = r & 1 ? hot[(r >> 8) % sizeof(hot)] : r >> 16;
		}
		check_any(b, sizeof(b));
		ok += decode_exact(b, sizeof(b), &in) == 0;
	}
	/* The weighting must actually reach the decoder's accept paths. */
	assert_true(ok > 1000);
}

static void test_names(void **state)
{
	int op, other;

	(void)state;
	for (op = KVA_INSN_OUT; op <= KVA_INSN_IRET; op++) {
		assert_non_null(kva_insn_name(op));
		assert_string_not_equal(kva_insn_name(op), "?");
		for (other = KVA_INSN_OUT; other < op; other++)
			assert_string_not_equal(kva_insn_name(op),
						kva_insn_name(other));
	}
	assert_string_equal(kva_insn_name(KVA_INSN_MOV_TO_CR), "mov to cr");
	assert_string_equal(kva_insn_name(KVA_INSN_IRET + 1), "?");
	assert_string_equal(kva_insn_name((enum kva_insn_op)1000), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_length_cap),
		cmocka_unit_test(test_all_short),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests_name("kva-insn", tests, NULL, NULL);
}
