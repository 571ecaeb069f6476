/* Sync write-through of large blobs, streamed: the bucket upload runs while the client's bytes
 * arrive, instead of after the local commit.
 *
 * A sync writer of a blob of at least one part (objstore_stream_part_size: 16 MiB by default) is
 * this writer over the local cachefs writer, when the store can stream and the part buffers fit the
 * memory budget. At open the key is HEADed: if the bucket has it with the right size, the writer
 * only writes locally. Otherwise a streamed upload begins with the digest's size and hash: objstore
 * sends it as one PUT that the store checks against that hash (or, above 5 GiB or when its threads
 * are taken, as a multipart upload whose parts it hashes). Every append is copied into a part buffer
 * before it goes on to the local writer, and each full part is sent as soon as the upload has
 * begun; cachefs hashes the whole blob as usual.
 *
 * Memory: each writer reserves 2 to 4 part buffers (fewer for a blob of fewer parts) from a budget of
 * 256 MiB shared by every writer of the store (16 buffers of the default part size); the buffers are
 * allocated when first filled and reused. An append that finds no free buffer waits — its callback is delayed, no thread blocks —
 * until one of this writer's own parts was sent, so writers never wait on each other. A writer that
 * cannot reserve its least is not streamed: its blob is uploaded after the commit, from its file.
 *
 * The end: the upload is completed only after the local commit verified the digest, and the client
 * hears OK only after the completion succeeded. A wrong digest or an abort (the client went away and
 * its parked upload was dropped) aborts the upload once no part is in flight, so nothing stays under
 * the key and no part lingers (the store refuses a one-PUT body that does not match the hash); a
 * client whose commit failed hears of it only after that abort. An object-store failure (a begin,
 * a part, the PUT) stops the streaming, not the write: the rest of the blob is only written
 * locally, and once the local commit verified it the upload is aborted and the blob uploaded from
 * its file (through_upload.c); so is it when the completion fails. The client hears OK only when
 * that upload succeeded, else UNAVAILABLE.
 *
 * Threads: appends, commit and abort come from the caller (a gRPC thread), the local writer's
 * callbacks from the cachefs I/O thread, the object store's from transfer threads. Everything is
 * decided under the writer's mutex into a `todo`, which is carried out after the mutex is released. */
#include "cachefs/through.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_BUFS 4                      /* part buffers of one writer, at most */
#define STREAM_MEMORY (INT64_C(256) << 20) /* part buffers of all writers */

enum phase {
	ASKING,    /* HEAD: does the bucket have the blob? */
	BEGINNING, /* the upload is being started */
	OPEN,      /* parts go out as they fill */
	PRESENT,   /* the bucket has the blob: the writes are local only */
	FAILED,    /* the upload failed (err): nothing more is sent, the blob goes up after its commit */
};

enum buf_state { FREE, SEALED, SENDING };

typedef struct stream stream;

typedef struct part_buf {
	stream *s;
	uint8_t *data; /* allocated when first filled */
	size_t fill;
	int number;    /* once sealed */
	enum buf_state st;
} part_buf;

enum ending { WRITING, COMMITTING, ABORTING };
enum final_step { NOTHING, COMPLETE, ABORT_UPLOAD, UPLOAD_FILE, REPORT };

struct stream {
	blobstore_writer base;
	blobstore_writer *inner;
	cachefs_through *t;
	char key[CACHEFS_THROUGH_KEY_MAX];
	int64_t part_size;
	int nbufs;            /* reserved from the budget */
	pthread_mutex_t mu;   /* guards everything below */
	enum phase phase;
	cairn_status err;     /* FAILED: why */
	objstore_stream *up;  /* OPEN, and FAILED after a part failed */
	part_buf b[STREAM_BUFS];
	int cur;              /* the buffer taking bytes, or -1 */
	int next_part;
	int sending;          /* parts in flight */
	int64_t copied;       /* bytes copied into parts */
	/* the append being copied: what is left of it, and the append as given */
	bool pending;
	const uint8_t *rest;
	size_t rest_len;
	const void *data;
	size_t len;
	blobstore_done_cb write_cb;
	void *write_arg;
	/* the end */
	enum ending ending;
	enum final_step taken; /* decided once, when nothing is in flight any more */
	bool local_done;
	cairn_status local;   /* the local commit's outcome */
	cairn_status outcome; /* what the client hears after an abort of the upload */
	bool from_file;       /* after the abort of the upload, the committed blob is uploaded */
	blobstore_done_cb done_cb;
	void *done_arg;
};

