/* A worker's side of the Run call: the offer it carries goes to the worker's local runner (its
 * executor), and the runner's answers go back on the call as RunUpdate messages.
 *
 * The runner reports from its own threads (answered may even run inside the offer, under the
 * executor's lock), while a call has at most one send-side operation in flight, so the updates
 * wait in a short list: at most three ever exist (the answer, STARTED, DONE). Whoever finds no
 * send under way starts the next, outside the lock; a send's completion starts the one after. The
 * last update (FULL or DONE) goes with the call's status, which ends it. The call's state (this
 * struct) lives as long as the call; a reference held from the offer until the runner's last
 * callback keeps the call alive while the runner may still report. */
#include "runner/runner.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/worker.pb-c.h"
#include "proto/reapi.h"
#include "rpc/rpc.h"

typedef Cairn__V1__RunUpdate run_update;

typedef struct update {
	int kind;
	runner_outcome out; /* DONE: a copy, its buffers owned here */
} update;

typedef struct run_call {
	rpc_call *call;
	runner *local;
	runner_props props;
	_Atomic bool cancel;
	pthread_mutex_t mu;
	update q[3];
	size_t head, n;
	bool sending;
} run_call;

static void destroy(void *state)
{
	run_call *c = state;
	for (size_t i = 0; i < c->n; i++) {
		update *u = &c->q[(c->head + i) % 3];
		free((void *)u->out.result);
		free((void *)u->out.missing);
	}
	runner_props_free(&c->props);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void pump(run_call *c);

static void sent(rpc_call *call, void *arg, bool ok)
{
	(void)call;
	(void)ok; /* a scheduler that went away cancelled the call: the runner hears it through cancel */
	run_call *c = arg;
	pthread_mutex_lock(&c->mu);
	c->sending = false;
	pthread_mutex_unlock(&c->mu);
	pump(c);
}

static void on_cancel(rpc_call *call, void *arg)
{
	(void)call;
	atomic_store(&((run_call *)arg)->cancel, true);
}

/* Sends the next update if none is under way. */
static void pump(run_call *c)
{
	pthread_mutex_lock(&c->mu);
	if (c->sending || !c->n) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	update u = c->q[c->head];
	c->head = (c->head + 1) % 3;
	c->n--;
	c->sending = true;
	pthread_mutex_unlock(&c->mu);

	cairn_arena *a = rpc_call_arena(c->call);
	run_update m = CAIRN__V1__RUN_UPDATE__INIT;
	m.kind = (Cairn__V1__RunUpdate__Kind)u.kind;
	if (u.kind != CAIRN__V1__RUN_UPDATE__KIND__DONE) {
		if (u.kind == CAIRN__V1__RUN_UPDATE__KIND__FULL) {
			cairn_status ok = cairn_ok();
			rpc_call_finish(c->call, &ok, &m.base, NULL, 0, NULL, NULL);
		} else {
			rpc_call_send(c->call, &m.base, sent, c);
		}
		return;
	}
	m.code = u.out.st.code;
	m.message = u.out.st.msg;
	m.result = (ProtobufCBinaryData){.data = (uint8_t *)u.out.result, .len = u.out.result_len};
	m.cacheable = u.out.cacheable;
	if (u.out.nmissing) {
		m.missing = cairn_arena_alloc(a, u.out.nmissing * sizeof *m.missing);
		for (size_t i = 0; i < u.out.nmissing; i++)
			m.missing[i] = reapi_digest_to_pb(a, &u.out.missing[i]);
		m.n_missing = u.out.nmissing;
	}
	cairn_status ok = cairn_ok();
	rpc_call_finish(c->call, &ok, &m.base, NULL, 0, NULL, NULL); /* packed before it returns */
	free((void *)u.out.result);
	free((void *)u.out.missing);
	rpc_call_unref(c->call); /* the runner's reference: it reports no more */
}

static void *dup(const void *p, size_t n)
{
	return n ? memcpy(cairn_xmalloc(n), p, n) : NULL;
}

static void push(run_call *c, int kind, const runner_outcome *out)
{
	update u = {.kind = kind};
	if (out) {
		u.out = *out;
		u.out.result = dup(out->result, out->result_len);
		u.out.missing = dup(out->missing, out->nmissing * sizeof *out->missing);
	}
	pthread_mutex_lock(&c->mu);
	c->q[(c->head + c->n) % 3] = u;
	c->n++;
	pthread_mutex_unlock(&c->mu);
	pump(c);
}

static void answered(void *arg, bool taken)
{
	run_call *c = arg;
	if (taken) {
		push(c, CAIRN__V1__RUN_UPDATE__KIND__TAKEN, NULL);
		return;
	}
	push(c, CAIRN__V1__RUN_UPDATE__KIND__FULL, NULL);
	rpc_call_unref(c->call); /* nothing more comes from the runner */
}

static void started(void *arg) { push(arg, CAIRN__V1__RUN_UPDATE__KIND__STARTED, NULL); }
static void done(void *arg, const runner_outcome *out)
{
	LOG_DEBUG("runner", "action finished for a scheduler status=%s", cairn_status_str(&out->st));
	push(arg, CAIRN__V1__RUN_UPDATE__KIND__DONE, out);
}

static const runner_callbacks callbacks = {.answered = answered, .started = started, .done = done};

static const char *req_name(const void *src, size_t i) { return ((const Cairn__V1__RunRequest *)src)->properties[i]->name; }
static const char *req_value(const void *src, size_t i)
{
	return ((const Cairn__V1__RunRequest *)src)->properties[i]->value;
}

static void handle_run(rpc_call *call, void *service)
{
	Cairn__V1__RunRequest *req = rpc_call_unpack_request(call, &cairn__v1__run_request__descriptor);
	cairn_digest action;
	cairn_status st = req ? reapi_digest_from_pb(req->action, "action", &action)
	                      : cairn_err(CAIRN_INVALID_ARGUMENT, "malformed RunRequest");
	for (size_t i = 0; cairn_is_ok(&st) && i < req->n_properties; i++)
		if (!req->properties[i] || !req->properties[i]->name[0])
			st = cairn_err(CAIRN_INVALID_ARGUMENT, "RunRequest property %zu has no name", i);
	if (!cairn_is_ok(&st)) {
		rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
		return;
	}
	run_call *c = cairn_xcalloc(1, sizeof *c);
	c->call = call;
	c->local = service;
	pthread_mutex_init(&c->mu, NULL);
	runner_props_copy(&c->props, req->n_properties, req_name, req_value, req);
	rpc_call_set_state(call, c, destroy);
	rpc_call_ref(call); /* for the runner, until its last callback */
	rpc_call_on_cancel(call, on_cancel, c);
	if (rpc_call_cancelled(call)) /* cancelled before on_cancel was registered: it will not run */
		atomic_store(&c->cancel, true);
	runner_job job = {.action = action,
	                  .props = c->props.props,
	                  .nprops = c->props.n,
	                  .priority = req->priority,
	                  .queued_at = req->queued_at_ns};
	runner_offer(c->local, &job, &c->cancel, &callbacks, c);
}

size_t runner_service_methods(runner *local, rpc_method *out, size_t cap)
{
	if (cap < 1)
		return 0;
	out[0] = (rpc_method){.path = "/cairn.v1.Worker/Run", .kind = RPC_SERVER_STREAMING, .handler = handle_run,
	                      .service = local};
	return 1;
}
