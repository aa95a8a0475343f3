// SPDX-License-Identifier: MIT
/*
 * Integration: `ferry retarget` among three real ferryd on loopback, with
 * verify guests and --verify (docs/migration.md, "Retarget").
 *
 *   retarget      a -> b, then on to c: c pulls from a and from b, which
 *                 relays what it holds; the report counts both holders'
 *                 bytes; every page verifies; b is released and keeps
 *                 nothing
 *   postcopy      hybrid a -> b, on to c, then post-copy: c's background
 *                 pull reads from b as well, until c's COMMIT releases it
 *   relay_dies    b is killed while c has not read from it yet: c's reads
 *                 from b fail and come from a; no page is lost
 *   released_draining  b is released while it drains its reads (stopped
 *                 at RETARGET, the source cancelled): the next migration
 *                 to b reads from a again
 *   refused       retarget to an unknown peer, to a peer that is down and
 *                 during post-copy: a clear refusal, and the migration
 *                 goes on to b unchanged
 *   retarget2     a -> b, on to c, then on to d while c holds all but its
 *                 latest round: d pulls from a, b and c; every page
 *                 verifies; b and c are both released and keep nothing
 *   src_restart   a -> b, on to c; a's ferryd is killed once it recorded
 *                 its commit, before it released b: its record names b;
 *                 restarted, a completes the migration to c, releases b
 *                 and its record forgets it; b keeps nothing
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
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
static struct node na, nb, nc, nd;
static pid_t vm_pid;

static const char *const guest[] = { "--mem",	     "64M", "--guest", "verify",
				     "--workingset", "4M",  NULL };
/* 64 MiB, 56 of them prefilled data the guest never writes */
static const char *const filled[] = { "--mem",	   "64M",	   "--guest",
				      "verify",	   "--workingset", "4M",
				      "--prefill", "random",	   NULL };

/*
 * Nodes a, b and c that list each other, started with FERRY_FAULT fb on
 * b and fc on c (NULL: none), all reachable; a peer silent for
 * timeout_ms is unreachable; more in each [node].
 */
static void three_nodes_with(const char *fb, const char *fc,
			     unsigned timeout_ms, const char *more)
{
	static char extra[600];

	snprintf(extra, sizeof(extra),
		 "ferry_vm = %s\nping_interval_ms = 200\n"
		 "peer_timeout_ms = %u\nmigration_timeout_ms = 10000\n%s",
		 ferry_vm_bin, timeout_ms, more);
	itest_trio(&na, &nb, &nc, extra, fb, fc);
}

static void three_nodes(const char *fb, const char *fc)
{
	three_nodes_with(fb, fc, 1000, "");
}

/*
 * Nodes a, b, c and d that list each other, c started with FERRY_FAULT
 * fc; peers stay reachable for 10 s without a PONG (a stopped relay).
 */
static void four_nodes(const char *fc)
{
	static char extra[600];
	struct node *const all[] = { &na, &nb, &nc, &nd };
	const char *const fault[] = { NULL, NULL, fc, NULL };

	snprintf(extra, sizeof(extra),
		 "ferry_vm = %s\nping_interval_ms = 200\n"
		 "peer_timeout_ms = 10000\nmigration_timeout_ms = 30000\n",
		 ferry_vm_bin);
	itest_nodes(all, fault, 4, extra);
}

/*
 * Start guest r1 on a and migrate it to b, paced (4 MiB/s), pre-copy
 * with --verify or hybrid (over 256 pages: a prefilled guest); wait until
 * b pulled over `pages` pages of it. Its id into id. tight: a downtime
 * limit of 1 ms, raised after every round without progress (the
 * defaults: 300 ms, 3 rounds), so that rounds go on after an unpaced one
 * however fast this machine pulls the working set (20 ms was not enough:
 * 4 MiB in 14 ms, and test_retarget2's second retarget came too late).
 */
static void start_to_b(char *id, size_t len, const char *const *opts, long pass,
		       bool hybrid, long pages, bool tight)
{
	json_t *j, *m = NULL;
	double t0;

	vm_pid = itest_start_vm(&na, ferry_vm_bin, "r1", opts);
	wait_counter(&na, "pass", pass);
	j = ferry_jargs(&na, 10, NULL, "migrate", "r1", "--to", "b",
			"--max-bandwidth", "4M", "--detach", "--downtime-limit",
			tight ? "1" : "300", "--stall-rounds",
			tight ? "1" : "3", hybrid ? "--mode" : "--verify",
			hybrid ? "hybrid" : NULL, NULL);
	snprintf(id, len, "%ld", jint(j, "id"));
	t0 = now_s();
	while (now_s() - t0 < 20) {
		m = jfind(ferry_json(&nb, "migrations"), "migrations", "vm",
			  "r1");
		if (jis(m, "state", "precopy") &&
		    jint(m, "pages_pulled") > pages)
			break;
		sleep_ms(20);
	}
	assert_jstr(m, "state", "precopy");
}

