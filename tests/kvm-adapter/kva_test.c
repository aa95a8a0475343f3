// SPDX-License-Identifier: MIT
/* Driving ferry-vm processes from tests; see kva_test.h. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "kva_test.h"

static const char *vm_binary;
static const char *vm_accel;
static const char *vm_tag;

void vm_init(const char *ferry_vm, const char *accel, const char *tag)
{
	vm_binary = ferry_vm;
	vm_accel = accel ? accel : "kvm";
	vm_tag = tag;
}

void vm_spawn(struct vmproc *v, const char *name, ...)
{
	const char *argv[40];
	unsigned int n = 0;
	va_list ap;

	/* A stale socket file is ferry-vm's to replace. */
	snprintf(v->sock, sizeof(v->sock), "/tmp/ferry-%s-%d-%s.sock", vm_tag,
		 (int)getpid(), name);
	argv[n++] = vm_binary;
	argv[n++] = "--adapter";
	argv[n++] = v->sock;
	argv[n++] = "--report";
	argv[n++] = "0";
	argv[n++] = "--accel";
	argv[n++] = vm_accel;
	va_start(ap, name);
	while (n < ARRAY_SIZE(argv) - 1 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	v->pid = fork();
	assert_true(v->pid >= 0);
	if (!v->pid) {
		/* No VM outlives a test binary that crashed or failed. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(vm_binary, (char *const *)argv);
		_exit(127);
	}
}

struct kva_client *vm_attach(struct vmproc *v)
{
	uint64_t end = fy_now_ns() + 10000000000ULL;
	struct kva_client *c = NULL;
	int ret;

	do {
		ret = kva_client_attach(v->sock, 0, &c);
		if (!ret)
			return c;
		usleep(20000);
	} while ((ret == -ENOENT || ret == -ECONNREFUSED || ret == -EBUSY) &&
		 fy_now_ns() < end);
	fail_msg("attach %s: %s", v->sock, strerror(-ret));
	return NULL;
}

int vm_wait(struct vmproc *v, double seconds)
{
	uint64_t end = fy_now_ns() + (uint64_t)(seconds * 1e9);
	int st;

	do {
		if (waitpid(v->pid, &st, WNOHANG) == v->pid) {
			v->pid = 0;
			unlink(v->sock);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
		}
		usleep(10000);
	} while (fy_now_ns() < end);
	kill(v->pid, SIGKILL);
	waitpid(v->pid, &st, 0);
	v->pid = 0;
	unlink(v->sock);
	return -1;
}

void vm_kill(struct vmproc *v)
{
	if (v->pid > 0) {
		kill(v->pid, SIGKILL);
		waitpid(v->pid, NULL, 0);
		v->pid = 0;
	}
	unlink(v->sock);
}

void vm_exit(struct vmproc *v, struct kva_client *c, int want)
{
	assert_int_equal(kva_client_exit(c), 0);
	kva_client_close(c);
	assert_int_equal(vm_wait(v, 10), want);
}

void vm_status(struct kva_client *c, struct kva_status *st)
{
	assert_int_equal(kva_client_status(c, st), 0);
}

void *vm_map_memfd(const struct kva_region *g, int prot)
{
	void *p = mmap(NULL, g->size, prot, MAP_SHARED, g->memfd, 0);

	assert_true(p != MAP_FAILED);
	return p;
}
