/* The action cache shared between schedulers, the calling side: a gateway_ac_backing that puts each
 * new entry to the schedulers that own it and asks them on a miss (see "the action cache shared
 * between schedulers" in gateway.h), in front of an optional `next` backing.
 *
 * Peers: one per (id, target) ever seen, each with its channel and its circuit breaker, kept in a
 * table until the backing is freed, so that a call never outlives its channel and a scheduler that
 * comes back finds its breaker's memory. Views: an immutable, refcounted array of the live
 * schedulers (a NULL peer for this one) with their rendezvous keys; a lookup holds its view until it
 * ends, a put only while it starts its calls. The lock guards the pointer to the current view and
 * the table; no call starts while it is held.
 *
 * Nothing here blocks: a put starts its calls and returns; a lookup is a chain of calls, each
 * started from the callback of the one before (on the rpc client's pollers), so at most one call of
 * a lookup is in flight and the chain ends within owners × timeout_ms. */
#include "gateway/internal.h"

#include <stdlib.h>
#include <string.h>

#include "cairn/ac_peer.pb-c.h"

#define AC_PEERS_MAX 1024 /* peers ever seen; far above any cluster's schedulers */
#define AC_OWNERS_MAX 16

typedef struct peer {
	char *id, *target;
	rpc_channel *ch;
	cairn_breaker breaker;
} peer;

typedef struct peers_view {
	atomic_size_t refs;
	size_t n;
	cairn_rendezvous_member *rv; /* in the same allocation, after p[] */
	peer *p[];                   /* NULL: this scheduler */
} peers_view;

struct gateway_ac_peers {
	gateway_ac_peers_config cfg;
	pthread_mutex_t mu;
	peers_view *view; /* under mu */
	peer **known;     /* under mu; never shrinks */
	size_t nknown;
	atomic_int puts_in_flight;
	atomic_uint_fast64_t puts, gets, skipped, dropped;
};

/* ---- views ----------------------------------------------------------------------------------- */

static peers_view *view_new(size_t n)
{
	size_t head = sizeof(peers_view) + n * sizeof(peer *);
	head = (head + _Alignof(cairn_rendezvous_member) - 1) / _Alignof(cairn_rendezvous_member) *
	       _Alignof(cairn_rendezvous_member);
	peers_view *v = cairn_xmalloc(head + n * sizeof(cairn_rendezvous_member));
	atomic_init(&v->refs, 1);
	v->n = 0;
	v->rv = (cairn_rendezvous_member *)((char *)v + head);
	return v;
}

static peers_view *view_get(gateway_ac_peers *p)
{
	pthread_mutex_lock(&p->mu);
	peers_view *v = p->view;
	atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&p->mu);
	return v;
}

/* The ids the view's rv point at belong to the peers, which outlive every view, except this
 * scheduler's: the view's own copy, freed with it. */
static void view_put(peers_view *v)
{
	if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < v->n; i++)
		if (!v->p[i])
			free((char *)v->rv[i].id);
	free(v);
}

/* The owners of an action in rank order: indices into v; returns how many. */
static size_t owners_of(const gateway_ac_peers *p, const peers_view *v, const cairn_digest *action, size_t *out)
{
	uint64_t scores[AC_OWNERS_MAX];
	return cairn_rendezvous_rank(v->rv, v->n, action, (size_t)p->cfg.owners, out, scores);
}

/* ---- peers ----------------------------------------------------------------------------------- */

/* The peer of (id, target), made the first time; NULL (logged) if it cannot be. Under mu. */
static peer *peer_of(gateway_ac_peers *p, const char *id, const char *target)
{
	for (size_t i = 0; i < p->nknown; i++)
		if (!strcmp(p->known[i]->id, id) && !strcmp(p->known[i]->target, target))
			return p->known[i];
	if (p->nknown == AC_PEERS_MAX) {
		LOG_WARN("ac", "scheduler left out of the shared action cache: too many peers seen peer=%s id=%s", target, id);
		return NULL;
	}
	rpc_channel *ch;
	cairn_status st = rpc_channel_open(target, 0, &ch);
	if (!cairn_is_ok(&st)) {
		LOG_WARN("ac", "scheduler left out of the shared action cache: %s peer=%s id=%s", cairn_status_str(&st),
		         target, id);
		return NULL;
	}
	peer *e = cairn_xcalloc(1, sizeof *e);
	e->id = cairn_xstrdup(id);
	e->target = cairn_xstrdup(target);
	e->ch = ch;
	cairn_breaker_init(&e->breaker, p->cfg.failure_threshold, p->cfg.cooldown_ms * 1000000LL);
	p->known[p->nknown++] = e;
	return e;
}

void gateway_ac_peers_set(gateway_ac_peers *p, const gateway_ac_peer *m, size_t n)
{
	peers_view *v = view_new(n);
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < n; i++) {
		peer *e = NULL;
		if (m[i].target && !(e = peer_of(p, m[i].id, m[i].target)))
			continue;
		v->p[v->n] = e;
		v->rv[v->n++] = (cairn_rendezvous_member){.key = cairn_rendezvous_key(m[i].id),
		                                          .id = e ? e->id : cairn_xstrdup(m[i].id)};
	}
	peers_view *old = p->view;
	p->view = v;
	pthread_mutex_unlock(&p->mu);
	view_put(old);
}

