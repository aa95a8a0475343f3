// SPDX-License-Identifier: MIT
/*
 * Integration: failures during a live migration (docs/migration.md,
 * "Failures"). Two real ferryd on loopback, a real `verify` guest (it
 * checks the patterns it wrote, so corruption would show), the real ferry
 * CLI (FERRYD, FERRY, FERRY_VM from meson).
 *
 * For each phase before the commit (prepare, pre-copy round 0, a later
 * pre-copy round, switchover), SIGKILL of the destination ferryd, and
 * separately of the incoming ferry-vm: the VM keeps running on the source
 * (counters advance, `ferry vms` says running, no check failed), the
 * migration is reported failed with a reason, and the destination keeps
 * nothing that matters (no incoming process, no registered memory, no
 * socket; a restarted destination ferryd gets rid of the orphan), and a
 * second migration to it then completes with --verify. And SIGKILL of the
 * source ferryd during pre-copy: the VM runs on, the destination cleans
 * up, the restarted source ferryd attaches the VM again and reports the
 * migration failed. And in the commit window (test_window_*), where the
 * VM is paused on a and b is ready: each ferryd killed in turn, the VM
 * paused on both until the dead one is back, then running in exactly one
 * place.
 *
 * Stopping at a phase, without hooks in ferryd:
 *   prepare     ferryd's `ferry_vm` is a wrapper script that writes its
 *               pid and waits while a "hold" file exists before it execs
 *               the real ferry-vm: the destination cannot attach, so
 *               both sides stay in `prepare` as long as the test wants
 *   round 0     a guest with 56 MiB of random data and --max-bandwidth 4M
 *   round >= 2  a 2 MiB working set rewritten faster than 4 MiB/s moves,
 *               a 1 ms downtime limit and no auto-converge: it never
 *               switches over
 *   switchover  the incoming ferry-vm is SIGSTOPped during pre-copy (it
 *               plays no part in the pulls; 24 MiB of random data at
 *               4 MiB/s give the test 6 s to see it); at switchover the
 *               destination's RAM_DONE to it blocks, and the source,
 *               with its VM paused, stays in `switchover`
 * The test polls `ferry --json migration ID` until the phase is reached.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "itest.h"

enum phase { PH_PREPARE, PH_ROUND0, PH_LATER, PH_SWITCHOVER };
static const char *const phase_name[] = { "prepare", "precopy round 0",
					  "precopy round >= 2", "switchover" };

static const char *ferry_vm_bin;
static struct node na, nb;
static pid_t vm_pid;
/* 56 MiB of random data: at 4 MiB/s round 0 lasts long enough to act in */
static const char *const big[] = { "--mem",	"64M",		"--guest",
				   "verify",	"--workingset", "2M",
				   "--prefill", "random",	NULL };
static const char *const small[] = { "--mem",	     "32M", "--guest", "verify",
				     "--workingset", "2M",  NULL };
/* 24 MiB of data: pre-copy lasts 6 s at 4 MiB/s, at any CPU speed */
static const char *const filled[] = { "--mem",	   "32M",	   "--guest",
				      "verify",	   "--workingset", "2M",
				      "--prefill", "random",	   NULL };
static char extra[600], wrapper[300], pidfile[300], holdfile[300];

/*
 * The destination's ferry-vm: record the pid (exec keeps it), wait while
 * the hold file exists, then become the real ferry-vm.
 */
static void write_wrapper(void)
{
	FILE *f;

	snprintf(wrapper, sizeof(wrapper), "%s/ferry-vm-wrapper", tmpdir);
	snprintf(pidfile, sizeof(pidfile), "%s/incoming.pid", tmpdir);
	snprintf(holdfile, sizeof(holdfile), "%s/hold", tmpdir);
	f = fopen(wrapper, "w");
	assert_non_null(f);
	fprintf(f,
		"#!/bin/sh\necho $$ > '%s.tmp' && mv '%s.tmp' '%s'\n"
		"while [ -e '%s' ]; do sleep 0.02; done\nexec '%s' \"$@\"\n",
		pidfile, pidfile, pidfile, holdfile, ferry_vm_bin);
	fclose(f);
	assert_int_equal(chmod(wrapper, 0755), 0);
}

