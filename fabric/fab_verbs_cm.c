// SPDX-License-Identifier: MIT
/*
 * rdma-core backend: the domain and its connections.
 *
 * A domain is a librdmacm listener bound to one IP address of one RDMA
 * device (its fab_addr is that sockaddr, port included), a protection
 * domain, one completion queue with a completion channel, and a shared
 * receive queue that every queue pair of the domain draws from.
 *
 * Connections are RC queue pairs made through librdmacm, one per peer:
 *   A: rdma_resolve_addr(B)   -> ADDR_RESOLVED: create the QP,
 *      rdma_resolve_route()   -> ROUTE_RESOLVED: rdma_connect(hello)
 *   B: CONNECT_REQUEST(hello) -> create the QP, rdma_accept()
 *   both: ESTABLISHED         -> operations queued meanwhile are posted
 * The hello in the private data carries A's listener address, so that B's
 * endpoints to A use the same queue pair (the receiver of a message learns
 * its sender from it). Rejected, unreachable, disconnected, or an error
 * completion on it: the connection FAILS (its QP in error, the device
 * flushes what it holds) and is destroyed once nothing uses or holds it.
 * Idle connections stay up for the next endpoint to the same peer.
 *
 * Memory and posting are in fab_verbs.c, completions and progress in
 * fab_verbs_cq.c; see also docs/rdma.md.
 */
#define LOG_PREFIX "fabric: verbs: "

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fabric/fab_verbs.h"

#include "common/log.h"

/* What an active side tells the passive one: its listener's address. */
struct vb_hello {
	uint32_t magic; /* network order */
	uint16_t len; /* network order: bytes of addr used */
	uint8_t addr[sizeof(struct sockaddr_in6)];
} __attribute__((packed));

static void addr_str(const struct fab_addr *a, char *buf, size_t len)
{
	const struct sockaddr *sa = (const void *)a->bytes;
	char ip[INET6_ADDRSTRLEN] = "?";

	if (a->len >= sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;

		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s->sin_port));
	} else if (a->len >= sizeof(struct sockaddr_in6) &&
		   sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)sa;

		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s->sin6_port));
	} else {
		snprintf(buf, len, "(unknown peer)");
	}
}

/* A sockaddr we can connect to: 0, or -EINVAL. */
static int addr_check(const struct fab_addr *a)
{
	const struct sockaddr *sa = (const void *)a->bytes;

	if (a->len == sizeof(struct sockaddr_in) && sa->sa_family == AF_INET)
		return 0;
	if (a->len == sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6)
		return 0;
	return -EINVAL;
}

/* connections */

static struct vb_conn *conn_new(struct vb_domain *vd, struct rdma_cm_id *id,
				bool passive)
{
	struct vb_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->vd = vd;
	c->id = id;
	c->passive = passive;
	c->state = passive ? VC_CONNECTING : VC_RESOLVING;
	id->context = c;
	c->next = vd->conns.next;
	c->prev = &vd->conns;
	c->next->prev = c;
	vd->conns.next = c;
	return c;
}

static int qp_create(struct vb_domain *vd, struct vb_conn *c)
{
	struct ibv_qp_init_attr qa = {
		.qp_context = c, /* a QP event names c (fab_verbs_async.c) */
		.send_cq = vd->cq,
		.recv_cq = vd->cq,
		.srq = vd->srq,
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
		.cap = { .max_send_wr = VB_SQ_DEPTH, .max_send_sge = 1 },
	};

	if (c->id->verbs != vd->ctx) {
		pr_err("a peer is reached through another RDMA device than the "
		       "domain's");
		return -EXDEV;
	}
	if (rdma_create_qp(c->id, vd->pd, &qa)) {
		pr_perror("rdma_create_qp");
		return -errno;
	}
	c->qp_num = c->id->qp->qp_num;
	return 0;
}

int vb_conn_start(struct vb_domain *vd, const struct fab_addr *peer,
		  struct vb_conn **out)
{
	const struct sockaddr *src = (const void *)vd->addr.bytes;
	struct sockaddr_storage any;
	struct rdma_cm_id *id;
	struct vb_conn *c;
	int ret;

	if (addr_check(peer))
		return -EINVAL;
	/* the device went since vb_connect() looked (fab_verbs_reset.c) */
	if (__atomic_load_n(&vd->dev, __ATOMIC_RELAXED) != VD_UP)
		return -ENODEV;
	if (rdma_create_id(vd->ec, &id, NULL, RDMA_PS_TCP)) {
		pr_perror("rdma_create_id");
		return -errno;
	}
	c = conn_new(vd, id, false);
	if (!c) {
		rdma_destroy_id(id);
		return -ENOMEM;
	}
	c->peer = *peer;
	/* from our own address (any port): the same device as the listener */
	memcpy(&any, src, vd->addr.len);
	((struct sockaddr_in *)&any)->sin_port = 0; /* same offset in in6 */
	ret = rdma_resolve_addr(id, (struct sockaddr *)&any,
				(struct sockaddr *)c->peer.bytes,
				VB_RESOLVE_MS);
	if (ret) {
		/* the connection fails at once; its operations say why */
		pr_perror("rdma_resolve_addr");
		vb_conn_fail(vd, c, errno ? -errno : -EHOSTUNREACH);
	}
	*out = c;
	return 0;
}

