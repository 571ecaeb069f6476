/* The execution queue: operations wait here by priority until the runner has a free executor that
 * satisfies them; the runner's callbacks move them to EXECUTING and COMPLETED, and a finished result
 * goes into the action cache when it may.
 *
 * Dispatch offers queued operations to the runner one at a time, in queue order. An operation stays
 * queued until the runner takes it; one it refuses (full for its properties) is skipped until some
 * job finishes (x->gen counts those), so a pool that is full does not hold back operations that
 * another pool can run. The runner may answer inside the offer (the executor does) or later from
 * another thread (a remote runner): an answer inside is left in x->answer for the dispatch loop,
 * one that comes later takes the lock and dispatches again.
 *
 * Capacity can also appear without a job of this queue ending (a worker joins, another scheduler's
 * job ends on a shared worker): gw_exec_wake, which the runner's owner calls then, makes refused
 * operations eligible again. A job the runner reports lost goes back into the queue at its old
 * place, up to GW_EXEC_MAX_LOST times; after that its client gets the runner's UNAVAILABLE.
 *
 * A server that stops drains the queue first: every operation in flight completes with UNAVAILABLE
 * (its client hears it and may execute it again, rather than see its stream cut), running jobs are
 * cancelled, and their late callbacks find their operations complete. */
#include "gateway/exec_internal.h"

#include <stdlib.h>
#include <string.h>

/* Dispatch tries at most this many queued operations per pass, so a long queue of actions for a busy
 * pool does not make every completion scan it all. */
#define DISPATCH_SCAN 256

struct exec_state *gw_exec_state_new(gateway *g, runner *r)
{
	struct exec_state *x = cairn_xcalloc(1, sizeof *x);
	pthread_mutex_init(&x->mu, NULL);
	x->runner = r;
	x->gateway = g;
	x->retention_ns = 600 * 1000000000LL;
	x->max_ops = 100000;  /* in flight */
	x->max_done = 100000; /* finished and kept: about 300 bytes each */
	return x;
}

static void op_free(exec_op *op)
{
	free(op->instance);
	free(op->packed);
	free(op->response);
	free(op->props);
	free(op->prop_storage);
	free(op);
}

void gw_exec_state_free(struct exec_state *x)
{
	if (!x)
		return;
	for (exec_op *lists[2] = {x->ops, x->done}, **l = lists; l < lists + 2; l++)
		for (exec_op *op = *l, *n; op; op = n) {
			n = op->next;
			op_free(op);
		}
	pthread_mutex_destroy(&x->mu);
	free(x);
}

void gw_exec_sweep(struct exec_state *x)
{
	int64_t now = cairn_now_ns();
	while (x->done && !x->done->watchers &&
	       (x->ndone > x->max_done || now - x->done->done_at > x->retention_ns)) {
		exec_op *op = x->done;
		x->done = op->next;
		if (!x->done)
			x->done_tail = NULL;
		x->ndone--;
		op_free(op);
	}
}

static void complete(struct exec_state *x, exec_op *op, uint8_t *response, size_t len);

/* Puts op in the queue, by priority then arrival. */
static void enqueue(struct exec_state *x, exec_op *op)
{
	exec_op **pp = &x->queue;
	while (*pp && ((*pp)->priority < op->priority || ((*pp)->priority == op->priority && (*pp)->seq < op->seq)))
		pp = &(*pp)->qnext;
	op->qnext = *pp;
	*pp = op;
}

void gw_exec_enqueue(struct exec_state *x, exec_op *op)
{
	op->seq = x->seq++;
	op->queued_at = cairn_wall_ns();
	op->stage = STAGE_QUEUED;
	op->queued = true;
	gw_exec_op_repack(op);
	op->prev = NULL;
	op->next = x->ops;
	if (x->ops)
		x->ops->prev = op;
	x->ops = op;
	x->nops++;
	if (x->draining) {
		cairn_status st = cairn_err(CAIRN_UNAVAILABLE, "the server is stopping: execute the action again elsewhere");
		uint8_t *resp;
		size_t len;
		gw_exec_pack_response(NULL, false, &st, NULL, 0, &resp, &len);
		complete(x, op, resp, len);
		return;
	}
	enqueue(x, op);
	gw_exec_dispatch(x);
}

