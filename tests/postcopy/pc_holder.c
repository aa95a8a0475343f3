// SPDX-License-Identifier: MIT
/* The holder process of pc_fault's tests (pc_holder.h). */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/postcopy/pc_holder.h"

int holder_serve(int sock, void *mem, size_t size, int err,
		 const char *provider)
{
	struct fab_opts o = { .provider = provider, .progress_thread = true };
	struct holder_info h = { .status = mem == MAP_FAILED ? err : 0 };
	struct fab_domain *d = NULL;
	struct fab_mr *mr = NULL;
	char c;

	if (!h.status)
		h.status = fab_domain_open(&o, &d);
	if (!h.status)
		h.status = fab_mr_reg(d, mem, size, FAB_ACCESS_READ, &mr);
	if (!h.status) {
		fab_domain_addr(d, &h.addr);
		fab_mr_rkey(mr, &h.rkey);
	}
	if (write(sock, &h, sizeof(h)) != sizeof(h))
		return 1;
	while (read(sock, &c, 1) > 0)
		;
	fab_domain_close(d);
	return 0;
}

int holder_started(struct holder *h, int sv[2])
{
	close(sv[1]);
	h->sock = sv[0];
	if (read(h->sock, &h->info, sizeof(h->info)) != sizeof(h->info))
		return -1;
	return h->info.status ? -1 : 0;
}

void holder_kill(struct holder *h)
{
	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
		close(h->sock);
		h->pid = 0;
	}
}
