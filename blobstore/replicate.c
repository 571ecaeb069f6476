/* A worker's re-replication after a view change (blobstore.h, "re-replication").
 *
 * A pass goes in steps of one batch of the blobs this member holds: rank each blob under the view
 * (and under the base view, with the same ranking as the shard's), pair it with each owner that is
 * new since the base, sort the pairs by owner, ask each owner about its digests with one
 * find_missing, and copy what they lack with up to `copies` threads that take the copies one at a
 * time from the step's list. So a step holds at most `batch` digests and batch·(replicas-1) pairs,
 * whatever the number of blobs held, and the copies of a step end before the next step lists more.
 *
 * The replicator's thread sleeps on a condition variable until a pass is due (a view change plus
 * settle_ms, or a retry), takes a copy of the view under its lock, and runs the pass without it.
 * Every view handed in and the stop bump a generation counter; the pass reads it (no lock) before
 * each step and each copy, and stops when it moved: the copies in flight end by themselves, each
 * within its own deadline, and the thread waits for them before it goes on.
 */
#include "blobstore/blobstore.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- one pass -------------------------------------------------------------------------------- */

/* A copy to make, or to ask about: blob `blob` of the step's batch to member `owner`. */
typedef struct pair {
	uint32_t owner, blob;
} pair;

typedef struct pass {
	const blobstore_replicate_config *cfg;
	size_t copies, batch, k;
	const blobstore_shard_member *m;
	size_t n, self;
	blobstore_ranking *now, *then; /* then: the base's; NULL when there is none */
	long *base_of;                 /* each member's index in the base, or -1 */
	bool (*cancelled)(void *arg);
	void *arg;
	blobstore_replicate_result *res;
	cairn_digest *blobs; /* the step's batch */
	pair *pairs;
	size_t npairs;
	uint8_t *missing;
	cairn_digest *ask;
	/* the copiers' */
	pthread_mutex_t mu;  /* guards res and gave_up while they run */
	bool *gave_up;       /* members given up on for the rest of the pass */
	atomic_size_t next;  /* the next pair to copy */
} pass;

static bool stop_now(const pass *p) { return p->cancelled && p->cancelled(p->arg); }

/* Under mu, or before the copiers start: gives up on member o for the rest of the pass. */
static void give_up(pass *p, size_t o, const cairn_status *st)
{
	if (p->gave_up[o])
		return;
	p->gave_up[o] = true;
	p->res->peers_failed++;
	LOG_WARN("blobstore", "re-replication gives up on a worker until the next pass: %s worker=%s", cairn_status_str(st),
	         p->m[o].id);
}

/* Whether member o owned blob d under the base view. */
static bool owned_before(const pass *p, size_t o, const cairn_digest *d)
{
	if (!p->then || p->base_of[o] < 0)
		return false;
	size_t owners[BLOBSTORE_MAX_REPLICAS];
	size_t k = blobstore_ranking_owners(p->then, d, p->k, owners);
	for (size_t j = 0; j < k; j++)
		if (owners[j] == (size_t)p->base_of[o])
			return true;
	return false;
}

/* Pairs each blob of the batch this member owns with its owners that are new since the base. */
static void pair_up(pass *p, size_t nblobs)
{
	p->npairs = 0;
	for (size_t b = 0; b < nblobs; b++) {
		size_t owners[BLOBSTORE_MAX_REPLICAS];
		size_t k = blobstore_ranking_owners(p->now, &p->blobs[b], p->k, owners);
		bool mine = false;
		for (size_t j = 0; j < k; j++)
			mine |= owners[j] == p->self;
		if (!mine)
			continue;
		size_t before = p->npairs;
		for (size_t j = 0; j < k; j++)
			if (owners[j] != p->self && !owned_before(p, owners[j], &p->blobs[b]))
				p->pairs[p->npairs++] = (pair){.owner = (uint32_t)owners[j], .blob = (uint32_t)b};
		p->res->checked += p->npairs > before;
	}
}

