// SPDX-License-Identifier: MIT
/*
 * The VM: guest RAM (one memfd, MAP_SHARED, one memslot with dirty
 * logging), vCPUs and their threads, pause and resume.
 *
 * Pausing: the requester sets pause_req and, for each running vCPU,
 * kvm_run->immediate_exit before kicking its thread with SIGUSR1. KVM_RUN
 * then returns EINTR at once or as soon as it notices the signal, and,
 * being a KVM_RUN, first completes any port I/O the vCPU was in, so a
 * parked vCPU's registers are consistent and can be saved.
 *
 * Throttling (auto-converge), as QEMU's cpu-throttle does it: while a
 * throttle is set, a timer thread kicks every running vCPU out of KVM_RUN
 * once a slice (10 ms), and each vCPU thread, before it re-enters KVM_RUN,
 * sleeps pct / (100 - pct) of the time it ran. The sleep is a wait on
 * vm->cond, so a pause, an exit or a new throttle ends it at once.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

#define KVA_KICK_SIGNAL SIGUSR1
#define KVA_THROTTLE_SLICE_NS (10 * 1000000ULL)

/* The MSRs worth saving, if KVM lists them (KVM_GET_MSR_INDEX_LIST). */
static const uint32_t kva_msr_wanted[] = {
	0x00000010, /* TSC */
	0x0000003b, /* TSC_ADJUST */
	0x00000048, /* SPEC_CTRL */
	0x00000174, /* SYSENTER_CS */
	0x00000175, /* SYSENTER_ESP */
	0x00000176, /* SYSENTER_EIP */
	0x000001a0, /* MISC_ENABLE */
	0x00000277, /* PAT */
	0x00000da0, /* XSS */
	0xc0000081, /* STAR */
	0xc0000082, /* LSTAR */
	0xc0000083, /* CSTAR */
	0xc0000084, /* SFMASK */
	0xc0000102, /* KERNEL_GS_BASE */
	0xc0000103, /* TSC_AUX */
	0x4b564d00, /* KVM wall clock */
	0x4b564d01, /* KVM system time */
	0x4b564d02, /* KVM async PF */
	0x4b564d03, /* KVM steal time */
	0x4b564d04, /* KVM PV EOI */
	0x4b564d05, /* KVM poll control */
	0x4b564d06, /* KVM async PF interrupt */
};

static int kva_kvm_check(struct kva_vm *vm, long cap)
{
	int r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

/*
 * Whether KVM lets the host read msr and write the value back. Listed
 * MSRs may still refuse a write (the async-PF interrupt MSR wants an
 * in-kernel LAPIC), which would make every restore fail.
 */
static bool kva_msr_roundtrip(struct kva_vcpu *vcpu, uint32_t msr)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = msr };

	return ioctl(vcpu->fd, KVM_GET_MSRS, &m) == 1 &&
	       ioctl(vcpu->fd, KVM_SET_MSRS, &m) == 1;
}

/* The MSRs to save: wanted, listed by KVM and writable back. */
static int kva_msr_list(struct kva_vm *vm)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	unsigned int i, j;
	int ret = 0;

	if (!ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) ||
	    errno != E2BIG) {
		pr_perror("KVM_GET_MSR_INDEX_LIST");
		return -EIO;
	}
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	vm->msrs = calloc(ARRAY_SIZE(kva_msr_wanted), sizeof(uint32_t));
	if (!list || !vm->msrs) {
		ret = -ENOMEM;
		goto out_free_list;
	}
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list)) {
		ret = -errno;
		pr_perror("KVM_GET_MSR_INDEX_LIST");
		goto out_free_list;
	}
	for (i = 0; i < ARRAY_SIZE(kva_msr_wanted); i++)
		for (j = 0; j < list->nmsrs; j++)
			if (list->indices[j] == kva_msr_wanted[i]) {
				if (kva_msr_roundtrip(&vm->vcpus[0],
						      kva_msr_wanted[i]))
					vm->msrs[vm->nr_msrs++] =
						kva_msr_wanted[i];
				break;
			}
