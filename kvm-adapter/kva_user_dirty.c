// SPDX-License-Identifier: MIT
/*
 * The user accelerator's dirty log: which pages of guest RAM (a MAP_SHARED
 * mapping of the memfd in this process) were written, by userfaultfd
 * write-protection (uffd-wp). The API is in kva_accel.h. This file picks
 * the mode, registers the range, harvests and releases; the modes for
 * kernels before 6.7, SYNC (5.19 to 6.6) and SOFTDIRTY (soft-dirty bits),
 * are in kva_user_dirty_compat.c.
 *
 * ASYNC (6.7+: UFFD_FEATURE_WP_ASYNC). The range is registered WP and
 * protected whole (on shmem the kernel keeps a marker in each empty pte, so
 * holes are protected too; for 512 GiB that is 1 GiB of page tables). A
 * write to a protected page is let through by the kernel, which only drops
 * the protection. A harvest is PAGEMAP_SCAN with PM_SCAN_WP_MATCHING over
 * the range, reporting PAGE_IS_WRITTEN: under each page table's lock the
 * kernel reads and re-protects every written page, so a write lands either
 * before (reported now) or after (faults, reported next time); none is
 * lost. With category and return mask exactly PAGE_IS_WRITTEN the kernel
 * takes its fast path, where an empty pte without a marker (a written page
 * dropped by MADV_DONTNEED, MADV_PAGEOUT or a hole punched in the memfd)
 * counts as written too. The output vector has a fixed size: the scan stops
 * when it is full and says where (walk_end); we go on from there.
 *
 * Incoming (an incoming VM's empty RAM). The same range is registered
 * MISSING (and MINOR) on a userfaultfd that ferryd resolves from its
 * process. ASYNC uses one uffd for both: WP faults never make messages,
 * so ferryd sees only its own. SYNC cannot (ferryd would get the WP
 * messages): the incoming uffd registers MISSING|MINOR only and tracking
 * starts at release, whose first harvest reports every page with data in
 * the memfd (mincore(); all pages if the host swaps, as a swapped-out page
 * is not in core). SOFTDIRTY tracks from the start, the uffd aside.
 *
 * Release in ASYNC. UFFDIO_UNREGISTER is the only way to drop MISSING and
 * MINOR, and it drops the protection of every pte with them, so the
 * written state is lost from there until the range is protected again.
 * Per 64 MiB chunk, the writers running:
 *   1. MADV_DONTNEED: empty the ptes (the memfd keeps the data). Protected
 *      ones become markers; written ones become empty, still "written".
 *   2. harvest the chunk into `carry`: every write so far is in it, and
 *      the chunk holds nothing but markers and the pages faulted in since 1.
 *   3. UFFDIO_UNREGISTER and UFFDIO_WAKE (wakes waiters: see
 *      wp_unregister()), UFFDIO_REGISTER WP alone, UFFDIO_WRITEPROTECT: a
 *      write from 2 to here needs its page present.
 *   4. PAGEMAP_SCAN for PAGE_IS_PRESENT into `carry`: pages faulted in
 *      since 1, read or written, a small set (extra pages, never a miss).
 * A write after 3 faults as usual. A touch between 1 and 3 of a page the
 * VM had mapped before raises a MINOR fault: ferryd answers it (CONTINUE,
 * or WAKE on EEXIST) or step 3 wakes it. A shmem page written then swapped
 * out within those few milliseconds would be missed (no swap: none).
 *
 * Pages placed by ferryd with UFFDIO_COPY or CONTINUE are mapped writable
 * and show as written once, an extra page. Any failure that may have lost
 * part of the state makes the next harvest report every page (all_dirty).
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_user_dirty.h"

/* 6.7 UAPI that older headers lack; the kernel decides at run time. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

struct pm_scan_arg {
	uint64_t size;
	uint64_t flags;
	uint64_t start;
	uint64_t end;
	uint64_t walk_end;
	uint64_t vec;
	uint64_t vec_len;
	uint64_t max_pages;
	uint64_t category_inverted;
	uint64_t category_mask;
	uint64_t category_anyof_mask;
	uint64_t return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PRESENT (1 << 3)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

#define KVA_WP_VEC 512 /* page_regions per PAGEMAP_SCAN */
#define KVA_WP_RELEASE_CHUNK (64ULL << 20) /* bytes per release step */
#define KVA_WP_MINCORE_CHUNK (1ULL << 30) /* bytes per mincore() */

