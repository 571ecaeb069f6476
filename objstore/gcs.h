/* The GCS JSON API back end, shared by gcs_json.c (reads, deletes, listings, the store) and
 * gcs_upload.c (uploads). */
#ifndef CAIRN_OBJSTORE_GCS_H
#define CAIRN_OBJSTORE_GCS_H

#include "objstore/internal.h"

typedef struct os_gcs {
	char *objects;     /* "https://storage.googleapis.com/storage/v1/b/BUCKET/o" */
	char *uploads;     /* "https://storage.googleapis.com/upload/storage/v1/b/BUCKET/o" */
	char *prefix;      /* "" or ending in '/' */
	os_auth *token;    /* OAuth access tokens */
	os_http_auth auth; /* limits; os_gcs_exchange adds the current token to each request */
	int64_t threshold; /* objects at least this large go by resumable upload */
	int64_t chunk;     /* bytes per resumable request: a multiple of 256 KiB */
} os_gcs;

/* The URL of the object `key` (under the prefix), plus "?query" if query is not NULL. */
char *os_gcs_object_url(const os_gcs *g, const char *key, const char *query);
/* Sends h with the current access token (fetching a new one and trying once more after a 401),
 * each attempt retried up to max_retries times as retry.c says. */
cairn_status os_gcs_exchange(os_worker *w, os_http *h, const char *label, int max_retries);
/* The back end's put: one multipart request below the threshold, a resumable upload above it. */
cairn_status os_gcs_put(os_worker *w, const char *key, os_source *src, const uint8_t *sha256);

#endif
