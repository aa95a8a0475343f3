// SPDX-License-Identifier: MIT
/*
 * libfabric backend: completions, deadlines and progress.
 *
 * Completions read from the CQ by any thread (the application in fab_poll()
 * or the progress thread) become fab_cqe in a ring under od->lock, and
 * fab_poll() hands them out from there. A posted operation still pending at
 * its deadline is reported as -ETIMEDOUT and left ABANDONED; its late
 * completion, if one ever comes, only frees the slot.
 */
#define LOG_PREFIX "fabric: "

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fabric/fab_ofi.h"

#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <infiniband/verbs.h>

#include "common/log.h"

/* ring of completions waiting for fab_poll(); od->lock held */

void fab_ofi_ring_push(struct ofi_domain *od, const struct fab_cqe *c)
{
	/* cannot overflow: one entry per op slot and per receive buffer */
	od->ring[(od->ring_head + od->ring_len) % od->ring_cap] = *c;
	od->ring_len++;
}

static int ring_pop(struct ofi_domain *od, struct fab_cqe *out, int max)
{
	int n = 0;

	while (od->ring_len && n < max) {
		struct fab_cqe *c = &od->ring[od->ring_head];

		out[n++] = *c;
		if (c->op == FAB_OP_RECV) {
			struct ofi_rx *rx =
				&od->rx[((const char *)c->buf - od->bufs) /
					FAB_MSG_MAX];

			/* valid until the next fab_poll(), which reposts it */
			rx->next = od->lent;
			__atomic_store_n(&od->lent, rx, __ATOMIC_RELAXED);
		}
		od->ring_head = (od->ring_head + 1) % od->ring_cap;
		od->ring_len--;
	}
	return n;
}

void fab_ofi_op_free(struct ofi_domain *od, struct ofi_op *op)
{
	if (op->sbuf >= 0)
		od->sbuf_free[od->nsbuf_free++] = op->sbuf;
	op->sbuf = -1;
	op->state = OP_FREE;
	op->ep = NULL;
	if (op->owner && !--op->owner->held && op->owner->closed) {
		struct ofi_ep *z = op->owner;

		/* its last operation is back: the address may go now */
		z->prev->next = z->next;
		z->next->prev = z->prev;
		z->next = od->reap;
		__atomic_store_n(&od->reap, z, __ATOMIC_RELAXED);
	}
	if (op->owner) {
		__atomic_sub_fetch(&od->held, 1, __ATOMIC_RELAXED);
		/* a deferred release may wait for this one */
		__atomic_store_n(&od->freed, true, __ATOMIC_RELAXED);
	}
	op->owner = NULL;
	op->next = od->free_ops;
	od->free_ops = op;
}

void fab_ofi_op_abandon(struct ofi_domain *od, struct ofi_op *op, int status)
{
	struct fab_cqe c = {
		.ctx = op->ctx,
		.ep = &op->ep->base,
		.op = op->op,
		.status = status,
	};

	ofi_op_unlink(od, op);
	if (op->state == OP_QUEUED) {
		/* the provider never saw it: the slot is free now */
		ofi_op_unqueue(od, op);
		fab_ofi_op_free(od, op);
	} else {
		op->state = OP_ABANDONED;
		op->ep = NULL;
	}
	fab_ofi_ring_push(od, &c);
}

ssize_t fab_ofi_op_post(struct ofi_domain *od, struct ofi_op *op, fi_addr_t fa)
{
	switch (op->op) {
	case FAB_OP_READ:
		return fi_read(od->ep, op->buf, op->len, op->desc, fa,
			       op->raddr, op->key, &op->fictx);
	case FAB_OP_WRITE:
		return fi_write(od->ep, op->buf, op->len, op->desc, fa,
				op->raddr, op->key, &op->fictx);
	default:
		return fi_send(od->ep, op->buf, op->len, op->desc, fa,
			       &op->fictx);
	}
}

