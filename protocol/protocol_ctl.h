/* SPDX-License-Identifier: MIT */
#ifndef FERRY_PROTOCOL_PROTOCOL_CTL_H
#define FERRY_PROTOCOL_PROTOCOL_CTL_H

/*
 * Part of protocol/'s public header, kept apart for its size: the control
 * socket between the `ferry` CLI and ferryd, its requests and the helpers
 * of its replies. protocol/protocol.h includes it; include that instead.
 */
#ifndef FERRY_PROTOCOL_PROTOCOL_H
#error "include protocol/protocol.h, not protocol/protocol_ctl.h"
#endif

/*
 * Modes, auto-converge policies: words in MIGRATE_PREPARE, requests, the
 * configuration, records.
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
	PROTO_CTL_RETARGET,
	PROTO_CTL_HOLDERS,
	PROTO_CTL_RELEASE,
	PROTO_CTL_CMD_LAST = PROTO_CTL_RELEASE,
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
	/* migrate: vm and to required; retarget: to; holders, release: vm */
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
	/*
	 * migration, cancel, migrate-postcopy, force-resume, retarget: id
	 * required; source for all but retarget, which only the source runs
	 */
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

#endif /* FERRY_PROTOCOL_PROTOCOL_CTL_H */
