// SPDX-License-Identifier: MIT
/*
 * The destination's puller thread seen from the control thread: start it,
 * hand it the source's messages, take back what it has to send and its
 * counters, stop it, join it. The thread itself is mig_dst.c, which
 * takes those messages in mig_dst_inbox.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fabric/fabric.h"
#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"

int mig_dst_start(struct mig *m, const struct proto_migrate_prepare *p)
{
	struct mig_dst *d;
	int ret;

	if (!proto_name_valid(p->vm))
		return -EINVAL; /* the decoder checked it: a name, not a path */
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->n = m->n;
	d->id = m->id;
	snprintf(d->vm, sizeof(d->vm), "%s", p->vm);
	snprintf(d->peer, sizeof(d->peer), "%s", m->peer->name);
	d->pages = p->regions[0].pages;
	d->vcpus = p->vcpus;
	if (kva_accel_parse(p->accel, &d->accel) ||
	    d->accel == KVA_ACCEL_AUTO) {
		ret = -EINVAL; /* the decoder checked it: kvm or user */
		goto err_free;
	}
	d->mode = m->o.mode;
	d->started = m->started_unix;
	m->lineage = d->lineage = p->lineage;
	d->ram_fd = -1;
	d->kept = mig_kept_take(m->n, p->lineage);
	if (d->kept && d->kept->pages == d->pages) {
		struct fab_rkey rk;

		/* the VM comes back: it runs on what we kept, or we copy */
		fab_mr_rkey(d->kept->mr, &rk);
		d->local_key = rk.key;
		d->local_map = d->kept->map;
		/* post-copy needs holes where a page is missing */
		if (d->mode == PROTO_MODE_PRECOPY)
			d->ram_fd = mig_kept_adopt(d->kept);
		if (d->ram_fd >= 0) {
			d->kept = NULL; /* dropped: the VM's RAM now */
			d->local_map = NULL;
			d->adopted = true;
		}
	}
	d->sm = &m->sm;
	d->in_tail = &d->in;
	d->out_tail = &d->out;
	ret = mig_vm_sock_path(m->n, d->vm, d->sock, sizeof(d->sock));
	if (ret)
		goto err_free;
	if (d->pages * FY_PAGE_SIZE < (16ULL << 20) || d->pages % 512) {
		ret = -EINVAL;
		goto err_free;
	}
	d->fabs = mig_fabs_take(m->n);
	if (!d->fabs) {
		ret = -ENOSPC; /* more than MIG_LIMIT_MAX at once */
		goto err_free;
	}
	d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->efd < 0) {
		ret = -errno;
		goto err_put;
	}
	pthread_mutex_init(&d->lock, NULL);
	/* from now on the thread moves m->sm, under d->lock */
	m->dst = d;
	ret = -pthread_create(&d->thread, NULL, mig_dst_thread, d);
	if (ret)
		goto err_close;
	pthread_setname_np(d->thread, "ferry-pull");
	return 0;
err_close:
	m->dst = NULL;
	pthread_mutex_destroy(&d->lock);
	close(d->efd);
err_put:
	mig_fabs_put(d->fabs);
err_free:
	mig_kept_put(d->kept);
	if (d->ram_fd >= 0)
		close(d->ram_fd);
	free(d);
	return ret;
}

/*
 * A peer may start MIG_PREPARE_BURST migrations here at once, then one
 * every MIG_PREPARE_EVERY_S: each one spawns a ferry-vm and writes a record.
 */
static bool prepare_allowed(struct mig_env *n, struct mig_peer *p)
{
	uint64_t now = mig_now(n), every = MIG_PREPARE_EVERY_S * 1000000000ULL;
	uint64_t floor = now > MIG_PREPARE_BURST * every
				 ? now - MIG_PREPARE_BURST * every
				 : 0;

	/* prepare_t: when the bucket was last empty, moving with each take */
	if (p->prepare_t < floor)
		p->prepare_t = floor;
	if (p->prepare_t + every > now)
		return false;
	p->prepare_t += every;
	return true;
}

/* Incoming migrations whose thread runs (and holds a set of domains). */
static unsigned incoming(const struct mig_env *n)
{
	unsigned c = 0;

	for (int i = 0; i < MIG_MAX; i++)
		c += n->migs[i] && n->migs[i]->dst;
	return c;
}

/* Do we run source migration id to p? */
static bool sending(struct mig_env *n, const struct mig_peer *p, uint64_t id)
{
	struct mig *m = mig_find(n, id, true, p);

	return m && !mig_finished(m);
}

/*
 * Why MIGRATE_PREPARE pp of peer p is refused (rate, ids, mode,
 * accelerator, names, max_incoming): an errno, with its text in text, or
 * 0.
 */
