// SPDX-License-Identifier: MIT
/* The VM adapter for unit tests (fake_vm.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/bitmap.h"
#include "common/util.h"
#include "tests/migration/fake_vm.h"

#define ADD(field) __atomic_add_fetch(&fake_vm.field, 1, __ATOMIC_SEQ_CST)
#define SET(field, v) __atomic_store_n(&fake_vm.field, v, __ATOMIC_SEQ_CST)

struct fake_vm fake_vm;

/* What the engine holds as a struct kva_client *. */
struct fake_client {
	struct kva_layout layout;
	struct kva_region region;
};

static struct fake_client *of(const struct kva_client *c)
{
	return (struct fake_client *)c;
}

static int fake_attach(const char *path, unsigned int timeout_ms,
		       struct kva_client **out)
{
	struct fake_client *c = calloc(1, sizeof(*c));

	(void)path, (void)timeout_ms;
	if (!c)
		return -ENOMEM;
	c->region = (struct kva_region){ .size = fake_vm.pages * FY_PAGE_SIZE,
					 .pages = fake_vm.pages,
					 .memfd = dup(fake_vm.memfd) };
	if (c->region.memfd < 0) {
		free(c);
		return -errno;
	}
	c->layout = (struct kva_layout){ .page_size = FY_PAGE_SIZE,
					 .nr_vcpus = 1,
					 .state = fake_vm.state,
					 .accel = KVA_ACCEL_USER,
					 .pages = fake_vm.pages,
					 .nr_regions = 1,
					 .regions = &c->region };
	ADD(attaches);
	*out = (struct kva_client *)c;
	return 0;
}

static int fake_set_timeout(struct kva_client *c, unsigned int timeout_ms)
{
	(void)c, (void)timeout_ms;
	return 0;
}

static const struct kva_layout *fake_layout(const struct kva_client *c)
{
	return &of(c)->layout;
}

static int fake_uffd(const struct kva_client *c)
{
	(void)c;
	return -1;
}

static int fake_harvest(struct kva_client *c, const uint64_t **bm,
			uint64_t *generation, uint64_t *dirty)
{
	(void)c;
	*bm = fake_vm.dirty;
	*generation = ADD(harvests);
	*dirty = 0;
	return 0;
}

static int fake_pause(struct kva_client *c)
{
	(void)c;
	ADD(pauses);
	return 0;
}

static int fake_resume(struct kva_client *c)
{
	(void)c;
	ADD(resumes);
	return 0;
}

static int fake_status(struct kva_client *c, struct kva_status *st)
{
	*st = (struct kva_status){ .state = of(c)->layout.state };
	return 0;
}

static int fake_get_state(struct kva_client *c, void **blob, size_t *len)
{
	(void)c;
	*blob = strdup("fake vCPU state");
	*len = *blob ? strlen(*blob) + 1 : 0;
	return *blob ? 0 : -ENOMEM;
}

static int fake_set_state(struct kva_client *c, const void *blob, size_t len)
{
	(void)c;
	/* read by the test after a message the engine sent later */
	fake_vm.state_len = len;
	memcpy(fake_vm.state_head, blob,
	       FY_MIN(len, sizeof(fake_vm.state_head)));
	ADD(set_states);
	return 0;
}

static int fake_ram_done(struct kva_client *c)
{
	(void)c;
	ADD(ram_dones);
	return 0;
}

static int fake_throttle(struct kva_client *c, unsigned int pct)
{
	(void)c;
	if (pct > 99)
		return -EINVAL;
	SET(throttle_pct, pct);
	return 0;
}

static void die(int wstatus)
{
	SET(wstatus, wstatus);
	SET(dead, true);
}

static int fake_exit(struct kva_client *c)
{
	(void)c;
	ADD(exits);
	die(0); /* exit status 0 */
	return 0;
}

static void fake_close(struct kva_client *c)
{
	if (!c)
		return;
	close(of(c)->region.memfd);
	free(of(c));
	ADD(closes);
}

static pid_t fake_waitpid(pid_t pid, int *status, int options)
{
	if (pid != FAKE_VM_PID || FAKE_VM_GET(reaped)) {
		errno = ECHILD;
		return -1;
	}
	if (!FAKE_VM_GET(dead)) {
		if (options & WNOHANG)
			return 0;
		errno = EDEADLK; /* it would wait forever */
		return -1;
	}
	*status = FAKE_VM_GET(wstatus);
	ADD(reaped);
	return pid;
}

static int fake_kill(pid_t pid, int sig)
{
	if (pid != FAKE_VM_PID || FAKE_VM_GET(reaped)) {
		errno = ESRCH;
		return -1;
	}
	ADD(kills);
	die(sig); /* killed by sig */
	return 0;
}

const struct mig_vm_ops fake_vm_ops = {
	.attach = fake_attach,
	.set_timeout = fake_set_timeout,
	.layout = fake_layout,
	.uffd = fake_uffd,
	.harvest = fake_harvest,
	.pause = fake_pause,
	.resume = fake_resume,
	.status = fake_status,
	.get_state = fake_get_state,
	.set_state = fake_set_state,
	.ram_done = fake_ram_done,
	.throttle = fake_throttle,
	.exit = fake_exit,
	.close = fake_close,
	.waitpid = fake_waitpid,
	.kill = fake_kill,
};

void fake_vm_init(uint64_t pages)
{
	memset(&fake_vm, 0, sizeof(fake_vm));
	fake_vm.pages = pages;
	fake_vm.state = KVA_VM_INCOMING;
	fake_vm.memfd = memfd_create("fake-vm", MFD_CLOEXEC);
	assert_true(fake_vm.memfd >= 0);
	assert_int_equal(ftruncate(fake_vm.memfd, pages * FY_PAGE_SIZE), 0);
	fake_vm.dirty = fy_bitmap_alloc(pages);
	assert_non_null(fake_vm.dirty);
}

void fake_vm_fini(void)
{
	close(fake_vm.memfd);
	free(fake_vm.dirty);
	memset(&fake_vm, 0, sizeof(fake_vm));
}
