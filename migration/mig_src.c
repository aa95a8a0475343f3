// SPDX-License-Identifier: MIT
/*
 * The source's engine: its state machine's decisions, on the control
 * thread (the actions are mig_src_io.c's).
 *
 * The source runs in the control thread: its adapter calls (HARVEST, PAUSE,
 * GET_STATE, RESUME, EXIT) take milliseconds and pages never pass through
 * it. Every transfer is a pull by the destination (mig_dst.c):
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
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_retain.h"
#include "migration/mig_src.h"

static void switchover_end(struct mig *m);

/*
 * Pause, last harvest, last announcement, checksums, SWITCHOVER, STATE.
 * prev (nprev runs, taken) is the dirty set harvested just before, which
 * the last round carries too. pc: to post-copy.
 */
static void switchover(struct mig *m, struct fy_run *prev, size_t nprev,
		       bool pc)
{
	struct kva_client *kc = m->vmp->kc;
	struct fy_run *runs;
	uint64_t dirty;
	size_t nr;
	int ret;

	ret = m->t_pause ? 0 : mig_vm_pause(m->n, kc);
	if (ret) {
		mig_src_fail(m, MIG_SRC_FAILED, true, "cannot pause the VM: %s",
			     strerror(-ret));
		return;
	}
	if (!m->t_pause)
		m->t_pause = mig_now(m->n);
	/* recorded before POSTCOPY goes out: a restart keeps it paused */
	ret = mig_to(m, pc ? MIG_SRC_PC_SWITCHOVER : MIG_SRC_SWITCHOVER,
		     "VM paused");
	if (!ret)
		ret = mig_src_harvest(m, &runs, &nr, &dirty);
	if (!ret && nprev) {
		uint64_t *bm = fy_bitmap_alloc(m->pages);

		ret = -ENOMEM;
		if (bm) {
			fy_runs_to_bitmap(prev, nprev, bm, m->pages);
			fy_runs_to_bitmap(runs, nr, bm, m->pages);
			free(runs);
			ret = fy_runs_from_bitmap(bm, m->pages, &runs, &nr);
			free(bm);
		}
	}
	free(prev);
	if (ret) {
		mig_src_fail(m, MIG_SRC_FAILED, true, "harvest failed: %s",
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
	if (mig_src_round_begin(m, runs, nr))
		return;
	/*
	 * Post-copy: POSTCOPY first, so that D takes the last DIRTY_SETs as
	 * pages to fetch with the VM running, not as one more round to pull.
	 */
	ret = pc ? mig_src_send_gen(m, PROTO_POSTCOPY) : 0;
	if (!ret && pc && mig_retain_wanted(m)) {
		/* D has our HOLDER_MAP: the copy it reads from, kept as is */
		m->retain = !mig_src_send_gen(m, PROTO_KEPT);
	}
	if (!ret)
		ret = mig_src_announce_round(m, false);
	m->deadline = mig_now(m->n) + m->n->cfg.mig_timeout_ms * 1000000ULL;
	if (!ret && m->o.verify && !pc) {
		/* the tick sends the chunks, then calls switchover_end() */
		ret = mig_csum_start(m);
		if (!ret)
			return;
	}
	if (ret)
		mig_src_fail(m, MIG_SRC_FAILED, true, "switchover failed: %s",
			     strerror(-ret));
	else
		switchover_end(m);
}

/*
 * After the last pages (and checksums): SWITCHOVER and STATE; post-copy:
 * STATE, after which our VM never runs again unless the destination
 * ABORTs before it resumed the VM (the record says so before POSTCOPY).
 */
static void switchover_end(struct mig *m)
{
	struct proto_msg st = { .type = PROTO_STATE };
	struct kva_client *kc = m->vmp->kc;
	void *blob = NULL;
	size_t len = 0;
	int ret;

	mig_csum_end(m);
	m->verified_pages = m->o.verify ? m->pages : 0;
	ret = mig_has(m, MIG_SM_PC) ? 0 : mig_src_send_gen(m, PROTO_SWITCHOVER);
	if (!ret) {
		ret = mig_vm_get_state(m->n, kc, &blob, &len);
		if (ret)
			mig_err(m, "GET_STATE: %s", strerror(-ret));
	}
	if (!ret) {
		st.state.mig = m->id;
		st.state.blob = blob;
		st.state.len = len;
		ret = mig_send(m, &st);
	}
	free(blob);
	pr_debug("%" PRIu64 ": paused, announced, STATE sent in %.1f ms", m->id,
		 (mig_now(m->n) - m->t_pause) / 1e6);
	if (ret)
		mig_src_fail(m, MIG_SRC_FAILED, true, "switchover failed: %s",
			     strerror(-ret));
}

/*
 * --mode postcopy: D is ready (it answered the empty round 0). Pause, then
 * find the pages with data: D fetches those, the rest are holes.
 */
static void postcopy_start(struct mig *m)
{
	const struct kva_layout *l = mig_vm_layout(m->n, m->vmp->kc);
	struct fy_run *runs;
	size_t nr;
	int ret;

	ret = mig_vm_pause(m->n, m->vmp->kc);
	if (ret) {
		mig_src_fail(m, MIG_SRC_FAILED, true, "cannot pause the VM: %s",
			     strerror(-ret));
		return;
	}
	m->t_pause = mig_now(m->n);
	ret = mig_memfd_data_runs(l->regions[0].memfd, m->pages, &runs, &nr);
	if (ret) {
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "cannot scan guest RAM: %s", strerror(-ret));
		return;
	}
	m->resident = fy_runs_pages(runs, nr);
	switchover(m, runs, nr, true);
}

/* The destination pulled everything announced: next round or switchover. */
static void round_done(struct mig *m)
{
	uint64_t now = mig_now(m->n), dirty, est;
	enum mig_src_next next;
	struct fy_run *runs;
	unsigned pct;
	size_t nr;
	int ret;

	if (m->o.mode == PROTO_MODE_POSTCOPY) {
		postcopy_start(m);
		return;
	}
	mig_src_round_bw(m, now - m->round_start_ns);
	ret = mig_src_harvest(m, &runs, &nr, &dirty);
	if (ret) {
		mig_src_fail(m, MIG_SRC_FAILED, true, "harvest failed: %s",
			     strerror(-ret));
		return;
	}
	est = mig_src_estimate(m, dirty, now);
	pr_debug("%" PRIu64 ": round %u done in %.1f ms; %" PRIu64
		 " dirty, bw %.0f MB/s, expected downtime %" PRIu64 " ms",
		 m->id, m->round, (now - m->round_start_ns) / 1e6, dirty,
		 m->bw / 1e6, est);
	next = mig_src_decide(m, dirty, est, &pct);
	if (pct)
		mig_throttle(m, pct);
	if (next == MIG_NEXT_SWITCHOVER || next == MIG_NEXT_POSTCOPY) {
		switchover(m, runs, nr, next == MIG_NEXT_POSTCOPY);
		return;
	}
	if (next == MIG_NEXT_FAIL) {
		free(runs);
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "did not converge in %u rounds: %" PRIu64
			     " pages dirty per round (%.0f pages/s), "
			     "bandwidth %.0f MB/s, expected downtime "
			     "%" PRIu64 " ms > limit %" PRIu64 " ms",
			     m->round + 1, dirty, m->dirty_rate, m->bw / 1e6,
			     est, m->limit_ms);
		return;
	}
	m->round++;
	if (mig_src_round_begin(m, runs, nr))
		return;
	if (mig_src_announce_round(m, true))
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "lost the connection to %s", m->peer->name);
}

