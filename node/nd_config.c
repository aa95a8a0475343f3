// SPDX-License-Identifier: MIT
/*
 * ferryd's configuration: an INI file parsed with inih.
 *
 * inih gives the handler no line numbers and does not tell a repeated
 * section from a continued one, so the file is fed through our own reader:
 * it counts lines, sees every section header (which catches duplicate and
 * empty peer sections) and strips leading blanks (inih would otherwise take
 * an indented line for the continuation of the previous value). Every
 * problem becomes "FILE:LINE: problem"; the first one is kept.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>
#include <zmq.h>

#define LOG_PREFIX "config: "
#include "common/util.h"
#include "node/node_int.h"

enum section {
	SEC_NONE, /* keys before any section */
	SEC_NODE,
	SEC_FABRIC,
	SEC_PEER,
	SEC_BAD, /* already reported; its keys are ignored */
};

struct parse {
	struct nd_config *cfg;
	const char *path;
	FILE *f;
	char *buf; /* getline() buffer */
	size_t bufcap;
	int line;
	char *err;
	size_t errlen;
	bool failed;
	int read_errno; /* 0, or why reading failed */
	enum section sec;
	int sec_line;
	struct nd_peer_conf *peer; /* the peer section being read */
	unsigned seen_keys; /* bit per key of the current section */
	int node_line, fabric_line; /* 0: section not seen yet */
};

static void perr(struct parse *p, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Keep the first problem only: later ones are often its consequences. */
static void perr(struct parse *p, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->err)
		snprintf(p->err, p->errlen, "%s:%d: %s", p->path, line, msg);
}

bool nd_key_valid(const char *s)
{
	uint8_t raw[32];

	return s && strlen(s) == ND_KEY_LEN && zmq_z85_decode(raw, s) != NULL;
}

/* "tcp://HOST:PORT" with a numeric port 1..65535; "*" as host if wild. */
static bool valid_endpoint(const char *s, bool wild)
{
	const char *host = s + 6, *colon;
	char *end;
	long port;

	if (strncmp(s, "tcp://", 6) || strlen(s) >= ND_ENDPOINT_MAX)
		return false;
	colon = strrchr(host, ':');
	if (!colon || colon == host)
		return false;
	if (!wild && colon - host == 1 && *host == '*')
		return false;
	for (const char *c = host; c < colon; c++)
		if (isspace((unsigned char)*c) || *c == '/')
			return false;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	return !errno && end != colon + 1 && !*end && port > 0 && port < 65536;
}