out_free_list:
	free(list);
	return ret;
}

static int kva_vcpu_open(struct kva_vm *vm, unsigned int id)
{
	struct kva_vcpu *vcpu = &vm->vcpus[id];
	int ret;

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->mb = kva_gpa(vm, KVA_MAILBOX_GPA + id * FY_PAGE_SIZE);
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (vcpu->fd < 0) {
		ret = -errno;
		pr_perror("KVM_CREATE_VCPU %u", id);
		return ret;
	}
	vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		ret = -errno;
		pr_perror("mmap kvm_run of vCPU %u", id);
		vcpu->run = NULL;
		return ret;
	}
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, vm->cpuid)) {
		ret = -errno;
		pr_perror("KVM_SET_CPUID2 on vCPU %u", id);
		return ret;
	}
	return 0;
}

int kva_vm_open(uint64_t mem_size, unsigned int nr_vcpus, int memfd,
		struct kva_vm **out)
{
	struct kvm_userspace_memory_region slot;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
	struct kva_vm *vm;
	struct stat st;
	unsigned int i;
	int ret, r;

	ret = -EINVAL;
	if (mem_size < KVA_MIN_MEM || mem_size > KVA_MAX_MEM ||
	    mem_size % (2ULL << 20)) {
		pr_err("guest RAM must be a multiple of 2 MiB from 16 MiB to "
		       "512 GiB, not %llu bytes",
		       (unsigned long long)mem_size);
		goto err_close_memfd;
	}
	if (!nr_vcpus || nr_vcpus > KVA_MAX_VCPUS) {
		pr_err("vCPUs must be 1 to %d, not %u", KVA_MAX_VCPUS,
		       nr_vcpus);
		goto err_close_memfd;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		ret = -ENOMEM;
		goto err_close_memfd;
	}
	vm->kvm_fd = vm->vm_fd = vm->uffd = -1;
	vm->memfd = memfd; /* the VM owns it from here, even on failure */
	vm->mem = MAP_FAILED;
	vm->mem_size = mem_size;
	vm->nr_vcpus = nr_vcpus;
	for (i = 0; i < KVA_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->dirty_lock, NULL);

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		pr_perror("open /dev/kvm");
		goto err_destroy;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		pr_err("unexpected KVM API version");
		ret = -EPROTO;
		goto err_destroy;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		pr_perror("KVM_CREATE_VM");
		goto err_destroy;
	}
	r = kva_kvm_check(vm, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (!(r & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) ||
	    !kva_kvm_check(vm, KVM_CAP_IMMEDIATE_EXIT) ||
	    !kva_kvm_check(vm, KVM_CAP_XSAVE) ||
	    !kva_kvm_check(vm, KVM_CAP_XCRS)) {
		pr_err("KVM lacks manual dirty-log protect, immediate exit, "
		       "XSAVE or XCRS");
		ret = -EOPNOTSUPP;
		goto err_destroy;
	}
	/*
	 * Manual protect, without KVM_DIRTY_LOG_INITIALLY_SET: the log starts
	 * empty and KVM_GET_DIRTY_LOG leaves clearing to KVM_CLEAR_DIRTY_LOG.
	 */
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap)) {
		ret = -errno;
		pr_perror("enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
		goto err_destroy;
	}
	r = kva_kvm_check(vm, KVM_CAP_XSAVE2);
	vm->xsave_size = r > (int)sizeof(struct kvm_xsave)
				 ? (size_t)r
				 : sizeof(struct kvm_xsave);

	if (vm->memfd < 0) {
		vm->memfd = memfd_create("ferry-vm-ram", MFD_CLOEXEC);
		if (vm->memfd < 0 || ftruncate(vm->memfd, mem_size)) {
			ret = -errno;
			pr_perror("guest RAM memfd of %llu bytes",
				  (unsigned long long)mem_size);
			goto err_destroy;
		}
	} else if (fstat(vm->memfd, &st) || (uint64_t)st.st_size != mem_size) {
		pr_err("adopted memfd is not %llu bytes",
		       (unsigned long long)mem_size);
		ret = -EINVAL;
		goto err_destroy;
	}
	/* MAP_NORESERVE: nothing is allocated until first touched. */
	vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE, vm->memfd, 0);
	if (vm->mem == MAP_FAILED) {
		ret = -errno;
		pr_perror("mmap guest RAM");
		goto err_destroy;
	}
	slot = (struct kvm_userspace_memory_region){
		.slot = 0,
		.flags = KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = 0,
		.memory_size = mem_size,
		.userspace_addr = (uintptr_t)vm->mem,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot)) {
		ret = -errno;
		pr_perror("KVM_SET_USER_MEMORY_REGION");
		goto err_destroy;
	}
	ret = kva_dirty_init(vm);
	if (ret)
		goto err_destroy;
	r = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r <= 0) {
		ret = -EIO;
		pr_perror("KVM_GET_VCPU_MMAP_SIZE");
		goto err_destroy;
	}
	vm->run_size = r;
	ret = kva_supported_cpuid(vm->kvm_fd, &vm->cpuid);
	if (ret)
		goto err_destroy;
	for (i = 0; i < nr_vcpus; i++) {
		ret = kva_vcpu_open(vm, i);
		if (ret)
			goto err_destroy;
	}
	ret = kva_msr_list(vm);
	if (ret)
		goto err_destroy;
	*out = vm;
	return 0;

