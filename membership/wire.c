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
typedef Cairn__V1__MemberPool pb_pool;

#define MAX_ANNOTATIONS 16

/* the engine's enums are the wire's numbers */
_Static_assert((int)CAIRN__V1__MEMBER__ROLE__SCHEDULER == (int)MEMBER_SCHEDULER &&
                   (int)CAIRN__V1__MEMBER__ROLE__WORKER == (int)MEMBER_WORKER, "roles");
_Static_assert((int)CAIRN__V1__MEMBER__STATE__SUSPECT == (int)SWIM_SUSPECT &&
                   (int)CAIRN__V1__MEMBER__STATE__LEFT == (int)SWIM_LEFT, "states");
_Static_assert((int)CAIRN__V1__PACKET__KIND__PING_REQ == (int)SWIM_PING_REQ &&
                   (int)CAIRN__V1__PACKET__KIND__NACK == (int)SWIM_NACK, "kinds");

/* "k=v,k=v" as at most max properties, in the arena. */
static pb_property **to_props(cairn_arena *a, const char *text, size_t max, size_t *n)
{
	char *copy = cairn_arena_strndup(a, text, strlen(text));
	pb_property **pp = cairn_arena_alloc(a, max * sizeof *pp);
	*n = 0;
	char *save = NULL;
	for (char *kv = strtok_r(copy, ",", &save); kv && *n < max; kv = strtok_r(NULL, ",", &save)) {
		pb_property *pr = cairn_arena_alloc(a, sizeof *pr);
		cairn__v1__property__init(pr);
		char *eq = strchr(kv, '=');
		pr->name = kv;
		pr->value = eq ? (*eq = 0, eq + 1) : (char *)"";
		pp[(*n)++] = pr;
	}
	return pp;
}

/* A member's protobuf form, in the arena: identity and state, and with details its stats, pools
 * and annotations. */
static pb_member *to_pb(cairn_arena *a, const swim_node *n, bool details)
{
	pb_member *m = cairn_arena_alloc(a, sizeof *m);
	cairn__v1__member__init(m);
	m->id = cairn_arena_strndup(a, n->id, strlen(n->id));
	m->host = cairn_arena_strndup(a, n->host, strlen(n->host));
	m->port = n->port;
	m->role = (Cairn__V1__Member__Role)n->role;
	m->incarnation = n->inc;
	m->state = (Cairn__V1__Member__State)n->state;
	if (!details)
		return m;
	m->stats = cairn_arena_alloc(a, sizeof *m->stats);
	cairn__v1__member_stats__init(m->stats);
	m->stats->load_average = n->stats.load_average;
	m->stats->disk_used_bytes = n->stats.disk_used;
	m->stats->disk_free_bytes = n->stats.disk_free;
	m->stats->blobs = n->stats.blobs;
	m->annotations = to_props(a, n->annotations, MAX_ANNOTATIONS, &m->n_annotations);
	m->pools = cairn_arena_alloc(a, (n->npools + 1) * sizeof *m->pools);
	for (size_t i = 0; i < n->npools && i < MEMBER_POOLS_MAX; i++) {
		pb_pool *p = cairn_arena_alloc(a, sizeof *p);
		cairn__v1__member_pool__init(p);
		p->properties = to_props(a, n->pools[i].properties, MEMBER_POOL_PROPS, &p->n_properties);
		p->total = n->pools[i].total;
		p->free = n->pools[i].free;
		m->pools[m->n_pools++] = p;
	}
	return m;
}

