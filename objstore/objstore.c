/* The public calls: each becomes a job on the transfer threads' queue, run there by the back end
 * and reported by its callback. A call the queue cannot take (it is at its limit) is reported at
 * once, on the caller's thread, with RESOURCE_EXHAUSTED. */
#include "objstore/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OS_MAX_KEY 1024 /* S3's limit on a whole key, prefix included */

/* libcurl's own process-wide initialisation, which must run once before any thread uses libcurl:
 * the one piece of global state objstore touches, and libcurl's rather than ours. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;
static void curl_init(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

static int or_default(int v, int def) { return v > 0 ? v : def; }

static cairn_status open_backend(const objstore_config *cfg, const os_location *loc, objstore *s)
{
	if (loc->kind == OS_DIR) {
		s->ops = &os_dir_ops;
		s->scheme = "file";
		return os_dir_open(loc, &s->be);
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK)
		return cairn_err(CAIRN_INTERNAL, "objstore: curl_global_init: %s", curl_easy_strerror(curl_init_result));
	/* gs:// with HMAC keys speaks GCS's XML API through the S3 code; without, the JSON API. */
	if (loc->kind == OS_GCS && !os_keys_given(cfg)) {
		s->ops = &os_gcs_ops;
		s->scheme = "gs";
		return os_gcs_open(cfg, loc, s, &s->be);
	}
	s->ops = &os_s3_ops;
	s->scheme = loc->kind == OS_GCS ? "gs" : "s3";
	return os_s3_open(cfg, loc, s, &s->be);
}

cairn_status objstore_open(const objstore_config *cfg, objstore **out)
{
	*out = NULL;
	if (cfg->max_concurrency < 0 || cfg->max_concurrency > 1024)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "objstore: max_concurrency %d is not in 0..1024", cfg->max_concurrency);
	os_location loc;
	cairn_status st = os_parse_url(cfg->url, &loc);
	if (!cairn_is_ok(&st))
		return st;
	objstore *s = cairn_xcalloc(1, sizeof *s);
	/* A negative max_retries means none: 0 already means the default. */
	s->max_retries = cfg->max_retries < 0 ? 0 : or_default(cfg->max_retries, OS_DEFAULT_RETRIES);
	s->part_size = cfg->part_size > 0 ? cfg->part_size : OS_DEFAULT_PART_SIZE;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv_work, NULL);
	st = open_backend(cfg, &loc, s);
	if (cairn_is_ok(&st)) {
		st = os_pool_start(s, or_default(cfg->max_concurrency, OS_DEFAULT_CONCURRENCY), loc.kind != OS_DIR);
		if (!cairn_is_ok(&st))
			s->ops->free(s->be);
	}
	os_location_free(&loc);
	if (!cairn_is_ok(&st)) {
		pthread_cond_destroy(&s->cv_work);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return st;
	}
	*out = s;
	return cairn_ok();
}

void objstore_close(objstore *s)
{
	if (!s)
		return;
	assert(!os_pool_on_worker(s)); /* a callback cannot wait for its own thread */
	os_pool_stop(s);
	assert(!s->head && s->queued_jobs == 0 && s->queued_bytes == 0);
	s->ops->free(s->be);
	pthread_cond_destroy(&s->cv_work);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void objstore_get_stats(objstore *s, objstore_stats *out)
{
	*out = (objstore_stats){
		.puts = atomic_load(&s->puts),
		.gets = atomic_load(&s->gets),
		.heads = atomic_load(&s->heads),
		.deletes = atomic_load(&s->deletes),
		.lists = atomic_load(&s->lists),
		.bytes_up = atomic_load(&s->bytes_up),
		.bytes_down = atomic_load(&s->bytes_down),
		.retries = atomic_load(&s->retries),
		.failures = atomic_load(&s->failures),
	};
}

/* ---- running a job on a transfer thread --------------------------------------------------------- */

void os_job_free(os_job *j)
{
	free(j->key);
	free(j->path);
	free(j->data);
	free(j);
}

cairn_status os_check_key(const objstore *s, const char *key)
{
	size_t n = strlen(key);
	/* An empty key would address the bucket itself: a PUT there creates a bucket. */
	if (n == 0 || n > OS_MAX_KEY)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s: a key of %zu bytes (1 to %d)", s->scheme, n, OS_MAX_KEY);
	return cairn_ok();
}

static cairn_status run_put_file(os_worker *w, os_job *j)
{
	int fd = open(j->path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0) {
		cairn_status st = cairn_errno(errno, "%s PUT %.100s: opening %s", w->s->scheme, j->key, j->path);
		if (fd >= 0)
			close(fd);
		return st;
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s PUT %.100s: %s is not a regular file", w->s->scheme, j->key,
		                 j->path);
	}
	os_source src = {.fd = fd, .len = sb.st_size};
	cairn_status st = w->s->ops->put(w, j->key, &src, j->has_sha ? j->sha256 : NULL);
	close(fd);
	return st;
}

