/* Unit tests of the gateway's ByteStream resource-name parser, its in-memory action cache, and GetTree
 * (through a real server on loopback over a blob store in memory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/internal.h"

/* ---- helpers ---- */

/* Any 64 lowercase hex characters name a digest; the parser does not care what they hash. */
static const char *HASH = "fa1a6bfe6a5e3fc5dd0f9e9fa3ec4e2d09d1f5bcb3b48ba9a3d845d7e1a4c0d3";

static cairn_digest digest_of(const char *s)
{
	cairn_digest d;
	cairn_digest_of(s, strlen(s), &d);
	return d;
}

static cairn_status parse_read(const char *name, gateway_resource *r)
{
	return gateway_parse_read_resource(name, strlen(name), r);
}

static cairn_status parse_write(const char *name, gateway_resource *r)
{
	return gateway_parse_write_resource(name, strlen(name), r);
}

static void assert_invalid(cairn_status st, const char *name, const char *needle)
{
	if (st.code != CAIRN_INVALID_ARGUMENT)
		fail_msg("expected INVALID_ARGUMENT for \"%s\", got %s", name, cairn_status_str(&st));
	assert_true(st.msg[0] != '\0');
	if (needle && !strstr(st.msg, needle))
		fail_msg("message for \"%s\" is \"%s\", which does not mention \"%s\"", name, st.msg, needle);
}

static void expect_read_invalid(const char *name, const char *needle)
{
	gateway_resource r;
	assert_invalid(parse_read(name, &r), name, needle);
}

static void expect_write_invalid(const char *name, const char *needle)
{
	gateway_resource r;
	assert_invalid(parse_write(name, &r), name, needle);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	static _Thread_local char buf[8][8192];
	static _Thread_local int next;
	char *out = buf[next++ % 8];
	va_list ap;
	va_start(ap, f);
	vsnprintf(out, sizeof buf[0], f, ap);
	va_end(ap);
	return out;
}

