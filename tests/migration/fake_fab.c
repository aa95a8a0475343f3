// SPDX-License-Identifier: MIT
/* An in-memory fabric backend for the engine's unit tests (fake_fab.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fabric/fabric_int.h"
#include "tests/migration/fake_fab.h"

#define FAKE_ADDR "fake"

struct fake_mr {
	struct fab_mr base; /* first */
	unsigned access;
	struct fake_mr *next;
};

struct fake_op {
	struct fake_op *next;
	struct fab_ep *ep; /* NULL once its endpoint closed */
	void *buf;
	size_t len;
	uint64_t addr, key;
	void *ctx;
	int status; /* decided at post (a failure armed) or at close */
};

struct fake_dom {
	struct fab_domain base; /* first */
	pthread_mutex_t lock; /* everything below */
	struct fake_mr *mrs;
	uint64_t next_key;
	struct fake_op *ops, **tail; /* posted, in order */
	unsigned fail_n;
	int fail_status;
	bool regs_held; /* registrations wait on reg_cond meanwhile */
	int reg_fail; /* the next registration fails with it */
	pthread_cond_t reg_cond;
	struct fake_fab_counts counts;
};

static struct fake_dom *of(const struct fab_domain *d)
{
	return container_of(d, struct fake_dom, base);
}

static const char *fake_provider(const struct fab_domain *d)
{
	(void)d;
	return "fake";
}

static void fake_addr(const struct fab_domain *d, struct fab_addr *out)
{
	(void)d;
	out->len = sizeof(FAKE_ADDR);
	memcpy(out->bytes, FAKE_ADDR, sizeof(FAKE_ADDR));
}

static uint64_t fake_cpu_ns(const struct fab_domain *d)
{
	(void)d;
	return 0;
}

static int fake_reg_mr(struct fab_domain *d, void *buf, size_t len,
		       unsigned access, struct fab_mr **out)
{
	struct fake_dom *fd = of(d);
	struct fake_mr *mr = calloc(1, sizeof(*mr));
	int ret;

	if (!mr)
		return -ENOMEM;
	mr->access = access;
	pthread_mutex_lock(&fd->lock);
	fd->counts.regs_waiting++;
	while (fd->regs_held)
		pthread_cond_wait(&fd->reg_cond, &fd->lock);
	fd->counts.regs_waiting--;
	ret = fd->reg_fail;
	fd->reg_fail = 0;
	if (ret) {
		pthread_mutex_unlock(&fd->lock);
		free(mr);
		return ret;
	}
	mr->base.rkey = (struct fab_rkey){ .addr = (uintptr_t)buf,
					   .len = len,
					   .key = ++fd->next_key };
	mr->next = fd->mrs;
	fd->mrs = mr;
	fd->counts.mrs++;
	if (access & FAB_ACCESS_LOCAL)
		fd->counts.local_buf = buf;
	pthread_mutex_unlock(&fd->lock);
	*out = &mr->base;
	return 0;
}

static int fake_dereg_mr(struct fab_mr *base)
{
	struct fake_dom *fd = of(base->d);
	struct fake_mr **pp;

	pthread_mutex_lock(&fd->lock);
	for (pp = &fd->mrs; *pp && &(*pp)->base != base; pp = &(*pp)->next)
		;
	if (*pp) {
		*pp = (*pp)->next;
		fd->counts.mrs--;
	}
	pthread_mutex_unlock(&fd->lock);
	free(container_of(base, struct fake_mr, base));
	return 0;
}

static int fake_connect(struct fab_domain *d, const struct fab_addr *peer,
			struct fab_ep **out)
{
	struct fake_dom *fd = of(d);

