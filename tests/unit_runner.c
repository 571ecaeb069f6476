/* Unit tests of the Run call end to end: a scheduler's runner (runner/remote.c) offering jobs to
 * workers that are real rpc servers on loopback serving the worker's side (runner/serve.c) over a
 * fake local runner. The fake answers full, or takes a job and reports started and done with a
 * given outcome from a thread of its own, or takes it and waits until its cancel flag turns true, or
 * never answers until the call is cancelled. The test thread plays the queue: it waits for what the
 * runner reports through its callbacks, on condition variables whose deadline only keeps a broken
 * build from hanging. */
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

#include "cairn/worker.pb-c.h"
#include "proto/reapi.h"
#include "rpc/rpc.h"
#include "runner/runner.h"

#define WAIT_S 120
#define NWORKERS 3

/* Waits (mu held) until cond holds; fails the test only when the deadline passes first. */
#define WAIT_UNTIL(mu, cv, cond)                                                                                \
	do {                                                                                                        \
		struct timespec until_;                                                                                 \
		clock_gettime(CLOCK_REALTIME, &until_);                                                                 \
		until_.tv_sec += WAIT_S;                                                                                \
		int rc_ = 0;                                                                                            \
		while (!(cond) && rc_ == 0)                                                                             \
			rc_ = pthread_cond_timedwait(cv, mu, &until_);                                                      \
		bool met_ = (cond);                                                                                     \
		pthread_mutex_unlock(mu);                                                                               \
		assert_true(met_);                                                                                      \
		pthread_mutex_lock(mu);                                                                                 \
	} while (0)

/* ---- a worker's local runner ------------------------------------------------------------------ */

enum fake_mode {
	FAKE_FULL,         /* refuses every offer, inside the offer */
	FAKE_RUN,          /* takes, then reports started and done with `out` */
	FAKE_UNTIL_CANCEL, /* takes, reports started, then done CANCELLED once its cancel flag is true */
	FAKE_SILENT,       /* answers nothing until its cancel flag is true, then refuses */
};

typedef struct fake_local {
	runner r;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum fake_mode mode;
	runner_outcome out;
	int offers;
	int cancels; /* jobs that saw their cancel flag turn true */
	cairn_digest action;
	char pool[32]; /* the first property's value, as the worker received it */
	pthread_t threads[256];
	int nthreads;
} fake_local;

typedef struct fake_job {
	fake_local *f;
	enum fake_mode mode;
	_Atomic bool *cancel;
	const runner_callbacks *cb;
	void *arg;
} fake_job;

/* Set by the teardown: jobs that never saw their cancel stop waiting, so that a failed case ends. */
static _Atomic bool giving_up;

static void wait_cancel(fake_job *j)
{
	while (!atomic_load(j->cancel) && !atomic_load(&giving_up))
		usleep(2000);
	if (!atomic_load(j->cancel))
		return;
	pthread_mutex_lock(&j->f->mu);
	j->f->cancels++;
	pthread_cond_broadcast(&j->f->cv);
	pthread_mutex_unlock(&j->f->mu);
}

static void *fake_thread(void *p)
{
	fake_job *j = p;
	if (j->mode == FAKE_SILENT) {
		wait_cancel(j);
		j->cb->answered(j->arg, false);
		free(j);
		return NULL;
	}
	j->cb->answered(j->arg, true);
	j->cb->started(j->arg);
	if (j->mode == FAKE_RUN) {
		j->cb->done(j->arg, &j->f->out);
	} else {
		wait_cancel(j);
		runner_outcome out = {.st = cairn_err(CAIRN_CANCELLED, "stopped")};
		j->cb->done(j->arg, &out);
	}
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
	fake_local *f = (fake_local *)r;
	pthread_mutex_lock(&f->mu);
	f->offers++;
	f->action = job->action;
	snprintf(f->pool, sizeof f->pool, "%s", job->nprops ? job->props[0].value : "");
	enum fake_mode mode = f->mode;
	pthread_cond_broadcast(&f->cv);
	if (mode == FAKE_FULL) {
		pthread_mutex_unlock(&f->mu);
		cb->answered(arg, false);
		return;
	}
	fake_job *j = cairn_xcalloc(1, sizeof *j);
	*j = (fake_job){.f = f, .mode = mode, .cancel = cancel, .cb = cb, .arg = arg};
	assert_true(f->nthreads < 256);
	assert_int_equal(pthread_create(&f->threads[f->nthreads++], NULL, fake_thread, j), 0);
	pthread_mutex_unlock(&f->mu);
}