static void assert_digest_is(const cairn_digest *d, const char *hex, int64_t size)
{
	char got[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(d->hash, got);
	assert_string_equal(got, hex);
	assert_int_equal(d->size, size);
}

/* ---- read names ---- */

static void test_read_empty_instance(void **state)
{
	(void)state;
	const char *name = fmt("blobs/%s/123", HASH);
	gateway_resource r;
	cairn_status st = parse_read(name, &r);
	assert_int_equal(st.code, CAIRN_OK);
	assert_int_equal(r.instance_len, 0);
	assert_int_equal(r.compressor, GATEWAY_IDENTITY);
	assert_null(r.uuid);
	assert_digest_is(&r.digest, HASH, 123);
}

static void test_read_multi_segment_instance(void **state)
{
	(void)state;
	const char *name = fmt("main/team-a/x86_64/blobs/%s/0", HASH);
	gateway_resource r;
	assert_int_equal(parse_read(name, &r).code, CAIRN_OK);
	assert_ptr_equal(r.instance, name); /* points into the input */
	assert_int_equal(r.instance_len, strlen("main/team-a/x86_64"));
	assert_digest_is(&r.digest, HASH, 0);
}

static void test_read_compressed_zstd(void **state)
{
	(void)state;
	const char *name = fmt("inst/compressed-blobs/zstd/%s/4096", HASH);
	gateway_resource r;
	assert_int_equal(parse_read(name, &r).code, CAIRN_OK);
	assert_int_equal(r.compressor, GATEWAY_ZSTD);
	assert_int_equal(r.instance_len, 4);
	assert_memory_equal(r.instance, "inst", 4);
	assert_digest_is(&r.digest, HASH, 4096);
}

static void test_read_largest_size_accepted(void **state)
{
	(void)state;
	gateway_resource r;
	assert_int_equal(parse_read(fmt("blobs/%s/%lld", HASH, (long long)CAIRN_MAX_BLOB_SIZE), &r).code, CAIRN_OK);
	assert_int_equal(r.digest.size, CAIRN_MAX_BLOB_SIZE);
}

/* ---- write names ---- */

static void test_write_plain(void **state)
{
	(void)state;
	const char *name = fmt("inst/uploads/3f2a9c1e-0b7d-4e55-9a61-2c8f0e4d7b19/blobs/%s/10", HASH);
	gateway_resource r;
	assert_int_equal(parse_write(name, &r).code, CAIRN_OK);
	assert_int_equal(r.instance_len, 4);
	assert_ptr_equal(r.uuid, name + strlen("inst/uploads/"));
	assert_int_equal(r.uuid_len, 36);
	assert_int_equal(r.compressor, GATEWAY_IDENTITY);
	assert_digest_is(&r.digest, HASH, 10);
}

static void test_write_trailing_metadata_ignored(void **state)
{
	(void)state;
	gateway_resource r;
	assert_int_equal(parse_write(fmt("uploads/u1/blobs/%s/10/foo/bar/baz.cc", HASH), &r).code, CAIRN_OK);
	assert_int_equal(r.instance_len, 0);
	assert_int_equal(r.uuid_len, 2);
	assert_digest_is(&r.digest, HASH, 10);
	/* Metadata may contain keywords and empty segments: it is not looked at. */
	assert_int_equal(parse_write(fmt("uploads/u1/blobs/%s/10//blobs/../x", HASH), &r).code, CAIRN_OK);
	assert_int_equal(parse_write(fmt("uploads/u1/blobs/%s/10/", HASH), &r).code, CAIRN_OK);
}

static void test_write_compressed(void **state)
{
	(void)state;
	gateway_resource r;
	assert_int_equal(parse_write(fmt("a/b/uploads/u/compressed-blobs/zstd/%s/77/meta", HASH), &r).code, CAIRN_OK);
	assert_int_equal(r.compressor, GATEWAY_ZSTD);
	assert_int_equal(r.instance_len, 3);
	assert_digest_is(&r.digest, HASH, 77);
}

static void test_write_uuid_of_128_bytes_accepted(void **state)
{
	(void)state;
	char uuid[129];
	memset(uuid, 'u', 128);
	uuid[128] = 0;
	gateway_resource r;
	assert_int_equal(parse_write(fmt("uploads/%s/blobs/%s/1", uuid, HASH), &r).code, CAIRN_OK);
	assert_int_equal(r.uuid_len, 128);
}

/* ---- rejections ---- */

static void test_reject_empty_name(void **state)
{
	(void)state;
	expect_read_invalid("", "empty");
	expect_write_invalid("", "empty");
}

static void test_reject_nul_byte(void **state)
{
	(void)state;
	char name[256];
	int n = snprintf(name, sizeof name, "blobs/%s/5", HASH);
	name[2] = '\0'; /* "bl\0bs/…" */
	gateway_resource r;
	assert_invalid(gateway_parse_read_resource(name, (size_t)n, &r), "bl\\0bs/…", "NUL");
	n = snprintf(name, sizeof name, "uploads/u/blobs/%s/5/meta", HASH);
	name[n - 2] = '\0'; /* even in the ignored metadata */
	assert_invalid(gateway_parse_write_resource(name, (size_t)n, &r), "…/me\\0a", "NUL");
}

static void test_reject_name_longer_than_4096(void **state)
{
	(void)state;
	char inst[5000];
	/* An instance name that makes the whole read name exactly 4096 bytes is fine… */
	size_t tail = strlen(fmt("/blobs/%s/1", HASH));
	memset(inst, 'i', 4096 - tail);
	inst[4096 - tail] = 0;
	gateway_resource r;
	assert_int_equal(parse_read(fmt("%s/blobs/%s/1", inst, HASH), &r).code, CAIRN_OK);
	/* …one byte more is not. */
	memset(inst, 'i', 4097 - tail);
	inst[4097 - tail] = 0;
	expect_read_invalid(fmt("%s/blobs/%s/1", inst, HASH), "4096");
	expect_write_invalid(fmt("uploads/u/blobs/%s/1/%s", HASH, inst), "4096");
}

static void test_reject_dot_segments_in_instance(void **state)
{
	(void)state;
	expect_read_invalid(fmt("./blobs/%s/1", HASH), "\".\"");
	expect_read_invalid(fmt("a/../blobs/%s/1", HASH), "\"..\"");
	expect_write_invalid(fmt("a/./uploads/u/blobs/%s/1", HASH), "\".\"");
}

static void test_reject_empty_segments_in_instance(void **state)
{
	(void)state;
	expect_read_invalid(fmt("a//blobs/%s/1", HASH), "empty segment");
	expect_read_invalid(fmt("/blobs/%s/1", HASH), "empty segment");
	expect_read_invalid(fmt("a/blobs//%s/1", HASH), "hash is missing");
	expect_write_invalid(fmt("a//uploads/u/blobs/%s/1", HASH), "empty segment");
}

static void test_reject_reserved_keyword_in_instance(void **state)
{
	(void)state;
	expect_read_invalid(fmt("a/actions/blobs/%s/1", HASH), "reserved");
	expect_read_invalid(fmt("uploads/u/blobs/%s/1", HASH), "reserved"); /* a write name given to Read */
	expect_write_invalid(fmt("blobs/uploads/u/blobs/%s/1", HASH), "reserved");
	expect_write_invalid(fmt("capabilities/uploads/u/blobs/%s/1", HASH), "reserved");
}

static void test_reject_missing_keyword(void **state)
{
	(void)state;
	expect_read_invalid(fmt("inst/%s/1", HASH), "blobs/");
	expect_read_invalid("just-an-instance", "blobs/");
	expect_write_invalid(fmt("inst/blobs/%s/1", HASH), "uploads/"); /* a read name given to Write */
}

static void test_reject_missing_size(void **state)
{
	(void)state;
	expect_read_invalid(fmt("blobs/%s", HASH), "size");
	expect_read_invalid(fmt("blobs/%s/", HASH), "size");
	expect_write_invalid(fmt("uploads/u/blobs/%s", HASH), "size");
	expect_write_invalid(fmt("uploads/u/blobs/%s//meta", HASH), "size");
	expect_read_invalid("blobs", "hash");
	expect_read_invalid("blobs/", "hash");
}

static void test_reject_non_hex_hash(void **state)
{
	(void)state;
	char bad[CAIRN_HASH_HEX_LEN + 1];
	memcpy(bad, HASH, sizeof bad);
	bad[10] = 'g';
	expect_read_invalid(fmt("blobs/%s/1", bad), "hex");
	expect_write_invalid(fmt("uploads/u/blobs/%s/1", bad), "hex");
}

static void test_reject_upper_case_hex(void **state)
{
	(void)state;
	char upper[CAIRN_HASH_HEX_LEN + 1];
	memcpy(upper, HASH, sizeof upper);
	upper[0] = 'F';
	expect_read_invalid(fmt("blobs/%s/1", upper), "lowercase");
	expect_write_invalid(fmt("uploads/u/compressed-blobs/zstd/%s/1", upper), "lowercase");
}

static void test_reject_wrong_hash_length(void **state)
{
	(void)state;
	expect_read_invalid(fmt("blobs/%.63s/1", HASH), "63");
	expect_read_invalid(fmt("blobs/%s0/1", HASH), "65");
	/* A 40-character SHA-1 hash: cairn speaks SHA-256 only. */
	expect_read_invalid(fmt("blobs/%.40s/1", HASH), "40");
}

static void test_reject_digest_function_segment(void **state)
{
	(void)state;
	expect_read_invalid(fmt("blobs/blake3/%s/1", HASH), "blake3");
	expect_write_invalid(fmt("uploads/u/blobs/sha256/%s/1", HASH), "sha256");
}

static void test_reject_negative_size(void **state)
{
	(void)state;
	expect_read_invalid(fmt("blobs/%s/-1", HASH), "negative");
	expect_write_invalid(fmt("uploads/u/blobs/%s/-5/meta", HASH), "negative");
}

static void test_reject_malformed_or_absurd_size(void **state)
{
	(void)state;
	expect_read_invalid(fmt("blobs/%s/+5", HASH), "decimal");
	expect_read_invalid(fmt("blobs/%s/ 5", HASH), "decimal");
	expect_read_invalid(fmt("blobs/%s/5 ", HASH), "decimal");
	expect_read_invalid(fmt("blobs/%s/0x10", HASH), "decimal");
	expect_read_invalid(fmt("blobs/%s/%lld", HASH, (long long)CAIRN_MAX_BLOB_SIZE + 1), "larger");
	expect_read_invalid(fmt("blobs/%s/9223372036854775807", HASH), "larger");
	expect_read_invalid(fmt("blobs/%s/99999999999999999999", HASH), "digits"); /* 20 digits */
	expect_read_invalid(fmt("blobs/%s/18446744073709551617", HASH), "digits"); /* wraps uint64 */
	expect_write_invalid(fmt("uploads/u/blobs/%s/99999999999999999999/meta", HASH), "digits");
}

static void test_reject_trailing_garbage_in_read_name(void **state)
{
	(void)state;
	expect_read_invalid(fmt("blobs/%s/5/extra", HASH), "after the size");
	expect_read_invalid(fmt("blobs/%s/5/", HASH), "after the size");
	expect_read_invalid(fmt("compressed-blobs/zstd/%s/5/x", HASH), "after the size");
	expect_read_invalid(fmt("blobs/%s/5x", HASH), "decimal");
}

static void test_reject_unknown_compressor(void **state)
{
	(void)state;
	expect_read_invalid(fmt("compressed-blobs/gzip/%s/5", HASH), "compressor \"gzip\" is not supported");
	expect_read_invalid(fmt("compressed-blobs/deflate/%s/5", HASH), "deflate");
	expect_write_invalid(fmt("uploads/u/compressed-blobs/brotli/%s/5", HASH), "brotli");
	expect_read_invalid(fmt("compressed-blobs/%s/5", HASH), "not supported"); /* compressor left out */
	expect_read_invalid("compressed-blobs", "compressor");
	expect_read_invalid(fmt("compressed-blobs//%s/5", HASH), "compressor");
}

static void test_reject_identity_compressor(void **state)
{
	(void)state;
	expect_read_invalid(fmt("compressed-blobs/identity/%s/5", HASH), "identity");
	expect_write_invalid(fmt("uploads/u/compressed-blobs/identity/%s/5", HASH), "identity");
}

static void test_reject_missing_or_bad_uuid(void **state)
{
	(void)state;
	expect_write_invalid(fmt("uploads/blobs/%s/5", HASH), "uuid");
	expect_write_invalid(fmt("uploads//blobs/%s/5", HASH), "uuid");
	expect_write_invalid("uploads", "uuid");
	char uuid[130];
	memset(uuid, 'u', 129);
	uuid[129] = 0;
	expect_write_invalid(fmt("uploads/%s/blobs/%s/5", uuid, HASH), "128");
	expect_write_invalid(fmt("uploads/u/%s/5", HASH), "blobs/");
	expect_write_invalid("uploads/u", "blobs/");
}

/* ---- the action cache ---- */

/* What the store charges per entry beyond its two strings: an empty result with an empty instance. */
static int64_t entry_overhead(void)
{
	ac_store *s = gw_ac_store_new(1 << 20);
	cairn_digest d = digest_of("overhead");
	assert_int_equal(gw_ac_store_put(s, "", &d, "", 0).code, CAIRN_OK);
	int64_t o = gw_ac_store_bytes(s);
	gw_ac_store_free(s);
	assert_true(o > 0);
	return o;
}

static void assert_holds(ac_store *s, const char *inst, const cairn_digest *d, const void *want, size_t want_len)
{
	uint8_t *data;
	size_t len;
	if (!gw_ac_store_get(s, inst, d, &data, &len))
		fail_msg("entry for instance \"%s\" is missing", inst);
	assert_int_equal(len, want_len);
	assert_memory_equal(data, want, want_len);
	free(data);
}

static bool holds(ac_store *s, const char *inst, const cairn_digest *d)
{
	uint8_t *data;
	size_t len;
	bool found = gw_ac_store_get(s, inst, d, &data, &len);
	free(data);
	return found;
}

/* ---- interrupted uploads ---- */

/* A blob store whose writers only count how many were opened and aborted. */
static int writers_opened, writers_aborted;

static cairn_status counting_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out)
{
	blobstore_writer *w = calloc(1, sizeof *w);
	w->ops = bs->ops;
	w->digest = *d;
	writers_opened++;
	*out = w;
	return cairn_ok();
}