static int by_owner(const void *a, const void *b)
{
	const pair *x = a, *y = b;
	return x->owner != y->owner ? (x->owner > y->owner) - (x->owner < y->owner)
	                            : (x->blob > y->blob) - (x->blob < y->blob);
}

/* Asks each owner about its pairs and keeps the pairs it lacks: the copies to make. */
static void ask_owners(pass *p)
{
	qsort(p->pairs, p->npairs, sizeof *p->pairs, by_owner);
	size_t kept = 0;
	for (size_t s = 0, e; s < p->npairs; s = e) {
		uint32_t o = p->pairs[s].owner;
		for (e = s; e < p->npairs && p->pairs[e].owner == o; e++)
			p->ask[e - s] = p->blobs[p->pairs[e].blob];
		if (p->gave_up[o]) {
			p->res->failed += e - s;
			continue;
		}
		cairn_status st = blobstore_find_missing_sync(p->m[o].store, p->ask, e - s, p->missing);
		if (!cairn_is_ok(&st)) {
			give_up(p, o, &st);
			p->res->failed += e - s;
			continue;
		}
		for (size_t i = s; i < e; i++)
			if (p->missing[i - s])
				p->pairs[kept++] = p->pairs[i];
	}
	p->npairs = kept;
}

/* A failure that says the peer cannot take copies now: the others would fail alike. */
static bool peer_failure(const cairn_status *st)
{
	return st->code == CAIRN_UNAVAILABLE || st->code == CAIRN_DEADLINE_EXCEEDED || st->code == CAIRN_RESOURCE_EXHAUSTED;
}

