// SPDX-License-Identifier: MIT
/*
 * An incoming VM's guest RAM under userfaultfd. ferry-vm registers its
 * mapping of the memfd and hands the uffd to ferryd (kva_server.c), which
 * resolves the guest's faults from the other process: UFFDIO_COPY for a
 * page absent from the memfd, or a write through its own mapping of the
 * memfd followed by UFFDIO_CONTINUE (MINOR mode). KVM's own accesses to
 * guest RAM fault like any other, so the uffd must not be
 * UFFD_USER_MODE_ONLY (they would turn into MMIO exits), and it is opened
 * O_NONBLOCK (without it poll() reports POLLERR at once).
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "kvm-adapter/kva_int.h"

int kva_uffd_open(uint64_t features, uint64_t *supported)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd, ret;

	fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		pr_perror("userfaultfd (root, or vm.unprivileged_userfaultfd "
			  "= 1, is needed for KVM's faults)");
		return ret;
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		ret = -errno;
		pr_perror("UFFDIO_API");
		close(fd);
		return ret;
	}
	if (supported)
		*supported = api.features;
	return fd;
}

int kva_uffd_register(struct kva_vm *vm)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)vm->mem, .len = vm->mem_size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	uint64_t features = 0, need;
	int fd, ret;

	/* The features a uffd may ask for are fixed by its one UFFDIO_API. */
	fd = kva_uffd_open(0, &features);
	if (fd < 0)
		return fd;
	close(fd);
	vm->uffd_minor = features & UFFD_FEATURE_MINOR_SHMEM;
	/* the faulting vCPU's thread id lets ferryd keep blocktime per vCPU */
	fd = kva_uffd_open((features & UFFD_FEATURE_MINOR_SHMEM) |
				   (features & UFFD_FEATURE_THREAD_ID),
			   NULL);
	if (fd < 0)
		return fd;
	if (vm->uffd_minor)
		reg.mode |= UFFDIO_REGISTER_MODE_MINOR;
	if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
		ret = -errno;
		pr_perror("UFFDIO_REGISTER of guest RAM");
		goto err_close;
	}
	need = 1ULL << _UFFDIO_COPY | 1ULL << _UFFDIO_WAKE;
	if (vm->uffd_minor)
		need |= 1ULL << _UFFDIO_CONTINUE;
	if ((reg.ioctls & need) != need) {
		pr_err("userfaultfd on guest RAM lacks COPY, WAKE or CONTINUE");
		ret = -EOPNOTSUPP;
		goto err_close;
	}
	vm->uffd = fd;
	vm->incoming = true;
	pr_info("incoming VM: guest RAM under userfaultfd (%s)",
		vm->uffd_minor ? "missing and minor" : "missing");
	return 0;

err_close:
	close(fd);
	return ret;
}

int kva_uffd_release(struct kva_vm *vm)
{
	struct uffdio_range r = { .start = (uintptr_t)vm->mem,
				  .len = vm->mem_size };
	int ret = 0;

	if (vm->uffd < 0)
		return -EINVAL;
	/*
	 * Unregistering wakes the threads waiting on a fault, but a host
	 * thread's fault taken under the per-VMA lock may queue itself after
	 * that wake (kva_user_dirty.c, wp_unregister()): wake the range again.
	 */
	if (ioctl(vm->uffd, UFFDIO_UNREGISTER, &r) ||
	    ioctl(vm->uffd, UFFDIO_WAKE, &r)) {
		ret = -errno;
		pr_perror("releasing guest RAM's userfaultfd");
		return ret;
	}
	close(vm->uffd);
	vm->uffd = -1;
	pr_info("incoming VM: all RAM in place, userfaultfd released");
	return 0;
}
