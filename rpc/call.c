/* One server call: its references, its arena and the recv / send / finish operations. */
#include "rpc/internal.h"

#include <assert.h>
#include <string.h>

static void free_call(rpc_call *c)
{
	rpc_idle_forget(c);
	if (c->destroy)
		c->destroy(c->state);
	pthread_mutex_destroy(&c->cancel_mu);
	if (c->request_flat)
		grpc_slice_unref(c->request);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	grpc_metadata_array_destroy(&c->md);
	grpc_call_unref(c->gc);
	cairn_arena_free(c->arena);
	rpc_server *srv = c->srv;
	free(c);
	rpc_server_live_add(srv, -1);
}

void rpc_call_ref(rpc_call *c) { atomic_fetch_add(&c->refs, 1); }

void rpc_call_unref(rpc_call *c)
{
	int prev = atomic_fetch_sub(&c->refs, 1);
	assert(prev > 0);
	if (prev == 1)
		free_call(c);
}

static void start(rpc_call *c, grpc_op *ops, size_t n, call_op *op)
{
	rpc_call_ref(c); /* held by the outstanding batch, dropped by its completion */
	grpc_call_error e = grpc_call_start_batch(c->gc, ops, n, &op->tag, NULL);
	if (e != GRPC_CALL_OK) {
		/* a misuse of the call (two sends at once…): report it as a failed operation */
		LOG_ERROR("rpc", "start_batch failed method=%s err=%d", c->method->path, (int)e);
		atomic_store(&c->cancelled, true);
		op->tag.fn(&op->tag, false);
	}
}

static void on_close(rpc_tag *t, bool ok)
{
	rpc_call *c = ((call_op *)t)->call;
	bool cancelled = !ok || c->close_cancelled;
	if (cancelled)
		atomic_store(&c->cancelled, true);
	pthread_mutex_lock(&c->cancel_mu);
	c->closed = true;
	void (*cb)(rpc_call *, void *) = cancelled ? c->on_cancel : NULL;
	c->on_cancel = NULL;
	pthread_mutex_unlock(&c->cancel_mu);
	if (cb)
		cb(c, c->on_cancel_arg);
	rpc_call_unref(c);
}

void rpc_call_on_cancel(rpc_call *c, void (*cb)(rpc_call *call, void *arg), void *arg)
{
	pthread_mutex_lock(&c->cancel_mu);
	if (!c->closed) { /* once closed, the call's next operation fails and tells the handler */
		c->on_cancel = cb;
		c->on_cancel_arg = arg;
	}
	pthread_mutex_unlock(&c->cancel_mu);
}

rpc_call *rpc_call_new(rpc_server *srv, const rpc_method *m, grpc_call *gc, grpc_metadata_array *md,
                       grpc_byte_buffer *payload)
{
	rpc_call *c = cairn_xcalloc(1, sizeof *c);
	c->srv = srv;
	c->method = m;
	c->gc = gc;
	c->md = *md;
	c->payload = payload;
	c->arena = cairn_arena_new(4096);
	pthread_mutex_init(&c->cancel_mu, NULL);
	/* one reference for the handler, released when its finish completes */
	atomic_init(&c->refs, 1);
	c->close_op.call = c->recv_op.call = c->send_op.call = c->finish_op.call = c;
	rpc_server_live_add(srv, 1);
	c->close_op.tag.fn = on_close;
	grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
	op.data.recv_close_on_server.cancelled = &c->close_cancelled;
	start(c, &op, 1, &c->close_op);
	return c;
}

const uint8_t *rpc_call_request(rpc_call *c, size_t *len)
{
	if (!c->payload) {
		*len = 0;
		return NULL;
	}
	if (!c->request_flat) {
		c->request = rpc_flatten(c->payload);
		c->request_flat = true;
	}
	*len = GRPC_SLICE_LENGTH(c->request);
	/* a zero-length message is valid (all defaults): return a non-NULL pointer for it */
	return *len ? GRPC_SLICE_START_PTR(c->request) : (const uint8_t *)"";
}

void *rpc_call_unpack(rpc_call *c, const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len)
{
	if (!rpc_strings_valid(desc, data, len))
		return NULL;
	ProtobufCAllocator al = {.alloc = cairn_arena_alloc_cb, .free = cairn_arena_free_cb, .allocator_data = c->arena};
	return protobuf_c_message_unpack(desc, &al, len, data);
}

void *rpc_call_unpack_request(rpc_call *c, const ProtobufCMessageDescriptor *desc)
{
	size_t len;
	const uint8_t *data = rpc_call_request(c, &len);
	return data ? rpc_call_unpack(c, desc, data, len) : NULL;
}

cairn_arena *rpc_call_arena(rpc_call *c) { return c->arena; }
const char *rpc_call_method(const rpc_call *c) { return c->method->path; }
bool rpc_call_cancelled(const rpc_call *c) { return atomic_load(&c->cancelled); }

const uint8_t *rpc_call_metadata(rpc_call *c, const char *key, size_t *len)
{
	for (size_t i = 0; i < c->md.count; i++)
		if (grpc_slice_str_cmp(c->md.metadata[i].key, key) == 0) {
			*len = GRPC_SLICE_LENGTH(c->md.metadata[i].value);
			return GRPC_SLICE_START_PTR(c->md.metadata[i].value);
		}
	return NULL;
}

