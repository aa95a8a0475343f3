// SPDX-License-Identifier: MIT
/*
 * relay/: the pull scheduler. One holder gives the puller's order of
 * runs; several split the pages by bandwidth, steal at the tail, never
 * read a page from a stale copy, and give a failed holder's runs to the
 * others; bad inputs are refused. A small simulation plays the holders:
 * each serves its reads in order at its own speed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/bitmap.h"
#include "relay/relay.h"

/* The puller's order before relay/: a cursor over need, wrapping. */
static int ref_next(const uint64_t *need, uint64_t pages, uint64_t cursor,
		    uint64_t max, uint64_t *s, uint64_t *len)
{
	uint64_t p = fy_bitmap_next_set(need, pages, cursor), e;

	if (p >= pages)
		p = fy_bitmap_next_set(need, pages, 0);
	if (p >= pages)
		return -1;
	e = fy_bitmap_next_clear(need, pages, p);
	if (e - p > max)
		e = p + max;
	*s = p;
	*len = e - p;
	return 0;
}

static void test_one_holder_order(void **state)
{
	const uint64_t pages = 5000;
	uint64_t *a = fy_bitmap_alloc(pages), *b = fy_bitmap_alloc(pages);
	uint64_t cursor = 0, reads = 0;
	struct rly *r;

	(void)state;
	srand(7);
	assert_int_equal(rly_open(pages, b, 1, &r), 0);
	for (int step = 0; step < 20000; step++) {
		int act = rand() % 16;
		struct rly_read rd;
		uint64_t s, len;
		int ret;

		if (act < 3) { /* a DIRTY_SET */
			uint64_t st = rand() % pages;
			uint64_t n = 1 + rand() % 600;

			for (uint64_t p = st; p < st + n && p < pages; p++) {
				fy_bit_set(a, p);
				fy_bit_set(b, p);
			}
			continue;
		}
		if (act == 3 && rand() % 8 == 0) { /* post-copy begins */
			cursor = 0;
			rly_rewind(r);
			continue;
		}
		ret = rly_next(r, 256, &rd);
		if (ref_next(a, pages, cursor, 256, &s, &len)) {
			assert_int_equal(ret, -ENODATA);
			continue;
		}
		assert_int_equal(ret, 0);
		assert_int_equal(rd.holder, RLY_SOURCE);
		assert_int_equal(rd.start, s);
		assert_int_equal(rd.pages, len);
		if (act == 4 && len > 1) /* the fault server claimed the rest */
			len = rd.pages = 1 + rand() % (len - 1);
		for (uint64_t p = s; p < s + len; p++)
			fy_bit_clear(a, p);
		cursor = s + len;
		assert_int_equal(rly_take(r, &rd, step), 0);
		assert_int_equal(rly_done(r, &rd, step + 1), 0);
		reads++;
	}
	assert_memory_equal(a, b, FY_BITMAP_WORDS(pages) * 8);
	assert_true(reads > 5000);
	rly_close(r);
	free(a);
	free(b);
}

/* The holders, simulated: each serves its queue in order. */
struct sim {
	struct rly *r;
	uint64_t *need, pages;
	uint64_t ns_per_page[RLY_HOLDERS_MAX], busy[RLY_HOLDERS_MAX];
	uint64_t last[RLY_HOLDERS_MAX]; /* its last completion */
	uint64_t maxpage[RLY_HOLDERS_MAX]; /* the highest page it read */
	bool dead[RLY_HOLDERS_MAX]; /* its reads fail */
	unsigned takes[RLY_HOLDERS_MAX], die_after[RLY_HOLDERS_MAX];
	bool (*ok)(unsigned holder, uint64_t page); /* may it read page? */
	uint8_t *got;
	uint64_t now;
	struct {
		struct rly_read rd;
		uint64_t t;
	} q[64];
	unsigned nq;
};

static void sim_init(struct sim *s, uint64_t pages)
{
	memset(s, 0, sizeof(*s));
	s->pages = pages;
	s->need = fy_bitmap_alloc(pages);
	s->got = calloc(pages, 1);
	assert_non_null(s->need);
	assert_non_null(s->got);
	for (uint64_t p = 0; p < pages; p++)
		fy_bit_set(s->need, p);
	assert_int_equal(rly_open(pages, s->need, 100, &s->r), 0);
}