/* What was decided under the mutex, carried out after it. Only values: once the final step is
 * taken the writer may be gone. */
typedef struct todo {
	objstore *os;
	bool begin;
	objstore_stream *up;
	part_buf *send[STREAM_BUFS];
	int nsend;
	bool forward;              /* the append goes on to the local writer */
	blobstore_writer *inner;
	const void *data;
	size_t len;
	blobstore_done_cb write_cb;
	void *write_arg;
	enum final_step final;
	int nparts;
	stream *s;
} todo;

static void begun(void *arg, cairn_status st, objstore_stream *up);
static void upload_file(stream *s);
static void part_sent(void *arg, cairn_status st);
static void upload_ended(void *arg, cairn_status st);
static void finish(stream *s, cairn_status st);

static void fail(stream *s, cairn_status st)
{
	s->phase = FAILED;
	s->err = st;
	for (int i = 0; i < s->nbufs; i++)
		if (s->b[i].st != SENDING) {
			s->b[i].st = FREE;
			s->b[i].fill = 0;
		}
	s->cur = -1;
}

static void seal(stream *s, part_buf *b)
{
	assert(b->st == FREE && b->fill > 0);
	b->st = SEALED;
	b->number = s->next_part++;
	s->cur = -1;
}

/* Copies what it can of the append into part buffers; true when all of it is in. Only the buffer
 * `cur` is ever partly filled. */
static bool fill(stream *s)
{
	while (s->rest_len > 0) {
		if (s->cur < 0) {
			for (int i = 0; i < s->nbufs && s->cur < 0; i++)
				if (s->b[i].st == FREE)
					s->cur = i;
			if (s->cur < 0)
				return false;
		}
		part_buf *b = &s->b[s->cur];
		if (!b->data)
			b->data = cairn_xmalloc((size_t)s->part_size);
		size_t room = (size_t)s->part_size - b->fill, k = s->rest_len < room ? s->rest_len : room;
		memcpy(b->data + b->fill, s->rest, k);
		b->fill += k;
		s->rest += k;
		s->rest_len -= k;
		if (b->fill == (size_t)s->part_size)
			seal(s, b);
	}
	return true;
}

/* Moves the waiting append on to the local writer once it is copied whole (at once when nothing
 * is streamed). */
static void resume_write(stream *s, todo *a)
{
	if (s->phase != PRESENT && s->phase != FAILED && !fill(s))
		return;
	a->forward = true;
	a->inner = s->inner;
	a->data = s->data;
	a->len = s->len;
	s->pending = false;
	a->write_cb = s->write_cb;
	a->write_arg = s->write_arg;
}

/* The outcome of a commit once everything else settled. */
static void decide_commit(stream *s, todo *a)
{
	if (!cairn_is_ok(&s->local)) {
		s->outcome = s->local; /* a wrong digest, or the local disk failed */
		a->final = s->up ? ABORT_UPLOAD : REPORT;
	} else if (s->phase == FAILED) {
		LOG_INFO("cachefs", "write-through: streaming the blob failed, uploading it from its file: %s",
		         cairn_status_str(&s->err));
		s->from_file = true;
		a->final = s->up ? ABORT_UPLOAD : UPLOAD_FILE;
	} else if (s->phase == PRESENT) {
		atomic_fetch_add(&s->t->skipped, 1);
		s->outcome = cairn_ok();
		a->final = REPORT;
	} else {
		assert(s->phase == OPEN && s->next_part > 1);
		a->final = COMPLETE;
		a->nparts = s->next_part - 1;
	}
}

/* Whether the upload is still to be made: not once the writer was aborted or its commit failed. */
static bool wanted(const stream *s)
{
	return s->ending != ABORTING && !(s->local_done && !cairn_is_ok(&s->local));
}

/* Everything that follows from the state, under mu. */
static void progress(stream *s, todo *a)
{
	a->os = s->t->os;
	a->up = s->up;
	a->s = s;
	if (s->pending)
		resume_write(s, a);
	if (s->phase == OPEN && wanted(s))
		for (int i = 0; i < s->nbufs; i++)
			if (s->b[i].st == SEALED) {
				s->b[i].st = SENDING;
				s->sending++;
				a->send[a->nsend++] = &s->b[i];
			}
	if (s->taken != NOTHING || s->pending || s->sending > 0 || s->phase == ASKING || s->phase == BEGINNING)
		return;
	if (s->ending == ABORTING) {
		s->outcome = cairn_err(CAIRN_CANCELLED, "upload aborted");
		a->final = s->up ? ABORT_UPLOAD : REPORT;
	} else if (s->ending == COMMITTING && s->local_done) {
		decide_commit(s, a);
	}
	s->taken = a->final;
}

