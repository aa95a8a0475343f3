// SPDX-License-Identifier: MIT
/*
 * cli/: the `ferry` command line. Its JSON printer renders every msgpack
 * type and escapes what JSON needs escaped. Every command of the table
 * answers --help and -h with its help and exit 0, the real binary (FERRY,
 * set by meson) run with the integration tests' run(); a bad command line
 * exits 2 with the command's help on stderr. A value ferryd would refuse
 * is refused by ferry first, in the decoder's words; migrate's help shows
 * the defaults protocol/ holds.
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

#include "cli/cli.h"
#include "common/util.h"
#include "protocol/protocol.h"
#include "tests/integration/itest.h"

static char out[OUT_MAX], err[OUT_MAX];

/* Render a packed buffer as JSON into a string. */
static char *to_json(msgpack_sbuffer *sb)
{
	msgpack_unpacked up;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	msgpack_unpacked_init(&up);
	assert_int_equal(msgpack_unpack_next(&up, sb->data, sb->size, NULL),
			 MSGPACK_UNPACK_SUCCESS);
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(cli_json_write(f, &up.data), 0);
	fclose(f);
	msgpack_unpacked_destroy(&up);
	return buf;
}

static void test_json(void **state)
{
	static const char weird[] = "q\"b\\s/n\nr\rt\tx\x01y\x1f\x7f\xc3\xa9";
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char *json;

	(void)state;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 8);
	proto_mp_pack_kv_str(&pk, "s", weird);
	proto_mp_pack_kv_u64(&pk, "u", UINT64_MAX);
	proto_mp_pack_str(&pk, "i");
	msgpack_pack_int64(&pk, -42);
	proto_mp_pack_str(&pk, "f");
	msgpack_pack_double(&pk, 0.25);
	proto_mp_pack_str(&pk, "a");
	msgpack_pack_array(&pk, 3);
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_false(&pk);
	proto_mp_pack_str(&pk, "b");
	msgpack_pack_bin(&pk, 3);
	msgpack_pack_bin_body(&pk, "\x00\xab\xff", 3);
	msgpack_pack_int(&pk, 7); /* a non-string key */
	msgpack_pack_map(&pk, 0);
	proto_mp_pack_str(&pk, "k\"ey");
	msgpack_pack_array(&pk, 0);
	json = to_json(&sb);
	assert_string_equal(json, "{\"s\":\"q\\\"b\\\\s/"
				  "n\\nr\\rt\\tx\\u0001y\\u001f\x7f\xc3\xa9\","
				  "\"u\":18446744073709551615,\"i\":-42,\"f\":"
				  "0.25,"
				  "\"a\":[null,true,false],\"b\":\"00abff\","
				  "\"7\":{},"
				  "\"k\\\"ey\":[]}");
	free(json);
	msgpack_sbuffer_destroy(&sb);
}

/* What cli_usage(cmd) prints (static buffer). */
static const char *usage_of(const struct cli_cmd *cmd)
{
	static char buf[OUT_MAX];
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	assert_non_null(f);
	cli_usage(f, cmd);
	assert_int_equal(fclose(f), 0);
	return buf;
}

/* Does s end with suffix? */
static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

static void test_help(void **state)
{
	const char *all[] = { ferry_bin, "--help", NULL };

	(void)state;
	assert_int_equal(run(out, err, all), 0);
	assert_string_equal(out, usage_of(NULL));
	for (const struct cli_cmd *c = cli_cmds; c->name; c++) {
		const char *help[] = { ferry_bin, c->name, "--help", NULL };
		const char *h[] = { ferry_bin, c->name, "-h", NULL };

		assert_int_equal(run(out, err, help), 0);
		assert_string_equal(out, usage_of(c));
		assert_string_equal(err, "");
		assert_int_equal(run(out, err, h), 0);
		assert_string_equal(out, usage_of(c));
		print_message("ferry %s --help: exit 0, its help\n", c->name);
	}
}

