// SPDX-License-Identifier: MIT
/*
 * rdma-core backend: completions, deadlines and progress.
 *
 * One completion queue serves every queue pair of the domain. Whoever
 * drives progress (the application in fab_poll() or the progress thread)
 * handles the connection manager's events, reads the CQ, posts what waited
 * for its connection, and fails what is past its deadline, all under
 * vd->lock; completions become fab_cqe in a ring that fab_poll() hands out.
 * When there is nothing to do it arms the CQ's completion channel and
 * blocks on it, the connection manager's fd, the device's asynchronous
 * events (fab_verbs_async.c) and a kick eventfd. While the application is
 * in fab_poll() the progress thread is parked (fab_park.c).
 *
 * A slot still on the device at its deadline is reported as -ETIMEDOUT and
 * its connection fails: the QP goes to error, so the device flushes every
 * work request it holds and no late byte lands after the flush. The slot
 * stays ABANDONED (fab_mem_busy() says so) until its flush comes back.
 */
#define LOG_PREFIX "fabric: verbs: "

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fabric/fab_verbs.h"

#include "common/log.h"

#define VB_RING_CAP (VB_MAX_OPS + VB_NRX)

/* ring of completions waiting for fab_poll(); vd->lock held */

void vb_ring_push(struct vb_domain *vd, const struct fab_cqe *c)
{
	/* cannot overflow: op_get() keeps owing + ring_len below VB_MAX_OPS */
	vd->ring[(vd->ring_head + vd->ring_len) % VB_RING_CAP] = *c;
	vd->ring_len++;
}

static int ring_pop(struct vb_domain *vd, struct fab_cqe *out, int max)
{
	int n = 0;

	while (vd->ring_len && n < max) {
		struct fab_cqe *c = &vd->ring[vd->ring_head];

		out[n++] = *c;
		if (c->op == FAB_OP_RECV) {
			struct vb_rx *rx =
				&vd->rx[((const char *)c->buf - vd->bufs) /
					FAB_MSG_MAX];

			/* valid until the next fab_poll(), which reposts it */
			rx->next = vd->lent;
			__atomic_store_n(&vd->lent, rx, __ATOMIC_RELAXED);
		}
		vd->ring_head = (vd->ring_head + 1) % VB_RING_CAP;
		vd->ring_len--;
	}
	return n;
}

void vb_wake(struct vb_domain *vd)
{
	uint64_t one = 1;

	if (vd->fd_waiters && write(vd->kick_fd, &one, sizeof(one)) < 0)
		pr_perror("write kick fd");
}

/* slots */

void vb_op_free(struct vb_domain *vd, struct vb_op *op)
{
	struct vb_conn *c = op->conn;

	switch (op->state) {
	case VOP_QUEUED:
		c->nqueued--;
		vd->owing--;
		break;
	case VOP_POSTED:
		c->posted--;
		vd->owing--;
		break;
	case VOP_ABANDONED:
		c->posted--;
		c->zombies--;
		break;
	default:
		return;
	}
	vb_live_del(op);
	if (!--c->held && !c->eps && c->state == VC_FAILED)
		__atomic_store_n(&vd->reap, true, __ATOMIC_RELAXED);
	if (op->sbuf >= 0)
		vd->sbuf_free[vd->nsbuf_free++] = op->sbuf;
	op->sbuf = -1;
	op->state = VOP_FREE;
	op->ep = NULL;
	op->conn = NULL;
	op->buf = NULL;
	__atomic_sub_fetch(&vd->held, 1, __ATOMIC_RELAXED);
	/* a deferred release may wait for this one */
	__atomic_store_n(&vd->freed, true, __ATOMIC_RELAXED);
	op->next = vd->free_ops;
	vd->free_ops = op;
}

