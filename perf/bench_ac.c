/* cairn-bench ac-get: GetActionResult hits from many clients. Every entry names one output blob that
 * is in the CAS, so each hit also pays for the server's completeness check, as a real hit does. */
#include "perf/bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define AC_SERVICE "/build.bazel.remote.execution.v2.ActionCache/"
/* The made-up actions: their digests only need to be distinct. */
#define ACTION_SIZE 64

typedef Build__Bazel__Remote__Execution__V2__ActionResult action_result;

typedef struct ac_ctx {
	bench_blobs outputs; /* uploaded: entry i names outputs blob i */
	bench_blobs actions; /* not uploaded: their digests are the AC keys */
} ac_ctx;

static cairn_status put_entry(rpc_channel *ch, const bench_opts *o, const ac_ctx *c, size_t i)
{
	char path[32];
	snprintf(path, sizeof path, "out/%zu", i);
	Build__Bazel__Remote__Execution__V2__OutputFile of = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_FILE__INIT;
	Build__Bazel__Remote__Execution__V2__OutputFile *ofs[1] = {&of};
	of.path = path;
	of.digest = &c->outputs.pb[i];
	action_result ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
	ar.n_output_files = 1;
	ar.output_files = ofs;
	Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
	req.instance_name = (char *)o->instance;
	req.action_digest = &c->actions.pb[i];
	req.action_result = &ar;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, AC_SERVICE "UpdateActionResult", &req.base,
	                            &build__bazel__remote__execution__v2__action_result__descriptor, &resp, bench_timeout_ms(o));
	if (cairn_is_ok(&st))
		protobuf_c_message_free_unpacked(resp, NULL);
	return st;
}

static cairn_status ac_setup(const bench_opts *o, ac_ctx *c)
{
	rpc_channel *ch = bench_connect(o, "ac-get");
	if (!ch)
		return cairn_err(CAIRN_UNAVAILABLE, "cannot connect");
	bench_rng r;
	bench_rng_seed(&r, bench_nonce());
	bench_blobs_init(&c->outputs, (size_t)o->entries, (size_t)o->blob_size);
	bench_blobs_fill(&c->outputs, &r, bench_rng_next(&r));
	bench_blobs_init(&c->actions, (size_t)o->entries, ACTION_SIZE);
	bench_blobs_fill(&c->actions, &r, bench_rng_next(&r));
	cairn_status st = bench_blobs_upload_all(ch, o, &c->outputs, c->outputs.n);
	for (size_t i = 0; i < c->actions.n && cairn_is_ok(&st); i++)
		st = put_entry(ch, o, c, i);
	rpc_channel_close(ch);
	if (cairn_is_ok(&st))
		fprintf(stderr, "ac-get: %zu action results stored\n", c->actions.n);
	return st;
}

/* A hit naming the output that entry i was stored with. */
static cairn_status check_hit(const action_result *ar, const ac_ctx *c, size_t i)
{
	const bench_dpb *want = &c->outputs.pb[i];
	if (ar->n_output_files != 1 || !ar->output_files[0]->digest)
		return cairn_err(CAIRN_INTERNAL, "entry %zu came back with %zu output files", i, ar->n_output_files);
	const bench_dpb *got = ar->output_files[0]->digest;
	if (strcmp(got->hash, want->hash) != 0 || got->size_bytes != want->size_bytes)
		return cairn_err(CAIRN_INTERNAL, "entry %zu came back naming another output", i);
	return cairn_ok();
}

static cairn_status ac_step(bench_worker *w)
{
	const ac_ctx *c = w->ctx;
	size_t i = (size_t)(bench_rng_next(&w->rng) % c->actions.n);
	Build__Bazel__Remote__Execution__V2__GetActionResultRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
	req.instance_name = (char *)w->o->instance;
	req.action_digest = &c->actions.pb[i];
	ProtobufCMessage *resp;
	int64_t t0 = cairn_now_ns();
	cairn_status st = rpc_unary(w->ch, AC_SERVICE "GetActionResult", &req.base,
	                            &build__bazel__remote__execution__v2__action_result__descriptor, &resp,
	                            bench_timeout_ms(w->o));
	bench_lat_add(&w->lat, cairn_now_ns() - t0);
	if (!cairn_is_ok(&st))
		return st.code == CAIRN_NOT_FOUND ? cairn_err(CAIRN_NOT_FOUND, "entry %zu missed: %s", i, st.msg) : st;
	st = check_hit((const action_result *)resp, c, i);
	protobuf_c_message_free_unpacked(resp, NULL);
	if (cairn_is_ok(&st))
		w->ops++;
	return st;
}

int bench_ac_get(const bench_opts *o)
{
	if (o->entries <= 0 || o->clients <= 0 || o->clients > 1024 || o->seconds <= 0 || o->blob_size <= 0)
		return fprintf(stderr, "cairn-bench ac-get: --entries, --seconds, --blob_size must be positive, --clients "
		                       "in 1..1024\n"),
		       2;
	ac_ctx c;
	memset(&c, 0, sizeof c);
	cairn_status st = ac_setup(o, &c);
	bench_totals t = {0};
	if (cairn_is_ok(&st))
		st = bench_run_workers(o, ac_step, &c, NULL, NULL, &t);
	if (cairn_is_ok(&st)) {
		double p50, p99, secs = bench_secs(t.wall_ns);
		bench_lat_summary(&t.lat, &p50, &p99);
		bench_result("ac-get",
		             "value=%.0f unit=req/s p50_ms=%.3f p99_ms=%.3f hits=%" PRIu64 " seconds=%.2f clients=%" PRId64
		             " entries=%" PRId64 " capped=%d",
		             (double)t.ops / secs, p50, p99, t.ops, secs, o->clients, o->entries, t.capped);
	}
	bench_lat_free(&t.lat);
	bench_blobs_free(&c.outputs);
	bench_blobs_free(&c.actions);
	return cairn_is_ok(&st) ? 0 : bench_fail("ac-get", "GetActionResult", &st);
}
