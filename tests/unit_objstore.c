/* Unit tests of objstore/ that need no server: store URLs, base URLs and credentials, S3's
 * percent-encoding and canonical queries, the XML reader, retry classification and backoff, and the
 * file:// back end through the public API, streamed uploads included. The S3 back end against a real
 * server is tests/it_objstore.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "objstore/internal.h"

/* ---- URLs -------------------------------------------------------------------------------------------- */

static void parse_ok(const char *url, enum os_kind kind, const char *bucket, const char *prefix)
{
	os_location l;
	cairn_status st = os_parse_url(url, &l);
	assert_int_equal(st.code, CAIRN_OK);
	assert_int_equal(l.kind, kind);
	if (bucket)
		assert_string_equal(l.bucket, bucket);
	else
		assert_null(l.bucket);
	assert_string_equal(l.prefix, prefix);
	os_location_free(&l);
}

static void parse_bad(const char *url)
{
	os_location l;
	cairn_status st = os_parse_url(url, &l);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_null(l.bucket);
	assert_null(l.prefix);
}

static void url_parsing(void **state)
{
	(void)state;
	parse_ok("s3://b/p", OS_S3, "b", "p/");
	parse_ok("s3://b", OS_S3, "b", "");
	parse_ok("s3://b/", OS_S3, "b", "");
	parse_ok("s3://my-bucket.v2/cache/cas/", OS_S3, "my-bucket.v2", "cache/cas/");
	parse_ok("gs://b/p", OS_GCS, "b", "p/");
	parse_ok("gs://under_score", OS_GCS, "under_score", "");
	parse_ok("file:///x", OS_DIR, NULL, "/x");
	parse_ok("file:///x/y//", OS_DIR, NULL, "/x/y");
	parse_ok("file://localhost/srv/cache", OS_DIR, NULL, "/srv/cache");
	parse_bad(NULL);
	parse_bad("");
	parse_bad("s3://");
	parse_bad("s3:///p");
	parse_bad("s3://Upper/p");
	parse_bad("s3://user@host/p");
	parse_bad("s3://b?x/p");
	parse_bad("s3://b//p");
	parse_bad("gs://");
	parse_bad("http://b/p");
	parse_bad("S3://b/p");
	parse_bad("file://relative/x");
	parse_bad("file:///");
	parse_bad("file://");
	parse_bad("/just/a/path");
}

static void base_url_ok(enum os_kind kind, const char *endpoint, bool path_style, const char *want)
{
	char *url;
	cairn_status st = os_base_url(kind, endpoint, "eu-west-1", "bkt", path_style, &url);
	assert_int_equal(st.code, CAIRN_OK);
	assert_string_equal(url, want);
	free(url);
}

static void base_urls(void **state)
{
	(void)state;
	base_url_ok(OS_S3, "http://127.0.0.1:7480", true, "http://127.0.0.1:7480/bkt");
	base_url_ok(OS_S3, "http://127.0.0.1:7480/", true, "http://127.0.0.1:7480/bkt");
	base_url_ok(OS_S3, "https://minio.example:9000", false, "https://bkt.minio.example:9000");
	base_url_ok(OS_S3, NULL, false, "https://bkt.s3.eu-west-1.amazonaws.com");
	base_url_ok(OS_S3, NULL, true, "https://s3.eu-west-1.amazonaws.com/bkt");
	base_url_ok(OS_GCS, NULL, false, "https://bkt.storage.googleapis.com");
	base_url_ok(OS_GCS, NULL, true, "https://storage.googleapis.com/bkt");
	char *url;
	assert_int_equal(os_base_url(OS_S3, "ftp://x", "r", "b", true, &url).code, CAIRN_INVALID_ARGUMENT);
	assert_null(url);
	assert_int_equal(os_base_url(OS_S3, "127.0.0.1:7480", "r", "b", true, &url).code, CAIRN_INVALID_ARGUMENT);
	assert_int_equal(os_base_url(OS_S3, "http://", "r", "b", true, &url).code, CAIRN_INVALID_ARGUMENT);
}

static void credentials(void **state)
{
	(void)state;
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	objstore_config cfg = {.url = "s3://b"};
	os_credentials c;
	cairn_status st = os_get_credentials(&cfg, &c);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "AWS_ACCESS_KEY_ID"));
	assert_null(c.access_key);

	setenv("AWS_ACCESS_KEY_ID", "env-ak", 1);
	st = os_get_credentials(&cfg, &c);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "AWS_SECRET_ACCESS_KEY"));

	setenv("AWS_SECRET_ACCESS_KEY", "env-sk", 1);
	setenv("AWS_SESSION_TOKEN", "env-tok", 1);
	st = os_get_credentials(&cfg, &c);
	assert_int_equal(st.code, CAIRN_OK);
	assert_string_equal(c.access_key, "env-ak");
	assert_string_equal(c.secret_key, "env-sk");
	assert_string_equal(c.session_token, "env-tok");
	os_credentials_free(&c);

	/* The config wins over the environment. */
	cfg.access_key = "cfg-ak";
	cfg.secret_key = "cfg-sk";
	st = os_get_credentials(&cfg, &c);
	assert_int_equal(st.code, CAIRN_OK);
	assert_string_equal(c.access_key, "cfg-ak");
	assert_string_equal(c.secret_key, "cfg-sk");
	os_credentials_free(&c);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
}

static void open_refuses_bad_configs(void **state)
{
	(void)state;
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1); /* no keys, and no instance metadata to ask */
	objstore *s = (objstore *)1;
	objstore_config cfg = {.url = "s3://b/p"};
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_INVALID_ARGUMENT); /* no credentials */
	assert_null(s);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	cfg.access_key = "ak";
	cfg.secret_key = "sk";
	cfg.part_size = 1 << 20; /* below S3's 5 MiB */
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_INVALID_ARGUMENT);
	cfg.part_size = 0;
	cfg.endpoint = "localhost:9000";
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_INVALID_ARGUMENT);
	cfg.endpoint = "http://127.0.0.1:1";
	cfg.url = "nope://b";
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_INVALID_ARGUMENT);
	cfg.url = "s3://b/p";
	cfg.max_concurrency = -1;
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_INVALID_ARGUMENT);
	/* A good config opens without making any request, and closes. */
	cfg.max_concurrency = 3;
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_OK);
	assert_non_null(s);
	objstore_close(s);
}

