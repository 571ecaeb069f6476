/* The directory layout and the start-up scan. Both run synchronously in cachefs_open, before the
 * store serves anything.
 *
 * The scan trusts a file in cas/xx/ when its name is <64 hex>_<size> with the right xx, its length
 * is that size and its tamper seal holds (seal.c): a file appears there only by rename after its hash
 * was checked and its seal set, so a complete file that nothing wrote to since is a good one; the
 * length check catches what a power loss truncated and the seal what was changed while cairn was
 * stopped, without reading any data. A file that fails its seal is logged and counted as corrupt.
 * Everything else there is removed (temp files of uploads a crash interrupted), as is everything in
 * tmp/. Then the packs are scanned (pack_scan.c); a blob found both as a file and in a pack is kept
 * as the file. The LRU order starts as the order of the files' modification times and the packed
 * blobs' commit times: the oldest blob is evicted first. */
#include "cachefs/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void cachefs_blob_name(const cairn_digest *d, char out[CACHEFS_NAME_MAX])
{
	cairn_hash_hex(d->hash, out);
	snprintf(out + CAIRN_HASH_HEX_LEN, CACHEFS_NAME_MAX - CAIRN_HASH_HEX_LEN, "_%" PRId64, d->size);
}

/* mkdir -p: the data directory and any missing parents. */
static int mkdir_p(const char *path)
{
	char *p = cairn_xstrdup(path);
	int err = 0;
	for (char *s = p + 1; *s && !err; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			err = errno;
		*s = '/';
	}
	if (!err && mkdir(p, 0755) != 0 && errno != EEXIST)
		err = errno;
	free(p);
	return err;
}

/* A subdirectory of dirfd, created if missing, opened. */
static cairn_status open_subdir(cachefs *fs, int dirfd, const char *rel, const char *name, int *out)
{
	if (mkdirat(dirfd, name, 0755) != 0 && errno != EEXIST)
		return cairn_errno(errno, "cachefs: cannot create %s/%s%s", fs->dir, rel, name);
	*out = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*out < 0)
		return cairn_errno(errno, "cachefs: cannot open %s/%s%s", fs->dir, rel, name);
	return cairn_ok();
}

/* One process per data directory: two would delete each other's temp files. */
static cairn_status lock_dir(cachefs *fs)
{
	fs->lockfd = openat(fs->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fs->lockfd < 0)
		return cairn_errno(errno, "cachefs: cannot create %s/LOCK", fs->dir);
	if (flock(fs->lockfd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			return cairn_err(CAIRN_FAILED_PRECONDITION, "cachefs: data directory %s is in use by another process",
			                 fs->dir);
		return cairn_errno(errno, "cachefs: cannot lock %s/LOCK", fs->dir);
	}
	return cairn_ok();
}

/* Creates a file to show the directory takes writes now, not at the first upload. The file kept is
 * the empty blob's, so that cachefs_pin_path has a file to name for it. */
static cairn_status make_empty_blob(cachefs *fs)
{
	cairn_digest empty;
	cairn_digest_of("", 0, &empty);
	char name[CACHEFS_NAME_MAX];
	cachefs_blob_name(&empty, name);
	int fd = openat(fs->casfd[empty.hash[0]], name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EACCES) /* it exists, and is not ours to write: that is fine */
		fd = openat(fs->casfd[empty.hash[0]], name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cairn_errno(errno, "cachefs: cannot write in %s/cas/%02x", fs->dir, empty.hash[0]);
	close(fd);
	return cairn_ok();
}

cairn_status cachefs_layout_open(cachefs *fs)
{
	int err = mkdir_p(fs->cfg.dir);
	if (err)
		return cairn_errno(err, "cachefs: cannot create data directory %s", fs->cfg.dir);
	fs->dirfd = open(fs->cfg.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->dirfd < 0)
		return cairn_errno(errno, "cachefs: cannot open data directory %s", fs->cfg.dir);
	char abs[PATH_MAX];
	fs->dir = cairn_xstrdup(realpath(fs->cfg.dir, abs) ? abs : fs->cfg.dir);
	cairn_status st = lock_dir(fs);
	int casdir = -1;
	if (cairn_is_ok(&st))
		st = open_subdir(fs, fs->dirfd, "", "tmp", &fs->tmpfd);
	if (cairn_is_ok(&st))
		st = open_subdir(fs, fs->dirfd, "", "packs", &fs->packsfd);
	if (cairn_is_ok(&st)) {
		cachefs_packs_probe(fs);
		cachefs_direct_probe(fs);
		cachefs_seal_probe(fs);
	}
	if (cairn_is_ok(&st))
		st = open_subdir(fs, fs->dirfd, "", "cas", &casdir);
	for (int x = 0; x < CACHEFS_FANOUT && cairn_is_ok(&st); x++) {
		char name[3];
		snprintf(name, sizeof name, "%02x", x);
		st = open_subdir(fs, casdir, "cas/", name, &fs->casfd[x]);
	}
	if (casdir >= 0)
		close(casdir);
	if (cairn_is_ok(&st))
		st = make_empty_blob(fs);
	return st;
}

void cachefs_layout_close(cachefs *fs)
{
	for (int x = 0; x < CACHEFS_FANOUT; x++)
		if (fs->casfd[x] >= 0)
			close(fs->casfd[x]);
	if (fs->tmpfd >= 0)
		close(fs->tmpfd);
	if (fs->packsfd >= 0)
		close(fs->packsfd);
	if (fs->lockfd >= 0)
		close(fs->lockfd); /* releases the flock */
	if (fs->dirfd >= 0)
		close(fs->dirfd);
}

/* Removes everything directly in tmp/. */
static cairn_status clean_tmp(cachefs *fs, uint64_t *removed)
{
	int fd = dup(fs->tmpfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return cairn_errno(errno, "cachefs: cannot list %s/tmp", fs->dir);
	}
	for (struct dirent *de; (de = readdir(d));) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(fs->tmpfd, de->d_name, de->d_type == DT_DIR ? AT_REMOVEDIR : 0) == 0)
			(*removed)++;
		else
			LOG_WARN("cachefs", "cannot remove path=%s/tmp/%s error=%s", fs->dir, de->d_name, strerror(errno));
	}
	closedir(d);
	return cairn_ok();
}

