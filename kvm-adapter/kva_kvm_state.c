// SPDX-License-Identifier: MIT
/*
 * The kvm accelerator's vCPU and VM state, as state blob sections (the ops
 * table in kva_kvm.c points here): which MSRs are saved, save, the size
 * each section must have, load.
 *
 * Most sections are KVM's own structures as KVM_GET_* returns them; MSRs
 * and CPUID have sections of their own. Load follows the order of KVM
 * selftests' vcpu_load_state(), and the guest's kvmclock continues from
 * where it was saved.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

/* State blob sections of their own (the others are KVM's structures). */
struct kva_msrs_sect {
	uint32_t nmsrs;
	uint32_t pad;
	struct kvm_msr_entry e[];
};

struct kva_cpuid_sect {
	uint32_t nent;
	uint32_t pad;
	struct kvm_cpuid_entry2 e[];
};

/* The MSRs worth saving, if KVM lists them (KVM_GET_MSR_INDEX_LIST). */
static const uint32_t kva_msr_wanted[] = {
	0x00000010, /* TSC */
	0x0000003b, /* TSC_ADJUST */
	0x00000048, /* SPEC_CTRL */
	0x00000174, /* SYSENTER_CS */
	0x00000175, /* SYSENTER_ESP */
	0x00000176, /* SYSENTER_EIP */
	0x000001a0, /* MISC_ENABLE */
	0x00000277, /* PAT */
	0x00000da0, /* XSS */
	0xc0000081, /* STAR */
	0xc0000082, /* LSTAR */
	0xc0000083, /* CSTAR */
	0xc0000084, /* SFMASK */
	0xc0000102, /* KERNEL_GS_BASE */
	0xc0000103, /* TSC_AUX */
	0x4b564d00, /* KVM wall clock */
	0x4b564d01, /* KVM system time */
	0x4b564d02, /* KVM async PF */
	0x4b564d03, /* KVM steal time */
	0x4b564d04, /* KVM PV EOI */
	0x4b564d05, /* KVM poll control */
	0x4b564d06, /* KVM async PF interrupt */
};

/*
 * Whether KVM lets the host read msr and write the value back. Listed
 * MSRs may still refuse a write (the async-PF interrupt MSR wants an
 * in-kernel LAPIC), which would make every restore fail.
 */
static bool kvm_msr_roundtrip(struct kva_vcpu *vcpu, uint32_t msr)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = msr };

	return ioctl(vcpu->fd, KVM_GET_MSRS, &m) == 1 &&
	       ioctl(vcpu->fd, KVM_SET_MSRS, &m) == 1;
}

/* The MSRs to save: wanted, listed by KVM and writable back. */
int kva_kvm_msr_list(struct kva_vm *vm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	unsigned int i, j;
	int ret = 0;

	if (!ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) ||
	    errno != E2BIG) {
		pr_perror("KVM_GET_MSR_INDEX_LIST");
		return -EIO;
	}
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	vm->msrs = calloc(ARRAY_SIZE(kva_msr_wanted), sizeof(uint32_t));
	if (!list || !vm->msrs) {
		ret = -ENOMEM;
		goto out_free_list;
	}
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list)) {
		ret = -errno;
		pr_perror("KVM_GET_MSR_INDEX_LIST");
		goto out_free_list;
	}
	for (i = 0; i < ARRAY_SIZE(kva_msr_wanted); i++)
		for (j = 0; j < list->nmsrs; j++)
			if (list->indices[j] == kva_msr_wanted[i]) {
				if (kvm_msr_roundtrip(&vm->vcpus[0],
						      kva_msr_wanted[i]))
					vm->msrs[vm->nr_msrs++] =
						kva_msr_wanted[i];
				break;
			}
out_free_list:
	free(list);
	return ret;
}

/* Read the MSRs vm->msrs lists; those KVM refuses are left out. */
static int kvm_save_msrs(struct kva_vm *vm, struct kva_vcpu *vcpu,
			 struct kva_buf *b)
{
	struct kvm_msrs *m;
	struct kva_msrs_sect *s;
	unsigned int i, n = 0;
	int r, ret = 0;

	m = calloc(1, sizeof(*m) + sizeof(struct kvm_msr_entry));
	s = kva_buf_sect(b, KVA_TAG_MSRS, vcpu->id,
			 sizeof(*s) + vm->nr_msrs * sizeof(s->e[0]));
	if (!m || !s) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (i = 0; i < vm->nr_msrs; i++) {
		m->nmsrs = 1;
		m->entries[0].index = vm->msrs[i];
		m->entries[0].data = 0;
		r = ioctl(vcpu->fd, KVM_GET_MSRS, m);
		if (r < 0) {
			ret = -errno;
			pr_perror("vCPU %u: KVM_GET_MSRS", vcpu->id);
			goto out_free;
		}
		if (r == 1)
			s->e[n++] = m->entries[0];
	}
	/* An MSR KVM would not read is left out: the section shrinks to
	 * what it holds (it is the last one, so nothing moves). */
	s->nmsrs = n;
	kva_buf_shrink(b, (vm->nr_msrs - n) * sizeof(s->e[0]));
out_free:
	free(m);
	return ret;
}

