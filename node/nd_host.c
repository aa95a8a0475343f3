// SPDX-License-Identifier: MIT
/*
 * The migration engine's host (migration/migration.h, struct
 * mig_host_ops): what it may ask of this daemon, its peers and the VMs of
 * this host, and the settings it runs with. The engine never calls node/
 * otherwise (scripts/check-layers).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "fabric/fabric.h"

#define LOG_PREFIX "ferryd: "
#include "common/util.h"
#include "node/node_int.h"

static struct nd_peer *peer_of(const struct mig_peer *mp)
{
	return (struct nd_peer *)((char *)mp - offsetof(struct nd_peer, mig));
}

static int host_send(void *host, struct mig_peer *p, const struct proto_msg *m)
{
	(void)host;
	return nd_peer_send(peer_of(p), m);
}

static enum mig_peer_state host_peer_state(void *host, const struct mig_peer *p,
					   uint64_t now)
{
	(void)host;
	return nd_peer_state(peer_of(p), now);
}

static struct mig_peer *host_peer_find(void *host, const char *name)
{
	struct nd_peer *p = nd_peer_find(host, name);

	return p ? &p->mig : NULL;
}

static struct mig_vm *host_vm_find(void *host, const char *name, bool rescan)
{
	struct mig_vm *vm = nd_vm_find(host, name);

	if (!vm && rescan) {
		nd_vms_rescan(host);
		vm = nd_vm_find(host, name);
	}
	return vm;
}

static struct mig_vm *host_vm_add(void *host, const char *name)
{
	return nd_vm_add(host, name);
}

static void host_vm_forget(void *host, struct mig_vm *vm)
{
	(void)host;
	nd_vm_forget(vm);
}

static int host_vm_spawn(void *host, const char *name, uint64_t mem,
			 unsigned vcpus, enum kva_accel accel, int ram_fd,
			 pid_t *pid)
{
	return nd_vm_spawn_incoming(host, name, mem, vcpus, accel, ram_fd, pid);
}

static int host_vm_sock_path(void *host, const char *name, char *buf,
			     size_t len)
{
	return nd_vm_sock_path(host, name, buf, len);
}

static int host_vm_unlink_sock(void *host, const char *name)
{
	return nd_vm_unlink_sock(host, name);
}

/*
 * Like our own domain, on any port: nobody reaches it at its address, it
 * only reads. The reads' domain drives progress in a thread of its own as
 * ours does; the fault server's is driven by the fault server alone.
 */
static int host_fab_open(void *host, bool fault, struct fab_domain **out)
{
	const struct nd_config *cfg = ((struct nd_node *)host)->cfg;
	struct fab_opts opts;
	int ret;

	nd_config_fab_opts(cfg, &opts);
	opts.progress_thread = !fault;
	ret = fab_domain_open(&opts, out);
	if (ret)
		pr_err("cannot open a fabric domain for an incoming "
		       "migration's "
		       "%s: %s",
		       fault ? "faults" : "reads", strerror(-ret));
	return ret;
}

static void host_fab_close(void *host, struct fab_domain *d)
{
	(void)host;
	fab_domain_close(d);
}

static const struct mig_host_ops host_ops = {
	.send = host_send,
	.peer_state = host_peer_state,
	.peer_find = host_peer_find,
	.vm_find = host_vm_find,
	.vm_add = host_vm_add,
	.vm_forget = host_vm_forget,
	.vm_spawn = host_vm_spawn,
	.vm_sock_path = host_vm_sock_path,
	.vm_unlink_sock = host_vm_unlink_sock,
	.fab_open = host_fab_open,
	.fab_close = host_fab_close,
};

int nd_host_open(struct nd_node *n)
{
	const struct nd_config *cfg = n->cfg;
	struct mig_env *e = &n->mig;
	int w;

	e->ops = &host_ops;
	e->host = n;
	e->cfg = (struct mig_conf){
		.name = cfg->name,
		.peer_timeout_ms = cfg->peer_timeout_ms,
		.mig_timeout_ms = cfg->mig_timeout_ms,
		.vm_timeout_ms = nd_vm_timeout_ms(n),
		.auto_converge = cfg->auto_converge,
		.cpu_throttle_initial = cfg->cpu_throttle_initial,
		.cpu_throttle_increment = cfg->cpu_throttle_increment,
		.max_cpu_throttle = cfg->max_cpu_throttle,
		.max_incoming = cfg->max_incoming,
		.max_outgoing = cfg->max_outgoing,
		.retain_bytes = cfg->holder_retention,
		.retain_age_s = cfg->holder_retention_age_s,
		.postcopy_bw = cfg->postcopy_max_bandwidth,
	};
	e->fab = n->fab;
	e->fab_addr_len = FY_MIN(n->fab_addr_len, sizeof(e->fab_addr_raw));
	memcpy(e->fab_addr_raw, n->fab_addr_raw, e->fab_addr_len);
	for (size_t i = 0; i < n->npeers; i++) {
		n->peers[i].mig.name = n->peers[i].conf->name;
		n->peers[i].mig.accept_user_vms =
			n->peers[i].conf->accept_user_vms;
	}
	w = snprintf(e->mig_dir, sizeof(e->mig_dir), "%s/%s", cfg->state_dir,
		     ND_MIG_DIR_SUB);
	if (w < 0 || (size_t)w >= sizeof(e->mig_dir))
		return -ENAMETOOLONG;
	w = nd_dir_prepare("migration records' directory", e->mig_dir, 0700);
	return w < 0 ? w : 0;
}
