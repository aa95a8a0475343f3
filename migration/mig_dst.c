// SPDX-License-Identifier: MIT
/*
 * The destination of a migration: one thread per incoming VM, the puller.
 *
 * The control thread hands it the source's messages through an inbox and
 * takes back what it has to say (HOLDER_MAP, PROGRESS, COMMIT, RESUMED,
 * ABORT) through an outbox, plus a snapshot of its counters; an eventfd
 * wakes each side. The thread does everything that blocks: it starts the
 * incoming ferry-vm, attaches to it (the adapter client is synchronous),
 * maps and registers its RAM, connects a fabric endpoint to the source and
 * pulls:
 *
 *   inbox  HOLDER_MAP(S)   connect to S's fabric address; its key and base
 *          DIRTY_SET       mark the runs needed
 *          VERIFY          keep S's checksums
 *          SWITCHOVER      the last DIRTY_SET came: finish when all pulled
 *          STATE           the vCPU blob
 *          ABORT / ERROR   give up
 *          (mig_dst_inbox.c takes them)
 *   pull   up to WINDOW one-sided reads in flight, each a run of needed
 *          pages of at most RUN_MAX pages, straight into the VM's memfd
 *          (ferryd's own mapping, registered for local access)
 *   outbox PROGRESS every PROGRESS_NS while pulling and whenever all
 *          announced pages are in
 *   finish compare checksums (if S sent them), RAM_DONE, SET_STATE,
 *          READY (again every MIG_READY_NS) and wait for the source's
 *          decision: RESUME (record "committed", resume the VM, RESUMED;
 *          the VM is then the node's) or ABORT. Only RESUME resumes it:
 *          a lost link or a dead source leaves it paused here, waiting.
 *
 * On any failure, stop or cancel the thread cleans up all it made: reads
 * drained, endpoint closed, memory deregistered and unmapped, the incoming
 * ferry-vm told to EXIT (SIGKILLed if it does not), its socket removed.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fault.h"
#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"

#define WINDOW MIG_WINDOW
#define RUN_MAX 256 /* pages per read: 1 MiB */
#define PROGRESS_NS (200 * 1000000ULL)
#define ATTACH_TIMEOUT_NS (15 * 1000000000ULL)
#define ATTACH_CALL_MS 5000U /* each adapter call of the incoming VM */
#define DRAIN_TIMEOUT_NS (8 * 1000000000ULL)

static bool stopping(struct mig_dst *d)
{
	bool s;

	pthread_mutex_lock(&d->lock);
	s = d->stop;
	pthread_mutex_unlock(&d->lock);
	return s;
}

static bool child_alive(struct mig_dst *d)
{
	int status;

	if (d->pid <= 0)
		return false;
	if (mig_vm_waitpid(d->n, d->pid, &status, WNOHANG) != d->pid)
		return true;
	mig_dst_fail(d, "the incoming ferry-vm exited (status %d)",
		     WIFEXITED(status) ? WEXITSTATUS(status)
				       : 128 + WTERMSIG(status));
	d->pid = 0;
	return false;
}

