/* The start-up scan of packs/, after cas/ (scan.c). Plain system calls: it runs before the ring.
 *
 * For each pack with both files, the journal is read in order up to its first record that fails its
 * check (a torn tail: the journal is cut there). A record is live when its slots lie within the data
 * file and hold no hole (an evicted blob's slots were punched) and its digest is not held already (by
 * its own file in cas/, which wins, or by an earlier pack). Every stretch of the data file no live
 * record covers is punched, or cut off at the end: the slots of dead blobs, duplicates, and data a
 * crash left without its record. A pack left with no live record is removed, as is a lone data file
 * or journal (a deletion or a creation a crash interrupted) and anything else in packs/. After the
 * scan no pack is active: the first small blob starts a new one. */
#include "cachefs/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HAS_DATA 1
#define HAS_JOURNAL 2
/* The records a journal can hold: one per slot of a full pack. */
#define MAX_RECORDS (CACHEFS_PACK_MAX_SIZE >> CACHEFS_SLOT_SHIFT)

/* The id of "<id>.data" or "<id>.journal" (as cachefs_pack_add names them), and which it is. */
static uint32_t parse_pack_name(const char *name, int *kind)
{
	if (name[0] < '1' || name[0] > '9') /* one spelling per id */
		return 0;
	char *end;
	errno = 0;
	unsigned long id = strtoul(name, &end, 10);
	if (errno || id >= CACHEFS_MAX_PACKS)
		return 0;
	*kind = !strcmp(end, ".data") ? HAS_DATA : !strcmp(end, ".journal") ? HAS_JOURNAL : 0;
	return *kind ? (uint32_t)id : 0;
}

static void remove_file(cachefs *fs, const char *name)
{
	if (unlinkat(fs->packsfd, name, 0) != 0 && errno != ENOENT)
		LOG_WARN("cachefs", "cannot remove path=%s/packs/%s error=%s", fs->dir, name, strerror(errno));
}

static void punch(cachefs *fs, const cachefs_pack *p, uint64_t from, uint64_t to)
{
	if (from < to && fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, (off_t)(to - from)))
		LOG_WARN("cachefs", "cannot free dead space path=%s/packs/%s offset=%" PRIu64 " error=%s", fs->dir,
		         p->data_name, from, strerror(errno));
}

/* The journal's good records, after which it is cut; NULL (and *n 0) if it cannot be read. */
static uint8_t *read_journal(cachefs *fs, const cachefs_pack *p, int jfd, size_t *n)
{
	struct stat st;
	*n = 0;
	if (fstat(jfd, &st) != 0)
		return NULL;
	size_t cap = (size_t)st.st_size / CACHEFS_RECORD_SIZE;
	cap = cap < MAX_RECORDS ? cap : MAX_RECORDS;
	uint8_t *recs = cairn_xmalloc(cap * CACHEFS_RECORD_SIZE + 1);
	ssize_t got = pread(jfd, recs, cap * CACHEFS_RECORD_SIZE, 0);
	size_t whole = got > 0 ? (size_t)got / CACHEFS_RECORD_SIZE : 0;
	cairn_digest d;
	uint64_t off;
	uint32_t t;
	while (*n < whole && cachefs_record_get(recs + *n * CACHEFS_RECORD_SIZE, &d, &off, &t))
		(*n)++;
	off_t good = (off_t)(*n * CACHEFS_RECORD_SIZE);
	if (got >= 0 && good != st.st_size) {
		LOG_WARN("cachefs", "journal cut after its last good record path=%s/packs/%s records=%zu "
		         "dropped_bytes=%" PRId64, fs->dir, p->journal_name, *n, (int64_t)(st.st_size - good));
		if (ftruncate(jfd, good) != 0)
			LOG_WARN("cachefs", "cannot cut path=%s/packs/%s error=%s", fs->dir, p->journal_name, strerror(errno));
	}
	return recs;
}

