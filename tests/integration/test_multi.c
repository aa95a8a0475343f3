// SPDX-License-Identifier: MIT
/*
 * Integration: several migrations at once between real ferryd on
 * loopback, of real `verify` guests (which check every page they
 * rewrite), driven with the ferry CLI. Each test first sees its
 * migrations running together (polled, not assumed), then lets them end.
 *
 *   two_in     two VMs a -> b at once, pre-copy with --verify: both
 *              complete, both go on checking at b without a mismatch
 *   crossed    a -> b and b -> a at the same time
 *   postcopy   two post-copies into b at once, from a and from c, each
 *              source stopped at its fault point src:after:postcopy so
 *              that both VMs run on b with their pages still away; then
 *              both sources go on and both VMs get every page, each
 *              through its own fault server
 *   limit_in   b with max_incoming = 1: a second incoming migration is
 *              refused with the limit's name, its VM runs on at a
 *   limit_out  a with max_outgoing = 1: a second `ferry migrate` is
 *              refused at once with the limit's name
 * The pre-copies are capped at 32 MiB/s so that they last about 2 s,
 * long enough to be seen running together. Needs root (uffd).
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
#include <unistd.h>
#include <cmocka.h>

#include "itest.h"

static const char *ferry_vm_bin;
static struct node na, nb, nc;

/* 64 MiB of random data, every page of it resident and pulled */
static const char *const guest[] = { "--mem",	  "64M",	  "--guest",
				     "verify",	  "--workingset", "4M",
				     "--prefill", "random",	  NULL };

/* Config lines of the node started next: ferry_vm, then extra. */
static void node_extra(const char *extra)
{
	static char buf[4][600];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "ferry_vm = %s\n%s", ferry_vm_bin,
		 extra ? extra : "");
	itest_node_extra = buf[k];
}

/* a and b (and c, if with_c: a peer of b only), fresh, with extras. */
static void nodes(bool with_c, const char *xa, const char *xb)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s/a' '%s/b' '%s/c'", tmpdir,
		 tmpdir, tmpdir);
	assert_int_equal(system(cmd), 0);
	node_extra(xa);
	node_init(&na, "a");
	node_extra(xb);
	node_init(&nb, "b");
	node_extra(NULL);
	if (with_c)
		node_init(&nc, "c");
	node_add_peer(&na, "b", nb.port, nb.key);
	node_add_peer(&nb, "a", na.port, na.key);
	if (with_c) {
		node_add_peer(&nb, "c", nc.port, nc.key);
		node_add_peer(&nc, "b", nb.port, nb.key);
	}
}

/* Start a, b (and c) with their fault points (NULL: none); all see all. */
static void start(const char *fa, const char *fc, bool with_c)
{
	node_start_fault(&na, fa);
	node_start(&nb);
	if (with_c)
		node_start_fault(&nc, fc);
	node_ready(&na);
	node_ready(&nb);
	assert_true(wait_state(&na, "reachable", 1, 10) >= 0);
	assert_true(wait_state(&nb, "reachable", with_c ? 2 : 1, 10) >= 0);
	if (with_c) {
		node_ready(&nc);
		assert_true(wait_state(&nc, "reachable", 1, 10) >= 0);
	}
}

static int multi_teardown(void **state)
{
	kill_node_vms(&na);
	kill_node_vms(&nb);
	kill_node_vms(&nc);
	memset(&nc, 0, sizeof(nc));
	return teardown(state);
}

/* The counter key of VM vm on n, -1 if n does not list it. */
static long ctr(struct node *n, const char *vm, const char *key)
{
	json_t *j = itest_json_poll(n, "vms");
	long v = jint(jfind(j, "vms", "name", vm), key);

	json_decref(j);
	return v;
}

/* Wait up to 60 s for ctr(n, vm, key) >= want. */
static void wait_ctr(struct node *n, const char *vm, const char *key, long want)
{
	double t0 = now_s();
	long v;

	while ((v = ctr(n, vm, key)) < want) {
		if (now_s() - t0 > 60)
			fail_msg("%s: %s of %s is %ld, never %ld", n->name, key,
				 vm, v, want);
		sleep_ms(50);
	}
}

/* Start guest vm on n; returns its pass once it has done one. */
static long start_guest(struct node *n, const char *vm)
{
	itest_start_vm(n, ferry_vm_bin, vm, guest);
	wait_ctr(n, vm, "pass", 1);
	return ctr(n, vm, "pass");
}

