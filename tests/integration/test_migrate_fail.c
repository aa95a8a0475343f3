// SPDX-License-Identifier: MIT
/*
 * Integration: failures during a live migration before its commit
 * (docs/migration.md, "Failures"). Two real ferryd on loopback, a real
 * `verify` guest (it checks the patterns it wrote, so corruption would
 * show), the real ferry CLI (FERRYD, FERRY, FERRY_VM from meson).
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
 * migration failed. test_migrate_window.c: the commit window.
 *
 * Each phase is reached exactly, at any speed, by a fault point
 * (docs/testing.md, "Fault points") that stops the destination ferryd
 * there (FERRY_FAULT=POINT:stop):
 *   prepare     dst:spawned        the incoming ferry-vm started, not yet
 *                                  attached: b has not said yes, a waits
 *   round 0     dst:after:precopy  b took a's HOLDER_MAP: round 0 begins
 *   round 2     dst:round:2        b took round 2's first DIRTY_SET
 *   switchover  dst:after:switchover  a paused its VM and sent SWITCHOVER
 * Once b is stopped (/proc/PID/stat says T) the test SIGKILLs it, or
 * SIGKILLs the incoming ferry-vm (b's child) and lets b go on (SIGCONT).
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

enum phase { PH_PREPARE, PH_ROUND0, PH_LATER, PH_SWITCHOVER };
static const char *const phase_name[] = { "prepare", "precopy round 0",
					  "precopy round 2", "switchover" };
/* b's fault point of each phase */
static const char *const phase_fault[] = {
	[PH_PREPARE] = "dst:spawned:stop",
	[PH_ROUND0] = "dst:after:precopy:stop",
	[PH_LATER] = "dst:round:2:stop",
	[PH_SWITCHOVER] = "dst:after:switchover:stop",
};
static const char *const small[] = { "--mem",	     "32M", "--guest", "verify",
				     "--workingset", "2M",  NULL };

/*
 * b stopped at ph's point: a is where the phase says (b's own state
 * cannot be asked: it is stopped). a moves on its side of the message
 * that b took right after sending it: wait for that.
 */
static void at_phase(enum phase ph, const char *id)
{
	static const char *const src_state[] = {
		[PH_PREPARE] = "prepare",
		[PH_ROUND0] = "precopy",
		[PH_LATER] = "precopy",
		[PH_SWITCHOVER] = "switchover",
	};
	json_t *j = wait_mig(&na, id, src_state[ph], 2), *vm;

	if (ph == PH_ROUND0 && jint(j, "round") != 0)
		fail_msg("not round 0: %s", jtext(j));
	if (ph == PH_LATER && jint(j, "round") != 2)
		fail_msg("not round 2: %s", jtext(j));
	if (ph == PH_SWITCHOVER) {
		/* the source VM is paused: a waits for b */
		vm = jfind(ferry_json(&na, "vms"), "vms", "name", "f1");
		if (!jis(vm, "state", "paused"))
			fail_msg("not paused: %s", jtext(vm));
	}
}

static void kill_case(enum phase ph, bool kill_ferryd)
{
	/* verify has read-only stretches; dirty writes all the time */
	static const char *const busy[] = {
		"--mem",	"32M",	"--guest",  "dirty",
		"--workingset", "4M",	"--stride", "100",
		"--sleep",	"1000", NULL
	};
	/*
	 * Round 2 must come: a 1 ms downtime limit, no auto-converge, and a
	 * cap that keeps the last round's estimate over it whatever the
	 * speed of the CPU and the loopback. The cap is the only one here: it
	 * keeps the migration from converging; the fault point times it.
	 */
	static const char *const mig_opts[][12] = {
		[PH_PREPARE] = { NULL },
		[PH_ROUND0] = { NULL },
		[PH_LATER] = { "--max-bandwidth", "4M", "--downtime-limit", "1",
			       "--auto-converge", "none", "--max-rounds",
			       "1000", NULL },
		[PH_SWITCHOVER] = { "--downtime-limit", "60000", "--verify",
				    NULL },
	};
	char out[OUT_MAX], err[OUT_MAX], id[32];
	double t_phase, t_detect;
	json_t *j;
	pid_t inc;

	/* a waits while b is stopped: longer than the test looks at it */
	two_nodes(3000, NULL, phase_fault[ph]);
	start_vm(&na, "f1", ph == PH_LATER ? busy : small);
	wait_counter(&na, "writes", 1000);
	t_phase = now_s();
	migrate_detached("f1", id, sizeof(id), mig_opts[ph]);
	node_wait_stopped(&nb, 60);
	inc = incoming();
	t_phase = now_s() - t_phase;
	at_phase(ph, id);

	/* the failure */
	t_detect = now_s();
	if (kill_ferryd) {
		sigkill_node(&nb);
	} else {
		assert_int_equal(kill(inc, SIGKILL), 0);
		sigcont_node(&nb);
	}
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
		 * The orphaned incoming ferry-vm: a restarted b must get rid
		 * of it (no committed record).
		 */
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
 * the migration failed. b stops as round 0 begins (dst:after:precopy),
 * a is killed there (before its 3 s peer timeout could end the migration
 * first), and b goes on without it.
 */
static void test_source_ferryd(void **state)
{
	static const char *const mig_opts[] = { NULL };
	double t0, t_dst;
	char id[32];
	json_t *j;
	pid_t inc;

	(void)state;
	begin("s1", small, 3000, NULL, "dst:after:precopy:stop", mig_opts, id,
	      sizeof(id));
	node_wait_stopped(&nb, 60);
	inc = incoming();
	/* a recorded pre-copy right after its HOLDER_MAP went out */
	assert_int_equal(jint(wait_mig(&na, id, "precopy", 2), "round"), 0);

	t0 = now_s();
	sigkill_node(&na);
	sigcont_node(&nb);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prepare_ferryd, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_prepare_vm, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_round0_ferryd, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_round0_vm, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_later_ferryd, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_later_vm, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_switchover_ferryd, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_switchover_vm, NULL,
						fail_teardown),
		cmocka_unit_test_setup_teardown(test_source_ferryd, NULL,
						fail_teardown),
	};

	if (itest_env(&ferry_vm_bin) || setup(NULL))
		return 1;
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), NULL);
}
