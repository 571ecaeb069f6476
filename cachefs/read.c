/* Blob readers. Opening one pins the blob's entry (eviction skips pinned entries) and counts a use;
 * closing it unpins. A packed blob is read from its pack's open data file (no open at all), and the
 * reader holds a reference on the pack: pin_path may move the blob out to a file meanwhile, but the
 * pack's file stays open, and the blob's slots unpunched, while a reader may read them. If a blob's
 * own file has gone from disk behind cachefs's back, the entry becomes GONE (no longer held) and the
 * reader gets NOT_FOUND, so the index heals itself. */
#include "cachefs/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>

typedef struct cachefs_reader {
	blob_reader base;
	cachefs *fs;
	cairn_digest digest;
	int fd;           /* the blob's own file; -1 for the empty blob and for a packed one */
	cachefs_pack *pack; /* a packed blob's pack, and where in it the blob starts */
	uint64_t start;
	bool pinned;
	bool reading;
	char name[CACHEFS_NAME_MAX];
	cachefs_op op;
	blob_open_read_cb open_cb;
	blob_read_cb read_cb;
	void *arg;
} cachefs_reader;

static cairn_status not_found(const cairn_digest *d, const char *why)
{
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_err(CAIRN_NOT_FOUND, "blob %s not found%s", cairn_digest_str(d, ds), why);
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

/* The file of a held blob is missing: the blob is no longer held. */
static void forget_vanished(cachefs_reader *r)
{
	cachefs_index *ix = &r->fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, &r->digest);
	assert(i != CACHEFS_NIL);
	if (cachefs_index_at(ix, i)->state == CACHEFS_VISIBLE)
		cachefs_index_unpublish(ix, i, CACHEFS_GONE);
	pthread_mutex_unlock(&ix->mu);
	char ds[CAIRN_DIGEST_STR_MAX];
	LOG_WARN("cachefs", "blob file vanished; dropped from the index digest=%s", cairn_digest_str(&r->digest, ds));
}

static void on_opened(cachefs_op *op, int64_t res)
{
	cachefs_reader *r = op->arg;
	blob_open_read_cb cb = r->open_cb;
	void *arg = r->arg;
	if (res >= 0) {
		r->fd = (int)res;
		cb(arg, cairn_ok(), &r->base);
		return;
	}
	cairn_status st;
	if (res == -ENOENT) {
		forget_vanished(r);
		st = not_found(&r->digest, " (its file vanished from disk)");
	} else {
		st = cairn_errno((int)-res, "cachefs: opening %s/cas/%02x/%s", r->fs->dir, r->digest.hash[0], r->name);
	}
	unpin(r);
	free(r);
	cb(arg, st, NULL);
}

void cachefs_open_read(blobstore *bs, const cairn_digest *d, blob_open_read_cb cb, void *arg)
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
		cb(arg, not_found(d, ""), NULL);
		return;
	}
	cachefs_reader *r = reader_new(fs, d);
	r->pinned = true;
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

static void on_read(cachefs_op *op, int64_t res)
{
	cachefs_reader *r = op->arg;
	blob_read_cb cb = r->read_cb;
	void *arg = r->arg;
	uint64_t want = op->len;
	r->reading = false;
	cairn_status st = cairn_ok();
	if (res < 0 && r->pack) {
		st = cairn_errno((int)-res, "cachefs: reading %s/packs/%s", r->fs->dir, r->pack->data_name);
		res = 0;
	} else if (res < 0) {
		st = cairn_errno((int)-res, "cachefs: reading %s/cas/%02x/%s", r->fs->dir, r->digest.hash[0], r->name);
		res = 0;
	} else if ((uint64_t)res < want) {
		/* verified blobs only are visible, so this file was damaged on disk */
		char ds[CAIRN_DIGEST_STR_MAX];
		st = cairn_err(CAIRN_DATA_LOSS, "blob %s is shorter on disk than its size",
		               cairn_digest_str(&r->digest, ds));
		res = 0;
	}
	cb(arg, st, (size_t)res);
}

void cachefs_read(blob_reader *br, uint64_t off, void *buf, size_t len, blob_read_cb cb, void *arg)
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

void cachefs_close_read(blob_reader *br)
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
