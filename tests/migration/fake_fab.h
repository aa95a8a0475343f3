/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_MIGRATION_FAKE_FAB_H
#define FERRY_TESTS_MIGRATION_FAKE_FAB_H

#include "fabric/fabric.h"

/*
 * An in-memory fabric for the engine's unit tests: a domain behind
 * fabric's backend ops (struct fab_ops, fabric/fabric_int.h), without a
 * provider. Its address is "fake"; endpoints connect only to it. A read
 * of a region registered on the same domain (FAB_ACCESS_READ) is a
 * memcpy, done in the order posted when the reader polls. Writes and
 * sends, which the engine does not use, are refused (-EOPNOTSUPP). Any
 * thread.
 */

/* What the domain did, and what it holds now. */
struct fake_fab_counts {
	unsigned failed; /* reads completed with an error */
	unsigned inflight; /* posted, not yet polled */
	unsigned eps, mrs; /* open, live */
	unsigned regs_waiting; /* registrations held (fake_fab_hold_regs) */
	/* the last registration with FAB_ACCESS_LOCAL: a reader's buffer */
	void *local_buf;
};

/* A domain the test owns: close it with fab_domain_close(). */
struct fab_domain *fake_fab_open(void);
/* The next n reads posted complete with status (-errno), copying nothing. */
void fake_fab_fail_reads(struct fab_domain *d, unsigned n, int status);
/*
 * While hold, registrations wait (a device that pins, slowly) until
 * called again with false.
 */
void fake_fab_hold_regs(struct fab_domain *d, bool hold);
/* The next registration fails with status (-errno). */
void fake_fab_fail_regs(struct fab_domain *d, int status);
void fake_fab_counts(struct fab_domain *d, struct fake_fab_counts *out);

#endif /* FERRY_TESTS_MIGRATION_FAKE_FAB_H */
