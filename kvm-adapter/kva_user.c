// SPDX-License-Identifier: MIT
/*
 * The user accelerator: the guest program runs natively, in ring 3, on the
 * vCPU's own thread. Guest RAM is ferry-vm's mapping of the memfd at a
 * fixed address (KVA_USER_BASE), between PROT_NONE guards, and the guest
 * reaches gpa at KVA_USER_BASE + gpa (params->ram_base): the images are
 * position-independent, and the fixed base keeps the pointers a guest
 * stores in its RAM (return addresses, its mailbox) valid in another
 * ferry-vm after a migration.
 *
 * Switching is done by signals, so the kernel loads and saves every
 * register bit for bit:
 *
 * - run() raises KVA_ENTER_SIGNAL on its own thread. Its handler keeps the
 *   host's frame (general registers and the whole FPU area) and writes the
 *   guest's registers into the frame instead; sigreturn enters the guest.
 * - A trap (SIGSEGV, SIGILL, SIGFPE, SIGTRAP, SIGBUS, SIGSYS) or a kick
 *   (SIGUSR1) taken while the guest runs is the exit: its handler copies
 *   the guest's registers out of the frame and puts the host's back, so
 *   sigreturn returns from raise() in run().
 *
 * Handlers run on an alternate stack (the guest's stack is guest RAM), and
 * every other signal is blocked in a vCPU thread. Privileged instructions
 * raise #GP (SIGSEGV, SI_KERNEL): the ucall port write, hlt, rdmsr and
 * wrmsr are emulated (kva_insn.c decodes them); any other exception is
 * reported with its vector, like the kvm accelerator's stubs do. A seccomp
 * filter on each vCPU thread turns a system call made from guest RAM into
 * SIGSYS, which stops the VM. Signals that are not the guest's go to the
 * handler installed before ours (a sanitizer's, a debugger's).
 *
 * Dirty log: kva_user_dirty.c (userfaultfd write-protection).
 */
#define LOG_PREFIX "ferry-vm: "

#include <asm/prctl.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_insn.h"
#include "kvm-adapter/kva_int.h"

#define KVA_USER_BASE 0x200000000000ULL
#define KVA_USER_GUARD (1ULL << 30)
#define KVA_USER_ALTSTACK (256U << 10)
#define KVA_USER_ALTSTACK_MIN (64U << 10)
#define KVA_USER_MSRS 32
#define KVA_FX_SIZE 512
#define KVA_XSTATE_BV_OFF 512 /* the XSAVE header follows the legacy area */

/* Why the guest left, as the exit handler saw it. */
enum kva_user_exit {
	KVA_UX_NONE, /* the enter handler did not switch: kicked before */
	KVA_UX_KICK,
	KVA_UX_UCALL,
	KVA_UX_HALT,
	KVA_UX_EXCEPTION,
	KVA_UX_PORT, /* a port other than the ucall's */
	KVA_UX_SYSCALL,
	KVA_UX_RIP, /* the guest ran outside its RAM */
};

struct kva_user_msr {
	uint32_t index;
	uint32_t pad;
	uint64_t value;
};

/* UREGS section of the state blob. */
struct kva_uregs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags, gs_base, halted;
};

struct kva_user_vcpu {
	struct kva_vcpu *vcpu;
	/* the guest's registers while it is out of the CPU */
	greg_t gregs[NGREG];
	uint8_t fx[KVA_FX_SIZE] __attribute__((aligned(16)));
	uint64_t gs_base;
	bool halted; /* stopped at hlt: stays stopped, also when restored */
	struct kva_user_msr msr[KVA_USER_MSRS];
	unsigned int nr_msrs;
	/* the host's frame while the guest runs */
	greg_t host_gregs[NGREG];
	uint8_t *host_fp;
	size_t fp_size; /* bytes of the frame's FPU area we copy */
	/* the switch */
	atomic_bool immediate; /* kicked: do not enter */
	volatile bool in_guest;
	enum kva_user_exit exit;
	struct kva_insn insn;
	uint64_t vector, error, cr2, sysno;
	bool thread_ready; /* altstack, mask and seccomp set up */
	void *altstack;
	stack_t old_altstack; /* the thread's before ours */
	pthread_t altstack_thread; /* the thread ours is on */
};

struct kva_user_vm {
	void *span; /* guards and RAM */
	size_t span_len;
	struct kva_wp *wp;
};