err_destroy:
	kva_vm_destroy(vm);
	return ret;
err_close_memfd:
	/* An adopted memfd is ours even when we fail. */
	if (memfd >= 0)
		close(memfd);
	return ret;
}

void kva_vm_set_hook(struct kva_vm *vm, kva_ucall_fn fn, void *opaque)
{
	vm->on_ucall = fn;
	vm->opaque = opaque;
}

uint64_t kva_vm_pages(const struct kva_vm *vm)
{
	return vm->mem_size / FY_PAGE_SIZE;
}

/*
 * Log why a vCPU stopped beside its registers. After a triple fault on
 * AMD, KVM has already reset the vCPU: the registers are the reset state.
 */
static void kva_vcpu_dump(struct kva_vcpu *vcpu, const char *why)
{
	struct kvm_vcpu_events e;
	struct kvm_sregs s;
	struct kvm_regs r;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) ||
	    ioctl(vcpu->fd, KVM_GET_SREGS, &s) ||
	    ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &e)) {
		pr_err("vCPU %u: %s", vcpu->id, why);
		return;
	}
	pr_err("vCPU %u: %s at rip %#llx rsp %#llx rflags %#llx cr0 %#llx cr3 "
	       "%#llx cr4 %#llx efer %#llx cs %#x/%u ss %#x/%u tr %#x/%u gdt "
	       "%#llx idt %#llx, exception %u/%u vector %u",
	       vcpu->id, why, (unsigned long long)r.rip,
	       (unsigned long long)r.rsp, (unsigned long long)r.rflags,
	       (unsigned long long)s.cr0, (unsigned long long)s.cr3,
	       (unsigned long long)s.cr4, (unsigned long long)s.efer,
	       s.cs.selector, s.cs.type, s.ss.selector, s.ss.type,
	       s.tr.selector, s.tr.type, (unsigned long long)s.gdt.base,
	       (unsigned long long)s.idt.base, e.exception.injected,
	       e.exception.pending, e.exception.nr);
}

