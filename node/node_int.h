/* SPDX-License-Identifier: MIT */
#ifndef FERRY_NODE_NODE_INT_H
#define FERRY_NODE_NODE_INT_H

#include <stdbool.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/types.h>

#include <msgpack.h>
#include <zmq.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "node/node.h"
#include "protocol/protocol.h"

/*
 * Internals of node/: configuration, keys and the daemon's pieces. Only
 * node/ and tests/node include this.
 */

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

#define ND_PEERS_MAX 64
#define ND_NAME_MAX 63 /* PROTO_NAME_MAX */
#define ND_KEY_LEN 40 /* Z85 CURVE key, PROTO_KEY_LEN */
#define ND_ENDPOINT_MAX 256 /* "tcp://host:port" */
#define ND_PROVIDER_MAX 63 /* PROTO_PROVIDER_MAX */
#define ND_DIR_MAX 1024
/* sun_path is 108 bytes; libzmq needs the NUL too. */
#define ND_SOCK_MAX 107

#define ND_DEFAULT_CONFIG "/etc/ferry/ferryd.conf"
#define ND_DEFAULT_LISTEN "tcp://127.0.0.1:7401"
#define ND_DEFAULT_STATE_DIR "/var/lib/ferry"
#define ND_DEFAULT_PROVIDER "ofi:tcp"
#define ND_DEFAULT_FABRIC_ADDR "127.0.0.1"
#define ND_DEFAULT_PING_MS 500
#define ND_DEFAULT_TIMEOUT_MS 1500
#define ND_DEFAULT_MIG_TIMEOUT_MS 10000
/* the destination starts its VM and answers MIGRATE_PREPARE within */
#define ND_MIG_PREPARE_TIMEOUT_NS (30 * 1000000000ULL)
/* auto-converge; the throttle steps are QEMU's defaults */
#define ND_DEFAULT_AUTO_CONVERGE PROTO_CONVERGE_DOWNTIME
#define ND_DEFAULT_THROTTLE_INITIAL 20
#define ND_DEFAULT_THROTTLE_INCREMENT 10
#define ND_DEFAULT_THROTTLE_MAX 99
#define ND_VM_DIR_SUB "vms" /* default vm_dir: <state_dir>/vms */
#define ND_MIG_DIR_SUB "migrations" /* records in <state_dir> */

/* Key files inside state_dir. */
#define ND_SECRET_FILE "ferryd.key"
#define ND_PUBLIC_FILE "ferryd.pub"

/* CLI exit codes (documented in docs/operations.md). */
#define ND_EXIT_OK 0
#define ND_EXIT_FAIL 1 /* ferryd not running, runtime failure */
#define ND_EXIT_USAGE 2 /* bad command line or configuration */

struct nd_peer_conf {
	char name[ND_NAME_MAX + 1];
	char address[ND_ENDPOINT_MAX];
	char public_key[ND_KEY_LEN + 1];
	/* it may send us VMs of the user accelerator, whose guest code runs
	 * natively in our ferry-vm (docs/security.md) */
	bool accept_user_vms;
	int line; /* of its [peer NAME] header */
};

struct nd_config {
	char path[ND_DIR_MAX]; /* "" when built from defaults only */
	char name[ND_NAME_MAX + 1];
	char listen[ND_ENDPOINT_MAX];
	char state_dir[ND_DIR_MAX];
	char control[ND_SOCK_MAX + 1];
	char control_group[ND_NAME_MAX + 1]; /* "" when unset */
	gid_t control_gid;
	enum fy_log_level log_level;
	unsigned ping_interval_ms;
	unsigned peer_timeout_ms;
	char provider[ND_PROVIDER_MAX + 1];
	char fabric_address[ND_ENDPOINT_MAX];
	char fabric_port[16]; /* "" = any */
	char vm_dir[ND_DIR_MAX]; /* "" = <state_dir>/vms */
	char ferry_vm[ND_DIR_MAX]; /* "" = beside ferryd, then PATH */
	unsigned mig_timeout_ms; /* silence that fails a migration */
	/* defaults of `ferry migrate` for auto-converge */
	enum proto_converge auto_converge;
	unsigned cpu_throttle_initial; /* percent, 1..99 */
	unsigned cpu_throttle_increment; /* percent, 1..99 */
	unsigned max_cpu_throttle; /* percent, 1..99 */
	size_t npeers;
	struct nd_peer_conf peers[ND_PEERS_MAX];
};

/* nd_config.c */

/*
 * Fill cfg with the defaults (node name = host name). Never fails: a host
 * name that is not a valid node name becomes "ferry".
 */
void nd_config_defaults(struct nd_config *cfg);
/* Is s a valid Z85 CURVE public key (40 characters that decode)? */
bool nd_key_valid(const char *s);

/* nd_keys.c */

struct nd_keys {
	char public_key[ND_KEY_LEN + 1];
	char secret_key[ND_KEY_LEN + 1];
};

/*
 * Load the key pair from dir, or create it (dir: nd_dir_prepare() with
 * 0700; files 0600 created with O_EXCL, never chmod'ed afterwards).
 * *created tells which. Returns 0 or -errno (logged).
 */
int nd_keys_load_or_create(const char *dir, struct nd_keys *out, bool *created);

/*
 * nd_keys.c: make directory dir (what: "state directory", ...) with mode
 * `allowed` exactly, or check an existing one: a directory, not a
 * symlink, ours (euid), no mode bit beyond `allowed`. Returns 1 when it
 * made it, 0 when it was there, or -errno with the reason logged (-EPERM:
 * another owner, or looser than allowed).
 */
int nd_dir_prepare(const char *what, const char *dir, mode_t allowed);

/* nd_ctl.c: the CLI's ipc:// socket, daemon side */