static int parse_uint(const char *v, unsigned min, unsigned max, unsigned *out)
{
	unsigned long n;
	char *end;

	if (!isdigit((unsigned char)*v))
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

static bool copy(char *dst, size_t len, const char *src)
{
	if (strlen(src) >= len)
		return false;
	strcpy(dst, src);
	return true;
}

static const char *const node_keys[] = {
	"name",
	"listen",
	"state_dir",
	"control",
	"control_group",
	"log_level",
	"ping_interval_ms",
	"peer_timeout_ms",
	"vm_dir",
	"ferry_vm",
	"migration_timeout_ms",
	"auto_converge",
	"cpu_throttle_initial",
	"cpu_throttle_increment",
	"max_cpu_throttle",
	"max_incoming",
	"max_outgoing",
	"holder_retention",
	"holder_retention_age_s",
	"postcopy_max_bandwidth",
};
static const char *const fabric_keys[] = { "provider",	  "address",
					   "port",	  "device",
					   "device_port", "gid_index" };
static const char *const peer_keys[] = { "address", "public_key",
					 "accept_user_vms" };

static const char *sec_label(struct parse *p, char *buf, size_t len)
{
	switch (p->sec) {
	case SEC_NODE:
		return "[node]";
	case SEC_FABRIC:
		return "[fabric]";
	case SEC_PEER:
		snprintf(buf, len, "[peer %s]", p->peer->name);
		return buf;
	default:
		return "(no section)";
	}
}

/* A size (1G, 512M, with K/M/G suffixes), or 0 / off. */
static int parse_size_off(const char *v, uint64_t *out)
{
	if (!strcmp(v, "off")) {
		*out = 0;
		return 0;
	}
	return fy_parse_size(v, out);
}

static int node_key(struct parse *p, const char *k, const char *v)
{
	struct nd_config *c = p->cfg;
	unsigned n;

	if (!strcmp(k, "name")) {
		if (!proto_name_valid(v))
			goto bad;
		strcpy(c->name, v);
	} else if (!strcmp(k, "listen")) {
		if (!valid_endpoint(v, true))
			goto bad;
		strcpy(c->listen, v);
	} else if (!strcmp(k, "state_dir")) {
		if (*v != '/' || !copy(c->state_dir, sizeof(c->state_dir), v))
			goto bad;
	} else if (!strcmp(k, "control")) {
		if (*v != '/' || v[strlen(v) - 1] == '/' ||
		    !copy(c->control, sizeof(c->control), v))
			goto bad;
	} else if (!strcmp(k, "control_group")) {
		struct group *g;

		if (!*v) {
			c->control_group[0] = '\0';
			return 0;
		}
		if (!copy(c->control_group, sizeof(c->control_group), v))
			goto bad;
		g = getgrnam(v);
		if (!g) {
			perr(p, p->line, "control_group: unknown group '%s'",
			     v);
			return -EINVAL;
		}
		c->control_gid = g->gr_gid;
	} else if (!strcmp(k, "log_level")) {
		if (fy_log_parse_level(v, &c->log_level))
			goto bad;
	} else if (!strcmp(k, "ping_interval_ms")) {
		if (parse_uint(v, 50, 60000, &n))
			goto bad;
		c->ping_interval_ms = n;
	} else if (!strcmp(k, "vm_dir")) {
		if (*v != '/' || !copy(c->vm_dir, sizeof(c->vm_dir), v))
			goto bad;
	} else if (!strcmp(k, "ferry_vm")) {
		if (!copy(c->ferry_vm, sizeof(c->ferry_vm), v))
			goto bad;
	} else if (!strcmp(k, "migration_timeout_ms")) {
		if (parse_uint(v, 1000, 3600000, &n))
			goto bad;
		c->mig_timeout_ms = n;
	} else if (!strcmp(k, "auto_converge")) {
		int ac = proto_converge_parse(v);

		if (ac < 0)
			goto bad;
		c->auto_converge = ac;
	} else if (!strcmp(k, "cpu_throttle_initial")) {
		if (parse_uint(v, 1, 99, &n))
			goto bad;
		c->cpu_throttle_initial = n;
	} else if (!strcmp(k, "cpu_throttle_increment")) {
		if (parse_uint(v, 1, 99, &n))
			goto bad;
		c->cpu_throttle_increment = n;
	} else if (!strcmp(k, "max_cpu_throttle")) {
		if (parse_uint(v, 1, 99, &n))
			goto bad;
		c->max_cpu_throttle = n;
	} else if (!strcmp(k, "max_incoming")) {
		if (parse_uint(v, 1, MIG_LIMIT_MAX, &n))
			goto bad;
		c->max_incoming = n;
	} else if (!strcmp(k, "holder_retention")) {
		if (parse_size_off(v, &c->holder_retention))
			goto bad;
	} else if (!strcmp(k, "postcopy_max_bandwidth")) {
		if (parse_size_off(v, &c->postcopy_max_bandwidth)) /* per s */
			goto bad;
	} else if (!strcmp(k, "holder_retention_age_s")) {
		if (parse_uint(v, 1, ND_RETAIN_AGE_MAX_S, &n))
			goto bad;
		c->holder_retention_age_s = n;
	} else if (!strcmp(k, "max_outgoing")) {
		if (parse_uint(v, 1, MIG_LIMIT_MAX, &n))
			goto bad;
		c->max_outgoing = n;
	} else if (!strcmp(k, "peer_timeout_ms")) {
		if (parse_uint(v, 100, 600000, &n))
			goto bad;
		c->peer_timeout_ms = n;
	}
	return 0;
bad:
	return -EINVAL;
}

static int fabric_key(struct parse *p, const char *k, const char *v)
{
	struct nd_config *c = p->cfg;
	unsigned n;

	if (!strcmp(k, "provider")) {
		if (strchr(v, ' ') ||
		    !copy(c->provider, sizeof(c->provider), v))
			return -EINVAL;
	} else if (!strcmp(k, "address")) {
		if (strchr(v, ' ') ||
		    !copy(c->fabric_address, sizeof(c->fabric_address), v))
			return -EINVAL;
	} else if (!strcmp(k, "port")) {
		if (parse_uint(v, 0, 65535, &n))
			return -EINVAL;
		snprintf(c->fabric_port, sizeof(c->fabric_port), "%u", n);
	} else if (!strcmp(k, "device")) {
		/* a device name, never a path: rdma-core's names are short */
		if (!proto_name_valid(v) ||
		    !copy(c->verbs_device, sizeof(c->verbs_device), v))
			return -EINVAL;
	} else if (!strcmp(k, "device_port")) {
		if (parse_uint(v, 1, 255, &c->verbs_port))
			return -EINVAL;
	} else if (!strcmp(k, "gid_index")) {
		if (parse_uint(v, 0, 65534, &n))
			return -EINVAL;
		c->verbs_gid = n + 1;
	}
	return 0;
}

static int peer_key(struct parse *p, const char *k, const char *v)
{
	struct nd_peer_conf *pc = p->peer;

	if (!strcmp(k, "address")) {
		if (!valid_endpoint(v, false))
			return -EINVAL;
		strcpy(pc->address, v);
	} else if (!strcmp(k, "public_key")) {
		if (!nd_key_valid(v)) {
			perr(p, p->line,
			     "public_key of peer '%s': not a 40-character Z85 "
			     "CURVE key",
			     pc->name);
			return -EINVAL;
		}
		strcpy(pc->public_key, v);
	} else if (!strcmp(k, "accept_user_vms")) {
		if (!strcmp(v, "true") || !strcmp(v, "yes"))
			pc->accept_user_vms = true;
		else if (!strcmp(v, "false") || !strcmp(v, "no"))
			pc->accept_user_vms = false;
		else
			return -EINVAL;
	}
	return 0;
}

static const char *const *section_keys(enum section s, size_t *n)
{
	switch (s) {
	case SEC_NODE:
		*n = ARRAY_SIZE(node_keys);
		return node_keys;
	case SEC_FABRIC:
		*n = ARRAY_SIZE(fabric_keys);
		return fabric_keys;
	case SEC_PEER:
		*n = ARRAY_SIZE(peer_keys);
		return peer_keys;
	default:
		*n = 0;
		return NULL;
	}
}

static int handler(void *user, const char *section, const char *name,
		   const char *value)
{
	struct parse *p = user;
	const char *const *keys;
	char label[ND_NAME_MAX + 16];
	size_t n, i;
	int ret;

	(void)section; /* our reader tracks sections itself */
	if (p->sec == SEC_BAD)
		return 1;
	if (p->sec == SEC_NONE) {
		perr(p, p->line, "key '%s' outside of any section", name);
		return 0;
	}
	keys = section_keys(p->sec, &n);
	for (i = 0; i < n; i++)
		if (!strcmp(keys[i], name))
			break;
	if (i == n) {
		perr(p, p->line, "unknown key '%s' in %s", name,
		     sec_label(p, label, sizeof(label)));
		return 0;
	}
	if (p->seen_keys & (1u << i)) {
		perr(p, p->line, "duplicate key '%s' in %s", name,
		     sec_label(p, label, sizeof(label)));
		return 0;
	}
	p->seen_keys |= 1u << i;
	if (!*value && strcmp(name, "control_group")) {
		perr(p, p->line, "%s: empty value", name);
		return 0;
	}
	if (p->sec == SEC_NODE)
		ret = node_key(p, name, value);
	else if (p->sec == SEC_FABRIC)
		ret = fabric_key(p, name, value);
	else
		ret = peer_key(p, name, value);
	if (ret) {
		perr(p, p->line, "%s: bad value '%s'", name, value);
		return 0;
	}
	return 1;
}

/* Close the section being read: a peer must have its address and key. */
static void section_end(struct parse *p)
{
	struct nd_peer_conf *pc = p->peer;

	if (p->sec != SEC_PEER)
		return;
	if (!pc->address[0])
		perr(p, pc->line, "peer '%s' has no address", pc->name);
	else if (!pc->public_key[0])
		perr(p, pc->line, "peer '%s' has no public_key", pc->name);
}

static void section_begin(struct parse *p, const char *name)
{
	struct nd_config *c = p->cfg;

	section_end(p);
	p->seen_keys = 0;
	p->sec_line = p->line;
	p->sec = SEC_BAD;
	if (!strcmp(name, "node")) {
		if (p->node_line) {
			perr(p, p->line,
			     "duplicate section [node] (first at line %d)",
			     p->node_line);
			return;
		}
		p->node_line = p->line;
		p->sec = SEC_NODE;
	} else if (!strcmp(name, "fabric")) {
		if (p->fabric_line) {
			perr(p, p->line,
			     "duplicate section [fabric] (first at line %d)",
			     p->fabric_line);
			return;
		}
		p->fabric_line = p->line;
		p->sec = SEC_FABRIC;
	} else if (!strncmp(name, "peer", 4) &&
		   isspace((unsigned char)name[4])) {
		const char *pn = name + 5;
		struct nd_peer_conf *pc;

		while (isspace((unsigned char)*pn))
			pn++;
		if (!proto_name_valid(pn)) {
			perr(p, p->line,
			     "bad peer name '%s' (1-%d characters of A-Z a-z "
			     "0-9 . _ -, the first a letter or digit)",
			     pn, ND_NAME_MAX);
			return;
		}
		for (size_t i = 0; i < c->npeers; i++) {
			if (!strcmp(c->peers[i].name, pn)) {
				perr(p, p->line,
				     "duplicate peer '%s' (first at line %d)",
				     pn, c->peers[i].line);
				return;
			}
		}
		if (c->npeers == ND_PEERS_MAX) {
			perr(p, p->line, "too many peers (at most %d)",
			     ND_PEERS_MAX);
			return;
		}
		pc = &c->peers[c->npeers++];
		memset(pc, 0, sizeof(*pc));
		strcpy(pc->name, pn);
		pc->line = p->line;
		p->peer = pc;
		p->sec = SEC_PEER;
	} else {
		perr(p, p->line,
		     "unknown section [%s] (expected [node], [fabric] or [peer "
		     "NAME])",
		     name);
	}
}

/* inih's reader: one line per call, with the bookkeeping described above. */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	ssize_t n;
	char *s, *end;

	errno = 0;
	n = getline(&p->buf, &p->bufcap, p->f);
	if (n < 0) {
		if (ferror(p->f))
			p->read_errno = errno ? errno : EIO;
		return NULL;
	}
	p->line++;
	s = p->buf;
	while (*s == ' ' || *s == '\t')
		s++;
	if ((ssize_t)strcspn(s, "\r\n") > num - 3) {
		perr(p, p->line, "line too long (at most %d characters)",
		     num - 3);
		strcpy(str, "\n");
		return str;
	}
	if (*s == '[') {
		char name[256];
		size_t len;

		end = strchr(s, ']');
		if (end) {
			/* trim the name the way inih does */
			s++;
			while (isspace((unsigned char)*s))
				s++;
			len = end - s;
			while (len && isspace((unsigned char)s[len - 1]))
				len--;
			if (len >= sizeof(name))
				len = sizeof(name) - 1;
			memcpy(name, s, len);
			name[len] = '\0';
			section_begin(p, name);
		} else {
			p->sec = SEC_BAD; /* inih reports the syntax error */
		}
		s = p->buf;
		while (*s == ' ' || *s == '\t')
			s++;
	}
	strcpy(str, s);
	return str;
}