void vb_op_abandon(struct vb_domain *vd, struct vb_op *op, int status)
{
	struct fab_cqe c = {
		.ctx = op->ctx,
		.ep = &op->ep->base,
		.op = op->op,
		.status = status,
	};

	vb_ring_push(vd, &c);
	if (op->state == VOP_QUEUED) {
		/* the device never saw it: the slot is free now */
		vb_op_free(vd, op);
		return;
	}
	/* on the live list still: its deadline fails a stalled connection */
	op->state = VOP_ABANDONED;
	op->ep = NULL;
	vd->owing--;
	op->conn->zombies++;
}

int vb_op_post(struct vb_domain *vd, struct vb_op *op)
{
	struct vb_conn *c = op->conn;
	struct ibv_sge sge = {
		.addr = (uintptr_t)op->buf,
		.length = (uint32_t)op->len,
		.lkey = op->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = (uintptr_t)op,
		.sg_list = &sge,
		.num_sge = 1,
		.send_flags = IBV_SEND_SIGNALED,
	};
	struct ibv_send_wr *bad;
	int ret;

	(void)vd;
	if (op->op == FAB_OP_SEND) {
		wr.opcode = IBV_WR_SEND;
	} else {
		wr.opcode = op->op == FAB_OP_READ ? IBV_WR_RDMA_READ
						  : IBV_WR_RDMA_WRITE;
		wr.wr.rdma.remote_addr = op->raddr;
		wr.wr.rdma.rkey = op->rkey;
	}
	/* verbs returns a positive errno */
	ret = ibv_post_send(c->id->qp, &wr, &bad);
	if (ret)
		return -ret;
	c->nqueued--;
	c->posted++;
	op->state = VOP_POSTED;
	return 0;
}

void vb_post_queued(struct vb_domain *vd)
{
	struct vb_op *op, *next;
	int ret;

	for (op = vd->live.next; op != &vd->live; op = next) {
		struct vb_conn *c = op->conn;

		next = op->next;
		if (op->state != VOP_QUEUED || c->state != VC_UP ||
		    c->posted >= VB_SQ_DEPTH)
			continue;
		ret = vb_op_post(vd, op);
		if (ret) {
			pr_err("ibv_post_send: %s", strerror(-ret));
			vb_conn_fail(vd, c, ret);
			/* the failure freed queued slots: start over */
			next = vd->live.next;
		}
	}
}

/* completions */

/* What a work completion's status means, as -errno. */
static int wc_errno(const struct vb_conn *c, enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS:
		return 0;
	case IBV_WC_WR_FLUSH_ERR:
		/* the connection failed first: say why */
		return c->state == VC_FAILED ? c->status : -ECONNRESET;
	case IBV_WC_REM_ACCESS_ERR:
		return -EACCES;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
	case IBV_WC_RESP_TIMEOUT_ERR:
		return -ETIMEDOUT;
	case IBV_WC_LOC_PROT_ERR:
		return -EFAULT;
	case IBV_WC_LOC_LEN_ERR:
		return -EMSGSIZE;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_REM_OP_ERR:
	case IBV_WC_REM_ABORT_ERR:
		return -EREMOTEIO;
	default:
		return -EIO;
	}
}

/* The endpoint a message came in on: one on its QP, else one to its peer. */
static struct vb_ep *ep_by_qp(struct vb_domain *vd, uint32_t qp_num)
{
	struct vb_conn *c;
	struct vb_ep *ep, *same = NULL;

	for (c = vd->conns.next; c != &vd->conns; c = c->next)
		if (c->qp_num == qp_num && c->id && c->id->qp)
			break;
	if (c == &vd->conns)
		return NULL;
	for (ep = vd->eps.next; ep != &vd->eps; ep = ep->next) {
		if (ep->conn == c)
			return ep;
		if (!same && c->peer.len && ep->conn->peer.len == c->peer.len &&
		    !memcmp(ep->conn->peer.bytes, c->peer.bytes, c->peer.len))
			same = ep;
	}
	return same;
}

