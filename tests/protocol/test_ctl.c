// SPDX-License-Identifier: MIT
/*
 * protocol/proto_ctl.c: the control requests of the `ferry` CLI that are
 * taken, and the API around them. Every command decodes, with the fields
 * that came, and only those, in has. What the CLI uses, the encoder and
 * the setters, round-trips and refuses in the decoder's words; the
 * defaults and the checks across fields are the ones ferryd applies;
 * proto_mp.c's reply helpers read what they packed. The decoder's
 * refusals of malformed and hostile requests are in test_ctl_reject.c.
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

#include "ctl_rq.h"

static void decode_ok(struct rq *r, struct proto_ctl_req *out)
{
	char err[256] = "";

	if (proto_ctl_decode(r->sb.data, r->sb.size, out, err, sizeof(err)))
		fail_msg("decode refused: %s", err);
	msgpack_sbuffer_destroy(&r->sb);
}

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

/*
 * retarget: the id of a migration this node started and the peer it goes
 * to from now on; both required, in any order, and nothing else.
 */
static void test_retarget(void **state)
{
	struct proto_ctl_req out, in;
	struct rq r;
	char err[256];

	(void)state;
	begin(&r, 3, "retarget");
	kv_u64(&r, "id", 3);
	kv_str(&r, "to", "c");
	decode_ok(&r, &out);
	assert_int_equal(out.cmd, PROTO_CTL_RETARGET);
	assert_string_equal(proto_ctl_cmd_name(out.cmd), "retarget");
	assert_int_equal(out.id, 3);
	assert_string_equal(out.to, "c");
	assert_int_equal(out.has, (1u << PROTO_CTL_ID) | (1u << PROTO_CTL_TO));
	assert_string_equal(out.vm, "");
	assert_string_equal(out.source, "");

	/* the edges: the largest id, "cmd" last, a name of 63 bytes */
	begin(&r, 3, NULL);
	kv_str(&r, "to",
	       "a123456789b123456789c123456789d123456789e123456789f"
	       "123456789g12");
	kv_u64(&r, "id", UINT64_MAX);
	kv_str(&r, "cmd", "retarget");
	decode_ok(&r, &out);
	assert_int_equal(out.id, UINT64_MAX);
	assert_int_equal(strlen(out.to), 63);

	/* as the CLI builds it: the setters, then the encoder */
	memset(&in, 0, sizeof(in));
	in.cmd = PROTO_CTL_RETARGET;
	assert_int_equal(
		proto_ctl_set_uint(&in, PROTO_CTL_ID, 9, err, sizeof(err)), 0);
	assert_int_equal(proto_ctl_set_str(&in, PROTO_CTL_TO, "node-c", err,
					   sizeof(err)),
			 0);
	round_trip(&in);
	/* the source's command: no SOURCE/ID */
	assert_int_equal(proto_ctl_set_str(&in, PROTO_CTL_SOURCE, "a", err,
					   sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "retarget: field \"source\" is not one of "
				 "retarget's");
	in.has &= ~(1u << PROTO_CTL_TO);
	encode_bad(&in, "retarget: missing field \"to\"");
}

/*
 * holders and release: a VM's copies as this node knows them. "vm", a
 * name, required, and nothing else; the VM need not run here.
 */
static void test_holders_release(void **state)
{
	static const struct {
		const char *name;
		enum proto_ctl_cmd cmd;
	} kept[] = {
		{ "holders", PROTO_CTL_HOLDERS },
		{ "release", PROTO_CTL_RELEASE },
	};
	struct proto_ctl_req out, in;
	char err[256], want[128];
	struct rq r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(kept); i++) {
		begin(&r, 2, kept[i].name);
		kv_str(&r, "vm", "guest1");
		decode_ok(&r, &out);
		assert_int_equal(out.cmd, kept[i].cmd);
		assert_string_equal(proto_ctl_cmd_name(out.cmd), kept[i].name);
		assert_string_equal(out.vm, "guest1");
		assert_int_equal(out.has, 1u << PROTO_CTL_VM);
		assert_int_equal(out.id, 0);

		/* "cmd" last, a name of 63 bytes */
		begin(&r, 2, NULL);
		kv_str(&r, "vm",
		       "a123456789b123456789c123456789d123456789e123456789f"
		       "123456789g12");
		kv_str(&r, "cmd", kept[i].name);
		decode_ok(&r, &out);
		assert_int_equal(strlen(out.vm), 63);

		/* as the CLI builds it: the setter, then the encoder */
		memset(&in, 0, sizeof(in));
		in.cmd = kept[i].cmd;
		assert_int_equal(proto_ctl_set_str(&in, PROTO_CTL_VM, "vm-1",
						   err, sizeof(err)),
				 0);
		round_trip(&in);
		assert_int_equal(proto_ctl_set_uint(&in, PROTO_CTL_ID, 3, err,
						    sizeof(err)),
				 -EINVAL);
		snprintf(want, sizeof(want),
			 "%s: field \"id\" is not one of %s's", kept[i].name,
			 kept[i].name);
		assert_string_equal(err, want);
		in.has = 0;
		snprintf(want, sizeof(want), "%s: missing field \"vm\"",
			 kept[i].name);
		encode_bad(&in, want);
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
		cmocka_unit_test(test_retarget),
		cmocka_unit_test(test_holders_release),
		cmocka_unit_test(test_set_refused),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_across),
		cmocka_unit_test(test_conf_unset),
		cmocka_unit_test(test_mp_helpers),
	};

	return cmocka_run_group_tests_name("protocol-ctl", tests, NULL, NULL);
}