/*
 * D said yes: publish our copy and start round 0, or with --mode
 * postcopy pause at once and hand D the VM.
 */
static void src_start_rounds(struct mig *m)
{
	const struct kva_layout *l = mig_vm_layout(m->n, m->vmp->kc);
	bool postcopy = m->o.mode == PROTO_MODE_POSTCOPY;
	struct fy_run *runs, *junk;
	uint64_t dirty;
	size_t nr, njunk;
	int ret;

	/*
	 * Clear the dirty log first, then look for data: a page written
	 * after the harvest shows in the next one, whatever the scan saw.
	 */
	ret = mig_src_harvest(m, &junk, &njunk, &dirty);
	free(junk);
	runs = NULL;
	nr = 0;
	/* post-copy: an empty round 0 that D answers once it is ready */
	if (!ret && !postcopy)
		ret = mig_memfd_data_runs(l->regions[0].memfd, m->pages, &runs,
					  &nr);
	if (ret) {
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "cannot scan guest RAM: %s", strerror(-ret));
		return;
	}
	/* --compress delta: D pulls round 0 from a copy that we keep */
	for (size_t i = 0; m->o.delta && i < nr; i++)
		memcpy(m->cache + runs[i].start * FY_PAGE_SIZE,
		       m->map + runs[i].start * FY_PAGE_SIZE,
		       runs[i].len * FY_PAGE_SIZE);
	ret = mig_src_send_holder_map(m);
	/* the copies peers keep, for what is current in them */
	if (!ret && !postcopy)
		ret = mig_refs_send(m);
	if (ret) {
		free(runs);
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "lost the connection to %s", m->peer->name);
		return;
	}
	if (mig_to(m,
		   m->sm.state == MIG_SRC_PREPARE_ASKED ? MIG_SRC_PRECOPY_ASKED
							: MIG_SRC_PRECOPY,
		   "the destination said yes")) {
		free(runs);
		mig_src_fail(m, MIG_SRC_FAILED, true, "internal error");
		return;
	}
	m->round = 0;
	m->last_harvest_ns = mig_now(m->n);
	m->resident = fy_runs_pages(runs, nr);
	if (mig_src_round_begin(m, runs, nr))
		return;
	mig_info(m,
		 "pre-copy: round 0 with %" PRIu64 " of %" PRIu64 " pages (the "
		 "rest are "
		 "holes)",
		 m->resident, m->pages);
	if (mig_src_announce(m, true))
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "lost the connection to %s", m->peer->name);
}

