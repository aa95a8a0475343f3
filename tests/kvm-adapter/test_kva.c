// SPDX-License-Identifier: MIT
/*
 * ferry-vm under real KVM: boot and exceptions, sparse RAM, dirty-log
 * completeness against the guest's own record, prefill, pausing anywhere,
 * the dirty rate, and bad configurations. vCPU state and snapshots are in
 * test_kva_state.c.
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

static void test_idle_boots_and_halts(void **state)
{
	struct kva_config cfg = cfg_for("idle", 16ULL << 20, 2);
	struct kva_vm *vm;

	(void)state;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, halted_n, 2, 10, NULL));
	/* A halted VM pauses at once. */
	assert_int_equal(kva_vm_pause(vm), 0);
	kva_vm_destroy(vm);
}

/* 64 GiB of guest RAM costs only what the guest touches. */
static void test_sparse_64g(void **state)
{
	struct kva_config cfg = cfg_for("dirty", 64ULL << 30, 2);
	struct kva_progress p;
	struct kva_vm *vm;

	(void)state;
	cfg.workingset = 4ULL << 20;
	cfg.passes = 1;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, all_done, 2, 20, &p));
	assert_int_equal(p.failed, 0);
	assert_int_equal(p.writes, 1024);
	/* Page tables, image, stacks and 4 MiB of working set. */
	assert_true(memfd_bytes(vm) < (12ULL << 20));
	kva_vm_destroy(vm);
}

struct fail_seen {
	pthread_mutex_t lock;
	struct kva_ucall uc;
	unsigned int n;
};

static int record_fail(struct kva_vm *vm, unsigned int vcpu,
		       const struct kva_ucall *uc, void *opaque)
{
	struct fail_seen *f = opaque;

	(void)vm;
	(void)vcpu;
	if (uc->cmd == KVA_UC_FAIL) {
		pthread_mutex_lock(&f->lock);
		f->uc = *uc;
		f->n++;
		pthread_mutex_unlock(&f->lock);
	}
	return 0;
}

/* The IDT reports exceptions with vector, rip and cr2. */
/*
 * Each exception of the fault guest is reported alike by both
 * accelerators. Containment: a system call (3) never reaches the host
 * kernel, and a write (4) or a jump (5) past RAM stops the VM.
 */
static void test_exceptions_reported(void **state)
{
	static const struct {
		uint64_t vector, error, cr2; /* cr2: past RAM by */
		bool rip_past;
	} want[] = {
		{ 6, 0, 0, false },  { 14, 0, 0x1000, false },
		{ 0, 0, 0, false },  { 6, 0, 0, false },
		{ 14, 2, 0, false }, { 14, 0, 0, true },
	};
	struct kva_progress p;
	struct kva_event *f;
	struct kva_vm *vm;
	uint64_t s;

	(void)state;
	for (s = 0; s < ARRAY_SIZE(want); s++) {
		struct kva_config cfg = cfg_for("fault", 16ULL << 20, 1);

		cfg.seed = s;
		assert_int_equal(kva_vm_create(&cfg, &vm), 0);
		assert_int_equal(kva_vm_start(vm), 0);
		assert_true(wait_for(vm, failed_any, 0, 10, &p));
		f = &vm->vcpus[0].fail;
		assert_int_equal(f->kind, KVA_EV_EXCEPTION);
		assert_int_equal(f->vector, want[s].vector);
		if (want[s].rip_past)
			assert_int_equal(f->rip, cfg.mem_size);
		else
			assert_true(f->rip >= KVA_IMAGE_GPA &&
				    f->rip < KVA_DATA_GPA);
		if (want[s].vector == 14) {
			assert_int_equal(f->cr2, cfg.mem_size + want[s].cr2);
			/* present, write, user, reserved, fetch: W only */
			assert_int_equal(f->error & 0x2, want[s].error);
		}
		kva_vm_destroy(vm);
	}
}

/*
 * Dirty-log completeness. The dirty guest records the pages it writes and
 * hands the record over every few pauses. Harvests run all the time from
 * the test thread and at every record; each record must be covered by the
 * harvests made since that vCPU's previous record.
 */
struct dl_ctx {
	pthread_mutex_t lock;
	struct kva_vm *vm;
	uint64_t *acc[2];
	uint64_t *tmp;
	uint64_t first_page, pages_per;
	uint64_t records, pages_checked, missing, harvests;
};

static void dl_harvest(struct dl_ctx *c)
{
	uint64_t n = kva_vm_pages(c->vm), w;
	unsigned int i;

	memset(c->tmp, 0, FY_BITMAP_WORDS(n) * 8);
	assert_int_equal(kva_vm_harvest(c->vm, c->tmp), 0);
	for (i = 0; i < c->vm->nr_vcpus; i++)
		for (w = 0; w < FY_BITMAP_WORDS(n); w++)
			c->acc[i][w] |= c->tmp[w];
	c->harvests++;
}

