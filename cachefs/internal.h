/*
 * cachefs internals: how the pieces of cachefs.h fit.
 *
 *  index.c     the digest → entry table, the LRU list and the byte accounting (one mutex)
 *  ring.c      the io_uring ring and its I/O thread; other threads queue cachefs_op's
 *  write.c     blob writers: hashing on the caller's thread; large blobs in double-buffered writes
 *              to cas/<xx>/<n>.part, small ones kept in memory until commit
 *  space.c     room below the hard limit: writers' reservations, appends waiting for an eviction pass
 *  commit.c    the end of a large writer: fsync, rename into cas/, publish in the index; or clean up
 *  pack.c      pack files (small blobs at 4 KiB slots) and their journal records; deleting packs
 *  group.c     the end of small writers: group commit into the active pack
 *  pack_scan.c the start-up scan of the packs
 *  materialise.c  copying a packed blob out to its own file, for cachefs_pin_path
 *  read.c      blob readers (pin, open, read, close, unpin)
 *  evict.c     the eviction thread and passes; dropping blobs (also for seal.c)
 *  seal.c      tamper seals on blob files, hashing packed blobs as they are read, dropping corrupt blobs
 *  scan.c      directory layout and the start-up scan of cas/ that rebuilds the index
 *  adopt.c     a read-through download made a blob, under the reservation made before it began
 *  store.c     open/close, the blobstore vtable, find_missing, reservations, pins and stats
 *
 * Lock order: a writer's mutex, then the index mutex (which also guards the pack table), then the
 * packer's queue mutex, then the ring's queue mutex. No callback runs while a cachefs lock is held.
 */
#ifndef CAIRN_CACHEFS_INTERNAL_H
#define CAIRN_CACHEFS_INTERNAL_H

#include "cachefs/cachefs.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

/* ---- index ----------------------------------------------------------------------------------- */

#define CACHEFS_NIL UINT32_MAX

/* Entry states. Every digest has at most one entry; only VISIBLE ones are "held" (found by
 * find_missing and open_read, on the LRU list and counted in bytes). The other states keep a digest
 * reserved while a file operation on its name is under way, so that a rename into place and an
 * eviction's unlink of the same name never race. */
enum cachefs_state {
	CACHEFS_VISIBLE = 0,
	CACHEFS_PENDING = 1, /* a commit is renaming the file into place */
	CACHEFS_DYING = 2,   /* its file is being unlinked or its slots punched: by eviction (pins == 0), or
	                      * because its bytes no longer match its digest (seal.c; readers may pin it) */
	CACHEFS_GONE = 3,    /* its file vanished or was dropped under open readers; removed when pins drop to 0 */
};

/* One blob: 56 bytes. With the table's 4-byte slot at a load factor between 3/8 and 3/4 (the table
 * doubles at 3/4), a blob costs 56 + 4/load = 61.3 to 66.7 bytes: about the 64 the design aims at,
 * a little over it just after the table doubled; ten million blobs take at most 667 MB. The slab
 * grows in chunks, so it never holds more than one partly used chunk. */
typedef struct cachefs_entry {
	uint8_t hash[CAIRN_HASH_LEN];
	uint32_t size_lo;        /* the size is 40 bits: CAIRN_MAX_BLOB_SIZE is 2^40 */
	uint32_t size_hi : 8;
	uint32_t state : 2;
	uint32_t pins : 22;      /* open readers, pin_path holders */
	uint32_t last_use;       /* in ticks (see cachefs_index_tick) */
	uint32_t prev, next;     /* LRU links (head = most recent); next also links the free list */
	uint32_t loc;            /* 0: its own file in cas/; else in a pack (see cachefs_loc) */
} cachefs_entry;

#define CACHEFS_MAX_PINS ((1u << 22) - 1)
#define CACHEFS_CHUNK_SHIFT 12 /* 4096 entries, ~208 KiB, per slab chunk */