static const runner_ops fake_ops = {.check = fake_check, .offer = fake_offer};

/* ---- the queue's side ------------------------------------------------------------------------- */

typedef struct caller {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int answered, started, done;
	int ended; /* calls made by the test itself that ended */
	bool taken;
	bool out_of_order; /* started before taken, or done before started */
	cairn_status st;
	uint8_t result[64];
	size_t result_len;
	bool cacheable, lost;
	cairn_digest missing[4];
	size_t nmissing;
	_Atomic bool cancel;
} caller;

static void c_answered(void *arg, bool taken)
{
	caller *c = arg;
	pthread_mutex_lock(&c->mu);
	c->answered++;
	c->taken = taken;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void c_started(void *arg)
{
	caller *c = arg;
	pthread_mutex_lock(&c->mu);
	c->out_of_order |= !c->taken;
	c->started++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void c_done(void *arg, const runner_outcome *out)
{
	caller *c = arg;
	pthread_mutex_lock(&c->mu);
	c->out_of_order |= !c->taken;
	c->done++;
	c->st = out->st;
	c->result_len = out->result_len < sizeof c->result ? out->result_len : sizeof c->result;
	if (out->result_len)
		memcpy(c->result, out->result, c->result_len);
	c->cacheable = out->cacheable;
	c->lost = out->lost;
	c->nmissing = out->nmissing < 4 ? out->nmissing : 4;
	if (c->nmissing)
		memcpy(c->missing, out->missing, c->nmissing * sizeof *c->missing);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static const runner_callbacks caller_cb = {.answered = c_answered, .started = c_started, .done = c_done};

/* ---- fixture: NWORKERS worker servers, one scheduler's runner ------------------------------------ */

typedef struct worker_fx {
	fake_local f;
	rpc_server *s;
	char target[32];
} worker_fx;

static worker_fx wk[NWORKERS];
static rpc_client *cl;
static rpc_channel *own_channel; /* the test's own calls to worker 0 */
static pthread_t stopper;         /* stopping worker 0 on a thread of its own, joined by the teardown */
static bool stopping, stopped;
static runner_remote *rr;
static caller callers[2];
#define job_caller callers[0]

static void stop_worker(int i)
{
	if (wk[i].s)
		rpc_server_stop(wk[i].s);
	wk[i].s = NULL;
}

static int setup(void **state)
{
	(void)state;
	for (int i = 0; i < NWORKERS; i++) {
		worker_fx *w = &wk[i];
		memset(w, 0, sizeof *w);
		w->f.r.ops = &fake_ops;
		w->f.mode = FAKE_RUN;
		w->f.out.st = cairn_ok();
		pthread_mutex_init(&w->f.mu, NULL);
		pthread_cond_init(&w->f.cv, NULL);
		rpc_method m[1];
		assert_int_equal(runner_service_methods(&w->f.r, m, 1), 1);
		rpc_server_config cfg = {.address = "127.0.0.1:0", .threads = 2};
		assert_int_equal(rpc_server_start(&cfg, m, 1, &w->s).code, CAIRN_OK);
		snprintf(w->target, sizeof w->target, "127.0.0.1:%d", rpc_server_port(w->s));
	}
	assert_int_equal(rpc_client_start(NULL, &cl).code, CAIRN_OK);
	runner_remote_config rc = {.client = cl, .answer_timeout_ms = 300};
	assert_int_equal(runner_remote_new(&rc, &rr).code, CAIRN_OK);
	atomic_store(&giving_up, false);
	own_channel = NULL;
	stopping = stopped = false;
	memset(callers, 0, sizeof callers);
	for (int i = 0; i < 2; i++) {
		pthread_mutex_init(&callers[i].mu, NULL);
		pthread_cond_init(&callers[i].cv, NULL);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	atomic_store(&giving_up, true);
	/* the client's calls end (cancelled), so the workers' fakes stop and the servers can stop */
	rpc_client_stop(cl);
	if (own_channel)
		rpc_channel_close(own_channel);
	if (stopping) {
		pthread_join(stopper, NULL);
		wk[0].s = NULL;
	}
	for (int i = 0; i < NWORKERS; i++)
		stop_worker(i);
	assert_int_equal(runner_remote_jobs(rr), 0);
	runner_remote_free(rr);
	for (int i = 0; i < NWORKERS; i++) {
		for (int t = 0; t < wk[i].f.nthreads; t++)
			pthread_join(wk[i].f.threads[t], NULL);
		pthread_mutex_destroy(&wk[i].f.mu);
		pthread_cond_destroy(&wk[i].f.cv);
	}
	for (int i = 0; i < 2; i++) {
		pthread_mutex_destroy(&callers[i].mu);
		pthread_cond_destroy(&callers[i].cv);
	}
	return 0;
}

/* The view: workers idx[0..n) with one pool "Pool=default" each and free[i] free slots. */
static void set_view(const int *idx, const uint32_t *free_slots, size_t n)
{
	runner_remote_worker w[NWORKERS];
	runner_remote_pool p[NWORKERS];
	char ids[NWORKERS][8];
	for (size_t i = 0; i < n; i++) {
		snprintf(ids[i], sizeof ids[i], "w%d", idx[i]);
		p[i] = (runner_remote_pool){.properties = "Pool=default,gpu=none", .total = 4, .free = free_slots[i]};
		w[i] = (runner_remote_worker){.id = ids[i], .target = wk[idx[i]].target, .pools = &p[i], .npools = 1};
	}
	runner_remote_set_workers(rr, w, n);
}

static const runner_property job_props[] = {{"Pool", "default"}};

static void offer_job_for(caller *c)
{
	runner_job job = {.props = job_props, .nprops = 1, .priority = 3, .queued_at = 12345};
	cairn_digest_of("action", 6, &job.action);
	runner_offer(runner_remote_runner(rr), &job, &c->cancel, &caller_cb, c);
}

static void offer_job(void) { offer_job_for(&job_caller); }

static void wait_done(void)
{
	pthread_mutex_lock(&job_caller.mu);
	WAIT_UNTIL(&job_caller.mu, &job_caller.cv, job_caller.done > 0);
	pthread_mutex_unlock(&job_caller.mu);
}

static void wait_started_for(caller *c)
{
	pthread_mutex_lock(&c->mu);
	WAIT_UNTIL(&c->mu, &c->cv, c->started > 0);
	pthread_mutex_unlock(&c->mu);
}

static void wait_started(void) { wait_started_for(&job_caller); }

static void wait_fake(fake_local *f, int *counter, int n)
{
	pthread_mutex_lock(&f->mu);
	WAIT_UNTIL(&f->mu, &f->cv, *counter >= n);
	pthread_mutex_unlock(&f->mu);
}

/* Answered once (taken), started once, done once, in that order. */
static void assert_ran_once(void)
{
	assert_int_equal(job_caller.answered, 1);
	assert_true(job_caller.taken);
	assert_int_equal(job_caller.started, 1);
	assert_int_equal(job_caller.done, 1);
	assert_false(job_caller.out_of_order);
}

/* ---- cases ------------------------------------------------------------------------------------ */

static void taken_started_done_carry_the_outcome(void **state)
{
	(void)state;
	static const uint8_t result[] = {0x0a, 0x00, 0xff, 'r', 0x00, 's'};
	cairn_digest missing[2];
	cairn_digest_of("one", 3, &missing[0]);
	cairn_digest_of("second", 6, &missing[1]);
	wk[0].f.out = (runner_outcome){.st = cairn_err(CAIRN_FAILED_PRECONDITION, "inputs are missing: 2"),
	                               .result = result,
	                               .result_len = sizeof result,
	                               .cacheable = true,
	                               .missing = missing,
	                               .nmissing = 2};
	set_view((int[]){0}, (uint32_t[]){2}, 1);
	offer_job();
	wait_done();
	assert_ran_once();
	assert_false(job_caller.lost);
	assert_int_equal(job_caller.st.code, CAIRN_FAILED_PRECONDITION);
	assert_string_equal(job_caller.st.msg, "inputs are missing: 2");
	assert_int_equal(job_caller.result_len, sizeof result);
	assert_memory_equal(job_caller.result, result, sizeof result);
	assert_true(job_caller.cacheable);
	assert_int_equal(job_caller.nmissing, 2);
	assert_true(cairn_digest_eq(&job_caller.missing[0], &missing[0]));
	assert_true(cairn_digest_eq(&job_caller.missing[1], &missing[1]));
	/* the worker got the job as offered */
	cairn_digest action;
	cairn_digest_of("action", 6, &action);
	assert_int_equal(wk[0].f.offers, 1);
	assert_true(cairn_digest_eq(&wk[0].f.action, &action));
	assert_string_equal(wk[0].f.pool, "default");
}

static void ok_outcome_without_result_or_missing(void **state)
{
	(void)state;
	wk[0].f.out = (runner_outcome){.st = cairn_ok()};
	set_view((int[]){0}, (uint32_t[]){1}, 1);
	offer_job();
	wait_done();
	assert_ran_once();
	assert_false(job_caller.lost);
	assert_int_equal(job_caller.st.code, CAIRN_OK);
	assert_int_equal(job_caller.result_len, 0);
	assert_false(job_caller.cacheable);
	assert_int_equal(job_caller.nmissing, 0);
}

static void full_worker_then_the_next_takes_it(void **state)
{
	(void)state;
	wk[0].f.mode = FAKE_FULL; /* the most free slots by the view: asked first */
	set_view((int[]){0, 1}, (uint32_t[]){4, 1}, 2);
	offer_job();
	wait_done();
	assert_ran_once();
	assert_int_equal(job_caller.st.code, CAIRN_OK);
	assert_int_equal(wk[0].f.offers, 1);
	assert_int_equal(wk[1].f.offers, 1);
}

static void unreachable_worker_then_the_next_takes_it(void **state)
{
	(void)state;
	stop_worker(0); /* the most free slots by the view, but its port refuses connections */
	set_view((int[]){0, 1}, (uint32_t[]){4, 1}, 2);
	offer_job();
	wait_done();
	assert_ran_once();
	assert_int_equal(job_caller.st.code, CAIRN_OK);
	assert_false(job_caller.lost);
	assert_int_equal(wk[1].f.offers, 1);
}

static void all_full_answers_not_taken(void **state)
{
	(void)state;
	wk[0].f.mode = wk[1].f.mode = wk[2].f.mode = FAKE_FULL;
	set_view((int[]){0, 1, 2}, (uint32_t[]){1, 2, 3}, 3);
	offer_job();
	pthread_mutex_lock(&job_caller.mu);
	WAIT_UNTIL(&job_caller.mu, &job_caller.cv, job_caller.answered > 0);
	pthread_mutex_unlock(&job_caller.mu);
	assert_false(job_caller.taken);
	for (int i = 0; i < NWORKERS; i++)
		assert_int_equal(wk[i].f.offers, 1);
	/* the job was given back with the answer: nothing follows it (the teardown checks none is left) */
	assert_int_equal(job_caller.answered, 1);
	assert_int_equal(job_caller.started + job_caller.done, 0);
}

static void most_free_slots_offered_first(void **state)
{
	(void)state;
	set_view((int[]){0, 1}, (uint32_t[]){1, 3}, 2);
	offer_job();
	wait_done();
	assert_ran_once();
	assert_int_equal(wk[0].f.offers, 0);
	assert_int_equal(wk[1].f.offers, 1);
	/* and the other way round, so that the hash's tie-break is not what chose */
	memset(&job_caller.answered, 0, offsetof(caller, cancel) - offsetof(caller, answered));
	set_view((int[]){0, 1}, (uint32_t[]){3, 1}, 2);
	offer_job();
	wait_done();
	assert_ran_once();
	assert_int_equal(wk[0].f.offers, 1);
	assert_int_equal(wk[1].f.offers, 1);
}

/* The same action twice on two equal workers: the second goes where the first did not, since the
 * runner counts what it sent since the view. */
static void jobs_in_flight_count_against_free_slots(void **state)
{
	(void)state;
	wk[0].f.mode = wk[1].f.mode = FAKE_UNTIL_CANCEL;
	set_view((int[]){0, 1}, (uint32_t[]){1, 1}, 2);
	offer_job_for(&callers[0]);
	wait_started_for(&callers[0]);
	offer_job_for(&callers[1]);
	wait_started_for(&callers[1]);
	assert_int_equal(wk[0].f.offers, 1);
	assert_int_equal(wk[1].f.offers, 1);
	assert_int_equal(runner_remote_jobs(rr), 2);
	/* the teardown's client stop ends both calls */
}

static void check_properties_against_the_view(void **state)
{
	(void)state;
	runner *r = runner_remote_runner(rr);
	runner_property gpu[] = {{"Pool", "default"}, {"Pool", "gpu"}};
	/* no worker: every job may wait for one */
	assert_int_equal(runner_check(r, &gpu[1], 1).code, CAIRN_OK);
	set_view((int[]){0, 1}, (uint32_t[]){1, 1}, 2);
	assert_int_equal(runner_check(r, gpu, 1).code, CAIRN_OK);
	cairn_status st = runner_check(r, gpu, 2);
	assert_int_equal(st.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(st.msg, "Pool=gpu"));
	/* a key the pools declare constrains: gpu=none is all there is */
	runner_property want_gpu[] = {{"gpu", "a100"}};
	st = runner_check(r, want_gpu, 1);
	assert_int_equal(st.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(st.msg, "gpu=a100"));
	/* a key no pool declares and cairn does not interpret constrains nothing */
	runner_property image[] = {{"Pool", "default"}, {"container-image", "docker://x"}};
	assert_int_equal(runner_check(r, image, 2).code, CAIRN_OK);
	runner_property cpu[] = {{"cpu", "two"}};
	st = runner_check(r, cpu, 1);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "cpu=two"));
	/* an empty view again */
	runner_remote_set_workers(rr, NULL, 0);
	assert_int_equal(runner_check(r, &gpu[1], 1).code, CAIRN_OK);
}

static void stopped_worker_loses_the_job(void **state)
{
	(void)state;
	wk[0].f.mode = FAKE_UNTIL_CANCEL;
	set_view((int[]){0}, (uint32_t[]){1}, 1);
	offer_job();
	wait_started();
	stop_worker(0); /* the worker goes away with the job */
	wait_done();
	assert_ran_once();
	assert_true(job_caller.lost);
	assert_int_equal(job_caller.st.code, CAIRN_UNAVAILABLE);
}

static void worker_leaving_the_view_loses_the_job(void **state)
{
	(void)state;
	wk[0].f.mode = FAKE_UNTIL_CANCEL;
	set_view((int[]){0, 1}, (uint32_t[]){2, 1}, 2);
	offer_job();
	wait_started();
	assert_int_equal(wk[0].f.offers, 1);
	set_view((int[]){1}, (uint32_t[]){1}, 1); /* worker 0 left */
	wait_done();
	assert_ran_once();
	assert_true(job_caller.lost);
	assert_int_equal(job_caller.st.code, CAIRN_UNAVAILABLE);
	wait_fake(&wk[0].f, &wk[0].f.cancels, 1); /* and it was stopped there */
	assert_int_equal(wk[1].f.offers, 0);
}

static void cancel_reaches_the_worker(void **state)
{
	(void)state;
	wk[0].f.mode = FAKE_UNTIL_CANCEL;
	set_view((int[]){0}, (uint32_t[]){1}, 1);
	offer_job();
	wait_started();
	runner_remote_tick(rr); /* nothing to cancel yet */
	atomic_store(&job_caller.cancel, true);
	runner_remote_tick(rr);
	wait_fake(&wk[0].f, &wk[0].f.cancels, 1);
	wait_done();
	assert_ran_once();
	assert_false(job_caller.lost);
	assert_int_equal(job_caller.st.code, CAIRN_CANCELLED);
}

static void cancel_while_the_offer_is_out(void **state)
{
	(void)state;
	wk[0].f.mode = FAKE_SILENT;
	set_view((int[]){0}, (uint32_t[]){1}, 1);
	offer_job();
	wait_fake(&wk[0].f, &wk[0].f.offers, 1);
	atomic_store(&job_caller.cancel, true);
	runner_remote_tick(rr); /* well within answer_timeout_ms: the cancel is what ends the offer */
	pthread_mutex_lock(&job_caller.mu);
	WAIT_UNTIL(&job_caller.mu, &job_caller.cv, job_caller.answered > 0);
	pthread_mutex_unlock(&job_caller.mu);
	assert_false(job_caller.taken);
	assert_int_equal(job_caller.started + job_caller.done, 0);
	wait_fake(&wk[0].f, &wk[0].f.cancels, 1);
}

static void unanswered_offer_goes_to_the_next_worker(void **state)
{
	(void)state;
	wk[0].f.mode = FAKE_SILENT; /* asked first: the most free slots */
	set_view((int[]){0, 1}, (uint32_t[]){4, 1}, 2);
	offer_job();
	wait_fake(&wk[0].f, &wk[0].f.offers, 1);
	/* the offer went out before the worker saw it: past answer_timeout_ms from now, tick cancels it */
	usleep(400 * 1000);
	runner_remote_tick(rr);
	wait_done();
	assert_ran_once();
	assert_int_equal(job_caller.st.code, CAIRN_OK);
	assert_false(job_caller.lost);
	assert_int_equal(wk[1].f.offers, 1);
	wait_fake(&wk[0].f, &wk[0].f.cancels, 1);
}


static void *stop_thread(void *p)
{
	(void)p;
	rpc_server_stop(wk[0].s);
	pthread_mutex_lock(&wk[0].f.mu);
	stopped = true;
	pthread_cond_broadcast(&wk[0].f.cv);
	pthread_mutex_unlock(&wk[0].f.mu);
	return NULL;
}

static void call_ended(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc, (void)st;
	caller *c = arg;
	pthread_mutex_lock(&c->mu);
	c->ended++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* Run calls that the scheduler cancels at once: every job the worker's runner took hears its
 * cancel, even one whose call was cancelled before the worker started following it. Each request
 * carries many properties, which keeps the worker's handler busy long enough for cancels to land
 * in that window in most runs. */
static void cancel_before_the_worker_follows_the_call(void **state)
{
	(void)state;
	enum { CALLS = 200, PROPS = 10000 };
	wk[0].f.mode = FAKE_UNTIL_CANCEL;
	assert_int_equal(rpc_channel_open(wk[0].target, 4 << 20, &own_channel).code, CAIRN_OK);
	cairn_arena *a = cairn_arena_new(1024);
	cairn_digest d;
	cairn_digest_of("action", 6, &d);
	Cairn__V1__RunRequest req = CAIRN__V1__RUN_REQUEST__INIT;
	req.action = reapi_digest_to_pb(a, &d);
	Cairn__V1__Property *props = cairn_xcalloc(PROPS, sizeof *props), **ptrs = cairn_xcalloc(PROPS, sizeof *ptrs);
	for (int i = 0; i < PROPS; i++) {
		cairn__v1__property__init(&props[i]);
		props[i].name = "name-of-a-property";
		props[i].value = "value";
		ptrs[i] = &props[i];
	}
	req.properties = ptrs;
	req.n_properties = PROPS;
	caller *c = &callers[1];
	for (int i = 0; i < CALLS; i++) {
		rpc_client_call *cc = rpc_client_call_start(cl, own_channel, "/cairn.v1.Worker/Run", 120000);
		rpc_client_call_send(cc, &req.base, NULL, NULL);
		rpc_client_call_cancel(cc);
		rpc_client_call_finish(cc, call_ended, c);
	}
	free(props);
	free(ptrs);
	cairn_arena_free(a);
	pthread_mutex_lock(&c->mu);
	WAIT_UNTIL(&c->mu, &c->cv, c->ended == CALLS);
	pthread_mutex_unlock(&c->mu);
	/* the worker stops once every job it took has ended, which a job does when it sees its cancel */
	stopping = true;
	assert_int_equal(pthread_create(&stopper, NULL, stop_thread, NULL), 0);
	pthread_mutex_lock(&wk[0].f.mu);
	WAIT_UNTIL(&wk[0].f.mu, &wk[0].f.cv, stopped);
	pthread_mutex_unlock(&wk[0].f.mu);
	assert_true(wk[0].f.offers > 0);
	assert_int_equal(wk[0].f.cancels, wk[0].f.offers);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(taken_started_done_carry_the_outcome),
		T(ok_outcome_without_result_or_missing),
		T(full_worker_then_the_next_takes_it),
		T(unreachable_worker_then_the_next_takes_it),
		T(all_full_answers_not_taken),
		T(most_free_slots_offered_first),
		T(jobs_in_flight_count_against_free_slots),
		T(check_properties_against_the_view),
		T(stopped_worker_loses_the_job),
		T(worker_leaving_the_view_loses_the_job),
		T(cancel_reaches_the_worker),
		T(cancel_while_the_offer_is_out),
		T(unanswered_offer_goes_to_the_next_worker),
		T(cancel_before_the_worker_follows_the_call),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
