/*
 * objstore internals, shared by its files:
 *
 *   url.c        parses the store URL and finds credentials and the base URL of the bucket
 *   encode.c     S3's percent-encoding, canonical query strings, the tiny XML reader
 *   json.c       the JSON answers of cloud APIs (tokens, credentials, GCS objects and errors), with json-c
 *   retry.c      which failures are retried, backoff with jitter, HTTP/curl results → cairn codes
 *   http.c       one HTTP exchange on a thread's curl easy handle (body sources, response sinks)
 *   exchange.c   one request sent until it succeeds or fails for good, and its failure in words
 *   auth.c       credentials cached and refreshed before they expire, shared by the transfer threads
 *   aws_imds.c   S3 credentials from the EC2 instance metadata service (IMDSv2)
 *   gcp_auth.c   OAuth tokens for GCS: a service-account key (jwt.c signs its assertion), or the GCE
 *                metadata server
 *   s3.c         the S3 back end (also GCS's XML API): PUT, GET, HEAD, DELETE, ListObjectsV2
 *   multipart.c  S3 multipart uploads: whole objects, and the steps of streamed ones
 *   gcs_json.c   the GCS JSON API back end; gcs_upload.c its uploads (multipart and resumable)
 *   dir.c        the file:// back end
 *   pool.c       the transfer threads and their bounded queue
 *   objstore.c   the public calls: jobs queued to the pool, run by a back end, reported by callback
 *   stream.c     streamed uploads: a handle per upload; one job per step of a multipart upload, or
 *                one job running the single PUT that pulls the parts as they are sent
 *
 * A back end is a table of synchronous operations run on a transfer thread (os_worker): blocking
 * there is what the threads are for. The cloud back ends retry each HTTP exchange on its own (a
 * multipart upload retries a failed part, not the whole object; a resumable one, from where the
 * server says it got to).
 */
#ifndef CAIRN_OBJSTORE_INTERNAL_H
#define CAIRN_OBJSTORE_INTERNAL_H

#include <pthread.h>
#include <sys/types.h>
#include <stdatomic.h>
#include <curl/curl.h>

#include "objstore/objstore.h"

#define OS_MOD "objstore"
#define OS_DEFAULT_CONCURRENCY 16
#define OS_DEFAULT_RETRIES 5
#define OS_DEFAULT_THRESHOLD (INT64_C(64) << 20)
#define OS_DEFAULT_PART_SIZE (INT64_C(16) << 20)
#define OS_MIN_PART_SIZE (INT64_C(5) << 20) /* S3's minimum for every part but the last */
#define OS_MAX_PARTS 10000                   /* S3's maximum part count */
#define OS_MAX_PUT (INT64_C(5) << 30)        /* S3's largest single PUT */
#define OS_DEFAULT_TIMEOUT_MS (INT64_C(300) * 1000)
/* Limits of the queue in front of the transfer threads: calls beyond them are refused with
 * RESOURCE_EXHAUSTED, so a burst of callers cannot grow memory without bound. */
#define OS_QUEUE_MAX_JOBS 65536
#define OS_QUEUE_MAX_BYTES (INT64_C(512) << 20) /* bytes copied by queued objstore_put calls */
#define OS_LIST_PAGE 1000                       /* keys per list page (S3's maximum) */
#define OS_ERR_BODY_MAX 2048                    /* bytes of an error response kept for its message */

/* ---- url.c ----------------------------------------------------------------------------------- */

enum os_kind { OS_S3, OS_GCS, OS_DIR };

typedef struct os_location {
	enum os_kind kind;
	char *bucket; /* S3, GCS: the bucket; NULL for DIR */
	char *prefix; /* S3, GCS: "" or ending in '/'. DIR: the absolute directory, no trailing '/' */
} os_location;

/* Parses "s3://bucket[/prefix]", "gs://bucket[/prefix]" or "file:///abs/dir". */
cairn_status os_parse_url(const char *url, os_location *out);
void os_location_free(os_location *l);
/* The URL requests are made against, without a trailing '/': "http://host:port/bucket" (path style)
 * or "https://bucket.host" (virtual-hosted). endpoint NULL means AWS in `region`, or GCS. */
