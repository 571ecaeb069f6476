/* cachefs unit tests: each test opens a store in a fresh directory under /tmp and checks what a user
 * of the store relies on. Calls are asynchronous; the helpers wait on a condition variable (with a
 * deadline) for each callback. */
#include "cachefs/cachefs.h"
#include "cachefs/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define KiB 1024
#define MiB (1024 * 1024)

/* ---- helpers --------------------------------------------------------------------------------- */

typedef struct sync_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	cairn_status st;
	size_t n;
	blobstore_reader *r;
} sync_wait;

static void sw_init(sync_wait *s)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
}

static void sw_finish(sync_wait *s, cairn_status st, size_t n, blobstore_reader *r)
{
	pthread_mutex_lock(&s->mu);
	s->st = st;
	s->n = n;
	s->r = r;
	s->done = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void sw_wait(sync_wait *s)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 60;
	pthread_mutex_lock(&s->mu);
	while (!s->done)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT)
			fail_msg("a cachefs callback did not come within 60 s");
	s->done = false;
	pthread_mutex_unlock(&s->mu);
}

static void on_done(void *arg, cairn_status st) { sw_finish(arg, st, 0, NULL); }
static void on_open(void *arg, cairn_status st, blobstore_reader *r) { sw_finish(arg, st, 0, r); }
static void on_read(void *arg, cairn_status st, size_t n) { sw_finish(arg, st, n, NULL); }

static cairn_status put_chunked(blobstore *bs, const cairn_digest *d, const uint8_t *data, size_t len, size_t chunk)
{
	blobstore_writer *w;
	cairn_status st = blobstore_open_write(bs, d, &w);
	if (!cairn_is_ok(&st))
		return st;
	sync_wait s;
	sw_init(&s);
	for (size_t off = 0; off < len;) {
		size_t n = len - off < chunk ? len - off : chunk;
		blobstore_write(w, data + off, n, on_done, &s);
		sw_wait(&s);
		if (!cairn_is_ok(&s.st)) {
			blobstore_abort(w);
			return s.st;
		}
		off += n;
	}
	blobstore_commit(w, on_done, &s);
	sw_wait(&s);
	return s.st;
}

static cairn_status put(blobstore *bs, const uint8_t *data, size_t len, cairn_digest *d)
{
	cairn_digest_of(data, len, d);
	return put_chunked(bs, d, data, len, 256 * KiB);
}

static cairn_status open_reader(blobstore *bs, const cairn_digest *d, blobstore_reader **r)
{
	sync_wait s;
	sw_init(&s);
	blobstore_open_read(bs, d, on_open, &s);
	sw_wait(&s);
	*r = s.r;
	return s.st;
}

static size_t read_at(blobstore_reader *r, uint64_t off, void *buf, size_t len)
{
	sync_wait s;
	sw_init(&s);
	blobstore_read(r, off, buf, len, on_read, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_OK);
	return s.n;
}

/* Reads a whole blob back and compares it with what was written. */
static void assert_blob(blobstore *bs, const cairn_digest *d, const uint8_t *data, size_t len)
{
	blobstore_reader *r;
	cairn_status st = open_reader(bs, d, &r);
	assert_int_equal(st.code, CAIRN_OK);
	assert_int_equal(r->size, (int64_t)len);
	uint8_t *got = malloc(len + 1);
	size_t off = 0;
	while (off < len) {
		size_t n = read_at(r, off, got + off, len - off < MiB ? len - off : MiB);
		assert_true(n > 0);
		off += n;
	}
	assert_int_equal(read_at(r, len, got, 1), 0); /* at the end: nothing more */
	assert_memory_equal(got, data, len);
	free(got);
	blobstore_close_read(r);
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n ? n : 1);
	uint64_t x = seed * 0x9e3779b97f4a7c15u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
	return p;
}

typedef struct fixture {
	char root[64];
	char dir[96];
	cachefs *fs;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	strcpy(f->root, "/tmp/cachefs-unit-XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	snprintf(f->dir, sizeof f->dir, "%s/data", f->root);
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb, (void)type, (void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	fixture *f = *state;
	cachefs_close(f->fs);
	nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Closes the store and opens it again on the same directory with cfg (its dir set here). */
static cachefs *reopen_cfg(fixture *f, cachefs_config cfg)
{
	cachefs_close(f->fs);
	f->fs = NULL;
	cfg.dir = f->dir;
	cairn_status st = cachefs_open(&cfg, &f->fs);
	if (!cairn_is_ok(&st))
		fail_msg("cachefs_open: %s", cairn_status_str(&st));
	return f->fs;
}

static cachefs *reopen(fixture *f, int64_t max_size, int64_t hard_limit, int64_t min_age_ns, bool fsync)
{
	return reopen_cfg(f, (cachefs_config){.max_size = max_size, .hard_limit = hard_limit, .min_age_ns = min_age_ns,
	                                      .fsync = fsync});
}

static cachefs *open_default(fixture *f) { return reopen(f, 1LL << 40, 0, 0, false); }

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *de; (de = readdir(d));)
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static int count_tmp(fixture *f)
{
	char p[160];
	snprintf(p, sizeof p, "%s/tmp", f->dir);
	return count_entries(p);
}

/* Blob files in cas/, not counting the empty blob's file, which is always there. */
static int count_cas(fixture *f)
{
	int n = 0;
	for (int x = 0; x < 256; x++) {
		char p[160];
		snprintf(p, sizeof p, "%s/cas/%02x", f->dir, x);
		n += count_entries(p);
	}
	return n - 1;
}

static void blob_path(fixture *f, const cairn_digest *d, char *out, size_t cap)
{
	char name[CACHEFS_NAME_MAX];
	cachefs_blob_name(d, name);
	snprintf(out, cap, "%s/cas/%02x/%s", f->dir, d->hash[0], name);
}

/* packs/<id>.data or packs/<id>.journal */
static void pack_path(fixture *f, unsigned id, const char *ext, char *out, size_t cap)
{
	snprintf(out, cap, "%s/packs/%u.%s", f->dir, id, ext);
}

/* The size and allocated 512-byte blocks of a file; -1 if it does not exist. */
static int64_t file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static int64_t file_blocks(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (int64_t)sb.st_blocks : -1;
}

/* Pack data files in packs/. */
static int count_packs(fixture *f)
{
	char p[160];
	snprintf(p, sizeof p, "%s/packs", f->dir);
	DIR *d = opendir(p);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *de; (de = readdir(d));)
		n += strstr(de->d_name, ".data") != NULL;
	closedir(d);
	return n;
}

/* Where a held packed blob lies in its pack (offset in bytes); -1 if it is a file of its own. */
static int64_t packed_at(cachefs *fs, const cairn_digest *d, unsigned *pack)
{
	pthread_mutex_lock(&fs->ix.mu);
	uint32_t i = cachefs_index_find(&fs->ix, d);
	assert_true(i != CACHEFS_NIL);
	uint32_t loc = cachefs_index_at(&fs->ix, i)->loc;
	pthread_mutex_unlock(&fs->ix.mu);
	if (pack)
		*pack = cachefs_loc_pack(loc);
	return loc ? (int64_t)cachefs_loc_off(loc) : -1;
}

/* Whether [off, off + len) of a file holds a hole somewhere. */
static bool has_hole(const char *path, int64_t off, int64_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	off_t hole = lseek(fd, off, SEEK_HOLE);
	close(fd);
	return hole < off + len;
}

/* Waits (polling, with a deadline) until a file is gone: pack deletions finish on the I/O thread. */
static bool gone_soon(const char *path)
{
	int64_t deadline = cairn_now_ns() + 10 * 1000000000LL;
	while (access(path, F_OK) == 0 && cairn_now_ns() < deadline)
		usleep(1000);
	return access(path, F_OK) != 0;
}

static void assert_index_ok(cachefs *fs)
{
	pthread_mutex_lock(&fs->ix.mu);
	bool ok = cachefs_index_check(&fs->ix), packs_ok = cachefs_packs_check(fs);
	pthread_mutex_unlock(&fs->ix.mu);
	assert_true(ok);
	assert_true(packs_ok);
}

/* Gives a blob's file the modification time cachefs seals it with (seal.c), at second sec. */
static void seal_file(fixture *f, const cairn_digest *d, time_t sec)
{
	char path[256];
	blob_path(f, d, path, sizeof path);
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = sec, .tv_nsec = cachefs_seal_ns(d)}};
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static cachefs_stats stats(cachefs *fs)
{
	cachefs_stats s;
	cachefs_get_stats(fs, &s);
	return s;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_entry_size(void **state)
{
	(void)state;
	/* 4-byte slots at a load factor of at least 3/8 (the table doubles at 3/4) */
	double per_blob = (double)sizeof(cachefs_entry) + 4.0 * 8 / 3;
	print_message("index: %zu bytes per entry, at most %.1f bytes per blob with its table slot\n",
	              sizeof(cachefs_entry), per_blob);
	assert_true(per_blob <= 67);
	assert_true(per_blob * 10e6 < 1e9); /* ten million blobs in under 1 GB */
}

/* Pages of a file that are in the page cache. */
static size_t resident_pages(const char *path)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = ((size_t)sb.st_size + page - 1) / page, n = 0;
	if (pages == 0) {
		close(fd);
		return 0;
	}
	void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	unsigned char *vec = malloc(pages);
	assert_int_equal(mincore(p, (size_t)sb.st_size, vec), 0);
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	free(vec);
	munmap(p, (size_t)sb.st_size);
	close(fd);
	return n;
}

static void put_read_sizes(fixture *f, bool fsync, bool direct)
{
	blobstore *bs = cachefs_blobstore(
		reopen_cfg(f, (cachefs_config){.max_size = 1LL << 40, .fsync = fsync, .direct_writes = direct}));
	/* packed up to CACHEFS_PACK_MAX_BLOB, files above; with direct_writes O_DIRECT from
	 * CACHEFS_DIRECT_MIN, where the last buffer (not a multiple of the alignment) goes through the
	 * page cache */
	const size_t sizes[] = {0, 1, 4096, 64 * KiB, 64 * KiB + 1, MiB + 1, 20 * MiB, 16 * MiB + 12345};
	/* 3 MiB: one append larger than both buffers; 100,003: appends that straddle the aligned buffers */
	const size_t chunks[] = {1, 1, 1000, 7000, 7000, 65537, 3 * MiB, 100003};
	enum { N = sizeof sizes / sizeof sizes[0] };
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	if (direct)
		print_message("O_DIRECT for blobs of %lld bytes and more: %s\n", (long long)CACHEFS_DIRECT_MIN,
		              f->fs->direct ? "yes" : "no, the file system does not take it");
	uint64_t bytes = 0;
	for (size_t k = 0; k < N; k++) {
		uint8_t *data = random_bytes(sizes[k], k + 1);
		cairn_digest d;
		cairn_digest_of(data, sizes[k], &d);
		cairn_status st = put_chunked(bs, &d, data, sizes[k], chunks[k]);
		assert_int_equal(st.code, CAIRN_OK);
		char path[256];
		struct stat sb;
		blob_path(f, &d, path, sizeof path);
		/* with direct_writes a large blob took no page cache but for its last buffer; without, the page
		 * cache keeps it for the reads that follow (looked at before the blob is read back) */
		if (direct && f->fs->direct && (int64_t)sizes[k] >= CACHEFS_DIRECT_MIN)
			assert_true(resident_pages(path) <= CACHEFS_WBUF_SIZE / page + 1);
		else if (!direct && (int64_t)sizes[k] >= CACHEFS_DIRECT_MIN)
			assert_true(resident_pages(path) > (sizes[k] - CACHEFS_WBUF_SIZE) / page);
		assert_blob(bs, &d, data, sizes[k]);
		bytes += sizes[k];
		if (sizes[k] > CACHEFS_PACK_MAX_BLOB) {
			assert_int_equal(stat(path, &sb), 0);
			assert_int_equal(sb.st_size, (off_t)sizes[k]);
			assert_int_equal(sb.st_mode & 0777, 0644);
		} else if (sizes[k]) {
			assert_int_equal(stat(path, &sb), -1); /* packed */
		}
		free(data);
	}
	cachefs_stats s = stats(f->fs);
	assert_int_equal(s.blobs, N - 1); /* the empty blob is held without an entry */
	assert_int_equal(s.bytes, bytes);
	assert_int_equal(s.reserved, 0);
	assert_int_equal(count_tmp(f), 0);
	assert_index_ok(f->fs);
}

