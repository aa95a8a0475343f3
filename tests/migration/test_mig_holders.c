// SPDX-License-Identifier: MIT
/*
 * Unit tests of the holders beyond the source, on the fake host and
 * fabric: what a source offers and passes on, read from the messages it
 * sends (decoded, as a peer would get them).
 *
 *   retain    a copy is announced whole at the commit, within the budget
 *             only; kept at completion; dropped by age, for room (the
 *             oldest), on release (not while lent), when its VM is back
 *   offer     an arrived VM's copies kept elsewhere are offered for their
 *             pages changed neither before nor since the arrival; another
 *             VM of the same name gets a new lineage and no offer
 *   retarget  the relay's map reaches the new destination less the pages
 *             of the round not fully announced to it, at the generation of
 *             the retarget; then every page announced, at its generation
 *   retarget2 a second retarget: the new destination gets both relays'
 *             maps, each trimmed as the first and at its own generation;
 *             no retarget back to a relay, none beyond MIG_RELAYS_MAX;
 *             the record names the relays not released; a relay not
 *             reached at the release is told once it answers
 *   restart   a source record naming relays: after a restart each is
 *             released once it answers, and the record forgets it
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "common/util.h"
#include "fabric/fabric.h"
#include "migration/mig_retain.h"
#include "migration/mig_src.h"
#include "tests/migration/fake_fab.h"
#include "tests/migration/fake_host.h"

#define PAGES 1024ULL
#define S_NS 1000000000ULL

static const char *const names[] = { "b", "c", "d", NULL };

struct rig {
	struct fake_host *h;
	struct fab_domain *fab;
};

static void rig_open(struct rig *r, uint64_t budget)
{
	struct fab_addr a;

	r->h = fake_host_new(names);
	r->fab = fake_fab_open();
	assert_non_null(r->fab);
	r->h->env.fab = r->fab;
	fab_domain_addr(r->fab, &a);
	r->h->env.fab_addr_len = a.len;
	memcpy(r->h->env.fab_addr_raw, a.bytes, a.len);
	r->h->env.cfg.retain_bytes = budget;
	r->h->env.cfg.retain_age_s = 600;
}

static void rig_close(struct rig *r)
{
	fake_host_free(r->h);
	fab_domain_close(r->fab);
}

/*
 * A source migration of vm to peer 0 at generation gen, its RAM mapped and
 * registered, pages [0, data) announced at gen.
 */
