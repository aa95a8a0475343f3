// SPDX-License-Identifier: MIT
/*
 * Helpers shared by the integration tests (itest.h): temp dir, children
 * that never outlive a test, free ports, running the CLI with a deadline,
 * nodes with their configuration and key pair.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <msgpack.h>
#include <zmq.h>

#include "itest.h"

const char *ferryd_bin, *ferry_bin;
char tmpdir[128];
const char *itest_node_extra;
bool itest_accept_user = true;
static pid_t children[MAX_CHILDREN];
/* The JSON documents handed to the test, freed at teardown. */
static json_t **docs;
static size_t ndocs, docs_cap;

double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

void kill_children(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	}
}

void track(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (!children[i]) {
			children[i] = pid;
			return;
		}
	}
	kill(pid, SIGKILL);
	fail_msg("too many children");
}

void untrack(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

/*
 * A free loopback TCP port, kept for this process: the probe socket stays
 * bound (not listening) with SO_REUSEADDR set after its bind. A ferryd's
 * listener (ZeroMQ sets SO_REUSEADDR) may then bind and listen there, but
 * another test's probe, which binds without it, may not: two tests run at
 * once once drew the same port and one ferryd could not listen.
 */
int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	static bool seeded;
	int fd, port, one = 1;

	if (!seeded) {
		srandom((unsigned)getpid() ^ (unsigned)time(NULL));
		seeded = true;
	}
	/*
	 * Below the kernel's ephemeral range (32768-60999 here): a port the
	 * kernel hands out for port 0 can be taken again by the next bind to
	 * port 0 (a ferryd's fabric domains bind two) before our ferryd binds
	 * it as its listen port.
	 */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int tries = 0; tries < 1000; tries++) {
		port = 20000 + (int)(random() % 12000);
		sa.sin_port = htons(port);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			/* held until exit: fds are plenty for a test's nodes */
			assert_int_equal(setsockopt(fd, SOL_SOCKET,
						    SO_REUSEADDR, &one,
						    sizeof(one)),
					 0);
			return port;
		}
		close(fd);
	}
	fail_msg("no free port in 20000-31999");
	return -1;
}

/*
 * Run argv to completion (killed after 10 s), capturing stdout and stderr.
 * Returns the exit code, or 128 + signal.
 */
int run(char *out, char *err, const char *const argv[])
{
	return run_for(out, err, argv, 10);
}