/* ---- encoding ---------------------------------------------------------------------------------------- */

static void uri_encoding(void **state)
{
	(void)state;
	char *e = os_uri_encode("cas/ab c+d=e&f~g_h-i.j*k", true);
	assert_string_equal(e, "cas/ab%20c%2Bd%3De%26f~g_h-i.j%2Ak");
	free(e);
	e = os_uri_encode("a/b", false);
	assert_string_equal(e, "a%2Fb");
	free(e);
	e = os_uri_encode("\xc3\xbc%", true); /* UTF-8 bytes one by one, upper-case hex; '%' itself too */
	assert_string_equal(e, "%C3%BC%25");
	free(e);
	e = os_uri_encode("", true);
	assert_string_equal(e, "");
	free(e);
}

static void canonical_query(void **state)
{
	(void)state;
	os_param p[] = {{"uploadId", "2~x/y z+"}, {"partNumber", "10"}};
	char *q = os_query(p, 2);
	assert_string_equal(q, "partNumber=10&uploadId=2~x%2Fy%20z%2B");
	free(q);
	os_param flag = {"uploads", ""};
	q = os_query(&flag, 1);
	assert_string_equal(q, "uploads=");
	free(q);
	os_param list[] = {{"prefix", "cas/a b"}, {"list-type", "2"}, {"continuation-token", "1ab=/+"}};
	q = os_query(list, 3);
	assert_string_equal(q, "continuation-token=1ab%3D%2F%2B&list-type=2&prefix=cas%2Fa%20b");
	free(q);
	/* Sorted by byte value: upper case before lower case, as SigV4 wants. */
	os_param cased[] = {{"b", "1"}, {"B", "2"}, {"a", "3"}};
	q = os_query(cased, 3);
	assert_string_equal(q, "B=2&a=3&b=1");
	free(q);
	q = os_query(NULL, 0);
	assert_string_equal(q, "");
	free(q);
}

/* ---- XML ------------------------------------------------------------------------------------------------ */

static const char list_page[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Name>bkt</Name><Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
	"<NextContinuationToken>1/abc=</NextContinuationToken>"
	"<Contents><Key>p/a&amp;b</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>&quot;x&quot;</ETag>"
	"<Size>3</Size></Contents>"
	"<Contents><Key>p/&lt;&gt;&apos;&#65;&#x42;&#xe9;</Key><Size>1</Size></Contents>"
	"<Contents><Key>p/plain</Key><Size>0</Size></Contents></ListBucketResult>";

static void xml_keys(void **state)
{
	(void)state;
	size_t pos = 0, len = strlen(list_page);
	const char *want[] = {"p/a&b", "p/<>'AB\xc3\xa9", "p/plain"};
	char *k;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(os_xml_next(list_page, len, &pos, "Key", &k), 1);
		assert_string_equal(k, want[i]);
		free(k);
	}
	assert_int_equal(os_xml_next(list_page, len, &pos, "Key", &k), 0);
	assert_null(k);
	char *t = os_xml_first(list_page, len, "IsTruncated");
	assert_string_equal(t, "true");
	free(t);
	t = os_xml_first(list_page, len, "NextContinuationToken");
	assert_string_equal(t, "1/abc=");
	free(t);
	assert_null(os_xml_first(list_page, len, "Missing"));
}

static void xml_malformed(void **state)
{
	(void)state;
	const char *bad[] = {"<Key>a&bogus;b</Key>", "<Key>a&#;</Key>", "<Key>a&#0;</Key>", "<Key>a&#xD800;</Key>",
	                     "<Key>a&amp", "<Key>no close", "<Key>a&#x110000;</Key>"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t pos = 0;
		char *k;
		assert_int_equal(os_xml_next(bad[i], strlen(bad[i]), &pos, "Key", &k), -1);
		assert_null(k);
	}
	/* A truncated page must not read as a complete one: the cut <Key> is an error, not the end. */
	size_t cut = (size_t)(strstr(list_page, "p/plain") + 3 - list_page), pos = 0, n = 0;
	char *k;
	int r;
	while ((r = os_xml_next(list_page, cut, &pos, "Key", &k)) == 1) {
		free(k);
		n++;
	}
	assert_int_equal(n, 2);
	assert_int_equal(r, -1);
}

static void xml_error_body(void **state)
{
	(void)state;
	const char *body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>"
	                   "<Message>The request signature we calculated does not match</Message>"
	                   "<RequestId>tx1</RequestId></Error>";
	char *code = os_xml_first(body, strlen(body), "Code"), *msg = os_xml_first(body, strlen(body), "Message");
	assert_string_equal(code, "SignatureDoesNotMatch");
	assert_string_equal(msg, "The request signature we calculated does not match");
	free(code);
	free(msg);
	/* radosgw's empty elements. */
	const char *empty = "<Error><Code>XAmzContentSHA256Mismatch</Code><Message></Message></Error>";
	msg = os_xml_first(empty, strlen(empty), "Message");
	assert_string_equal(msg, "");
	free(msg);
}

/* ---- retries ------------------------------------------------------------------------------------------- */

