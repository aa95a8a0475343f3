/* SPDX-License-Identifier: MIT */
#ifndef FERRY_FABRIC_FAB_OFI_H
#define FERRY_FABRIC_FAB_OFI_H

#include <time.h>

#include "fabric/fabric_int.h"

/*
 * libfabric backend internals, shared by fab_ofi.c (memory, endpoints,
 * posting), fab_ofi_domain.c (open, close) and fab_ofi_cq.c (completions,
 * deadlines, progress).
 */

#define OFI_VERSION FI_VERSION(1, 17)
#define OFI_MAX_OPS 1024 /* cap on operations in flight per domain */
#define OFI_NRX 64 /* receive buffers kept posted */
#define OFI_NSBUF 64 /* send bounce buffers */
#define OFI_CQ_BATCH 32
#define OFI_APP_HOLD_NS 5000000ULL /* app polled recently: it drives */
#define OFI_POLL_SPIN_NS 200000ULL /* fab_poll() spins this long, then waits */
#define OFI_IDLE_WAIT_MS 20 /* block granularity: deadline checks */
#define OFI_IDLE_SLEEP_MIN_NS 50000L /* providers without a wait fd */
#define OFI_IDLE_SLEEP_MAX_NS 1000000L
#define OFI_CONTENDED_NS 1000000ULL /* an empty CQ read this slow spun */
#define OFI_CONTENDED_SLEEP_MAX_NS 100000000L
#define NSEC 1000000000ULL

/* MR modes we can honour; whatever subset the provider returns is obeyed. */
#define OFI_MR_MODES                                                        \
	(FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_PROV_KEY | FI_MR_ALLOCATED | \
	 FI_MR_ENDPOINT)

/*
 * QUEUED: refused by the provider while its endpoint's connection was being
 * made, or handed back failed by an inherited connection (struct ofi_ep,
 * inherited); on the posted list (its deadline runs), posted again by
 * fab_ofi_post_queued(). The provider does not hold it.
 */
enum ofi_op_state { OP_FREE, OP_POSTED, OP_QUEUED, OP_ABANDONED };

struct ofi_ep;

struct ofi_op {
	struct fi_context2 fictx; /* what the provider sees */
	struct ofi_op *next, *prev; /* posted list, or free list (next) */
	struct ofi_ep *ep; /* NULL once abandoned */
	struct ofi_ep *owner; /* its endpoint, until the provider returns it */
	void *ctx;
	uint64_t deadline;
	/* what the provider is given: buf may be written or read until FREE */
	void *buf; /* read or write: the caller's; send: our bounce buffer */
	size_t len;
	void *desc;
	uint64_t raddr, key; /* read or write */
	int sbuf; /* send bounce buffer index or -1 */
	uint8_t op; /* enum fab_op */
	uint8_t state; /* enum ofi_op_state */
	bool again; /* posted again after an inherited connection failed */
};

struct ofi_rx {
	struct fi_context2 fictx;
	void *buf;
	struct ofi_rx *next; /* lent to the application, to repost */
};

struct ofi_ep {
	struct fab_ep base; /* first */
	struct fab_addr peer;
	fi_addr_t fa; /* shared by the endpoints to one peer (ofi_connect()) */
	bool failed; /* timed out or connection lost: refuses new operations */
	/*
	 * Closed while the provider still held some of its operations:
	 * fi_av_remove() with operations in flight crashes ofi_rxm, so the
	 * address stays until the last one comes back (see ofi_ep_close()).
	 */
	bool closed;
	/*
	 * The provider accepted an operation: its connection is made, and
	 * -FI_EAGAIN from now on means a full queue (atomic).
	 */
	bool up;
	/*
	 * Connected while a closed endpoint to the same peer still held
	 * operations: it shares that endpoint's connection, which may be
	 * failing (the peer dropped it, or the stream broke, while those
	 * reads were in flight). Until one of its operations succeeds, one
	 * that fails with a connection error is posted again over a new
	 * connection (renew), once, instead of failing the endpoint.
	 */
	bool inherited;
	/* such an operation waits: the address goes and comes back once
	 * the provider holds nothing at it (fab_ofi_reap()) */
	bool renew;
	unsigned held; /* operations posted and not yet returned */
	unsigned nqueued; /* of which QUEUED; later ones queue behind */
	unsigned refused_round; /* fab_ofi_post_queued(): refused this round */
	struct ofi_ep *next, *prev;
};

struct ofi_mr {
	struct fab_mr base; /* first */
	struct fid_mr *mr;
	struct ofi_mr *next, *prev;
};

struct ofi_domain {
	struct fab_domain base; /* first */
	char provider[64];
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	uint64_t mr_mode;
	bool has_source; /* FI_SOURCE: RECV completions name the sender */
	bool verbs; /* verbs;ofi_rxm: RC queue pairs on an RDMA device */
	/*
	 * verbs: the device went away (-ENODEV). libfabric keeps it and
	 * crashes tearing down what sat on it, so from here nothing of the
	 * provider's is closed: leaked until the process exits.
	 */
	bool dev_gone; /* under lock */
	int wait_fd; /* the CQ's wait fd, or -1 */
	int kick_fd; /* eventfd waking the progress thread */
	uint64_t timeout_ns;
	uint64_t spin_ns; /* progress thread: keep polling after activity */
	size_t key_size; /* mr_key_size: bytes of a requested key, 1..8 */
	struct fab_addr addr;

	/* buffers for receives and sends, one registration */
	char *bufs;
	struct fid_mr *bufs_mr;
	void *bufs_desc;

