/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVM_ADAPTER_H
#define FERRY_KVM_ADAPTER_H

/*
 * ferry-vm: a small KVM VMM. Guest RAM is one memfd mapped MAP_SHARED;
 * vCPUs run in threads; the guest is one of the programs of
 * kvm-adapter/guest/. The VMM can harvest the dirty log, pause, save and
 * load vCPU state and write or restore a snapshot.
 * docs/kvm-adapter.md describes the guest interface and the file formats.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kva_vm;

enum kva_prefill {
	KVA_PREFILL_NONE,
	KVA_PREFILL_RANDOM,
	KVA_PREFILL_PATTERN, /* every 8-byte word holds its own gpa */
};

/* A VM's shape and its guest program's parameters. */
struct kva_config {
	uint64_t mem_size; /* bytes; KVA_MIN_MEM..KVA_MAX_MEM, 2 MiB multiple */
	unsigned int nr_vcpus;
	const char *guest; /* "idle", "dirty", "verify", "state" */
	uint64_t workingset; /* bytes */
	uint64_t stride; /* page writes between pauses */
	uint64_t sleep; /* empty-loop iterations per pause */
	uint64_t heartbeat; /* pauses between heartbeats; 0 = none */
	uint64_t passes; /* 0 = run for ever */
	uint64_t sync_every; /* dirty: RECORD ucall period; needs record */
	bool record; /* dirty: keep a record of written pages */
	uint64_t seed;
	enum kva_prefill prefill;
};

/* Fill cfg with the defaults of the command line. */
void kva_config_init(struct kva_config *cfg);

/*
 * Build a VM from cfg: guest RAM, vCPUs in 64-bit mode at the program's
 * entry, not yet running. Returns 0 or -errno; *out is owned by the caller
 * and freed with kva_vm_destroy().
 */
int kva_vm_create(const struct kva_config *cfg, struct kva_vm **out);
/*
 * Build a VM from a snapshot file written by kva_vm_snapshot(): RAM, vCPU
 * and clock state; not yet running. Returns 0, or -EBADMSG / -EPROTO /
 * -errno with the reason logged.
 */
int kva_vm_restore(const char *path, struct kva_vm **out);

/* Start the vCPU threads (or resume them after kva_vm_pause()). */
int kva_vm_start(struct kva_vm *vm);
/* Stop every vCPU at an instruction boundary; returns 0 or -errno. */
int kva_vm_pause(struct kva_vm *vm);
/* Write RAM and state of a paused VM to path; 0 or -errno. */
int kva_vm_snapshot(struct kva_vm *vm, const char *path);

/*
 * OR into bm (one bit per guest page, kva_vm_pages() bits) every page the
 * guest wrote since the previous harvest, and re-arm the log. 0 or -errno.
 */
int kva_vm_harvest(struct kva_vm *vm, uint64_t *bm);
/* Guest RAM in pages: the length of a harvest bitmap. */
uint64_t kva_vm_pages(const struct kva_vm *vm);

/* Progress, summed over the vCPUs, from the guests' mailboxes. */
struct kva_progress {
	uint64_t writes;
	uint64_t pass; /* the lowest pass of any vCPU */
	uint64_t checks;
	uint64_t heartbeats;
	unsigned int running; /* vCPUs running or paused */
	unsigned int halted; /* halted with nothing to wake them */
	unsigned int done; /* the program returned */
	unsigned int failed; /* failure, exception or KVM error */
};
/* Read the counters; any thread may call it, at any time. */
void kva_vm_progress(struct kva_vm *vm, struct kva_progress *p);

/* Stop the vCPUs and free everything; accepts NULL. */
void kva_vm_destroy(struct kva_vm *vm);

#endif /* FERRY_KVM_ADAPTER_H */