/* Append a section holding what ioctl req reads from fd. */
static int kvm_get(struct kva_buf *b, int fd, unsigned long req,
		   const char *what, uint16_t tag, uint16_t vcpu, size_t size)
{
	void *d = kva_buf_sect(b, tag, vcpu, size);

	if (!d)
		return -ENOMEM;
	if (ioctl(fd, req, d)) {
		int ret = -errno;

		pr_perror("%s", what);
		return ret;
	}
	return 0;
}

int kva_kvm_save(struct kva_vm *vm, struct kva_buf *b)
{
	struct kva_cpuid_sect *cs;
	size_t cpuid_len;
	unsigned int i;
	int ret;

	cpuid_len = vm->cpuid->nent * sizeof(cs->e[0]);
	cs = kva_buf_sect(b, KVA_TAG_CPUID, KVA_VM_WIDE,
			  sizeof(*cs) + cpuid_len);
	if (!cs)
		return -ENOMEM;
	cs->nent = vm->cpuid->nent;
	memcpy(cs->e, vm->cpuid->entries, cpuid_len);
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_vcpu *vcpu = &vm->vcpus[i];
		int fd = vcpu->fd;

		/* KVM's state is consistent only once the I/O completed. */
		ret = kva_kvm_complete_io(vcpu);
		if (ret)
			return ret;
		ret = kvm_get(b, fd, KVM_GET_REGS, "KVM_GET_REGS", KVA_TAG_REGS,
			      i, sizeof(struct kvm_regs));
		ret = ret
			      ?: kvm_get(b, fd, KVM_GET_SREGS, "KVM_GET_SREGS",
					 KVA_TAG_SREGS, i,
					 sizeof(struct kvm_sregs));
		ret = ret
			      ?: kvm_get(b, fd,
					 vm->xsave_size >
							 sizeof(struct kvm_xsave)
						 ? KVM_GET_XSAVE2
						 : KVM_GET_XSAVE,
					 "KVM_GET_XSAVE", KVA_TAG_XSAVE, i,
					 vm->xsave_size);
		ret = ret
			      ?: kvm_get(b, fd, KVM_GET_XCRS, "KVM_GET_XCRS",
					 KVA_TAG_XCRS, i,
					 sizeof(struct kvm_xcrs));
		ret = ret ?: kvm_save_msrs(vm, vcpu, b);
		ret = ret
			      ?: kvm_get(b, fd, KVM_GET_VCPU_EVENTS,
					 "KVM_GET_VCPU_EVENTS", KVA_TAG_EVENTS,
					 i, sizeof(struct kvm_vcpu_events));
		ret = ret
			      ?: kvm_get(b, fd, KVM_GET_MP_STATE,
					 "KVM_GET_MP_STATE", KVA_TAG_MP_STATE,
					 i, sizeof(struct kvm_mp_state));
		ret = ret
			      ?: kvm_get(b, fd, KVM_GET_DEBUGREGS,
					 "KVM_GET_DEBUGREGS", KVA_TAG_DEBUGREGS,
					 i, sizeof(struct kvm_debugregs));
		if (ret)
			return ret;
	}
	return kvm_get(b, vm->vm_fd, KVM_GET_CLOCK, "KVM_GET_CLOCK",
		       KVA_TAG_CLOCK, KVA_VM_WIDE,
		       sizeof(struct kvm_clock_data));
}

size_t kva_kvm_sect_size(struct kva_vm *vm, unsigned int tag, const void *data,
			 uint32_t len)
{
	uint32_t cnt = len >= 8 ? *(const uint32_t *)data : 0;

	switch (tag) {
	case KVA_TAG_CLOCK:
		return sizeof(struct kvm_clock_data);
	case KVA_TAG_CPUID:
		return len < 8 || cnt > 4096
			       ? 0
			       : 8 + cnt * sizeof(struct kvm_cpuid_entry2);
	case KVA_TAG_MSRS:
		return len < 8 || cnt > 4096
			       ? 0
			       : 8 + cnt * sizeof(struct kvm_msr_entry);
	case KVA_TAG_REGS:
		return sizeof(struct kvm_regs);
	case KVA_TAG_SREGS:
		return sizeof(struct kvm_sregs);
	case KVA_TAG_XSAVE:
		return vm->xsave_size;
	case KVA_TAG_XCRS:
		return sizeof(struct kvm_xcrs);
	case KVA_TAG_EVENTS:
		return sizeof(struct kvm_vcpu_events);
	case KVA_TAG_MP_STATE:
		return sizeof(struct kvm_mp_state);
	case KVA_TAG_DEBUGREGS:
		return sizeof(struct kvm_debugregs);
	default:
		return 0;
	}
}

