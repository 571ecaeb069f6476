/* The storage and execution of a cluster's instances (cluster_cas.c): a worker's store and executor
 * on its private port, and a scheduler's REAPI services over the store sharded across the workers of
 * its view, with actions run on those workers; each with the object store of --external_storage
 * behind it (external_storage.h). */
#ifndef CAIRN_CMD_CLUSTER_CAS_H
#define CAIRN_CMD_CLUSTER_CAS_H

#include "blobstore/blobstore.h"
#include "cmd/executor_setup.h"
#include "cmd/external_storage.h"
#include "gateway/gateway.h"
#include "membership/membership.h"
#include "rpc/rpc.h"

typedef struct cluster_cas_config {
	const char *host;        /* the private address */
	int port;                /* the private port (a worker serves its store there) */
	const char *data_dir;    /* a worker's CAS */
	int64_t cas_max_size;
	int public_port;         /* a scheduler's, for clients (0 picks a free one) */
	bool public_bind_to_any; /* else the private address only */
	int replicas;
	const char *self_id;     /* this instance's member id */
	exec_flags exec;         /* a worker's executor */
	const rpc_method *methods; /* a scheduler's: served on the public port next to the REAPI */
	size_t nmethods;
	/* the object store: a worker's CAS is written and read through it (EXTERNAL_CAS), a scheduler's
	 * action cache is backed up to it (EXTERNAL_AC) */
	const external_flags *external;
	int64_t peer_timeout_ms;  /* deadline of a call to another worker's CAS without blob bytes */
	int64_t peer_cooldown_ms; /* how long a worker that stopped answering is skipped */
	struct cluster_ac *ac; /* a scheduler's action cache shared with its peers (cluster_ac.c) */
} cluster_cas_config;

typedef struct cluster_cas cluster_cas;

cairn_status cluster_cas_worker(const cluster_cas_config *cfg, cluster_cas **out);
cairn_status cluster_cas_scheduler(const cluster_cas_config *cfg, cluster_cas **out);
int cluster_cas_public_port(const cluster_cas *c);
/* The gateway serving the REAPI (a scheduler's, or a worker's CAS). */
gateway *cluster_cas_gateway(const cluster_cas *c);
/* "host:port", or "[host]:port" for an IPv6 address, into out. */
void cluster_addr_port(const char *host, int port, char *out, size_t cap);
/* The blobs in a worker's CAS (0 for a scheduler's, which holds none). */
uint64_t cluster_cas_blobs(cluster_cas *c);
/* The on_change of the group of all instances: the shard (and a scheduler's runner) follows the
 * view's workers. */
void cluster_cas_view_changed(void *arg, const member_view *v);
/* Between changes of the view (each second): a scheduler's runner learns the workers' free slots,
 * which change without a member joining or leaving. */
void cluster_cas_view_stats(cluster_cas *c, const member_view *v);
/* A worker's executor pools now, as the views carry them (at most cap); 0 without an executor. */
size_t cluster_cas_pools(cluster_cas *c, member_pool *out, size_t cap);
/* Housekeeping, about once a second. */
void cluster_cas_tick(cluster_cas *c);
/* Stops serving (calls in flight are cancelled) and frees everything; NULL is fine. */
void cluster_cas_stop(cluster_cas *c);

#endif
