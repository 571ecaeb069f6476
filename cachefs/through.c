/* The CAS with an object store behind it: a blobstore over the local cachefs that writes every new
 * blob through to the bucket (key "cas/<hash>") and reads missing ones back through.
 *
 *  - find_missing answers from the local index first and asks the bucket (HEAD, in parallel) only
 *    for what is not local; a blob the bucket has counts as present and is read through on use.
 *  - open_read of a blob that is not local downloads it into tmp/, makes it a local blob once its
 *    bytes match its digest — a bucket object that does not match its name is refused and reported,
 *    never served — and then reads it locally; the download is bounded by the digest's size, its
 *    room in the CAS reserved first, and shared by every reader of the blob (through_read.c).
 *  - sync write-through acknowledges an upload only once the bucket has the blob. A blob of at least
 *    one multipart part (16 MiB by default) is streamed: its bucket upload runs while its bytes
 *    arrive and is completed once the local commit verified the digest (through_stream.c). Smaller
 *    blobs, and large ones when the store cannot stream or the part buffers are all taken, are
 *    written locally first and then uploaded (through_upload.c); a writer of a blob below 1 MiB
 *    keeps a copy of its bytes for that.
 *  - async write-through writes locally, writes a marker file in backlog/ and only then
 *    acknowledges; the marker is removed after the upload. The blob stays pinned (not evicted) while
 *    it waits, a flusher thread retries failed uploads and, after a restart, picks the backlog up
 *    from the markers, so an acknowledged blob always reaches the bucket. Nothing is streamed in
 *    async mode: the client does not wait for the bucket there.
 */
#include "cachefs/through.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY_NS (5 * 1000000000LL)

static cachefs_through *of(blobstore *bs) { return (cachefs_through *)bs; }

void cachefs_through_active(cachefs_through *t, long delta)
{
	pthread_mutex_lock(&t->mu);
	t->active += delta;
	if (t->active == 0)
		pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

void cachefs_through_key(const cairn_digest *d, char key[CACHEFS_THROUGH_KEY_MAX])
{
	memcpy(key, "cas/", 4);
	cairn_hash_hex(d->hash, key + 4);
}

void cachefs_through_marker(const cachefs_through *t, const cairn_digest *d, char *out, size_t cap)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(d->hash, hex);
	snprintf(out, cap, "%s/%s_%lld", t->backlog_dir, hex, (long long)d->size);
}

cairn_status cachefs_through_unavailable(const cairn_status *st)
{
	return cairn_err(CAIRN_UNAVAILABLE, "the object store did not take the blob: %s", st->msg);
}

/* ---- writes ---- */

typedef struct tw {
	blobstore_writer base;
	blobstore_writer *inner;
	cachefs_through *t;
	uint8_t *copy; /* sync, below CACHEFS_THROUGH_SMALL: the bytes as they passed, uploaded from memory */
	size_t copied;
	blobstore_done_cb cb;
	void *arg;
} tw;

static void tw_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	tw *w = (tw *)bw;
	/* Bytes past the digest's size are not kept: the local writer refuses them. */
	if (w->copy && len <= (size_t)w->base.digest.size - w->copied) {
		memcpy(w->copy + w->copied, data, len);
		w->copied += len;
	}
	blobstore_write(w->inner, data, len, cb, arg);
}

static void tw_pause(blobstore_writer *bw) { blobstore_pause(((tw *)bw)->inner); }

static void tw_abort(blobstore_writer *bw)
{
	tw *w = (tw *)bw;
	blobstore_abort(w->inner);
	free(w->copy);
	free(w);
}

/* Async: records the blob in the backlog (a marker file, and a pin) before the acknowledgement; *added
 * is false when it waits there already (the same blob uploaded again), which must not pin it twice.
 * This runs on the cachefs I/O thread: one small create, the price of never losing an upload. */
static cairn_status backlog_add(cachefs_through *t, const cairn_digest *d, bool *added)
{
	char m[4200];
	cachefs_through_marker(t, d, m, sizeof m);
	*added = false;
	int fd = open(m, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EEXIST)
		return cairn_ok();
	if (fd < 0)
		return cairn_errno(errno, "write-through backlog %s", m);
	close(fd);
	cairn_status st = cachefs_pin(t->fs, d);
	if (!cairn_is_ok(&st)) {
		unlink(m);
		return st;
	}
	atomic_fetch_add(&t->backlog, 1);
	*added = true;
	return st;
}

