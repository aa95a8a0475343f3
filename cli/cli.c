// SPDX-License-Identifier: MIT
/*
 * The `ferry` CLI's side of the control socket: one request, one reply.
 *
 * ferry sends {"cmd": "status"} (or "peers") on a REQ socket connected to
 * ferryd's ipc:// ROUTER; ferryd answers with one msgpack map, or
 * {"error": "..."}. The same map is printed as JSON (--json) or rendered
 * for humans here, so both views always show the same data.
 *
 * Before ZeroMQ is involved the socket file is probed with a plain
 * connect(): ZeroMQ would silently retry a dead socket forever, and the user
 * deserves "ferryd is not running" at once rather than after a timeout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <zmq.h>

#include "common/util.h"
#include "cli/cli.h"
#include "protocol/protocol.h"

/* a peer's "tcp://HOST:PORT", as long as ferryd's configuration takes */
#define ADDR_MAX 256

static int probe(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret = 0;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	if (stat(path, &st)) {
		ret = -errno;
		if (ret == -ENOENT)
			snprintf(err, errlen,
				 "ferryd is not running (no socket at %s)",
				 path);
		else
			snprintf(err, errlen, "cannot reach ferryd at %s: %s",
				 path, strerror(-ret));
		return ret;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s is not a socket", path);
		return -ENOTSOCK;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return ret;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		if (ret == -ECONNREFUSED)
			snprintf(err, errlen,
				 "ferryd is not running (stale socket at %s)",
				 path);
		else
			snprintf(err, errlen, "cannot reach ferryd at %s: %s",
				 path, strerror(-ret));
	}
	close(fd);
	return ret;
}

int cli_call(const char *sock_path, const void *reqbuf, size_t reqlen,
	     int timeout_ms, msgpack_unpacked *reply, void **raw, char *err,
	     size_t errlen)
{
	char endpoint[sizeof("ipc://") +
		      sizeof(((struct sockaddr_un *)0)->sun_path)];
	void *ctx, *req;
	zmq_msg_t msg;
	int ret, zero = 0;

	*raw = NULL;
	ret = probe(sock_path, err, errlen);
	if (ret)
		return ret;
	snprintf(endpoint, sizeof(endpoint), "ipc://%s", sock_path);

	ctx = zmq_ctx_new();
	if (!ctx) {
		ret = -errno;
		snprintf(err, errlen, "zmq_ctx_new: %s", zmq_strerror(errno));
		return ret;
	}
	req = zmq_socket(ctx, ZMQ_REQ);
	if (!req) {
		ret = -errno;
		snprintf(err, errlen, "zmq_socket: %s", zmq_strerror(errno));
		goto err_ctx;
	}
	zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(req, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
	zmq_setsockopt(req, ZMQ_SNDTIMEO, &timeout_ms, sizeof(timeout_ms));
	if (zmq_connect(req, endpoint) ||
	    zmq_send(req, reqbuf, reqlen, 0) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot send to ferryd at %s: %s",
			 sock_path, zmq_strerror(errno));
		goto err_sock;
	}
	zmq_msg_init(&msg);
	if (zmq_msg_recv(&msg, req, 0) < 0) {
		ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (ret == -ETIMEDOUT)
			snprintf(err, errlen,
				 "ferryd is not responding (no answer within "
				 "%d ms at %s)",
				 timeout_ms, sock_path);
		else
			snprintf(err, errlen, "cannot receive from ferryd: %s",
				 zmq_strerror(errno));
		goto err_msg;
	}
	/* the unpacked strings point into the bytes: keep a copy alive */
	*raw = malloc(zmq_msg_size(&msg) + 1);
	if (!*raw) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto err_msg;
	}
	memcpy(*raw, zmq_msg_data(&msg), zmq_msg_size(&msg));
	msgpack_unpacked_init(reply);
	if (msgpack_unpack_next(reply, *raw, zmq_msg_size(&msg), NULL) !=
		    MSGPACK_UNPACK_SUCCESS ||
	    reply->data.type != MSGPACK_OBJECT_MAP) {
		msgpack_unpacked_destroy(reply);
		free(*raw);
		*raw = NULL;
		snprintf(err, errlen, "malformed reply from ferryd");
		ret = -EBADMSG;
		goto err_msg;
	}
	ret = 0;
err_msg:
	zmq_msg_close(&msg);
err_sock:
	zmq_close(req);
err_ctx:
	zmq_ctx_term(ctx);
	return ret;
}

static void fmt_duration(uint64_t s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m %02" PRIu64 "s", s / 60,
			 s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h %02" PRIu64 "m", s / 3600,
			 s / 60 % 60);
	else
		snprintf(buf, len, "%" PRIu64 "d %02" PRIu64 "h", s / 86400,
			 s / 3600 % 24);
}

