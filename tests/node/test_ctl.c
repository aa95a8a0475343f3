// SPDX-License-Identifier: MIT
/*
 * The control socket's migration commands (nd_migs_command) on a node
 * without peers or migrations: ferryd itself refuses force-resume without
 * fenced, whatever the client; the defaults and checks that proto_ctl.c
 * leaves to ferryd are applied.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "node/node_int.h"

/* Run one request against n; the reply's "error", or "" if none. */
static const char *run(struct nd_node *n, const struct proto_ctl_req *req,
		       char *buf, size_t len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	nd_migs_command(n, req, &pk);
	msgpack_unpacked_init(&up);
	assert_int_equal(msgpack_unpack_next(&up, sb.data, sb.size, NULL),
			 MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(up.data.type, MSGPACK_OBJECT_MAP);
	buf[0] = '\0';
	if (proto_mp_get(&up.data, "error"))
		proto_mp_str(&up.data, "error", buf, len);
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
	return buf;
}

static struct nd_node *node(void)
{
	static struct nd_config cfg;
	struct nd_node *n = calloc(1, sizeof(*n));

	assert_non_null(n);
	nd_config_defaults(&cfg);
	n->cfg = &cfg;
	return n;
}

static void test_force_resume_needs_fenced(void **state)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_FORCE_RESUME, .id = 5 };
	struct nd_node *n = node();
	char err[512];

	(void)state;
	req.has = 1u << PROTO_CTL_ID;
	assert_non_null(strstr(run(n, &req, err, sizeof(err)), "force-resume "
							       "needs "
							       "\"fenced\": "
							       "true"));
	req.has |= 1u << PROTO_CTL_FENCED;
	assert_non_null(strstr(run(n, &req, err, sizeof(err)), "force-resume "
							       "needs "
							       "\"fenced\": "
							       "true"));
	/* fenced: on to the migration, which this node does not have */
	req.fenced = true;
	assert_string_equal(run(n, &req, err, sizeof(err)), "no such "
							    "migration");
	free(n);
}

static void test_migrations(void **state)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_MIGRATIONS };
	struct nd_node *n = node();
	char err[512];

	(void)state;
	assert_string_equal(run(n, &req, err, sizeof(err)), "");
	req.cmd = PROTO_CTL_CANCEL;
	req.id = 3;
	assert_string_equal(run(n, &req, err, sizeof(err)), "no such "
							    "migration");
	free(n);
}

/* The one cross-field check proto_ctl.c leaves to ferryd. */
static void test_migrate_checks(void **state)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_MIGRATE, .verify = true };
	struct nd_node *n = node();
	char err[512];

	(void)state;
	strcpy(req.vm, "v");
	strcpy(req.to, "b");
	strcpy(req.mode, "postcopy");
	req.has = 1u << PROTO_CTL_VM | 1u << PROTO_CTL_TO |
		  1u << PROTO_CTL_MODE | 1u << PROTO_CTL_VERIFY;
	assert_string_equal(run(n, &req, err, sizeof(err)), "--verify and "
							    "--compress delta "
							    "are for --mode "
							    "precopy");
	free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_force_resume_needs_fenced),
		cmocka_unit_test(test_migrations),
		cmocka_unit_test(test_migrate_checks),
	};

	return cmocka_run_group_tests_name("node-ctl", tests, NULL, NULL);
}
