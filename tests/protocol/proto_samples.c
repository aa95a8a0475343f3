// SPDX-License-Identifier: MIT
/* Sample messages and a comparison for protocol tests (proto_samples.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_samples.h"

#define KEY "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"

static void *xcalloc(size_t n, size_t size)
{
	return calloc(n ? n : 1, size);
}

static void fill_hello(struct proto_hello *h, unsigned v)
{
	h->version = PROTO_VERSION;
	snprintf(h->node, sizeof(h->node), "%s", v == 1 ? "n" : "node-a");
	memcpy(h->pubkey, KEY, PROTO_KEY_LEN);
	if (v == 1)
		return; /* no fabric endpoint */
	snprintf(h->provider, sizeof(h->provider), "ofi:tcp;ofi_rxm");
	h->addr_len = v == 2 ? PROTO_ADDR_MAX : 16;
	for (unsigned i = 0; i < h->addr_len; i++)
		h->addr[i] = i * 7 + 1;
	if (v == 2)
		memset(h->node, 'x', PROTO_NAME_MAX);
}

static int fill_holder_map(struct proto_holder_map *h, unsigned v)
{
	size_t nr = v == 1 ? 0 : v == 2 ? 3 : 2;

	h->mig = v == 2 ? UINT64_MAX : 42;
	snprintf(h->node, sizeof(h->node), "holder-%u", v);
	h->addr_len = 6;
	memcpy(h->addr, "\x7f\0\0\x01\x1f\x90", 6);
	h->page_size = v == 2 ? 2u << 20 : 4096;
	h->nregions = nr;
	h->regions = xcalloc(nr, sizeof(*h->regions));
	if (!h->regions)
		return -1;
	for (size_t i = 0; i < nr; i++) {
		struct proto_holder_region *r = &h->regions[i];
		size_t ng = i == 1 ? 0 : v == 2 ? 40 : 3;

		r->id = i * 5;
		r->key = 0xabcdef00 + i;
		r->base = 0x7f0000000000ULL + i * (1ULL << 32);
		r->len = (uint64_t)h->page_size * (2000 + i);
		r->ngens = ng;
		r->gens = xcalloc(ng, sizeof(*r->gens));
		if (!r->gens)
			return -1;
		for (size_t j = 0; j < ng; j++) {
			r->gens[j].start = j * 50;
			r->gens[j].len = j + 1;
			r->gens[j].gen = j == 0 ? 0 : 1000000 + j;
		}
		/* registered in parts (one, or four), or all under r->key */
		if (i == 1)
			continue;
		r->nkeys = v == 2 ? 4 : 1;
		r->keys = xcalloc(r->nkeys, sizeof(*r->keys));
		if (!r->keys)
			return -1;
		for (size_t j = 0; j < r->nkeys; j++) {
			r->keys[j].start = j * 500;
			r->keys[j].pages = r->nkeys == 1 ? 2000 : 400;
			r->keys[j].key = 0x1234 + j;
			r->keys[j].base = r->base + j * 500 * h->page_size;
		}
	}
	return 0;
}

static int fill_prepare(struct proto_migrate_prepare *p, unsigned v)
{
	size_t nr = v == 2 ? PROTO_REGIONS_MAX : v == 1 ? 1 : 2;

	p->mig = 7 + v;
	snprintf(p->vm, sizeof(p->vm), "vm-%u", v);
	snprintf(p->mode, sizeof(p->mode), "%s",
		 v == 0	  ? "precopy"
		 : v == 1 ? "postcopy"
			  : "hybrid");
	p->page_size = v == 2 ? PROTO_PAGE_SIZE_MAX : 4096;
	p->vcpus = v == 2 ? PROTO_VCPUS_MAX : 2;
	snprintf(p->accel, sizeof(p->accel), "%s", v == 1 ? "user" : "kvm");
	p->lineage = v == 2 ? UINT64_MAX : 0x5eed0000ULL + v;
	p->nregions = nr;
	p->regions = xcalloc(nr, sizeof(*p->regions));
	if (!p->regions)
		return -1;
	for (size_t i = 0; i < nr; i++) {
		p->regions[i].id = nr - i;
		p->regions[i].pages =
			v == 2 ? PROTO_REGION_BYTES_MAX / PROTO_PAGE_SIZE_MAX
			       : 262144 + i;
	}
	return 0;
}

