/* Unit tests of the remote store (blobstore/remote*.c) against real servers on loopback, in this
 * process: the gateway's services over a cachefs in a temporary directory (what `cairn serve` and a
 * worker's private port serve), a server whose handlers never answer (a stalled peer), and a port
 * nobody listens on (a dead peer). Callbacks run on the rpc client's pollers; the test thread waits
 * for them with a deadline that only keeps a broken build from hanging the suite. */
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
#include <time.h>
#include <unistd.h>

#include "blobstore/blobstore.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "cachefs/cachefs.h"
#include "gateway/gateway.h"
#include "rpc/rpc.h"
#include "tests/rpc_hang.h"

static char dir[64];
static cachefs *fs;
static gateway *gw;
static rpc_server *srv, *stalled;
static rpc_client *cl;
static char target[64], stalled_target[64];

/* ---- a peer that never answers ---- */

static const rpc_method hang[] = {
    {"/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs", RPC_UNARY, h_hang, NULL},
    {"/google.bytestream.ByteStream/Read", RPC_SERVER_STREAMING, h_hang, NULL},
    {"/google.bytestream.ByteStream/Write", RPC_CLIENT_STREAMING, h_hang, NULL},
};

/* ---- a peer that fails the calls whose numbers (from 0) are in flaky_down, answers the others
 * (every digest present) ---- */

static atomic_int flaky_calls, flaky_down;

static void h_flaky(rpc_call *call, void *svc)
{
	(void)svc;
	cairn_status st = atomic_load(&flaky_down) & (1 << atomic_fetch_add(&flaky_calls, 1))
	                      ? cairn_err(CAIRN_UNAVAILABLE, "down for maintenance")
	                      : cairn_ok();
	Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse resp =
	    BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_RESPONSE__INIT;
	rpc_call_reply(call, &resp.base, &st);
}

static const rpc_method flaky[] = {
    {"/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs", RPC_UNARY, h_flaky, NULL},
};

static rpc_server *start_server(const rpc_method *m, size_t n, char *addr, size_t cap)
{
	rpc_server *s;
	/* the default message limit (4 MiB), as `cairn serve` has: a larger blob must go in several */
	rpc_server_config cfg = {.address = "127.0.0.1:0", .threads = 2};
	assert_int_equal(rpc_server_start(&cfg, m, n, &s).code, CAIRN_OK);
	snprintf(addr, cap, "127.0.0.1:%d", rpc_server_port(s));
	return s;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/cairn-remote-XXXXXX");
	assert_non_null(mkdtemp(dir));
	cachefs_config cc = {.dir = dir, .max_size = 1LL << 30};
	assert_int_equal(cachefs_open(&cc, &fs).code, CAIRN_OK);
	gateway_config gc = {.cas = cachefs_blobstore(fs), .ac_max_size = 1 << 20, .max_batch_size = 4 << 20,
	                     .max_upload_sessions = 16, .upload_idle_ns = 60000000000LL, .max_inline_size = 1 << 20};
	gw = gateway_new(&gc);
	rpc_method methods[32];
	size_t n = gateway_methods(gw, methods, 32);
	srv = start_server(methods, n, target, sizeof target);
	stalled = start_server(hang, 3, stalled_target, sizeof stalled_target);
	assert_int_equal(rpc_client_start(NULL, &cl).code, CAIRN_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rpc_client_stop(cl);
	rpc_server_stop(stalled);
	rpc_server_stop(srv);
	gateway_free(gw);
	cachefs_close(fs);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static blobstore_remote *remote_to(const char *t, rpc_client *c, int64_t timeout_ms, int threshold,
                                   int64_t cooldown_ms)
{
	blobstore_remote_config cfg = {.target = t, .client = c, .timeout_ms = timeout_ms,
	                               .failure_threshold = threshold, .cooldown_ms = cooldown_ms};
	blobstore_remote *r;
	assert_int_equal(blobstore_remote_new(&cfg, &r).code, CAIRN_OK);
	return r;
}

/* ---- waiting for callbacks, with a deadline ---- */

typedef struct outcome {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n;
	cairn_status st;
	blobstore_reader *rd;
	size_t got;
} outcome;

static void outcome_init(outcome *o)
{
	memset(o, 0, sizeof *o);
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
}

static void outcome_add(outcome *o, cairn_status st, blobstore_reader *rd, size_t got)
{
	pthread_mutex_lock(&o->mu);
	o->n++;
	o->st = st;
	o->rd = rd;
	o->got = got;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

static void on_done(void *arg, cairn_status st) { outcome_add(arg, st, NULL, 0); }
static void on_open(void *arg, cairn_status st, blobstore_reader *rd) { outcome_add(arg, st, rd, 0); }
static void on_read(void *arg, cairn_status st, size_t n) { outcome_add(arg, st, NULL, n); }

/* Waits until n callbacks ran; fails the test after `seconds`. */
static cairn_status outcome_wait(outcome *o, int n, int seconds)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += seconds;
	pthread_mutex_lock(&o->mu);
	while (o->n < n)
		assert_int_equal(pthread_cond_timedwait(&o->cv, &o->mu, &until), 0);
	cairn_status st = o->st;
	pthread_mutex_unlock(&o->mu);
	return st;
}

static void outcome_destroy(outcome *o)
{
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
}

static cairn_status find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing)
{
	outcome o;
	outcome_init(&o);
	blobstore_find_missing(bs, ds, n, missing, on_done, &o);
	cairn_status st = outcome_wait(&o, 1, 120);
	outcome_destroy(&o);
	return st;
}

static cairn_status open_read(blobstore *bs, const cairn_digest *d, blobstore_reader **rd)
{
	outcome o;
	outcome_init(&o);
	blobstore_open_read(bs, d, on_open, &o);
	cairn_status st = outcome_wait(&o, 1, 120);
	*rd = o.rd;
	outcome_destroy(&o);
	return st;
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
	uint8_t *b = malloc(n ? n : 1);
	uint64_t x = seed * 0x9e3779b97f4a7c15u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (uint8_t)x;
	}
	return b;
}

