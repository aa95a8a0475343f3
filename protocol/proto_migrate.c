// SPDX-License-Identifier: MIT
/*
 * The migration messages. S is the source, D the destination, R a relay
 * (any other holder of a copy); m is the migration id, chosen by S, never
 * 0 and never reused. Every transfer is a pull: these messages only say
 * what exists and where; pages move by one-sided reads.
 *
 *   S sends MIGRATE_PREPARE(m, vm, mo, ps, c, r[{i, n}]): the manifest:
 *     VM name, mode, page size, vCPUs, and each region's id and pages;
 *   D allocates and registers guest RAM, then answers with its own
 *     HOLDER_MAP (no generation runs yet: it holds nothing), which is its
 *     "yes"; an ERROR(m) is its "no";
 *   S sends HOLDER_MAP(m, id, a, ps, r[{i, k, b, l, g, kr}]): where its
 *     copy lives (fabric address, memory key, base, length of each region),
 *     the generation of each page as runs (start, len, gen), and the pages
 *     registered as runs (start, len, key, base): where registering pins,
 *     only those peers may read, and S sends HOLDER_MAP again, before the
 *     DIRTY_SET that names them, when more are registered; every relay R
 *     that holds a copy sends D its HOLDER_MAP too. D now pulls every page
 *     p whose generation it lacks from any holder with gen >= ver[p];
 *   rounds: S harvests the dirty log and bumps the generation to g, then
 *     sends DIRTY_SET(m, g, rg, r) per region with dirtied pages: these
 *     pages are now at generation g (a set with no runs is allowed);
 *     D pulls them and after each round sends PROGRESS(m, rd, pg, pt, b):
 *     round, pages valid, pages in total, bytes pulled so far; S decides
 *     from it whether another round still converges;
 *   S pauses the VM, harvests a last time, sends the last DIRTY_SETs and
 *     SWITCHOVER(m, g): g is the final generation, nothing changes after;
 *   S sends STATE(m, d): the vCPU and device state, an opaque blob;
 *   D, once it holds every page at its final generation, loads it into its
 *     paused VM and sends READY(m, g) (again every 500 ms until answered);
 *   S decides: it records the commit, then sends RESUME(m, g), and its VM
 *     never runs again unless D answers ABORT; D resumes the VM only on
 *     RESUME, then sends RESUMED(m, g); S frees its copy only then. S is
 *     the one side that decides, so a lost message or a dead peer leaves
 *     the VM paused (to be resolved when the peer answers), never running
 *     twice: before its commit S may resume its own VM at any time.
 *   RESUME and READY about a migration that ended are answered from the
 *     outcome: RESUMED or RESUME if it completed, ABORT if not.
 *
 *   With verification asked for, S sends after its last harvest (VM
 *     paused) VERIFY(m, rg, s, c) messages: the xxh3-64 checksum of every
 *     page from s on, 8 bytes each; D compares them with its own copy once
 *     it pulled the last pages, and answers a mismatch with ABORT.
 *   With delta compression, S sends a round's dirty pages as
 *     DELTA_SET(m, g, rg, k, b, l, n) instead of a DIRTY_SET: their new
 *     contents, encoded page by page against the copy D already holds, lie
 *     in S's registered buffer [b, b + l) under key k; D pulls the buffer
 *     and applies it.
 *   Post-copy: instead of SWITCHOVER, S sends POSTCOPY(m, g) before the
 *     last DIRTY_SETs (VM paused), then STATE: D resumes the VM at once
 *     with what it holds, fetches the rest on demand (faults) and in the
 *     background, sends RESUMED(m, g) once the VM runs, PC_STATS(m, ...)
 *     while pages arrive and COMMIT(m, g) once it holds every page. From
 *     RESUMED on the VM lives on D: S keeps its copy registered (also
 *     across a restart of its ferryd, HOLDER_MAP again) until COMMIT.
 *     KEPT(m, g), after RESUMED, says S keeps that copy after COMMIT too
 *     (holder_retention): D remembers it with the VM.
 *
 *   ABORT(m, tx), from S or D before RESUME (post-copy: before RESUMED),
 *     ends the migration: the VM keeps or gets back running on S, D frees
 *     its copy.
 *   RETARGET(m, id), from S to D, names a new destination: D stops pulling,
 *     becomes a relay (registers its copy) and answers with its HOLDER_MAP;
 *     S sends the new destination MIGRATE_PREPARE, then its own HOLDER_MAP
 *     and the relay's (less what changed since), and the new destination
 *     pulls from both. S's ABORT to the relay releases it.
 *
 * Runs travel as flat arrays of unsigned integers, [start, len, ...] for a
 * DIRTY_SET and [start, len, gen, ...] for a HOLDER_MAP region: sorted,
 * disjoint, non-empty; HOLDER_MAP runs stay inside their region (the region
 * id of a DIRTY_SET is checked by the receiver against its manifest, so
 * here its runs are only kept below PROTO_PAGES_MAX).
 */
