/* Uploads and the table of interrupted ones, kept so that a client can resume at committed_size. */
#include "gateway/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct upload_table {
	pthread_mutex_t mu;
	upload *head; /* most recently parked first */
	int64_t count, max;
	int64_t idle_ns;
};

struct upload_table *gw_upload_table_new(int64_t max_sessions, int64_t idle_ns)
{
	struct upload_table *t = cairn_xcalloc(1, sizeof *t);
	pthread_mutex_init(&t->mu, NULL);
	t->max = max_sessions;
	t->idle_ns = idle_ns;
	return t;
}

static void free_list(upload *u);

void gw_upload_table_free(struct upload_table *t)
{
	if (!t)
		return;
	free_list(t->head);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

cairn_status gw_upload_new(blobstore *bs, const char *name, upload **out)
{
	upload *up = cairn_xcalloc(1, sizeof *up);
	up->name = cairn_xstrdup(name);
	cairn_status st = gateway_parse_write_resource(up->name, strlen(up->name), &up->res);
	if (cairn_is_ok(&st))
		st = blobstore_open_write(bs, &up->res.digest, &up->w);
	if (!cairn_is_ok(&st)) {
		up->w = NULL;
		gw_upload_free(up);
		return st;
	}
	if (up->res.compressor == GATEWAY_ZSTD) {
		up->zd = ZSTD_createDCtx();
		up->zbuf = cairn_xmalloc(ZSTD_DStreamOutSize());
	}
	*out = up;
	return cairn_ok();
}

void gw_upload_free(upload *up)
{
	if (!up)
		return;
	if (up->w)
		blobstore_abort(up->w);
	ZSTD_freeDCtx(up->zd);
	free(up->zbuf);
	free(up->name);
	free(up);
}

/* Unlinks and returns the entries to drop: idle too long, or beyond the count limit. Under mu. */
static upload *expire(struct upload_table *t, int64_t now)
{
	upload *dropped = NULL, **pp = &t->head;
	int64_t kept = 0;
	while (*pp) {
		upload *u = *pp;
		if (now - u->parked_at > t->idle_ns || kept >= t->max) {
			*pp = u->next;
			u->next = dropped;
			dropped = u;
			t->count--;
		} else {
			kept++;
			pp = &u->next;
		}
	}
	return dropped;
}

static void free_list(upload *u)
{
	for (upload *n; u; u = n) {
		n = u->next;
		gw_upload_free(u);
	}
}

void gw_upload_park(struct upload_table *t, upload *up, int64_t now_ns)
{
	blobstore_pause(up->w); /* it keeps room for the bytes it took, not for those still to come */
	up->parked_at = now_ns;
	pthread_mutex_lock(&t->mu);
	up->next = t->head;
	t->head = up;
	t->count++;
	upload *dropped = expire(t, up->parked_at);
	pthread_mutex_unlock(&t->mu);
	free_list(dropped);
}

void gw_upload_table_expire(struct upload_table *t, int64_t now_ns)
{
	pthread_mutex_lock(&t->mu);
	upload *dropped = expire(t, now_ns);
	pthread_mutex_unlock(&t->mu);
	free_list(dropped);
}

upload *gw_upload_take(struct upload_table *t, const char *name)
{
	pthread_mutex_lock(&t->mu);
	upload *found = NULL;
	for (upload **pp = &t->head; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->name, name) == 0) {
			found = *pp;
			*pp = found->next;
			found->next = NULL;
			t->count--;
			break;
		}
	pthread_mutex_unlock(&t->mu);
	return found;
}

int64_t gw_upload_committed(struct upload_table *t, const char *name)
{
	int64_t c = -1;
	pthread_mutex_lock(&t->mu);
	for (upload *u = t->head; u; u = u->next)
		if (strcmp(u->name, name) == 0) {
			c = u->committed;
			break;
		}
	pthread_mutex_unlock(&t->mu);
	return c;
}
