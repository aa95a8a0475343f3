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
 * finished announcing to B: those S removes from B's map when it comes.
 * So D never reads a page from B that changed since B pulled it.
 *
 * A second retarget, to E, makes D a relay the same way; E then gets the
 * maps of B and D, each trimmed as it came and at its own generation.
 * Up to MIG_RELAYS_MAX retargets; never back to a peer that was a
 * destination of this migration (its migration of that id exists there).
 *
 * In struct mig: relays[], one per retarget, in order (struct mig_relay:
 * its peer, state, generation, the pages it may lack until its map came,
 * then its trimmed map); hb the bytes D reports it pulled from each
 * holder. The record lists the relays not released yet (mig_record.c).
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

/* a destination pulls from the source, each relay and a kept copy */
_Static_assert(MIG_RELAYS_MAX + 2 <= RLY_HOLDERS_MAX &&
		       MIG_RELAYS_MAX + 2 <= PROTO_HOLDERS_MAX,
	       "a destination's scheduler takes every relay");

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
	if (m->nrelays == MIG_RELAYS_MAX) {
		snprintf(err, errlen,
			 "migration %" PRIu64 " was retargeted %u times: no "
			 "more than %u relays",
			 m->id, m->nrelays, MIG_RELAYS_MAX);
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
	for (unsigned i = 0; i < m->nrelays; i++)
		if (m->relays[i].peer == p) {
			snprintf(err, errlen,
				 "%s was a destination of migration %" PRIu64
				 " before (a relay since): a retarget back to "
				 "it is not supported",
				 to, m->id);
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
	struct mig_relay *rl;
	int ret;

	if (!m || mig_finished(m)) {
		snprintf(err, errlen, "no outgoing migration %" PRIu64 " runs",
			 id);
		return -ENOENT;
	}
	ret = retarget_check(m, to, err, errlen, &p);
	if (ret)
		return ret;
	rl = &m->relays[m->nrelays];
	memset(rl, 0, sizeof(*rl));
	/* what the old destination was not told yet is not current there */
	rl->stale = fy_bitmap_alloc(m->pages);
	if (!rl->stale) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!m->todo_sent)
		fy_runs_to_bitmap(&m->todo[m->todo_pos], m->ntodo - m->todo_pos,
				  rl->stale, m->pages);
	r.retarget.mig = m->id;
	snprintf(r.retarget.node, sizeof(r.retarget.node), "%s", p->name);
	ret = mig_send(m, &r);
	if (ret) {
		free(rl->stale);
		rl->stale = NULL;
		snprintf(err, errlen, "cannot reach %s: %s", m->peer->name,
			 strerror(-ret));
		return ret;
	}
	/* from here on the old destination only serves its copy */
	old = m->peer;
	rl->peer = old;
	rl->state = MIG_RELAY_DRAINING;
	rl->gen = m->gen;
	m->nrelays++;
	m->peer = p;
	m->nhb = 0;
	m->deadline = mig_now(n) + MIG_PREPARE_TIMEOUT_NS;
	/* recorded with its new relay: a restart releases it */
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

/*
 * Relay rl's map as it came: less the pages not current there, all at
 * rl->gen. 0 or -ENOMEM.
 */
static int trim_relay_map(struct mig *m, struct mig_relay *rl)
{
	struct proto_holder_region *r = &rl->map->holder_map.regions[0];
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
		bm[w] &= ~rl->stale[w];
	if (fy_runs_from_bitmap(bm, m->pages, &runs, &nr))
		goto out;
	g = realloc(r->gens, FY_MAX(nr, 1) * sizeof(*g));
	if (!g)
		goto out;
	r->gens = g;
	r->ngens = nr;
	for (size_t i = 0; i < nr; i++)
		g[i] = (struct proto_genrun){ runs[i].start, runs[i].len,
					      rl->gen };
	mig_info(m, "relay %s holds %" PRIu64 " current pages", rl->peer->name,
		 fy_runs_pages(runs, nr));
	ret = 0;
out:
	free(runs);
	free(bm);
	return ret;
}

/* Relay rl's map on to the destination; a failure costs that relay only. */
static void forward_relay_map(struct mig *m, struct mig_relay *rl)
{
	if (mig_send(m, rl->map))
		mig_err(m,
			"cannot pass on %s's holder map: %s pulls from the "
			"others",
			rl->peer->name, m->peer->name);
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

	/* D is told before its first pull; the maps to come, as they come */
	for (unsigned i = 0; !ret && i < m->nrelays; i++)
		if (m->relays[i].state == MIG_RELAY_SERVING)
			forward_relay_map(m, &m->relays[i]);
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

/* A relay's HOLDER_MAP: trimmed, kept, and on to D if it said yes. */
static void relay_map_in(struct mig *m, struct mig_relay *rl,
			 struct proto_msg *msg)
{
	if (rl->state != MIG_RELAY_DRAINING ||
	    !relay_map_fits(m, &msg->holder_map)) {
		mig_err(m, "%s's holder map does not fit: ignored",
			rl->peer->name);
		return;
	}
	rl->map = malloc(sizeof(*rl->map));
	if (!rl->map)
		return;
	/* the arrays are ours now */
	*rl->map = *msg;
	msg->holder_map.regions = NULL;
	msg->holder_map.nregions = 0;
	if (trim_relay_map(m, rl)) {
		mig_err(m, "out of memory: %s's copy is not used",
			rl->peer->name);
		proto_msg_free(rl->map);
		rl->map = NULL;
		return;
	}
	free(rl->stale);
	rl->stale = NULL;
	rl->state = MIG_RELAY_SERVING;
	/* D said yes before the relay answered */
	if (m->sm.state == MIG_SRC_PRECOPY)
		forward_relay_map(m, rl);
}

void mig_src_relay_msg(struct mig *m, struct mig_peer *p, struct proto_msg *msg)
{
	struct mig_relay *rl = NULL;

	/* the one serving: a peer is a relay once (retarget_check()) */
	for (unsigned i = 0; i < m->nrelays; i++)
		if (m->relays[i].peer == p &&
		    m->relays[i].state != MIG_RELAY_GONE)
			rl = &m->relays[i];
	if (!rl)
		return;
	switch (msg->type) {
	case PROTO_HOLDER_MAP:
		relay_map_in(m, rl, msg);
		return;
	case PROTO_ABORT:
	case PROTO_ERROR:
		/* its copy is gone: D reads from the others what it would have */
		mig_err(m, "relay %s gave up: %s", rl->peer->name,
			msg->type == PROTO_ABORT ? msg->abort.reason
						 : msg->error.text);
		mig_src_relay_forget(rl);
		mig_save_record(m);
		return;
	default:
		return; /* what it sent before it became a relay */
	}
}

void mig_src_relays_recorded(struct mig *m, const struct mig_record *r)
{
	for (unsigned i = 0; i < r->nrelays && i < MIG_RELAYS_MAX; i++) {
		const char *name = r->relays[i];
		struct mig_peer *p = NULL;

		if (proto_name_valid(name))
			p = mig_peer_find(m->n, name);
		if (!p) {
			pr_warn("migration %" PRIu64 ": relay %s unknown",
				m->id, name);
			continue;
		}
		/* nothing reads its copy now: released once it answers */
		m->relays[m->nrelays++] = (struct mig_relay){
			.peer = p,
			.state = MIG_RELAY_UNTOLD,
		};
	}
}