static void sim_fini(struct sim *s)
{
	rly_close(s->r);
	free(s->need);
	free(s->got);
}

/* Pull every needed page with window reads in flight of up to max. */
static void sim_run(struct sim *s, unsigned window, uint64_t max)
{
	for (;;) {
		struct rly_read rd;
		unsigned h, k = 0;

		while (s->nq < window && !rly_next(s->r, max, &rd)) {
			h = rd.holder;
			assert_true(h < RLY_HOLDERS_MAX);
			for (uint64_t p = rd.start; p < rd.start + rd.pages;
			     p++) {
				assert_true(fy_bit_test(s->need, p));
				if (s->ok)
					assert_true(s->ok(h, p));
			}
			assert_int_equal(rly_take(s->r, &rd, s->now), 0);
			if (s->die_after[h] && ++s->takes[h] >= s->die_after[h])
				s->dead[h] = true;
			if (s->busy[h] < s->now)
				s->busy[h] = s->now;
			s->busy[h] += rd.pages * s->ns_per_page[h];
			s->q[s->nq].rd = rd;
			s->q[s->nq++].t = s->busy[h];
		}
		if (!s->nq)
			break;
		for (unsigned i = 1; i < s->nq; i++)
			if (s->q[i].t < s->q[k].t)
				k = i;
		rd = s->q[k].rd;
		s->now = s->q[k].t;
		s->q[k] = s->q[--s->nq];
		h = rd.holder;
		if (s->dead[h]) {
			assert_int_equal(rly_fail(s->r, &rd, true), 0);
			continue;
		}
		assert_int_equal(rly_done(s->r, &rd, s->now), 0);
		s->last[h] = s->now;
		for (uint64_t p = rd.start; p < rd.start + rd.pages; p++) {
			s->got[p]++;
			if (p > s->maxpage[h])
				s->maxpage[h] = p;
		}
	}
	assert_int_equal(rly_next(s->r, max, &(struct rly_read){ 0 }),
			 -ENODATA);
	for (uint64_t p = 0; p < s->pages; p++)
		assert_int_equal(s->got[p], 1);
}

static uint64_t done_of(struct sim *s, unsigned h)
{
	struct rly_holder_info in;

	assert_int_equal(rly_holder_info(s->r, h, &in), 0);
	assert_int_equal(in.inflight, 0);
	return in.pages_done;
}

static unsigned add_full(struct sim *s, uint64_t gen)
{
	struct rly_vrun v = { 0, s->pages, gen };
	unsigned idx;

	assert_int_equal(rly_holder_add(s->r, 7, &v, 1, &idx), 0);
	return idx;
}

static void test_bandwidth_split(void **state)
{
	struct sim s;
	unsigned relay;
	double ratio;

	(void)state;
	sim_init(&s, 16384);
	relay = add_full(&s, 1);
	assert_int_equal(rly_want(s.r, 0, s.pages, 1), 0);
	s.ns_per_page[RLY_SOURCE] = 1000;
	s.ns_per_page[relay] = 3000;
	sim_run(&s, 16, 64);
	ratio = (double)done_of(&s, RLY_SOURCE) / (double)done_of(&s, relay);
	print_message("source %lu pages, relay %lu: %.2f\n",
		      (unsigned long)done_of(&s, RLY_SOURCE),
		      (unsigned long)done_of(&s, relay), ratio);
	assert_true(ratio > 2.5 && ratio < 3.5);
	sim_fini(&s);
}

/*
 * The first plan knows no bandwidth: equal halves. The fast holder
 * finishes its half and takes the slow one's tail: both end together.
 */