	pthread_mutex_t lock; /* everything below */
	pthread_cond_t cond; /* cqes were queued */
	int waiters; /* apps waiting on cond */
	int fd_waiters; /* apps blocked on wait_fd (woken with kick_fd) */
	struct ofi_op *ops;
	unsigned nops;
	struct ofi_op *free_ops;
	struct ofi_op posted; /* list head, in deadline order */
	unsigned nposted; /* slots on it: each owes the ring one cqe */
	unsigned nqueued; /* QUEUED slots among them; peeked at atomically */
	unsigned round; /* fab_ofi_post_queued() calls */
	/*
	 * Slots taken and not yet free: the provider (or our queue) holds
	 * them, and their buffers may still be written. Atomic.
	 */
	uint64_t held;
	bool freed; /* atomic: a held slot was freed since fab_ofi_after() */
	struct fab_cqe *ring;
	unsigned ring_cap, ring_head, ring_len;
	struct ofi_rx rx[OFI_NRX];
	/* lent and reap: stored atomically, peeked at without the lock */
	struct ofi_rx *lent;
	int sbuf_free[OFI_NSBUF];
	unsigned nsbuf_free;
	struct ofi_ep eps; /* list head */
	struct ofi_ep zombies; /* closed, held > 0: list head */
	struct ofi_ep *reap; /* closed and released: fi_av_remove them */
	bool renew; /* an endpoint waits to renew its address (atomic) */
	struct ofi_mr mrs; /* list head */

	/* progress thread */
	pthread_t pt;
	bool pt_running;
	int stop;
	struct fab_park park; /* held while the app is in fab_poll */
	clockid_t pt_clock;
};

static inline int ofi_err(ssize_t ret)
{
	/* libfabric's -FI_E* equal -errno for every code it shares with it */
	if (ret >= 0)
		return 0;
	if (ret <= -FI_ERRNO_OFFSET)
		return -EIO;
	return (int)ret;
}

static inline struct ofi_domain *ofi_od(const struct fab_domain *d)
{
	return container_of(d, struct ofi_domain, base);
}

/* Take a POSTED slot off the posted list; od->lock held. */
static inline void ofi_op_unlink(struct ofi_domain *od, struct ofi_op *op)
{
	od->nposted--;
	op->prev->next = op->next;
	op->next->prev = op->prev;
	op->next = op->prev = NULL;
}

/* Queue a POSTED slot the provider has not seen, or gave back; lock held. */
static inline void ofi_op_queue(struct ofi_domain *od, struct ofi_op *op)
{
	op->state = OP_QUEUED;
	op->ep->nqueued++;
	__atomic_store_n(&od->nqueued, od->nqueued + 1, __ATOMIC_RELAXED);
}

/* A QUEUED slot leaves the queue (posted, or to be freed); od->lock held. */
static inline void ofi_op_unqueue(struct ofi_domain *od, struct ofi_op *op)
{
	op->owner->nqueued--;
	__atomic_store_n(&od->nqueued, od->nqueued - 1, __ATOMIC_RELAXED);
}

/*
 * fab_ofi.c: remove released endpoints (and addresses), renew the
 * addresses endpoints wait for (struct ofi_ep, renew); lock not held
 */
void fab_ofi_reap(struct ofi_domain *od);
/* verbs: an operation met -ENODEV: see dev_gone (lock held). */
void fab_ofi_dev_gone(struct ofi_domain *od);
/* Register buf; report ep's operations cancelled, forget ep (lock held). */
int fab_ofi_mr_make(struct ofi_domain *od, void *buf, size_t len,
		    uint64_t access, struct fid_mr **out);
void fab_ofi_ep_abandon(struct ofi_domain *od, struct ofi_ep *ep);
/* fab_ofi_domain.c: fab_ofi_ops' open and close */
int fab_ofi_open(const char *prov, const struct fab_opts *opts,
		 struct fab_domain **out);
void fab_ofi_close(struct fab_domain *d);
/*
 * fab_ofi_cq.c. Hand a slot's operation to the provider, to fa (its
 * endpoint's address, which the caller passes: once posted the op may
 * complete and be freed by another thread, so nothing of it is read
 * after): 0 or -FI_E*. Post QUEUED operations again (their connection
 * may be up now), lock not held: returns how many completed with an error
 * instead.
 */
ssize_t fab_ofi_op_post(struct ofi_domain *od, struct ofi_op *op, fi_addr_t fa);
/*
 * Report op (lock held) as failed with status: its slot is freed at once
 * if the provider never saw it, else kept ABANDONED until it comes back.
 */
void fab_ofi_op_abandon(struct ofi_domain *od, struct ofi_op *op, int status);
int fab_ofi_post_queued(struct ofi_domain *od);
bool fab_ofi_mem_busy(const struct fab_domain *d, const void *addr, size_t len);
/* After slots may have been freed, lock not held: reap, sweep releases. */
void fab_ofi_after(struct ofi_domain *od);
/* fab_ofi_cq.c; od->lock held for ring_push, op_free and wake */
void fab_ofi_ring_push(struct ofi_domain *od, const struct fab_cqe *c);
void fab_ofi_wake(struct ofi_domain *od);
void fab_ofi_op_free(struct ofi_domain *od, struct ofi_op *op);
int fab_ofi_post_rx(struct ofi_domain *od, struct ofi_rx *rx);
void *fab_ofi_progress(void *arg);
/* Closing: read the CQ until od->held is 0 or fy_now_ns() is past until. */
void fab_ofi_drain_held(struct ofi_domain *od, uint64_t until);
int fab_ofi_poll(struct fab_domain *d, struct fab_cqe *cqes, int max,
		 int timeout_ms);

#endif /* FERRY_FABRIC_FAB_OFI_H */
