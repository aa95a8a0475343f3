// SPDX-License-Identifier: MIT
/*
 * fabric/ between two processes on loopback. The test binary re-executes
 * itself as a target ("--target PROVIDER SIZE FD", fab_target.c) whose
 * progress thread alone serves its registered region.
 *
 * FERRY_FABRIC_PROVIDER: the provider, "ofi:tcp" by default, "verbs" and
 * "ofi:verbs" in the rdma suite (which needs an RDMA device:
 * tests/fabric/meson.build).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "common/util.h"
#include "fabric/fabric.h"
#include "tests/fabric/fab_target.h"
#include "tests/rxe.h"

/* rxe in the emulated test VM moves about 20 MB/s: 64 MiB there */
#define BIG_SIZE (on_rdma() ? 64 * MIB : 256 * MIB)
#define WINDOW 64

static const char *prov = "ofi:tcp"; /* FERRY_FABRIC_PROVIDER */

/* ferry's own rdma-core backend */
static bool is_verbs(void)
{
	return !strcmp(prov, "verbs");
}

/* an RDMA device: "verbs" or libfabric's "ofi:verbs" (RC queue pairs) */
static bool on_rdma(void)
{
	return is_verbs() || !strcmp(prov, "ofi:verbs");
}

static void open_initiator(const char *prov, unsigned timeout_ms,
			   struct fab_domain **d)
{
	struct fab_opts o = {
		.provider = prov,
		.progress_thread = true,
		.op_timeout_ms = timeout_ms,
	};

	assert_int_equal(fab_domain_open(&o, d), 0);
}

/*
 * Move [0, total) between local and remote in operations whose sizes cycle
 * through sizes[], with up to WINDOW in flight. Every completion must
 * succeed with the right length and context.
 */
static void transfer(struct fab_domain *d, struct fab_ep *ep, char *local,
		     struct fab_mr *mr, const struct fab_rkey *rk, size_t total,
		     const size_t *sizes, int nsizes, bool write)
{
	struct fab_cqe cqes[WINDOW];
	size_t next = 0, done = 0;
	int inflight = 0, k = 0, i, n, ret;
	uint64_t until = fy_now_ns() + 30000000000ULL;

	while (done < total) {
		while (inflight < WINDOW && next < total) {
			size_t len = FY_MIN(sizes[k % nsizes], total - next);

			if (write)
				ret = fab_write(ep, local + next, len, mr, rk,
						next, (void *)(uintptr_t)len);
			else
				ret = fab_read(ep, local + next, len, mr, rk,
					       next, (void *)(uintptr_t)len);
			if (ret == -EAGAIN)
				break;
			assert_int_equal(ret, 0);
			next += len;
			inflight++;
			k++;
		}
		n = fab_poll(d, cqes, WINDOW, 1000);
		assert_true(n >= 0);
		for (i = 0; i < n; i++) {
			assert_int_equal(cqes[i].status, 0);
			assert_int_equal(cqes[i].op,
					 write ? FAB_OP_WRITE : FAB_OP_READ);
			assert_ptr_equal(cqes[i].ep, ep);
			assert_int_equal(cqes[i].len,
					 (size_t)(uintptr_t)cqes[i].ctx);
			done += cqes[i].len;
			inflight--;
		}
		assert_true(fy_now_ns() < until);
	}
}

/* Wait for one completion (other than RECV) and return it. */
static struct fab_cqe wait_one(struct fab_domain *d, int timeout_ms)
{
	struct fab_cqe c = { .status = 1 };
	uint64_t until = fy_now_ns() + (uint64_t)timeout_ms * 1000000ULL;

	while (fy_now_ns() < until)
		if (fab_poll(d, &c, 1, 50) == 1)
			return c;
	fail_msg("no completion within %d ms", timeout_ms);
	return c;
}

