/* SPDX-License-Identifier: MIT */
#ifndef FERRY_TESTS_RXE_H
#define FERRY_TESTS_RXE_H

#include <stdbool.h>

/*
 * Suite rdma's view of the test VM's devices (tests/rxe.c), for the
 * fabric and the migration tests alike.
 */

/* An RDMA device exists here (/sys/class/infiniband lists one). */
bool rdma_here(void);
/*
 * softroce-ci/rxe-device WHAT (its path in FERRY_RXE_DEVICE): spare,
 * delete, add, renew or restore. 0 once done, else nonzero.
 */
int rxe_device(const char *what);

#endif /* FERRY_TESTS_RXE_H */
