// SPDX-License-Identifier: MIT
/*
 * ferry: the command-line client of the local ferryd. It asks ferryd over
 * the control socket and prints the answer, for humans or as JSON.
 * `ferry migrate` starts a migration, then polls ferryd for its state
 * (one live line on a terminal) until it ends, and prints the report.
 * Exit codes: 0 success, 1 ferryd not running or the request (or the
 * migration) failed, 2 bad command line or configuration.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "node/node.h"
#include "protocol/protocol.h"

#define CLI_TIMEOUT_MS 2000
/* a query costs ferryd microseconds: the end is seen within 20 ms */
#define POLL_MS 20
#define LINE_MS 200 /* the live line, redrawn */

/*
 * One request, encoded by protocol/, which checks it as ferryd would;
 * prints what is wrong, or ferryd's error. Returns 0, CLI_EXIT_USAGE for
 * a request the encoder refuses, or CLI_EXIT_FAIL.
 */
static int call(const char *sock, const struct proto_ctl_req *r,
		msgpack_unpacked *reply, void **raw)
{
	char err[1024];
	size_t len;
	void *buf;
	int rc;

	rc = proto_ctl_encode(r, &buf, &len, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ferry: %s\n", err);
		return rc == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
	}
	rc = cli_call(sock, buf, len, CLI_TIMEOUT_MS, reply, raw, err,
		      sizeof(err));
	free(buf);
	if (rc) {
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
	       !strcmp(st, "cancelled") || !strcmp(st, "released");
}

/* Poll migration id until it ends; print the line and the report. */
static int follow(const char *sock, uint64_t id, bool json)
{
	bool tty = !json && isatty(1);
	double best = 0;
	int ret = CLI_EXIT_FAIL;

	for (unsigned n = 0;; n++) {
		struct proto_ctl_req q = { .cmd = PROTO_CTL_MIGRATION,
					   .has = 1u << PROTO_CTL_ID,
					   .id = id };
		msgpack_unpacked reply;
		char line[256], st[16];
		void *raw = NULL;
		int r;

		r = call(sock, &q, &reply, &raw);
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

/* `ferry migrate`: start it, then follow it unless --detach. */
static int cmd_migrate(const char *sock, const struct cli_cmd *cmd, int argc,
		       char **argv, bool json)
{
	bool detach = false;
	struct proto_ctl_req r;
	msgpack_unpacked reply;
	void *raw = NULL;
	uint64_t id;
	int ret;

	ret = cli_migrate_parse(argc, argv, cmd, &r, &detach, &json);
	if (!ret)
		ret = call(sock, &r, &reply, &raw);
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

/* The request of command name: "status", "force-resume", ... */
static enum proto_ctl_cmd ctl_cmd(const char *name)
{
	int c;

	for (c = PROTO_CTL_STATUS; c <= PROTO_CTL_CMD_LAST; c++)
		if (!strcmp(proto_ctl_cmd_name(c), name))
			break;
	return c;
}

/* Print a reply of cmd. */
static void print_reply(const char *cmd, const msgpack_object *o, bool json)
{
	if (json) {
		cli_json_write(stdout, o);
		putchar('\n');
	} else if (!strcmp(cmd, "status")) {
		cli_print_status(stdout, o);
	} else if (!strcmp(cmd, "peers")) {
		cli_print_peers(stdout, o);
	} else if (!strcmp(cmd, "vms")) {
		cli_print_vms(stdout, o);
	} else if (!strcmp(cmd, "migrations")) {
		cli_print_migrations(stdout, o);
	} else if (!strcmp(cmd, "holders")) {
		cli_print_holders(stdout, o);
	} else if (!strcmp(cmd, "release")) {
		cli_print_release(stdout, o);
	} else if (!strcmp(cmd, "retarget")) {
		cli_print_retarget(stdout, o);
	} else {
		cli_print_report(stdout, o);
	}
}

/* Send r (parsed already: parse, 0 or an exit code), print the reply. */
static int ask(const char *sock, const char *cmd, int parse,
	       struct proto_ctl_req *r, bool json)
{
	msgpack_unpacked reply;
	void *raw = NULL;
	int ret = parse;

	if (!ret)
		ret = call(sock, r, &reply, &raw);
	if (ret)
		return ret;
	print_reply(cmd, &reply.data, json);
	msgpack_unpacked_destroy(&reply);
	free(raw);
	return CLI_EXIT_OK;
}

/* `ferry holders VM`, `ferry release VM`: about one VM, not a migration. */
static int cmd_vm(const char *sock, const struct cli_cmd *cmd, int argc,
		  char **argv, bool json)
{
	struct proto_ctl_req r = { .cmd = ctl_cmd(cmd->name) };
	int ret = cli_vm_parse(argc, argv, cmd, &r, &json);

	return ask(sock, cmd->name, ret, &r, json);
}

/* `ferry retarget ID --to PEER`: the reply names both peers. */
static int cmd_retarget(const char *sock, const struct cli_cmd *cmd, int argc,
			char **argv, bool json)
{
	struct proto_ctl_req r;
	int ret = cli_retarget_parse(argc, argv, cmd, &r, &json);

	return ask(sock, cmd->name, ret, &r, json);
}

/* status, peers, vms, migrations; migration, cancel, migrate-postcopy,
 * force-resume ID */
static int cmd_simple(const char *sock, const char *cmd, const char *arg,
		      bool json)
{
	struct proto_ctl_req r = { .cmd = ctl_cmd(cmd) };
	msgpack_unpacked reply;
	void *raw = NULL;
	int ret = 0;

	if (arg) /* ID, or SOURCE/ID for one that node started */
		ret = cli_id_parse(arg, &r);
	/* main() saw --fenced; ferryd checks it again */
	if (!ret && r.cmd == PROTO_CTL_FORCE_RESUME)
		ret = cli_set_uint(&r, PROTO_CTL_FENCED, true);
	if (!ret)
		ret = call(sock, &r, &reply, &raw);
	if (ret)
		return ret;
	print_reply(cmd, &reply.data, json);
	msgpack_unpacked_destroy(&reply);
	free(raw);
	return CLI_EXIT_OK;
}

/* Command cmd, its arguments argv[1 .. argc - 1], on ferryd at sock. */
static int run(const char *sock, const struct cli_cmd *cmd, int argc,
	       char **argv, bool json)
{
	if (!strcmp(cmd->name, "migrate"))
		return cmd_migrate(sock, cmd, argc, argv, json);
	if (!strcmp(cmd->name, "retarget"))
		return cmd_retarget(sock, cmd, argc, argv, json);
	if (!strcmp(cmd->name, "holders") || !strcmp(cmd->name, "release"))
		return cmd_vm(sock, cmd, argc, argv, json);
	return cmd_simple(sock, cmd->name, argc > 1 ? argv[1] : NULL, json);
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
	ret = run(sock, cmd, argc - optind, argv + optind, json);
	free(cfg);
	if (fflush(stdout))
		ret = CLI_EXIT_FAIL;
	return ret;
}
