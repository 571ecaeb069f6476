/* cairn-bench helpers: random data, statistics, output, blob sets and the multi-client driver. */
#include "perf/bench.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define METHOD_BATCH_UPDATE "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs"
/* The server refuses batches over max_batch_total_size_bytes (cairn: 4 MiB - 64 KiB); stay below. */
#define SETUP_BATCH_BYTES (2u << 20)
#define SETUP_BATCH_BLOBS 1000u
/* Latency samples a worker keeps; a worker that fills them stops early (and the result says so). */
#define WORKER_MAX_SAMPLES (1u << 20)

/* ---- random data ---- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

void bench_rng_seed(bench_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bench_rng_next(bench_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

void bench_rng_fill(bench_rng *r, void *buf, size_t len)
{
	uint8_t *p = buf;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v = bench_rng_next(r);
		memcpy(p, &v, 8);
	}
	if (len) {
		uint64_t v = bench_rng_next(r);
		memcpy(p, &v, len);
	}
}

uint64_t bench_nonce(void)
{
	uint64_t x = (uint64_t)cairn_wall_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)cairn_now_ns();
	return splitmix64(&x);
}

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_percentile(const double *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)ceil(q * (double)n);
	return sorted[rank ? rank - 1 : 0];
}

char *bench_join(const double *v, size_t n, char *out, size_t cap)
{
	size_t used = 0;
	out[0] = 0;
	for (size_t i = 0; i < n && used < cap; i++)
		used += (size_t)snprintf(out + used, cap - used, "%s%.1f", i ? "," : "", v[i]);
	return out;
}

double bench_secs(int64_t ns) { return (double)ns / 1e9; }

double bench_mb_per_s(int64_t bytes, int64_t ns) { return ns > 0 ? (double)bytes / 1e6 / bench_secs(ns) : 0; }

void bench_lat_init(bench_lat *l, size_t cap)
{
	l->ms = cairn_xmalloc((cap ? cap : 1) * sizeof *l->ms);
	l->n = 0;
	l->cap = cap;
}

bool bench_lat_add(bench_lat *l, int64_t ns)
{
	if (l->n == l->cap)
		return false;
	l->ms[l->n++] = (double)ns / 1e6;
	return true;
}

void bench_lat_merge(bench_lat *dst, const bench_lat *src)
{
	if (dst->n + src->n > dst->cap) {
		dst->cap = dst->n + src->n;
		dst->ms = cairn_xrealloc(dst->ms, (dst->cap ? dst->cap : 1) * sizeof *dst->ms);
	}
	memcpy(dst->ms + dst->n, src->ms, src->n * sizeof *src->ms);
	dst->n += src->n;
}

void bench_lat_summary(bench_lat *l, double *p50, double *p99)
{
	qsort(l->ms, l->n, sizeof *l->ms, cmp_double);
	*p50 = bench_percentile(l->ms, l->n, 0.50);
	*p99 = bench_percentile(l->ms, l->n, 0.99);
}

void bench_lat_free(bench_lat *l)
{
	free(l->ms);
	l->ms = NULL;
	l->n = l->cap = 0;
}

/* ---- output and connections ---- */

void bench_result(const char *bench, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("result bench=%s ", bench);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	va_end(ap);
}

int bench_fail(const char *bench, const char *what, const cairn_status *st)
{
	fprintf(stderr, "cairn-bench %s: %s: %s\n", bench, what, cairn_status_str(st));
	return 1;
}

rpc_channel *bench_connect(const bench_opts *o, const char *bench)
{
	rpc_channel *ch;
	/* large enough for a FindMissingBlobs answer naming every digest of a big request */
	cairn_status st = rpc_channel_open(o->remote, 256 << 20, &ch);
	if (!cairn_is_ok(&st)) {
		bench_fail(bench, o->remote, &st);
		return NULL;
	}
	return ch;
}

int64_t bench_timeout_ms(const bench_opts *o) { return o->timeout * 1000; }

void bench_digest_pb(const cairn_digest *d, char hex[CAIRN_HASH_HEX_LEN + 1], bench_dpb *pb)
{
	build__bazel__remote__execution__v2__digest__init(pb);
	cairn_hash_hex(d->hash, hex);
	pb->hash = hex;
	pb->size_bytes = d->size;
}

