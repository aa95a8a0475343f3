// SPDX-License-Identifier: MIT
/*
 * The adapter protocol against real ferry-vm processes (argv[1] is the
 * ferry-vm binary): attach and layout, harvests checked against the pages
 * whose contents changed, pause and resume, re-attach after a close and
 * after a killed client, a refused second client, and bad input that must
 * leave the running VM untouched. Post-copy through the uffd is in
 * test_kva_postcopy.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"
#include "kva_test.h"

/* Wait until the guest's writes pass n; the status reached, or fail. */
static struct kva_status wait_writes(struct kva_client *c, uint64_t n,
				     double seconds)
{
	uint64_t end = fy_now_ns() + (uint64_t)(seconds * 1e9);
	struct kva_status st;

	do {
		vm_status(c, &st);
		if (st.progress.writes > n)
			return st;
		usleep(5000);
	} while (fy_now_ns() < end);
	fail_msg("guest stuck at %llu writes",
		 (unsigned long long)st.progress.writes);
	return st;
}

/*
 * Layout, then rounds of: run, PAUSE, HARVEST, compare the working set
 * with its copy from the previous round. The dirty guest stores its write
 * counter into each page it writes, so a page whose contents changed was
 * written, and a harvest taken while paused must hold every such page.
 */
static void test_attach_harvest_pause(void **state)
{
	struct vmproc v;
	struct kva_client *c;
	const struct kva_layout *l;
	const struct kva_guest_params *gp;
	struct kva_status s1, s2;
	const uint64_t *bm;
	uint64_t gen, dirty, prev_gen, first, pages, changed = 0, missing = 0;
	uint64_t total_dirty = 0, k;
	unsigned int round;
	uint8_t *mem, *copy;
	struct stat st;

	(void)state;
	/* At most 40k pages/s (native guests run much faster): the rounds
	 * below, 3 to 18 ms, must cover part of the set, not all of it. */
	vm_spawn(&v, "harvest", "--mem", "64M", "--vcpus", "2", "--guest",
		 "dirty", "--workingset", "16M", "--stride", "64", "--rate",
		 "40000", NULL);
	c = vm_attach(&v);
	l = kva_client_layout(c);
	assert_int_equal(l->nr_regions, 1);
	assert_int_equal(l->page_size, 4096);
	assert_int_equal(l->nr_vcpus, 2);
	assert_int_equal(l->state, KVA_VM_RUNNING);
	assert_string_equal(l->guest, "dirty");
	assert_false(l->uffd);
	assert_int_equal(kva_client_uffd(c), -1);
	assert_int_equal(l->pages, (64ULL << 20) / 4096);
	assert_int_equal(l->regions[0].gpa, 0);
	assert_int_equal(l->regions[0].size, 64ULL << 20);
	assert_int_equal(l->regions[0].pages, l->pages);
	assert_int_equal(fstat(l->regions[0].memfd, &st), 0);
	assert_int_equal(st.st_size, 64LL << 20);

	mem = vm_map_memfd(&l->regions[0], PROT_READ);
	gp = (const void *)(mem + KVA_PARAMS_GPA);
	first = gp->data_start / 4096;
	pages = gp->workingset / 4096;
	assert_int_equal(pages, 4096);
	copy = malloc(pages * 4096);
	assert_non_null(copy);
	wait_writes(c, 0, 10);

	assert_int_equal(kva_client_pause(c), 0);
	assert_int_equal(kva_client_harvest(c, &bm, &prev_gen, &dirty), 0);
	memcpy(copy, mem + first * 4096, pages * 4096);
	for (round = 0; round < 6; round++) {
		assert_int_equal(kva_client_resume(c), 0);
		usleep(3000 + round * 3000);
		assert_int_equal(kva_client_pause(c), 0);
		/* Paused: no progress. */
		vm_status(c, &s1);
		assert_int_equal(s1.state, KVA_VM_PAUSED);
		usleep(100000);
		vm_status(c, &s2);
		assert_int_equal(s1.progress.writes, s2.progress.writes);
		assert_int_equal(kva_client_harvest(c, &bm, &gen, &dirty), 0);
		assert_int_equal(gen, prev_gen + 1);
		assert_int_equal(dirty, fy_bitmap_count(bm, l->pages));
		prev_gen = gen;
		total_dirty += dirty;
		for (k = 0; k < pages; k++) {
			uint8_t *now = mem + (first + k) * 4096;

			if (!memcmp(now, copy + k * 4096, 4096))
				continue;
			changed++;
			if (!fy_bit_test(bm, first + k))
				missing++;
			memcpy(copy + k * 4096, now, 4096);
		}
	}
	print_message("harvest: %llu pages changed in %u rounds of %llu, "
		      "%llu harvested dirty, %llu missing\n",
		      (unsigned long long)changed, round,
		      (unsigned long long)pages,
		      (unsigned long long)total_dirty,
		      (unsigned long long)missing);
	/* Rounds cover part of the working set: the bitmap must tell. */
	assert_true(changed > 200 && changed < round * pages);
	assert_int_equal(missing, 0);
	/* Paused and harvested: the next harvest is empty. */
	assert_int_equal(kva_client_harvest(c, &bm, &gen, &dirty), 0);
	assert_int_equal(dirty, 0);
	/* Resumed: progress again. */
	assert_int_equal(kva_client_resume(c), 0);
	s2 = wait_writes(c, s1.progress.writes, 10);
	assert_int_equal(s2.state, KVA_VM_RUNNING);
	assert_int_equal(s2.progress.failed, 0);
	munmap(mem, l->regions[0].size);
	free(copy);
	vm_exit(&v, c, 0);
}