static void retry_classification(void **state)
{
	(void)state;
	const long retried[] = {500, 502, 503, 504, 429};
	for (size_t i = 0; i < sizeof retried / sizeof retried[0]; i++)
		assert_true(os_retryable(CURLE_OK, retried[i]));
	const long final[] = {200, 204, 301, 400, 401, 403, 404, 409, 412, 416};
	for (size_t i = 0; i < sizeof final / sizeof final[0]; i++)
		assert_false(os_retryable(CURLE_OK, final[i]));
	const CURLcode transient[] = {CURLE_OPERATION_TIMEDOUT, CURLE_COULDNT_CONNECT, CURLE_SEND_ERROR, CURLE_RECV_ERROR,
	                              CURLE_PARTIAL_FILE, CURLE_GOT_NOTHING, CURLE_COULDNT_RESOLVE_HOST};
	for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++) {
		assert_true(os_retryable(transient[i], 0));
		assert_int_equal(os_code_of_curl(transient[i]), CAIRN_UNAVAILABLE);
	}
	const CURLcode permanent[] = {CURLE_PEER_FAILED_VERIFICATION, CURLE_WRITE_ERROR, CURLE_READ_ERROR,
	                              CURLE_ABORTED_BY_CALLBACK, CURLE_URL_MALFORMAT};
	for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++)
		assert_false(os_retryable(permanent[i], 0));
	assert_int_equal(os_code_of_curl(CURLE_PEER_FAILED_VERIFICATION), CAIRN_FAILED_PRECONDITION);
	assert_int_equal(os_code_of_curl(CURLE_URL_MALFORMAT), CAIRN_INVALID_ARGUMENT);
}

static void http_codes(void **state)
{
	(void)state;
	assert_int_equal(os_code_of_http(404, "NoSuchKey"), CAIRN_NOT_FOUND);
	assert_int_equal(os_code_of_http(404, NULL), CAIRN_NOT_FOUND);
	assert_int_equal(os_code_of_http(403, "SignatureDoesNotMatch"), CAIRN_PERMISSION_DENIED);
	assert_int_equal(os_code_of_http(403, "AccessDenied"), CAIRN_PERMISSION_DENIED);
	assert_int_equal(os_code_of_http(400, "BadDigest"), CAIRN_DATA_LOSS);
	assert_int_equal(os_code_of_http(400, "XAmzContentSHA256Mismatch"), CAIRN_DATA_LOSS);
	assert_int_equal(os_code_of_http(400, "InvalidArgument"), CAIRN_INVALID_ARGUMENT);
	assert_int_equal(os_code_of_http(400, NULL), CAIRN_INVALID_ARGUMENT);
	assert_int_equal(os_code_of_http(409, "BucketNotEmpty"), CAIRN_FAILED_PRECONDITION);
	assert_int_equal(os_code_of_http(412, "PreconditionFailed"), CAIRN_FAILED_PRECONDITION);
	assert_int_equal(os_code_of_http(301, "PermanentRedirect"), CAIRN_FAILED_PRECONDITION);
	assert_int_equal(os_code_of_http(500, "InternalError"), CAIRN_UNAVAILABLE);
	assert_int_equal(os_code_of_http(503, "SlowDown"), CAIRN_UNAVAILABLE);
	assert_int_equal(os_code_of_http(429, NULL), CAIRN_UNAVAILABLE);
}

static void backoff_grows_with_jitter_and_cap(void **state)
{
	(void)state;
	uint64_t rng = 42;
	for (int attempt = 0; attempt < 40; attempt++) {
		int64_t full = attempt >= 20 ? 10000 : (int64_t)100 << attempt;
		if (full > 10000)
			full = 10000;
		int64_t lo = INT64_MAX, hi = 0;
		for (int i = 0; i < 200; i++) {
			int64_t d = os_backoff_ms(attempt, &rng);
			assert_true(d >= full / 2 && d <= full);
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		assert_true(hi > lo); /* jittered, not one fixed delay */
	}
}

/* ---- the file:// back end, through the public API ------------------------------------------------------- */

typedef struct fixture {
	char dir[128];
	char url[160];
	objstore *s;
} fixture;

static int dir_setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/unit_objstore.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->url, sizeof f->url, "file://%s/store/", f->dir);
	objstore_config cfg = {.url = f->url, .max_concurrency = 4};
	cairn_status st = objstore_open(&cfg, &f->s);
	assert_int_equal(st.code, CAIRN_OK);
	*state = f;
	return 0;
}

