/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_INT_H
#define FERRY_MIGRATION_MIG_INT_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include "codec/codec.h"
#include "common/log.h"
#include "common/util.h"
#include "migration/mig_record.h"
#include "migration/mig_sm.h"
#include "migration/mig_vm.h"
#include "migration/migration.h"
#include "postcopy/postcopy.h"
#include "protocol/protocol.h"
#include "relay/relay.h"

/*
 * Inside the migration engine: a migration (struct mig), the base
 * (mig.c), the source (mig_src.c over mig_src_io.c, mig_start.c,
 * mig_conv.c), records (mig_record.c) and the table's commands
 * (mig_ctl.c). The destination's side is mig_dst.h.
 *
 * The daemon's peers and VMs are reached only through mig_env's host
 * operations (migration.h), so that node/ calls the engine and never the
 * other way round.
 */

/* the destination starts its VM and answers MIGRATE_PREPARE within */
#define MIG_PREPARE_TIMEOUT_NS (30 * 1000000000ULL)
/* MIGRATE_PREPAREs a peer may send: a burst, then one every so often */
#define MIG_PREPARE_BURST 8U
#define MIG_PREPARE_EVERY_S 2U
/* a record's file name: "<peer>-<id>.dst" at the longest */
#define MIG_RECORD_NAME_MAX (PROTO_NAME_MAX + 32)
/* records of ended migrations kept in <state_dir>/migrations */
#define MIG_RECORDS_MAX 256
#define MIG_RECORDS_AGE_S (30 * 86400)

struct mig_opts {
	enum proto_mode mode;
	/* hybrid: go post-copy after this many rounds; 0: when stuck */
	unsigned postcopy_after;
	uint64_t downtime_ms; /* --downtime-limit */
	uint64_t max_bw; /* bytes/s of pulls; 0: no limit */
	bool verify;
	unsigned max_rounds; /* hard cap: fail after that many */
	unsigned stall_rounds; /* rounds without progress before acting */
	enum proto_converge auto_converge;
	uint64_t max_downtime_ms; /* auto-converge raises up to this */
	/* auto-converge by throttle: first step, later steps, ceiling (%) */
	unsigned throttle_initial, throttle_increment, throttle_max;
	uint64_t timeout_s; /* the whole migration */
	bool delta; /* --compress delta */
};

struct mig_dst;

/* A relay of a source migration (mig_src_retarget.c). */
enum mig_relay_state {
	MIG_RELAY_DRAINING, /* RETARGET sent: its HOLDER_MAP to come */
	MIG_RELAY_SERVING, /* its map in hand: each new destination gets it */
	MIG_RELAY_UNTOLD, /* to release once it answers (after our restart) */
	MIG_RELAY_GONE, /* released, or it gave up */
};

struct mig_relay {
	struct mig_peer *peer;
	enum mig_relay_state state;
	uint64_t gen; /* the generation of its copy: ours at RETARGET */
	uint64_t *stale; /* pages it may lack; NULL once its map is trimmed */
	struct proto_msg *map; /* its HOLDER_MAP, trimmed; NULL: none yet */
};