/*
 * `ferry migrate --help`, after other arguments too, lists exactly the
 * options migrate takes: the words that start with "--".
 */
static void test_migrate_help(void **state)
{
	static const char *const want[] = {
		"--to",
		"--mode",
		"--postcopy-after",
		"--downtime-limit",
		"--max-bandwidth",
		"--compress",
		"--verify",
		"--auto-converge",
		"--max-rounds",
		"--cpu-throttle-initial",
		"--cpu-throttle-increment",
		"--max-cpu-throttle",
		"--stall-rounds",
		"--timeout",
		"--detach",
	};
	const char *argv[] = {
		ferry_bin, "migrate", "vm1", "--to", "b", "--help", NULL,
	};
	char text[OUT_MAX], *save, *w;
	unsigned found = 0;

	(void)state;
	assert_int_equal(run(out, err, argv), 0);
	assert_string_equal(out, usage_of(cli_cmd_find("migrate")));
	/* the command's entry: after the usage line, before the options */
	snprintf(text, sizeof(text), "%s", strchr(out, '\n'));
	*strstr(text, "\noptions:\n") = '\0';
	for (w = strtok_r(text, " \n[]|", &save); w;
	     w = strtok_r(NULL, " \n[]|", &save)) {
		bool known = false;

		if (strncmp(w, "--", 2))
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(want); i++)
			known |= !strcmp(w, want[i]);
		if (!known)
			fail_msg("migrate's help lists %s", w);
		found++;
	}
	assert_int_equal(found, ARRAY_SIZE(want));
}

/* Unknown options and wrong arguments: exit 2, the command's help. */
static void test_usage_errors(void **state)
{
	const char *bad_opt[] = {
		ferry_bin, "migrate", "vm1", "--to", "b", "--frobnicate", NULL,
	};
	const char *no_to[] = { ferry_bin, "migrate", "vm1", NULL };
	const char *extra[] = { ferry_bin, "status", "--frobnicate", NULL };
	const char *none[] = { ferry_bin, "cancel", NULL };
	const char *unknown[] = { ferry_bin, "frobnicate", "--help", NULL };

	(void)state;
	assert_int_equal(run(out, err, bad_opt), 2);
	assert_string_equal(out, "");
	assert_true(ends_with(err, usage_of(cli_cmd_find("migrate"))));
	assert_int_equal(run(out, err, no_to), 2);
	assert_true(ends_with(err, usage_of(cli_cmd_find("migrate"))));
	assert_int_equal(run(out, err, extra), 2);
	assert_true(ends_with(err, usage_of(cli_cmd_find("status"))));
	assert_int_equal(run(out, err, none), 2);
	assert_true(ends_with(err, usage_of(cli_cmd_find("cancel"))));
	assert_int_equal(run(out, err, unknown), 2);
	assert_true(ends_with(err, usage_of(NULL)));
}

/* What proto_ctl_decode() says of migrate vm1 to b and one more field. */
static void decoder_says(char *why, size_t len, const char *k, const char *v,
			 int64_t n)
{
	struct proto_ctl_req r;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4 + (v && n));
	proto_mp_pack_kv_str(&pk, "cmd", "migrate");
	proto_mp_pack_kv_str(&pk, "vm", "vm1");
	proto_mp_pack_kv_str(&pk, "to", "b");
	if (v && n) /* verify too */
		proto_mp_pack_kv_str(&pk, "mode", v);
	proto_mp_pack_str(&pk, k);
	if (v && n)
		msgpack_pack_true(&pk);
	else if (v)
		proto_mp_pack_str(&pk, v);
	else
		msgpack_pack_int64(&pk, n);
	assert_int_equal(proto_ctl_decode(sb.data, sb.size, &r, why, len),
			 -EBADMSG);
	msgpack_sbuffer_destroy(&sb);
}

/*
 * A value ferryd's decoder would refuse is refused by ferry before it
 * sends anything (there is no ferryd here), exit 2, in the same words.
 */
