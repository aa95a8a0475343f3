// SPDX-License-Identifier: MIT
/*
 * The adapter protocol against real ferry-vm processes (argv[1] is the
 * ferry-vm binary): attach and layout, harvests checked against the pages
 * whose contents changed, pause and resume, re-attach after a close and
 * after a killed client, a refused second client, vCPU state moved from
 * one VM into an incoming one whose RAM a test handler serves page by page
 * through the uffd (a small post-copy migration, checked by the verify
 * guest), and bad input that must leave the running VM untouched.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"
#include "kva_test.h"

static void status(struct kva_client *c, struct kva_status *st)
{
	assert_int_equal(kva_client_status(c, st), 0);
}

/* Wait until the guest's writes pass n; the status reached, or fail. */
static struct kva_status wait_writes(struct kva_client *c, uint64_t n,
				     double seconds)
{
	uint64_t end = fy_now_ns() + (uint64_t)(seconds * 1e9);
	struct kva_status st;

	do {
		status(c, &st);
		if (st.progress.writes > n)
			return st;
		usleep(5000);
	} while (fy_now_ns() < end);
	fail_msg("guest stuck at %llu writes",
		 (unsigned long long)st.progress.writes);
	return st;
}

static void *map_memfd(const struct kva_region *g, int prot)
{
	void *p = mmap(NULL, g->size, prot, MAP_SHARED, g->memfd, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/*
 * Layout, then rounds of: run, PAUSE, HARVEST, compare the working set
 * with its copy from the previous round. The dirty guest stores its write
 * counter into each page it writes, so a page whose contents changed was
 * written, and a harvest taken while paused must hold every such page.
 */
static void test_attach_harvest_pause(void **state)
{
	struct vmproc v;
	struct kva_client *c;
	const struct kva_layout *l;
	const struct kva_guest_params *gp;
	struct kva_status s1, s2;
	const uint64_t *bm;
	uint64_t gen, dirty, prev_gen, first, pages, changed = 0, missing = 0;
	uint64_t total_dirty = 0, k;
	unsigned int round;
	uint8_t *mem, *copy;
	struct stat st;

	(void)state;
	/* At most 40k pages/s (native guests run much faster): the rounds
	 * below, 3 to 18 ms, must cover part of the set, not all of it. */
	vm_spawn(&v, "harvest", "--mem", "64M", "--vcpus", "2", "--guest",
		 "dirty", "--workingset", "16M", "--stride", "64", "--rate",
		 "40000", NULL);
	c = vm_attach(&v);
	l = kva_client_layout(c);
	assert_int_equal(l->nr_regions, 1);
	assert_int_equal(l->page_size, 4096);
	assert_int_equal(l->nr_vcpus, 2);
	assert_int_equal(l->state, KVA_VM_RUNNING);
	assert_string_equal(l->guest, "dirty");
	assert_false(l->uffd);
	assert_int_equal(kva_client_uffd(c), -1);
	assert_int_equal(l->pages, (64ULL << 20) / 4096);
	assert_int_equal(l->regions[0].gpa, 0);
	assert_int_equal(l->regions[0].size, 64ULL << 20);
	assert_int_equal(l->regions[0].pages, l->pages);
	assert_int_equal(fstat(l->regions[0].memfd, &st), 0);
	assert_int_equal(st.st_size, 64LL << 20);

	mem = map_memfd(&l->regions[0], PROT_READ);
	gp = (const void *)(mem + KVA_PARAMS_GPA);
	first = gp->data_start / 4096;
	pages = gp->workingset / 4096;
	assert_int_equal(pages, 4096);
	copy = malloc(pages * 4096);
	assert_non_null(copy);
	wait_writes(c, 0, 10);

	assert_int_equal(kva_client_pause(c), 0);
	assert_int_equal(kva_client_harvest(c, &bm, &prev_gen, &dirty), 0);
	memcpy(copy, mem + first * 4096, pages * 4096);
	for (round = 0; round < 6; round++) {
		assert_int_equal(kva_client_resume(c), 0);
		usleep(3000 + round * 3000);
		assert_int_equal(kva_client_pause(c), 0);
		/* Paused: no progress. */
		status(c, &s1);
		assert_int_equal(s1.state, KVA_VM_PAUSED);
		usleep(100000);
		status(c, &s2);
		assert_int_equal(s1.progress.writes, s2.progress.writes);
		assert_int_equal(kva_client_harvest(c, &bm, &gen, &dirty), 0);
		assert_int_equal(gen, prev_gen + 1);
		assert_int_equal(dirty, fy_bitmap_count(bm, l->pages));
		prev_gen = gen;
		total_dirty += dirty;
		for (k = 0; k < pages; k++) {
			uint8_t *now = mem + (first + k) * 4096;

			if (!memcmp(now, copy + k * 4096, 4096))
				continue;
			changed++;
			if (!fy_bit_test(bm, first + k))
				missing++;
			memcpy(copy + k * 4096, now, 4096);
		}
	}
	print_message("harvest: %llu pages changed in %u rounds of %llu, "
		      "%llu harvested dirty, %llu missing\n",
		      (unsigned long long)changed, round,
		      (unsigned long long)pages,
		      (unsigned long long)total_dirty,
		      (unsigned long long)missing);
	/* Rounds cover part of the working set: the bitmap must tell. */
	assert_true(changed > 200 && changed < round * pages);
	assert_int_equal(missing, 0);
	/* Paused and harvested: the next harvest is empty. */
	assert_int_equal(kva_client_harvest(c, &bm, &gen, &dirty), 0);
	assert_int_equal(dirty, 0);
	/* Resumed: progress again. */
	assert_int_equal(kva_client_resume(c), 0);
	s2 = wait_writes(c, s1.progress.writes, 10);
	assert_int_equal(s2.state, KVA_VM_RUNNING);
	assert_int_equal(s2.progress.failed, 0);
	munmap(mem, l->regions[0].size);
	free(copy);
	vm_exit(&v, c, 0);
}

/* Same memfd (inode) through both clients? */
static bool same_file(int a, int b)
{
	struct stat sa, sb;

	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void test_reattach(void **state)
{
	struct vmproc v;
	struct kva_client *c1, *c2, *c3, *busy = NULL;
	const uint64_t *bm;
	struct kva_status st;
	uint64_t g1, dirty;
	int pfd[2], keep;
	pid_t child;
	char ch;

	(void)state;
	vm_spawn(&v, "reattach", "--mem", "32M", "--guest", "dirty",
		 "--workingset", "1M", "--stride", "32", "--sleep", "100",
		 NULL);
	c1 = vm_attach(&v);
	assert_int_equal(kva_client_harvest(c1, &bm, &g1, &dirty), 0);
	/* One client at a time: a second is refused, the first goes on. */
	assert_int_equal(kva_client_attach(v.sock, 0, &busy), -EBUSY);
	assert_null(busy);
	assert_int_equal(kva_client_pause(c1), 0);
	keep = dup(kva_client_layout(c1)->regions[0].memfd);
	assert_true(keep >= 0);
	kva_client_close(c1);

	/* A closed client leaves the VM as it was: paused. */
	c2 = vm_attach(&v);
	assert_int_equal(kva_client_layout(c2)->state, KVA_VM_PAUSED);
	assert_int_equal(kva_client_layout(c2)->generation, g1);
	assert_true(same_file(keep, kva_client_layout(c2)->regions[0].memfd));
	assert_int_equal(kva_client_harvest(c2, &bm, &g1, &dirty), 0);
	assert_int_equal(g1, 2);
	assert_int_equal(kva_client_resume(c2), 0);
	kva_client_close(c2);

	/* A client killed while attached. */
	assert_int_equal(pipe(pfd), 0);
	child = fork();
	assert_true(child >= 0);
	if (!child) {
		struct kva_client *c;

		if (kva_client_attach(v.sock, 0, &c) ||
		    write(pfd[1], "a", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	assert_int_equal(read(pfd[0], &ch, 1), 1);
	close(pfd[0]);
	close(pfd[1]);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	c3 = vm_attach(&v);
	assert_int_equal(kva_client_layout(c3)->state, KVA_VM_RUNNING);
	assert_true(same_file(keep, kva_client_layout(c3)->regions[0].memfd));
	status(c3, &st);
	st = wait_writes(c3, st.progress.writes, 10);
	assert_int_equal(st.progress.failed, 0);
	assert_int_equal(st.generation, 2);
	close(keep);
	vm_exit(&v, c3, 0);
}

/*
 * The fault handler of the post-copy test: resolves the incoming VM's
 * faults from the (paused) source's memfd, one page at a time, with
 * UFFDIO_COPY or UFFDIO_ZEROPAGE on odd pages and, on even pages, a write
 * through its own mapping of the destination memfd then UFFDIO_CONTINUE.
 * Asked to fill, it also copies every page the source holds and the
 * destination has not received yet into the destination memfd (the
 * background pull of a post-copy); those pages fault MINOR when first
 * touched. One thread does both, so a page is placed once.
 */
struct pc_handler {
	int uffd, src_fd, dst_fd;
	uint8_t *dst;
	uint64_t base, pages;
	uint64_t *placed;
	atomic_bool fill, filled, stop;
	uint64_t fill_at; /* next source page to consider */
	uint64_t missing, minor, copies, zeros, continues, eexist, fills;
	uint64_t errors;
	uint64_t corrupt; /* page served with a flipped bit; 0: none */
	atomic_bool drop; /* read faults, resolve none: a dying ferryd */
	uint64_t drop_after; /* set drop after this many faults; 0: never */
	atomic_uint_fast64_t dropped;
};

static void pc_continue(struct pc_handler *h, uint64_t addr)
{
	struct uffdio_continue cont = { .range = { addr, 4096 } };
	struct uffdio_range wake = { addr, 4096 };

	if (!ioctl(h->uffd, UFFDIO_CONTINUE, &cont)) {
		h->continues++;
		return;
	}
	/* Mapped already: just wake whoever waits. */
	if (errno == EEXIST && !ioctl(h->uffd, UFFDIO_WAKE, &wake))
		return;
	h->errors++;
}

static void pc_fault(struct pc_handler *h, const struct uffd_msg *m)
{
	uint64_t addr = m->arg.pagefault.address & ~4095ULL;
	uint64_t page = (addr - h->base) / 4096;
	uint8_t buf[4096];
	static const uint8_t zero[4096];

	if (addr < h->base || page >= h->pages) {
		h->errors++;
		return;
	}
	/*
	 * MINOR: the page is in the memfd already, put there by whoever
	 * (maybe a previous handler); mapping it is all that is left, and
	 * rewriting it could undo the guest's own writes.
	 */
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) {
		h->minor++;
		pc_continue(h, addr);
		return;
	}
	h->missing++;
	if (fy_bit_test(h->placed, page)) {
		pc_continue(h, addr);
		return;
	}
	fy_bit_set(h->placed, page);
	if (pread(h->src_fd, buf, 4096, page * 4096) != 4096) {
		h->errors++;
		return;
	}
	if (page == h->corrupt)
		buf[512] ^= 0x20; /* verify checks words 512 bytes apart */
	if (page % 2 == 0) {
		memcpy(h->dst + page * 4096, buf, 4096);
		pc_continue(h, addr);
	} else if (!memcmp(buf, zero, 4096)) {
		struct uffdio_zeropage z = { .range = { addr, 4096 } };

		if (!ioctl(h->uffd, UFFDIO_ZEROPAGE, &z))
			h->zeros++;
		else if (errno == EEXIST && ++h->eexist)
			pc_continue(h, addr);
		else
			h->errors++;
	} else {
		struct uffdio_copy cp = { .dst = addr,
					  .src = (uintptr_t)buf,
					  .len = 4096 };

		if (!ioctl(h->uffd, UFFDIO_COPY, &cp))
			h->copies++;
		else if (errno == EEXIST && ++h->eexist)
			pc_continue(h, addr);
		else
			h->errors++;
	}
}

/* Copy up to 64 not yet placed data pages of the source. */
static void pc_fill_some(struct pc_handler *h)
{
	uint8_t buf[4096];
	unsigned int n = 0;
	off_t data;

	while (n < 64 && h->fill_at < h->pages) {
		data = lseek(h->src_fd, h->fill_at * 4096, SEEK_DATA);
		if (data < 0) {
			h->fill_at = h->pages; /* only holes left */
			break;
		}
		h->fill_at = data / 4096;
		if (!fy_bit_test(h->placed, h->fill_at)) {
			fy_bit_set(h->placed, h->fill_at);
			if (pread(h->src_fd, buf, 4096, h->fill_at * 4096) !=
				    4096 ||
			    pwrite(h->dst_fd, buf, 4096, h->fill_at * 4096) !=
				    4096)
				h->errors++;
			h->fills++;
			n++;
		}
		h->fill_at++;
	}
	if (h->fill_at >= h->pages)
		atomic_store(&h->filled, true);
}

static void *pc_thread(void *arg)
{
	struct pc_handler *h = arg;
	struct pollfd p = { .fd = h->uffd, .events = POLLIN };
	struct uffd_msg msg[16];
	ssize_t n, i;
	bool filling;

	while (!atomic_load(&h->stop)) {
		filling = atomic_load(&h->fill) && !atomic_load(&h->filled);
		if (poll(&p, 1, filling ? 0 : 20) < 0)
			break;
		n = read(h->uffd, msg, sizeof(msg));
		for (i = 0; n > 0 && i < n / (ssize_t)sizeof(msg[0]); i++) {
			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (h->drop_after &&
			    h->missing + h->minor >= h->drop_after)
				atomic_store(&h->drop, true);
			if (atomic_load(&h->drop))
				atomic_fetch_add(&h->dropped, 1);
			else
				pc_fault(h, &msg[i]);
		}
		if (filling)
			pc_fill_some(h);
	}
	return NULL;
}

static bool guest_done(struct kva_client *c, double seconds,
		       struct kva_status *st)
{
	uint64_t end = fy_now_ns() + (uint64_t)(seconds * 1e9);

	do {
		status(c, st);
		if (st->progress.done || st->progress.failed)
			return true;
		usleep(10000);
	} while (fy_now_ns() < end);
	return false;
}

/* Bad blobs are refused and change nothing. */
static void bad_blobs(struct kva_client *c, const uint8_t *blob, size_t len)
{
	uint8_t *bad = malloc(len);

	assert_non_null(bad);
	memcpy(bad, blob, len);
	bad[len / 2] ^= 1;
	assert_int_equal(kva_client_set_state(c, bad, len), -EBADMSG);
	memcpy(bad, blob, len);
	bad[4] = KVA_STATE_VERSION + 1; /* the u32 version, little-endian */
	assert_int_equal(kva_client_set_state(c, bad, len), -EPROTO);
	assert_int_equal(kva_client_set_state(c, blob, len - 8), -EBADMSG);
	free(bad);
}

/* A migration in the making: a paused source, an incoming VM. */
struct pc_mig {
	struct vmproc src, dst;
	struct kva_client *cs, *cd;
	uint64_t pass0; /* the source's pass when paused */
	uint64_t end; /* the pass the guest ends at */
	void *blob; /* its vCPU state */
	size_t len;
};

/*
 * Run verify on a source (32 MiB, ws, no end) to pass min_pass, pause it,
 * save its state, start an incoming VM and attach to both. A small
 * working set takes well under a millisecond a pass, so where the pause
 * lands is anyone's guess: once paused, the guest is told to end after
 * `more` passes from there (its params page, which it reads each pass),
 * so the destination has that many to run at any speed.
 */
static void pc_begin(struct pc_mig *m, const char *tag, const char *ws,
		     uint64_t more, bool prefill, uint64_t min_pass)
{
	char src[32], dst[32];
	struct kva_status st;
	struct kva_guest_params gp;
	int fd;

	snprintf(src, sizeof(src), "%s-src", tag);
	snprintf(dst, sizeof(dst), "%s-dst", tag);
	vm_spawn(&m->src, src, "--mem", "32M", "--guest", "verify",
		 "--workingset", ws, "--stride", "32", "--sleep", "0",
		 prefill ? "--prefill" : NULL, "random", NULL);
	vm_spawn(&m->dst, dst, "--incoming", "--mem", "32M", "--vcpus", "1",
		 NULL);
	m->cs = vm_attach(&m->src);
	do {
		status(m->cs, &st);
		assert_int_equal(st.progress.failed, 0);
		assert_int_equal(st.progress.done, 0);
		usleep(5000);
	} while (st.progress.pass < min_pass);
	assert_int_equal(kva_client_pause(m->cs), 0);
	status(m->cs, &st);
	m->pass0 = st.progress.pass;
	m->end = m->pass0 + more;
	fd = kva_client_layout(m->cs)->regions[0].memfd;
	assert_int_equal(pread(fd, &gp, sizeof(gp), KVA_PARAMS_GPA),
			 sizeof(gp));
	gp.passes = m->end;
	assert_int_equal(pwrite(fd, &gp, sizeof(gp), KVA_PARAMS_GPA),
			 sizeof(gp));
	assert_int_equal(kva_client_get_state(m->cs, &m->blob, &m->len), 0);
	assert_true(m->len > 32); /* a header and sections */
	m->cd = vm_attach(&m->dst);
}

/* Point h at the current clients' uffd and memfds. */
static void pc_handler_init(struct pc_handler *h, const struct pc_mig *m)
{
	const struct kva_layout *ls = kva_client_layout(m->cs);
	const struct kva_layout *ld = kva_client_layout(m->cd);

	if (h->dst)
		munmap(h->dst, h->pages * 4096);
	h->uffd = kva_client_uffd(m->cd);
	h->src_fd = ls->regions[0].memfd;
	h->dst_fd = ld->regions[0].memfd;
	h->dst = map_memfd(&ld->regions[0], PROT_READ | PROT_WRITE);
	h->base = ld->regions[0].uffd_base;
	h->pages = ld->pages;
	if (!h->placed)
		h->placed = fy_bitmap_alloc(h->pages);
	assert_non_null(h->placed);
}

/* EXIT both VMs; the incoming one must end with dst_status. */
static void pc_end(struct pc_mig *m, struct pc_handler *h, int dst_status)
{
	munmap(h->dst, h->pages * 4096);
	free(h->placed);
	free(m->blob);
	vm_exit(&m->dst, m->cd, dst_status);
	vm_exit(&m->src, m->cs, 0);
}

/*
 * A tiny post-copy migration: pause the source, move its vCPU state into
 * an incoming VM, resume it with a quarter of its working set in place
 * and serve its faults from the source's memfd; later pull the rest in
 * the background, declare the RAM complete, and let verify run to its
 * end: no mismatch anywhere. With corrupt, one page is served wrong and
 * the guest must say so.
 */
static void postcopy_verify(bool corrupt)
{
	struct pc_mig m;
	const struct kva_layout *ld;
	struct pc_handler h = { 0 };
	struct kva_status sd;
	struct kva_guest_params gp;
	pthread_t thread;
	uint64_t t0, k, precopied = 0;

	pc_begin(&m, corrupt ? "pcc" : "pc", "4M", 4, true, 2);
	ld = kva_client_layout(m.cd);
	assert_int_equal(ld->state, KVA_VM_INCOMING);
	assert_true(ld->uffd);
	assert_true(ld->uffd_minor); /* this kernel offers MINOR on shmem */
	assert_true(kva_client_uffd(m.cd) >= 0);
	assert_true(ld->regions[0].uffd_base != 0);
	assert_string_equal(ld->guest, "");
	/* No state yet: nothing to run or to save. */
	assert_int_equal(kva_client_resume(m.cd), -ENODATA);
	bad_blobs(m.cd, m.blob, m.len);
	assert_int_equal(kva_client_set_state(m.cd, m.blob, m.len), 0);
	/* The source is not incoming: it takes no state. */
	assert_int_equal(kva_client_set_state(m.cs, m.blob, m.len), -EBUSY);

	/* A client that re-attaches gets the uffd again. */
	kva_client_close(m.cd);
	m.cd = vm_attach(&m.dst);
	ld = kva_client_layout(m.cd);
	assert_true(ld->state_set);
	assert_int_equal(ld->state, KVA_VM_INCOMING);
	assert_true(kva_client_uffd(m.cd) >= 0);
	pc_handler_init(&h, &m);
	/*
	 * Pages pulled before the resume (a pre-copy round): in the memfd but
	 * not mapped in ferry-vm, so the guest's first touch is a MINOR fault.
	 */
	assert_int_equal(pread(h.src_fd, &gp, sizeof(gp), KVA_PARAMS_GPA),
			 sizeof(gp));
	for (k = gp.data_start / 4096;
	     k < (gp.data_start + gp.workingset) / 4096; k += 4) {
		uint8_t page[4096];

		assert_int_equal(pread(h.src_fd, page, 4096, k * 4096), 4096);
		assert_int_equal(pwrite(h.dst_fd, page, 4096, k * 4096), 4096);
		fy_bit_set(h.placed, k);
		precopied++;
	}
	/* Not a pre-copied page: it goes through the handler. */
	if (corrupt)
		h.corrupt = gp.data_start / 4096 + 101;
	assert_int_equal(pthread_create(&thread, NULL, pc_thread, &h), 0);

	t0 = fy_now_ns();
	assert_int_equal(kva_client_resume(m.cd), 0);
	if (corrupt) {
		/* The guest itself catches the bad page. */
		assert_true(guest_done(m.cd, 30, &sd));
		assert_int_equal(sd.progress.failed, 1);
		atomic_store(&h.stop, true);
		pthread_join(thread, NULL);
		print_message("post-copy with page %llu corrupted: the guest "
			      "failed at pass %llu\n",
			      (unsigned long long)h.corrupt,
			      (unsigned long long)sd.progress.pass);
		pc_end(&m, &h, 1);
		return;
	}
	/* Faults only, for two passes of the guest. */
	do {
		status(m.cd, &sd);
		assert_int_equal(sd.progress.failed, 0);
		usleep(5000);
	} while (sd.progress.pass < m.pass0 + 2 && !sd.progress.done &&
		 fy_now_ns() - t0 < 30000000000ULL);
	assert_true(sd.progress.pass >= m.pass0 + 2);
	assert_true(sd.uffd);
	/* Then pull the rest and release the uffd. */
	atomic_store(&h.fill, true);
	while (!atomic_load(&h.filled) && fy_now_ns() - t0 < 40000000000ULL)
		usleep(5000);
	assert_true(atomic_load(&h.filled));
	assert_int_equal(kva_client_ram_done(m.cd), 0);
	atomic_store(&h.stop, true);
	pthread_join(thread, NULL);
	assert_int_equal(kva_client_ram_done(m.cd), -EINVAL);

	assert_true(guest_done(m.cd, 40, &sd));
	print_message("post-copy: %llu pages before resume, %llu missing + "
		      "%llu minor faults (%llu copies, %llu zero pages, %llu "
		      "continues, %llu EEXIST), %llu pages pulled in the "
		      "background, pass %llu -> %llu, %llu checks, %.1f s\n",
		      (unsigned long long)precopied,
		      (unsigned long long)h.missing,
		      (unsigned long long)h.minor, (unsigned long long)h.copies,
		      (unsigned long long)h.zeros,
		      (unsigned long long)h.continues,
		      (unsigned long long)h.eexist, (unsigned long long)h.fills,
		      (unsigned long long)m.pass0,
		      (unsigned long long)sd.progress.pass,
		      (unsigned long long)sd.progress.checks,
		      (fy_now_ns() - t0) / 1e9);
	assert_int_equal(sd.progress.failed, 0);
	assert_int_equal(sd.progress.done, 1);
	assert_int_equal(sd.progress.pass, m.end);
	assert_false(sd.uffd);
	assert_int_equal(h.errors, 0);
	/* Every page of the working set faulted: 3/4 missing, 1/4 minor. */
	assert_true(h.missing >= 768);
	assert_true(h.minor >= 256);
	assert_true(h.copies > 0 && h.continues > 0);
	assert_true(h.fills > 0);
	pc_end(&m, &h, 0);
}

static void test_postcopy_verify(void **state)
{
	(void)state;
	postcopy_verify(false);
}

/* The same with one page served wrong: the test can fail. */
static void test_postcopy_corrupt(void **state)
{
	(void)state;
	postcopy_verify(true);
}

/*
 * ferryd dies in the middle of a post-copy, with a fault read and never
 * resolved: the vCPU waits. A new client re-attaches, gets the uffd
 * again (its attach wakes the waiting vCPU, which faults again, to it),
 * serves the faults and the guest runs to its end without a mismatch.
 */
static void test_postcopy_reattach(void **state)
{
	struct pc_mig m;
	const struct kva_layout *ld;
	struct pc_handler h = { 0 };
	struct kva_status sd, sd2;
	pthread_t thread;
	uint64_t t0, served;

	(void)state;
	pc_begin(&m, "pr", "2M", 2, false, 1);
	assert_int_equal(kva_client_set_state(m.cd, m.blob, m.len), 0);
	pc_handler_init(&h, &m);
	/* After 200 faults the handler stops resolving, then "dies". */
	h.drop_after = 200;
	assert_int_equal(pthread_create(&thread, NULL, pc_thread, &h), 0);
	t0 = fy_now_ns();
	assert_int_equal(kva_client_resume(m.cd), 0);
	while (!atomic_load(&h.dropped) && fy_now_ns() - t0 < 20000000000ULL)
		usleep(1000);
	assert_true(atomic_load(&h.dropped) > 0);
	atomic_store(&h.stop, true);
	pthread_join(thread, NULL);
	served = h.missing + h.minor;
	kva_client_close(m.cd);
	/* Nobody resolves anything now: the guest stands still. */
	usleep(100000);
	m.cd = vm_attach(&m.dst);
	ld = kva_client_layout(m.cd);
	status(m.cd, &sd);
	usleep(100000);
	status(m.cd, &sd2);
	assert_int_equal(ld->state, KVA_VM_RUNNING);
	assert_true(ld->uffd);
	assert_true(sd.uffd);
	/* (attach woke the vCPU; its fault waits in the uffd's queue) */
	assert_int_equal(sd.progress.writes, sd2.progress.writes);
	assert_int_equal(sd.progress.done + sd.progress.failed, 0);

	/* A new handler, same uffd object, same memfd. */
	pc_handler_init(&h, &m);
	h.drop_after = 0;
	atomic_store(&h.drop, false);
	atomic_store(&h.stop, false);
	assert_int_equal(pthread_create(&thread, NULL, pc_thread, &h), 0);
	assert_true(guest_done(m.cd, 30, &sd));
	atomic_store(&h.stop, true);
	pthread_join(thread, NULL);
	print_message("post-copy re-attach: %llu faults served, %llu dropped, "
		      "%llu served after re-attach; pass %llu -> %llu\n",
		      (unsigned long long)served,
		      (unsigned long long)atomic_load(&h.dropped),
		      (unsigned long long)(h.missing + h.minor - served),
		      (unsigned long long)m.pass0,
		      (unsigned long long)sd.progress.pass);
	assert_int_equal(sd.progress.failed, 0);
	assert_int_equal(sd.progress.done, 1);
	assert_int_equal(sd.progress.pass, m.end);
	assert_int_equal(h.errors, 0);
	/* The working set is 512 pages: most faulted after the re-attach. */
	assert_true(h.missing + h.minor - served > 200);
	/* EXIT with the RAM still under the uffd. */
	pc_end(&m, &h, 0);
}

/* A raw connection, to send what the client library never would. */
static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 10 };

	assert_true(s >= 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

/* A header with every field chosen by the caller, then plen zeros. */
static size_t raw_msg(uint8_t *buf, uint32_t magic, uint16_t version,
		      uint16_t type, uint32_t len, size_t plen)
{
	struct kva_wbuf w = { .p = buf, .cap = KVA_WIRE_MAX * 2 };

	kva_put_u32(&w, magic);
	kva_put_u16(&w, version);
	kva_put_u16(&w, type);
	kva_put_u32(&w, len);
	kva_put_u32(&w, 7);
	memset(buf + w.len, 0, plen);
	return w.len + plen;
}

/*
 * Send len bytes of buf (with fd if >= 0) and read the reply: its errno
 * if an ERROR, else 0 with *type set. Descriptors received are closed.
 */
static int raw_call(int s, const uint8_t *buf, size_t len, int fd,
		    uint16_t *type)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	uint8_t rbuf[KVA_WIRE_MAX];
	int fds[KVA_WIRE_MAX_FDS];
	unsigned int nfds;
	struct kva_hdr h;
	struct kva_rbuf r;
	const char *why;
	bool trunc;
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *cm;

		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(s, &msg, 0), (ssize_t)len);
	n = kva_wire_recv(s, rbuf, fds, &nfds, &trunc);
	assert_true(n > 0);
	kva_wire_close_fds(fds, &nfds);
	assert_int_equal(kva_wire_parse(rbuf, n, &h, &r, &why), 0);
	*type = h.type;
	return h.type == KVA_MSG_ERROR ? (int)kva_get_u32(&r) : 0;
}

static int raw_req(int s, uint32_t magic, uint16_t version, uint16_t type,
		   uint32_t len, size_t plen, int fd)
{
	static uint8_t buf[KVA_WIRE_MAX * 2];
	uint16_t t;
	size_t n = raw_msg(buf, magic, version, type, len, plen);

	return raw_call(s, buf, n, fd, &t);
}

static void test_bad_input(void **state)
{
	const uint32_t M = KVA_WIRE_MAGIC;
	const uint16_t V = KVA_WIRE_VERSION;
	struct vmproc v;
	struct kva_client *c;
	struct kva_status s1, s2;
	uint8_t buf[64];
	uint16_t type;
	size_t n;
	int s, efd;

	(void)state;
	vm_spawn(&v, "bad", "--mem", "32M", "--guest", "dirty", "--workingset",
		 "1M", "--stride", "32", "--sleep", "100", NULL);
	c = vm_attach(&v);
	status(c, &s1);
	kva_client_close(c);

	s = raw_connect(v.sock);
	efd = eventfd(0, EFD_CLOEXEC);
	assert_true(efd >= 0);
	/* Before ATTACH. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 0, 0, -1), ENOTCONN);
	/* Shorter than a header. */
	assert_int_equal(raw_call(s, (const uint8_t *)"FYAD!", 5, -1, &type),
			 EBADMSG);
	assert_int_equal(type, KVA_MSG_ERROR);
	/* No common version. */
	n = raw_msg(buf, M, 9, KVA_MSG_ATTACH, 8, 8);
	buf[16] = 9;
	buf[18] = 9;
	assert_int_equal(raw_call(s, buf, n, -1, &type), EPROTONOSUPPORT);
	/* ATTACH of the wrong size. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_ATTACH, 4, 4, -1), EBADMSG);
	/* A good ATTACH (versions 1..1). */
	n = raw_msg(buf, M, V, KVA_MSG_ATTACH, 8, 8);
	buf[16] = 1;
	buf[18] = 1;
	assert_int_equal(raw_call(s, buf, n, -1, &type), 0);
	assert_int_equal(type, KVA_MSG_ATTACH | KVA_MSG_REPLY);
	/* Framing: magic, length field, size. */
	assert_int_equal(raw_req(s, 0x12345678, V, KVA_MSG_HARVEST, 0, 0, -1),
			 EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 4, 0, -1), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 0, 4, -1), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 4, 4, -1), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_PAUSE, 8, 8, -1), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_SET_STATE, 4, 4, efd),
			 EBADMSG);
	/* Larger than any record. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 5000, 5000, -1),
			 EMSGSIZE);
	/* Unknown types, replies as requests, another version. */
	assert_int_equal(raw_req(s, M, V, 77, 0, 0, -1), EBADRQC);
	assert_int_equal(raw_req(s, M, V, 0, 0, 0, -1), EBADRQC);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST | KVA_MSG_REPLY, 0, 0,
				 -1),
			 EBADRQC);
	assert_int_equal(raw_req(s, M, V + 1, KVA_MSG_HARVEST, 0, 0, -1),
			 EPROTO);
	/* Missing and extra descriptors. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_SET_STATE, 8, 8, -1),
			 EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 0, 0, efd), EBADMSG);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_EXIT, 0, 0, efd), EBADMSG);
	/* Requests the VM's state forbids. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_SET_STATE, 8, 8, efd), EBUSY);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_GET_STATE, 0, 0, -1), EBUSY);
	assert_int_equal(raw_req(s, M, V, KVA_MSG_RAM_DONE, 0, 0, -1), EINVAL);
	/* The connection still works. */
	assert_int_equal(raw_req(s, M, V, KVA_MSG_HARVEST, 0, 0, -1), 0);
	/* A client that sends and leaves without reading. */
	n = raw_msg(buf, M, V, KVA_MSG_STATUS, 0, 0);
	assert_int_equal(send(s, buf, n, 0), (ssize_t)n);
	close(s);
	close(efd);

	/* The VM did not notice. */
	c = vm_attach(&v);
	assert_int_equal(kva_client_layout(c)->state, KVA_VM_RUNNING);
	s2 = wait_writes(c, s1.progress.writes + 100, 10);
	assert_int_equal(s2.progress.failed, 0);
	assert_int_equal(s2.state, KVA_VM_RUNNING);
	vm_exit(&v, c, 0);
}

