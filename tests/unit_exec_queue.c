/* Unit tests of the execution queue (gateway/exec_queue.c) with a runner that answers its offers
 * later, from another thread, as a runner across the network does: one offer at a time, refused
 * operations offered again once a job finishes, priorities kept, cancellation while an offer is
 * out, and the drain of a server that stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/exec_internal.h"

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
} call_in_thread;

static void *answer_thread(void *p)
{
	call_in_thread *c = p;
	if (c->finish) {
		runner_outcome out = {.st = cairn_ok()};
		c->f->cb->done(c->arg, &out);
	} else {
		c->f->cb->answered(c->arg, c->taken);
	}
	return NULL;
}

/* Runs an answer (or a done) on a thread of its own and waits for it. */
static void on_other_thread(fake_runner *f, void *arg, bool taken, bool finish)
{
	call_in_thread c = {f, arg, taken, finish};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, answer_thread, &c), 0);
	pthread_join(t, NULL);
}

/* Answers the offer that is out: taken while there is room. */
static void answer(fake_runner *f)
{
	void *arg = f->arg;
	assert_non_null(arg);
	bool taken = f->nrunning < f->room;
	if (taken)
		f->running[f->nrunning++] = arg;
	f->arg = NULL;
	on_other_thread(f, arg, taken, false);
}

static void finish_oldest(fake_runner *f)
{
	void *arg = f->running[0];
	memmove(f->running, f->running + 1, (size_t)--f->nrunning * sizeof *f->running);
	on_other_thread(f, arg, false, true);
}

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
	answer(&f); /* taken: the next in line (urgent, by priority) is offered */
	assert_int_equal(a->stage, STAGE_QUEUED);
	assert_false(a->queued);
	assert_int_equal(f.offers, 2);
	assert_int_equal(f.last_action.hash[0], 'u');
	answer(&f); /* refused: full. Then b is offered, and refused too */
	assert_int_equal(f.offers, 3);
	assert_int_equal(f.last_action.hash[0], 'b');
	answer(&f);
	assert_int_equal(f.offers, 3); /* nothing is offered again until a job finishes */
	assert_true(urgent->queued && b->queued);
	finish_oldest(&f); /* a is done: urgent goes first */
	assert_int_equal(a->stage, STAGE_COMPLETED);
	assert_int_equal(f.offers, 4);
	assert_int_equal(f.last_action.hash[0], 'u');
	answer(&f);
	assert_false(urgent->queued);
	assert_int_equal(f.last_action.hash[0], 'b'); /* and b is offered, to be refused */
	answer(&f);
	finish_oldest(&f);
	answer(&f); /* b taken at last */
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
	answer(&f); /* refused: the queue completes it as cancelled, once */
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
	answer(&f); /* a runs */
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
	answer(&f);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(queue_with_a_remote_runner),
		cmocka_unit_test(cancel_while_offered),
		cmocka_unit_test(drain_completes_everything),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