#include <stdint.h>
#include <string.h>

#include "common/util.h"
#include "protocol/protocol_int.h"

/* Runs are decoded straight into these structs as flat uint64_t arrays. */
_Static_assert(sizeof(struct fy_run) == 2 * sizeof(uint64_t), "fy_run");
_Static_assert(sizeof(struct proto_genrun) == 3 * sizeof(uint64_t), "genrun");
_Static_assert(sizeof(struct proto_keyrun) == 4 * sizeof(uint64_t), "keyrun");

static bool is_page_size(uint64_t ps)
{
	return ps >= PROTO_PAGE_SIZE_MIN && ps <= PROTO_PAGE_SIZE_MAX &&
	       !(ps & (ps - 1));
}

/*
 * Check nr runs of `width` uint64_t each (start, len, ...): non-empty,
 * sorted, disjoint (adjacent is fine), and ending at or below limit. The
 * path names the array.
 */
static int check_runs(struct proto_ctx *c, const uint64_t *runs, size_t nr,
		      unsigned width, uint64_t limit)
{
	enum { OK, EMPTY, UNSORTED, OVERLAP, PAST } bad = OK;
	unsigned long long start = 0, len = 0, prev = 0, next = 0;
	size_t i, old;
	int rc;

	for (i = 0; i < nr; i++) {
		start = runs[i * width];
		len = runs[i * width + 1];
		if (!len)
			bad = EMPTY;
		else if (i && start < prev)
			bad = UNSORTED;
		else if (i && start < next)
			bad = OVERLAP;
		else if (len > limit || start > limit - len)
			bad = PAST;
		if (bad)
			break;
		prev = start;
		next = start + len;
	}
	if (!bad)
		return 0;
	/* name the run only now: this loop may see a million of them */
	old = proto_path_push(c, "[%zu]", i);
	switch (bad) {
	case EMPTY:
		rc = proto_fail(c, "empty run at %llu", start);
		break;
	case UNSORTED:
		rc = proto_fail(c, "run at %llu comes after one at %llu", start,
				prev);
		break;
	case OVERLAP:
		rc = proto_fail(c,
				"run at %llu overlaps the previous one, which "
				"ends at %llu",
				start, next);
		break;
	default:
		rc = proto_fail(c, "run %llu+%llu ends past page %llu", start,
				len, (unsigned long long)limit);
	}
	proto_path_pop(c, old);
	return rc;
}

static int page_size_check(struct proto_ctx *c, uint32_t ps)
{
	if (!is_page_size(ps))
		return proto_fail_in(c, ".ps",
				     "page size %u is not a power of two", ps);
	return 0;
}

/* Region ids name regions across messages: one id, one region. */
static int region_id_check(struct proto_ctx *c, size_t i, uint32_t id,
			   const void *regions, size_t size)
{
	size_t j;

	for (j = 0; j < i; j++)
		if (*(const uint32_t *)((const char *)regions + j * size) == id)
			return proto_fail_in(c, ".i", "region id %u twice", id);
	return 0;
}

