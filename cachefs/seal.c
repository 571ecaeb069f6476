/* Tamper seals: noticing a blob whose bytes changed on disk behind cachefs's back, and dropping it.
 *
 * A blob's own file is sealed when it becomes visible (commit.c's chain, which adoption shares, and
 * materialise.c), before its rename into cas/: given mode 0644 (whatever the umask; see cachefs.h) and
 * the modification time "now, in whole seconds, plus cachefs_seal_ns(digest) nanoseconds". Any
 * write to the file, through whatever hard link, or a truncation, a hole punched, a file put in its
 * place, sets a fresh modification time, which misses the seal but with a chance of 1 in 10^9; so
 * one fstat tells whether the bytes are still the ones hashed at upload, without reading them. The
 * seconds are the LRU time the start-up scan orders by. Readers check the seal when they open a
 * file and again after every read (a write updates the time before it changes the bytes, so a read
 * that saw changed bytes is followed by a check that sees the broken seal); cachefs_pin_path checks
 * it before it hands out the path; the start-up scan checks every file.
 *
 * A file system that does not keep nanosecond times (probed at open in tmp/) cannot hold seals:
 * there, a blob's file is hashed whole when it is opened for reading and by cachefs_pin_path, before
 * anything is served (a full read of the file at SHA-256 speed, about 0.6 s per GB, for every open),
 * and the start-up scan checks sizes only.
 *
 * A packed blob shares its pack's modification time with every other blob there, so it has no seal:
 * its bytes (64 KiB at most) are hashed on every read for a client and when they are copied out for
 * cachefs_pin_path.
 *
 * Data directories from before seals hold unsealed files: the first scan that finds no SEALED file in
 * the data directory seals every file it keeps, trusting their bytes as the scan always had, and then
 * writes SEALED; from then on an unsealed file is a tampered one.
 *
 * A blob that fails its check is dropped as eviction drops one (evict.c): out of the index, its file
 * unlinked or its slots punched; readers that still pin it keep their entry GONE. The caller answers
 * NOT_FOUND, so that a client uploads the blob again, and read-through fetches a good copy. */
#include "cachefs/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NS_PER_S 1000000000
#define MARKER "SEALED"

uint32_t cachefs_seal_ns(const cairn_digest *d)
{
	/* bytes 8..15 of the hash: uniform, and not the fan-out byte */
	uint64_t h = 0;
	for (int k = 8; k < 16; k++)
		h = h << 8 | d->hash[k];
	return (uint32_t)(h % NS_PER_S);
}

/* Sets a file's times: now's seconds with the seal's nanoseconds, atime untouched. */
static int seal_times(int dirfd, const char *name, int fd, const cairn_digest *d, int64_t sec)
{
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = sec, .tv_nsec = cachefs_seal_ns(d)}};
	int rc = fd >= 0 ? futimens(fd, ts) : utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
	return rc == 0 ? 0 : -errno;
}

int cachefs_seal_fd(const cachefs *fs, int fd, const cairn_digest *d)
{
	if (fchmod(fd, 0644) != 0)
		return -errno;
	return fs->sealing ? seal_times(-1, NULL, fd, d, cairn_wall_ns() / NS_PER_S) : 0;
}

bool cachefs_seal_holds(const cachefs *fs, const struct stat *sb, const cairn_digest *d)
{
	return S_ISREG(sb->st_mode) && sb->st_size == d->size &&
	       (!fs->sealing || sb->st_mtim.tv_nsec == (long)cachefs_seal_ns(d));
}

void cachefs_seal_probe(cachefs *fs)
{
	static const char probe[] = "seal-probe";
	const long want = 123456789; /* every digit counts: a coarser clock rounds it */
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = cairn_wall_ns() / NS_PER_S, .tv_nsec = want}};
	struct stat sb;
	int fd = openat(fs->tmpfd, probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	fs->sealing = fd >= 0 && futimens(fd, ts) == 0 && fstat(fd, &sb) == 0 && sb.st_mtim.tv_nsec == want;
	if (fd >= 0) {
		close(fd);
		unlinkat(fs->tmpfd, probe, 0);
	}
	if (!fs->sealing)
		LOG_WARN("cachefs", "blob files cannot be sealed (the file system does not keep nanosecond file times): "
		         "each is hashed whole whenever it is opened dir=%s/tmp", fs->dir);
}

bool cachefs_seal_scan_start(cachefs *fs)
{
	if (!fs->sealing) {
		/* files written from now on have no seals: a later run that can seal must seal them first */
		if (unlinkat(fs->dirfd, MARKER, 0) != 0 && errno != ENOENT)
			LOG_WARN("cachefs", "cannot remove path=%s/%s error=%s", fs->dir, MARKER, strerror(errno));
		return false;
	}
	return faccessat(fs->dirfd, MARKER, F_OK, 0) != 0;
}

