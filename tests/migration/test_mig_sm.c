// SPDX-License-Identifier: MIT
/*
 * The migration state machines (mig_sm.c): every move of each role's
 * table, legal and illegal, against the list below (written out here a
 * second time, so that a change to the table is a change to this test);
 * no move rewinds the phase; every state can be reached and every
 * running one can end; docs/migration.md prints the tables as they are.
 * Records (mig_record.c) and the words of modes round-trip; the
 * fault points that FERRY_FAULT may name.
 * argv[1]: the source tree; --print: print the tables for the docs.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "migration/mig_dst.h"

static const char *srcdir;

struct move {
	unsigned from, to;
};

#define S(x) MIG_SRC_##x
static const struct move src_moves[] = {
	{ S(NEW), S(PREPARE) },
	{ S(NEW), S(COMMITTED) },
	{ S(NEW), S(PC_SWITCHOVER_LOST) },
	{ S(NEW), S(POSTCOPY_LOST) },
	{ S(NEW), S(COMPLETED) },
	{ S(NEW), S(FAILED) },
	{ S(NEW), S(CANCELLED) }, /* while it registers */
	{ S(PREPARE), S(PREPARE_ASKED) },
	{ S(PREPARE), S(PRECOPY) },
	{ S(PREPARE), S(FAILED) },
	{ S(PREPARE), S(CANCELLED) },
	{ S(PREPARE_ASKED), S(PRECOPY_ASKED) },
	{ S(PREPARE_ASKED), S(FAILED) },
	{ S(PREPARE_ASKED), S(CANCELLED) },
	{ S(PRECOPY), S(PRECOPY_ASKED) },
	{ S(PRECOPY), S(RETARGET) },
	{ S(PRECOPY), S(SWITCHOVER) },
	{ S(PRECOPY), S(PC_SWITCHOVER) },
	{ S(PRECOPY), S(FAILED) },
	{ S(PRECOPY), S(CANCELLED) },
	{ S(PRECOPY_ASKED), S(SWITCHOVER) },
	{ S(PRECOPY_ASKED), S(PC_SWITCHOVER) },
	{ S(PRECOPY_ASKED), S(FAILED) },
	{ S(PRECOPY_ASKED), S(CANCELLED) },
	{ S(RETARGET), S(PRECOPY) },
	{ S(RETARGET), S(FAILED) },
	{ S(RETARGET), S(CANCELLED) },
	{ S(SWITCHOVER), S(COMMITTED) },
	{ S(SWITCHOVER), S(FAILED) },
	{ S(COMMITTED), S(COMPLETED) },
	{ S(COMMITTED), S(FAILED) },
	{ S(PC_SWITCHOVER), S(POSTCOPY) },
	{ S(PC_SWITCHOVER), S(FAILED) },
	{ S(PC_SWITCHOVER_LOST), S(PC_SWITCHOVER) },
	{ S(PC_SWITCHOVER_LOST), S(POSTCOPY_LOST) },
	{ S(PC_SWITCHOVER_LOST), S(FAILED) },
	{ S(POSTCOPY), S(COMPLETED) },
	{ S(POSTCOPY_LOST), S(POSTCOPY) },
	{ S(POSTCOPY_LOST), S(COMPLETED) },
};
#undef S

#define D(x) MIG_DST_##x
static const struct move dst_moves[] = {
	{ D(NEW), D(PREPARE) },		 { D(NEW), D(COMPLETED) },
	{ D(NEW), D(FAILED) },		 { D(NEW), D(FAILED_UNTOLD) },
	{ D(PREPARE), D(PRECOPY) },	 { D(PREPARE), D(FAILED) },
	{ D(PRECOPY), D(SWITCHOVER) },	 { D(PRECOPY), D(PC_SWITCHOVER) },
	{ D(PRECOPY), D(FAILED) },	 { D(SWITCHOVER), D(READY) },
	{ D(SWITCHOVER), D(FAILED) },	 { D(PC_SWITCHOVER), D(POSTCOPY) },
	{ D(PC_SWITCHOVER), D(FAILED) }, { D(READY), D(COMMITTED) },
	{ D(READY), D(FAILED) },	 { D(POSTCOPY), D(COMPLETED) },
	{ D(POSTCOPY), D(FAILED) },	 { D(COMMITTED), D(COMPLETED) },
	{ D(FAILED_UNTOLD), D(FAILED) }, { D(PRECOPY), D(RELAY) },
	{ D(RELAY), D(RELEASED) },	 { D(RELAY), D(FAILED) },
};
#undef D

