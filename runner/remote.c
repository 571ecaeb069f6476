/* A scheduler's runner: each job offered to a worker of the view through the Run call
 * (proto/cairn/worker.proto), and followed on that call until its end (runner.h says the policy).
 *
 * Workers are kept in a table that only grows (bounded by the views' size): an entry, once made
 * for an id and address, keeps its channel until the runner is freed, since calls started on it may
 * outlive a view, and a worker that comes back is the same entry again. A view change marks entries
 * live or not and replaces their pools. Jobs are in a list under the runner's lock, so that the
 * tick and a view change can cancel their calls; a job whose call is being finished is marked and
 * left alone, since its call is the caller's to give back once finish is called.
 *
 * A job's life: offer() first asks, when there is a choice, where its inputs lie (locality.c); the
 * answer (or, without a choice, offer itself) starts the offers. attempt() picks a worker and starts
 * the call (the request; once it went, the half-close and the first receive). The first update
 * answers the offer: TAKEN is reported at once; FULL, or a call that fails before an
 * answer, finishes the call and, in the status callback, tries the next worker. After TAKEN,
 * STARTED is reported and DONE (or a failure) finishes the call, whose status callback reports done
 * and frees the job. */
#include "runner/runner.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/worker.pb-c.h"
#include "proto/reapi.h"
#include "rpc/rpc.h"
#include "runner/locality.h"

#define MAX_WORKERS 4096
#define MAX_POOLS 16
#define RUN_METHOD "/cairn.v1.Worker/Run"
/* a worker that failed an offer is asked last for this long, and one that did not say which inputs
 * it holds is not asked that again */
#define SHUN_NS (2 * 1000000000LL)

typedef Cairn__V1__RunUpdate run_update;

typedef struct pool {
	runner_props props;
	uint32_t total, free;
} pool;

typedef struct worker {
	char *id, *target;
	uint64_t key; /* cairn_rendezvous_key(id): scores break ties between equal workers */
	rpc_channel *ch;
	bool live;
	pool pools[MAX_POOLS];
	size_t npools;
	int sent; /* this runner's jobs on it (offered or running) */
	int64_t shunned_until; /* its last call failed before an answer: others go first until then */
	int64_t silent_until;  /* it did not say which inputs it holds: not asked again until then */
} worker;

enum { OFFERED, TAKEN };

typedef struct rjob {
	runner_remote *r;
	runner_job job; /* props point into props */
	runner_props props;
	_Atomic bool *cancel;
	const runner_callbacks *cb;
	void *arg;
	worker **tried; /* workers offered this job (ntried of cap) */
	size_t ntried, cap;
	worker *near[RUNNER_LOCALITY_PEERS]; /* the workers asked which of its inputs they hold */
	uint64_t held[RUNNER_LOCALITY_PEERS]; /* and the bytes of its largest inputs each holds */
	size_t nnear;
	worker *w;           /* the current worker, while a call is out */
	rpc_client_call *call;
	bool finishing;      /* finish was called: the call is no longer ours to cancel */
	int state;
	int64_t offered_at;
	run_update *last;    /* the update that ended the call (FULL, DONE), or NULL */
	struct rjob *prev, *next;
} rjob;

struct runner_remote {
	runner base;
	runner_remote_config cfg;
	runner_locality *loc; /* with a CAS */
	pthread_mutex_t mu;
	worker *workers[MAX_WORKERS];
	size_t nworkers;
	rjob *jobs;
	size_t njobs;
};

/* ---- workers ---------------------------------------------------------------------------------- */

static void parse_props(const char *text, runner_props *out)
{
	/* "k=v,k=v": split in a copy, then copied into one allocation */
	char *copy = cairn_xstrdup(text ? text : ""), *save = NULL;
	runner_property p[64];
	size_t n = 0;
	for (char *kv = strtok_r(copy, ",", &save); kv && n < 64; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq || eq == kv)
			continue;
		*eq = 0;
		p[n++] = (runner_property){.name = kv, .value = eq + 1};
	}
	runner_props_dup(out, p, n);
	free(copy);
}

