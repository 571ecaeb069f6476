/* Uploads through the GCS JSON API.
 *
 * Below the threshold, one multipart request (uploadType=multipart): a multipart/related body of
 * the object's metadata, as JSON, and its bytes. Above it, a resumable upload: the metadata opens a
 * session (uploadType=resumable; its URI comes back in Location), then the bytes go in chunks of a
 * multiple of 256 KiB, each a PUT to the session with "Content-Range: bytes FIRST-LAST/TOTAL",
 * streamed from the file. The server answers 308 with "Range: bytes=0-N" (what it holds) until the
 * last chunk, then 200 with the object's resource. After a failed chunk, the next attempt asks the
 * server where it got to (an empty PUT with "Content-Range: bytes * /TOTAL", without the space) and
 * goes on from there. An abandoned session costs nothing and expires by itself.
 *
 * The metadata of both kinds carries the body's MD5 (md5Hash, base64): GCS hashes what it got and
 * refuses the upload with 400 if they differ, so corrupted bytes are never stored. A caller's known
 * SHA-256 is checked while the MD5 is computed, before anything is sent. */
#include "objstore/gcs.h"

#include <assert.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_ANSWER_MAX (1 << 20)

typedef struct scan {
	EVP_MD_CTX *md5;
	cairn_hasher *sha; /* or NULL */
	uint8_t *copy;     /* or NULL */
	size_t copied;
} scan;

static void scan_piece(void *arg, const uint8_t *p, size_t n)
{
	scan *sc = arg;
	EVP_DigestUpdate(sc->md5, p, n);
	if (sc->sha)
		cairn_hasher_update(sc->sha, p, n);
	if (sc->copy) {
		memcpy(sc->copy + sc->copied, p, n);
		sc->copied += n;
	}
}

/* One pass over src: its MD5 in base64 (as md5Hash wants it), the check of a known SHA-256, and a
 * copy of the bytes into `copy` unless it is NULL. */
static cairn_status read_source(const os_source *src, const uint8_t *sha256, uint8_t *copy, const char *label,
                                char **md5_b64)
{
	*md5_b64 = NULL;
	scan sc = {.md5 = EVP_MD_CTX_new(), .sha = sha256 ? cairn_hasher_new() : NULL, .copy = copy};
	if (!sc.md5 || EVP_DigestInit_ex(sc.md5, EVP_md5(), NULL) != 1)
		abort(); /* out of memory, or an OpenSSL without MD5: nothing a request can do about either */
	cairn_status st = os_source_scan(src, scan_piece, &sc);
	uint8_t md5[16], sha[32];
	unsigned int md5_len = 0;
	EVP_DigestFinal_ex(sc.md5, md5, &md5_len);
	if (sc.sha)
		cairn_hasher_final(sc.sha, sha);
	if (!cairn_is_ok(&st))
		st = cairn_err(st.code, "%s: %s", label, st.msg);
	else if (sc.sha && memcmp(sha, sha256, 32) != 0)
		st = cairn_err(CAIRN_DATA_LOSS, "%s: the bytes do not match the given SHA-256 (a wrong digest, or the file changed)",
		               label);
	else
		*md5_b64 = os_base64(md5, md5_len, false);
	EVP_MD_CTX_free(sc.md5);
	if (sc.sha)
		cairn_hasher_free(sc.sha);
	return st;
}

static char *metadata_json(const char *name, const char *md5)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "md5Hash", json_object_new_string(md5));
	json_object_object_add(o, "contentType", json_object_new_string("application/octet-stream"));
	char *s = cairn_xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return s;
}

/* GCS says that an upload's bytes did not match its md5Hash only in words: 400, reason "invalid",
 * and a message naming the hashes. That refusal is DATA_LOSS, as S3's BadDigest is. */
static cairn_status hash_refused(const os_http *h, cairn_status st)
{
	if (h->cc != CURLE_OK || h->status != 400)
		return st;
	char *code, *msg;
	os_json_google_error(h->err_body, h->err_len, &code, &msg);
	bool hash = msg && strcasestr(msg, "hash") && strcasestr(msg, "match");
	free(code);
	free(msg);
	return hash ? cairn_err(CAIRN_DATA_LOSS, "%s", st.msg) : st;
}

/* The object resource an upload ends with: it must hold all the bytes that were sent. */
static cairn_status check_object(const os_sink *answer, int64_t total, const char *label)
{
	int64_t size;
	cairn_status st = os_json_gcs_size((const char *)answer->buf, answer->len, &size);
	if (!cairn_is_ok(&st))
		return cairn_err(st.code, "%s: %s", label, st.msg);
	if (size != total)
		return cairn_err(CAIRN_DATA_LOSS, "%s: GCS stored %lld bytes of %lld", label, (long long)size, (long long)total);
	return st;
}

