// SPDX-License-Identifier: MIT
/*
 * ferryd: the peer daemon. Runs in the foreground, logs to stderr.
 * Exit codes: 0 clean shutdown (SIGTERM/SIGINT) or --genkey done,
 * 1 start-up or runtime failure, 2 bad command line or configuration.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LOG_PREFIX "ferryd: "
#include "common/fault.h"
#include "node/node_int.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ferryd [--config FILE] [--genkey]\n"
		"\n"
		"  -c, --config FILE   configuration (default %s;\n"
		"                      built-in defaults when that file is "
		"absent)\n"
		"  -g, --genkey        create the key pair if absent, print "
		"the public\n"
		"                      key on stdout and exit\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          this help\n"
		"\n"
		"exit codes: 0 clean shutdown, 1 failure, 2 usage or "
		"configuration error\n"
		"See docs/operations.md for the configuration reference.\n",
		ND_DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "genkey", no_argument, NULL, 'g' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	struct nd_config *cfg;
	struct nd_node *node;
	bool genkey = false;
	char err[1024];
	sigset_t set;
	int c, ret;

	while ((c = getopt_long(argc, argv, "c:gVh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'g':
			genkey = true;
			break;
		case 'V':
			printf("ferryd %s\n", FERRY_VERSION);
			return ND_EXIT_OK;
		case 'h':
			usage(stdout);
			return ND_EXIT_OK;
		default:
			usage(stderr);
			return ND_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "ferryd: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return ND_EXIT_USAGE;
	}

	/*
	 * Block the signals the node reads from its signalfd before any
	 * thread exists (libzmq's, the fabric progress thread), so that they
	 * all inherit the mask. SIGPIPE: a vanished peer is an error code.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (!path && access(ND_DEFAULT_CONFIG, F_OK) == 0)
		path = ND_DEFAULT_CONFIG;
	if (path) {
		if (nd_config_load(path, &cfg, err, sizeof(err))) {
			fprintf(stderr, "ferryd: %s\n", err);
			return ND_EXIT_USAGE;
		}
	} else {
		cfg = malloc(sizeof(*cfg));
		if (!cfg)
			return ND_EXIT_FAIL;
		nd_config_defaults(cfg);
	}
	fy_log_set_level(cfg->log_level);
	if (fy_fault_init(mig_fault_known, err, sizeof(err))) {
		fprintf(stderr, "ferryd: %s\n", err);
		free(cfg);
		return ND_EXIT_USAGE;
	}

	if (genkey) {
		struct nd_keys keys;
		bool created;

		ret = nd_keys_load_or_create(cfg->state_dir, &keys, &created);
		if (!ret)
			printf("%s\n", keys.public_key);
		free(cfg);
		return ret ? ND_EXIT_FAIL : ND_EXIT_OK;
	}

	pr_info("ferryd %s starting, configuration %s", FERRY_VERSION,
		path ? path : "(built-in defaults)");
	ret = nd_node_open(cfg, &node);
	if (ret) {
		pr_err("start-up failed");
		free(cfg);
		return ND_EXIT_FAIL;
	}
	ret = nd_node_run(node);
	nd_node_close(node);
	free(cfg);
	return ret ? ND_EXIT_FAIL : ND_EXIT_OK;
}
