/* The end of a large writer, run once nothing of it is in flight: the chain of ring operations that makes a
 * verified blob visible (its seal, fsync, close, rename into cas/, fsync of the directory, publish in
 * the index), or that removes the temp file of a failed or aborted one. Each step's callback starts
 * the next; only the chain touches the writer now. The seal (seal.c: mode 0644 and the modification
 * time) is set with two plain system calls on the I/O thread, which change only the inode in memory;
 * it comes after the last write, which would break it, and before the fsync that makes it durable.
 *
 * The rename happens while the digest's entry is PENDING, and eviction (or seal.c's drop of a corrupt
 * blob) unlinks only while an entry is DYING; an entry has one state, so a rename into place and an
 * unlink of the same name never overlap. A commit that finds the digest PENDING (another upload of
 * the same blob) or DYING polls with a 1 ms ring timeout until it is settled; one that finds it
 * VISIBLE drops its own copy: the blob is stored once. */
#include "cachefs/internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void cleanup(cachefs_writer *w, cairn_status st);
static void place(cachefs_writer *w);

void cachefs_writer_free(cachefs_writer *w)
{
	cachefs_space_release(w);
	assert(w->fd < 0 && !w->has_file);
	for (int i = 0; i < 2; i++)
		free(w->b[i].data);
	cairn_hasher_free(w->hasher);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

void cachefs_writer_finish(cachefs_writer *w, cairn_status st)
{
	blobstore_done_cb cb = w->done_cb;
	void *arg = w->done_arg;
	bool aborted = w->phase == CACHEFS_W_ABORTING;
	cachefs_writer_free(w);
	if (!aborted && cb)
		cb(arg, st);
}

static void submit_ctl(cachefs_writer *w, cachefs_op op)
{
	op.arg = w;
	w->ctl = op;
	cachefs_ring_submit(&w->fs->ring, &w->ctl);
}

static void cleanup_step(cachefs_op *op, int64_t res)
{
	cachefs_writer *w = op->arg;
	if (op->kind == CACHEFS_OP_CLOSE) {
		w->fd = -1;
	} else {
		if (res < 0 && res != -ENOENT)
			LOG_WARN("cachefs", "cannot remove temp file path=%s/cas/%02x/%s error=%s", w->fs->dir,
			         w->base.digest.hash[0], w->tmpname,
			         strerror((int)-res));
		w->has_file = false;
	}
	cleanup(w, w->outcome);
}

/* Closes and removes the temp file, whatever of it exists, then reports st. */
static void cleanup(cachefs_writer *w, cairn_status st)
{
	w->outcome = st;
	if (w->fd >= 0)
		submit_ctl(w, (cachefs_op){.kind = CACHEFS_OP_CLOSE, .fd = w->fd, .cb = cleanup_step});
	else if (w->has_file)
		submit_ctl(w, (cachefs_op){.kind = CACHEFS_OP_UNLINKAT, .fd = cachefs_tmp_dirfd(w), .path = w->tmpname,
		                           .cb = cleanup_step});
	else
		cachefs_writer_finish(w, st);
}

static void publish(cachefs_writer *w, cairn_status st)
{
	cachefs_index *ix = &w->fs->ix;
	pthread_mutex_lock(&ix->mu);
	uint32_t i = cachefs_index_find(ix, &w->base.digest);
	assert(i != CACHEFS_NIL && cachefs_index_at(ix, i)->state == CACHEFS_PENDING);
	cachefs_index_publish(ix, i, cachefs_index_tick(ix, cairn_now_ns()));
	ix->reserved -= w->reserved; /* now counted in bytes */
	w->reserved = 0;
	int64_t bytes = ix->bytes;
	pthread_mutex_unlock(&ix->mu);
	cachefs_evict_kick(w->fs, bytes);
	cachefs_writer_finish(w, st);
}

static void on_dir_synced(cachefs_op *op, int64_t res)
{
	cachefs_writer *w = op->arg;
	/* the blob is in place and verified either way; the client hears that it may not be durable */
	publish(w, res < 0 ? cairn_errno((int)-res, "cachefs: fsync of %s/cas/%02x", w->fs->dir,
	                                 w->base.digest.hash[0])
	                   : cairn_ok());
}

static void on_renamed(cachefs_op *op, int64_t res)
{
	cachefs_writer *w = op->arg;
	cachefs *fs = w->fs;
	if (res < 0) {
		pthread_mutex_lock(&fs->ix.mu);
		cachefs_index_unclaim(&fs->ix, cachefs_index_find(&fs->ix, &w->base.digest));
		pthread_mutex_unlock(&fs->ix.mu);
		return cleanup(w, cachefs_writer_io_error(w, res, "renaming into cas/"));
	}
	w->has_file = false;
	if (!fs->cfg.fsync)
		return publish(w, cairn_ok());
	submit_ctl(w, (cachefs_op){.kind = CACHEFS_OP_FSYNC, .fd = fs->casfd[w->base.digest.hash[0]],
	                           .cb = on_dir_synced});
}

static void place_retry(cachefs_op *op, int64_t res)
{
	(void)res;
	place(op->arg);
}

/* Claims the digest in the index, then renames the closed temp file into cas/. */
static void place(cachefs_writer *w)
{
	cachefs *fs = w->fs;
	cachefs_index *ix = &fs->ix;
	pthread_mutex_lock(&ix->mu);
	enum cachefs_claim c = cachefs_index_claim(ix, &w->base.digest, cachefs_index_tick(ix, cairn_now_ns()));
	pthread_mutex_unlock(&ix->mu);
	if (c == CACHEFS_HELD)
		return cleanup(w, cairn_ok());
	if (c == CACHEFS_BUSY)
		return submit_ctl(w, (cachefs_op){.kind = CACHEFS_OP_TIMEOUT, .ts = {.tv_nsec = 1000000},
		                                  .cb = place_retry});
	submit_ctl(w, (cachefs_op){.kind = CACHEFS_OP_RENAMEAT, .fd = cachefs_tmp_dirfd(w), .path = w->tmpname,
	                           .fd2 = fs->casfd[w->base.digest.hash[0]], .path2 = w->name,
	                           .cb = on_renamed});
}

static void on_closed(cachefs_op *op, int64_t res)
{
	cachefs_writer *w = op->arg;
	w->fd = -1;
	if (res < 0)
		return cleanup(w, cachefs_writer_io_error(w, res, "closing"));
	place(w);
}

static void close_file(cachefs_writer *w)
{
	submit_ctl(w, (cachefs_op){.kind = CACHEFS_OP_CLOSE, .fd = w->fd, .cb = on_closed});
}

static void on_synced(cachefs_op *op, int64_t res)
{
	cachefs_writer *w = op->arg;
	if (res < 0)
		return cleanup(w, cachefs_writer_io_error(w, res, "syncing"));
	close_file(w);
}

void cachefs_writer_finish_chain(cachefs_writer *w)
{
	assert(w->chain && cachefs_writer_idle(w));
	if (w->phase == CACHEFS_W_ABORTING)
		return cleanup(w, cairn_err(CAIRN_CANCELLED, "upload aborted"));
	cairn_status st = cairn_is_ok(&w->outcome) ? w->err : w->outcome;
	if (!cairn_is_ok(&st))
		return cleanup(w, st);
	if (!w->has_file) {
		/* nothing was written, and the hash matched: the empty blob, which needs no file */
		assert(w->base.digest.size == 0);
		return cachefs_writer_finish(w, cairn_ok());
	}
	int rc = cachefs_seal_fd(w->fs, w->fd, &w->base.digest);
	if (rc < 0)
		return cleanup(w, cachefs_writer_io_error(w, rc, "sealing"));
	if (w->fs->cfg.fsync)
		return submit_ctl(w, (cachefs_op){.kind = CACHEFS_OP_FSYNC, .fd = w->fd, .cb = on_synced});
	close_file(w);
}
