/* What is worth retrying, how long to wait, and which cairn code a final failure gets.
 *
 * Retried: 5xx and 429 (the service is overloaded or restarting), and transport failures that a new
 * connection may not meet (refused, reset, timed out, cut short). Never retried: other 4xx (the same
 * request would fail the same way: bad credentials, a wrong digest, a missing key), certificate
 * failures, and failures of our own side (a file that cannot be read or written). */
#include "objstore/internal.h"

#include <assert.h>
#include <string.h>

bool os_retryable(CURLcode cc, long http)
{
	switch (cc) {
	case CURLE_OK:
		return http >= 500 || http == 429;
	case CURLE_COULDNT_RESOLVE_HOST: /* DNS hiccups pass */
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE: /* the body ended before its Content-Length */
	case CURLE_GOT_NOTHING:  /* a kept-alive connection the server had closed */
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
	case CURLE_QUIC_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

uint64_t os_rng_next(uint64_t *state)
{
	/* splitmix64: a good enough spread for jitter, and any seed works. */
	uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

int64_t os_backoff_ms(int attempt, uint64_t *rng)
{
	const int64_t base = 100, cap = 10000;
	assert(attempt >= 0);
	int64_t d = attempt >= 20 ? cap : base << attempt;
	if (d > cap)
		d = cap;
	/* "Equal jitter": at least half the delay, so retries still back off; the random half spreads
	 * clients that failed at the same moment. */
	int64_t half = d / 2;
	return half + (int64_t)(os_rng_next(rng) % (uint64_t)(half + 1));
}

static bool is(const char *a, const char *b) { return a && strcmp(a, b) == 0; }

int os_code_of_http(long http, const char *s3_code)
{
	if (http == 404)
		return CAIRN_NOT_FOUND;
	if (http == 401 || http == 403)
		return CAIRN_PERMISSION_DENIED;
	/* The store hashed the bytes it got and they differ from what we said we sent. */
	if (http == 400 && (is(s3_code, "BadDigest") || is(s3_code, "XAmzContentSHA256Mismatch")))
		return CAIRN_DATA_LOSS;
	if (http == 429 || http >= 500)
		return CAIRN_UNAVAILABLE;
	if (http == 400 || http == 411 || http == 413 || http == 414 || http == 431)
		return CAIRN_INVALID_ARGUMENT;
	/* 409 conflicts, 412 failed conditions, 416 ranges, 3xx (a bucket in another region). */
	if (http >= 300 && http < 500)
		return CAIRN_FAILED_PRECONDITION;
	return CAIRN_UNKNOWN;
}

int os_code_of_curl(CURLcode cc)
{
	assert(cc != CURLE_OK);
	if (os_retryable(cc, 0))
		return CAIRN_UNAVAILABLE;
	switch (cc) {
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return CAIRN_INVALID_ARGUMENT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return CAIRN_FAILED_PRECONDITION;
	case CURLE_OUT_OF_MEMORY:
		return CAIRN_RESOURCE_EXHAUSTED;
	default:
		return CAIRN_INTERNAL;
	}
}