void rpc_call_set_state(rpc_call *c, void *state, void (*destroy)(void *state))
{
	c->state = state;
	c->destroy = destroy;
}

void *rpc_call_state(rpc_call *c) { return c->state; }

/* ---- recv ---- */

static void on_recv_raw(rpc_tag *t, bool ok)
{
	rpc_call *c = ((call_op *)t)->call;
	rpc_idle_wait_ends(c);
	/* core completes the receive of a call the watchdog cancelled like a half-close (no message):
	 * the handler must see a failed call instead */
	if (rpc_call_timed_out(c))
		ok = false;
	if (!ok)
		atomic_store(&c->cancelled, true);
	rpc_msg *m = rpc_msg_take(&c->recv_bb, ok);
	c->recv_raw_cb(c, c->recv_arg, ok, m);
	rpc_call_unref(c);
}

static void start_recv(rpc_call *c, void (*done)(rpc_tag *, bool))
{
	c->recv_op.tag.fn = done;
	grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
	op.data.recv_message.recv_message = &c->recv_bb;
	start(c, &op, 1, &c->recv_op);
}

void rpc_call_recv_raw(rpc_call *c, rpc_recv_raw_cb cb, void *arg)
{
	c->recv_raw_cb = cb;
	c->recv_arg = arg;
	rpc_idle_wait_begins(c);
	start_recv(c, on_recv_raw);
}


/* ---- send ---- */

static void on_send(rpc_tag *t, bool ok)
{
	rpc_call *c = ((call_op *)t)->call;
	if (!ok)
		atomic_store(&c->cancelled, true);
	if (c->send_cb)
		c->send_cb(c, c->send_arg, ok);
	rpc_call_unref(c);
}

static size_t add_initial_md(rpc_call *c, grpc_op *ops)
{
	if (atomic_exchange(&c->initial_md_sent, true))
		return 0;
	memset(ops, 0, sizeof *ops);
	ops->op = GRPC_OP_SEND_INITIAL_METADATA;
	return 1;
}

static void send_buffer(rpc_call *c, grpc_byte_buffer *bb, rpc_done_cb cb, void *arg)
{
	grpc_op ops[2] = {0};
	size_t n = add_initial_md(c, ops);
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = bb;
	n++;
	c->send_cb = cb;
	c->send_arg = arg;
	c->send_op.tag.fn = on_send;
	start(c, ops, n, &c->send_op);
	grpc_byte_buffer_destroy(bb); /* the batch holds its own references */
}

void rpc_call_send(rpc_call *c, const ProtobufCMessage *msg, rpc_done_cb cb, void *arg)
{
	send_buffer(c, rpc_pack(msg), cb, arg);
}

void rpc_call_send_bytes(rpc_call *c, const void *data, size_t len, rpc_done_cb cb, void *arg)
{
	grpc_slice s = grpc_slice_from_copied_buffer(data, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	send_buffer(c, bb, cb, arg);
}

void rpc_call_send_zerocopy(rpc_call *c, const void *head, size_t head_len, void *data, size_t len,
                            void (*release)(void *data), rpc_done_cb cb, void *arg)
{
	send_buffer(c, rpc_zerocopy_buffer(head, head_len, data, len, release), cb, arg);
}

/* ---- finish ---- */

static void on_finish(rpc_tag *t, bool ok)
{
	rpc_call *c = ((call_op *)t)->call;
	if (c->finish_cb)
		c->finish_cb(c, c->finish_arg, ok);
	rpc_call_unref(c); /* the batch's reference */
	rpc_call_unref(c); /* the handler's reference */
}

void rpc_call_finish(rpc_call *c, const cairn_status *st, const ProtobufCMessage *msg, const void *details,
                     size_t details_len, rpc_done_cb cb, void *arg)
{
	grpc_op ops[3] = {0};
	size_t n = add_initial_md(c, ops);
	grpc_byte_buffer *bb = NULL;
	if (msg && st->code == CAIRN_OK) {
		bb = rpc_pack(msg);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = bb;
		n++;
	}
	grpc_slice text = rpc_status_slice(st);
	grpc_metadata trailer;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = (grpc_status_code)st->code;
	ops[n].data.send_status_from_server.status_details = &text;
	if (details) {
		trailer.key = grpc_slice_from_static_string("grpc-status-details-bin");
		trailer.value = grpc_slice_from_copied_buffer(details, details_len);
		ops[n].data.send_status_from_server.trailing_metadata_count = 1;
		ops[n].data.send_status_from_server.trailing_metadata = &trailer;
	}
	n++;
	c->finish_cb = cb;
	c->finish_arg = arg;
	c->finish_op.tag.fn = on_finish;
	start(c, ops, n, &c->finish_op);
	grpc_slice_unref(text);
	if (details)
		grpc_slice_unref(trailer.value);
	if (bb)
		grpc_byte_buffer_destroy(bb);
}

void rpc_call_reply(rpc_call *c, const ProtobufCMessage *resp, const cairn_status *st)
{
	if (st->code != CAIRN_OK)
		LOG_DEBUG("rpc", "call failed method=%s status=%s", c->method->path, cairn_status_str(st));
	rpc_call_finish(c, st, st->code == CAIRN_OK ? resp : NULL, NULL, 0, NULL, NULL);
}
