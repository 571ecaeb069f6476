/* The write-through blobstore (cachefs/through*.c) over a file:// object store: what a client of a
 * CAS with a bucket behind it relies on, without an S3 server. The store's part size is 2 MiB, so a
 * blob of 7 MiB is streamed (as one PUT fed by four parts) while it is written, one of 1.5 MiB is uploaded from its
 * file after the commit, and one of 100 KiB from memory. The same against radosgw, through the real
 * server, is tests/it_external_storage.sh. */
#include "through_fixture.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* Entries under the bucket's .tmp: uploads in progress, or what a failed upload left behind. */
static int tmp_entries(const fixture *f) { return entries(f, "bucket/.tmp"); }

/* The bytes the one streamed upload in progress has put in the bucket (the size of the file its
 * PUT writes under .tmp), or -1 if there is none. */
static int64_t bytes_streamed(const fixture *f)
{
	char path[256];
	snprintf(path, sizeof path, "%s/bucket/.tmp", f->dir);
	DIR *dir = opendir(path);
	assert_non_null(dir);
	int64_t n = -1;
	struct stat sb;
	for (struct dirent *e; (e = readdir(dir));)
		if (strncmp(e->d_name, "put-", 4) == 0 && fstatat(dirfd(dir), e->d_name, &sb, 0) == 0)
			n = sb.st_size;
	closedir(dir);
	return n;
}

/* Waits until the streamed upload has put `parts` whole parts in the bucket. */
static void wait_parts(const fixture *f, int parts)
{
	int64_t deadline = cairn_now_ns() + INT64_C(30) * 1000000000;
	while (bytes_streamed(f) < (int64_t)parts * PART) {
		assert_true(cairn_now_ns() < deadline);
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
}

/* Opens a writer and writes data[0..n) in pieces of 64 KiB; the writer stays open. */
static blobstore_writer *write_open(fixture *f, const cairn_digest *d, const uint8_t *data, size_t n)
{
	blobstore_writer *w;
	assert_int_equal(blobstore_open_write(f->bs, d, &w).code, CAIRN_OK);
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	for (size_t off = 0; off < n; off += 64 << 10) {
		size_t k = n - off < (64u << 10) ? n - off : (64u << 10);
		blobstore_write(w, data + off, k, cairn_waiter_done, &wt);
		assert_int_equal(cairn_waiter_wait(&wt).code, CAIRN_OK);
	}
	cairn_waiter_destroy(&wt);
	return w;
}

static cairn_status commit(blobstore_writer *w)
{
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	blobstore_commit(w, cairn_waiter_done, &wt);
	cairn_status st = cairn_waiter_wait(&wt);
	cairn_waiter_destroy(&wt);
	return st;
}

static void large_blob_streams_while_written(void **state)
{
	fixture *f = *state;
	cairn_digest d;
	size_t n = 7 * MiB;
	uint8_t *data = make_blob(n, 1, &d);
	/* Two whole parts written: both are in the bucket's upload before the rest arrives. */
	blobstore_writer *w = write_open(f, &d, data, 2 * PART + 4096);
	wait_parts(f, 2);
	assert_false(has_object(f, &d)); /* nothing visible before the commit */
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	blobstore_write(w, data + 2 * PART + 4096, n - 2 * PART - 4096, cairn_waiter_done, &wt);
	assert_int_equal(cairn_waiter_wait(&wt).code, CAIRN_OK);
	cairn_waiter_destroy(&wt);
	assert_int_equal(commit(w).code, CAIRN_OK);
	/* Acknowledged: the bucket has the whole blob, and the upload left nothing behind. */
	expect_object(f, &d, data, n);
	assert_int_equal(tmp_entries(f), 0);
	assert_true(cachefs_contains(f->fs, &d, false));
	cachefs_through_stats ts;
	objstore_stats os;
	stats(f, &ts, &os);
	assert_int_equal(ts.uploaded, 1);
	assert_int_equal(ts.failures, 0);
	assert_int_equal(os.bytes_up, n); /* each byte sent once */
	free(data);
}

static void wrong_digest_leaves_nothing(void **state)
{
	fixture *f = *state;
	cairn_digest d, other;
	size_t n = 7 * MiB;
	uint8_t *data = make_blob(n, 2, &d);
	free(make_blob(n, 3, &other)); /* same size, other bytes */
	blobstore_writer *w = write_open(f, &other, data, n);
	wait_parts(f, 3); /* the full parts went out before the mismatch was known */
	cairn_status st = commit(w);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	/* By the time the client hears it, the upload is aborted: no object, no parts. */
	assert_false(has_object(f, &other));
	assert_false(has_object(f, &d));
	assert_int_equal(tmp_entries(f), 0);
	assert_false(cachefs_contains(f->fs, &other, false));
	cachefs_through_stats ts;
	objstore_stats os;
	stats(f, &ts, &os);
	assert_int_equal(ts.uploaded, 0);
	free(data);
}

static void abort_leaves_nothing(void **state)
{
	fixture *f = *state;
	cairn_digest d;
	size_t n = 7 * MiB;
	uint8_t *data = make_blob(n, 4, &d);
	blobstore_writer *w = write_open(f, &d, data, 5 * MiB);
	wait_parts(f, 2);
	blobstore_abort(w);
	close_through(f); /* waits for the abort of the upload */
	assert_false(has_object(f, &d));
	assert_int_equal(tmp_entries(f), 0);
	free(data);
}

static void present_blob_is_not_sent_again(void **state)
{
	fixture *f = *state;
	cairn_digest d;
	size_t n = 7 * MiB;
	uint8_t *data = make_blob(n, 5, &d);
	char src[128], key[CACHEFS_THROUGH_KEY_MAX];
	snprintf(src, sizeof src, "%s/src", f->dir);
	FILE *fp = fopen(src, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, n, fp), n);
	fclose(fp);
	cachefs_through_key(&d, key);
	assert_int_equal(objstore_put_file_sync(f->os, key, src, d.hash).code, CAIRN_OK);
	cachefs_through_stats ts;
	objstore_stats before, after;
	stats(f, &ts, &before);
	assert_int_equal(blobstore_put_sync(f->bs, &d, data, n).code, CAIRN_OK);
	stats(f, &ts, &after);
	assert_int_equal(ts.skipped, 1);
	assert_int_equal(ts.uploaded, 0);
	assert_int_equal(after.bytes_up, before.bytes_up);
	assert_int_equal(after.puts, before.puts);
	assert_true(cachefs_contains(f->fs, &d, false));
	expect_object(f, &d, data, n);
	free(data);
}

