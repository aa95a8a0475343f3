/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_INTEGRATION_ITEST_H
#define FERRY_TESTS_INTEGRATION_ITEST_H

/*
 * Helpers of the integration tests: real ferryd (and ferry-vm) processes
 * on loopback, driven with the real ferry CLI. Every child is started with
 * PR_SET_PDEATHSIG and recorded; kill_children() (teardown, atexit) SIGKILLs
 * whatever is left, so a failing run leaves no process behind.
 */
#include <stdbool.h>
#include <sys/types.h>

#define MAX_CHILDREN 16
#define OUT_MAX 16384

extern const char *ferryd_bin, *ferry_bin;
extern char tmpdir[128];
/* Lines node_init() adds to each [node] section ("key = value\n"...). */
extern const char *itest_node_extra;
/* Peers added from now on may send us user VMs (default true). */
extern bool itest_accept_user;

struct node {
	char name[16];
	int port;
	char dir[256], conf[300], log[300], sock[300];
	char key[48];
	pid_t pid;
};

double now_s(void);
void sleep_ms(int ms);
/* SIGKILL and reap every recorded child. */
void kill_children(void);
/* Record a child (killed by kill_children()); forget one that is reaped. */
void track(pid_t pid);
void untrack(pid_t pid);
/* A free loopback TCP port. */
int free_port(void);
/* Run argv (killed after 10 s) capturing stdout, stderr; exit code or 128+sig. */
int run(char *out, char *err, const char *const argv[]);
/* The same with another deadline. */
int run_for(char *out, char *err, const char *const argv[], double secs);
/* A file's contents (static buffer, 256 KiB at most). */
char *slurp(const char *path);
/* Occurrences of needle in hay. */
int count(const char *hay, const char *needle);
/* Config and key pair of node name in tmpdir; start it, wait for it. */
void node_init(struct node *n, const char *name);
void node_add_peer(struct node *n, const char *name, int port, const char *key);
void node_start(struct node *n);
int node_wait(struct node *n, double timeout_s);
/* Wait until n's ferryd answers on its control socket (a hang guard). */
void node_ready(struct node *n);
/* `ferry -s SOCK [--json] CMD`; returns its exit code. */
int ferry(struct node *n, bool json, const char *cmd, char *out, char *err);
/* Seconds until want peers of n show state, or -1 after timeout_s. */
double wait_state(struct node *n, const char *state, int want,
		  double timeout_s);
/* The integer after "key": in json, or -1. */
long json_num(const char *json, const char *key);
/* cmocka fixtures: make tmpdir; kill children; remove tmpdir. */
/* itest_vm.c: the migration tests' helpers */

/* ferry -s SOCK ARGS... (up to 28, NULL-terminated), deadline secs. */
int ferry_args(struct node *n, double secs, char *out, char *err, ...);
/* The number after "key": in json, or -1. */
double json_dbl(const char *json, const char *key);
/*
 * The accelerator of the guests the tests start: FERRY_TEST_ACCEL, else
 * user (kvm in a ThreadSanitizer build). A destination's follows it.
 */
const char *itest_accel(void);
/* Start vm_bin as VM name in n's vm_dir, wait until ferryd lists it. */
pid_t itest_start_vm(struct node *n, const char *vm_bin, const char *name,
		     const char *const *opts);
/* The guest counter key of the first VM n lists (-1 on error). */
long vm_counter(struct node *n, const char *key);
/* Wait for vm_counter(n, key) >= want while the guest runs (20 s idle). */
void wait_counter(struct node *n, const char *key, long want);
/* Our child ferry-vm pid exits with status 0 within 10 s. */
void wait_vm_exit(pid_t pid);
/* SIGKILL the ferry-vm processes node n started itself. */
void kill_node_vms(struct node *n);
/* pid no longer runs (or is a zombie). */
bool pid_gone(pid_t pid);
/* Entries of dir other than dot files, -1 if it cannot be read. */
int files_in(const char *dir);
/* n's ferryd still runs and its log shows no crash. */
void itest_no_crash(struct node *n);
/* Print both nodes' logs (a failing test's evidence). */
void itest_dump_logs(struct node *a, struct node *b);
/* Nodes a and b listing each other, started, both seeing the other. */
void itest_pair(struct node *a, struct node *b);
/* itest_pair() from new state directories, ferry_vm in the configuration. */
void itest_fresh_pair(struct node *a, struct node *b, const char *ferry_vm);
/*
 * A test binary's start: FERRYD, FERRY (and FERRY_VM into *vm_bin unless
 * vm_bin is NULL) from the environment, ITEST_FILTER, kill_children() at
 * exit, SIGPIPE ignored. Returns 0, or 1 with a message.
 */
int itest_env(const char **vm_bin);
/* 0 as root, else 1 with a message naming what. */
int itest_need_root(const char *what);
struct CMUnitTest;
/* Run the n tests as group "integration", then kill_children(). */
int itest_run(const struct CMUnitTest *tests, size_t n,
	      int (*group_setup)(void **));

int setup(void **state);
int teardown(void **state);
int group_teardown(void **state);

#endif /* FERRY_TESTS_INTEGRATION_ITEST_H */
