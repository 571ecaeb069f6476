/* Message packing and byte-buffer helpers shared by server and client. */
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