const char *kva_wp_mode_name(enum kva_wp_mode m)
{
	switch (m) {
	case KVA_WP_ASYNC:
		return "async";
	case KVA_WP_SYNC:
		return "sync";
	case KVA_WP_SOFTDIRTY:
		return "soft-dirty";
	case KVA_WP_AUTO:
		break;
	}
	return "auto";
}

enum kva_wp_mode kva_wp_mode(const struct kva_wp *w)
{
	return w->mode;
}

int kva_wp_uffd(const struct kva_wp *w)
{
	return w->in_fd;
}

bool kva_wp_minor(const struct kva_wp *w)
{
	return w->in_fd >= 0 && w->minor;
}

bool kva_wp_incoming_tracks(const struct kva_wp *w)
{
	return w->in_fd >= 0 && w->in_fd == w->wp_fd;
}

/* Set bits [first, first + n) of bm. */
static void bm_set_range(uint64_t *bm, uint64_t first, uint64_t n)
{
	uint64_t end = first + n;

	while (first < end && first % 64)
		fy_bit_set(bm, first++);
	for (; first + 64 <= end; first += 64)
		bm[first / 64] = ~0ULL;
	while (first < end)
		fy_bit_set(bm, first++);
}

/*
 * PAGEMAP_SCAN pages [first, first + n): set in bm each page whose
 * categories include mask; with PM_SCAN_WP_MATCHING, re-protect them.
 * Goes on from walk_end whenever the vector fills. 0 or -errno (then part
 * of the pages may have been re-protected without being reported).
 */
static int wp_scan(struct kva_wp *w, uint64_t first, uint64_t n, uint64_t flags,
		   uint64_t mask, uint64_t *bm)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = flags | PM_SCAN_CHECK_WPASYNC,
		.start = (uintptr_t)(w->mem + first * FY_PAGE_SIZE),
		.end = (uintptr_t)(w->mem + (first + n) * FY_PAGE_SIZE),
		.vec = (uintptr_t)w->vec,
		.vec_len = KVA_WP_VEC,
		.category_mask = mask,
		.return_mask = mask,
	};
	uint64_t end = arg.end;
	long i, nr;

	while (arg.start < end) {
		arg.walk_end = 0;
		nr = ioctl(w->pagemap_fd, PAGEMAP_SCAN, &arg);
		if (nr < 0) {
			int ret = -errno;

			pr_perror("PAGEMAP_SCAN of guest RAM");
			return ret;
		}
		for (i = 0; i < nr; i++) {
			uint64_t s = w->vec[i].start, e = w->vec[i].end;

			if (s < arg.start || e > end || s >= e) {
				pr_err("PAGEMAP_SCAN returned %#llx-%#llx "
				       "outside %#llx-%#llx",
				       (unsigned long long)s,
				       (unsigned long long)e,
				       (unsigned long long)arg.start,
				       (unsigned long long)end);
				return -EIO;
			}
			bm_set_range(bm, kva_wp_page(w, s),
				     (e - s) / FY_PAGE_SIZE);
		}
		if (arg.walk_end <= arg.start || arg.walk_end > end) {
			pr_err("PAGEMAP_SCAN stopped at %#llx in %#llx-%#llx",
			       (unsigned long long)arg.walk_end,
			       (unsigned long long)arg.start,
			       (unsigned long long)end);
			return -EIO;
		}
		arg.start = arg.walk_end;
	}
	return 0;
}

/* UFFDIO_WRITEPROTECT pages [first, first + n) on or off. 0 or -errno. */
int kva_wp_protect(struct kva_wp *w, uint64_t first, uint64_t n, bool on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)(w->mem + first * FY_PAGE_SIZE),
			   .len = n * FY_PAGE_SIZE },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	int tries = 0;

	/* EAGAIN: the mm is changing under a non-cooperative event. */
	while (ioctl(w->wp_fd, UFFDIO_WRITEPROTECT, &wp)) {
		if (errno != EAGAIN || ++tries > 1000)
			return -errno;
		usleep(100);
	}
	return 0;
}