bool cachefs_seal_scan_file(cachefs *fs, int x, const char *name, const struct stat *sb, const cairn_digest *d,
                            bool adopting)
{
	if (!adopting)
		return cachefs_seal_holds(fs, sb, d);
	int rc = seal_times(fs->casfd[x], name, -1, d, (int64_t)sb->st_mtim.tv_sec);
	if (rc < 0)
		LOG_WARN("cachefs", "cannot seal an older blob file; dropped path=%s/cas/%02x/%s error=%s", fs->dir, x, name,
		         strerror(-rc));
	return rc == 0;
}

void cachefs_seal_scan_end(cachefs *fs, bool adopting, uint64_t sealed)
{
	if (!adopting)
		return;
	int fd = openat(fs->dirfd, MARKER, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		LOG_WARN("cachefs", "cannot create path=%s/%s error=%s; the next start seals the files again", fs->dir,
		         MARKER, strerror(errno));
		return;
	}
	close(fd);
	if (sealed)
		LOG_INFO("cachefs", "sealed the blob files of an older data directory files=%" PRIu64 " dir=%s", sealed,
		         fs->dir);
}

bool cachefs_hash_matches(const cairn_digest *d, const void *data, size_t len)
{
	cairn_digest got;
	cairn_digest_of(data, len, &got);
	return cairn_digest_eq(&got, d);
}

/* Whether cas/ still names the file a reader found changed: after that one was dropped, the blob may
 * have been uploaded again, and its new file must stay. A name is replaced only after its entry left
 * VISIBLE, which the drop checks next, so checking first suffices. */
static bool still_named(cachefs *fs, const cairn_digest *d, const struct stat *seen)
{
	char name[CACHEFS_NAME_MAX];
	struct stat sb;
	cachefs_blob_name(d, name);
	return !seen || (fstatat(fs->casfd[d->hash[0]], name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	                 sb.st_ino == seen->st_ino && sb.st_dev == seen->st_dev);
}

cairn_status cachefs_drop_corrupt(cachefs *fs, const cairn_digest *d, uint32_t loc, const struct stat *seen)
{
	cachefs_index *ix = &fs->ix;
	cachefs_victim v = {.d = *d, .loc = loc};
	bool named = still_named(fs, d, seen);
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, d);
	cachefs_entry *e = i != CACHEFS_NIL ? cachefs_index_at(ix, i) : NULL;
	/* only the copy that was checked: another thread may have dropped it, or moved it out of its pack */
	bool drop = named && e && e->state == CACHEFS_VISIBLE && e->loc == loc;
	if (drop) {
		v.pack = loc ? cachefs_pack_of(fs, loc) : NULL;
		cachefs_index_unpublish(ix, i, CACHEFS_DYING);
		ix->corrupt_blobs++;
	}
	pthread_mutex_unlock(&ix->mu);
	char ds[CAIRN_DIGEST_STR_MAX], name[CACHEFS_NAME_MAX];
	cairn_digest_str(d, ds);
	if (drop) {
		cachefs_blob_name(d, name);
		if (loc)
			LOG_WARN("cachefs", "packed blob no longer matches its digest; dropped digest=%s path=%s/packs/%s "
			         "offset=%" PRIu64, ds, fs->dir, v.pack->data_name, cachefs_loc_off(loc));
		else
			LOG_WARN("cachefs", "blob file changed on disk; dropped digest=%s path=%s/cas/%02x/%s", ds, fs->dir,
			         d->hash[0], name);
		cachefs_evict_free(fs, &v, 1);
		cachefs_evict_forget(fs, &v, 1);
	}
	return cairn_err(CAIRN_NOT_FOUND, "blob %s not found (its bytes on disk no longer matched its digest, so it "
	                 "was dropped; upload it again)", ds);
}

int cachefs_file_matches(cachefs *fs, int fd, const cairn_digest *d)
{
	size_t cap = d->size < CACHEFS_HASH_BUF ? (size_t)d->size : CACHEFS_HASH_BUF;
	uint8_t *buf = cairn_xmalloc(cap ? cap : 1);
	cairn_hasher *h = cairn_hasher_new();
	uint64_t off = 0;
	int64_t res = 1;
	while (off < (uint64_t)d->size && res > 0) {
		cachefs_op op = {.kind = CACHEFS_OP_READ, .fd = fd, .buf = buf, .off = off,
		                 .len = (uint64_t)d->size - off < cap ? (uint64_t)d->size - off : cap};
		cachefs_ring_run(&fs->ring, &op, 1);
		res = op.res;
		if (res > 0) {
			cairn_hasher_update(h, buf, (size_t)res);
			off += (uint64_t)res;
		}
	}
	uint8_t hash[CAIRN_HASH_LEN];
	cairn_hasher_final(h, hash);
	cairn_hasher_free(h);
	free(buf);
	if (res < 0)
		return (int)res;
	return off == (uint64_t)d->size && memcmp(hash, d->hash, CAIRN_HASH_LEN) == 0;
}
