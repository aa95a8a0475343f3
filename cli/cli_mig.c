// SPDX-License-Identifier: MIT
/*
 * The CLI's rendering of VMs, migrations and a VM's holders. ferryd
 * answers with msgpack maps (node/nd_vm.c, migration/mig_ctl.c, and for
 * holders and release the engine's contracts in migration/migration.h);
 * `--json` prints them unchanged, and these functions render the very
 * same maps for humans.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "cli/cli.h"
#include "protocol/protocol.h"

void cli_print_vms(FILE *f, const msgpack_object *r)
{
	const msgpack_object *vms = proto_mp_get(r, "vms");
	uint32_t n = 0;

	if (vms && vms->type == MSGPACK_OBJECT_ARRAY)
		n = vms->via.array.size;
	fprintf(f, "%-16s  %-9s  %5s  %-8s  %-5s  %-8s  %10s  %8s  %8s  %s\n",
		"NAME", "MEMORY", "VCPUS", "GUEST", "ACCEL", "STATE", "WRITES",
		"PASS", "CHECKS", "MIGRATION");
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *v = &vms->via.array.ptr[i];
		char name[PROTO_NAME_MAX + 1], guest[32], st[32], mem[32],
			mig[32];
		char accel[8];
		int64_t id = proto_mp_int(v, "migration", 0);

		snprintf(mig, sizeof(mig), id ? "%" PRId64 : "-", id);
		fprintf(f,
			"%-16s  %-9s  %5" PRId64 "  %-8s  %-5s  %-8s  "
			"%10" PRId64 "  %8" PRId64 "  %8" PRId64 "  %s\n",
			proto_mp_str(v, "name", name, sizeof(name)),
			fy_fmt_bytes(proto_mp_int(v, "memory_bytes", 0), mem,
				     sizeof(mem)),
			proto_mp_int(v, "vcpus", 0),
			proto_mp_str(v, "guest", guest, sizeof(guest))[0]
				? guest
				: "-",
			proto_mp_str(v, "accel", accel, sizeof(accel))[0]
				? accel
				: "-",
			proto_mp_str(v, "state", st, sizeof(st)),
			proto_mp_int(v, "writes", 0),
			proto_mp_int(v, "pass", 0),
			proto_mp_int(v, "checks", 0), mig);
	}
}

/* A migration's id as the CLI takes it: "7" started here, "a/7" by a. */
static void mig_id(char *buf, size_t len, const msgpack_object *m)
{
	char role[16], peer[PROTO_NAME_MAX + 1];

	/* ids are the source's: one it started here is plain */
	if (!strcmp(proto_mp_str(m, "role", role, sizeof(role)), "destination"))
		snprintf(buf, len, "%s/%" PRId64,
			 proto_mp_str(m, "peer", peer, sizeof(peer)),
			 proto_mp_int(m, "id", 0));
	else
		snprintf(buf, len, "%" PRId64, proto_mp_int(m, "id", 0));
}

void cli_print_migrations(FILE *f, const msgpack_object *r)
{
	const msgpack_object *ms = proto_mp_get(r, "migrations");
	uint32_t n = 0;

	if (ms && ms->type == MSGPACK_OBJECT_ARRAY)
		n = ms->via.array.size;
	fprintf(f, "%-8s  %-11s  %-16s  %-10s  %-10s  %5s  %6s  %s\n", "ID",
		"ROLE", "VM", "PEER", "STATE", "ROUND", "VALID", "REASON");
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *m = &ms->via.array.ptr[i];
		char role[16], vm[PROTO_NAME_MAX + 1], peer[PROTO_NAME_MAX + 1];
		char st[16], reason[512], id[PROTO_NAME_MAX + 24];
		int64_t total = proto_mp_int(m, "pages_total", 0);

		mig_id(id, sizeof(id), m);
		fprintf(f,
			"%-8s  %-11s  %-16s  %-10s  %-10s  %5d  %5.1f%%  %s\n",
			id, proto_mp_str(m, "role", role, sizeof(role)),
			proto_mp_str(m, "vm", vm, sizeof(vm)),
			proto_mp_str(m, "peer", peer, sizeof(peer)),
			proto_mp_str(m, "state", st, sizeof(st)),
			(int)proto_mp_int(m, "round", 0),
			total ? 100.0 * proto_mp_int(m, "pages_valid", 0) /
					total
			      : 0.0,
			proto_mp_str(m, "reason", reason, sizeof(reason))[0]
				? reason
				: "-");
	}
}