typedef struct cachefs_index {
	pthread_mutex_t mu;
	uint64_t seed;          /* keys the slot hash: stored digests are verified, lookups are not */
	uint32_t *slots;        /* entry index + 1; 0 is empty */
	uint32_t mask;          /* slot count - 1 */
	uint32_t count;         /* entries in the table, any state */
	cachefs_entry **chunks;
	uint32_t nchunks, high; /* entries ever handed out from the slab */
	uint32_t free_head;
	uint32_t lru_head, lru_tail;
	int64_t base_ns;        /* monotonic time of tick 0 */
	uint64_t visible;
	int64_t bytes, reserved;
	uint32_t writers;       /* open writers: they share the headroom ahead of their data (space.c) */
	uint64_t evicted_blobs, evicted_bytes, rejected_writes;
	uint64_t corrupt_blobs; /* dropped because their bytes no longer matched their digest */
} cachefs_index;

void cachefs_index_init(cachefs_index *ix);
void cachefs_index_destroy(cachefs_index *ix);
/* Everything below: the caller holds ix->mu. */
uint32_t cachefs_index_find(const cachefs_index *ix, const cairn_digest *d);
/* Adds an entry (the digest must be absent) in a state other than VISIBLE, located in a file. */
uint32_t cachefs_index_insert(cachefs_index *ix, const cairn_digest *d, enum cachefs_state st);
/* Removes a non-visible entry that no pack holds (loc 0). */
void cachefs_index_remove(cachefs_index *ix, uint32_t i);
/* Makes an entry VISIBLE: LRU head, counted in bytes. Entries must be published in last_use order. */
void cachefs_index_publish(cachefs_index *ix, uint32_t i, uint32_t last_use);
/* Takes a VISIBLE entry out of the LRU list and the byte count, into state st. */
void cachefs_index_unpublish(cachefs_index *ix, uint32_t i, enum cachefs_state st);
/* Counts a use: LRU head, last_use = now. */
void cachefs_index_touch(cachefs_index *ix, uint32_t i, uint32_t now);
/* Drops one pin; removes a GONE entry whose last pin it was. */
void cachefs_index_unpin(cachefs_index *ix, uint32_t i);

/* What a commit finds when it claims its digest. */
enum cachefs_claim {
	CACHEFS_CLAIMED, /* the entry is PENDING for this commit (it was absent, or GONE with readers' pins) */
	CACHEFS_HELD,    /* the blob is visible already: counted as a use, the commit drops its copy */
	CACHEFS_BUSY,    /* another commit or an eviction is at work on it: try again shortly */
};
enum cachefs_claim cachefs_index_claim(cachefs_index *ix, const cairn_digest *d, uint32_t now);
/* Gives up a claimed entry whose bytes never arrived: GONE if readers still pin it, else removed. */
void cachefs_index_unclaim(cachefs_index *ix, uint32_t i);
/* The digest of entry i. */
void cachefs_index_digest(const cachefs_index *ix, uint32_t i, cairn_digest *out);
/* The visible entries among the next `scan` of the slab from *cursor (an entry index), at most cap
 * of them, into out; moves the cursor past the entries looked at. Entries never move in the slab,
 * so a walk in several calls sees each entry that stays visible throughout once. */
size_t cachefs_index_list(const cachefs_index *ix, uint64_t *cursor, uint32_t scan, cairn_digest *out, size_t cap);
/* Walks the whole index and checks its invariants (LRU order and links, counts, bytes); for tests. */
bool cachefs_index_check(const cachefs_index *ix);

static inline cachefs_entry *cachefs_index_at(const cachefs_index *ix, uint32_t i)
{
	return &ix->chunks[i >> CACHEFS_CHUNK_SHIFT][i & ((1u << CACHEFS_CHUNK_SHIFT) - 1)];
}
static inline int64_t cachefs_entry_size(const cachefs_entry *e)
{
	return (int64_t)e->size_lo | (int64_t)e->size_hi << 32;
}

/* Where a packed blob lies: pack id (1 to CACHEFS_MAX_PACKS - 1) in the high bits, the 4 KiB slot
 * it starts at in the low CACHEFS_SLOT_BITS. Location 0 is a file of its own. */
