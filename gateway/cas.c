/* ContentAddressableStorage: FindMissingBlobs, BatchUpdateBlobs and BatchReadBlobs. */
#include "gateway/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest find_req;
typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse find_resp;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest update_req;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse update_resp;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse__Response update_one;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsRequest read_req;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse read_resp;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse__Response read_one;

#define ZSTD_VALUE BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__ZSTD
#define IDENTITY_VALUE BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__IDENTITY
/* FindMissingBlobs requests are bounded by the message size; this bounds the work of one call too. */
#define MAX_FIND_DIGESTS 1000000

static void reply_error(rpc_call *call, cairn_status st) { rpc_call_reply(call, NULL, &st); }

/* ---- FindMissingBlobs ---- */

typedef struct find_ctx {
	rpc_call *call;
	cairn_digest *ds;
	uint8_t *missing;
	size_t n;
	re_digest **pbs;
} find_ctx;

static void find_done(void *arg, cairn_status st)
{
	find_ctx *f = arg;
	if (!cairn_is_ok(&st)) {
		reply_error(f->call, st);
		return;
	}
	find_resp resp = BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_RESPONSE__INIT;
	resp.missing_blob_digests = cairn_arena_alloc(rpc_call_arena(f->call), f->n * sizeof(re_digest *));
	for (size_t i = 0; i < f->n; i++)
		if (f->missing[i])
			resp.missing_blob_digests[resp.n_missing_blob_digests++] = f->pbs[i];
	rpc_call_reply(f->call, &resp.base, &st);
}

void gw_find_missing(rpc_call *call, void *svc)
{
	gateway *g = svc;
	find_req *req = rpc_call_unpack_request(call, &build__bazel__remote__execution__v2__find_missing_blobs_request__descriptor);
	if (!req)
		return reply_error(call, gw_malformed("FindMissingBlobsRequest"));
	cairn_status st = gw_check_digest_function(req->digest_function);
	if (!cairn_is_ok(&st))
		return reply_error(call, st);
	if (req->n_blob_digests > MAX_FIND_DIGESTS)
		return reply_error(call, cairn_err(CAIRN_INVALID_ARGUMENT, "%zu digests in one call; at most %d",
		                                   req->n_blob_digests, MAX_FIND_DIGESTS));
	cairn_arena *a = rpc_call_arena(call);
	find_ctx *f = cairn_arena_alloc(a, sizeof *f);
	f->call = call;
	f->n = req->n_blob_digests;
	f->pbs = req->blob_digests;
	f->ds = cairn_arena_alloc(a, f->n * sizeof *f->ds);
	f->missing = cairn_arena_alloc(a, f->n);
	for (size_t i = 0; i < f->n; i++) {
		st = reapi_digest_from_pb(req->blob_digests[i], "blob_digests", &f->ds[i]);
		if (!cairn_is_ok(&st))
			return reply_error(call, st);
	}
	blobstore_find_missing(g->cfg.cas, f->ds, f->n, f->missing, find_done, f);
}

/* ---- BatchUpdateBlobs ---- */

typedef struct update_ctx {
	rpc_call *call;
	update_resp resp;
	atomic_size_t pending;
} update_ctx;

typedef struct update_item {
	update_ctx *u;
	update_one *one;
	void *owned; /* decompressed bytes, freed when the write is done */
	cairn_status st; /* holds the message the response points at */
} update_item;

static void update_finish(update_ctx *u)
{
	if (atomic_fetch_sub(&u->pending, 1) != 1)
		return;
	cairn_status ok = cairn_ok();
	rpc_call_reply(u->call, &u->resp.base, &ok);
}

static void update_written(void *arg, cairn_status st)
{
	update_item *it = arg;
	/* callbacks run on several threads and the arena is not thread-safe: keep the message in the item */
	it->st = st;
	it->one->status->code = st.code;
	if (!cairn_is_ok(&st))
		it->one->status->message = it->st.msg;
	free(it->owned);
	it->owned = NULL;
	update_finish(it->u);
}

