/* cairn-bench upload and download (one big blob through ByteStream) and loopback, their reference: a
 * raw TCP copy over 127.0.0.1 with the same machine, kernel and buffer sizes, and no gRPC at all.
 *
 * Every upload run sends a blob the server does not hold: run 1 the blob itself, run i > 1 the blob
 * with its last 8 bytes replaced by a stamp of the run, hashed from the SHA-256 state after the
 * unchanged prefix (computed once, untimed). Sending one digest again would measure the server
 * skipping a duplicate write; --duplicates measures that on purpose, reported apart. */
#include "perf/bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define METHOD_WRITE "/google.bytestream.ByteStream/Write"
#define METHOD_READ "/google.bytestream.ByteStream/Read"
#define METHOD_FIND "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs"
#define MAX_REPEAT 1000
/* WriteRequest size when the subcommand has no --chunk (download uploading its blob first) */
#define DEFAULT_CHUNK (1 << 20)

/* ---- the blob: a file mapped into memory, or generated from --seed ---- */

typedef struct blob {
	uint8_t *data;
	cairn_digest d;
	/* data maps the --file privately: its pages are the page cache's, as a file client reads them, but
	 * for the one page a stamp is written into */
	bool mapped;
	size_t mapped_len;
} blob;

static cairn_status map_file(const char *path, blob *b, int64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cairn_errno(errno, "open %s", path);
	struct stat sb;
	cairn_status st = fstat(fd, &sb) == 0 ? cairn_ok() : cairn_errno(errno, "stat %s", path);
	*size = sb.st_size;
	if (cairn_is_ok(&st) && sb.st_size > 0) {
		void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED)
			st = cairn_errno(errno, "mmap %s", path);
		else
			*b = (blob){.data = p, .mapped = true, .mapped_len = (size_t)sb.st_size};
	} else if (cairn_is_ok(&st)) {
		*b = (blob){.data = cairn_xmalloc(1)};
	}
	close(fd);
	return st;
}

static void free_blob(blob *b)
{
	if (b->mapped)
		munmap(b->data, b->mapped_len);
	else
		free(b->data);
	b->data = NULL;
}

/* The blob and its digest (from --sha256, or hashed here), prepared before anything is timed. */
static cairn_status make_blob(const bench_opts *o, blob *b)
{
	int64_t size = o->size;
	*b = (blob){0};
	if (o->file[0]) {
		cairn_status st = map_file(o->file, b, &size);
		if (!cairn_is_ok(&st))
			return st;
	} else {
		bench_rng r;
		bench_rng_seed(&r, (uint64_t)o->seed);
		b->data = cairn_xmalloc((size_t)size + 1);
		bench_rng_fill(&r, b->data, (size_t)size);
	}
	b->d.size = size;
	char ds[CAIRN_DIGEST_STR_MAX];
	if (o->file[0] && o->sha256[0]) {
		cairn_status st = cairn_digest_parse(o->sha256, strlen(o->sha256), size, &b->d);
		if (!cairn_is_ok(&st))
			free_blob(b);
		else
			fprintf(stderr, "blob %s (its SHA-256 given)\n", cairn_digest_str(&b->d, ds));
		return st;
	}
	int64_t t0 = cairn_now_ns();
	cairn_digest_of(b->data, (size_t)size, &b->d);
	fprintf(stderr, "blob %s (client hashed it at %.0f MB/s)\n", cairn_digest_str(&b->d, ds),
	        bench_mb_per_s(size, cairn_now_ns() - t0));
	return cairn_ok();
}

static void blob_path(const bench_opts *o, const char *prefix, const cairn_digest *d, char *out, size_t cap)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	cairn_hash_hex(d->hash, hex);
	snprintf(out, cap, "%s%s%sblobs/%s/%" PRId64, o->instance, o->instance[0] ? "/" : "", prefix, hex, d->size);
}

/* ---- fresh blobs: the stamp of a run ---- */

#define STAMP_LEN 8

