/* SPDX-License-Identifier: MIT */
#ifndef FERRY_COMMON_LOG_H
#define FERRY_COMMON_LOG_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

/*
 * One logger for every folder. Each .c file defines LOG_PREFIX before
 * including this header ("fabric: ") and logs with pr_err() and friends.
 * Log once, where the error is found; callers pass the code up.
 */
#ifndef LOG_PREFIX
#define LOG_PREFIX ""
#endif

enum fy_log_level {
	FY_LOG_ERR,
	FY_LOG_WARN,
	FY_LOG_INFO,
	FY_LOG_DEBUG,
};

/* Set the most verbose level printed; messages go to stderr. */
void fy_log_set_level(enum fy_log_level level);
enum fy_log_level fy_log_get_level(void);
/* Parse "err", "warn", "info" or "debug"; returns 0 or -EINVAL. */
int fy_log_parse_level(const char *s, enum fy_log_level *out);

void fy_log(enum fy_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Rate limiting for what a peer or a local user can make us log: at most
 * FY_RATELIMIT_BURST lines per FY_RATELIMIT_S seconds per limiter; the
 * first line after a quiet window says how many were suppressed. A
 * limiter (zeroed to start) belongs to one thread.
 */
#define FY_RATELIMIT_BURST 10
#define FY_RATELIMIT_S 60

struct fy_ratelimit {
	uint64_t window_ns; /* start of the current window; 0: none yet */
	unsigned int printed;
	unsigned long suppressed;
};

void fy_log_limited(struct fy_ratelimit *rl, enum fy_log_level level,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define pr_err(fmt, ...) fy_log(FY_LOG_ERR, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...) fy_log(FY_LOG_WARN, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) fy_log(FY_LOG_INFO, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) fy_log(FY_LOG_DEBUG, LOG_PREFIX fmt, ##__VA_ARGS__)
#define pr_warn_limited(rl, fmt, ...) \
	fy_log_limited(rl, FY_LOG_WARN, LOG_PREFIX fmt, ##__VA_ARGS__)
/* Like pr_err() with ": strerror(errno)" appended; errno is preserved. */
#define pr_perror(fmt, ...)                                              \
	do {                                                             \
		int errno_ = errno;                                      \
		fy_log(FY_LOG_ERR, LOG_PREFIX fmt ": %s", ##__VA_ARGS__, \
		       strerror(errno_));                                \
		errno = errno_;                                          \
	} while (0)

#endif /* FERRY_COMMON_LOG_H */
