/* One HTTP exchange on a transfer thread's curl easy handle.
 *
 * The handle is reset (curl_easy_reset keeps its connection cache) and set up afresh for every
 * request, so no option leaks from one request into the next while the connection is kept alive.
 * A request is signed with SigV4 (S3, GCS's XML API), carries an OAuth bearer token (GCS's JSON
 * API), or carries nothing (metadata servers, token endpoints: their headers say what they need).
 * SigV4 signing is libcurl's CURLOPT_AWS_SIGV4, with the three things libcurl 7.88 leaves to the caller:
 * x-amz-content-sha256 is set here, the query arrives already canonical
 * (os_query), and no header is ever blanked with "Name:" (libcurl would still sign it). The
 * "Expect: 100-continue" libcurl adds to large uploads is not signed and need not be: the server
 * then refuses a bad signature before the body is sent. */
#include "objstore/internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct exchange {
	os_http *h;
	CURL *curl;
} exchange;

static size_t read_body(char *buf, size_t size, size_t nmemb, void *ud)
{
	os_source *src = ud;
	int64_t left = src->len - src->pos;
	size_t want = size * nmemb;
	if (left <= 0)
		return 0;
	if ((int64_t)want > left)
		want = (size_t)left;
	if (src->pull) {
		ssize_t n = src->pull(src->pull_arg, (uint8_t *)buf, want);
		if (n < 0) {
			src->err = ECANCELED;
			return CURL_READFUNC_ABORT;
		}
		src->pos += n;
		return (size_t)n;
	}
	if (src->mem) {
		memcpy(buf, src->mem + src->off + src->pos, want);
		src->pos += (int64_t)want;
		return want;
	}
	ssize_t n;
	do
		n = pread(src->fd, buf, want, src->off + src->pos);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		/* A file that ends early was changed under us: its size no longer matches what we announced. */
		src->err = n < 0 ? errno : ENODATA;
		return CURL_READFUNC_ABORT;
	}
	src->pos += n;
	return (size_t)n;
}

cairn_status os_source_scan(const os_source *src, os_scan_fn fn, void *arg)
{
	if (src->mem) {
		fn(arg, src->mem + src->off, (size_t)src->len);
		return cairn_ok();
	}
	const size_t chunk = 1 << 20;
	uint8_t *buf = cairn_xmalloc(chunk);
	cairn_status st = cairn_ok();
	for (int64_t pos = 0; pos < src->len;) {
		size_t want = src->len - pos < (int64_t)chunk ? (size_t)(src->len - pos) : chunk;
		ssize_t n = src->pull ? src->pull(src->pull_arg, buf, want) : pread(src->fd, buf, want, src->off + pos);
		if (n < 0 && !src->pull && errno == EINTR)
			continue;
		if (n < 0 && src->pull) {
			st = cairn_err(CAIRN_CANCELLED, "the upload was abandoned");
			break;
		}
		if (n <= 0) {
			st = n < 0 ? cairn_errno(errno, "reading the file to upload")
			           : cairn_err(CAIRN_DATA_LOSS, "the file to upload shrank while it was read");
			break;
		}
		fn(arg, buf, (size_t)n);
		pos += n;
	}
	free(buf);
	return st;
}

typedef struct two_hashers {
	cairn_hasher *h, *h2;
} two_hashers;

static void hash_into(void *arg, const uint8_t *p, size_t n)
{
	two_hashers *t = arg;
	cairn_hasher_update(t->h, p, n);
	if (t->h2)
		cairn_hasher_update(t->h2, p, n);
}

cairn_status os_source_hash(const os_source *src, cairn_hasher *h, cairn_hasher *h2)
{
	two_hashers t = {h, h2};
	return os_source_scan(src, hash_into, &t);
}

/* libcurl rewinds the body when it must send it again on the same request (a redirect, an auth
 * round): possible for a buffer or a file range, not for pulled bytes (libcurl then fails the
 * request). */