typedef struct stamper {
	EVP_MD_CTX *prefix; /* SHA-256 state after the blob's unchanged bytes */
	EVP_MD_CTX *run;
	uint64_t nonce; /* differs between invocations, so that a server that outlived one holds no stamp */
} stamper;

static cairn_status stamper_init(stamper *s, const blob *b)
{
	if (b->d.size < STAMP_LEN)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "a blob of %d bytes at least is needed for a fresh one per run "
		                 "(make --size larger, or --repeat=1)", STAMP_LEN);
	s->prefix = EVP_MD_CTX_new();
	s->run = EVP_MD_CTX_new();
	s->nonce = bench_nonce();
	int64_t t0 = cairn_now_ns();
	if (!s->prefix || !s->run || !EVP_DigestInit_ex(s->prefix, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(s->prefix, b->data, (size_t)(b->d.size - STAMP_LEN)))
		return cairn_err(CAIRN_INTERNAL, "SHA-256 of the blob's prefix failed");
	fprintf(stderr, "blob prefix hashed at %.0f MB/s, for the stamped runs\n",
	        bench_mb_per_s(b->d.size, cairn_now_ns() - t0));
	return cairn_ok();
}

/* Makes the blob that of run i (> 0): a stamp in its last bytes, and its digest. */
static cairn_status stamp(stamper *s, blob *b, int64_t i)
{
	uint8_t mark[STAMP_LEN];
	uint64_t v = s->nonce ^ (uint64_t)i;
	memcpy(mark, &v, STAMP_LEN);
	memcpy(b->data + b->d.size - STAMP_LEN, mark, STAMP_LEN);
	unsigned len = 0;
	if (!EVP_MD_CTX_copy_ex(s->run, s->prefix) || !EVP_DigestUpdate(s->run, mark, STAMP_LEN) ||
	    !EVP_DigestFinal_ex(s->run, b->d.hash, &len) || len != CAIRN_HASH_LEN)
		return cairn_err(CAIRN_INTERNAL, "SHA-256 of the stamped blob failed");
	return cairn_ok();
}

static void stamper_free(stamper *s)
{
	EVP_MD_CTX_free(s->prefix);
	EVP_MD_CTX_free(s->run);
}

/* ---- upload ---- */

/* Streams the whole blob as WriteRequests of o->chunk bytes. A server may end the call early when it
 * already holds the blob (REAPI allows it); then a send fails and *early is set. */
static cairn_status send_blob(rpc_stream *s, const bench_opts *o, const uint8_t *data, const cairn_digest *d,
                              const char *name, bool *early)
{
	Google__Bytestream__WriteRequest req = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
	/* a chunk of 0 would send empty messages for ever */
	int64_t off = 0, chunk = o->chunk > 0 ? o->chunk : DEFAULT_CHUNK;
	do {
		int64_t n = d->size - off < chunk ? d->size - off : chunk;
		req.resource_name = off == 0 ? (char *)name : "";
		req.write_offset = off;
		req.data.data = (uint8_t *)data + off;
		req.data.len = (size_t)n;
		req.finish_write = off + n == d->size;
		cairn_status st = rpc_stream_send(s, &req.base);
		if (!cairn_is_ok(&st)) {
			*early = true;
			return cairn_ok(); /* the status of the call says whether that was a failure */
		}
		off += n;
	} while (off < d->size);
	return rpc_stream_close_send(s);
}

static cairn_status upload_once(rpc_channel *ch, const bench_opts *o, const uint8_t *data, const cairn_digest *d,
                                bool *early)
{
	char prefix[64], name[320];
	snprintf(prefix, sizeof prefix, "uploads/%016" PRIx64 "-bench/", bench_nonce());
	blob_path(o, prefix, d, name, sizeof name);
	*early = false;
	rpc_stream *s;
	cairn_status st = rpc_stream_open(ch, METHOD_WRITE, bench_timeout_ms(o), &s);
	if (cairn_is_ok(&st))
		st = send_blob(s, o, data, d, name, early);
	ProtobufCMessage *resp = NULL;
	if (cairn_is_ok(&st))
		st = rpc_stream_recv(s, &google__bytestream__write_response__descriptor, &resp);
	cairn_status fst = rpc_stream_finish(s, NULL, NULL);
	if (cairn_is_ok(&st))
		st = fst;
	if (cairn_is_ok(&st) && (!resp || ((Google__Bytestream__WriteResponse *)resp)->committed_size != d->size))
		st = cairn_err(CAIRN_INTERNAL, "server did not report the whole blob committed");
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return st;
}

