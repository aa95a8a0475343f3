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
 * `has`. After the fields, what they say together (check_across(): no
 * --verify or delta outside pre-copy).
 *
 * This file is the one place for what a request means: the field table
 * below holds each field's range and its default, so that
 *   - the decoder (ferryd), the encoder and proto_ctl_set_*() (the CLI)
 *     check a value with the same code and say the same words;
 *   - proto_ctl_defaults() gives ferryd a left-out field its default, and
 *     proto_ctl_default() gives the CLI's help the same text. The fields
 *     whose default is the node's configuration (auto_converge and the
 *     throttle percentages, from ferryd.conf) have none here: ferryd fills
 *     those from its own configuration (migration/mig_ctl.c).
 *
 * Decoding, proto_ctl_decode(bytes):
 *   1. refuse more than PROTO_CTL_MSG_MAX bytes;
 *   2. read the map until "cmd", stepping over the keys before it, and
 *      look the command up;
 *   3. read the map again into the struct, checking each field as it
 *      comes; then that every required field came, that the map ends
 *      exactly where the input does, and the checks across fields.
 *
 * Encoding, proto_ctl_encode(struct): the same checks on the struct
 * (check_req()), then "cmd" and the fields set, in the table's order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "protocol/protocol_int.h"

#define CMD(c) (1u << (c))
#define ONE_MIG                                             \
	(CMD(PROTO_CTL_MIGRATION) | CMD(PROTO_CTL_CANCEL) | \
	 CMD(PROTO_CTL_MIGRATE_POSTCOPY) | CMD(PROTO_CTL_FORCE_RESUME))
#define MIG CMD(PROTO_CTL_MIGRATE)
/* on the source only: no "source" */
#define RETARGET CMD(PROTO_CTL_RETARGET)
/* a VM's copies as this node knows them: "vm" alone */
#define KEPT (CMD(PROTO_CTL_HOLDERS) | CMD(PROTO_CTL_RELEASE))

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
	[PROTO_CTL_RETARGET] = "retarget",
	[PROTO_CTL_HOLDERS] = "holders",
	[PROTO_CTL_RELEASE] = "release",
};

const char *proto_ctl_cmd_name(enum proto_ctl_cmd c)
{
	return c >= PROTO_CTL_STATUS && c <= PROTO_CTL_CMD_LAST ? cmd_names[c]
								: "?";
}

static const char *const compressions[] = { "none", "delta", NULL };
static const char *const convergers[] = {
	"downtime", "throttle", "off", "none", NULL, /* "off" is "none" */
};

/*
 * A field: how it travels and is checked, which commands take it, and
 * what a request that leaves it out means. That is the field's default
 * (dflt, or dword for a word) when the protocol knows it; for the fields
 * marked conf it is the node's: ferryd takes those from ferryd.conf, so
 * no default for them is written here. On the wire a conf field may also
 * be 0 or "": the `ferry` of before proto_ctl_encode() spelt "left out"
 * so, and the decoder and encoder still take it, meaning the same; a value
 * set with proto_ctl_set_*() must be a real one (1..99, a word).
 */
struct ctl_field {
	struct proto_field f;
	uint16_t cmds; /* the commands that take it: CMD() bits */
	uint16_t need; /* the commands that require it */
	const char *const *words; /* PK_STR: its only values */
	uint64_t dflt; /* an int or bool left out */
	const char *dword; /* a word left out; NULL: "" */
	bool conf; /* left out: the node's configuration */
};

