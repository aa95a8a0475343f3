/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the dirty-log tests (test_kva_wp.c, test_kva_wp_incoming.c):
 * a 256 MiB memfd mapped shared at a 2 MiB boundary, as guest RAM is,
 * random page sets and their comparison, and writer threads that record
 * each page before they store to it. They fail the running cmocka test on
 * error, so call them from tests only.
 */
#ifndef FERRY_TESTS_KVA_WP_TEST_H
#define FERRY_TESTS_KVA_WP_TEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/bitmap.h"
#include "common/util.h"

#define RAM_SIZE (256ULL << 20)
#define PAGES (RAM_SIZE / FY_PAGE_SIZE)
#define WORDS FY_BITMAP_WORDS(PAGES)
#define HUGE (2ULL << 20)

struct ram {
	uint8_t *span; /* reservation, so that mem is 2 MiB aligned */
	uint8_t *mem;
	int fd;
};

/* Map RAM_SIZE of a new memfd; unmap it and close the memfd. */
void ram_map(struct ram *r);
void ram_unmap(struct ram *r);
/* The next of a splitmix64 sequence. */
uint64_t rnd(uint64_t *s);
/* Exactly pct % of the pages, at random, into set (cleared first). */
void random_set(uint64_t *set, unsigned int pct, uint64_t *seed);
/* Pages of got not in want (extra), and of want not in got (missed). */
void diff(const uint64_t *got, const uint64_t *want, uint64_t *missed,
	  uint64_t *extra);
/* Milliseconds since fy_now_ns() was t0. */
double ms_since(uint64_t t0);

/* A writer that records each page before its store, until stopped. */
struct rec_writer {
	uint8_t *mem;
	uint64_t first, npages; /* the pages it picks from */
	uint64_t seed;
	unsigned int pause_every; /* stores between 100 us naps; 0: none */
	atomic_bool *stop;
	uint64_t *rec;
	uint64_t stores;
};

/*
 * Start n writers over the whole RAM at mem (the second one hot: no naps,
 * 16 MiB in the middle) until *stop.
 */
void rec_writers_start(struct rec_writer *rw, pthread_t *t, unsigned int n,
		       uint8_t *mem, atomic_bool *stop);
/* Stop the writers; want gets the union of their records. */
void rec_writers_stop(struct rec_writer *rw, pthread_t *t, unsigned int n,
		      atomic_bool *stop, uint64_t *want, uint64_t *stores);

#endif /* FERRY_TESTS_KVA_WP_TEST_H */