typedef struct upload_runs {
	double fresh[MAX_REPEAT], dup[MAX_REPEAT];
	int early, early_dup; /* calls the server ended early: it held the blob */
} upload_runs;

/* One timed upload of the blob as it is; its rate in *mbs, and counted in *early if the server
 * ended it early. */
static cairn_status timed_upload(rpc_channel *ch, const bench_opts *o, const blob *b, const char *what, int64_t i,
                                 double *mbs, int *early)
{
	bool e;
	int64_t t0 = cairn_now_ns();
	cairn_status st = upload_once(ch, o, b->data, &b->d, &e);
	int64_t ns = cairn_now_ns() - t0;
	if (!cairn_is_ok(&st))
		return st;
	*mbs = bench_mb_per_s(b->d.size, ns);
	*early += e;
	fprintf(stderr, "upload %" PRId64 "/%" PRId64 "%s: %.1f MB/s (%.3f s)%s\n", i + 1, o->repeat, what, *mbs,
	        bench_secs(ns), e ? " server ended the call early" : "");
	return cairn_ok();
}

static cairn_status upload_runs_do(rpc_channel *ch, const bench_opts *o, blob *b, upload_runs *ur)
{
	stamper s = {0};
	cairn_status st = o->repeat > 1 ? stamper_init(&s, b) : cairn_ok();
	for (int64_t i = 0; i < o->repeat && cairn_is_ok(&st); i++) {
		if (i > 0)
			st = stamp(&s, b, i);
		if (cairn_is_ok(&st))
			st = timed_upload(ch, o, b, "", i, &ur->fresh[i], &ur->early);
		if (cairn_is_ok(&st) && o->duplicates)
			st = timed_upload(ch, o, b, " again (duplicate)", i, &ur->dup[i], &ur->early_dup);
	}
	stamper_free(&s);
	return st;
}

int bench_upload(const bench_opts *o)
{
	if (o->chunk <= 0 || o->repeat <= 0 || o->repeat > MAX_REPEAT)
		return fprintf(stderr, "cairn-bench upload: --chunk must be positive, --repeat in 1..%d\n", MAX_REPEAT), 2;
	blob b;
	cairn_status st = make_blob(o, &b);
	if (!cairn_is_ok(&st))
		return bench_fail("upload", "blob", &st);
	rpc_channel *ch = bench_connect(o, "upload");
	if (!ch)
		return free_blob(&b), 1;
	upload_runs *ur = cairn_xcalloc(1, sizeof *ur);
	st = upload_runs_do(ch, o, &b, ur);
	rpc_channel_close(ch);
	int64_t size = b.d.size;
	free_blob(&b);
	if (!cairn_is_ok(&st))
		return free(ur), bench_fail("upload", "Write", &st);
	size_t n = (size_t)o->repeat;
	char runs[MAX_REPEAT * 12], dups[MAX_REPEAT * 12 + 400] = "";
	bench_join(ur->fresh, n, runs, sizeof runs);
	if (o->duplicates) {
		char list[MAX_REPEAT * 12];
		bench_join(ur->dup, n, list, sizeof list);
		snprintf(dups, sizeof dups, " duplicate=%.1f runs_duplicate=%s early_duplicate=%d", bench_median(ur->dup, n),
		         list, ur->early_dup);
	}
	bench_result("upload", "value=%.1f unit=MB/s runs=%s bytes=%" PRId64 " chunk=%" PRId64 " early=%d%s",
	             bench_median(ur->fresh, n), runs, size, o->chunk, ur->early, dups);
	free(ur);
	return 0;
}