static void test_put_read(void **state) { put_read_sizes(*state, false, false); }
static void test_put_read_fsync(void **state) { put_read_sizes(*state, true, false); }
static void test_put_read_direct(void **state) { put_read_sizes(*state, false, true); }
static void test_put_read_direct_fsync(void **state) { put_read_sizes(*state, true, true); }

static void test_partial_reads(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *data = random_bytes(100000, 7);
	cairn_digest d;
	assert_int_equal(put(bs, data, 100000, &d).code, CAIRN_OK);
	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &d, &r).code, CAIRN_OK);
	uint8_t buf[200];
	assert_int_equal(read_at(r, 99990, buf, sizeof buf), 10); /* short only at the end */
	assert_memory_equal(buf, data + 99990, 10);
	assert_int_equal(read_at(r, 5000, buf, sizeof buf), sizeof buf);
	assert_memory_equal(buf, data + 5000, sizeof buf);
	assert_int_equal(read_at(r, 200000, buf, sizeof buf), 0);
	blobstore_close_read(r);
	free(data);
}

static void test_bad_commits_leave_nothing(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	size_t len = 3 * MiB; /* several buffers: the temp file exists before commit */
	uint8_t *a = random_bytes(len, 1), *b = random_bytes(len, 2);
	cairn_digest d;
	cairn_digest_of(a, len, &d);

	cairn_status st = put_chunked(bs, &d, b, len, MiB); /* right size, wrong bytes */
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "does not match digest"));

	st = put_chunked(bs, &d, a, len - 1, MiB); /* one byte short */
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);

	cairn_digest small;
	cairn_digest_of(a, 10, &small);
	st = put_chunked(bs, &small, a, 11, 11); /* one byte too many: refused at the write */
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);

	assert_false(cachefs_contains(f->fs, &d, false));
	assert_false(cachefs_contains(f->fs, &small, false));
	cachefs_close(f->fs); /* waits for the clean-up I/O */
	f->fs = NULL;
	assert_int_equal(count_tmp(f), 0);
	assert_int_equal(count_cas(f), 0);
	open_default(f);
	assert_int_equal(stats(f->fs).blobs, 0);
	free(a);
	free(b);
}

static void test_abort_releases(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *data = random_bytes(2 * MiB, 3);
	cairn_digest d;
	cairn_digest_of(data, 2 * MiB, &d);
	blobstore_writer *w;
	assert_int_equal(blobstore_open_write(bs, &d, &w).code, CAIRN_OK);
	assert_int_equal(stats(f->fs).reserved, 2 * MiB);
	sync_wait s;
	sw_init(&s);
	blobstore_write(w, data, 3 * MiB / 2, on_done, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_OK);
	blobstore_abort(w);
	/* the abort finishes on the I/O thread: poll for it with a deadline */
	int64_t deadline = cairn_now_ns() + 10 * 1000000000LL;
	while ((stats(f->fs).reserved || count_tmp(f)) && cairn_now_ns() < deadline)
		usleep(1000);
	assert_int_equal(stats(f->fs).reserved, 0);
	assert_int_equal(count_tmp(f), 0);
	assert_false(cachefs_contains(f->fs, &d, false));
	free(data);
}

typedef struct writer_arg {
	blobstore *bs;
	const uint8_t *data;
	size_t len;
	int blobs; /* > 0: write that many different blobs instead */
	uint64_t seed;
	cairn_status st;
} writer_arg;

static void *writer_thread(void *p)
{
	writer_arg *a = p;
	if (!a->blobs) {
		cairn_digest d;
		a->st = put(a->bs, a->data, a->len, &d);
		return NULL;
	}
	for (int k = 0; k < a->blobs && (k == 0 || cairn_is_ok(&a->st)); k++) {
		size_t len = (size_t)((a->seed * 7919 + (uint64_t)k * 104729) % (3 * MiB / 2));
		uint8_t *data = random_bytes(len, a->seed * 1000 + (uint64_t)k);
		cairn_digest d;
		a->st = put(a->bs, data, len, &d);
		if (cairn_is_ok(&a->st))
			assert_blob(a->bs, &d, data, len);
		free(data);
	}
	return NULL;
}

static void test_concurrent_same_digest(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	size_t len = 3 * MiB;
	uint8_t *data = random_bytes(len, 5);
	pthread_t t[4];
	writer_arg a[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (writer_arg){.bs = bs, .data = data, .len = len};
		pthread_create(&t[i], NULL, writer_thread, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].st.code, CAIRN_OK);
	}
	cachefs_stats s = stats(f->fs);
	assert_int_equal(s.blobs, 1);
	assert_int_equal(s.bytes, len);
	assert_int_equal(s.reserved, 0);
	assert_int_equal(count_cas(f), 1);
	assert_int_equal(count_tmp(f), 0);
	cairn_digest d;
	cairn_digest_of(data, len, &d);
	assert_blob(bs, &d, data, len);
	free(data);
}

/* Many writers through a tiny ring: the submission queue fills and operations wait their turn. */
static void test_many_writers_small_ring(void **state)
{
	fixture *f = *state;
	cachefs_config cfg = {.dir = f->dir, .max_size = 1LL << 40, .ring_entries = 4};
	assert_int_equal(cachefs_open(&cfg, &f->fs).code, CAIRN_OK);
	pthread_t t[6];
	writer_arg a[6];
	for (int i = 0; i < 6; i++) {
		a[i] = (writer_arg){.bs = cachefs_blobstore(f->fs), .blobs = 12, .seed = (uint64_t)i + 1};
		pthread_create(&t[i], NULL, writer_thread, &a[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].st.code, CAIRN_OK);
	}
	assert_int_equal(stats(f->fs).reserved, 0);
	assert_index_ok(f->fs);
}

static void test_find_missing(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	enum { HELD = 100, N = 10000 };
	cairn_digest held[HELD];
	for (int k = 0; k < HELD; k++) {
		uint8_t *data = random_bytes((size_t)k * 10 + 1, (uint64_t)k + 100);
		assert_int_equal(put(bs, data, (size_t)k * 10 + 1, &held[k]).code, CAIRN_OK);
		free(data);
	}
	cairn_digest *ds = malloc(N * sizeof *ds);
	uint8_t *want = malloc(N), *missing = malloc(N);
	for (int k = 0; k < N; k++) {
		switch (k % 4) {
		case 0: /* held */
			ds[k] = held[k % HELD];
			want[k] = 0;
			break;
		case 1: /* never stored */
			cairn_digest_of(&k, sizeof k, &ds[k]);
			want[k] = 1;
			break;
		case 2: /* a held hash with another size */
			ds[k] = held[k % HELD];
			ds[k].size += 1;
			want[k] = 1;
			break;
		default: /* the empty blob is always held */
			cairn_digest_of("", 0, &ds[k]);
			want[k] = 0;
		}
	}
	sync_wait s;
	sw_init(&s);
	int64_t t0 = cairn_now_ns();
	blobstore_find_missing(bs, ds, N, missing, on_done, &s);
	sw_wait(&s);
	double secs = (double)(cairn_now_ns() - t0) / 1e9;
	assert_int_equal(s.st.code, CAIRN_OK);
	assert_memory_equal(missing, want, N);
	print_message("find_missing: %d digests in %.3f ms (%.0f digests/s)\n", N, secs * 1e3, N / secs);
	assert_true(N / secs > 100000); /* loose: sanitizer builds are slow; the goal is 1,000,000/s */
	free(ds);
	free(want);
	free(missing);
}

static void test_empty_blob(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	cairn_digest d;
	assert_int_equal(put(bs, (const uint8_t *)"", 0, &d).code, CAIRN_OK);
	assert_true(cairn_digest_is_empty_blob(&d));
	assert_true(cachefs_contains(f->fs, &d, true));
	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &d, &r).code, CAIRN_OK);
	assert_int_equal(r->size, 0);
	uint8_t b;
	assert_int_equal(read_at(r, 0, &b, 1), 0);
	blobstore_close_read(r);
	char path[256];
	struct stat sb;
	assert_int_equal(cachefs_pin_path(f->fs, &d, path, sizeof path).code, CAIRN_OK);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, 0);
	cachefs_unpin(f->fs, &d);
	cairn_digest zero_wrong = d;
	zero_wrong.hash[0] ^= 1; /* size 0 but not the empty hash: refused */
	assert_int_equal(put_chunked(bs, &zero_wrong, NULL, 0, 1).code, CAIRN_INVALID_ARGUMENT);
	assert_int_equal(stats(f->fs).blobs, 0);
}

/* Puts n blobs of the given size; the k-th is filled from seed base + k. */
static void put_sized(blobstore *bs, cairn_digest *ds, int n, uint64_t base, size_t size)
{
	for (int k = 0; k < n; k++) {
		uint8_t *data = random_bytes(size, base + (uint64_t)k);
		assert_int_equal(put(bs, data, size, &ds[k]).code, CAIRN_OK);
		free(data);
	}
}

/* Puts n blobs of 4 KiB (packed); the k-th is filled from seed base + k. */
static void put_blobs(blobstore *bs, cairn_digest *ds, int n, uint64_t base) { put_sized(bs, ds, n, base, 4 * KiB); }

static void touch(blobstore *bs, const cairn_digest *d)
{
	uint8_t missing;
	sync_wait s;
	sw_init(&s);
	blobstore_find_missing(bs, d, 1, &missing, on_done, &s);
	sw_wait(&s);
	assert_int_equal(missing, 0);
}

