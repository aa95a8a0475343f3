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
#include <jansson.h>

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
/*
 * Wait up to secs for text in node n's log: where it is, in slurp()'s
 * buffer; not there by then fails the test.
 */
const char *wait_log(const struct node *n, const char *text, double secs);
/* Config and key pair of node name in tmpdir; start it, wait for it. */
void node_init(struct node *n, const char *name);
void node_add_peer(struct node *n, const char *name, int port, const char *key);
void node_start(struct node *n);
/*
 * Start n's ferryd with FERRY_FAULT=fault (docs/testing.md, "Fault
 * points"; NULL: none), this start only.
 */
void node_start_fault(struct node *n, const char *fault);
int node_wait(struct node *n, double timeout_s);
/*
 * Wait until n's ferryd is stopped (/proc/PID/stat state T: a "stop"
 * fault point fired); fails the test, showing its log, if it is not
 * within timeout_s or exits. It stays stopped: the test then SIGKILLs or
 * SIGCONTs it.
 */
void node_wait_stopped(struct node *n, double timeout_s);
/* pid is a stopped process (state T). */
bool pid_stopped(pid_t pid);
/*
 * A process whose parent is parent and whose name (comm, at most 15
 * characters) is comm, 0 if none: e.g. the incoming ferry-vm of a
 * ferryd, child_of(nb.pid, "ferry-vm").
 */
pid_t child_of(pid_t parent, const char *comm);
/* Wait until n's ferryd answers on its control socket (a hang guard). */
void node_ready(struct node *n);
/* `ferry -s SOCK [--json] CMD`; returns its exit code. */
int ferry(struct node *n, bool json, const char *cmd, char *out, char *err);
/* Seconds until want peers of n show state, or -1 after timeout_s. */
double wait_state(struct node *n, const char *state, int want,
		  double timeout_s);

/*
 * JSON replies, read as data. ferry_json() and ferry_jargs() run
 * `ferry -s SOCK --json ...` and parse what it prints; output that is not
 * one JSON object fails the test, showing the command's stderr. itest owns
 * every document they return: each stays valid until teardown() or
 * group_teardown(), which free them all. Tests never json_decref().
 */
/* out, what a `ferry --json` run printed, parsed; err shown if it fails. */
json_t *jparse(const char *out, const char *err);
/* `ferry --json CMD` (exit 0, or the test fails): its reply. */
json_t *ferry_json(struct node *n, const char *cmd);
/*
 * `ferry --json ARGS...` (NULL-terminated), deadline secs. With rc, the
 * exit code goes to *rc and a run that printed nothing returns NULL (the
 * error went to stderr); without rc, any exit but 0 fails the test.
 */
json_t *ferry_jargs(struct node *n, double secs, int *rc, ...);
/*
 * The value at path in j: keys and array indexes, "migrations[0].state",
 * "postcopy.faults", "" for j itself. NULL if absent; j may be NULL.
 */
json_t *jget(const json_t *j, const char *path);
/* The string at path, or NULL if absent or not a string. */
const char *jstr(const json_t *j, const char *path);
/* The string at path is val. */
bool jis(const json_t *j, const char *path, const char *val);
/* The integer at path, or -1 if absent or not an integer. */
long jint(const json_t *j, const char *path);
/* The number at path (integer or real), or -1 if absent or null. */
double jdbl(const json_t *j, const char *path);
/*
 * The first object of the array at path whose key is the string val, or
 * NULL: jfind(j, "vms", "name", "vm1").
 */
json_t *jfind(const json_t *j, const char *path, const char *key,
	      const char *val);
/* The length of the array at path, or -1 if there is no array. */
int jlen(const json_t *j, const char *path);
/* Objects of the array at path whose key is the string val; -1: no array. */
int jcount(const json_t *j, const char *path, const char *key, const char *val);
/* j as compact JSON, for a message (static buffer, the next call's too). */
const char *jtext(const json_t *j);
/* Fail, showing j, unless the string at path is want. */
#define assert_jstr(j, path, want) \
	itest_assert_jstr(j, path, want, false, __FILE__, __LINE__)
/* Fail, showing j, unless the string at path contains part. */
#define assert_jpart(j, path, part) \
	itest_assert_jstr(j, path, part, true, __FILE__, __LINE__)
void itest_assert_jstr(const json_t *j, const char *path, const char *want,
		       bool part, const char *file, int line);
/*
 * For itest's own polling loops, which may ask thousands of times: `ferry
 * --json CMD` parsed, NULL if it failed. The caller owns the reply and
 * json_decref()s it.
 */
json_t *itest_json_poll(struct node *n, const char *cmd);
/*
 * cmocka fixtures: make tmpdir; kill children and free the JSON documents;
 * remove tmpdir.
 */
/* itest_vm.c: the migration tests' helpers */

/* ferry -s SOCK ARGS... (up to 28, NULL-terminated), deadline secs. */
int ferry_args(struct node *n, double secs, char *out, char *err, ...);
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
/* `ferry migrate vm --to to --verify` on n completes, all pages equal. */
void itest_migrate_verified(struct node *n, const char *vm, const char *to,
			    long pages);
/* Within 20 s n lists no VM vm and runs no migration (a cancel's end). */
void itest_wait_idle(struct node *n, const char *vm);
/* n's ferryd still runs and its log shows no crash. */
void itest_no_crash(struct node *n);
/* Print both nodes' logs (a failing test's evidence). */
void itest_dump_logs(struct node *a, struct node *b);
/* Nodes a and b listing each other, started, both seeing the other. */
void itest_pair(struct node *a, struct node *b);
/* The same, a's ferryd started with FERRY_FAULT=fa, b's with fb (or NULL). */
void itest_pair_fault(struct node *a, struct node *b, const char *fa,
		      const char *fb);
/*
 * Nodes a, b and c, from new state directories, that all list each other,
 * with extra (the caller's, kept) in each [node]; b started with
 * FERRY_FAULT fb and c with fc (NULL: none); all three reachable.
 */
void itest_trio(struct node *a, struct node *b, struct node *c,
		const char *extra, const char *fb, const char *fc);
/*
 * n nodes (2 .. ITEST_NODES_MAX) named a, b, c, ... after their place in
 * all, from new state directories, that all list each other, with extra
 * (the caller's, kept) in each [node]; node i started with FERRY_FAULT
 * fault[i] (fault or fault[i] NULL: none); all of them reachable.
 */
#define ITEST_NODES_MAX 8
void itest_nodes(struct node *const *all, const char *const *fault, int n,
		 const char *extra);
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
