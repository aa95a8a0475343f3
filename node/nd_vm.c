// SPDX-License-Identifier: MIT
/*
 * The VMs of this host. Every ferry-vm that ferryd may migrate listens on
 * <vm_dir>/<name>.sock (`ferry-vm --adapter`); ferryd attaches to each one
 * at start and whenever `ferry vms` or `ferry migrate` ask for one it does
 * not know yet. Only one client may attach to a ferry-vm, and the VM
 * outlives its client, so a restarted ferryd simply attaches again.
 *
 * A destination ferryd starts the incoming ferry-vm itself, in a session
 * of its own (a terminal's ^C or ferryd's death must not take the VM), and
 * reaps it when it exits.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvm-adapter/kvm_adapter.h"
#include "protocol/protocol.h"

#define LOG_PREFIX "vm: "
#include "common/util.h"
#include "node/node_int.h"

extern char **environ;

int nd_vm_sock_path(const struct nd_node *n, const char *name, char *buf,
		    size_t len)
{
	int w = snprintf(buf, len, "%s/%s.sock", n->vm_dir, name);

	/* sun_path holds 108 bytes with the NUL */
	if (w < 0 || (size_t)w >= len || w > ND_SOCK_MAX)
		return -ENAMETOOLONG;
	return 0;
}

struct mig_vm *nd_vm_find(struct nd_node *n, const char *name)
{
	for (int i = 0; i < ND_VMS_MAX; i++)
		if (n->vms[i].used && !strcmp(n->vms[i].name, name))
			return &n->vms[i];
	return NULL;
}

struct mig_vm *nd_vm_add(struct nd_node *n, const char *name)
{
	for (int i = 0; i < ND_VMS_MAX; i++) {
		struct mig_vm *vm = &n->vms[i];

		if (vm->used)
			continue;
		memset(vm, 0, sizeof(*vm));
		vm->used = true;
		snprintf(vm->name, sizeof(vm->name), "%s", name);
		return vm;
	}
	pr_warn("more than %d VMs: %s ignored", ND_VMS_MAX, name);
	return NULL;
}

void nd_vm_forget(struct mig_vm *vm)
{
	if (!vm || !vm->used)
		return;
	mig_release_bg(NULL, 0, vm->kc, 0);
	memset(vm, 0, sizeof(*vm));
}

unsigned nd_vm_timeout_ms(const struct nd_node *n)
{
	return FY_MAX(500U, n->cfg->peer_timeout_ms / 3);
}

/*
 * A socket that could not be attached for a reason that would not change
 * by itself (no answer, another user, not a ferry-vm): not tried again
 * for ND_VM_BAD_NS, unless the file is replaced.
 */
static bool vm_bad(struct nd_node *n, const struct stat *st, uint64_t now)
{
	for (int i = 0; i < ND_VMS_MAX; i++) {
		struct nd_vm_bad *b = &n->vm_bad[i];

		if (b->until_ns > now && b->dev == st->st_dev &&
		    b->ino == st->st_ino)
			return true;
	}
	return false;
}

static void vm_bad_add(struct nd_node *n, const struct stat *st, uint64_t now)
{
	struct nd_vm_bad *slot = &n->vm_bad[0];

	for (int i = 0; i < ND_VMS_MAX; i++)
		if (n->vm_bad[i].until_ns < slot->until_ns)
			slot = &n->vm_bad[i];
	*slot = (struct nd_vm_bad){ .dev = st->st_dev,
				    .ino = st->st_ino,
				    .until_ns = now + ND_VM_BAD_NS };
}

/*
 * Attach to the VM called name; an entry exists on success. Only a socket
 * of ours, never through a symlink; the ferry-vm behind it must run as
 * our user and answer within nd_vm_timeout_ms().
 */
static int vm_attach(struct nd_node *n, const char *name)
{
	char path[ND_DIR_MAX + 80], file[ND_NAME_MAX + 8];
	uint64_t now = fy_now_ns();
	struct kva_client *kc;
	struct mig_vm *vm;
	struct stat st;
	int ret;

	if (!proto_name_valid(name) ||
	    nd_vm_sock_path(n, name, path, sizeof(path)))
		return -EINVAL;
	snprintf(file, sizeof(file), "%s.sock", name);
	if (fstatat(n->vm_dir_fd, file, &st, AT_SYMLINK_NOFOLLOW))
		return -errno;
	if (vm_bad(n, &st, now))
		return -EAGAIN;
	if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
		pr_warn_limited(&n->vm_warn, "%s: %s; ignored", path,
				S_ISSOCK(st.st_mode) ? "another user's socket"
						     : "not a socket");
		vm_bad_add(n, &st, now);
		return -EPERM;
	}
	ret = kva_client_attach(path, nd_vm_timeout_ms(n), &kc);
	if (ret) {
		if (ret == -ECONNREFUSED || ret == -ENOENT) {
			pr_debug("%s: no ferry-vm listens", path);
		} else {
			pr_warn_limited(&n->vm_warn, "cannot attach to %s: %s",
					path, strerror(-ret));
			if (ret != -EBUSY)
				vm_bad_add(n, &st, now);
		}
		return ret;
	}
	vm = nd_vm_add(n, name);
	if (!vm) {
		kva_client_close(kc);
		return -ENOSPC;
	}
	vm->kc = kc;
	pr_info("attached to VM %s (%llu MiB, %u vCPUs, %s)", name,
		(unsigned long long)(kva_client_layout(kc)->pages *
					     kva_client_layout(kc)->page_size >>
				     20),
		kva_client_layout(kc)->nr_vcpus,
		kva_client_layout(kc)->state == KVA_VM_INCOMING ? "incoming"
		: kva_client_layout(kc)->state == KVA_VM_PAUSED ? "paused"
								: "running");
	return 0;
}

