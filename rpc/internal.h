/* rpc internals shared by the server (server.c, call.c, idle.c), the blocking client (client.c) and
 * the asynchronous client (async.c, async_stream.c). */
#ifndef CAIRN_RPC_INTERNAL_H
#define CAIRN_RPC_INTERNAL_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <grpc/support/alloc.h>

#include "rpc/rpc.h"

/* Every tag handed to gRPC points at one of these: the completion runs fn(tag, ok). One tag means one
 * outstanding batch. */
typedef struct rpc_tag {
	void (*fn)(struct rpc_tag *tag, bool ok);
} rpc_tag;

struct rpc_server {
	grpc_server *server;
	grpc_completion_queue *cq;
	rpc_method *methods;
	void **handles; /* registered-method handles, parallel to methods */
	size_t nmethods;
	pthread_t *pollers;
	int npollers;
	int port;
	atomic_bool stopping;
	rpc_tag shutdown_tag;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool shutdown_done;
	long live; /* calls and posted requests not yet freed; guarded by mu */
	/* idle.c: the calls with an idle timeout, and the thread that ends those whose wait ran out */
	pthread_mutex_t idle_mu;
	pthread_cond_t idle_cv;
	rpc_call *idle_head;
	int64_t idle_wake; /* when the watchdog wakes next (INT64_MAX: only when told) */
	pthread_t idle_thread;
	bool idle_started, idle_stop;
};

#define RPC_CHANNEL_MD_MAX 8

struct rpc_channel {
	grpc_channel *ch;
	grpc_metadata md[RPC_CHANNEL_MD_MAX]; /* sent with every call, blocking or asynchronous */
	size_t nmd;
};

/* A call of the asynchronous client, as the client tracks it to cancel it when it stops. */
typedef struct rpc_client_link {
	struct rpc_client_link *prev, *next;
	grpc_call *gc;
} rpc_client_link;

struct rpc_client {
	grpc_completion_queue *cq;
	pthread_t *pollers;
	int npollers;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	rpc_client_link calls; /* ring of live calls, guarded by mu */
	long live;             /* calls not yet freed; guarded by mu */
	bool stopping;         /* guarded by mu */
};

/* async.c: creates a call on the client's queue with a deadline timeout_ms from now and tracks it
 * (cancelled at once if the client is stopping); rpc_client_untrack forgets it and unrefs the
 * grpc_call, once every batch of the call has come back. */
void rpc_client_track(rpc_client *cl, rpc_channel *ch, const char *method, int64_t timeout_ms, rpc_client_link *l);
void rpc_client_untrack(rpc_client *cl, rpc_client_link *l);

typedef struct call_op {
	rpc_tag tag;
	rpc_call *call;
} call_op;

struct rpc_call {
	rpc_server *srv;
	const rpc_method *method;
	grpc_call *gc;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_slice request;
	bool request_flat;
	cairn_arena *arena;
	atomic_int refs;
	atomic_bool cancelled;
	atomic_bool initial_md_sent;
	int close_cancelled;

	call_op close_op, recv_op, send_op, finish_op;
	grpc_byte_buffer *recv_bb;
	rpc_recv_raw_cb recv_raw_cb;
	void *recv_arg;
	rpc_done_cb send_cb, finish_cb;
	void *send_arg, *finish_arg;

	void *state;
	void (*destroy)(void *state);
	pthread_mutex_t cancel_mu; /* guards on_cancel against the close completion */
	void (*on_cancel)(rpc_call *call, void *arg);
	void *on_cancel_arg;
	bool closed;

	/* idle.c: an idle timeout (idle_ns > 0) puts the call on the server's idle list */
	int64_t idle_ns;
	atomic_int_fast64_t waiting_since; /* when the pending receive began (monotonic ns); 0: none */
	atomic_bool timed_out;
	char *idle_msg;
	grpc_status_code idle_code;
	rpc_call *idle_prev, *idle_next; /* under srv->idle_mu */
};

/* idle.c: the watchdog thread of a server (init before any call, stop once every call is freed) */
void rpc_idle_init(rpc_server *srv);
cairn_status rpc_idle_start(rpc_server *srv);
void rpc_idle_stop(rpc_server *srv);
/* A receive begins or ends on a call (no-ops without an idle timeout); a freed call leaves the list. */
void rpc_idle_wait_begins(rpc_call *c);
void rpc_idle_wait_ends(rpc_call *c);
void rpc_idle_forget(rpc_call *c);

/* call.c */
rpc_call *rpc_call_new(rpc_server *srv, const rpc_method *m, grpc_call *gc, grpc_metadata_array *md,
                       grpc_byte_buffer *payload);
void rpc_server_live_add(rpc_server *srv, long delta);

/* Packs a message into a fresh byte buffer. */
grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg);
/* Copies a byte buffer into one flat slice (unref it when done). */
grpc_slice rpc_flatten(grpc_byte_buffer *bb);
grpc_slice rpc_status_slice(const cairn_status *st);
/* A call's status as the client received it. */
cairn_status rpc_status_from(grpc_status_code code, grpc_slice details);
/* The value of metadata `key` in a, or NULL. */
const grpc_slice *rpc_find_md(const grpc_metadata_array *a, const char *key);
/* One message of `head` (copied) then `data` (not copied, release(data) once the transport is done). */
grpc_byte_buffer *rpc_zerocopy_buffer(const void *head, size_t head_len, void *data, size_t len,
                                      void (*release)(void *data));
/* Runs the tags of a completion queue until it shuts down: the body of every poller thread. */
void *rpc_poller(void *cq);

/* msg.c: takes the byte buffer's slices (references, no copy); the buffer may be destroyed after. */
rpc_msg *rpc_msg_from(grpc_byte_buffer *bb);
/* What a completed receive gives its callback: the message of *bb if the receive went well (NULL for
 * a half-close), and *bb destroyed and cleared either way. */
rpc_msg *rpc_msg_take(grpc_byte_buffer **bb, bool ok);

#endif