/*
 * Make the control socket's directory: create it 0700 (0750 and chgrp when
 * a group is configured), or check an existing one is ours and no looser.
 * Then check no live ferryd answers on the socket (a stale file is
 * removed). Returns 0 or -errno (logged).
 */
int nd_ctl_prepare(const struct nd_config *cfg);

/* The daemon: one node, its peers, its sockets (nd_node.c, nd_peer.c). */

enum nd_peer_state {
	ND_PEER_CONNECTING, /* no PONG yet */
	ND_PEER_REACHABLE, /* PONGs arrive */
	ND_PEER_UNREACHABLE, /* PONGs stopped for peer_timeout_ms */
	ND_PEER_INCOMPATIBLE, /* HELLO with another protocol version */
};

struct nd_node;
struct nd_mig;
struct proto_msg;
struct proto_migrate_prepare;
struct fab_mr;
struct kva_client;
struct kva_layout;

struct nd_peer {
	const struct nd_peer_conf *conf;
	struct nd_node *node;
	void *dealer; /* our CURVE client socket to its ROUTER */
	void *mon; /* PAIR receiving the DEALER's handshake events */
	uint8_t key_raw[32]; /* conf->public_key decoded, for ZAP */
	bool hello_out; /* it answered our HELLO */
	bool hello_in; /* it sent us its HELLO */
	bool incompatible;
	bool ever_reachable;
	enum nd_peer_state state; /* as last computed by nd_peers_tick() */
	uint32_t remote_version;
	char remote_node[ND_NAME_MAX + 1];
	char remote_provider[ND_PROVIDER_MAX + 1];
	char remote_fabric[128]; /* its fabric address, formatted */
	uint64_t ping_seq;
	uint64_t ticks;
	uint64_t last_pong_ns, last_seen_ns; /* 0: never */
	uint64_t disconnect_ns; /* our connection to it last dropped; 0 */
	uint64_t rtt_last_ns, rtt_sum_ns, rtt_count;
	uint64_t malformed;
	bool malformed_logged;
	bool key_mismatch_logged;
	struct fy_ratelimit warn; /* for what it can repeat: its ERRORs */
	uint64_t prepare_t; /* its MIGRATE_PREPAREs' bucket (nd_mig_ctl.c) */
	char problem[64]; /* why our handshake fails; "" when it does not */
	bool problem_logged;
};

#define ND_REFUSED_KEYS_MAX 32
/* MIGRATE_PREPAREs a peer may send: a burst, then one every so often */
#define ND_PREPARE_BURST 8U
#define ND_PREPARE_EVERY_S 2U
#define ND_VMS_MAX 64
#define ND_MIGS_MAX 32 /* kept, finished ones included */
/* a record's file name: "<peer>-<id>.dst" at the longest */
#define ND_RECORD_NAME_MAX (ND_NAME_MAX + 32)
/* records of ended migrations kept in <state_dir>/migrations */
#define ND_RECORDS_MAX 256
#define ND_RECORDS_AGE_S (30 * 86400)

/* A VM on this host: a ferry-vm whose adapter socket is in vm_dir. */
struct nd_vm {
	bool used;
	char name[ND_NAME_MAX + 1];
	/* NULL while an incoming migration's thread owns the VM */
	struct kva_client *kc;
	pid_t pid; /* a ferry-vm we started (destination), else 0 */
	struct nd_mig *mig; /* the migration using it, or NULL */
};

/* A vm_dir socket that failed to attach: not tried again for a while. */
struct nd_vm_bad {
	dev_t dev;
	ino_t ino;
	uint64_t until_ns;
};

#define ND_VM_BAD_NS (60 * 1000000000ULL)

struct nd_node {
	const struct nd_config *cfg;
	struct nd_keys keys;
	void *zctx;
	void *zap; /* REP on inproc://zeromq.zap.01 */
	void *router; /* CURVE server on cfg->listen */
	void *ctl; /* ROUTER on ipc://cfg->control */
	int sigfd;
	bool stop;
	bool up; /* nd_node_open() finished */
	bool ctl_bound; /* we created the socket file: remove it at close */
	struct fab_domain *fab;
	/*
	 * Post-copy faults only (nd_fault.c): no progress thread, the fault
	 * server of the one incoming post-copy migration polls it. NULL when
	 * it could not be opened: post-copy is refused.
	 */
	struct fab_domain *fault_fab;
	char fab_provider[ND_PROVIDER_MAX + 1];
	char fab_addr[128]; /* formatted */
	uint32_t fab_addr_len;
	uint8_t fab_addr_raw[256];
	uint64_t start_ns, next_tick_ns;
	uint64_t next_greet_ns; /* 0: every peer answered our HELLO */
	uint64_t refused; /* connections refused by ZAP */
	uint64_t malformed; /* malformed messages, all peers */
	size_t nrefused_keys; /* distinct refused keys already logged */
	uint8_t refused_keys[ND_REFUSED_KEYS_MAX][32];
	/* what peers, strangers and local files can make us log */
	struct fy_ratelimit zap_warn, peer_warn, vm_warn;
	size_t npeers;
	struct nd_peer peers[ND_PEERS_MAX];
	char vm_dir[ND_DIR_MAX];
	int vm_dir_fd; /* O_DIRECTORY of vm_dir, opened once */
	struct nd_vm_bad vm_bad[ND_VMS_MAX];
	char mig_dir[ND_DIR_MAX];
	int mig_dir_fd; /* O_DIRECTORY of mig_dir: records are opened in it */
	struct nd_vm vms[ND_VMS_MAX];
	struct nd_mig *migs[ND_MIGS_MAX];
	uint64_t next_mig_id;
	uint64_t next_mig_tick_ns;
	int mig_efd; /* eventfd: a destination's thread has news */
};

/* nd_peer.c */

