/* Decodes a ByteStream WriteRequest straight from the transport's buffers: the data field (10) becomes
 * a list of views into those buffers instead of a copy, which is most of the cost of an upload at
 * 1 MiB messages. Fields: resource_name = 1 (string), write_offset = 2, finish_write = 3, data = 10;
 * unknown fields are skipped; a field that repeats takes its last value, as protobuf says. */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_NAME 4096

typedef struct cursor {
	const rpc_part *parts;
	size_t n, i, off;
} cursor;

static bool at_end(cursor *c)
{
	while (c->i < c->n && c->off == c->parts[c->i].len) {
		c->i++;
		c->off = 0;
	}
	return c->i == c->n;
}

static bool byte(cursor *c, uint8_t *b)
{
	if (at_end(c))
		return false;
	*b = c->parts[c->i].data[c->off++];
	return true;
}

static bool varint(cursor *c, uint64_t *out)
{
	uint64_t v = 0;
	uint8_t b;
	for (int shift = 0; shift < 64; shift += 7) {
		if (!byte(c, &b))
			return false;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

/* Takes len bytes as views (into segs if not NULL) or, with copy, into a buffer. */
static bool take(cursor *c, uint64_t len, gw_write_req *r, char *copy)
{
	while (len > 0) {
		if (at_end(c))
			return false;
		size_t avail = c->parts[c->i].len - c->off;
		size_t k = avail < len ? avail : (size_t)len;
		const uint8_t *p = c->parts[c->i].data + c->off;
		if (copy) {
			memcpy(copy, p, k);
			copy += k;
		} else if (r) {
			if (r->nseg == r->segcap) {
				r->segcap = r->segcap ? 2 * r->segcap : 16;
				r->segs = cairn_xrealloc(r->segs, r->segcap * sizeof *r->segs);
			}
			r->segs[r->nseg++] = (rpc_part){p, k};
			r->data_len += k;
		}
		c->off += k;
		len -= k;
	}
	return true;
}

static cairn_status bad(const char *why)
{
	return cairn_err(CAIRN_INVALID_ARGUMENT, "malformed WriteRequest: %s", why);
}

static cairn_status field(cursor *c, uint64_t tag, gw_write_req *r)
{
	uint64_t v;
	unsigned num = (unsigned)(tag >> 3), type = (unsigned)(tag & 7);
	if (type == 0) {
		if (!varint(c, &v))
			return bad("truncated varint");
		if (num == 2)
			r->write_offset = (int64_t)v;
		else if (num == 3)
			r->finish_write = v != 0;
		return cairn_ok();
	}
	if (type == 1 || type == 5)
		return take(c, type == 1 ? 8 : 4, NULL, NULL) ? cairn_ok() : bad("truncated fixed field");
	if (type != 2)
		return bad("unknown wire type");
	if (!varint(c, &v))
		return bad("truncated length");
	if (num == 10) {
		r->nseg = 0; /* the last data field wins */
		r->data_len = 0;
		return take(c, v, r, NULL) ? cairn_ok() : bad("truncated data");
	}
	if (num != 1)
		return take(c, v, NULL, NULL) ? cairn_ok() : bad("truncated field");
	if (v > MAX_NAME)
		return bad("resource_name is longer than 4096 bytes");
	free(r->name);
	r->name = cairn_xmalloc((size_t)v + 1);
	r->name[v] = 0;
	if (!take(c, v, NULL, r->name))
		return bad("truncated resource_name");
	if (!cairn_utf8_valid(r->name, (size_t)v))
		return bad("resource_name is not UTF-8 or holds a NUL byte");
	return cairn_ok();
}

cairn_status gw_decode_write(const rpc_part *parts, size_t n, gw_write_req *r)
{
	memset(r, 0, sizeof *r);
	cursor c = {.parts = parts, .n = n};
	while (!at_end(&c)) {
		uint64_t tag;
		if (!varint(&c, &tag))
			return bad("truncated tag");
		cairn_status st = field(&c, tag, r);
		if (!cairn_is_ok(&st))
			return st;
	}
	return cairn_ok();
}

void gw_write_req_clear(gw_write_req *r)
{
	free(r->name);
	free(r->segs);
	memset(r, 0, sizeof *r);
}
