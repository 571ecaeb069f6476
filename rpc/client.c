/* Channels, and the blocking client calls for tools and benchmarks: one completion queue (PLUCK) per call. */
#include "rpc/internal.h"

#include <string.h>

struct rpc_stream {
	rpc_channel *ch;
	grpc_call *call;
	grpc_completion_queue *cq;
	grpc_metadata_array trailing_md;
	grpc_status_code status;
	grpc_slice status_details;
	grpc_metadata_array initial_md;
	bool md_sent, md_asked, closed_send, failed;
};

cairn_status rpc_channel_open(const char *target, int64_t max_message_size, rpc_channel **out)
{
	if (strncmp(target, "grpc://", 7) == 0)
		target += 7;
	else if (strstr(target, "://"))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "unsupported remote %s: use grpc://host:port", target);
	grpc_init();
	rpc_channel *c = cairn_xcalloc(1, sizeof *c);
	int max = max_message_size > 0 && max_message_size < INT32_MAX ? (int)max_message_size : 64 << 20;
	grpc_arg args[1] = {
		{.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = max},
	};
	grpc_channel_args ca = {.num_args = 1, .args = args};
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	c->ch = grpc_channel_create(target, creds, &ca);
	grpc_channel_credentials_release(creds);
	*out = c;
	return cairn_ok();
}

void rpc_channel_add_metadata(rpc_channel *c, const char *key, const char *value)
{
	if (c->nmd == RPC_CHANNEL_MD_MAX)
		return;
	c->md[c->nmd].key = grpc_slice_from_copied_string(key);
	c->md[c->nmd].value = grpc_slice_from_copied_string(value);
	c->nmd++;
}

void rpc_channel_reset_backoff(rpc_channel *c) { grpc_channel_reset_connect_backoff(c->ch); }

void rpc_channel_close(rpc_channel *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nmd; i++) {
		grpc_slice_unref(c->md[i].key);
		grpc_slice_unref(c->md[i].value);
	}
	grpc_channel_destroy(c->ch);
	free(c);
	grpc_shutdown();
}

/* Runs one batch and waits for it. Our initial metadata goes in front of the first batch; the
 * server's is asked for with the first receive (the server sends it with its first message or status,
 * so asking earlier would block a client-streaming call). */
static bool run(rpc_stream *s, grpc_op *op)
{
	grpc_op ops[3] = {0};
	size_t n = 0;
	if (!s->md_sent) {
		s->md_sent = true;
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[n].data.send_initial_metadata.count = s->ch->nmd;
		ops[n].data.send_initial_metadata.metadata = s->ch->md;
		n++;
	}
	bool receives = op->op == GRPC_OP_RECV_MESSAGE || op->op == GRPC_OP_RECV_STATUS_ON_CLIENT;
	if (receives && !s->md_asked) {
		s->md_asked = true;
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
		n++;
	}
	ops[n++] = *op;
	if (grpc_call_start_batch(s->call, ops, n, s, NULL) != GRPC_CALL_OK)
		return false;
	grpc_event ev = grpc_completion_queue_pluck(s->cq, s, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

cairn_status rpc_stream_open(rpc_channel *ch, const char *method, int64_t timeout_ms, rpc_stream **out)
{
	rpc_stream *s = cairn_xcalloc(1, sizeof *s);
	s->ch = ch;
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	gpr_timespec deadline = timeout_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	                                                      gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
	                                       : gpr_inf_future(GPR_CLOCK_REALTIME);
	grpc_slice m = grpc_slice_from_copied_string(method);
	s->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL, deadline, NULL);
	grpc_slice_unref(m);
	grpc_metadata_array_init(&s->initial_md);
	grpc_metadata_array_init(&s->trailing_md);
	*out = s;
	return cairn_ok();
}

cairn_status rpc_stream_send(rpc_stream *s, const ProtobufCMessage *msg)
{
	grpc_byte_buffer *bb = rpc_pack(msg);
	grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
	op.data.send_message.send_message = bb;
	bool ok = !s->failed && run(s, &op);
	grpc_byte_buffer_destroy(bb);
	if (!ok) {
		s->failed = true;
		return cairn_err(CAIRN_UNAVAILABLE, "stream broke while sending");
	}
	return cairn_ok();
}

cairn_status rpc_stream_close_send(rpc_stream *s)
{
	if (s->closed_send)
		return cairn_ok();
	s->closed_send = true;
	grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};
	if (!run(s, &op))
		return cairn_err(CAIRN_UNAVAILABLE, "stream broke while closing");
	return cairn_ok();
}

