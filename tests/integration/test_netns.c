// SPDX-License-Identifier: MIT
/*
 * Integration: the test hosts harness (netns.h). Real ferryd processes,
 * each in its own network namespace, see each other through veth links;
 * a shaped link carries a TCP stream at its rate and no faster, a stalled
 * one carries next to nothing; a cut link makes the peer unreachable
 * within the peer timeout and a restored one brings it back; teardown
 * leaves no namespace, device, mount or process behind. Needs root.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "itest.h"
#include "netns.h"

#define BULK_PORT 5001
#define PEER_TIMEOUT_MS 1000
#define SLOTS 40
#define SLOT_MS 250

static struct testhosts *th;

static int th_teardown(void **state)
{
	th_destroy(th);
	th = NULL;
	return teardown(state);
}

/* n nodes, node i on host i, each listing all the others. */
static void mesh(struct node *nd, int n)
{
	static const char *const names[] = { "a", "b", "c", "d" };

	for (int i = 0; i < n; i++)
		th_node_init(th, i, &nd[i], names[i]);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			if (i != j)
				th_node_add_peer(th, &nd[i], j, &nd[j]);
	for (int i = 0; i < n; i++)
		th_node_start(th, i, &nd[i]);
	for (int i = 0; i < n; i++)
		node_ready(&nd[i]);
}

static void dump_logs(struct node *nd, int n)
{
	for (int i = 0; i < n; i++)
		print_error("--- %s.log\n%s\n", nd[i].name, slurp(nd[i].log));
}

/* Commands run in a host see its own interfaces, not the caller's. */
static void test_run_in_host(void **state)
{
	char buf[4096];
	int fd, status;
	ssize_t len;

	(void)state;
	assert_int_equal(th_create(2, &th), 0);
	assert_int_equal(th_count(th), 2);
	for (int i = 0; i < 2; i++) {
		const char *argv[] = { "ip", "-o", "addr", "show", NULL };

		fd = memfd_create("out", MFD_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(th_run(th, i, argv, fd, 5000, &status), 0);
		assert_int_equal(status, 0);
		len = pread(fd, buf, sizeof(buf) - 1, 0);
		assert_true(len > 0);
		buf[len] = '\0';
		close(fd);
		assert_non_null(strstr(buf, th_addr(th, i)));
		assert_null(strstr(buf, th_addr(th, 1 - i)));
		assert_non_null(strstr(buf, "lo    inet 127.0.0.1"));
	}
	/* a command that outlives its deadline is killed */
	const char *slow[] = { "sleep", "10", NULL };
	assert_int_equal(th_run(th, 0, slow, -1, 200, &status), -ETIMEDOUT);
	print_message("netem (delay) in this kernel: %s\n",
		      th_have_netem() ? "yes" : "no");
	if (!th_have_netem())
		assert_int_equal(th_shape(th, 0, 0, 1000), -EOPNOTSUPP);
}

/* Read for dur_ms after accept(); bytes after warm_ms, and that time. */
struct bulk_res {
	uint64_t bytes, total;
	int end; /* 0: EOF, else the errno of the failed read */
	uint64_t slot[SLOTS]; /* bytes per SLOT_MS after accept() */
	double secs, t0; /* now_s() at accept() */
};

static void sink(int ready, int res, int warm_ms, int dur_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(BULK_PORT) };
	struct bulk_res r = { 0 };
	static char buf[1 << 16];
	int one = 1, ls, fd;
	double t0, tw, t;
	struct pollfd p;

	ls = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* exit codes tell the parent what went wrong */
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1))
		_exit(2);
	if (write(ready, "r", 1) != 1)
		_exit(1);
	p = (struct pollfd){ ls, POLLIN, 0 };
	if (poll(&p, 1, 5000) != 1)
		_exit(3);
	fd = accept(ls, NULL, NULL);
	/* the window starts at accept(): bounded even if no byte comes */
	t0 = now_s();
	tw = t0 + warm_ms / 1000.0;
	for (;;) {
		ssize_t n;

		t = now_s();
		if (t - t0 > dur_ms / 1000.0)
			break;
		p = (struct pollfd){ fd, POLLIN, 0 };
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			r.end = n ? errno : 0;
			break;
		}
		r.total += n;
		if ((t - t0) * 1000 / SLOT_MS < SLOTS)
			r.slot[(int)((t - t0) * 1000 / SLOT_MS)] += n;
		if (t >= tw)
			r.bytes += n;
	}
	r.secs = now_s() - tw;
	r.t0 = t0;
	if (write(res, &r, sizeof(r)) != sizeof(r))
		_exit(1);
	_exit(0);
}

