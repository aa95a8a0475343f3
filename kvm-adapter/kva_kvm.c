// SPDX-License-Identifier: MIT
/*
 * The kvm accelerator: vCPUs run in a KVM VM (/dev/kvm) whose one memslot
 * is all of guest RAM, with dirty logging from the start.
 *
 * Pausing: kick() sets kvm_run->immediate_exit and sends the vCPU's thread
 * SIGUSR1. KVM_RUN then returns EINTR at once or as soon as it notices the
 * signal, and, being a KVM_RUN, first completes any port I/O the vCPU was
 * in, so a parked vCPU's registers are consistent and can be saved.
 *
 * Dirty log, with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: KVM_GET_DIRTY_LOG
 * copies the slot's bitmap without touching it, then KVM_CLEAR_DIRTY_LOG
 * clears and write-protects exactly the pages reported, in chunks, so the
 * vCPUs never wait on one long walk over all of RAM. A page written after
 * its bit was cleared is dirty again and shows in the next harvest; none is
 * lost. (The dirty ring is not used: on this kernel a ring smaller than
 * the pages dirtied in one KVM_RUN ends in endless
 * KVM_EXIT_DIRTY_RING_FULL.)
 *
 * x86 boot: the guest enters 64-bit mode directly, as in KVM selftests,
 * on the page tables, GDT and IDT kva_x86.c writes into guest RAM.
 *
 * The vCPU and VM state that save and load move is in kva_kvm_state.c.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

/* Pages per KVM_CLEAR_DIRTY_LOG; a multiple of 64 as KVM requires. */
#define KVA_CLEAR_CHUNK (1ULL << 18)

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

#define XFEATURE_X87 (1ULL << 0)
#define XFEATURE_SSE (1ULL << 1)
#define XFEATURE_AVX (1ULL << 2)

static int kvm_check(struct kva_vm *vm, long cap)
{
	int r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

static int kvm_vcpu_open(struct kva_vm *vm, unsigned int id)
{
	struct kva_vcpu *vcpu = &vm->vcpus[id];
	int ret;

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->mb = kva_gpa(vm, KVA_MAILBOX_GPA + id * FY_PAGE_SIZE);
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (vcpu->fd < 0) {
		ret = -errno;
		pr_perror("KVM_CREATE_VCPU %u", id);
		return ret;
	}
	vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		ret = -errno;
		pr_perror("mmap kvm_run of vCPU %u", id);
		vcpu->run = NULL;
		return ret;
	}
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, vm->cpuid)) {
		ret = -errno;
		pr_perror("KVM_SET_CPUID2 on vCPU %u", id);
		return ret;
	}
	return 0;
}

static int kvm_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out)
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

static int kvm_open(struct kva_vm *vm)
{
	struct kvm_userspace_memory_region slot;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
	unsigned int i;
	int ret, r;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		pr_perror("open /dev/kvm");
		return ret;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		pr_err("unexpected KVM API version");
		return -EPROTO;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		pr_perror("KVM_CREATE_VM");
		return ret;
	}
	r = kvm_check(vm, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (!(r & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) ||
	    !kvm_check(vm, KVM_CAP_IMMEDIATE_EXIT) ||
	    !kvm_check(vm, KVM_CAP_XSAVE) || !kvm_check(vm, KVM_CAP_XCRS)) {
		pr_err("KVM lacks manual dirty-log protect, immediate exit, "
		       "XSAVE or XCRS");
		return -EOPNOTSUPP;
	}
	/*
	 * Manual protect, without KVM_DIRTY_LOG_INITIALLY_SET: the log starts
	 * empty and KVM_GET_DIRTY_LOG leaves clearing to KVM_CLEAR_DIRTY_LOG.
	 */
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap)) {
		ret = -errno;
		pr_perror("enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
		return ret;
	}
	r = kvm_check(vm, KVM_CAP_XSAVE2);
	vm->xsave_size = r > (int)sizeof(struct kvm_xsave)
				 ? (size_t)r
				 : sizeof(struct kvm_xsave);

	/* MAP_NORESERVE: nothing is allocated until first touched. */
	vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE, vm->memfd, 0);
	if (vm->mem == MAP_FAILED) {
		ret = -errno;
		vm->mem = NULL;
		pr_perror("mmap guest RAM");
		return ret;
	}
	slot = (struct kvm_userspace_memory_region){
		.slot = 0,
		.flags = KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = 0,
		.memory_size = vm->mem_size,
		.userspace_addr = (uintptr_t)vm->mem,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot)) {
		ret = -errno;
		pr_perror("KVM_SET_USER_MEMORY_REGION");
		return ret;
	}
	vm->dirty_bm = fy_bitmap_alloc(kva_vm_pages(vm));
	if (!vm->dirty_bm)
		return -ENOMEM;
	r = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r <= 0) {
		pr_perror("KVM_GET_VCPU_MMAP_SIZE");
		return -EIO;
	}
	vm->run_size = r;
	ret = kvm_supported_cpuid(vm->kvm_fd, &vm->cpuid);
	if (ret)
		return ret;
	for (i = 0; i < vm->nr_vcpus; i++) {
		ret = kvm_vcpu_open(vm, i);
		if (ret)
			return ret;
	}
	return kva_kvm_msr_list(vm);
}

