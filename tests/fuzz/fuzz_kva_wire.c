// SPDX-License-Identifier: MIT
/*
 * libFuzzer target over the adapter protocol's framing (kvm-adapter/
 * kva_wire.c): what ferry-vm reads from ferryd and ferryd from ferry-vm.
 *
 * The input is one record. kva_wire_parse() must accept it exactly when
 * it is at least the 16-byte header, carries the magic and says its own
 * length; then the payload is read field by field in the layout of its
 * type, as kva_client.c and kva_server.c read it, and every kva_get_*()
 * is compared with a plain little-endian decode: a read past the end must
 * return 0, stay failed, and never move the offset. The record, written
 * again with kva_put_*(), must give the same bytes, and sent with
 * kva_wire_send() (and a few descriptors) over a SOCK_SEQPACKET pair,
 * kva_wire_recv() must hand back the same record. The raw input, sent as
 * it is, must come back the same or flagged truncated.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvm-adapter/kva_int.h"
#include "fuzz_check.h"

/* A reader that cannot be wrong: what kva_get_*() must agree with. */
struct ref {
	const uint8_t *p;
	size_t len, off;
	bool err;
};

static uint64_t ref_get(struct ref *f, unsigned n)
{
	uint64_t v = 0;

	if (f->err || n > f->len - f->off) {
		f->err = true;
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)f->p[f->off + i] << (8 * i);
	f->off += n;
	return v;
}

/* Read one field of n bytes (1: a byte string of `bytes`) both ways. */
static uint64_t get(struct kva_rbuf *r, struct ref *f, unsigned n, size_t bytes)
{
	uint8_t got[KVA_WIRE_TEXT_MAX + 8], want[KVA_WIRE_TEXT_MAX + 8];
	uint64_t v, w;

	switch (n) {
	case 2:
		v = kva_get_u16(r);
		w = ref_get(f, 2);
		break;
	case 4:
		v = kva_get_u32(r);
		w = ref_get(f, 4);
		break;
	case 8:
		v = kva_get_u64(r);
		w = ref_get(f, 8);
		break;
	default:
		if (bytes > sizeof(got))
			bytes = sizeof(got);
		memset(got, 0xa5, sizeof(got));
		kva_get_bytes(r, got, bytes);
		memset(want, 0, sizeof(want));
		if (!f->err && bytes <= f->len - f->off) {
			memcpy(want, f->p + f->off, bytes);
			f->off += bytes;
		} else {
			f->err = true;
		}
		CHECK(!memcmp(got, want, bytes),
		      "kva_get_bytes(%zu) at %zu: other bytes", bytes, f->off);
		CHECK(got[bytes] == 0xa5 || bytes == sizeof(got),
		      "kva_get_bytes wrote past %zu bytes", bytes);
		v = w = 0;
	}
	CHECK(v == w, "kva_get of %u bytes: %#llx, not %#llx", n,
	      (unsigned long long)v, (unsigned long long)w);
	CHECK(r->err == f->err && r->off == f->off && r->off <= r->len,
	      "reader at %zu (err %d), should be at %zu (err %d) of %zu",
	      r->off, r->err, f->off, f->err, r->len);
	return v;
}

/* Fields in a row: '2', '4', '8' bytes, 'g' the 16-byte guest name. */
static void get_row(struct kva_rbuf *r, struct ref *f, const char *row)
{
	for (; *row; row++)
		get(r, f, *row == 'g' ? 1 : *row - '0', 16);
}

/* The payload's fields, in the layout kva_client.c / kva_server.c read. */
static void walk_typed(struct kva_rbuf *r, struct ref *f, uint16_t type)
{
	uint64_t n;

	switch (type) {
	case KVA_MSG_ATTACH: /* versions, flags */
		get_row(r, f, "224");
		break;
	case KVA_MSG_ATTACH | KVA_MSG_REPLY: /* the layout, then regions */
		get_row(r, f, "22444");
		n = get(r, f, 4, 0);
		get_row(r, f, "488g844");
		for (uint64_t i = 0; i < n && i < 16 && !r->err; i++)
			get_row(r, f, "888844");
		break;
	case KVA_MSG_ERROR: /* errno, text length, text */
		get(r, f, 4, 0);
		n = get(r, f, 2, 0);
		get(r, f, 1, n > KVA_WIRE_TEXT_MAX ? KVA_WIRE_TEXT_MAX : n);
		break;
	case KVA_MSG_HARVEST | KVA_MSG_REPLY:
		get_row(r, f, "888");
		break;
	case KVA_MSG_PAUSE | KVA_MSG_REPLY:
	case KVA_MSG_RESUME | KVA_MSG_REPLY:
		get_row(r, f, "2");
		break;
	case KVA_MSG_STATUS | KVA_MSG_REPLY: /* the throttle came later */
		get_row(r, f, "224444488888");
		if (r->off < r->len)
			get_row(r, f, "4");
		break;
	case KVA_MSG_GET_STATE | KVA_MSG_REPLY:
	case KVA_MSG_SET_STATE:
		get_row(r, f, "8");
		break;
	case KVA_MSG_THROTTLE:
	case KVA_MSG_THROTTLE | KVA_MSG_REPLY:
		get_row(r, f, "4");
		break;
	}
}