static void test_lru_eviction_order(void **state)
{
	fixture *f = *state;
	/* room for 10 blobs; a pass goes down to 95%, which is 9 blobs */
	blobstore *bs = cachefs_blobstore(reopen(f, 10 * 4 * KiB, 1 * MiB, 0, false));
	cairn_digest d[11];
	put_blobs(bs, d, 10, 1000);
	touch(bs, &d[0]); /* now the most recently used */
	put_blobs(bs, &d[10], 1, 2000);
	cachefs_evict_now(f->fs);
	assert_false(cachefs_contains(f->fs, &d[1], false));
	assert_false(cachefs_contains(f->fs, &d[2], false));
	assert_true(cachefs_contains(f->fs, &d[0], false));
	for (int k = 3; k <= 10; k++)
		assert_true(cachefs_contains(f->fs, &d[k], false));
	cachefs_stats s = stats(f->fs);
	assert_int_equal(s.blobs, 9);
	assert_int_equal(s.evicted_blobs, 2);
	assert_int_equal(s.evicted_bytes, 8 * KiB);
	char path[256];
	blob_path(f, &d[1], path, sizeof path);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(count_cas(f), 0); /* all packed */
	assert_index_ok(f->fs);
}

/* The same with blobs in files of their own: an evicted one's file is removed. */
static void test_lru_eviction_files(void **state)
{
	fixture *f = *state;
	const size_t size = 100 * KiB;
	blobstore *bs = cachefs_blobstore(reopen(f, 10 * (int64_t)size, 20 * MiB, 0, false));
	cairn_digest d[11];
	put_sized(bs, d, 10, 1000, size);
	touch(bs, &d[0]);
	put_sized(bs, &d[10], 1, 2000, size);
	cachefs_evict_now(f->fs);
	assert_false(cachefs_contains(f->fs, &d[1], false));
	assert_true(cachefs_contains(f->fs, &d[0], false));
	char path[256];
	blob_path(f, &d[1], path, sizeof path);
	assert_int_equal(access(path, F_OK), -1); /* the file is gone too */
	assert_int_equal(count_cas(f), 9);
	assert_index_ok(f->fs);
}

/* Each round below takes the store from 9 to 11 blobs, so the eviction thread can start a pass only
 * after the last put of a round, and the pass removes exactly 2 blobs whoever runs it. */
/* Walks the store with cachefs_list in batches of 3 and checks that it lists each blob of ds[0..n)
 * still held once, and nothing else. */
static void assert_lists_held(cachefs *fs, const cairn_digest *ds, int n)
{
	int seen[32] = {0}, held = 0;
	assert_true(n <= 32);
	uint64_t cursor = 0;
	cairn_digest got[3];
	size_t k, total = 0;
	while ((k = cachefs_list(fs, &cursor, got, 3)) > 0) {
		assert_true(k <= 3);
		for (size_t j = 0; j < k; j++) {
			int i = 0;
			while (i < n && !cairn_digest_eq(&ds[i], &got[j]))
				i++;
			assert_true(i < n);
			seen[i]++;
		}
		total += k;
	}
	for (int i = 0; i < n; i++) {
		bool h = cachefs_contains(fs, &ds[i], false);
		held += h;
		assert_int_equal(seen[i], h);
	}
	assert_int_equal(total, held);
	assert_int_equal(held, stats(fs).blobs);
}

/* cachefs_list walks the blobs held, in files and packed, once each: not those evicted, and the
 * ones that took their index entries after them. */
static void test_list_walks_the_blobs_held(void **state)
{
	fixture *f = *state;
	const size_t size = 100 * KiB;
	/* room for 10 blobs in files and 4 packed ones */
	blobstore *bs = cachefs_blobstore(reopen(f, 10 * (int64_t)size + 4 * 4 * KiB, 20 * MiB, 0, false));
	cairn_digest d[16];
	put_sized(bs, d, 10, 1000, size);
	put_blobs(bs, &d[10], 4, 2000);
	assert_lists_held(f->fs, d, 14);
	assert_int_equal(stats(f->fs).blobs, 14);
	put_sized(bs, &d[14], 1, 3000, size);
	cachefs_evict_now(f->fs); /* the least recently used go */
	assert_false(cachefs_contains(f->fs, &d[0], false));
	assert_lists_held(f->fs, d, 15);
	put_blobs(bs, &d[15], 1, 4000);
	assert_true(cachefs_contains(f->fs, &d[15], false));
	assert_lists_held(f->fs, d, 16);
}

static void test_pinned_never_evicted(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(reopen(f, 10 * 4 * KiB, 1 * MiB, 0, false));
	cairn_digest d[15];
	put_blobs(bs, d, 10, 3000);
	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &d[0], &r).code, CAIRN_OK);
	for (int k = 1; k < 10; k++)
		touch(bs, &d[k]); /* d[0] is the least recently used again, but open */
	put_blobs(bs, &d[10], 1, 3010);
	cachefs_evict_now(f->fs);
	assert_true(cachefs_contains(f->fs, &d[0], false));
	assert_false(cachefs_contains(f->fs, &d[1], false));
	assert_false(cachefs_contains(f->fs, &d[2], false));
	assert_true(cachefs_contains(f->fs, &d[3], false));
	uint8_t *want = random_bytes(4 * KiB, 3000), got[4 * KiB];
	assert_int_equal(read_at(r, 0, got, sizeof got), sizeof got);
	assert_memory_equal(got, want, sizeof got);
	free(want);
	blobstore_close_read(r);

	/* closed: d[0] is the next to go */
	put_blobs(bs, &d[11], 2, 3011);
	cachefs_evict_now(f->fs);
	assert_false(cachefs_contains(f->fs, &d[0], false));
	assert_false(cachefs_contains(f->fs, &d[3], false));

	/* a pin_path pin holds just as well */
	char path[256];
	assert_int_equal(cachefs_pin_path(f->fs, &d[5], path, sizeof path).code, CAIRN_OK);
	for (int k = 4; k <= 12; k++)
		if (k != 5)
			touch(bs, &d[k]);
	put_blobs(bs, &d[13], 2, 3013);
	cachefs_evict_now(f->fs);
	assert_true(cachefs_contains(f->fs, &d[5], false));
	assert_int_equal(access(path, R_OK), 0);
	assert_false(cachefs_contains(f->fs, &d[4], false));
	assert_false(cachefs_contains(f->fs, &d[6], false));
	cachefs_unpin(f->fs, &d[5]);
	assert_int_equal(stats(f->fs).evicted_blobs, 6);
	assert_index_ok(f->fs);
}

static void test_min_age(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(reopen(f, 4 * 4 * KiB, 1 * MiB, 3600 * 1000000000LL, false));
	cairn_digest d[8];
	put_blobs(bs, d, 8, 4000);
	cachefs_evict_now(f->fs);
	cachefs_stats s = stats(f->fs);
	assert_int_equal(s.evicted_blobs, 0); /* all used within the hour */
	assert_int_equal(s.blobs, 8);
	/* without min_age, the same store is cut back at once */
	reopen(f, 4 * 4 * KiB, 1 * MiB, 0, false);
	cachefs_evict_now(f->fs);
	assert_int_equal(stats(f->fs).blobs, 3);
}

/* Blobs go once min_age has passed since their last use, and not before. */
static void test_min_age_expires(void **state)
{
	fixture *f = *state;
	const int64_t min_age = 300 * 1000000LL;
	blobstore *bs = cachefs_blobstore(reopen(f, 4 * 4 * KiB, 1 * MiB, min_age, false));
	cairn_digest d[8];
	int64_t used[8], gone[8] = {0};
	for (int k = 0; k < 8; k++) {
		used[k] = cairn_now_ns(); /* its last use is no earlier than this */
		put_blobs(bs, &d[k], 1, 9100 + (uint64_t)k);
	}
	/* Passes start above max_size (4 blobs) and stop at 95% of it (3 blobs) or at the first blob used
	 * within min_age, so the store ends with 3 blobs, or with 4 if a pass ran while the 5th oldest
	 * was still young (a slow machine). */
	int64_t deadline = cairn_now_ns() + 10 * 1000000000LL;
	while (stats(f->fs).bytes > 4 * 4 * KiB && cairn_now_ns() < deadline) {
		cachefs_evict_now(f->fs);
		for (int k = 0; k < 8; k++)
			if (!gone[k] && !cachefs_contains(f->fs, &d[k], false))
				gone[k] = cairn_now_ns();
		usleep(1000);
	}
	int n_gone = 0;
	for (int k = 0; k < 8; k++) {
		if (!cachefs_contains(f->fs, &d[k], false) && !gone[k])
			gone[k] = cairn_now_ns();
		n_gone += gone[k] != 0;
	}
	assert_true(n_gone == 4 || n_gone == 5);
	for (int k = 0; k < 8; k++) {
		assert_int_equal(gone[k] != 0, k < n_gone); /* the oldest went */
		if (gone[k])
			assert_true(gone[k] - used[k] >= min_age);
	}
}

/* Appends `len` bytes of data in one piece and returns the callback's status. */
static cairn_status append(blobstore_writer *w, const uint8_t *data, size_t len)
{
	sync_wait s;
	sw_init(&s);
	blobstore_write(w, data, len, on_done, &s);
	sw_wait(&s);
	return s.st;
}

/* The reservations drop back to 0 once the aborts in flight finished on the I/O thread. */
static void assert_nothing_reserved_soon(cachefs *fs)
{
	int64_t deadline = cairn_now_ns() + 10 * 1000000000LL;
	while (stats(fs).reserved && cairn_now_ns() < deadline)
		usleep(1000);
	assert_int_equal(stats(fs).reserved, 0);
}

static void test_hard_limit(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(reopen(f, 8 * KiB, 16 * KiB, 3600 * 1000000000LL, false));
	cairn_digest d[5];
	put_blobs(bs, d, 3, 5000);
	blobstore_writer *w, *w2;
	uint8_t *data = random_bytes(4 * KiB, 5003);
	cairn_digest_of(data, 4 * KiB, &d[3]);
	assert_int_equal(blobstore_open_write(bs, &d[3], &w).code, CAIRN_OK); /* exactly up to the limit */
	cairn_digest one;
	cairn_digest_of("x", 1, &one);
	/* the headroom is all reserved: the 1-byte blob's byte does not fit, and min_age keeps every
	 * blob from eviction */
	assert_int_equal(blobstore_open_write(bs, &one, &w2).code, CAIRN_OK);
	cairn_status st = append(w2, (const uint8_t *)"x", 1);
	assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(st.msg, "hard limit of 16384 bytes"));
	blobstore_abort(w2);
	assert_int_equal(append(w, data, 4 * KiB).code, CAIRN_OK);
	sync_wait s;
	sw_init(&s);
	blobstore_commit(w, on_done, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_OK);
	st = put(bs, (const uint8_t *)"x", 1, &one);
	assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
	cachefs_stats stt = stats(f->fs);
	assert_int_equal(stt.rejected_writes, 2);
	assert_int_equal(stt.bytes, 16 * KiB);
	assert_blob(bs, &d[3], data, 4 * KiB); /* reads go on */
	assert_nothing_reserved_soon(f->fs);
	free(data);
}

/* A digest of the given size whose bytes nobody will send (an upload that stalls). */
static cairn_digest stalled_digest(int64_t size, uint8_t tag)
{
	cairn_digest d = {.size = size};
	memset(d.hash, tag, sizeof d.hash);
	return d;
}

