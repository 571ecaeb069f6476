/* The member table and SWIM's rules for news.
 *
 * Which news wins, for a member other than ourselves (inc = incarnation):
 *   ALIVE(i)       beats ALIVE/SUSPECT(j) when i > j, and a tombstone DEAD/LEFT(j) when i > j;
 *   SUSPECT(i)     beats ALIVE(j) when i >= j, and SUSPECT(j) when i > j;
 *   DEAD/LEFT(i)   beats ALIVE/SUSPECT(j) when i >= j.
 * Only the member itself raises its incarnation: news of ourselves as SUSPECT or DEAD at our
 * incarnation or above makes us go one above it and spread ALIVE (a refutation); news of ourselves
 * ALIVE at a higher incarnation (what a previous run of this instance, with the same id, reached)
 * is adopted, so that our own news is not taken for stale.
 * ALIVE news that loses against a tombstone means the member is back but does not know it was
 * declared dead: it is told (once a period), and its refutation brings it back.
 * The view is the visible members (ALIVE or SUSPECT) and ourselves; its version moves when a
 * member enters or leaves it. */
#include "membership/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void swim_table_init(swim *s)
{
	s->n = s->cap = 0;
	s->nodes = NULL;
	s->nnews = s->capnews = 0;
	s->news = NULL;
}

void swim_table_destroy(swim *s)
{
	free(s->nodes);
	free(s->news);
}

uint64_t swim_rand(swim *s)
{
	/* xorshift64*: the choices only need to differ between members */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 0x2545F4914F6CDD1DULL;
}

swim_node *swim_find(swim *s, const char *id)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->nodes[i].id, id))
			return &s->nodes[i];
	return NULL;
}

size_t swim_visible_count(const swim *s)
{
	size_t c = 0;
	for (size_t i = 0; i < s->n; i++)
		c += swim_visible(&s->nodes[i]);
	return c;
}

static void view_changed(swim *s)
{
	s->version++;
	s->changed = true;
}

void swim_news_add(swim *s, const swim_node *n)
{
	/* each piece of news goes out about 4·log10(n+1) times, at least 4 (memberlist's choice) */
	int times = 4 * (int)ceil(log10((double)s->n + 2));
	for (size_t i = 0; i < s->nnews; i++)
		if (!strcmp(s->news[i].node.id, n->id)) {
			s->news[i] = (swim_news){*n, times};
			return;
		}
	if (s->nnews == s->capnews) {
		s->capnews = s->capnews ? 2 * s->capnews : 16;
		s->news = cairn_xrealloc(s->news, s->capnews * sizeof *s->news);
	}
	s->news[s->nnews++] = (swim_news){*n, times};
}

size_t swim_news_take(swim *s, swim_node *out, size_t max)
{
	size_t k = 0;
	/* newest first: a refutation must not wait behind old news */
	for (size_t i = s->nnews; i-- > 0 && k < max;) {
		out[k++] = s->news[i].node;
		if (--s->news[i].left <= 0) {
			memmove(&s->news[i], &s->news[i + 1], (s->nnews - i - 1) * sizeof *s->news);
			s->nnews--;
		}
	}
	return k;
}

void swim_set_state(swim *s, swim_node *n, enum swim_state st, int64_t now)
{
	bool was = swim_visible(n);
	n->state = st;
	n->since = now;
	if (was != swim_visible(n))
		view_changed(s);
	swim_news_add(s, n);
}

static void apply_self(swim *s, const swim_node *u, int64_t now)
{
	(void)now;
	if (u->state == SWIM_ALIVE) {
		if (u->inc > s->self.inc)
			s->self.inc = u->inc;
		return;
	}
	if (u->inc < s->self.inc)
		return;
	s->self.inc = u->inc + 1;
	LOG_INFO(MEMBER_LOG, "refuting news of this member as %s group=%s incarnation=%llu",
	         u->state == SWIM_SUSPECT ? "suspect" : "gone", s->cfg.group, (unsigned long long)s->self.inc);
	swim_news_add(s, &s->self);
}