static void store_failure_is_unavailable_then_retry_succeeds(void **state)
{
	fixture *f = *state;
	cairn_digest d;
	size_t n = 7 * MiB;
	uint8_t *data = make_blob(n, 6, &d);
	char tmp[128];
	snprintf(tmp, sizeof tmp, "%s/bucket/.tmp", f->dir);
	assert_int_equal(rmdir(tmp), 0); /* the store cannot begin an upload now */
	cairn_status st = blobstore_put_sync(f->bs, &d, data, n);
	assert_int_equal(st.code, CAIRN_UNAVAILABLE);
	assert_non_null(strstr(st.msg, "object store"));
	assert_false(has_object(f, &d));
	assert_int_equal(mkdir(tmp, 0755), 0);
	assert_int_equal(blobstore_put_sync(f->bs, &d, data, n).code, CAIRN_OK);
	expect_object(f, &d, data, n);
	assert_int_equal(tmp_entries(f), 0);
	free(data);
}

/* The streamed PUT fails (the store cannot make its file) but the store is back by the commit: the
 * blob goes up from its file after the commit, and the client hears OK. */
static void failed_stream_falls_back_to_upload_after_commit(void **state)
{
	fixture *f = *state;
	cairn_digest d;
	size_t n = 7 * MiB;
	uint8_t *data = make_blob(n, 7, &d);
	char tmp[128];
	snprintf(tmp, sizeof tmp, "%s/bucket/.tmp", f->dir);
	assert_int_equal(rmdir(tmp), 0);
	blobstore_writer *w = write_open(f, &d, data, PART + 4096);
	objstore_stats os;
	cachefs_through_stats ts;
	int64_t deadline = cairn_now_ns() + INT64_C(30) * 1000000000;
	for (stats(f, &ts, &os); os.failures == 0; stats(f, &ts, &os)) { /* the PUT failed */
		assert_true(cairn_now_ns() < deadline);
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	assert_int_equal(mkdir(tmp, 0755), 0);
	cairn_waiter wt;
	cairn_waiter_init(&wt);
	blobstore_write(w, data + PART + 4096, n - PART - 4096, cairn_waiter_done, &wt);
	assert_int_equal(cairn_waiter_wait(&wt).code, CAIRN_OK); /* the failure did not stop the write */
	cairn_waiter_destroy(&wt);
	assert_int_equal(commit(w).code, CAIRN_OK);
	expect_object(f, &d, data, n);
	assert_int_equal(tmp_entries(f), 0);
	stats(f, &ts, &os);
	assert_int_equal(ts.uploaded, 1);
	assert_int_equal(ts.failures, 0);
	free(data);
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
		cmocka_unit_test_setup_teardown(large_blob_streams_while_written, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(wrong_digest_leaves_nothing, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(abort_leaves_nothing, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(present_blob_is_not_sent_again, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(store_failure_is_unavailable_then_retry_succeeds, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(failed_stream_falls_back_to_upload_after_commit, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(smaller_blobs_after_commit, setup_sync, teardown),
		cmocka_unit_test_setup_teardown(async_backlog_reads_blobs_back, setup_async, teardown),
	};
	cairn_log_set_level(CAIRN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
