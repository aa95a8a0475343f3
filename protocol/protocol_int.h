/* SPDX-License-Identifier: MIT */
#ifndef FERRY_PROTOCOL_PROTOCOL_INT_H
#define FERRY_PROTOCOL_PROTOCOL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "protocol/protocol.h"

/*
 * Internals of protocol/: a strict msgpack reader (proto_reader.c), a
 * table-driven codec that reads, checks, packs and frees a message from a
 * description of its fields (proto_codec.c), and the descriptions of each
 * exchange's messages (proto_session.c, proto_migrate.c).
 */

/* Where a decode or a check is, and the first error found there. */
struct proto_ctx {
	const uint8_t *p, *end; /* the reader's input; unused by checks */
	char *err; /* may be NULL */
	size_t errlen;
	bool failed;
	uint64_t runs; /* runs seen so far in this message */
	size_t pathlen;
	char path[96]; /* "HOLDER_MAP.r[2].g": where the error is */
};

/* Record the first error as "path: reason"; returns -EBADMSG. */
int proto_fail(struct proto_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The same, for a field below the path: field is ".ps", ".r[2].l", ... */
int proto_fail_in(struct proto_ctx *c, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Append to the path; returns the length to give proto_path_pop(). */
size_t proto_path_push(struct proto_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void proto_path_pop(struct proto_ctx *c, size_t len);

/*
 * The reader. Each function checks the format byte, then that the whole
 * item (or, for containers, at least one byte per declared element) lies
 * inside the input, before it moves on. Errors go through proto_fail().
 */
int proto_rd_uint(struct proto_ctx *c, uint64_t *v);
int proto_rd_str(struct proto_ctx *c, const char **s, uint32_t *len);
int proto_rd_bin(struct proto_ctx *c, const uint8_t **b, uint32_t *len);
int proto_rd_array(struct proto_ctx *c, uint32_t *n);
int proto_rd_map(struct proto_ctx *c, uint32_t *n);
int proto_rd_bool(struct proto_ctx *c, bool *v);
/* Step over one value of any type, nested at most PROTO_DEPTH_MAX deep. */
int proto_rd_skip(struct proto_ctx *c, unsigned depth);

/* How a field travels and where it lives in its struct. */
enum proto_kind {
	PK_U64, /* uint64_t */
	PK_U32, /* uint32_t */
	PK_I32, /* int32_t, never negative on the wire */
	PK_STR, /* char[max + 1], NUL-terminated; str on the wire */
	PK_BIN, /* uint8_t[max] + uint32_t length; bin on the wire */
	PK_BOOL, /* bool; true or false: control requests only (proto_ctl.c) */
	PK_BLOB, /* uint8_t * (malloc'ed) + size_t length; bin */
	PK_MAPS, /* array of sub structs + size_t count; array of maps */
	PK_RUNS, /* array of `width` uint64_t + size_t count; flat array */
};

/* Which bytes a string may hold (besides "no NUL", always). */
enum proto_chars {
	PC_NAME, /* printable ASCII, no space: modes, providers */
	PC_ID, /* proto_name_valid(): node ids, VM names (used in paths) */
	PC_TEXT, /* no control characters: reasons, error texts */
	PC_Z85, /* the Z85 alphabet: CURVE keys */
};

struct proto_desc;

struct proto_field {
	const char *key;
	uint8_t kind; /* enum proto_kind */
	uint8_t chars; /* PK_STR: enum proto_chars */
	uint8_t width; /* PK_RUNS: uint64_t per run */
	/*
	 * PK_RUNS: may be absent, and is left out when NULL. Only for a field
	 * added to a message after its version shipped: peers that do not
	 * know it refuse the message, so send it only where they cannot be.
	 */
	bool opt;
	uint32_t off; /* of the value (PK_BLOB..: of the pointer) */
	uint32_t len_off; /* PK_BIN..PK_RUNS: of the length or count */
	uint64_t min, max; /* ints: value; PK_STR, PK_BIN, PK_BLOB: bytes;
			    * PK_MAPS, PK_RUNS: elements */
	const struct proto_desc *sub; /* PK_MAPS: the elements */
};

/* A message (or a nested map): its fields and what the table can't say. */
struct proto_desc {
	const char *name;
	/* messages about a migration: whom they are for (mig at offset 0) */
	enum proto_dir dir;
	size_t size; /* of the struct the offsets are in */
	const struct proto_field *fields;
	size_t nfields;
	/* Cross-field checks, run after every field passed the table. */
	int (*check)(struct proto_ctx *c, const void *s);
};

/* The member at offset off of struct s, of type T (CAT: const). */
#define AT(s, off, T) ((T *)((char *)(s) + (off)))
#define CAT(s, off, T) ((const T *)((const char *)(s) + (off)))

#define PF_MEMBER(T, m) (((T *)0)->m)
#define PF_INT(k, kind_, T, m, lo, hi)                                     \
	{                                                                  \
		.key = k, .kind = kind_, .off = offsetof(T, m), .min = lo, \
		.max = hi                                                  \
	}
#define PF_U64(k, T, m, lo, hi) PF_INT(k, PK_U64, T, m, lo, hi)
#define PF_U32(k, T, m, lo, hi) PF_INT(k, PK_U32, T, m, lo, hi)
#define PF_I32(k, T, m, lo, hi) PF_INT(k, PK_I32, T, m, lo, hi)
/* The buffer's size sets the longest string. */
#define PF_STR(k, T, m, lo, cls)                                               \
	{                                                                      \
		.key = k, .kind = PK_STR, .chars = cls, .off = offsetof(T, m), \
		.min = lo, .max = sizeof(PF_MEMBER(T, m)) - 1                  \
	}
#define PF_BIN(k, T, m, n, lo)                                   \
	{                                                        \
		.key = k, .kind = PK_BIN, .off = offsetof(T, m), \
		.len_off = offsetof(T, n), .min = lo,            \
		.max = sizeof(PF_MEMBER(T, m))                   \
	}
#define PF_BLOB(k, T, m, n, lo, hi)                               \
	{                                                         \
		.key = k, .kind = PK_BLOB, .off = offsetof(T, m), \
		.len_off = offsetof(T, n), .min = lo, .max = hi   \
	}
#define PF_MAPS(k, T, m, n, lo, hi, d)                                    \
	{                                                                 \
		.key = k, .kind = PK_MAPS, .off = offsetof(T, m),         \
		.len_off = offsetof(T, n), .min = lo, .max = hi, .sub = d \
	}
#define PF_BOOL(k, T, m)                                                   \
	{                                                                  \
		.key = k, .kind = PK_BOOL, .off = offsetof(T, m), .max = 1 \
	}
#define PF_RUNS(k, T, m, n, w, lo, hi)                                        \
	{                                                                     \
		.key = k, .kind = PK_RUNS, .width = w, .off = offsetof(T, m), \
		.len_off = offsetof(T, n), .min = lo, .max = hi               \
	}
#define PF_RUNS_OPT(k, T, m, n, w, lo, hi)                                    \
	{                                                                     \
		.key = k, .kind = PK_RUNS, .width = w, .off = offsetof(T, m), \
		.len_off = offsetof(T, n), .min = lo, .max = hi, .opt = true  \
	}

/*
 * One field's value (proto_codec.c), shared by the peer messages and the
 * control requests: read it into s (ints checked to fit, strings for NUL
 * and length); check it against the field's range, length and alphabet.
 */
int proto_rd_value(struct proto_ctx *c, void *s, const struct proto_field *f);
int proto_check_value(struct proto_ctx *c, const void *s,
		      const struct proto_field *f);
/* A client's or peer's key or word for a message, printable bytes only. */
const char *proto_quote(char *buf, size_t size, const char *s, uint32_t len);
/* The words of enum proto_mode and proto_converge, NULL-terminated. */
extern const char *const proto_mode_words[];
extern const char *const proto_converge_words[];

/* The messages of each exchange, defined next to their narrative. */
extern const struct proto_desc proto_hello_desc, proto_ping_desc,
	proto_pong_desc, proto_error_desc;
extern const struct proto_desc proto_holder_map_desc, proto_prepare_desc,
	proto_dirty_desc, proto_progress_desc, proto_state_desc,
	proto_switchover_desc, proto_commit_desc, proto_abort_desc,
	proto_retarget_desc, proto_verify_desc, proto_resumed_desc,
	proto_delta_desc, proto_postcopy_desc, proto_pc_stats_desc,
	proto_ready_desc, proto_resume_desc, proto_kept_desc;

#endif /* FERRY_PROTOCOL_PROTOCOL_INT_H */
