/* Unit tests of where a scheduler's runner offers a job (runner/remote.c with runner/locality.c):
 * the worker that holds most of the action's input bytes first, whatever its free slots, and the
 * order of free slots whenever that cannot be known in time.
 *
 * Each worker is a real rpc server on loopback serving what a worker's private port serves: the
 * gateway's CAS over an in-memory store, and the Run call over a fake local runner that takes every
 * job and reports it done from a thread of its own. A worker that never answers FindMissingBlobs
 * serves a handler that hangs instead of the CAS. The scheduler's CAS, where the runner reads the
 * Action and its input tree, is an in-memory store answering from threads of its own, which can
 * also hold its answer back. The test thread plays the queue and waits for what the runner reports,
 * with a deadline that only keeps a broken build from hanging the suite. */
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

#include "gateway/gateway.h"
#include "proto/reapi.h"
#include "rpc/rpc.h"
#include "runner/runner.h"
#include "tests/mem_store.h"
#include "tests/rpc_hang.h"

#define WAIT_S 120
#define BIG (256 << 10)
#define SMALL 300

/* ---- a worker's local runner: takes every job, done from a thread ------------------------------ */

typedef struct fake_local {
	runner r;
	atomic_int offers;
	pthread_mutex_t mu;
	pthread_t threads[8];
	int nthreads;
} fake_local;

typedef struct fake_job {
	const runner_callbacks *cb;
	void *arg;
} fake_job;

static void *fake_run(void *p)
{
	fake_job *j = p;
	j->cb->answered(j->arg, true);
	j->cb->started(j->arg);
	runner_outcome out = {.st = cairn_ok()};
	j->cb->done(j->arg, &out);
	free(j);
	return NULL;
}

static cairn_status fake_check(runner *r, const runner_property *props, size_t n)
{
	(void)r, (void)props, (void)n;
	return cairn_ok();
}

static void fake_offer(runner *r, const runner_job *job, _Atomic bool *cancel, const runner_callbacks *cb, void *arg)
{
	(void)job, (void)cancel;
	fake_local *f = (fake_local *)r;
	atomic_fetch_add(&f->offers, 1);
	fake_job *j = cairn_xcalloc(1, sizeof *j);
	*j = (fake_job){.cb = cb, .arg = arg};
	pthread_mutex_lock(&f->mu);
	assert_true(f->nthreads < 8);
	assert_int_equal(pthread_create(&f->threads[f->nthreads++], NULL, fake_run, j), 0);
	pthread_mutex_unlock(&f->mu);
}

static const runner_ops fake_ops = {.check = fake_check, .offer = fake_offer};

/* ---- workers ----------------------------------------------------------------------------------- */

typedef struct worker_fx {
	mem_store store;
	gateway *gw;
	fake_local f;
	rpc_server *s;
	char target[32];
} worker_fx;

static atomic_int asked_hanging; /* FindMissingBlobs calls the hanging worker received */

static void h_find_hang(rpc_call *call, void *svc)
{
	atomic_fetch_add(&asked_hanging, 1);
	h_hang(call, svc);
}

/* Starts a worker: its CAS serves store, or hangs on FindMissingBlobs if hang. */
static void worker_start(worker_fx *w, bool hang)
{
	w->f.r.ops = &fake_ops;
	pthread_mutex_init(&w->f.mu, NULL);
	rpc_method m[32];
	size_t n = 0;
	if (hang) {
		m[n++] = (rpc_method){"/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
		                      RPC_UNARY, h_find_hang, NULL};
	} else {
		gateway_config gc = {.cas = &w->store.bs, .ac_max_size = 1 << 20, .max_batch_size = 4 << 20,
		                     .max_upload_sessions = 16, .upload_idle_ns = 60000000000LL, .max_inline_size = 1 << 20};
		w->gw = gateway_new(&gc);
		n = gateway_methods(w->gw, m, 31);
	}
	n += runner_service_methods(&w->f.r, m + n, 32 - n);
	rpc_server_config cfg = {.address = "127.0.0.1:0", .threads = 2};
	assert_int_equal(rpc_server_start(&cfg, m, n, &w->s).code, CAIRN_OK);
	snprintf(w->target, sizeof w->target, "127.0.0.1:%d", rpc_server_port(w->s));
}

static void worker_stop(worker_fx *w)
{
	rpc_server_stop(w->s);
	for (int i = 0; i < w->f.nthreads; i++)
		pthread_join(w->f.threads[i], NULL);
	pthread_mutex_destroy(&w->f.mu);
	gateway_free(w->gw);
	mem_free(&w->store);
}

/* ---- the queue's side -------------------------------------------------------------------------- */

