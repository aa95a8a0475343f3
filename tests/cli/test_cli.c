// SPDX-License-Identifier: MIT
/*
 * cli/: the `ferry` command line. Its JSON printer renders every msgpack
 * type and escapes what JSON needs escaped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/cli.h"
#include "protocol/protocol.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
