/* The JSON answers cairn reads from cloud APIs, parsed with json-c: OAuth tokens, EC2 role
 * credentials, GCS object listings and sizes, and Google's error bodies.
 *
 * An answer is accepted only whole: a body that does not parse to its end (truncated, or with
 * trailing bytes) is malformed, as is a member of the wrong type. Strings that go back out in
 * request headers (tokens, keys) must be visible ASCII, so that no answer can add a header. */
#include "objstore/internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The JSON object in body[0..len), or NULL if it is not exactly one. Release with json_object_put. */
static json_object *parse_object(const char *body, size_t len)
{
	if (!body || len == 0 || len > INT_MAX)
		return NULL;
	json_tokener *tok = json_tokener_new();
	json_object *o = json_tokener_parse_ex(tok, body, (int)len);
	bool whole = json_tokener_get_error(tok) == json_tokener_success;
	for (size_t i = whole ? json_tokener_get_parse_end(tok) : len; i < len; i++)
		if (!strchr(" \t\r\n", body[i]))
			whole = false;
	json_tokener_free(tok);
	if (!whole || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static json_object *member(json_object *o, const char *key, json_type type)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, type) ? v : NULL;
}

/* The string member `key`, or NULL if it is absent or not a string. */
static const char *str(json_object *o, const char *key)
{
	json_object *v = member(o, key, json_type_string);
	return v ? json_object_get_string(v) : NULL;
}

static bool has(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v);
}

static bool header_safe(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return false;
	return true;
}

cairn_status os_json_token(const char *body, size_t len, char **token, int64_t *expires_in)
{
	*token = NULL;
	json_object *o = parse_object(body, len);
	if (!o)
		return cairn_err(CAIRN_INTERNAL, "the token answer is not a JSON object");
	const char *t = str(o, "access_token"), *type = str(o, "token_type");
	json_object *e = member(o, "expires_in", json_type_int);
	cairn_status st = cairn_ok();
	if (!header_safe(t))
		st = cairn_err(CAIRN_INTERNAL, "the token answer has no usable access_token");
	else if (type && strcasecmp(type, "Bearer") != 0)
		st = cairn_err(CAIRN_INTERNAL, "the token answer has token_type '%.40s', not Bearer", type);
	else if (has(o, "expires_in") && (!e || json_object_get_int64(e) <= 0))
		st = cairn_err(CAIRN_INTERNAL, "the token answer has no usable expires_in");
	if (cairn_is_ok(&st)) {
		*token = cairn_xstrdup(t);
		/* RFC 6749 makes expires_in optional; Google's access tokens last an hour. */
		*expires_in = e ? json_object_get_int64(e) : 3600;
	}
	json_object_put(o);
	return st;
}

/* "2026-01-02T03:04:05Z", optionally with fractions of a second, as seconds since the epoch. */
static bool parse_utc(const char *s, int64_t *out)
{
	struct tm tm = {0};
	int n = 0;
	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
	                 &tm.tm_sec, &n) != 6 || n == 0)
		return false;
	const char *p = s + n;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if (strcmp(p, "Z") != 0 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31)
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return false;
	*out = (int64_t)t;
	return true;
}

cairn_status os_json_aws_credentials(const char *body, size_t len, os_secret *out, int64_t *expiration)
{
	json_object *o = parse_object(body, len);
	if (!o)
		return cairn_err(CAIRN_INTERNAL, "the role credentials are not a JSON object");
	const char *code = str(o, "Code"), *ak = str(o, "AccessKeyId"), *sk = str(o, "SecretAccessKey");
	const char *token = str(o, "Token");
	cairn_status st = cairn_ok();
	if (code && strcmp(code, "Success") != 0)
		st = cairn_err(CAIRN_UNAVAILABLE, "the role credentials say Code=%.40s", code);
	else if (!header_safe(ak) || !header_safe(sk))
		st = cairn_err(CAIRN_INTERNAL, "the role credentials have no usable AccessKeyId and SecretAccessKey");
	else if (token && *token && !header_safe(token))
		st = cairn_err(CAIRN_INTERNAL, "the role credentials have an unusable Token");
	else if (!parse_utc(str(o, "Expiration"), expiration))
		st = cairn_err(CAIRN_INTERNAL, "the role credentials have no usable Expiration");
	if (cairn_is_ok(&st)) {
		out->access_key = cairn_xstrdup(ak);
		out->secret_key = cairn_xstrdup(sk);
		out->token = token && *token ? cairn_xstrdup(token) : NULL;
	}
	json_object_put(o);
	return st;
}

