/*
 * backup: the action cache's copy in the object store. Every entry the gateway stores is written,
 * asynchronously, to `ac/<instance>/<hash>` (`ac/<hash>` for the empty instance name) in the bucket;
 * a lookup that misses in memory asks the bucket, so a restarted scheduler (or one with an empty
 * disk) keeps its cache. Writes that would pass the queue limit are dropped, counted and logged:
 * the AC is a cache, and losing a backup entry costs one re-execution, while blocking the service
 * on the bucket would cost every build.
 *
 * With an eager restore (ac_backup_restore), a thread also lists ac/ at start-up and reads the
 * entries back into the gateway's action cache until it is full, never replacing nor evicting an
 * entry the clients put meanwhile (backup.c: writes and lazy restore; restore.c: eager restore).
 */
#ifndef CAIRN_BACKUP_H
#define CAIRN_BACKUP_H

#include "gateway/gateway.h"
#include "objstore/objstore.h"

typedef struct ac_backup ac_backup;

typedef struct ac_backup_stats {
	uint64_t written, dropped, failed, restored; /* restored: lazily and eagerly */
	bool restore_done;                           /* the eager restore has ended */
} ac_backup_stats;

ac_backup *ac_backup_new(objstore *os, int64_t max_queue);
/* Waits for queued writes, then frees. Call before closing the objstore. */
void ac_backup_free(ac_backup *b);
/* The backing the gateway uses (valid until ac_backup_free). */
gateway_ac_backing ac_backup_backing(ac_backup *b);
void ac_backup_get_stats(ac_backup *b, ac_backup_stats *out);
/* Starts the eager restore into g's action cache, in the background; logs a line when it is done.
 * ac_backup_free stops it. At most once per ac_backup. */
void ac_backup_restore(ac_backup *b, gateway *g);
/* The object key of an entry, and back (exposed for tests): parse gives the instance name and the
 * action digest with size 0 (keys hold only the hash); false for anything that is not such a key. */
void ac_backup_key(const char *instance, const cairn_digest *action, char *out, size_t cap);
bool ac_backup_parse_key(const char *key, char *instance, size_t cap, cairn_digest *action);

#endif
