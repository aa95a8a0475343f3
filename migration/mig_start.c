// SPDX-License-Identifier: MIT
/*
 * Starting a migration on the source (`ferry migrate`): the checks, the
 * read-only mapping and registration of the VM's memfd (in a thread of its
 * own; at once for a restarted ferryd that serves a post-copy again),
 * MIGRATE_PREPARE. The rounds that follow are mig.c's.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_retain.h"
#include "migration/mig_src.h"

/* The layout, the bookkeeping and a read-only map of the memfd: cheap. */
static int src_mmap(struct mig *m)
{
	const struct kva_layout *l = mig_vm_layout(m->n, m->vmp->kc);
	size_t len = l->pages * FY_PAGE_SIZE;

	m->pages = l->pages;
	m->vcpus = l->nr_vcpus;
	m->accel = l->accel;
	m->sent_bm = fy_bitmap_alloc(m->pages);
	m->pgen = calloc(m->pages, sizeof(*m->pgen));
	if (!m->sent_bm || !m->pgen)
		return -ENOMEM;
	/* read-only: pages leave by the destination's reads, never by us */
	m->map = mmap(NULL, len, PROT_READ, MAP_SHARED, l->regions[0].memfd, 0);
	if (m->map == MAP_FAILED) {
		m->map = NULL;
		return -errno;
	}
	return 0;
}

/*
 * Register the map for reads. On a device that pins, only the pages with
 * data now (the rounds register what appears later: mig_src_round_begin),
 * so that holes stay holes.
 */
static int src_reg(struct mig *m)
{
	const struct kva_layout *l = mig_vm_layout(m->n, m->vmp->kc);
	struct fy_run *runs = NULL;
	struct fab_rkey rk;
	size_t nr = 0;
	int ret;

	ret = fab_mr_reg(m->n->fab, m->map, m->pages * FY_PAGE_SIZE,
			 FAB_ACCESS_READ | FAB_ACCESS_HOLES, &m->mr);
	if (ret)
		return ret;
	fab_mr_rkey(m->mr, &rk);
	if (!rk.runs)
		return 0;
	ret = mig_memfd_data_runs(l->regions[0].memfd, m->pages, &runs, &nr);
	if (!ret)
		ret = mig_mr_grow(m->mr, runs, nr);
	free(runs);
	return ret < 0 ? ret : 0;
}

int mig_src_map(struct mig *m)
{
	int ret = src_mmap(m);

	return ret ? ret : src_reg(m);
}

/* Source migrations not finished (post-copies serving pages included). */
static unsigned outgoing(const struct mig_env *n)
{
	unsigned c = 0;

	for (int i = 0; i < MIG_MAX; i++)
		c += n->migs[i] && n->migs[i]->source &&
		     !mig_finished(n->migs[i]);
	return c;
}

/*
 * The next id, past those of migrations peer sends us now: HOLDER_MAP,
 * ABORT and ERROR go either way and name a migration by its id alone, so
 * an id must not run both ways with one peer (mig_dst_ctl.c refuses it).
 */
static uint64_t next_id(struct mig_env *n, const struct mig_peer *p)
{
	struct mig *m;
	uint64_t id;

	do {
		id = n->next_mig_id++;
		m = mig_find(n, id, false, p);
	} while (m && !mig_finished(m));
	return id;
}

/*
 * Can vmname go to peername now? 0 and the peer and VM, or -errno with a
 * text in err.
 */
static int start_check(struct mig_env *n, const char *vmname,
		       const char *peername, char *err, size_t errlen,
		       struct mig_peer **peerp, struct mig_vm **vmp)
{
	const struct kva_layout *l;
	struct kva_status st;
	enum mig_peer_state ps;
	struct mig_peer *peer;
	struct mig_vm *vm;
	int ret;

	peer = mig_peer_find(n, peername);
	if (!peer) {
		snprintf(err, errlen, "no peer called '%s'", peername);
		return -ENOENT;
	}
	ps = mig_peer_state(n, peer, mig_now(n));
	if (ps != MIG_PEER_REACHABLE) {
		snprintf(err, errlen, "peer '%s' is %s", peername,
			 mig_peer_state_name(ps));
		return -EHOSTUNREACH;
	}
	vm = mig_vm_find(n, vmname, true);
	if (!vm || !vm->kc) {
		snprintf(err, errlen, "no VM called '%s' here (ferry vms)",
			 vmname);
		return -ENOENT;
	}
	if (vm->mig) {
		snprintf(err, errlen,
			 "VM '%s' is already migrating (%" PRIu64 ")", vmname,
			 vm->mig->id);
		return -EBUSY;
	}
	if (outgoing(n) >= n->cfg.max_outgoing) {
		snprintf(err, errlen,
			 "%s sends as many VMs as its max_outgoing allows "
			 "(%u); try again later",
			 n->cfg.name, n->cfg.max_outgoing);
		return -EBUSY;
	}
	ret = mig_vm_status(n, vm->kc, &st);
	if (ret || st.state != KVA_VM_RUNNING) {
		snprintf(err, errlen, "VM '%s' is not running", vmname);
		return ret ? ret : -EINVAL;
	}
	l = mig_vm_layout(n, vm->kc);
	if (l->nr_regions != 1 || l->page_size != FY_PAGE_SIZE) {
		snprintf(err, errlen,
			 "VM '%s': only one region of 4 KiB pages "
			 "is supported",
			 vmname);
		return -ENOTSUP;
	}
	*peerp = peer;
	*vmp = vm;
	return 0;
}

