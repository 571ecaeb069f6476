/* Where an action's inputs lie (locality.h says what a look-up answers).
 *
 * A look-up goes through three steps, each started by the callback of the one before: the Action is
 * read (its input root named there), then the input tree is walked breadth first, a few Directory
 * reads at a time, up to MAX_DIRS distinct directories, keeping the MAX_FILES largest distinct files
 * met; then every peer is asked about those files at once, each call's deadline being what is left
 * of the look-up's. Every read and call goes through the asynchronous CAS and rpc client, so no
 * thread waits on a peer; what bounds the look-up is the deadline, kept by one timer thread.
 *
 * What must stay true: the answer runs exactly once (`answered`, under the lock, decides who gives
 * it: the last step, or the timer when the deadline passes first); a look-up is freed only when its
 * last reference goes, one being held by each read or call under way and one until it has answered,
 * so a late callback always finds it; nothing is started once it has answered. The look-ups waiting
 * to answer are a list in deadline order (every look-up has the same timeout, so that is the order
 * they were asked in), the timer sleeping until the first one's deadline. One lock guards every
 * look-up's state: each holds it for a few steps of bookkeeping, never across a call. */
#include "runner/locality.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/reapi.h"

#define MAX_FILES 64         /* the largest files asked about */
#define MAX_DIRS 128         /* directories walked, at most */
#define MAX_BLOB (1 << 20)   /* an Action or a Directory larger than this is not read */
#define WINDOW 8             /* Directory reads in flight */
#define FIND_MISSING "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs"

typedef Build__Bazel__Remote__Execution__V2__Action re_action;
typedef Build__Bazel__Remote__Execution__V2__Directory re_directory;
typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest find_req;
typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse find_resp;

typedef struct lookup lookup;

typedef struct peer_ask {
	lookup *k;
	size_t i;
} peer_ask;

/* The files kept: the largest seen, each digest once. */
typedef struct top_files {
	cairn_digest d[MAX_FILES];
	size_t n;
} top_files;

struct lookup {
	runner_locality *l;
	runner_locality_cb cb;
	void *arg;
	int refs;
	bool answered;
	int64_t deadline; /* monotonic ns */
	lookup *next;     /* in the timer's list while not answered */
	/* the walk */
	cairn_digest dirs[MAX_DIRS]; /* met, in breadth-first order; the first nread were read */
	size_t ndirs, nread;
	int inflight;
	bool pumping, again, walked;
	top_files files;
	/* the questions */
	rpc_channel *peers[RUNNER_LOCALITY_PEERS];
	peer_ask asks[RUNNER_LOCALITY_PEERS];
	uint64_t held[RUNNER_LOCALITY_PEERS];
	bool silent[RUNNER_LOCALITY_PEERS];
	size_t npeers, waiting;
};

struct runner_locality {
	blobstore *cas;
	rpc_client *client;
	int64_t timeout_ns;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* the timer's (monotonic clock); also signals live reaching 0 */
	pthread_t timer;
	bool running, stopping;
	lookup *head, *tail; /* waiting to answer, deadline order */
	size_t live;         /* look-ups not yet freed */
};

/* ---- answering --------------------------------------------------------------------------------- */

static void unref(lookup *k)
{
	runner_locality *l = k->l;
	pthread_mutex_lock(&l->mu);
	bool last = --k->refs == 0;
	if (last && --l->live == 0)
		pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (last)
		free(k);
}

/* Takes k out of the timer's list. Under mu. */
static void unlist(runner_locality *l, lookup *k)
{
	lookup **p = &l->head, *prev = NULL;
	while (*p && *p != k)
		prev = *p, p = &(*p)->next;
	if (!*p)
		return;
	*p = k->next;
	if (l->tail == k)
		l->tail = prev;
	k->next = NULL;
}

/* What a look-up knows when it answers. */
typedef struct known {
	uint64_t held[RUNNER_LOCALITY_PEERS];
	bool silent[RUNNER_LOCALITY_PEERS];
} known;

/* Marks k answered and copies what it knows, unless it already answered. Under mu. */
static bool claim(runner_locality *l, lookup *k, known *out)
{
	if (k->answered)
		return false;
	k->answered = true;
	unlist(l, k);
	memcpy(out->held, k->held, sizeof k->held);
	memcpy(out->silent, k->silent, sizeof k->silent);
	return true;
}

/* Answers with what k knows now, if nobody did; the answer's reference goes with it. */
static void answer(lookup *k)
{
	known kn;
	pthread_mutex_lock(&k->l->mu);
	bool mine = claim(k->l, k, &kn);
	pthread_mutex_unlock(&k->l->mu);
	if (!mine)
		return;
	k->cb(k->arg, kn.held, kn.silent, k->npeers);
	unref(k);
}