static void source(const char *addr, int dur_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(BULK_PORT) };
	struct timeval tv = { 0, 100000 };
	static char buf[1 << 16];
	double end = now_s() + dur_ms / 1000.0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, addr, &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		_exit(1);
	/* a stalled link blocks write(): give up at the deadline anyway */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (now_s() < end)
		if (write(fd, buf, sizeof(buf)) < 0 && errno != EAGAIN)
			break;
	_exit(0);
}

/* A TCP stream from host 0 to host 1 for dur_ms; bits/s after warm-up. */
struct bulk {
	int ready[2], res[2], dur_ms;
	pid_t ps, pc;
};

/* Start a TCP stream from host 0 to host 1 for dur_ms. */
static void bulk_begin(struct bulk *b, int dur_ms)
{
	char c;

	b->dur_ms = dur_ms;
	assert_int_equal(pipe2(b->ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(b->res, O_CLOEXEC), 0);
	assert_int_equal(th_fork(th, 1, &b->ps), 0);
	if (!b->ps)
		sink(b->ready[1], b->res[1], 300, dur_ms);
	assert_int_equal(read(b->ready[0], &c, 1), 1);
	assert_int_equal(th_fork(th, 0, &b->pc), 0);
	if (!b->pc)
		source(th_addr(th, 1), dur_ms + 500);
}

/* Its result; bits/s after the warm-up. */
static double bulk_end(struct bulk *b, struct bulk_res *out)
{
	struct bulk_res r;
	int status;

	assert_int_equal(th_wait(th, b->ps, b->dur_ms + 8000, &status), 0);
	if (status)
		fail_msg("sink: wait status %#x (exit 2: bind, 3: no "
			 "connection in 5 s)",
			 status);
	assert_int_equal(read(b->res[0], &r, sizeof(r)), sizeof(r));
	assert_int_equal(th_wait(th, b->pc, 3000, &status), 0);
	for (int i = 0; i < 2; i++) {
		close(b->ready[i]);
		close(b->res[i]);
	}
	if (out)
		*out = r;
	return r.bytes * 8 / r.secs;
}

static double bulk(int dur_ms, struct bulk_res *out)
{
	struct bulk b;

	bulk_begin(&b, dur_ms);
	return bulk_end(&b, out);
}

/*
 * At most 1.3x the limit: shaping is applied. At least 0.4x: the link
 * carries data (low, as other tests may load the two cores meanwhile).
 */
static void in_band(double bps, double limit)
{
	if (bps > 1.3 * limit || bps < 0.4 * limit)
		fail_msg("%.1f Mbit/s over a %.1f Mbit/s link", bps / 1e6,
			 limit / 1e6);
}

/*
 * Shaping is applied, changes at run time, and goes away: a stream runs
 * far faster than 100 Mbit/s unshaped, at about the limit shaped, at the
 * new limit after th_set_rate(), at next to nothing stalled.
 */
static void test_rate(void **state)
{
	struct bulk_res r;
	double bps;

	(void)state;
	assert_int_equal(th_create(2, &th), 0);
	bps = bulk(1000, NULL);
	print_message("unshaped: %.0f Mbit/s\n", bps / 1e6);
	assert_true(bps > 2 * 100e6);

	assert_int_equal(th_shape(th, 0, 100000000, 0), 0);
	bps = bulk(1200, NULL);
	print_message("shaped 100 Mbit/s: %.1f Mbit/s\n", bps / 1e6);
	in_band(bps, 100e6);

	/* the link of the receiving side shapes too (the other direction) */
	assert_int_equal(th_shape(th, 0, 0, 0), 0);
	assert_int_equal(th_shape(th, 1, 50000000, 0), 0);
	bps = bulk(1200, NULL);
	print_message("receiver's link at 50 Mbit/s: %.1f Mbit/s\n", bps / 1e6);
	in_band(bps, 50e6);

	assert_int_equal(th_set_rate(th, 1, 20000000), 0);
	bps = bulk(1200, NULL);
	print_message("changed to 20 Mbit/s: %.1f Mbit/s\n", bps / 1e6);
	in_band(bps, 20e6);

	/*
	 * A stall: 8 kbit/s is 1.5 KB in 1.5 s; allow one GSO burst. What
	 * the last stream left queued would drain at 8 kbit/s and delay our
	 * SYN: removing the shaping first drops it.
	 */
	assert_int_equal(th_set_rate(th, 1, 0), 0);
	assert_int_equal(th_set_rate(th, 1, 8000), 0);
	bulk(1500, &r);
	print_message("stalled at 8 kbit/s: %llu bytes in 1.5 s (end %d)\n",
		      (unsigned long long)r.total, r.end);
	assert_true(r.total <= 80000);

	assert_int_equal(th_set_rate(th, 1, 0), 0);
	bps = bulk(1000, NULL);
	print_message("unshaped again: %.0f Mbit/s\n", bps / 1e6);
	assert_true(bps > 2 * 100e6);
}

/*
 * A cut of 2 s in the middle of a TCP stream: nothing passes while the
 * link is down, and the same connection carries on after the restore
 * (what post-copy recovery relies on).
 */
static void test_cut_stream(void **state)
{
	struct bulk_res r;
	uint64_t before = 0, during = 0, after = 0;
	double cut, restore;
	struct bulk b;
	int resumed = -1, i;

	(void)state;
	assert_int_equal(th_create(2, &th), 0);
	assert_int_equal(th_shape(th, 0, 100000000, 0), 0);
	bulk_begin(&b, 6000);
	sleep_ms(1000);
	assert_int_equal(th_cut(th, 1), 0);
	cut = now_s();
	sleep_ms(2000);
	restore = now_s();
	assert_int_equal(th_restore(th, 1), 0);
	bulk_end(&b, &r);
	/*
	 * Slots are counted from accept(), which a slow machine reaches
	 * late: the windows follow the cut and the restore as they happened.
	 * Down: from 0.5 s after the cut (what was in flight is read) to
	 * 0.25 s before the restore; after: from 1.5 s after it.
	 */
	cut -= r.t0;
	restore -= r.t0;
	assert_true(cut > 2.0 * SLOT_MS / 1000);
	for (i = 0; i < (int)(cut * 1000 / SLOT_MS) - 1; i++)
		before += r.slot[i];
	for (i = (int)((cut + 0.5) * 1000 / SLOT_MS) + 1;
	     i < (int)((restore - 0.25) * 1000 / SLOT_MS); i++)
		during += r.slot[i];
	for (i = (int)((restore + 1.5) * 1000 / SLOT_MS) + 1;
	     i < 6000 / SLOT_MS; i++)
		after += r.slot[i];
	for (i = (int)(restore * 1000 / SLOT_MS); i < SLOTS && resumed < 0; i++)
		if (r.slot[i])
			resumed = (int)(i * SLOT_MS - restore * 1000);
	print_message("cut stream: cut %.2f s, restore %.2f s after accept; "
		      "%llu bytes before, %llu during, %llu from 1.5 s after "
		      "it; data again ~%d ms after the restore\n",
		      cut, restore, (unsigned long long)before,
		      (unsigned long long)during, (unsigned long long)after,
		      resumed);
	assert_true(before > 0);
	assert_int_equal(during, 0);
	assert_true(after > 1000000);
	assert_int_equal(r.end, 0);
}

/* Two ferryd, a shaped link; cut and restore it. */
static void test_two_peers(void **state)
{
	struct node nd[2];
	double t;

	(void)state;
	assert_int_equal(th_create(2, &th), 0);
	assert_int_equal(th_shape(th, 0, 100000000, 0), 0);
	mesh(nd, 2);
	if (wait_state(&nd[0], "reachable", 1, 10) < 0 ||
	    wait_state(&nd[1], "reachable", 1, 10) < 0) {
		dump_logs(nd, 2);
		fail();
	}
	assert_int_equal(th_cut(th, 1), 0);
	t = wait_state(&nd[0], "unreachable", 1, 5);
	print_message("cut: unreachable after %.2f s\n", t);
	assert_true(t >= 0);
	assert_true(t <= PEER_TIMEOUT_MS / 1000.0 + 1.5);
	assert_true(wait_state(&nd[1], "unreachable", 1, 5) >= 0);
	assert_int_equal(th_restore(th, 1), 0);
	t = wait_state(&nd[0], "reachable", 1, 10);
	print_message("restored: reachable after %.2f s\n", t);
	assert_true(t >= 0);
	assert_true(wait_state(&nd[1], "reachable", 1, 10) >= 0);
}

/* Three ferryd in a mesh; cutting c leaves a and b talking. */
static void test_three_peers(void **state)
{
	struct node nd[3];
	char want[64];
	json_t *j;

	(void)state;
	assert_int_equal(th_create(3, &th), 0);
	mesh(nd, 3);
	for (int i = 0; i < 3; i++) {
		if (wait_state(&nd[i], "reachable", 2, 10) < 0) {
			dump_logs(nd, 3);
			fail();
		}
	}
	/* a reaches each peer at its host's address */
	j = ferry_json(&nd[0], "peers");
	for (int i = 1; i < 3; i++) {
		snprintf(want, sizeof(want), "tcp://%s:%d", th_addr(th, i),
			 nd[i].port);
		assert_jstr(jfind(j, "peers", "name", nd[i].name), "address",
			    want);
	}
	assert_int_equal(th_cut(th, 2), 0);
	for (int i = 0; i < 2; i++) {
		assert_true(wait_state(&nd[i], "unreachable", 1, 5) >= 0);
		assert_true(wait_state(&nd[i], "reachable", 1, 1) >= 0);
	}
	assert_true(wait_state(&nd[2], "unreachable", 2, 5) >= 0);
	assert_int_equal(th_restore(th, 2), 0);
	for (int i = 0; i < 3; i++)
		assert_true(wait_state(&nd[i], "reachable", 2, 10) >= 0);
}

static int count_prefix(const char *prefix)
{
	DIR *d = opendir("/run/netns");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += !strncmp(e->d_name, prefix, strlen(prefix));
	closedir(d);
	return n;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Processes whose network namespace is one of ino[0..n). */
static int procs_in(const ino_t *ino, int n)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int found = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[300];
		struct stat st;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/net", e->d_name);
		if (stat(path, &st))
			continue;
		for (int i = 0; i < n; i++)
			found += st.st_ino == ino[i];
	}
	closedir(d);
	return found;
}

