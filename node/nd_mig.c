// SPDX-License-Identifier: MIT
/*
 * A migration's base: the phases it shows, its state (nd_mig_sm.c's
 * tables) read and moved by the control thread's transition function,
 * and sending to its peer. The source's engine is nd_mig_src.c (its
 * decisions) over nd_mig_src_io.c (its actions); the destination's is
 * nd_mig_dst*.c; nd_mig_ctl.c routes messages, ticks and commands to them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "node/node_int.h"

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

unsigned nd_mig_state(const struct nd_mig *m)
{
	unsigned s;

	if (!m->dst)
		return m->sm.state;
	pthread_mutex_lock(&m->dst->lock);
	s = m->sm.state;
	pthread_mutex_unlock(&m->dst->lock);
	return s;
}

enum nd_mig_phase nd_mig_phase(const struct nd_mig *m)
{
	return nd_sm_phase(m->source, nd_mig_state(m));
}

bool nd_mig_has(const struct nd_mig *m, unsigned flags)
{
	return nd_sm_has(m->source, nd_mig_state(m), flags);
}

bool nd_mig_finished(const struct nd_mig *m)
{
	return nd_mig_has(m, ND_SM_END);
}

int nd_mig_to(struct nd_mig *m, unsigned to, const char *why)
{
	unsigned from = m->sm.state;

	/* a destination's thread moves its state while it runs */
	if (m->dst || nd_sm_fault(m->source, "before", to) ||
	    nd_sm_move(&m->sm, to)) {
		mig_err(m, "refused: no move from %s to %s (%s)",
			nd_sm_name(m->source, from), nd_sm_name(m->source, to),
			why);
		return -EINVAL;
	}
	pr_debug("%" PRIu64 ": %s -> %s: %s", m->id,
		 nd_sm_name(m->source, from), nd_sm_name(m->source, to), why);
	nd_mig_record(m);
	nd_sm_fault(m->source, "after", to);
	m->n->next_mig_tick_ns = 0; /* the tick acts on it at once */
	return 0;
}

unsigned nd_migs_active(const struct nd_node *n)
{
	unsigned c = 0;

	for (int i = 0; i < ND_MIGS_MAX; i++)
		c += n->migs[i] && !nd_mig_finished(n->migs[i]);
	return c;
}

int nd_mig_send(struct nd_mig *m, const struct proto_msg *msg)
{
	int ret = nd_peer_send(m->peer, msg);

	if (ret)
		mig_err(m, "cannot send %s: %s", proto_type_name(msg->type),
			strerror(-ret));
	return ret;
}

void nd_mig_send_abort(struct nd_mig *m, const char *reason)
{
	struct proto_msg a = { .type = PROTO_ABORT };

	a.abort.mig = m->id;
	snprintf(a.abort.reason, sizeof(a.abort.reason), "%s", reason);
	nd_peer_send(m->peer, &a);
}
