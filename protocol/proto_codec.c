// SPDX-License-Identifier: MIT
/*
 * The codec: one message in, one message out, driven by the field tables
 * that proto_session.c and proto_migrate.c give for each type.
 *
 * The envelope (docs/protocol.md, "Envelope"): every message is one msgpack
 * map; the key "t" holds the type number (enum proto_type, never reused),
 * every other key is a field of that type. Every field is required (but
 * the few added since the version shipped, PF_RUNS_OPT), none
 * may appear twice, and a key the type does not define is rejected: peers
 * of one PROTO_VERSION know the same fields, and every change of a field
 * bumps the version, so an unknown key is a bug or a confused peer, and
 * ignoring it would hide a misspelled field behind a default.
 *
 * Sending, proto_encode(m):
 *   check m against its table and its cross-field rules, exactly as a
 *   decoder will (-EINVAL and one log line if it breaks one); pack the map
 *   with msgpack-c, "t" first, fields in table order.
 *
 * Receiving, proto_decode(bytes):
 *   1. refuse more than PROTO_MSG_MAX bytes;
 *   2. read the top-level map without allocating (proto_reader.c) until
 *      "t" (and for a HELLO "v") is found: keys before it must be well
 *      formed and are stepped over;
 *   3. look the type up (-EBADMSG naming the number if unknown); for a
 *      HELLO read "v" first: another version gets -EPROTONOSUPPORT before
 *      any other field is read, since fields may differ between versions;
 *   4. walk the map again filling the struct; arrays are allocated only
 *      after their count passed both the PROTO_* limit and the bytes left;
 *      the map must end exactly where the input does;
 *   5. run the same checks the encoder runs.
 * Any failure frees what was built and names the field in err.
 */
#define LOG_PREFIX "protocol: "

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "protocol/protocol_int.h"

/* Every union member starts at the same address: the field offsets' base. */
#define BODY(m) ((void *)&(m)->hello)

static const struct proto_desc *const descs[] = {
	[PROTO_HELLO] = &proto_hello_desc,
	[PROTO_PING] = &proto_ping_desc,
	[PROTO_PONG] = &proto_pong_desc,
	[PROTO_HOLDER_MAP] = &proto_holder_map_desc,
	[PROTO_MIGRATE_PREPARE] = &proto_prepare_desc,
	[PROTO_DIRTY_SET] = &proto_dirty_desc,
	[PROTO_PROGRESS] = &proto_progress_desc,
	[PROTO_STATE] = &proto_state_desc,
	[PROTO_SWITCHOVER] = &proto_switchover_desc,
	[PROTO_COMMIT] = &proto_commit_desc,
	[PROTO_ABORT] = &proto_abort_desc,
	[PROTO_RETARGET] = &proto_retarget_desc,
	[PROTO_ERROR] = &proto_error_desc,
	[PROTO_VERIFY] = &proto_verify_desc,
	[PROTO_RESUMED] = &proto_resumed_desc,
	[PROTO_DELTA_SET] = &proto_delta_desc,
	[PROTO_POSTCOPY] = &proto_postcopy_desc,
	[PROTO_PC_STATS] = &proto_pc_stats_desc,
	[PROTO_READY] = &proto_ready_desc,
	[PROTO_RESUME] = &proto_resume_desc,
	[PROTO_KEPT] = &proto_kept_desc,
};

static const struct proto_desc *desc_of(uint64_t t)
{
	return t < ARRAY_SIZE(descs) ? descs[t] : NULL;
}

const char *proto_type_name(enum proto_type t)
{
	const struct proto_desc *d = desc_of((unsigned)t);

	return d ? d->name : "?";
}

const char *const proto_mode_words[] = {
	[PROTO_MODE_PRECOPY] = "precopy",
	[PROTO_MODE_POSTCOPY] = "postcopy",
	[PROTO_MODE_HYBRID] = "hybrid",
	NULL,
};

const char *const proto_converge_words[] = {
	[PROTO_CONVERGE_DOWNTIME] = "downtime",
	[PROTO_CONVERGE_THROTTLE] = "throttle",
	[PROTO_CONVERGE_NONE] = "none",
	NULL,
};

static int word_parse(const char *const *words, const char *s)
{
	for (int i = 0; words[i]; i++)
		if (!strcmp(s, words[i]))
			return i;
	return -EINVAL;
}

int proto_mode_parse(const char *s)
{
	return word_parse(proto_mode_words, s);
}