#define R struct proto_ctl_req
/* Indexed by enum proto_ctl_field: the bit in has is the index. */
static const struct ctl_field fields[PROTO_CTL_NFIELDS] = {
	[PROTO_CTL_VM] = { PF_STR("vm", R, vm, 1, PC_ID), MIG | KEPT,
			   MIG | KEPT },
	[PROTO_CTL_TO] = { PF_STR("to", R, to, 1, PC_ID), MIG | RETARGET,
			   MIG | RETARGET },
	[PROTO_CTL_MODE] = { PF_STR("mode", R, mode, 1, PC_NAME), MIG,
			     .words = proto_mode_words, .dword = "precopy" },
	/* 0: when the rounds stop making progress */
	[PROTO_CTL_POSTCOPY_AFTER] = { PF_U32("postcopy_after", R,
					      postcopy_after, 0, 10000),
				       MIG },
	[PROTO_CTL_DOWNTIME_LIMIT_MS] = { PF_U32("downtime_limit_ms", R,
						 downtime_limit_ms, 1, 3600000),
					  MIG, .dflt = 300 },
	/* and at least downtime_limit_ms (proto_ctl_defaults()) */
	[PROTO_CTL_MAX_DOWNTIME_MS] = { PF_U32("max_downtime_ms", R,
					       max_downtime_ms, 1, 3600000),
					MIG, .dflt = 10000 },
	/* 0: no limit */
	[PROTO_CTL_MAX_BANDWIDTH] = { PF_U64("max_bandwidth", R, max_bandwidth,
					     0, 1ULL << 50),
				      MIG },
	[PROTO_CTL_COMPRESS] = { PF_STR("compress", R, compress, 1, PC_NAME),
				 MIG, .words = compressions, .dword = "none" },
	[PROTO_CTL_VERIFY] = { PF_BOOL("verify", R, verify), MIG },
	[PROTO_CTL_AUTO_CONVERGE] = { PF_STR("auto_converge", R, auto_converge,
					     1, PC_NAME),
				      MIG, .words = convergers, .conf = true },
	[PROTO_CTL_MAX_ROUNDS] = { PF_U32("max_rounds", R, max_rounds, 1,
					  10000),
				   MIG, .dflt = 30 },
	[PROTO_CTL_STALL_ROUNDS] = { PF_U32("stall_rounds", R, stall_rounds, 1,
					    10000),
				     MIG, .dflt = 3 },
	/* 0: none. A year: timeout_s * 10^9 stays far from overflowing */
	[PROTO_CTL_TIMEOUT_S] = { PF_U32("timeout_s", R, timeout_s, 0,
					 365 * 86400),
				  MIG, .dflt = 600 },
	[PROTO_CTL_CPU_THROTTLE_INITIAL] = { PF_U32("cpu_throttle_initial", R,
						    cpu_throttle_initial, 1,
						    99),
					     MIG, .conf = true },
	[PROTO_CTL_CPU_THROTTLE_INCREMENT] = { PF_U32("cpu_throttle_increment",
						      R, cpu_throttle_increment,
						      1, 99),
					       MIG, .conf = true },
	[PROTO_CTL_MAX_CPU_THROTTLE] = { PF_U32("max_cpu_throttle", R,
						max_cpu_throttle, 1, 99),
					 MIG, .conf = true },
	[PROTO_CTL_ID] = { PF_U64("id", R, id, 1, UINT64_MAX),
			   ONE_MIG | RETARGET, ONE_MIG | RETARGET },
	/* "": the migration this node started */
	[PROTO_CTL_SOURCE] = { PF_STR("source", R, source, 1, PC_ID), ONE_MIG },
	[PROTO_CTL_FENCED] = { PF_BOOL("fenced", R, fenced),
			       CMD(PROTO_CTL_FORCE_RESUME) },
};
#undef R

/* A conf field holding 0 or "": left out (struct ctl_field). */
static bool conf_unset(const struct proto_ctl_req *r,
		       const struct ctl_field *cf)
{
	if (!cf->conf)
		return false;
	if (cf->f.kind == PK_STR)
		return !CAT(r, cf->f.off, char)[0];
	return !*CAT(r, cf->f.off, uint32_t);
}

/*
 * Field cf of r against its range, length, alphabet and words: the one
 * check of a value, whether it was decoded, is to be encoded, or is set.
 * set: a value given by proto_ctl_set_*(), where a conf field's 0 or ""
 * is refused like any value out of range.
 */
static int check_value(struct proto_ctx *c, const struct proto_ctl_req *r,
		       const struct ctl_field *cf, bool set)
{
	const char *word = CAT(r, cf->f.off, char);
	char list[80] = "";
	int rc;

	if (!set && conf_unset(r, cf))
		return 0;
	rc = proto_check_value(c, r, &cf->f);
	if (rc || !cf->words)
		return rc;
	for (int i = 0; cf->words[i]; i++) {
		if (!strcmp(word, cf->words[i]))
			return 0;
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
			 "%s%s", i ? ", " : "", cf->words[i]);
	}
	return proto_fail(c, "\"%s\" is not one of %s", word, list);
}

/* Every field the command requires came. */
static int check_need(struct proto_ctx *c, const struct proto_ctl_req *r)
{
	for (int j = 0; j < PROTO_CTL_NFIELDS; j++)
		if ((fields[j].need & CMD(r->cmd)) && !PROTO_CTL_HAS(r, j))
			return proto_fail(c, "missing field \"%s\"",
					  fields[j].f.key);
	return 0;
}

/*
 * What the fields say together, with the defaults of those left out:
 * the one place for checks across fields, so that the CLI, which
 * encodes, refuses a request with the text ferryd would answer.
 */
