/* A whole blob read into memory without blocking: open, one read of the whole size, close. For the
 * small messages that live in the CAS (Actions, Commands, Directories) and for blobs a caller has
 * already bounded; large blobs are streamed through a reader instead. */
#include "blobstore/blobstore.h"

#include <stdlib.h>

typedef struct get_all {
	blobstore_reader *r;
	uint8_t *data;
	size_t len;
	blobstore_get_cb cb;
	void *arg;
} get_all;

static void get_done(get_all *g, cairn_status st)
{
	if (g->r)
		blobstore_close_read(g->r);
	if (!cairn_is_ok(&st)) {
		free(g->data);
		g->cb(g->arg, st, NULL, 0);
	} else {
		g->cb(g->arg, st, g->data, g->len);
	}
	free(g);
}

static void get_read(void *arg, cairn_status st, size_t n)
{
	get_all *g = arg;
	if (cairn_is_ok(&st) && n != g->len)
		st = cairn_err(CAIRN_DATA_LOSS, "blob is shorter than its digest says");
	get_done(g, st);
}

static void get_open(void *arg, cairn_status st, blobstore_reader *r)
{
	get_all *g = arg;
	if (!cairn_is_ok(&st)) {
		get_done(g, st);
		return;
	}
	g->r = r;
	if (g->len == 0) {
		get_done(g, cairn_ok());
		return;
	}
	g->data = cairn_xmalloc(g->len);
	blobstore_read(r, 0, g->data, g->len, get_read, g);
}

void blobstore_get(blobstore *bs, const cairn_digest *d, int64_t max, blobstore_get_cb cb, void *arg)
{
	if (d->size > max) {
		char ds[CAIRN_DIGEST_STR_MAX];
		cb(arg, cairn_err(CAIRN_RESOURCE_EXHAUSTED, "blob %s is larger than %lld bytes", cairn_digest_str(d, ds),
		                  (long long)max),
		   NULL, 0);
		return;
	}
	get_all *g = cairn_xcalloc(1, sizeof *g);
	g->len = (size_t)d->size;
	g->cb = cb;
	g->arg = arg;
	blobstore_open_read(bs, d, get_open, g);
}
