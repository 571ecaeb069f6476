/* Helpers shared by the services: digest and status messages, whole-blob reads and writes. */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

cairn_status gw_malformed(const char *what)
{
	return cairn_err(CAIRN_INVALID_ARGUMENT,
	                 "malformed %s: not a valid message, or a string field that is not UTF-8 or holds a NUL byte",
	                 what);
}

rpc_status_pb *gw_status_to_pb(cairn_arena *a, const cairn_status *st)
{
	rpc_status_pb *pb = cairn_arena_alloc(a, sizeof *pb);
	google__rpc__status__init(pb);
	pb->code = st->code;
	if (st->msg[0])
		pb->message = cairn_arena_strndup(a, st->msg, strlen(st->msg));
	return pb;
}

cairn_status gw_check_digest_function(int fn)
{
	if (fn == BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__UNKNOWN ||
	    fn == BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256)
		return cairn_ok();
	return cairn_err(CAIRN_INVALID_ARGUMENT, "digest function %d is not supported: cairn uses SHA256", fn);
}

cairn_status gw_check_digest_request(bool decoded, const char *what, int digest_function, const re_digest *pb,
                                     const char *field, cairn_digest *out)
{
	if (!decoded)
		return gw_malformed(what);
	cairn_status st = gw_check_digest_function(digest_function);
	return cairn_is_ok(&st) ? reapi_digest_from_pb(pb, field, out) : st;
}

/* ---- whole-blob read ---- */

typedef struct read_all {
	blobstore *bs;
	blobstore_reader *r;
	uint8_t *data;
	size_t len;
	gw_read_all_cb cb;
	void *arg;
} read_all;

static void read_all_done(read_all *ra, cairn_status st)
{
	if (ra->r)
		blobstore_close_read(ra->r);
	if (!cairn_is_ok(&st)) {
		free(ra->data);
		ra->cb(ra->arg, st, NULL, 0);
	} else {
		ra->cb(ra->arg, st, ra->data, ra->len);
	}
	free(ra);
}

static void read_all_read(void *arg, cairn_status st, size_t n)
{
	read_all *ra = arg;
	if (cairn_is_ok(&st) && n != ra->len)
		st = cairn_err(CAIRN_DATA_LOSS, "blob is shorter than its digest says");
	read_all_done(ra, st);
}

static void read_all_open(void *arg, cairn_status st, blobstore_reader *r)
{
	read_all *ra = arg;
	if (!cairn_is_ok(&st)) {
		read_all_done(ra, st);
		return;
	}
	ra->r = r;
	if (ra->len == 0) {
		read_all_done(ra, cairn_ok());
		return;
	}
	ra->data = cairn_xmalloc(ra->len);
	blobstore_read(r, 0, ra->data, ra->len, read_all_read, ra);
}

void gw_read_all(blobstore *bs, const cairn_digest *d, int64_t max, gw_read_all_cb cb, void *arg)
{
	if (d->size > max) {
		char ds[CAIRN_DIGEST_STR_MAX];
		cb(arg, cairn_err(CAIRN_RESOURCE_EXHAUSTED, "blob %s is larger than %lld bytes", cairn_digest_str(d, ds),
		                  (long long)max),
		   NULL, 0);
		return;
	}
	read_all *ra = cairn_xcalloc(1, sizeof *ra);
	ra->bs = bs;
	ra->len = (size_t)d->size;
	ra->cb = cb;
	ra->arg = arg;
	blobstore_open_read(bs, d, read_all_open, ra);
}

/* ---- whole-blob write ---- */

typedef struct write_all {
	blobstore_writer *w;
	blobstore_done_cb cb;
	void *arg;
} write_all;

static void write_all_committed(void *arg, cairn_status st)
{
	write_all *wa = arg;
	wa->cb(wa->arg, st);
	free(wa);
}

static void write_all_written(void *arg, cairn_status st)
{
	write_all *wa = arg;
	if (!cairn_is_ok(&st)) {
		blobstore_abort(wa->w);
		write_all_committed(wa, st);
		return;
	}
	blobstore_commit(wa->w, write_all_committed, wa);
}

void gw_write_all(blobstore *bs, const cairn_digest *d, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	blobstore_writer *w;
	cairn_status st = blobstore_open_write(bs, d, &w);
	if (!cairn_is_ok(&st)) {
		cb(arg, st);
		return;
	}
	write_all *wa = cairn_xmalloc(sizeof *wa);
	wa->w = w;
	wa->cb = cb;
	wa->arg = arg;
	if (len == 0)
		write_all_written(wa, cairn_ok());
	else
		blobstore_write(w, data, len, write_all_written, wa);
}
