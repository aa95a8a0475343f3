/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_DST_H
#define FERRY_MIGRATION_MIG_DST_H

#include "migration/mig_int.h"
#include "migration/mig_retain.h"

/*
 * The destination: its puller thread (mig_dst.c), its inbox
 * (mig_dst_inbox.c) and primitives (mig_dst_io.c), post-copy (mig_post*.c),
 * checksums (mig_csum.c) and its control-thread side (mig_dst_ctl.c).
 */

/* Log about the destination thread d: "ID (VM from PEER): ..." */
#define dst_err(d, fmt, ...)                                                  \
	pr_err("%" PRIu64 " (%s from %s): " fmt, (d)->id, (d)->vm, (d)->peer, \
	       ##__VA_ARGS__)
#define dst_info(d, fmt, ...)                                                  \
	pr_info("%" PRIu64 " (%s from %s): " fmt, (d)->id, (d)->vm, (d)->peer, \
		##__VA_ARGS__)

/* mig_dst*.c: the destination's puller thread */

#define MIG_WINDOW 32 /* reads in flight */
#define MIG_READY_NS (500 * 1000000ULL) /* READY again this often */
/* What a source may have queued at a destination's thread at once. */
#define MIG_INBOX_MSGS 4096U
#define MIG_INBOX_BYTES (64ULL << 20)

struct mig_qmsg {
	struct proto_msg *m;
	struct mig_qmsg *next;
};

struct mig_slot {
	uint64_t start, pages; /* a DELTA_SET chunk: offset and bytes */
	uint64_t t_post;
	struct rly_read rd; /* a run of pages: as the scheduler gave it */
	bool used;
	bool delta;
	bool posted; /* post-copy: a read in flight (else one to repost) */
};

/* A holder the thread pulls from: the source (RLY_SOURCE) or a relay. */
struct mig_holder {
	char node[PROTO_NAME_MAX + 1];
	struct fab_ep *ep; /* a relay's; the source's is mig_dst.ep */
	struct fab_rkey rk; /* a relay's; the source's is mig_dst.rk */
	struct fab_addr addr; /* a relay's; the source's is mig_dst.src_addr */
	uint64_t bytes; /* pulled from it (not counting faults) */
};

struct mig_dst {
	/* fixed before the thread starts */
	struct mig_env *n;
	uint64_t id;
	char vm[PROTO_NAME_MAX + 1];
	char peer[PROTO_NAME_MAX + 1];
	uint64_t pages;
	uint32_t vcpus;
	enum kva_accel accel; /* the source's: kvm or user */
	enum proto_mode mode;
	uint64_t started; /* unix time, for the record */
	char sock[MIG_DIR_MAX + 80];
	int efd; /* wakes the thread */
	pthread_t thread;
	struct mig_fabs *fabs; /* its domains: the thread's until joined */

	pthread_mutex_t lock; /* everything down to "thread only" */
	struct mig_qmsg *in, **in_tail, *out, **out_tail;
	unsigned in_n; /* messages in the inbox */
	size_t in_bytes; /* and the memory they hold (proto_msg_size()) */
	bool stop;
	bool stop_always; /* also once the VM runs here (shutdown) */
	char stop_reason[256];
	struct mig_sm *sm; /* the migration's: mig_dst_to() moves it */
	char reason[512];
	uint32_t round;
	uint64_t gen, pages_valid, pages_pulled, bytes, verified;
	struct proto_pc_stats pcs; /* post-copy: the last PC_STATS */
	uint64_t t_resumed; /* post-copy: since when the VM runs here */
	uint64_t stall_t0; /* post-copy: the holder is lost since; 0 */
	bool done; /* the thread ended */
	bool handed; /* committed: kc and pid are the node's now */
	struct kva_client *kc_out;
	pid_t pid_out;
	pid_t pid_pub; /* the incoming ferry-vm, for `ferry vms` */
	bool spawned; /* we started it: its stale socket is ours to remove */

	/* thread only */
	struct fab_domain *fab; /* its reads': fabs->pull */
	struct kva_client *kc;
	pid_t pid;
	uint8_t *map;
	struct fab_mr *mr;
	struct fab_ep *ep;
	struct fab_rkey rk;
	/*
	 * Every key table a holder's map gave (mig_dst_rkey()): an rkey that
	 * the fault server copied may still point into an older one.
	 */
	struct fab_keyrun **keytabs;
	size_t nkeytabs;
	uint64_t *need;
	struct rly *rly; /* which holder each read goes to (need is its) */
	struct mig_holder hold[RLY_HOLDERS_MAX]; /* by the scheduler's index */
	unsigned nhold;
	/* RETARGET came: drain the reads, then serve our copy as a relay */
	bool retarget;
	bool released; /* the source released the relay (its ABORT) */
	struct fab_mr *rmr; /* our copy, registered for the relay's readers */
	/*
	 * Our kept copy of the VM (it comes back), fixed before the start:
	 * adopted (pre-copy: the incoming VM runs on its memfd, ram_fd until
	 * spawned, and a page current in it needs nothing), else kept and
	 * local_map to copy current pages from.
	 */
	uint64_t lineage;
	struct mig_kept *kept;
	int ram_fd;
	bool adopted;
	const uint8_t *local_map;
	uint64_t local_key;
	/* what of it the source says is current, at which generation */
	uint64_t *local_cur, local_gen, local_bytes;
	/* in the commit window: the copies peers keep (mig_retain.h) */
	struct mig_ref refs[MIG_REFS_MAX + 1];
	unsigned nrefs;
	bool tracked; /* the dirty log was cleared before the VM ran */
	struct pc_pop *pop; /* maps announced pages in ahead of the reads */
	uint64_t pending; /* pages announced and not pulled yet */
	uint64_t cursor;
	unsigned inflight;
	uint64_t inflight_pages;
	struct codec_window win;
	struct mig_slot slots[MIG_WINDOW];
	/* a DELTA_SET being pulled into dbuf, then applied */
	bool djob;
	uint8_t *dbuf;
	size_t dlen, dposted, ddone;
	uint64_t dpages;
	struct fab_mr *dmr;
	struct fab_rkey drk;
	uint64_t *csums; /* the source's, for --verify */
	uint64_t csums_got;
	struct fy_run vq[64]; /* VERIFY chunks not compared yet */
	unsigned nvq;
	uint64_t vbad, vfirst, vdone; /* mismatches, first one, compared */
	void *blob;
	size_t blob_len;
	uint64_t ready_ns; /* READY last sent; 0: not ready */
	uint64_t t_ready; /* the state was loaded */
	unsigned readies; /* READYs sent */
	bool resume; /* the source's RESUME came */
	uint64_t last_progress_ns;
	bool progress_dirty;
	bool quiet_abort; /* the source ended it: no ABORT back */
	/* post-copy (mig_post*.c) */
	struct fab_addr src_addr; /* the holder: the source */
	uint64_t *seen; /* pages ever announced; the others are holes */
	struct nd_post *post;
};

/* The thread's body (arg: its struct mig_dst). */
void *mig_dst_thread(void *arg);
/*
 * mig_dst_inbox.c. Thread: take the source's messages queued so far, in
 * order, and free them; 0, or -1 once d fails (a message, or a stop).
 */
int mig_dst_drain(struct mig_dst *d);
/* Thread: queue msg (taken) for the source. */
void mig_dst_out(struct mig_dst *d, struct proto_msg *msg);
/*
 * The thread's transition function: move to state `to` (under the lock),
 * log, record, wake the control thread. -EINVAL for a move the table does
 * not have: the state stays, the caller fails the migration.
 */
int mig_dst_to(struct mig_dst *d, enum mig_dst_state to, const char *why);
/* Does d's state imply any of flags? Thread only. */
bool mig_dst_has(const struct mig_dst *d, unsigned flags);
/* COMMIT or RESUMED (or any mig + gen message) at d's generation; NULL: OOM. */
struct proto_msg *mig_dst_gen_msg(struct mig_dst *d, enum proto_type t);
/* Thread: the first reason to give up wins; returns -1. */
int mig_dst_fail(struct mig_dst *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * mig_post_begin.c, the destination's post-copy. Prepare (with the source's
 * holder map, while nothing waits): the fault server's domain, endpoint
 * and our staging buffer. 0 or -errno.
 */
int mig_post_prepare(struct mig_dst *d);
/*
 * All pre-copy reads are in and STATE came: start the fault server, load
 * the state, resume the VM here. 0, or -1 (failed before the VM ran: the
 * source resumes it).
 */
int mig_post_begin(struct mig_dst *d);
/* Stop the fault server and free what post-copy made; the VM runs on. */
void mig_post_end(struct mig_dst *d);
/*
 * mig_post.c. One turn of the background puller, waiting up to 1 ms: 0
 * while pages are missing, 1 once every page is here and the uffd is
 * released, -1 when the VM is gone.
 */
int mig_post_step(struct mig_dst *d);
/* A new address or key of the holder (its ferryd restarted). */
void mig_post_holder(struct mig_dst *d);

/*
 * mig_dst_relay.c: the holders beyond the source. A relay's HOLDER_MAP
 * (another node's than the source's): connect, and let the scheduler read
 * from it; a map that does not fit, or a relay that cannot be reached, is
 * logged and left out. 0 or -1 (d failed).
 */
int mig_dst_add_relay(struct mig_dst *d, const struct proto_holder_map *h);
/*
 * The rkey of a holder's region r; its key table, if any, is kept until
 * the migration is freed. 0 or -ENOMEM.
 */
int mig_dst_rkey(struct mig_dst *d, const struct proto_holder_region *r,
		 struct fab_rkey *rk);
/* Holder h's endpoint and key (the source's or a relay's). */
struct fab_ep *mig_dst_holder_ep(struct mig_dst *d, unsigned h,
				 const struct fab_rkey **rk);
/* A read from relay h failed with status: it is down (logged once). */
void mig_dst_relay_failed(struct mig_dst *d, unsigned h, int status);
/* Close the relays' endpoints (cleanup). */
void mig_dst_relays_close(struct mig_dst *d);
/* PROGRESS's bytes per holder, into p (allocated); false: out of memory. */
bool mig_dst_holder_bytes(struct mig_dst *d, struct proto_progress *p);
/*
 * A HOLDER_MAP of a copy that a node keeps: ours (the VM comes back: its
 * current pages are copied here, not read), or, in the commit window, one
 * to remember with the VM. 0 or -1 (d failed).
 */
int mig_dst_kept_map(struct mig_dst *d, const struct proto_holder_map *h);
/*
 * Page p is announced at gen: if our kept copy holds it current, copy it
 * into the VM and return true (it is not needed). Thread.
 */
bool mig_dst_local_page(struct mig_dst *d, uint64_t p, uint64_t gen);
/*
 * KEPT: the source keeps its copy, as its HOLDER_MAP gave it, after this
 * post-copy: a copy current for every page, kept with the VM. 0 or -1.
 */
int mig_dst_kept_src(struct mig_dst *d);
/*
 * Before the VM first runs here (its state loaded): clear its dirty log,
 * which from then on says what the guest changed here (copies kept
 * elsewhere are current for the rest; mig_retain.c); d->tracked.
 */
void mig_dst_arrival(struct mig_dst *d);
/*
 * SWITCHOVER with adopted RAM: every page never announced is a hole at
 * the source, so drop what the kept copy had there. 0, or -1 (failed).
 */
int mig_dst_trim(struct mig_dst *d);
/* A HOLDER_MAP of our RAM registered as mr, with no runs; NULL: OOM. */
struct proto_msg *mig_dst_map_msg(struct mig_dst *d, const struct fab_mr *mr);
/*
 * RETARGET came and every read is in: register our copy for remote reads,
 * send its HOLDER_MAP to the source, become a relay. 0 or -1 (d failed).
 */
int mig_dst_relay_begin(struct mig_dst *d);

/*
 * mig_fab.c, the incoming migrations' fabric domains. Control thread: a
 * free set for a new incoming migration, NULL if none; give it back once
 * its thread is joined (completions nobody took are dropped). NULL: none.
 */
struct mig_fabs *mig_fabs_take(struct mig_env *n);
void mig_fabs_put(struct mig_fabs *f);
/* Control thread, from its tick: poll the free sets' fault domains. */
void mig_fabs_tick(struct mig_env *n);
/*
 * Thread: d's domain for its reads, or (fault) for its fault server,
 * opened on first use and kept in d->fabs. 0 and *out, or -errno.
 */
int mig_fabs_open(struct mig_dst *d, bool fault, struct fab_domain **out);
/* mig_close(), every thread joined: close every domain. */
void mig_fabs_close(struct mig_env *n);

/* Wake the side polling eventfd fd. */
void mig_kick(int fd);

/* Start the puller thread for a MIGRATE_PREPARE; it spawns the VM. */
int mig_dst_start(struct mig *m, const struct proto_migrate_prepare *p);
/*
 * A peer's MIGRATE_PREPARE: refuse it with an ERROR (rate, ids, mode,
 * accelerator, names, max_incoming) or start the migration.
 */
void mig_dst_prepare(struct mig_env *n, struct mig_peer *p,
		     struct proto_msg *msg);
/* Hand a message from the source to the thread; takes msg. */
void mig_dst_push(struct mig *m, struct proto_msg *msg);
/*
 * Control thread: send what the thread queued for the source and take
 * over its news (phase, counters, the VM once committed). Returns true
 * once the thread has ended and was joined.
 */
bool mig_dst_poll(struct mig *m);
/*
 * Ask the thread to give up (it cleans up everything), with a reason. Once
 * the VM runs here (post-copy) only `always` (a shutdown) stops it, and
 * the VM is left running.
 */
void mig_dst_stop(struct mig *m, const char *reason, bool always);
/* Join and free (after mig_dst_poll() returned true or at shutdown). */
void mig_dst_free(struct mig *m);

#endif /* FERRY_MIGRATION_MIG_DST_H */
