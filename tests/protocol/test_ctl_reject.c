// SPDX-License-Identifier: MIT
/*
 * protocol/proto_ctl.c: the control requests ferryd refuses. Every class
 * of malformed or hostile request (not a map, a bad or missing "cmd",
 * unknown, foreign, repeated or missing fields, values of the wrong kind,
 * bad names and words, integers out of range, bytes after the request,
 * truncation, oversize) is refused with -EBADMSG and a reason that names
 * the field, leaving nothing half-decoded. Each request is packed key by
 * key (ctl_rq.c) so that it has exactly one thing wrong. The requests
 * that are taken are in test_ctl.c.
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

/*
 * retarget takes the id and "to", both required, and nothing else: not
 * "source" (it runs on the source), not migrate's fields.
 */
static void test_reject_retarget(void **state)
{
	struct rq r;

	(void)state;
	begin(&r, 2, "retarget");
	kv_str(&r, "to", "c");
	expect_bad(&r, "retarget: missing field \"id\"");
	begin(&r, 2, "retarget");
	kv_u64(&r, "id", 3);
	expect_bad(&r, "retarget: missing field \"to\"");
	begin(&r, 1, "retarget");
	expect_bad(&r, "retarget: missing field \"to\"");
	begin(&r, 4, "retarget");
	kv_u64(&r, "id", 3);
	kv_str(&r, "to", "c");
	kv_str(&r, "source", "a");
	expect_bad(&r, "retarget: field \"source\" is not one of retarget's");
	begin(&r, 4, "retarget");
	kv_u64(&r, "id", 3);
	kv_str(&r, "to", "c");
	kv_str(&r, "vm", "v");
	expect_bad(&r, "retarget: field \"vm\" is not one of retarget's");
	begin(&r, 4, "retarget");
	kv_u64(&r, "id", 3);
	kv_str(&r, "to", "c");
	kv_str(&r, "relay", "b");
	expect_bad(&r, "retarget: unknown field \"relay\"");
	begin(&r, 4, "retarget");
	kv_u64(&r, "id", 3);
	kv_str(&r, "to", "c");
	kv_str(&r, "to", "d");
	expect_bad(&r, "retarget: field \"to\" twice");
	begin(&r, 4, "retarget");
	kv_u64(&r, "id", 3);
	kv_str(&r, "to", "c");
	kv_u64(&r, "id", 4);
	expect_bad(&r, "retarget: field \"id\" twice");
	/* the id's range and kind are cancel's */
	begin(&r, 3, "retarget");
	kv_u64(&r, "id", 0);
	kv_str(&r, "to", "c");
	expect_bad(&r, "retarget.id: 0 not in 1..18446744073709551615");
	begin(&r, 3, "retarget");
	key(&r, "id");
	msgpack_pack_int64(&r.pk, -1);
	kv_str(&r, "to", "c");
	expect_bad(&r, "retarget.id: negative integer -1");
	begin(&r, 3, "retarget");
	kv_str(&r, "id", "3");
	kv_str(&r, "to", "c");
	expect_bad(&r, "retarget.id: expected an unsigned integer, got a "
		       "string");
	begin(&r, 3, "retarget");
	kv_u64(&r, "id", 3);
	kv_u64(&r, "to", 7);
	expect_bad(&r, "retarget.to: expected a string, got an integer");
}

/*
 * holders and release take "vm", a name, required, and nothing else: no
 * migration's id or source, no peer.
 */
static void test_reject_holders_release(void **state)
{
	static const char *const cmds[] = { "holders", "release" };
	char want[128];
	struct rq r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		const char *c = cmds[i];

		begin(&r, 1, c);
		snprintf(want, sizeof(want), "%s: missing field \"vm\"", c);
		expect_bad(&r, want);
		begin(&r, 3, c);
		kv_str(&r, "vm", "v");
		kv_u64(&r, "id", 3);
		snprintf(want, sizeof(want),
			 "%s: field \"id\" is not one of %s's", c, c);
		expect_bad(&r, want);
		begin(&r, 3, c);
		kv_str(&r, "vm", "v");
		kv_str(&r, "to", "b");
		snprintf(want, sizeof(want),
			 "%s: field \"to\" is not one of %s's", c, c);
		expect_bad(&r, want);
		begin(&r, 3, c);
		kv_str(&r, "source", "a");
		kv_str(&r, "vm", "v");
		snprintf(want, sizeof(want),
			 "%s: field \"source\" is not one of %s's", c, c);
		expect_bad(&r, want);
		begin(&r, 3, c);
		kv_str(&r, "vm", "v");
		kv_str(&r, "node", "b");
		snprintf(want, sizeof(want), "%s: unknown field \"node\"", c);
		expect_bad(&r, want);
		begin(&r, 3, c);
		kv_str(&r, "vm", "v");
		kv_str(&r, "vm", "w");
		snprintf(want, sizeof(want), "%s: field \"vm\" twice", c);
		expect_bad(&r, want);
		begin(&r, 2, c);
		kv_u64(&r, "vm", 7);
		snprintf(want, sizeof(want),
			 "%s.vm: expected a string, got an integer", c);
		expect_bad(&r, want);
		begin(&r, 2, c);
		key(&r, "vm");
		msgpack_pack_nil(&r.pk);
		snprintf(want, sizeof(want),
			 "%s.vm: expected a string, got nil", c);
		expect_bad(&r, want);
	}
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

		begin(&r, 3, "retarget");
		kv_u64(&r, "id", 1);
		kv_str(&r, "to", bad[i].name);
		snprintf(want, sizeof(want), "retarget.to: %s", bad[i].why);
		expect_bad(&r, want);

		begin(&r, 2, "holders");
		kv_str(&r, "vm", bad[i].name);
		snprintf(want, sizeof(want), "holders.vm: %s", bad[i].why);
		expect_bad(&r, want);

		begin(&r, 2, "release");
		kv_str(&r, "vm", bad[i].name);
		snprintf(want, sizeof(want), "release.vm: %s", bad[i].why);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reject_not_a_map),
		cmocka_unit_test(test_reject_cmd),
		cmocka_unit_test(test_reject_keys),
		cmocka_unit_test(test_reject_missing),
		cmocka_unit_test(test_reject_types),
		cmocka_unit_test(test_reject_names),
		cmocka_unit_test(test_reject_retarget),
		cmocka_unit_test(test_reject_holders_release),
		cmocka_unit_test(test_reject_words),
		cmocka_unit_test(test_reject_ints),
		cmocka_unit_test(test_reject_trailing),
		cmocka_unit_test(test_reject_truncated),
		cmocka_unit_test(test_reject_size),
		cmocka_unit_test(test_err_optional),
	};

	return cmocka_run_group_tests_name("protocol-ctl-reject", tests, NULL,
					   NULL);
}
