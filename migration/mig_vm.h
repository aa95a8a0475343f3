/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_VM_H
#define FERRY_MIGRATION_MIG_VM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kvm-adapter/kvm_adapter.h"
#include "migration/migration.h"

/*
 * The VM adapter as the engine sees it: the adapter protocol's client
 * (kva_client_*, kvm-adapter/kvm_adapter.h) and the process of an
 * incoming ferry-vm (mig_host_ops.vm_spawn starts it). mig_env.vm_ops
 * NULL: the real ones; unit tests hand in fakes
 * (tests/migration/fake_vm.c). Each operation does what the function it
 * is named after does and returns the same; the engine calls them through
 * mig_vm_X() below, from the control thread or a destination's thread.
 */
struct mig_vm_ops {
	int (*attach)(const char *path, unsigned int timeout_ms,
		      struct kva_client **out);
	int (*set_timeout)(struct kva_client *c, unsigned int timeout_ms);
	const struct kva_layout *(*layout)(const struct kva_client *c);
	int (*uffd)(const struct kva_client *c);
	int (*harvest)(struct kva_client *c, const uint64_t **bm,
		       uint64_t *generation, uint64_t *dirty);
	int (*pause)(struct kva_client *c);
	int (*resume)(struct kva_client *c);
	int (*status)(struct kva_client *c, struct kva_status *st);
	int (*get_state)(struct kva_client *c, void **blob, size_t *len);
	int (*set_state)(struct kva_client *c, const void *blob, size_t len);
	int (*ram_done)(struct kva_client *c);
	int (*throttle)(struct kva_client *c, unsigned int pct);
	int (*exit)(struct kva_client *c);
	void (*close)(struct kva_client *c);
	/* waitpid(2) and kill(2), on the incoming ferry-vm only */
	pid_t (*waitpid)(pid_t pid, int *status, int options);
	int (*kill)(pid_t pid, int sig);
};

/*
 * n->vm_ops->X(...), or with n->vm_ops NULL kva_client_X(...), waitpid(),
 * kill(): the same arguments, returns, ownership and errno.
 */
int mig_vm_attach(const struct mig_env *n, const char *path,
		  unsigned int timeout_ms, struct kva_client **out);
int mig_vm_set_timeout(const struct mig_env *n, struct kva_client *c,
		       unsigned int timeout_ms);
const struct kva_layout *mig_vm_layout(const struct mig_env *n,
				       const struct kva_client *c);
int mig_vm_uffd(const struct mig_env *n, const struct kva_client *c);
int mig_vm_harvest(const struct mig_env *n, struct kva_client *c,
		   const uint64_t **bm, uint64_t *generation, uint64_t *dirty);
int mig_vm_pause(const struct mig_env *n, struct kva_client *c);
int mig_vm_resume(const struct mig_env *n, struct kva_client *c);
int mig_vm_status(const struct mig_env *n, struct kva_client *c,
		  struct kva_status *st);
int mig_vm_get_state(const struct mig_env *n, struct kva_client *c, void **blob,
		     size_t *len);
int mig_vm_set_state(const struct mig_env *n, struct kva_client *c,
		     const void *blob, size_t len);
int mig_vm_ram_done(const struct mig_env *n, struct kva_client *c);
int mig_vm_throttle(const struct mig_env *n, struct kva_client *c,
		    unsigned int pct);
int mig_vm_exit(const struct mig_env *n, struct kva_client *c);
void mig_vm_close(const struct mig_env *n, struct kva_client *c);
pid_t mig_vm_waitpid(const struct mig_env *n, pid_t pid, int *status,
		     int options);
int mig_vm_kill(const struct mig_env *n, pid_t pid, int sig);

#endif /* FERRY_MIGRATION_MIG_VM_H */
