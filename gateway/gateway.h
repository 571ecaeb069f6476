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
 * (runner/runner.h); capabilities.c; gateway.c wires them into a method table for rpc. In a cluster,
 * ac_peers.c shares the action cache between schedulers (a backing) and ac_peer_service.c serves a
 * scheduler's own entries to its peers (see "the action cache shared between schedulers" below).
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
/* The gateway's own in-memory entries, without the backing: what a peer scheduler's call touches.
 * put: as gw_ac_store_put; get: a malloc'd copy, false if absent. */
cairn_status gateway_ac_put_local(gateway *g, const char *instance, const cairn_digest *action, const void *data,
                                  size_t len);
bool gateway_ac_get_local(gateway *g, const char *instance, const cairn_digest *action, uint8_t **data, size_t *len);
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

/* ---- the action cache shared between schedulers (ac_peers.c, ac_peer_service.c) --------------- *
 *
 * In a cluster an action-cache entry is kept by the `owners` schedulers (2 where there are two)
 * that rank highest for its action digest by rendezvous hashing (common.h) among the live
 * schedulers of the schedulers' view. Each scheduler serves cairn.v1.ActionCachePeer
 * (proto/cairn/ac_peer.proto) on its private address with gateway_ac_peer_methods: Get and Put of
 * one entry of its own in-memory action cache, nothing more, so a peer's call never goes on to
 * another peer or to a backing.
 *
 * The calling side is a backing for the gateway's config, a decorator of `next`: put (the gateway
 * has just stored the entry in memory) sends it to every owner other than this scheduler, as an
 * asynchronous Put with a deadline that nobody waits for, then hands it to `next`; get (a miss in
 * memory) asks the owners other than this scheduler one after the other, in rank order, each call
 * with a deadline, then `next`; the first that has the entry answers, and the gateway then checks
 * that every blob it names is in the CAS before it returns it (and keeps it in memory). A failed
 * put is logged and dropped; a failed get goes on to the next owner. A peer whose calls keep
 * failing for want of it is skipped at once for a while (a circuit breaker, common.h), so a dead
 * peer costs one deadline per cool-down, not one per lookup. Puts to peers in flight are bounded:
 * beyond max_puts_in_flight a put skips the peers (counted and logged) and goes to `next` only.
 *
 * set_peers replaces the view at any time, from any thread; a lookup keeps the view it started
 * with. A peer's channel is made the first time the peer is seen and kept until the backing is
 * freed (a restarted scheduler comes back with the same id and address).
 */
typedef struct gateway_ac_peers gateway_ac_peers;

typedef struct gateway_ac_peers_config {
	rpc_client *client;      /* runs every call to a peer; the caller's, stopped before gateway_ac_peers_free */
	int owners;              /* schedulers that keep each entry; 0 means 2 */
	int64_t timeout_ms;      /* deadline of each call to a peer; 0 means 2000 */
	int failure_threshold;   /* calls in a row failed for want of a peer before it is skipped; 0 means 3 */
	int64_t cooldown_ms;     /* how long it is skipped before one call tries again; 0 means 5000 */
	int max_puts_in_flight;  /* 0 means 1024 */
	gateway_ac_backing next; /* optional (put and get NULL: none): where entries also go, and lookups end */
} gateway_ac_peers_config;

typedef struct gateway_ac_peer {
	const char *id;     /* a scheduler's member id: the same id ranks alike on every scheduler */
	const char *target; /* "host:port" of its ActionCachePeer service; NULL for this scheduler itself */
} gateway_ac_peer;

typedef struct gateway_ac_peers_stats {
	uint64_t puts, gets; /* calls sent to peers */
	uint64_t skipped;    /* calls not sent: the peer's breaker was open */
	uint64_t dropped;    /* puts not sent: too many in flight */
} gateway_ac_peers_stats;

/* INVALID_ARGUMENT without a client or with a negative setting. Starts with no peer. */
cairn_status gateway_ac_peers_new(const gateway_ac_peers_config *cfg, gateway_ac_peers **out);
gateway_ac_backing gateway_ac_peers_backing(gateway_ac_peers *p);
/* The live schedulers, this one among them (target NULL); ids unique. */
void gateway_ac_peers_set(gateway_ac_peers *p, const gateway_ac_peer *m, size_t n);
gateway_ac_peers_stats gateway_ac_peers_get_stats(gateway_ac_peers *p);
/* Once no call can come in (the gateway's server stopped) and the client has stopped. NULL is fine. */
void gateway_ac_peers_free(gateway_ac_peers *p);
/* Fills out[] with the ActionCachePeer methods over g's own entries (at most cap); returns how many. */
size_t gateway_ac_peer_methods(gateway *g, rpc_method *out, size_t cap);

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
