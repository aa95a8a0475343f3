// SPDX-License-Identifier: MIT
/*
 * protocol/proto_ctl.c: the control requests of the `ferry` CLI. Every
 * command decodes; every class of bad request is refused with a reason
 * that names the field. Requests are packed here with msgpack-c, key by
 * key, so that each bad one has exactly one thing wrong. What the CLI
 * uses, the encoder and the setters, checks with the decoder's words and
 * round-trips; the defaults and the checks across fields are the ones
 * ferryd applies.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <msgpack.h>

#include "common/util.h"
#include "protocol/protocol.h"

/* ---- helpers ---- */

struct rq {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

/* A map of n entries, the first "cmd": cmd (NULL: no "cmd" at all). */
static void begin(struct rq *r, unsigned n, const char *cmd)
{
	msgpack_sbuffer_init(&r->sb);
	msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
	msgpack_pack_map(&r->pk, n);
	if (cmd) {
		msgpack_pack_str_with_body(&r->pk, "cmd", 3);
		msgpack_pack_str_with_body(&r->pk, cmd, strlen(cmd));
	}
}

static void key(struct rq *r, const char *k)
{
	msgpack_pack_str_with_body(&r->pk, k, strlen(k));
}

static void kv_str(struct rq *r, const char *k, const char *v)
{
	key(r, k);
	msgpack_pack_str_with_body(&r->pk, v, strlen(v));
}

static void kv_u64(struct rq *r, const char *k, uint64_t v)
{
	key(r, k);
	msgpack_pack_uint64(&r->pk, v);
}

static void kv_bool(struct rq *r, const char *k, bool v)
{
	key(r, k);
	if (v)
		msgpack_pack_true(&r->pk);
	else
		msgpack_pack_false(&r->pk);
}

static void decode_ok(struct rq *r, struct proto_ctl_req *out)
{
	char err[256] = "";

	if (proto_ctl_decode(r->sb.data, r->sb.size, out, err, sizeof(err)))
		fail_msg("decode refused: %s", err);
	msgpack_sbuffer_destroy(&r->sb);
}

static void expect_bytes(const void *buf, size_t len, const char *want)
{
	struct proto_ctl_req out;
	char err[256];
	int rc;

	memset(err, 'X', sizeof(err));
	rc = proto_ctl_decode(buf, len, &out, err, sizeof(err));
	if (rc != -EBADMSG || !strstr(err, want))
		fail_msg("decode: rc %d, err \"%s\" (want \"%s\")", rc, err,
			 want);
	/* nothing half-decoded is left */
	assert_int_equal(out.cmd, 0);
	assert_int_equal(out.has, 0);
}

static void expect_bad(struct rq *r, const char *want)
{
	expect_bytes(r->sb.data, r->sb.size, want);
	msgpack_sbuffer_destroy(&r->sb);
}

/* ---- good requests ---- */

/* status, peers, vms, migrations: "cmd" alone. */
static void test_simple_commands(void **state)
{
	static const struct {
		const char *name;
		enum proto_ctl_cmd cmd;
	} simple[] = {
		{ "status", PROTO_CTL_STATUS },
		{ "peers", PROTO_CTL_PEERS },
		{ "vms", PROTO_CTL_VMS },
		{ "migrations", PROTO_CTL_MIGRATIONS },
	};
	struct proto_ctl_req out;
	struct rq r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(simple); i++) {
		begin(&r, 1, simple[i].name);
		decode_ok(&r, &out);
		assert_int_equal(out.cmd, simple[i].cmd);
		assert_int_equal(out.has, 0);
		assert_string_equal(proto_ctl_cmd_name(out.cmd),
				    simple[i].name);
	}
	assert_string_equal(proto_ctl_cmd_name(0), "?");
	assert_string_equal(proto_ctl_cmd_name(PROTO_CTL_CMD_LAST + 1), "?");
}

/*
 * `ferry migrate` as the CLI packed it by hand before it used
 * proto_ctl_encode(): 16 fields, "" and 0 for ferryd's configuration.
 */
static void pack_cli_migrate(struct rq *r, const char *ac)
{
	begin(r, 16, "migrate");
	kv_u64(r, "postcopy_after", 0);
	kv_str(r, "vm", "guest1");
	kv_str(r, "to", "node-b.example");
	kv_str(r, "mode", "precopy");
	kv_u64(r, "downtime_limit_ms", 300);
	kv_u64(r, "max_bandwidth", 100 << 20);
	kv_bool(r, "verify", true);
	kv_str(r, "auto_converge", ac);
	kv_u64(r, "max_rounds", 30);
	kv_u64(r, "timeout_s", 600);
	kv_u64(r, "stall_rounds", 3);
	kv_str(r, "compress", "delta");
	kv_u64(r, "cpu_throttle_initial", 20);
	kv_u64(r, "cpu_throttle_increment", 0);
	kv_u64(r, "max_cpu_throttle", 99);
}