#define CACHEFS_SLOT_SHIFT 12
#define CACHEFS_SLOT_BITS 20
#define CACHEFS_MAX_PACKS (1u << (32 - CACHEFS_SLOT_BITS))
static inline uint32_t cachefs_loc(uint32_t pack, uint64_t off)
{
	return pack << CACHEFS_SLOT_BITS | (uint32_t)(off >> CACHEFS_SLOT_SHIFT);
}
static inline uint32_t cachefs_loc_pack(uint32_t loc) { return loc >> CACHEFS_SLOT_BITS; }
static inline uint64_t cachefs_loc_off(uint32_t loc)
{
	return (uint64_t)(loc & ((1u << CACHEFS_SLOT_BITS) - 1)) << CACHEFS_SLOT_SHIFT;
}
/* Bytes a blob of this size takes in a pack: whole slots. */
static inline uint64_t cachefs_slot_bytes(int64_t size)
{
	return ((uint64_t)size + (1u << CACHEFS_SLOT_SHIFT) - 1) & ~(uint64_t)((1u << CACHEFS_SLOT_SHIFT) - 1);
}

/* Time in ticks of 2^26 ns (67 ms): 32 bits last 9 years. Tick 0 lies 2^28 ticks (208 days) before
 * the index was created, so that the start-up scan can place older file times. */
#define CACHEFS_TICK_SHIFT 26
#define CACHEFS_TICK_OFFSET (UINT32_C(1) << 28)
uint32_t cachefs_index_tick(const cachefs_index *ix, int64_t mono_ns);
/* The tick count a duration covers, rounded up. */
uint32_t cachefs_ticks_of(int64_t ns);

/* ---- ring ------------------------------------------------------------------------------------ */

enum cachefs_op_kind {
	CACHEFS_OP_OPENAT,
	CACHEFS_OP_READ,   /* loops short reads until len or end of file */
	CACHEFS_OP_WRITE,  /* loops short writes until len */
	CACHEFS_OP_WRITEV, /* buf is nvec iovecs of len bytes in all; loops like WRITE, consuming them */
	CACHEFS_OP_FSYNC,  /* flags: 0, or IORING_FSYNC_DATASYNC for fdatasync */
	CACHEFS_OP_FALLOCATE, /* flags is the mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE to punch */
	CACHEFS_OP_CLOSE,
	CACHEFS_OP_RENAMEAT, /* flags: renameat2's (RENAME_NOREPLACE) */
	CACHEFS_OP_UNLINKAT,
	CACHEFS_OP_TIMEOUT, /* completes after ts with res 0 */
	CACHEFS_OP_NOP,     /* completes at once: runs its callback on the I/O thread */
};

typedef struct cachefs_op cachefs_op;
/* res: -errno, or the fd (openat), the bytes transferred (read, write), 0 (others). */
typedef void (*cachefs_op_cb)(cachefs_op *op, int64_t res);

/* One file operation. Embedded in the object it works for; every pointer in it must stay valid until
 * the callback runs. */
struct cachefs_op {
	cachefs_op *next;
	enum cachefs_op_kind kind;
	int fd;                 /* the file, or the directory for openat/unlinkat/renameat */
	int fd2;                /* renameat: the new directory */
	const char *path, *path2;
	int flags;
	unsigned mode;
	void *buf;
	unsigned nvec;
	uint64_t len, off, done;
	struct __kernel_timespec ts;
	cachefs_op_cb cb;
	void *arg;
	int64_t res;            /* cachefs_ring_run: the result */
};

typedef struct cachefs_ring {
	struct io_uring uring;
	pthread_t thread;
	int efd;                 /* other threads wake the I/O thread through it */
	uint64_t ebuf;
	cachefs_op eop;          /* the read on efd, always armed */
	pthread_mutex_t mu;
	cachefs_op *qhead, *qtail; /* queued by any thread, under mu */
	bool stopping;
	/* I/O thread only: */
	cachefs_op *bhead, *btail; /* waiting for a submission slot */
	unsigned inflight, max_inflight;
	bool eop_armed;
} cachefs_ring;

