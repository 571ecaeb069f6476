/* The remote store (see "remote store" in blobstore.h): its configuration, circuit breaker, error
 * messages and FindMissingBlobs. Reads are in remote_read.c, writes in remote_write.c.
 *
 * The breaker (common.h) is one mutex-guarded counter per peer, touched once when a call starts and
 * once when it ends: it must stay cheap, since every call of a scheduler to that worker passes
 * through it. */
#include "blobstore/remote_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIND_MISSING_BATCH 4096

static const blobstore_ops remote_ops = {
	.find_missing = blobstore_remote_find_missing,
	.open_read = blobstore_remote_open_read,
	.read = blobstore_remote_read,
	.close_read = blobstore_remote_close_read,
	.open_write = blobstore_remote_open_write,
	.write = blobstore_remote_write,
	.commit = blobstore_remote_commit,
	.abort = blobstore_remote_abort,
};

cairn_status blobstore_remote_new(const blobstore_remote_config *cfg, blobstore_remote **out)
{
	*out = NULL;
	if (!cfg->target || !cfg->target[0] || !cfg->client)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "a remote store needs a target (host:port) and an rpc client");
	if (cfg->timeout_ms < 0 || cfg->min_rate < 0 || cfg->failure_threshold < 0 || cfg->cooldown_ms < 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "remote store %s: timeouts, rate and threshold must not be negative",
		                 cfg->target);
	if (cfg->instance && strlen(cfg->instance) > BLOBSTORE_REMOTE_MAX_INSTANCE)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "remote store %s: the instance name is over %d bytes", cfg->target,
		                 BLOBSTORE_REMOTE_MAX_INSTANCE);
	rpc_channel *ch;
	cairn_status st = rpc_channel_open(cfg->target, 0, &ch);
	if (!cairn_is_ok(&st))
		return st;
	blobstore_remote *r = cairn_xcalloc(1, sizeof *r);
	r->base.ops = &remote_ops;
	r->cl = cfg->client;
	r->ch = ch;
	r->target = strdup(cfg->target);
	const char *inst = cfg->instance ? cfg->instance : "";
	r->instance = strdup(inst);
	size_t plen = strlen(inst) + 2;
	r->prefix = cairn_xmalloc(plen);
	snprintf(r->prefix, plen, "%s%s", inst, inst[0] ? "/" : "");
	r->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 10000;
	r->min_rate = cfg->min_rate ? cfg->min_rate : 1 << 20;
	cairn_breaker_init(&r->breaker, cfg->failure_threshold ? cfg->failure_threshold : 5,
	                   (cfg->cooldown_ms ? cfg->cooldown_ms : 5000) * 1000000LL);
	*out = r;
	return cairn_ok();
}

blobstore *blobstore_remote_blobstore(blobstore_remote *r) { return &r->base; }

blobstore_remote_stats blobstore_remote_get_stats(blobstore_remote *r)
{
	return (blobstore_remote_stats){.calls = atomic_load(&r->calls), .refused = atomic_load(&r->refused)};
}

void blobstore_remote_reset(blobstore_remote *r)
{
	if (cairn_breaker_reset(&r->breaker))
		LOG_INFO("blobstore", "remote CAS back, its calls go through again peer=%s", r->target);
	rpc_channel_reset_backoff(r->ch); /* else its calls fail until gRPC's reconnect back-off is over */
}

void blobstore_remote_free(blobstore_remote *r)
{
	if (!r)
		return;
	rpc_channel_close(r->ch);
	cairn_breaker_destroy(&r->breaker);
	free(r->target);
	free(r->instance);
	free(r->prefix);
	free(r);
}

/* ---- circuit breaker, deadlines, errors ---- */

cairn_status blobstore_remote_admit(blobstore_remote *r, const char *what)
{
	int failures;
	if (cairn_breaker_admit(&r->breaker, &failures)) {
		atomic_fetch_add(&r->calls, 1);
		return cairn_ok();
	}
	atomic_fetch_add(&r->refused, 1);
	return cairn_err(CAIRN_UNAVAILABLE,
	                 "remote CAS %s is unreachable (%d calls in a row failed); calls to it fail at once for %lld ms, "
	                 "then one tries again; check that it runs (%s)",
	                 r->target, failures, (long long)(r->breaker.cooldown_ns / 1000000), what);
}