int kva_vcpu_run(struct kva_vcpu *vcpu, struct kva_event *ev)
{
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	unsigned int i;

	if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
		if (errno == EINTR || errno == EAGAIN) {
			ev->kind = KVA_EV_INTR;
			return 0;
		}
		pr_perror("vCPU %u: KVM_RUN", vcpu->id);
		return -EIO;
	}
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		if (run->io.direction == KVM_EXIT_IO_OUT &&
		    run->io.port == KVA_PORT_UCALL) {
			ev->kind = KVA_EV_UCALL;
			ev->uc.cmd = vcpu->mb->uc.cmd;
			for (i = 0; i < ARRAY_SIZE(ev->uc.args); i++)
				ev->uc.args[i] = vcpu->mb->uc.args[i];
			return 0;
		}
		if (run->io.direction == KVM_EXIT_IO_OUT &&
		    run->io.port == KVA_PORT_EXCEPTION) {
			if (ioctl(vcpu->fd, KVM_GET_REGS, &regs)) {
				pr_perror("vCPU %u: KVM_GET_REGS", vcpu->id);
				return -EIO;
			}
			ev->kind = KVA_EV_EXCEPTION;
			ev->vector = regs.rax & 0xff;
			ev->error = regs.rbx;
			ev->rip = regs.rcx;
			ev->cr2 = regs.rsi;
			return 0;
		}
		pr_err("vCPU %u: unexpected port I/O %s port %#x", vcpu->id,
		       run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
		       run->io.port);
		return -EPROTO;
	case KVM_EXIT_HLT:
		ev->kind = KVA_EV_HALT;
		return 0;
	case KVM_EXIT_INTR:
		ev->kind = KVA_EV_INTR;
		return 0;
	case KVM_EXIT_SHUTDOWN:
		kva_vcpu_dump(vcpu, "shutdown (triple fault)");
		return -EFAULT;
	case KVM_EXIT_FAIL_ENTRY:
		pr_err("vCPU %u: VM entry failed, reason %#llx", vcpu->id,
		       (unsigned long long)
			       run->fail_entry.hardware_entry_failure_reason);
		return -EIO;
	case KVM_EXIT_INTERNAL_ERROR:
		/* Suberror 1 (emulation) names an instruction KVM cannot run. */
		if (ioctl(vcpu->fd, KVM_GET_REGS, &regs))
			regs.rip = ~0ULL;
		pr_err("vCPU %u: KVM internal error, suberror %u, at rip %#llx",
		       vcpu->id, run->internal.suberror,
		       (unsigned long long)regs.rip);
		return -EIO;
	case KVM_EXIT_MMIO:
		pr_err("vCPU %u: access to %#llx, outside guest RAM", vcpu->id,
		       (unsigned long long)run->mmio.phys_addr);
		return -EFAULT;
	default:
		pr_err("vCPU %u: unexpected exit reason %u", vcpu->id,
		       run->exit_reason);
		return -EPROTO;
	}
}

int kva_vcpu_complete_io(struct kva_vcpu *vcpu)
{
	int r;

	vcpu->run->immediate_exit = 1;
	r = ioctl(vcpu->fd, KVM_RUN, 0);
	vcpu->run->immediate_exit = 0;
	if (r == 0 || errno != EINTR) {
		pr_err("vCPU %u: KVM_RUN with immediate_exit did not return "
		       "EINTR",
		       vcpu->id);
		return -EIO;
	}
	return 0;
}

static const char *kva_vector_name(uint64_t v)
{
	static const char *const names[] = {
		"#DE", "#DB",  "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
		"#DF", "#CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
		"#MF", "#AC",  "#MC", "#XM", "#VE", "#CP",
	};

	return v < ARRAY_SIZE(names) ? names[v] : "reserved";
}

/* Park vcpu in a final or halted state until the VM exits. */
static void kva_vcpu_stop(struct kva_vcpu *vcpu, enum kva_vcpu_run_state state)
{
	struct kva_vm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->lock);
	vcpu->state = state;
	vcpu->run->immediate_exit = 0;
	pthread_cond_broadcast(&vm->cond);
	while (!vm->exit_req)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

/* A signal came in: park if a pause is asked for; true to leave. */
static bool kva_vcpu_intr(struct kva_vcpu *vcpu)
{
	struct kva_vm *vm = vcpu->vm;
	bool leave;

	pthread_mutex_lock(&vm->lock);
	vcpu->run->immediate_exit = 0;
	if (vm->pause_req && !vm->exit_req) {
		vcpu->state = KVA_VCPU_PARKED;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_req && !vm->exit_req)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vcpu->state = KVA_VCPU_RUNNING;
	}
	leave = vm->exit_req;
	pthread_mutex_unlock(&vm->lock);
	return leave;
}

