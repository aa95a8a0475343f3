// SPDX-License-Identifier: MIT
/*
 * The two state machines of a migration, as tables: the source's and the
 * destination's states, what each one reports as its phase, and the legal
 * moves. nd_sm_move() is the only writer of a state; the engine's
 * transition functions (nd_mig_to(), nd_dst_to()) call it, then log,
 * record and wake. docs/migration.md prints the tables as nd_sm_print()
 * writes them, and tests/node/test_mig_sm.c checks that it does.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/fault.h"

#include "common/util.h"
#include "migration/mig_int.h"

static const char *const phase_names[] = {
	[ND_MIG_PREPARE] = "prepare",	    [ND_MIG_PRECOPY] = "precopy",
	[ND_MIG_SWITCHOVER] = "switchover", [ND_MIG_READY] = "ready",
	[ND_MIG_POSTCOPY] = "postcopy",	    [ND_MIG_COMMITTED] = "committed",
	[ND_MIG_COMPLETED] = "completed",   [ND_MIG_FAILED] = "failed",
	[ND_MIG_CANCELLED] = "cancelled",
};

const char *nd_mig_phase_name(enum nd_mig_phase p)
{
	return p < ARRAY_SIZE(phase_names) ? phase_names[p] : "?";
}

int nd_mig_phase_parse(const char *s)
{
	for (unsigned i = 0; i < ARRAY_SIZE(phase_names); i++)
		if (!strcmp(s, phase_names[i]))
			return i;
	return -EINVAL;
}

struct sm_state {
	const char *name;
	enum nd_mig_phase phase; /* what `ferry migrations` shows */
	unsigned flags; /* ND_SM_* */
	uint32_t next; /* bit t: a move to state t is legal */
	const char *what;
};

#define TO(s) (1U << (s))

