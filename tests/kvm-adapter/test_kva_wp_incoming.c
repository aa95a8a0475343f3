// SPDX-License-Identifier: MIT
/*
 * The user accelerator's dirty log (kva_user_dirty.c) on an incoming VM's
 * RAM: a 256 MiB memfd mapped shared, as guest RAM is; no KVM, root on
 * Linux 6.7+. The other cases are in test_kva_wp.c.
 *
 * RAM registered for a "ferryd" thread that resolves MISSING
 *   faults by UFFDIO_COPY of a known pattern (MINOR by CONTINUE); a writer
 *   reads and writes, then RAM_DONE, then writes more: every written page
 *   is reported, extras only among the pages the server placed, reads see
 *   the pattern, a page never touched reads as zeros without blocking, the
 *   server gets no fault after the release. Async and sync, and with
 *   writers running through the release (no written page missing).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvm-adapter/kva_accel.h"
#include "kva_wp_test.h"

/* What the "ferryd" places in page p: its words are p ^ PATTERN. */
#define PATTERN 0x5eed000000000000ULL

struct server {
	int uffd; /* ferryd's own copy (a dup, as SCM_RIGHTS gives) */
	uint8_t *mem;
	atomic_bool stop;
	atomic_ulong faults;
	atomic_ulong errors; /* checked by the main thread: no cmocka here */
	uint64_t *placed; /* pages placed by COPY or CONTINUE */
	pthread_mutex_t lock; /* placed */
	uint64_t *buf;
};

static void server_error(struct server *s, const char *what, uint64_t page,
			 int err)
{
	fprintf(stderr, "server: %s of page %llu: %s\n", what,
		(unsigned long long)page, strerror(err));
	atomic_fetch_add(&s->errors, 1);
}

static void server_wake(struct server *s, uint64_t addr)
{
	struct uffdio_range r = { addr, FY_PAGE_SIZE };

	if (ioctl(s->uffd, UFFDIO_WAKE, &r))
		server_error(s, "UFFDIO_WAKE", 0, errno);
}

static void server_fault(struct server *s, const struct uffd_msg *m)
{
	uint64_t addr = m->arg.pagefault.address & ~(FY_PAGE_SIZE - 1);
	uint64_t page = (addr - (uintptr_t)s->mem) / FY_PAGE_SIZE, i;
	int ret;

	if (page >= PAGES)
		return server_error(s, "fault outside RAM", page, EFAULT);
	/* never a write-protect fault: those are not ours to see */
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
		return server_error(s, "WP fault", page, EPERM);
	for (i = 0; i < FY_PAGE_SIZE / 8; i++)
		s->buf[i] = page ^ PATTERN;
	/*
	 * Count and record it before placing: placing wakes the faulting
	 * thread, and the test may read both as soon as that thread is done.
	 * A page not placed then fails the test (errors), or was unregistered
	 * first (ENOENT), which only widens the extras allowed.
	 */
	atomic_fetch_add(&s->faults, 1);
	pthread_mutex_lock(&s->lock);
	fy_bit_set(s->placed, page);
	pthread_mutex_unlock(&s->lock);
	/*
	 * EAGAIN: the mm is changing (the tracker's release drops and
	 * registers ranges); nobody else wakes the faulting thread, so try
	 * again, as ferryd's fault server does.
	 */
	for (i = 0; i < 10000; i++) {
		if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) {
			struct uffdio_continue c = {
				.range = { addr, FY_PAGE_SIZE }
			};

			ret = ioctl(s->uffd, UFFDIO_CONTINUE, &c) ? errno : 0;
		} else {
			struct uffdio_copy c = { .dst = addr,
						 .src = (uintptr_t)s->buf,
						 .len = FY_PAGE_SIZE };

			ret = ioctl(s->uffd, UFFDIO_COPY, &c) ? errno : 0;
		}
		if (ret != EAGAIN)
			break;
		usleep(100);
	}
	if (ret == EEXIST)
		server_wake(s, addr); /* placed meanwhile */
	else if (ret && ret != ENOENT) /* unregistered: the tracker wakes it */
		server_error(s, "placing", page, ret);
}

static void *server_fn(void *arg)
{
	struct server *s = arg;
	struct pollfd pfd = { .fd = s->uffd, .events = POLLIN };
	struct uffd_msg msg[16];
	ssize_t n, i;

	while (!atomic_load(&s->stop)) {
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		n = read(s->uffd, msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			server_error(s, "read", 0, n < 0 ? errno : EIO);
			break;
		}
		for (i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				server_error(s, "event", msg[i].event, EINVAL);
			else
				server_fault(s, &msg[i]);
		}
	}
	return NULL;
}

