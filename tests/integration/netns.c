// SPDX-License-Identifier: MIT
/*
 * Test hosts (netns.h): network namespaces joined through a bridge, with
 * shaped, cuttable links, built with the ip and tc tools.
 *
 * Layout for n hosts, K = 1 + pid % 254:
 *
 *   ferryt-PID-h0            ferryt-PID-hub              ferryt-PID-h1
 *   eth0 10.222.K.1 <-veth-> p0 -+- br0 -+- p1 <-veth-> eth0 10.222.K.2
 *
 * The veth pairs are created inside the hub namespace with their far end
 * moved straight into the host, so no device ever appears in the caller's
 * namespace and parallel runs cannot collide on interface names. A link's
 * shaping sits on both of its ends (eth0 egress: host to hub; pI egress:
 * hub to host), so it limits both directions. A cut sets pI down: the host
 * loses carrier but keeps its address and routes, as with a pulled cable.
 *
 * Teardown must work from a signal handler, so it uses only system calls:
 * SIGKILL and reap the children, then what `ip netns del` does (detach
 * the bind mount, unlink it). The kernel frees a namespace, and the
 * devices in it, once nothing refers to it any more.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <cmocka.h>

#define LOG_PREFIX "testhosts: "
#include "common/log.h"

#include "itest.h"
#include "netns.h"

#define NETNS_DIR "/run/netns"
#define NS_PREFIX "ferryt-"
#define MAX_KIDS 32
#define MAX_LIVE 4
#define TOOL_ARGS 48

enum shape_kind { SHAPE_NONE, SHAPE_HTB, SHAPE_NETEM };

struct testhosts {
	int n, k;
	char hub[40];
	char ns[TH_MAX_HOSTS][40];
	char addr[TH_MAX_HOSTS][16];
	bool made_hub, made[TH_MAX_HOSTS];
	int nsfd[TH_MAX_HOSTS];
	ino_t ino[TH_MAX_HOSTS + 1]; /* namespace inodes; [n]: the hub's */
	pid_t kids[MAX_KIDS];
	enum shape_kind kind[TH_MAX_HOSTS];
	unsigned int delay_us[TH_MAX_HOSTS];
	uint64_t rate[TH_MAX_HOSTS];
};

/* Harnesses alive in this process, for the atexit and signal cleanup. */
static struct testhosts *live[MAX_LIVE];
static pid_t owner;
static int netem = -1;

static void nap_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* What `ip netns del` does; async-signal-safe. */
static void ns_remove(const char *name)
{
	char path[PATH_MAX];
	size_t l = strlen(NETNS_DIR "/");

	if (strlen(name) + l >= sizeof(path))
		return;
	memcpy(path, NETNS_DIR "/", l);
	memcpy(path + l, name, strlen(name) + 1);
	umount2(path, MNT_DETACH);
	unlink(path);
}

/*
 * SIGKILL every process whose network namespace is inode ino, such as a
 * grandchild that has no PR_SET_PDEATHSIG; returns how many. System calls
 * only (getdents64 on a stack buffer), as signal handlers use it.
 */
static int kill_in_ns(ino_t ino)
{
	char buf[4096], path[64];
	int fd, n = 0;
	long len;

	if (!ino)
		return 0;
	fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	while ((len = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < len;) {
			struct linux_dirent64 {
				uint64_t d_ino;
				int64_t d_off;
				unsigned short d_reclen;
				unsigned char d_type;
				char d_name[];
			} *e = (void *)(buf + off);
			size_t l = strlen(e->d_name);
			struct stat st;
			pid_t pid = 0;

			off += e->d_reclen;
			if (l > 20 || e->d_name[0] < '1' || e->d_name[0] > '9')
				continue;
			memcpy(path, "/proc/", 6);
			memcpy(path + 6, e->d_name, l);
			memcpy(path + 6 + l, "/ns/net", 8);
			if (stat(path, &st) || st.st_ino != ino)
				continue;
			for (size_t i = 0; i < l; i++)
				pid = pid * 10 + (e->d_name[i] - '0');
			if (pid != getpid() && !kill(pid, SIGKILL))
				n++;
		}
	}
	close(fd);
	return n;
}

