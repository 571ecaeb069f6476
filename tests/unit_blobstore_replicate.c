/* Unit tests of re-replication (blobstore/replicate.c) over in-memory member stores: after a member
 * leaves the view, every blob ends on its owners among the members left; an owner that fails is
 * given up on while the pass goes on, and a later pass finishes the work; an owner that held a blob
 * is not given it again; the replicator's thread follows views and cuts a pass short for a newer
 * one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blobstore/blobstore.h"
#include "mem_store.h"

#define NSTORES 4
#define NBLOBS 40
#define REPLICAS 2

typedef struct cluster {
	mem_store st[NSTORES];
	char id[NSTORES][40];
	cairn_digest d[NBLOBS];
	uint8_t *data[NBLOBS];
} cluster;

/* The members whose bit is set in mask, in order; returns how many. */
static size_t members(cluster *c, unsigned mask, blobstore_shard_member *m)
{
	size_t n = 0;
	for (unsigned i = 0; i < NSTORES; i++)
		if (mask & 1u << i)
			m[n++] = (blobstore_shard_member){.id = c->id[i], .store = &c->st[i].bs};
	return n;
}

/* NBLOBS blobs written through a shard over every member, so each is on its owners. */
static void cluster_init(cluster *c, bool async)
{
	for (unsigned i = 0; i < NSTORES; i++) {
		mem_init(&c->st[i], async);
		snprintf(c->id[i], sizeof c->id[i], "%08x-9244-44df-b086-bc8eca4c83ae", 0x5515cf45u + i * 0x01000193u);
	}
	blobstore_shard *sh = blobstore_shard_new(&(blobstore_shard_config){.replicas = REPLICAS});
	blobstore_shard_member m[NSTORES];
	blobstore_shard_set_members(sh, m, members(c, (1u << NSTORES) - 1, m));
	for (unsigned b = 0; b < NBLOBS; b++) {
		size_t len = 1 + b * 97;
		c->data[b] = pattern(len, b);
		cairn_digest_of(c->data[b], len, &c->d[b]);
		assert_int_equal(blobstore_put_sync(blobstore_shard_store(sh), &c->d[b], c->data[b], len).code, CAIRN_OK);
	}
	blobstore_shard_free(sh);
}

static void cluster_free(cluster *c)
{
	for (unsigned i = 0; i < NSTORES; i++)
		mem_free(&c->st[i]);
	for (unsigned b = 0; b < NBLOBS; b++)
		free(c->data[b]);
}

/* The stores holding blob b, as a mask. */
static unsigned holders(cluster *c, unsigned b)
{
	unsigned mask = 0;
	for (unsigned i = 0; i < NSTORES; i++)
		if (find(&c->st[i], &c->d[b]) >= 0)
			mask |= 1u << i;
	return mask;
}

/* The owners of blob b among the members of mask, as a mask. */
static unsigned owners(cluster *c, unsigned mask, unsigned b)
{
	blobstore_shard_member m[NSTORES];
	size_t n = members(c, mask, m);
	blobstore_ranking *r = blobstore_ranking_new(m, n);
	size_t o[REPLICAS];
	size_t k = blobstore_ranking_owners(r, &c->d[b], REPLICAS, o);
	blobstore_ranking_free(r);
	unsigned out = 0;
	for (size_t j = 0; j < k; j++)
		out |= 1u << (unsigned)((mem_store *)m[o[j]].store - c->st);
	return out;
}

/* The `list` of a member store: its blobs from the cursor on. */
static size_t list_store(void *arg, uint64_t *cursor, cairn_digest *out, size_t cap)
{
	mem_store *m = arg;
	size_t n = 0;
	pthread_mutex_lock(&m->mu);
	while (*cursor < (uint64_t)m->n && n < cap)
		out[n++] = m->d[(*cursor)++];
	pthread_mutex_unlock(&m->mu);
	return n;
}

/* Small batches and several copies in flight, so that a pass takes many steps and threads. */
static blobstore_replicate_config config_of(mem_store *self)
{
	return (blobstore_replicate_config){.replicas = REPLICAS, .copies = 3, .batch = 7, .list = list_store,
	                                    .list_arg = self};
}

/* One pass by each member of mask (in the view of mask, with the view of base_mask as its base, 0
 * for none); the results summed. */
