// SPDX-License-Identifier: MIT
/*
 * The user accelerator's dirty log (kva_user_dirty.c) on a 256 MiB memfd
 * mapped shared, as guest RAM is: no KVM, root on Linux 6.7+.
 *
 * - rounds: a writer thread writes a random 1, 10 or 100 % of the pages,
 *   then a harvest must report exactly those (none missed, none extra) and
 *   the next one nothing; async and sync. Harvest times are printed.
 * - concurrent: writers write while the main thread harvests; each writer
 *   records a page in its own bitmap before storing to it, so after the
 *   writers stop every recorded page is written: the union of the harvests
 *   and one last harvest must be exactly the recorded pages.
 * - dropped: pages written then dropped (MADV_DONTNEED, a whole 2 MiB
 *   page table's worth too, MADV_PAGEOUT), some read back in before the
 *   harvest, are still reported, and nothing else is.
 * - soft-dirty: open fails with -EOPNOTSUPP where bit 55 of pagemap does
 *   not work (probed here independently), else the rounds are exact.
 * - auto: AUTO picks async on this kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvm-adapter/kva_accel.h"
#include "kva_wp_test.h"

#define ROUNDS 7
#define PM_SOFT_DIRTY (1ULL << 55)

struct set_writer {
	uint8_t *mem;
	const uint64_t *set;
	uint8_t val;
};

static void *set_writer_fn(void *arg)
{
	struct set_writer *sw = arg;
	uint64_t p = fy_bitmap_next_set(sw->set, PAGES, 0);

	for (; p < PAGES; p = fy_bitmap_next_set(sw->set, PAGES, p + 1))
		((volatile uint8_t *)sw->mem)[p * FY_PAGE_SIZE + p % 4000] =
			sw->val;
	return NULL;
}

/* Write set from a thread of its own and wait for it. */
static void write_set(uint8_t *mem, const uint64_t *set, uint8_t val)
{
	struct set_writer sw = { mem, set, val };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, set_writer_fn, &sw), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static void assert_empty_harvest(struct kva_wp *w, uint64_t *bm)
{
	memset(bm, 0, WORDS * 8);
	assert_int_equal(kva_wp_harvest(w, bm), 0);
	assert_int_equal(fy_bitmap_count(bm, PAGES), 0);
}

/* Rounds of 1/10/100 % written by a thread, then harvested: exact. */
static void rounds(struct kva_wp *w, uint8_t *mem, const char *name)
{
	static const unsigned int pct[] = { 1, 10, 100 };
	uint64_t *set = fy_bitmap_alloc(PAGES), *bm = fy_bitmap_alloc(PAGES);
	uint64_t seed = 42, missed, extra, t0;
	double ms;
	int r;

	assert_non_null(set);
	assert_non_null(bm);
	/* Nothing written since open. */
	assert_empty_harvest(w, bm);
	for (r = 0; r < ROUNDS; r++) {
		random_set(set, pct[r % 3], &seed);
		write_set(mem, set, (uint8_t)(r + 1));
		memset(bm, 0, WORDS * 8);
		t0 = fy_now_ns();
		assert_int_equal(kva_wp_harvest(w, bm), 0);
		ms = ms_since(t0);
		diff(bm, set, &missed, &extra);
		printf("%-10s round %d: %3u %% (%6llu pages) harvest of "
		       "256 MiB %7.2f ms, missed %llu, extra %llu\n",
		       name, r, pct[r % 3],
		       (unsigned long long)fy_bitmap_count(set, PAGES), ms,
		       (unsigned long long)missed, (unsigned long long)extra);
		assert_int_equal(missed, 0);
		assert_int_equal(extra, 0);
		assert_empty_harvest(w, bm);
	}
	free(set);
	free(bm);
}

static void rounds_mode(enum kva_wp_mode mode)
{
	struct kva_wp *w;
	struct ram r;

	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, mode, false, &w), 0);
	assert_int_equal(kva_wp_mode(w), mode);
	assert_int_equal(kva_wp_uffd(w), -1);
	rounds(w, r.mem, kva_wp_mode_name(mode));
	kva_wp_close(w);
	ram_unmap(&r);
}

static void test_async_rounds(void **state)
{
	(void)state;
	rounds_mode(KVA_WP_ASYNC);
}

static void test_sync_rounds(void **state)
{
	(void)state;
	rounds_mode(KVA_WP_SYNC);
}

static void concurrent_mode(enum kva_wp_mode mode)
{
	uint64_t *uni = fy_bitmap_alloc(PAGES), *want = fy_bitmap_alloc(PAGES);
	uint64_t missed, extra, stores, t_end;
	struct rec_writer rw[2];
	atomic_bool stop = false;
	unsigned int harvests = 0;
	struct kva_wp *w;
	pthread_t t[2];
	struct ram r;

	assert_non_null(uni);
	assert_non_null(want);
	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, mode, false, &w), 0);
	rec_writers_start(rw, t, 2, r.mem, &stop);
	t_end = fy_now_ns() + 500000000ULL;
	while (fy_now_ns() < t_end) {
		assert_int_equal(kva_wp_harvest(w, uni), 0);
		harvests++;
		usleep(2000);
	}
	rec_writers_stop(rw, t, 2, &stop, want, &stores);
	assert_int_equal(kva_wp_harvest(w, uni), 0);
	diff(uni, want, &missed, &extra);
	printf("%-10s concurrent: %llu stores to %llu pages over %u "
	       "harvests, missed %llu, extra %llu\n",
	       kva_wp_mode_name(mode), (unsigned long long)stores,
	       (unsigned long long)fy_bitmap_count(want, PAGES), harvests,
	       (unsigned long long)missed, (unsigned long long)extra);
	assert_true(harvests > 10);
	assert_int_equal(missed, 0);
	/* A page is only ever reported for a fault on it: a store. */
	assert_int_equal(extra, 0);
	kva_wp_close(w);
	ram_unmap(&r);
	free(uni);
	free(want);
}