static int wp_register(int fd, void *mem, uint64_t len, uint64_t mode,
		       uint64_t need, const char *what)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)mem, .len = len },
		.mode = mode,
	};

	if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
		int ret = -errno;

		pr_perror("UFFDIO_REGISTER of guest RAM (%s)", what);
		return ret;
	}
	if ((reg.ioctls & need) != need) {
		pr_err("userfaultfd on guest RAM (%s) lacks ioctls %#llx", what,
		       (unsigned long long)(need & ~reg.ioctls));
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * Unregister, then wake every thread waiting on a fault of the range. The
 * kernel's own wake in UFFDIO_UNREGISTER is not enough: it comes before the
 * VMA is write-locked, and a fault taken under the per-VMA lock (not
 * mmap_lock) can queue itself between the two and sleep. Nobody answers it
 * then: ferryd's COPY or CONTINUE fails with ENOENT, which it ignores (and
 * the kernel's wake is for MISSING ranges only, none for WP). Once
 * UNREGISTER returns every such fault has queued (it drops the VMA lock
 * only after), so this wake finds it; woken, it faults again, on the range
 * as it is now.
 */
static int wp_unregister(int fd, void *mem, uint64_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)mem, .len = len };
	int ret;

	if (ioctl(fd, UFFDIO_UNREGISTER, &r)) {
		ret = -errno;
		pr_perror("UFFDIO_UNREGISTER of guest RAM");
		return ret;
	}
	if (ioctl(fd, UFFDIO_WAKE, &r)) {
		ret = -errno;
		pr_perror("UFFDIO_WAKE of guest RAM after unregistering");
		return ret;
	}
	return 0;
}

/* Whether any swap area is on: a swapped-out shmem page is not in core. */
static bool host_swaps(void)
{
	char line[256];
	int lines = 0;
	FILE *f = fopen("/proc/swaps", "re");

	if (!f)
		return true;
	while (fgets(line, sizeof(line), f))
		lines++;
	fclose(f);
	return lines > 1;
}

/* Set in bm every page with data in the memfd (see the top). 0 or -errno. */
static int wp_mark_populated(struct kva_wp *w, uint64_t *bm)
{
	uint64_t off, len, i, chunk_pages = KVA_WP_MINCORE_CHUNK / FY_PAGE_SIZE;
	unsigned char *vec;

	if (host_swaps()) {
		bm_set_range(bm, 0, w->pages);
		return 0;
	}
	vec = malloc(chunk_pages);
	if (!vec)
		return -ENOMEM;
	for (off = 0; off < w->size; off += len) {
		len = FY_MIN(KVA_WP_MINCORE_CHUNK, w->size - off);
		if (mincore(w->mem + off, len, vec)) {
			int ret = -errno;

			pr_perror("mincore of guest RAM");
			free(vec);
			return ret;
		}
		for (i = 0; i < len / FY_PAGE_SIZE; i++)
			if (vec[i] & 1)
				fy_bit_set(bm, off / FY_PAGE_SIZE + i);
	}
	free(vec);
	return 0;
}

/*
 * The WP features to ask for in mode m, or 0 if the kernel's offered
 * features lack them.
 */
static uint64_t wp_features(enum kva_wp_mode m, uint64_t offered)
{
	uint64_t need = UFFD_FEATURE_WP_HUGETLBFS_SHMEM;

	if (m == KVA_WP_ASYNC)
		need |= UFFD_FEATURE_WP_ASYNC;
	if ((offered & need) != need)
		return 0;
	return need | (offered & UFFD_FEATURE_WP_UNPOPULATED);
}

/* The uffd features the kernel offers, or -errno if there is no uffd. */
static int64_t uffd_offered(void)
{
	uint64_t offered = 0;
	int fd = kva_uffd_open(0, &offered);

	if (fd < 0)
		return fd;
	close(fd);
	return (int64_t)offered;
}