/* `ferry migrate vm --to to --detach ARGS...` on n: the id, as text. */
static void migrate(struct node *n, const char *vm, const char *to,
		    const char *a1, const char *a2, char *id, size_t len)
{
	json_t *j = ferry_jargs(n, 10, NULL, "migrate", vm, "--to", to,
				"--detach", a1, a2, NULL);

	snprintf(id, len, "%ld", jint(j, "id"));
}

/* The state of n's migration of vm (the last one listed), or NULL. */
static const char *state_of(struct node *n, const char *vm)
{
	static char st[32];
	json_t *j = itest_json_poll(n, "migrations");
	const char *s = NULL;

	for (int i = 0; i < jlen(j, "migrations"); i++) {
		char path[64];

		snprintf(path, sizeof(path), "migrations[%d].vm", i);
		if (jis(j, path, vm)) {
			snprintf(path, sizeof(path), "migrations[%d].state", i);
			s = jstr(j, path);
		}
	}
	snprintf(st, sizeof(st), "%s", s ? s : "");
	json_decref(j);
	return s ? st : NULL;
}

static bool running(const char *s)
{
	return s && *s && strcmp(s, "completed") && strcmp(s, "failed") &&
	       strcmp(s, "cancelled");
}

/*
 * Wait until n shows the migrations of vm1 and vm2 running at the same
 * time, both past prepare; fails if one ends first.
 */
static void wait_together(struct node *n, const char *vm1, const char *vm2)
{
	double t0 = now_s();

	for (;;) {
		const char *s1 = state_of(n, vm1);
		bool r1 = running(s1) && strcmp(s1, "prepare");
		const char *s2 = state_of(n, vm2);
		bool r2 = running(s2) && strcmp(s2, "prepare");

		if (r1 && r2)
			return;
		if ((s1 && *s1 && !running(s1)) ||
		    (s2 && *s2 && !running(s2)) || now_s() - t0 > 30) {
			itest_dump_logs(&na, &nb);
			fail_msg("%s: %s and %s never ran together (%s, %s)",
				 n->name, vm1, vm2, s1 ? s1 : "-",
				 s2 ? s2 : "-");
		}
		sleep_ms(20);
	}
}

/* Wait up to 60 s for n's migration of vm to be completed. */
static void wait_done(struct node *n, const char *vm)
{
	double t0 = now_s();
	const char *s;

	while (!((s = state_of(n, vm)) && !strcmp(s, "completed"))) {
		if (!running(s) || now_s() - t0 > 60) {
			itest_dump_logs(&na, &nb);
			fail_msg("%s: migration of %s is %s, not completed",
				 n->name, vm, s ? s : "absent");
		}
		sleep_ms(50);
	}
}

/* vm left from for to: gone at from, checking on at to, no mismatch. */
static void check_moved(struct node *from, struct node *to, const char *vm,
			long pass)
{
	wait_done(from, vm);
	wait_done(to, vm);
	assert_null(jfind(ferry_json(from, "vms"), "vms", "name", vm));
	wait_ctr(to, vm, "pass", pass + 2);
	assert_int_equal(ctr(to, vm, "failed"), 0);
}

