/*
 * common: the vocabulary every cairn module shares.
 *
 *  - cairn_status: the one error type. Every fallible call returns it; the code is a gRPC status
 *    code (so a service can hand it to a client unchanged) and the message says what a user can act
 *    on. It is a small value type: no allocation, nothing to free.
 *  - cairn_digest: a SHA-256 hash plus a size, as REAPI names content; parsing and formatting of the
 *    "hash/size" and hex forms, and an incremental hasher over OpenSSL's EVP (which uses the CPU's SHA
 *    instructions).
 *  - logging: one line per event, "level module: message key=value", to stderr.
 *  - flags: a table-driven parser for "--snake_case=value" flags that also prints truthful --help.
 *  - arena: a bump allocator freed at once, used for one RPC's decoded messages and scratch space.
 *  - rendezvous: which members own a digest (rendezvous hashing), the same answer on every instance
 *    that knows the same member ids.
 *  - breaker: a circuit breaker for calls to one peer, so that a dead peer costs one deadline, not
 *    one per call.
 *
 * common knows nothing of gRPC calls or disks, nor any service's interface (blobstore/, runner/).
 */
#ifndef CAIRN_COMMON_H
#define CAIRN_COMMON_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- status ---------------------------------------------------------------------------------- */

/* The gRPC status codes, by value. */
enum cairn_code {
	CAIRN_OK = 0,
	CAIRN_CANCELLED = 1,
	CAIRN_UNKNOWN = 2,
	CAIRN_INVALID_ARGUMENT = 3,
	CAIRN_DEADLINE_EXCEEDED = 4,
	CAIRN_NOT_FOUND = 5,
	CAIRN_ALREADY_EXISTS = 6,
	CAIRN_PERMISSION_DENIED = 7,
	CAIRN_RESOURCE_EXHAUSTED = 8,
	CAIRN_FAILED_PRECONDITION = 9,
	CAIRN_ABORTED = 10,
	CAIRN_OUT_OF_RANGE = 11,
	CAIRN_UNIMPLEMENTED = 12,
	CAIRN_INTERNAL = 13,
	CAIRN_UNAVAILABLE = 14,
	CAIRN_DATA_LOSS = 15,
	CAIRN_UNAUTHENTICATED = 16,
};

#define CAIRN_STATUS_MSG_MAX 240

typedef struct cairn_status {
	int code;
	char msg[CAIRN_STATUS_MSG_MAX];
} cairn_status;

cairn_status cairn_ok(void);
cairn_status cairn_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An error from errno: "what: strerror(errno)", mapped to a fitting code (ENOSPC → RESOURCE_EXHAUSTED…). */
cairn_status cairn_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool cairn_is_ok(const cairn_status *s) { return s->code == CAIRN_OK; }
/* "NOT_FOUND" for 5, "UNKNOWN" for anything out of range. */
const char *cairn_code_name(int code);
/* "NOT_FOUND: blob abc…/12 is not in the CAS" — points into a thread-local buffer. */
const char *cairn_status_str(const cairn_status *s);

/* ---- digests --------------------------------------------------------------------------------- */

#define CAIRN_HASH_LEN 32
#define CAIRN_HASH_HEX_LEN 64
/* The largest blob size cairn accepts anywhere (1 TiB): larger sizes are treated as lies. */
#define CAIRN_MAX_BLOB_SIZE (INT64_C(1) << 40)

typedef struct cairn_digest {
	uint8_t hash[CAIRN_HASH_LEN];
	int64_t size;
} cairn_digest;

/* Parses 64 lowercase hex characters (exactly len bytes) and a size in [0, CAIRN_MAX_BLOB_SIZE]. */
cairn_status cairn_digest_parse(const char *hex, size_t hex_len, int64_t size, cairn_digest *out);
/* Parses "hash/size" (the ByteStream form); stops at len. */
cairn_status cairn_digest_parse_path(const char *s, size_t len, cairn_digest *out);
/* Writes 64 hex characters and a NUL. */
void cairn_hash_hex(const uint8_t hash[CAIRN_HASH_LEN], char out[CAIRN_HASH_HEX_LEN + 1]);
/* "hash/size" into a buffer of at least CAIRN_DIGEST_STR_MAX bytes; returns out. */
#define CAIRN_DIGEST_STR_MAX (CAIRN_HASH_HEX_LEN + 1 + 21)
char *cairn_digest_str(const cairn_digest *d, char *out);
bool cairn_digest_eq(const cairn_digest *a, const cairn_digest *b);
bool cairn_digest_is_empty_blob(const cairn_digest *d);
/* Digest of a buffer in memory. */
void cairn_digest_of(const void *data, size_t len, cairn_digest *out);

