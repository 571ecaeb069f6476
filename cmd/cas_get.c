/* cairn cas get: downloads a blob with ByteStream Read (optionally zstd, optionally a range) or
 * BatchReadBlobs, and verifies it when it is whole. BatchReadBlobs has no ranges: with --offset or
 * --limit it reads the whole blob, verifies it, and writes only the range. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "cmd/cas.h"

#define METHOD_READ "/google.bytestream.ByteStream/Read"
#define METHOD_BATCH "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs"

/* Writes what arrives, decompressing if needed, hashing as it goes; of the blob's bytes, only those
 * from `from` on and, with a limit, before `to` are written (a range cut here, for BatchReadBlobs). */
typedef struct sink {
	FILE *out;
	ZSTD_DCtx *zd;
	uint8_t *zbuf;
	cairn_hasher *h;
	int64_t bytes;
	int64_t from, to; /* to < 0: to the end */
} sink;

static cairn_status sink_write(sink *k, const uint8_t *data, size_t len)
{
	int64_t start = k->bytes, end = start + (int64_t)len;
	cairn_hasher_update(k->h, data, len);
	k->bytes = end;
	int64_t lo = start > k->from ? start : k->from, hi = k->to >= 0 && k->to < end ? k->to : end;
	if (lo >= hi)
		return cairn_ok();
	size_t n = (size_t)(hi - lo);
	return fwrite(data + (lo - start), 1, n, k->out) == n ? cairn_ok() : cairn_errno(errno, "write output");
}

static cairn_status sink_put(sink *k, const uint8_t *data, size_t len)
{
	if (len == 0)
		return cairn_ok(); /* protobuf-c gives NULL for empty bytes */
	if (!k->zd)
		return sink_write(k, data, len);
	ZSTD_inBuffer in = {data, len, 0};
	while (in.pos < in.size) {
		ZSTD_outBuffer ob = {k->zbuf, ZSTD_DStreamOutSize(), 0};
		size_t r = ZSTD_decompressStream(k->zd, &ob, &in);
		if (ZSTD_isError(r))
			return cairn_err(CAIRN_DATA_LOSS, "server sent corrupt zstd data: %s", ZSTD_getErrorName(r));
		cairn_status st = sink_write(k, k->zbuf, ob.pos);
		if (!cairn_is_ok(&st))
			return st;
	}
	return cairn_ok();
}

