/* Unit tests of objstore's cloud credentials and cloud answers, with no server: base64 and the
 * service-account JWT (signed with a key made here, verified with OpenSSL), service-account key
 * files, the JSON of token answers, EC2 role credentials, GCS listings, sizes and errors (well
 * formed and malformed), and the credential cache shared by transfer threads. The requests
 * themselves are tested against tests/cloud_fixture.py by it_gcs_json.sh and
 * it_s3_instance_metadata.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "objstore/internal.h"

#define JSON(s) (s), strlen(s)

/* ---- base64 ------------------------------------------------------------------------------------- */

static void b64_is(const char *in, size_t n, bool url, const char *want)
{
	char *got = os_base64((const uint8_t *)in, n, url);
	assert_string_equal(got, want);
	free(got);
}

static void base64_both_alphabets(void **state)
{
	(void)state;
	b64_is("", 0, false, "");
	b64_is("f", 1, false, "Zg==");
	b64_is("fo", 2, false, "Zm8=");
	b64_is("foo", 3, false, "Zm9v");
	b64_is("f", 1, true, "Zg");
	b64_is("fo", 2, true, "Zm8");
	b64_is("\xfb\xff", 2, false, "+/8=");
	b64_is("\xfb\xff", 2, true, "-_8");
	/* md5Hash is the base64 of the 16 bytes: that of the empty body. */
	uint8_t md5[16];
	unsigned int len;
	EVP_Digest("", 0, md5, &len, EVP_md5(), NULL);
	b64_is((const char *)md5, len, false, "1B2M2Y8AsgTpgAmY7PhCfg==");
}

/* ---- service-account keys and the JWT ------------------------------------------------------------ */

static EVP_PKEY *test_key;

static int make_key(void **state)
{
	(void)state;
	test_key = EVP_RSA_gen(2048);
	return test_key ? 0 : -1;
}

static int free_key(void **state)
{
	(void)state;
	EVP_PKEY_free(test_key);
	return 0;
}

static char *pem_of(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	char *p;
	long n = BIO_get_mem_data(b, &p);
	char *pem = strndup(p, (size_t)n);
	BIO_free(b);
	return pem;
}

/* A key file's JSON (json-c escapes the PEM's newlines); fields NULL are left out. */
static char *key_json(const char *type, const char *email, const char *pem, const char *uri)
{
	json_object *o = json_object_new_object();
	if (type)
		json_object_object_add(o, "type", json_object_new_string(type));
	if (email)
		json_object_object_add(o, "client_email", json_object_new_string(email));
	if (pem)
		json_object_object_add(o, "private_key", json_object_new_string(pem));
	if (uri)
		json_object_object_add(o, "token_uri", json_object_new_string(uri));
	json_object_object_add(o, "private_key_id", json_object_new_string("kid-1"));
	char *s = strdup(json_object_to_json_string(o));
	json_object_put(o);
	return s;
}

static uint8_t *b64url_decode(const char *s, size_t *len)
{
	size_t n = strlen(s);
	char *t = calloc(n + 4, 1);
	for (size_t i = 0; i < n; i++)
		t[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	while (n % 4)
		t[n++] = '=';
	uint8_t *out = calloc(n, 1);
	int got = EVP_DecodeBlock(out, (const unsigned char *)t, (int)n);
	assert_true(got >= 0);
	*len = (size_t)got - (t[n - 1] == '=') - (t[n - 2] == '=');
	free(t);
	return out;
}

static json_object *part_json(const char *part)
{
	size_t n;
	uint8_t *raw = b64url_decode(part, &n);
	char *text = strndup((char *)raw, n);
	json_object *o = json_tokener_parse(text);
	free(text);
	free(raw);
	assert_non_null(o);
	return o;
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;
	assert_true(json_object_object_get_ex(o, k, &v));
	return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *k)
{
	json_object *v;
	assert_true(json_object_object_get_ex(o, k, &v));
	return json_object_get_int64(v);
}

static bool verifies(EVP_PKEY *k, const char *data, size_t dlen, const uint8_t *sig, size_t slen)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool ok = EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, k) == 1 &&
	          EVP_DigestVerify(c, sig, slen, (const unsigned char *)data, dlen) == 1;
	EVP_MD_CTX_free(c);
	return ok;
}

