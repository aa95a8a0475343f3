// SPDX-License-Identifier: MIT
/*
 * Fault points (common/fault.h): FERRY_FAULT parses or is refused with a
 * reason; a point fires once; "fail" returns true, "kill" kills the
 * process there and "stop" stops it there (checked in a child).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/fault.h"

static bool known(const char *point)
{
	return strncmp(point, "bad", 3) != 0;
}

static int init(const char *env)
{
	char err[128] = "";
	int ret;

	setenv("FERRY_FAULT", env, 1);
	ret = fy_fault_init(known, err, sizeof(err));
	assert_int_equal(!err[0], !ret); /* a reason exactly when refused */
	return ret;
}

static void test_parse(void **state)
{
	(void)state;
	assert_int_equal(init(""), 0);
	assert_false(fy_fault("a"));
	assert_int_equal(init("a:fail,src:before:committed:fail"), 0);
	assert_false(fy_fault("b"));
	assert_true(fy_fault("src:before:committed"));
	assert_false(fy_fault("src:before:committed")); /* once */
	assert_true(fy_fault("a"));
	assert_false(fy_fault("a"));
	assert_int_equal(init("bad:fail"), -EINVAL);
	assert_int_equal(init("a,,b"), -EINVAL);
	assert_int_equal(init(":fail"), -EINVAL);
	assert_int_equal(init("1,2,3,4,5,6,7,8,9"), -EINVAL);
	assert_int_equal(init("1,2,3,4,5,6,7,8"), 0);
	/* a point name may hold colons: "x:y" is a point, killed there */
	assert_int_equal(init("x:y"), 0);
	unsetenv("FERRY_FAULT");
	assert_int_equal(fy_fault_init(known, NULL, 0), 0);
}

/* A child reaching point with action: how it ends (waitpid status). */
static int child_status(const char *action)
{
	char spec[64];
	int status;
	pid_t pid;

	snprintf(spec, sizeof(spec), "p:%s", action);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		setenv("FERRY_FAULT", spec, 1);
		if (fy_fault_init(NULL, NULL, 0))
			_exit(2);
		fy_fault("q");
		fy_fault("p");
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	if (WIFSTOPPED(status)) {
		kill(pid, SIGCONT);
		assert_int_equal(waitpid(pid, &(int){ 0 }, 0), pid);
	}
	return status;
}

static void test_actions(void **state)
{
	int st;

	(void)state;
	st = child_status("kill");
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	st = child_status("stop");
	assert_true(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP);
	st = child_status("fail");
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_actions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
