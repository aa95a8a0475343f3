// SPDX-License-Identifier: MIT
/*
 * The pull scheduler's choices (relay/relay.h): shares of the page space
 * by bandwidth, the next read of a holder's share, work stealing at the
 * tail, the holder for a given run.
 *
 *   plan    each up relay's share is a range where its copy serves, as
 *           many needed pages as its part of the bandwidth asks (fewer if
 *           it holds fewer); the rest is the source's (one holder: one
 *           share, the whole space, its cursor kept)
 *   next    the holder that would finish a read first (reads in flight
 *           over bandwidth) takes the next needed run of its share, from
 *           its cursor, wrapping; if its copy of that page is stale, the
 *           run goes to a current holder instead (the source at worst)
 *   steal   a holder whose shares have nothing needed takes the tail of
 *           the slowest holder's share, in proportion to their bandwidths
 *   take    the caller reads it: need cleared, cursor moved, in flight
 */
#include <errno.h>

#include "common/bitmap.h"
#include "relay/rly_int.h"

/*
 * From page p on, the end of the range that holds n needed pages relay
 * hi serves, and the first of them in *first (r->pages: none); the pages
 * it serves there into *got.
 */
static uint64_t serve_span(const struct rly *r, unsigned hi, uint64_t p,
			   uint64_t n, uint64_t *first, uint64_t *got)
{
	uint64_t end = p;

	*first = r->pages;
	*got = 0;
	while (*got < n && p < r->pages) {
		uint64_t e, s;

		p = fy_bitmap_next_set(r->need, r->pages, p);
		if (p >= r->pages)
			break;
		e = fy_bitmap_next_clear(r->need, r->pages, p);
		/* the part of needed run [p, e) it serves, stretch by stretch */
		while (p < e && *got < n) {
			s = rly_serve_end(r, hi, p, e);
			if (s > p) {
				if (*first == r->pages)
					*first = p;
				if (s - p > n - *got)
					s = p + (n - *got);
				*got += s - p;
				end = s;
				p = s;
			} else {
				p++;
			}
		}
		if (p < e)
			p = e;
	}
	return end;
}

static void add_seg(struct rly *r, uint64_t lo, uint64_t hi, unsigned owner)
{
	if (hi > lo && r->nseg < RLY_SEGS_MAX)
		r->seg[r->nseg++] = (struct rly_seg){ lo, hi, lo, owner };
}

/*
 * Each up relay's share lies where its copy serves: from the first needed
 * page it serves, as many as its part of the bandwidth asks (fewer if it
 * holds fewer); what no relay's share covers is the source's (with the
 * source down, the first up holder's).
 */
static void plan(struct rly *r, bool rewind)
{
	unsigned up[RLY_HOLDERS_MAX], nup = 0, rest;
	double w[RLY_HOLDERS_MAX], wsum = 0;
	uint64_t total, lo = 0, gaps[RLY_HOLDERS_MAX][2];
	unsigned ngaps = 0;

	r->replan = false;
	for (unsigned i = 0; i < r->nh; i++)
		if (rly_up(r, i)) {
			w[nup] = rly_bw(r, i);
			wsum += w[nup];
			up[nup++] = i;
		}
	if (nup <= 1) {
		bool keep = !rewind && r->nseg == 1 && nup &&
			    r->seg[0].owner == up[0] && r->seg[0].lo == 0 &&
			    r->seg[0].hi == r->pages;

		if (!keep && nup)
			r->seg[0] = (struct rly_seg){ 0, r->pages, 0, up[0] };
		r->nseg = nup;
		return;
	}
	total = fy_bitmap_count(r->need, r->pages);
	rest = rly_up(r, RLY_SOURCE) ? RLY_SOURCE : up[0];
	r->nseg = 0;
	for (unsigned k = 0; k < nup; k++) {
		uint64_t want = (uint64_t)((double)total * w[k] / wsum);
		uint64_t first, got, end;

		if (up[k] == rest || !want)
			continue;
		end = serve_span(r, up[k], lo, want, &first, &got);
		if (!got)
			continue;
		gaps[ngaps][0] = lo;
		gaps[ngaps++][1] = first;
		add_seg(r, first, end, up[k]);
		lo = end;
	}
	for (unsigned g = 0; g < ngaps; g++)
		add_seg(r, gaps[g][0], gaps[g][1], rest);
	add_seg(r, lo, r->pages, rest);
}

void rly_rewind(struct rly *r)
{
	plan(r, true);
}

/* The next needed page of share s from its cursor, wrapping; s->hi: none. */
static uint64_t seg_next(const struct rly *r, const struct rly_seg *s)
{
	uint64_t p = fy_bitmap_next_set(r->need, s->hi, s->cur);

	if (p >= s->hi)
		p = fy_bitmap_next_set(r->need, s->hi, s->lo);
	return p;
}

/* How soon holder hi would finish n more pages: lower is sooner. */
static double finish(const struct rly *r, unsigned hi, uint64_t n)
{
	return (double)(r->h[hi].inflight_pages + n) / rly_bw(r, hi);
}

static bool has_room(const struct rly *r, unsigned hi)
{
	return rly_up(r, hi) && r->h[hi].inflight < RLY_INFLIGHT_MAX;
}

/*
 * Holder hi took nothing from its shares: give it the tail of the slowest
 * holder's share that has pages needed ahead of its cursor. Returns the
 * share's index, -1 (nothing to steal) or -ENOSPC (no share left).
 */