/* Any other sequence of reads, chosen by the payload, into the end. */
static void walk_any(struct kva_rbuf *r, struct ref *f, const uint8_t *sel,
		     size_t nsel)
{
	static const unsigned widths[] = { 2, 4, 8, 1 };

	for (size_t i = 0; i < nsel + 2 && i < 64; i++) {
		uint8_t s = i < nsel ? sel[i] : 0xff;

		get(r, f, widths[s & 3], s >> 2);
		if (r->err && i >= nsel)
			break;
	}
}

static int sv[2] = { -1, -1 }, devnull = -1;

static void setup(void)
{
	if (sv[0] >= 0)
		return;
	CHECK(!socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv),
	      "socketpair: %s", strerror(errno));
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(devnull >= 0, "/dev/null: %s", strerror(errno));
}

/* Receive one record: its length; check the descriptors, close them. */
static ssize_t recv_one(uint8_t *buf, unsigned int want_fds, bool *trunc)
{
	int fds[KVA_WIRE_MAX_FDS];
	unsigned int nfds = 99;
	ssize_t n;

	n = kva_wire_recv(sv[1], buf, fds, &nfds, trunc);
	CHECK(n >= 0, "kva_wire_recv: %s", strerror((int)-n));
	CHECK(nfds == want_fds, "%u descriptors came, %u sent", nfds, want_fds);
	for (unsigned int i = 0; i < nfds; i++)
		CHECK(fcntl(fds[i], F_GETFD) == FD_CLOEXEC,
		      "descriptor %u came without close-on-exec", i);
	kva_wire_close_fds(fds, &nfds);
	CHECK(!nfds, "kva_wire_close_fds left %u", nfds);
	return n;
}

/* Send the payload with kva_wire_send(); it must come back the same. */
static void send_back(const struct kva_hdr *h, const uint8_t *payload,
		      size_t plen)
{
	uint8_t buf[KVA_WIRE_MAX], copy[KVA_WIRE_MAX];
	struct kva_wbuf w = { .p = copy, .cap = sizeof(copy) };
	int fds[3] = { devnull, devnull, devnull };
	unsigned int nfds = h->seq % 4;
	struct kva_hdr h2;
	struct kva_rbuf r;
	const char *why;
	bool trunc;
	ssize_t n;
	int rc;

	kva_put_bytes(&w, payload, plen);
	rc = kva_wire_send(sv[0], h->type, h->seq, &w, fds, nfds);
	if (plen > KVA_WIRE_MAX - KVA_WIRE_HDR) {
		CHECK(rc == -EMSGSIZE, "a record of %zu bytes sent: %d",
		      plen + KVA_WIRE_HDR, rc);
		return;
	}
	CHECK(!rc, "kva_wire_send: %s", strerror(-rc));
	n = recv_one(buf, nfds, &trunc);
	CHECK(!trunc && n == (ssize_t)(plen + KVA_WIRE_HDR),
	      "sent %zu bytes, %zd came%s", plen + KVA_WIRE_HDR, n,
	      trunc ? " truncated" : "");
	rc = kva_wire_parse(buf, n, &h2, &r, &why);
	CHECK(!rc, "our own record does not parse: %s", why);
	CHECK(h2.type == h->type && h2.seq == h->seq && h2.len == plen &&
		      h2.version == KVA_WIRE_VERSION &&
		      !memcmp(r.p, payload, plen),
	      "the record came back changed");

	/* a writer that already failed sends nothing */
	w.err = true;
	CHECK(kva_wire_send(sv[0], h->type, h->seq, &w, NULL, 0) == -EMSGSIZE,
	      "a failed writer's record was sent");
}

