// SPDX-License-Identifier: MIT
/*
 * What the source does (mig_src.c decides when): announce a round's
 * dirty pages as DIRTY_SETs, paced by --max-bandwidth; harvest the dirty
 * log; publish its copy (HOLDER_MAP); the messages that carry a
 * generation; give back the mapping, registrations and the VM; end a
 * migration that cannot go on, with the VM running here again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_retain.h"
#include "migration/mig_src.h"

#define RUNS_PER_MSG 65536
#define PACE_NS (100 * 1000000ULL) /* --max-bandwidth: a slice per 100 ms */
#define RESUME_NS (1000 * 1000000ULL) /* RESUME again, until RESUMED */

/* Give the source's registration and mapping back. */
static void stage_free(struct mig *m)
{
	/* kept while a peer's read of it may still be answered */
	fab_mem_release(m->n->fab, m->stage, m->stage_len, m->stage_mr,
			FAB_RELEASE_MUNMAP);
	m->stage_mr = NULL;
	m->stage = NULL;
	m->stage_len = 0;
}

void mig_src_relay_forget(struct mig_relay *rl)
{
	free(rl->stale);
	rl->stale = NULL;
	proto_msg_free(rl->map);
	rl->map = NULL;
	rl->state = MIG_RELAY_GONE;
}

/* ABORT "released: why" to relay rl: gone, or untold if it is not reached. */
static void relay_tell(struct mig *m, struct mig_relay *rl, const char *why)
{
	struct proto_msg a = { .type = PROTO_ABORT };

	a.abort.mig = m->id;
	snprintf(a.abort.reason, sizeof(a.abort.reason), "released: %s", why);
	mig_src_relay_forget(rl);
	if (mig_peer_send(m->n, rl->peer, &a)) {
		mig_err(m, "cannot release relay %s now: again once it answers",
			rl->peer->name);
		rl->state = MIG_RELAY_UNTOLD;
		return;
	}
	mig_info(m, "relay %s released", rl->peer->name);
}

void mig_src_relay_release(struct mig *m, const char *why)
{
	bool told = false;

	for (unsigned i = 0; i < m->nrelays; i++) {
		struct mig_relay *rl = &m->relays[i];

		if (rl->state == MIG_RELAY_GONE)
			continue;
		relay_tell(m, rl, why);
		told = true;
	}
	/* a restart from here on releases only those still untold */
	if (told)
		mig_save_record(m);
}

void mig_src_relays_tick(struct mig *m, uint64_t now)
{
	bool told = false;

	for (unsigned i = 0; i < m->nrelays; i++) {
		struct mig_relay *rl = &m->relays[i];

		if (rl->state != MIG_RELAY_UNTOLD ||
		    mig_peer_state(m->n, rl->peer, now) != MIG_PEER_REACHABLE)
			continue;
		relay_tell(m, rl, "no one reads this copy any more");
		told |= rl->state == MIG_RELAY_GONE;
	}
	if (told)
		mig_save_record(m);
}

void mig_src_reg_join(struct mig *m)
{
	if (!m->reg_running)
		return;
	pthread_join(m->reg_thread, NULL);
	m->reg_running = false;
}

void mig_src_release(struct mig *m, bool all_read)
{
	/* else a peer's read may be under way: keep what it reads (bug 2) */
	uint64_t keep;

	/* what it registers is released below */
	mig_src_reg_join(m);
	keep = all_read ? 0 : fab_mr_serve_late_ns(m->mr);
	mig_src_relay_release(m, "the migration ended");
	free(m->pgen);
	m->pgen = NULL;
	mig_csum_end(m); /* it reads the mapping */
	stage_free(m);
	fab_mr_dereg(m->cache_mr);
	m->cache_mr = NULL;
	mig_release_bg(m->cache, m->pages * FY_PAGE_SIZE, NULL, keep);
	m->cache = NULL;
	if (m->mr) {
		fab_mr_dereg(m->mr);
		m->mr = NULL;
	}
	/* our map of the VM's RAM: the last reference, if the VM exited */
	mig_release_bg(m->map, m->pages * FY_PAGE_SIZE, NULL, keep);
	m->map = NULL;
	if (m->vmp) {
		m->vmp->mig = NULL;
		m->vmp = NULL;
	}
}

