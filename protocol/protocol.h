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
#define PROTO_HOLDERS_MAX 8 /* holders a destination pulls from at once */

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
	PROTO_KEPT,
	PROTO_TYPE_LAST = PROTO_KEPT,
};

/* A run of pages that a holder holds at one generation. */
struct proto_genrun {
	uint64_t start;
	uint64_t len;
	uint64_t gen;
};

/*
 * Strings are NUL-terminated. Names (node ids, VM names, providers) are
 * printable ASCII without spaces, texts have no control characters.
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

/* Pages [start, start + pages) of a holder's region: its key and address. */
struct proto_keyrun {
	uint64_t start;
	uint64_t pages;
	uint64_t key;
	uint64_t base; /* remote address of page start */
};

/* One region of a holder's copy. */
struct proto_holder_region {
	uint32_t id; /* unique in the map */
	uint64_t key; /* changes whenever a key of keys does */
	uint64_t base;
	uint64_t len; /* bytes, a multiple of the page size; pages = len / it */
	size_t ngens;
	struct proto_genrun *gens; /* sorted, disjoint, inside the region */
	/*
	 * NULL (absent on the wire): all of the region under key. Otherwise
	 * sorted, disjoint, inside the region: what peers may read, each run
	 * under its own key; the rest is not registered (fab_mr_grow()).
	 */
	size_t nkeys;
	struct proto_keyrun *keys;
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
	uint64_t lineage; /* the VM's, the same on every hop (>= 1) */
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

/* PROGRESS: the bytes pulled from one holder so far. */
struct proto_holder_bytes {
	char node[PROTO_NAME_MAX + 1];
	uint64_t bytes;
};

struct proto_progress {
	uint64_t mig;
	uint32_t round;
	uint64_t pages_valid; /* <= pages_total */
	uint64_t pages_total;
	uint64_t bytes;
	size_t nholders; /* 0 .. PROTO_HOLDERS_MAX, each node once */
	struct proto_holder_bytes *holders;
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
 * DELTA_SET: `pages` pages of a region, each raw or a delta against the
 * destination's copy, in the sender's registered [base, base + len), key.
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
 * PC_STATS: the destination's post-copy figures so far (ns): faults, their
 * service times, blocktime (the sum of their waits), pages pre-paged,
 * holes zero-filled, stalls and their total.
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
		struct proto_mig_gen kept;
		struct proto_pc_stats pc_stats;
		struct proto_verify verify;
		struct proto_delta_set delta;
		struct proto_abort abort;
		struct proto_retarget retarget;
		struct proto_error error;
	};
};

/*
 * Encode m into *buf (malloc'ed, the caller frees it) of *len bytes. 0,
 * -EINVAL if m breaks a limit (checked as the decoder would), or -ENOMEM.
 */
int proto_encode(const struct proto_msg *m, void **buf, size_t *len);
/*
 * Decode one message into *out, the caller's (proto_msg_free()); NULL on
 * failure. 0, -EBADMSG with the reason, naming the field, in err (errlen
 * bytes; err may be NULL), -EPROTONOSUPPORT for a well-formed HELLO of
 * another PROTO_VERSION (err says which; answer it with an ERROR), or
 * -ENOMEM. No logging: the caller knows the peer and logs that.
 */
int proto_decode(const void *buf, size_t len, struct proto_msg **out, char *err,
		 size_t errlen);
/*
 * Free a message and its arrays (blob, regions, gens, runs), decoded or
 * built by the caller with malloc'ed arrays. Accepts NULL.
 */
void proto_msg_free(struct proto_msg *m);
/* The bytes m holds in memory, its arrays included: what to bound. */
size_t proto_msg_size(const struct proto_msg *m);
/*
 * Is s a node id or VM name: 1..PROTO_NAME_MAX of A-Z a-z 0-9 . _ -, first
 * a letter or digit? Safe in a file name (no '/', never "." or "..").
 */
bool proto_name_valid(const char *s);
/* "HELLO", "DIRTY_SET", ...; "?" for an unknown type. */
const char *proto_type_name(enum proto_type t);

/* Whom a message about a migration is for: its source, its destination. */
enum proto_dir {
	PROTO_TO_NONE, /* not about a migration: HELLO, PING, PONG */
	PROTO_TO_SOURCE,
	PROTO_TO_DEST,
	PROTO_TO_EITHER, /* HOLDER_MAP, ABORT, ERROR */
};

/* The migration m is about (0: none) and whom it is for, from the table. */
enum proto_dir proto_msg_mig(const struct proto_msg *m, uint64_t *mig);

/* The control socket: its requests and the helpers of its replies. */
#include "protocol/protocol_ctl.h"

#endif /* FERRY_PROTOCOL_PROTOCOL_H */