int fab_ofi_post_queued(struct ofi_domain *od)
{
	struct ofi_op *op, *next;
	int failed = 0;
	ssize_t ret;

	if (!__atomic_load_n(&od->nqueued, __ATOMIC_RELAXED))
		return 0;
	/* under the lock: a completion must find the slot POSTED */
	pthread_mutex_lock(&od->lock);
	od->round++;
	for (op = od->posted.next; op != &od->posted && od->nqueued;
	     op = next) {
		struct ofi_ep *ep = op->ep;

		next = op->next;
		if (op->state != OP_QUEUED || ep->refused_round == od->round ||
		    ep->renew)
			continue;
		ret = ep->failed ? -FI_ENOTCONN
				 : fab_ofi_op_post(od, op, ep->fa);
		if (ret == -FI_EAGAIN) {
			/* still connecting: keep its later ones in order */
			ep->refused_round = od->round;
			continue;
		}
		ofi_op_unqueue(od, op);
		if (!ret) {
			op->state = OP_POSTED;
			__atomic_store_n(&ep->up, true, __ATOMIC_RELAXED);
			continue;
		}
		/* refused for good: its completion says why */
		struct fab_cqe c = {
			.ctx = op->ctx,
			.ep = &ep->base,
			.op = op->op,
			.status = ofi_err(ret),
		};

		if (ret != -FI_ENOTCONN)
			pr_err("posting a queued operation: %s",
			       fi_strerror((int)-ret));
		ofi_op_unlink(od, op);
		fab_ofi_op_free(od, op);
		fab_ofi_ring_push(od, &c);
		failed++;
	}
	if (failed)
		fab_ofi_wake(od);
	pthread_mutex_unlock(&od->lock);
	return failed;
}

/* fab_mem_busy(): a slot not yet free whose buffer overlaps the range. */
bool fab_ofi_mem_busy(const struct fab_domain *d, const void *addr, size_t len)
{
	struct ofi_domain *od = ofi_od(d);
	const char *a = addr;
	bool busy = false;
	unsigned i;

	if (!__atomic_load_n(&od->held, __ATOMIC_RELAXED))
		return false;
	pthread_mutex_lock(&od->lock);
	for (i = 0; i < od->nops && !busy; i++) {
		const struct ofi_op *op = &od->ops[i];
		const char *b = op->buf;

		busy = op->state != OP_FREE && b && b < a + len &&
		       a < b + op->len;
	}
	pthread_mutex_unlock(&od->lock);
	return busy;
}

static struct ofi_ep *ep_by_addr(struct ofi_domain *od, fi_addr_t fa)
{
	struct ofi_ep *ep;

	if (fa == FI_ADDR_NOTAVAIL || fa == FI_ADDR_UNSPEC)
		return NULL;
	for (ep = od->eps.next; ep != &od->eps; ep = ep->next)
		if (ep->fa == fa)
			return ep;
	return NULL;
}

/*
 * Errors after which tcp;ofi_rxm keeps failing every operation on the
 * connection: the endpoint must be closed and connected again.
 */
static bool conn_error(int status)
{
	switch (status) {
	case -ENOTCONN:
	case -ECONNRESET:
	case -ECONNREFUSED:
	case -ECONNABORTED:
	case -EPIPE:
	case -ECANCELED:
	case -ESHUTDOWN:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
		return true;
	default:
		return false;
	}
}

/*
 * op failed with a connection error on a connection its endpoint inherited
 * (struct ofi_ep, inherited): queue it again, once, for a new connection,
 * and report nothing. Lock held.
 */
static bool post_again(struct ofi_domain *od, struct ofi_op *op, int status)
{
	struct ofi_ep *ep = op->ep;

	if (!conn_error(status) || !ep->inherited || op->again || ep->failed)
		return false;
	if (!ep->renew)
		pr_debug("first operations failed on an inherited connection "
			 "(%s): posted again on a new one",
			 strerror(-status));
	op->again = true;
	ep->renew = true;
	__atomic_store_n(&od->renew, true, __ATOMIC_RELAXED);
	ofi_op_queue(od, op);
	return true;
}

