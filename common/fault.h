/* SPDX-License-Identifier: MIT */
#ifndef FERRY_COMMON_FAULT_H
#define FERRY_COMMON_FAULT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Fault points, for the failure tests: the environment variable
 *
 *   FERRY_FAULT=POINT[:ACTION][,POINT[:ACTION]]...
 *
 * names points in the code and what happens when one is reached, the first
 * time only:
 *   kill  (the default) SIGKILL ourselves: a crash exactly there;
 *   stop  SIGSTOP ourselves: the test acts, then SIGKILLs or SIGCONTs us;
 *   fail  fy_fault() returns true: the step fails as if its call had.
 * Each firing is logged first. docs/testing.md lists the points.
 */

#define FY_FAULT_MAX 8 /* points in one FERRY_FAULT */
#define FY_FAULT_NAME_MAX 63

/*
 * Read FERRY_FAULT once, at start, before any thread: 0; -EINVAL with the
 * reason in err when it does not parse or names a point that known() (may
 * be NULL) does not know.
 */
int fy_fault_init(bool (*known)(const char *point), char *err, size_t len);
/* Reached point: act as configured; true for "fail". Any thread. */
bool fy_fault(const char *point);

#endif /* FERRY_COMMON_FAULT_H */