static int holder_region_check(struct proto_ctx *c,
			       const struct proto_holder_map *h, size_t i)
{
	const struct proto_holder_region *r = &h->regions[i];
	size_t old;
	int rc;

	rc = region_id_check(c, i, r->id, h->regions, sizeof(*r));
	if (rc)
		return rc;
	if (r->len % h->page_size)
		return proto_fail_in(c, ".l",
				     "%llu bytes, not a multiple of the page "
				     "size",
				     (unsigned long long)r->len);
	if (r->base > UINT64_MAX - r->len)
		return proto_fail_in(c, ".b", "region wraps around");
	old = proto_path_push(c, ".g");
	rc = check_runs(c, (const uint64_t *)r->gens, r->ngens, 3,
			r->len / h->page_size);
	proto_path_pop(c, old);
	if (rc)
		return rc;
	old = proto_path_push(c, ".kr");
	rc = check_runs(c, (const uint64_t *)r->keys, r->nkeys, 4,
			r->len / h->page_size);
	proto_path_pop(c, old);
	return rc;
}

static int holder_map_check(struct proto_ctx *c, const void *s)
{
	const struct proto_holder_map *h = s;
	size_t i, old;
	int rc;

	rc = page_size_check(c, h->page_size);
	for (i = 0; !rc && i < h->nregions; i++) {
		old = proto_path_push(c, ".r[%zu]", i);
		rc = holder_region_check(c, h, i);
		proto_path_pop(c, old);
	}
	return rc;
}

static const struct proto_field holder_region_fields[] = {
	PF_U32("i", struct proto_holder_region, id, 0, UINT32_MAX),
	PF_U64("k", struct proto_holder_region, key, 0, UINT64_MAX),
	PF_U64("b", struct proto_holder_region, base, 0, UINT64_MAX),
	PF_U64("l", struct proto_holder_region, len, 1, PROTO_REGION_BYTES_MAX),
	PF_RUNS("g", struct proto_holder_region, gens, ngens, 3, 0,
		PROTO_RUNS_MAX),
	/* since issue 18, only from a holder whose registrations pin */
	PF_RUNS_OPT("kr", struct proto_holder_region, keys, nkeys, 4, 0,
		    PROTO_RUNS_MAX),
};

static const struct proto_desc holder_region_desc = {
	.name = "region",
	.size = sizeof(struct proto_holder_region),
	.fields = holder_region_fields,
	.nfields = ARRAY_SIZE(holder_region_fields),
};

static const struct proto_field holder_map_fields[] = {
	PF_U64("m", struct proto_holder_map, mig, 1, UINT64_MAX),
	PF_STR("id", struct proto_holder_map, node, 1, PC_ID),
	PF_BIN("a", struct proto_holder_map, addr, addr_len, 1),
	PF_U32("ps", struct proto_holder_map, page_size, PROTO_PAGE_SIZE_MIN,
	       PROTO_PAGE_SIZE_MAX),
	PF_MAPS("r", struct proto_holder_map, regions, nregions, 0,
		PROTO_REGIONS_MAX, &holder_region_desc),
};

const struct proto_desc proto_holder_map_desc = {
	.name = "HOLDER_MAP",
	.dir = PROTO_TO_EITHER,
	.size = sizeof(struct proto_holder_map),
	.fields = holder_map_fields,
	.nfields = ARRAY_SIZE(holder_map_fields),
	.check = holder_map_check,
};

static int prepare_check(struct proto_ctx *c, const void *s)
{
	static const char *const accels[] = { "kvm", "user" };
	const struct proto_migrate_prepare *p = s;
	const struct proto_region_desc *r;
	size_t i, old;
	int rc;

	if (proto_mode_parse(p->mode) < 0)
		return proto_fail_in(c, ".mo",
				     "mode \"%s\" is not precopy, postcopy or "
				     "hybrid",
				     p->mode);
	for (i = 0; i < ARRAY_SIZE(accels); i++)
		if (!strcmp(p->accel, accels[i]))
			break;
	if (i == ARRAY_SIZE(accels))
		return proto_fail_in(c, ".ac",
				     "accelerator \"%s\" is not kvm or user",
				     p->accel);
	rc = page_size_check(c, p->page_size);
	for (i = 0; !rc && i < p->nregions; i++) {
		r = &p->regions[i];
		old = proto_path_push(c, ".r[%zu]", i);
		rc = region_id_check(c, i, r->id, p->regions, sizeof(*r));
		/* the region's bytes, not only its pages, have a limit */
		if (!rc && r->pages > PROTO_REGION_BYTES_MAX / p->page_size)
			rc = proto_fail_in(
				c, ".n",
				"%llu pages of %u bytes, more than %llu bytes",
				(unsigned long long)r->pages, p->page_size,
				(unsigned long long)PROTO_REGION_BYTES_MAX);
		proto_path_pop(c, old);
	}
	return rc;
}

