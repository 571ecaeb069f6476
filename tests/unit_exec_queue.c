/* Unit tests of the execution queue (gateway/exec_queue.c) with a runner that answers its offers
 * later, from another thread, as a runner across the network does: one offer at a time, refused
 * operations offered again once a job finishes or the queue is woken, priorities kept, cancellation
 * while an offer is out, jobs the runner loses dispatched again (through Execute, as a client
 * follows them), and the drain of a server that stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/exec_internal.h"
#include "mem_store.h"
#include "proto/reapi.h"

/* A runner with `room` executors whose answers and results the test hands out, each from a thread
 * of its own. */
typedef struct fake_runner {
	runner r;
	int room;
	int offers; /* offers made so far */
	const runner_job *last;
	cairn_digest last_action;
	const runner_callbacks *cb;
	void *arg;      /* of the offer waiting for its answer */
	void *running[8];
	int nrunning;
} fake_runner;

static cairn_status fake_check(runner *r, const runner_property *props, size_t n)
{
	(void)r, (void)props, (void)n;
	return cairn_ok();
}

static void fake_offer(runner *r, const runner_job *job, _Atomic bool *cancel, const runner_callbacks *cb, void *arg)
{
	(void)cancel;
	fake_runner *f = (fake_runner *)r;
	assert_null(f->arg); /* one offer at a time */
	f->offers++;
	f->last_action = job->action;
	f->cb = cb;
	f->arg = arg;
}

static const runner_ops fake_ops = {.check = fake_check, .offer = fake_offer};

typedef struct call_in_thread {
	fake_runner *f;
	void *arg;
	bool taken, finish;
	const runner_outcome *out; /* of a finish; NULL: OK without a result */
} call_in_thread;

static void *answer_thread(void *p)
{
	call_in_thread *c = p;
	if (c->finish) {
		runner_outcome ok = {.st = cairn_ok()};
		c->f->cb->done(c->arg, c->out ? c->out : &ok);
	} else {
		c->f->cb->answered(c->arg, c->taken);
	}
	return NULL;
}

/* Runs an answer (or a done) on a thread of its own and waits for it. */
static void on_other_thread(fake_runner *f, void *arg, bool taken, bool finish, const runner_outcome *out)
{
	call_in_thread c = {f, arg, taken, finish, out};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, answer_thread, &c), 0);
	pthread_join(t, NULL);
}

/* Answers the offer that is out: taken while there is room. */
static void reply(fake_runner *f)
{
	void *arg = f->arg;
	assert_non_null(arg);
	bool taken = f->nrunning < f->room;
	if (taken)
		f->running[f->nrunning++] = arg;
	f->arg = NULL;
	on_other_thread(f, arg, taken, false, NULL);
}

static void finish_oldest_with(fake_runner *f, const runner_outcome *out)
{
	void *arg = f->running[0];
	memmove(f->running, f->running + 1, (size_t)--f->nrunning * sizeof *f->running);
	on_other_thread(f, arg, false, true, out);
}

static void finish_oldest(fake_runner *f) { finish_oldest_with(f, NULL); }

static exec_op *new_op(struct exec_state *x, int priority, uint8_t tag)
{
	exec_op *op = cairn_xcalloc(1, sizeof *op);
	op->props = cairn_xcalloc(1, sizeof *op->props);
	op->prop_storage = cairn_xmalloc(1);
	op->instance = cairn_xstrdup("");
	op->priority = priority;
	op->action.hash[0] = tag;
	op->action.size = 1;
	op->do_not_cache = true;
	gw_exec_new_name(op->name);
	pthread_mutex_lock(&x->mu);
	gw_exec_enqueue(x, op);
	pthread_mutex_unlock(&x->mu);
	return op;
}

static void queue_with_a_remote_runner(void **state)
{
	(void)state;
	fake_runner f = {.r = {.ops = &fake_ops}, .room = 1};
	struct exec_state *x = gw_exec_state_new(NULL, &f.r);
	exec_op *a = new_op(x, 0, 'a');
	exec_op *b = new_op(x, 0, 'b');
	exec_op *urgent = new_op(x, -1, 'u');
	/* a was offered first; nothing else while its answer is out, however long it takes */
	assert_int_equal(f.offers, 1);
	assert_int_equal(f.last_action.hash[0], 'a');
	reply(&f); /* taken: the next in line (urgent, by priority) is offered */
	assert_int_equal(a->stage, STAGE_QUEUED);
	assert_false(a->queued);
	assert_int_equal(f.offers, 2);
	assert_int_equal(f.last_action.hash[0], 'u');
	reply(&f); /* refused: full. Then b is offered, and refused too */
	assert_int_equal(f.offers, 3);
	assert_int_equal(f.last_action.hash[0], 'b');
	reply(&f);
	assert_int_equal(f.offers, 3); /* nothing is offered again until a job finishes */
	assert_true(urgent->queued && b->queued);
	finish_oldest(&f); /* a is done: urgent goes first */
	assert_int_equal(a->stage, STAGE_COMPLETED);
	assert_int_equal(f.offers, 4);
	assert_int_equal(f.last_action.hash[0], 'u');
	reply(&f);
	assert_false(urgent->queued);
	assert_int_equal(f.last_action.hash[0], 'b'); /* and b is offered, to be refused */
	reply(&f);
	finish_oldest(&f);
	reply(&f); /* b taken at last */
	assert_false(b->queued);
	finish_oldest(&f);
	assert_int_equal(b->stage, STAGE_COMPLETED);
	assert_int_equal(urgent->stage, STAGE_COMPLETED);
	gw_exec_state_free(x);
}