cairn_status os_base_url(enum os_kind kind, const char *endpoint, const char *region, const char *bucket,
                         bool path_style, char **out);
/* An endpoint URL checked (http:// or https://, a host) and without its trailing '/'. */
cairn_status os_endpoint_url(const char *endpoint, char **out);

typedef struct os_credentials {
	char *access_key, *secret_key, *session_token; /* session_token may be NULL */
} os_credentials;
/* From the config, else AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN. */
cairn_status os_get_credentials(const objstore_config *cfg, os_credentials *out);
void os_credentials_free(os_credentials *c);
/* True if the config or the environment names an access key or a secret key (HMAC keys). */
bool os_keys_given(const objstore_config *cfg);

/* ---- encode.c -------------------------------------------------------------------------------- */

/* Frees a listing page's n malloc'd keys and their array. */
void os_free_keys(char **keys, size_t n);
/* sprintf into a new malloc'd string. */
char *os_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* S3's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ (and '/' if keep_slash) as %XX, upper hex. */
char *os_uri_encode(const char *s, bool keep_slash);

typedef struct os_param {
	const char *name, *value; /* value "" for a flag parameter: written "name=" */
} os_param;
/* The canonical query string SigV4 signs: parameters sorted by name (then value), names and values
 * encoded, each written "name=value" (flags too), joined by '&'. libcurl 7.88 signs the query as
 * written, so the request must carry exactly this string. "" for n == 0. */
char *os_query(const os_param *params, size_t n);

/* Finds the next <tag>…</tag> at or after *pos in xml[0..len): returns 1 with its text, entities
 * decoded, in *out (malloc'd) and *pos moved past it; 0 when there is none; -1 when it is malformed
 * (no closing tag, a bad entity). A truncated answer must not pass for a short one. */
int os_xml_next(const char *xml, size_t len, size_t *pos, const char *tag, char **out);
/* The text of the first <tag> (malloc'd), or NULL if there is none or it is malformed. */
char *os_xml_first(const char *xml, size_t len, const char *tag);

/* ---- retry.c --------------------------------------------------------------------------------- */

/* True if a request that ended with this curl result and HTTP status may succeed when sent again. */
bool os_retryable(CURLcode cc, long http);
/* Milliseconds to wait before retry number `attempt` (0 for the first): exponential from 100 ms,
 * capped at 10 s, half of it random, so clients that failed together do not retry together. */
int64_t os_backoff_ms(int attempt, uint64_t *rng);
/* The cairn code for an HTTP error status and its S3 error code (may be NULL). */
int os_code_of_http(long http, const char *s3_code);
/* The cairn code for a curl failure that no retry fixed (or that is not retried). */
int os_code_of_curl(CURLcode cc);
uint64_t os_rng_next(uint64_t *state);

/* ---- http.c ---------------------------------------------------------------------------------- */

/* A request body: a buffer, a range of a file read with pread, or bytes pulled as they arrive. */
typedef struct os_source {
	const uint8_t *mem; /* if NULL: the file fd, unless pull is set */
	int fd;
	/* If set: len bytes come from pull, in order and once, so such a body cannot be sent again (its
	 * request is never retried). pull blocks until it has bytes; it returns how many it put in buf
	 * (1 to n), or -1 when the upload was abandoned. */
	ssize_t (*pull)(void *arg, uint8_t *buf, size_t n);
	void *pull_arg;
	int64_t off, len;
	int64_t pos; /* bytes handed to curl in this attempt */
	int err;     /* errno of a failed read; ENODATA for a file that ended early (it shrank); ECANCELED
	              * for an abandoned pull */
} os_source;

enum os_sink_kind { OS_SINK_DISCARD, OS_SINK_MEM, OS_SINK_FD };

/* Where a successful response's body goes. Error bodies never reach it. */
typedef struct os_sink {
	enum os_sink_kind kind;
	int fd;        /* OS_SINK_FD: written from offset 0 */
	cairn_hasher *hasher; /* OS_SINK_FD: NULL, or hashes what is written (reset with the file) */
	int64_t max;   /* OS_SINK_MEM, OS_SINK_FD: refuse bodies longer than this; no byte past it is kept */
	uint8_t *buf;  /* OS_SINK_MEM: malloc'd, owned by the caller */
	size_t len;    /* bytes kept (both kinds) */
	size_t cap;
	bool over_max; /* the body passed max */
	int err;       /* errno of a failed write */
	uint64_t received; /* body bytes that arrived, kept or not, over every attempt: the byte counter's */
} os_sink;

