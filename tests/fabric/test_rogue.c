// SPDX-License-Identifier: MIT
/*
 * What a process that is not a ferry peer can do to a ferry domain
 * (docs/security.md). The binary re-executes itself as a holder
 * ("--target PROVIDER SEED FD"): a ferry domain with a progress thread
 * and 1 MiB of secret bytes, the first half registered for remote reads
 * (as a source registers guest RAM), the second for local access only (as
 * a destination registers its buffers); then it sleeps in read() on a
 * socketpair. The test process is the rogue: its own libfabric endpoints,
 * no ferry code, one-sided reads with guessed keys, each on a connection
 * of its own. It knows the holder's fabric address (a HELLO carries it, a
 * port scan finds it) and, to check itself, the real keys.
 *
 * ofi:tcp: every guessed key fails and no byte of the secret arrives;
 * writes change nothing; with a real key (what a HOLDER_MAP carries) a
 * read works, so the key is the whole protection. ofi:shm: the provider
 * checks no key: a wrong key at the region's address reads the secret,
 * the limitation docs/security.md states.
 * Also: the fabric listens on the configured address only; keys are random.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* before rdma/fabric.h, whose container_of() yields to ours */
#include "common/log.h"
#include "common/util.h"
#include "fabric/fabric.h"

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define REGION (1024 * 1024UL)
#define RLEN 4096 /* bytes per rogue read */
#define NGUESS 1025 /* keys 0..1024 */
#define NRANDOM 8 /* and a few random ones */
#define OP_WAIT_NS 3000000000ULL /* a rogue read not done by then: hang */

struct hello {
	int32_t status;
	struct fab_addr addr;
	struct fab_rkey rk;
	uint64_t buf; /* the region's virtual address in the holder */
	struct fab_rkey lrk; /* a second one, FAB_ACCESS_LOCAL only */
	char provider[64];
};

#define SECRET_MUL 0xD6E8FEB86659FD93ULL /* odd: invertible mod 2^64 */

static void secret_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t *w = buf;
	size_t k;

	for (k = 0; k < len / 8; k++)
		w[k] = (k + 1) * SECRET_MUL ^ seed;
}

/* Does buf hold any 8-byte word of the secret, at any place? */
static bool secret_seen(const void *buf, size_t len, uint64_t seed)
{
	const uint64_t *w = buf;
	uint64_t inv = SECRET_MUL;
	size_t k;
	int i;

	/* Newton: each step doubles the bits of inv * SECRET_MUL == 1 */
	for (i = 0; i < 6; i++)
		inv *= 2 - SECRET_MUL * inv;
	for (k = 0; k < len / 8; k++) {
		/* the secret's words are (j + 1) * SECRET_MUL ^ seed */
		uint64_t j = (w[k] ^ seed) * inv;

		if (j >= 1 && j <= REGION / 8)
			return true;
	}
	return false;
}

