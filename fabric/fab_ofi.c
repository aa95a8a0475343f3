// SPDX-License-Identifier: MIT
/*
 * libfabric backend. One reliable-datagram (FI_EP_RDM) endpoint per domain
 * with an address vector: a fab_ep is an fi_addr_t in that AV, so
 * "connecting" costs nothing and the provider opens the connection on the
 * first operation. "ofi:tcp" maps to "tcp;ofi_rxm" (RDM over the tcp MSG
 * provider), "ofi:verbs" to "verbs;ofi_rxm".
 *
 * Every operation is tracked in a ferry-owned slot (struct ofi_op) whose
 * fi_context2 is what libfabric sees. Posted slots sit on a list in deadline
 * order; a slot still posted at its deadline is reported as -ETIMEDOUT and
 * left ABANDONED: its late completion, if one ever comes, only frees the slot.
 * Completions read from the CQ by any thread (the application in fab_poll()
 * or the progress thread) are turned into fab_cqe in a ring under od->lock,
 * and fab_poll() hands them out from there.
 *
 * Opening and closing a domain live in fab_ofi_domain.c, completions and
 * progress in fab_ofi_cq.c; see also docs/fabric.md.
 */
#define LOG_PREFIX "fabric: "

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* first: it orders common/util.h before rdma/fabric.h */
#include "fabric/fab_ofi.h"

#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "common/log.h"

/* memory */

/*
 * A key for a registration when we choose it (no FI_MR_PROV_KEY): 64 random
 * bits, cut to the provider's mr_key_size. A key is all that stands between
 * a process that reaches the fabric port and a registration (tcp checks
 * nothing else), so it must not be guessable; see docs/security.md.
 */
static int mr_random_key(const struct ofi_domain *od, uint64_t *key)
{
	ssize_t n;

	do {
		n = getrandom(key, sizeof(*key), 0);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*key)) {
		pr_err("getrandom: %s", n < 0 ? strerror(errno) : "short read");
		return n < 0 ? -errno : -EIO;
	}
	if (od->key_size < sizeof(*key))
		*key &= (1ULL << (8 * od->key_size)) - 1;
	return 0;
}

int fab_ofi_mr_make(struct ofi_domain *od, void *buf, size_t len,
		    uint64_t access, struct fid_mr **out)
{
	bool own = !(od->mr_mode & FI_MR_PROV_KEY);
	uint64_t key = 0;
	int ret = -EAGAIN, tries;

	for (tries = 0; tries < 8; tries++) {
		if (own) {
			ret = mr_random_key(od, &key);
			if (ret)
				return ret;
			ret = -EAGAIN;
			/* 0 and FI_KEY_NOTAVAIL look like defaults */
			if (!key || key == FI_KEY_NOTAVAIL)
				continue;
		}
		ret = fi_mr_reg(od->domain, buf, len, access, 0, key, 0, out,
				NULL);
		/* -FI_ENOKEY: our key is taken; draw another */
		if (!own || ret != -FI_ENOKEY)
			break;
	}
	if (ret == -FI_EFAULT) {
		/* read-only memory: fab_sparse.c makes it writable and retries */
		pr_debug("fi_mr_reg(%zu bytes): %s", len, fi_strerror(-ret));
		return ofi_err(ret);
	}
	if (ret) {
		pr_err("fi_mr_reg(%zu bytes): %s", len, fi_strerror(-ret));
		return ofi_err(ret);
	}
	if (od->mr_mode & FI_MR_ENDPOINT) {
		/* the registration only becomes usable once bound and enabled */
		ret = fi_mr_bind(*out, &od->ep->fid, 0);
		if (!ret)
			ret = fi_mr_enable(*out);
		if (ret) {
			pr_err("fi_mr_bind/enable: %s", fi_strerror(-ret));
			fi_close(&(*out)->fid);
			*out = NULL;
			return ofi_err(ret);
		}
	}
	return 0;
}

