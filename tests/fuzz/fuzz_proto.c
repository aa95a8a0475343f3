// SPDX-License-Identifier: MIT
/*
 * libFuzzer target over proto_decode(). Whatever decodes must encode,
 * decode again to an equal message and encode to the same bytes (an
 * asymmetric encoder/decoder pair fails here), and msgpack-c must read our
 * encoding as the same msgpack value as the input, up to key order and
 * integer width (a decoder that loses or alters a field fails here, which
 * the round trip alone cannot see); whatever does not decode must fail with -EBADMSG or
 * -EPROTONOSUPPORT, leave *out NULL and say why in err.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "protocol/protocol.h"
#include "../protocol/proto_samples.h"

#define CHECK(cond, ...)                              \
	do {                                          \
		if (!(cond)) {                        \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr);          \
			abort();                      \
		}                                     \
	} while (0)

/* Same value: maps compared as sets of keys, the rest as msgpack-c does. */
static bool same(const msgpack_object *a, const msgpack_object *b)
{
	uint32_t i, j;

	if (a->type != b->type)
		return false;
	if (a->type == MSGPACK_OBJECT_ARRAY) {
		if (a->via.array.size != b->via.array.size)
			return false;
		for (i = 0; i < a->via.array.size; i++)
			if (!same(&a->via.array.ptr[i], &b->via.array.ptr[i]))
				return false;
		return true;
	}
	if (a->type != MSGPACK_OBJECT_MAP)
		return msgpack_object_equal(*a, *b);
	if (a->via.map.size != b->via.map.size)
		return false;
	for (i = 0; i < a->via.map.size; i++) {
		for (j = 0; j < b->via.map.size; j++)
			if (msgpack_object_equal(a->via.map.ptr[i].key,
						 b->via.map.ptr[j].key))
				break;
		if (j == b->via.map.size ||
		    !same(&a->via.map.ptr[i].val, &b->via.map.ptr[j].val))
			return false;
	}
	return true;
}

/*
 * The input passed our decoder, so every count in it is backed by bytes
 * and within limits: msgpack-c's unpacker is safe to run on it here.
 */
static void check_same_value(const void *in, size_t inlen, const void *out,
			     size_t outlen, const char *type)
{
	msgpack_unpacked a, b;
	size_t aoff = 0, boff = 0;

	msgpack_unpacked_init(&a);
	msgpack_unpacked_init(&b);
	CHECK(msgpack_unpack_next(&a, in, inlen, &aoff) ==
			      MSGPACK_UNPACK_SUCCESS &&
		      aoff == inlen,
	      "msgpack-c does not read an input we accepted");
	CHECK(msgpack_unpack_next(&b, out, outlen, &boff) ==
			      MSGPACK_UNPACK_SUCCESS &&
		      boff == outlen && b.data.type == MSGPACK_OBJECT_MAP,
	      "msgpack-c does not read our encoding as one map");
	CHECK(same(&a.data, &b.data),
	      "%s: our encoding of the decoded input is another value", type);
	msgpack_unpacked_destroy(&a);
	msgpack_unpacked_destroy(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_msg *m = (void *)1, *m2 = NULL;
	char err[256] = "", why[128];
	size_t len, len2;
	void *buf, *buf2;
	int rc;

	rc = proto_decode(data, size, &m, err, sizeof(err));
	if (rc) {
		CHECK(rc == -EBADMSG || rc == -EPROTONOSUPPORT || rc == -ENOMEM,
		      "decode returned %d", rc);
		CHECK(!m, "decode failed but set *out");
		CHECK(err[0] && memchr(err, 0, sizeof(err)), "decode failed "
							     "without a "
							     "reason");
		return 0;
	}
	rc = proto_encode(m, &buf, &len);
	CHECK(!rc, "decoded %s does not encode: %d", proto_type_name(m->type),
	      rc);
	check_same_value(data, size, buf, len, proto_type_name(m->type));
	rc = proto_decode(buf, len, &m2, err, sizeof(err));
	CHECK(!rc, "our encoding of %s does not decode: %s",
	      proto_type_name(m->type), err);
	CHECK(proto_msg_eq(m, m2, why, sizeof(why)),
	      "%s changed in a round trip: %s", proto_type_name(m->type), why);
	rc = proto_encode(m2, &buf2, &len2);
	CHECK(!rc && len2 == len && !memcmp(buf, buf2, len),
	      "%s encodes differently the second time",
	      proto_type_name(m->type));
	free(buf2);
	free(buf);
	proto_msg_free(m2);
	proto_msg_free(m);
	return 0;
}
