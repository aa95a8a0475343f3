// SPDX-License-Identifier: MIT
/*
 * bench_postcopy: the 4 KiB post-copy fault service time through pc_fault,
 * side by side in one run with its two raw parts measured alone:
 *   - a raw 4 KiB fabric read (fabric/, one at a time, spinning on the CQ)
 *     from a holder process (this binary re-executed, a ferry domain with
 *     a progress thread, like ferryd);
 *   - a raw userfaultfd fault resolved by UFFDIO_COPY from a handler thread
 *     of the same process, the handler blocked in poll() or busy-polling;
 *   - pc_fault: a thread touches pages of a memfd mapping registered with a
 *     uffd (MISSING|MINOR), pc_fault serves each from the holder, in COPY
 *     and in CONTINUE (zero-copy) mode, its thread blocking in poll()
 *     at once (spin_us -1), spinning 200 µs after activity (the default),
 *     or always spinning.
 * A sample is the time of one touch (the faulting thread's view). Each
 * figure is the median over rounds of that round's percentile.
 *
 * Usage: bench_postcopy [-n SAMPLES] [-r ROUNDS] [-p PROVIDER]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "postcopy/postcopy.h"
#include "tests/postcopy/pc_holder.h"

#define PG 4096ULL
#define MEM_FD 100
#define SOCK_FD 101
#define MAX_ROUNDS 9

static const char *provider;

static int holder_main(uint64_t size)
{
	void *mem = mmap(NULL, size, PROT_READ, MAP_SHARED, MEM_FD, 0);

	return holder_serve(SOCK_FD, mem, size, -errno, provider);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void pct(uint64_t *s, size_t n, double *p50, double *p99)
{
	qsort(s, n, sizeof(*s), cmp_u64);
	*p50 = s[n / 2] / 1e3;
	*p99 = s[(n * 99) / 100] / 1e3;
}

static double median(const double *v, int n)
{
	double t[MAX_ROUNDS];
	int i, j;

	memcpy(t, v, n * sizeof(*v));
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && t[j] < t[j - 1]; j--) {
			double x = t[j];

			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	return t[n / 2];
}

static int uffd_open(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 || ioctl(fd, UFFDIO_API, &api)) {
		perror("userfaultfd");
		exit(1);
	}
	return fd;
}

/* raw fabric read */

static void raw_read(struct fab_domain *d, struct fab_ep *ep,
		     const struct fab_rkey *rk, uint64_t pages, uint64_t *s,
		     size_t n, double *p50, double *p99)
{
	static uint8_t buf[PG] __attribute__((aligned(4096)));
	struct fab_mr *mr;
	struct fab_cqe c;
	size_t i;
	int got;

	if (fab_mr_reg(d, buf, PG, FAB_ACCESS_LOCAL, &mr))
		exit(1);
	for (i = 0; i < n; i++) {
		uint64_t t0 = fy_now_ns();

		while ((got = fab_read(ep, buf, PG, mr, rk,
				       (i * 7 % pages) * PG, buf)) == -EAGAIN)
			fab_poll(d, &c, 1, 0);
		if (got) {
			fprintf(stderr, "fab_read: %s\n", strerror(-got));
			exit(1);
		}
		while (!(got = fab_poll(d, &c, 1, 0)))
			sched_yield();
		if (got < 0 || c.status) {
			fprintf(stderr, "read failed\n");
			exit(1);
		}
		s[i] = fy_now_ns() - t0;
	}
	fab_mr_dereg(mr);
	pct(s, n, p50, p99);
}

/* raw userfaultfd: UFFDIO_COPY from a handler thread */

struct raw_uffd {
	int uffd;
	bool busy;
	atomic_bool stop;
	uint8_t src[PG] __attribute__((aligned(4096)));
};

