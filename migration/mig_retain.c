// SPDX-License-Identifier: MIT
/*
 * Retained copies (mig_retain.h; docs/migration.md, "Retained copies").
 *
 *   A -> B, pre-copy, A keeps its copy (holder_retention):
 *     at A's commit   A -> B  HOLDER_MAP(m, A, all pages)   "we keep this"
 *                     A -> B  HOLDER_MAP(m, X, ...)         each copy A knew
 *                             of, less the pages changed while on A
 *     B, before RESUME: a harvest clears the VM's dirty log, so from then
 *     on it says what the guest changed on B
 *     at completion   A keeps its mapping and registration; B remembers
 *                     the VM's arrival with the copies it was told of
 *   B -> C later, round 0: B offers C each copy, for the pages changed
 *     neither before (its map) nor on B (the dirty log since arrival), at
 *     round 0's generation; C pulls those from the copy's holder or from
 *     B. C == A (the VM comes back): A copies them from what it kept.
 *
 * A copy is dropped past holder_retention_age_s, to make room within
 * holder_retention (the oldest first), on `ferry release`, or when its
 * VM comes back. Dropping deregisters it first: a peer that still reads
 * gets an error, never other data, and pulls from the source.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "fabric/fabric.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_int.h"
#include "migration/mig_retain.h"

static struct mig_held *held(struct mig_env *n)
{
	if (!n->held)
		n->held = calloc(1, sizeof(*n->held));
	return n->held;
}

static struct mig_arrived *arrived(struct mig_env *n, const char *vm)
{
	struct mig_held *h = held(n);

	for (int i = 0; h && i < MIG_ARRIVED_MAX; i++)
		if (h->arr[i].used && !strcmp(h->arr[i].vm, vm))
			return &h->arr[i];
	return NULL;
}

void mig_ref_free(struct mig_ref *r)
{
	free(r->cur);
	r->cur = NULL;
	free(r->keys);
	r->keys = NULL;
	r->nkeys = 0;
}

static void arrived_drop(struct mig_arrived *a)
{
	if (!a)
		return;
	for (unsigned i = 0; i < a->nrefs; i++)
		mig_ref_free(&a->refs[i]);
	free(a->changed);
	memset(a, 0, sizeof(*a));
}

static void kept_drop(struct mig_kept *k, const char *why)
{
	pr_info("retained copy of %s (%" PRIu64 " MiB) dropped: %s", k->vm,
		k->bytes >> 20, why);
	uint64_t keep = fab_mr_serve_late_ns(k->mr);

	/* first: a peer's read fails from now on, it never sees other data */
	fab_mr_dereg(k->mr);
	mig_release_bg(k->map, k->pages * FY_PAGE_SIZE, NULL, keep);
	if (k->memfd >= 0)
		close(k->memfd);
	memset(k, 0, sizeof(*k));
}

uint64_t mig_lineage_for(struct mig_env *n, const char *vm, pid_t pid)
{
	struct mig_arrived *a = arrived(n, vm);
	uint64_t l = 0;

	if (a && a->pid == pid && pid > 0)
		return a->lineage;
	/* another VM of that name: what we knew is not about it */
	arrived_drop(a);
	while (!l)
		if (getrandom(&l, sizeof(l), 0) != sizeof(l))
			l = fy_now_ns();
	return l;
}

void mig_arrived_changed(struct mig_env *n, const char *vm, const uint64_t *bm,
			 uint64_t pages)
{
	struct mig_arrived *a = arrived(n, vm);

	if (!a || !a->changed)
		return;
	if (a->pages != pages) {
		/* not the shape it came with: trust nothing */
		free(a->changed);
		a->changed = NULL;
		return;
	}
	for (uint64_t w = 0; w < (pages + 63) / 64; w++)
		a->changed[w] |= bm[w];
}

/*
 * A HOLDER_MAP of node's copy (addr; key, base and key runs as in at) for
 * the pages of cur not in changed (NULL: none changed), at gen, to m's
 * destination.
 */
