/* SPDX-License-Identifier: MIT */
#ifndef FERRY_POSTCOPY_PC_INT_H
#define FERRY_POSTCOPY_PC_INT_H

#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "postcopy/postcopy.h"

/*
 * Inside the fault server: its state, shared by its thread (pc_fault.c)
 * and its controls (pc_fault_ctl.c), which start the thread and read its
 * figures.
 */

#define SLOTS 64 /* pages in flight or waiting */
#define WAITERS 8 /* fault messages attached to one page */
#define PREPAGE_Q 4096 /* queue of pages for the puller (power of 2) */
#define PREPAGE_SELF_MAX 2 /* our own pre-page reads in flight */
#define BACKOFF_MIN_NS 2000000ULL
#define BACKOFF_MAX_NS 500000000ULL
/*
 * The defaults (zero values of the params), from bench/postcopy on this
 * 2-CPU machine, 3000 faults x 5 rounds, four runs: spinning 200 µs after
 * activity beat blocking in poll() at once by 6-10 µs of p50 on a quiet
 * machine (29-38 µs against 35-47 µs) and matched pure busy-polling,
 * which burns the second CPU for good; COPY and CONTINUE were within
 * noise of each other, COPY ahead in three runs of four, and COPY needs no
 * registration of guest RAM in the fault domain.
 */
#define PC_FAULT_SPIN_US 200
#define IDLE_SHRINK_NS 20000000ULL /* no fault for this long: shrink window */
#define DOM_POLL_NS 100000000ULL /* idle: poll the fault domain this often */
/* log-linear histogram: 64 sub-buckets per power of two of ns */
#define HSUB 6
#define HBUCKETS (64 << HSUB)

enum slot_kind {
	SLOT_FREE,
	SLOT_READ, /* our read of the page, posted or to repost */
	SLOT_OTHER, /* claimed by the puller: CONTINUE once it is there */
};

struct waiter {
	uint64_t t0; /* when the fault message was read */
	uint32_t tid; /* UFFD_FEATURE_THREAD_ID, 0 if absent */
};

struct slot {
	enum slot_kind kind;
	bool posted; /* a read is in flight */
	bool prepage; /* nobody waits: low priority */
	uint64_t page;
	struct rly_read rd; /* posted: the read as the scheduler took it */
	uint64_t t_post;
	uint8_t *buf; /* where the read lands */
	unsigned nwait;
	struct waiter w[WAITERS];
};

struct tidstat {
	uint32_t tid;
	uint64_t ns;
};

struct pc_fault {
	struct pc_fault_params p;
	uint8_t *staging; /* SLOTS pages, COPY mode */
	struct fab_mr *stage_mr, *map_mr;
	pthread_t thread;
	atomic_bool stop;

	/* holder, swapped in by the thread from set_holder */
	pthread_mutex_t lock;
	struct fab_ep *ep;
	struct fab_rkey rkey;
	struct fab_ep *new_ep;
	struct fab_rkey new_rkey;
	bool have_new;

	/*
	 * The holders' scheduler (relay/): NULL without relays. Holder i > 0
	 * is p.relay[i - 1]; need is a bitmap it keeps, unused here.
	 */
	struct rly *rly;
	uint64_t *need;
	bool lost[PC_FAULT_RELAYS]; /* failed a read: logged, down for good */

	struct slot slot[SLOTS];
	unsigned inflight, inflight_pre;

	/*
	 * stall: reads failing, faults waiting for the holder. stalled and
	 * stall_t0 are the thread's, written under lock: pc_fault_stats()
	 * reads them.
	 */
	bool stalled;
	/*
	 * The old holder's endpoint left reads held by the provider: their
	 * data may still land in our buffers (the staging pages, or in
	 * CONTINUE mode the memfd). No read is posted until none is held.
	 */
	bool held;
	uint64_t stall_t0, next_retry, backoff;

	/* pre-paging */
	uint64_t last_fault_page, last_fault_t;
	unsigned window;
	uint64_t pq[PREPAGE_Q];
	uint64_t pq_head, pq_tail; /* under lock */

	/* statistics, under lock */
	struct pc_fault_stats st;
	uint32_t *hist;
	struct tidstat tids[PC_FAULT_VCPUS];
};

static inline bool present_test(const struct pc_fault *fs, uint64_t page)
{
	return __atomic_load_n(&fs->p.present[page / 64], __ATOMIC_ACQUIRE) &
	       (1ULL << (page % 64));
}

static inline bool present_claim(struct pc_fault *fs, uint64_t page)
{
	return pc_fault_claim(fs->p.present, page);
}

/* The thread's body (arg: its struct pc_fault). */
void *pc_fault_thread(void *arg);
/* The pct-th percentile of the latency histogram h of n values, in ns. */
uint64_t pc_hist_pct(const uint32_t *h, uint64_t n, double pct);

#endif /* FERRY_POSTCOPY_PC_INT_H */
