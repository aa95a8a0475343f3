// SPDX-License-Identifier: MIT
/*
 * Sparse registrations (fab_sparse.c) in one process: a target domain
 * whose registrations pin registers guest RAM (a memfd) part by part, an
 * initiator reads across the parts. FERRY_FABRIC_PROVIDER: "ofi:tcp" by
 * default, where the test makes both domains act as pinning ones (the
 * initiator's buffer then goes through bounce slots, as on rxe); "verbs"
 * and "ofi:verbs" in suite rdma, where registering really pins and the
 * memfd's untouched chunks must stay holes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "fabric/fabric_int.h"
#include "tests/rxe.h"

#define KIB 1024ULL
#define MIB (1024 * KIB)
#define CHUNK (2 * MIB)
#define CHUNKS 4
#define RAM (CHUNKS * CHUNK)

static const char *prov = "ofi:tcp";

struct sp {
	struct fab_domain *t, *i; /* target, initiator */
	int memfd;
	char *ram; /* the target's guest RAM */
	struct fab_mr *tmr;
	char *buf; /* the initiator's */
	struct fab_mr *imr;
	struct fab_ep *ep;
};

static void sp_open(struct sp *s)
{
	struct fab_opts o = { .provider = prov,
			      .progress_thread = true,
			      .op_timeout_ms = 5000 };
	struct fab_addr a;

	assert_int_equal(fab_domain_open(&o, &s->t), 0);
	assert_int_equal(fab_domain_open(&o, &s->i), 0);
	if (!strcmp(prov, "ofi:tcp"))
		s->t->pins = s->i->pins = true; /* as rxe's */
	assert_true(s->t->pins && s->i->pins);
	s->memfd = memfd_create("sparse", 0);
	assert_true(s->memfd >= 0);
	assert_int_equal(ftruncate(s->memfd, RAM), 0);
	s->ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd,
		      0);
	assert_true(s->ram != MAP_FAILED);
	/* data in chunks 0 and 1 only; 2 and 3 are holes */
	for (size_t p = 0; p < 2 * CHUNK; p += FY_PAGE_SIZE)
		memset(s->ram + p, (int)(p / FY_PAGE_SIZE) | 1, FY_PAGE_SIZE);
	assert_int_equal(fab_mr_reg(s->t, s->ram, RAM,
				    FAB_ACCESS_READ | FAB_ACCESS_HOLES,
				    &s->tmr),
			 0);
	s->buf = mmap(NULL, RAM, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(s->buf != MAP_FAILED);
	/* guest RAM for our own reads: bounce slots */
	assert_int_equal(fab_mr_reg(s->i, s->buf, RAM,
				    FAB_ACCESS_LOCAL | FAB_ACCESS_HOLES,
				    &s->imr),
			 0);
	fab_domain_addr(s->t, &a);
	assert_int_equal(fab_ep_connect(s->i, &a, &s->ep), 0);
}

static void sp_close(struct sp *s)
{
	fab_ep_close(s->ep);
	fab_mr_dereg(s->imr);
	fab_mr_dereg(s->tmr);
	fab_domain_close(s->i);
	fab_domain_close(s->t);
	munmap(s->buf, RAM);
	munmap(s->ram, RAM);
	close(s->memfd);
}

static struct fab_cqe wait_cqe(struct fab_domain *d)
{
	uint64_t end = fy_now_ns() + 10000000000ULL;
	struct fab_cqe c = { .status = 1 };

	while (fy_now_ns() < end)
		if (fab_poll(d, &c, 1, 100) == 1)
			return c;
	fail_msg("no completion within 10 s");
	return c;
}

/* Read [off, off + len) into buf; 0 and the bytes checked, or the error. */
static int read_at(struct sp *s, uint64_t off, size_t len)
{
	struct fab_rkey rk;
	struct fab_cqe c;
	int ret;

	fab_mr_rkey(s->tmr, &rk);
	memset(s->buf + off, 0xee, len);
	ret = fab_read(s->ep, s->buf + off, len, s->imr, &rk, off, &rk);
	if (ret)
		return ret;
	c = wait_cqe(s->i);
	assert_ptr_equal(c.ctx, &rk);
	assert_int_equal(c.op, FAB_OP_READ);
	assert_ptr_equal(c.ep, s->ep);
	assert_int_equal(c.status, 0);
	assert_int_equal(c.len, len);
	assert_memory_equal(s->buf + off, s->ram + off, len);
	/* no completion of a part comes out on its own */
	assert_int_equal(fab_poll(s->i, &c, 1, 50), 0);
	return 0;
}

/* Whether [off, off + len) of the memfd has no page in it. */
static bool hole(int fd, off_t off, off_t len)
{
	off_t d = lseek(fd, off, SEEK_DATA);

	return (d < 0 && errno == ENXIO) || d >= off + len;
}