void vb_conn_fail(struct vb_domain *vd, struct vb_conn *c, int status)
{
	struct ibv_qp_attr qa = { .qp_state = IBV_QPS_ERR };
	bool was_up = c->state == VC_UP;
	struct vb_op *op, *next;
	char peer[80];

	if (c->state == VC_FAILED)
		return;
	addr_str(&c->peer, peer, sizeof(peer));
	if (status == -ECANCELED || (status == -ECONNRESET && !c->held) ||
	    status == -ENETDOWN || status == -ENODEV)
		/*
		 * closed by us, by the peer with nothing in flight, or
		 * the port or device went (logged once, fab_verbs_async.c,
		 * fab_verbs_reset.c)
		 */
		pr_debug("connection to %s closed (%s)", peer,
			 strerror(-status));
	else
		pr_warn("connection to %s failed: %s", peer, strerror(-status));
	c->state = VC_FAILED;
	c->status = status;
	/* queued slots never reached the device: they fail now */
	for (op = vd->live.next; op != &vd->live; op = next) {
		next = op->next;
		if (op->conn == c && op->state == VOP_QUEUED)
			vb_op_abandon(vd, op, status);
	}
	/* the device flushes what it holds; the peer hears of it */
	if (c->id && c->id->qp && ibv_modify_qp(c->id->qp, &qa, IBV_QP_STATE) &&
	    status != -ENODEV)
		pr_warn("cannot put a queue pair in error");
	/*
	 * But not while the link may be down (a read fails for it before
	 * the port says so): rxe (kernel 6.1) can keep a disconnect request
	 * sent then on its management QP for good, and whoever destroys that
	 * cm id after it, or exits holding it, waits in the kernel for ever
	 * (ib_cm logs cm_destroy_id_wait_timeout every 10 s). Such a
	 * connection is destroyed, which tells the peer, VB_TELL_NS after it
	 * failed with its port up (vb_conn_reap()).
	 */
	if (was_up && c->id) {
		if (status == -ENETDOWN || status == -EIO ||
		    __atomic_load_n(&vd->down, __ATOMIC_RELAXED) == -ENETDOWN)
			c->tell_at = fy_coarse_ns() + VB_TELL_NS;
		else
			rdma_disconnect(c->id);
	}
	__atomic_store_n(&vd->reap, true, __ATOMIC_RELAXED);
	vb_wake(vd);
}

/* A connection whose peer is to be told later, not yet (see above). */
static bool tell_later(const struct vb_domain *vd, const struct vb_conn *c)
{
	return c->tell_at && c->id &&
	       (__atomic_load_n(&vd->down, __ATOMIC_RELAXED) == -ENETDOWN ||
		fy_coarse_ns() < c->tell_at);
}

struct vb_conn *vb_conn_reap(struct vb_domain *vd)
{
	struct vb_conn *c, *next, *dead = NULL;

	if (!__atomic_exchange_n(&vd->reap, false, __ATOMIC_RELAXED))
		return NULL;
	for (c = vd->conns.next; c != &vd->conns; c = next) {
		next = c->next;
		if (c->state != VC_FAILED || c->eps || c->held)
			continue;
		if (tell_later(vd, c)) {
			/* looked at again on the next pass */
			__atomic_store_n(&vd->reap, true, __ATOMIC_RELAXED);
			continue;
		}
		c->prev->next = c->next;
		c->next->prev = c->prev;
		/* its late events find no connection (cm_event()) */
		if (c->id)
			c->id->context = NULL;
		c->next = dead;
		dead = c;
	}
	return dead;
}

/*
 * rdma_destroy_id() of a connection that was up sends a disconnect
 * request and waits in the kernel (ib_cm, unkillable) until that is
 * done: with the link down, for a minute or more (for ever on rxe, see
 * vb_conn_fail()). So it runs without the domain's lock, and in the
 * progress thread where there is one.
 */
void vb_conns_destroy(struct vb_conn *dead)
{
	struct vb_conn *c, *next;

	for (c = dead; c; c = next) {
		next = c->next;
		if (c->id && c->id->qp)
			rdma_destroy_qp(c->id);
		if (c->id)
			rdma_destroy_id(c->id);
		free(c);
	}
}

/* connection manager events */

