/* cairn-bench batch-upload (many clients sending small blobs with BatchUpdateBlobs: fresh ones for a
 * fixed time, or a fixed set once), batch-read (reading such a set back with BatchReadBlobs, every
 * byte checked) and find-missing (FindMissingBlobs over a large mixed set of present and missing
 * digests). */
#include "perf/bench.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define METHOD_FIND "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs"
#define METHOD_BATCH_READ "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs"
#define MAX_REPEAT 10000

typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest find_req;
typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse find_resp;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsRequest read_req;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse read_resp;

/* ---- a fixed set of blobs, shared out among the clients ---- */

typedef struct blob_set {
	atomic_uint_fast64_t next; /* the first blob no client has taken yet */
	uint64_t count, seed;
} blob_set;

/* Takes the next (at most b->n) blobs of the set into b; *n = 0 when none are left. */
static void set_take(blob_set *set, bench_worker *w, bench_blobs *b, size_t *n)
{
	uint64_t first = atomic_fetch_add(&set->next, (uint64_t)b->n);
	*n = first < set->count ? (size_t)(set->count - first < b->n ? set->count - first : b->n) : 0;
	int64_t t0 = cairn_now_ns();
	bench_blobs_fill_set(b, set->seed, first, *n);
	w->prep_ns += cairn_now_ns() - t0;
}

/* --count and --seed: 0 blobs means no set (batch-upload's fresh blobs); seed 0 picks one. */
static void set_init(blob_set *set, const bench_opts *o, const char *bench)
{
	atomic_init(&set->next, 0);
	set->count = (uint64_t)o->count;
	set->seed = o->seed ? (uint64_t)o->seed : (bench_nonce() >> 1) | 1; /* >> 1: prints as a positive int64 */
	if (set->count)
		fprintf(stderr, "%s: a set of %" PRIu64 " blobs of %" PRId64 " bytes, --seed=%" PRIu64 "\n", bench, set->count,
		        o->blob_size, set->seed);
}

static int set_check_flags(const bench_opts *o, const char *bench)
{
	if (o->blob_size <= 0 || o->per_call <= 0 || o->clients <= 0 || o->clients > 1024 || o->seconds <= 0 ||
	    o->count < 0 || o->seed < 0) {
		fprintf(stderr, "cairn-bench %s: --blob_size, --per_call, --seconds must be positive, --clients in 1..1024, "
		                "--count and --seed not negative\n",
		        bench);
		return 2;
	}
	return 0;
}

typedef struct batch_local {
	bench_blobs blobs;
	uint64_t tag; /* first 8 bytes of every blob of this worker: no two workers' blobs are equal */
} batch_local;

static void *batch_make_local(bench_worker *w)
{
	batch_local *l = cairn_xcalloc(1, sizeof *l);
	bench_blobs_init(&l->blobs, (size_t)w->o->per_call, (size_t)w->o->blob_size);
	l->tag = bench_rng_next(&w->rng);
	return l;
}

static void batch_free_local(void *local)
{
	batch_local *l = local;
	if (!l)
		return;
	bench_blobs_free(&l->blobs);
	free(l);
}

/* ---- batch-upload ---- */

/* Fresh blobs every call, so the server stores (hashes, writes) every one of them. Making and
 * hashing them is client work and is kept out of the call latency, but not out of the wall time.
 * With a set, the next blobs of the set instead; the warm-up is an empty call, so that every blob
 * of the set is uploaded inside the timed part. */
static cairn_status batch_step(bench_worker *w)
{
	batch_local *l = w->local;
	blob_set *set = w->ctx;
	size_t n = l->blobs.n;
	if (!set->count) {
		int64_t t0 = cairn_now_ns();
		bench_blobs_fill(&l->blobs, &w->rng, l->tag);
		w->prep_ns += cairn_now_ns() - t0;
	} else if (w->warmup) {
		n = 0;
	} else {
		set_take(set, w, &l->blobs, &n);
		if (n == 0) {
			w->done = true;
			return cairn_ok();
		}
	}
	int64_t t0 = cairn_now_ns();
	cairn_status st = bench_blobs_upload(w->ch, w->o, &l->blobs, 0, n);
	bench_lat_add(&w->lat, cairn_now_ns() - t0);
	if (cairn_is_ok(&st))
		w->ops += n;
	return st;
}

