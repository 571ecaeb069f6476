/* Unit tests of common/: digests, statuses, flags, sizes, the arena. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"

static const char empty_hex[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
static const char abc_hex[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static void digest_of_known_values(void **state)
{
	(void)state;
	cairn_digest d;
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_digest_of("abc", 3, &d);
	cairn_hash_hex(d.hash, hex);
	assert_string_equal(hex, abc_hex);
	assert_int_equal(d.size, 3);
	cairn_digest_of("", 0, &d);
	assert_true(cairn_digest_is_empty_blob(&d));
	cairn_digest_of("abc", 3, &d);
	assert_false(cairn_digest_is_empty_blob(&d));
}

static void hasher_matches_one_shot(void **state)
{
	(void)state;
	char buf[100000];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (char)(i * 7);
	cairn_digest whole;
	cairn_digest_of(buf, sizeof buf, &whole);
	cairn_hasher *h = cairn_hasher_new();
	for (size_t off = 0; off < sizeof buf; off += 333)
		cairn_hasher_update(h, buf + off, sizeof buf - off < 333 ? sizeof buf - off : 333);
	uint8_t got[CAIRN_HASH_LEN];
	cairn_hasher_final(h, got);
	assert_memory_equal(got, whole.hash, CAIRN_HASH_LEN);
	cairn_hasher_reset(h);
	cairn_hasher_final(h, got);
	cairn_digest empty;
	cairn_digest_of("", 0, &empty);
	assert_memory_equal(got, empty.hash, CAIRN_HASH_LEN);
	cairn_hasher_free(h);
}

static void digest_parse_accepts_valid(void **state)
{
	(void)state;
	cairn_digest d;
	cairn_status st = cairn_digest_parse(abc_hex, 64, 3, &d);
	assert_int_equal(st.code, CAIRN_OK);
	char s[CAIRN_DIGEST_STR_MAX], path[100];
	snprintf(path, sizeof path, "%s/3", abc_hex);
	assert_string_equal(cairn_digest_str(&d, s), path);
	cairn_digest d2;
	st = cairn_digest_parse_path(path, strlen(path), &d2);
	assert_int_equal(st.code, CAIRN_OK);
	assert_true(cairn_digest_eq(&d, &d2));
	st = cairn_digest_parse(empty_hex, 64, 0, &d);
	assert_int_equal(st.code, CAIRN_OK);
}

static void expect_bad(const char *hex, int64_t size)
{
	cairn_digest d;
	cairn_status st = cairn_digest_parse(hex, strlen(hex), size, &d);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_true(strlen(st.msg) > 0);
}

static void expect_bad_path(const char *s)
{
	cairn_digest d;
	cairn_status st = cairn_digest_parse_path(s, strlen(s), &d);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
}

/* Every byte value in the first and the last place of a hash: lowercase hex digits parse to their
 * value, any other byte (upper case, NUL, high bytes) is refused. */
static void digest_parse_every_byte(void **state)
{
	(void)state;
	for (int c = 0; c < 256; c++) {
		for (int at = 0; at < 64; at += 63) {
			char hex[65];
			memcpy(hex, abc_hex, sizeof hex);
			hex[at] = (char)c;
			cairn_digest d;
			cairn_status st = cairn_digest_parse(hex, 64, 3, &d);
			const char *digits = "0123456789abcdef", *at_digit = c ? strchr(digits, c) : NULL;
			if (!at_digit) {
				assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
				continue;
			}
			assert_int_equal(st.code, CAIRN_OK);
			unsigned v = (unsigned)(at_digit - digits), got = at ? d.hash[31] & 15u : d.hash[0] >> 4;
			assert_int_equal(got, v);
		}
	}
}

