// SPDX-License-Identifier: MIT
/*
 * ferry-vm's side of the adapter protocol (docs/kvm-adapter.md).
 *
 * ferry-vm listens on a unix SOCK_SEQPACKET socket; ferryd connects, so a
 * restarted ferryd finds the VM where it left it. One client at a time:
 * while one is attached, a second connection gets ERROR(EBUSY) and is
 * closed, so two ferryds never pause, resume or resolve faults of one VM
 * at once. A client's end (close, crash, kill) only detaches it; the VM
 * runs on and the next client attaches to the same memfd, harvest bitmap
 * and, for an incoming VM still under userfaultfd, the same uffd.
 *
 *   client                          ferry-vm
 *   ATTACH(vmin, vmax)        ->
 *                             <-    ATTACH reply(layout) + memfd, bitmap
 *                                   memfd [, uffd]
 *   HARVEST                   ->    dirty log into the shared bitmap
 *                             <-    (generation, dirty pages, bits)
 *   PAUSE / RESUME            ->    <- (state)
 *   GET_STATE                 ->    <- (length) + sealed memfd with the blob
 *   SET_STATE(length) + memfd ->    <- ()   incoming VM, before RESUME
 *   STATUS                    ->    <- (state, vCPUs, counters)
 *   RAM_DONE                  ->    <- ()   release the uffd
 *   EXIT                      ->    <- ()   then ferry-vm ends
 *   THROTTLE(percent)         ->    <- (percent)   0 (none) to 99
 *
 * Anything refused gets ERROR(errno, text) and changes nothing: a
 * malformed record, an unknown type, missing or extra descriptors, a state
 * blob that does not check. Received descriptors are always closed.
 *
 * A throttle belongs to the client that set it: when that client detaches
 * (ferryd crashed in the middle of a migration), the vCPUs run at full
 * speed again.
 *
 * The server thread never touches guest RAM through the mapping: an
 * incoming VM's RAM faults to ferryd, which may be waiting for a reply.
 */
#define LOG_PREFIX "ferry-vm: adapter: "

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

/*
 * Connections refused while a client is attached wait here for their
 * first record, which gets the ERROR(EBUSY): closing a unix socket with
 * an unread record in it would reset the connection, and the client
 * would see ECONNRESET rather than the reason.
 */
#define KVA_SRV_PENDING 4

struct kva_server {
	struct kva_vm *vm;
	struct sockaddr_un addr;
	int lfd; /* listening socket */
	bool bound; /* addr is ours to unlink */
	int cfd; /* the attached client, or -1 */
	int pend[KVA_SRV_PENDING]; /* refused connections, or -1 */
	int wake; /* eventfd: stop the thread */
	pthread_t thread;
	bool has_thread;
	bool attached; /* cfd sent a good ATTACH */
	bool paused; /* by PAUSE, until RESUME */
	int bm_fd; /* harvest bitmap, shared with every client */
	uint64_t *bm;
	size_t bm_bytes;
	uint64_t generation; /* harvests so far */
	atomic_bool exit_req;
};

/* Log why a request is refused and tell the client; err is > 0. */
static void kva_srv_error(int fd, uint32_t seq, int err, const char *fmt, ...)
{
	char text[KVA_WIRE_TEXT_MAX];
	uint8_t buf[KVA_WIRE_TEXT_MAX + 8];
	struct kva_wbuf w = { .p = buf, .cap = sizeof(buf) };
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	n = strlen(text);
	pr_warn("refused: %s (%s)", text, strerror(err));
	kva_put_u32(&w, err);
	kva_put_u16(&w, n);
	kva_put_bytes(&w, text, n);
	kva_wire_send(fd, KVA_MSG_ERROR, seq, &w, NULL, 0);
}

static void kva_srv_reply(struct kva_server *s, uint16_t type, uint32_t seq,
			  const struct kva_wbuf *w, const int *fds,
			  unsigned int nfds)
{
	int r = kva_wire_send(s->cfd, type | KVA_MSG_REPLY, seq, w, fds, nfds);

	if (r)
		pr_warn("reply to request %u: %s", type, strerror(-r));
}