int bench_batch_upload(const bench_opts *o)
{
	if (set_check_flags(o, "batch-upload"))
		return 2;
	blob_set set;
	set_init(&set, o, "batch-upload");
	bench_totals t;
	cairn_status st = bench_run_workers(o, batch_step, &set, batch_make_local, batch_free_local, &t);
	if (!cairn_is_ok(&st)) {
		bench_lat_free(&t.lat);
		return bench_fail("batch-upload", "BatchUpdateBlobs", &st);
	}
	double p50, p99;
	bench_lat_summary(&t.lat, &p50, &p99);
	double secs = bench_secs(t.wall_ns);
	/* prep_ns is summed over clients; as a share of all clients' time it says how much the client
	 * itself (generating and hashing) held the rate back */
	double prep_share = (double)t.prep_ns / ((double)t.wall_ns * (double)o->clients);
	bench_result("batch-upload",
	             "value=%.0f unit=blobs/s MB_per_s=%.1f p50_ms=%.3f p99_ms=%.3f blobs=%" PRIu64 " calls=%" PRIu64
	             " seconds=%.2f clients=%" PRId64 " per_call=%" PRId64 " blob_size=%" PRId64
	             " client_prep_share=%.3f capped=%d count=%" PRIu64 " seed=%" PRIu64,
	             (double)t.ops / secs, (double)t.ops * (double)o->blob_size / 1e6 / secs, p50, p99, t.ops, t.calls,
	             secs, o->clients, o->per_call, o->blob_size, prep_share, t.capped, set.count,
	             set.count ? set.seed : 0);
	bench_lat_free(&t.lat);
	return 0;
}

/* ---- batch-read ---- */

/* Every blob asked for must come back once, whole and with exactly the set's bytes. */
static cairn_status check_read(const read_resp *r, const bench_blobs *b, size_t n)
{
	if (r->n_responses != n)
		return cairn_err(CAIRN_INTERNAL, "server answered for %zu blobs of %zu", r->n_responses, n);
	for (size_t j = 0; j < n; j++) {
		const Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse__Response *one = r->responses[j];
		if (one->status && one->status->code != 0)
			return cairn_err(one->status->code, "blob %zu: %s", j, one->status->message);
		size_t i = one->digest && !strcmp(one->digest->hash, b->hex[j]) ? j : n;
		for (size_t k = 0; i == n && one->digest && k < n; k++) /* answers may come in any order */
			if (!strcmp(one->digest->hash, b->hex[k]))
				i = k;
		if (i == n)
			return cairn_err(CAIRN_INTERNAL, "answer %zu names a blob that was not asked for", j);
		if (one->compressor != 0 || one->data.len != b->size || memcmp(one->data.data, b->data + i * b->size, b->size))
			return cairn_err(CAIRN_DATA_LOSS, "blob %s: the bytes read are not the bytes of the set", b->hex[i]);
	}
	return cairn_ok();
}

static cairn_status read_blobs(rpc_channel *ch, const bench_opts *o, const bench_blobs *b, size_t n)
{
	read_req req = BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_READ_BLOBS_REQUEST__INIT;
	req.instance_name = (char *)o->instance;
	req.n_digests = n;
	req.digests = b->pbs;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, METHOD_BATCH_READ, &req.base,
	                            &build__bazel__remote__execution__v2__batch_read_blobs_response__descriptor, &resp,
	                            bench_timeout_ms(o));
	if (!cairn_is_ok(&st))
		return st;
	st = check_read((const read_resp *)resp, b, n);
	protobuf_c_message_free_unpacked(resp, NULL);
	return st;
}

/* The next blobs of the set; the warm-up asks for none, so that every blob is read in the timed part.
 * Regenerating the expected bytes is client work, outside the call latency. */
static cairn_status read_step(bench_worker *w)
{
	batch_local *l = w->local;
	size_t n = 0;
	if (!w->warmup) {
		set_take(w->ctx, w, &l->blobs, &n);
		if (n == 0) {
			w->done = true;
			return cairn_ok();
		}
	}
	int64_t t0 = cairn_now_ns();
	cairn_status st = read_blobs(w->ch, w->o, &l->blobs, n);
	bench_lat_add(&w->lat, cairn_now_ns() - t0);
	if (cairn_is_ok(&st))
		w->ops += n;
	return st;
}