/*
 * The vCPU whose guest this thread runs. volatile: glibc declares
 * pthread_kill() a leaf, so without it the compiler may drop the store
 * before the call that raises the signal whose handler reads it.
 */
static __thread struct kva_user_vcpu *volatile kva_cur;
static struct sigaction kva_prev[NSIG];
static int kva_enter_signal;
static const int kva_trap_signals[] = { SIGSEGV, SIGILL, SIGFPE,
					SIGTRAP, SIGBUS, SIGSYS };

/* The guest's GPR n in x86 encoding order (0 rax .. 15 r15). */
static greg_t *kva_gpr(greg_t *g, unsigned int n)
{
	static const int map[16] = {
		REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
		REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
		REG_R12, REG_R13, REG_R14, REG_R15,
	};

	return &g[map[n & 15]];
}

static uint64_t *kva_msr_slot(struct kva_user_vcpu *u, uint32_t index, bool add)
{
	unsigned int i;

	for (i = 0; i < u->nr_msrs; i++)
		if (u->msr[i].index == index)
			return &u->msr[i].value;
	if (!add || u->nr_msrs == KVA_USER_MSRS)
		return NULL;
	u->msr[u->nr_msrs].index = index;
	u->msr[u->nr_msrs].value = 0;
	return &u->msr[u->nr_msrs++].value;
}

/*
 * Emulate the privileged instruction at the guest's rip, in the exit
 * handler. Returns true to go straight back into the guest (rip
 * advanced), false to leave with u->exit set.
 */
static bool kva_emulate(struct kva_vcpu *vcpu, greg_t *g)
{
	struct kva_user_vcpu *u = vcpu->user;
	struct kva_vm *vm = vcpu->vm;
	uint64_t rip = g[REG_RIP], *slot;
	uint32_t msr = (uint32_t)g[REG_RCX];
	size_t avail;

	if (rip < vm->gva_base || rip >= vm->gva_base + vm->mem_size) {
		u->exit = KVA_UX_RIP;
		return false;
	}
	avail = FY_MIN(15, vm->gva_base + vm->mem_size - rip);
	if (kva_insn_decode((const uint8_t *)rip, avail, &u->insn)) {
		u->exit = KVA_UX_EXCEPTION;
		u->vector = 13;
		return false;
	}
	switch (u->insn.op) {
	case KVA_INSN_OUT:
		g[REG_RIP] += u->insn.len;
		u->exit = u->insn.port_dx || u->insn.port != KVA_PORT_UCALL
				  ? KVA_UX_PORT
				  : KVA_UX_UCALL;
		if (u->insn.port_dx)
			u->insn.port = (uint16_t)g[REG_RDX];
		return false;
	case KVA_INSN_HLT:
		g[REG_RIP] += u->insn.len;
		u->exit = KVA_UX_HALT;
		return false;
	case KVA_INSN_RDMSR:
		slot = kva_msr_slot(u, msr, false);
		g[REG_RAX] = slot ? (uint32_t)*slot : 0;
		g[REG_RDX] = slot ? *slot >> 32 : 0;
		break;
	case KVA_INSN_WRMSR:
		slot = kva_msr_slot(u, msr, true);
		if (!slot) {
			u->exit = KVA_UX_EXCEPTION;
			u->vector = 13;
			return false;
		}
		*slot = (uint32_t)g[REG_RAX] | (uint64_t)g[REG_RDX] << 32;
		break;
	case KVA_INSN_CLI:
	case KVA_INSN_STI:
		break;
	case KVA_INSN_MOV_FROM_CR:
		*kva_gpr(g, u->insn.reg) = u->insn.cr == 2 ? u->cr2 : 0;
		break;
	default:
		u->exit = KVA_UX_EXCEPTION;
		u->vector = 13;
		return false;
	}
	g[REG_RIP] += u->insn.len;
	return true;
}

/* Where the frame keeps the FPU area, and how much of it we copy. */
static size_t kva_fp_size(const ucontext_t *uc)
{
	const struct _fpx_sw_bytes *sw =
		(const void *)((const uint8_t *)uc->uc_mcontext.fpregs + 464);

	if (sw->magic1 == FP_XSTATE_MAGIC1 && sw->xstate_size >= KVA_FX_SIZE)
		return sw->xstate_size;
	return KVA_FX_SIZE;
}

