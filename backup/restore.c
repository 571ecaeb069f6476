/* The eager restore of the action cache at start-up (see backup.h).
 *
 * The listing of ac/ runs on an objstore transfer thread and hands its pages to a queue; the restore
 * thread takes keys from it and fetches the entries, RESTORE_INFLIGHT at a time, into the gateway's
 * action cache. Neither side blocks the other's thread: the listing never waits (keys beyond
 * RESTORE_MAX_QUEUED waiting at once are left to the lazy restore), and the restore ends early when
 * the action cache is full, since a restored entry never pushes out one the clients put. */
#include "backup/internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESTORE_INFLIGHT 32
#define RESTORE_MAX_QUEUED 100000

struct backup_restore_job {
	backup *b;
	gateway *g;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	char **keys; /* queued keys, a ring of RESTORE_MAX_QUEUED */
	size_t head, count;
	bool listed, full, stop;
	int inflight;
	cairn_status list_st;
	uint64_t listed_keys, skipped_keys, old_keys, entries;
	int64_t bytes;
};
typedef struct backup_restore_job restore;

static void on_page(void *arg, cairn_status st, const char *const *keys, size_t n, bool done)
{
	restore *r = arg;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < n && !r->stop && !r->full; i++) {
		r->listed_keys++;
		if (r->count == RESTORE_MAX_QUEUED) {
			r->skipped_keys++;
			continue;
		}
		r->keys[(r->head + r->count++) % RESTORE_MAX_QUEUED] = cairn_xstrdup(keys[i]);
	}
	if (done) {
		r->listed = true;
		r->list_st = st;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

typedef struct fetch {
	restore *r;
	char *key;
} fetch;

/* Restores the entry in a fetched object, if it is the one its key names. */
static cairn_status restore_object(restore *r, const char *key, const uint8_t *data, size_t len, size_t *rlen)
{
	backup_entry e;
	if (!backup_object_parse(data, len, key, &e))
		return cairn_err(CAIRN_DATA_LOSS, "%.200s in the bucket is not the action cache entry its key names", key);
	*rlen = e.result_len;
	return gateway_ac_restore(r->g, e.instance, &e.action, e.result, e.result_len);
}

static void fetched(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	fetch *f = arg;
	restore *r = f->r;
	size_t rlen = 0;
	if (cairn_is_ok(&st))
		st = restore_object(r, f->key, data, len, &rlen);
	if (!cairn_is_ok(&st) && st.code != CAIRN_NOT_FOUND && st.code != CAIRN_ALREADY_EXISTS &&
	    st.code != CAIRN_RESOURCE_EXHAUSTED) /* NOT_FOUND: deleted since the listing */
		LOG_WARN("backup", "action cache entry not restored: %s", cairn_status_str(&st));
	free(data);
	pthread_mutex_lock(&r->mu);
	if (cairn_is_ok(&st)) {
		r->entries++;
		r->bytes += (int64_t)rlen;
		atomic_fetch_add(&r->b->restored, 1);
	} else if (st.code == CAIRN_RESOURCE_EXHAUSTED) {
		r->full = true;
	}
	r->inflight--;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	free(f->key);
	free(f);
}

/* True for the key of an entry; counts those of the old format (caller holds mu). */
static bool wanted(restore *r, const char *key)
{
	cairn_digest action;
	switch (backup_parse_key(key, &action)) {
	case AC_BACKUP_KEY_ENTRY:
		return true;
	case AC_BACKUP_KEY_OLD:
		r->old_keys++;
		return false;
	case AC_BACKUP_KEY_OTHER:
		break;
	}
	LOG_WARN("backup", "not an action cache key, skipped: %.200s", key);
	return false;
}

static void *restore_main(void *arg)
{
	restore *r = arg;
	int64_t t0 = cairn_now_ns();
	objstore_list(r->b->os, "ac/", on_page, r);
	pthread_mutex_lock(&r->mu);
	for (;;) {
		/* once stopped (or full), only the end of the listing is awaited */
		while (!r->listed && (r->count == 0 || r->stop || r->full))
			pthread_cond_wait(&r->cv, &r->mu);
		while (r->inflight >= RESTORE_INFLIGHT)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->count == 0 || r->stop || r->full) {
			if (r->listed)
				break;
			continue;
		}
		char *key = r->keys[r->head];
		r->head = (r->head + 1) % RESTORE_MAX_QUEUED;
		r->count--;
		if (!wanted(r, key)) {
			free(key);
			continue;
		}
		fetch *f = cairn_xmalloc(sizeof *f);
		*f = (fetch){.r = r, .key = key};
		r->inflight++;
		pthread_mutex_unlock(&r->mu);
		objstore_get(r->b->os, key, AC_BACKUP_MAX_ENTRY, fetched, f);
		pthread_mutex_lock(&r->mu);
	}
	while (r->inflight > 0)
		pthread_cond_wait(&r->cv, &r->mu);
	double secs = (double)(cairn_now_ns() - t0) / 1e9;
	if (!cairn_is_ok(&r->list_st))
		LOG_ERROR("backup", "action cache restore: listing the bucket failed: %s", cairn_status_str(&r->list_st));
	LOG_INFO("backup",
	         "action cache restored entries=%llu bytes=%lld listed=%llu seconds=%.1f%s%s",
	         (unsigned long long)r->entries, (long long)r->bytes, (unsigned long long)r->listed_keys, secs,
	         r->full ? " (the action cache is full: the rest comes back on a miss)" : "",
	         r->skipped_keys ? " (the listing outran the fetches: the rest comes back on a miss)" : "");
	if (r->old_keys)
		LOG_WARN("backup",
		         "action cache entries in the old key format not restored: old_keys=%llu (ac/[<instance>/]<hash> "
		         "lacks the action's size, which is part of its digest; they come back as their actions run "
		         "again, and can be deleted from the bucket)",
		         (unsigned long long)r->old_keys);
	pthread_mutex_unlock(&r->mu);
	atomic_store(&r->b->restore_done, true);
	return NULL;
}

void backup_restore(backup *b, gateway *g)
{
	assert(!b->restore);
	restore *r = cairn_xcalloc(1, sizeof *r);
	r->b = b;
	r->g = g;
	r->keys = cairn_xcalloc(RESTORE_MAX_QUEUED, sizeof *r->keys);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	int e = pthread_create(&r->thread, NULL, restore_main, r);
	if (e) {
		LOG_ERROR("backup", "cannot start the action cache restore: %s", strerror(e));
		r->thread = 0;
	}
	b->restore = r;
}

void backup_restore_free(restore *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (r->thread)
		pthread_join(r->thread, NULL);
	for (size_t i = 0; i < r->count; i++)
		free(r->keys[(r->head + i) % RESTORE_MAX_QUEUED]);
	free(r->keys);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}