/* What a request is signed and limited with: SigV4 when sigv4 is set, else a bearer token if set,
 * else nothing. */
typedef struct os_http_auth {
	const char *sigv4; /* CURLOPT_AWS_SIGV4: "aws:amz:REGION:s3" */
	const char *access_key, *secret_key;
	const char *session_token; /* or NULL */
	const char *bearer;        /* OAuth access token, sent as "Authorization: Bearer …" */
	int64_t timeout_ms;
} os_http_auth;

typedef struct os_http {
	/* request */
	const os_http_auth *auth;
	const char *method; /* GET PUT POST HEAD DELETE */
	const char *url;
	const char *payload_sha256; /* hex, sent as x-amz-content-sha256 (SigV4 only) */
	const char *content_type;   /* or NULL */
	const char *const *headers; /* more "Name: value" lines, NULL-terminated; or NULL */
	os_source *body;            /* PUT and POST; NULL for none */
	os_sink *sink;              /* NULL: discard */
	long also_ok;               /* a status besides 2xx that means success (308 for a resumable chunk), or 0 */
	const char *capture;        /* a response header whose value is wanted ("Location"), or NULL */
	/* response of the last attempt */
	CURLcode cc;
	long status;
	char curl_err[CURL_ERROR_SIZE];
	char err_body[OS_ERR_BODY_MAX + 1];
	size_t err_len;
	int64_t content_length; /* -1 if unknown */
	char etag[128];
	char *captured; /* the value of the `capture` header, or NULL: malloc'd, the caller frees it */
} os_http;

struct objstore;

/* One transfer thread. */
typedef struct os_worker {
	struct objstore *s;
	CURL *curl;   /* reused by every request of this thread, for keep-alive; NULL for DIR */
	uint64_t rng; /* for backoff jitter */
	pthread_t thread;
} os_worker;

/* One attempt: sets cc, status, err_body, content_length, etag, captured. Resets body and sink first. */
void os_http_perform(os_worker *w, os_http *h);

/* The header of a ranged GET, which lives as long as the request that points at it. */
typedef struct os_range {
	char line[48];
	const char *headers[2];
} os_range;
/* Makes h, a GET into a sink with a limit, ask for the first sink->max + 1 bytes only ("Range:
 * bytes=0-MAX"): enough to see that an object is longer than the limit without moving the rest of
 * it. A server that ignores the range sends the whole object, and the sink stops the transfer at the
 * limit. An empty object has no byte 0, and a server answers such a range with 416: here that is
 * success with an empty body (also_ok). */
void os_http_set_range(os_http *h, os_range *r);
/* Whether the attempt succeeded: curl OK and a 2xx status (or also_ok). */
static inline bool os_http_ok(const os_http *h)
{
	return h->cc == CURLE_OK && ((h->status >= 200 && h->status < 300) || (h->also_ok && h->status == h->also_ok));
}

/* ---- exchange.c ------------------------------------------------------------------------------ */

/* Reads a store's error body into its error code and message (each malloc'd, or NULL if absent). */
typedef void (*os_error_reader)(const char *body, size_t len, char **code, char **msg);

/* Sends h until it succeeds, fails in a way no retry fixes, or max_retries retries have failed;
 * returns OK or the last failure, named with label ("s3 PUT key") and read with read_error. */
cairn_status os_exchange(os_worker *w, os_http *h, const char *label, int max_retries, os_error_reader read_error);
/* After attempt number `attempt` (0 for the first) of h failed: if another may succeed and fewer
 * than max_retries retries were made, counts and logs the retry, sleeps its backoff and returns
 * true; else false. For loops that must do something between attempts (a resumable upload asks
 * the server where it got to). */