static int fill_dirty(struct proto_dirty_set *d, unsigned v)
{
	size_t n = v == 1 ? 0 : v == 2 ? 70000 : 5;

	d->mig = 3;
	d->gen = v == 2 ? 1ULL << 40 : 5;
	d->region = v;
	d->nruns = n;
	d->runs = xcalloc(n, sizeof(*d->runs));
	if (!d->runs)
		return -1;
	for (size_t i = 0; i < n; i++) {
		d->runs[i].start = i * 3 + (v == 2 ? 1ULL << 33 : 0);
		d->runs[i].len = 1 + i % 2;
	}
	if (v == 2) { /* reach the very last page */
		d->runs[n - 1].len = PROTO_PAGES_MAX - d->runs[n - 1].start;
	}
	return 0;
}

/* v 0: two holders, 1: none, 2: the most, the largest figures */
static int fill_progress(struct proto_progress *p, unsigned v)
{
	size_t n = v == 1 ? 0 : v == 2 ? PROTO_HOLDERS_MAX : 2;

	p->mig = 11;
	p->round = v == 2 ? UINT32_MAX : v;
	p->pages_total = v == 1 ? 0 : 262144;
	p->pages_valid = v == 1 ? 0 : 1000 * (v + 1);
	p->bytes = v == 2 ? UINT64_MAX : 4096000;
	p->nholders = n;
	p->holders = xcalloc(n, sizeof(*p->holders));
	if (!p->holders)
		return -1;
	for (size_t i = 0; i < n; i++) {
		snprintf(p->holders[i].node, sizeof(p->holders[i].node),
			 "host-%zu", i);
		p->holders[i].bytes = v == 2 ? UINT64_MAX - i : 4096 * i;
	}
	return 0;
}

static int fill_state(struct proto_state *s, unsigned v)
{
	size_t n = v == 1 ? 0 : v == 2 ? 70000 : 300;

	s->mig = 9;
	s->len = n;
	s->blob = n ? malloc(n) : NULL;
	if (n && !s->blob)
		return -1;
	for (size_t i = 0; i < n; i++)
		s->blob[i] = i * 31 + (i >> 8);
	return 0;
}

static int fill_verify(struct proto_verify *c, unsigned v)
{
	size_t n = v == 1 ? 1 : v == 2 ? 4096 : 300;

	c->mig = 16;
	c->region = v;
	c->start = v == 2 ? PROTO_PAGES_MAX - n : 1000;
	c->len = 8 * n;
	c->csums = malloc(c->len);
	if (!c->csums)
		return -1;
	for (size_t i = 0; i < c->len; i++)
		c->csums[i] = i * 13 + (i >> 8);
	return 0;
}

struct proto_msg *proto_sample(enum proto_type t, unsigned v)
{
	struct proto_msg *m = calloc(1, sizeof(*m));
	int rc = 0;

	if (!m)
		return NULL;
	m->type = t;
	switch (t) {
	case PROTO_HELLO:
		fill_hello(&m->hello, v);
		break;
	case PROTO_PING:
	case PROTO_PONG:
		m->ping.seq = v == 2 ? UINT64_MAX : v * 1000;
		m->ping.sent_ns = v == 1 ? 0 : 123456789012345ULL;
		break;
	case PROTO_HOLDER_MAP:
		rc = fill_holder_map(&m->holder_map, v);
		break;
	case PROTO_MIGRATE_PREPARE:
		rc = fill_prepare(&m->prepare, v);
		break;
	case PROTO_DIRTY_SET:
		rc = fill_dirty(&m->dirty, v);
		break;
	case PROTO_PROGRESS:
		rc = fill_progress(&m->progress, v);
		break;
	case PROTO_STATE:
		rc = fill_state(&m->state, v);
		break;
	case PROTO_VERIFY:
		rc = fill_verify(&m->verify, v);
		break;
	case PROTO_DELTA_SET:
		m->delta.mig = 17;
		m->delta.gen = v == 2 ? UINT64_MAX : v + 3;
		m->delta.region = v;
		m->delta.key = v == 1 ? 0 : 0xfeedbeef00ULL + v;
		m->delta.base = v == 2 ? UINT64_MAX - PROTO_DELTA_MAX
				       : 0x7f0000001000ULL;
		m->delta.pages = v == 2 ? PROTO_PAGES_MAX : v == 1 ? 1 : 300;
		m->delta.len = v == 2 ? PROTO_DELTA_MAX : v == 1 ? 16 : 300000;
		break;
	case PROTO_PC_STATS:
		m->pc_stats.mig = 18 + v;
		m->pc_stats.faults = v == 2 ? UINT64_MAX : 1000 * v;
		m->pc_stats.p50 = 30000 + v;
		m->pc_stats.p99 = 50000 + v;
		m->pc_stats.max = v == 2 ? UINT64_MAX : 900000;
		m->pc_stats.blocktime = 123456789ULL * v;
		m->pc_stats.prepaged = 77 * v;
		m->pc_stats.zero_pages = v;
		m->pc_stats.stalls = v;
		m->pc_stats.stall_ns = 2000000000ULL * v;
		m->pc_stats.stalled = v == 1;
		m->pc_stats.duration = v == 2 ? UINT64_MAX : 5 * v;
		break;
	case PROTO_SWITCHOVER:
	case PROTO_COMMIT:
	case PROTO_RESUMED:
	case PROTO_POSTCOPY:
	case PROTO_READY:
	case PROTO_RESUME:
	case PROTO_KEPT:
		m->switchover.mig = 12 + v;
		m->switchover.gen = v == 2 ? UINT64_MAX : v;
		break;
	case PROTO_ABORT:
		m->abort.mig = 13;
		if (v == 2)
			memset(m->abort.reason, 'r', PROTO_TEXT_MAX);
		else if (v == 0)
			snprintf(m->abort.reason, sizeof(m->abort.reason),
				 "destination ran out of memory: "
				 "\xc3\xa9t\xc3\xa9");
		break;
	case PROTO_RETARGET:
		m->retarget.mig = 14;
		snprintf(m->retarget.node, sizeof(m->retarget.node), "node-%c",
			 'b' + v);
		break;
	case PROTO_ERROR:
		m->error.mig = v == 1 ? 0 : 15;
		m->error.code = v == 2 ? 4095 : 71; /* EPROTO */
		snprintf(m->error.text, sizeof(m->error.text), "%s",
			 v == 1 ? "" : "unexpected DIRTY_SET in state PREPARE");
		break;
	}
	if (rc) {
		proto_msg_free(m);
		return NULL;
	}
	return m;
}

