// SPDX-License-Identifier: MIT
/*
 * A msgpack -> JSON printer, so that `ferry --json` prints exactly the
 * reply ferryd sent: one set of fields feeds both the JSON and the human
 * rendering.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

#define JSON_DEPTH_MAX 32

/* Write s (len bytes) as a JSON string literal with escapes. */
static void json_string(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];

		switch (c) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\b':
			fputs("\\b", f);
			break;
		case '\f':
			fputs("\\f", f);
			break;
		default:
			/*
			 * Control characters must be escaped; DEL and bytes
			 * >= 0x80 pass through (UTF-8 is valid JSON).
			 */
			if (c < 0x20)
				fprintf(f, "\\u%04x", c);
			else
				fputc(c, f);
		}
	}
	fputc('"', f);
}

static int write_obj(FILE *f, const msgpack_object *o, int depth)
{
	if (depth > JSON_DEPTH_MAX)
		return -EINVAL;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		fputs("null", f);
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		fputs(o->via.boolean ? "true" : "false", f);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		fprintf(f, "%" PRIu64, o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		fprintf(f, "%" PRId64, o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		/* JSON has no NaN or infinity */
		if (isfinite(o->via.f64))
			fprintf(f, "%.15g", o->via.f64);
		else
			fputs("null", f);
		break;
	case MSGPACK_OBJECT_STR:
		json_string(f, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
	case MSGPACK_OBJECT_EXT: {
		const unsigned char *p = (const unsigned char *)o->via.bin.ptr;
		uint32_t n = o->via.bin.size;

		if (o->type == MSGPACK_OBJECT_EXT) {
			p = (const unsigned char *)o->via.ext.ptr;
			n = o->via.ext.size;
		}
		fputc('"', f);
		for (uint32_t i = 0; i < n; i++)
			fprintf(f, "%02x", p[i]);
		fputc('"', f);
		break;
	}
	case MSGPACK_OBJECT_ARRAY:
		fputc('[', f);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				fputc(',', f);
			if (write_obj(f, &o->via.array.ptr[i], depth + 1))
				return -EINVAL;
		}
		fputc(']', f);
		break;
	case MSGPACK_OBJECT_MAP:
		fputc('{', f);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];

			if (i)
				fputc(',', f);
			if (kv->key.type == MSGPACK_OBJECT_STR) {
				json_string(f, kv->key.via.str.ptr,
					    kv->key.via.str.size);
			} else {
				/* JSON keys are strings: quote the rendering */
				char *buf = NULL;
				size_t len = 0;
				FILE *m = open_memstream(&buf, &len);

				if (!m)
					return -ENOMEM;
				if (write_obj(m, &kv->key, depth + 1)) {
					fclose(m);
					free(buf);
					return -EINVAL;
				}
				fclose(m);
				json_string(f, buf, len);
				free(buf);
			}
			fputc(':', f);
			if (write_obj(f, &kv->val, depth + 1))
				return -EINVAL;
		}
		fputc('}', f);
		break;
	default:
		fputs("null", f);
	}
	return 0;
}

int cli_json_write(FILE *f, const msgpack_object *o)
{
	return write_obj(f, o, 0);
}
