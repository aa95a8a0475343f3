// SPDX-License-Identifier: MIT
/*
 * protocol/: round trips of every message type, and one test per class of
 * input the decoder must refuse. Bad inputs are made by encoding a valid
 * sample, unpacking it with msgpack-c (our own output, so that is safe),
 * changing the object tree and packing it again: the decoder then sees
 * exactly one thing wrong. Limits are in test_proto_limits.c; the helpers
 * in proto_tree.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <cmocka.h>

#include <msgpack.h>

#include "common/util.h"
#include "protocol/protocol.h"
#include "proto_samples.h"
#include "proto_tree.h"

#define ALL_TYPES_FIRST PROTO_HELLO
#define ALL_TYPES_LAST PROTO_TYPE_LAST

/* ---- round trips ---- */

static void round_trip(enum proto_type type, unsigned v)
{
	struct proto_msg *m = proto_sample(type, v), *back;
	char err[256], why[128];
	size_t len, len2;
	void *buf, *buf2;

	assert_non_null(m);
	encode(m, &buf, &len);
	if (proto_decode(buf, len, &back, err, sizeof(err)))
		fail_msg("%s variant %u: %s", proto_type_name(type), v, err);
	if (!proto_msg_eq(m, back, why, sizeof(why)))
		fail_msg("%s variant %u: %s differs", proto_type_name(type), v,
			 why);
	/* encoding is deterministic: the decoded copy packs the same bytes */
	encode(back, &buf2, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	free(buf);
	free(buf2);
	proto_msg_free(back);
	proto_msg_free(m);
}

static void test_round_trip_all(void **state)
{
	(void)state;
	for (int t = ALL_TYPES_FIRST; t <= ALL_TYPES_LAST; t++)
		for (unsigned v = 0; v < PROTO_SAMPLE_VARIANTS; v++)
			round_trip(t, v);
}

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal(proto_type_name(PROTO_HELLO), "HELLO");
	assert_string_equal(proto_type_name(PROTO_DIRTY_SET), "DIRTY_SET");
	assert_string_equal(proto_type_name(PROTO_ERROR), "ERROR");
	assert_string_equal(proto_type_name(PROTO_VERIFY), "VERIFY");
	assert_string_equal(proto_type_name(PROTO_RESUMED), "RESUMED");
	assert_string_equal(proto_type_name(PROTO_DELTA_SET), "DELTA_SET");
	assert_string_equal(proto_type_name(PROTO_POSTCOPY), "POSTCOPY");
	assert_string_equal(proto_type_name(PROTO_PC_STATS), "PC_STATS");
	assert_string_equal(proto_type_name(PROTO_READY), "READY");
	assert_string_equal(proto_type_name(PROTO_RESUME), "RESUME");
	assert_string_equal(proto_type_name(PROTO_KEPT), "KEPT");
	assert_string_equal(proto_type_name(0), "?");
	assert_string_equal(proto_type_name(99), "?");
	proto_msg_free(NULL);
}