static void assert_names(const cairn_status *st, const char *peer, const cairn_digest *d)
{
	if (!strstr(st->msg, peer))
		fail_msg("\"%s\" does not name the peer %s", st->msg, peer);
	if (d) {
		char hex[CAIRN_HASH_HEX_LEN + 1];
		cairn_hash_hex(d->hash, hex);
		if (!strstr(st->msg, hex))
			fail_msg("\"%s\" does not name the blob %s", st->msg, hex);
	}
}

/* ---- against the gateway over a cachefs ---- */

/* Writes a blob with a single append, which the store sends as messages the server accepts. */
static cairn_status put_in_one_append(blobstore *bs, const cairn_digest *d, const void *data, size_t len)
{
	blobstore_writer *w;
	cairn_status st = blobstore_open_write(bs, d, &w);
	if (!cairn_is_ok(&st))
		return st;
	outcome o;
	outcome_init(&o);
	blobstore_write(w, data, len, on_done, &o);
	st = outcome_wait(&o, 1, 120);
	if (cairn_is_ok(&st)) {
		blobstore_commit(w, on_done, &o);
		st = outcome_wait(&o, 2, 120);
	} else {
		blobstore_abort(w);
	}
	outcome_destroy(&o);
	return st;
}

static void write_then_read_back(void **state)
{
	(void)state;
	blobstore_remote *r = remote_to(target, cl, 0, 0, 0);
	blobstore *bs = blobstore_remote_blobstore(r);
	size_t sizes[] = {0, 1024, 5u << 20};
	for (size_t i = 0; i < 3; i++) {
		uint8_t *data = random_bytes(sizes[i], i + 1);
		cairn_digest d;
		cairn_digest_of(data, sizes[i], &d);
		assert_int_equal(put_in_one_append(bs, &d, data, sizes[i]).code, CAIRN_OK);
		/* it is in the server's store, not only somewhere on the way */
		uint8_t missing = 1;
		assert_int_equal(find_missing(cachefs_blobstore(fs), &d, 1, &missing).code, CAIRN_OK);
		assert_int_equal(missing, 0);
		uint8_t *back;
		size_t len;
		cairn_status st = blobstore_get_sync(bs, &d, 1LL << 30, &back, &len);
		assert_int_equal(st.code, CAIRN_OK);
		assert_int_equal(len, sizes[i]);
		if (sizes[i])
			assert_memory_equal(back, data, sizes[i]);
		free(back);
		free(data);
	}
	blobstore_remote_free(r);
}

