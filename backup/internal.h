/* backup internals: the state backup.c (writes, lazy restore) and restore.c (eager restore) share. */
#ifndef CAIRN_BACKUP_INTERNAL_H
#define CAIRN_BACKUP_INTERNAL_H

#include "backup/backup.h"

#include <pthread.h>
#include <stdatomic.h>

#define AC_BACKUP_MAX_ENTRY (16 << 20) /* largest action result read back */
#define AC_BACKUP_KEY_MAX 4200

typedef struct ac_restore ac_restore;

struct ac_backup {
	objstore *os;
	int64_t max_queue;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t queued; /* writes under way; guarded by mu */
	atomic_uint_fast64_t written, dropped, failed, restored;
	int64_t last_drop_log;
	ac_restore *restore; /* the eager restore, if one was started */
	atomic_bool restore_done;
};

/* Stops the eager restore (waits for its listing and fetches to end) and frees it. */
void ac_restore_free(ac_restore *r);

#endif
