/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVM_ADAPTER_H
#define FERRY_KVM_ADAPTER_H

/*
 * ferry-vm: a small KVM VMM. Guest RAM is one memfd mapped MAP_SHARED;
 * vCPUs run in threads; the guest is one of the programs of
 * kvm-adapter/guest/. The VMM can harvest the dirty log, pause, save and
 * load vCPU state and write or restore a snapshot.
 *
 * ferryd drives a ferry-vm through the adapter protocol, a unix socket;
 * the kva_client_* functions at the end are ferryd's side of it.
 * docs/kvm-adapter.md describes the guest interface, the file formats and
 * the protocol.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kva_vm;

/*
 * How the vCPUs run. kvm: in KVM VMs (/dev/kvm). user: natively, as
 * threads of ferry-vm, with privileged instructions trapped and emulated
 * and the dirty log kept by the kernel's userfaultfd write-protection
 * (docs/kvm-adapter.md, "Accelerators"). auto: kvm where /dev/kvm opens,
 * else user.
 */
enum kva_accel {
	KVA_ACCEL_AUTO,
	KVA_ACCEL_KVM,
	KVA_ACCEL_USER,
};

/* "auto", "kvm", "user"; and back (-EINVAL for another name). */
const char *kva_accel_name(enum kva_accel a);
int kva_accel_parse(const char *name, enum kva_accel *out);

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
	uint64_t rate; /* dirty, verify: page writes/s in all, in bursts
			* of stride; 0: stride and sleep alone */
	uint64_t heartbeat; /* pauses between heartbeats; 0 = none */
	uint64_t passes; /* 0 = run for ever */
	uint64_t sync_every; /* dirty: RECORD ucall period; needs record */
	bool record; /* dirty: keep a record of written pages */
	uint64_t seed;
	enum kva_prefill prefill;
	enum kva_accel accel;
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
 * and clock state; not yet running. accel must be the snapshot's or auto.
 * Returns 0, or -EBADMSG / -EPROTO / -EINVAL (another accelerator) /
 * -errno with the reason logged.
 */
int kva_vm_restore(const char *path, enum kva_accel accel, struct kva_vm **out);

/*
 * Build an incoming VM of cfg's RAM size and vCPUs: RAM registered with a
 * userfaultfd, no vCPU state. The RAM is empty, or memfd (>= 0: a memfd
 * of cfg->mem_size bytes, owned by the VM from the call on, even when it
 * fails) with the pages a copy ferryd kept holds. ferryd fills it through
 * the adapter protocol (SET_STATE, the uffd, RESUME). 0 or -errno; *out
 * as above.
 */
int kva_vm_create_incoming(const struct kva_config *cfg, int memfd,
			   struct kva_vm **out);

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

/*
 * Hold the vCPUs off pct percent of the time (0: run freely, at most 99):
 * after each slice of KVM_RUN a vCPU sleeps pct / (100 - pct) of the time
 * it ran. Auto-converge's lever on a guest that dirties memory faster than
 * it can be moved. 0, or -EINVAL for pct > 99, or -errno.
 */
int kva_vm_set_throttle(struct kva_vm *vm, unsigned int pct);
/* The throttle in effect, in percent. */
unsigned int kva_vm_throttle(struct kva_vm *vm);

/* Stop the vCPUs and free everything; accepts NULL. */
void kva_vm_destroy(struct kva_vm *vm);

/*
 * The adapter protocol, ferryd's side. A client attaches to the socket of
 * a `ferry-vm --adapter SOCKET`; the VM outlives the client, and a new one
 * re-attaches to the same RAM. The calls are synchronous; one thread at a
 * time per client. Faults of an incoming VM must be served by another
 * thread (poll kva_client_uffd()) while requests are in flight: ferry-vm
 * may touch guest RAM to carry one out.
 */
struct kva_client;

enum kva_vm_state {
	KVA_VM_RUNNING = 1,
	KVA_VM_PAUSED,
	KVA_VM_INCOMING, /* waits for SET_STATE and RESUME */
};

/* One region of guest RAM: a memfd holding gpa [gpa, gpa + size). */
struct kva_region {
	uint64_t gpa;
	uint64_t size; /* bytes */
	uint64_t pages;
	/* ferry-vm's address of the region: uffd messages and UFFDIO_*
	 * ranges are in ferry-vm's address space; 0 without a uffd. */
	uint64_t uffd_base;
	int memfd; /* owned by the client: closed by kva_client_close() */
};

