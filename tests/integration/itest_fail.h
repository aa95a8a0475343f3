/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_INTEGRATION_ITEST_FAIL_H
#define FERRY_TESTS_INTEGRATION_ITEST_FAIL_H

/*
 * Helpers of the failure tests (test_migrate_fail.c: the phases before the
 * commit; test_migrate_window.c: the commit window): two nodes a and b, a
 * guest on a, a migration to b stopped at a fault point (docs/testing.md,
 * "Fault points") of the phase that the test means, and the checks that
 * every such test makes afterwards.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <jansson.h>

#include "itest.h"

extern const char *ferry_vm_bin;
extern struct node na, nb;
/* The guest on a; the incoming ferry-vm on b, once incoming() found it. */
extern pid_t vm_pid, inc_pid;

/*
 * Nodes a and b from new state directories, listing each other, both up
 * and reachable; a peer that does not answer for peer_ms is unreachable.
 * a's ferryd starts with FERRY_FAULT=fa, b's with fb (NULL: none).
 */
void two_nodes(unsigned peer_ms, const char *fa, const char *fb);
/* Start a ferry-vm (vm_pid) called name under n's vm_dir; ferryd lists it. */
void start_vm(struct node *n, const char *name, const char *const *opts);
/* Start a detached migration of name from a to b; its id in id. */
void migrate_detached(const char *name, char *id, size_t len,
		      const char *const *opts);
/*
 * two_nodes(), a guest name on a that has written, a detached migration
 * (opts, NULL-terminated) to b.
 */
void begin(const char *name, const char *const *guest, unsigned peer_ms,
	   const char *fa, const char *fb, const char *const *opts, char *id,
	   size_t len);
/*
 * The incoming ferry-vm: b's ferryd's child (b running or stopped, not
 * dead: the orphan of a dead one is init's). Kept in inc_pid, which
 * fail_teardown() kills.
 */
pid_t incoming(void);
/* SIGKILL n's ferryd and reap it. */
void sigkill_node(struct node *n);
/* SIGCONT n's ferryd, stopped at its fault point. */
void sigcont_node(struct node *n);

/* `ferry --json migration ID` on n: the report, NULL if ferry failed. */
json_t *mig(struct node *n, const char *id);
/* A migration report's "state" ("" without one). */
const char *state_of(const json_t *j);
/* A migration report's "reason" ("" without one). */
const char *reason_of(const json_t *j);
/* Wait up to secs for migration id on n to fail; its report. */
json_t *wait_failed(struct node *n, const char *id, double secs);
/* Wait up to secs for migration id on n to be in state want; its report. */
json_t *wait_mig(struct node *n, const char *id, const char *want, double secs);
/* n sees its peer unreachable (it did not answer for the peer timeout). */
void wait_unreachable(struct node *n);

/* The VM runs on at a: running, not migrated, checking, and unharmed. */
void source_runs_on(const char *name);
/* a's VM name is there and paused, migration id in state want. */
void source_paused(const char *name, const char *id, const char *want);
/* b keeps no VM, process, socket, registration or running migration. */
void dest_clean(pid_t inc, double secs);
/* Neither ferryd crashed (only the test's SIGKILLs end them). */
void no_crash(void);

/* Per test: the VMs and the orphaned incoming ferry-vm killed, teardown(). */
int fail_teardown(void **state);

#endif /* FERRY_TESTS_INTEGRATION_ITEST_FAIL_H */