static void test_tail_stealing(void **state)
{
	struct sim s;
	unsigned relay;
	uint64_t gap;

	(void)state;
	sim_init(&s, 8192);
	relay = add_full(&s, 0);
	s.ns_per_page[RLY_SOURCE] = 500;
	s.ns_per_page[relay] = 5000;
	sim_run(&s, 32, 32);
	assert_true(s.maxpage[RLY_SOURCE] > s.pages * 3 / 4);
	gap = s.last[RLY_SOURCE] > s.last[relay]
		      ? s.last[RLY_SOURCE] - s.last[relay]
		      : s.last[relay] - s.last[RLY_SOURCE];
	print_message("ends %lu and %lu ns apart\n", (unsigned long)gap,
		      (unsigned long)s.last[relay]);
	/* within a few of the slow holder's reads */
	assert_true(gap < 8 * 32 * 5000);
	assert_true(done_of(&s, RLY_SOURCE) > 8 * done_of(&s, relay));
	sim_fini(&s);
}

/*
 * A relay holding the first 60 % (a retarget's old destination), as fast
 * as the source: the shares follow what each holds, so the relay reads
 * about half of all pages and both end together (the shares of the page
 * space alone gave it a quarter: its half held nothing).
 */
static void test_partial_relay(void **state)
{
	struct rly_vrun v = { 0, 0, 1 };
	struct sim s;
	unsigned relay;
	uint64_t done;

	(void)state;
	sim_init(&s, 16384);
	v.len = s.pages * 6 / 10;
	assert_int_equal(rly_holder_add(s.r, 7, &v, 1, &relay), 0);
	assert_int_equal(rly_want(s.r, 0, s.pages, 1), 0);
	s.ns_per_page[RLY_SOURCE] = 1000;
	s.ns_per_page[relay] = 1000;
	sim_run(&s, 16, 64);
	done = done_of(&s, relay);
	print_message("relay %lu of %lu pages, ends at %lu and %lu us\n",
		      (unsigned long)done, (unsigned long)s.pages,
		      (unsigned long)(s.last[relay] / 1000),
		      (unsigned long)(s.last[RLY_SOURCE] / 1000));
	assert_true(done > s.pages * 4 / 10 && done <= v.len);
	/* both done within a few reads of each other: about half the time */
	assert_true(s.last[RLY_SOURCE] < s.pages * 1000 * 6 / 10);
	sim_fini(&s);
}

/* The relay's copy: [0, 2048) gen 1, [2048, 4096) gen 5, [6144, 8192) gen 2 */
static bool stale_ok(unsigned h, uint64_t p)
{
	if (h == RLY_SOURCE)
		return true;
	/* needed at 2, [2048, 3072) at 6 */
	return (p >= 3072 && p < 4096) || p >= 6144;
}

/* The runs rly_holder_current() gives are exactly the stale_ok() pages. */
static void current_is(const struct rly *r, unsigned relay)
{
	struct rly_vrun *v;
	size_t nv, i = 0;

	assert_int_equal(rly_holder_current(r, RLY_SOURCE, &v, &nv), -EINVAL);
	assert_int_equal(rly_holder_current(r, relay, &v, &nv), 0);
	for (uint64_t p = 0; p < 8192; p++) {
		while (i < nv && p >= v[i].start + v[i].len)
			i++;
		assert_int_equal(i < nv && p >= v[i].start, stale_ok(relay, p));
	}
	free(v);
}

static void test_stale_holder(void **state)
{
	struct rly_vrun v[] = { { 0, 2048, 1 },
				{ 2048, 2048, 5 },
				{ 6144, 2048, 2 } };
	struct rly_read rd;
	struct sim s;
	unsigned relay;

	(void)state;
	sim_init(&s, 8192);
	assert_int_equal(rly_holder_add(s.r, 7, v, 3, &relay), 0);
	assert_int_equal(rly_want(s.r, 0, s.pages, 2), 0);
	assert_int_equal(rly_want(s.r, 2048, 1024, 6), 0);
	assert_int_equal(rly_choose(s.r, 1000, 4, &rd), 0);
	assert_int_equal(rd.holder, RLY_SOURCE);
	assert_int_equal(rly_choose(s.r, 3000, 100, &rd), 0);
	assert_int_equal(rd.holder, RLY_SOURCE); /* 3000..3071 are stale */
	current_is(s.r, relay);
	s.ok = stale_ok;
	s.ns_per_page[RLY_SOURCE] = 1000;
	s.ns_per_page[relay] = 1000;
	sim_run(&s, 16, 64);
	assert_true(done_of(&s, relay) > 1024);
	sim_fini(&s);
}