/* ---- download ---- */

typedef struct read_stats {
	int64_t bytes;
	int64_t hash_ns; /* time spent verifying (hashing) on the client */
} read_stats;

/* Receives the blob; hashes it into h unless h is NULL (the unverified runs). */
static cairn_status read_messages(rpc_stream *s, cairn_hasher *h, read_stats *rs)
{
	for (;;) {
		ProtobufCMessage *m;
		cairn_status st = rpc_stream_recv(s, &google__bytestream__read_response__descriptor, &m);
		if (!cairn_is_ok(&st) || !m)
			return st;
		const Google__Bytestream__ReadResponse *r = (const void *)m;
		if (h) {
			int64_t t0 = cairn_now_ns();
			cairn_hasher_update(h, r->data.data, r->data.len);
			rs->hash_ns += cairn_now_ns() - t0;
		}
		rs->bytes += (int64_t)r->data.len;
		protobuf_c_message_free_unpacked(m, NULL);
	}
}

/* One ByteStream Read of the whole blob. With h, the SHA-256 must match; without, only the size. */
static cairn_status download_once(rpc_channel *ch, const bench_opts *o, const cairn_digest *d, cairn_hasher *h,
                                  read_stats *rs)
{
	char name[256];
	blob_path(o, "", d, name, sizeof name);
	Google__Bytestream__ReadRequest req = GOOGLE__BYTESTREAM__READ_REQUEST__INIT;
	req.resource_name = name;
	*rs = (read_stats){0};
	if (h)
		cairn_hasher_reset(h);
	rpc_stream *s;
	cairn_status st = rpc_stream_open(ch, METHOD_READ, bench_timeout_ms(o), &s);
	if (cairn_is_ok(&st))
		st = rpc_stream_send(s, &req.base);
	if (cairn_is_ok(&st))
		st = rpc_stream_close_send(s);
	if (cairn_is_ok(&st))
		st = read_messages(s, h, rs);
	cairn_status fst = rpc_stream_finish(s, NULL, NULL);
	if (cairn_is_ok(&st))
		st = fst;
	if (cairn_is_ok(&st) && rs->bytes != d->size)
		st = cairn_err(CAIRN_DATA_LOSS, "got %" PRId64 " bytes of %" PRId64, rs->bytes, d->size);
	if (!cairn_is_ok(&st) || !h)
		return st;
	int64_t t0 = cairn_now_ns();
	cairn_digest got = {.size = rs->bytes};
	cairn_hasher_final(h, got.hash);
	rs->hash_ns += cairn_now_ns() - t0;
	return cairn_digest_eq(&got, d) ? cairn_ok() : cairn_err(CAIRN_DATA_LOSS, "downloaded bytes do not match the digest");
}

/* Uploads the blob (untimed) unless the server has it, so that download runs on its own. */
static cairn_status ensure_present(rpc_channel *ch, const bench_opts *o, const uint8_t *data, const cairn_digest *d)
{
	char hex[CAIRN_HASH_HEX_LEN + 1];
	bench_dpb pb, *pbs[1] = {&pb};
	bench_digest_pb(d, hex, &pb);
	Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest req =
		BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
	req.instance_name = (char *)o->instance;
	req.n_blob_digests = 1;
	req.blob_digests = pbs;
	ProtobufCMessage *resp;
	cairn_status st = rpc_unary(ch, METHOD_FIND, &req.base,
	                            &build__bazel__remote__execution__v2__find_missing_blobs_response__descriptor, &resp,
	                            bench_timeout_ms(o));
	if (!cairn_is_ok(&st))
		return st;
	bool missing = ((Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse *)resp)->n_missing_blob_digests > 0;
	protobuf_c_message_free_unpacked(resp, NULL);
	if (!missing)
		return cairn_ok();
	fprintf(stderr, "download: the server lacks the blob; uploading it first (not timed)\n");
	bool early;
	return upload_once(ch, o, data, d, &early);
}