static void kva_enter(struct kva_user_vcpu *u, ucontext_t *uc)
{
	uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
	greg_t csgsfs = uc->uc_mcontext.gregs[REG_CSGSFS];

	if (atomic_load(&u->immediate))
		return; /* u->exit stays KVA_UX_NONE */
	memcpy(u->host_gregs, uc->uc_mcontext.gregs, sizeof(u->host_gregs));
	u->fp_size = FY_MIN(kva_fp_size(uc), (size_t)4 * FY_PAGE_SIZE);
	memcpy(u->host_fp, fp, u->fp_size);
	memcpy(uc->uc_mcontext.gregs, u->gregs, sizeof(u->gregs));
	uc->uc_mcontext.gregs[REG_CSGSFS] = csgsfs;
	memcpy(fp, u->fx, KVA_FX_SIZE);
	/* Without the x87 and SSE bits, XRSTOR would ignore what we wrote. */
	if (u->fp_size > KVA_FX_SIZE)
		*(uint64_t *)(fp + KVA_XSTATE_BV_OFF) |= 3;
	u->in_guest = true;
}

/* Leave the guest: keep its registers, put the host's frame back. */
static void kva_leave(struct kva_user_vcpu *u, ucontext_t *uc)
{
	uint8_t *fp = (uint8_t *)uc->uc_mcontext.fpregs;
	unsigned long gs;

	/* A guest may move its GS base (wrgsbase): keep what it left. */
	if (!syscall(SYS_arch_prctl, ARCH_GET_GS, &gs))
		u->gs_base = gs;
	memcpy(u->gregs, uc->uc_mcontext.gregs, sizeof(u->gregs));
	memcpy(u->fx, fp, KVA_FX_SIZE);
	memcpy(uc->uc_mcontext.gregs, u->host_gregs, sizeof(u->host_gregs));
	memcpy(fp, u->host_fp, u->fp_size);
}

static void kva_chain(int sig, siginfo_t *si, void *uc)
{
	const struct sigaction *p = &kva_prev[sig];

	if (p->sa_flags & SA_SIGINFO) {
		p->sa_sigaction(sig, si, uc);
	} else if (p->sa_handler == SIG_DFL) {
		/* Die of it as if we were not here: the fault repeats. */
		signal(sig, SIG_DFL);
	} else if (p->sa_handler != SIG_IGN) {
		p->sa_handler(sig);
	}
}

void kva_user_signal(int sig, siginfo_t *si, void *ctx)
{
	struct kva_user_vcpu *u = kva_cur;
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;

	if (sig == kva_enter_signal && u && !u->in_guest &&
	    si->si_code == SI_TKILL && si->si_pid == getpid()) {
		kva_enter(u, uc);
		return;
	}
	if (!u || !u->in_guest) {
		if (sig != SIGUSR1 && sig != kva_enter_signal)
			kva_chain(sig, si, ctx);
		return;
	}
	u->in_guest = false;
	if (sig == SIGUSR1) {
		u->exit = KVA_UX_KICK;
	} else if (sig == SIGSEGV && si->si_code == SI_KERNEL) {
		if (kva_emulate(u->vcpu, g)) {
			u->in_guest = true;
			return;
		}
	} else if (sig == SIGSYS) {
		/* Not run. Back to the instruction, as a fault leaves it. */
		u->exit = KVA_UX_SYSCALL;
		u->sysno = si->si_syscall;
		g[REG_RIP] -= 2;
		g[REG_RAX] = si->si_syscall;
	} else {
		u->exit = KVA_UX_EXCEPTION;
		u->vector = g[REG_TRAPNO];
		/* The guest runs in ring 3; under KVM it is ring 0. */
		u->error = g[REG_ERR] & ~4ULL;
		if (sig == SIGSEGV || sig == SIGBUS)
			u->cr2 = (uintptr_t)si->si_addr;
	}
	kva_leave(u, uc);
}

/*
 * Take the trap signals, keeping the handlers we replace to chain to.
 * Done at every open, not once: a test framework (cmocka) installs its own
 * handlers around each test and puts the old ones back after it.
 */
