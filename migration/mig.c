// SPDX-License-Identifier: MIT
/*
 * A migration's base: the phases it shows, its state (mig_sm.c's
 * tables) read and moved by the control thread's transition function,
 * and sending to its peer. The source's engine is mig_src.c (its
 * decisions) over mig_src_io.c (its actions); the destination's is
 * mig_dst*.c; mig_ctl.c routes messages, ticks and commands to them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"

unsigned mig_state(const struct mig *m)
{
	unsigned s;

	if (!m->dst)
		return m->sm.state;
	pthread_mutex_lock(&m->dst->lock);
	s = m->sm.state;
	pthread_mutex_unlock(&m->dst->lock);
	return s;
}

enum mig_phase mig_phase_of(const struct mig *m)
{
	return mig_sm_phase(m->source, mig_state(m));
}

bool mig_has(const struct mig *m, unsigned flags)
{
	return mig_sm_has(m->source, mig_state(m), flags);
}

uint64_t mig_pc_ns(const struct mig *m, uint64_t end)
{
	return m->t_resumed ? end - m->t_resumed : m->pcs.duration;
}

bool mig_finished(const struct mig *m)
{
	return mig_has(m, MIG_SM_END);
}

int mig_to(struct mig *m, unsigned to, const char *why)
{
	unsigned from = m->sm.state;

	/* a destination's thread moves its state while it runs */
	if (m->dst || mig_sm_fault(m->source, "before", to) ||
	    mig_sm_move(&m->sm, to)) {
		mig_err(m, "refused: no move from %s to %s (%s)",
			mig_sm_name(m->source, from),
			mig_sm_name(m->source, to), why);
		return -EINVAL;
	}
	pr_debug("%" PRIu64 ": %s -> %s: %s", m->id,
		 mig_sm_name(m->source, from), mig_sm_name(m->source, to), why);
	mig_save_record(m);
	mig_sm_fault(m->source, "after", to);
	m->n->next_mig_tick_ns = 0; /* the tick acts on it at once */
	return 0;
}

unsigned mig_active(const struct mig_env *n)
{
	unsigned c = 0;

	for (int i = 0; i < MIG_MAX; i++)
		c += n->migs[i] && !mig_finished(n->migs[i]);
	return c;
}

int mig_send(struct mig *m, const struct proto_msg *msg)
{
	int ret = mig_peer_send(m->n, m->peer, msg);

	if (ret)
		mig_err(m, "cannot send %s: %s", proto_type_name(msg->type),
			strerror(-ret));
	return ret;
}

void mig_send_abort(struct mig *m, const char *reason)
{
	struct proto_msg a = { .type = PROTO_ABORT };

	a.abort.mig = m->id;
	snprintf(a.abort.reason, sizeof(a.abort.reason), "%s", reason);
	mig_peer_send(m->n, m->peer, &a);
}

void mig_save_record(struct mig *m)
{
	struct mig_record r = {
		.id = m->id,
		.source = m->source,
		.phase = mig_phase_of(m),
		.postcopy = mig_has(m, MIG_SM_PC),
		.started = m->started_unix,
		.mode = m->o.mode,
	};

	snprintf(r.vm, sizeof(r.vm), "%s", m->vm);
	snprintf(r.peer, sizeof(r.peer), "%s", m->peer->name);
	snprintf(r.reason, sizeof(r.reason), "%s", m->reason);
	for (unsigned i = 0; i < m->nrelays; i++)
		if (m->relays[i].state != MIG_RELAY_GONE)
			snprintf(r.relays[r.nrelays++], sizeof(r.relays[0]),
				 "%s", m->relays[i].peer->name);
	mig_record_put(m->n, &r);
}

/* Old records */

struct record_age {
	time_t mtime;
	char name[MIG_RECORD_NAME_MAX];
};

static int record_newer(const void *a, const void *b)
{
	const struct record_age *x = a, *y = b;

	return (y->mtime > x->mtime) - (y->mtime < x->mtime);
}

/* Is name the record of a migration still running? */
static bool record_live(struct mig_env *n, const char *name)
{
	char own[MIG_RECORD_NAME_MAX];

	for (int i = 0; i < MIG_MAX; i++) {
		struct mig *m = n->migs[i];
		struct mig_record r;

		if (!m || mig_finished(m))
			continue;
		r.source = m->source;
		r.id = m->id;
		snprintf(r.peer, sizeof(r.peer), "%s", m->peer->name);
		mig_record_name(&r, own, sizeof(own));
		if (!strcmp(own, name))
			return true;
	}
	return false;
}

