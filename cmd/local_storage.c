/* The executor's view of the local CAS in `serve` and in a worker: cachefs's pinning for
 * input files, and the services' store, through blobstore's synchronous calls, for the rest. */
#include "cmd/local_storage.h"

typedef local_store local;

/* A blob not held locally is looked for once before it counts as missing: copied from the peers,
 * or fetched through the services' store, which reads it back from the object store if it is there.
 * Two slots may copy one blob at once: whichever commits second finds it there, so the pin decides. */
static cairn_status pin_path(void *ctx, const cairn_digest *d, char *path, size_t cap)
{
	local *l = ctx;
	cairn_status st = cachefs_pin_path(l->fs, d, path, cap);
	if (st.code != CAIRN_NOT_FOUND || (!l->peers && l->cas == cachefs_blobstore(l->fs)))
		return st;
	st = l->peers ? blobstore_copy_sync(l->peers, cachefs_blobstore(l->fs), d) : blobstore_fetch_sync(l->cas, d);
	cairn_status pinned = cachefs_pin_path(l->fs, d, path, cap);
	return cairn_is_ok(&pinned) || cairn_is_ok(&st) ? pinned : st;
}

static void unpin(void *ctx, const cairn_digest *d) { cachefs_unpin(((local *)ctx)->fs, d); }

/* Through the store: a small blob is read where it is, in a pack, and never gets a file of its own. */
static cairn_status get_bytes(void *ctx, const cairn_digest *d, int64_t max, uint8_t **data, size_t *len)
{
	return blobstore_get_sync(((local *)ctx)->cas, d, max, data, len);
}

static cairn_status put_bytes(void *ctx, const void *data, size_t len, cairn_digest *out)
{
	cairn_digest_of(data, len, out);
	return blobstore_put_sync(((local *)ctx)->cas, out, data, len);
}

static cairn_status put_file(void *ctx, const char *path, cairn_digest *out)
{
	return blobstore_put_file_sync(((local *)ctx)->cas, path, out);
}

executor_storage local_storage(local_store *l)
{
	executor_storage s = {.ctx = l, .pin_path = pin_path, .unpin = unpin, .get_bytes = get_bytes,
	                      .put_file = put_file, .put_bytes = put_bytes};
	return s;
}
