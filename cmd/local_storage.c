/* The executor's view of the local CAS in `serve` (and later in a worker): synchronous calls for slot
 * threads, made of cachefs's pinning and its asynchronous blobstore with a wait. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/local_storage.h"

typedef local_store local;

static void opened(void *arg, cairn_status st, blob_reader *r)
{
	if (r)
		blob_close_read(r);
	cairn_waiter_done(arg, st);
}

static cairn_status pin_path(void *ctx, const cairn_digest *d, char *path, size_t cap)
{
	local *l = ctx;
	cairn_status st = cachefs_pin_path(l->fs, d, path, cap);
	if (st.code != CAIRN_NOT_FOUND || l->cas == cachefs_blobstore(l->fs))
		return st;
	/* opening it through the services' store reads it back from the object store, if it is there */
	cairn_waiter w;
	cairn_waiter_init(&w);
	blobstore_open_read(l->cas, d, opened, &w);
	st = cairn_waiter_wait(&w);
	cairn_waiter_destroy(&w);
	return cairn_is_ok(&st) ? cachefs_pin_path(l->fs, d, path, cap) : st;
}

static void unpin(void *ctx, const cairn_digest *d) { cachefs_unpin(((local *)ctx)->fs, d); }

/* A reader's answers, for a thread that waits for them. */
typedef struct get_wait {
	cairn_waiter w;
	blob_reader *r;
	size_t n;
} get_wait;

static void get_opened(void *arg, cairn_status st, blob_reader *r)
{
	get_wait *g = arg;
	g->r = r;
	cairn_waiter_done(&g->w, st);
}

static void get_read(void *arg, cairn_status st, size_t n)
{
	get_wait *g = arg;
	g->n = n;
	cairn_waiter_done(&g->w, st);
}

/* Reads the blob through the store (a small blob is read where it is, in a pack, and never gets a
 * file of its own for this). */
static cairn_status get_bytes(void *ctx, const cairn_digest *d, int64_t max, uint8_t **data, size_t *len)
{
	if (d->size > max)
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "blob of %lld bytes is over the %lld allowed here",
		                 (long long)d->size, (long long)max);
	local *l = ctx;
	get_wait g = {0};
	cairn_waiter_init(&g.w);
	blobstore_open_read(l->cas, d, get_opened, &g);
	cairn_status st = cairn_waiter_wait(&g.w);
	*data = cairn_xmalloc((size_t)d->size + 1);
	*len = (size_t)d->size;
	for (size_t got = 0; cairn_is_ok(&st) && got < *len; got += g.n) {
		blob_read(g.r, got, *data + got, *len - got, get_read, &g);
		st = cairn_waiter_wait(&g.w);
		if (cairn_is_ok(&st) && g.n == 0) {
			char ds[CAIRN_DIGEST_STR_MAX];
			st = cairn_err(CAIRN_DATA_LOSS, "blob %s ended after %zu of its %lld bytes", cairn_digest_str(d, ds), got,
			               (long long)d->size);
		}
	}
	if (g.r)
		blob_close_read(g.r);
	cairn_waiter_destroy(&g.w);
	if (!cairn_is_ok(&st)) {
		free(*data);
		*data = NULL;
	}
	return st;
}

static cairn_status put_bytes(void *ctx, const void *data, size_t len, cairn_digest *out)
{
	cairn_digest_of(data, len, out);
	return blobstore_put_sync(((local *)ctx)->cas, out, data, len);
}

/* Hashes the file, then streams it into the store in chunks. */
static cairn_status put_file(void *ctx, const char *path, cairn_digest *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cairn_errno(errno, "open output %s", path);
	enum { CHUNK = 1 << 20 };
	uint8_t *buf = cairn_xmalloc(CHUNK);
	cairn_hasher *h = cairn_hasher_new();
	ssize_t n;
	int64_t size = 0;
	while ((n = read(fd, buf, CHUNK)) > 0) {
		cairn_hasher_update(h, buf, (size_t)n);
		size += n;
	}
	cairn_hasher_final(h, out->hash);
	cairn_hasher_free(h);
	out->size = size;
	cairn_status st = n < 0 ? cairn_errno(errno, "read output %s", path) : cairn_ok();
	if (cairn_is_ok(&st) && lseek(fd, 0, SEEK_SET) != 0)
		st = cairn_errno(errno, "seek output %s", path);
	if (cairn_is_ok(&st))
		st = blobstore_put_fd_sync(((local *)ctx)->cas, out, fd, path);
	free(buf);
	close(fd);
	return st;
}

executor_storage local_storage(local_store *l)
{
	executor_storage s = {.ctx = l, .pin_path = pin_path, .unpin = unpin, .get_bytes = get_bytes,
	                      .put_file = put_file, .put_bytes = put_bytes};
	return s;
}
