// SPDX-License-Identifier: MIT
/*
 * Integration: real ferryd processes on loopback, driven with the real
 * ferry CLI. The binaries come from the environment (FERRYD, FERRY), set by
 * meson. Ports are found by binding port 0; state lives in a temp dir.
 *
 * Every child is started with PR_SET_PDEATHSIG and recorded, and the
 * teardown (which cmocka runs after a failure too) and an atexit handler
 * SIGKILL whatever is left, so a failing run leaves no process behind.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
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

#include <msgpack.h>
#include <zmq.h>

#include "protocol/protocol.h"

#include "itest.h"

static void test_not_running(void **state)
{
	char out[OUT_MAX], err[OUT_MAX], sock[200], want[300];
	const char *argv[] = { ferry_bin, "-s", sock, "status", NULL };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	double t0;
	int fd;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/none.sock", tmpdir);
	t0 = now_s();
	assert_int_equal(run(out, err, argv), 1);
	assert_true(now_s() - t0 < 3);
	snprintf(want, sizeof(want),
		 "ferry: ferryd is not running (no socket at %s)\n", sock);
	assert_string_equal(err, want);
	assert_string_equal(out, "");

	/* a socket file nobody listens on: stale, still a clear answer */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(strlen(sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(run(out, err, argv), 1);
	assert_non_null(strstr(err, "ferryd is not running (stale socket"));

	/*
	 * A listener that never answers (connections wait in its backlog):
	 * ferry gives up after about 2 s instead of hanging.
	 */
	assert_int_equal(unlink(sock), 0);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	t0 = now_s();
	assert_int_equal(run(out, err, argv), 1);
	assert_true(now_s() - t0 < 4);
	assert_non_null(strstr(err, "ferryd is not responding"));
	close(fd);

	/* usage errors are 2 */
	const char *bad[] = { ferry_bin, "frobnicate", NULL };
	assert_int_equal(run(out, err, bad), 2);
	const char *help[] = { ferry_bin, "--help", NULL };
	assert_int_equal(run(out, err, help), 0);
	assert_non_null(strstr(out, "usage: ferry"));
}

static void test_config_error(void **state)
{
	char out[OUT_MAX], err[OUT_MAX], path[200], want[300];
	const char *argv[] = { ferryd_bin, "--config", path, NULL };
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/bad.conf", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "[node]\nname = x\n\n[peer b]\naddress = "
		   "tcp://127.0.0.1:1\n");
	fclose(f);
	assert_int_equal(run(out, err, argv), 2);
	snprintf(want, sizeof(want),
		 "ferryd: %s:4: peer 'b' has no public_key\n", path);
	assert_string_equal(err, want);

	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	assert_int_equal(run(out, err, argv), 2);
	assert_non_null(strstr(err, "missing.conf: cannot open: No such file"));
}

/*
 * Three peers find each other; a fourth whose key nobody lists is refused;
 * a peer killed with SIGKILL turns unreachable; SIGTERM exits 0 and
 * removes the control socket.
 */