static int post_retry(struct fab_domain *d, struct fab_ep *ep, void *buf,
		      size_t len, struct fab_mr *mr, const struct fab_rkey *rk,
		      uint64_t off)
{
	int ret;

	/* the first operation to a peer may wait for its connection */
	while ((ret = fab_read(ep, buf, len, mr, rk, off, buf)) == -EAGAIN) {
		struct fab_cqe c;

		assert_int_equal(fab_poll(d, &c, 1, 1), 0);
	}
	return ret;
}

static void test_read_write_256m(void **state)
{
	static const size_t rsizes[] = { 4096, 64 * 1024, MIB };
	static const size_t wsizes[] = { 4096, 16384, 65536, 262144, MIB };
	struct fab_domain *d;
	struct fab_ep *ep;
	struct fab_mr *mr;
	struct fab_stats st;
	struct target t;
	char *local;
	size_t i;

	(void)state;
	target_start(&t, prov, BIG_SIZE);
	if (is_verbs())
		assert_memory_equal(t.h.provider, "verbs:", 6);
	else if (on_rdma())
		assert_string_equal(t.h.provider, "ofi:verbs;ofi_rxm");
	else
		assert_string_equal(t.h.provider, "ofi:tcp;ofi_rxm");
	open_initiator(prov, 0, &d);
	local = map_region(BIG_SIZE);
	assert_non_null(local);
	assert_int_equal(fab_mr_reg(d, local, BIG_SIZE, FAB_ACCESS_LOCAL, &mr),
			 0);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);

	/* read the whole region once per operation size; check every byte */
	for (i = 0; i < ARRAY_SIZE(rsizes); i++) {
		memset(local, 0, BIG_SIZE);
		transfer(d, ep, local, mr, &t.h.rk, BIG_SIZE, &rsizes[i], 1,
			 false);
		assert_int_equal(pattern_check(local, BIG_SIZE, 1), 0);
	}
	/* write a new pattern in mixed sizes; the target checks every byte */
	pattern_fill(local, BIG_SIZE, 2);
	transfer(d, ep, local, mr, &t.h.rk, BIG_SIZE, wsizes,
		 ARRAY_SIZE(wsizes), true);
	assert_int_equal(target_cmd(&t, 'v', 2, NULL), 0);

	fab_domain_stats(d, &st);
	assert_int_equal(st.mr_count, 1);
	assert_int_equal(st.mr_bytes, BIG_SIZE);
	assert_int_equal(st.ep_count, 1);
	assert_int_equal(st.ops_failed, 0);
	assert_true(st.ops_done >= BIG_SIZE / 4096);

	/* a new endpoint to the same peer (verbs: the same queue pair) */
	fab_ep_close(ep);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);
	memset(local, 0, 4096);
	assert_int_equal(post_retry(d, ep, local, 4096, mr, &t.h.rk, 0), 0);
	assert_int_equal(wait_one(d, 5000).status, 0);
	assert_int_equal(pattern_check(local, 4096, 2), 0);
	fab_ep_close(ep);
	assert_int_equal(fab_mr_dereg(mr), 0);
	fab_domain_stats(d, &st);
	assert_int_equal(st.mr_count, 0);
	assert_int_equal(st.ep_count, 0);
	fab_domain_close(d);
	munmap(local, BIG_SIZE);
	target_stop(&t);
}