static void server_start(struct server *s, pthread_t *t, struct kva_wp *w,
			 uint8_t *mem)
{
	memset(s, 0, sizeof(*s));
	assert_true(kva_wp_uffd(w) >= 0);
	s->uffd = dup(kva_wp_uffd(w));
	assert_true(s->uffd >= 0);
	s->mem = mem;
	s->placed = fy_bitmap_alloc(PAGES);
	s->buf = aligned_alloc(FY_PAGE_SIZE, FY_PAGE_SIZE);
	assert_non_null(s->placed);
	assert_non_null(s->buf);
	pthread_mutex_init(&s->lock, NULL);
	assert_int_equal(pthread_create(t, NULL, server_fn, s), 0);
}

static void server_stop(struct server *s, pthread_t t)
{
	atomic_store(&s->stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(atomic_load(&s->errors), 0);
	close(s->uffd);
	free(s->placed);
	free(s->buf);
	pthread_mutex_destroy(&s->lock);
}

struct toucher {
	uint8_t *mem;
	const uint64_t *rd, *wr; /* pages to read (check), to write */
	uint64_t bad; /* pages read with other than the pattern */
};

static void *toucher_fn(void *arg)
{
	struct toucher *tc = arg;
	volatile uint64_t *pg;
	uint64_t p;

	for (p = 0; p < PAGES; p++) {
		pg = (volatile uint64_t *)(tc->mem + p * FY_PAGE_SIZE);
		if (tc->rd && fy_bit_test(tc->rd, p) &&
		    pg[p % 512] != (p ^ PATTERN))
			tc->bad++;
		if (tc->wr && fy_bit_test(tc->wr, p))
			pg[(p + 1) % 512] = p;
	}
	return NULL;
}

static void touch(uint8_t *mem, const uint64_t *rd, const uint64_t *wr)
{
	struct toucher tc = { mem, rd, wr, 0 };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, toucher_fn, &tc), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(tc.bad, 0);
}

struct zero_reader {
	const volatile uint64_t *pg;
	uint64_t nonzero;
	atomic_bool done;
};

static void *zero_reader_fn(void *arg)
{
	struct zero_reader *z = arg;
	unsigned int i;

	for (i = 0; i < FY_PAGE_SIZE / 8; i++)
		z->nonzero |= z->pg[i];
	atomic_store(&z->done, true);
	return NULL;
}

/* Read a page from a thread: zeros, within 5 s (no fault waits). */
static void assert_reads_zero(uint8_t *page)
{
	struct zero_reader z = { .pg = (volatile uint64_t *)page };
	uint64_t t_end = fy_now_ns() + 5000000000ULL;
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, zero_reader_fn, &z), 0);
	while (!atomic_load(&z.done) && fy_now_ns() < t_end)
		usleep(1000);
	assert_true(atomic_load(&z.done));
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(z.nonzero, 0);
}