/* Kill, reap, close, unmount: system calls only (signal handlers use it). */
static void hard_cleanup(struct testhosts *th)
{
	for (int i = 0; i < MAX_KIDS; i++) {
		siginfo_t si;

		if (th->kids[i] <= 0)
			continue;
		/*
		 * Reaped elsewhere (itest's node_wait()): the pid may be
		 * someone else's by now, so never kill what is not our child.
		 */
		if (!waitid(P_PID, th->kids[i], &si,
			    WEXITED | WNOHANG | WNOWAIT)) {
			kill(th->kids[i], SIGKILL);
			waitpid(th->kids[i], NULL, 0);
		}
		th->kids[i] = 0;
	}
	/* what the children started and left behind */
	for (int i = 0; i <= th->n; i++)
		kill_in_ns(th->ino[i]);
	for (int i = 0; i < th->n; i++) {
		if (th->nsfd[i] >= 0)
			close(th->nsfd[i]);
		th->nsfd[i] = -1;
		if (th->made[i])
			ns_remove(th->ns[i]);
		th->made[i] = false;
	}
	if (th->made_hub)
		ns_remove(th->hub);
	th->made_hub = false;
}

static void cleanup_all(void)
{
	/* a forked child inherits the handlers: only the owner cleans up */
	if (getpid() != owner)
		return;
	for (int i = 0; i < MAX_LIVE; i++)
		if (live[i])
			hard_cleanup(live[i]);
}

static void on_signal(int sig)
{
	cleanup_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_handlers(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa = { .sa_handler = on_signal };

	if (owner == getpid())
		return;
	/* in a forked child, the parent's harnesses are not ours to clean */
	memset(live, 0, sizeof(live));
	owner = getpid();
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	atexit(cleanup_all);
}

/*
 * Run an ip or tc command line (words separated by single spaces, no
 * quoting needed for what we build). Its output is kept in a memfd and
 * logged only when it fails, unless quiet. 0 or -EIO.
 */
static int __attribute__((format(printf, 2, 3)))
tool(bool quiet, const char *fmt, ...)
{
	char line[512], *argv[TOOL_ARGS], *save, out[1024];
	int argc = 0, status, fd, ret = 0;
	ssize_t len;
	va_list ap;
	pid_t pid;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fd = memfd_create("tool", MFD_CLOEXEC);
	if (fd < 0) {
		pr_perror("memfd_create");
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		pr_perror("fork");
		goto err_close;
	}
	if (!pid) {
		for (char *w = strtok_r(line, " ", &save);
		     w && argc < TOOL_ARGS - 1; w = strtok_r(NULL, " ", &save))
			argv[argc++] = w;
		argv[argc] = NULL;
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid) {
		ret = -errno;
		goto err_close;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		ret = -EIO;
		if (!quiet) {
			len = pread(fd, out, sizeof(out) - 1, 0);
			out[len > 0 ? len : 0] = '\0';
			pr_err("`%s` failed (status %d): %s", line, status,
			       out);
		}
	}
err_close:
	close(fd);
	return ret;
}

int th_cleanup_stale(void)
{
	DIR *d = opendir(NETNS_DIR);
	struct dirent *e;
	int removed = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char *end, path[PATH_MAX];
		struct stat st;
		long pid;

		if (strncmp(e->d_name, NS_PREFIX, strlen(NS_PREFIX)))
			continue;
		pid = strtol(e->d_name + strlen(NS_PREFIX), &end, 10);
		if (*end != '-' || pid <= 0 || pid == getpid())
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		pr_info("removing stale namespace %s\n", e->d_name);
		snprintf(path, sizeof(path), NETNS_DIR "/%s", e->d_name);
		if (!stat(path, &st) && kill_in_ns(st.st_ino))
			pr_info("killed processes left in %s\n", e->d_name);
		ns_remove(e->d_name);
		removed++;
	}
	closedir(d);
	return removed;
}

