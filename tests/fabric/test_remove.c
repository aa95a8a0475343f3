// SPDX-License-Identifier: MIT
/*
 * The RDMA device is removed under reads and comes back (docs/rdma.md,
 * "Failures"). In the test VM rxe0 runs on the dummy link ferry-rxe
 * (softroce-ci/vm-init); this test deletes it with `rdma link delete` and
 * adds it again, so it needs root and runs alone (meson: is_parallel
 * false). librdmacm lets go of a removed device only while another one is
 * listed, so a second one, rxe1 on the dummy link ferry-rxe2, lives for
 * the test. The parent process, which never opens a device, makes rxe1
 * before and restores rxe0 and removes rxe1 after, whatever happened.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "common/util.h"
#include "fabric/fabric.h"
#include "tests/fabric/fab_target.h"
#include "tests/rxe.h"

#define SIZE (4 * MIB)
#define CHUNK (256 * 1024UL)
#define NCHUNK (SIZE / CHUNK)
#define DEPTH 8 /* reads kept in flight */
#define BEFORE 20 /* reads that land before the device goes */
#define BOUND_MS 10000 /* the removal, failures, the way back: each */
#define DEADLINE_MS 60000 /* ferry's op_timeout_ms, far beyond BOUND_MS */

static uint64_t ms_since(uint64_t t)
{
	return (fy_now_ns() - t) / 1000000;
}

struct remover {
	pthread_t th;
	int rc;
	int done; /* atomic */
	uint64_t ms; /* how long `rdma link delete` took */
};

/* `rdma link delete` waits for every process to let go of the device. */
static void *remove_rxe0(void *arg)
{
	struct remover *r = arg;
	uint64_t t = fy_now_ns();

	r->rc = system("rdma link delete rxe0");
	r->ms = ms_since(t);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* One read: its cqe's status, or -ETIME after BOUND_MS. */
static int read_one(struct fab_domain *d, struct fab_ep *ep, char *buf,
		    struct fab_mr *mr, const struct fab_rkey *rk, uint64_t off)
{
	uint64_t t = fy_now_ns();
	struct fab_cqe c;
	int ret;

	while ((ret = fab_read(ep, buf, CHUNK, mr, rk, off, buf)) == -EAGAIN)
		fab_poll(d, &c, 1, 10);
	if (ret)
		return ret;
	while (ms_since(t) < BOUND_MS)
		if (fab_poll(d, &c, 1, 100) == 1 && c.ctx == buf)
			return c.status;
	return -ETIME;
}

/* The whole region through ep with rk: 0 when every byte is right. */
static int read_all(struct fab_domain *d, struct fab_ep *ep, char *buf,
		    struct fab_mr *mr, const struct fab_rkey *rk)
{
	size_t i;
	int ret;

	memset(buf, 0, SIZE);
	for (i = 0; i < NCHUNK; i++) {
		ret = read_one(d, ep, buf + i * CHUNK, mr, rk, i * CHUNK);
		if (ret)
			return ret;
	}
	return pattern_check(buf, SIZE, 1) ? -EBADMSG : 0;
}

/*
 * Keep DEPTH reads in flight, start the removal after BEFORE landed, go
 * on until they are refused and none is out: each must fail or land
 * within BOUND_MS of the removal's start. Returns how many failed, plus
 * one for the refusal (all in flight may have landed before the device
 * went: seen once in the test VM).
 */
static unsigned across(struct fab_domain *d, struct fab_ep *ep, char *buf,
		       struct fab_mr *mr, const struct fab_rkey *rk,
		       struct remover *r, uint64_t *cut)
{
	unsigned out = 0, ok = 0, failed = 0, next = 0;
	int refused = 0, ret;
	struct fab_cqe c;

	*cut = 0;
	while (!refused || out) {
		while (out < DEPTH && !refused) {
			size_t i = next % NCHUNK;

			ret = fab_read(ep, buf + i * CHUNK, CHUNK, mr, rk,
				       i * CHUNK, NULL);
			if (ret == -EAGAIN)
				break;
			if (ret) {
				/* the device went, or the connection first */
				assert_true(ret == -ENODEV || ret == -ENOTCONN);
				assert_int_not_equal(*cut, 0);
				refused = 1;
				break;
			}
			next++;
			out++;
		}
		if (!*cut && ok >= BEFORE) {
			*cut = fy_now_ns();
			assert_int_equal(pthread_create(&r->th, NULL,
							remove_rxe0, r),
					 0);
		}
		if (fab_poll(d, &c, 1, 100) == 1) {
			assert_int_equal(c.op, FAB_OP_READ);
			out--;
			if (c.status) {
				assert_int_not_equal(*cut, 0);
				failed++;
			} else {
				ok++;
			}
		}
		if (*cut)
			assert_true(ms_since(*cut) < BOUND_MS);
	}
	print_message("%u reads landed, %u failed, %lu ms after `rdma link "
		      "delete` began\n",
		      ok, failed, (unsigned long)ms_since(*cut));
	return failed + (unsigned)refused;
}

/* Wait for the removal, at most BOUND_MS from its start. */
static void removed(struct remover *r, uint64_t cut)
{
	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
		/* a process that did not let go holds it: fail, exit */
		assert_true(ms_since(cut) < BOUND_MS);
		usleep(20000);
	}
	pthread_join(r->th, NULL);
	assert_int_equal(r->rc, 0);
	print_message("`rdma link delete rxe0` took %lu ms\n",
		      (unsigned long)r->ms);
}