static void clear_pools(worker *w)
{
	for (size_t i = 0; i < w->npools; i++)
		runner_props_free(&w->pools[i].props);
	w->npools = 0;
}

static worker *find_or_add(runner_remote *r, const runner_remote_worker *v)
{
	for (size_t i = 0; i < r->nworkers; i++)
		if (!strcmp(r->workers[i]->id, v->id) && !strcmp(r->workers[i]->target, v->target))
			return r->workers[i];
	if (r->nworkers == MAX_WORKERS)
		return NULL;
	rpc_channel *ch;
	cairn_status st = rpc_channel_open(v->target, 64 << 20, &ch);
	if (!cairn_is_ok(&st)) {
		LOG_WARN("runner", "worker left out: %s member=%s", cairn_status_str(&st), v->id);
		return NULL;
	}
	worker *w = cairn_xcalloc(1, sizeof *w);
	w->id = cairn_xstrdup(v->id);
	w->key = cairn_rendezvous_key(v->id);
	w->target = cairn_xstrdup(v->target);
	w->ch = ch;
	r->workers[r->nworkers++] = w;
	return w;
}

/* Cancels the call of a job that should not go on. Under mu. */
static void cancel_call(rjob *j)
{
	if (j->call && !j->finishing)
		rpc_client_call_cancel(j->call);
}

void runner_remote_set_workers(runner_remote *r, const runner_remote_worker *v, size_t n)
{
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->nworkers; i++)
		r->workers[i]->live = false;
	for (size_t i = 0; i < n; i++) {
		worker *w = find_or_add(r, &v[i]);
		if (!w)
			continue;
		w->live = true;
		clear_pools(w);
		for (size_t k = 0; k < v[i].npools && k < MAX_POOLS; k++) {
			parse_props(v[i].pools[k].properties, &w->pools[k].props);
			w->pools[k].total = v[i].pools[k].total;
			w->pools[k].free = v[i].pools[k].free;
			w->npools++;
		}
		w->sent = 0; /* the view's free slots count what was sent before it */
	}
	for (rjob *j = r->jobs; j; j = j->next)
		if (j->w && !j->w->live)
			cancel_call(j);
	pthread_mutex_unlock(&r->mu);
}

/* ---- matching --------------------------------------------------------------------------------- */

/* Does any pool of a live worker declare this key? Under mu. */
static bool declared(runner_remote *r, const char *name)
{
	for (size_t i = 0; i < r->nworkers; i++)
		for (size_t k = 0; r->workers[i]->live && k < r->workers[i]->npools; k++)
			for (size_t p = 0; p < r->workers[i]->pools[k].props.n; p++)
				if (runner_prop_is(r->workers[i]->pools[k].props.props[p].name, name))
					return true;
	return false;
}

static bool constrains(runner_remote *r, const char *name) { return runner_prop_interpreted(name) || declared(r, name); }

static bool pool_takes(runner_remote *r, const pool *p, const runner_property *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (constrains(r, want[i].name) && !runner_pool_meets(p->props.props, p->props.n, &want[i]))
			return false;
	return true;
}

/* The most free slots among the worker's pools that take the job; -1 if none does. Under mu. */
static long free_for(runner_remote *r, const worker *w, const runner_property *want, size_t n)
{
	long best = -1;
	for (size_t k = 0; k < w->npools; k++)
		if (pool_takes(r, &w->pools[k], want, n) && (long)w->pools[k].free > best)
			best = w->pools[k].free;
	return best;
}

