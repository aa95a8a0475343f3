// SPDX-License-Identifier: MIT
/*
 * The beginning and the end of the destination's post-copy, run by the
 * puller thread (mig_dst.c); the background pull between them is
 * mig_post.c.
 *
 * prepare with the source's holder map, while nothing waits: the
 *         staging buffer, an endpoint of the fault domain, and one read
 *         over each endpoint, so that neither connects in the downtime.
 * begin   all pre-copy reads are in and STATE came. The pages still needed
 *         are punched out of the memfd, so that the guest faults on them
 *         instead of seeing an old or half-written copy; present = pages
 *         pulled, holes = pages never announced (holes on the source).
 *         The fault server (postcopy/pc_fault.c) starts on a domain and endpoint of
 *         its own (this migration's, mig_fab.c), so faults never queue
 *         behind our reads nor meet another migration's; SET_STATE,
 *         RESUME, RESUMED. A failure up to here is an ABORT: the VM never
 *         ran here and resumes on the source.
 * cleanup once it ended (or failed): the fault server stopped, our
 *         endpoint closed, the staging buffer handed back, the bitmaps
 *         freed; the VM runs on.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_post.h"

#define WINDOW MIG_WINDOW
#define RUN MIG_PC_RUN
#define PREPAGE_MAX 64 /* fault server's pre-paging window cap */

static uint64_t *bitmap_dup(const uint64_t *bm, uint64_t bits)
{
	uint64_t *c = fy_bitmap_alloc(bits);

	if (c)
		memcpy(c, bm, (bits + 63) / 64 * 8);
	return c;
}

/* A read that makes an endpoint's connection (warm_up()). */
struct warm {
	struct fab_domain *dom;
	struct fab_ep *ep;
	uint8_t *buf;
	struct fab_mr *mr;
	bool done;
};

/*
 * Read one page over each endpoint and wait for all: the provider makes
 * its connection on the first operation, which must be neither a guest's
 * fault nor in the downtime. 0 or -errno.
 */
static int warm_up(struct mig_dst *d, struct warm *w, int n)
{
	uint64_t end = mig_now(d->n) + 5000000000ULL;
	struct fab_cqe c[8];
	int ret = 0, left = n;

	for (int i = 0; i < n && !ret; i++)
		do {
			ret = fab_read(w[i].ep, w[i].buf, FY_PAGE_SIZE, w[i].mr,
				       &d->rk, 0, &w[i]);
		} while (ret == -EAGAIN && fab_poll(w[i].dom, c, 8, 1) >= 0 &&
			 mig_now(d->n) < end);
	while (!ret && left) {
		for (int i = 0; i < n; i++) {
			int got = fab_poll(w[i].dom, c, 8, 1);

			for (int k = 0; k < got; k++) {
				struct warm *x = c[k].ctx;

				if (x < w || x >= w + n || x->done)
					continue;
				x->done = true;
				left--;
				ret = ret ? ret : c[k].status;
			}
		}
		if (left && mig_now(d->n) > end)
			ret = -ETIMEDOUT;
	}
	return ret;
}

int mig_post_prepare(struct mig_dst *d)
{
	struct fab_mr *mr = NULL;
	struct nd_post *p;
	int ret;

	p = d->post = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	ret = mig_fabs_open(d, true, &p->fdom);
	if (ret)
		return ret;
	p->backoff = MIG_PC_BACKOFF_MIN_NS;
	/* zero-copy needs MINOR registration, known since the VM attached */
	p->zc = mig_vm_layout(d->n, d->kc)->uffd_minor;
	p->stage_len = p->zc ? 2 * FY_PAGE_SIZE : WINDOW * RUN * FY_PAGE_SIZE;
	ret = mig_post_stage_alloc(d);
	if (!ret && !(p->fep = mig_post_fault_ep(d)))
		ret = -ENOTCONN;
	/* the fault domain's own buffer: the second staging page */
	if (!ret)
		ret = fab_mr_reg(p->fdom, p->stage + FY_PAGE_SIZE, FY_PAGE_SIZE,
				 FAB_ACCESS_LOCAL, &mr);
	if (!ret) {
		struct warm w[2] = {
			{ d->fab, d->ep, p->stage, p->stage_mr, false },
			{ p->fdom, p->fep, p->stage + FY_PAGE_SIZE, mr, false },
		};

		ret = warm_up(d, w, 2);
	}
	fab_mr_dereg(mr);
	return ret;
}