static void carry_out(todo *a)
{
	stream *s = a->s;
	if (a->begin)
		objstore_stream_begin(a->os, s->key, s->base.digest.size, s->base.digest.hash, begun, s);
	for (int i = 0; i < a->nsend; i++) {
		part_buf *b = a->send[i];
		objstore_stream_part(a->up, b->number, b->data, b->fill, part_sent, b);
	}
	if (a->forward)
		blobstore_write(a->inner, a->data, a->len, a->write_cb, a->write_arg);
	if (a->final == COMPLETE)
		objstore_stream_complete(a->up, a->nparts, upload_ended, s);
	else if (a->final == ABORT_UPLOAD)
		objstore_stream_abort(a->up, upload_ended, s);
	else if (a->final == UPLOAD_FILE)
		upload_file(s);
	else if (a->final == REPORT)
		finish(s, s->outcome);
}

/* Runs progress under mu, then carries it out. */
static void step(stream *s, todo *a)
{
	progress(s, a);
	pthread_mutex_unlock(&s->mu);
	carry_out(a);
}

static void asked(void *arg, cairn_status st, int64_t size)
{
	stream *s = arg;
	todo a = {0};
	pthread_mutex_lock(&s->mu);
	if (cairn_is_ok(&st) && size == s->base.digest.size) {
		s->phase = PRESENT;
		s->cur = -1;
	} else if (!wanted(s)) {
		fail(s, cairn_err(CAIRN_CANCELLED, "upload abandoned"));
	} else {
		/* absent, or the HEAD failed: the begin says whether the store can be reached */
		s->phase = BEGINNING;
		a.begin = true;
	}
	step(s, &a);
}

static void begun(void *arg, cairn_status st, objstore_stream *up)
{
	stream *s = arg;
	todo a = {0};
	pthread_mutex_lock(&s->mu);
	if (cairn_is_ok(&st)) {
		s->phase = OPEN;
		s->up = up;
	} else {
		fail(s, st);
	}
	step(s, &a);
}

static void part_sent(void *arg, cairn_status st)
{
	part_buf *b = arg;
	stream *s = b->s;
	todo a = {0};
	pthread_mutex_lock(&s->mu);
	assert(b->st == SENDING);
	b->st = FREE;
	b->fill = 0;
	s->sending--;
	if (!cairn_is_ok(&st) && s->phase == OPEN)
		fail(s, st);
	step(s, &a);
}

static void local_committed(void *arg, cairn_status st)
{
	stream *s = arg;
	todo a = {0};
	pthread_mutex_lock(&s->mu);
	s->local_done = true;
	s->local = st;
	step(s, &a);
}

/* The completion or the abort of the streamed upload reported. */
static void upload_ended(void *arg, cairn_status st)
{
	stream *s = arg; /* nothing else touches it now */
	if (s->taken == ABORT_UPLOAD && s->from_file)
		return upload_file(s);
	if (s->taken == ABORT_UPLOAD)
		return finish(s, s->outcome); /* the client hears why the upload was aborted */
	if (!cairn_is_ok(&st)) { /* the completion (one PUT: the PUT) failed; the blob is verified locally */
		LOG_INFO("cachefs", "write-through: completing the streamed upload failed, uploading the blob from its file: %s",
		         cairn_status_str(&st));
		return upload_file(s);
	}
	atomic_fetch_add(&s->t->uploaded, 1);
	finish(s, st);
}

