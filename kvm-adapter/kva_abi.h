/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVA_ABI_H
#define FERRY_KVA_ABI_H

/*
 * The interface between ferry-vm and its guest programs: the guest-physical
 * layout the VMM builds, the parameter page and the per-vCPU mailbox through
 * which the guest makes "ucalls" (port I/O). Included by the host and by the
 * freestanding guest code, so it uses nothing but <stdint.h>.
 * docs/kvm-adapter.md describes it in prose.
 */
#include <stdint.h>

/*
 * Guest-physical layout. A guest reaches gpa at virtual address
 * params->ram_base + gpa: under KVM ram_base is 0 (identity map); under
 * the user accelerator, guest RAM is ferry-vm's mapping at a fixed base.
 * Guest images are position-independent code, linked here.
 */
#define KVA_GDT_GPA 0x1000ULL
#define KVA_IDT_GPA 0x2000ULL
#define KVA_TSS_GPA 0x3000ULL
#define KVA_PARAMS_GPA 0x4000ULL
#define KVA_MAILBOX_GPA 0x10000ULL /* one page per vCPU */
#define KVA_STACK_GPA 0x40000ULL /* KVA_STACK_SIZE per vCPU */
#define KVA_STACK_SIZE 0x4000ULL
#define KVA_MAX_VCPUS 32
#define KVA_PGTABLE_GPA 0x100000ULL /* PML4, PDPT, then one PD per GiB */
#define KVA_IMAGE_GPA 0x400000ULL /* guest image, linked here */
#define KVA_IMAGE_MAX 0x400000ULL
#define KVA_DATA_GPA 0x800000ULL /* workload area: to the end of RAM */
#define KVA_MIN_MEM (16ULL << 20)
#define KVA_MAX_MEM (512ULL << 30) /* one PDPT of 2 MiB pages */

/* GDT selectors. */
#define KVA_SEL_CODE 0x08
#define KVA_SEL_DATA 0x10
#define KVA_SEL_TSS 0x18

/* I/O ports the guest writes to. */
#define KVA_PORT_UCALL 0xe7 /* mailbox holds the call */
#define KVA_PORT_EXCEPTION 0xe8 /* rax vector, rbx error, rcx rip, rsi cr2 */

/*
 * Image header at KVA_IMAGE_GPA, filled in by the guest's linker script.
 * Offsets from the image's start, so the image runs at any address.
 */
#define KVA_IMAGE_MAGIC 0x4547414d49594646ULL /* "FFYIMAGE" */
struct kva_image_hdr {
	uint64_t magic;
	uint64_t entry; /* rdi = vCPU id, rsi = &params, rsp = stack top */
	uint64_t vectors; /* 32 exception stubs, KVA_VECTOR_STUB bytes apart */
	uint64_t end; /* end of .bss */
};
#define KVA_VECTOR_STUB 16

/* ucall commands (mailbox uc.cmd). */
enum kva_ucall_cmd {
	KVA_UC_NONE,
	KVA_UC_SYNC, /* args[0] stage; the host may save/compare state */
	KVA_UC_HEARTBEAT, /* args[0] writes done, [1] pass, [2] checks done */
	KVA_UC_REPORT, /* args[0..5]: values for the host */
	KVA_UC_DONE, /* the program finished */
	KVA_UC_FAIL, /* args[0] code, [1..5] values; see enum kva_fail */
	KVA_UC_RECORD, /* dirty: args[0] record bitmap gpa, [1] bits */
};

enum kva_fail {
	KVA_FAIL_MISMATCH = 1, /* verify: [1] page, [2] expected, [3] actual */
	KVA_FAIL_PARAMS, /* bad parameters: [1] what */
	KVA_FAIL_STATE, /* state: [1] 0-3 r12-r15, 4-11 xmm0-3 halves or an
			 * MSR index, [2] expected, [3] found */
};

struct kva_ucall {
	uint64_t cmd;
	uint64_t args[6];
};

/* One page per vCPU at KVA_MAILBOX_GPA + id * 4096; GS base points here. */
struct kva_mailbox {
	uint64_t self; /* its own virtual address: %gs:0 finds the mailbox */
	uint64_t vcpu_id;
	struct kva_ucall uc;
	/* Progress the guest keeps current; the host reads it at any time. */
	uint64_t writes;
	uint64_t pass;
	uint64_t checks;
};

#define KVA_PARAMS_MAGIC 0x534d524150594646ULL /* "FFYPARMS" */
#define KVA_PARAMS_VERSION 2

/* The parameter page at KVA_PARAMS_GPA, written by the VMM before boot. */
struct kva_guest_params {
	uint64_t magic;
	uint32_t version;
	uint32_t nr_vcpus;
	uint64_t mem_size; /* bytes of guest RAM */
	uint64_t data_start; /* first byte of the workload area */
	uint64_t data_size; /* its length */
	uint64_t workingset; /* bytes rewritten, split between the vCPUs */
	uint64_t stride; /* page writes between pauses */
	uint64_t sleep; /* empty-loop iterations per pause */
	uint64_t heartbeat; /* pauses between heartbeats; 0 = none */
	uint64_t passes; /* stop after this many passes; 0 = never */
	uint64_t sync_every; /* dirty: RECORD ucall every n pauses; 0 = never */
	uint64_t record; /* dirty: gpa of the record bitmaps; 0 = none */
	uint64_t seed;
	uint64_t ram_base; /* guest virtual address of gpa 0 */
	uint64_t rate; /* dirty: page writes per second, all vCPUs; 0: stride */
	uint64_t tsc_hz; /* with rate: TSC ticks per second, host-measured */
};

/* What the verify guest writes into word w of page p in pass n. */
static inline uint64_t kva_pattern(uint64_t page, uint64_t pass, uint64_t w)
{
	uint64_t x = (page * 0x9e3779b97f4a7c15ULL) ^ ((pass + 1) << 20) ^
		     (w << 56);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return x;
}

/* verify touches this many words per page, KVA_VERIFY_GAP bytes apart. */
#define KVA_VERIFY_WORDS 8
#define KVA_VERIFY_GAP 512

#endif /* FERRY_KVA_ABI_H */