void cli_progress_line(char *buf, size_t len, const msgpack_object *m,
		       double *best_pct)
{
	int64_t total = proto_mp_int(m, "pages_total", 0);
	double pct = total ? 100.0 * proto_mp_int(m, "pages_valid", 0) / total
			   : 0;
	char st[16], bw[32], thr[32] = "";
	int64_t throttle = proto_mp_int(m, "cpu_throttle", 0);

	/*
	 * Pages dirtied again make the share of valid pages drop; the line
	 * shows the highest share reached so that it never runs backwards
	 * (the JSON has the raw value).
	 */
	if (pct > *best_pct)
		*best_pct = pct;
	fy_fmt_bytes((uint64_t)proto_mp_double(m, "bandwidth", 0), bw,
		     sizeof(bw));
	if (throttle)
		snprintf(thr, sizeof(thr), "  vCPUs throttled %" PRId64 "%%",
			 throttle);
	if (!strcmp(proto_mp_str(m, "state", st, sizeof(st)), "postcopy")) {
		const msgpack_object *pc = proto_mp_get(m, "postcopy");

		snprintf(
			buf, len,
			"%-10s %5.1f%%  VM runs on the destination  faults "
			"%" PRId64 "  blocktime %.0f ms  bandwidth %s/s%s",
			st, *best_pct, proto_mp_int(pc, "faults", 0),
			proto_mp_double(pc, "blocktime_ms", 0), bw,
			proto_mp_get(pc, "stalled") &&
					proto_mp_get(pc, "stalled")->via.boolean
				? "  STALLED: holder unreachable"
				: "");
		return;
	}
	snprintf(buf, len,
		 "%-10s %5.1f%%  round %-3" PRId64 " dirty %8.0f pages/s  "
		 "bandwidth %s/s  expected downtime %" PRId64 " ms%s",
		 proto_mp_str(m, "state", st, sizeof(st)), *best_pct,
		 proto_mp_int(m, "round", 0),
		 proto_mp_double(m, "dirty_rate", 0), bw,
		 proto_mp_int(m, "expected_downtime_ms", 0), thr);
}

/* The post-copy part of a report, when there was one. */
static void print_postcopy(FILE *f, const msgpack_object *m)
{
	const msgpack_object *pc = proto_mp_get(m, "postcopy");
	char mode[16];

	if (!pc ||
	    !strcmp(proto_mp_str(m, "mode", mode, sizeof(mode)), "precopy") ||
	    proto_mp_double(pc, "duration_ms", 0) <= 0)
		return;
	fprintf(f,
		"  post-copy:        %.3f s with the VM on the destination\n",
		proto_mp_double(pc, "duration_ms", 0) / 1e3);
	fprintf(f,
		"  faults:           %" PRId64 " served, p50 %.1f us, p99 %.1f "
		"us, max %.1f us\n",
		proto_mp_int(pc, "faults", 0),
		proto_mp_double(pc, "fault_p50_us", 0),
		proto_mp_double(pc, "fault_p99_us", 0),
		proto_mp_double(pc, "fault_max_us", 0));
	fprintf(f,
		"  blocktime:        %.1f ms (vCPU time spent waiting on "
		"faults)\n",
		proto_mp_double(pc, "blocktime_ms", 0));
	fprintf(f,
		"  pre-paged:        %" PRId64 " pages; %" PRId64 " holes "
		"zero-filled\n",
		proto_mp_int(pc, "prepaged", 0),
		proto_mp_int(pc, "zero_pages", 0));
	if (proto_mp_int(pc, "stalls", 0))
		fprintf(f,
			"  stalls:           %" PRId64 " (holder unreachable "
			"for %.1f s in all)\n",
			proto_mp_int(pc, "stalls", 0),
			proto_mp_double(pc, "stall_ms", 0) / 1e3);
}

/* "from holders": the bytes from each, once there was more than one. */
static void print_holders(FILE *f, const msgpack_object *m)
{
	const msgpack_object *h = proto_mp_get(m, "holders");
	char node[PROTO_NAME_MAX + 1], b[32];

	if (!h || h->type != MSGPACK_OBJECT_ARRAY || h->via.array.size < 2)
		return;
	fprintf(f, "  from holders:    ");
	for (uint32_t i = 0; i < h->via.array.size; i++)
		fprintf(f, "%s %s %s", i ? "," : "",
			proto_mp_str(&h->via.array.ptr[i], "node", node,
				     sizeof(node)),
			fy_fmt_bytes(proto_mp_int(&h->via.array.ptr[i], "bytes",
						  0),
				     b, sizeof(b)));
	fprintf(f, "\n");
}