/* Set up the ZAP handler (before the ROUTER binds), ROUTER, DEALERs. */
int nd_peers_open(struct nd_node *n);
/*
 * Send HELLO to the peers that have not answered one yet; returns whether
 * there are any (the caller then greets again soon).
 */
bool nd_peers_greet(struct nd_node *n);
/* Send HELLO or PING to every peer, update states; call every tick. */
void nd_peers_tick(struct nd_node *n, uint64_t now);
/* Handle what is waiting on the ZAP, ROUTER or a DEALER socket. */
void nd_zap_handle(struct nd_node *n);
void nd_router_handle(struct nd_node *n);
void nd_dealer_handle(struct nd_peer *p);
/* Handle an event of the DEALER's monitor (handshake refused or failed). */
void nd_monitor_handle(struct nd_peer *p);
/* p's state at time now (see enum nd_peer_state), computed from its PONGs. */
enum nd_peer_state nd_peer_state(const struct nd_peer *p, uint64_t now);
/* "reachable", ...: the names ferry prints. */
const char *nd_peer_state_name(enum nd_peer_state s);
/* Close the DEALERs, the ROUTER and the ZAP handler. */
void nd_peers_close(struct nd_node *n);
/* Send m to p on our DEALER (never blocks); 0 or -errno. */
int nd_peer_send(struct nd_peer *p, const struct proto_msg *m);
/* The configured peer called name, or NULL. */
struct nd_peer *nd_peer_find(struct nd_node *n, const char *name);
/* Format a fabric address (sockaddr_in/in6 or hex) into buf. */
void nd_fmt_fab_addr(const uint8_t *raw, uint32_t len, char *buf,
		     size_t buflen);

/* nd_zap.c */

/* Bind the ZAP handler; must come before the CURVE server binds. */
int nd_zap_open(struct nd_node *n);

/* nd_ctl.c */

/* Bind the control socket (after nd_ctl_prepare()). */
int nd_ctl_open(struct nd_node *n);
/* Answer what is waiting on the control socket. */
void nd_ctl_handle(struct nd_node *n);
/*
 * Receive one multipart message of at most max frames from sock into f
 * (without waiting). Returns the frames received, 0 when none was
 * waiting, or max + 1 when the message had more (the extra ones dropped).
 * The caller closes the first FY_MIN(nf, max) frames.
 */
int nd_recv_frames(void *sock, zmq_msg_t *f, int max);
/* Close it and remove the socket file. */
void nd_ctl_close(struct nd_node *n);

/* nd_vm.c: the VMs of this host */

/* Create vm_dir and attach to every ferry-vm listening there. */
int nd_vms_open(struct nd_node *n);
/* Attach to sockets not seen yet, forget VMs whose ferry-vm is gone. */
void nd_vms_rescan(struct nd_node *n);
/* Reap VMs we started that exited. */
void nd_vms_reap(struct nd_node *n);
struct nd_vm *nd_vm_find(struct nd_node *n, const char *name);
/* Take a free slot for name (not attached); NULL when full. */
struct nd_vm *nd_vm_add(struct nd_node *n, const char *name);
/* Close the client (the VM runs on; nd_release_bg()) and free the slot. */
void nd_vm_forget(struct nd_vm *vm);
/*
 * Unmap map (len bytes; NULL: none) and close kc (NULL: none) on a thread
 * of their own, which now owns both: the last reference to a guest's RAM
 * frees it, about 0.3 s per GiB here, time the control thread owes its
 * peers' PINGs and the CLI. Inline if no thread can be had.
 */
void nd_release_bg(void *map, size_t len, struct kva_client *kc);
/*
 * The timeout of every adapter call the control thread makes: well under
 * peer_timeout_ms, so that a ferry-vm that does not answer never makes
 * this node look dead to its peers.
 */
unsigned nd_vm_timeout_ms(const struct nd_node *n);
/*
 * Remove <vm_dir>/<name>.sock if it is a stale socket of ours: not a
 * symlink, nobody listening. 0 when it is gone, -EPERM when it is
 * something else, -EBUSY when a ferry-vm listens there, -errno.
 */
int nd_vm_unlink_sock(const struct nd_node *n, const char *name);
/* <vm_dir>/<name>.sock into buf; -ENAMETOOLONG if it does not fit. */
int nd_vm_sock_path(const struct nd_node *n, const char *name, char *buf,
		    size_t len);
/*
 * Start `ferry-vm --incoming --adapter SOCK --mem M --vcpus C --accel A`
 * in its own session; *pid is the child. 0 or -errno (logged).
 */
int nd_vm_spawn_incoming(const struct nd_node *n, const char *name,
			 uint64_t mem, unsigned vcpus, enum kva_accel accel,
			 pid_t *pid);
/* Answer {"cmd": "vms"}. */
void nd_vms_pack(struct nd_node *n, msgpack_packer *pk);
/* Close every client (the VMs run on). */
void nd_vms_close(struct nd_node *n);
/*
 * The runs of pages that hold data in memfd fd of `pages` pages
 * (SEEK_DATA / SEEK_HOLE; holes read as zeros). *runs is malloc'ed.
 */
int nd_memfd_data_runs(int fd, uint64_t pages, struct fy_run **runs,
		       size_t *nr);
/*
 * Checksums (fy_page_csum) of pages [start, start + n) of the mapping
 * base of memfd fd into out; holes get the zero page's checksum without
 * being touched (a read would allocate them).
 */
int nd_memfd_csums(int fd, const uint8_t *base, uint64_t pages, uint64_t start,
		   uint64_t n, uint64_t *out);

/* nd_delta.c: XBZRLE-like page deltas (--compress delta) */

/*
 * Encode how new differs from old (one page) into out (cap bytes);
 * returns the length, 0 when unchanged or when it does not fit.
 */