static void kva_log_fail(struct kva_vcpu *vcpu, const struct kva_ucall *uc)
{
	const uint64_t *a = uc->args;

	if (a[0] == KVA_FAIL_MISMATCH)
		pr_err("vCPU %u: verify mismatch: page %#llx word %llu pass "
		       "%llu: expected %#llx, found %#llx",
		       vcpu->id, (unsigned long long)a[1],
		       (unsigned long long)a[4], (unsigned long long)a[5],
		       (unsigned long long)a[2], (unsigned long long)a[3]);
	else
		pr_err("vCPU %u: guest failure %llu: %#llx %#llx %#llx",
		       vcpu->id, (unsigned long long)a[0],
		       (unsigned long long)a[1], (unsigned long long)a[2],
		       (unsigned long long)a[3]);
}

/* Absolute CLOCK_REALTIME time ns from now, for pthread_cond_timedwait. */
static struct timespec kva_abstime(uint64_t ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ns += ts.tv_nsec;
	ts.tv_sec += ns / 1000000000ULL;
	ts.tv_nsec = ns % 1000000000ULL;
	return ts;
}

/*
 * Before KVM_RUN: if a throttle is set and vcpu ran a slice since its last
 * sleep, sleep pct / (100 - pct) of what it ran. A pause, an exit request
 * or a change of the throttle wakes it early.
 */
static void kva_vcpu_throttle(struct kva_vcpu *vcpu)
{
	struct kva_vm *vm = vcpu->vm;
	unsigned int pct = atomic_load(&vm->throttle_pct);
	uint64_t now = fy_now_ns(), ran, owe, end;
	struct timespec ts;

	if (!pct || !vcpu->slice_ns) {
		vcpu->slice_ns = now;
		return;
	}
	ran = now - vcpu->slice_ns;
	if (ran < KVA_THROTTLE_SLICE_NS)
		return;
	/* A long stretch run before the throttle came owes one slice. */
	ran = FY_MIN(ran, 2 * KVA_THROTTLE_SLICE_NS);
	owe = ran * pct / (100 - pct);
	end = now + owe;
	ts = kva_abstime(owe);
	pthread_mutex_lock(&vm->lock);
	while (!vm->pause_req && !vm->exit_req &&
	       atomic_load(&vm->throttle_pct) == pct && fy_now_ns() < end)
		pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	pthread_mutex_unlock(&vm->lock);
	vcpu->slice_ns = fy_now_ns();
}

static void *kva_vcpu_thread(void *arg)
{
	struct kva_vcpu *vcpu = arg;
	struct kva_vm *vm = vcpu->vm;
	struct kva_event ev;
	int r;

	for (;;) {
		kva_vcpu_throttle(vcpu);
		r = kva_vcpu_run(vcpu, &ev);
		if (r)
			break;
		switch (ev.kind) {
		case KVA_EV_INTR:
			if (kva_vcpu_intr(vcpu))
				return NULL;
			continue;
		case KVA_EV_HALT:
			kva_vcpu_stop(vcpu, KVA_VCPU_HALTED);
			return NULL;
		case KVA_EV_EXCEPTION:
			pr_err("vCPU %u: guest exception %llu (%s), error "
			       "%#llx, rip %#llx, cr2 %#llx",
			       vcpu->id, (unsigned long long)ev.vector,
			       kva_vector_name(ev.vector),
			       (unsigned long long)ev.error,
			       (unsigned long long)ev.rip,
			       (unsigned long long)ev.cr2);
			vcpu->fail = ev;
			kva_vcpu_stop(vcpu, KVA_VCPU_FAILED);
			return NULL;
		case KVA_EV_UCALL:
			break;
		}
		if (vm->on_ucall &&
		    vm->on_ucall(vm, vcpu->id, &ev.uc, vm->opaque)) {
			vcpu->fail = ev;
			r = -ECANCELED;
			break;
		}
		if (ev.uc.cmd == KVA_UC_HEARTBEAT) {
			atomic_fetch_add(&vcpu->heartbeats, 1);
		} else if (ev.uc.cmd == KVA_UC_DONE) {
			/* Finish the OUT so a later snapshot sees its end. */
			if (kva_vcpu_complete_io(vcpu))
				break;
			kva_vcpu_stop(vcpu, KVA_VCPU_DONE);
			return NULL;
		} else if (ev.uc.cmd == KVA_UC_FAIL) {
			kva_log_fail(vcpu, &ev.uc);
			vcpu->fail = ev;
			r = -EFAULT;
			break;
		}
	}
	kva_vcpu_stop(vcpu, KVA_VCPU_FAILED);
	return NULL;
}