void blobstore_remote_record(blobstore_remote *r, const cairn_status *st)
{
	switch (cairn_breaker_record(&r->breaker, st)) {
	case CAIRN_BREAKER_OPENED:
		LOG_WARN("blobstore", "remote CAS unreachable, calls refused for a while peer=%s failures=%d last=%s",
		         r->target, r->breaker.threshold, cairn_status_str(st));
		break;
	case CAIRN_BREAKER_CLOSED:
		LOG_INFO("blobstore", "remote CAS reachable again peer=%s", r->target);
		break;
	case CAIRN_BREAKER_SAME:
		break;
	}
}

int64_t blobstore_remote_timeout_ms(const blobstore_remote *r, int64_t bytes)
{
	return r->timeout_ms + (int64_t)((double)bytes * 1000.0 / (double)r->min_rate);
}

cairn_status blobstore_remote_error(const blobstore_remote *r, const cairn_status *st, const char *what)
{
	if (cairn_is_ok(st))
		return *st;
	/* the peer's reason first, cut so that the peer and the blob always fit */
	return cairn_err(st->code, "%.120s (remote CAS %s, %s)", st->msg, r->target, what);
}

/* ---- FindMissingBlobs ---- */

typedef struct find_missing {
	blobstore_remote *r;
	const cairn_digest *ds;
	size_t n, next, batch; /* the batch in flight is ds[next .. next + batch) */
	uint8_t *missing;
	blobstore_done_cb cb;
	void *arg;
} find_missing;

static void fm_next(find_missing *f);

static void fm_end(find_missing *f, cairn_status st)
{
	f->cb(f->arg, st);
	free(f);
}

static void fm_what(const find_missing *f, char *out, size_t cap)
{
	char ds[CAIRN_DIGEST_STR_MAX];
	snprintf(out, cap, "%zu blobs from %.24s...", f->n, cairn_digest_str(&f->ds[0], ds));
}

/* Marks every digest of the batch that the answer names (duplicates in the request too). */
static void fm_mark(find_missing *f, const Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse *resp)
{
	for (size_t m = 0; m < resp->n_missing_blob_digests; m++) {
		cairn_digest d;
		cairn_status st = reapi_digest_from_pb(resp->missing_blob_digests[m], "a missing digest", &d);
		if (!cairn_is_ok(&st))
			continue; /* malformed: not one we asked about */
		for (size_t i = f->next; i < f->next + f->batch; i++)
			if (f->ds[i].size == d.size && !memcmp(f->ds[i].hash, d.hash, CAIRN_HASH_LEN))
				f->missing[i] = 1;
	}
}

static void fm_answered(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	find_missing *f = arg;
	blobstore_remote_record(f->r, &st);
	if (!cairn_is_ok(&st)) {
		char what[96];
		fm_what(f, what, sizeof what);
		return fm_end(f, blobstore_remote_error(f->r, &st, what));
	}
	fm_mark(f, (const Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse *)resp);
	protobuf_c_message_free_unpacked(resp, NULL);
	f->next += f->batch;
	fm_next(f);
}

static void fm_next(find_missing *f)
{
	if (f->next == f->n)
		return fm_end(f, cairn_ok());
	char what[96];
	fm_what(f, what, sizeof what);
	cairn_status st = blobstore_remote_admit(f->r, what);
	if (!cairn_is_ok(&st))
		return fm_end(f, st);
	f->batch = f->n - f->next < FIND_MISSING_BATCH ? f->n - f->next : FIND_MISSING_BATCH;
	memset(f->missing + f->next, 0, f->batch);
	cairn_arena *a = cairn_arena_new(f->batch * 96 + 256);
	Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest req =
	    BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
	req.instance_name = f->r->instance;
	req.n_blob_digests = f->batch;
	req.blob_digests = cairn_arena_alloc(a, f->batch * sizeof *req.blob_digests);
	for (size_t i = 0; i < f->batch; i++)
		req.blob_digests[i] = reapi_digest_to_pb(a, &f->ds[f->next + i]);
	rpc_async_unary(f->r->cl, f->r->ch, "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
	                &req.base, &build__bazel__remote__execution__v2__find_missing_blobs_response__descriptor,
	                f->r->timeout_ms, fm_answered, f);
	cairn_arena_free(a); /* the request is packed */
}

void blobstore_remote_find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing,
                                   blobstore_done_cb cb, void *arg)
{
	if (n == 0)
		return cb(arg, cairn_ok());
	find_missing *f = cairn_xcalloc(1, sizeof *f);
	*f = (find_missing){.r = (blobstore_remote *)bs, .ds = ds, .n = n, .missing = missing, .cb = cb, .arg = arg};
	fm_next(f);
}