static int check_across(struct proto_ctx *c, const struct proto_ctl_req *r)
{
	struct proto_ctl_req d = *r;

	if (r->cmd != PROTO_CTL_MIGRATE)
		return 0;
	proto_ctl_defaults(&d);
	/* a post-copy page is never re-sent: nothing to verify or delta */
	if (strcmp(d.mode, "precopy") && (d.verify || !strcmp(d.compress, "delt"
									  "a")))
		return proto_fail(c,
				  "verify and compress \"delta\" are for mode "
				  "\"precopy\", not \"%s\"",
				  d.mode);
	return 0;
}

/* The field's value, then its check. */
static int rd_value(struct proto_ctx *c, struct proto_ctl_req *r,
		    const struct ctl_field *cf)
{
	int rc = proto_rd_value(c, r, &cf->f);

	return rc ? rc : check_value(c, r, cf, false);
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
	return rc ? rc : check_need(c, r);
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
	if (!rc)
		rc = check_across(&c, out);
	if (rc) {
		memset(out, 0, sizeof(*out));
		return rc;
	}
	return 0;
}

/*
 * A request to encode, as the decoder would find it: its command, each
 * field that is set (one of the command's, its value), the required
 * ones, the fields together. c's path is the command's name.
 */
static int check_req(struct proto_ctx *c, const struct proto_ctl_req *r)
{
	const struct ctl_field *cf;
	size_t old;
	int rc;

	if (r->has >> PROTO_CTL_NFIELDS)
		return proto_fail(c, "fields %#x: no such field", r->has);
	for (int j = 0; j < PROTO_CTL_NFIELDS; j++) {
		cf = &fields[j];
		if (!PROTO_CTL_HAS(r, j))
			continue;
		if (!(cf->cmds & CMD(r->cmd)))
			return proto_fail(c, "field \"%s\" is not one of %s's",
					  cf->f.key, cmd_names[r->cmd]);
		old = proto_path_push(c, ".%s", cf->f.key);
		rc = check_value(c, r, cf, false);
		proto_path_pop(c, old);
		if (rc)
			return rc;
	}
	rc = check_need(c, r);
	return rc ? rc : check_across(c, r);
}

static int pk_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

/* "cmd", then the fields set; r was checked. Returns 0 or -ENOMEM. */
static int pack(msgpack_packer *pk, const struct proto_ctl_req *r)
{
	const struct proto_field *f;
	int rc, j, n = 1;

	for (j = 0; j < PROTO_CTL_NFIELDS; j++)
		n += PROTO_CTL_HAS(r, j);
	rc = msgpack_pack_map(pk, n) | pk_str(pk, "cmd") |
	     pk_str(pk, cmd_names[r->cmd]);
	for (j = 0; j < PROTO_CTL_NFIELDS; j++) {
		if (!PROTO_CTL_HAS(r, j))
			continue;
		f = &fields[j].f;
		rc |= pk_str(pk, f->key);
		if (f->kind == PK_STR)
			rc |= pk_str(pk, CAT(r, f->off, char));
		else if (f->kind == PK_BOOL)
			rc |= *CAT(r, f->off, bool) ? msgpack_pack_true(pk)
						    : msgpack_pack_false(pk);
		else if (f->kind == PK_U64)
			rc |= msgpack_pack_uint64(pk,
						  *CAT(r, f->off, uint64_t));
		else
			rc |= msgpack_pack_uint32(pk,
						  *CAT(r, f->off, uint32_t));
	}
	return rc ? -ENOMEM : 0;
}

int proto_ctl_encode(const struct proto_ctl_req *r, void **buf, size_t *len,
		     char *err, size_t errlen)
{
	struct proto_ctx c = { .err = err, .errlen = errlen };
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (r->cmd < PROTO_CTL_STATUS || r->cmd > PROTO_CTL_CMD_LAST) {
		proto_path_push(&c, "request");
		proto_fail(&c, "unknown command %d", r->cmd);
		return -EINVAL;
	}
	proto_path_push(&c, "%s", cmd_names[r->cmd]);
	if (check_req(&c, r))
		return -EINVAL;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	rc = pack(&pk, r);
	if (rc) {
		snprintf(err, err ? errlen : 0, "%s: out of memory",
			 cmd_names[r->cmd]);
		msgpack_sbuffer_destroy(&sb);
		return rc;
	}
	*len = sb.size;
	*buf = msgpack_sbuffer_release(&sb);
	return 0;
}

