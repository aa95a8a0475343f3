/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_MIGRATION_FAKE_VM_H
#define FERRY_TESTS_MIGRATION_FAKE_VM_H

#include "migration/mig_vm.h"

/*
 * A VM adapter for the engine's unit tests (mig_env.vm_ops =
 * &fake_vm_ops): no ferry-vm, no socket, no process. One VM at a time,
 * fake_vm: attach hands out a client of it whose RAM is a dup of its
 * memfd; its process is FAKE_VM_PID, running until EXIT or a kill, then
 * reaped by waitpid. Other pids are not ours (ECHILD, ESRCH). What the
 * engine asked is counted, atomically: read with FAKE_VM_GET().
 */

#define FAKE_VM_PID 0x7ffffff0 /* above any pid_max: never a real one */

struct fake_vm {
	uint64_t pages;
	int memfd; /* the VM's RAM: what the engine pulls lands here */
	enum kva_vm_state state; /* at attach */
	bool dead; /* EXIT or killed; status for waitpid */
	int wstatus;
	/* counted */
	unsigned attaches, closes, exits, kills, reaped;
	unsigned pauses, resumes, ram_dones, set_states, harvests;
	unsigned throttle_pct; /* the last THROTTLE */
	size_t state_len; /* the last blob SET_STATE loaded */
	uint8_t state_head[16]; /* and its first bytes */
	uint64_t *dirty; /* what harvest reports (pages bits), all clear */
};

extern struct fake_vm fake_vm;
extern const struct mig_vm_ops fake_vm_ops;

#define FAKE_VM_GET(field) __atomic_load_n(&fake_vm.field, __ATOMIC_SEQ_CST)

/* A fresh incoming VM of pages pages, all zero (fails the test if not). */
void fake_vm_init(uint64_t pages);
/* Free its RAM (the engine's clients must be closed by now). */
void fake_vm_fini(void);

#endif /* FERRY_TESTS_MIGRATION_FAKE_VM_H */