static int seek_body(void *ud, curl_off_t off, int origin)
{
	os_source *src = ud;
	if (src->pull && !(origin == SEEK_SET && off == src->pos))
		return CURL_SEEKFUNC_CANTSEEK;
	if (origin != SEEK_SET || off < 0 || off > src->len)
		return CURL_SEEKFUNC_FAIL;
	src->pos = off;
	return CURL_SEEKFUNC_OK;
}

static void keep_error_body(os_http *h, const char *p, size_t n)
{
	size_t room = OS_ERR_BODY_MAX - h->err_len;
	if (n > room)
		n = room;
	memcpy(h->err_body + h->err_len, p, n);
	h->err_len += n;
	h->err_body[h->err_len] = 0;
}

static bool sink_mem(os_sink *k, const char *p, size_t n)
{
	if ((int64_t)(k->len + n) > k->max) {
		k->over_max = true;
		return false;
	}
	if (k->len + n > k->cap) {
		size_t cap = k->cap ? k->cap : 4096;
		while (cap < k->len + n)
			cap *= 2;
		k->buf = cairn_xrealloc(k->buf, cap);
		k->cap = cap;
	}
	memcpy(k->buf + k->len, p, n);
	k->len += n;
	return true;
}

static bool sink_fd(os_sink *k, const char *p, size_t n)
{
	if ((int64_t)(k->len + n) > k->max) {
		k->over_max = true;
		return false;
	}
	if (k->hasher)
		cairn_hasher_update(k->hasher, p, n);
	off_t off = (off_t)k->len;
	while (n > 0) {
		ssize_t w = pwrite(k->fd, p, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			k->err = w < 0 ? errno : EIO;
			return false;
		}
		p += w;
		n -= (size_t)w;
		off += w;
		k->len += (size_t)w;
	}
	return true;
}

static size_t write_body(char *p, size_t size, size_t nmemb, void *ud)
{
	exchange *x = ud;
	size_t n = size * nmemb;
	long status = 0;
	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status >= 300) {
		keep_error_body(x->h, p, n); /* for the store's error code and message */
		return n;
	}
	os_sink *k = x->h->sink;
	bool ok = true;
	if (k)
		k->received += n;
	if (k && k->kind == OS_SINK_MEM)
		ok = sink_mem(k, p, n);
	else if (k && k->kind == OS_SINK_FD)
		ok = sink_fd(k, p, n);
	else if (k)
		k->len += n;
	return ok ? n : 0; /* 0 stops the transfer with CURLE_WRITE_ERROR */
}

void os_http_set_range(os_http *h, os_range *r)
{
	assert(h->sink && h->sink->max >= 0 && !h->headers && !h->also_ok);
	snprintf(r->line, sizeof r->line, "Range: bytes=0-%lld", (long long)h->sink->max);
	r->headers[0] = r->line;
	r->headers[1] = NULL;
	h->headers = r->headers;
	h->also_ok = 416;
}

/* The value of header line p[0..n) if it is `name`, trimmed, else NULL; *len its length. */
static const char *header_value(const char *p, size_t n, const char *name, size_t *len)
{
	size_t nl = strlen(name);
	if (n <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0)
		return NULL;
	const char *v = p + nl + 1, *end = p + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	*len = (size_t)(end - v);
	return v;
}

static size_t read_header(char *p, size_t size, size_t nmemb, void *ud)
{
	exchange *x = ud;
	size_t n = size * nmemb, len;
	const char *v = header_value(p, n, "ETag", &len);
	if (v && len < sizeof x->h->etag) {
		memcpy(x->h->etag, v, len);
		x->h->etag[len] = 0;
	}
	if (x->h->capture && (v = header_value(p, n, x->h->capture, &len))) {
		free(x->h->captured);
		x->h->captured = cairn_xmalloc(len + 1);
		memcpy(x->h->captured, v, len);
		x->h->captured[len] = 0;
	}
	return n;
}

/* Out of memory is not a request error in cairn (see cairn_xmalloc): it aborts. */
static struct curl_slist *append(struct curl_slist *l, const char *line)
{
	struct curl_slist *n = curl_slist_append(l, line);
	if (!n) {
		LOG_ERROR(OS_MOD, "out of memory building request headers");
		abort();
	}
	return n;
}

