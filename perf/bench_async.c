/* async-unary: small unary calls (FindMissingBlobs of one missing digest) through the asynchronous
 * client with --in_flight calls outstanding, each callback starting the next, beside the reference:
 * the same calls through the blocking rpc_unary, one after another. Both sides: --count calls per run,
 * --repeat runs, the median. */
#include "perf/bench.h"

#include <inttypes.h>
#include <pthread.h>

#define MAX_RUNS 100
#define FIND_METHOD "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs"
#define FIND_RESP (&build__bazel__remote__execution__v2__find_missing_blobs_response__descriptor)

typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest find_req;

typedef struct async_run {
	rpc_client *cl;
	rpc_channel *ch;
	const find_req *req;
	int64_t timeout_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t started, done, count;
	cairn_status err; /* the first failure */
} async_run;

static void start_one(async_run *r);

static void on_done(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	async_run *r = arg;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	pthread_mutex_lock(&r->mu);
	if (!cairn_is_ok(&st) && cairn_is_ok(&r->err))
		r->err = st;
	r->done++;
	bool more = r->started < r->count;
	if (more)
		r->started++;
	if (r->done == r->count)
		pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (more)
		start_one(r);
}

static void start_one(async_run *r)
{
	rpc_async_unary(r->cl, r->ch, FIND_METHOD, &r->req->base, FIND_RESP, r->timeout_ms, on_done, r);
}

/* One run of --count calls, --in_flight at a time; calls/s. */
static double async_once(async_run *r, int64_t in_flight, cairn_status *st)
{
	r->started = in_flight < r->count ? in_flight : r->count;
	r->done = 0;
	int64_t first = r->started, t0 = cairn_now_ns();
	for (int64_t i = 0; i < first; i++)
		start_one(r);
	pthread_mutex_lock(&r->mu);
	while (r->done < r->count)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	*st = r->err;
	return (double)r->count / bench_secs(cairn_now_ns() - t0);
}

static double blocking_once(rpc_channel *ch, const bench_opts *o, const find_req *req, cairn_status *st)
{
	int64_t t0 = cairn_now_ns();
	for (int64_t i = 0; i < o->count && cairn_is_ok(st); i++) {
		ProtobufCMessage *resp;
		*st = rpc_unary(ch, FIND_METHOD, &req->base, FIND_RESP, &resp, bench_timeout_ms(o));
		if (cairn_is_ok(st))
			protobuf_c_message_free_unpacked(resp, NULL);
	}
	return (double)o->count / bench_secs(cairn_now_ns() - t0);
}

int bench_async_unary(const bench_opts *o)
{
	if (o->count <= 0 || o->in_flight <= 0 || o->repeat <= 0 || o->repeat > MAX_RUNS || o->timeout <= 0) {
		fprintf(stderr, "async-unary: --count, --in_flight and --timeout must be > 0, --repeat 1..%d\n", MAX_RUNS);
		return 2;
	}
	rpc_channel *ch = bench_connect(o, "async-unary");
	if (!ch)
		return 1;
	cairn_digest d = {.size = 1};
	bench_rng rng;
	bench_rng_seed(&rng, bench_nonce());
	bench_rng_fill(&rng, d.hash, sizeof d.hash);
	char hex[CAIRN_HASH_HEX_LEN + 1];
	bench_dpb pb, *pbs[1] = {&pb};
	bench_digest_pb(&d, hex, &pb);
	find_req req = BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
	req.instance_name = (char *)o->instance;
	req.n_blob_digests = 1;
	req.blob_digests = pbs;
	async_run r = {.ch = ch, .req = &req, .timeout_ms = bench_timeout_ms(o), .count = o->count, .err = cairn_ok()};
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	cairn_status st = rpc_client_start(NULL, &r.cl);
	double arate[MAX_RUNS] = {0}, brate[MAX_RUNS] = {0};
	/* alternating, so that a change in the machine's load touches both sides alike; the first
	 * blocking run's connection set-up is paid by a warm-up call */
	if (cairn_is_ok(&st)) {
		ProtobufCMessage *warm;
		st = rpc_unary(ch, FIND_METHOD, &req.base, FIND_RESP, &warm, r.timeout_ms);
		if (cairn_is_ok(&st))
			protobuf_c_message_free_unpacked(warm, NULL);
	}
	for (int64_t i = 0; i < o->repeat && cairn_is_ok(&st); i++) {
		brate[i] = blocking_once(ch, o, &req, &st);
		if (cairn_is_ok(&st))
			arate[i] = async_once(&r, o->in_flight, &st);
		fprintf(stderr, "async-unary: run %" PRId64 ": blocking %.0f calls/s, async %.0f calls/s\n", i + 1, brate[i],
		        arate[i]);
	}
	rpc_client_stop(r.cl);
	rpc_channel_close(ch);
	pthread_mutex_destroy(&r.mu);
	pthread_cond_destroy(&r.cv);
	if (!cairn_is_ok(&st))
		return bench_fail("async-unary", "FindMissingBlobs", &st);
	char as[1024], bs[1024];
	bench_join(arate, (size_t)o->repeat, as, sizeof as);
	bench_join(brate, (size_t)o->repeat, bs, sizeof bs);
	double am = bench_median(arate, (size_t)o->repeat), bm = bench_median(brate, (size_t)o->repeat);
	bench_result("async-unary",
	             "value=%.0f unit=calls/s blocking=%.0f ratio=%.2f in_flight=%" PRId64 " count=%" PRId64
	             " runs=%s blocking_runs=%s",
	             am, bm, am / bm, o->in_flight, o->count, as, bs);
	return 0;
}