static void *raw_handler(void *arg)
{
	struct raw_uffd *r = arg;
	struct pollfd p = { .fd = r->uffd, .events = POLLIN };
	struct uffd_msg m;

	while (!atomic_load(&r->stop)) {
		if (!r->busy && poll(&p, 1, 10) <= 0)
			continue;
		if (read(r->uffd, &m, sizeof(m)) != sizeof(m)) {
			if (r->busy)
				sched_yield();
			continue;
		}
		struct uffdio_copy c = {
			.dst = m.arg.pagefault.address & ~(PG - 1),
			.src = (uintptr_t)r->src,
			.len = PG,
		};
		ioctl(r->uffd, UFFDIO_COPY, &c);
	}
	return NULL;
}

static void touch(volatile uint8_t *mem, uint64_t *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t t0 = fy_now_ns();

		(void)mem[i * PG + 64];
		s[i] = fy_now_ns() - t0;
	}
}

static void raw_uffd(bool busy, uint64_t *s, size_t n, double *p50, double *p99)
{
	struct raw_uffd *r = aligned_alloc(4096, sizeof(*r));
	int mfd = memfd_create("raw", MFD_CLOEXEC);
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	pthread_t t;
	uint8_t *mem;

	if (!r || mfd < 0 || ftruncate(mfd, n * PG))
		exit(1);
	memset(r, 0, sizeof(*r));
	memset(r->src, 0x5a, PG);
	r->busy = busy;
	r->uffd = uffd_open(0);
	mem = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	reg.range.start = (uintptr_t)mem;
	reg.range.len = n * PG;
	if (mem == MAP_FAILED || ioctl(r->uffd, UFFDIO_REGISTER, &reg))
		exit(1);
	pthread_create(&t, NULL, raw_handler, r);
	usleep(20000);
	touch(mem, s, n);
	atomic_store(&r->stop, true);
	pthread_join(t, NULL);
	munmap(mem, n * PG);
	close(r->uffd);
	close(mfd);
	free(r);
	pct(s, n, p50, p99);
}

/* pc_fault */

struct fault_cfg {
	const char *name;
	enum pc_fault_mode mode;
	int spin_us;
};

static const struct fault_cfg cfgs[] = {
	{ "pc_fault copy, poll()", PC_FAULT_COPY, -1 },
	{ "pc_fault copy, spin 200us", PC_FAULT_COPY, 200 },
	{ "pc_fault copy, busy", PC_FAULT_COPY, INT_MAX },
	{ "pc_fault continue, poll()", PC_FAULT_CONTINUE, -1 },
	{ "pc_fault continue, spin 200us", PC_FAULT_CONTINUE, 200 },
	{ "pc_fault continue, busy", PC_FAULT_CONTINUE, INT_MAX },
};

static void fault_run(const struct fault_cfg *cfg, struct fab_domain *d,
		      const struct fab_addr *peer, const struct fab_rkey *rk,
		      uint64_t *s, size_t n, double *p50, double *p99,
		      struct pc_fault_stats *st)
{
	struct pc_fault_params p = { 0 };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING |
					       UFFDIO_REGISTER_MODE_MINOR };
	int mfd = memfd_create("guest", MFD_CLOEXEC);
	uint8_t *guest, *map;
	struct pc_fault *fs;
	uint64_t *present = fy_bitmap_alloc(n);
	struct fab_ep *ep;
	int uffd, ret;

	if (mfd < 0 || ftruncate(mfd, n * PG) || !present)
		exit(1);
	uffd = uffd_open(UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_THREAD_ID);
	guest = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	map = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	reg.range.start = (uintptr_t)guest;
	reg.range.len = n * PG;
	if (guest == MAP_FAILED || map == MAP_FAILED ||
	    ioctl(uffd, UFFDIO_REGISTER, &reg))
		exit(1);
	if (fab_ep_connect(d, peer, &ep))
		exit(1);
	p.uffd = uffd;
	p.uffd_base = (uintptr_t)guest;
	p.minor = true;
	p.map = map;
	p.pages = n;
	p.dom = d;
	p.ep = ep;
	p.rkey = *rk;
	p.present = present;
	p.mode = cfg->mode;
	p.spin_us = cfg->spin_us;
	p.prepage_max = 0; /* every touch a fault */
	ret = pc_fault_open(&p, &fs);
	if (ret) {
		fprintf(stderr, "pc_fault_open: %s\n", strerror(-ret));
		exit(1);
	}
	usleep(20000);
	touch(guest, s, n);
	pc_fault_stats(fs, st);
	pc_fault_close(fs);
	munmap(guest, n * PG);
	munmap(map, n * PG);
	close(uffd);
	close(mfd);
	free(present);
	pct(s, n, p50, p99);
}

