// SPDX-License-Identifier: MIT
/*
 * What ferry asks ferryd: a struct proto_ctl_req, filled from the command
 * line with protocol/'s setters and sent encoded by proto_ctl_encode(),
 * so that the CLI can send no field the decoder does not know and says
 * what is wrong in the decoder's words ("migrate.downtime_limit_ms: 0 not
 * in 1..3600000"), as ferryd would. Here only what is the command line's
 * own is checked: that a number is a number, "auto", "SOURCE/ID".
 * Ranges, words, names and what the fields say together are protocol/'s
 * (proto_ctl.c), and so are the defaults of what is left out: the CLI
 * sends only the options given.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cli/cli.h"

/* In the order of migrate's help; -1: the CLI's own, not a field. */
const struct cli_opt cli_migrate_opts[] = {
	{ "to", 't', PROTO_CTL_TO, CLI_ARG_STR },
	{ "mode", 'm', PROTO_CTL_MODE, CLI_ARG_STR },
	{ "postcopy-after", 'P', PROTO_CTL_POSTCOPY_AFTER, CLI_ARG_ROUNDS,
	  "rounds, or auto" },
	{ "downtime-limit", 'd', PROTO_CTL_DOWNTIME_LIMIT_MS, CLI_ARG_NUM,
	  "milliseconds" },
	{ "max-bandwidth", 'b', PROTO_CTL_MAX_BANDWIDTH, CLI_ARG_RATE,
	  "bytes/s, e.g. 100M" },
	{ "compress", 'z', PROTO_CTL_COMPRESS, CLI_ARG_STR },
	{ "verify", 'v', PROTO_CTL_VERIFY, CLI_ARG_NONE },
	{ "auto-converge", 'a', PROTO_CTL_AUTO_CONVERGE, CLI_ARG_STR },
	{ "max-rounds", 'r', PROTO_CTL_MAX_ROUNDS, CLI_ARG_NUM },
	{ "cpu-throttle-initial", 'I', PROTO_CTL_CPU_THROTTLE_INITIAL,
	  CLI_ARG_NUM, "percent, 1 to 99" },
	{ "cpu-throttle-increment", 'N', PROTO_CTL_CPU_THROTTLE_INCREMENT,
	  CLI_ARG_NUM, "percent, 1 to 99" },
	{ "max-cpu-throttle", 'X', PROTO_CTL_MAX_CPU_THROTTLE, CLI_ARG_NUM,
	  "percent, 1 to 99" },
	{ "stall-rounds", 'S', PROTO_CTL_STALL_ROUNDS, CLI_ARG_NUM },
	{ "timeout", 'T', PROTO_CTL_TIMEOUT_S, CLI_ARG_NUM },
	{ "detach", 'D', -1, CLI_ARG_NONE },
	{ "json", 'j', -1, CLI_ARG_NONE },
	{ NULL, 0, 0, 0 },
};

#define NOPTS (ARRAY_SIZE(cli_migrate_opts) - 1)

int cli_set_str(struct proto_ctl_req *r, enum proto_ctl_field f, const char *s)
{
	char err[256];

	if (!proto_ctl_set_str(r, f, s, err, sizeof(err)))
		return 0;
	fprintf(stderr, "ferry: %s\n", err);
	return CLI_EXIT_USAGE;
}

int cli_set_uint(struct proto_ctl_req *r, enum proto_ctl_field f, uint64_t v)
{
	char err[256];

	if (!proto_ctl_set_uint(r, f, v, err, sizeof(err)))
		return 0;
	fprintf(stderr, "ferry: %s\n", err);
	return CLI_EXIT_USAGE;
}

/* A decimal number, nothing else (no sign, no space, no overflow). */
static int parse_num(const char *s, uint64_t *v)
{
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return *end || errno ? -EINVAL : 0;
}

/* An option's argument as a number: its syntax, not its range. */
static int parse_arg(const struct cli_opt *o, const char *s, uint64_t *v)
{
	switch (o->arg) {
	case CLI_ARG_NONE:
		*v = 1;
		return 0;
	case CLI_ARG_RATE:
		return fy_parse_size(s, v);
	case CLI_ARG_ROUNDS: /* 0 is spelt auto */
		if (!strcmp(s, "auto")) {
			*v = 0;
			return 0;
		}
		return parse_num(s, v) || !*v ? -EINVAL : 0;
	default:
		return parse_num(s, v);
	}
}

/* Option o with its argument s into r. */
static int set_opt(struct proto_ctl_req *r, const struct cli_opt *o,
		   const char *s)
{
	uint64_t v;

	if (o->arg == CLI_ARG_STR)
		return cli_set_str(r, o->field, s);
	if (!parse_arg(o, s, &v))
		return cli_set_uint(r, o->field, v);
	if (o->hint)
		fprintf(stderr, "ferry: bad --%s '%s' (%s)\n", o->name, s,
			o->hint);
	else
		fprintf(stderr, "ferry: bad --%s\n", o->name);
	return CLI_EXIT_USAGE;
}

