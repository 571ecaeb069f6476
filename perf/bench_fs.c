/* cairn-bench fs-create: the reference for the small-blob figures. Stores small files the way
 * cachefs stores a blob (create tmp/<n>.part, write, close, rename into cas/<xx>/<name>), from one
 * thread, with no hashing and no gRPC: the rate the data directory's file system allows for one file
 * per blob. On ext4 without a journal this rate falls sharply after many recent deletions (the
 * allocator skips recently freed inodes), which is why run.sh measures it in the same run. */
#include "perf/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FANOUT 256

/* snprintf into a PATH_MAX buffer; the root was checked to leave room for every name below it. */
static const char *path(char out[PATH_MAX], const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *path(char out[PATH_MAX], const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
	return out;
}

static cairn_status make_dirs(const char *root)
{
	char p[PATH_MAX];
	if (mkdir(root, 0755) != 0)
		return cairn_errno(errno, "mkdir %s", root);
	path(p, "%s/tmp", root);
	if (mkdir(p, 0755) != 0)
		return cairn_errno(errno, "mkdir %s", p);
	path(p, "%s/cas", root);
	if (mkdir(p, 0755) != 0)
		return cairn_errno(errno, "mkdir %s", p);
	for (int i = 0; i < FANOUT; i++) {
		path(p, "%s/cas/%02x", root, i);
		if (mkdir(p, 0755) != 0)
			return cairn_errno(errno, "mkdir %s", p);
	}
	return cairn_ok();
}

static cairn_status store_one(const char *root, uint64_t i, const uint8_t *data, size_t len, uint64_t name)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	path(tmp, "%s/tmp/%" PRIu64 ".part", root, i);
	path(dst, "%s/cas/%02x/%016" PRIx64 "_%zu", root, (unsigned)(name & 0xff), name, len);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd < 0)
		return cairn_errno(errno, "create %s", tmp);
	ssize_t w = write(fd, data, len);
	int err = errno;
	close(fd);
	if (w != (ssize_t)len) {
		unlink(tmp);
		return cairn_errno(w < 0 ? err : EIO, "write %s", tmp);
	}
	if (rename(tmp, dst) != 0) {
		cairn_status st = cairn_errno(errno, "rename %s", tmp);
		unlink(tmp);
		return st;
	}
	return cairn_ok();
}

/* Removes what the run made; files first, then the directories. */
static void remove_tree(const char *root, uint64_t n, const uint64_t *names, size_t len)
{
	char p[PATH_MAX];
	for (uint64_t i = 0; i < n; i++) {
		path(p, "%s/cas/%02x/%016" PRIx64 "_%zu", root, (unsigned)(names[i] & 0xff), names[i], len);
		unlink(p);
	}
	for (int i = 0; i < FANOUT; i++) {
		path(p, "%s/cas/%02x", root, i);
		rmdir(p);
	}
	path(p, "%s/cas", root);
	rmdir(p);
	path(p, "%s/tmp", root);
	rmdir(p);
	rmdir(root);
}

int bench_fs_create(const bench_opts *o)
{
	if (!o->dir[0] || strlen(o->dir) > PATH_MAX - 128 || o->files <= 0 || o->files > 10000000 || o->blob_size <= 0 || o->seconds <= 0)
		return fprintf(stderr, "cairn-bench fs-create: needs a --dir (not too long), 0 < --files <= 10000000, positive --blob_size "
		                       "and --seconds\n"),
		       2;
	char root[PATH_MAX];
	path(root, "%s/fs-create-%016" PRIx64, o->dir, bench_nonce());
	cairn_status st = make_dirs(root);
	bench_rng r;
	bench_rng_seed(&r, bench_nonce());
	uint8_t *data = cairn_xmalloc((size_t)o->blob_size);
	bench_rng_fill(&r, data, (size_t)o->blob_size);
	uint64_t *names = cairn_xcalloc((size_t)o->files, sizeof *names);
	uint64_t n = 0;
	int64_t t0 = cairn_now_ns(), deadline = t0 + o->seconds * 1000000000LL;
	for (; cairn_is_ok(&st) && n < (uint64_t)o->files && cairn_now_ns() < deadline; n++) {
		names[n] = bench_rng_next(&r);
		st = store_one(root, n, data, (size_t)o->blob_size, names[n]);
	}
	int64_t ns = cairn_now_ns() - t0;
	remove_tree(root, n, names, (size_t)o->blob_size);
	free(names);
	free(data);
	if (!cairn_is_ok(&st))
		return bench_fail("fs-create", root, &st);
	bench_result("fs-create", "value=%.0f unit=files/s files=%" PRIu64 " seconds=%.2f blob_size=%" PRId64 " dir=%s",
	             (double)n / bench_secs(ns), n, bench_secs(ns), o->blob_size, o->dir);
	return 0;
}