static int dir_teardown(void **state)
{
	fixture *f = *state;
	objstore_close(f->s);
	char cmd[200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Waiting for one callback. */
typedef struct result {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	cairn_status st;
	uint8_t *data;
	size_t len;
	int pages;
	size_t nkeys;
	char **keys;
	objstore_stream *up;
} result;

static void result_init(result *r)
{
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
}

static void result_set(result *r, cairn_status st)
{
	pthread_mutex_lock(&r->mu);
	r->st = st;
	r->done = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static cairn_status result_wait(result *r)
{
	pthread_mutex_lock(&r->mu);
	while (!r->done)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	return r->st;
}

static void on_done(void *arg, cairn_status st) { result_set(arg, st); }

static void on_data(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	result *r = arg;
	r->data = data;
	r->len = len;
	result_set(r, st);
}

static void on_stream(void *arg, cairn_status st, objstore_stream *up)
{
	result *r = arg;
	r->up = up;
	result_set(r, st);
}

static void on_page(void *arg, cairn_status st, const char *const *keys, size_t n, bool done)
{
	result *r = arg;
	if (cairn_is_ok(&st)) {
		r->pages++;
		r->keys = realloc(r->keys, (r->nkeys + n) * sizeof *r->keys + 1);
		for (size_t i = 0; i < n; i++)
			r->keys[r->nkeys++] = strdup(keys[i]);
	}
	if (done)
		result_set(r, st);
}

static cairn_status put(objstore *s, const char *key, const char *data)
{
	result r;
	result_init(&r);
	objstore_put(s, key, data, strlen(data), on_done, &r);
	return result_wait(&r);
}

static cairn_status del(objstore *s, const char *key)
{
	result r;
	result_init(&r);
	objstore_delete(s, key, on_done, &r);
	return result_wait(&r);
}

/* GETs key into memory and compares it with want (NULL: expects the status only). */
static cairn_status get_expect(objstore *s, const char *key, int64_t max, const char *want)
{
	result r;
	result_init(&r);
	objstore_get(s, key, max, on_data, &r);
	cairn_status st = result_wait(&r);
	if (cairn_is_ok(&st)) {
		assert_non_null(r.data);
		assert_int_equal(r.len, strlen(want));
		assert_memory_equal(r.data, want, r.len);
	} else {
		assert_null(r.data);
	}
	free(r.data);
	return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Lists prefix; the keys come back sorted in r (to be freed with free_list). */
static cairn_status list(objstore *s, const char *prefix, result *r)
{
	result_init(r);
	objstore_list(s, prefix, on_page, r);
	cairn_status st = result_wait(r);
	if (r->nkeys)
		qsort(r->keys, r->nkeys, sizeof *r->keys, cmp_str);
	return st;
}

static void free_list(result *r)
{
	for (size_t i = 0; i < r->nkeys; i++)
		free(r->keys[i]);
	free(r->keys);
}

static void dir_put_get_head_delete(void **state)
{
	fixture *f = *state;
	objstore *s = f->s;
	assert_int_equal(put(s, "ac/abc", "hello").code, CAIRN_OK);
	assert_int_equal(get_expect(s, "ac/abc", 100, "hello").code, CAIRN_OK);
	int64_t size = -1;
	assert_int_equal(objstore_head_sync(s, "ac/abc", &size).code, CAIRN_OK);
	assert_int_equal(size, 5);
	/* Overwrite replaces the whole value. */
	assert_int_equal(put(s, "ac/abc", "hi").code, CAIRN_OK);
	assert_int_equal(get_expect(s, "ac/abc", 100, "hi").code, CAIRN_OK);
	/* The object is a plain file under the directory, as the URL says. */
	char path[300];
	snprintf(path, sizeof path, "%s/store/ac/abc", f->dir);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, 2);
	/* A GET larger than its limit is refused. */
	assert_int_equal(get_expect(s, "ac/abc", 1, NULL).code, CAIRN_RESOURCE_EXHAUSTED);
	/* A buffer larger than the queue may hold is refused at once, before it is read or copied. */
	result big;
	result_init(&big);
	objstore_put(s, "big", "tiny", (size_t)600 << 20, on_done, &big);
	assert_true(big.done); /* on this thread, before the call returned */
	assert_int_equal(result_wait(&big).code, CAIRN_RESOURCE_EXHAUSTED);
	/* An empty object. */
	assert_int_equal(put(s, "empty", "").code, CAIRN_OK);
	assert_int_equal(get_expect(s, "empty", 0, "").code, CAIRN_OK);
	/* Delete, then everything says NOT_FOUND; deleting again is not an error. */
	assert_int_equal(del(s, "ac/abc").code, CAIRN_OK);
	assert_int_equal(del(s, "ac/abc").code, CAIRN_OK);
	assert_int_equal(objstore_head_sync(s, "ac/abc", &size).code, CAIRN_NOT_FOUND);
	assert_int_equal(size, -1);
	assert_int_equal(get_expect(s, "ac/abc", 100, NULL).code, CAIRN_NOT_FOUND);
	assert_int_equal(get_expect(s, "never/was", 100, NULL).code, CAIRN_NOT_FOUND);
	/* The emptied directory went with its last key. */
	snprintf(path, sizeof path, "%s/store/ac", f->dir);
	assert_int_not_equal(stat(path, &sb), 0);
	/* A directory is not an object. */
	assert_int_equal(put(s, "d/x", "1").code, CAIRN_OK);
	assert_int_equal(objstore_head_sync(s, "d", &size).code, CAIRN_NOT_FOUND);
	objstore_stats st;
	objstore_get_stats(s, &st);
	assert_int_equal(st.puts, 4);
	assert_int_equal(st.deletes, 2);
	assert_int_equal(st.heads, 3);
	assert_int_equal(st.gets, 6);
	assert_int_equal(st.bytes_up, 5 + 2 + 0 + 1);
	assert_int_equal(st.bytes_down, 5 + 2 + 0);
	assert_int_equal(st.failures, 2); /* the GET over its limit, the refused put; NOT_FOUND is an answer */
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Entries under the store's .tmp: what an upload leaves behind. */
static int tmp_entries(const fixture *f)
{
	char tmpdir[200];
	snprintf(tmpdir, sizeof tmpdir, "%s/store/.tmp", f->dir);
	DIR *dir = opendir(tmpdir);
	assert_non_null(dir);
	int n = 0;
	for (struct dirent *e; (e = readdir(dir));)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(dir);
	return n;
}

static void dir_files_and_digests(void **state)
{
	fixture *f = *state;
	objstore *s = f->s;
	char src[200], dst[200];
	snprintf(src, sizeof src, "%s/src", f->dir);
	snprintf(dst, sizeof dst, "%s/dst", f->dir);
	static uint8_t blob[3 << 20]; /* several copy chunks */
	for (size_t i = 0; i < sizeof blob; i++)
		blob[i] = (uint8_t)(i * 13 + (i >> 12));
	write_file(src, blob, sizeof blob);
	cairn_digest d;
	cairn_digest_of(blob, sizeof blob, &d);
	assert_int_equal(objstore_put_file_sync(s, "cas/blob", src, d.hash).code, CAIRN_OK);
	assert_int_equal(objstore_put_file_sync(s, "cas/blob-unhashed", src, NULL).code, CAIRN_OK);
	uint8_t sha[CAIRN_HASH_LEN];
	assert_int_equal(objstore_get_file_sync(s, "cas/blob", dst, sizeof blob, sha).code, CAIRN_OK);
	assert_memory_equal(sha, d.hash, CAIRN_HASH_LEN); /* hashed as it was written */
	FILE *fp = fopen(dst, "rb");
	assert_non_null(fp);
	static uint8_t back[sizeof blob + 1];
	assert_int_equal(fread(back, 1, sizeof back, fp), sizeof blob);
	fclose(fp);
	assert_memory_equal(back, blob, sizeof blob);
	/* A wrong digest is refused and leaves nothing: not the key, not a temporary file. */
	d.hash[0] ^= 0x80;
	cairn_status st = objstore_put_file_sync(s, "cas/bad", src, d.hash);
	assert_int_equal(st.code, CAIRN_DATA_LOSS);
	int64_t size;
	assert_int_equal(objstore_head_sync(s, "cas/bad", &size).code, CAIRN_NOT_FOUND);
	assert_int_equal(tmp_entries(f), 0);
	/* A missing source file, a missing object: nothing is created at the destination. */
	snprintf(src, sizeof src, "%s/no-such-file", f->dir);
	assert_int_equal(objstore_put_file_sync(s, "cas/x", src, NULL).code, CAIRN_NOT_FOUND);
	assert_int_equal(objstore_put_file_sync(s, "cas/x", f->dir, NULL).code, CAIRN_INVALID_ARGUMENT);
	snprintf(dst, sizeof dst, "%s/dst2", f->dir);
	assert_int_equal(objstore_get_file_sync(s, "cas/none", dst, 100, NULL).code, CAIRN_NOT_FOUND);
	char part[220];
	snprintf(part, sizeof part, "%s.part", dst);
	assert_int_not_equal(access(dst, F_OK), 0);
	assert_int_not_equal(access(part, F_OK), 0);
	/* An object longer than the caller's limit is refused by its size, before a byte of it is read. */
	objstore_stats before, after;
	objstore_get_stats(s, &before);
	assert_int_equal(objstore_get_file_sync(s, "cas/blob", dst, sizeof blob - 1, NULL).code, CAIRN_OUT_OF_RANGE);
	objstore_get_stats(s, &after);
	assert_int_equal(after.bytes_down, before.bytes_down);
	assert_int_not_equal(access(dst, F_OK), 0);
	assert_int_not_equal(access(part, F_OK), 0);
}

static void dir_refuses_bad_keys(void **state)
{
	fixture *f = *state;
	const char *bad[] = {"", "/abs", "a//b", "a/", "..", "a/../../etc", "./a", "a/./b", ".tmp/x", ".tmp"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(put(f->s, bad[i], "x").code, CAIRN_INVALID_ARGUMENT);
		assert_int_equal(get_expect(f->s, bad[i], 10, NULL).code, CAIRN_INVALID_ARGUMENT);
	}
	/* Names that only look alike are fine. */
	assert_int_equal(put(f->s, "..a/.b/c..", "x").code, CAIRN_OK);
	assert_int_equal(put(f->s, "x/.tmp", "x").code, CAIRN_OK);
}

static void dir_list_pages_and_prefixes(void **state)
{
	fixture *f = *state;
	objstore *s = f->s;
	enum { N = 2345 };
	for (int i = 0; i < N; i++) {
		char key[64];
		snprintf(key, sizeof key, "cas/%02d/k%05d", i % 17, i);
		assert_int_equal(put(s, key, "v").code, CAIRN_OK);
	}
	assert_int_equal(put(s, "ac/one", "v").code, CAIRN_OK);
	assert_int_equal(put(s, "cascade", "v").code, CAIRN_OK);
	result r;
	assert_int_equal(list(s, "cas/", &r).code, CAIRN_OK);
	assert_int_equal(r.nkeys, N);
	assert_int_equal(r.pages, 3); /* 1000 + 1000 + 345 */
	for (size_t i = 1; i < r.nkeys; i++)
		assert_true(strcmp(r.keys[i - 1], r.keys[i]) < 0); /* each key once */
	free_list(&r);
	/* A prefix that ends inside a directory name, and one inside a file name. */
	assert_int_equal(list(s, "cas", &r).code, CAIRN_OK);
	assert_int_equal(r.nkeys, N + 1);
	free_list(&r);
	assert_int_equal(list(s, "cas/0", &r).code, CAIRN_OK);
	size_t want = 0;
	for (int i = 0; i < N; i++)
		want += i % 17 < 10;
	assert_int_equal(r.nkeys, want);
	free_list(&r);
	assert_int_equal(list(s, "cas/03/k0000", &r).code, CAIRN_OK);
	assert_int_equal(r.nkeys, 1); /* only k00003 of 0..9 is in directory 03 */
	assert_string_equal(r.keys[0], "cas/03/k00003");
	free_list(&r);
	/* Everything, and nothing. */
	assert_int_equal(list(s, "", &r).code, CAIRN_OK);
	assert_int_equal(r.nkeys, N + 2);
	free_list(&r);
	assert_int_equal(list(s, "zzz", &r).code, CAIRN_OK);
	assert_int_equal(r.nkeys, 0);
	assert_int_equal(r.pages, 1);
	free_list(&r);
}

static void dir_concurrent_puts(void **state)
{
	fixture *f = *state;
	enum { N = 300 };
	static result rs[N];
	static char bodies[N][32];
	for (int i = 0; i < N; i++) {
		char key[32];
		snprintf(key, sizeof key, "par/%d", i % 10 == 0 ? 0 : i); /* some race for one key */
		snprintf(bodies[i], sizeof bodies[i], "body-%d", i);
		result_init(&rs[i]);
		objstore_put(f->s, key, bodies[i], strlen(bodies[i]), on_done, &rs[i]);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(result_wait(&rs[i]).code, CAIRN_OK);
	for (int i = 1; i < N; i++) {
		if (i % 10 == 0)
			continue;
		char key[32];
		snprintf(key, sizeof key, "par/%d", i);
		assert_int_equal(get_expect(f->s, key, 100, bodies[i]).code, CAIRN_OK);
	}
	/* The raced key holds one writer's whole value. */
	result r;
	result_init(&r);
	objstore_get(f->s, "par/0", 100, on_data, &r);
	assert_int_equal(result_wait(&r).code, CAIRN_OK);
	bool one_of = false;
	for (int i = 0; i < N; i += 10)
		one_of |= r.len == strlen(bodies[i]) && memcmp(r.data, bodies[i], r.len) == 0;
	assert_true(one_of);
	free(r.data);
}

/* ---- streamed uploads on the file:// back end ----------------------------------------------------------- */

static objstore_stream *stream_begin(objstore *s, const char *key, int want)
{
	result r;
	result_init(&r);
	objstore_stream_begin(s, key, -1, NULL, on_stream, &r);
	assert_int_equal(result_wait(&r).code, want);
	if (want == CAIRN_OK)
		assert_non_null(r.up);
	else
		assert_null(r.up);
	return r.up;
}

/* Sends parts numbers[0..n) at once (part k holds data[offs[k-1] .. offs[k])) and waits for all. */
static void stream_parts(objstore_stream *up, const int *numbers, int n, const uint8_t *data, const size_t *offs)
{
	result rs[8];
	assert_true(n <= 8);
	for (int i = 0; i < n; i++) {
		int k = numbers[i];
		result_init(&rs[i]);
		objstore_stream_part(up, k, data + offs[k - 1], offs[k] - offs[k - 1], on_done, &rs[i]);
	}
	for (int i = 0; i < n; i++)
		assert_int_equal(result_wait(&rs[i]).code, CAIRN_OK);
}

static cairn_status stream_end(objstore_stream *up, int nparts, bool complete)
{
	result r;
	result_init(&r);
	if (complete)
		objstore_stream_complete(up, nparts, on_done, &r);
	else
		objstore_stream_abort(up, on_done, &r);
	return result_wait(&r);
}

/* The object under key holds exactly data[0..len). */
static void expect_object(fixture *f, const char *key, const uint8_t *data, size_t len)
{
	char dst[200];
	snprintf(dst, sizeof dst, "%s/back", f->dir);
	assert_int_equal(objstore_get_file_sync(f->s, key, dst, (int64_t)len, NULL).code, CAIRN_OK);
	FILE *fp = fopen(dst, "rb");
	assert_non_null(fp);
	uint8_t *back = malloc(len + 1);
	assert_int_equal(fread(back, 1, len + 1, fp), len);
	fclose(fp);
	assert_memory_equal(back, data, len);
	free(back);
	unlink(dst);
}

static void dir_stream_parts_in_any_order(void **state)
{
	fixture *f = *state;
	objstore *s = f->s;
	/* Parts of the configured size (16 MiB by default), doubled for objects past 10,000 of them. */
	assert_int_equal(objstore_stream_part_size(s, 1), 16 << 20);
	assert_int_equal(objstore_stream_part_size(s, (int64_t)10000 << 24), 16 << 20);
	assert_int_equal(objstore_stream_part_size(s, ((int64_t)10000 << 24) + 1), 32 << 20);
	enum { PART = 5 << 20 };
	static uint8_t data[2 * PART + 1234];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 16));
	const size_t offs[] = {0, PART, 2 * PART, sizeof data};

	objstore_stream *up = stream_begin(s, "cas/streamed", CAIRN_OK);
	stream_parts(up, (int[]){3, 1, 2}, 3, data, offs); /* the last first, all at once */
	int64_t size;
	assert_int_equal(objstore_head_sync(s, "cas/streamed", &size).code, CAIRN_NOT_FOUND); /* not before completion */
	assert_int_equal(stream_end(up, 3, true).code, CAIRN_OK);
	expect_object(f, "cas/streamed", data, sizeof data);
	assert_int_equal(tmp_entries(f), 0);

	/* A part sent again replaces the first copy. */
	static uint8_t junk[PART];
	memset(junk, 0xA5, sizeof junk);
	up = stream_begin(s, "cas/resent", CAIRN_OK);
	const size_t junk_offs[] = {0, PART};
	stream_parts(up, (int[]){1}, 1, junk, junk_offs);
	stream_parts(up, (int[]){2, 1}, 2, data, offs);
	assert_int_equal(stream_end(up, 2, true).code, CAIRN_OK);
	expect_object(f, "cas/resent", data, 2 * PART);
	assert_int_equal(tmp_entries(f), 0);

	objstore_stats st;
	objstore_get_stats(s, &st);
	assert_int_equal(st.puts, 2); /* one per object, not per part */
	assert_int_equal(st.bytes_up, sizeof data + 3 * PART);
	assert_int_equal(st.failures, 0);
}

static void dir_stream_abort_leaves_nothing(void **state)
{
	fixture *f = *state;
	objstore *s = f->s;
	static uint8_t data[3 << 20];
	memset(data, 0x3C, sizeof data);
	const size_t offs[] = {0, 1 << 20, 2 << 20, sizeof data};
	int64_t size;

	/* Aborted after its parts were stored: no object, no part, no directory. */
	objstore_stream *up = stream_begin(s, "cas/aborted", CAIRN_OK);
	stream_parts(up, (int[]){2, 1}, 2, data, offs);
	assert_int_equal(stream_end(up, 0, false).code, CAIRN_OK);
	assert_int_equal(objstore_head_sync(s, "cas/aborted", &size).code, CAIRN_NOT_FOUND);
	assert_int_equal(tmp_entries(f), 0);

	/* Aborting an upload that replaces an object leaves the old object as it was. */
	assert_int_equal(put(s, "cas/kept", "old").code, CAIRN_OK);
	up = stream_begin(s, "cas/kept", CAIRN_OK);
	stream_parts(up, (int[]){1}, 1, data, offs);
	assert_int_equal(stream_end(up, 0, false).code, CAIRN_OK);
	assert_int_equal(get_expect(s, "cas/kept", 100, "old").code, CAIRN_OK);

	/* Completing with a part never sent fails, and the upload is aborted: nothing is left. */
	up = stream_begin(s, "cas/gap", CAIRN_OK);
	stream_parts(up, (int[]){1, 3}, 2, data, offs);
	cairn_status st = stream_end(up, 3, true);
	assert_int_equal(st.code, CAIRN_FAILED_PRECONDITION);
	assert_non_null(strstr(st.msg, "part 2 of 3"));
	assert_int_equal(objstore_head_sync(s, "cas/gap", &size).code, CAIRN_NOT_FOUND);
	assert_int_equal(tmp_entries(f), 0);

	/* A bad key is refused at the start; a bad part number at once, on the caller's thread. */
	stream_begin(s, "a//b", CAIRN_INVALID_ARGUMENT);
	up = stream_begin(s, "cas/numbers", CAIRN_OK);
	result r;
	result_init(&r);
	objstore_stream_part(up, 10001, data, 1, on_done, &r);
	assert_true(r.done);
	assert_int_equal(result_wait(&r).code, CAIRN_INVALID_ARGUMENT);
	assert_int_equal(stream_end(up, 0, false).code, CAIRN_OK);
	assert_int_equal(tmp_entries(f), 0);
}

/* ---- streamed uploads sent as one PUT, on the file:// back end ---------------------------------------- */

static objstore_stream *put_begin(objstore *s, const char *key, int64_t size, const uint8_t *sha256)
{
	result r;
	result_init(&r);
	objstore_stream_begin(s, key, size, sha256, on_stream, &r);
	assert_int_equal(result_wait(&r).code, CAIRN_OK);
	assert_non_null(r.up);
	return r.up;
}

/* Waits until the store's .tmp holds an entry whose name starts with prefix: "put-" for a one-PUT
 * upload's file, "stream-" for a multipart upload's directory. */
static void wait_tmp_entry(const fixture *f, const char *prefix)
{
	char tmpdir[200];
	snprintf(tmpdir, sizeof tmpdir, "%s/store/.tmp", f->dir);
	int64_t deadline = cairn_now_ns() + INT64_C(10) * 1000000000;
	for (bool found = false; !found;) {
		assert_true(cairn_now_ns() < deadline);
		DIR *dir = opendir(tmpdir);
		assert_non_null(dir);
		for (struct dirent *e; (e = readdir(dir));)
			found |= strncmp(e->d_name, prefix, strlen(prefix)) == 0;
		closedir(dir);
		if (!found)
			nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
}

/* A part's report and when it came (1 for the first of its upload). */
typedef struct part_seen {
	result r;
	atomic_int *clock;
	int at;
} part_seen;

static void on_part(void *arg, cairn_status st)
{
	part_seen *p = arg;
	p->at = atomic_fetch_add(p->clock, 1) + 1;
	result_set(&p->r, st);
}

enum { SMALL_PART = 1 << 20 };
static uint8_t put_data[2 * SMALL_PART + 1234];
static const size_t put_offs[] = {0, SMALL_PART, 2 * SMALL_PART, sizeof put_data};

/* Sends parts numbers[0..n) of put_data at once into seen[number - 1] and waits for them; the status
 * all had. */
static int send_parts(objstore_stream *up, const int *numbers, int n, part_seen *seen, atomic_int *clock)
{
	for (int i = 0; i < n; i++) {
		int k = numbers[i];
		part_seen *p = &seen[k - 1];
		result_init(&p->r);
		p->clock = clock;
		objstore_stream_part(up, k, put_data + put_offs[k - 1], put_offs[k] - put_offs[k - 1], on_part, p);
	}
	int code = CAIRN_OK;
	for (int i = 0; i < n; i++) {
		int c = result_wait(&seen[numbers[i] - 1].r).code;
		assert_true(i == 0 || c == code);
		code = c;
	}
	return code;
}

static void fill_put_data(cairn_digest *d)
{
	for (size_t i = 0; i < sizeof put_data; i++)
		put_data[i] = (uint8_t)(i * 13 + (i >> 12));
	cairn_digest_of(put_data, sizeof put_data, d);
}

static void dir_stream_one_put_takes_parts_in_order(void **state)
{
	fixture *f = *state;
	objstore *s = f->s;
	cairn_digest d;
	fill_put_data(&d);
	objstore_stream *up = put_begin(s, "cas/one", (int64_t)sizeof put_data, d.hash);
	wait_tmp_entry(f, "put-"); /* one PUT, not a multipart upload */
	/* Sent last first: the PUT takes them by number, and reports each once it took its bytes. */
	atomic_int clock = 0;
	part_seen seen[3];
	assert_int_equal(send_parts(up, (int[]){3, 2, 1}, 3, seen, &clock), CAIRN_OK);
	for (int k = 1; k <= 3; k++)
		assert_int_equal(seen[k - 1].at, k);
	assert_int_equal(stream_end(up, 3, true).code, CAIRN_OK);
	expect_object(f, "cas/one", put_data, sizeof put_data);
	assert_int_equal(tmp_entries(f), 0);
	objstore_stats st;
	objstore_get_stats(s, &st);
	assert_int_equal(st.puts, 1);
	assert_int_equal(st.bytes_up, sizeof put_data); /* each byte once, with no part hashed on its own */
	assert_int_equal(st.failures, 0);
}

static void dir_stream_one_put_refuses_what_does_not_fit(void **state)
{
	fixture *f = *state;
	objstore *s = f->s;
	cairn_digest d;
	fill_put_data(&d);
	int64_t size;
	atomic_int clock = 0;
	part_seen seen[3];

	/* Bytes that do not match the hash: the PUT stores nothing, completing says so. */
	cairn_digest wrong = d;
	wrong.hash[5] ^= 0x10;
	objstore_stream *up = put_begin(s, "cas/wrong", (int64_t)sizeof put_data, wrong.hash);
	assert_int_equal(send_parts(up, (int[]){1, 2, 3}, 3, seen, &clock), CAIRN_OK);
	assert_int_equal(stream_end(up, 3, true).code, CAIRN_DATA_LOSS);
	assert_int_equal(objstore_head_sync(s, "cas/wrong", &size).code, CAIRN_NOT_FOUND);
	assert_int_equal(tmp_entries(f), 0);

	/* Aborted while the PUT waits for its next part: nothing is stored. */
	up = put_begin(s, "cas/aborted", (int64_t)sizeof put_data, d.hash);
	assert_int_equal(send_parts(up, (int[]){1}, 1, seen, &clock), CAIRN_OK);
	assert_int_equal(stream_end(up, 0, false).code, CAIRN_OK);
	assert_int_equal(objstore_head_sync(s, "cas/aborted", &size).code, CAIRN_NOT_FOUND);
	assert_int_equal(tmp_entries(f), 0);

	/* Completed with fewer bytes than the object has: refused, nothing stored. */
	up = put_begin(s, "cas/short", (int64_t)sizeof put_data, d.hash);
	assert_int_equal(send_parts(up, (int[]){1, 2}, 2, seen, &clock), CAIRN_OK);
	assert_int_equal(stream_end(up, 2, true).code, CAIRN_FAILED_PRECONDITION);
	assert_int_equal(objstore_head_sync(s, "cas/short", &size).code, CAIRN_NOT_FOUND);
	assert_int_equal(tmp_entries(f), 0);
	objstore_stats st;
	objstore_get_stats(s, &st);
	assert_int_equal(st.bytes_up, 0);

	/* A part sent again while the first copy waits is refused; the first copy is the one stored. */
	static uint8_t junk[SMALL_PART];
	memset(junk, 0x5A, sizeof junk);
	up = put_begin(s, "cas/twice", (int64_t)sizeof put_data, d.hash);
	part_seen again = {.clock = &clock};
	result_init(&again.r);
	assert_int_equal(send_parts(up, (int[]){1}, 1, seen, &clock), CAIRN_OK);
	result_init(&seen[2].r);
	seen[2].clock = &clock;
	objstore_stream_part(up, 3, put_data + put_offs[2], put_offs[3] - put_offs[2], on_part, &seen[2]);
	objstore_stream_part(up, 3, junk, put_offs[3] - put_offs[2], on_part, &again);
	assert_int_equal(result_wait(&again.r).code, CAIRN_FAILED_PRECONDITION);
	assert_int_equal(send_parts(up, (int[]){2}, 1, seen, &clock), CAIRN_OK);
	assert_int_equal(result_wait(&seen[2].r).code, CAIRN_OK);
	assert_int_equal(stream_end(up, 3, true).code, CAIRN_OK);
	expect_object(f, "cas/twice", put_data, sizeof put_data);
}

/* One-PUT uploads hold at most half the transfer threads (2 of this store's 4); the next begin gets
 * a multipart upload. */
static void dir_stream_one_puts_leave_threads_free(void **state)
{
	fixture *f = *state;
	objstore *s = f->s;
	cairn_digest d;
	fill_put_data(&d);
	objstore_stream *a = put_begin(s, "cas/a", (int64_t)sizeof put_data, d.hash);
	objstore_stream *b = put_begin(s, "cas/b", (int64_t)sizeof put_data, d.hash);
	objstore_stream *c = put_begin(s, "cas/c", (int64_t)sizeof put_data, d.hash);
	wait_tmp_entry(f, "stream-");
	/* Meanwhile the other threads still serve calls. */
	assert_int_equal(put(s, "small", "x").code, CAIRN_OK);
	atomic_int clock = 0;
	part_seen seen[3];
	assert_int_equal(send_parts(c, (int[]){1, 2, 3}, 3, seen, &clock), CAIRN_OK);
	assert_int_equal(stream_end(c, 3, true).code, CAIRN_OK);
	expect_object(f, "cas/c", put_data, sizeof put_data);
	assert_int_equal(stream_end(a, 0, false).code, CAIRN_OK);
	assert_int_equal(stream_end(b, 0, false).code, CAIRN_OK);
	assert_int_equal(tmp_entries(f), 0);
}

static void dir_open_creates_and_refuses(void **state)
{
	fixture *f = *state;
	char url[300];
	snprintf(url, sizeof url, "file://%s/new/deep/store", f->dir);
	objstore_config cfg = {.url = url};
	objstore *s;
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_OK);
	assert_int_equal(put(s, "k", "v").code, CAIRN_OK);
	objstore_close(s);
	/* A file where the directory should be. */
	char file[250];
	snprintf(file, sizeof file, "%s/plainfile", f->dir);
	write_file(file, "x", 1);
	snprintf(url, sizeof url, "file://%s/plainfile/store", f->dir);
	cairn_status st = objstore_open(&cfg, &s);
	assert_int_not_equal(st.code, CAIRN_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(url_parsing),
		cmocka_unit_test(base_urls),
		cmocka_unit_test(credentials),
		cmocka_unit_test(open_refuses_bad_configs),
		cmocka_unit_test(uri_encoding),
		cmocka_unit_test(canonical_query),
		cmocka_unit_test(xml_keys),
		cmocka_unit_test(xml_malformed),
		cmocka_unit_test(xml_error_body),
		cmocka_unit_test(retry_classification),
		cmocka_unit_test(http_codes),
		cmocka_unit_test(backoff_grows_with_jitter_and_cap),
		cmocka_unit_test_setup_teardown(dir_put_get_head_delete, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_files_and_digests, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_refuses_bad_keys, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_list_pages_and_prefixes, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_concurrent_puts, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_stream_parts_in_any_order, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_stream_abort_leaves_nothing, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_stream_one_put_takes_parts_in_order, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_stream_one_put_refuses_what_does_not_fit, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_stream_one_puts_leave_threads_free, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(dir_open_creates_and_refuses, dir_setup, dir_teardown),
	};
	cairn_log_set_level(CAIRN_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