size_t nd_delta_encode(const uint8_t *old, const uint8_t *new, uint8_t *out,
		       size_t cap);
/* Apply a delta to page in place; 0 or -EBADMSG. */
int nd_delta_apply(uint8_t *page, const uint8_t *d, size_t len);
/*
 * Write page's record (header, delta or raw page) at out, which has room
 * for 16 + 4096 bytes; returns its length, a multiple of 8.
 */
size_t nd_delta_record(uint8_t *out, uint64_t page, const uint8_t *old,
		       const uint8_t *new, bool *raw);
/*
 * Source: send the round's dirty runs (m->todo, at least one page) as one
 * DELTA_SET, encoded against m->cache, which is updated. 0 or -errno.
 */
int nd_mig_delta_round(struct nd_mig *m);
/* Apply every record of a DELTA_SET buffer to map; *applied pages. */
int nd_delta_apply_buf(uint8_t *map, uint64_t pages, const uint8_t *buf,
		       size_t len, uint64_t *applied);

/*
 * The post-copy fault server (nd_fault.c): one thread per incoming VM
 * resolving its userfaultfd faults with one-sided reads from the holder.
 */
struct nd_fault;

/* The zero values are the defaults, measured by bench/postcopy. */
enum nd_fault_mode {
	ND_FAULT_COPY, /* read into a staging page, UFFDIO_COPY */
	ND_FAULT_CONTINUE, /* read into the memfd page, UFFDIO_CONTINUE */
};

#define ND_FAULT_VCPUS 16

struct nd_fault_params {
	int uffd; /* O_NONBLOCK; borrowed, the caller closes it */
	uint64_t uffd_base; /* ferry-vm's address of page 0 */
	bool minor; /* registered MISSING|MINOR */
	uint8_t *map; /* ferryd's MAP_SHARED mapping of the memfd; borrowed */
	uint64_t pages;
	/*
	 * A domain for faults only: the fault thread is its one fab_poll()
	 * caller. Borrowed. ep (to the holder) is the server's from open on.
	 */
	struct fab_domain *dom;
	struct fab_ep *ep;
	struct fab_rkey rkey; /* the holder's registration of guest RAM */
	const uint64_t *holes; /* pages that are holes on the source, or NULL */
	/*
	 * Shared with the background puller, atomic bits: whoever sets a
	 * page's bit (0 -> 1) places that page, the puller with UFFDIO_COPY.
	 */
	uint64_t *present;
	/*
	 * Or NULL. Shared, atomic bits: the page's contents are complete in
	 * the memfd. With it a page is mapped (CONTINUE) only once placed,
	 * and a page in the memfd but not placed (allocated ahead) that nobody
	 * claimed is fetched on a MINOR fault. Set for the pages we place.
	 */
	uint64_t *placed;
	enum nd_fault_mode mode;
	/* µs to spin after activity before poll(); 0: 200, <0: never spin */
	int spin_us;
	unsigned prepage_max; /* pre-paging window cap in pages; 0: none */
	bool prepage_self; /* also fetch the pre-page queue ourselves */
};

struct nd_fault_stats {
	uint64_t missing, minor; /* fault messages */
	uint64_t served; /* fault messages resolved */
	uint64_t p50_ns, p99_ns, max_ns; /* service time, message read->wake */
	uint64_t blocktime_ns; /* sum over faults of their wait */
	uint64_t zero_pages; /* holes served by UFFDIO_ZEROPAGE */
	uint64_t prepage_queued, prepage_taken, prepaged;
	unsigned window; /* current pre-paging window */
	uint64_t stalls, stall_ns; /* holder unreachable: count, total */
	bool stalled; /* now */
	unsigned busy; /* pages being fetched or waited for */
	uint64_t holder_swaps;
	enum nd_fault_mode mode;
	uint32_t vcpu_tid[ND_FAULT_VCPUS]; /* with UFFD_FEATURE_THREAD_ID */
	uint64_t vcpu_blocktime_ns[ND_FAULT_VCPUS];
};

/* Claim page: true when we flipped its bit in present, false if taken. */
static inline bool nd_fault_claim(uint64_t *present, uint64_t page)
{
	uint64_t bit = 1ULL << (page % 64);

	return !(__atomic_fetch_or(&present[page / 64], bit, __ATOMIC_ACQ_REL) &
		 bit);
}

/* Start the fault thread; 0 or -errno. On success p->ep is the server's. */
int nd_fault_open(const struct nd_fault_params *p, struct nd_fault **out);
/* Use ep / rk from now on (reconnected holder); the server owns ep. */
int nd_fault_set_holder(struct nd_fault *fs, struct fab_ep *ep,
			const struct fab_rkey *rk);
/* Up to max pages to pre-page (not yet present), for the puller. */
size_t nd_fault_prepage_take(struct nd_fault *fs, uint64_t *pages, size_t max);
/* A snapshot of the counters; any thread. */
void nd_fault_stats(struct nd_fault *fs, struct nd_fault_stats *out);
/*
 * Stop the thread and close the endpoint(s) it owns; faults read but not
 * resolved stay unresolved (UFFDIO_WAKE the range to have them again).
 * The uffd, map, domain and bitmaps go back to the caller. Accepts NULL.
 */
void nd_fault_close(struct nd_fault *fs);

/* nd_mig.c: migrations, both roles (docs/migration.md) */

enum nd_mig_phase {
	ND_MIG_PREPARE, /* destination starting its VM */
	ND_MIG_PRECOPY, /* rounds of pulls while the VM runs */
	ND_MIG_SWITCHOVER, /* VM paused on the source; last pull, state */
	ND_MIG_READY, /* destination: all here, state loaded, asks to resume */
	/* post-copy: the VM runs on the destination, pages still arrive */
	ND_MIG_POSTCOPY,
	/* the source decided: the VM resumes on the destination only */
	ND_MIG_COMMITTED,
	ND_MIG_COMPLETED,
	ND_MIG_FAILED,
	ND_MIG_CANCELLED,
};