/* Many reads posted without polling: the queue fills and says -EAGAIN. */
static void test_eagain(void **state)
{
	enum { N = 4096 };
	static bool read_page[N];
	struct fab_cqe cqes[64];
	struct fab_domain *d;
	struct fab_ep *ep;
	struct fab_mr *mr;
	struct target t;
	int posted = 0, done = 0, again = 0, i, n, ret;
	char *local;

	(void)state;
	target_start(&t, prov, 16 * MIB);
	open_initiator(prov, 0, &d);
	local = map_region(16 * MIB);
	assert_int_equal(fab_mr_reg(d, local, 16 * MIB, FAB_ACCESS_LOCAL, &mr),
			 0);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);
	assert_int_equal(post_retry(d, ep, local, 4096, mr, &t.h.rk, 0), 0);
	wait_one(d, 5000);
	memset(local, 0, 16 * MIB);
	for (i = 0; i < N; i++) {
		ret = fab_read(ep, local + i * 4096, 4096, mr, &t.h.rk,
			       (uint64_t)i * 4096, NULL);
		read_page[i] = !ret;
		if (ret == -EAGAIN) {
			again++;
			continue;
		}
		assert_int_equal(ret, 0);
		posted++;
	}
	assert_true(again > 0);
	while (done < posted) {
		n = fab_poll(d, cqes, 64, 2000);
		assert_true(n > 0);
		for (i = 0; i < n; i++)
			assert_int_equal(cqes[i].status, 0);
		done += n;
	}
	/* every read that was accepted landed; the refused ones did not */
	for (i = 0; i < N; i++) {
		uint64_t want = (i * 512 + 1) * 0x9E3779B97F4A7C15ULL ^ 1;

		assert_int_equal(*(uint64_t *)(local + i * 4096),
				 read_page[i] ? want : 0);
	}
	fab_domain_close(d); /* deregisters mr, closes ep */
	munmap(local, 16 * MIB);
	target_stop(&t);
}

/* Wrong key and outside the range: an error completion, never a crash. */
static void test_bad_access(void **state)
{
	struct fab_domain *d;
	struct fab_ep *ep;
	struct fab_mr *mr;
	struct fab_rkey bad;
	struct fab_cqe c;
	struct target t;
	char *local;

	(void)state;
	target_start(&t, prov, 4 * MIB);
	open_initiator(prov, 0, &d);
	local = map_region(4 * MIB);
	assert_int_equal(fab_mr_reg(d, local, 4 * MIB, FAB_ACCESS_LOCAL, &mr),
			 0);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);

	/* checked locally against the rkey */
	assert_int_equal(fab_read(ep, local, 4096, mr, &t.h.rk, 4 * MIB, NULL),
			 -ERANGE);
	assert_int_equal(fab_read(ep, local, 8192, mr, &t.h.rk, 4 * MIB - 4096,
				  NULL),
			 -ERANGE);
	assert_int_equal(fab_read(ep, local, 4096, mr, &t.h.rk, UINT64_MAX,
				  NULL),
			 -ERANGE);
	assert_int_equal(fab_write(ep, local, 4096, mr, &t.h.rk, 4 * MIB, NULL),
			 -ERANGE);

	/* a forged key: the target refuses it */
	bad = t.h.rk;
	bad.key ^= 0x5a5a;
	assert_int_equal(post_retry(d, ep, local, 4096, mr, &bad, 0), 0);
	c = wait_one(d, 5000);
	assert_true(c.status < 0);
	if (on_rdma()) /* the device's remote access error */
		assert_int_equal(c.status, -EACCES);
	assert_ptr_equal(c.ctx, local);
	/* verbs: the QP is in error, the endpoint refuses more */
	if (on_rdma())
		assert_int_equal(fab_read(ep, local, 4096, mr, &t.h.rk, 0,
					  NULL),
				 -ENOTCONN);
	/* tcp drops the connection on a bad access: reconnect */
	fab_ep_close(ep);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);
	assert_int_equal(post_retry(d, ep, local, 4096, mr, &t.h.rk, 0), 0);
	c = wait_one(d, 5000);
	assert_int_equal(c.status, 0);

	/* a forged length: past the end of the target's registration */
	bad = t.h.rk;
	bad.len *= 4;
	assert_int_equal(post_retry(d, ep, local, 4096, mr, &bad, 8 * MIB), 0);
	c = wait_one(d, 5000);
	assert_true(c.status < 0);
	fab_ep_close(ep);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);
	assert_int_equal(
		post_retry(d, ep, local + 4096, 4096, mr, &t.h.rk, 4096), 0);
	c = wait_one(d, 5000);
	assert_int_equal(c.status, 0);
	assert_int_equal(pattern_check(local, 8192, 1), 0);

	fab_domain_close(d);
	munmap(local, 4 * MIB);
	target_stop(&t);
}

