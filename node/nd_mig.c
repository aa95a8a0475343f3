// SPDX-License-Identifier: MIT
/*
 * Migrations: the table, the control socket's commands, the source's state
 * machine and the records kept in <state_dir>/migrations.
 *
 * The source runs in the control thread: its adapter calls (HARVEST, PAUSE,
 * GET_STATE, RESUME, EXIT) take milliseconds and pages never pass through
 * it. Every transfer is a pull by the destination (nd_mig_dst.c):
 *
 *   S: map the VM's memfd read-only, register it (peers may read);
 *   S -> D  MIGRATE_PREPARE(m, vm, mode, page size, vCPUs, pages)
 *   D -> S  HOLDER_MAP(m, D's, no runs)            its "yes" (ERROR: "no")
 *   S: harvest once (clears the dirty log), find the pages with data
 *      (SEEK_DATA/SEEK_HOLE): round 0's set;
 *   S -> D  HOLDER_MAP(m, S's address, key, base, len, [0, pages, gen 0])
 *   S -> D  DIRTY_SET(m, g, runs) ...   the pages D must pull this round,
 *           paced when --max-bandwidth is given, at most 64 Ki runs each
 *   D -> S  PROGRESS(m, rd, pg, pt, b) while pulling, and when done
 *   S: once D pulled every announced page (b = announced x page size):
 *      harvest, g++; estimate the last round as dirty x page size / the
 *      bandwidth D achieved; fits the downtime limit -> switchover, else
 *      announce the dirty pages as the next round;
 *   S: PAUSE, harvest, DIRTY_SET(final), [VERIFY(checksums)],
 *      SWITCHOVER(m, g), STATE(m, GET_STATE blob);
 *   D -> S  READY(m, g)       D holds all pages, its paused VM the state
 *   S: commit: record "committed" (our VM never runs again unless D
 *      ABORTs), then
 *   S -> D  RESUME(m, g)      again every RESUME_NS until RESUMED
 *   D -> S  RESUMED(m, g)     the VM runs on D: downtime = now - pause, on
 *                             S's clock only; S's VM EXITs
 *
 * S alone decides, so that the VM never runs twice: D resumes only on
 * RESUME; S resumes its own only before its commit or on D's ABORT (D
 * sends one only for a VM that never ran there and never will).
 * Failure before the commit (ABORT or ERROR from D, D unreachable, silence
 * for migration_timeout_ms, a cap hit, `ferry cancel`): S resumes the VM if
 * it paused it, deregisters, sends ABORT, and the migration is failed with
 * the reason. After it S waits, its VM paused, for RESUMED or ABORT, across
 * link loss and restarts. docs/migration.md is the user's view of it all.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "node/node_int.h"

#define RUNS_PER_MSG 65536
#define PACE_NS (100 * 1000000ULL) /* --max-bandwidth: a slice per 100 ms */
#define RESUME_NS (1000 * 1000000ULL) /* RESUME again, until RESUMED */
#define TICK_NS (50 * 1000000ULL)
#define IDLE_TICK_NS (500 * 1000000ULL) /* reaps VMs we started */

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

static void send_abort(struct nd_mig *m, const char *reason)
{
	struct proto_msg a = { .type = PROTO_ABORT };

	a.abort.mig = m->id;
	snprintf(a.abort.reason, sizeof(a.abort.reason), "%s", reason);
	nd_peer_send(m->peer, &a);
}

/* Give the source's registration and mapping back. */
static void stage_free(struct nd_mig *m)
{
	fab_mr_dereg(m->stage_mr);
	m->stage_mr = NULL;
	if (m->stage)
		munmap(m->stage, m->stage_len);
	m->stage = NULL;
	m->stage_len = 0;
}

void nd_mig_src_release(struct nd_mig *m)
{
	nd_mig_csum_end(m); /* it reads the mapping */
	stage_free(m);
	fab_mr_dereg(m->cache_mr);
	m->cache_mr = NULL;
	nd_release_bg(m->cache, m->pages * FY_PAGE_SIZE, NULL);
	m->cache = NULL;
	if (m->mr) {
		fab_mr_dereg(m->mr);
		m->mr = NULL;
	}
	/* our map of the VM's RAM: the last reference, if the VM exited */
	nd_release_bg(m->map, m->pages * FY_PAGE_SIZE, NULL);
	m->map = NULL;
	if (m->vmp) {
		m->vmp->mig = NULL;
		m->vmp = NULL;
	}
}

