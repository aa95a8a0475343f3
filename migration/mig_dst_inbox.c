// SPDX-License-Identifier: MIT
/*
 * The destination thread's inbox: the source's messages, as the control
 * thread queued them (mig_dst_push()), taken in order by the puller
 * (mig_dst.c) once per turn:
 *
 *   HOLDER_MAP(S)   connect to S's fabric address; its key and base (a
 *                   later one: S registered more of its copy, the newest
 *                   keys count; once the VM runs here: S's ferryd came
 *                   back, post-copy reconnects)
 *   HOLDER_MAP(R)   another node's: a relay to pull from as well
 *   RETARGET        stop pulling, become a relay (mig_dst_relay.c)
 *   DIRTY_SET       mark the runs needed
 *   DELTA_SET       map and register a buffer for S's encoded round
 *   VERIFY          keep S's checksums
 *   POSTCOPY        switchover to post-copy
 *   SWITCHOVER      the last DIRTY_SET came: finish when all pulled
 *   STATE           the vCPU blob
 *   RESUME          the source committed
 *   KEPT            post-copy: the source keeps its copy after COMMIT
 *   ABORT / ERROR   give up (ignored once the VM runs here); a relay's
 *                   ABORT releases it
 *
 * The first message that fails the migration wins; the rest are freed
 * unread.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/fault.h"
#include "fabric/fabric.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"

static int on_holder_map(struct mig_dst *d, const struct proto_holder_map *h)
{
	struct fab_addr a = { .len = h->addr_len };
	int ret;

	/*
	 * The first map after our yes is the source's; then ours (a copy we
	 * kept), in the commit window copies kept elsewhere, or relays.
	 */
	if (d->nhold &&
	    (!strcmp(h->node, d->n->cfg.name) || d->sm->state == MIG_DST_READY))
		return mig_dst_kept_map(d, h);
	if (d->nhold && strcmp(h->node, d->hold[RLY_SOURCE].node))
		return mig_dst_add_relay(d, h);
	if (h->nregions != 1 || h->regions[0].len != d->pages * FY_PAGE_SIZE)
		return mig_dst_fail(d, "source's holder map does "
				       "not match");
	memcpy(a.bytes, h->addr, h->addr_len);
	if (d->ep && !mig_dst_has(d, MIG_SM_RUNS) &&
	    (a.len != d->src_addr.len ||
	     memcmp(a.bytes, d->src_addr.bytes, a.len)))
		return mig_dst_fail(d, "a second HOLDER_MAP");
	d->src_addr = a;
	if (mig_dst_rkey(d, &h->regions[0], &d->rk))
		return mig_dst_fail(d, "out of memory");
	if (mig_dst_has(d, MIG_SM_RUNS)) {
		/* the source's ferryd came back */
		mig_post_holder(d);
		return 0;
	}
	if (d->ep) /* more of the source's copy is registered */
		return 0;
	snprintf(d->hold[RLY_SOURCE].node, sizeof(d->hold[0].node), "%s",
		 h->node);
	d->nhold = 1;
	ret = fab_ep_connect(d->fab, &a, &d->ep);
	if (ret)
		return mig_dst_fail(d,
				    "cannot reach the source's "
				    "fabric address: %s",
				    strerror(-ret));
	/* post-copy's endpoints now, not in the downtime */
	ret = d->mode != PROTO_MODE_PRECOPY ? mig_post_prepare(d) : 0;
	if (ret)
		return mig_dst_fail(d, "cannot prepare post-copy: %s",
				    strerror(-ret));
	if (mig_dst_to(d, MIG_DST_PRECOPY, "HOLDER_MAP"))
		return mig_dst_fail(d, "unexpected HOLDER_MAP");
	return 0;
}

/* n more pages announced at generation gen: a new round once pulls began. */
static void announced(struct mig_dst *d, uint64_t gen, uint64_t n)
{
	pthread_mutex_lock(&d->lock);
	if (gen != d->gen && d->pages_pulled)
		d->round++;
	d->gen = gen;
	d->pending += n;
	d->pages_valid = d->pages - d->pending;
	pthread_mutex_unlock(&d->lock);
	d->progress_dirty = true;
	mig_dst_round_fault(d->round);
}

