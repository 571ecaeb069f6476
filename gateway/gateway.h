/*
 * gateway: the public REAPI services — Capabilities, ContentAddressableStorage, ByteStream and
 * ActionCache (Execution comes with the executor) — over one blobstore (common.h) and the in-memory
 * action cache.
 *
 * The gateway does not know what stands behind the blobstore: cmd/ composes it (local cachefs in
 * `serve`; in a scheduler, a store sharded over the workers). Every service validates what the client
 * sends (digests, resource names, sizes, message limits) before it reaches the store, and answers with
 * the gRPC status that names the problem.
 *
 * Pieces: resource.c parses ByteStream resource names; cas.c the CAS batch calls; tree.c GetTree;
 * bs_read.c and bs_write.c ByteStream (with zstd and resumable uploads in upload.c); ac_store.c the
 * bounded in-memory AC, ac_check.c the lookup that returns a hit only when every blob it names is
 * present, ac.c the ActionCache service; execute.c the Execution and Operations services over the
 * queue of exec_queue.c and the operations of exec_ops.c, which hand actions to a `runner`
 * (runner/runner.h); capabilities.c; gateway.c wires them into a method table for rpc.
 */
#ifndef CAIRN_GATEWAY_H
#define CAIRN_GATEWAY_H

#include "blobstore/blobstore.h"
#include "common/common.h"
#include "rpc/rpc.h"
#include "runner/runner.h"

typedef struct gateway gateway;

/* A second home for action-cache entries (backup/ puts them in the object store): every entry
 * stored is also handed to put (which must not block), and a lookup that misses in memory asks get,
 * whose callback owns data (malloc'd) when st is OK. */
typedef struct gateway_ac_backing {
	void *ctx;
	void (*put)(void *ctx, const char *instance, const cairn_digest *action, const void *data, size_t len);
	void (*get)(void *ctx, const char *instance, const cairn_digest *action,
	            void (*cb)(void *arg, cairn_status st, uint8_t *data, size_t len), void *arg);
} gateway_ac_backing;

typedef struct gateway_config {
	blobstore *cas;
	int64_t ac_max_size;        /* bytes of action results held in memory */
	int64_t max_batch_size;     /* largest total of blob bytes in one Batch* call */
	int64_t max_upload_sessions; /* interrupted uploads kept for resumption */
	/* an upload that receives nothing for this long is ended: a Write stream with DEADLINE_EXCEEDED,
	 * dropping its bytes; an interrupted upload kept for a resume is dropped (by gateway_tick) */
	int64_t upload_idle_ns;
	int64_t max_inline_size;    /* largest total inlined into a GetActionResult answer */
	runner *runner;             /* where actions run; NULL: no Execution service */
	gateway_ac_backing ac_backing; /* optional (put and get NULL: none) */
} gateway_config;

gateway *gateway_new(const gateway_config *cfg);
void gateway_free(gateway *g);
/* Adds an action-cache entry read back from the backing at start-up (see gw_ac_store_restore). */
cairn_status gateway_ac_restore(gateway *g, const char *instance, const cairn_digest *action, const void *data,
                                size_t len);
/* Housekeeping to call every second or so: drops interrupted uploads that were not resumed within
 * upload_idle_ns (late by up to the time between calls), with the disk space they held. */
void gateway_tick(gateway *g);
/* The runner may have room that no job's end announced (a worker joined, or a job of another
 * scheduler ended on a shared worker): operations it refused are offered again. Any thread. */
void gateway_exec_wake(gateway *g);
/* Before a server stops: every operation in flight, and any that comes later, completes with
 * UNAVAILABLE, so clients hear that the server stopped rather than see their streams cut; running
 * actions are cancelled. */
void gateway_exec_drain(gateway *g);
/* Fills out[] with the gateway's methods (at most cap); returns how many. */
size_t gateway_methods(gateway *g, rpc_method *out, size_t cap);

/* ---- ByteStream resource names (exposed for tests) ---- */

enum gateway_compressor { GATEWAY_IDENTITY, GATEWAY_ZSTD };

typedef struct gateway_resource {
	const char *instance;     /* points into the parsed string; not NUL-terminated */
	size_t instance_len;
	const char *uuid;         /* uploads only */
	size_t uuid_len;
	enum gateway_compressor compressor;
	cairn_digest digest;
} gateway_resource;

/* "{instance}/blobs/{hash}/{size}" or "{instance}/compressed-blobs/zstd/{hash}/{size}". */
cairn_status gateway_parse_read_resource(const char *s, size_t len, gateway_resource *out);
/* "{instance}/uploads/{uuid}/blobs/{hash}/{size}[/{anything}]" or the compressed-blobs form. */
cairn_status gateway_parse_write_resource(const char *s, size_t len, gateway_resource *out);

/* ---- the in-memory action cache (exposed for tests) ---- */

typedef struct ac_store ac_store;
ac_store *gw_ac_store_new(int64_t max_bytes);
void gw_ac_store_free(ac_store *s);
/* Stores a copy of the packed ActionResult; evicts least recently used entries beyond max_bytes.
 * RESOURCE_EXHAUSTED if one entry alone is larger than the limit. */
cairn_status gw_ac_store_put(ac_store *s, const char *instance, const cairn_digest *action, const void *data,
                          size_t len);
/* Stores an entry brought back from a backup: only if the key is absent (ALREADY_EXISTS otherwise)
 * and it fits without evicting anything (RESOURCE_EXHAUSTED otherwise). */
cairn_status gw_ac_store_restore(ac_store *s, const char *instance, const cairn_digest *action, const void *data,
                              size_t len);
/* Copies the entry into a malloc'd buffer and marks it used; false if absent. */
bool gw_ac_store_get(ac_store *s, const char *instance, const cairn_digest *action, uint8_t **data, size_t *len);
void gw_ac_store_remove(ac_store *s, const char *instance, const cairn_digest *action);
size_t gw_ac_store_count(ac_store *s);
int64_t gw_ac_store_bytes(ac_store *s);

#endif
