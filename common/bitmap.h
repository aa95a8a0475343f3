/* SPDX-License-Identifier: MIT */
#ifndef FERRY_COMMON_BITMAP_H
#define FERRY_COMMON_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Page bitmaps and run-length sets. A bitmap is a plain uint64_t array of
 * (nbits + 63) / 64 words; a run set is a sorted array of disjoint,
 * non-adjacent runs, the form in which page sets travel on the wire.
 */

/* A run of pages [start, start + len); len > 0. */
struct fy_run {
	uint64_t start;
	uint64_t len;
};

#define FY_BITMAP_WORDS(nbits) (((nbits) + 63) / 64)

static inline void fy_bit_set(uint64_t *bm, uint64_t bit)
{
	bm[bit / 64] |= 1ULL << (bit % 64);
}

static inline void fy_bit_clear(uint64_t *bm, uint64_t bit)
{
	bm[bit / 64] &= ~(1ULL << (bit % 64));
}

static inline bool fy_bit_test(const uint64_t *bm, uint64_t bit)
{
	return bm[bit / 64] & (1ULL << (bit % 64));
}

/* Allocate a zeroed bitmap of nbits; returns NULL on failure. free() it. */
uint64_t *fy_bitmap_alloc(uint64_t nbits);
/* Number of set bits among the first nbits. */
uint64_t fy_bitmap_count(const uint64_t *bm, uint64_t nbits);
/* First set bit at or after from, or nbits if there is none. */
uint64_t fy_bitmap_next_set(const uint64_t *bm, uint64_t nbits, uint64_t from);
/* First clear bit at or after from, or nbits if there is none. */
uint64_t fy_bitmap_next_clear(const uint64_t *bm, uint64_t nbits,
			      uint64_t from);

/*
 * Encode the set bits of bm as runs. On success *out is a malloc'ed array
 * the caller frees (NULL when there are no runs) and *nr its length.
 * Returns 0 or -ENOMEM.
 */
int fy_runs_from_bitmap(const uint64_t *bm, uint64_t nbits, struct fy_run **out,
			size_t *nr);
/*
 * Set the bits of nr runs in bm. Returns -ERANGE, touching nothing, if a run
 * is empty or reaches past nbits; 0 otherwise.
 */
int fy_runs_to_bitmap(const struct fy_run *runs, size_t nr, uint64_t *bm,
		      uint64_t nbits);
/* Total pages covered by nr runs. */
uint64_t fy_runs_pages(const struct fy_run *runs, size_t nr);

#endif /* FERRY_COMMON_BITMAP_H */
