/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_SRC_H
#define FERRY_MIGRATION_MIG_SRC_H

#include "migration/mig_int.h"

/*
 * The source's engine inside: its actions (mig_src_io.c) and its round
 * accounting and auto-converge (mig_conv.c), for its decisions
 * (mig_src.c) and the unit tests.
 */

/* mig_src_io.c: the source's actions, for mig_src.c */

/*
 * Source: send the round's dirty runs (m->todo, at least one page) as one
 * DELTA_SET, encoded against m->cache, which is updated. 0 or -errno.
 */
int nd_mig_delta_round(struct nd_mig *m);

/* Start announcing runs (owned by m now) as round m->round at gen. */
void nd_src_round_begin(struct nd_mig *m, struct fy_run *runs, size_t nr);
/*
 * Send DIRTY_SETs for what is left of the round: all of it, or with
 * --max-bandwidth (paced; not the final round) a slice per 100 ms.
 * Returns 0 or -errno (the migration failed).
 */
int nd_src_announce(struct nd_mig *m, bool paced);
/* The same, as pages or, with --compress delta after round 0, deltas. */
int nd_src_announce_round(struct nd_mig *m, bool paced);
/* Harvest the dirty log into *runs (malloc'ed); m->gen the new one. */
int nd_src_harvest(struct nd_mig *m, struct fy_run **runs, size_t *nr,
		   uint64_t *dirty);
/* SWITCHOVER, POSTCOPY, RESUME: the migration and its generation. */
int nd_src_send_gen(struct nd_mig *m, enum proto_type t);
/* Tell D where our copy is: after its "yes", and after our restart. */
int nd_src_send_holder_map(struct nd_mig *m);
/* RESUME: D may run the VM now; again after a second if unanswered. */
void nd_src_send_resume(struct nd_mig *m, uint64_t now);
/* The source's copy is no longer needed: the VM exits here. */
void nd_src_drop_vm(struct nd_mig *m);
/* mig_conv.c: the source's round accounting and auto-converge */

/* What the source does after a round. */
enum nd_src_next {
	ND_NEXT_ROUND, /* announce the dirty pages as the next round */
	ND_NEXT_SWITCHOVER, /* the rest fits the downtime limit (maybe raised) */
	ND_NEXT_POSTCOPY, /* hybrid: post-copy now */
	ND_NEXT_FAIL, /* --max-rounds reached: did not converge */
};

/* A round of m->round_pages took elapsed_ns: update the bandwidth m->bw. */
void nd_src_round_bw(struct nd_mig *m, uint64_t elapsed_ns);
/*
 * dirty pages were harvested at now: the dirty rate, and the expected
 * downtime in ms of moving them (UINT64_MAX while the bandwidth is not
 * known), which is returned.
 */
uint64_t nd_src_estimate(struct nd_mig *m, uint64_t dirty, uint64_t now);
/*
 * Round m->round ended with dirty pages and expected downtime est ms:
 * count its progress (m->stall), then decide, from m's options and
 * figures only. Auto-converge by downtime raises m->limit_ms here; by
 * throttle, *throttle is the percentage to apply (nd_mig_throttle()), or
 * 0. Notes what it did in m->actions.
 */
enum nd_src_next nd_src_next(struct nd_mig *m, uint64_t dirty, uint64_t est,
			     unsigned *throttle);
/* Throttle m's source VM to pct percent (the adapter's THROTTLE). */
void nd_mig_throttle(struct nd_mig *m, unsigned pct);
/* Lift the throttle of m's source VM, if any: it runs at full speed. */
void nd_mig_unthrottle(struct nd_mig *m);

#endif /* FERRY_MIGRATION_MIG_SRC_H */