static void test_migrate(void **state)
{
	static const char *const acs[] = { "", "downtime", "throttle", "off",
					   "none" };
	struct proto_ctl_req out;
	struct rq r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(acs); i++) {
		pack_cli_migrate(&r, acs[i]);
		decode_ok(&r, &out);
		assert_int_equal(out.cmd, PROTO_CTL_MIGRATE);
		assert_string_equal(out.auto_converge, acs[i]);
	}
	assert_string_equal(out.vm, "guest1");
	assert_string_equal(out.to, "node-b.example");
	assert_string_equal(out.mode, "precopy");
	assert_string_equal(out.compress, "delta");
	assert_true(out.verify);
	assert_int_equal(out.downtime_limit_ms, 300);
	assert_int_equal(out.max_bandwidth, 100 << 20);
	assert_int_equal(out.max_rounds, 30);
	assert_int_equal(out.timeout_s, 600);
	assert_int_equal(out.stall_rounds, 3);
	assert_int_equal(out.cpu_throttle_initial, 20);
	assert_int_equal(out.cpu_throttle_increment, 0);
	assert_int_equal(out.max_cpu_throttle, 99);
	/* what came is in has; max_downtime_ms, id, source, fenced did not */
	assert_true(PROTO_CTL_HAS(&out, PROTO_CTL_TIMEOUT_S));
	assert_true(PROTO_CTL_HAS(&out, PROTO_CTL_CPU_THROTTLE_INCREMENT));
	assert_false(PROTO_CTL_HAS(&out, PROTO_CTL_MAX_DOWNTIME_MS));
	assert_int_equal(__builtin_popcount(out.has), 15);

	/* the least: vm and to; the rest is left to ferryd's defaults */
	begin(&r, 3, "migrate");
	kv_str(&r, "vm", "v");
	kv_str(&r, "to", "b");
	decode_ok(&r, &out);
	assert_int_equal(out.has, (1u << PROTO_CTL_VM) | (1u << PROTO_CTL_TO));
	assert_string_equal(out.mode, "");
	assert_int_equal(out.timeout_s, 0);

	/* the edges of the ranges, keys in another order */
	begin(&r, 9, NULL);
	kv_u64(&r, "timeout_s", 0);
	kv_str(&r, "mode", "hybrid");
	kv_u64(&r, "max_downtime_ms", 3600000);
	kv_str(&r, "to", "B");
	kv_u64(&r, "max_bandwidth", 1ULL << 50);
	kv_str(&r, "cmd", "migrate");
	kv_str(&r, "vm",
	       "a123456789b123456789c123456789d123456789e123456789f"
	       "123456789g12");
	kv_u64(&r, "max_rounds", 10000);
	kv_u64(&r, "postcopy_after", 10000);
	decode_ok(&r, &out);
	assert_int_equal(strlen(out.vm), 63);
	assert_int_equal(out.max_bandwidth, 1ULL << 50);
	assert_true(PROTO_CTL_HAS(&out, PROTO_CTL_TIMEOUT_S));
}

/* migration, cancel, migrate-postcopy, force-resume: ID or SOURCE/ID. */
static void test_one_migration(void **state)
{
	static const struct {
		const char *name;
		enum proto_ctl_cmd cmd;
	} one[] = {
		{ "migration", PROTO_CTL_MIGRATION },
		{ "cancel", PROTO_CTL_CANCEL },
		{ "migrate-postcopy", PROTO_CTL_MIGRATE_POSTCOPY },
		{ "force-resume", PROTO_CTL_FORCE_RESUME },
	};
	struct proto_ctl_req out;
	struct rq r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(one); i++) {
		begin(&r, 2, one[i].name);
		kv_u64(&r, "id", 7);
		decode_ok(&r, &out);
		assert_int_equal(out.cmd, one[i].cmd);
		assert_int_equal(out.id, 7);
		assert_string_equal(out.source, "");
		assert_false(out.fenced);

		begin(&r, 3, one[i].name);
		kv_u64(&r, "id", UINT64_MAX);
		kv_str(&r, "source", "a");
		decode_ok(&r, &out);
		assert_int_equal(out.id, UINT64_MAX);
		assert_string_equal(out.source, "a");
	}
	/* as the CLI sends it: ferryd itself checks fenced is true */
	begin(&r, 4, "force-resume");
	kv_u64(&r, "id", 3);
	kv_bool(&r, "fenced", true);
	kv_str(&r, "source", "node_2");
	decode_ok(&r, &out);
	assert_true(out.fenced);
	assert_true(PROTO_CTL_HAS(&out, PROTO_CTL_FENCED));
	begin(&r, 3, "force-resume");
	kv_u64(&r, "id", 3);
	kv_bool(&r, "fenced", false);
	decode_ok(&r, &out);
	assert_false(out.fenced);
	assert_true(PROTO_CTL_HAS(&out, PROTO_CTL_FENCED));
}

/* Integers in any msgpack format, as long as they are not negative. */
static void test_int_formats(void **state)
{
	struct proto_ctl_req out;
	struct rq r;

	(void)state;
	begin(&r, 2, "migration");
	key(&r, "id");
	msgpack_pack_int8(&r.pk, 5);
	decode_ok(&r, &out);
	assert_int_equal(out.id, 5);
	begin(&r, 2, "migration");
	key(&r, "id");
	msgpack_pack_fix_uint64(&r.pk, 6);
	decode_ok(&r, &out);
	assert_int_equal(out.id, 6);
}

