/* Unit tests of blobstore/'s synchronous calls over an in-memory store that answers either inside
 * the call or later from another thread (as cachefs and remote stores do), and over a read-through
 * store in front of another (as an object store or a peer stands behind a local CAS). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blobstore/blobstore.h"
#include "mem_store.h"

/* ---- tests ----------------------------------------------------------------------------------- */

static void round_trip(bool async)
{
	mem_store m;
	mem_init(&m, async);
	const size_t sizes[] = {0, 1, 999, 1000, (1 << 20) + 7, (3 << 20) + 1};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		uint8_t *p = pattern(sizes[k], (unsigned)k);
		cairn_digest d;
		cairn_digest_of(p, sizes[k], &d);
		assert_int_equal(blobstore_put_sync(&m.bs, &d, p, sizes[k]).code, CAIRN_OK);
		uint8_t *got;
		size_t len;
		assert_int_equal(blobstore_get_sync(&m.bs, &d, 1 << 30, &got, &len).code, CAIRN_OK);
		assert_int_equal(len, sizes[k]);
		if (sizes[k])
			assert_memory_equal(got, p, sizes[k]);
		free(got);
		free(p);
	}
	mem_free(&m);
}

static void put_and_get_inline(void **state)
{
	(void)state;
	round_trip(false);
}

static void put_and_get_from_other_threads(void **state)
{
	(void)state;
	round_trip(true);
}

static void wrong_digest_is_refused(void **state)
{
	(void)state;
	mem_store m;
	mem_init(&m, true);
	cairn_digest d;
	cairn_digest_of("right", 5, &d);
	assert_int_equal(blobstore_put_sync(&m.bs, &d, "wrong", 5).code, CAIRN_INVALID_ARGUMENT);
	assert_int_equal(m.n, 0);
	mem_free(&m);
}

static void file_is_hashed_and_stored(void **state)
{
	(void)state;
	mem_store m;
	mem_init(&m, true);
	char path[] = "/tmp/cairn-blobstore-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const size_t n = (2 << 20) + 123;
	uint8_t *p = pattern(n, 7);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	close(fd);
	cairn_digest d, want;
	cairn_digest_of(p, n, &want);
	assert_int_equal(blobstore_put_file_sync(&m.bs, path, &d).code, CAIRN_OK);
	assert_true(cairn_digest_eq(&d, &want));
	uint8_t *got;
	size_t len;
	assert_int_equal(blobstore_get_sync(&m.bs, &d, INT64_MAX, &got, &len).code, CAIRN_OK);
	assert_memory_equal(got, p, n);
	free(got);
	/* from the current offset of an open file */
	fd = open(path, O_RDONLY);
	assert_int_equal(lseek(fd, 100, SEEK_SET), 100);
	cairn_digest_of(p + 100, n - 100, &want);
	assert_int_equal(blobstore_put_fd_sync(&m.bs, &want, fd, path).code, CAIRN_OK);
	close(fd);
	unlink(path);
	cairn_status st = blobstore_put_file_sync(&m.bs, path, &d);
	assert_int_equal(st.code, CAIRN_NOT_FOUND);
	assert_non_null(strstr(st.msg, path));
	free(p);
	mem_free(&m);
}

static void get_refuses_what_it_cannot_return(void **state)
{
	(void)state;
	mem_store m;
	mem_init(&m, true);
	uint8_t *p = pattern(5000, 3);
	cairn_digest d;
	cairn_digest_of(p, 5000, &d);
	assert_int_equal(blobstore_put_sync(&m.bs, &d, p, 5000).code, CAIRN_OK);
	uint8_t *got = (uint8_t *)"untouched";
	size_t len = 1;
	/* over the limit: refused without opening */
	assert_int_equal(blobstore_get_sync(&m.bs, &d, 4999, &got, &len).code, CAIRN_RESOURCE_EXHAUSTED);
	assert_int_equal(m.opens, 0);
	assert_null(got);
	assert_int_equal(len, 0);
	/* a store that lost bytes: DATA_LOSS, nothing returned */
	m.shorten = 10;
	cairn_status st = blobstore_get_sync(&m.bs, &d, 5000, &got, &len);
	assert_int_equal(st.code, CAIRN_DATA_LOSS);
	assert_non_null(strstr(st.msg, "4990 of its 5000"));
	assert_null(got);
	m.shorten = 0;
	cairn_digest absent;
	cairn_digest_of("absent", 6, &absent);
	assert_int_equal(blobstore_get_sync(&m.bs, &absent, 100, &got, &len).code, CAIRN_NOT_FOUND);
	free(p);
	mem_free(&m);
}

static void fetch_reads_through(void **state)
{
	(void)state;
	mem_store local, remote;
	mem_init(&local, true);
	mem_init(&remote, false);
	local.behind = &remote;
	uint8_t *p = pattern(3000, 9);
	cairn_digest d, absent;
	cairn_digest_of(p, 3000, &d);
	cairn_digest_of("nowhere", 7, &absent);
	assert_int_equal(blobstore_put_sync(&remote.bs, &d, p, 3000).code, CAIRN_OK);
	assert_int_equal(find(&local, &d), -1);
	assert_int_equal(blobstore_fetch_sync(&local.bs, &d).code, CAIRN_OK);
	assert_true(find(&local, &d) >= 0); /* held here now */
	assert_int_equal(blobstore_fetch_sync(&local.bs, &absent).code, CAIRN_NOT_FOUND);
	free(p);
	mem_free(&local);
	mem_free(&remote);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_and_get_inline),
		cmocka_unit_test(put_and_get_from_other_threads),
		cmocka_unit_test(wrong_digest_is_refused),
		cmocka_unit_test(file_is_hashed_and_stored),
		cmocka_unit_test(get_refuses_what_it_cannot_return),
		cmocka_unit_test(fetch_reads_through),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