static void counting_abort(blobstore_writer *w)
{
	writers_aborted++;
	free(w);
}

/* An upload nobody resumes is dropped once idle for longer than the limit, not before, even if no other
 * upload comes to be parked: its blob is aborted, which frees what it reserved. The table's clock is
 * the time each call is given, so the test steps it exactly across the limit. */
static void test_idle_uploads_expire(void **state)
{
	(void)state;
	static const blobstore_ops ops = {.open_write = counting_open_write, .abort = counting_abort};
	blobstore bs = {.ops = &ops};
	writers_opened = writers_aborted = 0;
	const char *old_name = "i/uploads/u1/blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0";
	const char *new_name = "i/uploads/u2/blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0";
	const int64_t idle = 200 * 1000000LL, t0 = 1000 * 1000000LL;
	struct upload_table *t = gw_upload_table_new(16, idle);
	upload *up;
	assert_int_equal(gw_upload_new(&bs, old_name, &up).code, CAIRN_OK);
	up->committed = 7;
	gw_upload_park(t, up, t0);
	gw_upload_table_expire(t, t0 + idle);
	assert_int_equal(gw_upload_committed(t, old_name), 7); /* idle exactly the limit: kept */
	assert_int_equal(writers_aborted, 0);
	assert_int_equal(gw_upload_new(&bs, new_name, &up).code, CAIRN_OK);
	gw_upload_park(t, up, t0 + idle + 1); /* parking expires the old one too */
	assert_int_equal(gw_upload_committed(t, old_name), -1);
	assert_int_equal(gw_upload_committed(t, new_name), 0);
	assert_int_equal(writers_aborted, 1);
	gw_upload_table_expire(t, t0 + 2 * idle + 1);
	assert_int_equal(gw_upload_committed(t, new_name), 0); /* the new one is not idle too long yet */
	gw_upload_table_expire(t, t0 + 2 * idle + 2); /* and then the housekeeping drops it, with nothing else going on */
	assert_int_equal(gw_upload_committed(t, new_name), -1);
	assert_int_equal(writers_aborted, 2);
	assert_int_equal(writers_opened, 2);
	gw_upload_table_free(t);
}

