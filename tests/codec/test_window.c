// SPDX-License-Identifier: MIT
/*
 * The read window (codec_window.c): an empty window always has room, a
 * full one none; a read within the target latency grows it by its length
 * up to max, one over twice the target halves it down to min, and one in
 * between leaves it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "codec/codec.h"

static void test_window(void **state)
{
	struct codec_window w = {
		.cap = 4096, .min = 1024, .max = 16384, .target_ns = 1000
	};

	(void)state;
	/* empty: room for a read larger than the window itself */
	assert_true(codec_window_room(&w, 1 << 20));
	w.inflight = 3072;
	assert_true(codec_window_room(&w, 1024));
	assert_false(codec_window_room(&w, 1025));
	/* in time: +len */
	codec_window_done(&w, 1024, 999);
	assert_int_equal(w.inflight, 2048);
	assert_int_equal(w.cap, 5120);
	/* between the target and twice it: unchanged */
	codec_window_done(&w, 1024, 2000);
	assert_int_equal(w.cap, 5120);
	/* too slow: halved, never below min */
	w.inflight = 8192;
	codec_window_done(&w, 1024, 2001);
	assert_int_equal(w.cap, 2560);
	codec_window_done(&w, 1024, 5000);
	codec_window_done(&w, 1024, 5000);
	assert_int_equal(w.cap, 1024);
	/* grows to max, not past it */
	for (int i = 0; i < 40; i++)
		codec_window_done(&w, 1024, 10);
	assert_int_equal(w.cap, 16384);
	/* more completions than reads in flight never wrap inflight */
	assert_int_equal(w.inflight, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
