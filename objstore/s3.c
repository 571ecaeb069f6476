/* The S3 back end, also used for GCS through its XML API with HMAC keys: single-request PUT, GET
 * (ranged: no more than its limit plus one byte), HEAD, DELETE and ListObjectsV2, each HTTP exchange
 * retried on its own. Large uploads and streamed ones go to multipart.c (GCS's XML API has the same
 * multipart calls). Every request signs with one consistent set of keys taken at its start: fixed
 * ones, or those of the instance's role, which aws_imds.c renews before they expire. */
#include "objstore/internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *os_s3_label(const os_s3 *b, const char *method, const char *key, char *buf, size_t cap)
{
	return os_label(b->scheme, method, key, buf, cap);
}

char *os_s3_url(const os_s3 *b, const char *key, const char *query)
{
	const char *q = query && *query ? query : NULL;
	if (!key) /* the bucket itself */
		return os_asprintf("%s/%s%s", b->base_url, q ? "?" : "", q ? q : "");
	char *full = os_asprintf("%s%s", b->prefix, key);
	char *path = os_uri_encode(full, true);
	char *url = os_asprintf("%s/%s%s%s", b->base_url, path, q ? "?" : "", q ? q : "");
	free(path);
	free(full);
	return url;
}

static void read_xml_error(const char *body, size_t len, char **code, char **msg)
{
	*code = os_xml_first(body, len, "Code");
	*msg = os_xml_first(body, len, "Message");
}

cairn_status os_s3_exchange(os_worker *w, os_http *h, const char *label)
{
	const os_s3 *b = w->s->be;
	os_secret *k;
	cairn_status st = os_auth_get(b->keys, w, &k);
	if (!cairn_is_ok(&st))
		return cairn_err(st.code, "%s: %s", label, st.msg);
	/* This request signs with the keys it was handed, even if newer ones arrive meanwhile. */
	const os_http_auth *base = h->auth;
	os_http_auth a = *base;
	a.access_key = k->access_key;
	a.secret_key = k->secret_key;
	a.session_token = k->token;
	h->auth = &a;
	st = os_exchange(w, h, label, w->s->max_retries, read_xml_error);
	h->auth = base;
	os_secret_release(k);
	return st;
}

bool os_s3_wants_multipart(const os_s3 *b, int64_t size) { return size >= b->threshold; }

static cairn_status s3_put(os_worker *w, const char *key, os_source *src, const uint8_t *sha256)
{
	const os_s3 *b = w->s->be;
	assert(!src->pull || (sha256 && src->len <= OS_MAX_PUT));
	if (!src->pull && os_s3_wants_multipart(b, src->len))
		return os_s3_multipart(w, b, key, src, sha256);
	uint8_t computed[32];
	if (!sha256) {
		cairn_hasher *hs = cairn_hasher_new();
		cairn_status st = os_source_hash(src, hs, NULL);
		cairn_hasher_final(hs, computed);
		cairn_hasher_free(hs);
		if (!cairn_is_ok(&st))
			return st;
		sha256 = computed;
	}
	char hex[CAIRN_HASH_HEX_LEN + 1], label[128];
	cairn_hash_hex(sha256, hex);
	char *url = os_s3_url(b, key, NULL);
	os_http h = {.auth = &b->auth, .method = "PUT", .url = url, .payload_sha256 = hex, .body = src};
	cairn_status st = os_s3_exchange(w, &h, os_s3_label(b, "PUT", key, label, sizeof label));
	if (cairn_is_ok(&st))
		atomic_fetch_add(&w->s->bytes_up, (uint64_t)src->len);
	free(url);
	return st;
}

/* The hash of an empty payload, which GET, HEAD and DELETE sign. */
static const char empty_sha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static cairn_status s3_get(os_worker *w, const char *key, os_sink *sink)
{
	const os_s3 *b = w->s->be;
	char label[128];
	char *url = os_s3_url(b, key, NULL);
	os_http h = {.auth = &b->auth, .method = "GET", .url = url, .payload_sha256 = empty_sha256, .sink = sink};
	os_range r;
	os_http_set_range(&h, &r);
	cairn_status st = os_s3_exchange(w, &h, os_s3_label(b, "GET", key, label, sizeof label));
	free(url);
	return st;
}

