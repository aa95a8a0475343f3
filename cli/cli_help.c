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
	{ "retarget", "ID --to PEER",
	  "send a running pre-copy or hybrid migration to PEER\n"
	  "instead, before its switchover; its destination relays\n"
	  "what it holds (docs/migration.md, \"Retarget\").\n"
	  "On the node that started it: ID as 7, not a/7",
	  -1 },
	{ "holders", "VM",
	  "who holds which part of VM as this node knows: where\n"
	  "it runs, copies retained after it left, relays,\n"
	  "destinations (docs/migration.md, \"Retained copies\")",
	  -1 },
	{ "release", "VM",
	  "free the copies of VM this node retained after it\n"
	  "left (docs/migration.md, \"Retained copies\")",
	  -1 },
	{ "version", "", "ferry's version and protocol version", 0 },
	{ NULL, NULL, NULL, 0 },
};

#define INDENT 12 /* of a command's help under its name */
#define WIDTH 76 /* of the lines put_wrapped() writes */
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

/* s wrapped at WIDTH after a ',' or ';', lines indented by INDENT. */
static void put_wrapped(FILE *f, const char *s)
{
	int col = INDENT;
	size_t n;

	fprintf(f, "%*s", INDENT, "");
	for (s += strspn(s, " "); *s; s += strspn(s, " ")) {
		n = strcspn(s, ",;");
		n += s[n] != '\0';
		if (col > INDENT && col + 1 + (int)n > WIDTH) {
			fprintf(f, "\n%*s", INDENT, "");
			col = INDENT;
		} else if (col > INDENT) {
			fputc(' ', f);
			col++;
		}
		fprintf(f, "%.*s", (int)n, s);
		col += n;
		s += n;
	}
	fputc('\n', f);
}

/*
 * What `ferry migrate` does with an option left out: protocol/'s
 * defaults (proto_ctl_default()), the ones ferryd applies, or ferryd.conf.
 */
static void put_defaults(FILE *f)
{
	char text[512] = "defaults:", conf[256] = "", v[32];
	const char *d;

	for (const struct cli_opt *o = cli_migrate_opts; o->name; o++) {
		/* flags are off; --to is required */
		if (o->field < 0 || o->arg == CLI_ARG_NONE ||
		    o->field == PROTO_CTL_TO)
			continue;
		d = proto_ctl_default(o->field, v, sizeof(v));
		if (d && !strcmp(d, "0") && o->arg == CLI_ARG_ROUNDS)
			d = "auto";
		else if (d && !strcmp(d, "0") && o->arg == CLI_ARG_RATE)
			d = "none";
		if (d)
			snprintf(text + strlen(text),
				 sizeof(text) - strlen(text), " %s %s,",
				 o->name, d);
		else
			snprintf(conf + strlen(conf),
				 sizeof(conf) - strlen(conf), "%s %s",
				 *conf ? "," : "", o->name);
	}
	text[strlen(text) - 1] = '\0';
	snprintf(text + strlen(text), sizeof(text) - strlen(text),
		 "; from ferryd.conf:%s", conf);
	put_wrapped(f, text);
}

void cli_usage(FILE *f, const struct cli_cmd *cmd)
{
	if (cmd) {
		fprintf(f, "usage: ferry " GLOBAL " %s", cmd->name);
		fputs(*cmd->args ? " ARGS\n\n" : "\n\n", f);
		put_cmd(f, cmd);
		/* retarget's ID is always this node's: its help says so */
		if (!strncmp(cmd->args, "ID", 2) && strcmp(cmd->name, "retarge"
								      "t"))
			put_id(f, INDENT);
		if (!strcmp(cmd->name, "migrate"))
			put_defaults(f);
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
