// SPDX-License-Identifier: MIT
/*
 * The target of the two-process fabric tests: it opens a domain with a
 * progress thread, registers a region and then blocks in read() on a
 * socketpair, so every remote access it serves is driven by the progress
 * thread alone. Over the socketpair it sends its fab_addr and rkey and
 * answers small commands (fill, verify, connect, echo, rkey, quit).
 */
#include <errno.h>
#include <signal.h>
#include <setjmp.h>
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

#include "common/util.h"
#include "tests/fabric/fab_target.h"

void pattern_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t *w = buf;
	size_t k;

	for (k = 0; k < len / 8; k++)
		w[k] = (k + 1) * 0x9E3779B97F4A7C15ULL ^ seed;
}

/* Returns the first bad byte offset + 1, or 0 when buf holds the pattern. */
size_t pattern_check(const void *buf, size_t len, uint64_t seed)
{
	const uint64_t *w = buf;
	size_t k;

	for (k = 0; k < len / 8; k++)
		if (w[k] != ((k + 1) * 0x9E3779B97F4A7C15ULL ^ seed))
			return k * 8 + 1;
	return 0;
}

void *map_region(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* The target side: a separate process. */
static int target_echo(struct fab_domain *d, struct fab_ep *ep)
{
	struct fab_cqe c;
	uint64_t until = fy_now_ns() + 5000000000ULL;
	char msg[FAB_MSG_MAX];
	size_t len = 0;
	int ret = -ETIMEDOUT, n;

	if (!ep)
		return -ENOTCONN;
	while (fy_now_ns() < until) {
		n = fab_poll(d, &c, 1, 100);
		if (n < 0)
			return n;
		if (n == 1 && c.op == FAB_OP_RECV) {
			/* FI_SOURCE: the sender is the endpoint we connected */
			if (c.ep != ep)
				return -EPROTO;
			len = c.len;
			memcpy(msg, c.buf, len);
			ret = 0;
			break;
		}
	}
	if (ret)
		return ret;
	while ((ret = fab_send(ep, msg, len, msg)) == -EAGAIN)
		fab_poll(d, &c, 1, 0);
	if (ret)
		return ret;
	ret = -ETIMEDOUT;
	while (fy_now_ns() < until) {
		n = fab_poll(d, &c, 1, 100);
		if (n == 1 && c.op == FAB_OP_SEND) {
			ret = c.status;
			break;
		}
	}
	return ret;
}

static int target_main(const char *prov, size_t size, int sock)
{
	struct fab_opts o = { .provider = prov, .progress_thread = true };
	struct hello h = { 0 };
	struct fab_domain *d = NULL;
	struct fab_mr *mr = NULL;
	struct fab_ep *ep = NULL;
	struct fab_rkey rk;
	struct cmd c;
	void *buf;

	buf = map_region(size);
	if (!buf)
		return 1;
	pattern_fill(buf, size, 1);
	h.status = fab_domain_open(&o, &d);
	if (!h.status)
		h.status = fab_mr_reg(d, buf, size,
				      FAB_ACCESS_READ | FAB_ACCESS_WRITE, &mr);
	if (!h.status) {
		fab_domain_addr(d, &h.addr);
		fab_mr_rkey(mr, &h.rk);
		snprintf(h.provider, sizeof(h.provider), "%s",
			 fab_domain_provider(d));
	}
	if (fy_full_io(sock, &h, sizeof(h), true) || h.status)
		goto out;
	/* the main thread now sleeps in read(): only progress serves peers */
	while (!fy_full_io(sock, &c, sizeof(c), false) && c.op != 'q') {
		int32_t r = 0;

		if (c.op == 'f')
			pattern_fill(buf, size, c.seed);
		else if (c.op == 'v')
			r = pattern_check(buf, size, c.seed) ? -EBADMSG : 0;
		else if (c.op == 'c' && !ep)
			r = fab_ep_connect(d, &c.addr, &ep);
		else if (c.op == 'e')
			r = target_echo(d, ep);
		if (fy_full_io(sock, &r, sizeof(r), true))
			break;
		/* the key now: verbs makes it anew after a device came back */
		fab_mr_rkey(mr, &rk);
		if (c.op == 'k' && fy_full_io(sock, &rk, sizeof(rk), true))
			break;
	}
out:
	fab_ep_close(ep);
	fab_mr_dereg(mr);
	fab_domain_close(d);
	munmap(buf, size);
	return h.status ? 1 : 0;
}

/* The initiator side. */

void target_start(struct target *t, const char *prov, size_t size)
{
	char ssize[32], sfd[16];
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	t->pid = fork();
	assert_true(t->pid >= 0);
	if (!t->pid) {
		close(sv[0]);
		snprintf(ssize, sizeof(ssize), "%zu", size);
		snprintf(sfd, sizeof(sfd), "%d", sv[1]);
		execl("/proc/self/exe", "test_fabric", "--target", prov, ssize,
		      sfd, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	t->sock = sv[0];
	assert_int_equal(fy_full_io(t->sock, &t->h, sizeof(t->h), false), 0);
	assert_int_equal(t->h.status, 0);
	assert_int_equal(t->h.rk.len, size);
}

int target_cmd(struct target *t, char op, uint64_t seed,
	       const struct fab_addr *addr)
{
	struct cmd c = { .op = op, .seed = seed };
	int32_t r;

	if (addr)
		c.addr = *addr;
	if (fy_full_io(t->sock, &c, sizeof(c), true))
		return -EPIPE;
	if (op == 'q')
		return 0;
	if (fy_full_io(t->sock, &r, sizeof(r), false))
		return -EPIPE;
	return r;
}

int target_rkey(struct target *t, struct fab_rkey *rk)
{
	int r = target_cmd(t, 'k', 0, NULL);

	if (r)
		return r;
	return fy_full_io(t->sock, rk, sizeof(*rk), false) ? -EPIPE : 0;
}

void target_stop(struct target *t)
{
	int st;

	target_cmd(t, 'q', 0, NULL);
	close(t->sock);
	assert_int_equal(waitpid(t->pid, &st, 0), t->pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int target_args(int argc, char **argv, enum fy_log_level level)
{
	if (argc == 5 && !strcmp(argv[1], "--target"))
		return target_main(argv[2], strtoull(argv[3], NULL, 0),
				   atoi(argv[4]));
	fy_log_set_level(getenv("FY_DEBUG") ? FY_LOG_DEBUG : level);
	signal(SIGPIPE, SIG_IGN);
	return -1;
}
