// SPDX-License-Identifier: MIT
/*
 * Bounce buffers: how a domain whose registrations pin (verbs without
 * on-demand paging) reaches guest RAM for its own reads and writes.
 *
 * Pinning faults in every page of a registration. Guest RAM registered
 * FAB_ACCESS_HOLES must keep its holes: a post-copy destination's missing
 * pages must still fault into its userfaultfd, and a page punched out must
 * not live on pinned behind the memfd's back. So such a registration pins
 * nothing. A read into it lands in a slot of one pinned arena per domain
 * and is copied to its place when fab_poll() hands its completion back; a
 * write is copied into a slot first. The copy touches guest RAM with the
 * CPU, as libfabric's tcp provider always does, so a page first appears
 * exactly where it would there.
 *
 * The arena is made at the first such registration: BOUNCE_SLOTS slots of
 * BOUNCE_SLOT bytes; an operation takes contiguous slots, and when none
 * are free the caller gets -EAGAIN, as from a full provider. A slot whose
 * operation failed stays taken until the backend no longer holds it
 * (fab_mem_busy() of the slot), so a late byte never lands in a slot that
 * is already someone else's.
 */
#define LOG_PREFIX "fabric: "

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "fabric/fabric_int.h"

#define BOUNCE_SLOT (64u << 10)
#define BOUNCE_SLOTS 256u /* 16 MiB pinned per domain that needs it */

struct fab_bop {
	void *user; /* where the bytes belong; NULL: slot free or failed */
	size_t len;
	void *ctx; /* the caller's */
	unsigned nslots; /* 0: free */
	bool failed; /* waits until the backend hands the slot back */
};

struct fab_bounce {
	pthread_mutex_t lock;
	char *arena;
	struct fab_mr *mr;
	uint64_t used[BOUNCE_SLOTS / 64];
	unsigned nfailed;
	struct fab_bop ops[BOUNCE_SLOTS]; /* by first slot */
};

/* Give back the slots of the operation at slot i; lock held. */
static void slot_free(struct fab_bounce *b, size_t i)
{
	for (unsigned n = 0; n < b->ops[i].nslots; n++)
		fy_bit_clear(b->used, i + n);
	b->ops[i] = (struct fab_bop){ 0 };
}