/* The VM keeps (or gets back) running here; m->reason says why. */
static void src_end(struct mig *m, enum mig_src_state how, bool tell)
{
	if (tell)
		mig_send_abort(m, m->reason);
	/* the VM stays here: at full speed again */
	mig_unthrottle(m);
	if (m->t_pause && m->vmp && m->vmp->kc) {
		int ret = mig_vm_resume(m->n, m->vmp->kc);

		if (ret)
			mig_err(m, "cannot resume the VM here: %s",
				strerror(-ret));
		else
			mig_info(m, "VM resumed here");
	}
	mig_err(m, "%s: %s", how == MIG_SRC_CANCELLED ? "cancelled" : "failed",
		m->reason);
	mig_to(m, how, m->reason);
	m->t_end = mig_now(m->n);
	mig_src_release(m, false);
}

void mig_src_fail(struct mig *m, enum mig_src_state how, bool tell,
		  const char *fmt, ...)
{
	va_list ap;

	if (mig_finished(m))
		return;
	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
	if (mig_has(m, MIG_SM_HELD)) {
		/*
		 * Committed: D may resume it any moment, ours waits for its
		 * answer. Post-copy: the VM runs on D and may need any page.
		 */
		mig_err(m, "%s, ignored: %s",
			mig_has(m, MIG_SM_PC) ? "during post-copy"
					      : "after commit",
			m->reason);
		m->reason[0] = '\0';
		return;
	}
	src_end(m, how, tell);
}

void mig_src_abandon(struct mig *m, bool tell, const char *fmt, ...)
{
	va_list ap;

	if (mig_finished(m))
		return;
	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
	src_end(m, MIG_SRC_FAILED, tell);
}

/* Start announcing runs (owned by m now) as round m->round at gen. */
int mig_src_round_begin(struct mig *m, struct fy_run *runs, size_t nr)
{
	int ret = 0;

	/*
	 * Where registering pins, what D will read must be registered, and
	 * D told so, before it hears of the pages: written since they were
	 * holes (or, round 0, since the registration).
	 */
	if (!m->o.delta && m->mr)
		ret = mig_mr_grow(m->mr, runs, nr);
	if (ret > 0)
		ret = mig_src_send_holder_map(m);
	free(m->todo);
	m->todo = runs;
	m->ntodo = nr;
	m->todo_pos = 0;
	m->todo_sent = false;
	m->round_pages = fy_runs_pages(runs, nr);
	m->round_start_ns = mig_now(m->n);
	m->round_bytes0 = m->bytes;
	m->pace_next_ns = 0;
	for (size_t i = 0; i < nr; i++)
		for (uint64_t p = runs[i].start;
		     p < runs[i].start + runs[i].len; p++) {
			if (fy_bit_test(m->sent_bm, p))
				m->pages_repulled++;
			else
				fy_bit_set(m->sent_bm, p);
			if (m->pgen)
				m->pgen[p] = (uint32_t)m->gen;
		}
	m->pages_pulled += m->round_pages;
	if (ret)
		mig_src_fail(m, MIG_SRC_FAILED, true,
			     "cannot publish round %u's pages: %s", m->round,
			     strerror(-ret));
	return ret;
}

/*
 * Send DIRTY_SETs for what is left of the round: all of it, or with
 * --max-bandwidth (except in the final round) one slice per PACE_NS.
 * Returns 0 or -errno (the migration failed).
 */