static int prepare_refusal(struct mig_env *n, struct mig_peer *p,
			   const struct proto_migrate_prepare *pp, char *text,
			   size_t len)
{
	int code = 0;

	if (!prepare_allowed(n, p)) {
		code = EAGAIN;
		snprintf(text, len,
			 "more than %u MIGRATE_PREPAREs in %u s; try again "
			 "later",
			 MIG_PREPARE_BURST,
			 MIG_PREPARE_BURST * MIG_PREPARE_EVERY_S);
	} else if (mig_find(n, pp->mig, false, p)) {
		code = EEXIST;
		snprintf(text, len, "migration %" PRIu64 " is known here",
			 pp->mig);
	} else if (sending(n, p, pp->mig)) {
		/* both started at once: messages of either way would mix */
		code = EEXIST;
		snprintf(text, len,
			 "%s sends its own migration %" PRIu64 " to %s now; "
			 "try again",
			 n->cfg.name, pp->mig, p->name);
	} else if (pp->nregions != 1 || pp->page_size != FY_PAGE_SIZE) {
		/* the decoder checked the mode */
		code = ENOTSUP;
		snprintf(text, len, "only one region of 4 KiB pages");
	} else if (!strcmp(pp->accel, "user") && !p->accept_user_vms) {
		/* its guest code would run natively in our ferry-vm */
		code = EPERM;
		snprintf(text, len,
			 "%s does not accept VMs of the user accelerator from "
			 "%s (accept_user_vms in its [peer %s])",
			 n->cfg.name, p->name, p->name);
	} else if (!strcmp(pp->accel, "kvm") &&
		   access("/dev/kvm", R_OK | W_OK)) {
		/* ferry-vm --accel kvm would fail here: say why, up front */
		code = ENODEV;
		snprintf(text, len,
			 "%s has no usable /dev/kvm: it can receive only VMs "
			 "of the user accelerator",
			 n->cfg.name);
	} else if (mig_vm_find(n, pp->vm, false)) {
		code = EEXIST;
		snprintf(text, len, "a VM called %s exists on %s", pp->vm,
			 n->cfg.name);
	} else if (incoming(n) >= n->cfg.max_incoming) {
		code = EBUSY;
		snprintf(text, len,
			 "%s receives as many VMs as its max_incoming allows "
			 "(%u); try again later",
			 n->cfg.name, n->cfg.max_incoming);
	}
	return code;
}

/* Destination: MIGRATE_PREPARE arrives. */
void mig_dst_prepare(struct mig_env *n, struct mig_peer *p,
		     struct proto_msg *msg)
{
	const struct proto_migrate_prepare *pp = &msg->prepare;
	struct proto_msg e = { .type = PROTO_ERROR };
	struct mig_vm *vm;
	struct mig *m;
	int code;

	e.error.mig = pp->mig;
	code = prepare_refusal(n, p, pp, e.error.text, sizeof(e.error.text));
	if (!code && !(m = mig_new(n, false))) {
		code = ENOSPC;
		snprintf(e.error.text, sizeof(e.error.text),
			 "too many migrations");
	}
	if (!code) {
		m->id = pp->mig;
		m->peer = p;
		snprintf(m->vm, sizeof(m->vm), "%s", pp->vm);
		m->o.mode = proto_mode_parse(pp->mode);
		m->pages = pp->regions[0].pages;
		m->vcpus = pp->vcpus;
		mig_to(m, MIG_DST_PREPARE, "MIGRATE_PREPARE");
		vm = mig_vm_add(n, pp->vm);
		if (!vm) {
			code = ENOSPC;
			snprintf(e.error.text, sizeof(e.error.text),
				 "too many VMs");
		} else {
			vm->mig = m;
			m->vmp = vm;
			code = -mig_dst_start(m, pp);
			if (code)
				snprintf(e.error.text, sizeof(e.error.text),
					 "cannot start the receiving side: %s",
					 strerror(code));
		}
		if (code) {
			snprintf(m->reason, sizeof(m->reason), "%.500s",
				 e.error.text);
			if (m->vmp)
				mig_vm_forget(n, m->vmp);
			m->vmp = NULL;
			mig_to(m, MIG_DST_FAILED, m->reason);
		} else {
			pr_info("%" PRIu64 " (%s from %s): incoming: %" PRIu64
				" MiB, %u vCPUs",
				m->id, m->vm, p->name,
				m->pages * FY_PAGE_SIZE >> 20, m->vcpus);
		}
	}
	if (code) {
		e.error.code = code;
		pr_warn_limited(&p->warn,
				"refusing migration %" PRIu64 " of %s from %s: "
				"%s",
				pp->mig, pp->vm, p->name, e.error.text);
		mig_peer_send(n, p, &e);
	}
	proto_msg_free(msg);
}

