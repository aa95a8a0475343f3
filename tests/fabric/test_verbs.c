// SPDX-License-Identifier: MIT
/*
 * The verbs backend in one process, on the RDMA device of the test VM
 * (rxe0): choosing the address, refusals, bookkeeping, a connection that
 * cannot be made. The two-process exchanges are test_fabric.c's, run
 * with FERRY_FABRIC_PROVIDER=verbs.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "common/log.h"
#include "fabric/fabric.h"
#include "tests/fabric/fab_target.h"

/* verbs in one process: choosing the address, refusals, bookkeeping. */
static void test_verbs_local(void **state)
{
	struct fab_opts o = { .provider = "verbs", .op_timeout_ms = 3000 };
	struct fab_addr a, nowhere, bad = { .len = 3 };
	struct fab_rkey rk, rk2;
	struct fab_domain *d, *d2;
	struct fab_mr *mr, *mr2;
	struct fab_ep *ep;
	struct fab_stats st;
	struct fab_cqe c;
	static char buf[8192];

	(void)state;
	o.verbs_device = "no_such_device";
	assert_int_equal(fab_domain_open(&o, &d), -ENODATA);
	assert_null(d);
	o.verbs_device = NULL;
	o.verbs_gid = 100000;
	assert_int_equal(fab_domain_open(&o, &d), -EADDRNOTAVAIL);
	o.verbs_gid = 0;
	o.node = "127.0.0.1"; /* loopback is on no RDMA device */
	assert_int_equal(fab_domain_open(&o, &d), -ENODATA);
	o.node = NULL; /* the address of the first device's RoCE v2 GID */
	assert_int_equal(fab_domain_open(&o, &d), 0);
	assert_memory_equal(fab_domain_provider(d), "verbs:", 6);
	fab_domain_addr(d, &a);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_int_equal(((struct sockaddr *)a.bytes)->sa_family, AF_INET);

	/* virtual addresses and the device's own keys */
	assert_int_equal(fab_mr_reg(d, buf, 4096, FAB_ACCESS_READ, &mr), 0);
	assert_int_equal(
		fab_mr_reg(d, buf + 4096, 4096, FAB_ACCESS_LOCAL, &mr2), 0);
	fab_mr_rkey(mr, &rk);
	fab_mr_rkey(mr2, &rk2);
	assert_int_equal(rk.addr, (uintptr_t)buf);
	assert_int_equal(rk.len, 4096);
	assert_int_not_equal(rk.key, rk2.key);

	/* a second domain on the same address connects; nothing is sent */
	o.progress_thread = true;
	assert_int_equal(fab_domain_open(&o, &d2), 0);
	assert_int_equal(fab_ep_connect(d2, &bad, &ep), -EINVAL);
	assert_int_equal(fab_ep_connect(d2, &a, &ep), 0);
	/* the device needs a registration for the local buffer */
	assert_int_equal(fab_read(ep, buf, 4096, NULL, &rk, 0, NULL), -EINVAL);
	fab_domain_stats(d2, &st);
	assert_int_equal(st.ep_count, 1);
	fab_ep_close(ep);

	/* a port where nobody listens: the read fails, with a reason */
	nowhere = a;
	((struct sockaddr_in *)nowhere.bytes)->sin_port ^= htons(0x5a5a);
	assert_int_equal(fab_mr_dereg(mr2), 0);
	assert_int_equal(
		fab_mr_reg(d2, buf + 4096, 4096, FAB_ACCESS_LOCAL, &mr2), 0);
	assert_int_equal(fab_ep_connect(d2, &nowhere, &ep), 0);
	assert_int_equal(fab_read(ep, buf + 4096, 4096, mr2, &rk, 0, buf), 0);
	assert_int_equal(fab_poll(d2, &c, 1, 10000), 1);
	print_message("read from nowhere: %s\n", strerror(-c.status));
	assert_ptr_equal(c.ctx, buf);
	assert_true(c.status < 0);
	assert_int_equal(fab_read(ep, buf + 4096, 4096, mr2, &rk, 0, NULL),
			 -ENOTCONN);
	fab_domain_close(d2); /* closes ep, deregisters mr2 */
	fab_domain_close(d); /* deregisters mr */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs_local),
	};

	fy_log_set_level(getenv("FY_DEBUG") ? FY_LOG_DEBUG : FY_LOG_ERR);
	if (!rdma_here()) {
		printf("no RDMA device here: run suite rdma in the test VM "
		       "(softroce-ci/run)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
