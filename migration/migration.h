/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIGRATION_H
#define FERRY_MIGRATION_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>

#include <msgpack.h>

/*
 * The migration engine (docs/migration.md, docs/architecture.md): every
 * migration of this node, source and destination, as state machines. The
 * daemon (node/) calls it from its control thread: at start, on each
 * migration message from a peer, on its timer, on the control socket's
 * migration commands, and at shutdown.
 */

struct nd_node;
struct nd_peer;
struct nd_mig;
struct proto_msg;
struct proto_ctl_req;

/* Load the records of earlier migrations; fail interrupted ones. */
int nd_migs_open(struct nd_node *n);
/* A migration message (or an ERROR about one) from peer p; takes m. */
void nd_mig_handle(struct nd_node *n, struct nd_peer *p, struct proto_msg *m);
/* Timers, peer loss, destination threads' news; returns when to call again. */
void nd_migs_tick(struct nd_node *n, uint64_t now);
/*
 * Control socket commands, decoded by proto_ctl_decode(): migrate,
 * migrations, migration, cancel, migrate-postcopy, force-resume.
 */
void nd_migs_command(struct nd_node *n, const struct proto_ctl_req *req,
		     msgpack_packer *pk);
/* Migrations not finished yet. */
unsigned nd_migs_active(const struct nd_node *n);
/* For `ferry status`: "stalls", the post-copies waiting for a holder. */
void nd_migs_pack_stalls(struct nd_node *n, msgpack_packer *pk, uint64_t now);
/* Stop destination threads, fail what is in flight; at shutdown. */
void nd_migs_close(struct nd_node *n);
/* The migration's id (chosen by its source). */
uint64_t nd_mig_id(const struct nd_mig *m);
/*
 * The fault points (common/fault.h) of the transition functions:
 * "src:before:STATE" and "dst:before:STATE" fire before the move (and its
 * record; "fail" refuses the move), "src:after:STATE" and
 * "dst:after:STATE" once the move is recorded. Is point one of them?
 */
bool nd_mig_fault_known(const char *point);

#endif /* FERRY_MIGRATION_MIGRATION_H */