/* Each figure of each round: the raw parts, then one row per cfgs[]. */
enum { R_READ, R_UPOLL, R_UBUSY, R_CFG0 };
struct results {
	double p50[R_CFG0 + ARRAY_SIZE(cfgs)][MAX_ROUNDS];
	double p99[R_CFG0 + ARRAY_SIZE(cfgs)][MAX_ROUNDS];
	double bt[ARRAY_SIZE(cfgs)][MAX_ROUNDS];
	double sp50[ARRAY_SIZE(cfgs)][MAX_ROUNDS];
};

/*
 * The holder process, serving pages of random data; its info in *hi and
 * the socket whose EOF ends it in *sock. Its pid, or -1.
 */
static pid_t holder_spawn(const char *argv0, uint64_t holder_pages,
			  struct holder_info *hi, int *sock)
{
	uint64_t i, *s;
	int sv[2], mfd;
	pid_t pid;

	/* the holder's memory: random data */
	mfd = memfd_create("holder", 0);
	if (mfd < 0 || ftruncate(mfd, holder_pages * PG))
		return -1;
	s = malloc(holder_pages * PG);
	if (!s)
		return -1;
	for (i = 0; i < holder_pages * PG / 8; i++)
		s[i] = i * 0x9e3779b97f4a7c15ULL;
	if (pwrite(mfd, s, holder_pages * PG, 0) !=
	    (ssize_t)(holder_pages * PG))
		return -1;
	free(s);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return -1;
	pid = fork();
	if (!pid) {
		char sz[32];

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		snprintf(sz, sizeof(sz), "%llu",
			 (unsigned long long)(holder_pages * PG));
		/* the holder runs until its socket reads EOF: no copy of ours */
		close(sv[0]);
		dup2(mfd, MEM_FD);
		dup2(sv[1], SOCK_FD);
		execl("/proc/self/exe", argv0, "--holder", sz, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	if (read(sv[0], hi, sizeof(*hi)) != sizeof(*hi) || hi->status) {
		fprintf(stderr, "holder failed\n");
		return -1;
	}
	*sock = sv[0];
	return pid;
}

static void report(const struct results *res, const char *prov, size_t n,
		   int rounds)
{
	fflush(stderr);
	printf("bench_postcopy: provider %s, %zu faults per figure, median of "
	       "%d rounds\n",
	       prov, n, rounds);
	printf("%-32s %8s %8s %9s %11s %11s\n", "4 KiB", "p50 us", "p99 us",
	       "p99/p50", "srv p50 us", "blocktm ms");
	printf("%-32s %8.1f %8.1f %9.2f\n", "raw fabric read",
	       median(res->p50[R_READ], rounds),
	       median(res->p99[R_READ], rounds),
	       median(res->p99[R_READ], rounds) /
		       median(res->p50[R_READ], rounds));
	printf("%-32s %8.1f %8.1f %9.2f\n", "raw uffd COPY, poll() handler",
	       median(res->p50[R_UPOLL], rounds),
	       median(res->p99[R_UPOLL], rounds),
	       median(res->p99[R_UPOLL], rounds) /
		       median(res->p50[R_UPOLL], rounds));
	printf("%-32s %8.1f %8.1f %9.2f\n", "raw uffd COPY, busy handler",
	       median(res->p50[R_UBUSY], rounds),
	       median(res->p99[R_UBUSY], rounds),
	       median(res->p99[R_UBUSY], rounds) /
		       median(res->p50[R_UBUSY], rounds));
	for (size_t c = 0; c < ARRAY_SIZE(cfgs); c++) {
		double a = median(res->p50[R_CFG0 + c], rounds);
		double b = median(res->p99[R_CFG0 + c], rounds);

		printf("%-32s %8.1f %8.1f %9.2f %11.1f %11.1f\n", cfgs[c].name,
		       a, b, b / a, median(res->sp50[c], rounds),
		       median(res->bt[c], rounds));
	}
	printf("\ntargets: p50 <= 1.2 x (raw read + raw uffd) and p99 <= 4 x "
	       "p50\n");
	printf("%-32s %14s %14s\n", "", "p50/(1.2*sum)", "p99/(4*p50)");
	for (size_t c = 0; c < ARRAY_SIZE(cfgs); c++) {
		/* compare with the raw uffd handler that waits the same way */
		int u = cfgs[c].spin_us < 0 ? R_UPOLL : R_UBUSY;
		double sum = median(res->p50[R_READ], rounds) +
			     median(res->p50[u], rounds);
		double a = median(res->p50[R_CFG0 + c], rounds);
		double b = median(res->p99[R_CFG0 + c], rounds);

		printf("%-32s %14.2f %14.2f\n", cfgs[c].name, a / (1.2 * sum),
		       b / (4 * a));
	}
}

int main(int argc, char **argv)
{
	struct results res;
	size_t n = 2000;
	int rounds = 3, opt, r, sock;
	uint64_t holder_pages = 16384, *s;
	struct holder_info hi;
	struct fab_opts fo = { 0 };
	struct fab_domain *d;
	struct fab_ep *ep;
	pid_t pid;

	if (argc == 3 && !strcmp(argv[1], "--holder")) {
		provider = getenv("BENCH_PROVIDER");
		return holder_main(strtoull(argv[2], NULL, 0));
	}
	while ((opt = getopt(argc, argv, "n:r:p:")) != -1) {
		switch (opt) {
		case 'n':
			n = strtoul(optarg, NULL, 0);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'p':
			provider = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-n SAMPLES] [-r ROUNDS] "
				"[-p PROVIDER]\n",
				argv[0]);
			return 2;
		}
	}
	if (rounds < 1 || rounds > MAX_ROUNDS || n < 100 || n > holder_pages)
		return 2;
	if (provider)
		setenv("BENCH_PROVIDER", provider, 1);
	signal(SIGPIPE, SIG_IGN);

