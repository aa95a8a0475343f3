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
#include <sys/types.h>

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
	uint64_t slice_ns; /* throttle: when it last started to run */
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
	/* Incoming VM (kva_uffd.c): RAM registered with this userfaultfd. */
	bool incoming; /* waits for SET_STATE + RESUME */
	bool state_set; /* a SET_STATE was loaded */
	int uffd; /* -1: none, or released after RAM_DONE */
	bool uffd_minor; /* registered MISSING|MINOR, not MISSING alone */
	/* Throttle (kva_vm.c): percent of time the vCPUs are held off. */
	atomic_uint throttle_pct;
	pthread_t throttle_thread; /* kicks the vCPUs once a slice */
	bool has_throttle_thread;
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

/* kva_uffd.c */
/*
 * Make vm an incoming VM: register all of guest RAM with a new userfaultfd
 * (MISSING, plus MINOR where the kernel offers it for shmem), kept in
 * vm->uffd. 0 or -errno.
 */
int kva_uffd_register(struct kva_vm *vm);
/* Unregister guest RAM and close vm->uffd: every page is in place. */
int kva_uffd_release(struct kva_vm *vm);

/*
 * kva_wire.c: framing of the adapter protocol (docs/kvm-adapter.md). Every
 * message is one SOCK_SEQPACKET record: a 16-byte header, then the
 * payload; every field little-endian, encoded and decoded one by one.
 */
#define KVA_WIRE_MAGIC 0x44414659U /* "FYAD" */
#define KVA_WIRE_VERSION 1
#define KVA_WIRE_HDR 16
#define KVA_WIRE_MAX 4096 /* the largest record either side sends */
#define KVA_WIRE_MAX_FDS 8
#define KVA_WIRE_STATE_MAX (64U << 20) /* largest state blob accepted */
#define KVA_WIRE_TEXT_MAX 512 /* error text */
#define KVA_WIRE_NO_FD 0xffffffffU

enum kva_msg {
	KVA_MSG_ATTACH = 1,
	KVA_MSG_HARVEST,
	KVA_MSG_PAUSE,
	KVA_MSG_RESUME,
	KVA_MSG_GET_STATE,
	KVA_MSG_SET_STATE,
	KVA_MSG_STATUS,
	KVA_MSG_RAM_DONE,
	KVA_MSG_EXIT,
	KVA_MSG_THROTTLE,
	KVA_MSG_MAX,
	/* The reply to request T has type T | REPLY; ERROR is REPLY alone. */
	KVA_MSG_REPLY = 0x8000,
	KVA_MSG_ERROR = 0x8000,
};

/* ATTACH reply flags. */
#define KVA_ATTACH_UFFD 0x1 /* a userfaultfd comes with the reply */
#define KVA_ATTACH_UFFD_MINOR 0x2 /* registered MISSING|MINOR */
#define KVA_ATTACH_STATE_SET 0x4 /* an incoming VM has its vCPU state */

struct kva_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len; /* payload bytes after the header */
	uint32_t seq; /* a reply echoes its request's */
};

/* Writer into a fixed buffer; err once anything did not fit. */
struct kva_wbuf {
	uint8_t *p;
	size_t len, cap;
	bool err;
};

/* Reader of a received buffer; err once a read went past the end. */
struct kva_rbuf {
	const uint8_t *p;
	size_t len, off;
	bool err;
};

void kva_put_u16(struct kva_wbuf *w, uint16_t v);
void kva_put_u32(struct kva_wbuf *w, uint32_t v);
void kva_put_u64(struct kva_wbuf *w, uint64_t v);
void kva_put_bytes(struct kva_wbuf *w, const void *src, size_t n);
uint16_t kva_get_u16(struct kva_rbuf *r);
uint32_t kva_get_u32(struct kva_rbuf *r);
uint64_t kva_get_u64(struct kva_rbuf *r);
void kva_get_bytes(struct kva_rbuf *r, void *dst, size_t n);
/* Whether r was read to its very end and never past it. */
static inline bool kva_rbuf_done(const struct kva_rbuf *r)
{
	return !r->err && r->off == r->len;
}

/*
 * Send one record: the header (magic and version filled in) and the
 * payload of w, with nfds descriptors by SCM_RIGHTS (the caller keeps its
 * copies). 0 or -errno; never raises SIGPIPE.
 */
int kva_wire_send(int sock, uint16_t type, uint32_t seq,
		  const struct kva_wbuf *w, const int *fds, unsigned int nfds);
/*
 * Receive one record into buf (KVA_WIRE_MAX bytes). Returns its length,
 * 0 when the peer closed, or -errno. Received descriptors land in fds
 * (KVA_WIRE_MAX_FDS) and *nfds, close-on-exec, owned by the caller;
 * *trunc says the record or its descriptors did not fit.
 */
ssize_t kva_wire_recv(int sock, uint8_t *buf, int *fds, unsigned int *nfds,
		      bool *trunc);
/*
 * Check the header of a received record of len bytes and point r at its
 * payload. 0, or -EBADMSG with *why set.
 */
int kva_wire_parse(const uint8_t *buf, size_t len, struct kva_hdr *h,
		   struct kva_rbuf *r, const char **why);
/* Close nfds descriptors and forget them. */
void kva_wire_close_fds(int *fds, unsigned int *nfds);

/* kva_server.c: ferry-vm's side of the adapter protocol. */
struct kva_server;
/*
 * Listen on the unix socket path and serve vm from a thread of its own.
 * The server borrows vm, which must outlive it. 0 or -errno.
 */
int kva_server_open(struct kva_vm *vm, const char *path,
		    struct kva_server **out);
/* Whether a client asked the VMM to exit (EXIT). */
bool kva_server_exit_requested(struct kva_server *s);
/* Stop serving, drop the client, remove the socket; accepts NULL. */
void kva_server_close(struct kva_server *s);

#endif /* FERRY_KVA_INT_H */
