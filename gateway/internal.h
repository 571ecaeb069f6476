/* gateway internals: short names for the generated REAPI types and shared helpers. */
#ifndef CAIRN_GATEWAY_INTERNAL_H
#define CAIRN_GATEWAY_INTERNAL_H

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "proto/reapi.h"
#include "gateway/gateway.h"
#include "google/bytestream/bytestream.pb-c.h"
#include "google/rpc/status.pb-c.h"

typedef Build__Bazel__Remote__Execution__V2__Directory re_directory;
typedef Build__Bazel__Remote__Execution__V2__Tree re_tree;
typedef Build__Bazel__Remote__Execution__V2__ActionResult re_action_result;
typedef Build__Bazel__Remote__Execution__V2__OutputFile re_output_file;
typedef Google__Rpc__Status rpc_status_pb;

struct gateway {
	gateway_config cfg;
	ac_store *ac;
	struct upload_table *uploads;
	struct exec_state *exec; /* NULL without a runner */
};

/* INVALID_ARGUMENT for a request that does not decode as `what`. */
cairn_status gw_malformed(const char *what);
/* A google.rpc.Status message allocated in the arena. */
rpc_status_pb *gw_status_to_pb(cairn_arena *a, const cairn_status *st);
/* INVALID_ARGUMENT unless the digest function is unset or SHA256. */
cairn_status gw_check_digest_function(int fn);
/* The checks every request that names one digest needs: it decoded (decoded is false otherwise,
 * and `what` names the message), its digest function is SHA256, and the digest is valid. */
cairn_status gw_check_digest_request(bool decoded, const char *what, int digest_function, const re_digest *pb,
                                     const char *field, cairn_digest *out);

/* Writes a whole buffer as a blob (data must stay valid until cb). */
void gw_write_all(blobstore *bs, const cairn_digest *d, const void *data, size_t len, blobstore_done_cb cb,
                  void *arg);

/* Stores an action result (packed) in memory and hands it to the backing, if any. */
cairn_status gw_ac_put(gateway *g, const char *instance, const cairn_digest *action, const void *data, size_t len);
/* Looks up an action result whose every named blob is in the CAS; cb gets the packed ActionResult
 * (malloc'd, the callee frees it) or NOT_FOUND. */
typedef void (*gw_ac_lookup_cb)(void *arg, cairn_status st, uint8_t *result, size_t len);
void gw_ac_lookup(gateway *g, const char *instance, const cairn_digest *action, gw_ac_lookup_cb cb, void *arg);

/* Hand-off between the thread that starts an asynchronous operation in a loop and the operation's
 * callback, which may run before the start returns (on the same thread) or later (on another). Whoever
 * comes second goes on with the loop, so inline completions iterate instead of recursing. Arm before
 * each start; then the starter calls gw_handoff_starter_goes_on and the callback
 * gw_handoff_callback_goes_on: exactly one of them returns true. */
#include <stdatomic.h>
typedef struct gw_handoff {
	atomic_int state;
} gw_handoff;
static inline void gw_handoff_arm(gw_handoff *h) { atomic_store(&h->state, 0); }
static inline bool gw_handoff_starter_goes_on(gw_handoff *h)
{
	int expected = 0;
	return !atomic_compare_exchange_strong(&h->state, &expected, 1);
}
static inline bool gw_handoff_callback_goes_on(gw_handoff *h)
{
	int expected = 0;
	return !atomic_compare_exchange_strong(&h->state, &expected, 2);
}

/* A WriteRequest decoded in place (write_req.c): data is a list of views into the message. */
typedef struct gw_write_req {
	char *name; /* NULL when the message has no resource_name */
	int64_t write_offset;
	bool finish_write;
	rpc_part *segs;
	size_t nseg, segcap, data_len;
} gw_write_req;
cairn_status gw_decode_write(const rpc_part *parts, size_t n, gw_write_req *r);
void gw_write_req_clear(gw_write_req *r);

/* Service handlers. */
void gw_get_capabilities(rpc_call *call, void *g);
void gw_find_missing(rpc_call *call, void *g);
void gw_batch_update(rpc_call *call, void *g);
void gw_batch_read(rpc_call *call, void *g);
void gw_get_tree(rpc_call *call, void *g);
void gw_bs_read(rpc_call *call, void *g);
void gw_bs_write(rpc_call *call, void *g);
void gw_bs_query(rpc_call *call, void *g);
void gw_ac_get(rpc_call *call, void *g);
void gw_ac_update(rpc_call *call, void *g);

/* One ByteStream upload; it outlives a broken Write call so that the client can resume it. */
#include <zstd.h>
typedef struct upload {
	char *name; /* the resource name, the key */
	gateway_resource res; /* points into name */
	blobstore_writer *w;
	int64_t committed; /* bytes taken from the client (compressed bytes for compressed-blobs) */
	ZSTD_DCtx *zd;
	uint8_t *zbuf;
	int64_t parked_at;
	struct upload *next;
} upload;

/* Interrupted uploads kept for resumption (upload.c). */
struct upload_table *gw_upload_table_new(int64_t max_sessions, int64_t idle_ns);
void gw_upload_table_free(struct upload_table *t);
/* A new upload for a parsed resource name (copied); RESOURCE_EXHAUSTED if the store refuses it. */
cairn_status gw_upload_new(blobstore *bs, const char *name, upload **out);
/* Aborts the blob write and frees the upload. */
void gw_upload_free(upload *up);
/* The time of the table is what its callers give (cairn_now_ns() in the gateway), so that idle expiry
 * does not depend on how fast the caller runs. */
/* Keeps an interrupted upload, parked at now_ns, holding disk space for the bytes it took only
 * (blobstore_pause); drops the oldest (and idle ones) beyond the limits. */
void gw_upload_park(struct upload_table *t, upload *up, int64_t now_ns);
/* Drops the uploads idle for longer than the table's limit at now_ns (aborting their blobs, which
 * frees the space they reserved). */
void gw_upload_table_expire(struct upload_table *t, int64_t now_ns);
/* Takes a parked upload out of the table, or NULL. */
upload *gw_upload_take(struct upload_table *t, const char *name);
/* Committed size of a parked upload, or -1. */
int64_t gw_upload_committed(struct upload_table *t, const char *name);

#endif