bool os_retry_pause(os_worker *w, const os_http *h, int attempt, int max_retries, const char *label);
/* "s3 PUT key" style label for messages, in buf. */
const char *os_label(const char *scheme, const char *method, const char *key, char *buf, size_t cap);
/* The failure of h's last attempt in words, with the cairn code that fits it. */
cairn_status os_failure(const os_http *h, const char *label, int attempts, os_error_reader read_error);

/* ---- auth.c ---------------------------------------------------------------------------------- */

/* One set of credentials, immutable once published: S3 keys (and session token), or an OAuth
 * access token (in `token`). Shared by reference count, so a request keeps using the set it
 * started with while another thread publishes the next. */
typedef struct os_secret {
	atomic_int refs;
	char *access_key, *secret_key;
	char *token;
	int64_t refresh_ns; /* monotonic time from which a new set is fetched; INT64_MAX: never */
	int64_t expires_ns; /* monotonic time from which this set no longer works; INT64_MAX: never */
} os_secret;

/* Fetches a new set into *out (zeroed), with os_secret_set_lifetime; runs on a transfer thread, or
 * on os_auth_prime's own handle. */
typedef cairn_status (*os_fetch_fn)(void *ctx, os_worker *w, os_secret *out);

/* A source of credentials: fixed, or fetched again before the current set expires. */
typedef struct os_auth os_auth;

/* Fixed credentials (takes the strings); `source` says where they came from, for the log. */
os_auth *os_auth_new_fixed(char *access_key, char *secret_key, char *token, const char *source);
/* Credentials from fetch (ctx freed with free_ctx); nothing is fetched until os_auth_get. */
os_auth *os_auth_new(os_fetch_fn fetch, void *ctx, void (*free_ctx)(void *), const char *source);
void os_auth_free(os_auth *a);
const char *os_auth_source(const os_auth *a);
/* A reference to the current set (release it with os_secret_release), fetching one first if there
 * is none or it is due for refresh. Threads that need one while another fetches wait for it, or
 * use the current set while it has not expired. A failed fetch is logged; the current set is
 * still used while it works, else the failure is returned. */
cairn_status os_auth_get(os_auth *a, os_worker *w, os_secret **out);
/* The store refused `seen` (401): it is not handed out again, the next os_auth_get fetches. */
void os_auth_invalidate(os_auth *a, const os_secret *seen);
void os_secret_release(os_secret *s);
/* Sets refresh and expiry from a lifetime in seconds counted from now: refreshed at three
 * quarters of it, or five minutes before the end if that is later. */
void os_secret_set_lifetime(os_secret *s, int64_t seconds);
/* Fetches the first set at once on a curl handle of its own, so that a store opened without
 * usable credentials fails at start with the reason. */
cairn_status os_auth_prime(os_auth *a, struct objstore *s);
/* Metadata services (EC2's, GCE's) are on the host's own network: an answer that takes longer is
 * not coming, and a host where none answers fails its start within seconds. */
#define OS_METADATA_TIMEOUT_MS 5000
/* Retries of a metadata request: the store's, at most two. */
int os_metadata_retries(const os_worker *w);

/* ---- json.c ---------------------------------------------------------------------------------- */

/* An OAuth 2.0 token answer (service-account grant, GCE metadata server):
 * {"access_token": "…", "expires_in": 3599, "token_type": "Bearer"}. */
cairn_status os_json_token(const char *body, size_t len, char **token, int64_t *expires_in);
/* EC2 instance-metadata role credentials: {"Code": "Success", "AccessKeyId": …, "SecretAccessKey":
 * …, "Token": …, "Expiration": "2026-01-02T03:04:05Z"}; *expiration in seconds since the epoch. */
cairn_status os_json_aws_credentials(const char *body, size_t len, os_secret *out, int64_t *expiration);
/* The error of a Google API, {"error": {"code": 400, "message": …, "errors": [{"reason": …}]}},
 * or of an OAuth endpoint, {"error": "invalid_grant", "error_description": …}; of a body that is
 * not JSON (metadata services answer in text), its first line. An os_error_reader. */
void os_json_google_error(const char *body, size_t len, char **code, char **msg);
/* A GCS objects.list page: the names under `prefix` with the prefix cut (a malloc'd array of
 * malloc'd strings), and nextPageToken (NULL on the last page). */