static void migrate_to_b(char *id, size_t len, bool hybrid, long pages,
			 bool tight)
{
	/*
	 * tight: a guest that dirties its working set between any two
	 * harvests, also under kvm's emulation (48,000 page writes/s; the
	 * verify guest's default pauses left kvm rounds with no dirty page,
	 * which converge at any limit)
	 */
	static const char *const busy[] = {
		"--mem",	"64M",	"--guest",  "dirty",
		"--workingset", "4M",	"--stride", "100",
		"--sleep",	"1000", NULL
	};

	start_to_b(id, len,
		   pages > 256 ? filled
		   : tight     ? busy
			       : guest,
		   2, hybrid, pages, tight);
}

/* `ferry retarget id --to to` on a: its reply; a refusal fails the test. */
static json_t *retarget(const char *id, const char *to)
{
	return ferry_jargs(&na, 10, NULL, "retarget", id, "--to", to, NULL);
}

/* a's migration id once it ended (60 s at most). */
static json_t *wait_end(const char *id)
{
	json_t *j = NULL;
	double t0 = now_s();

	while (now_s() - t0 < 60) {
		j = ferry_jargs(&na, 10, NULL, "migration", id, NULL);
		if (!jis(j, "state", "precopy") &&
		    !jis(j, "state", "prepare") &&
		    !jis(j, "state", "switchover") &&
		    !jis(j, "state", "postcopy") &&
		    !jis(j, "state", "committed"))
			break;
		sleep_ms(50);
	}
	return j;
}

/* n's migration of r1 is in state want within 10 s. */
static json_t *wait_mig(struct node *n, const char *want)
{
	json_t *m = NULL;
	double t0 = now_s();

	while (now_s() - t0 < 10) {
		m = jfind(ferry_json(n, "migrations"), "migrations", "vm",
			  "r1");
		if (jis(m, "state", want))
			break;
		sleep_ms(20);
	}
	assert_jstr(m, "state", want);
	return m;
}

/* b's migration of r1 is in state want within 10 s. */
static json_t *wait_b(const char *want)
{
	return wait_mig(&nb, want);
}

/* r1 runs on n, checking its memory, and ours on a exited. */
static void runs_on(struct node *n)
{
	long pass;

	wait_vm_exit(vm_pid);
	assert_null(jfind(ferry_json(&na, "vms"), "vms", "name", "r1"));
	pass = vm_counter(n, "pass");
	wait_counter(n, "pass", pass + 2);
	assert_int_equal(vm_counter(n, "failed"), 0);
}

static int rt_teardown(void **state)
{
	kill_node_vms(&na);
	kill_node_vms(&nb);
	kill_node_vms(&nc);
	if (nd.pid)
		kill_node_vms(&nd);
	return teardown(state);
}

static void test_retarget(void **state)
{
	char id[32];
	json_t *j, *ha, *hb;

	(void)state;
	three_nodes(NULL, NULL);
	migrate_to_b(id, sizeof(id), false, 256, false);
	j = retarget(id, "c");
	j = wait_end(id);
	assert_jstr(j, "state", "completed");
	assert_jstr(j, "peer", "c");
	assert_int_equal(jint(j, "verified_pages"), 64 << 8);
	/* c pulled from both, and counted every byte once */
	ha = jfind(j, "holders", "node", "a");
	hb = jfind(j, "holders", "node", "b");
	if (!ha || !hb || jint(hb, "bytes") <= 0 || jint(ha, "bytes") < 0 ||
	    jint(ha, "bytes") + jint(hb, "bytes") != jint(j, "bytes"))
		fail_msg("holders: %s", jtext(j));
	runs_on(&nc);
	assert_non_null(strstr(slurp(nc.log), "verify: all 16384 pages match"));
	/* b was released: no VM, no ferry-vm, its migration says so */
	j = wait_b("released");
	assert_jpart(j, "reason", "released");
	assert_null(jfind(ferry_json(&nb, "vms"), "vms", "name", "r1"));
	assert_int_equal(child_of(nb.pid, "ferry-vm"), 0);
	j = ferry_json(&nb, "status");
	assert_int_equal(jint(j, "migrations"), 0);
	itest_no_crash(&na);
	itest_no_crash(&nb);
	itest_no_crash(&nc);
}

