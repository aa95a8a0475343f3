// SPDX-License-Identifier: MIT
/*
 * The destination's engine without processes: its real thread, on the
 * fake host (fake_host.c: transport, registry, clock), the fake VM adapter
 * (fake_vm.c: an incoming VM whose RAM is a memfd, a ferry-vm that is no
 * process) and the fake fabric (fake_fab.c: reads are memcpys from the
 * test's "source" RAM). The test plays the source: MIGRATE_PREPARE,
 * HOLDER_MAP, DIRTY_SET, SWITCHOVER, STATE, RESUME.
 *
 * A pre-copy round's pages are pulled and land in the VM's RAM; READY is
 * sent again when the engine's clock passes its resend deadline, not a
 * nanosecond before; RESUME hands the VM over. A failed read fails the
 * migration, tells the source (ABORT) and leaves nothing behind: no
 * endpoint, registration, mapping, client or process.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "tests/migration/fake_fab.h"
#include "tests/migration/fake_host.h"
#include "tests/migration/fake_vm.h"
#include "migration/mig_retain.h"

#define PAGES 4096ULL /* 16 MiB, the least the destination takes */
#define MIG_ID 7
#define MS 1000000ULL

static const char *const names[] = { "b", NULL };

struct rig {
	struct fake_host *h;
	struct fab_domain *fab;
	uint8_t *src; /* the source's RAM, readable through the fabric */
	struct fab_mr *src_mr;
	struct mig *m;
	uint64_t end; /* real time: the test's patience */
};

static size_t nsent(struct rig *r, enum proto_type t)
{
	size_t n = 0;

	for (size_t i = 0; i < r->h->nsent; i++)
		n += r->h->sent[i].type == t;
	return n;
}

static const struct proto_msg *last_sent(struct rig *r, enum proto_type t)
{
	for (size_t i = r->h->nsent; i-- > 0;)
		if (r->h->sent[i].type == t)
			return &r->h->sent[i];
	return NULL;
}

/*
 * The control thread's part, once: wait up to 100 ms for the engine's
 * news, send what the destination's thread queued. True once it ended.
 */
static bool pump(struct rig *r)
{
	struct pollfd pfd = { .fd = r->h->env.mig_efd, .events = POLLIN };
	uint64_t v;

	if (fy_now_ns() > r->end)
		fail_msg("the destination did not get there within 10 s");
	if (poll(&pfd, 1, 100) > 0)
		assert_int_equal(read(pfd.fd, &v, sizeof(v)), sizeof(v));
	return mig_dst_poll(r->m);
}

static void wait_sent(struct rig *r, enum proto_type t, size_t count)
{
	while (nsent(r, t) < count)
		assert_false(pump(r));
}

static void wait_done(struct rig *r)
{
	while (!pump(r))
		;
}

static struct proto_msg *msg_new(enum proto_type t)
{
	struct proto_msg *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->type = t;
	return m;
}

/* The source announces runs (start, len pairs) of generation gen. */
static void push_dirty(struct rig *r, uint64_t gen, size_t nr,
		       const uint64_t *pairs)
{
	struct proto_msg *m = msg_new(PROTO_DIRTY_SET);

	m->dirty.mig = MIG_ID;
	m->dirty.gen = gen;
	m->dirty.nruns = nr;
	m->dirty.runs = calloc(nr, sizeof(*m->dirty.runs));
	assert_non_null(m->dirty.runs);
	for (size_t i = 0; i < nr; i++)
		m->dirty.runs[i] =
			(struct fy_run){ pairs[2 * i], pairs[2 * i + 1] };
	mig_dst_push(r->m, m);
}