static blobstore_replicate_result passes(cluster *c, unsigned mask, unsigned base_mask)
{
	blobstore_shard_member m[NSTORES], base[NSTORES];
	size_t n = members(c, mask, m), nbase = members(c, base_mask, base);
	blobstore_replicate_result sum = {0};
	for (unsigned i = 0; i < NSTORES; i++) {
		if (!(mask & 1u << i))
			continue;
		blobstore_replicate_config cfg = config_of(&c->st[i]);
		blobstore_replicate_result r;
		blobstore_replicate_pass(&cfg, c->id[i], m, n, base_mask ? base : NULL, nbase, NULL, NULL, &r);
		assert_false(r.cancelled);
		sum.walked += r.walked;
		sum.checked += r.checked;
		sum.copied += r.copied;
		sum.failed += r.failed;
		sum.peers_failed += r.peers_failed;
	}
	return sum;
}

/* Every blob is on its owners among mask, and (within mask) nowhere else. */
static void assert_on_owners(cluster *c, unsigned mask)
{
	for (unsigned b = 0; b < NBLOBS; b++)
		assert_int_equal(holders(c, b) & mask, owners(c, mask, b));
}

static void check_removal(bool async, bool with_base)
{
	cluster c;
	cluster_init(&c, async);
	assert_on_owners(&c, 0xf);
	/* the blobs member 3 owned lack a copy among the others: one each */
	unsigned lacking = 0;
	for (unsigned b = 0; b < NBLOBS; b++)
		lacking += (owners(&c, 0xf, b) & 0x8) != 0;
	assert_true(lacking > 0);
	blobstore_replicate_result r = passes(&c, 0x7, with_base ? 0xf : 0);
	assert_int_equal(r.copied, lacking);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.peers_failed, 0);
	assert_on_owners(&c, 0x7);
	for (unsigned b = 0; b < NBLOBS; b++) /* what the member that left held is left alone */
		assert_int_equal((holders(&c, b) & 0x8) != 0, (owners(&c, 0xf, b) & 0x8) != 0);
	if (with_base) /* only the blobs with a new owner were asked about */
		assert_int_equal(r.checked, lacking);
	cluster_free(&c);
}

static void a_removed_member_s_blobs_get_their_copies_again(void **state)
{
	(void)state;
	check_removal(false, true);
	check_removal(true, true);
	check_removal(false, false);
	check_removal(true, false);
}

/* Breaks member 1 as a peer; the passes of the others go on. */
static void check_failing_peer(bool async, void (*breaks)(mem_store *m, bool broken))
{
	cluster c;
	cluster_init(&c, async);
	breaks(&c.st[1], true);
	blobstore_replicate_result r = passes(&c, 0x7, 0xf);
	unsigned to_1 = 0; /* copies that had to go to member 1 */
	for (unsigned b = 0; b < NBLOBS; b++) {
		unsigned now = owners(&c, 0x7, b), then = owners(&c, 0xf, b);
		if (now & ~then & 0x2) {
			to_1++;
			assert_int_equal(holders(&c, b) & 0x7, now & ~0x2u);
		} else {
			assert_int_equal(holders(&c, b) & 0x7, now);
		}
	}
	assert_true(to_1 > 0);
	assert_int_equal(r.failed, to_1);
	assert_true(r.peers_failed >= 1);
	/* the next pass, with the peer back, finishes the work */
	breaks(&c.st[1], false);
	r = passes(&c, 0x7, 0xf);
	assert_int_equal(r.copied, to_1);
	assert_int_equal(r.failed, 0);
	assert_on_owners(&c, 0x7);
	cluster_free(&c);
}

static void fails_find(mem_store *m, bool broken) { m->fail_find = broken ? CAIRN_UNAVAILABLE : 0; }
static void refuses_writes(mem_store *m, bool broken) { m->fail_open_write = broken ? CAIRN_UNAVAILABLE : 0; }
static void fails_commits(mem_store *m, bool broken) { m->fail_commit = broken ? CAIRN_DEADLINE_EXCEEDED : 0; }

static void a_failing_peer_does_not_stop_the_pass(void **state)
{
	(void)state;
	for (int async = 0; async < 2; async++) {
		check_failing_peer(async, fails_find);
		check_failing_peer(async, refuses_writes);
		check_failing_peer(async, fails_commits);
	}
}

/* Drops blob b from store m (as its eviction would). */
static void drop(mem_store *m, const cairn_digest *d)
{
	int i = find(m, d);
	assert_true(i >= 0);
	free(m->data[i]);
	m->d[i] = m->d[m->n - 1];
	m->data[i] = m->data[m->n - 1];
	m->n--;
}

