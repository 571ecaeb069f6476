/* Unit tests of blobstore/'s synchronous calls over an in-memory store that answers either inside
 * the call or later from another thread (as cachefs and remote stores do), and over a read-through
 * store in front of another (as an object store or a peer stands behind a local CAS). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blobstore/blobstore.h"

/* ---- an in-memory store ---------------------------------------------------------------------- */

#define MAX_BLOBS 16

typedef struct mem_store {
	blobstore bs;
	bool async;      /* callbacks from a thread of their own, after the call returned */
	int64_t shorten; /* readers see blobs this many bytes short (a store that lost bytes) */
	struct mem_store *behind; /* read-through: a blob missing here is copied from there at open */
	cairn_digest d[MAX_BLOBS];
	uint8_t *data[MAX_BLOBS];
	int n;
	int opens;
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

static void run_done(later *l) { l->done(l->arg, l->st); }
static void run_opened(later *l) { l->opened(l->arg, l->st, l->r); }

static void *later_thread(void *p)
{
	later *l = p;
	l->run(l);
	free(l);
	return NULL;
}

static void answer(mem_store *m, later l)
{
	later *c = malloc(sizeof *c);
	*c = l;
	if (!m->async)
		return (void)later_thread(c);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, later_thread, c), 0);
	pthread_detach(t);
}

static int find(mem_store *m, const cairn_digest *d)
{
	for (int i = 0; i < m->n; i++)
		if (cairn_digest_eq(&m->d[i], d))
			return i;
	return -1;
}

static void add(mem_store *m, const cairn_digest *d, const void *data)
{
	assert_true(m->n < MAX_BLOBS);
	m->d[m->n] = *d;
	m->data[m->n] = malloc((size_t)d->size + 1);
	memcpy(m->data[m->n++], data, (size_t)d->size);
}

static void m_find_missing(blobstore *bs, const cairn_digest *ds, size_t n, uint8_t *missing, blobstore_done_cb cb,
                           void *arg)
{
	for (size_t i = 0; i < n; i++)
		missing[i] = find((mem_store *)bs, &ds[i]) < 0;
	answer((mem_store *)bs, (later){.run = run_done, .done = cb, .arg = arg, .st = cairn_ok()});
}

static const blobstore_ops mem_ops;

static void m_open_read(blobstore *bs, const cairn_digest *d, blobstore_open_read_cb cb, void *arg)
{
	mem_store *m = (mem_store *)bs;
	m->opens++;
	int i = find(m, d);
	if (i < 0 && m->behind && (i = find(m->behind, d)) >= 0) {
		add(m, d, m->behind->data[i]);
		i = m->n - 1;
	}
	later l = {.run = run_opened, .opened = cb, .arg = arg, .st = cairn_ok()};
	if (i < 0) {
		l.st = cairn_err(CAIRN_NOT_FOUND, "not here");
	} else {
		mem_reader *r = calloc(1, sizeof *r);
		r->base.ops = &mem_ops;
		r->base.size = d->size - m->shorten;
		r->data = m->data[i];
		l.r = &r->base;
	}
	answer(m, l);
}

static void m_read(blobstore_reader *br, uint64_t off, void *buf, size_t len, blobstore_read_cb cb, void *arg)
{
	mem_reader *r = (mem_reader *)br;
	size_t n = off >= (uint64_t)r->base.size ? 0 : (size_t)r->base.size - off;
	n = n < len ? n : len;
	n = n < 1000 ? n : 1000; /* short reads, as a real store's may be */
	memcpy(buf, r->data + off, n);
	/* the store of the reader is not known here: answer inline */
	cb(arg, cairn_ok(), n);
}

static void m_close_read(blobstore_reader *r) { free(r); }

static cairn_status m_open_write(blobstore *bs, const cairn_digest *d, blobstore_writer **out)
{
	mem_writer *w = calloc(1, sizeof *w);
	w->base.ops = &mem_ops;
	w->base.digest = *d;
	w->m = (mem_store *)bs;
	*out = &w->base;
	return cairn_ok();
}

static void m_write(blobstore_writer *bw, const void *data, size_t len, blobstore_done_cb cb, void *arg)
{
	mem_writer *w = (mem_writer *)bw;
	w->buf = realloc(w->buf, w->len + len + 1);
	memcpy(w->buf + w->len, data, len);
	w->len += len;
	bw->written += len;
	answer(w->m, (later){.run = run_done, .done = cb, .arg = arg, .st = cairn_ok()});
}

static void m_abort(blobstore_writer *bw)
{
	free(((mem_writer *)bw)->buf);
	free(bw);
}

static void m_commit(blobstore_writer *bw, blobstore_done_cb cb, void *arg)
{
	mem_writer *w = (mem_writer *)bw;
	cairn_digest got;
	cairn_digest_of(w->buf ? w->buf : (uint8_t *)"", w->len, &got);
	cairn_status st = cairn_digest_eq(&got, &bw->digest) ? cairn_ok()
	                                                     : cairn_err(CAIRN_INVALID_ARGUMENT, "digest mismatch");
	if (cairn_is_ok(&st) && find(w->m, &got) < 0)
		add(w->m, &got, w->buf ? w->buf : (uint8_t *)"");
	mem_store *m = w->m;
	m_abort(bw);
	answer(m, (later){.run = run_done, .done = cb, .arg = arg, .st = st});
}

static const blobstore_ops mem_ops = {.find_missing = m_find_missing, .open_read = m_open_read, .read = m_read,
                                      .close_read = m_close_read, .open_write = m_open_write, .write = m_write,
                                      .commit = m_commit, .abort = m_abort};

static void mem_init(mem_store *m, bool async)
{
	memset(m, 0, sizeof *m);
	m->bs.ops = &mem_ops;
	m->async = async;
}

