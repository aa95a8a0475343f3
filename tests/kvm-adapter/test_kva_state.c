// SPDX-License-Identifier: MIT
/*
 * ferry-vm's vCPU state: save / recreate / load / compare at guest sync
 * points (after KVM selftests' state_test), snapshot round trips with the
 * verify guest, the touch guest's walk before and after a restore, and bad
 * snapshots. The VM runs in this process on the accelerator of argv[1];
 * test_kva.c has the rest.
 *
 * Guest code runs emulated here (about 1e6 instructions/s), so working
 * sets are a few MiB and every wait has a deadline.
 */
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

/* What KVM reports of a vCPU, as the state blob carries it. */
struct vcpu_view {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_xsave xsave;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs debug;
	uint64_t msr[64];
	bool has_msr[64];
};

#define MSR_TSC 0x10

static void view_vcpu(struct kva_vm *vm, struct kva_vcpu *v,
		      struct vcpu_view *w)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m;
	unsigned int i;

	memset(w, 0, sizeof(*w));
	if (test_accel == KVA_ACCEL_USER)
		return; /* the user accelerator: blobs are compared instead */
	assert_int_equal(ioctl(v->fd, KVM_GET_REGS, &w->regs), 0);
	assert_int_equal(ioctl(v->fd, KVM_GET_SREGS, &w->sregs), 0);
	assert_int_equal(ioctl(v->fd, KVM_GET_XCRS, &w->xcrs), 0);
	assert_int_equal(ioctl(v->fd, KVM_GET_XSAVE, &w->xsave), 0);
	assert_int_equal(ioctl(v->fd, KVM_GET_VCPU_EVENTS, &w->events), 0);
	assert_int_equal(ioctl(v->fd, KVM_GET_MP_STATE, &w->mp), 0);
	assert_int_equal(ioctl(v->fd, KVM_GET_DEBUGREGS, &w->debug), 0);
	assert_true(vm->nr_msrs <= ARRAY_SIZE(w->msr));
	for (i = 0; i < vm->nr_msrs; i++) {
		memset(&m, 0, sizeof(m));
		m.h.nmsrs = 1;
		m.e.index = vm->msrs[i];
		w->has_msr[i] = ioctl(v->fd, KVM_GET_MSRS, &m) == 1;
		w->msr[i] = m.e.data;
	}
}

/*
 * A loaded vCPU is the saved one: every register, MSR and pending event
 * the blob carries, the whole XSAVE area, not just what the guest checks.
 * The TSC alone moves on by itself.
 */
static void assert_same_vcpu(struct kva_vm *vm, const struct vcpu_view *a,
			     const struct vcpu_view *b)
{
	unsigned int i;

	assert_memory_equal(&a->regs, &b->regs, sizeof(a->regs));
	assert_memory_equal(&a->sregs, &b->sregs, sizeof(a->sregs));
	assert_memory_equal(&a->xcrs, &b->xcrs, sizeof(a->xcrs));
	assert_memory_equal(&a->xsave, &b->xsave, sizeof(a->xsave));
	assert_memory_equal(&a->events, &b->events, sizeof(a->events));
	assert_memory_equal(&a->mp, &b->mp, sizeof(a->mp));
	assert_memory_equal(&a->debug, &b->debug, sizeof(a->debug));
	for (i = 0; i < vm->nr_msrs; i++) {
		assert_int_equal(a->has_msr[i], b->has_msr[i]);
		if (vm->msrs[i] != MSR_TSC && a->msr[i] != b->msr[i])
			fail_msg("MSR %#x: saved %#llx, loaded %#llx",
				 vm->msrs[i], (unsigned long long)a->msr[i],
				 (unsigned long long)b->msr[i]);
	}
}

/* Bad blobs are refused, and the VM can still load a good one. */
static void check_bad_blobs(struct kva_vm *vm, const uint8_t *blob, size_t len)
{
	uint8_t *bad = malloc(len);

	assert_non_null(bad);
	memcpy(bad, blob, len);
	((uint32_t *)bad)[1] = KVA_STATE_VERSION + 1;
	assert_int_equal(kva_state_load(vm, bad, len), -EPROTO);
	memcpy(bad, blob, len);
	bad[len / 2] ^= 1;
	assert_int_equal(kva_state_load(vm, bad, len), -EBADMSG);
	memcpy(bad, blob, len);
	assert_int_equal(kva_state_load(vm, bad, len - 8), -EBADMSG);
	assert_int_equal(kva_state_load(vm, bad, 10), -EBADMSG);
	((uint32_t *)bad)[0] = 0;
	assert_int_equal(kva_state_load(vm, bad, len), -EBADMSG);
	free(bad);
}

