// SPDX-License-Identifier: MIT
/*
 * The migration table and its records; migrations seen from peers
 * (MIGRATE_PREPARE, the routing of every migration message to its
 * migration, answers about ended ones), from the control socket (`ferry
 * migrate`, `migrations`, `migration`, `cancel`, `retarget`, ...) and
 * from a restarted ferryd: the records in <state_dir>/migrations tell
 * which migrations a crash interrupted. Those are reported failed and a
 * paused source VM is resumed, unless the source had committed (its VM
 * then waits, paused, for the destination's answer); an incoming VM that
 * never got its commit is removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"
#include "migration/mig_retain.h"
#include "migration/mig_src.h"

/* Messages from peers */

/*
 * A peer asks about a migration that ended here, or that this node never
 * had: READY (D waits for our decision), RESUME (S waits for D's answer),
 * HOLDER_MAP (a source back from a restart). Tell it how it ended.
 */
static void answer_ended(struct mig_env *n, struct mig_peer *p,
			 const struct proto_msg *msg, const struct mig *m)
{
	struct proto_msg a = { .type = PROTO_ABORT };
	bool done = m && mig_phase_of(m) == MIG_COMPLETED;

	switch (msg->type) {
	case PROTO_READY:
		a.type = done ? PROTO_RESUME : PROTO_ABORT;
		break;
	case PROTO_RESUME:
		a.type = done ? PROTO_RESUMED : PROTO_ABORT;
		break;
	case PROTO_HOLDER_MAP:
		if (!m || m->source)
			return;
		a.type = done ? PROTO_COMMIT : PROTO_ABORT;
		break;
	default:
		return;
	}
	if (a.type == PROTO_ABORT) {
		proto_msg_mig(msg, &a.abort.mig);
		snprintf(a.abort.reason, sizeof(a.abort.reason), "%s",
			 m ? m->reason : "the migration is not known here");
	} else {
		proto_msg_mig(msg, &a.commit.mig);
		a.commit.gen = m->gen;
	}
	mig_peer_send(n, p, &a);
}

void mig_handle(struct mig_env *n, struct mig_peer *p, struct proto_msg *msg)
{
	uint64_t id;
	enum proto_dir to = proto_msg_mig(msg, &id);
	struct mig *m, *rm;

	if (msg->type == PROTO_MIGRATE_PREPARE) {
		mig_dst_prepare(n, p, msg);
		return;
	}
	/* either role: the one still running (ids are per source) */
	m = mig_find(n, id, to != PROTO_TO_DEST, p);
	if ((!m || mig_finished(m)) && to != PROTO_TO_DEST &&
	    (rm = mig_find_relay(n, id, p))) {
		/* the old destination of a retarget, a relay now */
		mig_src_relay_msg(rm, p, msg);
		proto_msg_free(msg);
		return;
	}
	if (to == PROTO_TO_EITHER && (!m || mig_finished(m)))
		m = mig_find(n, id, false, p);
	if (!m || mig_finished(m)) {
		answer_ended(n, p, msg, m);
		pr_debug("%s about migration %" PRIu64 " from %s: not running "
			 "here",
			 proto_type_name(msg->type), id, p->name);
		proto_msg_free(msg);
		return;
	}
	if (m->source) {
		mig_src_handle(m, msg);
		proto_msg_free(msg);
	} else {
		m->last_heard = mig_now(n);
		/* the thread frees it */
		mig_dst_push(m, msg);
	}
}

/* Control socket */