typedef struct cairn_hasher cairn_hasher;
cairn_hasher *cairn_hasher_new(void);
void cairn_hasher_update(cairn_hasher *h, const void *data, size_t len);
/* Finishes into hash; the hasher can be reused after cairn_hasher_reset. */
void cairn_hasher_final(cairn_hasher *h, uint8_t hash[CAIRN_HASH_LEN]);
void cairn_hasher_reset(cairn_hasher *h);
void cairn_hasher_free(cairn_hasher *h);

/* ---- logging --------------------------------------------------------------------------------- */

enum cairn_log_level { CAIRN_LOG_DEBUG, CAIRN_LOG_INFO, CAIRN_LOG_WARN, CAIRN_LOG_ERROR };
void cairn_log_set_level(enum cairn_log_level min);
/* Parses "debug", "info", "warn", "error". */
bool cairn_log_parse_level(const char *s, enum cairn_log_level *out);
void cairn_log(enum cairn_log_level lvl, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define LOG_DEBUG(mod, ...) cairn_log(CAIRN_LOG_DEBUG, mod, __VA_ARGS__)
#define LOG_INFO(mod, ...) cairn_log(CAIRN_LOG_INFO, mod, __VA_ARGS__)
#define LOG_WARN(mod, ...) cairn_log(CAIRN_LOG_WARN, mod, __VA_ARGS__)
#define LOG_ERROR(mod, ...) cairn_log(CAIRN_LOG_ERROR, mod, __VA_ARGS__)

/* ---- flags ----------------------------------------------------------------------------------- */

enum cairn_flag_type { CAIRN_FLAG_STRING, CAIRN_FLAG_INT, CAIRN_FLAG_SIZE, CAIRN_FLAG_BOOL, CAIRN_FLAG_DURATION };

/* One flag. `value` points at a `const char *` (STRING), `int64_t` (INT, SIZE: bytes with optional
 * K/M/G/T suffix, DURATION: seconds with optional s/m/h suffix) or `bool` (BOOL: "--x", "--x=true",
 * "--x=false", "--nox"). The value it holds before parsing is the default --help shows. */
typedef struct cairn_flag {
	const char *name;
	enum cairn_flag_type type;
	void *value;
	const char *help;
} cairn_flag;

/* Parses argv[0..argc) into the flags. Positional arguments (and everything after "--") are moved to
 * the front of argv in order and their count stored in *npos. Returns INVALID_ARGUMENT naming the flag
 * for an unknown flag or a bad value. "--help" sets *help and stops. */
cairn_status cairn_flags_parse(const cairn_flag *flags, size_t n, int argc, char **argv, int *npos, bool *help);
/* Writes "  --name=DEFAULT  help" lines for --help. */
void cairn_flags_usage(const cairn_flag *flags, size_t n, void *file);
/* "1.5G" → 1610612736. */
bool cairn_parse_size(const char *s, int64_t *out);
/* Formats bytes as "1.5 GiB". */
char *cairn_format_size(int64_t bytes, char *out, size_t cap);

/* ---- arena ----------------------------------------------------------------------------------- */

/* Bump allocator: many small allocations, one free. Never returns NULL (aborts on OOM, like malloc
 * wrappers everywhere in cairn: running out of memory is not a recoverable request error, the
 * limits that keep memory bounded are checked before allocating). */
typedef struct cairn_arena cairn_arena;
cairn_arena *cairn_arena_new(size_t first_block);
void *cairn_arena_alloc(cairn_arena *a, size_t n);
char *cairn_arena_strndup(cairn_arena *a, const char *s, size_t n);
size_t cairn_arena_used(const cairn_arena *a);
void cairn_arena_free(cairn_arena *a);
/* The two functions of a protobuf-c allocator (ProtobufCAllocator, with the arena as its
 * allocator_data) that takes from an arena: what it unpacks is freed with the arena, so the free
 * does nothing. Here, so that every module that decodes messages shares them without common
 * knowing protobuf-c. */
void *cairn_arena_alloc_cb(void *arena, size_t n);
void cairn_arena_free_cb(void *arena, void *p);

void *cairn_xmalloc(size_t n);
void *cairn_xcalloc(size_t n, size_t m);
/* n bytes at a multiple of align (a power of two); freed with free(). */
void *cairn_xaligned_alloc(size_t align, size_t n);
void *cairn_xrealloc(void *p, size_t n);
char *cairn_xstrdup(const char *s);

/* Well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF) with no NUL byte. */
bool cairn_utf8_valid(const void *s, size_t n);

/* A one-shot wait for an asynchronous call, for threads that may block (never gRPC threads):
 * pass cairn_waiter_done as the callback and the waiter as its argument, then cairn_waiter_wait.
 * The waiter can be used again after each wait. */
typedef struct cairn_waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	cairn_status st;
} cairn_waiter;
void cairn_waiter_init(cairn_waiter *w);
void cairn_waiter_done(void *arg, cairn_status st);
cairn_status cairn_waiter_wait(cairn_waiter *w);
void cairn_waiter_destroy(cairn_waiter *w);