static void complete_recv(struct vb_domain *vd, const struct ibv_wc *wc)
{
	struct vb_rx *rx = (struct vb_rx *)(uintptr_t)wc->wr_id;
	struct vb_ep *ep;
	struct fab_cqe c = { .op = FAB_OP_RECV };

	rx->posted = false;
	if (wc->status != IBV_WC_SUCCESS) {
		pr_warn("receive failed: %s", ibv_wc_status_str(wc->status));
		rx->next = vd->lent;
		__atomic_store_n(&vd->lent, rx, __ATOMIC_RELAXED);
		return;
	}
	ep = ep_by_qp(vd, wc->qp_num);
	c.ep = ep ? &ep->base : NULL;
	c.len = wc->byte_len;
	c.buf = rx->buf;
	vb_ring_push(vd, &c);
}

/* One work completion becomes at most one fab_cqe. */
static void complete(struct vb_domain *vd, const struct ibv_wc *wc)
{
	const char *p = (const char *)(uintptr_t)wc->wr_id;
	struct fab_cqe c = { 0 };
	struct vb_op *op;
	int status;

	if (p >= (char *)vd->rx && p < (char *)(vd->rx + VB_NRX)) {
		complete_recv(vd, wc);
		return;
	}
	if (p < (char *)vd->ops || p >= (char *)(vd->ops + VB_MAX_OPS)) {
		pr_warn("completion with a foreign context %p", (void *)p);
		return;
	}
	op = (struct vb_op *)(uintptr_t)wc->wr_id;
	if (op->state != VOP_POSTED && op->state != VOP_ABANDONED) {
		pr_warn("completion of a free operation slot");
		return;
	}
	status = wc_errno(op->conn, wc->status);
	if (status && op->conn->state != VC_FAILED) {
		/*
		 * The QP is in error: every other request on it flushes. The
		 * device may fail them for a port gone down before its event
		 * says so: the cause is the port then, and new connections
		 * are refused from now on, as after the event.
		 */
		if (vb_port_down(vd)) {
			int up = 0;

			status = -ENETDOWN;
			__atomic_compare_exchange_n(&vd->down, &up, -ENETDOWN,
						    false, __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
		} else {
			pr_warn("%s", ibv_wc_status_str(wc->status));
		}
		vb_conn_fail(vd, op->conn, status);
	}
	if (op->state == VOP_POSTED) {
		c.ctx = op->ctx;
		c.ep = &op->ep->base;
		c.op = op->op;
		c.status = status;
		c.len = status ? 0 : op->len;
		vb_ring_push(vd, &c);
	}
	/* ABANDONED: already reported (timeout or close): only reclaim */
	vb_op_free(vd, op);
}

static int cq_read(struct vb_domain *vd)
{
	struct ibv_wc wc[VB_CQ_BATCH];
	int n, i, total = 0;

	if (!vd->cq)
		return 0; /* the device is gone (fab_verbs_reset.c) */
	do {
		n = ibv_poll_cq(vd->cq, VB_CQ_BATCH, wc);
		if (n < 0) {
			pr_err("ibv_poll_cq failed");
			return -EIO;
		}
		for (i = 0; i < n; i++)
			complete(vd, &wc[i]);
		total += n;
	} while (n == VB_CQ_BATCH);
	return total;
}

/*
 * Fail the slots past their deadline and their connections; lock held.
 * A connection that fails frees its queued slots: start over then. Each
 * round leaves one more slot ABANDONED on a failed connection, skipped.
 */
static int expire(struct vb_domain *vd, uint64_t now)
{
	struct vb_op *op;
	int n = 0;

restart:
	for (op = vd->live.next; op != &vd->live && op->deadline <= now;
	     op = op->next) {
		struct vb_conn *c = op->conn;

		if (op->state == VOP_ABANDONED && c->state == VC_FAILED)
			continue;
		/* POSTED here (a failed connection has no QUEUED slot) */
		if (op->state != VOP_ABANDONED) {
			vb_op_abandon(vd, op, -ETIMEDOUT);
			n++;
		}
		if (c->state != VC_FAILED) {
			vb_conn_fail(vd, c, -ETIMEDOUT);
			goto restart;
		}
	}
	return n;
}

/* A connection of ours not yet up or failed; lock held. */
static bool conns_settling(const struct vb_domain *vd)
{
	const struct vb_conn *c;

	for (c = vd->conns.next; c != &vd->conns; c = c->next)
		if (c->state == VC_RESOLVING || c->state == VC_CONNECTING)
			return true;
	return false;
}

/*
 * One pass at time now, lock held: events, completions, queued slots,
 * deadlines. The connection manager's and the device's event fds are read
 * when they woke a waiter, or while a caller spins once per VB_CM_EVERY_NS
 * if a connection is being made, else per VB_CM_IDLE_NS: those two reads
 * a millisecond cost a 4 KiB read 3 us in the test VM.
 */
static int drain(struct vb_domain *vd, uint64_t now)
{
	int n = 0, m;

	/* atomic: wait_fds() clears it without the lock */
	if (now >= __atomic_load_n(&vd->cm_next, __ATOMIC_RELAXED)) {
		n = vb_cm_events(vd);
		m = vb_async_read(vd);
		n = n < 0 ? n : m < 0 ? m : n + m;
		__atomic_store_n(&vd->cm_next,
				 now + (conns_settling(vd) ? VB_CM_EVERY_NS
							   : VB_CM_IDLE_NS),
				 __ATOMIC_RELAXED);
	}
	if (__atomic_load_n(&vd->apending, __ATOMIC_ACQUIRE))
		vb_async_apply(vd);
	m = cq_read(vd);
	/* a device going away may fail them: it is let go of (reset.c) */
	if (__atomic_load_n(&vd->dev, __ATOMIC_RELAXED) != VD_UP) {
		n = FY_MAX(n, 0);
		m = FY_MAX(m, 0);
	}
	if (n < 0 || m < 0)
		return n < 0 ? n : m;
	vb_post_queued(vd);
	n += m + expire(vd, now);
	if (vd->ring_len)
		vb_wake(vd);
	return n;
}

void vb_after(struct vb_domain *vd)
{
	/* the device went, or may be back (fab_verbs_reset.c) */
	if (__atomic_load_n(&vd->dev, __ATOMIC_RELAXED) != VD_UP)
		vb_dev_tick(vd);
	/* the progress thread, where there is one (vb_conns_destroy()) */
	if (__atomic_load_n(&vd->reap, __ATOMIC_RELAXED) &&
	    (!vd->pt_running || pthread_equal(pthread_self(), vd->pt))) {
		struct vb_conn *dead;

		pthread_mutex_lock(&vd->lock);
		dead = vb_conn_reap(vd);
		pthread_mutex_unlock(&vd->lock);
		vb_conns_destroy(dead);
	}
	if (__atomic_load_n(&vd->freed, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&vd->freed, false, __ATOMIC_RELAXED))
		fab_release_sweep(&vd->base);
	else
		fab_release_tick(&vd->base);
}

static int drain_locked(struct vb_domain *vd)
{
	int n;

	pthread_mutex_lock(&vd->lock);
	n = drain(vd, fy_now_ns());
	pthread_mutex_unlock(&vd->lock);
	vb_after(vd);
	return n;
}

/* Arm the CQ, then drain; the fds to wait on. Lock not held. */
static int arm_drain(struct vb_domain *vd, int *ch_fd, int *async_fd)
{
	int n, ret;

	pthread_mutex_lock(&vd->lock);
	/* while the device is gone there is no CQ, no context */
	*ch_fd = vd->ch ? vd->ch->fd : -1;
	*async_fd = vd->ctx ? vd->ctx->async_fd : -1;
	ret = vd->cq ? ibv_req_notify_cq(vd->cq, 0) : 0;
	if (ret)
		pr_warn("ibv_req_notify_cq: %s", strerror(ret));
	/* what completed before the arming raises no event */
	n = drain(vd, fy_now_ns());
	pthread_mutex_unlock(&vd->lock);
	vb_after(vd);
	return n;
}

/* Take the channel's event, if it is still the channel we waited on. */
static void ack_cq_event(struct vb_domain *vd, int ch_fd)
{
	struct ibv_cq *cq;
	void *cq_ctx;

	pthread_mutex_lock(&vd->lock);
	if (vd->ch && vd->ch->fd == ch_fd &&
	    !ibv_get_cq_event(vd->ch, &cq, &cq_ctx))
		ibv_ack_cq_events(cq, 1);
	pthread_mutex_unlock(&vd->lock);
}

/*
 * Arm the completion channel, look once more, then block on it, the
 * connection manager's fd, the device's event fd and the kick fd for up
 * to ms. Returns true when something arrived.
 */
static bool wait_fds(struct vb_domain *vd, int ms)
{
	struct pollfd pfd[4] = {
		{ .fd = -1, .events = POLLIN },
		{ .fd = vd->ec->fd, .events = POLLIN },
		{ .fd = vd->kick_fd, .events = POLLIN },
		{ .fd = -1, .events = POLLIN },
	};
	uint64_t v;

	if (arm_drain(vd, &pfd[0].fd, &pfd[3].fd) > 0)
		return true;
	/* an fd closed meanwhile (the device went) wakes nothing: ms */
	if (poll(pfd, 4, ms) <= 0)
		return false;
	if (pfd[1].revents || pfd[3].revents)
		__atomic_store_n(&vd->cm_next, 0, __ATOMIC_RELAXED);
	if (pfd[0].revents & POLLIN)
		ack_cq_event(vd, pfd[0].fd);
	/* the progress thread and an application may race for the kick */
	if ((pfd[2].revents & POLLIN) && read(vd->kick_fd, &v, sizeof(v)) < 0 &&
	    errno != EAGAIN)
		pr_perror("read kick fd");
	return true;
}

/*
 * The progress thread: parked while the application is in fab_poll() and
 * for VB_APP_HOLD_NS after (fab_park.c); otherwise it drives progress,
 * keeps polling for spin_ns after the last sign of activity (0 by
 * default), then blocks on the channels. A peer's reads of our memory are
 * served by the device without us.
 */
void *vb_progress(void *arg)
{
	struct vb_domain *vd = arg;
	uint64_t spin_until = 0;

	while (!__atomic_load_n(&vd->stop, __ATOMIC_ACQUIRE)) {
		int n;

		if (fab_park_wait(&vd->park, &vd->stop))
			continue;
		n = drain_locked(vd);
		if (n < 0)
			break; /* logged; fab_poll() says so */
		if (n > 0) {
			spin_until = fy_now_ns() + vd->spin_ns;
			continue;
		}
		if (fy_now_ns() < spin_until) {
			sched_yield();
			continue;
		}
		if (wait_fds(vd, VB_WAIT_MS))
			spin_until = fy_now_ns() + vd->spin_ns;
	}
	return NULL;
}

void vb_drain_held(struct vb_domain *vd, uint64_t until)
{
	while (__atomic_load_n(&vd->held, __ATOMIC_RELAXED) &&
	       fy_now_ns() < until) {
		int n = drain_locked(vd);

		if (n < 0)
			return;
		if (!n)
			wait_fds(vd, 10);
	}
}

/* receives */

int vb_post_rx(struct vb_domain *vd, struct vb_rx *rx)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)rx->buf,
		.length = FAB_MSG_MAX,
	};
	struct ibv_recv_wr wr = {
		.wr_id = (uintptr_t)rx,
		.sg_list = &sge,
		.num_sge = 1,
	};
	struct ibv_recv_wr *bad;
	int ret;

	if (!vd->srq) {
		/* the device is gone: posted when it is back */
		rx->repost = true;
		return 0;
	}
	sge.lkey = vd->bufs_mr->lkey;
	ret = ibv_post_srq_recv(vd->srq, &wr, &bad);
	if (ret) {
		pr_err("ibv_post_srq_recv: %s", strerror(ret));
		return -ret;
	}
	rx->posted = true;
	return 0;
}

