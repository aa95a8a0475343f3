// SPDX-License-Identifier: MIT
/*
 * Snapshots: a paused VM's state blob and RAM in one file.
 *
 *   [0, 4096)         header: magic "FERRYSNP", version, VM shape,
 *                     offsets, lengths and xxh3-64 checksums
 *   state_off         the state blob (kva_state.c)
 *   runs_off          the RAM's data runs {first page, pages}, found with
 *                     SEEK_DATA / SEEK_HOLE on the memfd
 *   data_off (paged)  the pages of every run, in order
 *
 * Holes are not stored, and a restore leaves them holes, so a snapshot of
 * a 64 GiB VM that touched 20 MiB costs 20 MiB. The file is written under
 * a temporary name and renamed, so a crash never leaves a half snapshot
 * under the real name.
 */
#define LOG_PREFIX "ferry-vm: "

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/bitmap.h"
#include "common/log.h"
#include "common/util.h"
#include "kvm-adapter/kva_int.h"

#define KVA_SNAP_MAGIC "FERRYSNP"
#define KVA_SNAP_VERSION 1
#define KVA_SNAP_HDR 4096
#define KVA_SNAP_CHUNK (2UL << 20)

struct kva_snap_hdr {
	char magic[8];
	uint32_t version;
	uint32_t nr_vcpus;
	uint64_t mem_size;
	char guest[16];
	uint64_t workingset, stride, sleep, heartbeat, passes, seed;
	uint64_t state_off, state_len;
	uint64_t runs_off, nr_runs, runs_csum;
	uint64_t data_off, data_len, data_csum;
	uint64_t hdr_csum; /* of everything above */
};

static int kva_write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	ssize_t w;

	while (len) {
		w = pwrite(fd, p, len, off);
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		len -= w;
		off += w;
	}
	return 0;
}

static int kva_read_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	ssize_t r;

	while (len) {
		r = pread(fd, p, len, off);
		if (r <= 0)
			return r < 0 ? -errno : -ENODATA;
		p += r;
		len -= r;
		off += r;
	}
	return 0;
}

/* The data runs of the memfd, in pages; *runs is malloc'ed. */
static int kva_mem_runs(struct kva_vm *vm, struct fy_run **runs, size_t *nr)
{
	struct fy_run *r = NULL, *t;
	size_t n = 0, cap = 0;
	off_t data, hole = 0;

	for (;;) {
		data = lseek(vm->memfd, hole, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		hole = data < 0 ? -1 : lseek(vm->memfd, data, SEEK_HOLE);
		if (data < 0 || hole < 0) {
			pr_perror("SEEK_DATA/SEEK_HOLE on guest RAM");
			free(r);
			return -errno;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			t = realloc(r, cap * sizeof(*r));
			if (!t) {
				free(r);
				return -ENOMEM;
			}
			r = t;
		}
		/* shmem reports whole pages; round outwards to be sure. */
		r[n].start = data / FY_PAGE_SIZE;
		r[n].len =
			(hole + FY_PAGE_SIZE - 1) / FY_PAGE_SIZE - r[n].start;
		n++;
		if ((uint64_t)hole >= vm->mem_size)
			break;
	}
	*runs = r;
	*nr = n;
	return 0;
}

int kva_vm_snapshot(struct kva_vm *vm, const char *path)
{
	struct kva_snap_hdr *h;
	XXH3_state_t *xs = NULL;
	struct fy_run *runs = NULL;
	size_t nr = 0, state_len = 0, i;
	void *state = NULL;
	char *tmp = NULL;
	uint64_t off, p, n;
	int fd = -1, ret;

	h = calloc(1, KVA_SNAP_HDR);
	xs = XXH3_createState();
	if (!h || !xs || asprintf(&tmp, "%s.tmp", path) < 0) {
		tmp = NULL;
		ret = -ENOMEM;
		goto out_free;
	}
	ret = kva_vm_pause(vm);
	ret = ret ?: kva_state_save(vm, &state, &state_len);
	ret = ret ?: kva_mem_runs(vm, &runs, &nr);
	if (ret)
		goto out_free;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		pr_perror("create %s", tmp);
		goto out_free;
	}
	memcpy(h->magic, KVA_SNAP_MAGIC, 8);
	h->version = KVA_SNAP_VERSION;
	h->nr_vcpus = vm->nr_vcpus;
	h->mem_size = vm->mem_size;
	memcpy(h->guest, vm->guest, sizeof(h->guest));
	h->workingset = vm->cfg.workingset;
	h->stride = vm->cfg.stride;
	h->sleep = vm->cfg.sleep;
	h->heartbeat = vm->cfg.heartbeat;
	h->passes = vm->cfg.passes;
	h->seed = vm->cfg.seed;
	h->state_off = KVA_SNAP_HDR;
	h->state_len = state_len;
	h->runs_off = (h->state_off + state_len + 7) & ~7ULL;
	h->nr_runs = nr;
	h->runs_csum = XXH3_64bits(runs, nr * sizeof(*runs));
	h->data_off = (h->runs_off + nr * sizeof(*runs) + FY_PAGE_SIZE - 1) &
		      ~(FY_PAGE_SIZE - 1);
	h->data_len = fy_runs_pages(runs, nr) * FY_PAGE_SIZE;
	ret = kva_write_all(fd, state, state_len, h->state_off);
	ret = ret ?: kva_write_all(fd, runs, nr * sizeof(*runs), h->runs_off);
	if (ret)
		goto err_write;
	XXH3_64bits_reset(xs);
	off = h->data_off;
	for (i = 0; i < nr; i++)
		for (p = 0; p < runs[i].len * FY_PAGE_SIZE; p += n) {
			const uint8_t *src =
				kva_gpa(vm, runs[i].start * FY_PAGE_SIZE + p);

			n = FY_MIN(KVA_SNAP_CHUNK,
				   runs[i].len * FY_PAGE_SIZE - p);
			XXH3_64bits_update(xs, src, n);
			ret = kva_write_all(fd, src, n, off);
			if (ret)
				goto err_write;
			off += n;
		}
	h->data_csum = XXH3_64bits_digest(xs);
	h->hdr_csum = XXH3_64bits(h, offsetof(struct kva_snap_hdr, hdr_csum));
	ret = kva_write_all(fd, h, KVA_SNAP_HDR, 0);
	if (ret)
		goto err_write;
	if (close(fd)) {
		fd = -1;
		ret = -errno;
		goto err_write;
	}
	fd = -1;
	if (rename(tmp, path)) {
		ret = -errno;
		pr_perror("rename %s to %s", tmp, path);
		unlink(tmp);
		goto out_free;
	}
	goto out_free;

err_write:
	pr_err("write snapshot %s: %s", tmp, strerror(-ret));
	unlink(tmp);
out_free:
	if (fd >= 0)
		close(fd);
	free(tmp);
	free(runs);
	free(state);
	XXH3_freeState(xs);
	free(h);
	return ret;
}