static void push_holder_map(struct rig *r)
{
	struct proto_msg *m = msg_new(PROTO_HOLDER_MAP);
	struct fab_rkey rk;
	struct fab_addr a;

	fab_mr_rkey(r->src_mr, &rk);
	fab_domain_addr(r->fab, &a);
	m->holder_map.mig = MIG_ID;
	strcpy(m->holder_map.node, "b");
	m->holder_map.addr_len = a.len;
	memcpy(m->holder_map.addr, a.bytes, a.len);
	m->holder_map.page_size = FY_PAGE_SIZE;
	m->holder_map.nregions = 1;
	m->holder_map.regions = calloc(1, sizeof(*m->holder_map.regions));
	assert_non_null(m->holder_map.regions);
	m->holder_map.regions[0].key = rk.key;
	m->holder_map.regions[0].base = rk.addr;
	m->holder_map.regions[0].len = rk.len;
	mig_dst_push(r->m, m);
}

/* Page p of the source's RAM: its own pattern. */
static uint8_t pattern(uint64_t p)
{
	return (uint8_t)(p * 7 + 1);
}

/* The host, the VM's RAM (empty) and the source's (each page its own). */
static void rig_init(struct rig *r)
{
	struct fab_addr a;

	memset(r, 0, sizeof(*r));
	r->end = fy_now_ns() + 10000 * MS;
	r->h = fake_host_new(names);
	r->h->peers[0].accept_user_vms = true;
	r->h->spawn_pid = FAKE_VM_PID;
	fake_vm_init(PAGES);
	r->fab = fake_fab_open();
	assert_non_null(r->fab);
	r->h->env.fab = r->fab;
	r->h->env.vm_ops = &fake_vm_ops;
	fab_domain_addr(r->fab, &a);
	r->h->env.fab_addr_len = a.len;
	memcpy(r->h->env.fab_addr_raw, a.bytes, a.len);

	r->src = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(r->src != MAP_FAILED);
	for (uint64_t p = 0; p < PAGES; p++)
		memset(r->src + p * FY_PAGE_SIZE, pattern(p), FY_PAGE_SIZE);
	assert_int_equal(fab_mr_reg(r->fab, r->src, PAGES * FY_PAGE_SIZE,
				    FAB_ACCESS_READ, &r->src_mr),
			 0);
}

/*
 * A destination in PRECOPY: MIGRATE_PREPARE taken, the (fake) ferry-vm
 * started and attached, our HOLDER_MAP sent, the source's received.
 */
static void rig_prepare(struct rig *r)
{
	struct proto_msg *m = msg_new(PROTO_MIGRATE_PREPARE);

	m->prepare.mig = MIG_ID;
	strcpy(m->prepare.vm, "v");
	strcpy(m->prepare.mode, "precopy");
	m->prepare.page_size = FY_PAGE_SIZE;
	m->prepare.vcpus = 1;
	m->prepare.lineage = 1;
	strcpy(m->prepare.accel, "user");
	m->prepare.nregions = 1;
	m->prepare.regions = calloc(1, sizeof(*m->prepare.regions));
	assert_non_null(m->prepare.regions);
	m->prepare.regions[0].pages = PAGES;
	mig_dst_prepare(&r->h->env, &r->h->peers[0], m);
	r->m = mig_find(&r->h->env, MIG_ID, false, NULL);
	assert_non_null(r->m);
	assert_non_null(r->m->dst);

	wait_sent(r, PROTO_HOLDER_MAP, 1);
	assert_int_equal(last_sent(r, PROTO_HOLDER_MAP)->holder_map.mig,
			 MIG_ID);
	assert_int_equal(__atomic_load_n(&r->h->spawned, __ATOMIC_SEQ_CST), 1);
	assert_int_equal(FAKE_VM_GET(attaches), 1);
	push_holder_map(r);
}

static void rig_open(struct rig *r)
{
	rig_init(r);
	rig_prepare(r);
}

