// SPDX-License-Identifier: MIT
/* Helpers of the protocol/ tests (proto_tree.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <cmocka.h>

#include <msgpack.h>

#include "common/util.h"
#include "protocol/protocol.h"
#include "proto_samples.h"
#include "proto_tree.h"

void encode(const struct proto_msg *m, void **buf, size_t *len)
{
	assert_int_equal(proto_encode(m, buf, len), 0);
}

/* Decode must fail with rc and an err containing want. */
void expect_rc(const void *buf, size_t len, int rc, const char *want)
{
	struct proto_msg *out = (void *)1;
	char err[256];
	int got;

	memset(err, 'X', sizeof(err));
	got = proto_decode(buf, len, &out, err, sizeof(err));
	if (got != rc || !strstr(err, want))
		fail_msg("decode: rc %d (want %d), err \"%s\" (want \"%s\")",
			 got, rc, err, want);
	assert_null(out);
}

void expect_bad(const void *buf, size_t len, const char *want)
{
	expect_rc(buf, len, -EBADMSG, want);
}

void tree_of(struct tree *t, enum proto_type type, unsigned variant)
{
	struct proto_msg *m = proto_sample(type, variant);
	size_t len, off = 0;
	void *buf;

	assert_non_null(m);
	encode(m, &buf, &len);
	proto_msg_free(m);
	memset(t, 0, sizeof(*t));
	msgpack_unpacked_init(&t->up);
	assert_int_equal(msgpack_unpack_next(&t->up, buf, len, &off),
			 MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(off, len);
	t->buf = buf;
	t->root = &t->up.data;
	msgpack_sbuffer_init(&t->sb);
}

void tree_done(struct tree *t)
{
	for (int i = 0; i < t->ngrown; i++)
		free(t->grown[i]);
	msgpack_unpacked_destroy(&t->up);
	msgpack_sbuffer_destroy(&t->sb);
	free(t->buf);
}

msgpack_object *get(msgpack_object *map, const char *key)
{
	assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		msgpack_object *k = &map->via.map.ptr[i].key;

		if (k->via.str.size == strlen(key) &&
		    !memcmp(k->via.str.ptr, key, k->via.str.size))
			return &map->via.map.ptr[i].val;
	}
	fail_msg("no key %s", key);
	return NULL;
}

void drop(msgpack_object *map, const char *key)
{
	msgpack_object_kv *kv = map->via.map.ptr;
	uint32_t i, n = map->via.map.size;

	for (i = 0; i < n; i++)
		if (kv[i].key.via.str.size == strlen(key) &&
		    !memcmp(kv[i].key.via.str.ptr, key, strlen(key)))
			break;
	assert_true(i < n);
	memmove(&kv[i], &kv[i + 1], (n - i - 1) * sizeof(*kv));
	map->via.map.size--;
}

/* Add key (a copy of an existing entry's key storage is not needed). */
msgpack_object *add(struct tree *t, msgpack_object *map, const char *key)
{
	uint32_t n = map->via.map.size;
	msgpack_object_kv *kv = malloc((n + 1) * sizeof(*kv));

	assert_non_null(kv);
	assert_true(t->ngrown < 4);
	t->grown[t->ngrown++] = kv;
	memcpy(kv, map->via.map.ptr, n * sizeof(*kv));
	kv[n].key.type = MSGPACK_OBJECT_STR;
	kv[n].key.via.str.ptr = key;
	kv[n].key.via.str.size = strlen(key);
	kv[n].val.type = MSGPACK_OBJECT_NIL;
	map->via.map.ptr = kv;
	map->via.map.size = n + 1;
	return &kv[n].val;
}

void set_uint(msgpack_object *o, uint64_t v)
{
	o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	o->via.u64 = v;
}

void set_str(msgpack_object *o, const char *s, size_t len)
{
	o->type = MSGPACK_OBJECT_STR;
	o->via.str.ptr = s;
	o->via.str.size = len;
}

void set_bin(msgpack_object *o, const char *s, size_t len)
{
	o->type = MSGPACK_OBJECT_BIN;
	o->via.bin.ptr = s;
	o->via.bin.size = len;
}

void pack(struct tree *t)
{
	msgpack_packer pk;

	msgpack_sbuffer_clear(&t->sb);
	msgpack_packer_init(&pk, &t->sb, msgpack_sbuffer_write);
	assert_int_equal(msgpack_pack_object(&pk, *t->root), 0);
}

/* Pack the tree and expect the decoder to refuse it, saying want. */
void tree_bad(struct tree *t, const char *want)
{
	pack(t);
	expect_bad(t->sb.data, t->sb.size, want);
}
