// SPDX-License-Identifier: MIT
/*
 * One ferryd node: its keys, fabric domain, sockets and the control thread.
 *
 * The control thread is a single zmq_poll loop over the signalfd
 * (SIGTERM/SIGINT), the ZAP handler, the peers' ROUTER, the CLI socket and
 * one DEALER per peer; a timer tick every ping_interval_ms sends HELLO or
 * PING to each peer and re-evaluates their states. Nothing in the loop
 * blocks: every send is ZMQ_DONTWAIT.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <zmq.h>

#include "fabric/fabric.h"

#define LOG_PREFIX "ferryd: "
#include "common/util.h"
#include "node/node_int.h"

#define GREET_NS (100 * 1000000ULL)

enum { POLL_SIG, POLL_ZAP, POLL_ROUTER, POLL_CTL, POLL_MIG, POLL_PEERS };

/* What -ENODATA from fab_domain_open() means for this provider. */
static const char *fabric_nodata(const char *provider)
{
	if (!strcmp(provider, "verbs"))
		return " (no RDMA device holds that address: docs/rdma.md)";
	return " (provider not available on this host; see fi_info)";
}

static int fabric_open(struct nd_node *n)
{
	const struct nd_config *cfg = n->cfg;
	struct fab_opts opts;
	struct fab_addr addr;
	int ret;

	nd_config_fab_opts(cfg, &opts);
	opts.service = cfg->fabric_port[0] ? cfg->fabric_port : NULL;
	opts.progress_thread = true;
	ret = fab_domain_open(&opts, &n->fab);
	if (ret) {
		pr_err("cannot open fabric provider '%s' on %s: %s%s",
		       cfg->provider,
		       opts.node ? opts.node : "its default address",
		       strerror(-ret),
		       ret == -ENODATA ? fabric_nodata(cfg->provider) : "");
		return ret;
	}
	snprintf(n->fab_provider, sizeof(n->fab_provider), "%s",
		 fab_domain_provider(n->fab));
	fab_domain_addr(n->fab, &addr);
	n->fab_addr_len = FY_MIN(addr.len, (uint32_t)sizeof(n->fab_addr_raw));
	memcpy(n->fab_addr_raw, addr.bytes, n->fab_addr_len);
	nd_fmt_fab_addr(n->fab_addr_raw, n->fab_addr_len, n->fab_addr,
			sizeof(n->fab_addr));
	return 0;
}

static int signals_open(struct nd_node *n)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	n->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (n->sigfd < 0) {
		pr_perror("signalfd");
		return -errno;
	}
	return 0;
}

int nd_node_open(const struct nd_config *cfg, struct nd_node **out)
{
	struct nd_node *n;
	bool created;
	int ret;

	if (!zmq_has("curve")) {
		pr_err("this libzmq has no CURVE support; ferryd needs it");
		return -ENOTSUP;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		pr_err("out of memory");
		return -ENOMEM;
	}
	n->cfg = cfg;
	n->sigfd = -1;
	n->mig.mig_efd = -1;
	n->vm_dir_fd = -1;
	n->mig.mig_dir_fd = -1;
	n->start_ns = fy_now_ns();

	ret = nd_keys_load_or_create(cfg->state_dir, &n->keys, &created);
	if (ret)
		goto err_close;
	if (created)
		pr_info("generated a new key pair in %s", cfg->state_dir);
	pr_info("node %s, public key %s", cfg->name, n->keys.public_key);

	ret = signals_open(n);
	if (ret)
		goto err_close;
	ret = nd_ctl_prepare(cfg);
	if (ret)
		goto err_close;
	ret = fabric_open(n);
	if (ret)
		goto err_close;

	n->zctx = zmq_ctx_new();
	if (!n->zctx) {
		ret = -errno;
		pr_err("zmq_ctx_new: %s", zmq_strerror(errno));
		goto err_close;
	}
	ret = nd_peers_open(n);
	if (ret)
		goto err_close;
	ret = nd_ctl_open(n);
	if (ret)
		goto err_close;
	n->mig.mig_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->mig.mig_efd < 0) {
		ret = -errno;
		pr_perror("eventfd");
		goto err_close;
	}
	ret = nd_vms_open(n);
	if (ret)
		goto err_close;
	ret = nd_host_open(n);
	if (!ret)
		ret = mig_open(&n->mig);
	if (ret)
		goto err_close;

	n->up = true;
	pr_info("up: listen %s, control %s, fabric %s at %s, %zu peers",
		cfg->listen, cfg->control, n->fab_provider, n->fab_addr,
		n->npeers);
	*out = n;
	return 0;

err_close:
	/* nd_node_close() takes half-built nodes */
	nd_node_close(n);
	return ret;
}

