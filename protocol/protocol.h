/* SPDX-License-Identifier: MIT */
#ifndef FERRY_PROTOCOL_PROTOCOL_H
#define FERRY_PROTOCOL_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "common/bitmap.h"

/*
 * Every control message between peers, as a msgpack map with fixed field
 * names. docs/protocol.md is the spec. Decoding is strict: every type, size,
 * count and page index is checked against the limits below before use, and
 * nothing is allocated in proportion to a peer's number beyond them.
 */

#define PROTO_VERSION 1

/* Limits a decoder enforces; docs/protocol.md lists them too. */
#define PROTO_MSG_MAX (64u << 20) /* bytes in one encoded message */
#define PROTO_NAME_MAX 63 /* node ids, VM names: bytes, no NUL */
#define PROTO_TEXT_MAX 1023 /* reasons, error texts */
#define PROTO_KEY_LEN 40 /* CURVE public key, Z85 */
#define PROTO_ADDR_MAX 256 /* fabric address bytes (FAB_ADDR_MAX) */
#define PROTO_PROVIDER_MAX 63
#define PROTO_REGIONS_MAX 64
#define PROTO_PAGES_MAX (1ULL << 36) /* pages in one region: 256 TiB */
#define PROTO_RUNS_MAX (1u << 20) /* runs in one message */
#define PROTO_VCPUS_MAX 1024
#define PROTO_STATE_MAX (16u << 20) /* opaque vCPU/device blob */
#define PROTO_PAGE_SIZE_MIN 4096u /* page sizes: powers of two in between */
#define PROTO_PAGE_SIZE_MAX (1u << 30)
#define PROTO_REGION_BYTES_MAX (1ULL << 48) /* one region, any page size */
#define PROTO_DEPTH_MAX 8 /* msgpack nesting a decoder walks */
#define PROTO_ERRNO_MAX 4095 /* ERROR codes are 1 .. this */
#define PROTO_CSUMS_MAX (1u << 20) /* page checksums in one VERIFY */
#define PROTO_DELTA_MAX (1ULL << 40) /* bytes of one DELTA_SET's buffer */

enum proto_type {
	PROTO_HELLO = 1,
	PROTO_PING,
	PROTO_PONG,
	PROTO_HOLDER_MAP,
	PROTO_MIGRATE_PREPARE,
	PROTO_DIRTY_SET,
	PROTO_PROGRESS,
	PROTO_STATE,
	PROTO_SWITCHOVER,
	PROTO_COMMIT,
	PROTO_ABORT,
	PROTO_RETARGET,
	PROTO_ERROR,
	PROTO_VERIFY,
	PROTO_RESUMED,
	PROTO_DELTA_SET,
	PROTO_POSTCOPY,
	PROTO_PC_STATS,
	PROTO_READY,
	PROTO_RESUME,
	PROTO_TYPE_LAST = PROTO_RESUME,
};

/* A run of pages that a holder holds at one generation. */
struct proto_genrun {
	uint64_t start;
	uint64_t len;
	uint64_t gen;
};

/*
 * Strings below are NUL-terminated. Names (node ids, VM names, providers)
 * are printable ASCII without spaces; texts have no control characters;
 * docs/protocol.md gives every field's limits.
 */
struct proto_hello {
	uint32_t version; /* PROTO_VERSION */
	char node[PROTO_NAME_MAX + 1];
	char pubkey[PROTO_KEY_LEN + 1]; /* exactly 40 Z85 characters */
	/* fabric provider ("ofi:tcp") and address: both set, or both empty */
	char provider[PROTO_PROVIDER_MAX + 1];
	uint32_t addr_len;
	uint8_t addr[PROTO_ADDR_MAX]; /* fabric address */
};

/* PING and PONG: the PONG echoes seq and the sender's timestamp. */
struct proto_ping {
	uint64_t seq;
	uint64_t sent_ns;
};

