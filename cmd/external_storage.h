/* The object store behind a command's storage (DESIGN.md "Storage composition"), one definition
 * for `serve`, `worker` and `scheduler`: the --external_storage flags, their checks, and what is
 * composed over the store. A command says what it keeps there:
 *  - EXTERNAL_CAS (serve, a worker): the local cachefs with the store written through and read
 *    through (cachefs_through), with --write_through;
 *  - EXTERNAL_AC (serve, a scheduler): the action cache backed up to the store and restored from it
 *    (backup), with --ac_restore.
 * Only the flags of what a command keeps there are offered, so its --help lists nothing it ignores.
 * Without --external_storage nothing is opened and the command runs on its local storage alone. */
#ifndef CAIRN_CMD_EXTERNAL_STORAGE_H
#define CAIRN_CMD_EXTERNAL_STORAGE_H

#include "backup/backup.h"
#include "cachefs/cachefs.h"
#include "gateway/gateway.h"
#include "objstore/objstore.h"

enum external_use { EXTERNAL_CAS = 1, EXTERNAL_AC = 2 };

typedef struct external_flags {
	unsigned uses; /* EXTERNAL_CAS, EXTERNAL_AC or both */
	const char *url, *endpoint, *region, *addressing, *gcs_credentials_file;
	const char *write_through; /* EXTERNAL_CAS: sync or async */
	const char *ac_restore;    /* EXTERNAL_AC: lazy or eager */
} external_flags;

/* The most flags external_flags_table writes. */
#define EXTERNAL_FLAGS_MAX 7

/* The defaults (no object store) for a command that keeps `uses` there. */
external_flags external_flags_default(unsigned uses);
/* Writes the definitions of the flags f->uses needs to out[] (room for EXTERNAL_FLAGS_MAX), their
 * values pointing into *f; returns how many. */
size_t external_flags_table(external_flags *f, cairn_flag *out);
/* A command's table: own[0..n) followed by the flags f->uses needs, into out[] (room for
 * n + EXTERNAL_FLAGS_MAX); returns how many in all. */
size_t external_flags_after(const cairn_flag *own, size_t n, external_flags *f, cairn_flag *out);
/* INVALID_ARGUMENT naming the flag whose value is none of its choices. */
cairn_status external_flags_check(const external_flags *f);
/* True when --external_storage is given. */
bool external_flags_given(const external_flags *f);

/* What is open over the store; all NULL without --external_storage. */
typedef struct external {
	objstore *os;
	cachefs_through *through; /* with EXTERNAL_CAS */
	backup *backup;           /* with EXTERNAL_AC */
} external;

/* Opens the store and composes over it what f->uses asks for: the through store over fs
 * (EXTERNAL_CAS; fs may be NULL otherwise) and the backup (EXTERNAL_AC). The store's own errors
 * (a bad URL, credentials that do not work) come back as they are. */
cairn_status external_open(const external_flags *f, cachefs *fs, external *x);
/* The store the services see: fs written and read through, or fs alone without an object store. */
blobstore *external_cas(external *x, cachefs *fs);
/* The action cache's backing: the backup, or none ({0}). */
gateway_ac_backing external_ac_backing(external *x);
/* With --ac_restore=eager, starts restoring the whole backup into g in the background. */
void external_restore(const external_flags *f, external *x, gateway *g);
/* Frees the backup: waits for its queued writes and stops a restore. Before gateway_free, since a
 * restore fills the gateway's action cache. */
void external_close_backup(external *x);
/* Frees the rest (the backup too, if still there), the object store last. After the services that
 * use the through store are gone (gateway_free: interrupted uploads hold its writers). */
void external_close(external *x);

#endif