/* The holder: a separate process, as ferryd is. */
static int target_main(const char *prov, uint64_t seed, int sock)
{
	struct fab_opts o = { .provider = prov, .progress_thread = true };
	struct fab_domain *d = NULL;
	struct fab_mr *mr = NULL, *lmr = NULL;
	struct hello h = { 0 };
	void *buf, *want;
	char c;

	/* writable: only the fabric stands between a remote write and it */
	buf = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	want = malloc(REGION);
	if (buf == MAP_FAILED || !want)
		return 1;
	secret_fill(buf, REGION, seed);
	secret_fill(want, REGION, seed);
	h.status = fab_domain_open(&o, &d);
	if (!h.status)
		h.status = fab_mr_reg(d, buf, REGION / 2, FAB_ACCESS_READ, &mr);
	/* the other half as a destination registers its buffers */
	if (!h.status)
		h.status = fab_mr_reg(d, (char *)buf + REGION / 2, REGION / 2,
				      FAB_ACCESS_LOCAL, &lmr);
	if (!h.status) {
		fab_mr_rkey(lmr, &h.lrk);
		fab_domain_addr(d, &h.addr);
		fab_mr_rkey(mr, &h.rk);
		h.buf = (uint64_t)(uintptr_t)buf;
		snprintf(h.provider, sizeof(h.provider), "%s",
			 fab_domain_provider(d));
	}
	if (fy_full_io(sock, &h, sizeof(h), true) || h.status)
		goto out;
	/*
	 * Only the progress thread serves the rogue. 'v': is the region
	 * intact? 'p': restore it and map it read-only, as ferryd maps a
	 * source's guest RAM.
	 */
	while (!fy_full_io(sock, &c, 1, false) && c != 'q') {
		int32_t r;

		if (c == 'p') {
			memcpy(buf, want, REGION);
			r = mprotect(buf, REGION, PROT_READ) ? -errno : 0;
		} else {
			r = !memcmp(want, buf, REGION);
		}
		if (fy_full_io(sock, &r, sizeof(r), true))
			break;
	}
out:
	fab_mr_dereg(lmr);
	fab_mr_dereg(mr);
	fab_domain_close(d);
	munmap(buf, REGION);
	free(want);
	return h.status ? 1 : 0;
}

struct target {
	pid_t pid;
	int sock;
	struct hello h;
};