static uint16_t kva_srv_state(struct kva_server *s)
{
	if (s->vm->incoming && !s->vm->started)
		return KVA_VM_INCOMING;
	return s->paused ? KVA_VM_PAUSED : KVA_VM_RUNNING;
}

static void kva_srv_attach(struct kva_server *s, const struct kva_hdr *h,
			   struct kva_rbuf *r)
{
	struct kva_vm *vm = s->vm;
	uint16_t vmin = kva_get_u16(r), vmax = kva_get_u16(r);
	uint32_t flags = kva_get_u32(r), aflags = 0;
	uint8_t buf[256];
	struct kva_wbuf w = { .p = buf, .cap = sizeof(buf) };
	char guest[16] = { 0 };
	int fds[3] = { vm->memfd, s->bm_fd, vm->uffd };
	unsigned int nfds = vm->uffd >= 0 ? 3 : 2;

	if (!kva_rbuf_done(r))
		return kva_srv_error(s->cfd, h->seq, EBADMSG,
				     "ATTACH carries 8 bytes, not %u", h->len);
	if (vmin > KVA_WIRE_VERSION || vmax < KVA_WIRE_VERSION)
		return kva_srv_error(s->cfd, h->seq, EPROTONOSUPPORT,
				     "client speaks protocol versions %u to "
				     "%u, this ferry-vm speaks %u",
				     vmin, vmax, KVA_WIRE_VERSION);
	if (flags)
		return kva_srv_error(s->cfd, h->seq, EINVAL,
				     "unknown ATTACH flags %#x", flags);
	if (vm->uffd >= 0)
		aflags |= KVA_ATTACH_UFFD;
	if (vm->uffd >= 0 && vm->uffd_minor)
		aflags |= KVA_ATTACH_UFFD_MINOR;
	if (vm->uffd >= 0 && vm->uffd_wp)
		aflags |= KVA_ATTACH_UFFD_WP;
	if (vm->state_set)
		aflags |= KVA_ATTACH_STATE_SET;
	if (vm->ops->id == KVA_ACCEL_USER)
		aflags |= KVA_ATTACH_USER;
	snprintf(guest, sizeof(guest), "%s", vm->incoming ? "" : vm->guest);
	kva_put_u16(&w, KVA_WIRE_VERSION);
	kva_put_u16(&w, kva_srv_state(s));
	kva_put_u32(&w, aflags);
	kva_put_u32(&w, FY_PAGE_SIZE);
	kva_put_u32(&w, vm->nr_vcpus);
	kva_put_u32(&w, 1); /* regions */
	kva_put_u32(&w, nfds);
	kva_put_u64(&w, kva_vm_pages(vm));
	kva_put_u64(&w, s->generation);
	kva_put_bytes(&w, guest, sizeof(guest));
	kva_put_u64(&w, s->bm_bytes);
	kva_put_u32(&w, 1); /* bitmap: fds[1] */
	kva_put_u32(&w, vm->uffd >= 0 ? 2 : KVA_WIRE_NO_FD);
	/* The one region: all of RAM from gpa 0, fds[0]. */
	kva_put_u64(&w, 0);
	kva_put_u64(&w, vm->mem_size);
	kva_put_u64(&w, kva_vm_pages(vm));
	kva_put_u64(&w, vm->uffd >= 0 ? (uintptr_t)vm->mem : 0);
	kva_put_u32(&w, 0);
	kva_put_u32(&w, 0);
	s->attached = true;
	pr_info("client attached%s",
		vm->uffd >= 0 ? " (uffd handed over)" : "");
	kva_srv_reply(s, h->type, h->seq, &w, fds, nfds);
}

