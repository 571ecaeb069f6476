/* The Members method of a scheduler's public port (cluster_members.c): its two member views, for
 * `cairn members`. */
#ifndef CAIRN_CMD_CLUSTER_MEMBERS_H
#define CAIRN_CMD_CLUSTER_MEMBERS_H

#include "membership/membership.h"
#include "rpc/rpc.h"

typedef struct cluster_members cluster_members;

cluster_members *cluster_members_new(void);
/* The groups the method answers from, once they run; (NULL, NULL) before they stop: a call then
 * gets UNAVAILABLE, and none is still reading them when this returns. */
void cluster_members_set_groups(cluster_members *m, member_group *schedulers, member_group *all);
/* /cairn.v1.Cluster/Members, to serve next to the REAPI; valid until cluster_members_free. */
rpc_method cluster_members_method(cluster_members *m);
void cluster_members_free(cluster_members *m);

#endif
