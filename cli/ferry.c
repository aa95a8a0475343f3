// SPDX-License-Identifier: MIT
/*
 * ferry: the command-line client of the local ferryd. It asks ferryd over
 * the control socket and prints the answer, for humans or as JSON.
 * `ferry migrate` starts a migration, then polls ferryd for its state
 * (one live line on a terminal) until it ends, and prints the report.
 * Exit codes: 0 success, 1 ferryd not running or the request (or the
 * migration) failed, 2 bad command line or configuration.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "cli/cli.h"
#include "node/node.h"
#include "protocol/protocol.h"

#define CLI_TIMEOUT_MS 2000
/* a query costs ferryd microseconds: the end is seen within 20 ms */
#define POLL_MS 20
#define LINE_MS 200 /* the live line, redrawn */

/* One request; prints ferryd's error. Returns 0 or CLI_EXIT_FAIL. */
static int call(const char *sock, msgpack_sbuffer *sb, msgpack_unpacked *reply,
		void **raw)
{
	char err[1024];

	if (cli_call(sock, sb->data, sb->size, CLI_TIMEOUT_MS, reply, raw, err,
		     sizeof(err))) {
		fprintf(stderr, "ferry: %s\n", err);
		return CLI_EXIT_FAIL;
	}
	if (proto_mp_get(&reply->data, "error")) {
		fprintf(stderr, "ferry: ferryd: %s\n",
			proto_mp_str(&reply->data, "error", err, sizeof(err)));
		msgpack_unpacked_destroy(reply);
		free(*raw);
		*raw = NULL;
		return CLI_EXIT_FAIL;
	}
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static bool ended(const msgpack_object *m)
{
	char st[16];

	proto_mp_str(m, "state", st, sizeof(st));
	return !strcmp(st, "completed") || !strcmp(st, "failed") ||
	       !strcmp(st, "cancelled");
}

/* Poll migration id until it ends; print the line and the report. */
static int follow(const char *sock, uint64_t id, bool json)
{
	bool tty = !json && isatty(1);
	double best = 0;
	int ret = CLI_EXIT_FAIL;

	for (unsigned n = 0;; n++) {
		msgpack_unpacked reply;
		msgpack_sbuffer sb;
		msgpack_packer pk;
		char line[256], st[16];
		void *raw = NULL;
		int r;

		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 2);
		proto_mp_pack_kv_str(&pk, "cmd", "migration");
		proto_mp_pack_kv_u64(&pk, "id", id);
		r = call(sock, &sb, &reply, &raw);
		msgpack_sbuffer_destroy(&sb);
		if (r)
			return r;
		if (tty &&
		    (n % (LINE_MS / POLL_MS) == 0 || ended(&reply.data))) {
			cli_progress_line(line, sizeof(line), &reply.data,
					  &best);
			printf("\r%-120s", line);
			fflush(stdout);
		}
		if (ended(&reply.data)) {
			if (tty)
				printf("\n");
			if (json) {
				cli_json_write(stdout, &reply.data);
				putchar('\n');
			} else {
				cli_print_report(stdout, &reply.data);
			}
			proto_mp_str(&reply.data, "state", st, sizeof(st));
			ret = strcmp(st, "completed") ? CLI_EXIT_FAIL
						      : CLI_EXIT_OK;
			msgpack_unpacked_destroy(&reply);
			free(raw);
			return ret;
		}
		msgpack_unpacked_destroy(&reply);
		free(raw);
		sleep_ms(POLL_MS);
	}
}

static int parse_rate(const char *s, uint64_t *out)
{
	/* bytes per second with K/M/G suffixes (binary), as fy_parse_size */
	return fy_parse_size(s, out);
}