/* Start ferry-vm, attach, map and register its RAM, say yes. */
static int setup(struct mig_dst *d)
{
	struct proto_msg *h;
	const struct kva_layout *l;
	uint64_t deadline = mig_now(d->n) + ATTACH_TIMEOUT_NS;
	int ret;

	ret = mig_vm_spawn(d->n, d->vm, d->pages * FY_PAGE_SIZE, d->vcpus,
			   d->accel, d->ram_fd, &d->pid);
	if (d->ram_fd >= 0)
		close(d->ram_fd); /* the child's now, or gone with it */
	d->ram_fd = -1;
	if (ret)
		return mig_dst_fail(d, "cannot start ferry-vm: %s",
				    strerror(-ret));
	d->spawned = true;
	pthread_mutex_lock(&d->lock);
	d->pid_pub = d->pid;
	pthread_mutex_unlock(&d->lock);
	fy_fault("dst:spawned");
	for (;;) {
		/* one that never answers must not outlast the deadline */
		ret = mig_vm_attach(d->n, d->sock, ATTACH_CALL_MS, &d->kc);
		if (!ret)
			break;
		if ((ret != -ENOENT && ret != -ECONNREFUSED) ||
		    mig_now(d->n) > deadline)
			return mig_dst_fail(d,
					    "cannot attach to the incoming "
					    "VM: %s",
					    strerror(-ret));
		if (!child_alive(d) || stopping(d))
			return -1;
		usleep(1000); /* ferry-vm listens within ms */
	}
	l = mig_vm_layout(d->n, d->kc);
	if (l->nr_regions != 1 || l->regions[0].pages != d->pages ||
	    l->state != KVA_VM_INCOMING)
		return mig_dst_fail(d, "the incoming VM does not have the "
				       "source's "
				       "shape");
	d->map = mmap(NULL, d->pages * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED, l->regions[0].memfd, 0);
	if (d->map == MAP_FAILED) {
		d->map = NULL;
		return mig_dst_fail(d, "cannot map guest RAM: %s",
				    strerror(errno));
	}
	ret = mig_fabs_open(d, false, &d->fab);
	if (ret)
		return mig_dst_fail(d, "no fabric domain for its reads: %s",
				    strerror(-ret));
	ret = fab_mr_reg(d->fab, d->map, d->pages * FY_PAGE_SIZE,
			 FAB_ACCESS_LOCAL | FAB_ACCESS_HOLES, &d->mr);
	if (ret)
		return mig_dst_fail(d, "cannot register guest RAM: %s",
				    strerror(-ret));
	d->need = fy_bitmap_alloc(d->pages);
	/* post-copy: which pages exist; adopted RAM: which are not stale */
	d->seen = fy_bitmap_alloc(d->pages);
	if (!d->need || !d->seen)
		return mig_dst_fail(d, "out of memory");
	/* one holder today: the source, RLY_SOURCE, read through d->ep */
	ret = rly_open(d->pages, d->need, 0, &d->rly);
	if (ret)
		return mig_dst_fail(d, "pull scheduler: %s", strerror(-ret));
	/* 4 MiB at first: 0.7 s on a 50 Mbit/s link, where 32 MiB time out */
	d->win = (struct codec_window){ .cap = 4 << 20,
					.min = RUN_MAX * FY_PAGE_SIZE,
					.max = WINDOW * RUN_MAX * FY_PAGE_SIZE,
					.target_ns = 250000000ULL };
	/* without it recv() allocates every page itself: slower, not wrong */
	ret = pc_pop_start(l->regions[0].memfd, d->map, d->pages, &d->pop);
	if (ret)
		dst_info(d, "no populator thread: %s", strerror(-ret));

	/* our (empty) holder map is the "yes" */
	h = mig_dst_map_msg(d, d->mr);
	if (!h)
		return mig_dst_fail(d, "out of memory");
	mig_dst_out(d, h);
	dst_info(d, "incoming VM ready (pid %d), RAM registered", d->pid);
	return 0;
}

static void send_progress(struct mig_dst *d)
{
	struct proto_msg *p = calloc(1, sizeof(*p));

	if (!p)
		return;
	p->type = PROTO_PROGRESS;
	pthread_mutex_lock(&d->lock);
	p->progress.mig = d->id;
	p->progress.round = d->round;
	p->progress.pages_total = d->pages;
	p->progress.pages_valid = d->pages - d->pending;
	d->pages_valid = d->pages - d->pending;
	p->progress.bytes = d->bytes;
	pthread_mutex_unlock(&d->lock);
	if (!mig_dst_holder_bytes(d, &p->progress)) {
		free(p);
		return;
	}
	mig_dst_out(d, p);
	d->last_progress_ns = mig_now(d->n);
	d->progress_dirty = false;
}

static struct mig_slot *free_slot(struct mig_dst *d)
{
	for (int i = 0; i < WINDOW; i++)
		if (!d->slots[i].used)
			return &d->slots[i];
	return NULL;
}

