/* SPDX-License-Identifier: MIT */
#ifndef FERRY_MIGRATION_MIG_RECORD_H
#define FERRY_MIGRATION_MIG_RECORD_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/mig_sm.h"
#include "protocol/protocol.h"

struct mig;
struct mig_env;

/*
 * Relays one source migration may have, one per retarget: with the source
 * and a copy kept elsewhere, within what a destination pulls from
 * (RLY_HOLDERS_MAX, PROTO_HOLDERS_MAX).
 */
#define MIG_RELAYS_MAX 4

/* mig_record.c: the records in mig_dir */

struct mig_record {
	uint64_t id;
	bool source;
	char vm[PROTO_NAME_MAX + 1];
	char peer[PROTO_NAME_MAX + 1];
	enum mig_phase phase;
	bool known; /* read: the phase was one of ours */
	bool postcopy; /* the state has MIG_SM_PC */
	uint64_t started; /* unix time */
	enum proto_mode mode;
	char reason[512];
	/* source: relays not released yet, which a restart releases */
	char relays[MIG_RELAYS_MAX][PROTO_NAME_MAX + 1];
	unsigned nrelays;
};

/* "ID.src" or "PEER-ID.dst". */
void mig_record_name(const struct mig_record *r, char *buf, size_t len);
/* Write r in mig_dir (a temporary file, then renameat()); errors logged. */
void mig_record_put(const struct mig_env *n, const struct mig_record *r);
/* Read record name from mig_dir; 0 or -errno. */
int mig_record_get(const struct mig_env *n, const char *name,
		   struct mig_record *r);
/* Persist m's record. */
void mig_save_record(struct mig *m);
/* mig_dir for reading, a DIR of its own; NULL (logged). */
DIR *mig_records_open(struct mig_env *n);
/*
 * Keep the newest MIG_RECORDS_MAX records of ended migrations, none older
 * than MIG_RECORDS_AGE_S; never the records of running migrations, nor the
 * source record with the highest id (the next id follows from it).
 */
void mig_records_prune(struct mig_env *n);

#endif /* FERRY_MIGRATION_MIG_RECORD_H */
