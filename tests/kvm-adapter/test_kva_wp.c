// SPDX-License-Identifier: MIT
/*
 * The user accelerator's dirty log (kva_user_dirty.c) on a 256 MiB memfd
 * mapped shared, as guest RAM is: no KVM, root on Linux 6.7+.
 *
 * - rounds: a writer thread writes a random 1, 10 or 100 % of the pages,
 *   then a harvest must report exactly those (none missed, none extra) and
 *   the next one nothing; async and sync. Harvest times are printed.
 * - concurrent: writers write while the main thread harvests; each writer
 *   records a page in its own bitmap before storing to it, so after the
 *   writers stop every recorded page is written: the union of the harvests
 *   and one last harvest must be exactly the recorded pages.
 * - dropped: pages written then dropped (MADV_DONTNEED, a whole 2 MiB
 *   page table's worth too, MADV_PAGEOUT), some read back in before the
 *   harvest, are still reported, and nothing else is.
 * - soft-dirty: open fails with -EOPNOTSUPP where bit 55 of pagemap does
 *   not work (probed here independently), else the rounds are exact.
 * - incoming: RAM registered for a "ferryd" thread that resolves MISSING
 *   faults by UFFDIO_COPY of a known pattern (MINOR by CONTINUE); a writer
 *   reads and writes, then RAM_DONE, then writes more: every written page
 *   is reported, extras only among the pages the server placed, reads see
 *   the pattern, a page never touched reads as zeros without blocking, the
 *   server gets no fault after the release. Async and sync, and with
 *   writers running through the release (no written page missing).
 * - auto: AUTO picks async on this kernel.
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

#include "common/bitmap.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

#define RAM_SIZE (256ULL << 20)
#define PAGES (RAM_SIZE / FY_PAGE_SIZE)
#define WORDS FY_BITMAP_WORDS(PAGES)
#define HUGE (2ULL << 20)
#define ROUNDS 7
#define PM_SOFT_DIRTY (1ULL << 55)

struct ram {
	uint8_t *span; /* reservation, so that mem is 2 MiB aligned */
	uint8_t *mem;
	int fd;
};