/* Pick the mode; -EOPNOTSUPP (logged) if none fits. */
static int wp_pick_mode(struct kva_wp *w, enum kva_wp_mode want,
			int64_t offered)
{
	uint64_t f = offered < 0 ? 0 : (uint64_t)offered;
	bool sd;

	if (want == KVA_WP_ASYNC || want == KVA_WP_SYNC) {
		if (wp_features(want, f)) {
			w->mode = want;
			return 0;
		}
		pr_err("dirty log: %s write-protection of shmem is not "
		       "offered by this kernel (%s)",
		       kva_wp_mode_name(want),
		       want == KVA_WP_ASYNC ? "needs 6.7+" : "needs 5.19+");
		return -EOPNOTSUPP;
	}
	if (want == KVA_WP_AUTO && wp_features(KVA_WP_ASYNC, f)) {
		w->mode = KVA_WP_ASYNC;
		return 0;
	}
	if (want == KVA_WP_AUTO && wp_features(KVA_WP_SYNC, f)) {
		w->mode = KVA_WP_SYNC;
		return 0;
	}
	w->clear_refs_fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	sd = w->clear_refs_fd >= 0 &&
	     kva_wp_sd_works(w->pagemap_fd, w->clear_refs_fd);
	if (sd) {
		w->mode = KVA_WP_SOFTDIRTY;
		return 0;
	}
	if (want == KVA_WP_SOFTDIRTY)
		pr_err("dirty log: soft-dirty does not work on this kernel "
		       "(no CONFIG_MEM_SOFT_DIRTY: bit 55 of pagemap is never "
		       "set)");
	else
		pr_err("dirty log: this kernel has neither userfaultfd "
		       "write-protection of shmem (5.19+) nor working "
		       "soft-dirty bits: cannot track guest RAM writes");
	return -EOPNOTSUPP;
}

/* Register the incoming range on a new uffd: w->in_fd. */
static int wp_open_incoming(struct kva_wp *w, uint64_t offered)
{
	uint64_t feat, mode = UFFDIO_REGISTER_MODE_MISSING, need;
	int ret;

	w->minor = offered & UFFD_FEATURE_MINOR_SHMEM;
	feat = (offered & UFFD_FEATURE_MINOR_SHMEM) |
	       (offered & UFFD_FEATURE_THREAD_ID);
	need = 1ULL << _UFFDIO_COPY | 1ULL << _UFFDIO_WAKE;
	if (w->minor) {
		mode |= UFFDIO_REGISTER_MODE_MINOR;
		need |= 1ULL << _UFFDIO_CONTINUE;
	}
	if (w->mode == KVA_WP_ASYNC) {
		feat |= wp_features(KVA_WP_ASYNC, offered);
		mode |= UFFDIO_REGISTER_MODE_WP;
		need |= 1ULL << _UFFDIO_WRITEPROTECT;
	}
	w->in_fd = kva_uffd_open(feat, NULL);
	if (w->in_fd < 0)
		return w->in_fd;
	ret = wp_register(w->in_fd, w->mem, w->size, mode, need, "incoming");
	if (ret) {
		close(w->in_fd);
		w->in_fd = -1;
		return ret;
	}
	if (w->mode == KVA_WP_ASYNC)
		w->wp_fd = w->in_fd;
	return 0;
}

/*
 * Register the range WP on w->wp_fd (opened here unless ASYNC + incoming
 * did it), start the fault thread in SYNC, protect the whole range.
 */
static int wp_arm(struct kva_wp *w, uint64_t offered)
{
	uint64_t need = 1ULL << _UFFDIO_WRITEPROTECT, probe = 0;
	int ret;

	if (w->wp_fd < 0) {
		w->wp_fd = kva_uffd_open(wp_features(w->mode, offered), NULL);
		if (w->wp_fd < 0)
			return w->wp_fd;
		ret = wp_register(w->wp_fd, w->mem, w->size,
				  UFFDIO_REGISTER_MODE_WP, need, "write");
		if (ret) {
			close(w->wp_fd);
			w->wp_fd = -1;
			return ret;
		}
	}
	if (w->mode == KVA_WP_SYNC) {
		ret = kva_wp_sync_start(w);
		if (ret)
			return ret;
	}
	ret = kva_wp_protect(w, 0, w->pages, true);
	if (ret) {
		errno = -ret;
		pr_perror("UFFDIO_WRITEPROTECT of guest RAM");
		return ret;
	}
	if (w->mode == KVA_WP_ASYNC) {
		/* Check PAGEMAP_SCAN and WP_ASYNC on one page, read-only. */
		ret = wp_scan(w, 0, 1, 0, PAGE_IS_WRITTEN, &probe);
		if (ret)
			return ret;
	}
	w->tracking = true;
	return 0;
}