/*
 * rly_choose() one read at a time: the relay, not yet measured, is tried
 * second; then reads split by bandwidth, the relay's twice the source's.
 */
static void test_choose_split(void **state)
{
	unsigned picks[2] = { 0, 0 };
	uint64_t now = 1000;
	struct rly_read rd;
	struct sim s;
	unsigned relay;

	(void)state;
	sim_init(&s, 64);
	relay = add_full(&s, 0);
	for (unsigned k = 0; k < 600; k++) {
		assert_int_equal(rly_choose(s.r, k % 64, 1, &rd), 0);
		if (k == 0)
			assert_int_equal(rd.holder, RLY_SOURCE);
		if (k == 1)
			assert_int_equal(rd.holder, relay);
		picks[rd.holder == relay]++;
		assert_int_equal(rly_take(s.r, &rd, now), 0);
		now += rd.holder == relay ? 500 : 1000;
		assert_int_equal(rly_done(s.r, &rd, now), 0);
	}
	print_message("source %u, relay %u\n", picks[0], picks[1]);
	assert_in_range(picks[1], 380, 420);
	sim_fini(&s);
}

static void test_failed_holder(void **state)
{
	struct rly_holder_info in;
	struct rly_read rd;
	struct sim s;
	unsigned relay;

	(void)state;
	sim_init(&s, 8192);
	relay = add_full(&s, 0);
	s.ns_per_page[RLY_SOURCE] = 1000;
	s.ns_per_page[relay] = 1000;
	s.die_after[relay] = 5; /* its 5th read on fail: its runs return */
	sim_run(&s, 16, 64);
	assert_int_equal(rly_holder_info(s.r, relay, &in), 0);
	assert_true(in.down);
	assert_true(in.fails >= 1);
	assert_int_equal(done_of(&s, RLY_SOURCE) + in.pages_done, s.pages);
	assert_true(done_of(&s, RLY_SOURCE) > s.pages / 2);

	/* the source's failure requeues, never marks it down */
	fy_bit_set(s.need, 10);
	assert_int_equal(rly_next(s.r, 64, &rd), 0);
	assert_int_equal(rd.holder, RLY_SOURCE);
	assert_int_equal(rly_take(s.r, &rd, 0), 0);
	assert_false(fy_bit_test(s.need, 10));
	assert_int_equal(rly_fail(s.r, &rd, true), 0);
	assert_true(fy_bit_test(s.need, 10));
	assert_int_equal(rly_holder_info(s.r, RLY_SOURCE, &in), 0);
	assert_false(in.down);
	/* the engine may: then nothing is left to read from */
	assert_int_equal(rly_holder_down(s.r, RLY_SOURCE, true), 0);
	assert_int_equal(rly_next(s.r, 64, &rd), -EAGAIN);
	assert_int_equal(rly_choose(s.r, 10, 1, &rd), -EAGAIN);
	assert_int_equal(rly_holder_down(s.r, RLY_SOURCE, false), 0);
	assert_int_equal(rly_next(s.r, 64, &rd), 0);
	assert_int_equal(rd.start, 10);
	sim_fini(&s);
}

