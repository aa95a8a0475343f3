// SPDX-License-Identifier: MIT
/*
 * The fabric domains of the incoming migrations (struct mig_fabs).
 *
 * A domain has one completion queue, and fab_poll() hands out whatever is
 * in it: two destination threads polling one domain would each take the
 * other's completions and drop them as foreign, and both would stall. So
 * each incoming migration reads through a domain of its own, and its
 * fault server (post-copy) polls a second one alone, where faults never
 * queue behind the background reads.
 *
 * The control thread takes a free set when a MIGRATE_PREPARE is accepted
 * (mig_dst_start()) and puts it back once the thread is joined
 * (mig_dst_free()); between the two only that thread touches it, and
 * opens its domains on first use through the host (mig_host_ops.fab_open).
 * Domains are kept for the next migration, not closed: closing one can
 * crash ofi_rxm while a peer's response is still on its way
 * (docs/fabric.md), so they are closed only at mig_close(). There are at
 * most max_incoming sets in use, so at most that many are ever opened.
 */
#include <errno.h>
#include <string.h>

#include "fabric/fabric.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"

struct mig_fabs *mig_fabs_take(struct mig_env *n)
{
	struct mig_fabs *f = NULL;

	/* a set already opened first: never more sets than ever at once */
	for (int i = 0; i < MIG_LIMIT_MAX; i++) {
		struct mig_fabs *c = &n->in_fabs[i];

		if (!c->busy && (!f || (c->pull && !f->pull)))
			f = c;
	}
	if (f)
		f->busy = true;
	return f;
}

/* Drop completions nobody took: the next owner must not see them. */
static void drain(struct fab_domain *d)
{
	struct fab_cqe c[64];

	while (d && fab_poll(d, c, ARRAY_SIZE(c), 0) > 0)
		;
}

void mig_fabs_put(struct mig_fabs *f)
{
	if (!f)
		return;
	drain(f->pull);
	drain(f->fault);
	f->busy = false;
}

/*
 * A free set's fault domain has no progress thread and nobody polls it:
 * the control thread does, now and then, so that it acts on its device's
 * events (verbs: a removed device is let go of from a poll).
 */
void mig_fabs_tick(struct mig_env *n)
{
	for (int i = 0; i < MIG_LIMIT_MAX; i++)
		if (!n->in_fabs[i].busy)
			drain(n->in_fabs[i].fault);
}

int mig_fabs_open(struct mig_dst *d, bool fault, struct fab_domain **out)
{
	struct fab_domain **dom = fault ? &d->fabs->fault : &d->fabs->pull;
	int ret;

	if (!*dom) {
		ret = d->n->ops->fab_open(d->n->host, fault, dom);
		if (ret) {
			*dom = NULL;
			return ret;
		}
	}
	*out = *dom;
	return 0;
}

void mig_fabs_close(struct mig_env *n)
{
	for (int i = 0; i < MIG_LIMIT_MAX; i++) {
		struct mig_fabs *f = &n->in_fabs[i];

		if (f->fault)
			n->ops->fab_close(n->host, f->fault);
		if (f->pull)
			n->ops->fab_close(n->host, f->pull);
		memset(f, 0, sizeof(*f));
	}
}