static void cancel_while_offered(void **state)
{
	(void)state;
	fake_runner f = {.r = {.ops = &fake_ops}, .room = 0};
	struct exec_state *x = gw_exec_state_new(NULL, &f.r);
	exec_op *c = new_op(x, 0, 'c');
	assert_int_equal(f.offers, 1);
	pthread_mutex_lock(&x->mu);
	gw_exec_cancel(x, c); /* the offer is out: the answer decides */
	assert_int_equal(c->stage, STAGE_QUEUED);
	pthread_mutex_unlock(&x->mu);
	reply(&f); /* refused: the queue completes it as cancelled, once */
	assert_int_equal(c->stage, STAGE_COMPLETED);
	assert_false(c->queued);
	assert_int_equal(x->nops, 0);
	gw_exec_state_free(x);
}

/* The status an operation completed with. */
static int response_code(const exec_op *op)
{
	assert_non_null(op->response);
	re_execute_response *r =
		build__bazel__remote__execution__v2__execute_response__unpack(NULL, op->response_len, op->response);
	assert_non_null(r);
	int code = r->status ? r->status->code : 0;
	build__bazel__remote__execution__v2__execute_response__free_unpacked(r, NULL);
	return code;
}

static void drain_completes_everything(void **state)
{
	(void)state;
	fake_runner f = {.r = {.ops = &fake_ops}, .room = 1};
	struct exec_state *x = gw_exec_state_new(NULL, &f.r);
	exec_op *a = new_op(x, 0, 'a');
	reply(&f); /* a runs */
	exec_op *b = new_op(x, 0, 'b'); /* offered, its answer not yet given */
	exec_op *c = new_op(x, 0, 'c'); /* queued */
	assert_int_equal(f.offers, 2);
	gw_exec_drain(x);
	exec_op *ops[] = {a, b, c};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ops[i]->stage, STAGE_COMPLETED);
		assert_int_equal(response_code(ops[i]), CAIRN_UNAVAILABLE);
	}
	assert_true(atomic_load(&a->cancel)); /* the running job is asked to stop */
	assert_int_equal(x->nops, 0);
	/* the runner's late answers change nothing */
	reply(&f);
	finish_oldest(&f);
	if (f.nrunning)
		finish_oldest(&f);
	assert_int_equal(x->ndone, 3);
	assert_int_equal(response_code(a), CAIRN_UNAVAILABLE);
	/* what comes afterwards is refused at once */
	exec_op *d = new_op(x, 0, 'd');
	assert_int_equal(d->stage, STAGE_COMPLETED);
	assert_int_equal(response_code(d), CAIRN_UNAVAILABLE);
	assert_int_equal(f.offers, 2);
	gw_exec_state_free(x);
}

static void wake_offers_refused_operations_again(void **state)
{
	(void)state;
	fake_runner f = {.r = {.ops = &fake_ops}, .room = 0};
	struct exec_state *x = gw_exec_state_new(NULL, &f.r);
	exec_op *a = new_op(x, 0, 'a');
	exec_op *b = new_op(x, 0, 'b');
	reply(&f); /* a refused, then b offered and refused */
	reply(&f);
	assert_int_equal(f.offers, 2);
	assert_null(f.arg);
	f.room = 1; /* a worker joined: no job of this queue ended, the runner's owner wakes it */
	gw_exec_wake(x);
	assert_int_equal(f.offers, 3);
	assert_int_equal(f.last_action.hash[0], 'a');
	reply(&f); /* taken; b is offered next, and refused */
	assert_int_equal(f.offers, 4);
	assert_int_equal(f.last_action.hash[0], 'b');
	reply(&f);
	assert_false(a->queued);
	assert_true(b->queued);
	finish_oldest(&f);
	reply(&f);
	finish_oldest(&f);
	assert_int_equal(a->stage, STAGE_COMPLETED);
	assert_int_equal(b->stage, STAGE_COMPLETED);
	gw_exec_state_free(x);
}

