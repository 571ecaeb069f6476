/*
 * cairn-bench: load generators for a running cairn (or any REAPI v2 server), one subcommand per
 * figure. Each subcommand prints its progress to stderr and exactly one result line to stdout:
 *
 *   result bench=NAME value=HEADLINE unit=UNIT key=value…
 *
 * `value` is always the headline figure (the median when the measurement is repeated); the other
 * keys give the runs, latency percentiles and the parameters, so that a script (perf/run.sh) can
 * pick any of them. Rates use decimal units: 1 MB = 10^6 bytes.
 *
 * Pieces: bench.c parses flags and dispatches; bench_util.c holds the random generator, statistics,
 * blob sets and the multi-client driver; bench_stream.c ByteStream upload/download and the raw TCP
 * loopback reference; bench_cas.c BatchUpdateBlobs, BatchReadBlobs and FindMissingBlobs; bench_ac.c
 * the ActionCache; bench_fs.c the file-system reference of the small-blob figures; bench_exec.c no-op
 * actions through Execute and their reference, fork + exec of the same command; bench_async.c small
 * unary calls through rpc's asynchronous client beside the blocking one.
 */
#ifndef CAIRN_PERF_BENCH_H
#define CAIRN_PERF_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "common/common.h"
#include "google/bytestream/bytestream.pb-c.h"
#include "rpc/rpc.h"

typedef Build__Bazel__Remote__Execution__V2__Digest bench_dpb;

/* Every flag of every subcommand; each subcommand's table names the ones it reads. */
typedef struct bench_opts {
	const char *remote;
	const char *instance;
	const char *file;  /* upload/download: take the blob from this file instead of generating it */
	const char *sha256; /* upload/download with file: its SHA-256 in hex, so it is not hashed first */
	const char *dir;   /* fs-create: where to make its files */
	int64_t timeout;   /* seconds, per call */
	int64_t size;      /* upload/download/loopback: bytes */
	int64_t chunk;     /* upload: bytes per WriteRequest; loopback: bytes per send/recv */
	int64_t repeat;
	int64_t seed;      /* generated blob of upload/download, blob set of batch-upload/batch-read: same seed, same bytes */
	int64_t blob_size; /* batch-upload, find-missing */
	int64_t per_call;
	int64_t clients;
	int64_t seconds;
	int64_t digests;
	int64_t present;
	int64_t entries;
	int64_t files;
	int64_t count;     /* forkexec: processes to start; batch-upload/batch-read: blobs in the set (0: fresh blobs); async-unary: calls per run */
	int64_t in_flight; /* async-unary: calls outstanding at once */
	bool duplicates;   /* upload: after each round, the same blob again (the server holds it), timed apart */
} bench_opts;

/* ---- subcommands: 0 on success, 1 when a call failed or an answer was wrong ---- */

int bench_upload(const bench_opts *o);
int bench_download(const bench_opts *o);
int bench_loopback(const bench_opts *o);
int bench_batch_upload(const bench_opts *o);
int bench_batch_read(const bench_opts *o);
int bench_find_missing(const bench_opts *o);
int bench_ac_get(const bench_opts *o);
int bench_fs_create(const bench_opts *o);
int bench_exec(const bench_opts *o);
int bench_forkexec(const bench_opts *o);
int bench_async_unary(const bench_opts *o);

/* ---- random data ---- */

/* xoshiro256**: fast enough (several GB/s) that generating test data never dominates. */
typedef struct bench_rng {
	uint64_t s[4];
} bench_rng;

void bench_rng_seed(bench_rng *r, uint64_t seed);
uint64_t bench_rng_next(bench_rng *r);
void bench_rng_fill(bench_rng *r, void *buf, size_t len);
/* Differs between runs and processes, so a run's "fresh" blobs are never already on the server. */
uint64_t bench_nonce(void);

/* ---- statistics ---- */

/* Sorts v in place and returns its median (0 for n == 0). */
double bench_median(double *v, size_t n);
/* Nearest-rank percentile (q in (0, 1]) of an ascending array. */
double bench_percentile(const double *sorted, size_t n, double q);
/* "1.5,2.25,3" into out. */
char *bench_join(const double *v, size_t n, char *out, size_t cap);
double bench_secs(int64_t ns);
double bench_mb_per_s(int64_t bytes, int64_t ns);

/* Latency samples in milliseconds, bounded: add() refuses once cap samples are held. */
typedef struct bench_lat {
	double *ms;
	size_t n, cap;
} bench_lat;