/*
 * The state machines (nd_mig_sm.c; docs/migration.md prints the tables).
 * A state is one of the role's enum; each shows as a phase above.
 */
enum nd_src_state {
	ND_SRC_NEW,
	ND_SRC_PREPARE,
	ND_SRC_PREPARE_ASKED,
	ND_SRC_PRECOPY,
	ND_SRC_PRECOPY_ASKED,
	ND_SRC_SWITCHOVER,
	ND_SRC_COMMITTED,
	ND_SRC_PC_SWITCHOVER,
	ND_SRC_PC_SWITCHOVER_LOST,
	ND_SRC_POSTCOPY,
	ND_SRC_POSTCOPY_LOST,
	ND_SRC_COMPLETED,
	ND_SRC_FAILED,
	ND_SRC_CANCELLED,
	ND_SRC_NSTATES
};

enum nd_dst_state {
	ND_DST_NEW,
	ND_DST_PREPARE,
	ND_DST_PRECOPY,
	ND_DST_SWITCHOVER,
	ND_DST_PC_SWITCHOVER,
	ND_DST_READY,
	ND_DST_POSTCOPY,
	ND_DST_COMMITTED,
	ND_DST_COMPLETED,
	ND_DST_FAILED,
	ND_DST_FAILED_UNTOLD,
	ND_DST_NSTATES
};

/* What a state implies (nd_sm_has()). */
#define ND_SM_PAUSED (1U << 0) /* source: the VM is paused here */
/* source: POSTCOPY sent, our VM runs again only on an ABORT before
 * RESUMED; destination: POSTCOPY came */
#define ND_SM_PC (1U << 1)
/* only the peer's answer ends it: local failures are ignored */
#define ND_SM_HELD (1U << 2)
#define ND_SM_LOST (1U << 3) /* source restarted: HOLDER_MAP is due */
#define ND_SM_RUNS (1U << 4) /* destination: the VM runs here */
#define ND_SM_END (1U << 5) /* completed, failed or cancelled */

/* A migration's state: one cell, written only by nd_sm_move(). */
struct nd_mig_sm {
	bool source; /* state is an enum nd_src_state, else nd_dst_state */
	unsigned state;
};

/* The state's name ("precopy+asked"), "?" out of range. */
const char *nd_sm_name(bool source, unsigned s);
/* The phase it shows as. */
enum nd_mig_phase nd_sm_phase(bool source, unsigned s);
/* Does state s imply any of flags (ND_SM_*)? */
bool nd_sm_has(bool source, unsigned s, unsigned flags);
/* Is from -> to in the table? */
bool nd_sm_legal(bool source, unsigned from, unsigned to);
/* Move sm to state to: 0, or -EINVAL for a move not in the table. */
int nd_sm_move(struct nd_mig_sm *sm, unsigned to);
/* What the source does with a message from its destination. */
enum nd_src_act {
	ND_ACT_IGNORE, /* not in this state: dropped */
	ND_ACT_REFUSE, /* the same, logged with why */
	ND_ACT_START, /* HOLDER_MAP, D's yes: round 0 */
	ND_ACT_PROGRESS, /* D's counters: the round may be done */
	ND_ACT_STATS, /* PC_STATS kept for reports */
	ND_ACT_COMMIT, /* READY (or an old D's COMMIT): commit, RESUME */
	ND_ACT_RESUME_AGAIN, /* READY again: RESUME again */
	ND_ACT_RUNS_THERE, /* RESUMED after POSTCOPY: serve its pages */
	ND_ACT_COMPLETE, /* RESUMED after commit, COMMIT after post-copy */
	ND_ACT_ABANDON, /* ABORT: D's copy never runs; ours does */
	ND_ACT_FAIL, /* ERROR before the commit */
};

/*
 * The source's answer to message type t in state st (still sending
 * checksums: csums), the commit window's decisions included; *why says
 * why for ND_ACT_REFUSE.
 */
enum nd_src_act nd_src_on(enum nd_src_state st, enum proto_type t, bool csums,
			  const char **why);
/* The role's table in markdown, as docs/migration.md shows it. */
void nd_sm_print(FILE *f, bool source);
/*
 * The fault points (common/fault.h) of the transition functions:
 * "src:before:STATE" and "dst:before:STATE" fire before the move (and its
 * record; "fail" refuses the move), "src:after:STATE" and
 * "dst:after:STATE" once the move is recorded; and the destination's
 * thread's own: "dst:spawned" (the incoming ferry-vm started, not yet
 * attached) and "dst:round:N" (the first DIRTY_SET or DELTA_SET of round
 * N taken, before its pulls). Is point one of them?
 */
bool nd_mig_fault_known(const char *point);
/* Fire "dst:round:N" (the destination's thread, at each announcement). */
void nd_dst_round_fault(unsigned round);
/* Fire the fault point of moving to state to, when (before, after). */
bool nd_sm_fault(bool source, const char *when, unsigned to);

