// SPDX-License-Identifier: MIT
/*
 * dirty: the Migration Noise workload. Each vCPU rewrites its share of
 * Workingset bytes, one 8-byte store per page, going round its pages in
 * order: Stride page writes, then Sleep empty-loop iterations, again and
 * again. With a rate (page writes per second, shared by the vCPUs) each
 * burst of Stride writes waits for its time by the TSC instead of
 * sleeping; a vCPU that fell behind by more than 20 ms (a pause, a
 * migration, a TSC that jumped) starts its schedule again rather than
 * catching up in one long burst. Its progress (writes done) goes to the host in a heartbeat every
 * `heartbeat` pauses and is always current in the mailbox.
 *
 * With params->record set, the vCPU also keeps its own record of the pages
 * it wrote (a bitmap per vCPU) and every `sync_every` pauses hands it to
 * the host (RECORD ucall) and clears it: the host checks that its dirty-log
 * harvests found every one of those pages.
 */
#include "guest_lib.h"

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return lo | (uint64_t)hi << 32;
}

/* Page writes per second of one vCPU, and its schedule: n writes since t0. */
struct pace {
	uint64_t per, hz, t0, n;
};

/* Wait until the next burst of stride writes is due. */
static void pace_wait(struct pace *pc, uint64_t stride)
{
	uint64_t now, due;

	for (;;) {
		now = rdtsc();
		if (now < pc->t0 || now - pc->t0 >= 2 * pc->hz) {
			pc->t0 = now;
			pc->n = 0;
		}
		due = (now - pc->t0) * pc->per / pc->hz;
		if (due >= pc->n + stride)
			break;
		__asm__ volatile("pause");
	}
	if (due - pc->n > stride + pc->per / 50) {
		pc->t0 = now;
		pc->n = 0;
	}
	pc->n += stride;
	if (pc->n >= pc->per && now - pc->t0 >= pc->hz) {
		pc->t0 += pc->hz;
		pc->n -= pc->per;
	}
}

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
	struct pace pc = { .per = p->rate / p->nr_vcpus, .hz = p->tsc_hz };

	if (p->rate && !pc.per)
		pc.per = 1;
	if (pc.per > 1000000000)
		pc.per = 1000000000; /* (2 s of ticks) * per fits in 64 bits */
	if (!pages || !p->stride || (pc.per && !pc.hz)) {
		GUEST_FAIL(KVA_FAIL_PARAMS, 1, pages, p->stride);
		return;
	}
	if (p->record)
		rec = guest_ptr(p, rec_gpa);
	pc.t0 = rdtsc();
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