static cairn_status run_get_file(os_worker *w, os_job *j)
{
	char *part = os_asprintf("%s.part", j->path);
	int fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		cairn_status st = cairn_errno(errno, "%s GET %.100s: creating %s", w->s->scheme, j->key, part);
		free(part);
		return st;
	}
	os_sink sink = {.kind = OS_SINK_FD, .fd = fd, .hasher = j->sha_out ? cairn_hasher_new() : NULL, .max = j->max};
	cairn_status st = w->s->ops->get(w, j->key, &sink);
	atomic_fetch_add(&w->s->bytes_down, sink.received);
	if (sink.over_max)
		st = cairn_err(CAIRN_OUT_OF_RANGE, "%s GET %.100s: the object is longer than the %lld bytes asked for",
		               w->s->scheme, j->key, (long long)j->max);
	if (sink.hasher) {
		cairn_hasher_final(sink.hasher, j->sha_out);
		cairn_hasher_free(sink.hasher);
	}
	if (close(fd) != 0 && cairn_is_ok(&st))
		st = cairn_errno(errno, "%s GET %.100s: writing %s", w->s->scheme, j->key, part);
	if (cairn_is_ok(&st) && rename(part, j->path) != 0)
		st = cairn_errno(errno, "%s GET %.100s: renaming %s", w->s->scheme, j->key, part);
	if (!cairn_is_ok(&st))
		unlink(part);
	free(part);
	return st;
}

static void report_page(void *arg, const char *const *keys, size_t n, bool done)
{
	os_job *j = arg;
	j->cb.list(j->arg, cairn_ok(), keys, n, done);
}

void os_count(objstore *s, const cairn_status *st)
{
	if (!cairn_is_ok(st) && st->code != CAIRN_NOT_FOUND)
		atomic_fetch_add(&s->failures, 1);
}

cairn_status os_list_pages(os_worker *w, os_page_get get, os_listing *l, os_page_fn fn, void *arg)
{
	char *token = NULL;
	cairn_status st;
	do {
		char **keys = NULL, *next = NULL;
		size_t n = 0;
		st = get(w, l, token, &keys, &n, &next);
		free(token);
		token = next;
		if (cairn_is_ok(&st))
			fn(arg, (const char *const *)keys, n, token == NULL);
		os_free_keys(keys, n);
	} while (cairn_is_ok(&st) && token);
	free(token);
	free(l->page.buf);
	free(l->full);
	return st;
}

/* The kinds that report through objstore_cb. */
static cairn_status run_simple(os_worker *w, os_job *j)
{
	objstore *s = w->s;
	switch (j->kind) {
	case OS_JOB_PUT_FILE:
		atomic_fetch_add(&s->puts, 1);
		return run_put_file(w, j);
	case OS_JOB_PUT_MEM: {
		atomic_fetch_add(&s->puts, 1);
		os_source src = {.mem = j->data ? j->data : (const uint8_t *)"", .len = (int64_t)j->len};
		return s->ops->put(w, j->key, &src, j->has_sha ? j->sha256 : NULL);
	}
	case OS_JOB_GET_FILE:
		atomic_fetch_add(&s->gets, 1);
		return run_get_file(w, j);
	case OS_JOB_DELETE:
		atomic_fetch_add(&s->deletes, 1);
		return s->ops->del(w, j->key);
	default:
		assert(!"not a simple job");
		return cairn_err(CAIRN_INTERNAL, "objstore: bad job kind %d", (int)j->kind);
	}
}