static void kvm_close(struct kva_vm *vm)
{
	unsigned int i;

	for (i = 0; i < KVA_MAX_VCPUS; i++) {
		struct kva_vcpu *vcpu = &vm->vcpus[i];

		if (vcpu->run)
			munmap(vcpu->run, vm->run_size);
		if (vcpu->fd >= 0)
			close(vcpu->fd);
	}
	if (vm->uffd >= 0)
		close(vm->uffd);
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->dirty_bm);
	free(vm->cpuid);
	free(vm->msrs);
}

static void kvm_kick(struct kva_vcpu *vcpu, bool immediate)
{
	if (immediate)
		vcpu->run->immediate_exit = 1;
	pthread_kill(vcpu->thread, SIGUSR1);
}

static void kvm_unkick(struct kva_vcpu *vcpu)
{
	vcpu->run->immediate_exit = 0;
}

/*
 * Log why a vCPU stopped beside its registers. After a triple fault on
 * AMD, KVM has already reset the vCPU: the registers are the reset state.
 */
static void kvm_vcpu_dump(struct kva_vcpu *vcpu, const char *why)
{
	struct kvm_vcpu_events e;
	struct kvm_sregs s;
	struct kvm_regs r;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) ||
	    ioctl(vcpu->fd, KVM_GET_SREGS, &s) ||
	    ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &e)) {
		pr_err("vCPU %u: %s", vcpu->id, why);
		return;
	}
	pr_err("vCPU %u: %s at rip %#llx rsp %#llx rflags %#llx cr0 %#llx cr3 "
	       "%#llx cr4 %#llx efer %#llx cs %#x/%u ss %#x/%u tr %#x/%u gdt "
	       "%#llx idt %#llx, exception %u/%u vector %u",
	       vcpu->id, why, (unsigned long long)r.rip,
	       (unsigned long long)r.rsp, (unsigned long long)r.rflags,
	       (unsigned long long)s.cr0, (unsigned long long)s.cr3,
	       (unsigned long long)s.cr4, (unsigned long long)s.efer,
	       s.cs.selector, s.cs.type, s.ss.selector, s.ss.type,
	       s.tr.selector, s.tr.type, (unsigned long long)s.gdt.base,
	       (unsigned long long)s.idt.base, e.exception.injected,
	       e.exception.pending, e.exception.nr);
}

static int kvm_run(struct kva_vcpu *vcpu, struct kva_event *ev)
{
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	unsigned int i;

	if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
		if (errno == EINTR || errno == EAGAIN) {
			ev->kind = KVA_EV_INTR;
			return 0;
		}
		pr_perror("vCPU %u: KVM_RUN", vcpu->id);
		return -EIO;
	}
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		if (run->io.direction == KVM_EXIT_IO_OUT &&
		    run->io.port == KVA_PORT_UCALL) {
			ev->kind = KVA_EV_UCALL;
			ev->uc.cmd = vcpu->mb->uc.cmd;
			for (i = 0; i < ARRAY_SIZE(ev->uc.args); i++)
				ev->uc.args[i] = vcpu->mb->uc.args[i];
			return 0;
		}
		if (run->io.direction == KVM_EXIT_IO_OUT &&
		    run->io.port == KVA_PORT_EXCEPTION) {
			if (ioctl(vcpu->fd, KVM_GET_REGS, &regs)) {
				pr_perror("vCPU %u: KVM_GET_REGS", vcpu->id);
				return -EIO;
			}
			ev->kind = KVA_EV_EXCEPTION;
			ev->vector = regs.rax & 0xff;
			ev->error = regs.rbx;
			ev->rip = regs.rcx;
			ev->cr2 = regs.rsi;
			return 0;
		}
		pr_err("vCPU %u: unexpected port I/O %s port %#x", vcpu->id,
		       run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
		       run->io.port);
		return -EPROTO;
	case KVM_EXIT_HLT:
		ev->kind = KVA_EV_HALT;
		return 0;
	case KVM_EXIT_INTR:
		ev->kind = KVA_EV_INTR;
		return 0;
	case KVM_EXIT_SHUTDOWN:
		kvm_vcpu_dump(vcpu, "shutdown (triple fault)");
		return -EFAULT;
	case KVM_EXIT_FAIL_ENTRY:
		pr_err("vCPU %u: VM entry failed, reason %#llx", vcpu->id,
		       (unsigned long long)
			       run->fail_entry.hardware_entry_failure_reason);
		return -EIO;
	case KVM_EXIT_INTERNAL_ERROR:
		/* Suberror 1 (emulation) names an instruction KVM cannot run. */
		if (ioctl(vcpu->fd, KVM_GET_REGS, &regs))
			regs.rip = ~0ULL;
		pr_err("vCPU %u: KVM internal error, suberror %u, at rip %#llx",
		       vcpu->id, run->internal.suberror,
		       (unsigned long long)regs.rip);
		return -EIO;
	case KVM_EXIT_MMIO:
		pr_err("vCPU %u: access to %#llx, outside guest RAM", vcpu->id,
		       (unsigned long long)run->mmio.phys_addr);
		return -EFAULT;
	default:
		pr_err("vCPU %u: unexpected exit reason %u", vcpu->id,
		       run->exit_reason);
		return -EPROTO;
	}
}

