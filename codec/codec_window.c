// SPDX-License-Identifier: MIT
/*
 * The window of reads a puller keeps in flight (codec/codec.h): it grows
 * by what completes within the target latency and halves when a read
 * takes twice as long.
 */
#include "codec/codec.h"
#include "common/util.h"

void codec_window_done(struct codec_window *w, uint64_t len, uint64_t lat_ns)
{
	w->inflight -= FY_MIN(w->inflight, len);
	if (lat_ns < w->target_ns)
		w->cap = FY_MIN(w->cap + len, w->max);
	else if (lat_ns > 2 * w->target_ns)
		w->cap = FY_MAX(w->cap / 2, w->min);
}