const uint16_t kva_kvm_vcpu_tags[] = {
	KVA_TAG_REGS,	  KVA_TAG_SREGS,     KVA_TAG_XSAVE,
	KVA_TAG_XCRS,	  KVA_TAG_MSRS,	     KVA_TAG_EVENTS,
	KVA_TAG_MP_STATE, KVA_TAG_DEBUGREGS, 0,
};
const uint16_t kva_kvm_vm_tags[] = { KVA_TAG_CLOCK, KVA_TAG_CPUID, 0 };

#define KVM_SET(fd, req, arg)                                  \
	do {                                                   \
		if (ioctl(fd, req, arg) < 0) {                 \
			ret = -errno;                          \
			pr_perror("vCPU %u: " #req, vcpu->id); \
			goto out_free;                         \
		}                                              \
	} while (0)

static int kvm_load_vcpu(struct kva_vcpu *vcpu, const struct kva_parsed *ps,
			 struct kvm_cpuid2 *cpuid)
{
	const void *const *v = ps->v[vcpu->id];
	const struct kva_msrs_sect *ms = v[KVA_TAG_MSRS];
	struct kvm_msrs *m;
	int ret = 0, r;

	m = calloc(1, sizeof(*m) + ms->nmsrs * sizeof(m->entries[0]));
	if (!m)
		return -ENOMEM;
	m->nmsrs = ms->nmsrs;
	memcpy(m->entries, ms->e, ms->nmsrs * sizeof(m->entries[0]));
	/* The order of KVM selftests' vcpu_load_state(). */
	KVM_SET(vcpu->fd, KVM_SET_CPUID2, cpuid);
	KVM_SET(vcpu->fd, KVM_SET_SREGS, v[KVA_TAG_SREGS]);
	r = ioctl(vcpu->fd, KVM_SET_MSRS, m);
	if (r != (int)ms->nmsrs) {
		ret = r < 0 ? -errno : -EINVAL;
		pr_err("vCPU %u: KVM_SET_MSRS set %d of %u MSRs (stopped at "
		       "%#x)",
		       vcpu->id, r, ms->nmsrs,
		       r >= 0 && r < (int)ms->nmsrs ? ms->e[r].index : 0);
		goto out_free;
	}
	KVM_SET(vcpu->fd, KVM_SET_XCRS, v[KVA_TAG_XCRS]);
	KVM_SET(vcpu->fd, KVM_SET_XSAVE, v[KVA_TAG_XSAVE]);
	KVM_SET(vcpu->fd, KVM_SET_VCPU_EVENTS, v[KVA_TAG_EVENTS]);
	KVM_SET(vcpu->fd, KVM_SET_MP_STATE, v[KVA_TAG_MP_STATE]);
	KVM_SET(vcpu->fd, KVM_SET_DEBUGREGS, v[KVA_TAG_DEBUGREGS]);
	KVM_SET(vcpu->fd, KVM_SET_REGS, v[KVA_TAG_REGS]);
out_free:
	free(m);
	return ret;
}

int kva_kvm_load(struct kva_vm *vm, const struct kva_parsed *ps)
{
	const struct kva_cpuid_sect *cs = ps->vmw[KVA_TAG_CPUID];
	const struct kvm_clock_data *saved = ps->vmw[KVA_TAG_CLOCK];
	struct kvm_cpuid2 *cpuid;
	struct kvm_clock_data clock;
	unsigned int i;
	int ret = 0;

	cpuid = calloc(1,
		       sizeof(*cpuid) + cs->nent * sizeof(cpuid->entries[0]));
	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = cs->nent;
	memcpy(cpuid->entries, cs->e, cpuid->nent * sizeof(cpuid->entries[0]));
	for (i = 0; i < vm->nr_vcpus; i++) {
		ret = kvm_load_vcpu(&vm->vcpus[i], ps, cpuid);
		if (ret)
			goto out_free;
	}
	/* The guest's kvmclock continues from where it was saved. */
	memset(&clock, 0, sizeof(clock));
	clock.clock = saved->clock;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock)) {
		ret = -errno;
		pr_perror("KVM_SET_CLOCK");
		goto out_free;
	}
	/* The VM now describes itself with the blob's CPUID. */
	free(vm->cpuid);
	vm->cpuid = cpuid;
	cpuid = NULL;
out_free:
	free(cpuid);
	return ret;
}
