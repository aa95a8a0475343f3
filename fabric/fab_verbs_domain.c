// SPDX-License-Identifier: MIT
/*
 * rdma-core backend: opening and closing a domain. Open picks the address
 * (the configured node, or the IPv4 address of a GID entry of the chosen
 * device and port), binds a librdmacm listener to it, which picks the
 * device, then makes the protection domain, the completion channel and
 * queue, the shared receive queue, the registered message buffers, posts
 * the receives and starts the progress thread. Close takes all of it down
 * in reverse, first taking back what the device still holds.
 *
 * Connections are in fab_verbs_cm.c; see also docs/rdma.md.
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

/* address selection */

/* An IPv4-mapped GID (::ffff:a.b.c.d, as RoCE v2 keeps IPv4 addresses). */
static bool gid_ipv4(const union ibv_gid *g, char *ip, size_t len)
{
	static const uint8_t pfx[12] = { [10] = 0xff, [11] = 0xff };

	if (memcmp(g->raw, pfx, sizeof(pfx)))
		return false;
	return inet_ntop(AF_INET, &g->raw[12], ip, (socklen_t)len) != NULL;
}

/* The address of a GID entry of one port of ctx; 0 or -ENOENT. */
static int port_addr(struct ibv_context *ctx, unsigned port,
		     const struct fab_opts *o, int gid_len, char *ip,
		     size_t len)
{
	struct ibv_gid_entry e;
	int i, first = 0, last = gid_len - 1;

	if (o->verbs_gid) {
		first = last = (int)o->verbs_gid - 1;
		if (first >= gid_len)
			return -ENOENT;
	}
	for (i = first; i <= last; i++) {
		if (ibv_query_gid_ex(ctx, port, (uint32_t)i, &e, 0))
			continue;
		if (!o->verbs_gid && e.gid_type != IBV_GID_TYPE_ROCE_V2)
			continue;
		if (gid_ipv4(&e.gid, ip, len)) {
			pr_debug("%s port %u GID %d: %s",
				 ibv_get_device_name(ctx->device), port, i, ip);
			return 0;
		}
	}
	return -ENOENT;
}

/* The address of the first active port (or the chosen one) of a device. */
static int dev_addr(struct ibv_device *dev, const struct fab_opts *o, char *ip,
		    size_t len)
{
	struct ibv_context *ctx = ibv_open_device(dev);
	struct ibv_device_attr da;
	struct ibv_port_attr pa;
	int ret = -ENOENT;
	unsigned p;

	if (!ctx)
		return -ENOENT;
	if (ibv_query_device(ctx, &da))
		goto out;
	for (p = 1; p <= da.phys_port_cnt && ret; p++) {
		if (o->verbs_port && p != o->verbs_port)
			continue;
		if (ibv_query_port(ctx, (uint8_t)p, &pa))
			continue;
		if (pa.state != IBV_PORT_ACTIVE && !o->verbs_port)
			continue;
		ret = port_addr(ctx, p, o, pa.gid_tbl_len, ip, len);
	}
out:
	ibv_close_device(ctx);
	return ret;
}

/*
 * node NULL: the address of the device, port and GID entry chosen. Also
 * ofi:verbs' default address (fab_ofi_domain.c).
 */
int fab_verbs_auto_node(const struct fab_opts *o, char *ip, size_t len)
{
	struct ibv_device **list;
	int n, i, ret = -ENOENT;
	bool seen = false;

	list = ibv_get_device_list(&n);
	if (!list || !n) {
		pr_err("no RDMA device here (see docs/rdma.md)");
		if (list)
			ibv_free_device_list(list);
		return -ENODATA;
	}
	for (i = 0; i < n && ret; i++) {
		const char *name = ibv_get_device_name(list[i]);

		if (o->verbs_device && strcmp(name, o->verbs_device))
			continue;
		seen = true;
		ret = dev_addr(list[i], o, ip, len);
	}
	ibv_free_device_list(list);
	if (!seen) {
		pr_err("no RDMA device '%s' here", o->verbs_device);
		return -ENODATA;
	}
	if (ret)
		pr_err("no IPv4 address in the GID table of %s%s (port %u, GID "
		       "index %d): configure the fabric address",
		       o->verbs_device ? o->verbs_device : "any RDMA device",
		       o->verbs_port ? "" : " (active ports)", o->verbs_port,
		       (int)o->verbs_gid - 1);
	return ret ? -EADDRNOTAVAIL : 0;
}

