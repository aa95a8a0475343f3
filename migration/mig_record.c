// SPDX-License-Identifier: MIT
/*
 * Migration records: one small text file per migration in
 * <state_dir>/migrations, "ID.src" or "PEER-ID.dst", rewritten at every
 * state change (mig_to(), mig_dst_to()) through a temporary file and
 * renameat(), so that a crash leaves the old record or the new one. A
 * restarted ferryd reads them (mig_open()) to learn which migrations
 * a crash interrupted, and where each one stood. Old records are pruned.
 *
 *   id=7  vm=web  peer=b  phase=switchover  started=UNIX  reason=TEXT
 *   mode=hybrid  postcopy=1        (one KEY=VALUE per line)
 *   relay=c  relay=d               (a source's relays not released yet)
 *
 * Keys come and go by version: a reader skips the keys it does not know
 * and takes a missing one as its old default (precopy, no relay).
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
#include "migration/mig_int.h"

void mig_record_name(const struct mig_record *r, char *buf, size_t len)
{
	if (r->source)
		snprintf(buf, len, "%" PRIu64 ".src", r->id);
	else
		snprintf(buf, len, "%s-%" PRIu64 ".dst", r->peer, r->id);
}

void mig_record_put(const struct mig_env *n, const struct mig_record *r)
{
	char name[MIG_RECORD_NAME_MAX], tmp[MIG_RECORD_NAME_MAX + 8];
	char text[2048];
	int fd, len;

	mig_record_name(r, name, sizeof(name));
	len = snprintf(text, sizeof(text),
		       "id=%" PRIu64 "\nvm=%s\npeer=%s\nphase=%s\nstarted="
		       "%" PRIu64 "\nreason=%s\nmode=%"
		       "s\npostcopy=%d\n",
		       r->id, r->vm, r->peer, mig_phase_name(r->phase),
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
	for (unsigned i = 0; i < r->nrelays && len < (int)sizeof(text); i++)
		len += snprintf(text + len, sizeof(text) - len, "relay=%s\n",
				r->relays[i]);
	len = FY_MIN(len, (int)sizeof(text) - 1);
	/* rename: a crash leaves the old record or the new one */
	if (fy_full_io(fd, text, len, true) || close(fd) ||
	    renameat(n->mig_dir_fd, tmp, n->mig_dir_fd, name))
		pr_perror("cannot write %s/%s", n->mig_dir, name);
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

int mig_record_get(const struct mig_env *n, const char *name,
		   struct mig_record *r)
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
		else if (r->nrelays < MIG_RELAYS_MAX &&
			 value(line, "relay", r->relays[r->nrelays],
			       sizeof(r->relays[0])))
			r->nrelays++;
		else if (!value(line, "vm", r->vm, sizeof(r->vm)) &&
			 !value(line, "peer", r->peer, sizeof(r->peer)) &&
			 !value(line, "phase", phase, sizeof(phase)) &&
			 !value(line, "mode", mode, sizeof(mode)))
			value(line, "reason", r->reason, sizeof(r->reason));
	}
	fclose(f);
	p = mig_phase_parse(phase);
	r->phase = p < 0 ? MIG_FAILED : (enum mig_phase)p;
	r->known = p >= 0;
	p = proto_mode_parse(mode);
	r->mode = p < 0 ? PROTO_MODE_PRECOPY : (enum proto_mode)p;
	return 0;
}

DIR *mig_records_open(struct mig_env *n)
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