static cairn_status check(runner *base, const runner_property *props, size_t n)
{
	runner_remote *r = (runner_remote *)base;
	cairn_status st = runner_props_validate(props, n);
	if (!cairn_is_ok(&st))
		return st;
	pthread_mutex_lock(&r->mu);
	size_t live = 0;
	bool met = false;
	for (size_t i = 0; i < r->nworkers && !met; i++)
		if (r->workers[i]->live) {
			live++;
			met = free_for(r, r->workers[i], props, n) >= 0;
		}
	if (!met && live) {
		st = cairn_err(CAIRN_FAILED_PRECONDITION,
		               "no worker of the cluster has an executor pool that satisfies all the platform properties");
		for (size_t p = 0; p < n; p++) {
			bool one = false;
			for (size_t i = 0; i < r->nworkers && !one; i++)
				one = r->workers[i]->live && free_for(r, r->workers[i], &props[p], 1) >= 0;
			if (!one) {
				st = cairn_err(CAIRN_FAILED_PRECONDITION,
				               "no worker of the cluster satisfies platform property %.60s=%.60s", props[p].name,
				               props[p].value);
				break;
			}
		}
	}
	pthread_mutex_unlock(&r->mu);
	return st;
}

/* Where a worker stands for a job: first the bytes of its inputs it holds, then its free slots,
 * then the tie-breaking hash. A shunned worker holds nothing and has no free slot, so it comes last. */
typedef struct rank {
	uint64_t held;
	long free;
	uint64_t tie;
} rank;

static bool ahead(const rank *a, const rank *b)
{
	if (a->held != b->held)
		return a->held > b->held;
	return a->free != b->free ? a->free > b->free : a->tie > b->tie;
}

/* The rank of a live worker not yet tried for the job whose pool takes it; false for any other.
 * Under mu. */
static bool rank_of(runner_remote *r, const rjob *j, worker *w, int64_t now, rank *out)
{
	for (size_t t = 0; t < j->ntried; t++)
		if (j->tried[t] == w)
			return false;
	long f = w->live ? free_for(r, w, j->job.props, j->job.nprops) : -1;
	if (f < 0)
		return false;
	*out = (rank){.free = f - w->sent, .tie = cairn_rendezvous_score(w->key, &j->job.action)};
	if (w->shunned_until > now) {
		out->free -= 1L << 30; /* last, but still a candidate: the view may be all there is */
		return true;
	}
	for (size_t i = 0; i < j->nnear; i++)
		if (j->near[i] == w)
			out->held = j->held[i];
	return true;
}

/* The worker to offer the job to next, or NULL. Under mu. */
static worker *pick(runner_remote *r, rjob *j)
{
	int64_t now = cairn_now_ns();
	worker *best = NULL;
	rank best_rank = {0}, k;
	for (size_t i = 0; i < r->nworkers; i++)
		if (rank_of(r, j, r->workers[i], now, &k) && (!best || ahead(&k, &best_rank))) {
			best = r->workers[i];
			best_rank = k;
		}
	return best;
}

/* The workers to ask where the job's inputs lie (j->near): those with free slots by the view whose
 * pool takes it, the first RUNNER_LOCALITY_PEERS in the order they would be offered it without the
 * answer, leaving out the ones that were lately silent (each silence would cost an offer the whole
 * deadline, and the queue offers one job at a time), which count in *choice with the others. Under mu. */
static size_t pick_near(runner_remote *r, rjob *j, size_t *choice)
{
	int64_t now = cairn_now_ns();
	rank ranks[RUNNER_LOCALITY_PEERS], k;
	size_t n = 0;
	*choice = 0;
	for (size_t i = 0; i < r->nworkers; i++) {
		if (!rank_of(r, j, r->workers[i], now, &k) || k.free <= 0)
			continue;
		*choice += 1;
		if (r->workers[i]->silent_until > now)
			continue;
		size_t at = n;
		while (at > 0 && ahead(&k, &ranks[at - 1]))
			at--;
		if (at == RUNNER_LOCALITY_PEERS)
			continue;
		n += n < RUNNER_LOCALITY_PEERS;
		memmove(&ranks[at + 1], &ranks[at], (n - 1 - at) * sizeof *ranks);
		memmove(&j->near[at + 1], &j->near[at], (n - 1 - at) * sizeof *j->near);
		ranks[at] = k;
		j->near[at] = r->workers[i];
	}
	j->nnear = n;
	return n;
}

