// SPDX-License-Identifier: MIT
/*
 * ferryd's side of the adapter protocol (kva_server.c narrates the
 * exchange; docs/kvm-adapter.md specifies it). Each call sends one request
 * and waits for its reply or an ERROR(errno, text), which is logged and
 * returned as -errno. Replies are decoded field by field and every length,
 * index and descriptor count is checked against the request.
 *
 * Ownership: every descriptor received at ATTACH (memfds, harvest
 * bitmap, uffd) belongs to the client and is closed by kva_client_close();
 * the state memfds of GET_STATE and SET_STATE live only inside the call.
 */
#define LOG_PREFIX "kvm-adapter client: "

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

#define KVA_CLIENT_REGIONS 8
#define KVA_CLIENT_TIMEOUT_MS 30000 /* a ferry-vm that answers nothing */

struct kva_client {
	int sock;
	uint32_t seq;
	struct kva_layout layout;
	struct kva_region regions[KVA_CLIENT_REGIONS];
	int bm_fd;
	const uint64_t *bm;
	size_t bm_bytes;
	int uffd;
};

static const char *kva_req_name(uint16_t type)
{
	static const char *const names[] = {
		"?",	    "ATTACH",	 "HARVEST",   "PAUSE",
		"RESUME",   "GET_STATE", "SET_STATE", "STATUS",
		"RAM_DONE", "EXIT",	 "THROTTLE",
	};

	return type < ARRAY_SIZE(names) ? names[type] : "?";
}

/* The ERROR reply in r: log its text, return -errno. */
static int kva_client_refused(uint16_t type, struct kva_rbuf *r)
{
	char text[KVA_WIRE_TEXT_MAX + 1];
	uint32_t err = kva_get_u32(r);
	uint16_t n = kva_get_u16(r);

	if (n > KVA_WIRE_TEXT_MAX)
		n = KVA_WIRE_TEXT_MAX;
	kva_get_bytes(r, text, n);
	text[n] = 0;
	if (!kva_rbuf_done(r) || !err || err > 4095) {
		pr_err("%s: malformed ERROR reply", kva_req_name(type));
		return -EPROTO;
	}
	pr_err("ferry-vm refused %s: %s (%s)", kva_req_name(type), text,
	       strerror(err));
	return -(int)err;
}

/*
 * Send request type with payload w and descriptors sfds; wait for its
 * reply into buf and point r at the payload. The reply's descriptors are
 * in fds / *nfds, owned by the caller, when 0 is returned; on error none
 * are left open.
 */
static int kva_call(struct kva_client *c, uint16_t type,
		    const struct kva_wbuf *w, const int *sfds,
		    unsigned int snfds, uint8_t *buf, struct kva_rbuf *r,
		    int *fds, unsigned int *nfds)
{
	uint32_t seq = ++c->seq;
	struct kva_hdr h;
	const char *why;
	bool trunc;
	ssize_t n;
	int ret;

	*nfds = 0;
	ret = kva_wire_send(c->sock, type, seq, w, sfds, snfds);
	if (ret) {
		pr_err("send %s: %s", kva_req_name(type), strerror(-ret));
		return ret;
	}
	for (;;) {
		n = kva_wire_recv(c->sock, buf, fds, nfds, &trunc);
		if (n <= 0) {
			ret = n == 0	     ? -ECONNRESET
			      : n == -EAGAIN ? -ETIMEDOUT
					     : n;
			pr_err("%s: no reply from ferry-vm: %s",
			       kva_req_name(type), strerror(-ret));
			return ret;
		}
		/* the late reply to a request that timed out: skip it */
		if (trunc || kva_wire_parse(buf, n, &h, r, &why) || !h.seq ||
		    h.seq == seq || seq - h.seq > 1U << 31)
			break;
		kva_wire_close_fds(fds, nfds);
	}
	ret = -EPROTO;
	if (trunc) {
		pr_err("%s: reply too large", kva_req_name(type));
		goto err_close_fds;
	}
	if (kva_wire_parse(buf, n, &h, r, &why)) {
		pr_err("%s: bad reply: %s", kva_req_name(type), why);
		goto err_close_fds;
	}
	if (h.type == KVA_MSG_ERROR) {
		/* seq may be 0: a refusal sent before any request was read. */
		ret = kva_client_refused(type, r);
		goto err_close_fds;
	}
	if (h.version != KVA_WIRE_VERSION || h.type != (type | KVA_MSG_REPLY) ||
	    h.seq != seq) {
		pr_err("%s: reply of type %#x, seq %u, version %u does not "
		       "match",
		       kva_req_name(type), h.type, h.seq, h.version);
		goto err_close_fds;
	}
	return 0;

err_close_fds:
	kva_wire_close_fds(fds, nfds);
	return ret;
}

