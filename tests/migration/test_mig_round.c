// SPDX-License-Identifier: MIT
/*
 * The source's decisions, without processes: round accounting (pages
 * pulled and pulled again), the bandwidth and downtime estimates, and
 * after each round what comes next (mig_src_decide()): switchover when the
 * rest fits, progress and stall counting, hybrid's post-copy, the hard
 * cap, and auto-converge by downtime and by throttle.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"
#include "migration/mig_dst.h"
#include "migration/mig_src.h"

static struct mig_peer peer = { .name = "b" };
static struct mig_env env; /* its clock: fy_now_ns() */

/* A source in pre-copy of pages pages with ferry migrate's defaults. */
static struct mig *mig(uint64_t pages)
{
	struct mig *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->id = 1;
	m->n = &env;
	m->source = m->sm.source = true;
	m->sm.state = MIG_SRC_PRECOPY;
	m->peer = &peer;
	strcpy(m->vm, "vm");
	m->pages = pages;
	m->sent_bm = fy_bitmap_alloc(pages);
	assert_non_null(m->sent_bm);
	m->o.mode = PROTO_MODE_PRECOPY;
	m->o.downtime_ms = m->limit_ms = 300;
	m->o.max_downtime_ms = 10000;
	m->o.max_rounds = 30;
	m->o.stall_rounds = 3;
	m->o.auto_converge = PROTO_CONVERGE_NONE;
	m->o.throttle_initial = 20;
	m->o.throttle_increment = 10;
	m->o.throttle_max = 99;
	return m;
}

static void mig_free(struct mig *m)
{
	free(m->todo);
	free(m->sent_bm);
	free(m);
}

/* Begin a round of the runs given as start, len pairs. */
static void round_of(struct mig *m, size_t nr, const uint64_t *pairs)
{
	struct fy_run *runs = calloc(nr ? nr : 1, sizeof(*runs));

	assert_non_null(runs);
	for (size_t i = 0; i < nr; i++) {
		runs[i].start = pairs[2 * i];
		runs[i].len = pairs[2 * i + 1];
	}
	mig_src_round_begin(m, runs, nr);
}

static void test_accounting(void **state)
{
	struct mig *m = mig(1024);

	(void)state;
	round_of(m, 2, (uint64_t[]){ 0, 100, 500, 24 });
	assert_int_equal(m->round_pages, 124);
	assert_int_equal(m->pages_pulled, 124);
	assert_int_equal(m->pages_repulled, 0);
	assert_false(m->todo_sent);
	/* pages 50..149: 50 of them were pulled before */
	round_of(m, 1, (uint64_t[]){ 50, 100 });
	assert_int_equal(m->round_pages, 100);
	assert_int_equal(m->pages_pulled, 224);
	assert_int_equal(m->pages_repulled, 50);
	/* an empty round moves nothing */
	round_of(m, 0, NULL);
	assert_int_equal(m->round_pages, 0);
	assert_int_equal(m->pages_pulled, 224);
	mig_free(m);
}

static void test_bandwidth(void **state)
{
	struct mig *m = mig(1 << 20);

	(void)state;
	/* a tiny first round still gives a figure: better than none */
	m->round_pages = 16;
	mig_src_round_bw(m, 1000000);
	assert_true(fabs(m->bw - 16 * 4096 / 1e-3) < 1e3);
	/* a tiny round never replaces it, even a faster one */
	m->bw = 1e6;
	mig_src_round_bw(m, 1000);
	assert_true(m->bw == 1e6);
	/* 4 MiB: replaces it only when faster */
	m->round_pages = 1024;
	mig_src_round_bw(m, 1000000000);
	assert_true(fabs(m->bw - 4194304) < 1);
	mig_src_round_bw(m, 2000000000);
	assert_true(fabs(m->bw - 4194304) < 1);
	/* 8 MiB or more: replaces it, slower or not (the link changed) */
	m->round_pages = 2048;
	mig_src_round_bw(m, 8000000000ULL);
	assert_true(fabs(m->bw - 1048576) < 1);
	/* estimates: 256 pages at 1 MiB/s take 1 s */
	m->last_harvest_ns = 1000000000;
	assert_int_equal(mig_src_estimate(m, 256, 3000000000ULL), 1000);
	assert_true(fabs(m->dirty_rate - 128) < 1e-6);
	assert_int_equal(m->expected_dt_ms, 1000);
	m->bw = 0;
	assert_int_equal(mig_src_estimate(m, 1, 4000000000ULL), UINT64_MAX);
	mig_free(m);
}

