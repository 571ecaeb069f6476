/* Crash test for cachefs: a child process uploads blobs from three threads in a loop and is killed
 * with SIGKILL at a random point; then the store is reopened in this process, which checks that
 *  - no temp file is left (interrupted uploads, cas/<xx>/<n>.part, were removed),
 *  - every file in cas/ hashes to its name, and every blob the index holds, in a file or in a pack,
 *    reads back bytes that hash to its digest (no partial blob ever became visible),
 *  - every blob whose commit the child saw succeed is held (an acknowledged upload survives).
 * Half the uploads are small blobs (group commits into packs), half large ones (files of their own).
 * Several rounds, half of them with fsync; in every fourth the child's store is small, so that the
 * kill may also land in an eviction (a blob punched from its pack must never come back), and the
 * blobs acknowledged up to then need no longer be held. The test polls with deadlines; it never
 * sleeps in order to wait for something to happen. */
#include "cachefs/cachefs.h"
#include "cachefs/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 24
#define THREADS 3
#define MAX_ACKED 100000

/* Shared with the children: the digests whose commit succeeded. */
typedef struct shared {
	_Atomic uint64_t acked;
	struct {
		cairn_digest d;
		_Atomic int valid;
	} slot[MAX_ACKED];
} shared;

static int failures;

#define CHECK(cond, ...)                                                                                            \
	do {                                                                                                         \
		if (!(cond)) {                                                                                       \
			fprintf(stderr, "crash_cachefs: FAIL: " __VA_ARGS__);                                        \
			fputc('\n', stderr);                                                                         \
			failures++;                                                                                  \
		}                                                                                                    \
	} while (0)

/* ---- the child: uploads until killed ---------------------------------------------------------- */

static cairn_status put(blobstore *bs, const uint8_t *data, size_t len, cairn_digest *d)
{
	cairn_digest_of(data, len, d);
	return blobstore_put_sync(bs, d, data, len);
}

typedef struct child_arg {
	blobstore *bs;
	shared *sh;
	uint64_t seed;
} child_arg;

static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void *uploader(void *p)
{
	child_arg *a = p;
	uint64_t x = a->seed | 1;
	uint8_t *data = malloc(2 << 20);
	for (;;) {
		uint64_t kind = next_rand(&x) % 4;
		size_t len = kind == 0   ? next_rand(&x) % 4096
		             : kind == 1 ? next_rand(&x) % (2 << 20)
		                         : 1 + next_rand(&x) % CACHEFS_PACK_MAX_BLOB;
		for (size_t i = 0; i < len; i++)
			data[i] = (uint8_t)(next_rand(&x) >> 32);
		cairn_digest d;
		cairn_status st = put(a->bs, data, len, &d);
		if (!cairn_is_ok(&st)) {
			fprintf(stderr, "crash_cachefs child: put failed: %s\n", cairn_status_str(&st));
			_exit(3);
		}
		uint64_t i = atomic_fetch_add(&a->sh->acked, 1);
		if (i >= MAX_ACKED)
			_exit(4);
		a->sh->slot[i].d = d;
		atomic_store(&a->sh->slot[i].valid, 1);
	}
	return NULL;
}

static bool evicting(int round) { return round % 4 == 3; }

static void run_child(const char *dir, shared *sh, int round)
{
	/* the hard limit well above max_size: eviction must not fall so far behind that a put is refused */
	cachefs_config cfg = {.dir = dir, .max_size = evicting(round) ? 4 << 20 : 1LL << 40, .hard_limit = 1LL << 40,
	                      .fsync = round % 2};
	cachefs *fs;
	cairn_status st = cachefs_open(&cfg, &fs);
	if (!cairn_is_ok(&st)) {
		fprintf(stderr, "crash_cachefs child: %s\n", cairn_status_str(&st));
		_exit(2);
	}
	pthread_t t[THREADS];
	child_arg a[THREADS];
	for (int i = 0; i < THREADS; i++) {
		a[i] = (child_arg){.bs = cachefs_blobstore(fs), .sh = sh, .seed = (uint64_t)round * 1000003 + (uint64_t)i * 7919 + 1};
		pthread_create(&t[i], NULL, uploader, &a[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	_exit(1); /* not reached: the uploaders run until killed */
}

/* ---- the parent: kill, reopen, verify --------------------------------------------------------- */

/* Waits (polling, with a deadline) until the child acknowledged `target` blobs in all. */
static bool wait_acked(shared *sh, uint64_t target, pid_t pid)
{
	int64_t deadline = cairn_now_ns() + 60 * 1000000000LL;
	while (atomic_load(&sh->acked) < target) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "crash_cachefs: the child died on its own, status %d\n", status);
			return false;
		}
		if (cairn_now_ns() > deadline)
			return false;
		usleep(200);
	}
	return true;
}

