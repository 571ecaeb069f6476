/* Digests: SHA-256 through OpenSSL EVP (which picks the CPU's SHA instructions), hex and "hash/size". */
#include "common/common.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* Lowercase hex only: REAPI hashes are lowercase. Without branches: a FindMissingBlobs call parses
 * thousands of random hashes, whose digits and letters no branch predictor can guess. */
static inline unsigned is_hex(unsigned char c) { return ((unsigned)(c - '0') < 10u) | ((unsigned)(c - 'a') < 6u); }
static inline unsigned nibble(unsigned char c) { return (c & 15u) + 9u * (c >> 6); }

cairn_status cairn_digest_parse(const char *hex, size_t hex_len, int64_t size, cairn_digest *out)
{
	if (hex_len != CAIRN_HASH_HEX_LEN)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "digest hash has %zu characters, SHA-256 needs 64",
		                 hex_len);
	unsigned ok = 1;
	for (size_t i = 0; i < CAIRN_HASH_LEN; i++) {
		unsigned char hi = (unsigned char)hex[2 * i], lo = (unsigned char)hex[2 * i + 1];
		ok &= is_hex(hi) & is_hex(lo);
		out->hash[i] = (uint8_t)(nibble(hi) << 4 | nibble(lo));
	}
	if (!ok)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "digest hash is not lowercase hex");
	if (size < 0 || size > CAIRN_MAX_BLOB_SIZE)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "digest size %" PRId64 " is out of range", size);
	out->size = size;
	return cairn_ok();
}

cairn_status cairn_digest_parse_path(const char *s, size_t len, cairn_digest *out)
{
	const char *slash = memchr(s, '/', len);
	if (!slash)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "expected hash/size");
	const char *p = slash + 1, *end = s + len;
	if (p == end || end - p > 19)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "digest size is missing or too long");
	int64_t size = 0;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return cairn_err(CAIRN_INVALID_ARGUMENT, "digest size is not a decimal number");
		size = size * 10 + (*p - '0');
		if (size > CAIRN_MAX_BLOB_SIZE)
			return cairn_err(CAIRN_INVALID_ARGUMENT, "digest size is out of range");
	}
	return cairn_digest_parse(s, (size_t)(slash - s), size, out);
}

void cairn_hash_hex(const uint8_t hash[CAIRN_HASH_LEN], char out[CAIRN_HASH_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < CAIRN_HASH_LEN; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 15];
	}
	out[CAIRN_HASH_HEX_LEN] = 0;
}

char *cairn_digest_str(const cairn_digest *d, char *out)
{
	cairn_hash_hex(d->hash, out);
	snprintf(out + CAIRN_HASH_HEX_LEN, CAIRN_DIGEST_STR_MAX - CAIRN_HASH_HEX_LEN, "/%" PRId64, d->size);
	return out;
}

bool cairn_digest_eq(const cairn_digest *a, const cairn_digest *b)
{
	return a->size == b->size && memcmp(a->hash, b->hash, CAIRN_HASH_LEN) == 0;
}

/* SHA-256 of the empty string. */
static const uint8_t empty_hash[CAIRN_HASH_LEN] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};

bool cairn_digest_is_empty_blob(const cairn_digest *d)
{
	return d->size == 0 && memcmp(d->hash, empty_hash, CAIRN_HASH_LEN) == 0;
}

struct cairn_hasher {
	EVP_MD_CTX *ctx;
};

cairn_hasher *cairn_hasher_new(void)
{
	cairn_hasher *h = cairn_xmalloc(sizeof *h);
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx)
		abort();
	cairn_hasher_reset(h);
	return h;
}

void cairn_hasher_reset(cairn_hasher *h)
{
	if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
		abort();
}

void cairn_hasher_update(cairn_hasher *h, const void *data, size_t len)
{
	if (len && EVP_DigestUpdate(h->ctx, data, len) != 1)
		abort();
}

void cairn_hasher_final(cairn_hasher *h, uint8_t hash[CAIRN_HASH_LEN])
{
	unsigned n = 0;
	if (EVP_DigestFinal_ex(h->ctx, hash, &n) != 1 || n != CAIRN_HASH_LEN)
		abort();
}

void cairn_hasher_free(cairn_hasher *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void cairn_digest_of(const void *data, size_t len, cairn_digest *out)
{
	unsigned n = 0;
	if (EVP_Digest(data, len, out->hash, &n, EVP_sha256(), NULL) != 1)
		abort();
	out->size = (int64_t)len;
}