/*
 * Retarget a's migration id to c, which stops at its fault point once it
 * took a's holder map; once a has b's map (on its way to c, which takes
 * it before POSTCOPY), post-copy at once, so that c fetches every page in
 * post-copy; then c goes on. a's report once it ended, completed to c.
 */
static json_t *retarget_postcopy(const char *id)
{
	double t0;
	json_t *j;
	int rc;

	retarget(id, "c");
	node_wait_stopped(&nc, 20);
	wait_log(&na, "relay b holds", 20);
	ferry_jargs(&na, 10, &rc, "migrate-postcopy", id, NULL);
	assert_int_equal(rc, 0);
	t0 = now_s();
	do {
		j = ferry_jargs(&na, 10, NULL, "migration", id, NULL);
		sleep_ms(10);
	} while (jis(j, "state", "precopy") && now_s() - t0 < 5);
	kill(nc.pid, SIGCONT);
	j = wait_end(id);
	assert_jstr(j, "state", "completed");
	assert_jstr(j, "peer", "c");
	return j;
}

static void test_postcopy(void **state)
{
	const char *line;
	char id[32];
	json_t *j;
	long relayed = 0;

	(void)state;
	/* c stops once it took a's holder map, before b's and any pull */
	three_nodes(NULL, "dst:after:precopy:stop");
	migrate_to_b(id, sizeof(id), true, 2048, false);
	j = retarget_postcopy(id);
	if (jint(jfind(j, "holders", "node", "b"), "bytes") <= 0)
		fail_msg("b served nothing: %s", jtext(j));
	runs_on(&nc);
	line = strstr(slurp(nc.log), "post-copy: all pages in");
	assert_non_null(line);
	line = strstr(line, "pre-paged, ");
	if (!line ||
	    sscanf(line, "pre-paged, %ld pages from relays", &relayed) != 1 ||
	    relayed <= 0)
		fail_msg("c's post-copy read %ld pages from b", relayed);
	j = wait_b("released");
	assert_jpart(j, "reason", "holds every page");
	itest_no_crash(&na);
	itest_no_crash(&nb);
	itest_no_crash(&nc);
}

/*
 * Faults read from a relay: a guest that only reads (touch, over
 * prefilled RAM) leaves b's copy current wherever b has it; on c, in
 * post-copy, its walk faults (the background pull held to 4 MiB/s by
 * postcopy_max_bandwidth), and faults on pages b holds are read from b
 * (the first such one at least: b is not yet measured).
 */
static void test_postcopy_faults(void **state)
{
	static const char *const touch[] = { "--mem", "64M",	   "--guest",
					     "touch", "--prefill", "random",
					     NULL };
	const char *line;
	char id[32];
	long served = 0;
	json_t *j;

	(void)state;
	three_nodes_with(NULL, "dst:after:precopy:stop", 1000,
			 "postcopy_max_bandwidth = 4M\n");
	start_to_b(id, sizeof(id), touch, 1, true, 2048, false);
	j = retarget_postcopy(id);
	line = wait_log(&nc, "post-copy: all pages in", 30);
	line = strstr(line, "pages from relays, ");
	if (!line ||
	    sscanf(line, "pages from relays, %ld faults served by relays",
		   &served) != 1 ||
	    served <= 0)
		fail_msg("c's faults read %ld pages from b", served);
	/* the source's report counts them for b (c's last PROGRESS) */
	if (jint(jfind(j, "holders", "node", "b"), "bytes") < served * 4096)
		fail_msg("b's bytes leave out its faults: %s", jtext(j));
	wait_b("released");
	itest_no_crash(&na);
	itest_no_crash(&nb);
	itest_no_crash(&nc);
}

static void test_relay_dies(void **state)
{
	char id[32];
	json_t *j;

	(void)state;
	/*
	 * c stops once it took a's holder map, before b's; a waits for it
	 * 10 s (peer_timeout_ms) while b becomes a relay and dies, however
	 * slow this machine is
	 */
	three_nodes_with(NULL, "dst:after:precopy:stop", 10000, "");
	migrate_to_b(id, sizeof(id), false, 256, false);
	j = retarget(id, "c");
	node_wait_stopped(&nc, 20);
	wait_b("relay");
	kill(nb.pid, SIGKILL);
	kill(nc.pid, SIGCONT);
	kill_node_vms(&nb);
	j = wait_end(id);
	assert_jstr(j, "state", "completed");
	assert_jstr(j, "peer", "c");
	assert_int_equal(jint(j, "verified_pages"), 64 << 8);
	j = jfind(j, "holders", "node", "b");
	assert_true(!j || jint(j, "bytes") == 0);
	runs_on(&nc);
	assert_non_null(strstr(slurp(nc.log), "relay b"));
	itest_no_crash(&na);
	itest_no_crash(&nc);
}