static struct curl_slist *append_fmt(struct curl_slist *l, const char *name, const char *value)
{
	char *line = os_asprintf("%s: %s", name, value);
	l = append(l, line);
	free(line);
	return l;
}

static struct curl_slist *make_headers(const os_http *h)
{
	struct curl_slist *l = NULL;
	const os_http_auth *a = h->auth;
	if (a->sigv4) {
		assert(h->payload_sha256 && strlen(h->payload_sha256) == CAIRN_HASH_HEX_LEN);
		l = append_fmt(l, "x-amz-content-sha256", h->payload_sha256);
		/* Added before libcurl signs the request, so the token is signed too. */
		if (a->session_token)
			l = append_fmt(l, "x-amz-security-token", a->session_token);
	}
	if (a->bearer) {
		char *v = os_asprintf("Bearer %s", a->bearer);
		l = append_fmt(l, "Authorization", v);
		free(v);
	}
	if (h->content_type)
		l = append_fmt(l, "Content-Type", h->content_type);
	for (const char *const *e = h->headers; e && *e; e++)
		l = append(l, *e);
	return l;
}

static void set_method(CURL *c, os_http *h)
{
	if (strcmp(h->method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(h->method, "PUT") == 0) {
		assert(h->body);
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)h->body->len);
	} else if (strcmp(h->method, "POST") == 0) {
		assert(h->body);
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->body->len);
	} else if (strcmp(h->method, "DELETE") == 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else {
		assert(strcmp(h->method, "GET") == 0);
	}
	if (h->body) {
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
		curl_easy_setopt(c, CURLOPT_READDATA, h->body);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_body);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, h->body);
	}
}

static void set_timeouts(CURL *c, const os_http *h)
{
	int64_t t = h->auth->timeout_ms;
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(t < 10000 ? t : 10000));
	if ((h->sink && h->sink->kind == OS_SINK_FD) || (h->body && h->body->pull)) {
		/* A download into a file may be any size, and pulled bytes arrive at their sender's pace: no
		 * deadline for the whole, but one for a stall. */
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(t / 1000 > 0 ? t / 1000 : 1));
	} else {
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)t);
	}
}

/* Starts the attempt from a clean slate: body from its start, sink empty. */
static bool reset_attempt(os_http *h)
{
	h->cc = CURLE_OK;
	h->status = 0;
	h->curl_err[0] = 0;
	h->err_len = 0;
	h->err_body[0] = 0;
	h->content_length = -1;
	h->etag[0] = 0;
	free(h->captured);
	h->captured = NULL;
	if (h->body) {
		h->body->pos = 0;
		h->body->err = 0;
	}
	os_sink *k = h->sink;
	if (!k)
		return true;
	k->len = 0;
	k->over_max = false;
	k->err = 0;
	if (k->hasher)
		cairn_hasher_reset(k->hasher);
	if (k->kind == OS_SINK_FD && ftruncate(k->fd, 0) != 0) {
		k->err = errno;
		return false;
	}
	return true;
}

void os_http_perform(os_worker *w, os_http *h)
{
	assert(w->curl && h->auth && h->url && h->method);
	if (!reset_attempt(h)) {
		h->cc = CURLE_WRITE_ERROR;
		return;
	}
	CURL *c = w->curl;
	exchange x = {.h = h, .curl = c};
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, h->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* keys may hold "/./" or "//": send them as they are */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);   /* threads: no SIGALRM for DNS timeouts */
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->curl_err);
	if (h->auth->sigv4) {
		curl_easy_setopt(c, CURLOPT_AWS_SIGV4, h->auth->sigv4);
		curl_easy_setopt(c, CURLOPT_USERNAME, h->auth->access_key);
		curl_easy_setopt(c, CURLOPT_PASSWORD, h->auth->secret_key);
	}
	struct curl_slist *headers = make_headers(h);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, read_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
	set_method(c, h);
	set_timeouts(c, h);
	h->cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &h->status);
	curl_off_t cl = -1;
	curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	h->content_length = cl;
	/* The options point at this frame and at headers: drop them before either goes. */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(headers);
}