int run_for(char *out, char *err, const char *const argv[], double secs)
{
	int po[2], pe[2], status, n;
	size_t lo = 0, le = 0;
	double deadline = now_s() + secs;
	pid_t pid;

	assert_int_equal(pipe2(po, O_CLOEXEC), 0);
	assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	track(pid);
	close(po[1]);
	close(pe[1]);
	for (;;) {
		struct pollfd fds[2] = { { po[0], POLLIN, 0 },
					 { pe[0], POLLIN, 0 } };
		int left = (int)((deadline - now_s()) * 1000);

		if (left <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (fds[0].fd < 0 && fds[1].fd < 0)
			break;
		if (po[0] < 0)
			fds[0].fd = -1;
		if (pe[0] < 0)
			fds[1].fd = -1;
		if (po[0] < 0 && pe[0] < 0)
			break;
		if (poll(fds, 2, left) <= 0)
			continue;
		if (po[0] >= 0 && fds[0].revents) {
			n = read(po[0], out + lo, OUT_MAX - 1 - lo);
			if (n <= 0) {
				close(po[0]);
				po[0] = -1;
			} else {
				lo += n;
			}
		}
		if (pe[0] >= 0 && fds[1].revents) {
			n = read(pe[0], err + le, OUT_MAX - 1 - le);
			if (n <= 0) {
				close(pe[0]);
				pe[0] = -1;
			} else {
				le += n;
			}
		}
	}
	if (po[0] >= 0)
		close(po[0]);
	if (pe[0] >= 0)
		close(pe[0]);
	out[lo] = err[le] = '\0';
	assert_int_equal(waitpid(pid, &status, 0), pid);
	untrack(pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

char *slurp(const char *path)
{
	static char buf[1 << 18];
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

const char *wait_log(const struct node *n, const char *text, double secs)
{
	double t0 = now_s();
	const char *at;

	while (!(at = strstr(slurp(n->log), text))) {
		if (now_s() - t0 > secs)
			fail_msg("no \"%s\" in %s's log after %.0f s", text,
				 n->name, secs);
		sleep_ms(20);
	}
	return at;
}

void node_init(struct node *n, const char *name)
{
	char out[OUT_MAX], err[OUT_MAX];
	FILE *f;

	memset(n, 0, sizeof(*n));
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->port = free_port();
	snprintf(n->dir, sizeof(n->dir), "%s/%s", tmpdir, name);
	snprintf(n->conf, sizeof(n->conf), "%s/%s.conf", tmpdir, name);
	snprintf(n->log, sizeof(n->log), "%s/%s.log", tmpdir, name);
	snprintf(n->sock, sizeof(n->sock), "%s/run/ferryd.sock", n->dir);
	assert_int_equal(mkdir(n->dir, 0700), 0);
	/*
	 * this test's node: what its log says is this test's (restarts
	 * add); an earlier test's goes to NAME.log.K (FERRY_TEST_KEEP)
	 */
	{
		static unsigned k;
		char old[320];

		snprintf(old, sizeof(old), "%s.%u", n->log, ++k);
		rename(n->log, old);
	}
	f = fopen(n->conf, "w");
	assert_non_null(f);
	fprintf(f,
		"[node]\nname = %s\nlisten = tcp://127.0.0.1:%d\n"
		"state_dir = %s/state\ncontrol = %s\nlog_level = debug\n%s",
		name, n->port, n->dir, n->sock,
		itest_node_extra ? itest_node_extra : "");
	/* the data plane under test (itest_env()); its default address */
	if (getenv("FERRY_TEST_PROVIDER"))
		fprintf(f, "[fabric]\nprovider = %s\n",
			getenv("FERRY_TEST_PROVIDER"));
	fclose(f);
	/* --genkey prints the public key alone on stdout; a hang guard */
	const char *argv[] = { ferryd_bin, "--config", n->conf, "--genkey",
			       NULL };
	assert_int_equal(run_for(out, err, argv, 60), 0);
	assert_int_equal(strlen(out), 41);
	assert_int_equal(out[40], '\n');
	memcpy(n->key, out, 40);
	n->key[40] = '\0';
}

void node_add_peer(struct node *n, const char *name, int port, const char *key)
{
	FILE *f = fopen(n->conf, "a");

	assert_non_null(f);
	fprintf(f,
		"[peer %s]\naddress = tcp://127.0.0.1:%d\npublic_key = %s\n"
		"accept_user_vms = %s\n",
		name, port, key, itest_accept_user ? "true" : "false");
	fclose(f);
}

void node_start(struct node *n)
{
	node_start_fault(n, NULL);
}

void node_start_fault(struct node *n, const char *fault)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid) {
		int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* this start's points only: a restart is clean */
		if (fault)
			setenv("FERRY_FAULT", fault, 1);
		else
			unsetenv("FERRY_FAULT");
		dup2(fd, 1);
		dup2(fd, 2);
		execl(ferryd_bin, ferryd_bin, "--config", n->conf, NULL);
		_exit(127);
	}
	n->pid = pid;
	track(pid);
}

/* Wait up to timeout_s for the child to exit; its status, or -1. */
int node_wait(struct node *n, double timeout_s)
{
	double deadline = now_s() + timeout_s;
	int status;

	while (now_s() < deadline) {
		pid_t r = waitpid(n->pid, &status, WNOHANG);

		if (r == n->pid) {
			untrack(n->pid);
			n->pid = 0;
			return status;
		}
		sleep_ms(20);
	}
	return -1;
}

/* /proc/PID/stat's state letter, '?' if there is no such process. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f) {
		p = fgets(buf, sizeof(buf), f);
		fclose(f);
	}
	/* the name in parentheses may hold anything: after the last ')' */
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' ? p[2] : '?';
}

bool pid_stopped(pid_t pid)
{
	return pid > 0 && proc_state(pid) == 'T';
}

void node_wait_stopped(struct node *n, double timeout_s)
{
	double t0 = now_s();
	char st;

	while ((st = proc_state(n->pid)) != 'T') {
		if (st == '?' || st == 'Z' || now_s() - t0 > timeout_s)
			fail_msg("ferryd %s not stopped at its fault point "
				 "after %.1f s (state %c): %s",
				 n->name, now_s() - t0, st, slurp(n->log));
		sleep_ms(10);
	}
}

pid_t child_of(pid_t parent, const char *comm)
{
	char path[300], buf[512], *p;
	struct dirent *de;
	pid_t found = 0;
	DIR *d;

	d = opendir("/proc");
	assert_non_null(d);
	while (!found && (de = readdir(d))) {
		size_t len = strlen(comm);
		FILE *f;
		long ppid;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		p = fgets(buf, sizeof(buf), f);
		fclose(f);
		/* "PID (COMM) S PPID ..." */
		if (!p || !(p = strchr(buf, '(')) ||
		    strncmp(p + 1, comm, len) || p[len + 1] != ')')
			continue;
		if (sscanf(p + len + 2, " %*c %ld", &ppid) == 1 &&
		    ppid == parent)
			found = (pid_t)atol(de->d_name);
	}
	closedir(d);
	return found;
}

/* The data plane under test is the one the node opened. */
static void check_provider(struct node *n)
{
	const char *want = getenv("FERRY_TEST_PROVIDER");
	const char *got;

	if (!want)
		return;
	got = jstr(ferry_json(n, "status"), "fabric_provider");
	if (!got || strncmp(got, want, strlen(want)))
		fail_msg("ferryd %s runs on fabric %s, not %s", n->name, got,
			 want);
}

/*
 * Start-up is not a speed any test expects: under an emulated CPU
 * (the test VM) loading libfabric's providers alone takes seconds. A
 * hang guard, then; a ferryd that exits instead fails the test.
 */
void node_ready(struct node *n)
{
	char out[OUT_MAX], err[OUT_MAX];
	double t0 = now_s();
	siginfo_t si = { 0 };

	while (now_s() - t0 < 120) {
		if (ferry(n, true, "status", out, err) == 0) {
			check_provider(n);
			return;
		}
		if (!waitid(P_PID, n->pid, &si, WEXITED | WNOHANG | WNOWAIT) &&
		    si.si_pid == n->pid)
			fail_msg("ferryd %s exited: %s", n->name,
				 slurp(n->log));
		sleep_ms(50);
	}
	fail_msg("ferryd %s: no control socket after 120 s: %s", n->name,
		 slurp(n->log));
}

/* Run `ferry -s SOCK [--json] CMD`; returns its exit code. */
int ferry(struct node *n, bool json, const char *cmd, char *out, char *err)
{
	const char *argv[] = { ferry_bin,	  "-s",
			       n->sock,		  json ? "--json" : cmd,
			       json ? cmd : NULL, NULL };

	return run(out, err, argv);
}

/*
 * A copy of out with each integer of 19 digits or more outside strings
 * quoted: jansson takes integers up to INT64_MAX only, and a guest's
 * counter may be wider (the touch guest's checks, a sum of words). NULL
 * when out of memory.
 */
static char *quote_wide(const char *out)
{
	size_t n = strlen(out), k = 0;
	char *q = malloc(2 * n + 1);
	bool str = false;

	for (size_t i = 0; q && i < n;) {
		size_t d = 0;

		if (out[i] == '"' && (i == 0 || out[i - 1] != '\\'))
			str = !str;
		while (!str && isdigit((unsigned char)out[i + d]))
			d++;
		if (d >= 19)
			q[k++] = '"';
		memcpy(q + k, out + i, d ? d : 1);
		k += d ? d : 1;
		if (d >= 19)
			q[k++] = '"';
		i += d ? d : 1;
	}
	if (q)
		q[k] = '\0';
	return q;
}

/* out parsed, owned by the caller; not one JSON object fails the test. */
static json_t *parse(const char *out, const char *err)
{
	json_error_t jerr = { .text = "out of memory" };
	char *q = quote_wide(out);
	json_t *j = q ? json_loads(q, 0, &jerr) : NULL;

	free(q);

	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
		snprintf(jerr.text, sizeof(jerr.text), "not an object");
	}
	if (!j)
		fail_msg("ferry --json printed no JSON object (%s): %s; "
			 "stderr: %s",
			 jerr.text, out, err);
	return j;
}

