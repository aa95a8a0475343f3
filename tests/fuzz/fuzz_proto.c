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
#include "fuzz_check.h"

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