static void dequeue(struct exec_state *x, exec_op *op)
{
	for (exec_op **pp = &x->queue; *pp; pp = &(*pp)->qnext)
		if (*pp == op) {
			*pp = op->qnext;
			op->qnext = NULL;
			op->queued = false;
			return;
		}
}

/* Moves a finished operation from the list in flight to the tail of the finished ones. */
static void retire(struct exec_state *x, exec_op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		x->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	x->nops--;
	op->next = op->prev = NULL;
	if (x->done_tail)
		x->done_tail->next = op;
	else
		x->done = op;
	x->done_tail = op;
	x->ndone++;
}

/* Completes an operation with a packed ExecuteResponse (taken over). Under mu. */
static void complete(struct exec_state *x, exec_op *op, uint8_t *response, size_t len)
{
	retire(x, op);
	op->response = response;
	op->response_len = len;
	op->stage = STAGE_COMPLETED;
	op->done_at = cairn_now_ns();
	gw_exec_op_repack(op);
	gw_exec_notify(x, op);
}

typedef struct job_ctx {
	struct exec_state *x;
	gateway *g;
	exec_op *op;
} job_ctx;

static void answered(void *arg, bool taken);
static void started(void *arg);
static void done(void *arg, const runner_outcome *out);
static const runner_callbacks job_callbacks = {.answered = answered, .started = started, .done = done};

/* Acts on the runner's answer to the offer of j->op. Under mu. */
static void settle(struct exec_state *x, job_ctx *j, bool taken)
{
	exec_op *op = j->op;
	x->offering = NULL;
	if (taken) {
		dequeue(x, op); /* the runner reports through started and done now; j goes with done */
		return;
	}
	free(j);
	op->refused_gen = x->gen + 1;
	if (atomic_load(&op->cancel))
		gw_exec_cancel(x, op); /* cancelled while the offer was out */
}

static void answered(void *arg, bool taken)
{
	job_ctx *j = arg;
	struct exec_state *x = j->x;
	if (x->in_offer && pthread_equal(x->offer_thread, pthread_self())) {
		x->answer = taken ? 1 : 2; /* inside the offer, under mu: the dispatch loop acts on it */
		return;
	}
	pthread_mutex_lock(&x->mu);
	settle(x, j, taken);
	gw_exec_dispatch(x);
	pthread_mutex_unlock(&x->mu);
}

static void started(void *arg)
{
	job_ctx *j = arg;
	pthread_mutex_lock(&j->x->mu);
	if (j->op->stage == STAGE_QUEUED) {
		j->op->stage = STAGE_EXECUTING;
		gw_exec_op_repack(j->op);
		gw_exec_notify(j->x, j->op);
	}
	pthread_mutex_unlock(&j->x->mu);
}

static bool may_cache(const exec_op *op, const runner_outcome *out, const re_action_result *ar)
{
	return cairn_is_ok(&out->st) && ar && ar->exit_code == 0 && out->cacheable && !op->do_not_cache &&
	       !atomic_load(&((exec_op *)op)->cancel);
}

/* A job the runner lost (its worker died) goes back to its place in the queue, a few times at most.
 * Under mu. */
static bool requeue(struct exec_state *x, exec_op *op, const runner_outcome *out)
{
	if (!out->lost || atomic_load(&op->cancel) || op->lost >= GW_EXEC_MAX_LOST)
		return false;
	op->lost++;
	LOG_WARN("exec", "action dispatched again after its worker was lost operation=%s attempt=%d", op->name,
	         op->lost + 1);
	op->stage = STAGE_QUEUED;
	op->queued = true;
	op->refused_gen = 0;
	gw_exec_op_repack(op);
	gw_exec_notify(x, op);
	enqueue(x, op);
	return true;
}

