/* cairn-bench exec and forkexec: the cost of running an action remotely, next to the cost of running
 * the same command locally.
 *
 * exec: every step is a new action that must run: a Command `/bin/true cairn-bench-NONCE-CLIENT-N`
 * (the argument makes each Command, and so each Action, a new digest) over one small input root
 * uploaded once, an Action with do_not_cache, and an ExecuteRequest with skip_cache_lookup, so that
 * neither the action cache nor a merge with an identical operation in flight can answer it. The
 * Command and Action go up in one BatchUpdateBlobs before the Execute call: the throughput counts
 * that upload (a real client has to make it too), the Execute latency does not. Each done Operation
 * is checked (no error, exit code 0, not from the cache) and its ExecutedActionMetadata split into
 * the server's phases, so that the result says where the time of a call goes:
 *
 *   intake   client sends Execute -> queued_timestamp: the gateway reads Action and Command, queues the
 *            operation, and it waits for a free executor (cairn stamps queued_timestamp when the
 *            runner takes the job, not when the gateway queues it)
 *   queue    queued -> worker_start (the runner's hand-off to the slot thread)
 *   fetch    input_fetch_start -> input_fetch_completed (the exec root is built)
 *   run      execution_start -> execution_completed (the sandboxed child, /bin/true itself)
 *   outputs  output_upload_start -> output_upload_completed (stdout, stderr, outputs into the CAS)
 *   worker   worker_start -> worker_completed (all of the slot's work)
 *   return   worker_completed -> the client holds the done Operation
 *
 * The server's timestamps are wall-clock times of the same machine, so the cross-process phases
 * (intake, return) are exact to the clock's resolution only when client and server share a host.
 *
 * forkexec: the reference: fork, execve("/bin/true") and waitpid, one after another, timed each. */
#include "perf/bench.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "google/longrunning/operations.pb-c.h"

#define EXEC_METHOD "/build.bazel.remote.execution.v2.Execution/Execute"
#define INPUT_TEXT "cairn-bench exec input\n"
/* Command and Action of one step are a few hundred bytes each. */
#define MSG_CAP 1024
/* Per-phase samples each client keeps (a no-op action takes milliseconds: far more than enough). */
#define PHASE_SAMPLES (1u << 18)

typedef Build__Bazel__Remote__Execution__V2__Command command_pb;
typedef Build__Bazel__Remote__Execution__V2__Action action_pb;
typedef Build__Bazel__Remote__Execution__V2__ExecuteResponse execute_response;
typedef Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata action_metadata;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request update_one;

enum { PH_INTAKE, PH_QUEUE, PH_FETCH, PH_RUN, PH_OUTPUTS, PH_WORKER, PH_RETURN, PH_UPLOAD, NPHASES };
static const char *const phase_names[NPHASES] = {"intake", "queue", "fetch", "run",
                                                 "outputs", "worker", "return", "upload"};

typedef struct exec_ctx {
	bench_dpb root;        /* the input root Directory, uploaded once */
	char root_hex[CAIRN_HASH_HEX_LEN + 1];
	uint64_t nonce;        /* makes this run's actions new to a server that has seen earlier runs */
	pthread_mutex_t mu;    /* guards phases: clients merge their samples into it as they end */
	bench_lat phases[NPHASES];
} exec_ctx;

typedef struct exec_local {
	exec_ctx *c;
	uint64_t steps; /* the first step is the driver's untimed warm-up: its phases are not kept */
	bench_lat phases[NPHASES];
} exec_local;

/* A packed message and its digest. */
typedef struct packed {
	uint8_t buf[MSG_CAP];
	size_t len;
	cairn_digest d;
	char hex[CAIRN_HASH_HEX_LEN + 1];
	bench_dpb pb;
} packed;

static cairn_status pack(const ProtobufCMessage *m, packed *out)
{
	out->len = protobuf_c_message_get_packed_size(m);
	if (out->len > sizeof out->buf)
		return cairn_err(CAIRN_INTERNAL, "message of %zu bytes", out->len);
	protobuf_c_message_pack(m, out->buf);
	cairn_digest_of(out->buf, out->len, &out->d);
	bench_digest_pb(&out->d, out->hex, &out->pb);
	return cairn_ok();
}

/* One BatchUpdateBlobs call for n packed messages; every per-blob status must be OK. */
static cairn_status upload_packed(rpc_channel *ch, const bench_opts *o, packed *const *msgs, size_t n)
{
	update_one ones[4], *ptrs[4];
	for (size_t i = 0; i < n; i++) {
		build__bazel__remote__execution__v2__batch_update_blobs_request__request__init(&ones[i]);
		ones[i].digest = &msgs[i]->pb;
		ones[i].data.data = msgs[i]->buf;
		ones[i].data.len = msgs[i]->len;
		ptrs[i] = &ones[i];
	}
	return bench_batch_update(ch, o, ptrs, n);
}