static void test_next_precopy(void **state)
{
	struct mig *m = mig(1024);
	unsigned pct;

	(void)state;
	assert_int_equal(mig_src_decide(m, 10, 300, &pct), MIG_NEXT_SWITCHOVER);
	assert_int_equal(pct, 0);
	/* shrinking by a tenth is progress; less is a stall */
	assert_int_equal(mig_src_decide(m, 1000, 301, &pct), MIG_NEXT_ROUND);
	assert_int_equal(m->best_dirty, 1000);
	assert_int_equal(mig_src_decide(m, 899, 301, &pct), MIG_NEXT_ROUND);
	assert_int_equal(m->stall, 0);
	assert_int_equal(mig_src_decide(m, 850, 301, &pct), MIG_NEXT_ROUND);
	assert_int_equal(m->stall, 1);
	assert_int_equal(m->best_dirty, 899);
	/* none: nothing else happens until the hard cap */
	for (int i = 0; i < 5; i++)
		assert_int_equal(mig_src_decide(m, 850, 301, &pct),
				 MIG_NEXT_ROUND);
	assert_int_equal(m->limit_ms, 300);
	assert_int_equal(pct, 0);
	m->round = 29;
	assert_int_equal(mig_src_decide(m, 850, 301, &pct), MIG_NEXT_FAIL);
	/* the cap counts even when the estimate is just over */
	m->round = 28;
	assert_int_equal(mig_src_decide(m, 850, 301, &pct), MIG_NEXT_ROUND);
	mig_free(m);
}

static void test_next_downtime(void **state)
{
	struct mig *m = mig(1024);
	unsigned pct;

	(void)state;
	m->o.auto_converge = PROTO_CONVERGE_DOWNTIME;
	m->o.max_downtime_ms = 1000;
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	for (int i = 0; i < 2; i++)
		assert_int_equal(mig_src_decide(m, 100, 700, &pct),
				 MIG_NEXT_ROUND);
	assert_int_equal(m->limit_ms, 300);
	/* the third stalled round: 300 -> 600 ms, 700 does not fit yet */
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(m->limit_ms, 600);
	assert_int_equal(m->stall, 0);
	assert_non_null(strstr(m->actions, "raised from 300 to 600 ms"));
	for (int i = 0; i < 2; i++)
		assert_int_equal(mig_src_decide(m, 100, 700, &pct),
				 MIG_NEXT_ROUND);
	/* 600 -> 1000 (the ceiling, not 1200): now it fits */
	assert_int_equal(mig_src_decide(m, 100, 700, &pct),
			 MIG_NEXT_SWITCHOVER);
	assert_int_equal(m->limit_ms, 1000);
	/* at the ceiling nothing more is raised */
	for (int i = 0; i < 5; i++)
		assert_int_equal(mig_src_decide(m, 100, 2000, &pct),
				 MIG_NEXT_ROUND);
	assert_int_equal(m->limit_ms, 1000);
	mig_free(m);
}

static void test_next_throttle(void **state)
{
	struct mig *m = mig(1024);
	unsigned pct;

	(void)state;
	m->o.auto_converge = PROTO_CONVERGE_THROTTLE;
	m->o.throttle_max = 35;
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(pct, 0);
	m->round = 5;
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(m->stall, 2);
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(pct, 20); /* initial, after stall_rounds */
	assert_int_equal(m->throttle_round, 5);
	/* what mig_throttle() does once the VM accepted it */
	m->throttle_pct = pct;
	m->stall = 0;
	m->round = 6;
	/* progress: no step */
	assert_int_equal(mig_src_decide(m, 80, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(pct, 0);
	/* a stall: +10, then the ceiling 35 */
	assert_int_equal(mig_src_decide(m, 80, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(pct, 30);
	m->throttle_pct = 30;
	assert_int_equal(mig_src_decide(m, 80, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(pct, 35);
	m->throttle_pct = 35;
	assert_int_equal(mig_src_decide(m, 80, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(pct, 0);
	/* a VM that refused THROTTLE is not asked again */
	m->throttle_pct = 0;
	m->o.throttle_max = 0;
	m->stall = 9;
	assert_int_equal(mig_src_decide(m, 80, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(pct, 0);
	mig_free(m);
}

static void test_next_hybrid(void **state)
{
	struct mig *m = mig(1024);
	unsigned pct;

	(void)state;
	m->o.mode = PROTO_MODE_HYBRID;
	/* when stuck: after stall_rounds rounds without progress */
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_ROUND);
	m->round = 3;
	assert_int_equal(mig_src_decide(m, 100, 700, &pct), MIG_NEXT_POSTCOPY);
	assert_string_equal(m->actions, "post-copy after round 3");
	mig_free(m);

	/* --postcopy-after 2: after round 1, progress or not */
	m = mig(1024);
	m->o.mode = PROTO_MODE_HYBRID;
	m->o.postcopy_after = 2;
	assert_int_equal(mig_src_decide(m, 1000, 700, &pct), MIG_NEXT_ROUND);
	m->round = 1;
	assert_int_equal(mig_src_decide(m, 10, 700, &pct), MIG_NEXT_POSTCOPY);
	/* but a rest that fits goes pre-copy */
	assert_int_equal(mig_src_decide(m, 10, 100, &pct), MIG_NEXT_SWITCHOVER);
	mig_free(m);

	/* asked (ferry migrate-postcopy): at the end of this round */
	m = mig(1024);
	m->o.mode = PROTO_MODE_HYBRID;
	m->sm.state = MIG_SRC_PRECOPY_ASKED;
	assert_int_equal(mig_src_decide(m, 1000, 700, &pct), MIG_NEXT_POSTCOPY);
	assert_string_equal(m->actions, "post-copy after round 0 (asked)");
	mig_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accounting),
		cmocka_unit_test(test_bandwidth),
		cmocka_unit_test(test_next_precopy),
		cmocka_unit_test(test_next_downtime),
		cmocka_unit_test(test_next_throttle),
		cmocka_unit_test(test_next_hybrid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
