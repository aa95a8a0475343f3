// SPDX-License-Identifier: MIT
/*
 * Write the seed corpus of fuzz_proto: each sample message (every type,
 * every variant) encoded into DIR/<TYPE>-<variant>.mp, skipping encodings
 * over 4 KiB to keep the corpus small. Run from the source tree:
 *   build-fuzz/tests/fuzz/gen_corpus tests/fuzz/corpus
 */
#include <stdio.h>
#include <stdlib.h>

#include "protocol/protocol.h"
#include "../protocol/proto_samples.h"

#define SEED_MAX 4096

int main(int argc, char **argv)
{
	int written = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	for (int t = PROTO_HELLO; t <= PROTO_TYPE_LAST; t++) {
		for (unsigned v = 0; v < PROTO_SAMPLE_VARIANTS; v++) {
			struct proto_msg *m = proto_sample(t, v);
			char path[4096];
			size_t len;
			void *buf;
			FILE *f;

			if (!m || proto_encode(m, &buf, &len))
				return 1;
			proto_msg_free(m);
			if (len > SEED_MAX) {
				free(buf);
				continue;
			}
			snprintf(path, sizeof(path), "%s/%s-%u.mp", argv[1],
				 proto_type_name(t), v);
			f = fopen(path, "wb");
			if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
				perror(path);
				return 1;
			}
			free(buf);
			written++;
		}
	}
	printf("%d seeds written to %s\n", written, argv[1]);
	return 0;
}
