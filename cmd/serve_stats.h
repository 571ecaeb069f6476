/* cairn serve's counters: what /metrics shows and what the log repeats once a minute. */
#ifndef CAIRN_CMD_SERVE_STATS_H
#define CAIRN_CMD_SERVE_STATS_H

#include "backup/backup.h"
#include "cachefs/cachefs.h"
#include "metrics/metrics.h"
#include "objstore/objstore.h"

/* Where the counters come from; the last three are NULL without --external_storage. */
typedef struct serve_stats {
	cachefs *fs;
	cachefs_through *through;
	objstore *os;
	backup *backup;
} serve_stats;

/* A metrics_collect_fn over a serve_stats. */
void serve_stats_collect(void *arg, metrics_out *o);
/* One log line per group of counters. */
void serve_stats_log(const serve_stats *s);

#endif
