// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"

static enum fy_log_level log_level = FY_LOG_INFO;

static const char *const level_names[] = {
	[FY_LOG_ERR] = "err",
	[FY_LOG_WARN] = "warn",
	[FY_LOG_INFO] = "info",
	[FY_LOG_DEBUG] = "debug",
};

void fy_log_set_level(enum fy_log_level level)
{
	log_level = level;
}

enum fy_log_level fy_log_get_level(void)
{
	return log_level;
}

int fy_log_parse_level(const char *s, enum fy_log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

void fy_log(enum fy_log_level level, const char *fmt, ...)
{
	struct timespec ts;
	char line[1024];
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line, so lines from several threads do not mix. */
	fprintf(stderr, "%ld.%03ld %-5s %s\n", (long)ts.tv_sec,
		ts.tv_nsec / 1000000, level_names[level], line);
}

void fy_log_limited(struct fy_ratelimit *rl, enum fy_log_level level,
		    const char *fmt, ...)
{
	uint64_t now;
	struct timespec ts;
	char line[1024];
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	if (!rl->window_ns ||
	    now - rl->window_ns > FY_RATELIMIT_S * 1000000000ULL) {
		rl->window_ns = now;
		rl->printed = 0;
	}
	if (rl->printed >= FY_RATELIMIT_BURST) {
		rl->suppressed++;
		return;
	}
	rl->printed++;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (rl->suppressed)
		fy_log(level, "%s (and %lu like it suppressed before)", line,
		       rl->suppressed);
	else if (rl->printed == FY_RATELIMIT_BURST)
		fy_log(level, "%s (more like it are suppressed for %d s)", line,
		       FY_RATELIMIT_S);
	else
		fy_log(level, "%s", line);
	rl->suppressed = 0;
}
