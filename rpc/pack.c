/* Message packing, byte-buffer and status helpers, and the poller loop, shared by server and clients. */
#include "rpc/internal.h"

#include <assert.h>
#include <string.h>

grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(n);
	size_t w = protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	assert(w == n);
	(void)w;
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

grpc_slice rpc_flatten(grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return grpc_empty_slice();
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	return s;
}

grpc_slice rpc_status_slice(const cairn_status *st)
{
	return grpc_slice_from_copied_string(st->msg);
}

cairn_status rpc_status_from(grpc_status_code code, grpc_slice details)
{
	if (code == GRPC_STATUS_OK)
		return cairn_ok();
	return cairn_err((int)code, "%.*s", (int)GRPC_SLICE_LENGTH(details), (const char *)GRPC_SLICE_START_PTR(details));
}

const grpc_slice *rpc_find_md(const grpc_metadata_array *a, const char *key)
{
	for (size_t i = 0; i < a->count; i++)
		if (grpc_slice_str_cmp(a->metadata[i].key, key) == 0)
			return &a->metadata[i].value;
	return NULL;
}

grpc_byte_buffer *rpc_zerocopy_buffer(const void *head, size_t head_len, void *data, size_t len,
                                      void (*release)(void *data))
{
	grpc_slice s[2];
	s[0] = grpc_slice_from_copied_buffer(head, head_len);
	s[1] = grpc_slice_new(data, len, release);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(s, 2);
	grpc_slice_unref(s[0]);
	grpc_slice_unref(s[1]);
	return bb;
}

void *rpc_poller(void *cq)
{
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return NULL;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		rpc_tag *t = ev.tag;
		t->fn(t, ev.success != 0);
	}
}
