// SPDX-License-Identifier: MIT
/*
 * The destination's post-copy, run by the puller thread (mig_dst.c):
 * the VM resumes here before every page is in (Hines & Gopalan, VEE'09).
 *
 * begin   all pre-copy reads are in and STATE came: the pages still
 *         needed are punched out, the fault server starts, the VM resumes
 *         here (mig_post_begin.c, which also prepares and cleans up).
 * step    background reads: pages the fault server asks to pre-page
 *         first, then the rest in page order (ordering/ will give a better
 *         one). Each run is claimed in `present` (a page the fault server
 *         claimed first is its to place). With MINOR registration (the
 *         default) a run is read straight into the memfd through our
 *         mapping, its pages allocated ahead by the populator on another
 *         CPU, marked in `placed` once complete and mapped with
 *         UFFDIO_CONTINUE, which wakes a vCPU waiting on it: a guest that
 *         touches a page in the memfd not yet placed takes a MINOR fault
 *         and waits (postcopy/pc_fault.c maps only placed pages). Without MINOR a
 *         run is read into a staging buffer and placed with UFFDIO_COPY.
 *         Pre-copied pages are mapped in bulk (UFFDIO_CONTINUE) when the
 *         reads leave time, so the guest takes no fault on them. PROGRESS
 *         and PC_STATS every 200 ms.
 * lost    reads fail or time out, the fault server stalls: both endpoints
 *         connect again with backoff (100 ms doubling to 2 s), forever; the
 *         vCPUs wait on their faults, nothing is killed. A HOLDER_MAP (the
 *         source's ferryd restarted) reconnects at once.
 * end     every page with data is placed (by us or the fault server, which
 *         may still be placing one it claimed): RAM_DONE releases the uffd,
 *         last PC_STATS, COMMIT; the source then frees its copy.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_post.h"

#define WINDOW MIG_WINDOW
#define RUN MIG_PC_RUN
#define PREPAGE_BATCH 16
#define CONT_BATCH 512 /* pages mapped per UFFDIO_CONTINUE */
#define STATS_NS (200 * 1000000ULL)
#define BACKOFF_MIN_NS MIG_PC_BACKOFF_MIN_NS
#define BACKOFF_MAX_NS (2000 * 1000000ULL)

int mig_post_stage_alloc(struct mig_dst *d)
{
	struct nd_post *p = d->post;
	size_t len = p->stage_len;
	int ret;

	p->stage = mmap(NULL, len, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p->stage == MAP_FAILED) {
		p->stage = NULL;
		return -ENOMEM;
	}
	ret = fab_mr_reg(d->fab, p->stage, len, FAB_ACCESS_LOCAL, &p->stage_mr);
	if (ret) {
		munmap(p->stage, len);
		p->stage = NULL;
	}
	return ret;
}

/* The fabric unmaps it once no read the provider holds can land there. */
void mig_post_stage_free(struct mig_dst *d)
{
	struct nd_post *p = d->post;

	fab_mem_release(d->fab, p->stage, p->stage_len, p->stage_mr,
			FAB_RELEASE_MUNMAP);
	p->stage = NULL;
	p->stage_mr = NULL;
}

/*
 * A closed endpoint's reads may be held by the provider and land later:
 * never in a staging area we reuse. Hand it over, take a fresh one.
 */
static void stage_park(struct mig_dst *d)
{
	struct nd_post *p = d->post;

	if (!fab_mem_busy(d->fab, p->stage, p->stage_len))
		return;
	mig_post_stage_free(d);
	if (mig_post_stage_alloc(d))
		pr_err("no staging memory for post-copy reads");
}

struct fab_ep *mig_post_fault_ep(struct mig_dst *d)
{
	struct fab_ep *ep = NULL;

	if (fab_ep_connect(d->post->fdom, &d->src_addr, &ep))
		return NULL;
	return ep;
}

