/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVA_INT_H
#define FERRY_KVA_INT_H

/*
 * kvm-adapter internals: the VM and its vCPUs, boot, state blobs, the
 * adapter protocol's framing and server. The accelerator interface the VM
 * runs on is in kva_accel.h.
 */
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kvm-adapter/kva_abi.h"
#include "kvm-adapter/kva_accel.h"
#include "kvm-adapter/kvm_adapter.h"

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
	int fd; /* kvm: the vCPU's fd */
	struct kvm_run *run; /* kvm: its shared run structure */
	struct kva_user_vcpu *user; /* user: registers and trap state */
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
	const struct kva_accel_ops *ops;
	char guest[16];
	int memfd;
	uint8_t *mem; /* ferry-vm's mapping of all guest RAM */
	uint64_t mem_size;
	uint64_t gva_base; /* the guest's virtual address of gpa 0 */
	unsigned int nr_vcpus;
	struct kva_vcpu vcpus[KVA_MAX_VCPUS];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pause_req;
	bool exit_req;
	bool started;
	pthread_mutex_t dirty_lock;
	kva_ucall_fn on_ucall;
	void *opaque;
	/* kvm (kva_kvm.c) */
	int kvm_fd;
	int vm_fd;
	size_t run_size;
	struct kvm_cpuid2 *cpuid;
	uint32_t *msrs; /* the MSRs saved with the vCPU state */
	unsigned int nr_msrs;
	size_t xsave_size;
	uint64_t *dirty_bm; /* KVM_GET_DIRTY_LOG buffer */
	/* user (kva_user.c) */
	struct kva_user_vm *user;
	/* Incoming VM: RAM registered with this userfaultfd. */
	bool incoming; /* waits for SET_STATE + RESUME */
	bool state_set; /* a SET_STATE was loaded */
	int uffd; /* -1: none, or released after RAM_DONE */
	bool uffd_minor; /* registered MISSING|MINOR, not MISSING alone */
	bool uffd_wp; /* registered WP too: its async write-protect one */
	/* Throttle (kva_vm.c): percent of time the vCPUs are held off. */
	atomic_uint throttle_pct;
	pthread_t throttle_thread; /* kicks the vCPUs once a slice */
	bool has_throttle_thread;
};

/* kva_vm.c */
/*
 * Create a VM with mem_size bytes of RAM and nr_vcpus vCPUs on accel, but
 * no guest in it. memfd >= 0 adopts that memfd as guest RAM (the VM owns
 * it afterwards); -1 makes a new, empty one.
 */
int kva_vm_open(uint64_t mem_size, unsigned int nr_vcpus, int memfd,
		enum kva_accel accel, struct kva_vm **out);
void kva_vm_set_hook(struct kva_vm *vm, kva_ucall_fn fn, void *opaque);
/* Host pointer to guest-physical gpa. */
static inline void *kva_gpa(struct kva_vm *vm, uint64_t gpa)
{
	return vm->mem + gpa;
}
/* The guest's virtual address of guest-physical gpa. */
static inline uint64_t kva_gva(const struct kva_vm *vm, uint64_t gpa)
{
	return vm->gva_base + gpa;
}
/* "#PF" and the like, for exception vector v. */
const char *kva_vector_name(uint64_t v);

/* kva_x86.c */
/* Load the guest image and parameters, build page tables, GDT, IDT. */
int kva_boot_setup(struct kva_vm *vm, const struct kva_config *cfg);
uint64_t kva_tsc_hz(void);
/* Where vcpu starts: the image's entry, its stack and the params. */
struct kva_boot_regs {
	uint64_t rip, rsp, rdi, rsi, gs_base;
};
void kva_boot_regs(struct kva_vm *vm, struct kva_vcpu *vcpu,
		   struct kva_boot_regs *r);
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
#define KVA_VM_WIDE 0xffff /* vcpu field of VM-wide sections */
/* Section tags: 1 is the VM's shape, the others an accelerator's. */
enum kva_tag {
	KVA_TAG_VM = 1,
	KVA_TAG_CLOCK, /* kvm */
	KVA_TAG_CPUID,
	KVA_TAG_REGS,
	KVA_TAG_SREGS,
	KVA_TAG_XSAVE,
	KVA_TAG_XCRS,
	KVA_TAG_MSRS,
	KVA_TAG_EVENTS,
	KVA_TAG_MP_STATE,
	KVA_TAG_DEBUGREGS,
	KVA_TAG_UREGS, /* user */
	KVA_TAG_UFPU,
	KVA_TAG_UMSRS,
	KVA_TAG_MAX
};
/* A blob being written: sections appended with kva_buf_sect(). */
struct kva_buf {
	uint8_t *p;
	size_t len, cap;
	size_t last; /* offset of the last section */
	uint32_t nr;
	int err;
};
/* Append a zeroed section of len bytes; its data, or NULL (b->err). */
void *kva_buf_sect(struct kva_buf *b, uint16_t tag, uint16_t vcpu, size_t len);
/* Make the last section by bytes shorter. */
void kva_buf_shrink(struct kva_buf *b, size_t by);
/* Where each section of a checked blob is. */
struct kva_parsed {
	const void *vmw[KVA_TAG_MAX]; /* VM-wide sections */
	const void *v[KVA_MAX_VCPUS][KVA_TAG_MAX];
	uint32_t vlen[KVA_MAX_VCPUS][KVA_TAG_MAX];
};
/*
 * Serialise the VM's vCPU and clock state (the VM must be paused or not
 * started) into a malloc'ed blob the caller frees.
 */
int kva_state_save(struct kva_vm *vm, void **blob, size_t *len);
/*
 * Load a blob into a VM that has not run yet; -EBADMSG (corrupted),
 * -EPROTO (another version), -EINVAL (another shape or accelerator).
 */
int kva_state_load(struct kva_vm *vm, const void *blob, size_t len);
/* The accelerator a blob was saved on, or -EBADMSG; checks nothing else. */
int kva_state_accel(const void *blob, size_t len, enum kva_accel *out);

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
#define KVA_ATTACH_USER 0x8 /* the user accelerator runs it (else kvm) */
#define KVA_ATTACH_UFFD_WP 0x10 /* it tracks writes: place with MODE_WP */

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
