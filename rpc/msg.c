/* Received messages left in the transport's buffers (rpc_msg), for server calls and client calls alike. */
#include "rpc/internal.h"

#include <string.h>

struct rpc_msg {
	size_t n, len;
	grpc_slice *slices;
	rpc_part *parts;
};

rpc_msg *rpc_msg_take(grpc_byte_buffer **bb, bool ok)
{
	rpc_msg *m = NULL;
	if (*bb) {
		if (ok)
			m = rpc_msg_from(*bb);
		grpc_byte_buffer_destroy(*bb); /* the message keeps its own slice references */
		*bb = NULL;
	}
	return m;
}

rpc_msg *rpc_msg_from(grpc_byte_buffer *bb)
{
	rpc_msg *m = cairn_xcalloc(1, sizeof *m);
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return m;
	size_t cap = 0;
	grpc_slice s;
	while (grpc_byte_buffer_reader_next(&r, &s)) {
		if (m->n == cap) {
			cap = cap ? 2 * cap : 16;
			m->slices = cairn_xrealloc(m->slices, cap * sizeof *m->slices);
			m->parts = cairn_xrealloc(m->parts, cap * sizeof *m->parts);
		}
		m->slices[m->n++] = s;
		m->len += GRPC_SLICE_LENGTH(s);
	}
	grpc_byte_buffer_reader_destroy(&r);
	/* only now: a small slice keeps its bytes inside the grpc_slice itself, which realloc moves */
	for (size_t i = 0; i < m->n; i++)
		m->parts[i] = (rpc_part){GRPC_SLICE_START_PTR(m->slices[i]), GRPC_SLICE_LENGTH(m->slices[i])};
	return m;
}

const rpc_part *rpc_msg_parts(const rpc_msg *m, size_t *n)
{
	*n = m->n;
	return m->parts;
}

size_t rpc_msg_len(const rpc_msg *m) { return m->len; }

ProtobufCMessage *rpc_msg_unpack(const rpc_msg *m, const ProtobufCMessageDescriptor *desc)
{
	if (m->n == 1) /* the usual case: decoded straight from the transport's buffer */
		return protobuf_c_message_unpack(desc, NULL, m->parts[0].len, m->parts[0].data);
	uint8_t *flat = cairn_xmalloc(m->len ? m->len : 1);
	size_t off = 0;
	for (size_t i = 0; i < m->n; i++) {
		memcpy(flat + off, m->parts[i].data, m->parts[i].len);
		off += m->parts[i].len;
	}
	ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, m->len, flat);
	free(flat);
	return msg;
}

void rpc_msg_free(rpc_msg *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		grpc_slice_unref(m->slices[i]);
	free(m->slices);
	free(m->parts);
	free(m);
}