/*
 * Run argv (deadline secs) and parse its stdout. Returns the document,
 * owned by the caller; NULL when the command printed nothing and rc takes
 * its exit code. Anything else fails the test.
 */
static json_t *run_json(double secs, int *rc, const char *const argv[])
{
	char out[OUT_MAX], err[OUT_MAX];
	int ret;

	ret = run_for(out, err, argv, secs);
	if (rc)
		*rc = ret;
	else if (ret)
		fail_msg("ferry --json %s: exit %d: %s%s", argv[4], ret, err,
			 out);
	if (rc && !out[0])
		return NULL;
	return parse(out, err);
}

/* Hand j to the test: freed at teardown. */
static json_t *keep(json_t *j)
{
	if (!j)
		return NULL;
	if (ndocs == docs_cap) {
		size_t cap = docs_cap ? 2 * docs_cap : 64;
		json_t **d = realloc(docs, cap * sizeof(*d));

		if (!d) {
			json_decref(j);
			fail_msg("out of memory");
		}
		docs = d;
		docs_cap = cap;
	}
	docs[ndocs++] = j;
	return j;
}

static void free_docs(void)
{
	for (size_t i = 0; i < ndocs; i++)
		json_decref(docs[i]);
	free(docs);
	docs = NULL;
	ndocs = docs_cap = 0;
}