/* Reads inside the first bytes and far past them, and past the end, on one reader. */
static void read_ranges(void **state)
{
	(void)state;
	blobstore_remote *r = remote_to(target, cl, 0, 0, 0);
	blobstore *bs = blobstore_remote_blobstore(r);
	size_t size = 3u << 20;
	uint8_t *data = random_bytes(size, 7);
	cairn_digest d;
	cairn_digest_of(data, size, &d);
	assert_int_equal(blobstore_put_sync(bs, &d, data, size).code, CAIRN_OK);
	blobstore_reader *rd;
	assert_int_equal(open_read(bs, &d, &rd).code, CAIRN_OK);
	assert_int_equal(rd->size, (int64_t)size);
	uint64_t offs[] = {100, (1u << 20) + 5, size - 10, size};
	size_t ask[] = {1000, 1500000, 17, 5};
	size_t want[] = {1000, 1500000, 10, 0};
	uint8_t *buf = malloc(2u << 20);
	for (size_t i = 0; i < 4; i++) {
		outcome o;
		outcome_init(&o);
		blobstore_read(rd, offs[i], buf, ask[i], on_read, &o);
		assert_int_equal(outcome_wait(&o, 1, 120).code, CAIRN_OK);
		assert_int_equal(o.got, want[i]); /* n < len only at the end */
		if (want[i])
			assert_memory_equal(buf, data + offs[i], want[i]);
		outcome_destroy(&o);
	}
	blobstore_close_read(rd);
	free(buf);
	free(data);
	blobstore_remote_free(r);
}

static void find_missing_mixed(void **state)
{
	(void)state;
	blobstore_remote *r = remote_to(target, cl, 0, 0, 0);
	blobstore *bs = blobstore_remote_blobstore(r);
	/* more than one FindMissingBlobs call's worth, present ones in both */
	enum { N = 9000 };
	cairn_digest *ds = calloc(N, sizeof *ds);
	uint8_t *missing = malloc(N);
	for (size_t i = 0; i < N; i++) {
		char s[32];
		snprintf(s, sizeof s, "blob %zu", i);
		cairn_digest_of(s, strlen(s), &ds[i]);
		if (i % 1000 == 3)
			assert_int_equal(blobstore_put_sync(bs, &ds[i], s, strlen(s)).code, CAIRN_OK);
	}
	ds[N - 1] = ds[N - 2]; /* the same absent digest twice */
	memset(missing, 7, N);
	assert_int_equal(find_missing(bs, ds, N, missing).code, CAIRN_OK);
	for (size_t i = 0; i < N; i++)
		if (missing[i] != (i % 1000 == 3 ? 0 : 1))
			fail_msg("digest %zu: missing=%d", i, missing[i]);
	free(ds);
	free(missing);
	blobstore_remote_free(r);
}

static void read_absent_is_not_found(void **state)
{
	(void)state;
	blobstore_remote *r = remote_to(target, cl, 0, 0, 0);
	cairn_digest d;
	cairn_digest_of("never stored", 12, &d);
	blobstore_reader *rd = NULL;
	cairn_status st = open_read(blobstore_remote_blobstore(r), &d, &rd);
	assert_int_equal(st.code, CAIRN_NOT_FOUND);
	assert_null(rd);
	assert_names(&st, target, &d);
	/* an answer is not a failure: the breaker stays closed */
	for (int i = 0; i < 10; i++)
		assert_int_equal(open_read(blobstore_remote_blobstore(r), &d, &rd).code, CAIRN_NOT_FOUND);
	blobstore_remote_free(r);
}

static void wrong_digest_refused_at_commit(void **state)
{
	(void)state;
	blobstore_remote *r = remote_to(target, cl, 0, 0, 0);
	size_t size = 2u << 20;
	uint8_t *data = random_bytes(size, 11);
	cairn_digest d;
	cairn_digest_of(data, size, &d);
	data[size / 2] ^= 1;
	cairn_status st = blobstore_put_sync(blobstore_remote_blobstore(r), &d, data, size);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_names(&st, target, &d);
	uint8_t missing = 0;
	assert_int_equal(find_missing(cachefs_blobstore(fs), &d, 1, &missing).code, CAIRN_OK);
	assert_int_equal(missing, 1);
	free(data);
	blobstore_remote_free(r);
}

static void abort_leaves_nothing(void **state)
{
	(void)state;
	blobstore_remote *r = remote_to(target, cl, 0, 0, 0);
	blobstore *bs = blobstore_remote_blobstore(r);
	size_t size = 1u << 20;
	uint8_t *data = random_bytes(size, 13);
	cairn_digest d;
	cairn_digest_of(data, size, &d);
	blobstore_writer *w;
	assert_int_equal(blobstore_open_write(bs, &d, &w).code, CAIRN_OK);
	outcome o;
	outcome_init(&o);
	blobstore_write(w, data, size / 2, on_done, &o);
	assert_int_equal(outcome_wait(&o, 1, 120).code, CAIRN_OK);
	outcome_destroy(&o);
	blobstore_abort(w);
	uint8_t missing = 0;
	assert_int_equal(find_missing(bs, &d, 1, &missing).code, CAIRN_OK);
	assert_int_equal(missing, 1);
	free(data);
	blobstore_remote_free(r);
}

