// SPDX-License-Identifier: MIT
/*
 * The user accelerator's dirty log on kernels before 6.7, without
 * UFFD_FEATURE_WP_ASYNC: the SYNC and SOFTDIRTY modes of the tracker in
 * kva_user_dirty.c (which picks the mode, registers the range, harvests
 * and releases; its top comment has ASYNC and the incoming range).
 *
 * SYNC (5.19 to 6.6: write-protection of shmem, no WP_ASYNC). A write to a
 * protected page stops the writer and queues a fault message; our fault
 * thread sets the page in `pending` and unprotects it, which wakes the
 * writer. Invariant, kept by doing both under fault_lock: a page that is
 * not protected is in `pending`. A harvest, under fault_lock, first
 * re-protects every page of `pending` (UFFDIO_WRITEPROTECT), then takes
 * `pending` (ORs it into the caller's bitmap and clears it). Protect before
 * take: a write made before the page is protected again is already in
 * `pending` (its page was unprotected, so it is there by the invariant) and
 * is taken now; a write after it faults, and the fault thread cannot record
 * it before we have taken `pending` (it waits for fault_lock), so it goes
 * to the next harvest. Taking first would leave a moment where a page is
 * writable but not in `pending`. Re-protecting spans a little wider than
 * the runs of `pending` is harmless: under fault_lock every page outside
 * `pending` is protected already. A second message for a page (two
 * writers) may unprotect it once more after a harvest: it is recorded with
 * it, so that costs at most one extra page, never a lost one.
 *
 * SOFTDIRTY (older kernels with CONFIG_MEM_SOFT_DIRTY, only when a probe
 * shows the bit working: on kernels without it, "4" > clear_refs succeeds
 * and bit 55 is never set). A harvest reads bit 55 of /proc/self/pagemap
 * and clears every soft-dirty bit of the process ("4" > clear_refs). The
 * two steps are not atomic: a write between them is lost, so it is exact
 * only if the writers are paused around each harvest (logged at open).
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_user_dirty.h"

#define KVA_PM_SOFT_DIRTY (1ULL << 55) /* bit of a /proc/pid/pagemap entry */
#define KVA_WP_SYNC_GAP 32 /* pages: re-protect over holes this small */
#define KVA_WP_MSGS 64 /* fault messages per read() */
#define KVA_WP_PM_CHUNK 65536 /* pagemap entries per pread() */

/* SYNC: one batch of fault messages, under fault_lock. */
static void wp_sync_faults(struct kva_wp *w, const struct uffd_msg *msg,
			   unsigned int n)
{
	unsigned int i;
	uint64_t addr, page;
	int ret;

	pthread_mutex_lock(&w->fault_lock);
	for (i = 0; i < n; i++) {
		if (msg[i].event != UFFD_EVENT_PAGEFAULT)
			continue;
		addr = msg[i].arg.pagefault.address & ~(FY_PAGE_SIZE - 1);
		if (addr < (uintptr_t)w->mem ||
		    addr >= (uintptr_t)w->mem + w->size) {
			pr_warn_limited(&w->rl,
					"write fault at %#llx outside RAM",
					(unsigned long long)addr);
			continue;
		}
		page = kva_wp_page(w, addr);
		/* Record, then let the writer go: the invariant at the top. */
		fy_bit_set(w->pending, page);
		ret = kva_wp_protect(w, page, 1, false);
		if (ret && !atomic_load(&w->stopping))
			pr_warn_limited(&w->rl,
					"unprotect page %llu: %s (its writer "
					"waits until the tracker closes)",
					(unsigned long long)page,
					strerror(-ret));
	}
	pthread_mutex_unlock(&w->fault_lock);
}

/* SYNC: the thread that takes the write faults. */
static void *wp_fault_thread(void *arg)
{
	struct kva_wp *w = arg;
	struct uffd_msg msg[KVA_WP_MSGS];
	struct pollfd pfd[2] = {
		{ .fd = w->wp_fd, .events = POLLIN },
		{ .fd = w->stop_fd, .events = POLLIN },
	};
	ssize_t n;

	while (!atomic_load(&w->stopping)) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			pr_perror("poll on the dirty-log userfaultfd");
			break;
		}
		if (pfd[1].revents)
			break;
		n = read(w->wp_fd, msg, sizeof(msg));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			pr_perror("read of the dirty-log userfaultfd");
			break;
		}
		wp_sync_faults(w, msg, n / sizeof(msg[0]));
	}
	return NULL;
}

/* SYNC: start the fault thread, every signal blocked in it. */
int kva_wp_sync_start(struct kva_wp *w)
{
	sigset_t all, old;
	int ret;

	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->stop_fd < 0) {
		ret = -errno;
		pr_perror("eventfd");
		return ret;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&w->thread, NULL, wp_fault_thread, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		pr_err("dirty-log fault thread: %s", strerror(-ret));
		return ret;
	}
	w->thread_running = true;
	return 0;
}

