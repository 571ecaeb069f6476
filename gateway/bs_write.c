/* ByteStream Write and QueryWriteStatus.
 *
 * A Write call receives one message at a time and hands its data to the blob writer; the next message
 * is received only when the writer took the data, so a fast client cannot queue more than one message
 * per call in memory. compressed-blobs/zstd uploads are decompressed on the way. When the stream breaks
 * before finish_write, the upload is parked so that the client can resume it at committed_size (found
 * with QueryWriteStatus); a write whose bytes do not match the digest fails with INVALID_ARGUMENT and
 * leaves nothing behind.
 *
 * Disk space: the store reserves room for the bytes a writer took (and a short grant ahead), so an
 * open upload holds no more than its client sent. A parked upload gives back the grant (blobstore_pause)
 * and keeps its bytes for upload_idle_ns. A stream whose client sends nothing for upload_idle_ns (it
 * stalled, or its host vanished without closing the connection, which gRPC would not notice for
 * hours) is ended with DEADLINE_EXCEEDED: the server's time limit ran out, and clients retry that
 * code, as they do an upload. Its upload is dropped, not parked — a client that went silent is not
 * known to come back, and what it held is what the limit is there to free — so its retry starts
 * again at write_offset 0 (QueryWriteStatus answers NOT_FOUND for it). */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

/* A client may send a few messages without data (keep-alives of sorts), not an endless stream of them. */
#define MAX_EMPTY_MESSAGES 64

typedef struct bs_write {
	rpc_call *call;
	gateway *g;
	upload *up;
	rpc_msg *msg;      /* the message being written, in the transport's buffers */
	gw_write_req req;  /* its fields; data as views into msg */
	size_t seg;        /* next data segment to write */
	ZSTD_inBuffer zin; /* compressed-blobs: the segment being decompressed */
	bool frame_done;   /* the zstd frame is complete */
	int empty;         /* consecutive messages without data */
	gw_handoff handoff;
	cairn_status wst;  /* outcome of the last piece's write */
} bs_write;

static void drop_message(bs_write *w)
{
	gw_write_req_clear(&w->req);
	rpc_msg_free(w->msg);
	w->msg = NULL;
}

static void bs_write_free(void *state)
{
	bs_write *w = state;
	drop_message(w);
	gw_upload_free(w->up);
	free(w);
}

static void fail(bs_write *w, cairn_status st)
{
	gw_upload_free(w->up); /* aborts the blob: nothing of it stays */
	w->up = NULL;
	drop_message(w);
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
	gw_upload_free(w->up);
	w->up = NULL;
	rpc_call_finish(w->call, &st, &resp.base, NULL, 0, NULL, NULL);
}

static void on_message(rpc_call *call, void *arg, bool ok, rpc_msg *msg);

/* The current message's data is all in the writer. */
static void message_done(bs_write *w)
{
	bool finish = w->req.finish_write;
	drop_message(w);
	if (!finish)
		return rpc_call_recv_raw(w->call, on_message, w);
	if (w->up->zd && !w->frame_done)
		return fail(w, cairn_err(CAIRN_INVALID_ARGUMENT, "zstd stream ended before its frame was complete"));
	blobstore_commit(w->up->w, committed, w);
}

/* The next piece of blob bytes to write: a data segment, or what it decompresses to. Returns false
 * when the message is used up; *len may be 0 for a piece that produced nothing yet. */
static bool next_piece(bs_write *w, const uint8_t **data, size_t *len, cairn_status *st)
{
	*len = 0;
	if (!w->up->zd) {
		if (w->seg >= w->req.nseg)
			return false;
		*data = w->req.segs[w->seg].data;
		*len = w->req.segs[w->seg++].len;
		return true;
	}
	if (w->zin.pos >= w->zin.size) {
		if (w->seg >= w->req.nseg)
			return false;
		w->zin = (ZSTD_inBuffer){w->req.segs[w->seg].data, w->req.segs[w->seg].len, 0};
		w->seg++;
	}
	ZSTD_outBuffer out = {w->up->zbuf, ZSTD_DStreamOutSize(), 0};
	size_t r = ZSTD_decompressStream(w->up->zd, &out, &w->zin);
	if (ZSTD_isError(r)) {
		*st = cairn_err(CAIRN_INVALID_ARGUMENT, "zstd data is corrupt: %s", ZSTD_getErrorName(r));
		return false;
	}
	w->frame_done = r == 0;
	*data = w->up->zbuf;
	*len = out.pos;
	return true;
}

static void written(void *arg, cairn_status st);

/* Writes the message's pieces one after another; pieces the writer takes at once loop here instead
 * of recursing. */