/* Encode in, decode it: the same struct, padding and all. */
static void round_trip(const struct proto_ctl_req *in)
{
	struct proto_ctl_req out;
	char err[256];
	size_t len;
	void *buf;

	if (proto_ctl_encode(in, &buf, &len, err, sizeof(err)))
		fail_msg("encode refused: %s", err);
	if (proto_ctl_decode(buf, len, &out, err, sizeof(err)))
		fail_msg("decode refused our encoding: %s", err);
	free(buf);
	assert_memory_equal(in, &out, sizeof(*in));
}

/* proto_ctl_encode() refuses in, saying want. */
static void encode_bad(const struct proto_ctl_req *in, const char *want)
{
	char err[256];
	size_t len;
	void *buf = NULL;

	memset(err, 'X', sizeof(err));
	assert_int_equal(proto_ctl_encode(in, &buf, &len, err, sizeof(err)),
			 -EINVAL);
	assert_null(buf);
	if (!strstr(err, want))
		fail_msg("encode: \"%s\" (want \"%s\")", err, want);
}

static void test_encode(void **state)
{
	struct proto_ctl_req in, bad;

	(void)state;
	memset(&in, 0, sizeof(in)); /* padding too: compared below */
	in.cmd = PROTO_CTL_MIGRATE;
	strcpy(in.vm, "vm-1");
	strcpy(in.to, "b");
	strcpy(in.auto_converge, "");
	in.verify = true;
	in.timeout_s = 0;
	in.has = 1u << PROTO_CTL_VM | 1u << PROTO_CTL_TO |
		 1u << PROTO_CTL_AUTO_CONVERGE | 1u << PROTO_CTL_VERIFY |
		 1u << PROTO_CTL_TIMEOUT_S;
	round_trip(&in);

	/* the decoder's rules, in its words */
	bad = in;
	strcpy(bad.vm, "../x");
	encode_bad(&bad, "migrate.vm: byte 0x2f at offset 2 not allowed");
	bad = in;
	bad.has |= 1u << PROTO_CTL_ID;
	encode_bad(&bad, "migrate: field \"id\" is not one of migrate's");
	bad = in;
	bad.has |= 1u << PROTO_CTL_NFIELDS;
	encode_bad(&bad, "migrate: fields 0x");
	bad = in;
	bad.cmd = 0;
	encode_bad(&bad, "request: unknown command 0");
	bad = in;
	memset(bad.mode, 'x', sizeof(bad.mode)); /* unterminated */
	bad.has |= 1u << PROTO_CTL_MODE;
	encode_bad(&bad, "migrate.mode: longer than 15 bytes");
	bad = in;
	bad.has &= ~(1u << PROTO_CTL_TO);
	encode_bad(&bad, "migrate: missing field \"to\"");
	bad = in;
	bad.downtime_limit_ms = 0;
	bad.has |= 1u << PROTO_CTL_DOWNTIME_LIMIT_MS;
	encode_bad(&bad, "migrate.downtime_limit_ms: 0 not in 1..3600000");
	bad = in;
	strcpy(bad.mode, "hybrid");
	bad.has |= 1u << PROTO_CTL_MODE;
	encode_bad(&bad, "migrate: verify and compress \"delta\" are for mode "
			 "\"precopy\", not \"hybrid\"");
	/* err may be NULL */
	assert_int_equal(proto_ctl_encode(&bad, NULL, NULL, NULL, 0), -EINVAL);
}