static void digest_parse_rejects_invalid(void **state)
{
	(void)state;
	char upper[65];
	strcpy(upper, abc_hex);
	upper[0] = 'B';
	expect_bad(upper, 3);
	expect_bad("abc", 3);                                                                  /* short */
	expect_bad("zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3); /* non-hex */
	expect_bad(abc_hex, -1);
	expect_bad(abc_hex, CAIRN_MAX_BLOB_SIZE + 1);
	char long_hex[70];
	snprintf(long_hex, sizeof long_hex, "%s00", abc_hex);
	expect_bad(long_hex, 3);
	char p[200];
	snprintf(p, sizeof p, "%s", abc_hex);
	expect_bad_path(p); /* no size */
	snprintf(p, sizeof p, "%s/", abc_hex);
	expect_bad_path(p);
	snprintf(p, sizeof p, "%s/-3", abc_hex);
	expect_bad_path(p);
	snprintf(p, sizeof p, "%s/3x", abc_hex);
	expect_bad_path(p);
	snprintf(p, sizeof p, "%s/99999999999999999999999", abc_hex);
	expect_bad_path(p);
	snprintf(p, sizeof p, "%s/+3", abc_hex);
	expect_bad_path(p);
}

static void status_strings(void **state)
{
	(void)state;
	cairn_status st = cairn_err(CAIRN_NOT_FOUND, "blob %d is gone", 7);
	assert_string_equal(cairn_status_str(&st), "NOT_FOUND: blob 7 is gone");
	assert_string_equal(cairn_code_name(CAIRN_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
	assert_string_equal(cairn_code_name(99), "UNKNOWN");
	st = cairn_errno(28 /* ENOSPC */, "write %s", "x");
	assert_int_equal(st.code, CAIRN_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(st.msg, "write x: "));
	st = cairn_ok();
	assert_true(cairn_is_ok(&st));
}

static void sizes_parse_and_format(void **state)
{
	(void)state;
	int64_t v;
	assert_true(cairn_parse_size("1G", &v));
	assert_int_equal(v, 1LL << 30);
	assert_true(cairn_parse_size("1.5K", &v));
	assert_int_equal(v, 1536);
	assert_true(cairn_parse_size("512MiB", &v));
	assert_int_equal(v, 512LL << 20);
	assert_true(cairn_parse_size("42", &v));
	assert_int_equal(v, 42);
	assert_false(cairn_parse_size("", &v));
	assert_false(cairn_parse_size("-1G", &v));
	assert_false(cairn_parse_size("12Q", &v));
	assert_false(cairn_parse_size("1e30", &v));
	char buf[32];
	assert_string_equal(cairn_format_size(1536, buf, sizeof buf), "1.5 KiB");
	assert_string_equal(cairn_format_size(1LL << 30, buf, sizeof buf), "1 GiB");
	assert_string_equal(cairn_format_size(100, buf, sizeof buf), "100 B");
}

static void flags_parse(void **state)
{
	(void)state;
	int64_t port = 8980, size = 1 << 20, dur = 300;
	bool fsync = false, verbose = true;
	const char *dir = "./d";
	cairn_flag flags[] = {
		{"port", CAIRN_FLAG_INT, &port, "p"},      {"size", CAIRN_FLAG_SIZE, &size, "s"},
		{"dur", CAIRN_FLAG_DURATION, &dur, "d"},   {"fsync", CAIRN_FLAG_BOOL, &fsync, "f"},
		{"verbose", CAIRN_FLAG_BOOL, &verbose, "v"}, {"dir", CAIRN_FLAG_STRING, &dir, "dir"},
	};
	char *argv[] = {"--port=9000", "pos1", "--size", "2G", "--dur=5m", "--fsync", "--noverbose", "--dir=/x", "--",
	                "--port=1"};
	int npos;
	bool help;
	cairn_status st = cairn_flags_parse(flags, 6, 10, argv, &npos, &help);
	assert_int_equal(st.code, CAIRN_OK);
	assert_false(help);
	assert_int_equal(port, 9000);
	assert_int_equal(size, 2LL << 30);
	assert_int_equal(dur, 300);
	assert_true(fsync);
	assert_false(verbose);
	assert_string_equal(dir, "/x");
	assert_int_equal(npos, 2);
	assert_string_equal(argv[0], "pos1");
	assert_string_equal(argv[1], "--port=1");

	char *bad1[] = {"--nope=1"};
	st = cairn_flags_parse(flags, 6, 1, bad1, &npos, &help);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "--nope"));
	char *bad2[] = {"--size=lots"};
	st = cairn_flags_parse(flags, 6, 1, bad2, &npos, &help);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	assert_non_null(strstr(st.msg, "--size"));
	char *bad3[] = {"--port"};
	st = cairn_flags_parse(flags, 6, 1, bad3, &npos, &help);
	assert_int_equal(st.code, CAIRN_INVALID_ARGUMENT);
	char *h[] = {"--help"};
	st = cairn_flags_parse(flags, 6, 1, h, &npos, &help);
	assert_true(help);
}

static void flags_usage_shows_defaults(void **state)
{
	(void)state;
	int64_t size = 10LL << 30, dur = 300;
	bool b = false;
	cairn_flag flags[] = {
		{"cas_max_size", CAIRN_FLAG_SIZE, &size, "cap"},
		{"cas_min_age", CAIRN_FLAG_DURATION, &dur, "age"},
		{"fsync", CAIRN_FLAG_BOOL, &b, "sync"},
	};
	char buf[1024] = {0};
	FILE *f = fmemopen(buf, sizeof buf - 1, "w");
	cairn_flags_usage(flags, 3, f);
	fclose(f);
	assert_non_null(strstr(buf, "--cas_max_size=10G"));
	assert_non_null(strstr(buf, "--cas_min_age=300s"));
	assert_non_null(strstr(buf, "--fsync=false"));
}

static void arena_allocates_aligned(void **state)
{
	(void)state;
	cairn_arena *a = cairn_arena_new(64);
	for (int i = 1; i < 2000; i++) {
		char *p = cairn_arena_alloc(a, (size_t)i);
		assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
		memset(p, 0xab, (size_t)i);
	}
	char *big = cairn_arena_alloc(a, 5 << 20);
	memset(big, 1, 5 << 20);
	assert_string_equal(cairn_arena_strndup(a, "hello world", 5), "hello");
	assert_true(cairn_arena_used(a) > (5u << 20));
	cairn_arena_free(a);
}

/* The ranking every instance shares: the same ids rank alike whatever their order, k owners are
 * the k first of the full order, k above n gives n, and removing a member moves only what it owned. */
static void rendezvous_ranks_alike(void **state)
{
	(void)state;
	const char *ids[5] = {"m-a", "m-b", "m-c", "m-d", "m-e"};
	cairn_rendezvous_member fwd[5], rev[5];
	for (int i = 0; i < 5; i++) {
		fwd[i] = (cairn_rendezvous_member){.key = cairn_rendezvous_key(ids[i]), .id = ids[i]};
		rev[4 - i] = fwd[i];
	}
	assert_int_equal(fwd[0].key, cairn_rendezvous_key("m-a"));
	assert_true(fwd[0].key != fwd[1].key);
	int first[5] = {0};
	for (int t = 0; t < 200; t++) {
		char s[32];
		snprintf(s, sizeof s, "blob-%d", t);
		cairn_digest d;
		cairn_digest_of(s, strlen(s), &d);
		size_t all[5], two[2], back[5], four[4];
		uint64_t sc[5];
		assert_int_equal(cairn_rendezvous_rank(fwd, 5, &d, 5, all, sc), 5);
		assert_int_equal(cairn_rendezvous_rank(fwd, 5, &d, 2, two, sc), 2);
		assert_int_equal(cairn_rendezvous_rank(rev, 5, &d, 9, back, sc), 5);
		assert_int_equal(two[0], all[0]);
		assert_int_equal(two[1], all[1]);
		for (int i = 0; i < 5; i++)
			assert_string_equal(rev[back[i]].id, fwd[all[i]].id);
		first[all[0]]++;
		/* without m-c (index 2), the order of the others stays */
		cairn_rendezvous_member less[4] = {fwd[0], fwd[1], fwd[3], fwd[4]};
		assert_int_equal(cairn_rendezvous_rank(less, 4, &d, 4, four, sc), 4);
		for (int i = 0, j = 0; i < 5; i++)
			if (all[i] != 2)
				assert_string_equal(less[four[j++]].id, fwd[all[i]].id);
	}
	for (int i = 0; i < 5; i++)
		assert_true(first[i] > 10); /* every member owns a share */
}

/* The breaker opens after threshold failures for want of the peer, lets one probe through after
 * the cool-down, and closes on its success; other answers and cancellations do not open it. */
static void breaker_opens_probes_and_closes(void **state)
{
	(void)state;
	cairn_breaker b;
	cairn_breaker_init(&b, 2, 0); /* no cool-down: the probe may go at once */
	cairn_status down = cairn_err(CAIRN_UNAVAILABLE, "refused"), gone = cairn_err(CAIRN_NOT_FOUND, "absent");
	cairn_status mine = cairn_err(CAIRN_CANCELLED, "cancelled here");
	assert_true(cairn_breaker_admit(&b, NULL));
	assert_int_equal(cairn_breaker_record(&b, &down), CAIRN_BREAKER_SAME);
	assert_int_equal(cairn_breaker_record(&b, &mine), CAIRN_BREAKER_SAME);
	assert_int_equal(cairn_breaker_record(&b, &gone), CAIRN_BREAKER_SAME); /* an answer: the count restarts */
	assert_int_equal(cairn_breaker_record(&b, &down), CAIRN_BREAKER_SAME);
	assert_int_equal(cairn_breaker_record(&b, &down), CAIRN_BREAKER_OPENED);
	int failures = 0;
	assert_true(cairn_breaker_admit(&b, &failures)); /* the probe */
	assert_false(cairn_breaker_admit(&b, &failures)); /* only one */
	assert_int_equal(failures, 2);
	assert_int_equal(cairn_breaker_record(&b, &down), CAIRN_BREAKER_OPENED); /* the probe failed */
	assert_true(cairn_breaker_admit(&b, NULL));
	assert_int_equal(cairn_breaker_record(&b, &gone), CAIRN_BREAKER_CLOSED);
	assert_true(cairn_breaker_admit(&b, NULL));
	assert_true(cairn_breaker_admit(&b, NULL));
	cairn_breaker_destroy(&b);
	cairn_breaker_init(&b, 1, 3600 * 1000000000LL); /* an hour: no probe within the test */
	assert_int_equal(cairn_breaker_record(&b, &down), CAIRN_BREAKER_OPENED);
	assert_false(cairn_breaker_admit(&b, NULL));
	cairn_breaker_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(digest_of_known_values),   cmocka_unit_test(hasher_matches_one_shot),
		cmocka_unit_test(digest_parse_accepts_valid), cmocka_unit_test(digest_parse_every_byte),
		cmocka_unit_test(digest_parse_rejects_invalid),
		cmocka_unit_test(status_strings),           cmocka_unit_test(sizes_parse_and_format),
		cmocka_unit_test(flags_parse),              cmocka_unit_test(flags_usage_shows_defaults),
		cmocka_unit_test(arena_allocates_aligned),
		cmocka_unit_test(rendezvous_ranks_alike),   cmocka_unit_test(breaker_opens_probes_and_closes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
