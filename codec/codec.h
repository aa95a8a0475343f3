/* SPDX-License-Identifier: MIT */
#ifndef FERRY_CODEC_CODEC_H
#define FERRY_CODEC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Pure codecs of the migration engine, with no state of their own: page
 * deltas for --compress delta (codec_delta.c, after XBZRLE) and the
 * window of reads a puller keeps in flight (codec_window.c).
 */

/* codec_delta.c: XBZRLE-like page deltas (--compress delta) */

/*
 * Encode how new differs from old (one page) into out (cap bytes);
 * returns the length, 0 when unchanged or when it does not fit.
 */
size_t codec_delta_encode(const uint8_t *old, const uint8_t *new, uint8_t *out,
			  size_t cap);
/* Apply a delta to page in place; 0 or -EBADMSG. */
int codec_delta_apply(uint8_t *page, const uint8_t *d, size_t len);
/*
 * Write page's record (header, delta or raw page) at out, which has room
 * for 16 + 4096 bytes; returns its length, a multiple of 8.
 */
size_t codec_delta_record(uint8_t *out, uint64_t page, const uint8_t *old,
			  const uint8_t *new, bool *raw);
/* Apply every record of a DELTA_SET buffer to map; *applied pages. */
int codec_delta_apply_buf(uint8_t *map, uint64_t pages, const uint8_t *buf,
			  size_t len, uint64_t *applied);

/*
 * The bytes of reads a puller keeps in flight: enough to fill the link,
 * few enough that a read waits about target_ns at most (reads on one
 * connection queue behind each other: on a slow link they would time out,
 * and in post-copy a fault would wait behind them). Grows by what
 * completes in time, halves when a read takes twice the target.
 */
struct codec_window {
	uint64_t cap, min, max, target_ns;
	uint64_t inflight;
};

static inline bool codec_window_room(const struct codec_window *w, uint64_t len)
{
	return !w->inflight || w->inflight + len <= w->cap;
}

/* A read of len bytes completed lat_ns after it was posted. */
void codec_window_done(struct codec_window *w, uint64_t len, uint64_t lat_ns);

#endif /* FERRY_CODEC_CODEC_H */
