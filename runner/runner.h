/*
 * runner: where actions run, as the execution queue sees it.
 *
 * The queue (gateway/) holds operations by priority; a runner is what runs them: the executor on this
 * machine in `serve` (executor/), a worker across the private network in a cluster. A job names the
 * action by digest; the runner fetches the Action, Command and inputs from the CAS itself. Platform
 * properties are matched by the runner, which can refuse at once what it can never run (check).
 *
 * An offer is answered later, through callbacks, because a remote runner's answer is a network
 * call away: `answered` says whether the runner took the job (an executor was free for it) or is
 * full for it now; the queue keeps a refused job and offers it again once some job has finished.
 * A taken job reports `started` when it begins to execute and `done` once at the end. Like the
 * blob store's, the answer may run before offer returns, on the caller's thread, or later on another
 * thread, so callers are written for both; `started` and `done` always run later, on a runner thread.
 *
 * runner.c holds what both sides share: copies of property lists; match.c the rules by which a
 * pool's properties meet an action's (for the executor's slots and a scheduler's choice of worker
 * alike).
 *
 * A worker's executor is offered to schedulers over the private network: serve.c answers the
 * cluster's Run call (proto/cairn/worker.proto) on the worker with its local runner, and remote.c is
 * the scheduler's runner that offers each job to a worker of its view through that call, preferring
 * the worker that holds most of the job's inputs, which locality.c looks up (sections at the end of
 * this file).
 */
#ifndef CAIRN_RUNNER_H
#define CAIRN_RUNNER_H

#include "common/common.h"

typedef struct runner runner;

typedef struct runner_property {
	const char *name, *value;
} runner_property;

typedef struct runner_job {
	cairn_digest action;          /* the Action message's digest */
	const runner_property *props; /* the action's platform properties (Action's, else Command's) */
	size_t nprops;
	int32_t priority;             /* ExecutionPolicy.priority: lower runs first */
	int64_t queued_at;            /* wall-clock ns when the scheduler queued it (ExecutedActionMetadata) */
} runner_job;

/* The outcome of a job. On OK, result/result_len is a packed ActionResult (which may carry a non-zero
 * exit code); cacheable says whether it may go into the action cache (every declared output that was
 * produced was stored). FAILED_PRECONDITION with missing[] lists input blobs absent from the CAS.
 * DEADLINE_EXCEEDED still carries the partial result. The buffers belong to the runner and stay valid
 * only during the callback. */
typedef struct runner_outcome {
	cairn_status st;
	const uint8_t *result;
	size_t result_len;
	bool cacheable;
	const cairn_digest *missing;
	size_t nmissing;
	/* The runner lost the job before its end (the worker running it died or left the view, or its
	 * call failed): st says how; the queue offers the job again rather than fail it. */
	bool lost;
} runner_outcome;

typedef struct runner_callbacks {
	/* Exactly once per offer: true if the runner took the job (started and done follow), false if
	 * every executor that could run it is busy now. */
	void (*answered)(void *arg, bool taken);
	void (*started)(void *arg);
	void (*done)(void *arg, const runner_outcome *out);
} runner_callbacks;

typedef struct runner_ops {
	/* OK if some executor of this runner could ever run an action with these properties; else
	 * FAILED_PRECONDITION naming the property no executor satisfies. */
	cairn_status (*check)(runner *r, const runner_property *props, size_t n);
	/* Offers a job (copied before answered runs). cancel, if set to true later, asks the runner to
	 * stop a taken job (done still runs). cb must outlive the job. */
	void (*offer)(runner *r, const runner_job *job, _Atomic bool *cancel, const runner_callbacks *cb, void *arg);
} runner_ops;

struct runner {
	const runner_ops *ops;
};

static inline cairn_status runner_check(runner *r, const runner_property *props, size_t n)
{
	return r->ops->check(r, props, n);
}
static inline void runner_offer(runner *r, const runner_job *job, _Atomic bool *cancel, const runner_callbacks *cb,
                                void *arg)
{
	r->ops->offer(r, job, cancel, cb, arg);
}

/* A property list copied into one allocation of its own. */
typedef struct runner_props {
	runner_property *props; /* n entries (and one spare, never NULL) */
	size_t n;
	char *storage;          /* the strings */
} runner_props;
/* Copies n properties; name(i) and value(i) give the i-th pair of the source. */
void runner_props_copy(runner_props *out, size_t n, const char *(*name)(const void *src, size_t i),
                       const char *(*value)(const void *src, size_t i), const void *src);
/* Copies a runner_property array. */
void runner_props_dup(runner_props *out, const runner_property *props, size_t n);
void runner_props_free(runner_props *p);

/* ---- matching (match.c) ---------------------------------------------------------------------- */

