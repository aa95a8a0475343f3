/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the control-request tests (test_ctl.c, test_ctl_reject.c):
 * pack a request key by key with msgpack-c, so that a bad one has exactly
 * one thing wrong, and expect the decoder to refuse it. They fail the
 * running cmocka test on error, so call them from tests only.
 */
#ifndef FERRY_TESTS_CTL_RQ_H
#define FERRY_TESTS_CTL_RQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

/* A request being packed; expect_bad() frees it. */
struct rq {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

/* A map of n entries, the first "cmd": cmd (NULL: no "cmd" at all). */
void begin(struct rq *r, unsigned n, const char *cmd);
/* A key; its value is for the caller to pack with r->pk. */
void key(struct rq *r, const char *k);
void kv_str(struct rq *r, const char *k, const char *v);
void kv_u64(struct rq *r, const char *k, uint64_t v);
void kv_bool(struct rq *r, const char *k, bool v);

/*
 * `ferry migrate` as the CLI packed it by hand before it used
 * proto_ctl_encode(): 16 fields, auto_converge ac, "" and 0 for ferryd's
 * configuration.
 */
void pack_cli_migrate(struct rq *r, const char *ac);

/*
 * Decoding buf must fail with -EBADMSG and an err containing want, leaving
 * nothing half-decoded.
 */
void expect_bytes(const void *buf, size_t len, const char *want);
/* The same with r's bytes; frees r. */
void expect_bad(struct rq *r, const char *want);

#endif /* FERRY_TESTS_CTL_RQ_H */