static bool listed(const struct move *mv, size_t n, unsigned f, unsigned t)
{
	for (size_t i = 0; i < n; i++)
		if (mv[i].from == f && mv[i].to == t)
			return true;
	return false;
}

/* Every pair, out of range too: legal exactly when listed; moves obey. */
static void check_moves(bool source, const struct move *mv, size_t n,
			unsigned nstates)
{
	for (unsigned f = 0; f <= nstates; f++) {
		for (unsigned t = 0; t <= nstates; t++) {
			struct mig_sm sm = { .source = source, .state = f };
			bool ok = listed(mv, n, f, t);

			assert_int_equal(mig_sm_legal(source, f, t), ok);
			assert_int_equal(mig_sm_move(&sm, t), ok ? 0 : -EINVAL);
			assert_int_equal(sm.state, ok ? t : f);
			if (!ok)
				continue;
			/* no rewind: the phase shown never goes back */
			assert_true(mig_sm_phase(source, t) >=
				    mig_sm_phase(source, f));
			assert_string_not_equal(mig_sm_name(source, t), "?");
		}
	}
	assert_string_equal(mig_sm_name(source, nstates), "?");
}

static void test_src_moves(void **state)
{
	(void)state;
	check_moves(true, src_moves, ARRAY_SIZE(src_moves), MIG_SRC_NSTATES);
}

static void test_dst_moves(void **state)
{
	(void)state;
	check_moves(false, dst_moves, ARRAY_SIZE(dst_moves), MIG_DST_NSTATES);
}

/*
 * From NEW every state can be reached; from every state one that ended
 * can (nothing is stuck); an ended state leaves only to another ended one.
 */
static void check_graph(bool source, unsigned nstates)
{
	uint32_t seen = 1, grow;

	do {
		grow = seen;
		for (unsigned f = 0; f < nstates; f++)
			for (unsigned t = 0; t < nstates; t++)
				if ((seen & (1U << f)) &&
				    mig_sm_legal(source, f, t))
					grow |= 1U << t;
		if (grow == seen)
			break;
		seen = grow;
	} while (1);
	assert_int_equal(seen, (1U << nstates) - 1);
	for (unsigned f = 0; f < nstates; f++) {
		bool ends = mig_sm_has(source, f, MIG_SM_END);

		for (unsigned t = 0; t < nstates && !ends; t++)
			ends = mig_sm_legal(source, f, t) &&
			       mig_sm_has(source, t, MIG_SM_END);
		assert_true(ends);
		for (unsigned t = 0; t < nstates; t++)
			if (mig_sm_has(source, f, MIG_SM_END) &&
			    mig_sm_legal(source, f, t))
				assert_true(mig_sm_has(source, t, MIG_SM_END));
	}
}

static void test_graph(void **state)
{
	(void)state;
	check_graph(true, MIG_SRC_NSTATES);
	check_graph(false, MIG_DST_NSTATES);
	/* what the engine relies on */
	assert_true(mig_sm_has(true, MIG_SRC_COMMITTED, MIG_SM_HELD));
	assert_true(mig_sm_has(true, MIG_SRC_POSTCOPY_LOST, MIG_SM_HELD));
	assert_false(mig_sm_has(true, MIG_SRC_PC_SWITCHOVER, MIG_SM_HELD));
	assert_true(mig_sm_has(false, MIG_DST_POSTCOPY, MIG_SM_RUNS));
	assert_false(mig_sm_has(false, MIG_DST_READY, MIG_SM_RUNS));
}

/* The source's answer to message t in state st. */
static enum mig_src_act on(unsigned st, enum proto_type t, bool csums)
{
	const char *why;
	enum mig_src_act a = mig_src_on(st, t, csums, &why);