/* Close our endpoint; completions of its reads say they are not posted. */
void mig_post_drop_ep(struct mig_dst *d)
{
	struct fab_cqe c[64];
	int n;

	if (!d->ep)
		return;
	fab_ep_close(d->ep);
	d->ep = NULL;
	while ((n = fab_poll(d->fab, c, 64, 0)) > 0)
		for (int i = 0; i < n; i++) {
			struct mig_slot *s = c[i].ctx;

			if (s >= d->slots && s < d->slots + WINDOW &&
			    s->posted) {
				s->posted = false;
				d->inflight--;
			}
		}
	for (int i = 0; i < WINDOW; i++)
		if (d->slots[i].posted) {
			/* cancelled but not reported: the provider holds it */
			d->slots[i].posted = false;
			d->inflight--;
		}
	d->win.inflight = 0;
	if (d->post->zc) {
		/* their pages are read again once no late data can land */
		d->post->quarantine =
			fab_mem_busy(d->fab, d->map, d->pages * FY_PAGE_SIZE);
	} else {
		stage_park(d);
	}
}

/* Connect both endpoints to the holder again. */
static void reconnect(struct mig_dst *d, uint64_t now)
{
	struct nd_post *p = d->post;
	struct fab_ep *fep;
	int ret;

	mig_post_drop_ep(d);
	p->reconnect_at = now + p->backoff;
	p->backoff = FY_MIN(p->backoff * 2, BACKOFF_MAX_NS);
	ret = fab_ep_connect(d->fab, &d->src_addr, &d->ep);
	if (ret) {
		d->ep = NULL;
		return;
	}
	fep = mig_post_fault_ep(d);
	if (!fep || pc_fault_set_holder(p->fs, fep, &d->rk)) {
		fab_ep_close(fep);
		mig_post_drop_ep(d);
		return;
	}
	p->broken = false;
	dst_info(d, "post-copy: connected to the holder again");
}

void mig_post_holder(struct mig_dst *d)
{
	struct nd_post *p = d->post;

	if (!p)
		return;
	dst_info(d, "post-copy: the holder has a new address or key");
	p->broken = true;
	p->reconnect_at = 0;
	p->backoff = BACKOFF_MIN_NS;
}

/*
 * Map n pages that are complete in the memfd into the guest
 * (UFFDIO_CONTINUE), waking whoever waits on them; a page the fault
 * server mapped first is skipped. 0 or -errno.
 */
static int map_range(struct nd_post *p, uint64_t page, uint64_t n)
{
	uint64_t q = page, end = page + n;
	unsigned tries = 0;

	while (q < end) {
		struct uffdio_continue c = {
			.range = { p->uffd_base + q * FY_PAGE_SIZE,
				   (end - q) * FY_PAGE_SIZE },
			.mode = p->wp ? UFFDIO_CONTINUE_MODE_WP : 0,
		};

		if (!ioctl(p->uffd, UFFDIO_CONTINUE, &c))
			return 0;
		if (c.mapped > 0)
			q += (uint64_t)c.mapped / FY_PAGE_SIZE;
		else if (errno == EEXIST)
			q++;
		else if (errno != EAGAIN || ++tries > 100000)
			return -errno;
	}
	return 0;
}

static void set_placed(struct nd_post *p, uint64_t page, uint64_t n)
{
	for (uint64_t q = page; q < page + n; q++)
		__atomic_fetch_or(&p->placed[q / 64], 1ULL << (q % 64),
				  __ATOMIC_RELEASE);
}

/* Pre-copied pages the guest may see but its page tables lack. */
static void cont_sweep(struct nd_post *p, uint64_t pages)
{
	uint64_t s, e;

	if (!p->unmapped)
		return;
	s = fy_bitmap_next_set(p->unmapped, pages, p->cont_cursor);
	if (s >= pages) {
		free(p->unmapped);
		p->unmapped = NULL;
		return;
	}
	e = FY_MIN(fy_bitmap_next_clear(p->unmapped, pages, s), s + CONT_BATCH);
	map_range(p, s, e - s);
	for (uint64_t q = s; q < e; q++)
		fy_bit_clear(p->unmapped, q);
	p->cont_cursor = e;
}

