/* ByteStream Write and QueryWriteStatus.
 *
 * A Write call receives one message at a time and hands its data to the blob writer; the next message
 * is received only when the writer took the data, so a fast client cannot queue more than one message
 * per call in memory. compressed-blobs/zstd uploads are decompressed on the way. When the stream breaks
 * before finish_write, the upload is parked so that the client can resume it at committed_size (found
 * with QueryWriteStatus); a write whose bytes do not match the digest fails with INVALID_ARGUMENT and
 * leaves nothing behind. */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

typedef Google__Bytestream__WriteRequest write_req;

typedef struct bs_write {
	rpc_call *call;
	gateway *g;
	upload *up;
	write_req *msg; /* the message being written */
	ZSTD_inBuffer zin;
	bool frame_done; /* the zstd frame is complete */
	gw_handoff handoff;
	cairn_status wst; /* outcome of the last zstd piece's write */
} bs_write;

static void bs_write_free(void *state)
{
	bs_write *w = state;
	if (w->msg)
		google__bytestream__write_request__free_unpacked(w->msg, NULL);
	upload_free(w->up);
	free(w);
}

static void fail(bs_write *w, cairn_status st)
{
	upload_free(w->up); /* aborts the blob: nothing of it stays */
	w->up = NULL;
	rpc_call_finish(w->call, &st, NULL, NULL, 0, NULL, NULL);
}

static void committed(void *arg, cairn_status st)
{
	bs_write *w = arg;
	w->up->w = NULL; /* commit freed the writer, whatever the outcome */
	if (!cairn_is_ok(&st))
		return fail(w, st);
	Google__Bytestream__WriteResponse resp = GOOGLE__BYTESTREAM__WRITE_RESPONSE__INIT;
	resp.committed_size = w->up->committed;
	upload_free(w->up);
	w->up = NULL;
	rpc_call_finish(w->call, &st, &resp.base, NULL, 0, NULL, NULL);
}

static void on_message(rpc_call *call, void *arg, bool ok, const uint8_t *data, size_t len);

/* The current message's data is all in the writer. */
static void message_done(bs_write *w)
{
	bool finish = w->msg->finish_write;
	google__bytestream__write_request__free_unpacked(w->msg, NULL);
	w->msg = NULL;
	if (!finish)
		return rpc_call_recv(w->call, on_message, w);
	if (w->up->zd && !w->frame_done)
		return fail(w, cairn_err(CAIRN_INVALID_ARGUMENT, "zstd stream ended before its frame was complete"));
	blob_commit(w->up->w, committed, w);
}

static void zwritten(void *arg, cairn_status st);

/* Decompresses the message's data piece by piece into the writer; pieces the writer takes at once
 * loop here instead of recursing. */
static void zstd_feed(bs_write *w)
{
	for (;;) {
		if (!cairn_is_ok(&w->wst))
			return fail(w, w->wst);
		if (w->zin.pos >= w->zin.size)
			return message_done(w);
		ZSTD_outBuffer out = {w->up->zbuf, ZSTD_DStreamOutSize(), 0};
		size_t r = ZSTD_decompressStream(w->up->zd, &out, &w->zin);
		if (ZSTD_isError(r))
			return fail(w, cairn_err(CAIRN_INVALID_ARGUMENT, "zstd data is corrupt: %s", ZSTD_getErrorName(r)));
		w->frame_done = r == 0;
		if (out.pos == 0)
			continue;
		gw_handoff_arm(&w->handoff);
		blob_write(w->up->w, w->up->zbuf, out.pos, zwritten, w);
		if (!gw_handoff_starter_goes_on(&w->handoff))
			return;
	}
}

static void zwritten(void *arg, cairn_status st)
{
	bs_write *w = arg;
	w->wst = st;
	if (gw_handoff_callback_goes_on(&w->handoff))
		zstd_feed(w);
}

static void written(void *arg, cairn_status st)
{
	bs_write *w = arg;
	if (!cairn_is_ok(&st))
		return fail(w, st);
	message_done(w);
}