int kva_wp_open(void *mem, uint64_t size, enum kva_wp_mode mode, bool incoming,
		struct kva_wp **out)
{
	const char *what;
	int64_t offered;
	struct kva_wp *w;
	int ret;

	*out = NULL;
	if (!mem || (uintptr_t)mem % FY_PAGE_SIZE || !size ||
	    size % FY_PAGE_SIZE || mode > KVA_WP_SOFTDIRTY) {
		pr_err("dirty log: bad range %p + %#llx or mode %d", mem,
		       (unsigned long long)size, mode);
		return -EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->mem = mem;
	w->size = size;
	w->pages = size / FY_PAGE_SIZE;
	w->wp_fd = w->in_fd = w->clear_refs_fd = w->stop_fd = -1;
	w->pagemap_fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->fault_lock, NULL);
	w->carry = fy_bitmap_alloc(w->pages);
	w->vec = calloc(KVA_WP_VEC, sizeof(*w->vec));
	if (!w->carry || !w->vec) {
		ret = -ENOMEM;
		goto err;
	}
	w->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (w->pagemap_fd < 0) {
		ret = -errno;
		pr_perror("open /proc/self/pagemap");
		goto err;
	}
	offered = uffd_offered();
	if (offered < 0 &&
	    (incoming || mode == KVA_WP_ASYNC || mode == KVA_WP_SYNC)) {
		ret = (int)offered;
		goto err;
	}
	ret = wp_pick_mode(w, mode, offered);
	if (ret)
		goto err;
	if (incoming) {
		ret = wp_open_incoming(w, offered);
		if (ret)
			goto err;
	}
	switch (w->mode) {
	case KVA_WP_ASYNC:
		ret = wp_arm(w, offered);
		break;
	case KVA_WP_SYNC:
		w->pending = fy_bitmap_alloc(w->pages);
		if (!w->pending)
			ret = -ENOMEM;
		else if (!incoming)
			ret = wp_arm(w, offered);
		break;
	default:
		ret = kva_wp_sd_start(w);
		w->tracking = !ret;
		break;
	}
	if (ret)
		goto err;
	if (!incoming)
		what = "";
	else if (w->mode == KVA_WP_SYNC)
		what = ", incoming RAM: from RAM_DONE on";
	else
		what = ", incoming RAM";
	pr_info("dirty log of %llu MiB by %s write-tracking%s",
		(unsigned long long)(size >> 20), kva_wp_mode_name(w->mode),
		what);
	*out = w;
	return 0;

err:
	kva_wp_close(w);
	return ret;
}

int kva_wp_harvest(struct kva_wp *w, uint64_t *bm)
{
	uint64_t i;
	int ret;

	pthread_mutex_lock(&w->lock);
	if (!w->tracking)
		ret = wp_mark_populated(w, bm);
	else if (w->mode == KVA_WP_ASYNC)
		ret = wp_scan(w, 0, w->pages, PM_SCAN_WP_MATCHING,
			      PAGE_IS_WRITTEN, bm);
	else if (w->mode == KVA_WP_SYNC)
		ret = kva_wp_sync_take(w, bm);
	else
		ret = kva_wp_sd_take(w, bm);
	if (ret) {
		/* Pages re-armed but not reported: report all next time. */
		w->all_dirty = true;
		goto out;
	}
	if (w->all_dirty) {
		bm_set_range(bm, 0, w->pages);
		w->all_dirty = false;
	}
	if (w->carry_any) {
		for (i = 0; i < FY_BITMAP_WORDS(w->pages); i++) {
			bm[i] |= w->carry[i];
			w->carry[i] = 0;
		}
		w->carry_any = false;
	}
out:
	pthread_mutex_unlock(&w->lock);
	return ret;
}

