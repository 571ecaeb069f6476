/* Unit tests of the action cache shared between schedulers (gateway/ac_peers.c, the calling side,
 * and gateway/ac_peer_service.c, the peer service) against real peers on loopback, in this
 * process: gateways whose own action cache is served by gateway_ac_peer_methods, a peer whose
 * handlers never answer (a stalled scheduler) and a port nobody listens on (a dead one). The
 * owners the tests expect are computed with the shared ranking (cairn_rendezvous_rank), the one
 * every scheduler uses. Callbacks run on the rpc client's pollers; the test thread waits for them
 * with a deadline that only keeps a broken build from hanging the suite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "cairn/ac_peer.pb-c.h"
#include "gateway/gateway.h"
#include "proto/reapi.h"
#include "rpc/rpc.h"
#include "tests/mem_store.h"
#include "tests/rpc_hang.h"

#define NPEERS 3
#define WAIT_NS (20 * 1000000000LL) /* only a broken build waits this long */

static gateway *gw[NPEERS];
static rpc_server *srv[NPEERS], *stalled;
static rpc_client *cl;
static char target[NPEERS][64], stalled_target[64], dead_target[64];
static const char *ids[NPEERS] = {"sched-a", "sched-b", "sched-c"};

static const rpc_method hang[] = {
    {"/cairn.v1.ActionCachePeer/Get", RPC_UNARY, h_hang, NULL},
    {"/cairn.v1.ActionCachePeer/Put", RPC_UNARY, h_hang, NULL},
};

static rpc_server *start_server(const rpc_method *m, size_t n, char *addr, size_t cap)
{
	rpc_server *s;
	rpc_server_config cfg = {.address = "127.0.0.1:0", .threads = 2};
	assert_int_equal(rpc_server_start(&cfg, m, n, &s).code, CAIRN_OK);
	snprintf(addr, cap, "127.0.0.1:%d", rpc_server_port(s));
	return s;
}

static int setup(void **state)
{
	(void)state;
	for (int i = 0; i < NPEERS; i++) {
		gateway_config gc = {.ac_max_size = 1 << 20, .max_upload_sessions = 1, .upload_idle_ns = 1000000000LL};
		gw[i] = gateway_new(&gc);
		rpc_method m[4];
		size_t n = gateway_ac_peer_methods(gw[i], m, 4);
		srv[i] = start_server(m, n, target[i], sizeof target[i]);
	}
	stalled = start_server(hang, 2, stalled_target, sizeof stalled_target);
	/* a port that was bound a moment ago and is free now: nobody answers there */
	rpc_server *gone = start_server(hang, 2, dead_target, sizeof dead_target);
	rpc_server_stop(gone);
	assert_int_equal(rpc_client_start(NULL, &cl).code, CAIRN_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rpc_client_stop(cl);
	rpc_server_stop(stalled);
	for (int i = 0; i < NPEERS; i++) {
		rpc_server_stop(srv[i]);
		gateway_free(gw[i]);
	}
	return 0;
}

/* ---- entries ---- */

static cairn_digest action_of(const char *test, int i)
{
	char s[64];
	snprintf(s, sizeof s, "%s-action-%d", test, i);
	cairn_digest d;
	cairn_digest_of(s, strlen(s), &d);
	return d;
}

/* A packed ActionResult whose exit code tells entries apart. */
static size_t result_of(int i, uint8_t *buf, size_t cap)
{
	Build__Bazel__Remote__Execution__V2__ActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
	ar.exit_code = i + 1;
	size_t n = protobuf_c_message_get_packed_size(&ar.base);
	assert_true(n <= cap);
	return protobuf_c_message_pack(&ar.base, buf);
}

/* The indices into ids[] of the k schedulers that own d among the first n of ids[]. */
static size_t expected_owners(const cairn_digest *d, size_t n, size_t k, size_t *out)
{
	cairn_rendezvous_member m[NPEERS];
	for (size_t i = 0; i < n; i++)
		m[i] = (cairn_rendezvous_member){.key = cairn_rendezvous_key(ids[i]), .id = ids[i]};
	uint64_t scores[NPEERS];
	return cairn_rendezvous_rank(m, n, d, k, out, scores);
}

static int64_t deadline(void) { return cairn_now_ns() + WAIT_NS; }

static bool held_by(int peer, const char *instance, const cairn_digest *d)
{
	uint8_t *data;
	size_t len;
	bool held = gateway_ac_get_local(gw[peer], instance, d, &data, &len);
	free(data);
	return held;
}

/* ---- a lookup, waited for ---- */

typedef struct reply {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	cairn_status st;
	uint8_t *data;
	size_t len;
} reply;

static void answered(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	reply *a = arg;
	pthread_mutex_lock(&a->mu);
	a->st = st;
	a->data = data;
	a->len = len;
	a->done = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* Looks d up through the backing; the answer's data is the caller's to free. */
static reply lookup(gateway_ac_backing k, const char *instance, const cairn_digest *d)
{
	reply a = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	k.get(k.ctx, instance, d, answered, &a);
	int64_t end = deadline();
	pthread_mutex_lock(&a.mu);
	while (!a.done && cairn_now_ns() < end) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&a.cv, &a.mu, &ts);
	}
	pthread_mutex_unlock(&a.mu);
	assert_true(a.done);
	return a;
}

