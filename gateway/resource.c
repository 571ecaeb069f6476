/*
 * ByteStream resource names, as remote_execution.proto (REAPI v2, the ContentAddressableStorage
 * service comment) defines them:
 *
 *   read:  {instance}/blobs/{hash}/{size}
 *          {instance}/compressed-blobs/{compressor}/{hash}/{size}
 *   write: {instance}/uploads/{uuid}/blobs/{hash}/{size}{/optional_metadata}
 *          {instance}/uploads/{uuid}/compressed-blobs/{compressor}/{hash}/{size}{/optional_metadata}
 *
 * The instance name may be empty (the leading slash goes with it) or span several segments. The spec
 * forbids the keywords in `reserved` as its segments, which is what makes a name parseable: the first
 * keyword segment ends the instance name, and any other keyword inside it is refused.
 *
 * The spec also allows a `{digest_function}/` segment before the hash, but only for functions other
 * than the classic ones; SHA-256 — the only function cairn speaks — must be left out, so such a
 * segment is refused with a message naming it. `identity` is never a compressor in a
 * compressed-blobs name (the spec: "a lowercase string form of a Compressor.Value enum other than
 * identity"); uncompressed data uses blobs/.
 *
 * Every name comes from a client, so everything is checked and every refusal is INVALID_ARGUMENT
 * saying what is wrong. The result points into the input; nothing is allocated.
 */
#include "gateway/gateway.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_NAME_LEN 4096
#define MAX_UUID_LEN 128
#define MAX_SIZE_DIGITS 19
#define QUOTE_MAX 64 /* at most this much of a bad segment is quoted back in a message */

static const char *const reserved[] = {
	"blobs", "uploads", "actions", "actionResults", "operations", "capabilities", "compressed-blobs",
};

/* The lowercase DigestFunction.Value names a client could put before the hash. */
static const char *const digest_functions[] = {
	"unknown", "sha256", "sha1", "md5", "vso", "sha384", "sha512", "murmur3", "sha256tree", "blake3",
};

typedef struct seg {
	const char *p;
	size_t n;
} seg;

/* Walks '/'-separated segments. "a/" yields "a" then "" — a trailing slash is an empty segment. */
typedef struct cursor {
	const char *p, *end;
	bool done;
} cursor;

static bool next_seg(cursor *c, seg *out)
{
	if (c->done)
		return false;
	const char *slash = memchr(c->p, '/', (size_t)(c->end - c->p));
	out->p = c->p;
	if (!slash) {
		out->n = (size_t)(c->end - c->p);
		c->p = c->end;
		c->done = true;
	} else {
		out->n = (size_t)(slash - c->p);
		c->p = slash + 1;
	}
	return true;
}

static bool seg_is(seg s, const char *word)
{
	size_t n = strlen(word);
	return s.n == n && memcmp(s.p, word, n) == 0;
}

static bool seg_in(seg s, const char *const *words, size_t nwords)
{
	for (size_t i = 0; i < nwords; i++)
		if (seg_is(s, words[i]))
			return true;
	return false;
}

static int quote_len(seg s) { return (int)(s.n < QUOTE_MAX ? s.n : QUOTE_MAX); }

