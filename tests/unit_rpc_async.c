/* Unit tests of rpc/'s asynchronous client (rpc_client, rpc_async_unary, rpc_client_call_*) against
 * a real server on loopback (tests/rpc_services.h). Callbacks run on the client's pollers; the test
 * thread waits for what they report. */
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
#include <time.h>

#include "tests/rpc_services.h"

static rpc_client *cl;

static int setup(void **state)
{
	(void)state;
	rpc_services_start();
	assert_int_equal(rpc_client_start(NULL, &cl).code, CAIRN_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rpc_client_stop(cl);
	rpc_services_stop();
	return 0;
}

/* What callbacks report, waited for by the test thread. The wait's deadline only keeps a broken
 * build from hanging the suite: every call below has its own, shorter one. */
typedef struct outcome {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n;      /* callbacks run */
	int failed; /* of which with a status other than the expected one */
	cairn_status st;
	int64_t value;
} outcome;

static void outcome_init(outcome *o)
{
	memset(o, 0, sizeof *o);
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
}

static void outcome_add(outcome *o, cairn_status st, int64_t value, bool expected)
{
	pthread_mutex_lock(&o->mu);
	o->n++;
	o->failed += !expected;
	o->st = st;
	o->value = value;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

static void outcome_wait(outcome *o, int n)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 120;
	pthread_mutex_lock(&o->mu);
	while (o->n < n)
		assert_int_equal(pthread_cond_timedwait(&o->cv, &o->mu, &until), 0);
	pthread_mutex_unlock(&o->mu);
}

static void outcome_destroy(outcome *o)
{
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
}

/* Polls (with a deadline) until *v == want. */
static void wait_for_int(atomic_int *v, int want)
{
	for (int i = 0; i < 12000 && atomic_load(v) != want; i++)
		usleep(10000);
	assert_int_equal(atomic_load(v), want);
}

static void on_unary_outcome(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	int64_t v = resp ? ((resp_t *)resp)->committed_size : -1;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	outcome_add(arg, st, v, cairn_is_ok(&st));
}

/* One async unary call on channel c, waited for. */
static cairn_status async_call(rpc_channel *c, const char *method, const char *name, int64_t timeout_ms, int64_t *v)
{
	outcome o;
	outcome_init(&o);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	req.resource_name = (char *)name;
	rpc_async_unary(cl, c, method, &req.base, RESP_DESC, timeout_ms, on_unary_outcome, &o);
	outcome_wait(&o, 1);
	*v = o.value;
	outcome_destroy(&o);
	return o.st;
}

static void async_unary_statuses(void **state)
{
	(void)state;
	int64_t v;
	assert_int_equal(async_call(ch, "/t.T/Echo", "hello", 5000, &v).code, CAIRN_OK);
	assert_int_equal(v, 5);
	cairn_status st = async_call(ch, "/t.T/Fail", "", 5000, &v);
	assert_int_equal(st.code, CAIRN_FAILED_PRECONDITION);
	assert_string_equal(st.msg, "missing blobs");
	assert_int_equal(v, -1);
	st = async_call(ch, "/t.T/Nope", "", 5000, &v);
	assert_int_equal(st.code, CAIRN_UNIMPLEMENTED);
	assert_non_null(strstr(st.msg, "/t.T/Nope"));
	/* a handler that never answers: the call ends at its deadline */
	st = async_call(ch, "/t.T/Hang", "", 300, &v);
	assert_int_equal(st.code, CAIRN_DEADLINE_EXCEEDED);
	wait_for_int(&hanging, 0); /* and the server saw it go */
}

static void async_unary_refused_connection(void **state)
{
	(void)state;
	/* a port nobody listens on: the one a just-stopped server had */
	rpc_server *gone;
	rpc_server_config cfg = {.address = "127.0.0.1:0", .threads = 1};
	rpc_method echo_method = {"/t.T/Echo", RPC_UNARY, h_echo, NULL};
	assert_int_equal(rpc_server_start(&cfg, &echo_method, 1, &gone).code, CAIRN_OK);
	char target[64];
	snprintf(target, sizeof target, "127.0.0.1:%d", rpc_server_port(gone));
	rpc_server_stop(gone);
	rpc_channel *dead;
	assert_int_equal(rpc_channel_open(target, 0, &dead).code, CAIRN_OK);
	int64_t v;
	cairn_status st = async_call(dead, "/t.T/Echo", "x", 60000, &v);
	assert_int_equal(st.code, CAIRN_UNAVAILABLE);
	rpc_channel_close(dead);
}

/* A client-streaming upload: 64 messages of 1 MiB, each sent without a copy once the last send is
 * done, against a slow consumer; then the response and the status. */
#define UP_MSGS 64
#define UP_CHUNK (1 << 20)

static atomic_int up_released;

static void up_release(void *data)
{
	(void)data;
	atomic_fetch_add(&up_released, 1);
}

typedef struct upload {
	int sent;
	int64_t sent_bytes, ahead_max, committed;
	outcome done;
} upload;

static const uint8_t up_head[] = {0x52, 0x80, 0x80, 0x40}; /* field 10 (bytes), length 1 MiB */
static uint8_t up_chunk[UP_CHUNK];

static void up_status(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc;
	upload *u = arg;
	outcome_add(&u->done, st, u->committed, cairn_is_ok(&st));
}

static void up_response(rpc_client_call *cc, void *arg, bool ok, rpc_msg *msg)
{
	upload *u = arg;
	if (ok && msg) {
		ProtobufCMessage *resp = rpc_msg_unpack(msg, RESP_DESC);
		u->committed = resp ? ((resp_t *)resp)->committed_size : -1;
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	rpc_msg_free(msg);
	rpc_client_call_finish(cc, up_status, u);
}

static void up_closed(rpc_client_call *cc, void *arg, bool ok)
{
	if (!ok) {
		rpc_client_call_finish(cc, up_status, arg);
		return;
	}
	rpc_client_call_recv(cc, up_response, arg);
}

static void up_sent(rpc_client_call *cc, void *arg, bool ok)
{
	upload *u = arg;
	if (!ok) {
		rpc_client_call_finish(cc, up_status, u);
		return;
	}
	if (u->sent > 0) {
		u->sent_bytes += (int64_t)(sizeof up_head + UP_CHUNK);
		int64_t ahead = u->sent_bytes - atomic_load(&slow_consumed);
		if (ahead > u->ahead_max)
			u->ahead_max = ahead;
	}
	if (u->sent == UP_MSGS) {
		rpc_client_call_close_send(cc, up_closed, u);
		return;
	}
	u->sent++;
	rpc_client_call_send_zerocopy(cc, up_head, sizeof up_head, up_chunk, UP_CHUNK, up_release, up_sent, u);
}

static void async_upload_with_back_pressure(void **state)
{
	(void)state;
	atomic_store(&slow_consumed, 0);
	atomic_store(&up_released, 0);
	upload u = {0};
	outcome_init(&u.done);
	rpc_client_call *cc = rpc_client_call_start(cl, ch, "/t.T/Slow", 120000);
	up_sent(cc, &u, true);
	outcome_wait(&u.done, 1);
	assert_int_equal(u.done.st.code, CAIRN_OK);
	int64_t total = UP_MSGS * (int64_t)(sizeof up_head + UP_CHUNK);
	assert_int_equal(u.committed, total);
	wait_for_int(&up_released, UP_MSGS); /* every chunk given back by the transport */
	/* sends waited for the consumer: the client never ran far ahead of it */
	print_message("upload: at most %lld bytes sent ahead of the consumer\n", (long long)u.ahead_max);
	assert_true(u.ahead_max < total / 2);
	outcome_destroy(&u.done);
}

/* Server streaming: the request, then messages until the end, then the status. */
typedef struct download {
	int got;
	bool in_order;
	int stop_after; /* cancel after this many messages; 0: read to the end */
	uint8_t details[8]; /* the start of grpc-status-details-bin */
	size_t details_len;
	outcome done;
} download;

static void dl_status(rpc_client_call *cc, void *arg, cairn_status st)
{
	download *d = arg;
	const uint8_t *det = rpc_client_call_details(cc, &d->details_len);
	if (det)
		memcpy(d->details, det, d->details_len < sizeof d->details ? d->details_len : sizeof d->details);
	outcome_add(&d->done, st, d->got, true);
}

static void dl_recv(rpc_client_call *cc, void *arg, bool ok, rpc_msg *msg)
{
	download *d = arg;
	if (!ok || !msg) {
		rpc_client_call_finish(cc, dl_status, d);
		return;
	}
	ProtobufCMessage *m = rpc_msg_unpack(msg, RESP_DESC);
	rpc_msg_free(msg);
	d->got++;
	if (!m || (d->stop_after == 0 && ((resp_t *)m)->committed_size != d->got))
		d->in_order = false;
	protobuf_c_message_free_unpacked(m, NULL);
	if (d->got == d->stop_after) {
		rpc_client_call_cancel(cc);
		rpc_client_call_finish(cc, dl_status, d);
		return;
	}
	rpc_client_call_recv(cc, dl_recv, d);
}

static void dl_sent(rpc_client_call *cc, void *arg, bool ok)
{
	(void)ok; /* a failed call fails its receive too */
	rpc_client_call_close_send(cc, NULL, NULL);
	rpc_client_call_recv(cc, dl_recv, arg);
}

static void download_from(const char *method, const char *name, download *d)
{
	d->got = 0;
	d->in_order = true;
	outcome_init(&d->done);
	rpc_client_call *cc = rpc_client_call_start(cl, ch, method, 60000);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	req.resource_name = (char *)name;
	rpc_client_call_send(cc, &req.base, dl_sent, d);
	outcome_wait(&d->done, 1);
	outcome_destroy(&d->done);
}

static void async_download(void **state)
{
	(void)state;
	char name[301];
	memset(name, 'n', 300);
	name[300] = 0;
	download d = {0};
	download_from("/t.T/Stream", name, &d);
	assert_int_equal(d.done.st.code, CAIRN_OK);
	assert_int_equal(d.got, 300);
	assert_true(d.in_order);
}

static void async_cancel_mid_stream(void **state)
{
	(void)state;
	atomic_store(&forever_cancelled, 0);
	download d = {.stop_after = 3};
	download_from("/t.T/Forever", "", &d);
	assert_int_equal(d.done.st.code, CAIRN_CANCELLED);
	assert_int_equal(d.got, 3);
	wait_for_int(&forever_cancelled, 1); /* the server's next send failed: it saw the client go */
}

static void async_stream_error_details(void **state)
{
	(void)state;
	download d = {0};
	download_from("/t.T/Fail", "", &d);
	assert_int_equal(d.done.st.code, CAIRN_FAILED_PRECONDITION);
	assert_string_equal(d.done.st.msg, "missing blobs");
	assert_int_equal(d.details_len, 2);
	assert_memory_equal(d.details, "\x08\x09", 2);
}

/* A callback starts the next call: five in a chain, each from the one before's callback. */
typedef struct chain {
	rpc_client *cl;
	int left;
	outcome done;
} chain;

static void chain_next(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	chain *c = arg;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (!cairn_is_ok(&st) || --c->left == 0) {
		outcome_add(&c->done, st, c->left, cairn_is_ok(&st));
		return;
	}
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	rpc_async_unary(c->cl, ch, "/t.T/Echo", &req.base, RESP_DESC, 5000, chain_next, c);
}

static void async_call_from_a_callback(void **state)
{
	(void)state;
	chain c = {.cl = cl, .left = 6};
	outcome_init(&c.done);
	chain_next(&c, cairn_ok(), NULL);
	outcome_wait(&c.done, 1);
	assert_int_equal(c.done.st.code, CAIRN_OK);
	assert_int_equal(c.done.value, 0);
	outcome_destroy(&c.done);
}

/* Stopping a client with calls in flight: every callback runs once, cancelled, before stop returns;
 * a call started from a callback while it stops is cancelled at once. */
static void on_cancelled_unary(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	assert_null(resp);
	outcome_add(arg, st, 0, st.code == CAIRN_CANCELLED);
}

typedef struct restart {
	rpc_client *cl;
	outcome done;
} restart;

static void restart_once(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	restart *r = arg;
	on_cancelled_unary(&r->done, st, resp);
	if (r->done.n == 1) { /* the client is stopping: this call never reaches the server */
		req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
		rpc_async_unary(r->cl, ch, "/t.T/Echo", &req.base, RESP_DESC, 60000, restart_once, r);
	}
}

static void async_stop_with_calls_in_flight(void **state)
{
	(void)state;
	rpc_client *c2;
	rpc_client_config cfg = {.threads = 1};
	assert_int_equal(rpc_client_start(&cfg, &c2).code, CAIRN_OK);
	outcome unary;
	outcome_init(&unary);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	for (int i = 0; i < 8; i++)
		rpc_async_unary(c2, ch, "/t.T/Hang", &req.base, RESP_DESC, 60000, on_cancelled_unary, &unary);
	restart r = {.cl = c2};
	outcome_init(&r.done);
	rpc_async_unary(c2, ch, "/t.T/Hang", &req.base, RESP_DESC, 60000, restart_once, &r);
	download d = {0};
	outcome_init(&d.done);
	rpc_client_call *cc = rpc_client_call_start(c2, ch, "/t.T/HangStream", 60000);
	rpc_client_call_send(cc, &req.base, dl_sent, &d);
	wait_for_int(&hanging, 10); /* every call has reached its handler */
	rpc_client_stop(c2);
	assert_int_equal(unary.n, 8);
	assert_int_equal(unary.failed, 0);
	assert_int_equal(r.done.n, 2);
	assert_int_equal(r.done.failed, 0);
	assert_int_equal(d.done.n, 1);
	assert_int_equal(d.done.st.code, CAIRN_CANCELLED);
	wait_for_int(&hanging, 0);
	outcome_destroy(&unary);
	outcome_destroy(&r.done);
	outcome_destroy(&d.done);
}

/* Many calls at once from several threads on one client. */
#define CONC_THREADS 4
#define CONC_CALLS 250

static void on_counted(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	bool right = cairn_is_ok(&st) && ((resp_t *)resp)->committed_size == 10;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	outcome_add(arg, st, 0, right);
}

static void *conc_thread(void *arg)
{
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	req.resource_name = "concurrent";
	for (int i = 0; i < CONC_CALLS; i++)
		rpc_async_unary(cl, ch, "/t.T/Echo", &req.base, RESP_DESC, 60000, on_counted, arg);
	return NULL;
}

static void async_concurrent_calls(void **state)
{
	(void)state;
	outcome o;
	outcome_init(&o);
	pthread_t t[CONC_THREADS];
	for (int i = 0; i < CONC_THREADS; i++)
		pthread_create(&t[i], NULL, conc_thread, &o);
	for (int i = 0; i < CONC_THREADS; i++)
		pthread_join(t[i], NULL);
	outcome_wait(&o, CONC_THREADS * CONC_CALLS);
	assert_int_equal(o.failed, 0);
	outcome_destroy(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(async_unary_statuses),
		cmocka_unit_test(async_unary_refused_connection),
		cmocka_unit_test(async_upload_with_back_pressure),
		cmocka_unit_test(async_download),
		cmocka_unit_test(async_cancel_mid_stream),
		cmocka_unit_test(async_stream_error_details),
		cmocka_unit_test(async_call_from_a_callback),
		cmocka_unit_test(async_stop_with_calls_in_flight),
		cmocka_unit_test(async_concurrent_calls),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
