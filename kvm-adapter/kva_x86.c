// SPDX-License-Identifier: MIT
/*
 * x86 boot: the VMM puts the guest straight into 64-bit mode, as KVM
 * selftests do. It writes identity page tables (2 MiB pages over all of
 * RAM), a GDT with a 64-bit code segment, a data segment and a TSS, an IDT
 * whose 32 exception gates lead to the image's reporting stubs, the
 * parameter page and the mailboxes, then sets each vCPU's registers.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_ET (1ULL << 4)
#define CR0_NE (1ULL << 5)
#define CR0_WP (1ULL << 16)
#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define CR4_OSFXSR (1ULL << 9)
#define CR4_OSXMMEXCPT (1ULL << 10)
#define CR4_OSXSAVE (1ULL << 18)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define PTE_P (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_PS (1ULL << 7)

#define XFEATURE_X87 (1ULL << 0)
#define XFEATURE_SSE (1ULL << 1)
#define XFEATURE_AVX (1ULL << 2)

int kva_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out)
{
	struct kvm_cpuid2 *cpuid;
	unsigned int nent = 64;

	for (;;) {
		cpuid = calloc(1,
			       sizeof(*cpuid) +
				       nent * sizeof(struct kvm_cpuid_entry2));
		if (!cpuid)
			return -ENOMEM;
		cpuid->nent = nent;
		if (!ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid))
			break;
		free(cpuid);
		if (errno != E2BIG || nent >= 4096) {
			pr_perror("KVM_GET_SUPPORTED_CPUID");
			return -EIO;
		}
		nent *= 2;
	}
	*out = cpuid;
	return 0;
}

static const struct kvm_cpuid_entry2 *kva_cpuid_find(struct kvm_cpuid2 *c,
						     uint32_t fn, uint32_t idx)
{
	unsigned int i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

uint64_t kva_record_bytes(const struct kva_config *cfg)
{
	uint64_t pages = cfg->workingset / FY_PAGE_SIZE / cfg->nr_vcpus;

	if (!cfg->record)
		return 0;
	/* The guest's layout: a page-rounded bitmap per vCPU. */
	return cfg->nr_vcpus * (((pages + 7) / 8 + 4095) & ~4095ULL);
}

static void kva_write_gdt(struct kva_vm *vm)
{
	uint64_t *gdt = kva_gpa(vm, KVA_GDT_GPA);
	uint64_t tss = KVA_TSS_GPA, limit = 0x67;

	gdt[0] = 0;
	gdt[KVA_SEL_CODE / 8] = 0x00af9b000000ffffULL; /* L, P, DPL0, code */
	gdt[KVA_SEL_DATA / 8] = 0x00cf93000000ffffULL; /* DB, G, P, data */
	/* A 64-bit busy TSS takes two slots. */
	gdt[KVA_SEL_TSS / 8] = (limit & 0xffff) | (tss & 0xffffff) << 16 |
			       0x8bULL << 40 | ((tss >> 24) & 0xff) << 56;
	gdt[KVA_SEL_TSS / 8 + 1] = tss >> 32;
}

static void kva_write_idt(struct kva_vm *vm, uint64_t vectors)
{
	uint64_t *idt = kva_gpa(vm, KVA_IDT_GPA);
	unsigned int v;

	for (v = 0; v < 32; v++) {
		uint64_t h = vectors + v * KVA_VECTOR_STUB;

		/* A present 64-bit interrupt gate, DPL 0, no IST. */
		idt[2 * v] = (h & 0xffff) | (uint64_t)KVA_SEL_CODE << 16 |
			     0x8eULL << 40 | ((h >> 16) & 0xffff) << 48;
		idt[2 * v + 1] = h >> 32;
	}
}

static void kva_write_page_tables(struct kva_vm *vm)
{
	uint64_t *pml4 = kva_gpa(vm, KVA_PGTABLE_GPA);
	uint64_t *pdpt = kva_gpa(vm, KVA_PGTABLE_GPA + 0x1000);
	uint64_t gib = (vm->mem_size + (1ULL << 30) - 1) >> 30, i, j;

	pml4[0] = (KVA_PGTABLE_GPA + 0x1000) | PTE_P | PTE_RW;
	for (i = 0; i < gib; i++) {
		uint64_t pd_gpa = KVA_PGTABLE_GPA + 0x2000 + i * 0x1000;
		uint64_t *pd = kva_gpa(vm, pd_gpa);

		pdpt[i] = pd_gpa | PTE_P | PTE_RW;
		for (j = 0; j < 512; j++) {
			uint64_t gpa = (i << 30) + (j << 21);

			/* Map RAM only: beyond it is a clear #PF. */
			if (gpa >= vm->mem_size)
				break;
			pd[j] = gpa | PTE_P | PTE_RW | PTE_PS;
		}
	}
}

