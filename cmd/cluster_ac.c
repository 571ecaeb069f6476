/* The action cache shared between a cluster's schedulers, as cmd composes it (gateway.h, "the
 * action cache shared between schedulers"): the gateway's backing is the peers' decorator, with the
 * object-store backup (if any) as its `next`; the peers are the live
 * schedulers of the schedulers' view (a suspect is left out until it refutes, so that lookups do not
 * wait on a scheduler that is likely dead), each reached on its private address and port, where
 * this scheduler serves its own entries too. */
#include <stdlib.h>
#include <string.h>

#include "cmd/cluster_ac.h"
#include "cmd/cluster_cas.h"

#include "rpc/rpc.h"

struct cluster_ac {
	rpc_client *client;
	gateway_ac_peers *peers;
	rpc_server *srv;
};

cairn_status cluster_ac_new(cluster_ac **out)
{
	cluster_ac *a = cairn_xcalloc(1, sizeof *a);
	cairn_status st = rpc_client_start(&(rpc_client_config){0}, &a->client);
	if (!cairn_is_ok(&st)) {
		cluster_ac_free(a);
		return st;
	}
	*out = a;
	return st;
}

cairn_status cluster_ac_over(cluster_ac *a, gateway_ac_backing next, gateway_ac_backing *out)
{
	cairn_status st = gateway_ac_peers_new(&(gateway_ac_peers_config){.client = a->client, .next = next}, &a->peers);
	if (cairn_is_ok(&st))
		*out = gateway_ac_peers_backing(a->peers);
	return st;
}

cairn_status cluster_ac_serve(cluster_ac *a, gateway *g, const char *host, int port)
{
	rpc_method methods[4];
	size_t n = gateway_ac_peer_methods(g, methods, 4);
	char addr[MEMBER_HOST_MAX + 8];
	cluster_addr_port(host, port, addr, sizeof addr);
	rpc_server_config rc = {.address = addr, .threads = 2, .max_message_size = 8 << 20};
	cairn_status st = rpc_server_start(&rc, methods, n, &a->srv);
	if (cairn_is_ok(&st))
		LOG_INFO("cluster", "scheduler serving its action cache to its peers address=%s", addr);
	return st;
}

void cluster_ac_view_changed(void *arg, const member_view *v)
{
	cluster_ac *a = arg;
	if (!a->peers)
		return;
	gateway_ac_peer *m = cairn_xcalloc(v->n + 1, sizeof *m);
	char(*targets)[MEMBER_HOST_MAX + 8] = cairn_xcalloc(v->n + 1, sizeof *targets);
	size_t n = 0;
	for (size_t i = 0; i < v->n; i++) {
		const member_info *mi = &v->members[i];
		if (mi->role != MEMBER_SCHEDULER || mi->suspect)
			continue;
		cluster_addr_port(mi->host, mi->port, targets[n], sizeof targets[n]);
		m[n] = (gateway_ac_peer){.id = mi->id, .target = mi->self ? NULL : targets[n]};
		n++;
	}
	gateway_ac_peers_set(a->peers, m, n);
	LOG_INFO("cluster", "the action cache is shared with the view's schedulers schedulers=%zu ver=%llu", n,
	         (unsigned long long)v->version);
	free(targets);
	free(m);
}

void cluster_ac_stop_serving(cluster_ac *a)
{
	if (a && a->srv) {
		rpc_server_stop(a->srv);
		a->srv = NULL;
	}
}

void cluster_ac_free(cluster_ac *a)
{
	if (!a)
		return;
	cluster_ac_stop_serving(a);
	if (a->client)
		rpc_client_stop(a->client); /* every call to a peer ends before the peers go */
	gateway_ac_peers_free(a->peers);
	free(a);
}