/* Command-line refusals and a stale socket file taken over. */
static void test_cli(void **state)
{
	struct vmproc v;
	struct kva_client *c;
	int fd;

	(void)state;
	vm_spawn(&v, "cli", "--incoming", "--restore", "/nonexistent", NULL);
	assert_int_equal(vm_wait(&v, 10), 2);
	/* A socket file nobody listens on is replaced. */
	snprintf(v.sock, sizeof(v.sock), "/tmp/ferry-kva-%d-stale.sock",
		 (int)getpid());
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		strcpy(sa.sun_path, v.sock);
		unlink(v.sock);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)),
				 0);
	}
	close(fd);
	vm_spawn(&v, "stale", "--mem", "16M", "--guest", "idle", NULL);
	c = vm_attach(&v);
	assert_string_equal(kva_client_layout(c)->guest, "idle");
	vm_exit(&v, c, 0);
	vm_kill(&v);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cli),
		cmocka_unit_test(test_attach_harvest_pause),
		cmocka_unit_test(test_reattach),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_postcopy_verify),
		cmocka_unit_test(test_postcopy_corrupt),
		cmocka_unit_test(test_postcopy_reattach),
	};

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s FERRY-VM [kvm|user]\n", argv[0]);
		return 2;
	}
	vm_init(argv[1], argv[2], "kva");
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
