/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_POSTCOPY_PC_HOLDER_H
#define FERRY_TESTS_POSTCOPY_PC_HOLDER_H

#include <stddef.h>
#include <sys/types.h>

#include "fabric/fabric.h"

/*
 * A holder for pc_fault's tests and bench/postcopy: a child process that registers memory in
 * a fabric domain of its own, says where over a socket and serves reads
 * until the socket closes. Fork it before the parent opens a domain.
 */

struct holder_info {
	struct fab_addr addr;
	struct fab_rkey rkey;
	int status; /* 0, or the -errno that stopped the holder */
};

struct holder {
	pid_t pid;
	int sock;
	struct holder_info info;
};

/*
 * In the child: register mem (size bytes; MAP_FAILED: err is why there is
 * none) in a domain of provider (NULL: the default), write its holder_info
 * to sock, serve until EOF. Its exit status.
 */
int holder_serve(int sock, void *mem, size_t size, int err,
		 const char *provider);
/*
 * In the parent after fork(): keep sv[0], read the holder's info. 0, or -1
 * if the holder said nothing or failed.
 */
int holder_started(struct holder *h, int sv[2]);
/* SIGKILL the holder and reap it; nothing if it was never started. */
void holder_kill(struct holder *h);

#endif /* FERRY_TESTS_POSTCOPY_PC_HOLDER_H */