/* A body that is not JSON (a metadata server's plain-text refusal): its first line, if it is text. */
static char *text_of(const char *body, size_t len)
{
	size_t n = 0;
	while (n < len && n < 160 && body[n] != '\n' && body[n] != '\r') {
		if ((unsigned char)body[n] < 0x20)
			return NULL;
		n++;
	}
	if (n == 0)
		return NULL;
	char *t = cairn_xmalloc(n + 1);
	memcpy(t, body, n);
	t[n] = 0;
	return t;
}

static char *dup_or_null(const char *s) { return s && *s ? cairn_xstrdup(s) : NULL; }

void os_json_google_error(const char *body, size_t len, char **code, char **msg)
{
	*code = *msg = NULL;
	json_object *o = parse_object(body, len);
	if (!o) {
		*msg = text_of(body, len);
		return;
	}
	json_object *e = member(o, "error", json_type_object);
	if (e) {
		json_object *errors = member(e, "errors", json_type_array);
		json_object *first = errors && json_object_array_length(errors) > 0 ? json_object_array_get_idx(errors, 0) : NULL;
		*code = dup_or_null(first && json_object_is_type(first, json_type_object) ? str(first, "reason") : NULL);
		*msg = dup_or_null(str(e, "message"));
	} else {
		*code = dup_or_null(str(o, "error"));
		*msg = dup_or_null(str(o, "error_description"));
	}
	json_object_put(o);
}

cairn_status os_json_gcs_list(const char *body, size_t len, const char *prefix, char ***names, size_t *n,
                              char **next)
{
	*names = NULL;
	*n = 0;
	*next = NULL;
	json_object *o = parse_object(body, len);
	json_object *items = o ? member(o, "items", json_type_array) : NULL;
	const char *token = o ? str(o, "nextPageToken") : NULL;
	bool ok = o && (items || !has(o, "items")) && (token || !has(o, "nextPageToken"));
	size_t count = items ? json_object_array_length(items) : 0, plen = strlen(prefix);
	if (ok && count)
		*names = cairn_xcalloc(count, sizeof **names);
	for (size_t i = 0; ok && i < count; i++) {
		json_object *it = json_object_array_get_idx(items, i);
		const char *name = json_object_is_type(it, json_type_object) ? str(it, "name") : NULL;
		if (!name)
			ok = false;
		else if (strncmp(name, prefix, plen) == 0) /* outside the store: never asked for */
			(*names)[(*n)++] = cairn_xstrdup(name + plen);
	}
	if (ok && token && *token)
		*next = cairn_xstrdup(token);
	json_object_put(o);
	if (ok)
		return cairn_ok();
	for (size_t i = 0; i < *n; i++)
		free((*names)[i]);
	free(*names);
	*names = NULL;
	*n = 0;
	return cairn_err(CAIRN_INTERNAL, "malformed objects.list answer");
}

cairn_status os_json_gcs_size(const char *body, size_t len, int64_t *size)
{
	json_object *o = parse_object(body, len);
	const char *s = o ? str(o, "size") : NULL;
	char *end = NULL;
	errno = 0;
	long long v = s && *s >= '0' && *s <= '9' ? strtoll(s, &end, 10) : -1;
	bool ok = v >= 0 && end && !*end && errno == 0;
	json_object_put(o);
	if (!ok)
		return cairn_err(CAIRN_INTERNAL, "the object resource has no usable size");
	*size = v;
	return cairn_ok();
}

cairn_status os_json_sa_key(const char *body, size_t len, os_sa_key_fields *out)
{
	*out = (os_sa_key_fields){0};
	json_object *o = parse_object(body, len);
	if (!o)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "not a JSON object");
	const char *type = str(o, "type"), *email = str(o, "client_email"), *pem = str(o, "private_key");
	const char *uri = str(o, "token_uri");
	cairn_status st = cairn_ok();
	if (type && strcmp(type, "service_account") != 0)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "holds '%.40s' credentials, not a service-account key", type);
	else if (!email || !*email || !pem || !*pem)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "has no client_email or no private_key");
	else if (uri && strncmp(uri, "https://", 8) != 0 && strncmp(uri, "http://", 7) != 0)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "has a token_uri that is not an http(s) URL");
	if (cairn_is_ok(&st)) {
		out->email = cairn_xstrdup(email);
		out->pem = cairn_xstrdup(pem);
		out->token_uri = dup_or_null(uri);
		out->key_id = dup_or_null(str(o, "private_key_id"));
	}
	json_object_put(o);
	return st;
}
