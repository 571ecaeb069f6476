/* objstore against a real S3 server (radosgw from tests/s3_fixture.sh), driven by it_objstore.sh,
 * or against the GCS JSON API of tests/cloud_fixture.py, driven by it_gcs_json.sh.
 *
 *   objstore_check CHECK [TMPDIR]
 *
 * The S3 server comes from S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET, S3_REGION; when
 * GCS_ENDPOINT is set, the store is gs://$GCS_BUCKET/check there instead, with the OAuth credentials
 * the environment names (GOOGLE_APPLICATION_CREDENTIALS). Each CHECK asserts what a user of the
 * store relies on and exits 1 with the reason on the first failure:
 *   roundtrip    put/get/head/delete of buffers and files, odd keys, NOT_FOUND, size limits (asked for
 *                as ranges: a refused download moved the limit plus one byte)
 *   list         more than 1000 keys under a prefix come back exactly once, over several pages
 *   auth         a wrong secret is refused: PERMISSION_DENIED naming SignatureDoesNotMatch
 *   corrupt      bytes that do not match their SHA-256 are refused (DATA_LOSS), nothing is stored; on
 *                GCS, also bytes that the fixture corrupts on the way (the script asks it to): GCS
 *                refuses them by their md5Hash, DATA_LOSS again
 *   multipart    a 150 MiB file in 16 MiB parts, downloaded and verified by SHA-256
 *   stream       streamed uploads: parts sent at once and out of order (one twice), completed and
 *                verified; one aborted after its parts were stored (the script then checks that no
 *                multipart upload is left open)
 *   concurrent   200 puts at once, then 200 gets; 8 racing puts to one key leave one whole value
 *   unavailable  a port where nothing listens: UNAVAILABLE after the configured retries
 *   retry-put    a put made while radosgw is down succeeds once it is back (the script restarts it)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "objstore/objstore.h"

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
			fprintf(stderr, __VA_ARGS__);                                     \
			fputc('\n', stderr);                                              \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

static void check_code(cairn_status st, int want, int line)
{
	if (st.code != want) {
		fprintf(stderr, "FAIL %s:%d: expected %s, got %s\n", __FILE__, line, cairn_code_name(want),
		        cairn_status_str(&st));
		exit(1);
	}
}
#define CHECK_CODE(st, want) check_code((st), (want), __LINE__)

static const char *env(const char *name)
{
	const char *v = getenv(name);
	CHECK(v && *v, "%s is not set (run from it_objstore.sh)", name);
	return v;
}

static char url[256];

/* The GCS JSON API instead of S3. */
static bool gcs(void) { return getenv("GCS_ENDPOINT") != NULL; }

static objstore *open_store_with(objstore_config cfg)
{
	if (gcs()) {
		snprintf(url, sizeof url, "gs://%s/check", env("GCS_BUCKET"));
		cfg.url = url;
		if (!cfg.endpoint)
			cfg.endpoint = env("GCS_ENDPOINT");
		objstore *s;
		cairn_status st = objstore_open(&cfg, &s);
		CHECK(cairn_is_ok(&st), "objstore_open: %s", cairn_status_str(&st));
		return s;
	}
	snprintf(url, sizeof url, "s3://%s/check", env("S3_BUCKET"));
	cfg.url = url;
	if (!cfg.endpoint)
		cfg.endpoint = env("S3_ENDPOINT");
	cfg.region = getenv("S3_REGION");
	cfg.access_key = env("S3_ACCESS_KEY");
	if (!cfg.secret_key)
		cfg.secret_key = env("S3_SECRET_KEY");
	cfg.path_style = true;
	objstore *s;
	cairn_status st = objstore_open(&cfg, &s);
	CHECK(cairn_is_ok(&st), "objstore_open: %s", cairn_status_str(&st));
	return s;
}

static objstore *open_store(void) { return open_store_with((objstore_config){0}); }

/* ---- waiting for many callbacks ------------------------------------------------------------------ */

