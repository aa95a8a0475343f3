// SPDX-License-Identifier: MIT
/*
 * A hostile peer (issue 14): a test client that holds a configured key
 * pair, speaks CURVE and msgpack like a peer, and attacks one real
 * ferryd as a source would: names that are paths, a second STATE, a flood
 * of DIRTY_SETs while the destination is stalled, a flood of
 * MIGRATE_PREPAREs and of ERRORs; plus local attacks on vm_dir and
 * state_dir. Each case asserts the bound that holds now: the file is
 * still there, RSS stays under a limit, `ferry status` answers within
 * 1 s, the migration failed with the stated reason.
 *
 * The test binary is also the fake ferry-vm of the stalled case: started
 * as `test_hostile --incoming --adapter SOCK ...` it never listens, and the
 * destination's puller waits for it.
 *
 * Hostile local files and requests are in test_hostile_local.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#include <zmq.h>

#include "protocol/protocol.h"

#include "itest.h"

#include "hostile.h"

/* ferryd's MIG_PREPARE_BURST: MIGRATE_PREPAREs a peer may send at once */
#define PREPARE_BURST 8

static const char *vm_bin;
static char self_bin[256];

/* ---- the fake ferry-vm ---- */

static __attribute__((noreturn)) void fake_vm(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	/* ferryd started it in a session of its own: go when ferryd goes */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(300);
	/*
	 * No socket: the puller retries its attach for 15 s (ferryd's
	 * ATTACH_TIMEOUT_NS), long enough for a flood under an emulated CPU.
	 */
	for (;;)
		pause();
}

/* ---- the hostile peer ---- */

struct hostile {
	char pub[41], sec[41];
	int port; /* our ROUTER, where the victim's DEALER connects */
	void *ctx, *dealer, *router;
	uint8_t fab[PROTO_ADDR_MAX]; /* the victim's fabric address */
	uint32_t fab_len;
	struct proto_msg *kept; /* what h_pump() read for h_wait() */
};

static void h_keys(struct hostile *h)
{
	memset(h, 0, sizeof(*h));
	assert_int_equal(zmq_curve_keypair(h->pub, h->sec), 0);
	h->port = free_port();
}

static void h_send(struct hostile *h, const struct proto_msg *m)
{
	size_t len;
	void *buf;

	assert_int_equal(proto_encode(m, &buf, &len), 0);
	assert_true(zmq_send(h->dealer, buf, len, 0) >= 0);
	free(buf);
}

/* Answer what the victim's DEALER asks our ROUTER (HELLO, PING). */
static struct proto_msg *h_router_msg(struct hostile *h)
{
	char rid[256], buf[65536];
	struct proto_msg *m, out = { 0 };
	int nr, n;
	size_t len;
	void *enc;

	nr = zmq_recv(h->router, rid, sizeof(rid), ZMQ_DONTWAIT);
	if (nr < 0)
		return NULL;
	n = zmq_recv(h->router, buf, sizeof(buf), 0);
	assert_true(n > 0 && n <= (int)sizeof(buf));
	assert_int_equal(proto_decode(buf, n, &m, NULL, 0), 0);
	if (m->type == PROTO_HELLO) {
		out.type = PROTO_HELLO;
		out.hello.version = PROTO_VERSION;
		strcpy(out.hello.node, "hostile");
		memcpy(out.hello.pubkey, h->pub, 41);
	} else if (m->type == PROTO_PING) {
		out = *m;
		out.type = PROTO_PONG;
	} else {
		return m;
	}
	proto_msg_free(m);
	assert_int_equal(proto_encode(&out, &enc, &len), 0);
	zmq_send(h->router, rid, nr, ZMQ_SNDMORE);
	zmq_send(h->router, enc, len, 0);
	free(enc);
	return NULL;
}

/*
 * The next message of type t (any type: -1) from the victim, on either
 * socket, within secs; NULL after that. HELLOs and PINGs are answered.
 */
static struct proto_msg *h_wait(struct hostile *h, int t, double secs)
{
	double end = now_s() + secs;
	char buf[65536];
	struct proto_msg *m;

