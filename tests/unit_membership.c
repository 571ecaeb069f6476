/* Unit tests of membership/: the SWIM engine over a simulated network with a simulated clock
 * (joins, failure detection, refutation, partitions and heals, restarts, leaves, multicast), the
 * view's log block, the address selector, the member id, and three groups over real UDP sockets
 * on loopback. Simulated time makes every protocol case deterministic: no test here waits on the
 * wall clock for an outcome, only as a bound on a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/cluster.pb-c.h"
#include "membership/internal.h"

/* ---- a simulated LAN ------------------------------------------------------------------------- */

#define NODES 8
#define MS 1000000LL
#define SEC (1000 * MS)
#define MCAST "239.255.77.77"

typedef struct msg {
	int from, to; /* to -1: the multicast group */
	int64_t at;
	size_t len;
	uint8_t *buf;
} msg;

typedef struct net {
	swim s[NODES];
	bool up[NODES];   /* running: ticks and receives */
	bool cut[NODES];  /* off the network: sends and receives nothing */
	bool broken[NODES][NODES]; /* one link down, both ways */
	int n;
	int64_t now;
	msg *q;
	size_t nq, capq;
	uint64_t changes[NODES]; /* view versions seen */
	int nacks[NODES];        /* NACKs each received */
} net;

static net *N;

static int node_of(const char *host)
{
	int i = atoi(strrchr(host, '.') + 1) - 1;
	return i >= 0 && i < NODES ? i : -2;
}

static void sim_send(void *ctx, const char *host, uint16_t port, const uint8_t *buf, size_t len)
{
	(void)port;
	int from = (int)(intptr_t)ctx;
	if (N->nq == N->capq) {
		N->capq = N->capq ? 2 * N->capq : 256;
		N->q = realloc(N->q, N->capq * sizeof *N->q);
	}
	msg *m = &N->q[N->nq++];
	m->from = from;
	m->to = strcmp(host, MCAST) ? node_of(host) : -1;
	m->at = N->now + MS; /* one millisecond on the wire */
	m->len = len;
	m->buf = malloc(len);
	memcpy(m->buf, buf, len);
}

static void node_start(int i, uint64_t inc_seed, bool multicast)
{
	swim_config c = {.port_offset = 2000,
	                 .interval_ns = SEC,
	                 .timeout_ns = SEC / 2,
	                 .suspect_ns = 5 * SEC,
	                 .tombstone_ns = 60 * SEC,
	                 .join_every_ns = 3 * SEC,
	                 .sync_every_ns = 30 * SEC,
	                 .indirect = 3,
	                 .seed = inc_seed};
	strcpy(c.group, "all");
	swim_node self = {.port = 10081, .role = i < 2 ? MEMBER_SCHEDULER : MEMBER_WORKER};
	snprintf(self.id, sizeof self.id, "00000000-0000-4000-8000-%012d", i + 1);
	snprintf(self.host, sizeof self.host, "10.77.0.%d", i + 1);
	swim_init(&N->s[i], &c, &self, sim_send, (void *)(intptr_t)i);
	if (multicast)
		swim_add_seed(&N->s[i], MCAST, 12081, true);
	else
		swim_add_seed(&N->s[i], "10.77.0.1", 12081, false);
	N->up[i] = true;
}

static void node_kill(int i)
{
	N->up[i] = false;
	swim_destroy(&N->s[i]);
}

static void net_new(int n, bool multicast)
{
	N = calloc(1, sizeof *N);
	N->n = n;
	N->now = 1 * SEC;
	for (int i = 0; i < n; i++)
		node_start(i, 1000 + (uint64_t)i, multicast);
}

static void net_free(void)
{
	for (int i = 0; i < N->n; i++)
		if (N->up[i])
			swim_destroy(&N->s[i]);
	for (size_t i = 0; i < N->nq; i++)
		free(N->q[i].buf);
	free(N->q);
	free(N);
	N = NULL;
}