static void src_drop_vm(struct nd_mig *m);

/* The VM keeps (or gets back) running here; m->reason says why. */
static void src_end(struct nd_mig *m, enum nd_src_state how, bool tell)
{
	if (tell)
		send_abort(m, m->reason);
	/* the VM stays here: at full speed again */
	nd_mig_unthrottle(m);
	if (m->t_pause && m->vmp && m->vmp->kc) {
		int ret = kva_client_resume(m->vmp->kc);

		if (ret)
			mig_err(m, "cannot resume the VM here: %s",
				strerror(-ret));
		else
			mig_info(m, "VM resumed here");
	}
	mig_err(m, "%s: %s", how == ND_SRC_CANCELLED ? "cancelled" : "failed",
		m->reason);
	nd_mig_to(m, how, m->reason);
	m->t_end = fy_now_ns();
	nd_mig_src_release(m);
}

void nd_mig_src_fail(struct nd_mig *m, enum nd_src_state how, bool tell,
		     const char *fmt, ...)
{
	va_list ap;

	if (nd_mig_finished(m))
		return;
	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
	if (nd_mig_has(m, ND_SM_HELD)) {
		/*
		 * Committed: D may resume it any moment, ours waits for its
		 * answer. Post-copy: the VM runs on D and may need any page.
		 */
		mig_err(m, "%s, ignored: %s",
			nd_mig_has(m, ND_SM_PC) ? "during post-copy"
						: "after commit",
			m->reason);
		m->reason[0] = '\0';
		return;
	}
	src_end(m, how, tell);
}

void nd_mig_src_abandon(struct nd_mig *m, bool tell, const char *fmt, ...)
{
	va_list ap;

	if (nd_mig_finished(m))
		return;
	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
	src_end(m, ND_SRC_FAILED, tell);
}

/* Source */

/* Start announcing runs (owned by m now) as round m->round at gen. */
static void round_begin(struct nd_mig *m, struct fy_run *runs, size_t nr)
{
	free(m->todo);
	m->todo = runs;
	m->ntodo = nr;
	m->todo_pos = 0;
	m->todo_sent = false;
	m->round_pages = fy_runs_pages(runs, nr);
	m->round_start_ns = fy_now_ns();
	m->round_bytes0 = m->bytes;
	m->pace_next_ns = 0;
	for (size_t i = 0; i < nr; i++)
		for (uint64_t p = runs[i].start;
		     p < runs[i].start + runs[i].len; p++) {
			if (fy_bit_test(m->sent_bm, p))
				m->pages_repulled++;
			else
				fy_bit_set(m->sent_bm, p);
		}
	m->pages_pulled += m->round_pages;
}

/*
 * Send DIRTY_SETs for what is left of the round: all of it, or with
 * --max-bandwidth (except in the final round) one slice per PACE_NS.
 * Returns 0 or -errno (the migration failed).
 */
static int announce(struct nd_mig *m, bool paced)
{
	uint64_t now = fy_now_ns(), budget = UINT64_MAX;
	struct proto_msg d = { .type = PROTO_DIRTY_SET };
	struct fy_run *cut = NULL;
	int ret = 0;

	if (m->todo_sent)
		return 0;
	if (paced && m->o.max_bw) {
		if (now < m->pace_next_ns)
			return 0;
		budget = FY_MAX(1, m->o.max_bw * (PACE_NS / 1000000) / 1000 /
					   FY_PAGE_SIZE);
		m->pace_next_ns = now + PACE_NS;
	}
	d.dirty.mig = m->id;
	d.dirty.gen = m->gen;
	d.dirty.region = 0;
	/* an empty round still says "nothing new at generation g" */
	do {
		size_t first = m->todo_pos, n = 0;
		uint64_t pages = 0;

		while (first + n < m->ntodo && n < RUNS_PER_MSG &&
		       pages < budget) {
			pages += m->todo[first + n].len;
			n++;
		}
		if (pages > budget) {
			/* split the last run: the rest stays for later */
			struct fy_run *last = &m->todo[first + n - 1];
			uint64_t over = pages - budget;

			cut = malloc(n * sizeof(*cut));
			if (!cut)
				return -ENOMEM;
			memcpy(cut, &m->todo[first], n * sizeof(*cut));
			cut[n - 1].len -= over;
			last->start += last->len - over;
			last->len = over;
			d.dirty.runs = cut;
			m->todo_pos = first + n - 1;
			pages = budget;
		} else {
			d.dirty.runs = n ? &m->todo[first] : NULL;
			m->todo_pos = first + n;
		}
		d.dirty.nruns = n;
		ret = nd_mig_send(m, &d);
		free(cut);
		cut = NULL;
		if (ret)
			return ret;
		m->announced += pages;
		m->expect_bytes += pages * FY_PAGE_SIZE;
		budget -= FY_MIN(budget, pages);
	} while (m->todo_pos < m->ntodo && budget);
	m->todo_sent = m->todo_pos >= m->ntodo;
	return 0;
}