/* Post reads of the DELTA_SET buffer while the window has room. */
static int post_delta(struct mig_dst *d)
{
	while (d->djob && d->dposted < d->dlen && d->inflight < WINDOW) {
		size_t len =
			FY_MIN(d->dlen - d->dposted, RUN_MAX * FY_PAGE_SIZE);
		struct mig_slot *s = free_slot(d);
		int ret;

		if (!s)
			break;
		ret = fab_read(d->ep, d->dbuf + d->dposted, len, d->dmr,
			       &d->drk, d->dposted, s);
		if (ret == -EAGAIN)
			break;
		if (ret)
			return mig_dst_fail(d,
					    "fabric read of a DELTA_SET "
					    "failed: %s",
					    strerror(-ret));
		s->used = true;
		s->delta = true;
		s->start = d->dposted;
		s->pages = len;
		d->inflight++;
		d->dposted += len;
	}
	return 0;
}

static void delta_free(struct mig_dst *d)
{
	/* the fabric unmaps it once no read can land there */
	fab_mem_release(d->fab, d->dbuf, d->dlen, d->dmr, FAB_RELEASE_MUNMAP);
	d->dmr = NULL;
	d->dbuf = NULL;
	d->djob = false;
}

/* The whole DELTA_SET buffer is here: apply it to guest RAM. */
static int delta_apply(struct mig_dst *d)
{
	uint64_t applied;
	int ret;

	ret = codec_delta_apply_buf(d->map, d->pages, d->dbuf, d->dlen,
				    &applied);
	if (!ret && applied != d->dpages)
		ret = -EBADMSG;
	if (ret)
		return mig_dst_fail(d,
				    "bad DELTA_SET buffer (%" PRIu64
				    " of %" PRIu64 " p"
				    "ag"
				    "es"
				    ")",
				    applied, d->dpages);
	pthread_mutex_lock(&d->lock);
	d->pending -= d->dpages;
	d->pages_pulled += d->dpages;
	pthread_mutex_unlock(&d->lock);
	d->progress_dirty = true;
	delta_free(d);
	return 0;
}

/* Post reads of needed runs while the window has room. */
static int post_reads(struct mig_dst *d)
{
	if (post_delta(d))
		return -1;
	while (d->inflight < WINDOW &&
	       d->pending > d->inflight_pages + (d->djob ? d->dpages : 0)) {
		uint64_t p, e;
		struct mig_slot *s = NULL;
		struct rly_read rd;
		int ret;

		const struct fab_rkey *rk;
		struct fab_ep *ep;

		if (rly_next(d->rly, RUN_MAX, &rd))
			break;
		p = rd.start;
		e = rd.start + rd.pages;
		s = free_slot(d);
		if (!s || !codec_window_room(&d->win, (e - p) * FY_PAGE_SIZE))
			break;
		ep = mig_dst_holder_ep(d, rd.holder, &rk);
		ret = fab_read(ep, d->map + p * FY_PAGE_SIZE,
			       (e - p) * FY_PAGE_SIZE, d->mr, rk,
			       p * FY_PAGE_SIZE, s);
		if (ret == -EAGAIN)
			break;
		if (ret && rd.holder != RLY_SOURCE) {
			/* not taken: the run stays needed, for the others */
			rly_holder_down(d->rly, rd.holder, true);
			mig_dst_relay_failed(d, rd.holder, ret);
			continue;
		}
		if (ret)
			return mig_dst_fail(d,
					    "fabric read of pages %" PRIu64
					    "..%" PRIu64 " failed: %s",
					    p, e - 1, strerror(-ret));
		s->used = true;
		s->delta = false;
		s->start = p;
		s->pages = e - p;
		s->t_post = mig_now(d->n);
		/* the run leaves need, the cursor moves past it */
		if (rly_take(d->rly, &rd, s->t_post))
			return mig_dst_fail(d, "internal error");
		s->rd = rd;
		d->inflight++;
		d->inflight_pages += e - p;
		d->win.inflight += (e - p) * FY_PAGE_SIZE;
		d->cursor = e;
	}
	/* one connection: reads complete about in the order posted */
	if (d->cursor >= d->inflight_pages)
		pc_pop_hint(d->pop, d->cursor - d->inflight_pages);
	return 0;
}