static int send_copy(struct mig *m, const char *node, const uint8_t *addr,
		     uint32_t addr_len, const struct proto_holder_region *at,
		     const uint64_t *cur, const uint64_t *changed, uint64_t gen)
{
	struct proto_msg h = { .type = PROTO_HOLDER_MAP };
	struct proto_holder_region r = *at;
	uint64_t *bm = fy_bitmap_alloc(m->pages);
	struct fy_run *runs = NULL;
	size_t nr = 0;
	int ret = -ENOMEM;

	if (!bm)
		return ret;
	for (uint64_t w = 0; w < (m->pages + 63) / 64; w++)
		bm[w] = (cur ? cur[w] : ~0ULL) & ~(changed ? changed[w] : 0);
	ret = fy_runs_from_bitmap(bm, m->pages, &runs, &nr);
	free(bm);
	if (ret)
		return ret;
	r.gens = calloc(FY_MAX(nr, 1), sizeof(*r.gens));
	if (!r.gens) {
		free(runs);
		return -ENOMEM;
	}
	/* a copy in more pieces than a message holds: its first ones */
	r.ngens = FY_MIN(nr, PROTO_RUNS_MAX - r.nkeys);
	for (size_t i = 0; i < r.ngens; i++)
		r.gens[i] = (struct proto_genrun){ runs[i].start, runs[i].len,
						   gen };
	r.id = 0;
	r.len = m->pages * FY_PAGE_SIZE;
	h.holder_map.mig = m->id;
	snprintf(h.holder_map.node, sizeof(h.holder_map.node), "%s", node);
	h.holder_map.addr_len = addr_len;
	memcpy(h.holder_map.addr, addr, addr_len);
	h.holder_map.page_size = FY_PAGE_SIZE;
	h.holder_map.nregions = 1;
	h.holder_map.regions = &r;
	ret = mig_send(m, &h);
	if (!ret)
		mig_info(m, "%s keeps a copy: %" PRIu64 " pages of it current",
			 node, fy_runs_pages(runs, r.ngens));
	free(r.gens);
	free(runs);
	return ret;
}

/* The copy ref names, less the pages changed since, to m's destination. */
static int ref_send(struct mig *m, const struct mig_ref *ref,
		    const uint64_t *changed)
{
	struct proto_holder_region at = { .key = ref->key,
					  .base = ref->base,
					  .keys = ref->keys,
					  .nkeys = ref->nkeys };

	return send_copy(m, ref->node, ref->addr, ref->addr_len, &at, ref->cur,
			 changed, m->gen);
}

int mig_refs_send(struct mig *m)
{
	struct mig_arrived *a = arrived(m->n, m->vm);
	int ret = 0;

	if (!a || !a->changed || a->pages != m->pages)
		return 0;
	for (unsigned i = 0; !ret && i < a->nrefs; i++)
		ret = ref_send(m, &a->refs[i], a->changed);
	return ret;
}

/* Bytes of the copy m would keep: the pages it ever announced. */
static uint64_t copy_bytes(const struct mig *m)
{
	uint64_t n = 0;

	for (uint64_t p = 0; p < m->pages; p++)
		n += fy_bit_test(m->sent_bm, p);
	return n * FY_PAGE_SIZE;
}

bool mig_retain_wanted(struct mig *m)
{
	const struct mig_conf *cfg = &m->n->cfg;

	if (!cfg->retain_bytes || m->o.delta || !held(m->n))
		return false;
	if (copy_bytes(m) > cfg->retain_bytes) {
		mig_info(m, "not kept: its copy is larger than "
			    "holder_retention");
		return false;
	}
	return true;
}

void mig_retain_announce(struct mig *m)
{
	struct mig_arrived *a = arrived(m->n, m->vm);
	struct proto_holder_region at;
	struct fab_rkey rk;

	m->retain = mig_retain_wanted(m);
	if (!m->retain)
		return;
	/* the copy the destination is about to run from, all of it */
	fab_mr_rkey(m->mr, &rk);
	m->retain = !mig_region_of(&at, &rk, m->pages) &&
		    !send_copy(m, m->n->cfg.name, m->n->fab_addr_raw,
			       m->n->fab_addr_len, &at, NULL, NULL, m->gen);
	free(at.keys);
	for (unsigned i = 0; m->retain && a && a->changed && i < a->nrefs; i++)
		ref_send(m, &a->refs[i], a->changed);
}

/* Room for bytes more within holder_retention: drop the oldest. */
static void make_room(struct mig_env *n, uint64_t bytes)
{
	struct mig_held *h = n->held;

	for (;;) {
		struct mig_kept *old = NULL;
		uint64_t used = 0;

		for (int i = 0; i < MIG_KEPT_MAX; i++) {
			struct mig_kept *k = &h->kept[i];

			if (!k->used)
				continue;
			used += k->bytes;
			if (!k->busy && (!old || k->t0 < old->t0))
				old = k;
		}
		if (used + bytes <= n->cfg.retain_bytes || !old)
			return;
		kept_drop(old, "holder_retention is full");
	}
}