/* The passive side: a peer connects. Returns true if ev->id must go. */
static bool cm_accept(struct vb_domain *vd, struct rdma_cm_event *ev)
{
	const struct rdma_conn_param *p = &ev->param.conn;
	struct rdma_conn_param ap = { .rnr_retry_count = 7 };
	struct vb_hello h;
	struct vb_conn *c;
	struct fab_addr peer = { 0 };

	if (p->private_data_len < sizeof(h) || !p->private_data) {
		pr_warn("connect request without ferry's hello: rejected");
		rdma_reject(ev->id, NULL, 0);
		return true;
	}
	memcpy(&h, p->private_data, sizeof(h));
	peer.len = ntohs(h.len);
	if (ntohl(h.magic) != VB_CONN_MAGIC || peer.len > sizeof(h.addr)) {
		pr_warn("connect request with a malformed hello: rejected");
		rdma_reject(ev->id, NULL, 0);
		return true;
	}
	memcpy(peer.bytes, h.addr, peer.len);
	if (__atomic_load_n(&vd->dev, __ATOMIC_RELAXED) != VD_UP) {
		rdma_reject(ev->id, NULL, 0);
		return true;
	}
	if (addr_check(&peer)) {
		pr_warn("connect request naming no IP address: rejected");
		rdma_reject(ev->id, NULL, 0);
		return true;
	}
	c = conn_new(vd, ev->id, true);
	if (!c) {
		rdma_reject(ev->id, NULL, 0);
		return true;
	}
	c->peer = peer;
	ap.responder_resources = FY_MIN(p->initiator_depth, vd->rd_atom);
	ap.initiator_depth = FY_MIN(p->responder_resources, vd->rd_atom);
	if (qp_create(vd, c) || rdma_accept(ev->id, &ap)) {
		pr_warn("cannot accept a connection");
		rdma_reject(ev->id, NULL, 0);
		c->state = VC_FAILED;
		c->status = -ECONNABORTED;
		__atomic_store_n(&vd->reap, true, __ATOMIC_RELAXED);
	}
	return false;
}

/* The active side: address resolved, then route resolved. */
static void cm_resolved(struct vb_domain *vd, struct vb_conn *c, bool route)
{
	struct vb_hello h = { .magic = htonl(VB_CONN_MAGIC) };
	struct rdma_conn_param cp = {
		.private_data = &h,
		.private_data_len = sizeof(h),
		.responder_resources = vd->rd_atom,
		.initiator_depth = vd->rd_atom,
		.retry_count = 7,
		.rnr_retry_count = 7, /* a peer out of receive buffers: wait */
	};
	int ret;

	if (c->state != VC_RESOLVING)
		return;
	if (!route) {
		ret = qp_create(vd, c);
		if (!ret && rdma_resolve_route(c->id, VB_RESOLVE_MS)) {
			pr_perror("rdma_resolve_route");
			ret = -errno;
		}
		if (ret)
			vb_conn_fail(vd, c, ret);
		return;
	}
	h.len = htons((uint16_t)vd->addr.len);
	memcpy(h.addr, vd->addr.bytes, vd->addr.len);
	if (rdma_connect(c->id, &cp)) {
		pr_perror("rdma_connect");
		vb_conn_fail(vd, c, -errno);
		return;
	}
	c->state = VC_CONNECTING;
}

/* What a connection manager event that ends a connection means. */
static int cm_status(enum rdma_cm_event_type t)
{
	switch (t) {
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_ROUTE_ERROR:
		return -ENETUNREACH;
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_CONNECT_ERROR:
		return -ECONNABORTED;
	case RDMA_CM_EVENT_DISCONNECTED:
		return -ECONNRESET;
	default:
		return 0;
	}
}

/* One event; returns true if ev->id must be destroyed after the ack. */
static bool cm_event(struct vb_domain *vd, struct rdma_cm_event *ev)
{
	struct vb_conn *c = ev->id->context;
	int status;

	if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST)
		return cm_accept(vd, ev);
	/* on the listener or any connection: the domain's whole device */
	if (ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL) {
		vb_dev_lost(vd);
		return false;
	}
	if (!c)
		return false;
	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		cm_resolved(vd, c, false);
		return false;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		cm_resolved(vd, c, true);
		return false;
	case RDMA_CM_EVENT_ESTABLISHED:
		if (c->state == VC_CONNECTING)
			c->state = VC_UP; /* queued slots go out now */
		return false;
	default:
		break;
	}
	status = cm_status(ev->event);
	if (status) {
		if (ev->event == RDMA_CM_EVENT_REJECTED && ev->status)
			pr_debug("rejected, status %d", ev->status);
		vb_conn_fail(vd, c, status);
	}
	return false;
}

int vb_cm_events(struct vb_domain *vd)
{
	struct rdma_cm_event *ev;
	struct rdma_cm_id *gone;
	int n = 0;

	while (!rdma_get_cm_event(vd->ec, &ev)) {
		pr_debug("%s, status %d", rdma_event_str(ev->event),
			 ev->status);
		gone = cm_event(vd, ev) ? ev->id : NULL;
		rdma_ack_cm_event(ev);
		if (gone)
			rdma_destroy_id(gone);
		n++;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK) {
		pr_perror("rdma_get_cm_event");
		return -errno;
	}
	return n;
}
