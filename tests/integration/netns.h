/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_INTEGRATION_NETNS_H
#define FERRY_TESTS_INTEGRATION_NETNS_H

/*
 * Test hosts: N network namespaces ("hosts") for integration tests, each
 * joined by its own veth pair to a bridge in a hub namespace, so every
 * host reaches every other through exactly one "link" of its own: its
 * veth. Host i has address 10.222.K.(i + 1)/24 on eth0 (K derived from the
 * pid) and loopback up. A link can be shaped (rate in both directions,
 * with htb; delay with netem where the kernel has it), stalled (a rate of
 * a few kbit/s), cut (the hub's port goes down: the host sees carrier
 * loss, keeps its address) and restored.
 *
 * Nothing leaves the namespaces: no device is created in the caller's
 * namespace. Processes started in a host are killed when the harness is
 * destroyed, when the test process dies (PR_SET_PDEATHSIG) or on
 * SIGINT/SIGTERM/SIGHUP/SIGQUIT and exit() (handlers installed by
 * th_create()). Namespaces are named "ferryt-<pid>-h<i>" and
 * "ferryt-<pid>-hub" (visible with `ip netns`); th_create() first removes
 * those of dead pids, left by a SIGKILLed run.
 *
 * Needs root and the ip and tc tools (iproute2).
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TH_MAX_HOSTS 8

struct testhosts;

/*
 * Create n hosts (1..TH_MAX_HOSTS), links unshaped. Returns 0 or -errno
 * (-EPERM when not root, logged with the reason).
 */
int th_create(int n, struct testhosts **out);
/*
 * Kill the processes started in the hosts, reap them, delete every
 * namespace (and with them the veths and the bridge). Accepts NULL.
 * A child already reaped by someone else (node_wait()) is left alone.
 */
void th_destroy(struct testhosts *th);
/* Remove namespaces "ferryt-<pid>-*" whose pid is dead; the number removed. */
int th_cleanup_stale(void);

/* Number of hosts. */
int th_count(const struct testhosts *th);
/* Host i's IPv4 address as text ("10.222.K.(i+1)"); valid until destroy. */
const char *th_addr(const struct testhosts *th, int host);
/* Host i's namespace name (for `ip netns exec NAME ...`). */
const char *th_netns(const struct testhosts *th, int host);
/* The subnet's third byte K. */
int th_subnet(const struct testhosts *th);
/* Whether this kernel has netem (delay); probed once. */
bool th_have_netem(void);

/*
 * Shape host i's link in both directions: rate_bps bits/s (0: no limit),
 * plus delay_us one-way delay in each direction (0: none; -EOPNOTSUPP
 * without netem). Replaces the previous shaping; may be called at any
 * time, connections survive.
 */
int th_shape(struct testhosts *th, int host, uint64_t rate_bps,
	     unsigned int delay_us);
/*
 * Change only the rate of host i's link (e.g. to 8000 for a stall). What
 * is queued stays and drains at the new rate, as on a real link; a rate
 * of 0 removes the shaping and drops the queue.
 */
int th_set_rate(struct testhosts *th, int host, uint64_t rate_bps);
/*
 * Cut host i's link (its hub port goes down: carrier loss, packets are
 * dropped both ways), or restore it. Shaping is kept across a cut.
 */
int th_cut(struct testhosts *th, int host);
int th_restore(struct testhosts *th, int host);

/*
 * Start argv (argv[0] a path or a name looked up in PATH) in host i with
 * the caller's environment, stdin from /dev/null, stdout and stderr to
 * out_fd (-1: inherited). The child dies with the caller
 * (PR_SET_PDEATHSIG) and is killed by th_destroy(). Returns 0 and *pid,
 * or -errno.
 */
int th_spawn(struct testhosts *th, int host, const char *const argv[],
	     int out_fd, pid_t *pid);
/*
 * fork() into host i: returns 0 with *pid = 0 in the child, which runs in
 * the host's network namespace (and must end with _exit()), and 0 with
 * the child's pid in the caller. Tracked like th_spawn()'s children.
 */
int th_fork(struct testhosts *th, int host, pid_t *pid);
/*
 * Wait up to timeout_ms (-1: forever) for a child of th_spawn()/th_fork();
 * 0 and its wait status, -ETIMEDOUT, or -errno. A reaped child is
 * forgotten.
 */
int th_wait(struct testhosts *th, pid_t pid, int timeout_ms, int *status);
/* SIGKILL and reap one child; 0 or -errno (-ESRCH: not ours). */
int th_kill(struct testhosts *th, pid_t pid);
/*
 * Run argv in host i to completion (killed after timeout_ms); 0 and its
 * wait status in *status, or -errno. Output goes to out_fd (-1: inherit).
 */
int th_run(struct testhosts *th, int host, const char *const argv[], int out_fd,
	   int timeout_ms, int *status);

/*
 * ferryd in a host: cmocka helpers over itest.h (they assert, like
 * node_init()), for a struct node whose ferryd listens on
 * tcp://ADDR:TH_FERRYD_PORT and binds its fabric to ADDR, the host's
 * address. Configuration, key pair, log and control socket live in
 * tmpdir/<seq>-<name>*; itest_node_extra is added to [node] as with
 * node_init(). ferry and wait_state() work on the node unchanged (the
 * control socket is a file, not in any network namespace).
 */
#define TH_FERRYD_PORT 7401 /* every host has its own ports */

struct node;

void th_node_init(struct testhosts *th, int host, struct node *n,
		  const char *name);
/* Add [peer p] to n's configuration, p running on host peer_host. */
void th_node_add_peer(struct testhosts *th, struct node *n, int peer_host,
		      const struct node *p);
/* Start n's ferryd in host (th_spawn(): killed by th_destroy()). */
void th_node_start(struct testhosts *th, int host, struct node *n);
/* The same with FERRY_FAULT=fault (NULL: none), this start only. */
void th_node_start_fault(struct testhosts *th, int host, struct node *n,
			 const char *fault);
/*
 * Two hosts, links shaped to rate_bps, node a (ferryd) on host 0 and b on
 * host 1 listing each other, started with ferry_vm and short timeouts
 * (ping 200 ms, peer 1 s, migration 5 s), each seeing the other.
 */
struct testhosts *th_pair(uint64_t rate_bps, struct node *a, struct node *b,
			  const char *ferry_vm);
/* The same, a's ferryd started with FERRY_FAULT=fa, b's with fb (or NULL). */
struct testhosts *th_pair_fault(uint64_t rate_bps, struct node *a,
				struct node *b, const char *ferry_vm,
				const char *fa, const char *fb);

#endif /* FERRY_TESTS_INTEGRATION_NETNS_H */
