/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the tests that run a VM in their own process (kva_int.h):
 * test_kva.c and test_kva_state.c. They fail the running cmocka test on
 * error, so call them from tests only.
 */
#ifndef FERRY_TESTS_KVA_VM_TEST_H
#define FERRY_TESTS_KVA_VM_TEST_H

#include <stdbool.h>
#include <stdint.h>

#include "kvm-adapter/kva_int.h"

/* The accelerator under test: main()'s argument, kvm or user. */
extern enum kva_accel test_accel;

/* A config for guest with mem bytes of RAM and vcpus vCPUs on test_accel. */
struct kva_config cfg_for(const char *guest, uint64_t mem, unsigned int vcpus);

typedef bool (*cond_fn)(const struct kva_progress *p, uint64_t arg);

/* Poll progress until cond holds; false on timeout. */
bool wait_for(struct kva_vm *vm, cond_fn cond, uint64_t arg, double seconds,
	      struct kva_progress *out);
/*
 * Conditions for wait_for(): n vCPUs halted, any failed, pass n reached or
 * a failure, n vCPUs done or a failure.
 */
bool halted_n(const struct kva_progress *p, uint64_t n);
bool failed_any(const struct kva_progress *p, uint64_t n);
bool pass_at_least(const struct kva_progress *p, uint64_t n);
bool all_done(const struct kva_progress *p, uint64_t n);

/* Bytes the VM's memfd takes. */
uint64_t memfd_bytes(struct kva_vm *vm);
/* A path under /tmp named after what and this process (4 at a time). */
char *tmp_path(const char *what);

#endif /* FERRY_TESTS_KVA_VM_TEST_H */
