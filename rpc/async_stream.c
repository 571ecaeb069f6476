/* Streaming calls of the asynchronous client: a refcounted call context, one tag per kind of batch
 * (initial metadata, send, receive, finish), and the caller's reference, given back by finish. */
#include "rpc/internal.h"

#include <assert.h>
#include <string.h>

typedef struct cc_op {
	rpc_tag tag;
	rpc_client_call *cc;
} cc_op;

struct rpc_client_call {
	rpc_client_link link;
	rpc_client *cl;
	atomic_int refs; /* the caller's, until its finish callback has run, and one per outstanding batch */
	/* core wants the batches of one call started one at a time; sends apart from receives */
	pthread_mutex_t send_mu, recv_mu;
	bool md_asked; /* the server's initial metadata is asked for; guarded by recv_mu */
	atomic_bool sending, receiving; /* a send-side, a receive-side operation is in flight */
	cc_op start_op, send_op, recv_op, finish_op;
	rpc_client_done_cb send_cb;
	void *send_arg;
	rpc_client_recv_cb recv_cb;
	void *recv_arg;
	grpc_byte_buffer *recv_bb;
	rpc_client_status_cb finish_cb;
	void *finish_arg;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status;
	grpc_slice details;
};

static void cc_unref(rpc_client_call *cc)
{
	int prev = atomic_fetch_sub(&cc->refs, 1);
	assert(prev > 0);
	if (prev > 1)
		return;
	pthread_mutex_destroy(&cc->send_mu);
	pthread_mutex_destroy(&cc->recv_mu);
	grpc_metadata_array_destroy(&cc->initial_md);
	grpc_metadata_array_destroy(&cc->trailing_md);
	grpc_slice_unref(cc->details);
	rpc_client_untrack(cc->cl, &cc->link);
	free(cc);
}

/* Starts one batch under `mu`. The batch's reference is dropped by its completion, which may run on
 * a poller before grpc_call_start_batch returns: a second reference keeps mu alive until unlocked. */
static void start(rpc_client_call *cc, pthread_mutex_t *mu, grpc_op *ops, size_t n, cc_op *op)
{
	atomic_fetch_add(&cc->refs, 2);
	grpc_call_error e = grpc_call_start_batch(cc->link.gc, ops, n, &op->tag, NULL);
	pthread_mutex_unlock(mu);
	if (e != GRPC_CALL_OK) {
		/* a misuse of the call (two sends at once…): reported as a failed operation */
		LOG_ERROR("rpc", "client start_batch failed err=%d", (int)e);
		op->tag.fn(&op->tag, false);
	}
	cc_unref(cc);
}

/* Asks for the server's initial metadata with the first receive-side batch; recv_mu is held. */
static size_t add_recv_md(rpc_client_call *cc, grpc_op *ops)
{
	if (cc->md_asked)
		return 0;
	cc->md_asked = true;
	memset(ops, 0, sizeof *ops);
	ops->op = GRPC_OP_RECV_INITIAL_METADATA;
	ops->data.recv_initial_metadata.recv_initial_metadata = &cc->initial_md;
	return 1;
}

static void on_started(rpc_tag *t, bool ok)
{
	(void)ok; /* a call that failed this early fails its next operation and its status too */
	cc_unref(((cc_op *)t)->cc);
}

rpc_client_call *rpc_client_call_start(rpc_client *cl, rpc_channel *ch, const char *method, int64_t timeout_ms)
{
	rpc_client_call *cc = cairn_xcalloc(1, sizeof *cc);
	cc->cl = cl;
	atomic_init(&cc->refs, 1);
	pthread_mutex_init(&cc->send_mu, NULL);
	pthread_mutex_init(&cc->recv_mu, NULL);
	grpc_metadata_array_init(&cc->initial_md);
	grpc_metadata_array_init(&cc->trailing_md);
	cc->start_op = cc->send_op = cc->recv_op = cc->finish_op = (cc_op){.cc = cc};
	cc->start_op.tag.fn = on_started;
	rpc_client_track(cl, ch, method, timeout_ms, &cc->link);
	/* sent first, in a batch of its own, so that sends and receives may start in any order */
	grpc_op op = {.op = GRPC_OP_SEND_INITIAL_METADATA};
	op.data.send_initial_metadata.count = ch->nmd;
	op.data.send_initial_metadata.metadata = ch->md;
	pthread_mutex_lock(&cc->send_mu);
	start(cc, &cc->send_mu, &op, 1, &cc->start_op);
	return cc;
}

/* ---- send ---- */

static void on_send(rpc_tag *t, bool ok)
{
	rpc_client_call *cc = ((cc_op *)t)->cc;
	atomic_store(&cc->sending, false); /* before the callback, which may start the next */
	if (cc->send_cb)
		cc->send_cb(cc, cc->send_arg, ok);
	cc_unref(cc);
}