static void feed(bs_write *w)
{
	for (;;) {
		if (!cairn_is_ok(&w->wst))
			return fail(w, w->wst);
		const uint8_t *data;
		size_t len;
		cairn_status st = cairn_ok();
		if (!next_piece(w, &data, &len, &st))
			return cairn_is_ok(&st) ? message_done(w) : fail(w, st);
		if (len == 0)
			continue;
		gw_handoff_arm(&w->handoff);
		blobstore_write(w->up->w, data, len, written, w);
		if (!gw_handoff_starter_goes_on(&w->handoff))
			return;
	}
}

static void written(void *arg, cairn_status st)
{
	bs_write *w = arg;
	w->wst = st;
	if (gw_handoff_callback_goes_on(&w->handoff))
		feed(w);
}

/* First message of the call: find or start the upload it names. */
static cairn_status attach(bs_write *w)
{
	const gw_write_req *m = &w->req;
	if (!m->name || !m->name[0])
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the first WriteRequest must name the resource");
	upload *up = gw_upload_take(w->g->uploads, m->name);
	if (up && m->write_offset == 0) {
		gw_upload_free(up); /* the client starts over */
		up = NULL;
	}
	if (up) {
		w->up = up;
		return cairn_ok();
	}
	if (m->write_offset != 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "write_offset %lld for an upload that is not in progress",
		                 (long long)m->write_offset);
	return gw_upload_new(w->g->cfg.cas, m->name, &w->up);
}

static cairn_status check_message(bs_write *w)
{
	const gw_write_req *m = &w->req;
	if (m->name && m->name[0] && strcmp(m->name, w->up->name) != 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "resource_name changed within one Write");
	if (m->write_offset != w->up->committed)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "write_offset %lld does not match the %lld bytes committed",
		                 (long long)m->write_offset, (long long)w->up->committed);
	w->empty = m->data_len || m->finish_write ? 0 : w->empty + 1;
	if (w->empty > MAX_EMPTY_MESSAGES)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%d WriteRequests in a row without data", MAX_EMPTY_MESSAGES);
	return cairn_ok();
}

/* The stream ended before finish_write: a broken stream or a half-close parks the upload for a
 * resume; an idle one drops it. */
static void stream_ended(bs_write *w, bool ok)
{
	cairn_status st;
	if (rpc_call_timed_out(w->call)) {
		if (w->up)
			LOG_INFO("gateway", "upload dropped: its client sent nothing for %lld s resource=%s committed=%lld",
			         (long long)(w->g->cfg.upload_idle_ns / 1000000000), w->up->name, (long long)w->up->committed);
		gw_upload_free(w->up);
		st = cairn_err(CAIRN_DEADLINE_EXCEEDED, "upload idle"); /* the client has the timeout's own status */
	} else {
		if (w->up)
			gw_upload_park(w->g->uploads, w->up, cairn_now_ns());
		st = ok ? cairn_err(CAIRN_INVALID_ARGUMENT, "stream closed before finish_write")
		        : cairn_err(CAIRN_CANCELLED, "stream broke");
	}
	w->up = NULL;
	rpc_call_finish(w->call, &st, NULL, NULL, 0, NULL, NULL);
}

static void on_message(rpc_call *call, void *arg, bool ok, rpc_msg *msg)
{
	(void)call;
	bs_write *w = arg;
	if (!ok || !msg)
		return stream_ended(w, ok);
	w->msg = msg;
	size_t nparts;
	const rpc_part *parts = rpc_msg_parts(msg, &nparts);
	cairn_status st = gw_decode_write(parts, nparts, &w->req);
	if (cairn_is_ok(&st) && !w->up)
		st = attach(w);
	if (cairn_is_ok(&st))
		st = check_message(w);
	if (!cairn_is_ok(&st))
		return fail(w, st);
	w->up->committed += (int64_t)w->req.data_len;
	w->seg = 0;
	w->zin = (ZSTD_inBuffer){0};
	w->wst = cairn_ok();
	feed(w);
}

void gw_bs_write(rpc_call *call, void *svc)
{
	bs_write *w = cairn_xcalloc(1, sizeof *w);
	w->call = call;
	w->g = svc;
	rpc_call_set_state(call, w, bs_write_free);
	int64_t idle = w->g->cfg.upload_idle_ns;
	cairn_status st = cairn_err(CAIRN_DEADLINE_EXCEEDED,
	                            "no WriteRequest came for %g s, the server's upload idle timeout: the upload was "
	                            "dropped with the bytes it had sent; write the blob again from write_offset 0",
	                            (double)idle / 1e9);
	rpc_call_set_idle_timeout(call, idle, &st);
	rpc_call_recv_raw(call, on_message, w);
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
	int64_t c = gw_upload_committed(g->uploads, req->resource_name);
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
