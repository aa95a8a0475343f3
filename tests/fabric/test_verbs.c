// SPDX-License-Identifier: MIT
/*
 * The verbs backend in one process, on the RDMA device of the test VM
 * (rxe0): choosing the address, refusals, bookkeeping, a connection that
 * cannot be made, connect requests that are not ferry's. The two-process
 * exchanges are test_fabric.c's, run with FERRY_FABRIC_PROVIDER=verbs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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

#include <rdma/rdma_cma.h>

#include "common/log.h"
#include "fabric/fabric.h"
#include "tests/fabric/fab_target.h"
#include "tests/rxe.h"

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
	int ret;
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
	/*
	 * The refusal may come before the read (the progress thread took
	 * it): then the endpoint has failed and the read says so at once.
	 */
	ret = fab_read(ep, buf + 4096, 4096, mr2, &rk, 0, buf);
	if (ret) {
		assert_int_equal(ret, -ENOTCONN);
		print_message("read from nowhere: refused at once\n");
	} else {
		assert_int_equal(fab_poll(d2, &c, 1, 10000), 1);
		print_message("read from nowhere: %s\n", strerror(-c.status));
		assert_ptr_equal(c.ctx, buf);
		assert_true(c.status < 0);
	}
	assert_int_equal(fab_read(ep, buf + 4096, 4096, mr2, &rk, 0, NULL),
			 -ENOTCONN);
	fab_domain_close(d2); /* closes ep, deregisters mr2 */
	fab_domain_close(d); /* deregisters mr */
}

/* The type of the next event on ch within 10 s, or -1. */
static int next_event(struct rdma_event_channel *ch)
{
	struct pollfd p = { .fd = ch->fd, .events = POLLIN };
	struct rdma_cm_event *ev;
	int type;

	if (poll(&p, 1, 10000) != 1 || rdma_get_cm_event(ch, &ev))
		return -1;
	type = ev->event;
	rdma_ack_cm_event(ev);
	return type;
}

/* A plain librdmacm client connects to a with private data pd: the event. */
static int rogue_connect(const struct fab_addr *a, const void *pd, uint8_t len)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct rdma_conn_param cp = {
		.private_data = pd,
		.private_data_len = len,
		.retry_count = 1,
	};
	struct ibv_qp_init_attr qa = {
		.cap = { .max_send_wr = 1,
			 .max_recv_wr = 1,
			 .max_send_sge = 1,
			 .max_recv_sge = 1 },
		.qp_type = IBV_QPT_RC,
	};
	struct rdma_cm_id *id;
	int type;

	assert_non_null(ch);
	assert_int_equal(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP), 0);
	assert_int_equal(rdma_resolve_addr(id, NULL,
					   (struct sockaddr *)a->bytes, 2000),
			 0);
	assert_int_equal(next_event(ch), RDMA_CM_EVENT_ADDR_RESOLVED);
	assert_int_equal(rdma_resolve_route(id, 2000), 0);
	assert_int_equal(next_event(ch), RDMA_CM_EVENT_ROUTE_RESOLVED);
	/* librdmacm's own protection domain and queues */
	assert_int_equal(rdma_create_qp(id, NULL, &qa), 0);
	assert_int_equal(rdma_connect(id, &cp), 0);
	type = next_event(ch);
	rdma_destroy_qp(id);
	rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	return type;
}

/*
 * A peer's connect request is checked before anything of it is used: no
 * hello, a foreign one, a length past its buffer, an address of no IP
 * family are all rejected, and the domain serves a real peer after them.
 */
static void test_rogue_hello(void **state)
{
	struct {
		uint32_t magic;
		uint16_t len;
		uint8_t addr[28];
	} __attribute__((packed)) h = { htonl(0x66727976), htons(200), { 0 } };
	static const char junk[] = "not a ferry hello at all";
	struct fab_opts o = { .provider = "verbs", .progress_thread = true };
	struct fab_domain *d, *d2;
	struct fab_mr *mr, *mr2;
	struct fab_rkey rk;
	struct fab_addr a;
	struct fab_ep *ep;
	struct fab_cqe c;
	static char buf[8192];

	(void)state;
	assert_int_equal(fab_domain_open(&o, &d), 0);
	fab_domain_addr(d, &a);
	assert_int_equal(rogue_connect(&a, NULL, 0), RDMA_CM_EVENT_REJECTED);
	assert_int_equal(rogue_connect(&a, junk, sizeof(junk)),
			 RDMA_CM_EVENT_REJECTED);
	assert_int_equal(rogue_connect(&a, &h, sizeof(h)),
			 RDMA_CM_EVENT_REJECTED);
	h.len = htons(16); /* family 0: no IP address */
	assert_int_equal(rogue_connect(&a, &h, sizeof(h)),
			 RDMA_CM_EVENT_REJECTED);

	strcpy(buf, "still serving");
	assert_int_equal(fab_mr_reg(d, buf, 4096, FAB_ACCESS_READ, &mr), 0);
	fab_mr_rkey(mr, &rk);
	assert_int_equal(fab_domain_open(&o, &d2), 0);
	assert_int_equal(
		fab_mr_reg(d2, buf + 4096, 4096, FAB_ACCESS_LOCAL, &mr2), 0);
	assert_int_equal(fab_ep_connect(d2, &a, &ep), 0);
	assert_int_equal(fab_read(ep, buf + 4096, 4096, mr2, &rk, 0, NULL), 0);
	assert_int_equal(fab_poll(d2, &c, 1, 10000), 1);
	assert_int_equal(c.status, 0);
	assert_string_equal(buf + 4096, "still serving");
	fab_domain_close(d2);
	fab_domain_close(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs_local),
		cmocka_unit_test(test_rogue_hello),
	};

	fy_log_set_level(getenv("FY_DEBUG") ? FY_LOG_DEBUG : FY_LOG_ERR);
	if (!rdma_here()) {
		printf("no RDMA device here: run suite rdma in the test VM "
		       "(softroce-ci/run)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