/* Every field of every command, set with the setters: both ways. */
static void test_round_trip(void **state)
{
	static const uint32_t u32s[] = {
		PROTO_CTL_POSTCOPY_AFTER,
		PROTO_CTL_DOWNTIME_LIMIT_MS,
		PROTO_CTL_MAX_DOWNTIME_MS,
		PROTO_CTL_MAX_ROUNDS,
		PROTO_CTL_STALL_ROUNDS,
		PROTO_CTL_TIMEOUT_S,
		PROTO_CTL_CPU_THROTTLE_INITIAL,
		PROTO_CTL_CPU_THROTTLE_INCREMENT,
		PROTO_CTL_MAX_CPU_THROTTLE,
	};
	struct proto_ctl_req r;
	char err[256];

	(void)state;
	memset(&r, 0, sizeof(r));
	r.cmd = PROTO_CTL_MIGRATE;
	assert_int_equal(proto_ctl_set_str(&r, PROTO_CTL_VM, "guest1", err,
					   sizeof(err)),
			 0);
	assert_int_equal(proto_ctl_set_str(&r, PROTO_CTL_TO, "node-b", err,
					   sizeof(err)),
			 0);
	assert_int_equal(proto_ctl_set_str(&r, PROTO_CTL_MODE, "precopy", err,
					   sizeof(err)),
			 0);
	assert_int_equal(proto_ctl_set_str(&r, PROTO_CTL_COMPRESS, "delta", err,
					   sizeof(err)),
			 0);
	assert_int_equal(proto_ctl_set_str(&r, PROTO_CTL_AUTO_CONVERGE,
					   "throttle", err, sizeof(err)),
			 0);
	assert_int_equal(proto_ctl_set_uint(&r, PROTO_CTL_VERIFY, 1, err,
					    sizeof(err)),
			 0);
	assert_int_equal(proto_ctl_set_uint(&r, PROTO_CTL_MAX_BANDWIDTH,
					    1ULL << 40, err, sizeof(err)),
			 0);
	for (size_t i = 0; i < ARRAY_SIZE(u32s); i++)
		assert_int_equal(proto_ctl_set_uint(&r, u32s[i], 7 + i, err,
						    sizeof(err)),
				 0);
	/* every field of migrate */
	assert_int_equal(r.has, (1u << PROTO_CTL_ID) - 1);
	assert_true(r.verify);
	assert_int_equal(r.max_rounds, 10);
	round_trip(&r);

	memset(&r, 0, sizeof(r));
	r.cmd = PROTO_CTL_FORCE_RESUME;
	assert_int_equal(proto_ctl_set_uint(&r, PROTO_CTL_ID, UINT64_MAX, err,
					    sizeof(err)),
			 0);
	assert_int_equal(proto_ctl_set_str(&r, PROTO_CTL_SOURCE, "a", err,
					   sizeof(err)),
			 0);
	assert_int_equal(proto_ctl_set_uint(&r, PROTO_CTL_FENCED, 1, err,
					    sizeof(err)),
			 0);
	round_trip(&r);
	for (int c = PROTO_CTL_STATUS; c <= PROTO_CTL_MIGRATIONS; c++) {
		memset(&r, 0, sizeof(r));
		r.cmd = c;
		if (c == PROTO_CTL_MIGRATE)
			continue;
		round_trip(&r);
	}
}

/* The setters refuse in the decoder's words and leave r as it was. */
static void test_set_refused(void **state)
{
	static const struct {
		enum proto_ctl_field f;
		const char *s; /* NULL: v */
		uint64_t v;
		const char *why;
	} bad[] = {
		{ PROTO_CTL_DOWNTIME_LIMIT_MS, NULL, 0,
		  "migrate.downtime_limit_ms: 0 not in 1..3600000" },
		{ PROTO_CTL_TIMEOUT_S, NULL, 1ULL << 32,
		  "migrate.timeout_s: 4294967296 does not fit in 32 bits" },
		{ PROTO_CTL_TIMEOUT_S, NULL, 365 * 86400 + 1,
		  "migrate.timeout_s: 31536001 not in 0..31536000" },
		/* 0 and "" would mean the configuration's: refused */
		{ PROTO_CTL_CPU_THROTTLE_INITIAL, NULL, 0,
		  "migrate.cpu_throttle_initial: 0 not in 1..99" },
		{ PROTO_CTL_MAX_CPU_THROTTLE, NULL, 100,
		  "migrate.max_cpu_throttle: 100 not in 1..99" },
		{ PROTO_CTL_AUTO_CONVERGE, "", 0,
		  "migrate.auto_converge: 0 bytes, at least 1 needed" },
		{ PROTO_CTL_AUTO_CONVERGE, "always", 0,
		  "migrate.auto_converge: \"always\" is not one of downtime, "
		  "throttle, off, none" },
		{ PROTO_CTL_MODE, "fast", 0,
		  "migrate.mode: \"fast\" is not one of precopy, postcopy, "
		  "hybrid" },
		{ PROTO_CTL_TO, "a/b", 0,
		  "migrate.to: byte 0x2f at offset 1 not allowed" },
		{ PROTO_CTL_VM,
		  "a123456789b123456789c123456789d123456789e123456789f"
		  "123456789g123",
		  0, "migrate.vm: string of 64 bytes, at most 63" },
		{ PROTO_CTL_VERIFY, NULL, 2,
		  "migrate.verify: 2 is not a value of this field" },
		{ PROTO_CTL_VERIFY, "yes", 0,
		  "migrate.verify: \"yes\" is not a value of this field" },
		{ PROTO_CTL_ID, NULL, 1,
		  "migrate: field \"id\" is not one of "
		  "migrate's" },
	};
	struct proto_ctl_req r, before;
	char err[256];
	int rc;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.cmd = PROTO_CTL_MIGRATE;
	before = r;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (bad[i].s)
			rc = proto_ctl_set_str(&r, bad[i].f, bad[i].s, err,
					       sizeof(err));
		else
			rc = proto_ctl_set_uint(&r, bad[i].f, bad[i].v, err,
						sizeof(err));
		assert_int_equal(rc, -EINVAL);
		assert_string_equal(err, bad[i].why);
		assert_memory_equal(&r, &before, sizeof(r));
	}
	r.cmd = 0;
	assert_int_equal(proto_ctl_set_uint(&r, PROTO_CTL_ID, 1, err,
					    sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "request: no field 16 of command 0");
}

