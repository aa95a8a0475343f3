// SPDX-License-Identifier: MIT
/*
 * Integration: retained copies (holder_retention) among three real ferryd
 * on loopback, with verify guests whose RAM is mostly prefilled data that
 * never changes, and --verify on every hop (docs/migration.md, "Retained
 * copies").
 *
 *   back     a -> b -> a: a kept its copy, so the way back takes every
 *            page the guest did not change on b from it, locally; the
 *            pages it changed come from b (a stale page would fail
 *            --verify)
 *   back_postcopy  the same, a -> b by post-copy: a says it keeps its
 *            copy (KEPT), b tracks the guest's writes from the moment the
 *            VM runs there, while pages still arrive (placed
 *            write-protected, so they do not count as written)
 *   chain    a -> b -> c: c reads the unchanged pages from a's copy and
 *            from b at once
 *   age      a's copy outlives holder_retention_age_s: it is dropped, and
 *            b -> c reads nothing from a (b still offers it: c's reads
 *            from a fail and go to b)
 *   release  `ferry holders` on b shows a's copy, on a the copy it keeps;
 *            after `ferry release` on a, b -> c reads nothing from a
 *   budget   a copy larger than holder_retention is not kept
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "itest.h"

static const char *ferry_vm_bin;
static struct node na, nb, nc;

/* 64 MiB, 56 of them prefilled data the guest never writes */
static const char *const guest[] = { "--mem",	  "64M",	  "--guest",
				     "verify",	  "--workingset", "4M",
				     "--prefill", "random",	  NULL };

/* Nodes a, b and c that list each other, with extra configuration. */
static void three_nodes(const char *conf)
{
	static char extra[600];

	snprintf(extra, sizeof(extra),
		 "ferry_vm = %s\nping_interval_ms = 200\n"
		 "peer_timeout_ms = 1000\n%s",
		 ferry_vm_bin, conf);
	itest_trio(&na, &nb, &nc, extra, NULL, NULL);
}

/* Migrate r1 from `from` to `to` with --verify: the report. */
static json_t *hop(struct node *from, const char *to)
{
	json_t *j = ferry_jargs(from, 60, NULL, "migrate", "r1", "--to", to,
				"--verify", NULL);

	assert_jstr(j, "state", "completed");
	assert_int_equal(jint(j, "verified_pages"), 64 << 8);
	return j;
}

/* The bytes the destination took from node's copy, per the report. */
static long from(const json_t *j, const char *node)
{
	json_t *h = jfind(j, "holders", "node", node);

	return h ? jint(h, "bytes") : 0;
}

/* r1 runs on n and goes on checking its memory without a failure. */
static void runs_on(struct node *n)
{
	long pass = vm_counter(n, "pass");

	wait_counter(n, "pass", pass + 2);
	assert_int_equal(vm_counter(n, "failed"), 0);
}

/* r1 runs on a, then on b, which changed its working set. */
static void a_to_b(void)
{
	itest_start_vm(&na, ferry_vm_bin, "r1", guest);
	wait_counter(&na, "pass", 2);
	hop(&na, "b");
	runs_on(&nb);
}

static int rt_teardown(void **state)
{
	kill_node_vms(&na);
	kill_node_vms(&nb);
	kill_node_vms(&nc);
	return teardown(state);
}

