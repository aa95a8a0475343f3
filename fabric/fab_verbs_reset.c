// SPDX-License-Identifier: MIT
/*
 * rdma-core backend: the device removed (`rdma link delete rxe0`,
 * librdmacm's DEVICE_REMOVAL on any of the domain's ids) or failed
 * (IBV_EVENT_DEVICE_FATAL), and coming back.
 *
 * rxe cannot take a device from a process that keeps it open: the kernel
 * waits, and the removal with it, until every object on it is gone. So
 * the domain lets go of all it holds there: LOST fails every operation
 * and connection with -ENODEV at once (drain(), lock held); then, from
 * the next progress pass without lock, the release destroys the QPs and
 * their cm ids, the SRQ, the CQ and its channel, every registration's
 * ibv_mr (the fab_mr objects stay: callers hold them), the PD and the
 * listener, and asks librdmacm to look at its device list again, which
 * closes its own context and PD on the device once nothing uses them.
 *
 * GONE: each progress pass, at most every VB_RETRY_NS, binds a new
 * listener to the same address and port (peers know it). Once that lands
 * on a device, the PD, queues, buffers and every registration are made
 * anew (same memory, same access, new keys) and the domain is UP again.
 * Registrations made meanwhile are only recorded, and made then too.
 *
 * librdmacm (44) closes its context only while the device list it reads
 * names some device: with the only device removed the removal waits until
 * the process exits (docs/rdma.md, "Failures").
 */
#define LOG_PREFIX "fabric: verbs: "

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fabric/fab_verbs.h"

#include "common/log.h"

/* The one way the device state changes; lock held (and dev_lock but UP). */
static void dev_set(struct vb_domain *vd, enum vb_dev_state to)
{
	static const bool legal[3][3] = {
		[VD_UP] = { [VD_LOST] = true },
		[VD_LOST] = { [VD_GONE] = true },
		[VD_GONE] = { [VD_UP] = true },
	};
	enum vb_dev_state from = __atomic_load_n(&vd->dev, __ATOMIC_RELAXED);

	if (!legal[from][to]) {
		pr_err("device state %d -> %d refused", from, to);
		return;
	}
	pr_debug("%s: device state %d -> %d", vd->provider, from, to);
	__atomic_store_n(&vd->dev, (uint8_t)to, __ATOMIC_RELEASE);
}

void vb_dev_lost(struct vb_domain *vd)
{
	struct vb_conn *c;

	if (__atomic_load_n(&vd->dev, __ATOMIC_RELAXED) != VD_UP)
		return;
	pr_err("%s was removed or failed: everything on it fails with "
	       "ENODEV; listening again until it is back",
	       vd->provider);
	dev_set(vd, VD_LOST);
	__atomic_store_n(&vd->down, -ENODEV, __ATOMIC_RELAXED);
	for (c = vd->conns.next; c != &vd->conns; c = c->next)
		vb_conn_fail(vd, c, -ENODEV);
	vb_wake(vd);
}

/*
 * Fail and free every slot: with its QP destroyed nothing can land in
 * its buffer any more. Then destroy every connection's QP and cm id; the
 * connections stay for their endpoints, failed.
 */
static void drop_conns(struct vb_domain *vd)
{
	struct vb_op *op, *next;
	struct vb_conn *c;

	for (c = vd->conns.next; c != &vd->conns; c = c->next) {
		vb_conn_fail(vd, c, -ENODEV);
		if (c->id && c->id->qp)
			rdma_destroy_qp(c->id);
		if (c->id)
			rdma_destroy_id(c->id);
		c->id = NULL;
	}
	for (op = vd->live.next; op != &vd->live; op = next) {
		next = op->next;
		/* a queued one is free at once, a posted one abandoned */
		if (op->state != VOP_ABANDONED)
			vb_op_abandon(vd, op, -ENODEV);
		if (op->state == VOP_ABANDONED)
			vb_op_free(vd, op);
	}
	__atomic_store_n(&vd->reap, true, __ATOMIC_RELAXED);
	vb_wake(vd);
}

/* LOST -> GONE: let go of everything on the device; both locks held. */
static void release(struct vb_domain *vd)
{
	drop_conns(vd);
	vb_dev_free(vd);
	dev_set(vd, VD_GONE);
	__atomic_store_n(&vd->retry_at, fy_now_ns(), __ATOMIC_RELAXED);
}

