/* Synchronous use of the asynchronous blobstore, for threads that may block. */
#include "common/common.h"

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
	if (cairn_is_ok(&st)) {
		blob_commit(w, cairn_waiter_done, &wt);
		st = cairn_waiter_wait(&wt);
	} else {
		blob_abort(w);
	}
	cairn_waiter_destroy(&wt);
	return st;
}