static void incoming_mode(enum kva_wp_mode mode)
{
	uint64_t *rd = fy_bitmap_alloc(PAGES), *wr = fy_bitmap_alloc(PAGES);
	uint64_t *wr2 = fy_bitmap_alloc(PAGES), *uni = fy_bitmap_alloc(PAGES);
	uint64_t *want = fy_bitmap_alloc(PAGES), *ok = fy_bitmap_alloc(PAGES);
	uint64_t seed = 99, p, untouched, missed, extra, i, t0;
	unsigned long faults_at_release;
	struct server s;
	struct kva_wp *w;
	pthread_t st;
	struct ram r;

	assert_true(rd && wr && wr2 && uni && want && ok);
	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, mode, true, &w), 0);
	assert_int_equal(kva_wp_mode(w), mode);
	assert_true(kva_wp_minor(w)); /* MINOR_SHMEM: 5.13+ */
	server_start(&s, &st, w, r.mem);

	random_set(rd, 2, &seed);
	random_set(wr, 2, &seed);
	for (i = 0; i < WORDS; i++)
		wr[i] &= ~rd[i];
	/* one page nobody touches */
	for (untouched = PAGES / 3;
	     fy_bit_test(rd, untouched) || fy_bit_test(wr, untouched);
	     untouched++)
		;
	touch(r.mem, rd, wr);
	/* a harvest while incoming */
	assert_int_equal(kva_wp_harvest(w, uni), 0);
	/* the server placed each page touched, reads saw its pattern */
	assert_true(atomic_load(&s.faults) >=
		    fy_bitmap_count(rd, PAGES) + fy_bitmap_count(wr, PAGES));

	t0 = fy_now_ns();
	assert_int_equal(kva_wp_release_incoming(w), 0);
	printf("%-10s incoming: release of 256 MiB %.2f ms, %lu faults "
	       "served\n",
	       kva_wp_mode_name(mode), ms_since(t0),
	       (unsigned long)atomic_load(&s.faults));
	assert_int_equal(kva_wp_uffd(w), -1);
	assert_false(kva_wp_minor(w));
	assert_int_equal(kva_wp_release_incoming(w), -EINVAL);
	faults_at_release = atomic_load(&s.faults);

	/* after: some old pages, some never touched */
	random_set(wr2, 2, &seed);
	for (p = 0; p < PAGES; p += 97)
		if (fy_bit_test(wr, p) || fy_bit_test(rd, p))
			fy_bit_set(wr2, p);
	fy_bit_clear(wr2, untouched);
	touch(r.mem, rd, wr2);
	assert_reads_zero(r.mem + untouched * FY_PAGE_SIZE);
	assert_int_equal(kva_wp_harvest(w, uni), 0);
	assert_int_equal(atomic_load(&s.faults), faults_at_release);

	for (i = 0; i < WORDS; i++) {
		want[i] = wr[i] | wr2[i];
		ok[i] = want[i] | s.placed[i];
	}
	diff(uni, want, &missed, &extra);
	printf("%-10s incoming: %llu pages written, %llu placed by the "
	       "server, harvests: missed %llu, extra %llu\n",
	       kva_wp_mode_name(mode),
	       (unsigned long long)fy_bitmap_count(want, PAGES),
	       (unsigned long long)fy_bitmap_count(s.placed, PAGES),
	       (unsigned long long)missed, (unsigned long long)extra);
	assert_int_equal(missed, 0);
	/* extras only among the pages the server placed */
	diff(uni, ok, &missed, &extra);
	assert_int_equal(extra, 0);
	/* a page read but never written is not reported */
	assert_false(fy_bit_test(uni, untouched));
	/* and tracking goes on, exact */
	memset(uni, 0, WORDS * 8);
	assert_int_equal(kva_wp_harvest(w, uni), 0);
	assert_int_equal(fy_bitmap_count(uni, PAGES), 0);
	touch(r.mem, NULL, wr);
	assert_int_equal(kva_wp_harvest(w, uni), 0);
	diff(uni, wr, &missed, &extra);
	assert_int_equal(missed, 0);
	assert_int_equal(extra, 0);

	server_stop(&s, st);
	kva_wp_close(w);
	ram_unmap(&r);
	free(rd);
	free(wr);
	free(wr2);
	free(uni);
	free(want);
	free(ok);
}

static void test_incoming_async(void **state)
{
	(void)state;
	incoming_mode(KVA_WP_ASYNC);
}

static void test_incoming_sync(void **state)
{
	(void)state;
	incoming_mode(KVA_WP_SYNC);
}

/*
 * Writers run before, through and after the release while the server
 * places pages and the main thread harvests: no write is lost.
 */
static void incoming_writers_mode(enum kva_wp_mode mode)
{
	uint64_t *uni = fy_bitmap_alloc(PAGES), *want = fy_bitmap_alloc(PAGES);
	uint64_t missed, extra, stores, t0;
	struct rec_writer rw[2];
	atomic_bool stop = false;
	struct server s;
	struct kva_wp *w;
	pthread_t st, t[2];
	struct ram r;
	int i;

	assert_true(uni && want);
	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, mode, true, &w), 0);
	server_start(&s, &st, w, r.mem);
	rec_writers_start(rw, t, 2, r.mem, &stop);
	for (i = 0; i < 20; i++) {
		assert_int_equal(kva_wp_harvest(w, uni), 0);
		usleep(5000);
	}
	t0 = fy_now_ns();
	assert_int_equal(kva_wp_release_incoming(w), 0);
	printf("%-10s incoming, writers running: release %.2f ms\n",
	       kva_wp_mode_name(mode), ms_since(t0));
	for (i = 0; i < 20; i++) {
		assert_int_equal(kva_wp_harvest(w, uni), 0);
		usleep(5000);
	}
	rec_writers_stop(rw, t, 2, &stop, want, &stores);
	assert_int_equal(kva_wp_harvest(w, uni), 0);
	diff(uni, want, &missed, &extra);
	printf("%-10s incoming, writers running: %llu stores to %llu pages, "
	       "%lu faults served, missed %llu, extra %llu (placed pages "
	       "and pages mapped at release may be extra)\n",
	       kva_wp_mode_name(mode), (unsigned long long)stores,
	       (unsigned long long)fy_bitmap_count(want, PAGES),
	       (unsigned long)atomic_load(&s.faults),
	       (unsigned long long)missed, (unsigned long long)extra);
	assert_int_equal(missed, 0);
	server_stop(&s, st);
	kva_wp_close(w);
	ram_unmap(&r);
	free(uni);
	free(want);
}

static void test_incoming_writers(void **state)
{
	(void)state;
	incoming_writers_mode(KVA_WP_ASYNC);
	incoming_writers_mode(KVA_WP_SYNC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_incoming_async),
		cmocka_unit_test(test_incoming_sync),
		cmocka_unit_test(test_incoming_writers),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