/* Take completions; wait up to timeout_ms. Returns -1 on a failed read. */
static int reap(struct mig_dst *d, int timeout_ms)
{
	struct fab_cqe c[64];
	uint64_t now;
	int n, ret = 0;

	n = fab_poll(d->fab, c, 64, timeout_ms);
	if (n < 0)
		return mig_dst_fail(d, "fabric poll: %s", strerror(-n));
	for (int i = 0; i < n; i++) {
		struct mig_slot *s = c[i].ctx;

		if (c[i].op != FAB_OP_READ || !s || s < d->slots ||
		    s >= d->slots + WINDOW || !s->used)
			continue;
		s->used = false;
		d->inflight--;
		if (s->delta) {
			if (c[i].status) {
				ret = mig_dst_fail(d,
						   "fabric read of a "
						   "DELTA_SET "
						   "failed: %s",
						   strerror(-c[i].status));
				continue;
			}
			pthread_mutex_lock(&d->lock);
			d->bytes += s->pages;
			pthread_mutex_unlock(&d->lock);
			d->ddone += s->pages;
			if (d->ddone == d->dlen && delta_apply(d))
				ret = -1;
			continue;
		}
		d->inflight_pages -= s->pages;
		now = mig_now(d->n);
		codec_window_done(&d->win, s->pages * FY_PAGE_SIZE,
				  now - s->t_post);
		if (c[i].status && s->rd.holder != RLY_SOURCE) {
			/* a relay's: its runs go back to the others */
			rly_fail(d->rly, &s->rd, true);
			mig_dst_relay_failed(d, s->rd.holder, c[i].status);
			continue;
		}
		if (c[i].status) {
			/* the source's: the engine gives up (below) */
			rly_fail(d->rly, &s->rd, true);
			ret = mig_dst_fail(d,
					   "fabric read of %" PRIu64 " pages"
					   " at "
					   "%" PRIu64 " faile"
					   "d: %s",
					   s->pages, s->start,
					   strerror(-c[i].status));
			continue;
		}
		rly_done(d->rly, &s->rd, now);
		d->hold[s->rd.holder].bytes += s->pages * FY_PAGE_SIZE;
		pthread_mutex_lock(&d->lock);
		d->pending -= s->pages;
		d->pages_pulled += s->pages;
		d->bytes += s->pages * FY_PAGE_SIZE;
		pthread_mutex_unlock(&d->lock);
		d->progress_dirty = true;
	}
	return ret;
}

/* READY to the source, now and every MIG_READY_NS until it decides. */
static int send_ready(struct mig_dst *d, uint64_t now)
{
	struct proto_msg *m;

	if (now - d->ready_ns < MIG_READY_NS)
		return 0;
	if (d->readies++ % 20 == 19)
		dst_err(d,
			"no RESUME from the source for %.0f s: the VM stays "
			"paused here until it answers",
			(now - d->t_ready) / 1e9);
	m = mig_dst_gen_msg(d, PROTO_READY);
	if (!m)
		return mig_dst_fail(d, "out of memory");
	mig_dst_out(d, m);
	d->ready_ns = now;
	return 0;
}

/* Everything is here: check, load the state, ask the source. */
static int ready(struct mig_dst *d)
{
	int ret;

	uint64_t t0 = mig_now(d->n), t1, t2;

	if (d->csums && mig_csum_verdict(d))
		return -1;
	t1 = mig_now(d->n);
	ret = mig_vm_ram_done(d->n, d->kc);
	if (ret)
		return mig_dst_fail(d, "RAM_DONE: %s", strerror(-ret));
	t2 = mig_now(d->n);
	ret = mig_vm_set_state(d->n, d->kc, d->blob, d->blob_len);
	if (ret)
		return mig_dst_fail(d, "the VM refused the vCPU state: %s",
				    strerror(-ret));
	mig_dst_arrival(d);
	d->t_ready = mig_now(d->n);
	dst_info(d,
		 "ready (verify %.1f ms, RAM_DONE %.1f ms, SET_STATE %.1f "
		 "ms): waiting for the source's RESUME",
		 (t1 - t0) / 1e6, (t2 - t1) / 1e6, (d->t_ready - t2) / 1e6);
	if (mig_dst_to(d, MIG_DST_READY, "all pages and the state here"))
		return mig_dst_fail(d, "internal error");
	return send_ready(d, d->t_ready);
}

