/* Streamed uploads (objstore.h), in one of two modes.
 *
 * A multipart upload: each step is a job of its own — begin, every part, complete or abort — so the
 * parts of one object go out on several transfer threads at once while the caller is still
 * receiving the object's bytes, and no transfer thread ever waits for another. The handle keeps
 * what the steps share: the back end's upload id and the parts' ETags, which arrive in any order
 * and on any thread.
 *
 * One PUT, when the caller knows the object's size and SHA-256 (a CAS blob's digest) and it is at
 * most OS_MAX_PUT: one job sends the PUT with that size and hash, its body pulled from the parts in
 * the order of their numbers as they are sent. The store checks the whole body against the hash
 * (S3: x-amz-content-sha256; the file store while copying) and stores nothing if it differs, so no
 * part is hashed here. The pull blocks its transfer thread until the next part is sent or the
 * upload is aborted; so that such waits cannot take every thread, at most half of them run one-PUT
 * uploads at once, and a begin beyond that gets a multipart upload. A part is reported once the PUT
 * took all its bytes; complete reports the PUT's answer once it came; abort makes the pull refuse
 * to go on, so the PUT fails and nothing is stored. Bytes once sent cannot be sent again: the PUT
 * is never retried, a failure is reported to the caller. */
#include "objstore/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct objstore_stream {
	objstore *s;
	char *key, *id;
	pthread_mutex_t mu; /* guards etags and cap (parts finish on several threads), and *one_put */
	char **etags;       /* etags[n - 1]: part n's, once it was stored */
	int cap;
	atomic_int in_flight; /* parts sent and not yet reported: none may be at complete or abort */
	struct one_put *one_put; /* the one-PUT mode, or NULL for a multipart upload */
};

/* A streamed upload sent as one PUT; guarded by the handle's mu. */
typedef struct one_put {
	int64_t size;
	uint8_t sha256[32];
	pthread_cond_t cv; /* a part was sent, or the upload aborted */
	os_job *parts;     /* parts sent and not yet taken whole by the PUT, by number */
	int next;          /* the number of the part the PUT takes next */
	size_t taken;      /* bytes of that part already taken */
	int64_t pulled;    /* bytes taken by the PUT */
	bool aborted;      /* the pull refuses to go on */
	bool done;         /* the PUT answered: result */
	cairn_status result;
	os_job *end;       /* complete or abort, waiting for the PUT's answer */
} one_put;

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
	if (up->one_put) {
		pthread_cond_destroy(&up->one_put->cv);
		free(up->one_put);
	}
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

/* ---- one PUT ---- */

static one_put *one_put_new(int64_t size, const uint8_t sha256[32])
{
	one_put *o = cairn_xcalloc(1, sizeof *o);
	o->size = size;
	memcpy(o->sha256, sha256, 32);
	pthread_cond_init(&o->cv, NULL);
	o->next = 1;
	return o;
}

/* Takes one of the transfer threads one-PUT uploads may hold (half of them), if one is left. */
static bool take_put_thread(objstore *s)
{
	int n = atomic_load(&s->stream_puts);
	while (n < s->nworkers / 2)
		if (atomic_compare_exchange_weak(&s->stream_puts, &n, n + 1))
			return true;
	return false;
}

/* Reports a part of a one-PUT upload and frees its job. */
static void report_part(objstore_stream *up, os_job *p, cairn_status st)
{
	atomic_fetch_sub(&up->in_flight, 1);
	p->cb.done(p->arg, st);
	os_job_free(p);
}

/* The PUT's body: the parts' bytes in the order of their numbers, as they are sent. Runs on the
 * PUT's transfer thread, which it blocks until the next part is there or the upload is aborted. */
