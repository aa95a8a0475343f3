// SPDX-License-Identifier: MIT
/*
 * Integration: failures in the commit window (docs/migration.md, "The
 * commit" and "Failures"), where the VM is paused on a and b holds all of
 * it: a alone decides (READY from b, a records its commit, RESUME to b),
 * so that whoever dies there the VM never runs twice and is never lost.
 * Each ferryd killed in turn, and both: the VM paused on both until the
 * dead one is back, then running in exactly one place. And `ferry
 * force-resume --fenced` when one never comes back. Two real ferryd on
 * loopback, a real `verify` guest, the real ferry CLI (FERRYD, FERRY,
 * FERRY_VM from meson). test_migrate_fail.c: the phases before.
 *
 * Each moment is reached exactly by a fault point (docs/testing.md,
 * "Fault points") that stops a ferryd there (FERRY_FAULT=POINT:stop):
 *   src:before:committed   a has b's READY, has not decided: b is ready
 *   src:after:committed    a recorded its commit, RESUME not yet sent
 *   dst:after:committed    b recorded RESUME, its VM not yet resumed
 *   dst:before:postcopy    post-copy: b loaded STATE, its VM not resumed
 * Once it is stopped (/proc/PID/stat says T) the test SIGKILLs it, or
 * kills the other one and lets it go on (SIGCONT). "b unreachable for
 * longer than the peer timeout" is waited for as the peer's state.
 */
#include <errno.h>
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

static const char *const small[] = { "--mem",	     "32M", "--guest", "verify",
				     "--workingset", "2M",  NULL };
/* a pre-copy that switches over at the first chance */
static const char *const quick[] = { "--downtime-limit", "60000", NULL };

/*
 * A migration up to b's READY, which a has taken but not decided on: a's
 * ferryd stopped (src:before:committed; peers time out after 3 s), b
 * "ready". a's id in id, b's name for it in bid; returns the incoming
 * ferry-vm's pid.
 */
static pid_t to_ready(char *id, size_t len, char *bid, size_t blen)
{
	begin("f1", small, 3000, "src:before:committed:stop", NULL, quick, id,
	      len);
	snprintf(bid, blen, "a/%s", id);
	node_wait_stopped(&na, 60);
	/* b recorded "ready" before its READY went out */
	assert_jstr(mig(&nb, bid), "state", "ready");
	return incoming();
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
	inc = to_ready(id, sizeof(id), bid, sizeof(bid));
	sigkill_node(&na);
	wait_unreachable(&nb);
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
 * it has and waits, its VM paused, for as long as b is gone; restarted b
 * holds only a "ready" record, removes its copy and answers a's RESUME
 * with ABORT: the VM runs on a again.
 */
static void test_window_ready(void **state)
{
	char id[32], bid[40];
	json_t *j;
	pid_t inc;

	(void)state;
	inc = to_ready(id, sizeof(id), bid, sizeof(bid));
	sigkill_node(&nb);
	sigcont_node(&na);
	wait_mig(&na, id, "committed", 5);
	wait_unreachable(&na);
	source_paused("f1", id, "committed");

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
 * b's ferryd dies after RESUME came, before the VM ran (b stopped at
 * dst:after:committed, before it resumes its VM): a, committed, waits
 * with its VM paused; restarted b finds its "committed" record, resumes
 * the VM and answers a's RESUME with RESUMED: a's copy exits, the VM
 * lives on b, intact.
 */
static void test_window_resume(void **state)
{
	char id[32];
	json_t *j;

	(void)state;
	begin("f1", small, 3000, NULL, "dst:after:committed:stop", quick, id,
	      sizeof(id));
	node_wait_stopped(&nb, 60);
	incoming();
	/* a recorded its commit before RESUME went out */
	wait_mig(&na, id, "committed", 5);
	sigkill_node(&nb);
	wait_unreachable(&na);
	source_paused("f1", id, "committed");

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
 * on that READY (stopped at src:after:committed: its RESUME never went
 * out). Restarted b has only a "ready" record and removes its copy;
 * restarted a finds "committed", keeps its copy paused and asks b
 * (RESUME), which answers ABORT: a's copy, the only one left, runs again.
 * Nothing is lost.
 */
static void test_window_both(void **state)
{
	char id[32], bid[40];
	json_t *j;
	pid_t inc;

	(void)state;
	begin("f1", small, 3000, "src:after:committed:stop", NULL, quick, id,
	      sizeof(id));
	snprintf(bid, sizeof(bid), "a/%s", id);
	node_wait_stopped(&na, 60);
	inc = incoming();
	assert_jstr(mig(&nb, bid), "state", "ready");
	sigkill_node(&nb);
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
 * Post-copy: b's ferryd dies after STATE, before the VM resumed there
 * (dst:before:postcopy: b loaded the state, has not recorded post-copy
 * nor resumed). a may not resume its copy, which b could be running, and
 * waits paused; restarted b removes the copy that never ran and tells a
 * (ABORT): the VM runs on a again.
 */
static void test_window_postcopy(void **state)
{
	static const char *const pc[] = { "--mode", "postcopy", NULL };
	char id[32];
	json_t *j;
	pid_t inc;

	(void)state;
	begin("f1", small, 3000, NULL, "dst:before:postcopy:stop", pc, id,
	      sizeof(id));
	node_wait_stopped(&nb, 60);
	inc = incoming();
	sigkill_node(&nb);
	wait_unreachable(&na);
	source_paused("f1", id, "switchover");

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
	to_ready(id, sizeof(id), bid, sizeof(bid));
	/* a is stopped, not yet unreachable: the protocol still decides */
	assert_int_equal(force_resume(&nb, bid, err), 1);
	assert_non_null(strstr(err, "a is reachable"));
	assert_int_equal(
		ferry_args(&nb, 10, out, err, "force-resume", bid, NULL), 2);
	sigkill_node(&na);
	assert_int_equal(kill(vm_pid, SIGKILL), 0); /* reaped at teardown */
	wait_unreachable(&nb);
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
 * commits on that READY and waits, its VM paused, for an answer that
 * never comes. force-resume runs a's copy again; the migration fails
 * with that reason and the VM runs on a, intact.
 */
static void test_force_source(void **state)
{
	char err[OUT_MAX], id[32], bid[40];
	json_t *j;
	pid_t inc;

	(void)state;
	inc = to_ready(id, sizeof(id), bid, sizeof(bid));
	sigkill_node(&nb);
	assert_int_equal(kill(inc, SIGKILL), 0);
	sigcont_node(&na);
	wait_mig(&na, id, "committed", 5);
	wait_unreachable(&na);
	source_paused("f1", id, "committed");
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
		cmocka_unit_test_setup_teardown(test_window_source, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_window_ready, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_window_resume, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_window_both, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_window_postcopy, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_force_dest, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_force_source, NULL,
						fail_teardown),
	};

	if (itest_env(&ferry_vm_bin) || setup(NULL))
		return 1;
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), NULL);
}