static void kva_srv_harvest(struct kva_server *s, const struct kva_hdr *h)
{
	uint64_t bits = kva_vm_pages(s->vm), dirty;
	uint8_t buf[32];
	struct kva_wbuf w = { .p = buf, .cap = sizeof(buf) };
	int ret;

	/* The bitmap holds one harvest: the client read the last one. */
	memset(s->bm, 0, s->bm_bytes);
	ret = kva_vm_harvest(s->vm, s->bm);
	if (ret)
		return kva_srv_error(s->cfd, h->seq, -ret,
				     "dirty-log harvest failed");
	dirty = fy_bitmap_count(s->bm, bits);
	s->generation++;
	kva_put_u64(&w, s->generation);
	kva_put_u64(&w, dirty);
	kva_put_u64(&w, bits);
	kva_srv_reply(s, h->type, h->seq, &w, NULL, 0);
}

static void kva_srv_pause_resume(struct kva_server *s, const struct kva_hdr *h)
{
	struct kva_vm *vm = s->vm;
	uint8_t buf[8];
	struct kva_wbuf w = { .p = buf, .cap = sizeof(buf) };
	int ret = 0;

	if (h->type == KVA_MSG_PAUSE) {
		/* An incoming VM that never ran has nothing to pause. */
		if (vm->started) {
			ret = kva_vm_pause(vm);
			s->paused = !ret;
		}
	} else {
		if (vm->incoming && !vm->started && !vm->state_set)
			return kva_srv_error(s->cfd, h->seq, ENODATA,
					     "incoming VM has no vCPU state: "
					     "SET_STATE first");
		ret = kva_vm_start(vm);
		if (!ret)
			s->paused = false;
	}
	if (ret)
		return kva_srv_error(s->cfd, h->seq, -ret, "%s failed",
				     h->type == KVA_MSG_PAUSE ? "pause"
							      : "resume");
	pr_info("%s", h->type == KVA_MSG_PAUSE ? "paused" : "resumed");
	kva_put_u16(&w, kva_srv_state(s));
	kva_srv_reply(s, h->type, h->seq, &w, NULL, 0);
}

static void kva_srv_get_state(struct kva_server *s, const struct kva_hdr *h)
{
	struct kva_vm *vm = s->vm;
	uint8_t buf[8];
	struct kva_wbuf w = { .p = buf, .cap = sizeof(buf) };
	size_t len;
	void *blob;
	int fd, ret;

	if (vm->started && !s->paused)
		return kva_srv_error(s->cfd, h->seq, EBUSY,
				     "GET_STATE needs a paused VM: PAUSE "
				     "first");
	if (vm->incoming && !vm->state_set)
		return kva_srv_error(s->cfd, h->seq, ENODATA,
				     "incoming VM has no vCPU state yet");
	ret = kva_state_save(vm, &blob, &len);
	if (ret)
		return kva_srv_error(s->cfd, h->seq, -ret,
				     "saving vCPU state failed");
	/* Sealed, so the client may trust its size and contents. */
	fd = memfd_create("ferry-vm-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || pwrite(fd, blob, len, 0) != (ssize_t)len ||
	    fcntl(fd, F_ADD_SEALS,
		  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)) {
		ret = errno ? errno : EIO;
		kva_srv_error(s->cfd, h->seq, ret,
			      "cannot put the state into a memfd");
		goto out_close;
	}
	kva_put_u64(&w, len);
	kva_srv_reply(s, h->type, h->seq, &w, &fd, 1);
out_close:
	if (fd >= 0)
		close(fd);
	free(blob);
}

static void kva_srv_set_state(struct kva_server *s, const struct kva_hdr *h,
			      struct kva_rbuf *r, int fd)
{
	struct kva_vm *vm = s->vm;
	uint64_t len = kva_get_u64(r);
	struct stat st;
	void *blob;
	int ret;

