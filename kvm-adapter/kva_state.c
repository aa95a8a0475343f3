// SPDX-License-Identifier: MIT
/*
 * vCPU and VM state as a versioned, self-describing blob:
 *
 *   header: magic "FYST", version, header length, section count,
 *           payload length, xxh3-64 of the payload
 *   payload: sections, each { u16 tag, u16 vcpu, u32 length, data },
 *            padded to 8 bytes
 *
 * The data of a section is the KVM structure of its tag (their layout is
 * KVM's stable ABI). A blob is checked whole - checksum, bounds, sizes,
 * every vCPU complete - before anything is loaded, so a bad blob leaves
 * the VM untouched. docs/kvm-adapter.md lists the tags.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

enum kva_tag {
	KVA_TAG_VM = 1,
	KVA_TAG_CLOCK,
	KVA_TAG_CPUID,
	KVA_TAG_REGS,
	KVA_TAG_SREGS,
	KVA_TAG_XSAVE,
	KVA_TAG_XCRS,
	KVA_TAG_MSRS,
	KVA_TAG_EVENTS,
	KVA_TAG_MP_STATE,
	KVA_TAG_DEBUGREGS,
	KVA_TAG_MAX
};

#define KVA_VM_WIDE 0xffff /* vcpu field of VM-wide sections */

struct kva_state_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t hdr_len;
	uint32_t nr_sections;
	uint64_t payload_len;
	uint64_t csum;
};

struct kva_sect {
	uint16_t tag;
	uint16_t vcpu;
	uint32_t len;
};

struct kva_vm_sect {
	uint64_t mem_size;
	uint32_t nr_vcpus;
	uint32_t pad;
};

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

struct kva_buf {
	uint8_t *p;
	size_t len, cap;
	uint32_t nr;
	int err;
};

