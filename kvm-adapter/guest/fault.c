// SPDX-License-Identifier: MIT
/*
 * fault: raises an exception on purpose, so tests see that the IDT turns
 * it into a report. seed 0: ud2 (#UD); 1: a read past the end of RAM,
 * which is unmapped (#PF, cr2 = that address); 2: a divide by zero (#DE).
 */
#include "guest_lib.h"

void guest_main(uint64_t id, const volatile struct kva_guest_params *p)
{
	volatile uint64_t zero = 0;
	uint64_t a = 1, d = 0, z = zero;

	(void)id;
	if (p->seed == 0)
		__asm__ volatile("ud2");
	else if (p->seed == 1)
		(void)*(volatile uint64_t *)guest_ptr(p, p->mem_size + 0x1000);
	else
		__asm__ volatile("divq %2" : "+a"(a), "+d"(d) : "r"(z));
}