int mig_src_announce(struct mig *m, bool paced)
{
	uint64_t now = mig_now(m->n), budget = UINT64_MAX;
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
		ret = mig_send(m, &d);
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
int mig_src_harvest(struct mig *m, struct fy_run **runs, size_t *nr,
		    uint64_t *dirty)
{
	const uint64_t *bm;
	uint64_t gen;
	int ret;

	ret = mig_vm_harvest(m->n, m->vmp->kc, &bm, &gen, dirty);
	if (ret) {
		mig_err(m, "harvest: %s", strerror(-ret));
		return ret;
	}
	m->gen = gen;
	/* what the guest changed since it arrived here, if it did */
	mig_arrived_changed(m->n, m->vm, bm, m->pages);
	ret = fy_runs_from_bitmap(bm, m->pages, runs, nr);
	if (ret)
		mig_err(m, "out of memory");
	return ret;
}

/* Announce what is left of the round, as pages or as deltas. */
int mig_src_announce_round(struct mig *m, bool paced)
{
	if (m->o.delta && m->round > 0) {
		/* the previous round's buffer: D has pulled it */
		stage_free(m);
		return m->ntodo ? mig_delta_round(m)
				: mig_src_announce(m, false);
	}
	return mig_src_announce(m, paced);
}

/* SWITCHOVER, POSTCOPY: the migration and its generation. */
int mig_src_send_gen(struct mig *m, enum proto_type t)
{
	struct proto_msg g = { .type = t };

	g.switchover.mig = m->id;
	g.switchover.gen = m->gen;
	return mig_send(m, &g);
}

/* Tell D where our copy is: after its "yes", and after our restart. */
int mig_src_send_holder_map(struct mig *m)
{
	struct proto_msg h = { .type = PROTO_HOLDER_MAP };
	struct proto_holder_region r = { 0 };
	struct proto_genrun all = { 0, m->pages, 0 };
	struct fab_rkey rk;
	int ret;

	/* with deltas D pulls the copy it will later get deltas against */
	fab_mr_rkey(m->o.delta ? m->cache_mr : m->mr, &rk);
	m->map_rk = rk;
	m->map_rk.runs = NULL; /* the registration's own, not kept */
	ret = mig_region_of(&r, &rk, m->pages);
	if (ret)
		return ret;
	h.holder_map.mig = m->id;
	snprintf(h.holder_map.node, sizeof(h.holder_map.node), "%s",
		 m->n->cfg.name);
	h.holder_map.addr_len = m->n->fab_addr_len;
	memcpy(h.holder_map.addr, m->n->fab_addr_raw, m->n->fab_addr_len);
	h.holder_map.page_size = FY_PAGE_SIZE;
	h.holder_map.nregions = 1;
	h.holder_map.regions = &r;
	r.id = 0;
	r.ngens = 1;
	r.gens = &all;
	ret = mig_send(m, &h);
	free(r.keys);
	return ret;
}

bool mig_src_rekeyed(const struct mig *m)
{
	struct fab_rkey rk;

	fab_mr_rkey(m->o.delta ? m->cache_mr : m->mr, &rk);
	return rk.key != m->map_rk.key || rk.addr != m->map_rk.addr;
}

/* The source's copy is no longer needed: the VM exits here. */
void mig_src_drop_vm(struct mig *m)
{
	struct mig_vm *vm = m->vmp;
	int ret;

	if (!vm)
		return;
	ret = mig_vm_exit(m->n, vm->kc);
	if (ret)
		mig_err(m, "EXIT: %s", strerror(-ret));
	mig_src_release(m, true);
	mig_vm_forget(m->n, vm);
}

/* RESUME: D may run the VM now. */
void mig_src_send_resume(struct mig *m, uint64_t now)
{
	if (m->resumes++ % 10 == 1)
		mig_err(m,
			"no RESUMED from %s yet: the VM stays paused here "
			"until it answers",
			m->peer->name);
	mig_src_send_gen(m, PROTO_RESUME);
	m->deadline = now + RESUME_NS;
}

/*
 * --compress delta: announce the round's runs as one DELTA_SET. Each page
 * is copied once (the guest may be writing it), encoded against the copy
 * D holds (m->cache, equal to what D has), and the copy becomes D's new
 * one. A write after our copy is in the next harvest. Returns 0 or -errno.
 */
int mig_delta_round(struct mig *m)
{
	struct proto_msg d = { .type = PROTO_DELTA_SET };
	uint64_t pages = fy_runs_pages(m->todo, m->ntodo), used = 0;
	uint8_t tmp[FY_PAGE_SIZE];
	struct fab_rkey rk;
	size_t cap;
	int ret;

	cap = (pages * (FY_PAGE_SIZE + 16) + FY_PAGE_SIZE - 1) &
	      ~(FY_PAGE_SIZE - 1);
	m->stage = mmap(NULL, cap, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->stage == MAP_FAILED) {
		m->stage = NULL;
		return -ENOMEM;
	}
	m->stage_len = cap;
	for (size_t i = 0; i < m->ntodo; i++)
		for (uint64_t p = m->todo[i].start;
		     p < m->todo[i].start + m->todo[i].len; p++) {
			bool raw;

			memcpy(tmp, m->map + p * FY_PAGE_SIZE, FY_PAGE_SIZE);
			used += codec_delta_record(m->stage + used, p,
						   m->cache + p * FY_PAGE_SIZE,
						   tmp, &raw);
			memcpy(m->cache + p * FY_PAGE_SIZE, tmp, FY_PAGE_SIZE);
			m->delta_raw += raw;
		}
	m->todo_pos = m->ntodo;
	m->todo_sent = true;
	ret = fab_mr_reg(m->n->fab, m->stage, used, FAB_ACCESS_READ,
			 &m->stage_mr);
	if (ret)
		return ret;
	fab_mr_rkey(m->stage_mr, &rk);
	d.delta.mig = m->id;
	d.delta.gen = m->gen;
	d.delta.key = rk.key;
	d.delta.base = rk.addr;
	d.delta.len = used;
	d.delta.pages = pages;
	ret = mig_send(m, &d);
	if (ret)
		return ret;
	m->announced += pages;
	m->expect_bytes += used;
	m->delta_pages += pages;
	m->delta_bytes += used;
	return 0;
}
