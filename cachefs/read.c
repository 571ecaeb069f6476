/* Blob readers. Opening one pins the blob's entry (eviction skips pinned entries) and counts a use;
 * closing it unpins. A packed blob is read from its pack's open data file (no open at all), and the
 * reader holds a reference on the pack: pin_path may move the blob out to a file meanwhile, but the
 * pack's file stays open, and the blob's slots unpunched, while a reader may read them. If a blob's
 * own file has gone from disk behind cachefs's back, the entry becomes GONE (no longer held) and the
 * reader gets NOT_FOUND, so the index heals itself.
 *
 * No read hands out bytes that changed on disk (seal.c): a file's seal is checked with fstat when it
 * is opened and after every read; a packed blob is read whole and hashed on every read (a read of
 * part of it goes through a buffer of its size, 64 KiB at most). Where the file system cannot keep
 * seals, the file is hashed whole at open, on the I/O thread, before the open is answered. A blob
 * that fails is dropped and the open or read gets NOT_FOUND. These checks run on the I/O thread: an
 * fstat of an open file reads no disk. */
#include "cachefs/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct cachefs_reader {
	blobstore_reader base;
	cachefs *fs;
	cairn_digest digest;
	int fd;           /* the blob's own file; -1 for the empty blob and for a packed one */
	cachefs_pack *pack; /* a packed blob's pack, and where in it the blob starts */
	uint64_t start;
	uint32_t loc;     /* where the entry said the blob was, at open */
	bool pinned;
	bool reading;
	char name[CACHEFS_NAME_MAX];
	cachefs_op op;
	blobstore_open_read_cb open_cb;
	blobstore_read_cb read_cb;
	void *arg;
	/* a packed blob read in part: the whole of it, and where the part goes; also the buffer of the
	 * whole-file hash at open, where there are no seals */
	uint8_t *whole;
	uint8_t *dst;
	uint64_t dst_off;
	size_t dst_len;
	cairn_hasher *hasher;
	uint64_t hashed;
} cachefs_reader;

static cairn_status not_found(const cairn_digest *d)
{
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_err(CAIRN_NOT_FOUND, "blob %s not found", cairn_digest_str(d, ds));
}

static cachefs_reader *reader_new(cachefs *fs, const cairn_digest *d)
{
	cachefs_reader *r = cairn_xcalloc(1, sizeof *r);
	r->base.ops = &cachefs_ops;
	r->base.size = d->size;
	r->fs = fs;
	r->digest = *d;
	r->fd = -1;
	return r;
}

static void unpin(cachefs_reader *r)
{
	if (!r->pinned)
		return;
	cachefs_index *ix = &r->fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, &r->digest);
	assert(i != CACHEFS_NIL); /* a pinned entry is never removed */
	cachefs_index_unpin(ix, i);
	bool unused = false;
	if (r->pack) {
		r->pack->refs--;
		unused = cachefs_pack_unused(r->pack);
	}
	pthread_mutex_unlock(&ix->mu);
	if (unused)
		cachefs_pack_delete(r->fs, r->pack);
	r->pinned = false;
}

/* The end of an open of a blob's file: answers, or closes and unpins the reader after a failure. */
static void opened(cachefs_reader *r, cairn_status st)
{
	blobstore_open_read_cb cb = r->open_cb;
	void *arg = r->arg;
	if (cairn_is_ok(&st)) {
		cb(arg, st, &r->base);
		return;
	}
	if (r->fd >= 0) {
		cachefs_op op = {.kind = CACHEFS_OP_CLOSE, .fd = r->fd};
		cachefs_ring_run(&r->fs->ring, &op, 1); /* a plain close here, on the I/O thread */
	}
	unpin(r);
	free(r->whole);
	free(r);
	cb(arg, st, NULL);
}

static void hash_next(cachefs_reader *r);

