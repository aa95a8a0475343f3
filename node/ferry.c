// SPDX-License-Identifier: MIT
/*
 * ferry: the command-line client of the local ferryd. It asks one question
 * over the control socket and prints the answer, for humans or as JSON.
 * Exit codes: 0 success, 1 ferryd not running or the request failed,
 * 2 bad command line or configuration.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/protocol.h"
#include "node/node_int.h"

#define CLI_TIMEOUT_MS 2000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferry [-c CONFIG | -s SOCKET] [--json] COMMAND\n"
		"\n"
		"commands:\n"
		"  status    this node: name, key, listen address, fabric, "
		"memory,\n"
		"            peers reachable, migrations, uptime\n"
		"  peers     every configured peer: address, state, round-trip "
		"time,\n"
		"            last seen; connections refused\n"
		"  version   ferry's version and protocol version\n"
		"\n"
		"options:\n"
		"  -c, --config FILE   take the control socket from ferryd's "
		"config\n"
		"  -s, --socket PATH   control socket (default %s)\n"
		"  -j, --json          print JSON instead of text\n"
		"  -h, --help          this help\n"
		"\n"
		"exit codes: 0 ok, 1 ferryd not running or request failed, 2 "
		"usage\n",
		ND_DEFAULT_CONTROL);
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
	const char *config = NULL, *sock = ND_DEFAULT_CONTROL, *cmd;
	struct nd_config *cfg = NULL;
	bool json = false, have_sock = false;
	msgpack_unpacked reply;
	void *raw = NULL;
	char err[1024];
	int c, ret = ND_EXIT_OK;

	while ((c = getopt_long(argc, argv, "c:s:jh", opts, NULL)) != -1) {
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
			usage(stdout);
			return ND_EXIT_OK;
		default:
			usage(stderr);
			return ND_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "ferry: %s\n",
			optind == argc ? "no command given"
				       : "too many arguments");
		usage(stderr);
		return ND_EXIT_USAGE;
	}
	cmd = argv[optind];
	if (config && have_sock) {
		fprintf(stderr, "ferry: give -c or -s, not both\n");
		return ND_EXIT_USAGE;
	}

	if (!strcmp(cmd, "version")) {
		if (json)
			printf("{\"version\":\"%s\",\"protocol\":%d}\n",
			       FERRY_VERSION, PROTO_VERSION);
		else
			printf("ferry %s (protocol %d)\n", FERRY_VERSION,
			       PROTO_VERSION);
		return ND_EXIT_OK;
	}
	if (strcmp(cmd, "status") && strcmp(cmd, "peers")) {
		fprintf(stderr, "ferry: unknown command '%s'\n", cmd);
		usage(stderr);
		return ND_EXIT_USAGE;
	}
	if (config) {
		if (nd_config_load(config, &cfg, err, sizeof(err))) {
			fprintf(stderr, "ferry: %s\n", err);
			return ND_EXIT_USAGE;
		}
		sock = cfg->control;
	}

	if (nd_cli_request(sock, cmd, CLI_TIMEOUT_MS, &reply, &raw, err,
			   sizeof(err))) {
		fprintf(stderr, "ferry: %s\n", err);
		ret = ND_EXIT_FAIL;
		goto out;
	}
	if (nd_mp_get(&reply.data, "error")) {
		fprintf(stderr, "ferry: ferryd: %s\n",
			nd_mp_str(&reply.data, "error", err, sizeof(err)));
		ret = ND_EXIT_FAIL;
	} else if (json) {
		nd_json_write(stdout, &reply.data);
		putchar('\n');
	} else if (!strcmp(cmd, "status")) {
		nd_cli_print_status(stdout, &reply.data);
	} else {
		nd_cli_print_peers(stdout, &reply.data);
	}
	msgpack_unpacked_destroy(&reply);
	free(raw);
out:
	free(cfg);
	if (fflush(stdout))
		ret = ND_EXIT_FAIL;
	return ret;
}
