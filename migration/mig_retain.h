/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_RETAIN_H
#define FERRY_MIGRATION_MIG_RETAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "migration/migration.h"
#include "protocol/protocol.h"

/*
 * Copies of a VM's RAM beyond the running one (mig_retain.c;
 * docs/migration.md, "Retained copies"), on the control thread:
 *
 * - kept: the copy of a VM that left this node by pre-copy, kept
 *   registered for peers' reads (holder_retention), until its age or the
 *   budget runs out, `ferry release`, or the VM comes back;
 * - arrived: a VM that came here by pre-copy, with the pages its guest
 *   changed since (every harvest adds to them) and the copies peers keep
 *   of it, each with the pages that were current when it arrived.
 *
 * A peer's copy is offered to a destination only for pages changed
 * neither since it was made nor since the VM arrived here, at the
 * generation of the offer; a later change is announced at a later one,
 * so no destination reads a stale page from it.
 */

#define MIG_KEPT_MAX 16 /* copies this node keeps */
#define MIG_ARRIVED_MAX 64 /* VMs that came here, remembered */
#define MIG_REFS_MAX 4 /* copies kept elsewhere, per VM */

/* A copy a peer keeps, as a HOLDER_MAP gave it. */
struct mig_ref {
	char node[PROTO_NAME_MAX + 1];
	uint32_t addr_len;
	uint8_t addr[PROTO_ADDR_MAX];
	uint64_t key, base;
	/* its HOLDER_MAP's kr (malloc'ed), where it is registered in parts */
	struct proto_keyrun *keys;
	size_t nkeys;
	uint64_t *cur; /* pages current when the VM arrived */
};

struct mig_arrived {
	bool used;
	char vm[PROTO_NAME_MAX + 1];
	pid_t pid; /* its ferry-vm: the same VM, not one of the same name */
	uint64_t lineage, pages;
	uint64_t *changed; /* since it arrived; NULL: not tracked (all) */
	struct mig_ref refs[MIG_REFS_MAX];
	unsigned nrefs;
};

struct mig_kept {
	bool used;
	bool busy; /* an incoming migration of its VM copies from it */
	char vm[PROTO_NAME_MAX + 1];
	char to[PROTO_NAME_MAX + 1]; /* where the VM went */
	uint64_t lineage, pages, bytes, t0;
	uint8_t *map;
	struct fab_mr *mr;
	int memfd; /* the VM's RAM, for its return to adopt; -1: none */
};

struct mig_held {
	struct mig_arrived arr[MIG_ARRIVED_MAX];
	struct mig_kept kept[MIG_KEPT_MAX];
};

struct mig;
struct mig_dst;

/* The lineage of vm (pid: its ferry-vm's; 0: not ours), or a new one. */
uint64_t mig_lineage_for(struct mig_env *n, const char *vm, pid_t pid);
/* A harvest of vm (pages pages): its pages are changed since arrival. */
void mig_arrived_changed(struct mig_env *n, const char *vm, const uint64_t *bm,
			 uint64_t pages);
/*
 * Source m, at round 0 or a retarget: offer its destination the copies
 * peers keep of the VM, each for its pages unchanged since the VM
 * arrived, at m->gen (those are current at any generation). 0 or -errno.
 */
int mig_refs_send(struct mig *m);
/* May source m keep its copy once it completes (holder_retention)? */
bool mig_retain_wanted(struct mig *m);
/*
 * Source m commits (pre-copy, or hybrid without post-copy): if
 * holder_retention allows, tell the destination that we keep our copy
 * (and pass on the others'); m->retain. Post-copy says KEPT instead.
 */
void mig_retain_announce(struct mig *m);
/* Source m completed: keep its copy (m->retain) and forget its arrival. */
void mig_retain_keep(struct mig *m);
/*
 * Destination m completed: the VM arrived (tracked: from a pre-copy, with
 * its dirty log cleared before it ran), with the copies refs (taken).
 */
void mig_arrive(struct mig *m, struct mig_ref *refs, unsigned nrefs,
		bool tracked, pid_t pid);
/* The kept copy of lineage, marked busy; NULL: none. */
struct mig_kept *mig_kept_take(struct mig_env *n, uint64_t lineage);
/* Give back what mig_kept_take() lent. */
void mig_kept_put(struct mig_kept *k);
/*
 * The VM of k comes back by pre-copy: its RAM is k's memfd, which the
 * caller owns from now on, and k is dropped (what it holds changes). The
 * memfd, or -1 when k has none (the caller copies from k instead).
 */
int mig_kept_adopt(struct mig_kept *k);
/* Drop the kept copies past holder_retention_age_s. */
void mig_held_tick(struct mig_env *n, uint64_t now);
/* Free everything (shutdown). */
void mig_held_close(struct mig_env *n);
/* Free ref r's bitmap. */
void mig_ref_free(struct mig_ref *r);

#endif /* FERRY_MIGRATION_MIG_RETAIN_H */
