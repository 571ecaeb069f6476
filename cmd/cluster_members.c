/* /cairn.v1.Cluster/Members on a scheduler's public port: the schedulers' view and the view of all
 * instances, each with its version and its members' details (role, suspicion, a worker's pools,
 * stats and annotations), as `cairn members` prints them. The views are copies taken under the
 * groups' locks, which the groups' threads hold only while the engine runs (never blocking), so
 * the call answers at once on its poller thread. */
#include <pthread.h>
#include <stdlib.h>

#include "cairn/members.pb-c.h"
#include "cmd/cluster_members.h"

struct cluster_members {
	pthread_mutex_t mu; /* held while a call reads the groups: they are not stopped meanwhile */
	member_group *schedulers, *all;
};

cluster_members *cluster_members_new(void)
{
	cluster_members *m = cairn_xcalloc(1, sizeof *m);
	pthread_mutex_init(&m->mu, NULL);
	return m;
}

void cluster_members_set_groups(cluster_members *m, member_group *schedulers, member_group *all)
{
	pthread_mutex_lock(&m->mu);
	m->schedulers = schedulers;
	m->all = all;
	pthread_mutex_unlock(&m->mu);
}

void cluster_members_free(cluster_members *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* A group's view as a MemberView message in the call's arena. */
static Cairn__V1__MemberView *view_of(rpc_call *call, member_group *g)
{
	member_view v;
	member_group_view(g, &v);
	size_t len;
	uint8_t *packed = member_view_pack(&v, &len);
	member_view_free(&v);
	ProtobufCAllocator alloc = {cairn_arena_alloc_cb, cairn_arena_free_cb, rpc_call_arena(call)};
	Cairn__V1__MemberView *pv = cairn__v1__member_view__unpack(&alloc, len, packed);
	free(packed);
	return pv;
}

static void members(rpc_call *call, void *service)
{
	cluster_members *m = service;
	cairn_status st = cairn_ok();
	Cairn__V1__MembersResponse resp = CAIRN__V1__MEMBERS_RESPONSE__INIT;
	if (!rpc_call_unpack_request(call, &cairn__v1__members_request__descriptor)) {
		st = cairn_err(CAIRN_INVALID_ARGUMENT, "the MembersRequest is malformed");
	} else {
		pthread_mutex_lock(&m->mu);
		if (m->schedulers && m->all) {
			resp.schedulers = view_of(call, m->schedulers);
			resp.all = view_of(call, m->all);
		} else {
			st = cairn_err(CAIRN_UNAVAILABLE, "this scheduler is starting or stopping: its member views are not up");
		}
		pthread_mutex_unlock(&m->mu);
		if (cairn_is_ok(&st) && (!resp.schedulers || !resp.all))
			st = cairn_err(CAIRN_INTERNAL, "a member view did not pack");
	}
	rpc_call_reply(call, &resp.base, &st);
}

rpc_method cluster_members_method(cluster_members *m)
{
	return (rpc_method){"/cairn.v1.Cluster/Members", RPC_UNARY, members, m};
}
