/* SPDX-License-Identifier: MIT */
/*
 * What the libFuzzer targets share: CHECK() aborts with a message (the
 * fuzzer keeps the input), and check_same_value() asks msgpack-c, an
 * independent reader, whether an input we accepted and our re-encoding of
 * it are the same msgpack value, up to key order and integer width.
 */
#ifndef FERRY_FUZZ_CHECK_H
#define FERRY_FUZZ_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <msgpack.h>

#define CHECK(cond, ...)                              \
	do {                                          \
		if (!(cond)) {                        \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr);          \
			abort();                      \
		}                                     \
	} while (0)

/* Same value: maps compared as sets of keys, the rest as msgpack-c does. */
static inline bool same(const msgpack_object *a, const msgpack_object *b)
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
static inline void check_same_value(const void *in, size_t inlen,
				    const void *out, size_t outlen,
				    const char *what)
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
	      "%s: our encoding of the decoded input is another value", what);
	msgpack_unpacked_destroy(&a);
	msgpack_unpacked_destroy(&b);
}

#endif
