/*
 * blobstore: the storage interface the services see, and what every user of it shares.
 *
 * A blob store finds missing blobs, reads a range of a blob, writes a blob as a stream and verifies
 * it at commit. What stands behind the interface is composed once, in cmd/: in `serve` the local
 * cachefs (cachefs.h, with an object store written and read through); in a cluster's scheduler a
 * store sharded over the workers, each reached through a remote-store client; replication,
 * existence caching and the action cache's completeness check are decorators of the same interface.
 * The services never know which: there is no `if (cluster)` in them.
 *
 * Calls are asynchronous: each reports through its callback exactly once, and the callback may run
 * before the call returns (on the caller's thread) or later on another thread, so callers are
 * written for both. An implementation embeds `blobstore` (and `blobstore_reader`,
 * `blobstore_writer`) as its first member.
 *
 * get.c: a whole (small) blob read into memory, through the same asynchronous calls.
 *
 * sync.c: the same calls for threads that may block (an executor's slot threads, tools, tests):
 * whole blobs in and out of memory and files, and a fetch that makes a store that reads missing
 * blobs back from elsewhere hold one. Never for gRPC threads.
 *
 * shard.c: a store sharded over member stores by rendezvous hashing, with replicas, whose members
 * the caller replaces as the cluster's view changes (its section below says how).
 *
 * replicate.c: a worker's background re-replication after a view change, over the same ranking.
 *
 * remote.c, remote_read.c, remote_write.c: a store that is the client of another node's CAS over
 * gRPC, such as each member of a scheduler's shard (see "remote store" below).
 */
#ifndef CAIRN_BLOBSTORE_H
#define CAIRN_BLOBSTORE_H

#include "common/common.h"

/* The storage interface of the services. An implementation embeds `blobstore` (and `blobstore_reader`,
 * `blobstore_writer`) as its first member. Each call reports through a callback exactly once. */
typedef struct blobstore blobstore;
typedef struct blobstore_reader blobstore_reader;
typedef struct blobstore_writer blobstore_writer;

typedef void (*blobstore_done_cb)(void *arg, cairn_status st);
typedef void (*blobstore_open_read_cb)(void *arg, cairn_status st, blobstore_reader *r);
typedef void (*blobstore_read_cb)(void *arg, cairn_status st, size_t n);

typedef struct blobstore_ops {
	/* Sets missing[i] = 1 for every digest not held, 0 otherwise. A present answer keeps the blob for
	 * the store's grace period, so an upload–execute sequence never meets a missing digest. */
	void (*find_missing)(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing, blobstore_done_cb cb,
	                     void *arg);
	/* Opens a blob for reading: NOT_FOUND if absent. The blob stays readable (is not evicted) until
	 * the reader is closed. */
	void (*open_read)(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg);
	/* Reads up to len bytes at off into buf; n < len only at the end of the blob. One read at a time. */
	void (*read)(blobstore_reader *r, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg);
	void (*close_read)(blobstore_reader *r);
	/* Starts writing a blob of the given digest. RESOURCE_EXHAUSTED when the store cannot take it. */
	cairn_status (*open_write)(blobstore *bs, const cairn_digest *d, blobstore_writer **out);
	/* Appends data (copied before the callback; at most one append in flight). The callback is the
	 * back-pressure signal: the next append may start once it has run. */
	void (*write)(blobstore_writer *w, const void *data, size_t len, blobstore_done_cb cb, void *arg);
	/* Verifies size and hash, makes the blob durable as configured and visible, and frees the writer.
	 * INVALID_ARGUMENT when the bytes do not match the digest; nothing is left behind then. */
	void (*commit)(blobstore_writer *w, blobstore_done_cb cb, void *arg);
	/* Drops a writer and everything it wrote; no callback. Only when no append is in flight. */
	void (*abort)(blobstore_writer *w);
	/* The writer will take no bytes for a while (an interrupted upload, kept for its client to
	 * resume): the store may give back what it holds for bytes not yet written. Optional (NULL:
	 * nothing to give back). Only when no append is in flight. */
	void (*pause)(blobstore_writer *w);
} blobstore_ops;