/* Bind the listener to node:service, on an RDMA device. */
static int listen_on(struct vb_domain *vd, const struct fab_opts *o,
		     const char *node)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	socklen_t alen;
	int ret;

	ret = getaddrinfo(node, o->service, &hints, &res);
	if (ret) {
		pr_err("fabric address '%s': %s", node, gai_strerror(ret));
		return -EADDRNOTAVAIL;
	}
	if (rdma_create_id(vd->ec, &vd->listen, NULL, RDMA_PS_TCP)) {
		ret = -errno;
		pr_perror("rdma_create_id");
	} else if (rdma_bind_addr(vd->listen, res->ai_addr)) {
		ret = -errno;
		pr_perror("binding to %s", node);
	}
	freeaddrinfo(res);
	if (ret)
		return ret;
	if (!vd->listen->verbs) {
		pr_err("fabric address '%s' is on no RDMA device (a wildcard "
		       "or loopback address will not do)",
		       node);
		return -ENODATA;
	}
	if (rdma_listen(vd->listen, 64)) {
		pr_perror("rdma_listen");
		return -errno;
	}
	alen = vd->listen->route.addr.src_addr.sa_family == AF_INET6
		       ? sizeof(struct sockaddr_in6)
		       : sizeof(struct sockaddr_in);
	memcpy(vd->addr.bytes, rdma_get_local_addr(vd->listen), alen);
	vd->addr.len = alen;
	return 0;
}

/* The device the listener landed on must be the one asked for. */
static int check_device(struct vb_domain *vd, const struct fab_opts *o,
			const char *node)
{
	const char *name = ibv_get_device_name(vd->ctx->device);
	unsigned port = vd->listen->port_num;

	if ((o->verbs_device && strcmp(o->verbs_device, name)) ||
	    (o->verbs_port && o->verbs_port != port)) {
		pr_err("fabric address '%s' is on %s port %u, not on %s port "
		       "%u",
		       node, name, port,
		       o->verbs_device ? o->verbs_device : name,
		       o->verbs_port ? o->verbs_port : port);
		return -EADDRNOTAVAIL;
	}
	snprintf(vd->provider, sizeof(vd->provider), "verbs:%s:%u", name, port);
	vd->port = (uint8_t)port;
	return 0;
}

/* device resources */

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK)) {
		pr_perror("fcntl(O_NONBLOCK)");
		return -errno;
	}
	return 0;
}

/*
 * What the device offers: read depth and on-demand paging for RC. A
 * device made anew keeps the paging the domain chose first: guest RAM
 * was registered, or bounced, by it (fab_bounce.c).
 */
int vb_query_caps(struct vb_domain *vd, bool first)
{
	const uint32_t need = IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_WRITE;
	struct ibv_device_attr_ex a = { 0 };
	int ret;

	ret = ibv_query_device_ex(vd->ctx, NULL, &a);
	if (ret) {
		pr_err("ibv_query_device_ex: %s", strerror(ret));
		return -ret;
	}
	vd->rd_atom = (uint8_t)FY_MIN(FY_MIN(a.orig_attr.max_qp_rd_atom,
					     a.orig_attr.max_qp_init_rd_atom),
				      VB_RD_ATOM);
	if (!first)
		return 0;
	vd->odp = (a.odp_caps.general_caps & IBV_ODP_SUPPORT) &&
		  (a.odp_caps.per_transport_caps.rc_odp_caps & need) == need;
	vd->base.pins = !vd->odp;
	pr_debug("%s: %s, reads in flight %u", vd->provider,
		 vd->odp ? "on-demand paging" : "pinned registrations",
		 vd->rd_atom);
	return 0;
}

int vb_open_queues(struct vb_domain *vd)
{
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = VB_NRX,
						  .max_sge = 1 } };
	int ret;

	vd->pd = ibv_alloc_pd(vd->ctx);
	if (!vd->pd) {
		pr_perror("ibv_alloc_pd");
		return errno ? -errno : -ENOMEM;
	}
	vd->ch = ibv_create_comp_channel(vd->ctx);
	if (!vd->ch) {
		pr_perror("ibv_create_comp_channel");
		return errno ? -errno : -ENOMEM;
	}
	vd->cq = ibv_create_cq(vd->ctx, VB_MAX_OPS + VB_NRX + 64, NULL, vd->ch,
			       0);
	if (!vd->cq) {
		pr_perror("ibv_create_cq");
		return errno ? -errno : -ENOMEM;
	}
	ret = ibv_req_notify_cq(vd->cq, 0);
	if (ret) {
		pr_err("ibv_req_notify_cq: %s", strerror(ret));
		return -ret;
	}
	vd->srq = ibv_create_srq(vd->pd, &sa);
	if (!vd->srq) {
		pr_perror("ibv_create_srq");
		return errno ? -errno : -ENOMEM;
	}
	ret = set_nonblock(vd->ch->fd);
	if (!ret)
		ret = set_nonblock(vd->ec->fd);
	/* librdmacm's context: other domains of the process read it too */
	return ret ? ret : set_nonblock(vd->ctx->async_fd);
}