int proto_converge_parse(const char *s)
{
	/* "off" as QEMU says it */
	return word_parse(proto_converge_words, strcmp(s, "off") ? s : "none");
}

const char *proto_mode_name(enum proto_mode m)
{
	return (unsigned)m <= PROTO_MODE_HYBRID ? proto_mode_words[m] : "?";
}

const char *proto_converge_name(enum proto_converge c)
{
	return (unsigned)c <= PROTO_CONVERGE_NONE ? proto_converge_words[c]
						  : "?";
}

/* Every message about a migration has it first: proto_msg_mig() reads it. */
_Static_assert(offsetof(struct proto_holder_map, mig) == 0 &&
		       offsetof(struct proto_migrate_prepare, mig) == 0 &&
		       offsetof(struct proto_dirty_set, mig) == 0 &&
		       offsetof(struct proto_progress, mig) == 0 &&
		       offsetof(struct proto_state, mig) == 0 &&
		       offsetof(struct proto_mig_gen, mig) == 0 &&
		       offsetof(struct proto_verify, mig) == 0 &&
		       offsetof(struct proto_delta_set, mig) == 0 &&
		       offsetof(struct proto_pc_stats, mig) == 0 &&
		       offsetof(struct proto_abort, mig) == 0 &&
		       offsetof(struct proto_retarget, mig) == 0 &&
		       offsetof(struct proto_error, mig) == 0,
	       "mig first");

enum proto_dir proto_msg_mig(const struct proto_msg *m, uint64_t *mig)
{
	const struct proto_desc *d = desc_of((unsigned)m->type);

	*mig = 0;
	if (!d || d->dir == PROTO_TO_NONE)
		return PROTO_TO_NONE;
	memcpy(mig, &m->abort, sizeof(*mig)); /* the union's first member */
	return d->dir;
}

/* ---- checks, shared by encoder and decoder ---- */

static bool alnum(uint8_t ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= 'a' && ch <= 'z');
}

