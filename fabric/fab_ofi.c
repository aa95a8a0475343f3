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
 * Completions and progress live in fab_ofi_cq.c; see also docs/fabric.md.
 */
#define LOG_PREFIX "fabric: "

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* first: it orders common/util.h before rdma/fabric.h */
#include "fabric/fabric_int.h"

#include <rdma/fi_cm.h>
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

static int mr_make(struct ofi_domain *od, void *buf, size_t len,
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
	ret = mr_make(od, buf, len, fa, &m->mr);
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

static int ofi_connect(struct fab_domain *d, const struct fab_addr *peer,
		       struct fab_ep **out)
{
	struct ofi_domain *od = ofi_od(d);
	uint8_t a[FAB_ADDR_MAX + 1] = { 0 };
	struct ofi_ep *ep;
	int ret;

	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	/* string address formats (shm) need the terminating NUL */
	memcpy(a, peer->bytes, peer->len);
	ret = fi_av_insert(od->av, a, 1, &ep->fa, 0, NULL);
	if (ret != 1) {
		pr_err("fi_av_insert: %s",
		       ret < 0 ? fi_strerror(-ret) : "address rejected");
		free(ep);
		return ret < 0 ? ofi_err(ret) : -EINVAL;
	}
	pthread_mutex_lock(&od->lock);
	ep->next = od->eps.next;
	ep->prev = &od->eps;
	ep->next->prev = ep;
	od->eps.next = ep;
	pthread_mutex_unlock(&od->lock);
	*out = &ep->base;
	return 0;
}

/* Report ep's posted operations as cancelled and forget ep; lock held. */
static void ep_abandon(struct ofi_domain *od, struct ofi_ep *ep)
{
	struct ofi_op *op, *next;

	for (op = od->posted.next; op != &od->posted; op = next) {
		next = op->next;
		if (op->ep != ep)
			continue;
		struct fab_cqe c = {
			.ctx = op->ctx,
			.ep = &ep->base,
			.op = op->op,
			.status = -ECANCELED,
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
	ep->prev->next = ep->next;
	ep->next->prev = ep->prev;
}

static void ep_remove(struct ofi_domain *od, struct ofi_ep *ep)
{
	/* the provider drops the connection (FI_AV_REMOVE_CLEANUP) */
	int ret = fi_av_remove(od->av, &ep->fa, 1, 0);

	if (ret)
		pr_warn("fi_av_remove: %s", fi_strerror(-ret));
	free(ep);
}

void fab_ofi_reap(struct ofi_domain *od)
{
	struct ofi_ep *ep;

	if (!__atomic_load_n(&od->reap, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&od->lock);
	ep = od->reap;
	__atomic_store_n(&od->reap, NULL, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&od->lock);
	while (ep) {
		struct ofi_ep *next = ep->next;

		ep_remove(od, ep);
		ep = next;
	}
}

static void ofi_ep_close(struct fab_ep *e)
{
	struct ofi_domain *od = ofi_od(e->d);
	struct ofi_ep *ep = container_of(e, struct ofi_ep, base);
	bool held;

	pthread_mutex_lock(&od->lock);
	ep_abandon(od, ep);
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
	}
	pthread_mutex_unlock(&od->lock);
	if (!held)
		ep_remove(od, ep);
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
	op->state = OP_POSTED;
	od->nposted++;
	/* one timeout for all: appending keeps the list in deadline order */
	op->deadline = fy_now_ns() + od->timeout_ns;
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
	pthread_mutex_unlock(&od->lock);
	if (ret == -FI_EAGAIN)
		return -EAGAIN;
	pr_err("%s: %s", what[kind], fi_strerror((int)-ret));
	return ofi_err(ret);
}

/* Queue a POSTED slot the provider has not seen; lock held. */
static void op_queue(struct ofi_domain *od, struct ofi_op *op)
{
	op->state = OP_QUEUED;
	op->ep->nqueued++;
	__atomic_store_n(&od->nqueued, od->nqueued + 1, __ATOMIC_RELAXED);
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

	pthread_mutex_lock(&od->lock);
	if (ep->nqueued) {
		/* behind those already waiting: messages keep their order */
		op_queue(od, op);
		pthread_mutex_unlock(&od->lock);
		return 0;
	}
	pthread_mutex_unlock(&od->lock);
	ret = fab_ofi_op_post(od, op);
	if (!ret) {
		__atomic_store_n(&ep->up, true, __ATOMIC_RELAXED);
		return 0;
	}
	if (ret == -FI_EAGAIN && !__atomic_load_n(&ep->up, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&od->lock);
		if (op->state == OP_POSTED)
			op_queue(od, op);
		else /* expired meanwhile, and reported: never posted */
			fab_ofi_op_free(od, op);
		pthread_mutex_unlock(&od->lock);
		return 0;
	}
	return op_unpost(od, op, ret);
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

/* open and close */

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

static struct fi_info *ofi_hints(const char *prov, bool source)
{
	struct fi_info *h = fi_allocinfo();

	if (!h)
		return NULL;
	h->ep_attr->type = FI_EP_RDM;
	h->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ |
		  FI_REMOTE_WRITE | FI_SEND | FI_RECV;
	if (source)
		h->caps |= FI_SOURCE;
	/* every slot carries an fi_context2 */
	h->mode = FI_CONTEXT | FI_CONTEXT2;
	h->domain_attr->mr_mode = OFI_MR_MODES;
	/* the progress thread and the application share the domain */
	h->domain_attr->threading = FI_THREAD_SAFE;
	h->fabric_attr->prov_name = strdup(prov);
	if (!h->fabric_attr->prov_name) {
		fi_freeinfo(h);
		return NULL;
	}
	return h;
}

/* "tcp" and "verbs" are MSG providers: use them through ofi_rxm */
static const char *ofi_prov_name(const char *prov)
{
	if (!strcmp(prov, "tcp"))
		return "tcp;ofi_rxm";
	if (!strcmp(prov, "verbs"))
		return "verbs;ofi_rxm";
	return prov;
}

/*
 * The fabric listens on the configured address and nowhere else. libfabric's
 * tcp (1.17) quietly binds a wildcard node (0.0.0.0, ::) to loopback
 * instead, which peers cannot reach: a wildcard is refused. After the
 * endpoint is up, the address it got must be one the node resolves to.
 */
static bool sa_wildcard(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(
			&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

static bool sa_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr,
			       sizeof(struct in6_addr));
	return false;
}

/* bound: the endpoint's address, or NULL before it exists */
static int ofi_check_node(const char *node, const struct sockaddr *bound)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	char got[INET6_ADDRSTRLEN] = "?";
	bool found = false;
	int ret;

	ret = getaddrinfo(node, NULL, &hints, &res);
	if (ret) {
		pr_err("fabric address '%s': %s", node, gai_strerror(ret));
		return -EADDRNOTAVAIL;
	}
	for (ai = res; ai && !ret; ai = ai->ai_next) {
		if (sa_wildcard(ai->ai_addr)) {
			pr_err("fabric address '%s' is a wildcard: give the "
			       "address of one interface",
			       node);
			ret = -EINVAL;
		}
		if (bound && sa_same_host(ai->ai_addr, bound))
			found = true;
	}
	freeaddrinfo(res);
	if (ret || !bound || found)
		return ret;
	if (bound->sa_family == AF_INET)
		inet_ntop(AF_INET,
			  &((const struct sockaddr_in *)bound)->sin_addr, got,
			  sizeof(got));
	else if (bound->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)bound)->sin6_addr, got,
			  sizeof(got));
	pr_err("fabric endpoint bound to %s, not to '%s'", got, node);
	return -EADDRNOTAVAIL;
}

static int ofi_getinfo(struct ofi_domain *od, const char *prov,
		       const struct fab_opts *opts)
{
	const char *name = ofi_prov_name(prov);
	/* shm addresses are names, not IP addresses */
	bool ip = strncmp(name, "shm", 3) != 0;
	int ret = -FI_ENODATA, source;

	if (ip) {
		ret = ofi_check_node(opts->node, NULL);
		if (ret)
			return ret;
		ret = -FI_ENODATA;
	}
	for (source = 1; source >= 0 && ret == -FI_ENODATA; source--) {
		struct fi_info *h = ofi_hints(name, source);

		if (!h)
			return -ENOMEM;
		ret = fi_getinfo(OFI_VERSION, ip ? opts->node : NULL,
				 ip ? opts->service : NULL, ip ? FI_SOURCE : 0,
				 h, &od->info);
		fi_freeinfo(h);
		od->has_source = source;
	}
	if (ret == -FI_ENODATA) {
		pr_err("libfabric provider '%s' not available here", name);
		return -ENODATA;
	}
	if (ret) {
		pr_err("fi_getinfo(%s): %s", name, fi_strerror(-ret));
		return ofi_err(ret);
	}
	od->mr_mode = od->info->domain_attr->mr_mode;
	od->key_size = od->info->domain_attr->mr_key_size;
	if (!od->key_size || od->key_size > sizeof(uint64_t))
		od->key_size = sizeof(uint64_t);
	if (od->mr_mode & ~OFI_MR_MODES)
		pr_warn("provider asks mr_mode bits %#llx we did not offer",
			(unsigned long long)(od->mr_mode & ~OFI_MR_MODES));
	snprintf(od->provider, sizeof(od->provider), "ofi:%s",
		 od->info->fabric_attr->prov_name);
	pr_debug("%s: mr_mode %#llx, %zu-byte keys%s", od->provider,
		 (unsigned long long)od->mr_mode, od->key_size,
		 od->has_source ? ", FI_SOURCE" : "");
	return 0;
}

static int ofi_open_cq(struct ofi_domain *od)
{
	struct fi_cq_attr attr = {
		.format = FI_CQ_FORMAT_MSG,
		.size = od->nops + OFI_NRX + 64,
		.wait_obj = FI_WAIT_FD,
	};
	int ret;

	ret = fi_cq_open(od->domain, &attr, &od->cq, NULL);
	if (ret) {
		/* no fd to block on: progress then polls with short sleeps */
		attr.wait_obj = FI_WAIT_NONE;
		ret = fi_cq_open(od->domain, &attr, &od->cq, NULL);
		if (ret) {
			pr_err("fi_cq_open: %s", fi_strerror(-ret));
			return ofi_err(ret);
		}
		return 0;
	}
	if (fi_control(&od->cq->fid, FI_GETWAIT, &od->wait_fd)) {
		pr_debug("%s: no CQ wait fd", od->provider);
		od->wait_fd = -1;
	}
	return 0;
}

static int ofi_open_ep(struct ofi_domain *od)
{
	struct fi_av_attr av_attr = { .type = FI_AV_UNSPEC };
	size_t alen = FAB_ADDR_MAX;
	int ret;

	ret = fi_av_open(od->domain, &av_attr, &od->av, NULL);
	if (ret) {
		pr_err("fi_av_open: %s", fi_strerror(-ret));
		return ofi_err(ret);
	}
	ret = fi_endpoint(od->domain, od->info, &od->ep, NULL);
	if (ret) {
		pr_err("fi_endpoint: %s", fi_strerror(-ret));
		return ofi_err(ret);
	}
	ret = fi_ep_bind(od->ep, &od->av->fid, 0);
	if (!ret)
		ret = fi_ep_bind(od->ep, &od->cq->fid, FI_TRANSMIT | FI_RECV);
	if (!ret)
		ret = fi_enable(od->ep);
	if (ret) {
		pr_err("endpoint setup: %s", fi_strerror(-ret));
		return ofi_err(ret);
	}
	ret = fi_getname(&od->ep->fid, od->addr.bytes, &alen);
	if (ret) {
		pr_err("fi_getname: %s", fi_strerror(-ret));
		return ofi_err(ret);
	}
	od->addr.len = (uint32_t)alen;
	return 0;
}

/* An IP endpoint: its address must be the node's (ofi_check_node()). */
static int ofi_check_bound(const struct ofi_domain *od, const char *node)
{
	const struct sockaddr *sa = (const void *)od->addr.bytes;

	switch (od->info->addr_format) {
	case FI_SOCKADDR:
	case FI_SOCKADDR_IN:
	case FI_SOCKADDR_IN6:
		break;
	default:
		return 0;
	}
	if (od->addr.len < sizeof(struct sockaddr_in) ||
	    (sa->sa_family == AF_INET6 &&
	     od->addr.len < sizeof(struct sockaddr_in6)))
		return 0;
	return ofi_check_node(node, sa);
}

/* Slots, completion ring, message buffers; then post the receives. */
static int ofi_open_bufs(struct ofi_domain *od)
{
	size_t sz = (size_t)(OFI_NRX + OFI_NSBUF) * FAB_MSG_MAX;
	unsigned i;
	int ret;

	od->ops = calloc(od->nops, sizeof(*od->ops));
	od->ring_cap = od->nops + OFI_NRX;
	od->ring = calloc(od->ring_cap, sizeof(*od->ring));
	if (!od->ops || !od->ring ||
	    posix_memalign((void **)&od->bufs, 4096, sz))
		return -ENOMEM;
	for (i = od->nops; i-- > 0;) {
		od->ops[i].sbuf = -1;
		od->ops[i].next = od->free_ops;
		od->free_ops = &od->ops[i];
	}
	for (i = 0; i < OFI_NSBUF; i++)
		od->sbuf_free[od->nsbuf_free++] = i;
	ret = mr_make(od, od->bufs, sz, FI_SEND | FI_RECV, &od->bufs_mr);
	if (ret)
		return ret;
	od->bufs_desc = fi_mr_desc(od->bufs_mr);
	for (i = 0; i < OFI_NRX; i++) {
		od->rx[i].buf = od->bufs + (size_t)i * FAB_MSG_MAX;
		ret = fab_ofi_post_rx(od, &od->rx[i]);
		if (ret)
			return ret;
	}
	return 0;
}

static int ofi_start_progress(struct ofi_domain *od)
{
	int ret;

	ret = pthread_create(&od->pt, NULL, fab_ofi_progress, od);
	if (ret) {
		pr_err("progress thread: %s", strerror(ret));
		return -ret;
	}
	pthread_setname_np(od->pt, "ferry-progress");
	od->pt_running = true;
	if (pthread_getcpuclockid(od->pt, &od->pt_clock))
		od->pt_clock = CLOCK_THREAD_CPUTIME_ID;
	return 0;
}

static void ofi_close(struct fab_domain *d);

static int ofi_open(const char *prov, const struct fab_opts *opts,
		    struct fab_domain **out)
{
	struct ofi_domain *od;
	pthread_condattr_t ca;
	int ret;

	od = calloc(1, sizeof(*od));
	if (!od)
		return -ENOMEM;
	od->base.ops = &fab_ofi_ops;
	fab_release_init(&od->base);
	od->wait_fd = -1;
	od->timeout_ns = (uint64_t)opts->op_timeout_ms * 1000000ULL;
	od->spin_ns = opts->progress_spin_us > 0
			      ? (uint64_t)opts->progress_spin_us * 1000
			      : 0;
	od->posted.next = od->posted.prev = &od->posted;
	od->eps.next = od->eps.prev = &od->eps;
	od->zombies.next = od->zombies.prev = &od->zombies;
	od->mrs.next = od->mrs.prev = &od->mrs;
	pthread_mutex_init(&od->lock, NULL);
	pthread_mutex_init(&od->pt_lock, NULL);
	/* deadlines come from CLOCK_MONOTONIC (fy_now_ns) */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&od->cond, &ca);
	pthread_cond_init(&od->pt_cond, &ca);
	pthread_condattr_destroy(&ca);
	/*
	 * Without it fi_av_remove() leaves ofi_rxm's connection in place, and
	 * a connection that failed once (peer died, rejected a key) would
	 * fail every later operation to that address. The user's setting wins.
	 */
	setenv("FI_AV_REMOVE_CLEANUP", "1", 0);
	od->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (od->kick_fd < 0) {
		pr_perror("eventfd");
		ret = -errno;
		goto err_close;
	}

	ret = ofi_getinfo(od, prov, opts);
	if (ret)
		goto err_close;
	od->nops = FY_MIN(od->info->tx_attr->size, OFI_MAX_OPS);
	ret = ofi_err(fi_fabric(od->info->fabric_attr, &od->fabric, NULL));
	if (!ret)
		ret = ofi_err(
			fi_domain(od->fabric, od->info, &od->domain, NULL));
	if (ret) {
		pr_err("fi_fabric/fi_domain: %s", strerror(-ret));
		goto err_close;
	}
	ret = ofi_open_cq(od);
	if (!ret)
		ret = ofi_open_ep(od);
	if (!ret)
		ret = ofi_check_bound(od, opts->node);
	if (!ret)
		ret = ofi_open_bufs(od);
	if (!ret && opts->progress_thread)
		ret = ofi_start_progress(od);
	if (ret)
		goto err_close;
	*out = &od->base;
	return 0;

err_close:
	/* ofi_close() takes half-built domains */
	ofi_close(&od->base);
	return ret;
}