int bench_batch_read(const bench_opts *o)
{
	if (set_check_flags(o, "batch-read"))
		return 2;
	if (o->count <= 0 || o->seed <= 0)
		return fprintf(stderr, "cairn-bench batch-read: needs --count and --seed of an uploaded set (batch-upload "
		                       "--count prints its seed)\n"),
		       2;
	blob_set set;
	set_init(&set, o, "batch-read");
	bench_totals t;
	cairn_status st = bench_run_workers(o, read_step, &set, batch_make_local, batch_free_local, &t);
	if (!cairn_is_ok(&st)) {
		bench_lat_free(&t.lat);
		return bench_fail("batch-read", "BatchReadBlobs", &st);
	}
	double p50, p99;
	bench_lat_summary(&t.lat, &p50, &p99);
	double secs = bench_secs(t.wall_ns);
	bench_result("batch-read",
	             "value=%.0f unit=blobs/s MB_per_s=%.1f p50_ms=%.3f p99_ms=%.3f blobs=%" PRIu64 " calls=%" PRIu64
	             " seconds=%.2f clients=%" PRId64 " per_call=%" PRId64 " blob_size=%" PRId64
	             " client_prep_share=%.3f capped=%d count=%" PRIu64 " seed=%" PRIu64,
	             (double)t.ops / secs, (double)t.ops * (double)o->blob_size / 1e6 / secs, p50, p99, t.ops, t.calls,
	             secs, o->clients, o->per_call, o->blob_size,
	             (double)t.prep_ns / ((double)t.wall_ns * (double)o->clients), t.capped, set.count, set.seed);
	bench_lat_free(&t.lat);
	return 0;
}

/* ---- find-missing ---- */

static int cmp_hex(const void *a, const void *b) { return memcmp(a, b, CAIRN_HASH_HEX_LEN); }

/* The digests that must come back missing (blobs [present, n)), sorted, with a seen flag each. */
typedef struct expected {
	char (*hex)[CAIRN_HASH_HEX_LEN + 1];
	size_t n;
	uint8_t *seen;
} expected;

static void expected_init(expected *e, const bench_blobs *b, size_t present)
{
	e->n = b->n - present;
	e->hex = cairn_xcalloc(e->n + 1, sizeof *e->hex);
	memcpy(e->hex, b->hex + present, e->n * sizeof *e->hex);
	qsort(e->hex, e->n, sizeof *e->hex, cmp_hex);
	e->seen = cairn_xcalloc(e->n + 1, 1);
}

/* The answer must name exactly the missing digests, each once. */
static cairn_status expected_check(expected *e, const find_resp *r)
{
	if (r->n_missing_blob_digests != e->n)
		return cairn_err(CAIRN_INTERNAL, "server reported %zu missing, %zu are", r->n_missing_blob_digests, e->n);
	memset(e->seen, 0, e->n);
	for (size_t i = 0; i < r->n_missing_blob_digests; i++) {
		const char *h = r->missing_blob_digests[i]->hash;
		char(*hit)[CAIRN_HASH_HEX_LEN + 1] =
			strlen(h) == CAIRN_HASH_HEX_LEN ? bsearch(h, e->hex, e->n, sizeof *e->hex, cmp_hex) : NULL;
		if (!hit || e->seen[hit - e->hex]++)
			return cairn_err(CAIRN_INTERNAL, "server reported %s missing, which is present or named twice", h);
	}
	return cairn_ok();
}

static void expected_free(expected *e)
{
	free(e->hex);
	free(e->seen);
}

/* present and missing digests mixed, as in a real build's query */
static void shuffle(bench_dpb **v, size_t n, bench_rng *r)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(bench_rng_next(r) % i);
		bench_dpb *t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

static cairn_status find_once(rpc_channel *ch, const bench_opts *o, const find_req *req, expected *e, int64_t *ns,
                              find_resp **keep)
{
	ProtobufCMessage *resp;
	int64_t t0 = cairn_now_ns();
	cairn_status st = rpc_unary(ch, METHOD_FIND, &req->base,
	                            &build__bazel__remote__execution__v2__find_missing_blobs_response__descriptor, &resp,
	                            bench_timeout_ms(o));
	*ns = cairn_now_ns() - t0;
	if (!cairn_is_ok(&st))
		return st;
	st = expected_check(e, (find_resp *)resp);
	if (*keep)
		protobuf_c_message_free_unpacked(&(*keep)->base, NULL);
	*keep = (find_resp *)resp;
	return st;
}