void mig_retain_keep(struct mig *m)
{
	struct mig_held *h = held(m->n);
	struct mig_kept *k = NULL;

	if (m->vmp)
		arrived_drop(arrived(m->n, m->vm));
	if (!m->retain || !h)
		return;
	make_room(m->n, copy_bytes(m));
	for (int i = 0; i < MIG_KEPT_MAX && !k; i++)
		if (!h->kept[i].used)
			k = &h->kept[i];
	if (!k) {
		mig_err(m, "not kept: %d copies kept already", MIG_KEPT_MAX);
		return;
	}
	k->used = true;
	snprintf(k->vm, sizeof(k->vm), "%s", m->vm);
	snprintf(k->to, sizeof(k->to), "%s", m->peer->name);
	k->lineage = m->lineage;
	k->pages = m->pages;
	k->bytes = copy_bytes(m);
	k->t0 = mig_now(m->n);
	/* ours now: the VM exits, its pages stay while mapped */
	k->map = m->map;
	k->mr = m->mr;
	m->map = NULL;
	m->mr = NULL;
	/* its memfd too: a return runs on these pages, no copy */
	k->memfd = -1;
	if (m->vmp && m->vmp->kc)
		k->memfd =
			fcntl(mig_vm_layout(m->n, m->vmp->kc)->regions[0].memfd,
			      F_DUPFD_CLOEXEC, 3);
	mig_info(m, "our copy is kept (%" PRIu64 " MiB) for %u s at most",
		 k->bytes >> 20, m->n->cfg.retain_age_s);
}

void mig_arrive(struct mig *m, struct mig_ref *refs, unsigned nrefs,
		bool tracked, pid_t pid)
{
	struct mig_held *h = held(m->n);
	struct mig_arrived *a = arrived(m->n, m->vm);

	for (int i = 0; h && i < MIG_KEPT_MAX; i++)
		if (h->kept[i].used && h->kept[i].lineage == m->lineage)
			kept_drop(&h->kept[i], "its VM came back");
	for (int i = 0; h && !a && i < MIG_ARRIVED_MAX; i++)
		if (!h->arr[i].used)
			a = &h->arr[i];
	arrived_drop(a);
	if (a) {
		a->used = true;
		snprintf(a->vm, sizeof(a->vm), "%s", m->vm);
		a->pid = pid;
		a->lineage = m->lineage;
		a->pages = m->pages;
		a->changed = tracked ? fy_bitmap_alloc(m->pages) : NULL;
	}
	for (unsigned i = 0; i < nrefs; i++) {
		if (a && a->changed && a->nrefs < MIG_REFS_MAX &&
		    strcmp(refs[i].node, m->n->cfg.name)) {
			a->refs[a->nrefs++] = refs[i];
			continue;
		}
		mig_ref_free(&refs[i]);
	}
}

struct mig_kept *mig_kept_take(struct mig_env *n, uint64_t lineage)
{
	struct mig_held *h = held(n);

	for (int i = 0; h && i < MIG_KEPT_MAX; i++)
		if (h->kept[i].used && !h->kept[i].busy &&
		    h->kept[i].lineage == lineage) {
			h->kept[i].busy = true;
			return &h->kept[i];
		}
	return NULL;
}

void mig_kept_put(struct mig_kept *k)
{
	if (k)
		k->busy = false;
}

int mig_kept_adopt(struct mig_kept *k)
{
	int fd = k->memfd;

	if (fd < 0)
		return -1;
	k->memfd = -1;
	kept_drop(k, "its VM comes back and runs on it");
	return fd;
}

void mig_held_tick(struct mig_env *n, uint64_t now)
{
	uint64_t age = n->cfg.retain_age_s * 1000000000ULL;

	for (int i = 0; n->held && i < MIG_KEPT_MAX; i++) {
		struct mig_kept *k = &n->held->kept[i];

		if (k->used && !k->busy && now - k->t0 > age)
			kept_drop(k, "holder_retention_age_s passed");
	}
}