void os_job_run(os_worker *w, os_job *j)
{
	objstore *s = w->s;
	if (j->kind >= OS_JOB_STREAM_BEGIN) {
		os_stream_run(w, j);
		os_job_free(j);
		return;
	}
	cairn_status st = j->kind == OS_JOB_LIST ? cairn_ok() : os_check_key(s, j->key);
	if (cairn_is_ok(&st) && (j->kind == OS_JOB_GET_MEM || j->kind == OS_JOB_GET_FILE) && j->max < 0)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "%s GET %.100s: a negative size limit", s->scheme, j->key);
	if (j->kind == OS_JOB_GET_MEM) {
		atomic_fetch_add(&s->gets, 1);
		os_sink sink = {.kind = OS_SINK_MEM, .max = j->max};
		if (cairn_is_ok(&st))
			st = s->ops->get(w, j->key, &sink);
		atomic_fetch_add(&s->bytes_down, sink.received);
		os_count(s, &st);
		if (!cairn_is_ok(&st)) {
			free(sink.buf);
			sink = (os_sink){0};
		} else if (!sink.buf) {
			sink.buf = cairn_xmalloc(1); /* an empty object is still a buffer the callback frees */
		}
		j->cb.data(j->arg, st, sink.buf, sink.len);
	} else if (j->kind == OS_JOB_HEAD) {
		atomic_fetch_add(&s->heads, 1);
		int64_t size = -1;
		if (cairn_is_ok(&st))
			st = s->ops->head(w, j->key, &size);
		os_count(s, &st);
		j->cb.head(j->arg, st, cairn_is_ok(&st) ? size : -1);
	} else if (j->kind == OS_JOB_LIST) {
		atomic_fetch_add(&s->lists, 1);
		st = s->ops->list(w, j->key, report_page, j);
		os_count(s, &st);
		if (!cairn_is_ok(&st))
			j->cb.list(j->arg, st, NULL, 0, true);
	} else {
		if (cairn_is_ok(&st))
			st = run_simple(w, j);
		os_count(s, &st);
		j->cb.done(j->arg, st);
	}
	os_job_free(j);
}

/* ---- queueing -------------------------------------------------------------------------------------- */

os_job *os_new_job(enum os_job_kind kind, const char *key, void *arg)
{
	assert(key);
	os_job *j = cairn_xcalloc(1, sizeof *j);
	j->kind = kind;
	j->key = cairn_xstrdup(key);
	j->arg = arg;
	return j;
}

static cairn_status queue_full(objstore *s)
{
	return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "%s: the transfer queue is full (%d calls or %lld MiB waiting)",
	                 s->scheme, OS_QUEUE_MAX_JOBS, (long long)(OS_QUEUE_MAX_BYTES >> 20));
}

void os_submit(objstore *s, os_job *j)
{
	if (!os_pool_submit(s, j))
		os_refuse(s, j);
}

void os_refuse(objstore *s, os_job *j)
{
	cairn_status st = queue_full(s);
	atomic_fetch_add(&s->failures, 1);
	switch (j->kind) {
	case OS_JOB_GET_MEM:
		j->cb.data(j->arg, st, NULL, 0);
		break;
	case OS_JOB_HEAD:
		j->cb.head(j->arg, st, -1);
		break;
	case OS_JOB_LIST:
		j->cb.list(j->arg, st, NULL, 0, true);
		break;
	case OS_JOB_STREAM_BEGIN:
	case OS_JOB_STREAM_PUT:
		j->cb.stream(j->arg, st, NULL);
		break;
	default:
		j->cb.done(j->arg, st);
	}
	os_job_free(j);
}