typedef struct download_runs {
	double verified[MAX_REPEAT], unverified[MAX_REPEAT], hash_share[MAX_REPEAT];
} download_runs;

/* Run i: one verified and one unverified read, in alternating order so neither always goes first. */
static cairn_status download_pair(rpc_channel *ch, const bench_opts *o, const cairn_digest *d, cairn_hasher *h,
                                  int64_t i, download_runs *dr)
{
	for (int k = 0; k < 2; k++) {
		bool verify = (k + i) % 2 == 0;
		read_stats rs;
		int64_t t0 = cairn_now_ns();
		cairn_status st = download_once(ch, o, d, verify ? h : NULL, &rs);
		int64_t ns = cairn_now_ns() - t0;
		if (!cairn_is_ok(&st))
			return st;
		double mbs = bench_mb_per_s(d->size, ns);
		if (verify) {
			dr->verified[i] = mbs;
			dr->hash_share[i] = ns > 0 ? (double)rs.hash_ns / (double)ns : 0;
		} else {
			dr->unverified[i] = mbs;
		}
		fprintf(stderr, "download %" PRId64 "/%" PRId64 " %s: %.1f MB/s (%.3f s", i + 1, o->repeat,
		        verify ? "verified" : "unverified", mbs, bench_secs(ns));
		if (verify)
			fprintf(stderr, ", %.3f s of it hashing", bench_secs(rs.hash_ns));
		fprintf(stderr, ")\n");
	}
	return cairn_ok();
}

static void report_download(const bench_opts *o, int64_t size, download_runs *dr)
{
	size_t n = (size_t)o->repeat;
	char runs[MAX_REPEAT * 12], runs_unverified[MAX_REPEAT * 12];
	bench_join(dr->verified, n, runs, sizeof runs);
	bench_join(dr->unverified, n, runs_unverified, sizeof runs_unverified);
	double v = bench_median(dr->verified, n), u = bench_median(dr->unverified, n);
	bench_result("download",
	             "value=%.1f unit=MB/s runs=%s unverified=%.1f runs_unverified=%s client_hash_share=%.3f bytes=%" PRId64,
	             v, runs, u, runs_unverified, bench_median(dr->hash_share, n), size);
}

int bench_download(const bench_opts *o)
{
	if (o->repeat <= 0 || o->repeat > MAX_REPEAT)
		return fprintf(stderr, "cairn-bench download: --repeat must be in 1..%d\n", MAX_REPEAT), 2;
	blob b;
	cairn_status st = make_blob(o, &b);
	if (!cairn_is_ok(&st))
		return bench_fail("download", "blob", &st);
	const cairn_digest d = b.d;
	rpc_channel *ch = bench_connect(o, "download");
	if (!ch)
		return free_blob(&b), 1;
	st = ensure_present(ch, o, b.data, &d);
	free_blob(&b); /* only the digest is needed from here on */
	cairn_hasher *h = cairn_hasher_new();
	download_runs *dr = cairn_xcalloc(1, sizeof *dr);
	for (int64_t i = 0; i < o->repeat && cairn_is_ok(&st); i++)
		st = download_pair(ch, o, &d, h, i, dr);
	cairn_hasher_free(h);
	rpc_channel_close(ch);
	if (cairn_is_ok(&st))
		report_download(o, d.size, dr);
	free(dr);
	return cairn_is_ok(&st) ? 0 : bench_fail("download", "Read", &st);
}

/* ---- loopback: the reference ---- */

typedef struct pipe_end {
	int fd;
	int64_t size;
	size_t buf_size;
	pthread_barrier_t *go;
	int err; /* errno of a failed send, 0 if all went */
} pipe_end;

static void *sender(void *arg)
{
	pipe_end *p = arg;
	uint8_t *buf = cairn_xmalloc(p->buf_size);
	bench_rng r;
	bench_rng_seed(&r, 42);
	bench_rng_fill(&r, buf, p->buf_size);
	pthread_barrier_wait(p->go);
	for (int64_t left = p->size; left > 0 && !p->err;) {
		size_t n = (int64_t)p->buf_size < left ? p->buf_size : (size_t)left;
		ssize_t w = send(p->fd, buf, n, 0);
		if (w < 0 && errno != EINTR)
			p->err = errno;
		left -= w > 0 ? w : 0;
	}
	shutdown(p->fd, SHUT_WR);
	free(buf);
	return NULL;
}