static void test_released_draining(void **state)
{
	static const char *const big[] = { "--mem", "256M",	 "--guest",
					   "idle",  "--prefill", "random",
					   NULL };
	char id[32];
	json_t *j, *m = NULL;
	double t0;

	(void)state;
	/* b stops as it takes RETARGET, its reads still in flight */
	three_nodes("dst:retarget:stop", NULL);
	vm_pid = itest_start_vm(&na, ferry_vm_bin, "r2", big);
	/* paced: RETARGET comes long before the last round, on any host */
	j = ferry_jargs(&na, 10, NULL, "migrate", "r2", "--to", "b", "--detach",
			"--max-bandwidth", "64M", NULL);
	snprintf(id, sizeof(id), "%ld", jint(j, "id"));
	t0 = now_s();
	while (now_s() - t0 < 20) {
		m = jfind(ferry_json(&nb, "migrations"), "migrations", "vm",
			  "r2");
		if (jis(m, "state", "precopy") &&
		    jint(m, "pages_pulled") > 4096)
			break;
		sleep_ms(5);
	}
	assert_jstr(m, "state", "precopy");
	j = retarget(id, "c");
	node_wait_stopped(&nb, 20);
	/* the source ends it and releases b, which drains when it wakes */
	j = ferry_jargs(&na, 10, NULL, "cancel", id, NULL);
	assert_jstr(j, "state", "cancelled");
	kill(nb.pid, SIGCONT);
	itest_wait_idle(&nb, "r2");
	/* b reads from a again */
	itest_migrate_verified(&na, "r2", "b", 256 << 8);
	wait_vm_exit(vm_pid);
	itest_no_crash(&na);
	itest_no_crash(&nb);
	itest_no_crash(&nc);
}

/* the relay's line, not its state move's */
#define RELEASED "from a): released: the new destination holds every page"

/*
 * Relay n was released: its migration says so, its log once more than the
 * logged times before (its log goes on from the earlier tests), and it
 * keeps nothing.
 */
static void released(struct node *n, int logged)
{
	json_t *j = wait_mig(n, "released");

	assert_jpart(j, "reason", "released");
	assert_null(jfind(ferry_json(n, "vms"), "vms", "name", "r1"));
	assert_int_equal(child_of(n->pid, "ferry-vm"), 0);
	assert_int_equal(jint(ferry_json(n, "status"), "migrations"), 0);
	assert_int_equal(count(slurp(n->log), RELEASED), logged + 1);
}

static void test_retarget2(void **state)
{
	char id[32];
	json_t *j;
	long sum = 0;
	int logged_b, logged_c;

	(void)state;
	/* c stops at its first round after pulling all it was told */
	four_nodes("dst:round:1:stop");
	logged_b = count(slurp(nb.log), RELEASED);
	logged_c = count(slurp(nc.log), RELEASED);
	migrate_to_b(id, sizeof(id), false, 256, true);
	j = retarget(id, "c");
	node_wait_stopped(&nc, 30);
	j = retarget(id, "d");
	assert_jstr(j, "relay", "c");
	kill(nc.pid, SIGCONT);
	j = wait_end(id);
	assert_jstr(j, "state", "completed");
	assert_jstr(j, "peer", "d");
	assert_int_equal(jint(j, "verified_pages"), 64 << 8);
	/* d pulled from the source and both relays, every byte once */
	for (const char *h = "abc"; *h; h++) {
		char name[2] = { *h, 0 };
		json_t *hj = jfind(j, "holders", "node", name);

		if (!hj || jint(hj, "bytes") < 0 ||
		    (*h != 'a' && jint(hj, "bytes") == 0))
			fail_msg("holders (%s): %s", name, jtext(j));
		sum += jint(hj, "bytes");
	}
	if (sum != jint(j, "bytes"))
		fail_msg("holders: %s", jtext(j));
	runs_on(&nd);
	assert_non_null(strstr(slurp(nd.log), "verify: all 16384 pages match"));
	released(&nb, logged_b);
	released(&nc, logged_c);
	assert_non_null(strstr(slurp(na.log), "relay b released"));
	assert_non_null(strstr(slurp(na.log), "relay c released"));
	itest_no_crash(&na);
	itest_no_crash(&nb);
	itest_no_crash(&nc);
	itest_no_crash(&nd);
}

