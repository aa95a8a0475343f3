/* SPDX-License-Identifier: MIT */
/*
 * Test helpers shared by the tests that drive real ferry-vm processes over
 * the adapter socket (tests/kvm-adapter, tests/node/test_fault.c). They
 * fail the running cmocka test on error, so call them from tests only.
 */
#ifndef FERRY_TESTS_KVA_TEST_H
#define FERRY_TESTS_KVA_TEST_H

#include <sys/types.h>

#include "kvm-adapter/kvm_adapter.h"

/* A ferry-vm child process and its adapter socket path. */
struct vmproc {
	pid_t pid;
	char sock[108];
};

/*
 * Set the ferry-vm binary, its accelerator (argv[2] of the tests: kvm or
 * user; NULL: kvm) and the tag that names this binary's sockets
 * (/tmp/ferry-TAG-PID-NAME.sock); call once from main().
 */
void vm_init(const char *ferry_vm, const char *accel, const char *tag);

/*
 * Start ferry-vm --adapter SOCK --report 0 --accel ACCEL with args
 * (NULL-terminated).
 */
void vm_spawn(struct vmproc *v, const char *name, ...);

/* Attach, retrying while ferry-vm starts up (or notices a dead client). */
struct kva_client *vm_attach(struct vmproc *v);

/* Exit status of v within seconds, or -1 (and v killed); unlinks v->sock. */
int vm_wait(struct vmproc *v, double seconds);

/* Kill v if it still runs and remove its socket file. */
void vm_kill(struct vmproc *v);

/* EXIT, close c, then the process must end with status want. */
void vm_exit(struct vmproc *v, struct kva_client *c, int want);

/* STATUS into st; it must succeed. */
void vm_status(struct kva_client *c, struct kva_status *st);

/* Map the memfd of guest RAM region g, shared, with prot. */
void *vm_map_memfd(const struct kva_region *g, int prot);

#endif