static void kva_kick_handler(int sig)
{
	(void)sig;
}

static pthread_once_t kva_kick_once = PTHREAD_ONCE_INIT;

static void kva_kick_install(void)
{
	struct sigaction sa = { .sa_handler = kva_kick_handler };

	/* No SA_RESTART: the point is to make KVM_RUN return EINTR. */
	sigemptyset(&sa.sa_mask);
	sigaction(KVA_KICK_SIGNAL, &sa, NULL);
}

/* Kick every running vCPU out of KVM_RUN; vm->lock held. */
static void kva_kick_all(struct kva_vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_vcpu *vcpu = &vm->vcpus[i];

		if (vcpu->state != KVA_VCPU_RUNNING || !vcpu->has_thread)
			continue;
		vcpu->run->immediate_exit = 1;
		pthread_kill(vcpu->thread, KVA_KICK_SIGNAL);
	}
}

int kva_vm_start(struct kva_vm *vm)
{
	unsigned int i;
	int ret = 0;

	pthread_once(&kva_kick_once, kva_kick_install);
	pthread_mutex_lock(&vm->lock);
	/* A pause asked for before the start must not park the new threads. */
	vm->pause_req = false;
	if (vm->started) {
		pthread_cond_broadcast(&vm->cond);
		goto out_unlock;
	}
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_vcpu *vcpu = &vm->vcpus[i];

		vcpu->state = KVA_VCPU_RUNNING;
		ret = -pthread_create(&vcpu->thread, NULL, kva_vcpu_thread,
				      vcpu);
		if (ret) {
			vcpu->state = KVA_VCPU_IDLE;
			pr_err("cannot start vCPU thread: %s", strerror(-ret));
			break;
		}
		pthread_setname_np(vcpu->thread, "ferry-vcpu");
		vcpu->has_thread = true;
	}
	vm->started = true;
