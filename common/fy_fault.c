// SPDX-License-Identifier: MIT
/*
 * Fault points (common/fault.h). The table is filled once, before threads
 * start; afterwards only each point's "fired" flag changes, atomically.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "fault: "
#include "common/fault.h"
#include "common/log.h"
#include "common/util.h"

enum fault_action { FAULT_KILL, FAULT_STOP, FAULT_FAIL };

static const char *const action_names[] = {
	[FAULT_KILL] = "kill",
	[FAULT_STOP] = "stop",
	[FAULT_FAIL] = "fail",
};

static struct fault {
	char point[FY_FAULT_NAME_MAX + 1];
	enum fault_action action;
	bool fired; /* atomic */
} faults[FY_FAULT_MAX];
static unsigned nfaults;

/* One "POINT[:ACTION]" of len bytes at s into f. */
static int parse_one(const char *s, size_t len, struct fault *f, char *err,
		     size_t errlen)
{
	const char *colon = memrchr(s, ':', len);
	size_t plen = len;

	f->action = FAULT_KILL;
	if (colon) {
		size_t alen = len - (colon + 1 - s);
		unsigned a;

		for (a = 0; a < sizeof(action_names) / sizeof(*action_names);
		     a++)
			if (strlen(action_names[a]) == alen &&
			    !memcmp(colon + 1, action_names[a], alen))
				break;
		/* points have colons too: a last part that is no action */
		if (a < sizeof(action_names) / sizeof(*action_names)) {
			f->action = a;
			plen = colon - s;
		}
	}
	if (!plen || plen > FY_FAULT_NAME_MAX) {
		snprintf(err, errlen, "FERRY_FAULT: bad point \"%.*s\"",
			 (int)FY_MIN(len, 80), s);
		return -EINVAL;
	}
	memcpy(f->point, s, plen);
	f->point[plen] = '\0';
	return 0;
}

int fy_fault_init(bool (*known)(const char *point), char *err, size_t len)
{
	const char *env = getenv("FERRY_FAULT"), *s, *end;

	nfaults = 0;
	if (!env || !*env)
		return 0;
	for (s = env; *s; s = *end ? end + 1 : end) {
		end = strchr(s, ',');
		if (!end)
			end = s + strlen(s);
		if (nfaults == FY_FAULT_MAX) {
			snprintf(err, len, "FERRY_FAULT: more than %d points",
				 FY_FAULT_MAX);
			return -EINVAL;
		}
		if (parse_one(s, end - s, &faults[nfaults], err, len))
			return -EINVAL;
		if (known && !known(faults[nfaults].point)) {
			snprintf(err, len, "FERRY_FAULT: no point \"%s\"",
				 faults[nfaults].point);
			return -EINVAL;
		}
		faults[nfaults++].fired = false;
	}
	return 0;
}

bool fy_fault(const char *point)
{
	for (unsigned i = 0; i < nfaults; i++) {
		struct fault *f = &faults[i];

		if (strcmp(f->point, point) ||
		    __atomic_exchange_n(&f->fired, true, __ATOMIC_ACQ_REL))
			continue;
		pr_warn("%s: %s", point, action_names[f->action]);
		if (f->action == FAULT_KILL)
			kill(getpid(), SIGKILL);
		else if (f->action == FAULT_STOP)
			/*
			 * To this thread: sent to the process, SIGSTOP may be
			 * taken by another thread, and this one runs on past
			 * its point until that one stops the group.
			 */
			raise(SIGSTOP);
		return f->action == FAULT_FAIL;
	}
	return false;
}
