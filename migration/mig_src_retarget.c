// SPDX-License-Identifier: MIT
/*
 * Retarget, the source's side (`ferry retarget MIG --to D`, in pre-copy):
 * the migration goes on to D; the old destination B stops pulling and
 * serves what it holds to D as a relay.
 *
 *   S -> B  RETARGET(m, D)         B drains its reads, registers its copy
 *   S -> D  MIGRATE_PREPARE(m)     as for any migration
 *   B -> S  HOLDER_MAP(m, B)       the pages B holds (all but those it still
 *                                  had to pull)
 *   D -> S  HOLDER_MAP(m, D)       D's yes
 *   S -> D  HOLDER_MAP(m, S), HOLDER_MAP(m, B), then DIRTY_SETs: every page
 *           announced so far, each at the generation it was last announced
 *   ...     rounds go on with D, which pulls each run from S or B
 *   S -> B  ABORT(m, "released")   at the commit (post-copy: D's COMMIT,
 *                                  D holds every page), or when it ends
 *
 * B's copy is current at the generation S had reached at RETARGET (every
 * DIRTY_SET before it reached B first, and B pulled the pages it holds
 * after their last one), except for the pages of the round S had not
 * finished announcing to B: those S removes from B's map before passing it
 * on. So D never reads a page from B that changed since B pulled it.
 *
 * In struct mig: relay is B until it is released (NULL then), relay_gen
 * the generation of its copy, relay_stale the pages it may lack,
 * relay_map its HOLDER_MAP until D says yes; hb the bytes D reports it
 * pulled from each holder.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_retain.h"
#include "migration/mig_src.h"

#define RUNS_PER_MSG 65536

/* Can m go on to peer `to` now? 0 and the peer, or -errno and a text. */
static int retarget_check(struct mig *m, const char *to, char *err,
			  size_t errlen, struct mig_peer **out)
{
	struct mig_peer *p = mig_peer_find(m->n, to);
	enum mig_peer_state ps;

	if (m->sm.state != MIG_SRC_PRECOPY) {
		snprintf(err, errlen,
			 "migration %" PRIu64 " is in state %s: retarget "
			 "works in pre-copy only, before switchover",
			 m->id, mig_sm_name(true, m->sm.state));
		return -EBUSY;
	}
	if (m->o.delta) {
		snprintf(err, errlen,
			 "retarget of a --compress delta "
			 "migration is not supported");
		return -EOPNOTSUPP;
	}
	if (m->relay || m->relay_stale) {
		snprintf(err, errlen,
			 "migration %" PRIu64 " was retargeted once: a second "
			 "retarget is not supported yet",
			 m->id);
		return -EBUSY;
	}
	if (m->gen > UINT32_MAX) {
		snprintf(err, errlen, "generation counter too high");
		return -EOVERFLOW;
	}
	if (!p) {
		snprintf(err, errlen, "no peer called '%s'", to);
		return -ENOENT;
	}
	if (p == m->peer) {
		snprintf(err, errlen, "%s is already the destination", to);
		return -EINVAL;
	}
	ps = mig_peer_state(m->n, p, mig_now(m->n));
	if (ps != MIG_PEER_REACHABLE) {
		snprintf(err, errlen,
			 "peer '%s' is %s: the migration goes on "
			 "to %s",
			 to, mig_peer_state_name(ps), m->peer->name);
		return -EHOSTUNREACH;
	}
	*out = p;
	return 0;
}

int mig_src_retarget(struct mig_env *n, uint64_t id, const char *to, char *err,
		     size_t errlen)
{
	struct proto_msg r = { .type = PROTO_RETARGET };
	struct mig *m = mig_find(n, id, true, NULL);
	struct mig_peer *old, *p = NULL;
	int ret;

	if (!m || mig_finished(m)) {
		snprintf(err, errlen, "no outgoing migration %" PRIu64 " runs",
			 id);
		return -ENOENT;
	}
	ret = retarget_check(m, to, err, errlen, &p);
	if (ret)
		return ret;
	/* what B was not told yet is not current there */
	m->relay_stale = fy_bitmap_alloc(m->pages);
	if (!m->relay_stale) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!m->todo_sent)
		fy_runs_to_bitmap(&m->todo[m->todo_pos], m->ntodo - m->todo_pos,
				  m->relay_stale, m->pages);
	r.retarget.mig = m->id;
	snprintf(r.retarget.node, sizeof(r.retarget.node), "%s", p->name);
	ret = mig_send(m, &r);
	if (ret) {
		free(m->relay_stale);
		m->relay_stale = NULL;
		snprintf(err, errlen, "cannot reach %s: %s", m->peer->name,
			 strerror(-ret));
		return ret;
	}
	/* from here on the old destination only serves its copy */
	old = m->peer;
	m->relay = old;
	m->relay_gen = m->gen;
	m->peer = p;
	m->nhb = 0;
	m->deadline = mig_now(n) + MIG_PREPARE_TIMEOUT_NS;
	mig_to(m, MIG_SRC_RETARGET, "ferry retarget");
	mig_info(m, "retarget: %s becomes a relay, the migration goes on to %s",
		 old->name, p->name);
	ret = mig_src_send_prepare(m);
	if (ret) {
		snprintf(err, errlen, "cannot reach %s: %s", p->name,
			 strerror(-ret));
		mig_src_fail(m, MIG_SRC_FAILED, false, "%s", err);
	}
	return ret;
}

