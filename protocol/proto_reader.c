// SPDX-License-Identifier: MIT
/*
 * A strict msgpack reader: the decoding half of every message.
 *
 * Why not msgpack-c's unpacker: msgpack_unpack_next() allocates
 * n * sizeof(msgpack_object) as soon as it reads an array or map header
 * declaring n elements, before it has seen them, so a 5-byte message
 * (0xdd ff ff ff ff) asks for 96 GiB. This reader never allocates. It reads
 * one item at a time in place, and before it returns a container's count it
 * checks that the rest of the input could hold that many elements (one byte
 * each at least, two for a map entry); the codec then allocates only after
 * comparing the count with a PROTO_* limit as well. Skipping a value of
 * unknown shape recurses at most PROTO_DEPTH_MAX levels and visits each
 * byte once, so a hostile message costs time linear in its size.
 *
 * The walk over one message, as proto_decode() does it:
 *   peer sends bytes; we read a map header (fixmap, map16 or map32);
 *   for each entry we read a str key, then the value the key's field
 *   expects: an integer (any msgpack int format, never negative), a str,
 *   a bin or an array; anything else, or a truncated item, is -EBADMSG
 *   naming the field; the byte 0xc1 ("never used") is always rejected.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "protocol/protocol_int.h"

static int vfail(struct proto_ctx *c, const char *fmt, va_list ap)
{
	int n;

	if (c->failed || !c->err || !c->errlen) {
		c->failed = true;
		return -EBADMSG;
	}
	c->failed = true;
	n = snprintf(c->err, c->errlen, "%s: ", c->path);
	if (n >= 0 && (size_t)n < c->errlen)
		vsnprintf(c->err + n, c->errlen - n, fmt, ap);
	return -EBADMSG;
}

int proto_fail(struct proto_ctx *c, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(c, fmt, ap);
	va_end(ap);
	return rc;
}

int proto_fail_in(struct proto_ctx *c, const char *field, const char *fmt, ...)
{
	size_t old = proto_path_push(c, "%s", field);
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(c, fmt, ap);
	va_end(ap);
	proto_path_pop(c, old);
	return rc;
}

size_t proto_path_push(struct proto_ctx *c, const char *fmt, ...)
{
	size_t old = c->pathlen;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->path + old, sizeof(c->path) - old, fmt, ap);
	va_end(ap);
	/* a truncated path still names the start of the way there */
	if (n > 0)
		c->pathlen = FY_MIN(old + n, sizeof(c->path) - 1);
	return old;
}

void proto_path_pop(struct proto_ctx *c, size_t len)
{
	c->pathlen = len;
	c->path[len] = '\0';
}

static size_t left(const struct proto_ctx *c)
{
	return c->end - c->p;
}

/* Name of the msgpack type that byte b starts, for "got a ..." errors. */
static const char *type_of(uint8_t b)
{
	if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3))
		return "an integer";
	if ((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf)
		return "a map";
	if ((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd)
		return "an array";
	if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb))
		return "a string";
	switch (b) {
	case 0xc0:
		return "nil";
	case 0xc2:
	case 0xc3:
		return "a boolean";
	case 0xc4:
	case 0xc5:
	case 0xc6:
		return "binary";
	case 0xca:
	case 0xcb:
		return "a float";
	case 0xc1:
		return "the invalid byte 0xc1";
	default:
		return "an extension";
	}
}

/* Read an n-byte big-endian number; the caller checked the length. */
static uint64_t be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | *p++;
	return v;
}

/* Consume the header byte and n bytes after it, returning them as a number. */
static int take(struct proto_ctx *c, unsigned n, uint64_t *v)
{
	if (left(c) < 1 + (size_t)n)
		return proto_fail(c, "truncated");
	*v = be(c->p + 1, n);
	c->p += 1 + n;
	return 0;
}

static int truncated_or(struct proto_ctx *c, const char *want)
{
	if (!left(c))
		return proto_fail(c, "truncated: expected %s", want);
	return proto_fail(c, "expected %s, got %s", want, type_of(*c->p));
}

int proto_rd_uint(struct proto_ctx *c, uint64_t *v)
{
	uint8_t b;
	int64_t s;
	int rc;

	if (!left(c))
		return truncated_or(c, "an unsigned integer");
	b = *c->p;
	if (b <= 0x7f) {
		*v = b;
		c->p++;
		return 0;
	}
	if (b >= 0xcc && b <= 0xcf)
		return take(c, 1u << (b - 0xcc), v);
	if (b >= 0xd0 && b <= 0xd3) {
		/* a signed format is fine as long as the value is not negative */
		unsigned n = 1u << (b - 0xd0);

		rc = take(c, n, v);
		if (rc)
			return rc;
		switch (n) {
		case 1:
			s = (int8_t)*v;
			break;
		case 2:
			s = (int16_t)*v;
			break;
		case 4:
			s = (int32_t)*v;
			break;
		default:
			s = (int64_t)*v;
		}
		if (s < 0)
			return proto_fail(c, "negative integer %lld",
					  (long long)s);
		return 0;
	}
	if (b >= 0xe0)
		return proto_fail(c, "negative integer %d", (int8_t)b);
	return truncated_or(c, "an unsigned integer");
}