static void deliver(int to, const msg *m)
{
	if (to < 0 || to >= N->n || !N->up[to] || N->cut[to] || N->cut[m->from] || N->broken[m->from][to])
		return;
	swim_packet p;
	if (swim_decode(m->buf, m->len, &p)) {
		N->nacks[to] += p.kind == SWIM_NACK;
		swim_packet_free(&p);
	}
	swim_receive(&N->s[to], m->buf, m->len, N->now);
}

/* Runs the network for d of simulated time, in steps of 10 ms. */
static void run(int64_t d)
{
	for (int64_t end = N->now + d; N->now < end; N->now += 10 * MS) {
		size_t k = 0;
		for (size_t i = 0; i < N->nq; i++) {
			msg *m = &N->q[i];
			if (m->at > N->now) {
				N->q[k++] = *m;
				continue;
			}
			if (m->to == -1) {
				for (int j = 0; j < N->n; j++)
					if (j != m->from)
						deliver(j, m);
			} else {
				deliver(m->to, m);
			}
			free(m->buf);
		}
		N->nq = k;
		for (int i = 0; i < N->n; i++)
			if (N->up[i]) {
				swim_tick(&N->s[i], N->now);
				if (swim_take_change(&N->s[i]))
					N->changes[i]++;
			}
	}
}

/* True if node i's view is exactly the members in `want` (a bit per node). */
static bool view_is(int i, unsigned want)
{
	member_view v;
	swim_view(&N->s[i], &v);
	unsigned got = 0;
	for (size_t k = 0; k < v.n; k++)
		got |= 1u << (node_of(v.members[k].host));
	member_view_free(&v);
	return got == want;
}

static bool all_views(unsigned group, unsigned want)
{
	for (int i = 0; i < N->n; i++)
		if (group >> i & 1 && !view_is(i, want))
			return false;
	return true;
}

/* Runs until every node of group sees want, for at most limit; returns the time it took. */
static int64_t run_until(unsigned group, unsigned want, int64_t limit)
{
	int64_t start = N->now;
	while (!all_views(group, want)) {
		if (N->now - start > limit)
			fail_msg("views did not become %#x within %.0fs of simulated time", want, (double)limit / SEC);
		run(100 * MS);
	}
	return N->now - start;
}

/* ---- the protocol ---------------------------------------------------------------------------- */

static void static_join_converges(void **state)
{
	(void)state;
	net_new(5, false);
	run_until(0x1f, 0x1f, 20 * SEC);
	/* and stays so: no member is ever suspected on a healthy network */
	uint64_t v[5];
	for (int i = 0; i < 5; i++)
		v[i] = N->s[i].version;
	run(60 * SEC);
	for (int i = 0; i < 5; i++)
		assert_int_equal(N->s[i].version, v[i]);
	assert_true(all_views(0x1f, 0x1f));
	net_free();
}

static void multicast_join_converges(void **state)
{
	(void)state;
	net_new(5, true);
	N->n = 4; /* the fifth comes later */
	N->up[4] = false;
	swim_destroy(&N->s[4]);
	run_until(0x0f, 0x0f, 20 * SEC);
	N->n = 5;
	node_start(4, 99, true);
	/* the members that did not know it answer its first announce with their lists */
	run_until(0x1f, 0x1f, 500 * MS);
	net_free();
}

static void dead_member_leaves_every_view(void **state)
{
	(void)state;
	net_new(5, false);
	run_until(0x1f, 0x1f, 20 * SEC);
	uint64_t v0 = N->s[0].version;
	node_kill(3);
	int64_t took = run_until(0x17, 0x17, 30 * SEC);
	/* a probe period or two to suspect, then the suspicion timeout */
	assert_true(took >= 5 * SEC);
	assert_int_equal(N->s[0].version, v0 + 1); /* one change: the member left, nothing else moved */
	net_free();
}