static const struct sm_state src_states[ND_SRC_NSTATES] = {
	[ND_SRC_NEW] = { "new", ND_MIG_PREPARE, 0,
			 TO(ND_SRC_PREPARE) | TO(ND_SRC_COMMITTED) |
				 TO(ND_SRC_PC_SWITCHOVER_LOST) |
				 TO(ND_SRC_POSTCOPY_LOST) |
				 TO(ND_SRC_COMPLETED) | TO(ND_SRC_FAILED),
			 "being set up, or read from its record by a "
			 "restarted ferryd" },
	[ND_SRC_PREPARE] = { "prepare", ND_MIG_PREPARE, 0,
			     TO(ND_SRC_PREPARE_ASKED) | TO(ND_SRC_PRECOPY) |
				     TO(ND_SRC_FAILED) | TO(ND_SRC_CANCELLED),
			     "MIGRATE_PREPARE sent: the destination starts "
			     "its VM" },
	[ND_SRC_PREPARE_ASKED] = { "prepare+asked", ND_MIG_PREPARE, 0,
				   TO(ND_SRC_PRECOPY_ASKED) |
					   TO(ND_SRC_FAILED) |
					   TO(ND_SRC_CANCELLED),
				   "the same; `ferry migrate-postcopy` came" },
	[ND_SRC_PRECOPY] = { "precopy", ND_MIG_PRECOPY, 0,
			     TO(ND_SRC_PRECOPY_ASKED) | TO(ND_SRC_SWITCHOVER) |
				     TO(ND_SRC_PC_SWITCHOVER) |
				     TO(ND_SRC_FAILED) | TO(ND_SRC_CANCELLED),
			     "rounds of pulls while the VM runs here" },
	[ND_SRC_PRECOPY_ASKED] = { "precopy+asked", ND_MIG_PRECOPY, 0,
				   TO(ND_SRC_SWITCHOVER) |
					   TO(ND_SRC_PC_SWITCHOVER) |
					   TO(ND_SRC_FAILED) |
					   TO(ND_SRC_CANCELLED),
				   "the same; post-copy at the next tick" },
	[ND_SRC_SWITCHOVER] = { "switchover", ND_MIG_SWITCHOVER, ND_SM_PAUSED,
				TO(ND_SRC_COMMITTED) | TO(ND_SRC_FAILED),
				"VM paused: the last round, checksums, STATE; "
				"waits for READY" },
	[ND_SRC_COMMITTED] = { "committed", ND_MIG_COMMITTED,
			       ND_SM_PAUSED | ND_SM_HELD,
			       TO(ND_SRC_COMPLETED) | TO(ND_SRC_FAILED),
			       "recorded, then RESUME until RESUMED; FAILED "
			       "only on ABORT or force-resume" },
	[ND_SRC_PC_SWITCHOVER] = { "pc-switchover", ND_MIG_SWITCHOVER,
				   ND_SM_PAUSED | ND_SM_PC,
				   TO(ND_SRC_POSTCOPY) | TO(ND_SRC_FAILED),
				   "VM paused for good: POSTCOPY, the last "
				   "pages, STATE; FAILED only before RESUMED" },
	[ND_SRC_PC_SWITCHOVER_LOST] = { "pc-switchover+lost", ND_MIG_SWITCHOVER,
					ND_SM_PAUSED | ND_SM_PC | ND_SM_LOST,
					TO(ND_SRC_PC_SWITCHOVER) |
						TO(ND_SRC_POSTCOPY_LOST) |
						TO(ND_SRC_FAILED),
					"the same after our restart: "
					"HOLDER_MAP again once the peer "
					"answers" },
	[ND_SRC_POSTCOPY] = { "postcopy", ND_MIG_POSTCOPY,
			      ND_SM_PAUSED | ND_SM_PC | ND_SM_HELD,
			      TO(ND_SRC_COMPLETED),
			      "the VM runs on the destination: we serve its "
			      "pages until COMMIT" },
	[ND_SRC_POSTCOPY_LOST] = { "postcopy+lost", ND_MIG_POSTCOPY,
				   ND_SM_PAUSED | ND_SM_PC | ND_SM_HELD |
					   ND_SM_LOST,
				   TO(ND_SRC_POSTCOPY) | TO(ND_SRC_COMPLETED),
				   "the same after our restart: HOLDER_MAP "
				   "again once the peer answers" },
	[ND_SRC_COMPLETED] = { "completed", ND_MIG_COMPLETED, ND_SM_END, 0,
			       "the VM runs on the destination; ours exited" },
	[ND_SRC_FAILED] = { "failed", ND_MIG_FAILED, ND_SM_END, 0,
			    "the VM runs here" },
	[ND_SRC_CANCELLED] = { "cancelled", ND_MIG_CANCELLED, ND_SM_END, 0,
			       "the VM runs here" },
};

