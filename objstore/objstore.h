/*
 * objstore: object-store clients behind one small interface, for the CAS write-through and the
 * action-cache backup. Back ends: S3 (libcurl with SigV4; path-style or virtual-hosted; any
 * endpoint; multipart above a threshold; keys given, or the instance role's from EC2 instance
 * metadata), GCS through the same S3 code on its XML API when HMAC keys are given, GCS's JSON API
 * with OAuth tokens otherwise (from a service-account key file or the GCE metadata server;
 * resumable uploads above a threshold), and a local directory (tests, and single machines that
 * want a second copy on another disk).
 *
 * Calls are asynchronous: each is queued to the store's transfer threads (at most max_concurrency
 * transfers at once) and reports through its callback exactly once, on a transfer thread — except
 * when the queue is at its limit (65,536 calls, or 512 MiB of buffers copied by objstore_put): then
 * the callback runs at once, on the caller's thread, with RESOURCE_EXHAUSTED. Retries
 * with exponential backoff and jitter on 5xx, 429, timeouts and connection errors; never on other
 * 4xx. Every upload sends the body's SHA-256 (S3: x-amz-content-sha256) or MD5 (GCS JSON API:
 * md5Hash) so the store rejects corrupted bytes. objstore knows nothing about CAS or AC semantics:
 * keys are opaque strings under the prefix.
 *
 * Streamed uploads send an object part by part while its bytes are still arriving: as one PUT
 * whose body is pulled from the parts in order, when the caller knows the object's size and SHA-256
 * (the store checks the whole body against it) and it is at most 5 GiB; else, or when half the
 * transfer threads already run such PUTs, as a multipart upload (each part a call of its own,
 * retried on its own, several at once). They are optional for a back end: S3, GCS's XML API and
 * the directory have them (the GCS JSON API does not); objstore_stream_part_size says whether a
 * store does.
 */
#ifndef CAIRN_OBJSTORE_H
#define CAIRN_OBJSTORE_H

#include "common/common.h"

typedef struct objstore objstore;

typedef struct objstore_config {
	const char *url;          /* "s3://bucket/prefix", "gs://bucket/prefix" or "file:///dir/prefix" */
	const char *endpoint;     /* "http://127.0.0.1:7480"; NULL: AWS (https://s3.REGION.amazonaws.com) or GCS */
	const char *region;       /* NULL: "us-east-1" ("auto" for GCS) */
	const char *access_key;   /* NULL: AWS_ACCESS_KEY_ID */
	const char *secret_key;   /* NULL: AWS_SECRET_ACCESS_KEY */
	const char *session_token; /* NULL: AWS_SESSION_TOKEN if set */
	/* gs:// without HMAC keys: a service-account key file; NULL: GOOGLE_APPLICATION_CREDENTIALS, else
	 * the GCE metadata server */
	const char *gcs_credentials_file;
	bool path_style;          /* bucket in the path instead of the host name (needed for most local servers) */
	int max_concurrency;      /* transfers at once; 0 means 16 */
	int max_retries;          /* 0 means 5; negative means none */
	int64_t multipart_threshold; /* objects at least this large go in parts; 0 means 64 MiB (GCS JSON: 8 MiB) */
	int64_t part_size;        /* 0 means 16 MiB (GCS JSON: a multiple of 256 KiB) */
	int64_t timeout_ms;       /* per request; 0 means 300 s */
} objstore_config;

typedef struct objstore_stats {
	uint64_t puts, gets, heads, deletes, lists;
	uint64_t bytes_up, bytes_down; /* down: every byte of an object that arrived, kept or refused */
	uint64_t retries, failures;
} objstore_stats;

/* Parses the URL and credentials and starts the transfer threads. No request is made unless the
 * credentials come from a metadata service or a key file: then the first set is fetched, so that a
 * store without usable credentials fails here, saying what was tried. Logs the API and where the
 * credentials come from. */
cairn_status objstore_open(const objstore_config *cfg, objstore **out);
/* Waits for queued transfers, then frees everything. */
void objstore_close(objstore *s);
void objstore_get_stats(objstore *s, objstore_stats *out);

typedef void (*objstore_cb)(void *arg, cairn_status st);

/* Uploads a file as `key` (multipart above the threshold). sha256 of the whole file if known (CAS
 * blobs: their digest), else NULL and it is computed. */
void objstore_put_file(objstore *s, const char *key, const char *path, const uint8_t *sha256, objstore_cb cb,
                       void *arg);