static const struct proto_field region_desc_fields[] = {
	PF_U32("i", struct proto_region_desc, id, 0, UINT32_MAX),
	PF_U64("n", struct proto_region_desc, pages, 1, PROTO_PAGES_MAX),
};

static const struct proto_desc region_desc_desc = {
	.name = "region",
	.size = sizeof(struct proto_region_desc),
	.fields = region_desc_fields,
	.nfields = ARRAY_SIZE(region_desc_fields),
};

static const struct proto_field prepare_fields[] = {
	PF_U64("m", struct proto_migrate_prepare, mig, 1, UINT64_MAX),
	PF_STR("vm", struct proto_migrate_prepare, vm, 1, PC_ID),
	PF_STR("mo", struct proto_migrate_prepare, mode, 1, PC_NAME),
	PF_U32("ps", struct proto_migrate_prepare, page_size,
	       PROTO_PAGE_SIZE_MIN, PROTO_PAGE_SIZE_MAX),
	PF_U32("c", struct proto_migrate_prepare, vcpus, 1, PROTO_VCPUS_MAX),
	PF_STR("ac", struct proto_migrate_prepare, accel, 1, PC_NAME),
	PF_U64("ln", struct proto_migrate_prepare, lineage, 1, UINT64_MAX),
	PF_MAPS("r", struct proto_migrate_prepare, regions, nregions, 1,
		PROTO_REGIONS_MAX, &region_desc_desc),
};

const struct proto_desc proto_prepare_desc = {
	.name = "MIGRATE_PREPARE",
	.dir = PROTO_TO_DEST,
	.size = sizeof(struct proto_migrate_prepare),
	.fields = prepare_fields,
	.nfields = ARRAY_SIZE(prepare_fields),
	.check = prepare_check,
};

static int dirty_check(struct proto_ctx *c, const void *s)
{
	const struct proto_dirty_set *d = s;
	size_t old = proto_path_push(c, ".r");
	int rc;

	rc = check_runs(c, (const uint64_t *)d->runs, d->nruns, 2,
			PROTO_PAGES_MAX);
	proto_path_pop(c, old);
	return rc;
}

static const struct proto_field dirty_fields[] = {
	PF_U64("m", struct proto_dirty_set, mig, 1, UINT64_MAX),
	PF_U64("g", struct proto_dirty_set, gen, 0, UINT64_MAX),
	PF_U32("rg", struct proto_dirty_set, region, 0, UINT32_MAX),
	PF_RUNS("r", struct proto_dirty_set, runs, nruns, 2, 0, PROTO_RUNS_MAX),
};

const struct proto_desc proto_dirty_desc = {
	.name = "DIRTY_SET",
	.dir = PROTO_TO_DEST,
	.size = sizeof(struct proto_dirty_set),
	.fields = dirty_fields,
	.nfields = ARRAY_SIZE(dirty_fields),
	.check = dirty_check,
};

static int progress_check(struct proto_ctx *c, const void *s)
{
	const struct proto_progress *p = s;

	if (p->pages_valid > p->pages_total)
		return proto_fail_in(c, ".pg", "%llu valid pages of %llu",
				     (unsigned long long)p->pages_valid,
				     (unsigned long long)p->pages_total);
	for (size_t i = 1; i < p->nholders; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(p->holders[i].node, p->holders[j].node))
				return proto_fail_in(c, ".h", "holder %s twice",
						     p->holders[i].node);
	return 0;
}

static const struct proto_field holder_bytes_fields[] = {
	PF_STR("id", struct proto_holder_bytes, node, 1, PC_ID),
	PF_U64("b", struct proto_holder_bytes, bytes, 0, UINT64_MAX),
};

