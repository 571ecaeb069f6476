/* Unit tests of the sharded blob store (blobstore/shard.c) over in-memory member stores that answer
 * inline or later from other threads: where blobs land and how little moves when the view changes,
 * replicas, members that fail or refuse, reads from former owners, view changes during calls, and
 * an empty view. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blobstore/blobstore.h"
#include "mem_store.h"

/* ---- a small cluster of in-memory members ---------------------------------------------------- */

#define NSTORES 3

typedef struct cluster {
	mem_store st[NSTORES];
	char id[NSTORES][40];
	blobstore_shard *sh;
	blobstore *bs;
} cluster;

static void member_id(unsigned i, char out[40])
{
	snprintf(out, 40, "%08x-9244-44df-b086-bc8eca4c83ae", 0x5515cf45u + i * 0x01000193u);
}

/* Makes the stores whose bit is set in mask the members. */
static void cluster_view(cluster *c, unsigned mask)
{
	blobstore_shard_member m[NSTORES];
	size_t n = 0;
	for (unsigned i = 0; i < NSTORES; i++)
		if (mask & 1u << i)
			m[n++] = (blobstore_shard_member){.id = c->id[i], .store = &c->st[i].bs};
	blobstore_shard_set_members(c->sh, m, n);
}

static void cluster_init(cluster *c, int replicas, bool async)
{
	for (unsigned i = 0; i < NSTORES; i++) {
		mem_init(&c->st[i], async);
		member_id(i, c->id[i]);
	}
	c->sh = blobstore_shard_new(&(blobstore_shard_config){.replicas = replicas});
	c->bs = blobstore_shard_store(c->sh);
	cluster_view(c, (1u << NSTORES) - 1);
}

static void cluster_free(cluster *c)
{
	blobstore_shard_free(c->sh);
	for (unsigned i = 0; i < NSTORES; i++)
		mem_free(&c->st[i]);
}

/* The stores holding d, as a mask. */
static unsigned holders(cluster *c, const cairn_digest *d)
{
	unsigned mask = 0;
	for (unsigned i = 0; i < NSTORES; i++)
		if (find(&c->st[i], d) >= 0)
			mask |= 1u << i;
	return mask;
}

static unsigned bits(unsigned mask) { return (unsigned)__builtin_popcount(mask); }

/* The owners of d among all NSTORES members, found by writing it through a cluster of its own. */
static unsigned owners_of(const cairn_digest *d, const void *data, int replicas)
{
	cluster c;
	cluster_init(&c, replicas, false);
	assert_int_equal(blobstore_put_sync(c.bs, d, data, (size_t)d->size).code, CAIRN_OK);
	unsigned mask = holders(&c, d);
	cluster_free(&c);
	return mask;
}

static void assert_reads(blobstore *bs, const cairn_digest *d, const uint8_t *want)
{
	uint8_t *got;
	size_t len;
	assert_int_equal(blobstore_get_sync(bs, d, INT64_MAX, &got, &len).code, CAIRN_OK);
	assert_int_equal(len, (size_t)d->size);
	assert_memory_equal(got, want, len);
	free(got);
}

/* ---- placement ------------------------------------------------------------------------------- */

#define PLACE_DIGESTS 10000
#define PLACE_MEMBERS 10

/* A member that only notes which digests it was asked about: with one replica, find_missing asks
 * each digest's owner alone. The digests' sizes are their numbers. */
typedef struct probe {
	blobstore bs;
	int member;
	int *owner;
} probe;

static void probe_find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing,
                               blobstore_done_cb cb, void *arg)
{
	probe *p = (probe *)bs;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(p->owner[ds[i].size], -1);
		p->owner[ds[i].size] = p->member;
		missing[i] = 1;
	}
	cb(arg, cairn_ok());
}

static const blobstore_ops probe_ops = {.find_missing = probe_find_missing};

