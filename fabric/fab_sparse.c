// SPDX-License-Identifier: MIT
/*
 * Sparse registrations: guest RAM that peers read, on a domain whose
 * registrations pin (verbs without on-demand paging, ofi:verbs). Pinning
 * faults in every page it covers, so registering a guest's whole RAM at
 * once makes its holes resident for as long as it is registered. Instead
 * fab_mr_reg() registers nothing, and the owner grows the registration
 * (fab_mr_grow()) over what peers may read before telling them of it: a
 * source over the pages it announces (all of them have data), a relay
 * over the pages it holds. Growth is by whole 2 MiB chunks, which bounds
 * the number of parts (512 a GiB) and keeps huge pages whole; a part is
 * never merged with its neighbours, whose keys peers may be using.
 *
 * The rkey then lists its parts, each with its key (fab_keyrun); its own
 * key is a digest of them, so that "did the key change" (a device that
 * came back makes every part anew) stays one comparison.
 *
 * A reader's operation that spans two adjacent parts is split: one part
 * per run, posted at once with a fab_split as their context; fab_poll()
 * folds their completions into one for the caller's context, with the
 * first failure's status. A part that finds no room (-EAGAIN) after the
 * first one went is posted from a later fab_poll(). Spans are rare (only
 * where a part grown later meets an earlier one), so the list of splits in
 * flight is short and searched.
 */
#define LOG_PREFIX "fabric: "

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#include "fabric/fabric_int.h"

#define SPARSE_CHUNK (2ULL << 20)

struct fab_sparse {
	pthread_mutex_t lock;
	size_t n, cap;
	struct fab_mr **part; /* sorted by address, disjoint */
	struct fab_keyrun *tab; /* n entries: fab_mr_rkey()'s */
};

struct fab_split {
	struct fab_split *next;
	struct fab_ep *ep; /* NULL once closed: post no more */
	struct fab_ep *cqe_ep; /* for the caller's completion */
	struct fab_mr *mr;
	bool write;
	char *buf;
	void *ctx;
	size_t len;
	uint64_t start; /* rkey offset of buf[0] */
	uint64_t off, end; /* the parts not yet posted: [off, end) */
	const struct fab_keyrun *run; /* the one holding off */
	unsigned inflight;
	int status;
};

/* registration */

int fab_sparse_reg(struct fab_domain *d, void *buf, size_t len, unsigned access,
		   struct fab_mr **out)
{
	struct fab_mr *mr = calloc(1, sizeof(*mr));
	struct fab_sparse *s = calloc(1, sizeof(*s));

	if (!mr || !s) {
		free(mr);
		free(s);
		return -ENOMEM;
	}
	/* never NULL: a sparse rkey with no run has nothing registered */
	s->tab = calloc(16, sizeof(*s->tab));
	s->part = calloc(16, sizeof(*s->part));
	if (!s->tab || !s->part) {
		free(s->tab);
		free(s->part);
		free(mr);
		free(s);
		return -ENOMEM;
	}
	s->cap = 16;
	pthread_mutex_init(&s->lock, NULL);
	mr->d = d;
	mr->buf = buf;
	mr->len = len;
	mr->access = access;
	mr->rkey.addr = (uint64_t)(uintptr_t)buf;
	mr->rkey.len = len;
	mr->sparse = s;
	*out = mr;
	return 0;
}

static uint64_t part_off(const struct fab_mr *mr, size_t i)
{
	return (uint64_t)((char *)mr->sparse->part[i]->buf - (char *)mr->buf);
}