/* The input root: one small file, so that each action's exec root holds one hard link, as the
 * smallest real action does. */
static cairn_status upload_root(const bench_opts *o, exec_ctx *c)
{
	rpc_channel *ch = bench_connect(o, "exec");
	if (!ch)
		return cairn_err(CAIRN_UNAVAILABLE, "cannot connect");
	packed file, dir;
	memcpy(file.buf, INPUT_TEXT, strlen(INPUT_TEXT));
	file.len = strlen(INPUT_TEXT);
	cairn_digest_of(file.buf, file.len, &file.d);
	bench_digest_pb(&file.d, file.hex, &file.pb);
	Build__Bazel__Remote__Execution__V2__FileNode fn = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
	Build__Bazel__Remote__Execution__V2__FileNode *fns[1] = {&fn};
	fn.name = "input.txt";
	fn.digest = &file.pb;
	Build__Bazel__Remote__Execution__V2__Directory root = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT;
	root.n_files = 1;
	root.files = fns;
	cairn_status st = pack(&root.base, &dir);
	packed *both[2] = {&file, &dir};
	if (cairn_is_ok(&st))
		st = upload_packed(ch, o, both, 2);
	rpc_channel_close(ch);
	memcpy(c->root_hex, dir.hex, sizeof c->root_hex);
	c->root = dir.pb;
	c->root.hash = c->root_hex;
	return st;
}

/* This step's Command (a new argument each time) and Action (do_not_cache), packed. */
static cairn_status make_action(bench_worker *w, exec_local *l, packed *cmd_out, packed *act_out)
{
	const exec_ctx *c = l->c;
	char tag[96];
	snprintf(tag, sizeof tag, "cairn-bench-%016" PRIx64 "-%d-%" PRIu64, c->nonce, w->id, l->steps);
	char *args[2] = {"/bin/true", tag};
	Build__Bazel__Remote__Execution__V2__Platform__Property os = BUILD__BAZEL__REMOTE__EXECUTION__V2__PLATFORM__PROPERTY__INIT;
	Build__Bazel__Remote__Execution__V2__Platform__Property *props[1] = {&os};
	os.name = "OSFamily";
	os.value = "Linux";
	Build__Bazel__Remote__Execution__V2__Platform platform = BUILD__BAZEL__REMOTE__EXECUTION__V2__PLATFORM__INIT;
	platform.n_properties = 1;
	platform.properties = props;
	command_pb cmd = BUILD__BAZEL__REMOTE__EXECUTION__V2__COMMAND__INIT;
	cmd.n_arguments = 2;
	cmd.arguments = args;
	cmd.platform = &platform;
	cairn_status st = pack(&cmd.base, cmd_out);
	if (!cairn_is_ok(&st))
		return st;
	action_pb act = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION__INIT;
	act.command_digest = &cmd_out->pb;
	act.input_root_digest = (bench_dpb *)&c->root;
	act.do_not_cache = true;
	return pack(&act.base, act_out);
}

static int64_t ts_ns(const Google__Protobuf__Timestamp *t) { return t ? t->seconds * 1000000000LL + t->nanos : 0; }

static void add_phase(exec_local *l, int ph, int64_t from, int64_t to)
{
	if (from > 0 && to >= from)
		bench_lat_add(&l->phases[ph], to - from);
}

static void keep_phases(exec_local *l, const action_metadata *m, int64_t sent_wall, int64_t recv_wall)
{
	if (!m)
		return;
	add_phase(l, PH_INTAKE, sent_wall, ts_ns(m->queued_timestamp));
	add_phase(l, PH_QUEUE, ts_ns(m->queued_timestamp), ts_ns(m->worker_start_timestamp));
	add_phase(l, PH_FETCH, ts_ns(m->input_fetch_start_timestamp), ts_ns(m->input_fetch_completed_timestamp));
	add_phase(l, PH_RUN, ts_ns(m->execution_start_timestamp), ts_ns(m->execution_completed_timestamp));
	add_phase(l, PH_OUTPUTS, ts_ns(m->output_upload_start_timestamp), ts_ns(m->output_upload_completed_timestamp));
	add_phase(l, PH_WORKER, ts_ns(m->worker_start_timestamp), ts_ns(m->worker_completed_timestamp));
	add_phase(l, PH_RETURN, ts_ns(m->worker_completed_timestamp), recv_wall);
}

