// SPDX-License-Identifier: MIT
/*
 * Helpers of the failure tests (itest_fail.h): nodes whose ferryd stops at
 * a fault point, the incoming ferry-vm found as b's child, and the checks
 * made after a failure: the VM runs on at the source, the destination
 * keeps nothing.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "itest_fail.h"

const char *ferry_vm_bin;
struct node na, nb;
pid_t vm_pid, inc_pid;

void two_nodes(unsigned peer_ms, const char *fa, const char *fb)
{
	static char extra[600];
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s/a' '%s/b' '%s/a.log' '%s/b.log'",
		 tmpdir, tmpdir, tmpdir, tmpdir);
	assert_int_equal(system(cmd), 0);
	/* failures are noticed in about peer_ms */
	snprintf(extra, sizeof(extra),
		 "ferry_vm = %s\nping_interval_ms = 200\n"
		 "peer_timeout_ms = %u\nmigration_timeout_ms = 5000\n",
		 ferry_vm_bin, peer_ms);
	itest_node_extra = extra;
	inc_pid = 0;
	itest_pair_fault(&na, &nb, fa, fb);
}

void start_vm(struct node *n, const char *name, const char *const *opts)
{
	vm_pid = itest_start_vm(n, ferry_vm_bin, name, opts);
}

void migrate_detached(const char *name, char *id, size_t len,
		      const char *const *opts)
{
	const char *argv[32] = { ferry_bin, "-s",      na.sock,
				 "--json",  "migrate", name,
				 "--to",    "b",       "--detach" };
	char out[OUT_MAX], err[OUT_MAX];
	int i = 9;
	json_t *j;

	while (*opts && i < 31)
		argv[i++] = *opts++;
	argv[i] = NULL;
	assert_int_equal(run_for(out, err, argv, 10), 0);
	j = jparse(out, err);
	assert_true(jint(j, "id") > 0);
	snprintf(id, len, "%ld", jint(j, "id"));
}

void begin(const char *name, const char *const *guest, unsigned peer_ms,
	   const char *fa, const char *fb, const char *const *opts, char *id,
	   size_t len)
{
	two_nodes(peer_ms, fa, fb);
	start_vm(&na, name, guest);
	wait_counter(&na, "writes", 1000);
	migrate_detached(name, id, len, opts);
}

pid_t incoming(void)
{
	inc_pid = child_of(nb.pid, "ferry-vm");
	if (inc_pid <= 0)
		fail_msg("b (pid %d) has no ferry-vm child: %s", (int)nb.pid,
			 slurp(nb.log));
	return inc_pid;
}

void sigkill_node(struct node *n)
{
	assert_int_equal(kill(n->pid, SIGKILL), 0);
	assert_true(node_wait(n, 5) >= 0);
}

void sigcont_node(struct node *n)
{
	assert_true(pid_stopped(n->pid));
	assert_int_equal(kill(n->pid, SIGCONT), 0);
}

json_t *mig(struct node *n, const char *id)
{
	int rc;
	json_t *j = ferry_jargs(n, 10, &rc, "migration", id, NULL);

	return rc ? NULL : j;
}

const char *state_of(const json_t *j)
{
	const char *s = jstr(j, "state");

	return s ? s : "";
}

const char *reason_of(const json_t *j)
{
	const char *s = jstr(j, "reason");

	return s ? s : "";
}

json_t *wait_failed(struct node *n, const char *id, double secs)
{
	double t0 = now_s();
	const char *st;
	json_t *j;

	do {
		j = mig(n, id);
		st = state_of(j);
		if (!strcmp(st, "failed"))
			return j;
		if (st[0] && strcmp(st, "prepare") && strcmp(st, "precopy") &&
		    strcmp(st, "switchover") && strcmp(st, "ready") &&
		    strcmp(st, "committed"))
			fail_msg("migration %s ended %s: %s", id, st, jtext(j));
		sleep_ms(50);
	} while (now_s() - t0 < secs);
	fail_msg("%s: migration %s not failed after %.0f s: %s", n->name, id,
		 secs, jtext(j));
	return NULL;
}

json_t *wait_mig(struct node *n, const char *id, const char *want, double secs)
{
	double t0 = now_s();
	json_t *j;

	do {
		j = mig(n, id);
		if (jis(j, "state", want))
			return j;
		sleep_ms(20);
	} while (now_s() - t0 < secs);
	fail_msg("%s: migration %s is %s, not %s: %s", n->name, id, state_of(j),
		 want, jtext(j));
	return NULL;
}

void wait_unreachable(struct node *n)
{
	if (wait_state(n, "unreachable", 1, 10) < 0)
		fail_msg("%s still sees its peer after 10 s", n->name);
}

void source_runs_on(const char *name)
{
	json_t *vm;
	long w;

	assert_int_equal(kill(vm_pid, 0), 0);
	vm = jfind(ferry_json(&na, "vms"), "vms", "name", name);
	assert_non_null(vm);
	if (!jis(vm, "state", "running"))
		fail_msg("source VM not running: %s", jtext(vm));
	w = vm_counter(&na, "writes");
	wait_counter(&na, "writes", w + 1500);
	assert_int_equal(vm_counter(&na, "failed"), 0);
}

void source_paused(const char *name, const char *id, const char *want)
{
	json_t *vm;

	assert_jstr(mig(&na, id), "state", want);
	vm = jfind(ferry_json(&na, "vms"), "vms", "name", name);
	if (!jis(vm, "state", "paused"))
		fail_msg("source VM not paused: %s", jtext(vm));
}

void dest_clean(pid_t inc, double secs)
{
	double t0 = now_s();
	json_t *j = NULL;
	char vmdir[400];
	bool ok = false;

	snprintf(vmdir, sizeof(vmdir), "%s/state/vms", nb.dir);
	while (!ok && now_s() - t0 < secs) {
		j = ferry_json(&nb, "vms");
		ok = jlen(j, "vms") == 0 && files_in(vmdir) == 0 &&
		     pid_gone(inc);
		if (!ok)
			sleep_ms(50);
	}
	if (!ok)
		fail_msg("b not clean after %.0f s: vms %s, %d files, incoming "
			 "pid %d %s",
			 secs, jtext(j), files_in(vmdir), (int)inc,
			 pid_gone(inc) ? "gone" : "alive");
	j = ferry_json(&nb, "status");
	assert_int_equal(jint(j, "memory_bytes"), 0);
	assert_int_equal(jint(j, "migrations"), 0);
}

void no_crash(void)
{
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

int fail_teardown(void **state)
{
	/* an orphan is init's child now: not killed with the children */
	if (inc_pid > 0)
		kill(inc_pid, SIGKILL);
	inc_pid = 0;
	/* a stopped ferryd would not answer: its VMs die with the test */
	if (!pid_stopped(nb.pid))
		kill_node_vms(&nb);
	if (!pid_stopped(na.pid))
		kill_node_vms(&na);
	return teardown(state);
}