static int bounce_open(struct fab_domain *d)
{
	size_t len = (size_t)BOUNCE_SLOTS * BOUNCE_SLOT;
	struct fab_bounce *b;
	int ret;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->arena = mmap(NULL, len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (b->arena == MAP_FAILED) {
		free(b);
		return -ENOMEM;
	}
	ret = d->ops->reg_mr(d, b->arena, len, FAB_ACCESS_LOCAL, &b->mr);
	if (ret) {
		munmap(b->arena, len);
		free(b);
		return ret;
	}
	b->mr->d = d;
	b->mr->buf = b->arena;
	b->mr->len = len;
	pthread_mutex_init(&b->lock, NULL);
	__atomic_store_n(&d->bounce, b, __ATOMIC_RELEASE);
	pr_debug("%s pins its registrations: guest RAM goes through %u KiB of "
		 "bounce buffers",
		 d->ops->provider(d), (BOUNCE_SLOTS * BOUNCE_SLOT) >> 10);
	return 0;
}

int fab_bounce_reg(struct fab_domain *d, struct fab_mr **out)
{
	struct fab_mr *mr;
	int ret = 0;

	/* the domain's own lock is the backend's: open under the rel lock */
	pthread_mutex_lock(&d->rel_lock);
	if (!__atomic_load_n(&d->bounce, __ATOMIC_ACQUIRE))
		ret = bounce_open(d);
	pthread_mutex_unlock(&d->rel_lock);
	if (ret)
		return ret;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	mr->bounce = true;
	*out = mr;
	return 0;
}

/* Free failed slots the backend has handed back; lock held. */
static void sweep_failed(struct fab_domain *d, struct fab_bounce *b)
{
	unsigned i;

	for (i = 0; b->nfailed && i < BOUNCE_SLOTS; i++) {
		struct fab_bop *o = &b->ops[i];

		if (!o->failed ||
		    d->ops->mem_busy(d, b->arena + (size_t)i * BOUNCE_SLOT,
				     o->len))
			continue;
		slot_free(b, i);
		b->nfailed--;
	}
}

/* Take contiguous slots for len bytes; the first, or -EAGAIN. Lock held. */
static int take(struct fab_domain *d, struct fab_bounce *b, size_t len)
{
	unsigned n = (unsigned)((len + BOUNCE_SLOT - 1) / BOUNCE_SLOT);
	uint64_t i = 0, e;

	if (b->nfailed)
		sweep_failed(d, b);
	for (;;) {
		i = fy_bitmap_next_clear(b->used, BOUNCE_SLOTS, i);
		if (i + n > BOUNCE_SLOTS)
			return -EAGAIN;
		e = fy_bitmap_next_set(b->used, BOUNCE_SLOTS, i);
		if (e - i >= n)
			break;
		i = e;
	}
	for (e = i; e < i + n; e++)
		fy_bit_set(b->used, e);
	b->ops[i].nslots = n;
	return (int)i;
}

int fab_bounce_rma(struct fab_ep *ep, bool write, void *buf, size_t len,
		   uint64_t addr, uint64_t key, void *ctx)
{
	struct fab_domain *d = ep->d;
	struct fab_bounce *b = __atomic_load_n(&d->bounce, __ATOMIC_ACQUIRE);
	struct fab_bop *o;
	char *slot;
	int i, ret;

	if (len > (size_t)BOUNCE_SLOTS * BOUNCE_SLOT)
		return -EMSGSIZE;
	pthread_mutex_lock(&b->lock);
	i = take(d, b, len);
	if (i < 0) {
		pthread_mutex_unlock(&b->lock);
		return i;
	}
	o = &b->ops[i];
	o->user = buf;
	o->len = len;
	o->ctx = ctx;
	pthread_mutex_unlock(&b->lock);
	slot = b->arena + (size_t)i * BOUNCE_SLOT;
	if (write) {
		memcpy(slot, buf, len);
		ret = d->ops->write(ep, slot, len, b->mr, addr, key, o);
	} else {
		ret = d->ops->read(ep, slot, len, b->mr, addr, key, o);
	}
	if (ret) {
		pthread_mutex_lock(&b->lock);
		slot_free(b, (size_t)i);
		pthread_mutex_unlock(&b->lock);
	}
	return ret;
}

void fab_bounce_done(struct fab_domain *d, struct fab_cqe *c)
{
	struct fab_bounce *b = __atomic_load_n(&d->bounce, __ATOMIC_ACQUIRE);
	struct fab_bop *o = c->ctx;
	size_t i;

	if (!b || o < b->ops || o >= b->ops + BOUNCE_SLOTS)
		return;
	i = (size_t)(o - b->ops);
	/* a read's bytes reach their place before anyone hears of it */
	if (!c->status && c->op == FAB_OP_READ)
		memcpy(o->user, b->arena + i * BOUNCE_SLOT, o->len);
	c->ctx = o->ctx;
	pthread_mutex_lock(&b->lock);
	o->user = NULL;
	o->ctx = NULL;
	if (c->status) {
		o->failed = true;
		b->nfailed++;
	} else {
		slot_free(b, i);
	}
	pthread_mutex_unlock(&b->lock);
}

bool fab_bounce_busy(const struct fab_domain *d, const void *addr, size_t len)
{
	struct fab_bounce *b = __atomic_load_n(&d->bounce, __ATOMIC_ACQUIRE);
	const char *a = addr;
	bool busy = false;
	unsigned i;

	if (!b)
		return false;
	pthread_mutex_lock(&b->lock);
	for (i = 0; i < BOUNCE_SLOTS && !busy; i++) {
		const char *u = b->ops[i].user;

		busy = u && u < a + len && a < u + b->ops[i].len;
	}
	pthread_mutex_unlock(&b->lock);
	return busy;
}

void fab_bounce_free(struct fab_bounce *b)
{
	if (!b)
		return;
	/* the backend's close deregistered the arena with the rest */
	munmap(b->arena, (size_t)BOUNCE_SLOTS * BOUNCE_SLOT);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
