/* Helpers shared by the services: digest and status messages, whole-blob writes. */
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