/* `ferry migrate-postcopy`: the rest of the round, then post-copy. */
static void src_postcopy_now(struct mig *m)
{
	int ret = mig_src_announce(m, false);

	if (ret) {
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "lost the connection to %s", m->peer->name);
		return;
	}
	snprintf(m->actions, sizeof(m->actions),
		 "post-copy during round %u (asked)", m->round);
	switchover(m, NULL, 0, true);
}

/* D holds every page and runs the VM: ours exits, the migration ends. */
static void src_complete(struct mig *m, uint64_t now)
{
	mig_retain_keep(m);
	mig_src_drop_vm(m);
	m->t_end = now;
	mig_to(m, MIG_SRC_COMPLETED, "the VM runs on the destination");
}

/*
 * D is READY: decide. Recorded before RESUME goes out, so that a restart
 * never runs our copy once D may run its own.
 */
static void src_committed(struct mig *m, uint64_t now)
{
	if (mig_to(m, MIG_SRC_COMMITTED, "the destination is ready"))
		return;
	mig_src_relay_release(m, "the new destination holds every page");
	mig_retain_announce(m);
	mig_src_send_resume(m, now);
	/*
	 * The VM stays paused here until RESUMED: tearing down 1 GiB of
	 * registration first would count in the downtime.
	 */
	mig_info(m, "committed: the VM now lives on %s", m->peer->name);
}

/* D's PROGRESS: the counters; every page announced pulled: round done. */
static void src_progress(struct mig *m, const struct proto_progress *p,
			 uint64_t now)
{
	/* pages not announced yet (paced) are not valid there either */
	m->pages_valid = p->pages_valid -
			 FY_MIN(p->pages_valid,
				m->todo_pos < m->ntodo
					? fy_runs_pages(&m->todo[m->todo_pos],
							m->ntodo - m->todo_pos)
					: 0);
	m->bytes = p->bytes;
	m->nhb = p->nholders;
	memcpy(m->hb, p->holders, p->nholders * sizeof(*p->holders));
	if (now > m->round_start_ns && m->bytes > m->round_bytes0)
		m->live_bw = (m->bytes - m->round_bytes0) /
			     ((now - m->round_start_ns) / 1e9);
	/* every page announced pulled (announced pages are disjoint) */
	if (m->todo_sent && p->bytes >= m->expect_bytes &&
	    p->pages_valid == p->pages_total && mig_phase_of(m) == MIG_PRECOPY)
		round_done(m);
}

