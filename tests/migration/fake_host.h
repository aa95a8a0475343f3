/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_MIGRATION_FAKE_HOST_H
#define FERRY_TESTS_MIGRATION_FAKE_HOST_H

#include "migration/mig_dst.h"

/*
 * A host for the migration engine without a daemon, sockets or VMs: peers
 * whose state the test sets, a transport that keeps what the engine sends,
 * a VM registry of names only. Records go to a temporary directory.
 */

#define FAKE_PEERS 4
#define FAKE_SENT 64
#define FAKE_VMS 4

struct fake_host {
	struct mig_env env;
	struct mig_peer peers[FAKE_PEERS];
	enum mig_peer_state state[FAKE_PEERS];
	size_t npeers;
	/* shallow copies: their arrays are the engine's, not to be read */
	struct proto_msg sent[FAKE_SENT];
	struct mig_peer *sent_to[FAKE_SENT];
	size_t nsent;
	int send_ret; /* what send returns */
	struct mig_vm vms[FAKE_VMS];
	char dir[64];
};

/* A host with peers named by the NULL-terminated names, all reachable. */
struct fake_host *fake_host_new(const char *const *names);
/* Close the engine's migrations and records, remove the directory. */
void fake_host_free(struct fake_host *h);

#endif /* FERRY_TESTS_MIGRATION_FAKE_HOST_H */
