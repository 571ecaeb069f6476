/* Credentials shared by a store's transfer threads: fixed keys, or sets fetched from a metadata
 * service or token endpoint and fetched again before they expire.
 *
 * The current set is published by pointer under a mutex; each request takes a reference to it and
 * signs with that one set to its end, so a refresh never hands a request the key of one set and the
 * token of another. One thread fetches at a time (on its own transfer thread's connection); the
 * others keep using the current set while it still works, or wait for the fetch when it does not.
 * A published set never changes: one the store refused is dropped from the cache, not altered. */
#include "objstore/internal.h"

#include <assert.h>
#include <stdlib.h>

/* How long a failed renewal waits before the next, while the current set still works: requests
 * meanwhile are not each held up by a fetch that is likely to fail again. */
#define OS_AUTH_RETRY_NS (INT64_C(10) * 1000000000)

struct os_auth {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a fetch ended */
	os_secret *cur;    /* the auth's own reference, or NULL */
	bool fetching;
	uint64_t fetches;  /* fetches ended so far */
	cairn_status last; /* how the last one ended */
	int64_t retry_ns;  /* after a failed fetch: no new one before this, while the current set works */
	os_fetch_fn fetch; /* NULL: fixed credentials */
	void *ctx;
	void (*free_ctx)(void *);
	char *source;
};

static os_auth *auth_new(const char *source)
{
	os_auth *a = cairn_xcalloc(1, sizeof *a);
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	a->source = cairn_xstrdup(source);
	a->last = cairn_ok();
	return a;
}

os_auth *os_auth_new_fixed(char *access_key, char *secret_key, char *token, const char *source)
{
	os_auth *a = auth_new(source);
	os_secret *s = cairn_xcalloc(1, sizeof *s);
	atomic_init(&s->refs, 1);
	s->access_key = access_key;
	s->secret_key = secret_key;
	s->token = token;
	s->refresh_ns = s->expires_ns = INT64_MAX;
	a->cur = s;
	return a;
}

os_auth *os_auth_new(os_fetch_fn fetch, void *ctx, void (*free_ctx)(void *), const char *source)
{
	os_auth *a = auth_new(source);
	a->fetch = fetch;
	a->ctx = ctx;
	a->free_ctx = free_ctx;
	return a;
}

static void secret_free(os_secret *s)
{
	free(s->access_key);
	free(s->secret_key);
	free(s->token);
	free(s);
}

void os_secret_release(os_secret *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		secret_free(s);
}

void os_auth_free(os_auth *a)
{
	if (!a)
		return;
	assert(!a->fetching);
	os_secret_release(a->cur);
	if (a->free_ctx)
		a->free_ctx(a->ctx);
	free(a->source);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

const char *os_auth_source(const os_auth *a) { return a->source; }

void os_secret_set_lifetime(os_secret *s, int64_t seconds)
{
	int64_t now = cairn_now_ns();
	if (seconds <= 0) {
		s->refresh_ns = s->expires_ns = now;
		return;
	}
	if (seconds > INT64_C(10) * 365 * 86400) /* no clock overflow for a server that says "forever" */
		seconds = INT64_C(10) * 365 * 86400;
	int64_t life = seconds * 1000000000, early = INT64_C(300) * 1000000000;
	s->expires_ns = now + life;
	s->refresh_ns = now + (life - early > life / 4 * 3 ? life - early : life / 4 * 3);
}

static os_secret *hold(os_secret *s)
{
	atomic_fetch_add(&s->refs, 1);
	return s;
}

/* Runs one fetch with a->mu held on entry and exit (released meanwhile); publishes its result. */
static cairn_status fetch_locked(os_auth *a, os_worker *w, os_secret **out)
{
	a->fetching = true;
	pthread_mutex_unlock(&a->mu);
	os_secret *n = cairn_xcalloc(1, sizeof *n);
	cairn_status st = a->fetch(a->ctx, w, n);
	pthread_mutex_lock(&a->mu);
	a->fetching = false;
	a->fetches++;
	a->last = st;
	pthread_cond_broadcast(&a->cv);
	if (cairn_is_ok(&st)) {
		a->retry_ns = 0;
		atomic_init(&n->refs, 2); /* the auth's and the caller's */
		os_secret_release(a->cur);
		a->cur = n;
		*out = n;
		return st;
	}
	secret_free(n);
	a->retry_ns = cairn_now_ns() + OS_AUTH_RETRY_NS;
	if (a->cur && cairn_now_ns() < a->cur->expires_ns) {
		LOG_WARN(OS_MOD, "renewing credentials failed; the current ones are used while they last: %s source=\"%s\"",
		         cairn_status_str(&st), a->source);
		*out = hold(a->cur);
		return cairn_ok();
	}
	return st;
}

cairn_status os_auth_get(os_auth *a, os_worker *w, os_secret **out)
{
	*out = NULL;
	pthread_mutex_lock(&a->mu);
	cairn_status st = cairn_ok();
	for (;;) {
		os_secret *c = a->cur;
		int64_t now = cairn_now_ns();
		bool works = c && now < c->expires_ns;
		if (c && (now < c->refresh_ns || !a->fetch || (works && (a->fetching || now < a->retry_ns)))) {
			*out = hold(c);
			break;
		}
		if (!a->fetching) {
			st = fetch_locked(a, w, out);
			break;
		}
		uint64_t seen = a->fetches;
		while (a->fetching)
			pthread_cond_wait(&a->cv, &a->mu);
		/* The fetch this thread waited for failed, and nothing that works is left: so does this. */
		if (a->fetches != seen && !cairn_is_ok(&a->last) && !(a->cur && cairn_now_ns() < a->cur->expires_ns)) {
			st = a->last;
			break;
		}
	}
	pthread_mutex_unlock(&a->mu);
	return st;
}

void os_auth_invalidate(os_auth *a, const os_secret *seen)
{
	pthread_mutex_lock(&a->mu);
	if (a->fetch && a->cur == seen) {
		os_secret_release(a->cur);
		a->cur = NULL;
	}
	pthread_mutex_unlock(&a->mu);
}

int os_metadata_retries(const os_worker *w) { return w->s->max_retries < 2 ? w->s->max_retries : 2; }

cairn_status os_auth_prime(os_auth *a, objstore *s)
{
	os_worker w = {.s = s, .rng = (uint64_t)cairn_now_ns(), .curl = curl_easy_init()};
	if (!w.curl)
		return cairn_err(CAIRN_INTERNAL, "objstore: curl_easy_init failed");
	os_secret *k;
	cairn_status st = os_auth_get(a, &w, &k);
	os_secret_release(k);
	curl_easy_cleanup(w.curl);
	return st;
}
