// SPDX-License-Identifier: MIT
/*
 * Helpers of the migration tests: ferry with any arguments, guests
 * (ferry-vm) under a node's vm_dir, their counters as ferryd shows them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "itest.h"
#include "tests/rxe.h"

int ferry_args(struct node *n, double secs, char *out, char *err, ...)
{
	const char *argv[32] = { ferry_bin, "-s", n->sock };
	int i = 3;
	va_list ap;

	va_start(ap, err);
	while (i < 31 && (argv[i] = va_arg(ap, const char *)))
		i++;
	va_end(ap);
	argv[i] = NULL;
	return run_for(out, err, argv, secs);
}

const char *itest_accel(void)
{
	const char *a = getenv("FERRY_TEST_ACCEL");

	if (a && *a)
		return a;
#if defined(__SANITIZE_THREAD__)
	return "kvm"; /* ThreadSanitizer's shadow covers user's guest RAM */
#else
	return "user";
#endif
}

pid_t itest_start_vm(struct node *n, const char *vm_bin, const char *name,
		     const char *const *opts)
{
	char sock[400], last[OUT_MAX] = "";
	const char *argv[32] = { vm_bin, "--adapter", sock,	    "--report",
				 "0",	 "--accel",   itest_accel() };
	double t0 = now_s();
	int i = 7;
	pid_t pid;

	snprintf(sock, sizeof(sock), "%s/state/vms/%s.sock", n->dir, name);
	while (*opts && i < 30)
		argv[i++] = *opts++;
	argv[i] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		char log[400];
		int fd;

		snprintf(log, sizeof(log), "%s/%s.vm.log", tmpdir, name);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	track(pid);
	/* a hang guard: an emulated CPU fills 64 MiB of random in seconds */
	while (now_s() - t0 < 30) {
		json_t *j = itest_json_poll(n, "vms");
		bool listed = jfind(j, "vms", "name", name);

		snprintf(last, sizeof(last), "%s", jtext(j));
		json_decref(j);
		if (listed)
			return pid;
		sleep_ms(50);
	}
	fail_msg("ferryd %s never listed VM %s: %s", n->name, name, last);
	return pid;
}

long vm_counter(struct node *n, const char *key)
{
	json_t *j = itest_json_poll(n, "vms");
	char path[80];
	long v;

	snprintf(path, sizeof(path), "vms[0].%s", key);
	v = jint(j, path);
	json_decref(j);
	return v;
}

void wait_counter(struct node *n, const char *key, long want)
{
	double t0 = now_s(), moved = t0;
	long v = -1, w = -1, nv, nw;
	char path[80];

	/*
	 * How long a guest takes depends on the CPU (an emulated one in the
	 * test VM is several times slower): wait as long as it runs, that
	 * is while its writes or the counter advance.
	 */
	snprintf(path, sizeof(path), "vms[0].%s", key);
	while (now_s() - moved < 20 && now_s() - t0 < 600) {
		json_t *j = itest_json_poll(n, "vms");

		nv = jint(j, path);
		nw = jint(j, "vms[0].writes");
		json_decref(j);
		if (nv >= want)
			return;
		if (nv != v || nw != w)
			moved = now_s();
		v = nv;
		w = nw;
		sleep_ms(50);
	}
	fail_msg("%s: %s never reached %ld (%ld; writes %ld, still for %.0f "
		 "s)",
		 n->name, key, want, v, w, now_s() - moved);
}

void wait_vm_exit(pid_t pid)
{
	double t0 = now_s();
	int status;

	while (now_s() - t0 < 10) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			untrack(pid);
			assert_true(WIFEXITED(status));
			assert_int_equal(WEXITSTATUS(status), 0);
			return;
		}
		sleep_ms(20);
	}
	fail_msg("the source ferry-vm did not exit");
}

void kill_node_vms(struct node *n)
{
	const json_t *vms;
	json_t *j;

	if (!n->pid || !(j = itest_json_poll(n, "vms")))
		return;
	vms = jget(j, "vms");
	for (size_t i = 0; i < json_array_size(vms); i++) {
		long pid = jint(json_array_get(vms, i), "pid");

		if (pid > 0)
			kill((pid_t)pid, SIGKILL);
	}
	json_decref(j);
}

bool pid_gone(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char *p;

	if (pid <= 0)
		return true;
	if (kill(pid, 0) && errno == ESRCH)
		return true;
	/* a zombie of a dead ferryd's child is gone too */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' && p[2] == 'Z';
}

