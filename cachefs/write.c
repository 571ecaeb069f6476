/* Blob writers. cachefs_write hashes the data on the caller's thread, then copies it into the
 * writer's buffers.
 *
 * A small blob (up to CACHEFS_PACK_MAX_BLOB) stays in one buffer of its own size until commit, which
 * checks the digest and hands a good blob to the group commit (group.c) that writes it into a pack:
 * a wrong digest costs no I/O and leaves nothing behind.
 *
 * A large blob goes to cas/<xx>/<n>.part, beside where it will live, through two buffers. A full
 * buffer is sealed and written through the ring (the temp file is created by the ring when the first
 * buffer is sealed). The append's callback runs at once when everything was copied and a buffer is
 * still free; otherwise the rest of the data waits until a buffer write completes, and the callback
 * runs on the I/O thread. That is the back-pressure: a writer never holds more than two buffers,
 * however fast its client sends.
 *
 * With direct_writes (serve sets it when an object store is behind the CAS), a blob of
 * CACHEFS_DIRECT_MIN bytes or more is written with O_DIRECT, from aligned buffers, where the file
 * system takes it (probed at start-up): its bytes go from the buffers to the disk, with no copy into
 * the page cache and no memory taken there. A large upload so costs less CPU, does not push the
 * blobs being read out of the page cache, and leaves nothing for the commit's fsync to write but
 * metadata; the page cache holds a large blob once it is read. Only the last buffer,
 * whose length is not a multiple of the alignment, is written through the page cache: O_DIRECT is
 * turned off on the file before it goes.
 *
 * Room: an append's bytes are reserved below the hard limit before they are taken (space.c); one
 * that does not fit waits for an eviction pass, and fails with RESOURCE_EXHAUSTED, failing its writer,
 * if it still does not fit. A writer so never holds room for bytes its client has not sent, but for
 * a short grant ahead of them. */
#include "cachefs/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a completion decided, done after the writer's mutex is released. */
typedef struct after {
	blobstore_done_cb cb;
	void *arg;
	cairn_status st;
	bool chain;
} after;

static bool failed(const cachefs_writer *w)
{
	return !cairn_is_ok(&w->err) || !cairn_is_ok(&w->outcome) || w->phase == CACHEFS_W_ABORTING;
}

bool cachefs_writer_idle(const cachefs_writer *w)
{
	if (w->opening)
		return false;
	for (int i = 0; i < 2; i++) {
		if (w->b[i].st == CACHEFS_WBUF_INFLIGHT)
			return false;
		if (w->b[i].st == CACHEFS_WBUF_SEALED && !failed(w))
			return false;
	}
	return true;
}

cairn_status cachefs_io_error(cachefs *fs, const cairn_digest *d, int64_t res, const char *what, const char *rel)
{
	int e = (int)-res;
	if (e == ENOSPC || e == EDQUOT) {
		pthread_mutex_lock(&fs->ix.mu);
		fs->ix.rejected_writes++;
		pthread_mutex_unlock(&fs->ix.mu);
	}
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_errno(e, "cachefs: %s %s/%s for blob %s", what, fs->dir, rel, cairn_digest_str(d, ds));
}

cairn_status cachefs_writer_io_error(cachefs_writer *w, int64_t res, const char *what)
{
	char rel[48];
	snprintf(rel, sizeof rel, "cas/%02x/%s", w->base.digest.hash[0], w->tmpname);
	return cachefs_io_error(w->fs, &w->base.digest, res, what, rel);
}

static void set_err(cachefs_writer *w, int64_t res, const char *what)
{
	if (cairn_is_ok(&w->err))
		w->err = cachefs_writer_io_error(w, res, what);
}

static void seal(cachefs_writer *w, cachefs_wbuf *b)
{
	assert(b->st == CACHEFS_WBUF_FILLING && b->fill > 0);
	b->off = w->file_len;
	w->file_len += b->fill;
	b->st = CACHEFS_WBUF_SEALED;
}

/* Copies as much of *p as fits. True when all of it is in and a buffer still has room. Only the
 * buffer `cur` is ever partly filled. */
