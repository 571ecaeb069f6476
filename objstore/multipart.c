/* S3 multipart uploads: initiate, upload parts (each signed with its own SHA-256, so the store checks
 * every part's bytes), complete with the parts' ETags; abort on any failure so no parts are left
 * billed. Two users share these steps:
 *
 *  - os_s3_multipart uploads a whole file or buffer: its parts go one after the other on this
 *    transfer thread's connection. Running them in parallel would need transfer threads to wait on
 *    each other (a deadlock once every thread holds a big upload) or a second pool; one connection
 *    already moves 150–250 MB/s to a nearby store, and several objects upload at once anyway, one per
 *    thread. If the caller gave the whole object's SHA-256 (a CAS digest), it is checked while the
 *    parts are hashed and the upload is aborted on a mismatch, before the object becomes visible: S3
 *    itself only checks parts.
 *  - the streaming back-end operations (os_s3_stream_*) run one step per job, so the parts of one
 *    upload go out on several transfer threads at once, each part a job of its own (stream.c).
 *
 * Radosgw answers CompleteMultipartUpload with an empty <ETag> (HEAD has the right one); nothing here
 * reads that ETag. */
#include "objstore/internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char empty_sha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static cairn_status initiate(os_worker *w, const os_s3 *b, const char *key, char **id)
{
	char label[128];
	os_param p = {"uploads", ""};
	char *q = os_query(&p, 1), *url = os_s3_url(b, key, q);
	os_source none = {.mem = (const uint8_t *)""};
	os_sink answer = {.kind = OS_SINK_MEM, .max = 1 << 20};
	os_http h = {.auth = &b->auth, .method = "POST", .url = url, .payload_sha256 = empty_sha256,
	             .content_type = "application/octet-stream", .body = &none, .sink = &answer};
	cairn_status st = os_s3_exchange(w, &h, os_s3_label(b, "POST ?uploads", key, label, sizeof label));
	*id = NULL;
	if (cairn_is_ok(&st)) {
		*id = os_xml_first((const char *)answer.buf, answer.len, "UploadId");
		if (!*id || !**id) {
			free(*id);
			*id = NULL;
			st = cairn_err(CAIRN_INTERNAL, "%s: no UploadId in the answer", label);
		}
	}
	free(answer.buf);
	free(url);
	free(q);
	return st;
}

/* Sends one part; its ETag comes back in *etag (malloc'd). */
static cairn_status put_part(os_worker *w, const os_s3 *b, const char *key, const char *id, int number,
                             os_source *part, const uint8_t sha256[32], char **etag)
{
	char num[16], hex[CAIRN_HASH_HEX_LEN + 1], what[48], label[160];
	snprintf(num, sizeof num, "%d", number);
	snprintf(what, sizeof what, "PUT part %d", number);
	cairn_hash_hex(sha256, hex);
	os_param p[2] = {{"partNumber", num}, {"uploadId", id}};
	char *q = os_query(p, 2), *url = os_s3_url(b, key, q);
	os_http h = {.auth = &b->auth, .method = "PUT", .url = url, .payload_sha256 = hex, .body = part};
	cairn_status st = os_s3_exchange(w, &h, os_s3_label(b, what, key, label, sizeof label));
	free(url);
	free(q);
	*etag = NULL;
	if (!cairn_is_ok(&st))
		return st;
	/* The ETag goes back verbatim into the completion's XML: it must not be able to change its shape. */
	if (!h.etag[0] || strpbrk(h.etag, "<>&"))
		return cairn_err(CAIRN_INTERNAL, "%s: the answer has no usable ETag", label);
	*etag = cairn_xstrdup(h.etag);
	atomic_fetch_add(&w->s->bytes_up, (uint64_t)part->len);
	return cairn_ok();
}

static char *completion_xml(char *const *etags, int n)
{
	size_t cap = 64;
	for (int i = 0; i < n; i++)
		cap += strlen(etags[i]) + 80;
	char *xml = cairn_xmalloc(cap), *o = xml;
	o += sprintf(o, "<CompleteMultipartUpload>");
	for (int i = 0; i < n; i++)
		o += sprintf(o, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i + 1, etags[i]);
	o += sprintf(o, "</CompleteMultipartUpload>");
	assert((size_t)(o - xml) < cap);
	return xml;
}

static cairn_status complete(os_worker *w, const os_s3 *b, const char *key, const char *id, char *const *etags,
                             int n)
{
	char label[128], hex[CAIRN_HASH_HEX_LEN + 1];
	char *xml = completion_xml(etags, n);
	cairn_digest d;
	cairn_digest_of(xml, strlen(xml), &d);
	cairn_hash_hex(d.hash, hex);
	os_param p = {"uploadId", id};
	char *q = os_query(&p, 1), *url = os_s3_url(b, key, q);
	os_source body = {.mem = (const uint8_t *)xml, .len = (int64_t)strlen(xml)};
	os_sink answer = {.kind = OS_SINK_MEM, .max = 1 << 20};
	os_http h = {.auth = &b->auth, .method = "POST", .url = url, .payload_sha256 = hex,
	             .content_type = "application/xml", .body = &body, .sink = &answer};
	cairn_status st = os_s3_exchange(w, &h, os_s3_label(b, "POST ?uploadId", key, label, sizeof label));
	/* S3 may answer 200 and still report an error in the body, once the work took long. */
	char *code = cairn_is_ok(&st) ? os_xml_first((const char *)answer.buf, answer.len, "Code") : NULL;
	if (code) {
		char *msg = os_xml_first((const char *)answer.buf, answer.len, "Message");
		int c = strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ? CAIRN_UNAVAILABLE
		                                                                              : CAIRN_FAILED_PRECONDITION;
		st = cairn_err(c, "%s: 200 with error %s: %s", label, code, msg ? msg : "");
		free(msg);
		free(code);
	}
	free(answer.buf);
	free(url);
	free(q);
	free(xml);
	return st;
}

