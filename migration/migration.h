/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIGRATION_H
#define FERRY_MIGRATION_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>

#include <sys/types.h>

#include <msgpack.h>

#include "common/log.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

/*
 * The migration engine (docs/migration.md, docs/architecture.md): every
 * migration of this node, source and destination, as state machines. The
 * daemon (node/) calls it from its control thread: at start, on each
 * migration message from a peer, on its timer, on the control socket's
 * migration commands, and at shutdown.
 */

struct mig;
struct proto_msg;
struct proto_ctl_req;
struct kva_client;
struct fab_domain;
struct mig_vm_ops;
struct mig_held;

#define MIG_MAX 32 /* migrations kept, finished ones included */
/* the most max_incoming and max_outgoing allow: together, the table */
#define MIG_LIMIT_MAX (MIG_MAX / 2)
#define MIG_DIR_MAX 1024

/* A peer as the engine sees it; the daemon keeps one in each peer. */
struct mig_peer {
	const char *name; /* its configured name */
	bool accept_user_vms; /* it may send us VMs of the user accelerator */
	uint64_t disconnect_ns; /* our connection to it last dropped; 0 */
	uint64_t last_seen_ns, last_pong_ns; /* 0: never */
	struct fy_ratelimit warn; /* for what it can repeat: its ERRORs */
	uint64_t prepare_t; /* its MIGRATE_PREPAREs' bucket (mig_dst_ctl.c) */
};

/* A peer's state, as its PONGs tell (the daemon computes it). */
enum mig_peer_state {
	MIG_PEER_CONNECTING, /* no PONG yet */
	MIG_PEER_REACHABLE, /* PONGs arrive */
	MIG_PEER_UNREACHABLE, /* PONGs stopped for peer_timeout_ms */
	MIG_PEER_INCOMPATIBLE, /* HELLO with another protocol version */
};

/* "reachable", ...: the names ferry prints. */
const char *mig_peer_state_name(enum mig_peer_state s);

/* A VM of this host: a ferry-vm whose adapter socket is in vm_dir. */
struct mig_vm {
	bool used; /* the registry's slot is taken */
	char name[PROTO_NAME_MAX + 1];
	/* NULL while an incoming migration's thread owns the VM */
	struct kva_client *kc;
	pid_t pid; /* a ferry-vm we started (destination), else 0 */
	struct mig *mig; /* the migration using it, or NULL */
};

/*
 * What the engine asks of the daemon it runs in: the peer transport and
 * the VM registry. host is mig_env.host. Called on the control thread.
 */
struct mig_host_ops {
	/* Send m to p (never blocks); 0 or -errno. */
	int (*send)(void *host, struct mig_peer *p, const struct proto_msg *m);
	enum mig_peer_state (*peer_state)(void *host, const struct mig_peer *p,
					  uint64_t now);
	/* The configured peer called name, or NULL. */
	struct mig_peer *(*peer_find)(void *host, const char *name);
	/* The VM called name, or NULL; rescan: look in vm_dir first. */
	struct mig_vm *(*vm_find)(void *host, const char *name, bool rescan);
	/* A free slot for name (not attached); NULL when full. */
	struct mig_vm *(*vm_add)(void *host, const char *name);
	/* Close the client (the VM runs on) and free the slot. */
	void (*vm_forget)(void *host, struct mig_vm *vm);
	/*
	 * Start `ferry-vm --incoming` for name, on RAM ram_fd (a memfd; -1:
	 * new RAM; the callee never closes it); *pid; 0 or -errno (logged).
	 */
	int (*vm_spawn)(void *host, const char *name, uint64_t mem,
			unsigned vcpus, enum kva_accel accel, int ram_fd,
			pid_t *pid);
	/* <vm_dir>/<name>.sock into buf; -ENAMETOOLONG if it does not fit. */
	int (*vm_sock_path)(void *host, const char *name, char *buf,
			    size_t len);
	/* Remove our stale socket of name; 0, -EPERM, -EBUSY, -errno. */
	int (*vm_unlink_sock)(void *host, const char *name);
	/*
	 * A fabric domain of its own for an incoming migration: for its
	 * reads (fault false) or for its fault server, which polls it alone.
	 * 0 and *out, or -errno (logged). Any thread. The engine keeps it
	 * for the next incoming migration and hands it to fab_close at
	 * mig_close(), never earlier (docs/fabric.md: closing a domain is
	 * safe only when ferryd stops).
	 */
	int (*fab_open)(void *host, bool fault, struct fab_domain **out);
	void (*fab_close)(void *host, struct fab_domain *d);
};

/* The daemon's settings the engine uses (ferryd.conf). */
struct mig_conf {
	const char *name; /* this node's */
	unsigned peer_timeout_ms, mig_timeout_ms;
	unsigned vm_timeout_ms; /* each adapter call of the control thread */
	/* `ferry migrate`'s defaults for auto-converge */
	enum proto_converge auto_converge;
	unsigned cpu_throttle_initial, cpu_throttle_increment;
	unsigned max_cpu_throttle;
	/* copies kept after a VM left: bytes in all (0: none), age */
	uint64_t retain_bytes;
	unsigned retain_age_s;
	/* migrations at once, each way (1..MIG_LIMIT_MAX) */
	unsigned max_incoming, max_outgoing;
	/* post-copy's background pull here, bytes/s (0: no cap) */
	uint64_t postcopy_bw;
};