json_t *jparse(const char *out, const char *err)
{
	return keep(parse(out, err));
}

json_t *ferry_json(struct node *n, const char *cmd)
{
	return ferry_jargs(n, 10, NULL, cmd, NULL);
}

json_t *ferry_jargs(struct node *n, double secs, int *rc, ...)
{
	const char *argv[32] = { ferry_bin, "-s", n->sock, "--json" };
	int i = 4;
	va_list ap;

	va_start(ap, rc);
	while (i < 31 && (argv[i] = va_arg(ap, const char *)))
		i++;
	va_end(ap);
	argv[i] = NULL;
	return keep(run_json(secs, rc, argv));
}

json_t *itest_json_poll(struct node *n, const char *cmd)
{
	const char *argv[] = { ferry_bin, "-s", n->sock, "--json", cmd, NULL };
	int rc;
	json_t *j = run_json(10, &rc, argv);

	if (rc) {
		json_decref(j);
		return NULL;
	}
	return j;
}

json_t *jget(const json_t *j, const char *path)
{
	const char *p = path;
	char key[64], *end;
	size_t len;

	while (j && *p) {
		if (*p == '[') {
			unsigned long i = strtoul(p + 1, &end, 10);

			if (end == p + 1 || *end != ']')
				fail_msg("bad JSON path '%s'", path);
			j = json_array_get(j, i);
			p = end + 1;
			continue;
		}
		if (*p == '.')
			p++;
		len = strcspn(p, ".[");
		if (!len || len >= sizeof(key))
			fail_msg("bad JSON path '%s'", path);
		memcpy(key, p, len);
		key[len] = '\0';
		j = json_object_get(j, key);
		p += len;
	}
	return (json_t *)j;
}

const char *jstr(const json_t *j, const char *path)
{
	return json_string_value(jget(j, path));
}

bool jis(const json_t *j, const char *path, const char *val)
{
	const char *s = jstr(j, path);

	return s && val && !strcmp(s, val);
}

