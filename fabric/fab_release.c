// SPDX-License-Identifier: MIT
/*
 * Deferred release: memory the caller is done with, which an operation the
 * provider still holds may write into (a read that timed out or whose
 * endpoint was closed, on a stalled connection: its data can arrive
 * seconds later). fab_mem_release() frees it at once when nothing can,
 * else keeps it on the domain's list; every pass of completions (fab_poll()
 * or the progress thread) sweeps the list after the provider handed
 * operations back. At close what is still busy is leaked on purpose: a
 * late write into freed memory would corrupt whatever lives there next.
 *
 * Memory peers read is kept for a time instead. Where our own process
 * answers their reads (tcp: d->serve_late_ns), an answer the provider
 * began before the registration went is still being sent from it; unmapped
 * under it, the send fails half-way and the peer's stream is garbled for
 * good (its reads then time out, every later one too). So the registration
 * goes at once (a read that comes later fails cleanly at its reader) and
 * the memory stays as it is, its data intact, until every read that came
 * before is past its reader's deadline.
 */
#define LOG_PREFIX "fabric: "

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#include "fabric/fabric_int.h"

struct fab_rel {
	struct fab_rel *next;
	void *addr;
	size_t len;
	struct fab_mr *mr;
	enum fab_release how;
	uint64_t until; /* peers may be served from it until then; 0 */
};

void fab_release_init(struct fab_domain *d)
{
	pthread_mutex_init(&d->rel_lock, NULL);
	d->rel = NULL;
	d->nrel = 0;
}

static void release_now(void *addr, size_t len, struct fab_mr *mr,
			enum fab_release how)
{
	fab_mr_dereg(mr);
	if (!addr)
		return;
	if (how == FAB_RELEASE_FREE)
		free(addr);
	else if (munmap(addr, len))
		pr_perror("munmap(%p, %zu)", addr, len);
}

uint64_t fab_mr_serve_late_ns(const struct fab_mr *mr)
{
	if (!mr || !(mr->access & (FAB_ACCESS_READ | FAB_ACCESS_WRITE)))
		return 0;
	return mr->d->serve_late_ns;
}

bool fab_mem_busy(const struct fab_domain *d, const void *addr, size_t len)
{
	if (!addr || !len)
		return false;
	return d->ops->mem_busy(d, addr, len) || fab_bounce_busy(d, addr, len);
}

static void defer(struct fab_domain *d, void *addr, size_t len,
		  struct fab_mr *mr, enum fab_release how, uint64_t until);

/* Hand over now: freed if nothing holds it, else deferred (parked). */
static void release_or_defer(struct fab_domain *d, void *addr, size_t len,
			     struct fab_mr *mr, enum fab_release how)
{
	if (!addr || !fab_mem_busy(d, addr, len)) {
		release_now(addr, len, mr, how);
		return;
	}
	if (how == FAB_RELEASE_MUNMAP_SHARED) {
		/* late bytes land in private memory, never in the object */
		if (mmap(addr, len, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS |
				 MAP_NORESERVE,
			 -1, 0) == MAP_FAILED)
			pr_perror("cannot park %zu busy shared bytes", len);
		else
			pr_info("%zu busy shared bytes parked on anonymous "
				"memory",
				len);
	}
	defer(d, addr, len, mr, how, 0);
	/* the last operation may have come back since we looked */
	fab_release_sweep(d);
}

void fab_release_sweep(struct fab_domain *d)
{
	struct fab_rel *r, **pp, *done = NULL, *due = NULL;
	uint64_t now, next = 0;

	if (!__atomic_load_n(&d->nrel, __ATOMIC_ACQUIRE))
		return;
	now = fy_now_ns();
	pthread_mutex_lock(&d->rel_lock);
	for (pp = &d->rel; (r = *pp);) {
		if (r->until > now) {
			next = next ? FY_MIN(next, r->until) : r->until;
			pp = &r->next;
			continue;
		}
		if (!r->until && fab_mem_busy(d, r->addr, r->len)) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		if (r->until) {
			r->next = due;
			due = r;
		} else {
			r->next = done;
			done = r;
		}
		__atomic_store_n(&d->nrel, d->nrel - 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&d->rel_due, next, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&d->rel_lock);
	while ((r = done)) {
		done = r->next;
		pr_debug("%zu bytes at %p handed back: released", r->len,
			 r->addr);
		release_now(r->addr, r->len, r->mr, r->how);
		free(r);
	}
	while ((r = due)) {
		due = r->next;
		pr_debug("%zu bytes at %p no longer served: released", r->len,
			 r->addr);
		release_or_defer(d, r->addr, r->len, r->mr, r->how);
		free(r);
	}
}

void fab_release_tick(struct fab_domain *d)
{
	uint64_t due = __atomic_load_n(&d->rel_due, __ATOMIC_RELAXED);

	if (due && fy_now_ns() >= due)
		fab_release_sweep(d);
}

static void defer(struct fab_domain *d, void *addr, size_t len,
		  struct fab_mr *mr, enum fab_release how, uint64_t until)
{
	struct fab_rel *r = calloc(1, sizeof(*r));

	if (!r) {
		/* a leak is safe; freeing memory still used is not */
		pr_err("no memory to defer a release: %zu bytes at %p leaked",
		       len, addr);
		return;
	}
	*r = (struct fab_rel){
		.addr = addr, .len = len, .mr = mr, .how = how, .until = until
	};
	pthread_mutex_lock(&d->rel_lock);
	r->next = d->rel;
	d->rel = r;
	__atomic_store_n(&d->nrel, d->nrel + 1, __ATOMIC_RELEASE);
	if (until) {
		uint64_t due = __atomic_load_n(&d->rel_due, __ATOMIC_RELAXED);

		if (!due || until < due)
			__atomic_store_n(&d->rel_due, until, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&d->rel_lock);
	pr_debug("%zu bytes at %p still %s: released later", len, addr,
		 until ? "served" : "busy");
}

void fab_mem_release(struct fab_domain *d, void *addr, size_t len,
		     struct fab_mr *mr, enum fab_release how)
{
	uint64_t late = fab_mr_serve_late_ns(mr);

	if (addr && late) {
		/* a read that comes from now on fails at its reader */
		fab_mr_dereg(mr);
		defer(d, addr, len, NULL, how, fy_now_ns() + late);
		return;
	}
	release_or_defer(d, addr, len, mr, how);
}

void fab_release_close(struct fab_domain *d)
{
	struct fab_rel *r;
	size_t n = 0, bytes = 0;

	fab_release_sweep(d);
	pthread_mutex_lock(&d->rel_lock);
	while ((r = d->rel)) {
		d->rel = r->next;
		n++;
		bytes += r->len;
		/* the registration goes with the domain; the memory stays */
		free(r);
	}
	d->nrel = 0;
	pthread_mutex_unlock(&d->rel_lock);
	if (n)
		pr_warn("closing: %zu busy areas (%zu bytes) leaked", n, bytes);
	pthread_mutex_destroy(&d->rel_lock);
}
