// SPDX-License-Identifier: MIT
/*
 * The session messages: HELLO, PING, PONG, ERROR.
 *
 * Connecting (A dials B over ZeroMQ; CURVE has already authenticated B's
 * key, so HELLO's key is A's claim to check against the peer list):
 *   A sends HELLO(v, id, pk, pv, a): its protocol version, node id, CURVE
 *     public key, and its fabric provider and address, or neither when it
 *     has no fabric endpoint (it then serves no pages);
 *   B decodes it. A version other than PROTO_VERSION decodes as
 *     -EPROTONOSUPPORT before any other field is read (their form may have
 *     changed): B answers ERROR(c = EPROTONOSUPPORT) and drops A;
 *   otherwise B answers with its own HELLO; both now know each other's
 *     fabric address and can register memory for one another.
 *
 * Reachability and round-trip time, at any time after HELLO:
 *   A sends PING(s, ts) with a sequence number and its own monotonic clock;
 *   B answers PONG with the same s and ts, unchanged, so A computes the RTT
 *     from its own clock alone (the two clocks are never compared);
 *   a PONG whose s A did not send is stale and dropped by A.
 *
 * Errors, from either side at any time:
 *   ERROR(m, c, tx): the migration it is about (0: none), a positive errno
 *     (1..4095) and a text for the operator. An ERROR about a migration
 *     aborts it on the receiver as an ABORT would; an ERROR about none tells
 *     the sender its last message was refused and the session may close.
 *     Nobody answers an ERROR, so two peers never loop on them.
 */
#include <stdint.h>

#include "common/util.h"
#include "protocol/protocol_int.h"

static int hello_check(struct proto_ctx *c, const void *s)
{
	const struct proto_hello *h = s;

	/* an address means nothing without the provider that reads it */
	if (!h->provider[0] != !h->addr_len)
		return proto_fail_in(c, ".pv",
				     "fabric provider and address (a) come "
				     "together, or neither");
	return 0;
}

static const struct proto_field hello_fields[] = {
	PF_U32("v", struct proto_hello, version, PROTO_VERSION, PROTO_VERSION),
	PF_STR("id", struct proto_hello, node, 1, PC_ID),
	PF_STR("pk", struct proto_hello, pubkey, PROTO_KEY_LEN, PC_Z85),
	PF_STR("pv", struct proto_hello, provider, 0, PC_NAME),
	PF_BIN("a", struct proto_hello, addr, addr_len, 0),
};

const struct proto_desc proto_hello_desc = {
	.name = "HELLO",
	.size = sizeof(struct proto_hello),
	.fields = hello_fields,
	.nfields = ARRAY_SIZE(hello_fields),
	.check = hello_check,
};

static const struct proto_field ping_fields[] = {
	PF_U64("s", struct proto_ping, seq, 0, UINT64_MAX),
	PF_U64("ts", struct proto_ping, sent_ns, 0, UINT64_MAX),
};

const struct proto_desc proto_ping_desc = {
	.name = "PING",
	.size = sizeof(struct proto_ping),
	.fields = ping_fields,
	.nfields = ARRAY_SIZE(ping_fields),
};

const struct proto_desc proto_pong_desc = {
	.name = "PONG",
	.size = sizeof(struct proto_ping),
	.fields = ping_fields,
	.nfields = ARRAY_SIZE(ping_fields),
};

static const struct proto_field error_fields[] = {
	PF_U64("m", struct proto_error, mig, 0, UINT64_MAX),
	PF_I32("c", struct proto_error, code, 1, PROTO_ERRNO_MAX),
	PF_STR("tx", struct proto_error, text, 0, PC_TEXT),
};

const struct proto_desc proto_error_desc = {
	.name = "ERROR",
	.dir = PROTO_TO_EITHER,
	.size = sizeof(struct proto_error),
	.fields = error_fields,
	.nfields = ARRAY_SIZE(error_fields),
};
