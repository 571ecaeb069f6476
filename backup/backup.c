/* The action cache's copy in the object store (see backup.h). */
#include "backup/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

backup *backup_new(objstore *os, int64_t max_queue)
{
	backup *b = cairn_xcalloc(1, sizeof *b);
	b->os = os;
	b->max_queue = max_queue > 0 ? max_queue : 10000;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	return b;
}

void backup_free(backup *b)
{
	if (!b)
		return;
	backup_restore_free(b->restore);
	pthread_mutex_lock(&b->mu);
	while (b->queued > 0)
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	free(b);
}

void backup_get_stats(backup *b, backup_stats *out)
{
	*out = (backup_stats){.written = atomic_load(&b->written), .dropped = atomic_load(&b->dropped),
	                         .failed = atomic_load(&b->failed), .restored = atomic_load(&b->restored),
	                         .restore_done = atomic_load(&b->restore_done)};
}

static void written(void *arg, cairn_status st)
{
	backup *b = arg;
	if (cairn_is_ok(&st)) {
		atomic_fetch_add(&b->written, 1);
	} else {
		atomic_fetch_add(&b->failed, 1);
		LOG_WARN("backup", "action cache entry not backed up: %s", cairn_status_str(&st));
	}
	pthread_mutex_lock(&b->mu);
	if (--b->queued == 0)
		pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static void put(void *ctx, const char *instance, const cairn_digest *action, const void *data, size_t len)
{
	backup *b = ctx;
	pthread_mutex_lock(&b->mu);
	bool room = b->queued < b->max_queue;
	if (room)
		b->queued++;
	int64_t now = cairn_now_ns();
	bool log_drop = !room && now - b->last_drop_log > 10 * 1000000000LL;
	if (log_drop)
		b->last_drop_log = now;
	pthread_mutex_unlock(&b->mu);
	if (!room) {
		uint64_t n = atomic_fetch_add(&b->dropped, 1) + 1;
		if (log_drop)
			LOG_WARN("backup", "backup queue full: entries dropped=%llu (the object store is slow or down)",
			         (unsigned long long)n);
		return;
	}
	char key[AC_BACKUP_KEY_MAX];
	backup_key(instance, action, key);
	size_t n;
	uint8_t *obj = backup_object(instance, action, data, len, &n);
	objstore_put(b->os, key, obj, n, written, b);
	free(obj);
}

typedef struct get_ctx {
	backup *b;
	void (*cb)(void *arg, cairn_status st, uint8_t *data, size_t len);
	void *arg;
	char key[AC_BACKUP_KEY_MAX];
} get_ctx;

/* Hands the result inside the object to the caller, in the object's own buffer. */
static void got(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	get_ctx *g = arg;
	backup_entry e;
	size_t rlen = 0;
	if (cairn_is_ok(&st) && !backup_object_parse(data, len, g->key, &e))
		st = cairn_err(CAIRN_DATA_LOSS, "%.200s in the bucket is not the action cache entry its key names",
		               g->key);
	if (cairn_is_ok(&st)) {
		rlen = e.result_len;
		memmove(data, e.result, rlen);
		atomic_fetch_add(&g->b->restored, 1);
	} else {
		free(data);
		data = NULL;
		if (st.code != CAIRN_NOT_FOUND)
			LOG_WARN("backup", "action cache entry not restored: %s", cairn_status_str(&st));
	}
	g->cb(g->arg, st, data, rlen);
	free(g);
}

static void get(void *ctx, const char *instance, const cairn_digest *action,
                void (*cb)(void *arg, cairn_status st, uint8_t *data, size_t len), void *arg)
{
	backup *b = ctx;
	get_ctx *g = cairn_xmalloc(sizeof *g);
	*g = (get_ctx){.b = b, .cb = cb, .arg = arg};
	backup_key(instance, action, g->key);
	objstore_get(b->os, g->key, AC_BACKUP_MAX_ENTRY, got, g);
}

gateway_ac_backing backup_backing(backup *b)
{
	gateway_ac_backing k = {.ctx = b, .put = put, .get = get};
	return k;
}