cairn_status cachefs_ring_start(cachefs_ring *r, unsigned entries);
/* Runs everything queued to completion (callbacks may queue more), then stops the thread. */
void cachefs_ring_stop(cachefs_ring *r);
/* Queues an operation; never blocks on I/O. Its callback runs on the I/O thread. */
void cachefs_ring_submit(cachefs_ring *r, cachefs_op *op);
/* Runs n operations (their cb and arg are set here) and waits until all are done; each op's result
 * is in its res. For threads that may block. The I/O thread cannot wait for its own ring, so there
 * each runs as a plain system call (cachefs_pin_path gets there when write-through calls it from
 * a commit callback, and a reader when it drops a corrupt blob, see seal.c: both rare). */
void cachefs_ring_run(cachefs_ring *r, cachefs_op *ops, size_t n);

/* ---- the store ------------------------------------------------------------------------------- */

#define CACHEFS_FANOUT 256
/* "<64 hex>_<size>" */
#define CACHEFS_NAME_MAX (CAIRN_HASH_HEX_LEN + 1 + 21)

/* ---- packs: small blobs in shared files (pack.c, group.c, pack_scan.c, materialise.c) ------------ */

/* Blobs of 1 to this many bytes are packed (while the file system can punch holes, see pack.c). */
#define CACHEFS_PACK_MAX_BLOB (64 << 10)
/* A pack's data file holds at most this much: the slots a location can name (4 GiB). */
#define CACHEFS_PACK_MAX_SIZE ((uint64_t)1 << (CACHEFS_SLOT_BITS + CACHEFS_SLOT_SHIFT))
/* One journal record (see pack.c). */
#define CACHEFS_RECORD_SIZE 48
/* Writers one group commit takes at most. */
#define CACHEFS_GROUP_MAX 256

typedef struct cachefs_pack {
	cachefs *fs;
	uint32_t id;
	int fd;              /* packs/<id>.data, open for reading (and appending, while active) */
	int jfd;             /* packs/<id>.journal, open while the pack is active */
	/* under ix.mu: */
	uint32_t live;       /* index entries located in it */
	uint32_t refs;       /* readers and materialisations reading from it */
	bool active;         /* the pack being appended to */
	bool closing;        /* its journal's close is in flight */
	bool dying;          /* being deleted */
	/* the I/O thread, while active: */
	uint64_t end, jend;  /* where the next data and the next record go */
	cachefs_op op;       /* the journal's close, then the deletion */
	char data_name[16], journal_name[16];
} cachefs_pack;

typedef struct cachefs_writer cachefs_writer;

/* The group commit of small writers. */
typedef struct cachefs_packer {
	pthread_mutex_t mu;
	cachefs_writer *head, *tail; /* verified writers waiting for a group */
	bool busy;                   /* a group, or a new pack, is under way on the I/O thread */
	cachefs_op kick;             /* starts the I/O thread on the queue */
	/* the I/O thread only: */
	cachefs_pack *active;        /* the pack groups are appended to */
	cachefs_pack *fresh;         /* the pack being created */
	cachefs_writer *g[CACHEFS_GROUP_MAX];
	size_t n;
	uint64_t off;                /* where the group's data starts in the active pack */
	struct iovec iov[2 * CACHEFS_GROUP_MAX];
	uint8_t rec[CACHEFS_GROUP_MAX * CACHEFS_RECORD_SIZE];
	cachefs_op op;
} cachefs_packer;

struct cachefs {
	blobstore bs;
	cachefs_config cfg;
	char *dir;               /* absolute */
	int dirfd, tmpfd, lockfd, packsfd;
	int casfd[CACHEFS_FANOUT];
	bool packing;            /* small blobs go to packs */
	bool direct;             /* large blobs are written with O_DIRECT: cfg.direct_writes, and it works here */
	bool sealing;            /* blob files carry tamper seals (seal.c): the file system keeps nanosecond times */
	uint64_t pack_limit;     /* the data a pack takes: CACHEFS_PACK_MAX_SIZE (tests lower it) */
	cachefs_pack *packs[CACHEFS_MAX_PACKS]; /* by id, under ix.mu; [0] stays NULL */
	uint32_t npacks;
	cachefs_packer pk;
	int64_t low_water;       /* an eviction pass stops at or below this many bytes */
	cachefs_index ix;
	cachefs_ring ring;
	atomic_uint_fast64_t tmp_seq;
	/* eviction thread */
	pthread_t evict_thread;
	bool evict_started;
	pthread_mutex_t evict_mu;
	pthread_cond_t evict_cv;
	bool evict_stop, evict_kick;
	cachefs_writer *room_waiters; /* under evict_mu: appends waiting for the next pass (space.c) */
	pthread_mutex_t pass_mu; /* one eviction pass at a time */
};

