/*
 * backup: the action cache's copy in the object store. Every entry the gateway stores is written,
 * asynchronously, to the bucket; a lookup that misses in memory asks the bucket, so a restarted
 * scheduler (or one with an empty disk) keeps its cache. Writes that would pass the queue limit are
 * dropped, counted and logged: the AC is a cache, and losing a backup entry costs one re-execution,
 * while blocking the service on the bucket would cost every build.
 *
 * Keys: `ac/<hash>-<size>` (the action digest) for the empty instance name, `ac/<instance>/<hash>-<size>`
 * for an instance name made of segments of 1 to 64 characters of [A-Za-z0-9._-] starting with a
 * letter or digit (255 bytes at most), and `ac/_sha256-<SHA-256 of the name>/<hash>-<size>` for every
 * other name, so that any name gives a key the store takes, and two names never share one. An object
 * is "CAIRNAC1", the action digest (32-byte hash, 8-byte little-endian size), the name's length (4
 * bytes, little-endian), the name and a NUL, then the packed ActionResult; an entry is restored only if
 * its name and digest give back its key (key.c). Keys of the older format `ac/[<instance>/]<hash>`,
 * which lack the size that is part of the digest, are never restored: the eager restore counts them
 * in a log line, and a lookup does not ask for them.
 *
 * With an eager restore (backup_restore), a thread also lists ac/ at start-up and reads the
 * entries back into the gateway's action cache until it is full, never replacing nor evicting an
 * entry the clients put meanwhile (backup.c: writes and lazy restore; restore.c: eager restore).
 */
#ifndef CAIRN_BACKUP_H
#define CAIRN_BACKUP_H

#include "gateway/gateway.h"
#include "objstore/objstore.h"

typedef struct backup backup;

typedef struct backup_stats {
	uint64_t written, dropped, failed, restored; /* restored: lazily and eagerly */
	bool restore_done;                           /* the eager restore has ended */
} backup_stats;

backup *backup_new(objstore *os, int64_t max_queue);
/* Waits for queued writes, then frees. Call before closing the objstore. */
void backup_free(backup *b);
/* The backing the gateway uses (valid until backup_free). */
gateway_ac_backing backup_backing(backup *b);
void backup_get_stats(backup *b, backup_stats *out);
/* Starts the eager restore into g's action cache, in the background; logs a line when it is done.
 * backup_free stops it. At most once per backup. */
void backup_restore(backup *b, gateway *g);

#endif
