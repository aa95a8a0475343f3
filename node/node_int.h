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
#include "migration/migration.h"
#include "node/nd_config.h"
#include "node/node.h"
#include "protocol/protocol.h"

/*
 * Internals of node/, the daemon's pieces: peers, the ZAP handler, the
 * control socket, the VMs of this host, the node. Only node/, the
 * migration engine (for now) and tests include this.
 */

/* nd_ctl.c: the CLI's ipc:// socket, daemon side */

/*
 * Make the control socket's directory: create it 0700 (0750 and chgrp when
 * a group is configured), or check an existing one is ours and no looser.
 * Then check no live ferryd answers on the socket (a stale file is
 * removed). Returns 0 or -errno (logged).
 */
int nd_ctl_prepare(const struct nd_config *cfg);

/* The daemon: one node, its peers, its sockets (nd_node.c, nd_peer.c). */

struct nd_node;
struct mig;
struct proto_msg;
struct proto_migrate_prepare;
struct fab_mr;
struct kva_client;
struct kva_layout;

struct nd_peer {
	/* what the engine sees: name, last seen, PONGs, its log limiter */
	struct mig_peer mig;
	const struct nd_peer_conf *conf;
	struct nd_node *node;
	void *dealer; /* our CURVE client socket to its ROUTER */
	void *mon; /* PAIR receiving the DEALER's handshake events */
	uint8_t key_raw[32]; /* conf->public_key decoded, for ZAP */
	bool hello_out; /* it answered our HELLO */
	bool hello_in; /* it sent us its HELLO */
	bool incompatible;
	bool ever_reachable;
	enum mig_peer_state state; /* as last computed by nd_peers_tick() */
	uint32_t remote_version;
	char remote_node[ND_NAME_MAX + 1];
	char remote_provider[ND_PROVIDER_MAX + 1];
	char remote_fabric[128]; /* its fabric address, formatted */
	uint64_t ping_seq;
	uint64_t ticks;
	uint64_t rtt_last_ns, rtt_sum_ns, rtt_count;
	uint64_t malformed;
	bool malformed_logged;
	bool key_mismatch_logged;
	char problem[64]; /* why our handshake fails; "" when it does not */
	bool problem_logged;
};

#define ND_REFUSED_KEYS_MAX 32
#define ND_VMS_MAX 64

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
	/* incoming migrations open domains of their own (nd_host.c) */
	struct fab_domain *fab;
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
	struct mig_vm vms[ND_VMS_MAX];
	struct mig_env mig; /* the migration engine, run by our thread */
};

/* nd_host.c: fill n->mig, the engine's view of this node; 0 or -errno. */
int nd_host_open(struct nd_node *n);

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
/* p's state at time now (see enum mig_peer_state), computed from its PONGs. */
enum mig_peer_state nd_peer_state(const struct nd_peer *p, uint64_t now);
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
struct mig_vm *nd_vm_find(struct nd_node *n, const char *name);
/* Take a free slot for name (not attached); NULL when full. */
struct mig_vm *nd_vm_add(struct nd_node *n, const char *name);
/* Close the client (the VM runs on; mig_release_bg()) and free the slot. */
void nd_vm_forget(struct mig_vm *vm);
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
 * in its own session, with `--ram-fd` when ram_fd >= 0 (ours still: the
 * child gets a copy); *pid is the child. 0 or -errno (logged).
 */
int nd_vm_spawn_incoming(const struct nd_node *n, const char *name,
			 uint64_t mem, unsigned vcpus, enum kva_accel accel,
			 int ram_fd, pid_t *pid);
/* Answer {"cmd": "vms"}. */
void nd_vms_pack(struct nd_node *n, msgpack_packer *pk);
/* Close every client (the VMs run on). */
void nd_vms_close(struct nd_node *n);

#endif /* FERRY_NODE_NODE_INT_H */
