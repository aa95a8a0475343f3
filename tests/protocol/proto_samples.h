/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_PROTO_SAMPLES_H
#define FERRY_TESTS_PROTO_SAMPLES_H

#include <stdbool.h>
#include <stddef.h>

#include "protocol/protocol.h"

/*
 * Valid messages of every type for the unit tests, the fuzz target and its
 * seed corpus, and a field-by-field comparison written independently of
 * protocol/'s field tables (so a wrong table entry shows up as a mismatch).
 */

#define PROTO_SAMPLE_VARIANTS 3

/*
 * A valid message of type t; variant 0 is typical, 1 minimal (empty
 * arrays, zeros, short strings), 2 larger (longer arrays, big numbers).
 * Free it with proto_msg_free(). NULL on ENOMEM.
 */
struct proto_msg *proto_sample(enum proto_type t, unsigned variant);

/* Compare every field of a and b; on a difference name it in why. */
bool proto_msg_eq(const struct proto_msg *a, const struct proto_msg *b,
		  char *why, size_t whylen);

#endif /* FERRY_TESTS_PROTO_SAMPLES_H */
