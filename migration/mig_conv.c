// SPDX-License-Identifier: MIT
/*
 * Auto-converge, on the source: what a migration does when rounds stop
 * making progress (the dirty set no longer shrinks by a tenth) while the
 * expected downtime stays over the limit. mig_src_decide() decides, from
 * the round's figures alone, what the source does after each round (it
 * counts the stalled rounds too); round_done() in mig_src.c acts. The
 * hard cap (--max-rounds) stays in force whatever auto-converge does.
 *
 * - downtime: after --stall-rounds stalled rounds, double the downtime
 *   limit, up to max_downtime_ms;
 * - throttle (QEMU's auto-converge): after --stall-rounds stalled rounds,
 *   hold the vCPUs off cpu-throttle-initial percent of the time (the
 *   adapter's THROTTLE), then add cpu-throttle-increment for every further
 *   round without progress, up to max-cpu-throttle. The throttle is lifted
 *   when the migration fails or is cancelled (mig_src_fail()); the VM
 *   on the destination is a new ferry-vm and starts unthrottled.
 * - none: nothing; the migration fails at the hard cap.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kvm-adapter/kvm_adapter.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_src.h"

static void note_action(struct mig *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append one action to m->actions ("; " between them) and log it. */
static void note_action(struct mig *m, const char *fmt, ...)
{
	size_t len = strlen(m->actions);
	va_list ap;

	if (len && len + 3 < sizeof(m->actions)) {
		strcpy(m->actions + len, "; ");
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(m->actions + len, sizeof(m->actions) - len, fmt, ap);
	va_end(ap);
	pr_info("%" PRIu64 " (%s to %s): auto-converge: %s", m->id, m->vm,
		m->peer->name, m->actions + len);
}

static bool converge_downtime(struct mig *m, uint64_t est)
{
	uint64_t old = m->limit_ms;

	if (m->stall < m->o.stall_rounds || m->limit_ms >= m->o.max_downtime_ms)
		return false;
	m->limit_ms = FY_MIN(m->limit_ms * 2, m->o.max_downtime_ms);
	note_action(m,
		    "round %u: no progress for %u rounds, downtime limit "
		    "raised from %" PRIu64 " to %" PRIu64 " ms",
		    m->round, m->stall, old, m->limit_ms);
	m->stall = 0;
	return est <= m->limit_ms;
}

/* The throttle auto-converge asks for after this round; 0: none. */
static unsigned throttle_step(const struct mig *m)
{
	unsigned pct;

	/* 0: THROTTLE failed before (an old ferry-vm?); do not insist */
	if (!m->o.throttle_max)
		return 0;
	if (!m->throttle_pct) {
		if (m->stall < m->o.stall_rounds)
			return 0;
		pct = m->o.throttle_initial;
	} else {
		/* throttled already: one more step per stalled round */
		if (!m->stall || m->throttle_pct >= m->o.throttle_max)
			return 0;
		pct = m->throttle_pct + m->o.throttle_increment;
	}
	return FY_MIN(pct, m->o.throttle_max);
}

void mig_throttle(struct mig *m, unsigned pct)
{
	unsigned first = m->throttle_pct;
	int ret;

	if (!m->vmp || !m->vmp->kc)
		return;
	ret = mig_vm_throttle(m->n, m->vmp->kc, pct);
	if (ret) {
		/* the hard cap still ends it; say why it did not converge */
		note_action(m,
			    "round %u: cannot throttle the vCPUs to %u%%: %s",
			    m->round, pct, strerror(-ret));
		m->o.throttle_max = m->throttle_pct;
		return;
	}
	m->throttled = true;
	m->throttle_pct = pct;
	m->stall = 0;
	if (!first) {
		m->throttle_note = strlen(m->actions);
		note_action(m, "throttled vCPUs to %u%% after round %u", pct,
			    m->round);
		return;
	}
	/* one text for all the steps: rewrite it with the new one */
	m->actions[m->throttle_note] = '\0';
	note_action(m,
		    "throttled vCPUs to %u%% after round %u, raised to %u%% "
		    "by round %u",
		    m->o.throttle_initial <= m->o.throttle_max
			    ? m->o.throttle_initial
			    : m->o.throttle_max,
		    m->throttle_round, pct, m->round);
}

void mig_src_round_bw(struct mig *m, uint64_t elapsed_ns)
{
	uint64_t bytes = m->round_pages * FY_PAGE_SIZE;
	double bw;

	/*
	 * The best rate of a round that moved at least 1 MiB (tiny rounds
	 * measure the round trip, not the link); one of 8 MiB or more
	 * replaces it, however slow: the link may have become slower.
	 */
	if (!m->round_pages || (bytes < (1 << 20) && m->bw > 0))
		return;
	bw = bytes / (elapsed_ns / 1e9 + 1e-9);
	if (bw > m->bw || bytes >= (8 << 20))
		m->bw = bw;
}

uint64_t mig_src_estimate(struct mig *m, uint64_t dirty, uint64_t now)
{
	if (m->last_harvest_ns && now > m->last_harvest_ns)
		m->dirty_rate = dirty / ((now - m->last_harvest_ns) / 1e9);
	m->last_harvest_ns = now;
	m->expected_dt_ms =
		m->bw > 0 ? (uint64_t)(dirty * FY_PAGE_SIZE / m->bw * 1000)
			  : UINT64_MAX;
	return m->expected_dt_ms;
}

enum mig_src_next mig_src_decide(struct mig *m, uint64_t dirty, uint64_t est,
				 unsigned *throttle)
{
	bool asked = m->sm.state == MIG_SRC_PRECOPY_ASKED;

	*throttle = 0;
	if (est <= m->limit_ms)
		return MIG_NEXT_SWITCHOVER;
	/* progress: the dirty set shrinks by a tenth at least */
	if (!m->best_dirty || dirty * 10 < m->best_dirty * 9) {
		m->best_dirty = dirty;
		m->stall = 0;
	} else {
		m->stall++;
	}
	if (m->o.mode == PROTO_MODE_HYBRID &&
	    (asked || (m->o.postcopy_after ? m->round + 1 >= m->o.postcopy_after
					   : m->stall >= m->o.stall_rounds))) {
		snprintf(m->actions, sizeof(m->actions),
			 "post-copy after round %u%s", m->round,
			 asked ? " (asked)" : "");
		return MIG_NEXT_POSTCOPY;
	}
	if (m->round + 1 >= m->o.max_rounds)
		return MIG_NEXT_FAIL;
	if (m->o.auto_converge == PROTO_CONVERGE_DOWNTIME &&
	    converge_downtime(m, est))
		return MIG_NEXT_SWITCHOVER;
	if (m->o.auto_converge == PROTO_CONVERGE_THROTTLE) {
		if (!m->throttle_pct)
			m->throttle_round = m->round;
		*throttle = throttle_step(m);
	}
	return MIG_NEXT_ROUND;
}

void mig_unthrottle(struct mig *m)
{
	int ret;

	if (!m->throttled || !m->vmp || !m->vmp->kc)
		return;
	ret = mig_vm_throttle(m->n, m->vmp->kc, 0);
	if (ret) {
		pr_err("%" PRIu64 " (%s): cannot lift the vCPU throttle: %s",
		       m->id, m->vm, strerror(-ret));
		return;
	}
	m->throttled = false;
	pr_info("%" PRIu64 " (%s): vCPU throttle lifted: full speed again",
		m->id, m->vm);
}