/* One region of a holder's copy. */
struct proto_holder_region {
	uint32_t id; /* unique in the map */
	uint64_t key;
	uint64_t base;
	uint64_t len; /* bytes, a multiple of the page size; pages = len / it */
	size_t ngens;
	struct proto_genrun *gens; /* sorted, disjoint, inside the region */
};

struct proto_holder_map {
	uint64_t mig;
	char node[PROTO_NAME_MAX + 1]; /* the holder */
	uint32_t addr_len;
	uint8_t addr[PROTO_ADDR_MAX];
	uint32_t page_size; /* as in MIGRATE_PREPARE */
	size_t nregions;
	struct proto_holder_region *regions;
};

struct proto_region_desc {
	uint32_t id; /* unique in the manifest */
	uint64_t pages; /* 1 .. PROTO_PAGES_MAX */
};

struct proto_migrate_prepare {
	uint64_t mig;
	char vm[PROTO_NAME_MAX + 1];
	char mode[16]; /* "precopy", "postcopy", "hybrid" */
	uint32_t page_size; /* a power of two, 4096 .. 1 GiB */
	uint32_t vcpus; /* 1 .. PROTO_VCPUS_MAX */
	char accel[8]; /* "kvm", "user": the source's, the destination's too */
	size_t nregions;
	struct proto_region_desc *regions;
};

struct proto_dirty_set {
	uint64_t mig;
	uint64_t gen;
	uint32_t region;
	size_t nruns;
	struct fy_run *runs; /* sorted, disjoint, below PROTO_PAGES_MAX */
};

struct proto_progress {
	uint64_t mig;
	uint32_t round;
	uint64_t pages_valid; /* <= pages_total */
	uint64_t pages_total;
	uint64_t bytes;
};

struct proto_state {
	uint64_t mig;
	size_t len;
	uint8_t *blob;
};

/* SWITCHOVER, COMMIT, RESUMED, POSTCOPY, READY, RESUME: */
struct proto_mig_gen {
	uint64_t mig;
	uint64_t gen;
};

/* VERIFY: xxh3-64 checksums (fy_page_csum) of pages start .. start + n - 1 */
struct proto_verify {
	uint64_t mig;
	uint32_t region;
	uint64_t start;
	size_t len; /* bytes: 8 per page, little-endian */
	uint8_t *csums;
};

/*
 * DELTA_SET: the new contents of `pages` pages of a region, encoded (page
 * by page, raw or as a delta against the copy the destination holds) in
 * the sender's registered buffer [base, base + len) under key.
 */
struct proto_delta_set {
	uint64_t mig;
	uint64_t gen;
	uint32_t region;
	uint64_t key;
	uint64_t base;
	uint64_t len;
	uint64_t pages;
};

/*
 * PC_STATS: the destination's post-copy figures so far (times in ns):
 * faults served, service time percentiles, blocktime (sum over faults of
 * their wait), pages pre-paged, holes zero-filled, stalls and their total.
 */
struct proto_pc_stats {
	uint64_t mig;
	uint64_t faults;
	uint64_t p50, p99, max;
	uint64_t blocktime;
	uint64_t prepaged;
	uint64_t zero_pages;
	uint64_t stalls, stall_ns;
	uint64_t duration; /* since the VM resumed on the destination */
	uint64_t stalled; /* 1: the holder does not answer now */
};

struct proto_abort {
	uint64_t mig; /* every mig but ERROR's is >= 1 */
	char reason[PROTO_TEXT_MAX + 1];
};

struct proto_retarget {
	uint64_t mig;
	char node[PROTO_NAME_MAX + 1]; /* the new destination */
};

struct proto_error {
	uint64_t mig; /* 0: not about a migration */
	int32_t code; /* a positive errno, 1 .. PROTO_ERRNO_MAX */
	char text[PROTO_TEXT_MAX + 1];
};

