// SPDX-License-Identifier: MIT
/*
 * state: the guest half of the state test, after KVM selftests'
 * state_test. It puts known values in general, SSE and MSR registers,
 * stops at a SYNC point (stage 1 first, then stage 2 on) (where the host saves the vCPU, builds a new VM
 * and loads it) and checks afterwards that every value survived.
 */
#include "guest_lib.h"

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SFMASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v),
			 "d"((uint32_t)(v >> 32)));
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;

	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return lo | (uint64_t)hi << 32;
}

/*
 * Load r12-r15 and xmm0-xmm3 with values derived from seed, make a SYNC
 * ucall without touching them, and store what they hold afterwards in
 * out: r12-r15, then xmm0-xmm3 as two words each. The XMM registers move
 * through memory with movdqu: guest instructions are emulated here, and
 * KVM's emulator has no movq between general and XMM registers.
 */
static void sync_with_regs(uint64_t stage, const uint64_t in[12],
			   uint64_t out[12])
{
	__asm__ volatile("movq 0(%[i]), %%r12\n\t"
			 "movq 8(%[i]), %%r13\n\t"
			 "movq 16(%[i]), %%r14\n\t"
			 "movq 24(%[i]), %%r15\n\t"
			 "movdqu 32(%[i]), %%xmm0\n\t"
			 "movdqu 48(%[i]), %%xmm1\n\t"
			 "movdqu 64(%[i]), %%xmm2\n\t"
			 "movdqu 80(%[i]), %%xmm3\n\t"
			 "movq %[stage], %%gs:24\n\t" /* uc.args[0] */
			 "movq $1, %%gs:16\n\t" /* uc.cmd = KVA_UC_SYNC */
			 "xorl %%eax, %%eax\n\t"
			 "outb %%al, $0xe7\n\t"
			 "movq %%r12, 0(%[o])\n\t"
			 "movq %%r13, 8(%[o])\n\t"
			 "movq %%r14, 16(%[o])\n\t"
			 "movq %%r15, 24(%[o])\n\t"
			 "movdqu %%xmm0, 32(%[o])\n\t"
			 "movdqu %%xmm1, 48(%[o])\n\t"
			 "movdqu %%xmm2, 64(%[o])\n\t"
			 "movdqu %%xmm3, 80(%[o])\n\t"
			 :
			 : [i] "r"(in), [stage] "r"(stage), [o] "r"(out)
			 : "rax", "r12", "r13", "r14", "r15", "xmm0", "xmm1",
			   "xmm2", "xmm3", "memory");
}

void guest_main(uint64_t id, const volatile struct kva_guest_params *p)
{
	static const uint32_t msrs[] = { MSR_STAR, MSR_LSTAR, MSR_SFMASK,
					 MSR_KERNEL_GS_BASE };
	volatile struct kva_mailbox *mb = guest_mailbox();
	uint64_t in[12], out[12], msr_val[4], stage, i, seed;
	uint64_t rounds = p->passes ? p->passes : 4;

	GUEST_SYNC(1);
	for (stage = 2; stage < 2 + rounds; stage++) {
		seed = (p->seed + stage) * 0x9e3779b97f4a7c15ULL + id;
		for (i = 0; i < 12; i++) {
			in[i] = seed ^ (i * 0x0101010101010101ULL);
			out[i] = 0;
		}
		/* Canonical, suitably aligned values the MSRs accept. */
		msr_val[0] = seed & 0xffffffff00000000ULL;
		msr_val[1] = seed & 0x00007ffffffff000ULL;
		msr_val[2] = seed & 0x3f7fd5;
		msr_val[3] = (seed >> 4) & 0x00007ffffffff000ULL;
		for (i = 0; i < 4; i++)
			wrmsr(msrs[i], msr_val[i]);
		sync_with_regs(stage, in, out);
		for (i = 0; i < 12; i++)
			if (out[i] != in[i])
				GUEST_FAIL(KVA_FAIL_STATE, i, in[i], out[i]);
		for (i = 0; i < 4; i++)
			if (rdmsr(msrs[i]) != msr_val[i])
				GUEST_FAIL(KVA_FAIL_STATE, msrs[i], msr_val[i],
					   rdmsr(msrs[i]));
		mb->pass = stage;
	}
}
