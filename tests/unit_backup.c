/* Unit tests of backup/: object keys and objects both ways for every kind of instance name, and the
 * lazy and eager restores of the action cache from a file:// object store into a gateway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup/internal.h"

static cairn_digest digest_of(const char *s)
{
	cairn_digest d;
	cairn_digest_of(s, strlen(s), &d);
	return d;
}

/* Instance names of every kind: ordinary ones, and those no object store takes as a key segment. */
static const char *odd_name(int i)
{
	static char seg300[301], name2k[2049], slashes[40];
	if (!seg300[0]) {
		memset(seg300, 's', 300);
		for (int j = 0; j < 2048; j++)
			name2k[j] = j % 50 == 49 ? '/' : 'n';
		memset(slashes, '/', sizeof slashes - 1);
	}
	const char *names[] = {"",       "main",       "team/a/b",  "x y",      "..",      "a/../b",    ".",
	                       "a//b",   "/a",         "a/",        seg300,     name2k,    "_x",        "-x",
	                       "a/.hid", "ünïcode",    "a\\b",      "a%2Fb",    slashes,   "a/b.c-d_e", "A9/z"};
	return i < (int)(sizeof names / sizeof *names) ? names[i] : NULL;
}

/* A key every object store takes: at most 1024 bytes, no empty, "." or ".." segment, none over 255. */
static void assert_store_takes(const char *key)
{
	assert_true(strlen(key) <= 1024);
	for (const char *p = key, *slash; *p; p = slash + 1) {
		slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		assert_true(n > 0 && n <= 255);
		assert_false(n == 1 && p[0] == '.');
		assert_false(n == 2 && p[0] == '.' && p[1] == '.');
		if (!slash)
			break;
	}
}

static void keys_name_every_instance_and_size(void **state)
{
	(void)state;
	char keys[64][AC_BACKUP_KEY_MAX];
	int n = 0;
	for (const char *name; (name = odd_name(n)); n++) {
		cairn_digest d = digest_of("action"), back;
		backup_key(name, &d, keys[n]);
		assert_store_takes(keys[n]);
		assert_int_equal(backup_parse_key(keys[n], &back), AC_BACKUP_KEY_ENTRY);
		assert_true(cairn_digest_eq(&back, &d));
		for (int j = 0; j < n; j++)
			assert_string_not_equal(keys[j], keys[n]); /* two names never share a key */
		/* the size is in the key: another size, another key */
		char other[AC_BACKUP_KEY_MAX];
		d.size++;
		backup_key(name, &d, other);
		assert_string_not_equal(other, keys[n]);
	}
	/* ordinary names stay readable */
	assert_non_null(strstr(keys[1], "ac/main/"));
	assert_non_null(strstr(keys[2], "ac/team/a/b/"));
	assert_non_null(strstr(keys[19], "ac/a/b.c-d_e/"));
	assert_int_equal(strncmp(keys[0], "ac/", 3), 0);
	assert_null(strchr(keys[0] + 3, '/'));
	/* a name that looks like a hashed one is hashed itself */
	char hashed[AC_BACKUP_KEY_MAX], lookalike[AC_BACKUP_KEY_MAX];
	cairn_digest d = digest_of("action");
	backup_key("..", &d, hashed);
	*strrchr(hashed, '/') = '\0';
	backup_key(hashed + 3, &d, lookalike);
	assert_null(strstr(lookalike, hashed));
}

static void keys_parsed_strictly(void **state)
{
	(void)state;
	const char hex[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char key[256];
	cairn_digest d;
	const char *other[] = {"ac/", "cas/%s-1", "ac/x/%.63s-1", "ac/x/%s-", "ac/x/%s-1a", "ac/x/%s_1",
	                       "ac/x/%s-99999999999999", "ac/x/%.63sA-1", "ac/x/%s0"};
	for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
		snprintf(key, sizeof key, other[i], hex);
		assert_int_equal(backup_parse_key(key, &d), AC_BACKUP_KEY_OTHER);
	}
	const char *old[] = {"ac/%s", "ac/team-a/%s", "ac/a/b/%s"};
	for (size_t i = 0; i < sizeof old / sizeof *old; i++) {
		snprintf(key, sizeof key, old[i], hex);
		assert_int_equal(backup_parse_key(key, &d), AC_BACKUP_KEY_OLD);
	}
	snprintf(key, sizeof key, "ac/a/%s-1099511627776", hex); /* 1 TiB, the largest size */
	assert_int_equal(backup_parse_key(key, &d), AC_BACKUP_KEY_ENTRY);
	assert_int_equal(d.size, INT64_C(1) << 40);
}

