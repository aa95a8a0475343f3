// SPDX-License-Identifier: MIT
/*
 * pc_fault against a real incoming ferry-vm running the verify guest
 * (argv[1] is the ferry-vm binary): the source VM is paused in its first
 * pass (so part of its working set is still holes), a holder process
 * (this binary re-executed) registers the source's memfd in its own
 * fabric domain, and the incoming VM's RAM is served only by pc_fault over
 * loopback ofi:tcp. The holder is killed mid-run: faults stall, the guest
 * stops; a second holder is handed over with pc_fault_set_holder(), a
 * stand-in background puller takes the pre-page queue and then every page
 * left, RAM_DONE, and verify must finish every pass without a mismatch.
 * With `placed` (ferryd's zero-copy puller), some data pages are also in
 * the incoming memfd before the resume with garbage in them, as pages
 * allocated ahead of the reads are: the guest must never see it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "kvm-adapter/kvm_adapter.h"
#include "kva_test.h"
#include "postcopy/postcopy.h"
#include "tests/postcopy/pc_holder.h"

#define HOLDER_MEM_FD 100
#define HOLDER_SOCK_FD 101

static const char *self_exe;

/* The holder: the inherited memfd, served. */
static int holder_main(uint64_t size)
{
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 HOLDER_MEM_FD, 0);

	return holder_serve(HOLDER_SOCK_FD, mem, size, -errno, NULL);
}

