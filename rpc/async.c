/* The asynchronous client: its completion queue and pollers, the calls it tracks so that stopping can
 * cancel them, and unary calls, each one batch with one tag. Streaming calls are in async_stream.c. */
#include "rpc/internal.h"

#include <assert.h>
#include <string.h>

cairn_status rpc_client_start(const rpc_client_config *cfg, rpc_client **out)
{
	grpc_init();
	rpc_client *cl = cairn_xcalloc(1, sizeof *cl);
	pthread_mutex_init(&cl->mu, NULL);
	pthread_cond_init(&cl->cv, NULL);
	cl->calls.prev = cl->calls.next = &cl->calls;
	cl->cq = grpc_completion_queue_create_for_next(NULL);
	cl->npollers = cfg && cfg->threads > 0 ? cfg->threads : 2;
	cl->pollers = cairn_xcalloc((size_t)cl->npollers, sizeof(pthread_t));
	for (int i = 0; i < cl->npollers; i++)
		pthread_create(&cl->pollers[i], NULL, rpc_poller, cl->cq);
	*out = cl;
	return cairn_ok();
}

/* What a call cancelled by rpc_client_stop ends with. */
static void cancel_stopping(grpc_call *gc)
{
	grpc_call_cancel_with_status(gc, GRPC_STATUS_CANCELLED, "the rpc client stopped before the call ended", NULL);
}

void rpc_client_stop(rpc_client *cl)
{
	pthread_mutex_lock(&cl->mu);
	cl->stopping = true;
	for (rpc_client_link *l = cl->calls.next; l != &cl->calls; l = l->next)
		cancel_stopping(l->gc);
	while (cl->live > 0)
		pthread_cond_wait(&cl->cv, &cl->mu);
	pthread_mutex_unlock(&cl->mu);
	/* every call is freed, so no batch is outstanding: the queue drains to its shutdown at once */
	grpc_completion_queue_shutdown(cl->cq);
	for (int i = 0; i < cl->npollers; i++)
		pthread_join(cl->pollers[i], NULL);
	grpc_completion_queue_destroy(cl->cq);
	pthread_mutex_destroy(&cl->mu);
	pthread_cond_destroy(&cl->cv);
	free(cl->pollers);
	free(cl);
	grpc_shutdown();
}

void rpc_client_track(rpc_client *cl, rpc_channel *ch, const char *method, int64_t timeout_ms, rpc_client_link *l)
{
	/* a call without a deadline would hang its caller for as long as a dead peer holds the connection */
	assert(timeout_ms > 0);
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	grpc_slice m = grpc_slice_from_copied_string(method);
	l->gc = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cl->cq, m, NULL, deadline, NULL);
	grpc_slice_unref(m);
	pthread_mutex_lock(&cl->mu);
	l->next = &cl->calls;
	l->prev = cl->calls.prev;
	l->prev->next = l;
	cl->calls.prev = l;
	cl->live++;
	if (cl->stopping) /* e.g. started from the callback of a call that stop cancelled */
		cancel_stopping(l->gc);
	pthread_mutex_unlock(&cl->mu);
}

void rpc_client_untrack(rpc_client *cl, rpc_client_link *l)
{
	pthread_mutex_lock(&cl->mu);
	l->prev->next = l->next;
	l->next->prev = l->prev;
	grpc_call_unref(l->gc); /* under mu: stop may be cancelling it */
	if (--cl->live == 0)
		pthread_cond_broadcast(&cl->cv);
	pthread_mutex_unlock(&cl->mu);
}

/* ---- unary ---- */

typedef struct unary_call {
	rpc_tag tag; /* first: the tag is the call */
	rpc_client_link link;
	rpc_client *cl;
	const ProtobufCMessageDescriptor *resp_desc;
	rpc_unary_cb cb;
	void *arg;
	grpc_byte_buffer *resp;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status;
	grpc_slice details;
} unary_call;

static cairn_status unary_result(unary_call *u, bool ok, ProtobufCMessage **resp)
{
	*resp = NULL;
	if (!ok) /* core gives every call a status, even a cancelled one: this is a fault of its own */
		return cairn_err(CAIRN_INTERNAL, "a call for a %s ended without a status", u->resp_desc->name);
	if (u->status != GRPC_STATUS_OK)
		return rpc_status_from(u->status, u->details);
	if (!u->resp)
		return cairn_err(CAIRN_INTERNAL, "the server sent no %s", u->resp_desc->name);
	grpc_slice flat = rpc_flatten(u->resp);
	*resp = protobuf_c_message_unpack(u->resp_desc, NULL, GRPC_SLICE_LENGTH(flat), GRPC_SLICE_START_PTR(flat));
	grpc_slice_unref(flat);
	if (!*resp)
		return cairn_err(CAIRN_INTERNAL, "the server sent a malformed %s", u->resp_desc->name);
	return cairn_ok();
}

static void on_unary(rpc_tag *t, bool ok)
{
	unary_call *u = (unary_call *)t;
	ProtobufCMessage *resp;
	cairn_status st = unary_result(u, ok, &resp);
	if (u->resp)
		grpc_byte_buffer_destroy(u->resp);
	grpc_slice_unref(u->details);
	grpc_metadata_array_destroy(&u->initial_md);
	grpc_metadata_array_destroy(&u->trailing_md);
	u->cb(u->arg, st, resp);
	/* only now: the client stops once no callback can still start a call on its queue */
	rpc_client_untrack(u->cl, &u->link);
	free(u);
}

void rpc_async_unary(rpc_client *cl, rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms, rpc_unary_cb cb, void *arg)
{
	unary_call *u = cairn_xcalloc(1, sizeof *u);
	u->tag.fn = on_unary;
	u->cl = cl;
	u->resp_desc = resp_desc;
	u->cb = cb;
	u->arg = arg;
	grpc_metadata_array_init(&u->initial_md);
	grpc_metadata_array_init(&u->trailing_md);
	rpc_client_track(cl, ch, method, timeout_ms, &u->link);
	grpc_byte_buffer *bb = rpc_pack(req);
	grpc_op ops[6] = {0};
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = ch->nmd;
	ops[0].data.send_initial_metadata.metadata = ch->md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &u->resp;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing_md;
	ops[5].data.recv_status_on_client.status = &u->status;
	ops[5].data.recv_status_on_client.status_details = &u->details;
	grpc_call_error e = grpc_call_start_batch(u->link.gc, ops, 6, &u->tag, NULL);
	grpc_byte_buffer_destroy(bb); /* the batch holds its own references */
	/* a fresh call takes a full batch: only a broken core refuses it */
	assert(e == GRPC_CALL_OK);
	(void)e;
}