static void jwt_is_signed_rs256(void **state)
{
	(void)state;
	char *pem = pem_of(test_key);
	char *json = key_json("service_account", "sa@p.iam.gserviceaccount.com", pem, "https://tok.example/token");
	os_sa_key k;
	cairn_status st = os_sa_key_parse(json, strlen(json), "key", &k);
	assert_int_equal(st.code, CAIRN_OK);
	assert_string_equal(k.email, "sa@p.iam.gserviceaccount.com");
	assert_string_equal(k.token_uri, "https://tok.example/token");
	assert_string_equal(k.key_id, "kid-1");
	char *jwt;
	st = os_jwt_assertion(&k, "https://www.googleapis.com/auth/devstorage.read_write", 1700000000, &jwt);
	assert_int_equal(st.code, CAIRN_OK);
	assert_null(strpbrk(jwt, "+/= \n")); /* base64url without padding: safe in a form body */
	char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	assert_non_null(dot2);
	assert_null(strchr(dot2 + 1, '.'));
	*dot1 = 0;
	*dot2 = 0;
	json_object *h = part_json(jwt), *c = part_json(dot1 + 1);
	assert_string_equal(jstr(h, "alg"), "RS256");
	assert_string_equal(jstr(h, "typ"), "JWT");
	assert_string_equal(jstr(h, "kid"), "kid-1");
	assert_string_equal(jstr(c, "iss"), "sa@p.iam.gserviceaccount.com");
	assert_string_equal(jstr(c, "aud"), "https://tok.example/token");
	assert_string_equal(jstr(c, "scope"), "https://www.googleapis.com/auth/devstorage.read_write");
	assert_int_equal(jint(c, "iat"), 1700000000);
	assert_int_equal(jint(c, "exp"), 1700000000 + 3600);
	/* The signature covers "header.claims" and verifies with the public half; other bytes do not. */
	*dot1 = '.';
	size_t slen;
	uint8_t *sig = b64url_decode(dot2 + 1, &slen);
	assert_int_equal(slen, 256);
	assert_true(verifies(test_key, jwt, strlen(jwt), sig, slen));
	jwt[5] ^= 1;
	assert_false(verifies(test_key, jwt, strlen(jwt), sig, slen));
	free(sig);
	json_object_put(h);
	json_object_put(c);
	free(jwt);
	os_sa_key_free(&k);
	free(json);
	free(pem);
}

static void key_refused(const char *json, const char *needle)
{
	os_sa_key k;
	cairn_status st = os_sa_key_parse(json, strlen(json), "key file K", &k);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "key file K"));
	if (!strstr(st.msg, needle))
		fail_msg("'%s' does not say '%s'", st.msg, needle);
	assert_null(k.pkey);
	assert_null(k.email);
}

