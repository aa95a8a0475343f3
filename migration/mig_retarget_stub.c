// SPDX-License-Identifier: MIT
/*
 * TEMPORARY, to be replaced: the engine's side of `ferry retarget` (issue
 * #17) is being built elsewhere. Until it lands, the request goes through
 * the CLI, the control socket and mig_ctl.c's checks of the migration and
 * the peer, and is refused here, so that all of that can be used and
 * tested now.
 */
#include <errno.h>
#include <stdio.h>

#include "migration/mig_int.h"

int mig_src_retarget(struct mig_env *n, uint64_t id, const char *to, char *err,
		     size_t errlen)
{
	(void)n;
	(void)id;
	(void)to;
	snprintf(err, errlen, "retarget is not built yet");
	return -ENOSYS;
}