static void an_owner_that_held_a_blob_is_not_given_it_again(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, false);
	/* a blob evicted by one owner, in a view that did not change */
	unsigned o = owners(&c, 0xf, 0);
	unsigned first = (unsigned)__builtin_ctz(o);
	drop(&c.st[first], &c.d[0]);
	blobstore_replicate_result r = passes(&c, 0xf, 0xf);
	assert_int_equal(r.walked, 2 * NBLOBS - 1);
	assert_int_equal(r.checked, 0);
	assert_int_equal(r.copied, 0);
	assert_int_equal(holders(&c, 0), o & ~(1u << first));
	/* without a base every owner is asked, and the copy comes back */
	r = passes(&c, 0xf, 0);
	assert_int_equal(r.copied, 1);
	assert_on_owners(&c, 0xf);
	cluster_free(&c);
}

/* ---- the replicator's thread ----------------------------------------------------------------- */

static void wait_for_view(blobstore_replicator *r)
{
	int64_t deadline = cairn_now_ns() + 60 * INT64_C(1000000000);
	for (;;) {
		blobstore_replicator_stats s = blobstore_replicator_get_stats(r);
		if (s.views > 0 && s.done_view == s.views)
			return;
		assert_true(cairn_now_ns() < deadline);
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
}

static void the_replicators_follow_the_views(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, true);
	blobstore_replicator *r[NSTORES];
	for (unsigned i = 0; i < NSTORES; i++) {
		blobstore_replicate_config cfg = config_of(&c.st[i]);
		assert_int_equal(blobstore_replicator_new(&cfg, c.id[i], &r[i]).code, CAIRN_OK);
	}
	blobstore_shard_member m[NSTORES];
	size_t n = members(&c, 0xf, m);
	for (unsigned i = 0; i < NSTORES; i++) {
		blobstore_replicator_set_members(r[i], m, n);
		blobstore_replicator_set_members(r[i], m, n); /* the same view again starts nothing */
	}
	for (unsigned i = 0; i < NSTORES; i++) {
		wait_for_view(r[i]);
		blobstore_replicator_stats s = blobstore_replicator_get_stats(r[i]);
		assert_int_equal(s.views, 1);
		assert_int_equal(s.passes, 1);
		assert_int_equal(s.last.copied, 0);
	}
	/* member 3 leaves: the others' views change */
	n = members(&c, 0x7, m);
	for (unsigned i = 0; i < 3; i++)
		blobstore_replicator_set_members(r[i], m, n);
	for (unsigned i = 0; i < 3; i++)
		wait_for_view(r[i]);
	assert_on_owners(&c, 0x7);
	for (unsigned i = 0; i < NSTORES; i++)
		blobstore_replicator_free(r[i]);
	cluster_free(&c);
}

static void a_newer_view_cuts_a_pass_short(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, true);
	blobstore_replicate_config cfg = config_of(&c.st[0]);
	blobstore_replicator *r;
	assert_int_equal(blobstore_replicator_new(&cfg, c.id[0], &r).code, CAIRN_OK);
	/* the first pass (no base: it asks every other owner) waits on member 1's answer */
	c.st[1].hold = true;
	blobstore_shard_member m[NSTORES];
	blobstore_replicator_set_members(r, m, members(&c, 0xf, m));
	int64_t deadline = cairn_now_ns() + 60 * INT64_C(1000000000);
	while (!__atomic_load_n(&c.st[1].held, __ATOMIC_ACQUIRE)) {
		assert_true(cairn_now_ns() < deadline);
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	/* member 3 leaves meanwhile; then the answer comes */
	blobstore_replicator_set_members(r, m, members(&c, 0x7, m));
	mem_release(&c.st[1]);
	wait_for_view(r);
	blobstore_replicator_stats s = blobstore_replicator_get_stats(r);
	assert_int_equal(s.views, 2);
	assert_int_equal(s.passes, 1); /* the cut pass does not count */
	assert_int_equal(s.done_view, 2);
	assert_false(s.last.cancelled);
	/* member 0's blobs are on their owners in the newer view */
	for (unsigned b = 0; b < NBLOBS; b++)
		if (holders(&c, b) & 0x1 && owners(&c, 0x7, b) & 0x1)
			assert_int_equal(holders(&c, b) & 0x7, owners(&c, 0x7, b));
	blobstore_replicator_free(r);
	cluster_free(&c);
}

int main(void)
{
	cairn_log_set_level(CAIRN_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_removed_member_s_blobs_get_their_copies_again),
		cmocka_unit_test(a_failing_peer_does_not_stop_the_pass),
		cmocka_unit_test(an_owner_that_held_a_blob_is_not_given_it_again),
		cmocka_unit_test(the_replicators_follow_the_views),
		cmocka_unit_test(a_newer_view_cuts_a_pass_short),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
