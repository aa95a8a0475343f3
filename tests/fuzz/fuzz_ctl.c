// SPDX-License-Identifier: MIT
/*
 * libFuzzer target over proto_ctl_decode(), the control socket's decoder.
 * Whatever decodes must hold only what the rules allow (a known command,
 * fields of that command, terminated strings), encode, decode again to
 * the same struct and encode to the same bytes, and msgpack-c must read
 * our encoding as the same msgpack value as the input, up to key order and
 * integer width; whatever does not decode must fail with -EBADMSG, leave
 * the struct zeroed and say why in err.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "protocol/protocol.h"
#include "fuzz_check.h"

static bool terminated(const char *s, size_t size)
{
	return memchr(s, 0, size) != NULL;
}

/* What the decoder promises about a request it accepted. */
static void check_req(const struct proto_ctl_req *r)
{
	const char *name = proto_ctl_cmd_name(r->cmd);

	CHECK(r->cmd >= PROTO_CTL_STATUS && r->cmd <= PROTO_CTL_CMD_LAST,
	      "command %d", r->cmd);
	CHECK(!(r->has >> PROTO_CTL_NFIELDS), "%s: fields %#x", name, r->has);
	CHECK(terminated(r->vm, sizeof(r->vm)) &&
		      terminated(r->to, sizeof(r->to)) &&
		      terminated(r->mode, sizeof(r->mode)) &&
		      terminated(r->compress, sizeof(r->compress)) &&
		      terminated(r->auto_converge, sizeof(r->auto_converge)) &&
		      terminated(r->source, sizeof(r->source)),
	      "%s: a string is not terminated", name);
	/* names go into paths: the configuration's rule, always */
	CHECK(!PROTO_CTL_HAS(r, PROTO_CTL_VM) || proto_name_valid(r->vm),
	      "%s: vm \"%s\" is not a name", name, r->vm);
	CHECK(!PROTO_CTL_HAS(r, PROTO_CTL_TO) || proto_name_valid(r->to),
	      "%s: to \"%s\" is not a name", name, r->to);
	CHECK(!PROTO_CTL_HAS(r, PROTO_CTL_SOURCE) ||
		      proto_name_valid(r->source),
	      "%s: source \"%s\" is not a name", name, r->source);
	CHECK(!r->vm[0] || PROTO_CTL_HAS(r, PROTO_CTL_VM),
	      "%s: vm set without its bit", name);
	if (r->cmd == PROTO_CTL_MIGRATE)
		CHECK(PROTO_CTL_HAS(r, PROTO_CTL_VM) &&
			      PROTO_CTL_HAS(r, PROTO_CTL_TO),
		      "migrate without vm or to");
	else if (r->cmd == PROTO_CTL_RETARGET)
		CHECK(PROTO_CTL_HAS(r, PROTO_CTL_TO) &&
			      !(r->has &
				(1u << PROTO_CTL_VM | 1u << PROTO_CTL_MODE |
				 1u << PROTO_CTL_SOURCE)),
		      "retarget without to, or with vm, mode or source");
	else if (r->cmd == PROTO_CTL_HOLDERS || r->cmd == PROTO_CTL_RELEASE)
		CHECK(r->has == 1u << PROTO_CTL_VM, "%s with more than vm",
		      name);
	else
		CHECK(!(r->has & (1u << PROTO_CTL_VM | 1u << PROTO_CTL_TO |
				  1u << PROTO_CTL_MODE)),
		      "%s with a field of migrate", name);
	if (r->cmd >= PROTO_CTL_MIGRATION && r->cmd <= PROTO_CTL_RETARGET)
		CHECK(PROTO_CTL_HAS(r, PROTO_CTL_ID) && r->id,
		      "%s without an id", name);
	CHECK(r->cmd == PROTO_CTL_FORCE_RESUME ||
		      !PROTO_CTL_HAS(r, PROTO_CTL_FENCED),
	      "%s with fenced", name);
	CHECK(r->cpu_throttle_initial <= 99 &&
		      r->cpu_throttle_increment <= 99 &&
		      r->max_cpu_throttle <= 99,
	      "%s: a throttle over 99", name);
	CHECK(!PROTO_CTL_HAS(r, PROTO_CTL_DOWNTIME_LIMIT_MS) ||
		      r->downtime_limit_ms,
	      "%s: downtime_limit_ms 0", name);
	CHECK(!PROTO_CTL_HAS(r, PROTO_CTL_MAX_ROUNDS) || r->max_rounds,
	      "%s: max_rounds 0", name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct proto_ctl_req zero;
	struct proto_ctl_req r, r2;
	char err[256] = "";
	size_t len, len2;
	void *buf, *buf2;
	int rc;

	memset(&r, 0xa5, sizeof(r));
	rc = proto_ctl_decode(data, size, &r, err, sizeof(err));
	if (rc) {
		CHECK(rc == -EBADMSG, "decode returned %d", rc);
		/* the struct as if untouched; the reason, terminated */
		CHECK(!memcmp(&r, &zero, sizeof(r)), "fields left set");
		CHECK(err[0] && memchr(err, 0, sizeof(err)), "no reason");
		return 0;
	}
	check_req(&r);
	rc = proto_ctl_encode(&r, &buf, &len, err, sizeof(err));
	CHECK(!rc, "decoded %s does not encode: %d %s",
	      proto_ctl_cmd_name(r.cmd), rc, err);
	check_same_value(data, size, buf, len, proto_ctl_cmd_name(r.cmd));
	rc = proto_ctl_decode(buf, len, &r2, err, sizeof(err));
	CHECK(!rc, "our encoding of %s does not decode: %s",
	      proto_ctl_cmd_name(r.cmd), err);
	CHECK(!memcmp(&r, &r2, sizeof(r)), "%s changed in a round trip",
	      proto_ctl_cmd_name(r.cmd));
	rc = proto_ctl_encode(&r2, &buf2, &len2, NULL, 0);
	CHECK(!rc && len2 == len && !memcmp(buf, buf2, len),
	      "%s encodes differently the second time",
	      proto_ctl_cmd_name(r.cmd));
	free(buf2);
	free(buf);
	return 0;
}