static void send_op(rpc_client_call *cc, grpc_op *op, rpc_client_done_cb cb, void *arg)
{
	bool busy = atomic_exchange(&cc->sending, true);
	assert(!busy); /* one send-side operation at a time */
	(void)busy;
	pthread_mutex_lock(&cc->send_mu);
	cc->send_cb = cb;
	cc->send_arg = arg;
	cc->send_op.tag.fn = on_send;
	start(cc, &cc->send_mu, op, 1, &cc->send_op);
}

static void send_buffer(rpc_client_call *cc, grpc_byte_buffer *bb, rpc_client_done_cb cb, void *arg)
{
	grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
	op.data.send_message.send_message = bb;
	send_op(cc, &op, cb, arg);
	grpc_byte_buffer_destroy(bb); /* the batch holds its own references */
}

void rpc_client_call_send(rpc_client_call *cc, const ProtobufCMessage *msg, rpc_client_done_cb cb, void *arg)
{
	send_buffer(cc, rpc_pack(msg), cb, arg);
}

void rpc_client_call_send_zerocopy(rpc_client_call *cc, const void *head, size_t head_len, void *data, size_t len,
                                   void (*release)(void *data), rpc_client_done_cb cb, void *arg)
{
	send_buffer(cc, rpc_zerocopy_buffer(head, head_len, data, len, release), cb, arg);
}

void rpc_client_call_close_send(rpc_client_call *cc, rpc_client_done_cb cb, void *arg)
{
	grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};
	send_op(cc, &op, cb, arg);
}

/* ---- receive ---- */

static void on_recv(rpc_tag *t, bool ok)
{
	rpc_client_call *cc = ((cc_op *)t)->cc;
	rpc_msg *m = rpc_msg_take(&cc->recv_bb, ok);
	atomic_store(&cc->receiving, false);
	cc->recv_cb(cc, cc->recv_arg, ok, m);
	cc_unref(cc);
}

void rpc_client_call_recv(rpc_client_call *cc, rpc_client_recv_cb cb, void *arg)
{
	bool busy = atomic_exchange(&cc->receiving, true);
	assert(!busy); /* one receive at a time */
	(void)busy;
	pthread_mutex_lock(&cc->recv_mu);
	cc->recv_cb = cb;
	cc->recv_arg = arg;
	cc->recv_op.tag.fn = on_recv;
	grpc_op ops[2] = {0};
	size_t n = add_recv_md(cc, ops);
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n].data.recv_message.recv_message = &cc->recv_bb;
	start(cc, &cc->recv_mu, ops, n + 1, &cc->recv_op);
}

/* ---- cancel and finish ---- */

void rpc_client_call_cancel(rpc_client_call *cc) { grpc_call_cancel(cc->link.gc, NULL); }

static void on_finish(rpc_tag *t, bool ok)
{
	rpc_client_call *cc = ((cc_op *)t)->cc;
	cairn_status st = ok ? rpc_status_from(cc->status, cc->details)
	                     : cairn_err(CAIRN_INTERNAL, "cannot read the status of a call");
	cc->finish_cb(cc, cc->finish_arg, st);
	cc_unref(cc); /* the batch's reference */
	cc_unref(cc); /* the caller's reference */
}

void rpc_client_call_finish(rpc_client_call *cc, rpc_client_status_cb cb, void *arg)
{
	/* the finish callback is the call's last: no other may still be due (a send without a
	 * callback, such as a fire-and-forget close_send, may still be in flight) */
	assert(!atomic_load(&cc->receiving) && !(atomic_load(&cc->sending) && cc->send_cb));
	pthread_mutex_lock(&cc->recv_mu);
	cc->finish_cb = cb;
	cc->finish_arg = arg;
	cc->finish_op.tag.fn = on_finish;
	grpc_op ops[2] = {0};
	size_t n = add_recv_md(cc, ops);
	ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[n].data.recv_status_on_client.trailing_metadata = &cc->trailing_md;
	ops[n].data.recv_status_on_client.status = &cc->status;
	ops[n].data.recv_status_on_client.status_details = &cc->details;
	start(cc, &cc->recv_mu, ops, n + 1, &cc->finish_op);
}

const uint8_t *rpc_client_call_details(const rpc_client_call *cc, size_t *len)
{
	const grpc_slice *d = rpc_find_md(&cc->trailing_md, "grpc-status-details-bin");
	*len = d ? GRPC_SLICE_LENGTH(*d) : 0;
	return d ? GRPC_SLICE_START_PTR(*d) : NULL;
}