/* Whether a packed blob's slots [from, to) are all data (no hole punched in them). */
static bool all_data(const cachefs_pack *p, uint64_t from, uint64_t to)
{
	off_t hole = lseek(p->fd, (off_t)from, SEEK_HOLE);
	return hole >= 0 && (uint64_t)hole >= to;
}

/* Indexes the live records of an open pack and frees the rest of its data file. */
static void index_pack(cachefs *fs, cachefs_found *s, cachefs_pack *p, const uint8_t *recs, size_t n)
{
	struct stat st;
	uint64_t size = fstat(p->fd, &st) == 0 ? (uint64_t)st.st_size : 0, pos = 0;
	for (size_t k = 0; k < n; k++) {
		cairn_digest d;
		uint64_t off;
		uint32_t wall_s;
		cachefs_record_get(recs + k * CACHEFS_RECORD_SIZE, &d, &off, &wall_s);
		uint64_t end = off + cachefs_slot_bytes(d.size);
		if (off < pos || end > size || !all_data(p, off, end) || cachefs_index_find(&fs->ix, &d) != CACHEFS_NIL)
			continue; /* dead, or held already */
		punch(fs, p, pos, off);
		pos = end;
		cachefs_scan_add(fs, s, &d, (int64_t)wall_s * 1000000000, cachefs_loc(p->id, off));
		p->live++;
	}
	if (pos < size && ftruncate(p->fd, (off_t)pos) != 0)
		punch(fs, p, pos, size);
}

static void scan_pack(cachefs *fs, cachefs_found *s, uint32_t id)
{
	cachefs_pack *p = cachefs_pack_add(fs, id);
	p->fd = openat(fs->packsfd, p->data_name, O_RDWR | O_CLOEXEC);
	int jfd = openat(fs->packsfd, p->journal_name, O_RDWR | O_CLOEXEC);
	size_t n = 0;
	uint8_t *recs = p->fd >= 0 && jfd >= 0 ? read_journal(fs, p, jfd, &n) : NULL;
	if (!recs)
		LOG_WARN("cachefs", "cannot read pack; its blobs are dropped path=%s/packs/%u error=%s", fs->dir, id,
		         strerror(errno));
	else
		index_pack(fs, s, p, recs, n);
	free(recs);
	if (jfd >= 0)
		close(jfd);
	if (p->live) {
		s->packs++;
		s->packed += p->live;
		return;
	}
	remove_file(fs, p->journal_name);
	remove_file(fs, p->data_name);
	if (p->fd >= 0)
		close(p->fd);
	fs->packs[id] = NULL;
	fs->npacks--;
	free(p);
}

cairn_status cachefs_scan_packs(cachefs *fs, cachefs_found *s)
{
	int fd = dup(fs->packsfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return cairn_errno(errno, "cachefs: cannot list %s/packs", fs->dir);
	}
	rewinddir(d); /* a dup shares its position with packsfd, which the probe may have read to the end */
	uint8_t *has = cairn_xcalloc(CACHEFS_MAX_PACKS, 1);
	for (struct dirent *de; (de = readdir(d));) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int kind = 0;
		uint32_t id = parse_pack_name(de->d_name, &kind);
		if (id)
			has[id] |= (uint8_t)kind;
		else
			remove_file(fs, de->d_name);
	}
	closedir(d);
	for (uint32_t id = 1; id < CACHEFS_MAX_PACKS; id++) {
		if (has[id] == (HAS_DATA | HAS_JOURNAL) && fs->packing) {
			scan_pack(fs, s, id);
		} else if (has[id]) {
			/* half a pack, or packs where holes cannot be trusted (see pack.c): nothing to keep */
			char name[24];
			snprintf(name, sizeof name, "%u.journal", id);
			remove_file(fs, name);
			snprintf(name, sizeof name, "%u.data", id);
			remove_file(fs, name);
		}
	}
	free(has);
	return cairn_ok();
}