static const struct proto_desc holder_bytes_desc = {
	.name = "holder",
	.size = sizeof(struct proto_holder_bytes),
	.fields = holder_bytes_fields,
	.nfields = ARRAY_SIZE(holder_bytes_fields),
};

static const struct proto_field progress_fields[] = {
	PF_U64("m", struct proto_progress, mig, 1, UINT64_MAX),
	PF_U32("rd", struct proto_progress, round, 0, UINT32_MAX),
	PF_U64("pg", struct proto_progress, pages_valid, 0,
	       PROTO_REGIONS_MAX *PROTO_PAGES_MAX),
	PF_U64("pt", struct proto_progress, pages_total, 0,
	       PROTO_REGIONS_MAX *PROTO_PAGES_MAX),
	PF_U64("b", struct proto_progress, bytes, 0, UINT64_MAX),
	PF_MAPS("h", struct proto_progress, holders, nholders, 0,
		PROTO_HOLDERS_MAX, &holder_bytes_desc),
};

const struct proto_desc proto_progress_desc = {
	.name = "PROGRESS",
	.dir = PROTO_TO_SOURCE,
	.size = sizeof(struct proto_progress),
	.fields = progress_fields,
	.nfields = ARRAY_SIZE(progress_fields),
	.check = progress_check,
};

static const struct proto_field state_fields[] = {
	PF_U64("m", struct proto_state, mig, 1, UINT64_MAX),
	PF_BLOB("d", struct proto_state, blob, len, 0, PROTO_STATE_MAX),
};

const struct proto_desc proto_state_desc = {
	.name = "STATE",
	.dir = PROTO_TO_DEST,
	.size = sizeof(struct proto_state),
	.fields = state_fields,
	.nfields = ARRAY_SIZE(state_fields),
};

static const struct proto_field mig_gen_fields[] = {
	PF_U64("m", struct proto_mig_gen, mig, 1, UINT64_MAX),
	PF_U64("g", struct proto_mig_gen, gen, 0, UINT64_MAX),
};

/* The messages that carry a migration and a generation only. */
#define MIG_GEN_DESC(var, nm, to)                      \
	const struct proto_desc var = {                \
		.name = nm,                            \
		.dir = to,                             \
		.size = sizeof(struct proto_mig_gen),  \
		.fields = mig_gen_fields,              \
		.nfields = ARRAY_SIZE(mig_gen_fields), \
	}

MIG_GEN_DESC(proto_switchover_desc, "SWITCHOVER", PROTO_TO_DEST);
MIG_GEN_DESC(proto_commit_desc, "COMMIT", PROTO_TO_SOURCE);
MIG_GEN_DESC(proto_resumed_desc, "RESUMED", PROTO_TO_SOURCE);
MIG_GEN_DESC(proto_postcopy_desc, "POSTCOPY", PROTO_TO_DEST);
MIG_GEN_DESC(proto_ready_desc, "READY", PROTO_TO_SOURCE);
MIG_GEN_DESC(proto_resume_desc, "RESUME", PROTO_TO_DEST);
MIG_GEN_DESC(proto_kept_desc, "KEPT", PROTO_TO_DEST);

static const struct proto_field abort_fields[] = {
	PF_U64("m", struct proto_abort, mig, 1, UINT64_MAX),
	PF_STR("tx", struct proto_abort, reason, 0, PC_TEXT),
};

const struct proto_desc proto_abort_desc = {
	.name = "ABORT",
	.dir = PROTO_TO_EITHER,
	.size = sizeof(struct proto_abort),
	.fields = abort_fields,
	.nfields = ARRAY_SIZE(abort_fields),
};

static const struct proto_field retarget_fields[] = {
	PF_U64("m", struct proto_retarget, mig, 1, UINT64_MAX),
	PF_STR("id", struct proto_retarget, node, 1, PC_ID),
};

const struct proto_desc proto_retarget_desc = {
	.name = "RETARGET",
	.dir = PROTO_TO_DEST,
	.size = sizeof(struct proto_retarget),
	.fields = retarget_fields,
	.nfields = ARRAY_SIZE(retarget_fields),
};