static void *copier(void *arg)
{
	pass *p = arg;
	size_t i;
	while (!stop_now(p) && (i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->npairs) {
		pair c = p->pairs[i];
		pthread_mutex_lock(&p->mu);
		bool skip = p->gave_up[c.owner];
		p->res->failed += skip;
		pthread_mutex_unlock(&p->mu);
		if (skip)
			continue;
		cairn_status st = blobstore_copy_sync(p->m[p->self].store, p->m[c.owner].store, &p->blobs[c.blob]);
		pthread_mutex_lock(&p->mu);
		if (cairn_is_ok(&st)) {
			p->res->copied++;
		} else if (st.code != CAIRN_NOT_FOUND) { /* NOT_FOUND: evicted here since it was listed */
			p->res->failed++;
			char ds[CAIRN_DIGEST_STR_MAX];
			LOG_DEBUG("blobstore", "re-replication copy failed: %s digest=%s worker=%s", cairn_status_str(&st),
			          cairn_digest_str(&p->blobs[c.blob], ds), p->m[c.owner].id);
			if (peer_failure(&st))
				give_up(p, c.owner, &st);
		}
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

/* Makes the step's copies: up to `copies` at a time, this thread being one of the copiers. */
static void copy_all(pass *p)
{
	atomic_store_explicit(&p->next, 0, memory_order_relaxed);
	size_t extra = (p->npairs < p->copies ? p->npairs : p->copies);
	extra = extra > 0 ? extra - 1 : 0;
	pthread_t *t = cairn_xcalloc(extra + 1, sizeof *t);
	size_t started = 0;
	while (started < extra && pthread_create(&t[started], NULL, copier, p) == 0)
		started++;
	copier(p);
	for (size_t i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	free(t);
}

/* Where each member of the view stands in the base, or -1. */
static long *index_in_base(const blobstore_shard_member *m, size_t n, const blobstore_shard_member *base, size_t nbase)
{
	long *at = cairn_xmalloc((n + 1) * sizeof *at);
	for (size_t i = 0; i < n; i++) {
		at[i] = -1;
		for (size_t j = 0; j < nbase && at[i] < 0; j++)
			if (!strcmp(m[i].id, base[j].id))
				at[i] = (long)j;
	}
	return at;
}

static void run_steps(pass *p)
{
	uint64_t cursor = 0;
	size_t nblobs;
	while (!(p->res->cancelled = stop_now(p)) &&
	       (nblobs = p->cfg->list(p->cfg->list_arg, &cursor, p->blobs, p->batch)) > 0) {
		p->res->walked += nblobs;
		pair_up(p, nblobs);
		ask_owners(p);
		copy_all(p);
	}
}

void blobstore_replicate_pass(const blobstore_replicate_config *cfg, const char *self, const blobstore_shard_member *m,
                              size_t n, const blobstore_shard_member *base, size_t nbase, bool (*cancelled)(void *arg),
                              void *arg, blobstore_replicate_result *out)
{
	int64_t t0 = cairn_now_ns();
	*out = (blobstore_replicate_result){0};
	size_t replicas = cfg->replicas > 0 ? (size_t)cfg->replicas : 1;
	pass p = {.cfg = cfg, .copies = cfg->copies > 0 ? (size_t)cfg->copies : 4, .batch = cfg->batch ? cfg->batch : 4096,
	          .k = replicas < n ? replicas : n, .m = m, .n = n, .self = n, .cancelled = cancelled, .arg = arg,
	          .res = out};
	if (p.k > BLOBSTORE_MAX_REPLICAS)
		p.k = BLOBSTORE_MAX_REPLICAS;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(m[i].id, self))
			p.self = i;
	if (p.self == n || p.k < 2) /* not in the view, or no other owner to copy to */
		return;
	p.now = blobstore_ranking_new(m, n);
	p.then = base && nbase ? blobstore_ranking_new(base, nbase) : NULL;
	p.base_of = index_in_base(m, n, base, base ? nbase : 0);
	p.blobs = cairn_xmalloc(p.batch * sizeof *p.blobs);
	p.ask = cairn_xmalloc(p.batch * sizeof *p.ask);
	p.missing = cairn_xmalloc(p.batch);
	p.pairs = cairn_xmalloc(p.batch * (p.k - 1) * sizeof *p.pairs);
	p.gave_up = cairn_xcalloc(n, sizeof *p.gave_up);
	pthread_mutex_init(&p.mu, NULL);
	run_steps(&p);
	pthread_mutex_destroy(&p.mu);
	free(p.gave_up);
	free(p.pairs);
	free(p.missing);
	free(p.ask);
	free(p.blobs);
	free(p.base_of);
	blobstore_ranking_free(p.then);
	blobstore_ranking_free(p.now);
	out->elapsed_ms = (cairn_now_ns() - t0) / 1000000;
}

/* ---- the replicator's thread ----------------------------------------------------------------- */

/* A view as handed in: the ids copied. */
typedef struct member_list {
	blobstore_shard_member *m;
	size_t n;
} member_list;

struct blobstore_replicator {
	blobstore_replicate_config cfg;
	char *self;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu: */
	member_list view;   /* the latest */
	int64_t due_ns;     /* when the next pass starts; 0: none is due */
	bool stop;
	blobstore_replicator_stats stats;
	/* read without mu by the pass */
	atomic_uint_fast64_t gen;
	/* the thread's: */
	member_list base;   /* the view of the last pass that left nothing undone */
	bool has_base;
};

static member_list list_copy(const blobstore_shard_member *m, size_t n)
{
	member_list l = {.m = cairn_xcalloc(n + 1, sizeof *l.m), .n = n};
	for (size_t i = 0; i < n; i++)
		l.m[i] = (blobstore_shard_member){.id = cairn_xstrdup(m[i].id), .store = m[i].store};
	return l;
}

static void list_free(member_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free((char *)l->m[i].id);
	free(l->m);
	*l = (member_list){0};
}

static bool list_is(const member_list *l, const blobstore_shard_member *m, size_t n)
{
	if (l->n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(l->m[i].id, m[i].id) || l->m[i].store != m[i].store)
			return false;
	return true;
}

typedef struct pass_gen {
	blobstore_replicator *r;
	uint_fast64_t gen;
} pass_gen;

static bool gen_moved(void *arg)
{
	pass_gen *g = arg;
	return atomic_load_explicit(&g->r->gen, memory_order_acquire) != g->gen;
}

static void log_pass(const blobstore_replicate_result *res, size_t workers)
{
	LOG_INFO("blobstore", "re-replication pass %s workers=%zu blobs=%llu checked=%llu copied=%llu failed=%llu "
	         "workers_failed=%llu elapsed_ms=%lld", res->cancelled ? "cut short by a newer view" : "done", workers,
	         (unsigned long long)res->walked, (unsigned long long)res->checked, (unsigned long long)res->copied,
	         (unsigned long long)res->failed, (unsigned long long)res->peers_failed, (long long)res->elapsed_ms);
}

/* Runs a pass over a copy of the view (mu is held on entry and on return, not during the pass). */
static void run_pass(blobstore_replicator *r)
{
	member_list v = list_copy(r->view.m, r->view.n);
	uint64_t view_no = r->stats.views;
	pass_gen g = {.r = r, .gen = atomic_load_explicit(&r->gen, memory_order_relaxed)};
	pthread_mutex_unlock(&r->mu);
	blobstore_replicate_result res;
	blobstore_replicate_pass(&r->cfg, r->self, v.m, v.n, r->has_base ? r->base.m : NULL, r->base.n, gen_moved, &g,
	                         &res);
	log_pass(&res, v.n);
	bool clean = !res.cancelled && res.failed == 0 && res.peers_failed == 0;
	if (clean) {
		list_free(&r->base);
		r->base = v;
		r->has_base = true;
	} else {
		list_free(&v);
	}
	pthread_mutex_lock(&r->mu);
	if (!res.cancelled) {
		r->stats.passes++;
		r->stats.done_view = view_no;
		r->stats.last = res;
		if (!clean && r->cfg.retry_ms > 0 && r->due_ns == 0)
			r->due_ns = cairn_now_ns() + r->cfg.retry_ms * 1000000;
	}
}

static void wait_until(blobstore_replicator *r, int64_t due_ns)
{
	struct timespec ts = {.tv_sec = due_ns / 1000000000, .tv_nsec = due_ns % 1000000000};
	pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

static void *replicator_main(void *arg)
{
	blobstore_replicator *r = arg;
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		if (r->due_ns == 0) {
			pthread_cond_wait(&r->cv, &r->mu);
		} else if (cairn_now_ns() < r->due_ns) {
			wait_until(r, r->due_ns);
		} else {
			r->due_ns = 0;
			run_pass(r);
		}
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

cairn_status blobstore_replicator_new(const blobstore_replicate_config *cfg, const char *self,
                                     blobstore_replicator **out)
{
	blobstore_replicator *r = cairn_xcalloc(1, sizeof *r);
	r->cfg = *cfg;
	r->self = cairn_xstrdup(self);
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&r->gen, 0);
	int e = pthread_create(&r->thread, NULL, replicator_main, r);
	if (e != 0) {
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r->self);
		free(r);
		return cairn_errno(e, "cannot start the re-replication thread");
	}
	*out = r;
	return cairn_ok();
}

void blobstore_replicator_set_members(blobstore_replicator *r, const blobstore_shard_member *m, size_t n)
{
	pthread_mutex_lock(&r->mu);
	if (!list_is(&r->view, m, n)) {
		list_free(&r->view);
		r->view = list_copy(m, n);
		r->stats.views++;
		atomic_fetch_add_explicit(&r->gen, 1, memory_order_release);
		r->due_ns = cairn_now_ns() + r->cfg.settle_ms * 1000000;
		pthread_cond_signal(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
}

blobstore_replicator_stats blobstore_replicator_get_stats(blobstore_replicator *r)
{
	pthread_mutex_lock(&r->mu);
	blobstore_replicator_stats s = r->stats;
	pthread_mutex_unlock(&r->mu);
	return s;
}

void blobstore_replicator_free(blobstore_replicator *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	atomic_fetch_add_explicit(&r->gen, 1, memory_order_release);
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	list_free(&r->view);
	list_free(&r->base);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r->self);
	free(r);
}
