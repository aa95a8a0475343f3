// SPDX-License-Identifier: MIT
/*
 * bench_fabric: one-sided read bandwidth and 4 KiB read latency through
 * ferry's fabric layer, printed next to what the same machine does with
 * memcpy, a plain TCP stream on loopback, and a minimal raw-libfabric
 * fi_read loop. Raw and ferry read from the SAME target process (a ferry
 * domain whose progress thread serves the memory while its main thread
 * sleeps in read()), so provider and target-side progress are identical;
 * the runs are interleaved and each figure is the median of REPS runs.
 * Both initiators spin on their CQ, yielding the CPU on an empty poll.
 * A read's latency is the time from one read's start to the next's, one
 * cycle counter read a sample, as perftest's ib_read_lat counts (in the
 * test VM a clock_gettime() costs 2 to 6 us: its clocksource is hpet).
 * With -p verbs (ferry's rdma-core backend) there is no raw column (0):
 * perftest's ib_read_bw and ib_read_lat are its baseline (docs/rdma.md).
 * -P measures only what those measure, read bandwidth at 4 and 64 KiB and
 * the 4 KiB read latency, through ferry (no memcpy or tcp; with an ofi:
 * provider the raw loop's latency too, what libfabric itself adds), and
 * prints lines for bench/fabric/verbs-perftest:
 *   bw SIZE MiB/s          lat 4096 P50-us P99-us
 *   rawlat 4096 P50-us P99-us   (ofi: providers)
 *
 *   bench_fabric [-p ofi:tcp] [-w window] [-t seconds-per-run] [-P]
 *                [-s target-spin-us]...   (default: -s 0 -s 200; -P: -s 0)
 */
#define LOG_PREFIX "bench: "

/* before rdma/fabric.h, whose container_of() yields to ours */
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "common/log.h"
#include "fabric/fabric.h"

#define MIB (1024UL * 1024)
#define REGION (64 * MIB)
#define REPS 3
#define LAT_SAMPLES 5000
#define MAXWIN 256

static const size_t sizes[] = { 4096, 65536, MIB };
#define NSIZES (int)ARRAY_SIZE(sizes)

struct hello {
	int32_t status;
	struct fab_addr addr;
	struct fab_rkey rk;
	char provider[64];
};

struct target {
	pid_t pid;
	int sock;
	struct hello h;
};

struct lat {
	double p50, p99; /* µs */
};

static int window = 16;
static bool perftest_only; /* -P */

/* raw libfabric and ferry against one target configuration */
struct result {
	int spin_us; /* the target's progress_spin_us */
	double raw[NSIZES], fy[NSIZES]; /* GB/s per size */
	struct lat rl, fl;
	double tcpu; /* target progress thread CPU, % of wall time */
};
static double run_s = 0.3;

static void *map_region(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED) {
		pr_perror("mmap");
		exit(1);
	}
	memset(p, 0x5a, len);
	return p;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * A latency sample's clock: the cycle counter where there is one, as
 * perftest's ib_read_lat times its reads, scaled to ns by CLOCK_MONOTONIC
 * over the whole run. A clock_gettime() a sample cost 2 to 6 us in the
 * test VM (clocksource hpet): a third of what set ferry's 4 KiB p50 apart
 * from perftest's was its own stopwatch.
 */
struct stopwatch {
	uint64_t tick0, ns0;
};

static inline uint64_t tick(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#else
	return fy_now_ns();
#endif
}

static struct stopwatch stopwatch_start(void)
{
	return (struct stopwatch){ .tick0 = tick(), .ns0 = fy_now_ns() };
}

/* d: n samples in ticks since sw started */
static struct lat lat_of(uint64_t *d, int n, struct stopwatch sw)
{
	uint64_t ticks = tick() - sw.tick0, ns = fy_now_ns() - sw.ns0;
	double per_tick = ticks ? (double)ns / (double)ticks : 1;
	struct lat l;

	qsort(d, n, sizeof(*d), cmp_u64);
	l.p50 = d[n / 2] * per_tick / 1e3;
	l.p99 = d[n * 99 / 100] * per_tick / 1e3;
	return l;
}

static double median3(double *v)
{
	double a = v[0], b = v[1], c = v[2];

	if ((a <= b && b <= c) || (c <= b && b <= a))
		return b;
	if ((b <= a && a <= c) || (c <= a && a <= b))
		return a;
	return c;
}