/* A request whose reply carries no descriptors. */
static int kva_call_nofd(struct kva_client *c, uint16_t type,
			 const struct kva_wbuf *w, const int *sfds,
			 unsigned int snfds, uint8_t *buf, struct kva_rbuf *r)
{
	int fds[KVA_WIRE_MAX_FDS];
	unsigned int nfds;
	int ret;

	ret = kva_call(c, type, w, sfds, snfds, buf, r, fds, &nfds);
	if (!ret && nfds) {
		pr_err("%s: reply carries %u unexpected descriptors",
		       kva_req_name(type), nfds);
		kva_wire_close_fds(fds, &nfds);
		ret = -EPROTO;
	}
	return ret;
}

/* Take fds[idx] (once) into *dst. */
static int kva_take_fd(int *fds, unsigned int nfds, uint32_t idx, int *dst)
{
	if (idx >= nfds || fds[idx] < 0)
		return -EPROTO;
	*dst = fds[idx];
	fds[idx] = -1;
	return 0;
}

/* Decode the ATTACH reply in r and take its descriptors. */
static int kva_client_layout_parse(struct kva_client *c, struct kva_rbuf *r,
				   int *fds, unsigned int nfds)
{
	struct kva_layout *l = &c->layout;
	uint32_t flags, nr_fds, bm_idx, uffd_idx, idx;
	uint64_t pages = 0;
	struct stat st;
	unsigned int i;

	kva_get_u16(r); /* the version: checked in the header */
	l->state = kva_get_u16(r);
	flags = kva_get_u32(r);
	l->page_size = kva_get_u32(r);
	l->nr_vcpus = kva_get_u32(r);
	l->nr_regions = kva_get_u32(r);
	nr_fds = kva_get_u32(r);
	l->pages = kva_get_u64(r);
	l->generation = kva_get_u64(r);
	kva_get_bytes(r, l->guest, sizeof(l->guest));
	l->guest[sizeof(l->guest) - 1] = 0;
	c->bm_bytes = kva_get_u64(r);
	bm_idx = kva_get_u32(r);
	uffd_idx = kva_get_u32(r);
	if (r->err || !l->nr_regions || l->nr_regions > KVA_CLIENT_REGIONS ||
	    nr_fds != nfds || l->page_size != FY_PAGE_SIZE ||
	    l->state < KVA_VM_RUNNING || l->state > KVA_VM_INCOMING ||
	    c->bm_bytes != FY_BITMAP_WORDS(l->pages) * 8)
		goto err_proto;
	l->uffd = flags & KVA_ATTACH_UFFD;
	l->uffd_minor = flags & KVA_ATTACH_UFFD_MINOR;
	l->uffd_wp = flags & KVA_ATTACH_UFFD_WP;
	l->state_set = flags & KVA_ATTACH_STATE_SET;
	l->accel = flags & KVA_ATTACH_USER ? KVA_ACCEL_USER : KVA_ACCEL_KVM;
	for (i = 0; i < l->nr_regions; i++) {
		struct kva_region *g = &c->regions[i];

		g->gpa = kva_get_u64(r);
		g->size = kva_get_u64(r);
		g->pages = kva_get_u64(r);
		g->uffd_base = kva_get_u64(r);
		idx = kva_get_u32(r);
		kva_get_u32(r); /* region flags, none yet */
		if (r->err || g->pages * FY_PAGE_SIZE != g->size ||
		    kva_take_fd(fds, nfds, idx, &g->memfd))
			goto err_proto;
		if (fstat(g->memfd, &st) || (uint64_t)st.st_size < g->size)
			goto err_proto;
		pages += g->pages;
	}
	if (!kva_rbuf_done(r) || pages != l->pages ||
	    kva_take_fd(fds, nfds, bm_idx, &c->bm_fd) ||
	    (l->uffd && kva_take_fd(fds, nfds, uffd_idx, &c->uffd)) ||
	    (!l->uffd && uffd_idx != KVA_WIRE_NO_FD))
		goto err_proto;
	l->regions = c->regions;
	return 0;

err_proto:
	pr_err("ATTACH reply malformed or inconsistent");
	return -EPROTO;
}

