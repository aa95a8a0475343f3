// SPDX-License-Identifier: MIT
/* Packing control requests and expecting refusals (ctl_rq.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/protocol.h"

#include "ctl_rq.h"

void begin(struct rq *r, unsigned n, const char *cmd)
{
	msgpack_sbuffer_init(&r->sb);
	msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
	msgpack_pack_map(&r->pk, n);
	if (cmd) {
		msgpack_pack_str_with_body(&r->pk, "cmd", 3);
		msgpack_pack_str_with_body(&r->pk, cmd, strlen(cmd));
	}
}

void key(struct rq *r, const char *k)
{
	msgpack_pack_str_with_body(&r->pk, k, strlen(k));
}

void kv_str(struct rq *r, const char *k, const char *v)
{
	key(r, k);
	msgpack_pack_str_with_body(&r->pk, v, strlen(v));
}

void kv_u64(struct rq *r, const char *k, uint64_t v)
{
	key(r, k);
	msgpack_pack_uint64(&r->pk, v);
}

void kv_bool(struct rq *r, const char *k, bool v)
{
	key(r, k);
	if (v)
		msgpack_pack_true(&r->pk);
	else
		msgpack_pack_false(&r->pk);
}

void pack_cli_migrate(struct rq *r, const char *ac)
{
	begin(r, 16, "migrate");
	kv_u64(r, "postcopy_after", 0);
	kv_str(r, "vm", "guest1");
	kv_str(r, "to", "node-b.example");
	kv_str(r, "mode", "precopy");
	kv_u64(r, "downtime_limit_ms", 300);
	kv_u64(r, "max_bandwidth", 100 << 20);
	kv_bool(r, "verify", true);
	kv_str(r, "auto_converge", ac);
	kv_u64(r, "max_rounds", 30);
	kv_u64(r, "timeout_s", 600);
	kv_u64(r, "stall_rounds", 3);
	kv_str(r, "compress", "delta");
	kv_u64(r, "cpu_throttle_initial", 20);
	kv_u64(r, "cpu_throttle_increment", 0);
	kv_u64(r, "max_cpu_throttle", 99);
}

void expect_bytes(const void *buf, size_t len, const char *want)
{
	struct proto_ctl_req out;
	char err[256];
	int rc;

	memset(err, 'X', sizeof(err));
	rc = proto_ctl_decode(buf, len, &out, err, sizeof(err));
	if (rc != -EBADMSG || !strstr(err, want))
		fail_msg("decode: rc %d, err \"%s\" (want \"%s\")", rc, err,
			 want);
	/* nothing half-decoded is left */
	assert_int_equal(out.cmd, 0);
	assert_int_equal(out.has, 0);
}

void expect_bad(struct rq *r, const char *want)
{
	expect_bytes(r->sb.data, r->sb.size, want);
	msgpack_sbuffer_destroy(&r->sb);
}
