/* SPDX-License-Identifier: MIT */
#ifndef FERRY_POSTCOPY_POSTCOPY_H
#define FERRY_POSTCOPY_POSTCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/userfaultfd.h>

#include "common/bitmap.h"
#include "fabric/fabric.h"
#include "relay/relay.h"

/*
 * Post-copy's machinery on the destination, apart from the migration
 * engine that drives it: the fault server (pc_fault.c), which resolves the
 * guest's userfaultfd faults with one-sided reads from the holder, and
 * the populator (pc_populate.c), which maps announced pages in ahead of
 * the puller's reads. docs/migration.md, "Post-copy and hybrid".
 */

/*
 * The post-copy fault server (pc_fault.c): one thread per incoming VM
 * resolving its userfaultfd faults with one-sided reads from the holders:
 * the source, and the relays whose copy of a page is current.
 */
struct pc_fault;

/* The zero values are the defaults, measured by bench/postcopy. */
enum pc_fault_mode {
	PC_FAULT_COPY, /* read into a staging page, UFFDIO_COPY */
	PC_FAULT_CONTINUE, /* read into the memfd page, UFFDIO_CONTINUE */
};

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1) /* Linux 6.4, headers 6.1 */
#endif

#define PC_FAULT_VCPUS 16
#define PC_FAULT_RELAYS (RLY_HOLDERS_MAX - 1)

/* A relay the fault server may read from, besides the source. */
struct pc_fault_relay {
	struct fab_ep *ep; /* in dom, like pc_fault_params.ep */
	struct fab_rkey rkey; /* its registration of its copy */
	/* the pages current there (rly_holder_current()); copied */
	const struct rly_vrun *v;
	size_t nv;
};

struct pc_fault_params {
	int uffd; /* O_NONBLOCK; borrowed, the caller closes it */
	uint64_t uffd_base; /* ferry-vm's address of page 0 */
	bool minor; /* registered MISSING|MINOR */
	/* place pages write-protected: the uffd tracks the guest's writes */
	bool wp;
	uint8_t *map; /* ferryd's MAP_SHARED mapping of the memfd; borrowed */
	uint64_t pages;
	/*
	 * A domain for faults only: the fault thread is its one fab_poll()
	 * caller. Borrowed. ep (to the holder) is the server's from open on.
	 */
	struct fab_domain *dom;
	struct fab_ep *ep;
	struct fab_rkey rkey; /* the holder's registration of guest RAM */
	/*
	 * Relays: a fault on a page current at one is read from the holder
	 * that would serve it first (relay/, rly_choose()); a relay that
	 * fails a read is used no more, its faults go to the source.
	 */
	struct pc_fault_relay relay[PC_FAULT_RELAYS];
	unsigned nrelays;
	const uint64_t *holes; /* pages that are holes on the source, or NULL */
	/*
	 * Shared with the background puller, atomic bits: whoever sets a
	 * page's bit (0 -> 1) places that page, the puller with UFFDIO_COPY.
	 */
	uint64_t *present;
	/*
	 * Or NULL. Shared, atomic bits: the page's contents are complete in
	 * the memfd. With it a page is mapped (CONTINUE) only once placed,
	 * and a page in the memfd but not placed (allocated ahead) that nobody
	 * claimed is fetched on a MINOR fault. Set for the pages we place.
	 */
	uint64_t *placed;
	enum pc_fault_mode mode;
	/* µs to spin after activity before poll(); 0: 200, <0: never spin */
	int spin_us;
	unsigned prepage_max; /* pre-paging window cap in pages; 0: none */
	bool prepage_self; /* also fetch the pre-page queue ourselves */
};

struct pc_fault_stats {
	uint64_t missing, minor; /* fault messages */
	uint64_t served; /* fault messages resolved */
	uint64_t p50_ns, p99_ns, max_ns; /* service time, message read->wake */
	uint64_t blocktime_ns; /* sum over faults of their wait */
	uint64_t zero_pages; /* holes served by UFFDIO_ZEROPAGE */
	uint64_t prepage_queued, prepage_taken, prepaged;
	unsigned window; /* current pre-paging window */
	uint64_t stalls, stall_ns; /* holder unreachable: count, total */
	bool stalled; /* now */
	unsigned busy; /* pages being fetched or waited for */
	uint64_t holder_swaps;
	/* pages read, by holder: [0] the source, [i] relay[i - 1] */
	uint64_t pages_from[RLY_HOLDERS_MAX];
	unsigned relays_down; /* relays that failed a read */
	enum pc_fault_mode mode;
	uint32_t vcpu_tid[PC_FAULT_VCPUS]; /* with UFFD_FEATURE_THREAD_ID */
	uint64_t vcpu_blocktime_ns[PC_FAULT_VCPUS];
};

/* Claim page: true when we flipped its bit in present, false if taken. */
static inline bool pc_fault_claim(uint64_t *present, uint64_t page)
{
	uint64_t bit = 1ULL << (page % 64);

	return !(__atomic_fetch_or(&present[page / 64], bit, __ATOMIC_ACQ_REL) &
		 bit);
}

/*
 * Start the fault thread; 0 or -errno. On success p->ep and the relays'
 * endpoints are the server's.
 */
int pc_fault_open(const struct pc_fault_params *p, struct pc_fault **out);
/* Use ep / rk from now on (reconnected holder); the server owns ep. */
int pc_fault_set_holder(struct pc_fault *fs, struct fab_ep *ep,
			const struct fab_rkey *rk);
/* Up to max pages to pre-page (not yet present), for the puller. */
size_t pc_fault_prepage_take(struct pc_fault *fs, uint64_t *pages, size_t max);
/* A snapshot of the counters; any thread. */
void pc_fault_stats(struct pc_fault *fs, struct pc_fault_stats *out);
/*
 * Stop the thread and close the endpoint(s) it owns; faults read but not
 * resolved stay unresolved (UFFDIO_WAKE the range to have them again).
 * The uffd, map, domain and bitmaps go back to the caller. Accepts NULL.
 */
void pc_fault_close(struct pc_fault *fs);

/*
 * The populator (pc_populate.c): a thread that allocates and
 * MADV_POPULATE_WRITEs the announced runs of map (pages long, a MAP_SHARED
 * map of the memfd fd) ahead of the puller's receives.
 */
struct pc_pop;
/* Start it (idle until runs are added); fd stays the caller's; 0 or -errno. */
int pc_pop_start(int fd, uint8_t *map, uint64_t pages, struct pc_pop **out);
/* Queue n announced runs, in order; runs past pages are ignored. */
int pc_pop_add(struct pc_pop *p, const struct fy_run *runs, size_t n);
/* The puller receives about at page: what lies before needs no help. */
void pc_pop_hint(struct pc_pop *p, uint64_t page);
/* Pages populated so far. */
uint64_t pc_pop_done(const struct pc_pop *p);
/* Stop and free (p may be NULL); returns after its last madvise. */
void pc_pop_stop(struct pc_pop *p);

#endif /* FERRY_POSTCOPY_POSTCOPY_H */