/*
 * Two nodes a and b that list each other, both up and reachable; a peer
 * that does not answer for peer_ms is unreachable.
 */
static void two_nodes(unsigned peer_ms)
{
	char cmd[1400];

	snprintf(cmd, sizeof(cmd),
		 "rm -rf '%s/a' '%s/b' '%s/a.log' '%s/b.log' '%s' '%s'", tmpdir,
		 tmpdir, tmpdir, tmpdir, pidfile, holdfile);
	assert_int_equal(system(cmd), 0);
	/* failures are noticed in about a second */
	snprintf(extra, sizeof(extra),
		 "ferry_vm = %s\nping_interval_ms = 200\n"
		 "peer_timeout_ms = %u\nmigration_timeout_ms = 5000\n",
		 wrapper, peer_ms);
	itest_node_extra = extra;
	itest_pair(&na, &nb);
}

/* Start a ferry-vm called name under node n's vm_dir; ferryd lists it. */
static void start_vm(struct node *n, const char *name, const char *const *opts)
{
	vm_pid = itest_start_vm(n, ferry_vm_bin, name, opts);
}

/* The incoming ferry-vm's pid, from the wrapper; 0 if not (yet) started. */
static pid_t incoming_pid(void)
{
	FILE *f = fopen(pidfile, "r");
	long pid = 0;

	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return (pid_t)pid;
}

static int mig_teardown(void **state)
{
	pid_t p = incoming_pid();

	unlink(holdfile);
	if (p > 0)
		kill(p, SIGKILL);
	kill_node_vms(&nb);
	kill_node_vms(&na);
	return teardown(state);
}

/* `ferry --json migration ID` on n: the report, NULL if ferry failed. */
static json_t *mig(struct node *n, const char *id)
{
	int rc;
	json_t *j = ferry_jargs(n, 10, &rc, "migration", id, NULL);

	return rc ? NULL : j;
}

/* A migration report's "state" ("" without one). */
static const char *state_of(const json_t *j)
{
	const char *s = jstr(j, "state");

	return s ? s : "";
}

/* A migration report's "reason" ("" without one). */
static const char *reason_of(const json_t *j)
{
	const char *s = jstr(j, "reason");

	return s ? s : "";
}

/* Wait up to secs for migration id on n to fail; its report. */
static json_t *wait_failed(struct node *n, const char *id, double secs)
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

/* The VM runs on at a: running, not migrated, checking, and unharmed. */
static void source_runs_on(const char *name)
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

/* b keeps no VM, process, socket, registration or running migration. */
static void dest_clean(pid_t inc, double secs)
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