/* One provider completion (or error) becomes at most one fab_cqe. */
static void complete(struct ofi_domain *od, void *fictx, size_t len, int status,
		     fi_addr_t src)
{
	struct fab_cqe c = { 0 };
	struct ofi_op *op;

	if ((char *)fictx >= (char *)od->rx &&
	    (char *)fictx < (char *)(od->rx + OFI_NRX)) {
		struct ofi_rx *rx = fictx;

		if (status) {
			/* flushed or truncated: nothing to deliver */
			if (status != -ECANCELED)
				pr_warn("receive failed: %s",
					strerror(-status));
			rx->next = od->lent;
			__atomic_store_n(&od->lent, rx, __ATOMIC_RELAXED);
			return;
		}
		c.op = FAB_OP_RECV;
		c.len = len;
		c.buf = rx->buf;
		c.ep = (struct fab_ep *)ep_by_addr(od, src);
		fab_ofi_ring_push(od, &c);
		return;
	}
	if ((char *)fictx < (char *)od->ops ||
	    (char *)fictx >= (char *)(od->ops + od->nops)) {
		pr_warn("completion with a foreign context %p", fictx);
		return;
	}
	op = container_of(fictx, struct ofi_op, fictx);
	if (status == -ENODEV)
		fab_ofi_dev_gone(od);
	switch (op->state) {
	case OP_POSTED:
		if (post_again(od, op, status))
			break;
		if (!status)
			op->ep->inherited = false; /* the connection works */
		ofi_op_unlink(od, op);
		/* verbs: a remote access error puts the QP in error */
		if ((conn_error(status) || (od->verbs && status == -EACCES)) &&
		    !op->ep->failed) {
			/* the provider will not recover this connection */
			pr_warn("connection to peer lost: %s",
				strerror(-status));
			op->ep->failed = true;
		}
		c.ctx = op->ctx;
		c.ep = &op->ep->base;
		c.op = op->op;
		c.status = status;
		c.len = status ? 0 : op->len;
		fab_ofi_ring_push(od, &c);
		fab_ofi_op_free(od, op);
		break;
	case OP_ABANDONED:
		/* already reported (timeout or close): only reclaim */
		pr_debug("late completion (%d) of an abandoned operation",
			 status);
		fab_ofi_op_free(od, op);
		break;
	default:
		pr_warn("completion of a free operation slot");
		break;
	}
}

/* Fail the posted operations past their deadline; od->lock held. */
static int expire(struct ofi_domain *od, uint64_t now)
{
	int n = 0;

	while (od->posted.next != &od->posted &&
	       od->posted.next->deadline <= now) {
		struct ofi_op *op = od->posted.next;

		if (!op->ep->failed)
			pr_warn("operation timed out; peer presumed dead");
		op->ep->failed = true;
		fab_ofi_op_abandon(od, op, -ETIMEDOUT);
		n++;
	}
	return n;
}

/* cqes were queued: wake an application waiting for them; od->lock held */
void fab_ofi_wake(struct ofi_domain *od)
{
	uint64_t one = 1;

	if (od->waiters)
		pthread_cond_broadcast(&od->cond);
	if (od->fd_waiters && write(od->kick_fd, &one, sizeof(one)) < 0)
		pr_perror("write kick fd");
}

/*
 * A failed operation's status. verbs reports a wrong key or range as
 * -FI_EIO; the work completion's status (prov_errno) says which: the
 * same -EACCES as ferry's own verbs backend.
 */
static int err_status(const struct ofi_domain *od,
		      const struct fi_cq_err_entry *err)
{
	if (err->err == FI_EIO && od->verbs &&
	    err->prov_errno == IBV_WC_REM_ACCESS_ERR)
		return -EACCES;
	return err->err ? -err->err : -EIO;
}

/*
 * Read a batch from the CQ (this is also what drives progress on software
 * providers) and queue the results. Returns the number of provider
 * completions handled, or -errno.
 */
