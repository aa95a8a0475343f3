// SPDX-License-Identifier: MIT
/*
 * pc_fault handed a new holder while one of its reads is in flight, as
 * ferryd does when its source restarts (tests/integration/test_postcopy.c,
 * test_restart): the fault server resolves a thread's userfaultfd faults
 * on an anonymous mapping of this process, COPY mode, from a holder
 * process (a fork of this one) that is then stopped mid-read. The read
 * neither completes nor fails before pc_fault_set_holder() points the
 * server at a second holder and the first is killed: closing the old
 * endpoint cancels the read, and the page must be read again from the
 * new holder, not left waiting for a fault that never comes back.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "postcopy/postcopy.h"
#include "tests/postcopy/pc_holder.h"

#define PAGES 16

/* Page k of the holders' memory is filled with k + 1. */
static void fill(uint8_t *mem)
{
	for (unsigned k = 0; k < PAGES; k++)
		memset(mem + k * FY_PAGE_SIZE, k + 1, FY_PAGE_SIZE);
}

/* The holder (child): its memory, page k filled with k + 1, served. */
static int holder_main(int sock)
{
	uint8_t *mem = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (mem != MAP_FAILED)
		fill(mem);
	return holder_serve(sock, mem, PAGES * FY_PAGE_SIZE, -errno, NULL);
}

/* Fork a holder; before this process opens a fabric domain of its own. */
static void holder_start(struct holder *h)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	h->pid = fork();
	assert_true(h->pid >= 0);
	if (!h->pid) {
		close(sv[0]);
		_exit(holder_main(sv[1]));
	}
	assert_int_equal(holder_started(h, sv), 0);
}

/* A thread that touches one page of guest and waits for it. */
struct toucher {
	const volatile uint8_t *at;
	atomic_int got; /* the byte read, 0 until then */
	pthread_t thread;
};

static void *touch(void *arg)
{
	struct toucher *t = arg;

	atomic_store(&t->got, *t->at);
	return NULL;
}

static struct pc_fault_stats stats_when(struct pc_fault *fs, unsigned busy,
					uint64_t missing)
{
	uint64_t end = fy_now_ns() + 5000000000ULL;
	struct pc_fault_stats st;

	do {
		pc_fault_stats(fs, &st);
		if (st.busy == busy && st.missing == missing)
			break;
		usleep(1000);
	} while (fy_now_ns() < end);
	return st;
}

static void test_swap_inflight(void **state)
{
	struct holder h1 = { 0 }, h2 = { 0 };
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct fab_opts fo = { .op_timeout_ms = 30000 };
	struct pc_fault_params fp = { 0 };
	struct pc_fault_stats st;
	struct toucher t = { 0 };
	struct fab_domain *fdom;
	struct fab_ep *ep;
	struct pc_fault *fs;
	volatile uint8_t *guest;
	uint8_t *map;
	uint64_t end;
	int uffd;

	(void)state;
	uffd = syscall(SYS_userfaultfd,
		       O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) {
		print_message("no userfaultfd here: %s\n", strerror(errno));
		skip();
	}
	holder_start(&h1);
	holder_start(&h2);
	guest = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	map = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(guest != MAP_FAILED && map != MAP_FAILED);
	reg.range.start = (uintptr_t)guest;
	reg.range.len = PAGES * FY_PAGE_SIZE;
	assert_int_equal(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);

	/* like ferryd's fault domain: no progress thread, a long timeout */
	assert_int_equal(fab_domain_open(&fo, &fdom), 0);
	assert_int_equal(fab_ep_connect(fdom, &h1.info.addr, &ep), 0);
	fp.uffd = uffd;
	fp.uffd_base = (uintptr_t)guest;
	fp.map = map;
	fp.pages = PAGES;
	fp.dom = fdom;
	fp.ep = ep;
	fp.rkey = h1.info.rkey;
	fp.present = fy_bitmap_alloc(PAGES);
	assert_non_null(fp.present);
	fp.mode = PC_FAULT_COPY;
	assert_int_equal(pc_fault_open(&fp, &fs), 0);

	/* the first holder serves page 0, then stops mid-read of page 1 */
	assert_int_equal(guest[0], 1);
	assert_int_equal(kill(h1.pid, SIGSTOP), 0);
	t.at = guest + FY_PAGE_SIZE;
	assert_int_equal(pthread_create(&t.thread, NULL, touch, &t), 0);
	st = stats_when(fs, 1, 2);
	assert_int_equal(st.busy, 1);
	usleep(100000);
	pc_fault_stats(fs, &st);
	assert_int_equal(st.busy, 1);
	assert_false(st.stalled);
	assert_int_equal(atomic_load(&t.got), 0);

	/* a new holder while the read is in flight; the old one dies */
	assert_int_equal(fab_ep_connect(fdom, &h2.info.addr, &ep), 0);
	assert_int_equal(pc_fault_set_holder(fs, ep, &h2.info.rkey), 0);
	holder_kill(&h1);
	end = fy_now_ns() + 10000000000ULL;
	while (!atomic_load(&t.got) && fy_now_ns() < end)
		usleep(1000);
	assert_int_equal(atomic_load(&t.got), 2);
	assert_int_equal(pthread_join(t.thread, NULL), 0);

	/* and the rest from the new holder */
	for (unsigned k = 2; k < PAGES; k++)
		assert_int_equal(guest[k * FY_PAGE_SIZE], k + 1);
	st = stats_when(fs, 0, PAGES);
	assert_int_equal(st.busy, 0);
	assert_int_equal(st.missing, PAGES);
	assert_int_equal(st.served, PAGES);
	assert_int_equal(st.holder_swaps, 1);

	pc_fault_close(fs);
	fab_domain_close(fdom);
	holder_kill(&h2);
	close(uffd);
	munmap((void *)guest, PAGES * FY_PAGE_SIZE);
	munmap(map, PAGES * FY_PAGE_SIZE);
	free(fp.present);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_swap_inflight),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