/* Harvest the dirty log into runs; *gen the new generation. */
static int harvest(struct nd_mig *m, struct fy_run **runs, size_t *nr,
		   uint64_t *dirty)
{
	const uint64_t *bm;
	uint64_t gen;
	int ret;

	ret = kva_client_harvest(m->vmp->kc, &bm, &gen, dirty);
	if (ret) {
		mig_err(m, "harvest: %s", strerror(-ret));
		return ret;
	}
	m->gen = gen;
	ret = fy_runs_from_bitmap(bm, m->pages, runs, nr);
	if (ret)
		mig_err(m, "out of memory");
	return ret;
}

/* Announce what is left of the round, as pages or as deltas. */
static int announce_round(struct nd_mig *m, bool paced)
{
	if (m->o.delta && m->round > 0) {
		/* the previous round's buffer: D has pulled it */
		stage_free(m);
		return m->ntodo ? nd_mig_delta_round(m) : announce(m, false);
	}
	return announce(m, paced);
}

/* Set the pages of runs in bm. */
static void runs_or(uint64_t *bm, const struct fy_run *runs, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		for (uint64_t p = runs[i].start;
		     p < runs[i].start + runs[i].len; p++)
			fy_bit_set(bm, p);
}

/*
 * Pause, last harvest, last announcement, checksums, SWITCHOVER, STATE.
 * prev (nprev runs, taken) is the dirty set harvested just before, which
 * the last round carries too.
 */
static void switchover_end(struct nd_mig *m);

/* SWITCHOVER, POSTCOPY: the migration and its generation. */
static int send_gen(struct nd_mig *m, enum proto_type t)
{
	struct proto_msg g = { .type = t };

	g.switchover.mig = m->id;
	g.switchover.gen = m->gen;
	return nd_mig_send(m, &g);
}

static void switchover(struct nd_mig *m, struct fy_run *prev, size_t nprev,
		       bool pc)
{
	struct kva_client *kc = m->vmp->kc;
	struct fy_run *runs;
	uint64_t dirty;
	size_t nr;
	int ret;

	ret = m->t_pause ? 0 : kva_client_pause(kc);
	if (ret) {
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"cannot pause the VM: %s", strerror(-ret));
		return;
	}
	if (!m->t_pause)
		m->t_pause = fy_now_ns();
	/* recorded before POSTCOPY goes out: a restart keeps it paused */
	ret = nd_mig_to(m, pc ? ND_SRC_PC_SWITCHOVER : ND_SRC_SWITCHOVER,
			"VM paused");
	if (!ret)
		ret = harvest(m, &runs, &nr, &dirty);
	if (!ret && nprev) {
		uint64_t *bm = fy_bitmap_alloc(m->pages);

		ret = -ENOMEM;
		if (bm) {
			runs_or(bm, prev, nprev);
			runs_or(bm, runs, nr);
			free(runs);
			ret = fy_runs_from_bitmap(bm, m->pages, &runs, &nr);
			free(bm);
		}
	}
	free(prev);
	if (ret) {
		nd_mig_src_fail(m, ND_SRC_FAILED, true, "harvest failed: %s",
				strerror(-ret));
		return;
	}
	if (m->announced)
		m->round++;
	if (pc)
		mig_info(m,
			 "switchover to post-copy: VM paused, %" PRIu64
			 " pages left to fetch on demand",
			 fy_runs_pages(runs, nr));
	else
		mig_info(m,
			 "switchover: VM paused, last round %u with %" PRIu64
			 " pages (expected downtime %" PRIu64 " ms)",
			 m->round, fy_runs_pages(runs, nr), m->expected_dt_ms);
	round_begin(m, runs, nr);
	/*
	 * Post-copy: POSTCOPY first, so that D takes the last DIRTY_SETs as
	 * pages to fetch with the VM running, not as one more round to pull.
	 */
	ret = pc ? send_gen(m, PROTO_POSTCOPY) : 0;
	if (!ret)
		ret = announce_round(m, false);
	m->deadline = fy_now_ns() + m->n->cfg->mig_timeout_ms * 1000000ULL;
	if (!ret && m->o.verify && !pc) {
		/* the tick sends the chunks, then calls switchover_end() */
		ret = nd_mig_csum_start(m);
		if (!ret)
			return;
	}
	if (ret)
		nd_mig_src_fail(m, ND_SRC_FAILED, true, "switchover failed: %s",
				strerror(-ret));
	else
		switchover_end(m);
}