/* An object gives back its entry only under its own key. */
static void objects_checked_against_their_key(void **state)
{
	(void)state;
	cairn_digest d = digest_of("action"), d2 = d;
	d2.size++;
	size_t len;
	for (int i = 0; odd_name(i); i++) {
		const char *name = odd_name(i);
		uint8_t *obj = backup_object(name, &d, "result", 6, &len);
		char key[AC_BACKUP_KEY_MAX], wrong[AC_BACKUP_KEY_MAX];
		backup_key(name, &d, key);
		backup_entry e;
		assert_true(backup_object_parse(obj, len, key, &e));
		assert_string_equal(e.instance, name);
		assert_true(cairn_digest_eq(&e.action, &d));
		assert_int_equal(e.result_len, 6);
		assert_memory_equal(e.result, "result", 6);
		backup_key(name, &d2, wrong);
		assert_false(backup_object_parse(obj, len, wrong, &e)); /* another size */
		backup_key(odd_name(i + 1) ? odd_name(i + 1) : "", &d, wrong);
		assert_false(backup_object_parse(obj, len, wrong, &e)); /* another name */
		for (size_t cut = 0; cut < len - 6; cut++)
			assert_false(backup_object_parse(obj, cut, key, &e)); /* truncated before the result */
		obj[0] ^= 1;
		assert_false(backup_object_parse(obj, len, key, &e)); /* not an entry's object */
		free(obj);
	}
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

/* The instance name of entry i: every odd name in turn. */
static const char *entry_name(int i)
{
	int n = 0;
	while (odd_name(n))
		n++;
	return odd_name(i % n);
}

/* Writes n entries through a first backup, as a scheduler that ran before would have; every one of
 * them must reach the bucket. */
static void fill_bucket(fixture *f, int n)
{
	backup *b = backup_new(f->os, 0);
	gateway_ac_backing k = backup_backing(b);
	for (int i = 0; i < n; i++) {
		char name[32], value[64];
		snprintf(name, sizeof name, "action-%d", i);
		snprintf(value, sizeof value, "result of action %d", i);
		cairn_digest d = digest_of(name);
		k.put(k.ctx, entry_name(i), &d, value, strlen(value));
	}
	backup_stats s;
	for (int i = 0; i < 600; i++) {
		backup_get_stats(b, &s);
		if (s.written + s.failed + s.dropped == (uint64_t)n)
			break;
		usleep(50 * 1000);
	}
	backup_free(b);
	assert_int_equal(s.written, n);
}

/* A lookup's answer from the backing, waited for. */
typedef struct got_entry {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	cairn_status st;
	uint8_t *data;
	size_t len;
} got_entry;

static void got_cb(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	got_entry *g = arg;
	pthread_mutex_lock(&g->mu);
	g->st = st;
	g->data = data;
	g->len = len;
	g->done = true;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static got_entry backing_get(gateway_ac_backing k, const char *instance, const cairn_digest *d)
{
	got_entry g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	k.get(k.ctx, instance, d, got_cb, &g);
	pthread_mutex_lock(&g.mu);
	while (!g.done)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	return g;
}

/* Every entry comes back on a miss after a restart, whatever its instance name, and only for its own
 * digest, size included. */
static void lazy_restore_of_every_name(void **state)
{
	fixture *f = *state;
	fill_bucket(f, 42);
	backup *b = backup_new(f->os, 0);
	gateway_ac_backing k = backup_backing(b);
	for (int i = 0; i < 42; i++) {
		char name[32], value[64];
		snprintf(name, sizeof name, "action-%d", i);
		snprintf(value, sizeof value, "result of action %d", i);
		cairn_digest d = digest_of(name);
		got_entry g = backing_get(k, entry_name(i), &d);
		if (g.st.code != CAIRN_OK)
			fail_msg("entry %d of instance \"%.40s\" not restored: %s", i, entry_name(i), cairn_status_str(&g.st));
		assert_int_equal(g.len, strlen(value));
		assert_memory_equal(g.data, value, g.len);
		free(g.data);
		d.size++;
		g = backing_get(k, entry_name(i), &d);
		assert_int_equal(g.st.code, CAIRN_NOT_FOUND);
		d.size--;
		g = backing_get(k, entry_name(i + 1), &d); /* another instance */
		assert_int_equal(g.st.code, CAIRN_NOT_FOUND);
	}
	backup_free(b);
}

/* Waits for the eager restore to end; returns the entries it brought back. */
static uint64_t wait_restored(backup *b)
{
	backup_stats s;
	for (int i = 0; i < 600; i++) {
		backup_get_stats(b, &s);
		if (s.restore_done)
			break;
		usleep(50 * 1000);
	}
	backup_get_stats(b, &s);
	assert_true(s.restore_done);
	return s.restored;
}

static void eager_restore_brings_everything_back(void **state)
{
	fixture *f = *state;
	fill_bucket(f, 300);
	gateway_config gc = {.ac_max_size = 64 << 20, .max_upload_sessions = 1, .upload_idle_ns = 1};
	gateway *g = gateway_new(&gc);
	backup *b = backup_new(f->os, 0);
	/* an entry a client put before the restore reached it stays as the client put it */
	cairn_digest d0 = digest_of("action-0");
	assert_int_equal(gateway_ac_restore(g, entry_name(0), &d0, "newer", 5).code, CAIRN_OK);
	backup_restore(b, g);
	assert_int_equal(wait_restored(b), 299);
	for (int i = 0; i < 300; i++) {
		char name[32];
		snprintf(name, sizeof name, "action-%d", i);
		cairn_digest d = digest_of(name);
		/* every entry is there, under its instance and its whole digest: restoring it again is refused */
		assert_int_equal(gateway_ac_restore(g, entry_name(i), &d, "x", 1).code, CAIRN_ALREADY_EXISTS);
		d.size++;
		assert_int_equal(gateway_ac_restore(g, entry_name(i), &d, "x", 1).code, CAIRN_OK);
	}
	backup_free(b);
	gateway_free(g);
}

/* Writes an object of the old format (ac/[<instance>/]<hash>, the bare ActionResult) into the bucket. */
static void put_old_format(fixture *f, const char *instance, const cairn_digest *d)
{
	char hex[CAIRN_HASH_HEX_LEN + 1], path[512];
	cairn_hash_hex(d->hash, hex);
	snprintf(path, sizeof path, "mkdir -p %s/ac/%s", f->dir, instance);
	assert_int_equal(system(path), 0);
	snprintf(path, sizeof path, "%s/ac/%s%s%s", f->dir, instance, instance[0] ? "/" : "", hex);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("old result", fp);
	assert_int_equal(fclose(fp), 0);
}

/* Entries of the old key format, which has no size, are left alone: not restored under any size. */
static void old_format_entries_not_restored(void **state)
{
	fixture *f = *state;
	fill_bucket(f, 10);
	cairn_digest a = digest_of("old-a"), b = digest_of("old-b");
	put_old_format(f, "", &a);
	put_old_format(f, "team-a", &b);
	gateway_config gc = {.ac_max_size = 64 << 20, .max_upload_sessions = 1, .upload_idle_ns = 1};
	gateway *g = gateway_new(&gc);
	backup *k = backup_new(f->os, 0);
	backup_restore(k, g);
	assert_int_equal(wait_restored(k), 10);
	cairn_digest a0 = a; /* the size the old format's keys were read with */
	a0.size = 0;
	assert_int_equal(gateway_ac_restore(g, "", &a0, "x", 1).code, CAIRN_OK);
	assert_int_equal(gateway_ac_restore(g, "", &a, "x", 1).code, CAIRN_OK);
	assert_int_equal(gateway_ac_restore(g, "team-a", &b, "x", 1).code, CAIRN_OK);
	got_entry e = backing_get(backup_backing(k), "team-a", &b);
	assert_int_equal(e.st.code, CAIRN_NOT_FOUND);
	backup_free(k);
	gateway_free(g);
}

static void eager_restore_stops_when_full(void **state)
{
	fixture *f = *state;
	fill_bucket(f, 300);
	gateway_config gc = {.ac_max_size = 20 << 10, .max_upload_sessions = 1, .upload_idle_ns = 1};
	gateway *g = gateway_new(&gc);
	backup *b = backup_new(f->os, 0);
	backup_restore(b, g);
	uint64_t restored = wait_restored(b);
	backup_free(b);
	/* Each entry is charged about 180 bytes plus its name: a few dozen fit in 20 KiB, and the
	 * restore stopped there. */
	int held = 0;
	for (int i = 0; i < 300; i++) {
		char name[32];
		snprintf(name, sizeof name, "action-%d", i);
		cairn_digest d = digest_of(name);
		held += gateway_ac_restore(g, entry_name(i), &d, "x", 1).code == CAIRN_ALREADY_EXISTS;
	}
	assert_int_equal(held, restored);
	assert_true(held > 10);
	assert_true(held < 150);
	gateway_free(g);
}

int main(void)
{
	cairn_log_set_level(CAIRN_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(keys_name_every_instance_and_size),
		cmocka_unit_test(keys_parsed_strictly),
		cmocka_unit_test(objects_checked_against_their_key),
		cmocka_unit_test_setup_teardown(lazy_restore_of_every_name, setup, teardown),
		cmocka_unit_test_setup_teardown(eager_restore_brings_everything_back, setup, teardown),
		cmocka_unit_test_setup_teardown(old_format_entries_not_restored, setup, teardown),
		cmocka_unit_test_setup_teardown(eager_restore_stops_when_full, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
