/*
 * rpc: cairn's glue over gRPC's C core. It knows how calls move, not what any service means.
 *
 * Server: one completion queue (NEXT) polled by several threads. Each registered method has a few
 * requests posted at all times; when a call arrives its handler runs on a poller thread with an
 * rpc_call. For unary and server-streaming methods the request message is already read
 * (rpc_call_request); client-streaming and bidi handlers pull messages with rpc_call_recv_raw. Unknown
 * methods get UNIMPLEMENTED.
 *
 * A call is driven by its handler through three operations, each of which reports through a callback
 * exactly once (ok=false when the call failed or was cancelled): rpc_call_recv_raw (one at a time),
 * rpc_call_send (one at a time; its completion is the back-pressure signal) and rpc_call_finish (once,
 * and no send may be in flight). Callbacks run on poller threads. The operations may be started from
 * any thread, e.g. from a storage completion. Every handler must call rpc_call_finish exactly once.
 * A handler that starts work outside rpc (a disk read, say) whose callback will touch the call takes a
 * reference with rpc_call_ref and drops it in that callback; the call and its state (rpc_call_set_state)
 * are freed when the last reference goes, which is after every started operation has come back.
 *
 * Each call has an arena for decoded messages and scratch space, freed with the call.
 *
 * Client: blocking calls for tools and benchmarks (cairn cas …, cairn-bench), one completion queue per
 * call, so any number of threads may use one channel.
 */
#ifndef CAIRN_RPC_H
#define CAIRN_RPC_H

#include <protobuf-c/protobuf-c.h>

#include "common/common.h"

/* Sends gRPC core's own log lines through cairn's logger, at debug level: they are per-connection
 * noise (handshake failures, listener details) next to the one-line errors cairn reports itself.
 * Process-wide; call once from main. */
void rpc_route_grpc_logs(void);

/* ---- server ---------------------------------------------------------------------------------- */

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

typedef enum rpc_kind { RPC_UNARY, RPC_SERVER_STREAMING, RPC_CLIENT_STREAMING, RPC_BIDI_STREAMING } rpc_kind;

typedef void (*rpc_handler)(rpc_call *call, void *service);

typedef struct rpc_method {
	const char *path; /* "/google.bytestream.ByteStream/Read" */
	rpc_kind kind;
	rpc_handler handler;
	void *service;
} rpc_method;

typedef struct rpc_server_config {
	const char *address;      /* "127.0.0.1:8980"; port 0 picks a free one */
	int threads;              /* poller threads; 0 means one per core, at least 2 */
	int64_t max_message_size; /* largest message received; 0 means 4 MiB */
} rpc_server_config;

/* Binds, starts the pollers and serves the methods (copied; `service` pointers must outlive the server). */
cairn_status rpc_server_start(const rpc_server_config *cfg, const rpc_method *methods, size_t n, rpc_server **out);
/* The bound port. */
int rpc_server_port(const rpc_server *s);
/* Stops accepting, cancels calls in flight, waits until every call has been freed, joins the pollers. */
void rpc_server_stop(rpc_server *s);

/* ---- one call (server side) ------------------------------------------------------------------ */

typedef void (*rpc_done_cb)(rpc_call *call, void *arg, bool ok);

/* The pre-read request of a unary or server-streaming call; NULL if the client sent none. */
const uint8_t *rpc_call_request(rpc_call *call, size_t *len);
/* True if every string field of the encoded message (nested ones too) is UTF-8 without NUL. */
bool rpc_strings_valid(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len);
/* Decodes bytes into a message allocated in the call's arena; NULL if malformed (including strings
 * that are not UTF-8 or hold a NUL). */
void *rpc_call_unpack(rpc_call *call, const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len);
/* Decodes the pre-read request; NULL if missing or malformed. */
void *rpc_call_unpack_request(rpc_call *call, const ProtobufCMessageDescriptor *desc);
cairn_arena *rpc_call_arena(rpc_call *call);
/* Value of request metadata `key` (lowercase), or NULL; -bin values arrive decoded. */
const uint8_t *rpc_call_metadata(rpc_call *call, const char *key, size_t *len);
const char *rpc_call_method(const rpc_call *call);

/* A received message, left in the transport's own buffers so that large payloads (ByteStream
 * Write) are never copied: parts are views of the buffers, valid until rpc_msg_free, which the
 * handler calls when it no longer needs them (on any thread). */