static void test_bad_inputs(void **state)
{
	uint64_t need[2] = { 0 };
	struct rly_vrun v[RLY_HOLDERS_MAX] = { { 0, 64, 1 } };
	struct rly_vrun bad[][2] = {
		{ { 0, 0, 1 } }, /* empty */
		{ { 100, 1, 1 } }, /* past the end */
		{ { 90, 50, 1 } }, /* reaching past it */
		{ { 0, 10, 1 }, { 5, 10, 1 } }, /* overlapping */
		{ { 20, 10, 1 }, { 0, 10, 1 } }, /* unsorted */
	};
	struct rly_holder_info in;
	struct rly_read rd, good;
	struct rly *r;
	unsigned idx;

	(void)state;
	assert_int_equal(rly_open(0, need, 1, &r), -EINVAL);
	assert_null(r);
	assert_int_equal(rly_open(100, NULL, 1, &r), -EINVAL);
	assert_int_equal(rly_open(RLY_PAGES_MAX + 1, need, 1, &r), -EINVAL);
	assert_int_equal(rly_open(100, need, 1, &r), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(rly_holder_add(r, 2, bad[i],
						i == 3 || i == 4 ? 2 : 1, &idx),
				 -EINVAL);
	assert_int_equal(rly_holder_add(r, 2, NULL, 1, &idx), -EINVAL);
	assert_int_equal(rly_holder_add(r, 2, v, RLY_VRUNS_MAX + 1, &idx),
			 -EINVAL);
	for (unsigned i = 1; i < RLY_HOLDERS_MAX; i++)
		assert_int_equal(rly_holder_add(r, i, v, 1, &idx), 0);
	assert_int_equal(rly_holder_add(r, 9, v, 1, &idx), -ENOSPC);
	assert_int_equal(rly_holder_map(r, RLY_SOURCE, v, 1), -EINVAL);
	assert_int_equal(rly_holder_map(r, RLY_HOLDERS_MAX, v, 1), -EINVAL);
	assert_int_equal(rly_holder_map(r, 1, bad[1], 1), -EINVAL);
	assert_int_equal(rly_holder_down(r, RLY_HOLDERS_MAX, true), -EINVAL);
	assert_int_equal(rly_holder_info(r, 99, &in), -EINVAL);
	assert_int_equal(rly_want(r, 0, 0, 1), -EINVAL);
	assert_int_equal(rly_want(r, 100, 1, 1), -EINVAL);
	assert_int_equal(rly_want(r, 50, UINT64_MAX, 1), -EINVAL);
	assert_int_equal(rly_next(r, 0, &rd), -EINVAL);
	assert_int_equal(rly_next(r, RLY_RUN_MAX + 1, &rd), -EINVAL);
	assert_int_equal(rly_next(r, 64, &rd), -ENODATA);
	assert_int_equal(rly_choose(r, 99, 2, &rd), -EINVAL);
	assert_int_equal(rly_choose(r, 0, 0, &rd), -EINVAL);
	fy_bit_set(need, 3);
	assert_int_equal(rly_next(r, 64, &good), 0);
	rd = good;
	rd.holder = RLY_HOLDERS_MAX;
	assert_int_equal(rly_take(r, &rd, 0), -EINVAL);
	rd = good;
	rd.pages = 0;
	assert_int_equal(rly_take(r, &rd, 0), -EINVAL);
	rd = good;
	rd.start = UINT64_MAX - 1;
	rd.pages = 4;
	assert_int_equal(rly_take(r, &rd, 0), -EINVAL);
	rd = good;
	rd.seg = RLY_SEGS_MAX;
	assert_int_equal(rly_take(r, &rd, 0), -EINVAL);
	rd = good;
	rd.seg = -2;
	assert_int_equal(rly_take(r, &rd, 0), -EINVAL);
	/* nothing in flight: nothing to end */
	assert_int_equal(rly_done(r, &good, 1), -EINVAL);
	assert_int_equal(rly_fail(r, &good, true), -EINVAL);
	assert_int_equal(rly_take(r, &good, 0), 0);
	rd = good;
	rd.pages = good.pages + 1;
	assert_int_equal(rly_done(r, &rd, 1), -EINVAL);
	assert_int_equal(rly_done(r, &good, 1), 0);
	assert_int_equal(rly_done(r, &good, 2), -EINVAL);
	/* at most RLY_INFLIGHT_MAX reads at one holder */
	for (int i = 0; i < RLY_INFLIGHT_MAX; i++) {
		assert_int_equal(rly_choose(r, 80, 1, &rd), 0);
		assert_int_equal(rd.holder, RLY_SOURCE);
		assert_int_equal(rly_take(r, &rd, 0), 0);
	}
	assert_int_equal(rly_take(r, &rd, 0), -EBUSY);
	rly_close(r);
	rly_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_holder_order),
		cmocka_unit_test(test_bandwidth_split),
		cmocka_unit_test(test_tail_stealing),
		cmocka_unit_test(test_partial_relay),
		cmocka_unit_test(test_stale_holder),
		cmocka_unit_test(test_choose_split),
		cmocka_unit_test(test_failed_holder),
		cmocka_unit_test(test_bad_inputs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
