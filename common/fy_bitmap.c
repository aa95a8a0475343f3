// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>

#include "common/bitmap.h"

uint64_t *fy_bitmap_alloc(uint64_t nbits)
{
	return calloc(FY_BITMAP_WORDS(nbits) ? FY_BITMAP_WORDS(nbits) : 1,
		      sizeof(uint64_t));
}

uint64_t fy_bitmap_count(const uint64_t *bm, uint64_t nbits)
{
	uint64_t n = 0, w;

	for (w = 0; w < nbits / 64; w++)
		n += __builtin_popcountll(bm[w]);
	if (nbits % 64)
		n += __builtin_popcountll(bm[w] & ((1ULL << (nbits % 64)) - 1));
	return n;
}

/* Shared walk of next_set and next_clear: flip = ~0 inverts the words. */
static uint64_t next_bit(const uint64_t *bm, uint64_t nbits, uint64_t from,
			 uint64_t flip)
{
	uint64_t w, word;

	if (from >= nbits)
		return nbits;
	w = from / 64;
	word = (bm[w] ^ flip) & (~0ULL << (from % 64));
	for (;;) {
		if (word) {
			uint64_t bit = w * 64 + __builtin_ctzll(word);

			return bit < nbits ? bit : nbits;
		}
		if (++w >= FY_BITMAP_WORDS(nbits))
			return nbits;
		word = bm[w] ^ flip;
	}
}

uint64_t fy_bitmap_next_set(const uint64_t *bm, uint64_t nbits, uint64_t from)
{
	return next_bit(bm, nbits, from, 0);
}

uint64_t fy_bitmap_next_clear(const uint64_t *bm, uint64_t nbits, uint64_t from)
{
	return next_bit(bm, nbits, from, ~0ULL);
}

int fy_runs_from_bitmap(const uint64_t *bm, uint64_t nbits, struct fy_run **out,
			size_t *nr)
{
	struct fy_run *runs = NULL, *grown;
	size_t n = 0, cap = 0;
	uint64_t start, end;

	for (start = fy_bitmap_next_set(bm, nbits, 0); start < nbits;
	     start = fy_bitmap_next_set(bm, nbits, end)) {
		end = fy_bitmap_next_clear(bm, nbits, start);
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(runs, cap * sizeof(*runs));
			if (!grown) {
				free(runs);
				return -ENOMEM;
			}
			runs = grown;
		}
		runs[n].start = start;
		runs[n].len = end - start;
		n++;
	}
	*out = runs;
	*nr = n;
	return 0;
}

int fy_runs_to_bitmap(const struct fy_run *runs, size_t nr, uint64_t *bm,
		      uint64_t nbits)
{
	size_t i;

	for (i = 0; i < nr; i++)
		if (!runs[i].len || runs[i].start >= nbits ||
		    runs[i].len > nbits - runs[i].start)
			return -ERANGE;
	for (i = 0; i < nr; i++)
		for (uint64_t p = runs[i].start;
		     p < runs[i].start + runs[i].len; p++)
			fy_bit_set(bm, p);
	return 0;
}

uint64_t fy_runs_pages(const struct fy_run *runs, size_t nr)
{
	uint64_t n = 0;

	for (size_t i = 0; i < nr; i++)
		n += runs[i].len;
	return n;
}