typedef struct rpc_msg rpc_msg;
typedef struct rpc_part {
	const uint8_t *data;
	size_t len;
} rpc_part;
/* msg == NULL with ok when the client half-closed. The handler owns msg. */
typedef void (*rpc_recv_raw_cb)(rpc_call *call, void *arg, bool ok, rpc_msg *msg);
void rpc_call_recv_raw(rpc_call *call, rpc_recv_raw_cb cb, void *arg);
const rpc_part *rpc_msg_parts(const rpc_msg *msg, size_t *n);
size_t rpc_msg_len(const rpc_msg *msg);
void rpc_msg_free(rpc_msg *msg);
/* Sends one message (packed now; msg may be freed when this returns). */
void rpc_call_send(rpc_call *call, const ProtobufCMessage *msg, rpc_done_cb cb, void *arg);
/* Sends one already packed message (copied). */
void rpc_call_send_bytes(rpc_call *call, const void *data, size_t len, rpc_done_cb cb, void *arg);
/* Sends one message made of `head` (copied) followed by `data` (not copied: handed to the transport
 * and released with release(data) once it is done with it, even if the call fails). Used to stream
 * blob bytes without a copy. */
void rpc_call_send_zerocopy(rpc_call *call, const void *head, size_t head_len, void *data, size_t len,
                            void (*release)(void *data), rpc_done_cb cb, void *arg);
/* Ends the call with a status (and, if msg != NULL, a last message sent with it). `details`, if not
 * NULL, is a packed google.rpc.Status sent as grpc-status-details-bin. cb may be NULL. */
void rpc_call_finish(rpc_call *call, const cairn_status *st, const ProtobufCMessage *msg, const void *details,
                     size_t details_len, rpc_done_cb cb, void *arg);
/* Finishes a unary call with either the response (status OK) or the error. */
void rpc_call_reply(rpc_call *call, const ProtobufCMessage *resp, const cairn_status *st);
/* Asks for cb(call, arg) on a poller thread if the client cancels the call (or it fails) later on; for
 * handlers that wait on something other than their own operations, which would otherwise never learn
 * that the client has gone. Runs at most once. */
void rpc_call_on_cancel(rpc_call *call, void (*cb)(rpc_call *call, void *arg), void *arg);
/* True once the client cancelled or the call failed. */
bool rpc_call_cancelled(const rpc_call *call);

void rpc_call_ref(rpc_call *call);
void rpc_call_unref(rpc_call *call);
/* Handler state, destroyed with the call. */
void rpc_call_set_state(rpc_call *call, void *state, void (*destroy)(void *state));
void *rpc_call_state(rpc_call *call);

/* ---- client ---------------------------------------------------------------------------------- */

typedef struct rpc_channel rpc_channel;
typedef struct rpc_stream rpc_stream;

/* target: "grpc://host:port" (or "host:port"). */
cairn_status rpc_channel_open(const char *target, int64_t max_message_size, rpc_channel **out);
void rpc_channel_close(rpc_channel *ch);

/* Metadata added to every call of this channel (e.g. authorization); copied. */
void rpc_channel_add_metadata(rpc_channel *ch, const char *key, const char *value);

/* One unary call. *resp is allocated with the default allocator (free with
 * protobuf_c_message_free_unpacked). timeout_ms <= 0 means none. */
cairn_status rpc_unary(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, int64_t timeout_ms);

cairn_status rpc_stream_open(rpc_channel *ch, const char *method, int64_t timeout_ms, rpc_stream **out);
/* Blocks until the transport took the message. */
cairn_status rpc_stream_send(rpc_stream *s, const ProtobufCMessage *msg);
cairn_status rpc_stream_close_send(rpc_stream *s);
/* Next message, or *msg = NULL at the end of the stream. */
cairn_status rpc_stream_recv(rpc_stream *s, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg);
/* Cancels the call: the server sees the client go away; finish still has to be called. */
void rpc_stream_cancel(rpc_stream *s);
/* Ends the stream (cancelling it if the client has not half-closed and no send failed) and returns the call's
 * status — after a failed send, the server's reason for ending the call early; frees s. If
 * details is not NULL it receives a malloc'd copy of grpc-status-details-bin (or NULL). */
cairn_status rpc_stream_finish(rpc_stream *s, uint8_t **details, size_t *details_len);

#endif
