// SPDX-License-Identifier: MIT
/*
 * Write the seed corpus of fuzz_ctl: one request of every command, and
 * `migrate` and `force-resume` as the CLI sends them, into
 * DIR/<command>-<n>.mp. Run from the source tree:
 *   build-fuzz/tests/fuzz/gen_corpus_ctl tests/fuzz/corpus-ctl
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/protocol.h"

#define BIT(f) (1u << PROTO_CTL_##f)

static int put(const char *dir, const struct proto_ctl_req *r, unsigned n)
{
	char path[4096], err[256];
	size_t len;
	void *buf;
	FILE *f;

	if (proto_ctl_encode(r, &buf, &len, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s-%u.mp", dir,
		 proto_ctl_cmd_name(r->cmd), n);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		perror(path);
		free(buf);
		return -1;
	}
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	struct proto_ctl_req r;
	int written = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	/* every command, with only what it needs */
	for (int c = PROTO_CTL_STATUS; c <= PROTO_CTL_CMD_LAST; c++) {
		memset(&r, 0, sizeof(r));
		r.cmd = c;
		if (c == PROTO_CTL_MIGRATE) {
			strcpy(r.vm, "guest1");
			strcpy(r.to, "b");
			r.has = BIT(VM) | BIT(TO);
		} else if (c == PROTO_CTL_HOLDERS || c == PROTO_CTL_RELEASE) {
			strcpy(r.vm, "guest1");
			r.has = BIT(VM);
		} else if (c >= PROTO_CTL_MIGRATION) {
			r.id = 7;
			r.has = BIT(ID);
		}
		if (c == PROTO_CTL_RETARGET) {
			strcpy(r.to, "c");
			r.has |= BIT(TO);
		}
		if (put(argv[1], &r, 0))
			return 1;
		written++;
	}

	/* `ferry migrate` with every option */
	memset(&r, 0, sizeof(r));
	r.cmd = PROTO_CTL_MIGRATE;
	strcpy(r.vm, "guest1");
	strcpy(r.to, "node-b.example");
	strcpy(r.mode, "hybrid");
	strcpy(r.compress, "none");
	strcpy(r.auto_converge, "");
	r.postcopy_after = 5;
	r.downtime_limit_ms = 300;
	r.max_downtime_ms = 10000;
	r.max_bandwidth = 100 << 20;
	r.max_rounds = 30;
	r.stall_rounds = 3;
	r.timeout_s = 600;
	r.cpu_throttle_initial = 20;
	r.cpu_throttle_increment = 10;
	r.max_cpu_throttle = 99;
	r.has = (1u << PROTO_CTL_NFIELDS) - 1;
	r.has &= ~(BIT(ID) | BIT(SOURCE) | BIT(FENCED));
	if (put(argv[1], &r, 1))
		return 1;
	strcpy(r.mode, "precopy");
	strcpy(r.compress, "delta");
	strcpy(r.auto_converge, "throttle");
	r.verify = true;
	if (put(argv[1], &r, 2))
		return 1;

	/* SOURCE/ID and --fenced */
	memset(&r, 0, sizeof(r));
	r.cmd = PROTO_CTL_FORCE_RESUME;
	r.id = 12345678901ULL;
	strcpy(r.source, "a");
	r.fenced = true;
	r.has = BIT(ID) | BIT(SOURCE) | BIT(FENCED);
	if (put(argv[1], &r, 1))
		return 1;
	r.cmd = PROTO_CTL_CANCEL;
	r.has &= ~BIT(FENCED);
	r.fenced = false;
	if (put(argv[1], &r, 1))
		return 1;
	written += 4;
	printf("%d seeds written to %s\n", written, argv[1]);
	return 0;
}