/* ---- jobs ------------------------------------------------------------------------------------- */

static void unlink_job(runner_remote *r, rjob *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		r->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	r->njobs--;
}

static void free_job(rjob *j)
{
	runner_remote *r = j->r;
	pthread_mutex_lock(&r->mu);
	unlink_job(r, j);
	pthread_mutex_unlock(&r->mu);
	if (j->last)
		protobuf_c_message_free_unpacked(&j->last->base, NULL);
	runner_props_free(&j->props);
	free(j->tried);
	free(j);
}

static void on_sent(rpc_client_call *cc, void *arg, bool ok);
static void on_update(rpc_client_call *cc, void *arg, bool ok, rpc_msg *msg);
static void on_status(rpc_client_call *cc, void *arg, cairn_status st);

/* Ends the job's call; on_status goes on from there. */
static void end_call(rjob *j, run_update *last)
{
	pthread_mutex_lock(&j->r->mu);
	j->finishing = true;
	j->last = last;
	pthread_mutex_unlock(&j->r->mu);
	rpc_client_call_finish(j->call, on_status, j);
}

/* Offers the job to the next worker, or answers not taken when none is left. */
static void attempt(rjob *j)
{
	runner_remote *r = j->r;
	pthread_mutex_lock(&r->mu);
	worker *w = atomic_load(j->cancel) ? NULL : pick(r, j);
	if (!w) {
		pthread_mutex_unlock(&r->mu);
		const runner_callbacks *cb = j->cb;
		void *arg = j->arg;
		free_job(j);
		cb->answered(arg, false);
		return;
	}
	if (j->ntried == j->cap) {
		j->cap = j->cap ? 2 * j->cap : 4;
		j->tried = cairn_xrealloc(j->tried, j->cap * sizeof *j->tried);
	}
	j->tried[j->ntried++] = w;
	j->w = w;
	w->sent++;
	j->state = OFFERED;
	j->finishing = false;
	j->offered_at = cairn_now_ns();
	j->call = rpc_client_call_start(r->cfg.client, w->ch, RUN_METHOD, r->cfg.run_timeout_ms);
	pthread_mutex_unlock(&r->mu);

	cairn_arena *a = cairn_arena_new(1024);
	Cairn__V1__RunRequest req = CAIRN__V1__RUN_REQUEST__INIT;
	req.action = reapi_digest_to_pb(a, &j->job.action);
	req.priority = j->job.priority;
	req.queued_at_ns = j->job.queued_at;
	Cairn__V1__Property **props = cairn_arena_alloc(a, (j->job.nprops + 1) * sizeof *props);
	for (size_t i = 0; i < j->job.nprops; i++) {
		props[i] = cairn_arena_alloc(a, sizeof **props);
		cairn__v1__property__init(props[i]);
		props[i]->name = (char *)j->job.props[i].name;
		props[i]->value = (char *)j->job.props[i].value;
	}
	req.properties = props;
	req.n_properties = j->job.nprops;
	rpc_client_call_send(j->call, &req.base, on_sent, j);
	cairn_arena_free(a);
}

/* The request went: half-close (nothing waits on that) and follow the updates. */
static void on_sent(rpc_client_call *cc, void *arg, bool ok)
{
	rjob *j = arg;
	if (!ok) {
		end_call(j, NULL);
		return;
	}
	rpc_client_call_close_send(cc, NULL, NULL);
	rpc_client_call_recv(cc, on_update, j);
}

