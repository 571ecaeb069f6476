/* An in-memory blob store for tests: it answers inside the call or later from another thread (as
 * cachefs and remote stores do), can hold an answer until the test lets it go, can fail chosen
 * calls, and can read through to a store behind it (as an object store or a peer stands behind a
 * local CAS). Included after cmocka.h. */
#ifndef CAIRN_TESTS_MEM_STORE_H
#define CAIRN_TESTS_MEM_STORE_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blobstore/blobstore.h"

/* ---- an in-memory store ---------------------------------------------------------------------- */

#define MAX_BLOBS 64

typedef struct mem_store {
	blobstore bs;
	bool async;      /* callbacks from a thread of their own, after the call returned */
	int64_t shorten; /* readers see blobs this many bytes short (a store that lost bytes) */
	struct mem_store *behind; /* read-through: a blob missing here is copied from there at open */
	pthread_mutex_t mu; /* guards the blobs: calls may come from several threads at once */
	cairn_digest d[MAX_BLOBS];
	uint8_t *data[MAX_BLOBS];
	int n;
	int opens;
	int fail_find, fail_open_write, fail_write, fail_commit; /* a status code these calls fail with, 0 for none */
	bool hold;                /* keep the next answer in held until mem_release */
	struct later *held;
} mem_store;

typedef struct mem_reader {
	blobstore_reader base;
	const uint8_t *data;
} mem_reader;

typedef struct mem_writer {
	blobstore_writer base;
	mem_store *m;
	uint8_t *buf;
	size_t len;
} mem_writer;

/* A callback to run, maybe on another thread. */
typedef struct later {
	void (*run)(struct later *l);
	blobstore_done_cb done;
	blobstore_open_read_cb opened;
	void *arg;
	cairn_status st;
	blobstore_reader *r;
} later;

static inline void run_done(later *l) { l->done(l->arg, l->st); }
static inline void run_opened(later *l) { l->opened(l->arg, l->st, l->r); }

static inline void *later_thread(void *p)
{
	later *l = p;
	l->run(l);
	free(l);
	return NULL;
}

static inline void answer(mem_store *m, later l)
{
	later *c = malloc(sizeof *c);
	*c = l;
	if (m->hold) {
		m->hold = false;
		m->held = c;
		return;
	}
	if (!m->async)
		return (void)later_thread(c);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, later_thread, c), 0);
	pthread_detach(t);
}

/* Under m->mu. */
static inline int find_locked(mem_store *m, const cairn_digest *d)
{
	for (int i = 0; i < m->n; i++)
		if (cairn_digest_eq(&m->d[i], d))
			return i;
	return -1;
}

static inline int find(mem_store *m, const cairn_digest *d)
{
	pthread_mutex_lock(&m->mu);
	int i = find_locked(m, d);
	pthread_mutex_unlock(&m->mu);
	return i;
}

/* Under m->mu. */
static inline void add_locked(mem_store *m, const cairn_digest *d, const void *data)
{
	assert_true(m->n < MAX_BLOBS);
	m->d[m->n] = *d;
	m->data[m->n] = malloc((size_t)d->size + 1);
	memcpy(m->data[m->n++], data, (size_t)d->size);
}

static inline void add(mem_store *m, const cairn_digest *d, const void *data)
{
	pthread_mutex_lock(&m->mu);
	add_locked(m, d, data);
	pthread_mutex_unlock(&m->mu);
}

static inline void m_find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing,
                                  blobstore_done_cb cb, void *arg)
{
	mem_store *m = (mem_store *)bs;
	cairn_status st = m->fail_find ? cairn_err(m->fail_find, "failed") : cairn_ok();
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < n && cairn_is_ok(&st); i++)
		missing[i] = find_locked(m, &ds[i]) < 0;
	pthread_mutex_unlock(&m->mu);
	answer(m, (later){.run = run_done, .done = cb, .arg = arg, .st = st});
}

static const blobstore_ops mem_ops;