__attribute__((format(printf, 1, 2))) static cairn_status bad(const char *fmt, ...)
{
	char why[CAIRN_STATUS_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	return cairn_err(CAIRN_INVALID_ARGUMENT, "invalid resource name: %s", why);
}

static cairn_status check_whole(const char *s, size_t len)
{
	if (len == 0)
		return bad("the name is empty");
	if (len > MAX_NAME_LEN)
		return bad("the name has %zu bytes, more than %d", len, MAX_NAME_LEN);
	if (memchr(s, '\0', len))
		return bad("the name contains a NUL byte");
	return cairn_ok();
}

/* Consumes the instance name up to the first segment that is one of `stops` (returned in *stop).
 * *inst is set to the instance name without its trailing slash. */
static cairn_status parse_instance(cursor *c, const char *const *stops, size_t nstops, const char *form, seg *inst,
                                   seg *stop)
{
	const char *start = c->p;
	seg s;
	while (next_seg(c, &s)) {
		if (seg_in(s, stops, nstops)) {
			inst->p = start;
			inst->n = s.p == start ? 0 : (size_t)(s.p - 1 - start);
			*stop = s;
			return cairn_ok();
		}
		if (s.n == 0)
			return bad("the instance name has an empty segment");
		if (seg_is(s, ".") || seg_is(s, ".."))
			return bad("the instance name has a \"%.*s\" segment", quote_len(s), s.p);
		if (seg_in(s, reserved, sizeof reserved / sizeof *reserved))
			return bad("the instance name contains the reserved segment \"%.*s\"; expected %s", quote_len(s), s.p,
			           form);
	}
	if (nstops == 2)
		return bad("no %s/ or %s/ segment; expected %s", stops[0], stops[1], form);
	return bad("no %s/ segment; expected %s", stops[0], form);
}

static cairn_status parse_compressor(cursor *c, enum gateway_compressor *out)
{
	seg s;
	if (!next_seg(c, &s) || s.n == 0)
		return bad("the compressor is missing after compressed-blobs/");
	if (seg_is(s, "zstd")) {
		*out = GATEWAY_ZSTD;
		return cairn_ok();
	}
	if (seg_is(s, "identity"))
		return bad("compressor identity is not used in compressed-blobs names; use blobs/");
	return bad("compressor \"%.*s\" is not supported (only zstd)", quote_len(s), s.p);
}

/* A decimal size: digits only (no sign, no spaces), at most MAX_SIZE_DIGITS of them, at most
 * CAIRN_MAX_BLOB_SIZE. */
static cairn_status parse_size(seg s, int64_t *out)
{
	if (s.n == 0)
		return bad("the size is missing");
	if (s.p[0] == '-')
		return bad("the size \"%.*s\" is negative", quote_len(s), s.p);
	for (size_t i = 0; i < s.n; i++)
		if (s.p[i] < '0' || s.p[i] > '9')
			return bad("the size \"%.*s\" is not a decimal number", quote_len(s), s.p);
	if (s.n > MAX_SIZE_DIGITS)
		return bad("the size \"%.*s\" has more than %d digits", quote_len(s), s.p, MAX_SIZE_DIGITS);
	uint64_t v = 0; /* 19 digits fit in uint64_t */
	for (size_t i = 0; i < s.n; i++)
		v = v * 10 + (uint64_t)(s.p[i] - '0');
	if (v > (uint64_t)CAIRN_MAX_BLOB_SIZE)
		return bad("the size %" PRIu64 " is larger than the largest blob cairn accepts (%" PRId64 " bytes)", v,
		           CAIRN_MAX_BLOB_SIZE);
	*out = (int64_t)v;
	return cairn_ok();
}

/* "[{compressor}/]{hash}/{size}" and, if trailing_ok, anything after a further slash. */
static cairn_status parse_blob(cursor *c, bool compressed, bool trailing_ok, gateway_resource *r)
{
	r->compressor = GATEWAY_IDENTITY;
	if (compressed) {
		cairn_status st = parse_compressor(c, &r->compressor);
		if (!cairn_is_ok(&st))
			return st;
	}
	seg hash, size;
	if (!next_seg(c, &hash) || hash.n == 0)
		return bad("the hash is missing");
	if (seg_in(hash, digest_functions, sizeof digest_functions / sizeof *digest_functions))
		return bad("digest function \"%.*s\" is not supported; cairn uses SHA-256, which names leave out",
		           quote_len(hash), hash.p);
	if (!next_seg(c, &size))
		return bad("the size is missing");
	cairn_status st = cairn_digest_parse(hash.p, hash.n, 0, &r->digest);
	if (!cairn_is_ok(&st))
		return bad("%s", st.msg);
	st = parse_size(size, &r->digest.size);
	if (!cairn_is_ok(&st))
		return st;
	if (!trailing_ok && !c->done) {
		seg rest = {c->p, (size_t)(c->end - c->p)};
		return bad("unexpected \"/%.*s\" after the size", quote_len(rest), rest.p);
	}
	return cairn_ok();
}

cairn_status gateway_parse_read_resource(const char *s, size_t len, gateway_resource *out)
{
	assert(s || len == 0);
	cairn_status st = check_whole(s, len);
	if (!cairn_is_ok(&st))
		return st;
	static const char *const stops[] = {"blobs", "compressed-blobs"};
	cursor c = {.p = s, .end = s + len};
	seg inst = {0}, kind = {0};
	st = parse_instance(&c, stops, 2, "{instance}/blobs/{hash}/{size}", &inst, &kind);
	if (!cairn_is_ok(&st))
		return st;
	gateway_resource r = {.instance = inst.p, .instance_len = inst.n};
	st = parse_blob(&c, seg_is(kind, "compressed-blobs"), false, &r);
	if (cairn_is_ok(&st))
		*out = r;
	return st;
}

static cairn_status parse_uuid(cursor *c, seg *uuid)
{
	if (!next_seg(c, uuid) || uuid->n == 0)
		return bad("the upload uuid is missing after uploads/");
	if (seg_is(*uuid, "blobs") || seg_is(*uuid, "compressed-blobs"))
		return bad("the upload uuid is missing: uploads/ is followed by %.*s/", quote_len(*uuid), uuid->p);
	if (uuid->n > MAX_UUID_LEN)
		return bad("the upload uuid has %zu bytes, more than %d", uuid->n, MAX_UUID_LEN);
	return cairn_ok();
}

cairn_status gateway_parse_write_resource(const char *s, size_t len, gateway_resource *out)
{
	assert(s || len == 0);
	cairn_status st = check_whole(s, len);
	if (!cairn_is_ok(&st))
		return st;
	static const char *const stops[] = {"uploads"};
	cursor c = {.p = s, .end = s + len};
	seg inst = {0}, kind = {0}, uuid = {0};
	st = parse_instance(&c, stops, 1, "{instance}/uploads/{uuid}/blobs/{hash}/{size}", &inst, &kind);
	if (cairn_is_ok(&st))
		st = parse_uuid(&c, &uuid);
	if (!cairn_is_ok(&st))
		return st;
	if (!next_seg(&c, &kind) || !(seg_is(kind, "blobs") || seg_is(kind, "compressed-blobs")))
		return bad("expected blobs/ or compressed-blobs/ after uploads/{uuid}/");
	gateway_resource r = {.instance = inst.p, .instance_len = inst.n, .uuid = uuid.p, .uuid_len = uuid.n};
	st = parse_blob(&c, seg_is(kind, "compressed-blobs"), true, &r);
	if (cairn_is_ok(&st))
		*out = r;
	return st;
}