/* What a request that leaves everything out means; the CLI's texts. */
static void test_defaults(void **state)
{
	struct proto_ctl_req r = { .cmd = PROTO_CTL_MIGRATE };
	char buf[32];

	(void)state;
	proto_ctl_defaults(&r);
	assert_int_equal(r.has, 0);
	assert_string_equal(r.mode, "precopy");
	assert_int_equal(r.postcopy_after, 0);
	assert_int_equal(r.downtime_limit_ms, 300);
	assert_int_equal(r.max_downtime_ms, 10000);
	assert_int_equal(r.max_bandwidth, 0);
	assert_string_equal(r.compress, "none");
	assert_false(r.verify);
	assert_int_equal(r.max_rounds, 30);
	assert_int_equal(r.stall_rounds, 3);
	assert_int_equal(r.timeout_s, 600);
	/* the node's configuration: left to ferryd */
	assert_string_equal(r.auto_converge, "");
	assert_int_equal(r.cpu_throttle_initial, 0);
	assert_int_equal(r.cpu_throttle_increment, 0);
	assert_int_equal(r.max_cpu_throttle, 0);
	/* required: not made up */
	assert_string_equal(r.vm, "");

	/* what came stays; max_downtime_ms follows a higher limit */
	memset(&r, 0, sizeof(r));
	r.cmd = PROTO_CTL_MIGRATE;
	r.downtime_limit_ms = 20000;
	r.timeout_s = 0;
	strcpy(r.mode, "hybrid");
	r.has = 1u << PROTO_CTL_DOWNTIME_LIMIT_MS | 1u << PROTO_CTL_TIMEOUT_S |
		1u << PROTO_CTL_MODE;
	proto_ctl_defaults(&r);
	assert_int_equal(r.downtime_limit_ms, 20000);
	assert_int_equal(r.max_downtime_ms, 20000);
	assert_int_equal(r.timeout_s, 0);
	assert_string_equal(r.mode, "hybrid");
	assert_int_equal(r.max_rounds, 30);

	/* the same values, as text */
	assert_string_equal(proto_ctl_default(PROTO_CTL_MODE, buf, sizeof(buf)),
			    "precopy");
	assert_string_equal(proto_ctl_default(PROTO_CTL_DOWNTIME_LIMIT_MS, buf,
					      sizeof(buf)),
			    "300");
	assert_string_equal(
		proto_ctl_default(PROTO_CTL_TIMEOUT_S, buf, sizeof(buf)), "60"
									  "0");
	assert_string_equal(
		proto_ctl_default(PROTO_CTL_VERIFY, buf, sizeof(buf)), "false");
	assert_null(
		proto_ctl_default(PROTO_CTL_AUTO_CONVERGE, buf, sizeof(buf)));
	assert_null(proto_ctl_default(PROTO_CTL_MAX_CPU_THROTTLE, buf,
				      sizeof(buf)));
	assert_null(proto_ctl_default(PROTO_CTL_TO, buf, sizeof(buf)));
	assert_null(proto_ctl_default(PROTO_CTL_NFIELDS, buf, sizeof(buf)));
}

/* Across fields: verify and delta are pre-copy's, mode left out included. */
static void test_across(void **state)
{
	static const char *const modes[] = { "postcopy", "hybrid" };
	struct proto_ctl_req out;
	char want[128];
	struct rq r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
		snprintf(want, sizeof(want),
			 "migrate: verify and compress \"delta\" are for mode "
			 "\"precopy\", not \"%s\"",
			 modes[i]);
		begin(&r, 5, "migrate");
		kv_str(&r, "vm", "a");
		kv_str(&r, "to", "b");
		kv_str(&r, "mode", modes[i]);
		kv_bool(&r, "verify", true);
		expect_bad(&r, want);
		begin(&r, 5, "migrate");
		kv_str(&r, "vm", "a");
		kv_str(&r, "to", "b");
		kv_str(&r, "compress", "delta");
		kv_str(&r, "mode", modes[i]);
		expect_bad(&r, want);
		/* verify false and compress none are fine with any mode */
		begin(&r, 6, "migrate");
		kv_str(&r, "vm", "a");
		kv_str(&r, "to", "b");
		kv_str(&r, "mode", modes[i]);
		kv_bool(&r, "verify", false);
		kv_str(&r, "compress", "none");
		decode_ok(&r, &out);
	}
	/* mode left out is precopy */
	begin(&r, 5, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_bool(&r, "verify", true);
	kv_str(&r, "compress", "delta");
	decode_ok(&r, &out);
}

/*
 * 0 and "" in a field whose default is ferryd's configuration: how the
 * `ferry` before proto_ctl_encode() said "left out". Still taken, and
 * they round-trip; ferryd reads them as left out.
 */
static void test_conf_unset(void **state)
{
	struct proto_ctl_req out;
	struct rq r;

	(void)state;
	pack_cli_migrate(&r, "");
	decode_ok(&r, &out);
	assert_true(PROTO_CTL_HAS(&out, PROTO_CTL_AUTO_CONVERGE));
	assert_string_equal(out.auto_converge, "");
	assert_int_equal(out.cpu_throttle_increment, 0);
	round_trip(&out);
}

/* ---- refusals ---- */