/* The done Operation must carry an ExecuteResponse of a fresh run that exited 0. */
static cairn_status check_done(const Google__Longrunning__Operation *op, exec_local *l, bool keep,
                               int64_t sent_wall, int64_t recv_wall)
{
	if (op->result_case == GOOGLE__LONGRUNNING__OPERATION__RESULT_ERROR)
		return cairn_err(op->error->code, "operation failed: %s", op->error->message);
	if (op->result_case != GOOGLE__LONGRUNNING__OPERATION__RESULT_RESPONSE)
		return cairn_err(CAIRN_INTERNAL, "operation %s ended without a response", op->name);
	execute_response *r = build__bazel__remote__execution__v2__execute_response__unpack(
		NULL, op->response->value.len, op->response->value.data);
	if (!r)
		return cairn_err(CAIRN_INTERNAL, "unreadable ExecuteResponse");
	cairn_status st = cairn_ok();
	if (r->status && r->status->code)
		st = cairn_err(r->status->code, "action failed: %s", r->status->message);
	else if (!r->result)
		st = cairn_err(CAIRN_INTERNAL, "ExecuteResponse without a result");
	else if (r->result->exit_code != 0)
		st = cairn_err(CAIRN_INTERNAL, "/bin/true exited %d", r->result->exit_code);
	else if (r->cached_result)
		st = cairn_err(CAIRN_INTERNAL, "the server answered from the action cache despite skip_cache_lookup");
	if (cairn_is_ok(&st) && keep)
		keep_phases(l, r->result->execution_metadata, sent_wall, recv_wall);
	build__bazel__remote__execution__v2__execute_response__free_unpacked(r, NULL);
	return st;
}