static int cq_read(struct ofi_domain *od)
{
	struct fi_cq_msg_entry e[OFI_CQ_BATCH];
	fi_addr_t src[OFI_CQ_BATCH];
	ssize_t n;
	int i;

	if (od->has_source)
		n = fi_cq_readfrom(od->cq, e, OFI_CQ_BATCH, src);
	else
		n = fi_cq_read(od->cq, e, OFI_CQ_BATCH);
	if (n == -FI_EAGAIN)
		return 0;
	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry err = { 0 };

		n = fi_cq_readerr(od->cq, &err, 0);
		if (n == -FI_EAGAIN)
			return 0;
		if (n < 0) {
			pr_err("fi_cq_readerr: %s", fi_strerror((int)-n));
			return ofi_err(n);
		}
		pthread_mutex_lock(&od->lock);
		complete(od, err.op_context, 0, err_status(od, &err),
			 FI_ADDR_NOTAVAIL);
		fab_ofi_wake(od);
		pthread_mutex_unlock(&od->lock);
		return 1;
	}
	if (n < 0) {
		pr_err("fi_cq_read: %s", fi_strerror((int)-n));
		return ofi_err(n);
	}
	pthread_mutex_lock(&od->lock);
	for (i = 0; i < n; i++)
		complete(od, e[i].op_context, e[i].len, 0,
			 od->has_source ? src[i] : FI_ADDR_NOTAVAIL);
	fab_ofi_wake(od);
	pthread_mutex_unlock(&od->lock);
	return (int)n;
}

void fab_ofi_after(struct ofi_domain *od)
{
	fab_ofi_reap(od);
	/* looked at first: every fab_poll() passes here */
	if (__atomic_load_n(&od->freed, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&od->freed, false, __ATOMIC_RELAXED))
		fab_release_sweep(&od->base);
	else
		fab_release_tick(&od->base);
}

/*
 * One pass: read the CQ, post what waited for its connection, then act on
 * the slots the provider handed back. Returns the number of completions
 * queued, or -errno.
 */
static int cq_drain(struct ofi_domain *od)
{
	int n = cq_read(od);

	if (n >= 0)
		n += fab_ofi_post_queued(od);
	fab_ofi_after(od);
	return n;
}

/* Block on the CQ's wait fd (and the kick fd) for up to ms. */
static bool wait_cq(struct ofi_domain *od, int ms)
{
	struct fid *fids[1] = { &od->cq->fid };
	struct pollfd pfd[2] = {
		{ .fd = od->wait_fd, .events = POLLIN },
		{ .fd = od->kick_fd, .events = POLLIN },
	};
	uint64_t v;

	if (od->wait_fd < 0) {
		struct timespec ts = { 0, OFI_IDLE_SLEEP_MIN_NS };

		/* no wait object: a short sleep bounds the lost latency */
		nanosleep(&ts, NULL);
		return false;
	}
	if (fi_trywait(od->fabric, fids, 1) != FI_SUCCESS)
		return true; /* work is already pending */
	if (poll(pfd, 2, ms) <= 0)
		return false;
	if ((pfd[1].revents & POLLIN) && read(od->kick_fd, &v, sizeof(v)) < 0)
		pr_perror("read kick fd");
	return pfd[0].revents != 0;
}

void fab_ofi_drain_held(struct ofi_domain *od, uint64_t until)
{
	while (__atomic_load_n(&od->held, __ATOMIC_RELAXED) &&
	       fy_now_ns() < until) {
		int n = cq_drain(od);

		if (n < 0)
			return;
		if (!n)
			wait_cq(od, 10);
	}
}

static void timespec_at(struct timespec *ts, uint64_t ns)
{
	ts->tv_sec = ns / NSEC;
	ts->tv_nsec = ns % NSEC;
}