/* ---- dead and stalled peers ---- */

static void dead_peer_opens_the_breaker(void **state)
{
	(void)state;
	char dead[64];
	rpc_server *gone = start_server(hang, 1, dead, sizeof dead);
	rpc_server_stop(gone); /* its port now refuses connections */
	blobstore_remote *r = remote_to(dead, cl, 60000, 3, 3600000);
	blobstore *bs = blobstore_remote_blobstore(r);
	cairn_digest d;
	cairn_digest_of("x", 1, &d);
	uint8_t missing;
	for (int i = 0; i < 3; i++) {
		cairn_status st = find_missing(bs, &d, 1, &missing);
		assert_int_equal(st.code, CAIRN_UNAVAILABLE);
		assert_names(&st, dead, NULL);
	}
	assert_int_equal(blobstore_remote_get_stats(r).calls, 3);
	/* now every kind of call is answered at once, without a call to the peer */
	cairn_status st = find_missing(bs, &d, 1, &missing);
	assert_int_equal(st.code, CAIRN_UNAVAILABLE);
	assert_names(&st, dead, NULL);
	blobstore_reader *rd;
	st = open_read(bs, &d, &rd);
	assert_int_equal(st.code, CAIRN_UNAVAILABLE);
	assert_names(&st, dead, &d);
	blobstore_writer *w;
	st = blobstore_open_write(bs, &d, &w);
	assert_int_equal(st.code, CAIRN_UNAVAILABLE);
	assert_names(&st, dead, &d);
	blobstore_remote_stats s = blobstore_remote_get_stats(r);
	assert_int_equal(s.calls, 3);
	assert_int_equal(s.refused, 3);
	blobstore_remote_free(r);

	/* after the cool-down one call goes through to probe, and fails again */
	r = remote_to(dead, cl, 60000, 1, 1);
	bs = blobstore_remote_blobstore(r);
	assert_int_equal(find_missing(bs, &d, 1, &missing).code, CAIRN_UNAVAILABLE);
	for (int64_t until = cairn_now_ns() + 60000000000LL;
	     blobstore_remote_get_stats(r).calls < 2 && cairn_now_ns() < until;)
		assert_int_equal(find_missing(bs, &d, 1, &missing).code, CAIRN_UNAVAILABLE);
	assert_int_equal(blobstore_remote_get_stats(r).calls, 2);
	blobstore_remote_free(r);
}

/* blobstore_remote_reset closes an open breaker before its cool-down is over: the next call goes
 * to the peer again. */
static void reset_closes_the_breaker(void **state)
{
	(void)state;
	char dead[64];
	rpc_server *gone = start_server(hang, 1, dead, sizeof dead);
	rpc_server_stop(gone);
	blobstore_remote *r = remote_to(dead, cl, 60000, 2, 3600000);
	blobstore *bs = blobstore_remote_blobstore(r);
	cairn_digest d;
	cairn_digest_of("z", 1, &d);
	uint8_t missing;
	for (int i = 0; i < 3; i++) /* two calls open it, the third is refused */
		assert_int_equal(find_missing(bs, &d, 1, &missing).code, CAIRN_UNAVAILABLE);
	assert_int_equal(blobstore_remote_get_stats(r).refused, 1);
	blobstore_remote_reset(r);
	assert_int_equal(find_missing(bs, &d, 1, &missing).code, CAIRN_UNAVAILABLE);
	blobstore_remote_stats s = blobstore_remote_get_stats(r);
	assert_int_equal(s.calls, 3);
	assert_int_equal(s.refused, 1);
	blobstore_remote_free(r);
}

/* A probe that gets an answer closes the breaker: the calls after it go to the peer again, and it
 * takes threshold failures in a row to open it again. */
