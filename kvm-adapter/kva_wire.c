// SPDX-License-Identifier: MIT
/*
 * Framing of the adapter protocol, shared by ferry-vm (kva_server.c) and
 * ferryd's client (kva_client.c). ferryd and ferry-vm may come from
 * different builds (ferry-vm outlives an upgraded ferryd), so nothing
 * travels as a C struct: every field is put and got one at a time,
 * little-endian, and every read is bounds-checked.
 */
#define LOG_PREFIX "kvm-adapter: "

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "kvm-adapter/kva_int.h"

static uint8_t *kva_put(struct kva_wbuf *w, size_t n)
{
	uint8_t *p;

	if (w->err || n > w->cap - w->len) {
		w->err = true;
		return NULL;
	}
	p = w->p + w->len;
	w->len += n;
	return p;
}

/* Store v little-endian in n bytes: all of them, or none if w is full. */
static void kva_put_le(struct kva_wbuf *w, uint64_t v, unsigned int n)
{
	uint8_t *p = kva_put(w, n);

	for (unsigned int i = 0; p && i < n; i++, v >>= 8)
		p[i] = v;
}

void kva_put_u16(struct kva_wbuf *w, uint16_t v)
{
	kva_put_le(w, v, 2);
}

void kva_put_u32(struct kva_wbuf *w, uint32_t v)
{
	kva_put_le(w, v, 4);
}

void kva_put_u64(struct kva_wbuf *w, uint64_t v)
{
	kva_put_le(w, v, 8);
}

void kva_put_bytes(struct kva_wbuf *w, const void *src, size_t n)
{
	uint8_t *p = kva_put(w, n);

	if (p && n)
		memcpy(p, src, n);
}

static const uint8_t *kva_get(struct kva_rbuf *r, size_t n)
{
	const uint8_t *p;

	if (r->err || n > r->len - r->off) {
		r->err = true;
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

/*
 * Read n bytes little-endian, all at once: a read past the end returns 0
 * and leaves the offset where it was, never half a number.
 */
static uint64_t kva_get_le(struct kva_rbuf *r, unsigned int n)
{
	const uint8_t *p = kva_get(r, n);
	uint64_t v = 0;

	while (p && n--)
		v = v << 8 | p[n];
	return v;
}

uint16_t kva_get_u16(struct kva_rbuf *r)
{
	return kva_get_le(r, 2);
}

uint32_t kva_get_u32(struct kva_rbuf *r)
{
	return kva_get_le(r, 4);
}

uint64_t kva_get_u64(struct kva_rbuf *r)
{
	return kva_get_le(r, 8);
}

void kva_get_bytes(struct kva_rbuf *r, void *dst, size_t n)
{
	const uint8_t *p = kva_get(r, n);

	if (p && n)
		memcpy(dst, p, n);
	else if (n)
		memset(dst, 0, n);
}

int kva_wire_send(int sock, uint16_t type, uint32_t seq,
		  const struct kva_wbuf *w, const int *fds, unsigned int nfds)
{
	uint8_t buf[KVA_WIRE_MAX];
	union {
		char buf[CMSG_SPACE(KVA_WIRE_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct kva_wbuf h = { .p = buf, .cap = sizeof(buf) };
	struct iovec iov;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	size_t plen = w ? w->len : 0;

	if ((w && w->err) || plen > KVA_WIRE_MAX - KVA_WIRE_HDR ||
	    nfds > KVA_WIRE_MAX_FDS)
		return -EMSGSIZE;
	kva_put_u32(&h, KVA_WIRE_MAGIC);
	kva_put_u16(&h, KVA_WIRE_VERSION);
	kva_put_u16(&h, type);
	kva_put_u32(&h, plen);
	kva_put_u32(&h, seq);
	if (plen)
		kva_put_bytes(&h, w->p, plen);
	iov.iov_base = buf;
	iov.iov_len = h.len;
	if (nfds) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != (ssize_t)h.len)
		return errno ? -errno : -EIO;
	return 0;
}

ssize_t kva_wire_recv(int sock, uint8_t *buf, int *fds, unsigned int *nfds,
		      bool *trunc)
{
	union {
		char buf[CMSG_SPACE(KVA_WIRE_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = KVA_WIRE_MAX };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *cm;
	ssize_t n;
	size_t k, j;

	*nfds = 0;
	n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		/* The control buffer holds KVA_WIRE_MAX_FDS at most. */
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (j = 0; j < k && *nfds < KVA_WIRE_MAX_FDS; j++)
			memcpy(&fds[(*nfds)++], CMSG_DATA(cm) + j * sizeof(int),
			       sizeof(int));
	}
	*trunc = msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC);
	return n;
}

int kva_wire_parse(const uint8_t *buf, size_t len, struct kva_hdr *h,
		   struct kva_rbuf *r, const char **why)
{
	struct kva_rbuf hr = { .p = buf, .len = len };

	if (len < KVA_WIRE_HDR) {
		*why = "record shorter than the 16-byte header";
		return -EBADMSG;
	}
	h->magic = kva_get_u32(&hr);
	h->version = kva_get_u16(&hr);
	h->type = kva_get_u16(&hr);
	h->len = kva_get_u32(&hr);
	h->seq = kva_get_u32(&hr);
	if (h->magic != KVA_WIRE_MAGIC) {
		*why = "bad magic: not a ferry adapter message";
		return -EBADMSG;
	}
	if (h->len != len - KVA_WIRE_HDR) {
		*why = "header length differs from the record's size";
		return -EBADMSG;
	}
	*r = (struct kva_rbuf){ .p = buf + KVA_WIRE_HDR, .len = h->len };
	return 0;
}

void kva_wire_close_fds(int *fds, unsigned int *nfds)
{
	unsigned int i;

	for (i = 0; i < *nfds; i++)
		close(fds[i]);
	*nfds = 0;
}