/* Where seals do not work: one more piece of the whole-file hash. */
static void on_hash_read(cachefs_op *op, int64_t res)
{
	cachefs_reader *r = op->arg;
	uint64_t size = (uint64_t)r->digest.size;
	if (res > 0) {
		cairn_hasher_update(r->hasher, r->whole, (size_t)res);
		r->hashed += (uint64_t)res;
		if (r->hashed < size)
			return hash_next(r);
	}
	uint8_t hash[CAIRN_HASH_LEN];
	cairn_hasher_final(r->hasher, hash);
	cairn_hasher_free(r->hasher);
	r->hasher = NULL;
	free(r->whole);
	r->whole = NULL;
	if (res < 0)
		return opened(r, cairn_errno((int)-res, "cachefs: reading %s/cas/%02x/%s", r->fs->dir, r->digest.hash[0],
		                             r->name));
	bool good = r->hashed == size && memcmp(hash, r->digest.hash, CAIRN_HASH_LEN) == 0;
	opened(r, good ? cairn_ok() : cachefs_drop_corrupt(r->fs, &r->digest, 0, NULL));
}

static void hash_next(cachefs_reader *r)
{
	uint64_t left = (uint64_t)r->digest.size - r->hashed;
	r->op = (cachefs_op){.kind = CACHEFS_OP_READ, .fd = r->fd, .buf = r->whole, .off = r->hashed,
	                     .len = left < CACHEFS_HASH_BUF ? left : CACHEFS_HASH_BUF, .cb = on_hash_read, .arg = r};
	cachefs_ring_submit(&r->fs->ring, &r->op);
}

/* Whether the open file still fits its blob (seal.c); drops the blob if not. */
static bool file_intact(cachefs_reader *r, cairn_status *st)
{
	struct stat sb;
	if (fstat(r->fd, &sb) != 0) {
		*st = cairn_errno(errno, "cachefs: stat of %s/cas/%02x/%s", r->fs->dir, r->digest.hash[0], r->name);
		return false;
	}
	if (cachefs_seal_holds(r->fs, &sb, &r->digest))
		return true;
	*st = cachefs_drop_corrupt(r->fs, &r->digest, 0, &sb);
	return false;
}

static void on_opened(cachefs_op *op, int64_t res)
{
	cachefs_reader *r = op->arg;
	cairn_status st;
	if (res >= 0) {
		r->fd = (int)res;
		if (!file_intact(r, &st))
			return opened(r, st);
		if (r->fs->sealing)
			return opened(r, cairn_ok());
		r->hasher = cairn_hasher_new();
		r->whole = cairn_xmalloc(r->digest.size < CACHEFS_HASH_BUF ? (size_t)r->digest.size : CACHEFS_HASH_BUF);
		return hash_next(r);
	}
	if (res == -ENOENT) {
		st = cachefs_forget_vanished(r->fs, &r->digest);
	} else {
		st = cairn_errno((int)-res, "cachefs: opening %s/cas/%02x/%s", r->fs->dir, r->digest.hash[0], r->name);
	}
	opened(r, st);
}

void cachefs_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg)
{
	cachefs *fs = (cachefs *)bs;
	if (cairn_digest_is_empty_blob(d)) {
		cb(arg, cairn_ok(), &reader_new(fs, d)->base);
		return;
	}
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, d), loc = 0;
	bool held = i != CACHEFS_NIL && cachefs_index_at(ix, i)->state == CACHEFS_VISIBLE;
	if (held) {
		cachefs_entry *e = cachefs_index_at(ix, i);
		held = e->pins < CACHEFS_MAX_PINS;
		if (held) {
			e->pins++;
			cachefs_index_touch(ix, i, cachefs_index_tick(ix, cairn_now_ns()));
			loc = e->loc;
			if (loc)
				cachefs_pack_of(fs, loc)->refs++;
		}
	}
	pthread_mutex_unlock(&ix->mu);
	if (!held) {
		cb(arg, not_found(d), NULL);
		return;
	}
	cachefs_reader *r = reader_new(fs, d);
	r->pinned = true;
	r->loc = loc;
	if (loc) {
		r->pack = cachefs_pack_of(fs, loc); /* its slot cannot go while we hold a reference */
		r->start = cachefs_loc_off(loc);
		cb(arg, cairn_ok(), &r->base);
		return;
	}
	r->open_cb = cb;
	r->arg = arg;
	cachefs_blob_name(d, r->name);
	r->op = (cachefs_op){.kind = CACHEFS_OP_OPENAT, .fd = fs->casfd[d->hash[0]], .path = r->name,
	                     .flags = O_RDONLY | O_CLOEXEC, .cb = on_opened, .arg = r};
	cachefs_ring_submit(&fs->ring, &r->op);
}