/* msgpack-c reads our output as the map docs/protocol.md describes. */
static void test_wire_form(void **state)
{
	struct tree t;
	msgpack_object *r;

	(void)state;
	tree_of(&t, PROTO_DIRTY_SET, 0);
	assert_int_equal(get(t.root, "t")->via.u64, PROTO_DIRTY_SET);
	r = get(t.root, "r");
	assert_int_equal(r->type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(r->via.array.size, 10); /* 5 runs, flat */
	assert_int_equal(r->via.array.ptr[2].via.u64, 3); /* run 1 start */
	assert_int_equal(r->via.array.ptr[3].via.u64, 2); /* run 1 len */
	tree_done(&t);
	tree_of(&t, PROTO_HELLO, 0);
	assert_int_equal(get(t.root, "v")->via.u64, PROTO_VERSION);
	assert_int_equal(get(t.root, "a")->type, MSGPACK_OBJECT_BIN);
	tree_done(&t);
}

/* Any key order and any integer format for a non-negative value. */
static void test_accepts_other_encoders(void **state)
{
	/* {"ts": int64 7, "s": int8 5, "t": uint16 PING} */
	static const uint8_t b[] = { 0x83, 0xa2, 't', 's',	 0xd3, 0,
				     0,	   0,	 0,   0,	 0,    0,
				     7,	   0xa1, 's', 0xd0,	 5,    0xa1,
				     't',  0xcd, 0,   PROTO_PING };
	struct proto_msg *m;
	char err[128];

	(void)state;
	assert_int_equal(proto_decode(b, sizeof(b), &m, err, sizeof(err)), 0);
	assert_int_equal(m->type, PROTO_PING);
	assert_int_equal(m->ping.seq, 5);
	assert_int_equal(m->ping.sent_ns, 7);
	proto_msg_free(m);
	/* but a negative value in any signed format is refused */
	{
		uint8_t neg[sizeof(b)];

		memcpy(neg, b, sizeof(b));
		neg[16] = 0xff; /* "s": int8 -1 */
		expect_bad(neg, sizeof(neg), "PING.s: negative integer -1");
		memcpy(neg, b, sizeof(b));
		neg[5] = 0x80; /* "ts": int64 with the sign bit set */
		expect_bad(neg, sizeof(neg), "PING.ts: negative integer");
	}
}

/* ---- rejections: the envelope ---- */

static void test_reject_truncated(void **state)
{
	(void)state;
	for (int t = ALL_TYPES_FIRST; t <= ALL_TYPES_LAST; t++) {
		struct proto_msg *m = proto_sample(t, 0);
		size_t len, cut;
		void *buf;

		encode(m, &buf, &len);
		for (cut = 0; cut < len; cut++) {
			/* a copy of exactly cut bytes, so ASan sees overreads */
			void *part = malloc(cut ? cut : 1);

			memcpy(part, buf, cut);
			expect_bad(part, cut, "truncated");
			free(part);
		}
		free(buf);
		proto_msg_free(m);
	}
}

static void test_reject_trailing(void **state)
{
	struct proto_msg *m = proto_sample(PROTO_PING, 0);
	uint8_t *more;
	size_t len;
	void *buf;

	(void)state;
	encode(m, &buf, &len);
	more = malloc(len + 1);
	memcpy(more, buf, len);
	more[len] = 0xc0;
	expect_bad(more, len + 1, "1 bytes after the message");
	free(more);
	free(buf);
	proto_msg_free(m);
}

static void test_reject_not_a_map(void **state)
{
	static const uint8_t arr[] = { 0x92, 0x01, 0x02 };
	static const uint8_t str[] = { 0xa1, 't' };
	static const uint8_t num[] = { 0x05 };
	static const uint8_t never[] = { 0xc1 };

	(void)state;
	expect_bad(arr, sizeof(arr), "expected a map, got an array");
	expect_bad(str, sizeof(str), "expected a map, got a string");
	expect_bad(num, sizeof(num), "expected a map, got an integer");
	expect_bad(never, sizeof(never), "0xc1");
	expect_bad(NULL, 0, "truncated");
}

static void test_reject_type_field(void **state)
{
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_PING, 0);
	set_uint(get(t.root, "t"), 99);
	tree_bad(&t, "unknown message type 99");
	set_uint(get(t.root, "t"), 0);
	tree_bad(&t, "unknown message type 0");
	set_str(get(t.root, "t"), "PING", 4);
	tree_bad(&t, "message.t: expected an unsigned integer, got a string");
	drop(t.root, "t");
	tree_bad(&t, "missing field \"t\"");
	tree_done(&t);
}

static void test_reject_oversized(void **state)
{
	size_t len = PROTO_MSG_MAX + 1;
	uint8_t *big = calloc(1, len);

	(void)state;
	assert_non_null(big);
	big[0] = 0x80;
	expect_bad(big, len, "at most");
	free(big);
}

static void test_reject_keys(void **state)
{
	static const uint8_t intkey[] = { 0x81, 0x01, 0x01 };
	struct tree t;

	(void)state;
	expect_bad(intkey, sizeof(intkey), "expected a string, got an integer");
	tree_of(&t, PROTO_PING, 0);
	set_uint(add(&t, t.root, "zz\n"), 1);
	tree_bad(&t, "PING: unknown field \"zz?\"");
	tree_done(&t);
	tree_of(&t, PROTO_PING, 0);
	set_uint(add(&t, t.root, "s"), 1);
	tree_bad(&t, "PING: field \"s\" twice");
	tree_done(&t);
	tree_of(&t, PROTO_PING, 0);
	set_uint(add(&t, t.root, "t"), PROTO_PING);
	tree_bad(&t, "field \"t\" twice");
	tree_done(&t);
}

