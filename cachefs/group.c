/* The group commit of small blobs. Verified small writers queue here (cachefs_group_commit, any
 * thread) and the I/O thread writes them into the active pack, a group at a time:
 *
 *   claim each digest in the index (PENDING; a blob held already is a duplicate, done at once),
 *   one writev of all their bytes at consecutive 4 KiB slots,
 *   with fsync, fdatasync of the data file,
 *   one write of all their journal records,
 *   with fsync, fdatasync of the journal,
 *   publish them in the index in one lock round, and report.
 *
 * Writers that queue while a group is in flight make the next one, so concurrent commits share its
 * system calls and, with fsync, its two syncs. One group at a time keeps the records in order and
 * lets a group whose data write failed leave its slots to the next. A full pack (or none, after a
 * start) is retired and a new one created first. */
#include "cachefs/internal.h"

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define SLOT (1u << CACHEFS_SLOT_SHIFT)

/* What pads a blob to the end of its last slot. */
static const uint8_t zeros[SLOT];

static void next_group(cachefs *fs);

void cachefs_packer_init(cachefs_packer *pk) { pthread_mutex_init(&pk->mu, NULL); }

void cachefs_packer_destroy(cachefs_packer *pk)
{
	assert(!pk->head && !pk->busy && pk->n == 0);
	pthread_mutex_destroy(&pk->mu);
}

static void on_kick(cachefs_op *op, int64_t res)
{
	(void)res;
	next_group(op->arg);
}

static void enqueue(cachefs *fs, cachefs_writer *w)
{
	cachefs_packer *pk = &fs->pk;
	w->queued = NULL;
	pthread_mutex_lock(&pk->mu);
	if (pk->tail)
		pk->tail->queued = w;
	else
		pk->head = w;
	pk->tail = w;
	bool kick = !pk->busy;
	pk->busy = true;
	pthread_mutex_unlock(&pk->mu);
	if (kick) {
		pk->kick = (cachefs_op){.kind = CACHEFS_OP_NOP, .cb = on_kick, .arg = fs};
		cachefs_ring_submit(&fs->ring, &pk->kick);
	}
}

void cachefs_group_commit(cachefs_writer *w) { enqueue(w->fs, w); }

static void retry(cachefs_op *op, int64_t res)
{
	(void)res;
	cachefs_writer *w = op->arg;
	enqueue(w->fs, w);
}

/* Moves queued writers into the group while their slots fit in room. Under pk->mu. */
static void take(cachefs_packer *pk, uint64_t room)
{
	uint64_t bytes = 0;
	while (pk->head && pk->n < CACHEFS_GROUP_MAX) {
		uint64_t b = cachefs_slot_bytes(pk->head->base.digest.size);
		if (bytes + b > room)
			break;
		bytes += b;
		pk->g[pk->n++] = pk->head;
		pk->head = pk->head->queued;
	}
	if (!pk->head)
		pk->tail = NULL;
}

/* Claims the group's digests; duplicates are done, and those another commit or an eviction is busy
 * with try again in 1 ms (as commit.c's writers do). */
static void claim(cachefs *fs)
{
	cachefs_packer *pk = &fs->pk;
	cachefs_writer *held[CACHEFS_GROUP_MAX], *busy[CACHEFS_GROUP_MAX];
	size_t n = 0, nheld = 0, nbusy = 0;
	pthread_mutex_lock(&fs->ix.mu);
	uint32_t now = cachefs_index_tick(&fs->ix, cairn_now_ns());
	for (size_t k = 0; k < pk->n; k++) {
		cachefs_writer *w = pk->g[k];
		switch (cachefs_index_claim(&fs->ix, &w->base.digest, now)) {
		case CACHEFS_CLAIMED:
			pk->g[n++] = w;
			break;
		case CACHEFS_HELD:
			held[nheld++] = w;
			break;
		case CACHEFS_BUSY:
			busy[nbusy++] = w;
			break;
		}
	}
	pthread_mutex_unlock(&fs->ix.mu);
	pk->n = n;
	for (size_t k = 0; k < nheld; k++)
		cachefs_writer_finish(held[k], cairn_ok());
	for (size_t k = 0; k < nbusy; k++) {
		cachefs_writer *w = busy[k];
		w->ctl = (cachefs_op){.kind = CACHEFS_OP_TIMEOUT, .ts = {.tv_nsec = 1000000}, .cb = retry, .arg = w};
		cachefs_ring_submit(&fs->ring, &w->ctl);
	}
}

