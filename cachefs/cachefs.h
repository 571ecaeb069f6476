/*
 * cachefs: the content-addressable store on local disk.
 *
 * Layout under the data directory:
 *   cas/<first two hex>/<64 hex>_<size>  a blob in a file of its own, mode 0644: every blob
 *                                        over 64 KiB, and a small one cachefs_pin_path needed as a file
 *   cas/<first two hex>/<n>.part         a file being written; removed at start-up
 *   packs/<id>.data                      small blobs (1 byte to 64 KiB), each at a 4 KiB slot of its own
 *   packs/<id>.journal                   a 48-byte record per small blob: hash, size, slot, time, check
 *   tmp/                                 read-through downloads; emptied at start-up
 *   SEALED                               the files in cas/ carry tamper seals (see Integrity)
 * A blob's bytes are hashed and matched against its name before it becomes visible: a file by
 * rename(2), a small blob by its journal record, which is written only after its data. So a crash
 * (kill -9 mid-write) leaves no half-visible blob: the start-up scan removes temp files, drops files
 * whose length is not the size in their name (what a power loss truncated) and a torn last record,
 * and frees pack space no live record covers. Evicting a small blob punches its slots, which frees
 * the space at once and marks the record dead; a pack with no blob left is deleted. Where the file
 * system cannot punch holes that SEEK_HOLE reports, small blobs get files of their own too.
 *
 * I/O: every file operation (open, read, write, fsync, fallocate, rename, unlink) runs on one io_uring
 * ring driven by the cachefs I/O thread; callers on gRPC threads only queue requests and get callbacks,
 * which run on the I/O thread (or inline, for answers the in-memory index gives at once; opening a
 * packed blob needs no I/O). Threads that may block (eviction, cachefs_pin_path) queue and wait.
 * Hashing happens in cachefs_write on the caller's thread, so it spreads over the callers' cores.
 * Small blobs wait in memory until commit; the I/O thread then writes all those committed meanwhile
 * with one write to the pack and one to its journal (with fsync, one fdatasync of each), so concurrent
 * small uploads share their system calls. The start-up scan uses plain system calls, before the ring,
 * as do the seals (see Integrity: fstat, fstatat, futimens and fchmod, which touch only inodes in
 * memory), on the I/O thread or on a caller's thread that may block.
 *
 * Index: an in-memory open-addressing table of digest → entry (size, location: its file, or pack and
 * slot, last use, LRU links, pins), 56 bytes plus a 4-byte table slot: 61 to 67 bytes a blob, so ten
 * million blobs take under 700 MB. It is rebuilt at start-up from a scan of cas/ and of the packs'
 * journals. Eviction runs on its own thread when the bytes held exceed max_size and removes least
 * recently used blobs that are neither pinned (open for reading, or being written) nor younger than
 * min_age since their last use; a FindMissingBlobs answer counts as a use.
 *
 * Space: the bytes held plus the bytes reserved by writes in flight never pass hard_limit, so the
 * disk never fills because eviction fell behind; ENOSPC from the disk gives RESOURCE_EXHAUSTED too,
 * and reads go on. A writer reserves room as its bytes arrive, never its whole declared size at
 * open, so an upload that stalls holds little more than what it sent. How writers share the
 * headroom (hard_limit minus bytes held minus bytes reserved):
 *  - a blob larger than hard_limit is refused at open with RESOURCE_EXHAUSTED;
 *  - a writer holds room for the bytes it has taken plus a grant ahead of them, which is at most
 *    4 MiB and at most an even share of the headroom (headroom / writers open): however many uploads
 *    are open, reservations ahead of data never take all of it, and a stalled upload holds what it
 *    sent plus one grant; a paused writer (blobstore_pause: an interrupted upload kept for a resume) gives
 *    its grant back;
 *  - the bytes themselves are first come, first served: an append whose bytes do not fit waits for
 *    one eviction pass, then fails with RESOURCE_EXHAUSTED — that writer only; aborting it gives
 *    back all it held, and the other writers go on;
 *  - a read-through download reserves its blob's whole size before its first byte (through_read.c),
 *    and the writer that adopts it takes that reservation over.
 *
 * Integrity (seal.c): nothing of a blob whose bytes changed on disk after they were verified (an
 * action writing to an input hard-linked from cas/, a hand in the data directory) reaches a client
 * or an action. A blob's own file gets mode 0644 (owned by cairn's user: only cairn's user may write
 * it; an input hard-linked from it keeps that mode, so a copy an action makes of it with cp is
 * writable, as a copy of a source file is in a local build) and is sealed before
 * it becomes visible: its modification time's nanoseconds are set to a value derived from the
 * digest, and any write, truncation or replacement of the file sets a fresh time that misses it
 * (with a chance of 1 in 10^9 of hitting it). The seal is checked with one fstat when a reader opens
 * the file and after each of its reads, by cachefs_pin_path before it hands out the path, and by
 * the start-up scan; a packed blob, whose pack has one time for all, is hashed whole (64 KiB at
 * most) on every read and when cachefs_pin_path copies it out. A blob that fails is logged with its
 * digest and path, dropped as eviction drops one, counted in corrupt_blobs, and answered as absent
 * (NOT_FOUND), so a client uploads it again and read-through fetches a good copy. Where the file
 * system keeps no nanosecond times (probed at open), a blob file is hashed whole instead on every
 * open and pin_path: a full read at SHA-256 speed (~0.6 s per GB) before the first byte. Limits: a
 * seal catches writes and replacements, not bit rot that leaves the file's time alone, nor someone
 * who restores the time deliberately; a packed blob changed while cairn was stopped is found at its
 * first read, not by the scan; after a restart, blobs written within the same second are evicted in
 * no particular order among themselves (the nanoseconds hold the seal); a data directory copied
 * without its file times loses its blobs at the next start. A data directory from before seals is
 * trusted once: the first start seals its files and writes SEALED.
 */
