/* The services both rpc test programs serve on loopback, and the channel they call them through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/rpc_services.h"

rpc_server *srv;
rpc_channel *ch;

/* unary: answers committed_size = length of the resource name */
void h_echo(rpc_call *call, void *svc)
{
	(void)svc;
	req_t *req = rpc_call_unpack_request(call, REQ_DESC);
	cairn_status st = req ? cairn_ok() : cairn_err(CAIRN_INVALID_ARGUMENT, "malformed request");
	resp_t resp = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
	if (req)
		resp.committed_size = (int64_t)strlen(req->resource_name);
	rpc_call_reply(call, &resp.base, &st);
}

/* server streaming: sends as many messages as the name is long, then OK */
typedef struct stream_state {
	int left, sent;
} stream_state;

static void stream_next(rpc_call *call, void *arg, bool ok)
{
	stream_state *s = arg;
	if (!ok || s->left == 0) {
		cairn_status st = ok ? cairn_ok() : cairn_err(CAIRN_CANCELLED, "gone");
		rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
		return;
	}
	s->left--;
	resp_t resp = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
	resp.committed_size = ++s->sent;
	rpc_call_send(call, &resp.base, stream_next, s);
}

static void h_stream(rpc_call *call, void *svc)
{
	(void)svc;
	req_t *req = rpc_call_unpack_request(call, REQ_DESC);
	stream_state *s = cairn_arena_alloc(rpc_call_arena(call), sizeof *s);
	s->left = req ? (int)strlen(req->resource_name) : 0;
	s->sent = 0;
	stream_next(call, s, true);
}

atomic_bool broke_idle;

/* client streaming: counts messages until the half-close, answers the count */
static void count_next(rpc_call *call, void *arg, bool ok, rpc_msg *msg)
{
	int64_t *n = arg;
	if (!ok) {
		atomic_store(&broke_idle, rpc_call_timed_out(call));
		cairn_status st = cairn_err(CAIRN_CANCELLED, "stream broke");
		rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
		return;
	}
	if (!msg) {
		resp_t resp = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
		resp.committed_size = *n;
		cairn_status st = cairn_ok();
		rpc_call_finish(call, &st, &resp.base, NULL, 0, NULL, NULL);
		return;
	}
	(*n)++;
	rpc_msg_free(msg);
	rpc_call_recv_raw(call, count_next, n);
}

static void h_count(rpc_call *call, void *svc)
{
	(void)svc;
	int64_t *n = cairn_arena_alloc(rpc_call_arena(call), sizeof *n);
	*n = 0;
	rpc_call_recv_raw(call, count_next, n);
}

/* h_count with an idle timeout of 200 ms */
static void h_idle(rpc_call *call, void *svc)
{
	cairn_status st = cairn_err(CAIRN_DEADLINE_EXCEEDED, "nothing came for 0.2 s");
	rpc_call_set_idle_timeout(call, 200 * 1000000LL, &st);
	h_count(call, svc);
}

/* fails with details in grpc-status-details-bin */
static void h_fail(rpc_call *call, void *svc)
{
	(void)svc;
	cairn_status st = cairn_err(CAIRN_FAILED_PRECONDITION, "missing blobs");
	rpc_call_finish(call, &st, NULL, "\x08\x09", 2, NULL, NULL);
}

/* server streaming: sends until a send fails, which is how it learns that the client cancelled */
atomic_int forever_cancelled;

static void forever_next(rpc_call *call, void *arg, bool ok)
{
	resp_t resp = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
	if (!ok) {
		atomic_fetch_add(&forever_cancelled, 1);
		cairn_status st = cairn_err(CAIRN_CANCELLED, "the client went away");
		rpc_call_finish(call, &st, NULL, NULL, 0, NULL, NULL);
		return;
	}
	resp.committed_size = 1;
	rpc_call_send(call, &resp.base, forever_next, arg);
}

static void h_forever(rpc_call *call, void *svc)
{
	(void)svc;
	forever_next(call, NULL, true);
}

/* client streaming: a slow consumer (a thread that takes a while over each message, as a slow disk
 * would) that asks for the next message only when done with the last; answers the bytes consumed */
atomic_llong slow_consumed;

typedef struct slow_state {
	rpc_call *call;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool ready, ok;
	rpc_msg *msg;
} slow_state;

static void slow_got(rpc_call *call, void *arg, bool ok, rpc_msg *msg)
{
	(void)call;
	slow_state *s = arg;
	pthread_mutex_lock(&s->mu);
	s->ready = true;
	s->ok = ok;
	s->msg = msg;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void *slow_consumer(void *arg)
{
	slow_state *s = arg;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		while (!s->ready)
			pthread_cond_wait(&s->cv, &s->mu);
		s->ready = false;
		pthread_mutex_unlock(&s->mu);
		if (!s->ok || !s->msg)
			break;
		usleep(2000); /* the slow part */
		atomic_fetch_add(&slow_consumed, (long long)rpc_msg_len(s->msg));
		rpc_msg_free(s->msg);
		rpc_call_recv_raw(s->call, slow_got, s);
	}
	resp_t resp = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
	resp.committed_size = atomic_load(&slow_consumed);
	cairn_status st = s->ok ? cairn_ok() : cairn_err(CAIRN_CANCELLED, "stream broke");
	rpc_call_finish(s->call, &st, s->ok ? &resp.base : NULL, NULL, 0, NULL, NULL);
	return NULL;
}

static void slow_destroy(void *arg)
{
	slow_state *s = arg;
	pthread_join(s->thread, NULL);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static void h_slow(rpc_call *call, void *svc)
{
	(void)svc;
	slow_state *s = cairn_xcalloc(1, sizeof *s);
	s->call = call;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	rpc_call_set_state(call, s, slow_destroy);
	pthread_create(&s->thread, NULL, slow_consumer, s);
	rpc_call_recv_raw(call, slow_got, s);
}

void rpc_services_start(void)
{
	rpc_method methods[] = {
		{"/t.T/Echo", RPC_UNARY, h_echo, NULL},
		{"/t.T/Stream", RPC_SERVER_STREAMING, h_stream, NULL},
		{"/t.T/Count", RPC_CLIENT_STREAMING, h_count, NULL},
		{"/t.T/Idle", RPC_CLIENT_STREAMING, h_idle, NULL},
		{"/t.T/Fail", RPC_UNARY, h_fail, NULL},
		{"/t.T/Hang", RPC_UNARY, h_hang, NULL},
		{"/t.T/HangStream", RPC_SERVER_STREAMING, h_hang, NULL},
		{"/t.T/Forever", RPC_SERVER_STREAMING, h_forever, NULL},
		{"/t.T/Slow", RPC_CLIENT_STREAMING, h_slow, NULL},
	};
	rpc_server_config cfg = {.address = "127.0.0.1:0", .threads = 2, .max_message_size = 2 << 20};
	cairn_status st = rpc_server_start(&cfg, methods, sizeof methods / sizeof methods[0], &srv);
	assert_int_equal(st.code, CAIRN_OK);
	char target[64];
	snprintf(target, sizeof target, "grpc://127.0.0.1:%d", rpc_server_port(srv));
	st = rpc_channel_open(target, 0, &ch);
	assert_int_equal(st.code, CAIRN_OK);
}

void rpc_services_stop(void)
{
	rpc_channel_close(ch);
	rpc_server_stop(srv);
}