	while (now_s() < end) {
		m = h->kept;
		h->kept = NULL;
		if (!m) {
			int n = zmq_recv(h->dealer, buf, sizeof(buf),
					 ZMQ_DONTWAIT);

			if (n > 0)
				assert_int_equal(
					proto_decode(buf, n, &m, NULL, 0), 0);
			else
				m = h_router_msg(h);
		}
		if (m && (t < 0 || (int)m->type == t))
			return m;
		if (m)
			proto_msg_free(m);
		else
			sleep_ms(2);
	}
	return NULL;
}

/*
 * Answer the victim's HELLOs and PINGs while we flood it (an emulated CPU
 * takes seconds), keeping the first other message for h_wait().
 */
static void h_pump(struct hostile *h)
{
	struct proto_msg *m;

	while ((m = h_router_msg(h))) {
		if (!h->kept)
			h->kept = m;
		else
			proto_msg_free(m);
	}
}

/* d shows its one peer reachable. */
static bool reachable(struct node *d)
{
	int rc;
	json_t *j = ferry_jargs(d, 10, &rc, "peers", NULL);

	return !rc && jcount(j, "peers", "state", "reachable") > 0;
}

/* Connect to d as its configured peer "hostile", HELLO both ways. */
static void h_open(struct hostile *h, struct node *d)
{
	struct proto_msg hello = { .type = PROTO_HELLO }, *r;
	int zero = 0, srv = 1;
	char ep[64];

	h->ctx = zmq_ctx_new();
	h->router = zmq_socket(h->ctx, ZMQ_ROUTER);
	zmq_setsockopt(h->router, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(h->router, ZMQ_CURVE_SERVER, &srv, sizeof(srv));
	zmq_setsockopt(h->router, ZMQ_CURVE_SECRETKEY, h->sec, 40);
	snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", h->port);
	assert_int_equal(zmq_bind(h->router, ep), 0);
	h->dealer = zmq_socket(h->ctx, ZMQ_DEALER);
	zmq_setsockopt(h->dealer, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(h->dealer, ZMQ_CURVE_SERVERKEY, d->key, 40);
	zmq_setsockopt(h->dealer, ZMQ_CURVE_PUBLICKEY, h->pub, 40);
	zmq_setsockopt(h->dealer, ZMQ_CURVE_SECRETKEY, h->sec, 40);
	snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", d->port);
	assert_int_equal(zmq_connect(h->dealer, ep), 0);
	hello.hello.version = PROTO_VERSION;
	strcpy(hello.hello.node, "hostile");
	memcpy(hello.hello.pubkey, h->pub, 41);
	h_send(h, &hello);
	r = h_wait(h, PROTO_HELLO, 30);
	assert_non_null(r);
	h->fab_len = r->hello.addr_len;
	memcpy(h->fab, r->hello.addr, r->hello.addr_len);
	proto_msg_free(r);
	/* its DEALER reaches our ROUTER too: it can answer us */
	for (double t0 = now_s(); !reachable(d);) {
		r = h_wait(h, -1, 0.2);
		proto_msg_free(r);
		if (now_s() - t0 > 30)
			fail_msg("%s never saw us reachable", d->name);
	}
}

static void h_close(struct hostile *h)
{
	zmq_close(h->dealer);
	zmq_close(h->router);
	zmq_ctx_term(h->ctx);
}

static const char *prep_accel; /* NULL: itest_accel() */

static void h_prepare(struct hostile *h, uint64_t mig, const char *vm)
{
	struct proto_region_desc r = { .id = 0, .pages = 4096 }; /* 16 MiB */
	struct proto_msg m = { .type = PROTO_MIGRATE_PREPARE };
	size_t len;
	void *buf;

	m.prepare.mig = mig;
	snprintf(m.prepare.vm, sizeof(m.prepare.vm), "%s", vm);
	strcpy(m.prepare.mode, "precopy");
	m.prepare.page_size = 4096;
	m.prepare.vcpus = 1;
	m.prepare.lineage = 1;
	snprintf(m.prepare.accel, sizeof(m.prepare.accel), "%s",
		 prep_accel ? prep_accel : itest_accel());
	m.prepare.nregions = 1;
	m.prepare.regions = &r;
	if (proto_name_valid(vm)) {
		h_send(h, &m);
		return;
	}
	/* our encoder refuses such a name: put it in by hand */
	strcpy(m.prepare.vm, "X");
	assert_int_equal(proto_encode(&m, &buf, &len), 0);
	{
		size_t vl = strlen(vm), at, hl = vl < 32 ? 1 : 2;
		char *b = buf, *out = malloc(len + vl + 4);

		/* the only "\xa1X" is the value of "vm" */
		for (at = 0; at + 1 < len; at++)
			if (b[at] == '\xa1' && b[at + 1] == 'X')
				break;
		assert_true(at + 1 < len && vl < 256);
		memcpy(out, b, at);
		if (hl == 1) {
			out[at] = (char)(0xa0 | vl);
		} else {
			out[at] = (char)0xd9;
			out[at + 1] = (char)vl;
		}
		memcpy(out + at + hl, vm, vl);
		memcpy(out + at + hl + vl, b + at + 2, len - at - 2);
		assert_true(zmq_send(h->dealer, out, len - 2 + hl + vl, 0) >=
			    0);
		free(out);
	}
	free(buf);
}

static const char *victim_extra; /* more [node] lines for victim() */

/* The victim, with the hostile peer configured; ferry_vm: its binary. */
static void victim(struct node *d, struct hostile *h, const char *ferry_vm,
		   const char *name)
{
	static char extra[512];

	snprintf(extra, sizeof(extra), "ferry_vm = %s\n%s", ferry_vm,
		 victim_extra ? victim_extra : "");
	itest_node_extra = extra;
	node_init(d, name);
	itest_node_extra = NULL;
	h_keys(h);
	node_add_peer(d, "hostile", h->port, h->pub);
	node_start(d);
	node_ready(d);
	base_s = status_base(d);
	h_open(h, d);
}

/* The ABORT the victim sends about mig, its reason containing why. */
static void expect_abort(struct hostile *h, uint64_t mig, const char *why)
{
	struct proto_msg *a = h_wait(h, PROTO_ABORT, 60);

	assert_non_null(a);
	assert_int_equal(a->abort.mig, mig);
	if (!strstr(a->abort.reason, why))
		fail_msg("ABORT reason \"%s\", want \"%s\"", a->abort.reason,
			 why);
	proto_msg_free(a);
}

/* ---- finding 1: names that are paths ---- */

/*
 * A user VM's guest code runs natively in the destination's ferry-vm: a
 * peer not trusted with that (no accept_user_vms) is refused up front, and
 * no ferry-vm is started.
 */
static void test_user_vm_refused(void **state)
{
	struct proto_msg *e;
	struct hostile h;
	struct node d;

	(void)state;
	itest_accept_user = false;
	victim(&d, &h, "/bin/false", "v0");
	itest_accept_user = true;
	prep_accel = "user";
	h_prepare(&h, 1, "g1");
	prep_accel = NULL;
	e = h_wait(&h, PROTO_ERROR, 10);
	assert_non_null(e);
	assert_int_equal(e->error.code, EPERM);
	assert_non_null(strstr(e->error.text, "accept_user_vms"));
	proto_msg_free(e);
	assert_null(strstr(slurp(d.log), "started incoming VM"));
	h_close(&h);
	itest_no_crash(&d);
}

static void test_vm_name_path(void **state)
{
	char victim_file[300], vms_file[400], rel[400];
	struct proto_msg *e;
	struct hostile h;
	struct node d;

	(void)state;
	/* before the fix: ferry-vm failed, and ferryd unlinked NAME.sock */
	victim(&d, &h, "/bin/false", "v1");
	snprintf(victim_file, sizeof(victim_file), "%s/x.sock", tmpdir);
	close(open(victim_file, O_CREAT | O_WRONLY, 0600));
	snprintf(vms_file, sizeof(vms_file), "%s/state/vms/g1.sock", d.dir);
	close(open(vms_file, O_CREAT | O_WRONLY, 0600));
	snprintf(rel, sizeof(rel), "../../../../../../../..%s/x", tmpdir);
	h_prepare(&h, 1, rel);
	h_prepare(&h, 2, "../vms/g1");
	for (int i = 0; i < 2; i++) {
		e = h_wait(&h, PROTO_ERROR, 10);
		assert_non_null(e);
		assert_int_equal(e->error.code, EBADMSG);
		assert_non_null(strstr(e->error.text, "MIGRATE_PREPARE.vm"));
		proto_msg_free(e);
	}
	sleep_ms(500); /* what a spawned ferry-vm would have had */
	assert_int_equal(access(victim_file, F_OK), 0);
	assert_int_equal(access(vms_file, F_OK), 0);
	status_fast(&d);
	h_close(&h);
	itest_no_crash(&d);
}

/* ---- finding 2: STATE accepted once ---- */

static void test_state_twice(void **state)
{
	struct proto_msg m = { .type = PROTO_HOLDER_MAP }, *r;
	struct proto_holder_region reg = { 0 };
	static uint8_t blob[1 << 20];
	json_t *j;
	struct hostile h;
	struct node d;

	(void)state;
	victim(&d, &h, vm_bin, "v2");
	h_prepare(&h, 7, "h1");
	r = h_wait(&h, PROTO_HOLDER_MAP, 60); /* its "yes" */
	assert_non_null(r);
	proto_msg_free(r);
	/* our "holder": its own fabric address, a made-up key */
	m.holder_map.mig = 7;
	strcpy(m.holder_map.node, "hostile");
	m.holder_map.addr_len = h.fab_len;
	memcpy(m.holder_map.addr, h.fab, h.fab_len);
	m.holder_map.page_size = 4096;
	m.holder_map.nregions = 1;
	m.holder_map.regions = &reg;
	reg.key = 0x1234;
	reg.base = 0x10000;
	reg.len = 16 * MiB;
	h_send(&h, &m);
	memset(&m, 0, sizeof(m));
	m.type = PROTO_STATE;
	m.state.mig = 7;
	m.state.blob = blob;
	m.state.len = sizeof(blob);
	h_send(&h, &m);
	h_send(&h, &m);
	expect_abort(&h, 7, "a second STATE");
	j = ferry_json(&d, "migrations");
	assert_jpart(jfind(j, "migrations", "vm", "h1"), "reason",
		     "a second STATE");
	status_fast(&d);
	h_close(&h);
	itest_no_crash(&d);
}

/* ---- finding 3: the inbox of a stalled destination is bounded ---- */

/* Add opt to ASAN_OPTIONS (meson sets some) for the ferryd we start. */
static void asan_opts_add(const char *opt)
{
	const char *old = getenv("ASAN_OPTIONS");
	char buf[512];

	snprintf(buf, sizeof(buf), "%s%s%s", old ? old : "", old ? ":" : "",
		 opt);
	setenv("ASAN_OPTIONS", buf, 1);
}

static void test_inbox_flood(void **state)
{
	struct proto_msg m = { .type = PROTO_DIRTY_SET };
	enum { RUNS = 400000, MSGS = 100 };
	long rss0, rss1, peak = 0;
	size_t len;
	void *buf;
	struct fy_run *runs;
	struct hostile h;
	struct node d;

	(void)state;
	/*
	 * Under AddressSanitizer freed memory waits in a quarantine (256 MiB)
	 * before it is used again: keep it small, or RSS measures that.
	 */
	asan_opts_add("quarantine_size_mb=16");
	/*
	 * Decoding one of these messages takes seconds under an emulated CPU,
	 * and our PONGs wait behind it: the inbox is what is tested here.
	 */
	victim_extra = "peer_timeout_ms = 30000\n";
	/* its ferry-vm never listens: the puller waits in its attach */
	victim(&d, &h, self_bin, "v3");
	victim_extra = NULL;
	runs = calloc(RUNS, sizeof(*runs));
	assert_non_null(runs);
	for (size_t i = 0; i < RUNS; i++)
		runs[i] = (struct fy_run){ .start = 2 * i, .len = 1 };
	m.dirty.mig = 9;
	m.dirty.runs = runs;
	m.dirty.nruns = RUNS;
	assert_int_equal(proto_encode(&m, &buf, &len), 0);
	rss0 = rss_kb(d.pid);
	h_prepare(&h, 9, "stalled");
	/* 100 x 6.4 MB of runs: 640 MB if all were kept */
	for (int i = 0; i < MSGS; i++) {
		assert_true(zmq_send(h.dealer, buf, len, 0) >= 0);
		h_pump(&h);
		if (i % 10 == 9) {
			sleep_ms(100);
			peak = MAX(peak, rss_kb(d.pid));
			status_fast(&d);
		}
	}
	expect_abort(&h, 9, "faster than they were taken");
	rss1 = rss_kb(d.pid);
	print_message("ferryd RSS %ld MB before, peak %ld MB, %ld MB after\n",
		      rss0 >> 10, MAX(peak, rss1) >> 10, rss1 >> 10);
	/* 64 MiB of inbox, plus zmq's buffers and one decoded message */
	assert_true(MAX(peak, rss1) - rss0 < 200 * 1024);
	free(runs);
	free(buf);
	status_fast(&d);
	h_close(&h);
	itest_no_crash(&d);
}

/* ---- MIGRATE_PREPAREs are limited in rate ---- */

static void test_prepare_flood(void **state)
{
	int again = 0, other = 0;
	struct proto_msg *e;
	struct hostile h;
	struct node d;
	char name[16];

	(void)state;
	victim(&d, &h, "/bin/false", "v4");
	for (int i = 0; i < 30; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		h_prepare(&h, 100 + i, name);
	}
	while ((e = h_wait(&h, PROTO_ERROR, 3))) {
		if (e->error.code == EAGAIN)
			again++;
		else
			other++;
		proto_msg_free(e);
	}
	print_message("%d of 30 refused for their rate, %d otherwise\n", again,
		      other);
	assert_true(again >= 30 - PREPARE_BURST - 2);
	status_fast(&d);
	h_close(&h);
	itest_no_crash(&d);
}

/* ---- findings 6: a peer's ERRORs and strangers' keys do not flood the log */

static void test_log_flood(void **state)
{
	struct proto_msg m = { .type = PROTO_ERROR };
	struct hostile h;
	struct node d;
	long refused;
	int lines;

	(void)state;
	victim(&d, &h, "/bin/false", "v5");
	m.error.code = EIO;
	strcpy(m.error.text, "flood");
	for (int i = 0; i < 20000; i++)
		h_send(&h, &m);
	/* 200 connections with keys nobody configured */
	for (int i = 0; i < 200; i++) {
		char pub[41], sec[41], ep[64];
		void *s = zmq_socket(h.ctx, ZMQ_DEALER);
		int zero = 0;

		assert_int_equal(zmq_curve_keypair(pub, sec), 0);
		zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
		zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, d.key, 40);
		zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
		zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
		snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", d.port);
		zmq_connect(s, ep);
		zmq_send(s, "x", 1, ZMQ_DONTWAIT);
		sleep_ms(20);
		zmq_close(s);
	}
	sleep_ms(2000);
	status_fast(&d);
	/* more of them reached the ZAP handler than may be logged */
	refused = jint(ferry_json(&d, "status"), "refused");
	lines = count(slurp(d.log), "ERROR 5: flood");
	print_message("%d log lines for 20000 ERRORs, %d for %ld refused "
		      "unknown keys\n",
		      lines, count(slurp(d.log), "not in the peer list"),
		      refused);
	assert_true(refused > 10);
	assert_true(lines >= 1 && lines <= 10);
	assert_non_null(strstr(slurp(d.log), "more like it are suppressed"));
	assert_true(count(slurp(d.log), "not in the peer list") <= 10);
	h_close(&h);
	itest_no_crash(&d);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_user_vm_refused, teardown),
		cmocka_unit_test_teardown(test_vm_name_path, teardown),
		cmocka_unit_test_teardown(test_state_twice, teardown),
		cmocka_unit_test_teardown(test_inbox_flood, teardown),
		cmocka_unit_test_teardown(test_prepare_flood, teardown),
		cmocka_unit_test_teardown(test_log_flood, teardown),
	};
	ssize_t n;

	if (argc > 1 && !strcmp(argv[1], "--incoming"))
		fake_vm(argc, argv);
	n = readlink("/proc/self/exe", self_bin, sizeof(self_bin) - 1);
	if (n <= 0)
		return 1;
	self_bin[n] = '\0';
	if (itest_env(&vm_bin) || itest_need_root("SO_PEERCRED as nobody"))
		return 1;
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), setup);
}