/* An upload that declares the whole hard limit, sends 16 KiB and stalls holds room for what it
 * sent and one grant, not for what it declared: other uploads go on meanwhile; paused, it holds
 * its bytes only, and aborted nothing. */
static void test_stalled_upload_holds_what_it_sent(void **state)
{
	fixture *f = *state;
	const int64_t hard = 22 * MiB;
	blobstore *bs = cachefs_blobstore(reopen(f, 20 * MiB, hard, 0, false));
	cairn_digest big = stalled_digest(hard, 0x5a);
	blobstore_writer *w;
	assert_int_equal(blobstore_open_write(bs, &big, &w).code, CAIRN_OK);
	uint8_t *sent = random_bytes(16 * KiB, 77);
	assert_int_equal(append(w, sent, 16 * KiB).code, CAIRN_OK);
	assert_true(stats(f->fs).reserved <= (uint64_t)(16 * KiB + CACHEFS_RESERVE_STEP));
	cairn_digest d[4];
	put_sized(bs, d, 1, 7800, 1300); /* a BatchUpdateBlobs-sized blob */
	put_sized(bs, &d[1], 3, 7900, 3 * MiB);
	assert_int_equal(stats(f->fs).blobs, 4);
	blobstore_pause(w);
	assert_int_equal(stats(f->fs).reserved, 16 * KiB);
	assert_int_equal(append(w, sent, 16 * KiB).code, CAIRN_OK); /* a resume takes room again */
	blobstore_abort(w);
	assert_nothing_reserved_soon(f->fs);
	assert_int_equal(count_tmp(f), 0);
	free(sent);
}

static void test_blob_over_hard_limit_refused(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(reopen(f, 1 * MiB, 2 * MiB, 0, false));
	cairn_digest big = stalled_digest(2 * MiB + 1, 0x33);
	blobstore_writer *w;
	cairn_status st = blobstore_open_write(bs, &big, &w);
	assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(st.msg, "larger than the hard limit of 2097152 bytes"));
	cachefs_stats s = stats(f->fs);
	assert_int_equal(s.rejected_writes, 1);
	assert_int_equal(s.reserved, 0);
	cairn_digest exact = stalled_digest(2 * MiB, 0x34); /* the whole limit is fine */
	assert_int_equal(blobstore_open_write(bs, &exact, &w).code, CAIRN_OK);
	blobstore_abort(w);
	assert_nothing_reserved_soon(f->fs);
}

/* Uploads that open and stall each reserve at most a share of the headroom ahead of their data, so
 * together they never take all of it: the n-th leaves about 1/n of it, and the next upload finds
 * room. */
static void test_uploads_share_the_headroom(void **state)
{
	fixture *f = *state;
	const int64_t hard = 22 * MiB;
	blobstore *bs = cachefs_blobstore(reopen(f, 20 * MiB, hard, 0, false));
	enum { N = 16 };
	blobstore_writer *w[N];
	for (int k = 0; k < N; k++) {
		cairn_digest d = stalled_digest(hard, (uint8_t)(k + 1));
		assert_int_equal(blobstore_open_write(bs, &d, &w[k]).code, CAIRN_OK);
		int64_t held = ((cachefs_writer *)w[k])->reserved;
		assert_true(held > 0 && held <= CACHEFS_RESERVE_STEP);
	}
	assert_true((int64_t)stats(f->fs).reserved < hard);
	cairn_digest d;
	put_sized(bs, &d, 1, 8100, 1 * MiB);
	for (int k = 0; k < N; k++)
		blobstore_abort(w[k]);
	assert_nothing_reserved_soon(f->fs);
}

/* Bytes that do not fit fail their own upload, not the others. */
static void test_append_over_limit_fails_its_upload(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(reopen(f, 8 * MiB, 10 * MiB, 0, false));
	size_t len = 6 * MiB;
	uint8_t *a = random_bytes(len, 91), *b = random_bytes(len, 92);
	cairn_digest da, db;
	cairn_digest_of(a, len, &da);
	cairn_digest_of(b, len, &db);
	blobstore_writer *wa, *wb;
	assert_int_equal(blobstore_open_write(bs, &da, &wa).code, CAIRN_OK);
	assert_int_equal(blobstore_open_write(bs, &db, &wb).code, CAIRN_OK);
	for (size_t off = 0; off < len; off += MiB)
		assert_int_equal(append(wa, a + off, MiB).code, CAIRN_OK);
	cairn_status st = cairn_ok();
	size_t off = 0;
	for (; off < len && cairn_is_ok(&st); off += MiB)
		st = append(wb, b + off, MiB);
	assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
	assert_int_equal(off, 5 * MiB); /* its fifth MiB would pass the 10 MiB */
	assert_int_equal(append(wb, b + off, MiB).code, CAIRN_RESOURCE_EXHAUSTED); /* the writer failed */
	blobstore_abort(wb);
	sync_wait s;
	sw_init(&s);
	blobstore_commit(wa, on_done, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_OK);
	assert_blob(bs, &da, a, len);
	assert_int_equal(stats(f->fs).rejected_writes, 1);
	assert_nothing_reserved_soon(f->fs);
	free(a);
	free(b);
}

/* An append that does not fit waits for an eviction pass, and goes on if the pass made room. */
static void test_append_waits_for_eviction(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(reopen(f, 8 * MiB, 10 * MiB, 0, false));
	size_t len = 3 * MiB;
	uint8_t *data = random_bytes(len, 94);
	cairn_digest d;
	cairn_digest_of(data, len, &d);
	sync_wait s;
	sw_init(&s);
	/* No pass runs until the append waits; nothing may fail an assertion while this lock is held,
	 * or the eviction thread would never let the store close. */
	pthread_mutex_lock(&f->fs->pass_mu);
	cairn_status st = cairn_ok();
	for (int k = 0; k < 9 && cairn_is_ok(&st); k++) { /* 9 MiB held: past max_size */
		uint8_t *old = random_bytes(MiB, 9300 + (uint64_t)k);
		cairn_digest od;
		st = put(bs, old, MiB, &od);
		free(old);
	}
	blobstore_writer *w = NULL;
	if (cairn_is_ok(&st))
		st = blobstore_open_write(bs, &d, &w);
	if (cairn_is_ok(&st))
		blobstore_write(w, data, len, on_done, &s);
	pthread_mutex_unlock(&f->fs->pass_mu);
	assert_int_equal(st.code, CAIRN_OK);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_OK);
	blobstore_commit(w, on_done, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_OK);
	cachefs_stats cs = stats(f->fs);
	assert_true(cs.evicted_blobs >= 2);
	assert_true(cs.bytes <= 10 * MiB);
	assert_blob(bs, &d, data, len);
	free(data);
}

static void test_reopen_rebuilds_index(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	enum { N = 16 };
	cairn_digest d[N];
	for (int k = 0; k < N; k++) {
		uint8_t *data = random_bytes((size_t)k * 2500, (uint64_t)k + 6000);
		assert_int_equal(put(bs, data, (size_t)k * 2500, &d[k]).code, CAIRN_OK);
		free(data);
	}
	cachefs_stats before = stats(f->fs);
	bs = cachefs_blobstore(open_default(f));
	cachefs_stats after = stats(f->fs);
	assert_int_equal(after.blobs, before.blobs);
	assert_int_equal(after.bytes, before.bytes);
	for (int k = 0; k < N; k++) {
		uint8_t *data = random_bytes((size_t)k * 2500, (uint64_t)k + 6000);
		assert_blob(bs, &d[k], data, (size_t)k * 2500);
		free(data);
	}
	assert_index_ok(f->fs);
}

static void test_reopen_orders_by_mtime(void **state)
{
	fixture *f = *state;
	const size_t size = 100 * KiB; /* blobs in files of their own */
	blobstore *bs = cachefs_blobstore(open_default(f));
	cairn_digest d[5];
	put_sized(bs, d, 5, 7000, size);
	/* file times, in hours ago: d[2] is the newest, then d[4], d[0], d[3], d[1] */
	const int hours_ago[5] = {3, 5, 1, 4, 2};
	for (int k = 0; k < 5; k++)
		seal_file(f, &d[k], time(NULL) - hours_ago[k] * 3600);
	reopen(f, 3 * (int64_t)size, 0, 0, false); /* a pass keeps 95% of 3 blobs: 2 */
	cachefs_evict_now(f->fs);
	assert_true(cachefs_contains(f->fs, &d[2], false));
	assert_true(cachefs_contains(f->fs, &d[4], false));
	assert_false(cachefs_contains(f->fs, &d[0], false));
	assert_false(cachefs_contains(f->fs, &d[3], false));
	assert_false(cachefs_contains(f->fs, &d[1], false));
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void test_leftover_tmp_removed(void **state)
{
	fixture *f = *state;
	open_default(f);
	cachefs_close(f->fs);
	f->fs = NULL;
	char p[200];
	snprintf(p, sizeof p, "%s/tmp/12.part", f->dir);
	write_file(p, "half a blob", 11);
	snprintf(p, sizeof p, "%s/tmp/junk", f->dir);
	write_file(p, "x", 1);
	assert_int_equal(count_tmp(f), 2);
	open_default(f);
	assert_int_equal(count_tmp(f), 0);
}

static void test_damaged_cas_files_dropped(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	cairn_digest good, cut;
	const size_t size = 100 * KiB; /* blobs in files of their own */
	uint8_t *a = random_bytes(size, 8000), *b = random_bytes(size, 8001);
	assert_int_equal(put(bs, a, size, &good).code, CAIRN_OK);
	assert_int_equal(put(bs, b, size, &cut).code, CAIRN_OK);
	cachefs_close(f->fs);
	f->fs = NULL;
	char p[256], name[CACHEFS_NAME_MAX];
	blob_path(f, &cut, p, sizeof p);
	assert_int_equal(chmod(p, 0644), 0);
	assert_int_equal(truncate(p, 100), 0); /* what a power loss may leave */
	snprintf(p, sizeof p, "%s/cas/ab/notes.txt", f->dir);
	write_file(p, "foreign", 7);
	cairn_digest other;
	cairn_digest_of("other", 5, &other);
	cachefs_blob_name(&other, name);
	snprintf(p, sizeof p, "%s/cas/%02x/%s", f->dir, (other.hash[0] + 1) & 255, name); /* wrong fan-out dir */
	write_file(p, "other", 5);
	open_default(f);
	cachefs_stats s = stats(f->fs);
	assert_int_equal(s.blobs, 1);
	assert_int_equal(s.bytes, size);
	assert_true(cachefs_contains(f->fs, &good, false));
	assert_false(cachefs_contains(f->fs, &cut, false));
	assert_int_equal(count_cas(f), 1);
	free(a);
	free(b);
}

static void test_vanished_file(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB; /* a blob in a file of its own */
	uint8_t *data = random_bytes(size, 9000);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	blobstore_reader *r1, *r2;
	assert_int_equal(open_reader(bs, &d, &r1).code, CAIRN_OK);
	char path[256];
	blob_path(f, &d, path, sizeof path);
	assert_int_equal(unlink(path), 0); /* someone deletes it behind our back */
	cairn_status st = open_reader(bs, &d, &r2);
	assert_int_equal(st.code, CAIRN_NOT_FOUND);
	assert_false(cachefs_contains(f->fs, &d, false));
	assert_int_equal(stats(f->fs).bytes, 0);
	/* uploading it again while the first reader is still open brings it back */
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	assert_true(cachefs_contains(f->fs, &d, false));
	uint8_t got[1000];
	assert_int_equal(read_at(r1, 1000, got, sizeof got), sizeof got);
	assert_memory_equal(got, data + 1000, sizeof got);
	blobstore_close_read(r1);
	assert_blob(bs, &d, data, size);
	assert_int_equal(stats(f->fs).bytes, size);
	assert_index_ok(f->fs);
	free(data);
}

static void test_open_errors(void **state)
{
	fixture *f = *state;
	char file[128], dir[160];
	snprintf(file, sizeof file, "%s/plainfile", f->root);
	write_file(file, "x", 1);
	snprintf(dir, sizeof dir, "%s/sub", file);
	cachefs_config cfg = {.dir = dir, .max_size = MiB};
	cachefs *fs = NULL;
	cairn_status st = cachefs_open(&cfg, &fs);
	assert_int_not_equal(st.code, CAIRN_OK);
	assert_non_null(strstr(st.msg, dir));
	assert_non_null(strstr(st.msg, strerror(ENOTDIR)));
	cfg.max_size = 0;
	assert_int_equal(cachefs_open(&cfg, &fs).code, CAIRN_INVALID_ARGUMENT);
	/* one process per directory */
	open_default(f);
	cfg = (cachefs_config){.dir = f->dir, .max_size = MiB};
	st = cachefs_open(&cfg, &fs);
	assert_int_equal(st.code, CAIRN_FAILED_PRECONDITION);
}

/* A private mount namespace with a 2 MiB tmpfs on dir; false where the system does not allow it. */
static bool small_disk(const char *dir)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWNS) != 0) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			return false;
		char map[64];
		int fd = open("/proc/self/setgroups", O_WRONLY);
		if (fd >= 0 && (write(fd, "deny", 4) < 0 || close(fd)))
			return false;
		snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
		fd = open("/proc/self/uid_map", O_WRONLY);
		if (fd < 0 || write(fd, map, strlen(map)) < 0 || close(fd))
			return false;
		snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
		fd = open("/proc/self/gid_map", O_WRONLY);
		if (fd < 0 || write(fd, map, strlen(map)) < 0 || close(fd))
			return false;
	}
	return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 && mkdir(dir, 0755) == 0 &&
	       mount("tmpfs", dir, "tmpfs", 0, "size=2m") == 0;
}

