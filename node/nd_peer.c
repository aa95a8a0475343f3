// SPDX-License-Identifier: MIT
/*
 * Peers over the ZeroMQ control plane.
 *
 * Every ferryd binds a ROUTER (CURVE server) on its listen address and
 * connects one DEALER (CURVE client, the peer's public key as server key)
 * to each configured peer. A connection to our ROUTER is authenticated by
 * our ZAP handler (nd_zap.c, served from the control thread): only client
 * keys from the peer list pass, and the
 * peer's name becomes the connection's User-Id, so every message on the
 * ROUTER says which peer sent it. Refused keys are logged once each and
 * counted every time.
 *
 * The exchange, with a the client (its DEALER) and b the server (its
 * ROUTER); b runs the same exchange towards a on its own DEALER:
 *
 *   a -> b  HELLO(version, node, key, fabric provider and address)
 *   b -> a  HELLO(b's)        or ERROR(EPROTONOSUPPORT) on another version
 *   a -> b  PING(seq, sent_ns) every ping_interval_ms
 *   b -> a  PONG(seq, sent_ns) echoed; a measures the round trip
 *   b -> a  ERROR(ENOTCONN) for a PING before any HELLO (b restarted):
 *           a starts over with HELLO.
 *   b -> a  ERROR(EACCES) for a HELLO claiming another key than the one
 *           its connection authenticated with.
 *
 * A monitor on each DEALER reports handshake failures (our key refused,
 * wrong server key) so that `ferry peers` can say why a peer stays
 * "connecting".
 *
 * a shows b reachable while PONGs keep arriving: within peer_timeout_ms of
 * the last one. A malformed message is counted and logged once per peer
 * with the decoder's reason; nothing a peer sends can stop the loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "fabric/fabric.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "peer: "
#include "common/util.h"
#include "node/node_int.h"

#define ZAP_DOMAIN "ferry"
#define HELLO_RETRY_TICKS 20 /* an incompatible peer is re-greeted */
#define CLOSE_LINGER_MS 200 /* a closing DEALER may still send */
/*
 * Messages handled per socket per poll round, and for how long: a peer
 * that floods us (large messages take a while to decode, longer under an
 * emulated CPU) must not starve the other sockets, the timer or the CLI.
 */
#define BATCH_MAX 256
#define BATCH_NS (20 * 1000000ULL)

#define peer_warn(p, fmt, ...)                                        \
	pr_warn("%s (%s): " fmt, (p)->conf->name, (p)->conf->address, \
		##__VA_ARGS__)
/* for what the peer can repeat at will */
#define peer_warn_limited(p, fmt, ...)                                    \
	pr_warn_limited(&(p)->mig.warn, "%s (%s): " fmt, (p)->conf->name, \
			(p)->conf->address, ##__VA_ARGS__)
#define peer_info(p, fmt, ...)                                        \
	pr_info("%s (%s): " fmt, (p)->conf->name, (p)->conf->address, \
		##__VA_ARGS__)
#define peer_debug(p, fmt, ...)                                        \
	pr_debug("%s (%s): " fmt, (p)->conf->name, (p)->conf->address, \
		 ##__VA_ARGS__)

void nd_fmt_fab_addr(const uint8_t *raw, uint32_t len, char *buf, size_t buflen)
{
	char ip[INET6_ADDRSTRLEN];
	size_t off = 0;

	if (len >= sizeof(struct sockaddr_in) &&
	    ((const struct sockaddr *)raw)->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, raw, sizeof(sin));
		inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip));
		snprintf(buf, buflen, "%s:%u", ip, ntohs(sin.sin_port));
		return;
	}
	if (len >= sizeof(struct sockaddr_in6) &&
	    ((const struct sockaddr *)raw)->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, raw, sizeof(sin6));
		inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, buflen, "[%s]:%u", ip, ntohs(sin6.sin6_port));
		return;
	}
	if (!buflen)
		return;
	buf[0] = '\0';
	/* some other provider's format: hex, cut to what fits */
	for (uint32_t i = 0; i < len && off + 3 <= buflen; i++)
		off += snprintf(buf + off, buflen - off, "%02x", raw[i]);
	if (!len)
		snprintf(buf, buflen, "-");
}

