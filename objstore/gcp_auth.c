/* OAuth 2.0 access tokens for the GCS JSON API.
 *
 * From a service-account key file: a JWT signed with the key (jwt.c) is traded at the key's
 * token_uri for a token (grant_type urn:ietf:params:oauth:grant-type:jwt-bearer, RFC 7523). Else
 * from the GCE metadata server, which hands out the token of the instance's service account to any
 * request that carries "Metadata-Flavor: Google". Either answer is {"access_token", "expires_in",
 * "token_type"}; auth.c fetches a new token before the current one expires. */
#include "objstore/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GCS_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"
#define TOKEN_ANSWER_MAX (64 << 10)
#define TOKEN_TIMEOUT_MS 30000

/* Sends h (its sink a TOKEN_ANSWER_MAX buffer) and reads the token answer into out. */
static cairn_status token_exchange(os_worker *w, os_http *h, const char *label, int max_retries, os_secret *out)
{
	cairn_status st = os_exchange(w, h, label, max_retries, os_json_google_error);
	if (cairn_is_ok(&st)) {
		int64_t expires_in;
		st = os_json_token((const char *)h->sink->buf, h->sink->len, &out->token, &expires_in);
		if (cairn_is_ok(&st))
			os_secret_set_lifetime(out, expires_in);
		else
			st = cairn_err(st.code, "%s: %s", label, st.msg);
	}
	free(h->sink->buf);
	h->sink->buf = NULL;
	return st;
}

/* ---- the GCE metadata server ------------------------------------------------------------------- */

typedef struct metadata {
	char *url, *host;
} metadata;

static void free_metadata(void *ctx)
{
	metadata *m = ctx;
	free(m->url);
	free(m->host);
	free(m);
}

static cairn_status metadata_fetch(void *ctx, os_worker *w, os_secret *out)
{
	const metadata *m = ctx;
	static const char *const headers[] = {"Metadata-Flavor: Google", NULL};
	os_http_auth none = {.timeout_ms = OS_METADATA_TIMEOUT_MS};
	os_sink answer = {.kind = OS_SINK_MEM, .max = TOKEN_ANSWER_MAX};
	os_http h = {.auth = &none, .method = "GET", .url = m->url, .headers = headers, .sink = &answer};
	char label[200];
	snprintf(label, sizeof label, "GCE metadata server %.100s", m->host);
	return token_exchange(w, &h, label, os_metadata_retries(w), out);
}

static cairn_status metadata_auth(objstore *s, os_auth **out)
{
	const char *host = getenv("GCE_METADATA_HOST");
	if (!host || !*host)
		host = "metadata.google.internal";
	if (strpbrk(host, "/@?# \t"))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "GCE_METADATA_HOST '%.100s' is not a host[:port]", host);
	metadata *m = cairn_xcalloc(1, sizeof *m);
	m->url = os_asprintf("http://%s/computeMetadata/v1/instance/service-accounts/default/token", host);
	m->host = cairn_xstrdup(host);
	char *source = os_asprintf("GCE metadata server %s", host);
	*out = os_auth_new(metadata_fetch, m, free_metadata, source);
	free(source);
	cairn_status st = os_auth_prime(*out, s);
	if (cairn_is_ok(&st))
		return st;
	os_auth_free(*out);
	*out = NULL;
	return cairn_err(st.code, "no key file (gcs_credentials_file, GOOGLE_APPLICATION_CREDENTIALS), and %s", st.msg);
}

/* ---- a service-account key ----------------------------------------------------------------------- */

static void free_key(void *ctx)
{
	os_sa_key_free(ctx);
	free(ctx);
}

static cairn_status key_fetch(void *ctx, os_worker *w, os_secret *out)
{
	const os_sa_key *k = ctx;
	char *jwt;
	cairn_status st = os_jwt_assertion(k, GCS_SCOPE, (int64_t)time(NULL), &jwt);
	if (!cairn_is_ok(&st))
		return st;
	/* The assertion is base64url and dots: nothing in it needs form encoding. */
	char *form = os_asprintf("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer&assertion=%s", jwt);
	free(jwt);
	os_source body = {.mem = (const uint8_t *)form, .len = (int64_t)strlen(form)};
	os_http_auth none = {.timeout_ms = TOKEN_TIMEOUT_MS};
	os_sink answer = {.kind = OS_SINK_MEM, .max = TOKEN_ANSWER_MAX};
	os_http h = {.auth = &none, .method = "POST", .url = k->token_uri, .body = &body, .sink = &answer,
	             .content_type = "application/x-www-form-urlencoded"};
	char label[300];
	snprintf(label, sizeof label, "token endpoint %.200s", k->token_uri);
	st = token_exchange(w, &h, label, w->s->max_retries, out);
	free(form);
	return st;
}

static cairn_status key_auth(const char *path, const char *from, objstore *s, os_auth **out)
{
	os_sa_key *k = cairn_xcalloc(1, sizeof *k);
	cairn_status st = os_sa_key_load(path, k);
	if (!cairn_is_ok(&st)) {
		free(k);
		return st;
	}
	char *source = os_asprintf("service-account key file %s%s (%s)", path, from, k->email);
	*out = os_auth_new(key_fetch, k, free_key, source);
	free(source);
	st = os_auth_prime(*out, s);
	if (cairn_is_ok(&st))
		return st;
	st = cairn_err(st.code, "service-account key file %s: %s", path, st.msg);
	os_auth_free(*out);
	*out = NULL;
	return st;
}

cairn_status os_gcp_auth_new(const objstore_config *cfg, objstore *s, os_auth **out)
{
	*out = NULL;
	if (cfg->gcs_credentials_file && *cfg->gcs_credentials_file)
		return key_auth(cfg->gcs_credentials_file, "", s, out);
	const char *env = getenv("GOOGLE_APPLICATION_CREDENTIALS");
	if (env && *env)
		return key_auth(env, " from GOOGLE_APPLICATION_CREDENTIALS", s, out);
	return metadata_auth(s, out);
}
