// SPDX-License-Identifier: MIT
/*
 * The VM: guest RAM (one memfd, MAP_SHARED), vCPUs and their threads,
 * pause, resume and throttle, whatever the accelerator (kva_kvm.c,
 * kva_user.c) that runs the vCPUs and keeps the dirty log.
 *
 * Pausing: the requester sets pause_req and kicks each running vCPU with
 * an immediate kick: its run() returns KVA_EV_INTR, at once if it had not
 * entered the guest yet, with the vCPU's registers consistent, and the
 * thread parks.
 *
 * Throttling (auto-converge), as QEMU's cpu-throttle does it: while a
 * throttle is set, a timer thread kicks every running vCPU out of the
 * guest once a slice (10 ms), and each vCPU thread, before it enters the
 * guest again, sleeps pct / (100 - pct) of the time it ran. The sleep is a
 * wait on vm->cond, so a pause, an exit or a new throttle ends it at once.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
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

const char *kva_accel_name(enum kva_accel a)
{
	static const char *const names[] = { "auto", "kvm", "user" };

	return (unsigned int)a < ARRAY_SIZE(names) ? names[a] : "?";
}

int kva_accel_parse(const char *name, enum kva_accel *out)
{
	enum kva_accel a;

	for (a = KVA_ACCEL_AUTO; a <= KVA_ACCEL_USER; a++)
		if (!strcmp(name, kva_accel_name(a))) {
			*out = a;
			return 0;
		}
	return -EINVAL;
}

/* auto: kvm where /dev/kvm opens and is KVM, user otherwise. */
static const struct kva_accel_ops *kva_accel_pick(enum kva_accel a)
{
	int fd, api;

	if (a == KVA_ACCEL_KVM)
		return &kva_kvm_ops;
	if (a == KVA_ACCEL_USER)
		return &kva_user_ops;
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		pr_info("no /dev/kvm (%s): the user accelerator runs the guest",
			strerror(errno));
		return &kva_user_ops;
	}
	api = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	if (api != KVM_API_VERSION) {
		pr_info("/dev/kvm is not KVM (API version %d): the user "
			"accelerator runs the guest",
			api);
		return &kva_user_ops;
	}
	return &kva_kvm_ops;
}

int kva_vm_open(uint64_t mem_size, unsigned int nr_vcpus, int memfd,
		enum kva_accel accel, struct kva_vm **out)
{
	struct kva_vm *vm;
	struct stat st;
	unsigned int i;
	int ret;

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
	vm->ops = kva_accel_pick(accel);
	vm->kvm_fd = vm->vm_fd = vm->uffd = -1;
	vm->memfd = memfd; /* the VM owns it from here, even on failure */
	vm->mem_size = mem_size;
	vm->nr_vcpus = nr_vcpus;
	for (i = 0; i < KVA_MAX_VCPUS; i++) {
		vm->vcpus[i].fd = -1;
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].id = i;
	}
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->dirty_lock, NULL);

	if (vm->memfd < 0) {
		vm->memfd = memfd_create("ferry-vm-ram", MFD_CLOEXEC);
		if (vm->memfd < 0 || ftruncate(vm->memfd, mem_size)) {
			ret = -errno;
			pr_perror("guest RAM memfd of %llu bytes",
				  (unsigned long long)mem_size);
			goto err_destroy;
		}
	} else if (fstat(vm->memfd, &st) || !S_ISREG(st.st_mode) ||
		   (uint64_t)st.st_size != mem_size ||
		   fcntl(vm->memfd, F_SETFD, FD_CLOEXEC)) {
		pr_err("adopted RAM is not a memfd of %llu bytes",
		       (unsigned long long)mem_size);
		ret = -EINVAL;
		goto err_destroy;
	}
	ret = vm->ops->open(vm);
	if (ret)
		goto err_destroy;
	for (i = 0; i < nr_vcpus; i++)
		vm->vcpus[i].mb =
			kva_gpa(vm, KVA_MAILBOX_GPA + i * FY_PAGE_SIZE);
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

int kva_vm_harvest(struct kva_vm *vm, uint64_t *bm)
{
	int ret;

	pthread_mutex_lock(&vm->dirty_lock);
	ret = vm->ops->harvest(vm, bm);
	pthread_mutex_unlock(&vm->dirty_lock);
	return ret;
}

uint64_t kva_vm_pages(const struct kva_vm *vm)
{
	return vm->mem_size / FY_PAGE_SIZE;
}

const char *kva_vector_name(uint64_t v)
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
	vm->ops->unkick(vcpu);
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
	vm->ops->unkick(vcpu);
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

static void kva_vcpu_loop(struct kva_vcpu *vcpu)
{
	struct kva_vm *vm = vcpu->vm;
	struct kva_event ev;
	int r;

	for (;;) {
		kva_vcpu_throttle(vcpu);
		r = vm->ops->run(vcpu, &ev);
		if (r)
			break;
		switch (ev.kind) {
		case KVA_EV_INTR:
			if (kva_vcpu_intr(vcpu))
				return;
			continue;
		case KVA_EV_HALT:
			kva_vcpu_stop(vcpu, KVA_VCPU_HALTED);
			return;
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
			return;
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
			if (vm->ops->complete_io(vcpu))
				break;
			kva_vcpu_stop(vcpu, KVA_VCPU_DONE);
			return;
		} else if (ev.uc.cmd == KVA_UC_FAIL) {
			kva_log_fail(vcpu, &ev.uc);
			vcpu->fail = ev;
			r = -EFAULT;
			break;
		}
	}
	kva_vcpu_stop(vcpu, KVA_VCPU_FAILED);
}

static void *kva_vcpu_thread(void *arg)
{
	struct kva_vcpu *vcpu = arg;
	sigset_t kick;

	/*
	 * The kick must reach us whoever started us: an incoming VM's vCPUs
	 * are started by the adapter server's RESUME, a thread that blocks
	 * every signal, and a mask is inherited. Blocked, a pause waited
	 * for the guest's next exit of its own (over 500 ms, idle).
	 */
	sigemptyset(&kick);
	sigaddset(&kick, KVA_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	kva_vcpu_loop(vcpu);
	if (vcpu->vm->ops->thread_exit)
		vcpu->vm->ops->thread_exit(vcpu);
	return NULL;
}

/* A kick: a native guest (kva_user.c) leaves; KVM_RUN just returns. */
static void kva_kick_handler(int sig, siginfo_t *si, void *uc)
{
	kva_user_signal(sig, si, uc);
}

static pthread_once_t kva_kick_once = PTHREAD_ONCE_INIT;

static void kva_kick_install(void)
{
	struct sigaction sa = {
		.sa_sigaction = kva_kick_handler,
		.sa_flags = SA_SIGINFO | SA_ONSTACK,
	};

	/* No SA_RESTART: the point is to make KVM_RUN return EINTR. */
	sigfillset(&sa.sa_mask);
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
		vm->ops->kick(vcpu, true);
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
				vm->ops->kick(vcpu, false);
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
	for (i = 0; i < KVA_MAX_VCPUS; i++)
		if (vm->vcpus[i].has_thread)
			pthread_join(vm->vcpus[i].thread, NULL);
	vm->ops->close(vm);
	if (vm->memfd >= 0)
		close(vm->memfd);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->dirty_lock);
	free(vm);
}