/* The first owner of every digest under the members listed in which[0..n). */
static void first_owners(probe *pr, char (*ids)[40], const int *which, size_t n, const cairn_digest *ds, int *owner)
{
	blobstore_shard *sh = blobstore_shard_new(NULL);
	blobstore_shard_member m[PLACE_MEMBERS + 1];
	for (size_t i = 0; i < n; i++) {
		pr[which[i]].owner = owner;
		m[i] = (blobstore_shard_member){.id = ids[which[i]], .store = &pr[which[i]].bs};
	}
	blobstore_shard_set_members(sh, m, n);
	memset(owner, -1, PLACE_DIGESTS * sizeof *owner);
	uint8_t *missing = malloc(PLACE_DIGESTS);
	cairn_status st = blobstore_find_missing_sync(blobstore_shard_store(sh), ds, PLACE_DIGESTS, missing);
	assert_int_equal(st.code, CAIRN_OK);
	for (size_t i = 0; i < PLACE_DIGESTS; i++)
		assert_int_not_equal(owner[i], -1);
	free(missing);
	blobstore_shard_free(sh);
}

static void placement_moves_only_what_it_must(void **state)
{
	(void)state;
	cairn_digest *ds = malloc(PLACE_DIGESTS * sizeof *ds);
	for (int i = 0; i < PLACE_DIGESTS; i++) {
		cairn_digest_of(&i, sizeof i, &ds[i]);
		ds[i].size = i;
	}
	probe pr[PLACE_MEMBERS + 1];
	char ids[PLACE_MEMBERS + 1][40];
	int which[PLACE_MEMBERS + 1];
	for (int i = 0; i <= PLACE_MEMBERS; i++) {
		pr[i] = (probe){.bs = {.ops = &probe_ops}, .member = i};
		member_id((unsigned)i, ids[i]);
		which[i] = i;
	}
	int *before = malloc(PLACE_DIGESTS * sizeof *before), *after = malloc(PLACE_DIGESTS * sizeof *after);
	first_owners(pr, ids, which, PLACE_MEMBERS, ds, before);
	/* each of N members owns a fair share */
	int share[PLACE_MEMBERS] = {0};
	for (int i = 0; i < PLACE_DIGESTS; i++)
		share[before[i]]++;
	for (int j = 0; j < PLACE_MEMBERS; j++)
		assert_in_range(share[j], PLACE_DIGESTS / PLACE_MEMBERS / 2, 2 * PLACE_DIGESTS / PLACE_MEMBERS);
	/* one joins: only digests it now owns move, about 1/(N+1) of them */
	first_owners(pr, ids, which, PLACE_MEMBERS + 1, ds, after);
	int moved = 0;
	for (int i = 0; i < PLACE_DIGESTS; i++)
		if (after[i] != before[i]) {
			assert_int_equal(after[i], PLACE_MEMBERS);
			moved++;
		}
	assert_in_range(moved, PLACE_DIGESTS / (PLACE_MEMBERS + 1) / 2, 2 * PLACE_DIGESTS / (PLACE_MEMBERS + 1));
	/* one leaves (not the last listed): only the digests it owned move */
	memcpy(before, after, PLACE_DIGESTS * sizeof *before);
	const int gone = 3;
	memmove(&which[gone], &which[gone + 1], (PLACE_MEMBERS - gone) * sizeof *which);
	first_owners(pr, ids, which, PLACE_MEMBERS, ds, after);
	for (int i = 0; i < PLACE_DIGESTS; i++) {
		if (before[i] == gone)
			assert_int_not_equal(after[i], gone);
		else
			assert_int_equal(after[i], before[i]);
	}
	/* every scheduler places alike, whatever the order of its member list */
	for (int i = 0; i < PLACE_MEMBERS / 2; i++) {
		int t = which[i];
		which[i] = which[PLACE_MEMBERS - 1 - i];
		which[PLACE_MEMBERS - 1 - i] = t;
	}
	first_owners(pr, ids, which, PLACE_MEMBERS, ds, before);
	assert_memory_equal(before, after, PLACE_DIGESTS * sizeof *before);
	free(before);
	free(after);
	free(ds);
}

/* ---- replicas, reads and find_missing -------------------------------------------------------- */

static void replicas_land_on_two_owners(bool async)
{
	cluster c;
	cluster_init(&c, 2, async);
	for (unsigned k = 0; k < 6; k++) {
		uint8_t *p = pattern(2500 + k, k);
		cairn_digest d;
		cairn_digest_of(p, 2500 + k, &d);
		assert_int_equal(blobstore_put_sync(c.bs, &d, p, (size_t)d.size).code, CAIRN_OK);
		unsigned held = holders(&c, &d);
		assert_int_equal(bits(held), 2);
		/* either owner gone from the view, the blob is still read from the other */
		for (unsigned i = 0; i < NSTORES; i++) {
			if (!(held & 1u << i))
				continue;
			cluster_view(&c, ((1u << NSTORES) - 1) & ~(1u << i));
			assert_reads(c.bs, &d, p);
		}
		cluster_view(&c, (1u << NSTORES) - 1);
		free(p);
	}
	cluster_free(&c);
}

