/* The storage and execution of a cluster, as cmd composes them (DESIGN.md "Storage composition",
 * "Data flows").
 *
 * Both roles hold the cluster's CAS: a blob store sharded across the workers of the view of all
 * instances (blobstore/shard.c), each worker reached through a remote store (blobstore/remote*.c)
 * on one rpc client, a worker's own share being its local cachefs, with no network hop. The shard's
 * members follow the view: each change hands it the workers now in it. A remote store, once made for
 * a worker, is kept until the instance stops (calls started with an old view may still use it), and
 * used again if the worker returns: its return to the view closes its circuit breaker, which calls
 * made while it was gone may have opened, so that what it holds is served at once rather than after
 * --peer_cooldown_ms. A worker also hands each view to its re-replication (blobstore/replicate.c),
 * which copies the blobs it holds to their owners that are new in it.
 *
 * A worker serves its cachefs through the gateway's services on its private address and port, with
 * the Run method (runner/serve.c) that runs actions on its executor. The executor reads inputs from
 * the local disk, copying a missing one there from the cluster's CAS first, and stores outputs in the
 * cluster's CAS, so they land on their owners. A scheduler serves the REAPI on its public port over
 * the cluster's CAS, and runs actions through a remote runner (runner/remote.c) that offers them to
 * the view's workers, first to those that hold most of their inputs in that CAS. The scheduler's
 * action cache is in memory, shared with the other schedulers (cluster_ac.c). cmd adds the
 * scheduler's own methods (cluster_members.c) to its public port.
 *
 * With --external_storage, a worker's cachefs has the object store written through and read
 * through (its share of the cluster's CAS, served on its private port and used by its executor), so
 * a blob the worker lacks (it was elsewhere, or its disk was lost) is read back from the bucket; and
 * a scheduler's action cache is backed up to the bucket and restored from it, behind its peers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cmd/cluster_cas.h"
#include "cmd/cluster_ac.h"

#include "cachefs/cachefs.h"
#include "cmd/local_storage.h"
#include "gateway/gateway.h"
#include "rpc/rpc.h"
#include "runner/runner.h"

typedef struct remote_entry {
	char id[MEMBER_ID_LEN + 1];
	char target[MEMBER_HOST_MAX + 8];
	blobstore_remote *remote;
	bool in_view; /* in the last view handed to the shard */
	bool seen;    /* in the view being handed over */
} remote_entry;

struct cluster_cas {
	char self[MEMBER_ID_LEN + 1];
	cachefs *fs;               /* a worker's */
	external x;                /* the object store: a worker's through store, a scheduler's backup */
	executor *ex;              /* a worker's, if it runs actions */
	local_store store;         /* the executor's storage */
	runner_remote *runner;     /* a scheduler's */
	rpc_client *client;
	int64_t peer_timeout_ms, peer_cooldown_ms; /* of the remote stores */
	blobstore_shard *shard;    /* the cluster's CAS */
	blobstore_replicator *rep; /* a worker's re-replication after view changes */
	remote_entry *remotes;     /* one per worker ever seen; the group's thread only, then stop */
	size_t nremotes;
	gateway *g;
	rpc_server *srv;
};