static int steal(struct rly *r, unsigned hi)
{
	int v = -1;
	double vbw = 0, tbw = rly_bw(r, hi);
	uint64_t vp = 0, mid;
	struct rly_seg *s;

	for (unsigned i = 0; i < r->nseg; i++) {
		const struct rly_seg *c = &r->seg[i];
		uint64_t p;

		if (c->owner == hi)
			continue;
		p = fy_bitmap_next_set(r->need, c->hi, c->cur);
		if (p < c->hi && (v < 0 || rly_bw(r, c->owner) < vbw)) {
			v = i;
			vp = p;
			vbw = rly_bw(r, c->owner);
		}
	}
	if (v < 0)
		return -1;
	s = &r->seg[v];
	/* the victim keeps what it reads while the thief reads the rest */
	mid = vp + (uint64_t)((double)(s->hi - vp) * vbw / (vbw + tbw));
	if (mid >= s->hi || fy_bitmap_next_set(r->need, s->hi, mid) >= s->hi)
		mid = vp;
	if (mid == s->lo) {
		s->owner = hi;
		return v;
	}
	if (r->nseg >= RLY_SEGS_MAX)
		return -ENOSPC;
	r->seg[r->nseg] = (struct rly_seg){ mid, s->hi, mid, hi };
	s->hi = mid;
	return r->nseg++;
}

/* A share of holder hi with a needed page (at *p); else steal one. */
static int find(struct rly *r, unsigned hi, uint64_t *p)
{
	int i;

	for (unsigned k = 0; k < r->nseg; k++) {
		if (r->seg[k].owner != hi)
			continue;
		*p = seg_next(r, &r->seg[k]);
		if (*p < r->seg[k].hi)
			return k;
	}
	i = steal(r, hi);
	if (i == -ENOSPC) {
		/* too many splits: start over from fresh shares */
		plan(r, false);
		return -1;
	}
	if (i >= 0)
		*p = seg_next(r, &r->seg[i]);
	return i;
}

/*
 * An up holder with room, current for [p, p + n): of those, each is
 * chosen in proportion to how soon it would finish the run (1 / finish(),
 * its bandwidth over its queue), by smooth weighted round robin (nginx's
 * upstreams): every candidate earns its weight, the richest is chosen and
 * pays the sum. One at a time (a fault, a pre-page) the reads thus split
 * by bandwidth, a holder not yet measured (the others' mean) is tried
 * soon, and a slow sample does not shut a holder out for good. The source
 * when none is a candidate; -1 when the source is down too.
 */
static int best_for(struct rly *r, uint64_t p, uint64_t n)
{
	double sum = 0;
	int best = -1;

	for (unsigned i = 0; i < r->nh; i++) {
		if (!has_room(r, i) || rly_serve_end(r, i, p, p + n) < p + n)
			continue;
		r->h[i].credit += 1.0 / finish(r, i, n);
		sum += 1.0 / finish(r, i, n);
		if (best < 0 || r->h[i].credit > r->h[best].credit)
			best = i;
	}
	if (best >= 0)
		r->h[best].credit -= sum;
	if (best < 0 && rly_up(r, RLY_SOURCE))
		best = RLY_SOURCE;
	return best;
}

int rly_next(struct rly *r, uint64_t max, struct rly_read *rd)
{
	bool tried[RLY_HOLDERS_MAX] = { false };

	if (!max || max > RLY_RUN_MAX)
		return -EINVAL;
	if (r->replan)
		plan(r, false);
	for (;;) {
		int h = -1, k, c;
		uint64_t p, e;

		/* the holder that would finish a read first asks first */
		for (unsigned i = 0; i < r->nh; i++)
			if (!tried[i] && has_room(r, i) &&
			    (h < 0 || finish(r, i, max) < finish(r, h, max)))
				h = i;
		if (h < 0)
			break;
		tried[h] = true;
		k = find(r, h, &p);
		if (k < 0)
			continue;
		e = fy_bitmap_next_clear(r->need, r->seg[k].hi, p);
		if (e - p > max)
			e = p + max;
		c = rly_serves(r, h, p) ? h : best_for(r, p, 1);
		if (c < 0)
			continue;
		*rd = (struct rly_read){ .start = p,
					 .pages = rly_serve_end(r, c, p, e) - p,
					 .holder = c,
					 .seg = k };
		return 0;
	}
	return fy_bitmap_next_set(r->need, r->pages, 0) < r->pages ? -EAGAIN
								   : -ENODATA;
}

int rly_choose(struct rly *r, uint64_t start, uint64_t n, struct rly_read *rd)
{
	int c;

	if (!n || n > RLY_RUN_MAX || start >= r->pages || n > r->pages - start)
		return -EINVAL;
	c = best_for(r, start, n);
	if (c < 0)
		return -EAGAIN;
	*rd = (struct rly_read){
		.start = start, .pages = n, .holder = c, .seg = -1
	};
	return 0;
}

int rly_take(struct rly *r, struct rly_read *rd, uint64_t now)
{
	struct rly_holder *h;

	if (!rly_read_ok(r, rd) || rd->seg < -1 ||
	    (rd->seg >= 0 &&
	     ((unsigned)rd->seg >= r->nseg || rd->start < r->seg[rd->seg].lo ||
	      rd->start + rd->pages > r->seg[rd->seg].hi)))
		return -EINVAL;
	h = &r->h[rd->holder];
	if (h->inflight >= RLY_INFLIGHT_MAX)
		return -EBUSY;
	if (rd->seg >= 0)
		r->seg[rd->seg].cur = rd->start + rd->pages;
	for (uint64_t p = rd->start; p < rd->start + rd->pages; p++)
		fy_bit_clear(r->need, p);
	h->inflight++;
	h->inflight_pages += rd->pages;
	rd->t_post = now;
	return 0;
}