/* Every writer of the group hears of the I/O error on packs/<name>; the group is then empty. */
static void finish_group_failed(cachefs *fs, int64_t res, const char *what, const char *name)
{
	cachefs_packer *pk = &fs->pk;
	char rel[32];
	snprintf(rel, sizeof rel, "packs/%s", name);
	for (size_t k = 0; k < pk->n; k++) {
		cachefs_writer *w = pk->g[k];
		cachefs_writer_finish(w, cachefs_io_error(fs, &w->base.digest, res, what, rel));
	}
	pk->n = 0;
}

/* The group failed before its records were written: its claims are given up, each writer hears. */
static void fail_group(cachefs *fs, int64_t res, const char *what, const char *name)
{
	cachefs_packer *pk = &fs->pk;
	pthread_mutex_lock(&fs->ix.mu);
	for (size_t k = 0; k < pk->n; k++)
		cachefs_index_unclaim(&fs->ix, cachefs_index_find(&fs->ix, &pk->g[k]->base.digest));
	pthread_mutex_unlock(&fs->ix.mu);
	finish_group_failed(fs, res, what, name);
}

static void publish_group(cachefs *fs, cairn_status st)
{
	cachefs_packer *pk = &fs->pk;
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t now = cachefs_index_tick(ix, cairn_now_ns());
	for (size_t k = 0; k < pk->n; k++) {
		cachefs_writer *w = pk->g[k];
		uint32_t i = cachefs_index_find(ix, &w->base.digest);
		cachefs_entry *e = cachefs_index_at(ix, i);
		assert(e->state == CACHEFS_PENDING && e->loc == 0);
		e->loc = w->loc;
		cachefs_pack_of(fs, w->loc)->live++;
		cachefs_index_publish(ix, i, now);
		ix->reserved -= w->reserved; /* now counted in bytes */
		w->reserved = 0;
	}
	int64_t bytes = ix->bytes;
	pthread_mutex_unlock(&ix->mu);
	cachefs_evict_kick(fs, bytes);
	for (size_t k = 0; k < pk->n; k++)
		cachefs_writer_finish(pk->g[k], st);
	pk->n = 0;
}

/* The end of the journal write and of its sync. A journal that failed may hold a torn record, after
 * which no other may follow: its pack is retired (the group's slots stay until the pack is deleted,
 * or the next start-up scan punches them). */
static void records_written(cachefs_op *op, int64_t res)
{
	cachefs *fs = op->arg;
	cachefs_packer *pk = &fs->pk;
	cachefs_pack *p = pk->active;
	if (res >= 0 && op->kind == CACHEFS_OP_WRITE) {
		p->jend += pk->n * CACHEFS_RECORD_SIZE;
		if (fs->cfg.fsync) {
			pk->op = (cachefs_op){.kind = CACHEFS_OP_FSYNC, .fd = p->jfd, .flags = IORING_FSYNC_DATASYNC,
			                      .cb = records_written, .arg = fs};
			return cachefs_ring_submit(&fs->ring, &pk->op);
		}
	}
	if (res < 0 && op->kind == CACHEFS_OP_WRITE) {
		fail_group(fs, res, "writing", p->journal_name);
	} else if (res < 0) {
		/* the records are written, as far as this process can tell: the blobs are held, and their
		 * clients hear that they may not survive a power loss (as after a failed directory fsync) */
		publish_group(fs, cairn_errno((int)-res, "cachefs: fdatasync of %s/packs/%s", fs->dir, p->journal_name));
	} else {
		publish_group(fs, cairn_ok());
	}
	if (res < 0) {
		pk->active = NULL;
		cachefs_pack_retire(fs, p);
	}
	next_group(fs);
}