	/* a reason exactly for what is refused with a log line */
	assert_int_equal(why != NULL, a == MIG_ACT_REFUSE);
	return a;
}

/*
 * The commit window: only READY commits (not while checksums go out);
 * once committed only D's RESUMED or ABORT ends it, READY gets RESUME
 * again, an ERROR changes nothing; post-copy: RESUMED hands the VM over,
 * ABORT is refused once it ran there, COMMIT completes; ended migrations
 * take nothing.
 */
static void test_src_on(void **state)
{
	(void)state;
	assert_int_equal(on(MIG_SRC_SWITCHOVER, PROTO_READY, false),
			 MIG_ACT_COMMIT);
	assert_int_equal(on(MIG_SRC_SWITCHOVER, PROTO_READY, true),
			 MIG_ACT_IGNORE);
	assert_int_equal(on(MIG_SRC_SWITCHOVER, PROTO_COMMIT, false),
			 MIG_ACT_COMMIT);
	assert_int_equal(on(MIG_SRC_PRECOPY, PROTO_READY, false),
			 MIG_ACT_IGNORE);
	assert_int_equal(on(MIG_SRC_PC_SWITCHOVER, PROTO_READY, false),
			 MIG_ACT_IGNORE);
	assert_int_equal(on(MIG_SRC_COMMITTED, PROTO_READY, false),
			 MIG_ACT_RESUME_AGAIN);
	assert_int_equal(on(MIG_SRC_COMMITTED, PROTO_RESUMED, false),
			 MIG_ACT_COMPLETE);
	assert_int_equal(on(MIG_SRC_COMMITTED, PROTO_ABORT, false),
			 MIG_ACT_ABANDON);
	assert_int_equal(on(MIG_SRC_COMMITTED, PROTO_ERROR, false),
			 MIG_ACT_REFUSE);
	assert_int_equal(on(MIG_SRC_COMMITTED, PROTO_COMMIT, false),
			 MIG_ACT_IGNORE);
	assert_int_equal(on(MIG_SRC_COMMITTED, PROTO_PROGRESS, false),
			 MIG_ACT_IGNORE);
	assert_int_equal(on(MIG_SRC_SWITCHOVER, PROTO_RESUMED, false),
			 MIG_ACT_IGNORE);
	for (unsigned st = MIG_SRC_PC_SWITCHOVER; st <= MIG_SRC_POSTCOPY_LOST;
	     st++) {
		bool ran = st >= MIG_SRC_POSTCOPY;

		assert_int_equal(on(st, PROTO_RESUMED, false),
				 ran ? MIG_ACT_IGNORE : MIG_ACT_RUNS_THERE);
		assert_int_equal(on(st, PROTO_ABORT, false),
				 ran ? MIG_ACT_REFUSE : MIG_ACT_ABANDON);
		assert_int_equal(on(st, PROTO_COMMIT, false),
				 ran ? MIG_ACT_COMPLETE : MIG_ACT_IGNORE);
		assert_int_equal(on(st, PROTO_ERROR, false), MIG_ACT_FAIL);
		assert_int_equal(on(st, PROTO_PROGRESS, false),
				 MIG_ACT_PROGRESS);
	}
	/* before the commit: ABORT and ERROR end it, the VM stays here */
	for (unsigned st = MIG_SRC_PREPARE; st <= MIG_SRC_SWITCHOVER; st++) {
		assert_int_equal(on(st, PROTO_ABORT, false), MIG_ACT_ABANDON);
		assert_int_equal(on(st, PROTO_ERROR, false), MIG_ACT_FAIL);
		assert_int_equal(on(st, PROTO_HOLDER_MAP, false),
				 st <= MIG_SRC_PREPARE_ASKED ? MIG_ACT_START
				 : st == MIG_SRC_RETARGET ? MIG_ACT_RETARGETED
							  : MIG_ACT_IGNORE);
	}
	for (unsigned st = MIG_SRC_COMPLETED; st <= MIG_SRC_CANCELLED; st++)
		for (unsigned t = PROTO_HELLO; t <= PROTO_TYPE_LAST; t++)
			assert_int_equal(on(st, t, false), MIG_ACT_IGNORE);
	assert_int_equal(on(MIG_SRC_PRECOPY, PROTO_DIRTY_SET, false),
			 MIG_ACT_REFUSE);
}

