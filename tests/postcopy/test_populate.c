// SPDX-License-Identifier: MIT
/*
 * node/ unit tests of the destination's populator (postcopy/pc_populate.c): it maps
 * in exactly the announced runs of a memfd (holes stay holes, so a sparse
 * guest costs no memory), the pages read as zero, data already written is
 * kept, runs past the end are ignored, and the hint makes it skip what the
 * puller has already received.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "postcopy/postcopy.h"

#define PAGES 8192 /* 32 MiB */

struct mem {
	int fd;
	uint8_t *map;
};

static void mem_open(struct mem *m)
{
	m->fd = memfd_create("test-populate", MFD_CLOEXEC);
	assert_true(m->fd >= 0);
	assert_int_equal(ftruncate(m->fd, PAGES * FY_PAGE_SIZE), 0);
	m->map = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED, m->fd, 0);
	assert_true(m->map != MAP_FAILED);
}

static void mem_close(struct mem *m)
{
	munmap(m->map, PAGES * FY_PAGE_SIZE);
	close(m->fd);
}

/* Pages of the memfd that hold memory. */
static uint64_t resident(const struct mem *m)
{
	struct stat st;

	assert_int_equal(fstat(m->fd, &st), 0);
	return st.st_blocks * 512 / FY_PAGE_SIZE;
}

/* Wait until the populator did want pages (5 s at most). */
static uint64_t wait_done(struct pc_pop *p, uint64_t want)
{
	for (int i = 0; i < 5000 && pc_pop_done(p) < want; i++)
		usleep(1000);
	return pc_pop_done(p);
}

static bool is_zero(const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

static void test_only_announced_runs(void **state)
{
	/* a full 2 MiB chunk, a lone page, a run across a chunk boundary */
	const struct fy_run runs[] = {
		{ .start = 1024, .len = 512 },
		{ .start = 3000, .len = 1 },
		{ .start = 4600, .len = 100 },
	};
	const struct fy_run bad[] = {
		{ .start = PAGES - 1, .len = 2 },
		{ .start = PAGES, .len = 1 },
	};
	const struct fy_run later = { .start = 6000, .len = 10 };
	struct pc_pop *p = NULL;
	struct mem m;

	(void)state;
	mem_open(&m);
	/* data the puller already wrote must survive */
	memset(m.map + 3000 * FY_PAGE_SIZE, 0xab, FY_PAGE_SIZE);
	assert_int_equal(pc_pop_start(m.fd, m.map, PAGES, &p), 0);
	assert_int_equal(pc_pop_add(p, bad, ARRAY_SIZE(bad)), 0);
	assert_int_equal(pc_pop_add(p, runs, ARRAY_SIZE(runs)), 0);
	assert_int_equal(wait_done(p, 613), 613);
	usleep(20000);
	assert_int_equal(pc_pop_done(p), 613);
	/* huge pages (if root allowed them) only for the full chunk */
	assert_true(resident(&m) >= 613);
	assert_true(resident(&m) <= 613 + 8);
	assert_true(is_zero(m.map + 1024 * FY_PAGE_SIZE, 512 * FY_PAGE_SIZE));
	assert_true(is_zero(m.map + 4600 * FY_PAGE_SIZE, 100 * FY_PAGE_SIZE));
	for (size_t i = 0; i < FY_PAGE_SIZE; i++)
		assert_int_equal(m.map[3000 * FY_PAGE_SIZE + i], 0xab);
	/* a later round, once all was done */
	assert_int_equal(pc_pop_add(p, &later, 1), 0);
	assert_int_equal(wait_done(p, 623), 623);
	pc_pop_stop(p);
	pc_pop_stop(NULL);
	assert_int_equal(pc_pop_add(NULL, runs, 1), 0);
	/* nothing announced beyond: the rest of the memfd is still a hole */
	assert_true(resident(&m) <= 623 + 8);
	mem_close(&m);
}

static void test_hint_skips_received(void **state)
{
	const struct fy_run all = { .start = 0, .len = PAGES };
	struct pc_pop *p = NULL;
	struct mem m;

	(void)state;
	mem_open(&m);
	assert_int_equal(pc_pop_start(m.fd, m.map, PAGES, &p), 0);
	/* the puller is past page 6144: only the last quarter is left */
	pc_pop_hint(p, 6144);
	assert_int_equal(pc_pop_add(p, &all, 1), 0);
	assert_int_equal(wait_done(p, PAGES - 6144), PAGES - 6144);
	usleep(20000);
	assert_int_equal(pc_pop_done(p), PAGES - 6144);
	assert_true(resident(&m) <= PAGES - 6144 + 8);
	pc_pop_stop(p);
	mem_close(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_only_announced_runs),
		cmocka_unit_test(test_hint_skips_received),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