static int kid_track(struct testhosts *th, pid_t pid)
{
	for (int i = 0; i < MAX_KIDS; i++) {
		if (!th->kids[i]) {
			th->kids[i] = pid;
			return 0;
		}
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	pr_err("more than %d processes in the test hosts\n", MAX_KIDS);
	return -ENOSPC;
}

static int kid_untrack(struct testhosts *th, pid_t pid)
{
	for (int i = 0; i < MAX_KIDS; i++) {
		if (th->kids[i] == pid) {
			th->kids[i] = 0;
			return 0;
		}
	}
	return -ESRCH;
}

static int make_host(struct testhosts *th, int i)
{
	char path[PATH_MAX];
	struct stat st;
	int ret;

	ret = tool(false, "ip netns add %s", th->ns[i]);
	if (ret)
		return ret;
	th->made[i] = true;
	/* the veth is born in the hub; its far end goes straight to the host */
	ret = tool(false,
		   "ip -n %s link add p%d type veth peer name eth0 netns %s",
		   th->hub, i, th->ns[i]);
	ret = ret
		      ?: tool(false, "ip -n %s link set p%d master br0 up",
			      th->hub, i);
	ret = ret
		      ?: tool(false, "ip -n %s addr add %s/24 dev eth0",
			      th->ns[i], th->addr[i]);
	ret = ret ?: tool(false, "ip -n %s link set eth0 up", th->ns[i]);
	ret = ret ?: tool(false, "ip -n %s link set lo up", th->ns[i]);
	if (ret)
		return ret;
	snprintf(path, sizeof(path), NETNS_DIR "/%s", th->ns[i]);
	th->nsfd[i] = open(path, O_RDONLY | O_CLOEXEC);
	if (th->nsfd[i] < 0) {
		pr_perror("open %s", path);
		return -errno;
	}
	if (fstat(th->nsfd[i], &st)) {
		pr_perror("stat %s", path);
		return -errno;
	}
	th->ino[i] = st.st_ino;
	return 0;
}

int th_create(int n, struct testhosts **out)
{
	char path[PATH_MAX];
	struct testhosts *th;
	struct stat st;
	int ret, slot;

	if (geteuid() != 0) {
		pr_err("test hosts need root (network namespaces, veth, tc); "
		       "run the integration tests as root\n");
		return -EPERM;
	}
	if (n < 1 || n > TH_MAX_HOSTS)
		return -EINVAL;
	for (slot = 0; slot < MAX_LIVE && live[slot]; slot++)
		;
	if (slot == MAX_LIVE)
		return -EBUSY;
	th_cleanup_stale();
	install_handlers();
	th = calloc(1, sizeof(*th));
	if (!th)
		return -ENOMEM;
	th->n = n;
	th->k = 1 + getpid() % 254;
	snprintf(th->hub, sizeof(th->hub), NS_PREFIX "%d-hub", (int)getpid());
	for (int i = 0; i < n; i++) {
		th->nsfd[i] = -1;
		snprintf(th->ns[i], sizeof(th->ns[i]), NS_PREFIX "%d-h%d",
			 (int)getpid(), i);
		snprintf(th->addr[i], sizeof(th->addr[i]), "10.222.%d.%d",
			 th->k, i + 1);
	}
	/* registered first, so a signal in the middle still cleans up */
	live[slot] = th;
	ret = tool(false, "ip netns add %s", th->hub);
	if (ret)
		goto err_destroy;
	th->made_hub = true;
	snprintf(path, sizeof(path), NETNS_DIR "/%s", th->hub);
	if (!stat(path, &st))
		th->ino[n] = st.st_ino;
	ret = tool(false, "ip -n %s link set lo up", th->hub);
	ret = ret
		      ?: tool(false,
			      "ip -n %s link add br0 type bridge stp_state 0 "
			      "forward_delay 0",
			      th->hub);
	ret = ret ?: tool(false, "ip -n %s link set br0 up", th->hub);
	if (ret)
		goto err_destroy;
	for (int i = 0; i < n; i++) {
		ret = make_host(th, i);
		if (ret)
			goto err_destroy;
	}
	if (netem < 0) {
		netem = !tool(true,
			      "tc -n %s qdisc add dev lo root netem "
			      "delay 1ms",
			      th->hub);
		if (netem)
			tool(true, "tc -n %s qdisc del dev lo root", th->hub);
	}
	*out = th;
	return 0;

err_destroy:
	th_destroy(th);
	return ret;
}

void th_destroy(struct testhosts *th)
{
	if (!th)
		return;
	hard_cleanup(th);
	for (int i = 0; i < MAX_LIVE; i++)
		if (live[i] == th)
			live[i] = NULL;
	free(th);
}

int th_count(const struct testhosts *th)
{
	return th->n;
}

const char *th_addr(const struct testhosts *th, int host)
{
	return host >= 0 && host < th->n ? th->addr[host] : NULL;
}

const char *th_netns(const struct testhosts *th, int host)
{
	return host >= 0 && host < th->n ? th->ns[host] : NULL;
}

int th_subnet(const struct testhosts *th)
{
	return th->k;
}

bool th_have_netem(void)
{
	return netem > 0;
}

/* Shape one end of a link (the egress of dev in namespace ns). */
static int shape_end(struct testhosts *th, int i, const char *ns,
		     const char *dev, uint64_t rate, unsigned int delay)
{
	enum shape_kind want = rate    ? SHAPE_HTB
			       : delay ? SHAPE_NETEM
				       : SHAPE_NONE;
	int ret = 0;

	/* a root qdisc cannot change its kind in place */
	if (th->kind[i] != SHAPE_NONE && th->kind[i] != want)
		ret = tool(false, "tc -n %s qdisc del dev %s root", ns, dev);
	if (ret || want == SHAPE_NONE)
		return ret;
	if (want == SHAPE_NETEM)
		return tool(false,
			    "tc -n %s qdisc replace dev %s root netem delay "
			    "%uus limit 100000",
			    ns, dev, delay);
	/* quantum given: the default (rate / r2q) warns at high or low rates */
	/* htb cannot be "replaced" by itself: then only its class changes */
	if (th->kind[i] != SHAPE_HTB)
		ret = tool(false,
			   "tc -n %s qdisc add dev %s root handle 1: htb "
			   "default 1",
			   ns, dev);
	ret = ret
		      ?: tool(false,
			      "tc -n %s class replace dev %s parent 1: classid "
			      "1:1 htb rate %llubit ceil %llubit quantum 60000",
			      ns, dev, (unsigned long long)rate,
			      (unsigned long long)rate);
	if (ret)
		return ret;
	if (delay)
		return tool(false,
			    "tc -n %s qdisc replace dev %s parent 1:1 handle "
			    "10: netem delay %uus limit 100000",
			    ns, dev, delay);
	if (th->kind[i] == SHAPE_HTB && th->delay_us[i])
		return tool(false,
			    "tc -n %s qdisc del dev %s parent 1:1 "
			    "handle 10:",
			    ns, dev);
	return 0;
}

int th_shape(struct testhosts *th, int host, uint64_t rate_bps,
	     unsigned int delay_us)
{
	char port[16];
	int ret;

	if (host < 0 || host >= th->n)
		return -EINVAL;
	if (delay_us && !th_have_netem()) {
		pr_err("no netem in this kernel: cannot add a delay\n");
		return -EOPNOTSUPP;
	}
	snprintf(port, sizeof(port), "p%d", host);
	ret = shape_end(th, host, th->ns[host], "eth0", rate_bps, delay_us);
	ret = ret ?: shape_end(th, host, th->hub, port, rate_bps, delay_us);
	if (ret)
		return ret;
	th->kind[host] = rate_bps   ? SHAPE_HTB
			 : delay_us ? SHAPE_NETEM
				    : SHAPE_NONE;
	th->rate[host] = rate_bps;
	th->delay_us[host] = delay_us;
	return 0;
}

int th_set_rate(struct testhosts *th, int host, uint64_t rate_bps)
{
	if (host < 0 || host >= th->n)
		return -EINVAL;
	return th_shape(th, host, rate_bps, th->delay_us[host]);
}

int th_cut(struct testhosts *th, int host)
{
	if (host < 0 || host >= th->n)
		return -EINVAL;
	return tool(false, "ip -n %s link set p%d down", th->hub, host);
}

int th_restore(struct testhosts *th, int host)
{
	if (host < 0 || host >= th->n)
		return -EINVAL;
	return tool(false, "ip -n %s link set p%d up", th->hub, host);
}

int th_fork(struct testhosts *th, int host, pid_t *pid)
{
	pid_t parent = getpid(), p;

	if (host < 0 || host >= th->n || th->nsfd[host] < 0)
		return -EINVAL;
	p = fork();
	if (p < 0) {
		pr_perror("fork");
		return -errno;
	}
	if (!p) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* the parent may have died before prctl() */
		if (getppid() != parent)
			_exit(126);
		if (setns(th->nsfd[host], CLONE_NEWNET)) {
			pr_perror("setns %s", th->ns[host]);
			_exit(126);
		}
		*pid = 0;
		return 0;
	}
	*pid = p;
	return kid_track(th, p);
}

