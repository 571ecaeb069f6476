/* Unit tests of metrics/: the text format, and the HTTP endpoint answered over a real socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics/metrics.h"

typedef struct source {
	atomic_uint_fast64_t scrapes;
	uint64_t big;
} source;

static void collect(void *arg, metrics_out *o)
{
	source *s = arg;
	uint64_t n = atomic_fetch_add(&s->scrapes, 1) + 1;
	metrics_counter(o, "test_scrapes_total", "Scrapes so far.", n);
	metrics_counter(o, "test_big_total", "A counter past 2^53.", s->big);
	metrics_gauge(o, "test_ratio", "A fraction.", 0.25);
	metrics_family(o, "test_requests_total", "counter", "Requests by operation.");
	metrics_sample(o, "test_requests_total", "op=\"put\"", 3);
	metrics_sample(o, "test_requests_total", "op=\"get\"", 1e6);
	/* long enough to make the writer grow its buffer several times */
	for (int i = 0; i < 200; i++) {
		char name[64];
		snprintf(name, sizeof name, "test_filler_%03d", i);
		metrics_gauge(o, name, "Filler to make the page long.", i);
	}
}

static void text_format(void **state)
{
	(void)state;
	source s = {.big = (UINT64_C(1) << 60) + 1};
	size_t len;
	char *text = metrics_render(collect, &s, &len);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "# HELP test_scrapes_total Scrapes so far.\n# TYPE test_scrapes_total counter\n"
	                             "test_scrapes_total 1\n"));
	assert_non_null(strstr(text, "test_big_total 1152921504606846977\n")); /* exact, not rounded to a double */
	assert_non_null(strstr(text, "# TYPE test_ratio gauge\ntest_ratio 0.25\n"));
	assert_non_null(strstr(text, "test_requests_total{op=\"put\"} 3\ntest_requests_total{op=\"get\"} 1000000\n"));
	assert_non_null(strstr(text, "test_filler_199 199\n"));
	assert_int_equal(text[len - 1], '\n');
	free(text);
}

/* Sends one HTTP/1.0 request to 127.0.0.1:port and returns the whole answer (malloc'd). */
static char *http(int port, const char *method, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	char req[256];
	int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	ssize_t r;
	while ((r = read(fd, buf + len, cap - 1 - len)) > 0) {
		len += (size_t)r;
		if (len == cap - 1)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

static void endpoint(void **state)
{
	(void)state;
	source s = {0};
	metrics_server *m;
	assert_int_equal(metrics_start("127.0.0.1", 0, collect, &s, &m).code, CAIRN_OK);
	int port = metrics_port(m);
	assert_true(port > 0);
	char *a = http(port, "GET", "/metrics");
	assert_non_null(strstr(a, " 200 "));
	assert_non_null(strstr(a, "text/plain; version=0.0.4"));
	assert_non_null(strstr(a, "test_scrapes_total 1\n"));
	assert_non_null(strstr(a, "test_filler_199 199\n"));
	free(a);
	a = http(port, "GET", "/metrics"); /* each scrape collects afresh */
	assert_non_null(strstr(a, "test_scrapes_total 2\n"));
	free(a);
	a = http(port, "GET", "/other");
	assert_non_null(strstr(a, " 404 "));
	free(a);
	a = http(port, "POST", "/metrics");
	assert_non_null(strstr(a, " 405 "));
	free(a);
	assert_int_equal(atomic_load(&s.scrapes), 2);

	/* a second server cannot take the same port, and says so */
	metrics_server *m2;
	cairn_status st = metrics_start("127.0.0.1", port, collect, &s, &m2);
	assert_int_not_equal(st.code, CAIRN_OK);
	assert_non_null(strstr(st.msg, "cannot listen"));
	assert_int_equal(metrics_start("not-an-address", 0, collect, &s, &m2).code, CAIRN_INVALID_ARGUMENT);
	metrics_stop(m);
	metrics_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(text_format),
		cmocka_unit_test(endpoint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
