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
 * Each call has an arena for decoded messages and scratch space, freed with the call. A client stream
 * may have an idle timeout (rpc_call_set_idle_timeout): one watchdog thread per server ends the calls
 * whose client sent nothing for that long while the handler waited for it.
 *
 * Client: channels (rpc_channel) to one peer each, used by two kinds of calls. Blocking calls for
 * tools and benchmarks (cairn cas …, cairn-bench), one completion queue per call, so any number of
 * threads may use one channel. Asynchronous calls for code that must never block (a scheduler calling
 * its workers from poller threads and storage callbacks): the counterpart of the server's calls, run
 * by an rpc_client (see "asynchronous client" below).
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

/* A received message (server or client side), left in the transport's own buffers so that large payloads (ByteStream
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
/* Decodes the message with the default allocator (free with protobuf_c_message_free_unpacked);
 * NULL if malformed. */
ProtobufCMessage *rpc_msg_unpack(const rpc_msg *msg, const ProtobufCMessageDescriptor *desc);
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
/* For a client stream that holds resources while it waits for the client: when a receive
 * (rpc_call_recv_raw) has waited idle_ns for its message, the server ends the call with st (copied;
 * the client sees its code and message), the receive completes with ok=false and
 * rpc_call_timed_out turns true. Only waiting counts, not the handler's time between receives. Set
 * it before the first receive; idle_ns <= 0: none. */
void rpc_call_set_idle_timeout(rpc_call *call, int64_t idle_ns, const cairn_status *st);
bool rpc_call_timed_out(const rpc_call *call);

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

/* The peer is known to be back (e.g. it rejoined a cluster's view): the channel's next call
 * connects at once, instead of failing until the reconnect back-off that its failed connection
 * attempts built up is over (up to two minutes). Any thread. */
void rpc_channel_reset_backoff(rpc_channel *ch);

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

/* ---- asynchronous client ---------------------------------------------------------------------- *
 *
 * An rpc_client owns one completion queue (NEXT) and a few poller threads that run every callback of
 * its calls; calls on any number of channels may share it. Nothing here blocks: each operation
 * starts one gRPC batch and returns, and its callback runs once on a poller when the batch comes
 * back, even if the call failed, was cancelled or the client is stopping. Every call has a deadline
 * (timeout_ms > 0 is required), so a dead peer ends a call with DEADLINE_EXCEEDED, and a peer that
 * refuses connections ends it with UNAVAILABLE; a server's status arrives with its code and message.
 *
 * Streaming calls work like the server's: at most one send-side operation (send or close_send) and
 * one receive-side operation (recv) in flight, each reporting through its callback; a send's
 * completion means the transport took the message (about 4 MB of slack per stream), so waiting for
 * it before the next is the back-pressure. Operations may be started from any thread, including from
 * inside a callback. The caller owns the call from rpc_client_call_start until it calls
 * rpc_client_call_finish, exactly once, when no recv and no send with a callback is in flight; the
 * finish callback is the call's last, and the call is freed once every batch has come back.
 *
 * rpc_client_stop cancels every call in flight (CANCELLED, "the rpc client stopped…"): pending
 * operations come back failed, so callers finish their calls; it returns once every call has been
 * freed and every callback has returned. A call started while the client stops (from a callback) is
 * cancelled at once. The channels must outlive their calls.
 */

typedef struct rpc_client rpc_client;
typedef struct rpc_client_call rpc_client_call;

typedef struct rpc_client_config {
	int threads; /* poller threads; 0 means 2 */
} rpc_client_config;

/* cfg may be NULL for the defaults. */
cairn_status rpc_client_start(const rpc_client_config *cfg, rpc_client **out);
/* Never from one of the client's own callbacks (it waits for them). */
void rpc_client_stop(rpc_client *cl);

/* resp is NULL unless st is OK; the callback owns it (free with protobuf_c_message_free_unpacked). */
typedef void (*rpc_unary_cb)(void *arg, cairn_status st, ProtobufCMessage *resp);
/* One unary call: req is packed before this returns. */
void rpc_async_unary(rpc_client *cl, rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms, rpc_unary_cb cb, void *arg);

/* ok is false when the call failed or was cancelled; its status then says why. */
typedef void (*rpc_client_done_cb)(rpc_client_call *cc, void *arg, bool ok);
/* msg == NULL with ok at the end of the server's messages; the callback owns msg (rpc_msg_free). */
typedef void (*rpc_client_recv_cb)(rpc_client_call *cc, void *arg, bool ok, rpc_msg *msg);
typedef void (*rpc_client_status_cb)(rpc_client_call *cc, void *arg, cairn_status st);

/* A client-streaming, server-streaming or bidi call; its initial metadata (the channel's) goes now. */
rpc_client_call *rpc_client_call_start(rpc_client *cl, rpc_channel *ch, const char *method, int64_t timeout_ms);
/* Sends one message (packed now; msg may be freed when this returns). cb may be NULL. */
void rpc_client_call_send(rpc_client_call *cc, const ProtobufCMessage *msg, rpc_client_done_cb cb, void *arg);
/* Sends one message made of `head` (copied) followed by `data` (not copied: released with
 * release(data) once the transport is done with it, even if the call fails). */
void rpc_client_call_send_zerocopy(rpc_client_call *cc, const void *head, size_t head_len, void *data, size_t len,
                                   void (*release)(void *data), rpc_client_done_cb cb, void *arg);
/* Half-closes: the client sends no more. A send-side operation; cb may be NULL. */
void rpc_client_call_close_send(rpc_client_call *cc, rpc_client_done_cb cb, void *arg);
/* Receives the server's next message. */
void rpc_client_call_recv(rpc_client_call *cc, rpc_client_recv_cb cb, void *arg);
/* Ends the call now (the server sees it cancelled), from any thread, until the caller finishes it;
 * operations in flight come back failed and the status is CANCELLED. The caller still finishes it. */
void rpc_client_call_cancel(rpc_client_call *cc);
/* Gives the call back: cb gets its status once the server has sent it (or the call failed). A call
 * whose messages the caller leaves unread must be cancelled first, or its status waits for the
 * deadline behind them. */
void rpc_client_call_finish(rpc_client_call *cc, rpc_client_status_cb cb, void *arg);
/* Inside the finish callback: the grpc-status-details-bin the server sent (a packed
 * google.rpc.Status), or NULL. */
const uint8_t *rpc_client_call_details(const rpc_client_call *cc, size_t *len);

#endif