static void test_ac_put_get_round_trip(void **state)
{
	(void)state;
	ac_store *s = gw_ac_store_new(1 << 20);
	cairn_digest d = digest_of("action-1"), other = digest_of("action-2");
	static const uint8_t result[] = {0x12, 0x05, 'h', 'e', 'l', 'l', 'o', 0x00, 0xff};
	assert_int_equal(gw_ac_store_put(s, "", &d, result, sizeof result).code, CAIRN_OK);
	assert_holds(s, "", &d, result, sizeof result);
	uint8_t *data = (uint8_t *)1;
	size_t len = 7;
	assert_false(gw_ac_store_get(s, "", &other, &data, &len));
	assert_null(data);
	assert_int_equal(len, 0);
	/* The size is part of the digest: the right hash with another size names another action. */
	for (int64_t delta = -1; delta <= 1; delta += 2) {
		cairn_digest resized = d;
		resized.size += delta;
		assert_false(holds(s, "", &resized));
		gw_ac_store_remove(s, "", &resized); /* and removing it leaves the entry alone */
	}
	assert_holds(s, "", &d, result, sizeof result);
	cairn_digest resized = d;
	resized.size = 0;
	assert_int_equal(gw_ac_store_put(s, "", &resized, "other", 5).code, CAIRN_OK);
	assert_holds(s, "", &resized, "other", 5);
	assert_holds(s, "", &d, result, sizeof result);
	gw_ac_store_remove(s, "", &resized);
	/* The store keeps its own copy. */
	uint8_t buf[4] = {1, 2, 3, 4};
	assert_int_equal(gw_ac_store_put(s, "", &other, buf, sizeof buf).code, CAIRN_OK);
	buf[0] = 9;
	assert_holds(s, "", &other, "\x01\x02\x03\x04", 4);
	gw_ac_store_free(s);
}

static void test_ac_separate_per_instance(void **state)
{
	(void)state;
	ac_store *s = gw_ac_store_new(1 << 20);
	cairn_digest d = digest_of("action");
	assert_int_equal(gw_ac_store_put(s, "a", &d, "A", 1).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_put(s, "b", &d, "BB", 2).code, CAIRN_OK);
	assert_false(holds(s, "", &d));
	assert_false(holds(s, "ab", &d));
	assert_holds(s, "a", &d, "A", 1);
	assert_holds(s, "b", &d, "BB", 2);
	assert_int_equal(gw_ac_store_count(s), 2);
	gw_ac_store_remove(s, "a", &d);
	assert_false(holds(s, "a", &d));
	assert_holds(s, "b", &d, "BB", 2);
	gw_ac_store_free(s);
}

static void test_ac_put_replaces(void **state)
{
	(void)state;
	int64_t o = entry_overhead();
	ac_store *s = gw_ac_store_new(1 << 20);
	cairn_digest d = digest_of("action");
	assert_int_equal(gw_ac_store_put(s, "inst", &d, "first result", 12).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_put(s, "inst", &d, "second", 6).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_count(s), 1);
	assert_int_equal(gw_ac_store_bytes(s), 6 + 4 + o);
	assert_holds(s, "inst", &d, "second", 6);
	gw_ac_store_free(s);
}

/* A restored entry never replaces one the clients put, and never evicts anything to make room. */
static void test_ac_restore_fills_only_free_room(void **state)
{
	(void)state;
	int64_t o = entry_overhead();
	char value[100];
	memset(value, 'v', sizeof value);
	ac_store *s = gw_ac_store_new(2 * (o + 100)); /* room for exactly two entries */
	cairn_digest a = digest_of("a"), b = digest_of("b"), c = digest_of("c");
	assert_int_equal(gw_ac_store_put(s, "", &a, "fresh", 5).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_restore(s, "", &a, value, 100).code, CAIRN_ALREADY_EXISTS);
	assert_holds(s, "", &a, "fresh", 5);
	assert_int_equal(gw_ac_store_restore(s, "", &b, value, 100).code, CAIRN_OK);
	assert_holds(s, "", &b, value, 100);
	assert_int_equal(gw_ac_store_restore(s, "", &c, value, 100).code, CAIRN_RESOURCE_EXHAUSTED);
	assert_false(holds(s, "", &c));
	assert_int_equal(gw_ac_store_count(s), 2);
	assert_int_equal(gw_ac_store_restore(s, "other", &a, value, 100).code, CAIRN_RESOURCE_EXHAUSTED);
	gw_ac_store_free(s);
}

static void test_ac_evicts_least_recently_used(void **state)
{
	(void)state;
	int64_t o = entry_overhead();
	char value[100];
	memset(value, 'v', sizeof value);
	ac_store *s = gw_ac_store_new(3 * (o + 100)); /* room for exactly three entries */
	cairn_digest a = digest_of("a"), b = digest_of("b"), c = digest_of("c"), d = digest_of("d"),
	             e = digest_of("e");
	assert_int_equal(gw_ac_store_put(s, "", &a, value, 100).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_put(s, "", &b, value, 100).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_put(s, "", &c, value, 100).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_count(s), 3);
	assert_true(holds(s, "", &a)); /* a is now the most recently used; b the least */
	assert_int_equal(gw_ac_store_put(s, "", &d, value, 100).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_count(s), 3);
	assert_false(holds(s, "", &b));
	/* c was put before a was read, so c is now the oldest. */
	assert_int_equal(gw_ac_store_put(s, "", &e, value, 100).code, CAIRN_OK);
	assert_false(holds(s, "", &c));
	assert_true(holds(s, "", &a));
	assert_true(holds(s, "", &d));
	assert_true(holds(s, "", &e));
	/* Order of use: a, d, e. An entry charged as much as two pushes out the two oldest. */
	cairn_digest f = digest_of("f");
	static char big[1000];
	assert_true(o + 200 <= (int64_t)sizeof big);
	assert_int_equal(gw_ac_store_put(s, "", &f, big, (size_t)(o + 200)).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_count(s), 2);
	assert_int_equal(gw_ac_store_bytes(s), 3 * (o + 100));
	assert_false(holds(s, "", &a));
	assert_false(holds(s, "", &d));
	assert_true(holds(s, "", &e));
	assert_true(holds(s, "", &f));
	gw_ac_store_free(s);
}

