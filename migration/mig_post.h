/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_POST_H
#define FERRY_MIGRATION_MIG_POST_H

#include "migration/mig_dst.h"

/*
 * The destination's post-copy, inside: its state and the steps its
 * beginning and end (mig_post_begin.c) share with the background pull
 * (mig_post.c). mig_post_begin.c calls mig_post.c, never the other way.
 */

/* pages per background read: a fault waits for one at most */
#define MIG_PC_RUN 256
/* reconnecting to a lost holder: the first wait, doubled up to 2 s */
#define MIG_PC_BACKOFF_MIN_NS (100 * 1000000ULL)

struct nd_post {
	int uffd;
	uint64_t uffd_base;
	bool minor;
	bool wp; /* place pages write-protected (kva_layout.uffd_wp) */
	uint64_t *present, *holes;
	uint64_t *placed; /* shared with the fault server: contents complete */
	/*
	 * Zero-copy (with MINOR registration): reads land in the memfd
	 * through ferryd's mapping, allocated ahead by the populator, and a
	 * run is mapped with UFFDIO_CONTINUE once complete; else reads land in
	 * the staging buffer and UFFDIO_COPY places them.
	 */
	bool zc;
	bool quarantine; /* zc: a closed endpoint's reads may still land */
	uint64_t *unmapped; /* minor: pre-copied pages not CONTINUEd yet */
	uint64_t cont_cursor;
	struct fab_domain *fdom; /* the fault server's alone (mig_fab.c) */
	struct fab_ep *fep; /* the fault server's, until it starts */
	struct pc_fault *fs;
	uint8_t *stage;
	size_t stage_len; /* zc: two pages, for the warm-up reads */
	struct fab_mr *stage_mr;
	uint64_t next_stats;
	bool fault_stalled; /* as of the last PC_STATS */
	uint64_t prepaged; /* pages we fetched for the fault server */
	uint64_t relayed; /* pages we read from relays */
	/* the fault server's relay i is holder fault_holder[i] */
	unsigned fault_holder[PC_FAULT_RELAYS];
	unsigned nfault_relays;
	/* postcopy_bw's bucket: bytes the background pull may read now */
	int64_t pace_bytes;
	uint64_t pace_t;
	bool broken; /* our endpoint failed: connect again */
	uint64_t reconnect_at, backoff;
};

/* mig_post.c, for mig_post_begin.c */

/* Map and register d->post's staging buffer of stage_len. 0 or -errno. */
int mig_post_stage_alloc(struct mig_dst *d);
/* Hand the staging buffer to the fabric, which unmaps it when idle. */
void mig_post_stage_free(struct mig_dst *d);
/* An endpoint of the fault domain to the holder; NULL if unreachable. */
struct fab_ep *mig_post_fault_ep(struct mig_dst *d);
/* Close our endpoint; its reads are no longer posted. */
void mig_post_drop_ep(struct mig_dst *d);
/* Send PC_STATS and PROGRESS now; the next in 200 ms. */
void mig_post_stats(struct mig_dst *d, uint64_t now);

#endif /* FERRY_MIGRATION_MIG_POST_H */