static void key_files(void **state)
{
	(void)state;
	char *pem = pem_of(test_key);
	char *j = key_json(NULL, "a@b", pem, NULL);
	os_sa_key k;
	assert_int_equal(os_sa_key_parse(j, strlen(j), "k", &k).code, CAIRN_OK);
	assert_string_equal(k.token_uri, "https://oauth2.googleapis.com/token"); /* the default */
	os_sa_key_free(&k);
	free(j);
	key_refused("", "not a JSON object");
	key_refused("{\"type\": \"service_account\"", "not a JSON object");
	key_refused("[1, 2]", "not a JSON object");
	j = key_json("authorized_user", "a@b", pem, NULL);
	key_refused(j, "'authorized_user' credentials");
	free(j);
	j = key_json("service_account", "a@b", NULL, NULL);
	key_refused(j, "no private_key");
	free(j);
	j = key_json("service_account", NULL, pem, NULL);
	key_refused(j, "no client_email");
	free(j);
	j = key_json("service_account", "a@b", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", NULL);
	key_refused(j, "not an RSA key in PEM");
	free(j);
	j = key_json("service_account", "a@b", pem, "file:///etc/passwd");
	key_refused(j, "token_uri");
	free(j);
	/* A key of another kind than RSA cannot sign RS256. */
	EVP_PKEY *ec = EVP_EC_gen("P-256");
	char *ecpem = pem_of(ec);
	j = key_json("service_account", "a@b", ecpem, NULL);
	key_refused(j, "not an RSA key");
	free(j);
	free(ecpem);
	EVP_PKEY_free(ec);
	free(pem);
	/* From a file: a missing one is named. */
	cairn_status st = os_sa_key_load("/nonexistent/key.json", &k);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "service-account key file /nonexistent/key.json"));
}

/* ---- JSON answers -------------------------------------------------------------------------------- */

static void token_ok(const char *body, const char *token, int64_t expires)
{
	char *t;
	int64_t e = -1;
	cairn_status st = os_json_token(JSON(body), &t, &e);
	assert_int_equal(st.code, CAIRN_OK);
	assert_string_equal(t, token);
	assert_int_equal(e, expires);
	free(t);
}

static void token_bad(const char *body, size_t len)
{
	char *t = (char *)1;
	int64_t e;
	cairn_status st = os_json_token(body, len, &t, &e);
	assert_int_not_equal(st.code, CAIRN_OK);
	assert_null(t);
	assert_non_null(strstr(st.msg, "token answer"));
}

