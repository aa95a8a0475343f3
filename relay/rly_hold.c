// SPDX-License-Identifier: MIT
/*
 * The holder set of a pull scheduler (relay/relay.h): each holder's copy
 * (runs of pages with their generation), whether it is up, and its
 * bandwidth as measured by the reads that complete there. The source is
 * holder RLY_SOURCE: it holds every page, always current.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "relay/rly_int.h"

int rly_open(uint64_t pages, uint64_t *need, uint64_t source_id,
	     struct rly **out)
{
	struct rly *r;

	*out = NULL;
	if (!pages || pages > RLY_PAGES_MAX || !need)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->pages = pages;
	r->need = need;
	r->h[RLY_SOURCE].used = true;
	r->h[RLY_SOURCE].id = source_id;
	r->nh = 1;
	r->nseg = 1;
	r->seg[0] = (struct rly_seg){ .lo = 0, .hi = pages, .cur = 0 };
	*out = r;
	return 0;
}

void rly_close(struct rly *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->nh; i++)
		free(r->h[i].v);
	free(r->want);
	free(r);
}

/* Sorted, disjoint, non-empty runs inside the pages. */
static bool vruns_ok(const struct rly *r, const struct rly_vrun *v, size_t nv)
{
	uint64_t end = 0;

	if (nv > RLY_VRUNS_MAX || (nv && !v))
		return false;
	for (size_t i = 0; i < nv; i++) {
		if (!v[i].len || v[i].start < end || v[i].start >= r->pages ||
		    v[i].len > r->pages - v[i].start)
			return false;
		end = v[i].start + v[i].len;
	}
	return true;
}

static int set_map(struct rly *r, struct rly_holder *h,
		   const struct rly_vrun *v, size_t nv)
{
	struct rly_vrun *copy = NULL;

	if (!vruns_ok(r, v, nv))
		return -EINVAL;
	if (nv) {
		copy = malloc(nv * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, v, nv * sizeof(*copy));
	}
	free(h->v);
	h->v = copy;
	h->nv = nv;
	return 0;
}

int rly_holder_add(struct rly *r, uint64_t id, const struct rly_vrun *v,
		   size_t nv, unsigned *idx)
{
	struct rly_holder *h;
	int ret;

	if (r->nh >= RLY_HOLDERS_MAX)
		return -ENOSPC;
	if (!r->want) {
		/* from now on stale copies exist: keep what each page needs */
		r->want = malloc(r->pages * sizeof(*r->want));
		if (!r->want)
			return -ENOMEM;
		for (uint64_t p = 0; p < r->pages; p++)
			r->want[p] = r->gen_max;
	}
	h = &r->h[r->nh];
	memset(h, 0, sizeof(*h));
	ret = set_map(r, h, v, nv);
	if (ret)
		return ret;
	h->id = id;
	h->used = true;
	*idx = r->nh++;
	r->replan = true;
	return 0;
}

int rly_holder_map(struct rly *r, unsigned idx, const struct rly_vrun *v,
		   size_t nv)
{
	if (idx == RLY_SOURCE || idx >= r->nh)
		return -EINVAL;
	return set_map(r, &r->h[idx], v, nv);
}

int rly_holder_down(struct rly *r, unsigned idx, bool down)
{
	if (idx >= r->nh)
		return -EINVAL;
	r->h[idx].down = down;
	r->replan = true;
	return 0;
}

/* Append [start, end) to v (of *nv runs, room for cap), merging. */
static void vrun_put(struct rly_vrun *v, size_t *nv, uint64_t start,
		     uint64_t end)
{
	if (*nv && v[*nv - 1].start + v[*nv - 1].len == start)
		v[*nv - 1].len += end - start;
	else
		v[(*nv)++] =
			(struct rly_vrun){ .start = start, .len = end - start };
}

int rly_holder_current(const struct rly *r, unsigned idx, struct rly_vrun **v,
		       size_t *nv)
{
	const struct rly_holder *h;
	struct rly_vrun *out;
	size_t cap = 0, n = 0;

	*v = NULL;
	*nv = 0;
	if (idx == RLY_SOURCE || idx >= r->nh || !r->h[idx].used)
		return -EINVAL;
	h = &r->h[idx];
	/* a run splits at most at every other page of it */
	for (size_t i = 0; i < h->nv; i++)
		cap += (h->v[i].len + 1) / 2;
	if (!cap)
		return 0;
	out = malloc(cap * sizeof(*out));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < h->nv; i++) {
		uint64_t p = h->v[i].start, end = p + h->v[i].len;

		while (p < end) {
			uint64_t e = rly_serve_end(r, idx, p, end);

			if (e > p)
				vrun_put(out, &n, p, e);
			p = e + 1; /* e is not served (or the end) */
		}
	}
	*v = out;
	*nv = n;
	return 0;
}

int rly_holder_info(const struct rly *r, unsigned idx,
		    struct rly_holder_info *out)
{
	const struct rly_holder *h;