static struct mig *source(struct rig *r, const char *vm, uint64_t data,
			  uint64_t gen)
{
	struct mig *m = mig_new(&r->h->env, true);
	struct fy_run all = { 0, data };

	assert_non_null(m);
	m->id = r->h->env.next_mig_id++ + 1;
	m->peer = &r->h->peers[0];
	snprintf(m->vm, sizeof(m->vm), "%s", vm);
	m->o.mode = PROTO_MODE_PRECOPY;
	m->pages = PAGES;
	m->vcpus = 1;
	m->accel = KVA_ACCEL_USER;
	m->lineage = 1;
	m->gen = gen;
	m->map = mmap(NULL, PAGES * FY_PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(m->map != MAP_FAILED);
	assert_int_equal(fab_mr_reg(r->fab, m->map, PAGES * FY_PAGE_SIZE,
				    FAB_ACCESS_READ, &m->mr),
			 0);
	m->sent_bm = fy_bitmap_alloc(PAGES);
	m->pgen = calloc(PAGES, sizeof(*m->pgen));
	assert_non_null(m->sent_bm);
	assert_non_null(m->pgen);
	fy_runs_to_bitmap(&all, 1, m->sent_bm, PAGES);
	for (uint64_t p = 0; p < data; p++)
		m->pgen[p] = (uint32_t)gen;
	m->sm.state = MIG_SRC_PRECOPY;
	return m;
}

/* The last HOLDER_MAP of node sent, or NULL. */
static const struct proto_holder_map *map_of(struct rig *r, const char *node)
{
	for (size_t i = r->h->nsent; i-- > 0;)
		if (r->h->sent[i].type == PROTO_HOLDER_MAP &&
		    !strcmp(r->h->sent[i].holder_map.node, node))
			return &r->h->sent[i].holder_map;
	return NULL;
}

/* Map h's runs are exactly the nr (start, len) pairs, all at gen. */
static void assert_runs(const struct proto_holder_map *h, uint64_t gen,
			size_t nr, const uint64_t *pairs)
{
	assert_non_null(h);
	assert_int_equal(h->nregions, 1);
	assert_int_equal(h->regions[0].ngens, nr);
	for (size_t i = 0; i < nr; i++) {
		assert_int_equal(h->regions[0].gens[i].start, pairs[2 * i]);
		assert_int_equal(h->regions[0].gens[i].len, pairs[2 * i + 1]);
		assert_int_equal(h->regions[0].gens[i].gen, gen);
	}
}

/* The kept copies, as `ferry release` would count them (then kept again). */
static unsigned kept(struct rig *r)
{
	unsigned n = 0;

	for (int i = 0; r->h->env.held && i < MIG_KEPT_MAX; i++)
		n += r->h->env.held->kept[i].used;
	return n;
}

static void test_retain(void **state)
{
	static const uint64_t all[] = { 0, PAGES };
	struct rig r;
	struct mig *m, *m2;
	char err[128];

	(void)state;
	/* over the budget: not announced, not kept */
	rig_open(&r, 512 * FY_PAGE_SIZE);
	m = source(&r, "v", 600, 7);
	mig_retain_announce(m);
	assert_false(m->retain);
	assert_int_equal(r.h->nsent, 0);
	/* within it: all pages, at the generation of the commit */
	m2 = source(&r, "w", 300, 9);
	mig_retain_announce(m2);
	assert_true(m2->retain);
	assert_runs(map_of(&r, "a"), 9, 1, all);
	mig_retain_keep(m2);
	assert_null(m2->map);
	assert_null(m2->mr);
	assert_int_equal(kept(&r), 1);
	/* a second one: the budget makes room, the oldest goes */
	fake_clock_set(FAKE_CLOCK_START + S_NS);
	m = source(&r, "x", 300, 3);
	mig_retain_announce(m);
	mig_retain_keep(m);
	assert_int_equal(kept(&r), 1);
	assert_string_equal(r.h->env.held->kept[0].vm, "x");
	/* lent to an incoming migration: not released, nor aged out */
	struct mig_kept *k = mig_kept_take(&r.h->env, m->lineage);

	assert_non_null(k);
	assert_null(mig_kept_take(&r.h->env, m->lineage));
	assert_int_equal(mig_release_kept(&r.h->env, "x", err, sizeof(err)),
			 -EBUSY);
	fake_clock_set(FAKE_CLOCK_START + 700 * S_NS);
	mig_held_tick(&r.h->env, fake_clock_get());
	assert_int_equal(kept(&r), 1);
	mig_kept_put(k);
	mig_held_tick(&r.h->env, fake_clock_get());
	assert_int_equal(kept(&r), 0);
	rig_close(&r);
}

static void test_release_and_back(void **state)
{
	struct rig r;
	struct mig *m, *d;
	char err[128];

	(void)state;
	rig_open(&r, 1ULL << 30);
	m = source(&r, "v", 100, 4);
	mig_retain_announce(m);
	mig_retain_keep(m);
	assert_int_equal(
		mig_release_kept(&r.h->env, "nosuch", err, sizeof(err)), 0);
	assert_int_equal(mig_release_kept(&r.h->env, "v", err, sizeof(err)), 1);
	assert_int_equal(kept(&r), 0);
	/* kept again; the VM comes back: the copy goes */
	m = source(&r, "v", 100, 4);
	mig_retain_announce(m);
	mig_retain_keep(m);
	assert_int_equal(kept(&r), 1);
	d = mig_new(&r.h->env, false);
	assert_non_null(d);
	d->peer = &r.h->peers[0];
	strcpy(d->vm, "v");
	d->pages = PAGES;
	d->lineage = m->lineage;
	mig_arrive(d, NULL, 0, true, 42);
	assert_int_equal(kept(&r), 0);
	/* and it keeps its lineage here while it runs */
	assert_int_equal(mig_lineage_for(&r.h->env, "v", 42), m->lineage);
	rig_close(&r);
}

static void test_offer(void **state)
{
	static const uint64_t cur[] = { 0, 100, 200, 312 };
	struct rig r;
	struct mig_ref ref = { 0 };
	struct fy_run half = { 0, 512 }, moved = { 100, 100 };
	uint64_t *bm = fy_bitmap_alloc(PAGES);
	struct mig *d, *m;
	uint64_t lineage;

	(void)state;
	assert_non_null(bm);
	rig_open(&r, 0);
	/* v arrived with c's copy current for pages 0..511 */
	strcpy(ref.node, "c");
	ref.addr_len = 4;
	memcpy(ref.addr, "fake", 4);
	ref.key = 77;
	ref.base = 4096;
	ref.cur = fy_bitmap_alloc(PAGES);
	assert_non_null(ref.cur);
	fy_runs_to_bitmap(&half, 1, ref.cur, PAGES);
	d = mig_new(&r.h->env, false);
	assert_non_null(d);
	d->peer = &r.h->peers[1];
	strcpy(d->vm, "v");
	d->pages = PAGES;
	d->lineage = 1234;
	mig_arrive(d, &ref, 1, true, 42);
	/* the guest changed pages 100..199 since */
	fy_runs_to_bitmap(&moved, 1, bm, PAGES);
	mig_arrived_changed(&r.h->env, "v", bm, PAGES);
	lineage = mig_lineage_for(&r.h->env, "v", 42);
	assert_int_equal(lineage, 1234);
	m = source(&r, "v", PAGES, 11);
	m->lineage = lineage;
	assert_int_equal(mig_refs_send(m), 0);
	assert_runs(map_of(&r, "c"), 11, 2, cur);
	assert_int_equal(map_of(&r, "c")->regions[0].key, 77);
	/* another VM called v (another ferry-vm): nothing known of it */
	fake_host_forget_sent(r.h);
	assert_int_not_equal(mig_lineage_for(&r.h->env, "v", 43), 1234);
	assert_int_equal(mig_refs_send(m), 0);
	assert_null(map_of(&r, "c"));
	free(bm);
	rig_close(&r);
}

static void test_retarget(void **state)
{
	/* b held every page but 10..19; 600..699 was not announced to it */
	static const uint64_t relay[] = { 0, 10, 20, 580, 700, 324 };
	struct rig r;
	struct mig *m;
	struct proto_msg hm = { .type = PROTO_HOLDER_MAP };
	struct proto_holder_region *reg = calloc(1, sizeof(*reg));
	struct proto_genrun *held = calloc(2, sizeof(*held));
	struct fy_run *todo = calloc(2, sizeof(*todo));
	char err[256];
	size_t sets = 0;

	(void)state;
	assert_non_null(todo);
	assert_non_null(reg);
	assert_non_null(held);
	held[0] = (struct proto_genrun){ 0, 10, 5 };
	held[1] = (struct proto_genrun){ 20, PAGES - 20, 5 };
	rig_open(&r, 0);
	m = source(&r, "v", PAGES, 5);
	/* round 1 (gen 6): pages 500..699, announced up to 600 */
	for (uint64_t p = 500; p < 700; p++)
		m->pgen[p] = 6;
	m->gen = 6;
	todo[0] = (struct fy_run){ 500, 100 };
	todo[1] = (struct fy_run){ 600, 100 };
	m->todo = todo;
	m->ntodo = 2;
	m->todo_pos = 1;
	assert_int_equal(
		mig_src_retarget(&r.h->env, m->id, "c", err, sizeof(err)), 0);
	assert_int_equal(m->sm.state, MIG_SRC_RETARGET);
	assert_ptr_equal(m->peer, &r.h->peers[1]);
	assert_int_equal(r.h->sent[0].type, PROTO_RETARGET);
	assert_ptr_equal(r.h->sent_to[0], &r.h->peers[0]);
	assert_int_equal(r.h->sent[1].type, PROTO_MIGRATE_PREPARE);
	assert_ptr_equal(r.h->sent_to[1], &r.h->peers[1]);
	/* another before c said yes is refused, and nothing is sent */
	assert_int_equal(mig_src_retarget(&r.h->env, m->id, "b", err,
					  sizeof(err)),
			 -EBUSY);
	assert_int_equal(r.h->nsent, 2);
	/* b's map arrives, then c's yes */
	hm.holder_map.mig = m->id;
	strcpy(hm.holder_map.node, "b");
	hm.holder_map.addr_len = 4;
	memcpy(hm.holder_map.addr, "fake", 4);
	hm.holder_map.page_size = FY_PAGE_SIZE;
	hm.holder_map.nregions = 1;
	hm.holder_map.regions = reg;
	reg->len = PAGES * FY_PAGE_SIZE;
	reg->ngens = 2;
	reg->gens = held;
	mig_src_relay_msg(m, &r.h->peers[0], &hm);
	assert_null(hm.holder_map.regions); /* taken */
	mig_src_retargeted(m);
	assert_int_equal(m->sm.state, MIG_SRC_PRECOPY);
	assert_runs(map_of(&r, "b"), 6, 3, relay);
	/* every page announced, each at its generation, lowest first */
	for (size_t i = 0; i < r.h->nsent; i++) {
		const struct proto_dirty_set *ds = &r.h->sent[i].dirty;

		if (r.h->sent[i].type != PROTO_DIRTY_SET)
			continue;
		assert_int_equal(ds->gen, sets ? 6 : 5);
		assert_int_equal(ds->nruns, sets ? 1 : 2);
		if (sets)
			assert_int_equal(ds->runs[0].start, 500);
		sets++;
	}
	assert_int_equal(sets, 2);
	assert_true(m->todo_sent);
	assert_int_equal(m->expect_bytes, PAGES * FY_PAGE_SIZE);
	rig_close(&r);
}

/* A HOLDER_MAP of node: runs (start, len) at gen, arrays malloc'ed. */
static void relay_map_msg(struct proto_msg *hm, const struct mig *m,
			  const char *node, uint64_t gen, size_t nr,
			  const uint64_t *pairs)
{
	struct proto_holder_region *reg = calloc(1, sizeof(*reg));

	assert_non_null(reg);
	memset(hm, 0, sizeof(*hm));
	hm->type = PROTO_HOLDER_MAP;
	hm->holder_map.mig = m->id;
	snprintf(hm->holder_map.node, sizeof(hm->holder_map.node), "%s", node);
	hm->holder_map.addr_len = 4;
	memcpy(hm->holder_map.addr, "fake", 4);
	hm->holder_map.page_size = FY_PAGE_SIZE;
	hm->holder_map.nregions = 1;
	hm->holder_map.regions = reg;
	reg->len = PAGES * FY_PAGE_SIZE;
	reg->ngens = nr;
	reg->gens = calloc(nr, sizeof(*reg->gens));
	assert_non_null(reg->gens);
	for (size_t i = 0; i < nr; i++)
		reg->gens[i] = (struct proto_genrun){ pairs[2 * i],
						      pairs[2 * i + 1], gen };
}

/* The ABORTs sent to peer i: how many, each "released: ..." */
static size_t releases_to(struct rig *r, unsigned i)
{
	size_t k = 0;

	for (size_t s = 0; s < r->h->nsent; s++) {
		if (r->h->sent[s].type != PROTO_ABORT ||
		    r->h->sent_to[s] != &r->h->peers[i])
			continue;
		assert_memory_equal(r->h->sent[s].abort.reason,
				    "released: ", 10);
		k++;
	}
	return k;
}

/* The relays that m's record names, as one string "b,c". */
static void record_relays(struct rig *r, const struct mig *m, char *buf,
			  size_t len)
{
	struct mig_record rec;
	char name[MIG_RECORD_NAME_MAX];

	snprintf(name, sizeof(name), "%" PRIu64 ".src", m->id);
	assert_int_equal(mig_record_get(&r->h->env, name, &rec), 0);
	buf[0] = '\0';
	for (unsigned i = 0; i < rec.nrelays; i++)
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
			 i ? "," : "", rec.relays[i]);
}