int files_in(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

void itest_pair(struct node *a, struct node *b)
{
	itest_pair_fault(a, b, NULL, NULL);
}

void itest_pair_fault(struct node *a, struct node *b, const char *fa,
		      const char *fb)
{
	node_init(a, "a");
	node_init(b, "b");
	node_add_peer(a, "b", b->port, b->key);
	node_add_peer(b, "a", a->port, a->key);
	node_start_fault(a, fa);
	node_start_fault(b, fb);
	node_ready(a);
	node_ready(b);
	assert_true(wait_state(a, "reachable", 1, 10) >= 0);
	assert_true(wait_state(b, "reachable", 1, 10) >= 0);
}

void itest_nodes(struct node *const *all, const char *const *fault, int n,
		 const char *extra)
{
	char cmd[600];

	assert_true(n >= 2 && n <= ITEST_NODES_MAX);
	itest_node_extra = extra;
	for (int i = 0; i < n; i++) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s/%c'", tmpdir, 'a' + i);
		assert_int_equal(system(cmd), 0);
		snprintf(cmd, sizeof(cmd), "%c", 'a' + i);
		node_init(all[i], cmd);
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			if (i != j)
				node_add_peer(all[i], all[j]->name,
					      all[j]->port, all[j]->key);
	for (int i = 0; i < n; i++)
		node_start_fault(all[i], fault ? fault[i] : NULL);
	for (int i = 0; i < n; i++) {
		node_ready(all[i]);
		assert_true(wait_state(all[i], "reachable", n - 1, 10) >= 0);
	}
}

void itest_trio(struct node *a, struct node *b, struct node *c,
		const char *extra, const char *fb, const char *fc)
{
	struct node *const all[] = { a, b, c };
	const char *const fault[] = { NULL, fb, fc };

	itest_nodes(all, fault, 3, extra);
}

void itest_fresh_pair(struct node *a, struct node *b, const char *ferry_vm)
{
	static char extra[600];
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s/a' '%s/b'", tmpdir, tmpdir);
	assert_int_equal(system(cmd), 0);
	snprintf(extra, sizeof(extra), "ferry_vm = %s\n", ferry_vm);
	itest_node_extra = extra;
	itest_pair(a, b);
}

int itest_env(const char **vm_bin)
{
	const char *prov;

	ferryd_bin = getenv("FERRYD");
	ferry_bin = getenv("FERRY");
	if (vm_bin)
		*vm_bin = getenv("FERRY_VM");
	if (!ferryd_bin || !ferry_bin || (vm_bin && !*vm_bin)) {
		fprintf(stderr, "set FERRYD, FERRY%s to the built binaries\n",
			vm_bin ? " and FERRY_VM" : "");
		return 1;
	}
	/*
	 * FERRY_TEST_PROVIDER: the ferryds' data plane (suite rdma: verbs or
	 * ofi:verbs on the test VM's rxe0). Without an RDMA device there is nothing to
	 * test: meson's skip, and scripts/test runs the suite in the VM.
	 */
	prov = getenv("FERRY_TEST_PROVIDER");
	if (prov && strstr(prov, "verbs") && !rdma_here()) {
		printf("no RDMA device here: run suite rdma in the test VM\n");
		exit(77);
	}
	/* meson runs some binaries in groups, e.g. ITEST_FILTER=test_round0_* */
	if (getenv("ITEST_FILTER"))
		cmocka_set_test_filter(getenv("ITEST_FILTER"));
	atexit(kill_children);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int itest_need_root(const char *what)
{
	if (geteuid() == 0)
		return 0;
	fprintf(stderr,
		"%s needs root: it creates network namespaces, veth "
		"pairs and tc qdiscs\n",
		what);
	return 1;
}

int itest_run(const struct CMUnitTest *tests, size_t n,
	      int (*group_setup)(void **))
{
	int ret = _cmocka_run_group_tests("integration", tests, n, group_setup,
					  group_teardown);

	kill_children();
	return ret;
}

void itest_migrate_verified(struct node *n, const char *vm, const char *to,
			    long pages)
{
	json_t *j = ferry_jargs(n, 60, NULL, "migrate", vm, "--to", to,
				"--verify", NULL);

	assert_jstr(j, "state", "completed");
	assert_int_equal(jint(j, "verified_pages"), pages);
}

void itest_wait_idle(struct node *n, const char *vm)
{
	double t0 = now_s();

	while (now_s() - t0 < 20) {
		if (!jfind(ferry_json(n, "vms"), "vms", "name", vm) &&
		    jint(ferry_json(n, "status"), "migrations") == 0)
			return;
		sleep_ms(5);
	}
	fail_msg("%s still has VM %s or a migration after 20 s", n->name, vm);
}

void itest_no_crash(struct node *n)
{
	static const char *const bad[] = { "terminated with signal",
					   "AddressSanitizer",
					   "runtime error:" };
	const char *log = slurp(n->log);

	for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++)
		if (strstr(log, bad[j]))
			fail_msg("%s: %s", n->name, log);
	assert_int_equal(node_wait(n, 0), -1);
}

void itest_dump_logs(struct node *a, struct node *b)
{
	print_error("--- %s.log\n%s\n", a->name, slurp(a->log));
	print_error("--- %s.log\n%s\n", b->name, slurp(b->log));
}