struct nd_mig_opts {
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

struct nd_mig_dst;

struct nd_mig {
	uint64_t id; /* chosen by the source */
	bool source;
	struct nd_node *n;
	struct nd_peer *peer;
	char vm[ND_NAME_MAX + 1];
	struct nd_vm *vmp; /* NULL once the VM left */
	struct nd_mig_opts o;
	struct nd_mig_sm sm; /* nd_mig_state(), nd_mig_to() */
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
	/* destination */
	struct nd_mig_dst *dst;
};

/* Log about migration m: "ID (VM to|from PEER): ..." */
#define mig_err(m, fmt, ...)                                       \
	pr_err("%" PRIu64 " (%s %s %s): " fmt, (m)->id, (m)->vm,   \
	       (m)->source ? "to" : "from", (m)->peer->conf->name, \
	       ##__VA_ARGS__)
#define mig_info(m, fmt, ...)                                       \
	pr_info("%" PRIu64 " (%s %s %s): " fmt, (m)->id, (m)->vm,   \
		(m)->source ? "to" : "from", (m)->peer->conf->name, \
		##__VA_ARGS__)

/* Completed, failed or cancelled? */
bool nd_mig_finished(const struct nd_mig *m);
/* A zeroed migration of that role in the table, in state NEW. */
struct nd_mig *nd_mig_new(struct nd_node *n, bool source);
/* Migration id of the given role; p NULL: any peer. */
struct nd_mig *nd_mig_find(struct nd_node *n, uint64_t id, bool source,
			   const struct nd_peer *p);
/* Start migrating vm to peer; 0 and *id, or -errno with a text in err. */
int nd_mig_src_start(struct nd_node *n, const char *vm, const char *peer,
		     const struct nd_mig_opts *o, uint64_t *id, char *err,
		     size_t errlen);
/*
 * End a source migration before it completes: the VM keeps (or gets back)
 * running here; how is FAILED or CANCELLED; tell: send ABORT to the peer.
 */
void nd_mig_src_fail(struct nd_mig *m, enum nd_src_state how, bool tell,
		     const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * The same in the commit window too (FAILED), which only the destination's
 * ABORT or `ferry force-resume --fenced` may do: its copy never runs.
 */
void nd_mig_src_abandon(struct nd_mig *m, bool tell, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Source: map and register the memfd of m->vmp for reads; 0 or -errno. */
int nd_mig_src_map(struct nd_mig *m);
/* Source: give back the mapping, registrations and the VM's slot. */
void nd_mig_src_release(struct nd_mig *m);
/* Send msg to m's peer; logs and returns -errno on failure. */
int nd_mig_send(struct nd_mig *m, const struct proto_msg *msg);
/* Send ABORT with reason to m's peer (not logged). */
void nd_mig_send_abort(struct nd_mig *m, const char *reason);
/* A message from the destination of source migration m (not freed). */
void nd_mig_src_handle(struct nd_mig *m, struct proto_msg *msg);
/* Source m's timers and pacing; from nd_migs_tick(). */
void nd_mig_src_tick(struct nd_mig *m, uint64_t now);

/* nd_mig_src_io.c: the source's actions, for nd_mig_src.c */

/* Start announcing runs (owned by m now) as round m->round at gen. */
void nd_src_round_begin(struct nd_mig *m, struct fy_run *runs, size_t nr);
/*
 * Send DIRTY_SETs for what is left of the round: all of it, or with
 * --max-bandwidth (paced; not the final round) a slice per 100 ms.
 * Returns 0 or -errno (the migration failed).
 */
int nd_src_announce(struct nd_mig *m, bool paced);
/* The same, as pages or, with --compress delta after round 0, deltas. */
int nd_src_announce_round(struct nd_mig *m, bool paced);
/* Harvest the dirty log into *runs (malloc'ed); m->gen the new one. */
int nd_src_harvest(struct nd_mig *m, struct fy_run **runs, size_t *nr,
		   uint64_t *dirty);
/* SWITCHOVER, POSTCOPY, RESUME: the migration and its generation. */
int nd_src_send_gen(struct nd_mig *m, enum proto_type t);
/* Tell D where our copy is: after its "yes", and after our restart. */
int nd_src_send_holder_map(struct nd_mig *m);
/* RESUME: D may run the VM now; again after a second if unanswered. */
void nd_src_send_resume(struct nd_mig *m, uint64_t now);
/* The source's copy is no longer needed: the VM exits here. */
void nd_src_drop_vm(struct nd_mig *m);
/* "precopy", "completed", ...; parse: the phase or -EINVAL. */
const char *nd_mig_phase_name(enum nd_mig_phase p);
int nd_mig_phase_parse(const char *s);
/* m's state, its phase (the destination's thread may move it: locked). */
unsigned nd_mig_state(const struct nd_mig *m);
enum nd_mig_phase nd_mig_phase(const struct nd_mig *m);
/* Does m's state imply any of flags (ND_SM_*)? */
bool nd_mig_has(const struct nd_mig *m, unsigned flags);
/*
 * The control thread's transition function, both roles (a destination's
 * only before its thread starts or once it ended): move m to state `to`
 * for reason why, log it, record it, wake the tick. -EINVAL (logged, m
 * unchanged) for a move the table does not have.
 */
int nd_mig_to(struct nd_mig *m, unsigned to, const char *why);

/* nd_mig_record.c: the records in mig_dir */

struct nd_record {
	uint64_t id;
	bool source;
	char vm[ND_NAME_MAX + 1];
	char peer[ND_NAME_MAX + 1];
	enum nd_mig_phase phase;
	bool known; /* read: the phase was one of ours */
	bool postcopy; /* the state has ND_SM_PC */
	uint64_t started; /* unix time */
	enum proto_mode mode;
	char reason[512];
};

/* "ID.src" or "PEER-ID.dst". */
void nd_record_name(const struct nd_record *r, char *buf, size_t len);
/* Write r in mig_dir (a temporary file, then renameat()); errors logged. */
void nd_record_put(const struct nd_node *n, const struct nd_record *r);
/* Read record name from mig_dir; 0 or -errno. */
int nd_record_get(const struct nd_node *n, const char *name,
		  struct nd_record *r);
/* Persist m's record. */
void nd_mig_record(struct nd_mig *m);
/* mig_dir for reading, a DIR of its own; NULL (logged). */
DIR *nd_records_open(struct nd_node *n);
/*
 * Keep the newest ND_RECORDS_MAX records of ended migrations, none older
 * than ND_RECORDS_AGE_S; never the records of running migrations, nor the
 * source record with the highest id (the next id follows from it).
 */
void nd_records_prune(struct nd_node *n);

/* nd_mig_csum.c: --verify's checksums, on both sides */

/* Start checksumming m's pages in a thread; 0 or -errno. */
int nd_mig_csum_start(struct nd_mig *m);
/* Stop and join the thread, if running, and free the checksums. */
void nd_mig_csum_end(struct nd_mig *m);
/*
 * Send the chunks computed so far as VERIFY; returns true once all are
 * sent. *ret: 0, or -errno from sending or from the thread's reads.
 */
bool nd_mig_csum_send(struct nd_mig *m, int *ret);
/*
 * Destination thread: compare the queued VERIFY chunks with d's pages,
 * which are final (nothing left to pull); 0, or -1 with d's reason set.
 */
int nd_mig_csum_compare(struct nd_mig_dst *d);
/* All of them compared: 0 if every page matched, else -1 (reason set). */
int nd_mig_csum_verdict(struct nd_mig_dst *d);

/* nd_mig_conv.c: the source's round accounting and auto-converge */

/* What the source does after a round. */
enum nd_src_next {
	ND_NEXT_ROUND, /* announce the dirty pages as the next round */
	ND_NEXT_SWITCHOVER, /* the rest fits the downtime limit (maybe raised) */
	ND_NEXT_POSTCOPY, /* hybrid: post-copy now */
	ND_NEXT_FAIL, /* --max-rounds reached: did not converge */
};

/* A round of m->round_pages took elapsed_ns: update the bandwidth m->bw. */
void nd_src_round_bw(struct nd_mig *m, uint64_t elapsed_ns);
/*
 * dirty pages were harvested at now: the dirty rate, and the expected
 * downtime in ms of moving them (UINT64_MAX while the bandwidth is not
 * known), which is returned.
 */
uint64_t nd_src_estimate(struct nd_mig *m, uint64_t dirty, uint64_t now);
/*
 * Round m->round ended with dirty pages and expected downtime est ms:
 * count its progress (m->stall), then decide, from m's options and
 * figures only. Auto-converge by downtime raises m->limit_ms here; by
 * throttle, *throttle is the percentage to apply (nd_mig_throttle()), or
 * 0. Notes what it did in m->actions.
 */
enum nd_src_next nd_src_next(struct nd_mig *m, uint64_t dirty, uint64_t est,
			     unsigned *throttle);
/* Throttle m's source VM to pct percent (the adapter's THROTTLE). */
void nd_mig_throttle(struct nd_mig *m, unsigned pct);
/* Lift the throttle of m's source VM, if any: it runs at full speed. */
void nd_mig_unthrottle(struct nd_mig *m);

/* nd_mig_dst.c, nd_mig_dst_ctl.c: the destination's puller thread */

#define ND_MIG_WINDOW 32 /* reads in flight */
/* What a source may have queued at a destination's thread at once. */
#define ND_MIG_INBOX_MSGS 4096U
#define ND_MIG_INBOX_BYTES (64ULL << 20)

struct nd_mig_qmsg {
	struct proto_msg *m;
	struct nd_mig_qmsg *next;
};

/*
 * The bytes of reads a puller keeps in flight: enough to fill the link,
 * few enough that a read waits about target_ns at most (reads on one
 * connection queue behind each other: on a slow link they would time out,
 * and in post-copy a fault would wait behind them). Grows by what
 * completes in time, halves when a read takes twice the target.
 */
struct nd_window {
	uint64_t cap, min, max, target_ns;
	uint64_t inflight;
};

static inline bool nd_window_room(const struct nd_window *w, uint64_t len)
{
	return !w->inflight || w->inflight + len <= w->cap;
}

/* A read of len bytes completed lat_ns after it was posted. */
void nd_window_done(struct nd_window *w, uint64_t len, uint64_t lat_ns);

struct nd_mig_slot {
	uint64_t start, pages; /* a DELTA_SET chunk: offset and bytes */
	uint64_t t_post;
	bool used;
	bool delta;
	bool posted; /* post-copy: a read in flight (else one to repost) */
};

struct nd_mig_dst {
	/* fixed before the thread starts */
	struct nd_node *n;
	uint64_t id;
	char vm[ND_NAME_MAX + 1];
	char peer[ND_NAME_MAX + 1];
	uint64_t pages;
	uint32_t vcpus;
	enum kva_accel accel; /* the source's: kvm or user */
	enum proto_mode mode;
	uint64_t started; /* unix time, for the record */
	char sock[ND_DIR_MAX + 80];
	int efd; /* wakes the thread */
	pthread_t thread;

	pthread_mutex_t lock; /* everything down to "thread only" */
	struct nd_mig_qmsg *in, **in_tail, *out, **out_tail;
	unsigned in_n; /* messages in the inbox */
	size_t in_bytes; /* and the memory they hold (proto_msg_size()) */
	bool stop;
	bool stop_always; /* also once the VM runs here (shutdown) */
	char stop_reason[256];
	struct nd_mig_sm *sm; /* the migration's: nd_dst_to() moves it */
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
	struct kva_client *kc;
	pid_t pid;
	uint8_t *map;
	struct fab_mr *mr;
	struct fab_ep *ep;
	struct fab_rkey rk;
	uint64_t *need;
	struct nd_pop *pop; /* maps announced pages in ahead of the reads */
	uint64_t pending; /* pages announced and not pulled yet */
	uint64_t cursor;
	unsigned inflight;
	uint64_t inflight_pages;
	struct nd_window win;
	struct nd_mig_slot slots[ND_MIG_WINDOW];
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
	/* post-copy (nd_mig_post.c) */
	struct fab_addr src_addr; /* the holder: the source */
	uint64_t *seen; /* pages ever announced; the others are holes */
	struct nd_post *post;
};

/* The thread's body (arg: its struct nd_mig_dst). */
void *nd_mig_dst_thread(void *arg);
/* Thread: queue msg (taken) for the source. */
void nd_mig_dst_out(struct nd_mig_dst *d, struct proto_msg *msg);
/*
 * The thread's transition function: move to state `to` (under the lock),
 * log, record, wake the control thread. -EINVAL for a move the table does
 * not have: the state stays, the caller fails the migration.
 */
int nd_dst_to(struct nd_mig_dst *d, enum nd_dst_state to, const char *why);
/* Does d's state imply any of flags? Thread only. */
bool nd_dst_has(const struct nd_mig_dst *d, unsigned flags);
/* COMMIT or RESUMED (or any mig + gen message) at d's generation; NULL: OOM. */
struct proto_msg *nd_mig_dst_gen_msg(struct nd_mig_dst *d, enum proto_type t);
/* Thread: the first reason to give up wins; returns -1. */
int nd_mig_dst_fail(struct nd_mig_dst *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * nd_mig_post.c, the destination's post-copy. Prepare (with the source's
 * holder map, while nothing waits): the fault server's domain, endpoint
 * and our staging buffer. 0 or -errno.
 */
int nd_post_prepare(struct nd_mig_dst *d);
/*
 * All pre-copy reads are in
 * and STATE came; start the fault server, load the state, resume the VM
 * here. 0, or -1 (failed before the VM ran: the source resumes it).
 */
int nd_post_begin(struct nd_mig_dst *d);
/*
 * One turn of the background puller, waiting up to 1 ms: 0 while pages
 * are missing, 1 once every page is here and the uffd is released, -1 when
 * the VM is gone.
 */
int nd_post_step(struct nd_mig_dst *d);
/* A new address or key of the holder (its ferryd restarted). */
void nd_post_holder(struct nd_mig_dst *d);
/* Stop the fault server and free what post-copy made; the VM runs on. */
void nd_post_end(struct nd_mig_dst *d);
/* The fault server's figures as PC_STATS (mig left 0). */
void nd_pc_stats_from(struct proto_pc_stats *o, const struct nd_fault_stats *s,
		      uint64_t duration_ns);

/*
 * The populator (nd_populate.c): a thread that allocates and
 * MADV_POPULATE_WRITEs the announced runs of map (pages long, a MAP_SHARED
 * map of the memfd fd) ahead of the puller's receives.
 */
struct nd_pop;
/* Start it (idle until runs are added); fd stays the caller's; 0 or -errno. */
int nd_pop_start(int fd, uint8_t *map, uint64_t pages, struct nd_pop **out);
/* Queue n announced runs, in order; runs past pages are ignored. */
int nd_pop_add(struct nd_pop *p, const struct fy_run *runs, size_t n);
/* The puller receives about at page: what lies before needs no help. */
void nd_pop_hint(struct nd_pop *p, uint64_t page);
/* Pages populated so far. */
uint64_t nd_pop_done(const struct nd_pop *p);
/* Stop and free (p may be NULL); returns after its last madvise. */
void nd_pop_stop(struct nd_pop *p);
/* Wake the side polling eventfd fd. */
void nd_mig_kick(int fd);

/* Start the puller thread for a MIGRATE_PREPARE; it spawns the VM. */
int nd_mig_dst_start(struct nd_mig *m, const struct proto_migrate_prepare *p);
/*
 * A peer's MIGRATE_PREPARE: refuse it with an ERROR (rate, ids, mode,
 * accelerator, names, one incoming VM at a time) or start the migration.
 */
void nd_mig_dst_prepare(struct nd_node *n, struct nd_peer *p,
			struct proto_msg *msg);
/* Hand a message from the source to the thread; takes msg. */
void nd_mig_dst_push(struct nd_mig *m, struct proto_msg *msg);
/*
 * Control thread: send what the thread queued for the source and take
 * over its news (phase, counters, the VM once committed). Returns true
 * once the thread has ended and was joined.
 */
bool nd_mig_dst_poll(struct nd_mig *m);
/*
 * Ask the thread to give up (it cleans up everything), with a reason. Once
 * the VM runs here (post-copy) only `always` (a shutdown) stops it, and
 * the VM is left running.
 */
void nd_mig_dst_stop(struct nd_mig *m, const char *reason, bool always);
/* Join and free (after nd_mig_dst_poll() returned true or at shutdown). */
void nd_mig_dst_free(struct nd_mig *m);

/* Load the records of earlier migrations; fail interrupted ones. */
int nd_migs_open(struct nd_node *n);
/* A migration message (or an ERROR about one) from peer p; takes m. */
void nd_mig_handle(struct nd_node *n, struct nd_peer *p, struct proto_msg *m);
/* Timers, peer loss, destination threads' news; returns when to call again. */
void nd_migs_tick(struct nd_node *n, uint64_t now);
/*
 * Control socket commands, decoded by proto_ctl_decode(): migrate,
 * migrations, migration, cancel, migrate-postcopy, force-resume.
 */
void nd_migs_command(struct nd_node *n, const struct proto_ctl_req *req,
		     msgpack_packer *pk);
/* Migrations not finished yet. */
unsigned nd_migs_active(const struct nd_node *n);
/* For `ferry status`: "stalls", the post-copies waiting for a holder. */
void nd_migs_pack_stalls(struct nd_node *n, msgpack_packer *pk, uint64_t now);
/* Stop destination threads, fail what is in flight; at shutdown. */
void nd_migs_close(struct nd_node *n);

#endif /* FERRY_NODE_NODE_INT_H */
