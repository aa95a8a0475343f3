// SPDX-License-Identifier: MIT
/*
 * rdma-core backend ("verbs"): RC queue pairs made through librdmacm, one
 * per peer and shared by the endpoints to it; RDMA READ and WRITE; SEND
 * into a shared receive queue for small messages; keys are the device's.
 *
 * Every operation is tracked in a ferry-owned slot (struct vb_op) whose
 * address is the work request's id. A slot taken while its connection is
 * being made waits QUEUED and goes out once it is up; one still on the
 * device at its deadline fails the connection (fab_verbs_cq.c).
 *
 * The domain and its connections live in fab_verbs_domain.c and
 * fab_verbs_cm.c, completions and progress in fab_verbs_cq.c; see also
 * docs/rdma.md.
 */
#define LOG_PREFIX "fabric: verbs: "

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "fabric/fab_verbs.h"

#include "common/log.h"

/* memory */

/*
 * On-demand paging where the device offers it for RC reads and writes:
 * nothing is pinned and pages are faulted in when the device touches
 * them. Otherwise the range is pinned, which faults in every page of it
 * now (docs/rdma.md, "Registration").
 */
struct ibv_mr *vb_mr_make(struct vb_domain *vd, const struct vb_mr *m)
{
	void *buf = (void *)(uintptr_t)m->base.rkey.addr;
	size_t len = m->base.rkey.len;
	struct ibv_mr *mr = NULL;

	if (vd->odp) {
		mr = ibv_reg_mr(vd->pd, buf, len,
				m->flags | IBV_ACCESS_ON_DEMAND);
		if (!mr)
			pr_warn("on-demand registration of %zu bytes failed "
				"(%s): pinning",
				len, strerror(errno));
	}
	if (!mr)
		mr = ibv_reg_mr(vd->pd, buf, len, m->flags);
	/*
	 * Pinning pins for writing, which a read-only mapping refuses (a
	 * source's guest RAM: pages leave by the peers' reads, never by us):
	 * writable while it pins, read-only again after. Here and not only
	 * at the caller, as a device that came back registers it anew.
	 */
	if (!mr && errno == EFAULT && !(m->flags & IBV_ACCESS_REMOTE_WRITE) &&
	    !mprotect(buf, len, PROT_READ | PROT_WRITE)) {
		mr = ibv_reg_mr(vd->pd, buf, len, m->flags);
		mprotect(buf, len, PROT_READ);
	}
	return mr;
}

/*
 * While the device is gone the registration is only recorded: it is
 * made when the device is back (fab_verbs_reset.c), with a new key.
 */
static int vb_reg_mr(struct fab_domain *d, void *buf, size_t len,
		     unsigned access, struct fab_mr **out)
{
	struct vb_domain *vd = vb_vd(d);
	struct vb_mr *m;
	int err = 0;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->flags = IBV_ACCESS_LOCAL_WRITE;
	if (access & FAB_ACCESS_READ)
		m->flags |= IBV_ACCESS_REMOTE_READ;
	if (access & FAB_ACCESS_WRITE)
		m->flags |= IBV_ACCESS_REMOTE_WRITE;
	/* verbs addresses by virtual address; the key is the device's */
	m->base.rkey.addr = (uint64_t)(uintptr_t)buf;
	m->base.rkey.len = len;
	pthread_rwlock_rdlock(&vd->dev_lock);
	if (__atomic_load_n(&vd->dev, __ATOMIC_ACQUIRE) == VD_UP) {
		m->mr = vb_mr_make(vd, m);
		err = m->mr ? 0 : errno ? errno : ENOMEM;
	}
	/* failed as the device went: recorded like one made while gone */
	if (err && __atomic_load_n(&vd->dev, __ATOMIC_ACQUIRE) != VD_UP)
		err = 0;
	if (err) {
		pthread_rwlock_unlock(&vd->dev_lock);
		free(m);
		/* read-only memory: the caller may make it writable and retry */
		if (err == EFAULT) {
			pr_debug("ibv_reg_mr(%zu bytes): %s", len,
				 strerror(err));
			return -err;
		}
		pr_err("ibv_reg_mr(%zu bytes): %s%s", len, strerror(err),
		       err == ENOMEM || err == EPERM ? " (locked memory limit? "
						       "see docs/rdma.md)"
						     : "");
		return -err;
	}
	m->base.rkey.key = m->mr ? m->mr->rkey : 0;
	pthread_mutex_lock(&vd->lock);
	m->next = vd->mrs.next;
	m->prev = &vd->mrs;
	m->next->prev = m;
	vd->mrs.next = m;
	pthread_mutex_unlock(&vd->lock);
	pthread_rwlock_unlock(&vd->dev_lock);
	*out = &m->base;
	return 0;
}