static void *kva_buf_sect(struct kva_buf *b, uint16_t tag, uint16_t vcpu,
			  size_t len)
{
	size_t need = sizeof(struct kva_sect) + ((len + 7) & ~7UL);
	struct kva_sect *s;
	uint8_t *p;

	if (b->err)
		return NULL;
	if (b->len + need > b->cap) {
		size_t cap = FY_MAX(b->cap * 2, b->len + need + 4096);

		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	s = (struct kva_sect *)(b->p + b->len);
	s->tag = tag;
	s->vcpu = vcpu;
	s->len = len;
	memset(s + 1, 0, need - sizeof(*s));
	b->len += need;
	b->nr++;
	return s + 1;
}

/* Read the MSRs vm->msrs lists; those KVM refuses are left out. */
static int kva_save_msrs(struct kva_vm *vm, struct kva_vcpu *vcpu,
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
	((struct kva_sect *)s - 1)->len -= (vm->nr_msrs - n) * sizeof(s->e[0]);
	b->len -= (vm->nr_msrs - n) * sizeof(s->e[0]);
out_free:
	free(m);
	return ret;
}

/* Append a section holding what ioctl req reads from fd. */
static int kva_get(struct kva_buf *b, int fd, unsigned long req,
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

int kva_state_save(struct kva_vm *vm, void **blob, size_t *len)
{
	struct kva_buf b = { 0 };
	struct kva_state_hdr *h;
	struct kva_vm_sect *vs;
	struct kva_cpuid_sect *cs;
	unsigned int i;
	size_t cpuid_len;
	int ret;

	/* Room for the header, filled in at the end. */
	if (!kva_buf_sect(&b, 0, 0, sizeof(*h) - sizeof(struct kva_sect)))
		return -ENOMEM;
	b.nr = 0;
	vs = kva_buf_sect(&b, KVA_TAG_VM, KVA_VM_WIDE, sizeof(*vs));
	if (vs) {
		vs->mem_size = vm->mem_size;
		vs->nr_vcpus = vm->nr_vcpus;
	}
	cpuid_len = vm->cpuid->nent * sizeof(cs->e[0]);
	cs = kva_buf_sect(&b, KVA_TAG_CPUID, KVA_VM_WIDE,
			  sizeof(*cs) + cpuid_len);
	if (cs) {
		cs->nent = vm->cpuid->nent;
		memcpy(cs->e, vm->cpuid->entries, cpuid_len);
	}
	if (b.err) {
		ret = b.err;
		goto err_free;
	}
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_vcpu *vcpu = &vm->vcpus[i];
		int fd = vcpu->fd;

		/* KVM's state is consistent only once the I/O completed. */
		ret = kva_vcpu_complete_io(vcpu);
		if (ret)
			goto err_free;
		ret = kva_get(&b, fd, KVM_GET_REGS, "KVM_GET_REGS",
			      KVA_TAG_REGS, i, sizeof(struct kvm_regs));
		ret = ret
			      ?: kva_get(&b, fd, KVM_GET_SREGS, "KVM_GET_SREGS",
					 KVA_TAG_SREGS, i,
					 sizeof(struct kvm_sregs));
		ret = ret
			      ?: kva_get(&b, fd,
					 vm->xsave_size >
							 sizeof(struct kvm_xsave)
						 ? KVM_GET_XSAVE2
						 : KVM_GET_XSAVE,
					 "KVM_GET_XSAVE", KVA_TAG_XSAVE, i,
					 vm->xsave_size);
		ret = ret
			      ?: kva_get(&b, fd, KVM_GET_XCRS, "KVM_GET_XCRS",
					 KVA_TAG_XCRS, i,
					 sizeof(struct kvm_xcrs));
		ret = ret ?: kva_save_msrs(vm, vcpu, &b);
		ret = ret
			      ?: kva_get(&b, fd, KVM_GET_VCPU_EVENTS,
					 "KVM_GET_VCPU_EVENTS", KVA_TAG_EVENTS,
					 i, sizeof(struct kvm_vcpu_events));
		ret = ret
			      ?: kva_get(&b, fd, KVM_GET_MP_STATE,
					 "KVM_GET_MP_STATE", KVA_TAG_MP_STATE,
					 i, sizeof(struct kvm_mp_state));
		ret = ret
			      ?: kva_get(&b, fd, KVM_GET_DEBUGREGS,
					 "KVM_GET_DEBUGREGS", KVA_TAG_DEBUGREGS,
					 i, sizeof(struct kvm_debugregs));
		if (ret)
			goto err_free;
	}
	ret = kva_get(&b, vm->vm_fd, KVM_GET_CLOCK, "KVM_GET_CLOCK",
		      KVA_TAG_CLOCK, KVA_VM_WIDE,
		      sizeof(struct kvm_clock_data));
	if (ret)
		goto err_free;
	h = (struct kva_state_hdr *)b.p;
	h->magic = KVA_STATE_MAGIC;
	h->version = KVA_STATE_VERSION;
	h->hdr_len = sizeof(*h);
	h->nr_sections = b.nr;
	h->payload_len = b.len - sizeof(*h);
	h->csum = XXH3_64bits(b.p + sizeof(*h), h->payload_len);
	*blob = b.p;
	*len = b.len;
	return 0;

err_free:
	free(b.p);
	return ret;
}

/* Where each section of a checked blob is. */
struct kva_parsed {
	const struct kva_vm_sect *vm;
	const struct kvm_clock_data *clock;
	const struct kva_cpuid_sect *cpuid;
	const void *v[KVA_MAX_VCPUS][KVA_TAG_MAX];
	uint32_t vlen[KVA_MAX_VCPUS][KVA_TAG_MAX];
};

static size_t kva_tag_size(struct kva_vm *vm, unsigned int tag)
{
	switch (tag) {
	case KVA_TAG_VM:
		return sizeof(struct kva_vm_sect);
	case KVA_TAG_CLOCK:
		return sizeof(struct kvm_clock_data);
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
		return 0; /* variable: CPUID, MSRS */
	}
}

static int kva_state_parse(struct kva_vm *vm, const uint8_t *blob, size_t len,
			   struct kva_parsed *ps)
{
	const struct kva_state_hdr *h = (const void *)blob;
	const struct kva_sect *s;
	size_t off, need;
	unsigned int i, t, n;

	memset(ps, 0, sizeof(*ps));
	if (len < sizeof(*h)) {
		pr_err("state blob: %zu bytes, too short for its header", len);
		return -EBADMSG;
	}
	if (h->magic != KVA_STATE_MAGIC) {
		pr_err("state blob: bad magic (not a ferry-vm state blob)");
		return -EBADMSG;
	}
	if (h->version != KVA_STATE_VERSION) {
		pr_err("state blob: version %u, this ferry-vm reads version %u",
		       h->version, KVA_STATE_VERSION);
		return -EPROTO;
	}
	if (h->hdr_len != sizeof(*h) || h->payload_len != len - sizeof(*h)) {
		pr_err("state blob: %zu bytes, header says %llu: truncated or "
		       "corrupted",
		       len, (unsigned long long)(h->hdr_len + h->payload_len));
		return -EBADMSG;
	}
	if (XXH3_64bits(blob + sizeof(*h), h->payload_len) != h->csum) {
		pr_err("state blob: checksum mismatch: corrupted");
		return -EBADMSG;
	}
	for (off = sizeof(*h), n = 0; off < len; n++) {
		if (len - off < sizeof(*s))
			goto err_bounds;
		s = (const void *)(blob + off);
		off += sizeof(*s);
		if (s->len > len - off)
			goto err_bounds;
		need = kva_tag_size(vm, s->tag);
		if (s->tag == KVA_TAG_CPUID || s->tag == KVA_TAG_MSRS) {
			uint32_t cnt = *(const uint32_t *)(s + 1);
			size_t esz = s->tag == KVA_TAG_CPUID
					     ? sizeof(struct kvm_cpuid_entry2)
					     : sizeof(struct kvm_msr_entry);

			if (s->len < 8 || cnt > 4096)
				goto err_size;
			need = 8 + cnt * esz;
		}
		if (s->tag == 0 || s->tag >= KVA_TAG_MAX) {
			pr_warn("state blob: skipping unknown section %u",
				s->tag);
		} else if (s->len != need) {
			goto err_size;
		} else if (s->vcpu == KVA_VM_WIDE) {
			if (s->tag == KVA_TAG_VM)
				ps->vm = (const void *)(s + 1);
			else if (s->tag == KVA_TAG_CLOCK)
				ps->clock = (const void *)(s + 1);
			else if (s->tag == KVA_TAG_CPUID)
				ps->cpuid = (const void *)(s + 1);
			else
				goto err_size;
		} else if (s->vcpu < KVA_MAX_VCPUS) {
			ps->v[s->vcpu][s->tag] = s + 1;
			ps->vlen[s->vcpu][s->tag] = s->len;
		} else {
			pr_err("state blob: section for vCPU %u", s->vcpu);
			return -EBADMSG;
		}
		off += (s->len + 7) & ~7UL;
		if (off > len)
			goto err_bounds;
	}
	if (n != h->nr_sections)
		goto err_bounds;
	if (!ps->vm || !ps->clock || !ps->cpuid) {
		pr_err("state blob: VM, clock or CPUID section missing");
		return -EBADMSG;
	}
	if (ps->vm->nr_vcpus != vm->nr_vcpus ||
	    ps->vm->mem_size != vm->mem_size) {
		pr_err("state blob: for %u vCPUs and %llu bytes of RAM, not %u "
		       "and %llu",
		       ps->vm->nr_vcpus, (unsigned long long)ps->vm->mem_size,
		       vm->nr_vcpus, (unsigned long long)vm->mem_size);
		return -EINVAL;
	}
	for (i = 0; i < vm->nr_vcpus; i++)
		for (t = KVA_TAG_REGS; t < KVA_TAG_MAX; t++)
			if (!ps->v[i][t]) {
				pr_err("state blob: vCPU %u lacks section %u",
				       i, t);
				return -EBADMSG;
			}
	return 0;

err_bounds:
	pr_err("state blob: section runs past the end");
	return -EBADMSG;
err_size:
	pr_err("state blob: section %u has a bad size", s->tag);
	return -EBADMSG;
}

#define KVA_SET(fd, req, arg)                                  \
	do {                                                   \
		if (ioctl(fd, req, arg) < 0) {                 \
			ret = -errno;                          \
			pr_perror("vCPU %u: " #req, vcpu->id); \
			goto out_free;                         \
		}                                              \
	} while (0)

static int kva_load_vcpu(struct kva_vcpu *vcpu, const struct kva_parsed *ps,
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
	KVA_SET(vcpu->fd, KVM_SET_CPUID2, cpuid);
	KVA_SET(vcpu->fd, KVM_SET_SREGS, v[KVA_TAG_SREGS]);
	r = ioctl(vcpu->fd, KVM_SET_MSRS, m);
	if (r != (int)ms->nmsrs) {
		ret = r < 0 ? -errno : -EINVAL;
		pr_err("vCPU %u: KVM_SET_MSRS set %d of %u MSRs (stopped at "
		       "%#x)",
		       vcpu->id, r, ms->nmsrs,
		       r >= 0 && r < (int)ms->nmsrs ? ms->e[r].index : 0);
		goto out_free;
	}
	KVA_SET(vcpu->fd, KVM_SET_XCRS, v[KVA_TAG_XCRS]);
	KVA_SET(vcpu->fd, KVM_SET_XSAVE, v[KVA_TAG_XSAVE]);
	KVA_SET(vcpu->fd, KVM_SET_VCPU_EVENTS, v[KVA_TAG_EVENTS]);
	KVA_SET(vcpu->fd, KVM_SET_MP_STATE, v[KVA_TAG_MP_STATE]);
	KVA_SET(vcpu->fd, KVM_SET_DEBUGREGS, v[KVA_TAG_DEBUGREGS]);
	KVA_SET(vcpu->fd, KVM_SET_REGS, v[KVA_TAG_REGS]);
out_free:
	free(m);
	return ret;
}

int kva_state_load(struct kva_vm *vm, const void *blob, size_t len)
{
	struct kva_parsed *ps;
	struct kvm_cpuid2 *cpuid = NULL;
	struct kvm_clock_data clock;
	unsigned int i;
	int ret;

	ps = malloc(sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ret = kva_state_parse(vm, blob, len, ps);
	if (ret)
		goto out_free;
	cpuid = calloc(1, sizeof(*cpuid) +
				  ps->cpuid->nent * sizeof(cpuid->entries[0]));
	if (!cpuid) {
		ret = -ENOMEM;
		goto out_free;
	}
	cpuid->nent = ps->cpuid->nent;
	memcpy(cpuid->entries, ps->cpuid->e,
	       cpuid->nent * sizeof(cpuid->entries[0]));
	for (i = 0; i < vm->nr_vcpus; i++) {
		ret = kva_load_vcpu(&vm->vcpus[i], ps, cpuid);
		if (ret)
			goto out_free;
	}
	/* The guest's kvmclock continues from where it was saved. */
	memset(&clock, 0, sizeof(clock));
	clock.clock = ps->clock->clock;
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
	free(ps);
	return ret;
}
