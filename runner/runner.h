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
 * runner.c holds what both sides share: copies of property lists.
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

#endif