int kva_boot_setup(struct kva_vm *vm, const struct kva_config *cfg)
{
	struct kva_guest_params *p = kva_gpa(vm, KVA_PARAMS_GPA);
	const struct kva_image_hdr *hdr;
	const unsigned char *img;
	uint64_t rec = kva_record_bytes(cfg);
	unsigned int i;
	size_t len;
	int ret;

	ret = kva_guest_image(cfg->guest, &img, &len);
	if (ret) {
		pr_err("no guest program named '%s' (have: %s)", cfg->guest,
		       kva_guest_names());
		return ret;
	}
	hdr = (const void *)img;
	if (len < sizeof(*hdr) || hdr->magic != KVA_IMAGE_MAGIC ||
	    hdr->end < KVA_IMAGE_GPA + len ||
	    hdr->end > KVA_IMAGE_GPA + KVA_IMAGE_MAX ||
	    hdr->entry < KVA_IMAGE_GPA || hdr->entry >= KVA_IMAGE_GPA + len ||
	    hdr->vectors < KVA_IMAGE_GPA ||
	    hdr->vectors + 32 * KVA_VECTOR_STUB > KVA_IMAGE_GPA + len) {
		pr_err("guest image '%s' is malformed", cfg->guest);
		return -ENOEXEC;
	}
	memcpy(kva_gpa(vm, KVA_IMAGE_GPA), img, len);
	/* .bss: zero even if the memfd was prefilled or adopted. */
	memset(kva_gpa(vm, KVA_IMAGE_GPA + len), 0,
	       hdr->end - KVA_IMAGE_GPA - len);

	memset(p, 0, sizeof(*p));
	p->magic = KVA_PARAMS_MAGIC;
	p->version = KVA_PARAMS_VERSION;
	p->nr_vcpus = vm->nr_vcpus;
	p->mem_size = vm->mem_size;
	p->record = rec ? KVA_DATA_GPA : 0;
	p->data_start = KVA_DATA_GPA + rec;
	p->data_size = vm->mem_size - KVA_DATA_GPA - rec;
	p->workingset = cfg->workingset;
	p->stride = cfg->stride;
	p->sleep = cfg->sleep;
	p->heartbeat = cfg->heartbeat;
	p->passes = cfg->passes;
	p->sync_every = cfg->sync_every;
	p->seed = cfg->seed;
	if (rec)
		memset(kva_gpa(vm, KVA_DATA_GPA), 0, rec);

	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_mailbox *mb =
			kva_gpa(vm, KVA_MAILBOX_GPA + i * FY_PAGE_SIZE);

		memset(mb, 0, sizeof(*mb));
		mb->self = KVA_MAILBOX_GPA + i * FY_PAGE_SIZE;
		mb->vcpu_id = i;
	}
	memset(kva_gpa(vm, KVA_TSS_GPA), 0, FY_PAGE_SIZE);
	kva_write_gdt(vm);
	kva_write_idt(vm, hdr->vectors);
	kva_write_page_tables(vm);
	return 0;
}

static void kva_seg(struct kvm_segment *s, uint16_t sel, uint8_t type,
		    bool code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

int kva_vcpu_boot(struct kva_vm *vm, struct kva_vcpu *vcpu)
{
	const struct kva_image_hdr *hdr = kva_gpa(vm, KVA_IMAGE_GPA);
	const struct kvm_cpuid_entry2 *leaf;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_xcrs xcrs;
	bool xsave;

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs)) {
		pr_perror("vCPU %u: KVM_GET_SREGS", vcpu->id);
		return -EIO;
	}
	leaf = kva_cpuid_find(vm->cpuid, 1, 0);
	xsave = leaf && (leaf->ecx & (1U << 26));
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT |
		    (xsave ? CR4_OSXSAVE : 0);
	sregs.efer = EFER_LME | EFER_LMA;
	sregs.cr3 = KVA_PGTABLE_GPA;
	kva_seg(&sregs.cs, KVA_SEL_CODE, 11, true);
	kva_seg(&sregs.ds, KVA_SEL_DATA, 3, false);
	sregs.es = sregs.fs = sregs.ss = sregs.gs = sregs.ds;
	sregs.gs.base = KVA_MAILBOX_GPA + vcpu->id * FY_PAGE_SIZE;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.selector = KVA_SEL_TSS;
	sregs.tr.base = KVA_TSS_GPA;
	sregs.tr.limit = 0x67;
	sregs.tr.type = 11; /* busy 64-bit TSS */
	sregs.tr.present = 1;
	memset(&sregs.ldt, 0, sizeof(sregs.ldt));
	sregs.ldt.type = 2;
	sregs.ldt.present = 1;
	sregs.ldt.unusable = 1;
	sregs.gdt.base = KVA_GDT_GPA;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.idt.base = KVA_IDT_GPA;
	sregs.idt.limit = 256 * 16 - 1;
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs)) {
		pr_perror("vCPU %u: KVM_SET_SREGS", vcpu->id);
		return -EIO;
	}
	if (xsave) {
		/* x87, SSE and AVX if offered, so guests may use them. */
		leaf = kva_cpuid_find(vm->cpuid, 0xd, 0);
		memset(&xcrs, 0, sizeof(xcrs));
		xcrs.nr_xcrs = 1;
		xcrs.xcrs[0].xcr = 0;
		xcrs.xcrs[0].value = XFEATURE_X87 | XFEATURE_SSE;
		if (leaf && (leaf->eax & XFEATURE_AVX))
			xcrs.xcrs[0].value |= XFEATURE_AVX;
		if (ioctl(vcpu->fd, KVM_SET_XCRS, &xcrs)) {
			pr_perror("vCPU %u: KVM_SET_XCRS", vcpu->id);
			return -EIO;
		}
	}
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = hdr->entry;
	regs.rsp = KVA_STACK_GPA + (vcpu->id + 1) * KVA_STACK_SIZE;
	regs.rdi = vcpu->id;
	regs.rsi = KVA_PARAMS_GPA;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs)) {
		pr_perror("vCPU %u: KVM_SET_REGS", vcpu->id);
		return -EIO;
	}
	return 0;
}