static void test_mesh(void **state)
{
	char out[OUT_MAX], err[OUT_MAX];
	struct node n[4];
	json_t *j;
	struct stat st;
	double t, t0 = now_s();
	int status;

	(void)state;
	node_init(&n[0], "a");
	node_init(&n[1], "b");
	node_init(&n[2], "c");
	node_init(&n[3], "intruder");
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				node_add_peer(&n[i], n[j].name, n[j].port,
					      n[j].key);
	/* the intruder lists the others; none of them lists it */
	for (int j = 0; j < 3; j++)
		node_add_peer(&n[3], n[j].name, n[j].port, n[j].key);
	for (int i = 0; i < 3; i++)
		node_start(&n[i]);
	for (int i = 0; i < 3; i++)
		node_ready(&n[i]);

	for (int i = 0; i < 3; i++) {
		t = wait_state(&n[i], "reachable", 2, 15);
		assert_true(t >= 0);
	}
	print_message("mesh of 3 reachable after %.2f s\n", now_s() - t0);
	assert_int_equal(ferry(&n[0], false, "status", out, err), 0);
	assert_non_null(strstr(out, "peers:       2 reachable / 2 configured"));
	assert_non_null(strstr(out, n[0].key));
	assert_int_equal(ferry(&n[0], false, "peers", out, err), 0);
	assert_int_equal(count(out, "reachable"), 2);

	/* the intruder: refused, logged with its key, never reachable */
	node_start(&n[3]);
	node_ready(&n[3]);
	t0 = now_s();
	for (int i = 0; i < 3; i++) {
		while (now_s() - t0 < 10 && !strstr(slurp(n[i].log), n[3].key))
			sleep_ms(100);
		assert_non_null(strstr(slurp(n[i].log), "refused connection"));
		assert_non_null(strstr(slurp(n[i].log), n[3].key));
		j = ferry_json(&n[i], "status");
		assert_true(jint(j, "refused") >= 1);
		/* still only the two real peers */
		assert_int_equal(jint(j, "peers_reachable"), 2);
	}
	sleep_ms(1000); /* give it every chance to (wrongly) get through */
	j = ferry_json(&n[3], "peers");
	assert_int_equal(jcount(j, "peers", "state", "reachable"), 0);
	assert_int_equal(jcount(j, "peers", "state", "connecting"), 3);
	/* and it can tell why */
	for (int i = 0; i < 3; i++)
		assert_jpart(json_array_get(jget(j, "peers"), i), "problem",
			     "refused our key");
	assert_non_null(strstr(slurp(n[3].log), "refuses our key"));
	assert_null(strstr(slurp(n[3].log), "reachable (rtt"));

	/* SIGKILL c: a and b see it unreachable within 3 s */
	kill(n[2].pid, SIGKILL);
	status = node_wait(&n[2], 5);
	assert_true(WIFSIGNALED(status));
	t0 = now_s();
	assert_true(wait_state(&n[0], "unreachable", 1, 5) >= 0);
	assert_true(wait_state(&n[1], "unreachable", 1, 5) >= 0);
	t = now_s() - t0;
	print_message("SIGKILLed peer unreachable after %.2f s\n", t);
	assert_true(t <= 3.0);
	j = ferry_json(&n[0], "peers");
	assert_int_equal(jcount(j, "peers", "state", "reachable"), 1);

	/* SIGTERM: exit 0, socket gone, logged */
	assert_int_equal(stat(n[0].sock, &st), 0);
	kill(n[0].pid, SIGTERM);
	status = node_wait(&n[0], 5);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(stat(n[0].sock, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_non_null(strstr(slurp(n[0].log), "shutting down"));
	assert_int_equal(ferry(&n[0], false, "status", out, err), 1);
	assert_non_null(strstr(err, "ferryd is not running"));
	kill_children();
}

/* Send raw bytes from our DEALER; wait up to 2 s for one reply. */
static int exchange(void *dealer, const void *buf, size_t len, void *reply,
		    size_t cap)
{
	int n;

	assert_true(zmq_send(dealer, buf, len, 0) >= 0);
	n = zmq_recv(dealer, reply, cap, 0);
	return n;
}

static size_t pack_hello(char *buf, size_t cap, unsigned version,
			 const char *pub)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n;

	/* hand-made: the encoder refuses any version but its own */
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 6);
	msgpack_pack_str_with_body(&pk, "t", 1);
	msgpack_pack_uint32(&pk, PROTO_HELLO);
	msgpack_pack_str_with_body(&pk, "v", 1);
	msgpack_pack_uint32(&pk, version);
	msgpack_pack_str_with_body(&pk, "id", 2);
	msgpack_pack_str_with_body(&pk, "fake", 4);
	msgpack_pack_str_with_body(&pk, "pk", 2);
	msgpack_pack_str_with_body(&pk, pub, 40);
	msgpack_pack_str_with_body(&pk, "pv", 2);
	msgpack_pack_str_with_body(&pk, "", 0);
	msgpack_pack_str_with_body(&pk, "a", 1);
	msgpack_pack_bin_with_body(&pk, "", 0);
	n = sb.size;
	assert_true(n <= cap);
	memcpy(buf, sb.data, n);
	msgpack_sbuffer_destroy(&sb);
	return n;
}

