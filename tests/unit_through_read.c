/* Reading through the write-through blobstore (cachefs/through_read.c) from a file:// bucket: what
 * a client of a CAS with a bucket behind it relies on when a blob is not local. A download is
 * bounded by the digest (an object longer than it says is refused after its size and one byte), its
 * room in the CAS is reserved before it starts (so concurrent downloads cannot pass the hard limit,
 * and one that can never fit is refused without a download), and concurrent readers of one blob
 * share one download. To see downloads wait, a test holds the store's one transfer thread (a
 * gate) while it starts its reads. The same against radosgw, through the real server, is
 * tests/it_external_storage.sh. */
#include "through_fixture.h"

#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

/* Reopens the store with a CAS of max_size bytes (its hard limit too) and `transfers` transfer
 * threads. */
static void reopen(fixture *f, int64_t max_size, int transfers)
{
	close_through(f);
	f->max_size = max_size;
	f->transfers = transfers;
	open_through(f, false);
}

/* Puts data[0..n) in the bucket under the key of d, whatever d says. */
static void plant(const fixture *f, const cairn_digest *d, const uint8_t *data, size_t n)
{
	char path[256];
	snprintf(path, sizeof path, "%s/bucket/cas", f->dir);
	assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
	object_path(f, d, path, sizeof path);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

/* One open_read through the store (then one read of the blob), answered on another thread. */
typedef struct opening {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	cairn_status st;
	blobstore_reader *r;
	size_t got;
} opening;

static void answer(opening *o, cairn_status st, blobstore_reader *r, size_t got)
{
	pthread_mutex_lock(&o->mu);
	o->done = true;
	o->st = st;
	o->r = r ? r : o->r;
	o->got = got;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
}
static void on_opened(void *arg, cairn_status st, blobstore_reader *r) { answer(arg, st, r, 0); }
static void on_read(void *arg, cairn_status st, size_t n) { answer(arg, st, NULL, n); }

static cairn_status await(opening *o)
{
	pthread_mutex_lock(&o->mu);
	while (!o->done)
		pthread_cond_wait(&o->cv, &o->mu);
	o->done = false;
	pthread_mutex_unlock(&o->mu);
	return o->st;
}

/* Whether the open_read was answered already; does not wait. */
static bool answered(opening *o)
{
	pthread_mutex_lock(&o->mu);
	bool done = o->done;
	pthread_mutex_unlock(&o->mu);
	return done;
}

static void open_start(fixture *f, const cairn_digest *d, opening *o)
{
	*o = (opening){.done = false};
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	blobstore_open_read(f->bs, d, on_opened, o);
}

/* Waits for the open_read; if it went well, the blob must hold want[0..n). */
static cairn_status open_end(opening *o, const uint8_t *want, size_t n)
{
	cairn_status st = await(o);
	if (cairn_is_ok(&st)) {
		uint8_t *back = malloc(n + 1);
		blobstore_read(o->r, 0, back, n + 1, on_read, o);
		assert_int_equal(await(o).code, CAIRN_OK);
		assert_int_equal(o->got, n);
		assert_memory_equal(back, want, n);
		free(back);
		blobstore_close_read(o->r);
	}
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->mu);
	return st;
}

static cairn_status read_through(fixture *f, const cairn_digest *d, const uint8_t *want, size_t n)
{
	opening o;
	open_start(f, d, &o);
	return open_end(&o, want, n);
}

/* Holds the store's one transfer thread (in the callback of a HEAD) until gate_open, so that what
 * is asked of the store meanwhile waits in its queue. */
typedef struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered, open;
} gate;