/*
 * A peer that dies (SIGKILL) or stops answering (SIGSTOP: the connection
 * stays up, only ferry's deadline can tell) fails every outstanding
 * operation within a bounded time. verbs: a stopped peer's device still
 * serves every read, and a dead one fails those posted after its death.
 */
static void peer_lost(int sig)
{
	const int TIMEOUT_MS = on_rdma() ? 5000 : 1000; /* rxe in TCG: slow */
	const bool dead_first = on_rdma() && sig == SIGKILL;
	enum { N = 32 };
	struct fab_domain *d;
	struct fab_ep *ep;
	struct fab_mr *mr;
	struct fab_cqe cqes[N];
	struct target t;
	int posted = 0, failed = 0, last = 0, i, n, ret, st;
	uint64_t t0;
	char *local;

	target_start(&t, prov, 64 * MIB);
	open_initiator(prov, TIMEOUT_MS, &d);
	local = map_region(64 * MIB);
	assert_int_equal(fab_mr_reg(d, local, 64 * MIB, FAB_ACCESS_LOCAL, &mr),
			 0);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);
	assert_int_equal(post_retry(d, ep, local, 4096, mr, &t.h.rk, 0), 0);
	assert_int_equal(wait_one(d, 5000).status, 0);

	/*
	 * Freeze the target so that the reads are surely outstanding. A
	 * device serves a stopped process's memory (verbs): kill it first.
	 */
	if (dead_first)
		assert_int_equal(kill(t.pid, SIGKILL), 0);
	else
		assert_int_equal(kill(t.pid, SIGSTOP), 0);
	if (dead_first)
		assert_int_equal(waitpid(t.pid, &st, 0), t.pid);
	t0 = fy_now_ns();
	for (i = 0; i < N; i++) {
		ret = fab_read(ep, local + i * 2 * MIB, 2 * MIB, mr, &t.h.rk,
			       (uint64_t)i * 2 * MIB, NULL);
		if (ret)
			break;
		posted++;
	}
	/* the death may be known already: the endpoint refuses */
	assert_true(posted == N || (dead_first && ret == -ENOTCONN));
	if (sig == SIGKILL && !dead_first) {
		assert_int_equal(kill(t.pid, SIGKILL), 0);
		assert_int_equal(waitpid(t.pid, &st, 0), t.pid);
	}
	while (failed < posted) {
		n = fab_poll(d, cqes, N, 100);
		assert_true(n >= 0);
		for (i = 0; i < n; i++) {
			/* a read may have finished before the signal hit */
			if (cqes[i].status < 0) {
				failed++;
				last = cqes[i].status;
			} else {
				assert_false(dead_first);
				posted--;
			}
		}
		assert_true(fy_now_ns() - t0 < 3ULL * TIMEOUT_MS * 1000000);
	}
	if (on_rdma() && sig == SIGSTOP) {
		/* the device serves a stopped process's memory: all landed */
		assert_int_equal(posted, 0);
		assert_int_equal(pattern_check(local, 64 * MIB, 1), 0);
		goto out;
	}
	if (!failed) {
		/* every read beat the signal: refused, or the next one fails */
		last = fab_read(ep, local, 4096, mr, &t.h.rk, 0, NULL);
		if (!last)
			last = wait_one(d, 3 * TIMEOUT_MS).status;
		assert_true(last < 0);
	}
	print_message("%s: %d reads failed (last %s) after %.0f ms\n",
		      strsignal(sig), failed, strerror(-last),
		      (fy_now_ns() - t0) / 1e6);
	/* the peer is presumed dead now */
	assert_int_equal(fab_read(ep, local, 4096, mr, &t.h.rk, 0, NULL),
			 -ENOTCONN);
	if (sig == SIGSTOP) {
		/* it wakes up: the late completions must not surface */
		assert_int_equal(kill(t.pid, SIGCONT), 0);
		t0 = fy_now_ns();
		while (fy_now_ns() - t0 < 300000000ULL)
			assert_int_equal(fab_poll(d, cqes, N, 10), 0);
	}