/*
 * After the last pages (and checksums): SWITCHOVER and STATE; post-copy:
 * STATE, after which our VM never runs again unless the destination
 * ABORTs before it resumed the VM (the record says so before POSTCOPY).
 */
static void switchover_end(struct nd_mig *m)
{
	struct proto_msg st = { .type = PROTO_STATE };
	struct kva_client *kc = m->vmp->kc;
	void *blob = NULL;
	size_t len = 0;
	int ret;

	nd_mig_csum_end(m);
	m->verified_pages = m->o.verify ? m->pages : 0;
	ret = nd_mig_has(m, ND_SM_PC) ? 0 : send_gen(m, PROTO_SWITCHOVER);
	if (!ret) {
		ret = kva_client_get_state(kc, &blob, &len);
		if (ret)
			mig_err(m, "GET_STATE: %s", strerror(-ret));
	}
	if (!ret) {
		st.state.mig = m->id;
		st.state.blob = blob;
		st.state.len = len;
		ret = nd_mig_send(m, &st);
	}
	free(blob);
	pr_debug("%" PRIu64 ": paused, announced, STATE sent in %.1f ms", m->id,
		 (fy_now_ns() - m->t_pause) / 1e6);
	if (ret)
		nd_mig_src_fail(m, ND_SRC_FAILED, true, "switchover failed: %s",
				strerror(-ret));
}

/*
 * --mode postcopy: D is ready (it answered the empty round 0). Pause, then
 * find the pages with data: D fetches those, the rest are holes.
 */
static void postcopy_start(struct nd_mig *m)
{
	const struct kva_layout *l = kva_client_layout(m->vmp->kc);
	struct fy_run *runs;
	size_t nr;
	int ret;

	ret = kva_client_pause(m->vmp->kc);
	if (ret) {
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"cannot pause the VM: %s", strerror(-ret));
		return;
	}
	m->t_pause = fy_now_ns();
	ret = nd_memfd_data_runs(l->regions[0].memfd, m->pages, &runs, &nr);
	if (ret) {
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"cannot scan guest RAM: %s", strerror(-ret));
		return;
	}
	m->resident = fy_runs_pages(runs, nr);
	switchover(m, runs, nr, true);
}