struct proto_msg {
	enum proto_type type;
	union {
		struct proto_hello hello;
		struct proto_ping ping; /* PING and PONG */
		struct proto_holder_map holder_map;
		struct proto_migrate_prepare prepare;
		struct proto_dirty_set dirty;
		struct proto_progress progress;
		struct proto_state state;
		struct proto_mig_gen switchover;
		struct proto_mig_gen commit;
		struct proto_mig_gen resumed;
		struct proto_mig_gen postcopy;
		struct proto_pc_stats pc_stats;
		struct proto_verify verify;
		struct proto_delta_set delta;
		struct proto_abort abort;
		struct proto_retarget retarget;
		struct proto_error error;
	};
};

/*
 * Encode m. On success *buf is malloc'ed (the caller frees it) and *len its
 * size. Returns 0, -EINVAL if m itself breaks a limit (checked as the
 * decoder would), or -ENOMEM.
 */
int proto_encode(const struct proto_msg *m, void **buf, size_t *len);
/*
 * Decode one message. On success *out is allocated and owned by the caller
 * (proto_msg_free()). Returns 0, -EBADMSG with the reason, naming the
 * field, in err (errlen bytes; err may be NULL), -EPROTONOSUPPORT for a
 * well-formed HELLO of another PROTO_VERSION (err says which; answer it
 * with an ERROR), or -ENOMEM. On failure *out is NULL. It does not log:
 * the caller knows which peer sent the message and logs that.
 */
int proto_decode(const void *buf, size_t len, struct proto_msg **out, char *err,
		 size_t errlen);
/*
 * Free a message and its arrays (blob, regions, gens, runs): one from
 * proto_decode(), or one the caller built with malloc'ed arrays.
 * Accepts NULL.
 */
void proto_msg_free(struct proto_msg *m);
/* The bytes m holds in memory, its arrays included: what to bound. */
size_t proto_msg_size(const struct proto_msg *m);
/*
 * Is s a valid name: a node id or VM name, 1..PROTO_NAME_MAX characters of
 * A-Z a-z 0-9 . _ -, beginning with a letter or digit? Such a name is
 * safe in a file name (no '/', never "." or "..").
 */
bool proto_name_valid(const char *s);
/* "HELLO", "DIRTY_SET", ...; "?" for an unknown type. */
const char *proto_type_name(enum proto_type t);

/* Whom a message about a migration is for: its source, its destination. */
enum proto_dir {
	PROTO_TO_NONE, /* not about a migration: HELLO, PING, PONG */
	PROTO_TO_SOURCE,
	PROTO_TO_DEST,
	PROTO_TO_EITHER, /* HOLDER_MAP, ABORT, ERROR, RETARGET */
};

/*
 * The migration m is about (0 for an ERROR about none) and whom it is
 * for, from the message table. PROTO_TO_NONE (and *mig 0) for the others.
 */
enum proto_dir proto_msg_mig(const struct proto_msg *m, uint64_t *mig);

/*
 * A migration's mode and auto-converge policy, and their words: the same
 * in MIGRATE_PREPARE, in control requests, in ferryd.conf and in records.
 */
enum proto_mode {
	PROTO_MODE_PRECOPY,
	PROTO_MODE_POSTCOPY,
	PROTO_MODE_HYBRID,
};

enum proto_converge {
	PROTO_CONVERGE_DOWNTIME,
	PROTO_CONVERGE_THROTTLE,
	PROTO_CONVERGE_NONE,
};

/* NULL-terminated, indexed by the enum. */
extern const char *const proto_mode_words[];
extern const char *const proto_converge_words[];
/* The enum of word s ("off" is "none"), or -EINVAL. */
int proto_mode_parse(const char *s);
int proto_converge_parse(const char *s);
/* The word of a value; "?" out of range. */
const char *proto_mode_name(enum proto_mode m);
const char *proto_converge_name(enum proto_converge c);

