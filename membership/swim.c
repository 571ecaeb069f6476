/* The SWIM engine: the probe cycle and the packets (see membership.h for the protocol).
 *
 * Everything here runs on one thread (udp.c's, or a test's) with the time passed in: swim_tick
 * moves the timers, swim_receive handles one datagram, and packets leave through cfg's send
 * callback. A probe lives for one period: PING at its start, PING_REQ to `indirect` others after
 * timeout_ns, and a verdict (SUSPECT) at the next period's start if no ACK came either way. */
#include "membership/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void swim_init(swim *s, const swim_config *cfg, const swim_node *self, swim_send_fn send, void *ctx)
{
	memset(s, 0, sizeof *s);
	s->cfg = *cfg;
	s->self = *self;
	s->self.state = SWIM_ALIVE;
	s->send = send;
	s->ctx = ctx;
	s->rng = cfg->seed ? cfg->seed : 0x9E3779B97F4A7C15ULL;
	for (const char *p = self->id; *p; p++) /* members started with one seed still choose apart */
		s->rng = (s->rng ^ (uint8_t)*p) * 0x100000001B3ULL;
	if (!s->rng)
		s->rng = 1;
	s->version = 1; /* the view of ourselves alone */
	s->changed = true;
	swim_table_init(s);
}

void swim_destroy(swim *s)
{
	swim_table_destroy(s);
	free(s->seeds);
}

void swim_add_seed(swim *s, const char *host, uint16_t group_port, bool announce)
{
	s->seeds = cairn_xrealloc(s->seeds, (s->nseeds + 1) * sizeof *s->seeds);
	swim_seed *sd = &s->seeds[s->nseeds++];
	memset(sd, 0, sizeof *sd);
	snprintf(sd->host, sizeof sd->host, "%s", host);
	sd->port = group_port;
	sd->announce = announce;
}

bool swim_take_change(swim *s)
{
	bool c = s->changed;
	s->changed = false;
	return c;
}

/* A member we suspect hears of it in everything we send it, whether or not the news of its
 * suspicion has died down meanwhile (it may have been away while it spread): so it refutes as soon
 * as it is back, well within the suspicion timeout. */
static void tell_suspect(swim *s, swim_node *news, size_t *n, const char *host, uint16_t port)
{
	for (size_t i = 0; i < s->n; i++) {
		const swim_node *d = &s->nodes[i];
		if (d->state != SWIM_SUSPECT || d->port + s->cfg.port_offset != port || strcmp(d->host, host))
			continue;
		for (size_t k = 0; k < *n; k++)
			if (!strcmp(news[k].id, d->id))
				return;
		news[(*n)++] = *d;
		return;
	}
}

void swim_send_packet(swim *s, swim_packet *p, const char *host, uint16_t port)
{
	snprintf(p->group, sizeof p->group, "%s", s->cfg.group);
	p->sender = s->self;
	swim_node news[SWIM_GOSSIP_PER_PACKET];
	if (!p->n) { /* a member list travels alone; anything else carries news */
		p->n = swim_news_take(s, news, SWIM_GOSSIP_PER_PACKET - 1);
		p->nodes = news;
		tell_suspect(s, news, &p->n, host, port);
	}
	size_t len = swim_encode(p, s->buf, sizeof s->buf);
	if (len)
		s->send(s->ctx, host, port, s->buf, len);
}

static uint16_t group_port(const swim *s, const swim_node *n) { return (uint16_t)(n->port + s->cfg.port_offset); }

static void send_kind(swim *s, enum swim_kind kind, uint64_t seq, const swim_node *to)
{
	swim_packet p = {.kind = kind, .seq = seq};
	swim_send_packet(s, &p, to->host, group_port(s, to));
}

/* Sends every visible member (and, if it holds one, the recipient's tombstone, so
 * that it refutes it) in datagrams of SWIM_SYNC_PER_PACKET. */
static void send_list(swim *s, enum swim_kind kind, bool announce, const char *host, uint16_t port,
                      const char *for_id)
{
	swim_node batch[SWIM_SYNC_PER_PACKET];
	size_t k = 0;
	bool sent = false;
	for (size_t i = 0; i <= s->n; i++) {
		bool last = i == s->n;
		if (!last) {
			const swim_node *n = &s->nodes[i];
			if (swim_visible(n) || (for_id && !strcmp(n->id, for_id)))
				batch[k++] = *n;
		}
		if (k == SWIM_SYNC_PER_PACKET || (last && (k || !sent))) {
			/* an empty list still goes out: the sender's own state is the news */
			swim_packet p = {.kind = kind, .announce = announce, .nodes = batch, .n = k};
			swim_send_packet(s, &p, host, port);
			k = 0;
			sent = true;
		}
	}
}

