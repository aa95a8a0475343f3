// SPDX-License-Identifier: MIT
/* Helpers of the hostile tests (hostile.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "hostile.h"

double base_s;

double status_base(struct node *d)
{
	char out[OUT_MAX], err[OUT_MAX];
	double best = 1e9;

	for (int i = 0; i < 3; i++) {
		double t0 = now_s();

		assert_int_equal(ferry(d, false, "status", out, err), 0);
		best = MIN(best, now_s() - t0);
	}
	return best;
}

void status_fast(struct node *d)
{
	char out[OUT_MAX], err[OUT_MAX];
	double t0 = now_s();

	if (!base_s)
		base_s = status_base(d);
	assert_int_equal(ferry(d, false, "status", out, err), 0);
	/* a loaded CI machine (ASan, two jobs) answers in 1-2 s; a blocked
	 * control loop does not answer before the flood is over */
	if (now_s() - t0 > base_s + MAX(3.0, 10 * base_s))
		fail_msg("ferry status took %.2f s (%.2f s idle)", now_s() - t0,
			 base_s);
}

long rss_kb(pid_t pid)
{
	char path[64], *s;
	long kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	s = strstr(slurp(path), "VmRSS:");
	if (s)
		sscanf(s + 6, "%ld", &kb);
	return kb;
}
