// SPDX-License-Identifier: MIT
/*
 * The control socket, ferryd's side: an ipc:// ROUTER that answers the
 * `ferry` CLI (see cli/cli.c for the exchange).
 *
 * Access control is the file system's: the socket lives in a directory
 * that only ferryd's user (and the control_group, if configured) can
 * enter. ferryd creates that directory 0700 (0750 with a group), and
 * refuses to start when it exists with another owner or looser bits: a
 * socket in a world-writable directory could be replaced by anyone.
 *
 * What comes in is still checked as strictly as a peer's message: at most
 * PROTO_CTL_MSG_MAX bytes (ZMQ_MAXMSGSIZE: libzmq drops a client that
 * sends more), decoded by proto_ctl_decode() (protocol/proto_ctl.c).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <zmq.h>

#include "fabric/fabric.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "control: "
#include "common/util.h"
#include "node/node_int.h"

/* Is a live process accepting on the socket at path? */
static bool socket_alive(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	bool alive;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	alive = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return alive;
}

int nd_ctl_prepare(const struct nd_config *cfg)
{
	bool group = cfg->control_group[0] != '\0';
	mode_t allowed = group ? 0750 : 0700;
	char buf[ND_SOCK_MAX + 1], *dir;
	struct stat st;
	int ret;

	snprintf(buf, sizeof(buf), "%s", cfg->control);
	dir = dirname(buf);
	ret = nd_dir_prepare("control directory", dir, allowed);
	if (ret < 0)
		return ret;
	if (ret && group && chown(dir, (uid_t)-1, cfg->control_gid)) {
		pr_perror("cannot set up control directory %s", dir);
		return -errno;
	}
	if (stat(dir, &st)) {
		pr_perror("cannot stat control directory %s", dir);
		return -errno;
	}
	if ((st.st_mode & 0070) && (!group || st.st_gid != cfg->control_gid)) {
		pr_err("control directory %s is open to group %u, which is not "
		       "control_group; refusing",
		       dir, (unsigned)st.st_gid);
		return -EPERM;
	}

	if (lstat(cfg->control, &st)) {
		if (errno == ENOENT)
			return 0;
		pr_perror("cannot stat %s", cfg->control);
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("%s exists and is not a socket; refusing to replace it",
		       cfg->control);
		return -EEXIST;
	}
	if (socket_alive(cfg->control)) {
		pr_err("another ferryd is running on %s", cfg->control);
		return -EADDRINUSE;
	}
	pr_info("removing stale socket %s", cfg->control);
	if (unlink(cfg->control) && errno != ENOENT) {
		pr_perror("cannot remove %s", cfg->control);
		return -errno;
	}
	return 0;
}

int nd_ctl_open(struct nd_node *n)
{
	const struct nd_config *cfg = n->cfg;
	char endpoint[ND_SOCK_MAX + 8];
	bool group = cfg->control_group[0] != '\0';
	int64_t maxmsg = PROTO_CTL_MSG_MAX;
	int zero = 0, ret = 0;
	mode_t old;

	n->ctl = zmq_socket(n->zctx, ZMQ_ROUTER);
	if (!n->ctl) {
		pr_err("zmq_socket: %s", zmq_strerror(errno));
		return -errno;
	}
	zmq_setsockopt(n->ctl, ZMQ_LINGER, &zero, sizeof(zero));
	/* a larger request: libzmq drops that client, the others go on */
	if (zmq_setsockopt(n->ctl, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg))) {
		pr_err("ZMQ_MAXMSGSIZE: %s", zmq_strerror(errno));
		return -errno;
	}
	snprintf(endpoint, sizeof(endpoint), "ipc://%s", cfg->control);
	/*
	 * libzmq binds ipc:// in the calling thread, so the umask set here
	 * gives the socket file its mode (0600, or 0660 for the group).
	 */
	old = umask(group ? 0117 : 0177);
	if (zmq_bind(n->ctl, endpoint))
		ret = -errno;
	umask(old);
	if (ret) {
		pr_err("cannot bind %s: %s", endpoint, zmq_strerror(-ret));
		return ret;
	}
	n->ctl_bound = true;
	if (group && chown(cfg->control, (uid_t)-1, cfg->control_gid)) {
		pr_perror("cannot give %s to group %s", cfg->control,
			  cfg->control_group);
		return -errno;
	}
	return 0;
}