static void test_ac_oversize_entry_refused(void **state)
{
	(void)state;
	int64_t o = entry_overhead();
	ac_store *s = gw_ac_store_new(1000);
	cairn_digest d = digest_of("action"), big = digest_of("big");
	assert_int_equal(gw_ac_store_put(s, "i", &d, "kept", 4).code, CAIRN_OK);
	static uint8_t huge[2000];
	cairn_status st = gw_ac_store_put(s, "i", &big, huge, sizeof huge);
	assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(st.msg, "--ac_max_size"));
	/* Refused for the same key: the old entry stays. */
	st = gw_ac_store_put(s, "i", &d, huge, sizeof huge);
	assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
	assert_int_equal(gw_ac_store_count(s), 1);
	assert_holds(s, "i", &d, "kept", 4);
	/* Exactly the limit fits, and pushes everything else out. */
	size_t fits = (size_t)(1000 - o - 1);
	assert_int_equal(gw_ac_store_put(s, "i", &big, huge, fits).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_bytes(s), 1000);
	assert_int_equal(gw_ac_store_count(s), 1);
	assert_false(holds(s, "i", &d));
	/* One byte more does not, counting the instance name. */
	assert_int_equal(gw_ac_store_put(s, "ii", &big, huge, fits).code, CAIRN_RESOURCE_EXHAUSTED);
	gw_ac_store_free(s);
	/* A store of size zero (or a negative size) refuses everything. */
	for (int64_t max = 0; max >= -1; max--) {
		s = gw_ac_store_new(max);
		assert_int_equal(gw_ac_store_put(s, "", &d, "", 0).code, CAIRN_RESOURCE_EXHAUSTED);
		assert_int_equal(gw_ac_store_count(s), 0);
		gw_ac_store_free(s);
	}
}

static void test_ac_counts_and_bytes(void **state)
{
	(void)state;
	int64_t o = entry_overhead();
	assert_true(o >= 64); /* the bookkeeping is charged, not just the payload */
	ac_store *s = gw_ac_store_new(1 << 20);
	assert_int_equal(gw_ac_store_count(s), 0);
	assert_int_equal(gw_ac_store_bytes(s), 0);
	cairn_digest d1 = digest_of("1"), d2 = digest_of("2");
	assert_int_equal(gw_ac_store_put(s, "", &d1, "abc", 3).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_put(s, "main/x", &d1, "abcdefgh", 8).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_put(s, "main/x", &d2, "", 0).code, CAIRN_OK);
	assert_int_equal(gw_ac_store_count(s), 3);
	assert_int_equal(gw_ac_store_bytes(s), (3 + o) + (8 + 6 + o) + (0 + 6 + o));
	gw_ac_store_remove(s, "main/x", &d1);
	assert_int_equal(gw_ac_store_count(s), 2);
	assert_int_equal(gw_ac_store_bytes(s), (3 + o) + (6 + o));
	gw_ac_store_remove(s, "main/x", &d1); /* absent: no change */
	assert_int_equal(gw_ac_store_count(s), 2);
	gw_ac_store_remove(s, "", &d1);
	gw_ac_store_remove(s, "main/x", &d2);
	assert_int_equal(gw_ac_store_count(s), 0);
	assert_int_equal(gw_ac_store_bytes(s), 0);
	/* Many entries (the table grows) all stay reachable. */
	for (int i = 0; i < 5000; i++) {
		cairn_digest d = digest_of(fmt("many-%d", i));
		assert_int_equal(gw_ac_store_put(s, "m", &d, &i, sizeof i).code, CAIRN_OK);
	}
	assert_int_equal(gw_ac_store_count(s), 5000);
	assert_int_equal(gw_ac_store_bytes(s), 5000 * (int64_t)(sizeof(int) + 1 + o));
	for (int i = 0; i < 5000; i++) {
		cairn_digest d = digest_of(fmt("many-%d", i));
		assert_holds(s, "m", &d, &i, sizeof i);
	}
	gw_ac_store_free(s);
}

/* ---- the action cache under concurrency ---- */

#define CC_THREADS 4
#define CC_INSTANCES 4
#define CC_ACTIONS 64
#define CC_OPS 20000

typedef struct cc_ctx {
	ac_store *s;
	cairn_digest actions[CC_ACTIONS];
	int64_t overhead;
	unsigned seed;
	int bad_values; /* values that did not belong to their key */
} cc_ctx;

static const char *cc_instance(int i)
{
	static const char *const names[CC_INSTANCES] = {"", "a", "team/b", "team/ccc"};
	return names[i];
}

/* A value names its key in its first two bytes and has a length that varies with the writer. */
static size_t cc_value(int inst, int action, unsigned salt, uint8_t *out)
{
	size_t len = 2 + (salt % 200);
	out[0] = (uint8_t)inst;
	out[1] = (uint8_t)action;
	for (size_t i = 2; i < len; i++)
		out[i] = (uint8_t)(inst * 31 + action + i);
	return len;
}