static ssize_t pull(void *arg, uint8_t *buf, size_t n)
{
	objstore_stream *up = arg;
	one_put *o = up->one_put;
	pthread_mutex_lock(&up->mu);
	while (!o->aborted && !(o->parts && o->parts->part == o->next))
		pthread_cond_wait(&o->cv, &up->mu);
	if (o->aborted) {
		pthread_mutex_unlock(&up->mu);
		return -1;
	}
	os_job *p = o->parts;
	size_t k = p->len - o->taken < n ? p->len - o->taken : n;
	memcpy(buf, p->part_data + o->taken, k);
	o->taken += k;
	o->pulled += (int64_t)k;
	bool whole = o->taken == p->len;
	if (whole) {
		o->parts = p->next;
		o->next++;
		o->taken = 0;
	}
	pthread_mutex_unlock(&up->mu);
	if (whole)
		report_part(up, p, cairn_ok()); /* its buffer is free again */
	return (ssize_t)k;
}

/* Queues part p for the PUT, in number order; false when the PUT takes no more parts. */
static bool queue_part(objstore_stream *up, os_job *p)
{
	one_put *o = up->one_put;
	pthread_mutex_lock(&up->mu);
	os_job **at = &o->parts;
	while (*at && (*at)->part < p->part)
		at = &(*at)->next;
	bool queued = !o->done && !o->aborted && p->part >= o->next && !(*at && (*at)->part == p->part);
	if (queued) {
		p->next = *at;
		*at = p;
		pthread_cond_signal(&o->cv);
	}
	pthread_mutex_unlock(&up->mu);
	return queued;
}

/* Why the PUT did not take part `number`. */
static cairn_status part_refused(objstore_stream *up, int number)
{
	one_put *o = up->one_put;
	pthread_mutex_lock(&up->mu);
	cairn_status st = o->done && !cairn_is_ok(&o->result)
	                          ? o->result
	                          : cairn_err(CAIRN_FAILED_PRECONDITION,
	                                      "%s PUT %.100s: part %d was sent twice, past the object's size or after the end",
	                                      up->s->scheme, up->key, number);
	pthread_mutex_unlock(&up->mu);
	return st;
}

/* Reports a one-PUT upload's complete or abort (j) once the PUT answered, and frees the handle. An
 * abort after the PUT took every byte leaves what the store accepted: bytes that match the hash. */
static void report_end(objstore_stream *up, os_job *j)
{
	one_put *o = up->one_put;
	cairn_status st = o->result;
	if (j->kind == OS_JOB_STREAM_ABORT) {
		LOG_DEBUG(OS_MOD, "streamed upload as one PUT aborted key=%s bytes_sent=%lld put=\"%s\"", up->key,
		          (long long)o->pulled, cairn_status_str(&o->result));
		st = cairn_ok();
	} else if (o->pulled < o->size) {
		st = cairn_err(CAIRN_FAILED_PRECONDITION, "%s PUT %.100s: the parts held %lld of the object's %lld bytes",
		               up->s->scheme, up->key, (long long)o->pulled, (long long)o->size);
	} else if (cairn_is_ok(&st)) {
		LOG_DEBUG(OS_MOD, "streamed upload done as one PUT key=%s bytes=%lld", up->key, (long long)o->size);
	}
	objstore_cb cb = j->cb.done;
	void *arg = j->arg;
	stream_free(up);
	cb(arg, st);
}

/* The PUT answered: parts it did not take fail, and a waiting end is reported. */
static void put_answered(objstore_stream *up, cairn_status st)
{
	one_put *o = up->one_put;
	pthread_mutex_lock(&up->mu);
	o->done = true;
	o->result = st;
	os_job *left = o->parts, *end = o->end;
	o->parts = NULL;
	pthread_mutex_unlock(&up->mu);
	for (os_job *p = left, *next; p; p = next) { /* none when an end waits: no part is then in flight */
		next = p->next;
		report_part(up, p, cairn_is_ok(&st) ? part_refused(up, p->part) : st);
	}
	if (end) {
		report_end(up, end);
		os_job_free(end);
	}
}

/* Ends a one-PUT upload with j (complete or abort): false while the PUT runs, which then reports j
 * when it answers. An abort, or a completion whose parts held fewer bytes than the object, stops
 * the PUT's pull. */
static bool end_now(objstore_stream *up, os_job *j)
{
	one_put *o = up->one_put;
	pthread_mutex_lock(&up->mu);
	bool running = !o->done;
	if (running) {
		o->end = j;
		if (j->kind == OS_JOB_STREAM_ABORT || o->pulled < o->size) {
			o->aborted = true;
			pthread_cond_signal(&o->cv);
		}
	}
	pthread_mutex_unlock(&up->mu);
	return !running;
}

