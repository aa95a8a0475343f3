// SPDX-License-Identifier: MIT
/*
 * vCPU and VM state as a versioned, self-describing blob:
 *
 *   header: magic "FYST", version, header length, section count,
 *           payload length, xxh3-64 of the payload
 *   payload: sections, each { u16 tag, u16 vcpu, u32 length, data },
 *            padded to 8 bytes
 *
 * The first section is the VM's shape and its accelerator; the others are
 * the accelerator's (kva_kvm.c: KVM's structures, whose layout is KVM's
 * stable ABI; kva_user.c: a native thread's registers). A blob is checked
 * whole - checksum, bounds, sizes, accelerator, every vCPU complete -
 * before anything is loaded, so a bad blob leaves the VM untouched.
 * docs/kvm-adapter.md lists the tags.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

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
	uint32_t accel; /* 0 (blobs from before user existed): kvm */
};

void *kva_buf_sect(struct kva_buf *b, uint16_t tag, uint16_t vcpu, size_t len)
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
	b->last = b->len;
	s->tag = tag;
	s->vcpu = vcpu;
	s->len = len;
	memset(s + 1, 0, need - sizeof(*s));
	b->len += need;
	b->nr++;
	return s + 1;
}

void kva_buf_shrink(struct kva_buf *b, size_t by)
{
	struct kva_sect *s = (struct kva_sect *)(b->p + b->last);

	s->len -= by;
	b->len = b->last + sizeof(*s) + ((s->len + 7) & ~7UL);
}

int kva_state_save(struct kva_vm *vm, void **blob, size_t *len)
{
	struct kva_buf b = { 0 };
	struct kva_state_hdr *h;
	struct kva_vm_sect *vs;
	int ret;

	/* Room for the header, filled in at the end. */
	if (!kva_buf_sect(&b, 0, 0, sizeof(*h) - sizeof(struct kva_sect)))
		return -ENOMEM;
	b.nr = 0;
	vs = kva_buf_sect(&b, KVA_TAG_VM, KVA_VM_WIDE, sizeof(*vs));
	if (!vs) {
		ret = b.err;
		goto err_free;
	}
	vs->mem_size = vm->mem_size;
	vs->nr_vcpus = vm->nr_vcpus;
	vs->accel = vm->ops->id == KVA_ACCEL_KVM ? 0 : vm->ops->id;
	ret = vm->ops->save(vm, &b);
	if (!ret)
		ret = b.err;
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

static enum kva_accel kva_sect_accel(const struct kva_vm_sect *vs)
{
	return vs->accel ? (enum kva_accel)vs->accel : KVA_ACCEL_KVM;
}

/* The header, its checksum and the bounds of every section. */
static int kva_state_walk(const uint8_t *blob, size_t len,
			  const struct kva_vm_sect **vm_sect)
{
	const struct kva_state_hdr *h = (const void *)blob;
	const struct kva_sect *s;
	size_t off;
	unsigned int n;

	*vm_sect = NULL;
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
		if (s->len > len - off || ((s->len + 7) & ~7UL) > len - off)
			goto err_bounds;
		if (s->tag == KVA_TAG_VM && s->vcpu == KVA_VM_WIDE &&
		    s->len == sizeof(**vm_sect))
			*vm_sect = (const void *)(s + 1);
		off += (s->len + 7) & ~7UL;
	}
	if (n != h->nr_sections)
		goto err_bounds;
	if (!*vm_sect) {
		pr_err("state blob: VM section missing");
		return -EBADMSG;
	}
	return 0;

err_bounds:
	pr_err("state blob: section runs past the end");
	return -EBADMSG;
}

int kva_state_accel(const void *blob, size_t len, enum kva_accel *out)
{
	const struct kva_vm_sect *vs;
	int ret = kva_state_walk(blob, len, &vs);

	if (!ret)
		*out = kva_sect_accel(vs);
	return ret;
}

static int kva_state_parse(struct kva_vm *vm, const uint8_t *blob, size_t len,
			   struct kva_parsed *ps)
{
	const struct kva_state_hdr *h = (const void *)blob;
	const struct kva_vm_sect *vs;
	const struct kva_sect *s;
	const uint16_t *t;
	enum kva_accel accel;
	size_t off;
	unsigned int i;
	int ret;

	memset(ps, 0, sizeof(*ps));
	ret = kva_state_walk(blob, len, &vs);
	if (ret)
		return ret;
	accel = kva_sect_accel(vs);
	if (accel != vm->ops->id) {
		pr_err("state blob: saved on the %s accelerator, this VM runs "
		       "on %s: a VM cannot move between accelerators",
		       kva_accel_name(accel), vm->ops->name);
		return -EINVAL;
	}
	if (vs->nr_vcpus != vm->nr_vcpus || vs->mem_size != vm->mem_size) {
		pr_err("state blob: for %u vCPUs and %llu bytes of RAM, not %u "
		       "and %llu",
		       vs->nr_vcpus, (unsigned long long)vs->mem_size,
		       vm->nr_vcpus, (unsigned long long)vm->mem_size);
		return -EINVAL;
	}
	for (off = sizeof(*h); off < len; off += (s->len + 7) & ~7UL) {
		s = (const void *)(blob + off);
		off += sizeof(*s);
		if (s->tag == KVA_TAG_VM)
			continue;
		if (s->tag >= KVA_TAG_MAX ||
		    !vm->ops->sect_size(vm, s->tag, s + 1, s->len)) {
			pr_warn("state blob: skipping unknown section %u",
				s->tag);
			continue;
		}
		if (s->len != vm->ops->sect_size(vm, s->tag, s + 1, s->len)) {
			pr_err("state blob: section %u has a bad size", s->tag);
			return -EBADMSG;
		}
		if (s->vcpu == KVA_VM_WIDE) {
			ps->vmw[s->tag] = s + 1;
		} else if (s->vcpu < vm->nr_vcpus) {
			ps->v[s->vcpu][s->tag] = s + 1;
			ps->vlen[s->vcpu][s->tag] = s->len;
		} else {
			pr_err("state blob: section for vCPU %u", s->vcpu);
			return -EBADMSG;
		}
	}
	for (t = vm->ops->vm_tags; *t; t++)
		if (!ps->vmw[*t]) {
			pr_err("state blob: VM-wide section %u missing", *t);
			return -EBADMSG;
		}
	for (i = 0; i < vm->nr_vcpus; i++)
		for (t = vm->ops->vcpu_tags; *t; t++)
			if (!ps->v[i][*t]) {
				pr_err("state blob: vCPU %u lacks section %u",
				       i, *t);
				return -EBADMSG;
			}
	return 0;
}

int kva_state_load(struct kva_vm *vm, const void *blob, size_t len)
{
	struct kva_parsed *ps;
	int ret;

	ps = malloc(sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ret = kva_state_parse(vm, blob, len, ps);
	if (!ret)
		ret = vm->ops->load(vm, ps);
	free(ps);
	return ret;
}
