/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVA_ACCEL_H
#define FERRY_KVA_ACCEL_H

/*
 * kvm-adapter internals: the accelerator interface. The ops table each
 * accelerator fills in (kva_kvm.c, kva_user.c), what its run() reports,
 * and the pieces the accelerators are built from: the kvm accelerator's
 * state sections (kva_kvm_state.c), the userfaultfd of an incoming VM
 * (kva_uffd.c) and the user accelerator's dirty log (kva_user_dirty.c).
 * The VM these work on is in kva_int.h.
 */
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm-adapter/kva_abi.h"
#include "kvm-adapter/kvm_adapter.h"

struct kva_vm;
struct kva_vcpu;

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

/*
 * An accelerator: how vCPUs run, how the dirty log is kept and what the
 * vCPU state is (kva_kvm.c, kva_user.c). kva_vm.c calls these; the
 * comments say in which thread.
 */
struct kva_buf;
struct kva_parsed;
struct kva_accel_ops {
	enum kva_accel id; /* written into state blobs */
	const char *name;
	/*
	 * Map vm->memfd (vm->mem_size bytes) at vm->mem, set vm->gva_base,
	 * create the vCPUs and start the dirty log. On failure the caller
	 * calls close(), which must cope with a half-open VM.
	 */
	int (*open)(struct kva_vm *vm);
	void (*close)(struct kva_vm *vm); /* after the vCPU threads ended */
	/* Registers that enter vcpu at the image's entry (kva_x86.c). */
	int (*vcpu_boot)(struct kva_vm *vm, struct kva_vcpu *vcpu);
	/* Run vcpu in the calling thread until an event; 0 or -errno. */
	int (*run)(struct kva_vcpu *vcpu, struct kva_event *ev);
	/*
	 * Make vcpu's run() return KVA_EV_INTR soon; with immediate, also
	 * if it has not entered the guest yet. vm->lock held, any thread.
	 */
	void (*kick)(struct kva_vcpu *vcpu, bool immediate);
	/* Forget an immediate kick; vm->lock held, vcpu's own thread. */
	void (*unkick)(struct kva_vcpu *vcpu);
	/* Finish an in-flight I/O so the registers are consistent. */
	int (*complete_io)(struct kva_vcpu *vcpu);
	/* The vCPU's thread ends (optional); on that thread. */
	void (*thread_exit)(struct kva_vcpu *vcpu);
	/* kva_vm_harvest(), under vm->dirty_lock. */
	int (*harvest)(struct kva_vm *vm, uint64_t *bm);
	/* Append the vCPU and VM sections of a paused VM (kva_state.c). */
	int (*save)(struct kva_vm *vm, struct kva_buf *b);
	/* The size a section of tag must have, 0 if not this accel's. */
	size_t (*sect_size)(struct kva_vm *vm, unsigned int tag,
			    const void *data, uint32_t len);
	const uint16_t *vcpu_tags; /* sections every vCPU must have */
	const uint16_t *vm_tags; /* VM-wide sections that must be there */
	/* Load a checked blob into a VM that has not run yet. */
	int (*load)(struct kva_vm *vm, const struct kva_parsed *ps);
	/* Incoming VM: register RAM for ferryd's faults (vm->uffd). */
	int (*uffd_register)(struct kva_vm *vm);
	/* RAM_DONE: unregister, close vm->uffd; the dirty log goes on. */
	int (*uffd_release)(struct kva_vm *vm);
};

extern const struct kva_accel_ops kva_kvm_ops;
extern const struct kva_accel_ops kva_user_ops;

/* kva_user.c */
/*
 * The user accelerator's signal handler, also called for kicks (SIGUSR1)
 * by kva_vm.c's: leaves the guest if this thread runs one, else passes
 * the signal to the handler installed before.
 */
void kva_user_signal(int sig, siginfo_t *si, void *uc);

/*
 * kva_kvm_state.c: the kvm accelerator's vCPU and VM state, for
 * kva_kvm.c's ops table. kva_kvm_msr_list() fills vm->msrs with the MSRs
 * to save (wanted, listed by KVM and writable back) at open.
 */
int kva_kvm_msr_list(struct kva_vm *vm);
int kva_kvm_save(struct kva_vm *vm, struct kva_buf *b);
size_t kva_kvm_sect_size(struct kva_vm *vm, unsigned int tag, const void *data,
			 uint32_t len);
int kva_kvm_load(struct kva_vm *vm, const struct kva_parsed *ps);
extern const uint16_t kva_kvm_vcpu_tags[], kva_kvm_vm_tags[];
/* kva_kvm.c: finish an in-flight I/O (the ops' complete_io). */
int kva_kvm_complete_io(struct kva_vcpu *vcpu);

/* kva_uffd.c (kvm) */
/*
 * Make vm an incoming VM: register all of guest RAM with a new userfaultfd
 * (MISSING, plus MINOR where the kernel offers it for shmem), kept in
 * vm->uffd. 0 or -errno.
 */