/*
 * The pre-copy populator stops before the pages still needed are punched
 * out of the memfd: they fault from now on. 0, or -1 (reason set).
 */
static int punch_needed(struct mig_dst *d, const struct kva_layout *l)
{
	int ret;

	pc_pop_stop(d->pop);
	d->pop = NULL;
	ret = mig_memfd_punch(l->regions[0].memfd, d->need, d->pages, true);
	if (ret)
		return mig_dst_fail(d, "cannot punch needed pages: %s",
				    strerror(-ret));
	return 0;
}

/* present, holes, placed and unmapped, from need and seen. 0 or -1. */
static int make_bitmaps(struct mig_dst *d)
{
	struct nd_post *p = d->post;
	uint64_t words = (d->pages + 63) / 64;

	p->present = fy_bitmap_alloc(d->pages);
	p->holes = fy_bitmap_alloc(d->pages);
	if (!p->present || !p->holes)
		return mig_dst_fail(d, "out of memory");
	for (uint64_t i = 0; i < words; i++) {
		p->present[i] = d->seen[i] & ~d->need[i];
		p->holes[i] = ~d->seen[i];
	}
	if (d->pages % 64)
		p->holes[words - 1] &= (1ULL << (d->pages % 64)) - 1;
	p->placed = bitmap_dup(p->present, d->pages);
	if (!p->placed)
		return mig_dst_fail(d, "out of memory");
	if (p->minor)
		p->unmapped = bitmap_dup(p->present, d->pages);
	return 0;
}

/* Zero-copy: a populator anew, for the pages still needed. */
static void populate(struct mig_dst *d, const struct kva_layout *l)
{
	struct fy_run *runs;
	size_t nr;

	if (!d->post->zc ||
	    pc_pop_start(l->regions[0].memfd, d->map, d->pages, &d->pop))
		return;
	/* allocate ahead of the reads, on another CPU */
	if (!fy_runs_from_bitmap(d->need, d->pages, &runs, &nr)) {
		pc_pop_add(d->pop, runs, nr);
		free(runs);
	}
}

/*
 * The relays up now, for the fault server: each with an endpoint of the
 * fault domain and the pages current there (the maps and the needs are
 * final: STATE came). A relay we cannot reach serves no faults.
 */
static void fault_relays(struct mig_dst *d, struct pc_fault_params *fp)
{
	struct nd_post *p = d->post;

	for (unsigned h = 1; h < d->nhold && fp->nrelays < PC_FAULT_RELAYS;
	     h++) {
		struct pc_fault_relay *r = &fp->relay[fp->nrelays];
		struct rly_holder_info hi;
		struct rly_vrun *v;
		size_t nv;

		if (rly_holder_info(d->rly, h, &hi) || hi.down ||
		    rly_holder_current(d->rly, h, &v, &nv))
			continue;
		if (!nv || fab_ep_connect(p->fdom, &d->hold[h].addr, &r->ep)) {
			free(v);
			continue;
		}
		r->rkey = d->hold[h].rk;
		r->v = v;
		r->nv = nv;
		p->fault_holder[fp->nrelays++] = h;
	}
	p->nfault_relays = fp->nrelays;
}