void bench_lat_init(bench_lat *l, size_t cap);
bool bench_lat_add(bench_lat *l, int64_t ns);
/* Appends src to dst (growing dst past its cap: merging is the end of measuring). */
void bench_lat_merge(bench_lat *dst, const bench_lat *src);
/* Sorts and reads p50 and p99. */
void bench_lat_summary(bench_lat *l, double *p50, double *p99);
void bench_lat_free(bench_lat *l);

/* ---- output and connections ---- */

/* Prints "result bench=NAME " followed by the formatted rest and a newline to stdout. */
void bench_result(const char *bench, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "cairn-bench NAME: what: status" to stderr and returns 1. */
int bench_fail(const char *bench, const char *what, const cairn_status *st);
rpc_channel *bench_connect(const bench_opts *o, const char *bench);
int64_t bench_timeout_ms(const bench_opts *o);

/* Digest message pointing into `hex`. */
void bench_digest_pb(const cairn_digest *d, char hex[CAIRN_HASH_HEX_LEN + 1], bench_dpb *pb);

/* ---- sets of small blobs ---- */

/* n blobs of `size` bytes each, contiguous, with their digests and digest messages. */
typedef struct bench_blobs {
	uint8_t *data;
	size_t size, n;
	cairn_digest *d;
	char (*hex)[CAIRN_HASH_HEX_LEN + 1];
	bench_dpb *pb;
	bench_dpb **pbs;
	uint64_t stamp; /* counter written into each blob so that no two are equal */
} bench_blobs;

void bench_blobs_init(bench_blobs *b, size_t n, size_t size);
/* Fills every blob with fresh random bytes (stamped with tag and a counter when size >= 16, so no two
 * blobs of a run are equal) and computes the digests. */
void bench_blobs_fill(bench_blobs *b, bench_rng *r, uint64_t tag);
/* Fills blobs [0, n) (n <= b->n) with blobs first .. first + n - 1 of the fixed set named by seed, and
 * computes their digests: any process regenerates the same bytes from the same seed and index, so a
 * set uploaded by one run can be read back and checked by another (stamped with seed and index when
 * size >= 16, so no two blobs of a set are equal). */
void bench_blobs_fill_set(bench_blobs *b, uint64_t seed, uint64_t first, size_t n);
void bench_blobs_free(bench_blobs *b);
/* One BatchUpdateBlobs call of prepared requests; every blob's status must be OK. */
cairn_status bench_batch_update(rpc_channel *ch, const bench_opts *o,
                                Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request **reqs, size_t n);
/* One BatchUpdateBlobs call for blobs [first, first + count); every per-blob status must be OK. */
cairn_status bench_blobs_upload(rpc_channel *ch, const bench_opts *o, const bench_blobs *b, size_t first,
                                size_t count);
/* Uploads blobs [0, count) in calls that stay under the server's batch limit. */
cairn_status bench_blobs_upload_all(rpc_channel *ch, const bench_opts *o, const bench_blobs *b, size_t count);

/* ---- many clients for a fixed time ---- */

typedef struct bench_worker bench_worker;
/* One timed unit of work: records its latency with bench_lat_add(&w->lat, …) and adds what it
 * did to w->ops. A non-OK status stops the worker and fails the benchmark. */
typedef cairn_status (*bench_step_fn)(bench_worker *w);

struct bench_worker {
	int id;
	const bench_opts *o;
	rpc_channel *ch;
	void *ctx;     /* the benchmark's state, shared read-only by every worker */
	void *local;   /* the benchmark's per-worker state */
	bench_rng rng;
	bench_lat lat;
	uint64_t ops;    /* blobs, requests: what the rate counts */
	int64_t prep_ns; /* client-side preparation outside the timed calls */
	bool warmup;     /* set during the untimed first step */
	bool done;       /* set by a step when the work is finished: the worker stops without error */
	cairn_status st;
};

typedef struct bench_totals {
	uint64_t ops, calls;
	int64_t wall_ns, prep_ns;
	bench_lat lat; /* every worker's samples */
	bool capped;   /* some worker stopped at its sample limit before the time was up */
} bench_totals;

/* Runs `clients` threads, each with its own channel, local state from make_local (may be NULL) and
 * one untimed warm-up step; then all start together and step until `seconds` have passed or the
 * step sets w->done (a fixed amount of work: the wall time is then until the last worker finished). */
cairn_status bench_run_workers(const bench_opts *o, bench_step_fn step, void *ctx,
                               void *(*make_local)(bench_worker *w), void (*free_local)(void *local),
                               bench_totals *out);

#endif