/* The peer of sock runs as our effective user? 0, -EPERM or -errno. */
static int kva_client_peer_ours(int sock, const char *path)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &uc, &len))
		return -errno;
	if (uc.uid == geteuid())
		return 0;
	pr_err("%s: served by pid %d of uid %u, not by our uid %u; refused",
	       path, (int)uc.pid, (unsigned)uc.uid, (unsigned)geteuid());
	return -EPERM;
}

static int kva_sock_timeout(int sock, unsigned int timeout_ms)
{
	unsigned int ms = timeout_ms ? timeout_ms : KVA_CLIENT_TIMEOUT_MS;
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = ms % 1000 * 1000 };

	return setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))
		       ? -errno
		       : 0;
}

int kva_client_set_timeout(struct kva_client *c, unsigned int timeout_ms)
{
	return kva_sock_timeout(c->sock, timeout_ms);
}

int kva_client_attach(const char *path, unsigned int timeout_ms,
		      struct kva_client **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint8_t req[8], buf[KVA_WIRE_MAX];
	struct kva_wbuf w = { .p = req, .cap = sizeof(req) };
	int fds[KVA_WIRE_MAX_FDS];
	struct kva_client *c;
	struct kva_rbuf r;
	unsigned int nfds = 0, i;
	int ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->bm_fd = c->uffd = -1;
	c->bm = MAP_FAILED;
	for (i = 0; i < KVA_CLIENT_REGIONS; i++)
		c->regions[i].memfd = -1;
	c->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		ret = -errno;
		goto err_close;
	}
	ret = kva_sock_timeout(c->sock, timeout_ms);
	if (ret)
		goto err_close;
	if (connect(c->sock, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		pr_debug("connect %s: %s", path, strerror(errno));
		goto err_close;
	}
	ret = kva_client_peer_ours(c->sock, path);
	if (ret)
		goto err_close;
	kva_put_u16(&w, KVA_WIRE_VERSION); /* lowest version spoken */
	kva_put_u16(&w, KVA_WIRE_VERSION); /* highest */
	kva_put_u32(&w, 0); /* flags */
	ret = kva_call(c, KVA_MSG_ATTACH, &w, NULL, 0, buf, &r, fds, &nfds);
	if (ret)
		goto err_close;
	ret = kva_client_layout_parse(c, &r, fds, nfds);
	/* Whatever the layout did not take is not ours to keep. */
	for (i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (ret)
		goto err_close;
	c->bm = mmap(NULL, c->bm_bytes, PROT_READ, MAP_SHARED, c->bm_fd, 0);
	if (c->bm == MAP_FAILED) {
		ret = -errno;
		pr_perror("mmap harvest bitmap");
		goto err_close;
	}
	/*
	 * A previous client may have read fault messages it never resolved;
	 * wake their vCPUs so that they fault again, to us.
	 */
	for (i = 0; c->uffd >= 0 && i < c->layout.nr_regions; i++) {
		struct uffdio_range rg = { .start = c->regions[i].uffd_base,
					   .len = c->regions[i].size };

		if (ioctl(c->uffd, UFFDIO_WAKE, &rg))
			pr_perror("UFFDIO_WAKE region %u", i);
	}
	*out = c;
	return 0;

err_close:
	kva_client_close(c);
	return ret;
}

const struct kva_layout *kva_client_layout(const struct kva_client *c)
{
	return &c->layout;
}

int kva_client_uffd(const struct kva_client *c)
{
	return c->uffd;
}

int kva_client_harvest(struct kva_client *c, const uint64_t **bm,
		       uint64_t *generation, uint64_t *dirty)
{
	uint8_t buf[KVA_WIRE_MAX];
	struct kva_rbuf r;
	uint64_t gen, n, bits;
	int ret;

	ret = kva_call_nofd(c, KVA_MSG_HARVEST, NULL, NULL, 0, buf, &r);
	if (ret)
		return ret;
	gen = kva_get_u64(&r);
	n = kva_get_u64(&r);
	bits = kva_get_u64(&r);
	if (!kva_rbuf_done(&r) || bits != c->layout.pages || n > bits) {
		pr_err("HARVEST reply malformed");
		return -EPROTO;
	}
	*bm = c->bm;
	if (generation)
		*generation = gen;
	if (dirty)
		*dirty = n;
	return 0;
}

static int kva_client_state_req(struct kva_client *c, uint16_t type)
{
	uint8_t buf[KVA_WIRE_MAX];
	struct kva_rbuf r;
	int ret;

	ret = kva_call_nofd(c, type, NULL, NULL, 0, buf, &r);
	if (ret)
		return ret;
	kva_get_u16(&r);
	if (!kva_rbuf_done(&r)) {
		pr_err("%s reply malformed", kva_req_name(type));
		return -EPROTO;
	}
	return 0;
}

int kva_client_pause(struct kva_client *c)
{
	return kva_client_state_req(c, KVA_MSG_PAUSE);
}

int kva_client_resume(struct kva_client *c)
{
	return kva_client_state_req(c, KVA_MSG_RESUME);
}

int kva_client_status(struct kva_client *c, struct kva_status *st)
{
	uint8_t buf[KVA_WIRE_MAX];
	struct kva_progress *p = &st->progress;
	struct kva_rbuf r;
	int ret;

	ret = kva_call_nofd(c, KVA_MSG_STATUS, NULL, NULL, 0, buf, &r);
	if (ret)
		return ret;
	memset(st, 0, sizeof(*st));
	st->state = kva_get_u16(&r);
	st->uffd = kva_get_u16(&r) & KVA_ATTACH_UFFD;
	kva_get_u32(&r); /* vCPUs: as at ATTACH */
	p->running = kva_get_u32(&r);
	p->halted = kva_get_u32(&r);
	p->done = kva_get_u32(&r);
	p->failed = kva_get_u32(&r);
	p->writes = kva_get_u64(&r);
	p->pass = kva_get_u64(&r);
	p->checks = kva_get_u64(&r);
	p->heartbeats = kva_get_u64(&r);
	st->generation = kva_get_u64(&r);
	/* The throttle came later: a ferry-vm without it sends none. */
	if (r.off < r.len)
		st->throttle_pct = kva_get_u32(&r);
	if (!kva_rbuf_done(&r)) {
		pr_err("STATUS reply malformed");
		return -EPROTO;
	}
	return 0;
}

int kva_client_throttle(struct kva_client *c, unsigned int pct)
{
	uint8_t buf[KVA_WIRE_MAX], out[4];
	struct kva_wbuf w = { .p = out, .cap = sizeof(out) };
	struct kva_rbuf r;
	uint32_t now;
	int ret;

	kva_put_u32(&w, pct);
	ret = kva_call_nofd(c, KVA_MSG_THROTTLE, &w, NULL, 0, buf, &r);
	if (ret)
		return ret;
	now = kva_get_u32(&r);
	if (!kva_rbuf_done(&r) || now != pct) {
		pr_err("THROTTLE reply malformed");
		return -EPROTO;
	}
	return 0;
}

int kva_client_get_state(struct kva_client *c, void **blob, size_t *len)
{
	uint8_t buf[KVA_WIRE_MAX];
	int fds[KVA_WIRE_MAX_FDS];
	unsigned int nfds;
	struct kva_rbuf r;
	struct stat st;
	uint64_t n;
	void *p = NULL;
	int ret;

	ret = kva_call(c, KVA_MSG_GET_STATE, NULL, NULL, 0, buf, &r, fds,
		       &nfds);
	if (ret)
		return ret;
	ret = -EPROTO;
	n = kva_get_u64(&r);
	if (!kva_rbuf_done(&r) || nfds != 1 || !n || n > KVA_WIRE_STATE_MAX ||
	    fstat(fds[0], &st) || (uint64_t)st.st_size != n) {
		pr_err("GET_STATE reply malformed");
		goto out_close;
	}
	p = malloc(n);
	if (!p) {
		ret = -ENOMEM;
		goto out_close;
	}
	if (pread(fds[0], p, n, 0) != (ssize_t)n) {
		pr_perror("read the state memfd");
		free(p);
		ret = -EIO;
		goto out_close;
	}
	*blob = p;
	*len = n;
	ret = 0;
out_close:
	kva_wire_close_fds(fds, &nfds);
	return ret;
}

int kva_client_set_state(struct kva_client *c, const void *blob, size_t len)
{
	uint8_t req[8], buf[KVA_WIRE_MAX];
	struct kva_wbuf w = { .p = req, .cap = sizeof(req) };
	struct kva_rbuf r;
	int fd, ret;

	fd = memfd_create("ferry-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (pwrite(fd, blob, len, 0) != (ssize_t)len ||
	    fcntl(fd, F_ADD_SEALS,
		  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)) {
		ret = errno ? -errno : -EIO;
		pr_perror("state memfd");
		goto out_close;
	}
	kva_put_u64(&w, len);
	ret = kva_call_nofd(c, KVA_MSG_SET_STATE, &w, &fd, 1, buf, &r);
	if (!ret && !kva_rbuf_done(&r))
		ret = -EPROTO;
out_close:
	close(fd);
	return ret;
}

static int kva_client_simple(struct kva_client *c, uint16_t type)
{
	uint8_t buf[KVA_WIRE_MAX];
	struct kva_rbuf r;
	int ret;

	ret = kva_call_nofd(c, type, NULL, NULL, 0, buf, &r);
	if (!ret && !kva_rbuf_done(&r)) {
		pr_err("%s reply malformed", kva_req_name(type));
		ret = -EPROTO;
	}
	return ret;
}

int kva_client_ram_done(struct kva_client *c)
{
	return kva_client_simple(c, KVA_MSG_RAM_DONE);
}

int kva_client_exit(struct kva_client *c)
{
	return kva_client_simple(c, KVA_MSG_EXIT);
}

void kva_client_close(struct kva_client *c)
{
	unsigned int i;

	if (!c)
		return;
	if (c->bm != MAP_FAILED)
		munmap((void *)c->bm, c->bm_bytes);
	if (c->bm_fd >= 0)
		close(c->bm_fd);
	if (c->uffd >= 0)
		close(c->uffd);
	for (i = 0; i < KVA_CLIENT_REGIONS; i++)
		if (c->regions[i].memfd >= 0)
			close(c->regions[i].memfd);
	if (c->sock >= 0)
		close(c->sock);
	free(c);
}