static void *cc_worker(void *arg)
{
	cc_ctx *c = arg;
	unsigned seed = c->seed;
	uint8_t value[256];
	for (int n = 0; n < CC_OPS; n++) {
		unsigned r = (unsigned)rand_r(&seed);
		int inst = (int)(r % CC_INSTANCES), action = (int)((r >> 4) % CC_ACTIONS);
		unsigned op = (r >> 12) % 10;
		if (op < 5) {
			size_t len = cc_value(inst, action, r >> 16, value);
			cairn_status st = gw_ac_store_put(c->s, cc_instance(inst), &c->actions[action], value, len);
			if (st.code != CAIRN_OK)
				c->bad_values++;
		} else if (op < 9) {
			uint8_t *data;
			size_t len;
			if (gw_ac_store_get(c->s, cc_instance(inst), &c->actions[action], &data, &len)) {
				uint8_t want[256];
				size_t want_len = cc_value(inst, action, (unsigned)(len - 2), want);
				if (len != want_len || memcmp(data, want, len) != 0)
					c->bad_values++;
				free(data);
			}
		} else {
			gw_ac_store_remove(c->s, cc_instance(inst), &c->actions[action]);
		}
	}
	return NULL;
}

static void test_ac_concurrent_accounting(void **state)
{
	(void)state;
	int64_t o = entry_overhead();
	/* Room for about a quarter of the keys, so that eviction runs all the time. */
	int64_t max = (CC_INSTANCES * CC_ACTIONS / 4) * (o + 100);
	ac_store *s = gw_ac_store_new(max);
	cc_ctx ctx[CC_THREADS];
	pthread_t t[CC_THREADS];
	for (int i = 0; i < CC_THREADS; i++) {
		ctx[i] = (cc_ctx){.s = s, .overhead = o, .seed = 1234u + (unsigned)i};
		for (int a = 0; a < CC_ACTIONS; a++)
			ctx[i].actions[a] = digest_of(fmt("cc-action-%d", a));
		assert_int_equal(pthread_create(&t[i], NULL, cc_worker, &ctx[i]), 0);
	}
	for (int i = 0; i < CC_THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(ctx[i].bad_values, 0);
	}
	/* The counters agree with what is actually held. */
	size_t count = 0;
	int64_t bytes = 0;
	for (int i = 0; i < CC_INSTANCES; i++) {
		for (int a = 0; a < CC_ACTIONS; a++) {
			uint8_t *data;
			size_t len;
			if (gw_ac_store_get(s, cc_instance(i), &ctx[0].actions[a], &data, &len)) {
				count++;
				bytes += (int64_t)(len + strlen(cc_instance(i))) + o;
				free(data);
			}
		}
	}
	assert_true(count > 0);
	assert_int_equal(gw_ac_store_count(s), count);
	assert_int_equal(gw_ac_store_bytes(s), bytes);
	assert_true(bytes <= max);
	gw_ac_store_free(s);
}

/* ---- GetTree, through a real server over a blob store in memory ---- */

typedef Build__Bazel__Remote__Execution__V2__DirectoryNode re_dir_node;
typedef Build__Bazel__Remote__Execution__V2__FileNode re_file_node;

#define MEM_BLOBS 16
/* The blobs of the store: tests fill it before they start the server, which only reads it. */
static struct mem_blob {
	cairn_digest d;
	uint8_t *data;
	size_t len;
} mem[MEM_BLOBS];
static size_t nmem;

typedef struct mem_reader {
	blobstore_reader base;
	const struct mem_blob *b;
} mem_reader;

static void mem_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg)
{
	for (size_t i = 0; i < nmem; i++) {
		if (cairn_digest_eq(&mem[i].d, d)) {
			mem_reader *r = calloc(1, sizeof *r);
			*r = (mem_reader){.base = {.ops = bs->ops, .size = (int64_t)mem[i].len}, .b = &mem[i]};
			cb(arg, cairn_ok(), &r->base);
			return;
		}
	}
	cb(arg, cairn_err(CAIRN_NOT_FOUND, "not in the test's store"), NULL);
}

static void mem_read(blobstore_reader *r, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg)
{
	const struct mem_blob *b = ((mem_reader *)r)->b;
	size_t n = off < b->len ? b->len - off : 0;
	n = n < len ? n : len;
	memcpy(buf, b->data + off, n);
	cb(arg, cairn_ok(), n);
}

static void mem_close_read(blobstore_reader *r) { free(r); }

/* Adds a blob to the store (unless held is false: then it only gets its digest). */
static cairn_digest mem_blob_add(const void *data, size_t len, bool held)
{
	cairn_digest d;
	cairn_digest_of(data, len, &d);
	if (held) {
		assert_true(nmem < MEM_BLOBS);
		mem[nmem++] = (struct mem_blob){.d = d, .data = memcpy(malloc(len ? len : 1), data, len), .len = len};
	}
	return d;
}

/* A Directory with the given subdirectories and nfiles files (named long enough to make it big),
 * added to the store when held. */
static cairn_digest mem_dir_add(const cairn_digest *subdirs, size_t nsub, size_t nfiles, bool held)
{
	re_directory dir = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT;
	re_dir_node *dn = calloc(nsub + 1, sizeof *dn), **dps = calloc(nsub + 1, sizeof *dps);
	re_file_node *fn = calloc(nfiles + 1, sizeof *fn), **fps = calloc(nfiles + 1, sizeof *fps);
	re_digest *pbs = calloc(nsub + nfiles + 1, sizeof *pbs);
	char(*hex)[CAIRN_HASH_HEX_LEN + 1] = calloc(nsub + 1, sizeof *hex);
	char(*names)[128] = calloc(nsub + nfiles + 1, sizeof *names);
	for (size_t i = 0; i < nsub; i++) {
		build__bazel__remote__execution__v2__directory_node__init(&dn[i]);
		build__bazel__remote__execution__v2__digest__init(&pbs[i]);
		cairn_hash_hex(subdirs[i].hash, hex[i]);
		pbs[i].hash = hex[i];
		pbs[i].size_bytes = subdirs[i].size;
		snprintf(names[i], sizeof names[i], "d%zu", i);
		dn[i].name = names[i];
		dn[i].digest = &pbs[i];
		dps[i] = &dn[i];
	}
	for (size_t i = 0; i < nfiles; i++) {
		build__bazel__remote__execution__v2__file_node__init(&fn[i]);
		build__bazel__remote__execution__v2__digest__init(&pbs[nsub + i]);
		pbs[nsub + i].hash = (char *)HASH;
		snprintf(names[nsub + i], sizeof names[0], "file-%0100zu", i);
		fn[i].name = names[nsub + i];
		fn[i].digest = &pbs[nsub + i];
		fps[i] = &fn[i];
	}
	dir.directories = dps;
	dir.n_directories = nsub;
	dir.files = fps;
	dir.n_files = nfiles;
	size_t len = protobuf_c_message_get_packed_size(&dir.base);
	uint8_t *buf = malloc(len ? len : 1);
	protobuf_c_message_pack(&dir.base, buf);
	cairn_digest d = mem_blob_add(buf, len, held);
	free(buf);
	free(dn), free(dps), free(fn), free(fps), free(pbs), free(hex), free(names);
	return d;
}