static inline void m_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg)
{
	mem_store *m = (mem_store *)bs;
	pthread_mutex_lock(&m->mu);
	m->opens++;
	int i = find_locked(m, d);
	if (i < 0 && m->behind && (i = find(m->behind, d)) >= 0) {
		add_locked(m, d, m->behind->data[i]);
		i = m->n - 1;
	}
	const uint8_t *data = i < 0 ? NULL : m->data[i];
	pthread_mutex_unlock(&m->mu);
	later l = {.run = run_opened, .opened = cb, .arg = arg, .st = cairn_ok()};
	if (!data) {
		l.st = cairn_err(CAIRN_NOT_FOUND, "not here");
	} else {
		mem_reader *r = calloc(1, sizeof *r);
		r->base.ops = &mem_ops;
		r->base.size = d->size - m->shorten;
		r->data = data;
		l.r = &r->base;
	}
	answer(m, l);
}

static inline void m_read(blobstore_reader *br, uint64_t off, void *buf, size_t len, blobstore_read_cb cb,
                          void *arg)
{
	mem_reader *r = (mem_reader *)br;
	size_t n = off >= (uint64_t)r->base.size ? 0 : (size_t)r->base.size - off;
	n = n < len ? n : len;
	n = n < 1000 ? n : 1000; /* short reads, as a real store's may be */
	memcpy(buf, r->data + off, n);
	/* the store of the reader is not known here: answer inline */
	cb(arg, cairn_ok(), n);
}

static inline void m_close_read(blobstore_reader *r) { free(r); }

static inline cairn_status m_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out)
{
	if (((mem_store *)bs)->fail_open_write)
		return cairn_err(((mem_store *)bs)->fail_open_write, "refused");
	mem_writer *w = calloc(1, sizeof *w);
	w->base.ops = &mem_ops;
	w->base.digest = *d;
	w->m = (mem_store *)bs;
	*out = &w->base;
	return cairn_ok();
}

static inline void m_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	mem_writer *w = (mem_writer *)bw;
	if (w->m->fail_write) {
		cairn_status st = cairn_err(w->m->fail_write, "lost");
		return answer(w->m, (later){.run = run_done, .done = cb, .arg = arg, .st = st});
	}
	w->buf = realloc(w->buf, w->len + len + 1);
	memcpy(w->buf + w->len, data, len);
	w->len += len;
	bw->written += len;
	answer(w->m, (later){.run = run_done, .done = cb, .arg = arg, .st = cairn_ok()});
}

static inline void m_abort(blobstore_writer *bw)
{
	free(((mem_writer *)bw)->buf);
	free(bw);
}

static inline void m_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg)
{
	mem_writer *w = (mem_writer *)bw;
	cairn_digest got;
	cairn_digest_of(w->buf ? w->buf : (uint8_t *)"", w->len, &got);
	cairn_status st = cairn_digest_eq(&got, &bw->digest) ? cairn_ok()
	                                                     : cairn_err(CAIRN_INVALID_ARGUMENT, "digest mismatch");
	if (cairn_is_ok(&st) && w->m->fail_commit)
		st = cairn_err(w->m->fail_commit, "commit failed");
	pthread_mutex_lock(&w->m->mu);
	if (cairn_is_ok(&st) && find_locked(w->m, &got) < 0)
		add_locked(w->m, &got, w->buf ? w->buf : (uint8_t *)"");
	pthread_mutex_unlock(&w->m->mu);
	mem_store *m = w->m;
	m_abort(bw);
	answer(m, (later){.run = run_done, .done = cb, .arg = arg, .st = st});
}

static const blobstore_ops mem_ops = {.find_missing = m_find_missing, .open_read = m_open_read, .read = m_read,
                                      .close_read = m_close_read, .open_write = m_open_write, .write = m_write,
                                      .commit = m_commit, .abort = m_abort};

static inline void mem_init(mem_store *m, bool async)
{
	memset(m, 0, sizeof *m);
	pthread_mutex_init(&m->mu, NULL);
	m->bs.ops = &mem_ops;
	m->async = async;
}

static inline void mem_free(mem_store *m)
{
	for (int i = 0; i < m->n; i++)
		free(m->data[i]);
	pthread_mutex_destroy(&m->mu);
}

/* Lets the held answer go, from a thread of its own. */
static inline void mem_release(mem_store *m)
{
	assert_non_null(m->held);
	later *c = m->held;
	m->held = NULL;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, later_thread, c), 0);
	pthread_detach(t);
}

static inline uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 131 + seed) ^ (i >> 9));
	return p;
}

#endif
