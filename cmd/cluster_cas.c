/* The CAS of a cluster, as cmd composes it (DESIGN.md "Storage composition").
 *
 * A worker serves its cachefs through the gateway's services on its private address and port; a
 * scheduler serves the REAPI on its public port over a blob store sharded across the workers of its
 * view of all instances (blobstore/shard.c), each worker reached through a remote store
 * (blobstore/remote*.c) on one rpc client. The shard's members follow the view: each change hands
 * it the workers now in it. A remote store, once made for a worker, is kept until the scheduler
 * stops (calls started with an old view may still use it), and used again if the worker returns.
 * The action cache is the scheduler's own, in memory; execution is not offered yet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cluster_cas.h"

#include "cachefs/cachefs.h"
#include "gateway/gateway.h"
#include "rpc/rpc.h"

typedef struct remote_entry {
	char id[MEMBER_ID_LEN + 1];
	char target[MEMBER_HOST_MAX + 8];
	blobstore_remote *remote;
} remote_entry;

struct cluster_cas {
	cachefs *fs;               /* a worker's */
	rpc_client *client;        /* a scheduler's: */
	blobstore_shard *shard;
	remote_entry *remotes;     /* one per worker ever seen; the group's thread only, then stop */
	size_t nremotes;
	gateway *g;
	rpc_server *srv;
};

static void addr_port(const char *host, int port, char *out, size_t cap)
{
	snprintf(out, cap, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

static cairn_status serve(cluster_cas *c, blobstore *cas, const char *address)
{
	gateway_config gc = {
		.cas = cas,
		.ac_max_size = 256LL << 20,
		.max_batch_size = (4 << 20) - (64 << 10), /* a Batch answer fits a client's 4 MiB default */
		.max_upload_sessions = 1024,
		.upload_idle_ns = 60 * 1000000000LL,
		.max_inline_size = 1 << 20,
	};
	c->g = gateway_new(&gc);
	rpc_method methods[32];
	size_t n = gateway_methods(c->g, methods, 32);
	rpc_server_config rc = {.address = address, .max_message_size = 8 << 20};
	return rpc_server_start(&rc, methods, n, &c->srv);
}

cairn_status cluster_cas_worker(const cluster_cas_config *cfg, cluster_cas **out)
{
	cluster_cas *c = cairn_xcalloc(1, sizeof *c);
	cachefs_config cc = {.dir = cfg->data_dir, .max_size = cfg->cas_max_size, .min_age_ns = 300 * 1000000000LL};
	cairn_status st = cachefs_open(&cc, &c->fs);
	char addr[MEMBER_HOST_MAX + 8];
	addr_port(cfg->host, cfg->port, addr, sizeof addr);
	if (cairn_is_ok(&st))
		st = serve(c, cachefs_blobstore(c->fs), addr);
	if (!cairn_is_ok(&st)) {
		cluster_cas_stop(c);
		return st;
	}
	LOG_INFO("cluster", "worker CAS serving address=%s data_dir=%s", addr, cfg->data_dir);
	*out = c;
	return st;
}

cairn_status cluster_cas_scheduler(const cluster_cas_config *cfg, cluster_cas **out)
{
	cluster_cas *c = cairn_xcalloc(1, sizeof *c);
	c->remotes = cairn_xcalloc(MEMBER_MAX, sizeof *c->remotes);
	cairn_status st = rpc_client_start(&(rpc_client_config){0}, &c->client);
	blobstore_shard_config sc = {.replicas = cfg->replicas};
	c->shard = blobstore_shard_new(&sc);
	char addr[MEMBER_HOST_MAX + 8];
	addr_port(cfg->public_bind_to_any ? "0.0.0.0" : cfg->host, cfg->public_port, addr, sizeof addr);
	if (cairn_is_ok(&st))
		st = serve(c, blobstore_shard_store(c->shard), addr);
	if (!cairn_is_ok(&st)) {
		cluster_cas_stop(c);
		return st;
	}
	LOG_INFO("cluster", "scheduler serving clients address=%s:%d replicas=%d",
	         cfg->public_bind_to_any ? "0.0.0.0" : cfg->host, rpc_server_port(c->srv), cfg->replicas);
	*out = c;
	return st;
}

int cluster_cas_public_port(const cluster_cas *c) { return rpc_server_port(c->srv); }

/* The remote store of a worker, made the first time it is seen. */
static blobstore *remote_of(cluster_cas *c, const member_info *m)
{
	char target[MEMBER_HOST_MAX + 8];
	addr_port(m->host, m->port, target, sizeof target);
	for (size_t i = 0; i < c->nremotes; i++)
		if (!strcmp(c->remotes[i].id, m->id) && !strcmp(c->remotes[i].target, target))
			return blobstore_remote_blobstore(c->remotes[i].remote);
	if (c->nremotes == MEMBER_MAX)
		return NULL;
	remote_entry *e = &c->remotes[c->nremotes];
	blobstore_remote_config rc = {.target = target, .client = c->client};
	cairn_status st = blobstore_remote_new(&rc, &e->remote);
	if (!cairn_is_ok(&st)) {
		LOG_WARN("cluster", "worker left out of the CAS: %s member=%s", cairn_status_str(&st), m->id);
		return NULL;
	}
	memcpy(e->id, m->id, sizeof e->id);
	memcpy(e->target, target, sizeof e->target);
	c->nremotes++;
	return blobstore_remote_blobstore(e->remote);
}

void cluster_cas_view_changed(void *arg, const member_view *v)
{
	cluster_cas *c = arg;
	blobstore_shard_member *m = cairn_xcalloc(v->n + 1, sizeof *m);
	size_t n = 0;
	for (size_t i = 0; i < v->n; i++) {
		if (v->members[i].role != MEMBER_WORKER)
			continue;
		blobstore *bs = remote_of(c, &v->members[i]);
		if (bs)
			m[n++] = (blobstore_shard_member){.id = v->members[i].id, .store = bs};
	}
	blobstore_shard_set_members(c->shard, m, n);
	LOG_INFO("cluster", "the CAS spans the view's workers workers=%zu ver=%llu", n, (unsigned long long)v->version);
	free(m);
}

void cluster_cas_tick(cluster_cas *c)
{
	if (c->g)
		gateway_tick(c->g);
}

void cluster_cas_stop(cluster_cas *c)
{
	if (!c)
		return;
	if (c->srv)
		rpc_server_stop(c->srv);
	if (c->client)
		rpc_client_stop(c->client); /* every remote call ends before the stores go */
	gateway_free(c->g);
	blobstore_shard_free(c->shard);
	for (size_t i = 0; i < c->nremotes; i++)
		blobstore_remote_free(c->remotes[i].remote);
	free(c->remotes);
	if (c->fs)
		cachefs_close(c->fs);
	free(c);
}