/* A listener on the domain's address, if that is on a device now. */
static struct rdma_cm_id *listen_again(struct vb_domain *vd)
{
	struct rdma_cm_id *id;

	if (rdma_create_id(vd->ec, &id, NULL, RDMA_PS_TCP)) {
		pr_debug("rdma_create_id: %s", strerror(errno));
		return NULL;
	}
	/* the address may be there without a device under it: not yet */
	if (rdma_bind_addr(id, (struct sockaddr *)vd->addr.bytes) ||
	    !id->verbs) {
		rdma_destroy_id(id);
		return NULL;
	}
	if (rdma_listen(id, 64)) {
		pr_debug("rdma_listen: %s", strerror(errno));
		rdma_destroy_id(id);
		return NULL;
	}
	return id;
}

/*
 * Register m anew. The new key is never the old one, so that a reader
 * still holding that fails: a repeat of it is registered once more.
 */
static int reg_again(struct vb_domain *vd, struct vb_mr *m)
{
	uint32_t old = (uint32_t)m->base.rkey.key;
	struct ibv_mr *mr = vb_mr_make(vd, m), *same = NULL;

	if (mr && mr->rkey == old) {
		same = mr;
		mr = vb_mr_make(vd, m);
		ibv_dereg_mr(same);
	}
	if (!mr) {
		pr_err("registering %zu bytes again: %s",
		       (size_t)m->base.rkey.len, strerror(errno));
		return errno ? -errno : -ENOMEM;
	}
	m->mr = mr;
	/* fab_mr_rkey() reads it from any thread */
	__atomic_store_n(&m->base.rkey.key, (uint64_t)mr->rkey,
			 __ATOMIC_RELAXED);
	return 0;
}

/* GONE -> UP: the device is back under id; both locks held. */
static int come_back(struct vb_domain *vd, struct rdma_cm_id *id)
{
	const char *name = ibv_get_device_name(id->verbs->device);
	char prov[sizeof(vd->provider)];
	struct vb_mr *m;
	unsigned n = 0;
	int ret;

	vd->listen = id;
	__atomic_store_n(&vd->ctx, id->verbs, __ATOMIC_RELAXED);
	vd->port = id->port_num;
	ret = vb_query_caps(vd, false);
	if (!ret)
		ret = vb_open_queues(vd);
	if (!ret)
		ret = vb_open_bufs(vd);
	for (m = vd->mrs.next; !ret && m != &vd->mrs; m = m->next, n++)
		ret = reg_again(vd, m);
	if (ret) {
		vb_dev_free(vd);
		return ret;
	}
	snprintf(prov, sizeof(prov), "verbs:%s:%u", name, vd->port);
	/* any thread may read it (fab_domain_provider()): if it changed */
	if (strcmp(prov, vd->provider))
		memcpy(vd->provider, prov, sizeof(prov));
	__atomic_store_n(&vd->down, vb_port_down(vd) ? -ENETDOWN : 0,
			 __ATOMIC_RELAXED);
	dev_set(vd, VD_UP);
	pr_info("%s is back: listening again, %u registrations made anew "
		"with new keys",
		vd->provider, n);
	return 0;
}

void vb_dev_tick(struct vb_domain *vd)
{
	struct rdma_cm_id *id;
	bool freed = false;

	if (__atomic_load_n(&vd->dev, __ATOMIC_ACQUIRE) == VD_GONE &&
	    fy_now_ns() < __atomic_load_n(&vd->retry_at, __ATOMIC_RELAXED))
		return;
	/* registrations run without lock: wait for them, then take it */
	pthread_rwlock_wrlock(&vd->dev_lock);
	pthread_mutex_lock(&vd->lock);
	if (vd->dev == VD_LOST) {
		release(vd);
		freed = true;
	} else if (vd->dev == VD_GONE && fy_now_ns() >= vd->retry_at &&
		   !__atomic_load_n(&vd->stop, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&vd->retry_at, fy_now_ns() + VB_RETRY_NS,
				 __ATOMIC_RELAXED);
		id = listen_again(vd);
		if (id && come_back(vd, id))
			pr_debug("%s: not back yet", vd->provider);
	}
	pthread_mutex_unlock(&vd->lock);
	pthread_rwlock_unlock(&vd->dev_lock);
	/*
	 * librdmacm looks at its device list again: it closes its context
	 * and PD on a device no longer listed once no id uses them.
	 */
	if (freed)
		rdma_free_devices(rdma_get_devices(NULL));
}