static void small_cluster_detects_promptly(void **state)
{
	(void)state;
	/* three members, one dies: the prober hears from its helper (a NACK) every period, so it
	 * does not mistake the silence for its own network's trouble */
	net_new(3, false);
	run_until(0x07, 0x07, 20 * SEC);
	node_kill(2);
	run_until(0x03, 0x03, 8 * SEC); /* a probe, a period, the 5 s suspicion, and slack */
	net_free();
}

static void helper_answers_for_a_silent_target(void **state)
{
	(void)state;
	net_new(3, false);
	run_until(0x07, 0x07, 20 * SEC);
	/* 2 is alive but neither 0 nor 1 can reach it: 0's helper (1) answers its PING_REQ with a
	 * NACK, 1's helper (0) likewise */
	N->broken[0][2] = N->broken[2][0] = N->broken[1][2] = N->broken[2][1] = true;
	run(10 * SEC);
	assert_true(N->nacks[0] > 0);
	assert_true(N->nacks[1] > 0);
	assert_true(all_views(0x03, 0x03));
	net_free();
}

static void short_outage_is_refuted(void **state)
{
	(void)state;
	net_new(5, false);
	run_until(0x1f, 0x1f, 20 * SEC);
	uint64_t v[5];
	for (int i = 0; i < 5; i++)
		v[i] = N->s[i].version;
	/* off the network for four periods, long enough for the news of its suspicion to die down
	 * while it cannot hear it: it is suspected, and refutes as soon as it is back */
	N->cut[2] = true;
	run(4 * SEC);
	N->cut[2] = false;
	run(30 * SEC);
	assert_true(all_views(0x1f, 0x1f));
	for (int i = 0; i < 5; i++)
		assert_int_equal(N->s[i].version, v[i]);
	assert_true(N->s[2].self.inc > 0); /* it did refute */
	net_free();
}

static void broken_link_evicts_no_one(void **state)
{
	(void)state;
	net_new(5, false);
	run_until(0x1f, 0x1f, 20 * SEC);
	/* 0 and 2 cannot reach each other; the others vouch for 2 through indirect probes */
	N->broken[0][2] = N->broken[2][0] = true;
	run(120 * SEC);
	assert_true(all_views(0x1f, 0x1f));
	assert_int_equal(N->s[2].self.inc, 0); /* never even suspected: nothing to refute */
	assert_int_equal(N->s[0].self.inc, 0);
	net_free();
}

/* A partition across: nodes of side A hear only side A. */
static unsigned side_a;
static void deliver_partitioned(void)
{
	size_t k = 0;
	for (size_t i = 0; i < N->nq; i++) {
		msg *m = &N->q[i];
		bool a_from = side_a >> m->from & 1;
		bool across = m->to >= 0 && a_from != (bool)(side_a >> m->to & 1);
		if (across) {
			free(m->buf);
			continue;
		}
		N->q[k++] = *m;
	}
	N->nq = k;
}

static void run_partitioned(int64_t d)
{
	for (int64_t end = N->now + d; N->now < end;) {
		deliver_partitioned();
		run(10 * MS);
	}
}

static void partition_across_heals(void **state)
{
	(void)state;
	net_new(5, false);
	run_until(0x1f, 0x1f, 20 * SEC);
	side_a = 0x07;
	int64_t start = N->now;
	while (!(all_views(0x07, 0x07) && all_views(0x18, 0x18))) {
		if (N->now - start > 60 * SEC)
			fail_msg("the two sides did not split");
		run_partitioned(100 * MS);
	}
	run_partitioned(30 * SEC); /* long enough for the news of the split to have died down */
	for (int i = 0; i < 5; i++)
		assert_int_equal(N->s[i].nnews, 0);
	side_a = 0x1f; /* healed */
	/* well before the tombstones (60 s) expire: each side tells the other's members it holds
	 * them dead, and they refute */
	run_until(0x1f, 0x1f, 15 * SEC);
	run(60 * SEC); /* and it stays whole */
	assert_true(all_views(0x1f, 0x1f));
	net_free();
}