static void write_records(cachefs *fs)
{
	cachefs_packer *pk = &fs->pk;
	uint32_t now_s = (uint32_t)(cairn_wall_ns() / 1000000000);
	for (size_t k = 0; k < pk->n; k++)
		cachefs_record_put(pk->rec + k * CACHEFS_RECORD_SIZE, &pk->g[k]->base.digest, cachefs_loc_off(pk->g[k]->loc),
		                   now_s);
	pk->op = (cachefs_op){.kind = CACHEFS_OP_WRITE, .fd = pk->active->jfd, .buf = pk->rec,
	                      .len = pk->n * CACHEFS_RECORD_SIZE, .off = pk->active->jend, .cb = records_written,
	                      .arg = fs};
	cachefs_ring_submit(&fs->ring, &pk->op);
}

/* The end of the data write and of its sync. */
static void data_written(cachefs_op *op, int64_t res)
{
	cachefs *fs = op->arg;
	cachefs_packer *pk = &fs->pk;
	cachefs_pack *p = pk->active;
	if (res < 0) {
		p->end = pk->off; /* no record names these slots: the next group writes over them */
		fail_group(fs, res, op->kind == CACHEFS_OP_WRITEV ? "writing" : "syncing", p->data_name);
		return next_group(fs);
	}
	if (op->kind == CACHEFS_OP_WRITEV && fs->cfg.fsync) {
		pk->op = (cachefs_op){.kind = CACHEFS_OP_FSYNC, .fd = p->fd, .flags = IORING_FSYNC_DATASYNC,
		                      .cb = data_written, .arg = fs};
		return cachefs_ring_submit(&fs->ring, &pk->op);
	}
	write_records(fs);
}

static void write_data(cachefs *fs)
{
	cachefs_packer *pk = &fs->pk;
	cachefs_pack *p = pk->active;
	size_t nv = 0;
	uint64_t off = pk->off = p->end;
	for (size_t k = 0; k < pk->n; k++) {
		cachefs_writer *w = pk->g[k];
		size_t size = (size_t)w->base.digest.size, slots = cachefs_slot_bytes(w->base.digest.size);
		w->loc = cachefs_loc(p->id, off);
		pk->iov[nv++] = (struct iovec){w->b[0].data, size};
		if (slots > size)
			pk->iov[nv++] = (struct iovec){(void *)zeros, slots - size};
		off += slots;
	}
	p->end = off;
	pk->op = (cachefs_op){.kind = CACHEFS_OP_WRITEV, .fd = p->fd, .buf = pk->iov, .nvec = (unsigned)nv,
	                      .len = off - pk->off, .off = pk->off, .cb = data_written, .arg = fs};
	cachefs_ring_submit(&fs->ring, &pk->op);
}

/* ---- a new pack ---- */

/* Every pack id is taken (thousands of packs each hold some live blob): the first queued writers are
 * stored as files of their own instead. */
static void queue_to_files(cachefs *fs)
{
	cachefs_packer *pk = &fs->pk;
	pthread_mutex_lock(&pk->mu);
	take(pk, UINT64_MAX);
	pthread_mutex_unlock(&pk->mu);
	for (size_t k = 0; k < pk->n; k++)
		cachefs_writer_commit_file(pk->g[k]);
	pk->n = 0;
}

