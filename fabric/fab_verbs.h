/* SPDX-License-Identifier: MIT */
#ifndef FERRY_FABRIC_FAB_VERBS_H
#define FERRY_FABRIC_FAB_VERBS_H

#include <pthread.h>
#include <time.h>

#include "fabric/fabric_int.h"

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

/*
 * rdma-core backend internals, shared by fab_verbs.c (memory, endpoints,
 * posting), fab_verbs_domain.c (open, close), fab_verbs_cm.c (connections),
 * fab_verbs_cq.c (completions, deadlines, progress) and fab_verbs_async.c
 * (the device's asynchronous events), fab_verbs_reset.c (the device
 * removed and back).
 */

#define VB_MAX_OPS 1024 /* cap on operations in flight per domain */
#define VB_SQ_DEPTH 256 /* send queue of one connection */
#define VB_NRX 64 /* receive buffers kept posted on the shared queue */
#define VB_NSBUF 64 /* send bounce buffers */
#define VB_CQ_BATCH 32
#define VB_RD_ATOM 16 /* reads in flight per connection, at most */
#define VB_RESOLVE_MS 2000 /* rdma_resolve_addr(), rdma_resolve_route() */
#define VB_WAIT_MS 20 /* block granularity: deadline checks */
#define VB_POLL_SPIN_NS 200000ULL /* fab_poll() spins this long, then waits */
#define VB_APP_HOLD_NS 5000000ULL /* app polled recently: it drives */
/* spinning: librdmacm's and the device's events this often */
#define VB_CM_EVERY_NS 1000000ULL /* while a connection is being made */
#define VB_CM_IDLE_NS 20000000ULL /* otherwise: each look is two syscalls */
#define VB_CONN_MAGIC 0x66727976u /* "fryv": private data of a connect */
#define VB_NSEC 1000000000ULL
#define VB_RETRY_NS 150000000ULL /* device gone: listen again this often */
#define VB_TELL_NS 3000000000ULL /* the link may be down: tell the peer later */

/*
 * A slot's life: FREE -> QUEUED (its connection is being made, or its send
 * queue is full) -> POSTED (the device holds it) -> FREE at its completion.
 * Reported before the device gave it back (deadline, endpoint closed):
 * ABANDONED until it does; its late completion only frees the slot.
 */
enum vb_op_state { VOP_FREE, VOP_QUEUED, VOP_POSTED, VOP_ABANDONED };

/*
 * The domain's device (fab_verbs_reset.c): UP -> LOST (removed or fatal:
 * everything fails with -ENODEV) -> GONE (all we held on it released;
 * listening again is tried every VB_RETRY_NS) -> UP (made anew).
 */
enum vb_dev_state { VD_UP, VD_LOST, VD_GONE };

/* RESOLVING -> CONNECTING -> UP; any -> FAILED (the QP is in error) */
enum vb_conn_state { VC_RESOLVING, VC_CONNECTING, VC_UP, VC_FAILED };

struct vb_ep;
struct vb_conn;

struct vb_op {
	struct vb_op *next, *prev; /* live list, or free list (next) */
	struct vb_ep *ep; /* NULL once abandoned */
	struct vb_conn *conn; /* until the slot is free */
	void *ctx;
	uint64_t deadline;
	/* what the device is given: buf may be written or read until FREE */
	void *buf; /* read or write: the caller's; send: our bounce buffer */
	size_t len;
	uint32_t lkey;
	uint32_t rkey;
	uint64_t raddr;
	int sbuf; /* send bounce buffer index or -1 */
	uint8_t op; /* enum fab_op */
	uint8_t state; /* enum vb_op_state */
};

struct vb_rx {
	void *buf;
	struct vb_rx *next; /* lent to the application, to repost */
	bool posted; /* on the shared receive queue */
	bool repost; /* was, or was to be, when the device went */
};

/*
 * One RC queue pair to a peer, made by us (active) or accepted (passive).
 * Endpoints to one peer share it; it outlives them (idle, UP) so that the
 * next endpoint to that peer (the next migration) reuses it.
 */