	if (!kva_rbuf_done(r))
		return kva_srv_error(s->cfd, h->seq, EBADMSG,
				     "SET_STATE carries 8 bytes, not %u",
				     h->len);
	if (!vm->incoming || vm->started)
		return kva_srv_error(s->cfd, h->seq, EBUSY,
				     "SET_STATE loads an incoming VM before "
				     "its RESUME; this VM %s",
				     vm->incoming ? "already runs"
						  : "is not incoming");
	if (!len || len > KVA_WIRE_STATE_MAX)
		return kva_srv_error(s->cfd, h->seq, EMSGSIZE,
				     "state of %llu bytes (1 to %u)",
				     (unsigned long long)len,
				     KVA_WIRE_STATE_MAX);
	if (fstat(fd, &st) || (uint64_t)st.st_size < len)
		return kva_srv_error(s->cfd, h->seq, EBADMSG,
				     "the state memfd is shorter than %llu "
				     "bytes",
				     (unsigned long long)len);
	blob = malloc(len);
	if (!blob)
		return kva_srv_error(s->cfd, h->seq, ENOMEM,
				     "no memory for the state");
	if (pread(fd, blob, len, 0) != (ssize_t)len) {
		kva_srv_error(s->cfd, h->seq, EIO,
			      "cannot read the state memfd");
		goto out_free;
	}
	/* The blob is checked whole before anything is loaded. */
	ret = kva_state_load(vm, blob, len);
	if (ret == -EPROTO)
		kva_srv_error(s->cfd, h->seq, EPROTO,
			      "state blob of another version (this ferry-vm "
			      "reads version %u)",
			      KVA_STATE_VERSION);
	else if (ret == -EBADMSG)
		kva_srv_error(s->cfd, h->seq, EBADMSG,
			      "state blob truncated or corrupted");
	else if (ret == -EINVAL)
		kva_srv_error(s->cfd, h->seq, EINVAL,
			      "state blob is for another VM shape (vCPUs or "
			      "RAM size) or accelerator (this VM runs on %s)",
			      s->vm->ops->name);
	else if (ret)
		kva_srv_error(s->cfd, h->seq, -ret, "loading the state failed");
	if (ret)
		goto out_free;
	vm->state_set = true;
	pr_info("vCPU state loaded (%llu bytes)", (unsigned long long)len);
	kva_srv_reply(s, h->type, h->seq, NULL, NULL, 0);
out_free:
	free(blob);
}

static void kva_srv_status(struct kva_server *s, const struct kva_hdr *h)
{
	struct kva_progress p;
	uint8_t buf[80];
	struct kva_wbuf w = { .p = buf, .cap = sizeof(buf) };

	kva_vm_progress(s->vm, &p);
	kva_put_u16(&w, kva_srv_state(s));
	kva_put_u16(&w, s->vm->uffd >= 0 ? KVA_ATTACH_UFFD : 0);
	kva_put_u32(&w, s->vm->nr_vcpus);
	kva_put_u32(&w, p.running);
	kva_put_u32(&w, p.halted);
	kva_put_u32(&w, p.done);
	kva_put_u32(&w, p.failed);
	kva_put_u64(&w, p.writes);
	kva_put_u64(&w, p.pass);
	kva_put_u64(&w, p.checks);
	kva_put_u64(&w, p.heartbeats);
	kva_put_u64(&w, s->generation);
	kva_put_u32(&w, kva_vm_throttle(s->vm));
	kva_srv_reply(s, h->type, h->seq, &w, NULL, 0);
}

static void kva_srv_throttle(struct kva_server *s, const struct kva_hdr *h,
			     struct kva_rbuf *r)
{
	uint32_t pct = kva_get_u32(r);
	uint8_t buf[8];
	struct kva_wbuf w = { .p = buf, .cap = sizeof(buf) };
	int ret;

	if (!kva_rbuf_done(r))
		return kva_srv_error(s->cfd, h->seq, EBADMSG,
				     "THROTTLE carries 4 bytes, not %u",
				     h->len);
	if (pct > 99)
		return kva_srv_error(s->cfd, h->seq, EINVAL,
				     "throttle of %u%%: 0 (none) to 99", pct);
	ret = kva_vm_set_throttle(s->vm, pct);
	if (ret)
		return kva_srv_error(s->cfd, h->seq, -ret,
				     "cannot throttle the vCPUs");
	kva_put_u32(&w, kva_vm_throttle(s->vm));
	kva_srv_reply(s, h->type, h->seq, &w, NULL, 0);
}

