// SPDX-License-Identifier: MIT
/*
 * Dirty-log harvest with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: KVM_GET_DIRTY_LOG
 * copies the slot's bitmap without touching it, then KVM_CLEAR_DIRTY_LOG
 * clears and write-protects exactly the pages reported, in chunks, so the
 * vCPUs never wait on one long walk over all of RAM. A page written after
 * its bit was cleared is dirty again and shows in the next harvest; none is
 * lost. (The dirty ring is not used: on this kernel a ring smaller than
 * the pages dirtied in one KVM_RUN ends in endless
 * KVM_EXIT_DIRTY_RING_FULL.)
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

/* Pages per KVM_CLEAR_DIRTY_LOG; a multiple of 64 as KVM requires. */
#define KVA_CLEAR_CHUNK (1ULL << 18)

int kva_dirty_init(struct kva_vm *vm)
{
	vm->dirty_bm = fy_bitmap_alloc(kva_vm_pages(vm));
	return vm->dirty_bm ? 0 : -ENOMEM;
}

void kva_dirty_fini(struct kva_vm *vm)
{
	free(vm->dirty_bm);
	vm->dirty_bm = NULL;
}

int kva_vm_harvest(struct kva_vm *vm, uint64_t *bm)
{
	uint64_t pages = kva_vm_pages(vm), first, n, w, any;
	struct kvm_dirty_log log = { .slot = 0 };
	struct kvm_clear_dirty_log clr = { .slot = 0 };
	int ret = 0;

	pthread_mutex_lock(&vm->dirty_lock);
	log.dirty_bitmap = vm->dirty_bm;
	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log)) {
		ret = -errno;
		pr_perror("KVM_GET_DIRTY_LOG");
		goto out_unlock;
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
			goto out_unlock;
		}
	}
out_unlock:
	pthread_mutex_unlock(&vm->dirty_lock);
	return ret;
}