/* The raw bytes as a record: the same back, or flagged truncated. */
static void raw_back(const uint8_t *data, size_t size)
{
	uint8_t buf[KVA_WIRE_MAX];
	bool trunc;
	ssize_t n;

	if (!size || size > 2 * KVA_WIRE_MAX)
		return;
	CHECK(send(sv[0], data, size, 0) == (ssize_t)size, "send: %s",
	      strerror(errno));
	n = recv_one(buf, 0, &trunc);
	if (size > KVA_WIRE_MAX)
		CHECK(trunc && n == KVA_WIRE_MAX,
		      "a %zu-byte record came as %zd bytes, truncated %d", size,
		      n, trunc);
	else
		CHECK(!trunc && n == (ssize_t)size && !memcmp(buf, data, size),
		      "a %zu-byte record came back changed", size);
}

/* A record: header fields one by one, then the payload. */
static void put_record(struct kva_wbuf *w, const struct kva_hdr *h,
		       const uint8_t *payload)
{
	kva_put_u32(w, h->magic);
	kva_put_u16(w, h->version);
	kva_put_u16(w, h->type);
	kva_put_u32(w, h->len);
	kva_put_u32(w, h->seq);
	kva_put_bytes(w, payload, h->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kva_hdr h;
	struct kva_rbuf r, r2;
	struct kva_wbuf w;
	struct ref f = { 0 };
	const char *why = NULL;
	uint8_t *again;
	bool ok, done;
	int rc;

	setup();
	raw_back(data, size);
	memset(&h, 0, sizeof(h));
	rc = kva_wire_parse(data, size, &h, &r, &why);
	f.p = data;
	f.len = size;
	ok = size >= KVA_WIRE_HDR && ref_get(&f, 4) == KVA_WIRE_MAGIC &&
	     (ref_get(&f, 4), ref_get(&f, 4) == size - KVA_WIRE_HDR);
	CHECK(!rc == ok, "parse returned %d for a record that is %s", rc,
	      ok ? "good" : "bad");
	if (rc) {
		CHECK(rc == -EBADMSG && why && why[0], "parse failed: %d, %s",
		      rc, why ? why : "no reason");
		return 0;
	}
	CHECK(r.p == data + KVA_WIRE_HDR && r.len == size - KVA_WIRE_HDR &&
		      !r.off && !r.err && h.len == r.len,
	      "parse points at the wrong payload");
	f = (struct ref){ .p = data, .len = size };
	CHECK(h.magic == ref_get(&f, 4) && h.version == ref_get(&f, 2) &&
		      h.type == ref_get(&f, 2) && h.len == ref_get(&f, 4) &&
		      h.seq == ref_get(&f, 4),
	      "header fields decoded wrong");

	/* the payload, as the peer reads it, then any way at all */
	f = (struct ref){ .p = r.p, .len = r.len };
	r2 = r;
	walk_typed(&r2, &f, h.type);
	done = !f.err && f.off == f.len;
	CHECK(kva_rbuf_done(&r2) == done, "kva_rbuf_done() says %d", !done);
	f = (struct ref){ .p = r.p, .len = r.len };
	r2 = r;
	walk_any(&r2, &f, r.p, r.len);

	/* written again: the same bytes, and not one byte more fits */
	again = malloc(size);
	CHECK(again, "out of memory");
	w = (struct kva_wbuf){ .p = again, .cap = size };
	put_record(&w, &h, r.p);
	CHECK(!w.err && w.len == size, "the record written again: %zu bytes",
	      w.len);
	CHECK(!memcmp(again, data, size), "the record written again differs");
	kva_put_bytes(&w, data, 1);
	CHECK(w.err && w.len == size, "a full writer took another byte");
	kva_put_u16(&w, 0);
	CHECK(w.err && w.len == size, "a failed writer went on");

	/* short of room: whole fields only, then nothing more */
	w = (struct kva_wbuf){ .p = again, .cap = h.seq % size };
	put_record(&w, &h, r.p);
	CHECK(w.err && w.len <= w.cap, "a writer of %zu bytes wrote %zu", w.cap,
	      w.len);
	CHECK(!memcmp(again, data, w.len), "a short writer wrote other bytes");
	CHECK(w.len == KVA_WIRE_HDR || w.len == 0 || w.len == 4 || w.len == 6 ||
		      w.len == 8 || w.len == 12,
	      "a short writer stopped inside a field, at %zu", w.len);
	free(again);

	send_back(&h, r.p, r.len);
	return 0;
}