static int on_dirty_set(struct mig_dst *d, const struct proto_dirty_set *ds)
{
	uint64_t added = 0, local = 0;

	if (!d->ep)
		return mig_dst_fail(d, "DIRTY_SET before the "
				       "source's holder "
				       "map");
	if (ds->region != 0)
		return mig_dst_fail(d, "DIRTY_SET for region %u", ds->region);
	for (size_t i = 0; i < ds->nruns; i++) {
		const struct fy_run *r = &ds->runs[i];

		if (r->start + r->len > d->pages)
			return mig_dst_fail(d, "DIRTY_SET past the "
					       "end of RAM");
		for (uint64_t p = r->start; p < r->start + r->len; p++) {
			if (d->seen)
				fy_bit_set(d->seen, p);
			if (mig_dst_local_page(d, p, ds->gen)) {
				local++;
				continue;
			}
			if (!fy_bit_test(d->need, p)) {
				fy_bit_set(d->need, p);
				added++;
			}
		}
		/* what a holder's copy must be to serve them (checked above) */
		rly_want(d->rly, r->start, r->len, ds->gen);
	}
	if (!mig_dst_has(d, MIG_SM_PC)) /* post-copy punches them out */
		pc_pop_add(d->pop, ds->runs, ds->nruns);
	if (local) {
		/* pulled, in effect: the source counts them in */
		pthread_mutex_lock(&d->lock);
		d->bytes += local * FY_PAGE_SIZE;
		d->pages_pulled += local;
		pthread_mutex_unlock(&d->lock);
	}
	announced(d, ds->gen, added);
	return 0;
}

static int on_delta_set(struct mig_dst *d, const struct proto_delta_set *ds)
{
	int ret;

	if (!d->ep || d->djob || ds->region != 0 || ds->pages > d->pages ||
	    ds->len > ds->pages * (FY_PAGE_SIZE + 16))
		return mig_dst_fail(d, "unexpected DELTA_SET");
	d->dbuf = mmap(NULL, ds->len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->dbuf == MAP_FAILED) {
		d->dbuf = NULL;
		return mig_dst_fail(d, "out of memory for a "
				       "DELTA_SET");
	}
	d->djob = true;
	d->dlen = ds->len;
	d->dposted = d->ddone = 0;
	d->dpages = ds->pages;
	d->drk.addr = ds->base;
	d->drk.len = ds->len;
	d->drk.key = ds->key;
	ret = fab_mr_reg(d->fab, d->dbuf, d->dlen, FAB_ACCESS_LOCAL, &d->dmr);
	if (ret)
		return mig_dst_fail(d,
				    "cannot register a DELTA_SET "
				    "buffer: %s",
				    strerror(-ret));
	announced(d, ds->gen, ds->pages);
	return 0;
}

static int on_verify(struct mig_dst *d, const struct proto_verify *v)
{
	uint64_t n = v->len / 8;

	if (v->region != 0 || v->start + n > d->pages)
		return mig_dst_fail(d, "VERIFY outside guest RAM");
	if (!d->csums)
		d->csums = calloc(d->pages, 8);
	if (!d->csums)
		return mig_dst_fail(d, "out of memory");
	if (d->nvq == ARRAY_SIZE(d->vq))
		return mig_dst_fail(d, "VERIFY: too many chunks at "
				       "once");
	memcpy(d->csums + v->start, v->csums, v->len);
	d->csums_got += n;
	d->vq[d->nvq].start = v->start;
	d->vq[d->nvq++].len = n;
	return 0;
}