/* Slots and message buffers, the receives all due to be posted. */
static int init_bufs(struct vb_domain *vd)
{
	size_t sz = (size_t)(VB_NRX + VB_NSBUF) * FAB_MSG_MAX;
	unsigned i;

	for (i = VB_MAX_OPS; i-- > 0;) {
		vd->ops[i].sbuf = -1;
		vd->ops[i].next = vd->free_ops;
		vd->free_ops = &vd->ops[i];
	}
	for (i = 0; i < VB_NSBUF; i++)
		vd->sbuf_free[vd->nsbuf_free++] = (int)i;
	if (posix_memalign((void **)&vd->bufs, 4096, sz))
		return -ENOMEM;
	for (i = 0; i < VB_NRX; i++) {
		vd->rx[i].buf = vd->bufs + (size_t)i * FAB_MSG_MAX;
		vd->rx[i].repost = true;
	}
	return 0;
}

int vb_open_bufs(struct vb_domain *vd)
{
	size_t sz = (size_t)(VB_NRX + VB_NSBUF) * FAB_MSG_MAX;
	unsigned i;
	int ret;

	vd->bufs_mr = ibv_reg_mr(vd->pd, vd->bufs, sz, IBV_ACCESS_LOCAL_WRITE);
	if (!vd->bufs_mr) {
		pr_perror("ibv_reg_mr(%zu bytes of message buffers)", sz);
		return errno ? -errno : -ENOMEM;
	}
	/* not those lent to the application or waiting in the ring */
	for (i = 0; i < VB_NRX; i++) {
		if (!vd->rx[i].repost)
			continue;
		vd->rx[i].repost = false;
		ret = vb_post_rx(vd, &vd->rx[i]);
		if (ret) {
			vd->rx[i].repost = true;
			return ret;
		}
	}
	return 0;
}

static int start_progress(struct vb_domain *vd)
{
	int ret = pthread_create(&vd->pt, NULL, vb_progress, vd);

	if (ret) {
		pr_err("progress thread: %s", strerror(ret));
		return -ret;
	}
	pthread_setname_np(vd->pt, "ferry-progress");
	vd->pt_running = true;
	if (pthread_getcpuclockid(vd->pt, &vd->pt_clock))
		vd->pt_clock = CLOCK_THREAD_CPUTIME_ID;
	return 0;
}

static void init_lists(struct vb_domain *vd, const struct fab_opts *o)
{
	vd->base.ops = &fab_verbs_ops;
	fab_release_init(&vd->base);
	vd->kick_fd = -1;
	vd->timeout_ns = (uint64_t)o->op_timeout_ms * 1000000ULL;
	vd->spin_ns = o->progress_spin_us > 0
			      ? (uint64_t)o->progress_spin_us * 1000
			      : 0;
	vd->live.next = vd->live.prev = &vd->live;
	vd->conns.next = vd->conns.prev = &vd->conns;
	vd->eps.next = vd->eps.prev = &vd->eps;
	vd->mrs.next = vd->mrs.prev = &vd->mrs;
	pthread_mutex_init(&vd->lock, NULL);
	pthread_rwlock_init(&vd->dev_lock, NULL);
	fab_park_init(&vd->park);
}

int fab_verbs_open(const char *prov, const struct fab_opts *o,
		   struct fab_domain **out)
{
	char ip[INET6_ADDRSTRLEN];
	const char *node = o->node;
	struct vb_domain *vd;
	int ret;

	(void)prov;
	if (!node) {
		ret = fab_verbs_auto_node(o, ip, sizeof(ip));
		if (ret)
			return ret;
		node = ip;
	}
	vd = calloc(1, sizeof(*vd));
	if (!vd)
		return -ENOMEM;
	init_lists(vd, o);
	vd->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (vd->kick_fd < 0) {
		pr_perror("eventfd");
		ret = -errno;
		goto err_close;
	}
	vd->ec = rdma_create_event_channel();
	if (!vd->ec) {
		/* no /dev/infiniband/rdma_cm: no RDMA here */
		pr_err("no RDMA connection manager here (%s; see docs/rdma.md)",
		       strerror(errno));
		ret = -ENODATA;
		goto err_close;
	}
	ret = listen_on(vd, o, node);
	if (!ret) {
		vd->ctx = vd->listen->verbs;
		ret = check_device(vd, o, node);
	}
	if (!ret)
		ret = vb_query_caps(vd, true);
	if (!ret)
		ret = vb_open_queues(vd);
	if (!ret) {
		/* from here on events that say the port changed reach us */
		vb_async_add(vd);
		vd->down = vb_port_down(vd) ? -ENETDOWN : 0;
	}
	if (!ret)
		ret = init_bufs(vd);
	if (!ret)
		ret = vb_open_bufs(vd);
	if (!ret && o->progress_thread)
		ret = start_progress(vd);
	if (ret)
		goto err_close;
	*out = &vd->base;
	return 0;

err_close:
	/* fab_verbs_close() takes half-built domains */
	fab_verbs_close(&vd->base);
	return ret;
}