static void add_node(swim *s, const swim_node *u, int64_t now)
{
	if (s->n >= MEMBER_MAX) {
		if (!s->warned_full)
			LOG_WARN(MEMBER_LOG, "view full: members past %d are ignored group=%s", MEMBER_MAX, s->cfg.group);
		s->warned_full = true;
		return;
	}
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->nodes = cairn_xrealloc(s->nodes, s->cap * sizeof *s->nodes);
	}
	/* at a random place in the probe order, as memberlist does, so a newcomer is probed soon */
	size_t at = (size_t)(swim_rand(s) % (s->n + 1));
	if (at < s->n)
		s->nodes[s->n] = s->nodes[at];
	s->n++;
	swim_node *n = &s->nodes[at];
	*n = *u;
	n->since = now;
	n->told_at = 0;
	view_changed(s);
	swim_news_add(s, n);
}

/* Tells a member that is back that we hold it dead, so that it refutes. */
static void tell_tombstone(swim *s, swim_node *n, int64_t now)
{
	if (n->told_at && now - n->told_at < s->cfg.interval_ns)
		return;
	n->told_at = now;
	swim_packet p = {.kind = SWIM_SYNC, .nodes = n, .n = 1};
	swim_send_packet(s, &p, n->host, (uint16_t)(n->port + s->cfg.port_offset));
}

static void copy_details(swim_node *n, const swim_node *u)
{
	memcpy(n->host, u->host, sizeof n->host);
	n->port = u->port;
	n->role = u->role;
	n->stats = u->stats;
	memcpy(n->pools, u->pools, sizeof n->pools);
	n->npools = u->npools;
	memcpy(n->annotations, u->annotations, sizeof n->annotations);
}

void swim_apply(swim *s, const swim_node *u, bool from_sender, int64_t now)
{
	if (!strcmp(u->id, s->self.id)) {
		apply_self(s, u, now);
		return;
	}
	swim_node *n = swim_find(s, u->id);
	if (!n) {
		if (swim_visible(u))
			add_node(s, u, now);
		return;
	}
	bool visible = swim_visible(n);
	switch (u->state) {
	case SWIM_ALIVE:
		if (u->inc > n->inc) {
			n->inc = u->inc;
			copy_details(n, u);
			swim_set_state(s, n, SWIM_ALIVE, now);
		} else if (!visible) {
			tell_tombstone(s, n, now);
		} else if (from_sender && u->inc == n->inc) {
			copy_details(n, u); /* fresh stats, no change of state */
		}
		break;
	case SWIM_SUSPECT:
		if (visible && (u->inc > n->inc || (u->inc == n->inc && n->state == SWIM_ALIVE))) {
			n->inc = u->inc;
			swim_set_state(s, n, SWIM_SUSPECT, now);
		}
		break;
	case SWIM_DEAD:
	case SWIM_LEFT:
		if (visible && u->inc >= n->inc) {
			n->inc = u->inc;
			swim_set_state(s, n, u->state, now);
		}
		break;
	}
}

void swim_expire(swim *s, int64_t now)
{
	for (size_t i = 0; i < s->n;) {
		swim_node *n = &s->nodes[i];
		if (!swim_visible(n) && now - n->since >= s->cfg.tombstone_ns) {
			s->nodes[i] = s->nodes[--s->n];
			if (s->probe_next > s->n)
				s->probe_next = 0;
		} else {
			i++;
		}
	}
}

static void to_info(const swim_node *n, bool self, member_info *out)
{
	memset(out, 0, sizeof *out);
	memcpy(out->id, n->id, sizeof out->id);
	memcpy(out->host, n->host, sizeof out->host);
	out->port = n->port;
	out->role = n->role;
	out->self = self;
	out->suspect = n->state == SWIM_SUSPECT;
	out->stats = n->stats;
	memcpy(out->pools, n->pools, sizeof out->pools);
	out->npools = n->npools;
	memcpy(out->annotations, n->annotations, sizeof out->annotations);
}

void swim_view(const swim *s, member_view *out)
{
	out->version = s->version;
	out->members = cairn_xcalloc(swim_visible_count(s) + 1, sizeof *out->members);
	to_info(&s->self, true, &out->members[0]);
	out->n = 1;
	for (size_t i = 0; i < s->n; i++)
		if (swim_visible(&s->nodes[i]))
			to_info(&s->nodes[i], false, &out->members[out->n++]);
	member_view_sort(out);
}