/* Creating the pack failed: it goes, and the first queued writers hear why. */
static void fresh_failed(cachefs *fs, int64_t res, const char *what, const char *name)
{
	cachefs_packer *pk = &fs->pk;
	cachefs_pack *p = pk->fresh;
	pk->fresh = NULL;
	pthread_mutex_lock(&pk->mu);
	take(pk, UINT64_MAX);
	pthread_mutex_unlock(&pk->mu);
	finish_group_failed(fs, res, what, name);
	pthread_mutex_lock(&fs->ix.mu);
	bool unused = cachefs_pack_unused(p);
	pthread_mutex_unlock(&fs->ix.mu);
	assert(unused);
	cachefs_pack_delete(fs, p);
}

/* The steps of a pack's creation: its data file, its journal, with fsync the directory entries. */
static void fresh_step(cachefs_op *op, int64_t res)
{
	cachefs *fs = op->arg;
	cachefs_packer *pk = &fs->pk;
	cachefs_pack *p = pk->fresh;
	if (res < 0) {
		bool open = op->kind == CACHEFS_OP_OPENAT;
		fresh_failed(fs, res, open ? "creating" : "syncing", open ? op->path : ".");
		return next_group(fs);
	}
	if (op->kind == CACHEFS_OP_OPENAT && p->fd < 0) {
		p->fd = (int)res;
		pk->op = (cachefs_op){.kind = CACHEFS_OP_OPENAT, .fd = fs->packsfd, .path = p->journal_name,
		                      .flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, .mode = 0644,
		                      .cb = fresh_step, .arg = fs};
		return cachefs_ring_submit(&fs->ring, &pk->op);
	}
	if (op->kind == CACHEFS_OP_OPENAT) {
		p->jfd = (int)res;
		if (fs->cfg.fsync) {
			pk->op = (cachefs_op){.kind = CACHEFS_OP_FSYNC, .fd = fs->packsfd, .cb = fresh_step, .arg = fs};
			return cachefs_ring_submit(&fs->ring, &pk->op);
		}
	}
	pthread_mutex_lock(&fs->ix.mu);
	p->active = true;
	pthread_mutex_unlock(&fs->ix.mu);
	pk->active = p;
	pk->fresh = NULL;
	next_group(fs);
}

static void new_pack(cachefs *fs)
{
	cachefs_packer *pk = &fs->pk;
	if (pk->active) {
		cachefs_pack_retire(fs, pk->active);
		pk->active = NULL;
	}
	pthread_mutex_lock(&fs->ix.mu);
	cachefs_pack *p = cachefs_pack_add(fs, 0);
	pthread_mutex_unlock(&fs->ix.mu);
	if (!p) {
		queue_to_files(fs);
		return next_group(fs);
	}
	pk->fresh = p;
	/* O_TRUNC: a file left under a free id (a deletion that failed) holds nothing anyone needs */
	pk->op = (cachefs_op){.kind = CACHEFS_OP_OPENAT, .fd = fs->packsfd, .path = p->data_name,
	                      .flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, .mode = 0644, .cb = fresh_step, .arg = fs};
	cachefs_ring_submit(&fs->ring, &pk->op);
}

/* Starts the next group, or a new pack for it; stops when the queue is empty. I/O thread. */
static void next_group(cachefs *fs)
{
	cachefs_packer *pk = &fs->pk;
	for (;;) {
		assert(pk->n == 0);
		pthread_mutex_lock(&pk->mu);
		if (!pk->head) {
			pk->busy = false;
			pthread_mutex_unlock(&pk->mu);
			return;
		}
		uint64_t room = pk->active && pk->active->end < fs->pack_limit ? fs->pack_limit - pk->active->end : 0;
		uint64_t need = cachefs_slot_bytes(pk->head->base.digest.size);
		if (need > room) {
			assert(need <= fs->pack_limit); /* a new pack takes it */
			pthread_mutex_unlock(&pk->mu);
			return new_pack(fs);
		}
		take(pk, room);
		pthread_mutex_unlock(&pk->mu);
		claim(fs);
		if (pk->n)
			return write_data(fs);
	}
}
