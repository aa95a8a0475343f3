// SPDX-License-Identifier: MIT
/*
 * Guest RAM as the engine sees it: which pages of a memfd hold data
 * (SEEK_DATA / SEEK_HOLE: holes are never sent), their checksums for
 * --verify, its registration in parts and the HOLDER_MAP regions that
 * describe one, and letting go of a mapping and an adapter client off the
 * control thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_int.h"

int mig_mr_grow(struct fab_mr *mr, const struct fy_run *runs, size_t nr)
{
	int ret, grew = 0;

	for (size_t i = 0; i < nr; i++) {
		ret = fab_mr_grow(mr, runs[i].start * FY_PAGE_SIZE,
				  runs[i].len * FY_PAGE_SIZE);
		if (ret < 0)
			return ret;
		grew |= ret;
	}
	return grew;
}

int mig_region_of(struct proto_holder_region *r, const struct fab_rkey *rk,
		  uint64_t pages)
{
	r->key = rk->key;
	r->base = rk->addr;
	r->len = pages * FY_PAGE_SIZE;
	r->keys = NULL;
	r->nkeys = 0;
	if (!rk->runs)
		return 0;
	r->keys = calloc(FY_MAX(rk->nruns, 1), sizeof(*r->keys));
	if (!r->keys)
		return -ENOMEM;
	for (size_t i = 0; i < rk->nruns; i++)
		r->keys[i] = (struct proto_keyrun){
			.start = rk->runs[i].off / FY_PAGE_SIZE,
			.pages = rk->runs[i].len / FY_PAGE_SIZE,
			.key = rk->runs[i].key,
			.base = rk->runs[i].addr,
		};
	r->nkeys = rk->nruns;
	return 0;
}

int mig_rkey_of(const struct proto_holder_region *r, struct fab_rkey *rk,
		struct fab_keyrun **tab)
{
	struct fab_keyrun *t = NULL;

	*rk = (struct fab_rkey){ .addr = r->base,
				 .len = r->len,
				 .key = r->key };
	*tab = NULL;
	if (!r->keys)
		return 0;
	/* the decoder checked them: sorted, disjoint, inside the region */
	t = calloc(FY_MAX(r->nkeys, 1), sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < r->nkeys; i++)
		t[i] = (struct fab_keyrun){
			.off = r->keys[i].start * FY_PAGE_SIZE,
			.len = r->keys[i].pages * FY_PAGE_SIZE,
			.key = r->keys[i].key,
			.addr = r->keys[i].base,
		};
	rk->runs = t;
	rk->nruns = r->nkeys;
	*tab = t;
	return 0;
}

struct bg_release {
	void *map;
	size_t len;
	struct kva_client *kc;
	uint64_t until; /* CLOCK_MONOTONIC ns; 0: at once */
};

static void *bg_release_thread(void *arg)
{
	struct bg_release *r = arg;
	struct timespec ts = { .tv_sec = r->until / 1000000000ULL,
			       .tv_nsec = r->until % 1000000000ULL };

	/* here: the detached thread's handle is not ours once it may exit */
	pthread_setname_np(pthread_self(), "ferry-release");
	while (r->until && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
					   NULL) == EINTR)
		;
	if (r->map)
		munmap(r->map, r->len);
	kva_client_close(r->kc);
	free(r);
	return NULL;
}

void mig_release_bg(void *map, size_t len, struct kva_client *kc,
		    uint64_t keep_ns)
{
	struct bg_release *r;
	pthread_attr_t a;
	pthread_t t;
	int ret = -1;

	if (!map && !kc)
		return;
	r = malloc(sizeof(*r));
	if (r && !pthread_attr_init(&a)) {
		*r = (struct bg_release){
			.map = map,
			.len = len,
			.kc = kc,
			.until = keep_ns ? fy_now_ns() + keep_ns : 0,
		};
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		ret = pthread_create(&t, &a, bg_release_thread, r);
		pthread_attr_destroy(&a);
	}
	if (!ret)
		return; /* the thread owns r, map and kc now */
	free(r);
	if (map)
		munmap(map, len);
	kva_client_close(kc);
}

int mig_memfd_data_runs(int fd, uint64_t pages, struct fy_run **runs,
			size_t *nr)
{
	off_t end = (off_t)(pages * FY_PAGE_SIZE), pos = 0;
	struct fy_run *r = NULL;
	size_t n = 0, cap = 0;

	while (pos < end) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;

		if (data < 0) {
			if (errno == ENXIO)
				break;
			goto err;
		}
		if (data >= end)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			goto err;
		if (hole > end)
			hole = end;
		if (n == cap) {
			struct fy_run *nr2;

			cap = cap ? cap * 2 : 64;
			nr2 = realloc(r, cap * sizeof(*r));
			if (!nr2) {
				free(r);
				return -ENOMEM;
			}
			r = nr2;
		}
		/* pages: data is page aligned; a partial page counts whole */
		r[n].start = (uint64_t)data / FY_PAGE_SIZE;
		r[n].len = ((uint64_t)hole + FY_PAGE_SIZE - 1) / FY_PAGE_SIZE -
			   r[n].start;
		if (n && r[n - 1].start + r[n - 1].len >= r[n].start) {
			r[n - 1].len = r[n].start + r[n].len - r[n - 1].start;
		} else {
			n++;
		}
		pos = hole;
	}
	*runs = r;
	*nr = n;
	return 0;
err:
	pr_perror("lseek on a memfd");
	free(r);
	return -errno;
}

int mig_memfd_punch(int fd, const uint64_t *bm, uint64_t pages, bool set)
{
	uint64_t p = 0, e;

	for (;;) {
		p = set ? fy_bitmap_next_set(bm, pages, p)
			: fy_bitmap_next_clear(bm, pages, p);
		if (p >= pages)
			return 0;
		e = set ? fy_bitmap_next_clear(bm, pages, p)
			: fy_bitmap_next_set(bm, pages, p);
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      p * FY_PAGE_SIZE, (e - p) * FY_PAGE_SIZE))
			return -errno;
		p = e;
	}
}

int mig_memfd_csums(int fd, const uint8_t *base, uint64_t pages, uint64_t start,
		    uint64_t n, uint64_t *out)
{
	static const uint8_t zero[FY_PAGE_SIZE];
	uint64_t zcsum = fy_page_csum(zero);
	struct fy_run *runs;
	size_t nr, ri = 0;
	int ret;

	ret = mig_memfd_data_runs(fd, pages, &runs, &nr);
	if (ret)
		return ret;
	for (uint64_t p = start; p < start + n; p++) {
		while (ri < nr && runs[ri].start + runs[ri].len <= p)
			ri++;
		if (ri < nr && runs[ri].start <= p)
			out[p - start] = fy_page_csum(base + p * FY_PAGE_SIZE);
		else
			out[p - start] = zcsum;
	}
	free(runs);
	return 0;
}