cairn_status os_json_gcs_list(const char *body, size_t len, const char *prefix, char ***names, size_t *n,
                              char **next);
/* The "size" of a GCS object resource (a decimal string in the JSON API). */
cairn_status os_json_gcs_size(const char *body, size_t len, int64_t *size);
/* The fields cairn uses from a Google service-account key file (malloc'd; token_uri and key_id may
 * be NULL). The message of a failure says what is wrong with the file, without naming it. */
typedef struct os_sa_key_fields {
	char *email, *pem, *token_uri, *key_id;
} os_sa_key_fields;
cairn_status os_json_sa_key(const char *body, size_t len, os_sa_key_fields *out);

/* ---- jwt.c ----------------------------------------------------------------------------------- */

/* Base64 of p[0..n): the standard alphabet with padding, or base64url without padding. */
char *os_base64(const uint8_t *p, size_t n, bool url);

/* A Google service-account key file. */
typedef struct os_sa_key {
	char *email, *token_uri, *key_id; /* key_id may be NULL */
	struct evp_pkey_st *pkey;         /* the RSA private key */
} os_sa_key;
/* Parses the JSON of a key file ({"type": "service_account", "client_email", "private_key" (PEM),
 * "token_uri", "private_key_id"}); `what` names it in messages. */
cairn_status os_sa_key_parse(const char *json, size_t len, const char *what, os_sa_key *out);
cairn_status os_sa_key_load(const char *path, os_sa_key *out);
void os_sa_key_free(os_sa_key *k);
/* The signed JWT (RS256) asserting the key's identity to its token_uri for `scope`, valid for an
 * hour from `now` (seconds since the epoch). */
cairn_status os_jwt_assertion(const os_sa_key *k, const char *scope, int64_t now, char **out);

/* ---- gcp_auth.c, aws_imds.c ------------------------------------------------------------------ */

/* The OAuth token source of the GCS JSON API: cfg's key file, else GOOGLE_APPLICATION_CREDENTIALS,
 * else the GCE metadata server (its host from GCE_METADATA_HOST if set). Its first token is
 * fetched now (os_auth_prime): a failure says what was tried. */
cairn_status os_gcp_auth_new(const objstore_config *cfg, objstore *s, os_auth **out);
/* S3 credentials from the EC2 instance metadata service, IMDSv2 (its URL from
 * AWS_EC2_METADATA_SERVICE_ENDPOINT if set); NULL in *out when AWS_EC2_METADATA_DISABLED is true. */
void os_aws_imds_auth_new(os_auth **out);

/* ---- back ends --------------------------------------------------------------------------------- */

/* Receives a page of keys, relative to the store prefix. */
typedef void (*os_page_fn)(void *arg, const char *const *keys, size_t n, bool done);
/* A listing under way: what its pages share. */
typedef struct os_listing {
	char *full;      /* malloc'd: the store prefix and the caller's */
	char label[128]; /* names the listing in errors */
	os_sink page;    /* OS_SINK_MEM: each page's answer */
} os_listing;
/* One page of a listing: the keys (without the store prefix) of the page that `token` names (NULL:
 * the first) and, in *next, the token of the page after it (NULL after the last). */
typedef cairn_status (*os_page_get)(os_worker *w, os_listing *l, const char *token, char ***keys, size_t *n,
                                    char **next);
/* Runs a listing page by page through get, handing each page to fn, until the last or a failure;
 * then frees what l holds. */
cairn_status os_list_pages(os_worker *w, os_page_get get, os_listing *l, os_page_fn fn, void *arg);