static void test_reject_not_a_map(void **state)
{
	static const uint8_t arr[] = {
		0x91, 0xa6, 's', 't', 'a', 't', 'u', 's'
	};
	static const uint8_t num[] = { 0x07 }, nil[] = { 0xc0 };
	static const uint8_t str[] = { 0xa6, 's', 't', 'a', 't', 'u', 's' };
	static const uint8_t bad[] = { 0xc1 };

	(void)state;
	expect_bytes(arr, sizeof(arr), "request: expected a map, got an array");
	expect_bytes(num, sizeof(num),
		     "request: expected a map, got an integer");
	expect_bytes(nil, sizeof(nil), "request: expected a map, got nil");
	expect_bytes(str, sizeof(str), "request: expected a map, got a string");
	expect_bytes(bad, sizeof(bad), "request: expected a map");
	expect_bytes("", 0, "request: truncated: expected a map");
	expect_bytes(NULL, 0, "request: truncated");
}

static void test_reject_cmd(void **state)
{
	static const uint8_t intkey[] = { 0x81, 0x01, 0x02 };
	struct rq r;

	(void)state;
	begin(&r, 0, NULL);
	expect_bad(&r, "request: missing field \"cmd\"");
	begin(&r, 1, NULL);
	kv_str(&r, "vm", "a");
	expect_bad(&r, "request: missing field \"cmd\"");
	begin(&r, 1, "reboot");
	expect_bad(&r, "request.cmd: unknown command \"reboot\"");
	begin(&r, 1, "Status");
	expect_bad(&r, "request.cmd: unknown command \"Status\"");
	begin(&r, 1, "status\n");
	expect_bad(&r, "request.cmd: unknown command \"status?\"");
	begin(&r, 1, NULL);
	kv_u64(&r, "cmd", 1);
	expect_bad(&r, "request.cmd: expected a string, got an integer");
	begin(&r, 2, "status");
	kv_str(&r, "cmd", "vms");
	expect_bad(&r, "status: field \"cmd\" twice");
	expect_bytes(intkey, sizeof(intkey),
		     "request: expected a string, got an integer");
}

static void test_reject_keys(void **state)
{
	struct rq r;

	(void)state;
	begin(&r, 2, "status");
	kv_str(&r, "verbose", "yes");
	expect_bad(&r, "status: unknown field \"verbose\"");
	/* a field of another command */
	begin(&r, 2, "status");
	kv_str(&r, "vm", "a");
	expect_bad(&r, "status: field \"vm\" is not one of status's");
	begin(&r, 3, "migration");
	kv_u64(&r, "id", 1);
	kv_bool(&r, "fenced", true);
	expect_bad(&r, "migration: field \"fenced\" is not one of migration's");
	begin(&r, 3, "migrate");
	kv_str(&r, "vm", "a");
	kv_u64(&r, "id", 1);
	expect_bad(&r, "migrate: field \"id\" is not one of migrate's");
	/* twice */
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_str(&r, "vm", "c");
	expect_bad(&r, "migrate: field \"vm\" twice");
	/* an unprintable key is quoted safely */
	begin(&r, 2, "vms");
	kv_str(&r, "a\nb", "x");
	expect_bad(&r, "vms: unknown field \"a?b\"");
}

static void test_reject_missing(void **state)
{
	struct rq r;

	(void)state;
	begin(&r, 2, "migrate");
	kv_str(&r, "vm", "a");
	expect_bad(&r, "migrate: missing field \"to\"");
	begin(&r, 2, "migrate");
	kv_str(&r, "to", "a");
	expect_bad(&r, "migrate: missing field \"vm\"");
	begin(&r, 1, "cancel");
	expect_bad(&r, "cancel: missing field \"id\"");
	begin(&r, 2, "force-resume");
	kv_bool(&r, "fenced", true);
	expect_bad(&r, "force-resume: missing field \"id\"");
}

static void test_reject_types(void **state)
{
	struct rq r;

	(void)state;
	begin(&r, 3, "migrate");
	kv_u64(&r, "vm", 1);
	kv_str(&r, "to", "b");
	expect_bad(&r, "migrate.vm: expected a string, got an integer");
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_u64(&r, "verify", 1);
	expect_bad(&r, "migrate.verify: expected a boolean, got an integer");
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_str(&r, "timeout_s", "600");
	expect_bad(&r, "migrate.timeout_s: expected an unsigned integer, got "
		       "a string");
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	key(&r, "downtime_limit_ms");
	msgpack_pack_double(&r.pk, 300.0);
	expect_bad(&r, "migrate.downtime_limit_ms: expected an unsigned "
		       "integer, got a float");
	begin(&r, 2, "migration");
	kv_str(&r, "id", "7");
	expect_bad(&r, "migration.id: expected an unsigned integer, got a "
		       "string");
	begin(&r, 3, "force-resume");
	kv_u64(&r, "id", 7);
	kv_str(&r, "fenced", "true");
	expect_bad(&r, "force-resume.fenced: expected a boolean, got a string");
	begin(&r, 3, "force-resume");
	kv_u64(&r, "id", 7);
	key(&r, "fenced");
	msgpack_pack_nil(&r.pk);
	expect_bad(&r, "force-resume.fenced: expected a boolean, got nil");
	begin(&r, 3, "cancel");
	kv_u64(&r, "id", 7);
	key(&r, "source");
	msgpack_pack_bin_with_body(&r.pk, "a", 1);
	expect_bad(&r, "cancel.source: expected a string, got binary");
}

