// SPDX-License-Identifier: MIT
/*
 * Holders beyond the source, both ways (docs/protocol.md, "Retarget"):
 *
 * - As the new destination of a retarget, the thread pulls from relays:
 *   each relay's HOLDER_MAP gets an endpoint and a place in the pull
 *   scheduler, which sends it the runs its copy is current for. A relay
 *   that fails a read is marked down for good and its runs go back to the
 *   source; nothing else about the migration changes.
 * - As the old destination, the thread becomes a relay: on RETARGET it
 *   stops posting reads, lets those in flight land, registers its copy
 *   for the new destination's reads and sends the source its map. It then
 *   only waits: the source's ABORT releases it.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fabric/fabric.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"

_Static_assert(sizeof(struct rly_vrun) == sizeof(struct proto_genrun) &&
		       offsetof(struct rly_vrun, gen) ==
			       offsetof(struct proto_genrun, gen),
	       "a HOLDER_MAP's runs are the scheduler's");

int mig_dst_rkey(struct mig_dst *d, const struct proto_holder_region *r,
		 struct fab_rkey *rk)
{
	struct fab_keyrun **t, *tab;
	int ret = mig_rkey_of(r, rk, &tab);

	if (ret || !tab)
		return ret;
	t = realloc(d->keytabs, (d->nkeytabs + 1) * sizeof(*t));
	if (!t) {
		free(tab);
		return -ENOMEM;
	}
	d->keytabs = t;
	t[d->nkeytabs++] = tab;
	return 0;
}

int mig_dst_add_relay(struct mig_dst *d, const struct proto_holder_map *h)
{
	const struct proto_holder_region *r = &h->regions[0];
	struct fab_addr a = { .len = h->addr_len };
	struct mig_holder *ho;
	uint64_t pages = 0;
	unsigned idx;
	int ret;

	if (d->sm->state != MIG_DST_PRECOPY) {
		dst_info(d, "holder map of %s after pre-copy: not used",
			 h->node);
		return 0;
	}
	if (h->nregions != 1 || r->len != d->pages * FY_PAGE_SIZE ||
	    h->page_size != FY_PAGE_SIZE) {
		dst_err(d, "holder map of %s does not match our RAM: not used",
			h->node);
		return 0;
	}
	for (unsigned i = 0; i < d->nhold; i++)
		if (!strcmp(d->hold[i].node, h->node)) {
			dst_err(d, "a second holder map of %s: not used",
				h->node);
			return 0;
		}
	ret = rly_holder_add(d->rly, d->nhold, (const struct rly_vrun *)r->gens,
			     r->ngens, &idx);
	if (ret) {
		dst_err(d,
			"holder map of %s not usable (%s): pulling from the "
			"source only",
			h->node, strerror(-ret));
		return 0;
	}
	ho = &d->hold[idx];
	memset(ho, 0, sizeof(*ho));
	snprintf(ho->node, sizeof(ho->node), "%s", h->node);
	if (mig_dst_rkey(d, r, &ho->rk))
		return mig_dst_fail(d, "out of memory");
	d->nhold = FY_MAX(d->nhold, idx + 1);
	memcpy(a.bytes, h->addr, h->addr_len);
	ho->addr = a;
	ret = fab_ep_connect(d->fab, &a, &ho->ep);
	if (ret) {
		ho->ep = NULL;
		rly_holder_down(d->rly, idx, true);
		dst_err(d, "cannot reach relay %s: %s", h->node,
			strerror(-ret));
		return 0;
	}
	for (size_t i = 0; i < r->ngens; i++)
		pages += r->gens[i].len;
	dst_info(d, "relay %s: %" PRIu64 " pages of its copy may serve us",
		 h->node, pages);
	return 0;
}

struct fab_ep *mig_dst_holder_ep(struct mig_dst *d, unsigned h,
				 const struct fab_rkey **rk)
{
	if (h == RLY_SOURCE) {
		*rk = &d->rk;
		return d->ep;
	}
	*rk = &d->hold[h].rk;
	return d->hold[h].ep;
}

void mig_dst_relay_failed(struct mig_dst *d, unsigned h, int status)
{
	struct rly_holder_info hi;

	/* rly_fail() marked it down: the first failure says so */
	if (!rly_holder_info(d->rly, h, &hi) && hi.fails == 1)
		dst_err(d,
			"a read from relay %s failed (%s): its runs come from "
			"the source now",
			d->hold[h].node, strerror(-status));
}

void mig_dst_relays_close(struct mig_dst *d)
{
	for (unsigned i = RLY_SOURCE + 1; i < d->nhold; i++) {
		if (d->hold[i].ep)
			fab_ep_close(d->hold[i].ep);
		d->hold[i].ep = NULL;
	}
}

