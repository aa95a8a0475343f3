/* SPDX-License-Identifier: MIT */
#ifndef FERRY_CLI_CLI_H
#define FERRY_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <msgpack.h>

#include "protocol/protocol.h"

/*
 * What the files of `ferry`, ferryd's command line, share: the commands'
 * table, the request to ferryd and how the command line fills it, and the
 * JSON and human renderings of its replies. Only cli/ and
 * tests/cli include this; the rest of ferry is reached through the public
 * headers node/node.h and protocol/protocol.h.
 */

/* Exit codes (docs/operations.md). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1 /* ferryd not running, request or migration failed */
#define CLI_EXIT_USAGE 2 /* bad command line or configuration */

/* cli_help.c */

/* A command of ferry, as its help shows it. */
struct cli_cmd {
	const char *name;
	const char *args; /* after the name, "" for none; '\n' between lines */
	const char *help; /* what it does; '\n' between lines */
	int nargs; /* positional arguments; -1: the command parses its own */
};

/* Every command, in the order of `ferry --help`; a NULL name ends it. */
extern const struct cli_cmd cli_cmds[];
/* The command called name, or NULL. */
const struct cli_cmd *cli_cmd_find(const char *name);
/* Print cmd's help to f; with NULL, the overview of every command. */
void cli_usage(FILE *f, const struct cli_cmd *cmd);

/* cli_req.c */

/* How the argument of an option of `ferry migrate` reads. */
enum cli_arg {
	CLI_ARG_NONE, /* none: a flag */
	CLI_ARG_STR, /* a name or a word, as given */
	CLI_ARG_NUM, /* a decimal number */
	CLI_ARG_RATE, /* bytes/s, K/M/G suffixes (binary): fy_parse_size() */
	CLI_ARG_ROUNDS, /* a number of rounds, or auto (0) */
};

/* An option of `ferry migrate` and the field of the request it sets. */
struct cli_opt {
	const char *name; /* without "--" */
	char c; /* getopt's short option */
	int field; /* enum proto_ctl_field; -1: the CLI's own */
	enum cli_arg arg;
	const char *hint; /* "bad --NAME 'ARG' (hint)"; NULL: "bad --NAME" */
};

/* Every option of `ferry migrate`; a NULL name ends it. */
extern const struct cli_opt cli_migrate_opts[];
/*
 * Fill r from `ferry migrate`'s arguments (argv[0] is "migrate"): the
 * options given, checked by protocol/'s setters; --detach and --json go
 * to *detach and *json. Returns 0, or CLI_EXIT_USAGE once what is wrong
 * is printed (with cmd's help, for a bad command line).
 */
int cli_migrate_parse(int argc, char **argv, const struct cli_cmd *cmd,
		      struct proto_ctl_req *r, bool *detach, bool *json);
/*
 * Fill r from `ferry retarget ID --to PEER [--json]` (argv[0] is
 * "retarget"): the ID of a migration this node started, plain, and PEER,
 * checked by protocol/'s setters; --json goes to *json. Returns 0, or
 * CLI_EXIT_USAGE once what is wrong is printed (with cmd's help, for a
 * bad command line).
 */
int cli_retarget_parse(int argc, char **argv, const struct cli_cmd *cmd,
		       struct proto_ctl_req *r, bool *json);
/*
 * Fill r, whose cmd (holders or release) is set, from `ferry holders|release
 * VM [--json]` (argv[0] is the command): VM checked by protocol/'s
 * setter; --json goes to *json. Returns 0, or CLI_EXIT_USAGE once what is
 * wrong is printed (with cmd's help, for a bad command line).
 */
int cli_vm_parse(int argc, char **argv, const struct cli_cmd *cmd,
		 struct proto_ctl_req *r, bool *json);
/*
 * Set r's id, and its source, from "ID" or "SOURCE/ID" (r->cmd set).
 * Returns 0, or CLI_EXIT_USAGE once what is wrong is printed.
 */
int cli_id_parse(const char *arg, struct proto_ctl_req *r);
/*
 * proto_ctl_set_str() and proto_ctl_set_uint() that print protocol/'s
 * reason. Return 0 or CLI_EXIT_USAGE.
 */
int cli_set_str(struct proto_ctl_req *r, enum proto_ctl_field f, const char *s);
int cli_set_uint(struct proto_ctl_req *r, enum proto_ctl_field f, uint64_t v);

/* cli.c */

/*
 * Send the msgpack map req (len bytes) to the ferryd control socket at
 * sock_path and wait up to timeout_ms for the reply, unpacked into
 * *reply. reply points into *raw: the caller destroys reply, then frees
 * *raw. Returns 0; -ENOENT / -ECONNREFUSED when no ferryd listens there,
 * -ETIMEDOUT when it does not answer, -EBADMSG for a reply that is not a
 * map, or another -errno; a text for the user is put in err.
 */
int cli_call(const char *sock_path, const void *req, size_t len, int timeout_ms,
	     msgpack_unpacked *reply, void **raw, char *err, size_t errlen);
/* Render a "status" or "peers" reply for humans. */
void cli_print_status(FILE *f, const msgpack_object *r);
void cli_print_peers(FILE *f, const msgpack_object *r);

/* cli_mig.c */

/* Render "vms" and "migrations" replies for humans. */
void cli_print_vms(FILE *f, const msgpack_object *r);
void cli_print_migrations(FILE *f, const msgpack_object *r);
/* Render one migration's final report. */
void cli_print_report(FILE *f, const msgpack_object *m);
/* Render a "retarget" reply: the new destination and the relay. */
void cli_print_retarget(FILE *f, const msgpack_object *r);
/*
 * Render a "holders" reply: one line a holder (node, kind, its current
 * pages of all, age: "-" when not known), or that none is known here.
 */
void cli_print_holders(FILE *f, const msgpack_object *r);
/* Render a "release" reply: how many copies were freed, if any. */
void cli_print_release(FILE *f, const msgpack_object *r);
/* The one-line live progress, without newline. */
void cli_progress_line(char *buf, size_t len, const msgpack_object *m,
		       double *best_pct);

/* cli_json.c */

/*
 * Write a msgpack object as compact JSON. Binary becomes a hex string,
 * non-string map keys are rendered as strings. Returns 0 or -EINVAL for
 * nesting deeper than 32.
 */
int cli_json_write(FILE *f, const msgpack_object *o);

#endif /* FERRY_CLI_CLI_H */