static void kva_user_install(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct sigaction sa = {
		.sa_sigaction = kva_user_signal,
		.sa_flags = SA_SIGINFO | SA_ONSTACK,
	};
	unsigned int i;

	sigfillset(&sa.sa_mask);
	pthread_mutex_lock(&lock);
	kva_enter_signal = SIGRTMIN + 1;
	for (i = 0; i < ARRAY_SIZE(kva_trap_signals); i++) {
		int sig = kva_trap_signals[i];
		struct sigaction cur;

		sigaction(sig, NULL, &cur);
		if (!(cur.sa_flags & SA_SIGINFO) ||
		    cur.sa_sigaction != kva_user_signal)
			sigaction(sig, &sa, &kva_prev[sig]);
	}
	sigaction(kva_enter_signal, &sa, NULL);
	pthread_mutex_unlock(&lock);
	/* SIGUSR1 (the kick) is kva_vm.c's, which calls kva_user_signal(). */
}

/*
 * A system call whose instruction lies in guest RAM (or its guards) traps:
 * SIGSYS, and the VM stops. Classic BPF compares 32 bits at a time: the
 * high half of the address, so the range is widened to 4 GiB units, far
 * from any host mapping.
 */
static int kva_user_seccomp(struct kva_vm *vm)
{
	uint64_t lo = vm->gva_base - KVA_USER_GUARD;
	uint64_t hi = vm->gva_base + vm->mem_size + KVA_USER_GUARD - 1;
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, instruction_pointer) +
				 4),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (uint32_t)(lo >> 32), 0, 2),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, (uint32_t)(hi >> 32), 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = ARRAY_SIZE(f), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		int ret = -errno;

		pr_perror("seccomp filter for guest system calls");
		return ret;
	}
	return 0;
}

/* The vCPU thread's first run: its signal stack, mask and filter. */
static int kva_user_thread_init(struct kva_vcpu *vcpu)
{
	struct kva_user_vcpu *u = vcpu->user;
	stack_t ss = { .ss_size = KVA_USER_ALTSTACK }, old;
	sigset_t mask;
	unsigned int i;

	/*
	 * A big enough alternate stack the thread has already (a sanitizer's,
	 * which it unmaps itself when the thread ends) is kept; else ours.
	 */
	if (sigaltstack(NULL, &old) || (old.ss_flags & SS_DISABLE) ||
	    old.ss_size < KVA_USER_ALTSTACK_MIN) {
		u->old_altstack = old;
		u->altstack_thread = pthread_self();
		u->altstack = malloc(KVA_USER_ALTSTACK);
		if (!u->altstack)
			return -ENOMEM;
		ss.ss_sp = u->altstack;
		if (sigaltstack(&ss, NULL)) {
			pr_perror("vCPU %u: sigaltstack", vcpu->id);
			return -errno;
		}
	}
	/* Nothing but ours may interrupt the guest on its own stack. */
	sigfillset(&mask);
	for (i = 0; i < ARRAY_SIZE(kva_trap_signals); i++)
		sigdelset(&mask, kva_trap_signals[i]);
	sigdelset(&mask, SIGUSR1);
	sigdelset(&mask, kva_enter_signal);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	u->thread_ready = true;
	return kva_user_seccomp(vcpu->vm);
}