/* The digest a file name in cas/xx/ stands for, if it is a well-formed one of that directory. */
static bool parse_name(const char *name, int x, cairn_digest *out)
{
	size_t len = strlen(name);
	if (len < CAIRN_HASH_HEX_LEN + 2 || len > CACHEFS_NAME_MAX - 1 || name[CAIRN_HASH_HEX_LEN] != '_')
		return false;
	const char *num = name + CAIRN_HASH_HEX_LEN + 1;
	if (num[0] == '0' && num[1]) /* one spelling per size, as cachefs_blob_name writes it */
		return false;
	int64_t size = 0;
	for (const char *p = num; *p; p++) {
		if (*p < '0' || *p > '9' || size > CAIRN_MAX_BLOB_SIZE)
			return false;
		size = size * 10 + (*p - '0');
	}
	cairn_status st = cairn_digest_parse(name, CAIRN_HASH_HEX_LEN, size, out);
	return cairn_is_ok(&st) && out->hash[0] == x;
}

void cachefs_scan_add(cachefs *fs, cachefs_found *s, const cairn_digest *d, int64_t wall_ns, uint32_t loc)
{
	int64_t age = s->wall_now > wall_ns ? s->wall_now - wall_ns : 0;
	uint32_t last_use = cachefs_index_tick(&fs->ix, s->mono_now - age);
	uint32_t i = cachefs_index_insert(&fs->ix, d, CACHEFS_PENDING);
	cachefs_index_at(&fs->ix, i)->loc = loc;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4096;
		s->order = cairn_xrealloc(s->order, s->cap * sizeof *s->order);
	}
	s->order[s->n++] = (uint64_t)last_use << 32 | i;
}

static void scan_entry(cachefs *fs, cachefs_found *s, int x, const char *name)
{
	cairn_digest d;
	struct stat st;
	bool named = parse_name(name, x, &d);
	if (fstatat(fs->casfd[x], name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return; /* gone meanwhile */
	if (S_ISDIR(st.st_mode)) {
		LOG_WARN("cachefs", "ignoring a directory that cachefs did not make path=%s/cas/%02x/%s", fs->dir, x, name);
		return;
	}
	if (named && S_ISREG(st.st_mode) && st.st_size == d.size) {
		if (cairn_digest_is_empty_blob(&d)) /* that one is always held, without an entry */
			return;
		if (cachefs_seal_scan_file(fs, x, name, &st, &d, s->adopting)) {
			s->sealed += s->adopting;
			cachefs_scan_add(fs, s, &d, (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, 0);
			return;
		}
		if (!s->adopting) { /* else it could not be sealed, and said why */
			char ds[CAIRN_DIGEST_STR_MAX];
			LOG_WARN("cachefs", "blob file changed on disk while cairn was stopped; dropped digest=%s "
			         "path=%s/cas/%02x/%s", cairn_digest_str(&d, ds), fs->dir, x, name);
			fs->ix.corrupt_blobs++;
		}
	}
	if (unlinkat(fs->casfd[x], name, 0) == 0)
		s->dropped++;
	else
		LOG_WARN("cachefs", "cannot remove path=%s/cas/%02x/%s error=%s", fs->dir, x, name, strerror(errno));
}

static cairn_status scan_dir(cachefs *fs, cachefs_found *s, int x)
{
	int fd = dup(fs->casfd[x]);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return cairn_errno(errno, "cachefs: cannot list %s/cas/%02x", fs->dir, x);
	}
	for (struct dirent *de; (de = readdir(d));)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			scan_entry(fs, s, x, de->d_name);
	closedir(d);
	return cairn_ok();
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

cairn_status cachefs_scan(cachefs *fs)
{
	uint64_t tmp_removed = 0;
	cairn_status st = clean_tmp(fs, &tmp_removed);
	cachefs_found s = {.wall_now = cairn_wall_ns(), .mono_now = cairn_now_ns()};
	s.adopting = cachefs_seal_scan_start(fs);
	for (int x = 0; x < CACHEFS_FANOUT && cairn_is_ok(&st); x++)
		st = scan_dir(fs, &s, x);
	if (cairn_is_ok(&st))
		st = cachefs_scan_packs(fs, &s);
	if (cairn_is_ok(&st)) {
		/* publishing oldest first leaves the oldest at the LRU tail */
		if (s.n)
			qsort(s.order, s.n, sizeof *s.order, cmp_u64);
		for (size_t k = 0; k < s.n; k++)
			cachefs_index_publish(&fs->ix, (uint32_t)s.order[k], (uint32_t)(s.order[k] >> 32));
		cachefs_seal_scan_end(fs, s.adopting, s.sealed);
		LOG_INFO("cachefs", "index rebuilt blobs=%" PRIu64 " bytes=%" PRId64 " packed=%" PRIu64 " packs=%" PRIu64
		         " dropped=%" PRIu64 " corrupt=%" PRIu64 " tmp_removed=%" PRIu64 " dir=%s",
		         fs->ix.visible, fs->ix.bytes, s.packed, s.packs, s.dropped, fs->ix.corrupt_blobs, tmp_removed,
		         fs->dir);
	}
	free(s.order);
	return st;
}
