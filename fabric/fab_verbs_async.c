// SPDX-License-Identifier: MIT
/*
 * rdma-core backend: the device's asynchronous events (a port going down
 * or coming back, a queue pair in error, the device failing).
 *
 * librdmacm opens one device context per process, so every domain on a
 * device shares its async_fd: whichever domain reads an event hands it to
 * the domains it concerns, through atomics and their kick fd, without
 * taking their locks (the reader holds its own). A port event concerns
 * every domain on that device and port, a queue pair event the domain
 * owning the QP: its connection, the QP's context, stays valid until the
 * event is acknowledged, as ibv_destroy_qp() waits for that. Each domain
 * then fails the connections concerned under its own lock, from drain().
 */
#define LOG_PREFIX "fabric: verbs: "

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "fabric/fab_verbs.h"

#include "common/log.h"

/* the domains of this process; the lock also orders their hand-overs */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vb_domain *reg_head;

void vb_async_add(struct vb_domain *vd)
{
	pthread_mutex_lock(&reg_lock);
	vd->anext = reg_head;
	reg_head = vd;
	pthread_mutex_unlock(&reg_lock);
}

void vb_async_del(struct vb_domain *vd)
{
	struct vb_domain **p;

	pthread_mutex_lock(&reg_lock);
	for (p = &reg_head; *p; p = &(*p)->anext)
		if (*p == vd) {
			*p = vd->anext;
			break;
		}
	pthread_mutex_unlock(&reg_lock);
}

/* Tell vd there is something to apply; any thread. */
static void kick(struct vb_domain *vd)
{
	uint64_t one = 1;

	__atomic_store_n(&vd->apending, true, __ATOMIC_RELEASE);
	if (write(vd->kick_fd, &one, sizeof(one)) < 0)
		pr_perror("write kick fd");
}

/*
 * A port or device event: every domain on ctx (and port, unless 0) fails
 * its connections with status (0: none), and refuses new ones with down
 * (0: accepts them again). Reached from one domain's drain().
 */
static void to_domains(struct ibv_context *ctx, unsigned port, int status,
		       int down)
{
	struct vb_domain *vd;

	pthread_mutex_lock(&reg_lock);
	for (vd = reg_head; vd; vd = vd->anext) {
		/* NULL while its device is gone (fab_verbs_reset.c) */
		if (__atomic_load_n(&vd->ctx, __ATOMIC_RELAXED) != ctx ||
		    (port && vd->port != port))
			continue;
		/* a fatal device stays so */
		if (__atomic_load_n(&vd->down, __ATOMIC_RELAXED) != -ENODEV)
			__atomic_store_n(&vd->down, down, __ATOMIC_RELAXED);
		if (status)
			__atomic_store_n(&vd->afail, status, __ATOMIC_RELAXED);
		kick(vd);
	}
	pthread_mutex_unlock(&reg_lock);
}

/* A queue pair event: the connection owning the QP fails with status. */
static void to_conn(struct ibv_qp *qp, int status)
{
	struct vb_conn *c = qp->qp_context;
	struct vb_domain *vd;

	pthread_mutex_lock(&reg_lock);
	for (vd = reg_head; vd && c; vd = vd->anext)
		if (vd == c->vd) {
			__atomic_store_n(&c->afail, status, __ATOMIC_RELAXED);
			kick(vd);
			break;
		}
	pthread_mutex_unlock(&reg_lock);
}

/* One event: logged once here, handed to whom it concerns. */
static void event(struct vb_domain *vd, struct ibv_async_event *ev)
{
	const char *dev = ibv_get_device_name(vd->ctx->device);
	const char *what = ibv_event_type_str(ev->event_type);
	unsigned port = ev->element.port_num;

	switch (ev->event_type) {
	case IBV_EVENT_PORT_ERR:
		pr_warn("%s port %u went down", dev, port);
		to_domains(vd->ctx, port, -ENETDOWN, -ENETDOWN);
		break;
	case IBV_EVENT_PORT_ACTIVE:
		pr_info("%s port %u is up again", dev, port);
		to_domains(vd->ctx, port, 0, 0);
		break;
	case IBV_EVENT_DEVICE_FATAL:
		pr_err("%s failed (%s)", dev, what);
		to_domains(vd->ctx, 0, -ENODEV, -ENODEV);
		break;
	case IBV_EVENT_QP_FATAL:
	case IBV_EVENT_QP_REQ_ERR:
	case IBV_EVENT_QP_ACCESS_ERR:
		pr_warn("%s queue pair %u: %s", dev, ev->element.qp->qp_num,
			what);
		to_conn(ev->element.qp,
			ev->event_type == IBV_EVENT_QP_ACCESS_ERR ? -EACCES
								  : -EIO);
		break;
	default:
		/* LAST_WQE_REACHED follows every QP of ours put in error */
		pr_debug("%s: %s", dev, what);
		break;
	}
}

int vb_async_read(struct vb_domain *vd)
{
	struct ibv_async_event ev;
	int n = 0;

	if (!vd->ctx)
		return 0; /* the device is gone (fab_verbs_reset.c) */
	while (!ibv_get_async_event(vd->ctx, &ev)) {
		event(vd, &ev);
		ibv_ack_async_event(&ev);
		n++;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK) {
		pr_perror("ibv_get_async_event");
		return -errno;
	}
	return n;
}

bool vb_port_down(struct vb_domain *vd)
{
	struct ibv_port_attr pa;

	return vd->ctx && !ibv_query_port(vd->ctx, vd->port, &pa) &&
	       pa.state != IBV_PORT_ACTIVE;
}

void vb_async_apply(struct vb_domain *vd)
{
	struct vb_conn *c;
	int status;

	if (!__atomic_exchange_n(&vd->apending, false, __ATOMIC_ACQUIRE))
		return;
	status = __atomic_exchange_n(&vd->afail, 0, __ATOMIC_RELAXED);
	/* the device failed: take it down and wait for it (fab_verbs_reset.c) */
	if (status == -ENODEV) {
		vb_dev_lost(vd);
		return;
	}
	for (c = vd->conns.next; c != &vd->conns; c = c->next) {
		int qs = __atomic_exchange_n(&c->afail, 0, __ATOMIC_RELAXED);

		if (status || qs)
			vb_conn_fail(vd, c, status ? status : qs);
	}
}