struct blobstore {
	const blobstore_ops *ops;
};
struct blobstore_reader {
	const blobstore_ops *ops;
	int64_t size;
};
struct blobstore_writer {
	const blobstore_ops *ops;
	cairn_digest digest;
	uint64_t written;
};

static inline void blobstore_find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing,
                                          blobstore_done_cb cb, void *arg)
{
	bs->ops->find_missing(bs, ds, n, missing, cb, arg);
}
static inline void blobstore_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg)
{
	bs->ops->open_read(bs, d, cb, arg);
}
static inline void blobstore_read(blobstore_reader *r, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg)
{
	r->ops->read(r, off, buf, len, cb, arg);
}
static inline void blobstore_close_read(blobstore_reader *r) { r->ops->close_read(r); }
static inline cairn_status blobstore_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out)
{
	return bs->ops->open_write(bs, d, out);
}
static inline void blobstore_write(blobstore_writer *w, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	w->ops->write(w, data, len, cb, arg);
}
static inline void blobstore_commit(blobstore_writer *w, blobstore_done_cb cb, void *arg) { w->ops->commit(w, cb, arg); }
static inline void blobstore_abort(blobstore_writer *w) { w->ops->abort(w); }
static inline void blobstore_pause(blobstore_writer *w)
{
	if (w->ops->pause)
		w->ops->pause(w);
}

/* ---- a whole blob (get.c) --------------------------------------------------------------------- */

/* Reads a whole blob of at most max bytes (RESOURCE_EXHAUSTED naming it if larger) into a malloc'd
 * buffer that the callback owns (NULL unless st is OK); DATA_LOSS if it ends before its size. */
typedef void (*blobstore_get_cb)(void *arg, cairn_status st, uint8_t *data, size_t len);
void blobstore_get(blobstore *bs, const cairn_digest *d, int64_t max, blobstore_get_cb cb, void *arg);

/* ---- synchronous use (sync.c), for threads that may block ------------------------------------- */

/* find_missing, waited for. */
cairn_status blobstore_find_missing_sync(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing);
/* Writes a whole buffer as a blob of digest d, in pieces, and waits. */
cairn_status blobstore_put_sync(blobstore *bs, const cairn_digest *d, const void *data, size_t len);
/* The same from an open file, read from its current offset to its end; `name` names it in errors. */
cairn_status blobstore_put_fd_sync(blobstore *bs, const cairn_digest *d, int fd, const char *name);
/* The same into an open writer, which it commits (or drops, after a failure). */
cairn_status blobstore_write_fd_sync(blobstore_writer *w, int fd, const char *name);
/* Hashes the file at path, then stores it; its digest in *out. */
cairn_status blobstore_put_file_sync(blobstore *bs, const char *path, cairn_digest *out);
/* Reads a whole blob into a malloc'd buffer (one byte longer, for a NUL the caller may add).
 * RESOURCE_EXHAUSTED if it is larger than max; DATA_LOSS if it ends before its size. */
cairn_status blobstore_get_sync(blobstore *bs, const cairn_digest *d, int64_t max, uint8_t **data, size_t *len);
/* Opens d and closes it at once: a store that reads missing blobs back from elsewhere (an object
 * store, a peer) holds it afterwards. NOT_FOUND if it is nowhere. */
cairn_status blobstore_fetch_sync(blobstore *bs, const cairn_digest *d);

/* Copies blob d from one store into another (a worker's fetch of an input from its peers into
 * its own disk); NOT_FOUND if `from` lacks it, DATA_LOSS if it ends short, INVALID_ARGUMENT if its
 * bytes do not match d (the writer verifies them). */
cairn_status blobstore_copy_sync(blobstore *from, blobstore *to, const cairn_digest *d);

/* ---- a store sharded over members (shard.c) --------------------------------------------------- */