static int user_run(struct kva_vcpu *vcpu, struct kva_event *ev)
{
	struct kva_user_vcpu *u = vcpu->user;
	struct kva_vm *vm = vcpu->vm;
	unsigned int i;
	int ret;

	if (!u->thread_ready) {
		ret = kva_user_thread_init(vcpu);
		if (ret)
			return ret;
	}
	if (u->halted) {
		ev->kind = KVA_EV_HALT;
		return 0;
	}
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, u->gs_base)) {
		pr_perror("vCPU %u: ARCH_SET_GS", vcpu->id);
		return -EIO;
	}
	u->exit = KVA_UX_NONE;
	kva_cur = u;
	atomic_signal_fence(memory_order_seq_cst);
	pthread_kill(pthread_self(), kva_enter_signal);
	atomic_signal_fence(memory_order_seq_cst);
	kva_cur = NULL;
	switch (u->exit) {
	case KVA_UX_NONE:
	case KVA_UX_KICK:
		ev->kind = KVA_EV_INTR;
		return 0;
	case KVA_UX_UCALL:
		ev->kind = KVA_EV_UCALL;
		ev->uc.cmd = vcpu->mb->uc.cmd;
		for (i = 0; i < ARRAY_SIZE(ev->uc.args); i++)
			ev->uc.args[i] = vcpu->mb->uc.args[i];
		return 0;
	case KVA_UX_HALT:
		u->halted = true;
		ev->kind = KVA_EV_HALT;
		return 0;
	case KVA_UX_EXCEPTION:
		ev->kind = KVA_EV_EXCEPTION;
		ev->vector = u->vector;
		ev->error = u->error;
		ev->rip = u->gregs[REG_RIP] - vm->gva_base;
		/* A fault in guest RAM or its guards: as a gpa. */
		ev->cr2 = u->cr2 >= vm->gva_base - KVA_USER_GUARD
				  ? u->cr2 - vm->gva_base
				  : u->cr2;
		return 0;
	case KVA_UX_PORT:
		pr_err("vCPU %u: unexpected port I/O out port %#x", vcpu->id,
		       u->insn.port);
		return -EPROTO;
	case KVA_UX_SYSCALL:
		/* As a CPU without SCE does: #UD, which stops the VM. */
		pr_err("vCPU %u: the guest made a system call (%llu) at rip "
		       "%#llx; the host kernel did not run it",
		       vcpu->id, (unsigned long long)u->sysno,
		       (unsigned long long)(u->gregs[REG_RIP] - vm->gva_base));
		ev->kind = KVA_EV_EXCEPTION;
		ev->vector = 6;
		ev->error = 0;
		ev->rip = u->gregs[REG_RIP] - vm->gva_base;
		ev->cr2 = 0;
		return 0;
	case KVA_UX_RIP:
		pr_err("vCPU %u: rip %#llx is outside guest RAM: stopped",
		       vcpu->id, (unsigned long long)u->gregs[REG_RIP]);
		return -EFAULT;
	}
	return -EIO;
}

static void user_kick(struct kva_vcpu *vcpu, bool immediate)
{
	if (immediate)
		atomic_store(&vcpu->user->immediate, true);
	pthread_kill(vcpu->thread, SIGUSR1);
}

static void user_unkick(struct kva_vcpu *vcpu)
{
	atomic_store(&vcpu->user->immediate, false);
}

/*
 * Give the thread back its own alternate stack: AddressSanitizer unmaps
 * whatever stack a thread it started has at its end, ours included.
 */
static void user_thread_exit(struct kva_vcpu *vcpu)
{
	struct kva_user_vcpu *u = vcpu->user;

	if (u->altstack && pthread_equal(u->altstack_thread, pthread_self())) {
		sigaltstack(&u->old_altstack, NULL);
		u->altstack_thread = 0;
	}
}

static int user_complete_io(struct kva_vcpu *vcpu)
{
	(void)vcpu; /* rip is past the instruction once it trapped */
	return 0;
}

static int user_vcpu_boot(struct kva_vm *vm, struct kva_vcpu *vcpu)
{
	struct kva_user_vcpu *u = vcpu->user;
	struct kva_boot_regs br;

	kva_boot_regs(vm, vcpu, &br);
	memset(u->gregs, 0, sizeof(u->gregs));
	u->gregs[REG_RIP] = br.rip;
	u->gregs[REG_RSP] = br.rsp;
	u->gregs[REG_RDI] = br.rdi;
	u->gregs[REG_RSI] = br.rsi;
	u->gregs[REG_EFL] = 0x202;
	u->gs_base = br.gs_base;
	memset(u->fx, 0, sizeof(u->fx));
	*(uint16_t *)u->fx = 0x37f; /* FCW, as after FNINIT */
	*(uint32_t *)(u->fx + 24) = 0x1f80; /* MXCSR: exceptions masked */
	return 0;
}