void mig_records_prune(struct mig_env *n)
{
	time_t now = time(NULL);
	struct record_age *r = NULL;
	size_t nr = 0, cap = 0;
	uint64_t top = 0;
	struct dirent *de;
	struct stat st;
	char top_name[32];
	DIR *d;

	d = mig_records_open(n);
	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		unsigned long long id;
		char end;

		if (len < 5 || len >= sizeof(r->name) ||
		    (strcmp(de->d_name + len - 4, ".src") &&
		     strcmp(de->d_name + len - 4, ".dst")) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode) || record_live(n, de->d_name))
			continue;
		if (sscanf(de->d_name, "%llu.sr%c", &id, &end) == 2 &&
		    end == 'c' && id > top)
			top = id;
		if (nr == cap) {
			struct record_age *g;

			cap = cap ? cap * 2 : 64;
			g = realloc(r, cap * sizeof(*r));
			if (!g)
				break;
			r = g;
		}
		r[nr].mtime = st.st_mtime;
		snprintf(r[nr++].name, sizeof(r->name), "%s", de->d_name);
	}
	snprintf(top_name, sizeof(top_name), "%" PRIu64 ".src", top);
	if (nr) /* r is NULL without records */
		qsort(r, nr, sizeof(*r), record_newer);
	for (size_t i = 0; i < nr; i++) {
		if ((i < MIG_RECORDS_MAX &&
		     now - r[i].mtime <= MIG_RECORDS_AGE_S) ||
		    !strcmp(r[i].name, top_name))
			continue;
		if (unlinkat(dirfd(d), r[i].name, 0))
			pr_perror("cannot remove old record %s", r[i].name);
	}
	closedir(d);
	free(r);
}

/* The table */

struct mig *mig_new(struct mig_env *n, bool source)
{
	int slot = -1;
	struct mig *m;

	if (n->up) /* not while mig_open() reads them */
		mig_records_prune(n);

	for (int i = 0; i < MIG_MAX && slot < 0; i++)
		if (!n->migs[i])
			slot = i;
	/* full: drop the oldest finished one */
	for (int i = 0; i < MIG_MAX && slot < 0; i++)
		if (mig_finished(n->migs[i]) && !n->migs[i]->dst) {
			free(n->migs[i]->todo);
			free(n->migs[i]->sent_bm);
			free(n->migs[i]);
			n->migs[i] = NULL;
			slot = i;
		}
	if (slot < 0)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->n = n;
	m->source = m->sm.source = source;
	m->t_start = m->last_heard = mig_now(n);
	m->started_unix = (uint64_t)time(NULL);
	n->migs[slot] = m;
	return m;
}

struct mig *mig_find(struct mig_env *n, uint64_t id, bool source,
		     const struct mig_peer *p)
{
	struct mig *found = NULL;

	/* a running one first: ids are unique per source, not per node */
	for (int i = 0; i < MIG_MAX; i++) {
		struct mig *m = n->migs[i];

		if (m && m->id == id && m->source == source &&
		    (!p || m->peer == p)) {
			if (!mig_finished(m))
				return m;
			found = m;
		}
	}
	return found;
}

struct mig *mig_find_relay(struct mig_env *n, uint64_t id,
			   const struct mig_peer *p)
{
	for (int i = 0; i < MIG_MAX; i++) {
		struct mig *m = n->migs[i];

		if (!m || !m->source || m->id != id || mig_finished(m))
			continue;
		for (unsigned k = 0; k < m->nrelays; k++)
			if (m->relays[k].peer == p &&
			    (m->relays[k].state == MIG_RELAY_DRAINING ||
			     m->relays[k].state == MIG_RELAY_SERVING))
				return m;
	}
	return NULL;
}

void mig_kick(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_perror("eventfd");
}

uint64_t mig_id(const struct mig *m)
{
	return m->id;
}

const char *mig_peer_state_name(enum mig_peer_state s)
{
	switch (s) {
	case MIG_PEER_CONNECTING:
		return "connecting";
	case MIG_PEER_REACHABLE:
		return "reachable";
	case MIG_PEER_UNREACHABLE:
		return "unreachable";
	case MIG_PEER_INCOMPATIBLE:
		return "incompatible";
	}
	return "?";
}

/* The host */

int mig_peer_send(struct mig_env *n, struct mig_peer *p,
		  const struct proto_msg *msg)
{
	return n->ops->send(n->host, p, msg);
}

enum mig_peer_state mig_peer_state(struct mig_env *n, const struct mig_peer *p,
				   uint64_t now)
{
	return n->ops->peer_state(n->host, p, now);
}

struct mig_peer *mig_peer_find(struct mig_env *n, const char *name)
{
	return n->ops->peer_find(n->host, name);
}

struct mig_vm *mig_vm_find(struct mig_env *n, const char *name, bool rescan)
{
	return n->ops->vm_find(n->host, name, rescan);
}

struct mig_vm *mig_vm_add(struct mig_env *n, const char *name)
{
	return n->ops->vm_add(n->host, name);
}

void mig_vm_forget(struct mig_env *n, struct mig_vm *vm)
{
	n->ops->vm_forget(n->host, vm);
}

int mig_vm_spawn(struct mig_env *n, const char *name, uint64_t mem,
		 unsigned vcpus, enum kva_accel accel, int ram_fd, pid_t *pid)
{
	return n->ops->vm_spawn(n->host, name, mem, vcpus, accel, ram_fd, pid);
}

int mig_vm_sock_path(struct mig_env *n, const char *name, char *buf, size_t len)
{
	return n->ops->vm_sock_path(n->host, name, buf, len);
}

int mig_vm_unlink_sock(struct mig_env *n, const char *name)
{
	return n->ops->vm_unlink_sock(n->host, name);
}
