// SPDX-License-Identifier: MIT
/*
 * protocol/'s limits: declared counts and sizes refused before anything
 * is read or allocated (the process does not grow), runs, regions, blobs,
 * checksums and deltas over their limits, nesting, and the encoder
 * refusing what the decoder would. Bad inputs are made as in
 * test_protocol.c: a valid sample's object tree, damaged in one place.
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

/* ---- rejections: counts and declared sizes ---- */

/* A DIRTY_SET prefix whose "r" value follows; returns its length. */
static size_t dirty_prefix(uint8_t *b)
{
	static const uint8_t pre[] = { 0x85, 0xa1, 't',	 PROTO_DIRTY_SET,
				       0xa1, 'm',  1,	 0xa1,
				       'g',  2,	   0xa2, 'r',
				       'g',  0,	   0xa1, 'r' };

	memcpy(b, pre, sizeof(pre));
	return sizeof(pre);
}

static long max_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/*
 * 21 bytes declaring 4 Gi array elements (msgpack-c's unpacker would ask
 * for 96 GiB here): refused at once, and the process does not grow.
 */
static void test_reject_huge_declared(void **state)
{
	static const uint8_t topmap[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t str32[] = { 0x81, 0xdb, 0xff, 0xff, 0xff, 0xff };
	uint8_t b[32];
	size_t n = dirty_prefix(b);
	uint64_t t0 = fy_now_ns();
	long rss0 = max_rss_kb();

	(void)state;
	memcpy(b + n, "\xdd\xff\xff\xff\xff", 5);
	expect_bad(b, n + 5,
		   "DIRTY_SET.r: truncated: an array of 4294967295 elements");
	memcpy(b + n, "\xdc\xff\xff\x00\x00", 5);
	expect_bad(b, n + 5, "an array of 65535 elements in 2 remaining bytes");
	expect_bad(topmap, sizeof(topmap),
		   "message: truncated: a map of 4294967295 elements");
	expect_bad(str32, sizeof(str32),
		   "truncated: 4294967295 bytes declared");
	/* {"t": STATE, "m": 1, "d": bin32 of 4 GiB - 1} */
	memcpy(b,
	       "\x83\xa1t\x08\xa1m\x01\xa1"
	       "d\xc6\xff\xff\xff\xff",
	       14);
	expect_bad(b, 14,
		   "STATE.d: truncated: 4294967295 bytes declared, 0 left");
	assert_true(fy_now_ns() - t0 < 100 * 1000000ULL);
	assert_true(max_rss_kb() - rss0 < 16 * 1024);
}

/* More runs than PROTO_RUNS_MAX: refused from the count, before reading. */
static void test_reject_too_many_runs(void **state)
{
	uint32_t nums = 2 * (PROTO_RUNS_MAX + 1);
	size_t len = 32 + nums;
	uint8_t *b = calloc(1, len);
	size_t n = dirty_prefix(b);
	struct tree t;

	(void)state;
	b[n++] = 0xdd;
	b[n++] = nums >> 24;
	b[n++] = nums >> 16;
	b[n++] = nums >> 8;
	b[n++] = nums;
	expect_bad(b, n + nums,
		   "DIRTY_SET.r: 1048577 elements, at most 1048576");
	free(b);

	/* the limit is per message: regions of a HOLDER_MAP add up */
	tree_of(&t, PROTO_HOLDER_MAP, 0);
	{
		size_t per = PROTO_RUNS_MAX / 2 + 1, k;
		msgpack_object *g[2], *vals = calloc(per * 3, sizeof(*vals));

		assert_non_null(vals);
		for (k = 0; k < per * 3; k++)
			set_uint(&vals[k], k % 3 == 1 ? 1 : k / 3);
		for (k = 0; k < 2; k++) {
			g[k] = get(&get(t.root, "r")->via.array.ptr[k], "g");
			g[k]->type = MSGPACK_OBJECT_ARRAY;
			g[k]->via.array.ptr = vals;
			g[k]->via.array.size = per * 3;
		}
		set_uint(get(&get(t.root, "r")->via.array.ptr[0], "l"),
			 4096ULL * per);
		set_uint(get(&get(t.root, "r")->via.array.ptr[1], "l"),
			 4096ULL * per);
		tree_bad(&t, "HOLDER_MAP.r[1].g: more than 1048576 runs");
		free(vals);
	}
	tree_done(&t);
}

static void test_reject_regions_over_limit(void **state)
{
	msgpack_object regs[PROTO_REGIONS_MAX + 1];
	msgpack_object *r;
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_MIGRATE_PREPARE, 0);
	r = get(t.root, "r");
	for (int i = 0; i <= PROTO_REGIONS_MAX; i++)
		regs[i] = r->via.array.ptr[0];
	r->via.array.ptr = regs;
	r->via.array.size = PROTO_REGIONS_MAX + 1;
	tree_bad(&t, "MIGRATE_PREPARE.r: 65 elements, at most 64");
	tree_done(&t);
}

