// SPDX-License-Identifier: MIT
/* Building a VM from a configuration: validation, prefill, boot. */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

#define KVA_PREFILL_CHUNK (2ULL << 20)

void kva_config_init(struct kva_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mem_size = 1ULL << 30;
	cfg->nr_vcpus = 1;
	cfg->guest = "dirty";
	cfg->workingset = 256ULL << 20;
	cfg->stride = 1000;
	cfg->sleep = 500000;
	cfg->heartbeat = 1;
	cfg->seed = 1;
}

static int kva_config_check(const struct kva_config *cfg)
{
	const unsigned char *img;
	uint64_t data, need;
	size_t len;

	if (kva_guest_image(cfg->guest, &img, &len)) {
		pr_err("no guest program named '%s' (have: %s)",
		       cfg->guest ? cfg->guest : "(none)", kva_guest_names());
		return -EINVAL;
	}
	if (cfg->mem_size < KVA_MIN_MEM || !cfg->nr_vcpus ||
	    cfg->nr_vcpus > KVA_MAX_VCPUS)
		return 0; /* kva_vm_open() explains */
	data = cfg->mem_size - KVA_DATA_GPA;
	need = cfg->workingset + kva_record_bytes(cfg);
	if (strcmp(cfg->guest, "dirty") && strcmp(cfg->guest, "verify"))
		return 0;
	if (cfg->workingset / FY_PAGE_SIZE < cfg->nr_vcpus || need > data) {
		pr_err("working set must be between %u pages and %llu bytes "
		       "(the RAM above 8 MiB, less the records)",
		       cfg->nr_vcpus,
		       (unsigned long long)(data - kva_record_bytes(cfg)));
		return -EINVAL;
	}
	if (!cfg->stride) {
		pr_err("stride must be at least 1");
		return -EINVAL;
	}
	return 0;
}

/* splitmix64: a fast, good-enough generator for random prefill. */
static uint64_t kva_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/*
 * Fill [from, mem_size) with pwrite(), which allocates shmem pages far
 * faster than first-touch faults through the mapping.
 */
static int kva_prefill(struct kva_vm *vm, enum kva_prefill how, uint64_t from,
		       uint64_t seed)
{
	uint64_t *buf, off, i, n, s = seed;
	ssize_t w;
	int ret = 0;

	buf = malloc(KVA_PREFILL_CHUNK);
	if (!buf)
		return -ENOMEM;
	for (off = from; off < vm->mem_size; off += n) {
		n = FY_MIN(KVA_PREFILL_CHUNK, vm->mem_size - off);
		for (i = 0; i < n / 8; i++)
			buf[i] = how == KVA_PREFILL_RANDOM ? kva_rand(&s)
							   : off + i * 8;
		w = pwrite(vm->memfd, buf, n, off);
		if (w != (ssize_t)n) {
			ret = w < 0 ? -errno : -EIO;
			pr_perror("prefill guest RAM at %llu",
				  (unsigned long long)off);
			break;
		}
	}
	free(buf);
	return ret;
}

int kva_vm_create(const struct kva_config *cfg, struct kva_vm **out)
{
	struct kva_vm *vm;
	unsigned int i;
	int ret;

	ret = kva_config_check(cfg);
	if (ret)
		return ret;
	ret = kva_vm_open(cfg->mem_size, cfg->nr_vcpus, -1, cfg->accel, &vm);
	if (ret)
		return ret;
	vm->cfg = *cfg;
	snprintf(vm->guest, sizeof(vm->guest), "%s", cfg->guest);
	vm->cfg.guest = vm->guest;
	if (cfg->prefill != KVA_PREFILL_NONE) {
		ret = kva_prefill(vm, cfg->prefill,
				  KVA_DATA_GPA + kva_record_bytes(cfg),
				  cfg->seed);
		if (ret)
			goto err_destroy;
	}
	ret = kva_boot_setup(vm, cfg);
	if (ret)
		goto err_destroy;
	for (i = 0; i < vm->nr_vcpus; i++) {
		ret = vm->ops->vcpu_boot(vm, &vm->vcpus[i]);
		if (ret)
			goto err_destroy;
	}
	*out = vm;
	return 0;

err_destroy:
	kva_vm_destroy(vm);
	return ret;
}

int kva_vm_create_incoming(const struct kva_config *cfg, int memfd,
			   struct kva_vm **out)
{
	struct kva_vm *vm;
	int ret;

	ret = kva_vm_open(cfg->mem_size, cfg->nr_vcpus, memfd, cfg->accel, &vm);
	if (ret)
		return ret;
	vm->cfg = *cfg;
	vm->guest[0] = 0; /* the guest comes with the RAM */
	vm->cfg.guest = vm->guest;
	ret = vm->ops->uffd_register(vm);
	if (ret) {
		kva_vm_destroy(vm);
		return ret;
	}
	*out = vm;
	return 0;
}