static void target_start(struct target *t, const char *prov, uint64_t seed)
{
	char sseed[32], sfd[16];
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	t->pid = fork();
	assert_true(t->pid >= 0);
	if (!t->pid) {
		close(sv[0]);
		snprintf(sseed, sizeof(sseed), "%" PRIu64, seed);
		snprintf(sfd, sizeof(sfd), "%d", sv[1]);
		execl("/proc/self/exe", "test_rogue", "--target", prov, sseed,
		      sfd, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	t->sock = sv[0];
	assert_int_equal(fy_full_io(t->sock, &t->h, sizeof(t->h), false), 0);
	assert_int_equal(t->h.status, 0);
}

static int32_t target_cmd(struct target *t, char c)
{
	int32_t r = 0;

	assert_int_equal(fy_full_io(t->sock, &c, 1, true), 0);
	assert_int_equal(fy_full_io(t->sock, &r, sizeof(r), false), 0);
	return r;
}

/* Does the holder's region still hold the secret, unchanged? */
static bool target_intact(struct target *t)
{
	return target_cmd(t, 'v');
}

static void target_stop(struct target *t)
{
	char q = 'q';
	int st;

	assert_int_equal(fy_full_io(t->sock, &q, 1, true), 0);
	close(t->sock);
	assert_int_equal(waitpid(t->pid, &st, 0), t->pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/*
 * The rogue: plain libfabric, nothing of ferry. NROGUE endpoints, each
 * with its own connection to the holder, so that NROGUE guesses run at
 * once (a holder's progress thread takes up to 20 ms to notice a new
 * connection), each read alone on its connection.
 */
#define NROGUE 16

struct rogue {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	struct fid_mr *mr;
	void *desc;
	char *buf;
	fi_addr_t fa;
	struct fi_context2 ctx;
	/* the operation under way */
	bool write, posted;
	uint64_t addr, key;
};

static void rogue_open(struct rogue *r, const char *prov)
{
	struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_CONTEXT,
				      .size = 64 };
	struct fi_av_attr av_attr = { .type = FI_AV_UNSPEC };
	struct fi_info *h = fi_allocinfo();
	bool ip = strcmp(prov, "shm") != 0;

	memset(r, 0, sizeof(*r));
	assert_non_null(h);
	h->ep_attr->type = FI_EP_RDM;
	h->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE;
	h->mode = FI_CONTEXT | FI_CONTEXT2;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR |
				  FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	h->fabric_attr->prov_name = strdup(prov);
	assert_int_equal(fi_getinfo(FI_VERSION(1, 17), ip ? "127.0.0.1" : NULL,
				    NULL, ip ? FI_SOURCE : 0, h, &r->info),
			 0);
	fi_freeinfo(h);
	assert_int_equal(fi_fabric(r->info->fabric_attr, &r->fabric, NULL), 0);
	assert_int_equal(fi_domain(r->fabric, r->info, &r->domain, NULL), 0);
	assert_int_equal(fi_cq_open(r->domain, &cq_attr, &r->cq, NULL), 0);
	assert_int_equal(fi_av_open(r->domain, &av_attr, &r->av, NULL), 0);
	assert_int_equal(fi_endpoint(r->domain, r->info, &r->ep, NULL), 0);
	assert_int_equal(fi_ep_bind(r->ep, &r->av->fid, 0), 0);
	assert_int_equal(fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV),
			 0);
	assert_int_equal(fi_enable(r->ep), 0);
	r->buf = mmap(NULL, RLEN, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(r->buf != MAP_FAILED);
	if (r->info->domain_attr->mr_mode & FI_MR_LOCAL) {
		assert_int_equal(fi_mr_reg(r->domain, r->buf, RLEN,
					   FI_READ | FI_WRITE, 0, 0, 0, &r->mr,
					   NULL),
				 0);
		r->desc = fi_mr_desc(r->mr);
	}
}

static void rogue_close(struct rogue *r)
{
	fi_close(&r->ep->fid);
	if (r->mr)
		fi_close(&r->mr->fid);
	fi_close(&r->av->fid);
	fi_close(&r->cq->fid);
	fi_close(&r->domain->fid);
	fi_close(&r->fabric->fid);
	fi_freeinfo(r->info);
	munmap(r->buf, RLEN);
}

/*
 * A read (or write of 0x5a bytes) of RLEN bytes at addr under key on a
 * fresh connection: the holder's address is inserted here and removed in
 * rogue_end() (FI_AV_REMOVE_CLEANUP drops the connection, which on tcp a
 * refused key has broken anyway).
 */
static void rogue_start(struct rogue *r, const struct fab_addr *to, bool write,
			uint64_t addr, uint64_t key)
{
	uint8_t a[FAB_ADDR_MAX + 1] = { 0 };

	memcpy(a, to->bytes, to->len);
	assert_int_equal(fi_av_insert(r->av, a, 1, &r->fa, 0, NULL), 1);
	memset(r->buf, write ? 0x5a : 0, RLEN);
	r->write = write;
	r->addr = addr;
	r->key = key;
	r->posted = false;
}

/* Post it; false while the first connection is still being made. */
static bool rogue_kick(struct rogue *r)
{
	struct fi_cq_entry ce;
	ssize_t n;

	if (r->posted)
		return true;
	if (r->write)
		n = fi_write(r->ep, r->buf, RLEN, r->desc, r->fa, r->addr,
			     r->key, &r->ctx);
	else
		n = fi_read(r->ep, r->buf, RLEN, r->desc, r->fa, r->addr,
			    r->key, &r->ctx);
	if (n == -FI_EAGAIN) {
		/* progress: nothing is posted, so nothing completes */
		assert_int_equal(fi_cq_read(r->cq, &ce, 1), -FI_EAGAIN);
		return false;
	}
	assert_int_equal(n, 0);
	r->posted = true;
	return true;
}

/* Post all of rs[0..n), connecting them at the same time. */
static void rogues_kick(struct rogue *rs, int n)
{
	uint64_t until = fy_now_ns() + OP_WAIT_NS;
	bool all;
	int k;

	do {
		all = true;
		for (k = 0; k < n; k++)
			all &= rogue_kick(&rs[k]);
		if (!all && fy_now_ns() > until)
			fail_msg("rogue: no connection to the holder");
	} while (!all);
}

/* Its completion: 0, or the -errno of the error completion. */
static int rogue_end(struct rogue *r, uint64_t until)
{
	struct fi_cq_entry ce;
	ssize_t n;
	int ret;

	for (;;) {
		n = fi_cq_read(r->cq, &ce, 1);
		if (n == 1) {
			ret = 0;
			break;
		}
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry err = { 0 };

			assert_int_equal(fi_cq_readerr(r->cq, &err, 0), 1);
			/* shm (1.17) reports some errors negative */
			ret = err.err ? -abs(err.err) : -EIO;
			break;
		}
		assert_int_equal(n, -FI_EAGAIN);
		if (fy_now_ns() > until)
			fail_msg("a rogue operation got no completion");
	}
	assert_int_equal(fi_av_remove(r->av, &r->fa, 1, 0), 0);
	return ret;
}

static int rogue_try(struct rogue *r, const struct fab_addr *to, bool write,
		     uint64_t addr, uint64_t key)
{
	rogue_start(r, to, write, addr, key);
	rogues_kick(r, 1);
	return rogue_end(r, fy_now_ns() + OP_WAIT_NS);
}

struct tally {
	int tries, ok, leaked;
};

/* Guess keys 0..1024 and NRANDOM random ones at addr, NROGUE at once. */
static void guess(struct rogue *rs, const struct target *t, uint64_t addr,
		  uint64_t seed, struct tally *tl)
{
	uint64_t key, until;
	int i = 0, k, n;

	while (i < NGUESS + NRANDOM) {
		for (n = 0; n < NROGUE && i < NGUESS + NRANDOM; i++) {
			key = (uint64_t)i;
			if (i >= NGUESS)
				assert_int_equal(getrandom(&key, sizeof(key),
							   0),
						 sizeof(key));
			rogue_start(&rs[n++], &t->h.addr, false, addr, key);
		}
		rogues_kick(rs, n);
		until = fy_now_ns() + OP_WAIT_NS;
		for (k = 0; k < n; k++) {
			tl->tries++;
			if (!rogue_end(&rs[k], until))
				tl->ok++;
			if (secret_seen(rs[k].buf, RLEN, seed))
				tl->leaked++;
		}
	}
}

static void rogues_open(struct rogue *rs, const char *prov)
{
	int i;

	for (i = 0; i < NROGUE; i++)
		rogue_open(&rs[i], prov);
}

static void rogues_close(struct rogue *rs)
{
	int i;

	for (i = 0; i < NROGUE; i++)
		rogue_close(&rs[i]);
}

static void test_rogue_tcp(void **state)
{
	struct tally at0 = { 0 }, atva = { 0 };
	struct rogue rs[NROGUE];
	struct target t;
	uint64_t seed, t0;
	int wr_real, wr_bad;

	(void)state;
	assert_int_equal(getrandom(&seed, sizeof(seed), 0), sizeof(seed));
	target_start(&t, "ofi:tcp", seed);
	assert_string_equal(t.h.provider, "ofi:tcp;ofi_rxm");
	/* tcp addresses by offset: rk.addr is 0, the key is 64 random bits */
	assert_int_equal(t.h.rk.addr, 0);
	rogues_open(rs, "tcp;ofi_rxm");

	t0 = fy_now_ns();
	guess(rs, &t, 0, seed, &at0);
	guess(rs, &t, t.h.buf, seed, &atva);
	print_message("tcp: guessed keys: %d reads at base 0, %d at the "
		      "region's address: %d and %d succeeded, secret seen "
		      "%d times (%.1f s)\n",
		      at0.tries, atva.tries, at0.ok, atva.ok,
		      at0.leaked + atva.leaked, (fy_now_ns() - t0) / 1e9);
	assert_int_equal(at0.ok + atva.ok, 0);
	assert_int_equal(at0.leaked + atva.leaked, 0);
	assert_int_equal(at0.tries + atva.tries, 2 * (NGUESS + NRANDOM));

	/*
	 * Writes, into a registration peers may only read: with a wrong key
	 * and even with the real one. The initiator's completion says only
	 * that the data left (tcp completes writes when sent), so what
	 * counts is that the holder's bytes did not change.
	 */
	wr_bad = rogue_try(&rs[0], &t.h.addr, true, 0, 1);
	wr_real = rogue_try(&rs[0], &t.h.addr, true, t.h.rk.addr, t.h.rk.key);
	assert_true(target_intact(&t));

	/*
	 * The control: with the key a HOLDER_MAP carries, the same rogue
	 * reads the secret. tcp authenticates nobody; only the key protects.
	 */
	assert_int_equal(rogue_try(&rs[0], &t.h.addr, false, t.h.rk.addr + 8192,
				   t.h.rk.key),
			 0);
	assert_true(secret_seen(rs[0].buf, RLEN, seed));
	/*
	 * So is a registration for local access only, such as a destination's
	 * buffers: ofi_rxm (1.17) grants FI_REMOTE_READ on every registration
	 * (it reads large messages with RMA). Its key, never sent to anyone,
	 * is what keeps it private.
	 */
	assert_int_equal(rogue_try(&rs[0], &t.h.addr, false, t.h.lrk.addr,
				   t.h.lrk.key),
			 0);
	assert_true(secret_seen(rs[0].buf, RLEN, seed));
	print_message("tcp: writes (wrong key: %s, real key: %s): region "
		      "unchanged; reads with the real keys work, also of a "
		      "local-only registration\n",
		      wr_bad ? strerror(-wr_bad) : "completed",
		      wr_real ? strerror(-wr_real) : "completed");
	rogues_close(rs);
	target_stop(&t);
}

static void test_rogue_shm(void **state)
{
	struct tally at0 = { 0 }, atva = { 0 };
	struct rogue rs[NROGUE];
	struct target t;
	uint64_t seed;
	bool intact;
	int ret;

	(void)state;
	assert_int_equal(getrandom(&seed, sizeof(seed), 0), sizeof(seed));
	target_start(&t, "ofi:shm", seed);
	assert_string_equal(t.h.provider, "ofi:shm");
	/* shm addresses by virtual address */
	assert_int_equal(t.h.rk.addr, t.h.buf);
	rogues_open(rs, "shm");

	guess(rs, &t, 0, seed, &at0);
	guess(rs, &t, t.h.buf, seed, &atva);
	print_message("shm: guessed keys: %d reads at address 0, %d at the "
		      "region's address: %d and %d completed without error, "
		      "secret seen %d and %d times\n",
		      at0.tries, atva.tries, at0.ok, atva.ok, at0.leaked,
		      atva.leaked);
	/* nothing is mapped at 0 in the holder: no data, whatever the key */
	assert_int_equal(at0.leaked, 0);
	/*
	 * The limitation: shm (1.17) reads the holder's memory by address
	 * with process_vm_readv() and never looks at the key: every wrong
	 * key at the right address reads the secret. Only a process allowed
	 * to ptrace the holder (same user, i.e. root for ferryd) gets this
	 * far, and it could read /proc/PID/mem as well.
	 */
	assert_int_equal(atva.ok, atva.tries);
	assert_int_equal(atva.leaked, atva.tries);

	/*
	 * Nor does it check access: a write with a wrong key into a
	 * registration for reads lands in a writable mapping. Into a
	 * read-only one, as ferryd maps a source's guest RAM, the kernel
	 * refuses it.
	 */
	ret = rogue_try(&rs[0], &t.h.addr, true, t.h.buf, 1);
	intact = target_intact(&t);
	print_message("shm: a write with a wrong key into a registration for "
		      "reads: %s, region %s\n",
		      ret ? strerror(-ret) : "completed",
		      intact ? "unchanged" : "changed");
	assert_int_equal(ret, 0);
	assert_false(intact);
	assert_int_equal(target_cmd(&t, 'p'), 0);
	ret = rogue_try(&rs[0], &t.h.addr, true, t.h.buf, 1);
	intact = target_intact(&t);
	print_message("shm: the same into a read-only mapping: %s, region "
		      "%s\n",
		      ret ? strerror(-ret) : "completed",
		      intact ? "unchanged" : "changed");
	assert_true(ret < 0);
	assert_true(intact);
	rogues_close(rs);
	target_stop(&t);
}

/* Keys are 64 random bits: distinct, not counting up, not small. */
static void test_keys_random(void **state)
{
	enum { N = 64 };
	static char buf[N * 4096];
	struct fab_domain *d;
	struct fab_mr *mr[N];
	struct fab_rkey rk[N];
	uint64_t high = 0;
	int i, j;

	(void)state;
	assert_int_equal(fab_domain_open(NULL, &d), 0);
	for (i = 0; i < N; i++) {
		assert_int_equal(fab_mr_reg(d, buf + i * 4096, 4096,
					    FAB_ACCESS_READ, &mr[i]),
				 0);
		fab_mr_rkey(mr[i], &rk[i]);
		high |= rk[i].key >> 32;
		for (j = 0; j < i; j++) {
			assert_true(rk[i].key != rk[j].key);
			assert_true(rk[i].key != rk[j].key + 1);
		}
	}
	/* all 64 below 2^32 by chance: 1 in 2^2048 */
	assert_true(high != 0);
	fab_domain_close(d);
}

/* Is anything listening on TCP port `port` at `ip` (network order)? */
static bool tcp_listens(uint32_t ip, uint16_t port)
{
	char line[256];
	unsigned sl, lip, lport, st;
	bool found = false;
	FILE *f = fopen("/proc/net/tcp", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		/* "sl: local rem st": the address as the host's u32, hex */
		if (sscanf(line, " %u: %x:%x %*x:%*x %x", &sl, &lip, &lport,
			   &st) == 4 &&
		    st == 0x0a && lport == port && lip == ip)
			found = true;
	fclose(f);
	return found;
}

/* The domain listens on the configured address only; wildcards refused. */
static void test_listen_address(void **state)
{
	static const char *const wild[] = { "0.0.0.0", "::", "0" };
	struct fab_opts o = { .node = "127.0.0.2" };
	const struct sockaddr_in *sin;
	struct fab_domain *d;
	struct fab_addr a;
	struct in_addr want;
	uint16_t port;
	size_t i;

	(void)state;
	assert_int_equal(fab_domain_open(&o, &d), 0);
	fab_domain_addr(d, &a);
	assert_true(a.len >= sizeof(*sin));
	sin = (const void *)a.bytes;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(inet_pton(AF_INET, o.node, &want), 1);
	assert_int_equal(sin->sin_addr.s_addr, want.s_addr);
	port = ntohs(sin->sin_port);
	assert_true(tcp_listens(want.s_addr, port));
	assert_false(tcp_listens(htonl(INADDR_ANY), port));
	assert_false(tcp_listens(htonl(INADDR_LOOPBACK), port));
	fab_domain_close(d);

	for (i = 0; i < ARRAY_SIZE(wild); i++) {
		o.node = wild[i];
		assert_int_equal(fab_domain_open(&o, &d), -EINVAL);
		assert_null(d);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listen_address),
		cmocka_unit_test(test_keys_random),
		cmocka_unit_test(test_rogue_tcp),
		cmocka_unit_test(test_rogue_shm),
	};

	/* the rogue's removed addresses must drop their connections */
	setenv("FI_AV_REMOVE_CLEANUP", "1", 0);
	fy_log_set_level(getenv("FY_DEBUG") ? FY_LOG_DEBUG : FY_LOG_ERR);
	if (argc == 5 && !strcmp(argv[1], "--target"))
		return target_main(argv[2], strtoull(argv[3], NULL, 0),
				   atoi(argv[4]));
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