/* In the child: a full disk refuses the upload with RESOURCE_EXHAUSTED and leaves no temp file;
 * reads, and uploads that fit, go on. Returns the number of the first check that failed. */
static int enospc_child(const char *dir)
{
	cachefs_config cfg = {.dir = dir, .max_size = 1LL << 30}; /* the hard limit does not stop it: the disk does */
	cachefs *fs;
	if (cachefs_open(&cfg, &fs).code != CAIRN_OK)
		return 10;
	blobstore *bs = cachefs_blobstore(fs);
	uint8_t *small = random_bytes(10 * KiB, 1), *big = random_bytes(3 * MiB, 2);
	cairn_digest ds, db;
	if (put(bs, small, 10 * KiB, &ds).code != CAIRN_OK)
		return 11;
	cairn_status st = put(bs, big, 3 * MiB, &db);
	if (st.code != CAIRN_RESOURCE_EXHAUSTED || !strstr(st.msg, strerror(ENOSPC)))
		return 12;
	cachefs_stats s;
	cachefs_get_stats(fs, &s);
	if (s.rejected_writes != 1 || s.blobs != 1)
		return 18;
	cachefs_close(fs); /* waits for the clean-up of the failed upload */
	char tmp[200];
	snprintf(tmp, sizeof tmp, "%s/tmp", dir);
	DIR *d = opendir(tmp);
	int left = 0;
	for (struct dirent *de; d && (de = readdir(d));)
		left += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	if (!d || left)
		return 13;
	closedir(d);
	if (cachefs_open(&cfg, &fs).code != CAIRN_OK)
		return 14;
	bs = cachefs_blobstore(fs);
	if (!cachefs_contains(fs, &ds, false) || cachefs_contains(fs, &db, false))
		return 15;
	if (put(bs, big, MiB, &db).code != CAIRN_OK) /* the space of the failed upload is free again */
		return 16;
	blobstore_reader *r;
	uint8_t buf[100];
	if (open_reader(bs, &ds, &r).code != CAIRN_OK || read_at(r, 0, buf, sizeof buf) != sizeof buf ||
	    memcmp(buf, small, sizeof buf))
		return 17;
	blobstore_close_read(r);
	/* small blobs fill the rest: the one whose group does not fit is refused the same way */
	cairn_digest dk[64];
	int k = 0;
	cairn_status st2;
	do {
		uint8_t *p = random_bytes(64 * KiB, 100 + (uint64_t)k);
		st2 = put(bs, p, 64 * KiB, &dk[k]);
		free(p);
	} while (cairn_is_ok(&st2) && ++k < 64);
	if (k == 0 || st2.code != CAIRN_RESOURCE_EXHAUSTED || !strstr(st2.msg, strerror(ENOSPC)))
		return 19;
	for (int round = 0; round < 2; round++) { /* the blobs before it are whole, also after a restart */
		for (int j = 0; j < k; j++) {
			uint8_t *want = random_bytes(64 * KiB, 100 + (uint64_t)j);
			bool same = open_reader(bs, &dk[j], &r).code == CAIRN_OK &&
			            read_at(r, 60 * KiB, buf, sizeof buf) == sizeof buf &&
			            !memcmp(buf, want + 60 * KiB, sizeof buf);
			free(want);
			if (!same)
				return 20;
			blobstore_close_read(r);
		}
		cachefs_close(fs);
		if (round == 0 && cachefs_open(&cfg, &fs).code != CAIRN_OK)
			return 21;
		bs = cachefs_blobstore(fs);
	}
	free(small);
	free(big);
	return 0;
}

static void test_disk_full(void **state)
{
	fixture *f = *state;
	char mnt[128];
	snprintf(mnt, sizeof mnt, "%s/small", f->root);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(small_disk(mnt) ? enospc_child(mnt) : 77);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip(); /* no mount namespace here */
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- packs ----------------------------------------------------------------------------------- */

static void append_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* A blob's own file holds exactly these bytes, with mode 0644. */
static void assert_file(const char *path, const uint8_t *data, size_t len)
{
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, (off_t)len);
	assert_int_equal(sb.st_mode & 0777, 0644);
	uint8_t *got = malloc(len + 1);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, got, len + 1), (ssize_t)len);
	close(fd);
	assert_memory_equal(got, data, len);
	free(got);
}

static const size_t packed_sizes[] = {1, 100, 4095, 4096, 4097, 30000, 64 * KiB};
#define NPACKED (sizeof packed_sizes / sizeof packed_sizes[0])

/* Small blobs go into one pack, each at a 4 KiB slot with a journal record, and read back, also after
 * a restart. */
static void test_packed_round_trip(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	cairn_digest d[NPACKED];
	uint8_t *data[NPACKED];
	int64_t slots = 0;
	for (size_t k = 0; k < NPACKED; k++) {
		data[k] = random_bytes(packed_sizes[k], 11000 + k);
		assert_int_equal(put(bs, data[k], packed_sizes[k], &d[k]).code, CAIRN_OK);
		assert_blob(bs, &d[k], data[k], packed_sizes[k]);
		assert_int_equal(packed_at(f->fs, &d[k], NULL), slots);
		slots += (int64_t)cachefs_slot_bytes((int64_t)packed_sizes[k]);
	}
	blobstore_reader *r;
	uint8_t buf[100];
	assert_int_equal(open_reader(bs, &d[5], &r).code, CAIRN_OK);
	assert_int_equal(read_at(r, 29950, buf, sizeof buf), 50); /* short at the end of the blob, not of the pack */
	assert_memory_equal(buf, data[5] + 29950, 50);
	blobstore_close_read(r);
	char p[200];
	pack_path(f, 1, "data", p, sizeof p);
	assert_int_equal(file_size(p), slots);
	pack_path(f, 1, "journal", p, sizeof p);
	assert_int_equal(file_size(p), NPACKED * CACHEFS_RECORD_SIZE);
	assert_int_equal(count_cas(f), 0);
	assert_int_equal(count_packs(f), 1);
	assert_index_ok(f->fs);

	bs = cachefs_blobstore(open_default(f));
	assert_int_equal(stats(f->fs).blobs, NPACKED);
	for (size_t k = 0; k < NPACKED; k++) {
		assert_blob(bs, &d[k], data[k], packed_sizes[k]);
		free(data[k]);
	}
	assert_index_ok(f->fs);
}

/* A small upload whose bytes do not match its digest writes nothing: no record, no data, no pack. */
static void test_packed_bad_digest_leaves_nothing(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *a = random_bytes(5000, 1), *b = random_bytes(5000, 2);
	cairn_digest d;
	cairn_digest_of(a, 5000, &d);
	cairn_status st = put_chunked(bs, &d, b, 5000, 1000);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "does not match digest"));
	assert_int_equal(put_chunked(bs, &d, a, 4999, 1000).code, CAIRN_INVALID_ARGUMENT);
	assert_false(cachefs_contains(f->fs, &d, false));
	assert_int_equal(stats(f->fs).reserved, 0);
	assert_int_equal(count_packs(f), 0);
	assert_int_equal(put_chunked(bs, &d, a, 5000, 1000).code, CAIRN_OK);
	char p[200];
	pack_path(f, 1, "journal", p, sizeof p);
	assert_int_equal(file_size(p), CACHEFS_RECORD_SIZE); /* the good upload's record only */
	open_default(f);
	assert_int_equal(stats(f->fs).blobs, 1);
	free(a);
	free(b);
}

/* Evicting packed blobs punches their slots at once; a pack left with nothing is deleted. */
static void test_packed_eviction_frees_space(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	cairn_digest d[16];
	put_blobs(bs, d, 16, 12000);
	char p[200], j[200];
	pack_path(f, 1, "data", p, sizeof p);
	pack_path(f, 1, "journal", j, sizeof j);
	int64_t before = file_blocks(p);
	assert_true(before >= 16 * 4 * KiB / 512);
	reopen(f, 8 * 4 * KiB, 0, 0, false); /* a pass keeps 95% of 8 blobs: 7, the newest */
	cachefs_evict_now(f->fs);
	for (int k = 0; k < 16; k++)
		assert_int_equal(cachefs_contains(f->fs, &d[k], false), k >= 9);
	assert_true(file_blocks(p) <= before - 9 * 4 * KiB / 512);
	assert_true(has_hole(p, 0, 4 * KiB) && has_hole(p, 8 * 4 * KiB, 4 * KiB));
	assert_false(has_hole(p, 9 * 4 * KiB, 7 * 4 * KiB));
	assert_index_ok(f->fs);
	open_default(f); /* a restart finds the punched blobs dead */
	assert_int_equal(stats(f->fs).blobs, 7);
	for (int k = 0; k < 16; k++) {
		uint8_t *data = random_bytes(4 * KiB, 12000 + (uint64_t)k);
		if (k >= 9)
			assert_blob(cachefs_blobstore(f->fs), &d[k], data, 4 * KiB);
		else
			assert_false(cachefs_contains(f->fs, &d[k], false));
		free(data);
	}
	reopen(f, 1, 0, 0, false); /* everything goes */
	cachefs_evict_now(f->fs);
	assert_int_equal(stats(f->fs).blobs, 0);
	assert_true(gone_soon(j));
	assert_true(gone_soon(p));
	assert_index_ok(f->fs);
}