/* Whether a call may go to the peer now (counted); a peer skipped is counted too. */
static bool admit(gateway_ac_peers *p, peer *e)
{
	if (cairn_breaker_admit(&e->breaker, NULL))
		return true;
	atomic_fetch_add(&p->skipped, 1);
	return false;
}

static void record(peer *e, const cairn_status *st)
{
	switch (cairn_breaker_record(&e->breaker, st)) {
	case CAIRN_BREAKER_OPENED:
		LOG_WARN("ac", "peer scheduler unreachable, skipped for a while peer=%s id=%s last=%s", e->target, e->id,
		         cairn_status_str(st));
		break;
	case CAIRN_BREAKER_CLOSED:
		LOG_INFO("ac", "peer scheduler reachable again peer=%s id=%s", e->target, e->id);
		break;
	case CAIRN_BREAKER_SAME:
		break;
	}
}

/* ---- put ------------------------------------------------------------------------------------- */

typedef struct put_call {
	gateway_ac_peers *p;
	peer *e;
	cairn_digest action;
} put_call;

static void put_done(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	put_call *c = arg;
	record(c->e, &st);
	if (!cairn_is_ok(&st)) {
		char ds[CAIRN_DIGEST_STR_MAX];
		LOG_WARN("ac", "entry not stored on its peer owner: %s peer=%s action=%s", cairn_status_str(&st),
		         c->e->target, cairn_digest_str(&c->action, ds));
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	atomic_fetch_sub(&c->p->puts_in_flight, 1);
	free(c);
}

static void put_to(gateway_ac_peers *p, peer *e, const Cairn__V1__PutEntryRequest *req, const cairn_digest *action)
{
	if (!admit(p, e))
		return;
	if (atomic_fetch_add(&p->puts_in_flight, 1) >= p->cfg.max_puts_in_flight) {
		atomic_fetch_sub(&p->puts_in_flight, 1);
		record(e, &(cairn_status){.code = CAIRN_CANCELLED}); /* ends a probe the breaker let through */
		if (atomic_fetch_add(&p->dropped, 1) % 1024 == 0)
			LOG_WARN("ac", "too many entries on their way to peer schedulers; some are kept here only in_flight=%d",
			         p->cfg.max_puts_in_flight);
		return;
	}
	atomic_fetch_add(&p->puts, 1);
	put_call *c = cairn_xmalloc(sizeof *c);
	*c = (put_call){.p = p, .e = e, .action = *action};
	rpc_async_unary(p->cfg.client, e->ch, "/cairn.v1.ActionCachePeer/Put", &req->base,
	                &cairn__v1__put_entry_response__descriptor, p->cfg.timeout_ms, put_done, c);
}

static void peers_put(void *ctx, const char *instance, const cairn_digest *action, const void *data, size_t len)
{
	gateway_ac_peers *p = ctx;
	peers_view *v = view_get(p);
	size_t owners[AC_OWNERS_MAX];
	size_t n = owners_of(p, v, action, owners);
	cairn_arena *a = cairn_arena_new(256);
	Cairn__V1__PutEntryRequest req = CAIRN__V1__PUT_ENTRY_REQUEST__INIT;
	req.instance_name = (char *)(instance ? instance : "");
	req.action_digest = reapi_digest_to_pb(a, action);
	req.action_result = (ProtobufCBinaryData){.len = len, .data = (uint8_t *)data};
	for (size_t i = 0; i < n; i++)
		if (v->p[owners[i]])
			put_to(p, v->p[owners[i]], &req, action); /* packed before it returns */
	cairn_arena_free(a);
	view_put(v);
	if (p->cfg.next.put)
		p->cfg.next.put(p->cfg.next.ctx, instance, action, data, len);
}

/* ---- get ------------------------------------------------------------------------------------- */

typedef void (*get_cb)(void *arg, cairn_status st, uint8_t *data, size_t len);

typedef struct lookup {
	gateway_ac_peers *p;
	peers_view *v;
	size_t owners[AC_OWNERS_MAX];
	size_t n, next; /* owners[next] is the next to ask */
	peer *asking;
	char *instance;
	cairn_digest action;
	get_cb cb;
	void *arg;
} lookup;

static void lookup_end(lookup *l, cairn_status st, uint8_t *data, size_t len)
{
	get_cb cb = l->cb;
	void *arg = l->arg;
	view_put(l->v);
	free(l->instance);
	free(l);
	cb(arg, st, data, len);
}

static void ask_next(lookup *l);

/* `next` answered: its answer is the lookup's (the instance name stayed valid until now). */
static void next_got(void *arg, cairn_status st, uint8_t *data, size_t len) { lookup_end(arg, st, data, len); }

static void got(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	lookup *l = arg;
	record(l->asking, &st);
	if (!cairn_is_ok(&st)) {
		if (st.code != CAIRN_NOT_FOUND)
			LOG_DEBUG("ac", "peer scheduler did not answer a lookup: %s peer=%s", cairn_status_str(&st),
			          l->asking->target);
		return ask_next(l);
	}
	const Cairn__V1__GetEntryResponse *r = (const Cairn__V1__GetEntryResponse *)resp;
	uint8_t *data = cairn_xmalloc(r->action_result.len + 1);
	if (r->action_result.len)
		memcpy(data, r->action_result.data, r->action_result.len);
	size_t len = r->action_result.len;
	protobuf_c_message_free_unpacked(resp, NULL);
	lookup_end(l, st, data, len);
}

/* Asks the next owner that is not this scheduler and whose breaker lets a call through; after the
 * last, `next` (which answers the caller directly), else NOT_FOUND. */
static void ask_next(lookup *l)
{
	gateway_ac_peers *p = l->p;
	while (l->next < l->n) {
		peer *e = l->v->p[l->owners[l->next++]];
		if (!e || !admit(p, e))
			continue;
		l->asking = e;
		atomic_fetch_add(&p->gets, 1);
		cairn_arena *a = cairn_arena_new(256);
		Cairn__V1__GetEntryRequest req = CAIRN__V1__GET_ENTRY_REQUEST__INIT;
		req.instance_name = l->instance;
		req.action_digest = reapi_digest_to_pb(a, &l->action);
		rpc_async_unary(p->cfg.client, e->ch, "/cairn.v1.ActionCachePeer/Get", &req.base,
		                &cairn__v1__get_entry_response__descriptor, p->cfg.timeout_ms, got, l);
		cairn_arena_free(a); /* packed */
		return;
	}
	if (!p->cfg.next.get) {
		char ds[CAIRN_DIGEST_STR_MAX];
		return lookup_end(l,
		                  cairn_err(CAIRN_NOT_FOUND, "no peer scheduler holds %s", cairn_digest_str(&l->action, ds)),
		                  NULL, 0);
	}
	p->cfg.next.get(p->cfg.next.ctx, l->instance, &l->action, next_got, l);
}

static void peers_get(void *ctx, const char *instance, const cairn_digest *action, get_cb cb, void *arg)
{
	gateway_ac_peers *p = ctx;
	lookup *l = cairn_xcalloc(1, sizeof *l);
	*l = (lookup){.p = p, .v = view_get(p), .instance = cairn_xstrdup(instance ? instance : ""),
	              .action = *action, .cb = cb, .arg = arg};
	l->n = owners_of(p, l->v, action, l->owners);
	ask_next(l);
}

/* ---- the backing ----------------------------------------------------------------------------- */

cairn_status gateway_ac_peers_new(const gateway_ac_peers_config *cfg, gateway_ac_peers **out)
{
	*out = NULL;
	if (!cfg->client)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the shared action cache needs an rpc client");
	if (cfg->owners < 0 || cfg->owners > AC_OWNERS_MAX || cfg->timeout_ms < 0 || cfg->failure_threshold < 0 ||
	    cfg->cooldown_ms < 0 || cfg->max_puts_in_flight < 0)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the shared action cache's owners must be 0..%d and its timeouts, "
		                 "threshold and limit must not be negative", AC_OWNERS_MAX);
	gateway_ac_peers *p = cairn_xcalloc(1, sizeof *p);
	p->cfg = *cfg;
	p->cfg.owners = cfg->owners ? cfg->owners : 2;
	p->cfg.timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
	p->cfg.failure_threshold = cfg->failure_threshold ? cfg->failure_threshold : 3;
	p->cfg.cooldown_ms = cfg->cooldown_ms ? cfg->cooldown_ms : 5000;
	p->cfg.max_puts_in_flight = cfg->max_puts_in_flight ? cfg->max_puts_in_flight : 1024;
	pthread_mutex_init(&p->mu, NULL);
	p->view = view_new(0);
	p->known = cairn_xcalloc(AC_PEERS_MAX, sizeof *p->known);
	*out = p;
	return cairn_ok();
}

gateway_ac_backing gateway_ac_peers_backing(gateway_ac_peers *p)
{
	return (gateway_ac_backing){.ctx = p, .put = peers_put, .get = peers_get};
}

gateway_ac_peers_stats gateway_ac_peers_get_stats(gateway_ac_peers *p)
{
	return (gateway_ac_peers_stats){.puts = atomic_load(&p->puts), .gets = atomic_load(&p->gets),
	                                .skipped = atomic_load(&p->skipped), .dropped = atomic_load(&p->dropped)};
}

void gateway_ac_peers_free(gateway_ac_peers *p)
{
	if (!p)
		return;
	view_put(p->view);
	for (size_t i = 0; i < p->nknown; i++) {
		peer *e = p->known[i];
		rpc_channel_close(e->ch);
		cairn_breaker_destroy(&e->breaker);
		free(e->id);
		free(e->target);
		free(e);
	}
	free(p->known);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