static int result_exit_code(const reply *a)
{
	Build__Bazel__Remote__Execution__V2__ActionResult *ar =
	    build__bazel__remote__execution__v2__action_result__unpack(NULL, a->len, a->data);
	assert_non_null(ar);
	int code = ar->exit_code;
	build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
	return code;
}

/* ---- a `next` backing in memory: one entry, and what it was given ---- */

typedef struct fake_next {
	cairn_digest has;
	uint8_t result[64];
	size_t len;
	atomic_int puts, gets;
} fake_next;

static void next_put(void *ctx, const char *instance, const cairn_digest *action, const void *data, size_t len)
{
	(void)instance, (void)action, (void)data, (void)len;
	fake_next *f = ctx;
	atomic_fetch_add(&f->puts, 1);
}

static void next_get(void *ctx, const char *instance, const cairn_digest *action,
                     void (*cb)(void *arg, cairn_status st, uint8_t *data, size_t len), void *arg)
{
	(void)instance;
	fake_next *f = ctx;
	atomic_fetch_add(&f->gets, 1);
	if (!cairn_digest_eq(action, &f->has))
		return cb(arg, cairn_err(CAIRN_NOT_FOUND, "not in the fake"), NULL, 0);
	uint8_t *data = cairn_xmalloc(f->len);
	memcpy(data, f->result, f->len);
	cb(arg, cairn_ok(), data, f->len);
}

static gateway_ac_peers *peers_new(fake_next *next, int64_t timeout_ms, int threshold)
{
	gateway_ac_peers_config cfg = {.client = cl, .timeout_ms = timeout_ms, .failure_threshold = threshold};
	if (next)
		cfg.next = (gateway_ac_backing){.ctx = next, .put = next_put, .get = next_get};
	gateway_ac_peers *p;
	assert_int_equal(gateway_ac_peers_new(&cfg, &p).code, CAIRN_OK);
	return p;
}

/* As a scheduler does at its end: the client stops (the calls in flight end), then the peers go. */
static void peers_free(gateway_ac_peers *p)
{
	rpc_client_stop(cl);
	gateway_ac_peers_free(p);
	assert_int_equal(rpc_client_start(NULL, &cl).code, CAIRN_OK);
}

/* ---- tests ---- */

/* Three schedulers, none of them this one: each entry goes to the two that rank highest for its
 * action, and to no other. */