static void replicas_inline(void **state)
{
	(void)state;
	replicas_land_on_two_owners(false);
}

static void replicas_from_other_threads(void **state)
{
	(void)state;
	replicas_land_on_two_owners(true);
}

/* Puts blobs 0..n-1 (of sizes 100+i) through the shard; their digests in ds. */
static void put_blobs(cluster *c, cairn_digest *ds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint8_t *p = pattern(100 + i, i);
		cairn_digest_of(p, 100 + i, &ds[i]);
		assert_int_equal(blobstore_put_sync(c->bs, &ds[i], p, 100 + i).code, CAIRN_OK);
		free(p);
	}
}

static void find_missing_counts_a_failing_owner_as_lacking(void **state)
{
	(void)state;
	enum { N = 12 };
	for (int replicas = 1; replicas <= 2; replicas++) {
		cluster c;
		cluster_init(&c, replicas, true);
		cairn_digest ds[N + 1];
		put_blobs(&c, ds, N);
		cairn_digest_of("absent", 6, &ds[N]);
		c.st[0].fail_find = CAIRN_UNAVAILABLE;
		uint8_t missing[N + 1];
		assert_int_equal(blobstore_find_missing_sync(c.bs, ds, N + 1, missing).code, CAIRN_OK);
		int on_failing = 0;
		for (unsigned i = 0; i < N; i++) {
			/* one replica: a blob only the failing member holds is reported missing; two: the
			 * other owner answers for it */
			on_failing += (holders(&c, &ds[i]) & 1u) != 0;
			assert_int_equal(missing[i], holders(&c, &ds[i]) == 1u);
			if (replicas == 2)
				assert_int_equal(missing[i], 0);
		}
		assert_true(on_failing > 0);
		assert_int_equal(missing[N], 1);
		cluster_free(&c);
	}
}

static void open_read_falls_back_to_a_former_owner(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, 1, true);
	/* blobs written while store 0 was the only member, then the others join */
	cluster_view(&c, 1u);
	enum { N = 8 };
	cairn_digest ds[N];
	put_blobs(&c, ds, N);
	cluster_view(&c, (1u << NSTORES) - 1);
	uint8_t missing[N];
	assert_int_equal(blobstore_find_missing_sync(c.bs, ds, N, missing).code, CAIRN_OK);
	int moved = 0;
	for (unsigned i = 0; i < N; i++) {
		if (!missing[i])
			continue; /* store 0 still owns it */
		moved++;
		uint8_t *p = pattern(100 + i, i);
		assert_reads(c.bs, &ds[i], p);
		free(p);
	}
	assert_true(moved > 0);
	/* a blob no member holds: every member asked, NOT_FOUND naming it */
	int opens[NSTORES];
	for (unsigned i = 0; i < NSTORES; i++)
		opens[i] = c.st[i].opens;
	cairn_digest absent;
	cairn_digest_of("nowhere", 7, &absent);
	char dstr[CAIRN_DIGEST_STR_MAX];
	cairn_status st = blobstore_fetch_sync(c.bs, &absent);
	assert_int_equal(st.code, CAIRN_NOT_FOUND);
	assert_non_null(strstr(st.msg, cairn_digest_str(&absent, dstr)));
	for (unsigned i = 0; i < NSTORES; i++)
		assert_int_equal(c.st[i].opens, opens[i] + 1);
	cluster_free(&c);
}

/* ---- writes with owners that refuse or fail -------------------------------------------------- */

/* Writes a blob through a cluster whose owners of it fail as set up by `fail`; returns the put's
 * status, and in *held the stores that hold the blob afterwards. */
static cairn_status put_with_failures(bool async, void (*break_owner)(mem_store *owner, int nth), unsigned *held)
{
	uint8_t *p = pattern(5000, 11);
	cairn_digest d;
	cairn_digest_of(p, 5000, &d);
	unsigned owners = owners_of(&d, p, 2);
	assert_int_equal(bits(owners), 2);
	cluster c;
	cluster_init(&c, 2, async);
	for (unsigned i = 0, nth = 0; i < NSTORES; i++)
		if (owners & 1u << i)
			break_owner(&c.st[i], (int)nth++);
	cairn_status st = blobstore_put_sync(c.bs, &d, p, 5000);
	*held = holders(&c, &d);
	if (cairn_is_ok(&st))
		assert_reads(c.bs, &d, p);
	assert_int_equal(*held & ~owners, 0); /* never on a member that does not own it */
	cluster_free(&c);
	free(p);
	return st;
}