/* ---- one multipart request ------------------------------------------------------------------------ */

static void make_boundary(os_worker *w, char out[48])
{
	snprintf(out, 48, "cairn-%016llx%016llx", (unsigned long long)os_rng_next(&w->rng),
	         (unsigned long long)os_rng_next(&w->rng));
}

static cairn_status put_multipart(os_worker *w, const os_gcs *g, const char *key, os_source *src, const uint8_t *sha256,
                                  const char *label)
{
	char *name = os_asprintf("%s%s", g->prefix, key);
	/* The bytes are read straight into the body, after room for the part headers and the metadata
	 * (JSON escapes a byte in at most six). */
	size_t len = (size_t)src->len, room = 512 + 6 * strlen(name);
	uint8_t *buf = cairn_xmalloc(room + len + 64), *data = buf + room;
	char *md5;
	cairn_status st = read_source(src, sha256, data, label, &md5);
	if (!cairn_is_ok(&st)) {
		free(buf);
		free(name);
		return st;
	}
	char boundary[48];
	do
		make_boundary(w, boundary);
	while (memmem(data, len, boundary, strlen(boundary)));
	char *meta = metadata_json(name, md5);
	char *head = os_asprintf("--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n%s\r\n--%s\r\n"
	                         "Content-Type: application/octet-stream\r\n\r\n",
	                         boundary, meta, boundary);
	size_t hl = strlen(head);
	assert(hl <= room);
	memcpy(data - hl, head, hl);
	int tl = snprintf((char *)data + len, 64, "\r\n--%s--\r\n", boundary);
	os_source body = {.mem = data - hl, .len = (int64_t)(hl + len + (size_t)tl)};
	char ctype[96], *url = os_asprintf("%s?uploadType=multipart", g->uploads);
	snprintf(ctype, sizeof ctype, "multipart/related; boundary=%s", boundary);
	os_sink answer = {.kind = OS_SINK_MEM, .max = UPLOAD_ANSWER_MAX};
	os_http h = {.auth = &g->auth, .method = "POST", .url = url, .content_type = ctype, .body = &body, .sink = &answer};
	st = hash_refused(&h, os_gcs_exchange(w, &h, label, w->s->max_retries));
	if (cairn_is_ok(&st))
		st = check_object(&answer, src->len, label);
	free(answer.buf);
	free(url);
	free(head);
	free(meta);
	free(md5);
	free(buf);
	free(name);
	return st;
}

/* ---- a resumable upload ------------------------------------------------------------------------------ */

static cairn_status start_session(os_worker *w, const os_gcs *g, const char *key, const char *md5, int64_t total,
                                  const char *label, char **session)
{
	char *name = os_asprintf("%s%s", g->prefix, key), *meta = metadata_json(name, md5);
	char *url = os_asprintf("%s?uploadType=resumable", g->uploads), length[64];
	snprintf(length, sizeof length, "X-Upload-Content-Length: %lld", (long long)total);
	const char *headers[] = {"X-Upload-Content-Type: application/octet-stream", length, NULL};
	os_source body = {.mem = (const uint8_t *)meta, .len = (int64_t)strlen(meta)};
	os_http h = {.auth = &g->auth, .method = "POST", .url = url, .headers = headers, .body = &body,
	             .content_type = "application/json; charset=UTF-8", .capture = "Location"};
	cairn_status st = os_gcs_exchange(w, &h, label, w->s->max_retries);
	*session = NULL;
	if (cairn_is_ok(&st) && (!h.captured || (strncmp(h.captured, "https://", 8) && strncmp(h.captured, "http://", 7))))
		st = cairn_err(CAIRN_INTERNAL, "%s: the answer has no session URI (Location)", label);
	if (cairn_is_ok(&st)) {
		*session = h.captured;
		h.captured = NULL;
	}
	free(h.captured);
	free(url);
	free(meta);
	free(name);
	return st;
}

/* After a chunk or a status query was answered with 308 or 2xx: whether the object is complete,
 * and else how many bytes the server holds (its Range; none without one). */
static cairn_status progress(const os_http *h, int64_t total, const char *label, bool *done, int64_t *held)
{
	*done = h->status != 308;
	if (*done)
		return check_object(h->sink, total, label);
	*held = 0;
	if (!h->captured)
		return cairn_ok();
	long long first, last;
	int n = 0;
	if (sscanf(h->captured, "bytes=%lld-%lld%n", &first, &last, &n) != 2 || h->captured[n] || first != 0 || last < 0 ||
	    last >= total)
		return cairn_err(CAIRN_INTERNAL, "%s: the server holds a range the upload cannot go on from: %.60s", label,
		                 h->captured);
	*held = last + 1;
	return cairn_ok();
}