/* One Execute call, followed to its done Operation. */
static cairn_status execute(bench_worker *w, exec_local *l, const packed *act, bool keep)
{
	Build__Bazel__Remote__Execution__V2__ExecuteRequest req = BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_REQUEST__INIT;
	req.instance_name = (char *)w->o->instance;
	req.action_digest = (bench_dpb *)&act->pb;
	req.skip_cache_lookup = true;
	int64_t sent_wall = cairn_wall_ns(), t0 = cairn_now_ns();
	rpc_stream *s;
	cairn_status st = rpc_stream_open(w->ch, EXEC_METHOD, bench_timeout_ms(w->o), &s);
	if (!cairn_is_ok(&st))
		return st;
	st = rpc_stream_send(s, &req.base);
	if (cairn_is_ok(&st))
		st = rpc_stream_close_send(s);
	bool done = false;
	while (cairn_is_ok(&st) && !done) {
		ProtobufCMessage *m;
		st = rpc_stream_recv(s, &google__longrunning__operation__descriptor, &m);
		if (!cairn_is_ok(&st) || !m)
			break;
		Google__Longrunning__Operation *op = (Google__Longrunning__Operation *)m;
		if (op->done) {
			done = true;
			bench_lat_add(&w->lat, cairn_now_ns() - t0);
			st = check_done(op, l, keep, sent_wall, cairn_wall_ns());
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	cairn_status fst = rpc_stream_finish(s, NULL, NULL);
	if (cairn_is_ok(&st) && !done)
		st = cairn_is_ok(&fst) ? cairn_err(CAIRN_INTERNAL, "stream ended before the operation was done") : fst;
	return st;
}

static cairn_status exec_step(bench_worker *w)
{
	exec_local *l = w->local;
	bool keep = l->steps > 0;
	packed *cmd = cairn_xmalloc(sizeof *cmd), *act = cairn_xmalloc(sizeof *act);
	int64_t t0 = cairn_now_ns();
	cairn_status st = make_action(w, l, cmd, act);
	packed *both[2] = {cmd, act};
	if (cairn_is_ok(&st))
		st = upload_packed(w->ch, w->o, both, 2);
	int64_t t1 = cairn_now_ns();
	w->prep_ns += t1 - t0;
	if (keep)
		add_phase(l, PH_UPLOAD, t0, t1);
	if (cairn_is_ok(&st))
		st = execute(w, l, act, keep);
	if (cairn_is_ok(&st))
		w->ops++;
	l->steps++;
	free(cmd);
	free(act);
	return st;
}

static void *make_local(bench_worker *w)
{
	exec_local *l = cairn_xcalloc(1, sizeof *l);
	l->c = w->ctx;
	for (int i = 0; i < NPHASES; i++)
		bench_lat_init(&l->phases[i], PHASE_SAMPLES);
	return l;
}

/* The driver frees each client's state as it ends: its phase samples go into the shared totals. */
static void free_local(void *local)
{
	exec_local *l = local;
	if (!l)
		return;
	pthread_mutex_lock(&l->c->mu);
	for (int i = 0; i < NPHASES; i++) {
		bench_lat_merge(&l->c->phases[i], &l->phases[i]);
		bench_lat_free(&l->phases[i]);
	}
	pthread_mutex_unlock(&l->c->mu);
	free(l);
}

static void print_exec_result(const bench_opts *o, exec_ctx *c, bench_totals *t)
{
	double p50, p99, secs = bench_secs(t->wall_ns);
	bench_lat_summary(&t->lat, &p50, &p99);
	char phases[1024];
	size_t used = 0;
	for (int i = 0; i < NPHASES; i++) {
		double a, b;
		bench_lat_summary(&c->phases[i], &a, &b);
		used += (size_t)snprintf(phases + used, sizeof phases - used, " %s_p50_ms=%.3f %s_p99_ms=%.3f",
		                         phase_names[i], a, phase_names[i], b);
	}
	double upload_share = t->wall_ns > 0 ? (double)t->prep_ns / ((double)t->wall_ns * (double)o->clients) : 0;
	bench_result("exec",
	             "value=%.1f unit=actions/s p50_ms=%.3f p99_ms=%.3f actions=%" PRIu64 " seconds=%.2f clients=%" PRId64
	             " upload_share=%.3f capped=%d%s",
	             (double)t->ops / secs, p50, p99, t->ops, secs, o->clients, upload_share, t->capped, phases);
}

int bench_exec(const bench_opts *o)
{
	if (o->clients <= 0 || o->clients > 256 || o->seconds <= 0)
		return fprintf(stderr, "cairn-bench exec: --seconds must be positive, --clients in 1..256\n"), 2;
	exec_ctx c;
	memset(&c, 0, sizeof c);
	c.nonce = bench_nonce();
	pthread_mutex_init(&c.mu, NULL);
	for (int i = 0; i < NPHASES; i++)
		bench_lat_init(&c.phases[i], 0);
	cairn_status st = upload_root(o, &c);
	bench_totals t = {0};
	if (cairn_is_ok(&st)) {
		fprintf(stderr, "exec: input root %s/%" PRId64 " uploaded; %" PRId64 " clients for %" PRId64 " s\n",
		        c.root_hex, c.root.size_bytes, o->clients, o->seconds);
		st = bench_run_workers(o, exec_step, &c, make_local, free_local, &t);
	}
	if (cairn_is_ok(&st))
		print_exec_result(o, &c, &t);
	bench_lat_free(&t.lat);
	for (int i = 0; i < NPHASES; i++)
		bench_lat_free(&c.phases[i]);
	pthread_mutex_destroy(&c.mu);
	return cairn_is_ok(&st) ? 0 : bench_fail("exec", "Execute", &st);
}

/* ---- the reference ---- */

extern char **environ;

/* One fork + execve + waitpid of /bin/true; its duration in ns, or -1 when it did not exit 0. */
static int64_t fork_exec_once(void)
{
	char *argv[] = {"/bin/true", NULL};
	int64_t t0 = cairn_now_ns();
	pid_t pid = fork();
	if (pid == 0) {
		execve(argv[0], argv, environ);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	int status;
	while (waitpid(pid, &status, 0) < 0)
		;
	int64_t ns = cairn_now_ns() - t0;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ns : -1;
}

int bench_forkexec(const bench_opts *o)
{
	if (o->count <= 0 || o->count > 10000000)
		return fprintf(stderr, "cairn-bench forkexec: --count must be in 1..10000000\n"), 2;
	bench_lat lat;
	bench_lat_init(&lat, (size_t)o->count);
	if (fork_exec_once() < 0) /* warm-up: page cache, the dynamic loader's first run */
		return fprintf(stderr, "cairn-bench forkexec: /bin/true did not exit 0\n"), 1;
	int64_t t0 = cairn_now_ns();
	for (int64_t i = 0; i < o->count; i++) {
		int64_t ns = fork_exec_once();
		if (ns < 0) {
			bench_lat_free(&lat);
			return fprintf(stderr, "cairn-bench forkexec: /bin/true did not exit 0\n"), 1;
		}
		bench_lat_add(&lat, ns);
	}
	double secs = bench_secs(cairn_now_ns() - t0), p50, p99;
	bench_lat_summary(&lat, &p50, &p99);
	bench_result("forkexec", "value=%.3f unit=ms p50_ms=%.3f p99_ms=%.3f per_s=%.1f count=%" PRId64 " seconds=%.2f",
	             p50, p50, p99, (double)o->count / secs, o->count, secs);
	bench_lat_free(&lat);
	return 0;
}
