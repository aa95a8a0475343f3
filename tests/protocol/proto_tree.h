/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the protocol/ tests (test_protocol.c, test_proto_limits.c):
 * encode a message, expect the decoder to refuse bytes, and the object
 * tree of a valid sample to damage and pack again, so that the decoder
 * sees exactly one thing wrong. They fail the running cmocka test on
 * error, so call them from tests only.
 */
#ifndef FERRY_TESTS_PROTO_TREE_H
#define FERRY_TESTS_PROTO_TREE_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "protocol/protocol.h"

/* Encode m, which must succeed. */
void encode(const struct proto_msg *m, void **buf, size_t *len);
/* Decode must fail with rc and an err containing want. */
void expect_rc(const void *buf, size_t len, int rc, const char *want);
/* The same with -EBADMSG. */
void expect_bad(const void *buf, size_t len, const char *want);

/* A message's object tree, to damage and pack again. */
struct tree {
	msgpack_unpacked up;
	msgpack_object *root;
	msgpack_sbuffer sb;
	void *buf; /* the encoding: msgpack-c's strings point into it */
	/* maps we grew (msgpack's zone owns the rest) */
	msgpack_object_kv *grown[4];
	int ngrown;
};

/* The tree of variant of a sample of type; free it with tree_done(). */
void tree_of(struct tree *t, enum proto_type type, unsigned variant);
void tree_done(struct tree *t);
/* The value of key in map (which must have it); drop key from map. */
msgpack_object *get(msgpack_object *map, const char *key);
void drop(msgpack_object *map, const char *key);
/* Add key to map; its value, to set. */
msgpack_object *add(struct tree *t, msgpack_object *map, const char *key);
/* Make o a uint, a str or a bin (s is not copied). */
void set_uint(msgpack_object *o, uint64_t v);
void set_str(msgpack_object *o, const char *s, size_t len);
void set_bin(msgpack_object *o, const char *s, size_t len);
/* Pack the tree into t->sb. */
void pack(struct tree *t);
/* Pack the tree and expect the decoder to refuse it, saying want. */
void tree_bad(struct tree *t, const char *want);

#endif /* FERRY_TESTS_PROTO_TREE_H */