/* How many lines "relay=name" a's record of migration id has. */
static int recorded_relay(const char *id, const char *name)
{
	char path[400], want[80], *text, *line, *save = NULL;
	int k = 0;

	snprintf(path, sizeof(path), "%s/state/migrations/%s.src", na.dir, id);
	snprintf(want, sizeof(want), "relay=%s", name);
	text = strdup(slurp(path));
	assert_non_null(text);
	assert_non_null(strstr(text, "id="));
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		k += !strcmp(line, want);
	free(text);
	return k;
}

static void test_src_restart(void **state)
{
	static char extra[600];
	struct node *const all[] = { &na, &nb, &nc };
	const char *const fault[] = { "src:after:committed:stop", NULL, NULL };
	char id[32];
	json_t *j;
	double t0;
	int told;

	(void)state;
	snprintf(extra, sizeof(extra),
		 "ferry_vm = %s\nping_interval_ms = 200\n"
		 "peer_timeout_ms = 3000\nmigration_timeout_ms = 10000\n",
		 ferry_vm_bin);
	itest_nodes(all, fault, 3, extra);
	migrate_to_b(id, sizeof(id), false, 256, false);
	j = retarget(id, "c");
	/* committed to c, recorded; b not released yet */
	node_wait_stopped(&na, 60);
	assert_int_equal(recorded_relay(id, "b"), 1);
	/* a.log goes on from the earlier tests */
	told = count(slurp(na.log), "relay b released");
	assert_int_equal(kill(na.pid, SIGKILL), 0);
	assert_true(node_wait(&na, 5) >= 0);
	node_start(&na);
	node_ready(&na);
	j = wait_end(id);
	assert_jstr(j, "state", "completed");
	assert_jstr(j, "peer", "c");
	runs_on(&nc);
	t0 = now_s();
	while (recorded_relay(id, "b") && now_s() - t0 < 10)
		sleep_ms(50);
	assert_int_equal(recorded_relay(id, "b"), 0);
	assert_int_equal(count(slurp(na.log), "relay b released"), told + 1);
	/* b's relay ended (it may have seen a go first): nothing kept */
	j = jfind(ferry_json(&nb, "migrations"), "migrations", "vm", "r1");
	if (!jis(j, "state", "released") && !jis(j, "state", "failed"))
		fail_msg("b: %s", jtext(j));
	assert_null(jfind(ferry_json(&nb, "vms"), "vms", "name", "r1"));
	assert_int_equal(child_of(nb.pid, "ferry-vm"), 0);
	itest_no_crash(&nb);
	itest_no_crash(&nc);
}

/* ferry retarget ID --to peer on a fails, saying part. */
static void refused(const char *id, const char *peer, const char *part)
{
	char out[OUT_MAX], err[OUT_MAX];
	int rc;

	rc = ferry_args(&na, 10, out, err, "retarget", id, "--to", peer, NULL);
	if (rc == 0 || !strstr(err, part))
		fail_msg("retarget %s --to %s: exit %d, stdout '%s', stderr "
			 "'%s' (want '%s')",
			 id, peer, rc, out, err, part);
}

static void test_refused(void **state)
{
	char id[32];
	json_t *j;

	(void)state;
	three_nodes("dst:after:postcopy:stop", NULL);
	migrate_to_b(id, sizeof(id), true, 256, false);
	refused(id, "zz", "no peer called 'zz'");
	refused(id, "b", "already goes to 'b'");
	kill(nc.pid, SIGKILL);
	assert_true(wait_state(&na, "unreachable", 1, 10) >= 0);
	refused(id, "c", "unreachable");
	/* post-copy: b stops once the VM runs there */
	j = ferry_jargs(&na, 10, NULL, "migrate-postcopy", id, NULL);
	node_wait_stopped(&nb, 20);
	refused(id, "c", "pre-copy only");
	kill(nb.pid, SIGCONT);
	j = wait_end(id);
	assert_jstr(j, "state", "completed");
	assert_jstr(j, "peer", "b");
	runs_on(&nb);
	itest_no_crash(&na);
	itest_no_crash(&nb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_retarget, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_faults, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_relay_dies, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_released_draining, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_refused, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_retarget2, NULL,
						rt_teardown),
		cmocka_unit_test_setup_teardown(test_src_restart, NULL,
						rt_teardown),
	};

	if (itest_env(&ferry_vm_bin))
		return 1;
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), setup);
}