static int verify_check(struct proto_ctx *c, const void *s)
{
	const struct proto_verify *v = s;

	if (v->len % 8)
		return proto_fail_in(c, ".c", "%zu bytes, not 8 per page",
				     v->len);
	if (v->start > PROTO_PAGES_MAX - v->len / 8)
		return proto_fail_in(c, ".s", "pages end past page %llu",
				     (unsigned long long)PROTO_PAGES_MAX);
	return 0;
}

static const struct proto_field verify_fields[] = {
	PF_U64("m", struct proto_verify, mig, 1, UINT64_MAX),
	PF_U32("rg", struct proto_verify, region, 0, UINT32_MAX),
	PF_U64("s", struct proto_verify, start, 0, PROTO_PAGES_MAX),
	PF_BLOB("c", struct proto_verify, csums, len, 8,
		8ULL * PROTO_CSUMS_MAX),
};

const struct proto_desc proto_verify_desc = {
	.name = "VERIFY",
	.dir = PROTO_TO_DEST,
	.size = sizeof(struct proto_verify),
	.fields = verify_fields,
	.nfields = ARRAY_SIZE(verify_fields),
	.check = verify_check,
};

static int delta_check(struct proto_ctx *c, const void *s)
{
	const struct proto_delta_set *d = s;

	if (d->base > UINT64_MAX - d->len)
		return proto_fail_in(c, ".b", "buffer wraps around");
	/* every page takes a 16-byte record header at least */
	if (d->len < 16 * d->pages)
		return proto_fail_in(c, ".l",
				     "%llu bytes cannot hold %llu pages",
				     (unsigned long long)d->len,
				     (unsigned long long)d->pages);
	return 0;
}

static const struct proto_field delta_fields[] = {
	PF_U64("m", struct proto_delta_set, mig, 1, UINT64_MAX),
	PF_U64("g", struct proto_delta_set, gen, 0, UINT64_MAX),
	PF_U32("rg", struct proto_delta_set, region, 0, UINT32_MAX),
	PF_U64("k", struct proto_delta_set, key, 0, UINT64_MAX),
	PF_U64("b", struct proto_delta_set, base, 0, UINT64_MAX),
	PF_U64("l", struct proto_delta_set, len, 16, PROTO_DELTA_MAX),
	PF_U64("n", struct proto_delta_set, pages, 1, PROTO_PAGES_MAX),
};

const struct proto_desc proto_delta_desc = {
	.name = "DELTA_SET",
	.dir = PROTO_TO_DEST,
	.size = sizeof(struct proto_delta_set),
	.fields = delta_fields,
	.nfields = ARRAY_SIZE(delta_fields),
	.check = delta_check,
};

static const struct proto_field pc_stats_fields[] = {
	PF_U64("m", struct proto_pc_stats, mig, 1, UINT64_MAX),
	PF_U64("f", struct proto_pc_stats, faults, 0, UINT64_MAX),
	PF_U64("p50", struct proto_pc_stats, p50, 0, UINT64_MAX),
	PF_U64("p99", struct proto_pc_stats, p99, 0, UINT64_MAX),
	PF_U64("mx", struct proto_pc_stats, max, 0, UINT64_MAX),
	PF_U64("bt", struct proto_pc_stats, blocktime, 0, UINT64_MAX),
	PF_U64("pp", struct proto_pc_stats, prepaged, 0, UINT64_MAX),
	PF_U64("z", struct proto_pc_stats, zero_pages, 0, UINT64_MAX),
	PF_U64("st", struct proto_pc_stats, stalls, 0, UINT64_MAX),
	PF_U64("sn", struct proto_pc_stats, stall_ns, 0, UINT64_MAX),
	PF_U64("d", struct proto_pc_stats, duration, 0, UINT64_MAX),
	PF_U64("sd", struct proto_pc_stats, stalled, 0, 1),
};

const struct proto_desc proto_pc_stats_desc = {
	.name = "PC_STATS",
	.dir = PROTO_TO_SOURCE,
	.size = sizeof(struct proto_pc_stats),
	.fields = pc_stats_fields,
	.nfields = ARRAY_SIZE(pc_stats_fields),
};
