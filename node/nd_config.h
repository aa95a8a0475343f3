/* SPDX-License-Identifier: MIT */
#ifndef FERRY_NODE_ND_CONFIG_H
#define FERRY_NODE_ND_CONFIG_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/log.h"
#include "fabric/fabric.h"
#include "protocol/protocol.h"

/*
 * Inside node/: ferryd's configuration (nd_config.c), its key pair and
 * private directories (nd_keys.c), with their limits and defaults.
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
#define ND_DEFAULT_PING_MS 500
#define ND_DEFAULT_TIMEOUT_MS 1500
#define ND_DEFAULT_MIG_TIMEOUT_MS 10000
/* auto-converge; the throttle steps are QEMU's defaults */
#define ND_DEFAULT_AUTO_CONVERGE PROTO_CONVERGE_DOWNTIME
#define ND_DEFAULT_THROTTLE_INITIAL 20
#define ND_DEFAULT_THROTTLE_INCREMENT 10
#define ND_DEFAULT_THROTTLE_MAX 99
/* migrations at once, each way (max_incoming, max_outgoing) */
#define ND_DEFAULT_MIG_LIMIT 4
/* a VM's copy kept after it left: off; its age once on */
#define ND_DEFAULT_RETAIN_AGE_S 600
#define ND_RETAIN_AGE_MAX_S (7 * 86400)
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
	/* "" = the provider's default: 127.0.0.1, or verbs' device address */
	char fabric_address[ND_ENDPOINT_MAX];
	char fabric_port[16]; /* "" = any */
	char verbs_device[ND_NAME_MAX + 1]; /* "" = auto */
	unsigned verbs_port; /* 0 = auto */
	unsigned verbs_gid; /* GID index + 1; 0 = auto */
	char vm_dir[ND_DIR_MAX]; /* "" = <state_dir>/vms */
	char ferry_vm[ND_DIR_MAX]; /* "" = beside ferryd, then PATH */
	unsigned mig_timeout_ms; /* silence that fails a migration */
	/* defaults of `ferry migrate` for auto-converge */
	enum proto_converge auto_converge;
	unsigned cpu_throttle_initial; /* percent, 1..99 */
	unsigned cpu_throttle_increment; /* percent, 1..99 */
	unsigned max_cpu_throttle; /* percent, 1..99 */
	/* migrations at once, each way: 1..MIG_LIMIT_MAX */
	unsigned max_incoming, max_outgoing;
	/* copies kept after their VM left: bytes in all (0: off), age */
	uint64_t holder_retention;
	unsigned holder_retention_age_s;
	uint64_t postcopy_max_bandwidth; /* bytes/s; 0: no cap */
	size_t npeers;
	struct nd_peer_conf peers[ND_PEERS_MAX];
};

/* nd_config.c */

/*
 * Fill cfg with the defaults (node name = host name). Never fails: a host
 * name that is not a valid node name becomes "ferry".
 */
void nd_config_defaults(struct nd_config *cfg);
/* The fabric options [fabric] gives; pointers into cfg. */
void nd_config_fab_opts(const struct nd_config *cfg, struct fab_opts *o);
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

#endif /* FERRY_NODE_ND_CONFIG_H */
