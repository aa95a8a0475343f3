// SPDX-License-Identifier: MIT
/*
 * cli/: the `ferry` command line. Its JSON printer renders every msgpack
 * type and escapes what JSON needs escaped. Every command of the table
 * answers --help and -h with its help and exit 0, the real binary (FERRY,
 * set by meson) run with the integration tests' run(); a bad command line
 * exits 2 with the command's help on stderr. A value ferryd would refuse
 * is refused by ferry first, in the decoder's words; migrate's help shows
 * the defaults protocol/ holds. `ferry retarget`: its command line, and
 * against a real ferryd (FERRYD) the lookups that answer before the
 * engine is asked, and the daemon's strict decoding of the request.
 * `ferry holders` and `ferry release`: their command lines, the rendering
 * of their replies, and against a real ferryd a VM it never had, in words
 * and in JSON.
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

/* `ferry -s /nonexistent retarget ARGS...`: exits 2, stderr is want. */
static void retarget_refused(const char *want, const char *a1, const char *a2,
			     const char *a3, const char *a4)
{
	const char *argv[] = { ferry_bin,  "-s", "/nonexistent",
			       "retarget", a1,	 a2,
			       a3,	   a4,	 NULL };

	assert_int_equal(run(out, err, argv), 2);
	assert_string_equal(out, "");
	if (strncmp(err, want, strlen(want)))
		fail_msg("stderr \"%s\", expected it to begin \"%s\"", err,
			 want);
}

/*
 * retarget's command line: one plain ID (the source's command) and
 * --to PEER, in any order; whatever is wrong exits 2 before ferryd is
 * asked (there is none here), a bad command line with the help.
 */
static void test_retarget_usage(void **state)
{
	static const char *const what = "ferry: retarget takes one migration "
					"ID and --to PEER\n";
	const char *help = usage_of(cli_cmd_find("retarget"));
	char want[OUT_MAX];

	(void)state;
	/* the plain ID only: not the SOURCE/ID lines of the others */
	assert_non_null(strstr(help, "  retarget ID --to PEER\n"));
	assert_null(strstr(help, "a/7 for one peer a started"));
	snprintf(want, sizeof(want), "%s%s", what, help);
	retarget_refused(want, NULL, NULL, NULL, NULL);
	retarget_refused(want, "3", NULL, NULL, NULL);
	retarget_refused(want, "--to", "c", NULL, NULL);
	retarget_refused(want, "3", "4", "--to", "c");
	retarget_refused("retarget: unrecognized option '--frob'\n", "3",
			 "--to", "c", "--frob");
	assert_true(ends_with(err, help));
	retarget_refused("retarget: option '--to' requires an argument\n", "3",
			 "--to", NULL, NULL);
	for (size_t i = 0; i < 4; i++) {
		static const char *const bad[] = { "x", "0", "a/3", "3x" };

		snprintf(want, sizeof(want),
			 "ferry: bad migration id '%s' (the ID of a migration "
			 "this node started, as `ferry migrations` shows "
			 "it)\n",
			 bad[i]);
		retarget_refused(want, bad[i], "--to", "c", NULL);
		assert_string_equal(err, want);
	}
	/* a name the decoder refuses, in its words */
	retarget_refused("ferry: retarget.to: byte 0x2f at offset 1 not "
			 "allowed\n",
			 "3", "--to", "a/b", NULL);
	assert_string_equal(err, "ferry: retarget.to: byte 0x2f at offset 1 "
				 "not allowed\n");
}

/*
 * A retarget accepted: ferryd's reply names the new destination and the
 * relay (migration/mig_ctl.c), the line says what the reply says.
 */
static void test_retarget_print(void **state)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	proto_mp_pack_kv_u64(&pk, "id", 3);
	proto_mp_pack_kv_str(&pk, "to", "c");
	proto_mp_pack_kv_str(&pk, "relay", "b");
	msgpack_unpacked_init(&up);
	assert_int_equal(msgpack_unpack_next(&up, sb.data, sb.size, NULL),
			 MSGPACK_UNPACK_SUCCESS);
	f = open_memstream(&text, &len);
	assert_non_null(f);
	cli_print_retarget(f, &up.data);
	assert_int_equal(fclose(f), 0);
	assert_string_equal(text, "migration 3 now goes to c; b relays what it "
				  "holds\n");
	free(text);
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
}

/* msgpack {"cmd": "retarget", "id": 3, "to": "b", "source": "a"} */
static const uint8_t with_source[] = {
	0x84, 0xa3, 'c', 'm',  'd', 0xa8, 'r',	'e',  't',  'a', 'r',
	'g',  'e',  't', 0xa2, 'i', 'd',  0x03, 0xa2, 't',  'o', 0xa1,
	'b',  0xa6, 's', 'o',  'u', 'r',  'c',	'e',  0xa1, 'a',
};

/*
 * Against a ferryd a with one peer, b (configured, not running): the
 * request reaches it and is decoded; the peer is looked up, then the
 * migration, each answered by name before the engine would be asked.
 */
