/* The GCS JSON API back end, for gs:// stores without HMAC keys: OAuth access tokens (gcp_auth.c)
 * instead of SigV4.
 *
 *   get     GET  …/storage/v1/b/BUCKET/o/NAME?alt=media        (ranged: the limit plus one byte at most)
 *   head    GET  …/storage/v1/b/BUCKET/o/NAME?fields=size      ("size" is a decimal string)
 *   delete  DELETE …/storage/v1/b/BUCKET/o/NAME                (404 counts as done, as in S3)
 *   list    GET  …/storage/v1/b/BUCKET/o?prefix=…&pageToken=…  (items[].name, nextPageToken)
 *   put     gcs_upload.c
 *
 * NAME is the whole object name with every reserved byte percent-encoded, '/' too. Each request
 * carries the current token; a 401 gets a new token and one more try (a token can be revoked before
 * it expires). Errors are Google's JSON bodies, {"error": {"code", "message", "errors": [{"reason"}]}}. */
#include "objstore/gcs.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GCS_DEFAULT_BASE "https://storage.googleapis.com"
#define GCS_ANSWER_MAX (64 << 20) /* a list page of 1,000 names, or an object resource */
#define GCS_DEFAULT_THRESHOLD (INT64_C(8) << 20)
#define GCS_MAX_THRESHOLD (INT64_C(64) << 20) /* a smaller object is sent from memory */
#define GCS_CHUNK_UNIT (INT64_C(256) << 10)   /* resumable chunks are multiples of 256 KiB */

char *os_gcs_object_url(const os_gcs *g, const char *key, const char *query)
{
	char *name = os_asprintf("%s%s", g->prefix, key);
	char *enc = os_uri_encode(name, false);
	char *url = os_asprintf("%s/%s%s%s", g->objects, enc, query ? "?" : "", query ? query : "");
	free(enc);
	free(name);
	return url;
}

cairn_status os_gcs_exchange(os_worker *w, os_http *h, const char *label, int max_retries)
{
	const os_gcs *g = w->s->be;
	for (bool renewed = false;; renewed = true) {
		os_secret *t;
		cairn_status st = os_auth_get(g->token, w, &t);
		if (!cairn_is_ok(&st))
			return cairn_err(st.code, "%s: %s", label, st.msg);
		os_http_auth a = g->auth;
		a.bearer = t->token;
		h->auth = &a;
		st = os_exchange(w, h, label, max_retries, os_json_google_error);
		h->auth = &g->auth;
		bool refused = h->cc == CURLE_OK && h->status == 401 && !renewed;
		if (refused) {
			LOG_INFO(OS_MOD, "%s: the access token was refused (401); fetching a new one", label);
			os_auth_invalidate(g->token, t);
		}
		os_secret_release(t);
		if (!refused)
			return st;
	}
}

static cairn_status gcs_get(os_worker *w, const char *key, os_sink *sink)
{
	const os_gcs *g = w->s->be;
	char label[128];
	char *url = os_gcs_object_url(g, key, "alt=media");
	os_http h = {.auth = &g->auth, .method = "GET", .url = url, .sink = sink};
	os_range r;
	os_http_set_range(&h, &r);
	cairn_status st = os_gcs_exchange(w, &h, os_label("gs", "GET", key, label, sizeof label), w->s->max_retries);
	free(url);
	return st;
}

static cairn_status gcs_head(os_worker *w, const char *key, int64_t *size)
{
	const os_gcs *g = w->s->be;
	char label[128];
	char *url = os_gcs_object_url(g, key, "fields=size");
	os_sink answer = {.kind = OS_SINK_MEM, .max = 1 << 20};
	os_http h = {.auth = &g->auth, .method = "GET", .url = url, .sink = &answer};
	cairn_status st = os_gcs_exchange(w, &h, os_label("gs", "HEAD", key, label, sizeof label), w->s->max_retries);
	*size = -1;
	if (cairn_is_ok(&st)) {
		st = os_json_gcs_size((const char *)answer.buf, answer.len, size);
		if (!cairn_is_ok(&st))
			st = cairn_err(st.code, "%s: %s", label, st.msg);
	}
	free(answer.buf);
	free(url);
	return st;
}

static cairn_status gcs_del(os_worker *w, const char *key)
{
	const os_gcs *g = w->s->be;
	char label[128];
	char *url = os_gcs_object_url(g, key, NULL);
	os_http h = {.auth = &g->auth, .method = "DELETE", .url = url};
	cairn_status st = os_gcs_exchange(w, &h, os_label("gs", "DELETE", key, label, sizeof label), w->s->max_retries);
	free(url);
	if (st.code == CAIRN_NOT_FOUND && h.cc == CURLE_OK && h.status == 404)
		st = cairn_ok();
	return st;
}

