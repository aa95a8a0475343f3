/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_SRC_H
#define FERRY_MIGRATION_MIG_SRC_H

#include "migration/mig_int.h"

/*
 * The source's engine inside: its actions (mig_src_io.c) and its round
 * accounting and auto-converge (mig_conv.c), for its decisions
 * (mig_src.c) and the unit tests.
 */

/* mig_src_retarget.c and the relay's release (mig_src_io.c) */

/*
 * `ferry retarget`: source migration id goes on to peer `to`; the old
 * destination becomes a relay (mig_src_retarget.c). 0, or -errno with a
 * text in err (nothing changed). The caller (mig_ctl.c) found id running
 * from here and `to` another peer; this checks the rest.
 */
int mig_src_retarget(struct mig_env *n, uint64_t id, const char *to, char *err,
		     size_t errlen);
/*
 * A message about source migration m from p, one of its relays (not
 * freed): its HOLDER_MAP, or its end (ABORT, ERROR).
 */
void mig_src_relay_msg(struct mig *m, struct mig_peer *p,
		       struct proto_msg *msg);
/*
 * Free the relays' copies: ABORT "released: why" to each not released
 * yet; one that cannot be reached now is told by mig_src_relays_tick().
 * The record then lists the relays left.
 */
void mig_src_relay_release(struct mig *m, const char *why);
/* Relay rl is done (released, or it gave up): forget its map. */
void mig_src_relay_forget(struct mig_relay *rl);
/* Release m's relays still untold (after our restart) that answer now. */
void mig_src_relays_tick(struct mig *m, uint64_t now);
/*
 * A restarted source: the relays its record r names, to release once each
 * answers (a restarted source never goes on with pre-copy, so nothing
 * reads their copies now). Names that are no peer now are logged.
 */
void mig_src_relays_recorded(struct mig *m, const struct mig_record *r);

/* The running source migration id whose relay (not released) is p. */
struct mig *mig_find_relay(struct mig_env *n, uint64_t id,
			   const struct mig_peer *p);

/* mig_src_io.c: the source's actions, for mig_src.c */

/*
 * Source: send the round's dirty runs (m->todo, at least one page) as one
 * DELTA_SET, encoded against m->cache, which is updated. 0 or -errno.
 */
int mig_delta_round(struct mig *m);

/*
 * Start announcing runs (owned by m now) as round m->round at gen. Where
 * registering pins, registers what of them is not yet and sends
 * HOLDER_MAP again first. 0, or -errno once m has failed.
 */
int mig_src_round_begin(struct mig *m, struct fy_run *runs, size_t nr);
/*
 * Send DIRTY_SETs for what is left of the round: all of it, or with
 * --max-bandwidth (paced; not the final round) a slice per 100 ms.
 * Returns 0 or -errno (the migration failed).
 */
int mig_src_announce(struct mig *m, bool paced);
/* The same, as pages or, with --compress delta after round 0, deltas. */
int mig_src_announce_round(struct mig *m, bool paced);
/* Harvest the dirty log into *runs (malloc'ed); m->gen the new one. */
int mig_src_harvest(struct mig *m, struct fy_run **runs, size_t *nr,
		    uint64_t *dirty);
/* SWITCHOVER, POSTCOPY, RESUME: the migration and its generation. */
int mig_src_send_gen(struct mig *m, enum proto_type t);
/* MIGRATE_PREPARE to m's peer: m's VM, its mode and shape. 0 or -errno. */
int mig_src_send_prepare(struct mig *m);
/* Tell D where our copy is: after its "yes", and after our restart. */
int mig_src_send_holder_map(struct mig *m);
/*
 * Our copy's registration is not the one the last HOLDER_MAP gave (verbs:
 * the device was removed and came back, every registration made anew).
 */
bool mig_src_rekeyed(const struct mig *m);
/* The new destination of a retarget said yes: go on with it. */
void mig_src_retargeted(struct mig *m);
/* RESUME: D may run the VM now; again after a second if unanswered. */
void mig_src_send_resume(struct mig *m, uint64_t now);
/* The source's copy is no longer needed: the VM exits here. */
void mig_src_drop_vm(struct mig *m);
/* mig_conv.c: the source's round accounting and auto-converge */

/* What the source does after a round. */
enum mig_src_next {
	MIG_NEXT_ROUND, /* announce the dirty pages as the next round */
	MIG_NEXT_SWITCHOVER, /* the rest fits the downtime limit (maybe raised) */
	MIG_NEXT_POSTCOPY, /* hybrid: post-copy now */
	MIG_NEXT_FAIL, /* --max-rounds reached: did not converge */
};

/* A round of m->round_pages took elapsed_ns: update the bandwidth m->bw. */
void mig_src_round_bw(struct mig *m, uint64_t elapsed_ns);
/*
 * dirty pages were harvested at now: the dirty rate, and the expected
 * downtime in ms of moving them (UINT64_MAX while the bandwidth is not
 * known), which is returned.
 */
uint64_t mig_src_estimate(struct mig *m, uint64_t dirty, uint64_t now);
/*
 * Round m->round ended with dirty pages and expected downtime est ms:
 * count its progress (m->stall), then decide, from m's options and
 * figures only. Auto-converge by downtime raises m->limit_ms here; by
 * throttle, *throttle is the percentage to apply (mig_throttle()), or
 * 0. Notes what it did in m->actions.
 */
enum mig_src_next mig_src_decide(struct mig *m, uint64_t dirty, uint64_t est,
				 unsigned *throttle);
/* Throttle m's source VM to pct percent (the adapter's THROTTLE). */
void mig_throttle(struct mig *m, unsigned pct);
/* Lift the throttle of m's source VM, if any: it runs at full speed. */
void mig_unthrottle(struct mig *m);

#endif /* FERRY_MIGRATION_MIG_SRC_H */