void kva_wp_sync_stop(struct kva_wp *w)
{
	uint64_t one = 1;

	atomic_store(&w->stopping, true);
	if (w->thread_running) {
		if (write(w->stop_fd, &one, sizeof(one)) < 0)
			pr_perror("wake the dirty-log fault thread");
		pthread_join(w->thread, NULL);
		w->thread_running = false;
	}
}
/* SYNC: re-protect then take pending (see the top), under fault_lock. */
int kva_wp_sync_take(struct kva_wp *w, uint64_t *bm)
{
	uint64_t nw = FY_BITMAP_WORDS(w->pages), s, e, next;
	int ret = 0;

	pthread_mutex_lock(&w->fault_lock);
	s = fy_bitmap_next_set(w->pending, w->pages, 0);
	while (s < w->pages) {
		/* One span over runs of pending and short holes between. */
		e = fy_bitmap_next_clear(w->pending, w->pages, s);
		while (e < w->pages) {
			next = fy_bitmap_next_set(w->pending, w->pages, e);
			if (next >= w->pages || next - e > KVA_WP_SYNC_GAP)
				break;
			e = fy_bitmap_next_clear(w->pending, w->pages, next);
		}
		ret = kva_wp_protect(w, s, e - s, true);
		if (ret) {
			/* Take nothing: every unprotected page stays pending. */
			errno = -ret;
			pr_perror("UFFDIO_WRITEPROTECT of pages %llu-%llu",
				  (unsigned long long)s,
				  (unsigned long long)e - 1);
			goto out;
		}
		s = fy_bitmap_next_set(w->pending, w->pages, e);
	}
	for (s = 0; s < nw; s++) {
		bm[s] |= w->pending[s];
		w->pending[s] = 0;
	}
out:
	pthread_mutex_unlock(&w->fault_lock);
	return ret;
}

/* Read the soft-dirty bit of the page at p. 0/1, or -errno. */
static int soft_dirty_bit(int pm_fd, const void *p)
{
	uint64_t e;
	off_t off = (uintptr_t)p / FY_PAGE_SIZE * sizeof(e);

	if (pread(pm_fd, &e, sizeof(e), off) != sizeof(e))
		return -EIO;
	return !!(e & KVA_PM_SOFT_DIRTY);
}

static int clear_soft_dirty(int fd)
{
	if (pwrite(fd, "4", 1, 0) != 1) {
		int ret = -errno;

		pr_perror("write 4 to /proc/self/clear_refs");
		return ret;
	}
	return 0;
}

/*
 * Whether soft-dirty works here: clear, the bit is off; write the page, it
 * is on. Kernels without CONFIG_MEM_SOFT_DIRTY take the clear and never
 * set the bit.
 */
bool kva_wp_sd_works(int pm_fd, int cr_fd)
{
	volatile uint8_t *p;
	bool ok = false;

	p = mmap(NULL, FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return false;
	p[0] = 1;
	if (!clear_soft_dirty(cr_fd) && soft_dirty_bit(pm_fd, (void *)p) == 0) {
		p[0] = 2;
		ok = soft_dirty_bit(pm_fd, (void *)p) == 1;
	}
	munmap((void *)p, FY_PAGE_SIZE);
	return ok;
}
/* SOFTDIRTY: pages with bit 55 set, then clear them all. */
int kva_wp_sd_take(struct kva_wp *w, uint64_t *bm)
{
	uint64_t first, n, i, base = (uintptr_t)w->mem / FY_PAGE_SIZE;
	ssize_t got;

	for (first = 0; first < w->pages; first += n) {
		n = FY_MIN(KVA_WP_PM_CHUNK, w->pages - first);
		got = pread(w->pagemap_fd, w->pmbuf, n * sizeof(uint64_t),
			    (base + first) * sizeof(uint64_t));
		if (got != (ssize_t)(n * sizeof(uint64_t))) {
			int ret = got < 0 ? -errno : -EIO;

			pr_perror("read /proc/self/pagemap");
			return ret;
		}
		for (i = 0; i < n; i++)
			if (w->pmbuf[i] & KVA_PM_SOFT_DIRTY)
				fy_bit_set(bm, first + i);
	}
	return clear_soft_dirty(w->clear_refs_fd);
}

int kva_wp_sd_start(struct kva_wp *w)
{
	pr_warn("dirty log by soft-dirty bits: a write made while a "
		"harvest runs may be lost; pause the vCPUs around "
		"harvests");
	w->pmbuf = calloc(KVA_WP_PM_CHUNK, sizeof(uint64_t));
	return w->pmbuf ? clear_soft_dirty(w->clear_refs_fd) : -ENOMEM;
}