/* A blob store that spreads blobs over member stores (in a scheduler, one remote-store client per
 * worker). Each digest is owned by the `replicas` members that rank highest for it by rendezvous
 * hashing: a score mixes the digest's hash with a key derived once from the member's id, so a view
 * change moves only the blobs whose owners changed (about 1/N of them when one of N members joins
 * or leaves), never a whole range or the blobs of everyone.
 *
 * find_missing asks each owner, in parallel, about the digests it owns, and answers once all did:
 * a digest is present when any owner has it, and an owner that fails counts as lacking it (the
 * client only uploads it again). open_read tries the owners in score order, then the other
 * members (a blob may still sit on a former owner after a view change): the first that opens it
 * serves the reads; NOT_FOUND when every member answered that it lacks the blob, else the first
 * member's failure (the blob may be on the member that could not answer). A write goes to every
 * owner; an owner that refuses at open or fails a write is dropped while another one goes on, and
 * a commit succeeds when at least one owner committed, since the blob is then readable (a blob held
 * by fewer than `replicas` owners is left for the cluster's background re-replication to copy
 * again), else reports the first owner's error. With no member every call fails with UNAVAILABLE.
 *
 * set_members replaces the view at any time, from any thread, while calls are in flight: a call
 * keeps the view it started with until it answers, or until its reader is closed or its writer
 * committed or aborted. The shard copies the ids; the stores stay the caller's and must stay usable
 * until every call started while they were members has ended. */
typedef struct blobstore_shard blobstore_shard;

typedef struct blobstore_shard_config {
	int replicas; /* copies of each blob; 0 means 1 */
} blobstore_shard_config;

typedef struct blobstore_shard_member {
	const char *id; /* unique in a view (a worker's UUID); the same id ranks alike everywhere */
	blobstore *store;
} blobstore_shard_member;

/* cfg may be NULL (defaults). The shard starts with no member. */
blobstore_shard *blobstore_shard_new(const blobstore_shard_config *cfg);
/* The shard as a blob store, for the services. */
blobstore *blobstore_shard_store(blobstore_shard *s);
void blobstore_shard_set_members(blobstore_shard *s, const blobstore_shard_member *m, size_t n);
/* Calls in flight keep their view and may end after the shard is freed. */
void blobstore_shard_free(blobstore_shard *s);

/* The ranking of a view without a shard, for whoever needs a digest's owners as every shard over
 * the same member ids ranks them (a worker's re-replication). The ids are copied; the stores are
 * not used. */
#define BLOBSTORE_MAX_REPLICAS 16 /* owners a ranking names at most */
typedef struct blobstore_ranking blobstore_ranking;
blobstore_ranking *blobstore_ranking_new(const blobstore_shard_member *m, size_t n);
/* Writes into owners the indices (into the members it was made of) of the first k members for d,
 * in rank order; returns how many: k, or fewer when the view is smaller. */
size_t blobstore_ranking_owners(const blobstore_ranking *r, const cairn_digest *d, size_t k, size_t *owners);
void blobstore_ranking_free(blobstore_ranking *r);

/* ---- re-replication (replicate.c) -------------------------------------------------------------- *
 *
 * After a worker leaves, the blobs it held have a copy fewer; after one joins, it owns blobs it does
 * not hold. Each worker mends what it can see from its side: a pass walks the blobs it holds (a
 * batch at a time, through `list`) and, for each blob of which it is one of the `replicas` owners
 * under the view, asks the owners that are new since the base view (the view of its last pass that
 * left nothing undone; every other owner when there is none) which of them lack it — one
 * find_missing of up to `batch` digests per owner — and copies it to those that do, from its own
 * store, with at most `copies` copies in flight so that clients' traffic keeps the bandwidth. Only
 * owners that are new are asked: an owner that held a blob under the base view and lacks it now
 * has evicted it, and copying it back would undo its eviction; and a present answer counts as a use
 * on the peer, so asking about every blob after each change would flatten the peers' LRU order. A
 * blob this worker no longer owns is left alone (its eviction handles it).
 *
 * An owner that fails (find_missing fails, or a copy fails for want of the peer or of its room:
 * UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) is given up on for the rest of the pass; the
 * others go on. What was left undone is counted as failed, and the base view stays where it was, so
 * that the next pass asks again.
 *
 * blobstore_replicate_pass is one pass on the caller's thread, which may block (it waits on its
 * calls). blobstore_replicator runs passes on a thread of its own: each view handed in (set_members,
 * from any thread, never blocking) that differs from the last in its members starts a pass
 * settle_ms later, cutting short the pass under way (it stops at its next step: a batch, a copy);
 * a pass that left failures is tried again after retry_ms. One pass at a time; each ends with one
 * log line (blobs walked, checked, copied, failed, elapsed). Memory is bounded by `batch`.
 */