/* Names: the rule of names in the configuration. */
static void test_reject_names(void **state)
{
	static const struct {
		const char *name, *why;
	} bad[] = {
		{ "../x", "byte 0x2f at offset 2 not allowed" },
		{ "a/b", "byte 0x2f at offset 1 not allowed" },
		{ "", "0 bytes, at least 1 needed" },
		{ "a123456789b123456789c123456789d123456789e123456789f"
		  "123456789g123",
		  "string of 64 bytes, at most 63" },
		{ ".hidden", "does not begin with a letter or digit" },
		{ "..", "does not begin with a letter or digit" },
		{ "-x", "does not begin with a letter or digit" },
		{ "a b", "byte 0x20 at offset 1 not allowed" },
		{ "vm\x01", "byte 0x01 at offset 2 not allowed" },
		{ "caf\xc3\xa9", "byte 0xc3 at offset 3 not allowed" },
	};
	char want[128];
	struct rq r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		begin(&r, 3, "migrate");
		kv_str(&r, "vm", bad[i].name);
		kv_str(&r, "to", "b");
		snprintf(want, sizeof(want), "migrate.vm: %s", bad[i].why);
		expect_bad(&r, want);

		begin(&r, 3, "migrate");
		kv_str(&r, "vm", "a");
		kv_str(&r, "to", bad[i].name);
		snprintf(want, sizeof(want), "migrate.to: %s", bad[i].why);
		expect_bad(&r, want);

		begin(&r, 3, "cancel");
		kv_u64(&r, "id", 1);
		kv_str(&r, "source", bad[i].name);
		snprintf(want, sizeof(want), "cancel.source: %s", bad[i].why);
		expect_bad(&r, want);
	}
	/* a NUL inside */
	begin(&r, 3, "migrate");
	key(&r, "vm");
	msgpack_pack_str_with_body(&r.pk, "a\0b", 3);
	kv_str(&r, "to", "b");
	expect_bad(&r, "migrate.vm: string holds a NUL byte");
}

static void test_reject_words(void **state)
{
	struct rq r;

	(void)state;
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_str(&r, "mode", "fast");
	expect_bad(&r, "migrate.mode: \"fast\" is not one of precopy, "
		       "postcopy, hybrid");
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_str(&r, "mode", "");
	expect_bad(&r, "migrate.mode: 0 bytes, at least 1 needed");
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_str(&r, "compress", "zstd");
	expect_bad(&r, "migrate.compress: \"zstd\" is not one of none, delta");
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_str(&r, "auto_converge", "always");
	expect_bad(&r, "migrate.auto_converge: \"always\" is not one of "
		       "downtime, throttle, off, none");
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	kv_str(&r, "mode", "precopyprecopyprecopy");
	expect_bad(&r, "migrate.mode: string of 21 bytes, at most 15");
}

/* Out of range: negative, zero where it means nothing, overflowing. */
static void test_reject_ints(void **state)
{
	static const struct {
		const char *key;
		uint64_t v;
		const char *why;
	} bad[] = {
		{ "downtime_limit_ms", 0, "0 not in 1..3600000" },
		{ "downtime_limit_ms", 1ULL << 32, "4294967296 does not fit" },
		{ "max_downtime_ms", 3600001, "3600001 not in 1..3600000" },
		{ "max_rounds", 0, "0 not in 1..10000" },
		{ "max_rounds", 10001, "10001 not in 1..10000" },
		{ "stall_rounds", 0, "0 not in 1..10000" },
		{ "timeout_s", UINT64_MAX,
		  "18446744073709551615 does not fit" },
		{ "cpu_throttle_initial", 100, "100 not in 1..99" },
		{ "cpu_throttle_increment", 1000, "1000 not in 1..99" },
		{ "max_cpu_throttle", UINT32_MAX, "4294967295 not in 1..99" },
		{ "max_bandwidth", (1ULL << 50) + 1,
		  "1125899906842625 not in 0..1125899906842624" },
		{ "postcopy_after", 10001, "10001 not in 0..10000" },
	};
	char want[128];
	struct rq r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		begin(&r, 4, "migrate");
		kv_str(&r, "vm", "a");
		kv_str(&r, "to", "b");
		kv_u64(&r, bad[i].key, bad[i].v);
		snprintf(want, sizeof(want), "migrate.%s: %s", bad[i].key,
			 bad[i].why);
		expect_bad(&r, want);
	}
	begin(&r, 2, "migration");
	kv_u64(&r, "id", 0);
	expect_bad(&r, "migration.id: 0 not in 1..18446744073709551615");
	begin(&r, 2, "migration");
	key(&r, "id");
	msgpack_pack_int64(&r.pk, -1);
	expect_bad(&r, "migration.id: negative integer -1");
	begin(&r, 2, "cancel");
	key(&r, "id");
	msgpack_pack_int64(&r.pk, INT64_MIN);
	expect_bad(&r, "cancel.id: negative integer -9223372036854775808");
	begin(&r, 4, "migrate");
	kv_str(&r, "vm", "a");
	kv_str(&r, "to", "b");
	key(&r, "max_rounds");
	msgpack_pack_int32(&r.pk, -30);
	expect_bad(&r, "migrate.max_rounds: negative integer -30");
}