void mig_dst_push(struct mig *m, struct proto_msg *msg)
{
	struct mig_dst *d = m->dst;
	size_t size = proto_msg_size(msg);
	struct mig_qmsg *q;
	bool over;

	if (!d || !(q = calloc(1, sizeof(*q)))) {
		proto_msg_free(msg);
		return;
	}
	q->m = msg;
	pthread_mutex_lock(&d->lock);
	/* a source cannot make us hold more than this, however slow we are */
	over = d->in_n >= MIG_INBOX_MSGS ||
	       d->in_bytes + size > MIG_INBOX_BYTES;
	if (!over) {
		*d->in_tail = q;
		d->in_tail = &q->next;
		d->in_n++;
		d->in_bytes += size;
	} else if (!d->stop) {
		d->stop = true;
		snprintf(d->stop_reason, sizeof(d->stop_reason),
			 "the source sent more than %u messages or %llu MiB "
			 "faster than they were taken",
			 MIG_INBOX_MSGS, MIG_INBOX_BYTES >> 20);
		/* the first reason wins: this one, even if setup fails next */
		if (!d->reason[0])
			snprintf(d->reason, sizeof(d->reason), "%s",
				 d->stop_reason);
	}
	pthread_mutex_unlock(&d->lock);
	if (over) {
		pr_warn_limited(&m->peer->warn,
				"%" PRIu64 ": %s from %s dropped: the "
				"migration's inbox is full",
				m->id, proto_type_name(msg->type),
				m->peer->name);
		proto_msg_free(msg);
		free(q);
	}
	mig_kick(d->efd);
}

void mig_dst_stop(struct mig *m, const char *reason, bool always)
{
	struct mig_dst *d = m->dst;

	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->stop_always |= always;
	if (!d->stop) {
		d->stop = true;
		snprintf(d->stop_reason, sizeof(d->stop_reason), "%s", reason);
	}
	pthread_mutex_unlock(&d->lock);
	mig_kick(d->efd);
}

bool mig_dst_poll(struct mig *m)
{
	struct mig_dst *d = m->dst;
	struct mig_qmsg *q, *next, *last;
	bool done;

	if (!d)
		return false;
	pthread_mutex_lock(&d->lock);
	q = d->out;
	d->out = NULL;
	d->out_tail = &d->out;
	m->round = d->round;
	m->gen = d->gen;
	m->pages_valid = d->pages_valid;
	m->pages_pulled = d->pages_pulled;
	m->bytes = d->bytes;
	m->verified_pages = d->verified;
	m->pcs = d->pcs;
	m->stall_t0 = d->stall_t0;
	m->t_resumed = d->t_resumed;
	m->o.verify = d->verified > 0;
	if (m->vmp && !d->done)
		m->vmp->pid = d->pid_pub; /* reaped by the thread, not by us */
	if (d->reason[0])
		snprintf(m->reason, sizeof(m->reason), "%s", d->reason);
	if (d->handed && m->vmp) {
		/* the VM is the node's now, and what we know of its copies */
		mig_arrive(m, d->refs, d->nrefs, d->tracked, d->pid_out);
		d->nrefs = 0;
		m->vmp->kc = d->kc_out;
		/* the control thread's calls wait no longer than its own */
		mig_vm_set_timeout(m->n, d->kc_out, m->n->cfg.vm_timeout_ms);
		m->vmp->pid = d->pid_out;
		m->vmp->mig = NULL;
		m->vmp = NULL;
		d->kc_out = NULL;
	}
	done = d->done;
	pthread_mutex_unlock(&d->lock);
	for (; q; q = next) {
		next = q->next;
		if (mig_peer_send(m->n, m->peer, q->m)) {
			/*
			 * Not connected to the source yet (it restarted and
			 * our side reconnects) or for now: keep the rest, in
			 * order, for the next tick. A source that stays
			 * silent is stopped for it below (mig_tick).
			 */
			pr_debug("%" PRIu64 ": cannot send %s to %s yet", m->id,
				 proto_type_name(q->m->type), m->peer->name);
			last = q;
			while (last->next)
				last = last->next;
			pthread_mutex_lock(&d->lock);
			last->next = d->out;
			if (!d->out)
				d->out_tail = &last->next;
			d->out = q;
			pthread_mutex_unlock(&d->lock);
			break;
		}
		proto_msg_free(q->m);
		free(q);
	}
	if (done && !m->t_end) {
		m->t_end = mig_now(m->n);
		if (m->vmp && !d->handed) {
			mig_vm_forget(m->n, m->vmp);
			m->vmp = NULL;
		}
	}
	return done;
}

void mig_dst_free(struct mig *m)
{
	struct mig_dst *d = m->dst;
	struct mig_qmsg *q, *next;

	if (!d)
		return;
	pthread_join(d->thread, NULL);
	mig_dst_poll(m);
	mig_kept_put(d->kept);
	for (unsigned i = 0; i < d->nrefs; i++)
		mig_ref_free(&d->refs[i]);
	for (size_t i = 0; i < d->nkeytabs; i++)
		free(d->keytabs[i]);
	free(d->keytabs);
	/* what the source could not be sent by now is dropped */
	for (q = d->out; q; q = next) {
		next = q->next;
		pr_warn("%" PRIu64 ": cannot send %s to %s", m->id,
			proto_type_name(q->m->type), m->peer->name);
		proto_msg_free(q->m);
		free(q);
	}
	for (q = d->in; q; q = next) {
		next = q->next;
		proto_msg_free(q->m);
		free(q);
	}
	pthread_mutex_destroy(&d->lock);
	close(d->efd);
	mig_fabs_put(d->fabs);
	free(d);
	m->dst = NULL;
}