static void pack_status(struct nd_node *n, msgpack_packer *pk)
{
	uint64_t now = fy_now_ns(), reachable = 0;
	struct fab_stats st = { 0 };

	for (size_t i = 0; i < n->npeers; i++)
		if (nd_peer_state(&n->peers[i], now) == MIG_PEER_REACHABLE)
			reachable++;
	if (n->fab)
		fab_domain_stats(n->fab, &st);
	msgpack_pack_map(pk, 18);
	proto_mp_pack_kv_str(pk, "node", n->cfg->name);
	proto_mp_pack_kv_str(pk, "version", FERRY_VERSION);
	proto_mp_pack_kv_u64(pk, "protocol", PROTO_VERSION);
	proto_mp_pack_kv_u64(pk, "pid", getpid());
	proto_mp_pack_kv_str(pk, "public_key", n->keys.public_key);
	proto_mp_pack_kv_str(pk, "listen", n->cfg->listen);
	proto_mp_pack_kv_str(pk, "control", n->cfg->control);
	proto_mp_pack_kv_str(pk, "fabric_provider", n->fab_provider);
	proto_mp_pack_kv_str(pk, "fabric_address", n->fab_addr);
	proto_mp_pack_kv_u64(pk, "memory_bytes", st.mr_bytes);
	proto_mp_pack_kv_u64(pk, "memory_regions", st.mr_count);
	proto_mp_pack_kv_u64(pk, "peers_reachable", reachable);
	proto_mp_pack_kv_u64(pk, "peers_configured", n->npeers);
	proto_mp_pack_kv_u64(pk, "migrations", mig_active(&n->mig));
	mig_pack_stalls(&n->mig, pk, now);
	proto_mp_pack_kv_u64(pk, "refused", n->refused);
	proto_mp_pack_kv_u64(pk, "malformed", n->malformed);
	proto_mp_pack_kv_u64(pk, "uptime_s",
			     (now - n->start_ns) / 1000000000ULL);
}

static void pack_ms(msgpack_packer *pk, const char *k, bool have, double ms)
{
	proto_mp_pack_str(pk, k);
	/* microseconds are all the precision a human or script needs */
	if (have)
		msgpack_pack_double(pk,
				    (double)(int64_t)(ms * 1000 + 0.5) / 1000);
	else
		msgpack_pack_nil(pk);
}

static void pack_peers(struct nd_node *n, msgpack_packer *pk)
{
	uint64_t now = fy_now_ns();

	msgpack_pack_map(pk, 2);
	proto_mp_pack_str(pk, "peers");
	msgpack_pack_array(pk, n->npeers);
	for (size_t i = 0; i < n->npeers; i++) {
		struct nd_peer *p = &n->peers[i];

		msgpack_pack_map(pk, 12);
		proto_mp_pack_kv_str(pk, "name", p->conf->name);
		proto_mp_pack_kv_str(pk, "address", p->conf->address);
		proto_mp_pack_kv_str(
			pk, "state",
			mig_peer_state_name(nd_peer_state(p, now)));
		pack_ms(pk, "rtt_last_ms", p->rtt_count, p->rtt_last_ns / 1e6);
		pack_ms(pk, "rtt_avg_ms", p->rtt_count,
			p->rtt_count ? p->rtt_sum_ns / 1e6 / p->rtt_count : 0);
		pack_ms(pk, "last_seen_s", p->mig.last_seen_ns,
			(now - p->mig.last_seen_ns) / 1e9);
		proto_mp_pack_kv_u64(pk, "malformed", p->malformed);
		proto_mp_pack_kv_u64(pk, "protocol", p->remote_version);
		proto_mp_pack_kv_str(pk, "public_key", p->conf->public_key);
		proto_mp_pack_kv_str(pk, "fabric_provider",
				     p->remote_provider[0] ? p->remote_provider
							   : "");
		proto_mp_pack_kv_str(pk, "fabric_address", p->remote_fabric);
		proto_mp_pack_kv_str(pk, "problem", p->problem);
	}
	proto_mp_pack_kv_u64(pk, "refused", n->refused);
}