static void restart_with_same_id_rejoins(void **state)
{
	(void)state;
	net_new(5, false);
	run_until(0x1f, 0x1f, 20 * SEC);
	node_kill(4);
	run_until(0x0f, 0x0f, 30 * SEC);
	node_start(4, 77, false); /* same id, incarnation 0, while the others hold its tombstone */
	run_until(0x1f, 0x1f, 30 * SEC);
	net_free();
}

static void quick_restart_rejoins(void **state)
{
	(void)state;
	net_new(5, false);
	run_until(0x1f, 0x1f, 20 * SEC);
	N->cut[4] = true; /* suspected once and refuted: its incarnation is above 0 */
	run(3 * SEC);
	N->cut[4] = false;
	run(10 * SEC);
	assert_true(N->s[4].self.inc > 0);
	/* back before anyone noticed, with incarnation 0 and new annotations: it must still learn the
	 * whole view, and the others must take its news */
	node_kill(4);
	node_start(4, 78, false);
	strcpy(N->s[4].self.annotations, "version=2");
	run_until(0x1f, 0x1f, 30 * SEC);
	run(10 * SEC);
	for (int i = 0; i < 4; i++)
		assert_string_equal(swim_find(&N->s[i], N->s[4].self.id)->annotations, "version=2");
	net_free();
}

static void leave_is_immediate(void **state)
{
	(void)state;
	net_new(5, false);
	run_until(0x1f, 0x1f, 20 * SEC);
	swim_leave(&N->s[2], N->now);
	node_kill(2);
	run(100 * MS); /* one delivery: no suspicion period */
	assert_true(all_views(0x1b, 0x1b));
	net_free();
}

static void garbage_is_dropped(void **state)
{
	(void)state;
	net_new(2, false);
	run_until(0x03, 0x03, 20 * SEC);
	uint8_t junk[300];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	for (size_t len = 0; len < sizeof junk; len++)
		swim_receive(&N->s[0], junk, len, N->now);
	/* a well-formed packet cut short anywhere */
	swim_packet p = {.kind = SWIM_JOIN};
	strcpy(p.group, "all");
	p.sender = N->s[1].self;
	uint8_t buf[2048];
	size_t len = swim_encode(&p, buf, sizeof buf);
	assert_true(len > 0);
	for (size_t cut = 0; cut < len; cut++)
		swim_receive(&N->s[0], buf, cut, N->now);
	/* a packet of another group, and one whose sender has a bad address */
	strcpy(p.group, "schedulers");
	len = swim_encode(&p, buf, sizeof buf);
	swim_receive(&N->s[0], buf, len, N->now);
	strcpy(p.group, "all");
	strcpy(p.sender.host, "not-an-address");
	len = swim_encode(&p, buf, sizeof buf);
	swim_packet d;
	assert_false(swim_decode(buf, len, &d));
	run(5 * SEC);
	assert_true(all_views(0x03, 0x03));
	net_free();
}

/* A worker's executor pools (what its instance reports) reach every other view, and so does each
 * change of its free slots, carried in the packets it sends. */
static bool pools_seen(int worker, uint32_t free1)
{
	for (int i = 0; i < N->n; i++) {
		if (i == worker)
			continue;
		const swim_node *n = swim_find(&N->s[i], N->s[worker].self.id);
		if (!n || n->npools != 2 || strcmp(n->pools[0].properties, "cpu=1,pool=default") ||
		    n->pools[0].total != 4 || n->pools[0].free != 4 || strcmp(n->pools[1].properties, "cpu=4,pool=large") ||
		    n->pools[1].total != 1 || n->pools[1].free != free1)
			return false;
	}
	return true;
}

