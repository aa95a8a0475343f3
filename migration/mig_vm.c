// SPDX-License-Identifier: MIT
/*
 * The VM adapter behind mig_env.vm_ops (mig_vm.h): the real adapter
 * client and process calls unless a unit test handed in its fakes.
 */
#include <signal.h>
#include <sys/wait.h>

#include "migration/mig_vm.h"

static const struct mig_vm_ops real_ops = {
	.attach = kva_client_attach,
	.set_timeout = kva_client_set_timeout,
	.layout = kva_client_layout,
	.uffd = kva_client_uffd,
	.harvest = kva_client_harvest,
	.pause = kva_client_pause,
	.resume = kva_client_resume,
	.status = kva_client_status,
	.get_state = kva_client_get_state,
	.set_state = kva_client_set_state,
	.ram_done = kva_client_ram_done,
	.throttle = kva_client_throttle,
	.exit = kva_client_exit,
	.close = kva_client_close,
	.waitpid = waitpid,
	.kill = kill,
};

static const struct mig_vm_ops *ops(const struct mig_env *n)
{
	return n->vm_ops ? n->vm_ops : &real_ops;
}

int mig_vm_attach(const struct mig_env *n, const char *path,
		  unsigned int timeout_ms, struct kva_client **out)
{
	return ops(n)->attach(path, timeout_ms, out);
}

int mig_vm_set_timeout(const struct mig_env *n, struct kva_client *c,
		       unsigned int timeout_ms)
{
	return ops(n)->set_timeout(c, timeout_ms);
}

const struct kva_layout *mig_vm_layout(const struct mig_env *n,
				       const struct kva_client *c)
{
	return ops(n)->layout(c);
}

int mig_vm_uffd(const struct mig_env *n, const struct kva_client *c)
{
	return ops(n)->uffd(c);
}

int mig_vm_harvest(const struct mig_env *n, struct kva_client *c,
		   const uint64_t **bm, uint64_t *generation, uint64_t *dirty)
{
	return ops(n)->harvest(c, bm, generation, dirty);
}

int mig_vm_pause(const struct mig_env *n, struct kva_client *c)
{
	return ops(n)->pause(c);
}

int mig_vm_resume(const struct mig_env *n, struct kva_client *c)
{
	return ops(n)->resume(c);
}

int mig_vm_status(const struct mig_env *n, struct kva_client *c,
		  struct kva_status *st)
{
	return ops(n)->status(c, st);
}

int mig_vm_get_state(const struct mig_env *n, struct kva_client *c, void **blob,
		     size_t *len)
{
	return ops(n)->get_state(c, blob, len);
}

int mig_vm_set_state(const struct mig_env *n, struct kva_client *c,
		     const void *blob, size_t len)
{
	return ops(n)->set_state(c, blob, len);
}

int mig_vm_ram_done(const struct mig_env *n, struct kva_client *c)
{
	return ops(n)->ram_done(c);
}

int mig_vm_throttle(const struct mig_env *n, struct kva_client *c,
		    unsigned int pct)
{
	return ops(n)->throttle(c, pct);
}

int mig_vm_exit(const struct mig_env *n, struct kva_client *c)
{
	return ops(n)->exit(c);
}

void mig_vm_close(const struct mig_env *n, struct kva_client *c)
{
	ops(n)->close(c);
}

pid_t mig_vm_waitpid(const struct mig_env *n, pid_t pid, int *status,
		     int options)
{
	return ops(n)->waitpid(pid, status, options);
}

int mig_vm_kill(const struct mig_env *n, pid_t pid, int sig)
{
	return ops(n)->kill(pid, sig);
}