void nd_vms_rescan(struct nd_node *n)
{
	struct kva_status st;
	struct dirent *de;
	int fd;
	DIR *d;

	/* forget VMs whose ferry-vm went away */
	for (int i = 0; i < ND_VMS_MAX; i++) {
		struct mig_vm *vm = &n->vms[i];

		if (!vm->used || !vm->kc || vm->mig)
			continue;
		if (kva_client_status(vm->kc, &st)) {
			pr_info("VM %s is gone", vm->name);
			nd_vm_forget(vm);
		}
	}
	fd = dup(n->vm_dir_fd);
	d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		char name[ND_NAME_MAX + 1];
		size_t len = strlen(de->d_name);

		if (len <= 5 || len - 5 > ND_NAME_MAX ||
		    strcmp(de->d_name + len - 5, ".sock"))
			continue;
		memcpy(name, de->d_name, len - 5);
		name[len - 5] = '\0';
		if (nd_vm_find(n, name))
			continue;
		/* one that does not answer costs a timeout: one a scan */
		if (vm_attach(n, name) == -ETIMEDOUT)
			break;
	}
	closedir(d);
}

int nd_vms_open(struct nd_node *n)
{
	const struct nd_config *cfg = n->cfg;
	int w, ret;

	if (cfg->vm_dir[0])
		w = snprintf(n->vm_dir, sizeof(n->vm_dir), "%s", cfg->vm_dir);
	else
		w = snprintf(n->vm_dir, sizeof(n->vm_dir), "%s/%s",
			     cfg->state_dir, ND_VM_DIR_SUB);
	if (w < 0 || (size_t)w >= sizeof(n->vm_dir)) {
		pr_err("vm_dir too long");
		return -ENAMETOOLONG;
	}
	ret = nd_dir_prepare("vm_dir", n->vm_dir, 0700);
	if (ret < 0)
		return ret;
	n->vm_dir_fd = open(n->vm_dir,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (n->vm_dir_fd < 0) {
		pr_perror("cannot open %s", n->vm_dir);
		return -errno;
	}
	nd_vms_rescan(n);
	return 0;
}

int nd_vm_unlink_sock(const struct nd_node *n, const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char file[ND_NAME_MAX + 8], path[ND_DIR_MAX + 80];
	struct stat st;
	int fd, ret;

	if (!proto_name_valid(name))
		return -EINVAL;
	snprintf(file, sizeof(file), "%s.sock", name);
	if (fstatat(n->vm_dir_fd, file, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
		return -EPERM;
	if (nd_vm_sock_path(n, name, path, sizeof(path)))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* a ferry-vm that listens there is not ours to cut off */
	ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	close(fd);
	if (ret != -ECONNREFUSED)
		return ret ? ret : -EBUSY;
	return unlinkat(n->vm_dir_fd, file, 0) && errno != ENOENT ? -errno : 0;
}

void nd_vms_reap(struct nd_node *n)
{
	for (int i = 0; i < ND_VMS_MAX; i++) {
		struct mig_vm *vm = &n->vms[i];
		int status;

		if (!vm->used || vm->pid <= 0 || vm->mig)
			continue;
		if (waitpid(vm->pid, &status, WNOHANG) != vm->pid)
			continue;
		pr_info("VM %s (pid %d) exited with status %d", vm->name,
			vm->pid,
			WIFEXITED(status) ? WEXITSTATUS(status)
					  : 128 + WTERMSIG(status));
		nd_vm_forget(vm);
	}
}

/* The ferry-vm binary: configured, beside ferryd, in the build tree, PATH. */
static void ferry_vm_path(const struct nd_node *n, char *buf, size_t len)
{
	char self[PATH_MAX - 64], *slash;
	ssize_t r;

	if (n->cfg->ferry_vm[0]) {
		snprintf(buf, len, "%s", n->cfg->ferry_vm);
		return;
	}
	if (len < sizeof(self) + 32)
		return;
	r = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (r > 0) {
		self[r] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(buf, len, "%s/ferry-vm", self);
			if (!access(buf, X_OK))
				return;
			/* a build directory: node/ferryd, kvm-adapter/ferry-vm */
			snprintf(buf, len, "%s/../kvm-adapter/ferry-vm", self);
			if (!access(buf, X_OK))
				return;
		}
	}
	snprintf(buf, len, "ferry-vm");
}

/* Where an incoming ferry-vm finds the RAM it adopts (--ram-fd). */
#define ND_RAM_FD 3
#define ND_RAM_FD_ARG "3"

int nd_vm_spawn_incoming(const struct nd_node *n, const char *name,
			 uint64_t mem, unsigned vcpus, enum kva_accel accel,
			 int ram_fd, pid_t *pid)
{
	char bin[PATH_MAX], sock[ND_DIR_MAX + 80], smem[32], svcpus[16];
	char saccel[8];
	char *argv[] = { bin,	    "--incoming", "--adapter", sock,
			 "--mem",   smem,	  "--vcpus",   svcpus,
			 "--accel", saccel,	  "--report",  "0",
			 NULL,	    NULL,	  NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;
	int ret;

	ret = nd_vm_sock_path(n, name, sock, sizeof(sock));
	if (ret)
		return ret;
	snprintf(bin, sizeof(bin), "ferry-vm");
	ferry_vm_path(n, bin, sizeof(bin));
	snprintf(smem, sizeof(smem), "%lluK", (unsigned long long)(mem >> 10));
	snprintf(svcpus, sizeof(svcpus), "%u", vcpus);
	snprintf(saccel, sizeof(saccel), "%s", kva_accel_name(accel));
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_init(&fa);
	/* ferryd blocks the signals it reads from a signalfd: unblock them */
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr,
				 POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (ram_fd >= 0) {
		/* fd 3 in the child (dup2 clears its close-on-exec) */
		posix_spawn_file_actions_adddup2(&fa, ram_fd, ND_RAM_FD);
		argv[12] = "--ram-fd";
		argv[13] = ND_RAM_FD_ARG;
	}
	ret = posix_spawnp(pid, bin, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (ret) {
		pr_err("cannot start %s: %s", bin, strerror(ret));
		return -ret;
	}
	pr_info("started incoming VM %s: %s --incoming --mem %s --vcpus %s "
		"--accel %s%s (pid %d)",
		name, bin, smem, svcpus, saccel,
		ram_fd >= 0 ? " --ram-fd " ND_RAM_FD_ARG : "", *pid);
	return 0;
}

static const char *state_name(enum kva_vm_state s)
{
	switch (s) {
	case KVA_VM_RUNNING:
		return "running";
	case KVA_VM_PAUSED:
		return "paused";
	case KVA_VM_INCOMING:
		return "incoming";
	}
	return "?";
}

void nd_vms_pack(struct nd_node *n, msgpack_packer *pk)
{
	unsigned count = 0;

	nd_vms_rescan(n);
	for (int i = 0; i < ND_VMS_MAX; i++)
		count += n->vms[i].used;
	msgpack_pack_map(pk, 1);
	proto_mp_pack_str(pk, "vms");
	msgpack_pack_array(pk, count);
	for (int i = 0; i < ND_VMS_MAX; i++) {
		struct mig_vm *vm = &n->vms[i];
		const struct kva_layout *l;
		struct kva_status st = { 0 };
		bool have;

		if (!vm->used)
			continue;
		msgpack_pack_map(pk, 14);
		proto_mp_pack_kv_str(pk, "name", vm->name);
		/* a ferry-vm this ferryd started (destination), else 0 */
		proto_mp_pack_kv_u64(pk, "pid", vm->pid > 0 ? vm->pid : 0);
		/* an incoming VM is its migration thread's for now */
		have = vm->kc && !kva_client_status(vm->kc, &st);
		l = vm->kc ? kva_client_layout(vm->kc) : NULL;
		proto_mp_pack_kv_u64(pk, "memory_bytes",
				     l ? l->pages * l->page_size : 0);
		proto_mp_pack_kv_u64(pk, "vcpus", l ? l->nr_vcpus : 0);
		proto_mp_pack_kv_str(pk, "guest", l ? l->guest : "");
		proto_mp_pack_kv_str(pk, "accel",
				     l ? kva_accel_name(l->accel) : "");
		proto_mp_pack_kv_str(pk, "state",
				     have     ? state_name(st.state)
				     : vm->kc ? "unknown"
					      : "incoming");
		proto_mp_pack_kv_u64(pk, "migration",
				     vm->mig ? mig_id(vm->mig) : 0);
		proto_mp_pack_kv_u64(pk, "generation", st.generation);
		proto_mp_pack_kv_u64(pk, "writes", st.progress.writes);
		proto_mp_pack_kv_u64(pk, "pass", st.progress.pass);
		proto_mp_pack_kv_u64(pk, "checks", st.progress.checks);
		proto_mp_pack_kv_u64(pk, "heartbeats", st.progress.heartbeats);
		proto_mp_pack_kv_u64(pk, "failed", st.progress.failed);
	}
}

void nd_vms_close(struct nd_node *n)
{
	for (int i = 0; i < ND_VMS_MAX; i++)
		nd_vm_forget(&n->vms[i]);
	if (n->vm_dir_fd >= 0)
		close(n->vm_dir_fd);
	n->vm_dir_fd = -1;
}
