/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVA_INT_H
#define FERRY_KVA_INT_H

/* kvm-adapter internals: the VM, its vCPUs, state blobs. */
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
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
/* kva_user.c */
/*
 * The user accelerator's signal handler, also called for kicks (SIGUSR1)
 * by kva_vm.c's: leaves the guest if this thread runs one, else passes
 * the signal to the handler installed before.
 */
void kva_user_signal(int sig, siginfo_t *si, void *uc);

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

/* kva_uffd.c (kvm) */
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
#define KVA_ATTACH_USER 0x8 /* the user accelerator runs it (else kvm) */

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

/* kva_user_dirty.c */
/*
 * Dirty log of the user accelerator: which pages of [mem, mem + size), a
 * MAP_SHARED mapping of a memfd in this process, were written, by
 * userfaultfd write-protection. Modes: KVA_WP_ASYNC (6.7+: the kernel
 * resolves write faults itself, PAGEMAP_SCAN harvests and re-protects),
 * KVA_WP_SYNC (5.19+: a thread of the tracker takes each first write of a
 * page after a harvest as a fault message, records the page and lets the
 * writer go), KVA_WP_SOFTDIRTY (/proc soft-dirty bits; exact only while
 * the writers are paused around each harvest, see kva_user_dirty.c).
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

#endif /* FERRY_KVA_INT_H */