static void first_refuses(mem_store *m, int nth) { m->fail_open_write = nth == 0 ? CAIRN_RESOURCE_EXHAUSTED : 0; }
static void both_refuse(mem_store *m, int nth) { (void)nth, m->fail_open_write = CAIRN_RESOURCE_EXHAUSTED; }
static void first_fails_writes(mem_store *m, int nth) { m->fail_write = nth == 0 ? CAIRN_UNAVAILABLE : 0; }
static void both_fail_writes(mem_store *m, int nth) { (void)nth, m->fail_write = CAIRN_UNAVAILABLE; }
static void first_fails_commit(mem_store *m, int nth) { m->fail_commit = nth == 0 ? CAIRN_INTERNAL : 0; }
static void both_fail_commit(mem_store *m, int nth) { (void)nth, m->fail_commit = CAIRN_INTERNAL; }

static void writes_survive_one_failing_owner(void **state)
{
	(void)state;
	for (int async = 0; async <= 1; async++) {
		unsigned held;
		assert_int_equal(put_with_failures(async, first_refuses, &held).code, CAIRN_OK);
		assert_int_equal(bits(held), 1);
		assert_int_equal(put_with_failures(async, first_fails_writes, &held).code, CAIRN_OK);
		assert_int_equal(bits(held), 1);
		assert_int_equal(put_with_failures(async, first_fails_commit, &held).code, CAIRN_OK);
		assert_int_equal(bits(held), 1);
		cairn_status st = put_with_failures(async, both_refuse, &held);
		assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
		assert_non_null(strstr(st.msg, "worker "));
		assert_int_equal(held, 0);
		assert_int_equal(put_with_failures(async, both_fail_writes, &held).code, CAIRN_UNAVAILABLE);
		assert_int_equal(held, 0);
		assert_int_equal(put_with_failures(async, both_fail_commit, &held).code, CAIRN_INTERNAL);
		assert_int_equal(held, 0);
	}
}

static void wrong_bytes_are_refused_by_every_owner(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, 2, true);
	cairn_digest d;
	cairn_digest_of("right", 5, &d);
	assert_int_equal(blobstore_put_sync(c.bs, &d, "wrong", 5).code, CAIRN_INVALID_ARGUMENT);
	assert_int_equal(holders(&c, &d), 0);
	cluster_free(&c);
}

/* ---- view changes during calls --------------------------------------------------------------- */

typedef struct open_wait {
	cairn_waiter w;
	blobstore_reader *r;
	size_t n;
} open_wait;

static void got_reader(void *arg, cairn_status st, blobstore_reader *r)
{
	open_wait *o = arg;
	o->r = r;
	cairn_waiter_done(&o->w, st);
}

static void got_bytes(void *arg, cairn_status st, size_t n)
{
	open_wait *o = arg;
	o->n = n;
	cairn_waiter_done(&o->w, st);
}

static void read_survives_a_view_change(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, 1, true);
	uint8_t *p = pattern(4000, 5);
	cairn_digest d;
	cairn_digest_of(p, 4000, &d);
	assert_int_equal(blobstore_put_sync(c.bs, &d, p, 4000).code, CAIRN_OK);
	unsigned owner = holders(&c, &d);
	unsigned o = (unsigned)__builtin_ctz(owner);
	/* the owner holds its answer; meanwhile it leaves the view, and then everyone does */
	c.st[o].hold = true;
	open_wait ow = {0};
	cairn_waiter_init(&ow.w);
	blobstore_open_read(c.bs, &d, got_reader, &ow);
	assert_non_null(c.st[o].held);
	cluster_view(&c, ((1u << NSTORES) - 1) & ~owner);
	cluster_view(&c, 0);
	mem_release(&c.st[o]);
	assert_int_equal(cairn_waiter_wait(&ow.w).code, CAIRN_OK);
	assert_int_equal(ow.r->size, 4000);
	uint8_t buf[1000];
	blobstore_read(ow.r, 3000, buf, sizeof buf, got_bytes, &ow);
	assert_int_equal(cairn_waiter_wait(&ow.w).code, CAIRN_OK);
	assert_int_equal(ow.n, 1000);
	assert_memory_equal(buf, p + 3000, 1000);
	blobstore_close_read(ow.r);
	cairn_waiter_destroy(&ow.w);
	free(p);
	cluster_free(&c);
}