static const struct sm_state dst_states[ND_DST_NSTATES] = {
	[ND_DST_NEW] = { "new", ND_MIG_PREPARE, 0,
			 TO(ND_DST_PREPARE) | TO(ND_DST_COMPLETED) |
				 TO(ND_DST_FAILED) | TO(ND_DST_FAILED_UNTOLD),
			 "being set up, or read from its record by a "
			 "restarted ferryd" },
	[ND_DST_PREPARE] = { "prepare", ND_MIG_PREPARE, 0,
			     TO(ND_DST_PRECOPY) | TO(ND_DST_FAILED),
			     "MIGRATE_PREPARE accepted: our VM starts, "
			     "HOLDER_MAP is our yes" },
	[ND_DST_PRECOPY] = { "precopy", ND_MIG_PRECOPY, 0,
			     TO(ND_DST_SWITCHOVER) | TO(ND_DST_PC_SWITCHOVER) |
				     TO(ND_DST_FAILED),
			     "pulling each round's DIRTY_SETs" },
	[ND_DST_SWITCHOVER] = { "switchover", ND_MIG_SWITCHOVER, 0,
				TO(ND_DST_READY) | TO(ND_DST_FAILED),
				"SWITCHOVER came: the last pulls, checksums, "
				"STATE" },
	[ND_DST_PC_SWITCHOVER] = { "pc-switchover", ND_MIG_SWITCHOVER, ND_SM_PC,
				   TO(ND_DST_POSTCOPY) | TO(ND_DST_FAILED),
				   "POSTCOPY came: the reads in flight, "
				   "STATE, then the VM runs here" },
	[ND_DST_READY] = { "ready", ND_MIG_READY, ND_SM_HELD,
			   TO(ND_DST_COMMITTED) | TO(ND_DST_FAILED),
			   "all pages and the state here: READY until "
			   "RESUME" },
	[ND_DST_POSTCOPY] = { "postcopy", ND_MIG_POSTCOPY,
			      ND_SM_PC | ND_SM_RUNS,
			      TO(ND_DST_COMPLETED) | TO(ND_DST_FAILED),
			      "the VM runs here; faults and the background "
			      "pull fetch the rest; FAILED leaves it running" },
	[ND_DST_COMMITTED] = { "committed", ND_MIG_COMMITTED, ND_SM_RUNS,
			       TO(ND_DST_COMPLETED),
			       "RESUME came: recorded, the VM resumed, "
			       "RESUMED sent" },
	[ND_DST_COMPLETED] = { "completed", ND_MIG_COMPLETED, ND_SM_END, 0,
			       "the VM is this node's" },
	[ND_DST_FAILED] = { "failed", ND_MIG_FAILED, ND_SM_END, 0,
			    "our copy is gone (or, after post-copy began, "
			    "left running)" },
	[ND_DST_FAILED_UNTOLD] = { "failed+untold", ND_MIG_FAILED, ND_SM_END,
				   TO(ND_DST_FAILED),
				   "ferryd restarted and removed our copy: "
				   "ABORT once the source answers" },
};

static const struct sm_state *sm_state(bool source, unsigned s)
{
	if (source)
		return s < ND_SRC_NSTATES ? &src_states[s] : NULL;
	return s < ND_DST_NSTATES ? &dst_states[s] : NULL;
}

const char *nd_sm_name(bool source, unsigned s)
{
	const struct sm_state *st = sm_state(source, s);

	return st ? st->name : "?";
}

enum nd_mig_phase nd_sm_phase(bool source, unsigned s)
{
	const struct sm_state *st = sm_state(source, s);

	return st ? st->phase : ND_MIG_FAILED;
}

bool nd_sm_has(bool source, unsigned s, unsigned flags)
{
	const struct sm_state *st = sm_state(source, s);

	return st && (st->flags & flags);
}

bool nd_sm_legal(bool source, unsigned from, unsigned to)
{
	const struct sm_state *st = sm_state(source, from);

	return st && sm_state(source, to) && (st->next & TO(to));
}

int nd_sm_move(struct nd_mig_sm *sm, unsigned to)
{
	if (!nd_sm_legal(sm->source, sm->state, to))
		return -EINVAL;
	sm->state = to;
	return 0;
}

bool nd_sm_fault(bool source, const char *when, unsigned to)
{
	char point[FY_FAULT_NAME_MAX + 1];

	snprintf(point, sizeof(point), "%s:%s:%s", source ? "src" : "dst", when,
		 nd_sm_name(source, to));
	return fy_fault(point);
}

void nd_dst_round_fault(unsigned round)
{
	char point[FY_FAULT_NAME_MAX + 1];

	snprintf(point, sizeof(point), "dst:round:%u", round);
	fy_fault(point);
}