static void on_update(rpc_client_call *cc, void *arg, bool ok, rpc_msg *msg)
{
	(void)cc;
	rjob *j = arg;
	run_update *u = NULL;
	if (ok && msg)
		u = (run_update *)rpc_msg_unpack(msg, &cairn__v1__run_update__descriptor);
	if (msg)
		rpc_msg_free(msg);
	if (u && j->state == OFFERED && u->kind == CAIRN__V1__RUN_UPDATE__KIND__TAKEN) {
		protobuf_c_message_free_unpacked(&u->base, NULL);
		pthread_mutex_lock(&j->r->mu);
		j->state = TAKEN;
		pthread_mutex_unlock(&j->r->mu);
		j->cb->answered(j->arg, true);
		rpc_client_call_recv(j->call, on_update, j);
		return;
	}
	if (u && j->state == TAKEN && u->kind == CAIRN__V1__RUN_UPDATE__KIND__STARTED) {
		protobuf_c_message_free_unpacked(&u->base, NULL);
		j->cb->started(j->arg);
		rpc_client_call_recv(j->call, on_update, j);
		return;
	}
	if (u && !((j->state == OFFERED && u->kind == CAIRN__V1__RUN_UPDATE__KIND__FULL) ||
	           (j->state == TAKEN && u->kind == CAIRN__V1__RUN_UPDATE__KIND__DONE))) {
		LOG_WARN("runner", "worker sent an update out of turn kind=%d worker=%s", (int)u->kind, j->w->target);
		protobuf_c_message_free_unpacked(&u->base, NULL);
		u = NULL;
	}
	if (!u) /* the call failed or ended without its last update: its status says why */
		rpc_client_call_cancel(j->call);
	end_call(j, u);
}

/* The outcome a DONE update carries; its buffers point into u. */
static runner_outcome outcome_of(const run_update *u, cairn_digest *missing, size_t cap)
{
	runner_outcome out = {.st = {.code = u->code}, .result = u->result.data, .result_len = u->result.len,
	                      .cacheable = u->cacheable};
	snprintf(out.st.msg, sizeof out.st.msg, "%s", u->message ? u->message : "");
	for (size_t i = 0; i < u->n_missing && out.nmissing < cap; i++)
		if (reapi_digest_from_pb(u->missing[i], "missing", &missing[out.nmissing]).code == CAIRN_OK)
			out.nmissing++;
	out.missing = missing;
	return out;
}

static void on_status(rpc_client_call *cc, void *arg, cairn_status st)
{
	(void)cc;
	rjob *j = arg;
	runner_remote *r = j->r;
	pthread_mutex_lock(&r->mu);
	worker *w = j->w;
	w->sent = w->sent > 0 ? w->sent - 1 : 0;
	j->call = NULL;
	j->w = NULL;
	int state = j->state;
	run_update *u = j->last;
	j->last = NULL;
	pthread_mutex_unlock(&r->mu);

	if (state == OFFERED) {
		if (!u) {
			pthread_mutex_lock(&r->mu);
			bool first = w->shunned_until <= cairn_now_ns();
			w->shunned_until = cairn_now_ns() + SHUN_NS;
			pthread_mutex_unlock(&r->mu);
			if (first)
				LOG_WARN("runner", "worker did not answer an offer: others are asked first for a while: %s worker=%s",
				         cairn_status_str(&st), w->target);
		} else {
			protobuf_c_message_free_unpacked(&u->base, NULL);
		}
		attempt(j);
		return;
	}
	runner_outcome out;
	cairn_digest missing[256];
	if (u) { /* DONE arrived: its outcome stands, even if the call was cancelled after it */
		out = outcome_of(u, missing, 256);
	} else {
		bool cancelled = atomic_load(j->cancel);
		out = (runner_outcome){.lost = !cancelled};
		out.st = cancelled ? cairn_err(CAIRN_CANCELLED, "operation was cancelled")
		                   : cairn_err(CAIRN_UNAVAILABLE, "the worker running the action was lost (%s): %.150s",
		                               w->target, cairn_status_str(&st));
		if (!cancelled)
			LOG_WARN("runner", "lost an action on a worker: %s", out.st.msg);
	}
	j->cb->done(j->arg, &out);
	if (u)
		protobuf_c_message_free_unpacked(&u->base, NULL);
	free_job(j);
}