/*
 * `ferry release VM`: the engine frees the copies of VM it keeps here;
 * none kept is an answer, 0, not an error.
 */
static void pack_release(struct nd_node *n, const char *vm, msgpack_packer *pk)
{
	char err[256] = "";
	int rc = mig_release_kept(&n->mig, vm, err, sizeof(err));

	if (rc < 0) {
		msgpack_pack_map(pk, 1);
		proto_mp_pack_kv_str(pk, "error", err);
		return;
	}
	msgpack_pack_map(pk, 2);
	proto_mp_pack_kv_str(pk, "vm", vm);
	proto_mp_pack_kv_u64(pk, "released", rc);
}

/*
 * Build the reply to one request: decoded strictly (proto_ctl_decode()),
 * a request it refuses gets {"error": reason naming the field}.
 */
static void answer(struct nd_node *n, const void *buf, size_t len,
		   msgpack_sbuffer *sb)
{
	struct proto_ctl_req req;
	msgpack_packer pk;
	char err[256];

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	if (proto_ctl_decode(buf, len, &req, err, sizeof(err))) {
		/* the client is told; a log line per request would flood */
		pr_debug("request refused: %s", err);
		msgpack_pack_map(&pk, 1);
		proto_mp_pack_kv_str(&pk, "error", err);
		return;
	}
	switch (req.cmd) {
	case PROTO_CTL_STATUS:
		pack_status(n, &pk);
		break;
	case PROTO_CTL_PEERS:
		pack_peers(n, &pk);
		break;
	case PROTO_CTL_VMS:
		nd_vms_pack(n, &pk);
		break;
	/* the engine's, about a VM, not one migration */
	case PROTO_CTL_HOLDERS:
		mig_pack_holders(&n->mig, req.vm, &pk);
		break;
	case PROTO_CTL_RELEASE:
		pack_release(n, req.vm, &pk);
		break;
	default:
		mig_command(&n->mig, &req, &pk);
	}
}

void nd_ctl_handle(struct nd_node *n)
{
	/* a bounded batch: the peers must not wait on a busy CLI user */
	for (int batch = 0; batch < 64; batch++) {
		zmq_msg_t f[3];
		/* REQ envelope: routing id, empty delimiter, request */
		int nf = nd_recv_frames(n->ctl, f, 3);

		if (!nf)
			return;
		if (nf == 3 && zmq_msg_size(&f[1]) == 0) {
			msgpack_sbuffer sb;

			msgpack_sbuffer_init(&sb);
			answer(n, zmq_msg_data(&f[2]), zmq_msg_size(&f[2]),
			       &sb);
			zmq_send(n->ctl, zmq_msg_data(&f[0]),
				 zmq_msg_size(&f[0]),
				 ZMQ_SNDMORE | ZMQ_DONTWAIT);
			zmq_send(n->ctl, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
			zmq_send(n->ctl, sb.data, sb.size, ZMQ_DONTWAIT);
			msgpack_sbuffer_destroy(&sb);
		} else {
			pr_debug("malformed request (%d frames) dropped", nf);
		}
		for (int i = 0; i < FY_MIN(nf, 3); i++)
			zmq_msg_close(&f[i]);
	}
}

int nd_recv_frames(void *sock, zmq_msg_t *f, int max)
{
	zmq_msg_t extra;
	bool more = true;
	int nf = 0;

	while (more && nf < max) {
		zmq_msg_init(&f[nf]);
		if (zmq_msg_recv(&f[nf], sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&f[nf]);
			return nf;
		}
		more = zmq_msg_more(&f[nf++]);
	}
	/* frames beyond max: not a message we know; drop them */
	while (more) {
		zmq_msg_init(&extra);
		if (zmq_msg_recv(&extra, sock, ZMQ_DONTWAIT) < 0)
			more = false;
		else
			more = zmq_msg_more(&extra);
		zmq_msg_close(&extra);
		nf = max + 1;
	}
	return nf;
}

void nd_ctl_close(struct nd_node *n)
{
	zmq_close(n->ctl);
	n->ctl = NULL;
}