static int dl_hook(struct kva_vm *vm, unsigned int vcpu,
		   const struct kva_ucall *uc, void *opaque)
{
	struct dl_ctx *c = opaque;
	const uint64_t *rec;
	uint64_t k, page;

	if (uc->cmd != KVA_UC_RECORD)
		return 0;
	rec = kva_gpa(vm, uc->args[0]);
	if (uc->args[1] != c->pages_per)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	dl_harvest(c);
	for (k = 0; k < uc->args[1]; k++) {
		if (!fy_bit_test(rec, k))
			continue;
		page = c->first_page + vcpu * c->pages_per + k;
		c->pages_checked++;
		if (!fy_bit_test(c->acc[vcpu], page))
			c->missing++;
	}
	memset(c->acc[vcpu], 0, FY_BITMAP_WORDS(kva_vm_pages(vm)) * 8);
	c->records++;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void test_dirty_log_complete(void **state)
{
	struct kva_config cfg = cfg_for("dirty", 64ULL << 20, 2);
	const struct kva_guest_params *gp;
	struct dl_ctx c = { .lock = PTHREAD_MUTEX_INITIALIZER };
	uint64_t end, n, again;
	struct kva_progress p;
	struct kva_vm *vm;

	(void)state;
	cfg.workingset = 4ULL << 20;
	cfg.stride = 50;
	cfg.heartbeat = 0;
	cfg.record = true;
	cfg.sync_every = 7;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	n = kva_vm_pages(vm);
	gp = kva_gpa(vm, KVA_PARAMS_GPA);
	c.vm = vm;
	c.first_page = gp->data_start / FY_PAGE_SIZE;
	c.pages_per = cfg.workingset / FY_PAGE_SIZE / cfg.nr_vcpus;
	c.acc[0] = fy_bitmap_alloc(n);
	c.acc[1] = fy_bitmap_alloc(n);
	c.tmp = fy_bitmap_alloc(n);
	assert_non_null(c.acc[0]);
	assert_non_null(c.acc[1]);
	assert_non_null(c.tmp);
	kva_vm_set_hook(vm, dl_hook, &c);
	assert_int_equal(kva_vm_start(vm), 0);
	end = fy_now_ns() + 20000000000ULL;
	for (;;) {
		uint64_t records, harvests;

		/* the vCPU threads' hook counts too: read under the lock */
		pthread_mutex_lock(&c.lock);
		dl_harvest(&c);
		records = c.records;
		harvests = c.harvests;
		pthread_mutex_unlock(&c.lock);
		if (records >= 60 || fy_now_ns() > end)
			break;
		usleep(1000 + harvests % 3 * 1000);
	}
	assert_int_equal(kva_vm_pause(vm), 0);
	kva_vm_progress(vm, &p);
	print_message("dirty log: %llu records, %llu pages checked, %llu "
		      "harvests, %llu missing\n",
		      (unsigned long long)c.records,
		      (unsigned long long)c.pages_checked,
		      (unsigned long long)c.harvests,
		      (unsigned long long)c.missing);
	assert_int_equal(p.failed, 0);
	assert_true(c.records >= 60);
	assert_true(c.pages_checked >= 60 * 7 * 50);
	assert_int_equal(c.missing, 0);

	/* Paused: one harvest drains the log, the next finds nothing. */
	memset(c.tmp, 0, FY_BITMAP_WORDS(n) * 8);
	assert_int_equal(kva_vm_harvest(vm, c.tmp), 0);
	memset(c.tmp, 0, FY_BITMAP_WORDS(n) * 8);
	assert_int_equal(kva_vm_harvest(vm, c.tmp), 0);
	again = fy_bitmap_count(c.tmp, n);
	assert_int_equal(again, 0);
	kva_vm_destroy(vm);
	free(c.acc[0]);
	free(c.acc[1]);
	free(c.tmp);
}

/* Host writes to a paused guest's page are seen by verify. */
static void test_verify_catches_corruption(void **state)
{
	struct kva_config cfg = cfg_for("verify", 32ULL << 20, 1);
	struct fail_seen f = { .lock = PTHREAD_MUTEX_INITIALIZER };
	const struct kva_guest_params *gp;
	uint64_t page, *word;
	struct kva_vm *vm;

	(void)state;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	kva_vm_set_hook(vm, record_fail, &f);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, pass_at_least, 1, 20, NULL));
	assert_int_equal(kva_vm_pause(vm), 0);
	gp = kva_gpa(vm, KVA_PARAMS_GPA);
	page = gp->data_start / FY_PAGE_SIZE + 200;
	word = kva_gpa(vm, page * FY_PAGE_SIZE);
	*word ^= 0x40;
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, failed_any, 0, 20, NULL));
	assert_int_equal(f.n, 1);
	assert_int_equal(f.uc.args[0], KVA_FAIL_MISMATCH);
	assert_int_equal(f.uc.args[1], page);
	assert_int_equal(f.uc.args[2] ^ f.uc.args[3], 0x40);
	assert_int_equal(f.uc.args[4], 0);
	kva_vm_destroy(vm);
}

/*
 * --rate paces the dirty guest by the TSC: never ahead of its schedule
 * (a burst of stride per vCPU at most), and it makes progress. How close
 * it comes to the rate depends on the CPU it gets: bench/, not here.
 */