/* RESUMED after POSTCOPY: the VM lives on D; we serve its pages. */
static void src_runs_there(struct mig *m, uint64_t now)
{
	m->downtime_ns = now - m->t_pause;
	m->t_resumed = now;
	mig_to(m,
	       m->sm.state == MIG_SRC_PC_SWITCHOVER ? MIG_SRC_POSTCOPY
						    : MIG_SRC_POSTCOPY_LOST,
	       "the VM runs on the destination");
	mig_info(m, "post-copy: the VM runs on %s after %.1f ms of downtime",
		 m->peer->name, m->downtime_ns / 1e6);
	/* its background pulls read from the relay until COMMIT */
}

/* RESUMED after our commit, or COMMIT after post-copy: it is over. */
static void src_done(struct mig *m, uint64_t now)
{
	bool pc = mig_has(m, MIG_SM_PC);

	if (!pc)
		m->downtime_ns = m->recovered ? 0 : now - m->t_pause;
	/* post-copy: COMMIT, the destination holds every page */
	mig_src_relay_release(m, "the new destination holds every page");
	src_complete(m, now);
	if (pc)
		mig_info(m,
			 "completed in %.3f s: downtime %.1f ms, then %.3f s "
			 "of post-copy, %" PRIu64 " faults",
			 (m->t_end - m->t_start) / 1e9, m->downtime_ns / 1e6,
			 mig_pc_ns(m, now) / 1e9, m->pcs.faults);
	else
		mig_info(m,
			 "completed in %.3f s, downtime %.1f ms, %u rounds, "
			 "%" PRIu64 " pages",
			 (m->t_end - m->t_start) / 1e9, m->downtime_ns / 1e6,
			 m->round + 1, m->pages_pulled);
}

void mig_src_handle(struct mig *m, struct proto_msg *msg)
{
	uint64_t now = mig_now(m->n);
	const char *why;

	m->last_heard = now;
	switch (mig_src_on(m->sm.state, msg->type, m->csum_running, &why)) {
	case MIG_ACT_IGNORE:
		break;
	case MIG_ACT_REFUSE:
		mig_err(m, "%s: %s %s", why, proto_type_name(msg->type),
			msg->type == PROTO_ABORT   ? msg->abort.reason
			: msg->type == PROTO_ERROR ? msg->error.text
						   : "");
		break;
	case MIG_ACT_START:
		src_start_rounds(m);
		break;
	case MIG_ACT_RETARGETED:
		mig_src_retargeted(m);
		break;
	case MIG_ACT_PROGRESS:
		src_progress(m, &msg->progress, now);
		break;
	case MIG_ACT_STATS:
		m->pcs = msg->pc_stats;
		break;
	case MIG_ACT_COMMIT:
		/*
		 * COMMIT: a destination from before READY decided itself
		 * and resumes the VM: ours must not run again. (It drops our
		 * RESUME as undecodable; RESUMED ends it.)
		 */
		if (msg->type == PROTO_COMMIT)
			mig_info(m, "%s committed on its own (an older ferryd)",
				 m->peer->name);
		src_committed(m, now);
		break;
	case MIG_ACT_RESUME_AGAIN:
		mig_src_send_resume(m, now);
		break;
	case MIG_ACT_RUNS_THERE:
		src_runs_there(m, now);
		break;
	case MIG_ACT_COMPLETE:
		src_done(m, now);
		break;
	case MIG_ACT_ABANDON:
		mig_src_abandon(m, false, "%s aborted: %s", m->peer->name,
				msg->abort.reason);
		break;
	case MIG_ACT_FAIL:
		mig_src_fail(m, MIG_SRC_FAILED, false, "%s refused: %s (%s)",
			     m->peer->name, msg->error.text,
			     strerror(msg->error.code));
		break;
	}
}