/* target: a separate process serving REGION through its progress thread */

static int target_main(const char *prov, int spin_us, int sock)
{
	struct fab_opts o = {
		.provider = prov,
		.progress_thread = true,
		.progress_spin_us = spin_us,
	};
	struct hello h = { 0 };
	struct fab_domain *d = NULL;
	struct fab_mr *mr = NULL;
	void *buf = map_region(REGION);
	char c;

	h.status = fab_domain_open(&o, &d);
	if (!h.status)
		h.status = fab_mr_reg(d, buf, REGION, FAB_ACCESS_READ, &mr);
	if (!h.status) {
		fab_domain_addr(d, &h.addr);
		fab_mr_rkey(mr, &h.rk);
		snprintf(h.provider, sizeof(h.provider), "%s",
			 fab_domain_provider(d));
	}
	if (fy_full_io(sock, &h, sizeof(h), true) || h.status)
		goto out;
	/* 's': report progress CPU time; anything else: quit */
	while (!fy_full_io(sock, &c, 1, false) && c == 's') {
		struct fab_stats st;

		fab_domain_stats(d, &st);
		if (fy_full_io(sock, &st.progress_cpu_ns, 8, true))
			break;
	}
out:
	fab_mr_dereg(mr);
	fab_domain_close(d);
	return h.status ? 1 : 0;
}

