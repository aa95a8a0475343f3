// SPDX-License-Identifier: MIT
/*
 * proto_msg_mig(): every message type says, from the message table, which
 * migration it is about and whether it goes to the source or to the
 * destination; a decoded message says the same as the one encoded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "protocol/protocol.h"
#include "tests/protocol/proto_samples.h"

static const enum proto_dir want[] = {
	[PROTO_HELLO] = PROTO_TO_NONE,
	[PROTO_PING] = PROTO_TO_NONE,
	[PROTO_PONG] = PROTO_TO_NONE,
	[PROTO_HOLDER_MAP] = PROTO_TO_EITHER,
	[PROTO_MIGRATE_PREPARE] = PROTO_TO_DEST,
	[PROTO_DIRTY_SET] = PROTO_TO_DEST,
	[PROTO_PROGRESS] = PROTO_TO_SOURCE,
	[PROTO_STATE] = PROTO_TO_DEST,
	[PROTO_SWITCHOVER] = PROTO_TO_DEST,
	[PROTO_COMMIT] = PROTO_TO_SOURCE,
	[PROTO_ABORT] = PROTO_TO_EITHER,
	[PROTO_RETARGET] = PROTO_TO_DEST,
	[PROTO_ERROR] = PROTO_TO_EITHER,
	[PROTO_VERIFY] = PROTO_TO_DEST,
	[PROTO_RESUMED] = PROTO_TO_SOURCE,
	[PROTO_DELTA_SET] = PROTO_TO_DEST,
	[PROTO_POSTCOPY] = PROTO_TO_DEST,
	[PROTO_PC_STATS] = PROTO_TO_SOURCE,
	[PROTO_READY] = PROTO_TO_SOURCE,
	[PROTO_RESUME] = PROTO_TO_DEST,
	[PROTO_KEPT] = PROTO_TO_DEST,
};

static void test_route(void **state)
{
	(void)state;
	for (unsigned t = PROTO_HELLO; t <= PROTO_TYPE_LAST; t++) {
		struct proto_msg *m = proto_sample(t, 0), *back = NULL;
		uint64_t mig = 1, got;
		void *buf;
		size_t len;

		assert_non_null(m);
		/* a mark in the migration's id: it must come out of it */
		if (want[t] != PROTO_TO_NONE) {
			assert_int_equal(proto_msg_mig(m, &mig), want[t]);
			mig = 0x5eed0000 + t;
			m->abort.mig =
				mig; /* every such message has it first */
		}
		assert_int_equal(proto_encode(m, &buf, &len), 0);
		assert_int_equal(proto_decode(buf, len, &back, NULL, 0), 0);
		assert_int_equal(proto_msg_mig(back, &got), want[t]);
		assert_int_equal(got, want[t] == PROTO_TO_NONE ? 0 : mig);
		free(buf);
		proto_msg_free(back);
		proto_msg_free(m);
	}
	/* an unknown type is about nothing */
	struct proto_msg odd = { .type = 99 };
	uint64_t mig = 7;

	assert_int_equal(proto_msg_mig(&odd, &mig), PROTO_TO_NONE);
	assert_int_equal(mig, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