/* Asks the server how much of the session's bytes it holds (or whether the object is complete). */
static cairn_status query(os_worker *w, const os_gcs *g, const char *session, int64_t total, const char *label,
                          os_sink *answer, bool *done, int64_t *held)
{
	char range[64], qlabel[160];
	snprintf(range, sizeof range, "Content-Range: bytes */%lld", (long long)total);
	snprintf(qlabel, sizeof qlabel, "%s (status)", label);
	const char *headers[] = {range, NULL};
	os_source empty = {.mem = (const uint8_t *)""};
	os_http h = {.auth = &g->auth, .method = "PUT", .url = session, .headers = headers, .body = &empty, .sink = answer,
	             .also_ok = 308, .capture = "Range"};
	cairn_status st = os_gcs_exchange(w, &h, qlabel, w->s->max_retries);
	if (cairn_is_ok(&st))
		st = progress(&h, total, label, done, held);
	free(h.captured);
	return st;
}

/* Sends the chunk that starts at `held`. After a failure worth another attempt, waits its backoff
 * and asks the server where it got to instead. *done and *now as progress() sets them. */
static cairn_status send_chunk(os_worker *w, const os_gcs *g, const char *session, const os_source *src, int64_t held,
                               const char *label, os_sink *answer, int *failures, bool *done, int64_t *now)
{
	int64_t total = src->len, n = total - held < g->chunk ? total - held : g->chunk;
	os_source part = {.mem = src->mem, .fd = src->fd, .off = src->off + held, .len = n};
	char range[96];
	snprintf(range, sizeof range, "Content-Range: bytes %lld-%lld/%lld", (long long)held, (long long)(held + n - 1),
	         (long long)total);
	const char *headers[] = {range, NULL};
	os_http h = {.auth = &g->auth, .method = "PUT", .url = session, .headers = headers, .body = &part, .sink = answer,
	             .also_ok = 308, .capture = "Range"};
	cairn_status st = hash_refused(&h, os_gcs_exchange(w, &h, label, 0));
	if (cairn_is_ok(&st))
		st = progress(&h, total, label, done, now);
	else if (os_retry_pause(w, &h, (*failures)++, w->s->max_retries, label))
		st = query(w, g, session, total, label, answer, done, now);
	free(h.captured);
	return st;
}

static cairn_status put_resumable(os_worker *w, const os_gcs *g, const char *key, os_source *src,
                                  const uint8_t *sha256, const char *label)
{
	char *md5, *session = NULL;
	cairn_status st = read_source(src, sha256, NULL, label, &md5);
	if (cairn_is_ok(&st))
		st = start_session(w, g, key, md5, src->len, label, &session);
	os_sink answer = {.kind = OS_SINK_MEM, .max = UPLOAD_ANSWER_MAX};
	int64_t held = 0;
	int failures = 0, stalls = 0, chunks = 0;
	for (bool done = false; cairn_is_ok(&st) && !done; chunks++) {
		int64_t now = held;
		st = send_chunk(w, g, session, src, held, label, &answer, &failures, &done, &now);
		/* A server that keeps answering without taking bytes must not keep us here. */
		if (cairn_is_ok(&st) && !done && now <= held && ++stalls > w->s->max_retries)
			st = cairn_err(CAIRN_UNAVAILABLE, "%s: the upload makes no progress (the server holds %lld of %lld bytes)",
			               label, (long long)now, (long long)src->len);
		else if (now > held)
			stalls = failures = 0; /* each chunk gets the retries a whole request would */
		held = now;
	}
	if (cairn_is_ok(&st))
		LOG_DEBUG(OS_MOD, "resumable upload done key=%s bytes=%lld requests=%d chunk_size=%lld", key,
		          (long long)src->len, chunks, (long long)g->chunk);
	free(answer.buf);
	free(session);
	free(md5);
	return st;
}

cairn_status os_gcs_put(os_worker *w, const char *key, os_source *src, const uint8_t *sha256)
{
	const os_gcs *g = w->s->be;
	char label[128];
	os_label("gs", "PUT", key, label, sizeof label);
	cairn_status st = src->len < g->threshold ? put_multipart(w, g, key, src, sha256, label)
	                                          : put_resumable(w, g, key, src, sha256, label);
	if (cairn_is_ok(&st))
		atomic_fetch_add(&w->s->bytes_up, (uint64_t)src->len);
	return st;
}