/*
 * Teardown removes namespaces, mounts and processes (ferryd included);
 * the caller's namespace never sees a device of ours.
 */
static void test_teardown(void **state)
{
	int before = count_dir("/sys/class/net"), status;
	char prefix[32], path[300];
	struct node nd[2];
	ino_t ino[3];
	pid_t pid;

	(void)state;
	snprintf(prefix, sizeof(prefix), "ferryt-%d-", (int)getpid());
	assert_int_equal(th_create(2, &th), 0);
	assert_int_equal(th_shape(th, 0, 1000000000, 0), 0);
	assert_int_equal(count_prefix(prefix), 3);
	assert_int_equal(count_dir("/sys/class/net"), before);
	for (int i = 0; i < 2; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "/run/netns/%s", th_netns(th, i));
		assert_int_equal(stat(path, &st), 0);
		ino[i] = st.st_ino;
	}
	snprintf(path, sizeof(path), "/run/netns/ferryt-%d-hub", (int)getpid());
	assert_int_equal(stat(path, &(struct stat){ 0 }), 0);
	mesh(nd, 2);
	assert_true(wait_state(&nd[0], "reachable", 1, 10) >= 0);
	/* a grandchild that would outlive its parent if left alone */
	const char *argv[] = { "sh", "-c", "sleep 1000 & wait", NULL };
	assert_int_equal(th_spawn(th, 1, argv, -1, &pid), 0);
	assert_int_equal(th_wait(th, pid, 100, &status), -ETIMEDOUT);
	/* two ferryd, sh and its sleep, once sh has forked (a hang guard) */
	for (double t0 = now_s(); procs_in(ino, 2) < 4 && now_s() - t0 < 30;)
		sleep_ms(50);
	assert_true(procs_in(ino, 2) >= 4);

	th_destroy(th);
	th = NULL;
	assert_int_equal(count_prefix(prefix), 0);
	assert_int_equal(procs_in(ino, 2), 0);
	assert_int_equal(kill(nd[0].pid, 0), -1);
	assert_int_equal(kill(pid, 0), -1);
	assert_null(strstr(slurp("/proc/self/mountinfo"), prefix));
	assert_int_equal(count_dir("/sys/class/net"), before);
}

