// SPDX-License-Identifier: MIT
/*
 * Delta encoding of re-sent pages (`--compress delta`), after XBZRLE
 * (Svärd et al., VEE'11): a page that changed since the destination got it
 * travels as the runs of bytes that differ, not as 4 KiB.
 *
 * A page's delta is a sequence of (skip, count, count bytes): skip bytes
 * unchanged, then count bytes of new contents, both LEB128 varints; the
 * runs are found word by word (8 bytes), so counts are multiples of 8. A
 * delta that would not save at least a sixteenth of the page is not used:
 * the page goes raw.
 *
 * A DELTA_SET buffer is a sequence of records, each 8-byte aligned:
 *   u64 page, u32 length, u32 kind (0 raw: 4096 bytes; 1 delta), data.
 * All integers little-endian.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "codec/codec.h"
#include "common/util.h"

static size_t put_varint(uint8_t *out, size_t cap, size_t pos, uint64_t v)
{
	do {
		if (pos >= cap)
			return SIZE_MAX;
		out[pos++] = (uint8_t)(v & 0x7f) | (v > 0x7f ? 0x80 : 0);
		v >>= 7;
	} while (v);
	return pos;
}

static int get_varint(const uint8_t *in, size_t len, size_t *pos, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*pos < len && shift < 64) {
		uint8_t b = in[(*pos)++];

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
		shift += 7;
	}
	return -EBADMSG;
}

size_t codec_delta_encode(const uint8_t *old, const uint8_t *new, uint8_t *out,
			  size_t cap)
{
	size_t pos = 0, w = 0, words = FY_PAGE_SIZE / 8;

	while (w < words) {
		size_t same = w, diff;
		uint64_t a, b;

		for (; w < words; w++) {
			memcpy(&a, old + w * 8, 8);
			memcpy(&b, new + w * 8, 8);
			if (a != b)
				break;
		}
		if (w == words)
			break; /* the rest is unchanged: nothing to say */
		diff = w;
		for (; w < words; w++) {
			memcpy(&a, old + w * 8, 8);
			memcpy(&b, new + w * 8, 8);
			if (a == b)
				break;
		}
		pos = put_varint(out, cap, pos, (diff - same) * 8);
		if (pos != SIZE_MAX)
			pos = put_varint(out, cap, pos, (w - diff) * 8);
		if (pos == SIZE_MAX || pos + (w - diff) * 8 > cap)
			return 0;
		memcpy(out + pos, new + diff * 8, (w - diff) * 8);
		pos += (w - diff) * 8;
	}
	return pos;
}

int codec_delta_apply(uint8_t *page, const uint8_t *d, size_t len)
{
	size_t pos = 0, at = 0;

	while (pos < len) {
		uint64_t skip, count;

		if (get_varint(d, len, &pos, &skip) ||
		    get_varint(d, len, &pos, &count) ||
		    skip > FY_PAGE_SIZE - at ||
		    count > FY_PAGE_SIZE - at - skip || count > len - pos)
			return -EBADMSG;
		at += skip;
		memcpy(page + at, d + pos, count);
		at += count;
		pos += count;
	}
	return 0;
}

size_t codec_delta_record(uint8_t *out, uint64_t page, const uint8_t *old,
			  const uint8_t *new, bool *raw)
{
	uint32_t len, kind;
	size_t n;

	/* a delta must save a sixteenth of the page to be worth it */
	n = codec_delta_encode(old, new, out + 16,
			       FY_PAGE_SIZE - FY_PAGE_SIZE / 16);
	if (!n && !memcmp(old, new, FY_PAGE_SIZE)) {
		/* dirty again but as D has it: an empty delta */
		len = 0;
		kind = 1;
	} else if (n && n < FY_PAGE_SIZE - FY_PAGE_SIZE / 16) {
		len = (uint32_t)n;
		kind = 1;
	} else {
		memcpy(out + 16, new, FY_PAGE_SIZE);
		len = FY_PAGE_SIZE;
		kind = 0;
	}
	*raw = !kind;
	memcpy(out, &page, 8);
	memcpy(out + 8, &len, 4);
	memcpy(out + 12, &kind, 4);
	return 16 + ((len + 7) & ~7u);
}

int codec_delta_apply_buf(uint8_t *map, uint64_t pages, const uint8_t *buf,
			  size_t len, uint64_t *applied)
{
	size_t pos = 0;

	*applied = 0;
	while (pos < len) {
		uint64_t page;
		uint32_t rlen, kind;
		int ret;

		if (len - pos < 16)
			return -EBADMSG;
		memcpy(&page, buf + pos, 8);
		memcpy(&rlen, buf + pos + 8, 4);
		memcpy(&kind, buf + pos + 12, 4);
		pos += 16;
		if (page >= pages || rlen > len - pos || kind > 1 ||
		    (kind == 0 && rlen != FY_PAGE_SIZE))
			return -EBADMSG;
		if (kind == 0) {
			memcpy(map + page * FY_PAGE_SIZE, buf + pos,
			       FY_PAGE_SIZE);
		} else {
			ret = codec_delta_apply(map + page * FY_PAGE_SIZE,
						buf + pos, rlen);
			if (ret)
				return ret;
		}
		pos += (rlen + 7) & ~7u;
		(*applied)++;
	}
	return 0;
}
