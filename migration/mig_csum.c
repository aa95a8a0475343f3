// SPDX-License-Identifier: MIT
/*
 * --verify. On the source: at switchover, checksum every page of the
 * paused VM in a thread of its own while the control thread sends the
 * chunks done so far as VERIFY messages (from mig_tick()). On the
 * destination (its thread): compare them with the pages it pulled.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "migration/mig_dst.h"

/*
 * Checksums per VERIFY: 32 Ki pages (128 MiB of RAM, 256 KiB of message),
 * so that D compares one chunk while S computes the next.
 */
#define CSUMS_PER_MSG (1u << 15)

/*
 * --verify: checksum every page, chunk by chunk, in a thread of its own:
 * 1 GiB takes about half a second, and the control thread must keep
 * answering PINGs meanwhile (a peer silent for peer_timeout_ms is taken
 * for dead).
 */
static void *csum_main(void *arg)
{
	struct mig *m = arg;

	for (uint64_t c = 0; c < m->csum_nchunks; c++) {
		uint64_t s = c * CSUMS_PER_MSG;
		uint64_t n = FY_MIN(m->pages - s, CSUMS_PER_MSG);
		int ret;

		if (__atomic_load_n(&m->csum_stop, __ATOMIC_ACQUIRE))
			break;
		ret = mig_memfd_csums(m->csum_fd, m->map, m->pages, s, n,
				      m->csums + s);
		if (ret) {
			/* read by the control thread at any time */
			__atomic_store_n(&m->csum_ret, ret, __ATOMIC_RELAXED);
			break;
		}
		__atomic_store_n(&m->csum_done, c + 1, __ATOMIC_RELEASE);
		mig_kick(m->n->mig_efd);
	}
	mig_kick(m->n->mig_efd);
	return NULL;
}

int mig_csum_start(struct mig *m)
{
	int ret;

	m->csum_nchunks = (m->pages + CSUMS_PER_MSG - 1) / CSUMS_PER_MSG;
	m->csums = malloc(m->pages * 8);
	if (!m->csums)
		return -ENOMEM;
	m->csum_fd = mig_vm_layout(m->n, m->vmp->kc)->regions[0].memfd;
	m->csum_done = m->csum_sent = 0;
	m->csum_stop = false;
	m->csum_ret = 0;
	ret = -pthread_create(&m->csum_thread, NULL, csum_main, m);
	if (ret)
		return ret;
	pthread_setname_np(m->csum_thread, "ferry-csum");
	m->csum_running = true;
	return 0;
}

void mig_csum_end(struct mig *m)
{
	if (m->csum_running) {
		__atomic_store_n(&m->csum_stop, true, __ATOMIC_RELEASE);
		pthread_join(m->csum_thread, NULL);
		m->csum_running = false;
	}
	free(m->csums);
	m->csums = NULL;
}

bool mig_csum_send(struct mig *m, int *ret)
{
	uint64_t done = __atomic_load_n(&m->csum_done, __ATOMIC_ACQUIRE);
	struct proto_msg v = { .type = PROTO_VERIFY };

	*ret = 0;
	for (; m->csum_sent < done && !*ret; m->csum_sent++) {
		uint64_t s = m->csum_sent * CSUMS_PER_MSG;

		v.verify.mig = m->id;
		v.verify.start = s;
		v.verify.len = FY_MIN(m->pages - s, CSUMS_PER_MSG) * 8;
		v.verify.csums = (uint8_t *)(m->csums + s); /* little-endian */
		*ret = mig_send(m, &v);
	}
	if (!*ret)
		*ret = __atomic_load_n(&m->csum_ret, __ATOMIC_RELAXED);
	return m->csum_sent == m->csum_nchunks;
}

/* Destination */

/*
 * Compare the queued VERIFY chunks with our copy. A VERIFY follows the last
 * DIRTY_SET, so once nothing is left to pull our pages are final: D
 * compares each chunk as it comes, while S computes the next one.
 */
int mig_csum_compare(struct mig_dst *d)
{
	const struct kva_layout *l = mig_vm_layout(d->n, d->kc);
	uint64_t *mine;
	int ret = 0;

	for (unsigned i = 0; i < d->nvq && !ret; i++) {
		const struct fy_run *r = &d->vq[i];

		mine = malloc(r->len * 8);
		if (!mine)
			return mig_dst_fail(d, "out of memory");
		ret = mig_memfd_csums(l->regions[0].memfd, d->map, d->pages,
				      r->start, r->len, mine);
		for (uint64_t j = 0; !ret && j < r->len; j++)
			if (mine[j] != d->csums[r->start + j] && !d->vbad++)
				d->vfirst = r->start + j;
		free(mine);
		d->vdone += r->len;
	}
	d->nvq = 0;
	if (ret)
		return mig_dst_fail(d, "verify: cannot read guest RAM: %s",
				    strerror(-ret));
	return 0;
}

/* All checksums compared: the verdict. */
int mig_csum_verdict(struct mig_dst *d)
{
	if (mig_csum_compare(d))
		return -1;
	if (d->csums_got != d->pages || d->vdone != d->pages)
		return mig_dst_fail(d,
				    "verify: got checksums of %" PRIu64
				    " of %" PRIu64 " pages",
				    d->csums_got, d->pages);
	if (d->vbad) {
		pr_err("%" PRIu64 " (%s from %s): VERIFY FAILED: %" PRIu64
		       " pages differ, first page %" PRIu64,
		       d->id, d->vm, d->peer, d->vbad, d->vfirst);
		return mig_dst_fail(d,
				    "verify: %" PRIu64 " of %" PRIu64 " pages "
				    "differ "
				    "(first: "
				    "page %" PRIu64 ")",
				    d->vbad, d->pages, d->vfirst);
	}
	pthread_mutex_lock(&d->lock);
	d->verified = d->pages;
	pthread_mutex_unlock(&d->lock);
	pr_info("%" PRIu64 " (%s from %s): verify: all %" PRIu64 " pages match",
		d->id, d->vm, d->peer, d->pages);
	return 0;
}