/*
 * At every SYNC of the state guest: save the vCPU, throw the VM away,
 * build a new one on the same RAM, load, compare registers, and go on in
 * the new VM. The guest checks its own registers and MSRs after each.
 */
static void test_state_save_load(void **state)
{
	struct kva_config cfg = cfg_for("state", 16ULL << 20, 1);
	struct vcpu_view *w1, *w2;
	uint64_t stage = 1, syncs = 0;
	struct kva_event ev;
	struct kva_vm *vm;
	size_t len, len2;
	void *blob, *blob2;
	int fd;

	(void)state;
	cfg.passes = 6;
	cfg.seed = 12345;
	w1 = malloc(sizeof(*w1));
	w2 = malloc(sizeof(*w2));
	assert_non_null(w1);
	assert_non_null(w2);
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	for (;;) {
		assert_int_equal(vm->ops->run(&vm->vcpus[0], &ev), 0);
		assert_int_equal(ev.kind, KVA_EV_UCALL);
		if (ev.uc.cmd == KVA_UC_DONE)
			break;
		if (ev.uc.cmd == KVA_UC_FAIL)
			fail_msg("guest failure %llu: %#llx %#llx %#llx",
				 (unsigned long long)ev.uc.args[0],
				 (unsigned long long)ev.uc.args[1],
				 (unsigned long long)ev.uc.args[2],
				 (unsigned long long)ev.uc.args[3]);
		assert_int_equal(ev.uc.cmd, KVA_UC_SYNC);
		assert_int_equal(ev.uc.args[0], stage);
		stage++;
		syncs++;

		assert_int_equal(kva_state_save(vm, &blob, &len), 0);
		view_vcpu(vm, &vm->vcpus[0], w1);
		fd = dup(vm->memfd);
		assert_true(fd >= 0);
		kva_vm_destroy(vm);
		assert_int_equal(
			kva_vm_open(cfg.mem_size, 1, fd, test_accel, &vm), 0);
		if (syncs == 2)
			check_bad_blobs(vm, blob, len);
		assert_int_equal(kva_state_load(vm, blob, len), 0);
		view_vcpu(vm, &vm->vcpus[0], w2);
		assert_same_vcpu(vm, w1, w2);
		if (test_accel == KVA_ACCEL_USER) {
			/* Its state is all in the blob, and nothing moves. */
			assert_int_equal(kva_state_save(vm, &blob2, &len2), 0);
			assert_int_equal(len2, len);
			assert_memory_equal(blob2, blob, len);
			free(blob2);
		}
		free(blob);
	}
	assert_int_equal(syncs, cfg.passes + 1);
	kva_vm_destroy(vm);
	free(w1);
	free(w2);
}

struct hb_seen {
	pthread_mutex_t lock;
	uint64_t first[2];
	uint64_t last[2];
	unsigned int n[2];
	unsigned int fails;
};