/* First message of the call: find or start the upload it names. */
static cairn_status attach(bs_write *w)
{
	const write_req *m = w->msg;
	if (!m->resource_name[0])
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the first WriteRequest must name the resource");
	upload *up = upload_take(w->g->uploads, m->resource_name);
	if (up && m->write_offset == 0) {
		upload_free(up); /* the client starts over */
		up = NULL;
	}
	if (up) {
		w->up = up;
		return cairn_ok();
	}
	if (m->write_offset != 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "write_offset %lld for an upload that is not in progress",
		                 (long long)m->write_offset);
	return upload_new(w->g->cfg.cas, m->resource_name, &w->up);
}

static cairn_status check_message(bs_write *w)
{
	const write_req *m = w->msg;
	if (m->resource_name[0] && strcmp(m->resource_name, w->up->name) != 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "resource_name changed within one Write");
	if (m->write_offset != w->up->committed)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "write_offset %lld does not match the %lld bytes committed",
		                 (long long)m->write_offset, (long long)w->up->committed);
	return cairn_ok();
}

static void on_message(rpc_call *call, void *arg, bool ok, const uint8_t *data, size_t len)
{
	(void)call;
	bs_write *w = arg;
	if (!ok || !data) {
		/* broken stream, or a half-close before finish_write: keep the upload for a resume */
		if (w->up)
			upload_park(w->g->uploads, w->up);
		w->up = NULL;
		cairn_status st = ok ? cairn_err(CAIRN_INVALID_ARGUMENT, "stream closed before finish_write")
		                     : cairn_err(CAIRN_CANCELLED, "stream broke");
		rpc_call_finish(w->call, &st, NULL, NULL, 0, NULL, NULL);
		return;
	}
	if (rpc_strings_valid(&google__bytestream__write_request__descriptor, data, len))
		w->msg = google__bytestream__write_request__unpack(NULL, len, data);
	if (!w->msg)
		return fail(w, gw_malformed("WriteRequest"));
	cairn_status st = w->up ? cairn_ok() : attach(w);
	if (cairn_is_ok(&st))
		st = check_message(w);
	if (!cairn_is_ok(&st))
		return fail(w, st);
	w->up->committed += (int64_t)w->msg->data.len;
	if (w->up->zd) {
		w->zin = (ZSTD_inBuffer){w->msg->data.data, w->msg->data.len, 0};
		w->wst = cairn_ok();
		return zstd_feed(w);
	}
	if (w->msg->data.len == 0)
		return message_done(w);
	blob_write(w->up->w, w->msg->data.data, w->msg->data.len, written, w);
}

void gw_bs_write(rpc_call *call, void *svc)
{
	bs_write *w = cairn_xcalloc(1, sizeof *w);
	w->call = call;
	w->g = svc;
	rpc_call_set_state(call, w, bs_write_free);
	rpc_call_recv(call, on_message, w);
}

/* ---- QueryWriteStatus ---- */

typedef struct query_ctx {
	rpc_call *call;
	cairn_digest d;
	uint8_t missing;
} query_ctx;

static void query_found(void *arg, cairn_status st)
{
	query_ctx *q = arg;
	Google__Bytestream__QueryWriteStatusResponse resp = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
	if (cairn_is_ok(&st) && q->missing)
		st = cairn_err(CAIRN_NOT_FOUND, "no upload in progress and no such blob");
	resp.committed_size = q->d.size;
	resp.complete = true;
	rpc_call_reply(q->call, &resp.base, &st);
}

void gw_bs_query(rpc_call *call, void *svc)
{
	gateway *g = svc;
	Google__Bytestream__QueryWriteStatusRequest *req =
		rpc_call_unpack_request(call, &google__bytestream__query_write_status_request__descriptor);
	gateway_resource res;
	cairn_status st = req ? gateway_parse_write_resource(req->resource_name, strlen(req->resource_name), &res)
	                      : gw_malformed("QueryWriteStatusRequest");
	if (!cairn_is_ok(&st))
		return rpc_call_reply(call, NULL, &st);
	int64_t c = upload_committed(g->uploads, req->resource_name);
	if (c >= 0) {
		Google__Bytestream__QueryWriteStatusResponse resp = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
		resp.committed_size = c;
		return rpc_call_reply(call, &resp.base, &st);
	}
	query_ctx *q = cairn_arena_alloc(rpc_call_arena(call), sizeof *q);
	q->call = call;
	q->d = res.digest;
	blobstore_find_missing(g->cfg.cas, &q->d, 1, &q->missing, query_found, q);
}