/*
 * Requests of the `ferry` CLI on ferryd's control socket (proto_ctl.c;
 * docs/operations.md, "The control socket"): one msgpack map, "cmd" and
 * the fields that command takes. Decoded as strictly as peer messages,
 * with the same reader; only the fields differ, and most are optional.
 */
#define PROTO_CTL_MSG_MAX (64u << 10) /* bytes in one control request */

enum proto_ctl_cmd {
	PROTO_CTL_STATUS = 1,
	PROTO_CTL_PEERS,
	PROTO_CTL_VMS,
	PROTO_CTL_MIGRATE,
	PROTO_CTL_MIGRATIONS,
	PROTO_CTL_MIGRATION,
	PROTO_CTL_CANCEL,
	PROTO_CTL_MIGRATE_POSTCOPY,
	PROTO_CTL_FORCE_RESUME,
	PROTO_CTL_CMD_LAST = PROTO_CTL_FORCE_RESUME,
};

/* The fields besides "cmd": bit f of proto_ctl_req.has says f came. */
enum proto_ctl_field {
	PROTO_CTL_VM,
	PROTO_CTL_TO,
	PROTO_CTL_MODE,
	PROTO_CTL_POSTCOPY_AFTER,
	PROTO_CTL_DOWNTIME_LIMIT_MS,
	PROTO_CTL_MAX_DOWNTIME_MS,
	PROTO_CTL_MAX_BANDWIDTH,
	PROTO_CTL_COMPRESS,
	PROTO_CTL_VERIFY,
	PROTO_CTL_AUTO_CONVERGE,
	PROTO_CTL_MAX_ROUNDS,
	PROTO_CTL_STALL_ROUNDS,
	PROTO_CTL_TIMEOUT_S,
	PROTO_CTL_CPU_THROTTLE_INITIAL,
	PROTO_CTL_CPU_THROTTLE_INCREMENT,
	PROTO_CTL_MAX_CPU_THROTTLE,
	PROTO_CTL_ID,
	PROTO_CTL_SOURCE,
	PROTO_CTL_FENCED,
	PROTO_CTL_NFIELDS,
};

#define PROTO_CTL_HAS(r, f) (((r)->has >> (f)) & 1)

/*
 * A decoded request. A field that did not come is zero (""), and its bit
 * in has is clear: proto_ctl_defaults() fills in its default, and ferryd
 * the ones that come from its configuration. docs/operations.md lists each
 * field's range.
 */
struct proto_ctl_req {
	enum proto_ctl_cmd cmd;
	uint32_t has; /* bit f: field f (enum proto_ctl_field) came */
	/* migrate: vm and to are required */
	char vm[PROTO_NAME_MAX + 1]; /* ids (proto_name_valid()) */
	char to[PROTO_NAME_MAX + 1];
	char mode[16]; /* "precopy", "postcopy", "hybrid" */
	uint32_t postcopy_after; /* rounds; 0: when stuck */
	uint32_t downtime_limit_ms, max_downtime_ms;
	uint64_t max_bandwidth; /* bytes/s; 0: no limit */
	char compress[16]; /* "none", "delta" */
	bool verify;
	char auto_converge[16]; /* "downtime", "throttle", "off", "none", "" */
	uint32_t max_rounds, stall_rounds;
	uint32_t timeout_s; /* 0: none */
	/* percent; 0: ferryd's configuration */
	uint32_t cpu_throttle_initial, cpu_throttle_increment;
	uint32_t max_cpu_throttle;
	/* migration, cancel, migrate-postcopy, force-resume: id required */
	uint64_t id;
	char source[PROTO_NAME_MAX + 1]; /* the node that started it */
	bool fenced; /* force-resume: the operator fenced the peer */
};

/*
 * Decode one control request into *out. Returns 0, or -EBADMSG with the
 * reason, naming the field ("migrate.vm: byte 0x2f at offset 2 not
 * allowed"), in err (errlen bytes; may be NULL): more than PROTO_CTL_MSG_MAX
 * bytes, not one map, bytes after it, a missing or unknown "cmd", a key
 * that command does not take or that comes twice, a value of the wrong
 * type or out of its range, a missing required field. Never allocates,
 * never logs.
 */