static int vb_dereg_mr(struct fab_mr *mr)
{
	struct vb_domain *vd = vb_vd(mr->d);
	struct vb_mr *m = container_of(mr, struct vb_mr, base);
	int ret = 0;

	/* the device's objects do not change under a read lock */
	pthread_rwlock_rdlock(&vd->dev_lock);
	pthread_mutex_lock(&vd->lock);
	m->prev->next = m->next;
	m->next->prev = m->prev;
	pthread_mutex_unlock(&vd->lock);
	/* verbs returns a positive errno */
	if (m->mr)
		ret = ibv_dereg_mr(m->mr);
	pthread_rwlock_unlock(&vd->dev_lock);
	if (ret)
		pr_err("ibv_dereg_mr: %s", strerror(ret));
	free(m);
	return -ret;
}

/* endpoints */

/*
 * A connection to peer that a new endpoint may join: not failed, and not
 * holding operations of closed endpoints (a stalled link would fail the
 * new endpoint's operations with them). Lock held.
 */
static struct vb_conn *conn_to(struct vb_domain *vd,
			       const struct fab_addr *peer)
{
	struct vb_conn *c;

	for (c = vd->conns.next; c != &vd->conns; c = c->next)
		if (c->state != VC_FAILED && !c->zombies &&
		    c->peer.len == peer->len &&
		    !memcmp(c->peer.bytes, peer->bytes, peer->len))
			return c;
	return NULL;
}

static int vb_connect(struct fab_domain *d, const struct fab_addr *peer,
		      struct fab_ep **out)
{
	struct vb_domain *vd = vb_vd(d);
	struct vb_ep *ep;
	int ret = 0;

	/* the port is down, or the device failed (fab_verbs_async.c) */
	ret = __atomic_load_n(&vd->down, __ATOMIC_RELAXED);
	if (ret)
		return ret;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	pthread_mutex_lock(&vd->lock);
	ep->conn = conn_to(vd, peer);
	/* down before its event came (the cqs may have seen it first) */
	if (!ep->conn)
		ret = vb_port_down(vd) ? -ENETDOWN
				       : vb_conn_start(vd, peer, &ep->conn);
	if (ret) {
		pthread_mutex_unlock(&vd->lock);
		if (ret == -EINVAL)
			pr_err("a peer's fabric address is no IP address of a "
			       "verbs domain");
		free(ep);
		return ret;
	}
	ep->conn->eps++;
	ep->next = vd->eps.next;
	ep->prev = &vd->eps;
	ep->next->prev = ep;
	vd->eps.next = ep;
	pthread_mutex_unlock(&vd->lock);
	/* the connection manager's first event may be waiting already */
	*out = &ep->base;
	return 0;
}

static void vb_ep_close(struct fab_ep *e)
{
	struct vb_domain *vd = vb_vd(e->d);
	struct vb_ep *ep = container_of(e, struct vb_ep, base);
	struct vb_conn *c = ep->conn;
	struct vb_op *op, *next;

	pthread_mutex_lock(&vd->lock);
	/* outstanding operations complete with -ECANCELED at once */
	for (op = vd->live.next; op != &vd->live; op = next) {
		next = op->next;
		if (op->ep == ep)
			vb_op_abandon(vd, op, -ECANCELED);
	}
	ep->prev->next = ep->next;
	ep->next->prev = ep->prev;
	if (!--c->eps && !c->held && c->state == VC_FAILED)
		__atomic_store_n(&vd->reap, true, __ATOMIC_RELAXED);
	vb_wake(vd);
	pthread_mutex_unlock(&vd->lock);
	free(ep);
	vb_after(vd);
}

/* operations */

/*
 * Take a slot, filled from want, QUEUED on ep's connection (and on the
 * live list: its deadline runs), then post it if the connection is up and
 * nothing waits before it. A send gets a bounce buffer and copies msg.
 */