extern const blobstore_ops cachefs_ops;

/* Whether a blob of this size goes into a pack (else into a file of its own). */
static inline bool cachefs_packs_blob(const cachefs *fs, int64_t size)
{
	return fs->packing && size > 0 && size <= CACHEFS_PACK_MAX_BLOB;
}

void cachefs_blob_name(const cairn_digest *d, char out[CACHEFS_NAME_MAX]);

/* space.c: reserves n bytes under the hard limit for blob d, which is on its way in. RESOURCE_EXHAUSTED
 * when they do not fit: for good if d is larger than the hard limit, else until eviction made room
 * (it is started). cachefs_release gives back what a failure leaves unused; a blob's publication
 * turns its reservation into bytes held. */
cairn_status cachefs_reserve(cachefs *fs, const cairn_digest *d, int64_t n);
void cachefs_release(cachefs *fs, int64_t n);

/* scan.c */
cairn_status cachefs_layout_open(cachefs *fs);
void cachefs_layout_close(cachefs *fs);
cairn_status cachefs_scan(cachefs *fs);

/* What the start-up scan found so far: blobs indexed but not yet on the LRU list. */
typedef struct cachefs_found {
	uint64_t *order; /* last_use << 32 | entry index, sorted before publishing */
	size_t n, cap;
	uint64_t dropped, packs, packed;
	int64_t wall_now, mono_now;
	bool adopting;   /* the files of an older data directory get their seals now (seal.c) */
	uint64_t sealed; /* files sealed so */
} cachefs_found;
/* Indexes a blob found on disk, last written at wall-clock time wall_ns, at location loc. */
void cachefs_scan_add(cachefs *fs, cachefs_found *s, const cairn_digest *d, int64_t wall_ns, uint32_t loc);
/* pack_scan.c: indexes the live records of every pack, after cas/ was scanned. */
cairn_status cachefs_scan_packs(cachefs *fs, cachefs_found *s);

/* pack.c */
/* Sets fs->packing: whether the file system under packs/ can hold packs; before the scan. */
void cachefs_packs_probe(cachefs *fs);
/* write.c: sets fs->direct: with cfg.direct_writes, whether the file system under tmp/ takes O_DIRECT
 * writes (false without it, and nothing is tried). */
void cachefs_direct_probe(cachefs *fs);
/* Closes every pack's files; after the ring stopped. */
void cachefs_packs_close(cachefs *fs);
/* Under ix.mu: a new pack with no files yet, with id `want`, or with the lowest free id if want is 0;
 * NULL if that id (every id) is taken. */
cachefs_pack *cachefs_pack_add(cachefs *fs, uint32_t want);
/* Under ix.mu: the pack of a location. */
static inline cachefs_pack *cachefs_pack_of(const cachefs *fs, uint32_t loc)
{
	return fs->packs[cachefs_loc_pack(loc)];
}
/* Under ix.mu: true, and marks it dying, when nothing needs the pack any more (not active, no live
 * entry, no reader); the caller then deletes it. */