/* Full packs are retired and deleted once empty; the active pack stays, even empty. Packs of four
 * 4 KiB slots here. */
static void test_packed_rotation(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(reopen(f, 6 * 4 * KiB, 10 * MiB, 0, false));
	f->fs->pack_limit = 4 * 4 * KiB; /* before any write: only the I/O thread reads it from here on */
	cairn_digest d[11], big;
	/* packs 1 (d[0..3]), 2 (d[4..7]), 3 (d[8..10]). Eviction settles after each put (whether the
	 * eviction thread or this one runs the pass), so that passes run at 7 blobs and keep 95% of 6: 5 */
	for (int k = 0; k < 11; k++) {
		put_blobs(bs, &d[k], 1, 12100 + (uint64_t)k);
		cachefs_evict_now(f->fs);
	}
	for (int k = 0; k < 11; k++)
		assert_int_equal(cachefs_contains(f->fs, &d[k], false), k >= 6);
	char p1[200], j1[200], p2[200], p3[200];
	pack_path(f, 1, "data", p1, sizeof p1);
	pack_path(f, 1, "journal", j1, sizeof j1);
	pack_path(f, 2, "data", p2, sizeof p2);
	pack_path(f, 3, "data", p3, sizeof p3);
	assert_true(gone_soon(p1));
	assert_true(gone_soon(j1));
	assert_true(has_hole(p2, 0, 2 * 4 * KiB));
	assert_false(has_hole(p2, 2 * 4 * KiB, 2 * 4 * KiB));
	unsigned pack;
	assert_int_equal(packed_at(f->fs, &d[10], &pack), 2 * 4 * KiB);
	assert_int_equal(pack, 3);
	/* a blob larger than max_size pushes every blob out, itself too */
	put_sized(bs, &big, 1, 12200, 100 * KiB);
	cachefs_evict_now(f->fs);
	assert_int_equal(stats(f->fs).blobs, 0);
	assert_true(gone_soon(p2));
	assert_int_equal(file_blocks(p3), 0); /* empty, but it is the one appended to */
	put_blobs(bs, d, 1, 12300);
	assert_int_equal(packed_at(f->fs, &d[0], &pack), 3 * 4 * KiB);
	assert_int_equal(pack, 3);
	assert_index_ok(f->fs);
}

/* After a restart, packed blobs go in the order they were written. */
static void test_packed_restart_keeps_order(void **state)
{
	fixture *f = *state;
	cairn_digest d[5];
	put_blobs(cachefs_blobstore(open_default(f)), d, 5, 12400);
	reopen(f, 3 * 4 * KiB, 0, 0, false); /* a pass keeps 95% of 3 blobs: 2 */
	cachefs_evict_now(f->fs);
	for (int k = 0; k < 5; k++)
		assert_int_equal(cachefs_contains(f->fs, &d[k], false), k >= 3);
}

/* A record a crash tore or damaged ends the journal: the scan cuts it there and frees its blob's slot. */
static void test_torn_journal_tail(void **state)
{
	fixture *f = *state;
	cairn_digest d[3];
	put_blobs(cachefs_blobstore(open_default(f)), d, 3, 13000);
	cachefs_close(f->fs);
	f->fs = NULL;
	char p[200], j[200];
	pack_path(f, 1, "data", p, sizeof p);
	pack_path(f, 1, "journal", j, sizeof j);
	append_file(j, "a torn record", 13);
	blobstore *bs = cachefs_blobstore(open_default(f));
	assert_int_equal(stats(f->fs).blobs, 3);
	assert_int_equal(file_size(j), 3 * CACHEFS_RECORD_SIZE);
	cachefs_close(f->fs);
	f->fs = NULL;
	int fd = open(j, O_RDWR);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, 2 * CACHEFS_RECORD_SIZE + 10), 1);
	b ^= 1;
	assert_int_equal(pwrite(fd, &b, 1, 2 * CACHEFS_RECORD_SIZE + 10), 1);
	close(fd);
	bs = cachefs_blobstore(open_default(f));
	assert_int_equal(stats(f->fs).blobs, 2);
	assert_false(cachefs_contains(f->fs, &d[2], false));
	assert_int_equal(file_size(j), 2 * CACHEFS_RECORD_SIZE);
	assert_int_equal(file_size(p), 2 * 4 * KiB);
	for (int k = 0; k < 3; k++) {
		uint8_t *data = random_bytes(4 * KiB, 13000 + (uint64_t)k);
		if (k == 2)
			assert_int_equal(put(bs, data, 4 * KiB, &d[k]).code, CAIRN_OK);
		assert_blob(bs, &d[k], data, 4 * KiB);
		free(data);
	}
	assert_index_ok(f->fs);
}

/* A blob found both as a file and in a pack is kept as the file; the pack copy is punched, and a pack
 * left with no live record is removed. */
static void test_pack_and_file_same_digest(void **state)
{
	fixture *f = *state;
	cairn_digest d[2];
	put_blobs(cachefs_blobstore(open_default(f)), d, 2, 13100);
	cachefs_close(f->fs);
	f->fs = NULL;
	uint8_t *data[2] = {random_bytes(4 * KiB, 13100), random_bytes(4 * KiB, 13101)};
	char path[256], p[200];
	pack_path(f, 1, "data", p, sizeof p);
	blob_path(f, &d[0], path, sizeof path);
	write_file(path, data[0], 4 * KiB);
	seal_file(f, &d[0], time(NULL)); /* as materialise.c leaves it */
	blobstore *bs = cachefs_blobstore(open_default(f));
	assert_int_equal(stats(f->fs).blobs, 2);
	assert_int_equal(packed_at(f->fs, &d[0], NULL), -1);
	assert_int_equal(packed_at(f->fs, &d[1], NULL), 4 * KiB);
	assert_true(has_hole(p, 0, 4 * KiB));
	assert_false(has_hole(p, 4 * KiB, 4 * KiB));
	for (int k = 0; k < 2; k++)
		assert_blob(bs, &d[k], data[k], 4 * KiB);
	cachefs_close(f->fs);
	f->fs = NULL;
	blob_path(f, &d[1], path, sizeof path);
	write_file(path, data[1], 4 * KiB);
	seal_file(f, &d[1], time(NULL));
	bs = cachefs_blobstore(open_default(f));
	assert_int_equal(stats(f->fs).blobs, 2);
	assert_int_equal(count_packs(f), 0);
	for (int k = 0; k < 2; k++) {
		assert_blob(bs, &d[k], data[k], 4 * KiB);
		free(data[k]);
	}
	assert_index_ok(f->fs);
}

/* pin_path gives a packed blob a file of its own (cachefs_pin does not); the pack copy is punched
 * unless a reader may still read it. */
/* Two slots that pin the same packed blob at once and hard-link its file, as the executor does with
 * an input two actions share: both links succeed. (The second copy out of the pack once renamed
 * itself over the first, unlinking the inode the first caller was linking: ENOENT.) */
typedef struct link_race {
	fixture *f;
	const cairn_digest *ds;
	int n, who, failures;
	pthread_barrier_t *start;
} link_race;

static void *link_racer(void *p)
{
	link_race *lr = p;
	for (int i = 0; i < lr->n; i++) {
		char path[256], dst[256];
		snprintf(dst, sizeof dst, "%s/links/%d-%d", lr->f->root, lr->who, i);
		pthread_barrier_wait(lr->start);
		cairn_status st = cachefs_pin_path(lr->f->fs, &lr->ds[i], path, sizeof path);
		if (!cairn_is_ok(&st) || link(path, dst) != 0)
			lr->failures++;
		if (cairn_is_ok(&st))
			cachefs_unpin(lr->f->fs, &lr->ds[i]);
	}
	return NULL;
}

static void test_concurrent_pin_path_links(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	enum { N = 200 };
	cairn_digest *ds = calloc(N, sizeof *ds);
	put_sized(bs, ds, N, 15000, 2 * KiB); /* small: packed */
	assert_true(packed_at(f->fs, &ds[0], NULL) >= 0);
	char links[128];
	snprintf(links, sizeof links, "%s/links", f->root);
	assert_int_equal(mkdir(links, 0755), 0);
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	link_race r[2] = {{f, ds, N, 0, 0, &start}, {f, ds, N, 1, 0, &start}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, link_racer, &r[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
	assert_int_equal(r[0].failures + r[1].failures, 0);
	char one[256];
	snprintf(one, sizeof one, "%s/1-%d", links, N - 1);
	assert_int_equal(file_size(one), 2 * KiB);
	assert_index_ok(f->fs);
	free(ds);
}

static void test_pin_path_materialises(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *a = random_bytes(5000, 14000), *b = random_bytes(3000, 14001);
	cairn_digest da, db;
	assert_int_equal(put(bs, a, 5000, &da).code, CAIRN_OK);
	assert_int_equal(put(bs, b, 3000, &db).code, CAIRN_OK);
	char pa[256], pb[256], got[256], p[200];
	blob_path(f, &da, pa, sizeof pa);
	blob_path(f, &db, pb, sizeof pb);
	pack_path(f, 1, "data", p, sizeof p);
	assert_int_equal(cachefs_pin(f->fs, &da).code, CAIRN_OK);
	assert_int_equal(access(pa, F_OK), -1);
	cachefs_unpin(f->fs, &da);

	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &da, &r).code, CAIRN_OK);
	assert_int_equal(cachefs_pin_path(f->fs, &da, got, sizeof got).code, CAIRN_OK);
	assert_string_equal(got, pa);
	assert_file(pa, a, 5000);
	assert_int_equal(packed_at(f->fs, &da, NULL), -1);
	assert_false(has_hole(p, 0, 8 * KiB)); /* the reader may still read it there */
	uint8_t buf[5000];
	assert_int_equal(read_at(r, 0, buf, sizeof buf), sizeof buf);
	assert_memory_equal(buf, a, sizeof buf);
	blobstore_close_read(r);
	assert_blob(bs, &da, a, 5000);
	cachefs_unpin(f->fs, &da);

	assert_int_equal(cachefs_pin_path(f->fs, &db, got, sizeof got).code, CAIRN_OK);
	assert_file(pb, b, 3000);
	assert_true(has_hole(p, 8 * KiB, 4 * KiB)); /* no other pin: punched at once */
	assert_blob(bs, &db, b, 3000);
	cachefs_unpin(f->fs, &db);
	assert_int_equal(stats(f->fs).blobs, 2);
	assert_int_equal(stats(f->fs).bytes, 8000);
	assert_index_ok(f->fs);

	/* a restart finds each blob once, as its file; the pack, left with no live record, goes */
	bs = cachefs_blobstore(open_default(f));
	assert_int_equal(stats(f->fs).blobs, 2);
	assert_int_equal(count_packs(f), 0);
	assert_blob(bs, &da, a, 5000);
	assert_blob(bs, &db, b, 3000);

	/* its file vanishes under an open reader; uploading it again packs it again */
	assert_int_equal(open_reader(bs, &da, &r).code, CAIRN_OK);
	assert_int_equal(unlink(pa), 0);
	blobstore_reader *r2;
	assert_int_equal(open_reader(bs, &da, &r2).code, CAIRN_NOT_FOUND);
	assert_int_equal(put(bs, a, 5000, &da).code, CAIRN_OK);
	assert_true(packed_at(f->fs, &da, NULL) >= 0);
	assert_int_equal(read_at(r, 1000, buf, 100), 100);
	assert_memory_equal(buf, a + 1000, 100);
	blobstore_close_read(r);
	assert_blob(bs, &da, a, 5000);
	assert_index_ok(f->fs);
	free(a);
	free(b);
}

