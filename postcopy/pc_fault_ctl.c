// SPDX-License-Identifier: MIT
/*
 * The post-copy fault server seen from outside (postcopy/postcopy.h): open
 * it with its thread (pc_fault.c), point it at a new holder, read its
 * figures, close it.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOG_PREFIX "fault: "
#include "common/log.h"
#include "common/util.h"
#include "postcopy/pc_int.h"

/* The relays' scheduler, its holders in the order of p->relay. */
static int relays_open(struct pc_fault *fs, const struct pc_fault_params *p)
{
	unsigned idx;
	int ret;

	if (!p->nrelays)
		return 0;
	fs->need = calloc((p->pages + 63) / 64, sizeof(*fs->need));
	if (!fs->need)
		return -ENOMEM;
	ret = rly_open(p->pages, fs->need, 0, &fs->rly);
	for (unsigned i = 0; !ret && i < p->nrelays; i++) {
		ret = rly_holder_add(fs->rly, i + 1, p->relay[i].v,
				     p->relay[i].nv, &idx);
		fs->p.relay[i].v = NULL; /* the scheduler has the runs */
	}
	return ret;
}

int pc_fault_open(const struct pc_fault_params *p, struct pc_fault **out)
{
	struct pc_fault *fs;
	int ret;

	if (p->uffd < 0 || !p->map || !p->pages || !p->dom || !p->ep ||
	    !p->present || p->nrelays > PC_FAULT_RELAYS)
		return -EINVAL;
	for (unsigned i = 0; i < p->nrelays; i++)
		if (!p->relay[i].ep)
			return -EINVAL;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->p = *p;
	ret = relays_open(fs, p);
	if (ret)
		goto err_relays;
	if (fs->p.mode == PC_FAULT_CONTINUE && !fs->p.minor)
		fs->p.mode = PC_FAULT_COPY; /* zero-copy needs MINOR */
	if (!fs->p.spin_us)
		fs->p.spin_us = PC_FAULT_SPIN_US;
	fs->window = 1;
	fs->hist = calloc(HBUCKETS, sizeof(*fs->hist));
	if (!fs->hist) {
		ret = -ENOMEM;
		goto err_relays;
	}
	pthread_mutex_init(&fs->lock, NULL);
	if (fs->p.mode == PC_FAULT_COPY) {
		fs->staging =
			mmap(NULL, SLOTS * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (fs->staging == MAP_FAILED) {
			ret = -errno;
			fs->staging = NULL;
			goto err_hist;
		}
		ret = fab_mr_reg(p->dom, fs->staging, SLOTS * FY_PAGE_SIZE,
				 FAB_ACCESS_LOCAL, &fs->stage_mr);
	} else {
		ret = fab_mr_reg(p->dom, p->map, p->pages * FY_PAGE_SIZE,
				 FAB_ACCESS_LOCAL | FAB_ACCESS_HOLES,
				 &fs->map_mr);
	}
	if (ret) {
		pr_err("register buffers: %s", strerror(-ret));
		goto err_unmap;
	}
	/* the server owns the endpoint from here on */
	fs->ep = p->ep;
	fs->rkey = p->rkey;
	ret = -pthread_create(&fs->thread, NULL, pc_fault_thread, fs);
	if (ret) {
		fs->ep = NULL;
		goto err_dereg;
	}
	pthread_setname_np(fs->thread, "ferry-fault");
	*out = fs;
	return 0;

err_dereg:
	fab_mr_dereg(fs->stage_mr);
	fab_mr_dereg(fs->map_mr);
err_unmap:
	if (fs->staging)
		munmap(fs->staging, SLOTS * FY_PAGE_SIZE);
err_hist:
	pthread_mutex_destroy(&fs->lock);
	free(fs->hist);
err_relays:
	rly_close(fs->rly);
	free(fs->need);
	free(fs);
	return ret;
}

int pc_fault_set_holder(struct pc_fault *fs, struct fab_ep *ep,
			const struct fab_rkey *rk)
{
	if (!ep || !rk)
		return -EINVAL;
	pthread_mutex_lock(&fs->lock);
	/* a swap not yet taken is replaced: its endpoint is ours to close */
	if (fs->have_new)
		fab_ep_close(fs->new_ep);
	fs->new_ep = ep;
	fs->new_rkey = *rk;
	fs->have_new = true;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

void pc_fault_stats(struct pc_fault *fs, struct pc_fault_stats *out)
{
	unsigned k;

	pthread_mutex_lock(&fs->lock);
	*out = fs->st;
	out->p50_ns = pc_hist_pct(fs->hist, fs->st.served, 50);
	out->p99_ns = pc_hist_pct(fs->hist, fs->st.served, 99);
	if (out->p99_ns > out->max_ns)
		out->p99_ns = out->max_ns;
	if (out->p50_ns > out->p99_ns)
		out->p50_ns = out->p99_ns;
	if (fs->stalled)
		out->stall_ns += fy_now_ns() - fs->stall_t0;
	for (k = 0; k < PC_FAULT_VCPUS; k++) {
		out->vcpu_tid[k] = fs->tids[k].tid;
		out->vcpu_blocktime_ns[k] = fs->tids[k].ns;
	}
	out->mode = fs->p.mode;
	pthread_mutex_unlock(&fs->lock);
}

void pc_fault_close(struct pc_fault *fs)
{
	if (!fs)
		return;
	atomic_store(&fs->stop, true);
	pthread_join(fs->thread, NULL);
	fab_ep_close(fs->ep);
	if (fs->have_new)
		fab_ep_close(fs->new_ep);
	for (unsigned i = 0; i < fs->p.nrelays; i++)
		fab_ep_close(fs->p.relay[i].ep);
	rly_close(fs->rly);
	free(fs->need);
	/* a read the provider still holds may write the staging pages */
	fab_mem_release(fs->p.dom, fs->staging, SLOTS * FY_PAGE_SIZE,
			fs->stage_mr, FAB_RELEASE_MUNMAP);
	fab_mr_dereg(fs->map_mr);
	pthread_mutex_destroy(&fs->lock);
	free(fs->hist);
	free(fs);
}