bool cachefs_pack_unused(cachefs_pack *p);
/* Removes a dying pack's files through the ring, then frees its id. Any thread. */
void cachefs_pack_delete(cachefs *fs, cachefs_pack *p);
/* The I/O thread: ends appends to the active pack and closes its journal. */
void cachefs_pack_retire(cachefs *fs, cachefs_pack *p);
/* Fills op to punch the slots of a packed blob of the given size. */
void cachefs_pack_punch_op(cachefs_op *op, const cachefs_pack *p, uint32_t loc, int64_t size);
/* Encodes and decodes a journal record; decoding checks it. */
void cachefs_record_put(uint8_t *rec, const cairn_digest *d, uint64_t off, uint32_t wall_s);
bool cachefs_record_get(const uint8_t *rec, cairn_digest *d, uint64_t *off, uint32_t *wall_s);
/* Under ix.mu: every pack's live count matches the entries located in it; for tests. */
bool cachefs_packs_check(const cachefs *fs);

/* group.c */
void cachefs_packer_init(cachefs_packer *pk);
void cachefs_packer_destroy(cachefs_packer *pk);
/* Queues a verified small writer for the next group commit; any thread. */
void cachefs_group_commit(cachefs_writer *w);

/* store.c: the file of pinned blob d vanished from disk: the blob is no longer held. Returns the
 * NOT_FOUND its caller answers. */
cairn_status cachefs_forget_vanished(cachefs *fs, const cairn_digest *d);

/* materialise.c: makes a pinned packed blob a file of its own (a no-op for a file). */
cairn_status cachefs_materialise(cachefs *fs, const cairn_digest *d);

/* evict.c: init before anything else, start once the ring runs, stop before the ring stops (a pass
 * waits on it), destroy last (a publish may still kick it). */
void cachefs_evict_init(cachefs *fs);
cairn_status cachefs_evict_start(cachefs *fs);
void cachefs_evict_stop(cachefs *fs);
void cachefs_evict_destroy(cachefs *fs);
/* Wakes the eviction thread if the bytes held passed max_size. */
void cachefs_evict_kick(cachefs *fs, int64_t bytes);

/* A blob being dropped: its entry is DYING. */
typedef struct cachefs_victim {
	cairn_digest d;
	uint32_t loc;
	cachefs_pack *pack; /* NULL for a blob with its own file */
	char name[CACHEFS_NAME_MAX];
} cachefs_victim;
/* Unlinks the victims' files and punches their slots, through the ring (waits: any thread but a
 * gRPC one; on the I/O thread, plain system calls). */
void cachefs_evict_free(cachefs *fs, cachefs_victim *v, size_t n);
/* Then removes their entries (GONE while readers pin them), and deletes the packs they leave empty. */
void cachefs_evict_forget(cachefs *fs, const cachefs_victim *v, size_t n);

/* ---- tamper seals (seal.c) ---------------------------------------------------------------------- */

/* Bytes a check that hashes a whole blob file reads at a time. */
#define CACHEFS_HASH_BUF (256u << 10)
/* The nanoseconds of a sealed file's modification time: from the digest, in [0, 10^9). */
uint32_t cachefs_seal_ns(const cairn_digest *d);
/* Sets fs->sealing: whether a file under tmp/ keeps a nanosecond modification time; before the scan. */
void cachefs_seal_probe(cachefs *fs);
/* Gives a blob's file (all written) mode 0644 and, where seals work, seals it; 0 or -errno. */
int cachefs_seal_fd(const cachefs *fs, int fd, const cairn_digest *d);
/* Whether a file's status fits the blob of digest d: a regular file of its size, and sealed for it
 * where seals work (where they do not, only a hash of its bytes can tell: cachefs_file_matches). */
bool cachefs_seal_holds(const cachefs *fs, const struct stat *sb, const cairn_digest *d);
/* Hashes the open file of blob d whole: 1 if its bytes are d's, 0 if not, or -errno. Waits on the
 * ring (see cachefs_ring_run). */
int cachefs_file_matches(cachefs *fs, int fd, const cairn_digest *d);
/* Whether data hashes to d. */
bool cachefs_hash_matches(const cairn_digest *d, const void *data, size_t len);
/* The start-up scan: whether it adopts an older data directory (seals work, and its files have none
 * yet); whether it keeps file cas/<x>/<name> of blob d (sealing it when adopting); and the end of the
 * scan, which records that the files are sealed. */
