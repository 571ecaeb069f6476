/* Room below the hard limit: what writers reserve (ix.reserved), and the appends that wait for an
 * eviction pass when their bytes do not fit.
 *
 * A writer reserves for the bytes it has taken, plus a grant ahead of them so that most appends do
 * not take the index lock: at most CACHEFS_RESERVE_STEP, at most the blob's size, and at most an even
 * share of the headroom left after the bytes it needs (hard_limit - bytes held - bytes reserved,
 * divided by the writers open). So an upload that stalls holds what it sent and little more; any
 * number of uploads reserving ahead leave part of the headroom to the next one; and a writer whose
 * share is thin asks more often, never for less than its append needs. A blob that arrives whole
 * (a read-through download) had its size reserved before its first byte (cachefs_reserve); the
 * writer that adopts it takes that over (cachefs_space_adopt).
 *
 * The bytes themselves are first come, first served. An append whose bytes do not fit waits for one
 * eviction pass (which may make room: blobs held past max_size go, unless used within min_age); if
 * they still do not fit, that append fails with RESOURCE_EXHAUSTED and its writer with it, and what
 * it held goes back when it is aborted; the other writers go on. Waiters queued before a pass starts
 * are retried after it ends, each on the I/O thread (the writer's room_op). */
#include "cachefs/internal.h"

#include <assert.h>
#include <inttypes.h>

/* Under ix.mu: what a writer of a blob of `size` bytes that holds `held` gets so as to hold at least
 * `upto` (0 if it does already), or -1 when that does not fit below the hard limit. */
static int64_t grant(const cachefs *fs, int64_t size, int64_t held, int64_t upto)
{
	const cachefs_index *ix = &fs->ix;
	int64_t need = upto > held ? upto - held : 0;
	int64_t headroom = fs->cfg.hard_limit - ix->bytes - ix->reserved;
	if (need > 0 && need > headroom)
		return -1;
	int64_t ahead = headroom > need ? (headroom - need) / (int64_t)ix->writers : 0;
	if (ahead > CACHEFS_RESERVE_STEP)
		ahead = CACHEFS_RESERVE_STEP;
	int64_t g = need + ahead;
	return g < size - held ? g : size - held;
}

/* The refusal of a blob larger than the hard limit, counted as a rejected write. */
static cairn_status too_large(cachefs *fs, const cairn_digest *d)
{
	pthread_mutex_lock(&fs->ix.mu);
	fs->ix.rejected_writes++;
	pthread_mutex_unlock(&fs->ix.mu);
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_err(CAIRN_RESOURCE_EXHAUSTED,
	                 "cachefs: blob %s is larger than the hard limit of %" PRId64
	                 " bytes of this store: it can never be stored here",
	                 cairn_digest_str(d, ds), fs->cfg.hard_limit);
}

/* The refusal of `more` bytes for blob d; under ix.mu, counted as a rejected write. */
static cairn_status no_room(cachefs *fs, const cairn_digest *d, int64_t more)
{
	cachefs_index *ix = &fs->ix;
	ix->rejected_writes++;
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_err(CAIRN_RESOURCE_EXHAUSTED,
	                 "cachefs: no room for %" PRId64 " more bytes of blob %s: %" PRId64 " bytes held and %" PRId64
	                 " reserved by uploads would pass the hard limit of %" PRId64
	                 " bytes, and eviction keeps what was used within min_age; retry later",
	                 more, cairn_digest_str(d, ds), ix->bytes, ix->reserved, fs->cfg.hard_limit);
}

cairn_status cachefs_space_open(cachefs *fs, const cairn_digest *d, int64_t *reserved)
{
	cachefs_index *ix = &fs->ix;
	*reserved = 0;
	if (d->size > fs->cfg.hard_limit)
		return too_large(fs, d);
	pthread_mutex_lock(&ix->mu);
	ix->writers++;
	*reserved = grant(fs, d->size, 0, 0); /* needing nothing yet, it always fits */
	ix->reserved += *reserved;
	pthread_mutex_unlock(&ix->mu);
	return cairn_ok();
}

cairn_status cachefs_reserve(cachefs *fs, const cairn_digest *d, int64_t n)
{
	assert(n >= 0);
	if (d->size > fs->cfg.hard_limit)
		return too_large(fs, d);
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	bool fits = n <= fs->cfg.hard_limit - ix->bytes - ix->reserved;
	cairn_status st = fits ? cairn_ok() : no_room(fs, d, n);
	ix->reserved += fits ? n : 0;
	int64_t bytes = ix->bytes;
	pthread_mutex_unlock(&ix->mu);
	if (!fits)
		cachefs_evict_kick(fs, bytes);
	return st;
}

void cachefs_release(cachefs *fs, int64_t n)
{
	pthread_mutex_lock(&fs->ix.mu);
	fs->ix.reserved -= n;
	assert(fs->ix.reserved >= 0);
	pthread_mutex_unlock(&fs->ix.mu);
}

void cachefs_space_adopt(cachefs_writer *w)
{
	cachefs_index *ix = &w->fs->ix;
	pthread_mutex_lock(&ix->mu);
	ix->writers++;
	w->reserved = w->base.digest.size; /* the caller's, counted in ix->reserved already */
	pthread_mutex_unlock(&ix->mu);
}

bool cachefs_space_take(cachefs_writer *w, uint64_t upto)
{
	/* w->reserved changes only through this writer's own calls, which never overlap */
	if ((int64_t)upto <= w->reserved)
		return true;
	cachefs_index *ix = &w->fs->ix;
	pthread_mutex_lock(&ix->mu);
	int64_t g = grant(w->fs, w->base.digest.size, w->reserved, (int64_t)upto);
	if (g > 0) {
		w->reserved += g;
		ix->reserved += g;
	}
	pthread_mutex_unlock(&ix->mu);
	return g >= 0;
}

cairn_status cachefs_space_refuse(cachefs_writer *w, uint64_t upto)
{
	pthread_mutex_lock(&w->fs->ix.mu);
	cairn_status st = no_room(w->fs, &w->base.digest, (int64_t)upto - w->reserved);
	pthread_mutex_unlock(&w->fs->ix.mu);
	return st;
}

/* Gives back what is held beyond `keep` bytes. */
static void release_above(cachefs_writer *w, int64_t keep, bool closing)
{
	cachefs_index *ix = &w->fs->ix;
	pthread_mutex_lock(&ix->mu);
	if (w->reserved > keep) {
		ix->reserved -= w->reserved - keep;
		w->reserved = keep;
	}
	assert(ix->reserved >= 0);
	if (closing) {
		assert(ix->writers > 0);
		ix->writers--;
	}
	pthread_mutex_unlock(&ix->mu);
}

void cachefs_space_release(cachefs_writer *w) { release_above(w, 0, true); }

void cachefs_pause(blobstore_writer *bw)
{
	cachefs_writer *w = (cachefs_writer *)bw;
	release_above(w, (int64_t)bw->written, false);
}

void cachefs_space_wait(cachefs_writer *w)
{
	cachefs *fs = w->fs;
	pthread_mutex_lock(&fs->evict_mu);
	w->room_next = fs->room_waiters;
	fs->room_waiters = w;
	fs->evict_kick = true;
	pthread_cond_signal(&fs->evict_cv);
	pthread_mutex_unlock(&fs->evict_mu);
}

void cachefs_space_retry(cachefs *fs, cachefs_writer *waiters)
{
	for (cachefs_writer *w = waiters, *next; w; w = next) {
		next = w->room_next; /* the retry may free w */
		cachefs_ring_submit(&fs->ring, &w->room_op);
	}
}