/* Cross-field checks once the whole file is read. */
static void check_config(struct parse *p)
{
	struct nd_config *c = p->cfg;

	if (c->peer_timeout_ms <= c->ping_interval_ms)
		perr(p, p->node_line,
		     "peer_timeout_ms (%u) must be larger than "
		     "ping_interval_ms (%u)",
		     c->peer_timeout_ms, c->ping_interval_ms);
	/* shm reads at an address, key unchecked: a dropped copy's reader
	 * could get whatever is mapped there next */
	if (c->holder_retention && !strcmp(c->provider, "ofi:shm"))
		perr(p, p->node_line,
		     "holder_retention needs a fabric that checks keys; "
		     "ofi:shm does not");
	for (size_t i = 0; i < c->npeers; i++) {
		struct nd_peer_conf *a = &c->peers[i];

		if (!strcmp(a->name, c->name))
			perr(p, a->line,
			     "peer '%s' has this node's own name (a node does "
			     "not list itself)",
			     a->name);
		for (size_t j = 0; j < i; j++) {
			struct nd_peer_conf *b = &c->peers[j];

			if (!strcmp(a->public_key, b->public_key))
				perr(p, a->line,
				     "peer '%s' has the same public_key as "
				     "peer '%s' (line %d)",
				     a->name, b->name, b->line);
			if (!strcmp(a->address, b->address))
				perr(p, a->line,
				     "peer '%s' has the same address as peer "
				     "'%s' (line %d)",
				     a->name, b->name, b->line);
		}
	}
}