cairn_status rpc_stream_recv(rpc_stream *s, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg)
{
	*msg = NULL;
	grpc_byte_buffer *bb = NULL;
	grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
	op.data.recv_message.recv_message = &bb;
	if (!run(s, &op))
		return cairn_err(CAIRN_UNAVAILABLE, "stream broke while receiving");
	if (!bb)
		return cairn_ok();
	grpc_slice flat = rpc_flatten(bb);
	grpc_byte_buffer_destroy(bb);
	*msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(flat), GRPC_SLICE_START_PTR(flat));
	grpc_slice_unref(flat);
	if (!*msg)
		return cairn_err(CAIRN_INTERNAL, "server sent a malformed %s", desc->name);
	return cairn_ok();
}

void rpc_stream_cancel(rpc_stream *s) { grpc_call_cancel(s->call, NULL); }

cairn_status rpc_stream_finish(rpc_stream *s, uint8_t **details, size_t *details_len)
{
	/* A send that failed means the call is over: the server's status (it may have ended the call
	 * early, with the reason) is there to read, and a cancel now would replace it with CANCELLED. */
	if (!s->closed_send && !s->failed)
		grpc_call_cancel(s->call, NULL);
	grpc_op op = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
	op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
	op.data.recv_status_on_client.status = &s->status;
	op.data.recv_status_on_client.status_details = &s->status_details;
	cairn_status st;
	if (!run(s, &op)) {
		st = cairn_err(CAIRN_INTERNAL, "cannot read the call's status");
	} else {
		st = rpc_status_from(s->status, s->status_details);
		grpc_slice_unref(s->status_details);
	}
	if (details) {
		const grpc_slice *d = rpc_find_md(&s->trailing_md, "grpc-status-details-bin");
		*details = NULL;
		*details_len = 0;
		if (d) {
			*details_len = GRPC_SLICE_LENGTH(*d);
			*details = memcpy(cairn_xmalloc(*details_len), GRPC_SLICE_START_PTR(*d), *details_len);
		}
	}
	grpc_metadata_array_destroy(&s->initial_md);
	grpc_metadata_array_destroy(&s->trailing_md);
	grpc_call_unref(s->call);
	grpc_completion_queue_shutdown(s->cq);
	while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN) {
	}
	grpc_completion_queue_destroy(s->cq);
	free(s);
	return st;
}

cairn_status rpc_unary(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, int64_t timeout_ms)
{
	rpc_stream *s;
	*resp = NULL;
	cairn_status st = rpc_stream_open(ch, method, timeout_ms, &s);
	if (cairn_is_ok(&st))
		st = rpc_stream_send(s, req);
	if (cairn_is_ok(&st))
		st = rpc_stream_close_send(s);
	cairn_status rst = cairn_ok();
	if (cairn_is_ok(&st))
		rst = rpc_stream_recv(s, resp_desc, resp);
	if (cairn_is_ok(&rst) && *resp) { /* read to the end of the stream, where the status is */
		ProtobufCMessage *extra = NULL;
		rst = rpc_stream_recv(s, resp_desc, &extra);
		if (extra) {
			protobuf_c_message_free_unpacked(extra, NULL);
			rst = cairn_err(CAIRN_INTERNAL, "server sent more than one response to %s", method);
		}
	}
	cairn_status fst = rpc_stream_finish(s, NULL, NULL);
	if (!cairn_is_ok(&fst) || !cairn_is_ok(&rst)) {
		if (*resp)
			protobuf_c_message_free_unpacked(*resp, NULL);
		*resp = NULL;
		return cairn_is_ok(&fst) ? rst : fst;
	}
	if (!*resp)
		return cairn_err(CAIRN_INTERNAL, "server sent no response to %s", method);
	return cairn_ok();
}