static void token_answers(void **state)
{
	(void)state;
	token_ok("{\"access_token\":\"ya29.a0Af\",\"expires_in\":3599,\"token_type\":\"Bearer\"}", "ya29.a0Af", 3599);
	token_ok("  {\"token_type\":\"bearer\",\"access_token\":\"t\",\"expires_in\":7}\n", "t", 7);
	token_ok("{\"access_token\":\"t\"}", "t", 3600); /* expires_in is optional (RFC 6749) */
	const char *bad[] = {
		"",
		"null",
		"[]",
		"{\"access_token\":\"t\",\"expires_in\":3599",       /* truncated */
		"{\"access_token\":\"t\",\"expires_in\":3599} extra", /* trailing bytes */
		"{\"expires_in\":3599}",
		"{\"access_token\":\"\",\"expires_in\":3599}",
		"{\"access_token\":7,\"expires_in\":3599}",
		"{\"access_token\":\"a b\",\"expires_in\":3599}",        /* would not fit a header */
		"{\"access_token\":\"a\\r\\nX: y\",\"expires_in\":3599}", /* would add one */
		"{\"access_token\":\"t\",\"expires_in\":0}",
		"{\"access_token\":\"t\",\"expires_in\":-5}",
		"{\"access_token\":\"t\",\"expires_in\":\"3599\"}",
		"{\"access_token\":\"t\",\"expires_in\":3599,\"token_type\":\"mac\"}",
		"{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		token_bad(bad[i], strlen(bad[i]));
	token_bad(NULL, 0);
	token_bad("{\"access_token\":\"t\"}", 10); /* a length that cuts the body */
}

static const char aws_ok[] = "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-01-02T02:00:00Z\",\n"
                             "  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAEXAMPLE\",\n"
                             "  \"SecretAccessKey\" : \"wJalr/K7MDENG+bPxRfi\",\n  \"Token\" : \"IQoJb3JpZ2luX2Vj==\",\n"
                             "  \"Expiration\" : \"2026-01-02T03:04:05Z\"\n}";

static void aws_credentials(void **state)
{
	(void)state;
	os_secret s = {0};
	int64_t exp = 0;
	cairn_status st = os_json_aws_credentials(JSON(aws_ok), &s, &exp);
	assert_int_equal(st.code, CAIRN_OK);
	assert_string_equal(s.access_key, "ASIAEXAMPLE");
	assert_string_equal(s.secret_key, "wJalr/K7MDENG+bPxRfi");
	assert_string_equal(s.token, "IQoJb3JpZ2luX2Vj==");
	struct tm tm = {.tm_year = 126, .tm_mon = 0, .tm_mday = 2, .tm_hour = 3, .tm_min = 4, .tm_sec = 5};
	assert_int_equal(exp, (int64_t)timegm(&tm));
	free(s.access_key);
	free(s.secret_key);
	free(s.token);
	/* No Token: long-lived keys; fractions of a second in Expiration. */
	s = (os_secret){0};
	st = os_json_aws_credentials(JSON("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\","
	                                  "\"Expiration\":\"2026-01-02T03:04:05.123Z\"}"),
	                             &s, &exp);
	assert_int_equal(st.code, CAIRN_OK);
	assert_null(s.token);
	assert_int_equal(exp, (int64_t)timegm(&tm));
	free(s.access_key);
	free(s.secret_key);
	const char *bad[] = {
		"",
		"{\"Code\":\"Failure\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-01-02T03:04:05Z\"}",
		"{\"AccessKeyId\":\"A\",\"Expiration\":\"2026-01-02T03:04:05Z\"}",
		"{\"AccessKeyId\":\"A B\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-01-02T03:04:05Z\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"t\\n\",\"Expiration\":\"2026-01-02T03:04:05Z\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"tomorrow\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-13-02T03:04:05Z\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-01-02T03:04:05+02:00\"}",
		"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2026-01-02T03:04:05Z\"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		s = (os_secret){0};
		st = os_json_aws_credentials(JSON(bad[i]), &s, &exp);
		assert_int_not_equal(st.code, CAIRN_OK);
		assert_non_null(strstr(st.msg, "role credentials"));
		assert_null(s.access_key);
		assert_null(s.secret_key);
		assert_null(s.token);
	}
}

static void error_is(const char *body, size_t len, const char *code, const char *msg)
{
	char *c, *m;
	os_json_google_error(body, len, &c, &m);
	if (code)
		assert_string_equal(c, code);
	else
		assert_null(c);
	if (msg)
		assert_string_equal(m, msg);
	else
		assert_null(m);
	free(c);
	free(m);
}

static void google_errors(void **state)
{
	(void)state;
	error_is(JSON("{\"error\":{\"code\":400,\"message\":\"Provided MD5 hash \\\"x\\\" doesn't match\","
	              "\"errors\":[{\"message\":\"m\",\"domain\":\"global\",\"reason\":\"invalid\"}]}}"),
	         "invalid", "Provided MD5 hash \"x\" doesn't match");
	error_is(JSON("{\"error\":{\"code\":404,\"message\":\"No such object: b/o\",\"errors\":[]}}"), NULL,
	         "No such object: b/o");
	error_is(JSON("{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}"), "invalid_grant",
	         "Invalid JWT Signature.");
	/* Not JSON: its first line, when it is text (a metadata server's refusal). */
	error_is(JSON("Missing required header: Metadata-Flavor\nmore"), NULL, "Missing required header: Metadata-Flavor");
	error_is(JSON(""), NULL, NULL);
	error_is(JSON("\x01\x02binary"), NULL, NULL);
	error_is(JSON("{\"error\":{\"code\":500}}"), NULL, NULL);
	error_is(JSON("{\"error\":{\"errors\":[\"not an object\"],\"message\":\"m\"}}"), NULL, "m");
	error_is(JSON("{\"something\":1}"), NULL, NULL);
	/* A body cut at the error buffer's size is not JSON: its text is kept. */
	error_is(JSON("{\"error\":{\"message\":\"cut"), NULL, "{\"error\":{\"message\":\"cut");
}

static void list_pages(void **state)
{
	(void)state;
	char **names, *next;
	size_t n;
	cairn_status st = os_json_gcs_list(JSON("{\"kind\":\"storage#objects\",\"nextPageToken\":\"CgVhL2IvYw==\","
	                                        "\"items\":[{\"name\":\"p/cas/1\",\"size\":\"3\"},{\"name\":\"p/ac/2\"},"
	                                        "{\"name\":\"q/outside\"}]}"),
	                                   "p/", &names, &n, &next);
	assert_int_equal(st.code, CAIRN_OK);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "cas/1");
	assert_string_equal(names[1], "ac/2");
	assert_string_equal(next, "CgVhL2IvYw==");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(next);
	/* The last page has no token; an empty listing has no items at all. */
	st = os_json_gcs_list(JSON("{\"kind\":\"storage#objects\"}"), "", &names, &n, &next);
	assert_int_equal(st.code, CAIRN_OK);
	assert_int_equal(n, 0);
	assert_null(next);
	assert_null(names);
	const char *bad[] = {
		"",
		"{\"items\":[{\"name\":\"p/a\"}]",
		"{\"items\":{\"name\":\"p/a\"}}",
		"{\"items\":[{\"name\":\"p/a\"},{\"size\":\"1\"}]}",
		"{\"items\":[{\"name\":\"p/a\"},\"p/b\"]}",
		"{\"items\":[{\"name\":7}]}",
		"{\"items\":[],\"nextPageToken\":5}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		st = os_json_gcs_list(JSON(bad[i]), "p/", &names, &n, &next);
		assert_int_equal(st.code, CAIRN_INTERNAL);
		assert_non_null(strstr(st.msg, "malformed objects.list answer"));
		assert_null(names);
		assert_int_equal(n, 0);
		assert_null(next);
	}
}

