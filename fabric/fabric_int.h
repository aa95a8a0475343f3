/* SPDX-License-Identifier: MIT */
#ifndef FERRY_FABRIC_FABRIC_INT_H
#define FERRY_FABRIC_FABRIC_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* before rdma/fabric.h, whose container_of() yields to ours */
#include "common/util.h"

#include <rdma/fabric.h>

#include "fabric/fabric.h"

/*
 * Backends implement struct fab_ops. Each backend object embeds the base
 * struct (fab_domain, fab_mr, fab_ep) as its FIRST member and recovers its
 * own type with container_of(). fab.c does what every backend shares:
 * parsing the provider string, argument and range checks, statistics.
 */

struct fab_ops {
	const char *name; /* "ofi", "verbs" */
	/* prov: the part after "ofi:" (or NULL); opts already defaulted */
	int (*open)(const char *prov, const struct fab_opts *opts,
		    struct fab_domain **out);
	const char *(*provider)(const struct fab_domain *d);
	void (*addr)(const struct fab_domain *d, struct fab_addr *out);
	/* CPU time spent by the progress thread, in ns */
	uint64_t (*progress_cpu_ns)(const struct fab_domain *d);
	int (*reg_mr)(struct fab_domain *d, void *buf, size_t len,
		      unsigned access, struct fab_mr **out);
	int (*dereg_mr)(struct fab_mr *mr);
	int (*connect)(struct fab_domain *d, const struct fab_addr *peer,
		       struct fab_ep **out);
	void (*ep_close)(struct fab_ep *ep);
	/* range and length checks are done; addr is rk->addr + off */
	int (*read)(struct fab_ep *ep, void *buf, size_t len, struct fab_mr *mr,
		    uint64_t addr, uint64_t key, void *ctx);
	int (*write)(struct fab_ep *ep, const void *buf, size_t len,
		     struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx);
	int (*send)(struct fab_ep *ep, const void *buf, size_t len, void *ctx);
	int (*poll)(struct fab_domain *d, struct fab_cqe *cqes, int max,
		    int timeout_ms);
	/* fab_mem_busy(); any thread */
	bool (*mem_busy)(const struct fab_domain *d, const void *addr,
			 size_t len);
	void (*close)(struct fab_domain *d);
};

struct fab_rel;

/* Base of every backend's domain. */
struct fab_domain {
	const struct fab_ops *ops;
	/* updated with __atomic builtins: stats may be read from any thread */
	struct fab_stats stats;
	/*
	 * Registering pins (and so faults in) every page: the backend sets it
	 * at open. Guest RAM registered FAB_ACCESS_HOLES for local use is then
	 * reached through bounce buffers instead (fab_bounce.c).
	 */
	bool pins;
	struct fab_bounce *bounce; /* made at the first need (fab_bounce.c) */
	/*
	 * How long after its registration goes a peer's read may still be
	 * answered from the memory: our own process sends the answer (tcp),
	 * and one already begun goes on (fab_release.c). 0: the device or
	 * the peer copies, and deregistering ends it (verbs, shm).
	 */
	uint64_t serve_late_ns;
	/* fab_release.c: memory handed over while busy */
	pthread_mutex_t rel_lock;
	struct fab_rel *rel; /* under rel_lock */
	unsigned nrel; /* entries on rel; written under rel_lock, peeked at */
	uint64_t rel_due; /* atomic: the next timed release falls due; 0 */
	/* fab_sparse.c: operations split across a sparse rkey's runs */
	pthread_mutex_t split_lock;
	struct fab_split *split; /* under split_lock */
	unsigned nsplit; /* entries on split; written under split_lock */
};

/* Base of every backend's registration. */
struct fab_mr {
	struct fab_domain *d;
	void *buf;
	size_t len;
	struct fab_rkey rkey; /* filled by the backend at registration */
	unsigned access; /* fab_access bits */
	bool bounce; /* no backend registration: fab_bounce.c */
	struct fab_sparse *sparse; /* registered in parts: fab_sparse.c */
};

/* Base of every backend's endpoint. */
struct fab_ep {
	struct fab_domain *d;
};

/* the backends */
extern const struct fab_ops fab_ofi_ops;
extern const struct fab_ops fab_verbs_ops;

/*
 * fab_park.c: a progress thread parked while the application polls. The
 * application holds it until a time (fy_now_ns()), or wakes it to hand
 * progress back; fab_park_wait() sleeps while held (returns true) and
 * returns false at once otherwise.
 */
struct fab_park {
	uint64_t until; /* atomic */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};
void fab_park_init(struct fab_park *p);
void fab_park_destroy(struct fab_park *p);
void fab_park_hold(struct fab_park *p, uint64_t until);
void fab_park_wake(struct fab_park *p);
bool fab_park_wait(struct fab_park *p, const int *stop);

