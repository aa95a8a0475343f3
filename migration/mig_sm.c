// SPDX-License-Identifier: MIT
/*
 * The two state machines of a migration, as tables: the source's and the
 * destination's states, what each one reports as its phase, and the legal
 * moves. mig_sm_move() is the only writer of a state; the engine's
 * transition functions (mig_to(), mig_dst_to()) call it, then log,
 * record and wake. docs/migration.md prints the tables as mig_sm_print()
 * writes them, and tests/node/test_mig_sm.c checks that it does.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/fault.h"

#include "common/util.h"
#include "migration/mig_int.h"

static const char *const phase_names[] = {
	[MIG_PREPARE] = "prepare",	 [MIG_PRECOPY] = "precopy",
	[MIG_SWITCHOVER] = "switchover", [MIG_READY] = "ready",
	[MIG_POSTCOPY] = "postcopy",	 [MIG_COMMITTED] = "committed",
	[MIG_COMPLETED] = "completed",	 [MIG_FAILED] = "failed",
	[MIG_CANCELLED] = "cancelled",	 [MIG_RELAY] = "relay",
	[MIG_RELEASED] = "released",
};

const char *mig_phase_name(enum mig_phase p)
{
	return p < ARRAY_SIZE(phase_names) ? phase_names[p] : "?";
}

int mig_phase_parse(const char *s)
{
	for (unsigned i = 0; i < ARRAY_SIZE(phase_names); i++)
		if (!strcmp(s, phase_names[i]))
			return i;
	return -EINVAL;
}

struct sm_state {
	const char *name;
	enum mig_phase phase; /* what `ferry migrations` shows */
	unsigned flags; /* MIG_SM_* */
	uint32_t next; /* bit t: a move to state t is legal */
	const char *what;
};

#define TO(s) (1U << (s))