static void stop_progress(struct vb_domain *vd)
{
	uint64_t one = 1;

	if (!vd->pt_running)
		return;
	__atomic_store_n(&vd->stop, 1, __ATOMIC_RELEASE);
	fab_park_wake(&vd->park);
	if (write(vd->kick_fd, &one, sizeof(one)) < 0)
		pr_perror("write kick fd");
	pthread_join(vd->pt, NULL);
	vd->pt_running = false;
}

void vb_dev_free(struct vb_domain *vd)
{
	struct vb_mr *m;
	unsigned i;

	for (m = vd->mrs.next; m != &vd->mrs; m = m->next) {
		if (m->mr)
			ibv_dereg_mr(m->mr);
		m->mr = NULL;
	}
	/* what the shared receive queue held is posted again on the next */
	for (i = 0; i < VB_NRX; i++)
		if (vd->rx[i].posted) {
			vd->rx[i].posted = false;
			vd->rx[i].repost = true;
		}
	if (vd->bufs_mr)
		ibv_dereg_mr(vd->bufs_mr);
	if (vd->srq)
		ibv_destroy_srq(vd->srq);
	if (vd->cq)
		ibv_destroy_cq(vd->cq);
	if (vd->ch)
		ibv_destroy_comp_channel(vd->ch);
	if (vd->pd)
		ibv_dealloc_pd(vd->pd);
	if (vd->listen)
		rdma_destroy_id(vd->listen);
	vd->bufs_mr = NULL;
	vd->srq = NULL;
	vd->cq = NULL;
	vd->ch = NULL;
	vd->pd = NULL;
	vd->listen = NULL;
	__atomic_store_n(&vd->ctx, NULL, __ATOMIC_RELAXED);
}

/* After the device gave back what it could: free every object. */
static void free_all(struct vb_domain *vd)
{
	while (vd->eps.next != &vd->eps) {
		struct vb_ep *ep = vd->eps.next;

		ep->prev->next = ep->next;
		ep->next->prev = ep->prev;
		free(ep);
	}
	while (vd->conns.next != &vd->conns) {
		struct vb_conn *c = vd->conns.next;

		c->eps = c->held = 0;
		c->state = VC_FAILED;
		c->tell_at = 0; /* closing: now, link or not */
		__atomic_store_n(&vd->reap, true, __ATOMIC_RELAXED);
		vb_conns_destroy(vb_conn_reap(vd));
	}
	while (vd->mrs.next != &vd->mrs) {
		struct vb_mr *m = vd->mrs.next;

		m->prev->next = m->next;
		m->next->prev = m->prev;
		if (m->mr)
			ibv_dereg_mr(m->mr);
		free(m);
	}
}

void fab_verbs_close(struct fab_domain *d)
{
	struct vb_domain *vd = vb_vd(d);
	struct vb_conn *c;

	vb_async_del(vd);
	stop_progress(vd);
	/* a device gone is let go of below, not made anew (reset.c) */
	__atomic_store_n(&vd->stop, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&vd->lock);
	for (c = vd->conns.next; c != &vd->conns; c = c->next)
		vb_conn_fail(vd, c, -ECANCELED);
	pthread_mutex_unlock(&vd->lock);
	if (vd->cq)
		vb_drain_held(vd, fy_now_ns() + (vd->timeout_ns ? vd->timeout_ns
								: 2 * VB_NSEC));
	/* memory handed over while busy: released now, or leaked */
	fab_release_close(&vd->base);
	free_all(vd);
	vb_dev_free(vd);
	/* a device gone: librdmacm lets go of it (fab_verbs_reset.c) */
	if (vd->dev != VD_UP)
		rdma_free_devices(rdma_get_devices(NULL));
	if (vd->ec)
		rdma_destroy_event_channel(vd->ec);
	if (vd->kick_fd >= 0)
		close(vd->kick_fd);
	pthread_mutex_destroy(&vd->lock);
	pthread_rwlock_destroy(&vd->dev_lock);
	fab_park_destroy(&vd->park);
	free(vd->bufs);
	free(vd);
}