long jint(const json_t *j, const char *path)
{
	const json_t *v = jget(j, path);

	return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

double jdbl(const json_t *j, const char *path)
{
	const json_t *v = jget(j, path);

	return json_is_number(v) ? json_number_value(v) : -1;
}

json_t *jfind(const json_t *j, const char *path, const char *key,
	      const char *val)
{
	const json_t *a = jget(j, path);

	for (size_t i = 0; i < json_array_size(a); i++)
		if (jis(json_array_get(a, i), key, val))
			return json_array_get(a, i);
	return NULL;
}

int jlen(const json_t *j, const char *path)
{
	const json_t *a = jget(j, path);

	return json_is_array(a) ? (int)json_array_size(a) : -1;
}

int jcount(const json_t *j, const char *path, const char *key, const char *val)
{
	const json_t *a = jget(j, path);
	int n = 0;

	if (!json_is_array(a))
		return -1;
	for (size_t i = 0; i < json_array_size(a); i++)
		n += jis(json_array_get(a, i), key, val);
	return n;
}

const char *jtext(const json_t *j)
{
	static char buf[OUT_MAX];
	size_t n;

	if (!j)
		return "(no JSON)";
	n = json_dumpb(j, buf, sizeof(buf) - 1, JSON_COMPACT | JSON_ENCODE_ANY);
	buf[n < sizeof(buf) - 1 ? n : sizeof(buf) - 1] = '\0';
	return buf;
}

void itest_assert_jstr(const json_t *j, const char *path, const char *want,
		       bool part, const char *file, int line)
{
	const char *s = jstr(j, path);

	if (s && (part ? strstr(s, want) != NULL : !strcmp(s, want)))
		return;
	print_error("%s is %s%s%s, not %s\"%s\"; in %s\n", path, s ? "\"" : "",
		    s ? s : "absent", s ? "\"" : "",
		    part ? "one containing " : "", want, jtext(j));
	_fail(file, line);
}

/* Poll `ferry --json peers` until want peers show state, or timeout. */
double wait_state(struct node *n, const char *state, int want, double timeout_s)
{
	double t0 = now_s();
	char last[OUT_MAX] = "";
	json_t *j;
	int k;

	while (now_s() - t0 < timeout_s) {
		j = itest_json_poll(n, "peers");
		k = jcount(j, "peers", "state", state);
		snprintf(last, sizeof(last), "%s", jtext(j));
		json_decref(j);
		if (k == want)
			return now_s() - t0;
		sleep_ms(100);
	}
	print_error("%s: timed out waiting for %d peers %s; last: %s\n",
		    n->name, want, state, last);
	return -1;
}

int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-it.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

/* Per test, also after a failure: no process may outlive its test. */
int teardown(void **state)
{
	(void)state;
	kill_children();
	free_docs();
	return 0;
}

/*
 * SIGKILL every process with an argument under dir: the VMs the group's
 * ferryds started (`ferry-vm ... --adapter DIR/NODE/state/vms/VM.sock`),
 * which outlive a killed ferryd (init's now) and which the node may not
 * list yet (an incoming one); returns how many.
 */
static int kill_strays(const char *dir)
{
	size_t dl = strlen(dir);
	struct dirent *de;
	int n = 0;
	DIR *d;

	d = dl ? opendir("/proc") : NULL;
	while (d && (de = readdir(d))) {
		char path[300], args[4096];
		ssize_t len, i;
		int fd;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, args, sizeof(args) - 1);
		close(fd);
		if (len <= 0)
			continue;
		args[len] = '\0';
		/* NUL-separated; the last may be cut short */
		for (i = 0; i < len; i += (ssize_t)strlen(args + i) + 1) {
			if (strncmp(args + i, dir, dl) || args[i + dl] != '/')
				continue;
			n += !kill((pid_t)atol(de->d_name), SIGKILL);
			break;
		}
	}
	if (d)
		closedir(d);
	return n;
}

int group_teardown(void **state)
{
	char cmd[200];
	int n;

	(void)state;
	kill_children();
	free_docs();
	n = kill_strays(tmpdir);
	if (n)
		fprintf(stderr, "killed %d process(es) left running under %s\n",
			n, tmpdir);
	if (getenv("FERRY_TEST_KEEP")) {
		fprintf(stderr, "kept %s\n", tmpdir);
		return 0;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}