/* The source committed: the VM is ours, it runs here from now on. */
static void resume(struct mig_dst *d)
{
	struct proto_msg *m;
	int ret;

	/* recorded first: a restarted ferryd resumes it, never removes it */
	mig_dst_to(d, MIG_DST_COMMITTED, "RESUME");
	ret = mig_vm_resume(d->n, d->kc);
	if (ret) {
		/* committed: no way back; the operator must look */
		dst_err(d, "RESUME after commit failed: %s", strerror(-ret));
	}
	m = mig_dst_gen_msg(d, PROTO_RESUMED);
	if (m)
		mig_dst_out(d, m);
	dst_info(d, "VM resumed here, %.1f ms after READY",
		 (mig_now(d->n) - d->t_ready) / 1e6);
}

/*
 * Drop the map of the VM's memfd, and with it rmr, our registration of it
 * as a relay's copy (NULL: none), which peers may still be reading: the
 * fabric keeps the map for them first. A stalled link can leave reads
 * held by the provider after their endpoint closed: the fabric then parks
 * the range on anonymous memory, so late bytes never reach the memfd.
 */
static void unmap(struct mig_dst *d, struct fab_mr *rmr)
{
	fab_mem_release(d->fab, d->map, d->pages * FY_PAGE_SIZE, rmr,
			FAB_RELEASE_MUNMAP_SHARED);
}

static void cleanup(struct mig_dst *d, bool ok)
{
	uint64_t deadline = mig_now(d->n) + DRAIN_TIMEOUT_NS;

	mig_post_end(d);
	if (d->pop)
		dst_info(d, "%" PRIu64 " pages mapped in ahead of the reads",
			 pc_pop_done(d->pop));
	pc_pop_stop(d->pop); /* before the munmap below */
	d->pop = NULL;
	if (d->ep) {
		fab_ep_close(d->ep);
		d->ep = NULL;
	}
	mig_dst_relays_close(d);
	/* the provider may still write into the map until reads complete */
	while (d->inflight && mig_now(d->n) < deadline)
		reap(d, 50);
	if (d->inflight)
		dst_err(d, "%u reads never completed", d->inflight);
	if (!d->inflight)
		delta_free(d);
	fab_mr_dereg(d->mr);
	d->mr = NULL;
	if (d->map && !d->inflight)
		unmap(d, d->rmr);
	else
		fab_mr_dereg(d->rmr);
	d->rmr = NULL;
	d->map = NULL;
	rly_close(d->rly); /* it borrows need */
	d->rly = NULL;
	free(d->need);
	d->need = NULL;
	free(d->seen);
	d->seen = NULL;
	free(d->local_cur);
	d->local_cur = NULL;
	free(d->csums);
	d->csums = NULL;
	free(d->blob);
	d->blob = NULL;
	if (ok) {
		pthread_mutex_lock(&d->lock);
		d->kc_out = d->kc;
		d->pid_out = d->pid;
		d->handed = true;
		pthread_mutex_unlock(&d->lock);
		d->kc = NULL;
		if (d->sm->state == MIG_DST_COMMITTED)
			mig_dst_to(d, MIG_DST_COMPLETED, "the VM is ours");
		return;
	}
	if (mig_dst_has(d, MIG_SM_RUNS)) {
		/* the only copy of the VM that runs: never kill it */
		dst_err(d, "post-copy left unfinished: the VM waits for "
			   "pages no one serves now");
		mig_vm_close(d->n, d->kc);
		d->kc = NULL;
		return;
	}
	if (d->kc) {
		mig_vm_exit(d->n, d->kc);
		mig_vm_close(d->n, d->kc);
		d->kc = NULL;
	}
	if (d->pid > 0) {
		uint64_t end = mig_now(d->n) + 2000000000ULL;
		int status;

		while (mig_vm_waitpid(d->n, d->pid, &status, WNOHANG) !=
		       d->pid) {
			if (mig_now(d->n) > end) {
				mig_vm_kill(d->n, d->pid, SIGKILL);
				mig_vm_waitpid(d->n, d->pid, &status, 0);
				break;
			}
			usleep(10000);
		}
		d->pid = 0;
	}
	/* ferry-vm removes it on EXIT; not after a SIGKILL */
	if (d->spawned)
		mig_vm_unlink_sock(d->n, d->vm);
}