/*
 * How long a progress thread without a wait fd (shm) may sleep while idle.
 * A holder that posted nothing waits for nothing: a peer's read is a CMA
 * copy made by the reader, which only leaves a command slot (one of 1024)
 * for us to hand back. And polling then costs: shm's fast read copies
 * while holding the target's region lock, which our fi_cq_read() spins
 * on; at 1 ms naps a source spun away a quarter of this 2-CPU machine
 * during a 1 GiB pull. So nap up to the deadline granularity then.
 */
static long idle_max(struct ofi_domain *od, uint64_t took)
{
	unsigned posted;

	pthread_mutex_lock(&od->lock);
	posted = od->nposted;
	pthread_mutex_unlock(&od->lock);
	if (posted)
		return OFI_IDLE_SLEEP_MAX_NS;
	/*
	 * An empty read that long spun on the lock of a peer that reads us
	 * flat out (7-15 ms a wake-up here, missing the short gaps between
	 * its reads): 150-330 ms of a CPU per second of a 1 GiB pull. Such a
	 * peer needs only its slots back; one that runs out is refused until
	 * we wake, which cost less than the spinning (1 GiB over shm 729 ->
	 * 660 ms). A cheap empty read brings the naps back to 20 ms.
	 */
	return took > OFI_CONTENDED_NS ? OFI_CONTENDED_SLEEP_MAX_NS
				       : OFI_IDLE_WAIT_MS * 1000000L;
}

/*
 * The progress thread. While the application is in fab_poll() (and for
 * OFI_APP_HOLD_NS after) it drives progress itself and this thread stays
 * parked: two pollers on a 2-core machine starve each other and the peer.
 * Otherwise it reads the CQ, keeps polling for spin_ns after the last sign
 * of activity (0 by default), then blocks on the CQ's wait fd. Serving a
 * peer's read produces no completion here, so "activity" is a wake-up of
 * the wait fd, not a completion.
 */
void *fab_ofi_progress(void *arg)
{
	struct ofi_domain *od = arg;
	uint64_t spin_until = 0, next_expire = 0;
	long idle_ns = OFI_IDLE_SLEEP_MIN_NS;

	while (!__atomic_load_n(&od->stop, __ATOMIC_ACQUIRE)) {
		uint64_t now;
		int n;

		if (fab_park_wait(&od->park, &od->stop))
			continue;
		now = fy_now_ns();
		n = cq_drain(od);
		if (n < 0)
			break; /* logged; the CQ is unusable, fab_poll says so */
		if (now >= next_expire) {
			pthread_mutex_lock(&od->lock);
			if (expire(od, now))
				fab_ofi_wake(od);
			pthread_mutex_unlock(&od->lock);
			fab_ofi_after(od);
			next_expire = now + OFI_IDLE_WAIT_MS * 1000000ULL;
		}
		if (n > 0) {
			spin_until = now + od->spin_ns;
			idle_ns = OFI_IDLE_SLEEP_MIN_NS;
			continue;
		}
		if (now < spin_until) {
			/*
			 * A background spinner must not take the CPU from a
			 * runnable thread (the app, a peer on a 2-core box);
			 * with nobody waiting sched_yield() returns at once.
			 */
			sched_yield();
			continue;
		}
		if (od->wait_fd < 0) {
			struct timespec ts = { 0, idle_ns };
			uint64_t took = fy_now_ns() - now; /* the empty read */

			/* nothing to block on: sleep, longer while idle */
			nanosleep(&ts, NULL);
			idle_ns = FY_MIN(idle_ns * 2, idle_max(od, took));
			continue;
		}
		if (wait_cq(od, OFI_IDLE_WAIT_MS))
			spin_until = fy_now_ns() + od->spin_ns;
	}
	return NULL;
}

int fab_ofi_post_rx(struct ofi_domain *od, struct ofi_rx *rx)
{
	ssize_t ret;

	ret = fi_recv(od->ep, rx->buf, FAB_MSG_MAX, od->bufs_desc,
		      FI_ADDR_UNSPEC, &rx->fictx);
	if (ret) {
		pr_err("fi_recv: %s", fi_strerror((int)-ret));
		return ofi_err(ret);
	}
	return 0;
}

