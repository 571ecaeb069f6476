/* Packets to and from protobuf (proto/cairn/cluster.proto). Everything a datagram says is checked
 * before the engine sees it: ids are UUID-sized, addresses numeric, ports in range, strings
 * bounded; anything else drops the datagram. */
#include "membership/internal.h"

#include "cairn/cluster.pb-c.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

typedef Cairn__V1__Member pb_member;
typedef Cairn__V1__Packet pb_packet;
typedef Cairn__V1__Property pb_property;

#define MAX_ANNOTATIONS 16

/* the engine's enums are the wire's numbers */
_Static_assert((int)CAIRN__V1__MEMBER__ROLE__SCHEDULER == (int)MEMBER_SCHEDULER &&
                   (int)CAIRN__V1__MEMBER__ROLE__WORKER == (int)MEMBER_WORKER, "roles");
_Static_assert((int)CAIRN__V1__MEMBER__STATE__SUSPECT == (int)SWIM_SUSPECT &&
                   (int)CAIRN__V1__MEMBER__STATE__LEFT == (int)SWIM_LEFT, "states");
_Static_assert((int)CAIRN__V1__PACKET__KIND__PING_REQ == (int)SWIM_PING_REQ &&
                   (int)CAIRN__V1__PACKET__KIND__NACK == (int)SWIM_NACK, "kinds");

/* Room for one member's protobuf form: the message, its stats and its annotations. */
typedef struct pb_slot {
	pb_member m;
	Cairn__V1__MemberStats stats;
	pb_property props[MAX_ANNOTATIONS];
	pb_property *pp[MAX_ANNOTATIONS];
	char text[256];
} pb_slot;

static void to_pb(const swim_node *n, bool details, pb_slot *sl)
{
	cairn__v1__member__init(&sl->m);
	sl->m.id = (char *)n->id;
	sl->m.host = (char *)n->host;
	sl->m.port = n->port;
	sl->m.role = (Cairn__V1__Member__Role)n->role;
	sl->m.incarnation = n->inc;
	sl->m.state = (Cairn__V1__Member__State)n->state;
	if (!details)
		return;
	cairn__v1__member_stats__init(&sl->stats);
	sl->stats.load_average = n->stats.load_average;
	sl->stats.disk_used_bytes = n->stats.disk_used;
	sl->stats.disk_free_bytes = n->stats.disk_free;
	sl->stats.blobs = n->stats.blobs;
	sl->m.stats = &sl->stats;
	/* "k=v,k=v" into properties that point into a copy */
	memcpy(sl->text, n->annotations, sizeof sl->text);
	char *save = NULL;
	for (char *kv = strtok_r(sl->text, ",", &save); kv && sl->m.n_annotations < MAX_ANNOTATIONS;
	     kv = strtok_r(NULL, ",", &save)) {
		pb_property *pr = &sl->props[sl->m.n_annotations];
		cairn__v1__property__init(pr);
		char *eq = strchr(kv, '=');
		pr->name = kv;
		pr->value = eq ? (*eq = 0, eq + 1) : (char *)"";
		sl->pp[sl->m.n_annotations++] = pr;
	}
	sl->m.annotations = sl->pp;
}

size_t swim_encode(const swim_packet *p, uint8_t *buf, size_t cap)
{
	static const size_t most = SWIM_SYNC_PER_PACKET > SWIM_GOSSIP_PER_PACKET ? SWIM_SYNC_PER_PACKET
	                                                                         : SWIM_GOSSIP_PER_PACKET;
	if (p->n > most)
		return 0;
	pb_slot *slots = cairn_xcalloc(p->n + 1, sizeof *slots);
	pb_member *gossip[SWIM_SYNC_PER_PACKET > SWIM_GOSSIP_PER_PACKET ? SWIM_SYNC_PER_PACKET : SWIM_GOSSIP_PER_PACKET];
	pb_packet pk = CAIRN__V1__PACKET__INIT;
	pk.kind = (Cairn__V1__Packet__Kind)p->kind;
	pk.group = (char *)p->group;
	pk.seq = p->seq;
	pk.announce = p->announce;
	to_pb(&p->sender, true, &slots[0]);
	pk.sender = &slots[0].m;
	pk.target_id = (char *)p->target_id;
	pk.target_host = (char *)p->target_host;
	pk.target_port = p->target_port;
	for (size_t i = 0; i < p->n; i++) {
		/* a member list (SYNC, JOIN) carries the details; gossip only identity and state */
		to_pb(&p->nodes[i], p->kind == SWIM_SYNC || p->kind == SWIM_JOIN, &slots[i + 1]);
		gossip[i] = &slots[i + 1].m;
	}
	pk.n_gossip = p->n;
	pk.gossip = gossip;
	size_t len = protobuf_c_message_get_packed_size(&pk.base);
	if (len <= cap)
		protobuf_c_message_pack(&pk.base, buf);
	else
		len = 0;
	free(slots);
	return len;
}

