// SPDX-License-Identifier: MIT
/*
 * The engine's commands and its answers to peers, on a fake host
 * (fake_host.c): no daemon, no sockets, no VMs. The control socket's
 * migration commands: force-resume needs "fenced", unknown migrations,
 * `ferry migrate` left to its defaults, to an unknown or unreachable peer
 * or for a VM that is not here; a started one registers guest RAM off the
 * control thread, cancelled meanwhile or failing; `ferry retarget`'s lookups of the peer
 * and the migration, before the engine is asked. A peer's
 * MIGRATE_PREPARE: refused for a user VM without accept_user_vms, for a
 * name taken here, for pages that are not 4 KiB, and beyond its burst;
 * READY and RESUME about a migration this node does not have are
 * answered ABORT.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"
#include "tests/migration/fake_fab.h"
#include "tests/migration/fake_host.h"
#include "tests/migration/fake_vm.h"

static const char *const names[] = { "b", "c", NULL };

/* Run one request; the reply's "error", or "" if none. */
static const char *run(struct fake_host *h, const struct proto_ctl_req *req,
		       char *buf, size_t len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	mig_command(&h->env, req, &pk);
	msgpack_unpacked_init(&up);
	assert_int_equal(msgpack_unpack_next(&up, sb.data, sb.size, NULL),
			 MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(up.data.type, MSGPACK_OBJECT_MAP);
	buf[0] = '\0';
	if (proto_mp_get(&up.data, "error"))
		proto_mp_str(&up.data, "error", buf, len);
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
	return buf;
}

static void test_force_resume_needs_fenced(void **state)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_FORCE_RESUME, .id = 5 };
	struct fake_host *h = fake_host_new(names);
	char err[512];

	(void)state;
	req.has = 1u << PROTO_CTL_ID;
	assert_non_null(strstr(run(h, &req, err, sizeof(err)), "force-resume "
							       "needs "
							       "\"fenced\": "
							       "true"));
	req.has |= 1u << PROTO_CTL_FENCED;
	assert_non_null(strstr(run(h, &req, err, sizeof(err)), "force-resume "
							       "needs "
							       "\"fenced\": "
							       "true"));
	/* fenced: on to the migration, which this node does not have */
	req.fenced = true;
	assert_string_equal(run(h, &req, err, sizeof(err)), "no such "
							    "migration");
	fake_host_free(h);
}

static void test_migrations(void **state)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_MIGRATIONS };
	struct fake_host *h = fake_host_new(names);
	char err[512];

	(void)state;
	assert_string_equal(run(h, &req, err, sizeof(err)), "");
	req.cmd = PROTO_CTL_CANCEL;
	req.id = 3;
	assert_string_equal(run(h, &req, err, sizeof(err)), "no such "
							    "migration");
	assert_int_equal(h->nsent, 0);
	fake_host_free(h);
}

static struct proto_ctl_req migrate(const char *vm, const char *to)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_MIGRATE };

	strcpy(req.vm, vm);
	strcpy(req.to, to);
	req.has = 1u << PROTO_CTL_VM | 1u << PROTO_CTL_TO;
	return req;
}

static void test_migrate_refused(void **state)
{
	struct proto_ctl_req req = migrate("v", "b");
	struct fake_host *h = fake_host_new(names);
	char err[512];

	(void)state;
	/*
	 * The checks across fields are the decoder's (tests/protocol), the
	 * defaults protocol/'s and ferryd.conf's: a request left to its
	 * defaults, or spelling them "" and 0 as an older `ferry` does, goes
	 * on to the start of the migration, which wants a VM not here.
	 */
	assert_non_null(strstr(run(h, &req, err, sizeof(err)), "no VM called "
							       "'v' here"));
	req.has |= 1u << PROTO_CTL_AUTO_CONVERGE |
		   1u << PROTO_CTL_CPU_THROTTLE_INITIAL;
	assert_non_null(strstr(run(h, &req, err, sizeof(err)), "no VM called "
							       "'v' here"));
	req = migrate("v", "x");
	assert_string_equal(run(h, &req, err, sizeof(err)), "no peer called "
							    "'x'");
	h->state[0] = MIG_PEER_UNREACHABLE;
	req = migrate("v", "b");
	assert_string_equal(run(h, &req, err, sizeof(err)), "peer 'b' is "
							    "unreachable");
	req = migrate("v", "c");
	assert_non_null(strstr(run(h, &req, err, sizeof(err)), "no VM called "
							       "'v' here"));
	/* nothing was started, nothing sent */
	assert_int_equal(mig_active(&h->env), 0);
	assert_int_equal(h->nsent, 0);
	fake_host_free(h);
}

