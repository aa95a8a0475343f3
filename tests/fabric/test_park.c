// SPDX-License-Identifier: MIT
/*
 * fab_park (fabric/fab_park.c): a progress thread parked while the
 * application holds it. Not held, it runs on at once; held, it sleeps
 * until the hold runs out or the application wakes it (also how a domain
 * stops it). The hold woken from is long (10 s): a wake-up that did not
 * happen shows as a thread parked that long, not as a tight timing.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "common/util.h"
#include "fabric/fabric_int.h"

#define LONG_NS 10000000000ULL

struct parked {
	struct fab_park p;
	int stop;
	unsigned waits; /* fab_park_wait() calls that slept; atomic */
	uint64_t left_ns; /* when the thread stopped parking; atomic */
};

/* The progress thread's loop, without the progress. */
static void *park_main(void *arg)
{
	struct parked *k = arg;

	while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE) &&
	       fab_park_wait(&k->p, &k->stop))
		__atomic_add_fetch(&k->waits, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&k->left_ns, fy_now_ns(), __ATOMIC_RELEASE);
	return NULL;
}

static void test_not_held(void **state)
{
	struct parked k = { .stop = 0 };

	(void)state;
	fab_park_init(&k.p);
	assert_false(fab_park_wait(&k.p, &k.stop));
	/* a hold already past counts as none */
	fab_park_hold(&k.p, fy_now_ns() - 1);
	assert_false(fab_park_wait(&k.p, &k.stop));
	fab_park_destroy(&k.p);
}

static void test_hold_runs_out(void **state)
{
	struct parked k = { .stop = 0 };
	uint64_t t0 = fy_now_ns();
	pthread_t t;

	(void)state;
	fab_park_init(&k.p);
	fab_park_hold(&k.p, t0 + 50000000ULL);
	assert_int_equal(pthread_create(&t, NULL, park_main, &k), 0);
	pthread_join(t, NULL);
	assert_true(k.waits >= 1);
	assert_true(k.left_ns >= t0 + 50000000ULL);
	fab_park_destroy(&k.p);
}

/* The hold moves on while the thread sleeps: it sleeps on. */
static void test_hold_renewed(void **state)
{
	struct parked k = { .stop = 0 };
	uint64_t t0 = fy_now_ns(), end = t0 + 200000000ULL;
	pthread_t t;

	(void)state;
	fab_park_init(&k.p);
	fab_park_hold(&k.p, t0 + 20000000ULL);
	assert_int_equal(pthread_create(&t, NULL, park_main, &k), 0);
	/* as fab_poll() does on every pass */
	while (fy_now_ns() < end)
		fab_park_hold(&k.p, fy_now_ns() + 20000000ULL);
	pthread_join(t, NULL);
	assert_true(k.left_ns >= end);
	fab_park_destroy(&k.p);
}

static void test_wake(void **state)
{
	struct parked k = { .stop = 0 };
	struct timespec nap = { 0, 50000000L };
	uint64_t t0 = fy_now_ns();
	pthread_t t;

	(void)state;
	fab_park_init(&k.p);
	fab_park_hold(&k.p, t0 + LONG_NS);
	assert_int_equal(pthread_create(&t, NULL, park_main, &k), 0);
	nanosleep(&nap, NULL); /* it sleeps by now, most likely */
	/* the application hands progress back long before the hold ends */
	fab_park_wake(&k.p);
	pthread_join(t, NULL);
	assert_true(k.left_ns < t0 + LONG_NS);
	fab_park_destroy(&k.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_held),
		cmocka_unit_test(test_hold_runs_out),
		cmocka_unit_test(test_hold_renewed),
		cmocka_unit_test(test_wake),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