static void probe_closes_the_breaker(void **state)
{
	(void)state;
	char addr[64];
	rpc_server *s = start_server(flaky, 1, addr, sizeof addr);
	atomic_store(&flaky_calls, 0);
	atomic_store(&flaky_down, 1 << 0 | 1 << 1 | 1 << 3);
	blobstore_remote *r = remote_to(addr, cl, 60000, 2, 200);
	blobstore *bs = blobstore_remote_blobstore(r);
	cairn_digest d;
	cairn_digest_of("y", 1, &d);
	uint8_t missing;
	for (int i = 0; i < 2; i++) {
		cairn_status st = find_missing(bs, &d, 1, &missing);
		assert_int_equal(st.code, CAIRN_UNAVAILABLE);
		assert_non_null(strstr(st.msg, "down for maintenance"));
	}
	/* open: answered here until the cool-down is over, then the probe reaches the peer */
	cairn_status st;
	int64_t until = cairn_now_ns() + 60000000000LL;
	do
		st = find_missing(bs, &d, 1, &missing);
	while (st.code == CAIRN_UNAVAILABLE && atomic_load(&flaky_calls) == 2 && cairn_now_ns() < until);
	assert_int_equal(st.code, CAIRN_OK);
	assert_int_equal(missing, 0);
	st = find_missing(bs, &d, 1, &missing); /* one failure: the breaker stays closed */
	assert_int_equal(st.code, CAIRN_UNAVAILABLE);
	assert_non_null(strstr(st.msg, "down for maintenance"));
	for (int i = 0; i < 3; i++)
		assert_int_equal(find_missing(bs, &d, 1, &missing).code, CAIRN_OK);
	assert_int_equal(atomic_load(&flaky_calls), 7);
	assert_int_equal(blobstore_remote_get_stats(r).calls, 7);
	blobstore_remote_free(r);
	rpc_server_stop(s);
}

static void stalled_peer_deadline(void **state)
{
	(void)state;
	blobstore_remote *r = remote_to(stalled_target, cl, 200, 0, 0);
	blobstore *bs = blobstore_remote_blobstore(r);
	cairn_digest d;
	cairn_digest_of("stalled", 7, &d);
	uint8_t missing;
	cairn_status st = find_missing(bs, &d, 1, &missing);
	assert_int_equal(st.code, CAIRN_DEADLINE_EXCEEDED);
	assert_names(&st, stalled_target, NULL);
	blobstore_reader *rd;
	st = open_read(bs, &d, &rd);
	assert_int_equal(st.code, CAIRN_DEADLINE_EXCEEDED);
	assert_names(&st, stalled_target, &d);
	st = blobstore_put_sync(bs, &d, "stalled", 7);
	assert_int_equal(st.code, CAIRN_DEADLINE_EXCEEDED);
	assert_names(&st, stalled_target, &d);
	/* and the peer saw every call go */
	for (int i = 0; i < 12000 && atomic_load(&hanging) > 0; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&hanging), 0);
	blobstore_remote_free(r);
}

/* Stopping the rpc client ends every call in flight: each callback runs, CANCELLED. */
static void stop_client_with_calls_in_flight(void **state)
{
	(void)state;
	rpc_client *c2;
	assert_int_equal(rpc_client_start(NULL, &c2).code, CAIRN_OK);
	blobstore_remote *r = remote_to(stalled_target, c2, 600000, 0, 0);
	blobstore *bs = blobstore_remote_blobstore(r);
	cairn_digest d;
	cairn_digest_of("in flight", 9, &d);
	outcome fm, rd, wr;
	outcome_init(&fm);
	outcome_init(&rd);
	outcome_init(&wr);
	uint8_t missing;
	blobstore_find_missing(bs, &d, 1, &missing, on_done, &fm);
	blobstore_open_read(bs, &d, on_open, &rd);
	blobstore_writer *w;
	assert_int_equal(blobstore_open_write(bs, &d, &w).code, CAIRN_OK);
	blobstore_write(w, "in flight", 9, on_done, &wr);
	assert_int_equal(outcome_wait(&wr, 1, 120).code, CAIRN_OK);
	blobstore_commit(w, on_done, &wr);
	/* every call reached the peer and waits for it */
	for (int i = 0; i < 12000 && atomic_load(&hanging) < 3; i++)
		usleep(10000);
	assert_int_equal(atomic_load(&hanging), 3);
	rpc_client_stop(c2);
	assert_int_equal(outcome_wait(&fm, 1, 1).code, CAIRN_CANCELLED);
	assert_int_equal(outcome_wait(&rd, 1, 1).code, CAIRN_CANCELLED);
	assert_null(rd.rd);
	assert_int_equal(outcome_wait(&wr, 2, 1).code, CAIRN_CANCELLED);
	outcome_destroy(&fm);
	outcome_destroy(&rd);
	outcome_destroy(&wr);
	blobstore_remote_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(write_then_read_back),
	    cmocka_unit_test(read_ranges),
	    cmocka_unit_test(find_missing_mixed),
	    cmocka_unit_test(read_absent_is_not_found),
	    cmocka_unit_test(wrong_digest_refused_at_commit),
	    cmocka_unit_test(abort_leaves_nothing),
	    cmocka_unit_test(dead_peer_opens_the_breaker),
	    cmocka_unit_test(probe_closes_the_breaker),
	    cmocka_unit_test(reset_closes_the_breaker),
	    cmocka_unit_test(stalled_peer_deadline),
	    cmocka_unit_test(stop_client_with_calls_in_flight),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
