// SPDX-License-Identifier: MIT
/*
 * msgpack maps as the control socket's replies use them. ferryd packs a
 * reply with the proto_mp_pack_* helpers (node/nd_ctl.c, nd_vm.c,
 * mig_ctl.c); the `ferry` CLI reads fields of it by name with
 * proto_mp_get() and its typed wrappers, which never fail: a missing or
 * mistyped field reads as the caller's default. Replies come from the
 * local ferryd, so unlike requests (proto_ctl.c) they are read leniently.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "protocol/protocol.h"

const msgpack_object *proto_mp_get(const msgpack_object *map, const char *key)
{
	size_t klen = strlen(key);

	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
		    !memcmp(k->via.str.ptr, key, klen))
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

const char *proto_mp_str(const msgpack_object *map, const char *key, char *buf,
			 size_t len)
{
	const msgpack_object *o = proto_mp_get(map, key);
	size_t n;

	if (!len)
		return buf;
	if (!o || o->type != MSGPACK_OBJECT_STR) {
		snprintf(buf, len, "-");
		return buf;
	}
	n = FY_MIN((size_t)o->via.str.size, len - 1);
	memcpy(buf, o->via.str.ptr, n);
	buf[n] = '\0';
	return buf;
}

int64_t proto_mp_int(const msgpack_object *map, const char *key, int64_t dflt)
{
	const msgpack_object *o = proto_mp_get(map, key);

	if (!o)
		return dflt;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return o->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)o->via.u64;
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return o->via.i64;
	return dflt;
}

double proto_mp_double(const msgpack_object *map, const char *key, double dflt)
{
	const msgpack_object *o = proto_mp_get(map, key);

	if (!o)
		return dflt;
	if (o->type == MSGPACK_OBJECT_FLOAT32 ||
	    o->type == MSGPACK_OBJECT_FLOAT64)
		return o->via.f64;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return (double)o->via.u64;
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return (double)o->via.i64;
	return dflt;
}

void proto_mp_pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void proto_mp_pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
	proto_mp_pack_str(pk, k);
	proto_mp_pack_str(pk, v);
}

void proto_mp_pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
	proto_mp_pack_str(pk, k);
	msgpack_pack_uint64(pk, v);
}