/* getopt_long()'s tables, from cli_migrate_opts. */
static void getopt_tables(struct option *lo, char *so)
{
	const struct cli_opt *o;
	size_t i;

	for (i = 0; i < NOPTS; i++) {
		o = &cli_migrate_opts[i];
		lo[i] = (struct option){ o->name,
					 o->arg ? required_argument
						: no_argument,
					 NULL, o->c };
		*so++ = o->c;
		if (o->arg)
			*so++ = ':';
	}
	lo[i] = (struct option){ NULL, 0, NULL, 0 };
	*so = '\0';
}

int cli_migrate_parse(int argc, char **argv, const struct cli_cmd *cmd,
		      struct proto_ctl_req *r, bool *detach, bool *json)
{
	struct option lo[NOPTS + 1];
	char so[2 * NOPTS + 1];
	const struct cli_opt *o;
	int c, ret = 0;

	memset(r, 0, sizeof(*r));
	r->cmd = PROTO_CTL_MIGRATE;
	getopt_tables(lo, so);
	optind = 0; /* GNU: a full reset, permuting again */
	while (!ret && (c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		for (o = cli_migrate_opts; o->name && o->c != c; o++)
			;
		if (!o->name) { /* getopt said which option */
			cli_usage(stderr, cmd);
			return CLI_EXIT_USAGE;
		}
		if (c == 'D')
			*detach = true;
		else if (c == 'j')
			*json = true;
		else
			ret = set_opt(r, o, optarg);
	}
	if (ret)
		return ret;
	if (optind != argc - 1 || !PROTO_CTL_HAS(r, PROTO_CTL_TO)) {
		fprintf(stderr, "ferry: migrate takes one VM and --to PEER\n");
		cli_usage(stderr, cmd);
		return CLI_EXIT_USAGE;
	}
	return cli_set_str(r, PROTO_CTL_VM, argv[optind]);
}

int cli_retarget_parse(int argc, char **argv, const struct cli_cmd *cmd,
		       struct proto_ctl_req *r, bool *json)
{
	static const struct option lo[] = {
		{ "to", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t id;
	int c, ret = 0;

	memset(r, 0, sizeof(*r));
	r->cmd = PROTO_CTL_RETARGET;
	optind = 0; /* GNU: a full reset, permuting again */
	while (!ret && (c = getopt_long(argc, argv, "t:j", lo, NULL)) != -1) {
		if (c == 't') {
			ret = cli_set_str(r, PROTO_CTL_TO, optarg);
		} else if (c == 'j') {
			*json = true;
		} else { /* getopt said which option */
			cli_usage(stderr, cmd);
			return CLI_EXIT_USAGE;
		}
	}
	if (ret)
		return ret;
	if (optind != argc - 1 || !PROTO_CTL_HAS(r, PROTO_CTL_TO)) {
		fprintf(stderr, "ferry: retarget takes one migration ID and "
				"--to PEER\n");
		cli_usage(stderr, cmd);
		return CLI_EXIT_USAGE;
	}
	/* only the source retargets: no SOURCE/ID */
	if (parse_num(argv[optind], &id) || !id) {
		fprintf(stderr,
			"ferry: bad migration id '%s' (the ID of a migration "
			"this node started, as `ferry migrations` shows it)\n",
			argv[optind]);
		return CLI_EXIT_USAGE;
	}
	return cli_set_uint(r, PROTO_CTL_ID, id);
}

int cli_vm_parse(int argc, char **argv, const struct cli_cmd *cmd,
		 struct proto_ctl_req *r, bool *json)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0; /* GNU: a full reset, permuting again */
	while ((c = getopt_long(argc, argv, "j", lo, NULL)) != -1) {
		if (c != 'j') { /* getopt said which option */
			cli_usage(stderr, cmd);
			return CLI_EXIT_USAGE;
		}
		*json = true;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "ferry: %s takes one VM name\n", cmd->name);
		cli_usage(stderr, cmd);
		return CLI_EXIT_USAGE;
	}
	return cli_set_str(r, PROTO_CTL_VM, argv[optind]);
}

int cli_id_parse(const char *arg, struct proto_ctl_req *r)
{
	const char *slash = strchr(arg, '/');
	const char *num = slash ? slash + 1 : arg;
	size_t srclen = slash ? (size_t)(slash - arg) : 0;
	char src[PROTO_NAME_MAX + 1];
	uint64_t id;
	int ret;

	if (parse_num(num, &id) || !id ||
	    (slash && (!srclen || srclen > PROTO_NAME_MAX))) {
		fprintf(stderr,
			"ferry: bad migration id '%s' (ID or SOURCE/ID)\n",
			arg);
		return CLI_EXIT_USAGE;
	}
	ret = cli_set_uint(r, PROTO_CTL_ID, id);
	if (ret || !slash)
		return ret;
	snprintf(src, sizeof(src), "%.*s", (int)srclen, arg);
	return cli_set_str(r, PROTO_CTL_SOURCE, src);
}