/* Decompresses a zstd frame whose content must be exactly d->size bytes. */
static cairn_status unzstd(const ProtobufCBinaryData *in, const cairn_digest *d, void **out)
{
	unsigned long long n = ZSTD_getFrameContentSize(in->data, in->len);
	if (n == ZSTD_CONTENTSIZE_ERROR)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "data is not a zstd frame");
	if (n != ZSTD_CONTENTSIZE_UNKNOWN && n != (unsigned long long)d->size)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "zstd frame holds %llu bytes, digest says %lld", n,
		                 (long long)d->size);
	void *buf = cairn_xmalloc((size_t)d->size);
	size_t r = ZSTD_decompress(buf, (size_t)d->size, in->data, in->len);
	if (ZSTD_isError(r) || r != (size_t)d->size) {
		free(buf);
		return cairn_err(CAIRN_INVALID_ARGUMENT, "zstd data does not decompress to the digest's size");
	}
	*out = buf;
	return cairn_ok();
}

static void update_one_blob(gateway *g, update_item *it,
                            const Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request *r)
{
	cairn_digest d;
	cairn_status st = reapi_digest_from_pb(r->digest, "digest", &d);
	const void *data = r->data.data;
	size_t len = r->data.len;
	if (cairn_is_ok(&st) && r->compressor == ZSTD_VALUE) {
		st = unzstd(&r->data, &d, &it->owned);
		data = it->owned;
		len = (size_t)d.size;
	} else if (cairn_is_ok(&st) && r->compressor != IDENTITY_VALUE) {
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "compressor %d is not supported", (int)r->compressor);
	}
	if (cairn_is_ok(&st) && (int64_t)len != d.size)
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "blob has %zu bytes, its digest says %lld", len, (long long)d.size);
	if (!cairn_is_ok(&st))
		return update_written(it, st);
	gw_write_all(g->cfg.cas, &d, data, len, update_written, it);
}

void gw_batch_update(rpc_call *call, void *svc)
{
	gateway *g = svc;
	update_req *req = rpc_call_unpack_request(call, &build__bazel__remote__execution__v2__batch_update_blobs_request__descriptor);
	if (!req)
		return reply_error(call, gw_malformed("BatchUpdateBlobsRequest"));
	cairn_status st = gw_check_digest_function(req->digest_function);
	if (!cairn_is_ok(&st))
		return reply_error(call, st);
	/* sizes count only when valid: a negative one must not hide the others from the limit */
	int64_t total = 0;
	for (size_t i = 0; i < req->n_requests; i++) {
		const re_digest *d = req->requests[i]->digest;
		if (d && d->size_bytes > 0)
			total += d->size_bytes < CAIRN_MAX_BLOB_SIZE ? d->size_bytes : CAIRN_MAX_BLOB_SIZE;
	}
	if (total > g->cfg.max_batch_size)
		return reply_error(call, cairn_err(CAIRN_INVALID_ARGUMENT,
		                                   "batch of %lld bytes is over max_batch_total_size_bytes %lld: use ByteStream",
		                                   (long long)total, (long long)g->cfg.max_batch_size));
	cairn_arena *a = rpc_call_arena(call);
	update_ctx *u = cairn_arena_alloc(a, sizeof *u);
	u->call = call;
	build__bazel__remote__execution__v2__batch_update_blobs_response__init(&u->resp);
	u->resp.n_responses = req->n_requests;
	u->resp.responses = cairn_arena_alloc(a, req->n_requests * sizeof(update_one *));
	update_item *items = cairn_arena_alloc(a, req->n_requests * sizeof *items);
	for (size_t i = 0; i < req->n_requests; i++) {
		update_one *one = cairn_arena_alloc(a, sizeof *one);
		build__bazel__remote__execution__v2__batch_update_blobs_response__response__init(one);
		one->digest = req->requests[i]->digest;
		one->status = gw_status_to_pb(a, &(cairn_status){0});
		u->resp.responses[i] = one;
		items[i] = (update_item){.u = u, .one = one};
	}
	/* one extra count so that the reply waits until every blob was started */
	atomic_init(&u->pending, req->n_requests + 1);
	for (size_t i = 0; i < req->n_requests; i++)
		update_one_blob(g, &items[i], req->requests[i]);
	update_finish(u);
}