/* What the client's own encoding of the request and decoding of the answer cost, which the call
 * latency includes: packs the request and unpacks a re-packed answer. */
static double client_codec_ms(const find_req *req, const find_resp *resp)
{
	size_t qn = protobuf_c_message_get_packed_size(&req->base), rn = protobuf_c_message_get_packed_size(&resp->base);
	uint8_t *qbuf = cairn_xmalloc(qn + 1), *rbuf = cairn_xmalloc(rn + 1);
	protobuf_c_message_pack(&resp->base, rbuf);
	int64_t t0 = cairn_now_ns();
	protobuf_c_message_pack(&req->base, qbuf);
	ProtobufCMessage *m = protobuf_c_message_unpack(resp->base.descriptor, NULL, rn, rbuf);
	int64_t ns = cairn_now_ns() - t0;
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	free(qbuf);
	free(rbuf);
	return (double)ns / 1e6;
}

typedef struct find_run {
	double rate[MAX_REPEAT];
	bench_lat lat;
	double codec_ms;
} find_run;

static cairn_status find_repeat(rpc_channel *ch, const bench_opts *o, const find_req *req, expected *e, find_run *fr)
{
	find_resp *keep = NULL;
	int64_t ns;
	cairn_status st = find_once(ch, o, req, e, &ns, &keep); /* warm-up: connects, verifies */
	for (int64_t i = 0; i < o->repeat && cairn_is_ok(&st); i++) {
		st = find_once(ch, o, req, e, &ns, &keep);
		fr->rate[i] = (double)o->digests / bench_secs(ns);
		bench_lat_add(&fr->lat, ns);
	}
	if (keep) {
		fr->codec_ms = client_codec_ms(req, keep);
		protobuf_c_message_free_unpacked(&keep->base, NULL);
	}
	return st;
}

static int find_check_flags(const bench_opts *o)
{
	if (o->digests <= 0 || o->digests > 1000000 || o->present < 0 || o->present > o->digests || o->repeat <= 0 ||
	    o->repeat > MAX_REPEAT || o->blob_size <= 0) {
		fprintf(stderr, "cairn-bench find-missing: need 0 < --digests <= 1000000, 0 <= --present <= --digests, "
		                "0 < --repeat <= %d, --blob_size > 0\n",
		        MAX_REPEAT);
		return 2;
	}
	return 0;
}

int bench_find_missing(const bench_opts *o)
{
	int rc = find_check_flags(o);
	if (rc)
		return rc;
	rpc_channel *ch = bench_connect(o, "find-missing");
	if (!ch)
		return 1;
	bench_rng r;
	bench_rng_seed(&r, bench_nonce());
	bench_blobs b;
	bench_blobs_init(&b, (size_t)o->digests, (size_t)o->blob_size);
	bench_blobs_fill(&b, &r, bench_rng_next(&r));
	cairn_status st = bench_blobs_upload_all(ch, o, &b, (size_t)o->present);
	fprintf(stderr, "find-missing: %" PRId64 " of %" PRId64 " blobs uploaded\n", o->present, o->digests);
	expected e;
	expected_init(&e, &b, (size_t)o->present);
	find_req req = BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
	req.instance_name = (char *)o->instance;
	req.n_blob_digests = b.n;
	req.blob_digests = b.pbs;
	shuffle(b.pbs, b.n, &r);
	find_run *fr = cairn_xcalloc(1, sizeof *fr);
	bench_lat_init(&fr->lat, (size_t)o->repeat);
	if (cairn_is_ok(&st))
		st = find_repeat(ch, o, &req, &e, fr);
	rpc_channel_close(ch);
	if (cairn_is_ok(&st)) {
		double p50, p99;
		bench_lat_summary(&fr->lat, &p50, &p99);
		bench_result("find-missing",
		             "value=%.0f unit=digests/s p50_ms=%.3f p99_ms=%.3f client_codec_ms=%.3f digests=%" PRId64
		             " present=%" PRId64 " missing=%" PRId64 " repeat=%" PRId64,
		             bench_median(fr->rate, (size_t)o->repeat), p50, p99, fr->codec_ms, o->digests, o->present,
		             o->digests - o->present, o->repeat);
	}
	bench_lat_free(&fr->lat);
	free(fr);
	expected_free(&e);
	bench_blobs_free(&b);
	return cairn_is_ok(&st) ? 0 : bench_fail("find-missing", "FindMissingBlobs", &st);
}