static void object_sizes(void **state)
{
	(void)state;
	int64_t size = -1;
	assert_int_equal(os_json_gcs_size(JSON("{\"size\":\"1234567890123\"}"), &size).code, CAIRN_OK);
	assert_int_equal(size, INT64_C(1234567890123));
	assert_int_equal(os_json_gcs_size(JSON("{\"name\":\"x\",\"size\":\"0\"}"), &size).code, CAIRN_OK);
	assert_int_equal(size, 0);
	const char *bad[] = {"", "{}", "{\"size\":12}", "{\"size\":\"-1\"}", "{\"size\":\"12a\"}", "{\"size\":\"\"}",
	                     "{\"size\":\"99999999999999999999\"}", "{\"size\":\"1\""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(os_json_gcs_size(JSON(bad[i]), &size).code, CAIRN_INTERNAL);
}

/* ---- the credential cache ------------------------------------------------------------------------ */

typedef struct fake {
	atomic_int fetches;
	int64_t lifetime;  /* seconds */
	bool fail;
	int64_t delay_ms;  /* how long a fetch takes */
} fake;

static cairn_status fake_fetch(void *ctx, os_worker *w, os_secret *out)
{
	(void)w;
	fake *f = ctx;
	int n = atomic_fetch_add(&f->fetches, 1) + 1;
	if (f->delay_ms) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = f->delay_ms * 1000000};
		nanosleep(&ts, NULL);
	}
	if (f->fail)
		return cairn_err(CAIRN_UNAVAILABLE, "fake fetch %d failed", n);
	char t[32];
	snprintf(t, sizeof t, "token-%d", n);
	out->token = strdup(t);
	os_secret_set_lifetime(out, f->lifetime);
	return cairn_ok();
}

static const char *token_of(os_auth *a)
{
	static char t[32];
	os_secret *s;
	cairn_status st = os_auth_get(a, NULL, &s);
	assert_int_equal(st.code, CAIRN_OK);
	snprintf(t, sizeof t, "%s", s->token);
	os_secret_release(s);
	return t;
}