/* One message of the source. Returns -1 to give up. */
static int take(struct mig_dst *d, struct proto_msg *msg)
{
	switch (msg->type) {
	case PROTO_HOLDER_MAP:
		return on_holder_map(d, &msg->holder_map);
	case PROTO_DIRTY_SET:
		return on_dirty_set(d, &msg->dirty);
	case PROTO_DELTA_SET:
		return on_delta_set(d, &msg->delta);
	case PROTO_VERIFY:
		return on_verify(d, &msg->verify);
	case PROTO_POSTCOPY:
		if (d->mode == PROTO_MODE_PRECOPY || !d->seen ||
		    mig_dst_to(d, MIG_DST_PC_SWITCHOVER, "POSTCOPY"))
			return mig_dst_fail(d, "unexpected POSTCOPY");
		dst_info(d,
			 "switchover to post-copy: %" PRIu64 " pages still "
			 "to fetch",
			 d->pending);
		return 0;
	case PROTO_SWITCHOVER:
		if (mig_dst_to(d, MIG_DST_SWITCHOVER, "SWITCHOVER"))
			return mig_dst_fail(d, "unexpected SWITCHOVER");
		if (d->adopted && mig_dst_trim(d))
			return -1;
		dst_info(d, "switchover: %" PRIu64 " pages still to pull",
			 d->pending);
		return 0;
	case PROTO_KEPT:
		return mig_dst_kept_src(d);
	case PROTO_RESUME:
		if (!d->ready_ns)
			return mig_dst_fail(d, "RESUME before READY");
		d->resume = true;
		return 0;
	case PROTO_STATE:
		if (d->blob || d->t_ready)
			return mig_dst_fail(d, "a second STATE");
		d->blob = msg->state.blob;
		d->blob_len = msg->state.len;
		msg->state.blob = NULL; /* ours now */
		msg->state.len = 0;
		return 0;
	case PROTO_RETARGET:
		if (d->sm->state != MIG_DST_PRECOPY || d->retarget || d->djob)
			return mig_dst_fail(d, "unexpected RETARGET");
		d->retarget = true;
		dst_info(d,
			 "retarget to %s: the reads in flight, then we relay",
			 msg->retarget.node);
		fy_fault("dst:retarget");
		return 0;
	case PROTO_ABORT:
		if (d->sm->state == MIG_DST_RELAY) {
			/* the source's word that no one reads our copy now */
			d->released = d->quiet_abort = true;
			/* under the lock: the control thread reads it */
			return mig_dst_fail(d, "%s", msg->abort.reason);
		}
		if (mig_dst_has(d, MIG_SM_RUNS)) {
			dst_err(d,
				"ABORT after the VM resumed here, ignored: %s",
				msg->abort.reason);
			return 0;
		}
		d->quiet_abort = true;
		return mig_dst_fail(d, "the source aborted: %s",
				    msg->abort.reason);
	case PROTO_ERROR:
		if (mig_dst_has(d, MIG_SM_RUNS)) {
			dst_err(d, "ERROR after the VM resumed here: %s",
				msg->error.text);
			return 0;
		}
		d->quiet_abort = true;
		return mig_dst_fail(d, "the source sent ERROR %d: %s",
				    msg->error.code, msg->error.text);
	default:
		return mig_dst_fail(d, "unexpected %s",
				    proto_type_name(msg->type));
	}
}

int mig_dst_drain(struct mig_dst *d)
{
	struct mig_qmsg *q, *next;
	int ret = 0;

	char why[sizeof(d->stop_reason)];

	pthread_mutex_lock(&d->lock);
	q = d->in;
	d->in = NULL;
	d->in_tail = &d->in;
	d->in_n = 0;
	d->in_bytes = 0;
	/* once the VM runs here only a shutdown stops the thread */
	ret = d->stop && (!mig_sm_has(false, d->sm->state, MIG_SM_RUNS) ||
			  d->stop_always)
		      ? -1
		      : 0;
	memcpy(why, d->stop_reason, sizeof(why));
	pthread_mutex_unlock(&d->lock);
	if (ret)
		mig_dst_fail(d, "%s", why);
	for (; q; q = next) {
		next = q->next;
		if (!ret)
			ret = take(d, q->m);
		proto_msg_free(q->m);
		free(q);
	}
	return ret;
}