static const struct sm_state src_states[MIG_SRC_NSTATES] = {
	[MIG_SRC_NEW] = { "new", MIG_PREPARE, 0,
			  TO(MIG_SRC_PREPARE) | TO(MIG_SRC_COMMITTED) |
				  TO(MIG_SRC_PC_SWITCHOVER_LOST) |
				  TO(MIG_SRC_POSTCOPY_LOST) |
				  TO(MIG_SRC_COMPLETED) | TO(MIG_SRC_FAILED) |
				  TO(MIG_SRC_CANCELLED),
			  "being set up (guest RAM being registered), or "
			  "read from its record by a restarted ferryd" },
	[MIG_SRC_PREPARE] = { "prepare", MIG_PREPARE, 0,
			      TO(MIG_SRC_PREPARE_ASKED) | TO(MIG_SRC_PRECOPY) |
				      TO(MIG_SRC_FAILED) |
				      TO(MIG_SRC_CANCELLED),
			      "MIGRATE_PREPARE sent: the destination starts "
			      "its VM" },
	[MIG_SRC_PREPARE_ASKED] = { "prepare+asked", MIG_PREPARE, 0,
				    TO(MIG_SRC_PRECOPY_ASKED) |
					    TO(MIG_SRC_FAILED) |
					    TO(MIG_SRC_CANCELLED),
				    "the same; `ferry migrate-postcopy` came" },
	[MIG_SRC_PRECOPY] = { "precopy", MIG_PRECOPY, 0,
			      TO(MIG_SRC_PRECOPY_ASKED) | TO(MIG_SRC_RETARGET) |
				      TO(MIG_SRC_SWITCHOVER) |
				      TO(MIG_SRC_PC_SWITCHOVER) |
				      TO(MIG_SRC_FAILED) |
				      TO(MIG_SRC_CANCELLED),
			      "rounds of pulls while the VM runs here" },
	[MIG_SRC_PRECOPY_ASKED] = { "precopy+asked", MIG_PRECOPY, 0,
				    TO(MIG_SRC_SWITCHOVER) |
					    TO(MIG_SRC_PC_SWITCHOVER) |
					    TO(MIG_SRC_FAILED) |
					    TO(MIG_SRC_CANCELLED),
				    "the same; post-copy at the next tick" },
	[MIG_SRC_RETARGET] = { "retarget", MIG_PRECOPY, 0,
			       TO(MIG_SRC_PRECOPY) | TO(MIG_SRC_FAILED) |
				       TO(MIG_SRC_CANCELLED),
			       "RETARGET sent: the old destination becomes a "
			       "relay; MIGRATE_PREPARE to the new one, whose "
			       "yes starts its pulls" },
	[MIG_SRC_SWITCHOVER] = { "switchover", MIG_SWITCHOVER, MIG_SM_PAUSED,
				 TO(MIG_SRC_COMMITTED) | TO(MIG_SRC_FAILED),
				 "VM paused: the last round, checksums, STATE; "
				 "waits for READY" },
	[MIG_SRC_COMMITTED] = { "committed", MIG_COMMITTED,
				MIG_SM_PAUSED | MIG_SM_HELD,
				TO(MIG_SRC_COMPLETED) | TO(MIG_SRC_FAILED),
				"recorded, then RESUME until RESUMED; FAILED "
				"only on ABORT or force-resume" },
	[MIG_SRC_PC_SWITCHOVER] = { "pc-switchover", MIG_SWITCHOVER,
				    MIG_SM_PAUSED | MIG_SM_PC,
				    TO(MIG_SRC_POSTCOPY) | TO(MIG_SRC_FAILED),
				    "VM paused for good: POSTCOPY, the last "
				    "pages, STATE; FAILED only before "
				    "RESUMED" },
	[MIG_SRC_PC_SWITCHOVER_LOST] = { "pc-switchover+lost", MIG_SWITCHOVER,
					 MIG_SM_PAUSED | MIG_SM_PC |
						 MIG_SM_LOST,
					 TO(MIG_SRC_PC_SWITCHOVER) |
						 TO(MIG_SRC_POSTCOPY_LOST) |
						 TO(MIG_SRC_FAILED),
					 "the same after our restart: "
					 "HOLDER_MAP again once the peer "
					 "answers" },
	[MIG_SRC_POSTCOPY] = { "postcopy", MIG_POSTCOPY,
			       MIG_SM_PAUSED | MIG_SM_PC | MIG_SM_HELD,
			       TO(MIG_SRC_COMPLETED),
			       "the VM runs on the destination: we serve its "
			       "pages until COMMIT" },
	[MIG_SRC_POSTCOPY_LOST] = { "postcopy+lost", MIG_POSTCOPY,
				    MIG_SM_PAUSED | MIG_SM_PC | MIG_SM_HELD |
					    MIG_SM_LOST,
				    TO(MIG_SRC_POSTCOPY) |
					    TO(MIG_SRC_COMPLETED),
				    "the same after our restart: HOLDER_MAP "
				    "again once the peer answers" },
	[MIG_SRC_COMPLETED] = { "completed", MIG_COMPLETED, MIG_SM_END, 0,
				"the VM runs on the destination; ours exited" },
	[MIG_SRC_FAILED] = { "failed", MIG_FAILED, MIG_SM_END, 0,
			     "the VM runs here" },
	[MIG_SRC_CANCELLED] = { "cancelled", MIG_CANCELLED, MIG_SM_END, 0,
				"the VM runs here" },
};