/* b -> a: a's kept copy gives every page the guest left alone on b. */
static void back_to_a(void)
{
	json_t *j = hop(&nb, "a");
	long local = from(j, "a"), remote = from(j, "b");

	/* the prefilled 56 MiB stayed as they were: a had them */
	if (local < (40L << 20) || remote <= 0 || remote > (16L << 20) ||
	    local + remote != jint(j, "bytes"))
		fail_msg("a %ld bytes, b %ld: %s", local, remote, jtext(j));
	runs_on(&na);
	assert_non_null(strstr(slurp(na.log), "our kept copy is current"));
	assert_non_null(strstr(slurp(na.log), "dropped: its VM comes back and "
					      "runs on it"));
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

static void test_back(void **state)
{
	(void)state;
	three_nodes("holder_retention = 1G\n");
	a_to_b();
	assert_non_null(strstr(slurp(na.log), "our copy is kept"));
	back_to_a();
}

static void test_back_postcopy(void **state)
{
	json_t *j;

	(void)state;
	three_nodes("holder_retention = 1G\n");
	itest_start_vm(&na, ferry_vm_bin, "r1", guest);
	wait_counter(&na, "pass", 2);
	j = ferry_jargs(&na, 60, NULL, "migrate", "r1", "--to", "b", "--mode",
			"postcopy", NULL);
	assert_jstr(j, "state", "completed");
	runs_on(&nb);
	assert_non_null(strstr(slurp(nb.log), "a keeps its copy of the VM"));
	back_to_a();
}

static void test_chain(void **state)
{
	json_t *j;

	(void)state;
	three_nodes("holder_retention = 1G\n");
	a_to_b();
	j = hop(&nb, "c");
	if (from(j, "a") <= 0 || from(j, "a") + from(j, "b") != jint(j, "byte"
									"s"))
		fail_msg("holders: %s", jtext(j));
	runs_on(&nc);
	itest_no_crash(&na);
	itest_no_crash(&nb);
	itest_no_crash(&nc);
}

static void test_age(void **state)
{
	json_t *j;
	double t0;

	(void)state;
	three_nodes("holder_retention = 1G\nholder_retention_age_s = 1\n");
	a_to_b();
	t0 = now_s();
	while (now_s() - t0 < 10 && !strstr(slurp(na.log), "holder_retention_"
							   "age_s passed"))
		sleep_ms(50);
	assert_non_null(strstr(slurp(na.log), "holder_retention_age_s passed"));
	j = hop(&nb, "c");
	assert_int_equal(from(j, "a"), 0);
	runs_on(&nc);
	itest_no_crash(&na);
	itest_no_crash(&nc);
}

static void test_release(void **state)
{
	json_t *j, *h;

	(void)state;
	three_nodes("holder_retention = 1G\n");
	a_to_b();
	/* b knows where the VM's copies are; a, what it keeps */
	j = ferry_jargs(&nb, 10, NULL, "holders", "r1", NULL);
	h = jfind(j, "holders", "node", "b");
	assert_jstr(h, "kind", "running");
	h = jfind(j, "holders", "node", "a");
	assert_jstr(h, "kind", "retained");
	if (jint(h, "current_pages") < (40 << 8) ||
	    jint(h, "current_pages") > jint(h, "pages"))
		fail_msg("holders: %s", jtext(j));
	j = ferry_jargs(&na, 10, NULL, "holders", "r1", NULL);
	assert_jstr(jfind(j, "holders", "node", "a"), "kind", "retained");
	/* released: b -> c reads nothing from a */
	j = ferry_jargs(&na, 10, NULL, "release", "r1", NULL);
	assert_int_equal(jint(j, "released"), 1);
	j = ferry_jargs(&na, 10, NULL, "holders", "r1", NULL);
	assert_int_equal(jlen(j, "holders"), 0);
	j = hop(&nb, "c");
	assert_int_equal(from(j, "a"), 0);
	runs_on(&nc);
	assert_non_null(strstr(slurp(na.log), "dropped: ferry release"));
}

static void test_budget(void **state)
{
	json_t *j;

	(void)state;
	three_nodes("holder_retention = 16M\n");
	a_to_b();
	assert_non_null(strstr(slurp(na.log), "larger than holder_retention"));
	j = hop(&nb, "a");
	assert_int_equal(from(j, "a"), 0);
	runs_on(&na);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_back, NULL, rt_teardown),
		cmocka_unit_test_setup_teardown(test_back_postcopy, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_chain, NULL, rt_teardown),
		cmocka_unit_test_setup_teardown(test_age, NULL, rt_teardown),
		cmocka_unit_test_setup_teardown(test_release, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_budget, NULL, rt_teardown),
	};

	if (itest_env(&ferry_vm_bin))
		return 1;
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), setup);
}