static void auth_caches_and_renews(void **state)
{
	(void)state;
	fake f = {.lifetime = 3600};
	os_auth *a = os_auth_new(fake_fetch, &f, NULL, "fake");
	assert_string_equal(os_auth_source(a), "fake");
	assert_int_equal(atomic_load(&f.fetches), 0); /* nothing until asked */
	assert_string_equal(token_of(a), "token-1");
	assert_string_equal(token_of(a), "token-1");
	assert_int_equal(atomic_load(&f.fetches), 1);
	/* A refused set is dropped; a request that still holds it keeps it valid to its end. */
	os_secret *held;
	assert_int_equal(os_auth_get(a, NULL, &held).code, CAIRN_OK);
	os_auth_invalidate(a, held);
	assert_string_equal(held->token, "token-1");
	assert_string_equal(token_of(a), "token-2");
	os_auth_invalidate(a, held); /* no longer current: nothing happens */
	assert_string_equal(token_of(a), "token-2");
	os_secret_release(held);
	/* A set that is due is fetched again. */
	f.lifetime = 0;
	os_secret *cur;
	assert_int_equal(os_auth_get(a, NULL, &cur).code, CAIRN_OK);
	os_auth_invalidate(a, cur);
	os_secret_release(cur);
	assert_string_equal(token_of(a), "token-3"); /* lifetime 0: due at once */
	assert_string_equal(token_of(a), "token-4");
	os_auth_free(a);
}

static void auth_failures(void **state)
{
	(void)state;
	fake f = {.lifetime = 3600, .fail = true};
	os_auth *a = os_auth_new(fake_fetch, &f, NULL, "fake");
	os_secret *s = (os_secret *)1;
	cairn_status st = os_auth_get(a, NULL, &s);
	assert_int_equal(st.code, CAIRN_UNAVAILABLE);
	assert_string_equal(st.msg, "fake fetch 1 failed");
	assert_null(s);
	/* Once there is a set, a failed renewal keeps using it while it works, without asking again at
	 * once. The set's times are moved by hand: refresh due, expiry an hour away. */
	f.fail = false;
	assert_string_equal(token_of(a), "token-2");
	assert_int_equal(os_auth_get(a, NULL, &s).code, CAIRN_OK);
	s->refresh_ns = cairn_now_ns() - 1;
	os_secret_release(s);
	f.fail = true;
	assert_string_equal(token_of(a), "token-2");
	assert_int_equal(atomic_load(&f.fetches), 3);
	assert_string_equal(token_of(a), "token-2");
	assert_int_equal(atomic_load(&f.fetches), 3); /* within the retry pause: no new fetch */
	os_auth_free(a);
	/* Fixed credentials are never fetched nor dropped. */
	a = os_auth_new_fixed(strdup("AK"), strdup("SK"), NULL, "given");
	assert_int_equal(os_auth_get(a, NULL, &s).code, CAIRN_OK);
	assert_string_equal(s->access_key, "AK");
	assert_string_equal(s->secret_key, "SK");
	assert_null(s->token);
	os_auth_invalidate(a, s);
	os_secret_release(s);
	assert_int_equal(os_auth_get(a, NULL, &s).code, CAIRN_OK);
	assert_string_equal(s->access_key, "AK");
	os_secret_release(s);
	os_auth_free(a);
}

typedef struct racer {
	os_auth *a;
	int gets;
	char first[32];
} racer;

static void *race(void *p)
{
	racer *r = p;
	for (int i = 0; i < r->gets; i++) {
		os_secret *s;
		cairn_status st = os_auth_get(r->a, NULL, &s);
		if (!cairn_is_ok(&st))
			return (void *)1;
		if (i == 0)
			snprintf(r->first, sizeof r->first, "%s", s->token);
		os_secret_release(s);
	}
	return NULL;
}

static void auth_one_fetch_for_many_threads(void **state)
{
	(void)state;
	enum { THREADS = 8 };
	fake f = {.lifetime = 3600, .delay_ms = 50};
	os_auth *a = os_auth_new(fake_fetch, &f, NULL, "fake");
	pthread_t t[THREADS];
	racer r[THREADS];
	for (int i = 0; i < THREADS; i++) {
		r[i] = (racer){.a = a, .gets = 2000};
		assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		assert_null(ret);
		assert_string_equal(r[i].first, "token-1"); /* those that came during the fetch waited for it */
	}
	assert_int_equal(atomic_load(&f.fetches), 1);
	os_auth_free(a);
}

