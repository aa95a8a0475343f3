// SPDX-License-Identifier: MIT
/*
 * Backend dispatch: parse the provider string, pick the ops table, and do
 * the checks and bookkeeping every backend shares (rkey ranges, statistics).
 */
#define LOG_PREFIX "fabric: "

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "fabric/fabric_int.h"

#define FAB_DEFAULT_PROVIDER "ofi:tcp"

static void stat_add(uint64_t *v, int64_t n)
{
	__atomic_add_fetch(v, (uint64_t)n, __ATOMIC_RELAXED);
}

static uint64_t stat_get(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

int fab_domain_open(const struct fab_opts *opts, struct fab_domain **out)
{
	struct fab_opts o = { 0 };
	const char *prov;
	int ret;

	*out = NULL;
	if (opts)
		o = *opts;
	if (!o.provider)
		o.provider = FAB_DEFAULT_PROVIDER;
	if (!o.op_timeout_ms)
		o.op_timeout_ms = 5000;

	if (!strncmp(o.provider, "ofi:", 4)) {
		prov = o.provider + 4;
		if (!*prov) {
			pr_err("empty libfabric provider in '%s'", o.provider);
			return -EINVAL;
		}
		/* ofi:verbs without node: the RDMA device's (fab_ofi_open()) */
		if (!o.node && strcmp(prov, "verbs"))
			o.node = "127.0.0.1";
		ret = fab_ofi_ops.open(prov, &o, out);
	} else if (!strcmp(o.provider, "verbs")) {
		/* node NULL: the address of the device's GID entry */
		ret = fab_verbs_ops.open(NULL, &o, out);
	} else {
		pr_err("unknown provider '%s' (want ofi:<name> or verbs)",
		       o.provider);
		return -EINVAL;
	}
	if (!ret)
		pthread_mutex_init(&(*out)->split_lock, NULL);
	return ret;
}

const char *fab_domain_provider(const struct fab_domain *d)
{
	return d->ops->provider(d);
}

void fab_domain_addr(const struct fab_domain *d, struct fab_addr *out)
{
	d->ops->addr(d, out);
}

void fab_domain_stats(const struct fab_domain *d, struct fab_stats *out)
{
	out->mr_count = stat_get(&d->stats.mr_count);
	out->mr_bytes = stat_get(&d->stats.mr_bytes);
	out->ep_count = stat_get(&d->stats.ep_count);
	out->ops_done = stat_get(&d->stats.ops_done);
	out->ops_failed = stat_get(&d->stats.ops_failed);
	out->progress_cpu_ns = d->ops->progress_cpu_ns(d);
}

int fab_mr_reg(struct fab_domain *d, void *buf, size_t len, unsigned access,
	       struct fab_mr **out)
{
	int ret;

	*out = NULL;
	if (!buf || !len || !(access & ~FAB_ACCESS_HOLES) ||
	    (access & ~(FAB_ACCESS_READ | FAB_ACCESS_WRITE | FAB_ACCESS_LOCAL |
			FAB_ACCESS_HOLES)))
		return -EINVAL;
	/*
	 * Guest RAM where registering pins: for our own use bounce buffers,
	 * for peers' the parts they may reach, as the caller grows it
	 * (docs/rdma.md, "Registration").
	 */
	if ((access & FAB_ACCESS_HOLES) && d->pins &&
	    (access & (FAB_ACCESS_READ | FAB_ACCESS_WRITE)))
		return fab_sparse_reg(d, buf, len, access, out);
	if ((access & FAB_ACCESS_HOLES) && d->pins)
		ret = fab_bounce_reg(d, out);
	else
		ret = d->ops->reg_mr(d, buf, len, access & ~FAB_ACCESS_HOLES,
				     out);
	if (ret)
		return ret;
	(*out)->d = d;
	(*out)->buf = buf;
	(*out)->len = len;
	(*out)->access = access;
	stat_add(&d->stats.mr_count, 1);
	stat_add(&d->stats.mr_bytes, (int64_t)len);
	return 0;
}

void fab_mr_rkey(const struct fab_mr *mr, struct fab_rkey *out)
{
	if (mr->sparse) {
		fab_sparse_rkey(mr, out);
		return;
	}
	out->runs = NULL;
	out->nruns = 0;
	out->addr = mr->rkey.addr;
	out->len = mr->rkey.len;
	/* verbs makes it anew when its device is back (fab_verbs_reset.c) */
	out->key = __atomic_load_n(&mr->rkey.key, __ATOMIC_RELAXED);
}

int fab_mr_grow(struct fab_mr *mr, uint64_t off, uint64_t len)
{
	if (!len || off > mr->len || len > mr->len - off)
		return -ERANGE;
	return mr->sparse ? fab_sparse_grow(mr, off, len) : 0;
}

int fab_mr_dereg(struct fab_mr *mr)
{
	struct fab_domain *d;
	size_t len;

	if (!mr)
		return 0;
	if (mr->sparse) /* its parts are counted, it is not */
		return fab_sparse_dereg(mr);
	d = mr->d;
	len = mr->len;
	/* the registration is gone even if the provider complained */
	stat_add(&d->stats.mr_count, -1);
	stat_add(&d->stats.mr_bytes, -(int64_t)len);
	if (mr->bounce) {
		free(mr);
		return 0;
	}
	return d->ops->dereg_mr(mr);
}

int fab_ep_connect(struct fab_domain *d, const struct fab_addr *peer,
		   struct fab_ep **out)
{
	int ret;

	*out = NULL;
	if (!peer->len || peer->len > FAB_ADDR_MAX)
		return -EINVAL;
	ret = d->ops->connect(d, peer, out);
	if (ret)
		return ret;
	(*out)->d = d;
	stat_add(&d->stats.ep_count, 1);
	return 0;
}

void fab_ep_close(struct fab_ep *ep)
{
	if (!ep)
		return;
	stat_add(&ep->d->stats.ep_count, -1);
	fab_split_ep_close(ep);
	ep->d->ops->ep_close(ep);
}

int fab_rma(struct fab_ep *ep, bool write, void *buf, size_t len,
	    struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx)
{
	if (mr && mr->bounce) {
		/* through a bounce slot: buf must lie inside its registration */
		if (mr->d != ep->d || (char *)buf < (char *)mr->buf ||
		    len > mr->len ||
		    (size_t)((char *)buf - (char *)mr->buf) > mr->len - len)
			return -EINVAL;
		return fab_bounce_rma(ep, write, buf, len, addr, key, ctx);
	}
	if (write)
		return ep->d->ops->write(ep, buf, len, mr, addr, key, ctx);
	return ep->d->ops->read(ep, buf, len, mr, addr, key, ctx);
}

/* [off, off + len) must lie inside the remote registration. */
static int rkey_check(const struct fab_rkey *rk, uint64_t off, size_t len)
{
	if (!len || off > rk->len || len > rk->len - off)
		return -ERANGE;
	return 0;
}

static int rma(struct fab_ep *ep, bool write, void *buf, size_t len,
	       struct fab_mr *mr, const struct fab_rkey *rk, uint64_t off,
	       void *ctx)
{
	int ret = rkey_check(rk, off, len);

	if (ret)
		return ret;
	if (rk->runs)
		return fab_split_rma(ep, write, buf, len, mr, rk, off, ctx);
	return fab_rma(ep, write, buf, len, mr, rk->addr + off, rk->key, ctx);
}

int fab_read(struct fab_ep *ep, void *buf, size_t len, struct fab_mr *mr,
	     const struct fab_rkey *rk, uint64_t off, void *ctx)
{
	return rma(ep, false, buf, len, mr, rk, off, ctx);
}

int fab_write(struct fab_ep *ep, const void *buf, size_t len, struct fab_mr *mr,
	      const struct fab_rkey *rk, uint64_t off, void *ctx)
{
	return rma(ep, true, (void *)buf, len, mr, rk, off, ctx);
}

int fab_send(struct fab_ep *ep, const void *buf, size_t len, void *ctx)
{
	if (!len || len > FAB_MSG_MAX)
		return -EMSGSIZE;
	return ep->d->ops->send(ep, buf, len, ctx);
}

int fab_poll(struct fab_domain *d, struct fab_cqe *cqes, int max,
	     int timeout_ms)
{
	int k, n, i, failed = 0;
	bool retry;

	if (max <= 0)
		return -EINVAL;
	/* split operations: parts to post, wholes done without a part */
	k = fab_split_ready(d, cqes, max, &retry);
	if (k)
		timeout_ms = 0;
	else if (retry && (timeout_ms < 0 || timeout_ms > 1))
		timeout_ms = 1;
	n = k < max ? d->ops->poll(d, cqes + k, max - k, timeout_ms) : 0;
	if (n < 0 && !k)
		return n;
	n = n < 0 ? 0 : n;
	for (i = k; i < k + n; i++)
		fab_bounce_done(d, &cqes[i]);
	n = k + fab_split_done(d, cqes + k, n);
	for (i = 0; i < n; i++)
		failed += cqes[i].status < 0;
	if (!n)
		return 0;
	stat_add(&d->stats.ops_done, n);
	if (failed)
		stat_add(&d->stats.ops_failed, failed);
	return n;
}

void fab_domain_close(struct fab_domain *d)
{
	struct fab_bounce *b;

	if (!d)
		return;
	b = d->bounce;
	fab_split_free(d);
	d->ops->close(d);
	fab_bounce_free(b);
}