static bool copy_str(char *out, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (n >= cap)
		return false;
	memcpy(out, s, n + 1);
	return true;
}

static bool numeric_host(const char *h)
{
	unsigned char a[16];
	return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

static bool from_pb(const pb_member *m, swim_node *n)
{
	memset(n, 0, sizeof *n);
	if (!m || strlen(m->id) != MEMBER_ID_LEN || !copy_str(n->id, sizeof n->id, m->id) ||
	    !copy_str(n->host, sizeof n->host, m->host) || !numeric_host(n->host) || m->port == 0 ||
	    m->port > 65535 || (m->role != CAIRN__V1__MEMBER__ROLE__SCHEDULER && m->role != CAIRN__V1__MEMBER__ROLE__WORKER) ||
	    m->state > CAIRN__V1__MEMBER__STATE__LEFT)
		return false;
	n->port = (uint16_t)m->port;
	n->role = (member_role)m->role;
	n->inc = m->incarnation;
	n->state = (enum swim_state)m->state;
	if (m->stats) {
		n->stats.load_average = m->stats->load_average;
		n->stats.disk_used = m->stats->disk_used_bytes;
		n->stats.disk_free = m->stats->disk_free_bytes;
		n->stats.blobs = m->stats->blobs;
	}
	size_t at = 0;
	for (size_t i = 0; i < m->n_annotations && i < MAX_ANNOTATIONS; i++) {
		int w = snprintf(n->annotations + at, sizeof n->annotations - at, "%s%s=%s", at ? "," : "",
		                 m->annotations[i]->name, m->annotations[i]->value);
		if (w < 0 || (size_t)w >= sizeof n->annotations - at) {
			n->annotations[at] = 0; /* what does not fit is left out */
			break;
		}
		at += (size_t)w;
	}
	return true;
}

bool swim_decode(const uint8_t *buf, size_t len, swim_packet *out)
{
	memset(out, 0, sizeof *out);
	pb_packet *pk = cairn__v1__packet__unpack(NULL, len, buf);
	if (!pk)
		return false;
	bool ok = pk->kind <= CAIRN__V1__PACKET__KIND__NACK && copy_str(out->group, sizeof out->group, pk->group) &&
	          from_pb(pk->sender, &out->sender) && out->sender.state <= SWIM_LEFT &&
	          copy_str(out->target_host, sizeof out->target_host, pk->target_host) && pk->target_port <= 65535 &&
	          pk->n_gossip <= SWIM_SYNC_PER_PACKET;
	if (ok && pk->target_id[0])
		ok = copy_str(out->target_id, sizeof out->target_id, pk->target_id);
	if (ok && pk->kind == CAIRN__V1__PACKET__KIND__PING_REQ)
		ok = numeric_host(out->target_host) && pk->target_port > 0;
	if (ok) {
		out->kind = (enum swim_kind)pk->kind;
		out->seq = pk->seq;
		out->announce = pk->announce;
		out->target_port = (uint16_t)pk->target_port;
		out->nodes = cairn_xcalloc(pk->n_gossip + 1, sizeof *out->nodes);
		for (size_t i = 0; ok && i < pk->n_gossip; i++)
			ok = from_pb(pk->gossip[i], &out->nodes[out->n++]);
	}
	cairn__v1__packet__free_unpacked(pk, NULL);
	if (!ok)
		swim_packet_free(out);
	return ok;
}

void swim_packet_free(swim_packet *p)
{
	free(p->nodes);
	p->nodes = NULL;
	p->n = 0;
}
