/* Unit tests of rpc/: a real server on loopback with small handlers (tests/rpc_services.h), driven by
 * the blocking client. The asynchronous client's tests are in unit_rpc_async.c. */
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

static int setup(void **state)
{
	(void)state;
	rpc_services_start();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rpc_services_stop();
	return 0;
}

static cairn_status echo(const char *name, int64_t *out)
{
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	req.resource_name = (char *)name;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, "/t.T/Echo", &req.base, RESP_DESC, &resp, 5000);
	if (cairn_is_ok(&st)) {
		*out = ((resp_t *)resp)->committed_size;
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	return st;
}

static void unary_round_trip(void **state)
{
	(void)state;
	int64_t n = -1;
	assert_int_equal(echo("hello", &n).code, CAIRN_OK);
	assert_int_equal(n, 5);
	assert_int_equal(echo("", &n).code, CAIRN_OK); /* an all-default message is empty on the wire */
	assert_int_equal(n, 0);
}

static void *echo_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 50; i++) {
		int64_t n = -1;
		cairn_status st = echo("concurrent", &n);
		if (!cairn_is_ok(&st) || n != 10)
			return (void *)1;
	}
	return NULL;
}

static void concurrent_unary_calls(void **state)
{
	(void)state;
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, echo_thread, NULL);
	for (int i = 0; i < 8; i++) {
		void *r;
		pthread_join(t[i], &r);
		assert_null(r);
	}
}

static void server_streaming_sends_in_order(void **state)
{
	(void)state;
	rpc_stream *s;
	assert_int_equal(rpc_stream_open(ch, "/t.T/Stream", 5000, &s).code, CAIRN_OK);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	req.resource_name = "0123456789";
	assert_int_equal(rpc_stream_send(s, &req.base).code, CAIRN_OK);
	assert_int_equal(rpc_stream_close_send(s).code, CAIRN_OK);
	int got = 0;
	for (;;) {
		ProtobufCMessage *m;
		assert_int_equal(rpc_stream_recv(s, RESP_DESC, &m).code, CAIRN_OK);
		if (!m)
			break;
		assert_int_equal(((resp_t *)m)->committed_size, ++got);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	assert_int_equal(got, 10);
	assert_int_equal(rpc_stream_finish(s, NULL, NULL).code, CAIRN_OK);
}

static void client_streaming_counts(void **state)
{
	(void)state;
	rpc_stream *s;
	assert_int_equal(rpc_stream_open(ch, "/t.T/Count", 5000, &s).code, CAIRN_OK);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	for (int i = 0; i < 25; i++)
		assert_int_equal(rpc_stream_send(s, &req.base).code, CAIRN_OK);
	assert_int_equal(rpc_stream_close_send(s).code, CAIRN_OK);
	ProtobufCMessage *m;
	assert_int_equal(rpc_stream_recv(s, RESP_DESC, &m).code, CAIRN_OK);
	assert_non_null(m);
	assert_int_equal(((resp_t *)m)->committed_size, 25);
	protobuf_c_message_free_unpacked(m, NULL);
	assert_int_equal(rpc_stream_finish(s, NULL, NULL).code, CAIRN_OK);
}

static void error_status_carries_details(void **state)
{
	(void)state;
	rpc_stream *s;
	assert_int_equal(rpc_stream_open(ch, "/t.T/Fail", 5000, &s).code, CAIRN_OK);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	assert_int_equal(rpc_stream_send(s, &req.base).code, CAIRN_OK);
	assert_int_equal(rpc_stream_close_send(s).code, CAIRN_OK);
	uint8_t *details;
	size_t len;
	cairn_status st = rpc_stream_finish(s, &details, &len);
	assert_int_equal(st.code, CAIRN_FAILED_PRECONDITION);
	assert_string_equal(st.msg, "missing blobs");
	assert_int_equal(len, 2);
	assert_memory_equal(details, "\x08\x09", 2);
	free(details);
}

static void unknown_method_is_unimplemented(void **state)
{
	(void)state;
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, "/t.T/Nope", &req.base, RESP_DESC, &resp, 5000);
	assert_int_equal(st.code, CAIRN_UNIMPLEMENTED);
	assert_non_null(strstr(st.msg, "/t.T/Nope"));
}

static void oversized_message_is_refused(void **state)
{
	(void)state;
	static char big[(2 << 20) + 100];
	memset(big, 'x', sizeof big - 1);
	int64_t n;
	cairn_status st = echo(big, &n);
	assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
	assert_int_equal(echo("after", &n).code, CAIRN_OK); /* the server goes on */
}

