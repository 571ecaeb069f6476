/* Received messages left in the transport's buffers (rpc_msg). */
#include "rpc/internal.h"

struct rpc_msg {
	size_t n, len;
	grpc_slice *slices;
	rpc_part *parts;
};

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