	if (peer->len != sizeof(FAKE_ADDR) ||
	    memcmp(peer->bytes, FAKE_ADDR, sizeof(FAKE_ADDR)))
		return -EHOSTUNREACH;
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	pthread_mutex_lock(&fd->lock);
	fd->counts.eps++;
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

static void fake_ep_close(struct fab_ep *ep)
{
	struct fake_dom *fd = of(ep->d);

	pthread_mutex_lock(&fd->lock);
	/* what it had posted completes with -ECANCELED at the next poll */
	for (struct fake_op *op = fd->ops; op; op = op->next) {
		if (op->ep == ep) {
			op->ep = NULL;
			if (!op->status)
				op->status = -ECANCELED;
		}
	}
	fd->counts.eps--;
	pthread_mutex_unlock(&fd->lock);
	free(ep);
}

static int fake_read(struct fab_ep *ep, void *buf, size_t len,
		     struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx)
{
	struct fake_dom *fd = of(ep->d);
	struct fake_op *op = calloc(1, sizeof(*op));

	if (!op)
		return -EAGAIN;
	(void)mr;
	*op = (struct fake_op){ .ep = ep,
				.buf = buf,
				.len = len,
				.addr = addr,
				.key = key,
				.ctx = ctx };
	pthread_mutex_lock(&fd->lock);
	if (fd->fail_n) {
		fd->fail_n--;
		op->status = fd->fail_status;
	}
	*fd->tail = op;
	fd->tail = &op->next;
	fd->counts.inflight++;
	pthread_mutex_unlock(&fd->lock);
	return 0;
}

static int fake_write(struct fab_ep *ep, const void *buf, size_t len,
		      struct fab_mr *mr, uint64_t addr, uint64_t key, void *ctx)
{
	(void)ep, (void)buf, (void)len, (void)mr, (void)addr, (void)key;
	(void)ctx;
	return -EOPNOTSUPP;
}

static int fake_send(struct fab_ep *ep, const void *buf, size_t len, void *ctx)
{
	(void)ep, (void)buf, (void)len, (void)ctx;
	return -EOPNOTSUPP;
}

/* Read from the region op names; 0 or -errno. Lock held. */
static int perform(struct fake_dom *fd, const struct fake_op *op)
{
	for (struct fake_mr *mr = fd->mrs; mr; mr = mr->next) {
		const struct fab_rkey *rk = &mr->base.rkey;

		if (rk->key != op->key)
			continue;
		if (!(mr->access & FAB_ACCESS_READ) || op->addr < rk->addr ||
		    op->addr - rk->addr > rk->len ||
		    op->len > rk->len - (op->addr - rk->addr))
			return -EACCES;
		memcpy(op->buf, (void *)(uintptr_t)op->addr, op->len);
		return 0;
	}
	return -EACCES; /* no such key: a provider reports a remote error */
}

static int fake_poll(struct fab_domain *d, struct fab_cqe *cqes, int max,
		     int timeout_ms)
{
	struct fake_dom *fd = of(d);
	int n = 0;

	pthread_mutex_lock(&fd->lock);
	while (n < max && fd->ops) {
		struct fake_op *op = fd->ops;

		fd->ops = op->next;
		if (!fd->ops)
			fd->tail = &fd->ops;
		if (!op->status)
			op->status = perform(fd, op);
		fd->counts.failed += op->status != 0;
		fd->counts.inflight--;
		cqes[n++] = (struct fab_cqe){ .ctx = op->ctx,
					      .ep = op->ep,
					      .op = FAB_OP_READ,
					      .status = op->status,
					      .len = op->status ? 0 : op->len };
		free(op);
	}
	pthread_mutex_unlock(&fd->lock);
	if (!n && timeout_ms)
		usleep(1000); /* nothing will come: do not spin the caller */
	return n;
}

static bool fake_busy(const struct fab_domain *d, const void *addr, size_t len)
{
	struct fake_dom *fd = of(d);
	const uint8_t *a = addr;
	bool busy = false;

	pthread_mutex_lock(&fd->lock);
	for (struct fake_op *op = fd->ops; op && !busy; op = op->next)
		busy = a < (uint8_t *)op->buf + op->len &&
		       (uint8_t *)op->buf < a + len;
	pthread_mutex_unlock(&fd->lock);
	return busy;
}

static void fake_close(struct fab_domain *d)
{
	struct fake_dom *fd = of(d);

	fab_release_close(d);
	while (fd->ops) {
		struct fake_op *op = fd->ops;

		fd->ops = op->next;
		free(op);
	}
	while (fd->mrs) {
		struct fake_mr *mr = fd->mrs;

		fd->mrs = mr->next;
		free(mr);
	}
	pthread_cond_destroy(&fd->reg_cond);
	pthread_mutex_destroy(&fd->lock);
	free(fd);
}

static const struct fab_ops fake_ops = {
	.name = "fake",
	.provider = fake_provider,
	.addr = fake_addr,
	.progress_cpu_ns = fake_cpu_ns,
	.reg_mr = fake_reg_mr,
	.dereg_mr = fake_dereg_mr,
	.connect = fake_connect,
	.ep_close = fake_ep_close,
	.read = fake_read,
	.write = fake_write,
	.send = fake_send,
	.poll = fake_poll,
	.mem_busy = fake_busy,
	.close = fake_close,
};

struct fab_domain *fake_fab_open(void)
{
	struct fake_dom *fd = calloc(1, sizeof(*fd));

	if (!fd)
		return NULL;
	fd->base.ops = &fake_ops;
	fab_release_init(&fd->base);
	pthread_mutex_init(&fd->lock, NULL);
	pthread_cond_init(&fd->reg_cond, NULL);
	fd->tail = &fd->ops;
	return &fd->base;
}

void fake_fab_fail_reads(struct fab_domain *d, unsigned n, int status)
{
	struct fake_dom *fd = of(d);

	pthread_mutex_lock(&fd->lock);
	fd->fail_n = n;
	fd->fail_status = status;
	pthread_mutex_unlock(&fd->lock);
}

void fake_fab_hold_regs(struct fab_domain *d, bool hold)
{
	struct fake_dom *fd = of(d);

	pthread_mutex_lock(&fd->lock);
	fd->regs_held = hold;
	pthread_cond_broadcast(&fd->reg_cond);
	pthread_mutex_unlock(&fd->lock);
}

void fake_fab_fail_regs(struct fab_domain *d, int status)
{
	struct fake_dom *fd = of(d);

	pthread_mutex_lock(&fd->lock);
	fd->reg_fail = status;
	pthread_mutex_unlock(&fd->lock);
}

void fake_fab_counts(struct fab_domain *d, struct fake_fab_counts *out)
{
	struct fake_dom *fd = of(d);

	pthread_mutex_lock(&fd->lock);
	*out = fd->counts;
	pthread_mutex_unlock(&fd->lock);
}