static void done(void *arg, const runner_outcome *out)
{
	job_ctx *j = arg;
	exec_op *op = j->op;
	pthread_mutex_lock(&j->x->mu);
	if (op->stage == STAGE_COMPLETED || requeue(j->x, op, out)) { /* drained, or queued again */
		gw_exec_dispatch(j->x);
		pthread_mutex_unlock(&j->x->mu);
		free(j);
		return;
	}
	pthread_mutex_unlock(&j->x->mu);
	re_action_result *ar = NULL;
	if (out->result)
		ar = build__bazel__remote__execution__v2__action_result__unpack(NULL, out->result_len, out->result);
	cairn_status st = out->st;
	if (out->result && !ar)
		st = cairn_err(CAIRN_INTERNAL, "executor produced an unreadable result");
	if (atomic_load(&op->cancel) && cairn_is_ok(&st))
		st = cairn_err(CAIRN_CANCELLED, "operation was cancelled");
	if (may_cache(op, out, ar)) {
		cairn_status put = gw_ac_put(j->g, op->instance, &op->action, out->result, out->result_len);
		if (!cairn_is_ok(&put))
			LOG_WARN("exec", "result not cached: %s", cairn_status_str(&put));
	}
	uint8_t *resp;
	size_t len;
	gw_exec_pack_response(ar, false, &st, out->missing, out->nmissing, &resp, &len);
	if (ar)
		build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
	pthread_mutex_lock(&j->x->mu);
	complete(j->x, op, resp, len);
	j->x->gen++; /* an executor is free again: what was refused may run now */
	gw_exec_dispatch(j->x);
	pthread_mutex_unlock(&j->x->mu);
	free(j);
}

void gw_exec_dispatch(struct exec_state *x)
{
	int scanned = 0;
	for (exec_op *op = x->queue, *next; op && !x->offering && scanned < DISPATCH_SCAN; op = next, scanned++) {
		next = op->qnext;
		if (op->refused_gen == x->gen + 1)
			continue; /* refused since the last job finished: nothing has changed for it */
		runner_job job = {.action = op->action, .props = op->props, .nprops = op->nprops, .priority = op->priority,
		                  .queued_at = op->queued_at};
		job_ctx *j = cairn_xmalloc(sizeof *j);
		*j = (job_ctx){.x = x, .g = x->gateway, .op = op};
		x->offering = op;
		x->answer = 0;
		x->offer_thread = pthread_self();
		x->in_offer = true;
		runner_offer(x->runner, &job, &op->cancel, &job_callbacks, j);
		x->in_offer = false;
		if (!x->answer)
			return; /* it comes later, and dispatches again */
		settle(x, j, x->answer == 1);
	}
}

void gw_exec_drain(struct exec_state *x)
{
	pthread_mutex_lock(&x->mu);
	cairn_status st = cairn_err(CAIRN_UNAVAILABLE, "the server is stopping: the action did not finish; execute it again");
	while (x->ops) {
		exec_op *op = x->ops;
		atomic_store(&op->cancel, true); /* a running job is stopped; its done finds the op complete */
		if (op->queued)
			dequeue(x, op);
		if (x->offering == op)
			x->offering = NULL; /* the answer to come finds the op complete */
		uint8_t *resp;
		size_t len;
		gw_exec_pack_response(NULL, false, &st, NULL, 0, &resp, &len);
		complete(x, op, resp, len);
	}
	x->draining = true;
	pthread_mutex_unlock(&x->mu);
}

void gw_exec_wake(struct exec_state *x)
{
	pthread_mutex_lock(&x->mu);
	x->gen++;
	gw_exec_dispatch(x);
	pthread_mutex_unlock(&x->mu);
}

void gw_exec_cancel(struct exec_state *x, exec_op *op)
{
	if (op->stage == STAGE_COMPLETED)
		return;
	atomic_store(&op->cancel, true);
	if (!op->queued || x->offering == op)
		return; /* running, or offered: the runner stops it and reports through done, or refuses it
		         * and settle cancels it */
	dequeue(x, op);
	cairn_status st = cairn_err(CAIRN_CANCELLED, "operation was cancelled");
	uint8_t *resp;
	size_t len;
	gw_exec_pack_response(NULL, false, &st, NULL, 0, &resp, &len);
	complete(x, op, resp, len);
}