static int op_start(struct vb_domain *vd, struct vb_ep *ep,
		    const struct vb_op *want, const struct vb_mr *m,
		    const void *msg)
{
	struct vb_conn *c = ep->conn;
	bool send = want->op == FAB_OP_SEND;
	struct vb_op *op;
	int ret = 0;

	pthread_mutex_lock(&vd->lock);
	/* the device is gone: so are its keys (fab_verbs_reset.c) */
	if (__atomic_load_n(&vd->dev, __ATOMIC_RELAXED) != VD_UP ||
	    (m && !m->mr)) {
		ret = -ENODEV;
		goto out;
	}
	if (c->state == VC_FAILED) {
		ret = -ENOTCONN;
		goto out;
	}
	op = vd->free_ops;
	/* a cqe not yet fetched also holds a place in the ring */
	if (!op || (send && !vd->nsbuf_free) ||
	    vd->owing + vd->ring_len >= VB_MAX_OPS ||
	    (c->state == VC_UP && c->posted + c->nqueued >= VB_SQ_DEPTH)) {
		ret = -EAGAIN;
		goto out;
	}
	vd->free_ops = op->next;
	*op = *want;
	op->sbuf = -1;
	if (m)
		op->lkey = m->mr->lkey; /* changes when the device comes back */
	if (send) {
		op->sbuf = vd->sbuf_free[--vd->nsbuf_free];
		op->buf = vd->bufs + (size_t)(VB_NRX + op->sbuf) * FAB_MSG_MAX;
		op->lkey = vd->bufs_mr->lkey;
		memcpy(op->buf, msg, want->len);
	}
	op->ep = ep;
	op->conn = c;
	op->state = VOP_QUEUED;
	c->nqueued++;
	c->held++;
	vd->owing++;
	__atomic_add_fetch(&vd->held, 1, __ATOMIC_RELAXED);
	/*
	 * One timeout for all: appending keeps the list in deadline order.
	 * The tick's time: it may expire a tick early, and saves a clock read.
	 */
	op->deadline = fy_coarse_ns() + vd->timeout_ns;
	vb_live_add(vd, op);
	/* behind those already waiting: messages keep their order */
	if (c->state != VC_UP || c->nqueued > 1)
		goto out;
	ret = vb_op_post(vd, op);
	if (ret) {
		pr_err("ibv_post_send: %s", strerror(-ret));
		vb_op_free(vd, op);
		ret = ret == -ENOMEM ? -EAGAIN : ret;
	}
out:
	pthread_mutex_unlock(&vd->lock);
	return ret;
}

/* One-sided read or write: they differ only in the opcode. */
static int vb_rma(struct fab_ep *e, enum fab_op kind, void *buf, size_t len,
		  struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx)
{
	struct vb_domain *vd = vb_vd(e->d);
	struct vb_op want = { .op = kind,
			      .buf = buf,
			      .len = len,
			      .raddr = addr,
			      .rkey = (uint32_t)key,
			      .ctx = ctx };

	/* the device reaches local memory through a registration only */
	if (!mr || (char *)buf < (char *)mr->buf ||
	    (char *)buf + len > (char *)mr->buf + mr->len || len > UINT32_MAX ||
	    key > UINT32_MAX)
		return -EINVAL;
	return op_start(vd, container_of(e, struct vb_ep, base), &want,
			container_of(mr, struct vb_mr, base), NULL);
}

static int vb_read(struct fab_ep *e, void *buf, size_t len, struct fab_mr *mr,
		   uint64_t addr, uint64_t key, void *ctx)
{
	return vb_rma(e, FAB_OP_READ, buf, len, mr, addr, key, ctx);
}

static int vb_write(struct fab_ep *e, const void *buf, size_t len,
		    struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx)
{
	/* a write only reads buf; one signature serves both directions */
	return vb_rma(e, FAB_OP_WRITE, (void *)buf, len, mr, addr, key, ctx);
}

static int vb_send(struct fab_ep *e, const void *buf, size_t len, void *ctx)
{
	struct vb_op want = { .op = FAB_OP_SEND, .len = len, .ctx = ctx };

	return op_start(vb_vd(e->d), container_of(e, struct vb_ep, base), &want,
			NULL, buf);
}

/* the domain (opened and closed in fab_verbs_domain.c) */

static const char *vb_provider(const struct fab_domain *d)
{
	return vb_vd(d)->provider;
}

static void vb_addr(const struct fab_domain *d, struct fab_addr *out)
{
	*out = vb_vd(d)->addr;
}

static uint64_t vb_progress_cpu_ns(const struct fab_domain *d)
{
	const struct vb_domain *vd = vb_vd(d);
	struct timespec ts;

	if (!vd->pt_running || clock_gettime(vd->pt_clock, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * VB_NSEC + (uint64_t)ts.tv_nsec;
}

const struct fab_ops fab_verbs_ops = {
	.name = "verbs",
	.open = fab_verbs_open,
	.provider = vb_provider,
	.addr = vb_addr,
	.progress_cpu_ns = vb_progress_cpu_ns,
	.reg_mr = vb_reg_mr,
	.dereg_mr = vb_dereg_mr,
	.connect = vb_connect,
	.ep_close = vb_ep_close,
	.read = vb_read,
	.write = vb_write,
	.send = vb_send,
	.poll = vb_poll,
	.mem_busy = vb_mem_busy,
	.close = fab_verbs_close,
};
