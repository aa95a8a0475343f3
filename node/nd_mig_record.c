// SPDX-License-Identifier: MIT
/*
 * Migration records: one small text file per migration in
 * <state_dir>/migrations, "ID.src" or "PEER-ID.dst", rewritten at every
 * state change (nd_mig_to(), nd_dst_to()) through a temporary file and
 * renameat(), so that a crash leaves the old record or the new one. A
 * restarted ferryd reads them (nd_migs_open()) to learn which migrations
 * a crash interrupted, and where each one stood. Old records are pruned.
 *
 *   id=7  vm=web  peer=b  phase=switchover  started=UNIX  reason=TEXT
 *   mode=hybrid  postcopy=1        (one KEY=VALUE per line)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_PREFIX "migration: "
#include "common/util.h"
#include "node/node_int.h"

void nd_record_name(const struct nd_record *r, char *buf, size_t len)
{
	if (r->source)
		snprintf(buf, len, "%" PRIu64 ".src", r->id);
	else
		snprintf(buf, len, "%s-%" PRIu64 ".dst", r->peer, r->id);
}

void nd_record_put(const struct nd_node *n, const struct nd_record *r)
{
	char name[ND_RECORD_NAME_MAX], tmp[ND_RECORD_NAME_MAX + 8];
	char text[2048];
	int fd, len;

	nd_record_name(r, name, sizeof(name));
	len = snprintf(text, sizeof(text),
		       "id=%" PRIu64 "\nvm=%s\npeer=%s\nphase=%s\nstarted="
		       "%" PRIu64 "\nreason=%s\nmode=%"
		       "s\npostcopy=%d\n",
		       r->id, r->vm, r->peer, nd_mig_phase_name(r->phase),
		       r->started, r->reason, proto_mode_name(r->mode),
		       r->postcopy);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(n->mig_dir_fd, tmp,
		    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	if (fd < 0) {
		pr_perror("cannot write %s/%s", n->mig_dir, tmp);
		return;
	}
	len = FY_MIN(len, (int)sizeof(text) - 1);
	/* rename: a crash leaves the old record or the new one */
	if (fy_full_io(fd, text, len, true) || close(fd) ||
	    renameat(n->mig_dir_fd, tmp, n->mig_dir_fd, name))
		pr_perror("cannot write %s/%s", n->mig_dir, name);
}

void nd_mig_record(struct nd_mig *m)
{
	struct nd_record r = {
		.id = m->id,
		.source = m->source,
		.phase = nd_mig_phase(m),
		.postcopy = nd_mig_has(m, ND_SM_PC),
		.started = m->started_unix,
		.mode = m->o.mode,
	};

	snprintf(r.vm, sizeof(r.vm), "%s", m->vm);
	snprintf(r.peer, sizeof(r.peer), "%s", m->peer->conf->name);
	snprintf(r.reason, sizeof(r.reason), "%s", m->reason);
	nd_record_put(m->n, &r);
}

/* Copy the value of "key=value" line into buf if line has that key. */
static bool value(const char *line, const char *key, char *buf, size_t len)
{
	size_t k = strlen(key);

	if (strncmp(line, key, k) || line[k] != '=')
		return false;
	snprintf(buf, len, "%.*s", (int)len - 1, line + k + 1);
	return true;
}

int nd_record_get(const struct nd_node *n, const char *name,
		  struct nd_record *r)
{
	char line[600], num[24], phase[32] = "", mode[16] = "precopy";
	int fd = openat(n->mig_dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
	size_t len = strlen(name);
	int p;

	if (!f) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	memset(r, 0, sizeof(*r));
	r->source = len > 4 && !strcmp(name + len - 4, ".src");
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (value(line, "id", num, sizeof(num)))
			r->id = strtoull(num, NULL, 10);
		else if (value(line, "started", num, sizeof(num)))
			r->started = strtoull(num, NULL, 10);
		else if (value(line, "postcopy", num, sizeof(num)))
			r->postcopy = num[0] == '1';
		else if (!value(line, "vm", r->vm, sizeof(r->vm)) &&
			 !value(line, "peer", r->peer, sizeof(r->peer)) &&
			 !value(line, "phase", phase, sizeof(phase)) &&
			 !value(line, "mode", mode, sizeof(mode)))
			value(line, "reason", r->reason, sizeof(r->reason));
	}
	fclose(f);
	p = nd_mig_phase_parse(phase);
	r->phase = p < 0 ? ND_MIG_FAILED : (enum nd_mig_phase)p;
	r->known = p >= 0;
	p = proto_mode_parse(mode);
	r->mode = p < 0 ? PROTO_MODE_PRECOPY : (enum proto_mode)p;
	return 0;
}

/* Prune */

struct record_age {
	time_t mtime;
	char name[ND_RECORD_NAME_MAX];
};

static int record_newer(const void *a, const void *b)
{
	const struct record_age *x = a, *y = b;

	return (y->mtime > x->mtime) - (y->mtime < x->mtime);
}

/* Is name the record of a migration still running? */
static bool record_live(struct nd_node *n, const char *name)
{
	char own[ND_RECORD_NAME_MAX];

	for (int i = 0; i < ND_MIGS_MAX; i++) {
		struct nd_mig *m = n->migs[i];
		struct nd_record r;

		if (!m || nd_mig_finished(m))
			continue;
		r.source = m->source;
		r.id = m->id;
		snprintf(r.peer, sizeof(r.peer), "%s", m->peer->conf->name);
		nd_record_name(&r, own, sizeof(own));
		if (!strcmp(own, name))
			return true;
	}
	return false;
}

DIR *nd_records_open(struct nd_node *n)
{
	int fd = dup(n->mig_dir_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);

	if (!d) {
		pr_perror("cannot read %s", n->mig_dir);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	rewinddir(d);
	return d;
}

void nd_records_prune(struct nd_node *n)
{
	time_t now = time(NULL);
	struct record_age *r = NULL;
	size_t nr = 0, cap = 0;
	uint64_t top = 0;
	struct dirent *de;
	struct stat st;
	char top_name[32];
	DIR *d;

	d = nd_records_open(n);
	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		unsigned long long id;
		char end;

		if (len < 5 || len >= sizeof(r->name) ||
		    (strcmp(de->d_name + len - 4, ".src") &&
		     strcmp(de->d_name + len - 4, ".dst")) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode) || record_live(n, de->d_name))
			continue;
		if (sscanf(de->d_name, "%llu.sr%c", &id, &end) == 2 &&
		    end == 'c' && id > top)
			top = id;
		if (nr == cap) {
			struct record_age *g;

			cap = cap ? cap * 2 : 64;
			g = realloc(r, cap * sizeof(*r));
			if (!g)
				break;
			r = g;
		}
		r[nr].mtime = st.st_mtime;
		snprintf(r[nr++].name, sizeof(r->name), "%s", de->d_name);
	}
	snprintf(top_name, sizeof(top_name), "%" PRIu64 ".src", top);
	if (nr) /* r is NULL without records */
		qsort(r, nr, sizeof(*r), record_newer);
	for (size_t i = 0; i < nr; i++) {
		if ((i < ND_RECORDS_MAX &&
		     now - r[i].mtime <= ND_RECORDS_AGE_S) ||
		    !strcmp(r[i].name, top_name))
			continue;
		if (unlinkat(dirfd(d), r[i].name, 0))
			pr_perror("cannot remove old record %s", r[i].name);
	}
	closedir(d);
	free(r);
}