/* The destination pulled everything announced: next round or switchover. */
static void round_done(struct nd_mig *m)
{
	uint64_t now = fy_now_ns(), dirty, elapsed, est;
	struct fy_run *runs;
	bool asked;
	size_t nr;
	int ret;

	if (m->o.mode == PROTO_MODE_POSTCOPY) {
		postcopy_start(m);
		return;
	}
	elapsed = now - m->round_start_ns;
	/*
	 * Bandwidth: the best rate of a round that moved at least 1 MiB
	 * (tiny rounds measure the round trip, not the link).
	 */
	if (m->round_pages * FY_PAGE_SIZE >= (1 << 20) || m->bw == 0) {
		double bw =
			m->round_pages * FY_PAGE_SIZE / (elapsed / 1e9 + 1e-9);

		if (m->round_pages &&
		    (bw > m->bw || m->round_pages * FY_PAGE_SIZE >= (8 << 20)))
			m->bw = bw;
	}
	ret = harvest(m, &runs, &nr, &dirty);
	if (ret) {
		nd_mig_src_fail(m, ND_SRC_FAILED, true, "harvest failed: %s",
				strerror(-ret));
		return;
	}
	if (m->last_harvest_ns)
		m->dirty_rate = dirty / ((now - m->last_harvest_ns) / 1e9);
	m->last_harvest_ns = now;
	est = m->bw > 0 ? (uint64_t)(dirty * FY_PAGE_SIZE / m->bw * 1000)
			: UINT64_MAX;
	m->expected_dt_ms = est;
	pr_debug("%" PRIu64 ": round %u done in %.1f ms; %" PRIu64
		 " dirty, bw %.0f MB/s, expected downtime %" PRIu64 " ms",
		 m->id, m->round, elapsed / 1e6, dirty, m->bw / 1e6, est);
	if (est <= m->limit_ms) {
		switchover(m, runs, nr, false);
		return;
	}
	/* progress: the dirty set shrinks by a tenth at least */
	if (!m->best_dirty || dirty * 10 < m->best_dirty * 9) {
		m->best_dirty = dirty;
		m->stall = 0;
	} else {
		m->stall++;
	}
	asked = m->sm.state == ND_SRC_PRECOPY_ASKED;
	if (m->o.mode == PROTO_MODE_HYBRID &&
	    (asked || (m->o.postcopy_after ? m->round + 1 >= m->o.postcopy_after
					   : m->stall >= m->o.stall_rounds))) {
		snprintf(m->actions, sizeof(m->actions),
			 "post-copy after round %u%s", m->round,
			 asked ? " (asked)" : "");
		switchover(m, runs, nr, true);
		return;
	}
	if (m->round + 1 >= m->o.max_rounds) {
		free(runs);
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"did not converge in %u rounds: %" PRIu64
				" pages dirty per round (%.0f pages/s), "
				"bandwidth "
				"%.0f MB/s, expected downtime %" PRIu64
				" ms > limit %" PRIu64 " ms",
				m->round + 1, dirty, m->dirty_rate, m->bw / 1e6,
				est, m->limit_ms);
		return;
	}
	if (nd_mig_converge(m, est)) {
		switchover(m, runs, nr, false);
		return;
	}
	m->round++;
	round_begin(m, runs, nr);
	if (announce_round(m, true))
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"lost the connection to %s",
				m->peer->conf->name);
}

/* Tell D where our copy is: after its "yes", and after our restart. */
static int send_holder_map(struct nd_mig *m)
{
	struct proto_msg h = { .type = PROTO_HOLDER_MAP };
	struct proto_holder_region r = { 0 };
	struct proto_genrun all = { 0, m->pages, 0 };
	struct fab_rkey rk;

	/* with deltas D pulls the copy it will later get deltas against */
	fab_mr_rkey(m->o.delta ? m->cache_mr : m->mr, &rk);
	h.holder_map.mig = m->id;
	snprintf(h.holder_map.node, sizeof(h.holder_map.node), "%s",
		 m->n->cfg->name);
	h.holder_map.addr_len = m->n->fab_addr_len;
	memcpy(h.holder_map.addr, m->n->fab_addr_raw, m->n->fab_addr_len);
	h.holder_map.page_size = FY_PAGE_SIZE;
	h.holder_map.nregions = 1;
	h.holder_map.regions = &r;
	r.id = 0;
	r.key = rk.key;
	r.base = rk.addr;
	r.len = m->pages * FY_PAGE_SIZE;
	r.ngens = 1;
	r.gens = &all;
	return nd_mig_send(m, &h);
}

/*
 * D said yes: publish our copy and start round 0, or with --mode
 * postcopy pause at once and hand D the VM.
 */
static void src_start_rounds(struct nd_mig *m)
{
	const struct kva_layout *l = kva_client_layout(m->vmp->kc);
	bool postcopy = m->o.mode == PROTO_MODE_POSTCOPY;
	struct fy_run *runs, *junk;
	uint64_t dirty;
	size_t nr, njunk;
	int ret;

	/*
	 * Clear the dirty log first, then look for data: a page written
	 * after the harvest shows in the next one, whatever the scan saw.
	 */
	ret = harvest(m, &junk, &njunk, &dirty);
	free(junk);
	runs = NULL;
	nr = 0;
	/* post-copy: an empty round 0 that D answers once it is ready */
	if (!ret && !postcopy)
		ret = nd_memfd_data_runs(l->regions[0].memfd, m->pages, &runs,
					 &nr);
	if (ret) {
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"cannot scan guest RAM: %s", strerror(-ret));
		return;
	}
	/* --compress delta: D pulls round 0 from a copy that we keep */
	for (size_t i = 0; m->o.delta && i < nr; i++)
		memcpy(m->cache + runs[i].start * FY_PAGE_SIZE,
		       m->map + runs[i].start * FY_PAGE_SIZE,
		       runs[i].len * FY_PAGE_SIZE);
	ret = send_holder_map(m);
	if (ret) {
		free(runs);
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"lost the connection to %s",
				m->peer->conf->name);
		return;
	}
	if (nd_mig_to(m,
		      m->sm.state == ND_SRC_PREPARE_ASKED ? ND_SRC_PRECOPY_ASKED
							  : ND_SRC_PRECOPY,
		      "the destination said yes")) {
		free(runs);
		nd_mig_src_fail(m, ND_SRC_FAILED, true, "internal error");
		return;
	}
	m->round = 0;
	m->last_harvest_ns = fy_now_ns();
	m->resident = fy_runs_pages(runs, nr);
	round_begin(m, runs, nr);
	mig_info(m,
		 "pre-copy: round 0 with %" PRIu64 " of %" PRIu64 " pages (the "
		 "rest are "
		 "holes)",
		 m->resident, m->pages);
	if (announce(m, true))
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"lost the connection to %s",
				m->peer->conf->name);
}