/* Uploads a buffer (copied before the call returns; at most 512 MiB). */
void objstore_put(objstore *s, const char *key, const void *data, size_t len, objstore_cb cb, void *arg);
/* Downloads `key`, an object of at most max bytes, into a new file at path (written to path.part,
 * renamed when complete). NOT_FOUND if absent; OUT_OF_RANGE, with nothing left at path, if it is
 * longer: the request asks for max + 1 bytes only (a ranged GET), so a wrong object costs no more
 * than that, and no byte past max reaches the disk. sha256: NULL, or where the SHA-256 of the file's
 * bytes goes before cb hears OK (hashed as they arrive, so the file need not be read again to check
 * it). */
void objstore_get_file(objstore *s, const char *key, const char *path, int64_t max, uint8_t sha256[32],
                       objstore_cb cb, void *arg);
/* Downloads `key` (at most max bytes, asked for as a ranged GET like objstore_get_file's; a longer
 * object is RESOURCE_EXHAUSTED) into a malloc'd buffer handed to cb. */
typedef void (*objstore_data_cb)(void *arg, cairn_status st, uint8_t *data, size_t len);
void objstore_get(objstore *s, const char *key, int64_t max, objstore_data_cb cb, void *arg);
/* Size of `key`, or NOT_FOUND. */
typedef void (*objstore_head_cb)(void *arg, cairn_status st, int64_t size);
void objstore_head(objstore *s, const char *key, objstore_head_cb cb, void *arg);
void objstore_delete(objstore *s, const char *key, objstore_cb cb, void *arg);
/* Lists keys under a prefix, page by page: cb gets each page's keys (relative to the store's prefix)
 * and is called again until done. */
typedef void (*objstore_list_cb)(void *arg, cairn_status st, const char *const *keys, size_t n, bool done);
void objstore_list(objstore *s, const char *prefix, objstore_list_cb cb, void *arg);

/* ---- streamed uploads ---- */

typedef struct objstore_stream objstore_stream;

/* The part size to stream an object of `size` bytes with (the configured part size, doubled until
 * the object fits in S3's 10,000 parts), or 0 when the store cannot stream (use objstore_put_file). */
int64_t objstore_stream_part_size(objstore *s, int64_t size);
/* Starts a streamed upload of `key`, `size` bytes whose SHA-256 is sha256 (or NULL when unknown:
 * then it is a multipart upload); cb gets its handle (NULL on failure). Nothing is visible under the
 * key until objstore_stream_complete — except that a one-PUT upload's object may appear once the
 * store took all its bytes and checked them against the hash. */
typedef void (*objstore_stream_cb)(void *arg, cairn_status st, objstore_stream *up);
void objstore_stream_begin(objstore *s, const char *key, int64_t size, const uint8_t *sha256, objstore_stream_cb cb,
                           void *arg);
/* Sends data (not copied: it must stay valid until cb) as part `number`, 1 to 10,000. Parts may be
 * sent in any order and several at once; every part but the last must be at least 5 MiB (S3's rule:
 * use objstore_stream_part_size), none may be empty. Multipart: the part's SHA-256 is computed on the
 * transfer thread and sent with it, so the store checks its bytes; sending a number again (after a
 * failure) replaces it. One PUT: cb comes once the PUT took the part's bytes, which it takes in the
 * order of the numbers (part n + 1 waits for part n); if the PUT fails, every part it did not take
 * fails with it, and a part cannot be sent again. */
void objstore_stream_part(objstore_stream *up, int number, const void *data, size_t len, objstore_cb cb, void *arg);
/* Makes the object from parts 1..nparts, which must all have been sent and reported OK, and frees
 * the handle (one PUT: reports the PUT's answer once it came). When that fails, the upload is
 * aborted: the key keeps what it held before. No part may be in flight. Never refused for a full
 * queue. */
void objstore_stream_complete(objstore_stream *up, int nparts, objstore_cb cb, void *arg);
/* Drops the upload and every part it stored, and frees the handle (one PUT: stops its body, so the
 * store keeps nothing, unless it had all the bytes already). No part may be in flight. A failure (the
 * store unreachable) leaves the parts to the bucket's lifecycle rule; it is logged. Never refused for
 * a full queue. */
void objstore_stream_abort(objstore_stream *up, objstore_cb cb, void *arg);

/* Synchronous forms for threads that may block (never gRPC threads, nor an objstore callback). */
cairn_status objstore_put_file_sync(objstore *s, const char *key, const char *path, const uint8_t *sha256);
cairn_status objstore_get_file_sync(objstore *s, const char *key, const char *path, int64_t max, uint8_t sha256[32]);
cairn_status objstore_head_sync(objstore *s, const char *key, int64_t *size);

#endif
