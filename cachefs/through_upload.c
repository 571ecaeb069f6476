/* Uploads of committed blobs to the bucket: sync writes that were not streamed (through_stream.c)
 * and the async backlog.
 *
 * Blobs below CACHEFS_THROUGH_SMALL (1 MiB) go up from memory and need no file of their own (small
 * blobs may live in pack files): a sync writer kept a copy of their bytes as they passed; the async
 * backlog reads them back through the local blobstore. They are PUT without a HEAD. Larger blobs are
 * single files in cachefs: they are pinned (not evicted) and uploaded from that file, after a HEAD
 * that skips those the bucket has with the right size. */
#include "cachefs/through.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct upload {
	cachefs_through *t;
	cairn_digest d;
	bool pinned;     /* large blobs, while their file is read */
	char path[4096]; /* large blobs: the file */
	blobstore_reader *r;  /* async small blobs: reading back */
	uint8_t *data;   /* async small blobs: the bytes read back */
	blobstore_done_cb cb; /* sync: the client's commit callback; async: NULL */
	void *arg;
} upload;

static void upload_end(upload *u, cairn_status st)
{
	cachefs_through *t = u->t;
	if (u->pinned)
		cachefs_unpin(t->fs, &u->d);
	if (u->cb) {
		u->cb(u->arg, st);
	} else {
		pthread_mutex_lock(&t->mu);
		for (size_t i = 0; i < t->ninflight; i++)
			if (cairn_digest_eq(&t->inflight[i], &u->d)) {
				t->inflight[i] = t->inflight[--t->ninflight];
				break;
			}
		pthread_mutex_unlock(&t->mu);
		if (cairn_is_ok(&st)) {
			char m[4200];
			cachefs_through_marker(t, &u->d, m, sizeof m);
			unlink(m);
			atomic_fetch_sub(&t->backlog, 1);
			cachefs_unpin(t->fs, &u->d); /* the pin the marker held */
		} else {
			LOG_WARN("cachefs", "write-through failed, will retry: %s", cairn_status_str(&st));
		}
	}
	free(u->data);
	free(u);
	cachefs_through_active(t, -1);
}

static void put_done(void *arg, cairn_status st)
{
	upload *u = arg;
	if (cairn_is_ok(&st)) {
		atomic_fetch_add(&u->t->uploaded, 1);
	} else {
		atomic_fetch_add(&u->t->failures, 1);
		if (u->cb)
			st = cachefs_through_unavailable(&st);
	}
	upload_end(u, st);
}

static void put_memory(upload *u, const uint8_t *data)
{
	char key[CACHEFS_THROUGH_KEY_MAX];
	cachefs_through_key(&u->d, key);
	objstore_put(u->t->os, key, data, (size_t)u->d.size, put_done, u);
}

static void head_done(void *arg, cairn_status st, int64_t size)
{
	upload *u = arg;
	if (cairn_is_ok(&st) && size == u->d.size) {
		atomic_fetch_add(&u->t->skipped, 1); /* the bucket has it already */
		return upload_end(u, st);
	}
	char key[CACHEFS_THROUGH_KEY_MAX];
	cachefs_through_key(&u->d, key);
	objstore_put_file(u->t->os, key, u->path, u->d.hash, put_done, u);
}

static void upload_file(upload *u)
{
	cairn_status st = cachefs_pin_path(u->t->fs, &u->d, u->path, sizeof u->path);
	if (!cairn_is_ok(&st))
		return upload_end(u, st);
	u->pinned = true;
	char key[CACHEFS_THROUGH_KEY_MAX];
	cachefs_through_key(&u->d, key);
	objstore_head(u->t->os, key, head_done, u);
}

static void read_back(void *arg, cairn_status st, size_t n)
{
	upload *u = arg;
	blobstore_close_read(u->r);
	if (cairn_is_ok(&st) && n != (size_t)u->d.size)
		st = cairn_err(CAIRN_DATA_LOSS, "write-through: read back %zu of the blob's %lld bytes", n,
		               (long long)u->d.size);
	if (!cairn_is_ok(&st))
		return upload_end(u, st);
	put_memory(u, u->data); /* copied by objstore_put; freed at the end */
}

static void opened(void *arg, cairn_status st, blobstore_reader *r)
{
	upload *u = arg;
	if (!cairn_is_ok(&st))
		return upload_end(u, st);
	u->r = r;
	u->data = cairn_xmalloc((size_t)u->d.size);
	blobstore_read(r, 0, u->data, (size_t)u->d.size, read_back, u);
}

void cachefs_through_upload(cachefs_through *t, const cairn_digest *d, const uint8_t *data, blobstore_done_cb cb,
                            void *arg)
{
	upload *u = cairn_xcalloc(1, sizeof *u);
	*u = (upload){.t = t, .d = *d, .cb = cb, .arg = arg};
	cachefs_through_active(t, 1);
	if (data)
		put_memory(u, data);
	else if (d->size < CACHEFS_THROUGH_SMALL)
		blobstore_open_read(t->local, d, opened, u);
	else
		upload_file(u);
}

void cachefs_through_upload_backlogged(cachefs_through *t, const cairn_digest *d)
{
	pthread_mutex_lock(&t->mu);
	bool go = t->ninflight < CACHEFS_THROUGH_MAX_INFLIGHT;
	for (size_t i = 0; go && i < t->ninflight; i++)
		go = !cairn_digest_eq(&t->inflight[i], d);
	if (go)
		t->inflight[t->ninflight++] = *d;
	pthread_mutex_unlock(&t->mu);
	if (go)
		cachefs_through_upload(t, d, NULL, NULL, NULL);
}