/* Start the fault server on its endpoints (now its own). 0 or -1. */
static int fault_open(struct mig_dst *d)
{
	struct pc_fault_params fp = { 0 };
	struct nd_post *p = d->post;
	int ret;

	fp.uffd = p->uffd;
	fp.uffd_base = p->uffd_base;
	fp.minor = p->minor;
	fp.wp = p->wp;
	fp.map = d->map;
	fp.pages = d->pages;
	fp.dom = p->fdom;
	fp.ep = p->fep;
	p->fep = NULL; /* the server's, also when it fails to start */
	fp.rkey = d->rk;
	fp.holes = p->holes;
	fp.present = p->present;
	fp.placed = p->placed;
	fp.prepage_max = PREPAGE_MAX;
	fault_relays(d, &fp);
	ret = pc_fault_open(&fp, &p->fs);
	for (unsigned i = 0; i < fp.nrelays; i++) {
		free((void *)fp.relay[i].v);
		if (ret)
			fab_ep_close(fp.relay[i].ep);
	}
	if (ret) {
		fab_ep_close(fp.ep);
		return mig_dst_fail(d, "post-copy: no fault server: %s",
				    strerror(-ret));
	}
	if (fp.nrelays)
		dst_info(d,
			 "post-copy: faults read from the source and %u "
			 "relay(s)",
			 fp.nrelays);
	return 0;
}

/* Load the state, resume the VM here, RESUMED. 0 or -1 (reason set). */
static int resume_here(struct mig_dst *d)
{
	struct proto_msg *m;
	int ret;

	/* ferry-vm may touch guest RAM to load the state: faults are served */
	ret = mig_vm_set_state(d->n, d->kc, d->blob, d->blob_len);
	if (ret)
		return mig_dst_fail(d, "the VM refused the vCPU state: %s",
				    strerror(-ret));
	free(d->blob);
	d->blob = NULL;
	/* after the punch, which the log counts as writes */
	mig_dst_arrival(d);
	d->pending = fy_bitmap_count(d->need, d->pages);
	d->cursor = 0;
	rly_rewind(d->rly);
	/* a fault waits behind about 20 ms of our reads on the link */
	d->win = (struct codec_window){ .cap = 1 << 20,
					.min = RUN * FY_PAGE_SIZE,
					.max = WINDOW * RUN * FY_PAGE_SIZE,
					.target_ns = 20000000ULL };
	/* from here on the VM is ours alone: no ABORT, never killed */
	if (mig_dst_to(d, MIG_DST_POSTCOPY, "the VM resumes here"))
		return mig_dst_fail(d, "internal error");
	d->quiet_abort = true;
	ret = mig_vm_resume(d->n, d->kc);
	if (ret)
		pr_err("post-copy: RESUME failed: %s", strerror(-ret));
	/* mig_dst_poll() copies it for the control thread */
	pthread_mutex_lock(&d->lock);
	d->t_resumed = mig_now(d->n);
	pthread_mutex_unlock(&d->lock);
	m = mig_dst_gen_msg(d, PROTO_RESUMED);
	if (m)
		mig_dst_out(d, m);
	return 0;
}

int mig_post_begin(struct mig_dst *d)
{
	const struct kva_layout *l = mig_vm_layout(d->n, d->kc);
	struct nd_post *p = d->post;
	uint64_t t0 = mig_now(d->n);

	if (!l->uffd || !p)
		return mig_dst_fail(d, "post-copy: the VM has no uffd");
	p->uffd = mig_vm_uffd(d->n, d->kc);
	p->uffd_base = l->regions[0].uffd_base;
	p->minor = l->uffd_minor;
	p->wp = l->uffd_wp;
	if (punch_needed(d, l) || make_bitmaps(d))
		return -1;
	populate(d, l);
	if (fault_open(d) || resume_here(d))
		return -1;
	dst_info(d,
		 "post-copy: VM resumed here in %.1f ms, %" PRIu64
		 " pages to fetch, %" PRIu64 " holes",
		 (d->t_resumed - t0) / 1e6, d->pending,
		 fy_bitmap_count(p->holes, d->pages));
	mig_post_stats(d, d->t_resumed);
	return 0;
}

void mig_post_end(struct mig_dst *d)
{
	struct nd_post *p = d->post;

	if (!p)
		return;
	pc_fault_close(p->fs);
	/* its completions left unread go with the domain (mig_fabs_put()) */
	fab_ep_close(p->fep);
	mig_post_drop_ep(d);
	mig_post_stage_free(d);
	free(p->present);
	free(p->holes);
	free(p->placed);
	free(p->unmapped);
	free(p);
	d->post = NULL;
}