typedef struct caller {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool taken, done;
	cairn_status st;
	_Atomic bool cancel;
} caller;

static void c_answered(void *arg, bool taken)
{
	caller *c = arg;
	pthread_mutex_lock(&c->mu);
	c->taken = taken;
	c->done |= !taken;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void c_started(void *arg) { (void)arg; }

static void c_done(void *arg, const runner_outcome *out)
{
	caller *c = arg;
	pthread_mutex_lock(&c->mu);
	c->done = true;
	c->st = out->st;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static const runner_callbacks caller_cb = {.answered = c_answered, .started = c_started, .done = c_done};

/* ---- the fixture: the scheduler's CAS with an action's tree, two workers, the runner ------------- */

static mem_store cas;
static worker_fx wk[2];
static rpc_client *cl;
static runner_remote *rr;
static cairn_digest action, big, small;

/* Packs a message into the scheduler's CAS; its digest in *d. */
static void put_message(const ProtobufCMessage *m, cairn_digest *d)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len + 1);
	protobuf_c_message_pack(m, buf);
	cairn_digest_of(buf, len, d);
	add(&cas, d, buf);
	free(buf);
}

/* The action: small.txt at its root, big.bin in sub/. */
static void put_action(void)
{
	cairn_arena *a = cairn_arena_new(1024);
	Build__Bazel__Remote__Execution__V2__FileNode fbig = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT,
	                                              fsmall = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
	fbig.name = "big.bin";
	fbig.digest = reapi_digest_to_pb(a, &big);
	fsmall.name = "small.txt";
	fsmall.digest = reapi_digest_to_pb(a, &small);

	Build__Bazel__Remote__Execution__V2__FileNode *subfiles[] = {&fbig}, *rootfiles[] = {&fsmall};
	Build__Bazel__Remote__Execution__V2__Directory sub = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT,
	                                               root = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT;
	sub.files = subfiles;
	sub.n_files = 1;
	cairn_digest dsub, droot;
	put_message(&sub.base, &dsub);

	Build__Bazel__Remote__Execution__V2__DirectoryNode nsub = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY_NODE__INIT;
	nsub.name = "sub";
	nsub.digest = reapi_digest_to_pb(a, &dsub);
	Build__Bazel__Remote__Execution__V2__DirectoryNode *dirs[] = {&nsub};
	root.files = rootfiles;
	root.n_files = 1;
	root.directories = dirs;
	root.n_directories = 1;
	put_message(&root.base, &droot);

	Build__Bazel__Remote__Execution__V2__Action act = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION__INIT;
	act.input_root_digest = reapi_digest_to_pb(a, &droot);
	put_message(&act.base, &action);
	cairn_arena_free(a);
}

