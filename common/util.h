/* SPDX-License-Identifier: MIT */
#ifndef FERRY_COMMON_UTIL_H
#define FERRY_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Small helpers every folder uses: sizes, time, page checksums. */

#define FY_PAGE_SIZE 4096UL
#define FY_PAGE_SHIFT 12

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr)-offsetof(type, member)))
#define FY_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FY_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline uint64_t fy_clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Monotonic time in nanoseconds. */
static inline uint64_t fy_now_ns(void)
{
	return fy_clock_ns(CLOCK_MONOTONIC);
}

/*
 * fy_now_ns() as of the last kernel tick (up to FY_COARSE_LAG_NS behind
 * it): no read of the clock device, which costs 2 us where the clocksource
 * is hpet (the test VM). For deadlines set once an operation.
 */
#define FY_COARSE_LAG_NS 10000000ULL
static inline uint64_t fy_coarse_ns(void)
{
	return fy_clock_ns(CLOCK_MONOTONIC_COARSE);
}

/* xxh3-64 checksum of one FY_PAGE_SIZE page. */
uint64_t fy_page_csum(const void *page);

/*
 * Parse a size with an optional binary suffix K, M, G or T ("256M", "4096").
 * Returns 0 or -EINVAL (no digits, junk, overflow).
 */
int fy_parse_size(const char *s, uint64_t *out);
/* Write (wr) or read all len bytes of buf on fd: 0, or -1 (error, EOF). */
int fy_full_io(int fd, void *buf, size_t len, bool wr);
/* Format bytes as "1.5 GiB" into buf; returns buf. */
char *fy_fmt_bytes(uint64_t bytes, char *buf, size_t len);

#endif /* FERRY_COMMON_UTIL_H */