out:
	fab_ep_close(ep);
	fab_domain_close(d);
	munmap(local, 64 * MIB);
	if (sig != SIGKILL) {
		assert_int_equal(kill(t.pid, SIGKILL), 0);
		assert_int_equal(waitpid(t.pid, &st, 0), t.pid);
	}
	close(t.sock);
}

static void test_peer_killed(void **state)
{
	(void)state;
	peer_lost(SIGKILL);
}

static void test_peer_stopped(void **state)
{
	(void)state;
	peer_lost(SIGSTOP);
}

/* Small messages both ways; the receiver learns who sent. */
static void test_send_recv(void **state)
{
	static const char msg[] = "ferry says hello";
	struct fab_domain *d;
	struct fab_addr me;
	struct fab_ep *ep;
	struct fab_cqe c;
	struct target t;
	bool sent = false, echoed = false;
	char big[FAB_MSG_MAX + 1] = { 0 };
	int ret;

	(void)state;
	target_start(&t, prov, MIB);
	open_initiator(prov, 0, &d);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);
	fab_domain_addr(d, &me);
	assert_int_equal(fab_send(ep, big, sizeof(big), NULL), -EMSGSIZE);
	/* the target must know us before our message arrives to name us */
	assert_int_equal(target_cmd(&t, 'c', 0, &me), 0);
	while ((ret = fab_send(ep, msg, sizeof(msg), (void *)msg)) == -EAGAIN)
		fab_poll(d, &c, 1, 1);
	assert_int_equal(ret, 0);
	/* the target connects back to us and echoes what it got */
	assert_int_equal(target_cmd(&t, 'e', 0, NULL), 0);
	while (!sent || !echoed) {
		c = wait_one(d, 5000);
		assert_int_equal(c.status, 0);
		if (c.op == FAB_OP_SEND) {
			assert_ptr_equal(c.ctx, msg);
			sent = true;
		} else {
			assert_int_equal(c.op, FAB_OP_RECV);
			assert_int_equal(c.len, sizeof(msg));
			assert_memory_equal(c.buf, msg, sizeof(msg));
			echoed = true;
		}
	}
	fab_domain_close(d);
	target_stop(&t);
}

/* shm: reads served between processes through shared memory. */
static void test_shm_read(void **state)
{
	static const size_t sizes[] = { 4096, 65536, MIB };
	struct fab_domain *d;
	struct fab_ep *ep;
	struct fab_mr *mr;
	struct target t;
	char *local;

	(void)state;
	target_start(&t, "ofi:shm", 32 * MIB);
	assert_string_equal(t.h.provider, "ofi:shm");
	open_initiator("ofi:shm", 0, &d);
	assert_string_equal(fab_domain_provider(d), "ofi:shm");
	local = map_region(32 * MIB);
	assert_int_equal(fab_mr_reg(d, local, 32 * MIB, FAB_ACCESS_LOCAL, &mr),
			 0);
	assert_int_equal(fab_ep_connect(d, &t.h.addr, &ep), 0);
	assert_int_equal(post_retry(d, ep, local, 4096, mr, &t.h.rk, 0), 0);
	assert_int_equal(wait_one(d, 5000).status, 0);
	transfer(d, ep, local, mr, &t.h.rk, 32 * MIB, sizes, 3, false);
	assert_int_equal(pattern_check(local, 32 * MIB, 1), 0);
	fab_domain_close(d);
	munmap(local, 32 * MIB);
	target_stop(&t);
}