/* Place n pages read into src at page with UFFDIO_COPY. 0 or -errno. */
static int place(struct nd_post *p, uint64_t page, uint64_t n,
		 const uint8_t *src)
{
	uint64_t done = 0;
	unsigned tries = 0;

	while (done < n) {
		struct uffdio_copy c = {
			.dst = p->uffd_base + (page + done) * FY_PAGE_SIZE,
			.src = (uintptr_t)(src + done * FY_PAGE_SIZE),
			.len = (n - done) * FY_PAGE_SIZE,
			.mode = p->wp ? UFFDIO_COPY_MODE_WP : 0,
		};

		if (!ioctl(p->uffd, UFFDIO_COPY, &c))
			return 0;
		if (c.copy > 0)
			done += (uint64_t)c.copy / FY_PAGE_SIZE;
		else if (errno == EEXIST)
			done++; /* mapped already: cannot be ours to fill */
		else if (errno != EAGAIN || ++tries > 100000)
			return -errno;
	}
	return 0;
}

/*
 * A read of slot s failed: its pages stay claimed by it and are read
 * again, from the holder the scheduler names now (a failed relay is down:
 * another one current for them, or the source).
 */
static void repost_to(struct mig_dst *d, struct mig_slot *s)
{
	rly_fail(d->rly, &s->rd, false);
	if (rly_choose(d->rly, s->start, s->pages, &s->rd) ||
	    rly_take(d->rly, &s->rd, 0))
		pr_err("post-copy: the pull scheduler refused a read");
}

/* Post slot s's read, from the holder the scheduler chose for it. */
static void post_run(struct mig_dst *d, struct mig_slot *s)
{
	struct nd_post *p = d->post;
	const struct fab_rkey *rk;
	struct fab_ep *ep = mig_dst_holder_ep(d, s->rd.holder, &rk);
	int i = s - d->slots, ret;

	if (s->rd.holder == RLY_SOURCE && (p->broken || !ep))
		return; /* once connected again */
	if (p->zc)
		ret = fab_read(ep, d->map + s->start * FY_PAGE_SIZE,
			       s->pages * FY_PAGE_SIZE, d->mr, rk,
			       s->start * FY_PAGE_SIZE, s);
	else
		ret = fab_read(ep, p->stage + i * RUN * FY_PAGE_SIZE,
			       s->pages * FY_PAGE_SIZE, p->stage_mr, rk,
			       s->start * FY_PAGE_SIZE, s);
	if (ret == -EAGAIN)
		return;
	if (ret && s->rd.holder != RLY_SOURCE) {
		unsigned h = s->rd.holder;

		/* that relay is gone: the run comes from another holder */
		repost_to(d, s);
		mig_dst_relay_failed(d, h, ret);
		return;
	}
	if (ret) {
		p->broken = true;
		return;
	}
	s->posted = true;
	s->t_post = mig_now(d->n);
	s->rd.t_post = s->t_post;
	d->inflight++;
	d->win.inflight += s->pages * FY_PAGE_SIZE;
}

static struct mig_slot *free_slot(struct mig_dst *d)
{
	for (int i = 0; i < WINDOW; i++)
		if (!d->slots[i].used)
			return &d->slots[i];
	return NULL;
}

/* Read rd's run (its pages claimed) into slot s; it leaves need. */
static void take_slot(struct mig_dst *d, struct mig_slot *s,
		      const struct rly_read *rd)
{
	s->used = true;
	s->delta = false;
	s->posted = false;
	s->start = rd->start;
	s->pages = rd->pages;
	s->rd = *rd;
	/* its pages leave need; post_run() sets when it is posted */
	if (rly_take(d->rly, &s->rd, 0))
		pr_err("post-copy: the pull scheduler refused a read");
	post_run(d, s);
}