/* Nothing of the migration is left in the fabric, the VM or the host. */
static void assert_released(struct rig *r)
{
	struct fake_fab_counts c;

	fake_fab_counts(r->fab, &c);
	assert_int_equal(c.inflight, 0);
	assert_int_equal(c.eps, 0);
	assert_int_equal(c.mrs, 1); /* the source's own */
	/* the VM's RAM as the destination mapped and registered it */
	assert_non_null(c.local_buf);
	assert_int_equal(msync(c.local_buf, FY_PAGE_SIZE, MS_ASYNC), -1);
	assert_int_equal(errno, ENOMEM);
}

static void rig_close(struct rig *r)
{
	fab_mr_dereg(r->src_mr);
	munmap(r->src, PAGES * FY_PAGE_SIZE);
	fake_host_free(r->h); /* joins the thread, closes handed clients */
	assert_int_equal(FAKE_VM_GET(closes), FAKE_VM_GET(attaches));
	fake_vm_fini();
	fab_domain_close(r->fab);
}

/* Page p of the VM's RAM is the source's (or, !pulled, still zero). */
static void assert_page(uint64_t p, bool pulled)
{
	uint8_t buf[FY_PAGE_SIZE], want[FY_PAGE_SIZE];

	memset(want, pulled ? pattern(p) : 0, sizeof(want));
	assert_int_equal(pread(fake_vm.memfd, buf, sizeof(buf),
			       (off_t)(p * FY_PAGE_SIZE)),
			 sizeof(buf));
	if (memcmp(buf, want, sizeof(buf)))
		fail_msg("page %llu: %s", (unsigned long long)p,
			 pulled ? "not the source's" : "written");
}

static void test_pull_ready_resume(void **state)
{
	static const uint8_t blob[] = "vCPU state of v";
	const uint64_t runs[] = { 0, 10, 100, 300, 4000, 96 };
	const struct proto_msg *p;
	struct proto_msg *m;
	uint64_t t0, reads;
	struct rig r;

	(void)state;
	rig_open(&r);
	push_dirty(&r, 1, 3, runs);
	/* every announced page is in: PROGRESS says so */
	while (!(p = last_sent(&r, PROTO_PROGRESS)) ||
	       p->progress.pages_valid != PAGES)
		assert_false(pump(&r));
	assert_int_equal(p->progress.pages_total, PAGES);
	assert_int_equal(p->progress.bytes, 406 * FY_PAGE_SIZE);
	for (size_t i = 0; i < 3; i++) {
		assert_page(runs[2 * i], true);
		assert_page(runs[2 * i] + runs[2 * i + 1] - 1, true);
	}
	assert_page(10, false);
	assert_page(99, false);
	assert_page(400, false);
	assert_page(3999, false);

	m = msg_new(PROTO_SWITCHOVER);
	m->switchover = (struct proto_mig_gen){ .mig = MIG_ID, .gen = 1 };
	mig_dst_push(r.m, m);
	m = msg_new(PROTO_STATE);
	m->state.mig = MIG_ID;
	m->state.len = sizeof(blob);
	m->state.blob = malloc(sizeof(blob));
	assert_non_null(m->state.blob);
	memcpy(m->state.blob, blob, sizeof(blob));
	mig_dst_push(r.m, m);
	wait_sent(&r, PROTO_READY, 1);
	assert_int_equal(mig_state(r.m), MIG_DST_READY);
	assert_int_equal(FAKE_VM_GET(ram_dones), 1);
	assert_int_equal(FAKE_VM_GET(set_states), 1);
	assert_int_equal(fake_vm.state_len, sizeof(blob));
	assert_memory_equal(fake_vm.state_head, blob, sizeof(blob));
	assert_int_equal(FAKE_VM_GET(resumes), 0);

	/* READY again MIG_READY_NS after the first, on the engine's clock */
	t0 = fake_clock_get();
	fake_clock_set(t0 + MIG_READY_NS - 1);
	reads = fake_clock_reads();
	/* its thread reads the clock twice a turn: a whole turn went by */
	while (fake_clock_reads() < reads + 4)
		assert_false(pump(&r));
	assert_false(pump(&r));
	assert_int_equal(nsent(&r, PROTO_READY), 1);
	fake_clock_set(t0 + MIG_READY_NS);
	wait_sent(&r, PROTO_READY, 2);
	assert_int_equal(last_sent(&r, PROTO_READY)->commit.mig, MIG_ID);

	m = msg_new(PROTO_RESUME);
	m->commit = (struct proto_mig_gen){ .mig = MIG_ID, .gen = 1 };
	mig_dst_push(r.m, m);
	wait_done(&r);
	assert_int_equal(mig_state(r.m), MIG_DST_COMPLETED);
	assert_int_equal(nsent(&r, PROTO_RESUMED), 1);
	assert_int_equal(nsent(&r, PROTO_ABORT), 0);
	assert_int_equal(FAKE_VM_GET(resumes), 1);
	/* the VM is the host's now: its client, its process */
	assert_true(r.h->vms[0].used);
	assert_non_null(r.h->vms[0].kc);
	assert_int_equal(r.h->vms[0].pid, FAKE_VM_PID);
	assert_null(r.h->vms[0].mig);
	assert_int_equal(FAKE_VM_GET(closes), 0);
	assert_int_equal(FAKE_VM_GET(exits) + FAKE_VM_GET(kills), 0);
	assert_released(&r);
	rig_close(&r);
}

