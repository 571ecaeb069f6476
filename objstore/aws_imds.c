/* S3 credentials of the instance's IAM role from the EC2 instance metadata service, version 2:
 *
 *   PUT /latest/api/token  (X-aws-ec2-metadata-token-ttl-seconds: 21600)  → a session token
 *   GET /latest/meta-data/iam/security-credentials/      (X-aws-ec2-metadata-token) → the role name
 *   GET /latest/meta-data/iam/security-credentials/ROLE  → {"AccessKeyId", "SecretAccessKey",
 *                                                           "Token", "Expiration", …}
 *
 * The service is at http://169.254.169.254, or AWS_EC2_METADATA_SERVICE_ENDPOINT; setting
 * AWS_EC2_METADATA_DISABLED=true turns it off, as in the AWS SDKs. IMDSv1 (no session token) is
 * not used: instances that require v2 refuse it, and v2 works everywhere v1 does. auth.c fetches
 * new credentials before Expiration; AWS publishes them well before the old ones expire. */
#include "objstore/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_ANSWER_MAX (64 << 10)
#define ROLE_PATH "/latest/meta-data/iam/security-credentials/"

/* One GET or PUT to the service; the answer in answer (malloc'd, NUL-terminated) on success. */
static cairn_status imds_call(os_worker *w, const char *base, const char *method, const char *path,
                              const char *header, char **answer)
{
	*answer = NULL;
	const char *headers[] = {header, NULL};
	char *url = os_asprintf("%s%s", base, path);
	os_http_auth none = {.timeout_ms = OS_METADATA_TIMEOUT_MS};
	os_source empty = {.mem = (const uint8_t *)""};
	os_sink sink = {.kind = OS_SINK_MEM, .max = IMDS_ANSWER_MAX};
	os_http h = {.auth = &none, .method = method, .url = url, .headers = headers, .sink = &sink,
	             .body = strcmp(method, "PUT") == 0 ? &empty : NULL};
	char label[300];
	snprintf(label, sizeof label, "EC2 instance metadata %s %.200s", method, url);
	cairn_status st = os_exchange(w, &h, label, os_metadata_retries(w), os_json_google_error);
	free(url);
	if (!cairn_is_ok(&st)) {
		free(sink.buf);
		return st;
	}
	*answer = cairn_xmalloc(sink.len + 1);
	memcpy(*answer, sink.buf, sink.len);
	(*answer)[sink.len] = 0;
	free(sink.buf);
	return st;
}

/* s up to its first line end, or NULL if that is empty or has anything but [chars]. */
static char *first_line(const char *s, const char *chars)
{
	size_t n = strcspn(s, "\r\n");
	if (n == 0 || strspn(s, chars) < n)
		return NULL;
	char *line = cairn_xmalloc(n + 1);
	memcpy(line, s, n);
	line[n] = 0;
	return line;
}

static cairn_status imds_fetch(void *ctx, os_worker *w, os_secret *out)
{
	const char *base = ctx;
	char *answer, *role = NULL, *header = NULL;
	cairn_status st =
		imds_call(w, base, "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 21600", &answer);
	if (cairn_is_ok(&st)) {
		/* The session token goes back in a header: printable ASCII only. */
		char *token = first_line(answer, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-.");
		free(answer);
		if (!token)
			return cairn_err(CAIRN_INTERNAL, "EC2 instance metadata at %s: the session token is not usable", base);
		header = os_asprintf("X-aws-ec2-metadata-token: %s", token);
		free(token);
		st = imds_call(w, base, "GET", ROLE_PATH, header, &answer);
	}
	if (cairn_is_ok(&st)) {
		/* IAM role names: letters, digits and +=,.@_- */
		role = first_line(answer, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+=,.@_-");
		free(answer);
		if (!role)
			st = cairn_err(CAIRN_FAILED_PRECONDITION, "EC2 instance metadata at %s: the instance has no IAM role", base);
	}
	if (cairn_is_ok(&st)) {
		char *path = os_asprintf("%s%s", ROLE_PATH, role);
		st = imds_call(w, base, "GET", path, header, &answer);
		free(path);
	}
	int64_t expiration = 0;
	if (cairn_is_ok(&st)) {
		st = os_json_aws_credentials(answer, strlen(answer), out, &expiration);
		free(answer);
		if (!cairn_is_ok(&st))
			st = cairn_err(st.code, "EC2 instance metadata at %s, role %s: %s", base, role, st.msg);
	}
	if (cairn_is_ok(&st)) {
		os_secret_set_lifetime(out, expiration - (int64_t)time(NULL));
		LOG_DEBUG(OS_MOD, "S3 credentials from EC2 instance metadata role=%s expires_in_s=%lld", role,
		          (long long)(expiration - (int64_t)time(NULL)));
	}
	free(role);
	free(header);
	return st;
}

void os_aws_imds_auth_new(os_auth **out)
{
	const char *off = getenv("AWS_EC2_METADATA_DISABLED");
	*out = NULL;
	if (off && strcasecmp(off, "true") == 0)
		return;
	const char *e = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	char *base = cairn_xstrdup(e && *e ? e : IMDS_DEFAULT);
	for (size_t n = strlen(base); n > 0 && base[n - 1] == '/'; n--)
		base[n - 1] = 0;
	char *source = os_asprintf("EC2 instance metadata at %s", base);
	*out = os_auth_new(imds_fetch, base, free, source);
	free(source);
}