static swim_node *next_target(swim *s)
{
	for (size_t tries = 0; tries < s->n; tries++) {
		if (s->probe_next >= s->n) {
			s->probe_next = 0;
			for (size_t i = s->n; i > 1; i--) { /* a fresh round, in a fresh order */
				size_t j = (size_t)(swim_rand(s) % i);
				swim_node t = s->nodes[i - 1];
				s->nodes[i - 1] = s->nodes[j];
				s->nodes[j] = t;
			}
		}
		swim_node *n = &s->nodes[s->probe_next++];
		if (swim_visible(n))
			return n;
	}
	return NULL;
}

static void end_probe(swim *s, int64_t now)
{
	if (!s->probe.active || s->probe.acked)
		return;
	swim_node *n = swim_find(s, s->probe.id);
	/* Not a word from anyone, not even a helper's NACK, while others could have answered: the
	 * trouble is more likely our own network than the target (Lifeguard's local health). So an
	 * instance cut off alone for a few periods suspects no one, and the members it reaches again
	 * are not put through suspicions they could not hear of; cut off for longer, it suspects as
	 * usual and ends up alone in its view. */
	if (n && n->state == SWIM_ALIVE && s->heard_at < s->probe.start && swim_visible_count(s) > 1 &&
	    ++s->silent < SWIM_SILENT_MAX) {
		LOG_DEBUG(MEMBER_LOG, "no packet from any member for a whole period: suspecting no one yet group=%s",
		          s->cfg.group);
		return;
	}
	if (n && n->state == SWIM_ALIVE) {
		LOG_INFO(MEMBER_LOG, "member suspected: no answer to direct or indirect probes group=%s member=%s "
		         "address=[%s]:%u", s->cfg.group, n->id, n->host, n->port);
		swim_set_state(s, n, SWIM_SUSPECT, now);
	}
}

static void start_probe(swim *s, int64_t now)
{
	s->probe.active = false;
	swim_node *n = next_target(s);
	if (!n)
		return;
	s->probe.active = true;
	s->probe.acked = s->probe.indirect = false;
	memcpy(s->probe.id, n->id, sizeof s->probe.id);
	s->probe.seq = ++s->seq;
	s->probe.start = now;
	send_kind(s, SWIM_PING, s->probe.seq, n);
}

static void probe_indirectly(swim *s)
{
	s->probe.indirect = true;
	swim_node *target = swim_find(s, s->probe.id);
	if (!target)
		return;
	size_t cand = 0;
	for (size_t i = 0; i < s->n; i++)
		cand += s->nodes[i].state == SWIM_ALIVE && &s->nodes[i] != target;
	int asked = 0;
	/* a random start and a walk around the table: `indirect` distinct helpers */
	size_t start = cand ? (size_t)(swim_rand(s) % s->n) : 0;
	for (size_t k = 0; k < s->n && cand && asked < s->cfg.indirect; k++) {
		swim_node *h = &s->nodes[(start + k) % s->n];
		if (h->state != SWIM_ALIVE || h == target)
			continue;
		swim_packet p = {.kind = SWIM_PING_REQ, .seq = s->probe.seq, .target_port = group_port(s, target)};
		memcpy(p.target_id, target->id, sizeof p.target_id);
		memcpy(p.target_host, target->host, sizeof p.target_host);
		swim_send_packet(s, &p, h->host, group_port(s, h));
		asked++;
	}
}

static void expire_suspects(swim *s, int64_t now)
{
	for (size_t i = 0; i < s->n; i++) {
		swim_node *n = &s->nodes[i];
		if (n->state == SWIM_SUSPECT && now - n->since >= s->cfg.suspect_ns) {
			LOG_INFO(MEMBER_LOG, "member removed: suspected for %.1fs without refuting group=%s member=%s "
			         "address=[%s]:%u", (double)s->cfg.suspect_ns / 1e9, s->cfg.group, n->id, n->host, n->port);
			swim_set_state(s, n, SWIM_DEAD, now);
		}
	}
	for (size_t i = 0; i < SWIM_RELAYS; i++) {
		swim_relay *r = &s->relays[i];
		if (r->used && now >= r->nack_at) {
			r->used = false;
			swim_packet nk = {.kind = SWIM_NACK, .seq = r->their_seq};
			swim_send_packet(s, &nk, r->origin_host, r->origin_port);
		}
	}
}

static bool seed_known(const swim *s, const swim_seed *sd)
{
	if (!strcmp(sd->host, s->self.host) && sd->port == group_port(s, &s->self))
		return true;
	for (size_t i = 0; i < s->n; i++)
		if (swim_visible(&s->nodes[i]) && !strcmp(s->nodes[i].host, sd->host) &&
		    group_port(s, &s->nodes[i]) == sd->port)
			return true;
	return false;
}