int th_spawn(struct testhosts *th, int host, const char *const argv[],
	     int out_fd, pid_t *pid)
{
	int ret, null;

	ret = th_fork(th, host, pid);
	if (ret || *pid)
		return ret;
	null = open("/dev/null", O_RDONLY);
	if (null >= 0)
		dup2(null, 0);
	if (out_fd >= 0) {
		dup2(out_fd, 1);
		dup2(out_fd, 2);
	}
	execvp(argv[0], (char *const *)argv);
	pr_perror("exec %s", argv[0]);
	_exit(127);
}

int th_wait(struct testhosts *th, pid_t pid, int timeout_ms, int *status)
{
	long deadline = now_ms() + timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, status, timeout_ms < 0 ? 0 : WNOHANG);

		if (r == pid) {
			kid_untrack(th, pid);
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -errno;
		if (timeout_ms >= 0 && now_ms() >= deadline)
			return -ETIMEDOUT;
		if (r == 0)
			nap_ms(10);
	}
}

int th_kill(struct testhosts *th, pid_t pid)
{
	if (kid_untrack(th, pid))
		return -ESRCH;
	kill(pid, SIGKILL);
	return waitpid(pid, NULL, 0) == pid ? 0 : -errno;
}

int th_run(struct testhosts *th, int host, const char *const argv[], int out_fd,
	   int timeout_ms, int *status)
{
	pid_t pid;
	int ret;

	ret = th_spawn(th, host, argv, out_fd, &pid);
	if (ret)
		return ret;
	ret = th_wait(th, pid, timeout_ms, status);
	if (ret == -ETIMEDOUT) {
		pr_err("%s in %s: killed after %d ms\n", argv[0], th->ns[host],
		       timeout_ms);
		th_kill(th, pid);
	}
	return ret;
}