struct vb_conn {
	struct vb_conn *next, *prev;
	struct vb_domain *vd;
	/* owns the QP (id->qp, its context: us); NULL once the device went */
	struct rdma_cm_id *id;
	uint32_t qp_num;
	/* the peer's listener (its fab_addr); len 0: not told */
	struct fab_addr peer;
	uint8_t state; /* enum vb_conn_state */
	bool passive;
	int status; /* FAILED: why, -errno */
	/* FAILED while up, the peer not told yet: not before this (ns) */
	uint64_t tell_at;
	unsigned eps; /* open endpoints on it */
	unsigned held; /* slots on it, not free */
	unsigned posted; /* of which on the send queue */
	unsigned nqueued; /* of which QUEUED */
	/*
	 * Slots of closed endpoints it still holds: a stalled link may hold
	 * them long, so no new endpoint joins it until they are back.
	 */
	unsigned zombies;
	int afail; /* atomic: a QP event failed it, -errno (fab_verbs_async.c) */
};

struct vb_ep {
	struct fab_ep base; /* first */
	struct vb_conn *conn;
	struct vb_ep *next, *prev;
};

struct vb_mr {
	struct fab_mr base; /* first; base.rkey.key: atomic */
	/* under vd->lock and dev_lock; NULL while the device is gone */
	struct ibv_mr *mr;
	int flags; /* ibv_access_flags, to register it anew */
	struct vb_mr *next, *prev;
};

struct vb_domain {
	struct fab_domain base; /* first */
	char provider[64];
	struct fab_addr addr; /* the listener's sockaddr */
	uint64_t timeout_ns;
	uint64_t spin_ns;
	bool odp; /* the device pages on demand for RC reads and writes */

	/*
	 * Held for reading by (de)registrations, which run without lock;
	 * for writing, then lock, to release and make anew what follows.
	 */
	pthread_rwlock_t dev_lock;
	/* enum vb_dev_state; written under lock (UP -> LOST) or both */
	uint8_t dev;
	uint64_t retry_at; /* GONE: listen again from then on; atomic */

	struct rdma_event_channel *ec; /* outlives the device */
	/* on the device: NULL while it is gone; used under lock */
	struct rdma_cm_id *listen;
	/* the listener's device; not owned; atomic for fab_verbs_async.c */
	struct ibv_context *ctx;
	uint8_t port; /* the listener's port */
	struct ibv_pd *pd;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
	struct ibv_srq *srq;
	uint8_t rd_atom; /* our side of a connection's read depth */
	int kick_fd; /* eventfd waking a blocked poller */

	/* receive and send buffers, one registration */
	char *bufs;
	struct ibv_mr *bufs_mr;

	pthread_mutex_t lock; /* everything below */
	int fd_waiters; /* applications blocked in wait_app() */
	struct vb_op ops[VB_MAX_OPS];
	struct vb_op *free_ops;
	struct vb_op live; /* list head: not free, in deadline order */
	unsigned owing; /* QUEUED or POSTED: each owes the ring one cqe */
	uint64_t held; /* slots not free; atomic, peeked at */
	bool freed; /* atomic: a held slot was freed since vb_after() */
	struct fab_cqe ring[VB_MAX_OPS + VB_NRX];
	unsigned ring_head, ring_len;
	struct vb_rx rx[VB_NRX];
	struct vb_rx *lent; /* atomic peek */
	int sbuf_free[VB_NSBUF];
	unsigned nsbuf_free;
	struct vb_conn conns; /* list head */
	bool reap; /* atomic: a connection may be destroyed */
	struct vb_ep eps; /* list head */
	struct vb_mr mrs; /* list head */
	uint64_t cm_next; /* drain(): read librdmacm's events from then */

	/*
	 * The device's asynchronous events (fab_verbs_async.c), handed over
	 * by whichever domain of the process reads them; all atomic.
	 */
	struct vb_domain *anext; /* list of domains, under its lock */
	bool apending; /* something to apply */
	int afail; /* fail every connection with this -errno */
	/* the port is down (-ENETDOWN) or the device failed (-ENODEV) */
	int down;

	/* progress thread */
	pthread_t pt;
	bool pt_running;
	int stop;
	struct fab_park park; /* held while the app is in fab_poll() */
	clockid_t pt_clock;
};

static inline struct vb_domain *vb_vd(const struct fab_domain *d)
{
	return container_of(d, struct vb_domain, base);
}