static void join_and_sync(swim *s, int64_t now)
{
	if (now >= s->next_join) {
		for (size_t i = 0; i < s->nseeds; i++)
			if (s->seeds[i].announce || !seed_known(s, &s->seeds[i]))
				send_list(s, SWIM_JOIN, s->seeds[i].announce, s->seeds[i].host, s->seeds[i].port, NULL);
		/* quickly while alone, then at a calmer pace */
		s->next_join = now + (swim_visible_count(s) ? s->cfg.join_every_ns : s->cfg.interval_ns);
	}
	if (now >= s->next_sync) {
		s->next_sync = now + s->cfg.sync_every_ns;
		size_t vis = swim_visible_count(s);
		if (vis) {
			size_t pick = (size_t)(swim_rand(s) % vis);
			for (size_t i = 0; i < s->n; i++)
				if (swim_visible(&s->nodes[i]) && pick-- == 0) {
					send_list(s, SWIM_JOIN, false, s->nodes[i].host, group_port(s, &s->nodes[i]), NULL);
					break;
				}
		}
	}
}

void swim_tick(swim *s, int64_t now)
{
	if (!s->next_probe) {
		s->next_probe = now;
		s->next_sync = now + s->cfg.sync_every_ns;
	}
	if (now >= s->next_probe) {
		end_probe(s, now);
		start_probe(s, now);
		s->next_probe = now + s->cfg.interval_ns;
	} else if (s->probe.active && !s->probe.acked && !s->probe.indirect && now - s->probe.start >= s->cfg.timeout_ns) {
		probe_indirectly(s);
	}
	expire_suspects(s, now);
	swim_expire(s, now);
	join_and_sync(s, now);
}

static void on_ack(swim *s, const swim_packet *p)
{
	if (s->probe.active && p->seq == s->probe.seq && !strcmp(p->target_id, s->probe.id)) {
		s->probe.acked = true;
		return;
	}
	for (size_t i = 0; i < SWIM_RELAYS; i++) {
		swim_relay *r = &s->relays[i];
		if (r->used && r->our_seq == p->seq) {
			r->used = false;
			swim_packet a = {.kind = SWIM_ACK, .seq = r->their_seq};
			memcpy(a.target_id, p->target_id, sizeof a.target_id);
			swim_send_packet(s, &a, r->origin_host, r->origin_port);
			return;
		}
	}
}

static void on_ping_req(swim *s, const swim_packet *p, int64_t now)
{
	for (size_t i = 0; i < SWIM_RELAYS; i++) {
		swim_relay *r = &s->relays[i];
		if (r->used)
			continue;
		/* the origin gives its verdict at the end of its period, interval - timeout after asking */
		int64_t wait = (s->cfg.interval_ns - s->cfg.timeout_ns) * 3 / 4;
		*r = (swim_relay){.used = true, .their_seq = p->seq, .our_seq = ++s->seq, .nack_at = now + wait,
		                  .origin_port = group_port(s, &p->sender)};
		memcpy(r->origin_host, p->sender.host, sizeof r->origin_host);
		swim_packet ping = {.kind = SWIM_PING, .seq = r->our_seq};
		swim_send_packet(s, &ping, p->target_host, p->target_port);
		return;
	}
}

void swim_receive(swim *s, const uint8_t *buf, size_t len, int64_t now)
{
	swim_packet p;
	if (!swim_decode(buf, len, &p))
		return;
	if (strcmp(p.group, s->cfg.group) || !strcmp(p.sender.id, s->self.id)) {
		swim_packet_free(&p); /* another group's, or our own multicast looped back */
		return;
	}
	s->heard_at = now;
	s->silent = 0;
	swim_node *before = swim_find(s, p.sender.id);
	bool knew = before && swim_visible(before);
	swim_apply(s, &p.sender, true, now);
	for (size_t i = 0; i < p.n; i++)
		swim_apply(s, &p.nodes[i], false, now);
	switch (p.kind) {
	case SWIM_PING: {
		swim_packet a = {.kind = SWIM_ACK, .seq = p.seq};
		memcpy(a.target_id, s->self.id, sizeof a.target_id);
		swim_send_packet(s, &a, p.sender.host, group_port(s, &p.sender));
		break;
	}
	case SWIM_ACK:
		on_ack(s, &p);
		break;
	case SWIM_PING_REQ:
		on_ping_req(s, &p, now);
		break;
	case SWIM_JOIN:
		/* an announce is answered by those that did not know the sender; a JOIN sent to us, always */
		if (!p.announce || !knew)
			send_list(s, SWIM_SYNC, false, p.sender.host, group_port(s, &p.sender), p.sender.id);
		break;
	case SWIM_SYNC:
	case SWIM_NACK: /* heard_at is all it is for */
		break;
	}
	swim_packet_free(&p);
}

void swim_leave(swim *s, int64_t now)
{
	(void)now;
	s->self.inc++;
	s->self.state = SWIM_LEFT;
	for (size_t i = 0; i < s->n; i++)
		if (swim_visible(&s->nodes[i]))
			send_kind(s, SWIM_SYNC, 0, &s->nodes[i]);
}