static cairn_status s3_head(os_worker *w, const char *key, int64_t *size)
{
	const os_s3 *b = w->s->be;
	char label[128];
	char *url = os_s3_url(b, key, NULL);
	os_http h = {.auth = &b->auth, .method = "HEAD", .url = url, .payload_sha256 = empty_sha256};
	cairn_status st = os_s3_exchange(w, &h, os_s3_label(b, "HEAD", key, label, sizeof label));
	free(url);
	*size = h.content_length;
	if (cairn_is_ok(&st) && h.content_length < 0)
		st = cairn_err(CAIRN_INTERNAL, "%s: the answer has no Content-Length", label);
	return st;
}

static cairn_status s3_del(os_worker *w, const char *key)
{
	const os_s3 *b = w->s->be;
	char label[128];
	char *url = os_s3_url(b, key, NULL);
	os_http h = {.auth = &b->auth, .method = "DELETE", .url = url, .payload_sha256 = empty_sha256};
	cairn_status st = os_s3_exchange(w, &h, os_s3_label(b, "DELETE", key, label, sizeof label));
	free(url);
	/* S3 answers 204 for an absent key; a server that says 404 NoSuchKey means the same. */
	if (st.code == CAIRN_NOT_FOUND && strstr(st.msg, " NoSuchKey"))
		st = cairn_ok();
	return st;
}

/* The keys of one ListObjectsV2 page, without the store prefix; *next is the continuation token
 * when the listing goes on, else NULL. */
static cairn_status parse_page(const os_s3 *b, const os_sink *page, const char *label, char ***keys, size_t *n,
                               char **next)
{
	const char *xml = (const char *)page->buf;
	size_t len = page->len, pos = 0, cap = 0, plen = strlen(b->prefix);
	char *k;
	int r;
	*keys = NULL;
	*n = 0;
	*next = NULL;
	while ((r = os_xml_next(xml, len, &pos, "Key", &k)) == 1) {
		if (strncmp(k, b->prefix, plen) != 0) { /* outside the store: never asked for */
			free(k);
			continue;
		}
		if (*n == cap)
			*keys = cairn_xrealloc(*keys, (cap = cap ? 2 * cap : 64) * sizeof **keys);
		memmove(k, k + plen, strlen(k + plen) + 1);
		(*keys)[(*n)++] = k;
	}
	char *truncated = os_xml_first(xml, len, "IsTruncated");
	bool more = truncated && strcmp(truncated, "true") == 0;
	free(truncated);
	if (more)
		*next = os_xml_first(xml, len, "NextContinuationToken");
	if (r < 0 || (more && !*next))
		return cairn_err(CAIRN_INTERNAL, "%s: malformed ListObjectsV2 answer", label);
	return cairn_ok();
}

static cairn_status s3_page(os_worker *w, os_listing *l, const char *token, char ***keys, size_t *n, char **next)
{
	const os_s3 *b = w->s->be;
	os_param p[3] = {{"list-type", "2"}, {"prefix", l->full}, {"continuation-token", token}};
	char *q = os_query(p, token ? 3 : 2), *url = os_s3_url(b, NULL, q);
	os_http h = {.auth = &b->auth, .method = "GET", .url = url, .payload_sha256 = empty_sha256, .sink = &l->page};
	cairn_status st = os_s3_exchange(w, &h, l->label);
	free(url);
	free(q);
	return cairn_is_ok(&st) ? parse_page(b, &l->page, l->label, keys, n, next) : st;
}

static cairn_status s3_list(os_worker *w, const char *prefix, os_page_fn fn, void *arg)
{
	const os_s3 *b = w->s->be;
	os_listing l = {.full = os_asprintf("%s%s", b->prefix, prefix), .page = {.kind = OS_SINK_MEM, .max = 64 << 20}};
	os_s3_label(b, "LIST", l.full, l.label, sizeof l.label);
	return os_list_pages(w, s3_page, &l, fn, arg);
}

