/* cairn cas put: uploads a file with ByteStream Write (resumable, optionally zstd-compressed) or
 * BatchUpdateBlobs. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "cmd/cas.h"

#define METHOD_WRITE "/google.bytestream.ByteStream/Write"
#define METHOD_QUERY "/google.bytestream.ByteStream/QueryWriteStatus"
#define METHOD_BATCH "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs"

/* Produces the bytes to send, chunk by chunk: the file itself, or its zstd compression. */
typedef struct payload {
	FILE *f;
	ZSTD_CCtx *zc;
	uint8_t *in, *out;
	size_t cap, out_cap;
	int64_t produced; /* bytes produced so far */
	bool done;        /* the last chunk was produced */
} payload;

static cairn_status payload_open(payload *p, const char *path, const cas_opts *o)
{
	memset(p, 0, sizeof *p);
	p->f = fopen(path, "rb");
	if (!p->f)
		return cairn_errno(errno, "open %s", path);
	p->cap = (size_t)o->chunk_size;
	p->in = cairn_xmalloc(p->cap);
	if (cas_zstd(o)) {
		p->zc = ZSTD_createCCtx();
		/* room for the chunk plus what the compressor may still hold from earlier ones */
		p->out_cap = ZSTD_compressBound(p->cap + ZSTD_CStreamInSize()) + 1024;
		p->out = cairn_xmalloc(p->out_cap);
	}
	return cairn_ok();
}

static void payload_close(payload *p)
{
	if (p->f)
		fclose(p->f);
	ZSTD_freeCCtx(p->zc);
	free(p->in);
	free(p->out);
}

/* Next chunk into *data; sets p->done with the last one (which may be empty). */
static size_t payload_next(payload *p, uint8_t **data)
{
	for (;;) {
		size_t n = fread(p->in, 1, p->cap, p->f);
		bool eof = n < p->cap;
		if (!p->zc) {
			*data = p->in;
			p->done = eof;
			p->produced += (int64_t)n;
			return n;
		}
		ZSTD_inBuffer in = {p->in, n, 0};
		ZSTD_outBuffer out = {p->out, p->out_cap, 0};
		size_t r;
		do
			r = ZSTD_compressStream2(p->zc, &out, &in, eof ? ZSTD_e_end : ZSTD_e_continue);
		while (!ZSTD_isError(r) && (in.pos < in.size || (eof && r != 0)) && out.pos < out.size);
		p->done = eof;
		if (out.pos || eof) {
			*data = p->out;
			p->produced += (int64_t)out.pos;
			return out.pos;
		}
	}
}

static void resource_name(const cas_opts *o, const cairn_digest *d, const char *id, char *out, size_t cap)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(d->hash, hex);
	snprintf(out, cap, "%s%suploads/%s/%s/%s/%" PRId64, o->c.instance, o->c.instance[0] ? "/" : "", id,
	         cas_zstd(o) ? "compressed-blobs/zstd" : "blobs", hex, d->size);
}

/* Where an earlier upload with the same name stopped (0 if none). */
static int64_t resume_offset(rpc_channel *ch, const char *name)
{
	Google__Bytestream__QueryWriteStatusRequest q = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	q.resource_name = (char *)name;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, METHOD_QUERY, &q.base,
	                            &google__bytestream__query_write_status_response__descriptor, &resp, 30000);
	if (!cairn_is_ok(&st))
		return 0;
	Google__Bytestream__QueryWriteStatusResponse *r = (Google__Bytestream__QueryWriteStatusResponse *)resp;
	int64_t c = r->complete ? -1 : r->committed_size;
	protobuf_c_message_free_unpacked(resp, NULL);
	return c;
}

/* Sends the payload from `offset` on; stops early (breaking the stream) after `stop_after` bytes if >= 0. */
static cairn_status send_payload(rpc_stream *s, payload *p, const char *name, int64_t offset, int64_t stop_after)
{
	Google__Bytestream__WriteRequest req = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
	int64_t sent = 0;
	bool first = true;
	while (!p->done) {
		uint8_t *data;
		size_t n = payload_next(p, &data);
		int64_t start = p->produced - (int64_t)n;
		if (p->produced < offset || (p->produced == offset && !p->done))
			continue; /* committed by the interrupted upload */
		size_t skip = start < offset ? (size_t)(offset - start) : 0;
		req.resource_name = first ? (char *)name : "";
		req.write_offset = start + (int64_t)skip;
		req.data.data = data + skip;
		req.data.len = n - skip;
		req.finish_write = p->done;
		if (stop_after >= 0 && sent + (int64_t)req.data.len >= stop_after) {
			req.data.len = (size_t)(stop_after - sent);
			req.finish_write = false;
			cairn_status st = rpc_stream_send(s, &req.base);
			return cairn_is_ok(&st) ? cairn_err(CAIRN_ABORTED, "interrupted after %" PRId64 " bytes as asked",
			                                    stop_after)
			                        : st;
		}
		cairn_status st = rpc_stream_send(s, &req.base);
		if (!cairn_is_ok(&st))
			return st;
		sent += (int64_t)req.data.len;
		first = false;
	}
	return rpc_stream_close_send(s);
}