static void test_reject_missing(void **state)
{
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_ERROR, 0);
	drop(t.root, "tx");
	tree_bad(&t, "ERROR: missing field \"tx\"");
	tree_done(&t);
	tree_of(&t, PROTO_MIGRATE_PREPARE, 0);
	drop(&get(t.root, "r")->via.array.ptr[1], "n");
	tree_bad(&t, "MIGRATE_PREPARE.r[1]: missing field \"n\"");
	tree_done(&t);
}

/* ---- rejections: HELLO and its version ---- */

static void test_hello_version(void **state)
{
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_HELLO, 0);
	set_str(get(t.root, "v"), "1", 1);
	tree_bad(&t, "HELLO.v: expected an unsigned integer, got a string");
	get(t.root, "v")->type = MSGPACK_OBJECT_NIL;
	tree_bad(&t, "HELLO.v: expected an unsigned integer, got nil");
	get(t.root, "v")->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
	get(t.root, "v")->via.i64 = -1;
	tree_bad(&t, "HELLO.v: negative integer -1");
	/* another version: refused before its other fields are looked at */
	set_uint(get(t.root, "v"), PROTO_VERSION + 1);
	get(t.root, "pk")->type = MSGPACK_OBJECT_NIL;
	set_uint(add(&t, t.root, "new-in-v2"), 1);
	pack(&t);
	expect_rc(t.sb.data, t.sb.size, -EPROTONOSUPPORT,
		  "HELLO.v: protocol version 2, we speak 1");
	drop(t.root, "v");
	tree_bad(&t, "HELLO: missing field \"v\"");
	tree_done(&t);
}

/* VM names and node ids end up in file names: ids only (issue 14). */
static void test_ids(void **state)
{
	static const char *const bad[] = {
		"../../../../tmp/x", "../vms/g1", "a/b", ".", "..",
		".hidden",	     "-x",	  "a:b", "a*"
	};
	struct proto_msg *m;
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_MIGRATE_PREPARE, 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_false(proto_name_valid(bad[i]));
		set_str(get(t.root, "vm"), bad[i], strlen(bad[i]));
		pack(&t);
		expect_bad(t.sb.data, t.sb.size, "MIGRATE_PREPARE.vm: ");
	}
	set_str(get(t.root, "vm"), "..", 2);
	tree_bad(&t, "MIGRATE_PREPARE.vm: does not begin with a letter");
	set_str(get(t.root, "vm"), "guest-1.a_b", 11);
	pack(&t);
	assert_int_equal(proto_decode(t.sb.data, t.sb.size, &m, NULL, 0), 0);
	assert_string_equal(m->prepare.vm, "guest-1.a_b");
	proto_msg_free(m);
	tree_done(&t);
	assert_true(proto_name_valid("9"));
	assert_false(proto_name_valid(""));
	tree_of(&t, PROTO_HOLDER_MAP, 0);
	set_str(get(t.root, "id"), "../x", 4);
	tree_bad(&t, "HOLDER_MAP.id: byte 0x2f at offset 2 not allowed");
	tree_done(&t);
}