/* Every byte of page p of the VM's RAM is v. */
static void assert_fill(uint64_t p, uint8_t v)
{
	uint8_t buf[FY_PAGE_SIZE], want[FY_PAGE_SIZE];

	memset(want, v, sizeof(want));
	assert_int_equal(pread(fake_vm.memfd, buf, sizeof(buf),
			       (off_t)(p * FY_PAGE_SIZE)),
			 sizeof(buf));
	if (memcmp(buf, want, sizeof(buf)))
		fail_msg("page %llu is not all 0x%02x", (unsigned long long)p,
			 v);
}

/* A copy of v (lineage 1) this node kept: every page 0xee, the VM's RAM. */
static void keep_copy(struct rig *r)
{
	struct mig_kept *k;

	r->h->env.held = calloc(1, sizeof(*r->h->env.held));
	assert_non_null(r->h->env.held);
	k = &r->h->env.held->kept[0];
	*k = (struct mig_kept){ .used = true,
				.vm = "v",
				.to = "b",
				.lineage = 1,
				.pages = PAGES,
				.bytes = PAGES * FY_PAGE_SIZE,
				.memfd = dup(fake_vm.memfd) };
	k->map = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED, fake_vm.memfd, 0);
	assert_true(k->map != MAP_FAILED);
	memset(k->map, 0xee, PAGES * FY_PAGE_SIZE);
	assert_int_equal(fab_mr_reg(r->fab, k->map, PAGES * FY_PAGE_SIZE,
				    FAB_ACCESS_READ, &k->mr),
			 0);
}

/* The source: our kept copy is current for [0, n) at generation gen. */
static void push_kept_map(struct rig *r, const struct fab_rkey *rk, uint64_t n,
			  uint64_t gen)
{
	struct proto_msg *m = msg_new(PROTO_HOLDER_MAP);
	struct proto_holder_region *reg;

	m->holder_map.mig = MIG_ID;
	strcpy(m->holder_map.node, "a");
	m->holder_map.page_size = FY_PAGE_SIZE;
	m->holder_map.nregions = 1;
	m->holder_map.regions = reg = calloc(1, sizeof(*reg));
	assert_non_null(reg);
	reg->key = rk->key;
	reg->base = rk->addr;
	reg->len = PAGES * FY_PAGE_SIZE;
	reg->ngens = 1;
	reg->gens = calloc(1, sizeof(*reg->gens));
	assert_non_null(reg->gens);
	reg->gens[0] = (struct proto_genrun){ 0, n, gen };
	mig_dst_push(r->m, m);
}

