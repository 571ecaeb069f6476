/* cairn cas: the CAS client subcommands (put, get, missing, tree). */
#ifndef CAIRN_CMD_CAS_H
#define CAIRN_CMD_CAS_H

#include "cmd/client.h"

typedef struct cas_opts {
	client_opts c;
	const char *compressor; /* "identity" or "zstd" */
	bool batch;             /* BatchUpdateBlobs / BatchReadBlobs instead of ByteStream */
	const char *upload_id;
	int64_t interrupt_after; /* put: break the stream after this many bytes (tests resumption) */
	int64_t chunk_size;
	const char *output;
	int64_t offset, limit;
	int64_t page_size;
	const char *as_digest; /* put: claim this digest instead of the file's own */
	bool tree;             /* put: upload a directory as a Merkle tree of Directory messages */
} cas_opts;

static inline bool cas_zstd(const cas_opts *o) { return o->compressor[0] == 'z'; }

/* Uploads a file (digest computed, or o->as_digest) with ByteStream or, with o->batch, BatchUpdateBlobs. */
cairn_status cas_upload_file(rpc_channel *ch, const cas_opts *o, const char *path, cairn_digest *d);
/* Uploads a buffer with BatchUpdateBlobs. */
cairn_status cas_upload_bytes(rpc_channel *ch, const cas_opts *o, const void *data, size_t n, const cairn_digest *d);
/* Uploads a directory tree (files and Directory messages) and returns the root Directory's digest. */
cairn_status cas_upload_tree(rpc_channel *ch, const cas_opts *o, const char *dir, cairn_digest *root);
/* Downloads one blob to a stream, verified when whole. */
cairn_status cas_get_to(rpc_channel *ch, const cas_opts *o, const cairn_digest *d, FILE *out);
/* Downloads one blob to o->output (or stdout); prints errors and returns an exit code. */
int cas_get_blob(rpc_channel *ch, const cas_opts *o, const cairn_digest *d);

#endif
