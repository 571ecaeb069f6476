/* ByteStream Read: a blob (or a range of it) streamed in chunks straight from the store's buffers,
 * zstd-compressed on the fly for compressed-blobs names. One chunk is read while none is being sent:
 * each send's completion is the back-pressure that paces the reads. */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Well under the 4 MiB a gRPC client accepts by default, framing included. */
#define CHUNK (1u << 20)

typedef struct bs_read {
	rpc_call *call;
	blobstore_reader *r;
	uint64_t off, end;
	ZSTD_CCtx *zc; /* compressed-blobs only */
	uint8_t *buf;
} bs_read;

static void bs_read_free(void *state)
{
	bs_read *b = state;
	if (b->r)
		blobstore_close_read(b->r);
	ZSTD_freeCCtx(b->zc);
	free(b->buf);
	free(b);
}

static void finish(bs_read *b, cairn_status st)
{
	rpc_call_finish(b->call, &st, NULL, NULL, 0, NULL, NULL);
}

/* ReadResponse.data is field 10, length-delimited: tag 0x52, then the length as a varint. */
static size_t response_head(size_t len, uint8_t head[11])
{
	size_t n = 0;
	head[n++] = 0x52;
	do {
		uint8_t byte = len & 0x7f;
		len >>= 7;
		head[n++] = byte | (len ? 0x80 : 0);
	} while (len);
	return n;
}

static void read_next(bs_read *b);

static void sent(rpc_call *call, void *arg, bool ok)
{
	(void)call;
	bs_read *b = arg;
	if (!ok)
		return finish(b, cairn_err(CAIRN_CANCELLED, "client went away"));
	read_next(b);
}

static void send_chunk(bs_read *b, uint8_t *data, size_t len)
{
	uint8_t head[11];
	size_t hn = response_head(len, head);
	rpc_call_send_zerocopy(b->call, head, hn, data, len, free, sent, b);
}

static void compress_and_send(bs_read *b, size_t n)
{
	bool last = b->off == b->end;
	size_t cap = ZSTD_compressBound(n) + 64;
	uint8_t *out = cairn_xmalloc(cap);
	ZSTD_inBuffer in = {b->buf, n, 0};
	ZSTD_outBuffer ob = {out, cap, 0};
	size_t r;
	do {
		r = ZSTD_compressStream2(b->zc, &ob, &in, last ? ZSTD_e_end : ZSTD_e_continue);
	} while (!ZSTD_isError(r) && (in.pos < in.size || (last && r != 0)) && ob.pos < ob.size);
	if (ZSTD_isError(r) || in.pos < in.size || (last && r != 0)) {
		free(out);
		return finish(b, cairn_err(CAIRN_INTERNAL, "zstd compression failed"));
	}
	if (ob.pos == 0) { /* the compressor kept everything for now */
		free(out);
		return read_next(b);
	}
	send_chunk(b, out, ob.pos);
}

static void got_chunk(void *arg, cairn_status st, size_t n)
{
	bs_read *b = arg;
	if (!cairn_is_ok(&st))
		return finish(b, st);
	if (n == 0)
		return finish(b, cairn_err(CAIRN_DATA_LOSS, "blob ended before its size"));
	b->off += n;
	if (b->zc)
		return compress_and_send(b, n);
	uint8_t *data = b->buf;
	b->buf = NULL; /* the transport owns it now */
	send_chunk(b, data, n);
}

static void read_next(bs_read *b)
{
	if (b->off >= b->end)
		return finish(b, cairn_ok());
	size_t n = b->end - b->off < CHUNK ? (size_t)(b->end - b->off) : CHUNK;
	if (!b->buf)
		b->buf = cairn_xmalloc(CHUNK);
	blobstore_read(b->r, b->off, b->buf, n, got_chunk, b);
}

static void opened(void *arg, cairn_status st, blobstore_reader *r)
{
	bs_read *b = arg;
	if (!cairn_is_ok(&st))
		return finish(b, st);
	b->r = r;
	if (b->zc && b->off == b->end)
		return compress_and_send(b, 0); /* an empty range still gets a (tiny) zstd frame */
	read_next(b);
}

void gw_bs_read(rpc_call *call, void *svc)
{
	gateway *g = svc;
	Google__Bytestream__ReadRequest *req = rpc_call_unpack_request(call, &google__bytestream__read_request__descriptor);
	gateway_resource res;
	cairn_status st = req ? gateway_parse_read_resource(req->resource_name, strlen(req->resource_name), &res)
	                      : gw_malformed("ReadRequest");
	if (cairn_is_ok(&st) && (req->read_offset < 0 || req->read_offset > res.digest.size))
		st = cairn_err(CAIRN_OUT_OF_RANGE, "read_offset %lld is outside the blob's %lld bytes",
		               (long long)req->read_offset, (long long)res.digest.size);
	if (cairn_is_ok(&st) && req->read_limit < 0)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "read_limit %lld is negative", (long long)req->read_limit);
	if (!cairn_is_ok(&st)) {
		rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
		return;
	}
	bs_read *b = cairn_xcalloc(1, sizeof *b);
	rpc_call_set_state(call, b, bs_read_free);
	b->call = call;
	b->off = (uint64_t)req->read_offset;
	b->end = (uint64_t)res.digest.size;
	if (req->read_limit > 0 && (uint64_t)req->read_limit < b->end - b->off)
		b->end = b->off + (uint64_t)req->read_limit;
	if (res.compressor == GATEWAY_ZSTD) {
		b->zc = ZSTD_createCCtx();
		ZSTD_CCtx_setParameter(b->zc, ZSTD_c_compressionLevel, 1);
	}
	blobstore_open_read(g->cfg.cas, &res.digest, opened, b);
}
