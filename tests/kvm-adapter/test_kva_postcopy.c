// SPDX-License-Identifier: MIT
/*
 * Post-copy through the adapter protocol, against real ferry-vm processes
 * (argv[1] is the ferry-vm binary, argv[2] the accelerator): vCPU state
 * moved from one VM into an incoming one whose RAM a test handler serves
 * page by page through the uffd (checked by the verify guest), a page
 * served wrong, and a client that dies with a fault unresolved. The rest
 * of the protocol is in test_kva_adapter.c.
 */
#include <dirent.h>
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
		vm_status(c, st);
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
 * No vCPU thread of process pid blocks the kick (SIGUSR1): an incoming
 * VM's vCPUs are started by the adapter server, which blocks every signal,
 * and a blocked kick left a pause waiting for the guest's own next exit.
 * At least one vCPU thread is looked at.
 */
static void kick_reaches_vcpus(pid_t pid)
{
	unsigned seen = 0;
	char path[300], line[160];
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	assert_non_null(dir);
	while ((e = readdir(dir))) {
		unsigned long long blk = 0;
		bool vcpu = false;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status",
			 (int)pid, e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			if (!strncmp(line, "Name:\tferry-vcpu", 16))
				vcpu = true;
			sscanf(line, "SigBlk: %llx", &blk);
		}
		fclose(f);
		if (!vcpu)
			continue;
		seen++;
		assert_false(blk & (1ULL << (SIGUSR1 - 1)));
	}
	closedir(dir);
	assert_true(seen > 0);
}

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
		vm_status(m->cs, &st);
		assert_int_equal(st.progress.failed, 0);
		assert_int_equal(st.progress.done, 0);
		usleep(5000);
	} while (st.progress.pass < min_pass);
	assert_int_equal(kva_client_pause(m->cs), 0);
	vm_status(m->cs, &st);
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
	h->dst = vm_map_memfd(&ld->regions[0], PROT_READ | PROT_WRITE);
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
 * The incoming VM before its resume: a uffd, no state (nothing to run),
 * bad blobs refused, then the state taken; a client that re-attaches
 * gets the uffd again.
 */
static void pc_incoming(struct pc_mig *m)
{
	const struct kva_layout *ld = kva_client_layout(m->cd);

	assert_int_equal(ld->state, KVA_VM_INCOMING);
	assert_true(ld->uffd);
	assert_true(ld->uffd_minor); /* this kernel offers MINOR on shmem */
	assert_true(kva_client_uffd(m->cd) >= 0);
	assert_true(ld->regions[0].uffd_base != 0);
	assert_string_equal(ld->guest, "");
	/* No state yet: nothing to run or to save. */
	assert_int_equal(kva_client_resume(m->cd), -ENODATA);
	bad_blobs(m->cd, m->blob, m->len);
	assert_int_equal(kva_client_set_state(m->cd, m->blob, m->len), 0);
	/* The source is not incoming: it takes no state. */
	assert_int_equal(kva_client_set_state(m->cs, m->blob, m->len), -EBUSY);

	/* A client that re-attaches gets the uffd again. */
	kva_client_close(m->cd);
	m->cd = vm_attach(&m->dst);
	ld = kva_client_layout(m->cd);
	assert_true(ld->state_set);
	assert_int_equal(ld->state, KVA_VM_INCOMING);
	assert_true(kva_client_uffd(m->cd) >= 0);
}

/*
 * Pages pulled before the resume (a pre-copy round), every 4th of the
 * working set: in the memfd but not mapped in ferry-vm, so the guest's
 * first touch is a MINOR fault. The guest's parameters in *gp; returns
 * how many pages.
 */
static uint64_t pc_precopy(struct pc_handler *h, struct kva_guest_params *gp)
{
	uint64_t k, precopied = 0;

	assert_int_equal(pread(h->src_fd, gp, sizeof(*gp), KVA_PARAMS_GPA),
			 sizeof(*gp));
	for (k = gp->data_start / 4096;
	     k < (gp->data_start + gp->workingset) / 4096; k += 4) {
		uint8_t page[4096];

		assert_int_equal(pread(h->src_fd, page, 4096, k * 4096), 4096);
		assert_int_equal(pwrite(h->dst_fd, page, 4096, k * 4096), 4096);
		fy_bit_set(h->placed, k);
		precopied++;
	}
	return precopied;
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
	struct pc_handler h = { 0 };
	struct kva_status sd;
	struct kva_guest_params gp;
	pthread_t thread;
	uint64_t t0, precopied;

	pc_begin(&m, corrupt ? "pcc" : "pc", "4M", 4, true, 2);
	pc_incoming(&m);
	pc_handler_init(&h, &m);
	precopied = pc_precopy(&h, &gp);
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
		vm_status(m.cd, &sd);
		assert_int_equal(sd.progress.failed, 0);
		usleep(5000);
	} while (sd.progress.pass < m.pass0 + 2 && !sd.progress.done &&
		 fy_now_ns() - t0 < 30000000000ULL);
	assert_true(sd.progress.pass >= m.pass0 + 2);
	assert_true(sd.uffd);
	kick_reaches_vcpus(m.dst.pid);
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
	vm_status(m.cd, &sd);
	usleep(100000);
	vm_status(m.cd, &sd2);
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

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_postcopy_verify),
		cmocka_unit_test(test_postcopy_corrupt),
		cmocka_unit_test(test_postcopy_reattach),
	};

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s FERRY-VM [kvm|user]\n", argv[0]);
		return 2;
	}
	vm_init(argv[1], argv[2], "kvapc");
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
