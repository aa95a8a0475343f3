// SPDX-License-Identifier: MIT
/*
 * A backend's progress thread parked while the application drives
 * progress. An application in fab_poll() reads the completions itself;
 * a progress thread that also woke on each one took the domain's lock
 * from it and, on 2 CPUs, the CPU from it and from the kernel work that
 * delivers the data (verbs on rxe: a 4 KiB read's p50 96 -> 140 us). So
 * fab_poll() holds the thread for a while after each pass (and for as long
 * as it blocks on the completion channel itself), and the thread sleeps
 * here until the hold runs out, the application hands progress back, or
 * the domain closes.
 */
#include "fabric/fabric_int.h"

#include <time.h>

void fab_park_init(struct fab_park *p)
{
	pthread_condattr_t ca;

	p->until = 0;
	pthread_mutex_init(&p->lock, NULL);
	/* holds come from CLOCK_MONOTONIC (fy_now_ns) */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
}

void fab_park_destroy(struct fab_park *p)
{
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
}

void fab_park_hold(struct fab_park *p, uint64_t until)
{
	__atomic_store_n(&p->until, until, __ATOMIC_RELAXED);
}

void fab_park_wake(struct fab_park *p)
{
	__atomic_store_n(&p->until, 0, __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->lock);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

bool fab_park_wait(struct fab_park *p, const int *stop)
{
	uint64_t until = __atomic_load_n(&p->until, __ATOMIC_RELAXED);
	struct timespec ts = {
		.tv_sec = (time_t)(until / 1000000000ULL),
		.tv_nsec = (long)(until % 1000000000ULL),
	};

	if (fy_now_ns() >= until)
		return false;
	pthread_mutex_lock(&p->lock);
	if (!__atomic_load_n(stop, __ATOMIC_ACQUIRE) &&
	    __atomic_load_n(&p->until, __ATOMIC_RELAXED) == until)
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	pthread_mutex_unlock(&p->lock);
	return true;
}