/* In one process: argument checks, provider strings, bookkeeping. */
static void test_local(void **state)
{
	struct fab_opts o = { 0 };
	struct fab_domain *d, *d2;
	struct fab_mr *mr, *mr2;
	struct fab_rkey rk;
	struct fab_stats st;
	struct fab_addr a;
	struct fab_ep *ep;
	static char buf[8192];

	(void)state;
	o.provider = "bogus";
	assert_int_equal(fab_domain_open(&o, &d), -EINVAL);
	assert_null(d);
	o.provider = "ofi:";
	assert_int_equal(fab_domain_open(&o, &d), -EINVAL);
	o.provider = "ofi:no_such_provider";
	assert_int_equal(fab_domain_open(&o, &d), -ENODATA);
	/* without an RDMA device verbs is unavailable, and says so */
	o.provider = "verbs";
	if (!rdma_here()) {
		assert_int_equal(fab_domain_open(&o, &d), -ENODATA);
		assert_null(d);
	}

	/* defaults: ofi:tcp, no progress thread */
	assert_int_equal(fab_domain_open(NULL, &d), 0);
	assert_string_equal(fab_domain_provider(d), "ofi:tcp;ofi_rxm");
	fab_domain_addr(d, &a);
	assert_true(a.len > 0 && a.len <= FAB_ADDR_MAX);
	assert_int_equal(fab_mr_reg(d, buf, 0, FAB_ACCESS_READ, &mr), -EINVAL);
	assert_int_equal(fab_mr_reg(d, buf, 4096, 0, &mr), -EINVAL);
	assert_int_equal(fab_mr_reg(d, buf, 4096, FAB_ACCESS_READ, &mr), 0);
	assert_int_equal(
		fab_mr_reg(d, buf + 4096, 4096, FAB_ACCESS_WRITE, &mr2), 0);
	fab_mr_rkey(mr, &rk);
	assert_int_equal(rk.len, 4096);
	fab_domain_stats(d, &st);
	assert_int_equal(st.mr_count, 2);
	assert_int_equal(st.mr_bytes, 8192);
	assert_int_equal(st.progress_cpu_ns, 0);
	assert_int_equal(fab_mr_dereg(NULL), 0);
	assert_int_equal(fab_mr_dereg(mr2), 0);

	/* a second domain connects to the first; nothing is sent */
	o.provider = NULL;
	o.progress_thread = true;
	assert_int_equal(fab_domain_open(&o, &d2), 0);
	assert_int_equal(fab_ep_connect(d2, &a, &ep), 0);
	assert_int_equal(fab_send(ep, buf, 0, NULL), -EMSGSIZE);
	assert_int_equal(fab_read(ep, buf, 4096, NULL, &rk, 1, NULL), -ERANGE);
	fab_domain_stats(d2, &st);
	assert_int_equal(st.ep_count, 1);
	fab_ep_close(NULL);
	fab_domain_close(d2); /* closes ep */
	fab_domain_close(d); /* deregisters mr */
	fab_domain_close(NULL);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_read_write_256m),
		cmocka_unit_test(test_eagain),
		cmocka_unit_test(test_bad_access),
		cmocka_unit_test(test_send_recv),
		cmocka_unit_test(test_peer_killed),
		cmocka_unit_test(test_peer_stopped),
		cmocka_unit_test(test_shm_read),
	};
	/* the rdma suite: the same exchanges over rdma-core */
	const struct CMUnitTest verbs_tests[] = {
		cmocka_unit_test(test_read_write_256m),
		cmocka_unit_test(test_eagain),
		cmocka_unit_test(test_bad_access),
		cmocka_unit_test(test_send_recv),
		cmocka_unit_test(test_peer_killed),
		cmocka_unit_test(test_peer_stopped),
	};
	const char *env = getenv("FERRY_FABRIC_PROVIDER");
	int ret = target_args(argc, argv, FY_LOG_ERR);

	if (ret >= 0)
		return ret;
	if (env && *env)
		prov = env;
	if (on_rdma() && !rdma_here()) {
		printf("no RDMA device here: run suite rdma in the test VM\n");
		return 77;
	}
	if (on_rdma())
		return cmocka_run_group_tests(verbs_tests, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
