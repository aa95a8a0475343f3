// SPDX-License-Identifier: MIT
/*
 * dirty: the Migration Noise workload. Each vCPU rewrites its share of
 * Workingset bytes, one 8-byte store per page, going round its pages in
 * order: Stride page writes, then Sleep empty-loop iterations, again and
 * again; with a rate, each burst of Stride writes waits for its time
 * instead of sleeping (guest_lib.h, pace_wait()). Its progress (writes done) goes to the host in a heartbeat every
 * `heartbeat` pauses and is always current in the mailbox.
 *
 * With params->record set, the vCPU also keeps its own record of the pages
 * it wrote (a bitmap per vCPU) and every `sync_every` pauses hands it to
 * the host (RECORD ucall) and clears it: the host checks that its dirty-log
 * harvests found every one of those pages.
 */
#include "guest_lib.h"

static uint64_t record_bytes(uint64_t pages)
{
	return ((pages + 7) / 8 + 4095) & ~4095ULL;
}

void guest_main(uint64_t id, const volatile struct kva_guest_params *p)
{
	volatile struct kva_mailbox *mb = guest_mailbox();
	uint64_t pages = p->workingset / 4096 / p->nr_vcpus;
	volatile uint8_t *base =
		guest_ptr(p, p->data_start + id * pages * 4096);
	uint64_t rec_gpa = p->record + id * record_bytes(pages);
	volatile uint64_t *rec = 0;
	uint64_t writes = 0, pauses = 0, cursor = 0, k;
	struct pace pc;

	pace_init(&pc, p);
	if (!pages || !p->stride || (pc.per && !pc.hz)) {
		GUEST_FAIL(KVA_FAIL_PARAMS, 1, pages, p->stride);
		return;
	}
	if (p->record)
		rec = guest_ptr(p, rec_gpa);
	for (;;) {
		if (pc.per)
			pace_wait(&pc, p->stride);
		for (k = 0; k < p->stride; k++) {
			*(volatile uint64_t *)(base + cursor * 4096) = writes;
			if (rec)
				rec[cursor / 64] |= 1ULL << (cursor % 64);
			writes++;
			if (++cursor == pages)
				cursor = 0;
		}
		mb->writes = writes;
		mb->pass = writes / pages;
		pauses++;
		if (p->heartbeat && pauses % p->heartbeat == 0)
			guest_ucall(KVA_UC_HEARTBEAT, writes, writes / pages, 0,
				    0, 0, 0);
		if (rec && p->sync_every && pauses % p->sync_every == 0) {
			guest_ucall(KVA_UC_RECORD, rec_gpa, pages, writes, 0, 0,
				    0);
			for (k = 0; k < (pages + 63) / 64; k++)
				if (rec[k])
					rec[k] = 0;
		}
		if (p->passes && writes / pages >= p->passes)
			return;
		if (!pc.per)
			guest_spin(p->sleep);
	}
}
