/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the hostile tests (test_hostile.c, test_hostile_local.c):
 * how fast `ferry status` answers, and a process's RSS, the bounds those
 * tests assert. They fail the running cmocka test on error, so call them
 * from tests only.
 */
#ifndef FERRY_TESTS_HOSTILE_H
#define FERRY_TESTS_HOSTILE_H

#include <sys/types.h>

#include "itest.h"

#define MiB (1ULL << 20)
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/*
 * Seconds `ferry status` takes on an idle d: the CLI's own start-up, which
 * under an emulated CPU (the test VM) is a good part of a second.
 */
double status_base(struct node *d);
/* status_base() of the test's node; status_fast() sets it when 0. */
extern double base_s;
/*
 * `ferry status` answers, and within 1 s of its idle time; where the CPU
 * is emulated (idle time over 0.2 s instead of 0.02 s) within 5 idle times
 * of it, since everything there, ferryd's decoding included, is as slow.
 */
void status_fast(struct node *d);
/* VmRSS of pid in kB, or -1. */
long rss_kb(pid_t pid);

#endif /* FERRY_TESTS_HOSTILE_H */