/* Post-copies waiting for their holder: the VM waits on its faults. */
static void print_stalls(FILE *f, const msgpack_object *a)
{
	char vm[PROTO_NAME_MAX + 1], peer[PROTO_NAME_MAX + 1];

	if (!a || a->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		const msgpack_object *m = &a->via.array.ptr[i];

		fprintf(f,
			"STALLED:     migration %" PRId64 " (%s from %s): "
			"post-copy waits for %s since %.1f s; the VM waits "
			"on its faults\n",
			proto_mp_int(m, "id", 0),
			proto_mp_str(m, "vm", vm, sizeof(vm)),
			proto_mp_str(m, "peer", peer, sizeof(peer)), peer,
			proto_mp_double(m, "stalled_s", 0));
	}
}

void cli_print_status(FILE *f, const msgpack_object *r)
{
	char s[256], t[256], b[32];

	fprintf(f, "node:        %s\n", proto_mp_str(r, "node", s, sizeof(s)));
	fprintf(f, "version:     %s (protocol %" PRId64 ", pid %" PRId64 ")\n",
		proto_mp_str(r, "version", s, sizeof(s)),
		proto_mp_int(r, "protocol", 0), proto_mp_int(r, "pid", 0));
	fprintf(f, "public key:  %s\n",
		proto_mp_str(r, "public_key", s, sizeof(s)));
	fprintf(f, "listen:      %s\n",
		proto_mp_str(r, "listen", s, sizeof(s)));
	fprintf(f, "control:     %s\n",
		proto_mp_str(r, "control", s, sizeof(s)));
	fprintf(f, "fabric:      %s at %s\n",
		proto_mp_str(r, "fabric_provider", s, sizeof(s)),
		proto_mp_str(r, "fabric_address", t, sizeof(t)));
	fprintf(f, "memory:      %s registered in %" PRId64 " regions\n",
		fy_fmt_bytes(proto_mp_int(r, "memory_bytes", 0), b, sizeof(b)),
		proto_mp_int(r, "memory_regions", 0));
	fprintf(f,
		"peers:       %" PRId64 " reachable / %" PRId64 " configured\n",
		proto_mp_int(r, "peers_reachable", 0),
		proto_mp_int(r, "peers_configured", 0));
	fprintf(f, "migrations:  %" PRId64 "\n",
		proto_mp_int(r, "migrations", 0));
	print_stalls(f, proto_mp_get(r, "stalls"));
	fprintf(f, "refused:     %" PRId64 " connections, ",
		proto_mp_int(r, "refused", 0));
	fprintf(f, "%" PRId64 " malformed messages\n",
		proto_mp_int(r, "malformed", 0));
	fmt_duration(proto_mp_int(r, "uptime_s", 0), s, sizeof(s));
	fprintf(f, "uptime:      %s\n", s);
}

/* A float field as "%.2f", or "-" when absent (nil). */
static const char *fmt_ms(const msgpack_object *p, const char *key, char *buf,
			  size_t len)
{
	double v = proto_mp_double(p, key, -1);

	if (v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.2f", v);
	return buf;
}

void cli_print_peers(FILE *f, const msgpack_object *r)
{
	const msgpack_object *peers = proto_mp_get(r, "peers");
	int wn = 4, wa = 7;
	uint32_t n = 0;

	if (peers && peers->type == MSGPACK_OBJECT_ARRAY)
		n = peers->via.array.size;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *p = &peers->via.array.ptr[i];
		char s[ADDR_MAX];

		wn = FY_MAX(wn,
			    (int)strlen(proto_mp_str(p, "name", s, sizeof(s))));
		wa = FY_MAX(wa, (int)strlen(proto_mp_str(p, "address", s,
							 sizeof(s))));
	}
	fprintf(f, "%-*s  %-*s  %-12s  %-17s  %-10s  %-9s  %s\n", wn, "NAME",
		wa, "ADDRESS", "STATE", "RTT ms last/avg", "LAST SEEN",
		"MALFORMED", "PROBLEM");
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *p = &peers->via.array.ptr[i];
		char name[PROTO_NAME_MAX + 1], addr[ADDR_MAX], st[32];
		char last[16], avg[16], rtt[40], seen[32], problem[64];
		double ago = proto_mp_double(p, "last_seen_s", -1);

		if (ago < 0)
			snprintf(seen, sizeof(seen), "never");
		else
			snprintf(seen, sizeof(seen), "%.1fs ago", ago);
		snprintf(rtt, sizeof(rtt), "%s / %s",
			 fmt_ms(p, "rtt_last_ms", last, sizeof(last)),
			 fmt_ms(p, "rtt_avg_ms", avg, sizeof(avg)));
		fprintf(f, "%-*s  %-*s  %-12s  %-17s  %-10s  %-9" PRId64, wn,
			proto_mp_str(p, "name", name, sizeof(name)), wa,
			proto_mp_str(p, "address", addr, sizeof(addr)),
			proto_mp_str(p, "state", st, sizeof(st)), rtt, seen,
			proto_mp_int(p, "malformed", 0));
		proto_mp_str(p, "problem", problem, sizeof(problem));
		fprintf(f, "  %s\n", problem[0] ? problem : "-");
	}
	fprintf(f, "refused connections: %" PRId64,
		proto_mp_int(r, "refused", 0));
	fputs(" (keys not in the peer list)\n", f);
}