/* A failed abort leaves parts the bucket's lifecycle rule must reap; it is logged. An upload the
 * store no longer knows is gone already. */
static cairn_status abort_upload(os_worker *w, const os_s3 *b, const char *key, const char *id)
{
	char label[128];
	os_param p = {"uploadId", id};
	char *q = os_query(&p, 1), *url = os_s3_url(b, key, q);
	os_http h = {.auth = &b->auth, .method = "DELETE", .url = url, .payload_sha256 = empty_sha256};
	cairn_status st = os_s3_exchange(w, &h, os_s3_label(b, "DELETE ?uploadId", key, label, sizeof label));
	if (st.code == CAIRN_NOT_FOUND && strstr(st.msg, " NoSuchUpload"))
		st = cairn_ok();
	if (!cairn_is_ok(&st))
		LOG_WARN(OS_MOD, "aborting a multipart upload failed: %s upload_id=%s", cairn_status_str(&st), id);
	free(url);
	free(q);
	return st;
}

int64_t os_part_size_for(int64_t part_size, int64_t size)
{
	int64_t ps = part_size;
	while ((size + ps - 1) / ps > OS_MAX_PARTS)
		ps *= 2;
	return ps;
}

/* ---- a whole object, part after part on this thread ------------------------------------------- */

typedef struct upload {
	os_worker *w;
	const os_s3 *b;
	const char *key;
	char *id;
	char **etags;
	int nparts;
} upload;

static cairn_status upload_parts(upload *u, os_source *src, const uint8_t *sha256)
{
	int64_t ps = os_part_size_for(u->w->s->part_size, src->len);
	cairn_hasher *ph = cairn_hasher_new(), *whole = sha256 ? cairn_hasher_new() : NULL;
	cairn_status st = cairn_ok();
	for (int64_t off = 0; off < src->len && cairn_is_ok(&st); off += ps) {
		os_source part = {.mem = src->mem, .fd = src->fd, .off = src->off + off};
		part.len = src->len - off < ps ? src->len - off : ps;
		uint8_t hash[32];
		cairn_hasher_reset(ph);
		st = os_source_hash(&part, ph, whole);
		cairn_hasher_final(ph, hash);
		if (cairn_is_ok(&st))
			st = put_part(u->w, u->b, u->key, u->id, u->nparts + 1, &part, hash, &u->etags[u->nparts]);
		if (cairn_is_ok(&st))
			u->nparts++;
	}
	if (cairn_is_ok(&st) && whole) {
		uint8_t got[32];
		cairn_hasher_final(whole, got);
		if (memcmp(got, sha256, 32) != 0) {
			char label[128];
			st = cairn_err(CAIRN_DATA_LOSS,
			               "%s: the bytes do not match the given SHA-256 (a wrong digest, or the file changed)",
			               os_s3_label(u->b, "PUT", u->key, label, sizeof label));
		}
	}
	cairn_hasher_free(ph);
	if (whole)
		cairn_hasher_free(whole);
	return st;
}

cairn_status os_s3_multipart(os_worker *w, const os_s3 *b, const char *key, os_source *src, const uint8_t *sha256)
{
	assert(src->len > 0);
	upload u = {.w = w, .b = b, .key = key};
	int64_t ps = os_part_size_for(w->s->part_size, src->len);
	u.etags = cairn_xcalloc((size_t)((src->len + ps - 1) / ps), sizeof *u.etags);
	cairn_status st = initiate(w, b, key, &u.id);
	if (cairn_is_ok(&st)) {
		st = upload_parts(&u, src, sha256);
		if (cairn_is_ok(&st))
			st = complete(w, b, key, u.id, u.etags, u.nparts);
		if (!cairn_is_ok(&st))
			abort_upload(w, b, key, u.id);
		else
			LOG_DEBUG(OS_MOD, "multipart upload done key=%s bytes=%lld parts=%d part_size=%lld", key,
			          (long long)src->len, u.nparts, (long long)ps);
	}
	for (int i = 0; i < u.nparts; i++)
		free(u.etags[i]);
	free(u.etags);
	free(u.id);
	return st;
}

/* ---- the streaming back-end operations: one step per call -------------------------------------- */

cairn_status os_s3_stream_begin(os_worker *w, const char *key, char **id) { return initiate(w, w->s->be, key, id); }

cairn_status os_s3_stream_part(os_worker *w, const char *key, const char *id, int number, os_source *src,
                               char **etag)
{
	uint8_t hash[32];
	cairn_hasher *h = cairn_hasher_new();
	cairn_status st = os_source_hash(src, h, NULL);
	cairn_hasher_final(h, hash);
	cairn_hasher_free(h);
	if (!cairn_is_ok(&st))
		return st;
	return put_part(w, w->s->be, key, id, number, src, hash, etag);
}

cairn_status os_s3_stream_complete(os_worker *w, const char *key, const char *id, char *const *etags, int n)
{
	return complete(w, w->s->be, key, id, etags, n);
}

cairn_status os_s3_stream_abort(os_worker *w, const char *key, const char *id)
{
	return abort_upload(w, w->s->be, key, id);
}