/* The next run of needed pages we could claim, from the cursor on. */
static int next_run(struct mig_dst *d, struct rly_read *rd)
{
	struct nd_post *p = d->post;
	uint64_t s, e;

	for (;;) {
		/* from the source or a relay current for the run */
		if (rly_next(d->rly, RUN, rd))
			return -1;
		s = rd->start;
		d->cursor = s;
		if (pc_fault_claim(p->present, s))
			break;
		/* the fault server's: it reads and places that page */
		fy_bit_clear(d->need, s);
		d->hold[RLY_SOURCE].bytes += FY_PAGE_SIZE;
		pthread_mutex_lock(&d->lock);
		d->pending--;
		d->pages_pulled++;
		d->bytes += FY_PAGE_SIZE;
		pthread_mutex_unlock(&d->lock);
	}
	/* rd's pages are all needed: the claims may stop it short */
	e = s + 1;
	while (e < s + rd->pages && pc_fault_claim(p->present, e))
		e++;
	rd->pages = e - s;
	d->cursor = e;
	return 0;
}

/*
 * May the background pull read one more run (postcopy_max_bandwidth)?
 * A bucket of 100 ms worth at the cap, as the source paces pre-copy; the
 * faults and the pre-paging around them are never held back.
 */
static bool pace_ok(struct mig_dst *d)
{
	struct nd_post *p = d->post;
	uint64_t bw = d->n->cfg.postcopy_bw, now = mig_now(d->n);
	int64_t burst = (int64_t)(bw / 10);

	if (!bw)
		return true;
	if (!p->pace_t) {
		p->pace_t = now;
		p->pace_bytes = burst;
	}
	p->pace_bytes += (int64_t)((double)(now - p->pace_t) * bw / 1e9);
	p->pace_t = now;
	if (p->pace_bytes > burst)
		p->pace_bytes = burst;
	return p->pace_bytes > 0;
}

static void post_reads(struct mig_dst *d)
{
	struct nd_post *p = d->post;
	uint64_t pre[PREPAGE_BATCH];
	struct rly_read rd;
	struct mig_slot *s;
	size_t n, i;

	if (!d->ep || p->broken)
		return;
	for (i = 0; i < WINDOW && !p->quarantine; i++)
		if (d->slots[i].used && !d->slots[i].posted && !p->broken &&
		    codec_window_room(&d->win,
				      d->slots[i].pages * FY_PAGE_SIZE))
			post_run(d, &d->slots[i]);
	/* pre-paging around recent faults first */
	n = pc_fault_prepage_take(p->fs, pre,
				  FY_MIN(PREPAGE_BATCH, WINDOW - d->inflight));
	for (i = 0; i < n && (s = free_slot(d)) &&
		    codec_window_room(&d->win, FY_PAGE_SIZE);
	     i++)
		if (fy_bit_test(d->need, pre[i]) &&
		    !rly_choose(d->rly, pre[i], 1, &rd) &&
		    pc_fault_claim(p->present, pre[i])) {
			take_slot(d, s, &rd);
			p->prepaged++;
		}
	while (!p->broken && (s = free_slot(d)) &&
	       codec_window_room(&d->win, RUN * FY_PAGE_SIZE) && pace_ok(d)) {
		if (next_run(d, &rd))
			break;
		p->pace_bytes -= (int64_t)(rd.pages * FY_PAGE_SIZE);
		take_slot(d, s, &rd);
	}
	/* the linear reads complete about in order (pre-paging aside) */
	if (d->cursor > d->win.inflight / FY_PAGE_SIZE)
		pc_pop_hint(d->pop, d->cursor - d->win.inflight / FY_PAGE_SIZE);
}

