/* SPDX-License-Identifier: MIT */
#ifndef FERRY_FABRIC_FABRIC_H
#define FERRY_FABRIC_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The data plane: domains, registered memory, endpoints to peers, one-sided
 * read and write, small messages and completions. Backends sit behind one ops
 * table and are chosen at run time by the provider string:
 *   "ofi:tcp" (default), "ofi:shm", "ofi:verbs", any "ofi:<libfabric name>",
 *   and "verbs" (rdma-core: librdmacm connections, RC queue pairs).
 * fabric knows nothing of migration; it only borrows memory it registers.
 */

struct fab_domain;
struct fab_ep;
struct fab_mr;

#define FAB_ADDR_MAX 256
#define FAB_MSG_MAX 4096

/* Where a domain can be reached: opaque bytes sent over the control plane. */
struct fab_addr {
	uint32_t len;
	uint8_t bytes[FAB_ADDR_MAX];
};

/* One registered run of a sparse registration (see fab_rkey). */
struct fab_keyrun {
	uint64_t off; /* from the registration's byte 0 */
	uint64_t len;
	uint64_t key;
	uint64_t addr; /* target address of the run's byte 0 */
};

/* What a remote reader needs to reach a registration; travels by copy. */
struct fab_rkey {
	uint64_t addr; /* target address of the region's byte 0 */
	uint64_t len;
	uint64_t key;
	/*
	 * NULL: all of [addr, addr + len) under key. Otherwise a sparse
	 * registration (fab_mr_grow()): only these runs, sorted and disjoint,
	 * are registered, each under its own key, and key is a digest of
	 * them that changes when any of them does. The memory is owned by
	 * whoever filled in the rkey and must outlive the operations on it.
	 */
	const struct fab_keyrun *runs;
	size_t nruns;
};

enum fab_access {
	FAB_ACCESS_READ = 1 << 0, /* peers may read it */
	FAB_ACCESS_WRITE = 1 << 1, /* peers may write it */
	FAB_ACCESS_LOCAL = 1 << 2, /* local buffer of our reads and writes */
	/*
	 * Guest RAM: its holes must stay holes (a post-copy fault must still
	 * find them missing, a punched page must stay punched), so
	 * registering must not fault it in. See fab_bounce.c.
	 */
	FAB_ACCESS_HOLES = 1 << 3,
};

/* How fab_mem_release() gives memory back once nothing can write into it. */
enum fab_release {
	FAB_RELEASE_FREE, /* free(addr): from malloc() */
	FAB_RELEASE_MUNMAP, /* munmap(addr, len): a mapping only we use */
	/*
	 * munmap(addr, len) of a MAP_SHARED mapping whose object others keep
	 * using (a VM's memfd): while something may still write into it,
	 * private anonymous memory is mapped over the range at once, so late
	 * bytes never reach the object.
	 */
	FAB_RELEASE_MUNMAP_SHARED,
};

enum fab_op {
	FAB_OP_READ,
	FAB_OP_WRITE,
	FAB_OP_SEND,
	FAB_OP_RECV,
};

/* One completion. */
struct fab_cqe {
	void *ctx; /* the context given with the operation; NULL for RECV */
	struct fab_ep *ep; /* the endpoint; for RECV the sender if known */
	enum fab_op op;
	int status; /* 0 or -errno */
	size_t len; /* bytes moved */
	const void *buf; /* RECV only: the message, valid until next fab_poll */
};

struct fab_opts {
	const char *provider; /* NULL: "ofi:tcp" */
	/*
	 * Local address to bind; NULL: "127.0.0.1", or for "verbs" and
	 * "ofi:verbs" the IPv4 address in the GID table of the device and
	 * port chosen below.
	 */
	const char *node;
	const char *service; /* port; NULL: any */
	/*
	 * Run a progress thread. Software providers only complete a peer's
	 * read of our memory while we drive progress, so every holder needs it.
	 */
	bool progress_thread;
	/* An operation not completed after this fails with -ETIMEDOUT; 0: 5000 */
	unsigned op_timeout_ms;
	/*
	 * How long the progress thread keeps polling after the last sign of
	 * activity before it blocks again, in µs. 0 (default): block at once;
	 * measured best here for throughput and CPU, about 5 µs slower per
	 * 4 KiB read than spinning 200 µs (docs/fabric.md).
	 */
	int progress_spin_us;
	/*
	 * "verbs", and "ofi:verbs" without node (they choose its address
	 * only; docs/rdma.md). The RDMA device (e.g. "rxe0") and its
	 * port; NULL, 0: the device that owns node, or without node the
	 * first device with an active port. verbs_gid: the GID index whose
	 * IPv4 address is bound when node is NULL, plus one; 0: the first
	 * RoCE v2 entry holding an IPv4 address. With node given, a device
	 * or port that does not own it is an error.
	 */
	const char *verbs_device;
	unsigned verbs_port;
	unsigned verbs_gid;
};