void nd_config_defaults(struct nd_config *cfg)
{
	char host[256] = "";

	memset(cfg, 0, sizeof(*cfg));
	if (!gethostname(host, sizeof(host) - 1)) {
		host[strcspn(host, ".")] = '\0';
	}
	strcpy(cfg->name, proto_name_valid(host) ? host : "ferry");
	strcpy(cfg->listen, ND_DEFAULT_LISTEN);
	strcpy(cfg->state_dir, ND_DEFAULT_STATE_DIR);
	strcpy(cfg->control, ND_DEFAULT_CONTROL);
	cfg->log_level = FY_LOG_INFO;
	cfg->ping_interval_ms = ND_DEFAULT_PING_MS;
	cfg->peer_timeout_ms = ND_DEFAULT_TIMEOUT_MS;
	cfg->mig_timeout_ms = ND_DEFAULT_MIG_TIMEOUT_MS;
	cfg->auto_converge = ND_DEFAULT_AUTO_CONVERGE;
	cfg->cpu_throttle_initial = ND_DEFAULT_THROTTLE_INITIAL;
	cfg->cpu_throttle_increment = ND_DEFAULT_THROTTLE_INCREMENT;
	cfg->max_cpu_throttle = ND_DEFAULT_THROTTLE_MAX;
	cfg->max_incoming = ND_DEFAULT_MIG_LIMIT;
	cfg->max_outgoing = ND_DEFAULT_MIG_LIMIT;
	cfg->holder_retention_age_s = ND_DEFAULT_RETAIN_AGE_S;
	strcpy(cfg->provider, ND_DEFAULT_PROVIDER);
}