/* Repost the receive buffers handed out by the previous fab_poll(). */
static void repost_lent(struct vb_domain *vd)
{
	struct vb_rx *rx, *next;

	if (!__atomic_load_n(&vd->lent, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&vd->lock);
	for (rx = vd->lent, vd->lent = NULL; rx; rx = next) {
		next = rx->next;
		if (vb_post_rx(vd, rx)) {
			/* keep it for the next attempt */
			rx->next = vd->lent;
			vd->lent = rx;
		}
	}
	pthread_mutex_unlock(&vd->lock);
}

/*
 * Block on the completion channel in the application's own thread: the
 * wake-up lands where the completion is consumed, without a hop through
 * the progress thread, which stays parked. It kicks us if it queued cqes
 * just before.
 */
static void wait_app(struct vb_domain *vd, uint64_t now, uint64_t until)
{
	int ms = (int)FY_MIN((until - now) / 1000000 + 1, VB_WAIT_MS);
	bool queued;

	if (vd->pt_running)
		fab_park_hold(&vd->park,
			      now + ms * 1000000ULL + VB_APP_HOLD_NS);

	pthread_mutex_lock(&vd->lock);
	queued = vd->ring_len != 0;
	if (!queued)
		vd->fd_waiters++;
	pthread_mutex_unlock(&vd->lock);
	if (queued)
		return;
	wait_fds(vd, ms);
	pthread_mutex_lock(&vd->lock);
	vd->fd_waiters--;
	pthread_mutex_unlock(&vd->lock);
}

int vb_poll(struct fab_domain *d, struct fab_cqe *cqes, int max, int timeout_ms)
{
	struct vb_domain *vd = vb_vd(d);
	struct fab_poll_time t = fab_poll_time_init();
	int n, ret;

	repost_lent(vd);
	for (;;) {
		/* the app drives progress now: the thread may rest */
		if (vd->pt_running)
			fab_poll_hold(&vd->park, &t, VB_APP_HOLD_NS);
		pthread_mutex_lock(&vd->lock);
		ret = drain(vd, t.now);
		n = ring_pop(vd, cqes, max);
		pthread_mutex_unlock(&vd->lock);
		vb_after(vd);
		if (n)
			return n;
		if (ret < 0)
			return ret;
		if (!timeout_ms || !fab_poll_time_next(&t, timeout_ms))
			return 0;
		if (t.now - t.start < VB_POLL_SPIN_NS) {
			/* on 2 CPUs a pure spinner starves the peer */
			sched_yield();
			continue;
		}
		wait_app(vd, t.now, t.until);
		t.now = fy_now_ns();
	}
}

/* fab_mem_busy(): a slot not yet free whose buffer overlaps the range. */
bool vb_mem_busy(const struct fab_domain *d, const void *addr, size_t len)
{
	struct vb_domain *vd = vb_vd(d);
	const char *a = addr;
	bool busy = false;
	unsigned i;

	if (!__atomic_load_n(&vd->held, __ATOMIC_RELAXED))
		return false;
	pthread_mutex_lock(&vd->lock);
	for (i = 0; i < VB_MAX_OPS && !busy; i++) {
		const struct vb_op *op = &vd->ops[i];
		const char *b = op->buf;

		busy = op->state != VOP_FREE && b && b < a + len &&
		       a < b + op->len;
	}
	pthread_mutex_unlock(&vd->lock);
	return busy;
}