static int target_start(struct target *t, const char *prov, int spin_us)
{
	char sspin[16], sfd[16];
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return -errno;
	t->pid = fork();
	if (!t->pid) {
		close(sv[0]);
		snprintf(sspin, sizeof(sspin), "%d", spin_us);
		snprintf(sfd, sizeof(sfd), "%d", sv[1]);
		execl("/proc/self/exe", "bench_fabric", "--target", prov, sspin,
		      sfd, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	t->sock = sv[0];
	if (fy_full_io(t->sock, &t->h, sizeof(t->h), false) || t->h.status)
		return -EIO;
	return 0;
}

static uint64_t target_cpu(struct target *t)
{
	uint64_t ns = 0;
	char c = 's';

	if (fy_full_io(t->sock, &c, 1, true) ||
	    fy_full_io(t->sock, &ns, 8, false))
		return 0;
	return ns;
}

static void target_stop(struct target *t)
{
	char c = 'q';

	if (fy_full_io(t->sock, &c, 1, true))
		kill(t->pid, SIGKILL);
	close(t->sock);
	waitpid(t->pid, NULL, 0);
}

/* memcpy */

static double memcpy_bw(char *dst, const char *src, size_t sz)
{
	uint64_t t0 = fy_now_ns(), end = t0 + (uint64_t)(run_s * 1e9);
	size_t off = 0, bytes = 0;

	while (fy_now_ns() < end) {
		int k;

		for (k = 0; k < 64; k++) {
			memcpy(dst + off, src + off, sz);
			bytes += sz;
			off = (off + sz) % REGION;
		}
	}
	return bytes / ((fy_now_ns() - t0) / 1e9) / 1e9;
}

static struct lat memcpy_lat(char *dst, const char *src)
{
	static uint64_t d[LAT_SAMPLES];
	struct stopwatch sw = stopwatch_start();
	int i;

	for (i = 0; i < LAT_SAMPLES; i++) {
		size_t off = ((size_t)i * 4096 * 17) % REGION;
		uint64_t t0 = tick();

		memcpy(dst + off, src + off, 4096);
		d[i] = tick() - t0;
	}
	return lat_of(d, LAT_SAMPLES, sw);
}

/* TCP on loopback: the server streams or answers 4 KiB requests */

static void tcp_server(int lfd)
{
	static char buf[MIB];
	uint64_t req[2];
	int fd;

	memset(buf, 0x5a, sizeof(buf));
	while ((fd = accept(lfd, NULL, NULL)) >= 0) {
		int one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* req: {mode, size}; 's': stream until closed; 'r': answer */
		while (!fy_full_io(fd, req, sizeof(req), false)) {
			if (req[0] == 's')
				while (!fy_full_io(fd, buf, req[1], true))
					;
			else if (fy_full_io(fd, buf, req[1], true))
				break;
		}
		close(fd);
	}
	_exit(0);
}

static int tcp_connect(int port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		pr_perror("connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static double tcp_bw(int port, char *dst, size_t sz)
{
	uint64_t req[2] = { 's', sz }, t0, end;
	size_t bytes = 0;
	int fd = tcp_connect(port);

	fy_full_io(fd, req, sizeof(req), true);
	t0 = fy_now_ns();
	end = t0 + (uint64_t)(run_s * 1e9);
	while (fy_now_ns() < end) {
		if (fy_full_io(fd, dst + bytes % REGION, sz, false))
			break;
		bytes += sz;
	}
	t0 = fy_now_ns() - t0;
	close(fd);
	return bytes / (t0 / 1e9) / 1e9;
}

static struct lat tcp_lat(int port, char *dst)
{
	static uint64_t d[LAT_SAMPLES];
	uint64_t req[2] = { 'r', 4096 };
	int fd = tcp_connect(port), i;
	struct stopwatch sw = stopwatch_start();

	for (i = 0; i < LAT_SAMPLES; i++) {
		uint64_t t0 = tick();

		fy_full_io(fd, req, sizeof(req), true);
		fy_full_io(fd, dst, 4096, false);
		d[i] = tick() - t0;
	}
	close(fd);
	return lat_of(d, LAT_SAMPLES, sw);
}

/* raw libfabric: the smallest fi_read loop, no ferry code in the path */

struct raw {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_ep *ep;
	struct fid_mr *mr;
	void *desc;
	fi_addr_t peer;
	struct fi_context2 ctx[MAXWIN];
};

#define RAW_CHECK(call)                                              \
	do {                                                         \
		int r_ = (int)(call);                                \
		if (r_) {                                            \
			pr_err("%s: %s\n", #call, fi_strerror(-r_)); \
			exit(1);                                     \
		}                                                    \
	} while (0)

static void raw_open(struct raw *r, const char *prov, char *local,
		     const struct fab_addr *peer)
{
	struct fi_info *h = fi_allocinfo();
	struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_CONTEXT };
	struct fi_av_attr av_attr = { .type = FI_AV_UNSPEC };
	uint8_t a[FAB_ADDR_MAX + 1] = { 0 };
	bool ip = strncmp(prov, "shm", 3) != 0;
	char node[INET_ADDRSTRLEN] = "127.0.0.1";
	struct sockaddr_in sin;

	/* the target's own address: verbs listens on its device's */
	if (ip && peer->len >= sizeof(sin)) {
		memcpy(&sin, peer->bytes, sizeof(sin));
		if (sin.sin_family == AF_INET)
			inet_ntop(AF_INET, &sin.sin_addr, node, sizeof(node));
	}

	h->ep_attr->type = FI_EP_RDM;
	h->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ |
		  FI_REMOTE_WRITE;
	h->mode = FI_CONTEXT | FI_CONTEXT2;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR |
				  FI_MR_PROV_KEY | FI_MR_ALLOCATED |
				  FI_MR_ENDPOINT;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->fabric_attr->prov_name = strdup(prov);
	RAW_CHECK(fi_getinfo(FI_VERSION(1, 17), ip ? node : NULL, NULL,
			     ip ? FI_SOURCE : 0, h, &r->info));
	fi_freeinfo(h);
	RAW_CHECK(fi_fabric(r->info->fabric_attr, &r->fabric, NULL));
	RAW_CHECK(fi_domain(r->fabric, r->info, &r->domain, NULL));
	cq_attr.size = 1024;
	RAW_CHECK(fi_cq_open(r->domain, &cq_attr, &r->cq, NULL));
	RAW_CHECK(fi_av_open(r->domain, &av_attr, &r->av, NULL));
	RAW_CHECK(fi_endpoint(r->domain, r->info, &r->ep, NULL));
	RAW_CHECK(fi_ep_bind(r->ep, &r->av->fid, 0));
	RAW_CHECK(fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV));
	RAW_CHECK(fi_enable(r->ep));
	RAW_CHECK(fi_mr_reg(r->domain, local, REGION, FI_READ | FI_WRITE, 0, 1,
			    0, &r->mr, NULL));
	if (r->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
		RAW_CHECK(fi_mr_bind(r->mr, &r->ep->fid, 0));
		RAW_CHECK(fi_mr_enable(r->mr));
	}
	r->desc = fi_mr_desc(r->mr);
	memcpy(a, peer->bytes, peer->len);
	if (fi_av_insert(r->av, a, 1, &r->peer, 0, NULL) != 1) {
		pr_err("raw: fi_av_insert failed\n");
		exit(1);
	}
}

static void raw_close(struct raw *r)
{
	fi_close(&r->ep->fid);
	fi_close(&r->mr->fid);
	fi_close(&r->av->fid);
	fi_close(&r->cq->fid);
	fi_close(&r->domain->fid);
	fi_close(&r->fabric->fid);
	fi_freeinfo(r->info);
}

/* Reap completions; returns how many, exits on an error completion. */
static int raw_reap(struct raw *r)
{
	struct fi_cq_entry e[64];
	ssize_t n = fi_cq_read(r->cq, e, 64);

	if (n == -FI_EAGAIN) {
		/*
		 * As fab_poll() does: a pure spinner on 2 CPUs starves the
		 * kernel work that delivers its data (see docs/fabric.md).
		 */
		sched_yield();
		return 0;
	}
	if (n < 0) {
		struct fi_cq_err_entry err = { 0 };

		fi_cq_readerr(r->cq, &err, 0);
		pr_err("raw read failed: %s\n", fi_strerror(err.err));
		exit(1);
	}
	return (int)n;
}

static double raw_bw(struct raw *r, char *local, const struct fab_rkey *rk,
		     size_t sz)
{
	uint64_t t0 = fy_now_ns(), end = t0 + (uint64_t)(run_s * 1e9);
	size_t off = 0, done = 0;
	unsigned slot = 0;
	int inflight = 0, k;

	while (fy_now_ns() < end || inflight) {
		while (inflight < window && fy_now_ns() < end) {
			ssize_t ret = fi_read(r->ep, local + off, sz, r->desc,
					      r->peer, rk->addr + off, rk->key,
					      &r->ctx[slot++ % MAXWIN]);

			if (ret == -FI_EAGAIN)
				break;
			RAW_CHECK(ret);
			off = (off + sz) % REGION;
			inflight++;
		}
		k = raw_reap(r);
		inflight -= k;
		done += (size_t)k * sz;
	}
	return done / ((fy_now_ns() - t0) / 1e9) / 1e9;
}

static struct lat raw_lat(struct raw *r, char *local, const struct fab_rkey *rk)
{
	static uint64_t d[LAT_SAMPLES];
	struct stopwatch sw = stopwatch_start();
	uint64_t t = sw.tick0, next;
	int i;

	for (i = 0; i < LAT_SAMPLES; i++) {
		size_t off = ((size_t)i * 4096 * 17) % REGION;
		ssize_t ret;

		while ((ret = fi_read(r->ep, local + off, 4096, r->desc,
				      r->peer, rk->addr + off, rk->key,
				      &r->ctx[0])) == -FI_EAGAIN)
			raw_reap(r);
		RAW_CHECK(ret);
		while (!raw_reap(r))
			;
		next = tick();
		d[i] = next - t;
		t = next;
	}
	return lat_of(d, LAT_SAMPLES, sw);
}

/* ferry: the same loops through fabric.h */

struct fy {
	struct fab_domain *d;
	struct fab_ep *ep;
	struct fab_mr *mr;
};

static void fy_open(struct fy *f, const char *prov, char *local,
		    const struct fab_addr *peer)
{
	/* like ferryd: a progress thread in every domain */
	struct fab_opts o = { .provider = prov, .progress_thread = true };

	if (fab_domain_open(&o, &f->d) ||
	    fab_mr_reg(f->d, local, REGION, FAB_ACCESS_LOCAL, &f->mr) ||
	    fab_ep_connect(f->d, peer, &f->ep))
		exit(1);
}

static int fy_reap(struct fy *f, int timeout_ms)
{
	struct fab_cqe c[64];
	int n = fab_poll(f->d, c, 64, timeout_ms), i;

	if (n < 0)
		exit(1);
	for (i = 0; i < n; i++)
		if (c[i].status) {
			pr_err("ferry read failed: %s\n",
			       strerror(-c[i].status));
			exit(1);
		}
	return n;
}

static double fy_bw(struct fy *f, char *local, const struct fab_rkey *rk,
		    size_t sz)
{
	uint64_t t0 = fy_now_ns(), end = t0 + (uint64_t)(run_s * 1e9);
	size_t off = 0, done = 0;
	int inflight = 0, k;

	while (fy_now_ns() < end || inflight) {
		while (inflight < window && fy_now_ns() < end) {
			int ret = fab_read(f->ep, local + off, sz, f->mr, rk,
					   off, NULL);

			if (ret == -EAGAIN)
				break;
			if (ret)
				exit(1);
			off = (off + sz) % REGION;
			inflight++;
		}
		/* the way a puller waits: poll with a timeout */
		k = fy_reap(f, 100);
		inflight -= k;
		done += (size_t)k * sz;
	}
	return done / ((fy_now_ns() - t0) / 1e9) / 1e9;
}

static struct lat fy_lat(struct fy *f, char *local, const struct fab_rkey *rk)
{
	static uint64_t d[LAT_SAMPLES];
	struct stopwatch sw = stopwatch_start();
	uint64_t t = sw.tick0, next;
	int i, ret;

	for (i = 0; i < LAT_SAMPLES; i++) {
		size_t off = ((size_t)i * 4096 * 17) % REGION;

		while ((ret = fab_read(f->ep, local + off, 4096, f->mr, rk, off,
				       NULL)) == -EAGAIN)
			fy_reap(f, 0);
		if (ret)
			exit(1);
		while (!fy_reap(f, 100))
			;
		next = tick();
		d[i] = next - t;
		t = next;
	}
	return lat_of(d, LAT_SAMPLES, sw);
}

static void warm(struct raw *r, struct fy *f, char *local,
		 const struct fab_rkey *rk)
{
	double save = run_s;

	/* connections, page faults and caches, outside the measurement */
	run_s = 0.05;
	if (r->ep)
		raw_bw(r, local, rk, MIB);
	fy_bw(f, local, rk, MIB);
	run_s = save;
}

/* One target configuration: raw and ferry, interleaved. */
static void fabric_runs(const char *prov, char *local, struct result *res)
{
	bool ofi = !strncmp(prov, "ofi:", 4);
	double rv[REPS] = { 0 }, fv[REPS], p[4][REPS];
	struct target t;
	struct raw r = { 0 };
	struct fy f = { 0 };
	uint64_t c0, w0;
	int s, k;

	if (target_start(&t, prov, res->spin_us)) {
		pr_err("target for %s did not start\n", prov);
		exit(1);
	}
	/*
	 * verbs has no raw-libfabric twin: perftest is its baseline; -P
	 * times only the raw loop's latency (what libfabric itself adds).
	 * ferry first: its settings for libfabric (FI_UNIVERSE_SIZE for
	 * verbs on rxe) count only before the process's first call.
	 */
	fy_open(&f, prov, local, &t.h.addr);
	if (ofi)
		raw_open(&r, t.h.provider + 4, local, &t.h.addr);
	warm(&r, &f, local, &t.h.rk);
	c0 = target_cpu(&t);
	w0 = fy_now_ns();
	for (s = 0; s < NSIZES; s++) {
		/* perftest's sizes: 4 and 64 KiB */
		if (perftest_only && sizes[s] > 65536)
			continue;
		for (k = 0; k < REPS; k++) {
			if (ofi && !perftest_only)
				rv[k] = raw_bw(&r, local, &t.h.rk, sizes[s]);
			fv[k] = fy_bw(&f, local, &t.h.rk, sizes[s]);
		}
		res->raw[s] = median3(rv);
		res->fy[s] = median3(fv);
	}
	for (k = 0; k < REPS; k++) {
		struct lat a = ofi ? raw_lat(&r, local, &t.h.rk)
				   : (struct lat){ 0 };
		struct lat b = fy_lat(&f, local, &t.h.rk);

		p[0][k] = a.p50;
		p[1][k] = a.p99;
		p[2][k] = b.p50;
		p[3][k] = b.p99;
	}
	res->rl.p50 = median3(p[0]);
	res->rl.p99 = median3(p[1]);
	res->fl.p50 = median3(p[2]);
	res->fl.p99 = median3(p[3]);
	res->tcpu = 100.0 * (target_cpu(&t) - c0) / (fy_now_ns() - w0);
	fab_domain_close(f.d);
	if (ofi)
		raw_close(&r);
	target_stop(&t);
}

static void print_result(const struct result *res, const double *mc,
			 const double *tc, struct lat ml, struct lat tl)
{
	int s;

	if (res->spin_us <= 0)
		printf("\ntarget progress thread blocks at once");
	else
		printf("\ntarget progress thread spins %d us after activity",
		       res->spin_us);
	printf(" (its CPU: %.0f%% of the run)\n", res->tcpu);
	printf("%-18s %9s %9s %9s %9s %9s\n", "read GB/s", "memcpy", "tcp-sock",
	       "raw-ofi", "ferry", "ferry/raw");
	for (s = 0; s < NSIZES; s++) {
		char name[32];

		snprintf(name, sizeof(name), "  %zu KiB", sizes[s] / 1024);
		printf("%-18s %9.2f %9.2f %9.2f %9.2f %9.2f\n", name, mc[s],
		       tc[s], res->raw[s], res->fy[s],
		       res->raw[s] ? res->fy[s] / res->raw[s] : 0);
	}
	printf("%-18s %9.2f %9.2f %9.2f %9.2f %9.2f\n", "4 KiB p50 us", ml.p50,
	       tl.p50, res->rl.p50, res->fl.p50,
	       res->rl.p50 ? res->fl.p50 / res->rl.p50 : 0);
	printf("%-18s %9.2f %9.2f %9.2f %9.2f %9.2f\n", "4 KiB p99 us", ml.p99,
	       tl.p99, res->rl.p99, res->fl.p99,
	       res->rl.p99 ? res->fl.p99 / res->rl.p99 : 0);
}

/* -P: ferry's figures at perftest's sizes, as lines a script reads */
static int perftest_runs(const char *prov, int spin_us)
{
	struct result res = { .spin_us = spin_us };
	char *dst = map_region(REGION);
	int s;

	fabric_runs(prov, dst, &res);
	for (s = 0; s < NSIZES; s++)
		if (sizes[s] <= 65536)
			printf("bw %zu %.1f\n", sizes[s],
			       res.fy[s] * 1e9 / MIB);
	printf("lat 4096 %.1f %.1f\n", res.fl.p50, res.fl.p99);
	if (res.rl.p50)
		printf("rawlat 4096 %.1f %.1f\n", res.rl.p50, res.rl.p99);
	munmap(dst, REGION);
	return 0;
}

int main(int argc, char **argv)
{
	const char *prov = "ofi:tcp";
	double mc[NSIZES], tc[NSIZES];
	struct result res[4] = { { .spin_us = 0 }, { .spin_us = 200 } };
	int nres = 0, i;
	struct lat ml, tl;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sa);
	char *src, *dst;
	int opt, lfd, s;
	pid_t srv;

	if (argc == 5 && !strcmp(argv[1], "--target"))
		return target_main(argv[2], atoi(argv[3]), atoi(argv[4]));
	while ((opt = getopt(argc, argv, "p:w:t:s:P")) != -1) {
		if (opt == 's' && nres < 4)
			res[nres++].spin_us = atoi(optarg);
		else if (opt == 'p')
			prov = optarg;
		else if (opt == 'w')
			window = FY_MAX(1, FY_MIN(atoi(optarg), MAXWIN));
		else if (opt == 't')
			run_s = atof(optarg);
		else if (opt == 'P')
			perftest_only = true;
		else {
			fprintf(stderr,
				"usage: %s [-p provider] [-w window] "
				"[-t seconds] [-P] [-s spin-us]...\n",
				argv[0]);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (perftest_only)
		return perftest_runs(prov, nres ? res[0].spin_us : 0);
	src = map_region(REGION);
	dst = map_region(REGION);

	/* memcpy */
	for (s = 0; s < NSIZES; s++)
		mc[s] = memcpy_bw(dst, src, sizes[s]);
	ml = memcpy_lat(dst, src);

	/* TCP stream on loopback, from a forked server */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(lfd, 4) || getsockname(lfd, (struct sockaddr *)&sa, &slen)) {
		pr_perror("tcp listen");
		return 1;
	}
	srv = fork();
	if (!srv)
		tcp_server(lfd);
	close(lfd);
	for (s = 0; s < NSIZES; s++)
		tc[s] = tcp_bw(ntohs(sa.sin_port), dst, sizes[s]);
	tl = tcp_lat(ntohs(sa.sin_port), dst);
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);

	/* raw libfabric and ferry against the same target, per config */
	if (!nres)
		nres = 2;
	for (i = 0; i < nres; i++)
		fabric_runs(prov, dst, &res[i]);

	printf("fabric bench: provider %s, window %d, median of %d runs of "
	       "%.2f s each\n",
	       prov, window, REPS, run_s);
	for (i = 0; i < nres; i++)
		print_result(&res[i], mc, tc, ml, tl);
	munmap(src, REGION);
	munmap(dst, REGION);
	return 0;
}
