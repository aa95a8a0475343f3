// SPDX-License-Identifier: MIT
/*
 * nd_delta: records of re-sent pages (--compress delta) round-trip, a page
 * dirtied again without a change costs a header, and a page that changed
 * too much travels raw.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"
#include "codec/codec.h"

static uint8_t old[FY_PAGE_SIZE], new[FY_PAGE_SIZE], out[16 + FY_PAGE_SIZE],
	copy[FY_PAGE_SIZE];

/* Record new against old, apply it to a copy of old: it must equal new. */
static size_t round_trip(bool want_raw)
{
	uint64_t applied = 0;
	size_t len;
	bool raw;

	len = codec_delta_record(out, 7, old, new, &raw);
	assert_int_equal(raw, want_raw);
	assert_int_equal(len % 8, 0);
	memcpy(copy, old, FY_PAGE_SIZE);
	/* a buffer of one record, for page 7 of an 8-page region */
	uint8_t map[8 * FY_PAGE_SIZE];

	memcpy(map + 7 * FY_PAGE_SIZE, copy, FY_PAGE_SIZE);
	assert_int_equal(codec_delta_apply_buf(map, 8, out, len, &applied), 0);
	assert_int_equal(applied, 1);
	assert_memory_equal(map + 7 * FY_PAGE_SIZE, new, FY_PAGE_SIZE);
	return len;
}

static void test_small_change(void **state)
{
	(void)state;
	memset(old, 0x11, FY_PAGE_SIZE);
	memcpy(new, old, FY_PAGE_SIZE);
	new[100] = 0x22;
	assert_true(round_trip(false) <= 32);
}

static void test_unchanged(void **state)
{
	(void)state;
	memset(old, 0x33, FY_PAGE_SIZE);
	memcpy(new, old, FY_PAGE_SIZE);
	assert_int_equal(round_trip(false), 16);
}

static void test_all_new(void **state)
{
	(void)state;
	for (size_t i = 0; i < FY_PAGE_SIZE; i++) {
		old[i] = (uint8_t)i;
		new[i] = (uint8_t)(i * 7 + 1);
	}
	assert_int_equal(round_trip(true), 16 + FY_PAGE_SIZE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_change),
		cmocka_unit_test(test_unchanged),
		cmocka_unit_test(test_all_new),
	};

	return cmocka_run_group_tests_name("delta", tests, NULL, NULL);
}