static int record_hb(struct kva_vm *vm, unsigned int vcpu,
		     const struct kva_ucall *uc, void *opaque)
{
	struct hb_seen *h = opaque;

	(void)vm;
	pthread_mutex_lock(&h->lock);
	if (uc->cmd == KVA_UC_HEARTBEAT && !h->n[vcpu]++)
		h->first[vcpu] = uc->args[0];
	if (uc->cmd == KVA_UC_HEARTBEAT)
		h->last[vcpu] = uc->args[0];
	if (uc->cmd == KVA_UC_FAIL)
		h->fails++;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static void snapshot_roundtrip(unsigned int vcpus)
{
	struct kva_config cfg = cfg_for("verify", 64ULL << 20, vcpus);
	struct hb_seen h = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct hb_seen old = { .lock = PTHREAD_MUTEX_INITIALIZER };
	uint64_t first[2], next;
	unsigned int n[2], fails;
	uint64_t saved[2], data_bytes;
	struct kva_progress before, after;
	const char *path = tmp_path("snap");
	struct kva_vm *vm;
	struct stat st;
	unsigned int i;

	cfg.workingset = 2ULL << 20;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	kva_vm_set_hook(vm, record_hb, &old);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, pass_at_least, 2, 30, NULL));
	assert_int_equal(kva_vm_snapshot(vm, path), 0);
	kva_vm_progress(vm, &before);
	assert_int_equal(before.failed, 0);
	for (i = 0; i < vcpus; i++)
		saved[i] = vm->vcpus[i].mb->writes;
	data_bytes = memfd_bytes(vm);
	kva_vm_destroy(vm);

	/* Holes stay holes: the file holds what the guest touched. */
	assert_int_equal(stat(path, &st), 0);
	assert_true((uint64_t)st.st_size < data_bytes + (1ULL << 20));
	assert_true((uint64_t)st.st_size < cfg.mem_size / 8);

	assert_int_equal(kva_vm_restore(path, KVA_ACCEL_AUTO, &vm), 0);
	assert_true(memfd_bytes(vm) <= data_bytes);
	kva_vm_progress(vm, &after);
	assert_int_equal(after.writes, before.writes);
	assert_int_equal(after.checks, before.checks);
	assert_int_equal(after.pass, before.pass);
	kva_vm_set_hook(vm, record_hb, &h);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, pass_at_least, before.pass + 3, 30, &after));
	assert_int_equal(after.failed, 0);
	/*
	 * The vCPUs run on and their hook counts: a copy under the lock, once
	 * every vCPU has beaten (one may lag far behind the other under an
	 * emulated CPU and ThreadSanitizer); 60 s at most.
	 */
	for (int tries = 0;; tries++) {
		pthread_mutex_lock(&h.lock);
		memcpy(first, h.first, sizeof(first));
		memcpy(n, h.n, sizeof(n));
		fails = h.fails;
		pthread_mutex_unlock(&h.lock);
		if ((n[0] && (vcpus < 2 || n[1])) || tries == 600)
			break;
		usleep(100000);
	}
	/* the hook's h lives on this stack: no vCPU may call it past here */
	kva_vm_destroy(vm);
	vm = NULL;
	assert_int_equal(fails, 0);
	/*
	 * The next heartbeat is the one the snapshot was due to send next:
	 * the next stride's, or, if the vCPU stopped between publishing its
	 * count in the mailbox and its heartbeat, that count's. A heartbeat
	 * already handled is never sent again.
	 */
	for (i = 0; i < vcpus; i++) {
		assert_true(n[i] > 0);
		assert_true(old.last[i] == saved[i] ||
			    old.last[i] + cfg.stride == saved[i]);
		next = old.last[i] == saved[i] ? saved[i] + cfg.stride
					       : saved[i];
		assert_int_equal(first[i], next);
	}
	print_message("snapshot (%u vCPUs): %lld bytes, resumed at writes "
		      "%llu, now pass %llu\n",
		      vcpus, (long long)st.st_size,
		      (unsigned long long)before.writes,
		      (unsigned long long)after.pass);
	unlink(path);
}

static void test_snapshot_roundtrip_1(void **state)
{
	(void)state;
	snapshot_roundtrip(1);
}

static void test_snapshot_roundtrip_2(void **state)
{
	(void)state;
	snapshot_roundtrip(2);
}
static void copy_file(const char *from, const char *to, off_t len, off_t flip)
{
	int in = open(from, O_RDONLY), out;
	char buf[65536];
	ssize_t n;
	off_t off = 0;

	assert_true(in >= 0);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(out >= 0);
	while (off < len && (n = read(in, buf, sizeof(buf))) > 0) {
		if (n > len - off)
			n = len - off;
		if (flip >= off && flip < off + n)
			buf[flip - off] ^= 0x10;
		assert_int_equal(write(out, buf, n), n);
		off += n;
	}
	close(in);
	close(out);
}

/*
 * Truncated, corrupted or foreign snapshots: a clear error, no VM. The
 * VM is gone first: the user accelerator has one VM per process.
 */