/* The text between "<!-- states:NAME -->" and the next "<!-- /states -->". */
static char *docs_table(const char *doc, const char *name)
{
	char open[64];
	const char *a, *b;

	snprintf(open, sizeof(open), "<!-- states:%s -->\n", name);
	a = strstr(doc, open);
	assert_non_null(a);
	a += strlen(open);
	b = strstr(a, "<!-- /states -->");
	assert_non_null(b);
	return strndup(a, b - a);
}

static void check_docs(const char *doc, bool source)
{
	char *want = NULL, *got;
	size_t len = 0;
	FILE *f = open_memstream(&want, &len);

	assert_non_null(f);
	mig_sm_print(f, source);
	fclose(f);
	got = docs_table(doc, source ? "source" : "destination");
	if (strcmp(got, want))
		fprintf(stderr, "docs/migration.md should show:\n%s", want);
	assert_string_equal(got, want);
	free(got);
	free(want);
}

/* docs/migration.md and docs/architecture.md show both tables. */
static void test_docs(void **state)
{
	static const char *const docs[] = { "migration", "architecture" };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(docs); i++) {
		char path[4096], *doc = calloc(1, 1 << 20);
		size_t len;
		FILE *f;

		snprintf(path, sizeof(path), "%s/docs/%s.md", srcdir, docs[i]);
		f = fopen(path, "r");
		assert_non_null(f);
		assert_non_null(doc);
		len = fread(doc, 1, (1 << 20) - 1, f);
		fclose(f);
		assert_true(len > 0);
		check_docs(doc, true);
		check_docs(doc, false);
		free(doc);
	}
}

