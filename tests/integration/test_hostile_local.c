// SPDX-License-Identifier: MIT
/*
 * Hostile local input against one real ferryd (issue 14): a vm_dir holding
 * sockets that hang, belong to another user, are symlinks or are not
 * sockets; a state_dir anyone may write; a 200 MiB control request; 300
 * migration records, some 40 days old. Each case asserts the bound that
 * holds now: ferryd skips what it must not trust, `ferry status` answers
 * within 1 s, RSS stays under a limit, records are pruned. The hostile
 * peer is in test_hostile.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <zmq.h>

#include "itest.h"

#include "hostile.h"

static const char *vm_bin;

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 8))
		return -1;
	return fd;
}

/* ---- finding 4: vm_dir and state_dir ---- */

/* A child that listens on path as user nobody (SO_PEERCRED: 65534). */
static pid_t listen_as_nobody(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pid_t pid = fork();
	int fd;

	assert_true(pid >= 0);
	if (pid) {
		track(pid);
		return pid;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	strcpy(sa.sun_path, path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    setgid(65534) || setuid(65534) || listen(fd, 8))
		_exit(1);
	for (;;)
		pause();
}

/* A real ferry-vm listening on path (outside any vm_dir). */
static void start_vm_at(const char *path)
{
	pid_t pid = fork();
	double t0 = now_s();

	assert_true(pid >= 0);
	if (!pid) {
		execl(vm_bin, vm_bin, "--adapter", path, "--report", "0",
		      "--accel", itest_accel(), (char *)NULL);
		_exit(127);
	}
	track(pid);
	while (access(path, F_OK) && now_s() - t0 < 60)
		sleep_ms(20);
	assert_int_equal(access(path, F_OK), 0);
}

static void test_vm_dir(void **state)
{
	char out[OUT_MAX], err[OUT_MAX], path[400], other[400], vms[320];
	json_t *j;
	struct node d, e;
	struct stat st;
	double t0, t1;
	int hang;

	(void)state;
	node_init(&d, "vd");
	node_start(&d);
	node_ready(&d);
	snprintf(vms, sizeof(vms), "%s/state/vms", d.dir);
	/* a socket that takes connections and never answers */
	snprintf(path, sizeof(path), "%s/hang.sock", vms);
	hang = listen_unix(path);
	assert_true(hang >= 0);
	/* a real ferry-vm outside vm_dir, reached through a symlink */
	snprintf(other, sizeof(other), "%s/elsewhere.sock", tmpdir);
	start_vm_at(other);
	snprintf(path, sizeof(path), "%s/link.sock", vms);
	assert_int_equal(symlink(other, path), 0);
	/* another user's ferry-vm (its socket file is ours: SO_PEERCRED) */
	snprintf(path, sizeof(path), "%s/nobody.sock", vms);
	listen_as_nobody(path);
	snprintf(path, sizeof(path), "%s/file.sock", vms);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	sleep_ms(300);

	base_s = status_base(&d);
	t0 = now_s();
	j = ferry_json(&d, "vms");
	t1 = now_s();
	print_message("first scan %.2f s, ferry status %.2f s\n", t1 - t0,
		      base_s);
	/* one attach that times out (500 ms), at most */
	assert_true(t1 - t0 < base_s + 1.5);
	assert_null(jfind(j, "vms", "name", "link"));
	assert_null(jfind(j, "vms", "name", "nobody"));
	assert_null(jfind(j, "vms", "name", "hang"));
	status_fast(&d);
	t0 = now_s();
	assert_int_equal(ferry(&d, true, "vms", out, err), 0);
	print_message("second scan %.2f s\n", now_s() - t0);
	assert_true(now_s() - t0 < base_s + 0.5);
	assert_non_null(strstr(slurp(d.log), "not by our uid"));
	assert_non_null(strstr(slurp(d.log), "file.sock: not a socket"));
	/* the symlink's target is left alone: lstat saw a link */
	assert_int_equal(lstat(other, &st), 0);
	close(hang);
	itest_no_crash(&d);

	/* a state_dir anyone may write: refused at start */
	node_init(&e, "ve");
	snprintf(path, sizeof(path), "%s/state", e.dir);
	assert_int_equal(chmod(path, 0777), 0);
	node_start(&e);
	assert_int_equal(WEXITSTATUS(node_wait(&e, 30)), 1);
	assert_non_null(strstr(slurp(e.log), "looser than 0700"));
}

/* ---- control requests have a size limit ---- */

static void test_ctl_size(void **state)
{
	size_t big = 200 * MiB;
	int tmo = 2000, zero = 0, n;
	char ep[320], reply[256];
	long rss0, rss1;
	struct node d;
	void *ctx, *req;
	char *buf;

	(void)state;
	node_init(&d, "vc");
	node_start(&d);
	node_ready(&d);
	base_s = status_base(&d);
	rss0 = rss_kb(d.pid);
	/* a str of 200 MiB in a map: {"cmd": "status", "x": "..."} */
	buf = malloc(big);
	assert_non_null(buf);
	memset(buf, 'a', big);
	memcpy(buf,
	       "\x82\xa3"
	       "cmd\xa6"
	       "status\xa1x\xdb",
	       15);
	buf[15] = (char)((big - 19) >> 24);
	buf[16] = (char)((big - 19) >> 16);
	buf[17] = (char)((big - 19) >> 8);
	buf[18] = (char)(big - 19);
	ctx = zmq_ctx_new();
	req = zmq_socket(ctx, ZMQ_REQ);
	zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_setsockopt(req, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	snprintf(ep, sizeof(ep), "ipc://%s", d.sock);
	assert_int_equal(zmq_connect(req, ep), 0);
	assert_true(zmq_send(req, buf, big, 0) >= 0);
	free(buf);
	/* dropped with its connection, never read: no answer */
	n = zmq_recv(req, reply, sizeof(reply), 0);
	assert_int_equal(n, -1);
	zmq_close(req);
	zmq_ctx_term(ctx);
	status_fast(&d);
	rss1 = rss_kb(d.pid);
	print_message("ferryd RSS %ld MB before, %ld MB after\n", rss0 >> 10,
		      rss1 >> 10);
	assert_true(rss1 - rss0 < 32 * 1024);
	itest_no_crash(&d);
}

/* ---- records are pruned by count and by age ---- */

static void test_records(void **state)
{
	char dir[320], path[400];
	struct timespec old[2] = { { .tv_sec = time(NULL) - 40 * 86400 },
				   { .tv_sec = time(NULL) - 40 * 86400 } };
	struct node d;
	int n;

	(void)state;
	node_init(&d, "vr");
	snprintf(dir, sizeof(dir), "%s/state/migrations", d.dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	for (int i = 1; i <= 300; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/%d.src", dir, i);
		f = fopen(path, "w");
		assert_non_null(f);
		fprintf(f, "id=%d\nvm=v\npeer=nobody\nphase=completed\n", i);
		fclose(f);
		/* the oldest by far, and one of them the highest id */
		if (i == 1 || i == 300)
			assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
	}
	node_start(&d);
	node_ready(&d);
	n = files_in(dir);
	print_message("%d of 300 records kept\n", n);
	assert_true(n <= 257);
	snprintf(path, sizeof(path), "%s/1.src", dir);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/300.src", dir);
	assert_int_equal(access(path, F_OK), 0); /* the next id follows it */
	itest_no_crash(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_vm_dir, teardown),
		cmocka_unit_test_teardown(test_ctl_size, teardown),
		cmocka_unit_test_teardown(test_records, teardown),
	};

	if (itest_env(&vm_bin) || itest_need_root("SO_PEERCRED as nobody"))
		return 1;
	return itest_run(tests, sizeof(tests) / sizeof(tests[0]), setup);
}
