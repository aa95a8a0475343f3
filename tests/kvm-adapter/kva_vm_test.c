// SPDX-License-Identifier: MIT
/* Helpers of the tests that run a VM in their own process (kva_vm_test.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

#include "kva_vm_test.h"

enum kva_accel test_accel = KVA_ACCEL_KVM;

struct kva_config cfg_for(const char *guest, uint64_t mem, unsigned int vcpus)
{
	struct kva_config cfg;

	kva_config_init(&cfg);
	cfg.accel = test_accel;
	cfg.guest = guest;
	cfg.mem_size = mem;
	cfg.nr_vcpus = vcpus;
	cfg.workingset = 1ULL << 20;
	cfg.stride = 32;
	cfg.sleep = 0;
	return cfg;
}

/* Poll progress until cond holds; false on timeout. */
bool wait_for(struct kva_vm *vm, cond_fn cond, uint64_t arg, double seconds,
	      struct kva_progress *out)
{
	uint64_t end = fy_now_ns() + (uint64_t)(seconds * 1e9);
	struct kva_progress p;

	do {
		kva_vm_progress(vm, &p);
		if (cond(&p, arg)) {
			if (out)
				*out = p;
			return true;
		}
		usleep(5000);
	} while (fy_now_ns() < end);
	if (out)
		*out = p;
	return false;
}

bool halted_n(const struct kva_progress *p, uint64_t n)
{
	return p->halted == n;
}

bool failed_any(const struct kva_progress *p, uint64_t n)
{
	(void)n;
	return p->failed > 0;
}

bool pass_at_least(const struct kva_progress *p, uint64_t n)
{
	return p->pass >= n || p->failed;
}

bool all_done(const struct kva_progress *p, uint64_t n)
{
	return p->done == n || p->failed;
}

uint64_t memfd_bytes(struct kva_vm *vm)
{
	struct stat st;

	assert_int_equal(fstat(vm->memfd, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

char *tmp_path(const char *what)
{
	static char buf[4][128];
	static int i;
	char *p = buf[i++ % 4];

	snprintf(p, 128, "/tmp/ferry-kva-test-%d-%s", (int)getpid(), what);
	return p;
}
