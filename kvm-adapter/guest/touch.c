// SPDX-License-Identifier: MIT
/*
 * touch: reads one 8-byte word of every page of the data area, once, in a
 * scattered order, then ends. It is bench/postcopy's guest and walks RAM
 * the way bench/qemu/qemu-migrate's touch BIOS does, so ferry's post-copy
 * and QEMU's fault on the same pages in the same order: page = k * 0x9E3779B1
 * mod 2^m for k = 0 .. 2^m - 1, 2^m the smallest power of two not below
 * the guest's pages, skipping pages below data_start (QEMU's skips those
 * below 1 MiB) and from mem_size up. The multiplier is odd, so each page
 * comes once; consecutive reads land about 2.5 GiB apart (mod the span),
 * so nearly every read on a post-copy destination is a fault.
 *
 * vCPU id takes k = id, id + nr_vcpus, ... At about 10 guest instructions
 * per k and 1e6 emulated instructions/s here, 1 GiB takes about 3 s.
 *
 * Progress in the mailbox: writes = pages read in all walks, pass = walks
 * finished, checks = the sum of the words read by the last walk (the same
 * bytes give the same sum, wherever the VM runs). After a walk the vCPU
 * makes a DONE ucall, where ferry-vm parks it; a migration moves it as it
 * is, and the destination's ferry-vm runs every vCPU it loads, so there the
 * program continues after the DONE and walks again: pass 2 on the
 * destination is the walk that post-copy serves. QEMU's source never runs
 * (-S); here the source's walk ends before the migration starts.
 */
#include "guest_lib.h"

#define TOUCH_MUL 0x9E3779B1ULL
/* k between mailbox updates: a store per page would cost a tenth more. */
#define TOUCH_UPDATE 4096

static uint64_t touch_walk(uint64_t id,
			   const volatile struct kva_guest_params *p,
			   volatile struct kva_mailbox *mb, uint64_t *reads)
{
	uint64_t lo = p->data_start / 4096, hi = p->mem_size / 4096;
	uint64_t span = 1, k, page, sum = 0, n = *reads;

	while (span < hi)
		span <<= 1;
	for (k = id; k < span; k += p->nr_vcpus) {
		page = (k * TOUCH_MUL) & (span - 1);
		if (page >= lo && page < hi) {
			sum += *(volatile uint64_t *)guest_ptr(p, page * 4096);
			n++;
		}
		if ((k & (TOUCH_UPDATE - 1)) < p->nr_vcpus)
			mb->writes = n;
	}
	mb->writes = n;
	*reads = n;
	return sum;
}

void guest_main(uint64_t id, const volatile struct kva_guest_params *p)
{
	volatile struct kva_mailbox *mb = guest_mailbox();
	uint64_t reads = 0, pass;

	if (!p->nr_vcpus || p->data_start >= p->mem_size) {
		GUEST_FAIL(KVA_FAIL_PARAMS, 1, p->data_start, p->mem_size);
		return;
	}
	for (pass = 1;; pass++) {
		mb->checks = touch_walk(id, p, mb, &reads);
		mb->pass = pass;
		/* Standalone, ferry-vm ends here; see the top of the file. */
		guest_ucall(KVA_UC_DONE, reads, pass, mb->checks, 0, 0, 0);
	}
}
