// SPDX-License-Identifier: MIT
/*
 * The destination's populator: a thread that maps in, ahead of the puller,
 * the guest pages the source announced, so that the fabric's receive path
 * copies into pages that are already there.
 *
 * Why: a fresh memfd page first touched inside recv() costs the receiving
 * thread a page fault, a shmem allocation and a clear_page (~70 % of its
 * time for 1 GiB of random memory); the same receive into mapped pages is
 * about 7x cheaper per page. MADV_POPULATE_WRITE on ferryd's own mapping
 * does that work on the other CPU. Only announced runs are populated, so a
 * sparse guest costs no more memory than it has resident pages; the pages
 * read as zero until written, like the holes they replace.
 *
 * Each chunk is fallocate()d first, then populated: allocating 512 pages
 * in one call and faulting them in after took 0.43-0.46 s per GiB here
 * against 0.47-0.60 s for MADV_POPULATE_WRITE alone. Not where shmem may
 * use huge pages: fallocate() has no VMA to see our MADV_HUGEPAGE and
 * would allocate 4 KiB pages.
 *
 * The puller tells where it receives (pc_pop_hint()); a populator that has
 * fallen behind skips to there, and the two then allocate different parts
 * of RAM, one faulting in recv(), the other ahead of it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define LOG_PREFIX "populate: "
#include "common/log.h"
#include "common/util.h"
#include "postcopy/postcopy.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define CHUNK 512 /* pages per madvise: 2 MiB */

struct pc_pop {
	int fd; /* the memfd map maps; -1: do not fallocate */
	uint8_t *map;
	uint64_t pages;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct fy_run *runs; /* queued, in the order announced */
	size_t nruns, cap, pos; /* runs[pos] is the one being populated */
	uint64_t next; /* first page of runs[pos] not populated yet */
	uint64_t hint; /* the puller receives about here (atomic) */
	uint64_t done; /* pages populated (atomic), for tests and logs */
};

/* Take the next chunk to populate into *start, *len; false to end. */
static bool next_chunk(struct pc_pop *p, uint64_t *start, uint64_t *len)
{
	uint64_t hint, end;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->pos == p->nruns)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			return false;
		}
		end = p->runs[p->pos].start + p->runs[p->pos].len;
		/* behind the receive point: those pages are being faulted in */
		hint = __atomic_load_n(&p->hint, __ATOMIC_RELAXED);
		if (p->next < hint)
			p->next = FY_MIN(hint, end);
		if (p->next < end)
			break;
		if (++p->pos < p->nruns)
			p->next = p->runs[p->pos].start;
	}
	*start = p->next;
	/* end chunks on 2 MiB boundaries: whole page-table pages */
	*len = FY_MIN(end, (p->next / CHUNK + 1) * CHUNK) - p->next;
	p->next += *len;
	pthread_mutex_unlock(&p->lock);
	return true;
}

static void *pop_thread(void *arg)
{
	struct pc_pop *p = arg;
	uint64_t start, len;

	while (next_chunk(p, &start, &len)) {
		if (p->fd >= 0 &&
		    fallocate(p->fd, FALLOC_FL_KEEP_SIZE, start * FY_PAGE_SIZE,
			      len * FY_PAGE_SIZE))
			p->fd = -1; /* not supported: populate only */
		if (madvise(p->map + start * FY_PAGE_SIZE, len * FY_PAGE_SIZE,
			    MADV_POPULATE_WRITE)) {
			/* an old kernel, or out of memory: recv() faults */
			pr_debug("MADV_POPULATE_WRITE: %s", strerror(errno));
			break;
		}
		__atomic_add_fetch(&p->done, len, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Can memfd pages be huge? Unless shmem_enabled is never or deny. */
static bool shmem_thp(void)
{
	FILE *f =
		fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
	char buf[128] = "";
	bool huge;

	if (!f)
		return false; /* no THP in this kernel */
	huge = fgets(buf, sizeof(buf), f) && !strstr(buf, "[never]") &&
	       !strstr(buf, "[deny]");
	fclose(f);
	return huge;
}

int pc_pop_start(int fd, uint8_t *map, uint64_t pages, struct pc_pop **out)
{
	struct pc_pop *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	p->fd = shmem_thp() ? -1 : fd;
	p->map = map;
	p->pages = pages;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	ret = -pthread_create(&p->thread, NULL, pop_thread, p);
	if (ret)
		goto err_sync;
	pthread_setname_np(p->thread, "ferry-populate");
	*out = p;
	return 0;
err_sync:
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return ret;
}

/* Valid run of p's RAM? */
static bool run_ok(const struct pc_pop *p, const struct fy_run *r)
{
	return r->start < p->pages && r->len <= p->pages - r->start;
}

int pc_pop_add(struct pc_pop *p, const struct fy_run *runs, size_t n)
{
	struct fy_run *r;

	if (!p || !n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t hs = (runs[i].start + CHUNK - 1) / CHUNK * CHUNK;
		uint64_t he = (runs[i].start + runs[i].len) / CHUNK * CHUNK;

		/*
		 * Huge pages only where the source has all 512 pages: a hole
		 * must not cost 2 MiB here. Effective only when root set
		 * shmem_enabled to advise; a no-op by default.
		 */
		if (run_ok(p, &runs[i]) && hs < he &&
		    madvise(p->map + hs * FY_PAGE_SIZE,
			    (he - hs) * FY_PAGE_SIZE, MADV_HUGEPAGE))
			pr_debug("MADV_HUGEPAGE: %s", strerror(errno));
	}
	pthread_mutex_lock(&p->lock);
	if (p->pos == p->nruns)
		p->pos = p->nruns = 0; /* all done: rounds do not pile up */
	if (p->nruns + n > p->cap) {
		size_t cap = FY_MAX(p->cap * 2, p->nruns + n);

		r = realloc(p->runs, cap * sizeof(*r));
		if (!r) {
			pthread_mutex_unlock(&p->lock);
			return -ENOMEM;
		}
		p->runs = r;
		p->cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		if (!run_ok(p, &runs[i]))
			continue;
		if (p->pos == p->nruns)
			p->next = runs[i].start;
		p->runs[p->nruns++] = runs[i];
	}
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void pc_pop_hint(struct pc_pop *p, uint64_t page)
{
	if (p)
		__atomic_store_n(&p->hint, page, __ATOMIC_RELAXED);
}

uint64_t pc_pop_done(const struct pc_pop *p)
{
	return p ? __atomic_load_n(&p->done, __ATOMIC_RELAXED) : 0;
}

void pc_pop_stop(struct pc_pop *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->runs);
	free(p);
}
