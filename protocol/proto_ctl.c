// SPDX-License-Identifier: MIT
/*
 * Control requests: what the `ferry` CLI asks the local ferryd over its
 * control socket (docs/operations.md, "The control socket").
 *
 * A request is one msgpack map. "cmd" names the command (a str); every
 * other key is a field of the table below, taken by some commands and
 * required by fewer. The rules are the peer messages' (proto_codec.c),
 * read by the same strict reader (proto_reader.c), so the control socket
 * of a ferryd that runs as root gets no looser treatment than its peers:
 *   - at most PROTO_CTL_MSG_MAX bytes, one map and nothing after it;
 *   - keys are str; a key the command does not take, a key twice, a
 *     missing "cmd" or required field are refused;
 *   - integers are unsigned, in the field's range; booleans are msgpack
 *     true or false; names (VMs, peers) follow the rule of names in the
 *     configuration (proto_name_valid()), since ferryd puts them in paths;
 *     words (mode, compress, auto_converge) are one of their values.
 * The reason names the field: "migrate.downtime_limit_ms: 0 not in
 * 1..3600000". Fields that did not come stay zero with their bit clear in
 * `has`: their defaults are ferryd's (migration/mig_ctl.c), in one place.
 *
 * Decoding, proto_ctl_decode(bytes):
 *   1. refuse more than PROTO_CTL_MSG_MAX bytes;
 *   2. read the map until "cmd", stepping over the keys before it, and
 *      look the command up;
 *   3. read the map again into the struct, checking each field as it
 *      comes; then that every required field came and that the map ends
 *      exactly where the input does.
 */
#define LOG_PREFIX "protocol: "

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "protocol/protocol_int.h"

#define CMD(c) (1u << (c))
#define ONE_MIG                                             \
	(CMD(PROTO_CTL_MIGRATION) | CMD(PROTO_CTL_CANCEL) | \
	 CMD(PROTO_CTL_MIGRATE_POSTCOPY) | CMD(PROTO_CTL_FORCE_RESUME))
#define MIG CMD(PROTO_CTL_MIGRATE)

static const char *const cmd_names[] = {
	[PROTO_CTL_STATUS] = "status",
	[PROTO_CTL_PEERS] = "peers",
	[PROTO_CTL_VMS] = "vms",
	[PROTO_CTL_MIGRATE] = "migrate",
	[PROTO_CTL_MIGRATIONS] = "migrations",
	[PROTO_CTL_MIGRATION] = "migration",
	[PROTO_CTL_CANCEL] = "cancel",
	[PROTO_CTL_MIGRATE_POSTCOPY] = "migrate-postcopy",
	[PROTO_CTL_FORCE_RESUME] = "force-resume",
};

const char *proto_ctl_cmd_name(enum proto_ctl_cmd c)
{
	return c >= PROTO_CTL_STATUS && c <= PROTO_CTL_CMD_LAST ? cmd_names[c]
								: "?";
}

static const char *const compressions[] = { "none", "delta", NULL };
/* "": ferryd's configuration; "off" is "none" */
static const char *const convergers[] = {
	"downtime", "throttle", "off", "none", "", NULL,
};

struct ctl_field {
	struct proto_field f;
	uint16_t cmds; /* the commands that take it: CMD() bits */
	uint16_t need; /* the commands that require it */
	const char *const *words; /* PK_STR: its only values */
};