bool runner_prop_is(const char *name, const char *want); /* names compare case-insensitively */
/* Pool, OSFamily, ISA, cpu, memory, network: keys cairn gives a meaning, which always constrain. */
bool runner_prop_interpreted(const char *name);
bool runner_parse_number(const char *s, double *out);
bool runner_parse_network(const char *v, bool *on); /* on/true, off/false */
/* INVALID_ARGUMENT for a malformed isolation property (cpu, memory, network). */
cairn_status runner_props_validate(const runner_property *p, size_t n);
/* This machine's ISA as remote-apis spells it (x86-64, arm-a64, …), in buf. */
const char *runner_machine_isa(char *buf, size_t cap);
/* Does a pool with these properties meet one wanted property? */
bool runner_pool_meets(const runner_property *pool, size_t n, const runner_property *want);

/* ---- a worker's side of the Run call (serve.c) ------------------------------------------------ *
 *
 * The Run method offers the job it carries to `local` (the worker's executor) and reports on the
 * call: TAKEN or FULL first (FULL ends the call), then STARTED, then DONE with the outcome, sent
 * with the call's OK status. A scheduler that cancels the call, or goes away, cancels the job. */
typedef struct rpc_method rpc_method;
/* Fills out (cap >= 1) with the method; returns how many. local must outlive the server. */
size_t runner_service_methods(runner *local, rpc_method *out, size_t cap);

/* ---- a scheduler's runner over the workers (remote.c) ----------------------------------------- *
 *
 * Offers each job to a worker of the current view with Run. The worker is the live one, not yet
 * tried for this offer, that has a pool meeting the job and holds the most bytes of the action's
 * largest inputs, then has the most free slots by the view (less the jobs this runner has sent it
 * since), ties broken by a hash of the action and the worker's id so that equal workers share the
 * work. A worker that answers FULL, fails the call or does not answer within answer_timeout_ms is
 * skipped and the next is asked (one that failed or did not answer is asked last for the next two
 * seconds, so a dead worker still in the view costs little); when none is left the offer is answered
 * not taken (the queue offers it again when a job ends or runner_remote's owner wakes it).
 *
 * What a worker holds is learnt anew for each offer (locality.h), when there is a CAS and at least
 * two workers with free slots by the view could take the job: the Action and its input tree are
 * read from the CAS (a bounded walk: 128 directories, the 64 largest files), and the first eight of
 * those workers are asked which of those files they lack (FindMissingBlobs on their private port).
 * All of it within locality_timeout_ms: a worker that has not answered by then holds nothing (and is
 * not asked again for two seconds), and a look-up that could not read the tree in time leaves the
 * order above without it. So an offer is never failed by the look-up, nor delayed by more than that
 * deadline.
 *
 * A taken job is followed on its call to DONE. If the call fails first (the worker died: its
 * connection resets; or it left the view: set_workers cancels its calls), done reports the job
 * lost, and the queue dispatches it again. A job whose cancel flag turns true has its call
 * cancelled at the next tick, which stops it on the worker.
 *
 * check: with no worker in the view every job may wait; otherwise a property that no live worker's
 * pool meets fails at once with FAILED_PRECONDITION naming it. A property key no pool declares and
 * cairn does not interpret constrains nothing, as on the executor. */
typedef struct rpc_client rpc_client;
typedef struct blobstore blobstore;
typedef struct runner_remote runner_remote;

typedef struct runner_remote_pool {
	const char *properties; /* "key=value,key=value" */
	uint32_t total, free;
} runner_remote_pool;

typedef struct runner_remote_worker {
	const char *id;     /* unique in the view */
	const char *target; /* "host:port" of its private port */
	const runner_remote_pool *pools;
	size_t npools;
} runner_remote_worker;

typedef struct runner_remote_config {
	rpc_client *client;        /* runs the calls; stopped before runner_remote_free */
	int64_t answer_timeout_ms; /* a worker's answer to an offer; 0 means 5 s */
	int64_t run_timeout_ms;    /* the deadline of a Run call; 0 means 24 h */
	/* The cluster's CAS, where actions' inputs are looked up; NULL for none. Its calls must have ended
	 * by runner_remote_free (they have, once client stopped, for a store reached through it). */
	blobstore *cas;
	int64_t locality_timeout_ms; /* the whole look-up before an offer; 0 means 500 ms */
} runner_remote_config;

cairn_status runner_remote_new(const runner_remote_config *cfg, runner_remote **out);
runner *runner_remote_runner(runner_remote *r);
/* Replaces the view's workers (copied). Calls of jobs on workers no longer in it are cancelled:
 * those jobs are lost, and dispatched again. Any thread. */
void runner_remote_set_workers(runner_remote *r, const runner_remote_worker *w, size_t n);
/* Stops the runner's own thread (the look-ups' timer), before client stops. */
void runner_remote_stop(runner_remote *r);
/* About once a second: cancels the calls of cancelled jobs and of offers left unanswered. */
void runner_remote_tick(runner_remote *r);
/* Jobs in flight (for tests and stats). */
size_t runner_remote_jobs(runner_remote *r);
/* After the rpc client has stopped (every call has ended and reported). */
void runner_remote_free(runner_remote *r);

#endif