static void *timer_main(void *arg)
{
	runner_locality *l = arg;
	pthread_mutex_lock(&l->mu);
	while (!l->stopping) {
		if (!l->head) {
			pthread_cond_wait(&l->cv, &l->mu);
			continue;
		}
		int64_t at = l->head->deadline;
		if (cairn_now_ns() < at) {
			struct timespec ts = {.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
			pthread_cond_timedwait(&l->cv, &l->mu, &ts);
			continue;
		}
		lookup *k = l->head;
		known kn;
		claim(l, k, &kn);
		bool walked = k->walked;
		size_t unanswered = k->waiting;
		pthread_mutex_unlock(&l->mu);
		LOG_DEBUG("runner", "input look-up ended at its deadline walked=%d asked=%zu unanswered=%zu", (int)walked,
		          k->npeers, unanswered);
		k->cb(k->arg, kn.held, kn.silent, k->npeers);
		unref(k);
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* ---- the questions ----------------------------------------------------------------------------- */

/* Bytes of the kept files that a FindMissingBlobs answer does not list as missing. */
static uint64_t held_of(const top_files *f, const find_resp *resp)
{
	uint64_t held = 0;
	for (size_t i = 0; i < f->n; i++) {
		bool missing = false;
		for (size_t m = 0; m < resp->n_missing_blob_digests && !missing; m++) {
			cairn_digest d;
			missing = reapi_digest_from_pb(resp->missing_blob_digests[m], "missing", &d).code == CAIRN_OK &&
			          cairn_digest_eq(&d, &f->d[i]);
		}
		held += missing ? 0 : (uint64_t)f->d[i].size;
	}
	return held;
}

static void on_answer(void *arg, cairn_status st, ProtobufCMessage *resp)
{
	peer_ask *a = arg;
	lookup *k = a->k;
	uint64_t held = resp ? held_of(&k->files, (find_resp *)resp) : 0; /* files is no longer written */
	bool heard = resp != NULL;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	else
		LOG_DEBUG("runner", "a worker did not say which inputs it holds: %s", cairn_status_str(&st));
	pthread_mutex_lock(&k->l->mu);
	k->held[a->i] = held;
	k->silent[a->i] = !heard;
	bool last = --k->waiting == 0;
	pthread_mutex_unlock(&k->l->mu);
	if (last)
		answer(k);
	unref(k);
}

/* The walk ended: asks every peer about the files kept. */
static void ask_peers(lookup *k)
{
	runner_locality *l = k->l;
	int64_t left_ms = (k->deadline - cairn_now_ns()) / 1000000;
	if (!k->files.n || left_ms <= 0) {
		answer(k);
		return;
	}
	cairn_arena *a = cairn_arena_new(4096);
	find_req req = BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
	req.n_blob_digests = k->files.n;
	req.blob_digests = cairn_arena_alloc(a, k->files.n * sizeof *req.blob_digests);
	for (size_t i = 0; i < k->files.n; i++)
		req.blob_digests[i] = reapi_digest_to_pb(a, &k->files.d[i]);
	pthread_mutex_lock(&l->mu);
	bool go = !k->answered;
	if (go) {
		k->waiting = k->npeers;
		k->refs += (int)k->npeers;
		for (size_t i = 0; i < k->npeers; i++)
			k->silent[i] = true; /* until it answers */
	}
	pthread_mutex_unlock(&l->mu);
	for (size_t i = 0; go && i < k->npeers; i++) {
		k->asks[i] = (peer_ask){.k = k, .i = i};
		rpc_async_unary(l->client, k->peers[i], FIND_MISSING, &req.base,
		                &build__bazel__remote__execution__v2__find_missing_blobs_response__descriptor, left_ms,
		                on_answer, &k->asks[i]);
	}
	cairn_arena_free(a);
}

/* ---- the walk ---------------------------------------------------------------------------------- */

/* Keeps d if it is among the largest MAX_FILES distinct files seen. */
static void keep_file(top_files *f, const cairn_digest *d)
{
	if (d->size <= 0)
		return;
	size_t smallest = 0;
	for (size_t i = 0; i < f->n; i++) {
		if (cairn_digest_eq(&f->d[i], d))
			return;
		if (f->d[i].size < f->d[smallest].size)
			smallest = i;
	}
	if (f->n < MAX_FILES)
		f->d[f->n++] = *d;
	else if (f->d[smallest].size < d->size)
		f->d[smallest] = *d;
}

static void on_dir(void *arg, cairn_status st, uint8_t *data, size_t len);

/* Starts the next Directory reads, WINDOW at a time, and asks the peers once every directory met
 * was read. One caller at a time pumps; another one's turn (a read that answered meanwhile) is
 * taken by it before it stops. Called with a reference held. */
static void pump(lookup *k)
{
	runner_locality *l = k->l;
	pthread_mutex_lock(&l->mu);
	if (k->pumping) {
		k->again = true;
		pthread_mutex_unlock(&l->mu);
		return;
	}
	k->pumping = true;
	do {
		k->again = false;
		while (!k->answered && k->inflight < WINDOW && k->nread < k->ndirs) {
			cairn_digest d = k->dirs[k->nread++];
			k->inflight++;
			k->refs++;
			pthread_mutex_unlock(&l->mu);
			blobstore_get(l->cas, &d, MAX_BLOB, on_dir, k);
			pthread_mutex_lock(&l->mu);
		}
	} while (k->again);
	bool walked = !k->answered && !k->walked && !k->inflight && k->nread == k->ndirs;
	k->walked |= walked;
	k->pumping = false;
	pthread_mutex_unlock(&l->mu);
	if (walked)
		ask_peers(k);
}

/* Adds a directory met to the walk, once, while there is room. Under mu. */
static void meet_dir(lookup *k, const cairn_digest *d)
{
	if (k->ndirs == MAX_DIRS || d->size <= 0) /* an empty directory holds nothing */
		return;
	for (size_t i = 0; i < k->ndirs; i++)
		if (cairn_digest_eq(&k->dirs[i], d))
			return;
	k->dirs[k->ndirs++] = *d;
}

static void on_dir(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	lookup *k = arg;
	cairn_arena *a = cairn_arena_new(4096);
	ProtobufCAllocator alloc = reapi_arena_allocator(a);
	re_directory *dir = cairn_is_ok(&st) ? build__bazel__remote__execution__v2__directory__unpack(&alloc, len, data)
	                                     : NULL;
	free(data);
	top_files mine = {0}; /* this directory's largest, sorted out before the lock is taken */
	for (size_t i = 0; dir && i < dir->n_files; i++) {
		cairn_digest d;
		if (dir->files[i] && reapi_digest_from_pb(dir->files[i]->digest, "file", &d).code == CAIRN_OK)
			keep_file(&mine, &d);
	}
	pthread_mutex_lock(&k->l->mu);
	for (size_t i = 0; i < mine.n; i++)
		keep_file(&k->files, &mine.d[i]);
	for (size_t i = 0; dir && i < dir->n_directories; i++) {
		cairn_digest d;
		if (dir->directories[i] && reapi_digest_from_pb(dir->directories[i]->digest, "directory", &d).code == CAIRN_OK)
			meet_dir(k, &d);
	}
	k->inflight--;
	pthread_mutex_unlock(&k->l->mu);
	cairn_arena_free(a);
	pump(k);
	unref(k);
}

static void on_action(void *arg, cairn_status st, uint8_t *data, size_t len)
{
	lookup *k = arg;
	cairn_arena *a = cairn_arena_new(1024);
	ProtobufCAllocator alloc = reapi_arena_allocator(a);
	re_action *action = cairn_is_ok(&st) ? build__bazel__remote__execution__v2__action__unpack(&alloc, len, data)
	                                     : NULL;
	free(data);
	cairn_digest root;
	if (action && reapi_digest_from_pb(action->input_root_digest, "input_root_digest", &root).code == CAIRN_OK) {
		pthread_mutex_lock(&k->l->mu);
		meet_dir(k, &root);
		pthread_mutex_unlock(&k->l->mu);
		pump(k);
	} else {
		LOG_DEBUG("runner", "no input look-up: the action could not be read: %s",
		          cairn_is_ok(&st) ? "not an Action" : cairn_status_str(&st));
		answer(k);
	}
	cairn_arena_free(a);
	unref(k);
}

/* ---- look-ups ---------------------------------------------------------------------------------- */

void runner_locality_ask(runner_locality *l, const cairn_digest *action, rpc_channel *const *peers, size_t n,
                         runner_locality_cb cb, void *arg)
{
	lookup *k = cairn_xcalloc(1, sizeof *k);
	k->l = l;
	k->cb = cb;
	k->arg = arg;
	k->npeers = n < RUNNER_LOCALITY_PEERS ? n : RUNNER_LOCALITY_PEERS;
	memcpy(k->peers, peers, k->npeers * sizeof *peers);
	k->deadline = cairn_now_ns() + l->timeout_ns;
	k->refs = 2; /* the answer's, and the Action read's */
	pthread_mutex_lock(&l->mu);
	bool timed = l->running && !l->stopping;
	l->live++;
	if (timed) {
		if (l->tail)
			l->tail->next = k;
		else
			l->head = k;
		l->tail = k;
		if (l->head == k)
			pthread_cond_signal(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
	if (!timed) { /* no deadline could be kept: nothing is known */
		k->refs = 1;
		answer(k);
		return;
	}
	blobstore_get(l->cas, action, MAX_BLOB, on_action, k);
}

runner_locality *runner_locality_new(blobstore *cas, rpc_client *client, int64_t timeout_ms)
{
	runner_locality *l = cairn_xcalloc(1, sizeof *l);
	l->cas = cas;
	l->client = client;
	l->timeout_ns = (timeout_ms > 0 ? timeout_ms : 500) * 1000000LL;
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* cairn_now_ns's clock */
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	l->running = pthread_create(&l->timer, NULL, timer_main, l) == 0;
	if (!l->running)
		LOG_WARN("runner", "no timer for input look-ups: jobs are offered without them");
	return l;
}

void runner_locality_stop(runner_locality *l)
{
	pthread_mutex_lock(&l->mu);
	bool join = l->running && !l->stopping;
	l->stopping = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (join)
		pthread_join(l->timer, NULL);
}

void runner_locality_free(runner_locality *l)
{
	if (!l)
		return;
	runner_locality_stop(l);
	pthread_mutex_lock(&l->mu);
	while (l->live)
		pthread_cond_wait(&l->cv, &l->mu);
	pthread_mutex_unlock(&l->mu);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