static void test_retarget_ferryd(void **state)
{
	static const struct {
		const char *to, *why;
	} cases[] = {
		{ "x", "no peer called 'x'" },
		{ "a", "'a' is this node, not a peer" },
		{ "b", "no migration 3 started here" },
	};
	char want[256], why[256];
	struct node na, nb;
	msgpack_unpacked reply;
	void *raw;

	(void)state;
	node_init(&na, "a");
	node_init(&nb, "b");
	node_add_peer(&na, "b", nb.port, nb.key);
	node_start(&na);
	node_ready(&na);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(want, sizeof(want), "ferry: ferryd: %s\n",
			 cases[i].why);
		assert_int_equal(ferry_args(&na, 10, out, err, "retarget", "3",
					    "--to", cases[i].to, NULL),
				 1);
		assert_string_equal(err, want);
		assert_string_equal(out, "");
		/* --json too: an error prints no reply */
		assert_int_equal(ferry_args(&na, 10, out, err, "--json",
					    "retarget", "--to", cases[i].to,
					    "3", NULL),
				 1);
		assert_string_equal(err, want);
		assert_string_equal(out, "");
	}
	/* what the CLI would not send, ferryd's decoder refuses */
	assert_int_equal(cli_call(na.sock, with_source, sizeof(with_source),
				  2000, &reply, &raw, why, sizeof(why)),
			 0);
	assert_string_equal(proto_mp_str(&reply.data, "error", why,
					 sizeof(why)),
			    "retarget: field \"source\" is not one of "
			    "retarget's");
	msgpack_unpacked_destroy(&reply);
	free(raw);
	itest_no_crash(&na);
}

/* `ferry -s /nonexistent ARGS...`: exits 2, stderr begins with want. */
static void refused(const char *want, const char *const argv[])
{
	assert_int_equal(run(out, err, argv), 2);
	assert_string_equal(out, "");
	if (strncmp(err, want, strlen(want)))
		fail_msg("stderr \"%s\", expected it to begin \"%s\"", err,
			 want);
}

/*
 * holders and release take one VM name, and --json after it too;
 * whatever is wrong exits 2 before ferryd is asked (there is none here),
 * a bad command line with the help, a bad name in the decoder's words.
 */
static void test_vm_usage(void **state)
{
	static const char *const cmds[] = { "holders", "release" };
	char want[OUT_MAX];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		const char *c = cmds[i];
		const char *help = usage_of(cli_cmd_find(c));
		const char *none[] = { ferry_bin, "-s", "/nonexistent", c,
				       NULL };
		const char *two[] = { ferry_bin, "-s", "/nonexistent", c, "v",
				      "w",	 NULL };
		const char *opt[] = { ferry_bin, "-s", "/nonexistent", c, "v",
				      "--frob",	 NULL };
		const char *slash[] = { ferry_bin, "-s",  "/nonexistent",
					c,	   "a/b", "--json",
					NULL };
		const char *empty[] = { ferry_bin, "-s", "/nonexistent",
					c,	   "",	 NULL };

		assert_non_null(strstr(help, "Retained copies"));
		snprintf(want, sizeof(want), "ferry: %s takes one VM name\n%s",
			 c, help);
		refused(want, none);
		assert_string_equal(err, want);
		refused(want, two);
		assert_string_equal(err, want);
		snprintf(want, sizeof(want),
			 "%s: unrecognized option '--frob'\n", c);
		refused(want, opt);
		assert_true(ends_with(err, help));
		snprintf(want, sizeof(want),
			 "ferry: %s.vm: byte 0x2f at offset 1 not allowed\n",
			 c);
		refused(want, slash);
		assert_string_equal(err, want);
		snprintf(want, sizeof(want),
			 "ferry: %s.vm: 0 bytes, at least 1 needed\n", c);
		refused(want, empty);
		assert_string_equal(err, want);
	}
}

/* What cli_print_holders() or cli_print_release() makes of sb's reply. */
static char *render(msgpack_sbuffer *sb, bool holders)
{
	msgpack_unpacked up;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	msgpack_unpacked_init(&up);
	assert_int_equal(msgpack_unpack_next(&up, sb->data, sb->size, NULL),
			 MSGPACK_UNPACK_SUCCESS);
	f = open_memstream(&text, &len);
	assert_non_null(f);
	if (holders)
		cli_print_holders(f, &up.data);
	else
		cli_print_release(f, &up.data);
	assert_int_equal(fclose(f), 0);
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_clear(sb);
	return text;
}

static void pack_holder(msgpack_packer *pk, const char *node, const char *kind,
			uint64_t cur, uint64_t pages, double age)
{
	msgpack_pack_map(pk, 5);
	proto_mp_pack_kv_str(pk, "node", node);
	proto_mp_pack_kv_str(pk, "kind", kind);
	proto_mp_pack_kv_u64(pk, "current_pages", cur);
	proto_mp_pack_kv_u64(pk, "pages", pages);
	proto_mp_pack_str(pk, "age_s");
	msgpack_pack_double(pk, age);
}