static cairn_status get_bytestream(rpc_channel *ch, const cas_opts *o, const cairn_digest *d, sink *k)
{
	char hex[CAIRN_HASH_HEX_LEN + 1], name[512];
	cairn_hash_hex(d->hash, hex);
	snprintf(name, sizeof name, "%s%s%s/%s/%" PRId64, o->c.instance, o->c.instance[0] ? "/" : "",
	         cas_zstd(o) ? "compressed-blobs/zstd" : "blobs", hex, d->size);
	Google__Bytestream__ReadRequest req = GOOGLE__BYTESTREAM__READ_REQUEST__INIT;
	req.resource_name = name;
	req.read_offset = o->offset;
	req.read_limit = o->limit;
	rpc_stream *s;
	cairn_status st = rpc_stream_open(ch, METHOD_READ, o->c.timeout * 1000, &s);
	if (cairn_is_ok(&st))
		st = rpc_stream_send(s, &req.base);
	if (cairn_is_ok(&st))
		st = rpc_stream_close_send(s);
	while (cairn_is_ok(&st)) {
		ProtobufCMessage *m;
		st = rpc_stream_recv(s, &google__bytestream__read_response__descriptor, &m);
		if (!cairn_is_ok(&st) || !m)
			break;
		Google__Bytestream__ReadResponse *r = (Google__Bytestream__ReadResponse *)m;
		st = sink_put(k, r->data.data, r->data.len);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	cairn_status fst = rpc_stream_finish(s, NULL, NULL);
	return cairn_is_ok(&fst) ? st : fst;
}

static cairn_status get_batch(rpc_channel *ch, const cas_opts *o, const cairn_digest *d, sink *k)
{
	Build__Bazel__Remote__Execution__V2__Digest dpb, *dpbs[1] = {&dpb};
	char hex[CAIRN_HASH_HEX_LEN + 1];
	client_digest_pb(d, hex, &dpb);
	Build__Bazel__Remote__Execution__V2__Compressor__Value zstd = BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__ZSTD;
	Build__Bazel__Remote__Execution__V2__BatchReadBlobsRequest req = BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_READ_BLOBS_REQUEST__INIT;
	req.instance_name = (char *)o->c.instance;
	req.n_digests = 1;
	req.digests = dpbs;
	if (cas_zstd(o)) {
		req.n_acceptable_compressors = 1;
		req.acceptable_compressors = &zstd;
	}
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, METHOD_BATCH, &req.base, &build__bazel__remote__execution__v2__batch_read_blobs_response__descriptor,
	                            &resp, o->c.timeout * 1000);
	if (!cairn_is_ok(&st))
		return st;
	Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse *r = (void *)resp;
	if (r->n_responses != 1 || !r->responses[0]->status)
		st = cairn_err(CAIRN_INTERNAL, "server answered %zu blobs for 1", r->n_responses);
	else if (r->responses[0]->status->code)
		st = cairn_err(r->responses[0]->status->code, "%s", r->responses[0]->status->message);
	else if (r->responses[0]->compressor != BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__IDENTITY && !k->zd)
		st = cairn_err(CAIRN_INTERNAL, "server compressed a blob it was not asked to");
	else
		st = sink_put(k, r->responses[0]->data.data, r->responses[0]->data.len);
	protobuf_c_message_free_unpacked(resp, NULL);
	return st;
}

int cas_get_blob(rpc_channel *ch, const cas_opts *o, const cairn_digest *d)
{
	FILE *out = stdout;
	if (o->output[0] && !(out = fopen(o->output, "wb"))) {
		cairn_status st = cairn_errno(errno, "open %s", o->output);
		return client_fail("cas get", "output", &st);
	}
	cairn_status st = cas_get_to(ch, o, d, out);
	if (out != stdout && fclose(out) != 0 && cairn_is_ok(&st))
		st = cairn_errno(errno, "close %s", o->output);
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_is_ok(&st) ? 0 : client_fail("cas get", cairn_digest_str(d, ds), &st);
}

cairn_status cas_get_to(rpc_channel *ch, const cas_opts *o, const cairn_digest *d, FILE *out)
{
	sink k = {.out = out, .h = cairn_hasher_new(), .to = -1};
	if (o->batch) {
		k.from = o->offset;
		k.to = o->limit ? o->offset + o->limit : -1;
	}
	if (cas_zstd(o)) {
		k.zd = ZSTD_createDCtx();
		k.zbuf = cairn_xmalloc(ZSTD_DStreamOutSize());
	}
	cairn_status st = o->batch ? get_batch(ch, o, d, &k) : get_bytestream(ch, o, d, &k);
	bool whole = o->batch || (o->offset == 0 && (o->limit == 0 || o->limit >= d->size));
	if (cairn_is_ok(&st) && o->batch && o->offset > k.bytes)
		st = cairn_err(CAIRN_OUT_OF_RANGE, "offset %" PRId64 " is beyond the blob's %" PRId64 " bytes", o->offset, k.bytes);
	if (cairn_is_ok(&st) && whole) {
		cairn_digest got = {.size = k.bytes};
		cairn_hasher_final(k.h, got.hash);
		if (!cairn_digest_eq(&got, d))
			st = cairn_err(CAIRN_DATA_LOSS, "downloaded bytes do not match the digest");
	}
	cairn_hasher_free(k.h);
	ZSTD_freeDCtx(k.zd);
	free(k.zbuf);
	return st;
}