static int listener(struct sockaddr_in *a)
{
	socklen_t alen = sizeof *a;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0)
		return -1;
	if (bind(l, (struct sockaddr *)a, sizeof *a) || listen(l, 1) || getsockname(l, (struct sockaddr *)a, &alen)) {
		int err = errno;
		close(l);
		errno = err;
		return -1;
	}
	return l;
}

/* A connected pair of TCP sockets over 127.0.0.1: fds[0] sends, fds[1] receives. */
static cairn_status tcp_pair(int fds[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int l = listener(&a);
	if (l < 0)
		return cairn_errno(errno, "listen on 127.0.0.1");
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof a)) {
		cairn_status st = cairn_errno(errno, "connect to 127.0.0.1:%d", ntohs(a.sin_port));
		if (fds[0] >= 0)
			close(fds[0]);
		close(l);
		return st;
	}
	fds[1] = accept(l, NULL, NULL);
	int err = errno;
	close(l);
	if (fds[1] < 0) {
		close(fds[0]);
		return cairn_errno(err, "accept");
	}
	return cairn_ok();
}

/* One copy of o->size bytes; returns the time from start to the last byte received. */
static cairn_status copy_once(const bench_opts *o, uint8_t *buf, int64_t *ns)
{
	int fds[2] = {-1, -1};
	cairn_status st = tcp_pair(fds);
	if (!cairn_is_ok(&st))
		return st;
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, 2);
	pipe_end p = {.fd = fds[0], .size = o->size, .buf_size = (size_t)o->chunk, .go = &go};
	pthread_t tid;
	pthread_create(&tid, NULL, sender, &p);
	pthread_barrier_wait(&go);
	int64_t t0 = cairn_now_ns(), got = 0;
	while (got < o->size) {
		ssize_t r = recv(fds[1], buf, (size_t)o->chunk, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	*ns = cairn_now_ns() - t0;
	pthread_join(tid, NULL);
	pthread_barrier_destroy(&go);
	close(fds[0]);
	close(fds[1]);
	if (p.err)
		return cairn_errno(p.err, "send");
	return got == o->size ? cairn_ok() : cairn_err(CAIRN_DATA_LOSS, "received %" PRId64 " of %" PRId64 " bytes", got, o->size);
}

int bench_loopback(const bench_opts *o)
{
	if (o->chunk <= 0 || o->repeat <= 0 || o->repeat > MAX_REPEAT)
		return fprintf(stderr, "cairn-bench loopback: --chunk must be positive, --repeat in 1..%d\n", MAX_REPEAT), 2;
	uint8_t *buf = cairn_xmalloc((size_t)o->chunk);
	double mbs[MAX_REPEAT];
	cairn_status st = cairn_ok();
	for (int64_t i = 0; i < o->repeat && cairn_is_ok(&st); i++) {
		int64_t ns = 0;
		st = copy_once(o, buf, &ns);
		if (!cairn_is_ok(&st))
			break;
		mbs[i] = bench_mb_per_s(o->size, ns);
		fprintf(stderr, "loopback %" PRId64 "/%" PRId64 ": %.1f MB/s (%.3f s)\n", i + 1, o->repeat, mbs[i], bench_secs(ns));
	}
	free(buf);
	if (!cairn_is_ok(&st))
		return bench_fail("loopback", "copy", &st);
	char runs[MAX_REPEAT * 12];
	bench_join(mbs, (size_t)o->repeat, runs, sizeof runs);
	bench_result("loopback", "value=%.1f unit=MB/s runs=%s bytes=%" PRId64 " buffer=%" PRId64,
	             bench_median(mbs, (size_t)o->repeat), runs, o->size, o->chunk);
	return 0;
}