/* `ferry migrate-postcopy`: the rest of the round, then post-copy. */
static void src_postcopy_now(struct nd_mig *m)
{
	int ret = announce(m, false);

	if (ret) {
		nd_mig_src_fail(m, ND_SRC_FAILED, true,
				"lost the connection to %s",
				m->peer->conf->name);
		return;
	}
	snprintf(m->actions, sizeof(m->actions),
		 "post-copy during round %u (asked)", m->round);
	switchover(m, NULL, 0, true);
}

/* The source's copy is no longer needed: the VM exits here. */
static void src_drop_vm(struct nd_mig *m)
{
	struct nd_vm *vm = m->vmp;
	int ret;

	if (!vm)
		return;
	ret = kva_client_exit(vm->kc);
	if (ret)
		mig_err(m, "EXIT: %s", strerror(-ret));
	nd_mig_src_release(m);
	nd_vm_forget(vm);
}

/* D holds every page and runs the VM: ours exits, the migration ends. */
static void src_complete(struct nd_mig *m, uint64_t now)
{
	src_drop_vm(m);
	m->t_end = now;
	nd_mig_to(m, ND_SRC_COMPLETED, "the VM runs on the destination");
}

/* RESUME: D may run the VM now. */
static void send_resume(struct nd_mig *m, uint64_t now)
{
	if (m->resumes++ % 10 == 1)
		mig_err(m,
			"no RESUMED from %s yet: the VM stays paused here "
			"until it answers",
			m->peer->conf->name);
	send_gen(m, PROTO_RESUME);
	m->deadline = now + RESUME_NS;
}

/*
 * D is READY: decide. Recorded before RESUME goes out, so that a restart
 * never runs our copy once D may run its own.
 */
static void src_committed(struct nd_mig *m, uint64_t now)
{
	if (nd_mig_to(m, ND_SRC_COMMITTED, "the destination is ready"))
		return;
	send_resume(m, now);
	/*
	 * The VM stays paused here until RESUMED: tearing down 1 GiB of
	 * registration first would count in the downtime.
	 */
	mig_info(m, "committed: the VM now lives on %s", m->peer->conf->name);
}