/* B's map, less the pages not current there, at relay_gen, on to D. */
static int forward_relay_map(struct mig *m)
{
	struct proto_holder_region *r = &m->relay_map->holder_map.regions[0];
	uint64_t *bm = fy_bitmap_alloc(m->pages);
	struct fy_run *runs = NULL;
	struct proto_genrun *g;
	size_t nr = 0;
	int ret = -ENOMEM;

	if (!bm)
		return ret;
	for (size_t i = 0; i < r->ngens; i++)
		fy_runs_to_bitmap(&(struct fy_run){ r->gens[i].start,
						    r->gens[i].len },
				  1, bm, m->pages);
	for (uint64_t w = 0; w < (m->pages + 63) / 64; w++)
		bm[w] &= ~m->relay_stale[w];
	if (fy_runs_from_bitmap(bm, m->pages, &runs, &nr))
		goto out;
	g = realloc(r->gens, FY_MAX(nr, 1) * sizeof(*g));
	if (!g)
		goto out;
	r->gens = g;
	r->ngens = nr;
	for (size_t i = 0; i < nr; i++)
		g[i] = (struct proto_genrun){ runs[i].start, runs[i].len,
					      m->relay_gen };
	ret = mig_send(m, m->relay_map);
	if (!ret)
		mig_info(m, "relay %s holds %" PRIu64 " current pages",
			 m->relay->name, fy_runs_pages(runs, nr));
out:
	free(runs);
	free(bm);
	return ret;
}

/* D said yes: the holders, then every page it needs at its generation. */
static int announce_all(struct mig *m)
{
	uint64_t *bm = fy_bitmap_alloc(m->pages), total = 0;
	int ret = bm ? 0 : -ENOMEM;

	/* each generation once, lowest first, as rounds came */
	for (uint64_t g = 0, next; !ret && g != UINT64_MAX; g = next) {
		struct proto_msg d = { .type = PROTO_DIRTY_SET };
		struct fy_run *runs;
		size_t nr;

		next = UINT64_MAX;
		memset(bm, 0, (m->pages + 63) / 64 * 8);
		for (uint64_t p = 0; p < m->pages; p++) {
			if (!fy_bit_test(m->sent_bm, p))
				continue;
			if (m->pgen[p] == g)
				fy_bit_set(bm, p);
			else if (m->pgen[p] > g && m->pgen[p] < next)
				next = m->pgen[p];
		}
		ret = fy_runs_from_bitmap(bm, m->pages, &runs, &nr);
		for (size_t i = 0; !ret && i < nr; i += RUNS_PER_MSG) {
			d.dirty.mig = m->id;
			d.dirty.gen = g;
			d.dirty.runs = &runs[i];
			d.dirty.nruns = FY_MIN(nr - i, RUNS_PER_MSG);
			ret = mig_send(m, &d);
		}
		if (!ret)
			total += fy_runs_pages(runs, nr);
		free(runs);
	}
	free(bm);
	/* the round goes on from here, all of it announced */
	m->todo_pos = m->ntodo;
	m->todo_sent = true;
	m->announced += total;
	m->expect_bytes = total * FY_PAGE_SIZE;
	m->bytes = m->round_bytes0 = 0;
	m->pages_valid = 0;
	m->round_start_ns = mig_now(m->n);
	return ret;
}

/* The new destination said yes (HOLDER_MAP in state retarget). */
void mig_src_retargeted(struct mig *m)
{
	int ret = mig_src_send_holder_map(m);

	if (!ret && m->relay_map) {
		/* D is told before its first pull; a failure costs B only */
		if (forward_relay_map(m))
			mig_err(m,
				"cannot pass on %s's holder map: pulling "
				"from here only",
				m->relay->name);
		proto_msg_free(m->relay_map);
		m->relay_map = NULL;
	}
	/* copies kept elsewhere: unchanged since arrival, current still */
	if (!ret)
		ret = mig_refs_send(m);
	if (!ret && mig_to(m, MIG_SRC_PRECOPY, "the new destination said yes"))
		ret = -EINVAL;
	if (!ret)
		ret = announce_all(m);
	if (ret)
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "lost the connection to %s: %s", m->peer->name,
			     strerror(-ret));
}

/* Is HOLDER_MAP h a copy of m's RAM, as a relay would publish it? */
static bool relay_map_fits(const struct mig *m,
			   const struct proto_holder_map *h)
{
	return h->page_size == FY_PAGE_SIZE && h->nregions == 1 &&
	       h->regions[0].len == m->pages * FY_PAGE_SIZE;
}

void mig_src_relay_msg(struct mig *m, struct proto_msg *msg)
{
	switch (msg->type) {
	case PROTO_HOLDER_MAP:
		if (m->relay_map || !relay_map_fits(m, &msg->holder_map)) {
			mig_err(m, "%s's holder map does not fit: ignored",
				m->relay->name);
			return;
		}
		m->relay_map = malloc(sizeof(*m->relay_map));
		if (!m->relay_map)
			return;
		/* the arrays are ours now */
		*m->relay_map = *msg;
		msg->holder_map.regions = NULL;
		msg->holder_map.nregions = 0;
		if (m->sm.state == MIG_SRC_PRECOPY) {
			/* D said yes before B answered */
			if (forward_relay_map(m))
				mig_err(m, "cannot pass on %s's holder map",
					m->relay->name);
			proto_msg_free(m->relay_map);
			m->relay_map = NULL;
		}
		return;
	case PROTO_ABORT:
	case PROTO_ERROR:
		/* B's copy is gone: D pulls from us what it would have read */
		mig_err(m, "relay %s gave up: %s", m->relay->name,
			msg->type == PROTO_ABORT ? msg->abort.reason
						 : msg->error.text);
		proto_msg_free(m->relay_map);
		m->relay_map = NULL;
		m->relay = NULL;
		return;
	default:
		return; /* what B sent before it became a relay */
	}
}
