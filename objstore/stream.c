/* Streamed uploads (objstore.h): each step of a multipart upload is a job of its own — begin, every
 * part, complete or abort — so the parts of one object go out on several transfer threads at once
 * while the caller is still receiving the object's bytes, and no transfer thread ever waits for
 * another. The handle keeps what the steps share: the back end's upload id and the parts' ETags,
 * which arrive in any order and on any thread. */
#include "objstore/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct objstore_stream {
	objstore *s;
	char *key, *id;
	pthread_mutex_t mu; /* guards etags and cap: parts finish on several threads */
	char **etags;       /* etags[n - 1]: part n's, once it was stored */
	int cap;
	atomic_int in_flight; /* parts sent and not yet reported: none may be at complete or abort */
};

int64_t objstore_stream_part_size(objstore *s, int64_t size)
{
	return s->ops->stream_begin ? os_part_size_for(s->part_size, size) : 0;
}

static objstore_stream *stream_new(objstore *s, const char *key, char *id)
{
	objstore_stream *up = cairn_xcalloc(1, sizeof *up);
	up->s = s;
	up->key = cairn_xstrdup(key);
	up->id = id;
	pthread_mutex_init(&up->mu, NULL);
	return up;
}

static void stream_free(objstore_stream *up)
{
	for (int i = 0; i < up->cap; i++)
		free(up->etags[i]);
	free(up->etags);
	pthread_mutex_destroy(&up->mu);
	free(up->key);
	free(up->id);
	free(up);
}

static void keep_etag(objstore_stream *up, int number, char *etag)
{
	pthread_mutex_lock(&up->mu);
	if (number > up->cap) {
		int cap = up->cap ? up->cap : 16;
		while (cap < number)
			cap *= 2;
		up->etags = cairn_xrealloc(up->etags, (size_t)cap * sizeof *up->etags);
		memset(up->etags + up->cap, 0, (size_t)(cap - up->cap) * sizeof *up->etags);
		up->cap = cap;
	}
	free(up->etags[number - 1]); /* a part sent again replaces the first */
	up->etags[number - 1] = etag;
	pthread_mutex_unlock(&up->mu);
}

static int parts_stored(objstore_stream *up)
{
	int n = 0;
	for (int i = 0; i < up->cap; i++)
		n += up->etags[i] != NULL;
	return n;
}

/* The first of parts 1..n that was never stored, or 0 when all were. */
static int missing_part(objstore_stream *up, int n)
{
	for (int i = 0; i < n; i++)
		if (i >= up->cap || !up->etags[i])
			return i + 1;
	return 0;
}

static void run_begin(os_worker *w, os_job *j)
{
	objstore *s = w->s;
	atomic_fetch_add(&s->puts, 1);
	char *id = NULL;
	cairn_status st = os_check_key(s, j->key);
	if (cairn_is_ok(&st))
		st = s->ops->stream_begin(w, j->key, &id);
	os_count(s, &st);
	j->cb.stream(j->arg, st, cairn_is_ok(&st) ? stream_new(s, j->key, id) : NULL);
}

static void run_part(os_worker *w, os_job *j)
{
	objstore_stream *up = j->stream;
	os_source src = {.mem = j->part_data, .len = (int64_t)j->len};
	char *etag = NULL;
	cairn_status st = w->s->ops->stream_part(w, up->key, up->id, j->part, &src, &etag);
	if (cairn_is_ok(&st))
		keep_etag(up, j->part, etag);
	os_count(w->s, &st);
	atomic_fetch_sub(&up->in_flight, 1);
	j->cb.done(j->arg, st);
}

static void run_complete(os_worker *w, os_job *j)
{
	objstore_stream *up = j->stream;
	objstore *s = w->s;
	cairn_status st = cairn_ok();
	int gap = missing_part(up, j->part);
	if (gap)
		st = cairn_err(CAIRN_FAILED_PRECONDITION, "%s %.100s: part %d of %d was never stored", s->scheme, up->key,
		               gap, j->part);
	else
		st = s->ops->stream_complete(w, up->key, up->id, up->etags, j->part);
	if (cairn_is_ok(&st))
		LOG_DEBUG(OS_MOD, "streamed multipart upload done key=%s parts=%d", up->key, j->part);
	else
		s->ops->stream_abort(w, up->key, up->id);
	os_count(s, &st);
	stream_free(up);
	j->cb.done(j->arg, st);
}

static void run_abort(os_worker *w, os_job *j)
{
	objstore_stream *up = j->stream;
	cairn_status st = w->s->ops->stream_abort(w, up->key, up->id);
	LOG_DEBUG(OS_MOD, "streamed multipart upload aborted key=%s parts_stored=%d result=%s", up->key, parts_stored(up),
	          cairn_status_str(&st));
	os_count(w->s, &st);
	stream_free(up);
	j->cb.done(j->arg, st);
}

void os_stream_run(os_worker *w, os_job *j)
{
	switch (j->kind) {
	case OS_JOB_STREAM_BEGIN:
		return run_begin(w, j);
	case OS_JOB_STREAM_PART:
		return run_part(w, j);
	case OS_JOB_STREAM_COMPLETE:
		return run_complete(w, j);
	case OS_JOB_STREAM_ABORT:
		return run_abort(w, j);
	default:
		assert(!"not a stream job");
	}
}

void objstore_stream_begin(objstore *s, const char *key, objstore_stream_cb cb, void *arg)
{
	if (!s->ops->stream_begin) {
		cb(arg, cairn_err(CAIRN_UNIMPLEMENTED, "%s: this store cannot stream uploads", s->scheme), NULL);
		return;
	}
	os_job *j = os_new_job(OS_JOB_STREAM_BEGIN, key, arg);
	j->cb.stream = cb;
	os_submit(s, j);
}

void objstore_stream_part(objstore_stream *up, int number, const void *data, size_t len, objstore_cb cb, void *arg)
{
	if (number < 1 || number > OS_MAX_PARTS) {
		cb(arg, cairn_err(CAIRN_INVALID_ARGUMENT, "%s %.100s: part number %d is not in 1..%d", up->s->scheme,
		                  up->key, number, OS_MAX_PARTS));
		return;
	}
	os_job *j = os_new_job(OS_JOB_STREAM_PART, up->key, arg);
	j->stream = up;
	j->part = number;
	j->part_data = data;
	j->len = len;
	j->cb.done = cb;
	atomic_fetch_add(&up->in_flight, 1);
	if (!os_pool_submit(up->s, j)) {
		atomic_fetch_sub(&up->in_flight, 1);
		os_refuse(up->s, j);
	}
}

static void end(objstore_stream *up, enum os_job_kind kind, int nparts, objstore_cb cb, void *arg)
{
	assert(atomic_load(&up->in_flight) == 0);
	os_job *j = os_new_job(kind, up->key, arg);
	j->stream = up;
	j->part = nparts;
	j->cb.done = cb;
	os_submit(up->s, j); /* never refused: see pool.c */
}

void objstore_stream_complete(objstore_stream *up, int nparts, objstore_cb cb, void *arg)
{
	end(up, OS_JOB_STREAM_COMPLETE, nparts, cb, arg);
}

void objstore_stream_abort(objstore_stream *up, objstore_cb cb, void *arg) { end(up, OS_JOB_STREAM_ABORT, 0, cb, arg); }
