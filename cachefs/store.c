/* The store as a whole: open and close, the blobstore vtable, and the calls the in-memory index
 * answers at once (find_missing, contains, reservations under the hard limit, pins, stats). */
#include "cachefs/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing, blobstore_done_cb cb,
                         void *arg)
{
	cachefs *fs = (cachefs *)bs;
	cachefs_index *ix = &fs->ix;
	/* one lock round for the whole batch */
	pthread_mutex_lock(&ix->mu);
	uint32_t now = cachefs_index_tick(ix, cairn_now_ns());
	for (size_t k = 0; k < n; k++) {
		if (cairn_digest_is_empty_blob(&ds[k])) {
			missing[k] = 0;
			continue;
		}
		uint32_t i = cachefs_index_find(ix, &ds[k]);
		bool held = i != CACHEFS_NIL && cachefs_index_at(ix, i)->state == CACHEFS_VISIBLE;
		if (held)
			cachefs_index_touch(ix, i, now); /* the answer promises the blob for min_age */
		missing[k] = !held;
	}
	pthread_mutex_unlock(&ix->mu);
	cb(arg, cairn_ok());
}

const blobstore_ops cachefs_ops = {
	.find_missing = find_missing,
	.open_read = cachefs_open_read,
	.read = cachefs_read,
	.close_read = cachefs_close_read,
	.open_write = cachefs_open_write,
	.write = cachefs_write,
	.commit = cachefs_commit,
	.abort = cachefs_abort,
	.pause = cachefs_pause,
};

blobstore *cachefs_blobstore(cachefs *fs) { return &fs->bs; }

bool cachefs_contains(cachefs *fs, const cairn_digest *d, bool touch)
{
	if (cairn_digest_is_empty_blob(d))
		return true;
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, d);
	bool held = i != CACHEFS_NIL && cachefs_index_at(ix, i)->state == CACHEFS_VISIBLE;
	if (held && touch)
		cachefs_index_touch(ix, i, cachefs_index_tick(ix, cairn_now_ns()));
	pthread_mutex_unlock(&ix->mu);
	return held;
}

size_t cachefs_list(cachefs *fs, uint64_t *cursor, cairn_digest *out, size_t cap)
{
	cachefs_index *ix = &fs->ix;
	size_t n = 0;
	bool more = true;
	/* a lock round per 64 Ki entries looked at, so that a walk never holds up the store for long */
	while (n == 0 && more && cap > 0) {
		pthread_mutex_lock(&ix->mu);
		n = cachefs_index_list(ix, cursor, 1u << 16, out, cap);
		more = *cursor < ix->high;
		pthread_mutex_unlock(&ix->mu);
	}
	return n;
}

void cachefs_get_stats(cachefs *fs, cachefs_stats *out)
{
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	*out = (cachefs_stats){
		.blobs = ix->visible,
		.bytes = (uint64_t)ix->bytes,
		.reserved = (uint64_t)ix->reserved,
		.evicted_blobs = ix->evicted_blobs,
		.evicted_bytes = ix->evicted_bytes,
		.rejected_writes = ix->rejected_writes,
		.corrupt_blobs = ix->corrupt_blobs,
	};
	pthread_mutex_unlock(&ix->mu);
}

cairn_status cachefs_pin(cachefs *fs, const cairn_digest *d)
{
	if (cairn_digest_is_empty_blob(d))
		return cairn_ok(); /* its file is never removed */
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, d);
	cachefs_entry *e = i != CACHEFS_NIL ? cachefs_index_at(ix, i) : NULL;
	bool held = e && e->state == CACHEFS_VISIBLE && e->pins < CACHEFS_MAX_PINS;
	if (held) {
		e->pins++;
		cachefs_index_touch(ix, i, cachefs_index_tick(ix, cairn_now_ns()));
	}
	pthread_mutex_unlock(&ix->mu);
	if (held)
		return cairn_ok();
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_err(CAIRN_NOT_FOUND, "blob %s not found", cairn_digest_str(d, ds));
}

cairn_status cachefs_forget_vanished(cachefs *fs, const cairn_digest *d)
{
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, d);
	assert(i != CACHEFS_NIL); /* the caller pins it */
	if (cachefs_index_at(ix, i)->state == CACHEFS_VISIBLE)
		cachefs_index_unpublish(ix, i, CACHEFS_GONE);
	pthread_mutex_unlock(&ix->mu);
	char ds[CAIRN_DIGEST_STR_MAX];
	LOG_WARN("cachefs", "blob file vanished; dropped from the index digest=%s", cairn_digest_str(d, ds));
	return cairn_err(CAIRN_NOT_FOUND, "blob %s not found (its file vanished from disk)", ds);
}

/* Whether the file of pinned blob d still holds its bytes (seal.c): one fstatat where seals work, a
 * hash of the whole file where they do not. Drops the blob if not. Plain system calls: the caller
 * may block. */