static void test_dirty_rate(void **state)
{
	struct kva_config cfg = cfg_for("dirty", 32ULL << 20, 2);
	struct kva_progress p;
	struct kva_vm *vm;
	uint64_t t0, t1;

	(void)state;
	cfg.rate = 4000;
	cfg.stride = 10;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	t0 = fy_now_ns();
	assert_int_equal(kva_vm_start(vm), 0);
	usleep(1000000);
	assert_int_equal(kva_vm_pause(vm), 0);
	t1 = fy_now_ns();
	kva_vm_progress(vm, &p);
	assert_int_equal(p.failed, 0);
	assert_true(p.writes > 0);
	assert_true(p.writes <= cfg.rate * (t1 - t0) / 1000000000 +
					cfg.nr_vcpus * cfg.stride);
	kva_vm_destroy(vm);
}

/*
 * Pause and resume at any instruction: the verify guest (2 vCPUs, checking
 * every page it rewrites) is stopped wherever a kick finds it, saved to a
 * snapshot, rebuilt in a new VM and run on, 30 times. A register or a page
 * lost on the way fails a check or raises an exception.
 */
static void test_pause_anywhere(void **state)
{
	struct kva_config cfg = cfg_for("verify", 32ULL << 20, 2);
	const char *path = tmp_path("anywhere");
	struct kva_progress p, q;
	struct kva_vm *vm;
	unsigned int i;

	(void)state;
	cfg.workingset = 1ULL << 20;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	for (i = 0; i < 30; i++) {
		assert_int_equal(kva_vm_start(vm), 0);
		usleep(200 + (i * 7919) % 3000);
		assert_int_equal(kva_vm_snapshot(vm, path), 0);
		kva_vm_progress(vm, &p);
		kva_vm_destroy(vm);
		assert_int_equal(p.failed, 0);
		assert_int_equal(kva_vm_restore(path, test_accel, &vm), 0);
		kva_vm_progress(vm, &q);
		assert_int_equal(q.writes, p.writes);
	}
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, pass_at_least, p.pass + 2, 30, &q));
	assert_int_equal(q.failed, 0);
	kva_vm_destroy(vm);
	unlink(path);
}

/* Prefill writes from the host and leaves the system area alone. */
static void test_prefill(void **state)
{
	struct kva_config cfg = cfg_for("verify", 32ULL << 20, 1);
	struct kva_progress p;
	struct kva_vm *vm;
	uint64_t *w;

	(void)state;
	cfg.prefill = KVA_PREFILL_PATTERN;
	cfg.passes = 2;
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	w = kva_gpa(vm, cfg.mem_size - 8);
	assert_int_equal(*w, cfg.mem_size - 8);
	assert_true(memfd_bytes(vm) >= cfg.mem_size - KVA_DATA_GPA);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, all_done, 1, 20, &p));
	assert_int_equal(p.failed, 0);
	assert_int_equal(p.pass, 2);
	kva_vm_destroy(vm);

	cfg.prefill = KVA_PREFILL_RANDOM;
	cfg.guest = "dirty";
	assert_int_equal(kva_vm_create(&cfg, &vm), 0);
	w = kva_gpa(vm, cfg.mem_size - 8);
	assert_true(*w != 0 && *w != cfg.mem_size - 8);
	assert_int_equal(kva_vm_start(vm), 0);
	assert_true(wait_for(vm, all_done, 1, 20, &p));
	assert_int_equal(p.failed, 0);
	kva_vm_destroy(vm);
}

static void test_bad_config(void **state)
{
	struct kva_config cfg = cfg_for("dirty", 16ULL << 20, 1);
	struct kva_vm *vm = NULL;

	(void)state;
	cfg.guest = "nosuch";
	assert_int_equal(kva_vm_create(&cfg, &vm), -EINVAL);
	cfg.guest = "dirty";
	cfg.workingset = 16ULL << 20; /* more than RAM above 8 MiB */
	assert_int_equal(kva_vm_create(&cfg, &vm), -EINVAL);
	cfg.workingset = 1ULL << 20;
	cfg.mem_size = (16ULL << 20) + 4096;
	assert_int_equal(kva_vm_create(&cfg, &vm), -EINVAL);
	cfg.mem_size = 16ULL << 20;
	cfg.nr_vcpus = KVA_MAX_VCPUS + 1;
	assert_int_equal(kva_vm_create(&cfg, &vm), -EINVAL);
	assert_null(vm);
	kva_vm_destroy(NULL);
}

/* argv[1]: the accelerator, kvm (default) or user. */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_idle_boots_and_halts),
		cmocka_unit_test(test_exceptions_reported),
		cmocka_unit_test(test_sparse_64g),
		cmocka_unit_test(test_prefill),
		cmocka_unit_test(test_dirty_log_complete),
		cmocka_unit_test(test_verify_catches_corruption),
		cmocka_unit_test(test_pause_anywhere),
		cmocka_unit_test(test_dirty_rate),
	};

	if (argc > 1 && kva_accel_parse(argv[1], &test_accel)) {
		fprintf(stderr, "usage: %s [kvm|user]\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