/* Field f of r's command, c's path at it; NULL (c failed) if none. */
static const struct ctl_field *set_field(struct proto_ctx *c,
					 const struct proto_ctl_req *r,
					 enum proto_ctl_field f)
{
	if (r->cmd < PROTO_CTL_STATUS || r->cmd > PROTO_CTL_CMD_LAST || f < 0 ||
	    f >= PROTO_CTL_NFIELDS) {
		proto_path_push(c, "request");
		proto_fail(c, "no field %d of command %d", f, r->cmd);
		return NULL;
	}
	proto_path_push(c, "%s", cmd_names[r->cmd]);
	if (!(fields[f].cmds & CMD(r->cmd))) {
		proto_fail(c, "field \"%s\" is not one of %s's",
			   fields[f].f.key, cmd_names[r->cmd]);
		return NULL;
	}
	proto_path_push(c, ".%s", fields[f].f.key);
	return &fields[f];
}

/* t is r with field f set: checked, it becomes r. */
static int set_commit(struct proto_ctx *c, struct proto_ctl_req *r,
		      struct proto_ctl_req *t, const struct ctl_field *cf,
		      enum proto_ctl_field f)
{
	if (check_value(c, t, cf, true))
		return -EINVAL;
	t->has |= 1u << f;
	*r = *t;
	return 0;
}

int proto_ctl_set_uint(struct proto_ctl_req *r, enum proto_ctl_field f,
		       uint64_t v, char *err, size_t errlen)
{
	struct proto_ctx c = { .err = err, .errlen = errlen };
	const struct ctl_field *cf = set_field(&c, r, f);
	struct proto_ctl_req t = *r;
	unsigned long long ull = v;

	if (!cf)
		return -EINVAL;
	if (cf->f.kind == PK_BOOL && v <= 1) {
		*AT(&t, cf->f.off, bool) = v;
	} else if (cf->f.kind == PK_U64) {
		*AT(&t, cf->f.off, uint64_t) = v;
	} else if (cf->f.kind == PK_U32 && v <= UINT32_MAX) {
		*AT(&t, cf->f.off, uint32_t) = v;
	} else {
		if (cf->f.kind == PK_U32)
			proto_fail(&c, "%llu does not fit in 32 bits", ull);
		else
			proto_fail(&c, "%llu is not a value of this field",
				   ull);
		return -EINVAL;
	}
	return set_commit(&c, r, &t, cf, f);
}

int proto_ctl_set_str(struct proto_ctl_req *r, enum proto_ctl_field f,
		      const char *s, char *err, size_t errlen)
{
	struct proto_ctx c = { .err = err, .errlen = errlen };
	const struct ctl_field *cf = set_field(&c, r, f);
	struct proto_ctl_req t = *r;
	size_t n = strlen(s);

	if (!cf)
		return -EINVAL;
	if (cf->f.kind != PK_STR) {
		proto_fail(&c, "\"%s\" is not a value of this field", s);
		return -EINVAL;
	}
	if (n > cf->f.max) {
		proto_fail(&c, "string of %zu bytes, at most %llu", n,
			   (unsigned long long)cf->f.max);
		return -EINVAL;
	}
	memcpy(AT(&t, cf->f.off, char), s, n + 1);
	return set_commit(&c, r, &t, cf, f);
}

void proto_ctl_defaults(struct proto_ctl_req *r)
{
	const struct ctl_field *cf;

	for (int j = 0; j < PROTO_CTL_NFIELDS; j++) {
		cf = &fields[j];
		if (PROTO_CTL_HAS(r, j) || !(cf->cmds & CMD(r->cmd)) ||
		    (cf->need & CMD(r->cmd)) || cf->conf)
			continue;
		if (cf->f.kind == PK_STR)
			snprintf(AT(r, cf->f.off, char), cf->f.max + 1, "%s",
				 cf->dword ? cf->dword : "");
		else if (cf->f.kind == PK_BOOL)
			*AT(r, cf->f.off, bool) = cf->dflt;
		else if (cf->f.kind == PK_U64)
			*AT(r, cf->f.off, uint64_t) = cf->dflt;
		else
			*AT(r, cf->f.off, uint32_t) = cf->dflt;
	}
	/* auto-converge raises the limit up to max_downtime_ms */
	if (r->cmd == PROTO_CTL_MIGRATE &&
	    r->max_downtime_ms < r->downtime_limit_ms)
		r->max_downtime_ms = r->downtime_limit_ms;
}

const char *proto_ctl_default(enum proto_ctl_field f, char *buf, size_t len)
{
	const struct ctl_field *cf;

	if (f < 0 || f >= PROTO_CTL_NFIELDS)
		return NULL;
	cf = &fields[f];
	if (cf->conf || cf->need)
		return NULL;
	if (cf->f.kind == PK_STR)
		snprintf(buf, len, "%s", cf->dword ? cf->dword : "");
	else if (cf->f.kind == PK_BOOL)
		snprintf(buf, len, "%s", cf->dflt ? "true" : "false");
	else
		snprintf(buf, len, "%llu", (unsigned long long)cf->dflt);
	return buf;
}