static int ofi_reg_mr(struct fab_domain *d, void *buf, size_t len,
		      unsigned access, struct fab_mr **out)
{
	struct ofi_domain *od = ofi_od(d);
	uint64_t fa = 0;
	struct ofi_mr *m;
	int ret;

	if (access & FAB_ACCESS_READ)
		fa |= FI_REMOTE_READ;
	if (access & FAB_ACCESS_WRITE)
		fa |= FI_REMOTE_WRITE;
	if (access & FAB_ACCESS_LOCAL)
		fa |= FI_READ | FI_WRITE | FI_SEND | FI_RECV;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	ret = fab_ofi_mr_make(od, buf, len, fa, &m->mr);
	if (ret) {
		free(m);
		return ret;
	}
	/*
	 * Offset addressing unless the provider wants virtual addresses: we
	 * offer FI_MR_VIRT_ADDR, but tcp;ofi_rxm (1.17) always addresses by
	 * offset (docs/fabric.md), so there the key alone protects.
	 */
	m->base.rkey.addr =
		(od->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buf : 0;
	m->base.rkey.len = len;
	m->base.rkey.key = fi_mr_key(m->mr);
	pthread_mutex_lock(&od->lock);
	m->next = od->mrs.next;
	m->prev = &od->mrs;
	m->next->prev = m;
	od->mrs.next = m;
	pthread_mutex_unlock(&od->lock);
	*out = &m->base;
	return 0;
}

static int ofi_dereg_mr(struct fab_mr *mr)
{
	struct ofi_domain *od = ofi_od(mr->d);
	struct ofi_mr *m = container_of(mr, struct ofi_mr, base);
	int ret;

	pthread_mutex_lock(&od->lock);
	m->prev->next = m->next;
	m->next->prev = m->prev;
	pthread_mutex_unlock(&od->lock);
	ret = fi_close(&m->mr->fid);
	if (ret)
		pr_err("fi_close(mr): %s", fi_strerror(-ret));
	free(m);
	return ofi_err(ret);
}

/* endpoints */

/*
 * An endpoint to peer other than skip: open, closed with operations still
 * held, or released and not yet removed; od->lock held.
 */
static struct ofi_ep *ep_to(struct ofi_domain *od, const struct fab_addr *peer,
			    const struct ofi_ep *skip)
{
	struct ofi_ep *lists[] = { &od->eps, &od->zombies }, *ep;

	for (unsigned i = 0; i < ARRAY_SIZE(lists); i++)
		for (ep = lists[i]->next; ep != lists[i]; ep = ep->next)
			if (ep != skip && ep->peer.len == peer->len &&
			    !memcmp(ep->peer.bytes, peer->bytes, peer->len))
				return ep;
	for (ep = od->reap; ep; ep = ep->next)
		if (ep != skip && ep->peer.len == peer->len &&
		    !memcmp(ep->peer.bytes, peer->bytes, peer->len))
			return ep;
	return NULL;
}

/*
 * The AV holds an address once (libfabric hands a second insert the same
 * fi_addr_t) and fi_av_remove() drops its connection: endpoints to one
 * peer share one entry, inserted by the first, removed with the last, so
 * closing one never cuts the connection under another's reads. Under
 * od->lock, so that no connect slips between a removal's check and the
 * removal.
 */
static int ofi_connect(struct fab_domain *d, const struct fab_addr *peer,
		       struct fab_ep **out)
{
	struct ofi_domain *od = ofi_od(d);
	uint8_t a[FAB_ADDR_MAX + 1] = { 0 };
	struct ofi_ep *ep, *same;
	int ret = 1;

	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	ep->peer = *peer;
	/* string address formats (shm) need the terminating NUL */
	memcpy(a, peer->bytes, peer->len);
	pthread_mutex_lock(&od->lock);
	same = ep_to(od, peer, NULL);
	if (same) {
		ep->fa = same->fa;
		/* its connection may be going down with a closed one's reads */
		ep->inherited = same->closed || same->inherited;
	} else
		ret = fi_av_insert(od->av, a, 1, &ep->fa, 0, NULL);
	if (ret != 1) {
		pthread_mutex_unlock(&od->lock);
		pr_err("fi_av_insert: %s",
		       ret < 0 ? fi_strerror(-ret) : "address rejected");
		free(ep);
		return ret < 0 ? ofi_err(ret) : -EINVAL;
	}
	ep->next = od->eps.next;
	ep->prev = &od->eps;
	ep->next->prev = ep;
	od->eps.next = ep;
	pthread_mutex_unlock(&od->lock);
	*out = &ep->base;
	return 0;
}

/* Report ep's posted operations as cancelled and forget ep; lock held. */
void fab_ofi_ep_abandon(struct ofi_domain *od, struct ofi_ep *ep)
{
	struct ofi_op *op, *next;

	for (op = od->posted.next; op != &od->posted; op = next) {
		next = op->next;
		if (op->ep == ep)
			fab_ofi_op_abandon(od, op, -ECANCELED);
	}
	ep->prev->next = ep->next;
	ep->next->prev = ep->prev;
}

void fab_ofi_dev_gone(struct ofi_domain *od)
{
	if (od->dev_gone || !od->verbs)
		return;
	od->dev_gone = true;
	pr_err("%s: the RDMA device is gone; this domain's libfabric objects "
	       "stay open until ferryd exits (restart it once the device is "
	       "back: docs/rdma.md)",
	       od->provider);
}

/* Free ep, off every list, and its address if no other uses it; lock held. */
static void ep_remove(struct ofi_domain *od, struct ofi_ep *ep)
{
	int ret = 0;

	/* the provider drops the connection (FI_AV_REMOVE_CLEANUP) */
	if (!od->dev_gone && !ep_to(od, &ep->peer, ep))
		ret = fi_av_remove(od->av, &ep->fa, 1, 0);
	if (ret)
		pr_warn("fi_av_remove: %s", fi_strerror(-ret));
	free(ep);
}

/* The provider holds an operation to fa (posted or abandoned); lock held. */
static bool fa_held(const struct ofi_domain *od, fi_addr_t fa)
{
	for (unsigned i = 0; i < od->nops; i++) {
		const struct ofi_op *op = &od->ops[i];

		if ((op->state == OP_POSTED || op->state == OP_ABANDONED) &&
		    op->owner && op->owner->fa == fa)
			return true;
	}
	return false;
}

/* Every endpoint at address old is at fa now, on a new connection. */
static void fa_move(struct ofi_domain *od, fi_addr_t old, fi_addr_t fa)
{
	struct ofi_ep *ep;

	for (ep = od->eps.next; ep != &od->eps; ep = ep->next) {
		if (ep->fa != old)
			continue;
		ep->fa = fa;
		ep->renew = ep->inherited = false;
		/* refusals while the new connection is made queue again */
		__atomic_store_n(&ep->up, false, __ATOMIC_RELAXED);
	}
	for (ep = od->reap; ep; ep = ep->next)
		if (ep->fa == old)
			ep->fa = fa;
}

/*
 * Give ep's peer a new connection: remove its address, which drops the
 * failed one (FI_AV_REMOVE_CLEANUP), and insert it again. Only once the
 * provider holds nothing at it (removing an address with operations
 * still held crashes ofi_rxm, see ofi_ep_close()). Lock held; whatever
 * fails, ep stops waiting (failed: its queued operations fail).
 */
static void ep_renew(struct ofi_domain *od, struct ofi_ep *ep)
{
	uint8_t a[FAB_ADDR_MAX + 1] = { 0 };
	fi_addr_t old = ep->fa, fa;
	int ret;

	if (fa_held(od, old))
		return;
	memcpy(a, ep->peer.bytes, ep->peer.len);
	ret = fi_av_remove(od->av, &old, 1, 0);
	if (!ret)
		ret = fi_av_insert(od->av, a, 1, &fa, 0, NULL);
	if (ret == 1) {
		pr_info("reconnecting to a peer: the connection our first "
			"operations shared with a closed endpoint failed");
		fa_move(od, old, fa);
		return;
	}
	pr_err("renewing a peer's address: %s",
	       ret < 0 ? fi_strerror(-ret) : "address rejected");
	for (struct ofi_ep *e = od->eps.next; e != &od->eps; e = e->next)
		if (e->fa == old && e->renew) {
			e->renew = false;
			e->failed = true;
		}
}

/* Renew the addresses endpoints wait for, where possible; lock held. */
static void renew(struct ofi_domain *od)
{
	bool waiting = false;
	struct ofi_ep *ep;

	for (ep = od->eps.next; ep != &od->eps; ep = ep->next) {
		if (ep->renew)
			ep_renew(od, ep);
		waiting |= ep->renew;
	}
	__atomic_store_n(&od->renew, waiting, __ATOMIC_RELAXED);
}

void fab_ofi_reap(struct ofi_domain *od)
{
	struct ofi_ep *ep;

	if (!__atomic_load_n(&od->reap, __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&od->renew, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&od->lock);
	while ((ep = od->reap)) {
		__atomic_store_n(&od->reap, ep->next, __ATOMIC_RELAXED);
		ep_remove(od, ep);
	}
	if (od->renew)
		renew(od);
	pthread_mutex_unlock(&od->lock);
}

static void ofi_ep_close(struct fab_ep *e)
{
	struct ofi_domain *od = ofi_od(e->d);
	struct ofi_ep *ep = container_of(e, struct ofi_ep, base);
	bool held;

	pthread_mutex_lock(&od->lock);
	fab_ofi_ep_abandon(od, ep);
	fab_ofi_wake(od);
	/*
	 * ofi_rxm (1.17) crashes when an address whose operations it still
	 * holds is removed (a stalled link: reads posted, none returned).
	 * Such an endpoint waits on the zombie list; the completion that
	 * returns its last operation moves it to od->reap.
	 */
	held = ep->held > 0;
	if (held) {
		ep->closed = true;
		ep->next = od->zombies.next;
		ep->prev = &od->zombies;
		ep->next->prev = ep;
		od->zombies.next = ep;
	} else {
		ep_remove(od, ep);
	}
	pthread_mutex_unlock(&od->lock);
	/* its queued operations freed their slots */
	fab_ofi_after(od);
}

/* operations */

/*
 * Take a slot, filled from `want` (op, buf, len, desc, raddr, key, ctx),
 * and put it on the posted list before the provider sees it. A send gets
 * a bounce buffer as its buf (taken under the lock: the progress thread
 * frees the slot once the send completes); the caller copies into it.
 */
static int op_get(struct ofi_domain *od, struct ofi_ep *ep,
		  const struct ofi_op *want, struct ofi_op **out)
{
	bool send = want->op == FAB_OP_SEND;
	struct ofi_op *op;

	pthread_mutex_lock(&od->lock);
	if (ep->failed) {
		pthread_mutex_unlock(&od->lock);
		return -ENOTCONN;
	}
	op = od->free_ops;
	/* a cqe not yet fetched also holds a place in the ring */
	if (!op || (send && !od->nsbuf_free) ||
	    od->nposted + od->ring_len >= od->nops) {
		pthread_mutex_unlock(&od->lock);
		return -EAGAIN;
	}
	od->free_ops = op->next;
	/* under the lock: fab_mem_busy() reads buf and len */
	op->buf = want->buf;
	op->desc = want->desc;
	op->raddr = want->raddr;
	op->key = want->key;
	op->sbuf = send ? od->sbuf_free[--od->nsbuf_free] : -1;
	if (send) {
		op->buf = od->bufs + (size_t)(OFI_NRX + op->sbuf) * FAB_MSG_MAX;
		op->desc = od->bufs_desc;
	}
	op->ep = ep;
	op->owner = ep;
	ep->held++;
	__atomic_add_fetch(&od->held, 1, __ATOMIC_RELAXED);
	op->ctx = want->ctx;
	op->len = want->len;
	op->op = want->op;
	op->again = false;
	op->state = OP_POSTED;
	od->nposted++;
	/*
	 * One timeout for all: appending keeps the list in deadline order.
	 * The tick's time: it may expire a tick early, and saves a clock read.
	 */
	op->deadline = fy_coarse_ns() + od->timeout_ns;
	op->next = &od->posted;
	op->prev = od->posted.prev;
	op->prev->next = op;
	od->posted.prev = op;
	pthread_mutex_unlock(&od->lock);
	*out = op;
	return 0;
}

/* The provider refused the operation: take the slot back. */
static int op_unpost(struct ofi_domain *od, struct ofi_op *op, ssize_t ret)
{
	static const char *const what[] = {
		[FAB_OP_READ] = "fi_read",
		[FAB_OP_WRITE] = "fi_write",
		[FAB_OP_SEND] = "fi_send",
	};

	uint8_t kind = op->op;

	pthread_mutex_lock(&od->lock);
	ofi_op_unlink(od, op);
	fab_ofi_op_free(od, op);
	if (ret == -FI_ENODEV)
		fab_ofi_dev_gone(od);
	pthread_mutex_unlock(&od->lock);
	if (ret == -FI_EAGAIN)
		return -EAGAIN;
	pr_err("%s: %s", what[kind], fi_strerror((int)-ret));
	return ofi_err(ret);
}

/*
 * Post a slot taken by op_get(). ofi_rxm refuses
 * operations (-FI_EAGAIN) while it makes a peer's connection, which only
 * progresses while someone reads the CQ: those are queued and posted again
 * from there (fab_ofi_post_queued()), so that callers never retry for it.
 * Once a connection is up -FI_EAGAIN is a full queue: the caller's -EAGAIN.
 */
static int op_start(struct ofi_domain *od, struct ofi_ep *ep, struct ofi_op *op)
{
	ssize_t ret;
	fi_addr_t fa;

	pthread_mutex_lock(&od->lock);
	if (ep->nqueued) {
		/* behind those already waiting: messages keep their order */
		ofi_op_queue(od, op);
		pthread_mutex_unlock(&od->lock);
		return 0;
	}
	/* renewed under the lock, never while op is held (fab_ofi_reap()) */
	fa = ep->fa;
	pthread_mutex_unlock(&od->lock);
	ret = fab_ofi_op_post(od, op, fa);
	if (!ret) {
		__atomic_store_n(&ep->up, true, __ATOMIC_RELAXED);
		return 0;
	}
	if (ret != -FI_EAGAIN)
		return op_unpost(od, op, ret);
	pthread_mutex_lock(&od->lock);
	/*
	 * Not up yet; or up, but op is all we have in flight there, so the
	 * queue cannot be full: ofi_rxm dials the peer again (verbs after
	 * the peer's process died: its refusals would never end). Queued,
	 * op goes out once the connection is made, or fails at its deadline.
	 */
	if (__atomic_load_n(&ep->up, __ATOMIC_RELAXED) && ep->held > 1) {
		pthread_mutex_unlock(&od->lock);
		return op_unpost(od, op, ret);
	}
	if (op->state == OP_POSTED)
		ofi_op_queue(od, op);
	else /* expired meanwhile, and reported: never posted */
		fab_ofi_op_free(od, op);
	pthread_mutex_unlock(&od->lock);
	return 0;
}

/* The local descriptor for buf, or an error if the provider needs one. */
static int local_desc(struct ofi_domain *od, const void *buf, size_t len,
		      struct fab_mr *mr, void **desc)
{
	*desc = NULL;
	if (!mr)
		return (od->mr_mode & FI_MR_LOCAL) ? -EINVAL : 0;
	if ((const char *)buf < (char *)mr->buf ||
	    (const char *)buf + len > (char *)mr->buf + mr->len)
		return -EINVAL;
	*desc = fi_mr_desc(container_of(mr, struct ofi_mr, base)->mr);
	return 0;
}

/* One-sided read or write: the two differ only in the libfabric call. */
static int ofi_rma(struct fab_ep *e, enum fab_op kind, void *buf, size_t len,
		   struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx)
{
	struct ofi_domain *od = ofi_od(e->d);
	struct ofi_ep *ep = container_of(e, struct ofi_ep, base);
	struct ofi_op want = { .op = kind,
			       .buf = buf,
			       .len = len,
			       .raddr = addr,
			       .key = key,
			       .ctx = ctx };
	struct ofi_op *op;
	int ret;

	ret = local_desc(od, buf, len, mr, &want.desc);
	if (!ret)
		ret = op_get(od, ep, &want, &op);
	if (ret)
		return ret;
	return op_start(od, ep, op);
}

static int ofi_read(struct fab_ep *e, void *buf, size_t len, struct fab_mr *mr,
		    uint64_t addr, uint64_t key, void *ctx)
{
	return ofi_rma(e, FAB_OP_READ, buf, len, mr, addr, key, ctx);
}

static int ofi_write(struct fab_ep *e, const void *buf, size_t len,
		     struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx)
{
	/* fi_write only reads buf; one signature serves both directions */
	return ofi_rma(e, FAB_OP_WRITE, (void *)buf, len, mr, addr, key, ctx);
}

static int ofi_send(struct fab_ep *e, const void *buf, size_t len, void *ctx)
{
	struct ofi_domain *od = ofi_od(e->d);
	struct ofi_ep *ep = container_of(e, struct ofi_ep, base);
	struct ofi_op want = { .op = FAB_OP_SEND, .len = len, .ctx = ctx };
	struct ofi_op *op;
	int ret;

	ret = op_get(od, ep, &want, &op);
	if (ret)
		return ret;
	/* the bounce buffer is ours until op_start() posts it */
	memcpy(op->buf, buf, len);
	return op_start(od, ep, op);
}

/* the domain (opened and closed in fab_ofi_domain.c) */

static const char *ofi_provider(const struct fab_domain *d)
{
	return ofi_od(d)->provider;
}

static void ofi_addr(const struct fab_domain *d, struct fab_addr *out)
{
	*out = ofi_od(d)->addr;
}

static uint64_t ofi_progress_cpu_ns(const struct fab_domain *d)
{
	struct ofi_domain *od = ofi_od(d);
	struct timespec ts;

	if (!od->pt_running || clock_gettime(od->pt_clock, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * NSEC + ts.tv_nsec;
}

const struct fab_ops fab_ofi_ops = {
	.name = "ofi",
	.open = fab_ofi_open,
	.provider = ofi_provider,
	.addr = ofi_addr,
	.progress_cpu_ns = ofi_progress_cpu_ns,
	.reg_mr = ofi_reg_mr,
	.dereg_mr = ofi_dereg_mr,
	.connect = ofi_connect,
	.ep_close = ofi_ep_close,
	.read = ofi_read,
	.write = ofi_write,
	.send = ofi_send,
	.poll = fab_ofi_poll,
	.mem_busy = fab_ofi_mem_busy,
	.close = fab_ofi_close,
};
