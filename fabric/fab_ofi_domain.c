// SPDX-License-Identifier: MIT
/*
 * libfabric backend: opening and closing a domain. Open asks fi_getinfo()
 * for an RDM endpoint of the provider (the MSG providers tcp and verbs
 * through ofi_rxm), checks that the fabric listens on the configured
 * address and nowhere else, opens the CQ, the AV and the endpoint, makes
 * the slots, the completion ring and the registered message buffers, posts
 * the receives and starts the progress thread. Close takes all of it down
 * in reverse, first taking back what the provider still holds.
 *
 * Memory, endpoints and posting are in fab_ofi.c, completions and
 * progress in fab_ofi_cq.c; see also docs/fabric.md.
 */
#define LOG_PREFIX "fabric: "

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* first: it orders common/util.h before rdma/fabric.h */
#include "fabric/fab_ofi.h"

#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#include "common/log.h"

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
	od->verbs = !strncmp(od->provider, "ofi:verbs", 9);
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
	ret = fab_ofi_mr_make(od, od->bufs, sz, FI_SEND | FI_RECV,
			      &od->bufs_mr);
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

int fab_ofi_open(const char *prov, const struct fab_opts *in,
		 struct fab_domain **out)
{
	char ip[INET6_ADDRSTRLEN];
	struct fab_opts o = *in, *opts = &o;
	struct ofi_domain *od;
	pthread_condattr_t ca;
	int ret;

	/*
	 * ofi:verbs without node (fab.c gives the others 127.0.0.1, on no
	 * RDMA device): the address the verbs backend would bind.
	 */
	if (!o.node) {
		ret = fab_verbs_auto_node(&o, ip, sizeof(ip));
		if (ret)
			return ret;
		o.node = ip;
	}
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
	fab_park_init(&od->park);
	/* deadlines come from CLOCK_MONOTONIC (fy_now_ns) */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&od->cond, &ca);
	pthread_condattr_destroy(&ca);
	/*
	 * Without it fi_av_remove() leaves ofi_rxm's connection in place, and
	 * a connection that failed once (peer died, rejected a key) would
	 * fail every later operation to that address. The user's setting wins.
	 */
	setenv("FI_AV_REMOVE_CLEANUP", "1", 0);
	/*
	 * ofi_rxm sizes its verbs CQ (128 + 128) x the universe size (256 by
	 * default): 65536 entries, more than rxe allows (32767), so the
	 * endpoint would not open. ferry talks to a few peers. Read once,
	 * at the process's first libfabric call (docs/rdma.md).
	 */
	if (!strcmp(prov, "verbs"))
		setenv("FI_UNIVERSE_SIZE", "64", 0);
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
	/*
	 * Registrations must be local too (FI_MR_LOCAL): a hardware
	 * provider, whose registrations pin (verbs; even with
	 * FI_VERBS_USE_ODP we cannot tell whether the device pages on
	 * demand, so we take it as pinning). tcp and shm ask nothing.
	 */
	od->base.pins = od->mr_mode & FI_MR_LOCAL;
	/*
	 * tcp answers a peer's read from our process, and goes on with an
	 * answer it began after the registration went: keep such memory
	 * until the reads that came before are past their deadline, which
	 * their reader set (taken as ours; twice, for the time on the way).
	 * verbs' device and shm's reader copy it themselves.
	 */
	if (!od->verbs && strncmp(od->provider, "ofi:shm", 7))
		od->base.serve_late_ns = 2 * od->timeout_ns;
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
	/* fab_ofi_close() takes half-built domains */
	fab_ofi_close(&od->base);
	return ret;
}

void fab_ofi_close(struct fab_domain *d)
{
	struct ofi_domain *od = ofi_od(d);
	uint64_t one = 1, drain_ns = od->timeout_ns ? od->timeout_ns : 2 * NSEC;

	if (od->pt_running) {
		__atomic_store_n(&od->stop, 1, __ATOMIC_RELEASE);
		fab_park_wake(&od->park);
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

		fab_ofi_ep_abandon(od, ep);
		free(ep);
	}
	/* closing the endpoint flushes what is still posted */
	if (od->ep && !od->dev_gone)
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
		if (!od->dev_gone)
			fi_close(&m->mr->fid);
		free(m);
	}
	if (od->dev_gone) {
		pr_warn("%s: device gone: its libfabric objects are leaked",
			od->provider);
	} else {
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
	}
	if (od->info)
		fi_freeinfo(od->info);
	if (od->kick_fd >= 0)
		close(od->kick_fd);
	pthread_cond_destroy(&od->cond);
	pthread_mutex_destroy(&od->lock);
	fab_park_destroy(&od->park);
	free(od->bufs);
	free(od->ring);
	free(od->ops);
	free(od);
}
