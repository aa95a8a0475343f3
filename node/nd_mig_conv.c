// SPDX-License-Identifier: MIT
/*
 * Auto-converge, on the source: what a migration does when rounds stop
 * making progress (the dirty set no longer shrinks by a tenth) while the
 * expected downtime stays over the limit. round_done() in nd_mig.c
 * counts the stalled rounds and calls nd_mig_converge(); the hard cap
 * (--max-rounds) stays in force whatever this does.
 *
 * - downtime: after --stall-rounds stalled rounds, double the downtime
 *   limit, up to max_downtime_ms;
 * - throttle (QEMU's auto-converge): after --stall-rounds stalled rounds,
 *   hold the vCPUs off cpu-throttle-initial percent of the time (the
 *   adapter's THROTTLE), then add cpu-throttle-increment for every further
 *   round without progress, up to max-cpu-throttle. The throttle is lifted
 *   when the migration fails or is cancelled (nd_mig_src_fail()); the VM
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
#include "node/node_int.h"

static void note_action(struct nd_mig *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append one action to m->actions ("; " between them) and log it. */
static void note_action(struct nd_mig *m, const char *fmt, ...)
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
		m->peer->conf->name, m->actions + len);
}

static bool converge_downtime(struct nd_mig *m, uint64_t est)
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

static void converge_throttle(struct nd_mig *m)
{
	unsigned first = m->throttle_pct, pct;
	int ret;

	/* 0: THROTTLE failed before (an old ferry-vm?); do not insist */
	if (!m->o.throttle_max)
		return;
	if (!m->throttle_pct) {
		if (m->stall < m->o.stall_rounds)
			return;
		pct = m->o.throttle_initial;
	} else {
		/* throttled already: one more step per stalled round */
		if (!m->stall || m->throttle_pct >= m->o.throttle_max)
			return;
		pct = m->throttle_pct + m->o.throttle_increment;
	}
	pct = FY_MIN(pct, m->o.throttle_max);
	if (!m->vmp || !m->vmp->kc)
		return;
	ret = kva_client_throttle(m->vmp->kc, pct);
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

bool nd_mig_converge(struct nd_mig *m, uint64_t est)
{
	if (m->o.auto_converge == PROTO_CONVERGE_DOWNTIME)
		return converge_downtime(m, est);
	if (m->o.auto_converge == PROTO_CONVERGE_THROTTLE) {
		if (!m->throttle_pct)
			m->throttle_round = m->round;
		converge_throttle(m);
	}
	return false;
}

void nd_mig_unthrottle(struct nd_mig *m)
{
	int ret;

	if (!m->throttled || !m->vmp || !m->vmp->kc)
		return;
	ret = kva_client_throttle(m->vmp->kc, 0);
	if (ret) {
		pr_err("%" PRIu64 " (%s): cannot lift the vCPU throttle: %s",
		       m->id, m->vm, strerror(-ret));
		return;
	}
	m->throttled = false;
	pr_info("%" PRIu64 " (%s): vCPU throttle lifted: full speed again",
		m->id, m->vm);
}