/* ---- sets of small blobs ---- */

void bench_blobs_init(bench_blobs *b, size_t n, size_t size)
{
	memset(b, 0, sizeof *b);
	b->n = n;
	b->size = size;
	b->data = cairn_xmalloc(n * size + 1);
	b->d = cairn_xcalloc(n + 1, sizeof *b->d);
	b->hex = cairn_xcalloc(n + 1, sizeof *b->hex);
	b->pb = cairn_xcalloc(n + 1, sizeof *b->pb);
	b->pbs = cairn_xcalloc(n + 1, sizeof *b->pbs);
}

void bench_blobs_fill(bench_blobs *b, bench_rng *r, uint64_t tag)
{
	bench_rng_fill(r, b->data, b->n * b->size);
	for (size_t i = 0; i < b->n; i++) {
		uint8_t *p = b->data + i * b->size;
		if (b->size >= 16) {
			uint64_t stamp = b->stamp++;
			memcpy(p, &tag, 8);
			memcpy(p + 8, &stamp, 8);
		}
		cairn_digest_of(p, b->size, &b->d[i]);
		bench_digest_pb(&b->d[i], b->hex[i], &b->pb[i]);
		b->pbs[i] = &b->pb[i];
	}
}

void bench_blobs_fill_set(bench_blobs *b, uint64_t seed, uint64_t first, size_t n)
{
	for (size_t i = 0; i < n && i < b->n; i++) {
		uint8_t *p = b->data + i * b->size;
		uint64_t index = first + i;
		bench_rng r;
		bench_rng_seed(&r, seed ^ (index * UINT64_C(0x9e3779b97f4a7c15)));
		bench_rng_fill(&r, p, b->size);
		if (b->size >= 16) {
			memcpy(p, &seed, 8);
			memcpy(p + 8, &index, 8);
		}
		cairn_digest_of(p, b->size, &b->d[i]);
		bench_digest_pb(&b->d[i], b->hex[i], &b->pb[i]);
		b->pbs[i] = &b->pb[i];
	}
}

void bench_blobs_free(bench_blobs *b)
{
	free(b->data);
	free(b->d);
	free(b->hex);
	free(b->pb);
	free(b->pbs);
	memset(b, 0, sizeof *b);
}

typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request update_one;

static cairn_status check_update_response(const ProtobufCMessage *resp, size_t count)
{
	const Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse *r = (const void *)resp;
	if (r->n_responses != count)
		return cairn_err(CAIRN_INTERNAL, "server answered for %zu blobs of %zu", r->n_responses, count);
	for (size_t i = 0; i < count; i++) {
		const Google__Rpc__Status *s = r->responses[i]->status;
		if (s && s->code != 0)
			return cairn_err(s->code, "blob %zu: %s", i, s->message);
	}
	return cairn_ok();
}

cairn_status bench_batch_update(rpc_channel *ch, const bench_opts *o, update_one **reqs, size_t n)
{
	Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__INIT;
	req.instance_name = (char *)o->instance;
	req.n_requests = n;
	req.requests = reqs;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, METHOD_BATCH_UPDATE, &req.base,
	                            &build__bazel__remote__execution__v2__batch_update_blobs_response__descriptor, &resp,
	                            bench_timeout_ms(o));
	if (cairn_is_ok(&st)) {
		st = check_update_response(resp, n);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	return st;
}

cairn_status bench_blobs_upload(rpc_channel *ch, const bench_opts *o, const bench_blobs *b, size_t first,
                                size_t count)
{
	update_one *ones = cairn_xcalloc(count + 1, sizeof *ones);
	update_one **ptrs = cairn_xcalloc(count + 1, sizeof *ptrs);
	for (size_t i = 0; i < count; i++) {
		build__bazel__remote__execution__v2__batch_update_blobs_request__request__init(&ones[i]);
		ones[i].digest = &b->pb[first + i];
		ones[i].data.data = b->data + (first + i) * b->size;
		ones[i].data.len = b->size;
		ptrs[i] = &ones[i];
	}
	cairn_status st = bench_batch_update(ch, o, ptrs, count);
	free(ones);
	free(ptrs);
	return st;
}