typedef struct pin_in_cb {
	sync_wait s;
	cachefs *fs;
	cairn_digest d;
	char path[256];
} pin_in_cb;

/* A commit callback that asks for the blob's file at once, as write-through does (on the I/O thread). */
static void commit_then_pin(void *arg, cairn_status st)
{
	pin_in_cb *p = arg;
	if (cairn_is_ok(&st))
		st = cachefs_pin_path(p->fs, &p->d, p->path, sizeof p->path);
	sw_finish(&p->s, st, 0, NULL);
}

/* pin_path from a commit callback, on the I/O thread, which cannot wait for its own ring. */
static void test_pin_path_in_commit_callback(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *data = random_bytes(7000, 14100);
	pin_in_cb p = {.fs = f->fs};
	sw_init(&p.s);
	cairn_digest_of(data, 7000, &p.d);
	blobstore_writer *w;
	assert_int_equal(blobstore_open_write(bs, &p.d, &w).code, CAIRN_OK);
	blobstore_write(w, data, 7000, on_done, &p.s);
	sw_wait(&p.s);
	blobstore_commit(w, commit_then_pin, &p);
	sw_wait(&p.s);
	assert_int_equal(p.s.st.code, CAIRN_OK);
	assert_file(p.path, data, 7000);
	assert_int_equal(packed_at(f->fs, &p.d, NULL), -1);
	cachefs_unpin(f->fs, &p.d);
	assert_blob(bs, &p.d, data, 7000);
	assert_index_ok(f->fs);
	free(data);
}

typedef struct small_arg {
	blobstore *bs;
	uint64_t seed;
	cairn_digest d[100];
	cairn_status st;
} small_arg;

/* The k-th blob of a writer: every fourth is the same for all writers (uploads of one digest race). */
static uint8_t *small_blob(uint64_t seed, int k, size_t *len)
{
	uint64_t s = k % 4 == 0 ? (uint64_t)k : seed * 1000 + (uint64_t)k;
	*len = 1 + (size_t)((s * 7919 + 104729) % (64 * KiB));
	return random_bytes(*len, 15000 + s);
}

static void *small_writer(void *p)
{
	small_arg *a = p;
	for (int k = 0; k < 100 && cairn_is_ok(&a->st); k++) {
		size_t len;
		uint8_t *data = small_blob(a->seed, k, &len);
		a->st = put(a->bs, data, len, &a->d[k]);
		free(data);
	}
	return NULL;
}

/* Many writers of small blobs at once: group commits, duplicates and pack rotations under load. */
static void test_many_small_writers(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	f->fs->pack_limit = 64 * 4 * KiB; /* many packs; before any write */
	enum { T = 8 };
	pthread_t t[T];
	small_arg *a = calloc(T, sizeof *a);
	for (int i = 0; i < T; i++) {
		a[i].bs = bs;
		a[i].seed = (uint64_t)i + 1;
		pthread_create(&t[i], NULL, small_writer, &a[i]);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].st.code, CAIRN_OK);
	}
	assert_int_equal(stats(f->fs).reserved, 0);
	assert_int_equal(stats(f->fs).blobs, T * 75 + 25);
	assert_index_ok(f->fs);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < T; i++)
			for (int k = 0; k < 100; k++) {
				size_t len;
				uint8_t *data = small_blob(a[i].seed, k, &len);
				assert_blob(bs, &a[i].d[k], data, len);
				free(data);
			}
		bs = cachefs_blobstore(open_default(f)); /* and the same after a restart */
		assert_int_equal(stats(f->fs).blobs, T * 75 + 25);
	}
	assert_index_ok(f->fs);
	free(a);
}

/* ---- blobs changed on disk behind cachefs's back (seal.c) ---------------------------------------- */

static const char planted[] = "planted bytes, not the blob's";

/* Writes `planted` over the start of a file, through a hard link of its own as an action could (it
 * made the file writable first), or appends it; the link is removed after. */
static void plant(fixture *f, const char *path, bool append)
{
	char link_path[160];
	snprintf(link_path, sizeof link_path, "%s/input-link", f->root);
	assert_int_equal(link(path, link_path), 0);
	assert_int_equal(chmod(link_path, 0644), 0);
	int fd = open(link_path, O_WRONLY | (append ? O_APPEND : 0));
	assert_true(fd >= 0);
	assert_int_equal(write(fd, planted, sizeof planted), (ssize_t)sizeof planted);
	close(fd);
	assert_int_equal(unlink(link_path), 0);
}

/* Changes a packed blob's first bytes where they lie in its pack. */
static void plant_packed(fixture *f, const cairn_digest *d)
{
	unsigned pack;
	int64_t off = packed_at(f->fs, d, &pack);
	assert_true(off >= 0);
	char p[200];
	pack_path(f, pack, "data", p, sizeof p);
	int fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, planted, sizeof planted, off), (ssize_t)sizeof planted);
	close(fd);
}

static bool reported_missing(blobstore *bs, const cairn_digest *d)
{
	uint8_t missing = 0;
	sync_wait s;
	sw_init(&s);
	blobstore_find_missing(bs, d, 1, &missing, on_done, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_OK);
	return missing;
}

/* What a user relies on once a changed blob was noticed: it is missing, its file is gone, it is
 * counted, and uploading it again makes it whole. */
static void assert_dropped(fixture *f, const cairn_digest *d, const uint8_t *data, uint64_t corrupt)
{
	blobstore *bs = cachefs_blobstore(f->fs);
	blobstore_reader *r;
	char path[256];
	blob_path(f, d, path, sizeof path);
	assert_int_equal(open_reader(bs, d, &r).code, CAIRN_NOT_FOUND);
	assert_true(reported_missing(bs, d));
	assert_int_equal(access(path, F_OK), -1);
	cachefs_stats s = stats(f->fs);
	assert_int_equal(s.corrupt_blobs, corrupt);
	assert_int_equal(s.blobs, 0);
	assert_int_equal(s.bytes, 0);
	assert_index_ok(f->fs);
	cairn_digest again;
	assert_int_equal(put(bs, data, (size_t)d->size, &again).code, CAIRN_OK);
	assert_blob(bs, d, data, (size_t)d->size);
	assert_index_ok(f->fs);
}

/* A blob file changed in place, at the same size, through another hard link: open gives NOT_FOUND. */
static void test_tamper_same_size_not_served(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB;
	uint8_t *data = random_bytes(size, 20000);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	char path[256];
	blob_path(f, &d, path, sizeof path);
	plant(f, path, false);
	assert_dropped(f, &d, data, 1);
	free(data);
}

/* A blob file that grew: open gives NOT_FOUND. */
static void test_tamper_other_size_not_served(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB;
	uint8_t *data = random_bytes(size, 20100);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	char path[256];
	blob_path(f, &d, path, sizeof path);
	plant(f, path, true);
	assert_dropped(f, &d, data, 1);
	free(data);
}

/* Another file renamed over a blob's file, with the same size: open gives NOT_FOUND. */
static void test_tamper_file_replaced_not_served(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB;
	uint8_t *data = random_bytes(size, 20200), *other = random_bytes(size, 20201);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	char path[256], tmp[160];
	blob_path(f, &d, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s/replacement", f->root);
	write_file(tmp, other, size);
	assert_int_equal(rename(tmp, path), 0);
	assert_dropped(f, &d, data, 1);
	free(data);
	free(other);
}

/* A blob file changed while a reader has it open: the next read gives NOT_FOUND, not the bytes. */
static void test_tamper_under_open_reader(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB;
	uint8_t *data = random_bytes(size, 20300);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &d, &r).code, CAIRN_OK);
	char path[256];
	blob_path(f, &d, path, sizeof path);
	plant(f, path, false);
	uint8_t *got = calloc(1, size);
	sync_wait s;
	sw_init(&s);
	blobstore_read(r, 0, got, size, on_read, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_NOT_FOUND);
	assert_int_equal(s.n, 0);
	blobstore_close_read(r);
	assert_dropped(f, &d, data, 1);
	free(got);
	free(data);
}

/* pin_path, which hands the file to actions, refuses a changed one. */
static void test_tamper_pin_path_refused(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB;
	uint8_t *data = random_bytes(size, 20400);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	char path[256], got[256];
	blob_path(f, &d, path, sizeof path);
	plant(f, path, false);
	assert_int_equal(cachefs_pin_path(f->fs, &d, got, sizeof got).code, CAIRN_NOT_FOUND);
	assert_true(reported_missing(bs, &d));
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(stats(f->fs).corrupt_blobs, 1);
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	assert_int_equal(cachefs_pin_path(f->fs, &d, got, sizeof got).code, CAIRN_OK);
	assert_file(got, data, size);
	cachefs_unpin(f->fs, &d);
	assert_index_ok(f->fs);
	free(data);
}

/* pin_path of a blob whose file was deleted behind cachefs's back: NOT_FOUND, and no longer held. */
static void test_pin_path_vanished_file(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB;
	uint8_t *data = random_bytes(size, 20450);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	char path[256], got[256];
	blob_path(f, &d, path, sizeof path);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(cachefs_pin_path(f->fs, &d, got, sizeof got).code, CAIRN_NOT_FOUND);
	assert_true(reported_missing(bs, &d));
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	assert_int_equal(cachefs_pin_path(f->fs, &d, got, sizeof got).code, CAIRN_OK);
	cachefs_unpin(f->fs, &d);
	assert_index_ok(f->fs);
	free(data);
}