static void test_reject_state_blob(void **state)
{
	size_t len = PROTO_STATE_MAX + 64;
	uint8_t *b = calloc(1, len);
	uint32_t blob = PROTO_STATE_MAX + 1;
	struct tree t;

	(void)state;
	/* {"t": STATE, "m": 1, "d": bin32(16 MiB + 1)} */
	memcpy(b,
	       "\x83\xa1t\x08\xa1m\x01\xa1"
	       "d\xc6",
	       10);
	b[10] = blob >> 24;
	b[11] = blob >> 16;
	b[12] = blob >> 8;
	b[13] = blob;
	expect_bad(b, 14 + blob, "STATE.d: 16777217 bytes, at most 16777216");
	free(b);
	tree_of(&t, PROTO_STATE, 0);
	set_str(get(t.root, "d"), "abc", 3);
	tree_bad(&t, "STATE.d: expected binary, got a string");
	tree_done(&t);
}

static void test_reject_verify(void **state)
{
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_VERIFY, 0);
	set_bin(get(t.root, "c"), "0123456789", 10);
	tree_bad(&t, "VERIFY.c: 10 bytes, not 8 per page");
	tree_done(&t);
	tree_of(&t, PROTO_VERIFY, 0);
	set_bin(get(t.root, "c"), "", 0);
	tree_bad(&t, "VERIFY.c: 0 bytes, not in 8..8388608");
	tree_done(&t);
	tree_of(&t, PROTO_VERIFY, 0);
	set_uint(get(t.root, "s"), PROTO_PAGES_MAX - 10);
	tree_bad(&t, "VERIFY.s: pages end past page 68719476736");
	tree_done(&t);
}

static void test_reject_delta(void **state)
{
	struct tree t;

	(void)state;
	tree_of(&t, PROTO_DELTA_SET, 0);
	set_uint(get(t.root, "l"), 16 * 300 - 1);
	tree_bad(&t, "DELTA_SET.l: 4799 bytes cannot hold 300 pages");
	tree_done(&t);
	tree_of(&t, PROTO_DELTA_SET, 0);
	set_uint(get(t.root, "b"), UINT64_MAX - 100);
	tree_bad(&t, "DELTA_SET.b: buffer wraps around");
	tree_done(&t);
	tree_of(&t, PROTO_DELTA_SET, 0);
	set_uint(get(t.root, "n"), 0);
	tree_bad(&t, "DELTA_SET.n: 0 not in 1..68719476736");
	tree_done(&t);
}

/* An unknown field can't hide a bomb: its skip is bounded too. */
static void test_reject_deep_nesting(void **state)
{
	uint8_t b[64];
	size_t n = 0;

	(void)state;
	/* {"x": [[[[...1...]]]], "t": PING}: "x" is stepped over to find "t" */
	b[n++] = 0x82;
	b[n++] = 0xa1;
	b[n++] = 'x';
	for (int i = 0; i < 20; i++)
		b[n++] = 0x91;
	b[n++] = 0x01;
	memcpy(b + n, "\xa1t\x02", 3);
	n += 3;
	expect_bad(b, n, "nested deeper than 8");
}