cairn_status bench_blobs_upload_all(rpc_channel *ch, const bench_opts *o, const bench_blobs *b, size_t count)
{
	size_t per = b->size ? SETUP_BATCH_BYTES / b->size : SETUP_BATCH_BLOBS;
	per = per < 1 ? 1 : per > SETUP_BATCH_BLOBS ? SETUP_BATCH_BLOBS : per;
	for (size_t i = 0; i < count; i += per) {
		size_t k = count - i < per ? count - i : per;
		cairn_status st = bench_blobs_upload(ch, o, b, i, k);
		if (!cairn_is_ok(&st))
			return st;
	}
	return cairn_ok();
}

/* ---- many clients for a fixed time ---- */

typedef struct driver {
	const bench_opts *o;
	bench_step_fn step;
	pthread_barrier_t start; /* workers and the main thread: everyone is connected and warm */
} driver;

typedef struct worker_slot {
	driver *drv;
	bench_worker w;
	bool capped;
} worker_slot;

static void *worker_main(void *arg)
{
	worker_slot *slot = arg;
	bench_worker *w = &slot->w;
	/* the warm-up connects the channel and lets the server allocate what a first call needs */
	w->warmup = true;
	if (w->ch)
		w->st = slot->drv->step(w);
	else
		w->st = cairn_err(CAIRN_UNAVAILABLE, "no channel");
	w->warmup = false;
	w->ops = 0;
	w->prep_ns = 0;
	w->lat.n = 0;
	pthread_barrier_wait(&slot->drv->start);
	int64_t deadline = cairn_now_ns() + w->o->seconds * 1000000000LL;
	while (cairn_is_ok(&w->st) && !w->done && cairn_now_ns() < deadline) {
		if (w->lat.n == w->lat.cap) {
			slot->capped = true;
			break;
		}
		w->st = slot->drv->step(w);
	}
	return NULL;
}

static void collect(worker_slot *slots, size_t n, bench_totals *out)
{
	for (size_t i = 0; i < n; i++) {
		bench_worker *w = &slots[i].w;
		out->ops += w->ops;
		out->calls += w->lat.n;
		out->prep_ns += w->prep_ns;
		out->capped |= slots[i].capped;
		bench_lat_merge(&out->lat, &w->lat);
	}
}

cairn_status bench_run_workers(const bench_opts *o, bench_step_fn step, void *ctx,
                               void *(*make_local)(bench_worker *w), void (*free_local)(void *local),
                               bench_totals *out)
{
	size_t n = (size_t)o->clients;
	driver drv = {.o = o, .step = step};
	pthread_barrier_init(&drv.start, NULL, (unsigned)n + 1);
	worker_slot *slots = cairn_xcalloc(n, sizeof *slots);
	pthread_t *tids = cairn_xcalloc(n, sizeof *tids);
	uint64_t nonce = bench_nonce();
	for (size_t i = 0; i < n; i++) {
		bench_worker *w = &slots[i].w;
		slots[i].drv = &drv;
		*w = (bench_worker){.id = (int)i, .o = o, .ctx = ctx, .st = cairn_ok()};
		bench_rng_seed(&w->rng, nonce + i);
		bench_lat_init(&w->lat, WORKER_MAX_SAMPLES);
		w->ch = bench_connect(o, "workers");
		w->local = make_local ? make_local(w) : NULL;
		pthread_create(&tids[i], NULL, worker_main, &slots[i]);
	}
	pthread_barrier_wait(&drv.start);
	int64_t t0 = cairn_now_ns();
	for (size_t i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	memset(out, 0, sizeof *out);
	out->wall_ns = cairn_now_ns() - t0;
	bench_lat_init(&out->lat, 0);
	collect(slots, n, out);
	cairn_status st = cairn_ok();
	for (size_t i = 0; i < n; i++) {
		bench_worker *w = &slots[i].w;
		if (cairn_is_ok(&st) && !cairn_is_ok(&w->st))
			st = cairn_err(w->st.code, "client %zu: %s", i, w->st.msg);
		if (free_local)
			free_local(w->local);
		rpc_channel_close(w->ch);
		bench_lat_free(&w->lat);
	}
	pthread_barrier_destroy(&drv.start);
	free(slots);
	free(tids);
	return st;
}