/* Take completions; place what arrived. -1: the VM is gone. */
static int reap(struct mig_dst *d, int timeout_ms)
{
	struct nd_post *p = d->post;
	struct fab_cqe c[64];
	uint64_t now;
	int n, ret;

	n = fab_poll(d->fab, c, 64, timeout_ms);
	for (int i = 0; i < n; i++) {
		struct mig_slot *s = c[i].ctx;

		if (c[i].op != FAB_OP_READ || s < d->slots ||
		    s >= d->slots + WINDOW || !s->posted)
			continue;
		s->posted = false;
		d->inflight--;
		now = mig_now(d->n);
		codec_window_done(&d->win, s->pages * FY_PAGE_SIZE,
				  now - s->t_post);
		if (c[i].status && s->rd.holder != RLY_SOURCE) {
			unsigned h = s->rd.holder;

			repost_to(d, s); /* posted again by post_reads() */
			mig_dst_relay_failed(d, h, c[i].status);
			continue;
		}
		if (c[i].status) {
			if (!p->broken)
				pr_warn("post-copy read failed (%s): "
					"reconnecting",
					strerror(-c[i].status));
			p->broken = true;
			/* the slot keeps its claimed run: from whom again */
			repost_to(d, s);
			continue;
		}
		rly_done(d->rly, &s->rd, now);
		d->hold[s->rd.holder].bytes += s->pages * FY_PAGE_SIZE;
		if (s->rd.holder != RLY_SOURCE)
			p->relayed += s->pages;
		if (p->zc) {
			set_placed(p, s->start, s->pages);
			ret = map_range(p, s->start, s->pages);
		} else {
			ret = place(p, s->start, s->pages,
				    p->stage + (s - d->slots) * RUN *
						       FY_PAGE_SIZE);
			set_placed(p, s->start, s->pages);
		}
		if (ret)
			return mig_dst_fail(d, "placing pages: %s",
					    strerror(-ret));
		s->used = false;
		p->backoff = BACKOFF_MIN_NS;
		pthread_mutex_lock(&d->lock);
		d->pending -= s->pages;
		d->pages_pulled += s->pages;
		d->bytes += s->pages * FY_PAGE_SIZE;
		pthread_mutex_unlock(&d->lock);
	}
	return 0;
}

/* The fault server's figures as PC_STATS (mig left 0). */
static void pc_stats_from(struct proto_pc_stats *o,
			  const struct pc_fault_stats *s, uint64_t duration_ns)
{
	*o = (struct proto_pc_stats){
		.faults = s->served,
		.p50 = s->p50_ns,
		.p99 = s->p99_ns,
		.max = s->max_ns,
		.blocktime = s->blocktime_ns,
		.prepaged = s->prepaged,
		.zero_pages = s->zero_pages,
		.stalls = s->stalls,
		.stall_ns = s->stall_ns,
		.duration = duration_ns,
		.stalled = s->stalled,
	};
}

/* The fault server's reads count for their holders too. */
static void fault_bytes(const struct nd_post *p,
			const struct pc_fault_stats *st,
			struct proto_progress *pr)
{
	if (!pr->holders)
		return; /* the source is the only holder */
	pr->holders[RLY_SOURCE].bytes += st->pages_from[0] * FY_PAGE_SIZE;
	for (unsigned i = 0; i < p->nfault_relays; i++)
		pr->holders[p->fault_holder[i]].bytes +=
			st->pages_from[i + 1] * FY_PAGE_SIZE;
}

/* Pages the fault server read from relays. */
static uint64_t fault_relayed(const struct pc_fault_stats *st)
{
	uint64_t n = 0;

	for (unsigned i = 1; i < RLY_HOLDERS_MAX; i++)
		n += st->pages_from[i];
	return n;
}