static const struct sm_state dst_states[MIG_DST_NSTATES] = {
	[MIG_DST_NEW] = { "new", MIG_PREPARE, 0,
			  TO(MIG_DST_PREPARE) | TO(MIG_DST_COMPLETED) |
				  TO(MIG_DST_FAILED) |
				  TO(MIG_DST_FAILED_UNTOLD),
			  "being set up, or read from its record by a "
			  "restarted ferryd" },
	[MIG_DST_PREPARE] = { "prepare", MIG_PREPARE, 0,
			      TO(MIG_DST_PRECOPY) | TO(MIG_DST_FAILED),
			      "MIGRATE_PREPARE accepted: our VM starts, "
			      "HOLDER_MAP is our yes" },
	[MIG_DST_PRECOPY] = { "precopy", MIG_PRECOPY, 0,
			      TO(MIG_DST_SWITCHOVER) |
				      TO(MIG_DST_PC_SWITCHOVER) |
				      TO(MIG_DST_RELAY) | TO(MIG_DST_FAILED),
			      "pulling each round's DIRTY_SETs" },
	[MIG_DST_SWITCHOVER] = { "switchover", MIG_SWITCHOVER, 0,
				 TO(MIG_DST_READY) | TO(MIG_DST_FAILED),
				 "SWITCHOVER came: the last pulls, checksums, "
				 "STATE" },
	[MIG_DST_PC_SWITCHOVER] = { "pc-switchover", MIG_SWITCHOVER, MIG_SM_PC,
				    TO(MIG_DST_POSTCOPY) | TO(MIG_DST_FAILED),
				    "POSTCOPY came: the reads in flight, "
				    "STATE, then the VM runs here" },
	[MIG_DST_READY] = { "ready", MIG_READY, MIG_SM_HELD,
			    TO(MIG_DST_COMMITTED) | TO(MIG_DST_FAILED),
			    "all pages and the state here: READY until "
			    "RESUME" },
	[MIG_DST_POSTCOPY] = { "postcopy", MIG_POSTCOPY,
			       MIG_SM_PC | MIG_SM_RUNS,
			       TO(MIG_DST_COMPLETED) | TO(MIG_DST_FAILED),
			       "the VM runs here; faults and the background "
			       "pull fetch the rest; FAILED leaves it "
			       "running" },
	[MIG_DST_COMMITTED] = { "committed", MIG_COMMITTED, MIG_SM_RUNS,
				TO(MIG_DST_COMPLETED),
				"RESUME came: recorded, the VM resumed, "
				"RESUMED sent" },
	[MIG_DST_RELAY] = { "relay", MIG_RELAY, 0,
			    TO(MIG_DST_RELEASED) | TO(MIG_DST_FAILED),
			    "RETARGET came: pulls stopped, our copy is "
			    "served to the new destination until the source "
			    "releases it" },
	[MIG_DST_COMPLETED] = { "completed", MIG_COMPLETED, MIG_SM_END, 0,
				"the VM is this node's" },
	[MIG_DST_RELEASED] = { "released", MIG_RELEASED, MIG_SM_END, 0,
			       "the source released our copy: the VM went on "
			       "elsewhere" },
	[MIG_DST_FAILED] = { "failed", MIG_FAILED, MIG_SM_END, 0,
			     "our copy is gone (or, after post-copy began, "
			     "left running)" },
	[MIG_DST_FAILED_UNTOLD] = { "failed+untold", MIG_FAILED, MIG_SM_END,
				    TO(MIG_DST_FAILED),
				    "ferryd restarted and removed our copy: "
				    "ABORT once the source answers" },
};

static const struct sm_state *sm_state(bool source, unsigned s)
{
	if (source)
		return s < MIG_SRC_NSTATES ? &src_states[s] : NULL;
	return s < MIG_DST_NSTATES ? &dst_states[s] : NULL;
}

const char *mig_sm_name(bool source, unsigned s)
{
	const struct sm_state *st = sm_state(source, s);

	return st ? st->name : "?";
}

enum mig_phase mig_sm_phase(bool source, unsigned s)
{
	const struct sm_state *st = sm_state(source, s);

	return st ? st->phase : MIG_FAILED;
}

bool mig_sm_has(bool source, unsigned s, unsigned flags)
{
	const struct sm_state *st = sm_state(source, s);

	return st && (st->flags & flags);
}

bool mig_sm_legal(bool source, unsigned from, unsigned to)
{
	const struct sm_state *st = sm_state(source, from);

	return st && sm_state(source, to) && (st->next & TO(to));
}

int mig_sm_move(struct mig_sm *sm, unsigned to)
{
	if (!mig_sm_legal(sm->source, sm->state, to))
		return -EINVAL;
	sm->state = to;
	return 0;
}

bool mig_sm_fault(bool source, const char *when, unsigned to)
{
	char point[FY_FAULT_NAME_MAX + 1];

	snprintf(point, sizeof(point), "%s:%s:%s", source ? "src" : "dst", when,
		 mig_sm_name(source, to));
	return fy_fault(point);
}

void mig_dst_round_fault(unsigned round)
{
	char point[FY_FAULT_NAME_MAX + 1];

	snprintf(point, sizeof(point), "dst:round:%u", round);
	fy_fault(point);
}

bool mig_fault_known(const char *point)
{
	static const char round[] = "dst:round:";
	const char *num = point + sizeof(round) - 1;
	size_t digits;

	if (!strcmp(point, "dst:spawned") || !strcmp(point, "dst:retarget"))
		return true;
	/* dst:round:N, N in decimal without a leading zero */
	if (!strncmp(point, round, sizeof(round) - 1)) {
		digits = strspn(num, "0123456789");
		return digits && digits <= 9 && !num[digits] &&
		       (num[0] != '0' || digits == 1);
	}
	for (int role = 0; role < 2; role++) {
		unsigned n = role ? MIG_SRC_NSTATES : MIG_DST_NSTATES;

		for (unsigned s = 0; s < n; s++) {
			char a[FY_FAULT_NAME_MAX + 1], b[FY_FAULT_NAME_MAX + 1];
			const char *r = role ? "src" : "dst";

			snprintf(a, sizeof(a), "%s:before:%s", r,
				 mig_sm_name(role, s));
			snprintf(b, sizeof(b), "%s:after:%s", r,
				 mig_sm_name(role, s));
			if (!strcmp(point, a) || !strcmp(point, b))
				return true;
		}
	}
	return false;
}

