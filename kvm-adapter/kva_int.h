/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVA_INT_H
#define FERRY_KVA_INT_H

/* kvm-adapter internals: the VM, its vCPUs, state blobs. */
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm-adapter/kva_abi.h"
#include "kvm-adapter/kvm_adapter.h"

/* What stopped kva_vcpu_run(). */
enum kva_ev_kind {
	KVA_EV_UCALL, /* ev->uc holds the call */
	KVA_EV_EXCEPTION, /* vector, error, rip, cr2 */
	KVA_EV_HALT, /* hlt with nothing to wake the vCPU */
	KVA_EV_INTR, /* a signal or immediate_exit: a pause or exit request */
};

struct kva_event {
	enum kva_ev_kind kind;
	struct kva_ucall uc;
	uint64_t vector, error, rip, cr2;
};

enum kva_vcpu_run_state {
	KVA_VCPU_IDLE, /* created, thread not started */
	KVA_VCPU_RUNNING,
	KVA_VCPU_PARKED, /* paused on request */
	KVA_VCPU_HALTED,
	KVA_VCPU_DONE, /* the program returned */
	KVA_VCPU_FAILED, /* FAIL ucall, exception or KVM error */
};

struct kva_vcpu {
	struct kva_vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool has_thread;
	enum kva_vcpu_run_state state; /* under vm->lock */
	volatile struct kva_mailbox *mb; /* host view of the mailbox */
	atomic_uint_fast64_t heartbeats;
	struct kva_event fail; /* what failed it */
};

/*
 * Called in the vCPU's thread for every ucall before the default handling;
 * return 0 to go on, -errno to fail the vCPU.
 */
typedef int (*kva_ucall_fn)(struct kva_vm *vm, unsigned int vcpu,
			    const struct kva_ucall *uc, void *opaque);

struct kva_vm {
	struct kva_config cfg;
	char guest[16];
	int kvm_fd;
	int vm_fd;
	int memfd;
	uint8_t *mem; /* host mapping of all guest RAM */
	uint64_t mem_size;
	unsigned int nr_vcpus;
	struct kva_vcpu vcpus[KVA_MAX_VCPUS];
	size_t run_size;
	struct kvm_cpuid2 *cpuid;
	uint32_t *msrs; /* the MSRs saved with the vCPU state */
	unsigned int nr_msrs;
	size_t xsave_size;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pause_req;
	bool exit_req;
	bool started;
	pthread_mutex_t dirty_lock;
	uint64_t *dirty_bm; /* KVM_GET_DIRTY_LOG buffer */
	kva_ucall_fn on_ucall;
	void *opaque;
};

/* kva_vm.c */
/*
 * Create a VM with mem_size bytes of RAM and nr_vcpus vCPUs, but no guest
 * in it. memfd >= 0 adopts that memfd as guest RAM (the VM owns it
 * afterwards); -1 makes a new, empty one.
 */
int kva_vm_open(uint64_t mem_size, unsigned int nr_vcpus, int memfd,
		struct kva_vm **out);
void kva_vm_set_hook(struct kva_vm *vm, kva_ucall_fn fn, void *opaque);
/* Run vcpu in the calling thread until an event; 0 or -errno. */
int kva_vcpu_run(struct kva_vcpu *vcpu, struct kva_event *ev);
/*
 * Let KVM finish an in-flight port I/O so the registers are consistent:
 * KVM_RUN with immediate_exit, as KVM requires before a state save.
 */
int kva_vcpu_complete_io(struct kva_vcpu *vcpu);
/* Host pointer to guest-physical gpa. */
static inline void *kva_gpa(struct kva_vm *vm, uint64_t gpa)
{
	return vm->mem + gpa;
}

/* kva_x86.c */
/* Load the guest image and parameters, build page tables, GDT, IDT. */
int kva_boot_setup(struct kva_vm *vm, const struct kva_config *cfg);
/* Registers that enter vcpu into 64-bit mode at the image's entry. */
int kva_vcpu_boot(struct kva_vm *vm, struct kva_vcpu *vcpu);
/* Supported CPUID, as KVM_SET_CPUID2 wants it; the caller frees it. */
int kva_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out);
/* Bytes of RAM at KVA_DATA_GPA taken by the dirty guest's records. */
uint64_t kva_record_bytes(const struct kva_config *cfg);

/* kva_guests.c */
/* The embedded image of guest name, or -ENOENT. */
int kva_guest_image(const char *name, const unsigned char **img, size_t *len);
/* Comma-separated names of the embedded guests. */
const char *kva_guest_names(void);

/* kva_state.c */
#define KVA_STATE_MAGIC 0x54535946U /* "FYST" */
#define KVA_STATE_VERSION 1
/*
 * Serialise the VM's vCPU and clock state (the VM must be paused or not
 * started) into a malloc'ed blob the caller frees.
 */
int kva_state_save(struct kva_vm *vm, void **blob, size_t *len);
/* Load a blob into a VM that has not run yet; -EBADMSG/-EPROTO if bad. */
int kva_state_load(struct kva_vm *vm, const void *blob, size_t len);

/* kva_dirty.c */
int kva_dirty_init(struct kva_vm *vm);
void kva_dirty_fini(struct kva_vm *vm);

#endif /* FERRY_KVA_INT_H */