static void test_hello_fields(void **state)
{
	char longname[PROTO_NAME_MAX + 1];
	struct tree t;

	(void)state;
	memset(longname, 'n', sizeof(longname));
	tree_of(&t, PROTO_HELLO, 0);
	set_str(get(t.root, "id"), longname, sizeof(longname));
	tree_bad(&t, "HELLO.id: string of 64 bytes, at most 63");
	set_str(get(t.root, "id"), "a\0b", 3);
	tree_bad(&t, "HELLO.id: string holds a NUL byte");
	set_str(get(t.root, "id"), "a b", 3);
	tree_bad(&t, "HELLO.id: byte 0x20 at offset 1 not allowed");
	set_str(get(t.root, "id"), "", 0);
	tree_bad(&t, "HELLO.id: 0 bytes, at least 1 needed");
	set_uint(get(t.root, "id"), 5);
	tree_bad(&t, "HELLO.id: expected a string, got an integer");
	set_str(get(t.root, "id"), "ok", 2);
	set_str(get(t.root, "pk"), "short", 5);
	tree_bad(&t, "HELLO.pk: 5 bytes, at least 40 needed");
	set_str(get(t.root, "pk"), "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hI,",
		40);
	tree_bad(&t, "HELLO.pk: byte 0x2c at offset 39 not allowed");
	set_str(get(t.root, "pk"), "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
		40);
	set_str(get(t.root, "a"), "abc", 3);
	tree_bad(&t, "HELLO.a: expected binary, got a string");
	set_bin(get(t.root, "a"), "", 0);
	tree_bad(&t, "HELLO.pv: fabric provider and address");
	tree_done(&t);
}

/* ---- rejections: field values ---- */

static void test_reject_ints(void **state)
{
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_ERROR, 0);
	set_uint(get(t.root, "c"), 0);
	tree_bad(&t, "ERROR.c: 0 not in 1..4095");
	set_uint(get(t.root, "c"), 1ULL << 31);
	tree_bad(&t, "ERROR.c: 2147483648 does not fit in 31 bits");
	get(t.root, "c")->type = MSGPACK_OBJECT_FLOAT64;
	get(t.root, "c")->via.f64 = 1.0;
	tree_bad(&t, "ERROR.c: expected an unsigned integer, got a float");
	get(t.root, "c")->type = MSGPACK_OBJECT_BOOLEAN;
	tree_bad(&t, "got a boolean");
	tree_done(&t);

	tree_of(&t, PROTO_PROGRESS, 0);
	set_uint(get(t.root, "rd"), 1ULL << 32);
	tree_bad(&t, "PROGRESS.rd: 4294967296 does not fit in 32 bits");
	set_uint(get(t.root, "rd"), 1);
	set_uint(get(t.root, "pg"), 262145);
	tree_bad(&t, "PROGRESS.pg: 262145 valid pages of 262144");
	set_uint(get(t.root, "pg"), 1);
	set_str(get(&get(t.root, "h")->via.array.ptr[1], "id"), "host-0", 6);
	tree_bad(&t, "PROGRESS.h: holder host-0 twice");
	tree_done(&t);

	tree_of(&t, PROTO_COMMIT, 0);
	set_uint(get(t.root, "m"), 0);
	tree_bad(&t, "COMMIT.m: 0 not in 1..");
	tree_done(&t);
}

static void test_reject_texts(void **state)
{
	static char text[PROTO_TEXT_MAX + 1];
	struct tree t;

	(void)state;
	memset(text, 'x', sizeof(text));
	tree_of(&t, PROTO_ABORT, 0);
	set_str(get(t.root, "tx"), text, sizeof(text));
	tree_bad(&t, "ABORT.tx: string of 1024 bytes, at most 1023");
	set_str(get(t.root, "tx"), "line\nforged", 11);
	tree_bad(&t, "ABORT.tx: byte 0x0a at offset 4 not allowed");
	set_str(get(t.root, "tx"), "nul\0", 4);
	tree_bad(&t, "ABORT.tx: string holds a NUL byte");
	set_bin(get(t.root, "tx"), "x", 1);
	tree_bad(&t, "ABORT.tx: expected a string, got binary");
	tree_done(&t);
}