struct mig {
	uint64_t id; /* chosen by the source */
	bool source;
	struct mig_env *n;
	struct mig_peer *peer;
	char vm[PROTO_NAME_MAX + 1];
	struct mig_vm *vmp; /* NULL once the VM left */
	struct mig_opts o;
	struct mig_sm sm; /* mig_state(), mig_to() */
	char reason[512]; /* why it failed */
	uint64_t started_unix;
	uint64_t t_start, t_end, t_pause, last_heard, deadline;
	uint64_t downtime_ns; /* 0: not known */
	/* guest RAM (one region) */
	uint64_t pages;
	uint32_t vcpus;
	enum kva_accel accel; /* the destination's ferry-vm uses it too */
	uint8_t *map;
	struct fab_mr *mr;
	struct fab_rkey map_rk; /* source: what our last HOLDER_MAP said */
	/* progress, both roles (the destination fills it from its thread) */
	uint32_t round;
	uint64_t gen;
	uint64_t pages_valid, pages_pulled, pages_repulled, bytes;
	uint64_t resident; /* pages with data at round 0 */
	double bw; /* bytes/s, measured over whole rounds */
	double live_bw; /* bytes/s of the round in progress */
	uint64_t round_bytes0; /* bytes pulled when the round began */
	double dirty_rate; /* pages/s */
	uint64_t expected_dt_ms, limit_ms;
	uint64_t verified_pages;
	char actions[512]; /* what auto-converge did */
	unsigned throttle_pct; /* the last throttle set; 0: never */
	bool throttled; /* the source VM is throttled now */
	size_t throttle_note; /* where the throttle's text starts in actions */
	uint32_t throttle_round; /* the round after which it began */
	/* source: the round being announced */
	struct fy_run *todo;
	size_t ntodo, todo_pos;
	bool todo_sent; /* the whole round is announced */
	uint64_t announced; /* pages announced, all rounds */
	uint64_t round_pages, round_start_ns, last_harvest_ns;
	uint64_t *sent_bm; /* pages announced at least once */
	uint64_t best_dirty;
	unsigned stall;
	uint64_t pace_next_ns;
	uint64_t expect_bytes; /* D has pulled all announced at this count */
	/*
	 * Source: guest RAM (and the delta cache) registered off the control
	 * thread (mig_start.c) while the migration is NEW; a cancel that came
	 * meanwhile is taken when it is done.
	 */
	pthread_t reg_thread;
	bool reg_running;
	bool reg_done; /* atomic */
	int reg_ret;
	bool cancel_asked;
	/* --verify: checksums computed off the control thread, by chunks */
	pthread_t csum_thread;
	bool csum_running;
	int csum_fd, csum_ret;
	uint64_t *csums;
	uint64_t csum_nchunks, csum_sent;
	uint64_t csum_done; /* atomic: chunks ready */
	bool csum_stop; /* atomic */
	/* source, --compress delta: what D holds, and a round's encodings */
	uint8_t *cache;
	struct fab_mr *cache_mr;
	uint8_t *stage;
	size_t stage_len;
	struct fab_mr *stage_mr;
	uint64_t delta_pages, delta_raw, delta_bytes;
	/* post-copy */
	bool recovered; /* taken up again by a restarted ferryd */
	unsigned resumes; /* RESUMEs sent: the first, then unanswered ones */
	uint64_t t_resumed; /* the VM runs on the destination since */
	struct proto_pc_stats pcs; /* the destination's last PC_STATS */
	uint64_t stall_t0; /* destination: post-copy stalled since; 0 */
	uint64_t lineage; /* the VM's (MIGRATE_PREPARE) */
	bool retain; /* source: our copy is kept after it (mig_retain.c) */
	/* source: each page's generation when it was last announced */
	uint32_t *pgen;
	/* source, retargeted: its relays, as mig_src_retarget.c says */
	struct mig_relay relays[MIG_RELAYS_MAX];
	unsigned nrelays; /* entries used, in the order of the retargets */
	struct proto_holder_bytes hb[PROTO_HOLDERS_MAX]; /* D's PROGRESS */
	size_t nhb;
	/* destination */
	struct mig_dst *dst;
};

