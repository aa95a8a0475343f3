// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"

static void test_bitmap_count_and_next(void **state)
{
	uint64_t *bm = fy_bitmap_alloc(200);

	(void)state;
	assert_non_null(bm);
	fy_bit_set(bm, 0);
	fy_bit_set(bm, 63);
	fy_bit_set(bm, 64);
	fy_bit_set(bm, 199);
	assert_int_equal(fy_bitmap_count(bm, 200), 4);
	assert_int_equal(fy_bitmap_count(bm, 64), 2);
	assert_int_equal(fy_bitmap_next_set(bm, 200, 1), 63);
	assert_int_equal(fy_bitmap_next_set(bm, 200, 65), 199);
	assert_int_equal(fy_bitmap_next_set(bm, 199, 65), 199);
	assert_int_equal(fy_bitmap_next_clear(bm, 200, 63), 65);
	fy_bit_clear(bm, 199);
	assert_false(fy_bit_test(bm, 199));
	assert_int_equal(fy_bitmap_next_set(bm, 200, 65), 200);
	free(bm);
}

static void test_runs_round_trip(void **state)
{
	const uint64_t nbits = 1000;
	uint64_t *bm = fy_bitmap_alloc(nbits), *back = fy_bitmap_alloc(nbits);
	struct fy_run *runs;
	size_t nr;

	(void)state;
	for (uint64_t i = 0; i < nbits; i++)
		if ((i * 7919) % 13 < 5 || (i >= 500 && i < 700))
			fy_bit_set(bm, i);
	assert_int_equal(fy_runs_from_bitmap(bm, nbits, &runs, &nr), 0);
	assert_true(nr > 1);
	for (size_t i = 1; i < nr; i++)
		assert_true(runs[i].start >
			    runs[i - 1].start + runs[i - 1].len);
	assert_int_equal(fy_runs_pages(runs, nr), fy_bitmap_count(bm, nbits));
	assert_int_equal(fy_runs_to_bitmap(runs, nr, back, nbits), 0);
	assert_memory_equal(bm, back, FY_BITMAP_WORDS(nbits) * 8);
	free(runs);
	free(bm);
	free(back);
}

static void test_runs_to_bitmap_range(void **state)
{
	struct fy_run bad[] = { { 10, 5 }, { 95, 6 } };
	struct fy_run empty[] = { { 3, 0 } };
	uint64_t *bm = fy_bitmap_alloc(100);

	(void)state;
	assert_int_equal(fy_runs_to_bitmap(bad, 2, bm, 100), -ERANGE);
	/* a rejected set touches nothing */
	assert_int_equal(fy_bitmap_count(bm, 100), 0);
	assert_int_equal(fy_runs_to_bitmap(empty, 1, bm, 100), -ERANGE);
	bad[1].start = UINT64_MAX;
	assert_int_equal(fy_runs_to_bitmap(bad, 2, bm, 100), -ERANGE);
	free(bm);
}

static void test_parse_size(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(fy_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(fy_parse_size("256M", &v), 0);
	assert_int_equal(v, 256ULL << 20);
	assert_int_equal(fy_parse_size("1GiB", &v), 0);
	assert_int_equal(v, 1ULL << 30);
	assert_int_equal(fy_parse_size("2k", &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(fy_parse_size("", &v), -EINVAL);
	assert_int_equal(fy_parse_size("12X", &v), -EINVAL);
	assert_int_equal(fy_parse_size("-1", &v), -EINVAL);
	assert_int_equal(fy_parse_size("99999999999T", &v), -EINVAL);
}

static void test_page_csum(void **state)
{
	static uint8_t a[FY_PAGE_SIZE], b[FY_PAGE_SIZE];

	(void)state;
	memset(a, 0x5a, sizeof(a));
	memcpy(b, a, sizeof(b));
	assert_int_equal(fy_page_csum(a), fy_page_csum(b));
	b[FY_PAGE_SIZE - 1] ^= 1;
	assert_int_not_equal(fy_page_csum(a), fy_page_csum(b));
}

static void test_log_level(void **state)
{
	enum fy_log_level l;

	(void)state;
	assert_int_equal(fy_log_parse_level("debug", &l), 0);
	assert_int_equal(l, FY_LOG_DEBUG);
	assert_int_equal(fy_log_parse_level("loud", &l), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bitmap_count_and_next),
		cmocka_unit_test(test_runs_round_trip),
		cmocka_unit_test(test_runs_to_bitmap_range),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_page_csum),
		cmocka_unit_test(test_log_level),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