static void stop_with_a_call_in_flight(void **state)
{
	(void)state;
	/* a client-streaming call left open: stopping the server must cancel it and return */
	rpc_stream *s;
	assert_int_equal(rpc_stream_open(ch, "/t.T/Count", 5000, &s).code, CAIRN_OK);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	assert_int_equal(rpc_stream_send(s, &req.base).code, CAIRN_OK);
	rpc_server_stop(srv);
	cairn_status st = rpc_stream_finish(s, NULL, NULL);
	assert_int_not_equal(st.code, CAIRN_OK);
	rpc_channel_close(ch);
	setup(NULL); /* a fresh server and channel for teardown */
}

static void string_fields_are_checked(void **state)
{
	(void)state;
	const ProtobufCMessageDescriptor *d = REQ_DESC; /* resource_name = 1, a string */
	assert_true(rpc_strings_valid(d, (const uint8_t *)"\x0a\x03" "abc", 5));
	assert_true(rpc_strings_valid(d, (const uint8_t *)"\x0a\x02\xc3\xa9", 4)); /* é */
	assert_true(rpc_strings_valid(d, (const uint8_t *)"", 0));
	assert_false(rpc_strings_valid(d, (const uint8_t *)"\x0a\x03" "a\0c", 5));  /* NUL */
	assert_false(rpc_strings_valid(d, (const uint8_t *)"\x0a\x02\xc3\x28", 4)); /* bad continuation */
	assert_false(rpc_strings_valid(d, (const uint8_t *)"\x0a\x02\xc0\x80", 4)); /* overlong NUL */
	assert_false(rpc_strings_valid(d, (const uint8_t *)"\x0a\x03\xed\xa0\x80", 5)); /* surrogate */
	assert_false(rpc_strings_valid(d, (const uint8_t *)"\x0a\x09" "abc", 5));    /* truncated */
	/* unknown fields are skipped whatever they hold */
	assert_true(rpc_strings_valid(d, (const uint8_t *)"\x12\x01\xff\x18\x05", 5));
}

/* A client stream that goes silent is ended by the server with the status its handler set, and the
 * handler learns why its receive failed. */
static void idle_stream_is_ended(void **state)
{
	(void)state;
	atomic_store(&broke_idle, false);
	rpc_stream *s;
	assert_int_equal(rpc_stream_open(ch, "/t.T/Idle", 5000, &s).code, CAIRN_OK);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	assert_int_equal(rpc_stream_send(s, &req.base).code, CAIRN_OK);
	ProtobufCMessage *m;
	assert_int_equal(rpc_stream_recv(s, RESP_DESC, &m).code, CAIRN_OK); /* waits for the end of the call */
	assert_null(m);
	rpc_stream_close_send(s); /* keeps finish from cancelling: the call is over already */
	cairn_status st = rpc_stream_finish(s, NULL, NULL);
	assert_int_equal(st.code, CAIRN_DEADLINE_EXCEEDED);
	assert_string_equal(st.msg, "nothing came for 0.2 s");
	int64_t deadline = cairn_now_ns() + 10 * 1000000000LL; /* the handler hears of it on its own thread */
	while (!atomic_load(&broke_idle) && cairn_now_ns() < deadline)
		usleep(1000);
	assert_true(atomic_load(&broke_idle));
}

/* A stream whose messages keep coming, or that half-closes, is not ended by its idle timeout. */
static void busy_stream_is_not_ended(void **state)
{
	(void)state;
	rpc_stream *s;
	assert_int_equal(rpc_stream_open(ch, "/t.T/Idle", 5000, &s).code, CAIRN_OK);
	req_t req = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
	for (int i = 0; i < 3; i++)
		assert_int_equal(rpc_stream_send(s, &req.base).code, CAIRN_OK);
	assert_int_equal(rpc_stream_close_send(s).code, CAIRN_OK);
	ProtobufCMessage *m;
	assert_int_equal(rpc_stream_recv(s, RESP_DESC, &m).code, CAIRN_OK);
	assert_non_null(m);
	assert_int_equal(((resp_t *)m)->committed_size, 3);
	protobuf_c_message_free_unpacked(m, NULL);
	assert_int_equal(rpc_stream_finish(s, NULL, NULL).code, CAIRN_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unary_round_trip),
		cmocka_unit_test(concurrent_unary_calls),
		cmocka_unit_test(server_streaming_sends_in_order),
		cmocka_unit_test(client_streaming_counts),
		cmocka_unit_test(error_status_carries_details),
		cmocka_unit_test(unknown_method_is_unimplemented),
		cmocka_unit_test(oversized_message_is_refused),
		cmocka_unit_test(stop_with_a_call_in_flight),
		cmocka_unit_test(string_fields_are_checked),
		cmocka_unit_test(idle_stream_is_ended),
		cmocka_unit_test(busy_stream_is_not_ended),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