/*
 * A test process that dies: by SIGTERM (a meson timeout), its handler
 * removes everything; by SIGKILL, its children die with it
 * (PR_SET_PDEATHSIG) and the next th_create() removes its namespaces.
 */
static void die_with(int sig)
{
	char prefix[32];
	int p[2], status;
	pid_t kid, victim;
	ino_t ino[3];
	double t0;

	assert_int_equal(pipe(p), 0);
	victim = fork();
	assert_true(victim >= 0);
	if (!victim) {
		const char *argv[] = { "sleep", "1000", NULL };
		const char *orphan[] = { "sh", "-c", "sleep 1000 & wait",
					 NULL };
		struct testhosts *own = NULL;
		pid_t pid = 0, sh;

		/* our own harness, not the parent's (th is NULL here) */
		if (th_create(2, &own) || th_spawn(own, 1, argv, -1, &pid) ||
		    th_spawn(own, 0, orphan, -1, &sh))
			_exit(1);
		if (write(p[1], &pid, sizeof(pid)) != sizeof(pid))
			_exit(1);
		for (;;)
			pause();
	}
	track(victim);
	close(p[1]);
	assert_int_equal(read(p[0], &kid, sizeof(kid)), sizeof(kid));
	close(p[0]);
	snprintf(prefix, sizeof(prefix), "ferryt-%d-", (int)victim);
	assert_int_equal(count_prefix(prefix), 3);
	for (int i = 0; i < 3; i++) {
		char path[100];
		struct stat st;

		snprintf(path, sizeof(path), "/run/netns/%s%s", prefix,
			 i == 2 ? "hub"
			 : i	? "h1"
				: "h0");
		assert_int_equal(stat(path, &st), 0);
		ino[i] = st.st_ino;
	}
	/* sleep, sh and the orphan-to-be */
	for (t0 = now_s(); procs_in(ino, 3) < 3 && now_s() - t0 < 3;)
		sleep_ms(10);
	assert_int_equal(procs_in(ino, 3), 3);
	assert_int_equal(kill(kid, 0), 0);
	kill(victim, sig);
	assert_int_equal(waitpid(victim, &status, 0), victim);
	untrack(victim);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), sig);
	/* kid is not our child: it vanishes once init reaps it */
	for (t0 = now_s(); kill(kid, 0) == 0 && now_s() - t0 < 3;)
		sleep_ms(10);
	assert_int_equal(kill(kid, 0), -1);
	/*
	 * After SIGKILL the namespaces stay until a cleanup; a test_netns
	 * running at the same time (another build dir) may do it first, so
	 * only the end state is asserted.
	 */
	if (sig == SIGKILL)
		th_cleanup_stale();
	assert_int_equal(count_prefix(prefix), 0);
	/* the orphan too, reparented to init: give init time to reap */
	for (t0 = now_s(); procs_in(ino, 3) && now_s() - t0 < 3;)
		sleep_ms(10);
	assert_int_equal(procs_in(ino, 3), 0);
}

