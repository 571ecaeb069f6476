/* The transfer threads: a fixed number of threads pulling jobs from one bounded FIFO queue.
 *
 * Why threads with blocking easy handles rather than libcurl's multi interface: a transfer here is
 * more than one HTTP exchange (retries with backoff sleeps, a multipart upload's initiate, parts and
 * completion, a file hashed before it is sent, a download renamed into place), and on a thread each
 * stays straight-line code; file reads and writes block only their own thread. The multi interface
 * would need each of these as a state machine driven by one event loop, with file I/O moved off it.
 * The number of transfers at once is what bounds the number of threads (max_concurrency, 16 by
 * default), so their cost is small. Each thread keeps its own easy handle for its whole life, and
 * with it libcurl's connection cache: consecutive requests reuse a kept-alive connection. */
#include "objstore/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static int64_t job_bytes(const os_job *j) { return j->kind == OS_JOB_PUT_MEM ? (int64_t)j->len : 0; }

/* Completing or aborting a streamed upload is always queued: it ends an upload the caller holds (one
 * per upload, so they are bounded by the uploads begun), and a refused abort would leave its parts in
 * the bucket. */
static bool always_taken(const os_job *j)
{
	return j->kind == OS_JOB_STREAM_COMPLETE || j->kind == OS_JOB_STREAM_ABORT;
}

static void *worker_main(void *p)
{
	os_worker *w = p;
	objstore *s = w->s;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->head && !s->closing)
			pthread_cond_wait(&s->cv_work, &s->mu);
		os_job *j = s->head;
		if (!j)
			break; /* closing, and nothing left to run */
		s->head = j->next;
		if (!s->head)
			s->tail = NULL;
		s->queued_jobs--;
		int64_t bytes = job_bytes(j);
		pthread_mutex_unlock(&s->mu);
		os_job_run(w, j); /* frees j */
		pthread_mutex_lock(&s->mu);
		/* A running put's copy still counts: it is freed only now. */
		s->queued_bytes -= bytes;
		assert(s->queued_bytes >= 0);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

bool os_pool_submit(objstore *s, os_job *job)
{
	int64_t bytes = job_bytes(job);
	pthread_mutex_lock(&s->mu);
	assert(!s->closing); /* no call may race with objstore_close */
	bool fits = always_taken(job) ||
	            (s->queued_jobs < OS_QUEUE_MAX_JOBS && s->queued_bytes + bytes <= OS_QUEUE_MAX_BYTES);
	if (fits) {
		job->next = NULL;
		if (s->tail)
			s->tail->next = job;
		else
			s->head = job;
		s->tail = job;
		s->queued_jobs++;
		s->queued_bytes += bytes;
		pthread_cond_signal(&s->cv_work);
	}
	pthread_mutex_unlock(&s->mu);
	return fits;
}

static void free_workers(objstore *s, int started)
{
	for (int i = 0; i < started; i++)
		pthread_join(s->workers[i].thread, NULL);
	for (int i = 0; i < s->nworkers; i++)
		if (s->workers[i].curl)
			curl_easy_cleanup(s->workers[i].curl);
	free(s->workers);
	s->workers = NULL;
	s->nworkers = 0;
}

cairn_status os_pool_start(objstore *s, int n, bool with_curl)
{
	assert(n > 0 && !s->workers);
	s->workers = cairn_xcalloc((size_t)n, sizeof *s->workers);
	s->nworkers = n;
	uint64_t seed = (uint64_t)cairn_now_ns() ^ (uint64_t)(uintptr_t)s;
	for (int i = 0; i < n; i++) {
		os_worker *w = &s->workers[i];
		w->s = s;
		w->rng = seed + (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15);
		if (with_curl && !(w->curl = curl_easy_init())) {
			os_pool_stop_started(s, 0);
			return cairn_err(CAIRN_INTERNAL, "objstore: curl_easy_init failed");
		}
	}
	for (int i = 0; i < n; i++) {
		int rc = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
		if (rc != 0) {
			os_pool_stop_started(s, i);
			return cairn_errno(rc, "objstore: starting transfer thread %d", i);
		}
	}
	return cairn_ok();
}

void os_pool_stop_started(objstore *s, int started)
{
	pthread_mutex_lock(&s->mu);
	s->closing = true;
	pthread_cond_broadcast(&s->cv_work);
	pthread_mutex_unlock(&s->mu);
	free_workers(s, started);
}

void os_pool_stop(objstore *s) { os_pool_stop_started(s, s->nworkers); }

bool os_pool_on_worker(objstore *s)
{
	pthread_t self = pthread_self();
	for (int i = 0; i < s->nworkers; i++)
		if (pthread_equal(self, s->workers[i].thread))
			return true;
	return false;
}
