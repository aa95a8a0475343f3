// SPDX-License-Identifier: MIT
/* The migration engine's host for unit tests (fake_host.h). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/migration/fake_host.h"

static uint64_t clock_ns, clock_reads;

void fake_clock_set(uint64_t ns)
{
	__atomic_store_n(&clock_ns, ns, __ATOMIC_SEQ_CST);
}

uint64_t fake_clock_get(void)
{
	return __atomic_load_n(&clock_ns, __ATOMIC_SEQ_CST);
}

uint64_t fake_clock_reads(void)
{
	return __atomic_load_n(&clock_reads, __ATOMIC_SEQ_CST);
}

static uint64_t fake_now(void)
{
	__atomic_add_fetch(&clock_reads, 1, __ATOMIC_SEQ_CST);
	return fake_clock_get();
}

static struct fake_host *of(void *host)
{
	return host;
}

/* As the wire would: encoded (an invalid message fails), decoded back. */
static int fake_send(void *host, struct mig_peer *p, const struct proto_msg *m)
{
	struct fake_host *h = of(host);
	struct proto_msg *copy;
	size_t len;
	void *buf;
	int ret;

	if (h->send_ret)
		return h->send_ret;
	ret = proto_encode(m, &buf, &len);
	if (ret)
		return ret;
	ret = proto_decode(buf, len, &copy, NULL, 0);
	free(buf);
	assert_int_equal(ret, 0);
	if (h->nsent < FAKE_SENT) {
		h->sent_to[h->nsent] = p;
		h->sent[h->nsent++] = *copy;
		free(copy); /* its arrays are h->sent's now */
	} else {
		proto_msg_free(copy);
	}
	return 0;
}

void fake_host_forget_sent(struct fake_host *h)
{
	for (size_t i = 0; i < h->nsent; i++) {
		struct proto_msg *m = malloc(sizeof(*m));

		assert_non_null(m);
		*m = h->sent[i];
		proto_msg_free(m);
	}
	h->nsent = 0;
}

static enum mig_peer_state fake_state(void *host, const struct mig_peer *p,
				      uint64_t now)
{
	struct fake_host *h = of(host);

	(void)now;
	return h->state[p - h->peers];
}

static struct mig_peer *fake_find(void *host, const char *name)
{
	struct fake_host *h = of(host);

	for (size_t i = 0; i < h->npeers; i++)
		if (!strcmp(h->peers[i].name, name))
			return &h->peers[i];
	return NULL;
}

static struct mig_vm *fake_vm_find(void *host, const char *name, bool rescan)
{
	struct fake_host *h = of(host);

	(void)rescan;
	for (int i = 0; i < FAKE_VMS; i++)
		if (h->vms[i].used && !strcmp(h->vms[i].name, name))
			return &h->vms[i];
	return NULL;
}

static struct mig_vm *fake_vm_add(void *host, const char *name)
{
	struct fake_host *h = of(host);

	for (int i = 0; i < FAKE_VMS; i++) {
		if (!h->vms[i].used) {
			h->vms[i].used = true;
			snprintf(h->vms[i].name, sizeof(h->vms[i].name), "%s",
				 name);
			return &h->vms[i];
		}
	}
	return NULL;
}

static void fake_vm_forget(void *host, struct mig_vm *vm)
{
	struct fake_host *h = of(host);

	/* as node's: the client goes, the VM runs on */
	if (vm->kc && h->env.vm_ops)
		h->env.vm_ops->close(vm->kc);
	memset(vm, 0, sizeof(*vm));
}

static int fake_spawn(void *host, const char *name, uint64_t mem,
		      unsigned vcpus, enum kva_accel accel, int ram_fd,
		      pid_t *pid)
{
	struct fake_host *h = of(host);

	(void)name, (void)mem, (void)vcpus, (void)accel;
	if (!h->spawn_pid)
		return -ENOSYS;
	__atomic_store_n(&h->spawn_ram, ram_fd >= 0, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&h->spawned, 1, __ATOMIC_SEQ_CST);
	*pid = h->spawn_pid;
	return 0;
}

static int fake_sock_path(void *host, const char *name, char *buf, size_t len)
{
	struct fake_host *h = of(host);
	int w = snprintf(buf, len, "%s/%s.sock", h->dir, name);

	return w < 0 || (size_t)w >= len ? -ENAMETOOLONG : 0;
}

static int fake_unlink_sock(void *host, const char *name)
{
	struct fake_host *h = of(host);

	(void)name;
	__atomic_add_fetch(&h->unlinked, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/*
 * The test's domain (env.fab) for reads: the fake fabric reads only
 * regions of the domain reading, the source's among them, so incoming
 * migrations share it and the tests run one at a time. No fault domain:
 * post-copy is refused.
 */
static int fake_fab_open(void *host, bool fault, struct fab_domain **out)
{
	struct fake_host *h = of(host);

	if (fault || !h->env.fab)
		return -ENODATA;
	*out = h->env.fab;
	return 0;
}

/* The test closes its domain itself. */
static void fake_fab_close(void *host, struct fab_domain *d)
{
	(void)host, (void)d;
}

static const struct mig_host_ops fake_ops = {
	.send = fake_send,
	.peer_state = fake_state,
	.peer_find = fake_find,
	.vm_find = fake_vm_find,
	.vm_add = fake_vm_add,
	.vm_forget = fake_vm_forget,
	.vm_spawn = fake_spawn,
	.vm_sock_path = fake_sock_path,
	.vm_unlink_sock = fake_unlink_sock,
	.fab_open = fake_fab_open,
	.fab_close = fake_fab_close,
};

struct fake_host *fake_host_new(const char *const *names)
{
	struct fake_host *h = calloc(1, sizeof(*h));

	assert_non_null(h);
	strcpy(h->dir, "/tmp/ferry-fake-host.XXXXXX");
	assert_non_null(mkdtemp(h->dir));
	for (; names && *names && h->npeers < FAKE_PEERS; names++) {
		h->peers[h->npeers].name = *names;
		h->state[h->npeers++] = MIG_PEER_REACHABLE;
	}
	h->env.ops = &fake_ops;
	h->env.host = h;
	h->env.cfg = (struct mig_conf){
		.name = "a",
		.peer_timeout_ms = 1500,
		.mig_timeout_ms = 10000,
		.vm_timeout_ms = 1000,
		.auto_converge = PROTO_CONVERGE_DOWNTIME,
		.cpu_throttle_initial = 20,
		.cpu_throttle_increment = 10,
		.max_cpu_throttle = 99,
		.max_incoming = 4,
		.max_outgoing = 4,
	};
	/* the engine's news: what a destination's thread sent, its end */
	h->env.mig_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(h->env.mig_efd >= 0);
	h->env.now = fake_now;
	fake_clock_set(FAKE_CLOCK_START);
	snprintf(h->env.mig_dir, sizeof(h->env.mig_dir), "%s", h->dir);
	assert_int_equal(mig_open(&h->env), 0);
	return h;
}

void fake_host_free(struct fake_host *h)
{
	char cmd[128];

	mig_close(&h->env);
	fake_host_forget_sent(h);
	for (int i = 0; i < FAKE_VMS; i++)
		if (h->vms[i].used)
			fake_vm_forget(h, &h->vms[i]);
	close(h->env.mig_efd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	assert_int_equal(system(cmd), 0);
	free(h);
}