#define DIFF(cond, ...)                                     \
	do {                                                \
		if (cond) {                                 \
			snprintf(why, whylen, __VA_ARGS__); \
			return false;                       \
		}                                           \
	} while (0)

static bool eq_holder_map(const struct proto_holder_map *a,
			  const struct proto_holder_map *b, char *why,
			  size_t whylen)
{
	DIFF(a->mig != b->mig, "mig");
	DIFF(strcmp(a->node, b->node), "node");
	DIFF(a->addr_len != b->addr_len ||
		     memcmp(a->addr, b->addr, a->addr_len),
	     "addr");
	DIFF(a->page_size != b->page_size, "page_size");
	DIFF(a->nregions != b->nregions, "nregions");
	for (size_t i = 0; i < a->nregions; i++) {
		const struct proto_holder_region *x = &a->regions[i],
						 *y = &b->regions[i];

		DIFF(x->id != y->id || x->key != y->key || x->base != y->base ||
			     x->len != y->len,
		     "region %zu", i);
		DIFF(x->ngens != y->ngens, "region %zu ngens", i);
		for (size_t j = 0; j < x->ngens; j++)
			DIFF(x->gens[j].start != y->gens[j].start ||
				     x->gens[j].len != y->gens[j].len ||
				     x->gens[j].gen != y->gens[j].gen,
			     "region %zu gen run %zu", i, j);
		DIFF(x->nkeys != y->nkeys || !x->keys != !y->keys,
		     "region %zu nkeys", i);
		for (size_t j = 0; j < x->nkeys; j++)
			DIFF(memcmp(&x->keys[j], &y->keys[j],
				    sizeof(x->keys[j])),
			     "region %zu key run %zu", i, j);
	}
	return true;
}

static bool eq_prepare(const struct proto_migrate_prepare *a,
		       const struct proto_migrate_prepare *b, char *why,
		       size_t whylen)
{
	DIFF(a->mig != b->mig, "mig");
	DIFF(strcmp(a->vm, b->vm), "vm");
	DIFF(strcmp(a->mode, b->mode), "mode");
	DIFF(a->page_size != b->page_size, "page_size");
	DIFF(a->vcpus != b->vcpus, "vcpus");
	DIFF(strcmp(a->accel, b->accel), "accel");
	DIFF(a->lineage != b->lineage, "lineage");
	DIFF(a->nregions != b->nregions, "nregions");
	for (size_t i = 0; i < a->nregions; i++)
		DIFF(a->regions[i].id != b->regions[i].id ||
			     a->regions[i].pages != b->regions[i].pages,
		     "region %zu", i);
	return true;
}