#ifndef CAIRN_CACHEFS_H
#define CAIRN_CACHEFS_H

#include "blobstore/blobstore.h"
#include "common/common.h"

typedef struct cachefs cachefs;

typedef struct cachefs_config {
	const char *dir;          /* data directory; created if missing */
	int64_t max_size;         /* eviction starts above this many bytes */
	int64_t hard_limit;       /* writes refused above this; 0 means max_size + max_size/10 */
	int64_t min_age_ns;       /* a blob used more recently than this is never evicted */
	bool fsync;               /* make each blob durable before acknowledging it (see I/O above) */
	/* write blobs of 16 MiB and more with O_DIRECT, around the page cache (where the file system
	 * takes it): less CPU and no page-cache memory for a large upload, but the first read after it
	 * comes from the disk. serve sets it with an object store behind the CAS, where the upload is
	 * the expensive path (the client waits for the bucket) and the local disk is its cache. */
	bool direct_writes;
	unsigned ring_entries;    /* io_uring submission queue size; 0 means 256 */
} cachefs_config;

typedef struct cachefs_stats {
	uint64_t blobs;
	uint64_t bytes;            /* bytes held by visible blobs */
	uint64_t reserved;         /* bytes reserved by writes in flight, read-through downloads among them */
	uint64_t evicted_blobs;
	uint64_t evicted_bytes;
	uint64_t rejected_writes;  /* writes (read-throughs among them) refused by the hard limit or ENOSPC */
	uint64_t corrupt_blobs;    /* blobs dropped because their bytes on disk no longer matched their digest */
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
/* The blobs held, a batch at a time, for a walk over all of them (a worker's re-replication):
 * writes up to cap digests into out from *cursor on (0 to start) and moves the cursor on; 0 at the
 * end. A blob held throughout the walk is listed once; one added or dropped meanwhile may be
 * listed or not. Takes the index lock briefly, never counts as a use. In-memory only. */
size_t cachefs_list(cachefs *fs, uint64_t *cursor, cairn_digest *out, size_t cap);

/* Pins a held blob so that it is not evicted until cachefs_unpin (counts as a use); a packed blob
 * stays packed. NOT_FOUND if absent. In-memory only. */
cairn_status cachefs_pin(cachefs *fs, const cairn_digest *d);
/* Path of a held blob's file, for hard-linking into an exec root, and pins the blob so that it is not
 * evicted until cachefs_unpin. A packed blob is copied out to a file of its own first, which waits on
 * disk I/O: not for gRPC threads. NOT_FOUND if absent, or if its bytes changed on disk (see
 * Integrity; the blob is dropped then). */
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
 * restarts) and reads missing ones back through (one bounded download per blob, its room reserved
 * first: RESOURCE_EXHAUSTED when it does not fit, DATA_LOSS when the bucket's copy does not match its
 * digest). Order at shutdown: stop the callers, free this, close the objstore, close the cachefs. */
cairn_status cachefs_through_new(cachefs *fs, objstore *os, bool async, cachefs_through **out);
blobstore *cachefs_through_blobstore(cachefs_through *t);
void cachefs_through_get_stats(cachefs_through *t, cachefs_through_stats *out);
void cachefs_through_free(cachefs_through *t);

#endif