/* Append a slot to the live list (deadline order); lock held. */
static inline void vb_live_add(struct vb_domain *vd, struct vb_op *op)
{
	op->next = &vd->live;
	op->prev = vd->live.prev;
	op->prev->next = op;
	vd->live.prev = op;
}

static inline void vb_live_del(struct vb_op *op)
{
	op->prev->next = op->next;
	op->next->prev = op->prev;
	op->next = op->prev = NULL;
}

extern const struct fab_ops fab_verbs_ops;

/* fab_verbs_domain.c: open and close */
int fab_verbs_open(const char *prov, const struct fab_opts *opts,
		   struct fab_domain **out);
void fab_verbs_close(struct fab_domain *d);
/* Lock held; listener bound: what the device offers, first time or not. */
int vb_query_caps(struct vb_domain *vd, bool first);
/* Lock held: protection domain, channel, queues on vd->ctx. */
int vb_open_queues(struct vb_domain *vd);
/* Lock held: register the message buffers, post the receives due. */
int vb_open_bufs(struct vb_domain *vd);
/* Lock held: release what the domain holds on its device (not QPs). */
void vb_dev_free(struct vb_domain *vd);

/* fab_verbs.c */
/* Register m (buf, len, flags) on vd's PD: the ibv_mr, or NULL (errno). */
struct ibv_mr *vb_mr_make(struct vb_domain *vd, const struct vb_mr *m);

/* fab_verbs_reset.c; lock held unless said */
/* The device was removed or failed: fail everything with -ENODEV. */
void vb_dev_lost(struct vb_domain *vd);
/* Lock not held: release a lost device's resources, or try to come back. */
void vb_dev_tick(struct vb_domain *vd);
/* fab_verbs_cm.c: connections; lock held */
/* Start a connection to peer (checked: a sockaddr of ours to reach). */
int vb_conn_start(struct vb_domain *vd, const struct fab_addr *peer,
		  struct vb_conn **out);
/* Put c in error: queued slots fail with status, the device flushes. */
void vb_conn_fail(struct vb_domain *vd, struct vb_conn *c, int status);
/* Handle what the connection manager reports; 0 or -errno. */
int vb_cm_events(struct vb_domain *vd);
/*
 * Unlink the failed connections nothing uses or holds any more: a list
 * through ->next for vb_conns_destroy(), which runs without the lock.
 */
struct vb_conn *vb_conn_reap(struct vb_domain *vd);
void vb_conns_destroy(struct vb_conn *dead);

/* fab_verbs_async.c */
/* Join or leave the process's domains that events are handed to. */
void vb_async_add(struct vb_domain *vd);
void vb_async_del(struct vb_domain *vd);
/* Read the device's events and hand them over; n or -errno. */
int vb_async_read(struct vb_domain *vd);
/* Lock held: fail the connections events handed to vd concern. */
void vb_async_apply(struct vb_domain *vd);
/* The domain's port is not active now, as the device says. */
bool vb_port_down(struct vb_domain *vd);

/* fab_verbs_cq.c; lock held unless said */
void vb_ring_push(struct vb_domain *vd, const struct fab_cqe *c);
void vb_wake(struct vb_domain *vd);
void vb_op_free(struct vb_domain *vd, struct vb_op *op);
/* Report op failed now; the slot stays ABANDONED while the device has it. */
void vb_op_abandon(struct vb_domain *vd, struct vb_op *op, int status);
/* Hand a slot to its connection's send queue: 0 or -errno. */
int vb_op_post(struct vb_domain *vd, struct vb_op *op);
/* Post QUEUED slots whose connection is up and has room. */
void vb_post_queued(struct vb_domain *vd);
int vb_post_rx(struct vb_domain *vd, struct vb_rx *rx);
/* Lock not held: sweep deferred releases once slots came back. */
void vb_after(struct vb_domain *vd);
void *vb_progress(void *arg);
/* Closing, lock not held: read the CQ until nothing is held or until. */
void vb_drain_held(struct vb_domain *vd, uint64_t until);
int vb_poll(struct fab_domain *d, struct fab_cqe *cqes, int max,
	    int timeout_ms);
bool vb_mem_busy(const struct fab_domain *d, const void *addr, size_t len);

#endif /* FERRY_FABRIC_FAB_VERBS_H */