static struct proto_ctl_req retarget(uint64_t id, const char *to)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_RETARGET, .id = id };

	strcpy(req.to, to);
	req.has = 1u << PROTO_CTL_ID | 1u << PROTO_CTL_TO;
	return req;
}

/*
 * `ferry migrate` of a running VM: the engine answers at once and
 * registers guest RAM in a thread (a device that pins may take seconds a
 * GiB); the tick sends MIGRATE_PREPARE once it is done. A cancel that
 * comes meanwhile is taken then, and a registration that fails ends the
 * migration; neither tells the peer, which never heard of it.
 */
struct started {
	struct fake_host *h;
	struct fab_domain *fab;
	struct mig *m;
};

static void start_held(struct started *s, int reg_fail)
{
	struct proto_ctl_req req = migrate("v", "b");
	struct fake_fab_counts c;
	struct mig_vm *v;
	char err[512];
	uint64_t end = fy_now_ns() + 10000000000ULL;

	s->h = fake_host_new(names);
	fake_vm_init(64);
	fake_vm.state = KVA_VM_RUNNING;
	s->fab = fake_fab_open();
	assert_non_null(s->fab);
	s->h->env.fab = s->fab;
	s->h->env.vm_ops = &fake_vm_ops;
	v = &s->h->vms[0];
	v->used = true;
	strcpy(v->name, "v");
	assert_int_equal(mig_vm_attach(&s->h->env, "v", 0, &v->kc), 0);
	fake_fab_hold_regs(s->fab, true);
	fake_fab_fail_regs(s->fab, reg_fail);
	/* answered while the registration waits */
	assert_string_equal(run(s->h, &req, err, sizeof(err)), "");
	s->m = v->mig;
	assert_non_null(s->m);
	assert_int_equal(mig_state(s->m), MIG_SRC_NEW);
	do {
		fake_fab_counts(s->fab, &c);
	} while (!c.regs_waiting && fy_now_ns() < end);
	assert_int_equal(c.regs_waiting, 1);
	mig_tick(&s->h->env, fake_clock_get());
	assert_int_equal(mig_state(s->m), MIG_SRC_NEW);
	assert_int_equal(s->h->nsent, 0);
}

/* Let the registration go on; tick until the migration left NEW. */
static void start_go(struct started *s)
{
	uint64_t end = fy_now_ns() + 10000000000ULL;

	fake_fab_hold_regs(s->fab, false);
	while (mig_state(s->m) == MIG_SRC_NEW && fy_now_ns() < end)
		mig_tick(&s->h->env, fake_clock_get());
}

static void start_end(struct started *s)
{
	fake_host_free(s->h);
	fab_domain_close(s->fab);
	fake_vm_fini();
}

static void test_migrate_registers_aside(void **state)
{
	struct started s;

	(void)state;
	start_held(&s, 0);
	start_go(&s);
	assert_int_equal(mig_state(s.m), MIG_SRC_PREPARE);
	assert_int_equal(s.h->nsent, 1);
	assert_int_equal(s.h->sent[0].type, PROTO_MIGRATE_PREPARE);
	assert_int_equal(s.h->sent[0].prepare.regions[0].pages, 64);
	start_end(&s);
}