/* exchange(), then the reply decoded; the caller frees it. */
static struct proto_msg *ask(void *dealer, const void *buf, size_t len)
{
	char reply[4096];
	struct proto_msg *m;
	int n;

	n = exchange(dealer, buf, len, reply, sizeof(reply));
	assert_true(n > 0);
	assert_int_equal(proto_decode(reply, n, &m, NULL, 0), 0);
	return m;
}

/* ask(), and the reply must be ERROR(code). */
static void expect_error(void *dealer, const void *buf, size_t len, int code)
{
	struct proto_msg *m = ask(dealer, buf, len);

	assert_int_equal(m->type, PROTO_ERROR);
	assert_int_equal(m->error.code, code);
	proto_msg_free(m);
}

/* The control socket: garbage gets an error, odd envelopes nothing. */
static void ctl_garbage(void *ctx, struct node *d)
{
	char out[OUT_MAX], err[OUT_MAX], ep[320], reply[4096];
	int n, tmo = 3000, zero = 0;
	void *req = zmq_socket(ctx, ZMQ_REQ);
	void *raw = zmq_socket(ctx, ZMQ_DEALER);

	snprintf(ep, sizeof(ep), "ipc://%s", d->sock);
	zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(req, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof(zero));
	assert_int_equal(zmq_connect(raw, ep), 0);
	assert_int_equal(zmq_send(raw, "a", 1, ZMQ_SNDMORE), 1);
	assert_int_equal(zmq_send(raw, "b", 1, ZMQ_SNDMORE), 1);
	assert_int_equal(zmq_send(raw, "c", 1, ZMQ_SNDMORE), 1);
	assert_int_equal(zmq_send(raw, "d", 1, 0), 1);
	assert_int_equal(zmq_connect(req, ep), 0);
	assert_int_equal(zmq_send(req, "\xc1", 1, 0), 1);
	n = zmq_recv(req, reply, sizeof(reply) - 1, 0);
	assert_true(n > 0);
	reply[n] = '\0';
	/* the strict decoder's reason (protocol/proto_ctl.c) */
	assert_non_null(strstr(reply, "request: expected a map, got the "
				      "invalid byte 0xc1"));
	zmq_close(raw);
	zmq_close(req);
	assert_int_equal(ferry(d, false, "status", out, err), 0);
	assert_non_null(strstr(out, "node:        d"));
}

/*
 * A hand-driven peer: malformed messages are counted and survived; a HELLO
 * of another version gets ERROR and marks the peer incompatible; a good
 * HELLO and PING get HELLO and PONG.
 */