/* The target's key once it differs from old, at most BOUND_MS from since. */
static void key_changed(struct target *t, uint64_t since, uint64_t old,
			struct fab_rkey *rk)
{
	for (;;) {
		assert_int_equal(target_rkey(t, rk), 0);
		if (rk->key != old)
			break;
		assert_true(ms_since(since) < BOUND_MS);
		usleep(20000);
	}
	print_message("the target's key changed %lu ms after `rdma link add` "
		      "began\n",
		      (unsigned long)ms_since(since));
}

/*
 * A target serves a region, the initiator reads it; rxe0 is removed under
 * reads: the removal completes (both processes let go of the device) and
 * every read fails or lands, within BOUND_MS; connecting says -ENODEV.
 * rxe0 comes back: both domains are back within BOUND_MS, the target's
 * key changed, a new endpoint reads the region with it, into plain
 * memory and through the bounce arena (fab_bounce.c), and the old key
 * fails.
 */
static void test_remove(void **state)
{
	struct fab_opts o = { .provider = "verbs",
			      .progress_thread = true,
			      .op_timeout_ms = DEADLINE_MS };
	struct remover r = { 0 };
	struct fab_domain *d;
	struct fab_rkey old, rk;
	struct fab_ep *ep, *ep2;
	struct fab_mr *mr, *hmr;
	struct target t;
	uint64_t cut, back;
	char *buf, *hbuf;
	int ret;

	(void)state;
	target_start(&t, "verbs", SIZE);
	old = t.h.rk;
	assert_int_equal(fab_domain_open(&o, &d), 0);
	buf = map_region(SIZE);
	assert_non_null(buf);
	assert_int_equal(fab_mr_reg(d, buf, SIZE, FAB_ACCESS_LOCAL, &mr), 0);
	/* guest RAM: through the bounce arena where registering pins */
	hbuf = map_region(SIZE);
	assert_non_null(hbuf);
	assert_int_equal(fab_mr_reg(d, hbuf, SIZE,
				    FAB_ACCESS_LOCAL | FAB_ACCESS_HOLES, &hmr),
			 0);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);
	assert_int_equal(read_all(d, ep, buf, mr, &old), 0);
	assert_int_equal(read_all(d, ep, hbuf, hmr, &old), 0);

	assert_int_not_equal(across(d, ep, buf, mr, &old, &r, &cut), 0);
	removed(&r, cut);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep2), -ENODEV);
	assert_false(fab_mem_busy(d, buf, SIZE));
	fab_ep_close(ep);

	back = fy_now_ns();
	assert_int_equal(rxe_device("add"), 0);
	print_message("rxe0 active with its address %lu ms after `rdma link "
		      "add` began\n",
		      (unsigned long)ms_since(back));
	key_changed(&t, back, old.key, &rk);
	while ((ret = fab_ep_connect(d, &t.h.addr, &ep2)) == -ENODEV)
		assert_true(ms_since(back) < BOUND_MS);
	assert_int_equal(ret, 0);
	print_message("the initiator connects %lu ms after `rdma link add` "
		      "began\n",
		      (unsigned long)ms_since(back));
	assert_int_equal(read_all(d, ep2, buf, mr, &rk), 0);
	/* the arena was registered anew too */
	assert_int_equal(read_all(d, ep2, hbuf, hmr, &rk), 0);
	/* the old key is no registration any more */
	ret = read_one(d, ep2, buf, mr, &old, 0);
	print_message("a read with the old key: %s\n", strerror(-ret));
	assert_int_not_equal(ret, 0);
	assert_int_not_equal(ret, -ETIME);

	fab_ep_close(ep2);
	fab_mr_dereg(mr);
	fab_mr_dereg(hmr);
	fab_domain_close(d);
	munmap(buf, SIZE);
	munmap(hbuf, SIZE);
	target_stop(&t);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remove),
	};
	struct stat sb;
	int st, ret = target_args(argc, argv, FY_LOG_WARN);
	pid_t pid;

	if (ret >= 0)
		return ret;
	ret = 1;
	if (!rdma_here() || geteuid() ||
	    stat("/sys/class/infiniband/rxe0", &sb)) {
		printf("needs rxe0 on ferry-rxe and root: run suite rdma in "
		       "the test VM (softroce-ci/run)\n");
		return 77;
	}
	if (rxe_device("spare")) {
		fprintf(stderr, "cannot make rxe1 on ferry-rxe2\n");
		goto out;
	}
	pid = fork();
	if (!pid)
		_exit(cmocka_run_group_tests(tests, NULL, NULL));
	if (pid > 0 && waitpid(pid, &st, 0) == pid)
		ret = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
out:
	/* the test's processes are gone: rxe0 as it was, no rxe1 */
	if (rxe_device("restore")) {
		fprintf(stderr, "cannot make rxe0 as it was\n");
		ret = 1;
	}
	return ret;
}