/* The thread failed: log why and, unless the source ended it, ABORT. */
static void give_up(struct mig_dst *d)
{
	struct proto_msg *a;

	pthread_mutex_lock(&d->lock);
	if (!d->reason[0])
		snprintf(d->reason, sizeof(d->reason), "%s",
			 d->stop_reason[0] ? d->stop_reason : "stopped");
	pthread_mutex_unlock(&d->lock);
	dst_err(d, "failed: %s", d->reason);
	if (d->quiet_abort)
		return;
	a = calloc(1, sizeof(*a));
	if (!a)
		return;
	a->type = PROTO_ABORT;
	a->abort.mig = d->id;
	snprintf(a->abort.reason, sizeof(a->abort.reason), "%s", d->reason);
	mig_dst_out(d, a);
}

void *mig_dst_thread(void *arg)
{
	struct mig_dst *d = arg;
	uint64_t last_child = 0;
	bool ok = false;

	if (setup(d))
		goto out;
	for (;;) {
		uint64_t now;
		struct pollfd pfd = { .fd = d->efd, .events = POLLIN };
		uint64_t v;

		if (mig_dst_drain(d))
			break;
		if (mig_dst_has(d, MIG_SM_RUNS)) {
			int r = mig_post_step(d);

			if (r) {
				ok = r > 0;
				break;
			}
			if (!child_alive(d))
				break;
			continue;
		}
		if (mig_dst_has(d, MIG_SM_PC)) {
			/* pre-copy reads land first, then the VM resumes */
			if (!d->inflight && !d->djob && d->blob &&
			    mig_post_begin(d))
				break;
		} else if (d->retarget) {
			/* a relay from the moment our reads are all in */
			if (d->sm->state == MIG_DST_PRECOPY && !d->inflight &&
			    mig_dst_relay_begin(d))
				break;
			d->progress_dirty = false;
		} else if (post_reads(d)) {
			break;
		}
		if (d->nvq && !d->pending && !d->inflight &&
		    mig_csum_compare(d))
			break;
		if (d->ready_ns) {
			if (d->resume) {
				resume(d);
				ok = true;
				break;
			}
			if (send_ready(d, mig_now(d->n)))
				break;
		} else if (d->sm->state == MIG_DST_SWITCHOVER && d->blob &&
			   !d->pending && !d->inflight && ready(d)) {
			break;
		}
		/*
		 * Nothing in flight: reads refused for room (shm refuses
		 * until the source hands back its command slots) wait on the
		 * queue; polling for them took the populator's CPU (1 GiB
		 * over shm 660 -> 1000 ms).
		 */
		if (d->inflight) {
			if (reap(d, 1))
				break;
		} else {
			if (poll(&pfd, 1, d->progress_dirty ? 0 : 50) > 0 &&
			    read(d->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
		}
		now = mig_now(d->n);
		if (d->progress_dirty &&
		    (d->pending == 0 ||
		     now - d->last_progress_ns > PROGRESS_NS))
			send_progress(d);
		if (now - last_child > 100000000ULL) {
			last_child = now;
			if (!child_alive(d))
				break;
		}
	}
out:
	if (d->released) {
		dst_info(d, "%s", d->reason);
		cleanup(d, false);
		mig_dst_to(d, MIG_DST_RELEASED, d->reason);
	} else {
		if (!ok)
			give_up(d);
		cleanup(d, ok);
		if (!ok)
			mig_dst_to(d, MIG_DST_FAILED, d->reason);
	}
	pthread_mutex_lock(&d->lock);
	d->done = true;
	pthread_mutex_unlock(&d->lock);
	mig_kick(d->n->mig_efd);
	return NULL;
}