static void put_reaches_the_two_owners_only(void **state)
{
	(void)state;
	fake_next next = {0};
	gateway_ac_peers *p = peers_new(&next, 0, 0);
	gateway_ac_peer m[NPEERS];
	for (int i = 0; i < NPEERS; i++)
		m[i] = (gateway_ac_peer){.id = ids[i], .target = target[i]};
	gateway_ac_peers_set(p, m, NPEERS);
	gateway_ac_backing k = gateway_ac_peers_backing(p);
	enum { N = 24 };
	int owned[NPEERS] = {0};
	for (int i = 0; i < N; i++) {
		cairn_digest d = action_of("two-owners", i);
		uint8_t buf[64];
		k.put(k.ctx, "inst", &d, buf, result_of(i, buf, sizeof buf));
	}
	for (int i = 0; i < N; i++) {
		cairn_digest d = action_of("two-owners", i);
		size_t own[2];
		assert_int_equal(expected_owners(&d, NPEERS, 2, own), 2);
		int64_t end = deadline();
		while (!(held_by((int)own[0], "inst", &d) && held_by((int)own[1], "inst", &d)) && cairn_now_ns() < end)
			nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
		assert_true(held_by((int)own[0], "inst", &d) && held_by((int)own[1], "inst", &d));
		owned[own[0]]++;
		owned[own[1]]++;
	}
	gateway_ac_peers_stats s = gateway_ac_peers_get_stats(p);
	assert_int_equal(s.puts, 2 * N); /* exactly one call per owner: none went to the third */
	for (int i = 0; i < N; i++) {
		cairn_digest d = action_of("two-owners", i);
		size_t own[2];
		expected_owners(&d, NPEERS, 2, own);
		int third = 3 - (int)own[0] - (int)own[1];
		assert_false(held_by(third, "inst", &d));
		assert_false(held_by((int)own[0], "other-instance", &d));
	}
	for (int i = 0; i < NPEERS; i++)
		assert_true(owned[i] > 0 && owned[i] < N); /* the ranking spreads the entries */
	assert_int_equal(atomic_load(&next.puts), N); /* and every entry goes on to next */
	peers_free(p);
}

/* This scheduler is one of three: where it owns an entry it keeps it itself (the gateway stored it
 * already), and only the other owner is sent it. */
static void put_skips_this_scheduler(void **state)
{
	(void)state;
	gateway_ac_peers *p = peers_new(NULL, 0, 0);
	gateway_ac_peer m[NPEERS] = {{.id = ids[0], .target = NULL}, {.id = ids[1], .target = target[1]},
	                             {.id = ids[2], .target = target[2]}};
	gateway_ac_peers_set(p, m, NPEERS);
	gateway_ac_backing k = gateway_ac_peers_backing(p);
	enum { N = 24 };
	int expected_calls = 0;
	for (int i = 0; i < N; i++) {
		cairn_digest d = action_of("self", i);
		uint8_t buf[64];
		k.put(k.ctx, "", &d, buf, result_of(i, buf, sizeof buf));
		size_t own[2];
		expected_owners(&d, NPEERS, 2, own);
		expected_calls += (own[0] != 0) + (own[1] != 0);
	}
	for (int i = 0; i < N; i++) {
		cairn_digest d = action_of("self", i);
		size_t own[2];
		expected_owners(&d, NPEERS, 2, own);
		for (int j = 0; j < 2; j++) {
			if (own[j] == 0)
				continue;
			int64_t end = deadline();
			while (!held_by((int)own[j], "", &d) && cairn_now_ns() < end)
				nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
			assert_true(held_by((int)own[j], "", &d));
		}
		assert_false(held_by(0, "", &d)); /* the decorator never stores here: the gateway does */
	}
	assert_int_equal(gateway_ac_peers_get_stats(p).puts, expected_calls);
	assert_true(expected_calls < 2 * N);
	peers_free(p);
}

/* A lookup asks the owners in rank order, then next: an entry held by the second owner only, one
 * held by next only, and one held nowhere. */
static void get_falls_back_through_owners_then_next(void **state)
{
	(void)state;
	fake_next next = {0};
	gateway_ac_peers *p = peers_new(&next, 0, 0);
	gateway_ac_peer m[2] = {{.id = ids[0], .target = target[0]}, {.id = ids[1], .target = target[1]}};
	gateway_ac_peers_set(p, m, 2);
	gateway_ac_backing k = gateway_ac_peers_backing(p);

	cairn_digest d = action_of("fallback", 0);
	size_t own[2];
	expected_owners(&d, 2, 2, own);
	uint8_t buf[64];
	size_t n = result_of(41, buf, sizeof buf);
	assert_int_equal(gateway_ac_put_local(gw[own[1]], "i", &d, buf, n).code, CAIRN_OK);
	reply a = lookup(k, "i", &d);
	assert_int_equal(a.st.code, CAIRN_OK);
	assert_int_equal(result_exit_code(&a), 42);
	free(a.data);
	assert_int_equal(gateway_ac_peers_get_stats(p).gets, 2); /* the first owner was asked first */
	assert_int_equal(atomic_load(&next.gets), 0);

	cairn_digest e = action_of("fallback", 1);
	next.has = e;
	next.len = result_of(6, next.result, sizeof next.result);
	a = lookup(k, "i", &e);
	assert_int_equal(a.st.code, CAIRN_OK);
	assert_int_equal(result_exit_code(&a), 7);
	free(a.data);
	assert_int_equal(gateway_ac_peers_get_stats(p).gets, 4);
	assert_int_equal(atomic_load(&next.gets), 1);

	cairn_digest f = action_of("fallback", 2);
	a = lookup(k, "i", &f);
	assert_int_equal(a.st.code, CAIRN_NOT_FOUND);
	assert_null(a.data);
	assert_int_equal(atomic_load(&next.gets), 2);

	/* the instance name is part of the key */
	a = lookup(k, "j", &d);
	assert_int_equal(a.st.code, CAIRN_NOT_FOUND);
	peers_free(p);
}