static bool fill(cachefs_writer *w, const uint8_t **p, size_t *n)
{
	for (;;) {
		cachefs_wbuf *b = &w->b[w->cur];
		if (b->st != CACHEFS_WBUF_FILLING) {
			w->cur ^= 1;
			b = &w->b[w->cur];
			if (b->st != CACHEFS_WBUF_FILLING)
				return false;
			assert(b->fill == 0);
		}
		if (*n == 0)
			return true;
		if (!b->data)
			b->data = w->direct ? cairn_xaligned_alloc(CACHEFS_DIRECT_ALIGN, w->cap) : cairn_xmalloc(w->cap);
		size_t k = w->cap - b->fill < *n ? w->cap - b->fill : *n;
		memcpy(b->data + b->fill, *p, k);
		b->fill += k;
		*p += k;
		*n -= k;
		if (b->fill == w->cap && !w->packed)
			seal(w, b);
	}
}

static void on_written(cachefs_op *op, int64_t res);
static void on_opened(cachefs_op *op, int64_t res);

/* Starts the I/O that sealed buffers wait for: the temp file's creation, or their writes. */
static void pump(cachefs_writer *w)
{
	if (failed(w) || (w->b[0].st != CACHEFS_WBUF_SEALED && w->b[1].st != CACHEFS_WBUF_SEALED))
		return;
	if (w->fd < 0) {
		if (!w->opening) {
			w->opening = true;
			w->ctl = (cachefs_op){.kind = CACHEFS_OP_OPENAT, .fd = cachefs_tmp_dirfd(w), .path = w->tmpname,
			                      .flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (w->direct ? O_DIRECT : 0),
			                      .mode = 0644, .cb = on_opened, .arg = w};
			cachefs_ring_submit(&w->fs->ring, &w->ctl);
		}
		return;
	}
	for (int i = 0; i < 2; i++) {
		cachefs_wbuf *b = &w->b[i];
		if (b->st != CACHEFS_WBUF_SEALED)
			continue;
		if (w->direct && b->fill % CACHEFS_DIRECT_ALIGN != 0) {
			/* The end of the blob: it goes through the page cache. A request takes the file's flags
			 * when the ring issues it, so the other buffer's write must be done first. */
			if (w->b[i ^ 1].st != CACHEFS_WBUF_FILLING)
				continue; /* on_written pumps again */
			int fl = fcntl(w->fd, F_GETFL);
			if (fl < 0 || fcntl(w->fd, F_SETFL, fl & ~O_DIRECT) < 0) {
				set_err(w, -errno, "turning O_DIRECT off on");
				return;
			}
			w->direct = false;
		}
		b->st = CACHEFS_WBUF_INFLIGHT;
		b->op = (cachefs_op){.kind = CACHEFS_OP_WRITE, .fd = w->fd, .buf = b->data, .len = b->fill,
		                     .off = b->off, .cb = on_written, .arg = b};
		cachefs_ring_submit(&w->fs->ring, &b->op);
	}
}

/* After a completion: resumes a waiting append, and starts the finishing chain once nothing is left
 * in flight. Under mu. */
static after progress(cachefs_writer *w)
{
	after a = {0};
	if (w->pending) {
		bool done = true;
		if (cairn_is_ok(&w->err)) {
			done = fill(w, &w->pend, &w->pend_len);
			pump(w);
		}
		if (done) {
			a.cb = w->pend_cb;
			a.arg = w->pend_arg;
			a.st = w->err;
			w->pending = false;
		}
	}
	/* a commit marks the writer COMMITTING before it seals the tail buffer (commit_file): a write
	 * completing in between must not take the buffers for idle and finish a file whose last bytes
	 * are still to be written */
	bool may_end = w->phase == CACHEFS_W_ABORTING || (w->phase == CACHEFS_W_COMMITTING && w->flushed);
	if (may_end && !w->chain && cachefs_writer_idle(w)) {
		w->chain = true;
		a.chain = true;
	}
	return a;
}

static void run_after(cachefs_writer *w, after a)
{
	assert(!(a.cb && a.chain)); /* an append in flight forbids commit and abort */
	if (a.cb)
		a.cb(a.arg, a.st);
	if (a.chain)
		cachefs_writer_finish_chain(w);
}

static void on_opened(cachefs_op *op, int64_t res)
{
	cachefs_writer *w = op->arg;
	pthread_mutex_lock(&w->mu);
	w->opening = false;
	if (res < 0) {
		set_err(w, res, "creating");
	} else {
		w->fd = (int)res;
		w->has_file = true;
	}
	pump(w);
	after a = progress(w);
	pthread_mutex_unlock(&w->mu);
	run_after(w, a);
}

