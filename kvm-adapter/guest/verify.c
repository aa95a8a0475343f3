// SPDX-License-Identifier: MIT
/*
 * verify: writes kva_pattern(page, pass, word) into KVA_VERIFY_WORDS words
 * of every page of its share of the working set, pass after pass. Before
 * overwriting a page it checks the previous pass's pattern, and after each
 * write it re-checks an earlier page of the current pass, so a page lost or
 * torn by a migration is caught by the guest itself. A mismatch is a FAIL
 * ucall: (KVA_FAIL_MISMATCH, page, expected, actual, word, pass). Paced
 * like dirty: Sleep, or a rate (guest_lib.h).
 */
#include "guest_lib.h"

static int check_page(const volatile struct kva_guest_params *p, uint64_t gpa,
		      uint64_t pass)
{
	volatile uint64_t *w = guest_ptr(p, gpa);
	uint64_t pg = gpa / 4096, i, exp, got;

	for (i = 0; i < KVA_VERIFY_WORDS; i++) {
		exp = kva_pattern(pg, pass, i);
		got = w[i * KVA_VERIFY_GAP / 8];
		if (got != exp) {
			guest_ucall(KVA_UC_FAIL, KVA_FAIL_MISMATCH, pg, exp,
				    got, i, pass);
			return -1;
		}
	}
	return 0;
}

void guest_main(uint64_t id, const volatile struct kva_guest_params *p)
{
	volatile struct kva_mailbox *mb = guest_mailbox();
	uint64_t pages = p->workingset / 4096 / p->nr_vcpus;
	uint64_t base = p->data_start + id * pages * 4096;
	uint64_t pass, i, w, j, since = 0, pauses = 0;
	uint64_t checks = 0, writes = 0;
	struct pace pc;

	pace_init(&pc, p);
	if (!pages || !p->stride || (pc.per && !pc.hz)) {
		GUEST_FAIL(KVA_FAIL_PARAMS, 1, pages, p->stride);
		return;
	}
	for (pass = 0; !p->passes || pass < p->passes; pass++) {
		for (i = 0; i < pages; i++) {
			uint64_t gpa = base + i * 4096;
			volatile uint64_t *pw = guest_ptr(p, gpa);

			if (pc.per && !since)
				pace_wait(&pc, p->stride);
			if (pass && check_page(p, gpa, pass - 1))
				return;
			for (w = 0; w < KVA_VERIFY_WORDS; w++)
				pw[w * KVA_VERIFY_GAP / 8] =
					kva_pattern(gpa / 4096, pass, w);
			/* An earlier page of this pass, spread by a hash. */
			j = (i * 0x9e3779b97f4a7c15ULL >> 17) % (i + 1);
			if (check_page(p, base + j * 4096, pass))
				return;
			checks += pass ? 2 : 1;
			writes++;
			if (++since < p->stride)
				continue;
			since = 0;
			mb->writes = writes;
			mb->pass = pass;
			mb->checks = checks;
			pauses++;
			if (p->heartbeat && pauses % p->heartbeat == 0)
				guest_ucall(KVA_UC_HEARTBEAT, writes, pass,
					    checks, 0, 0, 0);
			if (!pc.per)
				guest_spin(p->sleep);
		}
	}
	mb->writes = writes;
	mb->pass = pass;
	mb->checks = checks;
	guest_ucall(KVA_UC_REPORT, writes, pass, checks, 0, 0, 0);
}