static void pools_reach_every_view(void **state)
{
	(void)state;
	net_new(5, false);
	member_pool pools[2] = {{"cpu=1,pool=default", 4, 4}, {"cpu=4,pool=large", 1, 1}};
	assert_true(swim_set_pools(&N->s[3].self, pools, 2));
	run_until(0x1f, 0x1f, 20 * SEC);
	for (int64_t waited = 0; !pools_seen(3, 1); waited += 100 * MS) {
		assert_true(waited < 30 * SEC);
		run(100 * MS);
	}
	/* a view (what member_group_view hands out) holds them too */
	member_view v;
	swim_view(&N->s[0], &v);
	size_t k = 0;
	while (k < v.n && strcmp(v.members[k].id, N->s[3].self.id))
		k++;
	assert_true(k < v.n);
	assert_int_equal(v.members[k].npools, 2);
	assert_string_equal(v.members[k].pools[1].properties, "cpu=4,pool=large");
	member_view_free(&v);
	/* the large slot taken (member_group_update_self), then free again */
	pools[1].free = 0;
	assert_true(swim_set_pools(&N->s[3].self, pools, 2));
	for (int64_t waited = 0; !pools_seen(3, 0); waited += 100 * MS) {
		assert_true(waited < 30 * SEC);
		run(100 * MS);
	}
	pools[1].free = 1;
	swim_set_pools(&N->s[3].self, pools, 2);
	for (int64_t waited = 0; !pools_seen(3, 1); waited += 100 * MS) {
		assert_true(waited < 30 * SEC);
		run(100 * MS);
	}
	net_free();
}

/* The largest state a member can report: MEMBER_POOLS_MAX pools of MEMBER_POOL_PROPS properties
 * filling their 255 characters, as many annotations; what is past the bounds is cut. */
