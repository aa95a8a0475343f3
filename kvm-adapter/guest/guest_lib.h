/* SPDX-License-Identifier: MIT */
#ifndef FERRY_KVA_GUEST_LIB_H
#define FERRY_KVA_GUEST_LIB_H

/*
 * The runtime every guest program links with: ucalls to the host and a few
 * helpers. Freestanding: no libc, no SSE in compiled code.
 */
#include <stdint.h>

#include "kvm-adapter/kva_abi.h"

/* This vCPU's mailbox (GS base points at it). */
static inline volatile struct kva_mailbox *guest_mailbox(void)
{
	struct kva_mailbox *mb;

	__asm__ volatile("movq %%gs:0, %0" : "=r"(mb));
	return mb;
}

/* The guest's pointer to guest-physical address gpa. */
static inline volatile void *
guest_ptr(const volatile struct kva_guest_params *p, uint64_t gpa)
{
	return (volatile void *)(p->ram_base + gpa);
}

/* Make a ucall: fill the mailbox, then exit to the host by port I/O. */
void guest_ucall(uint64_t cmd, uint64_t a0, uint64_t a1, uint64_t a2,
		 uint64_t a3, uint64_t a4, uint64_t a5);

#define GUEST_SYNC(stage) guest_ucall(KVA_UC_SYNC, (stage), 0, 0, 0, 0, 0)
#define GUEST_FAIL(code, a, b, c) \
	guest_ucall(KVA_UC_FAIL, (code), (a), (b), (c), 0, 0)

/* Spin for n iterations of an empty loop the compiler cannot remove. */
static inline void guest_spin(uint64_t n)
{
	while (n--)
		__asm__ volatile("" ::: "memory");
}

/*
 * --rate: page writes per second, shared by the vCPUs, by the TSC (whose
 * rate the host measured). A burst of stride writes waits for its time; a
 * vCPU that fell behind by more than 20 ms (a pause, a migration, a TSC
 * that jumped) starts its schedule again rather than catching up in one
 * long burst.
 */
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
static inline void pace_wait(struct pace *pc, uint64_t stride)
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

static inline void pace_init(struct pace *pc,
			     const volatile struct kva_guest_params *p)
{
	pc->per = p->rate / p->nr_vcpus;
	if (p->rate && !pc->per)
		pc->per = 1;
	if (pc->per > 1000000000)
		pc->per = 1000000000; /* (2 s of ticks) * per fits 64 bits */
	pc->hz = p->tsc_hz;
	pc->t0 = rdtsc();
	pc->n = 0;
}

/* The program's main, called on every vCPU; returning makes a DONE ucall. */
void guest_main(uint64_t id, const volatile struct kva_guest_params *p);

#endif /* FERRY_KVA_GUEST_LIB_H */
