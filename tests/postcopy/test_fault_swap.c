// SPDX-License-Identifier: MIT
/*
 * pc_fault's holders.
 *
 * test_swap_inflight: pc_fault handed a new holder while one of its reads is in flight, as
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
/* A relay's copy is current for these pages; stale (poison) elsewhere. */
#define CUR_LO 4
#define CUR_HI 12
#define POISON 0xee

/*
 * Page k of the holders' memory is filled with k + 1; a relay's pages
 * outside [CUR_LO, CUR_HI) with POISON, which no fault may ever read.
 */
static void fill(uint8_t *mem, bool relay)
{
	for (unsigned k = 0; k < PAGES; k++)
		memset(mem + k * FY_PAGE_SIZE,
		       relay && (k < CUR_LO || k >= CUR_HI) ? POISON : k + 1,
		       FY_PAGE_SIZE);
}

/* The holder (child): its memory, filled, served. */
static int holder_main(int sock, bool relay)
{
	uint8_t *mem = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (mem != MAP_FAILED)
		fill(mem, relay);
	return holder_serve(sock, mem, PAGES * FY_PAGE_SIZE, -errno, NULL);
}

/* Fork a holder; before this process opens a fabric domain of its own. */
static void holder_start_as(struct holder *h, bool relay)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	h->pid = fork();
	assert_true(h->pid >= 0);
	if (!h->pid) {
		close(sv[0]);
		_exit(holder_main(sv[1], relay));
	}
	assert_int_equal(holder_started(h, sv), 0);
}

static void holder_start(struct holder *h)
{
	holder_start_as(h, false);
}

/*
 * SIGSTOP h and wait until it is stopped: kill() returns before, and a
 * holder still running would serve the next read.
 */
static void holder_stop(const struct holder *h)
{
	uint64_t end = fy_now_ns() + 10000000000ULL;
	char path[64], buf[256], *st;
	FILE *f;

	assert_int_equal(kill(h->pid, SIGSTOP), 0);
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)h->pid);
	do {
		f = fopen(path, "r");
		assert_non_null(f);
		st = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (st && st[1] == ' ' && st[2] == 'T')
			return;
		usleep(1000);
	} while (fy_now_ns() < end);
	fail_msg("holder %d not stopped", (int)h->pid);
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

/* A fault server of this process over guest, its holders forked. */
struct rig {
	int uffd;
	volatile uint8_t *guest;
	uint8_t *map;
	struct fab_domain *fdom;
	struct pc_fault_params fp;
	struct pc_fault *fs;
};

/*
 * Everything but the server: the uffd over guest, the fault domain (like
 * ferryd's: no progress thread, a timeout of timeout_ms).
 */
static void rig_init(struct rig *r, unsigned timeout_ms)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct fab_opts fo = { .op_timeout_ms = timeout_ms };

	memset(r, 0, sizeof(*r));
	r->uffd = syscall(SYS_userfaultfd,
			  O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	assert_true(r->uffd >= 0);
	assert_int_equal(ioctl(r->uffd, UFFDIO_API, &api), 0);
	r->guest = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	r->map = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(r->guest != MAP_FAILED && r->map != MAP_FAILED);
	reg.range.start = (uintptr_t)r->guest;
	reg.range.len = PAGES * FY_PAGE_SIZE;
	assert_int_equal(ioctl(r->uffd, UFFDIO_REGISTER, &reg), 0);
	assert_int_equal(fab_domain_open(&fo, &r->fdom), 0);
	r->fp = (struct pc_fault_params){
		.uffd = r->uffd,
		.uffd_base = (uintptr_t)r->guest,
		.map = r->map,
		.pages = PAGES,
		.dom = r->fdom,
		.present = fy_bitmap_alloc(PAGES),
		.mode = PC_FAULT_COPY,
	};
	assert_non_null(r->fp.present);
}

/* Point the server (not started) at the source, or add a relay. */
static void rig_holder(struct rig *r, const struct holder *h, bool relay)
{
	static const struct rly_vrun cur = { CUR_LO, CUR_HI - CUR_LO, 0 };
	struct pc_fault_relay *rl = &r->fp.relay[r->fp.nrelays];

	if (!relay) {
		assert_int_equal(
			fab_ep_connect(r->fdom, &h->info.addr, &r->fp.ep), 0);
		r->fp.rkey = h->info.rkey;
		return;
	}
	assert_int_equal(fab_ep_connect(r->fdom, &h->info.addr, &rl->ep), 0);
	rl->rkey = h->info.rkey;
	rl->v = &cur;
	rl->nv = 1;
	r->fp.nrelays++;
}