static int setup(void **state)
{
	(void)state;
	memset(wk, 0, sizeof wk);
	mem_init(&cas, true);
	mem_init(&wk[0].store, false);
	mem_init(&wk[1].store, false);
	uint8_t *b = pattern(BIG, 1), *s = pattern(SMALL, 2);
	cairn_digest_of(b, BIG, &big);
	cairn_digest_of(s, SMALL, &small);
	add(&wk[0].store, &big, b);   /* worker 0 holds the big input */
	add(&wk[1].store, &small, s); /* worker 1 the small one */
	free(b);
	free(s);
	put_action();
	atomic_store(&asked_hanging, 0);
	assert_int_equal(rpc_client_start(NULL, &cl).code, CAIRN_OK);
	runner_remote_config rc = {.client = cl, .cas = &cas.bs, .answer_timeout_ms = 30000, .locality_timeout_ms = 1000};
	assert_int_equal(runner_remote_new(&rc, &rr).code, CAIRN_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	runner_remote_stop(rr);
	rpc_client_stop(cl);
	for (int i = 0; i < 2; i++)
		worker_stop(&wk[i]);
	runner_remote_free(rr); /* after the CAS's late answers */
	mem_free(&cas);
	return 0;
}

/* The view: each worker with one pool of 4 slots, free0 and free1 of them free. */
static void view(uint32_t free0, uint32_t free1)
{
	runner_remote_pool p0 = {.properties = "", .total = 4, .free = free0},
	                   p1 = {.properties = "", .total = 4, .free = free1};
	runner_remote_worker w[2] = {{.id = "w0", .target = wk[0].target, .pools = &p0, .npools = 1},
	                             {.id = "w1", .target = wk[1].target, .pools = &p1, .npools = 1}};
	runner_remote_set_workers(rr, w, 2);
}

/* Offers the action and waits until it is done; true if it was taken. */
static bool run_job(void)
{
	caller c = {0};
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	runner_job job = {.action = action};
	runner_offer(runner_remote_runner(rr), &job, &c.cancel, &caller_cb, &c);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_S;
	pthread_mutex_lock(&c.mu);
	while (!c.done && pthread_cond_timedwait(&c.cv, &c.mu, &until) == 0)
		;
	bool done = c.done, taken = c.taken;
	pthread_mutex_unlock(&c.mu);
	assert_true(done);
	if (taken)
		assert_int_equal(c.st.code, CAIRN_OK);
	pthread_cond_destroy(&c.cv);
	pthread_mutex_destroy(&c.mu);
	return taken;
}

/* ---- cases ------------------------------------------------------------------------------------- */

/* Worker 1 has more free slots, but worker 0 holds the big input (in a subdirectory): it gets the job. */
static void the_worker_holding_the_largest_input_gets_the_job(void **state)
{
	(void)state;
	worker_start(&wk[0], false);
	worker_start(&wk[1], false);
	view(1, 4);
	assert_true(run_job());
	assert_int_equal(atomic_load(&wk[0].f.offers), 1);
	assert_int_equal(atomic_load(&wk[1].f.offers), 0);
}

/* The same the other way round: worker 1 holds the big input and has fewer free slots. */
static void the_choice_follows_the_bytes(void **state)
{
	(void)state;
	mem_store swap = wk[0].store;
	wk[0].store = wk[1].store;
	wk[1].store = swap;
	worker_start(&wk[0], false);
	worker_start(&wk[1], false);
	view(4, 1);
	assert_true(run_job());
	assert_int_equal(atomic_load(&wk[0].f.offers), 0);
	assert_int_equal(atomic_load(&wk[1].f.offers), 1);
}

/* Worker 1 never answers FindMissingBlobs: it counts as holding nothing, and the job is offered to
 * worker 0 (which holds the big input) once the look-up's deadline passes, without waiting on it. */
static void a_worker_that_does_not_answer_holds_nothing(void **state)
{
	(void)state;
	worker_start(&wk[0], false);
	worker_start(&wk[1], true);
	view(1, 4);
	assert_true(run_job());
	assert_true(atomic_load(&asked_hanging) >= 1);
	assert_int_equal(atomic_load(&wk[0].f.offers), 1);
	assert_int_equal(atomic_load(&wk[1].f.offers), 0);
}

/* Once silent, the hanging worker is not asked again for a while: the next offer asks only worker 0
 * (which holds the big input, and gets the job again), so it does not wait for the deadline. */
static void a_silent_worker_is_not_asked_again_at_once(void **state)
{
	(void)state;
	worker_start(&wk[0], false);
	worker_start(&wk[1], true);
	view(1, 4);
	assert_true(run_job());
	int asked = atomic_load(&asked_hanging);
	assert_true(asked >= 1);
	assert_true(run_job());
	assert_int_equal(atomic_load(&asked_hanging), asked);
	assert_int_equal(atomic_load(&wk[0].f.offers), 2);
	assert_int_equal(atomic_load(&wk[1].f.offers), 0);
}

/* The scheduler's CAS holds back the Action: at the deadline the job goes, in the order of free
 * slots (worker 1), and the CAS's late answer is heard before the runner is freed. */
static void a_cas_that_does_not_answer_leaves_the_order_of_free_slots(void **state)
{
	(void)state;
	worker_start(&wk[0], false);
	worker_start(&wk[1], false);
	view(1, 4);
	cas.hold = true;
	assert_true(run_job());
	assert_int_equal(atomic_load(&wk[0].f.offers), 0);
	assert_int_equal(atomic_load(&wk[1].f.offers), 1);
	mem_release(&cas);
}

/* An action the CAS lacks: the look-up knows nothing, and the order of free slots holds. */
static void an_action_not_in_the_cas_leaves_the_order_of_free_slots(void **state)
{
	(void)state;
	worker_start(&wk[0], false);
	worker_start(&wk[1], false);
	view(1, 4);
	action.hash[0] ^= 1;
	assert_true(run_job());
	assert_int_equal(atomic_load(&wk[0].f.offers), 0);
	assert_int_equal(atomic_load(&wk[1].f.offers), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(the_worker_holding_the_largest_input_gets_the_job, setup, teardown),
	    cmocka_unit_test_setup_teardown(the_choice_follows_the_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_worker_that_does_not_answer_holds_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_silent_worker_is_not_asked_again_at_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_cas_that_does_not_answer_leaves_the_order_of_free_slots, setup, teardown),
	    cmocka_unit_test_setup_teardown(an_action_not_in_the_cas_leaves_the_order_of_free_slots, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
