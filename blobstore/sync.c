/* Synchronous use of the asynchronous blobstore, for threads that may block: each call waits on a
 * cairn_waiter for the callbacks it starts. */
#include "blobstore/blobstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* Commits the writer after its writes went well (st OK), else drops it; then frees the waiter. */
static cairn_status end_write(blobstore_writer *w, cairn_status st, cairn_waiter *wt)
{
	if (cairn_is_ok(&st)) {
		blobstore_commit(w, cairn_waiter_done, wt);
		st = cairn_waiter_wait(wt);
	} else {
		blobstore_abort(w);
	}
	cairn_waiter_destroy(wt);
	return st;
}

cairn_status blobstore_put_sync(blobstore *bs, const cairn_digest *d, const void *data, size_t len)
{
	blobstore_writer *w;
	cairn_status st = blobstore_open_write(bs, d, &w);
	if (!cairn_is_ok(&st))
		return st;
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	/* pieces of at most 1 MiB, so a large buffer does not sit in the writer's queue at once */
	for (size_t off = 0; off < len && cairn_is_ok(&st);) {
		size_t n = len - off < (1u << 20) ? len - off : (1u << 20);
		blobstore_write(w, (const char *)data + off, n, cairn_waiter_done, &wt);
		st = cairn_waiter_wait(&wt);
		off += n;
	}
	st = end_write(w, st, &wt);
	return st;
}

cairn_status blobstore_write_fd_sync(blobstore_writer *w, int fd, const char *name)
{
	enum { CHUNK = 1 << 20 };
	uint8_t *buf = cairn_xmalloc(CHUNK);
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	cairn_status st = cairn_ok();
	ssize_t n = 0;
	while (cairn_is_ok(&st) && (n = read(fd, buf, CHUNK)) > 0) {
		blobstore_write(w, buf, (size_t)n, cairn_waiter_done, &wt);
		st = cairn_waiter_wait(&wt);
	}
	if (cairn_is_ok(&st) && n < 0)
		st = cairn_errno(errno, "read %s", name);
	st = end_write(w, st, &wt);
	free(buf);
	return st;
}

cairn_status blobstore_put_fd_sync(blobstore *bs, const cairn_digest *d, int fd, const char *name)
{
	blobstore_writer *w;
	cairn_status st = blobstore_open_write(bs, d, &w);
	return cairn_is_ok(&st) ? blobstore_write_fd_sync(w, fd, name) : st;
}

/* Hashes the file, then streams it into the store in chunks. */
cairn_status blobstore_put_file_sync(blobstore *bs, const char *path, cairn_digest *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cairn_errno(errno, "open %s", path);
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
	cairn_status st = n < 0 ? cairn_errno(errno, "read %s", path) : cairn_ok();
	if (cairn_is_ok(&st) && lseek(fd, 0, SEEK_SET) != 0)
		st = cairn_errno(errno, "seek %s", path);
	if (cairn_is_ok(&st))
		st = blobstore_put_fd_sync(bs, out, fd, path);
	free(buf);
	close(fd);
	return st;
}

cairn_status blobstore_find_missing_sync(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing)
{
	cairn_waiter w;
	cairn_waiter_init(&w);
	blobstore_find_missing(bs, ds, n, missing, cairn_waiter_done, &w);
	cairn_status st = cairn_waiter_wait(&w);
	cairn_waiter_destroy(&w);
	return st;
}

/* A reader's answers, for a thread that waits for them. */
typedef struct get_wait {
	cairn_waiter w;
	blobstore_reader *r;
	size_t n;
} get_wait;

static void got_reader(void *arg, cairn_status st, blobstore_reader *r)
{
	get_wait *g = arg;
	g->r = r;
	cairn_waiter_done(&g->w, st);
}

static void got_bytes(void *arg, cairn_status st, size_t n)
{
	get_wait *g = arg;
	g->n = n;
	cairn_waiter_done(&g->w, st);
}

cairn_status blobstore_get_sync(blobstore *bs, const cairn_digest *d, int64_t max, uint8_t **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	if (d->size > max)
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "blob of %lld bytes is over the %lld allowed here",
		                 (long long)d->size, (long long)max);
	get_wait g = {0};
	cairn_waiter_init(&g.w);
	blobstore_open_read(bs, d, got_reader, &g);
	cairn_status st = cairn_waiter_wait(&g.w);
	uint8_t *buf = cairn_xmalloc((size_t)d->size + 1);
	for (size_t got = 0; cairn_is_ok(&st) && got < (size_t)d->size; got += g.n) {
		blobstore_read(g.r, got, buf + got, (size_t)d->size - got, got_bytes, &g);
		st = cairn_waiter_wait(&g.w);
		if (cairn_is_ok(&st) && g.n == 0) {
			char ds[CAIRN_DIGEST_STR_MAX];
			st = cairn_err(CAIRN_DATA_LOSS, "blob %s ended after %zu of its %lld bytes", cairn_digest_str(d, ds), got,
			               (long long)d->size);
		}
	}
	if (g.r)
		blobstore_close_read(g.r);
	cairn_waiter_destroy(&g.w);
	if (!cairn_is_ok(&st)) {
		free(buf);
		return st;
	}
	*data = buf;
	*len = (size_t)d->size;
	return st;
}

static void opened_to_close(void *arg, cairn_status st, blobstore_reader *r)
{
	if (r)
		blobstore_close_read(r);
	cairn_waiter_done(arg, st);
}

cairn_status blobstore_fetch_sync(blobstore *bs, const cairn_digest *d)
{
	cairn_waiter w;
	cairn_waiter_init(&w);
	blobstore_open_read(bs, d, opened_to_close, &w);
	cairn_status st = cairn_waiter_wait(&w);
	cairn_waiter_destroy(&w);
	return st;
}

cairn_status blobstore_copy_sync(blobstore *from, blobstore *to, const cairn_digest *d)
{
	enum { CHUNK = 1 << 20 };
	get_wait g = {0};
	cairn_waiter_init(&g.w);
	blobstore_open_read(from, d, got_reader, &g);
	cairn_status st = cairn_waiter_wait(&g.w);
	blobstore_writer *w = NULL;
	if (cairn_is_ok(&st))
		st = blobstore_open_write(to, d, &w);
	uint8_t *buf = cairn_is_ok(&st) ? cairn_xmalloc(CHUNK) : NULL;
	for (uint64_t got = 0; cairn_is_ok(&st) && got < (uint64_t)d->size; got += g.n) {
		uint64_t want = (uint64_t)d->size - got < CHUNK ? (uint64_t)d->size - got : CHUNK;
		blobstore_read(g.r, got, buf, (size_t)want, got_bytes, &g);
		st = cairn_waiter_wait(&g.w);
		if (cairn_is_ok(&st) && g.n == 0) {
			char ds[CAIRN_DIGEST_STR_MAX];
			st = cairn_err(CAIRN_DATA_LOSS, "blob %s ended after %llu of its %lld bytes", cairn_digest_str(d, ds),
			               (unsigned long long)got, (long long)d->size);
		}
		if (cairn_is_ok(&st)) {
			blobstore_write(w, buf, g.n, cairn_waiter_done, &g.w);
			st = cairn_waiter_wait(&g.w);
		}
	}
	if (g.r)
		blobstore_close_read(g.r);
	free(buf);
	if (w)
		return end_write(w, st, &g.w); /* destroys the waiter */
	cairn_waiter_destroy(&g.w);
	return st;
}