/* Whether the bytes a read saw are the blob's: a file's seal still holds after the read (a write
 * changes the file's time before its bytes), a packed blob's bytes (read whole) hash to its digest.
 * If not, the blob is dropped and *st says so. */
static bool read_intact(cachefs_reader *r, const cachefs_op *op, int64_t res, cairn_status *st)
{
	if (!r->pack)
		return file_intact(r, st);
	if ((uint64_t)res == op->len && cachefs_hash_matches(&r->digest, op->buf, op->len))
		return true;
	*st = cachefs_drop_corrupt(r->fs, &r->digest, r->loc, NULL);
	return false;
}

static void on_read(cachefs_op *op, int64_t res)
{
	cachefs_reader *r = op->arg;
	blobstore_read_cb cb = r->read_cb;
	void *arg = r->arg;
	size_t n = res > 0 ? (size_t)res : 0;
	r->reading = false;
	cairn_status st = cairn_ok();
	if (res < 0 && r->pack) {
		st = cairn_errno((int)-res, "cachefs: reading %s/packs/%s", r->fs->dir, r->pack->data_name);
	} else if (res < 0) {
		st = cairn_errno((int)-res, "cachefs: reading %s/cas/%02x/%s", r->fs->dir, r->digest.hash[0], r->name);
	} else if (read_intact(r, op, res, &st) && r->whole) {
		memcpy(r->dst, r->whole + r->dst_off, r->dst_len);
		n = r->dst_len;
	} else if (cairn_is_ok(&st) && n < op->len) {
		/* verified blobs only are visible, so this file was damaged on disk */
		char ds[CAIRN_DIGEST_STR_MAX];
		st = cairn_err(CAIRN_DATA_LOSS, "blob %s is shorter on disk than its size",
		               cairn_digest_str(&r->digest, ds));
	}
	free(r->whole);
	r->whole = NULL;
	cb(arg, st, cairn_is_ok(&st) ? n : 0);
}

void cachefs_read(blobstore_reader *br, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg)
{
	cachefs_reader *r = (cachefs_reader *)br;
	assert(!r->reading);
	uint64_t size = (uint64_t)br->size;
	if (off >= size || len == 0) {
		cb(arg, cairn_ok(), 0);
		return;
	}
	if (len > size - off)
		len = (size_t)(size - off);
	if (r->pack && len < size) {
		/* only the whole blob can be checked: read it into a buffer, and copy the part from there */
		r->whole = cairn_xmalloc((size_t)size);
		r->dst = buf;
		r->dst_off = off;
		r->dst_len = len;
		buf = r->whole;
		off = 0;
		len = (size_t)size;
	}
	int fd = r->pack ? r->pack->fd : r->fd;
	assert(fd >= 0);
	r->reading = true;
	r->read_cb = cb;
	r->arg = arg;
	r->op = (cachefs_op){.kind = CACHEFS_OP_READ, .fd = fd, .buf = buf, .len = len, .off = r->start + off,
	                     .cb = on_read, .arg = r};
	cachefs_ring_submit(&r->fs->ring, &r->op);
}

static void on_closed(cachefs_op *op, int64_t res)
{
	(void)res; /* a read-only descriptor: nothing to lose */
	free(op->arg);
}

void cachefs_close_read(blobstore_reader *br)
{
	cachefs_reader *r = (cachefs_reader *)br;
	assert(!r->reading);
	/* the open descriptor keeps the data readable even if the blob is evicted from here on */
	unpin(r);
	if (r->fd < 0) {
		free(r);
		return;
	}
	r->op = (cachefs_op){.kind = CACHEFS_OP_CLOSE, .fd = r->fd, .cb = on_closed, .arg = r};
	cachefs_ring_submit(&r->fs->ring, &r->op);
}
