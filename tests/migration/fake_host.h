/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_MIGRATION_FAKE_HOST_H
#define FERRY_TESTS_MIGRATION_FAKE_HOST_H

#include "migration/mig_dst.h"

/*
 * A host for the migration engine without a daemon, sockets or VMs: peers
 * whose state the test sets, a transport that keeps what the engine sends,
 * a VM registry of names only, a clock that moves only when the test says
 * (mig_env.now). Records go to a temporary directory. The VM adapter
 * (fake_vm.h) and the fabric (fake_fab.h) are the test's to add.
 */

#define FAKE_PEERS 4
#define FAKE_SENT 64
#define FAKE_VMS 4

struct fake_host {
	struct mig_env env;
	struct mig_peer peers[FAKE_PEERS];
	enum mig_peer_state state[FAKE_PEERS];
	size_t npeers;
	/* decoded copies of what went out, arrays included: the host's */
	struct proto_msg sent[FAKE_SENT];
	struct mig_peer *sent_to[FAKE_SENT];
	size_t nsent;
	int send_ret; /* what send returns */
	struct mig_vm vms[FAKE_VMS];
	pid_t spawn_pid; /* what vm_spawn starts; 0: it fails (-ENOSYS) */
	bool spawn_ram; /* it was given RAM to adopt */
	unsigned spawned, unlinked; /* vm_spawn, vm_unlink_sock (atomic) */
	char dir[64];
};

/* The clock of every fake host: FAKE_CLOCK_START at fake_host_new(). */
#define FAKE_CLOCK_START (1000 * 1000000000ULL)
void fake_clock_set(uint64_t ns);
uint64_t fake_clock_get(void);
/* How many times the engine read it (from any thread). */
uint64_t fake_clock_reads(void);

/* A host with peers named by the NULL-terminated names, all reachable. */
struct fake_host *fake_host_new(const char *const *names);
/* Free what was sent so far and start counting again. */
void fake_host_forget_sent(struct fake_host *h);
/*
 * Close the engine's migrations and records, the clients left in the VM
 * registry (through env.vm_ops, if set), remove the directory.
 */
void fake_host_free(struct fake_host *h);

#endif /* FERRY_TESTS_MIGRATION_FAKE_HOST_H */
