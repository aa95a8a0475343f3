// SPDX-License-Identifier: MIT
/*
 * x86 boot: what guest RAM holds before the first instruction. The image,
 * the parameter page and the mailboxes, and for the kvm accelerator,
 * which puts the guest straight into 64-bit mode as KVM selftests do,
 * identity page tables (2 MiB pages over all of RAM), a GDT with a 64-bit
 * code segment, a data segment and a TSS, and an IDT whose 32 exception
 * gates lead to the image's reporting stubs. kva_boot_regs() says where
 * each vCPU starts; the accelerator loads that into its registers.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

#define PTE_P (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_PS (1ULL << 7)

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

/*
 * TSC ticks per second, measured once against CLOCK_MONOTONIC over 20 ms
 * (the dirty guest's clock for --rate); 0 if the TSC does not advance.
 */
uint64_t kva_tsc_hz(void)
{
	static uint64_t hz;
	uint64_t t0, t1, c0, c1;

	if (hz)
		return hz;
	t0 = fy_now_ns();
	c0 = __builtin_ia32_rdtsc();
	usleep(20000);
	t1 = fy_now_ns();
	c1 = __builtin_ia32_rdtsc();
	if (c1 > c0 && t1 > t0)
		hz = (uint64_t)((double)(c1 - c0) * 1e9 / (double)(t1 - t0));
	return hz;
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
	    hdr->end < len || hdr->end > KVA_IMAGE_MAX ||
	    hdr->entry < sizeof(*hdr) || hdr->entry >= len ||
	    hdr->vectors < sizeof(*hdr) ||
	    hdr->vectors + 32 * KVA_VECTOR_STUB > len) {
		pr_err("guest image '%s' is malformed", cfg->guest);
		return -ENOEXEC;
	}
	memcpy(kva_gpa(vm, KVA_IMAGE_GPA), img, len);
	/* .bss: zero even if the memfd was prefilled or adopted. */
	memset(kva_gpa(vm, KVA_IMAGE_GPA + len), 0, hdr->end - len);

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
	p->ram_base = kva_gva(vm, 0);
	p->rate = cfg->rate;
	if (cfg->rate) {
		p->tsc_hz = kva_tsc_hz();
		if (!p->tsc_hz) {
			pr_err("--rate needs the TSC's rate, which could not "
			       "be measured");
			return -ENODEV;
		}
	}
	if (rec)
		memset(kva_gpa(vm, KVA_DATA_GPA), 0, rec);

	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_mailbox *mb =
			kva_gpa(vm, KVA_MAILBOX_GPA + i * FY_PAGE_SIZE);

		memset(mb, 0, sizeof(*mb));
		mb->self = kva_gva(vm, KVA_MAILBOX_GPA + i * FY_PAGE_SIZE);
		mb->vcpu_id = i;
	}
	memset(kva_gpa(vm, KVA_TSS_GPA), 0, FY_PAGE_SIZE);
	kva_write_gdt(vm);
	kva_write_idt(vm, KVA_IMAGE_GPA + hdr->vectors);
	kva_write_page_tables(vm);
	return 0;
}

void kva_boot_regs(struct kva_vm *vm, struct kva_vcpu *vcpu,
		   struct kva_boot_regs *r)
{
	const struct kva_image_hdr *hdr = kva_gpa(vm, KVA_IMAGE_GPA);

	r->rip = kva_gva(vm, KVA_IMAGE_GPA + hdr->entry);
	r->rsp = kva_gva(vm, KVA_STACK_GPA + (vcpu->id + 1) * KVA_STACK_SIZE);
	r->rdi = vcpu->id;
	r->rsi = kva_gva(vm, KVA_PARAMS_GPA);
	r->gs_base = kva_gva(vm, KVA_MAILBOX_GPA + vcpu->id * FY_PAGE_SIZE);
}