static void tw_committed(void *arg, cairn_status st)
{
	tw *w = arg;
	cachefs_through *t = w->t;
	blobstore_done_cb cb = w->cb;
	void *cb_arg = w->arg;
	cairn_digest d = w->base.digest;
	uint8_t *copy = w->copy;
	free(w);
	if (!cairn_is_ok(&st) || cairn_digest_is_empty_blob(&d)) {
		cb(cb_arg, st);
	} else if (!t->async) {
		cachefs_through_upload(t, &d, copy, cb, cb_arg);
	} else {
		bool added;
		st = backlog_add(t, &d, &added);
		cb(cb_arg, st);
		if (added)
			cachefs_through_upload_backlogged(t, &d);
	}
	free(copy); /* objstore_put copied it */
}

static void tw_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg)
{
	tw *w = (tw *)bw;
	w->cb = cb;
	w->arg = arg;
	blobstore_commit(w->inner, tw_committed, w);
}

static cairn_status t_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out);

/* ---- find_missing: local first, then the bucket for the rest ---- */

typedef struct fm {
	cachefs_through *t;
	const cairn_digest *ds;
	uint8_t *missing;
	size_t n;
	atomic_size_t pending;
	blobstore_done_cb cb;
	void *arg;
	struct fm_item {
		struct fm *f;
		size_t i;
	} *items;
} fm;

static void fm_end(fm *f)
{
	if (atomic_fetch_sub(&f->pending, 1) != 1)
		return;
	blobstore_done_cb cb = f->cb;
	void *arg = f->arg;
	cachefs_through *t = f->t;
	free(f->items);
	free(f);
	cb(arg, cairn_ok());
	cachefs_through_active(t, -1);
}

static void fm_head(void *arg, cairn_status st, int64_t size)
{
	struct fm_item *it = arg;
	fm *f = it->f;
	/* present in the bucket: read through when used. An unreachable bucket leaves it missing, which
	 * only makes the client upload it again. */
	if (cairn_is_ok(&st) && size == f->ds[it->i].size)
		f->missing[it->i] = 0;
	fm_end(f);
}

static void fm_local(void *arg, cairn_status st)
{
	fm *f = arg;
	if (!cairn_is_ok(&st)) {
		blobstore_done_cb cb = f->cb;
		void *cb_arg = f->arg;
		free(f->items);
		free(f);
		return cb(cb_arg, st);
	}
	f->items = cairn_xcalloc(f->n + 1, sizeof *f->items);
	atomic_store(&f->pending, 1);
	cachefs_through_active(f->t, 1);
	for (size_t i = 0; i < f->n; i++) {
		if (!f->missing[i])
			continue;
		f->items[i] = (struct fm_item){f, i};
		char key[CACHEFS_THROUGH_KEY_MAX];
		cachefs_through_key(&f->ds[i], key);
		atomic_fetch_add(&f->pending, 1);
		objstore_head(f->t->os, key, fm_head, &f->items[i]);
	}
	fm_end(f);
}

static void t_find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing, blobstore_done_cb cb,
                           void *arg)
{
	fm *f = cairn_xcalloc(1, sizeof *f);
	*f = (fm){.t = of(bs), .ds = ds, .missing = missing, .n = n, .cb = cb, .arg = arg};
	blobstore_find_missing(f->t->local, ds, n, missing, fm_local, f);
}

/* ---- the flusher: retries and the backlog left by a previous run ---- */

static bool parse_marker(const char *name, cairn_digest *d)
{
	const char *us = strchr(name, '_');
	if (!us)
		return false;
	char *end;
	long long size = strtoll(us + 1, &end, 10);
	cairn_status st = cairn_digest_parse(name, (size_t)(us - name), size, d);
	return *end == 0 && cairn_is_ok(&st);
}

/* Starts uploads for markers that have none under way. Returns the backlog's size. */
static uint64_t flush_pass(cachefs_through *t, bool first)
{
	DIR *dir = opendir(t->backlog_dir);
	if (!dir)
		return 0;
	uint64_t count = 0;
	struct dirent *e;
	while ((e = readdir(dir))) {
		cairn_digest d;
		if (!parse_marker(e->d_name, &d))
			continue;
		if (first) {
			/* a restart: pin again what waits for its upload */
			cairn_status st = cachefs_pin(t->fs, &d);
			if (!cairn_is_ok(&st)) {
				char m[4200], ds[CAIRN_DIGEST_STR_MAX];
				LOG_ERROR("cachefs", "backlogged blob=%s is gone from the local store", cairn_digest_str(&d, ds));
				cachefs_through_marker(t, &d, m, sizeof m);
				unlink(m);
				continue;
			}
		}
		count++;
		cachefs_through_upload_backlogged(t, &d);
	}
	closedir(dir);
	return count;
}