enum mig_src_act mig_src_on(enum mig_src_state st, enum proto_type t,
			    bool csums, const char **why)
{
	bool pc = mig_sm_has(true, st, MIG_SM_PC);
	bool running = pc && mig_sm_has(true, st, MIG_SM_HELD);

	*why = NULL;
	if (mig_sm_has(true, st, MIG_SM_END))
		return MIG_ACT_IGNORE;
	switch (t) {
	case PROTO_HOLDER_MAP:
		if (st == MIG_SRC_RETARGET)
			return MIG_ACT_RETARGETED;
		return st == MIG_SRC_PREPARE || st == MIG_SRC_PREPARE_ASKED
			       ? MIG_ACT_START
			       : MIG_ACT_IGNORE;
	case PROTO_PROGRESS:
		return st == MIG_SRC_NEW || st == MIG_SRC_PREPARE ||
				       st == MIG_SRC_PREPARE_ASKED ||
				       st == MIG_SRC_RETARGET ||
				       st == MIG_SRC_COMMITTED
			       ? MIG_ACT_IGNORE
			       : MIG_ACT_PROGRESS;
	case PROTO_PC_STATS:
		return MIG_ACT_STATS;
	case PROTO_COMMIT:
		/* an older D decides itself at SWITCHOVER: ours never runs */
		if (st == MIG_SRC_SWITCHOVER)
			return MIG_ACT_COMMIT;
		return running ? MIG_ACT_COMPLETE : MIG_ACT_IGNORE;
	case PROTO_READY:
		if (st == MIG_SRC_SWITCHOVER)
			return csums ? MIG_ACT_IGNORE : MIG_ACT_COMMIT;
		return st == MIG_SRC_COMMITTED ? MIG_ACT_RESUME_AGAIN
					       : MIG_ACT_IGNORE;
	case PROTO_RESUMED:
		if (st == MIG_SRC_COMMITTED)
			return MIG_ACT_COMPLETE;
		return pc && !running ? MIG_ACT_RUNS_THERE : MIG_ACT_IGNORE;
	case PROTO_ABORT:
		/* the VM ran there: ours must not run again */
		if (running) {
			*why = "ABORT during post-copy ignored";
			return MIG_ACT_REFUSE;
		}
		/* after our commit too: D says its VM never ran, nor will */
		return MIG_ACT_ABANDON;
	case PROTO_ERROR:
		/* not D's answer: RESUME goes on until it is */
		if (st == MIG_SRC_COMMITTED) {
			*why = "ERROR after commit ignored";
			return MIG_ACT_REFUSE;
		}
		return MIG_ACT_FAIL;
	default:
		*why = "unexpected message";
		return MIG_ACT_REFUSE;
	}
}

static const char *const flag_names[] = {
	"paused",	  "post-copy",	  "commit window",
	"holder map due", "VM runs here", "ended",
};

void mig_sm_print(FILE *f, bool source)
{
	unsigned n = source ? MIG_SRC_NSTATES : MIG_DST_NSTATES;

	fprintf(f, "| state | shown as | implies | legal next states | meaning "
		   "|\n|---|---|---|---|---|\n");
	for (unsigned s = 0; s < n; s++) {
		const struct sm_state *st = sm_state(source, s);
		const char *sep = "";

		fprintf(f, "| `%s` | %s | ", st->name,
			mig_phase_name(st->phase));
		for (unsigned b = 0; b < ARRAY_SIZE(flag_names); b++) {
			if (st->flags & (1U << b)) {
				fprintf(f, "%s%s", sep, flag_names[b]);
				sep = ", ";
			}
		}
		fprintf(f, " | ");
		sep = "";
		for (unsigned t = 0; t < n; t++) {
			if (st->next & TO(t)) {
				fprintf(f, "%s`%s`", sep,
					sm_state(source, t)->name);
				sep = ", ";
			}
		}
		fprintf(f, "%s | %s |\n", *sep ? "" : "none", st->what);
	}
}