enum mig_peer_state nd_peer_state(const struct nd_peer *p, uint64_t now)
{
	uint64_t timeout = p->node->cfg->peer_timeout_ms * 1000000ULL;

	if (p->incompatible)
		return MIG_PEER_INCOMPATIBLE;
	if (p->mig.last_pong_ns && now - p->mig.last_pong_ns < timeout)
		return MIG_PEER_REACHABLE;
	return p->ever_reachable ? MIG_PEER_UNREACHABLE : MIG_PEER_CONNECTING;
}

static int setopt_int(void *s, int opt, int v)
{
	return zmq_setsockopt(s, opt, &v, sizeof(v));
}

/* Options both kinds of peer socket share; see docs/operations.md. */
static int set_common_opts(void *s)
{
	if (setopt_int(s, ZMQ_LINGER, 0) || setopt_int(s, ZMQ_SNDHWM, 64) ||
	    setopt_int(s, ZMQ_RCVHWM, 1024) ||
	    setopt_int(s, ZMQ_HEARTBEAT_IVL, 1000) ||
	    setopt_int(s, ZMQ_HEARTBEAT_TIMEOUT, 3000) ||
	    setopt_int(s, ZMQ_HANDSHAKE_IVL, 5000)) {
		pr_err("zmq_setsockopt: %s", zmq_strerror(errno));
		return -errno;
	}
	/* The decoder has its limit; do not even buffer more than that. */
	int64_t max = PROTO_MSG_MAX;

	if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof(max))) {
		pr_err("zmq_setsockopt(ZMQ_MAXMSGSIZE): %s",
		       zmq_strerror(errno));
		return -errno;
	}
	return 0;
}

