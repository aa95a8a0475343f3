// SPDX-License-Identifier: MIT
/*
 * The test VM's rxe devices, as the suite rdma tests see them.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/rxe.h"

bool rdma_here(void)
{
	DIR *dir = opendir("/sys/class/infiniband");
	struct dirent *e;
	bool found = false;

	while (dir && !found && (e = readdir(dir)))
		found = e->d_name[0] != '.';
	if (dir)
		closedir(dir);
	return found;
}

int rxe_device(const char *what)
{
	const char *tool = getenv("FERRY_RXE_DEVICE");
	char cmd[4096];

	if (!tool) {
		fprintf(stderr, "FERRY_RXE_DEVICE is not set\n");
		return -1;
	}
	if ((size_t)snprintf(cmd, sizeof(cmd), "%s %s", tool, what) >=
	    sizeof(cmd))
		return -1;
	return system(cmd);
}