static void test_snapshot_bad_input(void **state)
{
	struct kva_config cfg = cfg_for("verify", 32ULL << 20, 1);
	const char *good = tmp_path("good"), *bad = tmp_path("bad");
	struct kva_progress p1, p2;
	struct kva_vm *vm, *vm2 = NULL;
	struct stat st;
	uint32_t version;
	int fd;

	(void)state;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, pass_at_least, 1, 20, NULL));
	assert_int_equal(kva_vm_snapshot(vm, good), 0);
	kva_vm_progress(vm, &p1);
	kva_vm_destroy(vm);
	assert_int_equal(stat(good, &st), 0);

	/* Truncations anywhere: header, state, runs, data. */
	copy_file(good, bad, 0, -1);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EBADMSG);
	copy_file(good, bad, 100, -1);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EBADMSG);
	copy_file(good, bad, 4096 + 100, -1);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EBADMSG);
	copy_file(good, bad, st.st_size - 4096, -1);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EBADMSG);
	copy_file(good, bad, st.st_size - 1, -1);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EBADMSG);
	/* A flipped bit in header, state blob and memory. */
	copy_file(good, bad, st.st_size, 40);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EBADMSG);
	copy_file(good, bad, st.st_size, 4096 + 200);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EBADMSG);
	copy_file(good, bad, st.st_size, st.st_size - 5000);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EBADMSG);
	/* Another version. */
	copy_file(good, bad, st.st_size, -1);
	fd = open(bad, O_RDWR);
	assert_true(fd >= 0);
	version = 99;
	assert_int_equal(pwrite(fd, &version, 4, 8), 4);
	close(fd);
	assert_int_equal(kva_vm_restore(bad, KVA_ACCEL_AUTO, &vm2), -EPROTO);
	assert_int_equal(kva_vm_restore("/nonexistent/snap", KVA_ACCEL_AUTO,
					&vm2),
			 -ENOENT);
	assert_null(vm2);

	/* The good file still restores, and its guest still verifies. */
	assert_int_equal(kva_vm_restore(good, test_accel, &vm), 0);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, pass_at_least, p1.pass + 2, 20, &p2));
	assert_int_equal(p2.failed, 0);
	kva_vm_destroy(vm);
	unlink(good);
	unlink(bad);
}

/*
 * touch reads every data page once, and a restored VM (like a migrated
 * one: every vCPU runs again) walks once more after its DONE, reading the
 * same sum: bench/postcopy times that second walk on the destination.
 */
static void test_touch_walks_again_after_restore(void **state)
{
	struct kva_config cfg = cfg_for("touch", 32ULL << 20, 2);
	uint64_t pages = (cfg.mem_size - KVA_DATA_GPA) / 4096, sum = 0, pg;
	const char *path = tmp_path("touch");
	struct kva_progress p;
	struct kva_vm *vm;

	(void)state;
	cfg.prefill = KVA_PREFILL_PATTERN;
	for (pg = KVA_DATA_GPA / 4096; pg < cfg.mem_size / 4096; pg++)
		sum += pg * 4096;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, all_done, 2, 20, &p));
	assert_int_equal(p.failed, 0);
	assert_int_equal(p.pass, 1);
	assert_int_equal(p.writes, pages);
	assert_int_equal(p.checks, sum);
	assert_int_equal(kva_vm_snapshot(vm, path), 0);
	kva_vm_destroy(vm);

	assert_int_equal(kva_vm_restore(path, KVA_ACCEL_AUTO, &vm), 0);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, pass_at_least, 2, 20, &p));
	assert_true(wait_for(vm, all_done, 2, 20, &p));
	assert_int_equal(p.failed, 0);
	assert_int_equal(p.pass, 2);
	assert_int_equal(p.writes, 2 * pages);
	assert_int_equal(p.checks, sum);
	kva_vm_destroy(vm);
	unlink(path);
}

/* argv[1]: the accelerator, kvm (default) or user. */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_save_load),
		cmocka_unit_test(test_snapshot_roundtrip_1),
		cmocka_unit_test(test_snapshot_roundtrip_2),
		cmocka_unit_test(test_snapshot_bad_input),
		cmocka_unit_test(test_touch_walks_again_after_restore),
	};

	if (argc > 1 && kva_accel_parse(argv[1], &test_accel)) {
		fprintf(stderr, "usage: %s [kvm|user]\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