struct fab_stats {
	uint64_t mr_count; /* live registrations */
	uint64_t mr_bytes; /* bytes they cover */
	uint64_t ep_count; /* connected endpoints */
	uint64_t ops_done; /* operations completed, successful or not */
	uint64_t ops_failed; /* of which failed */
	uint64_t progress_cpu_ns; /* CPU time used by the progress thread */
};

/* open */

/*
 * Open a domain: provider, address, completion queue, endpoint(s).
 * Returns 0 and *out, or -ENODATA when the provider is not available here,
 * -EINVAL for a malformed provider string, or another -errno.
 */
int fab_domain_open(const struct fab_opts *opts, struct fab_domain **out);
/* The provider actually in use, e.g. "ofi:tcp;ofi_rxm". Owned by the domain. */
const char *fab_domain_provider(const struct fab_domain *d);
/* The address peers give fab_ep_connect() to reach this domain. */
void fab_domain_addr(const struct fab_domain *d, struct fab_addr *out);
/* Counters; callable from any thread. */
void fab_domain_stats(const struct fab_domain *d, struct fab_stats *out);

/*
 * Register [buf, buf + len) with the given fab_access bits. The caller keeps
 * owning the memory and must not free or unmap it before fab_mr_dereg().
 */
int fab_mr_reg(struct fab_domain *d, void *buf, size_t len, unsigned access,
	       struct fab_mr **out);
/*
 * The descriptor a remote peer needs to read or write this registration.
 * verbs: after the device was removed and came back, every registration
 * is made anew with new keys; fab_mr_rkey() returns the current one. Any
 * thread; for a sparse registration out->runs is the registration's own,
 * valid until the next fab_mr_rkey(), fab_mr_grow() or fab_mr_dereg() of
 * it, which the caller orders.
 */
void fab_mr_rkey(const struct fab_mr *mr, struct fab_rkey *out);
/*
 * Guest RAM registered FAB_ACCESS_READ | FAB_ACCESS_HOLES on a domain whose
 * registrations pin is sparse: fab_mr_reg() registers none of it, and this
 * registers [off, off + len) (widened to whole 2 MiB chunks inside the
 * registration) where it is not yet, so that holes peers never read stay
 * holes. Register what peers may read before they learn of it; the rkey
 * (fab_mr_rkey()) changes. Returns 1 if something was registered, 0 if all
 * of it already was (always, for a registration that is not sparse), or
 * -errno (-ERANGE outside the registration; what was registered before
 * the failure stays). Not concurrently with itself on one registration.
 */
int fab_mr_grow(struct fab_mr *mr, uint64_t off, uint64_t len);

/*
 * Connect to the domain at peer. Returns 0 and *out (owned by the caller,
 * closed by fab_ep_close() or fab_domain_close()), or -errno: "verbs"
 * returns -ENETDOWN while the domain's port is down, -ENODEV while its
 * device is removed or failed (until it is back: docs/rdma.md).
 */
int fab_ep_connect(struct fab_domain *d, const struct fab_addr *peer,
		   struct fab_ep **out);

/* use */

/*
 * Post a one-sided read of len bytes at rk->addr + off on the peer into buf.
 * mr is the registration holding buf (NULL when the provider does not need
 * local registration). Completion arrives from fab_poll() with ctx.
 * Returns 0 (posted: exactly one completion follows), -EAGAIN when there is
 * no room (too many operations in flight or not yet fetched, or the
 * provider's queue is full): retry after fab_poll() returned a completion,
 * or a little later when none of ours is in flight, -ERANGE when
 * [off, off + len) is outside rk (a sparse rk: not all in its runs; one
 * that spans several is split, and completes once all parts have),
 * -ENOTCONN when ep has failed (see
 * fab_ep_close()), "verbs": -ENODEV while the device is gone, or another
 * -errno. The first operations to a peer are
 * accepted while its connection is still being made: the fabric posts them
 * once it is up, from fab_poll() or the progress thread; those that fail
 * because the connection a closed endpoint to the same peer left them was
 * going down are posted once more, on a new one. An operation not
 * completed within op_timeout_ms completes with -ETIMEDOUT. The provider
 * may write into buf after that completion, and after fab_ep_close(): hand
 * it back with fab_mem_release(), or ask fab_mem_busy() before reusing it.
 */