static void always_lost_fails_after_the_last_requeue(void **state)
{
	(void)state;
	fake_runner f = {.r = {.ops = &fake_ops}, .room = 1};
	struct exec_state *x = gw_exec_state_new(NULL, &f.r);
	exec_op *a = new_op(x, 0, 'a');
	runner_outcome lost = {.st = cairn_err(CAIRN_UNAVAILABLE, "the worker was lost"), .lost = true};
	for (int i = 0; i < GW_EXEC_MAX_LOST; i++) {
		assert_int_equal(f.offers, i + 1);
		reply(&f);
		finish_oldest_with(&f, &lost); /* queued again, and offered again at once */
		assert_int_equal(a->stage, STAGE_QUEUED);
		assert_true(a->queued);
	}
	assert_int_equal(f.offers, GW_EXEC_MAX_LOST + 1);
	reply(&f);
	finish_oldest_with(&f, &lost);
	assert_int_equal(a->stage, STAGE_COMPLETED);
	assert_int_equal(response_code(a), CAIRN_UNAVAILABLE);
	assert_int_equal(f.offers, GW_EXEC_MAX_LOST + 1);
	assert_int_equal(x->nops, 0);
	gw_exec_state_free(x);
}

/* ---- through Execute: a gateway over an in-memory CAS, its runner reporting lost jobs ----------- */

/* A runner that takes every job and, from a thread of its own, reports it lost `lose` times, then
 * done with an ActionResult whose exit code is 7. */
typedef struct losing_runner {
	runner r;
	pthread_mutex_t mu;
	int lose;
	int offers;
	pthread_t threads[8];
	int nthreads;
} losing_runner;

typedef struct losing_job {
	const runner_callbacks *cb;
	void *arg;
	bool lost;
} losing_job;

static void *losing_thread(void *p)
{
	losing_job *j = p;
	j->cb->started(j->arg);
	Build__Bazel__Remote__Execution__V2__ActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
	ar.exit_code = 7;
	uint8_t buf[64];
	size_t len = build__bazel__remote__execution__v2__action_result__pack(&ar, buf);
	runner_outcome out = {.st = cairn_ok(), .result = buf, .result_len = len, .cacheable = true};
	if (j->lost)
		out = (runner_outcome){.st = cairn_err(CAIRN_UNAVAILABLE, "the worker was lost"), .lost = true};
	j->cb->done(j->arg, &out);
	free(j);
	return NULL;
}

static void losing_offer(runner *r, const runner_job *job, _Atomic bool *cancel, const runner_callbacks *cb,
                         void *arg)
{
	(void)job, (void)cancel;
	losing_runner *l = (losing_runner *)r;
	losing_job *j = cairn_xcalloc(1, sizeof *j);
	*j = (losing_job){.cb = cb, .arg = arg};
	pthread_mutex_lock(&l->mu);
	j->lost = l->offers++ < l->lose;
	assert_true(l->nthreads < 8);
	cb->answered(arg, true);
	assert_int_equal(pthread_create(&l->threads[l->nthreads++], NULL, losing_thread, j), 0);
	pthread_mutex_unlock(&l->mu);
}

static const runner_ops losing_ops = {.check = fake_check, .offer = losing_offer};

/* Runs one action through Execute on a gateway whose runner loses it `lose` times; returns how many
 * of the Operations the stream carried were done, and the last one's ExecuteResponse in *resp. */
