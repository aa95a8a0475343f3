/* SPDX-License-Identifier: MIT */
#ifndef FERRY_NODE_NODE_H
#define FERRY_NODE_NODE_H

#include <stddef.h>

/*
 * ferryd, the peer daemon: configuration, then one node that runs its
 * control thread until SIGTERM or SIGINT. The `ferry` CLI talks to it over
 * the control socket; see docs/operations.md.
 */

/* ferryd's control socket when the configuration names none */
#define ND_DEFAULT_CONTROL "/run/ferry/ferryd.sock"

struct nd_config;
struct nd_node;

/*
 * Parse the INI file at path into *out (freed with free()). Returns 0;
 * -EINVAL with "FILE:LINE: problem" in err for a bad file, or -errno with
 * "FILE: problem" when the file cannot be read. Does not log.
 */
int nd_config_load(const char *path, struct nd_config **out, char *err,
		   size_t errlen);
/* The control socket's path in cfg (owned by cfg, valid while it is). */
const char *nd_config_control(const struct nd_config *cfg);

/*
 * Bring a node up: key pair (created on first start), control socket,
 * fabric domain, ZeroMQ sockets. SIGTERM, SIGINT and SIGPIPE must already
 * be blocked in every thread (the node reads them from a signalfd).
 * cfg must outlive the node. Returns 0 and *out, or -errno (logged).
 */
int nd_node_open(const struct nd_config *cfg, struct nd_node **out);
/* Run the control thread until SIGTERM/SIGINT; returns 0 or -errno. */
int nd_node_run(struct nd_node *n);
/* Close sockets and the fabric domain, remove the control socket. Accepts NULL. */
void nd_node_close(struct nd_node *n);

#endif /* FERRY_NODE_NODE_H */
