// SPDX-License-Identifier: MIT
#include "guest_lib.h"

void guest_ucall(uint64_t cmd, uint64_t a0, uint64_t a1, uint64_t a2,
		 uint64_t a3, uint64_t a4, uint64_t a5)
{
	volatile struct kva_mailbox *mb = guest_mailbox();

	mb->uc.args[0] = a0;
	mb->uc.args[1] = a1;
	mb->uc.args[2] = a2;
	mb->uc.args[3] = a3;
	mb->uc.args[4] = a4;
	mb->uc.args[5] = a5;
	mb->uc.cmd = cmd;
	/* The memory clobber orders the mailbox stores before the exit. */
	__asm__ volatile("outb %%al, %0" ::"i"(KVA_PORT_UCALL), "a"(0)
			 : "memory");
}

void guest_start(uint64_t id, const volatile struct kva_guest_params *p);

void guest_start(uint64_t id, const volatile struct kva_guest_params *p)
{
	if (p->magic != KVA_PARAMS_MAGIC || p->version != KVA_PARAMS_VERSION)
		GUEST_FAIL(KVA_FAIL_PARAMS, 0, p->magic, p->version);
	else
		guest_main(id, p);
	guest_ucall(KVA_UC_DONE, 0, 0, 0, 0, 0, 0);
}