void objstore_put_file(objstore *s, const char *key, const char *path, const uint8_t *sha256, objstore_cb cb,
                       void *arg)
{
	os_job *j = os_new_job(OS_JOB_PUT_FILE, key, arg);
	j->path = cairn_xstrdup(path);
	j->has_sha = sha256 != NULL;
	if (sha256)
		memcpy(j->sha256, sha256, 32);
	j->cb.done = cb;
	os_submit(s, j);
}

void objstore_put(objstore *s, const char *key, const void *data, size_t len, objstore_cb cb, void *arg)
{
	if (len > (size_t)OS_QUEUE_MAX_BYTES) { /* could never fit the queue: refused before copying */
		atomic_fetch_add(&s->failures, 1);
		cb(arg, cairn_err(CAIRN_RESOURCE_EXHAUSTED, "%s PUT %.100s: %zu bytes is more than a buffered put takes",
		                  s->scheme, key, len));
		return;
	}
	os_job *j = os_new_job(OS_JOB_PUT_MEM, key, arg);
	j->data = len ? memcpy(cairn_xmalloc(len), data, len) : NULL;
	j->len = len;
	/* No hash here: the back end computes it on its transfer thread, off the caller's. */
	j->cb.done = cb;
	os_submit(s, j);
}

void objstore_get_file(objstore *s, const char *key, const char *path, int64_t max, uint8_t sha256[32],
                       objstore_cb cb, void *arg)
{
	os_job *j = os_new_job(OS_JOB_GET_FILE, key, arg);
	j->path = cairn_xstrdup(path);
	j->max = max;
	j->sha_out = sha256;
	j->cb.done = cb;
	os_submit(s, j);
}

void objstore_get(objstore *s, const char *key, int64_t max, objstore_data_cb cb, void *arg)
{
	os_job *j = os_new_job(OS_JOB_GET_MEM, key, arg);
	j->max = max;
	j->cb.data = cb;
	os_submit(s, j);
}

void objstore_head(objstore *s, const char *key, objstore_head_cb cb, void *arg)
{
	os_job *j = os_new_job(OS_JOB_HEAD, key, arg);
	j->cb.head = cb;
	os_submit(s, j);
}

void objstore_delete(objstore *s, const char *key, objstore_cb cb, void *arg)
{
	os_job *j = os_new_job(OS_JOB_DELETE, key, arg);
	j->cb.done = cb;
	os_submit(s, j);
}

void objstore_list(objstore *s, const char *prefix, objstore_list_cb cb, void *arg)
{
	os_job *j = os_new_job(OS_JOB_LIST, prefix ? prefix : "", arg);
	j->cb.list = cb;
	os_submit(s, j);
}

/* ---- synchronous forms ------------------------------------------------------------------------------ */

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	cairn_status st;
	int64_t size;
} waiter;

static void waiter_init(objstore *s, waiter *w)
{
	/* A transfer thread waiting on its own pool could wait forever. */
	assert(!os_pool_on_worker(s));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->done = false;
	w->size = -1;
}

static cairn_status waiter_wait(waiter *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	return w->st;
}

static void wake(void *arg, cairn_status st)
{
	waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->st = st;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void wake_head(void *arg, cairn_status st, int64_t size)
{
	waiter *w = arg;
	w->size = size; /* published by the mutex in wake */
	wake(arg, st);
}

cairn_status objstore_put_file_sync(objstore *s, const char *key, const char *path, const uint8_t *sha256)
{
	waiter w;
	waiter_init(s, &w);
	objstore_put_file(s, key, path, sha256, wake, &w);
	return waiter_wait(&w);
}

cairn_status objstore_get_file_sync(objstore *s, const char *key, const char *path, int64_t max, uint8_t sha256[32])
{
	waiter w;
	waiter_init(s, &w);
	objstore_get_file(s, key, path, max, sha256, wake, &w);
	return waiter_wait(&w);
}

cairn_status objstore_head_sync(objstore *s, const char *key, int64_t *size)
{
	waiter w;
	waiter_init(s, &w);
	objstore_head(s, key, wake_head, &w);
	cairn_status st = waiter_wait(&w);
	*size = w.size;
	return st;
}