static int execute_losing(int lose, int *offers, Build__Bazel__Remote__Execution__V2__ExecuteResponse **resp)
{
	losing_runner l = {.r = {.ops = &losing_ops}, .lose = lose};
	pthread_mutex_init(&l.mu, NULL);
	mem_store m;
	mem_init(&m, false);
	/* an Action with its platform (no Command to read) */
	Build__Bazel__Remote__Execution__V2__Action action = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION__INIT;
	Build__Bazel__Remote__Execution__V2__Platform platform = BUILD__BAZEL__REMOTE__EXECUTION__V2__PLATFORM__INIT;
	Build__Bazel__Remote__Execution__V2__Platform__Property prop =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__PLATFORM__PROPERTY__INIT;
	prop.name = "Pool";
	prop.value = "default";
	Build__Bazel__Remote__Execution__V2__Platform__Property *props[] = {&prop};
	platform.properties = props;
	platform.n_properties = 1;
	action.platform = &platform;
	action.do_not_cache = true;
	cairn_arena *a = cairn_arena_new(1024);
	cairn_digest command, ad;
	cairn_digest_of("command", 7, &command);
	action.command_digest = reapi_digest_to_pb(a, &command);
	uint8_t packed[512];
	size_t packed_len = build__bazel__remote__execution__v2__action__pack(&action, packed);
	cairn_digest_of(packed, packed_len, &ad);
	add(&m, &ad, packed);

	gateway_config gc = {.cas = &m.bs, .ac_max_size = 1 << 20, .max_batch_size = 4 << 20, .max_upload_sessions = 16,
	                     .upload_idle_ns = 60000000000LL, .max_inline_size = 1 << 20, .runner = &l.r};
	gateway *g = gateway_new(&gc);
	rpc_method methods[32];
	size_t n = gateway_methods(g, methods, 32);
	rpc_server *s;
	rpc_server_config sc = {.address = "127.0.0.1:0", .threads = 2};
	assert_int_equal(rpc_server_start(&sc, methods, n, &s).code, CAIRN_OK);
	char target[32];
	snprintf(target, sizeof target, "127.0.0.1:%d", rpc_server_port(s));
	rpc_channel *ch;
	assert_int_equal(rpc_channel_open(target, 4 << 20, &ch).code, CAIRN_OK);

	Build__Bazel__Remote__Execution__V2__ExecuteRequest req = BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_REQUEST__INIT;
	req.instance_name = "";
	req.action_digest = reapi_digest_to_pb(a, &ad);
	req.skip_cache_lookup = true;
	rpc_stream *st;
	/* the call's deadline only keeps a broken queue from hanging the test */
	assert_int_equal(rpc_stream_open(ch, "/build.bazel.remote.execution.v2.Execution/Execute", 120000, &st).code,
	                 CAIRN_OK);
	assert_int_equal(rpc_stream_send(st, &req.base).code, CAIRN_OK);
	assert_int_equal(rpc_stream_close_send(st).code, CAIRN_OK);
	int ndone = 0;
	*resp = NULL;
	for (;;) {
		ProtobufCMessage *msg;
		assert_int_equal(rpc_stream_recv(st, &google__longrunning__operation__descriptor, &msg).code, CAIRN_OK);
		if (!msg)
			break;
		Google__Longrunning__Operation *op = (Google__Longrunning__Operation *)msg;
		if (op->done) {
			ndone++;
			assert_int_equal(op->result_case, GOOGLE__LONGRUNNING__OPERATION__RESULT_RESPONSE);
			if (*resp)
				build__bazel__remote__execution__v2__execute_response__free_unpacked(*resp, NULL);
			*resp = build__bazel__remote__execution__v2__execute_response__unpack(NULL, op->response->value.len,
			                                                                       op->response->value.data);
			assert_non_null(*resp);
		}
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	assert_int_equal(rpc_stream_finish(st, NULL, NULL).code, CAIRN_OK);
	rpc_channel_close(ch);
	rpc_server_stop(s);
	for (int i = 0; i < l.nthreads; i++)
		pthread_join(l.threads[i], NULL);
	gateway_free(g);
	mem_free(&m);
	cairn_arena_free(a);
	pthread_mutex_destroy(&l.mu);
	*offers = l.offers;
	return ndone;
}

static void lost_once_then_done_completes_once(void **state)
{
	(void)state;
	int offers;
	Build__Bazel__Remote__Execution__V2__ExecuteResponse *r;
	assert_int_equal(execute_losing(1, &offers, &r), 1);
	assert_int_equal(offers, 2);
	assert_true(!r->status || r->status->code == CAIRN_OK);
	assert_non_null(r->result);
	assert_int_equal(r->result->exit_code, 7);
	build__bazel__remote__execution__v2__execute_response__free_unpacked(r, NULL);
}

static void always_lost_through_execute_fails_once(void **state)
{
	(void)state;
	int offers;
	Build__Bazel__Remote__Execution__V2__ExecuteResponse *r;
	assert_int_equal(execute_losing(GW_EXEC_MAX_LOST + 5, &offers, &r), 1);
	assert_int_equal(offers, GW_EXEC_MAX_LOST + 1);
	assert_non_null(r->status);
	assert_int_equal(r->status->code, CAIRN_UNAVAILABLE);
	build__bazel__remote__execution__v2__execute_response__free_unpacked(r, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(queue_with_a_remote_runner),
		cmocka_unit_test(cancel_while_offered),
		cmocka_unit_test(drain_completes_everything),
		cmocka_unit_test(wake_offers_refused_operations_again),
		cmocka_unit_test(always_lost_fails_after_the_last_requeue),
		cmocka_unit_test(lost_once_then_done_completes_once),
		cmocka_unit_test(always_lost_through_execute_fails_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