/* Expected descriptors per request type. */
static unsigned int kva_srv_nfds(uint16_t type)
{
	return type == KVA_MSG_SET_STATE ? 1 : 0;
}

static const char *const kva_msg_names[KVA_MSG_MAX] = {
	[KVA_MSG_ATTACH] = "ATTACH",	   [KVA_MSG_HARVEST] = "HARVEST",
	[KVA_MSG_PAUSE] = "PAUSE",	   [KVA_MSG_RESUME] = "RESUME",
	[KVA_MSG_GET_STATE] = "GET_STATE", [KVA_MSG_SET_STATE] = "SET_STATE",
	[KVA_MSG_STATUS] = "STATUS",	   [KVA_MSG_RAM_DONE] = "RAM_DONE",
	[KVA_MSG_EXIT] = "EXIT",	   [KVA_MSG_THROTTLE] = "THROTTLE",
};

/* Check one received record and carry it out. */
static void kva_srv_handle(struct kva_server *s, const uint8_t *buf, size_t n,
			   int *fds, unsigned int *nfds, bool trunc)
{
	struct kva_hdr h = { 0 };
	struct kva_rbuf r;
	const char *why;

	if (trunc)
		return kva_srv_error(s->cfd, 0, EMSGSIZE,
				     "record over %d bytes or over %d "
				     "descriptors",
				     KVA_WIRE_MAX, KVA_WIRE_MAX_FDS);
	if (kva_wire_parse(buf, n, &h, &r, &why))
		return kva_srv_error(s->cfd, h.seq, EBADMSG, "%s", why);
	if (!h.type || h.type >= KVA_MSG_MAX)
		return kva_srv_error(s->cfd, h.seq, EBADRQC,
				     "unknown message type %u", h.type);
	/* ATTACH's layout is the same in every version: it negotiates. */
	if (h.type != KVA_MSG_ATTACH && h.version != KVA_WIRE_VERSION)
		return kva_srv_error(s->cfd, h.seq, EPROTO,
				     "message of protocol version %u, this "
				     "ferry-vm speaks %u",
				     h.version, KVA_WIRE_VERSION);
	if (*nfds != kva_srv_nfds(h.type))
		return kva_srv_error(s->cfd, h.seq, EBADMSG,
				     "%s takes %u descriptors, got %u",
				     kva_msg_names[h.type],
				     kva_srv_nfds(h.type), *nfds);
	if (h.type != KVA_MSG_ATTACH && !s->attached)
		return kva_srv_error(s->cfd, h.seq, ENOTCONN,
				     "%s before ATTACH", kva_msg_names[h.type]);
	if (h.type != KVA_MSG_ATTACH && h.type != KVA_MSG_SET_STATE &&
	    h.type != KVA_MSG_THROTTLE && h.len)
		return kva_srv_error(s->cfd, h.seq, EBADMSG,
				     "%s carries no payload, not %u bytes",
				     kva_msg_names[h.type], h.len);
	pr_debug("%s (seq %u)", kva_msg_names[h.type], h.seq);
	switch (h.type) {
	case KVA_MSG_ATTACH:
		return kva_srv_attach(s, &h, &r);
	case KVA_MSG_HARVEST:
		return kva_srv_harvest(s, &h);
	case KVA_MSG_PAUSE:
	case KVA_MSG_RESUME:
		return kva_srv_pause_resume(s, &h);
	case KVA_MSG_GET_STATE:
		return kva_srv_get_state(s, &h);
	case KVA_MSG_SET_STATE:
		return kva_srv_set_state(s, &h, &r, fds[0]);
	case KVA_MSG_STATUS:
		return kva_srv_status(s, &h);
	case KVA_MSG_RAM_DONE:
		if (s->vm->ops->uffd_release(s->vm))
			return kva_srv_error(s->cfd, h.seq, EINVAL,
					     "no userfaultfd to release");
		return kva_srv_reply(s, h.type, h.seq, NULL, NULL, 0);
	case KVA_MSG_EXIT:
		pr_info("EXIT asked by the client");
		kva_srv_reply(s, h.type, h.seq, NULL, NULL, 0);
		atomic_store(&s->exit_req, true);
		return;
	case KVA_MSG_THROTTLE:
		return kva_srv_throttle(s, &h, &r);
	}
}