static void ram_map(struct ram *r)
{
	r->fd = memfd_create("kva-wp-test", MFD_CLOEXEC);
	assert_true(r->fd >= 0);
	assert_int_equal(ftruncate(r->fd, RAM_SIZE), 0);
	r->span = mmap(NULL, RAM_SIZE + HUGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(r->span != MAP_FAILED);
	r->mem = (uint8_t *)(((uintptr_t)r->span + HUGE - 1) & ~(HUGE - 1));
	assert_true(mmap(r->mem, RAM_SIZE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED | MAP_NORESERVE, r->fd,
			 0) == r->mem);
}

static void ram_unmap(struct ram *r)
{
	munmap(r->span, RAM_SIZE + HUGE);
	close(r->fd);
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Exactly pct % of the pages, at random, into set (cleared first). */
static void random_set(uint64_t *set, unsigned int pct, uint64_t *seed)
{
	uint64_t want = PAGES * pct / 100, have = 0, p;

	memset(set, 0, WORDS * 8);
	if (pct == 100) {
		memset(set, 0xff, WORDS * 8);
		return;
	}
	while (have < want) {
		p = rnd(seed) % PAGES;
		if (!fy_bit_test(set, p)) {
			fy_bit_set(set, p);
			have++;
		}
	}
}

/* Pages of got not in want (extra), and of want not in got (missed). */
static void diff(const uint64_t *got, const uint64_t *want, uint64_t *missed,
		 uint64_t *extra)
{
	uint64_t i;

	*missed = *extra = 0;
	for (i = 0; i < WORDS; i++) {
		*missed += __builtin_popcountll(want[i] & ~got[i]);
		*extra += __builtin_popcountll(got[i] & ~want[i]);
	}
}

static double ms_since(uint64_t t0)
{
	return (fy_now_ns() - t0) / 1e6;
}

struct set_writer {
	uint8_t *mem;
	const uint64_t *set;
	uint8_t val;
};

static void *set_writer_fn(void *arg)
{
	struct set_writer *sw = arg;
	uint64_t p = fy_bitmap_next_set(sw->set, PAGES, 0);

	for (; p < PAGES; p = fy_bitmap_next_set(sw->set, PAGES, p + 1))
		((volatile uint8_t *)sw->mem)[p * FY_PAGE_SIZE + p % 4000] =
			sw->val;
	return NULL;
}

/* Write set from a thread of its own and wait for it. */
static void write_set(uint8_t *mem, const uint64_t *set, uint8_t val)
{
	struct set_writer sw = { mem, set, val };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, set_writer_fn, &sw), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static void assert_empty_harvest(struct kva_wp *w, uint64_t *bm)
{
	memset(bm, 0, WORDS * 8);
	assert_int_equal(kva_wp_harvest(w, bm), 0);
	assert_int_equal(fy_bitmap_count(bm, PAGES), 0);
}

/* Rounds of 1/10/100 % written by a thread, then harvested: exact. */
static void rounds(struct kva_wp *w, uint8_t *mem, const char *name)
{
	static const unsigned int pct[] = { 1, 10, 100 };
	uint64_t *set = fy_bitmap_alloc(PAGES), *bm = fy_bitmap_alloc(PAGES);
	uint64_t seed = 42, missed, extra, t0;
	double ms;
	int r;

	assert_non_null(set);
	assert_non_null(bm);
	/* Nothing written since open. */
	assert_empty_harvest(w, bm);
	for (r = 0; r < ROUNDS; r++) {
		random_set(set, pct[r % 3], &seed);
		write_set(mem, set, (uint8_t)(r + 1));
		memset(bm, 0, WORDS * 8);
		t0 = fy_now_ns();
		assert_int_equal(kva_wp_harvest(w, bm), 0);
		ms = ms_since(t0);
		diff(bm, set, &missed, &extra);
		printf("%-10s round %d: %3u %% (%6llu pages) harvest of "
		       "256 MiB %7.2f ms, missed %llu, extra %llu\n",
		       name, r, pct[r % 3],
		       (unsigned long long)fy_bitmap_count(set, PAGES), ms,
		       (unsigned long long)missed, (unsigned long long)extra);
		assert_int_equal(missed, 0);
		assert_int_equal(extra, 0);
		assert_empty_harvest(w, bm);
	}
	free(set);
	free(bm);
}

static void rounds_mode(enum kva_wp_mode mode)
{
	struct kva_wp *w;
	struct ram r;

	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, mode, false, &w), 0);
	assert_int_equal(kva_wp_mode(w), mode);
	assert_int_equal(kva_wp_uffd(w), -1);
	rounds(w, r.mem, kva_wp_mode_name(mode));
	kva_wp_close(w);
	ram_unmap(&r);
}

static void test_async_rounds(void **state)
{
	(void)state;
	rounds_mode(KVA_WP_ASYNC);
}

static void test_sync_rounds(void **state)
{
	(void)state;
	rounds_mode(KVA_WP_SYNC);
}

/* A writer that records each page before its store, until stopped. */
struct rec_writer {
	uint8_t *mem;
	uint64_t first, npages; /* the pages it picks from */
	uint64_t seed;
	unsigned int pause_every; /* stores between 100 us naps; 0: none */
	atomic_bool *stop;
	uint64_t *rec;
	uint64_t stores;
};

static void *rec_writer_fn(void *arg)
{
	struct rec_writer *rw = arg;
	struct timespec nap = { 0, 100000 };
	uint64_t p;

	while (!atomic_load_explicit(rw->stop, memory_order_relaxed)) {
		p = rw->first + rnd(&rw->seed) % rw->npages;
		fy_bit_set(rw->rec, p);
		((volatile uint8_t *)rw->mem)[p * FY_PAGE_SIZE + p % 4000] =
			(uint8_t)rw->stores;
		rw->stores++;
		if (rw->pause_every && !(rw->stores % rw->pause_every))
			nanosleep(&nap, NULL);
	}
	return NULL;
}

static void rec_writers_start(struct rec_writer *rw, pthread_t *t,
			      unsigned int n, uint8_t *mem, atomic_bool *stop)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		rw[i] = (struct rec_writer){
			.mem = mem,
			.first = 0,
			.npages = PAGES,
			.seed = 1000 + i,
			.pause_every = 16,
			.stop = stop,
			.rec = fy_bitmap_alloc(PAGES),
		};
		assert_non_null(rw[i].rec);
		if (i == 1) {
			/* hot: no naps, 16 MiB in the middle */
			rw[i].first = PAGES / 2;
			rw[i].npages = 4096;
			rw[i].pause_every = 0;
		}
		assert_int_equal(
			pthread_create(&t[i], NULL, rec_writer_fn, &rw[i]), 0);
	}
}

