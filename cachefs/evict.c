/* Eviction: a thread that wakes when a publish takes the bytes held past max_size (and once a second,
 * for blobs that min_age kept), and removes least recently used blobs until the bytes held are at or
 * below the low-water mark (95% of max_size, so that each new blob does not cost a pass of its own).
 *
 * A pass works in batches: under the index lock it takes victims from the LRU tail, skipping pinned
 * entries and stopping at the first one used within min_age (the list is ordered by last use), and
 * marks them DYING, so readers no longer find them; then, without the lock, it frees their space
 * through the ring and waits (this thread may block): a blob's own file is unlinked, a packed blob's
 * slots are punched, which also marks its journal record dead (see pack.c); then it removes the
 * entries, and deletes the packs that no longer hold anything. seal.c drops a corrupt blob the same
 * way (cachefs_evict_free, cachefs_evict_forget).
 *
 * Appends that found no room below the hard limit (space.c) kick a pass and are retried after it. */
#include "cachefs/internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define PERIOD_S 1

void cachefs_evict_kick(cachefs *fs, int64_t bytes)
{
	if (bytes <= fs->cfg.max_size)
		return;
	pthread_mutex_lock(&fs->evict_mu);
	fs->evict_kick = true;
	pthread_cond_signal(&fs->evict_cv);
	pthread_mutex_unlock(&fs->evict_mu);
}

/* Marks up to BATCH victims DYING and returns them. Under ix.mu. */
static size_t pick(cachefs *fs, cachefs_victim *victims)
{
	cachefs_index *ix = &fs->ix;
	uint32_t now = cachefs_index_tick(ix, cairn_now_ns());
	uint32_t min_age = cachefs_ticks_of(fs->cfg.min_age_ns);
	size_t n = 0;
	for (uint32_t i = ix->lru_tail; i != CACHEFS_NIL && n < BATCH && ix->bytes > fs->low_water;) {
		cachefs_entry *e = cachefs_index_at(ix, i);
		uint32_t prev = e->prev;
		/* Ages are in whole ticks, and an age of d ticks may be up to one tick short of d + 1: "<="
		 * keeps every blob used within min_age, at the cost of keeping some up to a tick longer. */
		if (e->last_use > now || (fs->cfg.min_age_ns > 0 && now - e->last_use <= min_age))
			break; /* everything closer to the head was used even more recently */
		if (e->pins == 0) {
			cachefs_victim *v = &victims[n++];
			cachefs_index_digest(ix, i, &v->d);
			v->loc = e->loc;
			v->pack = e->loc ? cachefs_pack_of(fs, e->loc) : NULL;
			cachefs_index_unpublish(ix, i, CACHEFS_DYING);
			ix->evicted_blobs++;
			ix->evicted_bytes += (uint64_t)cachefs_entry_size(e);
		}
		i = prev;
	}
	return n;
}

void cachefs_evict_free(cachefs *fs, cachefs_victim *victims, size_t n)
{
	cachefs_op ops[BATCH];
	for (size_t k = 0; k < n; k++) {
		cachefs_victim *v = &victims[k];
		if (v->pack) {
			cachefs_pack_punch_op(&ops[k], v->pack, v->loc, v->d.size);
		} else {
			cachefs_blob_name(&v->d, v->name);
			ops[k] = (cachefs_op){.kind = CACHEFS_OP_UNLINKAT, .fd = fs->casfd[v->d.hash[0]], .path = v->name};
		}
	}
	cachefs_ring_run(&fs->ring, ops, n);
	for (size_t k = 0; k < n; k++) {
		cachefs_victim *v = &victims[k];
		int64_t res = ops[k].res;
		if (v->pack && res < 0) /* the slots stay until the pack goes; a restart finds the blob again */
			LOG_WARN("cachefs", "cannot punch evicted blob path=%s/packs/%s offset=%" PRIu64 " error=%s", fs->dir,
			         v->pack->data_name, cachefs_loc_off(v->loc), strerror((int)-res));
		else if (!v->pack && res < 0 && res != -ENOENT)
			LOG_WARN("cachefs", "cannot remove evicted blob path=%s/cas/%02x/%s error=%s", fs->dir, v->d.hash[0],
			         v->name, strerror((int)-res));
	}
}