/* Without next a lookup that no owner answers is NOT_FOUND; with no scheduler at all, too. */
static void get_without_next_or_peers(void **state)
{
	(void)state;
	gateway_ac_peers *p = peers_new(NULL, 0, 0);
	gateway_ac_backing k = gateway_ac_peers_backing(p);
	cairn_digest d = action_of("none", 0);
	reply a = lookup(k, "", &d);
	assert_int_equal(a.st.code, CAIRN_NOT_FOUND);
	gateway_ac_peer self = {.id = ids[0], .target = NULL};
	gateway_ac_peers_set(p, &self, 1);
	a = lookup(k, "", &d);
	assert_int_equal(a.st.code, CAIRN_NOT_FOUND);
	assert_int_equal(gateway_ac_peers_get_stats(p).gets, 0); /* this scheduler is never called */
	uint8_t buf[64];
	k.put(k.ctx, "", &d, buf, result_of(0, buf, sizeof buf));
	assert_int_equal(gateway_ac_peers_get_stats(p).puts, 0);
	peers_free(p);
}

/* The first owner is a stalled scheduler, then a dead one: the lookup gives it up at its deadline
 * and finds the entry on the second owner; once its breaker is open the stalled peer is skipped
 * without a call. */
static void dead_or_stalled_owner_is_skipped(void **state)
{
	(void)state;
	const char *bad[2] = {stalled_target, dead_target};
	for (int b = 0; b < 2; b++) {
		gateway_ac_peers *p = peers_new(NULL, 300, 1);
		gateway_ac_backing k = gateway_ac_peers_backing(p);
		cairn_digest d = action_of(b ? "dead" : "stalled", 0);
		size_t own[2];
		expected_owners(&d, 2, 2, own);
		/* the id that ranks first is the bad peer's */
		gateway_ac_peer m[2] = {{.id = ids[own[0]], .target = bad[b]}, {.id = ids[own[1]], .target = target[2]}};
		gateway_ac_peers_set(p, m, 2);
		uint8_t buf[64];
		size_t n = result_of(b, buf, sizeof buf);
		assert_int_equal(gateway_ac_put_local(gw[2], "", &d, buf, n).code, CAIRN_OK);

		reply a = lookup(k, "", &d);
		assert_int_equal(a.st.code, CAIRN_OK);
		assert_int_equal(result_exit_code(&a), b + 1);
		free(a.data);
		gateway_ac_peers_stats s = gateway_ac_peers_get_stats(p);
		assert_int_equal(s.gets, 2);
		assert_int_equal(s.skipped, 0);

		/* the breaker (threshold 1) is open now: the bad peer is not called again */
		a = lookup(k, "", &d);
		assert_int_equal(a.st.code, CAIRN_OK);
		free(a.data);
		s = gateway_ac_peers_get_stats(p);
		assert_int_equal(s.gets, 3);
		assert_int_equal(s.skipped, 1);
		/* a put skips it too, and still reaches the live owner */
		k.put(k.ctx, "", &d, buf, n);
		s = gateway_ac_peers_get_stats(p);
		assert_int_equal(s.puts, 1);
		assert_int_equal(s.skipped, 2);
		peers_free(p);
	}
}