static int user_open(struct kva_vm *vm)
{
	struct kva_user_vm *uv;
	unsigned int i;
	void *ram;
	int ret;

	kva_user_install();
	uv = calloc(1, sizeof(*uv));
	if (!uv)
		return -ENOMEM;
	vm->user = uv;
	/* Guards first, then RAM over their middle. */
	uv->span_len = vm->mem_size + 2 * KVA_USER_GUARD;
	uv->span = mmap((void *)(KVA_USER_BASE - KVA_USER_GUARD), uv->span_len,
			PROT_NONE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
				MAP_FIXED_NOREPLACE,
			-1, 0);
	if (uv->span == MAP_FAILED) {
		ret = -errno;
		uv->span = NULL;
		pr_perror("reserve %#llx for guest RAM (another VM of this "
			  "process has it?)",
			  KVA_USER_BASE);
		return ret;
	}
	ram = mmap((void *)KVA_USER_BASE, vm->mem_size,
		   PROT_READ | PROT_WRITE | PROT_EXEC,
		   MAP_SHARED | MAP_NORESERVE | MAP_FIXED, vm->memfd, 0);
	if (ram == MAP_FAILED) {
		ret = -errno;
		pr_perror("mmap guest RAM at %#llx", KVA_USER_BASE);
		return ret;
	}
	vm->mem = ram;
	vm->gva_base = KVA_USER_BASE;
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_user_vcpu *u = calloc(1, sizeof(*u));

		if (!u)
			return -ENOMEM;
		u->vcpu = &vm->vcpus[i];
		u->host_fp = malloc(4 * FY_PAGE_SIZE);
		vm->vcpus[i].user = u;
		if (!u->host_fp)
			return -ENOMEM;
	}
	return kva_wp_open(vm->mem, vm->mem_size, KVA_WP_AUTO, false, &uv->wp);
}

static void user_close(struct kva_vm *vm)
{
	struct kva_user_vm *uv = vm->user;
	unsigned int i;

	for (i = 0; i < KVA_MAX_VCPUS; i++) {
		struct kva_user_vcpu *u = vm->vcpus[i].user;

		if (!u)
			continue;
		/* a vCPU run on this thread (tests) leaves no stack behind */
		user_thread_exit(&vm->vcpus[i]);
		free(u->host_fp);
		free(u->altstack);
		free(u);
		vm->vcpus[i].user = NULL;
	}
	if (!uv)
		return;
	kva_wp_close(uv->wp);
	vm->uffd = -1; /* the tracker's */
	if (uv->span)
		munmap(uv->span, uv->span_len);
	free(uv);
	vm->user = NULL;
}

static int user_harvest(struct kva_vm *vm, uint64_t *bm)
{
	return kva_wp_harvest(vm->user->wp, bm);
}

/* Incoming: the tracker registers RAM for ferryd's faults too. */
static int user_uffd_register(struct kva_vm *vm)
{
	struct kva_user_vm *uv = vm->user;
	int ret;

	kva_wp_close(uv->wp);
	uv->wp = NULL;
	ret = kva_wp_open(vm->mem, vm->mem_size, KVA_WP_AUTO, true, &uv->wp);
	if (ret)
		return ret;
	vm->uffd = kva_wp_uffd(uv->wp);
	vm->uffd_minor = kva_wp_minor(uv->wp);
	vm->uffd_wp = kva_wp_incoming_tracks(uv->wp);
	vm->incoming = true;
	pr_info("incoming VM: guest RAM under userfaultfd (%s), dirty log "
		"by %s write-protection",
		vm->uffd_minor ? "missing and minor" : "missing",
		kva_wp_mode_name(kva_wp_mode(uv->wp)));
	return 0;
}

static int user_uffd_release(struct kva_vm *vm)
{
	int ret = vm->uffd < 0 ? -EINVAL
			       : kva_wp_release_incoming(vm->user->wp);

	if (ret)
		return ret;
	vm->uffd = -1;
	pr_info("incoming VM: all RAM in place, userfaultfd released");
	return 0;
}

static int user_save(struct kva_vm *vm, struct kva_buf *b)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_user_vcpu *u = vm->vcpus[i].user;
		struct kva_uregs *r;
		uint32_t *m;
		uint8_t *fx;

		r = kva_buf_sect(b, KVA_TAG_UREGS, i, sizeof(*r));
		fx = kva_buf_sect(b, KVA_TAG_UFPU, i, KVA_FX_SIZE);
		m = kva_buf_sect(b, KVA_TAG_UMSRS, i,
				 8 + u->nr_msrs * sizeof(u->msr[0]));
		if (!r || !fx || !m)
			return -ENOMEM;
		*r = (struct kva_uregs){
			.rax = u->gregs[REG_RAX],
			.rbx = u->gregs[REG_RBX],
			.rcx = u->gregs[REG_RCX],
			.rdx = u->gregs[REG_RDX],
			.rsi = u->gregs[REG_RSI],
			.rdi = u->gregs[REG_RDI],
			.rbp = u->gregs[REG_RBP],
			.rsp = u->gregs[REG_RSP],
			.r8 = u->gregs[REG_R8],
			.r9 = u->gregs[REG_R9],
			.r10 = u->gregs[REG_R10],
			.r11 = u->gregs[REG_R11],
			.r12 = u->gregs[REG_R12],
			.r13 = u->gregs[REG_R13],
			.r14 = u->gregs[REG_R14],
			.r15 = u->gregs[REG_R15],
			.rip = u->gregs[REG_RIP],
			.rflags = u->gregs[REG_EFL],
			.gs_base = u->gs_base,
			.halted = u->halted,
		};
		memcpy(fx, u->fx, KVA_FX_SIZE);
		m[0] = u->nr_msrs;
		memcpy(m + 2, u->msr, u->nr_msrs * sizeof(u->msr[0]));
	}
	return 0;
}

