/*
 * membership: who is in the cluster, as this instance sees it.
 *
 * A cairn cluster has two groups: the schedulers, and all instances (schedulers and workers).
 * Each group is a `member_group`: a UDP socket on the instance's private address (the private port
 * + 1000 for the schedulers, + 2000 for all) and a thread that runs the SWIM protocol on it, as
 * HashiCorp's memberlist does. There is no leader: every instance builds its own view from what
 * it hears, and views converge.
 *   - Each period (heartbeat_interval) an instance probes one other member, in a shuffled round
 *     robin: PING, answered by ACK. Without an answer after half a period it asks three others to
 *     probe it (PING_REQ); without an answer by the end of the period it suspects the member.
 *   - A suspect that hears of its suspicion refutes it with a higher incarnation number, which only
 *     the member itself raises. A suspect that has not refuted within suspect_timeout is dead and
 *     leaves the view. So one slow link does not evict a healthy member: its other peers vouch for
 *     it through the indirect probes. An instance that hears nothing at all (its own network is
 *     down) waits a few periods before it suspects anyone.
 *   - Joins, suspicions and deaths travel piggybacked on the probes (each a few times, about
 *     4·log(n+1)), so the load per member stays constant as the cluster grows. Every packet also
 *     carries its sender's own state (role, address, worker stats, executor pools, annotations),
 *     so what a view says of a member is at most a few periods old.
 *   - Discovery: with `static`, an instance sends JOIN to each listed seed that is not in its view
 *     (at start and every few periods after, which also heals partitions); the seed answers with
 *     its member list (SYNC) and spreads the newcomer. With `multicast`, JOINs go to a multicast
 *     group on the private network instead, and the members that do not know the sender answer.
 *     Every 30 periods each instance also swaps full lists with one random member, which repairs
 *     what gossip missed. A member that stops gracefully says LEFT and is removed at once.
 *   - Dead members are kept as tombstones for a while, so stale news cannot bring them back; a
 *     member that comes back (a restart keeps its id) hears its own tombstone and refutes it.
 * A view's version moves each time a member joins or leaves it, and each change is logged as the
 * `Members {size:N, ver:V} [...]` block DESIGN.md shows.
 *
 * The protocol engine (swim.c) is pure: it is driven by received packets and the clock, and
 * sends through a callback, so tests run many instances over a simulated network with a
 * simulated clock. udp.c is the real transport; membership knows nothing of storage or services.
 */
#ifndef CAIRN_MEMBERSHIP_H
#define CAIRN_MEMBERSHIP_H

#include "common/common.h"

#include <stdio.h>

#define MEMBER_ID_LEN 36   /* a UUID in its text form */
#define MEMBER_HOST_MAX 46 /* INET6_ADDRSTRLEN */
#define MEMBER_MAX 4096    /* members a view holds at most; more are ignored with a warning */

typedef enum member_role { MEMBER_SCHEDULER = 1, MEMBER_WORKER = 2 } member_role;
typedef enum member_discovery { MEMBER_STATIC, MEMBER_MULTICAST } member_discovery;

typedef struct member_stats {
	double load_average;
	uint64_t disk_used, disk_free, blobs;
} member_stats;

/* A worker's executor pool. A member reports at most MEMBER_POOLS_MAX pools of at most
 * MEMBER_POOL_PROPS properties each (so that its state fits a datagram with room to spare);
 * what is past that is left out, with a warning from the member itself. */
#define MEMBER_POOLS_MAX 8
#define MEMBER_POOL_PROPS 16
typedef struct member_pool {
	char properties[256]; /* the pool's platform properties, "key=value,key=value" (sorted as given) */
	uint32_t total, free; /* executor slots */
} member_pool;

/* What an instance says of itself; the strings are copied. */
typedef struct member_self {
	const char *id;         /* a UUID (member_id_load) */
	member_role role;
	const char *host;       /* the private address, as a numeric IPv4 or IPv6 address */
	uint16_t port;          /* the private port */
	member_stats stats;
	const member_pool *pools; /* a worker's executor pools (copied); NULL when npools is 0 */
	size_t npools;
	const char *annotations; /* "key=value,key=value" or NULL */
} member_self;

typedef struct member_view member_view;

typedef struct member_config {
	const char *group;          /* "schedulers" or "all" */
	uint16_t port_offset;       /* the group's port is the private port + this (1000 or 2000) */
	member_discovery discovery;
	const char *static_members; /* static: "host:port,…", private ports of the seeds */
	const char *multicast_addr; /* multicast: the group's address, e.g. "239.255.77.77" */
	int64_t interval_ns;        /* probe period; 0: 1 s */
	int64_t suspect_timeout_ns; /* 0: 5 periods */
	/* Called on the group's thread after each change of the view, with the new view (valid
	 * during the call only); NULL to only log it. */
	void (*on_change)(void *arg, const member_view *v);
	void *arg;
} member_config;

typedef struct member_info {
	char id[MEMBER_ID_LEN + 1];
	char host[MEMBER_HOST_MAX];
	uint16_t port;
	member_role role;
	bool self, suspect;
	member_stats stats;
	member_pool pools[MEMBER_POOLS_MAX];
	size_t npools;
	char annotations[256];
} member_info;

struct member_view {
	uint64_t version;
	size_t n;
	member_info *members; /* sorted by address, then id */
};

typedef struct member_group member_group;

/* Binds the group's socket on self->host, starts its thread and the discovery. INVALID_ARGUMENT
 * for a malformed static_members or multicast address; the bind's error when the port is taken. */
cairn_status member_group_start(const member_config *cfg, const member_self *self, member_group **out);
/* Checks the discovery settings (static members, multicast address) without starting anything: the
 * INVALID_ARGUMENT member_group_start would give. */
cairn_status member_config_check(const member_config *cfg);
/* Says LEFT to the other members, stops the thread and frees the group. */
void member_group_stop(member_group *g);
/* Replaces the stats and executor pools (copied) this instance reports. Any thread. */
void member_group_update_self(member_group *g, const member_stats *stats, const member_pool *pools, size_t npools);
/* A copy of the current view; free with member_view_free. Any thread. */
void member_group_view(member_group *g, member_view *out);
void member_view_free(member_view *v);

/* Writes the view in the form every instance logs:
 *   Members {size:3, ver:3} [
 *           Member [172.17.0.3]:10081 - 5515cf45-9244-44df-b086-bc8eca4c83ae this
 *   ]                                                                                        */
void member_view_print(const member_view *v, FILE *out);
/* The view as a packed cairn.v1.MemberView (proto/cairn/cluster.proto), for a service that answers
 * with it; free() it. */
uint8_t *member_view_pack(const member_view *v, size_t *len);

/* The instance's id: read from DIR/member-id, or made (a random UUID) and kept there. */
cairn_status member_id_load(const char *dir, char out[MEMBER_ID_LEN + 1]);

/* The private address: the first address of a local interface inside cidr ("10.0.0.0/8",
 * "fd00::/8"); or, for a single-address cidr (/32, /128) that no interface lists but that can be
 * bound (any 127.x.y.z on Linux), that address. INVALID_ARGUMENT naming the local addresses when
 * there is none. */
cairn_status member_pick_address(const char *cidr, char out[MEMBER_HOST_MAX]);

#endif