/* The peer service: Get of an absent entry is NOT_FOUND, a Put that is not an ActionResult is
 * refused, a Put then a Get round-trips, all on the receiving gateway's own entries. */
static void peer_service_answers(void **state)
{
	(void)state;
	rpc_channel *ch;
	assert_int_equal(rpc_channel_open(target[0], 0, &ch).code, CAIRN_OK);
	cairn_digest d = action_of("service", 0);
	cairn_arena *a = cairn_arena_new(256);
	Cairn__V1__GetEntryRequest get = CAIRN__V1__GET_ENTRY_REQUEST__INIT;
	get.instance_name = "x";
	get.action_digest = reapi_digest_to_pb(a, &d);
	ProtobufCMessage *resp = NULL;
	cairn_status st = rpc_unary(ch, "/cairn.v1.ActionCachePeer/Get", &get.base,
	                            &cairn__v1__get_entry_response__descriptor, &resp, 5000);
	assert_int_equal(st.code, CAIRN_NOT_FOUND);

	Cairn__V1__PutEntryRequest put = CAIRN__V1__PUT_ENTRY_REQUEST__INIT;
	put.instance_name = "x";
	put.action_digest = get.action_digest;
	uint8_t junk[] = {0x0a, 0x05, 'a'}; /* a field that claims 5 bytes and holds 1 */
	put.action_result = (ProtobufCBinaryData){.len = sizeof junk, .data = junk};
	st = rpc_unary(ch, "/cairn.v1.ActionCachePeer/Put", &put.base, &cairn__v1__put_entry_response__descriptor, &resp,
	               5000);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_false(held_by(0, "x", &d));

	put.action_digest = NULL;
	st = rpc_unary(ch, "/cairn.v1.ActionCachePeer/Put", &put.base, &cairn__v1__put_entry_response__descriptor, &resp,
	               5000);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);

	uint8_t buf[64];
	put.action_digest = get.action_digest;
	put.action_result = (ProtobufCBinaryData){.len = result_of(8, buf, sizeof buf), .data = buf};
	st = rpc_unary(ch, "/cairn.v1.ActionCachePeer/Put", &put.base, &cairn__v1__put_entry_response__descriptor, &resp,
	               5000);
	assert_int_equal(st.code, CAIRN_OK);
	protobuf_c_message_free_unpacked(resp, NULL);
	assert_true(held_by(0, "x", &d));
	st = rpc_unary(ch, "/cairn.v1.ActionCachePeer/Get", &get.base, &cairn__v1__get_entry_response__descriptor, &resp,
	               5000);
	assert_int_equal(st.code, CAIRN_OK);
	Cairn__V1__GetEntryResponse *r = (Cairn__V1__GetEntryResponse *)resp;
	assert_int_equal(r->action_result.len, put.action_result.len);
	assert_memory_equal(r->action_result.data, buf, r->action_result.len);
	protobuf_c_message_free_unpacked(resp, NULL);
	cairn_arena_free(a);
	rpc_channel_close(ch);
}

/* A GetActionResult through a gateway whose action cache is backed by the peers: an entry found on
 * a peer is returned only once every blob it names is in this gateway's CAS (else NOT_FOUND, and it
 * is not kept), and then kept in memory; an UpdateActionResult reaches the peer owner. */