/* Neither ferryd crashed (only the test's SIGKILLs end them). */
static void no_crash(void)
{
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

/* Start a detached migration of name from a to b; its id in id. */
static void migrate_detached(const char *name, char *id, size_t len,
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

/* Poll the source until the migration is in phase ph. */
static void reach_phase(enum phase ph, const char *id, pid_t *inc)
{
	bool stopped = false;
	double t0 = now_s();
	json_t *j = NULL, *d;
	const char *st;
	int rc;

	*inc = 0;
	while (now_s() - t0 < 20) {
		j = mig(&na, id);
		st = state_of(j);
		if (!*inc)
			*inc = incoming_pid();
		if (strcmp(st, "prepare") && strcmp(st, "precopy") &&
		    strcmp(st, "switchover"))
			fail_msg("migration left before %s: %s", phase_name[ph],
				 jtext(j));
		switch (ph) {
		case PH_PREPARE:
			/* held by the wrapper: D cannot attach */
			if (*inc && !strcmp(st, "prepare")) {
				sleep_ms(200);
				assert_jstr(mig(&na, id), "state", "prepare");
				return;
			}
			break;
		case PH_ROUND0:
			/* and b has pulled some of it */
			if (!strcmp(st, "precopy") && jint(j, "round") == 0) {
				d = ferry_jargs(&nb, 10, &rc, "migrations",
						NULL);
				if (!rc && jint(d, "migrations[0].pages_"
						   "pulled") > 0)
					return;
			}
			break;
		case PH_LATER:
			if (!strcmp(st, "precopy") && jint(j, "round") >= 2)
				return;
			break;
		case PH_SWITCHOVER:
			/* stop it while the pulls run: it is not needed */
			if (!stopped && *inc && !strcmp(st, "precopy")) {
				assert_int_equal(kill(*inc, SIGSTOP), 0);
				stopped = true;
			}
			if (stopped && !strcmp(st, "switchover")) {
				/* the source VM is paused: S waits for D */
				d = ferry_json(&na, "vms");
				if (!jis(d, "vms[0].state", "paused"))
					fail_msg("not paused: %s", jtext(d));
				return;
			}
			break;
		}
		sleep_ms(20);
	}
	fail_msg("migration never reached %s: %s", phase_name[ph], jtext(j));
}

/* SIGKILL n's ferryd and reap it. */
static void sigkill_node(struct node *n)
{
	assert_int_equal(kill(n->pid, SIGKILL), 0);
	assert_true(node_wait(n, 5) >= 0);
}

/* Nodes (peer timeout peer_ms), a running guest, a detached migration. */
static void begin(const char *name, const char *const *guest, unsigned peer_ms,
		  const char *const *opts, char *id, size_t len)
{
	two_nodes(peer_ms);
	start_vm(&na, name, guest);
	wait_counter(&na, "writes", 1000);
	migrate_detached(name, id, len, opts);
}

static void kill_case(enum phase ph, bool kill_ferryd)
{
	/* verify has read-only stretches; dirty writes all the time */
	static const char *const busy[] = {
		"--mem",	"32M",	"--guest",  "dirty",
		"--workingset", "4M",	"--stride", "100",
		"--sleep",	"1000", NULL
	};
	static const char *const mig_opts[][12] = {
		[PH_PREPARE] = { "--max-bandwidth", "4M", NULL },
		[PH_ROUND0] = { "--max-bandwidth", "4M", NULL },
		[PH_LATER] = { "--max-bandwidth", "4M", "--downtime-limit", "1",
			       "--auto-converge", "none", "--max-rounds",
			       "1000", NULL },
		[PH_SWITCHOVER] = { "--max-bandwidth", "4M", "--downtime-limit",
				    "60000", "--verify", NULL },
	};
	char out[OUT_MAX], err[OUT_MAX], id[32];
	double t_phase, t_detect;
	json_t *j;
	pid_t inc;
	int fd;

	two_nodes(1000);
	if (ph == PH_PREPARE) {
		fd = open(holdfile, O_WRONLY | O_CREAT, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	start_vm(&na, "f1",
		 ph == PH_ROUND0       ? big
		 : ph == PH_LATER      ? busy
		 : ph == PH_SWITCHOVER ? filled
				       : small);
	wait_counter(&na, "writes", 1000);
	t_phase = now_s();
	migrate_detached("f1", id, sizeof(id), mig_opts[ph]);
	reach_phase(ph, id, &inc);
	assert_true(inc > 0);
	t_phase = now_s() - t_phase;

	/* the failure */
	t_detect = now_s();
	if (kill_ferryd) {
		sigkill_node(&nb);
	} else {
		assert_int_equal(kill(inc, SIGKILL), 0);
	}
	unlink(holdfile); /* let the next incoming ferry-vm start */
	j = wait_failed(&na, id, 15);
	t_detect = now_s() - t_detect;
	print_message("%s, SIGKILL %s: phase reached in %.2f s, failed after "
		      "%.2f s: %s\n",
		      phase_name[ph],
		      kill_ferryd ? "destination ferryd" : "incoming ferry-vm",
		      t_phase, t_detect, reason_of(j));
	assert_true(reason_of(j)[0]);
	if (kill_ferryd)
		assert_jpart(j, "reason", "b");
	else
		/* exited, or RAM_DONE's connection reset at switchover */
		assert_jpart(j, "reason", "b aborted: ");
	source_runs_on("f1");

	if (kill_ferryd) {
		/*
		 * The orphaned incoming ferry-vm: let it go on, then a
		 * restarted b must get rid of it (no committed record).
		 */
		kill(inc, SIGCONT);
		node_start(&nb);
		node_ready(&nb);
		assert_true(wait_state(&nb, "reachable", 1, 10) >= 0);
		assert_true(wait_state(&na, "reachable", 1, 10) >= 0);
	}
	dest_clean(inc, 10);
	if (!kill_ferryd) {
		j = ferry_json(&nb, "migrations");
		assert_jstr(jfind(j, "migrations", "vm", "f1"), "state",
			    "failed");
	}

	/* nothing in the way: the same VM now moves, and intact */
	if (ferry_args(&na, 60, out, err, "--json", "migrate", "f1", "--to",
		       "b", "--verify", NULL)) {
		itest_dump_logs(&na, &nb);
		fail_msg("the second migration failed: %s %s", out, err);
	}
	assert_jstr(jparse(out, err), "state", "completed");
	wait_counter(&nb, "writes", vm_counter(&nb, "writes") + 1500);
	assert_int_equal(vm_counter(&nb, "failed"), 0);
	no_crash();
}

static void test_prepare_ferryd(void **state)
{
	(void)state;
	kill_case(PH_PREPARE, true);
}

static void test_prepare_vm(void **state)
{
	(void)state;
	kill_case(PH_PREPARE, false);
}

static void test_round0_ferryd(void **state)
{
	(void)state;
	kill_case(PH_ROUND0, true);
}

static void test_round0_vm(void **state)
{
	(void)state;
	kill_case(PH_ROUND0, false);
}

static void test_later_ferryd(void **state)
{
	(void)state;
	kill_case(PH_LATER, true);
}

static void test_later_vm(void **state)
{
	(void)state;
	kill_case(PH_LATER, false);
}

static void test_switchover_ferryd(void **state)
{
	(void)state;
	kill_case(PH_SWITCHOVER, true);
}

static void test_switchover_vm(void **state)
{
	(void)state;
	kill_case(PH_SWITCHOVER, false);
}

/*
 * SIGKILL of the source ferryd during pre-copy: the VM (its own process)
 * runs on; b cleans up; a restarted a attaches the VM again and reports
 * the migration failed.
 */
static void test_source_ferryd(void **state)
{
	static const char *const mig_opts[] = { "--max-bandwidth", "4M", NULL };
	double t0, t_dst;
	char id[32];
	json_t *j;
	pid_t inc;

	(void)state;
	begin("s1", big, 1000, mig_opts, id, sizeof(id));
	reach_phase(PH_ROUND0, id, &inc);
	assert_true(inc > 0);

	t0 = now_s();
	sigkill_node(&na);
	/* b notices and cleans up on its own */
	dest_clean(inc, 10);
	t_dst = now_s() - t0;
	j = ferry_json(&nb, "migrations");
	assert_jstr(jfind(j, "migrations", "vm", "s1"), "state", "failed");
	/* the VM never stopped */
	assert_int_equal(kill(vm_pid, 0), 0);

	node_start(&na);
	node_ready(&na);
	assert_true(wait_state(&na, "reachable", 1, 10) >= 0);
	j = mig(&na, id);
	print_message("source ferryd killed in pre-copy: b clean after %.2f "
		      "s; restarted a says %s: %s\n",
		      t_dst, state_of(j), reason_of(j));
	assert_jstr(j, "state", "failed");
	assert_jpart(j, "reason",
		     "ferryd restarted during the migration (phase precopy)");
	source_runs_on("s1");
	j = ferry_jargs(&na, 60, NULL, "migrate", "s1", "--to", "b", "--verify",
			NULL);
	assert_jstr(j, "state", "completed");
	wait_counter(&nb, "pass", 1);
	assert_int_equal(vm_counter(&nb, "failed"), 0);
	no_crash();
}

/*
 * The commit window, where the VM is paused on a and b holds all of it:
 * a alone decides (READY from b, a records its commit, RESUME to b), so
 * that whoever dies there the VM never runs twice and is never lost.
 */

/* Wait up to secs for migration id on n to be in state want. */
static void wait_mig(struct node *n, const char *id, const char *want,
		     double secs)
{
	double t0 = now_s();
	json_t *j;

	do {
		j = mig(n, id);
		if (jis(j, "state", want))
			return;
		sleep_ms(20);
	} while (now_s() - t0 < secs);
	fail_msg("%s: migration %s is %s, not %s: %s", n->name, id, state_of(j),
		 want, jtext(j));
}

/* a's VM is there and paused, its migration in state want. */
static void source_paused(const char *id, const char *want)
{
	json_t *vm;

	assert_jstr(mig(&na, id), "state", want);
	vm = jfind(ferry_json(&na, "vms"), "vms", "name", "f1");
	if (!jis(vm, "state", "paused"))
		fail_msg("source VM not paused: %s", jtext(vm));
}

/*
 * A pre-copy switching over at the first chance, up to switchover with the
 * incoming ferry-vm stopped (a paused, waiting); then a's ferryd stopped
 * (peers time out after 3 s) while b loads the state and sends READY: b is
 * "ready". a's id in id, b's name for it in bid, when a was stopped in *t0
 * if not NULL; returns the incoming ferry-vm's pid.
 */
static pid_t to_ready(char *id, size_t len, char *bid, size_t blen, double *t0)
{
	static const char *const opts[] = { "--max-bandwidth", "4M",
					    "--downtime-limit", "60000", NULL };
	pid_t inc;

	begin("f1", filled, 3000, opts, id, len);
	snprintf(bid, blen, "a/%s", id);
	reach_phase(PH_SWITCHOVER, id, &inc);
	assert_true(inc > 0);
	if (t0)
		*t0 = now_s();
	assert_int_equal(kill(na.pid, SIGSTOP), 0);
	assert_int_equal(kill(inc, SIGCONT), 0);
	wait_mig(&nb, bid, "ready", 5);
	return inc;
}

/*
 * a's ferryd dies before it decided, with b's READY unread: b waits (the
 * VM paused, not removed, past its peer timeout); restarted a resumes its
 * own VM and answers b's READY with ABORT: b removes its copy.
 */
static void test_window_source(void **state)
{
	char id[32], bid[40];
	json_t *j;
	pid_t inc;

	(void)state;
	inc = to_ready(id, sizeof(id), bid, sizeof(bid), NULL);
	sigkill_node(&na);
	sleep_ms(3500);
	assert_jstr(mig(&nb, bid), "state", "ready");
	assert_false(pid_gone(inc));

	node_start(&na);
	node_ready(&na);
	assert_true(wait_state(&na, "reachable", 1, 10) >= 0);
	j = mig(&na, id);
	assert_jstr(j, "state", "failed");
	print_message("source ferryd killed in switchover: restarted a says "
		      "%s\n",
		      reason_of(j));
	assert_jpart(j, "reason", "phase switchover");
	dest_clean(inc, 10);
	j = wait_failed(&nb, bid, 5);
	assert_jpart(j, "reason", "the source aborted");
	source_runs_on("f1");
	no_crash();
}

/*
 * b's ferryd dies after READY, before RESUME came: a commits on the READY
 * it finds and waits, its VM paused, for as long as b is gone; restarted
 * b holds only a "ready" record, removes its copy and answers a's RESUME
 * with ABORT: the VM runs on a again.
 */
static void test_window_ready(void **state)
{
	char id[32], bid[40];
	json_t *j;
	double t0;
	pid_t inc;

	(void)state;
	inc = to_ready(id, sizeof(id), bid, sizeof(bid), &t0);
	sigkill_node(&nb);
	assert_int_equal(kill(na.pid, SIGCONT), 0);
	print_message("a stopped for %.2f s\n", now_s() - t0);
	wait_mig(&na, id, "committed", 5);
	sleep_ms(3500); /* b unreachable for longer than the peer timeout */
	source_paused(id, "committed");

	node_start(&nb);
	node_ready(&nb);
	assert_true(wait_state(&nb, "reachable", 1, 10) >= 0);
	j = wait_failed(&na, id, 10);
	print_message("destination ferryd killed when ready: a says %s\n",
		      reason_of(j));
	assert_jpart(j, "reason", "b aborted: ");
	assert_jpart(j, "reason", "phase ready");
	dest_clean(inc, 10);
	source_runs_on("f1");
	no_crash();
}

/*
 * b's ferryd dies after RESUME came, before the VM ran (the incoming
 * ferry-vm is stopped): a, committed, waits with its VM paused; restarted
 * b finds its "committed" record, resumes the VM and answers a's RESUME
 * with RESUMED: a's copy exits, the VM lives on b, intact.
 */
static void test_window_resume(void **state)
{
	char id[32], bid[40];
	json_t *j;
	pid_t inc;

	(void)state;
	inc = to_ready(id, sizeof(id), bid, sizeof(bid), NULL);
	assert_int_equal(kill(inc, SIGSTOP), 0);
	assert_int_equal(kill(na.pid, SIGCONT), 0);
	/* b's RESUME to its VM blocks: recorded committed, not running */
	wait_mig(&nb, bid, "committed", 5);
	wait_mig(&na, id, "committed", 5);
	sigkill_node(&nb);
	sleep_ms(3500);
	source_paused(id, "committed");

	assert_int_equal(kill(inc, SIGCONT), 0);
	node_start(&nb);
	node_ready(&nb);
	assert_true(wait_state(&nb, "reachable", 1, 10) >= 0);
	wait_mig(&na, id, "completed", 10);
	j = mig(&na, id);
	print_message("destination ferryd killed after RESUME: a says %s%s\n",
		      state_of(j), reason_of(j));
	wait_vm_exit(vm_pid);
	assert_null(jfind(ferry_json(&na, "vms"), "vms", "name", "f1"));
	wait_counter(&nb, "writes", vm_counter(&nb, "writes") + 1500);
	assert_int_equal(vm_counter(&nb, "failed"), 0);
	no_crash();
}

/*
 * Both ferryds die in the window: b's after READY, a's after it committed
 * on that READY (its RESUME never arrived). Restarted b has only a "ready"
 * record and removes its copy; restarted a finds "committed", keeps its
 * copy paused and asks b (RESUME), which answers ABORT: a's copy, the only
 * one left, runs again. Nothing is lost.
 */
static void test_window_both(void **state)
{
	char id[32], bid[40];
	json_t *j;
	pid_t inc;

	(void)state;
	inc = to_ready(id, sizeof(id), bid, sizeof(bid), NULL);
	sigkill_node(&nb);
	assert_int_equal(kill(na.pid, SIGCONT), 0);
	wait_mig(&na, id, "committed", 5);
	sigkill_node(&na);

	node_start(&nb);
	node_start(&na);
	node_ready(&nb);
	node_ready(&na);
	assert_true(wait_state(&na, "reachable", 1, 10) >= 0);
	assert_true(wait_state(&nb, "reachable", 1, 10) >= 0);
	dest_clean(inc, 10);
	j = wait_failed(&na, id, 10);
	print_message("both ferryds killed in the window: restarted a says "
		      "%s\n",
		      reason_of(j));
	assert_jpart(j, "reason", "b aborted: ");
	source_runs_on("f1");
	no_crash();
}

/*
 * Post-copy: b's ferryd dies after STATE, before the VM resumed there (its
 * SET_STATE blocks on the stopped ferry-vm). a may not resume its copy,
 * which b could be running, and waits paused; restarted b removes the
 * copy that never ran and tells a (ABORT): the VM runs on a again.
 */
static void test_window_postcopy(void **state)
{
	static const char *const hybrid[] = {
		"--max-bandwidth",  "4M",   "--mode", "hybrid",
		"--postcopy-after", "1000", NULL
	};
	char out[OUT_MAX], err[OUT_MAX], id[32];
	json_t *j;
	pid_t inc;

	(void)state;
	/* round 0 lasts: post-copy comes when asked */
	begin("f1", big, 3000, hybrid, id, sizeof(id));
	reach_phase(PH_ROUND0, id, &inc);
	assert_true(inc > 0);
	assert_int_equal(kill(inc, SIGSTOP), 0);
	assert_int_equal(
		ferry_args(&na, 10, out, err, "migrate-postcopy", id, NULL), 0);
	wait_mig(&na, id, "switchover", 10);
	sleep_ms(300); /* b's SET_STATE now waits on the stopped VM */
	sigkill_node(&nb);
	sleep_ms(3500); /* b unreachable for longer than the peer timeout */
	source_paused(id, "switchover");

	assert_int_equal(kill(inc, SIGCONT), 0);
	node_start(&nb);
	node_ready(&nb);
	j = wait_failed(&na, id, 10);
	print_message("destination ferryd killed in the post-copy switchover: "
		      "a says %s\n",
		      reason_of(j));
	assert_jpart(j, "reason", "b aborted: ");
	dest_clean(inc, 10);
	source_runs_on("f1");
	no_crash();
}

/* `ferry force-resume ID --fenced` on n: its exit status, stderr in err. */
static int force_resume(struct node *n, const char *id, char *err)
{
	char out[OUT_MAX];

	return ferry_args(n, 10, out, err, "force-resume", id, "--fenced",
			  NULL);
}

/*
 * a's host dies while b is ready (a's ferryd and its VM killed: fenced).
 * Nothing but the operator can end b's wait. force-resume is refused
 * without --fenced and while a still answers; once a is gone it runs the
 * VM on b, intact, and b records the migration completed.
 */
static void test_force_dest(void **state)
{
	char out[OUT_MAX], err[OUT_MAX], id[32], bid[40];

	(void)state;
	to_ready(id, sizeof(id), bid, sizeof(bid), NULL);
	/* a is stopped, not yet unreachable: the protocol still decides */
	assert_int_equal(force_resume(&nb, bid, err), 1);
	assert_non_null(strstr(err, "a is reachable"));
	assert_int_equal(
		ferry_args(&nb, 10, out, err, "force-resume", bid, NULL), 2);
	sigkill_node(&na);
	assert_int_equal(kill(vm_pid, SIGKILL), 0); /* reaped at teardown */
	sleep_ms(3500);
	assert_jstr(mig(&nb, bid), "state", "ready");
	assert_int_equal(force_resume(&nb, bid, err), 0);
	wait_mig(&nb, bid, "completed", 5);
	wait_counter(&nb, "writes", vm_counter(&nb, "writes") + 1500);
	assert_int_equal(vm_counter(&nb, "failed"), 0);
	assert_int_equal(force_resume(&nb, bid, err), 1);
	assert_non_null(strstr(err, "already ended"));
	print_message("force-resume on the destination: the VM runs on b\n");
	itest_no_crash(&nb);
}

/*
 * b's host dies after READY (b's ferryd and the incoming VM killed): a
 * committed on that READY and waits, its VM paused, for an answer that
 * never comes. force-resume runs a's copy again; the migration fails
 * with that reason and the VM runs on a, intact.
 */
static void test_force_source(void **state)
{
	char err[OUT_MAX], id[32], bid[40];
	json_t *j;
	pid_t inc;

	(void)state;
	inc = to_ready(id, sizeof(id), bid, sizeof(bid), NULL);
	sigkill_node(&nb);
	assert_int_equal(kill(inc, SIGKILL), 0);
	assert_int_equal(kill(na.pid, SIGCONT), 0);
	wait_mig(&na, id, "committed", 5);
	sleep_ms(3500);
	source_paused(id, "committed");
	assert_int_equal(force_resume(&na, id, err), 0);
	j = wait_failed(&na, id, 5);
	print_message("force-resume on the source: a says %s\n", reason_of(j));
	assert_jpart(j, "reason", "force-resume: ");
	source_runs_on("f1");
	itest_no_crash(&na);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prepare_ferryd, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_prepare_vm, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_round0_ferryd, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_round0_vm, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_later_ferryd, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_later_vm, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_switchover_ferryd, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_switchover_vm, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_source_ferryd, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_window_source, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_window_ready, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_window_resume, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_window_both, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_window_postcopy, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_force_dest, NULL,
						mig_teardown),
		cmocka_unit_test_setup_teardown(test_force_source, NULL,
						mig_teardown),
	};

	if (itest_env(&ferry_vm_bin) || setup(NULL))
		return 1;
	write_wrapper();
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), NULL);
}