void cluster_addr_port(const char *host, int port, char *out, size_t cap)
{
	snprintf(out, cap, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

static cairn_status serve(cluster_cas *c, blobstore *cas, runner *rn, gateway_ac_backing backing,
                          const char *address, const rpc_method *more, size_t nmore)
{
	gateway_config gc = {
		.cas = cas,
		.runner = c->runner ? rn : NULL, /* a scheduler's Execution service */
		.ac_backing = backing,
		.ac_max_size = 256LL << 20,
		.max_batch_size = (4 << 20) - (64 << 10), /* a Batch answer fits a client's 4 MiB default */
		.max_upload_sessions = 1024,
		.upload_idle_ns = 60 * 1000000000LL,
		.max_inline_size = 1 << 20,
	};
	c->g = gateway_new(&gc);
	rpc_method methods[48];
	size_t n = gateway_methods(c->g, methods, 31);
	if (c->ex) /* a worker's Run */
		n += runner_service_methods(rn, methods + n, 32 - n);
	for (size_t i = 0; i < nmore && n < sizeof methods / sizeof methods[0]; i++)
		methods[n++] = more[i];
	rpc_server_config rc = {.address = address, .max_message_size = 8 << 20};
	return rpc_server_start(&rc, methods, n, &c->srv);
}

/* The rpc client and the shard both roles hold. */
static cairn_status start_common(cluster_cas *c, const cluster_cas_config *cfg)
{
	snprintf(c->self, sizeof c->self, "%s", cfg->self_id);
	c->remotes = cairn_xcalloc(MEMBER_MAX, sizeof *c->remotes);
	c->peer_timeout_ms = cfg->peer_timeout_ms;
	c->peer_cooldown_ms = cfg->peer_cooldown_ms;
	blobstore_shard_config sc = {.replicas = cfg->replicas};
	c->shard = blobstore_shard_new(&sc);
	return rpc_client_start(&(rpc_client_config){0}, &c->client);
}

static size_t list_held(void *fs, uint64_t *cursor, cairn_digest *out, size_t cap)
{
	return cachefs_list(fs, cursor, out, cap);
}

cairn_status cluster_cas_worker(const cluster_cas_config *cfg, cluster_cas **out)
{
	cluster_cas *c = cairn_xcalloc(1, sizeof *c);
	cachefs_config cc = {.dir = cfg->data_dir, .max_size = cfg->cas_max_size, .min_age_ns = 300 * 1000000000LL,
	                     .direct_writes = external_flags_given(cfg->external)};
	cairn_status st = cachefs_open(&cc, &c->fs);
	if (cairn_is_ok(&st))
		st = external_open(cfg->external, c->fs, &c->x);
	if (cairn_is_ok(&st))
		st = start_common(c, cfg);
	/* with copies to keep: a pass a second after the view settled, again after 30 s while one
	 * leaves copies undone */
	blobstore_replicate_config rc = {.replicas = cfg->replicas, .settle_ms = 1000, .retry_ms = 30000,
	                                 .list = list_held, .list_arg = c->fs};
	if (cairn_is_ok(&st) && cfg->replicas > 1)
		st = blobstore_replicator_new(&rc, cfg->self_id, &c->rep);
	char addr[MEMBER_HOST_MAX + 8];
	cluster_addr_port(cfg->host, cfg->port, addr, sizeof addr);
	if (cairn_is_ok(&st) && exec_flags_enabled(&cfg->exec)) {
		blobstore *cluster = blobstore_shard_store(c->shard);
		c->store = (local_store){.fs = c->fs, .cas = cluster, .peers = cluster};
		st = exec_flags_start(&cfg->exec, cfg->data_dir, addr, local_storage(&c->store), &c->ex);
	}
	if (cairn_is_ok(&st))
		st = serve(c, external_cas(&c->x, c->fs), c->ex ? executor_runner(c->ex) : NULL, (gateway_ac_backing){0},
		           addr, NULL, 0);
	if (!cairn_is_ok(&st)) {
		cluster_cas_stop(c);
		return st;
	}
	LOG_INFO("cluster", "worker serving its CAS%s address=%s data_dir=%s", c->ex ? " and its executor" : "", addr,
	         cfg->data_dir);
	*out = c;
	return st;
}

/* Where a scheduler's action cache is backed: the object store, or nowhere. */
static cairn_status scheduler_ac_backing(cluster_cas *c, const external_flags *f, gateway_ac_backing *out)
{
	cairn_status st = external_open(f, NULL, &c->x);
	*out = external_ac_backing(&c->x);
	return st;
}

cairn_status cluster_cas_scheduler(const cluster_cas_config *cfg, cluster_cas **out)
{
	cluster_cas *c = cairn_xcalloc(1, sizeof *c);
	cairn_status st = start_common(c, cfg);
	if (cairn_is_ok(&st))
		st = runner_remote_new(&(runner_remote_config){.client = c->client, .cas = blobstore_shard_store(c->shard)},
		                       &c->runner);
	char addr[MEMBER_HOST_MAX + 8];
	cluster_addr_port(cfg->public_bind_to_any ? "0.0.0.0" : cfg->host, cfg->public_port, addr, sizeof addr);
	gateway_ac_backing backing = {0};
	if (cairn_is_ok(&st))
		st = scheduler_ac_backing(c, cfg->external, &backing);
	if (cairn_is_ok(&st) && cfg->ac) /* the peers first, the bucket behind them */
		st = cluster_ac_over(cfg->ac, backing, &backing);
	if (cairn_is_ok(&st))
		st = serve(c, blobstore_shard_store(c->shard), runner_remote_runner(c->runner), backing, addr,
		           cfg->methods, cfg->nmethods);
	if (!cairn_is_ok(&st)) {
		cluster_cas_stop(c);
		return st;
	}
	external_restore(cfg->external, &c->x, c->g);
	LOG_INFO("cluster", "scheduler serving clients address=%s:%d replicas=%d peer_timeout_ms=%lld peer_cooldown_ms=%lld",
	         cfg->public_bind_to_any ? "0.0.0.0" : cfg->host, rpc_server_port(c->srv), cfg->replicas,
	         (long long)cfg->peer_timeout_ms, (long long)cfg->peer_cooldown_ms);
	*out = c;
	return st;
}

int cluster_cas_public_port(const cluster_cas *c) { return rpc_server_port(c->srv); }

gateway *cluster_cas_gateway(const cluster_cas *c) { return c->g; }

uint64_t cluster_cas_blobs(cluster_cas *c)
{
	if (!c->fs)
		return 0;
	cachefs_stats s;
	cachefs_get_stats(c->fs, &s);
	return s.blobs;
}

/* The remote store of a worker, made the first time it is seen; marked in the view. */
static blobstore *remote_of(cluster_cas *c, const member_info *m)
{
	char target[MEMBER_HOST_MAX + 8];
	cluster_addr_port(m->host, m->port, target, sizeof target);
	for (size_t i = 0; i < c->nremotes; i++) {
		remote_entry *e = &c->remotes[i];
		if (strcmp(e->id, m->id) || strcmp(e->target, target))
			continue;
		if (!e->in_view)
			blobstore_remote_reset(e->remote); /* back in the view: it answers the group again */
		e->seen = true;
		return blobstore_remote_blobstore(e->remote);
	}
	if (c->nremotes == MEMBER_MAX)
		return NULL;
	remote_entry *e = &c->remotes[c->nremotes];
	blobstore_remote_config rc = {.target = target, .client = c->client, .timeout_ms = c->peer_timeout_ms,
	                              .cooldown_ms = c->peer_cooldown_ms};
	cairn_status st = blobstore_remote_new(&rc, &e->remote);
	if (!cairn_is_ok(&st)) {
		LOG_WARN("cluster", "worker left out of the CAS: %s member=%s", cairn_status_str(&st), m->id);
		return NULL;
	}
	memcpy(e->id, m->id, sizeof e->id);
	memcpy(e->target, target, sizeof e->target);
	e->seen = true;
	c->nremotes++;
	return blobstore_remote_blobstore(e->remote);
}

/* The pools of a worker of the view, for the runner. */
static void runner_worker_of(const member_info *m, runner_remote_worker *w, runner_remote_pool *pools, char *target,
                             size_t cap)
{
	cluster_addr_port(m->host, m->port, target, cap);
	for (size_t k = 0; k < m->npools; k++)
		pools[k] = (runner_remote_pool){.properties = m->pools[k].properties, .total = m->pools[k].total,
		                                .free = m->pools[k].free};
	*w = (runner_remote_worker){.id = m->id, .target = target, .pools = pools, .npools = m->npools};
}

/* Hands the runner the view's workers with their pools. */
static void runner_follow(cluster_cas *c, const member_view *v)
{
	runner_remote_worker *rw = cairn_xcalloc(v->n + 1, sizeof *rw);
	runner_remote_pool(*pools)[MEMBER_POOLS_MAX] = cairn_xcalloc(v->n + 1, sizeof *pools);
	char(*targets)[MEMBER_HOST_MAX + 8] = cairn_xcalloc(v->n + 1, sizeof *targets);
	size_t nw = 0;
	for (size_t i = 0; i < v->n; i++)
		if (v->members[i].role == MEMBER_WORKER && v->members[i].npools) {
			runner_worker_of(&v->members[i], &rw[nw], pools[nw], targets[nw], sizeof targets[nw]);
			nw++;
		}
	runner_remote_set_workers(c->runner, rw, nw);
	gateway_exec_wake(c->g); /* a worker may have joined, or freed slots */
	free(rw);
	free(pools);
	free(targets);
}

void cluster_cas_view_changed(void *arg, const member_view *v)
{
	cluster_cas *c = arg;
	blobstore_shard_member *m = cairn_xcalloc(v->n + 1, sizeof *m);
	size_t n = 0;
	for (size_t i = 0; i < v->n; i++) {
		const member_info *mi = &v->members[i];
		if (mi->role != MEMBER_WORKER)
			continue;
		/* a worker's own share of the CAS is its disk (with the object store behind it) */
		blobstore *bs = c->fs && !strcmp(mi->id, c->self) ? external_cas(&c->x, c->fs) : remote_of(c, mi);
		if (bs)
			m[n++] = (blobstore_shard_member){.id = mi->id, .store = bs};
	}
	for (size_t i = 0; i < c->nremotes; i++) {
		c->remotes[i].in_view = c->remotes[i].seen;
		c->remotes[i].seen = false;
	}
	blobstore_shard_set_members(c->shard, m, n);
	if (c->rep)
		blobstore_replicator_set_members(c->rep, m, n);
	if (c->runner)
		runner_follow(c, v);
	LOG_INFO("cluster", "the CAS spans the view's workers workers=%zu ver=%llu", n, (unsigned long long)v->version);
	free(m);
}

void cluster_cas_view_stats(cluster_cas *c, const member_view *v)
{
	if (c->runner)
		runner_follow(c, v);
}

size_t cluster_cas_pools(cluster_cas *c, member_pool *out, size_t cap)
{
	if (!c->ex)
		return 0;
	struct executor_pool_usage u[MEMBER_POOLS_MAX];
	size_t n = executor_pool_usage(c->ex, u, cap < MEMBER_POOLS_MAX ? cap : MEMBER_POOLS_MAX);
	char isa[32];
	runner_machine_isa(isa, sizeof isa);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	for (size_t k = 0; k < n; k++) {
		/* the implicit properties of a pool, spelled out for the schedulers (runner/match.c) */
		char *p = out[k].properties;
		size_t cap_p = sizeof out[k].properties;
		_Static_assert(sizeof u[k].properties == sizeof out[k].properties, "pool properties differ in size");
		memcpy(p, u[k].properties, cap_p);
		p[cap_p - 1] = 0;
		const char *implicit[][2] = {{"OSFamily", "Linux"}, {"ISA", isa}, {"cpu", NULL}};
		for (size_t i = 0; i < 3; i++) {
			char kv[64];
			size_t nlen = strlen(implicit[i][0]);
			bool named = false;
			for (const char *q = p; *q && !named; q = strchr(q, ',') ? strchr(q, ',') + 1 : q + strlen(q))
				named = !strncasecmp(q, implicit[i][0], nlen) && q[nlen] == '=';
			if (named)
				continue;
			if (implicit[i][1])
				snprintf(kv, sizeof kv, "%s=%s", implicit[i][0], implicit[i][1]);
			else
				snprintf(kv, sizeof kv, "cpu=%ld", cpus);
			size_t len = strlen(p);
			snprintf(p + len, cap_p - len, "%s%s", len ? "," : "", kv);
		}
		out[k].total = u[k].total;
		out[k].free = u[k].free;
	}
	return n;
}

void cluster_cas_tick(cluster_cas *c)
{
	if (c->g)
		gateway_tick(c->g);
	if (c->runner)
		runner_remote_tick(c->runner); /* the queue is woken by cluster_cas_view_stats, with fresh slots */
}

void cluster_cas_stop(cluster_cas *c)
{
	if (!c)
		return;
	blobstore_replicator_free(c->rep); /* its calls end before the client stops */
	if (c->g)
		gateway_exec_drain(c->g); /* a scheduler's clients hear that their actions will not finish here */
	if (c->srv)
		rpc_server_stop(c->srv); /* a worker's Run calls end once their actions have stopped */
	executor_free(c->ex);
	runner_remote_stop(c->runner);
	if (c->client)
		rpc_client_stop(c->client); /* every remote call ends before the stores go; the runner's jobs report */
	external_close_backup(&c->x); /* before the gateway: its restore fills the gateway's action cache */
	gateway_free(c->g);
	runner_remote_free(c->runner);
	blobstore_shard_free(c->shard);
	for (size_t i = 0; i < c->nremotes; i++)
		blobstore_remote_free(c->remotes[i].remote);
	free(c->remotes);
	external_close(&c->x);
	if (c->fs)
		cachefs_close(c->fs);
	free(c);
}