static void *flusher(void *arg)
{
	cachefs_through *t = arg;
	pthread_mutex_lock(&t->mu);
	while (!t->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += RETRY_NS / 1000000000LL;
		pthread_cond_timedwait(&t->cv, &t->mu, &ts);
		if (t->stopping)
			break;
		pthread_mutex_unlock(&t->mu);
		flush_pass(t, false);
		pthread_mutex_lock(&t->mu);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* ---- the object ---- */

static const blobstore_ops through_ops = {
	.find_missing = t_find_missing,
	.open_read = cachefs_through_open_read,
	.open_write = t_open_write,
	.write = tw_write,
	.commit = tw_commit,
	.abort = tw_abort,
	.pause = tw_pause,
};

static cairn_status t_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out)
{
	cachefs_through *t = of(bs);
	blobstore_writer *inner;
	cairn_status st = blobstore_open_write(t->local, d, &inner);
	if (!cairn_is_ok(&st))
		return st;
	if (!t->async && (*out = cachefs_through_stream_open(t, d, inner)))
		return st;
	tw *w = cairn_xcalloc(1, sizeof *w);
	w->base.ops = &through_ops;
	w->base.digest = *d;
	w->inner = inner;
	w->t = t;
	if (!t->async && d->size > 0 && d->size < CACHEFS_THROUGH_SMALL)
		w->copy = cairn_xmalloc((size_t)d->size);
	*out = &w->base;
	return st;
}

cairn_status cachefs_through_new(cachefs *fs, objstore *os, bool async, cachefs_through **out)
{
	cachefs_through *t = cairn_xcalloc(1, sizeof *t);
	t->bs.ops = &through_ops;
	t->fs = fs;
	t->local = cachefs_blobstore(fs);
	t->os = os;
	t->async = async;
	size_t len = strlen(fs->dir) + 16;
	t->backlog_dir = cairn_xmalloc(len);
	t->tmp_dir = cairn_xmalloc(len);
	snprintf(t->backlog_dir, len, "%s/backlog", fs->dir);
	snprintf(t->tmp_dir, len, "%s/tmp", fs->dir);
	if (mkdir(t->backlog_dir, 0755) != 0 && errno != EEXIST) {
		cairn_status st = cairn_errno(errno, "create %s", t->backlog_dir);
		free(t->backlog_dir);
		free(t->tmp_dir);
		free(t);
		return st;
	}
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	/* before serving, so that no new marker can be pinned twice: the backlog of the last run */
	uint64_t n = flush_pass(t, true);
	atomic_store(&t->backlog, n);
	if (n)
		LOG_INFO("cachefs", "write-through backlog resumed blobs=%llu", (unsigned long long)n);
	/* the flusher runs in both modes: a sync run after an async one still drains its backlog */
	pthread_create(&t->flusher, NULL, flusher, t);
	*out = t;
	return cairn_ok();
}

blobstore *cachefs_through_blobstore(cachefs_through *t) { return &t->bs; }

void cachefs_through_get_stats(cachefs_through *t, cachefs_through_stats *out)
{
	*out = (cachefs_through_stats){.uploaded = atomic_load(&t->uploaded), .skipped = atomic_load(&t->skipped),
	                               .fetched = atomic_load(&t->fetched), .refused = atomic_load(&t->refused),
	                               .backlog = atomic_load(&t->backlog), .failures = atomic_load(&t->failures)};
}

void cachefs_through_free(cachefs_through *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->stopping = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->flusher, NULL);
	/* what waits on the object store reports here: wait for it (markers keep the async backlog
	 * that is not flushed for the next run) */
	pthread_mutex_lock(&t->mu);
	while (t->active > 0)
		pthread_cond_wait(&t->cv, &t->mu);
	assert(t->stream_mem == 0); /* every streamed writer returned its part buffers */
	for (size_t i = 0; i < sizeof t->fetches / sizeof t->fetches[0]; i++)
		assert(!t->fetches[i]); /* every read-through answered its readers */
	pthread_mutex_unlock(&t->mu);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
	free(t->backlog_dir);
	free(t->tmp_dir);
	free(t);
}