static void fill_worst(swim_node *n, int i)
{
	memset(n, 0, sizeof *n);
	snprintf(n->id, sizeof n->id, "00000000-0000-4000-8000-%012d", i + 1);
	snprintf(n->host, sizeof n->host, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.%u", (unsigned)(uint8_t)(100 + i));
	n->port = 65535;
	n->role = MEMBER_WORKER;
	n->inc = UINT64_MAX;
	n->stats = (member_stats){1e300, UINT64_MAX, UINT64_MAX, UINT64_MAX};
	member_pool pools[MEMBER_POOLS_MAX + 1];
	for (size_t p = 0; p <= MEMBER_POOLS_MAX; p++) {
		pools[p] = (member_pool){.total = UINT32_MAX, .free = UINT32_MAX};
		size_t at = 0;
		for (int k = 0; at < sizeof pools[p].properties - 1; k++) /* 17 properties, then more than fits */
			at += (size_t)snprintf(pools[p].properties + at, sizeof pools[p].properties - at, "%sk%d=%s",
			                       k ? "," : "", k, k < 17 ? "v" : "vvvvvvvvvvvvvvvv");
	}
	assert_false(swim_set_pools(n, pools, MEMBER_POOLS_MAX + 1));
	assert_int_equal(n->npools, MEMBER_POOLS_MAX);
	for (size_t p = 0; p < n->npools; p++) /* 16 properties kept: k0..k15 */
		assert_string_equal(strrchr(n->pools[p].properties, ',') + 1, "k15=v");
	/* the longest pool the bound allows: 16 properties in 255 characters */
	for (size_t p = 0; p < n->npools; p++) {
		size_t at = 0;
		for (int k = 0; k < MEMBER_POOL_PROPS; k++)
			at += (size_t)snprintf(n->pools[p].properties + at, sizeof n->pools[p].properties - at, "%s%c=%.13s",
			                       k ? "," : "", 'a' + k, "vvvvvvvvvvvvvvvvvvvv");
		assert_true(strlen(n->pools[p].properties) >= 250);
	}
	for (size_t at = 0, k = 0; at < sizeof n->annotations - 1; k++)
		at += (size_t)snprintf(n->annotations + at, sizeof n->annotations - at, "%sa%zu=%.12s", k ? "," : "", k,
		                       "xxxxxxxxxxxxxxxxxxxx");
}

static void worst_case_sync_fits_a_datagram(void **state)
{
	(void)state;
	swim_node nodes[SWIM_SYNC_PER_PACKET];
	for (int i = 0; i < SWIM_SYNC_PER_PACKET; i++)
		fill_worst(&nodes[i], i);
	swim_packet p = {.kind = SWIM_SYNC, .nodes = nodes, .n = SWIM_SYNC_PER_PACKET};
	strcpy(p.group, "schedulers");
	fill_worst(&p.sender, 99);
	static uint8_t buf[SWIM_MAX_PACKET];
	size_t len = swim_encode(&p, buf, sizeof buf);
	print_message("worst-case SYNC: %zu bytes of %d\n", len, SWIM_MAX_PACKET);
	assert_true(len > 0);
	swim_packet d;
	assert_true(swim_decode(buf, len, &d));
	assert_int_equal(d.n, SWIM_SYNC_PER_PACKET);
	assert_int_equal(d.nodes[5].npools, MEMBER_POOLS_MAX);
	assert_string_equal(d.nodes[5].pools[7].properties, nodes[5].pools[7].properties);
	assert_int_equal(d.nodes[5].pools[7].free, UINT32_MAX);
	assert_string_equal(d.sender.annotations, p.sender.annotations);
	swim_packet_free(&d);
	/* a pool claiming more free slots than it has is a lie: dropped */
	p.sender.pools[0].free = 1;
	p.sender.pools[0].total = 0;
	len = swim_encode(&p, buf, sizeof buf);
	assert_false(swim_decode(buf, len, &d));
}

/* ---- views, addresses, ids --------------------------------------------------------------------- */

static void view_block_format(void **state)
{
	(void)state;
	member_info m[3] = {0};
	strcpy(m[0].host, "172.17.0.4");
	strcpy(m[0].id, "bafe827d-b4d9-46ff-bac5-0528de71964e");
	strcpy(m[1].host, "172.17.0.3");
	strcpy(m[1].id, "5515cf45-9244-44df-b086-bc8eca4c83ae");
	m[1].self = true;
	strcpy(m[2].host, "172.17.0.10");
	strcpy(m[2].id, "8ce4c57c-e860-4257-b98b-0a8330ad7606");
	for (int i = 0; i < 3; i++)
		m[i].port = 10081;
	member_view v = {.version = 3, .n = 3, .members = m};
	member_view_sort(&v);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	member_view_print(&v, f);
	fclose(f);
	assert_string_equal(buf, "Members {size:3, ver:3} [\n"
	                         "        Member [172.17.0.3]:10081 - 5515cf45-9244-44df-b086-bc8eca4c83ae this\n"
	                         "        Member [172.17.0.4]:10081 - bafe827d-b4d9-46ff-bac5-0528de71964e\n"
	                         "        Member [172.17.0.10]:10081 - 8ce4c57c-e860-4257-b98b-0a8330ad7606\n"
	                         "]\n");
	free(buf);
}

/* The view a scheduler answers cairn members with: every member's details as the wire's Member. */
static void view_packs_as_a_member_view(void **state)
{
	(void)state;
	member_info m[2] = {0};
	strcpy(m[0].host, "10.0.0.1");
	strcpy(m[0].id, "5515cf45-9244-44df-b086-bc8eca4c83ae");
	m[0].role = MEMBER_SCHEDULER;
	m[0].self = true;
	strcpy(m[1].host, "10.0.0.2");
	strcpy(m[1].id, "bafe827d-b4d9-46ff-bac5-0528de71964e");
	m[1].role = MEMBER_WORKER;
	m[1].suspect = true;
	m[1].stats = (member_stats){.load_average = 1.5, .disk_used = 100, .disk_free = 200, .blobs = 7};
	m[1].pools[0] = (member_pool){"cpu=2,pool=default", 4, 3};
	m[1].npools = 1;
	strcpy(m[1].annotations, "zone=a,rack=7");
	for (int i = 0; i < 2; i++)
		m[i].port = 10081;
	member_view v = {.version = 9, .n = 2, .members = m};
	size_t len;
	uint8_t *b = member_view_pack(&v, &len);
	Cairn__V1__MemberView *pv = cairn__v1__member_view__unpack(NULL, len, b);
	assert_non_null(pv);
	assert_int_equal(pv->version, 9);
	assert_string_equal(pv->self_id, m[0].id);
	assert_int_equal(pv->n_members, 2);
	assert_int_equal(pv->members[0]->role, CAIRN__V1__MEMBER__ROLE__SCHEDULER);
	assert_int_equal(pv->members[0]->state, CAIRN__V1__MEMBER__STATE__ALIVE);
	const Cairn__V1__Member *w = pv->members[1];
	assert_string_equal(w->host, "10.0.0.2");
	assert_int_equal(w->port, 10081);
	assert_int_equal(w->state, CAIRN__V1__MEMBER__STATE__SUSPECT);
	assert_int_equal(w->stats->disk_free_bytes, 200);
	assert_int_equal(w->stats->blobs, 7);
	assert_int_equal(w->n_pools, 1);
	assert_int_equal(w->pools[0]->n_properties, 2);
	assert_string_equal(w->pools[0]->properties[1]->name, "pool");
	assert_string_equal(w->pools[0]->properties[1]->value, "default");
	assert_int_equal(w->pools[0]->total, 4);
	assert_int_equal(w->pools[0]->free, 3);
	assert_int_equal(w->n_annotations, 2);
	assert_string_equal(w->annotations[1]->name, "rack");
	cairn__v1__member_view__free_unpacked(pv, NULL);
	free(b);
}

static void address_selector(void **state)
{
	(void)state;
	char out[MEMBER_HOST_MAX];
	cairn_status st = member_pick_address("127.0.0.11/32", out);
	assert_int_equal(st.code, CAIRN_OK);
	assert_string_equal(out, "127.0.0.11");
	st = member_pick_address("127.0.0.0/8", out);
	assert_int_equal(st.code, CAIRN_OK);
	assert_string_equal(out, "127.0.0.1");
	/* a documentation range that this machine has no address in */
	const char *nets[] = {"203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"}, *none = NULL;
	for (size_t i = 0; i < 3 && !none; i++)
		if (member_pick_address(nets[i], out).code != CAIRN_OK)
			none = nets[i];
	assert_non_null(none);
	st = member_pick_address(none, out);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "127.0.0.1")); /* it names the addresses there are */
	char one[32];
	snprintf(one, sizeof one, "%.*s7/32", (int)(strrchr(none, '.') - none + 1), none);
	st = member_pick_address(one, out); /* one address, not local: cannot be bound */
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	const char *bad[] = {"", "10.0.0.0/33", "10.0.0/8", "host/8", "10.0.0.0/", "/8", "10.0.0.0/8x"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(member_pick_address(bad[i], out).code, CAIRN_INVALID_ARGUMENT);
}