/*
 * A backend's fab_poll() loop's time. The first pass goes by the tick's
 * (fy_coarse_ns(); deadlines are set by it), so that a poll which finds a
 * completion at once reads no clock device: 2 to 6 us in the test VM
 * (clocksource hpet), as much as the rest of such a poll. From the second
 * pass on, the clock's; start is then its first reading.
 */
struct fab_poll_time {
	uint64_t now, start, until;
};

static inline struct fab_poll_time fab_poll_time_init(void)
{
	return (struct fab_poll_time){ .now = fy_coarse_ns(),
				       .until = UINT64_MAX };
}

/* After an empty pass: read the clock; false once timeout_ms has run out. */
static inline bool fab_poll_time_next(struct fab_poll_time *t, int timeout_ms)
{
	t->now = fy_now_ns();
	if (!t->start) {
		t->start = t->now;
		if (timeout_ms > 0)
			t->until = t->now + (uint64_t)timeout_ms * 1000000ULL;
	}
	return t->now < t->until;
}

/* The application's hold on its progress thread: hold_ns from now. */
static inline void fab_poll_hold(struct fab_park *p,
				 const struct fab_poll_time *t,
				 uint64_t hold_ns)
{
	/* the tick's time may be behind */
	fab_park_hold(p, t->now + hold_ns + (t->start ? 0 : FY_COARSE_LAG_NS));
}

/* fab_bounce.c: guest RAM on a domain whose registrations pin */
struct fab_bounce;
int fab_bounce_reg(struct fab_domain *d, struct fab_mr **out);
/* A read or write through a bounce slot; as the backend's, or -EAGAIN. */
int fab_bounce_rma(struct fab_ep *ep, bool write, void *buf, size_t len,
		   uint64_t addr, uint64_t key, void *ctx);
/* In fab_poll(): finish a bounced operation's cqe (copy, caller's ctx). */
void fab_bounce_done(struct fab_domain *d, struct fab_cqe *c);
/* Whether a bounced operation may still write into [addr, addr + len). */
bool fab_bounce_busy(const struct fab_domain *d, const void *addr, size_t len);
/* After the backend closed the domain (which deregistered the arena). */
void fab_bounce_free(struct fab_bounce *b);

/* fab.c: one operation, through a bounce slot where mr is one */
int fab_rma(struct fab_ep *ep, bool write, void *buf, size_t len,
	    struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx);

/* fab_sparse.c: guest RAM peers read on a domain whose registrations pin */
struct fab_sparse;
struct fab_split;
/* A registration of [buf, buf + len) with no part registered yet. */
int fab_sparse_reg(struct fab_domain *d, void *buf, size_t len, unsigned access,
		   struct fab_mr **out);
void fab_sparse_rkey(const struct fab_mr *mr, struct fab_rkey *out);
int fab_sparse_grow(struct fab_mr *mr, uint64_t off, uint64_t len);
int fab_sparse_dereg(struct fab_mr *mr);
/* An operation on a sparse rk, one part per run it touches; as fab_read(). */
int fab_split_rma(struct fab_ep *ep, bool write, void *buf, size_t len,
		  struct fab_mr *mr, const struct fab_rkey *rk, uint64_t off,
		  void *ctx);
/*
 * In fab_poll(), before the backend's poll: post parts that found no room,
 * and hand back split operations finished without a part in flight (into
 * c, at most max). *retry: some wait for room, poll again soon.
 */
int fab_split_ready(struct fab_domain *d, struct fab_cqe *c, int max,
		    bool *retry);
/* After it: fold the parts' completions among c[0..n) into their whole's. */
int fab_split_done(struct fab_domain *d, struct fab_cqe *c, int n);
void fab_split_ep_close(struct fab_ep *ep);
void fab_split_free(struct fab_domain *d);

/*
 * fab_verbs_domain.c: the IPv4 address of the RDMA device, port and GID
 * entry opts choose (verbs_device, verbs_port, verbs_gid; the first active
 * port's first RoCE v2 entry by default), as text into ip. 0, -ENODATA
 * (no such device) or -EADDRNOTAVAIL (no such address).
 */
int fab_verbs_auto_node(const struct fab_opts *o, char *ip, size_t len);

/* fab_release.c: the domain's deferred releases (fab_mem_release()) */
void fab_release_init(struct fab_domain *d);
/* Release what is no longer busy; no backend lock held. Any thread. */
void fab_release_sweep(struct fab_domain *d);
/* Sweep if a timed release fell due; the backends' passes call it. */
void fab_release_tick(struct fab_domain *d);
/* Closing: release what is not busy, leak the rest with one log line. */
void fab_release_close(struct fab_domain *d);

#endif /* FERRY_FABRIC_FABRIC_INT_H */