static void test_reject_prepare(void **state)
{
	msgpack_object *r;
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_MIGRATE_PREPARE, 0);
	set_uint(get(t.root, "ps"), 12288);
	tree_bad(&t, "MIGRATE_PREPARE.ps: page size 12288 is not a power");
	set_uint(get(t.root, "ps"), 2048);
	tree_bad(&t, "MIGRATE_PREPARE.ps: 2048 not in 4096..1073741824");
	set_uint(get(t.root, "ps"), 2ULL << 30);
	tree_bad(&t, "MIGRATE_PREPARE.ps: 2147483648 not in");
	set_uint(get(t.root, "ps"), 1u << 30);
	tree_bad(&t, "MIGRATE_PREPARE.r[1].n: 262145 pages of 1073741824");
	set_uint(get(t.root, "ps"), 4096);
	set_str(get(t.root, "mo"), "teleport", 8);
	tree_bad(&t, "MIGRATE_PREPARE.mo: mode \"teleport\"");
	set_str(get(t.root, "mo"), "hybrid", 6);
	set_str(get(t.root, "ac"), "tcg", 3);
	tree_bad(&t, "MIGRATE_PREPARE.ac: accelerator \"tcg\" is not kvm");
	set_str(get(t.root, "ac"), "kvm", 3);
	set_uint(get(t.root, "c"), PROTO_VCPUS_MAX + 1);
	tree_bad(&t, "MIGRATE_PREPARE.c: 1025 not in 1..1024");
	set_uint(get(t.root, "c"), 4);
	r = get(t.root, "r");
	set_uint(get(&r->via.array.ptr[1], "i"),
		 get(&r->via.array.ptr[0], "i")->via.u64);
	tree_bad(&t, "MIGRATE_PREPARE.r[1].i: region id 2 twice");
	set_uint(get(&r->via.array.ptr[1], "i"), 77);
	set_uint(get(&r->via.array.ptr[0], "n"), PROTO_PAGES_MAX + 1);
	tree_bad(&t, "MIGRATE_PREPARE.r[0].n: 68719476737 not in 1..");
	set_uint(get(&r->via.array.ptr[0], "n"), 0);
	tree_bad(&t, "MIGRATE_PREPARE.r[0].n: 0 not in 1..");
	r->via.array.size = 0;
	tree_bad(&t, "MIGRATE_PREPARE.r: 0 elements, not in 1..64");
	set_uint(r, 3);
	tree_bad(&t, "MIGRATE_PREPARE.r: expected an array, got an integer");
	tree_done(&t);
	tree_of(&t, PROTO_MIGRATE_PREPARE, 0);
	r = get(t.root, "r");
	set_uint(&r->via.array.ptr[0], 1);
	tree_bad(&t, "MIGRATE_PREPARE.r[0]: expected a map, got an integer");
	tree_done(&t);
}

/* A flat run array of n numbers; the tree points into vals. */
static void set_runs(msgpack_object *o, msgpack_object *vals,
		     const uint64_t *nums, size_t n)
{
	for (size_t i = 0; i < n; i++)
		set_uint(&vals[i], nums[i]);
	o->type = MSGPACK_OBJECT_ARRAY;
	o->via.array.ptr = vals;
	o->via.array.size = n;
}

static void test_reject_dirty_runs(void **state)
{
	static const struct {
		uint64_t nums[6];
		size_t n;
		const char *want;
	} cases[] = {
		{ { 0, 1, 5, 0 }, 4, "DIRTY_SET.r[1]: empty run at 5" },
		{ { 10, 2, 5, 1 }, 4, "DIRTY_SET.r[1]: run at 5 comes after" },
		{ { 10, 2, 11, 1 }, 4, "DIRTY_SET.r[1]: run at 11 overlaps" },
		{ { 0, 1, 5, 2, 6, 1 }, 6, "DIRTY_SET.r[2]: run at 6 overlaps" },
		{ { 0, 1, 5 }, 3, "DIRTY_SET.r: 3 numbers, not a multiple" },
		{ { PROTO_PAGES_MAX, 1 },
		  2,
		  "DIRTY_SET.r[0]: run 68719476736+1" },
		{ { 1, PROTO_PAGES_MAX }, 2, "ends past page 68719476736" },
		{ { 2, UINT64_MAX }, 2, "ends past page" },
	};
	msgpack_object vals[6];
	struct tree t;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		tree_of(&t, PROTO_DIRTY_SET, 0);
		set_runs(get(t.root, "r"), vals, cases[i].nums, cases[i].n);
		tree_bad(&t, cases[i].want);
		tree_done(&t);
	}
	/* adjacent runs are fine, as is a run ending on the last page */
	tree_of(&t, PROTO_DIRTY_SET, 0);
	{
		const uint64_t ok[] = { 0, 2, 2, 1, PROTO_PAGES_MAX - 1, 1 };
		struct proto_msg *m;
		char err[128];

		set_runs(get(t.root, "r"), vals, ok, 6);
		pack(&t);
		assert_int_equal(proto_decode(t.sb.data, t.sb.size, &m, err,
					      sizeof(err)),
				 0);
		assert_int_equal(m->dirty.nruns, 3);
		assert_int_equal(m->dirty.runs[2].start, PROTO_PAGES_MAX - 1);
		proto_msg_free(m);
	}
	set_str(&get(t.root, "r")->via.array.ptr[3], "x", 1);
	tree_bad(&t, "DIRTY_SET.r[1]: expected an unsigned integer, got a str");
	tree_done(&t);
}