static cairn_status check_file(cachefs *fs, const cairn_digest *d, const char *path)
{
	char name[CACHEFS_NAME_MAX];
	cachefs_blob_name(d, name);
	int dirfd = fs->casfd[d->hash[0]];
	struct stat sb;
	if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? cachefs_forget_vanished(fs, d) : cairn_errno(errno, "cachefs: stat of %s", path);
	int match = cachefs_seal_holds(fs, &sb, d);
	if (match && !fs->sealing) {
		int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		match = fd < 0 ? -errno : cachefs_file_matches(fs, fd, d);
		if (fd >= 0)
			close(fd);
	}
	if (match < 0)
		return cairn_errno(-match, "cachefs: reading %s", path);
	return match ? cairn_ok() : cachefs_drop_corrupt(fs, d, 0, &sb);
}

cairn_status cachefs_pin_path(cachefs *fs, const cairn_digest *d, char *path, size_t cap)
{
	char name[CACHEFS_NAME_MAX];
	cachefs_blob_name(d, name);
	int len = snprintf(path, cap, "%s/cas/%02x/%s", fs->dir, d->hash[0], name);
	if (len < 0 || (size_t)len >= cap)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "cachefs: a path buffer of %zu bytes is too small for %s/cas/…",
		                 cap, fs->dir);
	cairn_status st = cachefs_pin(fs, d);
	if (!cairn_is_ok(&st) || cairn_digest_is_empty_blob(d))
		return st;
	st = cachefs_materialise(fs, d); /* a packed blob gets a file of its own */
	if (cairn_is_ok(&st))
		st = check_file(fs, d, path);
	if (!cairn_is_ok(&st))
		cachefs_unpin(fs, d);
	return st;
}

void cachefs_unpin(cachefs *fs, const cairn_digest *d)
{
	if (cairn_digest_is_empty_blob(d))
		return;
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, d);
	assert(i != CACHEFS_NIL); /* pinned entries are never removed */
	if (i != CACHEFS_NIL)
		cachefs_index_unpin(ix, i);
	pthread_mutex_unlock(&ix->mu);
}

static cairn_status check_config(const cachefs_config *cfg)
{
	if (!cfg->dir || !cfg->dir[0])
		return cairn_err(CAIRN_INVALID_ARGUMENT, "cachefs: no data directory given");
	if (cfg->max_size <= 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "cachefs: max_size must be positive, not %" PRId64, cfg->max_size);
	if (cfg->hard_limit && cfg->hard_limit < cfg->max_size)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "cachefs: hard_limit %" PRId64 " is below max_size %" PRId64,
		                 cfg->hard_limit, cfg->max_size);
	if (cfg->min_age_ns < 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "cachefs: min_age must not be negative");
	return cairn_ok();
}

static void free_store(cachefs *fs)
{
	cachefs_packs_close(fs);
	cachefs_layout_close(fs);
	cachefs_packer_destroy(&fs->pk);
	cachefs_evict_destroy(fs);
	cachefs_index_destroy(&fs->ix);
	free(fs->dir);
	free(fs);
}

cairn_status cachefs_open(const cachefs_config *cfg, cachefs **out)
{
	cairn_status st = check_config(cfg);
	if (!cairn_is_ok(&st))
		return st;
	cachefs *fs = cairn_xcalloc(1, sizeof *fs);
	fs->bs.ops = &cachefs_ops;
	fs->cfg = *cfg;
	if (!fs->cfg.hard_limit)
		fs->cfg.hard_limit = fs->cfg.max_size > INT64_MAX - fs->cfg.max_size / 10 ? INT64_MAX
		                                                                       : fs->cfg.max_size + fs->cfg.max_size / 10;
	fs->low_water = fs->cfg.max_size - fs->cfg.max_size / 20;
	fs->dirfd = fs->tmpfd = fs->lockfd = fs->packsfd = -1;
	for (int x = 0; x < CACHEFS_FANOUT; x++)
		fs->casfd[x] = -1;
	fs->pack_limit = CACHEFS_PACK_MAX_SIZE;
	cachefs_index_init(&fs->ix);
	cachefs_evict_init(fs);
	cachefs_packer_init(&fs->pk);
	st = cachefs_layout_open(fs);
	if (cairn_is_ok(&st))
		st = cachefs_scan(fs); /* before any thread starts: the index is not yet shared */
	if (!cairn_is_ok(&st)) {
		free_store(fs);
		return st;
	}
	fs->cfg.dir = fs->dir;
	st = cachefs_ring_start(&fs->ring, cfg->ring_entries);
	if (cairn_is_ok(&st)) {
		st = cachefs_evict_start(fs);
		if (!cairn_is_ok(&st))
			cachefs_ring_stop(&fs->ring);
	}
	if (!cairn_is_ok(&st)) {
		free_store(fs);
		return st;
	}
	cachefs_evict_kick(fs, fs->ix.bytes); /* the disk may hold more than a smaller max_size allows now */
	*out = fs;
	return cairn_ok();
}

void cachefs_close(cachefs *fs)
{
	if (!fs)
		return;
	cachefs_evict_stop(fs);       /* first: a pass waits on the ring */
	cachefs_ring_stop(&fs->ring); /* runs every queued operation and commit chain to its end */
	cachefs_stats s;
	cachefs_get_stats(fs, &s);
	assert(s.reserved == 0);
	LOG_INFO("cachefs", "closed blobs=%" PRIu64 " bytes=%" PRIu64 " dir=%s", s.blobs, s.bytes, fs->dir);
	free_store(fs);
}
