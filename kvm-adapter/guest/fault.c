// SPDX-License-Identifier: MIT
/*
 * fault: raises an exception on purpose, so tests see that it becomes a
 * report, the same under both accelerators. seed 0: ud2 (#UD); 1: a read
 * past the end of RAM, which is unmapped (#PF, cr2 = that address); 2: a
 * divide by zero (#DE); 3: a syscall instruction (#UD: SCE is off; under
 * user, the seccomp filter stops it before the host kernel runs it); 4: a
 * write just past RAM (#PF); 5: a jump just past RAM (#PF, rip = cr2).
 */
#include "guest_lib.h"

void guest_main(uint64_t id, const volatile struct kva_guest_params *p)
{
	volatile uint64_t zero = 0;
	uint64_t a = 1, d = 0, z = zero;
	volatile uint64_t *past = guest_ptr(p, p->mem_size);

	(void)id;
	switch (p->seed) {
	case 0:
		__asm__ volatile("ud2");
		break;
	case 1:
		(void)*(volatile uint64_t *)guest_ptr(p, p->mem_size + 0x1000);
		break;
	case 2:
		__asm__ volatile("divq %2" : "+a"(a), "+d"(d) : "r"(z));
		break;
	case 3:
		a = 231; /* exit_group(0), if it ever reached the host kernel */
		__asm__ volatile("syscall"
				 : "+a"(a)
				 : "D"(0)
				 : "rcx", "r11", "memory");
		break;
	case 4:
		*past = 1;
		break;
	default:
		((void (*)(void))past)();
		break;
	}
}