/* Log about migration m: "ID (VM to|from PEER): ..." */
#define mig_err(m, fmt, ...)                                     \
	pr_err("%" PRIu64 " (%s %s %s): " fmt, (m)->id, (m)->vm, \
	       (m)->source ? "to" : "from", (m)->peer->name, ##__VA_ARGS__)
#define mig_info(m, fmt, ...)                                     \
	pr_info("%" PRIu64 " (%s %s %s): " fmt, (m)->id, (m)->vm, \
		(m)->source ? "to" : "from", (m)->peer->name, ##__VA_ARGS__)

/* The engine's clock (mig_env.now): monotonic ns. Any thread. */
static inline uint64_t mig_now(const struct mig_env *n)
{
	return n->now ? n->now() : fy_now_ns();
}

/* Completed, failed or cancelled? */
bool mig_finished(const struct mig *m);
/* A zeroed migration of that role in the table, in state NEW. */
struct mig *mig_new(struct mig_env *n, bool source);
/* Migration id of the given role; p NULL: any peer. */
struct mig *mig_find(struct mig_env *n, uint64_t id, bool source,
		     const struct mig_peer *p);
/* Start migrating vm to peer; 0 and *id, or -errno with a text in err. */
int mig_src_start(struct mig_env *n, const char *vm, const char *peer,
		  const struct mig_opts *o, uint64_t *id, char *err,
		  size_t errlen);
/*
 * End a source migration before it completes: the VM keeps (or gets back)
 * running here; how is FAILED or CANCELLED; tell: send ABORT to the peer.
 */
void mig_src_fail(struct mig *m, enum mig_src_state how, bool tell,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * The same in the commit window too (FAILED), which only the destination's
 * ABORT or `ferry force-resume --fenced` may do: its copy never runs.
 */
void mig_src_abandon(struct mig *m, bool tell, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Source: map and register the memfd of m->vmp for reads; 0 or -errno. */
int mig_src_map(struct mig *m);
/*
 * Source, NEW while registering (m->reg_running): once the registration
 * is done, send MIGRATE_PREPARE, or end the migration (failed, or
 * cancelled if asked meanwhile).
 */
void mig_src_reg_tick(struct mig *m, uint64_t now);
/* Wait for a registration still running (before releasing what it made). */
void mig_src_reg_join(struct mig *m);
/*
 * Source: give back the mapping, registrations and the VM's slot. Unless
 * all_read (the destination holds every page), what peers read is kept a
 * while for reads under way (fab_mr_serve_late_ns()).
 */
void mig_src_release(struct mig *m, bool all_read);
/* Send msg to m's peer; logs and returns -errno on failure. */
int mig_send(struct mig *m, const struct proto_msg *msg);
/* Send ABORT with reason to m's peer (not logged). */
void mig_send_abort(struct mig *m, const char *reason);
/* A message from the destination of source migration m (not freed). */
void mig_src_handle(struct mig *m, struct proto_msg *msg);
/* Source m's timers and pacing; from mig_tick(). */
void mig_src_tick(struct mig *m, uint64_t now);

/* "precopy", "completed", ...; parse: the phase or -EINVAL. */
const char *mig_phase_name(enum mig_phase p);
int mig_phase_parse(const char *s);
/* m's state, its phase (the destination's thread may move it: locked). */
unsigned mig_state(const struct mig *m);
enum mig_phase mig_phase_of(const struct mig *m);
/* Does m's state imply any of flags (MIG_SM_*)? */
bool mig_has(const struct mig *m, unsigned flags);
/*
 * How long the VM has run on the destination, until end: on our clock
 * from RESUMED, or, after our restart lost that moment, the destination's
 * last PC_STATS.
 */
uint64_t mig_pc_ns(const struct mig *m, uint64_t end);
/*
 * The control thread's transition function, both roles (a destination's
 * only before its thread starts or once it ended): move m to state `to`
 * for reason why, log it, record it, wake the tick. -EINVAL (logged, m
 * unchanged) for a move the table does not have.
 */
int mig_to(struct mig *m, unsigned to, const char *why);

/* mig.c: the daemon's peers and VMs (mig_env.ops), for the engine */

int mig_peer_send(struct mig_env *n, struct mig_peer *p,
		  const struct proto_msg *msg);
enum mig_peer_state mig_peer_state(struct mig_env *n, const struct mig_peer *p,
				   uint64_t now);
struct mig_peer *mig_peer_find(struct mig_env *n, const char *name);
struct mig_vm *mig_vm_find(struct mig_env *n, const char *name, bool rescan);
struct mig_vm *mig_vm_add(struct mig_env *n, const char *name);
void mig_vm_forget(struct mig_env *n, struct mig_vm *vm);
/* These three from any thread. */
int mig_vm_spawn(struct mig_env *n, const char *name, uint64_t mem,
		 unsigned vcpus, enum kva_accel accel, int ram_fd, pid_t *pid);
int mig_vm_sock_path(struct mig_env *n, const char *name, char *buf,
		     size_t len);
int mig_vm_unlink_sock(struct mig_env *n, const char *name);

/* mig_mem.c: guest RAM */

/*
 * The runs of pages that hold data in memfd fd of `pages` pages
 * (SEEK_DATA / SEEK_HOLE; holes read as zeros). *runs is malloc'ed.
 */
int mig_memfd_data_runs(int fd, uint64_t pages, struct fy_run **runs,
			size_t *nr);
/*
 * Punch the pages whose bit in bm is set (set) or clear out of memfd fd
 * of `pages` pages: they read as zeros and fault again. 0 or -errno.
 */
int mig_memfd_punch(int fd, const uint64_t *bm, uint64_t pages, bool set);
/*
 * Register for peers' reads the pages of runs (nr) where mr registers in
 * parts (fab_mr_grow()): what peers will be told of. 1 if the rkey changed,
 * 0 if not, or -errno.
 */
int mig_mr_grow(struct fab_mr *mr, const struct fy_run *runs, size_t nr);
/*
 * A HOLDER_MAP region of `pages` pages from rk: key, base, len, and the
 * parts where rk has them (r->keys, malloc'ed: the caller frees it).
 * 0 or -ENOMEM.
 */
int mig_region_of(struct proto_holder_region *r, const struct fab_rkey *rk,
		  uint64_t pages);
/*
 * The rkey region r describes. Where r lists parts, rk->runs is *tab,
 * malloc'ed: the caller keeps it while rk is in use, then frees it.
 * 0 or -ENOMEM.
 */
int mig_rkey_of(const struct proto_holder_region *r, struct fab_rkey *rk,
		struct fab_keyrun **tab);

/*
 * Checksums (fy_page_csum) of pages [start, start + n) of the mapping
 * base of memfd fd into out; holes get the zero page's checksum without
 * being touched (a read would allocate them).
 */
int mig_memfd_csums(int fd, const uint8_t *base, uint64_t pages, uint64_t start,
		    uint64_t n, uint64_t *out);

/* mig_csum.c: --verify's checksums, on both sides */

/* Start checksumming m's pages in a thread; 0 or -errno. */
int mig_csum_start(struct mig *m);
/* Stop and join the thread, if running, and free the checksums. */
void mig_csum_end(struct mig *m);
/*
 * Send the chunks computed so far as VERIFY; returns true once all are
 * sent. *ret: 0, or -errno from sending or from the thread's reads.
 */
bool mig_csum_send(struct mig *m, int *ret);
/*
 * Destination thread: compare the queued VERIFY chunks with d's pages,
 * which are final (nothing left to pull); 0, or -1 with d's reason set.
 */
int mig_csum_compare(struct mig_dst *d);
/* All of them compared: 0 if every page matched, else -1 (reason set). */
int mig_csum_verdict(struct mig_dst *d);

#endif /* FERRY_MIGRATION_MIG_INT_H */