/* ---- the encoder refuses what the decoder would ---- */

static void test_encode_refuses(void **state)
{
	struct proto_msg *m;
	void *buf = NULL;
	size_t len;

	(void)state;
	m = proto_sample(PROTO_HELLO, 0);
	memset(m->hello.node, 'x', sizeof(m->hello.node)); /* no NUL */
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->hello.node[0] = '\0';
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	strcpy(m->hello.node, "ok");
	m->hello.version = 2;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->hello.version = PROTO_VERSION;
	m->hello.addr_len = PROTO_ADDR_MAX + 1;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->hello.addr_len = 4;
	assert_int_equal(proto_encode(m, &buf, &len), 0);
	free(buf);
	m->type = 99;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->type = PROTO_HELLO;
	proto_msg_free(m);

	m = proto_sample(PROTO_DIRTY_SET, 0);
	m->dirty.runs[2].start = 1; /* before run 1 */
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->dirty.runs[2].start = 6;
	m->dirty.runs[2].len = 0;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->dirty.runs[2].len = 1;
	m->dirty.nruns = PROTO_RUNS_MAX + 1;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->dirty.nruns = 5;
	free(m->dirty.runs);
	m->dirty.runs = NULL;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->dirty.nruns = 0;
	assert_int_equal(proto_encode(m, &buf, &len), 0);
	free(buf);
	proto_msg_free(m);

	m = proto_sample(PROTO_MIGRATE_PREPARE, 0);
	m->prepare.page_size = 8192 + 4096;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->prepare.page_size = 8192;
	strcpy(m->prepare.mode, "warp");
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	proto_msg_free(m);

	m = proto_sample(PROTO_HOLDER_MAP, 0);
	m->holder_map.regions[0].gens[2].start = 1999; /* 1999+3 > 2000 */
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	proto_msg_free(m);
	/* registered runs: inside the region, sorted, disjoint */
	m = proto_sample(PROTO_HOLDER_MAP, 2);
	assert_int_equal(proto_encode(m, &buf, &len), 0);
	free(buf);
	m->holder_map.regions[0].keys[3].pages = 501; /* 1500+501 > 2000 */
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->holder_map.regions[0].keys[3].pages = 400;
	m->holder_map.regions[0].keys[1].start = 300; /* overlaps run 0 */
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	proto_msg_free(m);

	m = proto_sample(PROTO_ERROR, 0);
	m->error.code = -5;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	proto_msg_free(m);

	m = proto_sample(PROTO_STATE, 0);
	m->state.len = PROTO_STATE_MAX + 1;
	assert_int_equal(proto_encode(m, &buf, &len), -EINVAL);
	m->state.len = 300;
	proto_msg_free(m);
}

/* A NULL err and a zero errlen are both fine. */
static void test_err_optional(void **state)
{
	static const uint8_t bad[] = { 0x90 };
	struct proto_msg *m = (void *)1;
	char one[1] = { 'X' };

	(void)state;
	assert_int_equal(proto_decode(bad, 1, &m, NULL, 0), -EBADMSG);
	assert_null(m);
	assert_int_equal(proto_decode(bad, 1, &m, one, 1), -EBADMSG);
	assert_int_equal(one[0], '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reject_huge_declared),
		cmocka_unit_test(test_reject_too_many_runs),
		cmocka_unit_test(test_reject_regions_over_limit),
		cmocka_unit_test(test_reject_state_blob),
		cmocka_unit_test(test_reject_verify),
		cmocka_unit_test(test_reject_delta),
		cmocka_unit_test(test_reject_deep_nesting),
		cmocka_unit_test(test_encode_refuses),
		cmocka_unit_test(test_err_optional),
	};

	return cmocka_run_group_tests_name("protocol-limits", tests, NULL,
					   NULL);
}
