/* The Prometheus text format and the HTTP endpoint that serves it (see metrics.h). */
#include "metrics/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_out {
	char *buf;
	size_t len, cap;
};

struct metrics_server {
	struct MHD_Daemon *daemon;
	metrics_collect_fn collect;
	void *arg;
	int port;
};

static void out_printf(metrics_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(metrics_out *o, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		o->cap = o->cap * 2 + (size_t)n;
		o->buf = cairn_xrealloc(o->buf, o->cap);
	}
}

void metrics_family(metrics_out *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_sample(metrics_out *o, const char *name, const char *labels, double value)
{
	/* %.17g keeps every integer up to 2^53 exact, and any double round-trips */
	if (labels)
		out_printf(o, "%s{%s} %.17g\n", name, labels, value);
	else
		out_printf(o, "%s %.17g\n", name, value);
}

void metrics_counter(metrics_out *o, const char *name, const char *help, uint64_t value)
{
	metrics_family(o, name, "counter", help);
	out_printf(o, "%s %" PRIu64 "\n", name, value);
}

void metrics_gauge(metrics_out *o, const char *name, const char *help, double value)
{
	metrics_family(o, name, "gauge", help);
	metrics_sample(o, name, NULL, value);
}

char *metrics_render(metrics_collect_fn collect, void *arg, size_t *len)
{
	metrics_out o = {.buf = cairn_xmalloc(4096), .cap = 4096};
	o.buf[0] = '\0';
	collect(arg, &o);
	*len = o.len;
	return o.buf;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	enum MHD_Result res = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return res;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
	(void)version;
	(void)upload_data;
	(void)req_cls;
	metrics_server *m = cls;
	if (*upload_data_size) /* a body nobody asked for: take it and answer below */
		return *upload_data_size = 0, MHD_YES;
	static char not_found[] = "not found: the metrics are at /metrics\n";
	static char not_allowed[] = "method not allowed: use GET\n";
	if (strcmp(url, "/metrics") != 0)
		return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", not_found, sizeof not_found - 1,
		             MHD_RESPMEM_PERSISTENT);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", not_allowed, sizeof not_allowed - 1,
		             MHD_RESPMEM_PERSISTENT);
	size_t len;
	char *text = metrics_render(m->collect, m->arg, &len);
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", text, len, MHD_RESPMEM_MUST_FREE);
}

cairn_status metrics_start(const char *host, int port, metrics_collect_fn collect, void *arg, metrics_server **out)
{
	*out = NULL;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return cairn_err(CAIRN_INVALID_ARGUMENT, "metrics: cannot listen on %s:%d", host, port);
	metrics_server *m = cairn_xcalloc(1, sizeof *m);
	m->collect = collect;
	m->arg = arg;
	m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, on_request, m,
	                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
	                             (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
	if (!m->daemon) {
		int e = errno;
		free(m);
		return cairn_errno(e, "metrics: cannot listen on %s:%d", host, port);
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info ? info->port : port;
	*out = m;
	return cairn_ok();
}

int metrics_port(const metrics_server *m) { return m->port; }

void metrics_stop(metrics_server *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->daemon);
	free(m);
}