static bool eq_dirty(const struct proto_dirty_set *a,
		     const struct proto_dirty_set *b, char *why, size_t whylen)
{
	DIFF(a->mig != b->mig, "mig");
	DIFF(a->gen != b->gen, "gen");
	DIFF(a->region != b->region, "region");
	DIFF(a->nruns != b->nruns, "nruns");
	for (size_t i = 0; i < a->nruns; i++)
		DIFF(a->runs[i].start != b->runs[i].start ||
			     a->runs[i].len != b->runs[i].len,
		     "run %zu", i);
	return true;
}

static bool eq_progress(const struct proto_progress *a,
			const struct proto_progress *b, char *why,
			size_t whylen)
{
	DIFF(a->mig != b->mig, "mig");
	DIFF(a->round != b->round, "round");
	DIFF(a->pages_valid != b->pages_valid, "pages_valid");
	DIFF(a->pages_total != b->pages_total, "pages_total");
	DIFF(a->bytes != b->bytes, "bytes");
	DIFF(a->nholders != b->nholders, "nholders");
	for (size_t i = 0; i < a->nholders; i++)
		DIFF(strcmp(a->holders[i].node, b->holders[i].node) ||
			     a->holders[i].bytes != b->holders[i].bytes,
		     "holders");
	return true;
}

bool proto_msg_eq(const struct proto_msg *a, const struct proto_msg *b,
		  char *why, size_t whylen)
{
	DIFF(a->type != b->type, "type %d != %d", a->type, b->type);
	switch (a->type) {
	case PROTO_HELLO:
		DIFF(a->hello.version != b->hello.version, "version");
		DIFF(strcmp(a->hello.node, b->hello.node), "node");
		DIFF(strcmp(a->hello.pubkey, b->hello.pubkey), "pubkey");
		DIFF(strcmp(a->hello.provider, b->hello.provider), "provider");
		DIFF(a->hello.addr_len != b->hello.addr_len ||
			     memcmp(a->hello.addr, b->hello.addr,
				    a->hello.addr_len),
		     "addr");
		return true;
	case PROTO_PING:
	case PROTO_PONG:
		DIFF(a->ping.seq != b->ping.seq, "seq");
		DIFF(a->ping.sent_ns != b->ping.sent_ns, "sent_ns");
		return true;
	case PROTO_HOLDER_MAP:
		return eq_holder_map(&a->holder_map, &b->holder_map, why,
				     whylen);
	case PROTO_MIGRATE_PREPARE:
		return eq_prepare(&a->prepare, &b->prepare, why, whylen);
	case PROTO_DIRTY_SET:
		return eq_dirty(&a->dirty, &b->dirty, why, whylen);
	case PROTO_PROGRESS:
		return eq_progress(&a->progress, &b->progress, why, whylen);
	case PROTO_STATE:
		DIFF(a->state.mig != b->state.mig, "mig");
		DIFF(a->state.len != b->state.len, "len");
		DIFF(a->state.len &&
			     memcmp(a->state.blob, b->state.blob, a->state.len),
		     "blob");
		return true;
	case PROTO_VERIFY:
		DIFF(a->verify.mig != b->verify.mig, "mig");
		DIFF(a->verify.region != b->verify.region, "region");
		DIFF(a->verify.start != b->verify.start, "start");
		DIFF(a->verify.len != b->verify.len ||
			     memcmp(a->verify.csums, b->verify.csums,
				    a->verify.len),
		     "csums");
		return true;
	case PROTO_DELTA_SET:
		DIFF(memcmp(&a->delta, &b->delta, sizeof(a->delta)), "delta");
		return true;
	case PROTO_PC_STATS:
		DIFF(memcmp(&a->pc_stats, &b->pc_stats, sizeof(a->pc_stats)),
		     "pc_stats");
		return true;
	case PROTO_SWITCHOVER:
	case PROTO_COMMIT:
	case PROTO_RESUMED:
	case PROTO_POSTCOPY:
	case PROTO_READY:
	case PROTO_RESUME:
	case PROTO_KEPT:
		DIFF(a->commit.mig != b->commit.mig, "mig");
		DIFF(a->commit.gen != b->commit.gen, "gen");
		return true;
	case PROTO_ABORT:
		DIFF(a->abort.mig != b->abort.mig, "mig");
		DIFF(strcmp(a->abort.reason, b->abort.reason), "reason");
		return true;
	case PROTO_RETARGET:
		DIFF(a->retarget.mig != b->retarget.mig, "mig");
		DIFF(strcmp(a->retarget.node, b->retarget.node), "node");
		return true;
	case PROTO_ERROR:
		DIFF(a->error.mig != b->error.mig, "mig");
		DIFF(a->error.code != b->error.code, "code");
		DIFF(strcmp(a->error.text, b->error.text), "text");
		return true;
	}
	DIFF(true, "unknown type %d", a->type);
}