static void rig_close(struct rig *r)
{
	pc_fault_close(r->fs);
	fab_domain_close(r->fdom);
	close(r->uffd);
	munmap((void *)r->guest, PAGES * FY_PAGE_SIZE);
	munmap(r->map, PAGES * FY_PAGE_SIZE);
	free(r->fp.present);
}

static void test_swap_inflight(void **state)
{
	struct holder h1 = { 0 }, h2 = { 0 };
	struct pc_fault_stats st;
	struct toucher t = { 0 };
	struct fab_ep *ep;
	struct rig r;
	uint64_t end;

	(void)state;
	holder_start(&h1);
	holder_start(&h2);
	rig_init(&r, 30000);
	rig_holder(&r, &h1, false);
	assert_int_equal(pc_fault_open(&r.fp, &r.fs), 0);

	/* the first holder serves page 0, then stops mid-read of page 1 */
	assert_int_equal(r.guest[0], 1);
	holder_stop(&h1);
	t.at = r.guest + FY_PAGE_SIZE;
	assert_int_equal(pthread_create(&t.thread, NULL, touch, &t), 0);
	st = stats_when(r.fs, 1, 2);
	assert_int_equal(st.busy, 1);
	usleep(100000);
	pc_fault_stats(r.fs, &st);
	assert_int_equal(st.busy, 1);
	assert_false(st.stalled);
	assert_int_equal(atomic_load(&t.got), 0);

	/* a new holder while the read is in flight; the old one dies */
	assert_int_equal(fab_ep_connect(r.fdom, &h2.info.addr, &ep), 0);
	assert_int_equal(pc_fault_set_holder(r.fs, ep, &h2.info.rkey), 0);
	holder_kill(&h1);
	end = fy_now_ns() + 10000000000ULL;
	while (!atomic_load(&t.got) && fy_now_ns() < end)
		usleep(1000);
	assert_int_equal(atomic_load(&t.got), 2);
	assert_int_equal(pthread_join(t.thread, NULL), 0);

	/* and the rest from the new holder */
	for (unsigned k = 2; k < PAGES; k++)
		assert_int_equal(r.guest[k * FY_PAGE_SIZE], k + 1);
	st = stats_when(r.fs, 0, PAGES);
	assert_int_equal(st.busy, 0);
	assert_int_equal(st.missing, PAGES);
	assert_int_equal(st.served, PAGES);
	assert_int_equal(st.holder_swaps, 1);
	rig_close(&r);
	holder_kill(&h2);
}

/*
 * A relay current for [CUR_LO, CUR_HI): faults there may be read from it
 * (the first one there is: not yet measured, it is tried), never a page
 * its copy is stale for; with kill_relay it dies after the first fault,
 * and its pages come from the source.
 */
static void relay_faults(bool kill_relay)
{
	struct holder src = { 0 }, rel = { 0 };
	struct pc_fault_stats st;
	struct rig r;

	holder_start(&src);
	holder_start_as(&rel, true);
	/* a dead relay's read times out (the tcp provider sees no reset) */
	rig_init(&r, 2000);
	rig_holder(&r, &src, false);
	rig_holder(&r, &rel, true);
	assert_int_equal(pc_fault_open(&r.fp, &r.fs), 0);
	/* the source measured first: the relay, not yet, is tried next */
	assert_int_equal(r.guest[0], 1);
	if (kill_relay)
		holder_kill(&rel);
	for (unsigned k = 1; k < PAGES; k++)
		assert_int_equal(r.guest[k * FY_PAGE_SIZE], k + 1);
	st = stats_when(r.fs, 0, PAGES);
	assert_int_equal(st.served, PAGES);
	assert_int_equal(st.pages_from[0] + st.pages_from[1], PAGES);
	if (kill_relay) {
		assert_int_equal(st.pages_from[1], 0);
		assert_int_equal(st.relays_down, 1);
	} else {
		assert_true(st.pages_from[1] >= 1);
		assert_true(st.pages_from[0] >= CUR_LO + PAGES - CUR_HI);
		assert_int_equal(st.relays_down, 0);
	}
	rig_close(&r);
	holder_kill(&src);
	holder_kill(&rel);
}

static void test_relay(void **state)
{
	(void)state;
	relay_faults(false);
}

static void test_relay_dies(void **state)
{
	(void)state;
	relay_faults(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_swap_inflight),
		cmocka_unit_test(test_relay),
		cmocka_unit_test(test_relay_dies),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