static void mem_free(mem_store *m)
{
	for (int i = 0; i < m->n; i++)
		free(m->data[i]);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 131 + seed) ^ (i >> 9));
	return p;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void round_trip(bool async)
{
	mem_store m;
	mem_init(&m, async);
	const size_t sizes[] = {0, 1, 999, 1000, (1 << 20) + 7, (3 << 20) + 1};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		uint8_t *p = pattern(sizes[k], (unsigned)k);
		cairn_digest d;
		cairn_digest_of(p, sizes[k], &d);
		assert_int_equal(blobstore_put_sync(&m.bs, &d, p, sizes[k]).code, CAIRN_OK);
		uint8_t *got;
		size_t len;
		assert_int_equal(blobstore_get_sync(&m.bs, &d, 1 << 30, &got, &len).code, CAIRN_OK);
		assert_int_equal(len, sizes[k]);
		if (sizes[k])
			assert_memory_equal(got, p, sizes[k]);
		free(got);
		free(p);
	}
	mem_free(&m);
}

static void put_and_get_inline(void **state)
{
	(void)state;
	round_trip(false);
}

static void put_and_get_from_other_threads(void **state)
{
	(void)state;
	round_trip(true);
}

static void wrong_digest_is_refused(void **state)
{
	(void)state;
	mem_store m;
	mem_init(&m, true);
	cairn_digest d;
	cairn_digest_of("right", 5, &d);
	assert_int_equal(blobstore_put_sync(&m.bs, &d, "wrong", 5).code, CAIRN_INVALID_ARGUMENT);
	assert_int_equal(m.n, 0);
	mem_free(&m);
}

static void file_is_hashed_and_stored(void **state)
{
	(void)state;
	mem_store m;
	mem_init(&m, true);
	char path[] = "/tmp/cairn-blobstore-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const size_t n = (2 << 20) + 123;
	uint8_t *p = pattern(n, 7);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	close(fd);
	cairn_digest d, want;
	cairn_digest_of(p, n, &want);
	assert_int_equal(blobstore_put_file_sync(&m.bs, path, &d).code, CAIRN_OK);
	assert_true(cairn_digest_eq(&d, &want));
	uint8_t *got;
	size_t len;
	assert_int_equal(blobstore_get_sync(&m.bs, &d, INT64_MAX, &got, &len).code, CAIRN_OK);
	assert_memory_equal(got, p, n);
	free(got);
	/* from the current offset of an open file */
	fd = open(path, O_RDONLY);
	assert_int_equal(lseek(fd, 100, SEEK_SET), 100);
	cairn_digest_of(p + 100, n - 100, &want);
	assert_int_equal(blobstore_put_fd_sync(&m.bs, &want, fd, path).code, CAIRN_OK);
	close(fd);
	unlink(path);
	cairn_status st = blobstore_put_file_sync(&m.bs, path, &d);
	assert_int_equal(st.code, CAIRN_NOT_FOUND);
	assert_non_null(strstr(st.msg, path));
	free(p);
	mem_free(&m);
}

static void get_refuses_what_it_cannot_return(void **state)
{
	(void)state;
	mem_store m;
	mem_init(&m, true);
	uint8_t *p = pattern(5000, 3);
	cairn_digest d;
	cairn_digest_of(p, 5000, &d);
	assert_int_equal(blobstore_put_sync(&m.bs, &d, p, 5000).code, CAIRN_OK);
	uint8_t *got = (uint8_t *)"untouched";
	size_t len = 1;
	/* over the limit: refused without opening */
	assert_int_equal(blobstore_get_sync(&m.bs, &d, 4999, &got, &len).code, CAIRN_RESOURCE_EXHAUSTED);
	assert_int_equal(m.opens, 0);
	assert_null(got);
	assert_int_equal(len, 0);
	/* a store that lost bytes: DATA_LOSS, nothing returned */
	m.shorten = 10;
	cairn_status st = blobstore_get_sync(&m.bs, &d, 5000, &got, &len);
	assert_int_equal(st.code, CAIRN_DATA_LOSS);
	assert_non_null(strstr(st.msg, "4990 of its 5000"));
	assert_null(got);
	m.shorten = 0;
	cairn_digest absent;
	cairn_digest_of("absent", 6, &absent);
	assert_int_equal(blobstore_get_sync(&m.bs, &absent, 100, &got, &len).code, CAIRN_NOT_FOUND);
	free(p);
	mem_free(&m);
}

static void fetch_reads_through(void **state)
{
	(void)state;
	mem_store local, remote;
	mem_init(&local, true);
	mem_init(&remote, false);
	local.behind = &remote;
	uint8_t *p = pattern(3000, 9);
	cairn_digest d, absent;
	cairn_digest_of(p, 3000, &d);
	cairn_digest_of("nowhere", 7, &absent);
	assert_int_equal(blobstore_put_sync(&remote.bs, &d, p, 3000).code, CAIRN_OK);
	assert_int_equal(find(&local, &d), -1);
	assert_int_equal(blobstore_fetch_sync(&local.bs, &d).code, CAIRN_OK);
	assert_true(find(&local, &d) >= 0); /* held here now */
	assert_int_equal(blobstore_fetch_sync(&local.bs, &absent).code, CAIRN_NOT_FOUND);
	free(p);
	mem_free(&local);
	mem_free(&remote);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_and_get_inline),
		cmocka_unit_test(put_and_get_from_other_threads),
		cmocka_unit_test(wrong_digest_is_refused),
		cmocka_unit_test(file_is_hashed_and_stored),
		cmocka_unit_test(get_refuses_what_it_cannot_return),
		cmocka_unit_test(fetch_reads_through),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