/*
 * The VM comes back by pre-copy: its RAM is the memfd we kept. A page
 * current in it is neither read nor written, one announced at a later
 * generation or not current is pulled, and one never announced (a hole
 * at the source) is dropped at SWITCHOVER, so nothing stale survives.
 */
static void test_adopt_kept(void **state)
{
	const uint64_t round0[] = { 0, 100, 150, 100 }, round1[] = { 10, 5 };
	const struct proto_msg *p;
	struct proto_msg *m;
	struct fab_rkey rk;
	struct rig r;

	(void)state;
	rig_init(&r);
	keep_copy(&r);
	fab_mr_rkey(r.h->env.held->kept[0].mr, &rk);
	rig_prepare(&r);
	assert_true(__atomic_load_n(&r.h->spawn_ram, __ATOMIC_SEQ_CST));
	assert_false(r.h->env.held->kept[0].used); /* the VM's RAM now */
	push_kept_map(&r, &rk, 200, 1);
	push_dirty(&r, 1, 2, round0);
	push_dirty(&r, 2, 1, round1); /* changed since: pulled */
	/* both rounds taken (150 pages in place, 55 pulled) and all in */
	while (!(p = last_sent(&r, PROTO_PROGRESS)) ||
	       p->progress.pages_valid != PAGES ||
	       p->progress.bytes != 205 * FY_PAGE_SIZE)
		assert_false(pump(&r));
	assert_fill(0, 0xee);
	assert_fill(199, 0xee);
	assert_page(10, true);
	assert_page(14, true);
	assert_page(200, true);
	assert_page(249, true);
	assert_fill(120, 0xee); /* never announced: stale until SWITCHOVER */
	assert_fill(4000, 0xee);

	m = msg_new(PROTO_SWITCHOVER);
	m->switchover = (struct proto_mig_gen){ .mig = MIG_ID, .gen = 2 };
	mig_dst_push(r.m, m);
	m = msg_new(PROTO_STATE);
	m->state.mig = MIG_ID;
	m->state.len = 1;
	m->state.blob = calloc(1, 1);
	assert_non_null(m->state.blob);
	mig_dst_push(r.m, m);
	wait_sent(&r, PROTO_READY, 1);
	assert_page(120, false);
	assert_page(4000, false);
	assert_page(250, false);
	assert_fill(199, 0xee);
	assert_page(14, true);
	rig_close(&r);
}

static void test_failed_read(void **state)
{
	const uint64_t runs[] = { 0, 10, 100, 300 };
	const struct proto_msg *a;
	struct fake_fab_counts c;
	struct rig r;

	(void)state;
	rig_open(&r);
	fake_fab_fail_reads(r.fab, 1, -EIO);
	push_dirty(&r, 1, 2, runs);
	wait_done(&r);
	assert_int_equal(mig_state(r.m), MIG_DST_FAILED);
	a = last_sent(&r, PROTO_ABORT);
	assert_non_null(a);
	assert_int_equal(a->abort.mig, MIG_ID);
	assert_non_null(strstr(a->abort.reason, "fabric read of"));
	assert_int_equal(nsent(&r, PROTO_READY), 0);
	fake_fab_counts(r.fab, &c);
	assert_int_equal(c.failed, 1);
	assert_released(&r);
	/* the incoming VM: told to exit, reaped, its client closed */
	assert_int_equal(FAKE_VM_GET(exits), 1);
	assert_int_equal(FAKE_VM_GET(reaped), 1);
	assert_int_equal(FAKE_VM_GET(kills), 0);
	assert_int_equal(FAKE_VM_GET(closes), 1);
	assert_int_equal(FAKE_VM_GET(resumes), 0);
	assert_int_equal(__atomic_load_n(&r.h->unlinked, __ATOMIC_SEQ_CST), 1);
	assert_false(r.h->vms[0].used);
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pull_ready_resume),
		cmocka_unit_test(test_failed_read),
		cmocka_unit_test(test_adopt_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