/* Frees the writer and returns its buffers to the budget. */
static void release(stream *s)
{
	cachefs_through *t = s->t;
	for (int i = 0; i < s->nbufs; i++)
		free(s->b[i].data);
	pthread_mutex_lock(&t->mu);
	t->stream_mem -= s->nbufs * s->part_size;
	assert(t->stream_mem >= 0);
	pthread_mutex_unlock(&t->mu);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Frees the writer and tells a committing client st. */
static void finish(stream *s, cairn_status st)
{
	cachefs_through *t = s->t;
	blobstore_done_cb cb = s->ending == COMMITTING ? s->done_cb : NULL;
	void *arg = s->done_arg;
	release(s);
	if (cb)
		cb(arg, st);
	cachefs_through_active(t, -1);
}

/* Frees the writer (its buffers first) and uploads the committed blob from its file: the client
 * hears how that went (through_upload.c counts it and words a failure). */
static void upload_file(stream *s)
{
	cachefs_through *t = s->t;
	cairn_digest d = s->base.digest;
	blobstore_done_cb cb = s->done_cb;
	void *arg = s->done_arg;
	assert(s->ending == COMMITTING);
	release(s);
	cachefs_through_upload(t, &d, NULL, cb, arg);
	cachefs_through_active(t, -1);
}

/* ---- the blobstore_writer ---- */

static void stream_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	stream *s = (stream *)bw;
	todo a = {0};
	pthread_mutex_lock(&s->mu);
	assert(!s->pending && s->ending == WRITING);
	s->pending = true;
	s->data = data;
	s->len = len;
	s->write_cb = cb;
	s->write_arg = arg;
	/* Bytes past the digest's size are not copied: the local writer refuses them. */
	bool fits = len <= (size_t)(s->base.digest.size - s->copied);
	s->rest = fits ? data : NULL;
	s->rest_len = fits ? len : 0;
	s->copied += fits ? (int64_t)len : 0;
	step(s, &a);
}

static void stream_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg)
{
	stream *s = (stream *)bw;
	todo a = {0};
	pthread_mutex_lock(&s->mu);
	assert(!s->pending && s->ending == WRITING);
	s->ending = COMMITTING;
	s->done_cb = cb;
	s->done_arg = arg;
	/* The last part goes out now, while the local commit verifies the digest. */
	if (s->phase != PRESENT && s->phase != FAILED && s->cur >= 0 && s->b[s->cur].fill > 0)
		seal(s, &s->b[s->cur]);
	blobstore_writer *inner = s->inner;
	step(s, &a); /* no final step before the local commit reported: s stays */
	blobstore_commit(inner, local_committed, s);
}

static void stream_abort(blobstore_writer *bw)
{
	stream *s = (stream *)bw;
	todo a = {0};
	blobstore_abort(s->inner);
	pthread_mutex_lock(&s->mu);
	assert(!s->pending && s->ending == WRITING);
	s->ending = ABORTING;
	step(s, &a);
}

/* The part buffers stay: the upload resumes into them. */
static void stream_pause(blobstore_writer *bw) { blobstore_pause(((stream *)bw)->inner); }

static const blobstore_ops stream_ops = {
	.write = stream_write,
	.commit = stream_commit,
	.abort = stream_abort,
	.pause = stream_pause,
};

/* Reserves the writer's part buffers from the budget: 0 when it cannot have its least. */
static int reserve(cachefs_through *t, int64_t part_size, int64_t nparts)
{
	int want = nparts < STREAM_BUFS ? (int)nparts : STREAM_BUFS, least = nparts < 2 ? (int)nparts : 2;
	pthread_mutex_lock(&t->mu);
	int64_t room = (STREAM_MEMORY - t->stream_mem) / part_size;
	int n = room < want ? (int)room : want;
	if (n < least)
		n = 0;
	t->stream_mem += n * part_size;
	pthread_mutex_unlock(&t->mu);
	return n;
}

blobstore_writer *cachefs_through_stream_open(cachefs_through *t, const cairn_digest *d, blobstore_writer *inner)
{
	int64_t ps = objstore_stream_part_size(t->os, d->size);
	if (ps == 0 || d->size < ps)
		return NULL;
	int n = reserve(t, ps, (d->size + ps - 1) / ps);
	if (n == 0) {
		LOG_DEBUG("cachefs", "write-through: no part buffers free, the blob goes up after its commit size=%lld",
		          (long long)d->size);
		return NULL;
	}
	stream *s = cairn_xcalloc(1, sizeof *s);
	s->base.ops = &stream_ops;
	s->base.digest = *d;
	s->inner = inner;
	s->t = t;
	cachefs_through_key(d, s->key);
	s->part_size = ps;
	s->nbufs = n;
	pthread_mutex_init(&s->mu, NULL);
	s->phase = ASKING;
	for (int i = 0; i < n; i++)
		s->b[i].s = s;
	s->cur = -1;
	s->next_part = 1;
	cachefs_through_active(t, 1);
	objstore_head(t->os, s->key, asked, s); /* no final step before the commit or abort: s stays */
	return &s->base;
}