static void on_written(cachefs_op *op, int64_t res)
{
	cachefs_wbuf *b = op->arg;
	cachefs_writer *w = b->w;
	pthread_mutex_lock(&w->mu);
	assert(b->st == CACHEFS_WBUF_INFLIGHT);
	if (res < 0)
		set_err(w, res, "writing");
	else
		assert((uint64_t)res == b->fill);
	b->fill = 0;
	b->st = CACHEFS_WBUF_FILLING;
	pump(w); /* the end of a blob written with O_DIRECT may wait for this write */
	after a = progress(w);
	pthread_mutex_unlock(&w->mu);
	run_after(w, a);
}

void cachefs_direct_probe(cachefs *fs)
{
	static const char probe[] = "direct-probe";
	fs->direct = false;
	if (!fs->cfg.direct_writes)
		return;
	int fd = openat(fs->tmpfd, probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
	if (fd >= 0) {
		void *buf = cairn_xaligned_alloc(CACHEFS_DIRECT_ALIGN, CACHEFS_DIRECT_ALIGN);
		memset(buf, 0, CACHEFS_DIRECT_ALIGN);
		fs->direct = pwrite(fd, buf, CACHEFS_DIRECT_ALIGN, 0) == CACHEFS_DIRECT_ALIGN;
		free(buf);
		close(fd);
		unlinkat(fs->tmpfd, probe, 0);
	}
	if (!fs->direct)
		LOG_INFO("cachefs", "large blobs are written through the page cache: an O_DIRECT write failed here (the "
		         "file system does not take it, or the disk is full) dir=%s/tmp", fs->dir);
}

/* A writer of blob d that holds no room yet: the caller sets w->reserved to what space.c counted. */
cachefs_writer *cachefs_writer_alloc(cachefs *fs, const cairn_digest *d)
{
	assert(d->size >= 0);
	cachefs_writer *w = cairn_xcalloc(1, sizeof *w);
	w->base.ops = &cachefs_ops;
	w->base.digest = *d;
	w->fs = fs;
	pthread_mutex_init(&w->mu, NULL);
	w->hasher = cairn_hasher_new();
	w->cap = d->size < CACHEFS_WBUF_SIZE ? (size_t)d->size : CACHEFS_WBUF_SIZE;
	/* packed: cap is the size, and b[0] takes the whole blob and is never sealed */
	w->packed = cachefs_packs_blob(fs, d->size);
	w->direct = fs->direct && d->size >= CACHEFS_DIRECT_MIN;
	for (int i = 0; i < 2; i++)
		w->b[i].w = w;
	w->fd = -1;
	snprintf(w->tmpname, sizeof w->tmpname, "%" PRIu64 ".part", (uint64_t)atomic_fetch_add(&fs->tmp_seq, 1));
	cachefs_blob_name(d, w->name);
	return w;
}

cairn_status cachefs_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out)
{
	cachefs *fs = (cachefs *)bs;
	int64_t reserved;
	cairn_status st = cachefs_space_open(fs, d, &reserved);
	if (cairn_is_ok(&st)) {
		cachefs_writer *w = cachefs_writer_alloc(fs, d);
		w->reserved = reserved;
		*out = &w->base;
	}
	return st;
}

/* Takes an append whose bytes have room and are hashed: copies what fits into the buffers, and runs
 * the callback now, or once a buffer write made room for the rest. */
static void take(cachefs_writer *w, const uint8_t *p, size_t n, blobstore_done_cb cb, void *arg)
{
	pthread_mutex_lock(&w->mu);
	w->base.written += n;
	bool done = fill(w, &p, &n);
	if (!done) {
		w->pending = true;
		w->pend = p;
		w->pend_len = n;
		w->pend_cb = cb;
		w->pend_arg = arg;
	}
	pump(w);
	pthread_mutex_unlock(&w->mu);
	if (done)
		cb(arg, cairn_ok());
}

/* On the I/O thread, after the eviction pass an append waited for: takes it if its bytes fit now,
 * else fails it and the writer (the caller aborts it, which gives back what it held). */
static void room_retry(cachefs_op *op, int64_t res)
{
	(void)res;
	cachefs_writer *w = op->arg;
	uint64_t upto = w->base.written + w->room_len;
	if (cachefs_space_take(w, upto))
		return take(w, w->room_data, w->room_len, w->room_cb, w->room_arg);
	cairn_status st = cachefs_space_refuse(w, upto);
	pthread_mutex_lock(&w->mu);
	if (cairn_is_ok(&w->err))
		w->err = st;
	pthread_mutex_unlock(&w->mu);
	w->room_cb(w->room_arg, st);
}

