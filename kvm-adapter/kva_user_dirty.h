/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVA_USER_DIRTY_H
#define FERRY_KVA_USER_DIRTY_H

/*
 * The dirty-log tracker's insides, shared by kva_user_dirty.c (modes,
 * ASYNC, incoming, release) and kva_user_dirty_compat.c (SYNC and
 * SOFTDIRTY) alone; everyone else sees struct kva_wp as opaque
 * (kva_accel.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_accel.h"

struct page_region;

struct kva_wp {
	uint8_t *mem;
	uint64_t size, pages;
	enum kva_wp_mode mode;
	int wp_fd; /* uffd the range is registered WP on, or -1 */
	int in_fd; /* incoming uffd (== wp_fd in ASYNC), -1 once released */
	bool minor; /* incoming registered MINOR too */
	bool tracking; /* false: SYNC + incoming, not released yet */
	int pagemap_fd, clear_refs_fd;
	/* one harvest or release at a time; guards all below but pending */
	pthread_mutex_t lock;
	uint64_t *carry; /* pages for the next harvest */
	bool carry_any;
	bool all_dirty; /* the next harvest reports every page */
	struct page_region *vec;
	uint64_t *pmbuf; /* SOFTDIRTY: pagemap entries */
	/* SYNC */
	pthread_mutex_t fault_lock; /* pending, and each page's protection */
	uint64_t *pending; /* unprotected pages, written since the harvest */
	pthread_t thread;
	bool thread_running;
	atomic_bool stopping;
	int stop_fd; /* eventfd that ends the fault thread */
	struct fy_ratelimit rl; /* the fault thread's warnings */
};

static inline uint64_t kva_wp_page(const struct kva_wp *w, uint64_t addr)
{
	return (addr - (uintptr_t)w->mem) / FY_PAGE_SIZE;
}

/* kva_user_dirty.c. UFFDIO_WRITEPROTECT pages [first, first + n) on or off. */
int kva_wp_protect(struct kva_wp *w, uint64_t first, uint64_t n, bool on);

/*
 * kva_user_dirty_compat.c. SYNC: start the fault thread (every signal
 * blocked in it), stop it; re-protect then take pending, under fault_lock.
 */
int kva_wp_sync_start(struct kva_wp *w);
void kva_wp_sync_stop(struct kva_wp *w);
int kva_wp_sync_take(struct kva_wp *w, uint64_t *bm);
/*
 * SOFTDIRTY: whether soft-dirty works here (pagemap and clear_refs fds);
 * start (clear every bit); harvest (pages with bit 55 set, then clear).
 */
bool kva_wp_sd_works(int pm_fd, int cr_fd);
int kva_wp_sd_start(struct kva_wp *w);
int kva_wp_sd_take(struct kva_wp *w, uint64_t *bm);

#endif /* FERRY_KVA_USER_DIRTY_H */