void cachefs_evict_forget(cachefs *fs, const cachefs_victim *victims, size_t n)
{
	cachefs_index *ix = &fs->ix;
	cachefs_pack *unused[BATCH];
	size_t nu = 0;
	pthread_mutex_lock(&ix->mu);
	for (size_t k = 0; k < n; k++) {
		uint32_t i = cachefs_index_find(ix, &victims[k].d);
		cachefs_entry *e = cachefs_index_at(ix, i);
		if (e->loc) {
			e->loc = 0;
			victims[k].pack->live--;
			if (cachefs_pack_unused(victims[k].pack))
				unused[nu++] = victims[k].pack;
		}
		if (e->pins) /* a corrupt blob's readers (seal.c); a victim of eviction has none */
			e->state = CACHEFS_GONE;
		else
			cachefs_index_remove(ix, i);
	}
	pthread_mutex_unlock(&ix->mu);
	for (size_t k = 0; k < nu; k++)
		cachefs_pack_delete(fs, unused[k]);
}

void cachefs_evict_now(cachefs *fs)
{
	cachefs_index *ix = &fs->ix;
	cachefs_victim victims[BATCH];
	uint64_t blobs = 0;
	int64_t bytes = 0, held = 0;
	pthread_mutex_lock(&fs->pass_mu);
	for (bool first = true;; first = false) {
		pthread_mutex_lock(&ix->mu);
		size_t n = !first || ix->bytes > fs->cfg.max_size ? pick(fs, victims) : 0;
		held = ix->bytes;
		pthread_mutex_unlock(&ix->mu);
		if (n == 0)
			break;
		cachefs_evict_free(fs, victims, n);
		cachefs_evict_forget(fs, victims, n);
		blobs += n;
		for (size_t k = 0; k < n; k++)
			bytes += victims[k].d.size;
	}
	pthread_mutex_unlock(&fs->pass_mu);
	if (blobs)
		LOG_INFO("cachefs", "evicted blobs=%" PRIu64 " bytes=%" PRId64 " held=%" PRId64 " max_size=%" PRId64,
		         blobs, bytes, held, fs->cfg.max_size);
}

static void *evict_main(void *arg)
{
	cachefs *fs = arg;
	pthread_mutex_lock(&fs->evict_mu);
	while (!fs->evict_stop) {
		if (!fs->evict_kick) {
			struct timespec deadline;
			clock_gettime(CLOCK_MONOTONIC, &deadline);
			deadline.tv_sec += PERIOD_S;
			pthread_cond_timedwait(&fs->evict_cv, &fs->evict_mu, &deadline);
			if (fs->evict_stop)
				break;
		}
		fs->evict_kick = false;
		cachefs_writer *waiting = fs->room_waiters; /* appends that wait for this pass */
		fs->room_waiters = NULL;
		pthread_mutex_unlock(&fs->evict_mu);
		cachefs_evict_now(fs);
		cachefs_space_retry(fs, waiting);
		pthread_mutex_lock(&fs->evict_mu);
	}
	pthread_mutex_unlock(&fs->evict_mu);
	return NULL;
}

void cachefs_evict_init(cachefs *fs)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->evict_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&fs->evict_mu, NULL);
	pthread_mutex_init(&fs->pass_mu, NULL);
}

cairn_status cachefs_evict_start(cachefs *fs)
{
	int ret = pthread_create(&fs->evict_thread, NULL, evict_main, fs);
	if (ret != 0)
		return cairn_errno(ret, "cachefs: starting the eviction thread");
	fs->evict_started = true;
	return cairn_ok();
}

void cachefs_evict_stop(cachefs *fs)
{
	if (!fs->evict_started)
		return;
	pthread_mutex_lock(&fs->evict_mu);
	fs->evict_stop = true;
	pthread_cond_signal(&fs->evict_cv);
	pthread_mutex_unlock(&fs->evict_mu);
	pthread_join(fs->evict_thread, NULL);
	fs->evict_started = false;
	assert(!fs->room_waiters); /* no append may be in flight at close */
}

void cachefs_evict_destroy(cachefs *fs)
{
	pthread_cond_destroy(&fs->evict_cv);
	pthread_mutex_destroy(&fs->evict_mu);
	pthread_mutex_destroy(&fs->pass_mu);
}