static void write_survives_a_view_change(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, 2, true);
	uint8_t *p = pattern(3000, 8);
	cairn_digest d;
	cairn_digest_of(p, 3000, &d);
	unsigned owners = owners_of(&d, p, 2);
	blobstore_writer *w;
	assert_int_equal(blobstore_open_write(c.bs, &d, &w).code, CAIRN_OK);
	cluster_view(&c, 0);
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	blobstore_write(w, p, 3000, cairn_waiter_done, &wt);
	assert_int_equal(cairn_waiter_wait(&wt).code, CAIRN_OK);
	assert_int_equal(w->written, 3000);
	blobstore_commit(w, cairn_waiter_done, &wt);
	assert_int_equal(cairn_waiter_wait(&wt).code, CAIRN_OK);
	cairn_waiter_destroy(&wt);
	/* on the owners of the view it was opened in */
	assert_int_equal(holders(&c, &d), owners);
	free(p);
	cluster_free(&c);
}

/* Changes the view over and over: all members, then all but one, each in turn. */
static void *change_views(void *arg)
{
	cluster *c = arg;
	for (unsigned i = 0; i < 300; i++)
		cluster_view(c, i % 2 ? (1u << NSTORES) - 1 : ((1u << NSTORES) - 1) & ~(1u << (i / 2 % NSTORES)));
	return NULL;
}

static void calls_meet_view_changes_from_another_thread(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, 2, true);
	uint8_t *p = pattern(3000, 4);
	cairn_digest d;
	cairn_digest_of(p, 3000, &d);
	assert_int_equal(blobstore_put_sync(c.bs, &d, p, 3000).code, CAIRN_OK);
	/* on two of three members, the blob is in every view the other thread sets */
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, change_views, &c), 0);
	for (int i = 0; i < 300; i++) {
		uint8_t missing = 1;
		assert_int_equal(blobstore_find_missing_sync(c.bs, &d, 1, &missing).code, CAIRN_OK);
		assert_int_equal(missing, 0);
		assert_reads(c.bs, &d, p);
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	free(p);
	cluster_free(&c);
}

/* ---- no member ------------------------------------------------------------------------------- */

static void assert_no_worker(cairn_status st)
{
	assert_int_equal(st.code, CAIRN_UNAVAILABLE);
	assert_non_null(strstr(st.msg, "no worker in the view"));
}

static void empty_view_is_unavailable(void **state)
{
	(void)state;
	cluster c;
	cluster_init(&c, 1, false);
	for (int round = 0; round < 2; round++) {
		/* a new shard has no member; then the members all leave */
		if (round == 0) {
			blobstore_shard_free(c.sh);
			c.sh = blobstore_shard_new(NULL);
			c.bs = blobstore_shard_store(c.sh);
		} else {
			cluster_view(&c, 0);
		}
		cairn_digest d;
		cairn_digest_of("x", 1, &d);
		uint8_t missing = 7;
		assert_no_worker(blobstore_find_missing_sync(c.bs, &d, 1, &missing));
		assert_no_worker(blobstore_fetch_sync(c.bs, &d));
		assert_no_worker(blobstore_put_sync(c.bs, &d, "x", 1));
		cluster_view(&c, (1u << NSTORES) - 1);
		assert_int_equal(blobstore_put_sync(c.bs, &d, "x", 1).code, CAIRN_OK);
	}
	cluster_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(placement_moves_only_what_it_must),
		cmocka_unit_test(replicas_inline),
		cmocka_unit_test(replicas_from_other_threads),
		cmocka_unit_test(find_missing_counts_a_failing_owner_as_lacking),
		cmocka_unit_test(open_read_falls_back_to_a_former_owner),
		cmocka_unit_test(writes_survive_one_failing_owner),
		cmocka_unit_test(wrong_bytes_are_refused_by_every_owner),
		cmocka_unit_test(read_survives_a_view_change),
		cmocka_unit_test(write_survives_a_view_change),
		cmocka_unit_test(calls_meet_view_changes_from_another_thread),
		cmocka_unit_test(empty_view_is_unavailable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