static void test_bad_peer(void **state)
{
	char pub[41], sec[41], ep[320];
	json_t *j;
	char buf[4096];
	struct proto_msg *m;
	struct node d;
	void *ctx, *dealer;
	int tmo = 3000, zero = 0;
	size_t len, enc_len;
	void *enc;

	(void)state;
	assert_int_equal(zmq_curve_keypair(pub, sec), 0);
	node_init(&d, "d");
	node_add_peer(&d, "fake", free_port(), pub);
	node_start(&d);
	node_ready(&d);
	assert_true(wait_state(&d, "connecting", 1, 10) >= 0);

	ctx = zmq_ctx_new();
	dealer = zmq_socket(ctx, ZMQ_DEALER);
	zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	zmq_setsockopt(dealer, ZMQ_CURVE_SERVERKEY, d.key, 40);
	zmq_setsockopt(dealer, ZMQ_CURVE_PUBLICKEY, pub, 40);
	zmq_setsockopt(dealer, ZMQ_CURVE_SECRETKEY, sec, 40);
	snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", d.port);
	assert_int_equal(zmq_connect(dealer, ep), 0);

	/* garbage, then a valid map of an unknown type: ERROR(EBADMSG) */
	expect_error(dealer, "\xc1\xff garbage", 10, EBADMSG);
	m = ask(dealer, "\x81\xa1t\x63", 4);
	assert_int_equal(m->type, PROTO_ERROR);
	assert_int_equal(m->error.code, EBADMSG);
	assert_non_null(strstr(m->error.text, "unknown message type 99"));
	proto_msg_free(m);
	/* version 99: ERROR(EPROTONOSUPPORT) */
	len = pack_hello(buf, sizeof(buf), 99, pub);
	expect_error(dealer, buf, len, EPROTONOSUPPORT);
	j = ferry_json(&d, "peers");
	assert_int_equal(jcount(j, "peers", "state", "incompatible"), 1);
	assert_int_equal(jint(j, "peers[0].malformed"), 2);
	assert_non_null(strstr(slurp(d.log), "malformed message"));
	assert_non_null(strstr(slurp(d.log), "incompatible"));

	/* PING before HELLO: ERROR(ENOTCONN) */
	struct proto_msg ping = { .type = PROTO_PING,
				  .ping = { .seq = 7, .sent_ns = 1234 } };
	assert_int_equal(proto_encode(&ping, &enc, &enc_len), 0);
	expect_error(dealer, enc, enc_len, ENOTCONN);

	/* a HELLO claiming another key than the connection's: EACCES */
	len = pack_hello(buf, sizeof(buf), PROTO_VERSION, d.key);
	expect_error(dealer, buf, len, EACCES);

	/* a good HELLO: its HELLO back, no longer incompatible */
	len = pack_hello(buf, sizeof(buf), PROTO_VERSION, pub);
	m = ask(dealer, buf, len);
	assert_int_equal(m->type, PROTO_HELLO);
	assert_string_equal(m->hello.node, "d");
	assert_string_equal(m->hello.pubkey, d.key);
	assert_true(m->hello.addr_len > 0);
	proto_msg_free(m);

	/* PING: PONG with seq and timestamp echoed */
	m = ask(dealer, enc, enc_len);
	free(enc);
	assert_int_equal(m->type, PROTO_PONG);
	assert_int_equal(m->ping.seq, 7);
	assert_int_equal(m->ping.sent_ns, 1234);
	proto_msg_free(m);

	j = ferry_json(&d, "peers");
	assert_int_equal(jcount(j, "peers", "state", "incompatible"), 0);
	assert_int_equal(jint(j, "peers[0].malformed"), 2);

	zmq_close(dealer);
	ctl_garbage(ctx, &d);
	zmq_ctx_term(ctx);
	kill(d.pid, SIGTERM);
	assert_int_equal(node_wait(&d, 5), 0);
}

/* A fabric provider that does not exist: a clear error, exit 1. */
static void test_bad_fabric(void **state)
{
	struct node f;
	int status;
	FILE *c;

	(void)state;
	node_init(&f, "f");
	c = fopen(f.conf, "a");
	assert_non_null(c);
	fprintf(c, "[fabric]\nprovider = ofi:no-such-provider\n");
	fclose(c);
	node_start(&f);
	status = node_wait(&f, 10);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_non_null(strstr(slurp(f.log), "cannot open fabric provider "
					     "'ofi:no-such-provider'"));
}

/* A control directory open to others: ferryd refuses to start. */
static void test_loose_control_dir(void **state)
{
	char out[OUT_MAX], err[OUT_MAX], run_dir[320];
	struct node e;
	int status;

	(void)state;
	node_init(&e, "e");
	snprintf(run_dir, sizeof(run_dir), "%s/run", e.dir);
	assert_int_equal(mkdir(run_dir, 0777), 0);
	assert_int_equal(chmod(run_dir, 0777), 0);
	node_start(&e);
	status = node_wait(&e, 10);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_non_null(strstr(slurp(e.log), "looser than 0700"));
	(void)out;
	(void)err;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_not_running, NULL,
						teardown),
		cmocka_unit_test_setup_teardown(test_config_error, NULL,
						teardown),
		cmocka_unit_test_setup_teardown(test_mesh, NULL, teardown),
		cmocka_unit_test_setup_teardown(test_bad_peer, NULL, teardown),
		cmocka_unit_test_setup_teardown(test_loose_control_dir, NULL,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_fabric, NULL,
						teardown),
	};

	if (itest_env(NULL))
		return 1;
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), setup);
}