static void lifetimes(void **state)
{
	(void)state;
	os_secret s = {0};
	int64_t now = cairn_now_ns();
	os_secret_set_lifetime(&s, 3600);
	/* An hour's token: renewed five minutes before its end. */
	assert_true(s.expires_ns - now >= INT64_C(3600) * 1000000000 && s.expires_ns - now < INT64_C(3601) * 1000000000);
	assert_true(s.expires_ns - s.refresh_ns == INT64_C(300) * 1000000000);
	/* A short one: at three quarters of its life. */
	os_secret_set_lifetime(&s, 4);
	assert_true(s.expires_ns - s.refresh_ns == INT64_C(1) * 1000000000);
	os_secret_set_lifetime(&s, -10);
	assert_true(s.refresh_ns <= cairn_now_ns() && s.expires_ns == s.refresh_ns);
}

/* ---- choosing the API and the credentials ------------------------------------------------------------ */

static void keys_select_the_api(void **state)
{
	(void)state;
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	objstore_config cfg = {.url = "s3://b/p"};
	assert_false(os_keys_given(&cfg));
	objstore *s = (objstore *)1;
	cairn_status st = objstore_open(&cfg, &s);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_string_equal(st.msg, "object store s3://b/p: no keys given (access_key, AWS_ACCESS_KEY_ID), and EC2 instance "
	                            "metadata is disabled (AWS_EC2_METADATA_DISABLED)");
	assert_null(s);
	setenv("AWS_SECRET_ACCESS_KEY", "sk", 1);
	assert_true(os_keys_given(&cfg));
	st = objstore_open(&cfg, &s); /* half a key pair is reported, not completed from elsewhere */
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "AWS_ACCESS_KEY_ID"));
	unsetenv("AWS_SECRET_ACCESS_KEY");
	/* gs:// without keys: the JSON API, whose key file must exist (nothing is sent before that). */
	cfg = (objstore_config){.url = "gs://b/p", .gcs_credentials_file = "/nonexistent/sa.json"};
	st = objstore_open(&cfg, &s);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_string_equal(st.msg, "object store gs://b/p: service-account key file /nonexistent/sa.json: No such file or "
	                            "directory");
	/* gs:// with HMAC keys: the XML API, which needs no request to open. */
	cfg.access_key = "ak";
	cfg.secret_key = "sk";
	cfg.endpoint = "http://127.0.0.1:1";
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_OK);
	objstore_close(s);
	/* The JSON API's chunks are multiples of 256 KiB, and what it sends from memory is bounded. */
	cfg = (objstore_config){.url = "gs://b/p", .part_size = (5 << 20) + 1};
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_INVALID_ARGUMENT);
	cfg = (objstore_config){.url = "gs://b/p", .multipart_threshold = INT64_C(1) << 30};
	assert_int_equal(objstore_open(&cfg, &s).code, CAIRN_INVALID_ARGUMENT);
	unsetenv("AWS_EC2_METADATA_DISABLED");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(base64_both_alphabets),
		cmocka_unit_test_setup_teardown(jwt_is_signed_rs256, make_key, free_key),
		cmocka_unit_test_setup_teardown(key_files, make_key, free_key),
		cmocka_unit_test(token_answers),
		cmocka_unit_test(aws_credentials),
		cmocka_unit_test(google_errors),
		cmocka_unit_test(list_pages),
		cmocka_unit_test(object_sizes),
		cmocka_unit_test(auth_caches_and_renews),
		cmocka_unit_test(auth_failures),
		cmocka_unit_test(auth_one_fetch_for_many_threads),
		cmocka_unit_test(lifetimes),
		cmocka_unit_test(keys_select_the_api),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