/* Encode m and send it, with a ROUTER routing id in front if rid. */
static int send_msg(void *sock, const void *rid, size_t rid_len,
		    const struct proto_msg *m)
{
	void *buf;
	size_t len;
	int ret;

	ret = proto_encode(m, &buf, &len);
	if (ret) {
		pr_err("cannot encode %s: %s", proto_type_name(m->type),
		       strerror(-ret));
		return ret;
	}
	ret = 0;
	/*
	 * Never block the control thread: a peer that does not drain its
	 * socket (or is not connected, ZMQ_IMMEDIATE) just loses the message.
	 */
	if ((rid &&
	     zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
	    zmq_send(sock, buf, len, ZMQ_DONTWAIT) < 0)
		ret = -errno;
	free(buf);
	return ret;
}

static void fill_hello(struct nd_node *n, struct proto_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = PROTO_HELLO;
	m->hello.version = PROTO_VERSION;
	snprintf(m->hello.node, sizeof(m->hello.node), "%s", n->cfg->name);
	memcpy(m->hello.pubkey, n->keys.public_key, ND_KEY_LEN + 1);
	snprintf(m->hello.provider, sizeof(m->hello.provider), "%s",
		 n->fab_provider);
	m->hello.addr_len = FY_MIN(n->fab_addr_len, (uint32_t)PROTO_ADDR_MAX);
	memcpy(m->hello.addr, n->fab_addr_raw, m->hello.addr_len);
}

static void fill_error(struct proto_msg *m, int code, const char *text)
{
	memset(m, 0, sizeof(*m));
	m->type = PROTO_ERROR;
	m->error.code = code;
	snprintf(m->error.text, sizeof(m->error.text), "%s", text);
	/* a text with a peer's bytes in it must still encode */
	for (char *c = m->error.text; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

static void count_malformed(struct nd_peer *p, const char *why)
{
	p->malformed++;
	p->node->malformed++;
	if (!p->malformed_logged) {
		peer_warn(p,
			  "malformed message (%s); further ones are counted, "
			  "not logged",
			  why);
		p->malformed_logged = true;
	} else {
		peer_debug(p, "malformed message (%s)", why);
	}
}

/* p sent a HELLO of another protocol version; why is the decoder's text. */
static void mark_incompatible(struct nd_peer *p, const char *why)
{
	if (!p->incompatible)
		peer_warn(p, "incompatible: %s", why);
	p->incompatible = true;
}

/*
 * Check a HELLO from p (either direction). Returns 0 when compatible,
 * -EPROTONOSUPPORT when the version differs (p is marked incompatible),
 * -EACCES when it claims a key other than the one it connected with.
 */
static int take_hello(struct nd_peer *p, const struct proto_hello *h)
{
	if (h->version != PROTO_VERSION) {
		if (!p->incompatible)
			peer_warn(p,
				  "HELLO with protocol version %u, we speak "
				  "%u: incompatible",
				  h->version, PROTO_VERSION);
		p->incompatible = true;
		p->remote_version = h->version;
		return -EPROTONOSUPPORT;
	}
	/*
	 * CURVE already proved the connection's key; a HELLO that claims
	 * another one comes from a confused (or lying) peer: refuse it.
	 */
	if (strcmp(h->pubkey, p->conf->public_key)) {
		if (!p->key_mismatch_logged)
			peer_warn(p,
				  "HELLO claims key %s, but its key is %s; "
				  "refused",
				  h->pubkey, p->conf->public_key);
		p->key_mismatch_logged = true;
		return -EACCES;
	}
	if (strcmp(h->node, p->conf->name) && !p->remote_node[0])
		peer_info(p, "calls itself '%s'", h->node);
	if (p->incompatible)
		peer_info(p, "now speaks protocol version %u", h->version);
	p->incompatible = false;
	p->remote_version = h->version;
	snprintf(p->remote_node, sizeof(p->remote_node), "%s", h->node);
	snprintf(p->remote_provider, sizeof(p->remote_provider), "%s",
		 h->provider);
	nd_fmt_fab_addr(h->addr, h->addr_len, p->remote_fabric,
			sizeof(p->remote_fabric));
	return 0;
}

static void send_ping(struct nd_peer *p, uint64_t now)
{
	struct proto_msg m = { .type = PROTO_PING };

	m.ping.seq = ++p->ping_seq;
	m.ping.sent_ns = now;
	send_msg(p->dealer, NULL, 0, &m);
}

/* A message on our DEALER: the peer answers what we sent it. */
void nd_dealer_handle(struct nd_peer *p)
{
	uint64_t now;
	struct proto_msg *m, out;
	uint64_t end = fy_now_ns() + BATCH_NS;
	char why[256];
	zmq_msg_t msg;
	int ret;

	for (int batch = 0; batch < BATCH_MAX && fy_now_ns() < end; batch++) {
		zmq_msg_init(&msg);
		if (zmq_msg_recv(&msg, p->dealer, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&msg);
			return;
		}
		now = fy_now_ns();
		if (zmq_msg_more(&msg)) {
			/* drain the rest: we never send multipart to peers */
			count_malformed(p, "multipart message");
			do {
				zmq_msg_close(&msg);
				zmq_msg_init(&msg);
			} while (zmq_msg_recv(&msg, p->dealer, ZMQ_DONTWAIT) >=
					 0 &&
				 zmq_msg_more(&msg));
			zmq_msg_close(&msg);
			continue;
		}
		why[0] = '\0';
		ret = proto_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &m,
				   why, sizeof(why));
		zmq_msg_close(&msg);
		if (ret == -EPROTONOSUPPORT) {
			/* its answer to our HELLO is of another version */
			p->mig.last_seen_ns = now;
			mark_incompatible(p, why);
			fill_error(&out, EPROTONOSUPPORT,
				   "protocol version mismatch");
			send_msg(p->dealer, NULL, 0, &out);
			continue;
		}
		if (ret) {
			if (ret == -EBADMSG)
				count_malformed(p,
						why[0] ? why : "undecodable");
			continue;
		}
		p->mig.last_seen_ns = now;
		switch (m->type) {
		case PROTO_HELLO:
			ret = take_hello(p, &m->hello);
			if (ret == -EPROTONOSUPPORT) {
				fill_error(&out, EPROTONOSUPPORT,
					   "protocol version mismatch");
				send_msg(p->dealer, NULL, 0, &out);
			}
			if (ret)
				break;
			if (!p->hello_out) {
				/* measure at once rather than at the next tick */
				peer_debug(p, "HELLO answered");
				p->hello_out = true;
				send_ping(p, now);
			}
			break;
		case PROTO_PONG:
			/* a PONG for a PING we never sent is stale */
			if (m->ping.sent_ns > now || !p->hello_out ||
			    !m->ping.seq || m->ping.seq > p->ping_seq)
				break;
			p->rtt_last_ns = now - m->ping.sent_ns;
			p->rtt_sum_ns += p->rtt_last_ns;
			p->rtt_count++;
			p->mig.last_pong_ns = now;
			p->ever_reachable = true;
			break;
		case PROTO_ERROR:
			if (m->error.code == ENOTCONN) {
				/* it restarted and lost our HELLO */
				peer_debug(p, "asks for HELLO again");
				p->hello_out = false;
				if (!p->node->next_greet_ns)
					p->node->next_greet_ns = now;
			} else if (m->error.code == EPROTONOSUPPORT) {
				mark_incompatible(p, m->error.text);
			} else {
				peer_warn_limited(p, "ERROR %d: %s",
						  m->error.code, m->error.text);
			}
			break;
		default:
			peer_debug(p, "unexpected %s on the client socket",
				   proto_type_name(m->type));
		}
		proto_msg_free(m);
	}
}

int nd_peer_send(struct nd_peer *p, const struct proto_msg *m)
{
	return send_msg(p->dealer, NULL, 0, m);
}

struct nd_peer *nd_peer_find(struct nd_node *n, const char *name)
{
	for (size_t i = 0; name && i < n->npeers; i++)
		if (!strcmp(n->peers[i].conf->name, name))
			return &n->peers[i];
	return NULL;
}

/* One request from a peer's DEALER on our ROUTER; reply to rid. */
static void router_request(struct nd_node *n, struct nd_peer *p,
			   const void *rid, size_t rid_len, zmq_msg_t *msg)
{
	struct proto_msg *m, out;
	char why[256] = "";
	uint64_t id;
	int ret;

	ret = proto_decode(zmq_msg_data(msg), zmq_msg_size(msg), &m, why,
			   sizeof(why));
	if (ret == -EPROTONOSUPPORT) {
		p->mig.last_seen_ns = fy_now_ns();
		p->hello_in = false;
		mark_incompatible(p, why);
		fill_error(&out, EPROTONOSUPPORT, "protocol version mismatch");
		goto reply;
	}
	if (ret == -EBADMSG) {
		/* answered, so that a peer of another build sees why */
		count_malformed(p, why[0] ? why : "undecodable");
		fill_error(&out, EBADMSG, why[0] ? why : "undecodable");
		goto reply;
	}
	if (ret)
		return;
	p->mig.last_seen_ns = fy_now_ns();
	switch (m->type) {
	case PROTO_HELLO:
		ret = take_hello(p, &m->hello);
		if (ret == -EACCES) {
			fill_error(&out, EACCES,
				   "HELLO key is not the "
				   "connection's key");
			break;
		} else if (ret) {
			fill_error(&out, EPROTONOSUPPORT,
				   "protocol version mismatch");
			break;
		}
		if (!p->hello_in)
			peer_debug(p, "sent HELLO");
		p->hello_in = true;
		fill_hello(n, &out);
		break;
	case PROTO_PING:
		if (!p->hello_in) {
			fill_error(&out, ENOTCONN, "HELLO first");
			break;
		}
		out = *m;
		out.type = PROTO_PONG;
		break;
	case PROTO_ERROR:
		/* nobody answers an ERROR: two peers never loop on them */
		if (m->error.mig) {
			mig_handle(&n->mig, &p->mig, m);
			return;
		}
		if (m->error.code == EPROTONOSUPPORT)
			mark_incompatible(p, m->error.text);
		else
			peer_warn_limited(p, "ERROR %d: %s", m->error.code,
					  m->error.text);
		proto_msg_free(m);
		return;
	default:
		/* the others are about a migration (the message table says) */
		if (proto_msg_mig(m, &id) == PROTO_TO_NONE) {
			fill_error(&out, EOPNOTSUPP,
				   "message type not handled yet");
			break;
		}
		if (!p->hello_in) {
			fill_error(&out, ENOTCONN, "HELLO first");
			break;
		}
		/* one-way: the migration engine answers on our DEALER */
		mig_handle(&n->mig, &p->mig, m);
		return;
	}
	proto_msg_free(m);
reply:
	ret = send_msg(n->router, rid, rid_len, &out);
	if (ret && ret != -EAGAIN && ret != -EHOSTUNREACH)
		peer_debug(p, "cannot reply: %s", strerror(-ret));
}

void nd_router_handle(struct nd_node *n)
{
	uint64_t end = fy_now_ns() + BATCH_NS;
	zmq_msg_t rid, msg;

	for (int batch = 0; batch < BATCH_MAX && fy_now_ns() < end; batch++) {
		const char *user;
		struct nd_peer *p;

		zmq_msg_init(&rid);
		if (zmq_msg_recv(&rid, n->router, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&rid);
			return;
		}
		zmq_msg_init(&msg);
		if (!zmq_msg_more(&rid) ||
		    zmq_msg_recv(&msg, n->router, ZMQ_DONTWAIT) < 0)
			goto next;
		/* ZAP put the peer's name there: it is authenticated */
		user = zmq_msg_gets(&msg, "User-Id");
		p = nd_peer_find(n, user);
		if (!p) {
			pr_warn_limited(&n->peer_warn,
					"message from unknown user '%s' "
					"dropped",
					user ? user : "?");
			n->malformed++;
		} else if (zmq_msg_more(&msg)) {
			count_malformed(p, "multipart message");
		} else {
			router_request(n, p, zmq_msg_data(&rid),
				       zmq_msg_size(&rid), &msg);
		}
next:
		/* drop whatever is left of a multipart message */
		while (zmq_msg_more(&msg)) {
			zmq_msg_close(&msg);
			zmq_msg_init(&msg);
			if (zmq_msg_recv(&msg, n->router, ZMQ_DONTWAIT) < 0)
				break;
		}
		zmq_msg_close(&msg);
		zmq_msg_close(&rid);
	}
}

bool nd_peers_greet(struct nd_node *n)
{
	struct proto_msg m;
	bool waiting = false;

	fill_hello(n, &m);
	for (size_t i = 0; i < n->npeers; i++) {
		struct nd_peer *p = &n->peers[i];

		if (p->hello_out || p->incompatible)
			continue;
		/* dropped at once while not connected (ZMQ_IMMEDIATE) */
		send_msg(p->dealer, NULL, 0, &m);
		waiting = true;
	}
	return waiting;
}

void nd_peers_tick(struct nd_node *n, uint64_t now)
{
	struct proto_msg m;

	for (size_t i = 0; i < n->npeers; i++) {
		struct nd_peer *p = &n->peers[i];
		enum mig_peer_state st;

		p->ticks++;
		if (p->incompatible) {
			if (p->ticks % HELLO_RETRY_TICKS == 0) {
				fill_hello(n, &m);
				send_msg(p->dealer, NULL, 0, &m);
			}
		} else if (!p->hello_out) {
			fill_hello(n, &m);
			send_msg(p->dealer, NULL, 0, &m);
		} else {
			send_ping(p, now);
		}
		st = nd_peer_state(p, now);
		if (st == p->state)
			continue;
		if (st == MIG_PEER_REACHABLE)
			peer_info(p, "reachable (rtt %.2f ms)",
				  p->rtt_last_ns / 1e6);
		else if (st == MIG_PEER_UNREACHABLE)
			peer_warn(p, "unreachable: no PONG for %u ms",
				  n->cfg->peer_timeout_ms);
		else
			peer_info(p, "%s", mig_peer_state_name(st));
		p->state = st;
	}
}

/* The DEALER towards one peer. */
/*
 * A monitor on each DEALER tells why a peer stays "connecting": its ZAP
 * refused our key, or the CURVE handshake failed (usually a wrong
 * public_key for it in our config). Without it the only trace would be in
 * the peer's log.
 */
static int monitor_open(struct nd_node *n, struct nd_peer *p, size_t idx)
{
	char ep[64];

	snprintf(ep, sizeof(ep), "inproc://nd-monitor-%zu", idx);
	if (zmq_socket_monitor(p->dealer, ep,
			       ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
				       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
				       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
				       ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
				       ZMQ_EVENT_DISCONNECTED)) {
		pr_err("zmq_socket_monitor: %s", zmq_strerror(errno));
		return -errno;
	}
	p->mon = zmq_socket(n->zctx, ZMQ_PAIR);
	if (!p->mon || setopt_int(p->mon, ZMQ_LINGER, 0) ||
	    zmq_connect(p->mon, ep)) {
		pr_err("cannot watch the socket to %s: %s", p->conf->name,
		       zmq_strerror(errno));
		return -errno;
	}
	return 0;
}

/* One event from a DEALER's monitor: event id and value, then endpoint. */
void nd_monitor_handle(struct nd_peer *p)
{
	zmq_msg_t ev, addr;
	uint16_t event;
	uint32_t value;

	zmq_msg_init(&ev);
	zmq_msg_init(&addr);
	if (zmq_msg_recv(&ev, p->mon, ZMQ_DONTWAIT) < 0)
		goto out;
	if (!zmq_msg_more(&ev) || zmq_msg_size(&ev) != 6 ||
	    zmq_msg_recv(&addr, p->mon, ZMQ_DONTWAIT) < 0)
		goto out;
	memcpy(&event, zmq_msg_data(&ev), 2);
	memcpy(&value, (uint8_t *)zmq_msg_data(&ev) + 2, 4);
	switch (event) {
	case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
		if (p->problem[0])
			peer_info(p, "handshake succeeds now");
		p->problem[0] = '\0';
		p->problem_logged = false;
		/* greet at once: no need to wait for the next tick */
		if (!p->hello_out && !p->incompatible) {
			struct proto_msg m;

			fill_hello(p->node, &m);
			send_msg(p->dealer, NULL, 0, &m);
		}
		break;
	case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
		snprintf(p->problem, sizeof(p->problem),
			 "refused our key (ZAP status %u)", value);
		if (!p->problem_logged)
			peer_warn(p,
				  "refuses our key (ZAP status %u): is %s in "
				  "its peer list?",
				  value, p->node->keys.public_key);
		p->problem_logged = true;
		break;
	case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
	case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
		snprintf(p->problem, sizeof(p->problem),
			 "CURVE handshake failed (0x%x)", value);
		if (!p->problem_logged)
			peer_warn(p,
				  "CURVE handshake failed (error 0x%x): is "
				  "its public_key right?",
				  value);
		p->problem_logged = true;
		break;
	case ZMQ_EVENT_DISCONNECTED:
		/*
		 * Its earlier PONGs say nothing about a peer that restarted
		 * within peer_timeout_ms: until it answers a new HELLO it is
		 * not reachable, and sends to it fail (ZMQ_IMMEDIATE).
		 */
		if (p->hello_out)
			peer_info(p, "disconnected");
		p->hello_out = false;
		p->mig.last_pong_ns = 0;
		p->mig.disconnect_ns = fy_now_ns();
		break;
	}
out:
	/* drop any further frames of a malformed event */
	while (zmq_msg_more(&addr)) {
		zmq_msg_close(&addr);
		zmq_msg_init(&addr);
		if (zmq_msg_recv(&addr, p->mon, ZMQ_DONTWAIT) < 0)
			break;
	}
	zmq_msg_close(&addr);
	zmq_msg_close(&ev);
}

/* The DEALER towards one peer, with its monitor. */
static int dealer_open(struct nd_node *n, struct nd_peer *p, size_t idx)
{
	int ret;

	p->dealer = zmq_socket(n->zctx, ZMQ_DEALER);
	if (!p->dealer) {
		pr_err("zmq_socket: %s", zmq_strerror(errno));
		return -errno;
	}
	if (set_common_opts(p->dealer) ||
	    /* queue only to a live connection: a ping must not wait */
	    setopt_int(p->dealer, ZMQ_IMMEDIATE, 1) ||
	    setopt_int(p->dealer, ZMQ_RECONNECT_IVL, 100) ||
	    setopt_int(p->dealer, ZMQ_RECONNECT_IVL_MAX, 1000) ||
	    zmq_setsockopt(p->dealer, ZMQ_CURVE_SERVERKEY, p->conf->public_key,
			   ND_KEY_LEN) ||
	    zmq_setsockopt(p->dealer, ZMQ_CURVE_PUBLICKEY, n->keys.public_key,
			   ND_KEY_LEN) ||
	    zmq_setsockopt(p->dealer, ZMQ_CURVE_SECRETKEY, n->keys.secret_key,
			   ND_KEY_LEN)) {
		pr_err("cannot set up the socket to peer %s: %s", p->conf->name,
		       zmq_strerror(errno));
		return -errno;
	}
	ret = monitor_open(n, p, idx);
	if (ret)
		return ret;
	if (zmq_connect(p->dealer, p->conf->address)) {
		pr_err("cannot connect to peer %s at %s: %s", p->conf->name,
		       p->conf->address, zmq_strerror(errno));
		return -errno;
	}
	return 0;
}

int nd_peers_open(struct nd_node *n)
{
	const struct nd_config *cfg = n->cfg;
	int ret;

	for (size_t i = 0; i < cfg->npeers; i++) {
		struct nd_peer *p = &n->peers[i];

		p->conf = &cfg->peers[i];
		p->node = n;
		zmq_z85_decode(p->key_raw, p->conf->public_key);
		if (!strcmp(p->conf->public_key, n->keys.public_key))
			pr_warn("peer %s has this node's own public key",
				p->conf->name);
	}
	n->npeers = cfg->npeers;

	/*
	 * The ZAP handler must exist before the ROUTER binds: libzmq 4.3's
	 * CURVE server lets every client in when no handler is bound
	 * (ZMQ_ZAP_ENFORCE_DOMAIN is still a draft option).
	 */
	ret = nd_zap_open(n);
	if (ret)
		return ret;

	n->router = zmq_socket(n->zctx, ZMQ_ROUTER);
	if (!n->router) {
		pr_err("zmq_socket: %s", zmq_strerror(errno));
		return -errno;
	}
	if (set_common_opts(n->router) ||
	    setopt_int(n->router, ZMQ_CURVE_SERVER, 1) ||
	    zmq_setsockopt(n->router, ZMQ_CURVE_SECRETKEY, n->keys.secret_key,
			   ND_KEY_LEN) ||
	    zmq_setsockopt(n->router, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN,
			   strlen(ZAP_DOMAIN))) {
		pr_err("cannot set up the listening socket: %s",
		       zmq_strerror(errno));
		return -errno;
	}
	if (zmq_bind(n->router, cfg->listen)) {
		ret = -errno;
		pr_err("cannot listen on %s: %s", cfg->listen,
		       zmq_strerror(errno));
		return ret;
	}
	for (size_t i = 0; i < n->npeers; i++) {
		ret = dealer_open(n, &n->peers[i], i);
		if (ret)
			return ret;
	}
	return 0;
}

void nd_peers_close(struct nd_node *n)
{
	for (size_t i = 0; i < n->npeers; i++) {
		struct nd_peer *p = &n->peers[i];

		if (p->mon) {
			zmq_socket_monitor(p->dealer, NULL, 0);
			zmq_close(p->mon);
			p->mon = NULL;
		}
		/* the ABORTs of a shutdown still go out; a dead peer waits not */
		setopt_int(p->dealer, ZMQ_LINGER, CLOSE_LINGER_MS);
		zmq_close(p->dealer);
		p->dealer = NULL;
	}
	zmq_close(n->router);
	n->router = NULL;
	zmq_close(n->zap);
	n->zap = NULL;
}
