/* backup internals: the state backup.c (writes, lazy restore) and restore.c (eager restore) share, and
 * the keys and objects of key.c. */
#ifndef CAIRN_BACKUP_INTERNAL_H
#define CAIRN_BACKUP_INTERNAL_H

#include "backup/backup.h"

#include <pthread.h>
#include <stdatomic.h>

#define AC_BACKUP_MAX_ENTRY (16 << 20) /* largest object read back */
#define AC_BACKUP_KEY_MAX 384          /* longest key of an entry, and its NUL */

typedef struct backup_restore_job backup_restore_job;

struct backup {
	objstore *os;
	int64_t max_queue;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t queued; /* writes under way; guarded by mu */
	atomic_uint_fast64_t written, dropped, failed, restored;
	int64_t last_drop_log;
	backup_restore_job *restore; /* the eager restore, if one was started */
	atomic_bool restore_done;
};

/* The object key of an entry (key.c; the format is in backup.h). */
void backup_key(const char *instance, const cairn_digest *action, char out[AC_BACKUP_KEY_MAX]);
/* What a key under ac/ is: an entry's (*action gets its digest), one of the old format without the
 * size (*action gets the hash, size 0), or something else. */
enum backup_key_kind { AC_BACKUP_KEY_ENTRY, AC_BACKUP_KEY_OLD, AC_BACKUP_KEY_OTHER };
enum backup_key_kind backup_parse_key(const char *key, cairn_digest *action);

/* An entry read back from its object: instance and result point into the object. */
typedef struct backup_entry {
	const char *instance;
	cairn_digest action;
	const uint8_t *result;
	size_t result_len;
} backup_entry;
/* The object of an entry (malloc'd, *out_len bytes). */
uint8_t *backup_object(const char *instance, const cairn_digest *action, const void *result, size_t len,
                          size_t *out_len);
/* Reads an object back; false unless it is well formed and its name and digest give `key`. */
bool backup_object_parse(const uint8_t *obj, size_t len, const char *key, backup_entry *out);

/* Stops the eager restore (waits for its listing and fetches to end) and frees it. */
void backup_restore_free(backup_restore_job *r);

#endif