bool cachefs_seal_scan_start(cachefs *fs);
bool cachefs_seal_scan_file(cachefs *fs, int x, const char *name, const struct stat *sb, const cairn_digest *d,
                            bool adopting);
void cachefs_seal_scan_end(cachefs *fs, bool adopting, uint64_t sealed);
/* Drops held blob d, found at location loc with bytes that do not match it (if it is still held
 * there, and, given the status `seen` of the file found changed, if cas/ still names that file), and
 * returns the NOT_FOUND its caller answers. Waits like cachefs_evict_free. */
cairn_status cachefs_drop_corrupt(cachefs *fs, const cairn_digest *d, uint32_t loc, const struct stat *seen);

/* ---- writers (write.c, commit.c) --------------------------------------------------------------- */

/* Bytes per writer buffer; a writer has two (allocated as needed, and no larger than the blob), so a
 * writer holds at most 1 MiB however fast its client sends. */
#define CACHEFS_WBUF_SIZE (512u << 10)
/* Blobs of at least this size are written with O_DIRECT where the file system takes it (write.c), in
 * buffers aligned to CACHEFS_DIRECT_ALIGN. */
#define CACHEFS_DIRECT_MIN (INT64_C(16) << 20)
#define CACHEFS_DIRECT_ALIGN 4096u
/* How far a writer's reservation runs ahead of the bytes it took, at most (space.c). */
#define CACHEFS_RESERVE_STEP (INT64_C(4) << 20)

enum cachefs_wbuf_state {
	CACHEFS_WBUF_FILLING,  /* free, or taking data */
	CACHEFS_WBUF_SEALED,   /* full (or final), waiting for the file to be open */
	CACHEFS_WBUF_INFLIGHT, /* being written */
};

typedef struct cachefs_wbuf {
	uint8_t *data;
	size_t fill;
	uint64_t off; /* where it goes in the file, set when sealed */
	enum cachefs_wbuf_state st;
	cachefs_op op;
	cachefs_writer *w;
} cachefs_wbuf;

enum cachefs_phase { CACHEFS_W_WRITING, CACHEFS_W_COMMITTING, CACHEFS_W_ABORTING };

/* Fields up to `ctl` are under mu while the writer is writing; once the finishing chain started
 * (`chain`), only the chain's callbacks touch the writer, one at a time. */
struct cachefs_writer {
	blobstore_writer base;
	cachefs *fs;
	pthread_mutex_t mu;
	cairn_hasher *hasher;  /* used on the callers' threads only */
	int64_t reserved;      /* bytes of ix.reserved it holds: at least `written`, at most the size (space.c) */
	size_t cap;            /* bytes per buffer */
	cachefs_wbuf b[2];
	int cur;               /* the buffer taking data */
	uint64_t file_len;     /* bytes handed to sealed buffers */
	bool direct;           /* fd is O_DIRECT; cleared before the unaligned end of the blob */
	int fd;
	bool opening, has_file;
	cairn_status err;      /* the first I/O error; everything after it fails */
	bool pending;          /* an append waits for buffer space */
	const uint8_t *pend;
	size_t pend_len;
	blobstore_done_cb pend_cb;
	void *pend_arg;
	enum cachefs_phase phase;
	bool chain;
	bool flushed;          /* the commit sealed the tail buffer: only then may the chain start */
	cairn_status outcome;  /* what the commit reports */
	blobstore_done_cb done_cb;
	void *done_arg;
	cachefs_op ctl;        /* open, then the finishing chain: one at a time */
	char tmpname[32];      /* under cas/<xx>/, the blob's own fan-out directory */
	char name[CACHEFS_NAME_MAX];
	/* a small writer: its bytes stay in b[0] until a group commit writes them into a pack */
	bool packed;
	cachefs_writer *queued; /* the packer's queue */
	uint32_t loc;           /* where the group put it */
	/* an append whose bytes did not fit below the hard limit, waiting for an eviction pass */
	const uint8_t *room_data;
	size_t room_len;
	blobstore_done_cb room_cb;
	void *room_arg;
	cachefs_op room_op;     /* its retry on the I/O thread after the pass */
	cachefs_writer *room_next; /* fs->room_waiters */
};

