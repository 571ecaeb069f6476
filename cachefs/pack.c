/* Pack files: small blobs share files instead of costing one file each.
 *
 * A pack is packs/<id>.data, the blobs' bytes, each at a 4 KiB slot of its own (so that its blocks
 * are its alone), and packs/<id>.journal, one fixed-size record per blob (hash, size, slot, time,
 * check). Both only grow while the pack is the active one; a pack is full at CACHEFS_PACK_MAX_SIZE,
 * what a location's slot bits can name, and then the next one is started. A record is written only
 * once its blob's data was (group.c), so after a crash a record names complete, verified bytes, and a
 * torn record can only be the journal's last: the scan (pack_scan.c) drops it.
 *
 * Evicting a packed blob punches its slots (fallocate PUNCH_HOLE), which frees its disk space at once
 * and is also how the blob is marked dead: the scan drops a record whose slots hold a hole. There are
 * no tombstone records, so a death is one atomic system call with nothing to order against it, the
 * journal grows only with commits, and the scan needs no second pass. The price is trust in holes:
 * cachefs_packs_probe checks at start-up that this file system punches 4 KiB holes and that SEEK_HOLE
 * reports them, and stores small blobs as files of their own where it does not (a punch that left
 * zeros in place would otherwise come back as a blob of zeros). A file system that turns written zero
 * blocks into holes (ZFS with compression) would make the scan drop a blob of zeros: a miss, never a
 * wrong answer. The journal keeps the records of dead blobs until its pack is deleted: dead space of
 * 48 bytes per blob ever written to a pack that still holds one (at most 1.2% of its data, 4 KiB a
 * blob), the price of needing no compaction.
 *
 * A pack with no live blob, no reader and not active is deleted (its journal first: a data file
 * without a journal is removed by the scan). Its id is free again once both files are gone. */
#include "cachefs/internal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOT (1u << CACHEFS_SLOT_SHIFT)
#define PUNCH (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)

enum probe { HOLES_WORK, HOLES_FAIL, UNTESTED };