/* Same memfd (inode) through both clients? */
static bool same_file(int a, int b)
{
	struct stat sa, sb;

	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void test_reattach(void **state)
{
	struct vmproc v;
	struct kva_client *c1, *c2, *c3, *busy = NULL;
	const uint64_t *bm;
	struct kva_status st;
	uint64_t g1, dirty;
	int pfd[2], keep;
	pid_t child;
	char ch;

	(void)state;
	vm_spawn(&v, "reattach", "--mem", "32M", "--guest", "dirty",
		 "--workingset", "1M", "--stride", "32", "--sleep", "100",
		 NULL);
	c1 = vm_attach(&v);
	assert_int_equal(kva_client_harvest(c1, &bm, &g1, &dirty), 0);
	/* One client at a time: a second is refused, the first goes on. */
	assert_int_equal(kva_client_attach(v.sock, 0, &busy), -EBUSY);
	assert_null(busy);
	assert_int_equal(kva_client_pause(c1), 0);
	keep = dup(kva_client_layout(c1)->regions[0].memfd);
	assert_true(keep >= 0);
	kva_client_close(c1);

	/* A closed client leaves the VM as it was: paused. */
	c2 = vm_attach(&v);
	assert_int_equal(kva_client_layout(c2)->state, KVA_VM_PAUSED);
	assert_int_equal(kva_client_layout(c2)->generation, g1);
	assert_true(same_file(keep, kva_client_layout(c2)->regions[0].memfd));
	assert_int_equal(kva_client_harvest(c2, &bm, &g1, &dirty), 0);
	assert_int_equal(g1, 2);
	assert_int_equal(kva_client_resume(c2), 0);
	kva_client_close(c2);

	/* A client killed while attached. */
	assert_int_equal(pipe(pfd), 0);
	child = fork();
	assert_true(child >= 0);
	if (!child) {
		struct kva_client *c;

		if (kva_client_attach(v.sock, 0, &c) ||
		    write(pfd[1], "a", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	assert_int_equal(read(pfd[0], &ch, 1), 1);
	close(pfd[0]);
	close(pfd[1]);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	c3 = vm_attach(&v);
	assert_int_equal(kva_client_layout(c3)->state, KVA_VM_RUNNING);
	assert_true(same_file(keep, kva_client_layout(c3)->regions[0].memfd));
	vm_status(c3, &st);
	st = wait_writes(c3, st.progress.writes, 10);
	assert_int_equal(st.progress.failed, 0);
	assert_int_equal(st.generation, 2);
	close(keep);
	vm_exit(&v, c3, 0);
}

/* A raw connection, to send what the client library never would. */
static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 10 };

	assert_true(s >= 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

/* A header with every field chosen by the caller, then plen zeros. */
static size_t raw_msg(uint8_t *buf, uint32_t magic, uint16_t version,
		      uint16_t type, uint32_t len, size_t plen)
{
	struct kva_wbuf w = { .p = buf, .cap = KVA_WIRE_MAX * 2 };

	kva_put_u32(&w, magic);
	kva_put_u16(&w, version);
	kva_put_u16(&w, type);
	kva_put_u32(&w, len);
	kva_put_u32(&w, 7);
	memset(buf + w.len, 0, plen);
	return w.len + plen;
}

/*
 * Send len bytes of buf (with fd if >= 0) and read the reply: its errno
 * if an ERROR, else 0 with *type set. Descriptors received are closed.
 */
static int raw_call(int s, const uint8_t *buf, size_t len, int fd,
		    uint16_t *type)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	uint8_t rbuf[KVA_WIRE_MAX];
	int fds[KVA_WIRE_MAX_FDS];
	unsigned int nfds;
	struct kva_hdr h;
	struct kva_rbuf r;
	const char *why;
	bool trunc;
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *cm;

		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(s, &msg, 0), (ssize_t)len);
	n = kva_wire_recv(s, rbuf, fds, &nfds, &trunc);
	assert_true(n > 0);
	kva_wire_close_fds(fds, &nfds);
	assert_int_equal(kva_wire_parse(rbuf, n, &h, &r, &why), 0);
	*type = h.type;
	return h.type == KVA_MSG_ERROR ? (int)kva_get_u32(&r) : 0;
}

static int raw_req(int s, uint32_t magic, uint16_t version, uint16_t type,
		   uint32_t len, size_t plen, int fd)
{
	static uint8_t buf[KVA_WIRE_MAX * 2];
	uint16_t t;
	size_t n = raw_msg(buf, magic, version, type, len, plen);

	return raw_call(s, buf, n, fd, &t);
}

static void test_bad_input(void **state)
{
	const uint32_t M = KVA_WIRE_MAGIC;
	const uint16_t V = KVA_WIRE_VERSION;
	struct vmproc v;
	struct kva_client *c;
	struct kva_status s1, s2;
	uint8_t buf[64];
	uint16_t type;
	size_t n;
	int s, efd;

	(void)state;
	vm_spawn(&v, "bad", "--mem", "32M", "--guest", "dirty", "--workingset",
		 "1M", "--stride", "32", "--sleep", "100", NULL);
	c = vm_attach(&v);
	vm_status(c, &s1);
	kva_client_close(c);

	s = raw_connect(v.sock);
	efd = eventfd(0, EFD_CLOEXEC);
	assert_true(efd >= 0);
	/* Before ATTACH. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 0, 0, -1), ENOTCONN);
	/* Shorter than a header. */
	assert_int_equal(raw_call(s, (const uint8_t *)"FYAD!", 5, -1, &type),
			 EBADMSG);
	assert_int_equal(type, KVA_MSG_ERROR);
	/* No common version. */
	n = raw_msg(buf, M, 9, KVA_MSG_ATTACH, 8, 8);
	buf[16] = 9;
	buf[18] = 9;
	assert_int_equal(raw_call(s, buf, n, -1, &type), EPROTONOSUPPORT);
	/* ATTACH of the wrong size. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_ATTACH, 4, 4, -1), EBADMSG);
	/* A good ATTACH (versions 1..1). */
	n = raw_msg(buf, M, V, KVA_MSG_ATTACH, 8, 8);
	buf[16] = 1;
	buf[18] = 1;
	assert_int_equal(raw_call(s, buf, n, -1, &type), 0);
	assert_int_equal(type, KVA_MSG_ATTACH | KVA_MSG_REPLY);
	/* Framing: magic, length field, size. */
	assert_int_equal(raw_req(s, 0x12345678, V, KVA_MSG_HARVEST, 0, 0, -1),
			 EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 4, 0, -1), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 0, 4, -1), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 4, 4, -1), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_PAUSE, 8, 8, -1), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_SET_STATE, 4, 4, efd),
			 EBADMSG);
	/* Larger than any record. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 5000, 5000, -1),
			 EMSGSIZE);
	/* Unknown types, replies as requests, another version. */
	assert_int_equal(raw_req(s, M, V, 77, 0, 0, -1), EBADRQC);
	assert_int_equal(raw_req(s, M, V, 0, 0, 0, -1), EBADRQC);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST | KVA_MSG_REPLY, 0, 0,
				 -1),
			 EBADRQC);
	assert_int_equal(raw_req(s, M, V + 1, KVA_MSG_HARVEST, 0, 0, -1),
			 EPROTO);
	/* Missing and extra descriptors. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_SET_STATE, 8, 8, -1),
			 EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 0, 0, efd), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_EXIT, 0, 0, efd), EBADMSG);
	/* Requests the VM's state forbids. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_SET_STATE, 8, 8, efd), EBUSY);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_GET_STATE, 0, 0, -1), EBUSY);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_RAM_DONE, 0, 0, -1), EINVAL);
	/* The connection still works. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 0, 0, -1), 0);
	/* A client that sends and leaves without reading. */
	n = raw_msg(buf, M, V, KVA_MSG_STATUS, 0, 0);
	assert_int_equal(send(s, buf, n, 0), (ssize_t)n);
	close(s);
	close(efd);

	/* The VM did not notice. */
	c = vm_attach(&v);
	assert_int_equal(kva_client_layout(c)->state, KVA_VM_RUNNING);
	s2 = wait_writes(c, s1.progress.writes + 100, 10);
	assert_int_equal(s2.progress.failed, 0);
	assert_int_equal(s2.state, KVA_VM_RUNNING);
	vm_exit(&v, c, 0);
}

/* Command-line refusals and a stale socket file taken over. */
static void test_cli(void **state)
{
	struct vmproc v;
	struct kva_client *c;
	int fd;

	(void)state;
	vm_spawn(&v, "cli", "--incoming", "--restore", "/nonexistent", NULL);
	assert_int_equal(vm_wait(&v, 10), 2);
	/* A socket file nobody listens on is replaced. */
	snprintf(v.sock, sizeof(v.sock), "/tmp/ferry-kva-%d-stale.sock",
		 (int)getpid());
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		strcpy(sa.sun_path, v.sock);
		unlink(v.sock);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)),
				 0);
	}
	close(fd);
	vm_spawn(&v, "stale", "--mem", "16M", "--guest", "idle", NULL);
	c = vm_attach(&v);
	assert_string_equal(kva_client_layout(c)->guest, "idle");
	vm_exit(&v, c, 0);
	vm_kill(&v);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cli),
		cmocka_unit_test(test_attach_harvest_pause),
		cmocka_unit_test(test_reattach),
		cmocka_unit_test(test_bad_input),
	};

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s FERRY-VM [kvm|user]\n", argv[0]);
		return 2;
	}
	vm_init(argv[1], argv[2], "kva");
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
