/* Rendezvous (highest random weight) hashing: which members own a digest.
 *
 * Each member gets a 64-bit key, the first bytes of the SHA-256 of its id, computed once when it
 * joins a view. A digest's score on a member mixes the digest's first 8 hash bytes (already
 * uniform: SHA-256) with that key; the k members with the highest scores own the digest. Adding a
 * member takes from each digest only the rank the newcomer wins, so about 1/(N+1) of the first
 * owners move; removing one moves only the digests it owned. Every instance that knows the same ids
 * ranks alike, with no coordination: the CAS sharded over workers and the action cache shared
 * between schedulers both rely on that. */
#include "common/common.h"

#include <string.h>

static uint64_t load64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* A 64-bit finaliser with full avalanche: every bit of the key and of the digest moves every bit
 * of the score, so scores of one digest on different members are independent. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

uint64_t cairn_rendezvous_key(const char *id)
{
	cairn_digest h;
	cairn_digest_of(id, strlen(id), &h);
	return load64(h.hash);
}

uint64_t cairn_rendezvous_score(uint64_t key, const cairn_digest *d) { return mix64(load64(d->hash) ^ key); }

/* Whether member a ranks before member b for this digest; ids break the (improbable) ties, so
 * every instance ranks alike. */
static bool ranks_before(const cairn_rendezvous_member *a, uint64_t sa, const cairn_rendezvous_member *b, uint64_t sb)
{
	return sa != sb ? sa > sb : strcmp(a->id, b->id) < 0;
}

/* An insertion into a short sorted list: k is small. */
size_t cairn_rendezvous_rank(const cairn_rendezvous_member *m, size_t n, const cairn_digest *d, size_t k, size_t *out,
                             uint64_t *scores)
{
	size_t got = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t s = cairn_rendezvous_score(m[i].key, d);
		size_t j = got < k ? got++ : k;
		while (j > 0 && ranks_before(&m[i], s, &m[out[j - 1]], scores[j - 1])) {
			if (j < k) {
				out[j] = out[j - 1];
				scores[j] = scores[j - 1];
			}
			j--;
		}
		if (j < k) {
			out[j] = i;
			scores[j] = s;
		}
	}
	return got;
}
