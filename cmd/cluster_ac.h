/* The action cache a cluster's schedulers share (cluster_ac.c): the peers' backing for the
 * scheduler's gateway, the peer service on the private address and port, and the schedulers' view
 * that says who the peers are. */
#ifndef CAIRN_CMD_CLUSTER_AC_H
#define CAIRN_CMD_CLUSTER_AC_H

#include "gateway/gateway.h"
#include "membership/membership.h"

typedef struct cluster_ac cluster_ac;

cairn_status cluster_ac_new(cluster_ac **out);
/* The backing to give the scheduler's gateway: the peers, then `next` (the object store, or none).
 * Once. */
cairn_status cluster_ac_over(cluster_ac *a, gateway_ac_backing next, gateway_ac_backing *out);
/* Serves g's own entries to the peers on the private address and port. */
cairn_status cluster_ac_serve(cluster_ac *a, gateway *g, const char *host, int port);
/* The on_change of the schedulers' group: the peers follow the view's live schedulers. */
void cluster_ac_view_changed(void *arg, const member_view *v);
/* Stops the peer service (before the gateway goes). */
void cluster_ac_stop_serving(cluster_ac *a);
/* After the gateway's own server stopped: ends the calls to peers and frees everything; NULL is fine. */
void cluster_ac_free(cluster_ac *a);

#endif