/* ---- BatchReadBlobs ---- */

typedef struct read_ctx {
	rpc_call *call;
	read_resp resp;
	atomic_size_t pending;
} read_ctx;

typedef struct read_item {
	read_ctx *r;
	read_one *one;
	bool zstd;
	cairn_status st;
} read_item;

/* Runs when the call is freed, after the response was packed and sent. */
static void read_free_data(void *state)
{
	read_resp *resp = &((read_ctx *)state)->resp;
	for (size_t i = 0; i < resp->n_responses; i++)
		free(resp->responses[i]->data.data);
}

static void read_finish(read_ctx *r)
{
	if (atomic_fetch_sub(&r->pending, 1) != 1)
		return;
	cairn_status ok = cairn_ok();
	rpc_call_reply(r->call, &r->resp.base, &ok);
}

static void read_got(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	read_item *it = arg;
	if (cairn_is_ok(&st) && it->zstd && len > 0) {
		size_t cap = ZSTD_compressBound(len);
		uint8_t *z = cairn_xmalloc(cap);
		size_t zn = ZSTD_compress(z, cap, data, len, 1);
		free(data);
		data = z;
		len = zn;
		it->one->compressor = ZSTD_VALUE;
	}
	it->st = st;
	it->one->status->code = st.code;
	if (!cairn_is_ok(&st))
		it->one->status->message = it->st.msg;
	it->one->data.data = data;
	it->one->data.len = len;
	read_finish(it->r);
}

static bool accepts_zstd(const read_req *req)
{
	for (size_t i = 0; i < req->n_acceptable_compressors; i++)
		if (req->acceptable_compressors[i] == ZSTD_VALUE)
			return true;
	return false;
}

void gw_batch_read(rpc_call *call, void *svc)
{
	gateway *g = svc;
	read_req *req = rpc_call_unpack_request(call, &build__bazel__remote__execution__v2__batch_read_blobs_request__descriptor);
	if (!req)
		return reply_error(call, gw_malformed("BatchReadBlobsRequest"));
	cairn_status st = gw_check_digest_function(req->digest_function);
	if (!cairn_is_ok(&st))
		return reply_error(call, st);
	cairn_arena *a = rpc_call_arena(call);
	cairn_digest *ds = cairn_arena_alloc(a, req->n_digests * sizeof *ds);
	int64_t total = 0;
	for (size_t i = 0; i < req->n_digests; i++) {
		st = reapi_digest_from_pb(req->digests[i], "digests", &ds[i]);
		if (!cairn_is_ok(&st))
			return reply_error(call, st);
		total += ds[i].size;
	}
	if (total > g->cfg.max_batch_size)
		return reply_error(call, cairn_err(CAIRN_INVALID_ARGUMENT,
		                                   "batch of %lld bytes is over max_batch_total_size_bytes %lld: use ByteStream",
		                                   (long long)total, (long long)g->cfg.max_batch_size));
	read_ctx *r = cairn_arena_alloc(a, sizeof *r);
	r->call = call;
	build__bazel__remote__execution__v2__batch_read_blobs_response__init(&r->resp);
	r->resp.n_responses = req->n_digests;
	r->resp.responses = cairn_arena_alloc(a, req->n_digests * sizeof(read_one *));
	read_item *items = cairn_arena_alloc(a, req->n_digests * sizeof *items);
	bool zstd = accepts_zstd(req);
	for (size_t i = 0; i < req->n_digests; i++) {
		read_one *one = cairn_arena_alloc(a, sizeof *one);
		build__bazel__remote__execution__v2__batch_read_blobs_response__response__init(one);
		one->digest = req->digests[i];
		one->status = gw_status_to_pb(a, &(cairn_status){0});
		r->resp.responses[i] = one;
		items[i] = (read_item){.r = r, .one = one, .zstd = zstd};
	}
	rpc_call_set_state(call, r, read_free_data);
	atomic_init(&r->pending, req->n_digests + 1);
	for (size_t i = 0; i < req->n_digests; i++)
		blobstore_get(g->cfg.cas, &ds[i], g->cfg.max_batch_size, read_got, &items[i]);
	read_finish(r);
}