void nd_config_fab_opts(const struct nd_config *cfg, struct fab_opts *o)
{
	*o = (struct fab_opts){
		.provider = cfg->provider,
		.node = cfg->fabric_address[0] ? cfg->fabric_address : NULL,
		.verbs_device = cfg->verbs_device[0] ? cfg->verbs_device : NULL,
		.verbs_port = cfg->verbs_port,
		.verbs_gid = cfg->verbs_gid,
	};
}

int nd_config_load(const char *path, struct nd_config **out, char *err,
		   size_t errlen)
{
	struct parse p = { .path = path, .err = err, .errlen = errlen };
	int ret;

	if (err && errlen)
		err[0] = '\0';
	p.cfg = malloc(sizeof(*p.cfg));
	if (!p.cfg) {
		if (err)
			snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	nd_config_defaults(p.cfg);
	if (!copy(p.cfg->path, sizeof(p.cfg->path), path)) {
		if (err)
			snprintf(err, errlen, "%s: path too long", path);
		ret = -ENAMETOOLONG;
		goto err_free;
	}
	p.f = fopen(path, "r");
	if (!p.f) {
		ret = -errno;
		if (err)
			snprintf(err, errlen, "%s: cannot open: %s", path,
				 strerror(errno));
		goto err_free;
	}
	ret = ini_parse_stream(reader, &p, handler, &p);
	if (p.read_errno) {
		ret = -p.read_errno;
		if (err)
			snprintf(err, errlen, "%s: cannot read: %s", path,
				 strerror(-ret));
		goto err_close;
	}
	if (ret > 0)
		perr(&p, ret,
		     "syntax error (expected [section], key = value or a "
		     "comment)");
	else if (ret < 0)
		perr(&p, p.line, "out of memory");
	section_end(&p);
	check_config(&p);
	if (p.failed) {
		ret = -EINVAL;
		goto err_close;
	}
	free(p.buf);
	fclose(p.f);
	*out = p.cfg;
	return 0;

err_close:
	free(p.buf);
	fclose(p.f);
err_free:
	free(p.cfg);
	return ret;
}

const char *nd_config_control(const struct nd_config *cfg)
{
	return cfg->control;
}