struct kva_layout {
	uint32_t page_size;
	uint32_t nr_vcpus;
	enum kva_vm_state state; /* at ATTACH */
	bool uffd; /* an incoming VM's uffd came with ATTACH */
	bool uffd_minor; /* registered MISSING|MINOR (else MISSING only) */
	/*
	 * The uffd is also the VM's write tracker (user, async): pages placed
	 * on it go write-protected (UFFDIO_COPY_MODE_WP, _CONTINUE_MODE_WP),
	 * or they count as written by the guest.
	 */
	bool uffd_wp;
	bool state_set; /* an incoming VM already has its vCPU state */
	enum kva_accel accel; /* kvm or user */
	char guest[16]; /* guest program; "" for an incoming VM */
	uint64_t pages; /* over all regions: bits of a harvest bitmap */
	uint64_t generation; /* harvests made so far, by any client */
	unsigned int nr_regions;
	const struct kva_region *regions;
};

/* What STATUS reports: the VM's state and its guest's progress. */
struct kva_status {
	enum kva_vm_state state;
	bool uffd; /* RAM still under userfaultfd */
	uint64_t generation;
	unsigned int throttle_pct; /* THROTTLE in effect; 0: none */
	struct kva_progress progress;
};

/*
 * Connect to the ferry-vm listening on path and attach. Every reply of
 * this client, the ATTACH one included, is waited for timeout_ms at most
 * (0: 30 s); a reply that comes later is skipped. Returns 0, or -errno:
 * -ECONNREFUSED / -ENOENT (no ferry-vm there), -EPERM (it runs as another
 * user: SO_PEERCRED), -EBUSY (another client is attached),
 * -EPROTONOSUPPORT (no common protocol version), -ETIMEDOUT. *out is the
 * caller's; free it with kva_client_close().
 */
int kva_client_attach(const char *path, unsigned int timeout_ms,
		      struct kva_client **out);

/* Wait timeout_ms (0: 30 s) for each reply from now on; 0 or -errno. */
int kva_client_set_timeout(struct kva_client *c, unsigned int timeout_ms);
/* The layout received at ATTACH; valid until kva_client_close(). */
const struct kva_layout *kva_client_layout(const struct kva_client *c);
/*
 * An incoming VM's userfaultfd (O_NONBLOCK), or -1. It belongs to the
 * client; dup() it to keep it past kva_client_close(). Faults arrive at
 * ferry-vm addresses (kva_region.uffd_base); resolve them with
 * UFFDIO_COPY / UFFDIO_ZEROPAGE, or write the page through a mapping of
 * the memfd and UFFDIO_CONTINUE (then COPY fails with EEXIST).
 */
int kva_client_uffd(const struct kva_client *c);
/*
 * Harvest the dirty log: *bm (layout pages bits, read-only, shared with
 * ferry-vm) holds every page written since the previous harvest, until
 * the next harvest. *generation counts harvests, *dirty the bits set.
 * 0 or -errno.
 */
int kva_client_harvest(struct kva_client *c, const uint64_t **bm,
		       uint64_t *generation, uint64_t *dirty);
/* Stop every vCPU at an instruction boundary. 0 or -errno. */
int kva_client_pause(struct kva_client *c);
/* Resume, or start an incoming VM after SET_STATE. 0 or -errno. */
int kva_client_resume(struct kva_client *c);
/* The VM's state and its guest's counters. 0 or -errno. */
int kva_client_status(struct kva_client *c, struct kva_status *st);
/*
 * vCPU and clock state of a paused VM, as a versioned blob: *blob is
 * malloc'ed, the caller frees it. 0, -EBUSY (not paused) or -errno.
 */
int kva_client_get_state(struct kva_client *c, void **blob, size_t *len);
/*
 * Load a blob from kva_client_get_state() into an incoming VM before its
 * RESUME. 0, or -EBADMSG (corrupted), -EPROTO (another version), -EINVAL
 * (another VM shape), -EBUSY (not an incoming VM), -errno; a refused
 * blob leaves the VM as it was.
 */
int kva_client_set_state(struct kva_client *c, const void *blob, size_t len);
/*
 * Tell an incoming VM that all of its RAM is in place: ferry-vm
 * unregisters and closes its uffd, and faults stop. 0 or -errno.
 */
int kva_client_ram_done(struct kva_client *c);
/*
 * Throttle the vCPUs: hold them off pct percent of the time, 0 (none) to
 * 99. The throttle lasts until changed, or until this client detaches
 * (ferry-vm drops it then, so a crashed ferryd never leaves a VM slowed
 * down). 0, -EINVAL (pct > 99) or -errno.
 */
int kva_client_throttle(struct kva_client *c, unsigned int pct);
/* Ask ferry-vm to stop its VM and exit. 0 or -errno. */
int kva_client_exit(struct kva_client *c);

/*
 * Detach and free c, closing every descriptor it received (memfds,
 * bitmap, uffd); the VM runs on. Accepts NULL.
 */
void kva_client_close(struct kva_client *c);

#endif /* FERRY_KVM_ADAPTER_H */