static void run_put(os_worker *w, os_job *j)
{
	objstore *s = w->s;
	objstore_stream *up = j->stream;
	atomic_fetch_add(&s->puts, 1);
	cairn_status st = os_check_key(s, up->key);
	if (!cairn_is_ok(&st)) {
		atomic_fetch_sub(&s->stream_puts, 1);
		os_count(s, &st);
		stream_free(up);
		j->cb.stream(j->arg, st, NULL);
		return;
	}
	LOG_DEBUG(OS_MOD, "streamed upload as one PUT begun key=%s bytes=%lld", up->key, (long long)up->one_put->size);
	j->cb.stream(j->arg, st, up); /* parts, and the end, may come from now on */
	os_source src = {.len = up->one_put->size, .pull = pull, .pull_arg = up};
	st = s->ops->put(w, up->key, &src, up->one_put->sha256);
	atomic_fetch_sub(&s->stream_puts, 1);
	if (st.code != CAIRN_CANCELLED) /* an abort is no failure */
		os_count(s, &st);
	put_answered(up, st);
}

/* ---- multipart ---- */

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
	if (up->one_put) { /* a part the PUT did not take */
		cairn_status st = part_refused(up, j->part);
		atomic_fetch_sub(&up->in_flight, 1);
		j->cb.done(j->arg, st);
		return;
	}
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
	if (up->one_put)
		return report_end(up, j);
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
	if (up->one_put)
		return report_end(up, j);
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
	case OS_JOB_STREAM_PUT:
		return run_put(w, j);
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

void objstore_stream_begin(objstore *s, const char *key, int64_t size, const uint8_t *sha256, objstore_stream_cb cb,
                           void *arg)
{
	if (!s->ops->stream_begin) {
		cb(arg, cairn_err(CAIRN_UNIMPLEMENTED, "%s: this store cannot stream uploads", s->scheme), NULL);
		return;
	}
	bool one = sha256 && size > 0 && size <= OS_MAX_PUT && take_put_thread(s);
	os_job *j = os_new_job(one ? OS_JOB_STREAM_PUT : OS_JOB_STREAM_BEGIN, key, arg);
	j->cb.stream = cb;
	if (one) {
		j->stream = stream_new(s, key, NULL);
		j->stream->one_put = one_put_new(size, sha256);
	}
	if (os_pool_submit(s, j))
		return;
	if (one) {
		atomic_fetch_sub(&s->stream_puts, 1);
		stream_free(j->stream);
	}
	os_refuse(s, j);
}

void objstore_stream_part(objstore_stream *up, int number, const void *data, size_t len, objstore_cb cb, void *arg)
{
	if (number < 1 || number > OS_MAX_PARTS) {
		cb(arg, cairn_err(CAIRN_INVALID_ARGUMENT, "%s %.100s: part number %d is not in 1..%d", up->s->scheme,
		                  up->key, number, OS_MAX_PARTS));
		return;
	}
	if (up->one_put && len == 0) { /* the PUT's pull could not tell it from the end of the body */
		cb(arg, cairn_err(CAIRN_INVALID_ARGUMENT, "%s PUT %.100s: part %d is empty", up->s->scheme, up->key, number));
		return;
	}
	os_job *j = os_new_job(OS_JOB_STREAM_PART, up->key, arg);
	j->stream = up;
	j->part = number;
	j->part_data = data;
	j->len = len;
	j->cb.done = cb;
	atomic_fetch_add(&up->in_flight, 1);
	if (up->one_put && queue_part(up, j))
		return;
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
	if (up->one_put && !end_now(up, j))
		return;
	os_submit(up->s, j); /* never refused: see pool.c */
}

void objstore_stream_complete(objstore_stream *up, int nparts, objstore_cb cb, void *arg)
{
	end(up, OS_JOB_STREAM_COMPLETE, nparts, cb, arg);
}

void objstore_stream_abort(objstore_stream *up, objstore_cb cb, void *arg) { end(up, OS_JOB_STREAM_ABORT, 0, cb, arg); }