/* Stop the writers; want gets the union of their records. */
static void rec_writers_stop(struct rec_writer *rw, pthread_t *t,
			     unsigned int n, atomic_bool *stop, uint64_t *want,
			     uint64_t *stores)
{
	unsigned int i;
	uint64_t k;

	atomic_store(stop, true);
	*stores = 0;
	for (i = 0; i < n; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		for (k = 0; k < WORDS; k++)
			want[k] |= rw[i].rec[k];
		*stores += rw[i].stores;
		free(rw[i].rec);
	}
}

static void concurrent_mode(enum kva_wp_mode mode)
{
	uint64_t *uni = fy_bitmap_alloc(PAGES), *want = fy_bitmap_alloc(PAGES);
	uint64_t missed, extra, stores, t_end;
	struct rec_writer rw[2];
	atomic_bool stop = false;
	unsigned int harvests = 0;
	struct kva_wp *w;
	pthread_t t[2];
	struct ram r;

	assert_non_null(uni);
	assert_non_null(want);
	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, mode, false, &w), 0);
	rec_writers_start(rw, t, 2, r.mem, &stop);
	t_end = fy_now_ns() + 500000000ULL;
	while (fy_now_ns() < t_end) {
		assert_int_equal(kva_wp_harvest(w, uni), 0);
		harvests++;
		usleep(2000);
	}
	rec_writers_stop(rw, t, 2, &stop, want, &stores);
	assert_int_equal(kva_wp_harvest(w, uni), 0);
	diff(uni, want, &missed, &extra);
	printf("%-10s concurrent: %llu stores to %llu pages over %u "
	       "harvests, missed %llu, extra %llu\n",
	       kva_wp_mode_name(mode), (unsigned long long)stores,
	       (unsigned long long)fy_bitmap_count(want, PAGES), harvests,
	       (unsigned long long)missed, (unsigned long long)extra);
	assert_true(harvests > 10);
	assert_int_equal(missed, 0);
	/* A page is only ever reported for a fault on it: a store. */
	assert_int_equal(extra, 0);
	kva_wp_close(w);
	ram_unmap(&r);
	free(uni);
	free(want);
}

static void test_async_concurrent(void **state)
{
	(void)state;
	concurrent_mode(KVA_WP_ASYNC);
}

static void test_sync_concurrent(void **state)
{
	(void)state;
	concurrent_mode(KVA_WP_SYNC);
}

/* Written pages dropped from the page tables are still reported. */
static void dropped_mode(enum kva_wp_mode mode)
{
	uint64_t *set = fy_bitmap_alloc(PAGES), *bm = fy_bitmap_alloc(PAGES);
	uint64_t seed = 7, p, n = 0, missed, extra, huge0 = 3 * HUGE;
	struct kva_wp *w;
	struct ram r;
	volatile uint8_t sink;

	assert_non_null(set);
	assert_non_null(bm);
	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, mode, false, &w), 0);
	random_set(set, 5, &seed);
	/* a whole page table's worth, 2 MiB aligned */
	for (p = huge0 / FY_PAGE_SIZE; p < (huge0 + HUGE) / FY_PAGE_SIZE; p++)
		fy_bit_set(set, p);
	write_set(r.mem, set, 0x5a);
	assert_int_equal(madvise(r.mem + huge0, HUGE, MADV_DONTNEED), 0);
	for (p = fy_bitmap_next_set(set, PAGES, 0); p < PAGES;
	     p = fy_bitmap_next_set(set, PAGES, p + 1), n++) {
		uint8_t *pg = r.mem + p * FY_PAGE_SIZE;

		if (n % 3 == 0)
			assert_int_equal(
				madvise(pg, FY_PAGE_SIZE, MADV_DONTNEED), 0);
		if (n % 3 == 1)
			madvise(pg, FY_PAGE_SIZE, MADV_PAGEOUT); /* may fail */
		/* and read some back in: the data is in the memfd */
		if (n % 6 == 0) {
			sink = pg[p % 4000];
			assert_int_equal(sink, 0x5a);
		}
	}
	memset(bm, 0, WORDS * 8);
	assert_int_equal(kva_wp_harvest(w, bm), 0);
	diff(bm, set, &missed, &extra);
	printf("%-10s dropped: %llu pages written, missed %llu, extra %llu\n",
	       kva_wp_mode_name(mode),
	       (unsigned long long)fy_bitmap_count(set, PAGES),
	       (unsigned long long)missed, (unsigned long long)extra);
	assert_int_equal(missed, 0);
	assert_int_equal(extra, 0);
	assert_empty_harvest(w, bm);
	/* dropped again after the harvest: protected, not written */
	assert_int_equal(madvise(r.mem, RAM_SIZE, MADV_DONTNEED), 0);
	assert_empty_harvest(w, bm);
	kva_wp_close(w);
	ram_unmap(&r);
	free(set);
	free(bm);
}