/*
 * Nothing is registered until grown; growth is by whole chunks, each
 * grown range its own part; the rkey lists the parts and its key changes
 * with them; untouched chunks stay holes though the device pins.
 */
static void test_sparse_grow(void **state)
{
	struct fab_rkey rk0, rk1, rk2;
	struct fab_stats st;
	struct sp s;

	(void)state;
	sp_open(&s);
	fab_mr_rkey(s.tmr, &rk0);
	/* sparse, with no run: not one byte registered */
	assert_non_null(rk0.runs);
	assert_int_equal(rk0.nruns, 0);
	fab_domain_stats(s.t, &st);
	assert_int_equal(st.mr_count, 0);
	assert_int_equal(read_at(&s, 0, FY_PAGE_SIZE), -ERANGE);

	assert_int_equal(fab_mr_grow(s.tmr, 3 * FY_PAGE_SIZE, FY_PAGE_SIZE), 1);
	assert_int_equal(fab_mr_grow(s.tmr, 0, CHUNK), 0);
	fab_mr_rkey(s.tmr, &rk1);
	assert_int_equal(rk1.nruns, 1);
	assert_int_equal(rk1.runs[0].off, 0);
	assert_int_equal(rk1.runs[0].len, CHUNK);
	assert_true(rk1.key != rk0.key);

	/* the first page of chunk 1 grows all of it, a part of its own */
	assert_int_equal(fab_mr_grow(s.tmr, CHUNK, 1), 1);
	fab_mr_rkey(s.tmr, &rk2);
	assert_int_equal(rk2.nruns, 2);
	assert_int_equal(rk2.runs[1].off, CHUNK);
	assert_int_equal(rk2.runs[1].len, CHUNK);
	assert_true(rk2.key != rk1.key);
	fab_domain_stats(s.t, &st);
	assert_int_equal(st.mr_count, 2);
	assert_int_equal(st.mr_bytes, 2 * CHUNK);

	assert_int_equal(fab_mr_grow(s.tmr, RAM - FY_PAGE_SIZE,
				     2 * FY_PAGE_SIZE),
			 -ERANGE);
	assert_true(hole(s.memfd, 2 * CHUNK, 2 * CHUNK));
	sp_close(&s);
}

/*
 * Reads inside a part, across two and four parts (split, one completion
 * with the caller's context), and touching what is not registered.
 */
static void test_sparse_read(void **state)
{
	struct sp s;

	(void)state;
	sp_open(&s);
	assert_int_equal(fab_mr_grow(s.tmr, 0, 1), 1);
	assert_int_equal(fab_mr_grow(s.tmr, CHUNK, 1), 1);
	assert_int_equal(read_at(&s, 5 * FY_PAGE_SIZE, 64 * KIB), 0);
	/* across chunks 0 and 1 */
	assert_int_equal(read_at(&s, CHUNK - 512 * KIB, MIB), 0);
	/* into chunk 2, which is not registered */
	assert_int_equal(read_at(&s, 2 * CHUNK - FY_PAGE_SIZE,
				 2 * FY_PAGE_SIZE),
			 -ERANGE);
	assert_int_equal(fab_mr_grow(s.tmr, 3 * CHUNK, 1), 1);
	assert_int_equal(read_at(&s, 0, RAM), -ERANGE);
	assert_int_equal(fab_mr_grow(s.tmr, 2 * CHUNK, 1), 1);
	/* all four parts in one read; chunks 2 and 3 read as zeros */
	assert_int_equal(read_at(&s, 0, RAM), 0);
	sp_close(&s);
}

/* A read whose endpoint is closed before it is polled: one completion. */
static void test_sparse_closed(void **state)
{
	struct fab_rkey rk;
	struct fab_cqe c;
	struct sp s;

	(void)state;
	sp_open(&s);
	assert_int_equal(fab_mr_grow(s.tmr, 0, 1), 1);
	assert_int_equal(fab_mr_grow(s.tmr, CHUNK, 1), 1);
	fab_mr_rkey(s.tmr, &rk);
	assert_int_equal(fab_read(s.ep, s.buf, 2 * CHUNK, s.imr, &rk, 0, &rk),
			 0);
	fab_ep_close(s.ep);
	s.ep = NULL;
	c = wait_cqe(s.i);
	assert_ptr_equal(c.ctx, &rk);
	assert_int_equal(c.op, FAB_OP_READ);
	assert_int_equal(fab_poll(s.i, &c, 1, 200), 0);
	sp_close(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sparse_grow),
		cmocka_unit_test(test_sparse_read),
		cmocka_unit_test(test_sparse_closed),
	};
	const char *p = getenv("FERRY_FABRIC_PROVIDER");

	if (p && *p)
		prov = p;
	if (strcmp(prov, "ofi:tcp") && !rdma_here()) {
		printf("no RDMA device here: skipped\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