static void pack_bool(msgpack_packer *pk, const char *k, bool v)
{
	proto_mp_pack_str(pk, k);
	if (v)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

static void pack_ms(msgpack_packer *pk, const char *k, uint64_t ns)
{
	proto_mp_pack_str(pk, k);
	msgpack_pack_double(pk, ns / 1e6);
}

/* "postcopy": the destination's figures (PC_STATS), times in ms / µs. */
static void pack_pc(msgpack_packer *pk, const struct mig *m, uint64_t now)
{
	const struct proto_pc_stats *s = &m->pcs;
	uint64_t end = m->t_end ? m->t_end : now;

	proto_mp_pack_str(pk, "postcopy");
	msgpack_pack_map(pk, 11);
	pack_ms(pk, "duration_ms", mig_pc_ns(m, end));
	proto_mp_pack_kv_u64(pk, "faults", s->faults);
	pack_ms(pk, "fault_p50_us", s->p50 * 1000);
	pack_ms(pk, "fault_p99_us", s->p99 * 1000);
	pack_ms(pk, "fault_max_us", s->max * 1000);
	pack_ms(pk, "blocktime_ms", s->blocktime);
	proto_mp_pack_kv_u64(pk, "prepaged", s->prepaged);
	proto_mp_pack_kv_u64(pk, "zero_pages", s->zero_pages);
	proto_mp_pack_kv_u64(pk, "stalls", s->stalls);
	pack_ms(pk, "stall_ms", s->stall_ns);
	pack_bool(pk, "stalled", s->stalled);
}

/* "holders": the bytes the destination pulled from each (source only). */
static void pack_holders(msgpack_packer *pk, const struct mig *m)
{
	proto_mp_pack_str(pk, "holders");
	msgpack_pack_array(pk, m->nhb);
	for (size_t i = 0; i < m->nhb; i++) {
		msgpack_pack_map(pk, 2);
		proto_mp_pack_kv_str(pk, "node", m->hb[i].node);
		proto_mp_pack_kv_u64(pk, "bytes", m->hb[i].bytes);
	}
}

static void pack_mig(msgpack_packer *pk, const struct mig *m, uint64_t now)
{
	uint64_t end = m->t_end ? m->t_end : now;
	double total_s = (end - m->t_start) / 1e9;

	msgpack_pack_map(pk, 34);
	proto_mp_pack_kv_u64(pk, "id", m->id);
	proto_mp_pack_kv_str(pk, "role", m->source ? "source" : "destination");
	proto_mp_pack_kv_str(pk, "vm", m->vm);
	proto_mp_pack_kv_str(pk, "peer", m->peer->name);
	proto_mp_pack_kv_str(pk, "mode", proto_mode_name(m->o.mode));
	proto_mp_pack_kv_str(pk, "state", mig_phase_name(mig_phase_of(m)));
	proto_mp_pack_kv_u64(pk, "round", m->round);
	proto_mp_pack_kv_u64(pk, "generation", m->gen);
	proto_mp_pack_kv_u64(pk, "pages_total", m->pages);
	proto_mp_pack_kv_u64(pk, "pages_valid", m->pages_valid);
	proto_mp_pack_kv_u64(pk, "pages_resident", m->resident);
	proto_mp_pack_kv_u64(pk, "pages_pulled", m->pages_pulled);
	proto_mp_pack_kv_u64(pk, "pages_pulled_again", m->pages_repulled);
	proto_mp_pack_kv_u64(pk, "bytes", m->bytes);
	proto_mp_pack_str(pk, "dirty_rate");
	msgpack_pack_double(pk, m->dirty_rate);
	proto_mp_pack_str(pk, "bandwidth");
	msgpack_pack_double(pk, m->bw > 0 ? m->bw : m->live_bw);
	proto_mp_pack_kv_u64(
		pk, "expected_downtime_ms",
		m->expected_dt_ms == UINT64_MAX ? 0 : m->expected_dt_ms);
	proto_mp_pack_kv_u64(pk, "downtime_limit_ms", m->limit_ms);
	proto_mp_pack_str(pk, "downtime_ms");
	if (m->downtime_ns)
		msgpack_pack_double(pk, m->downtime_ns / 1e6);
	else
		msgpack_pack_nil(pk);
	proto_mp_pack_str(pk, "total_s");
	msgpack_pack_double(pk, total_s);
	proto_mp_pack_str(pk, "throughput");
	msgpack_pack_double(pk, total_s > 0 ? m->bytes / total_s : 0);
	pack_bool(pk, "verify", m->o.verify);
	proto_mp_pack_kv_u64(pk, "verified_pages", m->verified_pages);
	proto_mp_pack_kv_str(pk, "auto_converge",
			     proto_converge_name(m->o.auto_converge));
	proto_mp_pack_kv_str(pk, "converge_actions", m->actions);
	proto_mp_pack_kv_u64(pk, "cpu_throttle", m->throttle_pct);
	proto_mp_pack_kv_str(pk, "compress", m->o.delta ? "delta" : "none");
	proto_mp_pack_kv_u64(pk, "delta_pages", m->delta_pages);
	proto_mp_pack_kv_u64(pk, "delta_bytes", m->delta_bytes);
	proto_mp_pack_kv_str(pk, "reason", m->reason);
	proto_mp_pack_kv_u64(pk, "started", m->started_unix);
	proto_mp_pack_kv_u64(pk, "postcopy_after", m->o.postcopy_after);
	pack_holders(pk, m);
	pack_pc(pk, m, now);
}

void mig_pack_stalls(struct mig_env *n, msgpack_packer *pk, uint64_t now)
{
	struct mig *st[MIG_MAX];
	unsigned k = 0;

	for (int i = 0; i < MIG_MAX; i++) {
		struct mig *m = n->migs[i];

		/* the source's silence shows before a read times out */
		if (m && !m->source && mig_phase_of(m) == MIG_POSTCOPY &&
		    (m->stall_t0 ||
		     mig_peer_state(m->n, m->peer, now) != MIG_PEER_REACHABLE))
			st[k++] = m;
	}
	proto_mp_pack_str(pk, "stalls");
	msgpack_pack_array(pk, k);
	for (unsigned i = 0; i < k; i++) {
		uint64_t t0 = st[i]->stall_t0 ? st[i]->stall_t0
					      : st[i]->peer->last_pong_ns;

		msgpack_pack_map(pk, 4);
		proto_mp_pack_kv_u64(pk, "id", st[i]->id);
		proto_mp_pack_kv_str(pk, "vm", st[i]->vm);
		proto_mp_pack_kv_str(pk, "peer", st[i]->peer->name);
		proto_mp_pack_str(pk, "stalled_s");
		msgpack_pack_double(pk, t0 && now > t0 ? (now - t0) / 1e9 : 0);
	}
}

static void pack_error(msgpack_packer *pk, const char *text)
{
	msgpack_pack_map(pk, 1);
	proto_mp_pack_kv_str(pk, "error", text);
}

/*
 * `ferry migrate`. proto_ctl_decode() checked every field that came and
 * what they say together (a --verify outside pre-copy); the built-in
 * defaults of the fields left out are protocol/'s (proto_ctl_defaults(),
 * next to the field table), the one place they are written, which the
 * CLI's help prints too. The rule: a default that is this node's
 * configuration is applied here and nowhere else. auto_converge and the
 * throttle percentages, left out (or sent as "" and 0, as an older
 * `ferry` does), come from ferryd.conf.
 */
static void cmd_migrate(struct mig_env *n, const struct proto_ctl_req *req,
			msgpack_packer *pk)
{
	struct proto_ctl_req r = *req;
	struct mig_opts o = { 0 };
	const struct mig_conf *cfg = &n->cfg;
	char err[256];
	uint64_t id;

	proto_ctl_defaults(&r);
	/* the decoder checked the words */
	o.mode = (enum proto_mode)proto_mode_parse(r.mode);
	o.auto_converge = r.auto_converge[0]
				  ? (enum proto_converge)proto_converge_parse(
					    r.auto_converge)
				  : cfg->auto_converge;
	o.throttle_initial = r.cpu_throttle_initial ? r.cpu_throttle_initial
						    : cfg->cpu_throttle_initial;
	o.throttle_increment = r.cpu_throttle_increment
				       ? r.cpu_throttle_increment
				       : cfg->cpu_throttle_increment;
	o.throttle_max = r.max_cpu_throttle ? r.max_cpu_throttle
					    : cfg->max_cpu_throttle;
	o.downtime_ms = r.downtime_limit_ms;
	o.max_downtime_ms = r.max_downtime_ms;
	o.max_bw = r.max_bandwidth;
	o.verify = r.verify;
	o.max_rounds = r.max_rounds;
	o.stall_rounds = r.stall_rounds;
	o.timeout_s = r.timeout_s;
	o.delta = !strcmp(r.compress, "delta");
	o.postcopy_after = r.postcopy_after;
	if (mig_src_start(n, r.vm, r.to, &o, &id, err, sizeof(err))) {
		pack_error(pk, err);
		return;
	}
	msgpack_pack_map(pk, 1);
	proto_mp_pack_kv_u64(pk, "id", id);
}

/* Why retarget finds no migration id that this node started. */
static void not_ours(struct mig_env *n, uint64_t id, char *err, size_t len)
{
	const struct mig *in = mig_find(n, id, false, NULL);

	if (!in)
		snprintf(err, len, "no migration %" PRIu64 " started here", id);
	else
		snprintf(err, len,
			 "'%s' started migration %" PRIu64 ", not this node",
			 in->peer->name, id);
}

/*
 * `ferry retarget ID --to PEER`. The names are looked up here, the peer
 * first, so that a wrong one is told as the other commands tell it;
 * whether the migration can change its destination now (its mode, its
 * phase, the new peer's state) is the engine's to say. The reply names
 * the new destination and the old one, which relays what it holds.
 */
static void cmd_retarget(struct mig_env *n, const struct proto_ctl_req *req,
			 msgpack_packer *pk)
{
	struct mig_peer *to = mig_peer_find(n, req->to);
	struct mig *m = mig_find(n, req->id, true, NULL);
	char err[256], relay[PROTO_NAME_MAX + 1];
	int rc;

	if (!to && !strcmp(req->to, n->cfg.name)) {
		snprintf(err, sizeof(err), "'%s' is this node, not a peer",
			 req->to);
	} else if (!to) {
		snprintf(err, sizeof(err), "no peer called '%s'", req->to);
	} else if (!m) {
		not_ours(n, req->id, err, sizeof(err));
	} else if (mig_finished(m)) {
		snprintf(err, sizeof(err),
			 "migration %" PRIu64 " already ended", m->id);
	} else if (m->peer == to) {
		snprintf(err, sizeof(err),
			 "migration %" PRIu64 " already goes to '%s'", m->id,
			 to->name);
	} else {
		/* the engine may point m at the new peer */
		snprintf(relay, sizeof(relay), "%s", m->peer->name);
		rc = mig_src_retarget(n, req->id, to->name, err, sizeof(err));
		if (!rc) {
			msgpack_pack_map(pk, 3);
			proto_mp_pack_kv_u64(pk, "id", req->id);
			proto_mp_pack_kv_str(pk, "to", to->name);
			proto_mp_pack_kv_str(pk, "relay", relay);
			return;
		}
	}
	pack_error(pk, err);
}

/*
 * The migration a request names. Ids are the source's: "id" alone is this
 * node's own (it was the source), else the incoming one with that id if
 * only one source used it; "source" names the node that started it
 * (`ferry cancel a/7`). NULL with *why set when there is none.
 */
static struct mig *named(struct mig_env *n, const struct proto_ctl_req *req,
			 const char **why)
{
	const char *src = req->source;
	uint64_t id = req->id;
	struct mig *m, *found = NULL;
	struct mig_peer *p;

	*why = "no such migration";
	if (src[0] && strcmp(src, n->cfg.name)) {
		p = mig_peer_find(n, src);
		if (!p)
			*why = "no such migration (no peer of that name)";
		return p ? mig_find(n, id, false, p) : NULL;
	}
	m = mig_find(n, id, true, NULL);
	if (m || src[0])
		return m;
	for (int i = 0; i < MIG_MAX; i++) {
		m = n->migs[i];
		if (!m || m->source || m->id != id)
			continue;
		if (found && found->peer != m->peer) {
			*why = "ambiguous: incoming migrations from several "
			       "peers have that id; say SOURCE/ID";
			return NULL;
		}
		if (!found || !mig_finished(m))
			found = m;
	}
	return found;
}

/*
 * `ferry force-resume ID --fenced`: the way out of the commit window when
 * the peer is gone for good (its host down, its ferry-vm dead), which no
 * message can end. A destination "ready" resumes the VM as if RESUME came;
 * a source "committed" resumes its copy as if the destination aborted.
 * Safe only if the peer's copy can never run again: the operator says so.
 * NULL, or why not (in buf).
 */
static const char *force_resume(struct mig *m, uint64_t now, char *buf,
				size_t len)
{
	const char *peer = m->peer->name;
	struct proto_msg *msg;

	if (mig_finished(m))
		return "migration already ended";
	if (mig_peer_state(m->n, m->peer, now) == MIG_PEER_REACHABLE) {
		snprintf(buf, len,
			 "%s is reachable: the migration ends by itself", peer);
		return buf;
	}
	if (m->dst && mig_state(m) == MIG_DST_READY) {
		msg = calloc(1, sizeof(*msg));
		if (!msg)
			return "out of memory";
		msg->type = PROTO_RESUME;
		msg->commit.mig = m->id;
		msg->commit.gen = m->gen;
		pr_warn("migration %" PRIu64 " of %s: force-resume: the VM "
			"resumes here, without %s's commit",
			m->id, m->vm, peer);
		mig_dst_push(m, msg);
		return NULL;
	}
	if (m->source && m->sm.state == MIG_SRC_COMMITTED) {
		/* D's copy never runs: ours does */
		mig_src_abandon(m, true,
				"force-resume: the VM resumed here, %s "
				"taken for down for good",
				peer);
		return NULL;
	}
	snprintf(buf, len,
		 "force-resume is for a migration held in the commit window "
		 "(a destination ready, a source committed); this one is %s",
		 mig_phase_name(mig_phase_of(m)));
	return buf;
}

void mig_command(struct mig_env *n, const struct proto_ctl_req *req,
		 msgpack_packer *pk)
{
	uint64_t now = mig_now(n);
	struct mig *m = NULL;
	const char *why;
	unsigned count = 0;

	if (req->cmd == PROTO_CTL_MIGRATE) {
		cmd_migrate(n, req, pk);
		return;
	}
	if (req->cmd == PROTO_CTL_RETARGET) {
		cmd_retarget(n, req, pk);
		return;
	}
	if (req->cmd == PROTO_CTL_MIGRATIONS) {
		for (int i = 0; i < MIG_MAX; i++)
			count += !!n->migs[i];
		msgpack_pack_map(pk, 1);
		proto_mp_pack_str(pk, "migrations");
		msgpack_pack_array(pk, count);
		for (int i = 0; i < MIG_MAX; i++)
			if (n->migs[i])
				pack_mig(pk, n->migs[i], now);
		return;
	}
	/* the CLI asks for --fenced too, but any client can reach us */
	if (req->cmd == PROTO_CTL_FORCE_RESUME && !req->fenced) {
		pack_error(pk, "force-resume needs \"fenced\": true (ferry "
			       "force-resume ID --fenced), given once the "
			       "peer's host is down or its ferry-vm killed: "
			       "two running copies of a VM corrupt its disks");
		return;
	}
	m = named(n, req, &why);
	if (!m) {
		pack_error(pk, why);
		return;
	}
	if (req->cmd == PROTO_CTL_CANCEL) {
		if (mig_finished(m)) {
			pack_error(pk, "migration already ended");
			return;
		}
		if (mig_phase_of(m) >= MIG_SWITCHOVER) {
			pack_error(pk, "too late to cancel: switchover began");
			return;
		}
		if (m->source && m->reg_running)
			/* taken once the registration is done (its tick) */
			m->cancel_asked = true;
		else if (m->source)
			mig_src_fail(m, MIG_SRC_CANCELLED, true,
				     "cancelled by the user");
		else
			mig_dst_stop(m, "cancelled by the user", false);
	} else if (req->cmd == PROTO_CTL_MIGRATE_POSTCOPY) {
		unsigned st = mig_state(m);

		if (!m->source || m->o.mode != PROTO_MODE_HYBRID ||
		    (st != MIG_SRC_PREPARE && st != MIG_SRC_PRECOPY &&
		     st != MIG_SRC_PREPARE_ASKED &&
		     st != MIG_SRC_PRECOPY_ASKED)) {
			pack_error(pk, "only a running --mode hybrid migration "
				       "from this node can switch to "
				       "post-copy, before its switchover");
			return;
		}
		/* the tick announces the rest of the round, then pauses */
		if (st == MIG_SRC_PREPARE || st == MIG_SRC_PRECOPY)
			mig_to(m,
			       st == MIG_SRC_PREPARE ? MIG_SRC_PREPARE_ASKED
						     : MIG_SRC_PRECOPY_ASKED,
			       "ferry migrate-postcopy");
	} else if (req->cmd == PROTO_CTL_FORCE_RESUME) {
		char buf[200];

		why = force_resume(m, now, buf, sizeof(buf));
		if (why) {
			pack_error(pk, why);
			return;
		}
	}
	pack_mig(pk, m, now);
}

/* Timers */

#define TICK_NS (50 * 1000000ULL)
#define IDLE_TICK_NS (500 * 1000000ULL) /* reaps VMs we started */

/*
 * A destination has lost its source when the connection to it dropped
 * after the migration began (the source died or restarted: its side of
 * the migration is gone), or when it has been silent for peer_timeout_ms.
 * Not merely because no PONG came yet: a source that restarted just
 * before this migration is unreachable by PONG until our side has
 * reconnected, though its PINGs and messages arrive.
 */
static bool dst_lost_source(const struct mig *m, uint64_t now)
{
	const struct mig_peer *p = m->peer;

	if (mig_peer_state(m->n, p, now) != MIG_PEER_UNREACHABLE)
		return false;
	return p->disconnect_ns > m->t_start ||
	       now - p->last_seen_ns >= m->n->cfg.peer_timeout_ms * 1000000ULL;
}

void mig_tick(struct mig_env *n, uint64_t now)
{
	for (int i = 0; i < MIG_MAX; i++) {
		struct mig *m = n->migs[i];

		if (!m) {
			continue;
		} else if (m->source) {
			mig_src_relays_tick(m, now);
			mig_src_tick(m, now);
		} else if (m->dst) {
			if (mig_dst_poll(m))
				mig_dst_free(m);
			if (m->dst && !mig_finished(m) &&
			    (mig_phase_of(m) < MIG_READY ||
			     mig_state(m) == MIG_DST_RELAY) &&
			    dst_lost_source(m, now))
				mig_dst_stop(m, "source unreachable", false);
		} else if (m->sm.state == MIG_DST_FAILED_UNTOLD &&
			   mig_peer_state(m->n, m->peer, now) ==
				   MIG_PEER_REACHABLE) {
			/* our copy is gone and never ran: the source's may */
			mig_send_abort(m, m->reason);
			mig_to(m, MIG_DST_FAILED, "ABORT sent");
		}
	}
	mig_held_tick(n, now);
	mig_fabs_tick(n);
	n->next_mig_tick_ns = now + (mig_active(n) ? TICK_NS : IDLE_TICK_NS);
}

/* Startup */

/*
 * A post-copy source whose ferryd restarted: the VM may run on the
 * destination and need our pages, which the paused ferry-vm still holds.
 * Serve them again and tell the destination where (HOLDER_MAP, from the
 * tick once the peer answers); COMMIT or ABORT ends it as before.
 */
static enum mig_src_state src_recover_postcopy(struct mig *m,
					       enum mig_phase phase)
{
	struct mig_vm *v = mig_vm_find(m->n, m->vm, false);
	int ret = -ENOENT;

	if (v && v->kc && !v->mig) {
		m->vmp = v;
		v->mig = m;
		ret = mig_src_map(m);
	}
	if (ret) {
		mig_src_release(m, false);
		snprintf(m->reason, sizeof(m->reason),
			 "ferryd restarted during post-copy and cannot serve "
			 "the VM's pages (%s): the VM on %.64s may miss pages",
			 strerror(-ret), m->peer->name);
		return MIG_SRC_FAILED;
	}
	m->t_pause = m->t_start;
	m->reason[0] = '\0';
	pr_warn("migration %" PRIu64 " of %s: ferryd restarted during "
		"post-copy: serving its pages again",
		m->id, m->vm);
	return phase == MIG_POSTCOPY ? MIG_SRC_POSTCOPY_LOST
				     : MIG_SRC_PC_SWITCHOVER_LOST;
}

/*
 * A source whose ferryd restarted after its commit: the destination may
 * run the VM or may still wait for RESUME, or may have lost it. Ours stays
 * paused and the tick asks (RESUME) until RESUMED or ABORT says which.
 */
static enum mig_src_state src_recover_committed(struct mig *m)
{
	struct mig_vm *v = mig_vm_find(m->n, m->vm, false);

	if (!v || !v->kc || v->mig) {
		snprintf(m->reason, sizeof(m->reason),
			 "ferryd restarted after commit; the VM lives on %.64s",
			 m->peer->name);
		return MIG_SRC_COMPLETED;
	}
	m->vmp = v;
	v->mig = m;
	m->recovered = true;
	m->reason[0] = '\0';
	m->t_start = m->t_pause = mig_now(m->n);
	pr_warn("migration %" PRIu64 " of %s: ferryd restarted after commit: "
		"the VM stays paused here until %s says whether it runs there",
		m->id, m->vm, m->peer->name);
	return MIG_SRC_COMMITTED;
}

/* Where an interrupted source migration goes after a restart. */
static enum mig_src_state src_recover(struct mig *m, const struct mig_record *r)
{
	struct mig_vm *v = mig_vm_find(m->n, m->vm, false);
	struct kva_status st;

	if (r->postcopy &&
	    (r->phase == MIG_SWITCHOVER || r->phase == MIG_POSTCOPY))
		return src_recover_postcopy(m, r->phase);
	if (r->phase == MIG_COMMITTED)
		return src_recover_committed(m);
	/* before switchover the VM is ours: run it */
	if (v && v->kc && !mig_vm_status(m->n, v->kc, &st) &&
	    st.state == KVA_VM_PAUSED && !mig_vm_resume(m->n, v->kc))
		pr_info("VM %s resumed: migration %" PRIu64 " was interrupted",
			m->vm, m->id);
	return MIG_SRC_FAILED;
}

/*
 * An interrupted incoming migration: an incoming VM that never got its
 * commit is removed, and the source, which may wait for us with its copy
 * paused, is told (FAILED_UNTOLD). Not one that may have run (post-copy,
 * no VM); a committed one is resumed.
 */
static enum mig_dst_state dst_recover(struct mig *m, const struct mig_record *r)
{
	struct mig_vm *v = mig_vm_find(m->n, m->vm, false);

	if (v && v->kc &&
	    mig_vm_layout(m->n, v->kc)->state == KVA_VM_INCOMING &&
	    r->phase != MIG_COMMITTED) {
		pr_info("removing incoming VM %s of interrupted migration "
			"%" PRIu64,
			m->vm, m->id);
		mig_vm_exit(m->n, v->kc);
		mig_vm_forget(m->n, v);
		return MIG_DST_FAILED_UNTOLD;
	}
	if (!v && r->phase != MIG_COMMITTED && r->phase != MIG_POSTCOPY)
		return MIG_DST_FAILED_UNTOLD;
	if (v && v->kc && r->phase == MIG_COMMITTED) {
		mig_vm_ram_done(m->n, v->kc);
		if (!mig_vm_resume(m->n, v->kc))
			pr_info("VM %s resumed after commit", m->vm);
		m->reason[0] = '\0';
		return MIG_DST_COMPLETED;
	}
	return MIG_DST_FAILED;
}

static void load_record(struct mig_env *n, const char *name)
{
	struct mig_record r;
	struct mig_peer *p;
	struct mig *m;
	unsigned to;

	if (mig_record_get(n, name, &r))
		return;
	if (r.source && r.id >= n->next_mig_id)
		n->next_mig_id = r.id + 1;
	p = mig_peer_find(n, r.peer);
	if (!proto_name_valid(r.vm))
		p = NULL; /* not a record ferryd wrote: never acted upon */
	if (!p || !r.id ||
	    (r.known && (r.phase == MIG_COMPLETED || r.phase == MIG_FAILED ||
			 r.phase == MIG_CANCELLED || r.phase == MIG_RELEASED)))
		return; /* history: the file stays, the table keeps live ones */
	m = mig_new(n, r.source);
	if (!m)
		return;
	m->id = r.id;
	m->peer = p;
	m->started_unix = r.started;
	m->o.mode = r.mode;
	snprintf(m->vm, sizeof(m->vm), "%s", r.vm);
	snprintf(m->reason, sizeof(m->reason),
		 "ferryd restarted during the migration (phase %s)",
		 r.known ? mig_phase_name(r.phase) : "?");
	if (r.source)
		mig_src_relays_recorded(m, &r);
	to = r.source ? (unsigned)src_recover(m, &r)
		      : (unsigned)dst_recover(m, &r);
	if (mig_sm_has(r.source, to, MIG_SM_END)) {
		m->t_start = m->t_end = mig_now(n);
		pr_warn("migration %" PRIu64 " of %s: %s", m->id, m->vm,
			m->reason);
	}
	mig_to(m, to, "ferryd restarted");
}

int mig_open(struct mig_env *n)
{
	struct dirent *de;
	DIR *d;

	n->next_mig_id = 1;
	n->mig_dir_fd = open(n->mig_dir,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = n->mig_dir_fd < 0 ? NULL : mig_records_open(n);
	if (!d)
		return -EIO;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (len < 5 || len >= MIG_RECORD_NAME_MAX)
			continue;
		if (!strcmp(de->d_name + len - 4, ".src") ||
		    !strcmp(de->d_name + len - 4, ".dst"))
			load_record(n, de->d_name);
	}
	closedir(d);
	mig_records_prune(n);
	n->up = true;
	return 0;
}

void mig_close(struct mig_env *n)
{
	for (int i = 0; i < MIG_MAX; i++) {
		struct mig *m = n->migs[i];

		if (!m)
			continue;
		if (m->source && !mig_finished(m) &&
		    mig_has(m, MIG_SM_PC | MIG_SM_HELD)) {
			/* the record says so: a restart takes it up again */
			mig_src_release(m, false);
		} else if (m->source && !mig_finished(m)) {
			/* NEW: still registering, the peer never heard of it */
			mig_src_fail(m, MIG_SRC_FAILED,
				     mig_state(m) != MIG_SRC_NEW,
				     "ferryd shut down");
		}
		if (m->dst) {
			mig_dst_stop(m, "ferryd shut down", true);
			mig_dst_free(m);
		}
		free(m->todo);
		free(m->sent_bm);
		free(m);
		n->migs[i] = NULL;
	}
	mig_fabs_close(n); /* every thread joined above */
	mig_held_close(n);
	if (n->mig_dir_fd >= 0)
		close(n->mig_dir_fd);
	n->mig_dir_fd = -1;
}