bool proto_name_valid(const char *s)
{
	size_t n = strnlen(s, PROTO_NAME_MAX + 1);

	if (!n || n > PROTO_NAME_MAX || !alnum(s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!alnum(s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static bool char_ok(uint8_t ch, uint8_t cls)
{
	static const char z85[] = "0123456789abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/"
				  "*?&<>()[]{}@%$#";

	switch (cls) {
	case PC_NAME:
		return ch > 0x20 && ch < 0x7f;
	case PC_ID:
		return alnum(ch) || (ch && strchr("._-", ch));
	case PC_Z85:
		return ch && strchr(z85, ch);
	default:
		/* UTF-8 passes; control characters would forge log lines */
		return ch >= 0x20 && ch != 0x7f;
	}
}

static int check_fields(struct proto_ctx *c, const void *s,
			const struct proto_desc *d);

static int check_count(struct proto_ctx *c, const struct proto_field *f,
		       const void *s, size_t n)
{
	if (n < f->min || n > f->max)
		return proto_fail(c, "%zu elements, not in %llu..%llu", n,
				  (unsigned long long)f->min,
				  (unsigned long long)f->max);
	if (n && !*CAT(s, f->off, void *))
		return proto_fail(c, "%zu elements at NULL", n);
	return 0;
}

int proto_check_value(struct proto_ctx *c, const void *s,
		      const struct proto_field *f)
{
	const char *str;
	uint64_t v = 0;
	size_t n, i;
	int rc;

	switch (f->kind) {
	case PK_BOOL:
		return 0;
	case PK_U64:
	case PK_U32:
		v = f->kind == PK_U64 ? *CAT(s, f->off, uint64_t)
				      : *CAT(s, f->off, uint32_t);
		break;
	case PK_I32:
		if (*CAT(s, f->off, int32_t) < 0)
			return proto_fail(c, "negative: %d",
					  *CAT(s, f->off, int32_t));
		v = *CAT(s, f->off, int32_t);
		break;
	case PK_STR:
		str = CAT(s, f->off, char);
		n = strnlen(str, f->max + 1);
		if (n > f->max)
			return proto_fail(c, "longer than %llu bytes",
					  (unsigned long long)f->max);
		if (n < f->min)
			return proto_fail(c, "%zu bytes, at least %llu needed",
					  n, (unsigned long long)f->min);
		for (i = 0; i < n; i++)
			if (!char_ok(str[i], f->chars))
				return proto_fail(c,
						  "byte 0x%02x at offset %zu "
						  "not allowed",
						  (uint8_t)str[i], i);
		if (n && f->chars == PC_ID && !alnum(str[0]))
			return proto_fail(c, "does not begin with a letter or "
					     "digit");
		return 0;
	case PK_BIN:
		v = *CAT(s, f->len_off, uint32_t);
		if (v < f->min || v > f->max)
			return proto_fail(c, "%llu bytes, not in %llu..%llu",
					  (unsigned long long)v,
					  (unsigned long long)f->min,
					  (unsigned long long)f->max);
		return 0;
	case PK_BLOB:
		n = *CAT(s, f->len_off, size_t);
		if (n < f->min || n > f->max)
			return proto_fail(c, "%zu bytes, not in %llu..%llu", n,
					  (unsigned long long)f->min,
					  (unsigned long long)f->max);
		if (n && !*CAT(s, f->off, void *))
			return proto_fail(c, "%zu bytes at NULL", n);
		return 0;
	case PK_MAPS:
		n = *CAT(s, f->len_off, size_t);
		rc = check_count(c, f, s, n);
		for (i = 0; !rc && i < n; i++) {
			size_t old = proto_path_push(c, "[%zu]", i);

			rc = check_fields(
				c, *CAT(s, f->off, char *) + i * f->sub->size,
				f->sub);
			proto_path_pop(c, old);
		}
		return rc;
	case PK_RUNS:
		n = *CAT(s, f->len_off, size_t);
		rc = check_count(c, f, s, n);
		if (rc)
			return rc;
		c->runs += n;
		if (c->runs > PROTO_RUNS_MAX)
			return proto_fail(c, "more than %u runs in the message",
					  PROTO_RUNS_MAX);
		return 0;
	}
	if (v < f->min || v > f->max)
		return proto_fail(c, "%llu not in %llu..%llu",
				  (unsigned long long)v,
				  (unsigned long long)f->min,
				  (unsigned long long)f->max);
	return 0;
}

static int check_fields(struct proto_ctx *c, const void *s,
			const struct proto_desc *d)
{
	size_t i, old;
	int rc;

	for (i = 0; i < d->nfields; i++) {
		old = proto_path_push(c, ".%s", d->fields[i].key);
		rc = proto_check_value(c, s, &d->fields[i]);
		proto_path_pop(c, old);
		if (rc)
			return rc;
	}
	return d->check ? d->check(c, s) : 0;
}

/* ---- reading ---- */

static int rd_fields(struct proto_ctx *c, void *s, const struct proto_desc *d,
		     bool top);

/* Read one number of a flat run array; name its index only on failure. */
static int rd_run_number(struct proto_ctx *c, uint64_t *v, size_t i,
			 unsigned width)
{
	const uint8_t *at = c->p;
	char *err = c->err;
	size_t old;
	int rc;

	c->err = NULL;
	rc = proto_rd_uint(c, v);
	c->err = err;
	if (!rc)
		return 0;
	c->p = at;
	c->failed = false;
	old = proto_path_push(c, "[%zu]", i / width);
	rc = proto_rd_uint(c, v);
	proto_path_pop(c, old);
	return rc;
}

static int rd_array_of(struct proto_ctx *c, void *s,
		       const struct proto_field *f)
{
	size_t elsize = f->kind == PK_MAPS ? f->sub->size
					   : f->width * sizeof(uint64_t);
	uint32_t n, nel, i;
	char *arr;
	int rc;

	rc = proto_rd_array(c, &n);
	if (rc)
		return rc;
	nel = n;
	if (f->kind == PK_RUNS) {
		if (n % f->width)
			return proto_fail(c, "%u numbers, not a multiple of %u",
					  n, f->width);
		nel = n / f->width;
	}
	if (nel > f->max)
		return proto_fail(c, "%u elements, at most %llu", nel,
				  (unsigned long long)f->max);
	if (f->kind == PK_RUNS) {
		c->runs += nel;
		if (c->runs > PROTO_RUNS_MAX)
			return proto_fail(c, "more than %u runs in the message",
					  PROTO_RUNS_MAX);
	}
	arr = calloc(nel ? nel : 1, elsize);
	if (!arr)
		return -ENOMEM;
	/* the struct owns it from here: proto_msg_free() finds it */
	*AT(s, f->off, void *) = arr;
	*AT(s, f->len_off, size_t) = nel;
	if (f->kind == PK_RUNS) {
		for (i = 0, rc = 0; !rc && i < n; i++)
			rc = rd_run_number(c, (uint64_t *)arr + i, i, f->width);
		return rc;
	}
	for (i = 0, rc = 0; !rc && i < n; i++) {
		size_t old = proto_path_push(c, "[%u]", i);

		rc = rd_fields(c, arr + i * elsize, f->sub, false);
		proto_path_pop(c, old);
	}
	return rc;
}

int proto_rd_value(struct proto_ctx *c, void *s, const struct proto_field *f)
{
	const char *str;
	const uint8_t *b;
	uint32_t len;
	uint64_t v;
	void *blob;
	int rc;

	switch (f->kind) {
	case PK_BOOL:
		return proto_rd_bool(c, AT(s, f->off, bool));
	case PK_U64:
	case PK_U32:
	case PK_I32:
		rc = proto_rd_uint(c, &v);
		if (rc)
			return rc;
		if (f->kind == PK_U64)
			*AT(s, f->off, uint64_t) = v;
		else if (f->kind == PK_U32 && v <= UINT32_MAX)
			*AT(s, f->off, uint32_t) = v;
		else if (f->kind == PK_I32 && v <= INT32_MAX)
			*AT(s, f->off, int32_t) = v;
		else
			return proto_fail(c, "%llu does not fit in %d bits",
					  (unsigned long long)v,
					  f->kind == PK_U32 ? 32 : 31);
		return 0;
	case PK_STR:
		rc = proto_rd_str(c, &str, &len);
		if (rc)
			return rc;
		if (len > f->max)
			return proto_fail(c, "string of %u bytes, at most %llu",
					  len, (unsigned long long)f->max);
		if (memchr(str, 0, len))
			return proto_fail(c, "string holds a NUL byte");
		memcpy(AT(s, f->off, char), str, len);
		AT(s, f->off, char)[len] = '\0';
		return 0;
	case PK_BIN:
	case PK_BLOB:
		rc = proto_rd_bin(c, &b, &len);
		if (rc)
			return rc;
		if (len > f->max)
			return proto_fail(c, "%u bytes, at most %llu", len,
					  (unsigned long long)f->max);
		if (f->kind == PK_BIN) {
			memcpy(AT(s, f->off, uint8_t), b, len);
			*AT(s, f->len_off, uint32_t) = len;
			return 0;
		}
		blob = malloc(len ? len : 1);
		if (!blob)
			return -ENOMEM;
		memcpy(blob, b, len);
		*AT(s, f->off, void *) = blob;
		*AT(s, f->len_off, size_t) = len;
		return 0;
	default:
		return rd_array_of(c, s, f);
	}
}

const char *proto_quote(char *buf, size_t size, const char *k, uint32_t len)
{
	size_t i, n = FY_MIN((size_t)len, size - 1);

	for (i = 0; i < n; i++)
		buf[i] = k[i] > 0x20 && k[i] < 0x7f ? k[i] : '?';
	buf[n] = '\0';
	return buf;
}

static int rd_fields(struct proto_ctx *c, void *s, const struct proto_desc *d,
		     bool top)
{
	const struct proto_field *f;
	uint64_t seen = 0;
	bool seen_t = false;
	const char *key;
	uint32_t n, klen, i;
	size_t j, old;
	char q[24];
	int rc;

	rc = proto_rd_map(c, &n);
	for (i = 0; !rc && i < n; i++) {
		rc = proto_rd_str(c, &key, &klen);
		if (rc)
			break;
		if (top && klen == 1 && key[0] == 't') {
			if (seen_t)
				return proto_fail(c, "field \"t\" twice");
			seen_t = true;
			rc = proto_rd_skip(c, 1); /* read by scan() */
			continue;
		}
		for (j = 0; j < d->nfields; j++) {
			f = &d->fields[j];
			if (strlen(f->key) == klen &&
			    !memcmp(f->key, key, klen))
				break;
		}
		if (j == d->nfields)
			return proto_fail(c, "unknown field \"%s\"",
					  proto_quote(q, sizeof(q), key, klen));
		if (seen & (1ULL << j))
			return proto_fail(c, "field \"%s\" twice", f->key);
		seen |= 1ULL << j;
		old = proto_path_push(c, ".%s", f->key);
		rc = proto_rd_value(c, s, f);
		proto_path_pop(c, old);
	}
	for (j = 0; !rc && j < d->nfields; j++)
		if (!(seen & (1ULL << j)) && !d->fields[j].opt)
			rc = proto_fail(c, "missing field \"%s\"",
					d->fields[j].key);
	return rc;
}

/*
 * Read the top-level map just far enough to learn the type (and for a
 * HELLO where its version is), keeping nothing; the full walk follows.
 */
static int scan(struct proto_ctx *c, uint64_t *type, const uint8_t **vpos)
{
	bool have_t = false;
	const char *key;
	uint32_t n, klen, i;
	size_t old;
	int rc;

	rc = proto_rd_map(c, &n);
	for (i = 0; !rc && i < n; i++) {
		if (have_t && (*type != PROTO_HELLO || *vpos))
			return 0;
		rc = proto_rd_str(c, &key, &klen);
		if (rc)
			return rc;
		if (klen == 1 && key[0] == 't') {
			if (have_t)
				return proto_fail(c, "field \"t\" twice");
			have_t = true;
			old = proto_path_push(c, ".t");
			rc = proto_rd_uint(c, type);
			proto_path_pop(c, old);
			continue;
		}
		if (klen == 1 && key[0] == 'v' && !*vpos)
			*vpos = c->p;
		rc = proto_rd_skip(c, 1);
	}
	if (!rc && !have_t)
		rc = proto_fail(c, "missing field \"t\" (the type)");
	return rc;
}

int proto_decode(const void *buf, size_t len, struct proto_msg **out, char *err,
		 size_t errlen)
{
	struct proto_ctx c = { .p = buf,
			       .end = (const uint8_t *)buf + len,
			       .err = err,
			       .errlen = errlen };
	const uint8_t *start, *vpos = NULL;
	const struct proto_desc *d;
	struct proto_msg *m;
	uint64_t t = 0, v;
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!buf && len)
		return -EINVAL;
	if (!buf)
		c.p = c.end = (const uint8_t *)"";
	start = c.p;
	proto_path_push(&c, "message");
	if (len > PROTO_MSG_MAX)
		return proto_fail(&c, "%zu bytes, at most %u", len,
				  PROTO_MSG_MAX);
	rc = scan(&c, &t, &vpos);
	if (rc)
		return rc;
	d = desc_of(t);
	if (!d)
		return proto_fail(&c, "unknown message type %llu",
				  (unsigned long long)t);
	proto_path_pop(&c, 0);
	proto_path_push(&c, "%s", d->name);
	if (t == PROTO_HELLO) {
		if (!vpos)
			return proto_fail(&c, "missing field \"v\"");
		c.p = vpos;
		proto_path_push(&c, ".v");
		rc = proto_rd_uint(&c, &v);
		if (rc)
			return rc;
		if (v != PROTO_VERSION) {
			proto_fail(&c, "protocol version %llu, we speak %d",
				   (unsigned long long)v, PROTO_VERSION);
			return -EPROTONOSUPPORT;
		}
		proto_path_pop(&c, strlen(d->name));
	}

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->type = t;
	c.p = start;
	rc = rd_fields(&c, BODY(m), d, true);
	if (!rc && c.p != c.end)
		rc = proto_fail(&c, "%zu bytes after the message",
				(size_t)(c.end - c.p));
	if (!rc) {
		c.runs = 0;
		rc = check_fields(&c, BODY(m), d);
	}
	if (rc) {
		if (rc == -ENOMEM && err && errlen)
			snprintf(err, errlen, "%s: out of memory", d->name);
		proto_msg_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* ---- writing ---- */

static int pk_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

/* An optional field left out: NULL. */
static bool absent(const void *s, const struct proto_field *f)
{
	return f->opt && !*CAT(s, f->off, void *);
}

static int pk_fields(msgpack_packer *pk, const void *s,
		     const struct proto_desc *d, unsigned type)
{
	const struct proto_field *f;
	const uint64_t *u;
	size_t i, j, n;
	int rc;

	for (i = 0, n = 0; i < d->nfields; i++)
		n += absent(s, &d->fields[i]);
	rc = msgpack_pack_map(pk, d->nfields - n + (type ? 1 : 0));
	if (type)
		rc |= pk_str(pk, "t") | msgpack_pack_uint32(pk, type);
	for (i = 0; !rc && i < d->nfields; i++) {
		f = &d->fields[i];
		if (absent(s, f))
			continue;
		rc = pk_str(pk, f->key);
		switch (f->kind) {
		case PK_U64:
			rc |= msgpack_pack_uint64(pk,
						  *CAT(s, f->off, uint64_t));
			break;
		case PK_U32:
			rc |= msgpack_pack_uint32(pk,
						  *CAT(s, f->off, uint32_t));
			break;
		case PK_I32:
			rc |= msgpack_pack_uint32(pk, *CAT(s, f->off, int32_t));
			break;
		case PK_STR:
			rc |= pk_str(pk, CAT(s, f->off, char));
			break;
		case PK_BIN:
			n = *CAT(s, f->len_off, uint32_t);
			rc |= msgpack_pack_bin(pk, n) |
			      msgpack_pack_bin_body(pk, CAT(s, f->off, uint8_t),
						    n);
			break;
		case PK_BLOB:
			n = *CAT(s, f->len_off, size_t);
			rc |= msgpack_pack_bin(pk, n);
			if (n)
				rc |= msgpack_pack_bin_body(
					pk, *CAT(s, f->off, void *), n);
			break;
		case PK_RUNS:
			n = *CAT(s, f->len_off, size_t) * f->width;
			u = *CAT(s, f->off, uint64_t *);
			rc |= msgpack_pack_array(pk, n);
			for (j = 0; !rc && j < n; j++)
				rc = msgpack_pack_uint64(pk, u[j]);
			break;
		case PK_MAPS:
			n = *CAT(s, f->len_off, size_t);
			rc |= msgpack_pack_array(pk, n);
			for (j = 0; !rc && j < n; j++)
				rc = pk_fields(pk,
					       *CAT(s, f->off, char *) +
						       j * f->sub->size,
					       f->sub, 0);
			break;
		}
	}
	return rc ? -ENOMEM : 0;
}

int proto_encode(const struct proto_msg *m, void **buf, size_t *len)
{
	char err[256] = "";
	struct proto_ctx c = { .err = err, .errlen = sizeof(err) };
	const struct proto_desc *d;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	d = desc_of((unsigned)m->type);
	if (!d) {
		pr_err("cannot encode a message of unknown type %d", m->type);
		return -EINVAL;
	}
	proto_path_push(&c, "%s", d->name);
	if (check_fields(&c, BODY(m), d)) {
		pr_err("cannot encode %s", err);
		return -EINVAL;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (pk_fields(&pk, BODY(m), d, m->type)) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	/* the limits keep every valid message far below this */
	if (sb.size > PROTO_MSG_MAX) {
		pr_err("cannot encode %s: %zu bytes, at most %u", d->name,
		       sb.size, PROTO_MSG_MAX);
		msgpack_sbuffer_destroy(&sb);
		return -EINVAL;
	}
	*len = sb.size;
	*buf = msgpack_sbuffer_release(&sb);
	return 0;
}

/* ---- freeing ---- */

static void free_fields(void *s, const struct proto_desc *d)
{
	const struct proto_field *f;
	size_t i, j, n;
	char *arr;

	for (i = 0; i < d->nfields; i++) {
		f = &d->fields[i];
		if (f->kind < PK_BLOB)
			continue;
		arr = *AT(s, f->off, char *);
		if (f->kind == PK_MAPS && arr) {
			n = *AT(s, f->len_off, size_t);
			for (j = 0; j < n; j++)
				free_fields(arr + j * f->sub->size, f->sub);
		}
		free(arr);
		*AT(s, f->off, char *) = NULL;
	}
}

static size_t size_fields(const void *s, const struct proto_desc *d)
{
	const struct proto_field *f;
	size_t i, j, n, sum = 0;
	const char *arr;

	for (i = 0; i < d->nfields; i++) {
		f = &d->fields[i];
		if (f->kind < PK_BLOB)
			continue;
		arr = *CAT(s, f->off, char *);
		n = *CAT(s, f->len_off, size_t);
		if (!arr)
			continue;
		if (f->kind == PK_BLOB)
			sum += n;
		else if (f->kind == PK_RUNS)
			sum += n * f->width * sizeof(uint64_t);
		else
			for (j = 0; j < n; j++)
				sum += f->sub->size +
				       size_fields(arr + j * f->sub->size,
						   f->sub);
	}
	return sum;
}

size_t proto_msg_size(const struct proto_msg *m)
{
	const struct proto_desc *d = desc_of((unsigned)m->type);

	return sizeof(*m) + (d ? size_fields(BODY(m), d) : 0);
}

void proto_msg_free(struct proto_msg *m)
{
	const struct proto_desc *d;

	if (!m)
		return;
	d = desc_of((unsigned)m->type);
	if (d)
		free_fields(BODY(m), d);
	free(m);
}
