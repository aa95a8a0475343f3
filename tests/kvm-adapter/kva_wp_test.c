// SPDX-License-Identifier: MIT
/* Helpers of the dirty-log tests (kva_wp_test.h). */
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

#include "kva_wp_test.h"

void ram_map(struct ram *r)
{
	r->fd = memfd_create("kva-wp-test", MFD_CLOEXEC);
	assert_true(r->fd >= 0);
	assert_int_equal(ftruncate(r->fd, RAM_SIZE), 0);
	r->span = mmap(NULL, RAM_SIZE + HUGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(r->span != MAP_FAILED);
	r->mem = (uint8_t *)(((uintptr_t)r->span + HUGE - 1) & ~(HUGE - 1));
	assert_true(mmap(r->mem, RAM_SIZE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED | MAP_NORESERVE, r->fd,
			 0) == r->mem);
}

void ram_unmap(struct ram *r)
{
	munmap(r->span, RAM_SIZE + HUGE);
	close(r->fd);
}

uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Exactly pct % of the pages, at random, into set (cleared first). */
void random_set(uint64_t *set, unsigned int pct, uint64_t *seed)
{
	uint64_t want = PAGES * pct / 100, have = 0, p;

	memset(set, 0, WORDS * 8);
	if (pct == 100) {
		memset(set, 0xff, WORDS * 8);
		return;
	}
	while (have < want) {
		p = rnd(seed) % PAGES;
		if (!fy_bit_test(set, p)) {
			fy_bit_set(set, p);
			have++;
		}
	}
}

/* Pages of got not in want (extra), and of want not in got (missed). */
void diff(const uint64_t *got, const uint64_t *want, uint64_t *missed,
	  uint64_t *extra)
{
	uint64_t i;

	*missed = *extra = 0;
	for (i = 0; i < WORDS; i++) {
		*missed += __builtin_popcountll(want[i] & ~got[i]);
		*extra += __builtin_popcountll(got[i] & ~want[i]);
	}
}

double ms_since(uint64_t t0)
{
	return (fy_now_ns() - t0) / 1e6;
}

static void *rec_writer_fn(void *arg)
{
	struct rec_writer *rw = arg;
	struct timespec nap = { 0, 100000 };
	uint64_t p;

	while (!atomic_load_explicit(rw->stop, memory_order_relaxed)) {
		p = rw->first + rnd(&rw->seed) % rw->npages;
		fy_bit_set(rw->rec, p);
		((volatile uint8_t *)rw->mem)[p * FY_PAGE_SIZE + p % 4000] =
			(uint8_t)rw->stores;
		rw->stores++;
		if (rw->pause_every && !(rw->stores % rw->pause_every))
			nanosleep(&nap, NULL);
	}
	return NULL;
}

void rec_writers_start(struct rec_writer *rw, pthread_t *t, unsigned int n,
		       uint8_t *mem, atomic_bool *stop)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		rw[i] = (struct rec_writer){
			.mem = mem,
			.first = 0,
			.npages = PAGES,
			.seed = 1000 + i,
			.pause_every = 16,
			.stop = stop,
			.rec = fy_bitmap_alloc(PAGES),
		};
		assert_non_null(rw[i].rec);
		if (i == 1) {
			/* hot: no naps, 16 MiB in the middle */
			rw[i].first = PAGES / 2;
			rw[i].npages = 4096;
			rw[i].pause_every = 0;
		}
		assert_int_equal(
			pthread_create(&t[i], NULL, rec_writer_fn, &rw[i]), 0);
	}
}

/* Stop the writers; want gets the union of their records. */
void rec_writers_stop(struct rec_writer *rw, pthread_t *t, unsigned int n,
		      atomic_bool *stop, uint64_t *want, uint64_t *stores)
{
	unsigned int i;
	uint64_t k;

	atomic_store(stop, true);
	*stores = 0;
	for (i = 0; i < n; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		for (k = 0; k < WORDS; k++)
			want[k] |= rw[i].rec[k];
		*stores += rw[i].stores;
		free(rw[i].rec);
	}
}