bool mig_dst_holder_bytes(struct mig_dst *d, struct proto_progress *p)
{
	unsigned n = d->nhold;

	if (!n)
		return true;
	p->holders = calloc(n + 1, sizeof(*p->holders));
	if (!p->holders)
		return false;
	for (unsigned i = 0; i < n; i++) {
		snprintf(p->holders[i].node, sizeof(p->holders[i].node), "%s",
			 d->hold[i].node);
		p->holders[i].bytes = d->hold[i].bytes;
	}
	/* our kept copy: read here, not over the network */
	if (d->local_bytes && n < PROTO_HOLDERS_MAX) {
		snprintf(p->holders[n].node, sizeof(p->holders[n].node), "%s",
			 d->n->cfg.name);
		p->holders[n++].bytes = d->local_bytes;
	}
	p->nholders = n;
	return true;
}

/* The pages of h's runs as a bitmap, their lowest generation in *gen. */
static uint64_t *map_pages(struct mig_dst *d, const struct proto_holder_map *h,
			   uint64_t *gen)
{
	const struct proto_holder_region *r = &h->regions[0];
	uint64_t *bm = fy_bitmap_alloc(d->pages);

	*gen = UINT64_MAX;
	for (size_t i = 0; bm && i < r->ngens; i++) {
		fy_runs_to_bitmap(&(struct fy_run){ r->gens[i].start,
						    r->gens[i].len },
				  1, bm, d->pages);
		*gen = FY_MIN(*gen, r->gens[i].gen);
	}
	return bm;
}

int mig_dst_kept_map(struct mig_dst *d, const struct proto_holder_map *h)
{
	const struct proto_holder_region *r = &h->regions[0];
	struct mig_ref *ref;
	uint64_t *bm, gen;

	if (h->nregions != 1 || r->len != d->pages * FY_PAGE_SIZE ||
	    h->page_size != FY_PAGE_SIZE) {
		dst_err(d, "holder map of %s does not match our RAM: not used",
			h->node);
		return 0;
	}
	bm = map_pages(d, h, &gen);
	if (!bm)
		return mig_dst_fail(d, "out of memory");
	if (!strcmp(h->node, d->n->cfg.name)) {
		/* the VM comes back: what we kept, if it is that copy */
		if ((!d->local_map && !d->adopted) || r->key != d->local_key ||
		    d->local_cur || d->sm->state != MIG_DST_PRECOPY) {
			/* at the commit the source passes on what it knew */
			if (d->sm->state == MIG_DST_PRECOPY)
				dst_info(d, "our kept copy is gone: all "
					    "pulled");
			free(bm);
			return 0;
		}
		d->local_cur = bm;
		d->local_gen = gen;
		dst_info(d, "our kept copy is current for %" PRIu64 " pages",
			 fy_bitmap_count(bm, d->pages));
		return 0;
	}
	if (d->sm->state != MIG_DST_READY || d->nrefs == ARRAY_SIZE(d->refs)) {
		free(bm);
		return 0;
	}
	ref = &d->refs[d->nrefs++];
	snprintf(ref->node, sizeof(ref->node), "%s", h->node);
	ref->addr_len = h->addr_len;
	memcpy(ref->addr, h->addr, h->addr_len);
	ref->key = r->key;
	ref->base = r->base;
	ref->cur = bm;
	if (r->keys) {
		ref->keys = malloc(FY_MAX(r->nkeys, 1) * sizeof(*ref->keys));
		if (!ref->keys)
			return mig_dst_fail(d, "out of memory");
		memcpy(ref->keys, r->keys, r->nkeys * sizeof(*ref->keys));
		ref->nkeys = r->nkeys;
	}
	return 0;
}

int mig_dst_kept_src(struct mig_dst *d)
{
	struct proto_holder_region reg;
	struct fy_run all = { .start = 0, .len = d->pages };
	struct mig_ref *ref;
	uint64_t *bm;

	if (!mig_dst_has(d, MIG_SM_PC) || d->nrefs == ARRAY_SIZE(d->refs)) {
		dst_info(d, "KEPT outside post-copy: not used");
		return 0;
	}
	bm = fy_bitmap_alloc(d->pages);
	if (!bm || fy_runs_to_bitmap(&all, 1, bm, d->pages)) {
		free(bm);
		return mig_dst_fail(d, "out of memory");
	}
	ref = &d->refs[d->nrefs++];
	snprintf(ref->node, sizeof(ref->node), "%s", d->hold[RLY_SOURCE].node);
	ref->addr_len = d->src_addr.len;
	memcpy(ref->addr, d->src_addr.bytes, d->src_addr.len);
	ref->cur = bm;
	if (mig_region_of(&reg, &d->rk, d->pages))
		return mig_dst_fail(d, "out of memory");
	ref->key = reg.key;
	ref->base = reg.base;
	ref->keys = reg.keys; /* the ref's now */
	ref->nkeys = reg.nkeys;
	dst_info(d, "%s keeps its copy of the VM", ref->node);
	return 0;
}

void mig_dst_arrival(struct mig_dst *d)
{
	const uint64_t *bm;
	uint64_t gen, dirty;
	int ret = mig_vm_harvest(d->n, d->kc, &bm, &gen, &dirty);

	d->tracked = !ret;
	if (ret)
		dst_err(d,
			"cannot clear the dirty log (%s): copies kept "
			"elsewhere will not be used",
			strerror(-ret));
}