/* Where the job's inputs lie is known, as far as it could be: the offers follow. */
static void located(void *arg, const uint64_t *held, const bool *silent, size_t n)
{
	rjob *j = arg;
	int64_t now = cairn_now_ns();
	pthread_mutex_lock(&j->r->mu);
	memcpy(j->held, held, n * sizeof *held);
	for (size_t i = 0; i < n; i++)
		if (silent[i])
			j->near[i]->silent_until = now + SHUN_NS;
	pthread_mutex_unlock(&j->r->mu);
	attempt(j);
}

static void offer(runner *base, const runner_job *job, _Atomic bool *cancel, const runner_callbacks *cb, void *arg)
{
	runner_remote *r = (runner_remote *)base;
	rjob *j = cairn_xcalloc(1, sizeof *j);
	j->r = r;
	runner_props_dup(&j->props, job->props, job->nprops);
	j->job = *job;
	j->job.props = j->props.props;
	j->cancel = cancel;
	j->cb = cb;
	j->arg = arg;
	pthread_mutex_lock(&r->mu);
	j->next = r->jobs;
	if (r->jobs)
		r->jobs->prev = j;
	r->jobs = j;
	r->njobs++;
	/* with one worker to choose from (or none), or none to ask, there is nothing to ask */
	size_t choice = 0, n = r->loc ? pick_near(r, j, &choice) : 0;
	rpc_channel *near[RUNNER_LOCALITY_PEERS];
	for (size_t i = 0; i < n; i++)
		near[i] = j->near[i]->ch;
	pthread_mutex_unlock(&r->mu);
	if (n >= 1 && choice >= 2)
		runner_locality_ask(r->loc, &j->job.action, near, n, located, j);
	else
		attempt(j);
}

void runner_remote_tick(runner_remote *r)
{
	int64_t now = cairn_now_ns();
	pthread_mutex_lock(&r->mu);
	for (rjob *j = r->jobs; j; j = j->next)
		if (atomic_load(j->cancel) ||
		    (j->state == OFFERED && now - j->offered_at > r->cfg.answer_timeout_ms * 1000000LL))
			cancel_call(j);
	pthread_mutex_unlock(&r->mu);
}

size_t runner_remote_jobs(runner_remote *r)
{
	pthread_mutex_lock(&r->mu);
	size_t n = r->njobs;
	pthread_mutex_unlock(&r->mu);
	return n;
}

static const runner_ops remote_ops = {.check = check, .offer = offer};

cairn_status runner_remote_new(const runner_remote_config *cfg, runner_remote **out)
{
	if (!cfg->client)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "remote runner needs an rpc client");
	runner_remote *r = cairn_xcalloc(1, sizeof *r);
	r->base.ops = &remote_ops;
	r->cfg = *cfg;
	if (r->cfg.answer_timeout_ms <= 0)
		r->cfg.answer_timeout_ms = 5000;
	if (r->cfg.run_timeout_ms <= 0)
		r->cfg.run_timeout_ms = 24 * 3600 * 1000LL;
	pthread_mutex_init(&r->mu, NULL);
	if (cfg->cas)
		r->loc = runner_locality_new(cfg->cas, cfg->client, cfg->locality_timeout_ms);
	*out = r;
	return cairn_ok();
}

runner *runner_remote_runner(runner_remote *r) { return &r->base; }

void runner_remote_stop(runner_remote *r)
{
	if (r && r->loc)
		runner_locality_stop(r->loc);
}

void runner_remote_free(runner_remote *r)
{
	if (!r)
		return;
	runner_locality_free(r->loc);
	for (size_t i = 0; i < r->nworkers; i++) {
		clear_pools(r->workers[i]);
		rpc_channel_close(r->workers[i]->ch);
		free(r->workers[i]->id);
		free(r->workers[i]->target);
		free(r->workers[i]);
	}
	pthread_mutex_destroy(&r->mu);
	free(r);
}
