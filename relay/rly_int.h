/* SPDX-License-Identifier: MIT */
#ifndef FERRY_RELAY_RLY_INT_H
#define FERRY_RELAY_RLY_INT_H

#include "relay/relay.h"

/*
 * Inside the scheduler: the holder set and what is known of each holder
 * (rly_hold.c), the shares and the choice of reads (rly_sched.c, which
 * calls rly_hold.c, never the other way).
 */

struct rly_holder {
	uint64_t id;
	struct rly_vrun *v; /* the copy's runs; NULL for the source */
	size_t nv;
	bool used, down;
	uint64_t bw; /* bytes/s, EWMA of completed reads; 0: not yet */
	uint64_t last_done; /* when its last read completed */
	double credit; /* rly_choose()'s weighted round robin */
	unsigned inflight;
	uint64_t inflight_pages, pages_done, fails;
};

/* A share: pages [lo, hi) read by owner, from cursor cur (wrapping). */
struct rly_seg {
	uint64_t lo, hi, cur;
	unsigned owner;
};

struct rly {
	uint64_t pages;
	uint64_t *need; /* the caller's */
	/*
	 * The generation needed per page: allocated with the first relay;
	 * until then (the source serves anything) only gen_max is kept, which
	 * the pages announced before start from (never older than needed).
	 */
	uint64_t *want;
	uint64_t gen_max;
	struct rly_holder h[RLY_HOLDERS_MAX];
	unsigned nh;
	struct rly_seg seg[RLY_SEGS_MAX];
	unsigned nseg;
	bool replan; /* the holder set changed: plan the shares again */
};

/* rly_hold.c */

/* May holder hi serve page p (its copy current)? */
bool rly_serves(const struct rly *r, unsigned hi, uint64_t p);
/* The first page of [p, end) that holder hi may not serve, or end. */
uint64_t rly_serve_end(const struct rly *r, unsigned hi, uint64_t p,
		       uint64_t end);
/* Holder hi's bandwidth for planning: measured, else the others' mean. */
double rly_bw(const struct rly *r, unsigned hi);
/* Is holder hi in use and up? */
bool rly_up(const struct rly *r, unsigned hi);
/* Is rd a read of a holder in use, inside the pages? */
bool rly_read_ok(const struct rly *r, const struct rly_read *rd);

#endif /* FERRY_RELAY_RLY_INT_H */
