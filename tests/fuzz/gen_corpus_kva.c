// SPDX-License-Identifier: MIT
/*
 * Write the seed corpus of fuzz_kva_wire: one record of each adapter
 * message, request and reply, laid out as ferry-vm and ferryd send them
 * (kva_server.c, kva_client.c), into DIR/<name>.bin. Run from the source
 * tree:
 *   build-fuzz/tests/fuzz/gen_corpus_kva tests/fuzz/corpus-kva
 */
#include <stdio.h>
#include <string.h>

#include "kvm-adapter/kva_int.h"

static uint8_t buf[KVA_WIRE_MAX];
static struct kva_wbuf w;
static int written;

static void begin(uint16_t type, uint32_t seq)
{
	w = (struct kva_wbuf){ .p = buf, .cap = sizeof(buf) };
	kva_put_u32(&w, KVA_WIRE_MAGIC);
	kva_put_u16(&w, KVA_WIRE_VERSION);
	kva_put_u16(&w, type);
	kva_put_u32(&w, 0); /* the payload's length, set by put() */
	kva_put_u32(&w, seq);
}

static int put(const char *dir, const char *name)
{
	struct kva_wbuf len = { .p = buf + 8, .cap = 4 };
	char path[4096];
	FILE *f;

	if (w.err)
		return -1;
	kva_put_u32(&len, w.len - KVA_WIRE_HDR);
	snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, w.len, f) != w.len || fclose(f)) {
		perror(path);
		return -1;
	}
	written++;
	return 0;
}

int main(int argc, char **argv)
{
	static const char text[] = "GET_STATE needs a paused VM: PAUSE first";
	const char *d = argv[1];
	char guest[16] = "verify";
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	begin(KVA_MSG_ATTACH, 1);
	kva_put_u16(&w, KVA_WIRE_VERSION);
	kva_put_u16(&w, KVA_WIRE_VERSION);
	kva_put_u32(&w, 0);
	rc |= put(d, "ATTACH");

	begin(KVA_MSG_ATTACH | KVA_MSG_REPLY, 1);
	kva_put_u16(&w, KVA_WIRE_VERSION);
	kva_put_u16(&w, 2); /* state: paused */
	kva_put_u32(&w, KVA_ATTACH_UFFD);
	kva_put_u32(&w, 4096);
	kva_put_u32(&w, 2); /* vCPUs */
	kva_put_u32(&w, 1); /* regions */
	kva_put_u32(&w, 3); /* descriptors */
	kva_put_u64(&w, 8192); /* pages */
	kva_put_u64(&w, 4); /* generation */
	kva_put_bytes(&w, guest, sizeof(guest));
	kva_put_u64(&w, 1024); /* bitmap bytes */
	kva_put_u32(&w, 1);
	kva_put_u32(&w, 2);
	kva_put_u64(&w, 0); /* region: gpa, size, pages, uffd base, fd, flags */
	kva_put_u64(&w, 8192ULL * 4096);
	kva_put_u64(&w, 8192);
	kva_put_u64(&w, 0x7f0000000000ULL);
	kva_put_u32(&w, 0);
	kva_put_u32(&w, 0);
	rc |= put(d, "ATTACH-reply");

	begin(KVA_MSG_HARVEST, 2);
	rc |= put(d, "HARVEST");
	begin(KVA_MSG_HARVEST | KVA_MSG_REPLY, 2);
	kva_put_u64(&w, 5);
	kva_put_u64(&w, 17);
	kva_put_u64(&w, 8192);
	rc |= put(d, "HARVEST-reply");

	begin(KVA_MSG_PAUSE, 3);
	rc |= put(d, "PAUSE");
	begin(KVA_MSG_RESUME | KVA_MSG_REPLY, 4);
	kva_put_u16(&w, 1);
	rc |= put(d, "RESUME-reply");

	begin(KVA_MSG_GET_STATE | KVA_MSG_REPLY, 5);
	kva_put_u64(&w, 12345);
	rc |= put(d, "GET_STATE-reply");
	begin(KVA_MSG_SET_STATE, 6);
	kva_put_u64(&w, 12345);
	rc |= put(d, "SET_STATE");

	begin(KVA_MSG_STATUS | KVA_MSG_REPLY, 7);
	kva_put_u16(&w, 1);
	kva_put_u16(&w, KVA_ATTACH_UFFD);
	for (int i = 0; i < 5; i++)
		kva_put_u32(&w, i);
	for (int i = 0; i < 5; i++)
		kva_put_u64(&w, 1000 * i);
	kva_put_u32(&w, 40); /* throttle */
	rc |= put(d, "STATUS-reply");

	begin(KVA_MSG_THROTTLE, 8);
	kva_put_u32(&w, 40);
	rc |= put(d, "THROTTLE");

	begin(KVA_MSG_ERROR, 9);
	kva_put_u32(&w, 16); /* EBUSY */
	kva_put_u16(&w, sizeof(text) - 1);
	kva_put_bytes(&w, text, sizeof(text) - 1);
	rc |= put(d, "ERROR");

	begin(KVA_MSG_EXIT, 10);
	rc |= put(d, "EXIT");
	if (rc)
		return 1;
	printf("%d seeds written to %s\n", written, d);
	return 0;
}