static void gate_hold(void *arg, cairn_status st, int64_t size)
{
	(void)st, (void)size;
	gate *g = arg;
	pthread_mutex_lock(&g->mu);
	g->entered = true;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_close(fixture *f, gate *g)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->entered = g->open = false;
	objstore_head(f->os, "gate", gate_hold, g);
	pthread_mutex_lock(&g->mu);
	while (!g->entered)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* Once what waited behind the gate has been answered: the transfer thread has left gate_hold. */
static void gate_destroy(gate *g)
{
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
}

/* Polls until the CAS has `want` bytes reserved; false if it still has not after 10 s. */
static bool reserved_reaches(fixture *f, uint64_t want)
{
	int64_t deadline = cairn_now_ns() + INT64_C(10) * 1000000000;
	cachefs_stats cs;
	for (cachefs_get_stats(f->fs, &cs); cs.reserved != want; cachefs_get_stats(f->fs, &cs)) {
		if (cairn_now_ns() >= deadline)
			return false;
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	return true;
}

static void read_through_stops_after_the_digests_size(void **state)
{
	fixture *f = *state;
	cairn_digest d, other;
	uint8_t *blob = make_blob(11, 30, &d);
	uint8_t *junk = make_blob(4 * MiB, 31, &other);
	plant(f, &d, junk, 4 * MiB); /* 4 MiB under the key of an 11-byte blob */
	assert_int_equal(read_through(f, &d, NULL, 0).code, CAIRN_DATA_LOSS);
	cachefs_through_stats ts;
	objstore_stats os;
	cachefs_stats cs;
	stats(f, &ts, &os);
	cachefs_get_stats(f->fs, &cs);
	assert_true(os.bytes_down <= 12); /* the digest's size and one byte at most */
	assert_int_equal(ts.refused, 1);
	assert_int_equal(cs.reserved, 0);
	assert_false(cachefs_contains(f->fs, &d, false));
	assert_int_equal(entries(f, "cas/tmp"), 0);
	/* The right bytes under that key are read through (a packed blob, copied in). */
	plant(f, &d, blob, 11);
	assert_int_equal(read_through(f, &d, blob, 11).code, CAIRN_OK);
	stats(f, &ts, &os);
	assert_int_equal(ts.fetched, 1);
	free(blob);
	free(junk);
}

static void concurrent_reads_share_one_reserved_download(void **state)
{
	fixture *f = *state;
	reopen(f, INT64_C(1) << 30, 1);
	cairn_digest good, bad, other;
	size_t n = 300 << 10; /* a file of its own: adopted by rename */
	uint8_t *data = make_blob(n, 40, &good);
	free(make_blob(11, 41, &bad));
	uint8_t *junk = make_blob(MiB, 42, &other);
	plant(f, &good, data, n);
	plant(f, &bad, junk, MiB);
	gate g;
	gate_close(f, &g);
	opening o[8];
	for (int i = 0; i < 8; i++)
		open_start(f, i < 4 ? &good : &bad, &o[i]);
	/* Two downloads wait for the transfer thread, their room reserved already. */
	bool reserved = reserved_reaches(f, n + 11);
	gate_open(&g);
	int codes[8];
	for (int i = 0; i < 8; i++)
		codes[i] = open_end(&o[i], data, n).code;
	gate_destroy(&g);
	cachefs_through_stats ts;
	objstore_stats os;
	cachefs_stats cs;
	stats(f, &ts, &os);
	cachefs_get_stats(f->fs, &cs);
	assert_int_equal(os.gets, 2); /* one download per blob */
	for (int i = 0; i < 8; i++)
		assert_int_equal(codes[i], i < 4 ? CAIRN_OK : CAIRN_DATA_LOSS);
	assert_true(reserved);
	assert_int_equal(ts.fetched, 1);
	assert_int_equal(ts.refused, 1);
	assert_int_equal(cs.reserved, 0);
	assert_int_equal(cs.bytes, n);
	assert_int_equal(entries(f, "cas/tmp"), 0);
	free(data);
	free(junk);
}

static void read_through_room_counts_against_the_hard_limit(void **state)
{
	fixture *f = *state;
	reopen(f, MiB, 1);
	size_t n = 400 << 10;
	cairn_digest d[3], huge;
	uint8_t *data[3];
	for (int i = 0; i < 3; i++) {
		data[i] = make_blob(n, 50 + i, &d[i]);
		plant(f, &d[i], data[i], n);
	}
	uint8_t *hdata = make_blob(MiB + 1, 53, &huge); /* larger than the hard limit */
	plant(f, &huge, hdata, MiB + 1);
	gate g;
	gate_close(f, &g);
	opening o[4];
	for (int i = 0; i < 3; i++)
		open_start(f, &d[i], &o[i]);
	/* Two downloads hold 800 KiB of the 1 MiB: the third is refused at once, without a download;
	 * so is a blob that can never fit. */
	bool reserved = reserved_reaches(f, 2 * n);
	bool third_at_once = answered(&o[2]);
	open_start(f, &huge, &o[3]);
	bool huge_at_once = answered(&o[3]);
	gate_open(&g);
	cairn_status st[4];
	for (int i = 0; i < 4; i++)
		st[i] = open_end(&o[i], i < 3 ? data[i] : hdata, i < 3 ? n : MiB + 1);
	gate_destroy(&g);
	assert_int_equal(st[0].code, CAIRN_OK);
	assert_int_equal(st[1].code, CAIRN_OK);
	assert_int_equal(st[2].code, CAIRN_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(st[2].msg, "hard limit of 1048576 bytes"));
	assert_int_equal(st[3].code, CAIRN_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(st[3].msg, "larger than the hard limit"));
	assert_true(reserved);
	assert_true(third_at_once);
	assert_true(huge_at_once);
	/* Failures give the room back: an absent object, a copy of the right size with other bytes. */
	cairn_digest absent, wrong;
	free(make_blob(1000, 54, &absent));
	free(make_blob(1000, 55, &wrong));
	plant(f, &wrong, data[0], 1000);
	assert_int_equal(read_through(f, &absent, NULL, 0).code, CAIRN_NOT_FOUND);
	assert_int_equal(read_through(f, &wrong, NULL, 0).code, CAIRN_DATA_LOSS);
	cachefs_through_stats ts;
	objstore_stats os;
	cachefs_stats cs;
	stats(f, &ts, &os);
	cachefs_get_stats(f->fs, &cs);
	assert_int_equal(os.gets, 4); /* the two that fitted, the absent one, the wrong one */
	assert_int_equal(cs.rejected_writes, 2);
	assert_int_equal(cs.reserved, 0);
	assert_int_equal(cs.bytes, 2 * n);
	assert_int_equal(entries(f, "cas/tmp"), 0);
	for (int i = 0; i < 3; i++)
		free(data[i]);
	free(hdata);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(read_through_stops_after_the_digests_size, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(concurrent_reads_share_one_reserved_download, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(read_through_room_counts_against_the_hard_limit, setup_sync, teardown),
	};
	cairn_log_set_level(CAIRN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