static void holder_start(struct holder *h, int memfd, uint64_t size)
{
	int sv[2];
	char sz[32];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
	h->pid = fork();
	assert_true(h->pid >= 0);
	if (!h->pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		dup2(memfd, HOLDER_MEM_FD);
		dup2(sv[1], HOLDER_SOCK_FD);
		execl(self_exe, self_exe, "--holder", sz, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(holder_started(h, sv), 0);
}

static struct kva_status status(struct kva_client *c)
{
	struct kva_status st;

	assert_int_equal(kva_client_status(c, &st), 0);
	return st;
}

/* The stand-in background puller: pre-page queue first, then linear. */
struct puller {
	struct pc_fault *fs;
	struct fab_domain *dom;
	struct fab_ep *ep;
	struct fab_rkey rkey;
	struct fab_mr *mr;
	uint8_t *buf;
	int uffd;
	uint64_t base, pages;
	const uint64_t *holes;
	uint64_t *present;
	uint64_t *placed; /* or NULL */
	uint8_t *map;
	uint64_t pulled, prepaged, errors;
	atomic_bool done;
	pthread_t thread;
};

static bool claim(uint64_t *bm, uint64_t page)
{
	uint64_t bit = 1ULL << (page % 64);

	return !(__atomic_fetch_or(&bm[page / 64], bit, __ATOMIC_ACQ_REL) &
		 bit);
}

/*
 * The next page from `from` on that nobody claimed, or pages: the fault
 * thread sets bits of bm meanwhile, so every word is read atomically.
 */
static uint64_t next_unclaimed(uint64_t *bm, uint64_t pages, uint64_t from)
{
	uint64_t w, word;

	for (w = from / 64; w * 64 < pages; w++) {
		word = ~__atomic_load_n(&bm[w], __ATOMIC_ACQUIRE);
		if (w == from / 64)
			word &= ~0ULL << (from % 64);
		if (word)
			return FY_MIN(w * 64 + __builtin_ctzll(word), pages);
	}
	return pages;
}

static int pull_page(struct puller *p, uint64_t page)
{
	struct uffdio_copy c = { .dst = p->base + page * 4096,
				 .src = (uintptr_t)p->buf,
				 .len = 4096 };
	struct fab_cqe cqe;
	int ret, n;

	do {
		ret = fab_read(p->ep, p->buf, 4096, p->mr, &p->rkey,
			       page * 4096, p);
		if (ret == -EAGAIN)
			fab_poll(p->dom, &cqe, 1, 1);
	} while (ret == -EAGAIN);
	if (ret)
		return ret;
	do
		n = fab_poll(p->dom, &cqe, 1, 100);
	while (n == 0);
	if (n < 0 || cqe.status)
		return n < 0 ? n : cqe.status;
	/* atomic for the guest */
	if (!ioctl(p->uffd, UFFDIO_COPY, &c)) {
		if (p->placed)
			claim(p->placed, page);
		return 0;
	}
	if (errno != EEXIST || !p->placed)
		return -errno;
	/* allocated ahead, not placed: ours, we claimed it */
	struct uffdio_continue k = { .range = { c.dst, 4096 } };

	memcpy(p->map + page * 4096, p->buf, 4096);
	claim(p->placed, page);
	if (ioctl(p->uffd, UFFDIO_CONTINUE, &k) && errno != EEXIST)
		return -errno;
	return 0;
}

static void *puller_thread(void *arg)
{
	struct puller *p = arg;
	uint64_t q[64], page;
	size_t n, i;

	for (;;) {
		n = pc_fault_prepage_take(p->fs, q, ARRAY_SIZE(q));
		for (i = 0; i < n; i++) {
			if (!claim(p->present, q[i]))
				continue;
			if (pull_page(p, q[i]))
				p->errors++;
			p->prepaged++;
		}
		page = next_unclaimed(p->present, p->pages, 0);
		while (page < p->pages && fy_bit_test(p->holes, page))
			page = next_unclaimed(p->present, p->pages, page + 1);
		if (page >= p->pages)
			break;
		if (!claim(p->present, page))
			continue;
		if (pull_page(p, page))
			p->errors++;
		p->pulled++;
	}
	atomic_store(&p->done, true);
	return NULL;
}

static struct fab_ep *connect_to(struct fab_domain *d, const struct holder *h)
{
	struct fab_ep *ep = NULL;

	assert_int_equal(fab_ep_connect(d, &h->info.addr, &ep), 0);
	return ep;
}

/* One run of the test, phase by phase. */
struct pc_run {
	enum pc_fault_mode mode;
	bool ahead;
	struct vmproc src, dst;
	struct kva_client *cs, *cd;
	const struct kva_layout *ls, *ld;
	struct holder h1, h2;
	struct fab_domain *fdom, *pdom;
	struct pc_fault_params fp;
	struct pc_fault_stats fst;
	struct pc_fault *fs;
	struct puller pl;
	uint64_t *holes, *present, *placed, pages, nholes, w1;
	uint64_t t0, nahead;
	uint8_t *map;
	void *blob;
	size_t len;
	int uffd;
};

/* Both VMs up; the source paused in pass 0, its holes found, a holder up. */
static void src_pause(struct pc_run *r)
{
	struct kva_status st;
	uint64_t k;

	/* At most 20k pages/s, so that a pause lands inside pass 0. */
	vm_spawn(&r->src, "src", "--mem", "32M", "--guest", "verify",
		 "--workingset", "8M", "--stride", "32", "--rate", "20000",
		 "--passes", "5", NULL);
	vm_spawn(&r->dst, "dst", "--incoming", "--mem", "32M", "--vcpus", "1",
		 NULL);
	r->cs = vm_attach(&r->src);
	/* Pause inside pass 0: the unwritten rest of the set is holes. */
	do {
		st = status(r->cs);
		usleep(2000);
	} while (st.progress.writes < 300);
	assert_int_equal(kva_client_pause(r->cs), 0);
	st = status(r->cs);
	assert_int_equal(st.progress.pass, 0);
	assert_int_equal(kva_client_get_state(r->cs, &r->blob, &r->len), 0);
	r->ls = kva_client_layout(r->cs);
	r->pages = r->ls->pages;
	r->holes = fy_bitmap_alloc(r->pages);
	r->present = fy_bitmap_alloc(r->pages);
	assert_non_null(r->holes);
	assert_non_null(r->present);
	for (k = 0; k < r->pages; k++) {
		off_t d = lseek(r->ls->regions[0].memfd, k * 4096, SEEK_DATA);

		if (d < 0 || (uint64_t)d >= (k + 1) * 4096) {
			fy_bit_set(r->holes, k);
			r->nholes++;
		}
	}
	assert_true(r->nholes > 0 && r->nholes < r->pages);
	holder_start(&r->h1, r->ls->regions[0].memfd, r->ls->regions[0].size);
}

/* The incoming VM with the state, some pages copied, some allocated ahead. */
static void dst_prepare(struct pc_run *r)
{
	const struct kva_layout *ls = r->ls, *ld;
	uint64_t k;

	r->cd = vm_attach(&r->dst);
	ld = r->ld = kva_client_layout(r->cd);
	assert_int_equal(ld->pages, r->pages);
	assert_true(ld->uffd && ld->uffd_minor);
	assert_int_equal(kva_client_set_state(r->cd, r->blob, r->len), 0);
	r->uffd = kva_client_uffd(r->cd);
	r->map = mmap(NULL, ld->regions[0].size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, ld->regions[0].memfd, 0);
	assert_true(r->map != MAP_FAILED);

	/*
	 * A pre-copy round before the resume: every 4th data page is in the
	 * memfd already, so the guest's first touch of it is a MINOR fault.
	 */
	for (k = 0; k < r->pages; k += 4) {
		uint8_t page[4096];

		if (fy_bit_test(r->holes, k))
			continue;
		assert_int_equal(pread(ls->regions[0].memfd, page, 4096,
				       k * 4096),
				 4096);
		assert_int_equal(pwrite(ld->regions[0].memfd, page, 4096,
					k * 4096),
				 4096);
		fy_bit_set(r->present, k);
	}
	/* allocated ahead: in the memfd, garbage, neither claimed nor placed */
	if (r->ahead) {
		uint8_t junk[4096];

		r->placed = fy_bitmap_alloc(r->pages);
		assert_non_null(r->placed);
		memcpy(r->placed, r->present, (r->pages + 63) / 64 * 8);
		memset(junk, 0xa5, sizeof(junk));
		for (k = 1; k < r->pages; k += 4) {
			if (fy_bit_test(r->holes, k))
				continue;
			assert_int_equal(pwrite(ld->regions[0].memfd, junk,
						4096, k * 4096),
					 4096);
			r->nahead++;
		}
		assert_true(r->nahead > 0);
	}
}

/* pc_fault serving the incoming VM's RAM from the first holder. */
static void fault_open(struct pc_run *r)
{
	struct fab_opts fo = { .op_timeout_ms = 500 };
	struct pc_fault_params *fp = &r->fp;

	assert_int_equal(fab_domain_open(&fo, &r->fdom), 0);
	fp->uffd = r->uffd;
	fp->uffd_base = r->ld->regions[0].uffd_base;
	fp->minor = r->ld->uffd_minor;
	fp->map = r->map;
	fp->pages = r->pages;
	fp->dom = r->fdom;
	fp->ep = connect_to(r->fdom, &r->h1);
	fp->rkey = r->h1.info.rkey;
	fp->holes = r->holes;
	fp->present = r->present;
	fp->placed = r->placed;
	fp->mode = r->mode;
	fp->spin_us = 0; /* the default: spin 200 us, then poll() */
	fp->prepage_max = 32;
	/* COPY also pre-pages by itself, between faults */
	fp->prepage_self = r->mode == PC_FAULT_COPY;
	assert_int_equal(pc_fault_open(fp, &r->fs), 0);
}

/* Resume on faults alone; then the holder dies and the guest stops. */
static void resume_and_stall(struct pc_run *r)
{
	struct pc_fault_stats fst;
	struct kva_status st;

	r->t0 = fy_now_ns();
	assert_int_equal(kva_client_resume(r->cd), 0);
	/* Faults only, until some pages came over the network. */
	do {
		pc_fault_stats(r->fs, &fst);
		st = status(r->cd);
		assert_int_equal(st.progress.failed, 0);
		usleep(2000);
	} while (fst.served - fst.zero_pages < 40 &&
		 fy_now_ns() - r->t0 < 10000000000ULL);
	assert_true(fst.served - fst.zero_pages >= 40);

	/* The holder dies: faults stall, the guest stops, nothing fails. */
	holder_kill(&r->h1);
	do {
		pc_fault_stats(r->fs, &fst);
		usleep(2000);
	} while (!fst.stalled && fy_now_ns() - r->t0 < 20000000000ULL);
	assert_true(fst.stalled);
	usleep(100000);
	r->w1 = status(r->cd).progress.writes;
	usleep(400000);
	st = status(r->cd);
	assert_int_equal(st.progress.writes, r->w1);
	assert_int_equal(st.progress.failed, 0);
	assert_int_equal(st.progress.done, 0);
}

/* A second holder for the fault server and the puller; pull the rest. */
static void hand_over(struct pc_run *r)
{
	struct fab_opts po = { 0 };
	struct puller *pl = &r->pl;
	struct kva_status st;

	/* A new holder, same memory: the fault server and a puller use it. */
	holder_start(&r->h2, r->ls->regions[0].memfd, r->ls->regions[0].size);
	assert_int_equal(pc_fault_set_holder(r->fs, connect_to(r->fdom, &r->h2),
					     &r->h2.info.rkey),
			 0);
	assert_int_equal(fab_domain_open(&po, &r->pdom), 0);
	pl->fs = r->fs;
	pl->dom = r->pdom;
	pl->ep = connect_to(r->pdom, &r->h2);
	pl->rkey = r->h2.info.rkey;
	pl->buf = aligned_alloc(4096, 4096);
	assert_non_null(pl->buf);
	assert_int_equal(fab_mr_reg(r->pdom, pl->buf, 4096, FAB_ACCESS_LOCAL,
				    &pl->mr),
			 0);
	pl->uffd = r->uffd;
	pl->base = r->fp.uffd_base;
	pl->pages = r->pages;
	pl->holes = r->holes;
	pl->present = r->present;
	pl->placed = r->placed;
	pl->map = r->map;
	/* Let faults alone run a while, then the background pull. */
	do {
		st = status(r->cd);
		usleep(2000);
	} while (st.progress.writes < r->w1 + 500 && !st.progress.done &&
		 fy_now_ns() - r->t0 < 30000000000ULL);
	assert_true(st.progress.writes >= r->w1 + 500 || st.progress.done);
	assert_int_equal(pthread_create(&pl->thread, NULL, puller_thread, pl),
			 0);
	pthread_join(pl->thread, NULL);
	assert_int_equal(pl->errors, 0);
}

/* RAM_DONE once every page is placed; r->fst is pc_fault's last word. */
static void ram_done(struct pc_run *r)
{
	/*
	 * Every page is claimed now, not every page is placed: a page the
	 * server claimed may still be on its way (after the stall, several
	 * are). RAM_DONE before it lands would leave a hole the guest reads
	 * as zeros. ferryd waits the same way (mig_post.c).
	 */
	do {
		pc_fault_stats(r->fs, &r->fst);
		usleep(1000);
	} while (r->fst.busy && fy_now_ns() - r->t0 < 40000000000ULL);
	assert_int_equal(r->fst.busy, 0);
	assert_int_equal(kva_client_ram_done(r->cd), 0);
	pc_fault_stats(r->fs, &r->fst);
	pc_fault_close(r->fs);
}

/* The guest finishes every pass; what pc_fault did is as it should be. */
static void check_done(struct pc_run *r)
{
	const struct pc_fault_stats *fst = &r->fst;
	struct kva_status st;

	do {
		st = status(r->cd);
		usleep(10000);
	} while (!st.progress.done && !st.progress.failed &&
		 fy_now_ns() - r->t0 < 45000000000ULL);
	print_message("post-copy (%s): %llu missing + %llu minor faults, "
		      "%llu zero pages (%llu holes), p50 %.1f us p99 %.1f us "
		      "max %.1f us, blocktime %.1f ms, %llu pre-page queued "
		      "(%llu taken, puller fetched %llu of them), window %u, "
		      "%llu pulled, %llu pre-paged by pc_fault, "
		      "stall %.3f s (%llu), pass %llu, %.1f s\n",
		      r->mode == PC_FAULT_COPY
			      ? (r->ahead ? "copy, allocated ahead" : "copy")
			      : "continue",
		      (unsigned long long)fst->missing,
		      (unsigned long long)fst->minor,
		      (unsigned long long)fst->zero_pages,
		      (unsigned long long)r->nholes, fst->p50_ns / 1e3,
		      fst->p99_ns / 1e3, fst->max_ns / 1e3,
		      fst->blocktime_ns / 1e6,
		      (unsigned long long)fst->prepage_queued,
		      (unsigned long long)fst->prepage_taken,
		      (unsigned long long)r->pl.prepaged, fst->window,
		      (unsigned long long)r->pl.pulled,
		      (unsigned long long)fst->prepaged, fst->stall_ns / 1e9,
		      (unsigned long long)fst->stalls,
		      (unsigned long long)st.progress.pass,
		      (fy_now_ns() - r->t0) / 1e9);
	assert_int_equal(st.progress.failed, 0);
	assert_int_equal(st.progress.done, 1);
	assert_int_equal(st.progress.pass, 5);
	assert_true(fst->missing > 0);
	assert_true(fst->minor > 0);
	assert_true(fst->served > 0);
	assert_true(fst->zero_pages > 0);
	assert_true(fst->zero_pages <= r->nholes);
	assert_true(fst->p50_ns > 0 && fst->p50_ns <= fst->p99_ns &&
		    fst->p99_ns <= fst->max_ns);
	assert_true(fst->blocktime_ns > 0);
	assert_true(fst->stalls >= 1);
	assert_true(fst->stall_ns >= 400000000ULL);
	assert_int_equal(fst->holder_swaps, 1);
	assert_true(fst->prepage_queued > 0);
	if (r->fp.prepage_self)
		assert_true(fst->prepaged > 0);
	else
		assert_int_equal(fst->prepaged, 0);
}

static void run_close(struct pc_run *r)
{
	fab_mr_dereg(r->pl.mr);
	fab_domain_close(r->pdom);
	free(r->pl.buf);
	fab_domain_close(r->fdom);
	munmap(r->map, r->ld->regions[0].size);
	holder_kill(&r->h2);
	vm_exit(&r->dst, r->cd, 0);
	vm_exit(&r->src, r->cs, 0);
	free(r->holes);
	free(r->present);
	free(r->placed);
	free(r->blob);
}

static void postcopy(enum pc_fault_mode mode, bool ahead)
{
	struct pc_run r = { .mode = mode, .ahead = ahead };

	src_pause(&r);
	dst_prepare(&r);
	fault_open(&r);
	resume_and_stall(&r);
	hand_over(&r);
	ram_done(&r);
	check_done(&r);
	run_close(&r);
}

static void test_fault_continue(void **state)
{
	(void)state;
	postcopy(PC_FAULT_CONTINUE, false);
}

static void test_fault_copy(void **state)
{
	(void)state;
	postcopy(PC_FAULT_COPY, false);
}

static void test_fault_ahead(void **state)
{
	(void)state;
	postcopy(PC_FAULT_COPY, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_continue),
		cmocka_unit_test(test_fault_copy),
		cmocka_unit_test(test_fault_ahead),
	};

	self_exe = "/proc/self/exe";
	if (argc == 3 && !strcmp(argv[1], "--holder"))
		return holder_main(strtoull(argv[2], NULL, 0));
	if (argc < 2) {
		fprintf(stderr, "usage: %s FERRY-VM [kvm|user]\n", argv[0]);
		return 2;
	}
	vm_init(argv[1], argv[2], "fault");
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
