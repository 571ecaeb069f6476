/* Unit tests of backup/: object keys both ways, and the eager restore of the action cache from a
 * file:// object store into a gateway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup/backup.h"

static cairn_digest digest_of(const char *s)
{
	cairn_digest d;
	cairn_digest_of(s, strlen(s), &d);
	return d;
}

static void keys_round_trip(void **state)
{
	(void)state;
	const char *instances[] = {"", "main", "team/a/b", "x y"};
	for (size_t i = 0; i < sizeof instances / sizeof *instances; i++) {
		cairn_digest d = digest_of(instances[i]), back;
		char key[512], inst[256];
		ac_backup_key(instances[i], &d, key, sizeof key);
		assert_true(ac_backup_parse_key(key, inst, sizeof inst, &back));
		assert_string_equal(inst, instances[i]);
		assert_memory_equal(back.hash, d.hash, CAIRN_HASH_LEN);
		assert_int_equal(back.size, 0); /* keys carry no size */
	}
}

static void bad_keys_refused(void **state)
{
	(void)state;
	const char hex[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char key[256], inst[256];
	cairn_digest d;
	const char *bad[] = {"", "ac/", "cas/%s", "ac//%s", "ac/x%s", "ac/x/%.63s", "ac/x/%.63sG", "ac/x/%.63sA",
	                     "ac/x/%s0"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		snprintf(key, sizeof key, bad[i], hex);
		assert_false(ac_backup_parse_key(key, inst, sizeof inst, &d));
	}
	snprintf(key, sizeof key, "ac/a-long-instance/%s", hex);
	assert_false(ac_backup_parse_key(key, inst, 8, &d)); /* the instance does not fit */
	assert_true(ac_backup_parse_key(key, inst, sizeof inst, &d));
}

typedef struct fixture {
	char dir[64];
	objstore *os;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/unit_backup.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	char url[128];
	snprintf(url, sizeof url, "file://%s", f->dir);
	objstore_config oc = {.url = url};
	assert_int_equal(objstore_open(&oc, &f->os).code, CAIRN_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	objstore_close(f->os);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Writes n entries through a first backup, as a scheduler that ran before would have. */
static void fill_bucket(fixture *f, int n)
{
	ac_backup *b = ac_backup_new(f->os, 0);
	gateway_ac_backing k = ac_backup_backing(b);
	for (int i = 0; i < n; i++) {
		char name[32], value[64];
		snprintf(name, sizeof name, "action-%d", i);
		snprintf(value, sizeof value, "result of action %d", i);
		cairn_digest d = digest_of(name);
		k.put(k.ctx, i % 2 ? "inst/a" : "", &d, value, strlen(value));
	}
	ac_backup_free(b); /* waits for the writes */
}

/* Waits for the eager restore to end; returns the entries it brought back. */
static uint64_t wait_restored(ac_backup *b)
{
	ac_backup_stats s;
	for (int i = 0; i < 600; i++) {
		ac_backup_get_stats(b, &s);
		if (s.restore_done)
			break;
		usleep(50 * 1000);
	}
	ac_backup_get_stats(b, &s);
	assert_true(s.restore_done);
	return s.restored;
}

static void eager_restore_brings_everything_back(void **state)
{
	fixture *f = *state;
	fill_bucket(f, 300);
	gateway_config gc = {.ac_max_size = 64 << 20, .max_upload_sessions = 1, .upload_idle_ns = 1};
	gateway *g = gateway_new(&gc);
	ac_backup *b = ac_backup_new(f->os, 0);
	/* an entry a client put before the restore reached it stays as the client put it */
	cairn_digest d0 = digest_of("action-0");
	assert_int_equal(gateway_ac_restore(g, "", &d0, "newer", 5).code, CAIRN_OK);
	ac_backup_restore(b, g);
	assert_int_equal(wait_restored(b), 299);
	for (int i = 0; i < 300; i++) {
		char name[32];
		snprintf(name, sizeof name, "action-%d", i);
		cairn_digest d = digest_of(name);
		/* every entry is there: restoring it again is refused */
		assert_int_equal(gateway_ac_restore(g, i % 2 ? "inst/a" : "", &d, "x", 1).code, CAIRN_ALREADY_EXISTS);
	}
	ac_backup_free(b);
	gateway_free(g);
}

static void eager_restore_stops_when_full(void **state)
{
	fixture *f = *state;
	fill_bucket(f, 300);
	gateway_config gc = {.ac_max_size = 20 << 10, .max_upload_sessions = 1, .upload_idle_ns = 1};
	gateway *g = gateway_new(&gc);
	ac_backup *b = ac_backup_new(f->os, 0);
	ac_backup_restore(b, g);
	uint64_t restored = wait_restored(b);
	ac_backup_free(b);
	/* Each entry is charged about 180 bytes: about 110 fit in 20 KiB, and the restore stopped there. */
	int held = 0;
	for (int i = 0; i < 300; i++) {
		char name[32];
		snprintf(name, sizeof name, "action-%d", i);
		cairn_digest d = digest_of(name);
		held += gateway_ac_restore(g, i % 2 ? "inst/a" : "", &d, "x", 1).code == CAIRN_ALREADY_EXISTS;
	}
	assert_int_equal(held, restored);
	assert_true(held > 50);
	assert_true(held < 150);
	gateway_free(g);
}

int main(void)
{
	cairn_log_set_level(CAIRN_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(keys_round_trip),
		cmocka_unit_test(bad_keys_refused),
		cmocka_unit_test_setup_teardown(eager_restore_brings_everything_back, setup, teardown),
		cmocka_unit_test_setup_teardown(eager_restore_stops_when_full, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
