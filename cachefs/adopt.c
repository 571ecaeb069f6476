/* Adopting a file: a blob whose bytes already lie in a file on the data directory's file system (a
 * read-through download in tmp/) becomes a blob. Its size and hash are checked first (the hash the
 * download computed as the bytes arrived, so the file is not read again). A blob that gets a file of
 * its own becomes one by rename, not by copy, and stays in the page cache for the reads that follow:
 * the file is moved beside its place in cas/ as a writer's temp file, then the writer's finishing
 * chain (commit.c) seals it (see seal.c), makes it durable as configured, renames it into
 * place and publishes it, as after an upload. A small one is copied into a writer, whose commit
 * packs it.
 *
 * The writer holds the reservation the caller made before the download, so the blob's size counted
 * against the hard limit from the moment its bytes started to arrive, and the adoption cannot be
 * refused for room that a later upload took meanwhile. */
#include "cachefs/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether the open file, whose bytes hash to sha256, holds exactly the bytes of d. */
static cairn_status check(const cachefs_writer *w, int fd, const char *path, const uint8_t *sha256)
{
	const cairn_digest *d = &w->base.digest;
	char ds[CAIRN_DIGEST_STR_MAX];
	struct stat sb;
	if (fstat(fd, &sb) != 0)
		return cairn_errno(errno, "stat %s", path);
	if (sb.st_size != d->size)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "%s holds %" PRId64 " bytes, but digest %s says %" PRId64, path,
		                 (int64_t)sb.st_size, cairn_digest_str(d, ds), d->size);
	if (memcmp(sha256, d->hash, CAIRN_HASH_LEN) != 0) {
		char hex[CAIRN_HASH_HEX_LEN + 1];
		cairn_hash_hex(sha256, hex);
		return cairn_err(CAIRN_INVALID_ARGUMENT, "the bytes of %s hash to %s, which does not match digest %s", path,
		                 hex, cairn_digest_str(d, ds));
	}
	return cairn_ok();
}

/* Moves the checked file into the writer's place and runs its finishing chain; the writer and fd
 * are the chain's from here on. */
static cairn_status take_file(cachefs_writer *w, int fd, const char *path)
{
	if (renameat(AT_FDCWD, path, cachefs_tmp_dirfd(w), w->tmpname) != 0) {
		cairn_status st = cachefs_writer_io_error(w, -errno, "moving the download to");
		close(fd);
		unlink(path);
		cachefs_writer_free(w);
		return st;
	}
	cairn_waiter done;
	cairn_waiter_init(&done);
	w->fd = fd;
	w->has_file = true;
	w->base.written = (uint64_t)w->base.digest.size;
	w->phase = CACHEFS_W_COMMITTING;
	w->done_cb = cairn_waiter_done;
	w->done_arg = &done;
	w->chain = true;
	cachefs_writer_finish_chain(w);
	cairn_status st = cairn_waiter_wait(&done);
	cairn_waiter_destroy(&done);
	return st;
}

cairn_status cachefs_adopt(cachefs *fs, const cairn_digest *d, const char *path, const uint8_t sha256[32])
{
	cachefs_writer *w = cachefs_writer_alloc(fs, d);
	cachefs_space_adopt(w); /* the caller's reservation */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cairn_status st = fd < 0 ? cairn_errno(errno, "open %s", path) : check(w, fd, path, sha256);
	if (cairn_is_ok(&st) && !w->packed)
		return take_file(w, fd, path);
	if (cairn_is_ok(&st))
		st = blobstore_write_fd_sync(&w->base, fd, path); /* commits w, or drops it */
	else
		cachefs_writer_free(w);
	if (fd >= 0)
		close(fd);
	unlink(path);
	return st;
}