static void test_retarget2(void **state)
{
	/* b: all but 10..19 at gen 5 (trimmed by nothing) */
	static const uint64_t b_in[] = { 0, 10, 20, PAGES - 20 };
	/* c: all but 300..309, at gen 6; 600..699 not announced to it */
	static const uint64_t c_in[] = { 0, 300, 310, PAGES - 310 };
	static const uint64_t c_out[] = { 0, 300, 310, 290, 700, 324 };
	struct fy_run *todo = calloc(2, sizeof(*todo));
	struct proto_msg hm;
	char err[256], rels[64];
	struct rig r;
	struct mig *m;

	(void)state;
	assert_non_null(todo);
	rig_open(&r, 0);
	m = source(&r, "v", PAGES, 5);
	/* a -> b, retarget to c: b's map, then c's yes */
	assert_int_equal(
		mig_src_retarget(&r.h->env, m->id, "c", err, sizeof(err)), 0);
	relay_map_msg(&hm, m, "b", 5, 2, b_in);
	mig_src_relay_msg(m, &r.h->peers[0], &hm);
	mig_src_retargeted(m);
	assert_int_equal(m->sm.state, MIG_SRC_PRECOPY);
	record_relays(&r, m, rels, sizeof(rels));
	assert_string_equal(rels, "b");
	/* round 1 (gen 6) to c: 500..699, announced up to 600 */
	for (uint64_t p = 500; p < 700; p++)
		m->pgen[p] = 6;
	m->gen = 6;
	todo[0] = (struct fy_run){ 500, 100 };
	todo[1] = (struct fy_run){ 600, 100 };
	free(m->todo);
	m->todo = todo;
	m->ntodo = 2;
	m->todo_pos = 1;
	m->todo_sent = false;
	fake_host_forget_sent(r.h);
	/* on to d: c becomes a relay too */
	assert_int_equal(
		mig_src_retarget(&r.h->env, m->id, "d", err, sizeof(err)), 0);
	assert_int_equal(m->sm.state, MIG_SRC_RETARGET);
	assert_int_equal(r.h->sent[0].type, PROTO_RETARGET);
	assert_ptr_equal(r.h->sent_to[0], &r.h->peers[1]);
	assert_string_equal(r.h->sent[0].retarget.node, "d");
	assert_int_equal(r.h->sent[1].type, PROTO_MIGRATE_PREPARE);
	assert_ptr_equal(r.h->sent_to[1], &r.h->peers[2]);
	record_relays(&r, m, rels, sizeof(rels));
	assert_string_equal(rels, "b,c");
	/* d says yes before c's map came: the source's, then b's */
	fake_host_forget_sent(r.h);
	mig_src_retargeted(m);
	assert_int_equal(m->sm.state, MIG_SRC_PRECOPY);
	assert_runs(map_of(&r, "b"), 5, 2, b_in);
	assert_null(map_of(&r, "c"));
	relay_map_msg(&hm, m, "c", 6, 2, c_in);
	mig_src_relay_msg(m, &r.h->peers[1], &hm);
	assert_runs(map_of(&r, "c"), 6, 3, c_out);
	for (size_t i = 0; i < r.h->nsent; i++)
		assert_ptr_equal(r.h->sent_to[i], &r.h->peers[2]);
	/* no way back to a relay, and nothing is sent */
	fake_host_forget_sent(r.h);
	assert_int_equal(mig_src_retarget(&r.h->env, m->id, "b", err,
					  sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "not supported"));
	assert_int_equal(mig_src_retarget(&r.h->env, m->id, "c", err,
					  sizeof(err)),
			 -EINVAL);
	m->nrelays = MIG_RELAYS_MAX; /* as if retargeted that often */
	assert_int_equal(mig_src_retarget(&r.h->env, m->id, "c", err,
					  sizeof(err)),
			 -EBUSY);
	assert_non_null(strstr(err, "no more than 4 relays"));
	m->nrelays = 2;
	assert_int_equal(r.h->nsent, 0);
	assert_ptr_equal(m->peer, &r.h->peers[2]);
	/* at the commit, neither reached: each once it answers */
	r.h->send_ret = -EHOSTUNREACH;
	mig_src_relay_release(m, "the new destination holds every page");
	r.h->send_ret = 0;
	assert_int_equal(r.h->nsent, 0);
	record_relays(&r, m, rels, sizeof(rels));
	assert_string_equal(rels, "b,c");
	r.h->state[0] = MIG_PEER_UNREACHABLE;
	mig_src_relays_tick(m, fake_clock_get());
	assert_int_equal(releases_to(&r, 0), 0);
	assert_int_equal(releases_to(&r, 1), 1);
	record_relays(&r, m, rels, sizeof(rels));
	assert_string_equal(rels, "b");
	r.h->state[0] = MIG_PEER_REACHABLE;
	mig_src_relays_tick(m, fake_clock_get());
	mig_src_relays_tick(m, fake_clock_get());
	assert_int_equal(releases_to(&r, 0), 1);
	assert_int_equal(releases_to(&r, 1), 1);
	record_relays(&r, m, rels, sizeof(rels));
	assert_string_equal(rels, "");
	rig_close(&r);
}