typedef struct batch {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pending, failed;
	cairn_status first_error;
} batch;

static void batch_init(batch *b, int n)
{
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->pending = n;
	b->failed = 0;
}

static void batch_done(void *arg, cairn_status st)
{
	batch *b = arg;
	pthread_mutex_lock(&b->mu);
	if (!cairn_is_ok(&st) && b->failed++ == 0)
		b->first_error = st;
	if (--b->pending == 0)
		pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static void batch_wait(batch *b, const char *what)
{
	pthread_mutex_lock(&b->mu);
	while (b->pending > 0)
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
	CHECK(b->failed == 0, "%d of the %s failed, first: %s", b->failed, what, cairn_status_str(&b->first_error));
}

/* ---- synchronous helpers over the asynchronous calls ------------------------------------------------ */

typedef struct fetched {
	batch b;
	cairn_status st;
	uint8_t *data;
	size_t len;
} fetched;

static void got_data(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	fetched *g = arg;
	g->st = st;
	g->data = data;
	g->len = len;
	batch_done(&g->b, cairn_ok());
}

static cairn_status get_mem(objstore *s, const char *key, int64_t max, uint8_t **data, size_t *len)
{
	fetched g = {0};
	batch_init(&g.b, 1);
	objstore_get(s, key, max, got_data, &g);
	batch_wait(&g.b, "get");
	*data = g.data;
	*len = g.len;
	return g.st;
}

static cairn_status put_mem(objstore *s, const char *key, const void *data, size_t len)
{
	fetched g = {0};
	batch_init(&g.b, 1);
	objstore_put(s, key, data, len, batch_done, &g.b);
	pthread_mutex_lock(&g.b.mu);
	while (g.b.pending > 0)
		pthread_cond_wait(&g.b.cv, &g.b.mu);
	pthread_mutex_unlock(&g.b.mu);
	return g.b.failed ? g.b.first_error : cairn_ok();
}

static cairn_status delete_key(objstore *s, const char *key)
{
	batch b;
	batch_init(&b, 1);
	objstore_delete(s, key, batch_done, &b);
	pthread_mutex_lock(&b.mu);
	while (b.pending > 0)
		pthread_cond_wait(&b.cv, &b.mu);
	pthread_mutex_unlock(&b.mu);
	return b.failed ? b.first_error : cairn_ok();
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	CHECK(f && fwrite(data, 1, len, f) == len && fclose(f) == 0, "writing %s: %s", path, strerror(errno));
}

/* The whole file, malloc'd. */
static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	CHECK(f, "opening %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc((size_t)n + 1);
	CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "reading %s", path);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* ---- checks ------------------------------------------------------------------------------------- */

static void check_roundtrip(const char *tmp)
{
	objstore *s = open_store();
	/* Keys with characters that need percent-encoding (and that a signer could get wrong). */
	const char *keys[] = {"rt/plain",   "rt/with space+plus", "rt/ünï/çödé",
	                      "rt/a=b&c?d", "rt/./dot//double",   "rt/~tilde*star"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		char body[64];
		int n = snprintf(body, sizeof body, "body of key %zu", i);
		cairn_status st = put_mem(s, keys[i], body, (size_t)n);
		CHECK_CODE(st, CAIRN_OK);
		int64_t size = -1;
		st = objstore_head_sync(s, keys[i], &size);
		CHECK_CODE(st, CAIRN_OK);
		CHECK(size == n, "HEAD %s: size %lld, expected %d", keys[i], (long long)size, n);
		uint8_t *data;
		size_t len;
		st = get_mem(s, keys[i], 1 << 20, &data, &len);
		CHECK_CODE(st, CAIRN_OK);
		CHECK(len == (size_t)n && memcmp(data, body, len) == 0, "GET %s returned other bytes", keys[i]);
		free(data);
		/* The limit on a buffered GET holds. */
		st = get_mem(s, keys[i], 4, &data, &len);
		CHECK_CODE(st, CAIRN_RESOURCE_EXHAUSTED);
		CHECK(data == NULL, "a refused GET still handed a buffer");
	}
	/* A file with its known SHA-256, downloaded through path.part. */
	char src[512], dst[512];
	snprintf(src, sizeof src, "%s/rt-src", tmp);
	snprintf(dst, sizeof dst, "%s/rt-dst", tmp);
	uint8_t blob[100000];
	for (size_t i = 0; i < sizeof blob; i++)
		blob[i] = (uint8_t)(i * 31 + 7);
	write_file(src, blob, sizeof blob);
	cairn_digest d;
	cairn_digest_of(blob, sizeof blob, &d);
	cairn_status st = objstore_put_file_sync(s, "rt/file", src, d.hash);
	CHECK_CODE(st, CAIRN_OK);
	uint8_t sha[CAIRN_HASH_LEN];
	st = objstore_get_file_sync(s, "rt/file", dst, sizeof blob, sha);
	CHECK_CODE(st, CAIRN_OK);
	CHECK(memcmp(sha, d.hash, CAIRN_HASH_LEN) == 0, "the SHA-256 hashed during the download is not the file's");
	size_t len;
	uint8_t *back = read_file(dst, &len);
	CHECK(len == sizeof blob && memcmp(back, blob, len) == 0, "downloaded file differs");
	free(back);
	/* A file longer than the caller's limit is refused after the limit and one byte, asked for as
	 * a range, and leaves nothing. */
	objstore_stats before, after;
	objstore_get_stats(s, &before);
	snprintf(dst, sizeof dst, "%s/rt-long", tmp);
	st = objstore_get_file_sync(s, "rt/file", dst, 1000, NULL);
	CHECK_CODE(st, CAIRN_OUT_OF_RANGE);
	CHECK(access(dst, F_OK) != 0 && errno == ENOENT, "a refused download left %s", dst);
	objstore_get_stats(s, &after);
	CHECK(after.bytes_down - before.bytes_down == 1001, "a download limited to 1000 bytes moved %llu",
	      (unsigned long long)(after.bytes_down - before.bytes_down));
	/* An empty object. */
	st = put_mem(s, "rt/empty", "", 0);
	CHECK_CODE(st, CAIRN_OK);
	uint8_t *data;
	st = get_mem(s, "rt/empty", 10, &data, &len);
	CHECK_CODE(st, CAIRN_OK);
	CHECK(len == 0 && data, "empty object: len %zu", len);
	free(data);
	/* Deleted means gone; deleting again is fine; a missing key is NOT_FOUND everywhere. */
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		CHECK_CODE(delete_key(s, keys[i]), CAIRN_OK);
	CHECK_CODE(delete_key(s, "rt/file"), CAIRN_OK);
	CHECK_CODE(delete_key(s, "rt/file"), CAIRN_OK);
	int64_t size;
	st = objstore_head_sync(s, "rt/file", &size);
	CHECK_CODE(st, CAIRN_NOT_FOUND);
	st = get_mem(s, "rt/plain", 100, &data, &len);
	CHECK_CODE(st, CAIRN_NOT_FOUND);
	CHECK(strstr(st.msg, gcs() ? "404 notFound" : "NoSuchKey"), "message without the store's code: %s", st.msg);
	snprintf(dst, sizeof dst, "%s/rt-missing", tmp);
	st = objstore_get_file_sync(s, "rt/file", dst, 100, NULL);
	CHECK_CODE(st, CAIRN_NOT_FOUND);
	CHECK(access(dst, F_OK) != 0 && errno == ENOENT, "a failed download left %s", dst);
	/* An empty key would name the bucket itself. */
	st = put_mem(s, "", "x", 1);
	CHECK_CODE(st, CAIRN_INVALID_ARGUMENT);
	objstore_stats stats;
	objstore_get_stats(s, &stats);
	CHECK(stats.puts >= 8 && stats.gets >= 10 && stats.bytes_up >= sizeof blob && stats.bytes_down >= sizeof blob,
	      "stats: puts %llu gets %llu up %llu down %llu", (unsigned long long)stats.puts,
	      (unsigned long long)stats.gets, (unsigned long long)stats.bytes_up, (unsigned long long)stats.bytes_down);
	objstore_close(s);
}

typedef struct listing {
	batch b;
	int pages;
	size_t nkeys, cap;
	char **keys;
	cairn_status st;
} listing;

static void got_page(void *arg, cairn_status st, const char *const *keys, size_t n, bool done)
{
	listing *l = arg;
	l->st = st;
	if (cairn_is_ok(&st)) {
		l->pages++;
		for (size_t i = 0; i < n; i++) {
			if (l->nkeys == l->cap)
				l->keys = realloc(l->keys, (l->cap = l->cap ? 2 * l->cap : 256) * sizeof *l->keys);
			l->keys[l->nkeys++] = strdup(keys[i]);
		}
	}
	if (done)
		batch_done(&l->b, cairn_ok());
}

static void list_all(objstore *s, const char *prefix, listing *l)
{
	memset(l, 0, sizeof *l);
	batch_init(&l->b, 1);
	objstore_list(s, prefix, got_page, l);
	batch_wait(&l->b, "list");
	CHECK_CODE(l->st, CAIRN_OK);
}

static void free_listing(listing *l)
{
	for (size_t i = 0; i < l->nkeys; i++)
		free(l->keys[i]);
	free(l->keys);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void check_list(void)
{
	enum { N = 1234 };
	objstore *s = open_store_with((objstore_config){.max_concurrency = 32});
	batch b;
	batch_init(&b, N);
	for (int i = 0; i < N; i++) {
		char key[64], body[16];
		snprintf(key, sizeof key, "list/k%05d", i);
		int n = snprintf(body, sizeof body, "%d", i);
		objstore_put(s, key, body, (size_t)n, batch_done, &b);
	}
	batch_wait(&b, "puts");
	/* A neighbour that shares the first letters but not the prefix "list/". */
	CHECK_CODE(put_mem(s, "listing-not-under-the-prefix", "x", 1), CAIRN_OK);
	listing l;
	list_all(s, "list/", &l);
	CHECK(l.nkeys == N, "listed %zu keys, expected %d", l.nkeys, N);
	CHECK(l.pages >= 2, "%d pages for %d keys: pagination was not exercised", l.pages, N);
	int pages = l.pages;
	qsort(l.keys, l.nkeys, sizeof *l.keys, cmp_str);
	for (int i = 0; i < N; i++) {
		char key[64];
		snprintf(key, sizeof key, "list/k%05d", i);
		CHECK(strcmp(l.keys[i], key) == 0, "key %d is '%s', expected '%s' (missing or listed twice)", i, l.keys[i], key);
	}
	free_listing(&l);
	list_all(s, "list/k001", &l);
	CHECK(l.nkeys == 100, "prefix list/k001: %zu keys, expected 100", l.nkeys);
	free_listing(&l);
	list_all(s, "nothing-here/", &l);
	CHECK(l.nkeys == 0 && l.pages == 1, "an empty listing: %zu keys in %d pages", l.nkeys, l.pages);
	free_listing(&l);
	printf("list: %d keys in %d pages\n", N, pages);
	objstore_close(s);
}

static void check_auth(void)
{
	objstore *s = open_store_with((objstore_config){.secret_key = "not-the-secret"});
	cairn_status st = put_mem(s, "auth/x", "data", 4);
	CHECK_CODE(st, CAIRN_PERMISSION_DENIED);
	CHECK(strstr(st.msg, "403 SignatureDoesNotMatch"), "message: %s", st.msg);
	uint8_t *data;
	size_t len;
	st = get_mem(s, "auth/x", 100, &data, &len);
	CHECK_CODE(st, CAIRN_PERMISSION_DENIED);
	objstore_stats stats;
	objstore_get_stats(s, &stats);
	CHECK(stats.retries == 0, "a 403 was retried %llu times", (unsigned long long)stats.retries);
	objstore_close(s);
	printf("auth: %s\n", st.msg);
}

static void check_corrupt(const char *tmp)
{
	/* Small parts, so that the multipart path is checked as well as the single PUT. */
	objstore *s = open_store_with((objstore_config){.multipart_threshold = 6 << 20, .part_size = 5 << 20});
	char path[512];
	snprintf(path, sizeof path, "%s/corrupt", tmp);
	size_t sizes[] = {1000, 12 << 20};
	for (size_t i = 0; i < 2; i++) {
		uint8_t *buf = malloc(sizes[i]);
		for (size_t j = 0; j < sizes[i]; j++)
			buf[j] = (uint8_t)(j ^ (j >> 8));
		write_file(path, buf, sizes[i]);
		cairn_digest d;
		cairn_digest_of(buf, sizes[i], &d);
		free(buf);
		d.hash[7] ^= 1; /* what the caller believes the bytes are no longer matches them */
		cairn_status st = objstore_put_file_sync(s, "corrupt/x", path, d.hash);
		CHECK_CODE(st, CAIRN_DATA_LOSS);
		/* S3 finds out itself; the GCS JSON API takes an MD5, so objstore checks the SHA-256 first. */
		if (i == 0)
			CHECK(strstr(st.msg, gcs() ? "do not match the given SHA-256" : "XAmzContentSHA256Mismatch"), "message: %s",
			      st.msg);
		printf("corrupt (%zu bytes): %s\n", sizes[i], st.msg);
		int64_t size;
		st = objstore_head_sync(s, "corrupt/x", &size);
		CHECK_CODE(st, CAIRN_NOT_FOUND);
		if (!gcs())
			continue;
		d.hash[7] ^= 1;
		st = objstore_put_file_sync(s, "corrupt/x", path, d.hash);
		CHECK_CODE(st, CAIRN_DATA_LOSS);
		CHECK(strstr(st.msg, "doesn't match calculated MD5 hash"), "message: %s", st.msg);
		printf("corrupted on the way (%zu bytes): %s\n", sizes[i], st.msg);
		st = objstore_head_sync(s, "corrupt/x", &size);
		CHECK_CODE(st, CAIRN_NOT_FOUND);
	}
	objstore_close(s);
}

static double seconds_since(int64_t t0) { return (double)(cairn_now_ns() - t0) / 1e9; }

static void hash_file(const char *path, uint8_t out[CAIRN_HASH_LEN])
{
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0, "opening %s: %s", path, strerror(errno));
	cairn_hasher *h = cairn_hasher_new();
	static uint8_t buf[1 << 20];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		cairn_hasher_update(h, buf, (size_t)n);
	CHECK(n == 0, "reading %s", path);
	close(fd);
	cairn_hasher_final(h, out);
	cairn_hasher_free(h);
}

static void check_multipart(const char *tmp)
{
	const size_t size = (size_t)150 << 20;
	objstore *s = open_store_with((objstore_config){.part_size = 16 << 20});
	char src[512], dst[512];
	snprintf(src, sizeof src, "%s/mp-src", tmp);
	snprintf(dst, sizeof dst, "%s/mp-dst", tmp);
	uint64_t *buf = malloc(size), x = 88172645463325252ull;
	for (size_t i = 0; i < size / 8; i++) { /* xorshift: incompressible, and no two parts alike */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = x;
	}
	write_file(src, buf, size);
	cairn_digest d;
	cairn_digest_of(buf, size, &d);
	free(buf);
	int64_t t0 = cairn_now_ns();
	cairn_status st = objstore_put_file_sync(s, "mp/big", src, d.hash);
	CHECK_CODE(st, CAIRN_OK);
	double up = seconds_since(t0);
	int64_t got = -1;
	st = objstore_head_sync(s, "mp/big", &got);
	CHECK_CODE(st, CAIRN_OK);
	CHECK(got == (int64_t)size, "HEAD: %lld bytes, expected %zu", (long long)got, size);
	t0 = cairn_now_ns();
	uint8_t sha[CAIRN_HASH_LEN];
	st = objstore_get_file_sync(s, "mp/big", dst, (int64_t)size, sha);
	CHECK_CODE(st, CAIRN_OK);
	double down = seconds_since(t0);
	uint8_t back[CAIRN_HASH_LEN];
	hash_file(dst, back);
	CHECK(memcmp(back, d.hash, CAIRN_HASH_LEN) == 0, "the download's SHA-256 differs from the upload's");
	CHECK(memcmp(sha, d.hash, CAIRN_HASH_LEN) == 0, "the SHA-256 hashed during the download is not the file's");
	/* The same file without a known hash: objstore hashes the parts itself. */
	st = objstore_put_file_sync(s, "mp/big2", src, NULL);
	CHECK_CODE(st, CAIRN_OK);
	st = objstore_head_sync(s, "mp/big2", &got);
	CHECK(cairn_is_ok(&st) && got == (int64_t)size, "mp/big2: %s size %lld", cairn_status_str(&st), (long long)got);
	CHECK_CODE(delete_key(s, "mp/big"), CAIRN_OK);
	CHECK_CODE(delete_key(s, "mp/big2"), CAIRN_OK);
	objstore_close(s);
	/* A buffer above the threshold goes in parts too (the last one short). */
	s = open_store_with((objstore_config){.multipart_threshold = 6 << 20, .part_size = 5 << 20});
	size_t blen = (size_t)23 << 20;
	uint8_t *mem = malloc(blen);
	for (size_t i = 0; i < blen; i++)
		mem[i] = (uint8_t)(i * 7 + (i >> 20));
	CHECK_CODE(put_mem(s, "mp/buffer", mem, blen), CAIRN_OK);
	uint8_t *data;
	size_t len;
	CHECK_CODE(get_mem(s, "mp/buffer", (int64_t)blen, &data, &len), CAIRN_OK);
	CHECK(len == blen && memcmp(data, mem, blen) == 0, "mp/buffer came back different");
	free(data);
	free(mem);
	CHECK_CODE(delete_key(s, "mp/buffer"), CAIRN_OK);
	printf("multipart: 150 MiB up in %.2f s (%.0f MB/s), down in %.2f s (%.0f MB/s), SHA-256 verified\n", up,
	       (double)size / up / 1e6, down, (double)size / down / 1e6);
	unlink(src);
	unlink(dst);
	objstore_close(s);
}

typedef struct begun {
	batch b;
	cairn_status st;
	objstore_stream *up;
} begun;

static void got_stream(void *arg, cairn_status st, objstore_stream *up)
{
	begun *g = arg;
	g->st = st;
	g->up = up;
	batch_done(&g->b, cairn_ok());
}

static objstore_stream *stream_begin(objstore *s, const char *key)
{
	begun g = {0};
	batch_init(&g.b, 1);
	objstore_stream_begin(s, key, -1, NULL, got_stream, &g);
	batch_wait(&g.b, "stream begin");
	CHECK_CODE(g.st, CAIRN_OK);
	return g.up;
}

static void stream_end(objstore_stream *up, int nparts, bool complete)
{
	batch b;
	batch_init(&b, 1);
	if (complete)
		objstore_stream_complete(up, nparts, batch_done, &b);
	else
		objstore_stream_abort(up, batch_done, &b);
	batch_wait(&b, complete ? "stream completion" : "stream abort");
}

static void check_stream(void)
{
	enum { PART = 5 << 20, PARTS = 4 };
	const size_t size = (size_t)(PARTS - 1) * PART + 12345;
	objstore *s = open_store_with((objstore_config){.part_size = PART, .max_concurrency = 8});
	CHECK(objstore_stream_part_size(s, (int64_t)size) == PART, "part size %lld",
	      (long long)objstore_stream_part_size(s, (int64_t)size));
	uint8_t *buf = malloc(size);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(i * 13 + (i >> 18));
	objstore_stream *up = stream_begin(s, "stream/big");
	/* All parts at once, the last first, part 2 twice: each goes on its own transfer thread. */
	const int order[] = {4, 2, 1, 3, 2};
	batch b;
	batch_init(&b, 5);
	for (int i = 0; i < 5; i++) {
		size_t off = (size_t)(order[i] - 1) * PART, len = order[i] == PARTS ? size - off : PART;
		objstore_stream_part(up, order[i], buf + off, len, batch_done, &b);
	}
	batch_wait(&b, "stream parts");
	int64_t got = -1;
	CHECK_CODE(objstore_head_sync(s, "stream/big", &got), CAIRN_NOT_FOUND); /* nothing before completion */
	stream_end(up, PARTS, true);
	uint8_t *data;
	size_t len;
	CHECK_CODE(get_mem(s, "stream/big", (int64_t)size, &data, &len), CAIRN_OK);
	CHECK(len == size && memcmp(data, buf, size) == 0, "stream/big came back different");
	free(data);
	CHECK_CODE(delete_key(s, "stream/big"), CAIRN_OK);
	/* Aborted after two parts were stored: no object; the script checks that no upload is open. */
	up = stream_begin(s, "stream/aborted");
	batch_init(&b, 2);
	objstore_stream_part(up, 1, buf, PART, batch_done, &b);
	objstore_stream_part(up, 2, buf + PART, PART, batch_done, &b);
	batch_wait(&b, "stream parts");
	stream_end(up, 0, false);
	CHECK_CODE(objstore_head_sync(s, "stream/aborted", &got), CAIRN_NOT_FOUND);
	free(buf);
	printf("stream: %zu bytes in %d parts sent out of order, completed and verified; one upload aborted\n", size,
	       PARTS);
	objstore_close(s);
}

static void check_concurrent(void)
{
	enum { N = 200, RACERS = 8, RACE_LEN = 1 << 20 };
	objstore *s = open_store_with((objstore_config){.max_concurrency = 32});
	static char bodies[N][32];
	batch b;
	batch_init(&b, N);
	int64_t t0 = cairn_now_ns();
	for (int i = 0; i < N; i++) {
		char key[32];
		snprintf(key, sizeof key, "conc/%d", i);
		snprintf(bodies[i], sizeof bodies[i], "concurrent body %d", i);
		objstore_put(s, key, bodies[i], strlen(bodies[i]), batch_done, &b);
	}
	batch_wait(&b, "concurrent puts");
	double put_s = seconds_since(t0);
	static fetched gets[N];
	for (int i = 0; i < N; i++) {
		char key[32];
		snprintf(key, sizeof key, "conc/%d", i);
		batch_init(&gets[i].b, 1);
		objstore_get(s, key, 1024, got_data, &gets[i]);
	}
	for (int i = 0; i < N; i++) {
		batch_wait(&gets[i].b, "get");
		CHECK_CODE(gets[i].st, CAIRN_OK);
		CHECK(gets[i].len == strlen(bodies[i]) && memcmp(gets[i].data, bodies[i], gets[i].len) == 0,
		      "conc/%d came back different", i);
		free(gets[i].data);
	}
	/* Racing writers of one key: the key ends up holding one writer's whole value. */
	uint8_t *race = malloc((size_t)RACERS * RACE_LEN);
	for (int r = 0; r < RACERS; r++)
		memset(race + (size_t)r * RACE_LEN, 'a' + r, RACE_LEN);
	batch_init(&b, RACERS);
	for (int r = 0; r < RACERS; r++)
		objstore_put(s, "conc/race", race + (size_t)r * RACE_LEN, RACE_LEN, batch_done, &b);
	batch_wait(&b, "racing puts");
	uint8_t *data;
	size_t len;
	CHECK_CODE(get_mem(s, "conc/race", 2 * RACE_LEN, &data, &len), CAIRN_OK);
	CHECK(len == RACE_LEN && data[0] >= 'a' && data[0] < 'a' + RACERS, "race: %zu bytes", len);
	CHECK(memcmp(data, race + (size_t)(data[0] - 'a') * RACE_LEN, RACE_LEN) == 0, "race: a mixed value");
	free(data);
	free(race);
	printf("concurrent: %d puts in %.2f s (%.0f/s), %d racing puts left one whole value\n", N, put_s, N / put_s,
	       RACERS);
	objstore_close(s);
}

static int unused_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	          getsockname(fd, (struct sockaddr *)&a, &alen) == 0,
	      "binding a port: %s", strerror(errno));
	close(fd); /* nothing listens there now */
	return ntohs(a.sin_port);
}