static void check_file(const char *dir, const char *sub, const char *name)
{
	char path[512];
	snprintf(path, sizeof path, "%s/cas/%s/%s", dir, sub, name);
	int fd = open(path, O_RDONLY);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0) {
		CHECK(false, "cannot open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	uint8_t *data = malloc((size_t)sb.st_size + 1);
	ssize_t n = read(fd, data, (size_t)sb.st_size);
	close(fd);
	cairn_digest d;
	cairn_digest_of(data, n < 0 ? 0 : (size_t)n, &d);
	free(data);
	char want[CAIRN_DIGEST_STR_MAX], hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(d.hash, hex);
	snprintf(want, sizeof want, "%s_%lld", hex, (long long)d.size);
	CHECK(strcmp(want, name) == 0, "%s holds bytes that hash to %s", path, want);
}

static int verify_cas(const char *dir)
{
	int files = 0;
	for (int x = 0; x < 256; x++) {
		char sub[3], path[512];
		snprintf(sub, sizeof sub, "%02x", x);
		snprintf(path, sizeof path, "%s/cas/%s", dir, sub);
		DIR *d = opendir(path);
		CHECK(d != NULL, "cannot list %s", path);
		if (!d)
			continue;
		for (struct dirent *de; (de = readdir(d));) {
			if (de->d_name[0] == '.')
				continue;
			check_file(dir, sub, de->d_name);
			files++;
		}
		closedir(d);
	}
	return files;
}

/* Temp files: what is in tmp/, and uploads in progress, cas/<xx>/<n>.part. */
static int count_tmp(const char *dir)
{
	int n = 0;
	for (int x = -1; x < 256; x++) {
		char path[512];
		if (x < 0)
			snprintf(path, sizeof path, "%s/tmp", dir);
		else
			snprintf(path, sizeof path, "%s/cas/%02x", dir, x);
		DIR *d = opendir(path);
		for (struct dirent *de; d && (de = readdir(d));) {
			size_t len = strlen(de->d_name);
			bool part = len > 5 && strcmp(de->d_name + len - 5, ".part") == 0;
			n += x < 0 ? strcmp(de->d_name, ".") && strcmp(de->d_name, "..") : part;
		}
		if (d)
			closedir(d);
	}
	return n;
}

typedef struct sync_read {
	cairn_waiter w;
	blobstore_reader *r;
	size_t n;
} sync_read;

static void opened(void *arg, cairn_status st, blobstore_reader *r)
{
	((sync_read *)arg)->r = r;
	cairn_waiter_done(&((sync_read *)arg)->w, st);
}

static void got(void *arg, cairn_status st, size_t n)
{
	((sync_read *)arg)->n = n;
	cairn_waiter_done(&((sync_read *)arg)->w, st);
}

/* Reads a held blob through the store and checks that its bytes hash to its digest. */
static bool reads_back(blobstore *bs, const cairn_digest *d, uint8_t *buf)
{
	sync_read s = {0};
	cairn_waiter_init(&s.w);
	blobstore_open_read(bs, d, opened, &s);
	cairn_status st = cairn_waiter_wait(&s.w);
	size_t len = 0;
	while (cairn_is_ok(&st) && len < (size_t)d->size) {
		blobstore_read(s.r, len, buf + len, (size_t)d->size - len, got, &s);
		st = cairn_waiter_wait(&s.w);
		len += s.n;
		if (s.n == 0)
			break;
	}
	if (s.r)
		blobstore_close_read(s.r);
	cairn_waiter_destroy(&s.w);
	cairn_digest back;
	cairn_digest_of(buf, len, &back);
	return cairn_is_ok(&st) && cairn_digest_eq(&back, d);
}

/* Every blob the index holds reads back right; returns how many lie in packs. */
static uint64_t verify_held(cachefs *fs)
{
	size_t n = 0, cap = 1024;
	cairn_digest *ds = malloc(cap * sizeof *ds);
	uint64_t packed = 0;
	pthread_mutex_lock(&fs->ix.mu);
	CHECK(cachefs_index_check(&fs->ix) && cachefs_packs_check(fs), "the index does not check out");
	for (uint32_t i = fs->ix.lru_head; i != CACHEFS_NIL; i = cachefs_index_at(&fs->ix, i)->next) {
		if (n == cap)
			ds = realloc(ds, (cap *= 2) * sizeof *ds);
		cachefs_index_digest(&fs->ix, i, &ds[n++]);
		packed += cachefs_index_at(&fs->ix, i)->loc != 0;
	}
	pthread_mutex_unlock(&fs->ix.mu);
	uint8_t *buf = malloc(2 << 20);
	for (size_t k = 0; k < n; k++) {
		char str[CAIRN_DIGEST_STR_MAX];
		CHECK(reads_back(cachefs_blobstore(fs), &ds[k], buf), "held blob %s does not read back",
		      cairn_digest_str(&ds[k], str));
	}
	free(buf);
	free(ds);
	return packed;
}

/* Checks the store after a kill; the blobs acknowledged from `first` on must be held. */
static void verify(const char *dir, shared *sh, int round, uint64_t first)
{
	cachefs_config cfg = {.dir = dir, .max_size = 1LL << 40};
	cachefs *fs;
	cairn_status st = cachefs_open(&cfg, &fs);
	CHECK(cairn_is_ok(&st), "reopen after the kill: %s", cairn_status_str(&st));
	if (!cairn_is_ok(&st))
		return;
	CHECK(count_tmp(dir) == 0, "temp files are left after reopening");
	uint64_t acked = atomic_load(&sh->acked), missing = 0;
	for (uint64_t i = first; i < acked && i < MAX_ACKED; i++)
		if (atomic_load(&sh->slot[i].valid) && !cachefs_contains(fs, &sh->slot[i].d, false))
			missing++;
	CHECK(missing == 0, "%llu acknowledged blobs are missing", (unsigned long long)missing);
	uint64_t packed = verify_held(fs);
	cachefs_stats s;
	cachefs_get_stats(fs, &s);
	cachefs_close(fs);
	int files = verify_cas(dir);
	CHECK((uint64_t)files + packed == s.blobs + 1, "%d files in cas/ and %llu packed blobs but %llu blobs indexed",
	      files, (unsigned long long)packed, (unsigned long long)s.blobs);
	fprintf(stderr, "crash_cachefs: round %d: acknowledged=%llu held=%llu packed=%llu files verified=%d\n", round,
	        (unsigned long long)acked, (unsigned long long)s.blobs, (unsigned long long)packed, files);
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb, (void)type, (void)ftw;
	return remove(path);
}

int main(void)
{
	char root[] = "/tmp/cachefs-crash-XXXXXX";
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	char dir[64];
	snprintf(dir, sizeof dir, "%s/data", root);
	shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	uint64_t x = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
	fprintf(stderr, "crash_cachefs: seed %llu dir %s\n", (unsigned long long)x, dir);
	uint64_t first = 0;
	for (int round = 0; round < ROUNDS && !failures; round++) {
		/* evicting rounds run longer, so that packs are partly punched when the kill comes */
		uint64_t target = atomic_load(&sh->acked) + 1 + next_rand(&x) % 12 + (evicting(round) ? 40 : 0);
		fflush(stderr);
		pid_t pid = fork();
		if (pid == 0)
			run_child(dir, sh, round);
		bool ok = wait_acked(sh, target, pid);
		/* then a little more, so that the kill lands anywhere in an upload, not just after a commit */
		struct timespec ts = {.tv_nsec = (long)(next_rand(&x) % 5000000)};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		CHECK(ok, "round %d: the child did not reach %llu acknowledged blobs", round, (unsigned long long)target);
		if (evicting(round))
			first = atomic_load(&sh->acked);
		verify(dir, sh, round, first);
	}
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	munmap(sh, sizeof *sh);
	if (failures)
		return 1;
	fprintf(stderr, "crash_cachefs: passed %d rounds\n", ROUNDS);
	return 0;
}