static void test_async_concurrent(void **state)
{
	(void)state;
	concurrent_mode(KVA_WP_ASYNC);
}

static void test_sync_concurrent(void **state)
{
	(void)state;
	concurrent_mode(KVA_WP_SYNC);
}

/* Written pages dropped from the page tables are still reported. */
static void dropped_mode(enum kva_wp_mode mode)
{
	uint64_t *set = fy_bitmap_alloc(PAGES), *bm = fy_bitmap_alloc(PAGES);
	uint64_t seed = 7, p, n = 0, missed, extra, huge0 = 3 * HUGE;
	struct kva_wp *w;
	struct ram r;
	volatile uint8_t sink;

	assert_non_null(set);
	assert_non_null(bm);
	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, mode, false, &w), 0);
	random_set(set, 5, &seed);
	/* a whole page table's worth, 2 MiB aligned */
	for (p = huge0 / FY_PAGE_SIZE; p < (huge0 + HUGE) / FY_PAGE_SIZE; p++)
		fy_bit_set(set, p);
	write_set(r.mem, set, 0x5a);
	assert_int_equal(madvise(r.mem + huge0, HUGE, MADV_DONTNEED), 0);
	for (p = fy_bitmap_next_set(set, PAGES, 0); p < PAGES;
	     p = fy_bitmap_next_set(set, PAGES, p + 1), n++) {
		uint8_t *pg = r.mem + p * FY_PAGE_SIZE;

		if (n % 3 == 0)
			assert_int_equal(
				madvise(pg, FY_PAGE_SIZE, MADV_DONTNEED), 0);
		if (n % 3 == 1)
			madvise(pg, FY_PAGE_SIZE, MADV_PAGEOUT); /* may fail */
		/* and read some back in: the data is in the memfd */
		if (n % 6 == 0) {
			sink = pg[p % 4000];
			assert_int_equal(sink, 0x5a);
		}
	}
	memset(bm, 0, WORDS * 8);
	assert_int_equal(kva_wp_harvest(w, bm), 0);
	diff(bm, set, &missed, &extra);
	printf("%-10s dropped: %llu pages written, missed %llu, extra %llu\n",
	       kva_wp_mode_name(mode),
	       (unsigned long long)fy_bitmap_count(set, PAGES),
	       (unsigned long long)missed, (unsigned long long)extra);
	assert_int_equal(missed, 0);
	assert_int_equal(extra, 0);
	assert_empty_harvest(w, bm);
	/* dropped again after the harvest: protected, not written */
	assert_int_equal(madvise(r.mem, RAM_SIZE, MADV_DONTNEED), 0);
	assert_empty_harvest(w, bm);
	kva_wp_close(w);
	ram_unmap(&r);
	free(set);
	free(bm);
}

static void test_dropped(void **state)
{
	(void)state;
	dropped_mode(KVA_WP_ASYNC);
	dropped_mode(KVA_WP_SYNC);
}

/* Whether bit 55 of pagemap follows writes here, probed on our own. */
static bool soft_dirty_works(void)
{
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	volatile uint8_t *p = mmap(NULL, FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t e0 = 0, e1 = 0;
	off_t off = (uintptr_t)p / FY_PAGE_SIZE * 8;

	assert_true(pm >= 0 && cr >= 0 && p != MAP_FAILED);
	p[0] = 1;
	assert_int_equal(write(cr, "4", 1), 1);
	assert_int_equal(pread(pm, &e0, 8, off), 8);
	p[0] = 2;
	assert_int_equal(pread(pm, &e1, 8, off), 8);
	munmap((void *)p, FY_PAGE_SIZE);
	close(pm);
	close(cr);
	return !(e0 & PM_SOFT_DIRTY) && (e1 & PM_SOFT_DIRTY);
}

static void test_softdirty(void **state)
{
	struct kva_wp *w = (void *)1;
	bool works = soft_dirty_works();
	struct ram r;
	int ret;

	(void)state;
	ram_map(&r);
	ret = kva_wp_open(r.mem, RAM_SIZE, KVA_WP_SOFTDIRTY, false, &w);
	printf("soft-dirty: bit 55 %s here, kva_wp_open: %d\n",
	       works ? "works" : "never set", ret);
	if (!works) {
		assert_int_equal(ret, -EOPNOTSUPP);
		assert_null(w);
	} else {
		assert_int_equal(ret, 0);
		assert_int_equal(kva_wp_mode(w), KVA_WP_SOFTDIRTY);
		rounds(w, r.mem, "soft-dirty");
		kva_wp_close(w);
	}
	ram_unmap(&r);
}

static void test_auto(void **state)
{
	struct kva_wp *w;
	struct ram r;

	(void)state;
	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, KVA_WP_AUTO, false, &w),
			 0);
	assert_string_equal(kva_wp_mode_name(kva_wp_mode(w)), "async");
	assert_string_equal(kva_wp_mode_name(KVA_WP_SYNC), "sync");
	assert_string_equal(kva_wp_mode_name(KVA_WP_SOFTDIRTY), "soft-dirty");
	kva_wp_close(w);
	kva_wp_close(NULL);
	ram_unmap(&r);
}
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auto),
		cmocka_unit_test(test_async_rounds),
		cmocka_unit_test(test_async_concurrent),
		cmocka_unit_test(test_sync_rounds),
		cmocka_unit_test(test_sync_concurrent),
		cmocka_unit_test(test_dropped),
		cmocka_unit_test(test_softdirty),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