static void test_reject_holder_map(void **state)
{
	msgpack_object vals[6], *r0;
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_HOLDER_MAP, 0);
	r0 = &get(t.root, "r")->via.array.ptr[0];
	/* region 0 is 2000 pages: a run reaching page 2000 is outside */
	set_runs(get(r0, "g"), vals, (const uint64_t[]){ 0, 1, 7, 1998, 9, 3 },
		 6);
	tree_bad(&t, "HOLDER_MAP.r[0].g[1]: run 1998+9 ends past page 2000");
	set_runs(get(r0, "g"), vals, (const uint64_t[]){ 5, 1, 7, 4, 1, 3 }, 6);
	tree_bad(&t, "HOLDER_MAP.r[0].g[1]: run at 4 comes after one at 5");
	set_runs(get(r0, "g"), vals, (const uint64_t[]){ 5, 0, 7 }, 3);
	tree_bad(&t, "HOLDER_MAP.r[0].g[0]: empty run");
	set_runs(get(r0, "g"), vals, (const uint64_t[]){ 5, 2, 7, 6, 1, 3 }, 6);
	tree_bad(&t, "HOLDER_MAP.r[0].g[1]: run at 6 overlaps");
	set_runs(get(r0, "g"), vals, (const uint64_t[]){ 5, 2 }, 2);
	tree_bad(&t, "HOLDER_MAP.r[0].g: 2 numbers, not a multiple of 3");
	set_runs(get(r0, "g"), vals, (const uint64_t[]){ 5, 2, 1 }, 3);
	set_uint(get(r0, "l"), 4097);
	tree_bad(&t, "HOLDER_MAP.r[0].l: 4097 bytes, not a multiple");
	set_uint(get(r0, "l"), 0);
	tree_bad(&t, "HOLDER_MAP.r[0].l: 0 not in 1..");
	set_uint(get(r0, "l"), 1ULL << 40);
	set_uint(get(r0, "b"), UINT64_MAX - 4095);
	tree_bad(&t, "HOLDER_MAP.r[0].b: region wraps around");
	set_uint(get(r0, "b"), 0);
	set_uint(get(r0, "i"), 5); /* region 1's id */
	tree_bad(&t, "HOLDER_MAP.r[1].i: region id 5 twice");
	set_uint(get(r0, "i"), 0);
	set_bin(get(t.root, "a"), "", 0);
	tree_bad(&t, "HOLDER_MAP.a: 0 bytes, not in 1..256");
	set_str(get(t.root, "a"), "x", 1);
	tree_bad(&t, "HOLDER_MAP.a: expected binary, got a string");
	tree_done(&t);
}
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_all),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_wire_form),
		cmocka_unit_test(test_accepts_other_encoders),
		cmocka_unit_test(test_reject_truncated),
		cmocka_unit_test(test_reject_trailing),
		cmocka_unit_test(test_reject_not_a_map),
		cmocka_unit_test(test_reject_type_field),
		cmocka_unit_test(test_reject_oversized),
		cmocka_unit_test(test_reject_keys),
		cmocka_unit_test(test_reject_missing),
		cmocka_unit_test(test_hello_version),
		cmocka_unit_test(test_hello_fields),
		cmocka_unit_test(test_reject_ints),
		cmocka_unit_test(test_reject_texts),
		cmocka_unit_test(test_reject_prepare),
		cmocka_unit_test(test_reject_dirty_runs),
		cmocka_unit_test(test_reject_holder_map),
		cmocka_unit_test(test_ids),
	};

	return cmocka_run_group_tests_name("protocol", tests, NULL, NULL);
}
