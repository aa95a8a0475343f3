// SPDX-License-Identifier: MIT
/*
 * ferry's commands and their help, in one table: `ferry --help` prints
 * every entry, `ferry COMMAND --help` one, and main() checks a command's
 * arguments against its entry, so the three cannot drift apart.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "node/node.h"

const struct cli_cmd cli_cmds[] = {
	{ "status", "",
	  "this node: name, key, listen address, fabric, memory,\n"
	  "peers reachable, migrations, uptime",
	  0 },
	{ "peers", "",
	  "every configured peer: address, state, round-trip time,\n"
	  "last seen; connections refused",
	  0 },
	{ "vms", "", "the VMs of this host: memory, vCPUs, state, progress",
	  0 },
	{ "migrate",
	  "VM --to PEER [--mode precopy|postcopy|hybrid]\n"
	  "[--postcopy-after ROUNDS|auto] [--downtime-limit MS]\n"
	  "[--max-bandwidth RATE] [--compress none|delta] [--verify]\n"
	  "[--auto-converge downtime|throttle|off] [--max-rounds N]\n"
	  "[--cpu-throttle-initial PCT] [--cpu-throttle-increment PCT]\n"
	  "[--max-cpu-throttle PCT] [--stall-rounds N] [--timeout S]\n"
	  "[--detach]",
	  "move a running VM to PEER (docs/migration.md)", -1 },
	{ "migrations", "", "migrations of this node, running and past", 0 },
	{ "migration", "ID", "one migration's state", 1 },
	{ "cancel", "ID", "stop a migration before switchover; the VM stays",
	  1 },
	{ "migrate-postcopy", "ID",
	  "switch a --mode hybrid migration to post-copy now", 1 },
	{ "force-resume", "ID --fenced",
	  "run the VM here, out of the commit window, when\n"
	  "the peer is down for good and its copy can never run again\n"
	  "(docs/operations.md)",
	  2 },
	{ "version", "", "ferry's version and protocol version", 0 },
	{ NULL, NULL, NULL, 0 },
};

#define INDENT 12 /* of a command's help under its name */
#define GLOBAL "[-c CONFIG | -s SOCKET] [--json]"

const struct cli_cmd *cli_cmd_find(const char *name)
{
	for (const struct cli_cmd *c = cli_cmds; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

/* s, its lines after the first indented by INDENT. */
static void put_indented(FILE *f, const char *s)
{
	for (; *s; s++) {
		fputc(*s, f);
		if (*s == '\n')
			fprintf(f, "%*s", INDENT, "");
	}
}

/* "  name args", then its help: beside it when the name is short. */
static void put_cmd(FILE *f, const struct cli_cmd *c)
{
	const char *last = strrchr(c->args, '\n');
	int len = fprintf(f, "  %s%s", c->name, *c->args ? " " : "");

	put_indented(f, c->args);
	len = last ? INDENT + (int)strlen(last + 1)
		   : len + (int)strlen(c->args);
	if (len < INDENT - 1)
		fprintf(f, "%*s", INDENT - len, "");
	else
		fprintf(f, "\n%*s", INDENT, "");
	put_indented(f, c->help);
	fputc('\n', f);
}

/* What the commands that take a migration's ID take, indented by n. */
static void put_id(FILE *f, int n)
{
	fprintf(f,
		"%*sID: as `ferry migrations` shows it, 7 for one this node\n",
		n, "");
	fprintf(f, "%*sstarted, a/7 for one peer a started\n", n, "");
}

void cli_usage(FILE *f, const struct cli_cmd *cmd)
{
	if (cmd) {
		fprintf(f, "usage: ferry " GLOBAL " %s", cmd->name);
		fputs(*cmd->args ? " ARGS\n\n" : "\n\n", f);
		put_cmd(f, cmd);
		if (!strncmp(cmd->args, "ID", 2))
			put_id(f, INDENT);
	} else {
		fputs("usage: ferry " GLOBAL " COMMAND [ARGS]\n\ncommands:\n",
		      f);
		for (const struct cli_cmd *c = cli_cmds; c->name; c++)
			put_cmd(f, c);
		fputc('\n', f);
		put_id(f, 2);
	}
	fprintf(f,
		"\n"
		"options:\n"
		"  -c, --config FILE   take the control socket from ferryd's "
		"config\n"
		"  -s, --socket PATH   control socket (default %s)\n"
		"  -j, --json          print JSON instead of text\n"
		"  -h, --help          this help; after COMMAND, its help\n"
		"\n"
		"exit codes: 0 ok, 1 ferryd not running or request failed, 2 "
		"usage\n",
		ND_DEFAULT_CONTROL);
}