static int kva_snap_check(const struct kva_snap_hdr *h, uint64_t size)
{
	if (memcmp(h->magic, KVA_SNAP_MAGIC, 8)) {
		pr_err("not a ferry-vm snapshot (bad magic)");
		return -EBADMSG;
	}
	if (h->version != KVA_SNAP_VERSION) {
		pr_err("snapshot version %u, this ferry-vm reads version %u",
		       h->version, KVA_SNAP_VERSION);
		return -EPROTO;
	}
	if (XXH3_64bits(h, offsetof(struct kva_snap_hdr, hdr_csum)) !=
	    h->hdr_csum) {
		pr_err("snapshot header checksum mismatch: corrupted");
		return -EBADMSG;
	}
	if (h->mem_size > KVA_MAX_MEM || h->runs_off > size ||
	    h->data_off > size || h->state_off != KVA_SNAP_HDR ||
	    h->state_len > (64U << 20) ||
	    h->runs_off < h->state_off + h->state_len ||
	    h->nr_runs > h->mem_size / FY_PAGE_SIZE ||
	    h->data_off < h->runs_off + h->nr_runs * sizeof(struct fy_run) ||
	    h->data_len > h->mem_size || h->data_off + h->data_len != size) {
		pr_err("snapshot is %llu bytes, its header wants %llu: "
		       "truncated or corrupted",
		       (unsigned long long)size,
		       (unsigned long long)(h->data_off + h->data_len));
		return -EBADMSG;
	}
	return 0;
}

static int kva_runs_check(const struct fy_run *runs, size_t nr,
			  const struct kva_snap_hdr *h)
{
	uint64_t pages = h->mem_size / FY_PAGE_SIZE, end = 0, total = 0;
	size_t i;

	if (XXH3_64bits(runs, nr * sizeof(*runs)) != h->runs_csum) {
		pr_err("snapshot run list checksum mismatch: corrupted");
		return -EBADMSG;
	}
	for (i = 0; i < nr; i++) {
		if (!runs[i].len || runs[i].start < end ||
		    runs[i].len > pages - runs[i].start) {
			pr_err("snapshot run %zu is out of order or range", i);
			return -EBADMSG;
		}
		end = runs[i].start + runs[i].len;
		total += runs[i].len;
	}
	if (total * FY_PAGE_SIZE != h->data_len) {
		pr_err("snapshot runs cover %llu pages, data holds %llu",
		       (unsigned long long)total,
		       (unsigned long long)(h->data_len / FY_PAGE_SIZE));
		return -EBADMSG;
	}
	return 0;
}