/* A packed blob's bytes changed in its pack: reading it gives NOT_FOUND; its slots are punched. */
static void test_tamper_packed_not_served(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *data = random_bytes(5000, 20500);
	cairn_digest d, other;
	put_blobs(bs, &other, 1, 20501);
	assert_int_equal(put(bs, data, 5000, &d).code, CAIRN_OK);
	unsigned pack;
	int64_t off = packed_at(f->fs, &d, &pack);
	plant_packed(f, &d);
	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &d, &r).code, CAIRN_OK); /* a packed blob opens with no I/O */
	uint8_t got[5000];
	sync_wait s;
	sw_init(&s);
	blobstore_read(r, 0, got, sizeof got, on_read, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_NOT_FOUND);
	blobstore_close_read(r);
	char p[200];
	pack_path(f, pack, "data", p, sizeof p);
	assert_true(has_hole(p, off, 4 * KiB));
	assert_true(reported_missing(bs, &d));
	assert_int_equal(stats(f->fs).corrupt_blobs, 1);
	assert_int_equal(stats(f->fs).blobs, 1); /* the other blob in the pack stays */
	uint8_t *o = random_bytes(4 * KiB, 20501);
	assert_blob(bs, &other, o, 4 * KiB);
	assert_int_equal(put(bs, data, 5000, &d).code, CAIRN_OK);
	assert_blob(bs, &d, data, 5000);
	assert_index_ok(f->fs);
	free(o);
	free(data);
}

/* A read of part of a changed packed blob gives NOT_FOUND too. */
static void test_tamper_packed_part_not_served(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *data = random_bytes(5000, 20600);
	cairn_digest d;
	assert_int_equal(put(bs, data, 5000, &d).code, CAIRN_OK);
	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &d, &r).code, CAIRN_OK);
	uint8_t got[100];
	assert_int_equal(read_at(r, 1000, got, sizeof got), sizeof got); /* the whole is checked, the part copied */
	assert_memory_equal(got, data + 1000, sizeof got);
	plant_packed(f, &d);
	sync_wait s;
	sw_init(&s);
	blobstore_read(r, 1000, got, sizeof got, on_read, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_NOT_FOUND);
	blobstore_close_read(r);
	assert_dropped(f, &d, data, 1);
	free(data);
}

/* pin_path does not copy a changed packed blob out to a file. */
static void test_tamper_packed_pin_path_refused(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *data = random_bytes(5000, 20700);
	cairn_digest d;
	assert_int_equal(put(bs, data, 5000, &d).code, CAIRN_OK);
	plant_packed(f, &d);
	char got[256];
	assert_int_equal(cachefs_pin_path(f->fs, &d, got, sizeof got).code, CAIRN_NOT_FOUND);
	assert_dropped(f, &d, data, 1); /* no file was made */
	assert_int_equal(cachefs_pin_path(f->fs, &d, got, sizeof got).code, CAIRN_OK);
	assert_file(got, data, 5000);
	cachefs_unpin(f->fs, &d);
	free(data);
}

/* A blob file changed while cachefs is closed is dropped by the start-up scan. */
static void test_tamper_while_closed_file(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB;
	uint8_t *data = random_bytes(size, 20800);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	cachefs_close(f->fs);
	f->fs = NULL;
	char path[256];
	blob_path(f, &d, path, sizeof path);
	plant(f, path, false);
	open_default(f);
	assert_false(cachefs_contains(f->fs, &d, false));
	assert_dropped(f, &d, data, 1);
	free(data);
}

/* A packed blob changed while cachefs is closed is not served after the restart. */
static void test_tamper_while_closed_packed(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	uint8_t *data = random_bytes(5000, 20900);
	cairn_digest d;
	assert_int_equal(put(bs, data, 5000, &d).code, CAIRN_OK);
	plant_packed(f, &d);
	bs = cachefs_blobstore(open_default(f));
	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &d, &r).code, CAIRN_OK);
	uint8_t got[5000];
	sync_wait s;
	sw_init(&s);
	blobstore_read(r, 0, got, sizeof got, on_read, &s);
	sw_wait(&s);
	assert_int_equal(s.st.code, CAIRN_NOT_FOUND);
	blobstore_close_read(r);
	assert_dropped(f, &d, data, 1);
	free(data);
}

/* No false alarms: reads, pins, hard links, copies out of packs and eviction of other blobs leave the
 * seals whole, before and after a restart. */
static void test_untouched_blobs_stay(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	enum { N = 6 };
	const size_t sizes[N] = {100 * KiB, 3000, 2 * MiB, 5000, 70 * KiB, 4 * KiB};
	cairn_digest d[N], extra[4];
	uint8_t *data[N];
	for (int k = 0; k < N; k++) {
		data[k] = random_bytes(sizes[k], 21000 + (uint64_t)k);
		assert_int_equal(put(bs, data[k], sizes[k], &d[k]).code, CAIRN_OK);
	}
	put_sized(bs, extra, 4, 21100, 80 * KiB);
	for (int k = 0; k < 4; k++)
		seal_file(f, &extra[k], time(NULL) - 3600); /* the oldest after a restart: eviction takes them */
	for (int round = 0; round < 2; round++) {
		for (int k = 0; k < N; k++) {
			assert_blob(bs, &d[k], data[k], sizes[k]);
			char got[256], link_path[160];
			assert_int_equal(cachefs_pin_path(f->fs, &d[k], got, sizeof got).code, CAIRN_OK);
			snprintf(link_path, sizeof link_path, "%s/exec-%d-%d", f->root, round, k);
			assert_int_equal(link(got, link_path), 0); /* as the executor links an input */
			cachefs_unpin(f->fs, &d[k]);
		}
		/* the blobs above take 2,283,328 bytes, at or below 95% of max_size: the extra ones go */
		bs = cachefs_blobstore(reopen(f, 2410000, 0, 0, false));
		cachefs_evict_now(f->fs);
	}
	for (int k = 0; k < 4; k++)
		assert_false(cachefs_contains(f->fs, &extra[k], false));
	for (int k = 0; k < N; k++) {
		assert_blob(bs, &d[k], data[k], sizes[k]);
		free(data[k]);
	}
	assert_int_equal(stats(f->fs).corrupt_blobs, 0);
	assert_int_equal(stats(f->fs).blobs, N);
	assert_index_ok(f->fs);
}

/* Blob files are 0644 and owned by cachefs's user (no one else may write them), however they were
 * made: an upload, a copy out of a pack. */
static void test_blob_files_read_only(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	mode_t old = umask(0077); /* the mode is not left to the umask: actions of other users read inputs */
	uint8_t *a = random_bytes(100 * KiB, 21200), *b = random_bytes(5000, 21201);
	cairn_digest da, db;
	assert_int_equal(put(bs, a, 100 * KiB, &da).code, CAIRN_OK);
	assert_int_equal(put(bs, b, 5000, &db).code, CAIRN_OK);
	char got[256];
	assert_int_equal(cachefs_pin_path(f->fs, &db, got, sizeof got).code, CAIRN_OK);
	cachefs_unpin(f->fs, &db);
	umask(old);
	const cairn_digest *ds[2] = {&da, &db};
	for (int k = 0; k < 2; k++) {
		char path[256];
		struct stat sb;
		blob_path(f, ds[k], path, sizeof path);
		assert_int_equal(stat(path, &sb), 0);
		assert_int_equal(sb.st_mode & 07777, 0644);
		assert_int_equal(sb.st_uid, geteuid());
	}
	free(a);
	free(b);
}

/* A data directory from before seals: its files are sealed at the first start, not dropped; a change
 * after that is noticed. */
static void test_unsealed_directory_adopted(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	const size_t size = 100 * KiB;
	uint8_t *data = random_bytes(size, 21300);
	cairn_digest d;
	assert_int_equal(put(bs, data, size, &d).code, CAIRN_OK);
	cachefs_close(f->fs);
	f->fs = NULL;
	char path[256], marker[160];
	blob_path(f, &d, path, sizeof path);
	snprintf(marker, sizeof marker, "%s/SEALED", f->dir);
	assert_int_equal(unlink(marker), 0);
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = time(NULL) - 60, .tv_nsec = 0}};
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0); /* what an older cairn left */
	bs = cachefs_blobstore(open_default(f));
	assert_int_equal(access(marker, F_OK), 0);
	assert_blob(bs, &d, data, size);
	bs = cachefs_blobstore(open_default(f));
	assert_blob(bs, &d, data, size);
	plant(f, path, false);
	assert_dropped(f, &d, data, 1);
	free(data);
}

/* Where the file system cannot keep seals, a blob file is hashed whole: a change that leaves its time
 * as it was is still noticed, by open and by pin_path. */
static void test_no_seals_files_hashed(void **state)
{
	fixture *f = *state;
	blobstore *bs = cachefs_blobstore(open_default(f));
	f->fs->sealing = false; /* before any write: as if the probe had failed */
	const size_t size = 600 * KiB; /* more than one hashing buffer */
	uint8_t *a = random_bytes(size, 21400), *b = random_bytes(size, 21401);
	cairn_digest da, db;
	assert_int_equal(put(bs, a, size, &da).code, CAIRN_OK);
	assert_int_equal(put(bs, b, size, &db).code, CAIRN_OK);
	const cairn_digest *ds[2] = {&da, &db};
	for (int k = 0; k < 2; k++) {
		char path[256];
		struct stat sb;
		blob_path(f, ds[k], path, sizeof path);
		assert_int_equal(stat(path, &sb), 0);
		plant(f, path, false);
		struct timespec ts[2] = {sb.st_atim, sb.st_mtim};
		assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	}
	char got[256];
	blobstore_reader *r;
	assert_int_equal(open_reader(bs, &da, &r).code, CAIRN_NOT_FOUND);
	assert_int_equal(cachefs_pin_path(f->fs, &db, got, sizeof got).code, CAIRN_NOT_FOUND);
	assert_true(reported_missing(bs, &da));
	assert_true(reported_missing(bs, &db));
	assert_int_equal(stats(f->fs).corrupt_blobs, 2);
	assert_int_equal(put(bs, a, size, &da).code, CAIRN_OK);
	assert_blob(bs, &da, a, size);
	assert_int_equal(put(bs, b, size, &db).code, CAIRN_OK);
	assert_int_equal(cachefs_pin_path(f->fs, &db, got, sizeof got).code, CAIRN_OK);
	assert_file(got, b, size);
	cachefs_unpin(f->fs, &db);
	assert_index_ok(f->fs);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_size),
		cmocka_unit_test_setup_teardown(test_put_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_read_fsync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_read_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_read_direct_fsync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_commits_leave_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_releases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_same_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_writers_small_ring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_blob, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lru_eviction_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lru_eviction_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_walks_the_blobs_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pinned_never_evicted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_min_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_min_age_expires, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hard_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stalled_upload_holds_what_it_sent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blob_over_hard_limit_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uploads_share_the_headroom, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_over_limit_fails_its_upload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_waits_for_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_rebuilds_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_orders_by_mtime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leftover_tmp_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_cas_files_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanished_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_bad_digest_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_eviction_frees_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_restart_keeps_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_journal_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pack_and_file_same_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_path_materialises, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_pin_path_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_path_in_commit_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_small_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_same_size_not_served, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_other_size_not_served, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_file_replaced_not_served, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_under_open_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_pin_path_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_path_vanished_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_packed_not_served, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_packed_part_not_served, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_packed_pin_path_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_while_closed_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_while_closed_packed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untouched_blobs_stay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blob_files_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsealed_directory_adopted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_seals_files_hashed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
