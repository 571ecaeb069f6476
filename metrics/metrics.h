/*
 * metrics: the /metrics endpoint, in the Prometheus text format over HTTP (libmicrohttpd).
 *
 * Modules keep their own counters (cachefs_get_stats, objstore_get_stats, …) and know nothing of
 * this one; cmd/ registers a collector that, on each scrape, reads them and writes them out through
 * a metrics_out. Nothing is sampled in between, so a scrape costs the server only while it runs.
 * The endpoint answers GET /metrics (404 for other paths, 405 for other methods) on its own thread.
 */
#ifndef CAIRN_METRICS_H
#define CAIRN_METRICS_H

#include "common/common.h"

typedef struct metrics_out metrics_out;
typedef struct metrics_server metrics_server;

/* A metric family: its # HELP and # TYPE lines. type is "counter" or "gauge". Counter names end in
 * _total, by the format's convention. */
void metrics_family(metrics_out *o, const char *name, const char *type, const char *help);
/* One sample of the family last declared; labels is NULL or the inside of the braces, e.g.
 * `op="put"` (the caller writes label values the format allows). */
void metrics_sample(metrics_out *o, const char *name, const char *labels, double value);
/* A family with a single unlabelled sample. */
void metrics_counter(metrics_out *o, const char *name, const char *help, uint64_t value);
void metrics_gauge(metrics_out *o, const char *name, const char *help, double value);

typedef void (*metrics_collect_fn)(void *arg, metrics_out *o);

/* Renders what collect writes into a malloc'd, NUL-terminated text (for tests and logs). */
char *metrics_render(metrics_collect_fn collect, void *arg, size_t *len);

/* Serves collect's output on http://host:port/metrics (port 0 picks a free one). */
cairn_status metrics_start(const char *host, int port, metrics_collect_fn collect, void *arg, metrics_server **out);
int metrics_port(const metrics_server *m);
/* Stops the thread (waits for a scrape under way) and frees the server. NULL is allowed. */
void metrics_stop(metrics_server *m);

#endif