/* Writes two slots to a scratch file, punches the first and asks SEEK_HOLE and SEEK_DATA about it. */
static enum probe probe_holes(cachefs *fs)
{
	static const char probe[] = "probe";
	uint8_t buf[2 * SLOT];
	memset(buf, 0xa5, sizeof buf);
	int fd = openat(fs->packsfd, probe, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return UNTESTED;
	enum probe res = UNTESTED;
	if (pwrite(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf) {
		bool punched = fallocate(fd, PUNCH, 0, SLOT) == 0;
		res = punched && lseek(fd, 0, SEEK_HOLE) == 0 && lseek(fd, 0, SEEK_DATA) == SLOT ? HOLES_WORK : HOLES_FAIL;
	}
	close(fd);
	unlinkat(fs->packsfd, probe, 0);
	return res;
}

/* Whether packs/ holds a pack: only a run whose probe passed here makes one. */
static bool have_packs(cachefs *fs)
{
	int fd = dup(fs->packsfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	rewinddir(d); /* a dup shares its position with packsfd: start at the top, and leave it there after */
	bool found = false;
	for (struct dirent *de; !found && (de = readdir(d));)
		found = strstr(de->d_name, ".journal") != NULL;
	rewinddir(d);
	closedir(d);
	return found;
}

void cachefs_packs_probe(cachefs *fs)
{
	enum probe res = probe_holes(fs);
	/* a full disk cannot hold the probe's file: then the packs already there tell, so that a restart
	 * on a full disk does not drop them */
	fs->packing = res == HOLES_WORK || (res == UNTESTED && have_packs(fs));
	if (res == UNTESTED)
		LOG_WARN("cachefs", "cannot test hole punching (is the disk full?); packing=%s dir=%s/packs",
		         fs->packing ? "on, as packs are there" : "off", fs->dir);
	else if (res == HOLES_FAIL)
		LOG_WARN("cachefs", "small blobs are stored as files of their own: the file system cannot punch 4 KiB "
		         "holes that SEEK_HOLE reports dir=%s/packs", fs->dir);
}

void cachefs_packs_close(cachefs *fs)
{
	for (uint32_t id = 1; id < CACHEFS_MAX_PACKS; id++) {
		cachefs_pack *p = fs->packs[id];
		if (!p)
			continue;
		if (p->fd >= 0)
			close(p->fd);
		if (p->jfd >= 0)
			close(p->jfd);
		free(p);
		fs->packs[id] = NULL;
	}
	fs->npacks = 0;
}

cachefs_pack *cachefs_pack_add(cachefs *fs, uint32_t want)
{
	for (uint32_t id = want ? want : 1; id < CACHEFS_MAX_PACKS && (!want || id == want); id++) {
		if (fs->packs[id])
			continue;
		cachefs_pack *p = cairn_xcalloc(1, sizeof *p);
		p->fs = fs;
		p->id = id;
		p->fd = p->jfd = -1;
		snprintf(p->data_name, sizeof p->data_name, "%u.data", id);
		snprintf(p->journal_name, sizeof p->journal_name, "%u.journal", id);
		fs->packs[id] = p;
		fs->npacks++;
		return p;
	}
	return NULL;
}

bool cachefs_pack_unused(cachefs_pack *p)
{
	if (p->active || p->closing || p->dying || p->live || p->refs)
		return false;
	p->dying = true;
	return true;
}

/* The deletion: unlink the journal, then the data file, close what is open, free the id. */
static void delete_step(cachefs_op *op, int64_t res)
{
	cachefs_pack *p = op->arg;
	cachefs *fs = p->fs;
	if (op->kind == CACHEFS_OP_UNLINKAT && res < 0 && res != -ENOENT)
		LOG_WARN("cachefs", "cannot remove pack file path=%s/packs/%s error=%s", fs->dir, op->path,
		         strerror((int)-res));
	if (op->kind == CACHEFS_OP_UNLINKAT && op->path == p->journal_name) {
		p->op = (cachefs_op){.kind = CACHEFS_OP_UNLINKAT, .fd = fs->packsfd, .path = p->data_name,
		                     .cb = delete_step, .arg = p};
		return cachefs_ring_submit(&fs->ring, &p->op);
	}
	int *fdp = p->jfd >= 0 ? &p->jfd : p->fd >= 0 ? &p->fd : NULL;
	if (fdp) {
		p->op = (cachefs_op){.kind = CACHEFS_OP_CLOSE, .fd = *fdp, .cb = delete_step, .arg = p};
		*fdp = -1;
		return cachefs_ring_submit(&fs->ring, &p->op);
	}
	pthread_mutex_lock(&fs->ix.mu);
	assert(fs->packs[p->id] == p);
	fs->packs[p->id] = NULL;
	fs->npacks--;
	pthread_mutex_unlock(&fs->ix.mu);
	free(p);
}

void cachefs_pack_delete(cachefs *fs, cachefs_pack *p)
{
	assert(p->dying);
	p->op = (cachefs_op){.kind = CACHEFS_OP_UNLINKAT, .fd = fs->packsfd, .path = p->journal_name,
	                     .cb = delete_step, .arg = p};
	cachefs_ring_submit(&fs->ring, &p->op);
}

static void journal_closed(cachefs_op *op, int64_t res)
{
	(void)res; /* every record was written (and synced, with fsync) before: a close error loses none */
	cachefs_pack *p = op->arg;
	cachefs *fs = p->fs;
	pthread_mutex_lock(&fs->ix.mu);
	p->jfd = -1;
	p->closing = false;
	bool unused = cachefs_pack_unused(p);
	pthread_mutex_unlock(&fs->ix.mu);
	if (unused)
		cachefs_pack_delete(fs, p);
}

void cachefs_pack_retire(cachefs *fs, cachefs_pack *p)
{
	pthread_mutex_lock(&fs->ix.mu);
	assert(p->active && p->jfd >= 0);
	p->active = false;
	p->closing = true;
	pthread_mutex_unlock(&fs->ix.mu);
	p->op = (cachefs_op){.kind = CACHEFS_OP_CLOSE, .fd = p->jfd, .cb = journal_closed, .arg = p};
	cachefs_ring_submit(&fs->ring, &p->op);
}

void cachefs_pack_punch_op(cachefs_op *op, const cachefs_pack *p, uint32_t loc, int64_t size)
{
	*op = (cachefs_op){.kind = CACHEFS_OP_FALLOCATE, .fd = p->fd, .flags = PUNCH, .off = cachefs_loc_off(loc),
	                   .len = cachefs_slot_bytes(size)};
}

/* ---- journal records ----
 * 48 bytes, little-endian:  0 hash[32] | 32 size u32 | 36 slot u32 | 40 time u32 | 44 check u32
 * size is 1 to CACHEFS_PACK_MAX_BLOB, slot the 4 KiB slot the data starts at, time the wall-clock
 * second of the commit (the LRU order after a restart), check a hash of the 44 bytes before it. */

_Static_assert(CACHEFS_RECORD_SIZE == CAIRN_HASH_LEN + 16, "a record is the hash and four 32-bit fields");

static void put32(uint8_t *p, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		p[k] = (uint8_t)(v >> 8 * k);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A multiply–xorshift mix of the record's first 44 bytes: it only has to catch torn or stale bytes,
 * not an attacker (the journal is cachefs's own). The seed keeps an all-zero record from passing. */
static uint32_t record_check(const uint8_t *rec)
{
	uint64_t h = 0x636169726e706b31u; /* "cairnpk1" */
	for (int k = 0; k < CACHEFS_RECORD_SIZE - 4; k += 4) {
		h = (h ^ get32(rec + k)) * 0x9e3779b97f4a7c15u;
		h ^= h >> 29;
	}
	return (uint32_t)(h ^ h >> 32);
}

void cachefs_record_put(uint8_t *rec, const cairn_digest *d, uint64_t off, uint32_t wall_s)
{
	memcpy(rec, d->hash, CAIRN_HASH_LEN);
	put32(rec + 32, (uint32_t)d->size);
	put32(rec + 36, (uint32_t)(off >> CACHEFS_SLOT_SHIFT));
	put32(rec + 40, wall_s);
	put32(rec + 44, record_check(rec));
}

bool cachefs_record_get(const uint8_t *rec, cairn_digest *d, uint64_t *off, uint32_t *wall_s)
{
	if (get32(rec + 44) != record_check(rec))
		return false;
	memcpy(d->hash, rec, CAIRN_HASH_LEN);
	d->size = get32(rec + 32);
	*off = (uint64_t)get32(rec + 36) << CACHEFS_SLOT_SHIFT;
	*wall_s = get32(rec + 40);
	return d->size > 0 && d->size <= CACHEFS_PACK_MAX_BLOB && *off < CACHEFS_PACK_MAX_SIZE;
}

bool cachefs_packs_check(const cachefs *fs)
{
	const cachefs_index *ix = &fs->ix;
	uint32_t *live = cairn_xcalloc(CACHEFS_MAX_PACKS, sizeof *live);
	bool ok = true;
	for (uint32_t s = 0; s <= ix->mask; s++) {
		if (!ix->slots[s])
			continue;
		uint32_t loc = cachefs_index_at(ix, ix->slots[s] - 1)->loc;
		ok &= !loc || fs->packs[cachefs_loc_pack(loc)] != NULL;
		live[cachefs_loc_pack(loc)] += loc != 0;
	}
	uint32_t n = 0;
	for (uint32_t id = 1; id < CACHEFS_MAX_PACKS; id++) {
		const cachefs_pack *p = fs->packs[id];
		ok &= p ? p->live == live[id] && p->id == id : live[id] == 0;
		n += p != NULL;
	}
	free(live);
	return ok && n == fs->npacks;
}