bool mig_dst_local_page(struct mig_dst *d, uint64_t p, uint64_t gen)
{
	if (!d->local_cur || gen > d->local_gen ||
	    !fy_bit_test(d->local_cur, p) || fy_bit_test(d->need, p) ||
	    mig_dst_has(d, MIG_SM_PC))
		return false;
	if (!d->adopted) /* adopted: the page is in place */
		memcpy(d->map + p * FY_PAGE_SIZE,
		       d->local_map + p * FY_PAGE_SIZE, FY_PAGE_SIZE);
	d->local_bytes += FY_PAGE_SIZE;
	return true;
}

int mig_dst_trim(struct mig_dst *d)
{
	int fd = mig_vm_layout(d->n, d->kc)->regions[0].memfd;
	int ret = mig_memfd_punch(fd, d->seen, d->pages, false);

	if (ret)
		return mig_dst_fail(d,
				    "cannot drop the stale pages of the "
				    "adopted copy: %s",
				    strerror(-ret));
	return 0;
}

struct proto_msg *mig_dst_map_msg(struct mig_dst *d, const struct fab_mr *mr)
{
	struct proto_msg *h = calloc(1, sizeof(*h));
	struct proto_holder_region *r = calloc(1, sizeof(*r));
	struct fab_rkey rk;

	if (!h || !r) {
		free(h);
		free(r);
		return NULL;
	}
	h->type = PROTO_HOLDER_MAP;
	h->holder_map.regions = r;
	h->holder_map.nregions = 1;
	h->holder_map.mig = d->id;
	snprintf(h->holder_map.node, sizeof(h->holder_map.node), "%s",
		 d->n->cfg.name);
	h->holder_map.addr_len = d->n->fab_addr_len;
	memcpy(h->holder_map.addr, d->n->fab_addr_raw, d->n->fab_addr_len);
	h->holder_map.page_size = FY_PAGE_SIZE;
	fab_mr_rkey(mr, &rk);
	if (mig_region_of(r, &rk, d->pages)) {
		proto_msg_free(h); /* frees r too */
		return NULL;
	}
	return h;
}

/*
 * Our map: every page announced that we do not still need, at generation
 * d->gen, those registered first where registering pins (a page never
 * announced is a hole at the source, and pinning would fault it in here).
 * NULL: out of memory, or *err.
 */
static struct proto_msg *relay_map(struct mig_dst *d, int *err)
{
	uint64_t *held = fy_bitmap_alloc(d->pages);
	struct proto_holder_region *r;
	struct proto_msg *h = NULL;
	struct fy_run *runs = NULL;
	size_t nr = 0;

	*err = -ENOMEM;
	if (!held)
		goto fail;
	/* (in adopted RAM a page never announced may be stale, too) */
	for (uint64_t p = 0; p < d->pages; p++)
		if (!fy_bit_test(d->need, p) && fy_bit_test(d->seen, p))
			fy_bit_set(held, p);
	if (fy_runs_from_bitmap(held, d->pages, &runs, &nr))
		goto fail;
	*err = mig_mr_grow(d->rmr, runs, nr);
	if (*err < 0)
		goto fail;
	*err = -ENOMEM;
	h = mig_dst_map_msg(d, d->rmr);
	if (!h)
		goto fail;
	r = h->holder_map.regions;
	/* a copy in more pieces than a message holds: its first ones */
	r->ngens = FY_MIN(nr, PROTO_RUNS_MAX - r->nkeys);
	r->gens = calloc(FY_MAX(r->ngens, 1), sizeof(*r->gens));
	if (!r->gens)
		goto fail;
	for (size_t i = 0; i < r->ngens; i++)
		r->gens[i] = (struct proto_genrun){ runs[i].start, runs[i].len,
						    d->gen };
	free(runs);
	free(held);
	return h;
fail:
	proto_msg_free(h);
	free(runs);
	free(held);
	return NULL;
}

int mig_dst_relay_begin(struct mig_dst *d)
{
	struct proto_msg *h;
	int ret;

	/* on the node's domain: its address is the one our map gives */
	ret = fab_mr_reg(d->n->fab, d->map, d->pages * FY_PAGE_SIZE,
			 FAB_ACCESS_READ | FAB_ACCESS_HOLES, &d->rmr);
	if (ret)
		return mig_dst_fail(d,
				    "cannot register our copy for a relay: "
				    "%s",
				    strerror(-ret));
	h = relay_map(d, &ret);
	if (!h)
		return mig_dst_fail(d,
				    "cannot register our copy for a relay: "
				    "%s",
				    strerror(-ret));
	if (mig_dst_to(d, MIG_DST_RELAY, "RETARGET")) {
		proto_msg_free(h);
		return mig_dst_fail(d, "internal error");
	}
	dst_info(d,
		 "relay: pulls stopped, %" PRIu64 " pages served until "
		 "the source releases them",
		 d->pages - d->pending);
	mig_dst_out(d, h);
	return 0;
}