static void kva_srv_detach(struct kva_server *s)
{
	close(s->cfd);
	s->cfd = -1;
	s->attached = false;
	pr_info("client detached; the VM goes on");
	/* Its throttle goes with it: nobody is left to lift it. */
	if (kva_vm_throttle(s->vm) && !kva_vm_set_throttle(s->vm, 0))
		pr_info("vCPU throttle of the detached client removed");
}

#define KVA_BUSY_TEXT "another client is attached to this VM"

static void kva_srv_accept(struct kva_server *s)
{
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
	unsigned int i;

	if (fd < 0) {
		pr_perror("accept");
		return;
	}
	if (s->cfd < 0) {
		s->cfd = fd;
		return;
	}
	for (i = 0; i < KVA_SRV_PENDING; i++)
		if (s->pend[i] < 0) {
			s->pend[i] = fd;
			return;
		}
	/* Too many at once: refuse without waiting for their request. */
	kva_srv_error(fd, 0, EBUSY, KVA_BUSY_TEXT);
	close(fd);
}

/* A refused connection sent its request (or left): answer, close. */
static void kva_srv_refuse(struct kva_server *s, unsigned int i)
{
	uint8_t buf[KVA_WIRE_MAX];
	int fds[KVA_WIRE_MAX_FDS];
	unsigned int nfds;
	struct kva_hdr h = { 0 };
	struct kva_rbuf r;
	const char *why;
	ssize_t n;
	bool trunc;

	n = kva_wire_recv(s->pend[i], buf, fds, &nfds, &trunc);
	kva_wire_close_fds(fds, &nfds);
	if (n > 0) {
		kva_wire_parse(buf, n, &h, &r, &why);
		kva_srv_error(s->pend[i], h.seq, EBUSY, KVA_BUSY_TEXT);
	}
	close(s->pend[i]);
	s->pend[i] = -1;
}

static void *kva_srv_thread(void *arg)
{
	struct kva_server *s = arg;
	uint8_t buf[KVA_WIRE_MAX];
	int fds[KVA_WIRE_MAX_FDS];
	unsigned int nfds;
	struct pollfd p[3 + KVA_SRV_PENDING];
	unsigned int i;
	sigset_t all;
	ssize_t n;
	bool trunc;

	/* Signals are main()'s: SIGINT and SIGTERM stop the VMM there. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		p[0] = (struct pollfd){ .fd = s->wake, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		/* poll() skips the entries whose fd is -1. */
		p[2] = (struct pollfd){ .fd = s->cfd, .events = POLLIN };
		for (i = 0; i < KVA_SRV_PENDING; i++)
			p[3 + i] = (struct pollfd){ .fd = s->pend[i],
						    .events = POLLIN };
		if (poll(p, ARRAY_SIZE(p), -1) < 0) {
			if (errno == EINTR)
				continue;
			pr_perror("poll");
			break;
		}
		if (p[0].revents)
			break;
		if (s->cfd >= 0 && p[2].revents) {
			n = kva_wire_recv(s->cfd, buf, fds, &nfds, &trunc);
			if (n > 0)
				kva_srv_handle(s, buf, n, fds, &nfds, trunc);
			else
				kva_srv_detach(s);
			/* Whatever came with a record is closed here. */
			kva_wire_close_fds(fds, &nfds);
		}
		for (i = 0; i < KVA_SRV_PENDING; i++)
			if (s->pend[i] >= 0 && p[3 + i].revents)
				kva_srv_refuse(s, i);
		if (p[1].revents & POLLIN)
			kva_srv_accept(s);
	}
	return NULL;
}

static int kva_srv_bind(struct kva_server *s)
{
	return bind(s->lfd, (struct sockaddr *)&s->addr, sizeof(s->addr))
		       ? -errno
		       : 0;
}