	if (idx >= r->nh)
		return -EINVAL;
	h = &r->h[idx];
	*out = (struct rly_holder_info){
		.id = h->id,
		.bw = h->bw,
		.inflight = h->inflight,
		.inflight_pages = h->inflight_pages,
		.pages_done = h->pages_done,
		.fails = h->fails,
		.down = h->down,
	};
	return 0;
}

int rly_want(struct rly *r, uint64_t start, uint64_t n, uint64_t gen)
{
	if (!n || start >= r->pages || n > r->pages - start)
		return -EINVAL;
	if (gen > r->gen_max)
		r->gen_max = gen;
	if (r->want)
		for (uint64_t p = start; p < start + n; p++)
			r->want[p] = gen;
	return 0;
}

/* The index of the run of h's copy that holds p, or h->nv. */
static size_t vrun_of(const struct rly_holder *h, uint64_t p)
{
	size_t lo = 0, hi = h->nv;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p < h->v[mid].start)
			hi = mid;
		else if (p - h->v[mid].start >= h->v[mid].len)
			lo = mid + 1;
		else
			return mid;
	}
	return h->nv;
}

static uint64_t want_of(const struct rly *r, uint64_t p)
{
	return r->want ? r->want[p] : r->gen_max;
}

bool rly_serves(const struct rly *r, unsigned hi, uint64_t p)
{
	const struct rly_holder *h = &r->h[hi];
	size_t i;

	if (hi == RLY_SOURCE)
		return true;
	i = vrun_of(h, p);
	return i < h->nv && h->v[i].gen >= want_of(r, p);
}

uint64_t rly_serve_end(const struct rly *r, unsigned hi, uint64_t p,
		       uint64_t end)
{
	const struct rly_holder *h = &r->h[hi];
	size_t i;

	if (hi == RLY_SOURCE)
		return end;
	i = vrun_of(h, p);
	for (; p < end; p++) {
		if (i < h->nv && p - h->v[i].start >= h->v[i].len)
			i++;
		if (i >= h->nv || p < h->v[i].start ||
		    h->v[i].gen < want_of(r, p))
			return p;
	}
	return end;
}

double rly_bw(const struct rly *r, unsigned hi)
{
	double sum = 0;
	unsigned n = 0;

	if (r->h[hi].bw)
		return (double)r->h[hi].bw;
	for (unsigned i = 0; i < r->nh; i++)
		if (r->h[i].used && r->h[i].bw) {
			sum += (double)r->h[i].bw;
			n++;
		}
	return n ? sum / n : 1.0;
}

bool rly_up(const struct rly *r, unsigned hi)
{
	return hi < r->nh && r->h[hi].used && !r->h[hi].down;
}

bool rly_read_ok(const struct rly *r, const struct rly_read *rd)
{
	return rd->holder < r->nh && r->h[rd->holder].used && rd->pages &&
	       rd->pages <= RLY_RUN_MAX && rd->start < r->pages &&
	       rd->pages <= r->pages - rd->start;
}

/* End a read in flight at its holder. -EINVAL: none such in flight. */
static int end_read(struct rly *r, const struct rly_read *rd)
{
	struct rly_holder *h;

	if (!rly_read_ok(r, rd))
		return -EINVAL;
	h = &r->h[rd->holder];
	if (!h->inflight || h->inflight_pages < rd->pages)
		return -EINVAL;
	h->inflight--;
	h->inflight_pages -= rd->pages;
	return 0;
}

int rly_done(struct rly *r, const struct rly_read *rd, uint64_t now)
{
	struct rly_holder *h;
	uint64_t from;
	double sample;
	int ret = end_read(r, rd);

	if (ret)
		return ret;
	h = &r->h[rd->holder];
	h->pages_done += rd->pages;
	/*
	 * Reads queue at a holder: the time this one took there is from its
	 * post or the previous completion, whichever is later.
	 */
	from = rd->t_post > h->last_done ? rd->t_post : h->last_done;
	h->last_done = now;
	if (now <= from)
		return 0;
	sample = (double)rd->pages * RLY_PAGE_SIZE * 1e9 / (double)(now - from);
	if (sample > 1e15)
		sample = 1e15;
	h->bw = h->bw ? (uint64_t)((3.0 * (double)h->bw + sample) / 4)
		      : (uint64_t)sample;
	if (!h->bw)
		h->bw = 1;
	return 0;
}

int rly_fail(struct rly *r, const struct rly_read *rd, bool requeue)
{
	int ret = end_read(r, rd);

	if (ret)
		return ret;
	r->h[rd->holder].fails++;
	if (rd->holder != RLY_SOURCE) {
		r->h[rd->holder].down = true;
		r->replan = true;
	}
	if (requeue)
		for (uint64_t p = rd->start; p < rd->start + rd->pages; p++)
			fy_bit_set(r->need, p);
	return 0;
}