/* The first part that ends after off. */
static size_t part_find(const struct fab_mr *mr, uint64_t off)
{
	const struct fab_sparse *s = mr->sparse;
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (part_off(mr, mid) + s->part[mid]->len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Register [off, off + len) as one part, inserted at i. Pinning pins for
 * writing, which a read-only mapping refuses (a source's guest RAM): then
 * writable while it pins, read-only again after.
 */
static int part_add(struct fab_mr *mr, size_t i, uint64_t off, uint64_t len)
{
	struct fab_sparse *s = mr->sparse;
	unsigned access = mr->access & ~FAB_ACCESS_HOLES;
	char *at = (char *)mr->buf + off;
	struct fab_mr *p;
	int ret;

	if (s->n == s->cap) {
		size_t cap = 2 * s->cap;
		struct fab_mr **np = realloc(s->part, cap * sizeof(*np));
		struct fab_keyrun *nt;

		if (!np)
			return -ENOMEM;
		s->part = np;
		nt = realloc(s->tab, cap * sizeof(*nt));
		if (!nt)
			return -ENOMEM;
		s->tab = nt;
		s->cap = cap;
	}
	ret = fab_mr_reg(mr->d, at, len, access, &p);
	if (ret == -EFAULT && !(access & FAB_ACCESS_WRITE) &&
	    !mprotect(at, len, PROT_READ | PROT_WRITE)) {
		ret = fab_mr_reg(mr->d, at, len, access, &p);
		mprotect(at, len, PROT_READ);
	}
	if (ret)
		return ret;
	memmove(&s->part[i + 1], &s->part[i], (s->n - i) * sizeof(*s->part));
	s->part[i] = p;
	s->n++;
	return 0;
}

int fab_sparse_grow(struct fab_mr *mr, uint64_t off, uint64_t len)
{
	struct fab_sparse *s = mr->sparse;
	uint64_t p = off & ~(SPARSE_CHUNK - 1);
	uint64_t end =
		FY_MIN((off + len + SPARSE_CHUNK - 1) & ~(SPARSE_CHUNK - 1),
		       (uint64_t)mr->len);
	int ret = 0, added = 0;

	pthread_mutex_lock(&s->lock);
	while (p < end && !ret) {
		size_t i = part_find(mr, p);
		uint64_t next;

		if (i < s->n && part_off(mr, i) <= p) {
			p = part_off(mr, i) + s->part[i]->len;
			continue;
		}
		next = i < s->n ? FY_MIN(end, part_off(mr, i)) : end;
		ret = part_add(mr, i, p, next - p);
		added |= !ret;
		p = next;
	}
	pthread_mutex_unlock(&s->lock);
	return ret ? ret : added;
}

/* One FNV-1a step over a whole word. */
static uint64_t fnv(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ULL;
}

void fab_sparse_rkey(const struct fab_mr *mr, struct fab_rkey *out)
{
	struct fab_sparse *s = mr->sparse;
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over the runs */

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		struct fab_keyrun *r = &s->tab[i];
		struct fab_rkey k;

		fab_mr_rkey(s->part[i], &k);
		*r = (struct fab_keyrun){ .off = part_off(mr, i),
					  .len = k.len,
					  .key = k.key,
					  .addr = k.addr };
		h = fnv(fnv(fnv(fnv(h, r->off), r->len), r->key), r->addr);
	}
	out->addr = mr->rkey.addr;
	out->len = mr->len;
	out->key = h;
	out->runs = s->tab;
	out->nruns = s->n;
	pthread_mutex_unlock(&s->lock);
}

int fab_sparse_dereg(struct fab_mr *mr)
{
	struct fab_sparse *s = mr->sparse;
	int ret = 0;

	for (size_t i = 0; i < s->n; i++) {
		int r = fab_mr_dereg(s->part[i]);

		ret = ret ? ret : r;
	}
	pthread_mutex_destroy(&s->lock);
	free(s->part);
	free(s->tab);
	free(s);
	free(mr);
	return ret;
}

/* operations */

/* The run holding off, or NULL. */
static const struct fab_keyrun *run_find(const struct fab_rkey *rk,
					 uint64_t off)
{
	size_t lo = 0, hi = rk->nruns;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rk->runs[mid].off + rk->runs[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == rk->nruns || rk->runs[lo].off > off)
		return NULL;
	return &rk->runs[lo];
}

/* Post the parts not yet posted, under split_lock; 0 or the first error. */
static int split_post(struct fab_split *sp)
{
	while (sp->off < sp->end) {
		const struct fab_keyrun *r = sp->run;
		uint64_t n = FY_MIN(sp->end, r->off + r->len) - sp->off;
		int ret;

		ret = fab_rma(sp->ep, sp->write,
			      sp->buf + (sp->off - sp->start), n, sp->mr,
			      r->addr + (sp->off - r->off), r->key, sp);
		if (ret)
			return ret;
		sp->inflight++;
		sp->off += n;
		sp->run++;
	}
	return 0;
}

int fab_split_rma(struct fab_ep *ep, bool write, void *buf, size_t len,
		  struct fab_mr *mr, const struct fab_rkey *rk, uint64_t off,
		  void *ctx)
{
	const struct fab_keyrun *r = run_find(rk, off), *e = r;
	struct fab_domain *d = ep->d;
	struct fab_split *sp;
	int ret;

	/* every byte in a run, runs back to back */
	while (e && e->off + e->len < off + len) {
		const struct fab_keyrun *nx = e + 1;

		e = nx < rk->runs + rk->nruns && nx->off == e->off + e->len
			    ? nx
			    : NULL;
	}
	if (!e)
		return -ERANGE;
	if (e == r)
		return fab_rma(ep, write, buf, len, mr,
			       r->addr + (off - r->off), r->key, ctx);
	sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	*sp = (struct fab_split){ .ep = ep,
				  .cqe_ep = ep,
				  .mr = mr,
				  .write = write,
				  .buf = buf,
				  .ctx = ctx,
				  .len = len,
				  .start = off,
				  .off = off,
				  .end = off + len,
				  .run = r };
	pthread_mutex_lock(&d->split_lock);
	ret = split_post(sp);
	if (ret && !sp->inflight) {
		/* nothing went: the caller hears it, as of any operation */
		pthread_mutex_unlock(&d->split_lock);
		free(sp);
		return ret;
	}
	if (ret && ret != -EAGAIN) {
		/* the rest never goes: the whole fails once the rest is back */
		sp->status = ret;
		sp->off = sp->end;
	}
	sp->next = d->split;
	d->split = sp;
	__atomic_store_n(&d->nsplit, d->nsplit + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->split_lock);
	return 0;
}

/* Unlink *pp (under split_lock) into the caller's completion c. */
static void split_finish(struct fab_domain *d, struct fab_split **pp,
			 struct fab_cqe *c)
{
	struct fab_split *sp = *pp;

	*c = (struct fab_cqe){ .ctx = sp->ctx,
			       .ep = sp->cqe_ep,
			       .op = sp->write ? FAB_OP_WRITE : FAB_OP_READ,
			       .status = sp->status,
			       .len = sp->status ? 0 : sp->len };
	*pp = sp->next;
	__atomic_store_n(&d->nsplit, d->nsplit - 1, __ATOMIC_RELEASE);
	free(sp);
}

/* No part in flight: post the rest; true when there is nothing to wait for. */
static bool split_kick(struct fab_split *sp)
{
	int ret;

	if (sp->off < sp->end && !sp->ep && !sp->status)
		sp->status = -ECANCELED;
	if (sp->status)
		sp->off = sp->end;
	ret = split_post(sp);
	if (ret && ret != -EAGAIN) {
		sp->status = ret;
		sp->off = sp->end;
	}
	return !sp->inflight && sp->off == sp->end;
}

int fab_split_ready(struct fab_domain *d, struct fab_cqe *c, int max,
		    bool *retry)
{
	struct fab_split **pp;
	int k = 0;

	*retry = false;
	if (!__atomic_load_n(&d->nsplit, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&d->split_lock);
	for (pp = &d->split; *pp;) {
		struct fab_split *sp = *pp;

		if (sp->inflight || !split_kick(sp)) {
			*retry |= !sp->inflight;
			pp = &sp->next;
		} else if (k < max) {
			split_finish(d, pp, &c[k++]);
		} else {
			*retry = true;
			pp = &sp->next;
		}
	}
	pthread_mutex_unlock(&d->split_lock);
	return k;
}

int fab_split_done(struct fab_domain *d, struct fab_cqe *c, int n)
{
	int i, j = 0;

	if (!__atomic_load_n(&d->nsplit, __ATOMIC_ACQUIRE))
		return n;
	pthread_mutex_lock(&d->split_lock);
	for (i = 0; i < n; i++) {
		struct fab_split **pp = &d->split;

		while (*pp && *pp != c[i].ctx)
			pp = &(*pp)->next;
		if (!*pp) {
			c[j++] = c[i];
			continue;
		}
		(*pp)->inflight--;
		if (c[i].status && !(*pp)->status)
			(*pp)->status = c[i].status;
		if (!(*pp)->inflight && split_kick(*pp))
			split_finish(d, pp, &c[j++]);
	}
	pthread_mutex_unlock(&d->split_lock);
	return j;
}

void fab_split_ep_close(struct fab_ep *ep)
{
	struct fab_domain *d = ep->d;

	if (!__atomic_load_n(&d->nsplit, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&d->split_lock);
	for (struct fab_split *sp = d->split; sp; sp = sp->next)
		if (sp->ep == ep)
			sp->ep = NULL;
	pthread_mutex_unlock(&d->split_lock);
}

void fab_split_free(struct fab_domain *d)
{
	while (d->split) {
		struct fab_split *sp = d->split;

		d->split = sp->next;
		free(sp);
	}
	pthread_mutex_destroy(&d->split_lock);
}