int mig_release_kept(struct mig_env *n, const char *vm, char *err,
		     size_t errlen)
{
	int released = 0;

	for (int i = 0; n->held && i < MIG_KEPT_MAX; i++) {
		struct mig_kept *k = &n->held->kept[i];

		if (!k->used || strcmp(k->vm, vm))
			continue;
		if (k->busy) {
			snprintf(err, errlen,
				 "the copy of %s is being read by its "
				 "incoming migration",
				 vm);
			return -EBUSY;
		}
		kept_drop(k, "ferry release");
		released++;
	}
	return released;
}

void mig_held_close(struct mig_env *n)
{
	if (!n->held)
		return;
	for (int i = 0; i < MIG_KEPT_MAX; i++)
		if (n->held->kept[i].used)
			kept_drop(&n->held->kept[i], "ferryd shut down");
	for (int i = 0; i < MIG_ARRIVED_MAX; i++)
		arrived_drop(&n->held->arr[i]);
	free(n->held);
	n->held = NULL;
}

/* One entry of `ferry holders`. */
static void pack_holder(msgpack_packer *pk, const char *node, const char *kind,
			uint64_t current, uint64_t pages, double age_s)
{
	msgpack_pack_map(pk, 5);
	proto_mp_pack_kv_str(pk, "node", node);
	proto_mp_pack_kv_str(pk, "kind", kind);
	proto_mp_pack_kv_u64(pk, "current_pages", current);
	proto_mp_pack_kv_u64(pk, "pages", pages);
	proto_mp_pack_str(pk, "age_s");
	msgpack_pack_double(pk, age_s);
}

/* Source m's relays that hold a copy, each packed if pk; their count. */
static unsigned relays_of(const struct mig *m, msgpack_packer *pk)
{
	unsigned k = 0;

	for (unsigned i = 0; i < m->nrelays; i++) {
		const struct mig_relay *rl = &m->relays[i];

		if (rl->state != MIG_RELAY_DRAINING &&
		    rl->state != MIG_RELAY_SERVING)
			continue;
		k++;
		if (pk)
			pack_holder(pk, rl->peer->name, "relay", 0, m->pages,
				    -1);
	}
	return k;
}

/* How many entries pack_holders() will write (msgpack wants it first). */
static unsigned holders_of(struct mig_env *n, const char *vm, bool pack,
			   msgpack_packer *pk)
{
	struct mig_vm *v = mig_vm_find(n, vm, false);
	struct mig_arrived *a = arrived(n, vm);
	uint64_t now = mig_now(n);
	unsigned k = 0;

	if (v && v->kc) {
		uint64_t pages = mig_vm_layout(n, v->kc)->pages;

		k++;
		if (pack)
			pack_holder(pk, n->cfg.name, "running", pages, pages,
				    0);
	}
	for (unsigned i = 0; a && a->changed && i < a->nrefs; i++) {
		uint64_t cur = 0;

		for (uint64_t w = 0; w < (a->pages + 63) / 64; w++)
			cur += __builtin_popcountll(a->refs[i].cur[w] &
						    ~a->changed[w]);
		k++;
		if (pack)
			pack_holder(pk, a->refs[i].node, "retained", cur,
				    a->pages, -1);
	}
	for (int i = 0; n->held && i < MIG_KEPT_MAX; i++) {
		struct mig_kept *c = &n->held->kept[i];

		if (!c->used || strcmp(c->vm, vm))
			continue;
		k++;
		if (pack)
			pack_holder(pk, n->cfg.name, "retained", c->pages,
				    c->pages, (now - c->t0) / 1e9);
	}
	for (int i = 0; i < MIG_MAX; i++) {
		struct mig *m = n->migs[i];

		if (!m || mig_finished(m) || strcmp(m->vm, vm))
			continue;
		if (m->source) {
			k += relays_of(m, pack ? pk : NULL);
		} else {
			k++;
			if (pack)
				pack_holder(pk, n->cfg.name, "destination",
					    m->pages_valid, m->pages, -1);
		}
	}
	return k;
}

void mig_pack_holders(struct mig_env *n, const char *vm, msgpack_packer *pk)
{
	msgpack_pack_map(pk, 2);
	proto_mp_pack_kv_str(pk, "vm", vm);
	proto_mp_pack_str(pk, "holders");
	msgpack_pack_array(pk, holders_of(n, vm, false, NULL));
	holders_of(n, vm, true, pk);
}