/* ASYNC release of pages [first, first + n): steps 1-4 at the top. */
static int wp_release_async_chunk(struct kva_wp *w, uint64_t first, uint64_t n)
{
	uint8_t *p = w->mem + first * FY_PAGE_SIZE;
	uint64_t len = n * FY_PAGE_SIZE;
	int ret;

	/* 1. Not needed for exactness, only to keep step 4's set small. */
	if (madvise(p, len, MADV_DONTNEED))
		pr_perror("MADV_DONTNEED of guest RAM at release (every "
			  "mapped page will count as written)");
	ret = wp_scan(w, first, n, PM_SCAN_WP_MATCHING, PAGE_IS_WRITTEN,
		      w->carry);
	w->carry_any = true;
	if (ret)
		return ret;
	ret = wp_unregister(w->wp_fd, p, len);
	if (ret)
		return ret;
	ret = wp_register(w->wp_fd, p, len, UFFDIO_REGISTER_MODE_WP,
			  1ULL << _UFFDIO_WRITEPROTECT, "write");
	if (ret)
		return ret;
	ret = kva_wp_protect(w, first, n, true);
	if (ret) {
		errno = -ret;
		pr_perror("UFFDIO_WRITEPROTECT of guest RAM");
		return ret;
	}
	return wp_scan(w, first, n, 0, PAGE_IS_PRESENT, w->carry);
}

/* SYNC release: hand the range from the incoming uffd to a WP one. */
static int wp_release_sync(struct kva_wp *w)
{
	int64_t offered;
	int ret;

	ret = wp_unregister(w->in_fd, w->mem, w->size);
	if (ret)
		return ret;
	close(w->in_fd);
	w->in_fd = -1;
	offered = uffd_offered();
	if (offered < 0)
		return (int)offered;
	ret = wp_arm(w, offered);
	if (ret)
		return ret;
	/* After protecting: a write before it left its page with data. */
	ret = wp_mark_populated(w, w->carry);
	w->carry_any = true;
	return ret;
}

int kva_wp_release_incoming(struct kva_wp *w)
{
	uint64_t first, n, chunk = KVA_WP_RELEASE_CHUNK / FY_PAGE_SIZE;
	int ret = 0;

	pthread_mutex_lock(&w->lock);
	if (w->in_fd < 0) {
		pthread_mutex_unlock(&w->lock);
		return -EINVAL;
	}
	switch (w->mode) {
	case KVA_WP_ASYNC:
		/* A failed release may be tried again from the start. */
		for (first = 0; !ret && first < w->pages; first += n) {
			n = FY_MIN(chunk, w->pages - first);
			ret = wp_release_async_chunk(w, first, n);
		}
		/* The uffd stays ours, registered WP alone. */
		if (!ret)
			w->in_fd = -1;
		break;
	case KVA_WP_SYNC:
		ret = wp_release_sync(w);
		break;
	default:
		ret = wp_unregister(w->in_fd, w->mem, w->size);
		if (!ret) {
			close(w->in_fd);
			w->in_fd = -1;
		}
		break;
	}
	if (ret)
		w->all_dirty = true;
	else
		pr_info("dirty log: incoming RAM released, %s tracking goes on",
			kva_wp_mode_name(w->mode));
	pthread_mutex_unlock(&w->lock);
	return ret;
}

void kva_wp_close(struct kva_wp *w)
{
	if (!w)
		return;
	atomic_store(&w->stopping, true);
	/* Wakes every thread waiting on a fault of the range (logs errors). */
	if (w->wp_fd >= 0)
		wp_unregister(w->wp_fd, w->mem, w->size);
	if (w->in_fd >= 0 && w->in_fd != w->wp_fd)
		wp_unregister(w->in_fd, w->mem, w->size);
	kva_wp_sync_stop(w);
	if (w->in_fd >= 0 && w->in_fd != w->wp_fd)
		close(w->in_fd);
	if (w->wp_fd >= 0)
		close(w->wp_fd);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->pagemap_fd >= 0)
		close(w->pagemap_fd);
	if (w->clear_refs_fd >= 0)
		close(w->clear_refs_fd);
	pthread_mutex_destroy(&w->lock);
	pthread_mutex_destroy(&w->fault_lock);
	free(w->carry);
	free(w->pending);
	free(w->vec);
	free(w->pmbuf);
	free(w);
}
