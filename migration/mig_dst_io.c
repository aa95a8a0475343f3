// SPDX-License-Identifier: MIT
/*
 * The destination thread's primitives, for its engine (mig_dst.c and
 * its inbox, mig_dst_inbox.c), post-copy (mig_post*.c) and checksums
 * (mig_csum.c): its transition function, its first reason to fail, and
 * the messages it queues for the source.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"

void mig_dst_out(struct mig_dst *d, struct proto_msg *msg)
{
	struct mig_qmsg *q = calloc(1, sizeof(*q));

	if (!q) {
		proto_msg_free(msg);
		return;
	}
	q->m = msg;
	pthread_mutex_lock(&d->lock);
	*d->out_tail = q;
	d->out_tail = &q->next;
	pthread_mutex_unlock(&d->lock);
	mig_kick(d->n->mig_efd);
}

bool mig_dst_has(const struct mig_dst *d, unsigned flags)
{
	/* the thread is the only writer: it reads without the lock */
	return mig_sm_has(false, d->sm->state, flags);
}

int mig_dst_to(struct mig_dst *d, enum mig_dst_state to, const char *why)
{
	struct mig_record r = { .id = d->id, .mode = d->mode };
	unsigned from = d->sm->state;
	int ret;

	if (mig_sm_fault(false, "before", to))
		return -EIO;
	pthread_mutex_lock(&d->lock);
	ret = mig_sm_move(d->sm, to);
	snprintf(r.reason, sizeof(r.reason), "%s", d->reason);
	pthread_mutex_unlock(&d->lock);
	if (ret) {
		dst_err(d, "refused: no move from %s to %s (%s)",
			mig_sm_name(false, from), mig_sm_name(false, to), why);
		return ret;
	}
	pr_debug("%" PRIu64 ": %s -> %s: %s", d->id, mig_sm_name(false, from),
		 mig_sm_name(false, to), why);
	snprintf(r.vm, sizeof(r.vm), "%s", d->vm);
	snprintf(r.peer, sizeof(r.peer), "%s", d->peer);
	r.phase = mig_sm_phase(false, to);
	r.postcopy = mig_sm_has(false, to, MIG_SM_PC);
	r.started = d->started;
	mig_record_put(d->n, &r);
	mig_kick(d->n->mig_efd);
	mig_sm_fault(false, "after", to);
	return 0;
}

int mig_dst_fail(struct mig_dst *d, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&d->lock);
	if (!d->reason[0]) {
		va_start(ap, fmt);
		vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&d->lock);
	return -1;
}

struct proto_msg *mig_dst_gen_msg(struct mig_dst *d, enum proto_type t)
{
	struct proto_msg *m = calloc(1, sizeof(*m));

	if (m) {
		m->type = t;
		m->commit.mig = d->id;
		m->commit.gen = d->gen;
	}
	return m;
}