bool nd_mig_fault_known(const char *point)
{
	static const char round[] = "dst:round:";
	const char *num = point + sizeof(round) - 1;
	size_t digits;

	if (!strcmp(point, "dst:spawned"))
		return true;
	/* dst:round:N, N in decimal without a leading zero */
	if (!strncmp(point, round, sizeof(round) - 1)) {
		digits = strspn(num, "0123456789");
		return digits && digits <= 9 && !num[digits] &&
		       (num[0] != '0' || digits == 1);
	}
	for (int role = 0; role < 2; role++) {
		unsigned n = role ? ND_SRC_NSTATES : ND_DST_NSTATES;

		for (unsigned s = 0; s < n; s++) {
			char a[FY_FAULT_NAME_MAX + 1], b[FY_FAULT_NAME_MAX + 1];
			const char *r = role ? "src" : "dst";

			snprintf(a, sizeof(a), "%s:before:%s", r,
				 nd_sm_name(role, s));
			snprintf(b, sizeof(b), "%s:after:%s", r,
				 nd_sm_name(role, s));
			if (!strcmp(point, a) || !strcmp(point, b))
				return true;
		}
	}
	return false;
}

enum nd_src_act nd_src_on(enum nd_src_state st, enum proto_type t, bool csums,
			  const char **why)
{
	bool pc = nd_sm_has(true, st, ND_SM_PC);
	bool running = pc && nd_sm_has(true, st, ND_SM_HELD);

	*why = NULL;
	if (nd_sm_has(true, st, ND_SM_END))
		return ND_ACT_IGNORE;
	switch (t) {
	case PROTO_HOLDER_MAP:
		return st == ND_SRC_PREPARE || st == ND_SRC_PREPARE_ASKED
			       ? ND_ACT_START
			       : ND_ACT_IGNORE;
	case PROTO_PROGRESS:
		return st == ND_SRC_NEW || st == ND_SRC_PREPARE ||
				       st == ND_SRC_PREPARE_ASKED ||
				       st == ND_SRC_COMMITTED
			       ? ND_ACT_IGNORE
			       : ND_ACT_PROGRESS;
	case PROTO_PC_STATS:
		return ND_ACT_STATS;
	case PROTO_COMMIT:
		/* an older D decides itself at SWITCHOVER: ours never runs */
		if (st == ND_SRC_SWITCHOVER)
			return ND_ACT_COMMIT;
		return running ? ND_ACT_COMPLETE : ND_ACT_IGNORE;
	case PROTO_READY:
		if (st == ND_SRC_SWITCHOVER)
			return csums ? ND_ACT_IGNORE : ND_ACT_COMMIT;
		return st == ND_SRC_COMMITTED ? ND_ACT_RESUME_AGAIN
					      : ND_ACT_IGNORE;
	case PROTO_RESUMED:
		if (st == ND_SRC_COMMITTED)
			return ND_ACT_COMPLETE;
		return pc && !running ? ND_ACT_RUNS_THERE : ND_ACT_IGNORE;
	case PROTO_ABORT:
		/* the VM ran there: ours must not run again */
		if (running) {
			*why = "ABORT during post-copy ignored";
			return ND_ACT_REFUSE;
		}
		/* after our commit too: D says its VM never ran, nor will */
		return ND_ACT_ABANDON;
	case PROTO_ERROR:
		/* not D's answer: RESUME goes on until it is */
		if (st == ND_SRC_COMMITTED) {
			*why = "ERROR after commit ignored";
			return ND_ACT_REFUSE;
		}
		return ND_ACT_FAIL;
	default:
		*why = "unexpected message";
		return ND_ACT_REFUSE;
	}
}

static const char *const flag_names[] = {
	"paused",	  "post-copy",	  "commit window",
	"holder map due", "VM runs here", "ended",
};

void nd_sm_print(FILE *f, bool source)
{
	unsigned n = source ? ND_SRC_NSTATES : ND_DST_NSTATES;

	fprintf(f, "| state | shown as | implies | legal next states | meaning "
		   "|\n|---|---|---|---|---|\n");
	for (unsigned s = 0; s < n; s++) {
		const struct sm_state *st = sm_state(source, s);
		const char *sep = "";

		fprintf(f, "| `%s` | %s | ", st->name,
			nd_mig_phase_name(st->phase));
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