void mig_post_stats(struct mig_dst *d, uint64_t now)
{
	struct proto_msg *m = calloc(1, sizeof(*m));
	struct proto_msg *pg = calloc(1, sizeof(*pg));
	struct pc_fault_stats st;

	pc_fault_stats(d->post->fs, &st);
	d->post->fault_stalled = st.stalled;
	pthread_mutex_lock(&d->lock);
	if (!(st.stalled || d->post->broken))
		d->stall_t0 = 0;
	else if (!d->stall_t0)
		d->stall_t0 = now;
	pc_stats_from(&d->pcs, &st, now - d->t_resumed);
	d->pcs.mig = d->id;
	d->pcs.prepaged += d->post->prepaged;
	d->pages_valid = d->pages - d->pending;
	pthread_mutex_unlock(&d->lock);
	if (!m || !pg) {
		free(m);
		free(pg);
		return;
	}
	m->type = PROTO_PC_STATS;
	m->pc_stats = d->pcs;
	mig_dst_out(d, m);
	pg->type = PROTO_PROGRESS;
	pg->progress.mig = d->id;
	pg->progress.round = d->round;
	pg->progress.pages_total = d->pages;
	pg->progress.pages_valid = d->pages - d->pending;
	pg->progress.bytes = d->bytes;
	if (mig_dst_holder_bytes(d, &pg->progress)) {
		fault_bytes(d->post, &st, &pg->progress);
		mig_dst_out(d, pg);
	} else {
		free(pg);
	}
	d->post->next_stats = now + STATS_NS;
}

/* Every page announced is placed: the fault server is done too. */
static bool all_in(struct mig_dst *d)
{
	for (uint64_t i = 0; i < (d->pages + 63) / 64; i++)
		if (d->seen[i] &
		    ~__atomic_load_n(&d->post->placed[i], __ATOMIC_ACQUIRE))
			return false;
	return true;
}

/* Everything is here: release the uffd, tell the source. */
static void finish(struct mig_dst *d)
{
	struct pc_fault_stats st;
	struct proto_msg *m;
	int ret;

	ret = mig_vm_ram_done(d->n, d->kc);
	if (ret)
		pr_err("post-copy: RAM_DONE: %s", strerror(-ret));
	mig_post_stats(d, mig_now(d->n));
	pc_fault_stats(d->post->fs, &st);
	dst_info(d,
		 "post-copy: all pages in after %.3f s: %" PRIu64
		 " faults (p50 %.1f us, p99 %.1f us), blocktime %.1f ms, "
		 "%" PRIu64 " pre-paged, %" PRIu64 " pages from relays, "
		 "%" PRIu64 " faults served by relays",
		 d->pcs.duration / 1e9, d->pcs.faults, d->pcs.p50 / 1e3,
		 d->pcs.p99 / 1e3, d->pcs.blocktime / 1e6, d->pcs.prepaged,
		 d->post->relayed, fault_relayed(&st));
	m = mig_dst_gen_msg(d, PROTO_COMMIT);
	if (m)
		mig_dst_out(d, m);
	mig_dst_to(d, MIG_DST_COMPLETED, "all pages here");
}

int mig_post_step(struct mig_dst *d)
{
	struct nd_post *p = d->post;
	struct pc_fault_stats st;
	uint64_t now = mig_now(d->n);

	if ((p->broken || p->fault_stalled) && now >= p->reconnect_at)
		reconnect(d, now);
	if (p->quarantine)
		p->quarantine =
			fab_mem_busy(d->fab, d->map, d->pages * FY_PAGE_SIZE);
	post_reads(d);
	if (d->inflight) {
		if (reap(d, 1))
			return -1;
	} else if (p->unmapped && !d->pending) {
		cont_sweep(p, d->pages);
	} else {
		struct pollfd pfd = { .fd = d->efd, .events = POLLIN };
		uint64_t v;

		cont_sweep(p, d->pages);
		if (poll(&pfd, 1, 1) > 0 && read(d->efd, &v, sizeof(v)) < 0)
			return -1;
	}
	now = mig_now(d->n);
	if (now >= p->next_stats)
		mig_post_stats(d, now);
	if (d->pending || d->inflight)
		return 0;
	/* the fault server may still be placing a page it claimed */
	pc_fault_stats(p->fs, &st);
	if (st.busy || !all_in(d))
		return 0;
	finish(d);
	return 1;
}