static rpc_server *tree_srv;
static rpc_channel *tree_ch;
static gateway *tree_gw;

static int tree_setup(void **state)
{
	(void)state;
	static const blobstore_ops ops = {.open_read = mem_open_read, .read = mem_read, .close_read = mem_close_read};
	static blobstore bs = {.ops = &ops};
	gateway_config gc = {.cas = &bs, .ac_max_size = 1 << 20, .max_upload_sessions = 1, .upload_idle_ns = 1};
	tree_gw = gateway_new(&gc);
	rpc_method methods[16];
	size_t n = gateway_methods(tree_gw, methods, 16);
	rpc_server_config cfg = {.address = "127.0.0.1:0", .threads = 2};
	assert_int_equal(rpc_server_start(&cfg, methods, n, &tree_srv).code, CAIRN_OK);
	assert_int_equal(rpc_channel_open(fmt("grpc://127.0.0.1:%d", rpc_server_port(tree_srv)), 8 << 20, &tree_ch).code,
	                 CAIRN_OK);
	return 0;
}

static int tree_teardown(void **state)
{
	(void)state;
	rpc_channel_close(tree_ch);
	rpc_server_stop(tree_srv);
	gateway_free(tree_gw);
	for (size_t i = 0; i < nmem; i++)
		free(mem[i].data);
	nmem = 0;
	return 0;
}

#define TREE_MAX_PAGES 50

typedef struct tree_walk {
	cairn_status st; /* how the last call ended */
	int pages;
	size_t ndirs;
	cairn_digest dirs[TREE_MAX_PAGES * 4];
} tree_walk;

/* One GetTree call: the directories it returns go into w; *next gets the page token (malloc'd). */
static cairn_status get_tree_page(const cairn_digest *root, int page_size, const char *token, tree_walk *w,
                                  char **next)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(root->hash, hex);
	re_digest pb = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
	pb.hash = hex;
	pb.size_bytes = root->size;
	Build__Bazel__Remote__Execution__V2__GetTreeRequest req = BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_TREE_REQUEST__INIT;
	req.root_digest = &pb;
	req.page_size = page_size;
	req.page_token = (char *)token;
	rpc_stream *s;
	cairn_status st = rpc_stream_open(tree_ch, "/build.bazel.remote.execution.v2.ContentAddressableStorage/GetTree",
	                                  10000, &s);
	assert_int_equal(st.code, CAIRN_OK);
	st = rpc_stream_send(s, &req.base);
	if (cairn_is_ok(&st))
		st = rpc_stream_close_send(s);
	ProtobufCMessage *m = NULL;
	while (cairn_is_ok(&st) &&
	       (st = rpc_stream_recv(s, &build__bazel__remote__execution__v2__get_tree_response__descriptor, &m), m)) {
		Build__Bazel__Remote__Execution__V2__GetTreeResponse *r = (void *)m;
		for (size_t i = 0; i < r->n_directories; i++) {
			size_t len = protobuf_c_message_get_packed_size(&r->directories[i]->base);
			uint8_t *buf = malloc(len ? len : 1);
			protobuf_c_message_pack(&r->directories[i]->base, buf);
			assert_true(w->ndirs < sizeof w->dirs / sizeof w->dirs[0]);
			cairn_digest_of(buf, len, &w->dirs[w->ndirs++]);
			free(buf);
		}
		free(*next);
		*next = strdup(r->next_page_token);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	cairn_status fst = rpc_stream_finish(s, NULL, NULL);
	return cairn_is_ok(&st) ? fst : st;
}

/* Follows page tokens from `token` as a client does, giving up after TREE_MAX_PAGES pages: a walk
 * that gets that far never ends. */
static tree_walk follow_tree(const cairn_digest *root, int page_size, const char *token)
{
	tree_walk w = {.st = cairn_ok()};
	char *t = strdup(token);
	while (w.pages < TREE_MAX_PAGES) {
		char *next = NULL;
		w.st = get_tree_page(root, page_size, t, &w, &next);
		w.pages++;
		free(t);
		t = next;
		if (!cairn_is_ok(&w.st) || !t || !t[0])
			break;
	}
	if (w.pages == TREE_MAX_PAGES && t && t[0])
		fail_msg("GetTree still gives a page token (\"%s\") after %d pages", t, TREE_MAX_PAGES);
	free(t);
	return w;
}

static bool walk_holds(const tree_walk *w, const cairn_digest *d)
{
	for (size_t i = 0; i < w->ndirs; i++)
		if (cairn_digest_eq(&w->dirs[i], d))
			return true;
	return false;
}

/* A tree whose last directory in the walk is missing: the rest comes back, and the walk ends. */
static void test_tree_missing_subdirectory_ends(void **state)
{
	(void)state;
	cairn_digest leaf = mem_dir_add(NULL, 0, 1, true);
	cairn_digest gone = mem_dir_add(NULL, 0, 2, false);
	cairn_digest kids[] = {leaf, gone};
	cairn_digest root = mem_dir_add(kids, 2, 0, true);
	for (int page = 0; page <= 2; page++) {
		tree_walk w = follow_tree(&root, page, "");
		assert_int_equal(w.st.code, CAIRN_OK);
		assert_int_equal(w.ndirs, 2);
		assert_true(walk_holds(&w, &root) && walk_holds(&w, &leaf));
	}
	/* a missing directory in the middle of the walk is left out just the same */
	cairn_digest mid_kids[] = {gone, leaf};
	cairn_digest root2 = mem_dir_add(mid_kids, 2, 0, true);
	tree_walk w = follow_tree(&root2, 1, "");
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(w.ndirs, 2);
	assert_true(walk_holds(&w, &root2) && walk_holds(&w, &leaf));
}