typedef struct os_backend_ops {
	/* src holds the whole object; sha256 is its hash if the caller knows it, else NULL. A known hash
	 * is checked against the bytes (by the server for S3): a mismatch is DATA_LOSS and stores
	 * nothing. A pulled src (streamed as one PUT) comes with its sha256 and goes
	 * up as one request, whatever its size (at most OS_MAX_PUT). */
	cairn_status (*put)(os_worker *w, const char *key, os_source *src, const uint8_t *sha256);
	/* Writes the object into sink (an fd from offset 0, or memory); NOT_FOUND if absent. An object
	 * longer than sink->max fails with over_max set, after at most sink->max + 1 of its bytes were
	 * read (the request asks for no more); what arrived is added to sink->received either way. */
	cairn_status (*get)(os_worker *w, const char *key, os_sink *sink);
	cairn_status (*head)(os_worker *w, const char *key, int64_t *size);
	/* Deleting an absent key is OK, as in S3. */
	cairn_status (*del)(os_worker *w, const char *key);
	/* Calls fn for each page; the last call has done == true. On failure returns it (fn is not
	 * called with done then). */
	cairn_status (*list)(os_worker *w, const char *prefix, os_page_fn fn, void *arg);
	/* Streamed uploads; optional (all four NULL: the back end cannot stream). begin returns the
	 * upload's id (malloc'd); part stores src as part `number` (storing a number again replaces it)
	 * and returns its ETag (malloc'd); complete makes the object from parts 1..n, given their ETags;
	 * abort drops the upload and its parts (an upload that is gone already is OK). */
	cairn_status (*stream_begin)(os_worker *w, const char *key, char **id);
	cairn_status (*stream_part)(os_worker *w, const char *key, const char *id, int number, os_source *src,
	                            char **etag);
	cairn_status (*stream_complete)(os_worker *w, const char *key, const char *id, char *const *etags, int n);
	cairn_status (*stream_abort)(os_worker *w, const char *key, const char *id);
	void (*free)(void *be);
} os_backend_ops;

cairn_status os_s3_open(const objstore_config *cfg, const os_location *loc, objstore *s, void **be);
extern const os_backend_ops os_s3_ops;
cairn_status os_gcs_open(const objstore_config *cfg, const os_location *loc, objstore *s, void **be);
extern const os_backend_ops os_gcs_ops;
cairn_status os_dir_open(const os_location *loc, void **be);
extern const os_backend_ops os_dir_ops;

/* s3.c, for multipart.c */
typedef struct os_s3 {
	const char *scheme; /* "s3" or "gs", for messages */
	char *base_url;     /* no trailing '/' */
	char *prefix;       /* "" or ending in '/' */
	char *sigv4;
	os_auth *keys;     /* fixed, or from EC2 instance metadata */
	os_http_auth auth; /* without keys: os_s3_exchange adds the current ones to each request */
	int64_t threshold; /* objects at least this large go in parts (of the store's part_size) */
} os_s3;
/* "s3 PUT key" style label for messages: writes into buf. */
const char *os_s3_label(const os_s3 *b, const char *method, const char *key, char *buf, size_t cap);
/* The object URL (base + encoded prefix + key), plus "?query" if query is not NULL or "". */
char *os_s3_url(const os_s3 *b, const char *key, const char *query);
/* Sends h with the current keys, retrying as configured; returns OK for a 2xx, else the mapped error. */
cairn_status os_s3_exchange(os_worker *w, os_http *h, const char *label);
cairn_status os_s3_multipart(os_worker *w, const os_s3 *b, const char *key, os_source *src, const uint8_t *sha256);
bool os_s3_wants_multipart(const os_s3 *b, int64_t size);
/* multipart.c: the S3 back end's streaming operations */
cairn_status os_s3_stream_begin(os_worker *w, const char *key, char **id);
cairn_status os_s3_stream_part(os_worker *w, const char *key, const char *id, int number, os_source *src,
                               char **etag);
cairn_status os_s3_stream_complete(os_worker *w, const char *key, const char *id, char *const *etags, int n);
cairn_status os_s3_stream_abort(os_worker *w, const char *key, const char *id);
/* The part size for an object of `size` bytes: part_size, doubled until the object fits in S3's
 * 10,000 parts. */
int64_t os_part_size_for(int64_t part_size, int64_t size);

/* ---- the store and its pool ------------------------------------------------------------------ */

/* The STREAM_* kinds come last: os_job_run hands every kind from OS_JOB_STREAM_BEGIN on to stream.c. */
enum os_job_kind { OS_JOB_PUT_FILE, OS_JOB_PUT_MEM, OS_JOB_GET_FILE, OS_JOB_GET_MEM, OS_JOB_HEAD, OS_JOB_DELETE,
	           OS_JOB_LIST, OS_JOB_STREAM_BEGIN, OS_JOB_STREAM_PUT, OS_JOB_STREAM_PART, OS_JOB_STREAM_COMPLETE,
	           OS_JOB_STREAM_ABORT };