/* Temp files live in the blob's own fan-out directory: the rename that publishes a blob stays in one
 * directory, and concurrent uploads spread over 256 directory locks instead of sharing one. The
 * start-up scan removes what a crash left there (any name that is not <hash>_<size>). */
static inline int cachefs_tmp_dirfd(const cachefs_writer *w) { return w->fs->casfd[w->base.digest.hash[0]]; }


/* write.c: a writer for d that holds no reservation yet (cachefs_space_open or _adopt counts it). */
cachefs_writer *cachefs_writer_alloc(cachefs *fs, const cairn_digest *d);
/* adopt.c: makes the file at path, which must be in the data directory's file system and whose bytes
 * hash to sha256, the blob of digest d once its size and hash match d: a blob with a file of its own
 * by rename, a packed one by copy. The caller reserved d's size (cachefs_reserve), and the blob takes
 * that reservation over: it becomes bytes held once the blob is published, and is released if
 * anything fails. For threads that may block. INVALID_ARGUMENT when the file does not match d; the
 * file is gone afterwards either way. */
cairn_status cachefs_adopt(cachefs *fs, const cairn_digest *d, const char *path, const uint8_t sha256[32]);
/* write.c: true when no I/O is outstanding that the finishing chain must wait for (under mu). */
bool cachefs_writer_idle(const cachefs_writer *w);
/* commit.c: the end of a writer, once it is idle; runs without mu. */
void cachefs_writer_finish_chain(cachefs_writer *w);
/* Frees a writer and releases its reservation. */
void cachefs_writer_free(cachefs_writer *w);
/* Frees a writer, then reports st to its commit's callback (none after an abort). */
void cachefs_writer_finish(cachefs_writer *w, cairn_status st);
/* The status for an I/O error on file `rel` of the data directory while storing blob d; counts
 * ENOSPC and EDQUOT as rejected writes. */
cairn_status cachefs_io_error(cachefs *fs, const cairn_digest *d, int64_t res, const char *what, const char *rel);
/* The same for a writer's temp file. */
cairn_status cachefs_writer_io_error(cachefs_writer *w, int64_t res, const char *what);
/* write.c: a verified small writer that cannot go into a pack is stored as a file after all. */
void cachefs_writer_commit_file(cachefs_writer *w);

/* space.c: counts a new writer of blob d and returns the room it starts with: its grant ahead
 * (maybe 0). RESOURCE_EXHAUSTED (nothing counted) for a blob larger than the hard limit. */
cairn_status cachefs_space_open(cachefs *fs, const cairn_digest *d, int64_t *reserved);
/* Counts w, whose blob's whole size its caller reserved already (cachefs_reserve, before a
 * download), as an open writer holding that reservation. */
void cachefs_space_adopt(cachefs_writer *w);
/* Grows w's reservation to cover its first `upto` bytes (and a grant ahead); false when they do not
 * fit. Takes the index lock only when w holds less than upto. */
bool cachefs_space_take(cachefs_writer *w, uint64_t upto);
/* The RESOURCE_EXHAUSTED an append gets when its bytes up to `upto` still do not fit after the
 * eviction pass; counted as a rejected write. */
cairn_status cachefs_space_refuse(cachefs_writer *w, uint64_t upto);
/* Queues w (its room_* fields set) for a retry after the next eviction pass, and kicks that pass. */
void cachefs_space_wait(cachefs_writer *w);
/* The eviction thread, after a pass: retries the waiters that were queued before it began. */
void cachefs_space_retry(cachefs *fs, cachefs_writer *waiters);
/* Gives back everything w holds and stops counting it; when it is freed. */
void cachefs_space_release(cachefs_writer *w);

/* write.c, commit.c, read.c, space.c: the blobstore ops */
cairn_status cachefs_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out);
void cachefs_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg);
void cachefs_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg);
void cachefs_abort(blobstore_writer *bw);
void cachefs_pause(blobstore_writer *bw);
void cachefs_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg);
void cachefs_read(blobstore_reader *br, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg);
void cachefs_close_read(blobstore_reader *br);

#endif
