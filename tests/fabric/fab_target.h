/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_FABRIC_FAB_TARGET_H
#define FERRY_TESTS_FABRIC_FAB_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/log.h"
#include "fabric/fabric.h"

/*
 * The target of the two-process fabric tests (fab_target.c): a process
 * the test binary starts from itself ("--target PROVIDER SIZE FD").
 */

#define MIB (1024UL * 1024)

struct hello {
	int32_t status;
	struct fab_addr addr;
	struct fab_rkey rk;
	char provider[64];
};

struct cmd {
	char op; /* 'f'ill, 'v'erify, 'c'onnect, 'e'cho, 'k'ey, 'q'uit */
	uint64_t seed;
	struct fab_addr addr; /* 'e': where to send the echo */
};

struct target {
	pid_t pid;
	int sock;
	struct hello h;
};

/* The pattern of seed in buf; the first bad byte offset + 1, or 0. */
void pattern_fill(void *buf, size_t len, uint64_t seed);
size_t pattern_check(const void *buf, size_t len, uint64_t seed);
/* Anonymous private memory, or NULL. */
void *map_region(size_t len);
/*
 * A test binary's first step. Started as a target ("--target PROVIDER
 * SIZE FD", by target_start()): serve a region of SIZE until told to
 * quit, and the exit code. Else -1, logging at level (FY_DEBUG: debug)
 * and SIGPIPE ignored: a dead target must not kill the test through a
 * write on the socket.
 */
int target_args(int argc, char **argv, enum fy_log_level level);
/* Start a target (asserts it came up), send it a command, stop it. */
void target_start(struct target *t, const char *prov, size_t size);
int target_cmd(struct target *t, char op, uint64_t seed,
	       const struct fab_addr *addr);
/* The target's key now ('k'): 0 and *rk, or -errno. */
int target_rkey(struct target *t, struct fab_rkey *rk);
void target_stop(struct target *t);

#endif /* FERRY_TESTS_FABRIC_FAB_TARGET_H */