static void test_reject_trailing(void **state)
{
	struct rq r;

	(void)state;
	begin(&r, 1, "status");
	msgpack_pack_nil(&r.pk);
	expect_bad(&r, "status: 1 bytes after the request");
	begin(&r, 2, "migration");
	kv_u64(&r, "id", 1);
	msgpack_pack_map(&r.pk, 1);
	kv_str(&r, "cmd", "status");
	expect_bad(&r, "migration: 12 bytes after the request");
}

static void test_reject_truncated(void **state)
{
	struct proto_ctl_req out;
	struct rq r;

	(void)state;
	pack_cli_migrate(&r, "");
	for (size_t n = 0; n < r.sb.size; n++) {
		char err[256] = "";

		assert_int_equal(proto_ctl_decode(r.sb.data, n, &out, err,
						  sizeof(err)),
				 -EBADMSG);
		assert_non_null(strstr(err, "truncated"));
	}
	msgpack_sbuffer_destroy(&r.sb);
}

/* Too large, or declaring more than could be there: refused at once. */
static void test_reject_size(void **state)
{
	static const uint8_t huge_map[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t huge_str[] = { 0x81, 0xa3, 'c',  'm',  'd',
					    0xdb, 0xff, 0xff, 0xff, 0xff };
	size_t len = PROTO_CTL_MSG_MAX + 1;
	char *big = malloc(len), want[64];
	struct rq r;

	(void)state;
	assert_non_null(big);
	memset(big, 'x', len);
	/* a valid request padded with a long unknown value */
	begin(&r, 2, "status");
	key(&r, "pad");
	msgpack_pack_str(&r.pk, len);
	msgpack_pack_str_body(&r.pk, big, len);
	snprintf(want, sizeof(want), "request: %zu bytes, at most %u",
		 r.sb.size, PROTO_CTL_MSG_MAX);
	expect_bad(&r, want);
	free(big);
	expect_bytes(huge_map, sizeof(huge_map),
		     "request: truncated: a map of 4294967295 elements");
	expect_bytes(huge_str, sizeof(huge_str), "request.cmd: truncated");
}

/* A NULL err and a zero errlen are both fine. */
static void test_err_optional(void **state)
{
	static const uint8_t bad[] = { 0x90 };
	struct proto_ctl_req out;
	char one[1] = { 'X' };

	(void)state;
	assert_int_equal(proto_ctl_decode(bad, 1, &out, NULL, 0), -EBADMSG);
	assert_int_equal(proto_ctl_decode(bad, 1, &out, one, 1), -EBADMSG);
	assert_int_equal(one[0], '\0');
}

/* The helpers that pack and read the control socket's replies. */
static void test_mp_helpers(void **state)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;
	char buf[8];

	(void)state;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_mp_pack_kv_str(&pk, "name", "a-long-name");
	proto_mp_pack_kv_u64(&pk, "n", 5);
	proto_mp_pack_str(&pk, "d");
	msgpack_pack_double(&pk, 1.5);
	msgpack_unpacked_init(&up);
	assert_int_equal(msgpack_unpack_next(&up, sb.data, sb.size, NULL),
			 MSGPACK_UNPACK_SUCCESS);
	/* truncated to the buffer, always terminated */
	assert_string_equal(proto_mp_str(&up.data, "name", buf, sizeof(buf)),
			    "a-long-");
	assert_string_equal(proto_mp_str(&up.data, "none", buf, sizeof(buf)),
			    "-");
	assert_int_equal(proto_mp_int(&up.data, "n", -1), 5);
	assert_int_equal(proto_mp_int(&up.data, "name", -1), -1);
	assert_true(proto_mp_double(&up.data, "d", 0) == 1.5);
	assert_true(proto_mp_double(&up.data, "n", 0) == 5.0);
	assert_null(proto_mp_get(&up.data, "nam"));
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_commands),
		cmocka_unit_test(test_migrate),
		cmocka_unit_test(test_one_migration),
		cmocka_unit_test(test_int_formats),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_set_refused),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_across),
		cmocka_unit_test(test_conf_unset),
		cmocka_unit_test(test_reject_not_a_map),
		cmocka_unit_test(test_reject_cmd),
		cmocka_unit_test(test_reject_keys),
		cmocka_unit_test(test_reject_missing),
		cmocka_unit_test(test_reject_types),
		cmocka_unit_test(test_reject_names),
		cmocka_unit_test(test_reject_words),
		cmocka_unit_test(test_reject_ints),
		cmocka_unit_test(test_reject_trailing),
		cmocka_unit_test(test_reject_truncated),
		cmocka_unit_test(test_reject_size),
		cmocka_unit_test(test_err_optional),
		cmocka_unit_test(test_mp_helpers),
	};

	return cmocka_run_group_tests_name("protocol-ctl", tests, NULL, NULL);
}