static void check_unavailable(void)
{
	char endpoint[64];
	snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", unused_port());
	objstore *s = open_store_with((objstore_config){.endpoint = endpoint, .max_retries = 3});
	int64_t t0 = cairn_now_ns();
	cairn_status st = put_mem(s, "down/x", "x", 1);
	double took = seconds_since(t0);
	CHECK_CODE(st, CAIRN_UNAVAILABLE);
	CHECK(strstr(st.msg, "after 4 attempts"), "message: %s", st.msg);
	objstore_stats stats;
	objstore_get_stats(s, &stats);
	CHECK(stats.retries == 3 && stats.failures == 1, "retries %llu failures %llu", (unsigned long long)stats.retries,
	      (unsigned long long)stats.failures);
	/* Backoff: 3 waits of at least 50, 100 and 200 ms, and at most twice that. */
	CHECK(took >= 0.35 && took < 5, "took %.2f s", took);
	printf("unavailable: %s (%.2f s)\n", st.msg, took);
	objstore_close(s);
}

static void check_retry_put(void)
{
	/* Many retries: backoff then spans well over the time radosgw takes to start again. */
	objstore *s = open_store_with((objstore_config){.max_retries = 14});
	cairn_status st = put_mem(s, "retry/x", "survived", 8);
	CHECK_CODE(st, CAIRN_OK);
	objstore_stats stats;
	objstore_get_stats(s, &stats);
	CHECK(stats.retries >= 1, "the put was never retried: was radosgw down?");
	uint8_t *data;
	size_t len;
	CHECK_CODE(get_mem(s, "retry/x", 100, &data, &len), CAIRN_OK);
	CHECK(len == 8 && memcmp(data, "survived", 8) == 0, "retry/x came back different");
	free(data);
	printf("retry-put: succeeded after %llu retries\n", (unsigned long long)stats.retries);
	objstore_close(s);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: objstore_check roundtrip|list|auth|corrupt|multipart|stream|concurrent|"
		                "unavailable|retry-put [TMPDIR]\n");
		return 2;
	}
	const char *c = argv[1], *tmp = argc > 2 ? argv[2] : "/tmp";
	/* Retries are expected in most checks: their warnings stay out, except where the script waits
	 * for the first one. */
	cairn_log_set_level(strcmp(c, "retry-put") == 0   ? CAIRN_LOG_WARN
	                    : strcmp(c, "multipart") == 0 ? CAIRN_LOG_DEBUG /* the part counts, for the script */
	                                                  : CAIRN_LOG_ERROR);
	if (strcmp(c, "roundtrip") == 0)
		check_roundtrip(tmp);
	else if (strcmp(c, "list") == 0)
		check_list();
	else if (strcmp(c, "auth") == 0)
		check_auth();
	else if (strcmp(c, "corrupt") == 0)
		check_corrupt(tmp);
	else if (strcmp(c, "multipart") == 0)
		check_multipart(tmp);
	else if (strcmp(c, "stream") == 0)
		check_stream();
	else if (strcmp(c, "concurrent") == 0)
		check_concurrent();
	else if (strcmp(c, "unavailable") == 0)
		check_unavailable();
	else if (strcmp(c, "retry-put") == 0)
		check_retry_put();
	else {
		fprintf(stderr, "objstore_check: unknown check '%s'\n", c);
		return 2;
	}
	printf("ok %s\n", c);
	return 0;
}