int proto_ctl_decode(const void *buf, size_t len, struct proto_ctl_req *out,
		     char *err, size_t errlen);
/*
 * Encode r: "cmd", then every field whose has bit is set, in the order of
 * enum proto_ctl_field. r is checked as the decoder would check it, with
 * the same reason in err (errlen bytes; may be NULL). *buf is malloc'ed,
 * the caller's; returns 0, -EINVAL or -ENOMEM.
 */
int proto_ctl_encode(const struct proto_ctl_req *r, void **buf, size_t *len,
		     char *err, size_t errlen);
/*
 * Set field f of r, whose cmd must be set, to v (an integer field; a
 * boolean takes 0 or 1) or to s (a string), and set its bit in has. v or
 * s is checked as the decoder checks what comes, except that 0 or "" is
 * refused where it would mean "the configuration's": leave the field out
 * instead. Returns 0, or -EINVAL with the decoder's reason in err
 * ("migrate.downtime_limit_ms: 0 not in 1..3600000"), r untouched.
 */
int proto_ctl_set_uint(struct proto_ctl_req *r, enum proto_ctl_field f,
		       uint64_t v, char *err, size_t errlen);
int proto_ctl_set_str(struct proto_ctl_req *r, enum proto_ctl_field f,
		      const char *s, char *err, size_t errlen);
/*
 * The defaults of the control requests, kept in proto_ctl.c's field
 * table, the one place they are written. Fill every field of r's command
 * that is not required and did not come (its bit in has clear; has is
 * left as it is) with its default: for migrate mode "precopy",
 * downtime_limit_ms 300, max_downtime_ms 10000, max_rounds 30,
 * stall_rounds 3, timeout_s 600, compress "none", the rest 0 or false;
 * and max_downtime_ms at least downtime_limit_ms. auto_converge and the
 * throttle percentages stay "" and 0: their defaults are the node's
 * configuration, which ferryd applies.
 */
void proto_ctl_defaults(struct proto_ctl_req *r);
/*
 * Field f's default as text into buf (len bytes): "300", "precopy",
 * "false". Returns buf, or NULL for a field with none here: a required
 * one, or one whose default is the node's configuration.
 */
const char *proto_ctl_default(enum proto_ctl_field f, char *buf, size_t len);
/* "status", "force-resume", ...; "?" for an unknown command. */
const char *proto_ctl_cmd_name(enum proto_ctl_cmd c);

/*
 * The control socket's replies (proto_mp.c): msgpack maps that ferryd
 * packs and the CLI reads field by field. The readers never fail: a
 * missing field, one of another type or a map that is not one reads as
 * the default. Nothing is allocated; results point into map.
 */

/* The value of str key in map; NULL when absent or map is not a map. */
const msgpack_object *proto_mp_get(const msgpack_object *map, const char *key);
/*
 * Copy str key of map into buf (len bytes, truncated, always terminated
 * when len > 0); "-" when absent or not a str. Returns buf.
 */
const char *proto_mp_str(const msgpack_object *map, const char *key, char *buf,
			 size_t len);
/* Integer key of map (clamped to INT64_MAX), or dflt. */
int64_t proto_mp_int(const msgpack_object *map, const char *key, int64_t dflt);
/* Float or integer key of map as a double, or dflt. */
double proto_mp_double(const msgpack_object *map, const char *key, double dflt);
/* Pack a C string, or a str key and its str or unsigned value. */
void proto_mp_pack_str(msgpack_packer *pk, const char *s);
void proto_mp_pack_kv_str(msgpack_packer *pk, const char *k, const char *v);
void proto_mp_pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v);

#endif /* FERRY_PROTOCOL_PROTOCOL_H */
