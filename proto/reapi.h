/*
 * proto: the REAPI, ByteStream, google.rpc and cairn messages, generated from the .proto files here
 * by protoc-c, and the few helpers between them and cairn's own types that every module speaking
 * them needs.
 */
#ifndef CAIRN_PROTO_REAPI_H
#define CAIRN_PROTO_REAPI_H

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "common/common.h"

typedef Build__Bazel__Remote__Execution__V2__Digest re_digest;

/* A protobuf-c allocator that takes from the arena: what it unpacks is freed with the arena. */
ProtobufCAllocator reapi_arena_allocator(cairn_arena *a);
/* A Digest message allocated in the arena. */
re_digest *reapi_digest_to_pb(cairn_arena *a, const cairn_digest *d);
/* Parses and checks a Digest message: INVALID_ARGUMENT, naming it `what`, if it is missing or bad. */
cairn_status reapi_digest_from_pb(const re_digest *pb, const char *what, cairn_digest *out);

#endif