/* Repost the receive buffers handed out by the previous fab_poll(). */
static void repost_lent(struct ofi_domain *od)
{
	struct ofi_rx *rx, *next;

	if (!__atomic_load_n(&od->lent, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&od->lock);
	rx = od->lent;
	__atomic_store_n(&od->lent, NULL, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&od->lock);
	for (; rx; rx = next) {
		next = rx->next;
		if (fab_ofi_post_rx(od, rx)) {
			/* keep it for the next attempt */
			pthread_mutex_lock(&od->lock);
			rx->next = od->lent;
			__atomic_store_n(&od->lent, rx, __ATOMIC_RELAXED);
			pthread_mutex_unlock(&od->lock);
		}
	}
}

/* Block until cqes are queued by the progress thread or until `until`. */
static void wait_queued(struct ofi_domain *od, uint64_t until)
{
	struct timespec ts;
	uint64_t cap = fy_now_ns() + OFI_IDLE_WAIT_MS * 1000000ULL;

	/* hand progress over to the progress thread before sleeping */
	fab_park_wake(&od->park);

	timespec_at(&ts, FY_MIN(until, cap));
	pthread_mutex_lock(&od->lock);
	if (!od->ring_len) {
		od->waiters++;
		pthread_cond_timedwait(&od->cond, &od->lock, &ts);
		od->waiters--;
	}
	pthread_mutex_unlock(&od->lock);
}

/*
 * Block on the CQ's wait fd in the application's own thread: the wake-up
 * lands where the completion is consumed, and whatever else arrives (a
 * peer reading our memory) is progressed by this thread meanwhile, so the
 * progress thread stays parked. It kicks us if it queued cqes just before.
 */
static void wait_fd_app(struct ofi_domain *od, uint64_t now, uint64_t until)
{
	int ms = (int)FY_MIN((until - now) / 1000000 + 1, OFI_IDLE_WAIT_MS);
	bool queued;

	if (od->pt_running)
		fab_park_hold(&od->park,
			      now + ms * 1000000ULL + OFI_APP_HOLD_NS);
	pthread_mutex_lock(&od->lock);
	queued = od->ring_len != 0;
	if (!queued)
		od->fd_waiters++;
	pthread_mutex_unlock(&od->lock);
	if (queued)
		return;
	wait_cq(od, ms);
	pthread_mutex_lock(&od->lock);
	od->fd_waiters--;
	pthread_mutex_unlock(&od->lock);
}

int fab_ofi_poll(struct fab_domain *d, struct fab_cqe *cqes, int max,
		 int timeout_ms)
{
	struct ofi_domain *od = ofi_od(d);
	struct fab_poll_time t = fab_poll_time_init();
	int n, ret;

	repost_lent(od);
	for (;;) {
		/* the app drives progress now: the thread may rest */
		if (od->pt_running)
			fab_poll_hold(&od->park, &t, OFI_APP_HOLD_NS);
		ret = cq_drain(od);
		if (ret < 0)
			return ret;
		pthread_mutex_lock(&od->lock);
		expire(od, t.now);
		n = ring_pop(od, cqes, max);
		pthread_mutex_unlock(&od->lock);
		fab_ofi_after(od);
		if (n || !timeout_ms || !fab_poll_time_next(&t, timeout_ms))
			return n;
		if (t.now - t.start < OFI_POLL_SPIN_NS) {
			/*
			 * Yield between empty polls: on 2 CPUs a pure spinner
			 * starved the kernel work that delivers our data (reads
			 * against a spinning peer stalled until we blocked:
			 * p50 15 -> 215 us); with nothing else runnable this
			 * returns at once.
			 */
			sched_yield();
			continue;
		}
		if (od->wait_fd >= 0)
			wait_fd_app(od, t.now, t.until);
		else if (od->pt_running)
			wait_queued(od, t.until);
		else
			wait_cq(od, 0);
		t.now = fy_now_ns();
	}
}