/* Copy the runs' pages from the file into the new VM's memfd. */
static int kva_snap_load_mem(struct kva_vm *vm, int fd,
			     const struct kva_snap_hdr *h,
			     const struct fy_run *runs, size_t nr)
{
	XXH3_state_t *xs = XXH3_createState();
	uint64_t off = h->data_off, p, n;
	uint8_t *buf = malloc(KVA_SNAP_CHUNK);
	size_t i;
	int ret = 0;

	if (!xs || !buf) {
		ret = -ENOMEM;
		goto out_free;
	}
	XXH3_64bits_reset(xs);
	for (i = 0; i < nr && !ret; i++)
		for (p = 0; p < runs[i].len * FY_PAGE_SIZE && !ret; p += n) {
			n = FY_MIN(KVA_SNAP_CHUNK,
				   runs[i].len * FY_PAGE_SIZE - p);
			ret = kva_read_all(fd, buf, n, off);
			if (ret) {
				pr_err("read snapshot data: %s",
				       strerror(-ret));
				break;
			}
			XXH3_64bits_update(xs, buf, n);
			/* pwrite allocates shmem pages fastest. */
			ret = kva_write_all(vm->memfd, buf, n,
					    runs[i].start * FY_PAGE_SIZE + p);
			if (ret)
				pr_err("write guest RAM: %s", strerror(-ret));
			off += n;
		}
	if (!ret && XXH3_64bits_digest(xs) != h->data_csum) {
		pr_err("snapshot memory checksum mismatch: corrupted");
		ret = -EBADMSG;
	}
out_free:
	free(buf);
	XXH3_freeState(xs);
	return ret;
}

int kva_vm_restore(const char *path, enum kva_accel accel, struct kva_vm **out)
{
	enum kva_accel saved;
	struct kva_snap_hdr *h;
	struct fy_run *runs = NULL;
	struct kva_vm *vm = NULL;
	void *state = NULL;
	struct stat st;
	int fd, ret;

	h = calloc(1, KVA_SNAP_HDR);
	if (!h)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		pr_perror("open snapshot %s", path);
		goto out_free;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		goto out_close;
	}
	ret = kva_read_all(fd, h, KVA_SNAP_HDR, 0);
	if (ret) {
		pr_err("%s: too short for a snapshot header", path);
		ret = -EBADMSG;
		goto out_close;
	}
	ret = kva_snap_check(h, st.st_size);
	if (ret)
		goto out_close;
	state = malloc(h->state_len);
	runs = malloc(h->nr_runs * sizeof(*runs) + 1);
	if (!state || !runs) {
		ret = -ENOMEM;
		goto out_close;
	}
	ret = kva_read_all(fd, state, h->state_len, h->state_off);
	ret = ret
		      ?: kva_read_all(fd, runs, h->nr_runs * sizeof(*runs),
				      h->runs_off);
	if (ret) {
		pr_err("%s: read: %s", path, strerror(-ret));
		goto out_close;
	}
	ret = kva_runs_check(runs, h->nr_runs, h);
	if (ret)
		goto out_close;
	ret = kva_state_accel(state, h->state_len, &saved);
	if (ret)
		goto out_close;
	if (accel != KVA_ACCEL_AUTO && accel != saved) {
		pr_err("%s: a VM of the %s accelerator cannot be restored on "
		       "%s",
		       path, kva_accel_name(saved), kva_accel_name(accel));
		ret = -EINVAL;
		goto out_close;
	}
	ret = kva_vm_open(h->mem_size, h->nr_vcpus, -1, saved, &vm);
	if (ret)
		goto out_close;
	snprintf(vm->guest, sizeof(vm->guest), "%.15s", h->guest);
	kva_config_init(&vm->cfg);
	vm->cfg.guest = vm->guest;
	vm->cfg.mem_size = h->mem_size;
	vm->cfg.nr_vcpus = h->nr_vcpus;
	vm->cfg.workingset = h->workingset;
	vm->cfg.stride = h->stride;
	vm->cfg.sleep = h->sleep;
	vm->cfg.heartbeat = h->heartbeat;
	vm->cfg.passes = h->passes;
	vm->cfg.seed = h->seed;
	ret = kva_snap_load_mem(vm, fd, h, runs, h->nr_runs);
	ret = ret ?: kva_state_load(vm, state, h->state_len);
	if (ret) {
		kva_vm_destroy(vm);
		goto out_close;
	}
	*out = vm;
out_close:
	close(fd);
out_free:
	free(state);
	free(runs);
	free(h);
	return ret;
}