static void s3_free(void *be)
{
	os_s3 *b = be;
	free(b->base_url);
	free(b->prefix);
	free(b->sigv4);
	os_auth_free(b->keys);
	free(b);
}

/* The part size is the store's (objstore.c); S3 bounds it. */
static cairn_status check_sizes(const objstore_config *cfg, int64_t part_size, int64_t *threshold)
{
	*threshold = cfg->multipart_threshold > 0 ? cfg->multipart_threshold : OS_DEFAULT_THRESHOLD;
	if (part_size < OS_MIN_PART_SIZE || part_size > (INT64_C(5) << 30))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store part size %lld: S3 takes 5 MiB to 5 GiB",
		                 (long long)part_size);
	if (*threshold > (INT64_C(5) << 30))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store multipart threshold %lld: S3 takes single PUTs up to 5 GiB",
		                 (long long)*threshold);
	return cairn_ok();
}

/* The keys: given (config or environment), else for s3:// those of the instance's role from EC2
 * instance metadata, fetched now so that a store without credentials fails at start. */
static cairn_status find_keys(const objstore_config *cfg, const os_location *loc, objstore *s, os_auth **out)
{
	os_credentials c;
	cairn_status st = os_get_credentials(cfg, &c);
	if (cairn_is_ok(&st)) {
		bool from_cfg = cfg->access_key && *cfg->access_key;
		*out = os_auth_new_fixed(c.access_key, c.secret_key, c.session_token,
		                         from_cfg ? "access_key and secret_key" : "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
		return st;
	}
	if (loc->kind != OS_S3 || os_keys_given(cfg))
		return st; /* gs:// comes here with HMAC keys only; half a key pair is a mistake to report */
	os_aws_imds_auth_new(out);
	if (!*out)
		return cairn_err(CAIRN_INVALID_ARGUMENT,
		                 "object store %s: no keys given (access_key, AWS_ACCESS_KEY_ID), and EC2 instance metadata "
		                 "is disabled (AWS_EC2_METADATA_DISABLED)",
		                 cfg->url);
	st = os_auth_prime(*out, s);
	if (!cairn_is_ok(&st)) {
		os_auth_free(*out);
		*out = NULL;
		return cairn_err(st.code, "object store %s: no keys given, and %s", cfg->url, st.msg);
	}
	return st;
}

cairn_status os_s3_open(const objstore_config *cfg, const os_location *loc, objstore *s, void **be)
{
	assert(loc->kind == OS_S3 || loc->kind == OS_GCS);
	os_s3 *b = cairn_xcalloc(1, sizeof *b);
	b->scheme = loc->kind == OS_GCS ? "gs" : "s3";
	b->prefix = cairn_xstrdup(loc->prefix);
	const char *region = cfg->region && *cfg->region ? cfg->region : loc->kind == OS_GCS ? "auto" : "us-east-1";
	cairn_status st = check_sizes(cfg, s->part_size, &b->threshold);
	if (cairn_is_ok(&st))
		st = os_base_url(loc->kind, cfg->endpoint, region, loc->bucket, cfg->path_style, &b->base_url);
	if (cairn_is_ok(&st))
		st = find_keys(cfg, loc, s, &b->keys);
	if (!cairn_is_ok(&st)) {
		s3_free(b);
		return st;
	}
	b->sigv4 = os_asprintf("aws:amz:%s:s3", region);
	b->auth = (os_http_auth){.sigv4 = b->sigv4,
	                         .timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : OS_DEFAULT_TIMEOUT_MS};
	LOG_INFO(OS_MOD, "store opened url=%s api=%s credentials=\"%s\"", cfg->url,
	         loc->kind == OS_GCS ? "gcs-xml" : "s3", os_auth_source(b->keys));
	*be = b;
	return cairn_ok();
}

const os_backend_ops os_s3_ops = {
	.put = s3_put,
	.get = s3_get,
	.head = s3_head,
	.del = s3_del,
	.list = s3_list,
	.stream_begin = os_s3_stream_begin,
	.stream_part = os_s3_stream_part,
	.stream_complete = os_s3_stream_complete,
	.stream_abort = os_s3_stream_abort,
	.free = s3_free,
};
