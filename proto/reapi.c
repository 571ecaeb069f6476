/* Helpers between the generated messages and cairn's types (reapi.h). */
#include "proto/reapi.h"

#include <string.h>

ProtobufCAllocator reapi_arena_allocator(cairn_arena *a)
{
	ProtobufCAllocator al = {.alloc = cairn_arena_alloc_cb, .free = cairn_arena_free_cb, .allocator_data = a};
	return al;
}

re_digest *reapi_digest_to_pb(cairn_arena *a, const cairn_digest *d)
{
	re_digest *pb = cairn_arena_alloc(a, sizeof *pb);
	build__bazel__remote__execution__v2__digest__init(pb);
	pb->hash = cairn_arena_alloc(a, CAIRN_HASH_HEX_LEN + 1);
	cairn_hash_hex(d->hash, pb->hash);
	pb->size_bytes = d->size;
	return pb;
}

cairn_status reapi_digest_from_pb(const re_digest *pb, const char *what, cairn_digest *out)
{
	if (!pb)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s is missing", what);
	cairn_status st = cairn_digest_parse(pb->hash, strlen(pb->hash), pb->size_bytes, out);
	if (!cairn_is_ok(&st))
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s: %s", what, st.msg);
	return st;
}
