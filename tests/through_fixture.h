/* What the unit tests of the write-through blobstore share (unit_through.c for writes,
 * unit_through_read.c for reads): a CAS in a fresh temporary directory with a file:// bucket beside
 * it, and blobs made from a seed. The helpers are static inline, so that a test file may use a part
 * of them. */
#ifndef CAIRN_TESTS_THROUGH_FIXTURE_H
#define CAIRN_TESTS_THROUGH_FIXTURE_H

#include "cachefs/through.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MiB (1 << 20)
#define PART (2 * MiB)

typedef struct fixture {
	char dir[64];
	char url[128];
	int64_t max_size; /* of the CAS, which is also its hard limit */
	int transfers;    /* the store's transfer threads; 0: its default */
	cachefs *fs;
	objstore *os;
	cachefs_through *t;
	blobstore *bs;
} fixture;

static inline void open_through(fixture *f, bool async)
{
	char cas[128];
	snprintf(cas, sizeof cas, "%s/cas", f->dir);
	cachefs_config cc = {.dir = cas, .max_size = f->max_size, .hard_limit = f->max_size};
	assert_int_equal(cachefs_open(&cc, &f->fs).code, CAIRN_OK);
	objstore_config oc = {.url = f->url, .part_size = PART, .max_concurrency = f->transfers};
	assert_int_equal(objstore_open(&oc, &f->os).code, CAIRN_OK);
	assert_int_equal(cachefs_through_new(f->fs, f->os, async, &f->t).code, CAIRN_OK);
	f->bs = cachefs_through_blobstore(f->t);
}

/* Closes all, once everything under way is done (cachefs_through_free waits for it). */
static inline void close_through(fixture *f)
{
	cachefs_through_free(f->t);
	objstore_close(f->os);
	cachefs_close(f->fs);
	f->t = NULL;
}

static inline int setup(void **state, bool async)
{
	fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/unit_through.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->url, sizeof f->url, "file://%s/bucket", f->dir);
	f->max_size = INT64_C(1) << 30;
	open_through(f, async);
	*state = f;
	return 0;
}

static inline int setup_sync(void **state) { return setup(state, false); }
static inline int setup_async(void **state) { return setup(state, true); }

static inline int teardown(void **state)
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
static inline uint8_t *make_blob(size_t n, uint64_t seed, cairn_digest *d)
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

static inline void object_path(const fixture *f, const cairn_digest *d, char *out, size_t cap)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(d->hash, hex);
	snprintf(out, cap, "%s/bucket/cas/%s", f->dir, hex);
}

/* Entries under the fixture's directory `rel`, or -1 if it cannot be read. */
static inline int entries(const fixture *f, const char *rel)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", f->dir, rel);
	DIR *dir = opendir(path);
	if (!dir)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(dir));)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(dir);
	return n;
}

static inline void stats(fixture *f, cachefs_through_stats *ts, objstore_stats *os)
{
	cachefs_through_get_stats(f->t, ts);
	objstore_get_stats(f->os, os);
}

#endif
