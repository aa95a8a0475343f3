/* SPDX-License-Identifier: MIT */
#ifndef FERRY_NODE_NODE_INT_H
#define FERRY_NODE_NODE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <msgpack.h>

#include "common/log.h"
#include "node/node.h"

/*
 * Internals of node/: configuration, keys, the msgpack -> JSON printer, the
 * CLI's request/rendering code and the daemon's pieces. Only node/ and
 * tests/node, tests/integration include this.
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
#define ND_DEFAULT_CONTROL "/run/ferry/ferryd.sock"
#define ND_DEFAULT_PROVIDER "ofi:tcp"
#define ND_DEFAULT_FABRIC_ADDR "127.0.0.1"
#define ND_DEFAULT_PING_MS 500
#define ND_DEFAULT_TIMEOUT_MS 1500

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
 * Load the key pair from dir, or create it (dir 0700 if missing, files
 * 0600 created with O_EXCL, never chmod'ed afterwards). *created tells
 * which. Returns 0 or -errno (logged).
 */
int nd_keys_load_or_create(const char *dir, struct nd_keys *out, bool *created);

/* nd_json.c */

/* Write s (len bytes) as a JSON string literal with escapes. */
void nd_json_string(FILE *f, const char *s, size_t len);
/*
 * Write a msgpack object as compact JSON. Binary becomes a hex string,
 * non-string map keys are rendered as strings. Returns 0 or -EINVAL for
 * nesting deeper than 32.
 */
int nd_json_write(FILE *f, const msgpack_object *o);
/* Look a string key up in a msgpack map; NULL when absent or not a map. */
const msgpack_object *nd_mp_get(const msgpack_object *map, const char *key);
/* Helpers over nd_mp_get(): copy a string or read an integer. */
const char *nd_mp_str(const msgpack_object *map, const char *key, char *buf,
		      size_t len);
int64_t nd_mp_int(const msgpack_object *map, const char *key, int64_t dflt);
double nd_mp_double(const msgpack_object *map, const char *key, double dflt);
/* Pack a C string, or a key and its string or integer value. */
void nd_mp_pack_str(msgpack_packer *pk, const char *s);
void nd_mp_pack_kv_str(msgpack_packer *pk, const char *k, const char *v);
void nd_mp_pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v);

/* nd_cli.c */

/*
 * Send {"cmd": cmd} to the ferryd control socket at sock_path and wait up
 * to timeout_ms for the reply, unpacked into *reply. reply points into
 * *raw: the caller destroys reply, then frees *raw. Returns 0; -ENOENT / -ECONNREFUSED when no ferryd listens there,
 * -ETIMEDOUT when it does not answer, -EACCES, or another -errno; a text
 * for the user is put in err.
 */
int nd_cli_request(const char *sock_path, const char *cmd, int timeout_ms,
		   msgpack_unpacked *reply, void **raw, char *err,
		   size_t errlen);
/* Render a "status" or "peers" reply for humans. */
void nd_cli_print_status(FILE *f, const msgpack_object *r);
void nd_cli_print_peers(FILE *f, const msgpack_object *r);

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
	uint64_t rtt_last_ns, rtt_sum_ns, rtt_count;
	uint64_t malformed;
	bool malformed_logged;
	bool key_mismatch_logged;
	char problem[64]; /* why our handshake fails; "" when it does not */
	bool problem_logged;
};

#define ND_REFUSED_KEYS_MAX 32

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
	size_t npeers;
	struct nd_peer peers[ND_PEERS_MAX];
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
/* Close it and remove the socket file. */
void nd_ctl_close(struct nd_node *n);

#endif /* FERRY_NODE_NODE_INT_H */