static size_t user_sect_size(struct kva_vm *vm, unsigned int tag,
			     const void *data, uint32_t len)
{
	uint32_t n = len >= 8 ? *(const uint32_t *)data : 0;

	(void)vm;
	switch (tag) {
	case KVA_TAG_UREGS:
		return sizeof(struct kva_uregs);
	case KVA_TAG_UFPU:
		return KVA_FX_SIZE;
	case KVA_TAG_UMSRS:
		return len < 8 || n > KVA_USER_MSRS
			       ? 0
			       : 8 + n * sizeof(struct kva_user_msr);
	default:
		return 0;
	}
}

static int user_load(struct kva_vm *vm, const struct kva_parsed *ps)
{
	unsigned int i;

	/* Checked whole first: nothing below can fail. */
	for (i = 0; i < vm->nr_vcpus; i++) {
		const struct kva_uregs *r = ps->v[i][KVA_TAG_UREGS];

		if (r->rip < vm->gva_base ||
		    r->rip >= vm->gva_base + vm->mem_size) {
			pr_err("state blob: vCPU %u's rip %#llx is outside "
			       "guest RAM",
			       i, (unsigned long long)r->rip);
			return -EINVAL;
		}
	}
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct kva_user_vcpu *u = vm->vcpus[i].user;
		const struct kva_uregs *r = ps->v[i][KVA_TAG_UREGS];
		const uint32_t *m = ps->v[i][KVA_TAG_UMSRS];

		memset(u->gregs, 0, sizeof(u->gregs));
		u->gregs[REG_RAX] = r->rax;
		u->gregs[REG_RBX] = r->rbx;
		u->gregs[REG_RCX] = r->rcx;
		u->gregs[REG_RDX] = r->rdx;
		u->gregs[REG_RSI] = r->rsi;
		u->gregs[REG_RDI] = r->rdi;
		u->gregs[REG_RBP] = r->rbp;
		u->gregs[REG_RSP] = r->rsp;
		u->gregs[REG_R8] = r->r8;
		u->gregs[REG_R9] = r->r9;
		u->gregs[REG_R10] = r->r10;
		u->gregs[REG_R11] = r->r11;
		u->gregs[REG_R12] = r->r12;
		u->gregs[REG_R13] = r->r13;
		u->gregs[REG_R14] = r->r14;
		u->gregs[REG_R15] = r->r15;
		u->gregs[REG_RIP] = r->rip;
		u->gregs[REG_EFL] = r->rflags;
		u->gs_base = r->gs_base;
		u->halted = r->halted;
		memcpy(u->fx, ps->v[i][KVA_TAG_UFPU], KVA_FX_SIZE);
		u->nr_msrs = m[0];
		memcpy(u->msr, m + 2, u->nr_msrs * sizeof(u->msr[0]));
	}
	return 0;
}

static const uint16_t user_vcpu_tags[] = { KVA_TAG_UREGS, KVA_TAG_UFPU,
					   KVA_TAG_UMSRS, 0 };
static const uint16_t user_vm_tags[] = { 0 };

const struct kva_accel_ops kva_user_ops = {
	.id = KVA_ACCEL_USER,
	.name = "user",
	.open = user_open,
	.close = user_close,
	.vcpu_boot = user_vcpu_boot,
	.run = user_run,
	.kick = user_kick,
	.unkick = user_unkick,
	.complete_io = user_complete_io,
	.thread_exit = user_thread_exit,
	.harvest = user_harvest,
	.save = user_save,
	.sect_size = user_sect_size,
	.vcpu_tags = user_vcpu_tags,
	.vm_tags = user_vm_tags,
	.load = user_load,
	.uffd_register = user_uffd_register,
	.uffd_release = user_uffd_release,
};