size_t swim_encode(const swim_packet *p, uint8_t *buf, size_t cap)
{
	static const size_t most = SWIM_SYNC_PER_PACKET > SWIM_GOSSIP_PER_PACKET ? SWIM_SYNC_PER_PACKET
	                                                                         : SWIM_GOSSIP_PER_PACKET;
	if (p->n > most)
		return 0;
	cairn_arena *a = cairn_arena_new(16 << 10);
	pb_member *gossip[SWIM_SYNC_PER_PACKET > SWIM_GOSSIP_PER_PACKET ? SWIM_SYNC_PER_PACKET : SWIM_GOSSIP_PER_PACKET];
	pb_packet pk = CAIRN__V1__PACKET__INIT;
	pk.kind = (Cairn__V1__Packet__Kind)p->kind;
	pk.group = (char *)p->group;
	pk.seq = p->seq;
	pk.announce = p->announce;
	pk.sender = to_pb(a, &p->sender, true);
	pk.target_id = (char *)p->target_id;
	pk.target_host = (char *)p->target_host;
	pk.target_port = p->target_port;
	for (size_t i = 0; i < p->n; i++) /* a member list (SYNC, JOIN) carries the details; gossip only identity and state */
		gossip[i] = to_pb(a, &p->nodes[i], p->kind == SWIM_SYNC || p->kind == SWIM_JOIN);
	pk.n_gossip = p->n;
	pk.gossip = gossip;
	size_t len = protobuf_c_message_get_packed_size(&pk.base);
	if (len <= cap)
		protobuf_c_message_pack(&pk.base, buf);
	else
		len = 0;
	cairn_arena_free(a);
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

/* Properties as "k=v,k=v": at most max of them, and those that do not fit are left out. */
static void props_text(pb_property *const *props, size_t n, size_t max, char *out, size_t cap)
{
	size_t at = 0;
	out[0] = 0;
	for (size_t i = 0; i < n && i < max; i++) {
		int w = snprintf(out + at, cap - at, "%s%s=%s", at ? "," : "", props[i]->name, props[i]->value);
		if (w < 0 || (size_t)w >= cap - at) {
			out[at] = 0;
			break;
		}
		at += (size_t)w;
	}
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
	for (size_t i = 0; i < m->n_pools && n->npools < MEMBER_POOLS_MAX; i++) {
		const pb_pool *pl = m->pools[i];
		if (pl->free > pl->total)
			return false;
		member_pool *p = &n->pools[n->npools++];
		p->total = pl->total;
		p->free = pl->free;
		props_text(pl->properties, pl->n_properties, MEMBER_POOL_PROPS, p->properties, sizeof p->properties);
	}
	props_text(m->annotations, m->n_annotations, MAX_ANNOTATIONS, n->annotations, sizeof n->annotations);
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

bool swim_set_pools(swim_node *n, const member_pool *pools, size_t npools)
{
	bool whole = npools <= MEMBER_POOLS_MAX;
	n->npools = whole ? npools : MEMBER_POOLS_MAX;
	for (size_t i = 0; i < n->npools; i++) {
		member_pool *p = &n->pools[i];
		*p = (member_pool){.total = pools[i].total, .free = pools[i].free};
		size_t len = strnlen(pools[i].properties, sizeof p->properties);
		if (len == sizeof p->properties) {
			whole = false;
			len--;
		}
		memcpy(p->properties, pools[i].properties, len);
		/* past MEMBER_POOL_PROPS properties, cut at the comma after the last one carried */
		size_t k = 0;
		for (char *c = p->properties; *c; c++)
			if (*c == ',' && ++k == MEMBER_POOL_PROPS) {
				*c = 0;
				whole = false;
				break;
			}
	}
	return whole;
}

/* A view's member as the node it was, for to_pb: a suspect is SUSPECT, anyone else ALIVE. */
static void info_node(const member_info *m, swim_node *n)
{
	memset(n, 0, sizeof *n);
	memcpy(n->id, m->id, sizeof n->id);
	memcpy(n->host, m->host, sizeof n->host);
	n->port = m->port;
	n->role = m->role;
	n->state = m->suspect ? SWIM_SUSPECT : SWIM_ALIVE;
	n->stats = m->stats;
	n->npools = m->npools < MEMBER_POOLS_MAX ? m->npools : MEMBER_POOLS_MAX;
	memcpy(n->pools, m->pools, sizeof n->pools);
	memcpy(n->annotations, m->annotations, sizeof n->annotations);
}

uint8_t *member_view_pack(const member_view *v, size_t *len)
{
	cairn_arena *a = cairn_arena_new(64 << 10);
	Cairn__V1__MemberView mv = CAIRN__V1__MEMBER_VIEW__INIT;
	mv.version = v->version;
	mv.members = cairn_arena_alloc(a, (v->n + 1) * sizeof *mv.members);
	swim_node n;
	for (size_t i = 0; i < v->n; i++) {
		info_node(&v->members[i], &n);
		mv.members[mv.n_members++] = to_pb(a, &n, true);
		if (v->members[i].self)
			mv.self_id = mv.members[i]->id;
	}
	*len = protobuf_c_message_get_packed_size(&mv.base);
	uint8_t *out = cairn_xmalloc(*len + 1);
	protobuf_c_message_pack(&mv.base, out);
	cairn_arena_free(a);
	return out;
}

void swim_packet_free(swim_packet *p)
{
	free(p->nodes);
	p->nodes = NULL;
	p->n = 0;
}