static void id_is_kept(void **state)
{
	(void)state;
	char dir[] = "/tmp/cairn-member-XXXXXX", a[MEMBER_ID_LEN + 1], b[MEMBER_ID_LEN + 1], path[64];
	assert_non_null(mkdtemp(dir));
	assert_int_equal(member_id_load(dir, a).code, CAIRN_OK);
	assert_int_equal(strlen(a), MEMBER_ID_LEN);
	assert_int_equal(a[14], '4'); /* a version 4 UUID */
	assert_int_equal(member_id_load(dir, b).code, CAIRN_OK);
	assert_string_equal(a, b);
	snprintf(path, sizeof path, "%s/member-id", dir);
	FILE *f = fopen(path, "w");
	fputs("not a uuid\n", f);
	fclose(f);
	cairn_status st = member_id_load(dir, b);
	assert_int_equal(st.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(st.msg, "member-id"));
	unlink(path);
	rmdir(dir);
}

/* ---- real sockets ------------------------------------------------------------------------------ */

static bool group_has(member_group *g, size_t n)
{
	member_view v;
	member_group_view(g, &v);
	bool ok = v.n == n;
	member_view_free(&v);
	return ok;
}

static void udp_groups_on_loopback(void **state)
{
	(void)state;
	/* ports of this test's own: a private port whose +2000 is free (bind fails loudly if not) */
	const uint16_t port = (uint16_t)(20000 + getpid() % 20000);
	char ids[3][MEMBER_ID_LEN + 1], hosts[3][MEMBER_HOST_MAX], seeds[64];
	member_group *g[3];
	snprintf(seeds, sizeof seeds, "127.0.0.31:%u", port);
	for (int i = 0; i < 3; i++) {
		snprintf(ids[i], sizeof ids[i], "00000000-0000-4000-8000-0000000000%02d", i + 31);
		snprintf(hosts[i], sizeof hosts[i], "127.0.0.%d", 31 + i);
		member_config cfg = {.group = "all", .port_offset = 2000, .discovery = MEMBER_STATIC,
		                     .static_members = seeds, .interval_ns = 200 * MS,
		                     .suspect_timeout_ns = 5 * SEC};
		member_self self = {.id = ids[i], .role = MEMBER_WORKER, .host = hosts[i], .port = port,
		                    .annotations = "zone=a"};
		cairn_status st = member_group_start(&cfg, &self, &g[i]);
		assert_int_equal(st.code, CAIRN_OK);
	}
	int64_t deadline = cairn_now_ns() + 30 * SEC; /* a bound on failure, not a measure */
	while (!(group_has(g[0], 3) && group_has(g[1], 3) && group_has(g[2], 3)))
		assert_true(cairn_now_ns() < deadline), usleep(10000);
	/* what each says of itself reaches the others (with the packets it sends them) */
	for (bool all = false; !all; usleep(10000)) {
		assert_true(cairn_now_ns() < deadline);
		member_view v;
		member_group_view(g[1], &v);
		all = true;
		for (size_t i = 0; i < v.n; i++)
			all &= !strcmp(v.members[i].annotations, "zone=a");
		member_view_free(&v);
	}
	member_group_stop(g[2]); /* says LEFT */
	while (!(group_has(g[0], 2) && group_has(g[1], 2)))
		assert_true(cairn_now_ns() < deadline), usleep(10000);
	member_group_stop(g[1]);
	member_group_stop(g[0]);
}