#define R struct proto_ctl_req
/* Indexed by enum proto_ctl_field: the bit in has is the index. */
static const struct ctl_field fields[PROTO_CTL_NFIELDS] = {
	[PROTO_CTL_VM] = { PF_STR("vm", R, vm, 1, PC_ID), MIG, MIG },
	[PROTO_CTL_TO] = { PF_STR("to", R, to, 1, PC_ID), MIG, MIG },
	[PROTO_CTL_MODE] = { PF_STR("mode", R, mode, 1, PC_NAME), MIG, 0,
			     proto_mode_words },
	[PROTO_CTL_POSTCOPY_AFTER] = { PF_U32("postcopy_after", R,
					      postcopy_after, 0, 10000),
				       MIG },
	[PROTO_CTL_DOWNTIME_LIMIT_MS] = { PF_U32("downtime_limit_ms", R,
						 downtime_limit_ms, 1, 3600000),
					  MIG },
	[PROTO_CTL_MAX_DOWNTIME_MS] = { PF_U32("max_downtime_ms", R,
					       max_downtime_ms, 1, 3600000),
					MIG },
	[PROTO_CTL_MAX_BANDWIDTH] = { PF_U64("max_bandwidth", R, max_bandwidth,
					     0, 1ULL << 50),
				      MIG },
	[PROTO_CTL_COMPRESS] = { PF_STR("compress", R, compress, 1, PC_NAME),
				 MIG, 0, compressions },
	[PROTO_CTL_VERIFY] = { PF_BOOL("verify", R, verify), MIG },
	[PROTO_CTL_AUTO_CONVERGE] = { PF_STR("auto_converge", R, auto_converge,
					     0, PC_NAME),
				      MIG, 0, convergers },
	[PROTO_CTL_MAX_ROUNDS] = { PF_U32("max_rounds", R, max_rounds, 1,
					  10000),
				   MIG },
	[PROTO_CTL_STALL_ROUNDS] = { PF_U32("stall_rounds", R, stall_rounds, 1,
					    10000),
				     MIG },
	/* a year: timeout_s * 10^9 stays far from overflowing */
	[PROTO_CTL_TIMEOUT_S] = { PF_U32("timeout_s", R, timeout_s, 0,
					 365 * 86400),
				  MIG },
	[PROTO_CTL_CPU_THROTTLE_INITIAL] = { PF_U32("cpu_throttle_initial", R,
						    cpu_throttle_initial, 0,
						    99),
					     MIG },
	[PROTO_CTL_CPU_THROTTLE_INCREMENT] = { PF_U32("cpu_throttle_increment",
						      R, cpu_throttle_increment,
						      0, 99),
					       MIG },
	[PROTO_CTL_MAX_CPU_THROTTLE] = { PF_U32("max_cpu_throttle", R,
						max_cpu_throttle, 0, 99),
					 MIG },
	[PROTO_CTL_ID] = { PF_U64("id", R, id, 1, UINT64_MAX), ONE_MIG,
			   ONE_MIG },
	[PROTO_CTL_SOURCE] = { PF_STR("source", R, source, 1, PC_ID), ONE_MIG },
	[PROTO_CTL_FENCED] = { PF_BOOL("fenced", R, fenced),
			       CMD(PROTO_CTL_FORCE_RESUME) },
};
#undef R

/* The field's value, then for a word that it is one of its values. */
static int rd_value(struct proto_ctx *c, struct proto_ctl_req *r,
		    const struct ctl_field *cf)
{
	const char *word = CAT(r, cf->f.off, char);
	char list[80] = "";
	int rc;

	rc = proto_rd_value(c, r, &cf->f);
	if (!rc)
		rc = proto_check_value(c, r, &cf->f);
	if (rc || !cf->words)
		return rc;
	for (int i = 0; cf->words[i]; i++) {
		if (!strcmp(word, cf->words[i]))
			return 0;
		if (cf->words[i][0])
			snprintf(list + strlen(list),
				 sizeof(list) - strlen(list), "%s%s",
				 i ? ", " : "", cf->words[i]);
	}
	return proto_fail(c, "\"%s\" is not one of %s%s", word, list,
			  cf->f.min ? "" : " or empty");
}

static bool is_cmd(const char *key, uint32_t klen)
{
	return klen == 3 && !memcmp(key, "cmd", 3);
}

static int rd_cmd(struct proto_ctx *c, enum proto_ctl_cmd *cmd)
{
	size_t old = proto_path_push(c, ".cmd");
	const char *s;
	uint32_t len;
	char q[24];
	int rc, i;

	rc = proto_rd_str(c, &s, &len);
	for (i = PROTO_CTL_STATUS; !rc && i <= PROTO_CTL_CMD_LAST; i++)
		if (strlen(cmd_names[i]) == len &&
		    !memcmp(s, cmd_names[i], len))
			break;
	if (!rc && i > PROTO_CTL_CMD_LAST)
		rc = proto_fail(c, "unknown command \"%s\"",
				proto_quote(q, sizeof(q), s, len));
	if (!rc)
		*cmd = i;
	proto_path_pop(c, old);
	return rc;
}

/* Read the map until "cmd", stepping over the keys before it. */
static int scan(struct proto_ctx *c, enum proto_ctl_cmd *cmd)
{
	const char *key;
	uint32_t n, klen, i;
	int rc;

	rc = proto_rd_map(c, &n);
	for (i = 0; !rc && i < n; i++) {
		rc = proto_rd_str(c, &key, &klen);
		if (rc)
			return rc;
		if (is_cmd(key, klen))
			return rd_cmd(c, cmd);
		rc = proto_rd_skip(c, 1);
	}
	return rc ? rc : proto_fail(c, "missing field \"cmd\"");
}

