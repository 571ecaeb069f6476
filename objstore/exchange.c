/* One request sent until it succeeds or fails for good (retry.c says which failures are worth
 * another attempt and how long to wait), and a failure put into words: our own side first (a file
 * that could not be read or written, a body over its limit), then the transport, then the store's
 * answer with its error code and message, read by the back end's error reader (S3's XML, Google's
 * JSON). */
#include "objstore/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *os_label(const char *scheme, const char *method, const char *key, char *buf, size_t cap)
{
	/* Long keys are cut so that the server's reason still fits in the status message. */
	if (strlen(key) > 72)
		snprintf(buf, cap, "%s %s %.72s…", scheme, method, key);
	else
		snprintf(buf, cap, "%s %s %s", scheme, method, key);
	return buf;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* "403 SignatureDoesNotMatch: The request signature we calculated does not match…", or just "404"
 * when the answer has no body (HEAD answers never do). */
static cairn_status http_failure(const os_http *h, const char *label, const char *attempts, os_error_reader read_error)
{
	char *code = NULL, *msg = NULL;
	read_error(h->err_body, h->err_len, &code, &msg);
	cairn_status st = cairn_err(os_code_of_http(h->status, code), "%s: %ld%s%s%s%s%s", label, h->status,
	                            code ? " " : "", code ? code : "", msg && *msg ? ": " : "", msg ? msg : "",
	                            attempts);
	free(code);
	free(msg);
	return st;
}

cairn_status os_failure(const os_http *h, const char *label, int attempts, os_error_reader read_error)
{
	char after[48] = "";
	if (attempts > 1)
		snprintf(after, sizeof after, " (after %d attempts)", attempts);
	if (h->body && h->body->err == ECANCELED)
		return cairn_err(CAIRN_CANCELLED, "%s: the upload was abandoned", label);
	if (h->body && h->body->err)
		return h->body->err == ENODATA
		               ? cairn_err(CAIRN_DATA_LOSS, "%s: the file changed while it was uploaded", label)
		               : cairn_errno(h->body->err, "%s: reading the upload", label);
	if (h->sink && h->sink->over_max)
		return cairn_err(CAIRN_RESOURCE_EXHAUSTED, "%s: the object is larger than the limit of %lld bytes", label,
		                 (long long)h->sink->max);
	if (h->sink && h->sink->err)
		return cairn_errno(h->sink->err, "%s: writing the download", label);
	if (h->cc != CURLE_OK)
		return cairn_err(os_code_of_curl(h->cc), "%s: %s%s", label, h->curl_err[0] ? h->curl_err : curl_easy_strerror(h->cc),
		                 after);
	return http_failure(h, label, after, read_error);
}

bool os_retry_pause(os_worker *w, const os_http *h, int attempt, int max_retries, const char *label)
{
	/* Pulled bytes are gone once sent: such a request cannot be made again. */
	if (attempt >= max_retries || (h->body && h->body->pull) || !os_retryable(h->cc, h->status))
		return false;
	int64_t ms = os_backoff_ms(attempt, &w->rng);
	atomic_fetch_add(&w->s->retries, 1);
	LOG_WARN(OS_MOD, "%s failed, retrying: %s attempt=%d delay_ms=%lld", label,
	         h->cc != CURLE_OK ? curl_easy_strerror(h->cc) : "server error", attempt + 1, (long long)ms);
	sleep_ms(ms);
	return true;
}

cairn_status os_exchange(os_worker *w, os_http *h, const char *label, int max_retries, os_error_reader read_error)
{
	for (int attempt = 0;; attempt++) {
		os_http_perform(w, h);
		if (os_http_ok(h))
			return cairn_ok();
		if (!os_retry_pause(w, h, attempt, max_retries, label))
			return os_failure(h, label, attempt + 1, read_error);
	}
}