void cachefs_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	cachefs_writer *w = (cachefs_writer *)bw;
	uint64_t room = (uint64_t)bw->digest.size - bw->written;
	if (len > room) {
		char ds[CAIRN_DIGEST_STR_MAX];
		cb(arg, cairn_err(CAIRN_INVALID_ARGUMENT,
		                  "%zu more bytes would pass the size of blob %s (%" PRIu64 " bytes written)", len,
		                  cairn_digest_str(&bw->digest, ds), bw->written));
		return;
	}
	pthread_mutex_lock(&w->mu);
	assert(!w->pending && w->phase == CACHEFS_W_WRITING);
	cairn_status st = w->err;
	pthread_mutex_unlock(&w->mu);
	if (!cairn_is_ok(&st)) {
		cb(arg, st);
		return;
	}
	/* outside the lock: only the caller's thread uses the hasher, one append at a time */
	cairn_hasher_update(w->hasher, data, len);
	if (!cachefs_space_take(w, bw->written + len)) {
		w->room_data = data;
		w->room_len = len;
		w->room_cb = cb;
		w->room_arg = arg;
		w->room_op = (cachefs_op){.kind = CACHEFS_OP_NOP, .cb = room_retry, .arg = w};
		return cachefs_space_wait(w);
	}
	take(w, data, len, cb, arg);
}

/* Size and hash of what was uploaded against the digest. */
static cairn_status verify(cachefs_writer *w)
{
	const cairn_digest *d = &w->base.digest;
	char ds[CAIRN_DIGEST_STR_MAX];
	if (w->base.written != (uint64_t)d->size)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "uploaded %" PRIu64 " bytes, but digest %s says %" PRId64,
		                 w->base.written, cairn_digest_str(d, ds), d->size);
	uint8_t hash[CAIRN_HASH_LEN];
	cairn_hasher_final(w->hasher, hash);
	if (memcmp(hash, d->hash, CAIRN_HASH_LEN) != 0) {
		char hex[CAIRN_HASH_HEX_LEN + 1];
		cairn_hash_hex(hash, hex);
		return cairn_err(CAIRN_INVALID_ARGUMENT, "uploaded data hash %s does not match digest %s", hex,
		                 cairn_digest_str(d, ds));
	}
	return cairn_ok();
}

/* Seals what is buffered, writes it and starts the finishing chain (commit.c) once nothing is in
 * flight; with a bad outcome, that chain only cleans up. */
static void commit_file(cachefs_writer *w)
{
	pthread_mutex_lock(&w->mu);
	for (int i = 0; i < 2 && cairn_is_ok(&w->outcome); i++)
		if (w->b[i].st == CACHEFS_WBUF_FILLING && w->b[i].fill > 0)
			seal(w, &w->b[i]);
	w->flushed = true;
	pump(w);
	bool chain = !w->chain && cachefs_writer_idle(w);
	w->chain |= chain;
	pthread_mutex_unlock(&w->mu);
	if (chain)
		cachefs_writer_finish_chain(w);
}

void cachefs_writer_commit_file(cachefs_writer *w)
{
	assert(w->packed && w->phase == CACHEFS_W_COMMITTING);
	w->packed = false;
	commit_file(w);
}

void cachefs_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg)
{
	cachefs_writer *w = (cachefs_writer *)bw;
	cairn_status verdict = verify(w);
	pthread_mutex_lock(&w->mu);
	assert(!w->pending && w->phase == CACHEFS_W_WRITING);
	w->phase = CACHEFS_W_COMMITTING;
	w->done_cb = cb;
	w->done_arg = arg;
	w->outcome = cairn_is_ok(&w->err) ? verdict : w->err;
	pthread_mutex_unlock(&w->mu);
	/* a small blob that failed the check started no I/O: commit_file only reports */
	if (w->packed && cairn_is_ok(&w->outcome))
		return cachefs_group_commit(w);
	commit_file(w);
}

void cachefs_abort(blobstore_writer *bw)
{
	cachefs_writer *w = (cachefs_writer *)bw;
	pthread_mutex_lock(&w->mu);
	assert(!w->pending && w->phase == CACHEFS_W_WRITING);
	w->phase = CACHEFS_W_ABORTING;
	bool chain = !w->chain && cachefs_writer_idle(w);
	w->chain |= chain;
	pthread_mutex_unlock(&w->mu);
	if (chain)
		cachefs_writer_finish_chain(w);
}