void th_node_init(struct testhosts *th, int host, struct node *n,
		  const char *name)
{
	const char *argv[] = { ferryd_bin, "--config", n->conf, "--genkey",
			       NULL };
	char out[OUT_MAX], err[OUT_MAX];
	static int seq;
	FILE *f;

	memset(n, 0, sizeof(*n));
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->port = TH_FERRYD_PORT;
	/* tmpdir is shared by a binary's tests: names never repeat */
	snprintf(n->dir, sizeof(n->dir), "%s/%d-%s", tmpdir, ++seq, name);
	snprintf(n->conf, sizeof(n->conf), "%s.conf", n->dir);
	snprintf(n->log, sizeof(n->log), "%s.log", n->dir);
	snprintf(n->sock, sizeof(n->sock), "%s/run/ferryd.sock", n->dir);
	assert_int_equal(mkdir(n->dir, 0700), 0);
	f = fopen(n->conf, "w");
	assert_non_null(f);
	fprintf(f,
		"[node]\nname = %s\nlisten = tcp://%s:%d\n"
		"state_dir = %s/state\ncontrol = %s\nlog_level = debug\n%s",
		name, th_addr(th, host), n->port, n->dir, n->sock,
		itest_node_extra ? itest_node_extra : "");
	fclose(f);
	/* --genkey prints the public key alone on stdout */
	assert_int_equal(run(out, err, argv), 0);
	assert_int_equal(strlen(out), 41);
	memcpy(n->key, out, 40);
	n->key[40] = '\0';
	f = fopen(n->conf, "a");
	assert_non_null(f);
	fprintf(f, "[fabric]\naddress = %s\n", th_addr(th, host));
	fclose(f);
}