typedef struct blobstore_replicate_config {
	int replicas;     /* copies of each blob, as the shard's; 0 means 1 */
	int copies;       /* copies in flight at most; 0 means 4 */
	size_t batch;     /* blobs walked per step, and digests per find_missing; 0 means 4096 */
	int64_t settle_ms; /* the replicator: a pass starts this long after the view last changed */
	int64_t retry_ms;  /* the replicator: and again this long after a pass that left failures; 0: never */
	/* The blobs this member holds, a batch at a time: writes up to cap digests from *cursor on (0 at
	 * the start) and moves the cursor on; 0 at the end. Blobs added or removed meanwhile may be seen
	 * or missed. Called on the pass's thread. */
	size_t (*list)(void *arg, uint64_t *cursor, cairn_digest *out, size_t cap);
	void *list_arg;
} blobstore_replicate_config;

typedef struct blobstore_replicate_result {
	uint64_t walked;   /* blobs this member holds, as listed */
	uint64_t checked;  /* of them, those it owns that have a new owner other than itself */
	uint64_t copied;   /* copies made to owners that lacked them */
	uint64_t failed;   /* copies that failed, and copies to owners given up on before they were asked */
	uint64_t peers_failed; /* owners given up on */
	bool cancelled;    /* cut short (cancelled() said so): its counts are partial */
	int64_t elapsed_ms;
} blobstore_replicate_result;

/* One pass over view m (n members, unique ids), of which self is one: its store is the local one,
 * read from. base (nbase members; NULL for none) is the view of the last complete pass. cancelled
 * (NULL: never) is asked before each step. Blocks: never on a gRPC thread. */
void blobstore_replicate_pass(const blobstore_replicate_config *cfg, const char *self, const blobstore_shard_member *m,
                              size_t n, const blobstore_shard_member *base, size_t nbase, bool (*cancelled)(void *arg),
                              void *arg, blobstore_replicate_result *out);

typedef struct blobstore_replicator blobstore_replicator;

typedef struct blobstore_replicator_stats {
	uint64_t views;       /* views handed in that differed from the one before */
	uint64_t passes;      /* passes run to their end */
	uint64_t done_view;   /* the number (1, 2, …: in the order handed in) of the view of the last such pass */
	blobstore_replicate_result last; /* its result */
} blobstore_replicator_stats;

/* Starts the thread; self is this member's id. The config is copied. */
cairn_status blobstore_replicator_new(const blobstore_replicate_config *cfg, const char *self,
                                     blobstore_replicator **out);
/* A new view (the ids are copied; the stores must stay usable until the replicator is freed). */
void blobstore_replicator_set_members(blobstore_replicator *r, const blobstore_shard_member *m, size_t n);
blobstore_replicator_stats blobstore_replicator_get_stats(blobstore_replicator *r);
/* Cuts the pass under way short, waits for its copies in flight (each ends by its own deadline) and
 * stops the thread. NULL is fine. */
void blobstore_replicator_free(blobstore_replicator *r);