/* --compress delta: what D holds, registered for its reads. 0 or -errno. */
static int cache_map(struct mig *m)
{
	/* only pages with data ever get memory */
	m->cache = mmap(NULL, m->pages * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->cache == MAP_FAILED) {
		m->cache = NULL;
		return -ENOMEM;
	}
	return fab_mr_reg(m->n->fab, m->cache, m->pages * FY_PAGE_SIZE,
			  FAB_ACCESS_READ, &m->cache_mr);
}

/* MIGRATE_PREPARE to m's peer: m's VM, its mode and shape. 0 or -errno. */
int mig_src_send_prepare(struct mig *m)
{
	struct proto_msg p = { .type = PROTO_MIGRATE_PREPARE };
	struct proto_region_desc rd;

	p.prepare.mig = m->id;
	snprintf(p.prepare.vm, sizeof(p.prepare.vm), "%s", m->vm);
	snprintf(p.prepare.mode, sizeof(p.prepare.mode), "%s",
		 proto_mode_name(m->o.mode));
	p.prepare.page_size = FY_PAGE_SIZE;
	p.prepare.vcpus = m->vcpus;
	snprintf(p.prepare.accel, sizeof(p.prepare.accel), "%s",
		 kva_accel_name(m->accel));
	p.prepare.lineage = m->lineage;
	p.prepare.nregions = 1;
	p.prepare.regions = &rd;
	rd.id = 0;
	rd.pages = m->pages;
	return mig_send(m, &p);
}

/*
 * The registrations, in their own thread: pinning takes seconds a GiB on
 * some devices, and the control thread answers the CLI and peers
 * meanwhile. The fabric takes registrations from any thread; the control
 * thread touches none of what this one makes until it has joined it.
 */
static void *reg_main(void *arg)
{
	struct mig *m = arg;
	int ret = src_reg(m);

	if (!ret && m->o.delta)
		ret = cache_map(m);
	m->reg_ret = ret;
	__atomic_store_n(&m->reg_done, true, __ATOMIC_RELEASE);
	return NULL;
}

void mig_src_reg_tick(struct mig *m, uint64_t now)
{
	int ret;

	if (!__atomic_load_n(&m->reg_done, __ATOMIC_ACQUIRE))
		return;
	mig_src_reg_join(m);
	ret = m->reg_ret;
	if (!ret && m->cancel_asked) {
		/* D never heard of it: nothing to tell */
		mig_src_fail(m, MIG_SRC_CANCELLED, false,
			     "cancelled by the user");
		return;
	}
	if (!ret) {
		m->deadline = now + MIG_PREPARE_TIMEOUT_NS;
		ret = mig_to(m, MIG_SRC_PREPARE, "registered");
	}
	if (!ret)
		ret = mig_src_send_prepare(m);
	if (ret) {
		mig_src_fail(m, MIG_SRC_FAILED, false, "cannot start: %s",
			     strerror(-ret));
		return;
	}
	mig_info(m, "started: %" PRIu64 " MiB, downtime limit %" PRIu64 " ms%s",
		 m->pages * FY_PAGE_SIZE >> 20, m->limit_ms,
		 m->o.verify ? ", verify" : "");
}

/*
 * `ferry migrate`: check, map, start the registration; the tick sends
 * MIGRATE_PREPARE once it is done (mig_src_reg_tick).
 */
int mig_src_start(struct mig_env *n, const char *vmname, const char *peername,
		  const struct mig_opts *o, uint64_t *id, char *err,
		  size_t errlen)
{
	struct mig_peer *peer;
	struct mig_vm *vm;
	struct mig *m;
	int ret;

	ret = start_check(n, vmname, peername, err, errlen, &peer, &vm);
	if (ret)
		return ret;
	m = mig_new(n, true);
	if (!m) {
		snprintf(err, errlen, "too many migrations");
		return -ENOSPC;
	}
	m->id = next_id(n, peer);
	m->peer = peer;
	snprintf(m->vm, sizeof(m->vm), "%s", vmname);
	m->o = *o;
	m->limit_ms = o->downtime_ms;
	m->vmp = vm;
	vm->mig = m;
	m->lineage = mig_lineage_for(n, vmname, vm->pid);
	ret = src_mmap(m);
	if (ret)
		goto err;
	ret = -pthread_create(&m->reg_thread, NULL, reg_main, m);
	if (ret)
		goto err;
	pthread_setname_np(m->reg_thread, "ferry-register");
	m->reg_running = true;
	*id = m->id;
	return 0;
err:
	snprintf(err, errlen, "cannot start: %s", strerror(-ret));
	mig_src_fail(m, MIG_SRC_FAILED, false, "cannot start: %s",
		     strerror(-ret));
	return ret;
}