	pid = holder_spawn(argv[0], holder_pages, &hi, &sock);
	if (pid < 0)
		return 1;
	fo.provider = provider;
	if (fab_domain_open(&fo, &d) || fab_ep_connect(d, &hi.addr, &ep))
		return 1;
	s = calloc(n, sizeof(*s));
	/* warm up the connection */
	raw_read(d, ep, &hi.rkey, holder_pages, s, 100, &res.p50[0][0],
		 &res.p99[0][0]);

	for (r = 0; r < rounds; r++) {
		struct pc_fault_stats st;
		size_t c;

		raw_read(d, ep, &hi.rkey, holder_pages, s, n,
			 &res.p50[R_READ][r], &res.p99[R_READ][r]);
		raw_uffd(false, s, n, &res.p50[R_UPOLL][r],
			 &res.p99[R_UPOLL][r]);
		raw_uffd(true, s, n, &res.p50[R_UBUSY][r],
			 &res.p99[R_UBUSY][r]);
		for (c = 0; c < ARRAY_SIZE(cfgs); c++) {
			fault_run(&cfgs[c], d, &hi.addr, &hi.rkey, s, n,
				  &res.p50[R_CFG0 + c][r],
				  &res.p99[R_CFG0 + c][r], &st);
			res.bt[c][r] = st.blocktime_ns / 1e6;
			res.sp50[c][r] = st.p50_ns / 1e3;
		}
	}

	report(&res, fab_domain_provider(d), n, rounds);
	free(s);
	fab_domain_close(d);
	close(sock);
	waitpid(pid, NULL, 0);
	return 0;
}
