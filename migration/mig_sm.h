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

enum mig_phase {
	MIG_PREPARE, /* destination starting its VM */
	MIG_PRECOPY, /* rounds of pulls while the VM runs */
	MIG_SWITCHOVER, /* VM paused on the source; last pull, state */
	MIG_READY, /* destination: all here, state loaded, asks to resume */
	/* post-copy: the VM runs on the destination, pages still arrive */
	MIG_POSTCOPY,
	/* the source decided: the VM resumes on the destination only */
	MIG_COMMITTED,
	/* the old destination of a retarget: serves what it holds */
	MIG_RELAY,
	MIG_COMPLETED,
	MIG_FAILED,
	MIG_CANCELLED,
	MIG_RELEASED, /* the relay's copy is freed: it ended */
};

/*
 * The state machines (mig_sm.c; docs/migration.md prints the tables).
 * A state is one of the role's enum; each shows as a phase above.
 */
enum mig_src_state {
	MIG_SRC_NEW,
	MIG_SRC_PREPARE,
	MIG_SRC_PREPARE_ASKED,
	MIG_SRC_PRECOPY,
	MIG_SRC_PRECOPY_ASKED,
	MIG_SRC_RETARGET,
	MIG_SRC_SWITCHOVER,
	MIG_SRC_COMMITTED,
	MIG_SRC_PC_SWITCHOVER,
	MIG_SRC_PC_SWITCHOVER_LOST,
	MIG_SRC_POSTCOPY,
	MIG_SRC_POSTCOPY_LOST,
	MIG_SRC_COMPLETED,
	MIG_SRC_FAILED,
	MIG_SRC_CANCELLED,
	MIG_SRC_NSTATES
};

enum mig_dst_state {
	MIG_DST_NEW,
	MIG_DST_PREPARE,
	MIG_DST_PRECOPY,
	MIG_DST_SWITCHOVER,
	MIG_DST_PC_SWITCHOVER,
	MIG_DST_READY,
	MIG_DST_POSTCOPY,
	MIG_DST_COMMITTED,
	MIG_DST_RELAY,
	MIG_DST_COMPLETED,
	MIG_DST_RELEASED,
	MIG_DST_FAILED,
	MIG_DST_FAILED_UNTOLD,
	MIG_DST_NSTATES
};

/* What a state implies (mig_sm_has()). */
#define MIG_SM_PAUSED (1U << 0) /* source: the VM is paused here */
/* source: POSTCOPY sent, our VM runs again only on an ABORT before
 * RESUMED; destination: POSTCOPY came */
#define MIG_SM_PC (1U << 1)
/* only the peer's answer ends it: local failures are ignored */
#define MIG_SM_HELD (1U << 2)
#define MIG_SM_LOST (1U << 3) /* source restarted: HOLDER_MAP is due */
#define MIG_SM_RUNS (1U << 4) /* destination: the VM runs here */
#define MIG_SM_END (1U << 5) /* completed, failed or cancelled */

/* A migration's state: one cell, written only by mig_sm_move(). */
struct mig_sm {
	bool source; /* state is an enum mig_src_state, else mig_dst_state */
	unsigned state;
};

/* The state's name ("precopy+asked"), "?" out of range. */
const char *mig_sm_name(bool source, unsigned s);
/* The phase it shows as. */
enum mig_phase mig_sm_phase(bool source, unsigned s);
/* Does state s imply any of flags (MIG_SM_*)? */
bool mig_sm_has(bool source, unsigned s, unsigned flags);
/* Is from -> to in the table? */
bool mig_sm_legal(bool source, unsigned from, unsigned to);
/* Move sm to state to: 0, or -EINVAL for a move not in the table. */
int mig_sm_move(struct mig_sm *sm, unsigned to);
/* What the source does with a message from its destination. */
enum mig_src_act {
	MIG_ACT_IGNORE, /* not in this state: dropped */
	MIG_ACT_REFUSE, /* the same, logged with why */
	MIG_ACT_START, /* HOLDER_MAP, D's yes: round 0 */
	MIG_ACT_RETARGETED, /* HOLDER_MAP, the new D's yes: all it needs */
	MIG_ACT_PROGRESS, /* D's counters: the round may be done */
	MIG_ACT_STATS, /* PC_STATS kept for reports */
	MIG_ACT_COMMIT, /* READY (or an old D's COMMIT): commit, RESUME */
	MIG_ACT_RESUME_AGAIN, /* READY again: RESUME again */
	MIG_ACT_RUNS_THERE, /* RESUMED after POSTCOPY: serve its pages */
	MIG_ACT_COMPLETE, /* RESUMED after commit, COMMIT after post-copy */
	MIG_ACT_ABANDON, /* ABORT: D's copy never runs; ours does */
	MIG_ACT_FAIL, /* ERROR before the commit */
};

/*
 * The source's answer to message type t in state st (still sending
 * checksums: csums), the commit window's decisions included; *why says
 * why for MIG_ACT_REFUSE.
 */
enum mig_src_act mig_src_on(enum mig_src_state st, enum proto_type t,
			    bool csums, const char **why);
/* The role's table in markdown, as docs/migration.md shows it. */
void mig_sm_print(FILE *f, bool source);
/* Fire "dst:round:N" (the destination's thread, at each announcement). */
void mig_dst_round_fault(unsigned round);
/* Fire the fault point of moving to state to, when (before, after). */
bool mig_sm_fault(bool source, const char *when, unsigned to);

#endif /* FERRY_MIGRATION_MIG_SM_H */