static void bad_static_members(void **state)
{
	(void)state;
	const char *bad[] = {"", "127.0.0.1", "127.0.0.1:0", "host:10081", "127.0.0.1:70000", "127.0.0.1:10081x"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		member_config cfg = {.group = "all", .port_offset = 2000, .discovery = MEMBER_STATIC, .static_members = bad[i]};
		member_self self = {.id = "00000000-0000-4000-8000-000000000041", .role = MEMBER_WORKER,
		                    .host = "127.0.0.41", .port = 10081};
		member_group *g = NULL;
		cairn_status st = member_group_start(&cfg, &self, &g);
		assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
		assert_null(g);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(static_join_converges),
		cmocka_unit_test(multicast_join_converges),
		cmocka_unit_test(dead_member_leaves_every_view),
		cmocka_unit_test(small_cluster_detects_promptly),
		cmocka_unit_test(helper_answers_for_a_silent_target),
		cmocka_unit_test(short_outage_is_refuted),
		cmocka_unit_test(broken_link_evicts_no_one),
		cmocka_unit_test(partition_across_heals),
		cmocka_unit_test(restart_with_same_id_rejoins),
		cmocka_unit_test(quick_restart_rejoins),
		cmocka_unit_test(leave_is_immediate),
		cmocka_unit_test(garbage_is_dropped),
		cmocka_unit_test(pools_reach_every_view),
		cmocka_unit_test(worst_case_sync_fits_a_datagram),
		cmocka_unit_test(view_block_format),
		cmocka_unit_test(view_packs_as_a_member_view),
		cmocka_unit_test(address_selector),
		cmocka_unit_test(id_is_kept),
		cmocka_unit_test(udp_groups_on_loopback),
		cmocka_unit_test(bad_static_members),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