typedef struct os_job {
	struct os_job *next;
	enum os_job_kind kind;
	char *key;  /* or the list prefix */
	char *path; /* PUT_FILE, GET_FILE */
	uint8_t *data; /* PUT_MEM: a copy of the caller's bytes */
	size_t len;    /* of data, or of part_data */
	objstore_stream *stream;  /* STREAM_PUT, _PART, _COMPLETE, _ABORT */
	int part;                 /* STREAM_PART: its number; STREAM_COMPLETE: the number of parts */
	const uint8_t *part_data; /* STREAM_PART: the caller's buffer, valid until the callback */
	int64_t max; /* GET_MEM, GET_FILE: the most bytes the object may have */
	uint8_t *sha_out; /* GET_FILE: the caller's, for the SHA-256 of the file, or NULL */
	bool has_sha;
	uint8_t sha256[32];
	union {
		objstore_cb done;
		objstore_data_cb data;
		objstore_head_cb head;
		objstore_list_cb list;
		objstore_stream_cb stream;
	} cb;
	void *arg;
} os_job;

struct objstore {
	const os_backend_ops *ops;
	void *be;
	const char *scheme; /* "s3", "gs", "file": for messages */
	int max_retries;
	int64_t part_size;  /* of multipart and streamed uploads, before os_part_size_for */
	int64_t timeout_ms;
	/* pool.c */
	pthread_mutex_t mu;
	pthread_cond_t cv_work; /* a job was queued, or closing */
	os_job *head, *tail;
	size_t queued_jobs;
	int64_t queued_bytes;
	bool closing;
	os_worker *workers;
	int nworkers;
	atomic_int stream_puts; /* streamed uploads sent as one PUT now, each holding a transfer thread */
	/* counters, read by objstore_get_stats while transfers run */
	_Atomic uint64_t puts, gets, heads, deletes, lists, bytes_up, bytes_down, retries, failures;
};

/* Starts n transfer threads, each with its own curl easy handle if with_curl. */
cairn_status os_pool_start(objstore *s, int n, bool with_curl);
/* Queues a job; false (job untouched) when the queue is at its limits. */
bool os_pool_submit(objstore *s, os_job *job);
/* Runs every queued job, then joins the threads. */
void os_pool_stop(objstore *s);
/* The same when only the first `started` threads were started (a failed os_pool_start). */
void os_pool_stop_started(objstore *s, int started);
/* True when called on one of s's transfer threads. */
bool os_pool_on_worker(objstore *s);
/* objstore.c: runs one job on a transfer thread, reports it and frees it. */
void os_job_run(os_worker *w, os_job *job);
/* A new job for key (copied), reporting to arg. */
os_job *os_new_job(enum os_job_kind kind, const char *key, void *arg);
/* Queues j, or refuses it (os_refuse). */
void os_submit(objstore *s, os_job *j);
/* Reports a job the queue did not take with RESOURCE_EXHAUSTED, on this thread, and frees it. */
void os_refuse(objstore *s, os_job *j);
/* An empty key, or one longer than S3 allows, is INVALID_ARGUMENT. */
cairn_status os_check_key(const objstore *s, const char *key);
/* Counts a failure (NOT_FOUND is an answer, not a failure). */
void os_count(objstore *s, const cairn_status *st);
/* stream.c: runs a STREAM_* job and reports it (the caller frees the job). */
void os_stream_run(os_worker *w, os_job *j);
void os_job_free(os_job *j);

/* Reads src's range into h (and also into h2 unless NULL). */
cairn_status os_source_hash(const os_source *src, cairn_hasher *h, cairn_hasher *h2);
/* Reads src's range, handing it to fn piece by piece. */
typedef void (*os_scan_fn)(void *arg, const uint8_t *p, size_t n);
cairn_status os_source_scan(const os_source *src, os_scan_fn fn, void *arg);

#endif