/* Read a str or bin header (fix is the fixstr base, 0 for bin) and body. */
static int rd_bytes(struct proto_ctx *c, uint8_t first8, uint8_t fix,
		    const char *want, const uint8_t **out, uint32_t *len)
{
	uint64_t n;
	uint8_t b;
	int rc;

	if (!left(c))
		return truncated_or(c, want);
	b = *c->p;
	if (fix && b >= fix && b <= fix + 31) {
		n = b - fix;
		c->p++;
	} else if (b >= first8 && b <= first8 + 2) {
		rc = take(c, 1u << (b - first8), &n);
		if (rc)
			return rc;
	} else {
		return truncated_or(c, want);
	}
	if (n > left(c))
		return proto_fail(c, "truncated: %llu bytes declared, %zu left",
				  (unsigned long long)n, left(c));
	*out = c->p;
	*len = n;
	c->p += n;
	return 0;
}

int proto_rd_str(struct proto_ctx *c, const char **s, uint32_t *len)
{
	const uint8_t *p;
	int rc;

	rc = rd_bytes(c, 0xd9, 0xa0, "a string", &p, len);
	if (!rc)
		*s = (const char *)p;
	return rc;
}

int proto_rd_bin(struct proto_ctx *c, const uint8_t **b, uint32_t *len)
{
	return rd_bytes(c, 0xc4, 0, "binary", b, len);
}

/* Container header: fix range [fix, fix + 15], then 16- and 32-bit forms. */
static int rd_container(struct proto_ctx *c, uint8_t fix, uint8_t b16,
			unsigned per, const char *want, uint32_t *out)
{
	uint64_t n;
	uint8_t b;
	int rc;

	if (!left(c))
		return truncated_or(c, want);
	b = *c->p;
	if (b >= fix && b <= fix + 15) {
		n = b - fix;
		c->p++;
	} else if (b == b16 || b == b16 + 1) {
		rc = take(c, b == b16 ? 2 : 4, &n);
		if (rc)
			return rc;
	} else {
		return truncated_or(c, want);
	}
	/* every element takes a byte at least: refuse what cannot be there */
	if (n > left(c) / per)
		return proto_fail(c,
				  "truncated: %s of %llu elements in %zu "
				  "remaining bytes",
				  want, (unsigned long long)n, left(c));
	*out = n;
	return 0;
}

int proto_rd_array(struct proto_ctx *c, uint32_t *n)
{
	return rd_container(c, 0x90, 0xdc, 1, "an array", n);
}

int proto_rd_map(struct proto_ctx *c, uint32_t *n)
{
	return rd_container(c, 0x80, 0xde, 2, "a map", n);
}

int proto_rd_bool(struct proto_ctx *c, bool *v)
{
	if (!left(c) || (*c->p != 0xc2 && *c->p != 0xc3))
		return truncated_or(c, "a boolean");
	*v = *c->p++ == 0xc3;
	return 0;
}

int proto_rd_skip(struct proto_ctx *c, unsigned depth)
{
	const uint8_t *body;
	uint32_t n, len, i;
	uint64_t v;
	uint8_t b;
	int rc;

	if (!left(c))
		return proto_fail(c, "truncated");
	b = *c->p;
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
		c->p++;
		return 0;
	}
	if ((b >= 0xcc && b <= 0xcf) || (b >= 0xd0 && b <= 0xd3))
		return take(c, 1u << ((b - 0xcc) & 3), &v);
	if (b == 0xca || b == 0xcb)
		return take(c, b == 0xca ? 4 : 8, &v);
	if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb))
		return rd_bytes(c, 0xd9, 0xa0, "a string", &body, &len);
	if (b >= 0xc4 && b <= 0xc6)
		return proto_rd_bin(c, &body, &len);
	if (b >= 0xd4 && b <= 0xd8) {
		/* fixext: a type byte and 1, 2, 4, 8 or 16 bytes */
		len = 1 + (1u << (b - 0xd4));
		if (left(c) < 1 + (size_t)len)
			return proto_fail(c, "truncated");
		c->p += 1 + len;
		return 0;
	}
	if (b >= 0xc7 && b <= 0xc9) {
		rc = take(c, 1u << (b - 0xc7), &v);
		if (rc)
			return rc;
		if (left(c) < 1 || v > left(c) - 1)
			return proto_fail(c, "truncated");
		c->p += 1 + v;
		return 0;
	}
	if (b == 0xc1)
		return proto_fail(c, "invalid byte 0xc1");
	if (depth >= PROTO_DEPTH_MAX)
		return proto_fail(c, "nested deeper than %d", PROTO_DEPTH_MAX);
	if ((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd) {
		rc = proto_rd_array(c, &n);
		for (i = 0; !rc && i < n; i++)
			rc = proto_rd_skip(c, depth + 1);
		return rc;
	}
	rc = proto_rd_map(c, &n);
	for (i = 0; !rc && i < n; i++) {
		rc = proto_rd_skip(c, depth + 1);
		if (!rc)
			rc = proto_rd_skip(c, depth + 1);
	}
	return rc;
}
