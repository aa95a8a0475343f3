/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_SM_H
#define FERRY_MIGRATION_MIG_SM_H

#include <stdbool.h>
#include <stdio.h>

#include "protocol/protocol.h"

/*
 * The two state machines as tables (mig_sm.c): the phases migrations
 * show, each role's states, what a state implies, the legal moves, and
 * what the source does with each message. Pure: no migration, no I/O.
 */

enum nd_mig_phase {
	ND_MIG_PREPARE, /* destination starting its VM */
	ND_MIG_PRECOPY, /* rounds of pulls while the VM runs */
	ND_MIG_SWITCHOVER, /* VM paused on the source; last pull, state */
	ND_MIG_READY, /* destination: all here, state loaded, asks to resume */
	/* post-copy: the VM runs on the destination, pages still arrive */
	ND_MIG_POSTCOPY,
	/* the source decided: the VM resumes on the destination only */
	ND_MIG_COMMITTED,
	ND_MIG_COMPLETED,
	ND_MIG_FAILED,
	ND_MIG_CANCELLED,
};

/*
 * The state machines (mig_sm.c; docs/migration.md prints the tables).
 * A state is one of the role's enum; each shows as a phase above.
 */
enum nd_src_state {
	ND_SRC_NEW,
	ND_SRC_PREPARE,
	ND_SRC_PREPARE_ASKED,
	ND_SRC_PRECOPY,
	ND_SRC_PRECOPY_ASKED,
	ND_SRC_SWITCHOVER,
	ND_SRC_COMMITTED,
	ND_SRC_PC_SWITCHOVER,
	ND_SRC_PC_SWITCHOVER_LOST,
	ND_SRC_POSTCOPY,
	ND_SRC_POSTCOPY_LOST,
	ND_SRC_COMPLETED,
	ND_SRC_FAILED,
	ND_SRC_CANCELLED,
	ND_SRC_NSTATES
};

enum nd_dst_state {
	ND_DST_NEW,
	ND_DST_PREPARE,
	ND_DST_PRECOPY,
	ND_DST_SWITCHOVER,
	ND_DST_PC_SWITCHOVER,
	ND_DST_READY,
	ND_DST_POSTCOPY,
	ND_DST_COMMITTED,
	ND_DST_COMPLETED,
	ND_DST_FAILED,
	ND_DST_FAILED_UNTOLD,
	ND_DST_NSTATES
};

/* What a state implies (nd_sm_has()). */
#define ND_SM_PAUSED (1U << 0) /* source: the VM is paused here */
/* source: POSTCOPY sent, our VM runs again only on an ABORT before
 * RESUMED; destination: POSTCOPY came */
#define ND_SM_PC (1U << 1)
/* only the peer's answer ends it: local failures are ignored */
#define ND_SM_HELD (1U << 2)
#define ND_SM_LOST (1U << 3) /* source restarted: HOLDER_MAP is due */
#define ND_SM_RUNS (1U << 4) /* destination: the VM runs here */
#define ND_SM_END (1U << 5) /* completed, failed or cancelled */

/* A migration's state: one cell, written only by nd_sm_move(). */
struct nd_mig_sm {
	bool source; /* state is an enum nd_src_state, else nd_dst_state */
	unsigned state;
};

/* The state's name ("precopy+asked"), "?" out of range. */
const char *nd_sm_name(bool source, unsigned s);
/* The phase it shows as. */
enum nd_mig_phase nd_sm_phase(bool source, unsigned s);
/* Does state s imply any of flags (ND_SM_*)? */
bool nd_sm_has(bool source, unsigned s, unsigned flags);
/* Is from -> to in the table? */
bool nd_sm_legal(bool source, unsigned from, unsigned to);
/* Move sm to state to: 0, or -EINVAL for a move not in the table. */
int nd_sm_move(struct nd_mig_sm *sm, unsigned to);
/* What the source does with a message from its destination. */
enum nd_src_act {
	ND_ACT_IGNORE, /* not in this state: dropped */
	ND_ACT_REFUSE, /* the same, logged with why */
	ND_ACT_START, /* HOLDER_MAP, D's yes: round 0 */
	ND_ACT_PROGRESS, /* D's counters: the round may be done */
	ND_ACT_STATS, /* PC_STATS kept for reports */
	ND_ACT_COMMIT, /* READY (or an old D's COMMIT): commit, RESUME */
	ND_ACT_RESUME_AGAIN, /* READY again: RESUME again */
	ND_ACT_RUNS_THERE, /* RESUMED after POSTCOPY: serve its pages */
	ND_ACT_COMPLETE, /* RESUMED after commit, COMMIT after post-copy */
	ND_ACT_ABANDON, /* ABORT: D's copy never runs; ours does */
	ND_ACT_FAIL, /* ERROR before the commit */
};

/*
 * The source's answer to message type t in state st (still sending
 * checksums: csums), the commit window's decisions included; *why says
 * why for ND_ACT_REFUSE.
 */
enum nd_src_act nd_src_on(enum nd_src_state st, enum proto_type t, bool csums,
			  const char **why);
/* The role's table in markdown, as docs/migration.md shows it. */
void nd_sm_print(FILE *f, bool source);
/* Fire "dst:round:N" (the destination's thread, at each announcement). */
void nd_dst_round_fault(unsigned round);
/* Fire the fault point of moving to state to, when (before, after). */
bool nd_sm_fault(bool source, const char *when, unsigned to);

#endif /* FERRY_MIGRATION_MIG_SM_H */
