/* A packed blob copied out to a file of its own, for cachefs_pin_path: the executor hard-links its
 * inputs, and a link needs a file. It runs on the caller's thread, which may block, one ring
 * operation after another (cachefs_ring_run).
 *
 * The blob's slots are read (holding a reference on the pack, so that its file stays open) and hashed:
 * bytes that no longer match the digest are dropped (seal.c) and the caller gets NOT_FOUND. Good
 * ones are written to cas/<xx>/<n>.part, sealed (seal.c), synced with fsync, renamed to
 * cas/<xx>/<hash>_<size>, the directory synced with fsync; then the entry is switched to the file
 * and the slots are punched. A crash after the rename leaves the blob both as a file and in the
 * pack, and the start-up scan keeps the file. Two pin_paths of one blob may both copy it: the first
 * rename puts the file in place, the second finds it there (RENAME_NOREPLACE) and drops its copy,
 * and only the first switches the entry. A rename over the first file would unlink the inode that
 * the first caller may be hard-linking at that moment, and its link would fail with ENOENT.
 *
 * The slots are punched only if the entry has no pin but the caller's: a reader (or another copy)
 * that pinned it before the switch may still be reading them. Then they stay until the pack is
 * deleted or the next start-up scan, which punches them as the file's duplicate (or, if the file was
 * evicted meanwhile, finds the pack copy live again: a correct blob). */
#include "cachefs/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t run(cachefs *fs, cachefs_op op)
{
	cachefs_ring_run(&fs->ring, &op, 1);
	return op.res;
}

static cairn_status failed(cachefs *fs, const cairn_digest *d, int64_t res, const char *what, const char *tmp)
{
	char ds[CAIRN_DIGEST_STR_MAX];
	return cairn_errno((int)-res, "cachefs: %s %s/cas/%02x/%s, a copy of packed blob %s", what, fs->dir, d->hash[0],
	                   tmp, cairn_digest_str(d, ds));
}

/* Puts the blob's bytes in place as its own file. */
static cairn_status write_file(cachefs *fs, const cairn_digest *d, void *buf)
{
	int dirfd = fs->casfd[d->hash[0]];
	char tmp[32], name[CACHEFS_NAME_MAX];
	snprintf(tmp, sizeof tmp, "%" PRIu64 ".part", (uint64_t)atomic_fetch_add(&fs->tmp_seq, 1));
	cachefs_blob_name(d, name);
	int64_t fd = run(fs, (cachefs_op){.kind = CACHEFS_OP_OPENAT, .fd = dirfd, .path = tmp,
	                                  .flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, .mode = 0644});
	if (fd < 0)
		return failed(fs, d, fd, "creating", tmp);
	const char *what = "writing";
	int64_t res = run(fs, (cachefs_op){.kind = CACHEFS_OP_WRITE, .fd = (int)fd, .buf = buf, .len = (uint64_t)d->size});
	if (res >= 0) {
		what = "sealing";
		res = cachefs_seal_fd(fs, (int)fd, d);
	}
	if (res >= 0 && fs->cfg.fsync) {
		what = "syncing";
		res = run(fs, (cachefs_op){.kind = CACHEFS_OP_FSYNC, .fd = (int)fd});
	}
	int64_t closed = run(fs, (cachefs_op){.kind = CACHEFS_OP_CLOSE, .fd = (int)fd});
	if (res >= 0 && closed < 0) {
		what = "closing";
		res = closed;
	}
	if (res >= 0) {
		what = "renaming";
		res = run(fs, (cachefs_op){.kind = CACHEFS_OP_RENAMEAT, .fd = dirfd, .path = tmp, .fd2 = dirfd, .path2 = name,
		                           .flags = RENAME_NOREPLACE});
	}
	if (res == -EEXIST) { /* another copy is in place: the same bytes, sealed; this one goes */
		run(fs, (cachefs_op){.kind = CACHEFS_OP_UNLINKAT, .fd = dirfd, .path = tmp});
		return cairn_ok();
	}
	if (res < 0) {
		run(fs, (cachefs_op){.kind = CACHEFS_OP_UNLINKAT, .fd = dirfd, .path = tmp});
		return failed(fs, d, res, what, tmp);
	}
	if (fs->cfg.fsync && (res = run(fs, (cachefs_op){.kind = CACHEFS_OP_FSYNC, .fd = dirfd})) < 0)
		return cairn_errno((int)-res, "cachefs: fsync of %s/cas/%02x", fs->dir, d->hash[0]);
	return cairn_ok();
}

/* Reads the slots and writes the file, holding a reference on the pack. */
static cairn_status copy_out(cachefs *fs, const cairn_digest *d, const cachefs_pack *p, uint32_t loc)
{
	uint8_t *buf = cairn_xmalloc((size_t)d->size);
	int64_t res = run(fs, (cachefs_op){.kind = CACHEFS_OP_READ, .fd = p->fd, .buf = buf, .len = (uint64_t)d->size,
	                                   .off = cachefs_loc_off(loc)});
	cairn_status st;
	if (res < 0)
		st = cairn_errno((int)-res, "cachefs: reading %s/packs/%s", fs->dir, p->data_name);
	else if (res < d->size || !cachefs_hash_matches(d, buf, (size_t)d->size)) /* cut short, or changed */
		st = cachefs_drop_corrupt(fs, d, loc, NULL);
	else
		st = write_file(fs, d, buf);
	free(buf);
	return st;
}

cairn_status cachefs_materialise(cachefs *fs, const cairn_digest *d)
{
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, d);
	assert(i != CACHEFS_NIL && cachefs_index_at(ix, i)->pins > 0); /* the caller pinned it */
	uint32_t loc = cachefs_index_at(ix, i)->loc;
	cachefs_pack *p = loc ? cachefs_pack_of(fs, loc) : NULL;
	if (p)
		p->refs++;
	pthread_mutex_unlock(&ix->mu);
	if (!p)
		return cairn_ok();
	cairn_status st = copy_out(fs, d, p, loc);
	bool punch = false;
	pthread_mutex_lock(&ix->mu);
	cachefs_entry *e = cachefs_index_at(ix, i);
	if (cairn_is_ok(&st) && e->loc == loc) {
		e->loc = 0;
		p->live--;
		punch = e->pins == 1;
	}
	pthread_mutex_unlock(&ix->mu);
	if (punch) {
		cachefs_op op;
		cachefs_pack_punch_op(&op, p, loc, d->size);
		cachefs_ring_run(&fs->ring, &op, 1);
		if (op.res < 0) /* the slots stay until the pack goes, or the next scan */
			LOG_WARN("cachefs", "cannot punch a materialised blob path=%s/packs/%s offset=%" PRIu64 " error=%s",
			         fs->dir, p->data_name, cachefs_loc_off(loc), strerror((int)-op.res));
	}
	pthread_mutex_lock(&ix->mu);
	p->refs--;
	bool unused = cachefs_pack_unused(p);
	pthread_mutex_unlock(&ix->mu);
	if (unused)
		cachefs_pack_delete(fs, p);
	return st;
}