static void ofi_close(struct fab_domain *d)
{
	struct ofi_domain *od = ofi_od(d);
	uint64_t one = 1, drain_ns = od->timeout_ns ? od->timeout_ns : 2 * NSEC;

	if (od->pt_running) {
		__atomic_store_n(&od->stop, 1, __ATOMIC_RELEASE);
		pthread_mutex_lock(&od->pt_lock);
		pthread_cond_signal(&od->pt_cond);
		pthread_mutex_unlock(&od->pt_lock);
		if (write(od->kick_fd, &one, sizeof(one)) < 0)
			pr_perror("write kick fd");
		pthread_join(od->pt, NULL);
		od->pt_running = false;
	}
	/* queued operations never reached the provider: only free them */
	while (od->nqueued) {
		struct ofi_op *op = od->posted.next;

		while (op->state != OP_QUEUED)
			op = op->next;
		ofi_op_unqueue(od, op);
		ofi_op_unlink(od, op);
		fab_ofi_op_free(od, op);
	}
	/*
	 * ofi_rxm (1.17) crashes in fi_close() of the endpoint below while
	 * the response to a read is still arriving (a stopped peer that
	 * woke up: 2 closes in 30 segfaulted). Take back what the provider
	 * holds first; a peer that stays silent costs one operation timeout.
	 */
	if (od->cq)
		fab_ofi_drain_held(od, fy_now_ns() + drain_ns);
	/* memory handed over while busy: released now, or leaked */
	fab_release_close(&od->base);
	while (od->eps.next && od->eps.next != &od->eps) {
		struct ofi_ep *ep = od->eps.next;

		ep_abandon(od, ep);
		free(ep);
	}
	/* closing the endpoint flushes what is still posted */
	if (od->ep)
		fi_close(&od->ep->fid);
	/* the AV goes below; zombies and released endpoints only free */
	while (od->zombies.next && od->zombies.next != &od->zombies) {
		struct ofi_ep *z = od->zombies.next;

		z->prev->next = z->next;
		z->next->prev = z->prev;
		free(z);
	}
	while (od->reap) {
		struct ofi_ep *z = od->reap;

		od->reap = z->next;
		free(z);
	}
	while (od->mrs.next && od->mrs.next != &od->mrs) {
		struct ofi_mr *m = od->mrs.next;

		m->prev->next = m->next;
		m->next->prev = m->prev;
		fi_close(&m->mr->fid);
		free(m);
	}
	if (od->bufs_mr)
		fi_close(&od->bufs_mr->fid);
	if (od->av)
		fi_close(&od->av->fid);
	if (od->cq)
		fi_close(&od->cq->fid);
	if (od->domain)
		fi_close(&od->domain->fid);
	if (od->fabric)
		fi_close(&od->fabric->fid);
	if (od->info)
		fi_freeinfo(od->info);
	if (od->kick_fd >= 0)
		close(od->kick_fd);
	pthread_cond_destroy(&od->cond);
	pthread_cond_destroy(&od->pt_cond);
	pthread_mutex_destroy(&od->lock);
	pthread_mutex_destroy(&od->pt_lock);
	free(od->bufs);
	free(od->ring);
	free(od->ops);
	free(od);
}

const struct fab_ops fab_ofi_ops = {
	.name = "ofi",
	.open = ofi_open,
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
	.close = ofi_close,
};