int kva_kvm_complete_io(struct kva_vcpu *vcpu)
{
	int r;

	vcpu->run->immediate_exit = 1;
	r = ioctl(vcpu->fd, KVM_RUN, 0);
	vcpu->run->immediate_exit = 0;
	if (r == 0 || errno != EINTR) {
		pr_err("vCPU %u: KVM_RUN with immediate_exit did not return "
		       "EINTR",
		       vcpu->id);
		return -EIO;
	}
	return 0;
}

static const struct kvm_cpuid_entry2 *kvm_cpuid_find(struct kvm_cpuid2 *c,
						     uint32_t fn, uint32_t idx)
{
	unsigned int i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

static void kvm_seg(struct kvm_segment *s, uint16_t sel, uint8_t type,
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

static int kvm_vcpu_boot(struct kva_vm *vm, struct kva_vcpu *vcpu)
{
	const struct kvm_cpuid_entry2 *leaf;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_xcrs xcrs;
	struct kva_boot_regs br;
	bool xsave;

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs)) {
		pr_perror("vCPU %u: KVM_GET_SREGS", vcpu->id);
		return -EIO;
	}
	leaf = kvm_cpuid_find(vm->cpuid, 1, 0);
	xsave = leaf && (leaf->ecx & (1U << 26));
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT |
		    (xsave ? CR4_OSXSAVE : 0);
	sregs.efer = EFER_LME | EFER_LMA;
	sregs.cr3 = KVA_PGTABLE_GPA;
	kvm_seg(&sregs.cs, KVA_SEL_CODE, 11, true);
	kvm_seg(&sregs.ds, KVA_SEL_DATA, 3, false);
	sregs.es = sregs.fs = sregs.ss = sregs.gs = sregs.ds;
	kva_boot_regs(vm, vcpu, &br);
	sregs.gs.base = br.gs_base;
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
		leaf = kvm_cpuid_find(vm->cpuid, 0xd, 0);
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
	regs.rip = br.rip;
	regs.rsp = br.rsp;
	regs.rdi = br.rdi;
	regs.rsi = br.rsi;
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs)) {
		pr_perror("vCPU %u: KVM_SET_REGS", vcpu->id);
		return -EIO;
	}
	return 0;
}

static int kvm_harvest(struct kva_vm *vm, uint64_t *bm)
{
	uint64_t pages = kva_vm_pages(vm), first, n, w, any;
	struct kvm_dirty_log log = { .slot = 0 };
	struct kvm_clear_dirty_log clr = { .slot = 0 };
	int ret = 0;

	log.dirty_bitmap = vm->dirty_bm;
	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log)) {
		ret = -errno;
		pr_perror("KVM_GET_DIRTY_LOG");
		goto out;
	}
	for (first = 0; first < pages; first += KVA_CLEAR_CHUNK) {
		n = FY_MIN(KVA_CLEAR_CHUNK, pages - first);
		any = 0;
		for (w = first / 64; w < (first + n + 63) / 64; w++) {
			any |= vm->dirty_bm[w];
			bm[w] |= vm->dirty_bm[w];
		}
		if (!any)
			continue;
		clr.first_page = first;
		clr.num_pages = n;
		clr.dirty_bitmap = vm->dirty_bm + first / 64;
		if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr)) {
			ret = -errno;
			pr_perror("KVM_CLEAR_DIRTY_LOG at page %llu",
				  (unsigned long long)first);
			goto out;
		}
	}
out:
	return ret;
}

const struct kva_accel_ops kva_kvm_ops = {
	.id = KVA_ACCEL_KVM,
	.name = "kvm",
	.open = kvm_open,
	.close = kvm_close,
	.vcpu_boot = kvm_vcpu_boot,
	.run = kvm_run,
	.kick = kvm_kick,
	.unkick = kvm_unkick,
	.complete_io = kva_kvm_complete_io,
	.harvest = kvm_harvest,
	.save = kva_kvm_save,
	.sect_size = kva_kvm_sect_size,
	.vcpu_tags = kva_kvm_vcpu_tags,
	.vm_tags = kva_kvm_vm_tags,
	.load = kva_kvm_load,
	.uffd_register = kva_uffd_register,
	.uffd_release = kva_uffd_release,
};