int fab_read(struct fab_ep *ep, void *buf, size_t len, struct fab_mr *mr,
	     const struct fab_rkey *rk, uint64_t off, void *ctx);
/* Like fab_read(), from buf to the peer's memory. */
int fab_write(struct fab_ep *ep, const void *buf, size_t len, struct fab_mr *mr,
	      const struct fab_rkey *rk, uint64_t off, void *ctx);
/*
 * Send a message of at most FAB_MSG_MAX bytes; buf is copied. Returns like
 * fab_read(), or -EMSGSIZE.
 */
int fab_send(struct fab_ep *ep, const void *buf, size_t len, void *ctx);
/*
 * Fetch up to max completions, waiting up to timeout_ms (0: do not wait,
 * -1: forever). Drives progress while it runs. Returns the number fetched,
 * or -errno. A RECV cqe's buf stays valid until the next fab_poll().
 */
int fab_poll(struct fab_domain *d, struct fab_cqe *cqes, int max,
	     int timeout_ms);
/*
 * Whether an operation posted on d may still write into (a read) or read
 * from (a write) some byte of [addr, addr + len): in flight, waiting for
 * its connection, or already completed (-ETIMEDOUT, -ECANCELED) but not
 * yet handed back by the provider. Before reusing a buffer after such a
 * completion. Any thread; addr NULL or len 0: false.
 */
bool fab_mem_busy(const struct fab_domain *d, const void *addr, size_t len);

/* close */

/* Deregister; returns 0 or -errno. Accepts NULL. */
int fab_mr_dereg(struct fab_mr *mr);
/*
 * How long to keep memory peers read (mr registered FAB_ACCESS_READ or
 * _WRITE) as it is after deregistering mr, before unmapping or freeing
 * it, in ns: where the provider answers peers from our process (tcp), an
 * answer it began goes on after the registration went, until the reads
 * that came before are past their deadline (twice op_timeout_ms). 0: at
 * once (verbs, shm; memory for our own use; NULL).
 */
uint64_t fab_mr_serve_late_ns(const struct fab_mr *mr);
/*
 * Close an endpoint; its outstanding operations complete with -ECANCELED
 * at once. The provider may hold some longer (a stalled connection), and
 * late data may land in their buffers until it hands them back: see
 * fab_mem_release() and fab_mem_busy().
 * After an operation on ep timed out or hit a connection error (peer died,
 * peer refused a key) the endpoint refuses new operations (-ENOTCONN):
 * close it and connect again. Accepts NULL.
 */
void fab_ep_close(struct fab_ep *ep);
/*
 * Hand over memory the caller is done with; the fabric owns it from here
 * and gives it back as `how` says, with mr (the registration covering it,
 * or NULL) deregistered first: at once when no operation on d may still
 * write into or read from [addr, addr + len) (fab_mem_busy()), else once
 * the provider has handed the last such operation back (from fab_poll() or
 * the progress thread). At fab_domain_close() what is still busy then is
 * leaked on purpose, with one log line. addr NULL: only mr is deregistered.
 * Memory peers read or write: mr goes at once, so later reads fail at
 * their reader, and the memory is kept as it is for
 * fab_mr_serve_late_ns(mr) first.
 * Any thread; never fails (without memory for the bookkeeping the area is
 * leaked and logged). The caller must not touch addr or mr afterwards.
 */
void fab_mem_release(struct fab_domain *d, void *addr, size_t len,
		     struct fab_mr *mr, enum fab_release how);

/*
 * Close endpoints, stop progress, wait up to op_timeout_ms for what the
 * provider holds, release what fab_mem_release() deferred (or leak it, see
 * there), deregister all memory. Accepts NULL.
 */
void fab_domain_close(struct fab_domain *d);

#endif /* FERRY_FABRIC_FABRIC_H */
