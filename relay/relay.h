/* SPDX-License-Identifier: MIT */
#ifndef FERRY_RELAY_RELAY_H
#define FERRY_RELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The pull scheduler of a destination: which run of needed pages it reads
 * next, and from which holder (a peer with a copy of the VM's RAM: the
 * source, later relays). For each run the candidates are the holders whose
 * copy is current (generation >= the one the destination needs; the source
 * always is). The pages needed are split into shares, one per holder,
 * sized by each holder's measured bandwidth, a relay's where its copy
 * serves (the rest is the source's); a holder that runs out takes the
 * tail of the slowest holder's share (work stealing); a failed holder is
 * marked down and its runs go back to the others; the source is the
 * fallback and only the engine marks it down.
 *
 * Pure code: no threads, no fabric, no clock (times are passed in, in ns).
 * One thread calls it. Every count and index it is given is checked.
 */

#define RLY_HOLDERS_MAX 8 /* holders of one migration, the source included */
#define RLY_SOURCE 0 /* the source's index: always a holder, always current */
#define RLY_VRUNS_MAX 65536 /* version runs of one holder's copy */
#define RLY_SEGS_MAX 32 /* shares, after the splits of work stealing */
#define RLY_RUN_MAX 4096 /* pages of one read */
#define RLY_INFLIGHT_MAX 256 /* reads in flight at one holder */
#define RLY_PAGES_MAX (1ULL << 36)
#define RLY_PAGE_SIZE 4096ULL

struct rly;

/* A run of a holder's copy: pages [start, start + len) at generation gen. */
struct rly_vrun {
	uint64_t start, len;
	uint64_t gen;
};

/*
 * One read: pages [start, start + pages) from holder. A value the caller
 * keeps from rly_take() until rly_done() or rly_fail().
 */
struct rly_read {
	uint64_t start, pages;
	uint64_t t_post; /* set by rly_take() */
	unsigned holder;
	int seg; /* the share it came from (rly_next()); -1: rly_choose() */
};

/* What the scheduler knows of a holder (tests, metrics). */
struct rly_holder_info {
	uint64_t id;
	uint64_t bw; /* bytes/s, measured; 0: not yet */
	unsigned inflight;
	uint64_t inflight_pages, pages_done, fails;
	bool down;
};

/*
 * Open a scheduler over pages pages, whose needed pages are the set bits
 * of need (borrowed: the caller sets bits when pages are announced and
 * keeps need until rly_close(); the scheduler clears a run's bits when it
 * is taken and sets them again when a failed read is requeued). The
 * source, with id source_id, is holder RLY_SOURCE. 0, -EINVAL (pages 0 or
 * over RLY_PAGES_MAX, need NULL), -ENOMEM.
 */
int rly_open(uint64_t pages, uint64_t *need, uint64_t source_id,
	     struct rly **out);
/* Free r (NULL accepted); need stays the caller's. */
void rly_close(struct rly *r);

/*
 * Add a holder (a relay) whose copy is nv runs v (copied: sorted,
 * disjoint, non-empty, inside the pages); pages outside them it does not
 * hold. Its index goes to *idx. 0, -EINVAL, -ENOSPC (RLY_HOLDERS_MAX),
 * -ENOMEM.
 */
int rly_holder_add(struct rly *r, uint64_t id, const struct rly_vrun *v,
		   size_t nv, unsigned *idx);
/* Replace a relay's copy (a newer holder map): as rly_holder_add(). */
int rly_holder_map(struct rly *r, unsigned idx, const struct rly_vrun *v,
		   size_t nv);
/*
 * The engine marks holder idx down (no reads go there) or up again; the
 * shares are planned again. 0 or -EINVAL.
 */
int rly_holder_down(struct rly *r, unsigned idx, bool down);
/*
 * The runs of pages relay idx may serve now (its copy current for the
 * generation each page needs), into *v (allocated, the caller frees it)
 * and *nv: for the post-copy fault server, once the maps and the needs
 * are final. 0, -EINVAL (the source, or not a holder), -ENOMEM.
 */
int rly_holder_current(const struct rly *r, unsigned idx, struct rly_vrun **v,
		       size_t *nv);
/* Holder idx as the scheduler sees it. 0 or -EINVAL. */
int rly_holder_info(const struct rly *r, unsigned idx,
		    struct rly_holder_info *out);

/*
 * The destination needs pages [start, start + n) at generation gen (a
 * DIRTY_SET of that generation). 0 or -EINVAL (outside the pages).
 */
int rly_want(struct rly *r, uint64_t start, uint64_t n, uint64_t gen);
/*
 * Plan the shares again from the pages needed now and each holder's
 * bandwidth; every cursor goes back to the beginning of its share (a new
 * pass over the pages).
 */
void rly_rewind(struct rly *r);

/*
 * The next read: a run of at most max needed pages and the holder to read
 * it from, into *rd. No page leaves need until rly_take(): the caller may
 * shorten rd->pages (to at least 1) and must take it, or drop it, before
 * any other call. With one holder the runs come in the order of a cursor
 * over need (the next needed page at or after it, wrapping), each up to
 * the next page not needed. 0, -EINVAL (max 0 or over RLY_RUN_MAX),
 * -ENODATA (nothing needed), -EAGAIN (pages needed, no holder can take a
 * read now).
 */
int rly_next(struct rly *r, uint64_t max, struct rly_read *rd);
/*
 * The holder to read a given run from (a fault, a pre-page, a read to
 * post again): of the up holders current for all of it, one chosen in
 * proportion to how soon each would finish it (its bandwidth over what it
 * has in flight), so that one read at a time still splits by bandwidth
 * and a holder not yet measured is tried; else the source. Into *rd, to rly_take(). 0, -EINVAL, -EAGAIN
 * (the source is down and no other holder is current).
 */
int rly_choose(struct rly *r, uint64_t start, uint64_t n, struct rly_read *rd);
/*
 * The caller reads *rd now: its pages leave need, a share's cursor moves
 * past it, it counts in flight at its holder from now. 0, -EINVAL (a read
 * that is not valid), -EBUSY (RLY_INFLIGHT_MAX reads at that holder).
 */
int rly_take(struct rly *r, struct rly_read *rd, uint64_t now);
/* A taken read completed at now: its holder's bandwidth. 0 or -EINVAL. */
int rly_done(struct rly *r, const struct rly_read *rd, uint64_t now);
/*
 * A taken read failed: a relay is marked down and the shares are planned
 * again (the source stays up: the engine decides). With requeue its pages
 * are needed again (set in need), for any holder; without, the caller
 * reads them again itself (rly_choose()). 0 or -EINVAL.
 */
int rly_fail(struct rly *r, const struct rly_read *rd, bool requeue);

#endif /* FERRY_RELAY_RELAY_H */