static void test_dropped(void **state)
{
	(void)state;
	dropped_mode(KVA_WP_ASYNC);
	dropped_mode(KVA_WP_SYNC);
}

/* Whether bit 55 of pagemap follows writes here, probed on our own. */
static bool soft_dirty_works(void)
{
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	volatile uint8_t *p = mmap(NULL, FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t e0 = 0, e1 = 0;
	off_t off = (uintptr_t)p / FY_PAGE_SIZE * 8;

	assert_true(pm >= 0 && cr >= 0 && p != MAP_FAILED);
	p[0] = 1;
	assert_int_equal(write(cr, "4", 1), 1);
	assert_int_equal(pread(pm, &e0, 8, off), 8);
	p[0] = 2;
	assert_int_equal(pread(pm, &e1, 8, off), 8);
	munmap((void *)p, FY_PAGE_SIZE);
	close(pm);
	close(cr);
	return !(e0 & PM_SOFT_DIRTY) && (e1 & PM_SOFT_DIRTY);
}

static void test_softdirty(void **state)
{
	struct kva_wp *w = (void *)1;
	bool works = soft_dirty_works();
	struct ram r;
	int ret;

	(void)state;
	ram_map(&r);
	ret = kva_wp_open(r.mem, RAM_SIZE, KVA_WP_SOFTDIRTY, false, &w);
	printf("soft-dirty: bit 55 %s here, kva_wp_open: %d\n",
	       works ? "works" : "never set", ret);
	if (!works) {
		assert_int_equal(ret, -EOPNOTSUPP);
		assert_null(w);
	} else {
		assert_int_equal(ret, 0);
		assert_int_equal(kva_wp_mode(w), KVA_WP_SOFTDIRTY);
		rounds(w, r.mem, "soft-dirty");
		kva_wp_close(w);
	}
	ram_unmap(&r);
}

static void test_auto(void **state)
{
	struct kva_wp *w;
	struct ram r;

	(void)state;
	ram_map(&r);
	assert_int_equal(kva_wp_open(r.mem, RAM_SIZE, KVA_WP_AUTO, false, &w),
			 0);
	assert_string_equal(kva_wp_mode_name(kva_wp_mode(w)), "async");
	assert_string_equal(kva_wp_mode_name(KVA_WP_SYNC), "sync");
	assert_string_equal(kva_wp_mode_name(KVA_WP_SOFTDIRTY), "soft-dirty");
	kva_wp_close(w);
	kva_wp_close(NULL);
	ram_unmap(&r);
}

/* --- incoming --- */

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
	else if (ret && ret != ENOENT) /* ENOENT: unregistered meanwhile */
		server_error(s, "placing", page, ret);
	if (!ret) {
		pthread_mutex_lock(&s->lock);
		fy_bit_set(s->placed, page);
		pthread_mutex_unlock(&s->lock);
	}
	atomic_fetch_add(&s->faults, 1);
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
		cmocka_unit_test(test_auto),
		cmocka_unit_test(test_async_rounds),
		cmocka_unit_test(test_async_concurrent),
		cmocka_unit_test(test_sync_rounds),
		cmocka_unit_test(test_sync_concurrent),
		cmocka_unit_test(test_dropped),
		cmocka_unit_test(test_softdirty),
		cmocka_unit_test(test_incoming_async),
		cmocka_unit_test(test_incoming_sync),
		cmocka_unit_test(test_incoming_writers),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