static void test_die_sigterm(void **state)
{
	(void)state;
	die_with(SIGTERM);
}

static void test_die_sigkill(void **state)
{
	(void)state;
	die_with(SIGKILL);
}

/* Namespaces of a dead run go; those of a live pid stay. */
static void test_stale(void **state)
{
	char dead[64], alive[64], cmd[200];
	pid_t pid = fork();

	(void)state;
	assert_true(pid >= 0);
	if (!pid)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	snprintf(dead, sizeof(dead), "ferryt-%d-hub", (int)pid);
	snprintf(alive, sizeof(alive), "ferryt-%d-h0", (int)getppid());
	snprintf(cmd, sizeof(cmd), "ip netns add %s && ip netns add %s", dead,
		 alive);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(count_prefix(dead), 1);
	/* (or a concurrent run's cleanup: only the end state is asserted) */
	th_cleanup_stale();
	assert_int_equal(count_prefix(dead), 0);
	assert_int_equal(count_prefix(alive), 1);
	snprintf(cmd, sizeof(cmd), "ip netns del %s", alive);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_run_in_host, NULL,
						th_teardown),
		cmocka_unit_test_setup_teardown(test_rate, NULL, th_teardown),
		cmocka_unit_test_setup_teardown(test_cut_stream, NULL,
						th_teardown),
		cmocka_unit_test_setup_teardown(test_two_peers, NULL,
						th_teardown),
		cmocka_unit_test_setup_teardown(test_three_peers, NULL,
						th_teardown),
		cmocka_unit_test_setup_teardown(test_teardown, NULL,
						th_teardown),
		cmocka_unit_test_setup_teardown(test_stale, NULL, th_teardown),
		cmocka_unit_test_setup_teardown(test_die_sigterm, NULL,
						th_teardown),
		cmocka_unit_test_setup_teardown(test_die_sigkill, NULL,
						th_teardown),
	};

	if (itest_env(NULL) || itest_need_root("test_netns"))
		return 1;
	itest_node_extra = "ping_interval_ms = 200\npeer_timeout_ms = 1000\n";
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), setup);
}
