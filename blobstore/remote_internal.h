/* What remote.c, remote_read.c and remote_write.c share: the remote itself, its circuit breaker,
 * deadlines and error messages. */
#ifndef CAIRN_BLOBSTORE_REMOTE_INTERNAL_H
#define CAIRN_BLOBSTORE_REMOTE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "blobstore/blobstore.h"
#include "google/bytestream/bytestream.pb-c.h"
#include "proto/reapi.h"
#include "rpc/rpc.h"

/* Largest blob bytes in one message, well under the 4 MiB a gRPC peer accepts by default. */
#define BLOBSTORE_REMOTE_CHUNK (1u << 20)
/* Longest instance name: a resource name (BLOBSTORE_REMOTE_NAME_MAX) holds it and a digest. */
#define BLOBSTORE_REMOTE_MAX_INSTANCE 512
#define BLOBSTORE_REMOTE_NAME_MAX (BLOBSTORE_REMOTE_MAX_INSTANCE + 256)

struct blobstore_remote {
	blobstore base; /* first */
	rpc_client *cl;
	rpc_channel *ch;
	char *target;
	char *prefix; /* "instance/" or "" */
	char *instance;
	int64_t timeout_ms, min_rate;
	cairn_breaker breaker;
	atomic_uint_fast64_t calls, refused;
};

/* OK if a call may go to the peer now (counted as sent), else the UNAVAILABLE to answer with;
 * `what` names the blob or blobs in it. */
cairn_status blobstore_remote_admit(blobstore_remote *r, const char *what);
/* Feeds a call's outcome to the breaker. */
void blobstore_remote_record(blobstore_remote *r, const cairn_status *st);
/* The deadline of a call that moves `bytes` blob bytes. */
int64_t blobstore_remote_timeout_ms(const blobstore_remote *r, int64_t bytes);
/* st with the peer and `what` added to its message. */
cairn_status blobstore_remote_error(const blobstore_remote *r, const cairn_status *st, const char *what);

/* The remote store's blobstore_ops: find_missing in remote.c, reads in remote_read.c, writes in
 * remote_write.c. */
void blobstore_remote_find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing,
                                   blobstore_done_cb cb, void *arg);
void blobstore_remote_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg);
void blobstore_remote_read(blobstore_reader *r, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg);
void blobstore_remote_close_read(blobstore_reader *r);
cairn_status blobstore_remote_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out);
void blobstore_remote_write(blobstore_writer *w, const void *data, size_t len, blobstore_done_cb cb, void *arg);
void blobstore_remote_commit(blobstore_writer *w, blobstore_done_cb cb, void *arg);
void blobstore_remote_abort(blobstore_writer *w);

#endif
