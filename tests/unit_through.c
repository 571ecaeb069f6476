/* The write-through blobstore (cachefs/through*.c) over a file:// object store: what a client of a
 * CAS with a bucket behind it relies on, without an S3 server. A blob of 1.5 MiB is uploaded from its
 * file after the commit, one of 100 KiB from memory. The same against radosgw, through the real
 * server, is tests/it_external_storage.sh. */
#include "cachefs/through.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MiB (1 << 20)

typedef struct fixture {
	char dir[64];
	char url[128];
	cachefs *fs;
	objstore *os;
	cachefs_through *t;
	blobstore *bs;
} fixture;

static void open_through(fixture *f, bool async)
{
	char cas[128];
	snprintf(cas, sizeof cas, "%s/cas", f->dir);
	cachefs_config cc = {.dir = cas, .max_size = INT64_C(1) << 30};
	assert_int_equal(cachefs_open(&cc, &f->fs).code, CAIRN_OK);
	objstore_config oc = {.url = f->url};
	assert_int_equal(objstore_open(&oc, &f->os).code, CAIRN_OK);
	assert_int_equal(cachefs_through_new(f->fs, f->os, async, &f->t).code, CAIRN_OK);
	f->bs = cachefs_through_blobstore(f->t);
}

/* Closes all, once everything under way is done (cachefs_through_free waits for it). */
static void close_through(fixture *f)
{
	cachefs_through_free(f->t);
	objstore_close(f->os);
	cachefs_close(f->fs);
	f->t = NULL;
}

static int setup(void **state, bool async)
{
	fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/unit_through.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->url, sizeof f->url, "file://%s/bucket", f->dir);
	open_through(f, async);
	*state = f;
	return 0;
}

static int setup_sync(void **state) { return setup(state, false); }
static int setup_async(void **state) { return setup(state, true); }

static int teardown(void **state)
{
	fixture *f = *state;
	if (f->t)
		close_through(f);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* A blob of n bytes, different for each seed; its digest in *d. */
static uint8_t *make_blob(size_t n, uint64_t seed, cairn_digest *d)
{
	uint8_t *b = malloc(n);
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (uint8_t)x;
	}
	cairn_digest_of(b, n, d);
	return b;
}

static void object_path(const fixture *f, const cairn_digest *d, char *out, size_t cap)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(d->hash, hex);
	snprintf(out, cap, "%s/bucket/cas/%s", f->dir, hex);
}

/* The bucket holds exactly data[0..n) for d. */
static void expect_object(const fixture *f, const cairn_digest *d, const uint8_t *data, size_t n)
{
	char path[256];
	object_path(f, d, path, sizeof path);
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	uint8_t *back = malloc(n + 1);
	assert_int_equal(fread(back, 1, n + 1, fp), n);
	fclose(fp);
	assert_memory_equal(back, data, n);
	free(back);
}

static bool has_object(const fixture *f, const cairn_digest *d)
{
	char path[256];
	object_path(f, d, path, sizeof path);
	return access(path, F_OK) == 0;
}

static void stats(fixture *f, cachefs_through_stats *ts, objstore_stats *os)
{
	cachefs_through_get_stats(f->t, ts);
	objstore_get_stats(f->os, os);
}

static void smaller_blobs_after_commit(void **state)
{
	fixture *f = *state;
	const size_t sizes[] = {100 << 10, 3 * MiB / 2}; /* from memory; from its file */
	for (size_t i = 0; i < 2; i++) {
		cairn_digest d;
		uint8_t *data = make_blob(sizes[i], 10 + i, &d);
		assert_int_equal(blobstore_put_sync(f->bs, &d, data, sizes[i]).code, CAIRN_OK);
		expect_object(f, &d, data, sizes[i]);
		/* A wrong digest is refused before anything is uploaded. */
		cairn_digest bad = d;
		bad.hash[0] ^= 1;
		assert_int_equal(blobstore_put_sync(f->bs, &bad, data, sizes[i]).code, CAIRN_INVALID_ARGUMENT);
		assert_false(has_object(f, &bad));
		free(data);
	}
	cachefs_through_stats ts;
	objstore_stats os;
	stats(f, &ts, &os);
	assert_int_equal(ts.uploaded, 2);
	assert_int_equal(os.heads, 1); /* only the blob of 1 MiB and more is asked for first */
}

static void async_backlog_reads_blobs_back(void **state)
{
	fixture *f = *state;
	const size_t sizes[] = {100 << 10, 3 * MiB / 2, 7 * MiB}; /* read back; from its file; from its file */
	cairn_digest ds[3];
	uint8_t *data[3];
	for (size_t i = 0; i < 3; i++) {
		data[i] = make_blob(sizes[i], 20 + i, &ds[i]);
		assert_int_equal(blobstore_put_sync(f->bs, &ds[i], data[i], sizes[i]).code, CAIRN_OK);
	}
	int64_t deadline = cairn_now_ns() + INT64_C(30) * 1000000000;
	cachefs_through_stats ts;
	objstore_stats os;
	for (stats(f, &ts, &os); ts.backlog > 0; stats(f, &ts, &os)) {
		assert_true(cairn_now_ns() < deadline);
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	for (size_t i = 0; i < 3; i++) {
		expect_object(f, &ds[i], data[i], sizes[i]);
		free(data[i]);
	}
	assert_int_equal(ts.uploaded, 3);
	char backlog[128];
	snprintf(backlog, sizeof backlog, "%s/cas/backlog", f->dir);
	DIR *dir = opendir(backlog);
	assert_non_null(dir);
	int markers = 0;
	for (struct dirent *e; (e = readdir(dir));)
		markers += e->d_name[0] != '.';
	closedir(dir);
	assert_int_equal(markers, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(smaller_blobs_after_commit, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(async_backlog_reads_blobs_back, setup_async, teardown),
	};
	cairn_log_set_level(CAIRN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