out_unlock:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int kva_vm_pause(struct kva_vm *vm)
{
	unsigned int i;
	bool busy;

	pthread_mutex_lock(&vm->lock);
	vm->pause_req = true;
	kva_kick_all(vm);
	/* A vCPU asleep for the throttle is not in KVM_RUN: wake it too. */
	pthread_cond_broadcast(&vm->cond);
	do {
		busy = false;
		for (i = 0; i < vm->nr_vcpus; i++)
			busy |= vm->vcpus[i].state == KVA_VCPU_RUNNING;
		if (busy)
			pthread_cond_wait(&vm->cond, &vm->lock);
	} while (busy);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* The throttle's timer: kick the running vCPUs out of KVM_RUN each slice. */
static void *kva_throttle_thread(void *arg)
{
	struct kva_vm *vm = arg;
	struct timespec ts;
	uint64_t next;
	sigset_t all;
	unsigned int i;

	/* Signals are main()'s: SIGINT and SIGTERM stop the VMM there. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&vm->lock);
	while (!vm->exit_req) {
		if (!atomic_load(&vm->throttle_pct)) {
			pthread_cond_wait(&vm->cond, &vm->lock);
			continue;
		}
		for (i = 0; i < vm->nr_vcpus; i++) {
			struct kva_vcpu *vcpu = &vm->vcpus[i];

			/* No immediate_exit: only leave KVM_RUN now. */
			if (vcpu->state == KVA_VCPU_RUNNING &&
			    vcpu->has_thread && !vm->pause_req)
				pthread_kill(vcpu->thread, KVA_KICK_SIGNAL);
		}
		next = fy_now_ns() + KVA_THROTTLE_SLICE_NS;
		ts = kva_abstime(KVA_THROTTLE_SLICE_NS);
		/* Other broadcasts on vm->cond must not kick more often. */
		while (!vm->exit_req && atomic_load(&vm->throttle_pct) &&
		       fy_now_ns() < next)
			pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int kva_vm_set_throttle(struct kva_vm *vm, unsigned int pct)
{
	int ret = 0;

	if (pct > 99)
		return -EINVAL;
	pthread_once(&kva_kick_once, kva_kick_install);
	pthread_mutex_lock(&vm->lock);
	if (pct && !vm->has_throttle_thread) {
		ret = -pthread_create(&vm->throttle_thread, NULL,
				      kva_throttle_thread, vm);
		if (ret) {
			pr_err("cannot start the throttle thread: %s",
			       strerror(-ret));
			goto out_unlock;
		}
		pthread_setname_np(vm->throttle_thread, "ferry-throttle");
		vm->has_throttle_thread = true;
	}
	if (atomic_exchange(&vm->throttle_pct, pct) != pct)
		pr_info("vCPU throttle %u%%", pct);
	/* Sleeping vCPUs and the timer look at the new value. */
	pthread_cond_broadcast(&vm->cond);
out_unlock:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

unsigned int kva_vm_throttle(struct kva_vm *vm)
{
	return atomic_load(&vm->throttle_pct);
}

/*
 * Read vCPU id's mailbox with pread() rather than through the mapping: an
 * incoming VM's RAM is registered with a userfaultfd, and a touch through
 * the mapping would wait for ferryd to resolve the fault (perhaps for
 * ever, with vm->lock held). pread() of a hole reads zeros and allocates
 * nothing.
 */
static void kva_mailbox_read(struct kva_vm *vm, unsigned int id,
			     struct kva_mailbox *mb)
{
	off_t off = KVA_MAILBOX_GPA + id * FY_PAGE_SIZE;

	if (pread(vm->memfd, mb, sizeof(*mb), off) != (ssize_t)sizeof(*mb))
		memset(mb, 0, sizeof(*mb));
}

void kva_vm_progress(struct kva_vm *vm, struct kva_progress *p)
{
	struct kva_mailbox mb;
	unsigned int i;

	memset(p, 0, sizeof(*p));
	p->pass = UINT64_MAX;
	pthread_mutex_lock(&vm->lock);
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_vcpu *vcpu = &vm->vcpus[i];

		kva_mailbox_read(vm, i, &mb);
		p->writes += mb.writes;
		p->checks += mb.checks;
		p->pass = FY_MIN(p->pass, mb.pass);
		p->heartbeats += atomic_load(&vcpu->heartbeats);
		if (vcpu->state == KVA_VCPU_RUNNING ||
		    vcpu->state == KVA_VCPU_PARKED)
			p->running++;
		p->halted += vcpu->state == KVA_VCPU_HALTED;
		p->done += vcpu->state == KVA_VCPU_DONE;
		p->failed += vcpu->state == KVA_VCPU_FAILED;
	}
	pthread_mutex_unlock(&vm->lock);
}

void kva_vm_destroy(struct kva_vm *vm)
{
	unsigned int i;

	if (!vm)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->exit_req = true;
	kva_kick_all(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (vm->has_throttle_thread)
		pthread_join(vm->throttle_thread, NULL);
	for (i = 0; i < KVA_MAX_VCPUS; i++) {
		struct kva_vcpu *vcpu = &vm->vcpus[i];

		if (vcpu->has_thread)
			pthread_join(vcpu->thread, NULL);
		if (vcpu->run)
			munmap(vcpu->run, vm->run_size);
		if (vcpu->fd >= 0)
			close(vcpu->fd);
	}
	kva_dirty_fini(vm);
	if (vm->uffd >= 0)
		close(vm->uffd);
	if (vm->mem != MAP_FAILED)
		munmap(vm->mem, vm->mem_size);
	if (vm->memfd >= 0)
		close(vm->memfd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->cpuid);
	free(vm->msrs);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->dirty_lock);
	free(vm);
}