void nd_mig_src_handle(struct nd_mig *m, struct proto_msg *msg)
{
	enum nd_mig_phase phase = nd_mig_phase(m);
	enum nd_src_state st = m->sm.state;
	uint64_t now = fy_now_ns();

	m->last_heard = now;
	switch (msg->type) {
	case PROTO_HOLDER_MAP:
		if (st == ND_SRC_PREPARE || st == ND_SRC_PREPARE_ASKED)
			src_start_rounds(m);
		break;
	case PROTO_PROGRESS:
		if (phase != ND_MIG_PRECOPY && phase != ND_MIG_SWITCHOVER &&
		    phase != ND_MIG_POSTCOPY)
			break;
		/* pages not announced yet (paced) are not valid there either */
		m->pages_valid =
			msg->progress.pages_valid -
			FY_MIN(msg->progress.pages_valid,
			       m->todo_pos < m->ntodo
				       ? fy_runs_pages(&m->todo[m->todo_pos],
						       m->ntodo - m->todo_pos)
				       : 0);
		m->bytes = msg->progress.bytes;
		if (now > m->round_start_ns && m->bytes > m->round_bytes0)
			m->live_bw = (m->bytes - m->round_bytes0) /
				     ((now - m->round_start_ns) / 1e9);
		/* every page announced pulled (announced pages are disjoint) */
		if (m->todo_sent && msg->progress.bytes >= m->expect_bytes &&
		    msg->progress.pages_valid == msg->progress.pages_total &&
		    phase == ND_MIG_PRECOPY)
			round_done(m);
		break;
	case PROTO_PC_STATS:
		m->pcs = msg->pc_stats;
		break;
	case PROTO_COMMIT:
		if (phase == ND_MIG_POSTCOPY) {
			/* every page is on D: our copy and VM can go */
			src_complete(m, now);
			mig_info(m,
				 "completed in %.3f s: downtime %.1f ms, then "
				 "%.3f s of post-copy, %" PRIu64 " faults",
				 (m->t_end - m->t_start) / 1e9,
				 m->downtime_ns / 1e6,
				 (now - m->t_resumed) / 1e9, m->pcs.faults);
		} else if (st == ND_SRC_SWITCHOVER) {
			/*
			 * A destination from before READY decided itself and
			 * resumes the VM: ours must not run again. (It drops
			 * our RESUME as undecodable; RESUMED ends it.)
			 */
			mig_info(m, "%s committed on its own (an older ferryd)",
				 m->peer->conf->name);
			src_committed(m, now);
		}
		break;
	case PROTO_READY:
		if (st == ND_SRC_SWITCHOVER && !m->csum_running)
			src_committed(m, now);
		else if (st == ND_SRC_COMMITTED)
			send_resume(m, now);
		break;
	case PROTO_RESUMED:
		if (st == ND_SRC_PC_SWITCHOVER ||
		    st == ND_SRC_PC_SWITCHOVER_LOST) {
			/* the VM lives on D; we serve its pages until COMMIT */
			m->downtime_ns = now - m->t_pause;
			m->t_resumed = now;
			nd_mig_to(m,
				  st == ND_SRC_PC_SWITCHOVER
					  ? ND_SRC_POSTCOPY
					  : ND_SRC_POSTCOPY_LOST,
				  "the VM runs on the destination");
			mig_info(m,
				 "post-copy: the VM runs on %s after %.1f ms "
				 "of downtime",
				 m->peer->conf->name, m->downtime_ns / 1e6);
		} else if (st == ND_SRC_COMMITTED) {
			m->downtime_ns = m->recovered ? 0 : now - m->t_pause;
			src_complete(m, now);
			mig_info(m,
				 "completed in %.3f s, downtime %.1f ms, %u "
				 "rounds, %" PRIu64 " pages",
				 (m->t_end - m->t_start) / 1e9,
				 m->downtime_ns / 1e6, m->round + 1,
				 m->pages_pulled);
		}
		break;
	case PROTO_ABORT:
		if (phase == ND_MIG_POSTCOPY) {
			/* the VM ran there: ours must not run again */
			mig_err(m, "ABORT during post-copy ignored: %s",
				msg->abort.reason);
			break;
		}
		/* after our commit too: D says its VM never ran, nor will */
		nd_mig_src_abandon(m, false, "%s aborted: %s",
				   m->peer->conf->name, msg->abort.reason);
		break;
	case PROTO_ERROR:
		if (st == ND_SRC_COMMITTED) {
			/* not D's answer: RESUME goes on until it is */
			mig_err(m, "%s sent ERROR after commit: %s",
				m->peer->conf->name, msg->error.text);
			break;
		}
		nd_mig_src_fail(m, ND_SRC_FAILED, false, "%s refused: %s (%s)",
				m->peer->conf->name, msg->error.text,
				strerror(msg->error.code));
		break;
	default:
		mig_err(m, "unexpected %s", proto_type_name(msg->type));
	}
}

/*
 * A destination has lost its source when the connection to it dropped
 * after the migration began (the source died or restarted: its side of
 * the migration is gone), or when it has been silent for peer_timeout_ms.
 * Not merely because no PONG came yet: a source that restarted just
 * before this migration is unreachable by PONG until our side has
 * reconnected, though its PINGs and messages arrive.
 */
static bool dst_lost_source(const struct nd_mig *m, uint64_t now)
{
	const struct nd_peer *p = m->peer;

	if (nd_peer_state(p, now) != ND_PEER_UNREACHABLE)
		return false;
	return p->disconnect_ns > m->t_start ||
	       now - p->last_seen_ns >= m->n->cfg->peer_timeout_ms * 1000000ULL;
}