static void test_restart(void **state)
{
	struct mig_record rec = {
		.id = 9,
		.source = true,
		.vm = "v",
		.peer = "d",
		.phase = MIG_PRECOPY,
		.mode = PROTO_MODE_PRECOPY,
		.relays = { "b", "c", "nobody" },
		.nrelays = 3,
	};
	char rels[64];
	struct rig r;
	struct mig *m;

	(void)state;
	rig_open(&r, 0);
	/* a record as a source that died after two retargets left it */
	mig_record_put(&r.h->env, &rec);
	mig_close(&r.h->env);
	assert_int_equal(mig_open(&r.h->env), 0);
	m = mig_find(&r.h->env, 9, true, NULL);
	assert_non_null(m);
	assert_int_equal(m->sm.state, MIG_SRC_FAILED);
	/* "nobody" is no peer: nothing to tell */
	assert_int_equal(m->nrelays, 2);
	record_relays(&r, m, rels, sizeof(rels));
	assert_string_equal(rels, "b,c");
	r.h->state[1] = MIG_PEER_UNREACHABLE;
	mig_tick(&r.h->env, fake_clock_get());
	assert_int_equal(releases_to(&r, 0), 1);
	assert_int_equal(releases_to(&r, 1), 0);
	record_relays(&r, m, rels, sizeof(rels));
	assert_string_equal(rels, "c");
	r.h->state[1] = MIG_PEER_REACHABLE;
	mig_tick(&r.h->env, fake_clock_get());
	assert_int_equal(releases_to(&r, 1), 1);
	record_relays(&r, m, rels, sizeof(rels));
	assert_string_equal(rels, "");
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retain),
		cmocka_unit_test(test_release_and_back),
		cmocka_unit_test(test_offer),
		cmocka_unit_test(test_retarget),
		cmocka_unit_test(test_retarget2),
		cmocka_unit_test(test_restart),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