/* A root that is missing, or not a Directory, ends the call with an error naming it. */
static void test_tree_broken_root_fails(void **state)
{
	(void)state;
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_digest garbage = mem_blob_add("\x0f\x0f", 2, true); /* wire type 7: not a message */
	cairn_hash_hex(garbage.hash, hex);
	for (int page = 0; page <= 1; page++) {
		tree_walk w = follow_tree(&garbage, page, "");
		assert_int_equal(w.st.code, CAIRN_FAILED_PRECONDITION);
		assert_non_null(strstr(w.st.msg, hex));
		assert_int_equal(w.ndirs, 0);
	}
	cairn_digest absent = mem_dir_add(NULL, 0, 3, false);
	cairn_hash_hex(absent.hash, hex);
	tree_walk w = follow_tree(&absent, 0, "");
	assert_int_equal(w.st.code, CAIRN_NOT_FOUND);
	assert_non_null(strstr(w.st.msg, hex));
}

/* Whatever token a client brings, following the tokens ends; a bad one is refused. */
static void test_tree_foreign_and_malformed_tokens(void **state)
{
	(void)state;
	cairn_digest a = mem_dir_add(NULL, 0, 4, true), b = mem_dir_add(NULL, 0, 5, true);
	cairn_digest c = mem_dir_add(NULL, 0, 6, true);
	cairn_digest kids[] = {a, b, c};
	cairn_digest big = mem_dir_add(kids, 3, 0, true), small = mem_dir_add(NULL, 0, 7, true);
	/* a token from the bigger tree, past the end of the smaller one: an empty last page */
	tree_walk w = follow_tree(&big, 1, "");
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(w.ndirs, 4);
	for (int i = 1; i <= 4; i++) {
		w = follow_tree(&small, 1, fmt("%d", i));
		assert_int_equal(w.st.code, CAIRN_OK);
		assert_int_equal(w.ndirs, 0);
		assert_int_equal(w.pages, 1);
	}
	/* from the middle of the bigger tree: the rest of it */
	w = follow_tree(&big, 1, "2");
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(w.ndirs, 2);
	const char *bad[] = {"x", "-1", "1x", "99999999999999999999999", "200001"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		w = follow_tree(&big, 1, bad[i]);
		assert_int_equal(w.st.code, CAIRN_INVALID_ARGUMENT);
		assert_non_null(strstr(w.st.msg, "page_token"));
	}
}

/* A directory larger than a page's byte budget goes alone on a page instead of stalling the walk. */
static void test_tree_directory_larger_than_a_page(void **state)
{
	(void)state;
	cairn_digest huge = mem_dir_add(NULL, 0, 20000, true); /* about 3.4 MB */
	assert_true(huge.size > (3 << 20));
	cairn_digest small = mem_dir_add(NULL, 0, 1, true);
	cairn_digest kids[] = {small, huge};
	cairn_digest root = mem_dir_add(kids, 2, 0, true);
	tree_walk w = follow_tree(&root, 0, "");
	assert_int_equal(w.st.code, CAIRN_OK);
	assert_int_equal(w.ndirs, 3);
	assert_true(walk_holds(&w, &huge));
	assert_true(w.pages >= 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_empty_instance),
		cmocka_unit_test(test_read_multi_segment_instance),
		cmocka_unit_test(test_read_compressed_zstd),
		cmocka_unit_test(test_read_largest_size_accepted),
		cmocka_unit_test(test_write_plain),
		cmocka_unit_test(test_write_trailing_metadata_ignored),
		cmocka_unit_test(test_write_compressed),
		cmocka_unit_test(test_write_uuid_of_128_bytes_accepted),
		cmocka_unit_test(test_reject_empty_name),
		cmocka_unit_test(test_reject_nul_byte),
		cmocka_unit_test(test_reject_name_longer_than_4096),
		cmocka_unit_test(test_reject_dot_segments_in_instance),
		cmocka_unit_test(test_reject_empty_segments_in_instance),
		cmocka_unit_test(test_reject_reserved_keyword_in_instance),
		cmocka_unit_test(test_reject_missing_keyword),
		cmocka_unit_test(test_reject_missing_size),
		cmocka_unit_test(test_reject_non_hex_hash),
		cmocka_unit_test(test_reject_upper_case_hex),
		cmocka_unit_test(test_reject_wrong_hash_length),
		cmocka_unit_test(test_reject_digest_function_segment),
		cmocka_unit_test(test_reject_negative_size),
		cmocka_unit_test(test_reject_malformed_or_absurd_size),
		cmocka_unit_test(test_reject_trailing_garbage_in_read_name),
		cmocka_unit_test(test_reject_unknown_compressor),
		cmocka_unit_test(test_reject_identity_compressor),
		cmocka_unit_test(test_reject_missing_or_bad_uuid),
		cmocka_unit_test(test_idle_uploads_expire),
		cmocka_unit_test(test_ac_put_get_round_trip),
		cmocka_unit_test(test_ac_separate_per_instance),
		cmocka_unit_test(test_ac_put_replaces),
		cmocka_unit_test(test_ac_evicts_least_recently_used),
		cmocka_unit_test(test_ac_restore_fills_only_free_room),
		cmocka_unit_test(test_ac_oversize_entry_refused),
		cmocka_unit_test(test_ac_counts_and_bytes),
		cmocka_unit_test(test_ac_concurrent_accounting),
		cmocka_unit_test_setup_teardown(test_tree_missing_subdirectory_ends, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_tree_broken_root_fails, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_tree_foreign_and_malformed_tokens, tree_setup, tree_teardown),
		cmocka_unit_test_setup_teardown(test_tree_directory_larger_than_a_page, tree_setup, tree_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
