/* Store URLs ("s3://bucket/prefix", "gs://bucket/prefix", "file:///dir"), the base URL requests go
 * to, and keys given in the config or the environment. */
#include "objstore/internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* S3 and GCS bucket names: lower-case letters, digits, '.', '-' (and '_' for GCS), at most 222 bytes.
 * The server has the last word on the finer rules (3 to 63 bytes on S3); this only keeps out what
 * could change the request's shape (a '/', '?', '@', upper case that a host name would lose). */
static bool bucket_name_ok(const char *b, size_t n)
{
	if (n < 1 || n > 222)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

static cairn_status parse_bucket_url(const char *url, const char *rest, enum os_kind kind, os_location *out)
{
	const char *slash = strchr(rest, '/');
	size_t blen = slash ? (size_t)(slash - rest) : strlen(rest);
	if (!bucket_name_ok(rest, blen))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store URL '%s': bad bucket name", url);
	const char *p = slash ? slash + 1 : "";
	if (*p == '/')
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store URL '%s': the prefix starts with '/'", url);
	size_t plen = strlen(p);
	out->kind = kind;
	out->bucket = cairn_xmalloc(blen + 1);
	memcpy(out->bucket, rest, blen);
	out->bucket[blen] = 0;
	/* Keys go under "prefix/": the prefix names a folder, never a partial name. */
	bool add_slash = plen > 0 && p[plen - 1] != '/';
	out->prefix = cairn_xmalloc(plen + 2);
	memcpy(out->prefix, p, plen);
	if (add_slash)
		out->prefix[plen++] = '/';
	out->prefix[plen] = 0;
	return cairn_ok();
}

static cairn_status parse_file_url(const char *url, const char *rest, os_location *out)
{
	/* file:///dir or file://localhost/dir: an absolute path, no other host. */
	if (has_prefix(rest, "localhost/"))
		rest += strlen("localhost");
	if (rest[0] != '/')
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store URL '%s': file URLs name an absolute path (file:///dir)",
		                 url);
	size_t n = strlen(rest);
	while (n > 1 && rest[n - 1] == '/')
		n--;
	if (n == 1)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store URL '%s': the root directory cannot be a store", url);
	out->kind = OS_DIR;
	out->bucket = NULL;
	out->prefix = cairn_xmalloc(n + 1);
	memcpy(out->prefix, rest, n);
	out->prefix[n] = 0;
	return cairn_ok();
}

cairn_status os_parse_url(const char *url, os_location *out)
{
	memset(out, 0, sizeof *out);
	if (!url || !*url)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "no object store URL");
	if (has_prefix(url, "s3://"))
		return parse_bucket_url(url, url + 5, OS_S3, out);
	if (has_prefix(url, "gs://"))
		return parse_bucket_url(url, url + 5, OS_GCS, out);
	if (has_prefix(url, "file://"))
		return parse_file_url(url, url + 7, out);
	return cairn_err(CAIRN_INVALID_ARGUMENT, "object store URL '%s': expected s3://, gs:// or file://", url);
}

void os_location_free(os_location *l)
{
	free(l->bucket);
	free(l->prefix);
	l->bucket = l->prefix = NULL;
}

/* Splits an endpoint URL "http(s)://host[:port][/]" into its scheme and host, without the '/'. */
static cairn_status split_endpoint(const char *endpoint, const char **scheme, const char **host, int *host_len)
{
	*scheme = has_prefix(endpoint, "https://") ? "https://" : has_prefix(endpoint, "http://") ? "http://" : NULL;
	if (!*scheme)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store endpoint '%s': expected http:// or https://", endpoint);
	*host = endpoint + strlen(*scheme);
	size_t n = strlen(*host);
	while (n > 0 && (*host)[n - 1] == '/')
		n--;
	if (n == 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store endpoint '%s': no host", endpoint);
	*host_len = (int)n;
	return cairn_ok();
}

cairn_status os_endpoint_url(const char *endpoint, char **out)
{
	const char *scheme, *host;
	int hn;
	*out = NULL;
	cairn_status st = split_endpoint(endpoint, &scheme, &host, &hn);
	if (cairn_is_ok(&st))
		*out = os_asprintf("%s%.*s", scheme, hn, host);
	return st;
}

cairn_status os_base_url(enum os_kind kind, const char *endpoint, const char *region, const char *bucket,
                         bool path_style, char **out)
{
	assert(kind == OS_S3 || kind == OS_GCS);
	*out = NULL;
	if (!endpoint) {
		if (kind == OS_GCS)
			*out = path_style ? os_asprintf("https://storage.googleapis.com/%s", bucket)
			                  : os_asprintf("https://%s.storage.googleapis.com", bucket);
		else
			*out = path_style ? os_asprintf("https://s3.%s.amazonaws.com/%s", region, bucket)
			                  : os_asprintf("https://%s.s3.%s.amazonaws.com", bucket, region);
		return cairn_ok();
	}
	const char *scheme, *host;
	int hn;
	cairn_status st = split_endpoint(endpoint, &scheme, &host, &hn);
	if (cairn_is_ok(&st))
		*out = path_style ? os_asprintf("%s%.*s/%s", scheme, hn, host, bucket)
		                  : os_asprintf("%s%s.%.*s", scheme, bucket, hn, host);
	return st;
}

static char *dup_or_env(const char *v, const char *env)
{
	if (v && *v)
		return cairn_xstrdup(v);
	const char *e = getenv(env);
	return e && *e ? cairn_xstrdup(e) : NULL;
}

cairn_status os_get_credentials(const objstore_config *cfg, os_credentials *out)
{
	out->access_key = dup_or_env(cfg->access_key, "AWS_ACCESS_KEY_ID");
	out->secret_key = dup_or_env(cfg->secret_key, "AWS_SECRET_ACCESS_KEY");
	out->session_token = dup_or_env(cfg->session_token, "AWS_SESSION_TOKEN");
	const char *missing = !out->access_key ? "an access key (access_key or AWS_ACCESS_KEY_ID)"
	                      : !out->secret_key ? "a secret key (secret_key or AWS_SECRET_ACCESS_KEY)"
	                                         : NULL;
	if (missing) {
		os_credentials_free(out);
		return cairn_err(CAIRN_INVALID_ARGUMENT, "object store %s: no credentials: need %s", cfg->url, missing);
	}
	return cairn_ok();
}

static bool set(const char *v, const char *env)
{
	const char *e = getenv(env);
	return (v && *v) || (e && *e);
}

bool os_keys_given(const objstore_config *cfg)
{
	return set(cfg->access_key, "AWS_ACCESS_KEY_ID") || set(cfg->secret_key, "AWS_SECRET_ACCESS_KEY");
}

void os_credentials_free(os_credentials *c)
{
	free(c->access_key);
	free(c->secret_key);
	free(c->session_token);
	c->access_key = c->secret_key = c->session_token = NULL;
}