/* ---- remote store (remote.c, remote_read.c, remote_write.c) ------------------------------------ *
 *
 * A blob store that is the client of a remote CAS: another cairn's (a worker's private port, or
 * `cairn serve`) ContentAddressableStorage and ByteStream services, called through an rpc_client that
 * the caller starts and shares between all its remotes, so nothing here blocks and every callback
 * runs on one of that client's pollers (or at once, on the caller's thread, when no call is needed).
 *
 * find_missing is FindMissingBlobs, one call after another of at most 4096 digests each, the answers
 * merged; a failed call fails the whole find_missing (the caller decides what a missing answer means).
 * open_read reads the blob's first 64 KiB (or all of it, if smaller) with one ByteStream Read: that
 * is how NOT_FOUND is known at open, and those bytes answer the reads that fall in them; any other
 * read(off, len) is one Read with read_offset and read_limit, its messages collected into the
 * caller's buffer until len bytes or the end. A write is one ByteStream Write stream to
 * `{instance/}uploads/{uuid}/blobs/{hash}/{size}`, opened by open_write: each append is sent as
 * messages of at most 1 MiB, one in flight and one more waiting behind it, and its callback runs
 * once its last message is in flight or waiting (the back-pressure: a writer holds at most one
 * message of its own); commit sends finish_write once those went, checks the answer's
 * committed_size and passes the server's status on (INVALID_ARGUMENT when the bytes do not match
 * the digest — the server keeps nothing then — RESOURCE_EXHAUSTED when it is full); abort cancels
 * the stream. An aborted writer's call may still be coming back: the remote outlives it (stop the
 * rpc_client before freeing the remote).
 *
 * Deadlines: a call of no blob bytes (FindMissingBlobs) has timeout_ms. A Read or Write stream has
 * timeout_ms plus the time its bytes take at min_rate, so a large blob is not cut off by a timeout
 * made for small calls, while a peer that stalls is given up after at most that long.
 *
 * Circuit breaker: after failure_threshold calls in a row failed for want of the peer (UNAVAILABLE:
 * refused, reset; DEADLINE_EXCEEDED: stalled), every call fails at once with UNAVAILABLE naming the
 * peer, without a connection attempt, for cooldown_ms; then one call goes through to probe: its
 * success closes the breaker, its failure opens it for another cool-down. Any other answer of the
 * server (NOT_FOUND included) counts as a success; a call cancelled here counts for nothing. Every
 * error names the peer and the blob.
 */
typedef struct rpc_client rpc_client;
typedef struct blobstore_remote blobstore_remote;

typedef struct blobstore_remote_config {
	const char *target;     /* "host:port" of the remote CAS */
	rpc_client *client;     /* runs the calls; outlives the remote */
	const char *instance;   /* instance name; NULL or "" for none */
	int64_t timeout_ms;     /* deadline of a call without blob bytes; 0 means 10 s */
	int64_t min_rate;       /* bytes per second a Read or Write must keep up; 0 means 1 MiB/s */
	int failure_threshold;  /* failures in a row that open the breaker; 0 means 5 */
	int64_t cooldown_ms;    /* how long an open breaker refuses calls; 0 means 5 s */
} blobstore_remote_config;

typedef struct blobstore_remote_stats {
	uint64_t calls;   /* calls sent to the peer */
	uint64_t refused; /* calls the open breaker answered without the peer */
} blobstore_remote_stats;

/* Opens the channel (connections are made by the calls, not here); INVALID_ARGUMENT for a bad config. */
cairn_status blobstore_remote_new(const blobstore_remote_config *cfg, blobstore_remote **out);
blobstore *blobstore_remote_blobstore(blobstore_remote *r);
blobstore_remote_stats blobstore_remote_get_stats(blobstore_remote *r);
/* The caller learned by other means that the peer is back (a worker that rejoined the cluster's
 * view): closes the breaker and drops the channel's reconnect back-off, so that calls go to the
 * peer again at once instead of failing until the cool-down and the back-off are over. */
void blobstore_remote_reset(blobstore_remote *r);
/* No call of its may be in flight (stop the rpc_client first, or wait for the callbacks). */
void blobstore_remote_free(blobstore_remote *r);

#endif