/* The lines say what the replies say (migration.h's contracts). */
static void test_vm_print(void **state)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char *text;

	(void)state;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_mp_pack_kv_str(&pk, "vm", "vm1");
	proto_mp_pack_str(&pk, "holders");
	msgpack_pack_array(&pk, 3);
	pack_holder(&pk, "b", "running", 16384, 16384, 0);
	pack_holder(&pk, "a", "retained", 15000, 16384, 12.34);
	pack_holder(&pk, "c", "retained", 9000, 16384, -1); /* age unknown */
	text = render(&sb, true);
	assert_string_equal(text, "NODE              KIND         "
				  "CURRENT/PAGES                "
				  "             AGE\n"
				  "b                 running      16384/16384 "
				  "pages (64.0 MiB "
				  "current)      0.0 s\n"
				  "a                 retained     15000/16384 "
				  "pages (58.6 MiB "
				  "current)      12.3 s\n"
				  "c                 retained     9000/16384 "
				  "pages (35.2 MiB current)       -\n");
	free(text);

	msgpack_pack_map(&pk, 2);
	proto_mp_pack_kv_str(&pk, "vm", "vm1");
	proto_mp_pack_str(&pk, "holders");
	msgpack_pack_array(&pk, 0);
	text = render(&sb, true);
	assert_string_equal(text, "no holder of VM vm1 known here\n");
	free(text);

	for (unsigned n = 0; n < 3; n++) {
		static const char *const want[] = {
			"no retained copy of VM vm1 here\n",
			"released 1 copy of VM vm1\n",
			"released 2 copies of VM vm1\n",
		};

		msgpack_pack_map(&pk, 2);
		proto_mp_pack_kv_str(&pk, "vm", "vm1");
		proto_mp_pack_kv_u64(&pk, "released", n);
		text = render(&sb, false);
		assert_string_equal(text, want[n]);
		free(text);
	}
	msgpack_sbuffer_destroy(&sb);
}

/* msgpack {"cmd": "holders", "vm": "x", "id": 3} */
static const uint8_t holders_with_id[] = {
	0x83, 0xa3, 'c',  'm', 'd', 0xa7, 'h', 'o',  'l', 'd', 'e',
	'r',  's',  0xa2, 'v', 'm', 0xa1, 'x', 0xa2, 'i', 'd', 0x03,
};

/*
 * Against a real ferryd: of a VM it never had, holders knows none and
 * release frees none, both exit 0, in words and in JSON (--json before
 * the command or after its VM); what the CLI would not send, ferryd's
 * decoder refuses.
 */
static void test_vm_ferryd(void **state)
{
	struct node na;
	msgpack_unpacked reply;
	char why[256];
	json_t *j;
	void *raw;
	int rc;

	(void)state;
	node_init(&na, "a");
	node_start(&na);
	node_ready(&na);
	assert_int_equal(
		ferry_args(&na, 10, out, err, "holders", "nosuch", NULL), 0);
	assert_string_equal(out, "no holder of VM nosuch known here\n");
	assert_string_equal(err, "");
	assert_int_equal(
		ferry_args(&na, 10, out, err, "release", "nosuch", NULL), 0);
	assert_string_equal(out, "no retained copy of VM nosuch here\n");
	assert_string_equal(err, "");

	j = ferry_jargs(&na, 10, NULL, "holders", "nosuch", NULL);
	assert_jstr(j, "vm", "nosuch");
	assert_int_equal(jlen(j, "holders"), 0);
	assert_int_equal(ferry_args(&na, 10, out, err, "holders", "nosuch",
				    "--json", NULL),
			 0);
	j = jparse(out, err);
	assert_jstr(j, "vm", "nosuch");
	assert_int_equal(jlen(j, "holders"), 0);
	j = ferry_jargs(&na, 10, &rc, "release", "nosuch", NULL);
	assert_int_equal(rc, 0);
	assert_jstr(j, "vm", "nosuch");
	assert_int_equal(jint(j, "released"), 0);
	assert_null(jget(j, "error"));

	assert_int_equal(cli_call(na.sock, holders_with_id,
				  sizeof(holders_with_id), 2000, &reply, &raw,
				  why, sizeof(why)),
			 0);
	assert_string_equal(proto_mp_str(&reply.data, "error", why,
					 sizeof(why)),
			    "holders: field \"id\" is not one of holders's");
	msgpack_unpacked_destroy(&reply);
	free(raw);
	itest_no_crash(&na);
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
		cmocka_unit_test(test_retarget_usage),
		cmocka_unit_test(test_retarget_print),
		cmocka_unit_test_setup_teardown(test_retarget_ferryd, setup,
						group_teardown),
		cmocka_unit_test(test_vm_usage),
		cmocka_unit_test(test_vm_print),
		cmocka_unit_test_setup_teardown(test_vm_ferryd, setup,
						group_teardown),
	};

	ferry_bin = getenv("FERRY");
	ferryd_bin = getenv("FERRYD");
	if (!ferry_bin || !ferryd_bin) {
		fprintf(stderr, "FERRY and FERRYD (the ferry and ferryd "
				"binaries) are not set\n");
		return 1;
	}
	atexit(kill_children);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