static void test_migrate_cancelled_registering(void **state)
{
	struct proto_ctl_req req = { .cmd = PROTO_CTL_CANCEL };
	struct fake_fab_counts c;
	struct started s;
	char err[512];

	(void)state;
	start_held(&s, 0);
	req.id = s.m->id;
	req.has = 1u << PROTO_CTL_ID;
	assert_string_equal(run(s.h, &req, err, sizeof(err)), "");
	/* taken once the registration is done */
	assert_int_equal(mig_state(s.m), MIG_SRC_NEW);
	start_go(&s);
	assert_int_equal(mig_state(s.m), MIG_SRC_CANCELLED);
	assert_string_equal(s.m->reason, "cancelled by the user");
	assert_int_equal(s.h->nsent, 0);
	fake_fab_counts(s.fab, &c);
	assert_int_equal(c.mrs, 0);
	assert_null(s.h->vms[0].mig);
	start_end(&s);
}

static void test_migrate_registration_fails(void **state)
{
	struct started s;

	(void)state;
	start_held(&s, -ENOMEM);
	start_go(&s);
	assert_int_equal(mig_state(s.m), MIG_SRC_FAILED);
	assert_non_null(strstr(s.m->reason, "cannot start: Cannot allocate "
					    "memory"));
	assert_int_equal(s.h->nsent, 0);
	start_end(&s);
}

/*
 * retarget looks up the peer, then a migration this node started, and
 * asks the engine only about a running one going elsewhere.
 */
static void test_retarget_lookups(void **state)
{
	struct fake_host *h = fake_host_new(names);
	struct proto_ctl_req req = retarget(3, "x");
	struct mig *in, *out;
	char err[512];

	(void)state;
	assert_string_equal(run(h, &req, err, sizeof(err)), "no peer called "
							    "'x'");
	req = retarget(3, "a");
	assert_string_equal(run(h, &req, err, sizeof(err)), "'a' is this "
							    "node, not a peer");
	req = retarget(3, "c");
	assert_string_equal(run(h, &req, err, sizeof(err)), "no migration 3 "
							    "started here");
	/* an incoming 3: its source is the one to ask */
	in = mig_new(&h->env, false);
	assert_non_null(in);
	in->id = 3;
	in->peer = &h->peers[0];
	assert_string_equal(run(h, &req, err, sizeof(err)), "'b' started "
							    "migration 3, not "
							    "this node");
	/* our own 3, in pre-copy to b */
	out = mig_new(&h->env, true);
	assert_non_null(out);
	out->id = 3;
	out->peer = &h->peers[0];
	strcpy(out->vm, "v");
	out->sm.state = MIG_SRC_PRECOPY;
	req = retarget(3, "b");
	assert_string_equal(run(h, &req, err, sizeof(err)), "migration 3 "
							    "already goes to "
							    "'b'");
	/* to c: the engine answers, and refuses what it cannot do */
	req = retarget(3, "c");
	out->o.delta = true;
	assert_string_equal(run(h, &req, err, sizeof(err)), "retarget of a "
							    "--compress delta "
							    "migration is not "
							    "supported");
	out->o.delta = false;
	out->sm.state = MIG_SRC_SWITCHOVER;
	assert_string_equal(run(h, &req, err, sizeof(err)), "migration 3 is in "
							    "state switchover: "
							    "retarget "
							    "works in pre-copy "
							    "only, before "
							    "switchover");
	out->sm.state = MIG_SRC_FAILED;
	assert_string_equal(run(h, &req, err, sizeof(err)), "migration 3 "
							    "already ended");
	/* nothing was sent to any peer */
	assert_int_equal(h->nsent, 0);
	fake_host_free(h);
}