static void test_two_in(void **state)
{
	char id1[32], id2[32];
	long p1, p2;

	(void)state;
	nodes(false, NULL, NULL);
	start(NULL, NULL, false);
	p1 = start_guest(&na, "m1");
	p2 = start_guest(&na, "m2");
	/* 8 s at 8 MiB/s: the second starts long before the first ends */
	migrate(&na, "m1", "b", "--verify", "--max-bandwidth=8M", id1,
		sizeof(id1));
	migrate(&na, "m2", "b", "--verify", "--max-bandwidth=32M", id2,
		sizeof(id2));
	wait_together(&nb, "m1", "m2");
	check_moved(&na, &nb, "m1", p1);
	check_moved(&na, &nb, "m2", p2);
	assert_int_equal(jint(ferry_json(&na, "status"), "memory_bytes"), 0);
	assert_non_null(strstr(slurp(nb.log), "verify: all 16384 pages match"));
	assert_int_equal(count(slurp(nb.log), "verify: all 16384 pages match"),
			 2);
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

static void test_crossed(void **state)
{
	char id1[32], id2[32];
	long p1, p2;

	(void)state;
	nodes(false, NULL, NULL);
	start(NULL, NULL, false);
	p1 = start_guest(&na, "x1");
	p2 = start_guest(&nb, "x2");
	migrate(&na, "x1", "b", "--verify", "--max-bandwidth=8M", id1,
		sizeof(id1));
	/* b knows x1 first: its own migration takes another id (2) */
	wait_together(&nb, "x1", "x1");
	migrate(&nb, "x2", "a", "--verify", "--max-bandwidth=32M", id2,
		sizeof(id2));
	/* each node sends one and receives the other */
	wait_together(&na, "x1", "x2");
	assert_string_equal(id1, "1");
	assert_string_equal(id2, "2");
	check_moved(&na, &nb, "x1", p1);
	check_moved(&nb, &na, "x2", p2);
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

static void test_postcopy(void **state)
{
	char id1[32], id2[32];
	long p1, p2;

	(void)state;
	nodes(true, NULL, NULL);
	start("src:after:postcopy:stop", "src:after:postcopy:stop", true);
	p1 = start_guest(&na, "q1");
	p2 = start_guest(&nc, "q2");
	migrate(&na, "q1", "b", "--mode", "postcopy", id1, sizeof(id1));
	node_wait_stopped(&na, 60);
	migrate(&nc, "q2", "b", "--mode", "postcopy", id2, sizeof(id2));
	node_wait_stopped(&nc, 60);
	/* both VMs run on b, their pages still at a and c */
	assert_string_equal(state_of(&nb, "q1"), "postcopy");
	assert_string_equal(state_of(&nb, "q2"), "postcopy");
	assert_int_equal(kill(na.pid, SIGCONT), 0);
	assert_int_equal(kill(nc.pid, SIGCONT), 0);
	check_moved(&na, &nb, "q1", p1);
	check_moved(&nc, &nb, "q2", p2);
	assert_int_equal(count(slurp(nb.log), "post-copy: all pages in"), 2);
	itest_no_crash(&na);
	itest_no_crash(&nb);
	itest_no_crash(&nc);
}

static void test_limit_in(void **state)
{
	char out[OUT_MAX], err[OUT_MAX], id[32];
	long w;

	(void)state;
	nodes(false, NULL, "max_incoming = 1\n");
	start(NULL, NULL, false);
	start_guest(&na, "l1");
	start_guest(&na, "l2");
	migrate(&na, "l1", "b", "--max-bandwidth=16M", NULL, id, sizeof(id));
	/* b receives l1: as many as it may */
	wait_together(&nb, "l1", "l1");
	assert_int_equal(ferry_args(&na, 30, out, err, "migrate", "l2", "--to",
				    "b", NULL),
			 1);
	/* the report of the failed migration says why */
	if (!strstr(out, "b refused: b receives as many VMs as its "
			 "max_incoming allows (1)"))
		fail_msg("not refused for max_incoming: %s / %s", out, err);
	/* l2 runs on at a; b never started it */
	w = ctr(&na, "l2", "writes");
	wait_ctr(&na, "l2", "writes", w + 1000);
	assert_null(jfind(ferry_json(&nb, "vms"), "vms", "name", "l2"));
	assert_string_equal(state_of(&na, "l2"), "failed");
	/* the first one is not disturbed */
	assert_int_equal(ferry_args(&na, 10, out, err, "cancel", id, NULL), 0);
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

static void test_limit_out(void **state)
{
	char out[OUT_MAX], err[OUT_MAX], id[32];

	(void)state;
	nodes(false, "max_outgoing = 1\n", NULL);
	start(NULL, NULL, false);
	start_guest(&na, "o1");
	start_guest(&na, "o2");
	migrate(&na, "o1", "b", "--max-bandwidth=16M", NULL, id, sizeof(id));
	assert_int_equal(ferry_args(&na, 10, out, err, "migrate", "o2", "--to",
				    "b", NULL),
			 1);
	assert_non_null(strstr(err, "max_outgoing allows (1)"));
	/* refused before anything started: no migration of o2 anywhere */
	assert_null(state_of(&na, "o2"));
	assert_null(state_of(&nb, "o2"));
	/* the same VM twice is still refused for itself */
	assert_int_equal(ferry_args(&na, 10, out, err, "migrate", "o1", "--to",
				    "b", NULL),
			 1);
	assert_non_null(strstr(err, "already migrating"));
	assert_int_equal(ferry_args(&na, 10, out, err, "cancel", id, NULL), 0);
	itest_no_crash(&na);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_two_in, multi_teardown),
		cmocka_unit_test_teardown(test_crossed, multi_teardown),
		cmocka_unit_test_teardown(test_postcopy, multi_teardown),
		cmocka_unit_test_teardown(test_limit_in, multi_teardown),
		cmocka_unit_test_teardown(test_limit_out, multi_teardown),
	};

	if (itest_env(&ferry_vm_bin) || itest_need_root("test_multi"))
		return 1;
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), setup);
}