/* ---- rendezvous hashing (rendezvous.c) ------------------------------------------------------- */

/* A member as ranked: its key (cairn_rendezvous_key of its id, computed once) and its id, unique
 * among the members ranked together, which breaks ties. */
typedef struct cairn_rendezvous_member {
	uint64_t key;
	const char *id;
} cairn_rendezvous_member;

uint64_t cairn_rendezvous_key(const char *id);
/* A member's score for d (the higher ranks first): independent across members for one digest. */
uint64_t cairn_rendezvous_score(uint64_t key, const cairn_digest *d);
/* Writes the indices of the first k members in rank order for d into out (k entries) and their
 * scores into scores (k entries of scratch); returns how many (k, or n when n is smaller). */
size_t cairn_rendezvous_rank(const cairn_rendezvous_member *m, size_t n, const cairn_digest *d, size_t k, size_t *out,
                             uint64_t *scores);

/* ---- circuit breaker (breaker.c) ------------------------------------------------------------- *
 *
 * For calls to one peer: after `threshold` calls in a row failed for want of the peer (UNAVAILABLE:
 * refused, reset; DEADLINE_EXCEEDED: stalled), every call is refused at once for `cooldown_ns`;
 * then one call goes through to probe: its success closes the breaker, its failure opens it for
 * another cool-down. Any other answer of the peer (NOT_FOUND included) counts as a success; a call
 * cancelled by its caller counts for nothing. One mutex-guarded counter, touched once when a call
 * starts and once when it ends: cheap enough for every call to a peer. */
typedef struct cairn_breaker {
	pthread_mutex_t mu;
	int threshold;
	int64_t cooldown_ns;
	int failures;       /* calls in a row that failed for want of the peer */
	int64_t open_until; /* while failures >= threshold: refuse calls until then */
	bool probing;       /* the one call let through after a cool-down is in flight */
} cairn_breaker;

/* What a recorded outcome changed, for the caller to log once per change. */
enum cairn_breaker_change { CAIRN_BREAKER_SAME, CAIRN_BREAKER_OPENED, CAIRN_BREAKER_CLOSED };

void cairn_breaker_init(cairn_breaker *b, int threshold, int64_t cooldown_ns);
void cairn_breaker_destroy(cairn_breaker *b);
/* True if a call may go to the peer now; else *failures (if not NULL) says how many failed in a row. */
bool cairn_breaker_admit(cairn_breaker *b, int *failures);
/* Feeds the outcome of an admitted call. */
enum cairn_breaker_change cairn_breaker_record(cairn_breaker *b, const cairn_status *st);
/* The peer is known to be back (it returned to a view): calls go through again at once. True if the
 * breaker was open. A probe in flight still ends with its own record. */
bool cairn_breaker_reset(cairn_breaker *b);

/* Monotonic clock in nanoseconds, and wall clock in nanoseconds since the epoch. */
int64_t cairn_now_ns(void);
int64_t cairn_wall_ns(void);

#endif
