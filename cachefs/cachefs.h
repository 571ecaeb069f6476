/*
 * cachefs: the content-addressable store on local disk.
 *
 * Layout under the data directory:
 *   cas/<first two hex>/<64 hex>_<size>   a verified blob, read-only (mode 0444)
 *   tmp/<n>.part                          a blob being written; removed at start-up
 * A blob becomes visible only by rename(2) after its bytes were hashed and matched its name, so a
 * crash (kill -9 mid-write) leaves no half-visible blob. The size in the file name lets the start-up
 * scan drop files a power loss truncated without reading them.
 *
 * I/O: every file operation (open, read, write, fsync, rename, unlink) runs on one io_uring ring driven
 * by the cachefs I/O thread; callers on gRPC threads only queue requests and get callbacks, which run on
 * the I/O thread (or inline, for answers the in-memory index gives at once). Hashing happens in
 * cachefs_write on the caller's thread, so it spreads over the callers' cores.
 *
 * Index: an in-memory open-addressing table of digest → entry (size, last use, LRU links, pins),
 * about 64 bytes a blob, rebuilt from a scan of cas/ at start-up. Eviction runs on its own thread when
 * the bytes held exceed max_size and removes least recently used blobs that are neither pinned (open
 * for reading, or being written) nor younger than min_age since their last use; a FindMissingBlobs
 * answer counts as a use. Writes are refused with RESOURCE_EXHAUSTED when the bytes held plus the
 * bytes reserved by writes in flight would pass hard_limit, so the disk never fills because eviction
 * fell behind; ENOSPC from the disk gives the same code, and reads go on.
 */
#ifndef CAIRN_CACHEFS_H
#define CAIRN_CACHEFS_H

#include "common/common.h"

typedef struct cachefs cachefs;

typedef struct cachefs_config {
	const char *dir;          /* data directory; created if missing */
	int64_t max_size;         /* eviction starts above this many bytes */
	int64_t hard_limit;       /* writes refused above this; 0 means max_size + max_size/10 */
	int64_t min_age_ns;       /* a blob used more recently than this is never evicted */
	bool fsync;               /* fsync each blob and its directory before it becomes visible */
	unsigned ring_entries;    /* io_uring submission queue size; 0 means 256 */
} cachefs_config;

typedef struct cachefs_stats {
	uint64_t blobs;
	uint64_t bytes;            /* bytes held by visible blobs */
	uint64_t reserved;         /* bytes reserved by writes in flight */
	uint64_t evicted_blobs;
	uint64_t evicted_bytes;
	uint64_t rejected_writes;  /* writes refused by the hard limit or ENOSPC */
} cachefs_stats;

/* Opens (creating if needed) the store, removes leftover temp files, rebuilds the index and starts the
 * I/O and eviction threads. Errors name the path and the reason. */
cairn_status cachefs_open(const cachefs_config *cfg, cachefs **out);
/* Waits for queued I/O to finish, stops the threads and frees everything. No call may be in flight. */
void cachefs_close(cachefs *fs);

/* The blobstore face of the store (see common.h); valid until cachefs_close. */
blobstore *cachefs_blobstore(cachefs *fs);

/* True if the blob is held; with touch, counts as a use (LRU and min_age). In-memory only. */
bool cachefs_contains(cachefs *fs, const cairn_digest *d, bool touch);
void cachefs_get_stats(cachefs *fs, cachefs_stats *out);

/* Pins a held blob so that it is not evicted until cachefs_unpin (counts as a use). NOT_FOUND if
 * absent. */
cairn_status cachefs_pin(cachefs *fs, const cairn_digest *d);
/* Path of a held blob's file, for hard-linking into an exec root, and pins the blob so that it is not
 * evicted until cachefs_unpin. NOT_FOUND if absent. */
cairn_status cachefs_pin_path(cachefs *fs, const cairn_digest *d, char *path, size_t cap);
void cachefs_unpin(cachefs *fs, const cairn_digest *d);

/* Runs one eviction pass now (tests and benchmarks; the eviction thread does this by itself). */
void cachefs_evict_now(cachefs *fs);

/* ---- an object store behind the CAS (through.c) ---- */

typedef struct objstore objstore;
typedef struct cachefs_through cachefs_through;

typedef struct cachefs_through_stats {
	uint64_t uploaded, skipped; /* blobs written through; blobs the bucket had already */
	uint64_t fetched, refused;  /* blobs read through; bucket copies refused as corrupt */
	uint64_t backlog;           /* async: blobs acknowledged and not yet in the bucket */
	uint64_t failures;          /* object-store calls that failed after their retries */
} cachefs_through_stats;

/* A blobstore over the local store that writes new blobs through to `os` (sync: acknowledged once the
 * bucket has them; async: acknowledged after the local write, with a backlog on disk that survives
 * restarts) and reads missing ones back through. Order at shutdown: stop the callers, free this,
 * close the objstore, close the cachefs. */
cairn_status cachefs_through_new(cachefs *fs, objstore *os, bool async, cachefs_through **out);
blobstore *cachefs_through_blobstore(cachefs_through *t);
void cachefs_through_get_stats(cachefs_through *t, cachefs_through_stats *out);
void cachefs_through_free(cachefs_through *t);

#endif