/*
 * The fabric domains of one incoming migration, each opened on its first
 * use and kept for the next (mig_fab.c): two migrations polling one
 * domain would take each other's completions.
 */
struct mig_fabs {
	struct fab_domain *pull; /* its reads */
	struct fab_domain *fault; /* its fault server's (post-copy) */
	bool busy; /* a destination thread holds them; control thread */
};

/* The engine of one node: the daemon fills what is above "ours". */
struct mig_env {
	const struct mig_host_ops *ops;
	void *host;
	struct mig_conf cfg;
	struct fab_domain *fab; /* ours, served by its progress thread */
	uint8_t fab_addr_raw[256]; /* our fabric address, for HOLDER_MAP */
	uint32_t fab_addr_len;
	char mig_dir[MIG_DIR_MAX]; /* records: <state_dir>/migrations */
	/* the engine's clock, ns, from any thread; NULL: fy_now_ns() */
	uint64_t (*now)(void);
	/* the adapter client and ferry-vm's process; NULL: real (mig_vm.h) */
	const struct mig_vm_ops *vm_ops;
	int mig_efd; /* eventfd: a destination's thread has news */
	/* ours */
	bool up; /* mig_open() finished */
	int mig_dir_fd;
	struct mig *migs[MIG_MAX];
	/* one set per incoming migration at once, at most max_incoming */
	struct mig_fabs in_fabs[MIG_LIMIT_MAX];
	uint64_t next_mig_id;
	uint64_t next_mig_tick_ns;
	struct mig_held *held; /* retained copies (mig_retain.h) */
};

/*
 * Open mig_dir (made 0700 if missing), load the records of earlier
 * migrations, fail or take up interrupted ones. 0 or -errno.
 */
int mig_open(struct mig_env *n);
/* A migration message (or an ERROR about one) from peer p; takes m. */
void mig_handle(struct mig_env *n, struct mig_peer *p, struct proto_msg *m);
/* Timers, peer loss, destination threads' news; returns when to call again. */
void mig_tick(struct mig_env *n, uint64_t now);
/*
 * Control socket commands, decoded by proto_ctl_decode(): migrate,
 * migrations, migration, cancel, migrate-postcopy, force-resume, retarget.
 */
void mig_command(struct mig_env *n, const struct proto_ctl_req *req,
		 msgpack_packer *pk);
/* Migrations not finished yet. */
unsigned mig_active(const struct mig_env *n);
/* For `ferry status`: "stalls", the post-copies waiting for a holder. */
void mig_pack_stalls(struct mig_env *n, msgpack_packer *pk, uint64_t now);
/*
 * `ferry holders`: who holds which part of VM vm as this node knows: the
 * reply's "holders". Packs the whole reply map: {"vm": vm, "holders":
 * [{"node": str, "kind": "running", "retained", "relay" or "destination",
 * "current_pages": uint, "pages": uint, "age_s": float}, ...]}; a VM of
 * which no holder is known has an empty "holders", not an error.
 */
void mig_pack_holders(struct mig_env *n, const char *vm, msgpack_packer *pk);
/*
 * `ferry release`: free this node's retained copies of VM vm; how many
 * (0: none kept here, not an error), or -errno with a text in err
 * (errlen bytes).
 */
int mig_release_kept(struct mig_env *n, const char *vm, char *err,
		     size_t errlen);
/* Stop destination threads, fail what is in flight; at shutdown. */
void mig_close(struct mig_env *n);
/*
 * Unmap map (len bytes; NULL: none) keep_ns from now and close kc (NULL:
 * none) on a thread of their own, which now owns both: the last reference
 * to a guest's RAM frees it, about 0.3 s per GiB here, time the control
 * thread owes its peers' PINGs and the CLI. keep_ns: peers may still be
 * served from map (fab_mr_serve_late_ns()). Inline, at once, if no thread
 * can be had.
 */
void mig_release_bg(void *map, size_t len, struct kva_client *kc,
		    uint64_t keep_ns);
/* The migration's id (chosen by its source). */
uint64_t mig_id(const struct mig *m);
/*
 * The fault points (common/fault.h) of the transition functions:
 * "src:before:STATE" and "dst:before:STATE" fire before the move (and its
 * record; "fail" refuses the move), "src:after:STATE" and
 * "dst:after:STATE" once the move is recorded; and the destination's
 * thread's own: "dst:spawned" (the incoming ferry-vm started, not yet
 * attached) and "dst:round:N" (the first DIRTY_SET or DELTA_SET of round
 * N taken, before its pulls). Is point one of them?
 */
bool mig_fault_known(const char *point);

#endif /* FERRY_MIGRATION_MIGRATION_H */