static int cmd_migrate(const char *sock, const struct cli_cmd *cmd, int argc,
		       char **argv, bool json)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'm' },
		{ "postcopy-after", required_argument, NULL, 'P' },
		{ "downtime-limit", required_argument, NULL, 'd' },
		{ "max-bandwidth", required_argument, NULL, 'b' },
		{ "compress", required_argument, NULL, 'z' },
		{ "verify", no_argument, NULL, 'v' },
		{ "auto-converge", required_argument, NULL, 'a' },
		{ "max-rounds", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "detach", no_argument, NULL, 'D' },
		{ "stall-rounds", required_argument, NULL, 'S' },
		{ "cpu-throttle-initial", required_argument, NULL, 'I' },
		{ "cpu-throttle-increment", required_argument, NULL, 'N' },
		{ "max-cpu-throttle", required_argument, NULL, 'X' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	/* "" and 0: ferryd's defaults (its config) */
	const char *to = NULL, *mode = "precopy", *ac = "";
	uint64_t thr[3] = { 0, 0, 0 }; /* initial, increment, max */
	const char *compress = "none";
	uint64_t dt = 300, bw = 0, rounds = 30, timeout = 600, stall = 3, id;
	uint64_t pc_after = 0; /* 0: auto */
	bool verify = false, detach = false;
	msgpack_unpacked reply;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	void *raw = NULL;
	char *end;
	int c, ret;

	optind = 0; /* GNU: a full reset, permuting again */
	while ((c = getopt_long(argc, argv, "t:m:d:b:z:va:r:T:DjS:I:N:X:P:",
				opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "precopy") &&
			    strcmp(optarg, "postcopy") &&
			    strcmp(optarg, "hybrid")) {
				fprintf(stderr,
					"ferry: --mode precopy, postcopy or "
					"hybrid, not '%s'\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			mode = optarg;
			break;
		case 'P':
			pc_after = strtoull(optarg, &end, 10);
			if (strcmp(optarg, "auto") && (*end || !pc_after)) {
				fprintf(stderr,
					"ferry: bad --postcopy-after '%s' "
					"(rounds, or auto)\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			if (!strcmp(optarg, "auto"))
				pc_after = 0;
			break;
		case 'd':
			dt = strtoull(optarg, &end, 10);
			if (*end || !dt) {
				fprintf(stderr,
					"ferry: bad --downtime-limit "
					"'%s' (milliseconds)\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'b':
			if (parse_rate(optarg, &bw)) {
				fprintf(stderr,
					"ferry: bad --max-bandwidth "
					"'%s' (bytes/s, e.g. 100M)\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'z':
			if (strcmp(optarg, "none") && strcmp(optarg, "delta")) {
				fprintf(stderr,
					"ferry: --compress none or delta, "
					"not '%s'\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			compress = optarg;
			break;
		case 'v':
			verify = true;
			break;
		case 'a':
			if (strcmp(optarg, "downtime") &&
			    strcmp(optarg, "throttle") &&
			    strcmp(optarg, "off") && strcmp(optarg, "none")) {
				fprintf(stderr,
					"ferry: --auto-converge downtime, "
					"throttle or off, not '%s'\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			ac = optarg;
			break;
		case 'I':
		case 'N':
		case 'X': {
			static const char *const names[] = {
				"cpu-throttle-initial",
				"cpu-throttle-increment",
				"max-cpu-throttle",
			};
			int k = c == 'I' ? 0 : c == 'N' ? 1 : 2;

			thr[k] = strtoull(optarg, &end, 10);
			if (*end || thr[k] < 1 || thr[k] > 99) {
				fprintf(stderr,
					"ferry: bad --%s '%s' (percent, 1 "
					"to 99)\n",
					names[k], optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		}
		case 'r':
			rounds = strtoull(optarg, &end, 10);
			if (*end || !rounds) {
				fprintf(stderr, "ferry: bad --max-rounds\n");
				return CLI_EXIT_USAGE;
			}
			break;
		case 'T':
			timeout = strtoull(optarg, &end, 10);
			if (*end) {
				fprintf(stderr, "ferry: bad --timeout\n");
				return CLI_EXIT_USAGE;
			}
			break;
		case 'D':
			detach = true;
			break;
		case 'S':
			stall = strtoull(optarg, &end, 10);
			if (*end || !stall) {
				fprintf(stderr, "ferry: bad --stall-rounds\n");
				return CLI_EXIT_USAGE;
			}
			break;
		case 'j':
			json = true;
			break;
		default: /* getopt said which option */
			cli_usage(stderr, cmd);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || !to) {
		fprintf(stderr, "ferry: migrate takes one VM and --to PEER\n");
		cli_usage(stderr, cmd);
		return CLI_EXIT_USAGE;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 16);
	proto_mp_pack_kv_str(&pk, "cmd", "migrate");
	proto_mp_pack_kv_u64(&pk, "postcopy_after", pc_after);
	proto_mp_pack_kv_str(&pk, "vm", argv[optind]);
	proto_mp_pack_kv_str(&pk, "to", to);
	proto_mp_pack_kv_str(&pk, "mode", mode);
	proto_mp_pack_kv_u64(&pk, "downtime_limit_ms", dt);
	proto_mp_pack_kv_u64(&pk, "max_bandwidth", bw);
	proto_mp_pack_str(&pk, "verify");
	if (verify)
		msgpack_pack_true(&pk);
	else
		msgpack_pack_false(&pk);
	proto_mp_pack_kv_str(&pk, "auto_converge", ac);
	proto_mp_pack_kv_u64(&pk, "max_rounds", rounds);
	proto_mp_pack_kv_u64(&pk, "timeout_s", timeout);
	proto_mp_pack_kv_u64(&pk, "stall_rounds", stall);
	proto_mp_pack_kv_str(&pk, "compress", compress);
	proto_mp_pack_kv_u64(&pk, "cpu_throttle_initial", thr[0]);
	proto_mp_pack_kv_u64(&pk, "cpu_throttle_increment", thr[1]);
	proto_mp_pack_kv_u64(&pk, "max_cpu_throttle", thr[2]);
	ret = call(sock, &sb, &reply, &raw);
	msgpack_sbuffer_destroy(&sb);
	if (ret)
		return ret;
	id = proto_mp_int(&reply.data, "id", 0);
	msgpack_unpacked_destroy(&reply);
	free(raw);
	if (detach) {
		if (json)
			printf("{\"id\":%" PRIu64 "}\n", id);
		else
			printf("migration %" PRIu64 " started\n", id);
		return CLI_EXIT_OK;
	}
	return follow(sock, id, json);
}

/* status, peers, vms, migrations; migration, cancel, migrate-postcopy,
 * force-resume ID */
static int cmd_simple(const char *sock, const char *cmd, const char *arg,
		      bool json)
{
	bool fenced = !strcmp(cmd, "force-resume");
	msgpack_unpacked reply;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	void *raw = NULL;
	char *end;
	int ret;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (arg) {
		/* ID, or SOURCE/ID for one that node started */
		const char *slash = strchr(arg, '/');
		const char *num = slash ? slash + 1 : arg;
		size_t srclen = slash ? (size_t)(slash - arg) : 0;
		uint64_t id = strtoull(num, &end, 10);

		if (*end || !id || !isdigit((unsigned char)*num) ||
		    (slash && (!srclen || srclen > PROTO_NAME_MAX))) {
			fprintf(stderr,
				"ferry: bad migration id '%s' (ID or "
				"SOURCE/ID)\n",
				arg);
			msgpack_sbuffer_destroy(&sb);
			return CLI_EXIT_USAGE;
		}
		msgpack_pack_map(&pk, 2 + !!slash + fenced);
		proto_mp_pack_kv_str(&pk, "cmd", cmd);
		proto_mp_pack_kv_u64(&pk, "id", id);
		if (fenced) {
			/* main() saw --fenced; ferryd checks it again */
			proto_mp_pack_str(&pk, "fenced");
			msgpack_pack_true(&pk);
		}
		if (slash) {
			char src[PROTO_NAME_MAX + 1];

			snprintf(src, sizeof(src), "%.*s", (int)srclen, arg);
			proto_mp_pack_kv_str(&pk, "source", src);
		}
	} else {
		msgpack_pack_map(&pk, 1);
		proto_mp_pack_kv_str(&pk, "cmd", cmd);
	}
	ret = call(sock, &sb, &reply, &raw);
	msgpack_sbuffer_destroy(&sb);
	if (ret)
		return ret;
	if (json) {
		cli_json_write(stdout, &reply.data);
		putchar('\n');
	} else if (!strcmp(cmd, "status")) {
		cli_print_status(stdout, &reply.data);
	} else if (!strcmp(cmd, "peers")) {
		cli_print_peers(stdout, &reply.data);
	} else if (!strcmp(cmd, "vms")) {
		cli_print_vms(stdout, &reply.data);
	} else if (!strcmp(cmd, "migrations")) {
		cli_print_migrations(stdout, &reply.data);
	} else {
		cli_print_report(stdout, &reply.data);
	}
	msgpack_unpacked_destroy(&reply);
	free(raw);
	return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *sock = ND_DEFAULT_CONTROL;
	const struct cli_cmd *cmd;
	struct nd_config *cfg = NULL;
	bool json = false, have_sock = false;
	char err[1024];
	int c, ret, nargs;

	/* global options come before the command ("+": stop there) */
	while ((c = getopt_long(argc, argv, "+c:s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 's':
			sock = optarg;
			have_sock = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			cli_usage(stdout, NULL);
			return CLI_EXIT_OK;
		default:
			cli_usage(stderr, NULL);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "ferry: no command given\n");
		cli_usage(stderr, NULL);
		return CLI_EXIT_USAGE;
	}
	cmd = cli_cmd_find(argv[optind]);
	if (!cmd) {
		fprintf(stderr, "ferry: unknown command '%s'\n", argv[optind]);
		cli_usage(stderr, NULL);
		return CLI_EXIT_USAGE;
	}
	nargs = argc - optind - 1;
	for (int i = optind + 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			cli_usage(stdout, cmd);
			return CLI_EXIT_OK;
		}
	}
	if (config && have_sock) {
		fprintf(stderr, "ferry: give -c or -s, not both\n");
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(cmd->name, "force-resume") &&
	    (nargs != 2 || strcmp(argv[optind + 2], "--fenced"))) {
		fprintf(stderr, "ferry: force-resume ID --fenced: say --fenced "
				"once the peer's host is down or its ferry-vm "
				"killed; two running copies of a VM corrupt "
				"its disks\n");
		return CLI_EXIT_USAGE;
	}
	if (cmd->nargs >= 0 && nargs != cmd->nargs) {
		fprintf(stderr, "ferry: %s\n",
			nargs > cmd->nargs ? "too many arguments"
					   : "missing argument");
		cli_usage(stderr, cmd);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(cmd->name, "version")) {
		if (json)
			printf("{\"version\":\"%s\",\"protocol\":%d}\n",
			       FERRY_VERSION, PROTO_VERSION);
		else
			printf("ferry %s (protocol %d)\n", FERRY_VERSION,
			       PROTO_VERSION);
		return CLI_EXIT_OK;
	}
	if (config) {
		if (nd_config_load(config, &cfg, err, sizeof(err))) {
			fprintf(stderr, "ferry: %s\n", err);
			return CLI_EXIT_USAGE;
		}
		sock = nd_config_control(cfg);
	}
	if (!strcmp(cmd->name, "migrate"))
		ret = cmd_migrate(sock, cmd, argc - optind, argv + optind,
				  json);
	else
		ret = cmd_simple(sock, cmd->name,
				 nargs ? argv[optind + 1] : NULL, json);
	free(cfg);
	if (fflush(stdout))
		ret = CLI_EXIT_FAIL;
	return ret;
}
