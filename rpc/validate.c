/* Checks the string fields of an encoded message before it is decoded. protobuf-c accepts invalid
 * UTF-8 and cuts a string at an embedded NUL without telling, so "blobs/<hash>/5\0junk" would decode
 * as a valid resource name; proto3 says strings are UTF-8, and a client that sends anything else gets
 * INVALID_ARGUMENT instead of a different meaning. Bytes fields are skipped, not scanned. */
#include "rpc/internal.h"

#define MAX_DEPTH 64

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

static bool check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end, int depth)
{
	if (depth > MAX_DEPTH)
		return false;
	while (p < end) {
		uint64_t tag, n;
		if (!varint(&p, end, &tag))
			return false;
		const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
		switch (tag & 7) {
		case 0:
			if (!varint(&p, end, &n))
				return false;
			break;
		case 1:
			if (end - p < 8)
				return false;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return false;
			p += 4;
			break;
		case 2:
			if (!varint(&p, end, &n) || n > (uint64_t)(end - p))
				return false;
			if (f && f->type == PROTOBUF_C_TYPE_STRING && !cairn_utf8_valid(p, (size_t)n))
				return false;
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && !check(f->descriptor, p, p + n, depth + 1))
				return false;
			p += n;
			break;
		default:
			return false; /* groups do not exist in proto3 */
		}
	}
	return true;
}

bool rpc_strings_valid(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len)
{
	return check(desc, data, data + len, 0);
}