/* The source's timers: peer loss, silence, --timeout, RESUME again. */
static bool src_timed_out(struct mig *m, uint64_t now, enum mig_peer_state ps)
{
	const struct mig_conf *cfg = &m->n->cfg;

	if (ps != MIG_PEER_REACHABLE)
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "peer %s unreachable (no PONG for %u ms)",
			     m->peer->name, cfg->peer_timeout_ms);
	else if ((mig_phase_of(m) == MIG_PREPARE ||
		  m->sm.state == MIG_SRC_RETARGET) &&
		 now > m->deadline)
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "%s did not answer MIGRATE_PREPARE in %llu s",
			     m->peer->name,
			     MIG_PREPARE_TIMEOUT_NS / 1000000000ULL);
	else if (mig_phase_of(m) != MIG_PREPARE &&
		 m->sm.state != MIG_SRC_RETARGET &&
		 now - m->last_heard > cfg->mig_timeout_ms * 1000000ULL)
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "no progress from %s for %u ms (stalled "
			     "link?)",
			     m->peer->name, cfg->mig_timeout_ms);
	else if (m->o.timeout_s &&
		 now - m->t_start > m->o.timeout_s * 1000000000ULL)
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "not done after %" PRIu64 " s (--timeout)",
			     m->o.timeout_s);
	else
		return false;
	return true;
}

/* --verify: send the checksums computed so far; all sent: SWITCHOVER. */
static void src_send_csums(struct mig *m)
{
	int ret;

	if (!mig_csum_send(m, &ret) && !ret)
		return;
	if (ret && __atomic_load_n(&m->csum_ret, __ATOMIC_RELAXED))
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "verify: cannot read guest RAM: %s",
			     strerror(-ret));
	else if (ret)
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "lost the connection to %s (cannot send "
			     "VERIFY: %s)",
			     m->peer->name, strerror(-ret));
	else
		switchover_end(m);
}

void mig_src_tick(struct mig *m, uint64_t now)
{
	enum mig_peer_state ps = mig_peer_state(m->n, m->peer, now);
	enum mig_src_state st = m->sm.state;

	if (mig_finished(m))
		return;
	if (m->reg_running) {
		mig_src_reg_tick(m, now);
		return;
	}
	if (mig_has(m, MIG_SM_PC)) {
		/*
		 * Post-copy: whatever happens D may run the VM, so ours
		 * waits, paused, with its pages served, for COMMIT (or
		 * ABORT before D resumed it).
		 */
		if (mig_has(m, MIG_SM_LOST) && ps == MIG_PEER_REACHABLE &&
		    !mig_src_send_holder_map(m)) {
			mig_to(m,
			       st == MIG_SRC_POSTCOPY_LOST
				       ? MIG_SRC_POSTCOPY
				       : MIG_SRC_PC_SWITCHOVER,
			       "holder map sent again");
			mig_info(m, "post-copy: holder map sent again");
		} else if (st == MIG_SRC_POSTCOPY && ps == MIG_PEER_REACHABLE &&
			   mig_src_rekeyed(m) && !mig_src_send_holder_map(m)) {
			/* D's reads fail with the old key: it waits for this */
			mig_info(m, "post-copy: our copy was registered anew: "
				    "holder map sent again");
		}
		return;
	}
	if (st == MIG_SRC_COMMITTED) {
		/* only D's RESUMED or ABORT ends it: ask until then */
		if (now > m->deadline && ps == MIG_PEER_REACHABLE)
			mig_src_send_resume(m, now);
		return;
	}
	if (src_timed_out(m, now, ps))
		return;
	if (st == MIG_SRC_SWITCHOVER && m->csum_running)
		src_send_csums(m);
	else if (st == MIG_SRC_PRECOPY_ASKED)
		src_postcopy_now(m);
	else if (st == MIG_SRC_PRECOPY && mig_src_announce(m, true))
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "lost the connection to %s", m->peer->name);
}