/* Drain the signalfd; SIGTERM or SIGINT ask the loop to stop. */
static void signals_handle(struct nd_node *n)
{
	struct signalfd_siginfo si;

	while (read(n->sigfd, &si, sizeof(si)) == sizeof(si)) {
		pr_info("%s received from pid %u: shutting down",
			strsignal(si.ssi_signo), si.ssi_pid);
		n->stop = true;
	}
}

int nd_node_run(struct nd_node *n)
{
	/* after the fixed items: the peers' DEALERs, then their monitors */
	zmq_pollitem_t items[POLL_PEERS + 2 * ND_PEERS_MAX];
	int nitems = POLL_PEERS + 2 * (int)n->npeers;
	uint64_t tick = n->cfg->ping_interval_ms * 1000000ULL;

	memset(items, 0, sizeof(items));
	items[POLL_SIG].fd = n->sigfd;
	items[POLL_ZAP].socket = n->zap;
	items[POLL_ROUTER].socket = n->router;
	items[POLL_CTL].socket = n->ctl;
	items[POLL_MIG].fd = n->mig.mig_efd;
	for (size_t i = 0; i < n->npeers; i++) {
		items[POLL_PEERS + i].socket = n->peers[i].dealer;
		items[POLL_PEERS + n->npeers + i].socket = n->peers[i].mon;
	}
	for (int i = 0; i < nitems; i++)
		items[i].events = ZMQ_POLLIN;

	n->next_tick_ns = fy_now_ns();
	n->next_greet_ns = n->next_tick_ns + GREET_NS;
	while (!n->stop) {
		uint64_t now = fy_now_ns(), next;
		long timeout;
		int ret;

		if (now >= n->next_tick_ns) {
			nd_peers_tick(n, now);
			n->next_tick_ns += tick;
			/* after a stall, do not fire a burst of ticks */
			if (n->next_tick_ns < now)
				n->next_tick_ns = now + tick;
		}
		/*
		 * Until a peer answers our HELLO, greet it every GREET_MS
		 * rather than every tick: peers starting together then find
		 * each other within a few round trips of their connection.
		 */
		if (n->next_greet_ns && now >= n->next_greet_ns)
			n->next_greet_ns = nd_peers_greet(n) ? now + GREET_NS
							     : 0;
		if (now >= n->mig.next_mig_tick_ns) {
			nd_vms_reap(n);
			mig_tick(&n->mig, now);
		}
		next = n->next_tick_ns;
		if (n->next_greet_ns && n->next_greet_ns < next)
			next = n->next_greet_ns;
		if (n->mig.next_mig_tick_ns < next)
			next = n->mig.next_mig_tick_ns;
		timeout = next > now ? (next - now + 999999) / 1000000 : 0;
		ret = zmq_poll(items, nitems, timeout);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			pr_err("zmq_poll: %s", zmq_strerror(errno));
			return -errno;
		}
		/* ZAP first: a handshake waits on it */
		if (items[POLL_ZAP].revents & ZMQ_POLLIN)
			nd_zap_handle(n);
		if (items[POLL_ROUTER].revents & ZMQ_POLLIN)
			nd_router_handle(n);
		for (size_t i = 0; i < n->npeers; i++) {
			if (items[POLL_PEERS + i].revents & ZMQ_POLLIN)
				nd_dealer_handle(&n->peers[i]);
			if (items[POLL_PEERS + n->npeers + i].revents &
			    ZMQ_POLLIN)
				nd_monitor_handle(&n->peers[i]);
		}
		if (items[POLL_CTL].revents & ZMQ_POLLIN)
			nd_ctl_handle(n);
		if (items[POLL_MIG].revents & ZMQ_POLLIN) {
			uint64_t v;

			/* a destination thread has news: hear it at once */
			if (read(n->mig.mig_efd, &v, sizeof(v)) < 0 &&
			    errno != EAGAIN)
				pr_perror("eventfd");
			n->mig.next_mig_tick_ns = 0;
		}
		if (items[POLL_SIG].revents & ZMQ_POLLIN)
			signals_handle(n);
	}
	return 0;
}

void nd_node_close(struct nd_node *n)
{
	if (!n)
		return;
	mig_close(&n->mig);
	nd_vms_close(n);
	nd_ctl_close(n);
	nd_peers_close(n);
	if (n->zctx)
		zmq_ctx_term(n->zctx);
	/* libzmq may remove the file itself; make sure it is gone */
	if (n->ctl_bound && unlink(n->cfg->control) && errno != ENOENT)
		pr_perror("cannot remove %s", n->cfg->control);
	fab_domain_close(n->fab);
	if (n->sigfd >= 0)
		close(n->sigfd);
	if (n->mig.mig_efd >= 0)
		close(n->mig.mig_efd);
	if (n->up)
		pr_info("stopped");
	free(n);
}