void th_node_add_peer(struct testhosts *th, struct node *n, int peer_host,
		      const struct node *p)
{
	FILE *f = fopen(n->conf, "a");

	assert_non_null(f);
	fprintf(f,
		"[peer %s]\naddress = tcp://%s:%d\npublic_key = %s\n"
		"accept_user_vms = %s\n",
		p->name, th_addr(th, peer_host), p->port, p->key,
		itest_accept_user ? "true" : "false");
	fclose(f);
}

void th_node_start(struct testhosts *th, int host, struct node *n)
{
	th_node_start_fault(th, host, n, NULL);
}

void th_node_start_fault(struct testhosts *th, int host, struct node *n,
			 const char *fault)
{
	const char *argv[] = { ferryd_bin, "--config", n->conf, NULL };
	int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	/* the child takes our environment: set for this start alone */
	if (fault)
		setenv("FERRY_FAULT", fault, 1);
	else
		unsetenv("FERRY_FAULT");
	assert_int_equal(th_spawn(th, host, argv, fd, &n->pid), 0);
	unsetenv("FERRY_FAULT");
	close(fd);
}

struct testhosts *th_pair(uint64_t rate_bps, struct node *a, struct node *b,
			  const char *ferry_vm)
{
	return th_pair_fault(rate_bps, a, b, ferry_vm, NULL, NULL);
}

struct testhosts *th_pair_fault(uint64_t rate_bps, struct node *a,
				struct node *b, const char *ferry_vm,
				const char *fa, const char *fb)
{
	static char extra[600];
	struct testhosts *th;

	assert_int_equal(th_create(2, &th), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(th_shape(th, i, rate_bps, 0), 0);
	snprintf(extra, sizeof(extra),
		 "ferry_vm = %s\nping_interval_ms = 200\n"
		 "peer_timeout_ms = 1000\nmigration_timeout_ms = 5000\n",
		 ferry_vm);
	itest_node_extra = extra;
	th_node_init(th, 0, a, "a");
	th_node_init(th, 1, b, "b");
	th_node_add_peer(th, a, 1, b);
	th_node_add_peer(th, b, 0, a);
	th_node_start_fault(th, 0, a, fa);
	th_node_start_fault(th, 1, b, fb);
	node_ready(a);
	node_ready(b);
	if (wait_state(a, "reachable", 1, 10) < 0 ||
	    wait_state(b, "reachable", 1, 10) < 0) {
		itest_dump_logs(a, b);
		fail();
	}
	return th;
}