/* Bind path, replacing a stale socket that nobody listens on. */
static int kva_srv_listen(struct kva_server *s, const char *path)
{
	int fd, ret;

	if (strlen(path) >= sizeof(s->addr.sun_path)) {
		pr_err("socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	s->addr.sun_family = AF_UNIX;
	strcpy(s->addr.sun_path, path);
	s->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return -errno;
	ret = kva_srv_bind(s);
	if (ret == -EADDRINUSE) {
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd >= 0 && !connect(fd, (struct sockaddr *)&s->addr,
					sizeof(s->addr))) {
			close(fd);
			pr_err("%s: another ferry-vm serves there", path);
			return -EADDRINUSE;
		}
		if (fd >= 0)
			close(fd);
		unlink(path);
		ret = kva_srv_bind(s);
	}
	if (ret) {
		pr_err("bind %s: %s", path, strerror(-ret));
		return ret;
	}
	s->bound = true;
	/*
	 * Whoever can connect can pause the VM and read its memory: owner
	 * only. Nobody can connect before listen(), so this leaves no window.
	 */
	if (chmod(path, 0600)) {
		ret = -errno;
		pr_perror("chmod %s", path);
		return ret;
	}
	if (listen(s->lfd, 4)) {
		ret = -errno;
		pr_perror("listen on %s", path);
		return ret;
	}
	return 0;
}

int kva_server_open(struct kva_vm *vm, const char *path,
		    struct kva_server **out)
{
	struct kva_server *s;
	unsigned int i;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->vm = vm;
	s->lfd = s->cfd = s->bm_fd = -1;
	s->bm = MAP_FAILED;
	for (i = 0; i < KVA_SRV_PENDING; i++)
		s->pend[i] = -1;
	s->wake = eventfd(0, EFD_CLOEXEC);
	if (s->wake < 0) {
		ret = -errno;
		goto err_close;
	}
	s->bm_bytes = FY_BITMAP_WORDS(kva_vm_pages(vm)) * 8;
	s->bm_fd = memfd_create("ferry-vm-harvest", MFD_CLOEXEC);
	if (s->bm_fd < 0 || ftruncate(s->bm_fd, s->bm_bytes)) {
		ret = -errno;
		pr_perror("harvest bitmap memfd");
		goto err_close;
	}
	s->bm = mmap(NULL, s->bm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		     s->bm_fd, 0);
	if (s->bm == MAP_FAILED) {
		ret = -errno;
		pr_perror("mmap harvest bitmap");
		goto err_close;
	}
	ret = kva_srv_listen(s, path);
	if (ret)
		goto err_close;
	ret = -pthread_create(&s->thread, NULL, kva_srv_thread, s);
	if (ret)
		goto err_close;
	pthread_setname_np(s->thread, "ferry-adapter");
	s->has_thread = true;
	pr_info("serving the adapter protocol on %s", path);
	*out = s;
	return 0;

err_close:
	kva_server_close(s);
	return ret;
}

bool kva_server_exit_requested(struct kva_server *s)
{
	return atomic_load(&s->exit_req);
}

void kva_server_close(struct kva_server *s)
{
	uint64_t one = 1;
	unsigned int i;

	if (!s)
		return;
	if (s->has_thread) {
		if (write(s->wake, &one, sizeof(one)) != sizeof(one))
			pr_perror("wake the adapter thread");
		pthread_join(s->thread, NULL);
	}
	if (s->cfd >= 0)
		close(s->cfd);
	for (i = 0; i < KVA_SRV_PENDING; i++)
		if (s->pend[i] >= 0)
			close(s->pend[i]);
	if (s->lfd >= 0) {
		close(s->lfd);
		if (s->bound)
			unlink(s->addr.sun_path);
	}
	if (s->bm != MAP_FAILED)
		munmap(s->bm, s->bm_bytes);
	if (s->bm_fd >= 0)
		close(s->bm_fd);
	if (s->wake >= 0)
		close(s->wake);
	free(s);
}
