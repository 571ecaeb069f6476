/* membership internals: how the pieces of membership.h fit.
 *
 *   table.c  the member table: the update rules of SWIM (incarnations, which news wins), the gossip
 *            queue, tombstones, the view and its version
 *   swim.c   the protocol engine: the probe cycle, indirect probes, suspicion timeouts, joins and
 *            full-list swaps, and the handling of each packet kind; no clock and no socket of its own
 *   wire.c   packets to and from protobuf (proto/cairn/cluster.proto)
 *   udp.c    the transport: a group's socket(s), its thread, multicast
 *   view.c   printing and freeing views
 *   addr.c   picking the private address from a CIDR
 *   id.c     the instance's UUID in its data directory
 * The engine is single-threaded: udp.c calls it under the group's mutex.
 */
#ifndef CAIRN_MEMBERSHIP_INTERNAL_H
#define CAIRN_MEMBERSHIP_INTERNAL_H

#include "membership/membership.h"

#define MEMBER_LOG "membership"
#define SWIM_MAX_PACKET 60000 /* bytes in one datagram, under UDP's 65,507 */
#define SWIM_GOSSIP_PER_PACKET 16
/* Members per SYNC (or JOIN) datagram: with its details (stats, pools, annotations) a member takes
 * at most about 3.5 KB on the wire, so 16 of them and the sender fit (unit_membership packs the
 * worst case). */
#define SWIM_SYNC_PER_PACKET 16
#define SWIM_RELAYS 64          /* indirect probes this member runs for others at once */
#define SWIM_SILENT_MAX 8       /* silent periods before an instance suspects all the same */

enum swim_state { SWIM_ALIVE = 0, SWIM_SUSPECT = 1, SWIM_DEAD = 2, SWIM_LEFT = 3 };
enum swim_kind { SWIM_PING = 0, SWIM_ACK = 1, SWIM_PING_REQ = 2, SWIM_JOIN = 3, SWIM_SYNC = 4, SWIM_NACK = 5 };

typedef struct swim_node {
	char id[MEMBER_ID_LEN + 1];
	char host[MEMBER_HOST_MAX];
	uint16_t port; /* the private port */
	member_role role;
	uint64_t inc;
	enum swim_state state;
	int64_t since;   /* when it entered its state: suspicion and tombstone deadlines */
	int64_t told_at; /* when it was last told of its own tombstone */
	member_stats stats;
	member_pool pools[MEMBER_POOLS_MAX];
	size_t npools;
	char annotations[256];
} swim_node;

static inline bool swim_visible(const swim_node *n) { return n->state == SWIM_ALIVE || n->state == SWIM_SUSPECT; }

/* One piece of news to piggyback: a node's identity and state, sent `left` more times. */
typedef struct swim_news {
	swim_node node;
	int left;
} swim_news;

/* A packet, decoded (wire.c). Node arrays point into `nodes`. */
typedef struct swim_packet {
	enum swim_kind kind;
	char group[32];
	uint64_t seq;
	bool announce;
	swim_node sender;
	char target_id[MEMBER_ID_LEN + 1];
	char target_host[MEMBER_HOST_MAX];
	uint16_t target_port; /* the group port to probe */
	swim_node *nodes;
	size_t n;
} swim_packet;

/* Packs p into buf (at most cap bytes); returns the length, 0 when it does not fit. */
size_t swim_encode(const swim_packet *p, uint8_t *buf, size_t cap);
/* Decodes a datagram; false for anything malformed (which is dropped). Free with swim_packet_free. */
bool swim_decode(const uint8_t *buf, size_t len, swim_packet *out);
void swim_packet_free(swim_packet *p);
/* Sets a node's pools from what the instance reports, within what a datagram carries (at most
 * MEMBER_POOLS_MAX pools of MEMBER_POOL_PROPS properties each); false when something was left out. */
bool swim_set_pools(swim_node *n, const member_pool *pools, size_t npools);

typedef void (*swim_send_fn)(void *ctx, const char *host, uint16_t port, const uint8_t *buf, size_t len);

typedef struct swim_config {
	char group[32];
	uint16_t port_offset;
	int64_t interval_ns, timeout_ns, suspect_ns, tombstone_ns, join_every_ns, sync_every_ns;
	int indirect; /* members asked to probe indirectly */
	uint64_t seed; /* of the random choices */
} swim_config;

typedef struct swim_seed {
	char host[MEMBER_HOST_MAX];
	uint16_t port;  /* the group port */
	bool announce; /* a multicast group: every member hears it */
} swim_seed;

typedef struct swim_relay {
	bool used;
	uint64_t their_seq, our_seq;
	char origin_host[MEMBER_HOST_MAX];
	uint16_t origin_port;
	int64_t nack_at; /* no ACK from the target by then: NACK the origin */
} swim_relay;

typedef struct swim {
	swim_config cfg;
	swim_node self;
	swim_node *nodes; /* every other member known, in any state; probed in this order */
	size_t n, cap;
	swim_news *news;
	size_t nnews, capnews;
	swim_seed *seeds;
	size_t nseeds;
	struct {
		bool active, acked, indirect;
		char id[MEMBER_ID_LEN + 1];
		uint64_t seq;
		int64_t start;
	} probe;
	size_t probe_next;
	swim_relay relays[SWIM_RELAYS];
	uint64_t seq;
	int64_t next_probe, next_join, next_sync;
	int64_t heard_at; /* the last packet from anyone */
	int silent;       /* probe periods in a row that failed with no packet from anyone */
	uint64_t version;
	bool changed;   /* the view changed since swim_take_change */
	bool warned_full;
	uint64_t rng;
	swim_send_fn send;
	void *ctx;
	uint8_t buf[SWIM_MAX_PACKET];
} swim;

/* table.c */
void swim_table_init(swim *s);
void swim_table_destroy(swim *s);
swim_node *swim_find(swim *s, const char *id);
/* Applies news of a node (gossip, a SYNC entry, or the sender's own state with from_sender). */
void swim_apply(swim *s, const swim_node *u, bool from_sender, int64_t now);
/* Our own verdicts: SUSPECT, DEAD. */
void swim_set_state(swim *s, swim_node *n, enum swim_state st, int64_t now);
/* Queues news of a node for piggybacking. */
void swim_news_add(swim *s, const swim_node *n);
/* Takes up to max pieces of news for one packet. */
size_t swim_news_take(swim *s, swim_node *out, size_t max);
/* Visible members besides self. */
size_t swim_visible_count(const swim *s);
/* Drops tombstones older than tombstone_ns. */
void swim_expire(swim *s, int64_t now);
void swim_view(const swim *s, member_view *out);
uint64_t swim_rand(swim *s);

/* swim.c */
void swim_init(swim *s, const swim_config *cfg, const swim_node *self, swim_send_fn send, void *ctx);
void swim_destroy(swim *s);
void swim_add_seed(swim *s, const char *host, uint16_t group_port, bool announce);
void swim_tick(swim *s, int64_t now);
void swim_receive(swim *s, const uint8_t *buf, size_t len, int64_t now);
/* Tells every visible member that this one leaves. */
void swim_leave(swim *s, int64_t now);
/* Sends a packet of the given kind to host:port (a group port) with news piggybacked. */
void swim_send_packet(swim *s, swim_packet *p, const char *host, uint16_t port);
/* True once per change of the view. */
bool swim_take_change(swim *s);

/* view.c */
void member_view_sort(member_view *v);

#endif
