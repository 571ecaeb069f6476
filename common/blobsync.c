/* Synchronous use of the asynchronous blobstore, for threads that may block. */
#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* Commits the writer after its writes went well (st OK), else drops it; then frees the waiter. */
static cairn_status end_write(blob_writer *w, cairn_status st, cairn_waiter *wt)
{
	if (cairn_is_ok(&st)) {
		blob_commit(w, cairn_waiter_done, wt);
		st = cairn_waiter_wait(wt);
	} else {
		blob_abort(w);
	}
	cairn_waiter_destroy(wt);
	return st;
}

cairn_status blobstore_put_sync(blobstore *bs, const cairn_digest *d, const void *data, size_t len)
{
	blob_writer *w;
	cairn_status st = blobstore_open_write(bs, d, &w);
	if (!cairn_is_ok(&st))
		return st;
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	/* pieces of at most 1 MiB, so a large buffer does not sit in the writer's queue at once */
	for (size_t off = 0; off < len && cairn_is_ok(&st);) {
		size_t n = len - off < (1u << 20) ? len - off : (1u << 20);
		blob_write(w, (const char *)data + off, n, cairn_waiter_done, &wt);
		st = cairn_waiter_wait(&wt);
		off += n;
	}
	st = end_write(w, st, &wt);
	return st;
}

cairn_status blob_write_fd_sync(blob_writer *w, int fd, const char *name)
{
	enum { CHUNK = 1 << 20 };
	uint8_t *buf = cairn_xmalloc(CHUNK);
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	cairn_status st = cairn_ok();
	ssize_t n = 0;
	while (cairn_is_ok(&st) && (n = read(fd, buf, CHUNK)) > 0) {
		blob_write(w, buf, (size_t)n, cairn_waiter_done, &wt);
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
	blob_writer *w;
	cairn_status st = blobstore_open_write(bs, d, &w);
	return cairn_is_ok(&st) ? blob_write_fd_sync(w, fd, name) : st;
}
