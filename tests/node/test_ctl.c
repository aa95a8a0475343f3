// SPDX-License-Identifier: MIT
/*
 * The control socket's migration commands (nd_migs_command) on a node
 * without peers or migrations: ferryd itself refuses force-resume without
 * fenced, whatever the client; a migrate left to its defaults is taken.
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

/*
 * migrate: the checks across fields are the decoder's (tests/protocol),
 * the defaults protocol/'s and ferryd.conf's; with them applied, a
 * request left to its defaults, or spelling them "" and 0 as an older
 * `ferry` does, goes on to the start of the migration, which wants the
 * peer this node does not have.
 */
static void test_migrate_defaults(void **state)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_MIGRATE };
	struct nd_node *n = node();
	char err[512];

	(void)state;
	strcpy(req.vm, "v");
	strcpy(req.to, "b");
	req.has = 1u << PROTO_CTL_VM | 1u << PROTO_CTL_TO;
	assert_string_equal(run(n, &req, err, sizeof(err)), "no peer called "
							    "'b'");
	req.has |= 1u << PROTO_CTL_AUTO_CONVERGE |
		   1u << PROTO_CTL_CPU_THROTTLE_INITIAL;
	assert_string_equal(run(n, &req, err, sizeof(err)), "no peer called "
							    "'b'");
	free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_force_resume_needs_fenced),
		cmocka_unit_test(test_migrations),
		cmocka_unit_test(test_migrate_defaults),
	};

	return cmocka_run_group_tests_name("node-ctl", tests, NULL, NULL);
}
