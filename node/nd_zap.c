// SPDX-License-Identifier: MIT
/*
 * The ZAP handler (ZeroMQ RFC 27) that decides who may connect to our
 * ROUTER: a REP socket on inproc://zeromq.zap.01 in the node's context,
 * served from the control thread's poll loop.
 *
 *   libzmq -> us  version "1.0", request id, domain, peer address, routing
 *                 id, mechanism "CURVE", the client's 32-byte public key
 *   us -> libzmq  "1.0", request id, "200" + the peer's name as User-Id, or
 *                 "400" for a key that is not in the peer list
 *
 * The User-Id then travels with every message of that connection, so the
 * ROUTER knows which peer sent what. Each refused key is logged once (with
 * the remote address) and every refusal is counted.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#define LOG_PREFIX "peer: "
#include "common/util.h"
#include "node/node_int.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

int nd_zap_open(struct nd_node *n)
{
	int zero = 0;

	n->zap = zmq_socket(n->zctx, ZMQ_REP);
	if (!n->zap ||
	    zmq_setsockopt(n->zap, ZMQ_LINGER, &zero, sizeof(zero)) ||
	    zmq_bind(n->zap, ZAP_ENDPOINT)) {
		pr_err("cannot bind the ZAP handler: %s", zmq_strerror(errno));
		return -errno;
	}
	return 0;
}

static void zap_reply(void *zap, zmq_msg_t *reqid, const char *code,
		      const char *text, const char *user)
{
	zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
	zmq_send(zap, zmq_msg_data(reqid), zmq_msg_size(reqid), ZMQ_SNDMORE);
	zmq_send(zap, code, strlen(code), ZMQ_SNDMORE);
	zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(zap, user, strlen(user), ZMQ_SNDMORE);
	zmq_send(zap, "", 0, 0);
}

/*
 * One ZAP request: version, request id, domain, address, routing id,
 * mechanism, credentials (CURVE: the client's 32-byte public key).
 */
void nd_zap_handle(struct nd_node *n)
{
	enum { VERSION, REQID, DOMAIN, ADDRESS, IDENTITY, MECH, KEY, NFRAMES };
	zmq_msg_t f[NFRAMES];
	char z85[ND_KEY_LEN + 1], addr[64];
	int nf = nd_recv_frames(n->zap, f, NFRAMES);

	if (nf == 0)
		return;
	if (nf < REQID + 1) {
		/* REP must answer before it can receive again */
		zmq_msg_t none;

		pr_warn_limited(&n->zap_warn, "ZAP request without request id "
					      "refused");
		zmq_msg_init(&none);
		zap_reply(n->zap, &none, "400", "malformed ZAP request", "");
		zmq_msg_close(&none);
		goto out;
	}
	if (nf != NFRAMES || zmq_msg_size(&f[MECH]) != 5 ||
	    memcmp(zmq_msg_data(&f[MECH]), "CURVE", 5) ||
	    zmq_msg_size(&f[KEY]) != 32) {
		n->refused++;
		pr_warn_limited(&n->zap_warn, "refused a connection that is "
					      "not CURVE");
		zap_reply(n->zap, &f[REQID], "400", "CURVE only", "");
		goto out;
	}
	snprintf(addr, sizeof(addr), "%.*s", (int)zmq_msg_size(&f[ADDRESS]),
		 (const char *)zmq_msg_data(&f[ADDRESS]));
	for (size_t i = 0; i < n->npeers; i++) {
		struct nd_peer *p = &n->peers[i];

		if (!memcmp(p->key_raw, zmq_msg_data(&f[KEY]), 32)) {
			pr_debug("%s (%s): connection from %s accepted",
				 p->conf->name, p->conf->address, addr);
			zap_reply(n->zap, &f[REQID], "200", "OK",
				  p->conf->name);
			goto out;
		}
	}
	n->refused++;
	zmq_z85_encode(z85, zmq_msg_data(&f[KEY]), 32);
	{
		bool seen = false;

		for (size_t i = 0; i < n->nrefused_keys; i++)
			if (!memcmp(n->refused_keys[i], zmq_msg_data(&f[KEY]),
				    32))
				seen = true;
		if (!seen && n->nrefused_keys < ND_REFUSED_KEYS_MAX)
			memcpy(n->refused_keys[n->nrefused_keys++],
			       zmq_msg_data(&f[KEY]), 32);
		if (seen)
			pr_debug("refused connection from %s, key %s (%llu "
				 "refused so far)",
				 addr, z85, (unsigned long long)n->refused);
		else
			pr_warn_limited(&n->zap_warn,
					"refused connection from %s: public "
					"key "
					"%s is not in the peer list (further "
					"refusals of it are counted, not "
					"logged)",
					addr, z85);
	}
	zap_reply(n->zap, &f[REQID], "400", "unknown key", "");
out:
	for (int i = 0; i < FY_MIN(nf, (int)NFRAMES); i++)
		zmq_msg_close(&f[i]);
}