static void test_records(void **state)
{
	char dir[] = "/tmp/ferry-test-records.XXXXXX";
	struct mig_env n = { 0 };
	struct mig_record r = { 0 }, back;
	char name[MIG_RECORD_NAME_MAX];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(n.mig_dir, sizeof(n.mig_dir), "%s", dir);
	n.mig_dir_fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(n.mig_dir_fd >= 0);

	r.id = 42;
	r.source = false;
	strcpy(r.vm, "web-1");
	strcpy(r.peer, "b");
	r.phase = MIG_SWITCHOVER;
	r.postcopy = true;
	r.started = 1767225600;
	r.mode = PROTO_MODE_HYBRID;
	strcpy(r.reason, "the source aborted: x=y");
	mig_record_put(&n, &r);
	mig_record_name(&r, name, sizeof(name));
	assert_string_equal(name, "b-42.dst");
	assert_int_equal(mig_record_get(&n, name, &back), 0);
	assert_int_equal(back.id, 42);
	assert_false(back.source);
	assert_string_equal(back.vm, "web-1");
	assert_string_equal(back.peer, "b");
	assert_int_equal(back.phase, MIG_SWITCHOVER);
	assert_true(back.known);
	assert_true(back.postcopy);
	assert_int_equal(back.started, 1767225600);
	assert_int_equal(back.mode, PROTO_MODE_HYBRID);
	assert_string_equal(back.reason, r.reason);

	/* a source's, written over: the newest wins */
	r.source = true;
	r.phase = MIG_COMMITTED;
	r.postcopy = false;
	mig_record_put(&n, &r);
	r.phase = MIG_COMPLETED;
	mig_record_put(&n, &r);
	assert_int_equal(mig_record_get(&n, "42.src", &back), 0);
	assert_true(back.source);
	assert_int_equal(back.phase, MIG_COMPLETED);
	assert_false(back.postcopy);
	assert_int_equal(back.nrelays, 0);

	/* a source's relays, in order; beyond MIG_RELAYS_MAX not read */
	r.nrelays = 2;
	strcpy(r.relays[0], "c");
	strcpy(r.relays[1], "d");
	mig_record_put(&n, &r);
	assert_int_equal(mig_record_get(&n, "42.src", &back), 0);
	assert_int_equal(back.nrelays, 2);
	assert_string_equal(back.relays[0], "c");
	assert_string_equal(back.relays[1], "d");
	fd = openat(n.mig_dir_fd, "8.src", O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	for (int i = 0; i < MIG_RELAYS_MAX + 2; i++)
		dprintf(fd, "relay=r%d\n", i);
	close(fd);
	assert_int_equal(mig_record_get(&n, "8.src", &back), 0);
	assert_int_equal(back.nrelays, MIG_RELAYS_MAX);
	assert_string_equal(back.relays[MIG_RELAYS_MAX - 1], "r3");
	unlinkat(n.mig_dir_fd, "8.src", 0);

	/* not ours: an unknown phase and mode, a line far too long */
	fd = openat(n.mig_dir_fd, "7.src", O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	dprintf(fd, "id=7\nphase=flying\nmode=warp\nvm=%01000d\n", 0);
	close(fd);
	assert_int_equal(mig_record_get(&n, "7.src", &back), 0);
	assert_false(back.known);
	assert_int_equal(back.mode, PROTO_MODE_PRECOPY);
	assert_int_equal(strlen(back.vm), PROTO_NAME_MAX);
	assert_int_equal(mig_record_get(&n, "nope.src", &back), -ENOENT);

	unlinkat(n.mig_dir_fd, "b-42.dst", 0);
	unlinkat(n.mig_dir_fd, "42.src", 0);
	unlinkat(n.mig_dir_fd, "7.src", 0);
	close(n.mig_dir_fd);
	assert_int_equal(rmdir(dir), 0);
}

static void test_words(void **state)
{
	(void)state;
	for (int m = PROTO_MODE_PRECOPY; m <= PROTO_MODE_HYBRID; m++)
		assert_int_equal(proto_mode_parse(proto_mode_name(m)), m);
	assert_int_equal(proto_mode_parse("Precopy"), -EINVAL);
	assert_int_equal(proto_mode_parse(""), -EINVAL);
	assert_string_equal(proto_mode_name(9), "?");
	for (int c = PROTO_CONVERGE_DOWNTIME; c <= PROTO_CONVERGE_NONE; c++)
		assert_int_equal(proto_converge_parse(proto_converge_name(c)),
				 c);
	assert_int_equal(proto_converge_parse("off"), PROTO_CONVERGE_NONE);
	assert_int_equal(proto_converge_parse("fast"), -EINVAL);
	for (int p = MIG_PREPARE; p <= MIG_CANCELLED; p++)
		assert_int_equal(mig_phase_parse(mig_phase_name(p)), p);
	assert_int_equal(mig_phase_parse("new"), -EINVAL);
}

/* The points FERRY_FAULT may name (ferryd refuses any other). */
static void test_fault_points(void **state)
{
	static const char *const yes[] = {
		"src:before:committed", "src:after:pc-switchover",
		"dst:after:ready",	"dst:before:postcopy",
		"dst:spawned",		"dst:retarget",
		"dst:round:0",		"dst:round:2",
		"dst:round:123456789",
	};
	static const char *const no[] = {
		"src:before:ready", "dst:after:prepare+asked",
		"dst:during:ready", "src:spawned",
		"dst:spawned:x",    "dst:round:",
		"dst:round:02",	    "dst:round:2x",
		"dst:round:-1",	    "dst:round:1234567890",
		"src:round:2",	    "",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (!mig_fault_known(yes[i]))
			fail_msg("%s refused", yes[i]);
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		if (mig_fault_known(no[i]))
			fail_msg("%s taken", no[i]);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_src_moves),
		cmocka_unit_test(test_dst_moves),
		cmocka_unit_test(test_graph),
		cmocka_unit_test(test_src_on),
		cmocka_unit_test(test_docs),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_words),
		cmocka_unit_test(test_fault_points),
	};

	srcdir = argc > 1 ? argv[1] : ".";
	if (!strcmp(srcdir, "--print")) {
		printf("The source:\n\n");
		mig_sm_print(stdout, true);
		printf("\nThe destination:\n\n");
		mig_sm_print(stdout, false);
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
