// SPDX-License-Identifier: MIT
/* idle: does nothing and halts, for ever. */
#include "guest_lib.h"

void guest_main(uint64_t id, const volatile struct kva_guest_params *p)
{
	(void)id;
	(void)p;
	for (;;)
		__asm__ volatile("hlt");
}