static cairn_status gcs_page(os_worker *w, os_listing *l, const char *token, char ***names, size_t *n, char **next)
{
	const os_gcs *g = w->s->be;
	/* Only the names: a full object resource is about a kilobyte each. */
	os_param p[3] = {{"fields", "items(name),nextPageToken"}, {"prefix", l->full}, {"pageToken", token}};
	char *q = os_query(p, token ? 3 : 2), *url = os_asprintf("%s?%s", g->objects, q);
	os_http h = {.auth = &g->auth, .method = "GET", .url = url, .sink = &l->page};
	cairn_status st = os_gcs_exchange(w, &h, l->label, w->s->max_retries);
	free(url);
	free(q);
	if (!cairn_is_ok(&st))
		return st;
	st = os_json_gcs_list((const char *)l->page.buf, l->page.len, g->prefix, names, n, next);
	return cairn_is_ok(&st) ? st : cairn_err(st.code, "%s: %s", l->label, st.msg);
}

static cairn_status gcs_list(os_worker *w, const char *prefix, os_page_fn fn, void *arg)
{
	const os_gcs *g = w->s->be;
	os_listing l = {.full = os_asprintf("%s%s", g->prefix, prefix), .page = {.kind = OS_SINK_MEM, .max = GCS_ANSWER_MAX}};
	os_label("gs", "LIST", l.full, l.label, sizeof l.label);
	return os_list_pages(w, gcs_page, &l, fn, arg);
}

static void gcs_free(void *be)
{
	os_gcs *g = be;
	free(g->objects);
	free(g->uploads);
	free(g->prefix);
	os_auth_free(g->token);
	free(g);
}

static cairn_status check_sizes(const objstore_config *cfg, os_gcs *g)
{
	g->threshold = cfg->multipart_threshold > 0 ? cfg->multipart_threshold : GCS_DEFAULT_THRESHOLD;
	g->chunk = cfg->part_size > 0 ? cfg->part_size : OS_DEFAULT_PART_SIZE;
	if (g->threshold > GCS_MAX_THRESHOLD)
		return cairn_err(CAIRN_INVALID_ARGUMENT,
		                 "GCS JSON API: a threshold of %lld bytes for resumable uploads is over %lld (smaller objects "
		                 "are sent from memory)",
		                 (long long)g->threshold, (long long)GCS_MAX_THRESHOLD);
	if (g->chunk % GCS_CHUNK_UNIT != 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "GCS JSON API: the chunk size %lld is not a multiple of 256 KiB",
		                 (long long)g->chunk);
	return cairn_ok();
}

cairn_status os_gcs_open(const objstore_config *cfg, const os_location *loc, objstore *s, void **be)
{
	assert(loc->kind == OS_GCS);
	os_gcs *g = cairn_xcalloc(1, sizeof *g);
	g->prefix = cairn_xstrdup(loc->prefix);
	g->auth = (os_http_auth){.timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : OS_DEFAULT_TIMEOUT_MS};
	char *base = NULL;
	cairn_status st = check_sizes(cfg, g);
	if (cairn_is_ok(&st))
		st = cfg->endpoint ? os_endpoint_url(cfg->endpoint, &base) : cairn_ok();
	if (cairn_is_ok(&st)) {
		const char *b = base ? base : GCS_DEFAULT_BASE;
		char *bucket = os_uri_encode(loc->bucket, false);
		g->objects = os_asprintf("%s/storage/v1/b/%s/o", b, bucket);
		g->uploads = os_asprintf("%s/upload/storage/v1/b/%s/o", b, bucket);
		free(bucket);
		st = os_gcp_auth_new(cfg, s, &g->token);
	}
	free(base);
	if (!cairn_is_ok(&st)) {
		st = cairn_err(st.code, "object store %s: %s", cfg->url, st.msg);
		gcs_free(g);
		return st;
	}
	LOG_INFO(OS_MOD, "store opened url=%s api=gcs-json credentials=\"%s\"", cfg->url, os_auth_source(g->token));
	*be = g;
	return cairn_ok();
}

const os_backend_ops os_gcs_ops = {
	.put = os_gcs_put,
	.get = gcs_get,
	.head = gcs_head,
	.del = gcs_del,
	.list = gcs_list,
	.free = gcs_free,
};