static int rd_fields(struct proto_ctx *c, struct proto_ctl_req *r)
{
	const char *name = cmd_names[r->cmd];
	const struct ctl_field *cf;
	bool seen_cmd = false;
	const char *key;
	uint32_t n, klen, i;
	size_t j, old;
	char q[24];
	int rc;

	rc = proto_rd_map(c, &n);
	for (i = 0; !rc && i < n; i++) {
		rc = proto_rd_str(c, &key, &klen);
		if (rc)
			return rc;
		if (is_cmd(key, klen)) {
			if (seen_cmd)
				return proto_fail(c, "field \"cmd\" twice");
			seen_cmd = true;
			rc = proto_rd_skip(c, 1); /* read by scan() */
			continue;
		}
		for (j = 0; j < PROTO_CTL_NFIELDS; j++)
			if (strlen(fields[j].f.key) == klen &&
			    !memcmp(fields[j].f.key, key, klen))
				break;
		if (j == PROTO_CTL_NFIELDS)
			return proto_fail(c, "unknown field \"%s\"",
					  proto_quote(q, sizeof(q), key, klen));
		cf = &fields[j];
		if (!(cf->cmds & CMD(r->cmd)))
			return proto_fail(c, "field \"%s\" is not one of %s's",
					  cf->f.key, name);
		if (r->has & (1u << j))
			return proto_fail(c, "field \"%s\" twice", cf->f.key);
		r->has |= 1u << j;
		old = proto_path_push(c, ".%s", cf->f.key);
		rc = rd_value(c, r, cf);
		proto_path_pop(c, old);
	}
	for (j = 0; !rc && j < PROTO_CTL_NFIELDS; j++)
		if ((fields[j].need & CMD(r->cmd)) && !(r->has & (1u << j)))
			rc = proto_fail(c, "missing field \"%s\"",
					fields[j].f.key);
	return rc;
}

int proto_ctl_decode(const void *buf, size_t len, struct proto_ctl_req *out,
		     char *err, size_t errlen)
{
	struct proto_ctx c = { .p = buf,
			       .end = (const uint8_t *)buf + len,
			       .err = err,
			       .errlen = errlen };
	enum proto_ctl_cmd cmd = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	if (!buf && len)
		return -EINVAL;
	if (!buf)
		c.p = c.end = (const uint8_t *)"";
	proto_path_push(&c, "request");
	if (len > PROTO_CTL_MSG_MAX)
		return proto_fail(&c, "%zu bytes, at most %u", len,
				  PROTO_CTL_MSG_MAX);
	rc = scan(&c, &cmd);
	if (rc)
		return rc;
	proto_path_pop(&c, 0);
	proto_path_push(&c, "%s", cmd_names[cmd]);
	out->cmd = cmd;
	c.p = buf;
	rc = rd_fields(&c, out);
	if (!rc && c.p != c.end)
		rc = proto_fail(&c, "%zu bytes after the request",
				(size_t)(c.end - c.p));
	if (rc) {
		memset(out, 0, sizeof(*out));
		return rc;
	}
	return 0;
}

static int pk_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

int proto_ctl_encode(const struct proto_ctl_req *r, void **buf, size_t *len)
{
	struct proto_ctl_req check;
	const struct proto_field *f;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	bool bad = false;
	char err[256];
	int rc, j, n = 1;

	if (r->cmd < PROTO_CTL_STATUS || r->cmd > PROTO_CTL_CMD_LAST ||
	    r->has >> PROTO_CTL_NFIELDS) {
		pr_err("cannot encode a control request: command %d, fields "
		       "%#x",
		       r->cmd, r->has);
		return -EINVAL;
	}
	for (j = 0; j < PROTO_CTL_NFIELDS; j++)
		n += PROTO_CTL_HAS(r, j);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	rc = msgpack_pack_map(&pk, n) | pk_str(&pk, "cmd") |
	     pk_str(&pk, cmd_names[r->cmd]);
	for (j = 0; !rc && !bad && j < PROTO_CTL_NFIELDS; j++) {
		if (!PROTO_CTL_HAS(r, j))
			continue;
		f = &fields[j].f;
		rc = pk_str(&pk, f->key);
		switch (f->kind) {
		case PK_STR:
			if (strnlen(CAT(r, f->off, char), f->max + 1) > f->max)
				bad = true; /* unterminated */
			else
				rc |= pk_str(&pk, CAT(r, f->off, char));
			break;
		case PK_BOOL:
			rc |= *CAT(r, f->off, bool) ? msgpack_pack_true(&pk)
						    : msgpack_pack_false(&pk);
			break;
		case PK_U64:
			rc |= msgpack_pack_uint64(&pk,
						  *CAT(r, f->off, uint64_t));
			break;
		default:
			rc |= msgpack_pack_uint32(&pk,
						  *CAT(r, f->off, uint32_t));
		}
	}
	if (rc || bad) {
		if (bad)
			pr_err("cannot encode %s: a string is not terminated",
			       cmd_names[r->cmd]);
		msgpack_sbuffer_destroy(&sb);
		return bad ? -EINVAL : -ENOMEM;
	}
	/* the encoder's checks are the decoder's */
	if (proto_ctl_decode(sb.data, sb.size, &check, err, sizeof(err))) {
		pr_err("cannot encode %s", err);
		msgpack_sbuffer_destroy(&sb);
		return -EINVAL;
	}
	*len = sb.size;
	*buf = msgpack_sbuffer_release(&sb);
	return 0;
}