int kva_uffd_register(struct kva_vm *vm);
/* Unregister guest RAM and close vm->uffd: every page is in place. */
int kva_uffd_release(struct kva_vm *vm);

/* kva_user_dirty.c */
/*
 * Dirty log of the user accelerator: which pages of [mem, mem + size), a
 * MAP_SHARED mapping of a memfd in this process, were written, by
 * userfaultfd write-protection. Modes: KVA_WP_ASYNC (6.7+: the kernel
 * resolves write faults itself, PAGEMAP_SCAN harvests and re-protects),
 * KVA_WP_SYNC (5.19+: a thread of the tracker takes each first write of a
 * page after a harvest as a fault message, records the page and lets the
 * writer go), KVA_WP_SOFTDIRTY (/proc soft-dirty bits; exact only while
 * the writers are paused around each harvest, see kva_user_dirty_compat.c).
 */
enum kva_wp_mode { KVA_WP_AUTO, KVA_WP_ASYNC, KVA_WP_SYNC, KVA_WP_SOFTDIRTY };
struct kva_wp;
/*
 * Start tracking writes to [mem, mem + size): mem page-aligned, size a
 * non-zero multiple of 4 KiB, the range one MAP_SHARED mapping of shmem
 * (a memfd) that outlives the tracker and that no other userfaultfd has
 * registered. Writes made by the kernel on our behalf (read() into it) are
 * tracked too. AUTO picks ASYNC where the kernel offers it, else SYNC,
 * else SOFTDIRTY if a probe of soft-dirty passes; a forced mode the kernel
 * lacks fails. incoming: the range is an incoming VM's empty RAM, also
 * registered MISSING (and MINOR where UFFD_FEATURE_MINOR_SHMEM is offered)
 * on the userfaultfd given by kva_wp_uffd(), whose faults another process
 * resolves with UFFDIO_COPY, ZEROPAGE, CONTINUE or WAKE; pages placed that
 * way are mapped writable and may show once as written. SYNC with
 * incoming tracks nothing until kva_wp_release_incoming() (the write
 * faults would reach the other process): until then and in the first
 * harvest after it, every page with data in the memfd counts as written.
 * On success *out is the tracker, owned by the caller (kva_wp_close()).
 * 0, -EINVAL (bad range), -EOPNOTSUPP (no mode fits; logged), -ENOMEM,
 * or the -errno of a failed userfaultfd or /proc call.
 */
int kva_wp_open(void *mem, uint64_t size, enum kva_wp_mode mode, bool incoming,
		struct kva_wp **out);
/*
 * OR into bm (size / 4096 bits, bit i = page at mem + i * 4096) every
 * page written since the previous successful harvest (since open for the
 * first) and re-arm, leaving the other bits of bm alone. Safe while other
 * threads write the range; harvests are serialized by the tracker. 0 or
 * -errno; after a failure bm may hold part of the pages and the next
 * harvest reports every page, so none is lost.
 */
int kva_wp_harvest(struct kva_wp *w, uint64_t *bm);
/*
 * The userfaultfd of an incoming range (O_NONBLOCK, close-on-exec, owned
 * by w: dup it or pass it over SCM_RIGHTS, never close it), or -1 when
 * not incoming or released.
 */
int kva_wp_uffd(const struct kva_wp *w);
/* Whether the incoming range is registered MINOR as well as MISSING. */
bool kva_wp_minor(const struct kva_wp *w);
/* The incoming uffd is the write-protect one too (ASYNC). */
bool kva_wp_incoming_tracks(const struct kva_wp *w);
/*
 * RAM_DONE of an incoming range: stop its MISSING and MINOR faults, waking
 * every thread waiting on one, and keep tracking with nothing lost: a
 * write made before the call, or during it, shows in the next harvest.
 * The writers may go on running; a thread that touches a page in the few
 * milliseconds this takes may raise one more MINOR fault, which the other
 * process resolves or this call wakes. Afterwards reading a page that
 * never got data gives zeros, and kva_wp_uffd() returns -1 (copies of the
 * uffd elsewhere stay open but get no more faults). 0, -EINVAL (not
 * incoming, or released already) or -errno; after a failure the next
 * harvest reports every page.
 */
int kva_wp_release_incoming(struct kva_wp *w);
/* The mode in use, never KVA_WP_AUTO. */
enum kva_wp_mode kva_wp_mode(const struct kva_wp *w);
/* "async", "sync", "soft-dirty" ("auto" for KVA_WP_AUTO). */
const char *kva_wp_mode_name(enum kva_wp_mode m);
/*
 * Stop tracking: unregister the range (waking any thread waiting on one
 * of its faults), stop the fault thread, close the uffd. Accepts NULL.
 */
void kva_wp_close(struct kva_wp *w);
/*
 * kva_uffd.c's: open a userfaultfd (close-on-exec, O_NONBLOCK) asking for
 * features; *supported (if not NULL) gets what UFFDIO_API answered. The
 * fd, or -errno (logged).
 */
int kva_uffd_open(uint64_t features, uint64_t *supported);

#endif /* FERRY_KVA_ACCEL_H */