static void peer_hit_is_checked_for_completeness(void **state)
{
	(void)state;
	mem_store cas;
	mem_init(&cas, false);
	gateway_ac_peers *p = peers_new(NULL, 0, 0);
	gateway_ac_peer m[2] = {{.id = "this-one", .target = NULL}, {.id = ids[0], .target = target[0]}};
	gateway_ac_peers_set(p, m, 2); /* two schedulers: both own every entry */
	gateway_config gc = {.cas = &cas.bs, .ac_max_size = 1 << 20, .max_upload_sessions = 1,
	                     .upload_idle_ns = 1000000000LL, .max_inline_size = 1 << 20,
	                     .ac_backing = gateway_ac_peers_backing(p)};
	gateway *g = gateway_new(&gc);
	rpc_method methods[32];
	char addr[64];
	rpc_server *s = start_server(methods, gateway_methods(g, methods, 32), addr, sizeof addr);
	rpc_channel *ch;
	assert_int_equal(rpc_channel_open(addr, 0, &ch).code, CAIRN_OK);

	const char out[] = "the output";
	cairn_digest od;
	cairn_digest_of(out, sizeof out - 1, &od);
	cairn_arena *a = cairn_arena_new(1024);
	Build__Bazel__Remote__Execution__V2__OutputFile of = BUILD__BAZEL__REMOTE__EXECUTION__V2__OUTPUT_FILE__INIT;
	of.path = "out";
	of.digest = reapi_digest_to_pb(a, &od);
	Build__Bazel__Remote__Execution__V2__OutputFile *ofs[1] = {&of};
	Build__Bazel__Remote__Execution__V2__ActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
	ar.exit_code = 3;
	ar.n_output_files = 1;
	ar.output_files = ofs;
	uint8_t buf[256];
	size_t n = protobuf_c_message_pack(&ar.base, buf);
	cairn_digest d = action_of("complete", 0);
	assert_int_equal(gateway_ac_put_local(gw[0], "", &d, buf, n).code, CAIRN_OK);

	Build__Bazel__Remote__Execution__V2__GetActionResultRequest get =
	    BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
	get.action_digest = reapi_digest_to_pb(a, &d);
	const char *method = "/build.bazel.remote.execution.v2.ActionCache/GetActionResult";
	ProtobufCMessage *resp = NULL;
	cairn_status st =
	    rpc_unary(ch, method, &get.base, &build__bazel__remote__execution__v2__action_result__descriptor, &resp, 5000);
	assert_int_equal(st.code, CAIRN_NOT_FOUND); /* its output is not in this CAS */
	assert_false(gateway_ac_get_local(g, "", &d, &(uint8_t *){NULL}, &(size_t){0}));

	add(&cas, &od, out);
	st = rpc_unary(ch, method, &get.base, &build__bazel__remote__execution__v2__action_result__descriptor, &resp, 5000);
	assert_int_equal(st.code, CAIRN_OK);
	assert_int_equal(((Build__Bazel__Remote__Execution__V2__ActionResult *)resp)->exit_code, 3);
	protobuf_c_message_free_unpacked(resp, NULL);
	uint8_t *kept = NULL;
	size_t kept_len;
	assert_true(gateway_ac_get_local(g, "", &d, &kept, &kept_len)); /* kept here now */
	free(kept);

	/* an update goes to the peer owner too */
	cairn_digest e = action_of("complete", 1);
	Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest up =
	    BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
	up.action_digest = reapi_digest_to_pb(a, &e);
	up.action_result = &ar;
	st = rpc_unary(ch, "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult", &up.base,
	               &build__bazel__remote__execution__v2__action_result__descriptor, &resp, 5000);
	assert_int_equal(st.code, CAIRN_OK);
	protobuf_c_message_free_unpacked(resp, NULL);
	int64_t end = deadline();
	while (!held_by(0, "", &e) && cairn_now_ns() < end)
		nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	assert_true(held_by(0, "", &e));

	cairn_arena_free(a);
	rpc_channel_close(ch);
	rpc_server_stop(s);
	gateway_free(g);
	peers_free(p);
	mem_free(&cas);
}

static void config_is_checked(void **state)
{
	(void)state;
	gateway_ac_peers *p;
	assert_int_equal(gateway_ac_peers_new(&(gateway_ac_peers_config){0}, &p).code, CAIRN_INVALID_ARGUMENT);
	assert_int_equal(gateway_ac_peers_new(&(gateway_ac_peers_config){.client = cl, .owners = -1}, &p).code,
	                 CAIRN_INVALID_ARGUMENT);
	assert_int_equal(gateway_ac_peers_new(&(gateway_ac_peers_config){.client = cl, .timeout_ms = -1}, &p).code,
	                 CAIRN_INVALID_ARGUMENT);
	gateway_ac_peers_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_reaches_the_two_owners_only),
		cmocka_unit_test(put_skips_this_scheduler),
		cmocka_unit_test(get_falls_back_through_owners_then_next),
		cmocka_unit_test(get_without_next_or_peers),
		cmocka_unit_test(dead_or_stalled_owner_is_skipped),
		cmocka_unit_test(peer_service_answers),
		cmocka_unit_test(peer_hit_is_checked_for_completeness),
		cmocka_unit_test(config_is_checked),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