static void test_shared_errors(void **state)
{
	static const struct {
		const char *opt, *arg; /* arg NULL: a flag */
		const char *key, *v; /* what the decoder is given */
		int64_t n;
	} cases[] = {
		{ "--downtime-limit", "0", "downtime_limit_ms", NULL, 0 },
		{ "--max-rounds", "10001", "max_rounds", NULL, 10001 },
		{ "--timeout", "31536001", "timeout_s", NULL, 31536001 },
		{ "--cpu-throttle-initial", "100", "cpu_throttle_initial", NULL,
		  100 },
		{ "--mode", "fast", "mode", "fast", 0 },
		{ "--auto-converge", "always", "auto_converge", "always", 0 },
		{ "--compress", "zstd", "compress", "zstd", 0 },
		/* across fields: mode and verify */
		{ "--verify", NULL, "verify", "hybrid", 1 },
	};
	char why[256], want[300];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *argv[] = { ferry_bin, "-s",	    "/nonexistent",
				       "migrate", "vm1",    "--to",
				       "b",	  "--mode", "hybrid",
				       NULL,	  NULL,	    NULL };
		int n = 9;

		if (!cases[i].arg) { /* after --mode hybrid */
			argv[n++] = cases[i].opt;
		} else {
			argv[7] = cases[i].opt;
			argv[8] = cases[i].arg;
		}
		decoder_says(why, sizeof(why), cases[i].key, cases[i].v,
			     cases[i].n);
		snprintf(want, sizeof(want), "ferry: %s\n", why);
		assert_int_equal(run(out, err, argv), 2);
		assert_string_equal(err, want);
		assert_string_equal(out, "");
	}
}

/* migrate's help prints protocol/'s defaults, the ones ferryd applies. */
static void test_migrate_defaults(void **state)
{
	static const struct {
		const char *opt;
		enum proto_ctl_field f;
	} opts[] = {
		{ "mode", PROTO_CTL_MODE },
		{ "downtime-limit", PROTO_CTL_DOWNTIME_LIMIT_MS },
		{ "compress", PROTO_CTL_COMPRESS },
		{ "max-rounds", PROTO_CTL_MAX_ROUNDS },
		{ "stall-rounds", PROTO_CTL_STALL_ROUNDS },
		{ "timeout", PROTO_CTL_TIMEOUT_S },
	};
	const char *help = usage_of(cli_cmd_find("migrate"));
	char text[OUT_MAX], want[64], v[32];
	const char *p;
	size_t n;

	(void)state;
	/* the defaults paragraph, up to the blank line, as one line */
	p = strstr(help, "defaults: ");
	assert_non_null(p);
	for (n = 0; *p && strncmp(p, "\n\n", 2) && n < sizeof(text) - 1; p++) {
		if (*p == '\n')
			p += strspn(p + 1, " "); /* the indent: one space */
		text[n++] = *p == '\n' ? ' ' : *p;
	}
	text[n] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		snprintf(want, sizeof(want), " %s %s", opts[i].opt,
			 proto_ctl_default(opts[i].f, v, sizeof(v)));
		p = strstr(text, want);
		if (!p || !strchr(",;", p[strlen(want)]))
			fail_msg("\"%s\" not in \"%s\"", want, text);
	}
	assert_non_null(strstr(text, " postcopy-after auto,"));
	assert_non_null(strstr(text, " max-bandwidth none,"));
	assert_non_null(strstr(text, "; from ferryd.conf: auto-converge, "
				     "cpu-throttle-initial, "
				     "cpu-throttle-increment, "
				     "max-cpu-throttle"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_migrate_help),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_shared_errors),
		cmocka_unit_test(test_migrate_defaults),
	};

	ferry_bin = getenv("FERRY");
	if (!ferry_bin) {
		fprintf(stderr, "FERRY (the ferry binary) is not set\n");
		return 1;
	}
	atexit(kill_children);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