static cairn_status put_bytestream(rpc_channel *ch, const cas_opts *o, const char *path, const cairn_digest *d)
{
	char id[64], name[512];
	if (o->upload_id[0])
		snprintf(id, sizeof id, "%s", o->upload_id);
	else
		snprintf(id, sizeof id, "%016" PRIx64 "%016" PRIx64, (uint64_t)cairn_wall_ns(), (uint64_t)rand());
	resource_name(o, d, id, name, sizeof name);
	int64_t offset = o->upload_id[0] ? resume_offset(ch, name) : 0;
	if (offset < 0)
		return cairn_ok(); /* the server has the blob already */
	if (offset > 0)
		fprintf(stderr, "cairn cas put: resuming %s at byte %" PRId64 "\n", path, offset);
	payload p;
	cairn_status st = payload_open(&p, path, o);
	if (!cairn_is_ok(&st))
		return st;
	rpc_stream *s;
	st = rpc_stream_open(ch, METHOD_WRITE, o->c.timeout * 1000, &s);
	if (cairn_is_ok(&st))
		st = send_payload(s, &p, name, offset, o->interrupt_after);
	ProtobufCMessage *resp = NULL;
	if (cairn_is_ok(&st))
		st = rpc_stream_recv(s, &google__bytestream__write_response__descriptor, &resp);
	bool interrupted = st.code == CAIRN_ABORTED;
	cairn_status fst = rpc_stream_finish(s, NULL, NULL);
	/* A server that fails the upload early ends the call while the client still sends: the send
	 * breaks, and the call's status says why (unless it is only the cancel of a broken stream). */
	if (!cairn_is_ok(&fst) && (cairn_is_ok(&st) || (!interrupted && fst.code != CAIRN_CANCELLED)))
		st = fst;
	if (cairn_is_ok(&st) && (!resp || ((Google__Bytestream__WriteResponse *)resp)->committed_size != p.produced))
		st = cairn_err(CAIRN_INTERNAL, "server did not commit the whole upload");
	if (interrupted)
		fprintf(stderr, "cairn cas put: upload %s interrupted; resume with --upload_id=%s\n", path, id);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	payload_close(&p);
	return st;
}

cairn_status cas_upload_bytes(rpc_channel *ch, const cas_opts *o, const void *data, size_t n, const cairn_digest *d)
{
	size_t zcap = ZSTD_compressBound(n);
	uint8_t *z = cas_zstd(o) ? cairn_xmalloc(zcap) : NULL;
	Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request one =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__REQUEST__INIT;
	Build__Bazel__Remote__Execution__V2__Digest dpb;
	char hex[CAIRN_HASH_HEX_LEN + 1];
	client_digest_pb(d, hex, &dpb);
	one.digest = &dpb;
	one.data.data = (uint8_t *)data;
	one.data.len = n;
	if (z) {
		one.data.data = z;
		one.data.len = ZSTD_compress(z, zcap, data, n, 1);
		one.compressor = BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__ZSTD;
	}
	Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request *ones[1] = {&one};
	Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__INIT;
	req.instance_name = (char *)o->c.instance;
	req.n_requests = 1;
	req.requests = ones;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, METHOD_BATCH, &req.base,
	                            &build__bazel__remote__execution__v2__batch_update_blobs_response__descriptor, &resp,
	                            o->c.timeout * 1000);
	if (cairn_is_ok(&st)) {
		Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse *r = (void *)resp;
		if (r->n_responses != 1 || !r->responses[0]->status)
			st = cairn_err(CAIRN_INTERNAL, "server answered %zu blobs for 1", r->n_responses);
		else if (r->responses[0]->status->code)
			st = cairn_err(r->responses[0]->status->code, "%s", r->responses[0]->status->message);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	free(z);
	return st;
}

static cairn_status put_batch(rpc_channel *ch, const cas_opts *o, const char *path, const cairn_digest *d)
{
	payload p;
	/* one chunk larger than the file reads it whole */
	cairn_status st = payload_open(&p, path, &(cas_opts){.chunk_size = d->size + 1, .compressor = "identity"});
	if (!cairn_is_ok(&st))
		return st;
	uint8_t *data;
	size_t n = payload_next(&p, &data);
	st = cas_upload_bytes(ch, o, data, n, d);
	payload_close(&p);
	return st;
}

cairn_status cas_upload_file(rpc_channel *ch, const cas_opts *o, const char *path, cairn_digest *d)
{
	cairn_status st = client_digest_file(path, d);
	if (cairn_is_ok(&st) && o->as_digest[0])
		st = cairn_digest_parse_path(o->as_digest, strlen(o->as_digest), d);
	if (cairn_is_ok(&st))
		st = o->batch ? put_batch(ch, o, path, d) : put_bytestream(ch, o, path, d);
	return st;
}