void cli_print_report(FILE *f, const msgpack_object *m)
{
	char st[16], vm[PROTO_NAME_MAX + 1], peer[PROTO_NAME_MAX + 1], b[32];
	char reason[512], acts[512], tp[32], id[PROTO_NAME_MAX + 24];
	double total = proto_mp_double(m, "total_s", 0);
	double dt = proto_mp_double(m, "downtime_ms", -1);
	int64_t verified = proto_mp_int(m, "verified_pages", 0);

	mig_id(id, sizeof(id), m);
	fprintf(f, "migration %s: %s %s %s: %s\n", id,
		proto_mp_str(m, "vm", vm, sizeof(vm)),
		strchr(id, '/') ? "from" : "to",
		proto_mp_str(m, "peer", peer, sizeof(peer)),
		proto_mp_str(m, "state", st, sizeof(st)));
	if (proto_mp_str(m, "reason", reason, sizeof(reason))[0])
		fprintf(f, "  reason:           %s\n", reason);
	fprintf(f, "  total time:       %.3f s\n", total);
	if (dt >= 0)
		fprintf(f,
			"  downtime:         %.1f ms (source: pause to the "
			"destination's RESUMED)\n",
			dt);
	else
		fprintf(f, "  downtime:         -\n");
	fprintf(f, "  rounds:           %" PRId64 "\n",
		proto_mp_int(m, "round", 0) + 1);
	fprintf(f,
		"  pages:            %" PRId64 " total, %" PRId64 " resident "
		"at start\n",
		proto_mp_int(m, "pages_total", 0),
		proto_mp_int(m, "pages_resident", 0));
	fprintf(f,
		"  pages pulled:     %" PRId64 " (%" PRId64 " pulled again)\n",
		proto_mp_int(m, "pages_pulled", 0),
		proto_mp_int(m, "pages_pulled_again", 0));
	fprintf(f, "  bytes:            %s\n",
		fy_fmt_bytes(proto_mp_int(m, "bytes", 0), b, sizeof(b)));
	print_holders(f, m);
	fprintf(f, "  throughput:       %s/s (bandwidth of the pulls %s/s)\n",
		fy_fmt_bytes((uint64_t)proto_mp_double(m, "throughput", 0), tp,
			     sizeof(tp)),
		fy_fmt_bytes((uint64_t)proto_mp_double(m, "bandwidth", 0), b,
			     sizeof(b)));
	fprintf(f, "  downtime limit:   %" PRId64 " ms\n",
		proto_mp_int(m, "downtime_limit_ms", 0));
	if (proto_mp_int(m, "delta_pages", 0))
		fprintf(f,
			"  delta:            %" PRId64 " pages re-sent in %s "
			"(%.1f%% of their size)\n",
			proto_mp_int(m, "delta_pages", 0),
			fy_fmt_bytes(proto_mp_int(m, "delta_bytes", 0), b,
				     sizeof(b)),
			100.0 * proto_mp_int(m, "delta_bytes", 0) /
				((double)FY_PAGE_SIZE *
				 proto_mp_int(m, "delta_pages", 1)));
	if (proto_mp_str(m, "converge_actions", acts, sizeof(acts))[0])
		fprintf(f, "  auto-converge:    %s\n", acts);
	print_postcopy(f, m);
	if (verified && !strcmp(st, "completed"))
		fprintf(f,
			"  verify:           %" PRId64 " pages compared, all "
			"equal\n",
			verified);
}

void cli_print_retarget(FILE *f, const msgpack_object *r)
{
	char to[PROTO_NAME_MAX + 1], relay[PROTO_NAME_MAX + 1];

	fprintf(f,
		"migration %" PRId64 " now goes to %s; %s relays what it "
		"holds\n",
		proto_mp_int(r, "id", 0), proto_mp_str(r, "to", to, sizeof(to)),
		proto_mp_str(r, "relay", relay, sizeof(relay)));
}

/* pages of FY_PAGE_SIZE in bytes, whatever ferryd said */
static uint64_t page_bytes(int64_t pages)
{
	if (pages <= 0)
		return 0;
	if ((uint64_t)pages > UINT64_MAX / FY_PAGE_SIZE)
		return UINT64_MAX;
	return (uint64_t)pages * FY_PAGE_SIZE;
}

void cli_print_holders(FILE *f, const msgpack_object *r)
{
	const msgpack_object *hs = proto_mp_get(r, "holders");
	char vm[PROTO_NAME_MAX + 1], node[PROTO_NAME_MAX + 1], kind[16];
	char pages[96], b[32], age[32];
	uint32_t n = 0;

	if (hs && hs->type == MSGPACK_OBJECT_ARRAY)
		n = hs->via.array.size;
	proto_mp_str(r, "vm", vm, sizeof(vm));
	if (!n) {
		fprintf(f, "no holder of VM %s known here\n", vm);
		return;
	}
	fprintf(f, "%-16s  %-11s  %-40s  %s\n", "NODE", "KIND", "CURRENT/PAGES",
		"AGE");
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *h = &hs->via.array.ptr[i];
		int64_t cur = proto_mp_int(h, "current_pages", 0);
		double age_s = proto_mp_double(h, "age_s", -1);

		snprintf(pages, sizeof(pages),
			 "%" PRId64 "/%" PRId64 " pages (%s current)", cur,
			 proto_mp_int(h, "pages", 0),
			 fy_fmt_bytes(page_bytes(cur), b, sizeof(b)));
		/* negative: this node does not know it */
		snprintf(age, sizeof(age), age_s < 0 ? "-" : "%.1f s", age_s);
		fprintf(f, "%-16s  %-11s  %-40s  %s\n",
			proto_mp_str(h, "node", node, sizeof(node)),
			proto_mp_str(h, "kind", kind, sizeof(kind)), pages,
			age);
	}
}

void cli_print_release(FILE *f, const msgpack_object *r)
{
	char vm[PROTO_NAME_MAX + 1];
	int64_t n = proto_mp_int(r, "released", 0);

	proto_mp_str(r, "vm", vm, sizeof(vm));
	if (n > 0)
		fprintf(f, "released %" PRId64 " %s of VM %s\n", n,
			n == 1 ? "copy" : "copies", vm);
	else
		fprintf(f, "no retained copy of VM %s here\n", vm);
}
