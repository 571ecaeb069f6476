/* Private to cachefs: what the files of the write-through blobstore share.
 *
 *   through.c         the object: writers, find_missing, the async backlog and its flusher
 *   through_read.c    reads through: bounded downloads, their room reserved, one per digest
 *   through_upload.c  uploads of committed blobs (sync blobs that were not streamed, the async backlog)
 *   through_stream.c  sync writes of large blobs, streamed to the bucket while their bytes arrive
 */
#ifndef CAIRN_CACHEFS_THROUGH_H
#define CAIRN_CACHEFS_THROUGH_H

#include "cachefs/internal.h"
#include "objstore/objstore.h"

/* Async uploads under way at once; the flusher starts the rest later. */
#define CACHEFS_THROUGH_MAX_INFLIGHT 64
/* Below this size a blob is uploaded from memory, and a PUT costs about what a HEAD costs, so it is
 * simply written again (a PUT of the same bytes under the same key changes nothing); from this size
 * on a HEAD first saves the transfer of what the bucket has. */
#define CACHEFS_THROUGH_SMALL (1 << 20)
#define CACHEFS_THROUGH_KEY_MAX (CAIRN_HASH_HEX_LEN + 8)

struct cachefs_through {
	blobstore bs;
	cachefs *fs;
	blobstore *local;
	objstore *os;
	bool async;
	char *backlog_dir, *tmp_dir;
	pthread_mutex_t mu; /* taken before the cachefs index mutex, never after it */
	pthread_cond_t cv;
	cairn_digest inflight[CACHEFS_THROUGH_MAX_INFLIGHT]; /* async uploads under way; guarded by mu */
	size_t ninflight;
	bool stopping;
	long active;        /* operations waiting on the object store; guarded by mu */
	int64_t stream_mem; /* bytes of part buffers reserved by streamed writers; guarded by mu */
	/* read-through downloads under way, one per digest, listed by the digest's first byte; guarded by mu */
	struct cachefs_through_fetch *fetches[256];
	pthread_t flusher;
	atomic_uint_fast64_t uploaded, skipped, fetched, refused, backlog, failures, seq;
};

/* Every operation that waits on the object store is counted, so that free can wait for them. */
void cachefs_through_active(cachefs_through *t, long delta);
/* "cas/<hex>" */
void cachefs_through_key(const cairn_digest *d, char key[CACHEFS_THROUGH_KEY_MAX]);
/* backlog/<hex>_<size> */
void cachefs_through_marker(const cachefs_through *t, const cairn_digest *d, char *out, size_t cap);
/* What a sync writer's client hears when the object store failed it. */
cairn_status cachefs_through_unavailable(const cairn_status *st);

/* through_upload.c: uploads a held blob; cb hears how it went (sync), or the backlog does (async, cb
 * NULL). data: the blob's bytes when the caller kept them (sync, below CACHEFS_THROUGH_SMALL), else
 * NULL; they are copied before the call returns. */
void cachefs_through_upload(cachefs_through *t, const cairn_digest *d, const uint8_t *data, blobstore_done_cb cb,
                            void *arg);
/* Async: starts the upload unless it is under way or too many are; the flusher gets the rest. */
void cachefs_through_upload_backlogged(cachefs_through *t, const cairn_digest *d);

/* through_read.c: the blobstore's open_read. */
void cachefs_through_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg);

/* through_stream.c: a sync writer of d over inner that streams the blob to the bucket as it arrives,
 * or NULL when d is below one part, the store cannot stream, or the part buffers do not fit the
 * memory budget now (then the blob is uploaded after its commit). */
blobstore_writer *cachefs_through_stream_open(cachefs_through *t, const cairn_digest *d, blobstore_writer *inner);

#endif
