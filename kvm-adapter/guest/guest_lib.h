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

/* The program's main, called on every vCPU; returning makes a DONE ucall. */
void guest_main(uint64_t id, const volatile struct kva_guest_params *p);

#endif /* FERRY_KVA_GUEST_LIB_H */