/* A MIGRATE_PREPARE from peer i for vm (accel), with page size. */
static void prepare(struct fake_host *h, size_t i, uint64_t mig, const char *vm,
		    const char *accel, uint32_t page_size)
{
	struct proto_msg *m = calloc(1, sizeof(*m));
	struct proto_region_desc *r = calloc(1, sizeof(*r));

	assert_non_null(m);
	assert_non_null(r);
	m->type = PROTO_MIGRATE_PREPARE;
	m->prepare.mig = mig;
	strcpy(m->prepare.vm, vm);
	strcpy(m->prepare.mode, "precopy");
	strcpy(m->prepare.accel, accel);
	m->prepare.page_size = page_size;
	m->prepare.vcpus = 1;
	m->prepare.lineage = 1;
	r->pages = 8192;
	m->prepare.regions = r;
	m->prepare.nregions = 1;
	mig_handle(&h->env, &h->peers[i], m);
}

/* The last message sent: an ERROR to peer i with code. */
static const char *refused(struct fake_host *h, size_t i, int code)
{
	const struct proto_msg *e;

	assert_true(h->nsent > 0);
	e = &h->sent[h->nsent - 1];
	assert_int_equal(e->type, PROTO_ERROR);
	assert_ptr_equal(h->sent_to[h->nsent - 1], &h->peers[i]);
	assert_int_equal(e->error.code, code);
	return e->error.text;
}

static void test_prepare_refused(void **state)
{
	struct fake_host *h = fake_host_new(names);

	(void)state;
	prepare(h, 0, 1, "v", "user", 4096);
	assert_non_null(strstr(refused(h, 0, EPERM), "accept_user_vms"));
	h->peers[0].accept_user_vms = true;
	assert_non_null(h->env.ops->vm_add(h, "v"));
	prepare(h, 0, 2, "v", "user", 4096);
	assert_non_null(strstr(refused(h, 0, EEXIST), "a VM called v"));
	prepare(h, 0, 3, "w", "user", 8192);
	assert_string_equal(refused(h, 0, ENOTSUP), "only one region of 4 KiB "
						    "pages");
	/* a burst of 8, then one every 2 s: the rest of this one is refused */
	for (uint64_t id = 4; id <= 8; id++)
		prepare(h, 0, id, "v", "user", 4096);
	assert_non_null(strstr(refused(h, 0, EEXIST), "a VM called v"));
	prepare(h, 0, 9, "v", "user", 4096);
	assert_non_null(strstr(refused(h, 0, EAGAIN), "try again later"));
	/* another peer has its own bucket */
	prepare(h, 1, 1, "v", "user", 4096);
	refused(h, 1, EPERM);
	assert_int_equal(mig_active(&h->env), 0);
	fake_host_free(h);
}

/* READY or RESUME about a migration this node never had: ABORT. */
static void test_unknown_answered(void **state)
{
	static const enum proto_type types[] = { PROTO_READY, PROTO_RESUME };
	struct fake_host *h = fake_host_new(names);

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct proto_msg *m = calloc(1, sizeof(*m));

		assert_non_null(m);
		m->type = types[i];
		m->commit.mig = 40 + i;
		mig_handle(&h->env, &h->peers[1], m);
		assert_int_equal(h->nsent, i + 1);
		assert_int_equal(h->sent[i].type, PROTO_ABORT);
		assert_int_equal(h->sent[i].abort.mig, 40 + i);
		assert_string_equal(h->sent[i].abort.reason, "the migration is "
							     "not known here");
	}
	/* PROGRESS about nothing: dropped, not answered */
	struct proto_msg *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->type = PROTO_PROGRESS;
	p->progress.mig = 7;
	mig_handle(&h->env, &h->peers[1], p);
	assert_int_equal(h->nsent, 2);
	fake_host_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_force_resume_needs_fenced),
		cmocka_unit_test(test_migrations),
		cmocka_unit_test(test_migrate_refused),
		cmocka_unit_test(test_migrate_registers_aside),
		cmocka_unit_test(test_migrate_cancelled_registering),
		cmocka_unit_test(test_migrate_registration_fails),
		cmocka_unit_test(test_retarget_lookups),
		cmocka_unit_test(test_prepare_refused),
		cmocka_unit_test(test_unknown_answered),
	};

	return cmocka_run_group_tests_name("mig-ctl", tests, NULL, NULL);
}
