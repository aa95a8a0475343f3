// SPDX-License-Identifier: MIT
/*
 * Integration: post-copy and hybrid migration of a real `verify` guest
 * between two real ferryd, driven with the ferry CLI. The verify guest
 * checks every page it rewrites, so a page lost, stale or torn on the way
 * shows as a FAIL in its counters at the destination. Needs root (uffd,
 * network namespaces).
 *
 *   postcopy    loopback, --mode postcopy: the VM resumes on b at once
 *               and fetches its pages there; the source exits and frees
 *               its copy only after COMMIT; the report has the figures
 *   hybrid      loopback, --mode hybrid --postcopy-after 1 with a limit
 *               pre-copy cannot meet: round 0, then post-copy
 *   command     `ferry migrate-postcopy ID` switches a hybrid migration
 *               that would never stop on its own; refused for pre-copy
 *   link        hosts joined by a 100 Mbit/s link: post-copy of 64 MiB of
 *               random data, no faster than the link
 *   restart     50 Mbit/s: SIGKILL the source ferryd during post-copy;
 *               b's `ferry status` shows the stall, the VM waits on b;
 *               the restarted source serves the pages again and the
 *               migration completes on both sides
 *   cut         50 Mbit/s: the link is cut for 3 s during post-copy; the
 *               stall shows, then the migration completes
 *   vm_killed   50 Mbit/s: SIGKILL the source ferry-vm during post-copy:
 *               its pages live on in ferryd's mapping, nothing is lost
 *   rxe_down_precopy (suite rdma, over verbs): the test VM's rxe link
 *               goes down mid-pre-copy: it fails and the VM runs on at a
 *   rxe_removed_precopy (suite rdma, over verbs): rxe0 is deleted
 *               mid-pre-copy: it fails and the VM runs on at a; rxe0 is
 *               added again and the next migration goes through
 *   rxe_removed_postcopy (suite rdma, over verbs): rxe0 is deleted
 *               mid-post-copy: the migration and its VM wait on b; rxe0
 *               is added again and the migration completes
 * "During post-copy" is where the source ferryd stops at its fault point
 * src:after:postcopy (the VM runs on b, its pages are still at a).
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

#include "itest.h"
#include "tests/rxe.h"
#include "netns.h"

static const char *ferry_vm_bin;
static struct testhosts *th;
static struct node na, nb;
static pid_t vm_pid;

static const char *const random64[] = { "--mem",     "64M",	     "--guest",
					"verify",    "--workingset", "4M",
					"--prefill", "random",	     NULL };

static void two_nodes(void)
{
	itest_fresh_pair(&na, &nb, ferry_vm_bin);
}

static int pc_teardown(void **state)
{
	kill_node_vms(&nb);
	kill_node_vms(&na);
	th_destroy(th);
	th = NULL;
	return teardown(state);
}

/* A migration that ended well: the guest checks on at b, a holds nothing. */
static void check_moved(const json_t *rep, long pass)
{
	json_t *j;

	if (!jis(rep, "state", "completed")) {
		itest_dump_logs(&na, &nb);
		fail_msg("not completed: %s", jtext(rep));
	}
	wait_vm_exit(vm_pid);
	wait_counter(&nb, "pass", pass + 2);
	assert_int_equal(vm_counter(&nb, "failed"), 0);
	assert_int_equal(jint(ferry_json(&na, "status"), "memory_bytes"), 0);
	j = ferry_json(&nb, "migrations");
	assert_jstr(jfind(j, "migrations", "vm", jstr(rep, "vm")), "state",
		    "completed");
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

/* `ferry --json migration ID` on n: the report, NULL if ferry failed. */
static json_t *mig(struct node *n, const char *id)
{
	int rc;
	json_t *j = ferry_jargs(n, 10, &rc, "migration", id, NULL);

	return rc ? NULL : j;
}

/* Wait up to secs for migration id on n to reach state; its report. */
static json_t *wait_mig(struct node *n, const char *id, const char *state,
			double secs)
{
	double t0 = now_s();
	json_t *j;

	while (!jis(j = mig(n, id), "state", state)) {
		if (now_s() - t0 > secs) {
			itest_dump_logs(&na, &nb);
			fail_msg("migration %s on %s not %s after %.0f s: %s",
				 id, n->name, state, secs, jtext(j));
		}
		sleep_ms(50);
	}
	return j;
}

static void test_postcopy(void **state)
{
	long pass, resident;
	json_t *j;

	(void)state;
	two_nodes();
	vm_pid = itest_start_vm(&na, ferry_vm_bin, "p1", random64);
	wait_counter(&na, "pass", 1);
	pass = vm_counter(&na, "pass");
	j = ferry_jargs(&na, 60, NULL, "migrate", "p1", "--to", "b", "--mode",
			"postcopy", NULL);
	print_message("post-copy of 64 MiB: total %.3f s, downtime %.1f ms, "
		      "post-copy %.1f ms, %ld faults (p50 %.1f us), blocktime "
		      "%.1f ms\n",
		      jdbl(j, "total_s"), jdbl(j, "downtime_ms"),
		      jdbl(j, "postcopy.duration_ms"),
		      jint(j, "postcopy.faults"),
		      jdbl(j, "postcopy.fault_p50_us"),
		      jdbl(j, "postcopy.blocktime_ms"));
	assert_jstr(j, "mode", "postcopy");
	/* one round: nothing was pulled before the VM moved */
	assert_int_equal(jint(j, "round"), 0);
	resident = jint(j, "pages_resident");
	assert_true(resident > (64 << 8) * 3 / 4);
	assert_int_equal(jint(j, "pages_pulled"), resident);
	assert_int_equal(jint(j, "pages_pulled_again"), 0);
	assert_true(jdbl(j, "downtime_ms") > 0);
	assert_true(jdbl(j, "postcopy.duration_ms") > 0);
	check_moved(j, pass);
	assert_non_null(strstr(slurp(nb.log), "post-copy: all pages in"));
}

/*
 * A verify guest rewriting 8 MiB (no pre-copy round can meet 1 ms) called
 * name on n, through its first pass; returns the pass it is in. Short
 * pauses: at the default 1000 pages then 500,000 empty loops, a loaded
 * machine spent a whole 1 s round 0 in the pause, which dirtied nothing
 * and rightly converged (test_hybrid failed 4 of 4 beside two busy loops).
 */
static long busy_guest(struct node *n, const char *name)
{
	static const char *const opts[] = {
		"--mem",	"32M",	"--guest",  "verify",
		"--workingset", "8M",	"--stride", "100",
		"--sleep",	"1000", NULL
	};

	vm_pid = itest_start_vm(n, ferry_vm_bin, name, opts);
	wait_counter(n, "pass", 1);
	return vm_counter(n, "pass");
}

static void test_hybrid(void **state)
{
	json_t *j;
	long pass;

	(void)state;
	two_nodes();
	pass = busy_guest(&na, "h1");
	/*
	 * 1 ms cannot be met while the guest rewrites its 8 MiB. After round
	 * 0 (1 s at 8 MiB/s), not round 1: a 0.4 s round 1 that fell into a
	 * pause of the guest (seen under ASan, before busy_guest's pauses
	 * were made short) dirtied nothing, and pre-copy rightly converged.
	 */
	j = ferry_jargs(&na, 60, NULL, "migrate", "h1", "--to", "b", "--mode",
			"hybrid", "--postcopy-after", "1", "--downtime-limit",
			"1", "--max-bandwidth", "8M", NULL);
	print_message("hybrid: %ld rounds, then post-copy of %.1f ms; %ld "
		      "faults\n",
		      jint(j, "round") + 1, jdbl(j, "postcopy.duration_ms"),
		      jint(j, "postcopy.faults"));
	assert_jpart(j, "converge_actions", "post-copy after round 0");
	assert_true(jint(j, "pages_pulled_again") > 0);
	assert_true(jdbl(j, "postcopy.duration_ms") > 0);
	check_moved(j, pass);
}

static void test_command(void **state)
{
	char out[OUT_MAX], err[OUT_MAX], id[32];
	json_t *j;
	long pass;

	(void)state;
	two_nodes();
	pass = busy_guest(&na, "c1");
	/* never converges (1 ms), never goes post-copy on its own */
	j = ferry_jargs(&na, 10, NULL, "migrate", "c1", "--to", "b", "--mode",
			"hybrid", "--postcopy-after", "1000",
			"--downtime-limit", "1", "--max-bandwidth", "4M",
			"--auto-converge", "off", "--max-rounds", "1000",
			"--detach", NULL);
	snprintf(id, sizeof(id), "%ld", jint(j, "id"));
	wait_mig(&na, id, "precopy", 10);
	sleep_ms(1500);
	assert_int_equal(
		ferry_args(&na, 10, out, err, "migrate-postcopy", id, NULL), 0);
	j = wait_mig(&na, id, "completed", 30);
	assert_jpart(j, "converge_actions", "(asked)");
	check_moved(j, pass);

	/* a pre-copy migration cannot be switched */
	busy_guest(&nb, "c2");
	j = ferry_jargs(&nb, 10, NULL, "migrate", "c2", "--to", "a",
			"--max-bandwidth", "1M", "--detach", NULL);
	snprintf(id, sizeof(id), "%ld", jint(j, "id"));
	assert_int_equal(
		ferry_args(&nb, 10, out, err, "migrate-postcopy", id, NULL), 1);
	assert_non_null(strstr(err, "--mode hybrid"));
	assert_int_equal(ferry_args(&nb, 10, out, err, "cancel", id, NULL), 0);
}

static void test_link(void **state)
{
	double secs;
	json_t *j;
	long pass;

	(void)state;
	th = th_pair(100000000ULL, &na, &nb, ferry_vm_bin);
	vm_pid = itest_start_vm(&na, ferry_vm_bin, "l1", random64);
	wait_counter(&na, "pass", 1);
	pass = vm_counter(&na, "pass");
	j = ferry_jargs(&na, 60, NULL, "migrate", "l1", "--to", "b", "--mode",
			"postcopy", NULL);
	secs = jdbl(j, "total_s");
	print_message("100 Mbit/s link: post-copy of %ld MiB in %.2f s, "
		      "downtime %.1f ms, %ld faults, blocktime %.1f ms\n",
		      jint(j, "bytes") >> 20, secs, jdbl(j, "downtime_ms"),
		      jint(j, "postcopy.faults"),
		      jdbl(j, "postcopy.blocktime_ms"));
	if (jint(j, "bytes") * 8 / secs > 1.3e8)
		fail_msg("faster than the link: %s", jtext(j));
	check_moved(j, pass);
}

/*
 * Start a post-copy of 56 MiB and stop a's ferryd (src:after:postcopy,
 * docs/testing.md "Fault points") as soon as the VM runs on b: almost all
 * of its pages are still at a. The 50 Mbit/s link keeps it so in the
 * moment between b's RESUMED and a's stop (at link speed b could have
 * pulled all); the test SIGKILLs or SIGCONTs a.
 */
static void slow_postcopy(char *id, size_t len, long *pass)
{
	json_t *j;

	th = th_pair_fault(50000000ULL, &na, &nb, ferry_vm_bin,
			   "src:after:postcopy:stop", NULL);
	vm_pid = itest_start_vm(&na, ferry_vm_bin, "r1", random64);
	wait_counter(&na, "pass", 1);
	*pass = vm_counter(&na, "pass");
	j = ferry_jargs(&na, 10, NULL, "migrate", "r1", "--to", "b", "--mode",
			"postcopy", "--detach", NULL);
	snprintf(id, len, "%ld", jint(j, "id"));
	node_wait_stopped(&na, 60);
	assert_jstr(mig(&nb, id), "state", "postcopy");
}

/* b's `ferry status` names the stalled migration within secs. */
static void wait_stall_shown(double secs)
{
	char out[OUT_MAX], err[OUT_MAX];
	double t0 = now_s();

	for (;;) {
		assert_int_equal(ferry(&nb, false, "status", out, err), 0);
		if (strstr(out, "STALLED"))
			break;
		if (now_s() - t0 > secs)
			fail_msg("no stall in b's status: %s", out);
		sleep_ms(100);
	}
	print_message("b: %.*s\n", (int)strcspn(strstr(out, "STALLED"), "\n"),
		      strstr(out, "STALLED"));
}

static void test_restart(void **state)
{
	long pass, pulled;
	char id[32];
	json_t *j;

	(void)state;
	slow_postcopy(id, sizeof(id), &pass);
	assert_int_equal(kill(na.pid, SIGKILL), 0);
	assert_true(node_wait(&na, 5) >= 0);
	wait_stall_shown(5);
	/* the VM waits on b, not killed; its source copy waits at a */
	j = mig(&nb, id);
	assert_jstr(j, "state", "postcopy");
	pulled = jint(j, "pages_pulled");
	assert_int_equal(kill(vm_pid, 0), 0);
	sleep_ms(1000);

	th_node_start(th, 0, &na);
	node_ready(&na);
	assert_true(wait_state(&na, "reachable", 1, 10) >= 0);
	j = wait_mig(&nb, id, "completed", 60);
	assert_true(jint(j, "pages_pulled") > pulled);
	j = wait_mig(&na, id, "completed", 10);
	check_moved(j, pass);
	assert_non_null(strstr(slurp(na.log), "serving its pages again"));
}

static void test_cut(void **state)
{
	char id[32];
	json_t *j;
	long pass;

	(void)state;
	slow_postcopy(id, sizeof(id), &pass);
	assert_int_equal(th_cut(th, 0), 0);
	assert_int_equal(kill(na.pid, SIGCONT), 0);
	wait_stall_shown(5);
	sleep_ms(1500);
	assert_int_equal(th_restore(th, 0), 0);
	j = wait_mig(&na, id, "completed", 60);
	print_message("link cut for 3 s: completed, %ld stalls seen by the "
		      "fault server (%.1f s)\n",
		      jint(j, "postcopy.stalls"),
		      jdbl(j, "postcopy.stall_ms") / 1e3);
	check_moved(j, pass);
}

static void test_vm_killed(void **state)
{
	char id[32];
	long pass;
	int status;

	(void)state;
	slow_postcopy(id, sizeof(id), &pass);
	assert_int_equal(kill(vm_pid, SIGKILL), 0);
	assert_int_equal(waitpid(vm_pid, &status, 0), vm_pid);
	untrack(vm_pid);
	assert_int_equal(kill(na.pid, SIGCONT), 0);
	wait_mig(&na, id, "completed", 60);
	wait_counter(&nb, "pass", pass + 2);
	assert_int_equal(vm_counter(&nb, "failed"), 0);
	assert_int_equal(jint(ferry_json(&na, "status"), "memory_bytes"), 0);
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

/*
 * suite rdma: the test VM's rxe0 sits on the dummy link ferry-rxe
 * (softroce-ci/vm-init). Down, its port is down and nothing moves.
 */
static void rxe_link_down(void)
{
	assert_int_equal(system("ip link set dev ferry-rxe down"), 0);
}

/* softroce-ci/rxe-device what; asserts that it worked. */
static void rxe(const char *what)
{
	if (rxe_device(what))
		fail_msg("rxe-device %s failed", what);
}

/*
 * Once every ferryd is gone, rxe0 made anew: on rxe no connection is made
 * after a flap that connections lived through (softroce-ci/rxe-device).
 */
static int rxe_teardown(void **state)
{
	int ret;

	/*
	 * The link up first: a ferryd whose connection was up waits in the
	 * kernel (ib_cm's disconnect, unkillable) to let go of it, for a
	 * minute or more while the link stays down, and cannot exit until
	 * then (docs/rdma.md).
	 */
	system("ip link set dev ferry-rxe up");
	ret = pc_teardown(state);
	rxe("renew");
	return ret;
}

/* Once every ferryd is gone, rxe0 as it was and the spare rxe1 gone. */
static int rxe_device_teardown(void **state)
{
	int ret = pc_teardown(state);

	rxe("restore");
	return ret;
}

/*
 * Two nodes, b's background pull capped at 4 MiB/s (post-copies last),
 * and on a a VM v1 of 32 MiB of random data through its first pass;
 * returns the pass it is in.
 */
static long link_vm(void)
{
	static const char *const opts[] = {
		"--mem", "32M",	      "--guest", "verify", "--workingset",
		"4M",	 "--prefill", "random",	 NULL
	};
	static char extra[600];

	snprintf(extra, sizeof(extra),
		 "ferry_vm = %s\npostcopy_max_bandwidth = 4M\n", ferry_vm_bin);
	itest_nodes((struct node *const[]){ &na, &nb }, NULL, 2, extra);
	vm_pid = itest_start_vm(&na, ferry_vm_bin, "v1", opts);
	wait_counter(&na, "pass", 1);
	return vm_counter(&na, "pass");
}

/* A migration of v1 from a to b, detached; its id in id. */
static void start_mig(char *id, size_t len, const char *mode, const char *bw)
{
	json_t *j = ferry_jargs(&na, 10, NULL, "migrate", "v1", "--to", "b",
				"--mode", mode, "--max-bandwidth", bw,
				"--detach", NULL);

	snprintf(id, len, "%ld", jint(j, "id"));
}

/*
 * A pre-copy of v1 at 2 MiB/s; once b has 512 pages, brk() breaks the
 * RDMA device under it: the migration fails, the VM runs on at its source
 * and b keeps nothing.
 */
static void precopy_broken(void (*brk)(void), const char *what)
{
	double t0;
	char id[32];
	json_t *j;
	long pass;

	link_vm();
	start_mig(id, sizeof(id), "precopy", "2M");
	t0 = now_s();
	while (jint(mig(&na, id), "pages_pulled") < 512 && now_s() - t0 < 60)
		sleep_ms(100);
	brk();
	t0 = now_s();
	j = wait_mig(&na, id, "failed", 60);
	print_message("%s in pre-copy: failed after %.1f s: %s\n", what,
		      now_s() - t0, jstr(j, "reason"));
	pass = vm_counter(&na, "pass");
	wait_counter(&na, "pass", pass + 1);
	assert_int_equal(vm_counter(&na, "failed"), 0);
	assert_null(jfind(ferry_json(&nb, "vms"), "vms", "name", "v1"));
	assert_int_equal(jint(ferry_json(&nb, "status"), "memory_bytes"), 0);
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

/*
 * The link goes down in the middle of a pre-copy. (That the next one goes
 * through once the link is back, rxe cannot show: see rxe_teardown().)
 */
static void test_rxe_down_precopy(void **state)
{
	(void)state;
	precopy_broken(rxe_link_down, "rxe link down");
}

static void rxe_delete(void)
{
	rxe("delete");
}

/*
 * rxe0 is deleted in the middle of a pre-copy (with the spare rxe1, as
 * below); once it is added again, the next migration goes through.
 */
static void test_rxe_removed_precopy(void **state)
{
	(void)state;
	rxe("spare");
	precopy_broken(rxe_delete, "rxe0 deleted");
	rxe("add");
	itest_migrate_verified(&na, "v1", "b", 32 << 8);
}

/*
 * rxe0 is deleted in the middle of a post-copy, with a spare device rxe1
 * so that librdmacm can let go of it (docs/rdma.md, "Failures"): every
 * ferryd's domains give the device up (the delete returns), the migration
 * and its VM wait on b, neither failed nor given up, with the source's
 * copy kept. rxe0 comes back: the domains are made anew with new keys, a
 * sends its HOLDER_MAP again, and the migration completes, every page
 * checked by the guest.
 */
static void test_rxe_removed_postcopy(void **state)
{
	char id[32];
	long pass;
	json_t *j;

	(void)state;
	rxe("spare");
	pass = link_vm();
	start_mig(id, sizeof(id), "postcopy", "0");
	wait_mig(&nb, id, "postcopy", 60);
	rxe("delete");
	sleep_ms(2000);
	j = mig(&nb, id);
	print_message("rxe0 deleted: b pulled %ld pages, %ld stalls\n",
		      jint(j, "pages_pulled"), jint(j, "postcopy.stalls"));
	assert_jstr(j, "state", "postcopy");
	assert_jstr(mig(&na, id), "state", "postcopy");
	assert_true(child_of(nb.pid, "ferry-vm") > 0);
	rxe("add");
	j = wait_mig(&na, id, "completed", 120);
	check_moved(j, pass);
	assert_non_null(strstr(slurp(na.log), "registered anew"));
}

int main(void)
{
	/* suite rdma (FERRY_TEST_PROVIDER=verbs) picks its own by name */
	const struct CMUnitTest rdma[] = {
		cmocka_unit_test_setup_teardown(test_postcopy, NULL,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_hybrid, NULL, pc_teardown),
		cmocka_unit_test_setup_teardown(test_rxe_down_precopy, NULL,
						rxe_teardown),
		cmocka_unit_test_setup_teardown(test_rxe_removed_precopy, NULL,
						rxe_device_teardown),
		cmocka_unit_test_setup_teardown(test_rxe_removed_postcopy, NULL,
						rxe_device_teardown),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_postcopy, NULL,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_hybrid, NULL, pc_teardown),
		cmocka_unit_test_setup_teardown(test_command, NULL,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_link, NULL, pc_teardown),
		cmocka_unit_test_setup_teardown(test_restart, NULL,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_cut, NULL, pc_teardown),
		cmocka_unit_test_setup_teardown(test_vm_killed, NULL,
						pc_teardown),
	};

	if (itest_env(&ferry_vm_bin) || itest_need_root("test_postcopy"))
		return 1;
	if (getenv("FERRY_TEST_PROVIDER"))
		return itest_run(rdma, sizeof(rdma) / sizeof(rdma[0]), setup);
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), setup);
}