void nd_migs_tick(struct nd_node *n, uint64_t now)
{
	for (int i = 0; i < ND_MIGS_MAX; i++) {
		struct nd_mig *m = n->migs[i];
		enum nd_peer_state ps;
		unsigned st;

		if (!m)
			continue;
		if (m->dst) {
			if (nd_mig_dst_poll(m))
				nd_mig_dst_free(m);
			if (m->dst && !nd_mig_finished(m) &&
			    nd_mig_phase(m) < ND_MIG_READY &&
			    dst_lost_source(m, now))
				nd_mig_dst_stop(m, "source unreachable", false);
			continue;
		}
		ps = nd_peer_state(m->peer, now);
		st = m->sm.state;
		if (!m->source && st == ND_DST_FAILED_UNTOLD &&
		    ps == ND_PEER_REACHABLE) {
			/* our copy is gone and never ran: the source's may */
			send_abort(m, m->reason);
			nd_mig_to(m, ND_DST_FAILED, "ABORT sent");
		}
		if (nd_mig_finished(m) || !m->source)
			continue;
		if (nd_mig_has(m, ND_SM_PC)) {
			/*
			 * Post-copy: whatever happens D may run the VM, so
			 * ours waits, paused, with its pages served, for
			 * COMMIT (or ABORT before D resumed it).
			 */
			if (nd_mig_has(m, ND_SM_LOST) &&
			    ps == ND_PEER_REACHABLE && !send_holder_map(m)) {
				nd_mig_to(m,
					  st == ND_SRC_POSTCOPY_LOST
						  ? ND_SRC_POSTCOPY
						  : ND_SRC_PC_SWITCHOVER,
					  "holder map sent again");
				mig_info(m, "post-copy: holder map sent again");
			}
			continue;
		}
		if (ps != ND_PEER_REACHABLE && st != ND_SRC_COMMITTED) {
			nd_mig_src_fail(m, ND_SRC_FAILED, true,
					"peer %s unreachable (no PONG for %u "
					"ms)",
					m->peer->conf->name,
					n->cfg->peer_timeout_ms);
			continue;
		}
		if (st == ND_SRC_COMMITTED) {
			/* only D's RESUMED or ABORT ends it: ask until then */
			if (now > m->deadline && ps == ND_PEER_REACHABLE)
				send_resume(m, now);
			continue;
		}
		if (nd_mig_phase(m) == ND_MIG_PREPARE && now > m->deadline) {
			nd_mig_src_fail(m, ND_SRC_FAILED, true,
					"%s did not answer MIGRATE_PREPARE in "
					"%llu s",
					m->peer->conf->name,
					ND_MIG_PREPARE_TIMEOUT_NS /
						1000000000ULL);
			continue;
		}
		if (nd_mig_phase(m) != ND_MIG_PREPARE &&
		    now - m->last_heard > n->cfg->mig_timeout_ms * 1000000ULL) {
			nd_mig_src_fail(m, ND_SRC_FAILED, true,
					"no progress from %s for %u ms "
					"(stalled "
					"link?)",
					m->peer->conf->name,
					n->cfg->mig_timeout_ms);
			continue;
		}
		if (m->o.timeout_s &&
		    now - m->t_start > m->o.timeout_s * 1000000000ULL) {
			nd_mig_src_fail(m, ND_SRC_FAILED, true,
					"not done after %" PRIu64 " s "
					"(--timeout)",
					m->o.timeout_s);
			continue;
		}
		if (st == ND_SRC_SWITCHOVER && m->csum_running) {
			int ret;

			if (nd_mig_csum_send(m, &ret) || ret) {
				if (ret && __atomic_load_n(&m->csum_ret,
							   __ATOMIC_RELAXED))
					nd_mig_src_fail(m, ND_SRC_FAILED, true,
							"verify: cannot read "
							"guest RAM: %s",
							strerror(-ret));
				else if (ret)
					nd_mig_src_fail(m, ND_SRC_FAILED, true,
							"lost the connection "
							"to %s (cannot send "
							"VERIFY: %s)",
							m->peer->conf->name,
							strerror(-ret));
				else
					switchover_end(m);
			}
			continue;
		}
		if (st == ND_SRC_PRECOPY_ASKED) {
			src_postcopy_now(m);
			continue;
		}
		if (st == ND_SRC_PRECOPY && announce(m, true))
			nd_mig_src_fail(m, ND_SRC_FAILED, true,
					"lost the connection to %s",
					m->peer->conf->name);
	}
	n->next_mig_tick_ns =
		now + (nd_migs_active(n) ? TICK_NS : IDLE_TICK_NS);
}
